"""Issue 15, eighth round, exploratory (nothing shipped): what if a post with no @mention were read by the
complaint head alone instead of max(complaint head, P(negative))? Scores the shipped model (or the folder given)
on the real-tweet complaint sets and the 562 random TweetEval validation tweets we labelled.

    DOORSTEP_SHARED=../shared python bench/complaint_gate_measure.py [classifiers/model]

Prints complaint macro-F1 with today's rule and with the gate, and, for the posts with no @mention, how many
are complaints, how many each rule calls and how many of those calls are right (bench/RESULTS.md, "Complaints
on random tweets").
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import encoder_experiment as experiment  # noqa: E402

from classifiers.onnx_backend import MENTION, OnnxClassifier, prepare_text  # noqa: E402
from classifiers.train import load_random_complaints  # noqa: E402



def head_scores(classifier: OnnxClassifier, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(P(complaint) from the complaint head alone, P(negative)), before ``classify`` takes their max."""
    complaint, negative = [], []
    neg = classifier.labels["sentiment"].index("negative")
    for i in range(0, len(texts), 512):
        prepared = [prepare_text(t or "") for t in texts[i:i + 512]]
        finish = classifier._start(prepared)
        evidence = classifier.intent_head.evidence(prepared) if classifier.intent_head is not None else None
        probs = classifier._calibrated(finish(), prepared, evidence)
        complaint.extend(probs["complaint"][:, 1])
        negative.extend(probs["sentiment"][:, neg])
    return np.array(complaint), np.array(negative)


def main() -> None:
    classifier = OnnxClassifier(Path(sys.argv[1] if len(sys.argv) > 1 else "classifiers/model"))
    sets = experiment._label_sets()
    sets["random"] = [{"text": r["text"], "complaint": r["complaint"]}
                      for r in load_random_complaints(experiment.SHARED, "tweeteval_val")]
    for name in ("twcs_guide", "twcs_validation", "twcs_test", "airline", "random"):
        rows = [r for r in sets[name] if r.get("complaint") is not None]
        head, negative = head_scores(classifier, [r["text"] for r in rows])
        gold = np.array([r["complaint"] for r in rows])
        unaddressed = np.array([not MENTION.search(r["text"]) for r in rows])
        today = (np.maximum(head, negative) >= 0.5).astype(int)
        gated = np.where(unaddressed, head >= 0.5, today == 1).astype(int)
        print(f"{name:16s} n={len(rows):5d} macro-F1 today {experiment.macro_f1(gold, today, 2):.3f} "
              f"gated {experiment.macro_f1(gold, gated, 2):.3f} | no @mention: {unaddressed.sum()}, "
              f"complaints {gold[unaddressed].sum()}, called today {today[unaddressed].sum()} "
              f"({(today & gold)[unaddressed].sum()} right), gated {gated[unaddressed].sum()} "
              f"({(gated & gold)[unaddressed].sum()} right)")


if __name__ == "__main__":
    main()
