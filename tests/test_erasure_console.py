"""The console's "Erase this person's data" (case page, admins only) and the pages after an erasure,
driven through Streamlit's AppTest on SQLite and PostgreSQL (the ``store`` fixture's ``db_url``).

The shop is tests/test_erasure.py's: Jane (a customer), Bob, and Kit, who only ever posted.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from streamlit.testing.v1 import AppTest

from console.auth import add_user
from console.timeline import sentence
from doorstep.erasure import MARKER
from doorstep.models import AuditEvent
from doorstep.store import Store
from tests.conftest import console_store, run_page, texts
from test_erasure import KIT, PASSWORD, _case_of, _message, _text, leftovers, poster, shop  # noqa: F401 - fixtures


@pytest.fixture
def console(poster: Store, db_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The shop where the console's pages open it; ada is an admin, lee a lead, ari an agent (ann: admin)."""
    for username, role in (("ada", "admin"), ("lee", "lead"), ("ari", "agent")):
        add_user(poster, username, PASSWORD, role=role, rounds=4)
    return console_store(db_url, request, monkeypatch)


def _case_page(store: Store, username: str, case_id: int, opened: bool = True) -> AppTest:
    at = AppTest.from_string("from console import case_view\ncase_view.render()\n", default_timeout=30)
    from tests.conftest import sign_in

    sign_in(at, store, username)
    at.session_state["case_id"] = case_id
    if opened:
        at.session_state[f"erase_open_{case_id}"] = True  # "Erase this person's data" opened
    at.run()
    assert not at.exception, at.exception
    return at


def _erase(at: AppTest, case_id: int, typed: str) -> AppTest:
    at.text_input(key=f"erase_confirm_{case_id}").input(typed)
    at.button(key=f"FormSubmitter:erase_{case_id}-Erase").click().run()
    assert not at.exception, at.exception
    return at


def test_an_admin_erases_a_person_who_only_posted_from_the_case_page(console: Store) -> None:
    kit = _case_of(console, "k-1")
    at = _case_page(console, "ada", kit)
    assert ("X author with no customer record: would erase 4 posts, 3 messages (2 cancelled), 2 cases, 1 note, "
            "0 answers; 0 orders kept") in texts(at)
    assert [t.label for t in at.text_input if t.key == f"erase_confirm_{kit}"] == [
        "Type the handle KitVale_X to confirm"]
    _erase(at, kit, "KitVale")  # not the handle: nothing happens
    assert "Nothing erased: type KitVale_X to confirm." in texts(at)
    assert "zorbleflute" in _text(console, "k-1")
    _erase(at, kit, "@kitvale_x")
    assert leftovers(console, KIT) == []
    shown = texts(at)
    assert "X author with no customer record: personal data erased (4 posts, 3 messages (2 cancelled)" in shown
    assert MARKER in shown and "zorbleflute" not in shown.lower()
    assert "Personal data erased at the customer's request by ada" in shown  # the case's timeline
    assert f"case {kit} has no customer or author left to erase" in shown
    assert console.rows("select actor from audit_events where action = 'customer.erase' and case_id is null") == [
        {"actor": "ada"}]


def test_an_admin_erases_a_customer_by_typing_the_customer_id(console: Store) -> None:
    jane = _case_of(console, "x-1")
    at = _case_page(console, "ada", jane)
    assert ("customer c-17: would erase 5 posts, 4 messages (3 cancelled), 3 cases, 1 note, 1 answer; "
            "1 order kept") in texts(at)
    _erase(at, jane, "c-17")
    assert console.get_customer("c-17") is None and _text(console, "x-1") == MARKER
    assert "customer c-17: personal data erased" in texts(at)


@pytest.mark.parametrize("username", ["ari", "lee"])
def test_only_an_admin_sees_the_erasure(console: Store, username: str) -> None:
    at = _case_page(console, username, _case_of(console, "k-1"))
    assert not [t for t in at.text_input if t.key.startswith("erase_confirm_")]
    assert "Erase this person's data" not in [e.label for e in at.expander]
    admin = _case_page(console, "ada", _case_of(console, "k-1"), opened=False)
    assert "Erase this person's data" in [e.label for e in admin.expander]


def test_the_pages_render_after_an_erasure(console: Store) -> None:
    """Erased posts and cases have no author handle or name: the inbox and every case page still draw."""
    from doorstep.erasure import erase_customer, find_person

    erase_customer(console, find_person(console, handle="@kitvale_x"), "ann")
    erase_customer(console, "c-17", "ann")
    inbox = run_page("inbox", console, "ari")
    assert not inbox.exception, inbox.exception
    for external_id in ("k-1", "k-3", "x-1", "sms-1", "mail-1", "x-9"):
        at = _case_page(console, "ari", _case_of(console, external_id), opened=False)
        shown = texts(at)
        assert "Personal data erased at the customer's request by ann" in shown or external_id == "x-9"
        assert not re.search(r"@\W?None\b", shown), external_id  # an erased post's author is no "@None"
    # A case whose every post was erased offers no composer that says "@?" and asks for an address (browser check).
    at = _case_page(console, "ari", _case_of(console, "k-1"), opened=False)
    assert "This person's data was erased at their request: the case cannot be answered." in texts(at)
    assert "@?" not in texts(at)
    assert leftovers(console, KIT) == [] and leftovers(console) == []


def test_retry_on_the_case_page_refuses_a_message_the_erasure_cancelled(console: Store) -> None:
    from doorstep.erasure import erase_customer, find_person

    erase_customer(console, find_person(console, handle="x:@kitvale_x"), "ann")
    message = _message(console, "reply-kit")
    at = _case_page(console, "ari", _case_of(console, "k-1"), opened=False)
    at.button(key=f"retry_{message['id']}").click().run()
    assert (f"message {message['id']} is not queued again: it was cancelled because the customer's personal data "
            "was erased at their request") in texts(at)
    assert _message(console, "reply-kit")["status"] == "cancelled"


def test_the_timeline_says_an_erasure_in_words() -> None:
    event = AuditEvent(id=1, at=datetime(2026, 11, 16, 9, tzinfo=timezone.utc), actor="ann", action="customer.erase",
                       case_id=4, details={"customer_id": None})
    assert sentence(event, {}, str) == "Personal data erased at the customer's request by ann"
