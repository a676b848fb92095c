"""Closing several cases at once, and closing a case as spam.

Why: on a viral day 500 spam-bot cases ("parcel lost? DM me ...") took 500 presses of X, one by one, and
once resolved they still counted in the mood and complaint figures, as a customer's posts do. Here a list of
cases is closed in one call, each as if it were resolved on its own page: the rule of every resolve
(:mod:`doorstep.resolving`: a reply or escalation that has not gone holds the case up unless forced, a rule's
follow-up is retired; a colleague typing a reply on it holds it up too, as X on the case page does), the role rules of a status change (:func:`doorstep.permissions.require_case_change`, run
by ``Store.update_case`` in the change's transaction), and the store's version check, so a case another agent
changed since it was listed is refused, never overwritten. Each case is its own change: one refused case does
not hold the others back, and the caller is told, case by case, what happened and why.

A case closed as spam is resolved with ``cases.closed_as = 'spam'``; :mod:`doorstep.metrics` leaves its posts
out of the mood and complaint figures. A new post that reopens it (or a person's open status) clears the mark
(``doorstep.store.cases``), so a customer who writes in the thread again is counted again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from doorstep import presence
from doorstep.permissions import NotAllowed
from doorstep.resolving import held_up_words, resolve_holds, retired_words
from doorstep.store import CaseMergedError, StaleCaseError, Store

#: The only way of closing a case that is not "dealt with" (``cases.closed_as``).
SPAM = "spam"


@dataclass(frozen=True)
class Closing:
    """What closing did to one case: ``closed`` (resolved, or marked spam), else ``reason`` says why not in one
    line; ``note`` what closing did besides (a rule's follow-up retired). ``held``: refused for what ``force``
    closes past (a message that has not gone, a colleague typing a reply), never for a change the actor has
    not seen."""

    case_id: int
    closed: bool
    reason: str = ""
    note: str = ""
    held: bool = False

    def words(self, as_spam: bool) -> str:
        """"case 12: closed as spam", "case 13: refused: Not resolved: 1 message is pending or failed (...)"."""
        if not self.closed:
            return f"case {self.case_id}: refused: {self.reason}"
        return f"case {self.case_id}: {'closed as spam' if as_spam else 'resolved'}" + (
            f"; {self.note}" if self.note else "")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _changed_words(store: Store, case_id: int, listed: int, now_version: int) -> str:
    who = store.case_changed_by(case_id)
    return (f"changed{f' by {who}' if who else ''} since it was listed (version {listed}, now {now_version}): "
            "open it to see what changed")


def close_case(store: Store, case_id: int, actor: str, *, as_spam: bool, now: datetime, force: bool = False,
               version: int | None = None, resolved_at: datetime | None = None) -> Closing:
    """Close one case as :func:`close_cases` does (``version``: the one the actor saw; None: the stored one;
    ``resolved_at``: as in :func:`close_cases`).

    Checked and closed under the write lock, as a reply is queued: a reply queued between the check of what
    holds the case up and the close would be resolved past unseen."""
    with store.write_transaction():
        return _close_case(store, case_id, actor, as_spam=as_spam, now=now, force=force, version=version,
                           resolved_at=resolved_at)


def _close_case(store: Store, case_id: int, actor: str, *, as_spam: bool, now: datetime, force: bool,
                version: int | None, resolved_at: datetime | None = None) -> Closing:
    case = store.get_case(case_id)
    if case is None:
        return Closing(case_id, False, "no such case")
    if case.merged_into is not None:
        return Closing(case_id, False, f"merged into case #{case.merged_into}: work there")
    if as_spam and case.status == "resolved" and case.closed_as == SPAM:
        return Closing(case_id, False, "already closed as spam")
    if not as_spam and case.status == "resolved":
        return Closing(case_id, False, "already resolved")
    expected = case.version if version is None else version
    if expected != case.version:
        return Closing(case_id, False, _changed_words(store, case_id, expected, case.version))
    changes: dict[str, Any] = {"closed_as": SPAM} if as_spam else {}
    note = ""
    if case.status != "resolved":  # a resolved case marked spam keeps when it was resolved
        hold_up, retired = resolve_holds(store, case_id)
        if hold_up and not force:
            return Closing(case_id, False, _one_line(held_up_words("resolved", hold_up)), held=True)
        typing = sorted(user for user in presence.drafting(store, case_id, now=now) if user != actor)
        if typing and not force:  # closed under them, their reply would be refused as "resolved since you opened it"
            return Closing(case_id, False, f"{', '.join(typing)} {'is' if len(typing) == 1 else 'are'} replying right "
                           "now: close it after their reply, or close it anyway", held=True)
        changes.update(status="resolved", resolved_at=now if resolved_at is None else min(resolved_at, now))
        if resolved_at is not None and case.first_response_at is None:
            # Dealt with before Doorstep, and what was brought holds no answer of ours: whether the previous tool
            # answered elsewhere is not known, so none was owed here (as for spam). Kept, its week's report called
            # it "no first response" and an SLA breach, blaming the team for the history's gaps (stop 43's note).
            changes["first_response_due"] = None
        note = retired_words(retired).removeprefix("; ")
    try:
        # "status": closing is a change of status, whatever else it marks (the role a status change needs).
        store.update_case(case_id, expected, actor, action="status", **changes)
    except CaseMergedError as exc:
        return Closing(case_id, False, _one_line(str(exc)))
    except StaleCaseError as exc:
        return Closing(case_id, False, _changed_words(store, case_id, expected, exc.actual))
    except NotAllowed as exc:
        return Closing(case_id, False, _one_line(str(exc)))
    return Closing(case_id, True, note=note)


def close_cases(store: Store, case_ids: Iterable[int], actor: str, *, as_spam: bool, now: datetime,
                force: bool = False, versions: Mapping[int, int] | None = None,
                resolved_at: Mapping[int, datetime] | None = None) -> list[Closing]:
    """Resolve each of ``case_ids`` (``as_spam``: and mark it spam) on behalf of ``actor``; one
    :class:`Closing` per case, in the order given (a case named twice is closed once).

    ``force``: resolve past replies and escalations that have not gone and past colleagues typing a reply
    (the case page's "Resolve even though ..."). ``versions``: case id -> the version the actor decided on (the list they chose from); a case
    changed since is refused. Without it, the version read here: a change between that read and the write is
    still refused, never overwritten.

    ``now``: when the closing happens (who is typing a reply on the case right now, and the resolution time);
    ``resolved_at``: case id -> when the case was dealt with, where that was before ``now`` (never after it): a
    history import resolves each case at its conversation's last post, handled then by the shop's previous tool,
    so that a report of that week does not call it resolved months late; such a case without a first response
    owes none (its first-response due time is cleared). The audit event still records when the closing was done.
    """
    out = []
    for case_id in dict.fromkeys(int(i) for i in case_ids):
        out.append(close_case(store, case_id, actor, as_spam=as_spam, now=now, force=force,
                              version=(versions or {}).get(case_id), resolved_at=(resolved_at or {}).get(case_id)))
    return out


def summary_words(outcomes: list[Closing], as_spam: bool) -> str:
    """"2 of 3 closed as spam, 1 refused": the one line after the cases' own."""
    closed = sum(o.closed for o in outcomes)
    refused = len(outcomes) - closed
    done = "closed as spam" if as_spam else "resolved"
    return f"{closed} of {len(outcomes)} {done}" + (f", {refused} refused" if refused else "")
