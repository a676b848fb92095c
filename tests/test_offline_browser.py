"""No request leaves the machine (issue 17): the console's pages, favicon and fonts all come from
its own server. Headless Chromium records every request of the login page and the pages an agent
opens; any host other than 127.0.0.1/localhost fails the test. The console is started by the
browser test's own fixture (``tests/test_e2e_browser.py``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.test_e2e_browser import _needs_chromium, launch_chromium, login, wait_idle, world  # noqa: F401 - fixtures

pytestmark = [pytest.mark.e2e]

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def test_no_request_leaves_the_machine(world: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    requested: list[str] = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("request", lambda request: requested.append(request.url))
            page.goto(world["url"])
            page.get_by_label("Username", exact=True).wait_for()
            wait_idle(page)
            login(page, world["url"], "ann")
            for name in ("Case", "Dashboard", "Reports", "Inbox"):  # every page an agent opens
                page.get_by_role("link", name=name).click()
                wait_idle(page)
            page.wait_for_timeout(1000)  # the favicon and late fonts
            wait_idle(page)
            icon = page.evaluate("() => [...document.querySelectorAll('link[rel~=\"icon\"]')].map(l => l.href)")
        finally:
            browser.close()
    outside = sorted({url for url in requested
                      if urlsplit(url).scheme in ("http", "https", "ws", "wss")
                      and urlsplit(url).hostname not in LOCAL_HOSTS})
    assert requested and not outside, outside
    assert icon and all(urlsplit(h).hostname in LOCAL_HOSTS for h in icon), icon  # a favicon, served here
