"""Questions customers can answer, and call-back tasks: the rows and the figures (core, no channels).

Why in the core: the inbox filters ("awaiting customer answer", "call-back due"), the dashboard's
answer rates and the weekly report's call-back figures read these tables, and the core never
imports ``responders/``. Asking, understanding answers and acting on them is
``responders/dialogue.py``; this module only keeps the rows honest:

* :func:`claim_answer` moves a question from ``open`` (or ``expired``) to its answer in one
  conditional UPDATE, so a reply delivered twice (or on two channels at once) acts exactly once;
* :func:`remember_reply` records every inbound reply by channel and the channel's own id
  (Twilio's ``MessageSid``, a mail's ``Message-ID``), so a redelivered webhook is dropped whole;
  it is written in the same transaction as what the reply triggers, so a retry after a failed
  handling is handled, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from doorstep.metrics import percentile
from doorstep.store import Store, iso, parse_time

#: A question's life: open -> answered (acted on) | late (the case was closed, or it expired: a human looks) |
#: expired (no answer in time; a first answer after it still makes it late) | opted_out (the customer said
#: STOP) | cancelled.
QUESTION_STATUSES = ("open", "answered", "late", "expired", "opted_out", "cancelled")
#: A call back's life: offered -> scheduled (the customer picked a slot) -> done | declined | cancelled.
CALLBACK_STATUSES = ("offered", "scheduled", "done", "declined", "cancelled")
CALLBACK_OUTCOMES = ("reached", "no_answer", "resolved")


#: The fewest digits a number written without its country code must have to match another by its ending.
MIN_NATIONAL_DIGITS = 7


def address_key(channel: str, address: str | None) -> str:
    """A coarse key to find the questions sent to an address: a phone's last seven digits, or the
    lower-cased e-mail. Stored on each question (``questions.address_key``, indexed); two phones
    with one key may still be different phones, so :func:`same_address` decides.

    Seven, the fewest a national number has: every spelling of one phone ends with them. The last ten did not:
    "+49 (0)89 1234567" kept its bracketed 0 ("0891234567") and its owner texting from "+49891234567"
    ("9891234567") was no one (intl audit)."""
    if not address:
        return ""
    if channel == "sms":
        digits = re.sub(r"\D", "", address)
        return digits[-MIN_NATIONAL_DIGITS:]
    return address.strip().lower()


def phone_digits(number: str | None) -> tuple[str, bool]:
    """A phone number's digits and whether they begin with its country code.

    "+44 7700 900123", "+44 (0)7700 900123" and "0044 7700 900123" carry it ("447700900123",
    True). A number written without one ("07700 900123", "(770) 090-0123") is the national number:
    its trunk zeros are dropped ("7700900123", False), since the same phone is "+44 7700 900123" abroad.
    """
    text = (number or "").strip().replace("(0)", "")
    digits = re.sub(r"\D", "", text)
    if text.startswith("+"):
        return digits, True
    if digits.startswith("00"):
        return digits[2:], True
    return digits.lstrip("0"), False


def phones_match(a: str | None, b: str | None) -> str:
    """How two phone numbers match: "exact" (both carry a country code and all digits agree),
    "national" (one has no country code and its national digits end the other) or "" (different).

    Two numbers with country codes must agree in full: "+1 770-090-0123" and "+44 7700 900123"
    share their last ten digits but are two phones in two countries. Matching by the ending is
    left only for a number stored without a country code, where it cannot be told apart.
    """
    da, ia = phone_digits(a)
    db, ib = phone_digits(b)
    if not da or not db:
        return ""
    if ia and ib:
        return "exact" if da == db else ""
    short, long = sorted((da, db), key=len)
    return "national" if len(short) >= MIN_NATIONAL_DIGITS and long.endswith(short) else ""


def same_address(channel: str, a: str | None, b: str | None) -> bool:
    """Whether a reply from ``b`` comes from the address ``a`` we wrote to (see :func:`phones_match` for SMS)."""
    if channel == "sms":
        return bool(phones_match(a, b))
    return bool(a and b) and address_key(channel, a) == address_key(channel, b)


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
    # The key finds the candidates; only a question sent to this very address is answered by it
    # (a UK number never answers the question we sent a US number with the same last ten digits).
    for row in store.db.query(
            f"select * from questions where address_key = ? and channel = ? and {ASKED_SQL} "
            "order by status = 'open' desc, id desc limit 200", [key, channel]):
        if same_address(channel, row["target"], address):
            return _question(row)
    return None


def was_asked(store: Store, question: Question) -> bool:
    """Whether the question's message went out (a reply cannot answer a question still held back)."""
    return store.db.execute(f"select 1 from questions where id = ? and {ASKED_SQL}", [question.id]).fetchone() is not None


def case_now(store: Store, case_id: int) -> int:
    """The case ``case_id`` went into, however many merges ago (itself when it was never merged)."""
    seen = {case_id}
    while True:
        row = store.db.execute("select merged_into from cases where id = ?", [case_id]).fetchone()
        if row is None or row[0] is None or row[0] in seen:
            return case_id
        case_id = int(row[0])
        seen.add(case_id)


class OpenQuestions:
    """The questions that were sent and still wait for an answer, by the case they are on now.

    Read once for a batch of posts (the open questions are few: one indexed range), not once per
    post. A question asked on a case since merged into another is listed under the case it went
    into: the customer answers it on the case the team works on now.
    """

    def __init__(self, store: Store, now: datetime):
        self.store, self.now = store, now
        self._by_case: dict[int, list[int]] = {}
        for question_id, case_id, merged_into in store.db.execute(
                "select q.id, q.case_id, c.merged_into from questions q join cases c on c.id = q.case_id "
                f"where q.status = 'open' and q.expires_at > ? and q.{ASKED_SQL} order by q.id desc",
                [iso(now)]).fetchall():
            home = case_now(store, case_id) if merged_into is not None else case_id
            self._by_case.setdefault(home, []).append(question_id)

    def on_case(self, case_id: int) -> Question | None:
        """The newest open question on the case, read again: an earlier post of the batch may have answered it."""
        for question_id in self._by_case.get(case_id, []):
            question = get_question(self.store, question_id)
            if question is not None and question.is_open(self.now):
                return question
        return None


def claim_answer(store: Store, question_id: int, *, status: str, answer: str, kind: str, channel: str,
                 at: datetime, slot_at: datetime | None = None) -> bool:
    """Record the answer if the question is still unanswered; True only for the one caller that did.

    One conditional UPDATE: two deliveries of the same "YES" racing each other both try, and
    only one sees ``rowcount == 1`` and goes on to act. A question housekeeping marked
    ``expired`` is unanswered too: its first answer is recorded (as a late one, by the caller),
    exactly as when housekeeping had not run yet, and counts in the answer rates.
    """
    cursor = store.db.execute(
        "update questions set status = ?, answer = ?, answer_kind = ?, answer_channel = ?, answered_at = ?, "
        "slot_at = ? where id = ? and status in ('open', 'expired')",
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


#: A UTF-16 surrogate on its own (half an emoji): no store, classifier or terminal can encode it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def storable_text(value: str) -> str:
    """``value`` as every store can hold it: without NUL, each lone surrogate as U+FFFD.

    Why: an inbound reply is a customer's answer (a STOP among them) and must be stored whatever
    stray character came with it. PostgreSQL's text cannot hold NUL, so an SMS with one failed on
    every try and Twilio, which does not retry, lost it; a NUL means nothing in an answer. A lone
    surrogate is replaced, not refused: the rest of the answer is still for a person to read.
    """
    from doorstep.models import whole_characters

    cleaned, surrogate = whole_characters(value)
    return _LONE_SURROGATE.sub("\ufffd", cleaned) if surrogate else cleaned


def remember_reply(store: Store, *, channel: str, external_id: str, sender: str | None, text: str,
                   received_at: datetime) -> int | None:
    """Record an inbound reply once; None when this (channel, external id) was seen before.

    Call it inside the transaction that acts on the reply (``responders.dialogue.handle_reply``):
    recorded on its own, a reply whose handling then failed would be a "duplicate" on every retry,
    its answer lost half-done.

    Its text, id and sender are stored as :func:`storable_text` makes them (callers that act on
    the text should clean it first, so what they act on is what is stored).
    """
    cursor = store.db.execute(
        "insert into answers (channel, external_id, sender, text, received_at) values (?, ?, ?, ?, ?) "
        "on conflict (channel, external_id) do nothing",
        [channel, storable_text(external_id), storable_text(sender) if sender is not None else None,
         storable_text(text)[:4000], iso(received_at)])
    if cursor.rowcount != 1:
        return None
    return int(cursor.lastrowid)  # type: ignore[arg-type]


def reply_seen(store: Store, channel: str, external_id: str) -> bool:
    """Whether :func:`remember_reply` recorded this (channel, external id) already: a read only, to spare
    a duplicate's costly work (the classifier) before the caller takes the write lock."""
    return store.db.execute("select 1 from answers where channel = ? and external_id = ?",
                            [channel, storable_text(external_id)]).fetchone() is not None


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
                      slot_text: str | None, sla: timedelta, case_id: int | None = None) -> bool:
    """The customer picked a slot (or said "yes": as soon as possible); the SLA runs from the slot.

    ``case_id``: the case the offer's case was merged into, so the task is listed (and called) on
    the case the team works on now.
    """
    due = (slot_at or requested_at) + sla
    cursor = store.db.execute(
        "update callbacks set status = 'scheduled', requested_at = ?, slot_at = ?, slot_text = ?, due_at = ?, "
        "case_id = coalesce(?, case_id) where id = ? and status = 'offered'",
        [iso(requested_at), iso(slot_at), slot_text, iso(due), case_id, callback_id])
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

    An offer counts once its message was sent, or the customer answered it, as a question does
    (:func:`answer_rates`): one held for approval or for the morning offered nobody anything ("Call backs offered
    29, accepted 0" with 28 of them awaiting approval: newcomer audit).
    ``sla_breached``: marked breached by the worker, or called (reached/resolved) after the deadline.
    """
    where, params = _brand_filter(brand, "b")
    rows = list(store.db.query(
        "select status, outcome, requested_at, breached_at, due_at, outcome_at from callbacks b "
        "where offered_at >= ? and offered_at < ? and (requested_at is not null or question_id in ("
        "select q.id from questions q join outbound_messages o on o.id = q.message_id where o.status = 'sent'))"
        + where, [iso(start), iso(end), *params]))
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
