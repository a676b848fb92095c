"""Issue 15 experiment: a complaint head refitted on real labelled complaints, beside today's rule.

Today's complaint score is max(P(complaint), P(negative)) from the encoder's heads. The candidate
is one pre-declared configuration (no tuning): a class-balanced L2 (0.1) logistic head on the
standardised pooled vector, fitted as a correction of today's score (its logit as offset),
threshold 0.5. Training rows: the twcs train split's complaint labels and the 220 guide-labelled
tweets, the latter scored out of fold (the same 5 folds by customer as the intent head). Scored,
never fitted on: the twcs validation and test splits and 2,000 airline tweets (seed 0; evaluation
only). Paired bootstrap (1,000 resamples) of macro-F1, candidate - today. Encodings are cached
under /tmp/triage-cache. Run from the repo root with PYTHONPATH=$PWD.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from _common import CACHE, binary_macro_f1, paired, pooled_classifier, resamples, shared_dir
from classifiers.head_fit import FOLDS, customer_folds, labelled_tweets
from classifiers.intent_head import fit_logistic, balanced_weights
from classifiers.onnx_backend import prepare_text, softmax
from classifiers.train import load_airline, load_twcs_labels


def sets(shared: Path) -> dict[str, list[dict]]:
    out = {"train": [{"text": e.text, "y": e.complaint, "group": ""} for e in load_twcs_labels(shared, "train") if e.complaint >= 0],
           "guide": [{"text": r["text"], "y": int(bool(r["complaint"])), "group": str(r["author_id"])} for r in labelled_tweets(shared)]}
    for split, name in (("validation", "twcs_val"), ("test", "twcs_test")):
        out[name] = [{"text": e.text, "y": e.complaint, "group": ""} for e in load_twcs_labels(shared, split) if e.complaint >= 0]
    airline = [r for r in load_airline(shared) if r["complaint"] is not None]
    random.Random(0).shuffle(airline)
    out["airline_2000"] = [{"text": r["text"], "y": r["complaint"], "group": ""} for r in airline[:2000]]
    return out


def encoded(name: str, rows: list[dict], clf_box: list) -> tuple[np.ndarray, np.ndarray]:
    path = CACHE / f"complaint-{name}.npz"
    if path.exists():
        z = np.load(path)
        return z["pooled"], z["score"]
    if not clf_box:
        clf_box.append(pooled_classifier())
    clf = clf_box[0]
    logits = clf._logits([prepare_text(r["text"] or "") for r in rows])
    complaint = softmax(logits["complaint"], clf.temperatures["complaint"])
    sentiment = softmax(logits["sentiment"], clf.temperatures["sentiment"])
    yes = clf.labels["complaint"].index("yes"); neg = clf.labels["sentiment"].index("negative")
    score = np.maximum(complaint[:, yes], sentiment[:, neg])
    np.savez(path, pooled=logits["pooled"], score=score)
    return logits["pooled"], score


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_predict(xp_tr, s_tr, y_tr, xp_te, s_te) -> np.ndarray:
    mean, scale = xp_tr.mean(0), xp_tr.std(0) + 1e-6
    x = (xp_tr - mean) / scale
    off = np.stack([np.zeros(len(s_tr)), logit(s_tr)], 1)
    w, b = fit_logistic(x, y_tr, balanced_weights(y_tr, 2, 1.0), 2, 0.1, offset=off)
    z = ((xp_te - mean) / scale) @ w + b + np.stack([np.zeros(len(s_te)), logit(s_te)], 1)
    return softmax(z)[:, 1]


macro_f1 = binary_macro_f1


def main() -> None:
    data = sets(shared_dir())
    box: list = []
    enc = {k: encoded(k, v, box) for k, v in data.items()}
    y = {k: np.array([r["y"] for r in v]) for k, v in data.items()}
    pred_new, pred_old = {}, {}
    # guide: out of fold by customer
    folds = customer_folds(r["group"] for r in data["guide"])
    fold = np.array([folds[r["group"]] for r in data["guide"]])
    pg = np.zeros(len(fold))
    for k in range(FOLDS):
        tr = fold != k
        xp = np.vstack([enc["train"][0], enc["guide"][0][tr]]); s = np.concatenate([enc["train"][1], enc["guide"][1][tr]])
        yy = np.concatenate([y["train"], y["guide"][tr]])
        pg[~tr] = fit_predict(xp, s, yy, enc["guide"][0][~tr], enc["guide"][1][~tr])
    pred_new["twcs_guide (oof)"] = (pg >= 0.5).astype(int); pred_old["twcs_guide (oof)"] = (enc["guide"][1] >= 0.5).astype(int)
    gold = {"twcs_guide (oof)": y["guide"]}
    xp = np.vstack([enc["train"][0], enc["guide"][0]]); s = np.concatenate([enc["train"][1], enc["guide"][1]])
    yy = np.concatenate([y["train"], y["guide"]])
    for name in ("twcs_val", "twcs_test", "airline_2000"):
        p = fit_predict(xp, s, yy, enc[name][0], enc[name][1])
        pred_new[name] = (p >= 0.5).astype(int); pred_old[name] = (enc[name][1] >= 0.5).astype(int); gold[name] = y[name]
    report = {}
    rng = np.random.default_rng(7)
    for name, g in gold.items():
        report[name] = {"n": len(g), "complaints": int(g.sum()),
                        **paired({"": macro_f1}, g, pred_old[name], pred_new[name], ("today", "refit", "refit-today"),
                                 idx=resamples(len(g), rng))}
        print(name, json.dumps(report[name]), flush=True)
    (CACHE / "complaint-report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
