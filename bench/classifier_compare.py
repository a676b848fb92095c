"""Two ONNX models side by side on the real care tweets, with paired bootstrap intervals.

    .venv/bin/python bench/classifier_compare.py OLD_MODEL_DIR [NEW_MODEL_DIR] [--json out.json]

Sets: the 220 guide-labelled twcs tweets (the new model's intent out of fold when its head was
fitted on them), the twcs validation and test splits. Measures: delivery F1 (and the delivery-word
regex's), intent macro-F1 and accuracy; 1,000 resamples of the same posts for each difference.
"""
import argparse, os, sys, json
import numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from classifiers.onnx_backend import OnnxClassifier
from classifiers.evaluate import load_twcs_guide, out_of_fold, macro_f1, binary_f1, regex_delivery, load_twcs_labelled, rows_of
from classifiers.train import load_twcs_labels
from doorstep.models import INTENTS, DELIVERY_INTENTS
parser = argparse.ArgumentParser()
parser.add_argument("old"); parser.add_argument("new", nargs="?", default=None); parser.add_argument("--json", default=None)
args = parser.parse_args()
shared = Path(os.environ.get("DOORSTEP_SHARED") or Path(__file__).resolve().parents[2] / "shared")
v6, v7 = OnnxClassifier(args.old), OnnxClassifier(args.new)
sets = {"twcs_guide": load_twcs_guide(shared), "twcs_val": [r for r in rows_of(load_twcs_labels(shared, "validation")) if r["intent"]],
        "twcs_test": [r for r in load_twcs_labelled(shared) if r["intent"]]}
rng = np.random.default_rng(7)
out = {}
for name, rows in sets.items():
    texts = [r["text"] for r in rows]; gold = np.array([r["intent"] for r in rows])
    a = v6.classify(texts); b = v7.classify(texts)
    if name == "twcs_guide":  # each model's intent out of fold when its head was fitted on these tweets
        a = out_of_fold(a, rows, v6.model_dir if v6.intent_head is not None else None) or a
        b = out_of_fold(b, rows, v7.model_dir if v7.intent_head is not None else None) or b
    pa = np.array([l.intent for l in a]); pb = np.array([l.intent for l in b]); rx = np.array(regex_delivery(texts))
    gd = np.isin(gold, list(DELIVERY_INTENTS)); da = np.isin(pa, list(DELIVERY_INTENTS)); db = np.isin(pb, list(DELIVERY_INTENTS))
    metrics = {"delivery_f1": lambda p, d, i: binary_f1(gd[i], d[i]), "macro_f1": lambda p, d, i: macro_f1(gold[i], p[i], INTENTS),
               "accuracy": lambda p, d, i: float((gold[i] == p[i]).mean())}
    n = len(rows); idx = [rng.integers(0, n, n) for _ in range(1000)]; full = np.arange(n)
    res = {}
    for m, f in metrics.items():
        if m == "delivery_f1" and not gd.any(): continue
        diffs = [f(pb, db, i) - f(pa, da, i) for i in idx]
        res[m] = {"v6": round(f(pa, da, full), 3), "v7": round(f(pb, db, full), 3), "diff": round(f(pb, db, full) - f(pa, da, full), 3),
                  "diff_ci": [round(float(np.percentile(diffs, 2.5)), 3), round(float(np.percentile(diffs, 97.5)), 3)]}
        if m == "delivery_f1":
            rd = [f(pb, db, i) - binary_f1(gd[i], rx[i]) for i in idx]
            res[m]["regex"] = round(binary_f1(gd, rx), 3)
            res[m]["v7_minus_regex_ci"] = [round(float(np.percentile(rd, 2.5)), 3), round(float(np.percentile(rd, 97.5)), 3)]
            res[m]["false_alarms_v6_v7_regex"] = [int((da & ~gd).sum()), int((db & ~gd).sum()), int((rx & ~gd).sum())]
            res[m]["missed_v6_v7_regex"] = [int((~da & gd).sum()), int((~db & gd).sum()), int((~rx & gd).sum())]
    out[name] = {"n": n, **res}
    print(name, json.dumps(res))
if args.json:
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
