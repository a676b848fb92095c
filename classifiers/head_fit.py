"""Fit the care-tweet intent head (:mod:`classifiers.intent_head`) onto a built model folder.

Run by ``doorstep train`` after the encoder is exported, and alone by ``doorstep train --head-only``
(seconds, not a rebuild: the encoder stays, only the head is refitted, e.g. with agents'
corrections).

Training rows (intent labels only):

* ``classifiers/twcs_labels.csv``'s *train* split (real care tweets, labelled here), weight 1;
* the 220 hand-labelled real care tweets of ``../shared/data/twcs-labelled`` (labelled with its
  LABELLING_GUIDE.md), weight 1;
* the team's written delivery posts (one fill each), weight 1;
* agents' corrections, weight 3;
* with ``reviews`` on, our intent labels of CESAMARD's packaging and service reviews
  (:func:`classifiers.train.load_review_intents`), weight 1; ``reviews`` may instead name the
  intents whose reviews are fitted on (the others are left out);
* with ``parcel_tweets`` on, our labels of the TweetEval training tweets that mention parcels
  (:func:`classifiers.train.load_parcel_tweets`), weight 1.

Bitext's synthetic requests are left out: the encoder's own intent head (the head's prior) has
learnt them already, and its held-out tenth must stay unseen for ``doorstep evaluate``.

The twcs *validation* and *test* splits are never fitted on: ``doorstep evaluate`` scores them.
The 220 labelled tweets are both trained on and scored, so they are scored **out of fold**:
five folds by customer; each fold's tweets are predicted by a head fitted without them, and those
predictions are stored in ``real_tweet_cv.json`` for ``doorstep evaluate``. The calibration power
is fitted on the same out-of-fold predictions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from doorstep.models import INTENTS

from classifiers.intent_head import HEAD_FILE, fit_head, fit_temperature, temper

CV_FILE = "real_tweet_cv.json"
FOLDS = 5
FOLD_SEED = 0
#: Per-source weights of the head's training rows (chosen by out-of-fold scores, MODEL_CARD.md).
SOURCE_WEIGHTS = {"twcs-train": 1.0, "twcs-labelled": 1.0, "delivery": 1.0, "feedback": 3.0, "review": 1.0,
                  "parcel-tweet": 1.0, "random-other": 1.0}


def labelled_tweets(shared: Path) -> list[dict[str, Any]]:
    """The hand-labelled real care tweets of ``../shared/data/twcs-labelled`` (read in place, never copied)."""
    path = shared / "data" / "twcs-labelled" / "twcs_labelled.jsonl"
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("intent") not in INTENTS:
            raise ValueError(f"{path}: line {n}: field 'intent' has unknown value {row.get('intent')!r}")
        rows.append(row)
    return rows


def customer_folds(authors: Iterable[str], folds: int = FOLDS, seed: int = FOLD_SEED) -> dict[str, int]:
    """Fold of each customer: all of one customer's tweets fall in one fold."""
    unique = sorted(set(authors))
    rng = np.random.default_rng(seed)
    rng.shuffle(unique)
    return {a: i % folds for i, a in enumerate(unique)}


def row_folds(rows: list[dict[str, Any]]) -> np.ndarray:
    """The fold each head row is held out in: a labelled real tweet its customer's (:func:`customer_folds`); a
    row of another source with the same text (the team's correction of that very tweet, weight 3) the same fold,
    so the out-of-fold figure never sees a tweet's own label (real-posts audit: 0.659 where 0.636 was true); any
    other row -1, trained in every fold."""
    def key(text: str) -> str:
        return " ".join(text.split()).casefold()

    folds = customer_folds(r["group"] for r in rows if r["source"] == "twcs-labelled")
    by_text = {key(r["text"]): folds[r["group"]] for r in rows if r["source"] == "twcs-labelled"}
    return np.array([folds[r["group"]] if r["source"] == "twcs-labelled" else by_text.get(key(r["text"]), -1)
                     for r in rows])


def head_rows(shared: Path, feedback_rows: Iterable[dict[str, Any]] | None = None,
              reviews: bool | Collection[str] = False, parcel_tweets: bool = False,
              random_other: bool = False) -> list[dict[str, Any]]:
    """Every row the head is fitted on: text, intent index, source, group (customer, for the folds).

    ``random_other``: the negative random training tweets we labelled not a complaint, as ``other`` (guide section 8:
    mood, news, generic anger with no stated issue), so a post about nothing a shop does is not read as about a
    service (issue 15, fifteenth round). A parcel tweet keeps its own label."""
    from classifiers.delivery_examples import training_examples
    from classifiers.train import (feedback_examples, load_parcel_tweets, load_random_complaints, load_review_intents,
                                   load_twcs_labels)

    rows: list[dict[str, Any]] = []
    for e in load_twcs_labels(shared, "train"):
        if e.intent >= 0:
            rows.append({"text": e.text, "intent": e.intent, "source": "twcs-train", "group": ""})
    for r in labelled_tweets(shared):
        rows.append({"text": r["text"], "intent": INTENTS.index(r["intent"]), "source": "twcs-labelled",
                     "group": str(r["author_id"]), "tweet_id": str(r["tweet_id"])})
    for d in training_examples(copies=1):
        rows.append({"text": d.text, "intent": INTENTS.index(d.intent), "source": "delivery", "group": ""})
    if reviews:
        kept = set(INTENTS) if reviews is True else set(reviews)
        for e in load_review_intents(shared):
            if INTENTS[e.intent] in kept:
                rows.append({"text": e.text, "intent": e.intent, "source": "review", "group": ""})
    if parcel_tweets:
        for e in load_parcel_tweets(shared):
            rows.append({"text": e.text, "intent": e.intent, "source": "parcel-tweet", "group": ""})
    if random_other:
        parcel = {e.text for e in load_parcel_tweets(shared)}
        for r in load_random_complaints(shared, "tweeteval_train"):
            if r["complaint"] == 0 and r["sentiment"] == "negative" and r["text"] not in parcel:
                rows.append({"text": r["text"], "intent": INTENTS.index("other"), "source": "random-other", "group": ""})
    if feedback_rows is not None:
        for e in feedback_examples(feedback_rows, SOURCE_WEIGHTS["feedback"]):
            if e.intent >= 0:
                rows.append({"text": e.text, "intent": e.intent, "source": "feedback", "group": ""})
    return rows


def encode(classifier: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(pooled vectors, calibrated log-probabilities of the encoder's own intent head)."""
    from classifiers.onnx_backend import prepare_text, softmax

    logits = classifier._logits([prepare_text(t or "") for t in texts])
    prior = np.log(np.maximum(softmax(logits["intent"], classifier.temperatures["intent"]), 1e-12))
    return logits["pooled"], prior


def fit_into(model_dir: str | os.PathLike[str], shared: Path, feedback_rows: Iterable[dict[str, Any]] | None = None,
             log: Callable[[str], None] = print, cross_validate: bool = True,
             temperature: float | None = None, reviews: bool | Collection[str] | None = None,
             parcel_tweets: bool | None = None, random_other: bool | None = None) -> dict[str, Any]:
    """Fit the head on the model in ``model_dir``, write ``intent_head.json`` and ``real_tweet_cv.json``.

    ``cross_validate=False`` (the feedback study) skips the five out-of-fold fits and keeps
    ``temperature`` (default: 1.0) instead of fitting one; no ``real_tweet_cv.json`` is written.
    ``reviews`` (the labelled CESAMARD reviews, see :func:`head_rows`) defaults to what the model's
    recipe says (``review_intents`` in its ``config.json``), so a refit keeps the rows it was built with;
    ``parcel_tweets`` and ``random_other`` likewise (the same names in the recipe)."""
    from classifiers.onnx_backend import OnnxClassifier, prepare_text

    model_dir = Path(model_dir)
    recipe = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("recipe") or {}
    if reviews is None:
        reviews = bool(recipe.get("review_intents", False))
    if parcel_tweets is None:
        parcel_tweets = bool(recipe.get("parcel_tweets", False))
    if random_other is None:
        random_other = bool(recipe.get("random_other", False))
    # Every row read (and the corrections checked) before the folder is touched: a bad correction must not
    # leave a model without its head (review audit, finding 4).
    rows = head_rows(shared, feedback_rows, reviews, parcel_tweets, random_other)
    add_pooled_output(model_dir / "model.onnx")
    head_path = model_dir / HEAD_FILE
    if head_path.exists():
        head_path.unlink()  # encode with the encoder alone
    classifier = OnnxClassifier(model_dir)
    classifier._outputs.append("pooled")
    texts = [prepare_text(r["text"]) for r in rows]
    pooled, prior = encode(classifier, [r["text"] for r in rows])
    y = np.array([r["intent"] for r in rows])
    weights = np.array([SOURCE_WEIGHTS[r["source"]] for r in rows])
    labelled = np.array([r["source"] == "twcs-labelled" for r in rows])
    fold = row_folds(rows)
    log(f"intent head: {len(rows)} rows; {labelled.sum()} labelled real tweets in {FOLDS} folds by customer")

    def fit(mask: np.ndarray) -> Any:
        return fit_head(pooled[mask], [t for t, m in zip(texts, mask) if m], y[mask], weights[mask], prior=prior[mask])

    if not cross_validate:
        head = fit(np.ones(len(rows), dtype=bool))
        head.temperature = temperature or 1.0
        head.info = {"rows": {s: int(sum(r["source"] == s for r in rows)) for s in SOURCE_WEIGHTS},
                     "source_weights": SOURCE_WEIGHTS, "cross_validated": False}
        head.save(model_dir)
        (model_dir / CV_FILE).unlink(missing_ok=True)
        return {"temperature": head.temperature, **head.info}
    oof = np.zeros((len(rows), len(INTENTS)))
    for k in range(FOLDS):
        held = labelled & (fold == k)
        head = fit(fold != k)  # the fold's tweets and every row with one of their texts left out
        oof[held] = head.raw_probabilities(pooled[held], [t for t, m in zip(texts, held) if m], prior[held])
    temperature = fit_temperature(oof[labelled], y[labelled])
    if recipe.get("guide_tweets"):
        log("intent head: warning: the encoder trained on the 220 guide tweets, so this calibration power (fitted on "
            "them) is overconfident; score them with one encoder per fold (bench/encoder_experiment.py guide-cv)")
    head = fit(np.ones(len(rows), dtype=bool))
    head.temperature = temperature
    head.info = {"rows": {s: int(sum(r["source"] == s for r in rows)) for s in SOURCE_WEIGHTS},
                 "source_weights": SOURCE_WEIGHTS, "folds": FOLDS, "fold_seed": FOLD_SEED}
    head.save(model_dir)
    calibrated = temper(oof[labelled], temperature)
    cv = {"what": "out-of-fold intent probabilities of the 220 hand-labelled twcs tweets (5 folds by customer)",
          "labels": list(INTENTS),
          "rows": [{"tweet_id": r["tweet_id"], "intent_scores": [round(float(p), 5) for p in probs]}
                   for r, probs in zip((r for r in rows if r["source"] == "twcs-labelled"), calibrated)]}
    (model_dir / CV_FILE).write_text(json.dumps(cv) + "\n", encoding="utf-8")
    accuracy = float(np.mean(calibrated.argmax(1) == y[labelled]))
    log(f"intent head: temperature {temperature:.2f}; out-of-fold accuracy on the labelled real tweets {accuracy:.3f}")
    return {"temperature": temperature, "oof_accuracy": accuracy, **head.info}


def add_pooled_output(onnx_path: Path) -> None:
    """Expose the encoder's mean-pooled vector as a ``pooled`` output (idempotent).

    The pooled tensor is the input the three heads share: walk back from ``intent_logits`` to
    the node that quantises (int8 export) or multiplies (float export) it."""
    import onnx

    model = onnx.load(str(onnx_path))
    graph = model.graph
    if any(o.name == "pooled" for o in graph.output):
        return
    producer = {out: node for node in graph.node for out in node.output}
    name = "intent_logits"
    for _ in range(12):
        node = producer.get(name)
        if node is None:
            break
        if node.op_type in ("DynamicQuantizeLinear", "Gemm", "MatMul"):
            name = node.input[0]
            graph.node.append(onnx.helper.make_node("Identity", [name], ["pooled"], name="pooled_identity"))
            graph.output.append(onnx.helper.make_tensor_value_info("pooled", onnx.TensorProto.FLOAT, None))
            onnx.save(model, str(onnx_path))
            return
        # Add(matmul, bias) / Mul(cast, scale) / Cast(matmul_integer) / MatMulInteger(x_quantized, ...)
        name = next((i for i in node.input if i in producer and not i.startswith("heads.")), node.input[0])
    raise ValueError(f"{onnx_path}: could not find the pooled vector that feeds intent_logits")
