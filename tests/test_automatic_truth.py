"""Automatic messages are true when they leave, wait for approval when required, and failures are loud
(issue 13, failures 3 and 6). Assertions are on what the local SMTP server and X emulator received."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from doorstep.models import Mention
from doorstep.store import Store, iso
from standins.x_emulator import XEmulator
from responders.automatic import ApprovalError, approve, pending_approval, reject
from responders.followup import run_followups
from responders.outbox import Outbox, get_message, queue_reply

from test_followup import _asked_publicly, _body
from test_outbox import NOW, SmtpSink, add_order, emulator, make_case, shop_config, smtp  # noqa: F401 - fixtures

AUTH = {"Authorization": "Bearer test-token"}
DAY_LATER = NOW + timedelta(hours=25)  # Tuesday 11:00 in London: not quiet hours


def _send(store: Store, config, when=DAY_LATER) -> None:  # noqa: ANN001
    Outbox(store, config, now=lambda: when).send_due()


def _cancel_reason(store: Store, case_id: int) -> str:
    return next(e for e in store.audit_trail(case_id) if e.action == "automatic.cancelled").details["reason"]


def test_a_failed_reply_is_never_followed_by_a_message_that_mentions_it(store: Store, emulator: XEmulator,
                                                                       smtp: SmtpSink) -> None:
    """Failure 3: the reply failed ("tweet ... does not exist"); the e-mail must not say "we replied"."""
    config = shop_config()
    order = add_order(store)
    case_id = make_case(store, config, emulator, order=order)
    parent = store.mentions_for_case(case_id)[0].external_id
    import requests

    requests.delete(f"{emulator.base_url}/2/tweets/{parent}", headers=AUTH, timeout=5)  # the customer deleted their post
    emulator.inject("403", 1, "/2/tweets")
    reply = queue_reply(store, config, case_id, "@jane we're on it.", "sam")
    Outbox(store, config).send_due()
    assert get_message(store, reply.id).status == "failed"  # type: ignore[arg-type]
    assert len(run_followups(store, config, NOW + timedelta(hours=1))) == 1
    _send(store, config, NOW + timedelta(hours=1))
    assert len(smtp.messages) == 1 and emulator.posted == []
    body = _body(smtp.messages[0])
    assert "we replied" not in body.casefold() and "could not answer you there" in body


def test_follow_up_is_cancelled_when_the_reply_it_mentions_was_deleted(store: Store, emulator: XEmulator,
                                                                      smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24})
    case_id = _asked_publicly(store, config, emulator)
    assert len(run_followups(store, config, DAY_LATER)) == 1
    import requests

    reply = next(m for m in store.outbound_for_case(case_id) if m.kind == "reply")
    requests.delete(f"{emulator.base_url}/2/tweets/{reply.external_id}", headers=AUTH, timeout=5)  # gone from X
    _send(store, config)
    assert smtp.messages == []
    follow_up = next(m for m in store.outbound_for_case(case_id) if m.kind == "follow_up")
    assert follow_up.status == "cancelled"
    assert "no longer exists" in _cancel_reason(store, case_id)


def test_follow_up_is_cancelled_when_the_customer_answered_since(store: Store, emulator: XEmulator,
                                                                smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24})
    case_id = _asked_publicly(store, config, emulator)
    assert len(run_followups(store, config, DAY_LATER)) == 1
    store.insert_mention(Mention(channel="x", external_id="late-answer", text="@LarkspurHelp porch is fine",
                                 created_at=DAY_LATER, author_handle="jane", case_id=case_id))
    _send(store, config)
    assert smtp.messages == []
    assert _cancel_reason(store, case_id) == "the customer wrote again since this message was written"


def test_follow_up_is_cancelled_when_the_case_was_resolved(store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24})
    case_id = _asked_publicly(store, config, emulator)
    assert len(run_followups(store, config, DAY_LATER)) == 1
    case = store.get_case(case_id)
    store.update_case(case_id, case.version, "ann", status="resolved")  # type: ignore[union-attr]
    _send(store, config)
    assert smtp.messages == []
    assert _cancel_reason(store, case_id) == "the case is resolved"


def test_follow_up_is_cancelled_when_the_order_is_no_longer_confirmed_as_theirs(store: Store, emulator: XEmulator,
                                                                               smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24})
    case_id = _asked_publicly(store, config, emulator)
    assert len(run_followups(store, config, DAY_LATER)) == 1
    case = store.get_case(case_id)
    store.update_case(case_id, case.version, "ann", link_confirmed=False)  # type: ignore[union-attr]
    _send(store, config)
    assert smtp.messages == []
    assert "no longer confirmed" in _cancel_reason(store, case_id)


def test_rule_with_approval_waits_for_an_agent(store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24}, approval={"rules": ["follow_up"], "channels": ["email", "sms"]})
    case_id = _asked_publicly(store, config, emulator)
    [message_id] = run_followups(store, config, DAY_LATER)
    assert get_message(store, message_id).status == "awaiting_approval"
    _send(store, config)
    assert smtp.messages == []  # nothing leaves without an agent
    assert [m.id for m, _ in pending_approval(store)] == [message_id]
    approve(store, message_id, "ann", now=DAY_LATER)
    with pytest.raises(ApprovalError):
        reject(store, message_id, "bob")  # already decided
    _send(store, config)  # approval releases it now
    assert len(smtp.messages) == 1 and smtp.messages[0].envelope_to == ["jane@example.com"]
    assert {"automatic.awaiting_approval", "automatic.approved"} <= {e.action for e in store.audit_trail(case_id)}


def test_a_message_awaiting_approval_that_the_outbox_found_queued_is_held_not_sent(
        store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    """Newcomer audit (high): a rule's message was queued in one transaction and held for approval in the next;
    the worker's outbox claimed it in between and sent an SMS nobody approved, while the timeline said "awaiting
    approval". Whatever its status says, a message whose approval is pending is never sent: it is held again."""
    config = shop_config(followup={"after_hours": 24}, approval={"rules": ["follow_up"], "channels": ["email", "sms"]})
    _asked_publicly(store, config, emulator)
    [message_id] = run_followups(store, config, DAY_LATER)
    store.db.execute("update outbound_messages set status = 'queued' where id = ?", [message_id])  # the race's state
    _send(store, config)
    assert smtp.messages == []
    assert get_message(store, message_id).status == "awaiting_approval"
    assert [m.id for m, _ in pending_approval(store)] == [message_id]


def test_a_rule_message_is_queued_and_held_in_one_transaction(store: Store, emulator: XEmulator,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The race's root: nobody (another connection, the worker) ever sees the message queued before it is held."""
    import responders.automatic as automatic

    config = shop_config(followup={"after_hours": 24}, approval={"rules": ["follow_up"], "channels": ["email", "sms"]})
    _asked_publicly(store, config, emulator)
    seen: list[bool] = []
    real = automatic.record

    def record(store_, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(store_.db.in_transaction if hasattr(store_.db, "in_transaction") else store_.db.conn.in_transaction)
        return real(store_, *args, **kwargs)

    monkeypatch.setattr("responders.followup.record", record)
    run_followups(store, config, DAY_LATER)
    assert seen == [True]


def test_rejected_or_stale_approvals_never_send(store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24}, approval={"rules": ["follow_up"]})
    case_id = _asked_publicly(store, config, emulator)
    [message_id] = run_followups(store, config, DAY_LATER)
    reject(store, message_id, "ann", "customer called us")
    assert get_message(store, message_id).status == "cancelled"
    other = _asked_publicly(store, config, emulator, number="LS-100999", tracking="1Z999AA10123456791")
    [second] = run_followups(store, config, DAY_LATER)
    case = store.get_case(other)
    store.update_case(other, case.version, "ann", status="resolved")  # type: ignore[union-attr]
    with pytest.raises(ApprovalError, match="the case is resolved"):
        approve(store, second, "ann")
    Outbox(store, config).send_due()
    assert smtp.messages == []
    assert get_message(store, second).status == "cancelled"


def test_demo_config_holds_email_and_sms_follow_ups_for_approval() -> None:
    from doorstep.config import load_config
    from responders.config import responders_settings

    from conftest import REPO

    approval = responders_settings(load_config(REPO / "demo" / "doorstep.toml")).approval
    assert approval.needs("follow_up", "email") and approval.needs("outreach", "sms")
    assert not approval.needs("follow_up", "x")


def test_a_failing_escalation_alerts_the_lead_after_n_minutes(store: Store, smtp: SmtpSink) -> None:
    """Failure 6: the courier escalation e-mail failed six times and nobody was told."""
    from doorstep.config import parse_config
    from responders.alerts import AlertEngine
    from responders.escalation import escalate

    config = parse_config({"timezone": "Europe/London",
                           "alerts": {"escalation_failed_minutes": 30, "email": ["lead@larkspur.test"],
                                      "urgent_complaint": False, "vip_author": False, "sla_breach": False,
                                      "listener_unhealthy": False, "spike": {"enabled": False}}})
    case_id = make_case(store, config)
    [message] = escalate(store, config, case_id, "email:courier@ups.test", "please check", "ann")
    smtp.refuse(10)
    start = datetime.now(timezone.utc)
    for minutes in range(0, 60, 10):  # the courier's mail server keeps refusing
        Outbox(store, config, now=lambda m=minutes: start + timedelta(minutes=m)).send_due()
    failing = get_message(store, message.id)  # type: ignore[arg-type]
    assert failing.attempts >= 2 and failing.status in ("queued", "failed") and "451" in (failing.last_error or "")
    assert smtp.messages == []
    assert AlertEngine(store, config, now=lambda: start + timedelta(minutes=20)).run_once() == []  # not yet
    smtp.refuse(0)
    late = start + timedelta(minutes=31)
    assert len(AlertEngine(store, config, now=lambda: late).run_once()) == 1
    store.db.execute("update outbound_messages set status = 'cancelled' where id = ?", [message.id])  # leave the alert
    Outbox(store, config, now=lambda: late + timedelta(hours=2)).send_due()
    to_lead = [m for m in smtp.messages if m.envelope_to == ["lead@larkspur.test"]]
    case_id = message.case_id
    assert len(to_lead) == 1 and to_lead[0]["Subject"] == f"[Doorstep ALERT] Failed escalation: case #{case_id}"
    assert "Rule: escalation_failed" in _body(to_lead[0])
    assert "courier@ups.test" in _body(to_lead[0])


def test_a_follow_up_saying_we_could_not_answer_is_cancelled_once_the_retried_reply_is_posted(
        store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    """Audit (outbound) finding 6: written while our X reply had failed ("could not answer you there"),
    the follow-up still went out after the agent's retry got the reply posted; only "replied" was re-checked."""
    from responders.outbox import retry

    config = shop_config(followup={"after_hours": 24})
    order = add_order(store)
    case_id = make_case(store, config, emulator, order=order, text="@LarkspurHelp where is my parcel?")
    asked = "@jane sorry! Is there a safe place we can ask UPS to leave it?"
    reply = queue_reply(store, config, case_id, asked, "ann")
    emulator.inject("403", 1, "/2/tweets")
    Outbox(store, config).send_due()
    assert get_message(store, reply.id).status == "failed"  # type: ignore[arg-type]
    [unsent] = run_followups(store, config, NOW + timedelta(hours=1))
    assert "could not answer you there" in get_message(store, unsent).text
    # It waits (quiet hours, an approval, a busy lane) while the agent retries and X takes the reply.
    store.db.execute("update outbound_messages set next_attempt_at = ? where id = ?",
                     [iso(NOW + timedelta(hours=3)), unsent])
    retry(store, reply.id, "ann", now=NOW + timedelta(hours=2))  # type: ignore[arg-type]
    _send(store, config, NOW + timedelta(hours=2))
    assert get_message(store, reply.id).status == "sent"  # type: ignore[arg-type]
    assert [p["text"] for p in emulator.posted] == [asked]
    _send(store, config, NOW + timedelta(hours=4))
    assert smtp.messages == []  # nothing says "we could not answer you there" about a reply that is on X
    assert get_message(store, unsent).status == "cancelled"
    assert "has been posted since" in _cancel_reason(store, case_id)
    # The ordinary follow-up still comes when the posted reply gets no answer, worded as a reply we posted.
    sent_at = get_message(store, reply.id).sent_at  # type: ignore[arg-type]
    assert sent_at is not None
    [second] = run_followups(store, config, sent_at + timedelta(hours=25))
    _send(store, config, sent_at + timedelta(hours=26))  # Tuesday 12:00 in London, outside quiet hours
    assert get_message(store, second).status == "sent"
    assert len(smtp.messages) == 1 and "we replied to you on X" in _body(smtp.messages[0])


def test_a_could_not_answer_follow_up_due_with_the_retried_reply_does_not_go_out(
        store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    """Finding 6 as the audit ran it (r9): the follow-up, queued in quiet hours for 08:00, and the agent's
    retry are due in the same round; the reply gets posted, the "could not answer you there" mail must not."""
    from datetime import datetime as dt

    from responders.outbox import retry

    config = shop_config(followup={"quiet_hours": {"start": "21:00", "end": "08:00"}})
    order = add_order(store)
    case_id = make_case(store, config, emulator, order=order, text="@LarkspurHelp where is my parcel?")
    reply = queue_reply(store, config, case_id, "@jane sorry! We're checking with UPS now.", "ann")
    emulator.inject("403", 1, "/2/tweets")
    Outbox(store, config).send_due()
    [unsent] = run_followups(store, config, dt(2026, 11, 17, 23, 30, tzinfo=timezone.utc))
    assert get_message(store, unsent).next_attempt_at == dt(2026, 11, 18, 8, 0, tzinfo=timezone.utc)
    morning = dt(2026, 11, 18, 8, 0, tzinfo=timezone.utc)
    retry(store, reply.id, "ann", now=morning)  # type: ignore[arg-type]
    _send(store, config, morning)  # both are due now: the reply and the follow-up, in lanes of their own
    _send(store, config, morning + timedelta(hours=2))
    assert get_message(store, reply.id).status == "sent"  # type: ignore[arg-type]
    assert [p["text"] for p in emulator.posted] == ["@jane sorry! We're checking with UPS now."]
    assert smtp.messages == []
    assert get_message(store, unsent).status == "cancelled"
    assert "the reply it calls unsent" in _cancel_reason(store, case_id)
