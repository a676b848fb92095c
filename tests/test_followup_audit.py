"""Follow-ups and proactive outreach found wrong by the follow-up audit (/tmp/audit/followup.md).

Once per public reply whichever case holds it (a merge moves the reply), one proactive case and
one message per parcel event whoever runs the round, no "we replied to you" for a reply to a
stranger in the customer's thread, no "waiting on the customer" for a "?" inside a link, and no
follow-up once the customer answered on any channel. Against the X emulator and the aiosmtpd
relay, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from doorstep import dialogue as rows
from doorstep.config import Config
from doorstep.models import Mention
from doorstep.pipeline import Pipeline
from doorstep.regroup import merge_cases
from doorstep.store import Store, iso
from responders.dialogue import handle_reply, offer_callback
from responders.followup import run_followups, run_proactive
from responders.outbox import Outbox, _key, get_message, queue_reply
from standins.x_emulator import XEmulator

from conftest import KeywordClassifier
from test_outbox import NOW, SmtpSink, add_order, emulator, make_case, shop_config, smtp  # noqa: F401 - fixtures

ASK = "@jane sorry! Is there a safe place we can ask UPS to leave it?"


def _body(mail: Any) -> str:
    return mail.get_payload(decode=True).decode()


def _xpost(store: Store, config: Config, em: XEmulator, text: str, *, handle: str = "jane", at: datetime = NOW,
           in_reply_to: str | None = None) -> Mention:
    """A post published on the emulator (in reply to ``in_reply_to``) and ingested by the pipeline."""
    payload: dict[str, Any] = {"text": text, "username": handle, "created_at": at.isoformat()}
    if in_reply_to:
        payload["in_reply_to"] = in_reply_to
    external_id = em.add_post(payload)
    parent = store.mention_by_external_id("x", in_reply_to) if in_reply_to else None
    Pipeline(store, config, KeywordClassifier()).ingest([Mention(
        channel="x", external_id=external_id, text=text, created_at=at, author_handle=handle, in_reply_to=in_reply_to,
        thread_id=(parent.thread_id or parent.external_id) if parent else None)])
    return store.mention_by_external_id("x", external_id)  # type: ignore[return-value]


def _confirm(store: Store, case_id: int, order: Any) -> None:
    case = store.get_case(case_id)
    assert case is not None
    if not case.link_confirmed:
        store.update_case(case_id, case.version, "agent", customer_id=order.customer_id, order_number=order.number,
                          tracking_number=order.shipments[0].tracking_number, link_method="agent",
                          link_confirmed=True, courier="UPS", brand=order.brand)


def _reply(store: Store, config: Config, case_id: int, text: str, sent_at: datetime, **kwargs: Any) -> int:
    """An agent's reply sent through the outbox (to the emulator or the relay), dated ``sent_at``."""
    message = queue_reply(store, config, case_id, text, "sam", **kwargs)
    Outbox(store, config).send_due()
    assert get_message(store, message.id).status == "sent"  # type: ignore[arg-type]
    store.db.execute("update outbound_messages set sent_at = ? where id = ?", [iso(sent_at), message.id])
    return message.id  # type: ignore[return-value]


# ------------------------------------------------------------------ 2: once per reply, whichever case holds it
def _two_cases_of_jane(store: Store, config: Config, em: XEmulator) -> tuple[int, int, int]:
    """Case B (4 days old, our unconfirmed question) and case A (her confirmed order, our question at NOW)."""
    order = add_order(store)
    b = _xpost(store, config, em, "@LarkspurHelp where is my parcel?", at=NOW - timedelta(days=4))
    _reply(store, config, b.case_id, "@jane sorry! Could you DM us your order number?",  # type: ignore[arg-type]
           NOW - timedelta(days=4) + timedelta(minutes=5))
    a = _xpost(store, config, em, "@LarkspurHelp still nothing, order LS-100234", at=NOW - timedelta(minutes=10))
    assert a.case_id != b.case_id
    _confirm(store, a.case_id, order)  # type: ignore[arg-type]
    reply = _reply(store, config, a.case_id, ASK, NOW)  # type: ignore[arg-type]
    return a.case_id, b.case_id, reply  # type: ignore[return-value]


def _merge(store: Store, config: Config, keep: int, other: int) -> None:
    merge_cases(store, config, keep, store.get_case(keep).version, other,  # type: ignore[union-attr]
                store.get_case(other).version, "lead")  # type: ignore[union-attr]


def test_a_merge_does_not_send_the_same_follow_up_again(store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24, "channels": ["email"]})
    a, b, _ = _two_cases_of_jane(store, config, emulator)
    first = NOW + timedelta(hours=25)
    assert len(run_followups(store, config, first)) == 1
    Outbox(store, config, now=lambda: first).send_due()
    _merge(store, config, b, a)
    later = NOW + timedelta(hours=26)
    assert run_followups(store, config, later) == []
    Outbox(store, config, now=lambda: later).send_due()
    assert [m.envelope_to for m in smtp.messages] == [["jane@example.com"]]


def test_a_follow_up_queued_before_a_merge_goes_out_once_from_the_kept_case(store: Store, emulator: XEmulator,
                                                                            smtp: SmtpSink) -> None:
    """Keyed by the reply, a follow-up still waiting (quiet hours) when the cases merge is the reply's
    one follow-up: it must go out from the kept case, not be cancelled as "the case is resolved"."""
    config = shop_config(followup={"after_hours": 24, "channels": ["email"],
                                   "quiet_hours": {"start": "21:00", "end": "08:00"}})
    a, b, _ = _two_cases_of_jane(store, config, emulator)
    night = datetime(2026, 11, 17, 23, 30, tzinfo=timezone.utc)
    [message_id] = run_followups(store, config, night)
    _merge(store, config, b, a)
    assert run_followups(store, config, night + timedelta(minutes=5)) == []
    morning = datetime(2026, 11, 18, 8, 1, tzinfo=timezone.utc)
    Outbox(store, config, now=lambda: morning).send_due()
    assert get_message(store, message_id).status == "sent"
    assert [m.envelope_to for m in smtp.messages] == [["jane@example.com"]]


@pytest.mark.parametrize("merged", [False, True], ids=["same case", "then merged"])
def test_a_follow_up_sent_under_the_old_key_is_not_sent_again_after_upgrading(
        store: Store, emulator: XEmulator, smtp: SmtpSink, merged: bool) -> None:
    """A database written before the follow-up was keyed by its reply holds it under (case, reply)."""
    config = shop_config(followup={"after_hours": 24, "channels": ["email"]})
    a, b, reply = _two_cases_of_jane(store, config, emulator)
    first = NOW + timedelta(hours=25)
    [message_id] = run_followups(store, config, first)
    Outbox(store, config, now=lambda: first).send_due()
    store.db.execute("update outbound_messages set idempotency_key = ? where id = ?",
                     [_key("follow_up", a, reply), message_id])  # as the code before the fix wrote it
    if merged:
        _merge(store, config, b, a)
    assert run_followups(store, config, NOW + timedelta(hours=26)) == []
    assert len(smtp.messages) == 1


# ------------------------------------------------------------------ 3: two proactive rounds at once
def test_two_proactive_rounds_at_once_open_one_case_and_send_one_message_per_parcel_event(
        db_url: str, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """``doorstep proactive`` beside the worker's round (or two workers): each on its own connection."""
    import responders.followup as followup

    config = shop_config(proactive={"message": True, "channels": ["email"]})
    setup = Store(db_url)
    orders = 12
    for i in range(orders):
        add_order(setup, number=f"LS-{i:06d}", tracking=f"1Z999AA1{i:010d}", customer_id=f"C{i}",
                  email=f"c{i}@example.com",
                  events=[(NOW - timedelta(days=2), "in_transit", "Leeds"), (NOW - timedelta(hours=3), "attempt_failed", "Bath")])
    setup.close()
    scored = followup.score_priority

    def slow_score(*args: Any, **kwargs: Any) -> Any:  # the moment between "no case yet" and the insert, widened
        time.sleep(0.02)
        return scored(*args, **kwargs)

    monkeypatch.setattr(followup, "score_priority", slow_score)
    start = threading.Barrier(2)
    opened: list[list[int]] = []
    errors: list[BaseException] = []

    def round_() -> None:
        store = Store(db_url)
        try:
            start.wait()
            opened.append(run_proactive(store, config, NOW))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=round_) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    store = Store(db_url)
    try:
        per_order = {r[0]: r[1] for r in store.db.execute(
            "select order_number, count(*) from cases group by order_number").fetchall()}
        outreach = store.db.execute("select count(*) from outbound_messages where kind = 'outreach'").fetchone()[0]
        assert sum(len(o) for o in opened) == orders
        assert per_order == {f"LS-{i:06d}": 1 for i in range(orders)}
        assert outreach == orders
        Outbox(store, config, now=lambda: NOW).send_due()
        assert sorted(m.envelope_to[0] for m in smtp.messages) == sorted(f"c{i}@example.com" for i in range(orders))
    finally:
        store.close()


# ------------------------------------------------------------------ 4: a reply to a stranger's post
def _jane_and_bob(store: Store, config: Config, em: XEmulator) -> tuple[int, Mention]:
    order = add_order(store)
    jane = _xpost(store, config, em, "@LarkspurHelp where is my parcel LS-100234?", at=NOW)
    _confirm(store, jane.case_id, order)  # type: ignore[arg-type]
    bob = _xpost(store, config, em, "@LarkspurHelp same here, mine is late too", handle="bob",
                 at=NOW + timedelta(minutes=30), in_reply_to=jane.external_id)
    assert bob.case_id == jane.case_id
    return jane.case_id, bob  # type: ignore[return-value]


def test_a_question_to_a_stranger_neither_answers_the_customer_nor_is_followed_up(
        store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24, "channels": ["email"]})
    case_id, bob = _jane_and_bob(store, config, emulator)
    _reply(store, config, case_id, "@bob sorry Bob! Could you DM us your order number?", NOW + timedelta(minutes=40),
           parent_id=bob.id)
    case = store.get_case(case_id)
    assert case is not None
    assert (case.status, case.first_response_at, case.sla_paused_at) == ("new", None, None)
    at = NOW + timedelta(hours=25)
    assert run_followups(store, config, at) == []
    Outbox(store, config, now=lambda: at).send_due()
    assert smtp.messages == []


def test_the_follow_up_follows_our_question_to_the_customer_not_a_later_reply_to_a_stranger(
        store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24, "channels": ["email"]})
    case_id, bob = _jane_and_bob(store, config, emulator)
    jane_post = next(m for m in store.mentions_for_case(case_id) if m.author_handle == "jane")
    ours = _reply(store, config, case_id, ASK, NOW + timedelta(minutes=35), parent_id=jane_post.id)
    _reply(store, config, case_id, "@bob sorry Bob! Could you DM us your order number?",
           NOW + timedelta(hours=20), parent_id=bob.id)
    assert run_followups(store, config, NOW + timedelta(hours=25)) != []  # 25 h after her question, not 5 h after his
    at = NOW + timedelta(hours=26)
    assert run_followups(store, config, at) == []
    Outbox(store, config, now=lambda: at).send_due()
    assert [m.envelope_to for m in smtp.messages] == [["jane@example.com"]]
    facts = store.db.execute("select reply_message_id from automatic_messages").fetchall()
    assert [r[0] for r in facts] == [ours]


# ------------------------------------------------------------------ 9: a "?" inside a link
@pytest.mark.parametrize("text, status", [
    ("Hi Jane, you can follow your parcel with UPS here: https://www.ups.com/track?tracknum=1Z999AA10123456784",
     "open"),
    ("Subject: Re: where is my parcel?\n\nHi Jane, UPS will deliver it tomorrow before noon.", "open"),
    ("Hi Jane, UPS will deliver it tomorrow.\n\n> where is my parcel?", "open"),
    ("Hi Jane, is https://www.ups.com/track?tracknum=1Z999AA10123456784 showing it delivered?", "pending_customer"),
], ids=["tracking link", "Re: subject", "quoted mail", "a real question"])
def test_only_a_question_in_our_own_words_waits_on_the_customer(store: Store, smtp: SmtpSink, text: str,
                                                                 status: str) -> None:
    config = shop_config()
    order = add_order(store)
    case_id = make_case(store, config, text="@LarkspurHelp where is my parcel LS-100234?", order=order)
    message = queue_reply(store, config, case_id, text, "sam", channel="email")
    Outbox(store, config).send_due()
    assert get_message(store, message.id).status == "sent"  # type: ignore[arg-type]
    case = store.get_case(case_id)
    assert case is not None and case.status == status
    assert (case.sla_paused_at is None) == (status == "open")
    assert len(smtp.messages) == 1


# ------------------------------------------------------------------ 6: an answer on another channel
def _dialogue_config() -> Config:
    return shop_config(followup={"after_hours": 24, "channels": ["email"]}, dialogue={"enabled": True},
                       callback={"sla_minutes": 120})


def _answered_by_sms(store: Store, config: Config, case_id: int, at: datetime) -> None:
    """We offered a call back by SMS (sent) and the customer said YES by SMS at ``at``."""
    offer = offer_callback(store, config, case_id, "sam", "agent offer", now=at - timedelta(hours=1))
    question = rows.get_question(store, offer.question_id)  # type: ignore[arg-type]
    assert question is not None
    store.db.execute("update outbound_messages set status = 'sent', sent_at = ?, external_id = 'SM-out', "
                     "next_attempt_at = null where id = ?", [iso(at - timedelta(hours=1)), question.message_id])
    result = handle_reply(store, config, channel="sms", external_id=f"SM-in-{case_id}", sender="+447700900123",
                          text="YES", now=at)
    assert result["outcome"] == "answered"


def test_no_follow_up_once_the_customer_answered_by_sms(store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    config = _dialogue_config()
    order = add_order(store)
    case_id = make_case(store, config, emulator, text="@LarkspurHelp where is my parcel LS-100234?", order=order,
                        created_at=NOW - timedelta(hours=1))
    _reply(store, config, case_id, ASK, NOW)
    _answered_by_sms(store, config, case_id, NOW + timedelta(hours=2))
    at = NOW + timedelta(hours=25)
    assert run_followups(store, config, at) == []
    Outbox(store, config, now=lambda: at).send_due()
    assert smtp.messages == []


def test_a_follow_up_waiting_for_quiet_hours_to_end_is_cancelled_when_the_customer_answers_by_sms(
        store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24, "channels": ["email"],
                                   "quiet_hours": {"start": "21:00", "end": "08:00"}},
                         dialogue={"enabled": True}, callback={"sla_minutes": 120})
    order = add_order(store)
    case_id = make_case(store, config, emulator, text="@LarkspurHelp where is my parcel LS-100234?", order=order,
                        created_at=NOW - timedelta(hours=1))
    _reply(store, config, case_id, ASK, NOW)
    night = datetime(2026, 11, 17, 23, 30, tzinfo=timezone.utc)
    [message_id] = run_followups(store, config, night)
    _answered_by_sms(store, config, case_id, night + timedelta(minutes=20))
    Outbox(store, config, now=lambda: datetime(2026, 11, 18, 8, 1, tzinfo=timezone.utc)).send_due()
    assert get_message(store, message_id).status == "cancelled"
    assert "answered" in (get_message(store, message_id).last_error or "")
    assert smtp.messages == []


def test_a_strangers_post_in_the_thread_does_not_cancel_the_customers_follow_up(
        store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    """Only the customer writing makes the follow-up moot: "same here" from someone else does not."""
    config = shop_config(followup={"after_hours": 24, "channels": ["email"],
                                   "quiet_hours": {"start": "21:00", "end": "08:00"}})
    order = add_order(store)
    jane = _xpost(store, config, emulator, "@LarkspurHelp where is my parcel LS-100234?", at=NOW - timedelta(hours=1))
    case_id = jane.case_id
    _confirm(store, case_id, order)  # type: ignore[arg-type]
    _reply(store, config, case_id, ASK, NOW)  # type: ignore[arg-type]
    night = datetime(2026, 11, 17, 23, 30, tzinfo=timezone.utc)
    [message_id] = run_followups(store, config, night)
    _xpost(store, config, emulator, "@LarkspurHelp same here, mine is late too", handle="bob",
           at=night + timedelta(minutes=10), in_reply_to=jane.external_id)
    Outbox(store, config, now=lambda: datetime(2026, 11, 18, 8, 1, tzinfo=timezone.utc)).send_due()
    assert get_message(store, message_id).status == "sent"
    assert [m.envelope_to for m in smtp.messages] == [["jane@example.com"]]
