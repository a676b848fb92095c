"""Plug in any Hugging Face sequence-classification model (``transformers:<dir-or-id>``).

Why: a team with internet and a bigger machine may prefer e.g. a RoBERTa tweet-sentiment
model to the shipped MiniLM. This backend loads a local directory or a hub id with
``AutoTokenizer``/``AutoModelForSequenceClassification`` (needs the ``train`` extras: torch,
transformers) and maps what the model knows onto :class:`Labels`:

* **sentiment** from the model's labels, read through ``config.id2label``: names such as
  negative/neutral/positive (or neg/neu/pos, or 1-5 "stars") are matched by name; a 3-label
  model whose labels are the anonymous ``LABEL_0..2`` is taken as negative/neutral/positive in
  that order (the convention of the common tweet-sentiment models); a 2-label model has no
  neutral (its neutral score is 0).
* **complaint** from a label named ``complaint`` when the model has one, else the negative
  probability (sentiment transfer: most complaints are negative).
* **intent** is ``other`` with probability 1: a generic model does not know our intents.
* **urgency** with the same formula as the ONNX backend; **needs_review** when the post has no
  words, looks non-English, or the top sentiment probability is under 0.5.

Natural-language-inference (zero-shot) models are refused with a clear message: they need
one forward pass per candidate label and are a different integration.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from doorstep.models import INTENTS, SENTIMENTS, Labels

from classifiers.onnx_backend import prepare_text, readable_and_english, urgency

#: Label names (lower-cased) that mean each sentiment.
_SENTIMENT_NAMES: dict[str, str] = {
    "negative": "negative", "neg": "negative", "label_negative": "negative",
    "neutral": "neutral", "neu": "neutral",
    "positive": "positive", "pos": "positive",
    "1 star": "negative", "2 stars": "negative", "3 stars": "neutral", "4 stars": "positive", "5 stars": "positive",
}
_NLI_NAMES = {"entailment", "contradiction", "not_entailment"}
_ANONYMOUS = re.compile(r"^label_\d+$")
REVIEW_BELOW = 0.5


def label_mapping(id2label: dict[int, str]) -> tuple[dict[int, str], int | None]:
    """Model label index -> our sentiment, and the index of a complaint label if there is one."""
    names = {int(i): str(name).strip().lower() for i, name in id2label.items()}
    if set(names.values()) & _NLI_NAMES:
        raise ValueError(
            "this looks like an NLI (zero-shot) model (labels: "
            f"{sorted(names.values())}); the transformers backend needs a sentiment classification model"
        )
    complaint_index = next((i for i, n in names.items() if n in ("complaint", "is_complaint", "yes_complaint")), None)
    mapping = {i: _SENTIMENT_NAMES[n] for i, n in names.items() if n in _SENTIMENT_NAMES}
    if not mapping and len(names) == 3 and all(_ANONYMOUS.match(n) for n in names.values()):
        mapping = {i: SENTIMENTS[i] for i in sorted(names)}
    if not mapping:
        raise ValueError(
            f"cannot map the model's labels {sorted(names.values())} to sentiment: expected names like "
            "negative/neutral/positive (or three anonymous LABEL_0..2 in that order)"
        )
    return mapping, complaint_index


class TransformersClassifier:
    """A Hugging Face classification model as a :class:`classifiers.Classifier`."""

    def __init__(self, model: str, *, batch_size: int = 32, max_length: int = 128, threads: int | None = 2):
        if not model:
            raise ValueError("transformers backend needs a model directory or Hugging Face id")
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:  # optional extras
            raise ValueError(f"the transformers backend needs the 'train' extras (torch, transformers): {exc}") from exc
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForSequenceClassification.from_pretrained(model)
        self.model.eval()
        self.mapping, self.complaint_index = label_mapping(dict(self.model.config.id2label))
        self.batch_size = batch_size
        # Never past what the model can embed (small local models may have few positions).
        limits = [max_length, getattr(self.model.config, "max_position_embeddings", max_length)]
        if 0 < getattr(self.tokenizer, "model_max_length", 0) < 100_000:
            limits.append(self.tokenizer.model_max_length)
        self.max_length = min(limits)
        self.name = f"transformers:{model}"

    def _probabilities(self, texts: Sequence[str]) -> list[list[float]]:
        torch = self._torch
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = [prepare_text(t or "") or "." for t in texts[start : start + self.batch_size]]
            encoded = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            with torch.no_grad():
                logits = self.model(**encoded).logits
            out.extend(torch.softmax(logits.float(), dim=-1).tolist())
        return out

    def classify(self, texts: Sequence[str]) -> list[Labels]:
        if not texts:
            return []
        return [self._labels(text, probs) for text, probs in zip(texts, self._probabilities(texts))]

    def _labels(self, text: str, probs: list[float]) -> Labels:
        sentiment_scores = dict.fromkeys(SENTIMENTS, 0.0)
        for index, name in self.mapping.items():
            sentiment_scores[name] += probs[index]
        total = sum(sentiment_scores.values()) or 1.0
        sentiment_scores = {k: v / total for k, v in sentiment_scores.items()}
        sentiment = max(SENTIMENTS, key=sentiment_scores.__getitem__)
        if self.complaint_index is not None:
            complaint_score = float(probs[self.complaint_index])
        else:
            complaint_score = sentiment_scores["negative"]
        complaint_score = min(1.0, max(0.0, complaint_score))
        intent_scores = {intent: (1.0 if intent == "other" else 0.0) for intent in INTENTS}
        prepared = prepare_text(text or "")
        readable, english = readable_and_english(prepared)
        scores = {
            "sentiment": sentiment_scores,
            "complaint": {"no": 1 - complaint_score, "yes": complaint_score},
            "intent": intent_scores,
        }
        return Labels(
            sentiment=sentiment,
            sentiment_scores=sentiment_scores,
            complaint=complaint_score >= 0.5,
            complaint_score=complaint_score,
            intent="other",
            intent_scores=intent_scores,
            urgency=urgency(scores, prepared),
            needs_review=not readable or not english or sentiment_scores[sentiment] < REVIEW_BELOW,
            model=self.name,
        )
