"""The review queue in a real browser (headless Chromium + Playwright): the keyboard alone sets
intent, sentiment and complaint and confirms, and the corrections land in the database.

AppTest cannot run the shortcut component's JavaScript, so this is the test that the keys work.
Screenshots go to ``test-artifacts/e2e/``; the README's ``docs/screenshots/review.png`` is a copy of
its ``review.png`` (looked at before it is committed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KeywordClassifier
from tests.test_e2e_browser import (  # noqa: F401 - _needs_chromium is a fixture (fails under CI=true without chromium)
    DEMO_CONFIG, PASSWORD, _needs_chromium, launch_chromium, login, serve_console, shot, wait_idle,
)

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def console(tmp_path: Path) -> Iterator[dict[str, Any]]:
    from console.auth import add_user
    from commands.demo import build_demo
    from doorstep.store import Store

    db = tmp_path / "review.db"
    build_demo(str(db), seed=5, customers=20, orders=30, mentions=30, config_path=str(DEMO_CONFIG),
               classifier=KeywordClassifier())
    store = Store(db)
    add_user(store, "ann", PASSWORD, role="agent", name="Ann Agent", rounds=4)
    from console.review import review_queue

    first, second = review_queue(store)[:2]
    store.close()
    with serve_console(tmp_path, {"DOORSTEP_DB": str(db), "DOORSTEP_CONFIG": str(DEMO_CONFIG)}) as url:
        yield {"url": url, "db": db, "first": first, "second": second}


def test_review_queue_is_worked_from_the_keyboard(console: dict[str, Any], tmp_path: Path) -> None:
    """Also: the page leaves no deprecation in the console's log. Before, each draw of it printed
    "Please replace `st.components.v1.html` with `st.iframe` ... will be removed after 2026-06-01"
    (streamlit-shortcuts, used then, drew its script with st.components.v1.html) to the terminal running
    `make demo` (issue 18: a fresh clone's demo prints no warning of the project's)."""
    from playwright.sync_api import sync_playwright

    from doorstep.store import Store

    first, second = console["first"], console["second"]
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        login(page, console["url"], "ann")
        page.get_by_role("link", name="Review queue").click()
        page.get_by_role("heading", name="Review queue").wait_for()
        wait_idle(page)
        page.get_by_text(first.text[:40]).first.wait_for()
        shot(page, "review_before")
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        for key in ("2", "s", "c"):  # late_delivery, negative, complaint toggled
            page.keyboard.press(key)
            wait_idle(page)
        page.keyboard.press("Enter")
        wait_idle(page)
        page.get_by_text("correction(s) saved").or_(page.get_by_text("labels confirmed")).first.wait_for()
        shot(page, "review", docs=True)  # after one post: the flash, progress and the next post
        # The next post, from the keyboard too, without touching the mouse or reloading. Before, the keys did
        # nothing after the first Enter: the shortcut listener lived in the script's iframe, which the rerun
        # replaced, and a dead iframe's listener is never called.
        page.get_by_text(second.text[:40]).first.wait_for()
        intent_key, intent = ("0", "other") if second.labels.intent == "praise" else ("9", "praise")
        page.keyboard.press(intent_key)
        wait_idle(page)
        page.keyboard.press("Enter")
        wait_idle(page)
        page.get_by_text(f"post {second.id}: 1 correction(s) saved").wait_for()
        browser.close()
    store = Store(console["db"])
    try:
        rows = store.rows("select mention_id, field, new_value, corrected_by from label_corrections order by id")
    finally:
        store.close()
    assert {(r["field"], r["new_value"]) for r in rows if r["mention_id"] == first.id} == {
        ("intent", "late_delivery"), ("sentiment", "negative"),
        ("complaint", str(not first.labels.complaint))}
    assert {(r["field"], r["new_value"]) for r in rows if r["mention_id"] == second.id} >= {("intent", intent)}
    assert {r["mention_id"] for r in rows} == {first.id, second.id} and {r["corrected_by"] for r in rows} == {"ann"}
    log = (tmp_path / "streamlit.log").read_text(errors="replace")
    assert "components.v1" not in log and "will be removed" not in log and "Please replace" not in log, log[-2000:]
