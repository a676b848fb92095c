"""A shared case link (``/case?id=N``) opened while logged out shows that case after the login
(issue 17: the case URL survives reload, the back button and the login). The console is started
by the browser test's own fixture (``tests/test_e2e_browser.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_e2e_browser import _needs_chromium, launch_chromium, wait_idle, world  # noqa: F401 - fixtures
from tests.test_e2e_browser import PASSWORD

pytestmark = [pytest.mark.e2e]


def test_a_shared_case_link_opens_that_case_after_the_login(world: dict[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    case_id = world["case_id"]
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{world['url']}/case?id={case_id}")
            page.get_by_label("Username", exact=True).fill("ann")
            page.get_by_label("Password", exact=True).fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            for _ in range(100):  # the cookie route reloads the page once
                if any(c["name"] == "doorstep_session" for c in page.context.cookies()):
                    break
                page.wait_for_timeout(200)
            expect(page.get_by_role("heading", name=f"Case #{case_id}")).to_be_visible(timeout=30_000)
            wait_idle(page)
            assert page.url.endswith(f"/case?id={case_id}"), page.url
            page.screenshot(path="test-artifacts/case-link-after-login.png")
        finally:
            browser.close()
