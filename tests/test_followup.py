"""Cross-channel follow-up and proactive outreach, end to end (X emulator, SMTP, a Twilio stand-in)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from doorstep.store import Store, iso
from standins.twilio import SID, TwilioStandIn  # noqa: F401 - other tests import them from here
from standins.x_emulator import XEmulator
from responders.followup import complaints_after_events, run_followups, run_proactive
from responders.outbox import Outbox, get_message, queue_reply

from test_outbox import (  # noqa: F401 - fixtures
    NOW, RecordingServer, SmtpSink, add_order, emulator, make_case, shop_config, smtp,
)



def _body(mail: Any) -> str:
    return mail.get_payload(decode=True).decode()


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch):
    stand_in = TwilioStandIn()
    with stand_in.server:
        monkeypatch.setenv("TWILIO_ACCOUNT_SID", SID)
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", "secret-token")
        monkeypatch.setenv("TWILIO_FROM", "+447700900000")
        monkeypatch.setenv("TWILIO_BASE_URL", stand_in.server.url)
        yield stand_in


def _asked_publicly(store: Store, config: Any, em: XEmulator, *, sent_at: datetime = NOW, handle: str = "jane",
                    **order_kwargs: Any) -> int:
    """A confirmed case where our X reply asked the customer something at ``sent_at``."""
    order = add_order(store, **order_kwargs)
    case_id = make_case(store, config, em, order=order, created_at=sent_at - timedelta(hours=1), handle=handle)
    message = queue_reply(store, config, case_id, f"@{handle} sorry! Is there a safe place we can ask UPS to leave it?",
                          "sam")
    Outbox(store, config).send_due()
    assert get_message(store, message.id).status == "sent"  # type: ignore[arg-type]
    store.db.execute("update outbound_messages set sent_at = ? where id = ?", [iso(sent_at), message.id])
    assert store.get_case(case_id).status == "pending_customer"  # type: ignore[union-attr]
    return case_id


def test_no_answer_after_n_hours_follows_up_by_email_once(store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24})
    case_id = _asked_publicly(store, config, emulator)
    assert run_followups(store, config, NOW + timedelta(hours=23)) == []
    day_later = NOW + timedelta(hours=25)  # Tuesday 11:00 in London: not quiet hours
    queued = run_followups(store, config, day_later)
    assert len(queued) == 1
    assert run_followups(store, config, day_later + timedelta(hours=5)) == []  # once per question
    Outbox(store, config, now=lambda: day_later).send_due()
    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert mail.envelope_to == ["jane@example.com"] and mail["Subject"] == "About your order LS-100234"
    assert "we replied to you on X about order LS-100234" in _body(mail)
    timeline = store.outbound_for_case(case_id)
    assert [m.kind for m in timeline] == ["reply", "follow_up"] and timeline[1].status == "sent"
    why = next(e for e in store.audit_trail(case_id) if e.action == "follow_up.queue").details["why"]
    assert why == "no answer 24 h after our x reply"
    assert len(emulator.posted) == 1


def test_customer_answered_means_no_follow_up(store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    case_id = _asked_publicly(store, config, emulator)
    make_case(store, config, text="@LarkspurHelp yes, the porch is fine", created_at=NOW + timedelta(hours=2),
              external_id=None)
    store.db.execute("update mentions set case_id = ? where text like '%porch is fine%'", [case_id])
    store.db.execute("update cases set status = 'open' where id = ?", [case_id])
    assert run_followups(store, config, NOW + timedelta(hours=30)) == []


def test_opted_out_of_email_gets_sms_through_twilio(store: Store, emulator: XEmulator, twilio: TwilioStandIn) -> None:
    config = shop_config()
    case_id = _asked_publicly(store, config, emulator, opt_out=["email"])
    at = NOW + timedelta(hours=26)
    assert len(run_followups(store, config, at)) == 1
    twilio.server.fail("500")
    Outbox(store, config, now=lambda: at).send_due()
    Outbox(store, config, now=lambda: at + timedelta(minutes=10)).send_due()
    assert len(twilio.sms) == 1
    sms = twilio.sms[0]
    assert sms["to"] == "+447700900123" and sms["from"] == "+447700900000" and "LS-100234" in sms["body"]
    message = store.outbound_for_case(case_id)[-1]
    assert message.channel == "sms" and message.status == "sent" and message.external_id == sms["sid"]


def test_opted_out_of_everything_is_left_alone(store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    case_id = _asked_publicly(store, config, emulator, opt_out=["email", "sms"])
    assert run_followups(store, config, NOW + timedelta(hours=26)) == []
    assert any(e.action == "follow_up.skipped" for e in store.audit_trail(case_id))


def test_quiet_hours_delay_the_follow_up(store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    config = shop_config(followup={"quiet_hours": {"start": "21:00", "end": "08:00"}})
    _asked_publicly(store, config, emulator)
    night = datetime(2026, 11, 17, 23, 30, tzinfo=timezone.utc)  # 23:30 in London (GMT)
    [message_id] = run_followups(store, config, night)
    assert get_message(store, message_id).next_attempt_at == datetime(2026, 11, 18, 8, 0, tzinfo=timezone.utc)
    Outbox(store, config, now=lambda: night + timedelta(minutes=5)).send_due()
    assert smtp.messages == []
    Outbox(store, config, now=lambda: datetime(2026, 11, 18, 8, 1, tzinfo=timezone.utc)).send_due()
    assert len(smtp.messages) == 1


def test_public_reply_impossible_moves_to_email(store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    config = shop_config()
    order = add_order(store)
    case_id = make_case(store, config, emulator, order=order)
    emulator.inject("403", 1, "/2/tweets")
    message = queue_reply(store, config, case_id, "@jane we're on it.", "sam")
    Outbox(store, config).send_due()
    assert get_message(store, message.id).status == "failed"  # type: ignore[arg-type]
    assert len(run_followups(store, config, NOW + timedelta(hours=1))) == 1
    Outbox(store, config, now=lambda: NOW + timedelta(hours=1)).send_due()
    assert len(smtp.messages) == 1 and emulator.posted == []
    why = next(e for e in store.audit_trail(case_id) if e.action == "follow_up.queue").details["why"]
    assert why.startswith("our x reply could not be posted: X 403")


def test_follow_up_per_brand_switch(store: Store, emulator: XEmulator) -> None:
    config = shop_config(followup={"brands": {"Larkspur": {"enabled": False}}})
    _asked_publicly(store, config, emulator)
    assert run_followups(store, config, NOW + timedelta(hours=30)) == []


# ------------------------------------------------------------------ proactive
def test_proactive_cases_for_failed_attempts_exceptions_and_scan_gaps(store: Store, smtp: SmtpSink) -> None:
    config = shop_config(proactive={"message": True, "no_scan_days": 3})
    add_order(store, number="LS-1", tracking="T1", customer_id="C1",
              events=[(NOW - timedelta(days=1), "in_transit", "Leeds"), (NOW - timedelta(hours=2), "attempt_failed", "Bath")])
    add_order(store, number="LS-2", tracking="T2", customer_id="C2", email="bo@example.com",
              events=[(NOW - timedelta(days=4), "in_transit", "Leeds")])
    add_order(store, number="LS-3", tracking="T3", customer_id="C3",
              events=[(NOW - timedelta(hours=5), "exception", "Hub")])
    add_order(store, number="LS-4", tracking="T4", customer_id="C4",
              events=[(NOW - timedelta(hours=5), "delivered", "Porch")])
    complained = make_case(store, config, text="@LarkspurHelp where is it", handle="cat",
                           order=store.get_order("LS-3"), created_at=NOW - timedelta(hours=1))
    opened = run_proactive(store, config, NOW)
    cases = {store.get_case(i).order_number: store.get_case(i) for i in opened}  # type: ignore[union-attr]
    assert set(cases) == {"LS-1", "LS-2"}  # LS-3 already has the customer's case, LS-4 is fine
    assert cases["LS-1"].intent == "failed_delivery" and cases["LS-1"].link_confirmed
    assert cases["LS-1"].priority_reasons[0] == "proactive: failed delivery attempt"
    assert cases["LS-2"].priority_reasons[0] == "proactive: no tracking scan"
    assert cases["LS-1"].first_response_due is not None
    assert run_proactive(store, config, NOW + timedelta(minutes=15)) == []  # no second case
    Outbox(store, config, now=lambda: NOW).send_due()
    assert sorted(m.envelope_to[0] for m in smtp.messages) == ["bo@example.com", "jane@example.com"]
    failed = next(m for m in smtp.messages if m.envelope_to == ["jane@example.com"])
    assert "order LS-1" in failed["Subject"] and "latest update: delivery attempted, nobody available" in _body(failed)
    assert complained not in opened


def test_a_proactive_case_takes_the_channel_author_and_thread_of_the_customers_first_post(store: Store,
                                                                                        smtp: SmtpSink) -> None:
    """Found by a user check of the demo: the customer's post joined the case we had opened, yet the
    case kept no channel and no author (the inbox's Channel filter listed "(none)", the row no [x])."""
    config = shop_config(proactive={"message": True})
    add_order(store, number="LS-1", tracking="T1", customer_id="C1",
              events=[(NOW - timedelta(days=1), "in_transit", "Leeds"), (NOW - timedelta(hours=2), "attempt_failed", "Bath")])
    [opened] = run_proactive(store, config, NOW)
    assert store.get_case(opened).channel is None  # type: ignore[union-attr]
    joined = make_case(store, config, text="@LarkspurHelp you say nobody was in, I was home all day", handle="jane",
                       external_id="9001", created_at=NOW + timedelta(minutes=30))
    assert joined == opened
    case = store.get_case(opened)
    assert case is not None
    assert (case.channel, case.author_handle, case.thread_id) == ("x", "jane", "9001")
    assert store.inbox_facets("channel").get("x") == 1


def test_a_proactive_case_joined_before_the_fix_takes_its_channel_when_the_database_upgrades(store: Store) -> None:
    """A database written before the fix above holds proactive cases that the customer's post joined
    but that kept no channel: the composer offered no public reply and the inbox listed "(none)".
    Upgrading fills them from the customer's first post, and leaves a case nobody wrote on alone."""
    from doorstep.store import MIGRATIONS

    config = shop_config(proactive={"message": True})
    add_order(store, number="LS-1", tracking="T1", customer_id="C1",
              events=[(NOW - timedelta(days=1), "in_transit", "Leeds"), (NOW - timedelta(hours=2), "attempt_failed", "Bath")])
    add_order(store, number="LS-2", tracking="T2", customer_id="C2",
              events=[(NOW - timedelta(days=1), "in_transit", "Leeds"), (NOW - timedelta(hours=2), "attempt_failed", "Bath")])
    opened = run_proactive(store, config, NOW)
    joined = make_case(store, config, text="@LarkspurHelp you say nobody was in, I was home all day", handle="jane",
                       external_id="9001", created_at=NOW + timedelta(minutes=30))
    [silent] = set(opened) - {joined}
    with store.transaction():  # as a database written before the fix holds it
        store.db.execute("update cases set channel = null, author_handle = null, thread_id = null where id = ?", [joined])
    version = store.get_case(joined).version  # type: ignore[union-attr]
    store.db.execute("delete from _sqlite_migrations where name = 'm017_proactive_cases_take_their_first_post'")
    MIGRATIONS.apply(store.db)
    case, untouched = store.get_case(joined), store.get_case(silent)
    assert case is not None and untouched is not None
    assert (case.channel, case.author_handle, case.thread_id) == ("x", "jane", "9001")
    assert case.version == version + 1  # a page open on it sees the change
    assert (untouched.channel, untouched.author_handle) == (None, None)


def test_measure_complaints_after_tracking_events(store: Store) -> None:
    config = shop_config()
    for n, events in enumerate([
        [(NOW - timedelta(days=3), "attempt_failed", "Bath")],
        [(NOW - timedelta(days=3), "exception", "Hub")],
        [(NOW - timedelta(days=9), "in_transit", "Leeds"), (NOW - timedelta(days=2), "delivered", "Porch")],  # scan gap
        [(NOW - timedelta(days=2), "in_transit", "Leeds")],  # no event
    ], start=1):
        add_order(store, number=f"LS-{n}", tracking=f"T{n}", customer_id=f"C{n}", events=events)
    make_case(store, config, text="@LarkspurHelp my parcel is lost", handle="a", order=store.get_order("LS-1"),
              created_at=NOW - timedelta(days=2))
    make_case(store, config, text="@LarkspurHelp lost parcel", handle="b", order=store.get_order("LS-3"),
              created_at=NOW - timedelta(days=1))
    make_case(store, config, text="@LarkspurHelp where is my order, so late", handle="c", order=store.get_order("LS-4"),
              created_at=NOW - timedelta(days=1))
    result = complaints_after_events(store, config)
    assert result["shipments_with_event"] == 3 and result["complained_after_event"] == 2
    assert result["orders_with_complaints"] == 3
    assert result["share_of_complaint_orders_preceded_by_event"] == pytest.approx(0.667)
    assert result["by_reason"]["exception"] == {"shipments": 1, "complained": 0}
    assert result["median_hours_event_to_complaint"] is not None
    json.dumps(result)


def test_cli_measure(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from commands.cli import cli

    db = tmp_path / "m.db"
    store = Store(db)
    add_order(store, events=[(NOW - timedelta(days=3), "attempt_failed", "Bath")])
    store.close()
    result = CliRunner().invoke(cli, ["--db", str(db), "proactive", "--measure"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["shipments_with_event"] == 1


# ------------------------------------------------------------------ audit (settings) findings 1 and 2
def test_a_follow_up_template_name_that_is_no_template_is_skipped_not_sent_as_text(
        store: Store, emulator: XEmulator) -> None:
    """Audit (settings) finding 1: ``template = "gentle_nudge"`` with no such template sent "gentle_nudge"."""
    config = shop_config(followup={"after_hours": 24, "template": "gentle_nudge"})
    case_id = _asked_publicly(store, config, emulator)
    assert run_followups(store, config, NOW + timedelta(hours=25)) == []
    assert [m.kind for m in store.outbound_for_case(case_id)] == ["reply"]
    [skipped] = [e.details for e in store.audit_trail(case_id) if e.action == "follow_up.skipped"]
    assert "unknown template 'gentle_nudge'" in skipped["reason"]


def test_a_template_that_fails_while_filling_skips_that_case_and_the_others_go_out(
        store: Store, emulator: XEmulator) -> None:
    """Audit (settings) finding 2: ``{{ order_total + 5 }}`` made run_followups raise TypeError every round."""
    config = shop_config(followup={"after_hours": 24, "template": "nudge"}, templates={
        "nudge": "Hi {{ first_name }}, {% if order_number == 'LS-100234' %}{{ order_total + 5 }}{% endif %} ok?"})
    broken = _asked_publicly(store, config, emulator)
    fine = _asked_publicly(store, config, emulator, number="LS-200999", tracking="1Z999AA10000000001",
                           customer_id="C2", name="Bob Other", email="bob@example.com", handle="bob")
    assert broken != fine
    queued = run_followups(store, config, NOW + timedelta(hours=25))
    assert [get_message(store, i).case_id for i in queued] == [fine]  # type: ignore[union-attr]
    [skipped] = [e.details for e in store.audit_trail(broken) if e.action == "follow_up.skipped"]
    assert "nudge" in skipped["reason"] and "concatenate" in skipped["reason"]
