"""Issue 15 experiment: the head refitted with the recorded train-split relabels (classifiers/twcs_relabels.csv)
against the shipped configuration, same out-of-fold scoring as bench/head_mask_experiment.py (run from the repo root)."""
import csv
import json

from _common import CACHE, head_data, paired, print_report, shared_dir
from doorstep.models import INTENTS
from head_mask_experiment import METRICS, oof

rows, pooled, prior = head_data()
texts = {r["tweet_id"]: r["text"] for r in csv.DictReader(open(shared_dir() / "data/twcs-sample/twcs_sample.csv"))}
rel = {texts[r["tweet_id"]]: r["new_intent"] for r in csv.DictReader(open("classifiers/twcs_relabels.csv")) if r["split"] == "train"}
changed = 0
rows2 = []
for r in rows:
    r = dict(r)
    if r["source"] == "twcs-train" and r["text"] in rel and INTENTS[r["intent"]] != rel[r["text"]]:
        r["intent"] = INTENTS.index(rel[r["text"]]); changed += 1
    rows2.append(r)
print("relabelled training rows:", changed)
t = [r["text"] for r in rows]
gold, p0 = oof(rows, pooled, prior, t, False)
gold2, p1 = oof(rows2, pooled, prior, t, False)
assert (gold == gold2).all()
rep = paired(METRICS, gold, p0.argmax(1), p1.argmax(1), ("plain", "relabelled", "relabelled-plain"))
print_report(rep, 34)
json.dump(rep, open(CACHE / "relabel-report.json", "w"), indent=1)
