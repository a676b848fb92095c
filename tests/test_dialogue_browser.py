"""In a real browser: a proactive question answered by SMS, and the courier escalation it triggered on the case.

A failed delivery attempt opens a proactive case on the demo shop; its question ("Shall we ask
UPS to redeliver it? Reply YES or NO") is approved and sent through the twilio library to a local
Twilio stand-in; the customer's "YES" is posted, signed as Twilio signs it, to ``POST /sms`` of the
inbound application (uvicorn). Then an agent logs in to the console (``streamlit run app.py``,
headless Chromium) and sees on the case the question, the answer, what it triggered and the
escalation to the courier on the timeline; the inbox's "Waiting for" filter and the Call-backs
page (a call back whose slot the customer picked by SMS, with its ``tel:`` link) are checked too.
Screenshots go to ``test-artifacts/e2e/``. Without chromium this skips on a developer's machine
and fails under CI=true (``chromium_or_skip``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from standins.twilio import SID
from tests.test_e2e_browser import (
    DEMO_CONFIG, PASSWORD, choose, chromium_or_skip, launch_chromium, login, open_case, serve_console, shot, wait_idle,
)

pytestmark = [pytest.mark.e2e]

TOKEN = "twilio-auth-token"
PHONE = "+447700900123"
OTHER_PHONE = "+447700900456"


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    chromium_or_skip()


def _order(store: Any, number: str, customer_id: str, phone: str, tracking: str, now: Any, status: str) -> None:
    from doorstep.models import Customer, Order, Shipment, TrackingEvent

    store.upsert_customers([Customer(id=customer_id, name="Jane Doe" if customer_id.endswith("1") else "Bo Lane",
                                     email=f"{customer_id.lower()}@example.com", phone=phone)])
    events = [TrackingEvent(tracking_number=tracking, time=now - timedelta(days=1), status="in_transit", location="Leeds hub"),
              TrackingEvent(tracking_number=tracking, time=now - timedelta(hours=2), status=status, location="Bath")]
    order = Order(number=number, customer_id=customer_id, placed_at=now - timedelta(days=4), brand="Larkspur Home",
                  items=[{"name": "Linen throw", "quantity": 1}], total=80.0,
                  shipments=[Shipment(tracking_number=tracking, order_number=number, courier="UPS", events=events)])
    store.upsert_orders([order])
    store.upsert_shipment(order.shipments[0])


def _sms(url: str, body: str, sid: str, sender: str) -> httpx.Response:
    from twilio.request_validator import RequestValidator

    params = {"MessageSid": sid, "AccountSid": SID, "From": sender, "To": "+447700900000", "Body": body}
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, params)},
                      timeout=10)


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from console.auth import add_user
    from doorstep import dialogue as rows
    from doorstep.config import load_config
    from commands.demo import build_demo
    from doorstep.models import utcnow
    from doorstep.store import Store
    from listeners.webhook import WebhookServer
    from responders.automatic import approve
    from responders.dialogue import offer_callback
    from responders.followup import run_proactive
    from responders.outbox import Outbox
    from tests.conftest import KeywordClassifier
    from tests.test_dialogue import later
    from standins.twilio import TwilioStandIn

    db = tmp_path / "dialogue.db"
    build_demo(str(db), seed=5, customers=20, orders=40, mentions=30, config_path=str(DEMO_CONFIG),
               classifier=KeywordClassifier())
    config = load_config(DEMO_CONFIG)
    store = Store(db)
    add_user(store, "ann", PASSWORD, role="agent", name="Ann Agent", rounds=4)
    now = utcnow()
    _order(store, "LH-900001", "E2E-1", PHONE, "1Z999AA10123456784", now, "attempt_failed")
    _order(store, "LH-900002", "E2E-2", OTHER_PHONE, "1Z999AA10123456792", now, "attempt_failed")
    run_proactive(store, config, now)
    case_id = store.db.execute("select id from cases where order_number = 'LH-900001'").fetchone()[0]
    other_case = store.db.execute("select id from cases where order_number = 'LH-900002'").fetchone()[0]
    [question] = rows.questions_for_case(store, case_id)
    assert question.channel == "sms" and question.rule == "redeliver"

    twilio = TwilioStandIn()
    with twilio.server:
        for key, value in {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_FROM": "+447700900000",
                           "TWILIO_BASE_URL": twilio.server.url}.items():
            monkeypatch.setenv(key, value)
        outbox = Outbox(store, config, now=later)  # outside quiet hours
        [other_question] = rows.questions_for_case(store, other_case)
        for asked in (question, other_question):
            approve(store, asked.message_id, "ann")  # the demo holds SMS outreach for approval
            assert outbox.send_one(asked.message_id) == "sent"  # type: ignore[arg-type]
        assert "Reply YES or NO" in twilio.sms[0]["body"] and twilio.sms[0]["to"] == PHONE
        # The other customer: no answer yet to the redelivery question; an agent offers a call back.
        callback = offer_callback(store, config, other_case, "ann", "agent")
        assert outbox.send_one(rows.get_question(store, callback.question_id).message_id) == "sent"  # type: ignore[arg-type,union-attr]
    # The courier's escalation carries its signed link to the shipment's page (responders/courier_link.py).
    monkeypatch.setenv("COURIER_LINK_SECRET", "courier-link-signing-key-for-the-test")
    with WebhookServer(db, config, secret="hook-secret", port=0) as server:
        assert _sms(f"{server.url}/sms", "YES", "SMe2e1", PHONE).status_code == 200
        assert _sms(f"{server.url}/sms", "YES", "SMe2e1", PHONE).status_code == 200  # Twilio's redelivery
        assert _sms(f"{server.url}/sms", "Thursday after 2 is fine", "SMe2e2", OTHER_PHONE).status_code == 200
    escalations = [m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]
    assert len(escalations) == 1 and escalations[0].target == "uk-claims@ups.example"
    assert "See this shipment and post updates" in escalations[0].text
    assert rows.get_callback(store, callback.id).status == "scheduled"  # type: ignore[union-attr]
    from doorstep.store import InboxQuery

    awaiting = [c.id for c in store.inbox(InboxQuery(waiting="answer"))]
    assert other_case in awaiting and case_id not in awaiting  # its redelivery question is still open
    store.close()
    return {"db": db, "case_id": case_id, "other_case": other_case, "callback_id": callback.id,
            "awaiting": len(awaiting)}


def test_proactive_question_answered_by_sms_shows_the_courier_escalation_on_the_case(
        shop: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    env = {"DOORSTEP_DB": str(shop["db"]), "DOORSTEP_CONFIG": str(DEMO_CONFIG)}
    with serve_console(tmp_path, env) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        login(page, url, "ann")
        open_case(page, shop["case_id"])
        main = page.locator('[data-testid="stMain"]')
        expect(main.get_by_text("Questions and call backs")).to_be_visible()
        expect(main.get_by_text("redelivery question by SMS", exact=False)).to_be_visible()
        expect(main.get_by_text("Answer (sms,", exact=False)).to_contain_text("read as yes")
        expect(main.get_by_text("Triggered: escalated to courier", exact=False)).to_be_visible()
        # The timeline: the answer and the escalation it triggered, in the team's words.
        expect(main.get_by_text("The customer answered by SMS: “YES”, read as yes", exact=False)).to_be_visible()
        expect(main.get_by_text("Doorstep escalated to courier: “The customer asked for a redelivery",
                                exact=False)).to_be_visible()
        expect(main.get_by_text("The customer answered again: “YES”", exact=False)).to_have_count(0)
        # The outbound message to the courier's address is on the case too.
        expect(main.get_by_text("escalation via e-mail", exact=False).first).to_be_visible()
        shot(page, "dialogue-case-sms-yes-escalated")

        # The inbox: "Waiting for" call-back due lists the other customer's case once its slot has come;
        # "awaiting customer answer" lists cases whose question is still open (none of these two).
        page.get_by_role("link", name="Inbox").click()
        wait_idle(page)
        expect(main.get_by_text(f"awaiting customer answer {shop['awaiting']} · call-back due 0")).to_be_visible()
        choose(page, "Waiting for", "awaiting customer answer")
        wait_idle(page)
        expect(main.get_by_text(f"{shop['awaiting']} case(s); times in", exact=False)).to_be_visible()
        shot(page, "dialogue-inbox-waiting-filter")

        page.get_by_role("link", name="Call-backs").click()
        wait_idle(page)
        page.get_by_role("heading", name="Call-backs").wait_for()
        expect(main.get_by_text(f"Case #{shop['other_case']}", exact=False)).to_be_visible()
        expect(main.get_by_text("slot: Thu", exact=False)).to_be_visible()
        link = main.locator("a[href^='tel:']").first
        expect(link).to_have_attribute("href", f"tel:{OTHER_PHONE}")
        expect(link).to_contain_text(f"Call {OTHER_PHONE}")
        shot(page, "dialogue-callbacks-page")
        browser.close()
