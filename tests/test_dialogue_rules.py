"""Issue 19 re-checked against the README: the dialogue settings it shows, tried as written.

Each test here covers a README claim no earlier test exercised: a follow-up that asks a question
(``[responders.followup] question``), a question rule written in doorstep.toml
(``[responders.dialogue.questions.NAME]``), a rule name that does not exist failing at start-up,
the call-back rule for an order above a value, and STOP by SMS reaching what is queued on the
customer's other cases and channels. Against the same real clients and local servers as
tests/test_dialogue.py: the twilio library to the Twilio stand-in, aiosmtpd, and the inbound
application on uvicorn receiving the customer's SMS signed as Twilio signs it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from doorstep import dialogue as rows
from doorstep.config import ConfigError
from doorstep.models import utcnow
from doorstep.store import Store
from listeners.webhook import WebhookServer
from responders.config import responders_settings
from responders.followup import run_followups
from responders.outbox import Outbox

from standins.smtp import SmtpSink
from standins.twilio import TwilioStandIn
from standins.x_emulator import XEmulator
from test_dialogue import MAIL_SECRET, PHONE, dialogue_config, inbound_app, later, post_sms
from test_followup import _asked_publicly, twilio  # noqa: F401 - fixture
from test_outbox import add_order, emulator, make_case, smtp  # noqa: F401 - fixtures

#: A question rule as a lead would write it in doorstep.toml (README, "Dialogue"): its own words and steps.
SAFE_PLACE = {
    "text": "Hi {{ first_name }}, may {{ courier }} leave order {{ order_number }} in a safe place? Reply YES or NO.",
    "expires_hours": 48,
    "yes": {"escalate": "courier", "note": "The customer agreed to a safe place ({answer})."},
    "no": {"note": "No safe place, please ({answer}).", "status": "pending_customer"},
}


def followup_config(**extra: Any) -> Any:
    return dialogue_config(followup={"after_hours": 24, "channels": ["sms", "email"], "question": "safe_place"},
                           dialogue={"questions": {"safe_place": SAFE_PLACE}}, **extra)


@pytest.fixture
def inbound(tmp_path: Any, monkeypatch: pytest.MonkeyPatch):
    yield from inbound_app(tmp_path, monkeypatch, followup_config())


def test_a_follow_up_asks_a_question_rule_from_doorstep_toml_and_the_sms_answer_acts_on_it(
        inbound: dict[str, Any], emulator: XEmulator, twilio: TwilioStandIn, smtp: SmtpSink) -> None:  # noqa: F811
    store, config, server = inbound["store"], inbound["config"], inbound["server"]
    case_id = _asked_publicly(store, config, emulator, sent_at=utcnow() - timedelta(hours=25))
    [message_id] = run_followups(store, config, utcnow())
    [question] = rows.questions_for_case(store, case_id)
    assert question.rule == "safe_place" and question.channel == "sms" and question.message_id == message_id
    from responders.outbox import get_message

    send_at = get_message(store, message_id).next_attempt_at  # after quiet hours, when it is asked  # type: ignore[union-attr]
    assert question.expires_at == send_at + timedelta(hours=48)  # the rule's expires_hours  # type: ignore[operator]
    Outbox(store, config, now=later).send_due()
    [sms] = twilio.sms
    assert sms["to"] == PHONE and sms["body"] == ("Hi Jane, may UPS leave order LS-100234 in a safe place? "
                                                  "Reply YES or NO.")
    assert post_sms(f"{server.url}/sms", "yep", "SMsafe1").status_code == 200
    assert post_sms(f"{server.url}/sms", "yep", "SMsafe1").status_code == 200  # Twilio's redelivery
    answered = rows.get_question(store, question.id)
    assert answered.status == "answered" and answered.answer_kind == "yes"  # type: ignore[union-attr]
    escalations = [m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]
    assert len(escalations) == 1 and "Note: The customer agreed to a safe place.\n" in escalations[0].text
    assert "yep" not in escalations[0].text  # her words may hold her name or address: the case's note keeps them
    Outbox(store, config, now=later).send_due()
    assert [m.envelope_to for m in smtp.messages] == [["depot@ups.test"]]


def test_a_no_to_a_doorstep_toml_rule_takes_its_note_and_status(inbound: dict[str, Any], emulator: XEmulator,
                                                                 twilio: TwilioStandIn) -> None:  # noqa: F811
    store, config, server = inbound["store"], inbound["config"], inbound["server"]
    case_id = _asked_publicly(store, config, emulator, sent_at=utcnow() - timedelta(hours=25))
    run_followups(store, config, utcnow())
    store.update_case(case_id, store.get_case(case_id).version, "ann", status="open")  # type: ignore[union-attr]
    Outbox(store, config, now=later).send_due()
    assert post_sms(f"{server.url}/sms", "no thanks", "SMsafe2").status_code == 200
    assert [n.text for n in store.notes(case_id)] == ["No safe place, please (“no thanks”)."]
    assert store.get_case(case_id).status == "pending_customer"  # type: ignore[union-attr]
    assert not [m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]


@pytest.mark.parametrize(("responders", "key"), [
    ({"followup": {"question": "safe_place"}}, "followup.question"),
    ({"proactive": {"questions": {"attempt_failed": "redelivr"}}}, "proactive.questions.attempt_failed"),
    ({"callback": {"question": "ring_me"}}, "callback.question"),
    ({"followup": {"brands": {"Larkspur": {"question": "safe_plac"}}}}, "followup.brands.Larkspur.question"),
])
def test_a_question_rule_that_does_not_exist_is_a_start_up_error_naming_the_key(responders: dict[str, Any],
                                                                                key: str) -> None:
    from doorstep.config import parse_config

    with pytest.raises(ConfigError) as error:
        responders_settings(parse_config({"responders": responders}))
    message = str(error.value)
    assert message.startswith("doorstep.toml: responders") and key in message and "no question rule" in message
    assert "\n" not in message and "known: callback, redeliver" in message


def test_a_bad_step_in_a_question_rule_names_the_key() -> None:
    from doorstep.config import parse_config

    rule = {**SAFE_PLACE, "no": {"status": "teleported"}}
    with pytest.raises(ConfigError) as error:
        responders_settings(parse_config({"responders": {"dialogue": {"questions": {"safe_place": rule}}}}))
    message = str(error.value)
    assert "responders.dialogue.questions.safe_place.no.status" in message and "teleported" in message
    assert "\n" not in message


def test_the_order_value_rule_offers_a_call_back_on_a_big_order_only(store: Store) -> None:
    config = dialogue_config(callback={"enabled": True, "vip": False, "contacts": None, "stuck_days": None,
                                       "order_value_over": 250.0})
    now = utcnow()
    big = add_order(store, number="LS-1", customer_id="C1", tracking="1Z999AA10123456784",
                    events=[(now - timedelta(hours=3), "in_transit", "Leeds")])
    small = add_order(store, number="LS-2", customer_id="C2", phone="+447700900002", tracking="1Z999AA10123456792",
                      events=[(now - timedelta(hours=3), "in_transit", "Leeds")])
    store.db.execute("update orders set total = 300 where number = 'LS-1'")
    store.db.execute("update orders set total = 250 where number = 'LS-2'")  # not more than 250
    big_case = make_case(store, config, order=big, handle="jane", created_at=now)
    make_case(store, config, order=small, handle="bob", created_at=now)
    from responders.dialogue import run_callback_rules

    [offered] = run_callback_rules(store, config, now)
    callback = rows.get_callback(store, offered)
    assert callback.case_id == big_case and callback.reason == "order worth more than 250"  # type: ignore[union-attr]


def test_stop_by_sms_cancels_the_queued_email_and_refuses_later_messages_on_every_channel(
        inbound: dict[str, Any], emulator: XEmulator, twilio: TwilioStandIn, smtp: SmtpSink) -> None:  # noqa: F811
    """A STOP texted from the customer's number: the e-mail follow-up already queued for them never
    reaches the SMTP server, no new follow-up is queued, and an agent's e-mail or SMS reply is refused."""
    from responders.channels import ReplyRejected
    from responders.outbox import queue_reply

    store, server = inbound["store"], inbound["server"]
    config = dialogue_config(followup={"after_hours": 24, "channels": ["email"]})
    case_id = _asked_publicly(store, config, emulator, sent_at=utcnow() - timedelta(hours=25))
    [email_follow_up] = run_followups(store, config, utcnow())  # queued on e-mail, not sent yet
    assert smtp.messages == [] and twilio.sms == []
    assert post_sms(f"{server.url}/sms", "STOP", "SMstop2").status_code == 200
    assert "cancelled" == next(m for m in store.outbound_for_case(case_id) if m.id == email_follow_up).status
    Outbox(store, config, now=later).send_due()
    assert smtp.messages == [] and twilio.sms == []  # nothing reached either server
    store.db.execute("delete from outbound_messages where kind = 'follow_up'")  # as if never followed up
    assert run_followups(store, config, utcnow()) == []
    for channel in ("email", "sms"):
        with pytest.raises(ReplyRejected, match=f"opted out of {channel}"):
            queue_reply(store, config, case_id, "Hello again", "ann", channel=channel)


@pytest.mark.parametrize(("responders", "key"), [
    ({"proactive": {"questions": {"attempt_failed": "redeliver"}}}, "proactive.questions.attempt_failed"),
    ({"followup": {"question": "redeliver"}}, "followup.question"),
    ({"callback": {"enabled": True}}, "callback.enabled"),
])
def test_a_question_with_the_dialogue_switched_off_is_a_start_up_error(responders: dict[str, Any], key: str) -> None:
    """With ``[responders.dialogue] enabled = false`` nothing serves POST /sms or reads the answers:
    a "Reply YES or NO" sent then would lose every answer, so the setting that asks is refused."""
    from doorstep.config import parse_config

    with pytest.raises(ConfigError) as error:
        responders_settings(parse_config({"responders": {"dialogue": {"enabled": False}, **responders}}))
    message = str(error.value)
    assert message.startswith("doorstep.toml: responders") and key in message and "dialogue" in message
    assert "\n" not in message
    responders_settings(parse_config({"responders": {"dialogue": {"enabled": False}}}))  # asking nothing is fine


def test_an_agent_cannot_offer_a_call_back_with_the_dialogue_switched_off(store: Store) -> None:
    from responders.dialogue import DialogueError, offer_callback

    config = dialogue_config(dialogue={"enabled": False}, proactive={})
    order = add_order(store)
    case_id = make_case(store, config, order=order, created_at=utcnow())
    with pytest.raises(DialogueError, match=r"\[responders.dialogue\] enabled = false"):
        offer_callback(store, config, case_id, "ann", "agent")
    assert rows.callbacks_for_case(store, case_id) == [] and store.outbound_for_case(case_id) == []


def test_with_the_dialogue_switched_off_stop_is_still_honoured_and_no_answer_is_acted_on(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, twilio: TwilioStandIn) -> None:  # noqa: F811
    """``enabled = false`` stops questions and acting on answers, never opt-outs: a plain SMS follow-up
    can still go out, so the customer's STOP to it must still reach POST /sms and be honoured."""
    from responders.jobs import jobs

    monkeypatch.setenv("DOORSTEP_MAIL_SECRET", MAIL_SECRET)
    db = tmp_path / "off.db"
    store = Store(db)
    on = dialogue_config()
    off = dialogue_config(dialogue={"enabled": False}, proactive={})
    from test_dialogue import ask_redelivery, deliver

    case_id, question = ask_redelivery(store, on, utcnow())  # asked while it was on
    deliver(store, on)
    assert "dialogue" in [job.name for job in jobs(store, off, None)]  # DMs saying STOP are still read
    with WebhookServer(db, off, secret="hook-secret", port=0) as server:
        yes = post_sms(f"{server.url}/sms", "YES", "SMoff1")
        assert yes.status_code == 200
        assert not [m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]  # not acted on
        assert any(e.action == "dialogue.needs_human" for e in store.audit_trail(case_id))  # a person reads it
        assert "not acted on: [responders.dialogue] is switched off" in store.notes(case_id)[0].text
        assert post_sms(f"{server.url}/sms", "STOP", "SMoff2").status_code == 200
    assert {"all", "sms", "email", "dm"} <= set(store.get_customer("C1").opt_out)  # type: ignore[union-attr]
    assert rows.get_question(store, question.id).status == "opted_out"  # type: ignore[union-attr]
    store.close()


def test_a_public_reply_by_the_customer_answers_the_question_asked_by_sms(inbound: dict[str, Any]) -> None:
    """The customer answers our SMS question in public on X: the pipeline joins the post to the
    proactive case (the customer's handle on the order record) and the dialogue job acts on it once."""
    from conftest import KeywordClassifier
    from doorstep.models import Mention
    from doorstep.pipeline import Pipeline
    from responders.dialogue import scan_mentions
    from test_dialogue import ask_redelivery, deliver

    store, config = inbound["store"], inbound["config"]
    now = utcnow()
    scan_mentions(store, config, now)
    case_id, question = ask_redelivery(store, config, now)
    deliver(store, config)
    posts = [Mention(channel="x", external_id=f"pub-{i}", text=text, created_at=now + timedelta(minutes=5 + i),
                     author_handle="jane") for i, text in enumerate(["@LarkspurHelp yes please", "@LarkspurHelp yes!"])]
    Pipeline(store, config, KeywordClassifier()).ingest(posts)
    assert {r["case_id"] for r in store.rows("select case_id from mentions where external_id like 'pub-%'")} == {case_id}
    assert scan_mentions(store, config, now + timedelta(minutes=10)) == 1  # the second is an ordinary post
    answered = rows.get_question(store, question.id)
    assert answered.answer_kind == "yes" and answered.answer_channel == "x"  # type: ignore[union-attr]
    assert len([m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]) == 1


def test_the_readme_writes_out_the_built_in_question_rules_as_they_are() -> None:
    """README's "Dialogue" section shows each built-in rule as doorstep.toml would write it: the same rule."""
    import re
    import tomllib
    from pathlib import Path

    from responders.config import BUILT_IN_QUESTIONS, QuestionRule

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    written: dict[str, Any] = {}
    for block in re.findall(r"```toml\n(.*?)```", readme, re.S):
        if "[responders.dialogue.questions." in block:
            written |= tomllib.loads(block)["responders"]["dialogue"]["questions"]
    assert sorted(written) == sorted(BUILT_IN_QUESTIONS)
    for name, rule in written.items():
        assert QuestionRule.model_validate(rule) == QuestionRule.model_validate(BUILT_IN_QUESTIONS[name]), name


def test_yes_by_sms_gives_the_courier_a_link_and_after_stop_their_update_messages_nobody(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, twilio: TwilioStandIn, smtp: SmtpSink) -> None:  # noqa: F811
    """The whole loop on real servers: YES at POST /sms, the courier's e-mail (aiosmtpd) carries the
    shipment's link, the courier posts an update on the courier page (uvicorn) and it lands on the
    case; after the customer's STOP no message about it goes to them (``customer_message = "send"``)."""
    import httpx

    from responders.courier_page import CourierPageServer
    from test_courier_link import path_of
    from test_dialogue import ask_redelivery

    monkeypatch.setenv("DOORSTEP_MAIL_SECRET", MAIL_SECRET)
    monkeypatch.setenv("COURIER_LINK_SECRET", "dialogue-courier-link-key-0123")
    db = tmp_path / "loop.db"
    store = Store(db)
    config = dialogue_config(courier_link={"base_url": "http://couriers.larkspur.test", "customer_message": "send"})
    case_id, _ = ask_redelivery(store, config, utcnow())
    Outbox(store, config, now=later).send_due()
    with WebhookServer(db, config, secret="hook-secret", port=0) as server:
        assert post_sms(f"{server.url}/sms", "YES", "SMloop1").status_code == 200
        Outbox(store, config, now=later).send_due()
        [mail] = smtp.messages
        body = mail.get_payload(decode=True).decode()
        link = next(w for w in body.split() if w.startswith("http://couriers.larkspur.test/courier/"))
        assert post_sms(f"{server.url}/sms", "STOP", "SMloop2").status_code == 200
    with CourierPageServer(store, config, port=0) as page:
        posted = httpx.post(page.url + path_of(link) + "/updates",
                            json={"update_id": "ups-1", "status": "redelivery_booked", "text": "Booked for Friday"})
    assert posted.status_code == 201
    assert "Courier update (redelivery booked): Booked for Friday" in [n.text for n in store.notes(case_id)]
    assert any(e.action == "courier.update.no_message" for e in store.audit_trail(case_id))
    Outbox(store, config, now=later).send_due()
    assert len(twilio.sms) == 1 and len(smtp.messages) == 1  # the question and the courier's e-mail, nothing after
    store.close()


def test_behind_a_proxy_the_sms_signature_is_checked_over_sms_webhook_url(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, twilio: TwilioStandIn) -> None:  # noqa: F811
    """Twilio signs the public URL it called; the request reaches us on another one (a proxy)."""
    import httpx
    from twilio.request_validator import RequestValidator

    from standins.twilio import SID
    from test_dialogue import ask_redelivery, deliver

    public = "https://care.example.com/sms"
    db = tmp_path / "proxy.db"
    store = Store(db)
    config = dialogue_config(dialogue={"sms_webhook_url": public})
    case_id, question = ask_redelivery(store, config, utcnow())
    deliver(store, config)
    params = {"MessageSid": "SMproxy", "AccountSid": SID, "From": PHONE, "To": "+447700900000", "Body": "yes"}
    with WebhookServer(db, config, secret="hook-secret", port=0) as server:
        local = f"{server.url}/sms"
        signed_locally = httpx.post(local, data=params, timeout=10, headers={
            "X-Twilio-Signature": RequestValidator("secret-token").compute_signature(local, params)})
        assert signed_locally.status_code == 401
        assert rows.get_question(store, question.id).status == "open"  # type: ignore[union-attr]
        signed_publicly = httpx.post(local, data=params, timeout=10, headers={
            "X-Twilio-Signature": RequestValidator("secret-token").compute_signature(public, params)})
        assert signed_publicly.status_code == 200
    assert rows.get_question(store, question.id).answer_kind == "yes"  # type: ignore[union-attr]
    assert len([m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]) == 1
    store.close()


def test_an_email_answer_is_joined_by_plus_address_by_in_reply_to_or_by_the_sender(
        inbound: dict[str, Any], smtp: SmtpSink) -> None:  # noqa: F811
    """Each way README names for joining an e-mail answer, one customer each: a care+TOKEN@ address,
    In-Reply-To alone (the subject rewritten), and only the sender's address (a new e-mail)."""
    from email.message import EmailMessage

    from test_dialogue import ask_redelivery, post_mail

    store, config, server = inbound["store"], inbound["config"], inbound["server"]
    now = utcnow()
    people = [("C1", "LS-1", "1Z999AA10123456784", "ann@example.com"), ("C2", "LS-2", "1Z999AA10123456792", "bo@example.com"),
              ("C3", "LS-3", "1Z999AA10123456801", "cy@example.com")]
    questions = [ask_redelivery(store, config, now, customer_id=c, number=n, tracking=t, email=e, phone=None)[1]
                 for c, n, t, e in people]
    Outbox(store, config, now=later).send_due()
    sent = {m.envelope_to[0]: m for m in smtp.messages}

    def answer(sender: str, text: str, **headers: str) -> str:
        mail = EmailMessage()
        mail["From"], mail["Message-ID"] = sender, f"<{sender}-answer@example.com>"
        for name, value in headers.items():
            mail[name.replace("_", "-")] = value
        mail.set_content(text)
        response = post_mail(f"{server.url}/mail", mail)
        assert response.status_code == 202, response.text
        return response.json()["outcome"]

    assert answer("ann@example.com", "yes please", To=f"care+{questions[0].token}@larkspur.test",
                  Subject="my parcel") == "answered"
    assert answer("bo@example.com", "no thanks", To="care@larkspur.test", Subject="re: delivery",
                  In_Reply_To=sent["bo@example.com"]["Message-ID"]) == "answered"
    assert answer("cy@example.com", "nope", To="care@larkspur.test", Subject="hello") == "answered"
    assert [rows.get_question(store, q.id).answer_kind for q in questions] == ["yes", "no", "no"]  # type: ignore[union-attr]


def test_a_call_back_rule_is_switched_off_with_0_in_doorstep_toml() -> None:
    """README audit 2: `stuck_days` and `contacts` default to 3 and TOML has no null, so a lead who wanted call-back
    offers for VIPs only could not turn the stuck-parcel and third-post rules off (0 and false were refused)."""
    import tomllib

    from doorstep.config import parse_config

    raw = tomllib.loads("[responders.callback]\nenabled = true\ncontacts = 0\nstuck_days = 0\norder_value_over = 0\n")
    callback = responders_settings(parse_config(raw)).callback
    assert (callback.contacts, callback.stuck_days, callback.order_value_over) == (None, None, None)
    with pytest.raises(ConfigError, match="contacts"):
        responders_settings(parse_config({"responders": {"callback": {"contacts": 1}}}))
