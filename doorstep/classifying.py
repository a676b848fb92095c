"""What the core needs of a classifier, and the one place that decides what a classifier is told.

The classifiers package implements :class:`Classifier`; the core cannot import that package, so the
protocol lives here. Whether a post is written to someone (:attr:`doorstep.models.Mention.addressed`)
is a fact its text may not show (a reply that dropped the @handle, a private message). Only a
classifier that says ``reads_addressed = True`` takes it; every other keeps the one-argument
``classify``. :func:`classify_texts` is that rule, used by the pipeline, the file import, the job
queue, the dialogue and ``classifiers.classify`` alike, so it is written once. This module imports
nothing heavier than :mod:`doorstep.models`, so ``doorstep classify`` starts as fast as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from doorstep.models import Labels, Mention


class Classifier(Protocol):
    """What the pipeline needs of a classifier (``classifiers.Classifier``). One that says
    ``reads_addressed = True`` also takes ``classify(texts, addressed=[...])``."""

    name: str

    def classify(self, texts: Sequence[str]) -> list[Labels]: ...


def classify_texts(classifier: Classifier, texts: Sequence[str],
                   addressed: Sequence[bool | None] | None) -> list[Labels]:
    """The labels of ``texts``, one each, in order. A classifier that reads the thread
    (``reads_addressed``) is told which posts are written to someone (``addressed``, one per text);
    any other, or any call without ``addressed``, gets the texts alone."""
    if addressed is not None and getattr(classifier, "reads_addressed", False):
        return classifier.classify(texts, addressed=addressed)  # type: ignore[call-arg]
    return classifier.classify(texts)


def classify_mentions(classifier: Classifier, mentions: Sequence[Mention]) -> list[Labels]:
    """:func:`classify_texts` for posts a listener collected (:attr:`Mention.addressed`)."""
    return classify_texts(classifier, [m.text for m in mentions], [m.addressed for m in mentions])
