"""Issue 15 experiment: the intent *decision* of the care-tweet head — argmax of the mixed 10 scores (v7)
against a hierarchical decision (delivery group first, then the intent within the group).

The head mixes a binary delivery head q with a 10-way head: P(delivery intent i) = q * p_i / sum_delivery p,
so the summed delivery score of the raw mixture is exactly q. v7 takes the argmax of the 10 mixed scores,
so a post with q = 0.66 can still come out `other` when its delivery mass is spread over five intents.
Pre-declared candidate (nothing tuned): **hierarchical** = if the raw mixture's summed delivery score
(= q) >= 0.5, the argmax within the five delivery intents, else the argmax within the other five. The
temperature (a power on the mixture) never changes the order within a group, so the decision does not
depend on it.

Scored as the shipped head is (``classifiers.head_fit.fit_into``): the 220 guide-labelled real tweets
out of fold (5 folds by customer, every other training row always in), and the twcs validation/test
splits of ``classifiers/twcs_labels.csv`` (never fitted on) by one head fitted on every training row.
Figures: point and 95% bootstrap interval (1,000 resamples of the posts, seed 7), and the paired
difference candidate - v7 on the same resamples (``_common.paired``).

Metrics: ``delivery_f1`` (any of the five delivery intents or not), ``intent_macro_f1`` (the experiments'
harness: classes present in gold *or* prediction), ``intent_macro_f1_gold`` (``doorstep evaluate``'s:
classes present in gold; the main table of MODEL_CARD.md), ``intent_accuracy``.

Run from the repo root: ``PYTHONPATH=$PWD python bench/head_decision_experiment.py [--recipe v7]``; report in
/tmp/triage-cache/decision-report[-v7].json. The head recipe is the shipped one (v7.1: the written posts
relabelled per the guide); ``--recipe v7`` refits v7's (their old labels, bags/luggage as counter-evidence),
which is what the decision was pre-declared against (MODEL_CARD.md, "How v7 was chosen"). Other experiments import :func:`evaluate_recipe` from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from _common import CACHE, embeddings, f1, head_arrays, paired, pooled_classifier, print_report, shared_dir
from doorstep.models import INTENTS
from classifiers.head_fit import FOLDS, encode, head_rows
from classifiers.intent_head import EVIDENCE, N_DELIVERY, fit_head, fit_temperature, temper
from classifiers.onnx_backend import prepare_text

SPLITS = ("validation", "test")


def macro(gold: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([f1(gold == c, pred == c) for c in range(len(INTENTS)) if np.any(gold == c) or np.any(pred == c)]))


def macro_gold(gold: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([f1(gold == c, pred == c) for c in range(len(INTENTS)) if np.any(gold == c)]))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "delivery_f1": lambda g, p: f1(g < N_DELIVERY, p < N_DELIVERY),
    "intent_macro_f1": macro,
    "intent_macro_f1_gold": macro_gold,
    "intent_accuracy": lambda g, p: float(np.mean(g == p)),
}


def argmax_decision(raw: np.ndarray, temperature: float) -> np.ndarray:
    return raw.argmax(1)


def hierarchical_decision(raw: np.ndarray, temperature: float) -> np.ndarray:
    """The brief's rule on the scores ``classify`` returns (the tempered mixture): delivery group when the
    summed delivery score >= 0.5, then the argmax within the group."""
    return _within_group(raw, temper(raw, temperature)[:, :N_DELIVERY].sum(1) >= 0.5)


def hierarchical_q_decision(raw: np.ndarray, temperature: float) -> np.ndarray:
    """The same rule on the raw mixture, whose summed delivery score is the delivery head's q."""
    return _within_group(raw, raw[:, :N_DELIVERY].sum(1) >= 0.5)


def _within_group(raw: np.ndarray, delivery: np.ndarray) -> np.ndarray:
    return np.where(delivery, raw[:, :N_DELIVERY].argmax(1), N_DELIVERY + raw[:, N_DELIVERY:].argmax(1))


def split_data(split: str) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Gold intents, texts, pooled vectors and priors of a twcs split's tweets with an intent (cached)."""
    from classifiers.train import load_twcs_labels

    examples = [e for e in load_twcs_labels(shared_dir(), split) if e.intent >= 0]
    texts = [e.text for e in examples]
    import hashlib

    path = CACHE / f"pooled-twcs-{split}-{hashlib.sha1(chr(0).join(texts).encode('utf-8')).hexdigest()[:12]}.npz"
    if path.exists():
        z = np.load(path)
        pooled, prior = z["pooled"], z["prior"]
    else:
        clf = pooled_classifier()
        parts = [encode(clf, texts[i:i + 256]) for i in range(0, len(texts), 256)]
        pooled, prior = np.vstack([p for p, _ in parts]), np.vstack([q for _, q in parts])
        np.savez(path, pooled=pooled, prior=prior)
    return np.array([e.intent for e in examples]), texts, pooled, prior


def evaluate_recipe(rows: Sequence[dict], pooled: np.ndarray, prior: np.ndarray,
                    patterns: Sequence[str] = EVIDENCE) -> dict[str, Any]:
    """v7's head recipe on ``rows``: out-of-fold raw mixtures of the 220 guide tweets, the fitted
    temperature, and the raw mixtures of the twcs validation/test splits from one head fitted on all rows."""
    y, w, lab, fold = head_arrays(rows)
    texts = [prepare_text(r["text"]) for r in rows]
    oof = np.zeros((len(rows), len(INTENTS)))
    for k in range(FOLDS):
        held = lab & (fold == k)
        tr = ~held
        head = fit_head(pooled[tr], [a for a, m in zip(texts, tr) if m], y[tr], w[tr], prior=prior[tr], patterns=patterns)
        oof[held] = head.raw_probabilities(pooled[held], [a for a, m in zip(texts, held) if m], prior[held])
    out: dict[str, Any] = {"guide": (y[lab], oof[lab])}
    out["temperature"] = fit_temperature(oof[lab], y[lab])
    head = fit_head(pooled, texts, y, w, prior=prior, patterns=patterns)
    for split in SPLITS:
        gold, stexts, spooled, sprior = split_data(split)
        out[split] = (gold, head.raw_probabilities(spooled, [prepare_text(t) for t in stexts], sprior))
    return out


def compare(base: dict[str, Any], cand: dict[str, Any], base_decision: Callable, cand_decision: Callable,
            names: tuple[str, str, str]) -> dict[str, Any]:
    """Paired figures of every metric on the 220 (out of fold) and on each twcs split."""
    report: dict[str, Any] = {}
    for key, label in (("guide", "twcs_guide (220, out of fold)"), *((s, f"twcs {s}") for s in SPLITS)):
        gold, raw0 = base[key]
        gold1, raw1 = cand[key]
        assert (gold == gold1).all()
        report[label] = paired(METRICS, gold, base_decision(raw0, base["temperature"]),
                               cand_decision(raw1, cand["temperature"]), names)
        report[label]["n"] = int(len(gold))
    return report


def ece(probs: np.ndarray, pred: np.ndarray, gold: np.ndarray, bins: int = 15) -> float:
    from classifiers.evaluate import ece as _ece

    return _ece(probs[np.arange(len(pred)), pred], pred == gold, bins)


def show(report: dict[str, Any]) -> None:
    for label, figures in report.items():
        if isinstance(figures, dict) and "n" in figures:
            print(f"== {label} (n={figures['n']})")
            print_report(figures, 44)
        elif isinstance(figures, dict):
            print(f"== {label}")
            for k, v in figures.items():
                print(f"  {k}: {v}")
        else:
            print(f"{label}: {figures}")


def main() -> None:
    import sys

    rows, pooled, prior = embeddings_rows()
    patterns, recipe = EVIDENCE, "shipped"
    if sys.argv[1:] == ["--recipe", "v7"]:
        from head_written_relabel_experiment import COUNTER_EVIDENCE_NEW, COUNTER_EVIDENCE_OLD, relabelled

        rows, recipe = relabelled(rows, "old"), "v7"
        patterns = tuple(COUNTER_EVIDENCE_OLD if p == COUNTER_EVIDENCE_NEW else p for p in EVIDENCE)
    print(f"{len(rows)} head rows; {sum(r['source'] == 'twcs-labelled' for r in rows)} labelled real tweets; "
          f"head recipe: {recipe}", flush=True)
    res = evaluate_recipe(rows, pooled, prior, patterns)
    report = {
        "hierarchical (summed tempered delivery score >= 0.5; the brief's rule)":
            compare(res, res, argmax_decision, hierarchical_decision, ("argmax", "hierarchical", "hierarchical-argmax")),
        "hierarchical on q (raw mixture's delivery mass >= 0.5)":
            compare(res, res, argmax_decision, hierarchical_q_decision, ("argmax", "hierarchical-q", "hierarchical-q-argmax")),
    }
    gold, raw = res["guide"]
    tempered = temper(raw, res["temperature"])
    a = argmax_decision(raw, res["temperature"])
    diag: dict[str, Any] = {"temperature (fitted out of fold, as fit_into does)": round(res["temperature"], 3),
                            "intent ECE (tempered, argmax)": round(ece(tempered, a, gold), 3)}
    for name, decide in (("hierarchical", hierarchical_decision), ("hierarchical-q", hierarchical_q_decision)):
        h = decide(raw, res["temperature"])
        changed = a != h
        diag[f"{name}: guide posts whose intent changes / now right / were right"] = [
            int(changed.sum()), int((changed & (h == gold)).sum()), int((changed & (a == gold)).sum())]
        diag[f"{name}: changed posts that are delivery posts in gold"] = int((changed & (gold < N_DELIVERY)).sum())
        diag[f"{name}: share with chosen intent's score < 0.40 (needs_review), argmax / {name}"] = [
            round(float(np.mean(tempered[np.arange(len(a)), a] < 0.4)), 3),
            round(float(np.mean(tempered[np.arange(len(h)), h] < 0.4)), 3)]
    gold_d = gold < N_DELIVERY
    diag["delivery posts missed by argmax (gold delivery, predicted not)"] = int((gold_d & (a >= N_DELIVERY)).sum())
    diag["  of them with summed tempered delivery score >= 0.5 / with q >= 0.5"] = [
        int((gold_d & (a >= N_DELIVERY) & (tempered[:, :N_DELIVERY].sum(1) >= 0.5)).sum()),
        int((gold_d & (a >= N_DELIVERY) & (raw[:, :N_DELIVERY].sum(1) >= 0.5)).sum())]
    report["diagnostics"] = diag
    for name, r in report.items():
        print(f"######## {name}")
        show(r)
    (CACHE / f"decision-report{'-v7' if recipe == 'v7' else ''}.json").write_text(json.dumps(report, indent=1))


def embeddings_rows() -> tuple[list[dict], np.ndarray, np.ndarray]:
    rows = head_rows(shared_dir())
    pooled, prior = embeddings(rows, "plain")
    return rows, pooled, prior


if __name__ == "__main__":
    main()
