"""Select several cases in the inbox and close them as spam, in headless Chromium (audit of a viral day: 500
spam-bot cases took 500 presses of X, one by one).

A lead turns on "Select several", ticks two bots' rows in the table's first column, presses "Close as spam",
reads the confirmation naming them, confirms, and sees them leave the open list; the customer's case between
them stays. The page after closing is saved to ``test-artifacts/e2e/closing_spam.png``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.test_e2e_browser import ARTIFACTS, PASSWORD, chromium_or_skip, launch_chromium, login, serve_console, wait_idle

pytestmark = [pytest.mark.e2e]

#: Case ids (insert order) and their priorities: the list shows them bot1, bot2, the customer, bot3.
BOT1, BOT2, CUSTOMER, BOT3 = 1, 2, 3, 4


def _shop_env(tmp_path: Path) -> dict[str, str]:
    from console.auth import add_user
    from doorstep.models import Case, Mention, utcnow
    from doorstep.store import Store
    from tests.conftest import labels

    db = tmp_path / "spam.db"
    store = Store(str(db))
    add_user(store, "lee", PASSWORD, role="lead", name="Lee", rounds=4)
    now = utcnow()
    for n, (handle, text, priority) in enumerate((
            ("bot_one", "parcel lost? DM me, I recover lost parcel money http://wa.me/1", 90.0),
            ("bot_two", "refund issue? DM me http://wa.me/2", 80.0),
            ("carys93", "my parcel is lost and nobody answers", 70.0),
            ("bot_three", "win a free phone http://spam.example", 60.0)), start=1):
        case_id = store.insert_case(Case(status="new", brand="Larkspur Home", channel="x", author_handle=handle,
                                         priority=priority, opened_at=now - timedelta(minutes=n), last_activity_at=now,
                                         first_response_due=now + timedelta(hours=n), resolution_due=now + timedelta(days=1),
                                         mention_count=1))
        store.insert_mention(Mention(channel="x", external_id=f"p{n}", text=text, created_at=now - timedelta(minutes=n),
                                     author_handle=handle, thread_id=f"p{n}", case_id=case_id,
                                     labels=labels("other", "negative", True)))
        assert case_id == n
    store.close()
    return {"DOORSTEP_DB": str(db),
            "DOORSTEP_CONFIG": str(Path(__file__).resolve().parent.parent / "demo" / "doorstep.toml")}


def _tick(page, row: int) -> None:  # noqa: ANN001
    """Tick row ``row`` (0: the first case) in the table's first column (the grid draws on a canvas: a click at
    the row's place; its header and each row are 35 px tall)."""
    grid = page.locator("[data-testid=stDataFrame]").first
    box = grid.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 14, box["y"] + 35 + 35 * row + 17)
    wait_idle(page)


def test_select_two_cases_close_them_as_spam_and_they_leave_the_open_list(tmp_path: Path) -> None:
    chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    from doorstep.store import Store

    env = _shop_env(tmp_path)
    with serve_console(tmp_path, env) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
            login(page, url, "lee")
            main = page.locator("[data-testid=stMain]")
            expect(main).to_contain_text("4 case(s)")
            page.get_by_text("Select several", exact=True).click()
            wait_idle(page)
            spam = page.get_by_role("button", name="Close as spam")
            expect(spam).to_be_disabled()
            _tick(page, 0)
            _tick(page, 1)
            expect(main).to_contain_text("2 selected")
            spam.click()
            wait_idle(page)
            # (an invisible word joiner after each "@": escape_md keeps a handle from reading as a link)
            expect(main).to_contain_text("Close 2 cases as spam: #1 @\u2060bot_one, #2 @\u2060bot_two?")
            page.get_by_role("button", name="Yes, close 2 as spam").click()
            wait_idle(page)
            expect(main).to_contain_text("2 cases closed as spam.")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "closing_spam.png"), full_page=True)
            page.get_by_text("Select several", exact=True).click()
            wait_idle(page)
            expect(main).to_contain_text("2 case(s)")
            pick = page.get_by_label("Case to open")
            expect(pick).to_be_visible()
        finally:
            browser.close()
    store = Store(env["DOORSTEP_DB"])
    try:
        closed = {i: (store.get_case(i).status, store.get_case(i).closed_as)  # type: ignore[union-attr]
                  for i in (BOT1, BOT2, CUSTOMER, BOT3)}
    finally:
        store.close()
    assert closed == {BOT1: ("resolved", "spam"), BOT2: ("resolved", "spam"), CUSTOMER: ("new", None),
                      BOT3: ("new", None)}


@pytest.mark.parametrize("width", [1024, 1366])
def test_open_case_and_select_several_keep_their_words(tmp_path: Path, width: int) -> None:
    """Browser check: at 1024 px with the sidebar open "Open case" read "O…" and the toggle lost its label (a share
    of the row each); they are as wide as their words now, the case list beside them takes the rest."""
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    env = _shop_env(tmp_path)
    with serve_console(tmp_path, env) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": width, "height": 768}).new_page()
            login(page, url, "lee")
            for key in ("inbox_open", "inbox_select_mode"):
                label = page.locator(f".st-key-{key} [data-testid='stMarkdownContainer']").first
                widths = label.evaluate("(e) => [e.scrollWidth, e.clientWidth, e.getBoundingClientRect().width]")
                assert widths[0] <= widths[1] and widths[2] > 40, (key, widths)
            page.screenshot(path=str(ARTIFACTS / f"inbox_opener_{width}.png"))
        finally:
            browser.close()
