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

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from doorstep.models import Labels, Mention

if TYPE_CHECKING:  # typing only: importing the config would slow `doorstep classify`'s start
    from doorstep.config import Config

#: A handle named in a post: ``@name``, Mastodon's ``@name@server``, Bluesky's ``@name.bsky.social``.
HANDLE_IN_TEXT = re.compile(r"@([\w.-]+(?:@[\w.-]+)?)")


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


def names_one_of(text: str, ours: set[str]) -> bool:
    """Whether ``text`` names one of the handles ``ours`` (lower-case, no leading @): ``@name``, or Mastodon's
    ``@name@server`` by its full form or its local part."""
    for name in HANDLE_IN_TEXT.findall(text or ""):
        name = name.lower().rstrip(".-")
        if name in ours or name.split("@", 1)[0] in ours:
            return True
    return False


def addressed_flags(mentions: Sequence[Mention], config: Config | None = None) -> list[bool]:
    """Whether each post is written to us, in order (what a classifier that reads it is told): :attr:`Mention.addressed`
    (a reply, a private message, a post that reached one of our accounts) or its text names one of our brand or
    courier handles on its channel (:meth:`Config.listened_handles`, looked up once per channel), so a keyword-search
    hit "@OurShopHelp still nothing" counts and "@bestie ugh" does not, whichever listener found it (issue 15,
    eighteenth round). Without ``config``, only :attr:`Mention.addressed`."""
    handles: dict[str, set[str]] = {}
    flags = []
    for m in mentions:
        if m.addressed or config is None:
            flags.append(m.addressed)
            continue
        if m.channel not in handles:
            handles[m.channel] = config.listened_handles(m.channel)
        flags.append(bool(handles[m.channel]) and names_one_of(m.text, handles[m.channel]))
    return flags


def classify_mentions(classifier: Classifier, mentions: Sequence[Mention], config: Config | None = None) -> list[Labels]:
    """:func:`classify_texts` for posts a listener collected, told which are written to us (:func:`addressed_flags`)."""
    return classify_texts(classifier, [m.text for m in mentions], addressed_flags(mentions, config))
