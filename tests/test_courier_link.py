"""The courier in the loop: a signed, scoped, expiring link to one shipment's page, served on uvicorn.

Every test talks HTTP to a real CourierPageServer on 127.0.0.1 (httpx as the courier's browser).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from doorstep.config import parse_config
from doorstep.store import Store
from responders.courier_link import make_link
from responders.courier_page import CourierPageServer
from responders.escalation import escalate

from test_outbox import NOW, add_order, make_case, smtp  # noqa: F401 - fixture

KEY = "courier-link-test-key-0123456789"


def courier_config(**link: Any) -> Any:
    return parse_config({
        "timezone": "Europe/London",
        "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}}],
        "couriers": [{"name": "UPS", "escalation_email": "claims@ups.test"}],
        "responders": {"courier_link": {"base_url": "http://couriers.larkspur.test", **link},
                       "escalation": {"auto_sla_minutes": None}},
    })


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COURIER_LINK_SECRET", KEY)
    return KEY


def two_shipments(store: Store, config: Any) -> tuple[int, int]:
    """Two customers' cases, each on its own UPS parcel."""
    a = add_order(store, events=[(NOW - timedelta(days=2), "in_transit", "Leeds hub"),
                                 (NOW - timedelta(days=1), "attempt_failed", "Harrogate")])
    b = add_order(store, number="LS-200999", tracking="1Z999AA10000000001", customer_id="C2", name="Bob Other",
                  email="bob@example.com", phone="+447700900999",
                  events=[(NOW - timedelta(days=1), "exception", "Bristol")])
    case_a = make_case(store, config, order=a, text="@LarkspurHelp nobody came, my parcel is lost!! jane@example.com")
    case_b = make_case(store, config, order=b, handle="bob", text="@LarkspurHelp where is my parcel?")
    return case_a, case_b


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def test_courier_escalation_carries_a_link_that_shows_only_what_delivery_needs(store: Store, key: str) -> None:
    config = courier_config()
    case_a, _ = two_shipments(store, config)
    escalate(store, config, case_a, "courier", "please book a redelivery for Friday", "sam")
    email = next(m for m in store.outbound_for_case(case_a) if m.kind == "escalation")
    assert "http://couriers.larkspur.test/courier/1Z999AA10123456784/" in email.text
    link = next(w for w in email.text.split() if w.startswith("http://couriers.larkspur.test/courier/"))
    with CourierPageServer(store, config, port=0) as server:
        page = httpx.get(server.url + path_of(link))
        facts = httpx.get(server.url + path_of(link) + "/facts").json()
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert facts["tracking_number"] == "1Z999AA10123456784" and facts["delivery_town"] == "Harrogate"
    # The agent's note goes in the escalation; the page, which can be forwarded, says our ask in fixed words.
    assert facts["ask"].startswith("Our care team asks you to look into this parcel")
    assert "please book a redelivery for Friday" in email.text and "redelivery for Friday" not in page.text
    assert [e["status"] for e in facts["timeline"]] == ["in_transit", "attempt_failed"]
    for private in ("Jane", "jane@example.com", "+447700900123", "@jane", "nobody came", "LS-100234", "Linen shirt"):
        assert private not in page.text and private not in str(facts)
    assert "1Z999AA10000000001" not in page.text and "Bristol" not in page.text  # the other parcel


def test_a_link_for_one_shipment_cannot_read_or_post_to_another(store: Store, key: str) -> None:
    config = courier_config()
    case_a, case_b = two_shipments(store, config)
    url_a, _ = make_link(config, case_a, "1Z999AA10123456784")
    token_a = url_a.rsplit("/", 1)[1]
    with CourierPageServer(store, config, port=0) as server:
        other = f"{server.url}/courier/1Z999AA10000000001/{token_a}"
        read = httpx.get(other + "/facts")
        page = httpx.get(other)
        post = httpx.post(other + "/updates", json={"update_id": "u1", "text": "found it", "status": "found_at_depot"})
    assert read.status_code == page.status_code == post.status_code == 403
    assert read.json() == {"error": "this link is for another shipment"}
    assert page.text.strip() == "this link is for another shipment" and "\n" not in page.text.strip()
    assert store.notes(case_b) == [] and store.rows("select * from courier_updates") == []


def test_expired_tampered_and_foreign_links_are_refused_with_a_reason(store: Store, key: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = courier_config(valid_hours=48)
    case_a, _ = two_shipments(store, config)
    issued = datetime.now(timezone.utc)
    url, expires = make_link(config, case_a, "1Z999AA10123456784", now=issued)
    path = path_of(url)
    tampered = path[:-6] + ("A" if path[-6] != "A" else "B") + path[-5:]
    clock = {"now": issued + timedelta(hours=47)}
    with CourierPageServer(store, config, port=0, clock=lambda: clock["now"]) as server:
        assert httpx.get(server.url + path + "/facts").status_code == 200  # still valid an hour before
        bad = httpx.get(server.url + tampered + "/facts")
        clock["now"] = issued + timedelta(hours=48, minutes=1)
        late = httpx.get(server.url + path + "/facts")
        late_post = httpx.post(server.url + path + "/updates", json={"update_id": "u1", "text": "on its way"})
        monkeypatch.setenv("COURIER_LINK_SECRET", "another-deployment-key")
        clock["now"] = issued + timedelta(hours=1)
        foreign = httpx.get(server.url + path + "/facts")
    assert bad.status_code == 403 and bad.json()["error"] == "this link is not valid (altered, or not issued by us)"
    assert late.status_code == late_post.status_code == 403 and "expired" in late.json()["error"]
    assert foreign.status_code == 403 and "not valid" in foreign.json()["error"]
    assert expires == (issued + timedelta(hours=48)).replace(microsecond=0)
    assert store.rows("select * from courier_updates") == []


def test_an_update_lands_on_the_case_once_and_queues_a_message_for_approval(store: Store, key: str) -> None:
    config = courier_config()
    case_a, _ = two_shipments(store, config)
    url, _ = make_link(config, case_a, "1Z999AA10123456784")
    update = {"update_id": "ups-77", "status": "redelivery_booked", "text": "Redelivery booked for Fri <b>AM</b>"}
    with CourierPageServer(store, config, port=0) as server:
        first = httpx.post(server.url + path_of(url) + "/updates", json=update)
        again = httpx.post(server.url + path_of(url) + "/updates", json=update)
        page = httpx.get(server.url + path_of(url))
    assert first.status_code == 201 and again.status_code == 200 and again.json()["duplicate"] is True
    notes = store.notes(case_a)
    assert [n.text for n in notes] == ["Courier update (redelivery booked): Redelivery booked for Fri <b>AM</b>"]
    assert notes[0].author == "courier:UPS"
    assert [e.action for e in store.audit_trail(case_a)].count("courier.update") == 1
    messages = [m for m in store.outbound_for_case(case_a) if m.kind == "follow_up"]
    assert len(messages) == 1 and messages[0].status == "awaiting_approval" and messages[0].target == "jane@example.com"
    assert "a new delivery is booked" in messages[0].text and "Redelivery booked for Fri" in messages[0].text
    assert "&lt;b&gt;AM&lt;/b&gt;" in page.text and "<b>AM</b>" not in page.text  # shown as text, not HTML


def test_the_page_form_posts_and_a_reload_does_not_post_twice(store: Store, key: str) -> None:
    config = courier_config(customer_message="off")
    case_a, _ = two_shipments(store, config)
    url, _ = make_link(config, case_a, "1Z999AA10123456784")
    with CourierPageServer(store, config, port=0) as server:
        page = httpx.get(server.url + path_of(url)).text
        update_id = page.split('name="update_id" value="', 1)[1].split('"', 1)[0]
        form = {"update_id": update_id, "status": "found_at_depot", "text": "parcel found at depot"}
        posted = httpx.post(server.url + path_of(url) + "/updates", data=form)
        httpx.post(server.url + path_of(url) + "/updates", data=form)
    assert posted.status_code == 303 and posted.headers["location"].endswith("?posted=1")
    assert [n.text for n in store.notes(case_a)] == ["Courier update (found at depot): parcel found at depot"]
    assert [m for m in store.outbound_for_case(case_a) if m.kind == "follow_up"] == []


def test_size_rate_and_shape_limits(store: Store, key: str) -> None:
    config = courier_config(max_update_chars=40, max_body_bytes=512, max_updates_per_hour=2, customer_message="off")
    case_a, _ = two_shipments(store, config)
    url, _ = make_link(config, case_a, "1Z999AA10123456784")
    with CourierPageServer(store, config, port=0) as server:
        post = lambda body, **kw: httpx.post(server.url + path_of(url) + "/updates", **({"json": body} | kw))  # noqa: E731
        long_text = post({"update_id": "a", "text": "x" * 41})
        big_body = post(None, content=b'{"update_id": "b", "text": "' + b"y" * 600 + b'"}')
        bad_id = post({"update_id": "no spaces please", "text": "hi"})
        bad_status = post({"update_id": "c", "status": "teleported", "text": "hi"})
        list_status = post({"update_id": "d", "status": ["found_at_depot"], "text": "hi"})
        not_json = post(None, content=b"<xml/>")
        ok = [post({"update_id": f"ok{i}", "text": "on the van"}).status_code for i in range(2)]
        third = post({"update_id": "ok3", "text": "and again"})
        repeat = post({"update_id": "ok1", "text": "on the van"})
    assert long_text.status_code == 413 and "max_update_chars" in long_text.json()["error"]
    assert big_body.status_code == 413 and "max_body_bytes" in big_body.json()["error"]
    assert bad_id.status_code == 422 and bad_id.json()["error"].startswith("update_id:")
    assert bad_status.status_code == 422 and "teleported" in bad_status.json()["error"]
    assert list_status.status_code == 422 and list_status.json()["error"].startswith("status: unknown")
    assert not_json.status_code == 400
    assert ok == [201, 201] and third.status_code == 429 and "max_updates_per_hour" in third.json()["error"]
    assert repeat.status_code == 200  # a re-post is answered even when the hour's quota is used up
    assert len(store.notes(case_a)) == 2


def test_a_relinked_case_closes_its_old_link(store: Store, key: str) -> None:
    config = courier_config()
    case_a, _ = two_shipments(store, config)
    url, _ = make_link(config, case_a, "1Z999AA10123456784")
    case = store.get_case(case_a)
    store.update_case(case_a, case.version, "agent", tracking_number="1Z999AA10000000001")  # type: ignore[union-attr]
    with CourierPageServer(store, config, port=0) as server:
        answer = httpx.get(server.url + path_of(url) + "/facts")
    assert answer.status_code == 403 and "no longer concerns this shipment" in answer.json()["error"]


def test_without_a_signing_key_the_escalation_goes_without_a_link_and_the_page_refuses_to_start(
        store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv("COURIER_LINK_SECRET", raising=False)
    monkeypatch.delenv("DOORSTEP_SECRETS_FILE", raising=False)
    config = courier_config()
    case_a, _ = two_shipments(store, config)
    escalate(store, config, case_a, "courier", "trace please", "sam")
    email = next(m for m in store.outbound_for_case(case_a) if m.kind == "escalation")
    assert "/courier/" not in email.text
    assert any(e.action == "courier.link.unavailable" for e in store.audit_trail(case_a))
    from commands.cli import cli

    toml = tmp_path / "doorstep.toml"
    toml.write_text('[responders.courier_link]\nbase_url = "http://couriers.test"\n')
    result = CliRunner().invoke(cli, ["--db", store.path, "--config", str(toml), "courier-page", "--port", "0"])
    assert result.exit_code == 1 and "set COURIER_LINK_SECRET" in result.output
    assert "Traceback" not in result.output


def test_a_courier_webhook_carries_the_link_and_its_expiry(store: Store, key: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("COURIER_WEBHOOK_SECRET", "whsec")
    config = parse_config({
        "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}}],
        "couriers": [{"name": "UPS", "escalation_webhook": "http://127.0.0.1:9/claims"}],
        "responders": {"courier_link": {"base_url": "https://couriers.example.com/", "valid_hours": 24}},
    })
    case_a, _ = two_shipments(store, config)
    escalate(store, config, case_a, "courier", "trace please", "sam")
    hook = next(m for m in store.outbound_for_case(case_a) if m.kind == "escalation" and m.channel == "webhook")
    body = json.loads(hook.text)
    assert body["courier_link"].startswith("https://couriers.example.com/courier/1Z999AA10123456784/")
    expires = datetime.fromisoformat(body["courier_link_expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(timezone.utc) <= timedelta(hours=24)


@pytest.mark.parametrize("key_value, problem", [
    ("customer_message", "unknown value 'maybe'; expected off, approval or send"),
    ("base_url", "is not an http(s) URL"),
])
def test_a_bad_courier_link_setting_is_one_line_naming_the_key(key_value: str, problem: str) -> None:
    from doorstep.config import ConfigError
    from responders.config import responders_settings

    config = parse_config({"responders": {"courier_link": {key_value: "maybe"}}})
    with pytest.raises(ConfigError) as error:
        responders_settings(config)
    message = str(error.value)
    assert message.startswith(f"doorstep.toml: responders.courier_link.{key_value}: ") and problem in message
    assert "\n" not in message


def test_the_couriers_page_and_the_webhook_can_both_run_with_their_default_ports() -> None:
    """Both defaulted to 127.0.0.1:8766: `doorstep courier-page` beside `doorstep listen webhook` (or
    the worker with a webhook) stopped with "address already in use" (docs audit, 2026-12-06)."""
    from listeners.config import WebhookSettings
    from responders.config import CourierLink

    page = CourierLink()
    assert page.port != WebhookSettings().port
    assert page.base_url.endswith(f":{page.port}")  # a link points where the page listens


def test_the_customers_update_message_goes_from_the_case_brands_mailbox(store: Store, key: str, smtp: Any) -> None:
    """Audit (outbound) finding 2, responders/courier_link.py: the update message was queued with no
    account, so it went From the shop-wide SMTP_FROM instead of the brand's own address."""
    from responders.automatic import approve
    from responders.outbox import Outbox

    config = parse_config({
        "timezone": "Europe/London",
        "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}, "email": "help@larkspur-home.test"}],
        "couriers": [{"name": "UPS", "escalation_email": "claims@ups.test"}],
        "responders": {"courier_link": {"base_url": "http://couriers.larkspur.test"},
                       "escalation": {"auto_sla_minutes": None},
                       # no quiet hours: between 21:00 and 08:00 London the message waited and the test failed
                       "followup": {"quiet_hours": None}},
    })
    case_a, _ = two_shipments(store, config)
    url, _ = make_link(config, case_a, "1Z999AA10123456784")
    update = {"update_id": "ups-78", "status": "redelivery_booked", "text": "Redelivery booked for Friday"}
    with CourierPageServer(store, config, port=0) as server:
        assert httpx.post(server.url + path_of(url) + "/updates", json=update).status_code == 201
    [message] = [m for m in store.outbound_for_case(case_a) if m.kind == "follow_up"]
    approve(store, message.id, "ann")  # type: ignore[arg-type]
    Outbox(store, config).send_due()
    mail = [m for m in smtp.messages if m["To"] == "jane@example.com"]
    assert [m["From"] for m in mail] == ["help@larkspur-home.test"]  # SMTP_FROM is care@larkspur.test


def test_a_template_name_that_is_no_template_sends_nothing_and_says_why(store: Store, key: str) -> None:
    """Audit (settings) finding 1: ``template = "courier_updte"`` (a typo) was sent as the message text."""
    config = courier_config(template="courier_updte")
    case_a, _ = two_shipments(store, config)
    url, _ = make_link(config, case_a, "1Z999AA10123456784")
    update = {"update_id": "ups-79", "status": "redelivery_booked", "text": "Redelivery booked for Friday"}
    with CourierPageServer(store, config, port=0) as server:
        assert httpx.post(server.url + path_of(url) + "/updates", json=update).status_code == 201
    assert [m for m in store.outbound_for_case(case_a) if m.kind == "follow_up"] == []
    [why] = [e.details for e in store.audit_trail(case_a) if e.action == "courier.update.no_message"]
    assert "unknown template 'courier_updte'" in why["reason"]
