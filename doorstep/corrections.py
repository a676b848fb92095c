"""An agent's review of a post's labels: the one action behind the review queue and the case page's
"Correct labels" form.

Why one action: a review has three effects that must not drift apart between the pages that offer it.

* **The post** takes the agent's labels and leaves "needs review" (the inbox flag goes, the review
  queue moves on).
* **Its case** is scored again as a new post would score it (``Pipeline.reprioritise``: intent,
  sentiment, complaint, priority and its reasons, on the case's most serious post), so the inbox
  sorts and filters on what the team corrected, and the dashboard (which counts ``mentions.intent``)
  and the inbox agree. Saved through ``Store.update_case`` like every person's change, its audit
  line saying which review caused it; a higher priority moves the SLA clocks as any priority change
  does (``sla.follow``).
* **Training** (``doorstep train --with-feedback``) reads ``label_corrections``: one row per field the
  agent saw, a changed field as a correction (old != new), an unchanged one as a confirmation
  (old = new), which the trainer counts as a confirmed example, as it always did.

The audit log holds one ``label.review`` event per review (the timeline's one sentence), not one
event per field. A review is refused, in words, when the post was reviewed or relabelled after the
agent saw it (``seen_labels``/``seen_review``): an agent's keys apply to the post they looked at, and
never confirm one they did not see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from doorstep.config import Config
from doorstep.models import INTENTS, SENTIMENTS, Case, Labels, Mention, utcnow
from doorstep.store import StaleCaseError, Store, iso

#: The fields an agent reviews, in the order the pages show them.
FIELDS = ("intent", "sentiment", "complaint")
#: What scoring a case again may change (the SLA clocks follow from ``priority``, see ``sla.follow``).
SCORED = ("intent", "sentiment", "complaint", "priority", "priority_reasons")
#: Tries when a case keeps changing under the re-score (each re-reads it).
RESCORE_TRIES = 5


class ReviewError(ValueError):
    """The review cannot be saved as asked; the message says why in one line."""


class ReviewedMeanwhile(ReviewError):
    """Someone reviewed (or the classifier relabelled) the post after the agent saw it: nothing was saved."""

    def __init__(self, mention_id: int, by: str | None) -> None:
        self.mention_id, self.by = mention_id, by
        super().__init__(f"post {mention_id} was reviewed by {by} meanwhile" if by
                         else f"post {mention_id} was relabelled meanwhile")


@dataclass
class Review:
    """What one review did."""

    mention_id: int
    #: field -> (old, new), for the fields the agent changed.
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    #: The fields the agent confirmed as the post read.
    confirmed: list[str] = field(default_factory=list)
    #: False when nothing was stored: a post already reviewed, confirmed again unchanged.
    stored: bool = True
    #: The post's case before and after it was scored again (None: no case, or nothing to score).
    case_before: Case | None = None
    case_after: Case | None = None

    def words(self) -> str:
        """What the agent is told: "post 847: 1 correction(s) saved; case 521 is now failed delivery,
        priority 79.7 (was 65.7)"."""
        if not self.stored:
            return f"post {self.mention_id}: no change (already reviewed)"
        return (f"post {self.mention_id}: {len(self.changed)} correction(s) saved" if self.changed
                else f"post {self.mention_id}: labels confirmed") + self.case_words()

    def case_words(self) -> str:
        """"; case 521 is now failed delivery, priority 57 (was 43)", or nothing when the case did not move."""
        before, after = self.case_before, self.case_after
        if before is None or after is None or (after.intent, after.priority) == (before.intent, before.priority):
            return ""
        from doorstep.cases import INTENT_LABELS

        intent = INTENT_LABELS.get(after.intent or "", (after.intent or "no intent").replace("_", " "))
        return f"; case {after.id} is now {intent}, priority {after.priority:g} (was {before.priority:g})"


def last_review(store: Store, mention_id: int) -> tuple[int, str | None]:
    """(id, who) of the post's newest ``label_corrections`` row; (0, None) for a post never reviewed.

    A page keeps the id with the post it shows and passes it as ``seen_review``."""
    row = store.db.execute("select id, corrected_by from label_corrections where mention_id = ? order by id desc "
                           "limit 1", [mention_id]).fetchone()
    return (int(row[0]), row[1]) if row else (0, None)


def correct_labels(store: Store, config: Config, mention_id: int, actor: str, *, intent: str | None = None,
                   sentiment: str | None = None, complaint: bool | None = None, seen_labels: Labels | None = None,
                   seen_review: int | None = None) -> Review:
    """Save ``actor``'s review of post ``mention_id``: the labels given (a field left None keeps the post's),
    every other field confirmed. See the module docstring for the effects.

    ``seen_labels``: the labels the agent was shown; ``seen_review``: :func:`last_review`'s id then. When
    the post's labels or its reviews differ now, :class:`ReviewedMeanwhile` is raised and nothing is
    saved. All of it is one transaction that holds the write lock before it reads, so two agents'
    reviews of one post are one after the other, and the second is refused.
    """
    if intent is not None and intent not in INTENTS:
        raise ReviewError(f"unknown intent {intent!r}: one of {', '.join(INTENTS)}")
    if sentiment is not None and sentiment not in SENTIMENTS:
        raise ReviewError(f"unknown sentiment {sentiment!r}: one of {', '.join(SENTIMENTS)}")
    with store.write_transaction():
        mention = store.get_mention(mention_id)
        if mention is None:
            raise ReviewError(f"no post {mention_id}")
        labels = mention.labels
        if labels is None or mention.outbound:
            raise ReviewError(f"post {mention_id} has no labels to review" if labels is None
                              else f"post {mention_id} is our own reply; only customers' posts are reviewed")
        newest, by = last_review(store, mention_id)
        if seen_review is not None and newest != seen_review:
            raise ReviewedMeanwhile(mention_id, by)
        if seen_labels is not None and any(getattr(seen_labels, f) != getattr(labels, f) for f in FIELDS):
            # relabelled with no review since the agent's (a classifier run): nobody to name
            raise ReviewedMeanwhile(mention_id, None if seen_review is not None else by)
        wanted = {"intent": labels.intent if intent is None else intent,
                  "sentiment": labels.sentiment if sentiment is None else sentiment,
                  "complaint": labels.complaint if complaint is None else bool(complaint)}
        review = Review(mention_id, changed={f: (getattr(labels, f), wanted[f]) for f in FIELDS
                                             if getattr(labels, f) != wanted[f]},
                        confirmed=[f for f in FIELDS if getattr(labels, f) == wanted[f]])
        if not review.changed and newest and not labels.needs_review:
            review.stored = False  # confirmed before: a second confirmation teaches nothing
            return review
        at = iso(utcnow())
        for f in FIELDS:  # confirmations too: the trainer counts them as confirmed examples
            store.db.execute(
                "insert into label_corrections (mention_id, text, field, old_value, new_value, corrected_by, at) "
                "values (?, ?, ?, ?, ?, ?, ?)", [mention_id, mention.text, f, str(getattr(labels, f)), str(wanted[f]),
                                                 actor, at])
        store.set_mention_labels(mention_id, labels.model_copy(update={**wanted, "needs_review": False}))
        store.audit(actor, "label.review", mention.case_id, {
            "mention_id": mention_id, "changed": {f: [old, new] for f, (old, new) in review.changed.items()},
            "confirmed": review.confirmed})
        if review.changed and mention.case_id is not None:
            review.case_before, review.case_after = _rescore(store, config, mention.case_id, mention_id, actor)
    return review


def _rescore(store: Store, config: Config, case_id: int, mention_id: int, actor: str) -> tuple[Case | None, Case | None]:
    """Score the post's case again as the pipeline scores it when a post arrives (on its newest inbound
    post, the most serious one's labels winning); save what changed as ``actor``'s, because of the review."""
    from doorstep import sla
    from doorstep.pipeline import Pipeline

    for _ in range(RESCORE_TRIES):
        case = store.get_case(case_id)
        if case is None or case.merged_into is not None:
            return None, None
        inbound = [m for m in store.mentions_for_case(case_id) if not m.outbound]
        if not inbound:
            return case, case
        scored = case.model_copy(deep=True)
        Pipeline(store, config).reprioritise(scored, _newest(inbound))
        changes = {f: getattr(scored, f) for f in SCORED if getattr(scored, f) != getattr(case, f)}
        if not changes:
            return case, case
        changes = sla.follow(case, changes, utcnow(), config)
        try:
            return case, store.update_case(case_id, case.version, actor, because={"review_of": mention_id,
                                                                                  "priority_was": case.priority},
                                           **changes)
        except StaleCaseError:
            continue  # an agent changed the case meanwhile: score it again as it is now
    raise ReviewError(f"case {case_id} kept changing; the review of post {mention_id} was not saved, try again")


def _newest(posts: list[Mention]) -> Mention:
    return max(posts, key=lambda m: (m.created_at, m.id or 0))
