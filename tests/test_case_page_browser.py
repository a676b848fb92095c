"""The case page and the live inbox as an agent uses them, in headless Chromium at 1440×900 (issue 17).

- the composer is on screen when a case opens (no scrolling), the counter counts while typing,
  and the first click on "Queue reply" after typing queues the reply, with the answer right
  under the button;
- "Link this order" lands on the first click, again and again, while the presence line ticks;
- an urgent case that arrives while the inbox is open appears by itself, marked new.

Screenshots (viewport only, as the agent sees it) go to ``test-artifacts/e2e/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_e2e_browser import (
    ARTIFACTS, DEMO_CONFIG, _needs_chromium, launch_chromium, linked_order, login, open_case, prepare_db,  # noqa: F401
    serve_console, wait_idle,
)

pytestmark = [pytest.mark.e2e]

VIEWPORT = {"width": 1440, "height": 900}


@pytest.fixture
def console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    db = tmp_path / "case.db"
    facts = prepare_db(db)
    env = {"DOORSTEP_DB": str(db), "DOORSTEP_CONFIG": str(DEMO_CONFIG)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with serve_console(tmp_path, env) as url:
        yield {**facts, "url": url, "db": db, "log": tmp_path / "streamlit.log"}


def logged_in(p: Any, console: dict[str, Any], username: str) -> tuple[Any, Any]:
    """Chromium at 1440×900 (20 s per step), ``username`` logged in to the console: (browser, page)."""
    browser = launch_chromium(p)
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(20000)
    login(page, console["url"], username)
    return browser, page


def viewport_shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    wait_idle(page)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=20000)
    page.screenshot(path=str(path))
    return path


def test_composer_on_screen_live_counter_and_first_click_queues(console: dict[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    case_id = console["case_id"]
    with sync_playwright() as p:
        browser, page = logged_in(p, console, "ann")
        open_case(page, case_id)
        viewport_shot(page, "case-page-1440")
        box = page.get_by_label("Reply text")
        top = box.bounding_box()
        assert top is not None and top["y"] + top["height"] <= VIEWPORT["height"], top  # no scrolling to answer
        words = "So sorry about the wait, we're chasing the courier now."
        box.click()
        page.keyboard.type(words, delay=5)
        # Counted while typing, before the box loses focus.
        expect(page.get_by_text(f"{len(words)}/280", exact=False)).to_be_visible()
        viewport_shot(page, "case-page-typing-1440")
        page.get_by_role("button", name="Queue reply").click()  # once: the blur does not swallow it
        wait_idle(page)
        done = page.get_by_text(re.compile(r"^reply queued \(message"))  # not the resolve box's "1 reply queued"
        expect(done).to_be_visible()
        button = page.get_by_role("button", name="Queue reply").bounding_box()
        said = done.bounding_box()
        assert button is not None and said is not None
        assert abs(said["y"] - button["y"]) < 60 and said["x"] > button["x"], (button, said)  # beside the button
        assert said["y"] + said["height"] <= VIEWPORT["height"], said  # in view, no scrolling
        viewport_shot(page, "case-page-queued-1440")
        browser.close()
    from doorstep.store import Store

    store = Store(console["db"])
    try:
        assert [m.text for m in store.outbound_for_case(case_id)] == [words]
    finally:
        store.close()


def test_link_this_order_lands_every_time_while_presence_ticks(console: dict[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    from doorstep.store import Store

    store = Store(console["db"])
    numbers = [r[0] for r in store.db.execute("select number from orders order by number limit 4").fetchall()]
    store.close()
    case_id = console["fettle_case"]
    with sync_playwright() as p:
        browser, page = logged_in(p, console, "bob")
        open_case(page, case_id)
        for i, number in enumerate(numbers * 2):
            box = page.get_by_label("Order number")
            if not box.is_visible():  # the expander closes when the order section above it changes
                page.get_by_text("Change the linked order").click()
            box.fill(number)
            expect(box).to_have_value(number)
            page.wait_for_timeout(700 * (i % 4))  # at different moments of the presence line's ticks
            page.get_by_role("button", name="Link this order").click()
            wait_idle(page)
            # No retry: a click lost is a failure.
            expect(page.get_by_text(f"case linked to order {number}", exact=False)).to_be_visible()
            assert linked_order(console["db"], case_id) == number, (i, number)
        viewport_shot(page, "case-page-relinked-1440")
        browser.close()


def test_an_urgent_case_appears_in_the_open_inbox_without_a_click(console: dict[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    from doorstep.models import Case, Mention, utcnow
    from doorstep.store import Store
    from tests.conftest import labels

    with sync_playwright() as p:
        browser, page = logged_in(p, console, "ann")
        search = page.get_by_label("Search posts")
        search.fill("half typed")  # not committed: the live list must not disturb it
        store = Store(console["db"])
        now = utcnow()
        case_id = store.insert_case(Case(status="new", priority=900.0, priority_reasons=["50k followers (+500)"],
                                         channel="x", brand="Larkspur Home", author_handle="loud_voice",
                                         opened_at=now, last_activity_at=now, mention_count=1))
        store.insert_mention(Mention(channel="x", external_id="urgent-1", text="@LarkspurHelp my sofa arrived broken!",
                                     created_at=now, author_handle="loud_voice", author_followers=50_000,
                                     case_id=case_id, labels=labels("damaged_or_wrong", "negative", True)))
        store.close()
        # No click: the list redraws itself (every few seconds) and marks the case new.
        expect(page.get_by_text("new case(s) since you looked", exact=False)).to_be_visible(timeout=30000)
        expect(page.get_by_text(f"#{case_id}", exact=False).first).to_be_visible()
        expect(search).to_have_value("half typed")  # the agent's half-typed search is untouched
        viewport_shot(page, "inbox-live-1440")
        browser.close()


def test_an_open_inbox_stops_showing_cases_once_its_login_ended(console: dict[str, Any]) -> None:
    """The live list redraws itself without app.py's login check: a removed agent's open tab got
    each new case (handle, post text) every 5 s until their next click (security audit, 2026-12-06)."""
    from playwright.sync_api import expect, sync_playwright

    from console import auth
    from doorstep.models import Case, Mention, utcnow
    from doorstep.store import Store
    from tests.conftest import labels

    with sync_playwright() as p:
        browser, page = logged_in(p, console, "ann")
        received: list[bytes] = []
        page.on("websocket", lambda ws: ws.on(
            "framereceived", lambda frame: received.append(frame if isinstance(frame, bytes) else frame.encode())))
        expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
        store = Store(console["db"])
        auth.remove_user(store, "ann", actor="cli")  # a system actor: lee is no user here, and only admins remove users
        received.clear()
        now = utcnow()
        case_id = store.insert_case(Case(status="new", priority=900.0, priority_reasons=["50k followers (+500)"],
                                         channel="x", brand="Larkspur Home", author_handle="after_removal",
                                         opened_at=now, last_activity_at=now, mention_count=1))
        store.insert_mention(Mention(channel="x", external_id="after-removal-1", text="my address is 1 Private Road",
                                     created_at=now, author_handle="after_removal", case_id=case_id,
                                     labels=labels("damaged_or_wrong", "negative", True)))
        store.close()
        # No click: the next tick finds the login ended and the whole page turns to the login form.
        expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=30000)
        page.wait_for_timeout(6000)  # a further tick's worth
        assert not [f for f in received if b"after_removal" in f or b"Private Road" in f]
        browser.close()


def test_a_colleagues_change_shows_on_the_open_case_without_a_click(console: dict[str, Any]) -> None:
    """Found by a user check: after agent assigned a case, priya's open page still said "nobody" 12 s
    later; she learnt of it only when her own change was refused."""
    from playwright.sync_api import expect, sync_playwright

    from doorstep.store import Store

    case_id = console["case_id"]
    with sync_playwright() as p:
        browser, page = logged_in(p, console, "ann")
        open_case(page, case_id)
        store = Store(console["db"])
        case = store.get_case(case_id)
        assert case is not None
        store.update_case(case_id, case.version, "bob", assignee="bob")
        store.close()
        # No click: the presence line's tick says who changed what.
        expect(page.get_by_text("bob changed the assignee since this page was drawn", exact=False)).to_be_visible(
            timeout=30000)
        page.get_by_role("button", name="Show their changes").click()
        wait_idle(page)
        expect(page.get_by_text("bob changed the assignee since you opened this case", exact=False)).to_be_visible()
        expect(page.get_by_text("since this page was drawn", exact=False)).to_have_count(0)
        viewport_shot(page, "case-page-colleague-changed-1440")
        browser.close()


def test_a_colleague_typing_a_reply_shows_as_replying_without_a_click(console: dict[str, Any]) -> None:
    """Issue 13, failure 2: presence said a colleague was drafting only after a rerun. The reply box
    is in a form, so the words reach the server only with "Queue reply": bob typing (no click, no
    template) left ann's page saying "bob is viewing", and ann's reply was not held back."""
    from playwright.sync_api import expect, sync_playwright

    from doorstep.config import load_config
    from doorstep.store import Store
    from responders.outbox import AlreadyAnswered, latest_message_id, queue_reply

    case_id = console["case_id"]
    with sync_playwright() as p:
        browser, ann = logged_in(p, console, "ann")
        bob = browser.new_context(viewport=VIEWPORT).new_page()
        bob.set_default_timeout(20000)
        login(bob, console["url"], "bob")
        open_case(bob, case_id)
        open_case(ann, case_id)
        expect(ann.get_by_text("bob is viewing", exact=False)).to_be_visible(timeout=30000)
        box = bob.get_by_label("Reply text")
        box.click()
        box.press_sequentially("So sorry about this, looking now", delay=20)
        # No click: within a few presence ticks ann's page says bob is replying.
        expect(ann.get_by_text("bob is replying", exact=False)).to_be_visible(timeout=30000)
        viewport_shot(ann, "case-page-colleague-replying-1440")
        store = Store(console["db"])
        try:  # and ann's own reply waits for him (the one-answer rule's drafting check)
            with pytest.raises(AlreadyAnswered, match="bob is replying"):
                queue_reply(store, load_config(DEMO_CONFIG), case_id, "We're on it", "ann",
                            seen_up_to=latest_message_id(store, case_id))
        finally:
            store.close()
        box.fill("")  # he gives up: the box is empty again
        expect(ann.get_by_text("bob is viewing", exact=False)).to_be_visible(timeout=30000)
        expect(bob.get_by_label("Reply text")).to_have_value("")
        browser.close()


def test_the_inbox_table_fits_a_1366_px_screen_without_scrolling_sideways(console: dict[str, Any]) -> None:
    """A user check (2026-12-06): at 1366 px the table's last column ("assignee") was cut off; the grid scrolled
    15 px sideways although the widths' sum had been checked against an estimate of the page's padding."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.set_default_timeout(20000)
        login(page, console["url"], "ann")
        page.locator('[data-testid="stDataFrame"] .dvn-scroller').wait_for()
        wait_idle(page)
        wide, shown = page.evaluate("""() => {
            const s = document.querySelector('[data-testid="stDataFrame"] .dvn-scroller');
            return [s.scrollWidth, s.clientWidth]; }""")
        viewport_shot(page, "inbox-1366")
        browser.close()
    assert wide <= shown, f"the inbox table is {wide} px wide in a {shown} px frame"


def test_browser_tests_fail_rather_than_skip_in_ci_without_chromium(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_e2e_browser import chromium_or_skip

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        chromium_or_skip(Path("/nonexistent/chromium"))
    assert os.environ["CI"] == "true"


def test_keys_move_between_cases_and_leave_typing_alone(console: dict[str, Any]) -> None:
    """J / K walk the inbox's order from the case page; the same letters typed in the reply box are
    just letters (no escalation, no jump)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser, page = logged_in(p, console, "ann")
        page.get_by_role("button", name="Open case").click()  # the inbox's first case
        page.get_by_role("heading", name="Case #", exact=False).wait_for()
        wait_idle(page)
        first = page.get_by_role("heading", name="Case #", exact=False).inner_text()
        page.locator("body").press("j")
        wait_idle(page)
        expect(page.get_by_role("heading", name="Case #", exact=False)).not_to_have_text(first)
        second = page.get_by_role("heading", name="Case #", exact=False).inner_text()
        # The new case's page replaces the old one element by element (each case keys its own
        # composer): wait until the old composer is gone, then type into the one that is left.
        wait_idle(page)
        expect(page.get_by_label("Reply text")).to_have_count(1)
        box = page.get_by_label("Reply text")
        box.click()
        page.keyboard.type("jake e k", delay=20)
        expect(box).to_have_value("jake e k")
        expect(page.get_by_role("heading", name="Case #", exact=False)).to_have_text(second)
        expect(page.get_by_text(re.compile(r"^escalation queued to"))).to_have_count(0)
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.locator("body").press("k")  # the box holds words not queued: K says so and stays
        wait_idle(page)
        expect(page.get_by_text("press K again", exact=False)).to_be_visible()
        expect(page.get_by_role("heading", name="Case #", exact=False)).to_have_text(second)
        page.locator("body").press("k")  # again: the words are left, as asked
        wait_idle(page)
        expect(page.get_by_role("heading", name="Case #", exact=False)).to_have_text(first)
        viewport_shot(page, "case-page-keys-1440")
        browser.close()


# ---------------------------------------------- what the agent typed survives a refusal (uxcheck)
def test_a_refused_escalation_keeps_the_note_and_a_queued_one_clears_it(console: dict[str, Any]) -> None:
    """Before: the escalation form cleared itself on every submit, so "Not escalated: ..." came with
    the agent's note for the courier wiped; only a queued escalation may empty the box."""
    from playwright.sync_api import expect, sync_playwright

    note = "Third failed attempt; please rebook for Saturday."
    with sync_playwright() as p:
        browser, page = logged_in(p, console, "ann")
        open_case(page, console["xss_case"])  # no courier known: escalating to the courier is refused
        box = page.get_by_label("Note for them")
        box.fill(note)
        page.get_by_role("button", name="Escalate").click()
        wait_idle(page)
        expect(page.get_by_text("Not escalated", exact=False)).to_be_visible()
        expect(page.get_by_label("Note for them")).to_have_value(note)
        viewport_shot(page, "case-page-escalation-refused-1440")
        open_case(page, console["case_id"])  # a confirmed order and its courier: this one is queued
        page.get_by_label("Note for them").fill(note)
        page.get_by_role("button", name="Escalate").click()
        wait_idle(page)
        expect(page.get_by_text(re.compile(r"^escalation queued to"))).to_be_visible()
        expect(page.get_by_label("Note for them")).to_have_value("")
        browser.close()


def test_a_refused_new_user_keeps_what_the_admin_typed(console: dict[str, Any]) -> None:
    """Before: "Add a user" cleared every box on submit, so "user 'bob' already exists" left the admin
    to type the name, e-mail and password again."""
    from playwright.sync_api import expect, sync_playwright

    from console.auth import add_user
    from doorstep.store import Store
    from tests.test_e2e_browser import PASSWORD

    store = Store(console["db"])
    try:
        add_user(store, "ada", PASSWORD, role="admin", name="Ada Admin", rounds=4)
    finally:
        store.close()
    with sync_playwright() as p:
        browser, page = logged_in(p, console, "ada")
        page.get_by_role("link", name="Settings").click()
        wait_idle(page)
        page.get_by_role("tab", name="Users").click()
        form = page.get_by_test_id("stForm").filter(has=page.get_by_text("Add a user"))
        form.get_by_label("Username", exact=True).fill("bob")
        form.get_by_label("Name", exact=True).fill("Bob Builder")
        form.get_by_label("E-mail (for single sign-on; optional)").fill("bob.b@example.com")
        form.get_by_role("button", name="Add user").click()
        wait_idle(page)
        expect(page.get_by_text("already exists", exact=False)).to_be_visible()
        expect(form.get_by_label("Name", exact=True)).to_have_value("Bob Builder")
        expect(form.get_by_label("E-mail (for single sign-on; optional)")).to_have_value("bob.b@example.com")
        form.get_by_label("Username", exact=True).fill("bobb")
        form.get_by_role("button", name="Add user").click()
        wait_idle(page)
        expect(page.get_by_text("added bobb", exact=False)).to_be_visible()
        expect(form.get_by_label("Username", exact=True)).to_have_value("")
        browser.close()


def test_logging_in_and_out_leaves_no_deprecation_warning_in_the_consoles_log(console: dict[str, Any]) -> None:
    """Before: every login and logout printed "`st.components.v1.html` will be removed after 2026-06-01.
    Please replace `st.components.v1.html` with `st.iframe`" to the terminal running the console
    (28 times in a short demo session), a removal date already past."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = logged_in(p, console, "ann")  # through /auth/session: the cookie is set, the tab comes back
        page.get_by_role("button", name="Log out").click()
        page.get_by_label("Username", exact=True).wait_for()
        browser.close()
    log = console["log"].read_text(errors="replace")
    assert "components.v1.html" not in log and "will be removed" not in log, log[-2000:]
