"""Issue 15 experiment: the team's written training posts (classifiers/delivery_examples.py) whose intent
contradicts ../shared/data/twcs-labelled/LABELLING_GUIDE.md, relabelled per the guide, and the delivery
head's counter-evidence pattern read against the guide.

Candidates (pre-declared, nothing tuned; each against v7's recipe refitted in the same run, paired):

* **R** -- the written training posts of :data:`GUIDE_RELABELS` get the guide's intent (the encoder is
  not retrained; only the head's training rows change; texts and their handle fills are unchanged);
* **R+P** -- R, and the counter-evidence pattern of ``classifiers.intent_head.EVIDENCE`` without
  ``bag(gage)?|luggage``: the guide puts airline lost baggage in lost_or_missing (section 3) and damaged
  luggage in damaged_or_wrong (section 4), so bags are not counter-evidence; flights, trains and rides
  stay (sections 5 and 7: they are not deliveries);
* diagnostic only (not eligible to ship): **R-food**, the food post alone.

Scoring and metrics as ``bench/head_decision_experiment.py`` (the 220 out of fold; twcs validation/test
by one head fitted on all rows; argmax decision). Run from the repo root with ``PYTHONPATH=$PWD``;
report in /tmp/triage-cache/written-relabel-report.json.
"""

from __future__ import annotations

import json

from _common import CACHE
from doorstep.models import INTENTS
from classifiers.delivery_examples import GUIDE_RELABELS as _GUIDE_RELABELS
from classifiers.intent_head import EVIDENCE
from head_decision_experiment import argmax_decision, compare, embeddings_rows, evaluate_recipe, show

#: written training post -> (label it had, the guide's label, guide section); shipped in v7.1
GUIDE_RELABELS = _GUIDE_RELABELS
FOOD = {"my deliveroo order took 90 mins and the chips were cold lol never again"}

COUNTER_EVIDENCE_OLD = r"\b(flight|train|bag(gage)?|luggage|uber|lyft|ride)\b"
COUNTER_EVIDENCE_NEW = r"\b(flight|train|uber|lyft|ride)\b"


def relabelled(rows: list[dict], which: str) -> list[dict]:
    """``rows`` with the listed written posts at their old label (``which="old"``) or the guide's (``"guide"``,
    ``"food"``: only the food post at the guide's)."""
    out, seen = [], set()
    for r in rows:
        r = dict(r)
        if r["source"] == "delivery" and r["text"] in GUIDE_RELABELS:
            old, new, _ = GUIDE_RELABELS[r["text"]]
            use = new if which == "guide" or (which == "food" and r["text"] in FOOD) else old
            r["intent"] = INTENTS.index(use)
            seen.add(r["text"])
        out.append(r)
    missing = set(GUIDE_RELABELS) - seen
    if missing:
        raise SystemExit(f"written posts not among the head's training rows: {sorted(missing)}")
    return out


def patterns_without_bags() -> tuple[str, ...]:
    pats = tuple(COUNTER_EVIDENCE_NEW if p == COUNTER_EVIDENCE_OLD else p for p in EVIDENCE)
    return pats


def main() -> None:
    rows, pooled, prior = embeddings_rows()
    base_patterns = tuple(COUNTER_EVIDENCE_OLD if p == COUNTER_EVIDENCE_NEW else p for p in EVIDENCE)
    assert COUNTER_EVIDENCE_OLD in base_patterns
    print(f"{len(rows)} head rows; relabelling {len(GUIDE_RELABELS)} written posts", flush=True)
    base = evaluate_recipe(relabelled(rows, "old"), pooled, prior, base_patterns)
    cands = {
        "R": evaluate_recipe(relabelled(rows, "guide"), pooled, prior, base_patterns),
        "R+P": evaluate_recipe(relabelled(rows, "guide"), pooled, prior, patterns_without_bags()),
        "R-food (diagnostic)": evaluate_recipe(relabelled(rows, "food"), pooled, prior, base_patterns),
    }
    report = {"relabels": {t: list(v) for t, v in GUIDE_RELABELS.items()},
              "temperatures": {"v7": round(base["temperature"], 3), **{k: round(v["temperature"], 3) for k, v in cands.items()}}}
    for name, cand in cands.items():
        report[name] = compare(base, cand, argmax_decision, argmax_decision, ("v7", name, f"{name}-v7"))
    for name, r in report.items():
        print(f"######## {name}")
        show(r) if name in cands else print(json.dumps(r, indent=1))
    (CACHE / "written-relabel-report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
