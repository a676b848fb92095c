"""The Dashboard's headline read whole at a laptop's width, in headless Chromium.

Left open last stop: at 1024 px with the sidebar open the six headline figures stood in one row and read
"Negative s…", "First respo…", "SLA attain…" and "93 …" (the median first response, its unit cut off)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_e2e_browser import (  # noqa: F401 - fixtures
    _needs_chromium, launch_chromium, login, shot, wait_idle, world,
)

pytestmark = [pytest.mark.e2e]

#: Labels and values of the headline's metrics whose text is wider than their box (cut with "…").
CUT_JS = """() => Array.from(document.querySelectorAll(
    '[data-testid="stMetricLabel"] p, [data-testid="stMetricLabel"] div, [data-testid="stMetricValue"] div'))
  .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)"""


@pytest.mark.parametrize("width", [1024, 1366])
def test_the_headline_figures_are_not_cut(world: dict[str, Any], width: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": width, "height": 768})
        page.set_default_timeout(20000)
        login(page, world["url"], "ann")
        page.get_by_role("link", name="Dashboard").click()
        page.get_by_role("heading", name="Dashboard").wait_for()
        wait_idle(page)
        page.locator('[data-testid="stMetricValue"]').nth(5).wait_for()
        labels = page.locator('[data-testid="stMetricLabel"]').all_inner_texts()
        assert [" ".join(label.split()) for label in labels][:6] == [
            "Mentions", "Complaints", "Negative share", "First response (median)", "SLA attainment", "Resolution rate"]
        shot(page, f"dashboard-headline-{width}")
        assert page.evaluate(CUT_JS) == []
        browser.close()
