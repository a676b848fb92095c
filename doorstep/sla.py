"""SLA clocks of a case: when the next answer and the resolution are due, and why.

The rules (the README's "SLA clocks" section says the same for the team):

* **First response** starts at the customer's first unanswered post and stops at our first
  answer, public or private. **Next response**: a customer post written after we answered
  starts a new response clock of the same length (the band's ``first_response`` minutes) for
  that post; our next answer stops it, unless it answers an older post: then the clock of the
  customer's first post after the one answered keeps running (:func:`clock_after_answer`).
  ``first_response_due`` / ``first_response_at`` keep the case's *first* answer, which the
  reports measure.
* **Resolution** starts when the case opens (or reopens) and stops when it is resolved.
* Clocks count the brand's **business hours** (doorstep/business_hours.py) unless the band
  says ``business_hours = false``.
* A **priority raised later** (a P3 that becomes P1 on its fourth post) gets the new band's
  targets counted from the moment it became that priority; a deadline already earlier stays.
  A case is never "overdue 9 days" the minute it becomes P1.
* Clocks **pause** while the case waits on the customer (status ``pending_customer``, which a
  reply with a question sets) and while it is **snoozed**; they resume, with the time they had
  left, when the customer writes, the status changes or the snooze ends. A snooze has a known
  end, so its pause is applied when it is set (the deadlines move by the open time the snooze
  covers); a customer who writes during the snooze wakes the case and gets that time back.

Every function takes ``now`` (or the post's time) from its caller, so tests run on a fake clock.
The stored columns the inbox sorts and filters on (``due_at``, ``due_key``, ``priority_band``)
are derived from these fields by :func:`queue_fields` whenever a case is written.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from doorstep.business_hours import calendar_for
from doorstep.config import Config, Priority
from doorstep.models import Case

#: The fields the clocks move on their own (the audit records what a person changed, not these).
CLOCK_FIELDS = frozenset({"first_response_due", "next_response_due", "resolution_due", "awaiting_since",
                          "sla_paused_at", "priority_band"})

#: Statuses whose clocks are stopped for good (until a customer post reopens the case).
_STOPPED = ("resolved",)
_DEFAULT_PRIORITY = Priority()


def band_of(score: float, priority: Priority = _DEFAULT_PRIORITY) -> str:
    """"p1".."p4" for a priority score (p1 the most urgent)."""
    if score >= priority.p1:
        return "p1"
    if score >= priority.p2:
        return "p2"
    if score >= priority.p3:
        return "p3"
    return "p4"


# ----------------------------------------------------------------------- what is due
def next_due(case: Case) -> tuple[str, datetime] | None:
    """(what, when) of the case's next deadline while its clocks run; None when paused or stopped.

    What: "first response", "next response" or "resolution". Pure: no calendar, no config.
    """
    if case.status in _STOPPED or case.status == "pending_customer":
        return None
    due: list[tuple[str, datetime]] = []
    if case.first_response_at is None and case.first_response_due is not None:
        due.append(("first response", case.first_response_due))
    if case.next_response_due is not None:
        due.append(("next response", case.next_response_due))
    if case.resolution_due is not None:
        due.append(("resolution", case.resolution_due))
    return min(due, key=lambda d: d[1]) if due else None


def answer_owed(case: Case) -> datetime | None:
    """When the answer the customer is waiting for is due (None when no answer is owed)."""
    if case.first_response_at is None and case.first_response_due is not None:
        return case.first_response_due
    return case.next_response_due


def queue_fields(case: Case, iso: Any) -> dict[str, Any]:
    """The stored columns the inbox sorts and filters on, derived from the case.

    ``due_key`` orders the "due" sort: cases that owe the customer an answer first (soonest
    answer deadline first, overdue ones at the top), then cases that owe only a resolution
    (soonest first), then cases whose clocks are paused or stopped. The priority sort is
    ``priority_band`` then ``due_key``: P1 first, and within a band the same due order.
    """
    nxt = next_due(case)
    if nxt is None:
        key = "3"
    else:
        owed = answer_owed(case)
        key = f"1 {iso(owed)}" if owed is not None else f"2 {iso(case.resolution_due)}"
    return {
        "due_at": iso(nxt[1]) if nxt else None,
        "due_kind": nxt[0] if nxt else None,
        "due_key": key,
        "priority_band": case.priority_band or band_of(case.priority),
    }


# ----------------------------------------------------------------------- clock moves
def _calendars(case: Case, config: Config) -> tuple[Any, Any, Any]:
    """(calendar of the response clocks, of the resolution clock, the band's target)."""
    target = config.sla_target(band_of(case.priority, config.priority), case.brand)
    cal = calendar_for(config, case.brand, target.business_hours)
    return cal, cal, target


def _shift(case: Case, config: Config, start: datetime, end: datetime) -> dict[str, Any]:
    """Move every running deadline later by the open time between ``start`` and ``end``
    (earlier, when ``end`` is before ``start``): the clocks did not run in between."""
    cal, _, _ = _calendars(case, config)
    gap = cal.between(start, end)
    out: dict[str, Any] = {}
    if case.first_response_at is None and case.first_response_due is not None:
        out["first_response_due"] = cal.add(case.first_response_due, gap)
    for name in ("next_response_due", "resolution_due"):
        value = getattr(case, name)
        if value is not None:
            out[name] = cal.add(value, gap)
    return out


def start_clocks(case: Case, at: datetime, config: Config) -> None:
    """A case opens (or reopens) with a customer post written ``at``: fresh clocks for its band."""
    cal, _, target = _calendars(case, config)
    case.priority_band = band_of(case.priority, config.priority)
    case.awaiting_since = at
    case.first_response_at = None
    case.first_response_due = cal.add(at, timedelta(minutes=target.first_response))
    case.resolution_due = cal.add(at, timedelta(minutes=target.resolution))
    case.next_response_due = None
    case.sla_paused_at = None
    case.snoozed_until = None


def customer_wrote(case: Case, before: Case, at: datetime, config: Config) -> None:
    """A customer post written ``at`` joined an open case (``before``: the case as it was).

    Wakes a snoozed case (the snooze's unused time is given back), resumes clocks paused while
    we waited on the customer, starts the response clock for this post unless an earlier post is
    still unanswered, and applies a priority the post raised.
    """
    if before.snoozed_until is not None and before.snoozed_until > at and before.status != "pending_customer":
        _apply(case, _shift(case, config, before.snoozed_until, at))
    case.snoozed_until = None
    if before.status == "pending_customer" and before.sla_paused_at is not None:
        _apply(case, _shift(case, config, before.sla_paused_at, max(at, before.sla_paused_at)))
    case.sla_paused_at = None
    cal, _, target = _calendars(case, config)
    if case.awaiting_since is None:
        case.awaiting_since = at
        if case.first_response_at is not None:
            case.next_response_due = cal.add(at, timedelta(minutes=target.first_response))
    priority_changed(case, before.priority, at, config)


def clock_after_answer(case: Case, answered_at: datetime, newer_posts: list[datetime], now: datetime,
                       config: Config) -> dict[str, Any] | None:
    """The response clock an answer to the customer's post written ``answered_at`` leaves running
    (``awaiting_since``, ``next_response_due``), or None where it stops the case's clock as every answer did.

    An answer stops only the clock of the post it answers and of the customer's posts before it: answering old
    post 872 again cleared the due time of the customer's newer, unanswered post 969 (two-brand audit, F4). So
    where the answered post is older than the one the clock counts from, the clock stays as it is; where it is that
    post (or a later one) while the customer wrote again after it (``newer_posts``: the times of their posts after
    the answered one), the clock counts from the oldest of those, as :func:`customer_wrote` starts it.
    """
    if case.awaiting_since is None:
        return None
    if case.awaiting_since > answered_at:  # the clock is a newer post's
        return {"awaiting_since": case.awaiting_since, "next_response_due": case.next_response_due}
    if not newer_posts:
        return None
    # The clock as it starts for that post, on the case as it is once answered (first response recorded).
    started = case.model_copy(update={"awaiting_since": None, "next_response_due": None, "snoozed_until": None,
                                      "sla_paused_at": None, "status": "open",
                                      "first_response_at": case.first_response_at or now})
    customer_wrote(started, started, min(newer_posts), config)
    return {"awaiting_since": started.awaiting_since, "next_response_due": started.next_response_due}


def priority_changed(case: Case, old_priority: float, at: datetime, config: Config) -> None:
    """The priority moved at ``at``: a more urgent band's targets count from ``at`` (never later
    than a deadline the case already had). A lower priority leaves the deadlines as they are."""
    new_band = band_of(case.priority, config.priority)
    old_band = band_of(old_priority, config.priority)
    case.priority_band = new_band
    if new_band >= old_band:  # "p1" < "p2": only a more urgent band moves deadlines
        return
    cal, _, target = _calendars(case, config)
    paused = case.status == "pending_customer" and case.sla_paused_at is not None
    start = case.sla_paused_at if paused and case.sla_paused_at else at
    if case.snoozed_until is not None and case.snoozed_until > start and not paused:
        start = case.snoozed_until  # the snooze's pause is already in the deadlines
    answer_by = cal.add(start, timedelta(minutes=target.first_response))
    if case.first_response_at is None and case.first_response_due is not None:
        case.first_response_due = min(case.first_response_due, answer_by)
    if case.next_response_due is not None:
        case.next_response_due = min(case.next_response_due, answer_by)
    if case.resolution_due is not None:
        case.resolution_due = min(case.resolution_due, cal.add(start, timedelta(minutes=target.resolution)))


def we_answered(case: Case, at: datetime) -> dict[str, Any]:
    """Our answer (public or private) sent ``at``: stops the first or next response clock."""
    out: dict[str, Any] = {"awaiting_since": None, "next_response_due": None}
    if case.first_response_at is None:
        out["first_response_at"] = at
    return {k: v for k, v in out.items() if getattr(case, k) != v}


def follow(before: Case, changes: dict[str, Any], now: datetime, config: Config, *,
           answered_at: datetime | None = None) -> dict[str, Any]:
    """``changes`` (a person's or the worker's edit of the case) plus what they do to the clocks.

    Setting "waiting on customer" pauses the clocks; leaving it resumes them with the time they
    had left; a snooze moves the deadlines by the open time it covers (and un-snoozing or
    shortening it gives that time back); ``answered_at`` (a reply was sent) or a first response
    time stops the response clock.
    """
    out = dict(changes)
    after = before.model_copy(update=out)
    answered = answered_at or (changes.get("first_response_at") if before.first_response_at is None else None)
    if answered is not None:
        answer = we_answered(after, answered)
        out.update(answer)
        after = after.model_copy(update=answer)
    if after.status in _STOPPED:
        return {k: v for k, v in out.items() if k in changes or getattr(before, k) != v}
    if before.status in _STOPPED:
        # Reopened by a person (or an answer to our question): the resolution clock starts again now.
        cal, _, target = _calendars(after, config)
        out["resolution_due"] = cal.add(now, timedelta(minutes=target.resolution))
        out["sla_paused_at"] = now if after.status == "pending_customer" else None
        return {k: v for k, v in out.items() if k in changes or getattr(before, k) != v}
    # Paused is the status; a pause left behind by a status change made without these rules (an
    # older writer) is not resumed twice.
    was_paused = before.status == "pending_customer"
    pauses = after.status == "pending_customer"
    old_end = before.snoozed_until if before.snoozed_until and before.snoozed_until > now else now
    new_end = after.snoozed_until if after.snoozed_until and after.snoozed_until > now else now
    if was_paused and not pauses:
        since = before.sla_paused_at or now
        moved = _shift(after, config, since, max(now, since))
        after = after.model_copy(update=moved)
        moved.update(_shift(after, config, now, new_end))  # a snooze still running keeps them paused
        moved["sla_paused_at"] = None
        out.update(moved)
    elif pauses and not was_paused:
        moved = _shift(after, config, old_end, now)  # a snooze's projected pause ends now instead
        moved["sla_paused_at"] = now
        out.update(moved)
    elif not pauses and old_end != new_end:
        out.update(_shift(after, config, old_end, new_end))
    if "priority" in changes and changes["priority"] != before.priority:
        moved_case = before.model_copy(update=out)
        priority_changed(moved_case, before.priority, now, config)
        out.update({k: getattr(moved_case, k) for k in ("first_response_due", "next_response_due",
                                                          "resolution_due", "priority_band")})
    return {k: v for k, v in out.items() if k in changes or getattr(before, k) != v}


def replay(case: Case, posts: list[Any], config: Config) -> None:
    """Work the clocks out again from the case's posts (after an agent split or merged cases).

    The clocks start at the first customer post with the band the case has now; each of our
    posts answers, each later customer post starts a next-response clock. A first response
    recorded without a post of ours (a private answer) is kept. Pauses and snoozes are the
    case's as they stand: whether the case still waits on the customer is the caller's to work
    out (doorstep/regroup.py ends a wait, and :func:`resume` gives the paused time back).
    """
    events = sorted(posts, key=lambda m: m.created_at)
    inbound = [m for m in events if not m.outbound]
    if not inbound:
        return
    answered_at, paused, snoozed = case.first_response_at, case.sla_paused_at, case.snoozed_until
    start_clocks(case, inbound[0].created_at, config)
    cal, _, target = _calendars(case, config)
    for post in events:
        if post.created_at < inbound[0].created_at or post is inbound[0]:
            continue
        if post.outbound:
            _apply(case, we_answered(case, post.created_at))
        elif case.awaiting_since is None:
            case.awaiting_since = post.created_at
            if case.first_response_at is not None:
                case.next_response_due = cal.add(post.created_at, timedelta(minutes=target.first_response))
    if answered_at is not None and (case.first_response_at is None or answered_at < case.first_response_at):
        case.first_response_at = answered_at
        if case.next_response_due is None and case.awaiting_since is not None and case.awaiting_since <= answered_at:
            case.awaiting_since = None
    case.sla_paused_at, case.snoozed_until = paused, snoozed


def resume(case: Case, paused_at: datetime, at: datetime, config: Config) -> None:
    """The wait on the customer that paused the clocks at ``paused_at`` ended with their post written
    ``at`` (one a merge brought in): the deadlines that were running get the paused time back, as
    :func:`customer_wrote` gives it. The response clock that post started (:func:`replay` counted it
    from ``at``) was not paused and stays where it is."""
    started = case.next_response_due if case.awaiting_since is not None and case.awaiting_since >= at else None
    case.next_response_due = None if started is not None else case.next_response_due
    _apply(case, _shift(case, config, paused_at, max(at, paused_at)))
    if started is not None:
        case.next_response_due = started
    case.sla_paused_at = None


def _apply(case: Case, changes: dict[str, Any]) -> None:
    for name, value in changes.items():
        setattr(case, name, value)
