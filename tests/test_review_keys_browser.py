"""The review queue's keys in a real browser (headless Chromium + Playwright): they act on the review page only,
never inside a text box, and never take Enter from a focused button or link.

Why (keyboard audit, 2026-12-07): the page's key listener stayed on the tab after the agent left the review page
and swallowed c, s, n, p, digits and Enter everywhere (the inbox search typed as "parcel snc 1290" read "arel  ",
Enter on a focused "Add note" or on the sidebar's "Inbox" link did nothing), and on the review page Enter on a
focused "Skip" confirmed the post instead of skipping it. AppTest runs no JavaScript, so this is the test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KeywordClassifier
from tests.test_e2e_browser import (  # noqa: F401 - _needs_chromium is a fixture (fails under CI=true without chromium)
    DEMO_CONFIG, PASSWORD, _needs_chromium, launch_chromium, login, serve_console, wait_idle,
)

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def console(tmp_path: Path) -> Iterator[dict[str, Any]]:
    from commands.demo import build_demo
    from console.auth import add_user
    from doorstep.store import Store

    db = tmp_path / "review_keys.db"
    build_demo(str(db), seed=5, customers=20, orders=30, mentions=30, config_path=str(DEMO_CONFIG),
               classifier=KeywordClassifier())
    store = Store(db)
    add_user(store, "ann", PASSWORD, role="agent", name="Ann Agent", rounds=4)
    store.close()
    with serve_console(tmp_path, {"DOORSTEP_DB": str(db), "DOORSTEP_CONFIG": str(DEMO_CONFIG)}) as url:
        yield {"url": url, "db": db}


def _corrections(db: Path) -> list[Any]:
    from doorstep.store import Store

    store = Store(db)
    try:
        return store.rows("select mention_id, field, old_value, new_value from label_corrections")
    finally:
        store.close()


def _post_on_screen(page: Any) -> int:
    caption = page.get_by_text(re.compile(r"^post \d+ ·")).first.inner_text()
    return int(re.match(r"post (\d+)", caption).group(1))  # type: ignore[union-attr]


def _open_review(page: Any) -> None:
    page.get_by_role("link", name="Review queue").click()
    page.get_by_role("heading", name="Review queue").wait_for()
    wait_idle(page)
    page.get_by_text(re.compile(r"^post \d+ ·")).first.wait_for()


def _reviewing(p: Any, console: dict[str, Any]) -> tuple[Any, Any]:
    """Chromium with ann logged in on the Review queue, a post shown: (browser, page)."""
    browser = launch_chromium(p)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    login(page, console["url"], "ann")
    _open_review(page)
    return browser, page


def test_letters_reach_text_boxes_after_the_review_page(console: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _reviewing(p, console)
        page.get_by_role("link", name="Inbox").first.click()
        page.get_by_role("heading", name="Inbox").wait_for()
        wait_idle(page)
        # Every letter typed into the inbox's search box arrives (before: "arel  "), and Enter runs the search.
        box = page.get_by_label("Search posts")
        box.click()
        page.keyboard.type("parcel snc 1290", delay=20)
        assert box.input_value() == "parcel snc 1290"
        box.press("Enter")
        wait_idle(page)
        assert box.input_value() == "parcel snc 1290"
        # Back on the review page, the keys still work there.
        _open_review(page)
        first = _post_on_screen(page)
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.keyboard.press("s")
        wait_idle(page)
        page.keyboard.press("Enter")
        wait_idle(page)
        page.get_by_text(re.compile(rf"post {first}: ")).first.wait_for()
        browser.close()
    assert {r["mention_id"] for r in _corrections(console["db"])} == {first}


def test_enter_on_a_focused_link_follows_it(console: dict[str, Any]) -> None:
    """Before, Enter (and Space) on the sidebar's focused "Inbox" link confirmed the post and left the agent on
    /review: a keyboard trap."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _reviewing(p, console)
        page.get_by_role("link", name="Inbox").first.focus()
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="Inbox").wait_for()
        wait_idle(page)
        assert "/review" not in page.url
        browser.close()
    assert _corrections(console["db"]) == []


def test_enter_on_a_focused_skip_skips(console: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _reviewing(p, console)
        first = _post_on_screen(page)
        page.get_by_role("button", name="Skip").focus()
        page.keyboard.press("Enter")
        wait_idle(page)
        page.wait_for_function(
            "(first) => !document.body.innerText.includes('post ' + first + ' ·')", arg=first, timeout=20000)
        assert _corrections(console["db"]) == [], "Enter on a focused Skip confirmed the post"
        # A focused intent button takes Enter as its own click too: the post is not confirmed.
        second = _post_on_screen(page)
        page.locator(".st-key-rv_intent_2 button").focus()
        page.keyboard.press("Enter")
        wait_idle(page)
        assert _post_on_screen(page) == second
        browser.close()
    assert _corrections(console["db"]) == [], "Enter on a focused intent button confirmed the post"


@pytest.mark.parametrize("width", [1366, 1024])
def test_the_chosen_buttons_show_their_words_whole(console: dict[str, Any], width: int) -> None:
    """Left open last stop: at 1366 px "✓ 2 · late delivery (chosen)" read "✓ 2 · late delivery (cho…" on screen
    (the accessible name was whole). The buttons' words wrap instead of being cut."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": width, "height": 768})
        login(page, console["url"], "ann")
        _open_review(page)
        labels = page.locator("[class*='st-key-rv_'] button [data-testid='stMarkdownContainer']")
        assert labels.count() >= 14
        cut = [labels.nth(i).inner_text() for i in range(labels.count())
               if labels.nth(i).evaluate("(e) => e.scrollWidth > e.clientWidth + 1")]
        assert not cut, cut
        assert page.get_by_role("button", name=re.compile(r"\(chosen\)")).count() >= 1
        browser.close()
