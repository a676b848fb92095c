"""Questions customers can answer, and call backs (issue 19), against real clients and local servers.

The SMS side is Twilio's: our question goes out through the twilio library to a local Twilio
stand-in, the answer comes in at ``POST /sms`` of the inbound application (uvicorn) signed with
the twilio library's own RequestValidator. E-mail goes out through aiosmtpd and comes back as a
raw RFC 822 message at ``POST /mail``. Times that the code compares with "now" are relative to the
real clock; the call-back SLA is judged on a fake clock passed in.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from doorstep import dialogue as rows
from doorstep.config import parse_config
from doorstep.models import Mention, utcnow
from doorstep.store import InboxQuery, Store
from listeners.webhook import WebhookServer
from responders.answers import understand
from responders.dialogue import DialogueError, handle_reply, offer_callback, run_callback_rules, run_housekeeping, scan_mentions
from responders.followup import run_proactive
from responders.outbox import Outbox

from standins.smtp import SmtpSink
from standins.twilio import SID, TwilioStandIn
from test_followup import twilio  # noqa: F401 - fixture
from test_outbox import add_order, smtp  # noqa: F401 - fixture

LONDON = ZoneInfo("Europe/London")
PHONE = "+447700900123"
MAIL_SECRET = "mail-shared-secret"


def dialogue_config(**responders: Any) -> Any:
    responders.setdefault("proactive", {"questions": {"attempt_failed": "redeliver"}, "channels": ["sms", "email"]})
    responders.setdefault("callback", {"sla_minutes": 60})
    return parse_config({
        "timezone": "Europe/London",
        "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}, "keywords": ["larkspur"]}],
        "couriers": [{"name": "UPS", "handles": {"x": "UPSHelp"}, "tracking_formats": ["ups"],
                      "escalation_email": "depot@ups.test"}],
        "channels": {"webhook": {"port": 0}},
        "responders": responders,
    })


def later() -> datetime:
    """Past any quiet hours and backoff, and outside them: 14 h from now, or 08:00 London when that falls in the
    default quiet hours (21:00-08:00), during which the outbox holds automatic messages to customers."""
    from types import SimpleNamespace

    from responders.config import QuietHours
    from responders.followup import next_allowed

    return next_allowed(utcnow() + timedelta(hours=14), QuietHours(), SimpleNamespace(tz=LONDON))  # type: ignore[arg-type]


def failed_delivery(store: Store, now: datetime, **kwargs: Any) -> Any:
    return add_order(store, events=[(now - timedelta(days=1), "in_transit", "Leeds hub"),
                                    (now - timedelta(hours=2), "attempt_failed", "Bath")], **kwargs)


def inbound_app(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, config: Any) -> Iterator[dict[str, Any]]:
    """The inbound application (webhook + /sms + /mail) on uvicorn with ``config``, on a store of its own."""
    monkeypatch.setenv("DOORSTEP_MAIL_SECRET", MAIL_SECRET)
    db = tmp_path / "shop.db"
    store = Store(db)
    with WebhookServer(db, config, secret="hook-secret", port=0) as server:
        yield {"store": store, "config": config, "server": server}
    store.close()


@pytest.fixture
def inbound(tmp_path: Any, monkeypatch: pytest.MonkeyPatch):
    yield from inbound_app(tmp_path, monkeypatch, dialogue_config())


def post_sms(url: str, body: str, sid: str, *, sender: str = PHONE, token: str = "secret-token",
             signature: str | None = None) -> httpx.Response:
    """What Twilio does when a message comes in: a signed form POST."""
    from twilio.request_validator import RequestValidator

    params = {"MessageSid": sid, "AccountSid": SID, "From": sender, "To": "+447700900000", "Body": body,
              "NumMedia": "0"}
    sig = signature if signature is not None else RequestValidator(token).compute_signature(url, params)
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": sig}, timeout=10)


def post_mail(url: str, mail: EmailMessage, secret: str = MAIL_SECRET) -> httpx.Response:
    raw = mail.as_bytes()
    sig = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return httpx.post(url, content=raw, headers={"Content-Type": "message/rfc822", "X-Doorstep-Signature": sig},
                      timeout=10)


class Accepting:
    """A sender that accepts every message (for tests about answers, not about the channel)."""

    can_check = False

    def send(self, message: Any) -> str:
        return f"accepted-{message.id}"


def deliver(store: Store, config: Any) -> int:
    """Send what is queued, so the questions are asked (a reply cannot answer a question not yet sent)."""
    return Outbox(store, config, now=later, senders={"sms": Accepting(), "email": Accepting()}).send_due()


def ask_redelivery(store: Store, config: Any, now: datetime, **order: Any) -> tuple[int, rows.Question]:
    failed_delivery(store, now, **order)
    [case_id] = run_proactive(store, config, now)
    [question] = rows.questions_for_case(store, case_id)
    return case_id, question


# ------------------------------------------------------------------ understanding answers
@pytest.mark.parametrize(("text", "kind", "slot"), [
    ("yep", "yes", None), ("Yes please!", "yes", None), ("y", "yes", None), ("YES", "yes", None), ("ok", "yes", None),
    ("no thanks", "no", None), ("nah", "no", None), ("Nope.", "no", None),
    ("not tomorrow, friday?", "time", "Fri 09:00"), ("Thursday after 2 is fine", "time", "Thu 14:00"),
    ("tomorrow morning", "time", "Tue 09:00"), ("Is Thursday 2-4 ok?", "time", "Thu 14:00"),
    ("STOP", "opt_out", None), ("Stop", "opt_out", None), ("stop texting me", "opt_out", None),
    ("unsubscribe", "opt_out", None), ("please don't contact me again", "opt_out", None),
    ("what?", "other", None), ("not tomorrow", "other", None), ("I have 2 parcels missing", "other", None),
    ("@LarkspurHelp yes", "yes", None),
    # Found by re-checking issue 19 on more real-style answers: a wrong yes or a wrong slot acts for the customer.
    ("Yes - stop calling me", "opt_out", None), ("YES STOP", "opt_out", None), ("no. STOP", "opt_out", None),
    ("ok but I am not home", "other", None), ("Yes. But the parcel is damaged", "other", None),
    ("no problem", "other", None), ("no idea", "other", None), ("no worries", "other", None),
    ("I am not at home tomorrow", "other", None), ("can't do tomorrow", "other", None),
    ("tomorrow is no good", "other", None), ("friday won't work", "other", None),
    ("not in the morning", "other", None), ("not tomorrow, friday afternoon", "time", "Fri 14:00"),
    ("no, friday is better", "time", "Fri 09:00"), ("yes please, thursday", "time", "Thu 09:00"),
    ("the van didn't stop", "other", None), ("no thanks, I'll collect it", "no", None),
    ("Friday is fine but not before 2", "time", "Fri 14:00"), ("no, not tomorrow", "other", None),
    # An answer that says both is read by a person: "No, yes" was read as no.
    ("No, yes", "other", None), ("no wait, yes please", "other", None), ("yes... no actually", "other", None),
    ("nope, yeah go ahead", "other", None), ("Yes, no problem", "yes", None), ("yes please, no rush", "yes", None),
    ("no no no", "no", None), ("yes yes", "yes", None), ("no thanks, that's fine", "no", None),
])
def test_answers_are_understood(text: str, kind: str, slot: str | None) -> None:
    monday = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)
    understood = understand(text, monday, LONDON)
    assert understood.kind == kind, understood.why
    if slot:
        assert understood.slot_at is not None and understood.slot_at.astimezone(LONDON).strftime("%a %H:%M") == slot


# ------------------------------------------------------------------ SMS
def test_sms_yes_at_the_inbound_webhook_escalates_to_the_courier_exactly_once(
        inbound: dict[str, Any], twilio: TwilioStandIn, smtp: SmtpSink) -> None:  # noqa: F811
    store, config, server = inbound["store"], inbound["config"], inbound["server"]
    case_id, question = ask_redelivery(store, config, utcnow())
    assert question.channel == "sms" and question.rule == "redeliver" and question.status == "open"
    assert store.inbox(InboxQuery(waiting="answer")) == []  # not asked until the message is sent
    Outbox(store, config, now=later).send_due()
    assert store.inbox(InboxQuery(waiting="answer"))[0].id == case_id
    [sms] = twilio.sms
    assert sms["to"] == PHONE and "Shall we ask UPS to redeliver it? Reply YES or NO" in sms["body"]

    url = f"{server.url}/sms"
    first = post_sms(url, "YES", "SMyes1")
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/xml")
    assert "<Response" in first.text
    assert post_sms(url, "YES", "SMyes1").status_code == 200  # Twilio redelivers the same message
    assert post_sms(url, "Yes please!", "SMyes2").status_code == 200  # the customer says it again

    escalations = [m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]
    assert len(escalations) == 1 and escalations[0].target == "depot@ups.test"
    assert "Note: The customer asked for a redelivery.\n" in escalations[0].text and "“YES”" not in escalations[0].text
    answered = rows.get_question(store, question.id)
    assert answered.status == "answered" and answered.answer_kind == "yes" and answered.answer_channel == "sms"  # type: ignore[union-attr]
    assert "escalated to courier" in answered.action  # type: ignore[union-attr,operator]
    assert store.get_case(case_id).status == "escalated"  # type: ignore[union-attr]
    actions = [e.action for e in store.audit_trail(case_id)]
    assert actions.count("dialogue.answered") == 1 and actions.count("dialogue.repeat") == 1
    assert store.db.execute("select count(*) from answers").fetchone()[0] == 2  # the redelivery was dropped whole
    assert store.inbox(InboxQuery(waiting="answer")) == []
    Outbox(store, config, now=later).send_due()
    assert [m.envelope_to for m in smtp.messages] == [["depot@ups.test"]]


def test_unsigned_or_badly_signed_sms_is_refused_and_changes_nothing(inbound: dict[str, Any],
                                                                     twilio: TwilioStandIn) -> None:  # noqa: F811
    store, config, server = inbound["store"], inbound["config"], inbound["server"]
    case_id, question = ask_redelivery(store, config, utcnow())
    url = f"{server.url}/sms"
    assert post_sms(url, "YES", "SMforged", signature="").status_code == 401
    assert post_sms(url, "YES", "SMforged", token="not-the-token").status_code == 401
    assert rows.get_question(store, question.id).status == "open"  # type: ignore[union-attr]
    assert store.db.execute("select count(*) from answers").fetchone()[0] == 0
    assert not [m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]


def test_no_and_proposed_time_follow_the_rule(inbound: dict[str, Any], twilio: TwilioStandIn) -> None:  # noqa: F811
    store, config, server = inbound["store"], inbound["config"], inbound["server"]
    no_case, _ = ask_redelivery(store, config, utcnow())
    time_case, _ = ask_redelivery(store, config, utcnow(), number="LS-2", tracking="1Z999AA10123456792",
                                  customer_id="C2", phone="+447700900456", email="bo@example.com")
    deliver(store, config)
    assert post_sms(f"{server.url}/sms", "no thanks", "SMno").status_code == 200
    assert post_sms(f"{server.url}/sms", "not tomorrow, friday?", "SMtime", sender="+447700900456").status_code == 200
    assert [n.text for n in store.notes(no_case)] == ["The customer does not want a redelivery (“no thanks”)."]
    assert store.get_case(no_case).status == "open"  # type: ignore[union-attr]
    [note] = store.notes(time_case)
    assert note.text.startswith("The customer proposed Fri ") and "09:00" in note.text
    assert any(e.action == "dialogue.needs_human" for e in store.audit_trail(time_case))
    assert not [m for m in store.outbound_for_case(no_case) + store.outbound_for_case(time_case)
                if m.kind == "escalation"]


def test_stop_opts_the_customer_out_on_every_channel(inbound: dict[str, Any], twilio: TwilioStandIn) -> None:  # noqa: F811
    store, config, server = inbound["store"], inbound["config"], inbound["server"]
    case_id, question = ask_redelivery(store, config, utcnow())
    assert post_sms(f"{server.url}/sms", "STOP", "SMstop").status_code == 200
    customer = store.get_customer("C1")
    assert {"all", "sms", "email", "dm"} <= set(customer.opt_out)  # type: ignore[union-attr]
    [message] = [m for m in store.outbound_for_case(case_id) if m.kind == "outreach"]
    assert message.status == "cancelled" and "opted out" in (message.last_error or "")  # queued, never sent
    assert rows.get_question(store, question.id).status == "opted_out"  # type: ignore[union-attr]
    [audit] = [e for e in store.audit_trail(case_id) if e.action == "customer.opt_out"]
    assert audit.details["channel"] == "sms" and audit.details["said"] == "STOP"
    # Nothing private goes to them again: neither a question on e-mail nor a call-back offer.
    from responders.dialogue import DialogueError, ask

    case = store.get_case(case_id)
    assert ask(store, config, case, "redeliver", channels=["email", "sms"], actor="t", kind="outreach",  # type: ignore[arg-type]
               key="again") is None
    with pytest.raises(DialogueError, match="opted out"):
        offer_callback(store, config, case_id, "ann", "agent")
    Outbox(store, config, now=later).send_due()
    assert twilio.sms == []


def test_stop_by_dm_and_unsubscribe_by_email_opt_out_too(inbound: dict[str, Any], smtp: SmtpSink) -> None:  # noqa: F811
    store, config, server = inbound["store"], inbound["config"], inbound["server"]
    now = utcnow()
    scan_mentions(store, config, now)  # the first round starts the cursor at the newest post
    dm_case, _ = ask_redelivery(store, config, now, phone=None)
    mail_case, _ = ask_redelivery(store, config, now, number="LS-2", tracking="1Z999AA10123456792", customer_id="C2",
                                  phone=None, email="bo@example.com")
    store.insert_mention(Mention(channel="x_dm", external_id="dm-1", text="stop texting me", created_at=now,
                                 author_handle="jane", case_id=dm_case))
    assert scan_mentions(store, config, now) == 1
    assert "all" in store.get_customer("C1").opt_out  # type: ignore[union-attr]
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "Bo <bo@example.com>", "care@larkspur.test", "unsubscribe"
    mail["Message-ID"] = "<bo-1@example.com>"
    mail.set_content("unsubscribe")
    response = post_mail(f"{server.url}/mail", mail)
    assert response.status_code == 202 and response.json()["outcome"] == "opted out"
    assert "all" in store.get_customer("C2").opt_out  # type: ignore[union-attr]
    assert any(e.action == "customer.opt_out" and e.details["channel"] == "email" for e in store.audit_trail(mail_case))


def test_an_answer_after_the_case_closed_reopens_it_instead_of_acting(inbound: dict[str, Any],
                                                                      twilio: TwilioStandIn) -> None:  # noqa: F811
    store, config, server = inbound["store"], inbound["config"], inbound["server"]
    case_id, question = ask_redelivery(store, config, utcnow())
    deliver(store, config)
    case = store.get_case(case_id)
    store.update_case(case_id, case.version, "ann", status="resolved", resolved_at=utcnow())  # type: ignore[union-attr]
    assert post_sms(f"{server.url}/sms", "yes", "SMlate").status_code == 200
    reopened = store.get_case(case_id)
    assert reopened.status == "open" and reopened.resolved_at is None  # type: ignore[union-attr]
    assert not [m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]
    assert rows.get_question(store, question.id).status == "late"  # type: ignore[union-attr]
    assert any(e.action == "dialogue.reopened" for e in store.audit_trail(case_id))
    assert "after the case was closed" in store.notes(case_id)[0].text


def test_an_answer_after_the_question_expired_goes_to_a_person(inbound: dict[str, Any]) -> None:
    store, config = inbound["store"], inbound["config"]
    asked = utcnow() - timedelta(days=4)
    case_id, question = ask_redelivery(store, config, asked, phone=None)
    deliver(store, config)
    result = handle_reply(store, config, channel="email", external_id="m1", sender="jane@example.com", text="yes")
    assert result["outcome"] == "late"
    assert not [m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]


# ------------------------------------------------------------------ e-mail
def test_email_reply_is_joined_by_its_token_and_quoted_text_is_ignored(inbound: dict[str, Any],
                                                                       smtp: SmtpSink) -> None:  # noqa: F811
    store, config, server = inbound["store"], inbound["config"], inbound["server"]
    case_id, question = ask_redelivery(store, config, utcnow(), phone=None)
    assert question.channel == "email"
    Outbox(store, config, now=later).send_due()
    [sent] = smtp.messages
    assert f"[ref {question.token}]" in sent["Subject"]

    def reply(sender: str, body: str, message_id: str) -> httpx.Response:
        mail = EmailMessage()
        mail["From"], mail["To"] = sender, "care@larkspur.test"
        mail["Subject"] = "Re: " + sent["Subject"]
        mail["In-Reply-To"] = sent["Message-ID"]
        mail["Message-ID"] = message_id
        mail.set_content(body)
        return post_mail(f"{server.url}/mail", mail)

    # Someone else with the token: read by a person, never acted on.
    stranger = reply("mallory@example.com", "YES", "<m-1@example.com>")
    assert stranger.json()["outcome"] == "handed to a person (unverified sender)"
    assert rows.get_question(store, question.id).status == "open"  # type: ignore[union-attr]
    answer = reply("Jane Doe <jane@example.com>", "no thanks\n\nOn Mon, Larkspur wrote:\n> Shall we ask UPS to "
                   "redeliver it? Reply YES or NO", "<m-2@example.com>")
    assert answer.status_code == 202 and answer.json()["outcome"] == "answered"
    done = rows.get_question(store, question.id)
    assert done.answer == "no thanks" and done.answer_kind == "no" and done.answer_channel == "email"  # type: ignore[union-attr]
    assert not [m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]
    bad = EmailMessage()
    bad["From"] = "jane@example.com"
    bad.set_content("yes")
    assert post_mail(f"{server.url}/mail", bad, secret="wrong").status_code == 401


def test_a_dm_answer_on_the_case_is_understood(inbound: dict[str, Any]) -> None:
    store, config = inbound["store"], inbound["config"]
    now = utcnow()
    scan_mentions(store, config, now)
    case_id, question = ask_redelivery(store, config, now)
    deliver(store, config)
    store.insert_mention(Mention(channel="x_dm", external_id="dm-yes", text="yep", created_at=now,
                                 author_handle="jane", case_id=case_id))
    assert scan_mentions(store, config, now) == 1
    assert rows.get_question(store, question.id).answer_kind == "yes"  # type: ignore[union-attr]
    assert len([m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]) == 1


# ------------------------------------------------------------------ call backs
def test_call_back_offered_by_an_agent_scheduled_by_sms_and_breaching_its_sla(inbound: dict[str, Any],
                                                                              twilio: TwilioStandIn) -> None:  # noqa: F811
    store, config, server = inbound["store"], inbound["config"], inbound["server"]
    case_id, question = ask_redelivery(store, config, utcnow())
    Outbox(store, config, now=later).send_due()
    post_sms(f"{server.url}/sms", "yes", "SMy")  # the redelivery question is answered first
    callback = offer_callback(store, config, case_id, "ann", "agent")
    assert callback.status == "offered" and callback.phone == PHONE
    assert offer_callback(store, config, case_id, "ann", "agent").id == callback.id  # one open offer per case
    Outbox(store, config, now=later).send_due()
    assert any("would you like us to call you" in sms["body"] for sms in twilio.sms)
    assert post_sms(f"{server.url}/sms", "Thursday after 2 is fine", "SMslot").status_code == 200
    task = rows.get_callback(store, callback.id)
    assert task.status == "scheduled" and task.slot_at is not None  # type: ignore[union-attr]
    assert task.slot_at.astimezone(LONDON).strftime("%a %H:%M") == "Thu 14:00"  # type: ignore[union-attr]
    assert task.due_at == task.slot_at + timedelta(minutes=60)  # type: ignore[union-attr,operator]
    # The fake clock: before the slot it is upcoming, during it due, an hour after the slot breached, once.
    assert task.sla_state(task.slot_at - timedelta(hours=1)) == "upcoming"  # type: ignore[union-attr,operator]
    assert task.sla_state(task.slot_at + timedelta(minutes=5)) == "due"  # type: ignore[union-attr,operator]
    assert run_housekeeping(store, config, task.slot_at + timedelta(minutes=30))["breached"] == []  # type: ignore[union-attr,operator]
    assert run_housekeeping(store, config, task.slot_at + timedelta(minutes=61))["breached"] == [callback.id]  # type: ignore[union-attr,operator]
    assert run_housekeeping(store, config, task.slot_at + timedelta(hours=5))["breached"] == []  # type: ignore[union-attr,operator]
    assert [e.action for e in store.audit_trail(case_id)].count("callback.sla_breach") == 1
    from responders.dialogue import record_outcome

    record_outcome(store, callback.id, "no_answer", "ann", task.slot_at + timedelta(minutes=70))  # type: ignore[union-attr,operator]
    assert rows.get_callback(store, callback.id).status == "scheduled"  # type: ignore[union-attr]
    # The "yes" escalated, and that escalation is retrying: resolving past it is a confirmed choice (as on the case page).
    with pytest.raises(DialogueError, match=r"Not resolved: 1 message is pending or failed \(1 escalation retrying"):
        record_outcome(store, callback.id, "resolved", "ann", task.slot_at + timedelta(minutes=90))  # type: ignore[union-attr,operator]
    record_outcome(store, callback.id, "resolved", "ann", task.slot_at + timedelta(minutes=90), force=True)  # type: ignore[union-attr,operator]
    assert rows.get_callback(store, callback.id).status == "done"  # type: ignore[union-attr]
    assert store.get_case(case_id).status == "resolved"  # type: ignore[union-attr]
    summary = rows.callback_summary(store, utcnow() - timedelta(days=1), utcnow() + timedelta(days=1))
    assert summary["offered"] == 1 and summary["accepted"] == 1 and summary["resolved"] == 1
    assert summary["sla_breached"] == 1
    # ... and the weekly report counts it.
    from doorstep.reports import build_weekly_report, render_html, week_of

    report = build_weekly_report(store, config, week_of(utcnow(), config.timezone), charts=False)
    assert report.data["callbacks"]["offered"] == 1 and report.data["callbacks"]["sla_breached"] == 1
    html = render_html(report)
    assert "Call backs offered" in html and '<td class="bad">1</td>' in html
    assert {a["channel"]: a["answered"] for a in report.data["answers"]} == {"sms": 2}


def test_call_back_due_shows_in_the_inbox_filter(inbound: dict[str, Any]) -> None:
    store, config = inbound["store"], inbound["config"]
    case_id, _ = ask_redelivery(store, config, utcnow())
    callback = offer_callback(store, config, case_id, "ann", "agent")
    deliver(store, config)
    assert store.inbox(InboxQuery(waiting="callback")) == []
    handle_reply(store, config, channel="sms", external_id="s1", sender=PHONE, text="yes please")
    assert rows.get_callback(store, callback.id).status == "scheduled"  # type: ignore[union-attr]
    assert [c.id for c in store.inbox(InboxQuery(waiting="callback"))] == [case_id]
    assert store.inbox_count(InboxQuery(waiting="callback")) == 1


def test_rules_offer_call_backs_to_vips_third_contacts_big_orders_and_stuck_parcels(store: Store) -> None:
    from test_outbox import make_case

    assert run_callback_rules(store, dialogue_config(), utcnow()) == []  # off unless switched on
    config = dialogue_config(callback={"enabled": True, "order_value_over": 100.0, "stuck_days": 3})
    now = utcnow()
    vip = add_order(store, number="LS-1", customer_id="C1", vip=True, tracking="1Z999AA10123456784",
                    events=[(now - timedelta(hours=3), "in_transit", "Leeds")])
    plain = add_order(store, number="LS-2", customer_id="C2", phone="+447700900002", tracking="1Z999AA10123456792",
                      events=[(now - timedelta(hours=3), "in_transit", "Leeds")])
    stuck = add_order(store, number="LS-3", customer_id="C3", phone="+447700900003", tracking="1Z999AA10123456801",
                      events=[(now - timedelta(days=4), "in_transit", "Leeds")])
    vip_case = make_case(store, config, order=vip, handle="jane", created_at=now)
    plain_case = make_case(store, config, order=plain, handle="bob", created_at=now)
    stuck_case = make_case(store, config, order=stuck, handle="cat", created_at=now)
    offered = run_callback_rules(store, config, now)
    reasons = {c.case_id: c.reason for c in (rows.get_callback(store, i) for i in offered) if c}
    assert reasons == {vip_case: "VIP customer", stuck_case: "parcel without a scan for 3 days"}
    assert plain_case not in reasons
    for n in range(2):  # the third contact on one case
        make_case(store, config, text=f"@LarkspurHelp still nothing {n}", handle="bob", created_at=now)
        store.db.execute("update mentions set case_id = ? where text like ?", [plain_case, f"%still nothing {n}%"])
    assert [rows.get_callback(store, i).case_id for i in run_callback_rules(store, config, now)] == [plain_case]  # type: ignore[union-attr]
    assert run_callback_rules(store, config, now) == []  # once per case


def test_answer_rates_by_channel(inbound: dict[str, Any], twilio: TwilioStandIn, smtp: SmtpSink) -> None:  # noqa: F811
    store, config = inbound["store"], inbound["config"]
    now = utcnow()
    ask_redelivery(store, config, now)
    ask_redelivery(store, config, now, number="LS-2", tracking="1Z999AA10123456792", customer_id="C2",
                   phone="+447700900456", email="bo@example.com")
    ask_redelivery(store, config, now, number="LS-3", tracking="1Z999AA10123456801", customer_id="C3", phone=None,
                   email="cy@example.com")
    Outbox(store, config, now=later).send_due()
    ask_redelivery(store, config, now, number="LS-4", tracking="1Z999AA10123456810", customer_id="C4",
                   phone="+447700900789")  # queued, never sent: nobody was asked
    handle_reply(store, config, channel="sms", external_id="a", sender=PHONE, text="no", now=now + timedelta(minutes=30))
    rates = {r["channel"]: r for r in rows.answer_rates(store, now - timedelta(hours=1), now + timedelta(hours=1), LONDON)}
    assert rates["sms"]["asked"] == 2 and rates["sms"]["answered"] == 1 and rates["sms"]["rate"] == 0.5
    assert rates["sms"]["median_minutes"] == 30.0
    assert rates["email"]["asked"] == 1 and rates["email"]["answered"] == 0


def test_a_reply_to_a_follow_up_that_asked_nothing_goes_to_a_person(inbound: dict[str, Any],
                                                                    twilio: TwilioStandIn) -> None:  # noqa: F811
    store, config, server = inbound["store"], inbound["config"], inbound["server"]
    from test_outbox import make_case
    from responders.outbox import queue_reply

    order = add_order(store)
    case_id = make_case(store, config, order=order, created_at=utcnow())
    queue_reply(store, config, case_id, "We have asked UPS to look into it.", "ann", channel="sms")
    Outbox(store, config).send_due()
    assert twilio.sms and rows.questions_for_case(store, case_id) == []
    assert post_sms(f"{server.url}/sms", "I will be home all day tomorrow", "SMplain").status_code == 200
    assert "I will be home all day tomorrow" in store.notes(case_id)[0].text
    assert any(e.action == "dialogue.needs_human" for e in store.audit_trail(case_id))
    # A stranger's number: nothing to join, nothing written.
    assert post_sms(f"{server.url}/sms", "hello?", "SMstranger", sender="+15550001111").status_code == 200
    assert len(store.notes(case_id)) == 1


def test_a_bridged_call_goes_through_twilios_voice_api(inbound: dict[str, Any], twilio: TwilioStandIn,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from urllib.parse import parse_qs

    from responders.dialogue import DialogueError, bridge_call

    calls: list[dict[str, str]] = []

    def voice(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        calls.append(form)
        return 201, {"sid": "CA" + "0" * 32, "to": form["To"], "from": form["From"], "status": "queued",
                     "account_sid": SID}

    twilio.server.routes[f"/2010-04-01/Accounts/{SID}/Calls.json"] = voice
    store, server = inbound["store"], inbound["server"]
    monkeypatch.setenv("CARE_DESK_PHONE", "+442079460000")
    config = dialogue_config(callback={"bridge_desk_phone": "$CARE_DESK_PHONE"})
    case_id, _ = ask_redelivery(store, config, utcnow())
    callback = offer_callback(store, config, case_id, "ann", "agent")
    with pytest.raises(DialogueError, match="not waiting for a call"):
        bridge_call(store, config, callback.id, "ann")
    deliver(store, config)
    post_sms(f"{server.url}/sms", "yes", "SMcb")
    assert bridge_call(store, config, callback.id, "ann") == "CA" + "0" * 32
    [call] = calls
    assert call["To"] == "+442079460000" and call["From"] == "+447700900000"
    assert "<Dial callerId=\"+447700900000\"><Number>+447700900123</Number></Dial>" in call["Twiml"]
    [audit] = [e for e in store.audit_trail(case_id) if e.action == "callback.bridge"]
    assert audit.details["call_sid"] == "CA" + "0" * 32 and "+447700900123" not in str(audit.details)


def test_an_answer_the_rules_cannot_read_carries_the_classifiers_reading_to_the_person(inbound: dict[str, Any]) -> None:
    from tests.conftest import KeywordClassifier

    store, config = inbound["store"], inbound["config"]
    case_id, question = ask_redelivery(store, config, utcnow())
    deliver(store, config)
    result = handle_reply(store, config, channel="sms", external_id="w1", sender=PHONE,
                          text="this is a joke, my parcel is lost and nobody cares", classifier=KeywordClassifier())
    assert result["kind"] == "other" and "handed to a person" in result["action"]
    assert "the classifier reads: negative complaint" in result["action"]
    assert not [m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]


def test_the_classifier_is_told_an_answer_is_written_to_us(inbound: dict[str, Any]) -> None:
    """An answer to our question is a reply, whatever its text: a classifier that reads the thread is told so
    (issue 15, thirteenth round), so a negative answer keeps the complaint reading of a post written to someone."""
    from tests.test_addressed import ReadsAddressed

    store, config = inbound["store"], inbound["config"]
    ask_redelivery(store, config, utcnow())
    deliver(store, config)
    reader = ReadsAddressed()
    result = handle_reply(store, config, channel="sms", external_id="w2", sender=PHONE,
                          text="honestly this is just awful", classifier=reader)
    assert reader.told == [[True]]
    assert "the classifier reads: negative complaint" in result["action"]


def test_after_stop_no_direct_message_is_started(store: Store) -> None:
    from test_outbox import make_case

    from responders.channels import ReplyRejected
    from responders.dialogue import opt_out
    from responders.private import plan_private

    config = dialogue_config()
    order = add_order(store)
    case_id = make_case(store, config, order=order, created_at=utcnow())
    assert plan_private(store, config, case_id).channel == "x_dm"
    opt_out(store, "C1", channel="sms", said="STOP")
    with pytest.raises(ReplyRejected, match="opted out of direct messages"):
        plan_private(store, config, case_id)
    with pytest.raises(ReplyRejected, match="opted out of e-mail"):
        plan_private(store, config, case_id, channel="email")


def test_the_worker_runs_the_dialogue_jobs_and_the_webhook_serves_replies(store: Store, tmp_path: Any) -> None:
    from responders.jobs import jobs

    config = dialogue_config()
    names = [job.name for job in jobs(store, config, None)]
    assert "dialogue" in names and "callback-rules" not in names
    assert "callback-rules" in [j.name for j in jobs(store, dialogue_config(callback={"enabled": True}), None)]
    off = dialogue_config(dialogue={"enabled": False}, proactive={})  # asking nothing (a question would be refused)
    assert "dialogue" in [job.name for job in jobs(store, off, None)]  # STOP by DM is read even then
    for db, settings in (("w.db", config), ("w2.db", off)):  # (test_dialogue_rules.py: STOP with it off)
        with WebhookServer(tmp_path / db, settings, secret="s", port=0) as server:
            assert httpx.post(f"{server.url}/sms", data={"Body": "yes"}, timeout=10).status_code in (401, 503)


def test_a_question_not_yet_sent_is_never_answered(inbound: dict[str, Any]) -> None:
    """Held for approval (or queued for the morning): a "yes" by SMS answers something else, so a person reads it."""
    store, config = inbound["store"], inbound["config"]
    case_id, question = ask_redelivery(store, config, utcnow())
    result = handle_reply(store, config, channel="sms", external_id="early", sender=PHONE, text="YES")
    # (It used to be stored where nobody reads it, contradicting the line above: lifecycle audit finding 4.)
    assert result["outcome"] == "handed to a person (a message from the customer, not an answer to one of ours)"
    assert any("YES" in n.text for n in store.notes(case_id))
    assert rows.get_question(store, question.id).status == "open"  # type: ignore[union-attr]
    assert not [m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]


def test_an_automatic_call_back_offer_waits_for_the_end_of_quiet_hours(store: Store) -> None:
    """Final check (2026-12-06): the call-back rule's "would you like us to call you?" text, approved at 23:19 on a
    Sunday, reached the customer's phone at once; the redelivery question written in the same round waited for
    08:00. An automatic offer goes through the quiet hours (default 21:00-08:00) as every automatic message."""
    from test_outbox import make_case

    config = dialogue_config(callback={"enabled": True, "order_value_over": 10.0})
    night = datetime(2026, 12, 6, 23, 7, tzinfo=LONDON).astimezone(timezone.utc)
    order = add_order(store, number="LS-1", customer_id="C1", tracking="1Z999AA10123456784",
                      events=[(night - timedelta(hours=3), "in_transit", "Leeds")])
    make_case(store, config, order=order, handle="jane", created_at=night)
    [offered] = run_callback_rules(store, config, night)
    question = rows.get_question(store, rows.get_callback(store, offered).question_id)  # type: ignore[union-attr]
    message = store.db.execute("select next_attempt_at from outbound_messages where id = ?",
                               [question.message_id]).fetchone()[0]  # type: ignore[union-attr]
    assert message is not None and datetime.fromisoformat(message).astimezone(LONDON).hour == 8, message


def test_a_call_back_offer_not_sent_is_not_counted_as_offered(store: Store) -> None:
    """Newcomer audit: the Dashboard said "Call backs offered 29, accepted 0" when 28 of the 29 offers were still
    awaiting a lead's approval: nobody had been offered anything. An offer counts once its message was sent (or
    the customer answered it), as a question does (``answer_rates``)."""
    from test_outbox import make_case

    config = dialogue_config(callback={"enabled": True, "order_value_over": 10.0})
    night = datetime(2026, 12, 6, 23, 7, tzinfo=LONDON).astimezone(timezone.utc)
    order = add_order(store, number="LS-1", customer_id="C1", tracking="1Z999AA10123456784",
                      events=[(night - timedelta(hours=3), "in_transit", "Leeds")])
    make_case(store, config, order=order, handle="jane", created_at=night)
    [offered] = run_callback_rules(store, config, night)  # quiet hours: its SMS waits for the morning
    question = rows.get_question(store, rows.get_callback(store, offered).question_id)  # type: ignore[union-attr]
    window = (night - timedelta(days=1), night + timedelta(days=1))
    assert rows.callback_summary(store, *window)["offered"] == 0
    store.db.execute("update outbound_messages set status = 'sent' where id = ?", [question.message_id])  # type: ignore[union-attr]
    assert rows.callback_summary(store, *window)["offered"] == 1
