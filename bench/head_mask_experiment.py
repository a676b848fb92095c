"""Issue 15 experiment: does masking @handles / order numbers before the encoder help the intent head?

Head-only refits on cached pooled vectors (computed once, cached under /tmp/triage-cache), scored
exactly as ``classifiers.head_fit.fit_into`` scores the shipped head: the 220 guide-labelled real
tweets out of fold, 5 folds by customer (``customer_folds``), every other row always in training.
Nothing is tuned here: each variant is one pre-declared configuration (the shipped defaults).
Figures: delivery F1 and intent macro-F1/accuracy with 95% bootstrap CIs, and paired bootstrap
differences against the shipped configuration (same resamples of the same posts).
"""

from __future__ import annotations

import json

import numpy as np

from _common import CACHE, embeddings, f1, head_arrays, masked, paired, print_report, shared_dir
from doorstep.models import INTENTS
from classifiers.head_fit import FOLDS, head_rows
from classifiers.intent_head import N_DELIVERY, fit_head
from classifiers.onnx_backend import prepare_text


def macro(gold, pred):
    return float(np.mean([f1(gold == c, pred == c) for c in range(len(INTENTS)) if np.any(gold == c) or np.any(pred == c)]))


METRICS = {
    "delivery_f1": lambda g, p: f1(g < N_DELIVERY, p < N_DELIVERY),
    "intent_macro_f1": macro,
    "intent_accuracy": lambda g, p: float(np.mean(g == p)),
}


def oof(rows, pooled, prior, texts, variant_texts_masked: bool):
    y, w, lab, fold = head_arrays(rows)
    t = [prepare_text(masked(x) if variant_texts_masked else x) for x in texts]
    out = np.zeros((len(rows), len(INTENTS)))
    for k in range(FOLDS):
        held = lab & (fold == k)
        tr = ~held
        head = fit_head(pooled[tr], [a for a, m in zip(t, tr) if m], y[tr], w[tr], prior=prior[tr])
        out[held] = head.raw_probabilities(pooled[held], [a for a, m in zip(t, held) if m], prior[held])
    return y[lab], out[lab]


def main() -> None:
    rows = head_rows(shared_dir())
    print(f"{len(rows)} head rows; {sum(r['source'] == 'twcs-labelled' for r in rows)} labelled real tweets", flush=True)
    texts = [r["text"] for r in rows]
    preds = {}
    for variant in ("plain", "masked"):
        pooled, prior = embeddings(rows, variant)
        gold, probs = oof(rows, pooled, prior, texts, variant == "masked")
        preds[variant] = probs.argmax(1)
    report = paired(METRICS, gold, preds["plain"], preds["masked"], ("plain", "masked", "masked-plain"))
    print_report(report, 32)
    (CACHE / "mask-report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
