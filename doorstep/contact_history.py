"""Whether customers answer what we send them privately, by channel and local hour.

Every follow-up, proactive message or closed question that goes to a customer by e-mail or SMS
is one *contact attempt* (``contact_attempts``, one row per outbound message). When the
customer next writes on the case, on any channel, every attempt on that case that had already
gone out within ``window`` is marked answered, with how many minutes it took. An attempt sent
longer ago than ``window`` without an answer counts as unanswered; a younger one is still open
and counts as neither.

Why in the core: the pipeline, where the customer's answer arrives, must mark it, and the core
never imports the responders. The channel learner (``responders/channel_learner.py``) and the
dashboard read the settled outcomes through :func:`outcomes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from doorstep.metrics import percentile
from doorstep.store import Store, iso, parse_time

#: An answer more than this long after the message is not counted as an answer to it.
DEFAULT_WINDOW = timedelta(hours=72)


@dataclass(frozen=True)
class Outcome:
    """One settled attempt: sent on ``channel`` at local ``hour``; answered or not (and how fast)."""

    customer_id: str | None
    brand: str | None
    channel: str
    hour: int
    answered: bool
    minutes: float | None
    sent_at: datetime


def record_attempt(store: Store, *, message_id: int, case_id: int | None, customer_id: str | None,
                   brand: str | None, rule: str, channel: str, planned_at: datetime, tz: ZoneInfo,
                   chosen_by: str = "rule") -> None:
    """Remember that ``message_id`` asks the customer something (once per message)."""
    store.db.execute(
        "insert into contact_attempts (message_id, case_id, customer_id, brand, rule, channel, send_hour, planned_at, "
        "chosen_by) values (?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (message_id) do nothing",
        [message_id, case_id, customer_id, brand, rule, channel, planned_at.astimezone(tz).hour, iso(planned_at),
         chosen_by])


def mark_answered(store: Store, case_id: int, at: datetime, window: timedelta = DEFAULT_WINDOW) -> int:
    """The customer wrote on ``case_id`` at ``at``: attempts sent before it (within ``window``) are answered.

    Returns how many were marked. Cheap when there is nothing to mark (one indexed lookup), since
    it runs for every inbound post.
    """
    rows = store.db.execute(
        "select a.message_id, o.sent_at from contact_attempts a join outbound_messages o on o.id = a.message_id "
        "where a.case_id = ? and a.answered_at is null and o.status = 'sent' and o.sent_at <= ? and o.sent_at >= ?",
        [case_id, iso(at), iso(at - window)]).fetchall()
    for message_id, sent_at in rows:
        minutes = round((at - parse_time(sent_at)).total_seconds() / 60, 1)  # type: ignore[operator]
        store.db.execute("update contact_attempts set answered_at = ?, answer_minutes = ? where message_id = ? "
                         "and answered_at is null", [iso(at), minutes, message_id])
    return len(rows)


class AnswerWatch:
    """:func:`mark_answered` for a batch of posts written between ``first`` and ``last``: the
    attempts any of them may answer are read once, not once per post (the pipeline's batches)."""

    def __init__(self, store: Store, first: datetime, last: datetime, window: timedelta = DEFAULT_WINDOW):
        self.store, self.window = store, window
        self._open: dict[int, list[tuple[int, str]]] = {}
        for message_id, case_id, sent_at in store.db.execute(
                "select a.message_id, a.case_id, o.sent_at from contact_attempts a join outbound_messages o "
                "on o.id = a.message_id where a.answered_at is null and o.status = 'sent' and o.sent_at <= ? "
                "and o.sent_at >= ?", [iso(last), iso(first - window)]).fetchall():
            if case_id is not None:
                self._open.setdefault(case_id, []).append((message_id, sent_at))

    def mark(self, case_id: int, at: datetime) -> int:
        """What ``mark_answered(store, case_id, at)`` does, for ``at`` between the batch's first and last post."""
        attempts = self._open.get(case_id)
        if not attempts:
            return 0
        until, since = iso(at), iso(at - self.window)
        answered = [(m, sent) for m, sent in attempts if since <= sent <= until]  # type: ignore[operator]
        for message_id, sent_at in answered:
            minutes = round((at - parse_time(sent_at)).total_seconds() / 60, 1)  # type: ignore[operator]
            self.store.db.execute("update contact_attempts set answered_at = ?, answer_minutes = ? where message_id = ? "
                                  "and answered_at is null", [iso(at), minutes, message_id])
        self._open[case_id] = [a for a in attempts if a not in answered]
        return len(answered)


def outcomes(store: Store, tz: ZoneInfo, now: datetime, *, customer_id: str | None = None, brand: str | None = None,
             since: datetime | None = None, window: timedelta = DEFAULT_WINDOW) -> list[Outcome]:
    """Settled attempts (answered, or sent more than ``window`` ago), optionally for one customer or brand.

    The hour is the local hour the message actually went out (it may have waited for quiet hours
    or an approval), not the one planned.
    """
    clauses, params = ["o.status = 'sent'", "o.sent_at is not null"], []
    if customer_id is not None:
        clauses.append("a.customer_id = ?")
        params.append(customer_id)
    if brand is not None:
        clauses.append("a.brand = ?")
        params.append(brand)
    if since is not None:
        clauses.append("a.planned_at >= ?")
        params.append(iso(since - window))
    rows = store.db.execute(
        "select a.customer_id, a.brand, a.channel, a.answered_at, a.answer_minutes, o.sent_at from contact_attempts a "
        f"join outbound_messages o on o.id = a.message_id where {' and '.join(clauses)}", params).fetchall()
    out = []
    settled_before = now - window
    for customer, row_brand, channel, answered_at, minutes, sent_text in rows:
        sent_at = parse_time(sent_text)
        if sent_at is None or (since is not None and sent_at < since):
            continue
        if answered_at is None and sent_at > settled_before:
            continue  # still open: neither answered nor given up on
        out.append(Outcome(customer, row_brand, channel, sent_at.astimezone(tz).hour, answered_at is not None,
                           minutes, sent_at))
    return out


def answer_rates(store: Store, tz: ZoneInfo, now: datetime, *, since: datetime | None = None,
                 brand: str | None = None, window: timedelta = DEFAULT_WINDOW) -> list[dict[str, Any]]:
    """Answer rate by channel and local send hour (the dashboard's chart), over settled attempts."""
    cells: dict[tuple[str, int], list[Any]] = {}
    for o in outcomes(store, tz, now, brand=brand, since=since, window=window):
        cell = cells.setdefault((o.channel, o.hour), [0, 0, []])
        cell[0] += 1
        if o.answered:
            cell[1] += 1
            if o.minutes is not None:
                cell[2].append(o.minutes)
    rows = []
    for (channel, hour), (sent, answered, minutes) in sorted(cells.items()):
        rows.append({"channel": channel, "hour": hour, "sent": sent, "answered": answered,
                     "answer_rate": round(answered / sent, 3),
                     "median_minutes": percentile(minutes, 50)})
    return rows
