"""Eleventh round (issue 15): the care head's calibration judged by the rules in bench/RESULTS.md ("Honest
confidence again"): C1, the power fitted on the 220 guide tweets *and* the twcs validation split; C2, a prior
correction (vector scaling: one scale, one bias per intent) fitted on the 220's out-of-fold probabilities.

Why a script and not a retrain: the power is one number applied to the head's mixed distribution, so every
figure can be computed from the shipped model's own outputs. The head's raw distribution is recovered from
the calibrated one (p_raw ∝ p_cal ** T); the 220's out-of-fold probabilities come from ``real_tweet_cv.json``.

    DOORSTEP_SHARED=../shared .venv/bin/python bench/head_calibration_experiment.py --json bench/head_calibration-c1.json
    DOORSTEP_SHARED=../shared .venv/bin/python bench/head_calibration_experiment.py --candidate c2 --json bench/head_calibration-c2.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classifiers.evaluate import binary_f1, bootstrap_ci, ece, macro_f1  # noqa: E402
from classifiers.head_fit import CV_FILE, customer_folds, labelled_tweets  # noqa: E402
from classifiers.intent_head import HEAD_FILE, fit_temperature, temper  # noqa: E402
from classifiers.train import MODEL_DIR, TWCS_LABELS_PATH, shared_dir  # noqa: E402
from doorstep.models import INTENTS  # noqa: E402

REVIEW_BELOW = 0.4  # config.json's review_below.intent for v10


def twcs_split(shared: Path, split: str) -> list[dict[str, Any]]:
    """The split's labelled tweets with their customer (twcs_labels.csv + the sample)."""
    with (shared / "data" / "twcs-sample" / "twcs_sample.csv").open(encoding="utf-8", newline="") as f:
        sample = {r["tweet_id"]: r for r in csv.DictReader(f)}
    with TWCS_LABELS_PATH.open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split and r["intent"]]
    return [{"text": sample[r["tweet_id"]]["text"], "intent": INTENTS.index(r["intent"]),
             "customer": sample[r["tweet_id"]]["author_id"]} for r in rows]


def raw(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Undo the shipped power: the head's distribution before calibration."""
    return temper(probs, 1.0 / temperature)


def figures(probs: np.ndarray, gold: np.ndarray) -> dict[str, Any]:
    conf = probs.max(axis=1)
    right = probs.argmax(axis=1) == gold
    high = conf >= 0.8
    return {"n": int(len(gold)), "ece": round(ece(conf, right), 4), "confident_share": round(float(high.mean()), 3),
            "confident_accuracy": round(float(right[high].mean()), 3) if high.any() else None,
            "needs_review_share": round(float((conf < REVIEW_BELOW).mean()), 3),
            "accuracy": round(float(right.mean()), 4)}


def fit_vector_scaling(probs: np.ndarray, gold: np.ndarray, l2: float = 0.01, steps: int = 3000,
                       lr: float = 0.5) -> tuple[float, np.ndarray]:
    """C2: scale ``a`` and per-intent bias ``b`` minimising mean NLL of softmax(a·log p + b) + l2·Σb² (convex;
    plain gradient descent is enough for 11 numbers)."""
    logp = np.log(np.maximum(probs, 1e-12))
    onehot = np.eye(probs.shape[1])[gold]
    a, b = 1.0, np.zeros(probs.shape[1])
    for _ in range(steps):
        z = a * logp + b
        z -= z.max(axis=1, keepdims=True)
        q = np.exp(z)
        q /= q.sum(axis=1, keepdims=True)
        dz = (q - onehot) / len(gold)
        a -= lr * float((dz * logp).sum())
        b -= lr * (dz.sum(axis=0) + 2 * l2 * b)
    return a, b


def vector_scale(probs: np.ndarray, a: float, b: np.ndarray) -> np.ndarray:
    z = a * np.log(np.maximum(probs, 1e-12)) + b
    z -= z.max(axis=1, keepdims=True)
    q = np.exp(z)
    return q / q.sum(axis=1, keepdims=True)


def label_figures(probs: np.ndarray, gold: np.ndarray) -> dict[str, Any]:
    """Intent macro-F1 / accuracy / delivery F1 and false alarms, as ``doorstep evaluate`` counts them."""
    pred = probs.argmax(axis=1)
    names_gold, names_pred = [INTENTS[i] for i in gold], [INTENTS[i] for i in pred]
    g_del, p_del = gold < 5, pred < 5
    return {"macro_f1": round(macro_f1(names_gold, names_pred, INTENTS), 4),
            "accuracy": round(float((pred == gold).mean()), 4),
            "delivery_f1": round(binary_f1(g_del, p_del), 4) if g_del.any() else None,
            "delivery_false_alarms": int((p_del & ~g_del).sum())}


def paired(base: np.ndarray, cand: np.ndarray, gold: np.ndarray) -> dict[str, list[float]]:
    """Candidate − base with 95% paired bootstrap intervals."""
    bp, cp = base.argmax(1), cand.argmax(1)
    names = lambda idx, p: ([INTENTS[i] for i in gold[idx]], [INTENTS[i] for i in p[idx]])  # noqa: E731
    out = {
        "macro_f1": lambda i: macro_f1(*names(i, cp), INTENTS) - macro_f1(*names(i, bp), INTENTS),
        "accuracy": lambda i: float((cp[i] == gold[i]).mean() - (bp[i] == gold[i]).mean()),
    }
    if (gold < 5).any():
        out["delivery_f1"] = lambda i: binary_f1(gold[i] < 5, cp[i] < 5) - binary_f1(gold[i] < 5, bp[i] < 5)
    full = np.arange(len(gold))
    return {k: [round(f(full), 4), *bootstrap_ci(f, len(gold))] for k, f in out.items()}


def c1(t_shipped: float, guide: tuple[np.ndarray, np.ndarray, np.ndarray],
       val: tuple[np.ndarray, np.ndarray, list[str]], test: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """The rule's C1 measurements: validation cross-fitted by customer halves, the 220 by fold, test with the fit on all."""
    guide_raw, guide_y, guide_fold = guide
    val_raw, val_y, val_customers = val
    test_raw, test_y = test
    customers = sorted(set(val_customers))
    half_of = dict(zip(customers, np.random.default_rng(0).permutation(len(customers)) % 2))
    val_half = np.array([half_of[c] for c in val_customers])

    def fit(parts: list[tuple[np.ndarray, np.ndarray]]) -> float:
        return fit_temperature(np.concatenate([p for p, _ in parts]), np.concatenate([y for _, y in parts]))

    # C1, cross-fitted as the rule says.
    val_c1 = np.zeros_like(val_raw)
    val_t = []
    for h in (0, 1):
        t = fit([(guide_raw, guide_y), (val_raw[val_half != h], val_y[val_half != h])])
        val_t.append(t)
        val_c1[val_half == h] = temper(val_raw[val_half == h], t)
    guide_c1 = np.zeros_like(guide_raw)
    guide_t = []
    for k in sorted(set(guide_fold)):
        t = fit([(guide_raw[guide_fold != k], guide_y[guide_fold != k]), (val_raw, val_y)])
        guide_t.append(t)
        guide_c1[guide_fold == k] = temper(guide_raw[guide_fold == k], t)
    t_all = fit([(guide_raw, guide_y), (val_raw, val_y)])
    test_c1 = temper(test_raw, t_all)
    unchanged = all(np.array_equal(a.argmax(1), temper(b, t_shipped).argmax(1))
                    for a, b in ((val_c1, val_raw), (guide_c1, guide_raw), (test_c1, test_raw)))
    result = {
        "shipped_temperature": t_shipped, "c1_temperature": t_all,
        "c1_temperature_validation_halves": val_t, "c1_temperature_guide_folds": guide_t,
        "v10": {"validation": figures(temper(val_raw, t_shipped), val_y),
                "guide_220_oof": figures(temper(guide_raw, t_shipped), guide_y),
                "test": figures(temper(test_raw, t_shipped), test_y)},
        "c1": {"validation": figures(val_c1, val_y), "guide_220_oof": figures(guide_c1, guide_y),
               "test": figures(test_c1, test_y)},
        "labels_unchanged": bool(unchanged),
    }
    v, c = result["v10"], result["c1"]
    result["rule"] = {
        "1_validation": c["validation"]["ece"] < v["validation"]["ece"]
        and (c["validation"]["confident_accuracy"] or 0) > (v["validation"]["confident_accuracy"] or 0),
        "2_guide": c["guide_220_oof"]["ece"] <= v["guide_220_oof"]["ece"] + 0.02
        and (c["guide_220_oof"]["confident_accuracy"] or 0) >= (v["guide_220_oof"]["confident_accuracy"] or 0) - 0.02,
        "3_test": c["test"]["ece"] <= v["test"]["ece"],
        "4_labels_unchanged": bool(unchanged),
    }
    return result


def c2(t_shipped: float, guide: tuple[np.ndarray, np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
       test: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """The rule's C2 measurements: the 220 cross-fitted by fold; validation and test with the fit on all 220."""
    guide_raw, guide_y, guide_fold = guide
    guide_c2 = np.zeros_like(guide_raw)
    fits = []
    for k in sorted(set(guide_fold)):
        a, b = fit_vector_scaling(guide_raw[guide_fold != k], guide_y[guide_fold != k])
        fits.append({"a": round(a, 4), "b": [round(float(x), 3) for x in b]})
        guide_c2[guide_fold == k] = vector_scale(guide_raw[guide_fold == k], a, b)
    a, b = fit_vector_scaling(guide_raw, guide_y)
    result: dict[str, Any] = {"fit_on_all_220": {"a": round(a, 4), "b": dict(zip(INTENTS, (round(float(x), 3) for x in b)))},
                              "fits_by_fold": fits, "v10": {}, "c2": {}, "c2_minus_v10": {}}
    for name, raw_probs, gold, cand in (("guide_220_oof", guide_raw, guide_y, guide_c2),
                                        ("validation", *val, vector_scale(val[0], a, b)),
                                        ("test", *test, vector_scale(test[0], a, b))):
        base = temper(raw_probs, t_shipped)
        result["v10"][name] = {**figures(base, gold), **label_figures(base, gold)}
        result["c2"][name] = {**figures(cand, gold), **label_figures(cand, gold)}
        result["c2_minus_v10"][name] = paired(base, cand, gold)
    v, c = result["v10"], result["c2"]
    result["rule"] = {k: bool(x) for k, x in {
        "1_guide_macro_f1_up": c["guide_220_oof"]["macro_f1"] > v["guide_220_oof"]["macro_f1"],
        "2_validation_labels": c["validation"]["macro_f1"] >= v["validation"]["macro_f1"]
        and c["validation"]["accuracy"] >= v["validation"]["accuracy"] - 0.01,
        "3_delivery": c["guide_220_oof"]["delivery_f1"] >= v["guide_220_oof"]["delivery_f1"] - 0.01
        and c["validation"]["delivery_false_alarms"] <= v["validation"]["delivery_false_alarms"] + 2,
        "4_validation_confidence": c["validation"]["ece"] <= v["validation"]["ece"]
        and (c["validation"]["confident_accuracy"] or 0) >= (v["validation"]["confident_accuracy"] or 0),
        "5_test_accuracy": c["test"]["accuracy"] >= v["test"]["accuracy"] - 0.03,
    }.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(MODEL_DIR))
    parser.add_argument("--candidate", choices=("c1", "c2"), default="c1")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    from classifiers.onnx_backend import OnnxClassifier

    shared = shared_dir(None)
    model = Path(args.model)
    t_shipped = json.loads((model / HEAD_FILE).read_text(encoding="utf-8"))["temperature"]
    classifier = OnnxClassifier(model)

    def calibrated(texts: list[str]) -> np.ndarray:
        return np.array([[lab.intent_scores[i] for i in INTENTS] for lab in classifier.classify(texts)])

    val, test = twcs_split(shared, "validation"), twcs_split(shared, "test")
    val_raw, test_raw = (raw(calibrated([r["text"] for r in s]), t_shipped) for s in (val, test))
    val_y, test_y = (np.array([r["intent"] for r in s]) for s in (val, test))
    guide = labelled_tweets(shared)
    cv = {r["tweet_id"]: r["intent_scores"] for r in json.loads((model / CV_FILE).read_text(encoding="utf-8"))["rows"]}
    guide_raw = raw(np.array([cv[str(r["tweet_id"])] for r in guide]), t_shipped)
    guide_y = np.array([INTENTS.index(r["intent"]) for r in guide])
    guide_fold = np.array([customer_folds(str(r["author_id"]) for r in guide)[str(r["author_id"])] for r in guide])
    guide_set = (guide_raw, guide_y, guide_fold)
    if args.candidate == "c2":
        result = c2(t_shipped, guide_set, (val_raw, val_y), (test_raw, test_y))
    else:
        result = c1(t_shipped, guide_set, (val_raw, val_y, [r["customer"] for r in val]), (test_raw, test_y))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")

if __name__ == "__main__":
    main()
