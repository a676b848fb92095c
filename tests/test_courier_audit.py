"""The courier's page, as the inbound-HTTP audit found it wrong (/tmp/audit/http.md, findings 2, 6, 9 and 10).

* The page (a link that can be forwarded) showed the customer's own words, name, address and phone,
  quoted from her SMS answer into the escalation's note; it now shows only Doorstep's fixed words
  for the kind of request, and the courier's escalation carries no quote of the answer.
* One update waiting on a busy store blocked every other courier's page, then got a plain-text
  500; store work now runs in a thread and a busy store is a JSON 503 with Retry-After.
* An update on a link whose case was since merged landed on the closed, merged case.
* A deeply nested JSON body got a plain-text 500 and a traceback instead of the 400 of bad JSON.

Every test talks HTTP to a real CourierPageServer (httpx as the courier's browser); on SQLite and
PostgreSQL where the store is the fixture's.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from doorstep.models import Case, utcnow
from doorstep.regroup import merge_cases
from doorstep.store import Store
from responders.courier_link import make_link
from responders.courier_page import CourierPageServer
from responders.escalation import escalate

from test_courier_link import courier_config, key, path_of, two_shipments  # noqa: F401 - fixture
from test_dialogue import ask_redelivery, deliver, dialogue_config, inbound_app, post_sms

#: The audit's answer (t3.py): a yes that carries her name, address and phone.
DANA = "Yes - I'm Dana Whitfield, 14 Elm Road flat 2, call 07700 900209, leave it with my neighbour"
DANAS_WORDS = ("Dana", "Whitfield", "Elm Road", "07700 900209", "neighbour")


@pytest.fixture
def sms_inbound(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, key: str) -> Iterator[dict[str, Any]]:  # noqa: F811
    """The inbound application (/sms) with courier links on, on a SQLite file of its own."""
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "secret-token")
    config = dialogue_config(courier_link={"base_url": "http://couriers.larkspur.test"})
    yield from inbound_app(tmp_path, monkeypatch, config)


def link_in(text: str) -> str:
    return next(w for w in text.split() if w.startswith("http://couriers.larkspur.test/courier/"))


# ----------------------------------------------------------------------------- finding 2
def test_the_customers_sms_answer_never_reaches_the_couriers_page_or_escalation(sms_inbound: dict[str, Any]) -> None:
    store, config, server = sms_inbound["store"], sms_inbound["config"], sms_inbound["server"]
    case_id, _ = ask_redelivery(store, config, utcnow())
    deliver(store, config)
    assert post_sms(f"{server.url}/sms", DANA, "SMdana1").status_code == 200
    [escalation] = [m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]
    assert escalation.target == "depot@ups.test"
    with CourierPageServer(store, config, port=0) as page_server:
        page = httpx.get(page_server.url + path_of(link_in(escalation.text)))
        facts = httpx.get(page_server.url + path_of(link_in(escalation.text)) + "/facts").json()
    assert page.status_code == 200
    assert facts["ask"] == "The customer asked for a redelivery: please book one and post the new date here."
    for words in DANAS_WORDS:
        assert words not in page.text and words not in str(facts), words
        assert words not in escalation.text, words  # what the courier's mailbox gets
    assert "Note: The customer asked for a redelivery." in escalation.text
    # The team's own note on the case keeps her words.
    assert [n.text for n in store.notes(case_id)] == [f"The customer asked for a redelivery (“{DANA}”)."]


def test_an_agents_typed_note_goes_in_the_escalation_but_not_on_the_forwardable_page(store: Store,
                                                                                    key: str) -> None:  # noqa: F811
    config = courier_config()
    case_a, _ = two_shipments(store, config)
    note = "Jane Doe says leave it at 14 Elm Road with the neighbour, jane@example.com, +447700900123"
    escalate(store, config, case_a, "courier", note, "sam")
    email = next(m for m in store.outbound_for_case(case_a) if m.kind == "escalation")
    assert f"Note: {note}" in email.text  # the courier reads the agent's words in the escalation itself
    with CourierPageServer(store, config, port=0) as server:
        page = httpx.get(server.url + path_of(link_in(email.text)))
        facts = httpx.get(server.url + path_of(link_in(email.text)) + "/facts").json()
    assert facts["ask"] == ("Our care team asks you to look into this parcel (their note is in the escalation "
                            "we sent you): please post here what you find.")
    for private in ("Jane", "Elm Road", "jane@example.com", "+447700900123", "neighbour"):
        assert private not in page.text and private not in str(facts), private


# ----------------------------------------------------------------------------- finding 6
class HeldLock:
    """Another connection holding the write lock on courier updates (SQLite: the database's)."""

    def __init__(self, url: str):
        self.url = url

    def __enter__(self) -> HeldLock:
        if self.url.startswith("postgresql://"):
            import psycopg

            self.conn: Any = psycopg.connect(self.url)
            self.conn.execute("lock table courier_updates in share row exclusive mode")
        else:
            self.conn = sqlite3.connect(self.url, isolation_level=None)
            self.conn.execute("begin immediate")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.conn.rollback() if self.url.startswith("postgresql://") else self.conn.execute("rollback")
        self.conn.close()


def test_a_busy_store_answers_the_update_503_and_other_couriers_are_served_meanwhile(db_url: str,
                                                                                     key: str) -> None:  # noqa: F811
    store = Store(db_url)
    config = courier_config(customer_message="off")
    case_a, case_b = two_shipments(store, config)
    url_a, _ = make_link(config, case_a, "1Z999AA10123456784")
    url_b, _ = make_link(config, case_b, "1Z999AA10000000001")
    update = {"update_id": "lock1", "status": "delivered", "text": "left with neighbour"}
    page_store = Store(db_url, busy_timeout_s=1.0)
    answers: dict[str, Any] = {}
    try:
        with CourierPageServer(page_store, config, port=0) as server:
            with HeldLock(db_url):
                poster = threading.Thread(target=lambda: answers.update(post=httpx.post(
                    server.url + path_of(url_a) + "/updates", json=update, timeout=30)))
                poster.start()
                time.sleep(0.3)
                started = time.monotonic()
                answers["other"] = httpx.get(server.url + path_of(url_b) + "/facts", timeout=30)
                answers["health"] = httpx.get(server.url + "/health", timeout=30)
                answers["waited"] = time.monotonic() - started
                poster.join()
            answers["retry"] = httpx.post(server.url + path_of(url_a) + "/updates", json=update, timeout=30)
    finally:
        page_store.close()
    assert answers["waited"] < 0.9, answers["waited"]  # not held up behind the busy update
    assert answers["other"].status_code == 200 and answers["health"].status_code == 200
    busy = answers["post"]
    assert busy.status_code == 503 and busy.json() == {"error": "the store is busy; retry later"}
    assert busy.headers["retry-after"] == "5"
    assert answers["retry"].status_code == 201
    assert [n.text for n in store.notes(case_a)] == ["Courier update (delivered): left with neighbour"]
    store.close()


# ----------------------------------------------------------------------------- finding 9
def test_an_update_on_a_merged_cases_link_lands_on_the_case_it_went_into(store: Store, key: str) -> None:  # noqa: F811
    config = courier_config(customer_message="off")
    case_a, _ = two_shipments(store, config)
    url, _ = make_link(config, case_a, "1Z999AA10123456784")
    kept = store.insert_case(Case(priority=10, customer_id="C1", brand="Larkspur", channel="x", author_handle="jane"))
    merge_cases(store, config, kept, store.get_case(kept).version, case_a,  # type: ignore[union-attr]
                store.get_case(case_a).version, "ann")  # type: ignore[union-attr]
    assert store.get_case(kept).tracking_number == "1Z999AA10123456784"  # type: ignore[union-attr]
    update = {"update_id": "m1", "status": "found_at_depot", "text": "Found it at Leeds depot, ready to redeliver"}
    with CourierPageServer(store, config, port=0) as server:
        facts = httpx.get(server.url + path_of(url) + "/facts")
        posted = httpx.post(server.url + path_of(url) + "/updates", json=update)
    assert facts.status_code == 200 and posted.status_code == 201
    assert [n.text for n in store.notes(kept)] == [
        "Courier update (found at depot): Found it at Leeds depot, ready to redeliver"]
    assert store.notes(case_a) == []
    assert [e.action for e in store.audit_trail(kept)].count("courier.update") == 1
    assert store.rows("select case_id from courier_updates") == [{"case_id": kept}]


# ----------------------------------------------------------------------------- finding 10
def test_a_deeply_nested_body_is_a_one_line_400(store: Store, key: str) -> None:  # noqa: F811
    config = courier_config(customer_message="off")
    case_a, _ = two_shipments(store, config)
    url, _ = make_link(config, case_a, "1Z999AA10123456784")
    with CourierPageServer(store, config, port=0) as server:
        deep = httpx.post(server.url + path_of(url) + "/updates", content=b"[" * 5000,
                          headers={"Content-Type": "application/json"})
    assert deep.status_code == 400 and deep.headers["content-type"] == "application/json"
    assert "\n" not in deep.json()["error"] and "update_id" in deep.json()["error"]
    assert store.rows("select * from courier_updates") == [] and store.notes(case_a) == []

