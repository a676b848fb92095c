"""The inbox in headless Chromium at 1366x768, the lead's usual screen (audit of the inbox, findings 4 and 7):
the SLA column shows its words whole ("answer overdue 2d5h"), and the counts beside the filters follow
the list when a colleague assigns and resolves cases while the inbox stays open (the 5-second live
fragment writes them into their places above it). One Chromium session; a screenshot goes to
``test-artifacts/e2e/inbox_audit_1366.png``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.test_e2e_browser import ARTIFACTS, chromium_or_skip, launch_chromium, login, serve_console, wait_idle
from tests.test_inbox_audit import OPEN, _shop

pytestmark = [pytest.mark.e2e]

#: The longest words a row's SLA cell can hold (console/inbox.py short_sla), and the audit's own.
LONGEST_SLA = ("resolve overdue 23h59m", "answer overdue 23h59m", "answer overdue 2d5h", "waiting on customer")


def test_sla_words_fit_and_counts_follow_the_live_list_at_1366(tmp_path: Path) -> None:
    chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    from console.inbox import ROW_COLUMNS
    from doorstep.models import Case, utcnow
    from doorstep.store import Store

    db = tmp_path / "inbox.db"
    store = Store(str(db))
    _shop(store)
    now = utcnow()
    overdue = store.insert_case(Case(status="new", channel="x", author_handle="late1", brand="Larkspur Home",
                                     priority=99.5, opened_at=now - timedelta(days=3), last_activity_at=now,
                                     first_response_due=now - timedelta(days=2, hours=5, minutes=3),
                                     resolution_due=now + timedelta(days=1), mention_count=0))
    store.close()
    total = OPEN + 1
    env = {"DOORSTEP_DB": str(db), "DOORSTEP_CONFIG": str(Path(__file__).resolve().parent.parent / "demo" / "doorstep.toml")}
    with serve_console(tmp_path, env) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": 1366, "height": 768}).new_page()
            login(page, url, "lee")
            main = page.locator("[data-testid=stMain]")
            expect(main).to_contain_text(f"{total}: Larkspur Home {total}")
            # 7: the SLA words, in the table's own font, fit the SLA column (less its cell padding)
            grid = page.locator("[data-testid=stDataFrame]")
            grid.scroll_into_view_if_needed()
            wait_idle(page)
            widths = page.evaluate(
                """(words) => { const font = getComputedStyle(document.querySelector('[data-testid=stDataFrame]'));
                   const c = document.createElement('canvas').getContext('2d');
                   c.font = `400 14px ${font.fontFamily}`;
                   return words.map(w => c.measureText(w).width); }""", list(LONGEST_SLA))
            assert max(widths) <= ROW_COLUMNS["SLA"]["width"] - 2 * 8, dict(zip(LONGEST_SLA, widths))
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "inbox_audit_1366.png"))
            # 4: a colleague assigns one case and resolves another; the captions follow without a click
            store = Store(str(db))
            try:
                first = store.get_case(overdue)
                store.update_case(overdue, first.version, "sam", status="resolved")  # type: ignore[union-attr]
                taken = store.get_case(5)
                store.update_case(5, taken.version, "sam", assignee="sam")  # type: ignore[union-attr]
            finally:
                store.close()
            expect(main).to_contain_text(f"{total - 1}: Larkspur Home {total - 1}", timeout=20_000)
            expect(main).to_contain_text(f"{total - 1} case(s)")
            assert f"{total}: Larkspur Home" not in main.inner_text()
        finally:
            browser.close()
