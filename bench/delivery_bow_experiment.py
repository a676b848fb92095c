"""Issue 15 experiment: learned word evidence (binary unigrams/bigrams) in the delivery head.

v7's delivery head reads the pooled vector + 14 hand-picked evidence patterns. The candidate adds
binary word/bigram features (vocabulary: n-grams in >= 2 training rows of the fold), so the head
can learn its own evidence, the care handle included. Its two settings (word-feature scale in
{0, 0.5, 1.5}, delivery L2 in {0.01, 0.1}) are chosen by an INNER 4-fold split (by customer) of
each outer fold's training guide tweets, never on the outer fold; the outer folds are exactly
``classifiers.head_fit``'s (5 by customer). The 10-way head is v7's, refitted per outer fold.
Paired bootstrap vs v7's recipe on the same out-of-fold predictions. Needs the cache written by
bench/head_mask_experiment.py. Run from the repo root with PYTHONPATH=$PWD.
"""

from __future__ import annotations

import json
import re
from itertools import product

import numpy as np

from _common import CACHE, f1, head_arrays, head_data, paired, print_report
from classifiers.head_fit import FOLDS, customer_folds
from classifiers.intent_head import (EVIDENCE_SCALE, N_DELIVERY, _softmax, balanced_weights, evidence_features,
                                     fit_head, fit_logistic)
from classifiers.onnx_backend import prepare_text
from head_mask_experiment import METRICS

_TOKEN = re.compile(r"@?\w+")
GRID = list(product((0.0, 0.5, 1.5), (0.01, 0.1)))


def grams(text: str) -> set[str]:
    toks = [t.lower() for t in _TOKEN.findall(text)]
    return set(toks) | {a + " " + b for a, b in zip(toks, toks[1:])}


def bow(gram_sets, vocab):
    out = np.zeros((len(gram_sets), len(vocab)), dtype=np.float64)
    for i, g in enumerate(gram_sets):
        for t in g:
            j = vocab.get(t)
            if j is not None:
                out[i, j] = 1.0
    return out


def fit_delivery(x, ev, gs, y, w, scale, l2):
    counts: dict[str, int] = {}
    for g in gs:
        for t in g:
            counts[t] = counts.get(t, 0) + 1
    vocab = {t: i for i, t in enumerate(sorted(t for t, c in counts.items() if c >= 2))} if scale else {}
    xe = np.hstack([x, ev * EVIDENCE_SCALE, bow(gs, vocab) * scale])
    yd = (y < N_DELIVERY).astype(int)
    wd, bd = fit_logistic(xe, yd, w * balanced_weights(yd, 2, 1.0), 2, l2)
    return lambda x2, ev2, gs2: _softmax(np.hstack([x2, ev2 * EVIDENCE_SCALE, bow(gs2, vocab) * scale]) @ wd + bd)[:, 1]


def main() -> None:
    rows, pooled, prior = head_data()
    texts = [prepare_text(r["text"]) for r in rows]
    ev = evidence_features(texts)
    gs = [grams(t) for t in texts]
    y, w, lab, fold = head_arrays(rows)
    groups = np.array([r["group"] for r in rows])
    base = np.zeros((len(rows), 10)); cand = np.zeros((len(rows), 10)); chosen = []
    for k in range(FOLDS):
        held = lab & (fold == k); tr = ~held
        head = fit_head(pooled[tr], [t for t, m in zip(texts, tr) if m], y[tr], w[tr], prior=prior[tr])
        base[held] = head.raw_probabilities(pooled[held], [t for t, m in zip(texts, held) if m], prior[held])
        # inner split: the training guide tweets' customers in 4 folds (different seed)
        inner_f = customer_folds(sorted(set(groups[tr & lab])), folds=4, seed=1)
        inner = np.array([inner_f[g] if (tr[i] and lab[i]) else -1 for i, g in enumerate(groups)])
        scores = {}
        for scale, l2 in GRID:
            gold, pred = [], []
            for j in range(4):
                ih = inner == j; it = tr & ~ih
                x_it = head._x(pooled[it])  # standardisation of the outer fit; fine for ranking
                f = fit_delivery(x_it, ev[it], [g for g, m in zip(gs, it) if m], y[it], w[it], scale, l2)
                q = f(head._x(pooled[ih]), ev[ih], [g for g, m in zip(gs, ih) if m])
                gold.append(y[ih] < N_DELIVERY); pred.append(q >= 0.5)
            scores[(scale, l2)] = f1(np.concatenate(gold), np.concatenate(pred))
        best = max(GRID, key=lambda c: (scores[c], -c[0]))
        chosen.append({"fold": k, "chosen": best, "inner_f1": {f"{a}/{b}": round(v, 3) for (a, b), v in scores.items()}})
        print(chosen[-1], flush=True)
        f = fit_delivery(head._x(pooled[tr]), ev[tr], [g for g, m in zip(gs, tr) if m], y[tr], w[tr], *best)
        q = f(head._x(pooled[held]), ev[held], [g for g, m in zip(gs, held) if m])[:, None]
        p = _softmax(head._x(pooled[held]) @ head.intent_w + head.intent_b + prior[held])
        d = p[:, :N_DELIVERY] / p[:, :N_DELIVERY].sum(1, keepdims=True); r = p[:, N_DELIVERY:] / p[:, N_DELIVERY:].sum(1, keepdims=True)
        cand[held] = np.hstack([q * d, (1 - q) * r])
    gold = y[lab]
    report = {"folds": chosen,
              **paired(METRICS, gold, base[lab].argmax(1), cand[lab].argmax(1), ("v7 recipe", "word evidence", "diff"))}
    print_report(report, 30)
    (CACHE / "bow-report.json").write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
