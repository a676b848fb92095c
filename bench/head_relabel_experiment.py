"""Issue 15 experiment: the head refitted with the recorded train-split relabels (classifiers/twcs_relabels.csv)
against the shipped configuration, same out-of-fold scoring as bench/head_mask_experiment.py (run from the repo root)."""
import csv, os, sys, json
from pathlib import Path
import numpy as np
sys.path.insert(0, os.getcwd()); sys.path.insert(0, "bench")
import head_mask_experiment as H
from doorstep.models import INTENTS
shared = Path("/work/shared")
rows = H.head_rows(shared)
texts = {r["tweet_id"]: r["text"] for r in csv.DictReader(open(shared/"data/twcs-sample/twcs_sample.csv"))}
rel = {texts[r["tweet_id"]]: r["new_intent"] for r in csv.DictReader(open("classifiers/twcs_relabels.csv")) if r["split"] == "train"}
changed = 0
rows2 = []
for r in rows:
    r = dict(r)
    if r["source"] == "twcs-train" and r["text"] in rel and INTENTS[r["intent"]] != rel[r["text"]]:
        r["intent"] = INTENTS.index(rel[r["text"]]); changed += 1
    rows2.append(r)
print("relabelled training rows:", changed)
pooled, prior = H.embeddings(rows, "plain")
t = [r["text"] for r in rows]
gold, p0 = H.oof(rows, pooled, prior, t, False)
gold2, p1 = H.oof(rows2, pooled, prior, t, False)
assert (gold == gold2).all()
a, b = p0.argmax(1), p1.argmax(1)
rng = np.random.default_rng(7); n = len(gold); idx = [rng.integers(0, n, n) for _ in range(1000)]
rep = {}
for name, m in H.METRICS.items():
    for v, p in (("plain", a), ("relabelled", b)):
        rep[f"{v} {name}"] = [round(m(gold, p), 3), *np.round(np.percentile([m(gold[i], p[i]) for i in idx], [2.5, 97.5]), 3).tolist()]
    rep[f"relabelled-plain {name}"] = [round(m(gold, b) - m(gold, a), 3), *np.round(np.percentile([m(gold[i], b[i]) - m(gold[i], a[i]) for i in idx], [2.5, 97.5]), 3).tolist()]
for k, v in rep.items(): print(f"{k:34s} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]")
json.dump(rep, open("/tmp/triage-cache/relabel-report.json", "w"), indent=1)
