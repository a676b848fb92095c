"""Dialogue, not monologue: closed questions in our messages, the customer's answer, and the next step.

Asking (:func:`ask`): a proactive message, a follow-up or a call-back offer may ask a question
rule from ``[responders.dialogue.questions.NAME]`` (built in: ``redeliver``, ``callback``). The
message goes through the outbox like any other (quiet hours, approval, re-check before sending)
and a ``questions`` row remembers the case, the channel, the address it went to, a reply token
(in the e-mail's subject) and when it expires.

Answering (:func:`handle_reply`): an SMS reply (``POST /sms``, Twilio's signature checked), an
e-mail reply (``POST /mail``, a raw RFC 822 message matched by the token or ``In-Reply-To``),
a DM or a public reply (read from the stored mentions by the worker) is joined to the question,
read by :func:`responders.answers.understand` and acted on:

* the rule's step for yes / no / a proposed time / anything else runs **exactly once**: the
  answer is claimed with one conditional UPDATE, every escalation has an idempotency key derived
  from the question, and a reply redelivered with the same channel id is dropped before that;
  recording the reply and acting on it are one transaction, so a reply whose handling failed
  left nothing behind and is handled when the sender (or the worker's next scan) tries again;
* STOP and its kin opt the customer out of SMS, e-mail and DM messages on every channel,
  cancel what was queued for them, close their open questions, and are audited;
* an answer to a question whose case was closed since reopens the case for a person instead of
  acting, and so does an answer after the question expired (recorded as late, even once
  housekeeping marked it expired) or was already answered differently;
* only the customer we asked answers: a post in their thread by someone else is a post, never an
  answer or a STOP for them, and an SMS answers only a question sent to the same full number;
* a question whose case was merged into another is answered on the case it went into.

Call backs (:func:`offer_callback`): an agent (the case's button) or a rule (VIP, the third
contact on one case, an order above a value, a parcel stuck for days; ``[responders.callback]``)
offers a call back by asking the ``callback`` question; the customer's slot makes a call-back task
(``callbacks``) with its own SLA, listed on the console's Call-backs page with a ``tel:`` link.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from doorstep import dialogue as rows
from doorstep import sla
from doorstep.cases import by_customer
from doorstep.config import Config, ConfigError
from doorstep.contact_history import mark_answered, record_attempt
from doorstep.dialect import DATABASE_ERRORS, OPERATIONAL_ERRORS
from doorstep.models import OPEN_CASE_STATUSES, Case, Customer, channel_name, utcnow
from doorstep.store import PHONE_DIGITS_SQL, Store, iso
from doorstep.classifying import classify_texts
from responders.answers import Understanding, understand
from responders.config import QuestionRule, Step, responders_settings
from responders.outbox import _key, enqueue, update_case_retrying

log = logging.getLogger("doorstep.dialogue")

ACTOR = "dialogue"
#: Opting out covers every private channel we could write to unasked.
OPT_OUT_CHANNELS = ("all", "dm", "email", "sms")
#: Automatic messages that are cancelled when the customer opts out.
UNASKED_KINDS = ("follow_up", "outreach")


class DialogueError(ValueError):
    """A question or call back cannot be made as asked; the message says why."""


# --------------------------------------------------------------------------- asking
def question_rule(config: Config, name: str) -> QuestionRule:
    return responders_settings(config).dialogue.rule(name)


def _contact(customer: Customer | None, channels: list[str]) -> tuple[str, str] | None:
    from responders.followup import _contact as first_contact

    return first_contact(customer, channels)


def ask(store: Store, config: Config, case: Case, rule_name: str, *, channels: list[str], actor: str, kind: str,
        key: str, now: datetime | None = None, subject: str | None = None, not_before: datetime | None = None,
        automatic: bool = True, quiet: Any = None, learner_cache: dict[Any, Any] | None = None) -> rows.Question | None:
    """Send the question ``rule_name`` on the case's first usable private channel; None when none is usable.

    ``kind`` is the outbound kind (``outreach``, ``follow_up`` or ``question`` for an agent's own
    offer); ``automatic`` messages are re-checked before sending and may wait for approval.
    """
    from responders.automatic import record
    from responders.channels import ReplyRejected, message_id_for
    from responders.followup import _render, sending_account

    now = now or utcnow()
    rule = question_rule(config, rule_name)
    customer = store.get_customer(case.customer_id) if case.customer_id else None
    # With [responders.channel_learner] on, an automatic question goes on the channel and at the
    # hour this customer answers best (responders/channel_learner.py); else the rule's first channel.
    plan = None
    if automatic and responders_settings(config).channel_learner.enabled:
        from responders.channel_learner import plan_contact

        plan = plan_contact(store, config, customer, case.brand, channels, quiet, now, cache=learner_cache)
    contact = (plan.channel, plan.address) if plan else _contact(customer, channels)
    if contact is None:
        store.audit(actor, "question.skipped", case.id, {"rule": rule_name,
                                                          "reason": "no contact channel (missing or opted out)"})
        return None
    channel, address = contact
    if plan is not None or (automatic and not_before is None and quiet is not None):
        from responders.followup import next_allowed

        # An automatic question waits out the quiet hours like every automatic message: the call-back offer
        # went to a customer's phone at 23:19 (final check, 2026-12-06).
        not_before = next_allowed(plan.send_at if plan is not None else now, quiet, config)
    from responders.templates import TemplateError

    try:
        text = _render(store, config, case, rule.text, source=True)  # a question's text is its source
    except TemplateError as exc:
        store.audit(actor, "question.skipped", case.id, {"rule": rule_name, "reason": str(exc)})
        return None
    try:  # the case brand's own account (its e-mail address), chosen as for an agent's reply
        account = sending_account(store, config, case, channel)
    except ReplyRejected as exc:
        store.audit(actor, "question.skipped", case.id, {"rule": rule_name, "reason": str(exc)})
        return None
    token = secrets.token_hex(5)
    if channel == "email":
        head = subject or (f"About your order {case.order_number}" if case.order_number else "A question from us")
        text = f"Subject: {head} [ref {token}]\n\n{text}\n\nJust reply to this e-mail."
    # Queued and held for approval in one transaction: between the two, the worker's outbox sent a call-back
    # offer by SMS that nobody approved (newcomer audit).
    with store.write_transaction():
        message = enqueue(store, kind=kind, channel=channel, text=text, actor=actor, idempotency_key=key,
                          case_id=case.id, target=address, not_before=not_before, account=account)
        # Every question is a contact attempt: whether and how fast it is answered teaches the learner.
        record_attempt(store, message_id=message.id, case_id=case.id, customer_id=case.customer_id,  # type: ignore[arg-type]
                       brand=case.brand, rule=f"question:{rule_name}", channel=channel, planned_at=not_before or now,
                       tz=config.tz, chosen_by="learner" if plan else "rule")
        if plan is not None:
            store.audit(actor, "channel_learner.choice", case.id,
                        {"message_id": message.id, "channel": channel, "send_at": iso(not_before), "why": plan.why})
        if automatic:
            message = record(store, config, message, kind)
    existing = list(store.db.query("select id from questions where message_id = ?", [message.id]))
    if existing:
        return rows.get_question(store, existing[0]["id"])
    with store.transaction():
        question_id = rows.insert_question(
            store, case_id=case.id, customer_id=case.customer_id, rule=rule_name, channel=channel,  # type: ignore[arg-type]
            target=address, message_id=message.id, token=token, asked_at=now,
            expires_at=(not_before or now) + timedelta(hours=rule.expires_hours),
            mail_id=message_id_for(message) if channel == "email" else None)
        store.audit(actor, "question.asked", case.id, {"question_id": question_id, "rule": rule_name,
                                                       "channel": channel, "message_id": message.id})
    return rows.get_question(store, question_id)


# --------------------------------------------------------------------------- answering
def customer_by_address(store: Store, channel: str, address: str) -> str | None:
    """The customer whose phone (SMS) or e-mail matches ``address``, for a reply with no question.

    A phone stored with its country code matches only the same full number; one stored without
    (matched by its national digits) only when no other customer's number matches as well: a STOP
    acts for one customer, never for whichever of two it found first. None when unsure.
    """
    if channel == "sms":
        digits = rows.address_key(channel, address)
        if not digits:
            return None
        found: dict[str, list[str]] = {"exact": [], "national": []}
        for customer_id, phone in store.db.execute(
                f"select id, phone from customers where {PHONE_DIGITS_SQL} like ? limit 50", [f"%{digits}"]).fetchall():
            match = rows.phones_match(phone, address)
            if match:
                found[match].append(customer_id)
        matches = found["exact"] or found["national"]
        return matches[0] if len(matches) == 1 else None
    else:
        row = store.db.execute("select id from customers where lower(email) = ? limit 1",
                               [address.strip().lower()]).fetchone()
    return row[0] if row else None


def opt_out(store: Store, customer_id: str, *, channel: str, said: str, actor: str = ACTOR,
            case_id: int | None = None) -> list[int]:
    """Opt the customer out of every private channel, cancel what was queued for them; returns the ids cancelled."""
    customer = store.get_customer(customer_id)
    if customer is None:
        return []
    before = list(customer.opt_out)
    after = sorted(set(before) | set(OPT_OUT_CHANNELS))
    with store.transaction():
        if after != sorted(before):
            store.upsert_customer(customer.model_copy(update={"opt_out": after}), fields=["opt_out"])
        cancelled = [r[0] for r in store.db.execute(
            f"select o.id from outbound_messages o join cases c on c.id = o.case_id where c.customer_id = ? and "
            f"o.kind in ({','.join('?' * len(UNASKED_KINDS))}) and o.status in ('queued', 'awaiting_approval')",
            [customer_id, *UNASKED_KINDS]).fetchall()]
        for message_id in cancelled:
            store.db.execute("update outbound_messages set status = 'cancelled', next_attempt_at = null, last_error = "
                             "'cancelled: the customer opted out' where id = ? and status in ('queued', "
                             "'awaiting_approval')", [message_id])
        store.db.execute("update questions set status = 'opted_out' where customer_id = ? and status = 'open'",
                         [customer_id])
        cases = [r[0] for r in store.db.execute("select id from cases where customer_id = ? and "
                                                "status in ('new', 'open', 'pending_customer', 'escalated')",
                                                [customer_id]).fetchall()]
        for cid in sorted({*cases, *([case_id] if case_id else [])}) or [None]:
            store.audit(actor, "customer.opt_out", cid, {"customer_id": customer_id, "channel": channel,
                                                         "said": said[:200], "opt_out": after,
                                                         "cancelled_messages": cancelled})
    return cancelled


def _note_text(template: str, answer: str, understood: Understanding, config: Config) -> str:
    slot = config.local_time(understood.slot_at)
    return template.replace("{answer}", f"“{answer.strip()[:300]}”").replace("{slot}", slot)


#: ``{answer}`` in parentheses, dropped whole from a note that goes to the courier: "(… {answer} …)".
_QUOTED_ANSWER = re.compile(r"\s*\([^()]*\{answer\}[^()]*\)")


def _courier_note(template: str, understood: Understanding, config: Config) -> str:
    """The rule's note as the courier reads it: without the customer's answer.

    Her answer is free text (a name, an address, a phone number: "Yes - I'm Dana, 14 Elm Road, call
    07700 …"), and the courier's escalation and its link can be forwarded. The team's own note on
    the case keeps the quote (:func:`_note_text`)."""
    text = _QUOTED_ANSWER.sub("", template).replace("{answer}", "(their answer is on our case)")
    return _note_text(text, "", understood, config)


def _classifier_reading(classifier: Any, text: str) -> str | None:
    """What the classifier reads in an answer ("negative complaint, intent ..."), for the person it goes to.

    Run before :func:`handle_reply` takes the write lock: a classifier may be a model that takes a
    while on the CPU, and SQLite has one writer at a time. None when it cannot read it.
    """
    try:
        labels = classify_texts(classifier, [text], addressed=[True])[0]  # an answer to our question
    except Exception as exc:  # noqa: BLE001 - the rules' reading stands; the classifier only adds a hint
        log.warning("classifier could not read an answer: %s", exc)
        return None
    return (f"{labels.sentiment}{' complaint' if labels.complaint else ''}, intent {labels.intent}, "
            f"urgency {labels.urgency:.2f}")


def _with_labels(understood: Understanding, reading: str | None) -> Understanding:
    """An answer the rules read as "other", with what the classifier read in it (:func:`_classifier_reading`)."""
    from dataclasses import replace

    if reading is None:
        return understood
    return replace(understood, why=f"{understood.why}; the classifier reads: {reading}")


def live_case(store: Store, case_id: int) -> Case | None:
    """The case as the team works on it now: ``case_id``, or the case it was merged into (however many
    merges ago). A merged case takes no changes, so an answer is acted on and recorded there."""
    return store.get_case(rows.case_now(store, case_id))


def _back_to_team(store: Store, config: Config, case_id: int, now: datetime, from_statuses: tuple[str, ...],
                  actor: str = ACTOR) -> None:
    """The customer answered: a case in ``from_statuses`` goes back to the team (``open``).

    A case that waited on the customer gets its clocks back with the time they had left, as a
    customer's post gives them back (``doorstep.sla``: the pause ends when the customer answered).
    """
    update_case_retrying(store, case_id, actor, lambda c: sla.follow(c, {"status": "open"}, now, config)
                         if c.status in from_statuses else {})


def _customer_wrote(case: Case, at: datetime, config: Config) -> dict[str, Any]:
    """The changes a message from the customer (``at``) makes to an open case, as a post of hers
    would (doorstep.sla.customer_wrote: the pause ends with its time given back, an answer is owed);
    a case waiting on her goes back to the team."""
    after = case.model_copy()
    sla.customer_wrote(after, case, at, config)
    changes = {f: getattr(after, f) for f in ("snoozed_until", "sla_paused_at", "awaiting_since", "first_response_due",
                                              "next_response_due", "resolution_due", "priority_band")
               if getattr(after, f) != getattr(case, f)}
    if case.status == "pending_customer":
        changes["status"] = "open"
    return changes


def _hand_to_person(store: Store, config: Config, case_id: int, why: str, answer: str, now: datetime,
                    actor: str = ACTOR) -> None:
    _back_to_team(store, config, case_id, now, ("new", "pending_customer"), actor)
    store.audit(actor, "dialogue.needs_human", case_id, {"why": why, "answer": answer[:300]})


def _apply_step(store: Store, config: Config, case: Case, question: rows.Question, step: Step, answer: str,
                understood: Understanding, now: datetime) -> str:
    """Do what the rule says for this kind of answer; returns what was done, for the case page."""
    done: list[str] = []
    needs_person: list[str] = []
    if step.escalate:
        from responders.escalation import EscalationRejected, escalate

        if step.escalate == "courier":  # what goes to the courier never quotes the customer
            note = _courier_note(step.note or "The customer answered our question ({answer}).", understood, config)
        else:
            note = _note_text(step.note or "The customer answered {answer} to our question.", answer, understood,
                              config)
        try:
            messages = escalate(store, config, case.id, step.escalate, note, ACTOR,  # type: ignore[arg-type]
                                reason=f"answer:{question.rule}", key=_key("dialogue", question.id, "escalate"))
        except EscalationRejected as exc:
            needs_person.append(f"could not escalate to {step.escalate}: {exc}")
        else:
            done.append(f"escalated to {step.escalate} (message {', '.join(str(m.id) for m in messages)})")
    if step.callback:
        callback = rows.callback_for_question(store, question.id)
        if callback is None:
            needs_person.append("no call back was offered with this question")
        elif not callback.phone:
            needs_person.append("no phone number on the order record for the call back")
        else:
            within = timedelta(minutes=responders_settings(config).callback.sla_minutes)
            rows.schedule_callback(store, callback.id, requested_at=now, slot_at=understood.slot_at,
                                   slot_text=understood.slot_text, sla=within, case_id=case.id)
            when = config.local_time(understood.slot_at) if understood.slot_at else "as soon as possible"
            store.audit(ACTOR, "callback.scheduled", case.id, {"callback_id": callback.id, "slot": when})
            # The customer answered and we owe the call: the case no longer waits on them.
            _back_to_team(store, config, case.id, now, ("pending_customer",))  # type: ignore[arg-type]
            done.append(f"call back scheduled for {when}")
    if step.note:
        store.add_note(case.id, ACTOR, _note_text(step.note, answer, understood, config))  # type: ignore[arg-type]
        done.append("note added")
    if step.status:
        update_case_retrying(store, case.id, ACTOR,  # type: ignore[arg-type]
                             lambda c: {"status": step.status} if c.status != step.status else {}, config)
        done.append(f"status {step.status}")
    if step.human or needs_person:
        why = "; ".join(needs_person) or (f"the rule hands an answer read as “{understood.kind.replace('_', ' ')}” "
                                          f"to a person ({understood.why})")
        _hand_to_person(store, config, case.id, why, answer, now)  # type: ignore[arg-type]
        done.append(f"handed to a person ({why})")
    return "; ".join(done) or "nothing"


def handle_reply(store: Store, config: Config, *, channel: str, external_id: str, sender: str | None, text: str,
                 now: datetime | None = None, question: rows.Question | None = None,
                 sender_verified: bool = True, customer_id: str | None = None,
                 classifier: Any = None) -> dict[str, Any]:
    """Join one inbound reply to its question and act on it; returns what happened (for the HTTP answer and tests).

    ``question``: already matched (a mail's token, a DM on the case); else the newest question sent
    to ``sender`` on ``channel`` (an SMS: the same full number). A question whose case was merged
    since is answered on the case it went into (:func:`live_case`). ``sender_verified`` False (a
    mail whose From is not the address we asked) never acts on the answer: a person reads it. ``classifier`` (the pipeline's) reads an
    answer the rules could not, so the person it goes to sees whether it is an angry complaint.

    **One transaction, so an answer is never lost and never acted on twice.** Recording the reply
    (``answers``, which drops a redelivery of the same channel id as a duplicate) and everything
    done about it (the question claimed, the escalation and messages queued, notes, call backs,
    status changes, the opt-out, the outcome) commit together or not at all. When any of it fails
    ("database is locked" beside an import, a lost PostgreSQL connection, an error in a step),
    nothing is left behind: the sender's retry (Twilio, the mail relay, the worker's next scan) is
    handled as the first delivery, never answered "duplicate" with the answer half-done; after a
    success the retry is still a duplicate. Nothing in here talks to the outside world: messages
    (the courier's escalation included) are only queued in the outbox, which sends them after the
    commit, and the classifier, which may take a while, reads the answer before the write lock is
    taken. The steps' own transactions are savepoints inside this one. A case change that meets a
    newer version (:func:`responders.outbox.update_case_retrying`) is still retried in here: on
    SQLite no other writer can change the case while this transaction holds the write lock, and on
    PostgreSQL (READ COMMITTED) each retry reads the version committed meanwhile.
    """
    now = now or utcnow()
    understood = understand(text, now, config.tz)
    reading = None
    if (classifier is not None and understood.kind == "other" and not rows.reply_seen(store, channel, external_id)
            and (question is not None or (sender and rows.latest_question_to(store, channel, sender) is not None))):
        reading = _classifier_reading(classifier, text)  # only an answer to a question is read by it
    with store.transaction():
        return _handle_reply(store, config, channel=channel, external_id=external_id, sender=sender, text=text,
                             now=now, question=question, sender_verified=sender_verified, customer_id=customer_id,
                             understood=understood, reading=reading)


def _handle_reply(store: Store, config: Config, *, channel: str, external_id: str, sender: str | None, text: str,
                  now: datetime, question: rows.Question | None, sender_verified: bool, customer_id: str | None,
                  understood: Understanding, reading: str | None) -> dict[str, Any]:
    """:func:`handle_reply`'s work, inside its transaction."""
    reply_id = rows.remember_reply(store, channel=channel, external_id=external_id, sender=sender, text=text,
                                   received_at=now)
    if reply_id is None:
        return {"outcome": "duplicate"}
    if question is None and sender:
        question = rows.latest_question_to(store, channel, sender)
    if question is not None and not rows.was_asked(store, question):
        question = None  # still held for approval or queued: the customer is answering something else
    unread = "to a message that asked no question"
    if question is not None and not responders_settings(config).dialogue.enabled:
        # Switched off since it was asked: nothing is acted on, a person reads it (STOP still counts).
        customer_id = customer_id or question.customer_id
        question, unread = None, "not acted on: [responders.dialogue] is switched off"
    customer = (question.customer_id if question else None) or customer_id or (
        customer_by_address(store, channel, sender) if sender else None)
    case = live_case(store, question.case_id) if question else None
    if case is not None and channel in ("sms", "email"):
        # (DMs and public replies are posts: the pipeline marked them when it stored them.)
        for answered_case in sorted({question.case_id, case.id}):  # type: ignore[union-attr]
            mark_answered(store, answered_case, now)  # type: ignore[arg-type]

    def finish(outcome: str, **extra: Any) -> dict[str, Any]:
        rows.note_reply_outcome(store, reply_id, question_id=question.id if question else None,
                                case_id=case.id if case else None, kind=understood.kind, outcome=outcome)
        return {"outcome": outcome, "kind": understood.kind, "question_id": question.id if question else None,
                "case_id": case.id if case else None, **extra}

    if understood.kind == "opt_out" and sender_verified:
        if question is not None:
            rows.claim_answer(store, question.id, status="opted_out", answer=text, kind="opt_out", channel=channel, at=now)
            rows.set_action(store, question.id, "opted out of SMS, e-mail and DM messages")
        if customer is None:
            return finish("opt-out from an unknown sender (nothing to opt out)")
        cancelled = opt_out(store, customer, channel=channel, said=text, case_id=case.id if case else None)
        return finish("opted out", cancelled=cancelled)
    if question is None or case is None:
        # A reply to a message that asked nothing (a plain follow-up): never lost, a person reads it.
        replied_case = _case_we_wrote_to(store, channel, sender) if sender and sender_verified else None
        ours = replied_case is not None
        if replied_case is None and customer is not None and sender_verified:
            # Not an answer to us, but from a known customer's number or address (the one on their
            # order record): it belongs on their case, for a person, never only in the replies table.
            replied_case = _customers_case(store, customer)
        if replied_case is None:
            return finish("no question to answer and no message of ours to that address")
        case = store.get_case(replied_case)
        if case is not None and case.status == "resolved":
            update_case_retrying(store, replied_case, ACTOR, lambda c: {"status": "open", "resolved_at": None}
                                 if c.status not in ("new", "open", "escalated") else {}, config)
        else:  # she wrote to us: the wait on her ends and an answer is owed, as for a post of hers
            update_case_retrying(store, replied_case, ACTOR, lambda c: _customer_wrote(c, now, config))
        said = unread if ours else "not an answer to a message of ours"
        store.add_note(replied_case, ACTOR, f"The customer wrote by {channel}: “{text.strip()[:500]}” ({said}).")
        why = (f"a {channel} reply to our message" if ours else
               f"a {channel} message from the customer's {'number' if channel == 'sms' else 'address'}")
        store.audit(ACTOR, "dialogue.needs_human", replied_case, {"why": why, "answer": text[:300]})
        return finish("handed to a person (reply to a message without a question)" if ours else
                      "handed to a person (a message from the customer, not an answer to one of ours)")
    if case.status not in OPEN_CASE_STATUSES:
        claimed = rows.claim_answer(store, question.id, status="late", answer=text, kind=understood.kind,
                                    channel=channel, at=now, slot_at=understood.slot_at)
        update_case_retrying(store, case.id, ACTOR, lambda c: {"status": "open", "resolved_at": None}  # type: ignore[arg-type]
                             if c.status not in OPEN_CASE_STATUSES else {}, config)
        store.audit(ACTOR, "dialogue.reopened", case.id, {"question_id": question.id, "answer": text[:300],
                                                          "why": "answer after the case was closed: not acted on"})
        store.add_note(case.id, ACTOR, f"The customer answered “{text.strip()[:300]}” on {channel} to a question "  # type: ignore[arg-type]
                                       f"asked {question.asked_at:%d %b}, after the case was closed. Not acted on: "
                                       "please read it and decide.")
        if claimed or question.status == "late":
            rows.set_action(store, question.id, "reopened the case for a person (case was closed)")
        return finish("reopened")
    if not sender_verified:
        _hand_to_person(store, config, case.id, "the reply came from another address than the one we asked",  # type: ignore[arg-type]
                        text, now)
        return finish("handed to a person (unverified sender)")
    # Past its expiry the first answer is late, whether or not housekeeping has marked the question
    # expired yet: recorded (it counts in the answer rates) and read by a person, never acted on.
    late = question.status in ("open", "expired") and question.expires_at <= now
    if not rows.claim_answer(store, question.id, status="late" if late else "answered", answer=text,
                             kind=understood.kind, channel=channel, at=now, slot_at=understood.slot_at):
        fresh = rows.get_question(store, question.id)
        if fresh is not None and fresh.answer_kind == understood.kind:
            store.audit(ACTOR, "dialogue.repeat", case.id, {"question_id": question.id, "answer": text[:300]})
            return finish("repeat (already acted on)")
        _hand_to_person(store, config, case.id, f"a second, different answer to question {question.id}",  # type: ignore[arg-type]
                        text, now)
        return finish("handed to a person (second answer)")
    if late:
        rows.set_action(store, question.id, "handed to a person (answered after the question expired)")
        _hand_to_person(store, config, case.id, "answered after the question expired", text, now)  # type: ignore[arg-type]
        return finish("late")
    rule = question_rule(config, question.rule)
    step: Step = getattr(rule, understood.kind if understood.kind in ("yes", "no", "time") else "other")
    if understood.kind == "other":
        understood = _with_labels(understood, reading)
    action = _apply_step(store, config, case, question, step, text, understood, now)
    rows.set_action(store, question.id, action)
    store.audit(ACTOR, "dialogue.answered", case.id, {"question_id": question.id, "channel": channel,
                                                      "answer": text[:300], "understood": understood.kind,
                                                      "why": understood.why, "action": action})
    return finish("answered", action=action)


def _customers_case(store: Store, customer_id: str) -> int | None:
    """The customer's case a message from them goes to: their newest open one, else their newest
    (it reopens for a person); never a case merged away."""
    row = store.db.execute(
        "select id from cases where customer_id = ? and merged_into is null order by "
        "case when status in ('new', 'open', 'pending_customer', 'escalated') then 0 else 1 end, "
        "last_activity_at desc, id desc limit 1", [customer_id]).fetchone()
    return int(row[0]) if row else None


def _case_we_wrote_to(store: Store, channel: str, address: str) -> int | None:
    """The case (as it is now, after any merge) of our newest message sent to ``address`` on ``channel``
    (SMS: the same number, see :func:`doorstep.dialogue.same_address`)."""
    if not rows.address_key(channel, address):
        return None
    for row in store.db.execute(
            "select case_id, target from outbound_messages where channel = ? and status = 'sent' and case_id is not null "
            "and kind in ('reply', 'follow_up', 'outreach') order by id desc limit 200", [channel]).fetchall():
        if rows.same_address(channel, row[1], address):
            case = live_case(store, int(row[0]))
            return case.id if case is not None else None
    return None


# --------------------------------------------------------------------------- answers kept for a person
def keep_for_person(store: Store, config: Config, *, channel: str, external_id: str, sender: str | None, text: str,
                    error: BaseException, question: rows.Question | None = None, sender_verified: bool = True,
                    customer_id: str | None = None, case_id: int | None = None, why: str | None = None,
                    now: datetime | None = None) -> dict[str, Any]:
    """Keep for a person an answer whose handling (:func:`handle_reply`) failed, in one small transaction.

    The one way an answer that cannot be acted on is kept, never lost, whoever met the failure: the
    reply endpoints at once (``POST /sms``, ``POST /mail``: a webhook is not sent again) and the
    worker's scan of DMs and public replies after :data:`MENTION_TRIES` ticks in a row
    (:func:`_hand_failed_post`). One copy, so a STOP is honoured and the case goes back to the team
    on every channel alike.

    The answer is recorded in ``answers`` (outcome "handed to a person (``why``)", by default "could
    not be acted on: <error type>"; a redelivery is then a duplicate, and a duplicate keeps nothing
    more). It goes to the case :func:`handle_reply` would find (the question's, else ``case_id``,
    the case a post is on, else the case of our last message to that address, else the customer's
    own; never a case merged away; only the address we asked speaks for the customer): that case
    goes back to the team if it waited on the customer, a note quoting the answer and the error goes
    on it, and ``dialogue.needs_human`` is audited. Nothing is acted on, except a STOP: it opts the
    customer out when the sender is the address we asked (``sender_verified``, as a handled STOP
    would) and one customer has it, since an opt-out only stops messages and must not wait for a
    person. Each of those extras runs in a savepoint: if it fails too, the answer and the audit are
    still kept, and the note says what was not done (an opt-out to make by hand).

    ``customer_id``: the customer a post's case is confirmed to (as :func:`handle_reply` takes it).
    Returns the outcome, the answer's kind, its case and ``reply_id`` (the ``answers`` row, for the
    caller's own log or health line). A busy or unreachable store raises (nothing kept: retry it).
    """
    now = now or utcnow()
    error_text = error_line(error)
    outcome = f"handed to a person ({why or f'could not be acted on: {type(error).__name__}'})"
    kind = _kind_of(config, text, now)
    with store.transaction():
        reply_id = rows.remember_reply(store, channel=channel, external_id=external_id, sender=sender, text=text,
                                       received_at=now)
        if reply_id is None:
            return {"outcome": "duplicate"}
        found = _in_savepoint(store, "find the answer's case", lambda: _whose(
            store, channel, sender, question, sender_verified, customer_id, case_id))
        question, home, customer = found if isinstance(found, tuple) else (question, None, None)
        said_why = f"{why}; the last error: {error_text}" if why else error_text
        audit_why = f"{why or 'could not be acted on'}: {error_text}"
        stop, opted = "", False
        if kind == "opt_out":
            stop, audit_why, opted = _stop_for_person(store, channel, text, customer, home, sender_verified,
                                                      audit_why)
        if home is not None:
            on_case: int = home
            _in_savepoint(store, "move the case back to the team", lambda: _back_to_team(
                store, config, on_case, now, ("new", "pending_customer")))
            noted = _in_savepoint(store, "leave a note", lambda: store.add_note(
                on_case, ACTOR, f"The customer wrote by {channel_name(channel)}: “{text.strip()[:500]}”. It could "
                                 f"not be acted on ({said_why}): please read it and decide.{stop}"))
            if isinstance(noted, Exception):
                audit_why += f"; no note on the case either ({type(noted).__name__})"
        rows.note_reply_outcome(store, reply_id, question_id=question.id if question is not None else None,
                                case_id=home, kind=kind, outcome=outcome + ("; opted out" if opted else ""))
        store.audit(ACTOR, "dialogue.needs_human", home, {
            "why": audit_why, "error": error_text, "answer": text[:300], "channel": channel, "reply_id": reply_id})
    return {"outcome": outcome, "kind": kind, "case_id": home, "reply_id": reply_id}


def error_line(error: BaseException) -> str:
    """An error as a note, an audit and listener health quote it: one line, its type first, at most 300
    characters (an exception's text can run over lines, and a traceback is for the log)."""
    return " ".join(f"{type(error).__name__}: {error}".split())[:300]


def _kind_of(config: Config, text: str, now: datetime) -> str:
    """How the rules read an answer kept for a person ("opt_out" for a STOP); "unread" when reading it
    is what fails (a person reads it either way)."""
    try:
        return str(understand(text, now, config.tz).kind)
    except Exception:  # noqa: BLE001 - a person reads it either way
        log.warning("could not read an answer kept for a person", exc_info=True)
        return "unread"


def _whose(store: Store, channel: str, sender: str | None, question: rows.Question | None, sender_verified: bool,
           customer_id: str | None, case_id: int | None) -> tuple[rows.Question | None, int | None, str | None]:
    """The answer's question, case and customer, found as :func:`handle_reply` finds them (never a case
    merged away; only the address we asked speaks for the customer)."""
    if question is None and sender:
        question = rows.latest_question_to(store, channel, sender)
    if question is not None and not rows.was_asked(store, question):
        question = None
    customer = (question.customer_id if question is not None else None) or customer_id or (
        customer_by_address(store, channel, sender) if sender else None)
    home = None
    for known in (question.case_id if question is not None else None, case_id):
        case = live_case(store, known) if known is not None else None
        if case is not None:
            home = case.id
            break
    if home is None and sender and sender_verified:
        home = _case_we_wrote_to(store, channel, sender)
    if home is None and customer is not None and sender_verified:
        home = _customers_case(store, customer)
    return question, home, customer if sender_verified else None


def _stop_for_person(store: Store, channel: str, text: str, customer: str | None, case_id: int | None,
                     sender_verified: bool, why: str) -> tuple[str, str, bool]:
    """A STOP in an answer kept for a person: opt the customer out if that can be done safely;
    returns what the note adds, the audit's ``why`` and whether they are opted out."""
    if not sender_verified:
        return (" They asked us to stop messaging them, from another address than the one we asked: check "
                "who wrote before opting anyone out.", f"{why}; a STOP from another address: not opted out", False)
    if customer is None:
        return (" They asked us to stop messaging them, and no one customer has this "
                f"{'number' if channel == 'sms' else 'address'}: find them and opt them out by hand.",
                why + "; a STOP from an unknown sender: not opted out", False)
    done = _in_savepoint(store, "opt the customer out", lambda: opt_out(store, customer, channel=channel, said=text,
                                                                        case_id=case_id))
    if isinstance(done, Exception):
        return (f" They asked us to stop messaging them and are NOT opted out (that failed too: "
                f"{type(done).__name__}): opt them out by hand on their customer record.",
                why + f"; a STOP: not opted out ({type(done).__name__}), a person must do it", False)
    return (" They asked us to stop messaging them: we opted them out of SMS, e-mail and DM messages.",
            why + "; a STOP: opted out", True)


def _in_savepoint(store: Store, what: str, step: Callable[[], Any]) -> Any:
    """``step`` in a savepoint: its result, or the exception it raised (its writes undone), so that the
    answer is kept whatever else fails. A busy store still raises: the whole answer is retried then."""
    try:
        with store.transaction():
            return step()
    except OPERATIONAL_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - said in the note and the audit instead
        log.warning("an answer kept for a person: could not %s", what, exc_info=True)
        return exc


# --------------------------------------------------------------------------- DMs and public replies
MENTIONS_CURSOR = "dialogue.mentions"
#: The post whose handling failed last and how many ticks in a row it failed ("ID TRIES").
FAILING_CURSOR = "dialogue.mentions.failing"
#: Ticks in a row the worker tries a post whose handling fails for another reason than a busy or
#: unreachable store (a bug, data a step cannot take) before it hands the post to a person and reads on.
MENTION_TRIES = 3


def scan_mentions(store: Store, config: Config, now: datetime | None = None, batch: int = 500) -> int:
    """Read new inbound posts (DMs, public replies) for answers to open questions and opt-outs; returns how many.

    The cursor never moves past a post whose handling failed: it stops just before it, the job
    raises (the worker logs it) and the next tick reads the post again, which :func:`handle_reply`
    then handles as the first time (a failure leaves nothing behind). A busy or unreachable store
    is waited out so; any other failure is tried on :data:`MENTION_TRIES` ticks in a row, then the
    post is kept for a person as the reply endpoints keep an SMS (:func:`_hand_failed_post`,
    :func:`keep_for_person`: a STOP in it still opts the customer out), so that one post a step
    cannot take holds up no later answer (a STOP among them).
    """
    cursor = store.get_cursor(MENTIONS_CURSOR)
    if cursor is None:  # first run: only what arrives from now on
        store.set_cursor(MENTIONS_CURSOR, str(store.db.execute("select coalesce(max(id), 0) from mentions").fetchone()[0]))
        return 0
    handled = 0
    last = int(cursor)
    enabled = responders_settings(config).dialogue.enabled  # off: only opt-outs are read
    open_questions: rows.OpenQuestions | None = None  # read once, when the first post on a case comes
    for row in list(store.db.query(
            "select m.id, m.channel, m.external_id, m.text, m.author_handle, m.case_id, c.customer_id, c.link_confirmed "
            "from mentions m left join cases c on c.id = m.case_id where m.id > ? and m.outbound = 0 order by m.id limit ?",
            [last, batch])):
        before, last = last, row["id"]
        if row["case_id"] is None:
            continue
        # Only a question that went out and is still open is answered by a post on its case; a later
        # post on a case whose question was answered is an ordinary post (the inbox shows it).
        if enabled and open_questions is None:
            open_questions = rows.OpenQuestions(store, now or utcnow())
        question = open_questions.on_case(row["case_id"]) if open_questions is not None else None
        understood = understand(row["text"], now or utcnow(), config.tz)
        if question is None and not (understood.kind == "opt_out" and row["customer_id"] and row["link_confirmed"]):
            continue
        # Only the case's customer answers for the customer: a stranger's "STOP" or "yes" in her
        # thread stays a post the inbox shows, and opts nobody out and books nothing.
        case, mention = store.get_case(row["case_id"]), store.get_mention(row["id"])
        if case is None or mention is None or not by_customer(store, case, mention):
            continue
        try:
            handle_reply(store, config, channel=row["channel"], external_id=row["external_id"],
                         sender=row["author_handle"], text=row["text"], now=now, question=question,
                         customer_id=row["customer_id"] if row["link_confirmed"] else None)
        except Exception as exc:
            try:  # the posts before it are read; this one is read again on the next tick
                store.set_cursor(MENTIONS_CURSOR, str(before))
            except DATABASE_ERRORS:
                log.warning("could not keep the dialogue's place in the mentions", exc_info=True)
            if isinstance(exc, OPERATIONAL_ERRORS) or not _hand_failed_post(store, config, row, exc, now or utcnow(),
                                                                             question=question):
                raise
        handled += 1
    store.set_cursor(MENTIONS_CURSOR, str(last))
    return handled


def _hand_failed_post(store: Store, config: Config, row: dict[str, Any], exc: Exception, now: datetime, *,
                      question: rows.Question | None) -> bool:
    """Count one more tick on which handling the post ``row`` failed; on the :data:`MENTION_TRIES`-th, keep
    it for a person instead (:func:`keep_for_person`, as the reply endpoints keep an SMS or e-mail: the
    answer recorded, its case back with the team, a note quoting it, ``dialogue.needs_human``; a STOP
    still opts the customer out) and return True, so the scan reads on. Otherwise never acted on: a
    person reads it and decides."""
    seen = (store.get_cursor(FAILING_CURSOR) or "").split()
    tries = int(seen[1]) + 1 if len(seen) == 2 and seen[0] == str(row["id"]) else 1
    if tries < MENTION_TRIES:
        store.set_cursor(FAILING_CURSOR, f"{row['id']} {tries}")
        return False
    why = f"handling it failed {tries} times"
    log.error("dialogue: post %s handed to a person, %s", row["id"], why, exc_info=exc)
    with store.transaction():
        # Found as scan_mentions handed it to handle_reply: the post's case, its open question, and the
        # case's customer only when the case is confirmed to them (by_customer vouched for the author).
        keep_for_person(store, config, channel=row["channel"], external_id=row["external_id"],
                        sender=row["author_handle"], text=row["text"], error=exc, question=question,
                        customer_id=row["customer_id"] if row["link_confirmed"] else None,
                        case_id=row["case_id"], why=why, now=now)
        store.set_cursor(FAILING_CURSOR, "")
    return True


# --------------------------------------------------------------------------- call backs
def offer_callback(store: Store, config: Config, case_id: int, actor: str, reason: str, *,
                   now: datetime | None = None, automatic: bool = False) -> rows.Callback:
    """Offer a call back on the case: ask the ``callback`` question and open an ``offered`` task."""
    if not responders_settings(config).dialogue.enabled:
        raise DialogueError("the customer's answer picks the slot, and with [responders.dialogue] enabled = false "
                            "no answer is read: call them from the order record's number instead")
    settings = responders_settings(config).callback
    now = now or utcnow()
    case = store.get_case(case_id)
    if case is None:
        raise DialogueError(f"no case {case_id}")
    if not case.link_confirmed or not case.customer_id:
        raise DialogueError("confirm the case's order first: the phone number comes from the order record")
    customer = store.get_customer(case.customer_id)
    if customer is None or not customer.phone:
        raise DialogueError("the order record has no phone number to call")
    open_offer = [c for c in rows.callbacks_for_case(store, case_id) if c.status in ("offered", "scheduled")]
    if open_offer:
        return open_offer[-1]
    key = _key("callback-offer", case_id, reason, iso(now) if not automatic else "rule")
    from responders.followup import brand_quiet_hours

    question = ask(store, config, case, settings.question, channels=settings.channels, actor=actor,
                   kind="outreach", key=key, now=now, automatic=automatic,
                   quiet=brand_quiet_hours(config, case.brand) if automatic else None,
                   subject=f"Shall we call you about order {case.order_number}?")
    if question is None:
        raise DialogueError("the customer cannot be asked: no e-mail or phone on the order record, or they opted out")
    with store.transaction():
        callback_id = rows.insert_callback(store, case_id=case_id, question_id=question.id, reason=reason,
                                           offered_by=actor, offered_at=now, phone=customer.phone)
        store.audit(actor, "callback.offered", case_id, {"callback_id": callback_id, "reason": reason,
                                                         "question_id": question.id, "channel": question.channel})
    return rows.get_callback(store, callback_id)  # type: ignore[return-value]


def callback_candidates(store: Store, config: Config, now: datetime) -> dict[int, str]:
    """Open cases a rule says deserve a call back, with the rule's reason (none already offered one)."""
    settings = responders_settings(config).callback
    since = iso(now - timedelta(days=settings.lookback_days))
    base = ("from cases c join customers cu on cu.id = c.customer_id where c.status in ('new', 'open', "
            "'pending_customer', 'escalated') and c.link_confirmed = 1 and cu.phone is not null and cu.phone != '' "
            "and c.last_activity_at >= ? and not exists (select 1 from callbacks b where b.case_id = c.id)")
    out: dict[int, str] = {}
    if settings.vip:
        for r in store.db.execute(f"select c.id {base} and cu.vip = 1", [since]).fetchall():
            out.setdefault(r[0], "VIP customer")
    if settings.contacts:
        for r in store.db.execute(f"select c.id {base} and (select count(*) from mentions m where m.case_id = c.id "
                                  "and m.outbound = 0) >= ?", [since, settings.contacts]).fetchall():
            out.setdefault(r[0], f"{settings.contacts} or more contacts on one case")
    if settings.order_value_over:
        for r in store.db.execute(f"select c.id {base} and c.order_number in (select number from orders "
                                  "where total > ?)", [since, settings.order_value_over]).fetchall():
            out.setdefault(r[0], f"order worth more than {settings.order_value_over:g}")
    if settings.stuck_days:
        stuck = iso(now - timedelta(days=settings.stuck_days))
        for r in store.db.execute(f"select c.id {base} and c.tracking_number in (select tracking_number from shipments "
                                  "where status in ('info_received', 'in_transit', 'exception') and last_event_at <= ?)",
                                  [since, stuck]).fetchall():
            out.setdefault(r[0], f"parcel without a scan for {settings.stuck_days:g} days")
    return out


def run_callback_rules(store: Store, config: Config, now: datetime | None = None) -> list[int]:
    """Offer call backs where a rule says so; returns the call-back ids offered."""
    settings = responders_settings(config).callback
    if not settings.enabled:
        return []
    now = now or utcnow()
    offered = []
    for case_id, reason in sorted(callback_candidates(store, config, now).items()):
        try:
            callback = offer_callback(store, config, case_id, "callback-rule", reason, now=now, automatic=True)
        except (DialogueError, ConfigError) as exc:
            log.info("no call back offered on case %s: %s", case_id, exc)
            continue
        except Exception as exc:  # noqa: BLE001 - one case must not stop the others (a template the case cannot fill)
            log.warning("no call back offered on case %s: %s", case_id, exc)
            continue
        offered.append(callback.id)
    return offered


def record_outcome(store: Store, callback_id: int, outcome: str, actor: str, now: datetime | None = None, *,
                   force: bool = False) -> None:
    """An agent's call: reached, no answer (the task stays), or resolved (the case is resolved too).

    "Resolved" follows the rule of every way of resolving (:mod:`doorstep.resolving`): past a reply or an
    escalation that has not gone it is refused, nothing recorded, unless ``force`` (the agent confirmed)."""
    from doorstep.resolving import held_up_words, resolve_holds

    now = now or utcnow()
    callback = rows.get_callback(store, callback_id)
    if callback is None:
        raise DialogueError(f"no call back {callback_id}")
    if outcome == "resolved" and not force:
        hold_up, _ = resolve_holds(store, callback.case_id)
        if hold_up:
            raise DialogueError(f"{held_up_words('resolved', hold_up)}: retry or cancel them on case "
                                f"#{callback.case_id}, record the call as reached, or resolve even though")
    if not rows.record_callback_outcome(store, callback_id, outcome, actor, now):
        raise DialogueError(f"call back {callback_id} is {callback.status}, not waiting for a call")
    store.audit(actor, "callback.outcome", callback.case_id, {"callback_id": callback_id, "outcome": outcome})
    if outcome == "resolved":
        update_case_retrying(store, callback.case_id, actor, lambda c: {"status": "resolved", "resolved_at": now}
                             if c.status != "resolved" else {})


def run_housekeeping(store: Store, config: Config, now: datetime | None = None) -> dict[str, list[int]]:
    """Expire unanswered questions, drop those whose message was cancelled, and flag call-back SLA breaches."""
    now = now or utcnow()
    store.db.execute("update questions set status = 'cancelled' where status = 'open' and message_id in "
                     "(select id from outbound_messages where status = 'cancelled')")
    expired = rows.expire_questions(store, now)
    breached = rows.mark_breaches(store, now)
    for callback_id in breached:
        callback = rows.get_callback(store, callback_id)
        if callback is not None:
            store.audit("callback-sla", "callback.sla_breach", callback.case_id,
                        {"callback_id": callback_id, "due_at": iso(callback.due_at)})
    return {"expired": expired, "breached": breached}


def bridge_call(store: Store, config: Config, callback_id: int, actor: str) -> str:
    """Ring the care desk through Twilio's voice API and connect it to the customer; returns the call's SID.

    Twilio calls ``[responders.callback] bridge_desk_phone`` and, when the desk answers, dials the
    customer's number from the order record with our number as caller id (TwiML ``<Dial>``). The
    customer's number goes to Twilio only, never into a log.
    """
    from twilio.base.exceptions import TwilioException
    from twilio.twiml.voice_response import Dial, VoiceResponse

    from doorstep.config import secret
    from responders.channels import twilio_client
    from responders.config import resolve

    callback = rows.get_callback(store, callback_id)
    if callback is None or callback.status != "scheduled":
        raise DialogueError(f"call back {callback_id} is not waiting for a call")
    desk = resolve(responders_settings(config).callback.bridge_desk_phone)
    caller = secret("TWILIO_FROM")
    if not desk or not caller:
        raise DialogueError("bridged calls need [responders.callback] bridge_desk_phone and TWILIO_FROM")
    if not callback.phone:
        raise DialogueError("the order record has no phone number to call")
    dial = Dial(caller_id=caller)
    dial.number(callback.phone)
    twiml = VoiceResponse()
    twiml.append(dial)
    try:
        call = twilio_client(config).calls.create(to=desk, from_=caller, twiml=str(twiml))
    except TwilioException as exc:
        raise DialogueError(f"Twilio refused the call: {getattr(exc, 'msg', exc)}") from None
    store.audit(actor, "callback.bridge", callback.case_id, {"callback_id": callback_id, "call_sid": str(call.sid)})
    return str(call.sid)
