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
import os
import re
import sys
from pathlib import Path

import numpy as np

from doorstep.models import INTENTS
from classifiers.head_fit import FOLDS, SOURCE_WEIGHTS, customer_folds, encode, head_rows, add_pooled_output
from classifiers.intent_head import N_DELIVERY, fit_head, fit_temperature, temper
from classifiers.onnx_backend import prepare_text

CACHE = Path("/tmp/triage-cache")
_HANDLE = re.compile(r"@\w+")
_NUMBER = re.compile(r"\b[\w-]*\d{5,}[\w-]*\b")


def masked(text: str) -> str:
    """Every @handle -> @user, order/tracking numbers (5+ digits) -> 12345."""
    return _NUMBER.sub("12345", _HANDLE.sub("@user", text))


def embeddings(rows, variant: str):
    path = CACHE / f"pooled-{variant}.npz"
    if path.exists():
        z = np.load(path)
        return z["pooled"], z["prior"]
    from classifiers.onnx_backend import OnnxClassifier
    import shutil, tempfile
    tmp = Path(tempfile.mkdtemp(dir=CACHE))
    for f in ("model.onnx", "config.json", "tokenizer.json", "calibration.json"):
        shutil.copy(Path("classifiers/model") / f, tmp / f)
    add_pooled_output(tmp / "model.onnx")
    clf = OnnxClassifier(tmp)
    clf._outputs.append("pooled")
    texts = [r["text"] if variant == "plain" else masked(r["text"]) for r in rows]
    pooled, prior = [], []
    for i in range(0, len(texts), 256):
        p, q = encode(clf, texts[i:i + 256]); pooled.append(p); prior.append(q)
    pooled, prior = np.vstack(pooled), np.vstack(prior)
    np.savez(path, pooled=pooled, prior=prior)
    return pooled, prior


def f1(gold, pred):
    tp = np.sum(gold & pred); fp = np.sum(~gold & pred); fn = np.sum(gold & ~pred)
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def macro(gold, pred):
    return float(np.mean([f1(gold == c, pred == c) for c in range(len(INTENTS)) if np.any(gold == c) or np.any(pred == c)]))


METRICS = {
    "delivery_f1": lambda g, p: f1(g < N_DELIVERY, p < N_DELIVERY),
    "intent_macro_f1": macro,
    "intent_accuracy": lambda g, p: float(np.mean(g == p)),
}


def oof(rows, pooled, prior, texts, variant_texts_masked: bool):
    y = np.array([r["intent"] for r in rows])
    w = np.array([SOURCE_WEIGHTS[r["source"]] for r in rows])
    lab = np.array([r["source"] == "twcs-labelled" for r in rows])
    folds = customer_folds(r["group"] for r in rows if r["source"] == "twcs-labelled")
    fold = np.array([folds[r["group"]] if r["source"] == "twcs-labelled" else -1 for r in rows])
    t = [prepare_text(masked(x) if variant_texts_masked else x) for x in texts]
    out = np.zeros((len(rows), len(INTENTS)))
    for k in range(FOLDS):
        held = lab & (fold == k)
        tr = ~held
        head = fit_head(pooled[tr], [a for a, m in zip(t, tr) if m], y[tr], w[tr], prior=prior[tr])
        out[held] = head.raw_probabilities(pooled[held], [a for a, m in zip(t, held) if m], prior[held])
    return y[lab], out[lab]


def main() -> None:
    shared = Path(os.environ.get("DOORSTEP_SHARED", "/work/shared"))
    rows = head_rows(shared)
    print(f"{len(rows)} head rows; {sum(r['source'] == 'twcs-labelled' for r in rows)} labelled real tweets", flush=True)
    texts = [r["text"] for r in rows]
    preds = {}
    for variant in ("plain", "masked"):
        pooled, prior = embeddings(rows, variant)
        gold, probs = oof(rows, pooled, prior, texts, variant == "masked")
        preds[variant] = probs.argmax(1)
    rng = np.random.default_rng(7)
    n = len(gold)
    idx = [rng.integers(0, n, n) for _ in range(1000)]
    report = {}
    for name, m in METRICS.items():
        for v in preds:
            point = m(gold, preds[v])
            boots = [m(gold[i], preds[v][i]) for i in idx]
            report[f"{v} {name}"] = [round(point, 3), *np.round(np.percentile(boots, [2.5, 97.5]), 3).tolist()]
        diffs = [m(gold[i], preds["masked"][i]) - m(gold[i], preds["plain"][i]) for i in idx]
        report[f"masked-plain {name}"] = [round(m(gold, preds["masked"]) - m(gold, preds["plain"]), 3),
                                          *np.round(np.percentile(diffs, [2.5, 97.5]), 3).tolist()]
    for k, v in report.items():
        print(f"{k:32s} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]")
    (CACHE / "mask-report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
