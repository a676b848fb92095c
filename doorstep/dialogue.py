"""Questions customers can answer, and call-back tasks: the rows and the figures (core, no channels).

Why in the core: the inbox filters ("awaiting customer answer", "call-back due"), the dashboard's
answer rates and the weekly report's call-back figures read these tables, and the core never
imports ``responders/``. Asking, understanding answers and acting on them is
``responders/dialogue.py``; this module only keeps the rows honest:

* :func:`claim_answer` moves a question from ``open`` to its answer in one conditional UPDATE,
  so a reply delivered twice (or on two channels at once) acts exactly once;
* :func:`remember_reply` records every inbound reply by channel and the channel's own id
  (Twilio's ``MessageSid``, a mail's ``Message-ID``), so a redelivered webhook is dropped whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from doorstep.metrics import percentile
from doorstep.models import utcnow
from doorstep.store import Store, iso, parse_time

#: A question's life: open -> answered (acted on) | late (the case was closed: a human looks) |
#: expired (no answer in time) | opted_out (the customer said STOP) | cancelled.
QUESTION_STATUSES = ("open", "answered", "late", "expired", "opted_out", "cancelled")
#: A call back's life: offered -> scheduled (the customer picked a slot) -> done | declined | cancelled.
CALLBACK_STATUSES = ("offered", "scheduled", "done", "declined", "cancelled")
CALLBACK_OUTCOMES = ("reached", "no_answer", "resolved")


def address_key(channel: str, address: str | None) -> str:
    """How a reply's sender is matched to the address we asked: phone digits, or the lower-cased e-mail."""
    if not address:
        return ""
    if channel == "sms":
        digits = re.sub(r"\D", "", address)
        return digits[-10:]  # "+44 7700 900123", "07700900123" and "447700900123" agree on the last ten
    return address.strip().lower()


@dataclass
class Question:
    id: int
    case_id: int
    customer_id: str | None
    rule: str
    channel: str
    target: str | None
    message_id: int | None
    mail_id: str | None
    token: str
    asked_at: datetime
    expires_at: datetime
    status: str
    answer: str | None = None
    answer_kind: str | None = None
    answer_channel: str | None = None
    answered_at: datetime | None = None
    slot_at: datetime | None = None
    action: str | None = None

    def is_open(self, now: datetime) -> bool:
        return self.status == "open" and self.expires_at > now


def _question(row: dict[str, Any]) -> Question:
    return Question(
        id=row["id"], case_id=row["case_id"], customer_id=row["customer_id"], rule=row["rule"], channel=row["channel"],
        target=row["target"], message_id=row["message_id"], mail_id=row["mail_id"], token=row["token"],
        asked_at=parse_time(row["asked_at"]), expires_at=parse_time(row["expires_at"]),  # type: ignore[arg-type]
        status=row["status"], answer=row["answer"], answer_kind=row["answer_kind"],
        answer_channel=row["answer_channel"], answered_at=parse_time(row["answered_at"]),
        slot_at=parse_time(row["slot_at"]), action=row["action"])


def insert_question(store: Store, *, case_id: int, customer_id: str | None, rule: str, channel: str, target: str,
                    message_id: int | None, token: str, asked_at: datetime, expires_at: datetime,
                    mail_id: str | None = None) -> int:
    cursor = store.db.execute(
        "insert into questions (case_id, customer_id, rule, channel, target, address_key, message_id, mail_id, token, "
        "asked_at, expires_at, status) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open')",
        [case_id, customer_id, rule, channel, target, address_key(channel, target), message_id, mail_id, token,
         iso(asked_at), iso(expires_at)])
    return int(cursor.lastrowid)  # type: ignore[arg-type]


def get_question(store: Store, question_id: int) -> Question | None:
    rows = list(store.db.query("select * from questions where id = ?", [question_id]))
    return _question(rows[0]) if rows else None


def questions_for_case(store: Store, case_id: int) -> list[Question]:
    return [_question(r) for r in store.db.query("select * from questions where case_id = ? order by id", [case_id])]


def question_by_token(store: Store, token: str) -> Question | None:
    rows = list(store.db.query("select * from questions where token = ?", [token]))
    return _question(rows[0]) if rows else None


def question_by_mail_id(store: Store, mail_id: str) -> Question | None:
    rows = list(store.db.query("select * from questions where mail_id = ?", [mail_id.strip()]))
    return _question(rows[0]) if rows else None


#: A question counts as asked once its message went out (one held for approval asked nobody yet).
ASKED_SQL = "message_id in (select id from outbound_messages where status = 'sent')"


def latest_question_to(store: Store, channel: str, address: str) -> Question | None:
    """The question a reply from ``address`` answers: the newest open one that was sent, else the newest sent one."""
    key = address_key(channel, address)
    if not key:
        return None
    rows = list(store.db.query(
        f"select * from questions where address_key = ? and channel = ? and {ASKED_SQL} "
        "order by status = 'open' desc, id desc limit 1", [key, channel]))
    return _question(rows[0]) if rows else None


def was_asked(store: Store, question: Question) -> bool:
    """Whether the question's message went out (a reply cannot answer a question still held back)."""
    return store.db.execute(f"select 1 from questions where id = ? and {ASKED_SQL}", [question.id]).fetchone() is not None


def open_question_on_case(store: Store, case_id: int, now: datetime | None = None) -> Question | None:
    """The case's newest question that was sent and is still waiting for an answer."""
    rows = list(store.db.query("select * from questions where case_id = ? and status = 'open' and expires_at > ? "
                               f"and {ASKED_SQL} order by id desc limit 1", [case_id, iso(now or utcnow())]))
    return _question(rows[0]) if rows else None


def claim_answer(store: Store, question_id: int, *, status: str, answer: str, kind: str, channel: str,
                 at: datetime, slot_at: datetime | None = None) -> bool:
    """Record the answer if the question is still open; True only for the one caller that did.

    One conditional UPDATE: two deliveries of the same "YES" racing each other both try, and
    only one sees ``rowcount == 1`` and goes on to act.
    """
    cursor = store.db.execute(
        "update questions set status = ?, answer = ?, answer_kind = ?, answer_channel = ?, answered_at = ?, "
        "slot_at = ? where id = ? and status = 'open'",
        [status, answer[:2000], kind, channel, iso(at), iso(slot_at), question_id])
    return cursor.rowcount == 1


def set_action(store: Store, question_id: int, action: str) -> None:
    store.db.execute("update questions set action = ? where id = ?", [action[:1000], question_id])


def expire_questions(store: Store, now: datetime) -> list[int]:
    """Open questions past their expiry become ``expired`` (they leave "awaiting customer answer")."""
    ids = [r[0] for r in store.db.execute("select id from questions where status = 'open' and expires_at <= ?",
                                          [iso(now)]).fetchall()]
    for question_id in ids:
        store.db.execute("update questions set status = 'expired' where id = ? and status = 'open'", [question_id])
    return ids


def remember_reply(store: Store, *, channel: str, external_id: str, sender: str | None, text: str,
                   received_at: datetime) -> int | None:
    """Record an inbound reply once; None when this (channel, external id) was seen before."""
    cursor = store.db.execute(
        "insert into answers (channel, external_id, sender, text, received_at) values (?, ?, ?, ?, ?) "
        "on conflict (channel, external_id) do nothing",
        [channel, external_id, sender, text[:4000], iso(received_at)])
    if cursor.rowcount != 1:
        return None
    return int(cursor.lastrowid)  # type: ignore[arg-type]


def note_reply_outcome(store: Store, reply_id: int, *, question_id: int | None, case_id: int | None, kind: str,
                       outcome: str) -> None:
    store.db.execute("update answers set question_id = ?, case_id = ?, kind = ?, outcome = ? where id = ?",
                     [question_id, case_id, kind, outcome[:500], reply_id])


# --------------------------------------------------------------------------- call-backs
@dataclass
class Callback:
    id: int
    case_id: int
    question_id: int | None
    reason: str
    offered_by: str
    offered_at: datetime
    status: str
    phone: str | None
    slot_at: datetime | None = None
    slot_text: str | None = None
    requested_at: datetime | None = None
    due_at: datetime | None = None
    breached_at: datetime | None = None
    outcome: str | None = None
    outcome_by: str | None = None
    outcome_at: datetime | None = None

    def sla_state(self, now: datetime) -> str:
        """"breached", "due" (time to call), "upcoming", or the task's status when it is not scheduled."""
        if self.status != "scheduled" or self.due_at is None:
            return self.status
        if now > self.due_at:
            return "breached"
        start = self.slot_at or self.requested_at
        return "due" if start is None or start <= now else "upcoming"


def _callback(row: dict[str, Any]) -> Callback:
    return Callback(
        id=row["id"], case_id=row["case_id"], question_id=row["question_id"], reason=row["reason"] or "",
        offered_by=row["offered_by"] or "", offered_at=parse_time(row["offered_at"]),  # type: ignore[arg-type]
        status=row["status"], phone=row["phone"], slot_at=parse_time(row["slot_at"]), slot_text=row["slot_text"],
        requested_at=parse_time(row["requested_at"]), due_at=parse_time(row["due_at"]),
        breached_at=parse_time(row["breached_at"]), outcome=row["outcome"], outcome_by=row["outcome_by"],
        outcome_at=parse_time(row["outcome_at"]))


def insert_callback(store: Store, *, case_id: int, question_id: int | None, reason: str, offered_by: str,
                    offered_at: datetime, phone: str | None) -> int:
    cursor = store.db.execute(
        "insert into callbacks (case_id, question_id, reason, offered_by, offered_at, status, phone) "
        "values (?, ?, ?, ?, ?, 'offered', ?)", [case_id, question_id, reason, offered_by, iso(offered_at), phone])
    return int(cursor.lastrowid)  # type: ignore[arg-type]


def get_callback(store: Store, callback_id: int) -> Callback | None:
    rows = list(store.db.query("select * from callbacks where id = ?", [callback_id]))
    return _callback(rows[0]) if rows else None


def callback_for_question(store: Store, question_id: int) -> Callback | None:
    rows = list(store.db.query("select * from callbacks where question_id = ? order by id desc limit 1", [question_id]))
    return _callback(rows[0]) if rows else None


def callbacks_for_case(store: Store, case_id: int) -> list[Callback]:
    return [_callback(r) for r in store.db.query("select * from callbacks where case_id = ? order by id", [case_id])]


def scheduled_callbacks(store: Store, limit: int = 200) -> list[Callback]:
    """Call-back tasks waiting for a call, soonest slot first."""
    return [_callback(r) for r in store.db.query(
        "select * from callbacks where status = 'scheduled' order by coalesce(slot_at, requested_at), id limit ?",
        [limit])]


def schedule_callback(store: Store, callback_id: int, *, requested_at: datetime, slot_at: datetime | None,
                      slot_text: str | None, sla: timedelta) -> bool:
    """The customer picked a slot (or said "yes": as soon as possible); the SLA runs from the slot."""
    due = (slot_at or requested_at) + sla
    cursor = store.db.execute(
        "update callbacks set status = 'scheduled', requested_at = ?, slot_at = ?, slot_text = ?, due_at = ? "
        "where id = ? and status = 'offered'", [iso(requested_at), iso(slot_at), slot_text, iso(due), callback_id])
    return cursor.rowcount == 1


def record_callback_outcome(store: Store, callback_id: int, outcome: str, actor: str, at: datetime) -> bool:
    if outcome not in CALLBACK_OUTCOMES:
        raise ValueError(f"not a call-back outcome: {outcome!r} (choose {', '.join(CALLBACK_OUTCOMES)})")
    # "no answer" keeps the task scheduled (the agent tries again); reached/resolved close it.
    status = "scheduled" if outcome == "no_answer" else "done"
    cursor = store.db.execute(
        "update callbacks set status = ?, outcome = ?, outcome_by = ?, outcome_at = ? where id = ? and status = 'scheduled'",
        [status, outcome, actor, iso(at), callback_id])
    return cursor.rowcount == 1


def mark_breaches(store: Store, now: datetime) -> list[int]:
    """Scheduled call-backs past their SLA deadline, each marked (and returned) once."""
    ids = [r[0] for r in store.db.execute(
        "select id from callbacks where status = 'scheduled' and due_at is not null and due_at < ? "
        "and breached_at is null", [iso(now)]).fetchall()]
    marked = []
    for callback_id in ids:
        cursor = store.db.execute("update callbacks set breached_at = ? where id = ? and breached_at is null",
                                  [iso(now), callback_id])
        if cursor.rowcount:
            marked.append(callback_id)
    return marked


# --------------------------------------------------------------------------- figures
def _brand_filter(brand: str | None, alias: str) -> tuple[str, list[Any]]:
    if not brand:
        return "", []
    return f" and {alias}.case_id in (select id from cases where brand = ?)", [brand]


def answer_rates(store: Store, start: datetime, end: datetime, tz: Any = None,
                 brand: str | None = None) -> list[dict[str, Any]]:
    """Per channel: questions asked in ``[start, end)``, how many were answered, the rate, median minutes.

    A question counts once its message was sent (one held for approval or cancelled asked nobody).
    "Answered" is any reply joined to the question (acted on, late, or an opt-out). ``by_hour``
    counts asked/answered per local hour of asking, for the dashboard's "when do they answer".
    """
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    out: dict[str, dict[str, Any]] = {}
    where, params = _brand_filter(brand, "q")
    for row in store.db.query(
            "select channel, asked_at, answered_at, status from questions q where asked_at >= ? and asked_at < ? "
            "and (answered_at is not null or message_id in (select id from outbound_messages where status = 'sent'))"
            + where, [iso(start), iso(end), *params]):
        item = out.setdefault(row["channel"], {"channel": row["channel"], "asked": 0, "answered": 0, "minutes": [],
                                               "by_hour": {}})
        item["asked"] += 1
        asked = parse_time(row["asked_at"])
        hour = (asked.astimezone(zone) if zone else asked).hour  # type: ignore[union-attr]
        slot = item["by_hour"].setdefault(hour, [0, 0])
        slot[0] += 1
        if row["answered_at"]:
            item["answered"] += 1
            slot[1] += 1
            item["minutes"].append((parse_time(row["answered_at"]) - asked).total_seconds() / 60)  # type: ignore[operator]
    result = []
    for channel in sorted(out):
        item = out[channel]
        minutes = sorted(item.pop("minutes"))
        item["rate"] = round(item["answered"] / item["asked"], 3) if item["asked"] else None
        median = percentile(minutes, 50)  # interpolated, as every median in the reports
        item["median_minutes"] = None if median is None else round(median, 1)
        item["by_hour"] = {h: {"asked": a, "answered": n} for h, (a, n) in sorted(item["by_hour"].items())}
        result.append(item)
    return result


def callback_summary(store: Store, start: datetime, end: datetime, brand: str | None = None) -> dict[str, Any]:
    """Call-backs offered in ``[start, end)``: accepted, outcomes, SLA breaches (the weekly report's figures).

    ``sla_breached``: marked breached by the worker, or called (reached/resolved) after the deadline.
    """
    where, params = _brand_filter(brand, "b")
    rows = list(store.db.query("select status, outcome, requested_at, breached_at, due_at, outcome_at from callbacks b "
                               "where offered_at >= ? and offered_at < ?" + where, [iso(start), iso(end), *params]))
    outcomes = {o: sum(1 for r in rows if r["outcome"] == o) for o in CALLBACK_OUTCOMES}
    breached = sum(1 for r in rows if r["breached_at"] or (r["outcome_at"] and r["due_at"] and r["outcome_at"] > r["due_at"]
                                                           and r["outcome"] in ("reached", "resolved")))
    return {
        "offered": len(rows),
        "accepted": sum(1 for r in rows if r["requested_at"]),
        "declined": sum(1 for r in rows if r["status"] == "declined"),
        "waiting": sum(1 for r in rows if r["status"] == "scheduled"),
        **outcomes,
        "sla_breached": breached,
    }
