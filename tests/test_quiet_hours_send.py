"""Quiet hours are kept when an automatic message is *sent*, not only when it is written.

Time audit (quiet hours, medium): a follow-up written on Tuesday at 11:00 London waited on the Approvals
page; an agent approved it at 22:30 and the customer had the e-mail at 22:30, inside the default quiet hours
(21:00-08:00). The same held for an agent's Retry at night, a retry backoff that ran past 21:00 and a worker
that was down and caught up at 23:00: quiet hours were applied only to the time the message was written for.
README: "During quiet hours the message is queued for when they end." Quiet hours are for automatic messages
to customers (follow-ups, proactive messages, the call-back rule's offer); an agent's own reply or call-back
offer goes when the agent sends it. November: London is on GMT, so London times equal UTC here.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from doorstep.store import Store, iso
from responders.automatic import approve
from responders.dialogue import offer_callback
from responders.followup import run_followups, run_proactive
from responders.outbox import Outbox, get_message, queue_reply, retry
from standins.twilio import TwilioStandIn
from standins.x_emulator import XEmulator

from test_dialogue import dialogue_config
from test_followup import _asked_publicly, twilio  # noqa: F401 - fixture
from test_outbox import NOW, SmtpSink, add_order, emulator, make_case, shop_config, smtp  # noqa: F401 - fixtures

WRITTEN = NOW + timedelta(hours=25)                          # Tue 17 Nov 11:00 London: a follow-up is written
NIGHT = datetime(2026, 11, 17, 22, 30, tzinfo=timezone.utc)  # Tue 22:30 London: inside 21:00-08:00
MORNING = datetime(2026, 11, 18, 8, 0, tzinfo=timezone.utc)  # Wed 08:00 London: quiet hours end
APPROVAL = {"rules": ["follow_up"], "channels": ["email", "sms"]}


def _send(store: Store, config: Any, at: datetime) -> None:
    Outbox(store, config, now=lambda: at).send_due()


def _waits_until_morning(store: Store, message_id: int) -> None:
    """Still queued, due at 08:00, and the case's timeline says why (the console shows audit events)."""
    message = get_message(store, message_id)
    assert (message.status, message.next_attempt_at) == ("queued", MORNING)
    [held] = [e for e in store.audit_trail(message.case_id)  # type: ignore[arg-type]
              if e.action == "automatic.waiting_for_quiet_hours_to_end"]
    assert held.details["message_id"] == message_id and held.details["until"] == iso(MORNING)
    assert held.details["reason"] == "quiet hours 21:00-08:00 (Europe/London) of Larkspur"


def test_a_follow_up_approved_during_quiet_hours_waits_for_them_to_end(store: Store, emulator: XEmulator,
                                                                         smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24}, approval=APPROVAL)
    _asked_publicly(store, config, emulator)
    [message_id] = run_followups(store, config, WRITTEN)
    assert get_message(store, message_id).status == "awaiting_approval"
    approve(store, message_id, "ann", now=NIGHT)
    _send(store, config, NIGHT)
    _send(store, config, NIGHT + timedelta(hours=2))  # every round of the night: held, said once
    assert smtp.messages == []
    _waits_until_morning(store, message_id)
    assert get_message(store, message_id).attempts == 0  # holding it is no attempt: max_attempts is untouched
    _send(store, config, MORNING + timedelta(minutes=1))
    assert [m["Subject"] for m in smtp.messages] == ["About your order LS-100234"]


def test_an_agents_retry_at_night_of_a_failed_follow_up_waits_for_the_morning(store: Store, emulator: XEmulator,
                                                                              smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24}, max_attempts=1)
    _asked_publicly(store, config, emulator)
    [message_id] = run_followups(store, config, WRITTEN)
    smtp.refuse(1)
    _send(store, config, WRITTEN)
    assert get_message(store, message_id).status == "failed"
    retry(store, message_id, "ann", config, now=NIGHT)
    _send(store, config, NIGHT)
    assert smtp.messages == []
    _waits_until_morning(store, message_id)
    _send(store, config, MORNING)
    assert len(smtp.messages) == 1 and get_message(store, message_id).status == "sent"


def test_a_retry_backoff_that_runs_past_21_00_waits_for_the_morning(store: Store, emulator: XEmulator,
                                                                     smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24})
    _asked_publicly(store, config, emulator)
    evening = datetime(2026, 11, 17, 20, 59, 50, tzinfo=timezone.utc)
    [message_id] = run_followups(store, config, evening)
    smtp.refuse(1)  # 451: tried again after the 30 s backoff, at 21:00:20
    _send(store, config, evening)
    assert get_message(store, message_id).next_attempt_at == evening + timedelta(seconds=30)
    _send(store, config, evening + timedelta(minutes=1))
    assert smtp.messages == []
    _waits_until_morning(store, message_id)
    assert get_message(store, message_id).attempts == 1  # the one that failed
    _send(store, config, MORNING)
    assert len(smtp.messages) == 1 and get_message(store, message_id).status == "sent"


def test_a_worker_that_catches_up_at_night_holds_a_follow_up_due_in_the_day(store: Store, emulator: XEmulator,
                                                                             smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24})
    _asked_publicly(store, config, emulator)
    [message_id] = run_followups(store, config, WRITTEN)  # due at 11:00; the worker was down until 23:00
    _send(store, config, NIGHT)
    assert smtp.messages == []
    _waits_until_morning(store, message_id)
    _send(store, config, MORNING)
    assert len(smtp.messages) == 1


def test_a_proactive_sms_written_before_21_00_and_sent_after_waits_for_the_morning(
        store: Store, twilio: TwilioStandIn) -> None:  # noqa: F811
    config = shop_config(proactive={"message": True, "channels": ["sms"]})
    evening = datetime(2026, 11, 17, 20, 50, tzinfo=timezone.utc)
    add_order(store, events=[(evening - timedelta(days=1), "in_transit", "Leeds"),
                             (evening - timedelta(hours=1), "attempt_failed", "Bath")])
    [case_id] = run_proactive(store, config, evening)
    [message] = store.outbound_for_case(case_id)
    assert (message.kind, message.channel, message.next_attempt_at) == ("outreach", "sms", evening)
    _send(store, config, NIGHT)
    assert twilio.sms == []
    _waits_until_morning(store, message.id)  # type: ignore[arg-type]
    _send(store, config, MORNING)
    assert [sms["to"] for sms in twilio.sms] == ["+447700900123"]


def test_a_brand_without_quiet_hours_is_written_to_at_night(store: Store, emulator: XEmulator,
                                                            smtp: SmtpSink) -> None:
    """The brand's own quiet hours decide: with none, the approved follow-up goes at once."""
    config = shop_config(followup={"after_hours": 24, "brands": {"Larkspur": {"quiet_hours": None}}},
                         approval=APPROVAL)
    _asked_publicly(store, config, emulator)
    [message_id] = run_followups(store, config, WRITTEN)
    approve(store, message_id, "ann", now=NIGHT)
    _send(store, config, NIGHT)
    assert len(smtp.messages) == 1 and get_message(store, message_id).status == "sent"


def test_an_agents_own_reply_and_call_back_offer_go_at_night(store: Store, emulator: XEmulator,
                                                             twilio: TwilioStandIn) -> None:  # noqa: F811
    """Quiet hours are for automatic messages: what an agent sends at 22:30 goes at 22:30."""
    config = dialogue_config()
    order = add_order(store)
    case_id = make_case(store, config, emulator, order=order, created_at=NIGHT - timedelta(minutes=10))
    reply = queue_reply(store, config, case_id, "@jane we're on it, sorry for the wait.", "ann")
    callback = offer_callback(store, config, case_id, "ann", "agent", now=NIGHT)
    # Both were queued "now" by the real clock: due at 22:30, as they would be if typed then.
    store.db.execute("update outbound_messages set next_attempt_at = ? where case_id = ?", [iso(NIGHT), case_id])
    _send(store, config, NIGHT)
    assert get_message(store, reply.id).status == "sent"  # type: ignore[arg-type]
    assert len(emulator.posted) == 1
    assert [sms["to"] for sms in twilio.sms] == ["+447700900123"]
    assert "would you like us to call you" in twilio.sms[0]["body"]
    assert callback.status == "offered"


def test_the_timeline_says_until_when_a_message_waits() -> None:
    """The hold is on the case's timeline with the time it goes, in the shop's zone."""
    from console.timeline import sentence
    from doorstep.models import AuditEvent

    event = AuditEvent(id=1, at=datetime(2026, 11, 17, 22, 30, tzinfo=timezone.utc), actor="outbox",
                       action="automatic.waiting_for_quiet_hours_to_end", case_id=1,
                       details={"message_id": 7, "kind": "follow_up", "until": "2026-11-18T08:00:00+00:00",
                                "reason": "quiet hours 21:00-08:00 (Europe/London) of Larkspur"})
    words = sentence(event, {}, lambda t: f"{t:%a %H:%M}" if t else "?")
    assert "waits for the end of quiet hours 21:00-08:00 (Europe/London) of Larkspur: it goes at Wed 08:00" in words, words


def test_an_approval_in_quiet_hours_says_when_the_message_goes(store: Store, emulator: XEmulator,
                                                               smtp: SmtpSink) -> None:
    """Browser check (2026-12-07): approved at 02:06, a follow-up waiting for 08:00 read only "approved by agent"
    on the timeline, and the page said "the worker sends it": nothing said it waits for the morning."""
    from console.timeline import sentence

    config = shop_config(followup={"after_hours": 24}, approval=APPROVAL)
    _asked_publicly(store, config, emulator)
    [message_id] = run_followups(store, config, WRITTEN)
    approve(store, message_id, "ann", now=NIGHT, config=config)
    [event] = [e for e in store.audit_trail(get_message(store, message_id).case_id)  # type: ignore[arg-type]
               if e.action == "automatic.approved"]
    assert event.details["not_before"] == iso(MORNING)
    assert event.details["reason"] == "quiet hours 21:00-08:00 (Europe/London) of Larkspur"
    words = sentence(event, {}, lambda t: f"{t:%a %H:%M}" if t else "?")
    assert words.endswith("approved by ann; it goes at Wed 08:00, after the quiet hours 21:00-08:00 "
                          "(Europe/London) of Larkspur"), words
