"""Take the README's console screenshots from a running demo, as a newcomer sees it.

    make demo                                   # in one terminal
    .venv/bin/python demo/screenshots.py        # in another: writes docs/screenshots/*.png

Logs in as ``lead`` (password ``$DOORSTEP_DEMO_PASSWORD`` or ``doorstep-demo``) in headless
Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright; the ``dev`` extra) and captures
the inbox, the inbox's top case, the dashboard and the Sent mail page. Look at the pictures before committing them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "docs" / "screenshots"


def _idle(page: Any) -> None:
    page.wait_for_timeout(400)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=30000)
    page.wait_for_timeout(600)


def _shot(page: Any, name: str, out: Path, max_height: int = 2400) -> Path:
    _idle(page)
    size = page.viewport_size
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('section, [data-testid=\"stMain\"]')]"
                           ".map(e => e.scrollHeight), document.body.scrollHeight)")
    page.set_viewport_size({"width": size["width"], "height": min(max(height, size["height"]), max_height)})
    page.wait_for_timeout(600)
    path = out / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    print(f"wrote {path}", file=sys.stderr)
    return path


def top_case(db_path: str | Path) -> int:
    """The inbox's first case (highest priority), as the lead sees it on opening the console."""
    sys.path.insert(0, str(REPO))
    from doorstep.store import InboxQuery, Store

    store = Store(db_path)
    try:
        cases = store.inbox(InboxQuery(limit=1))
        if not cases:
            raise SystemExit(f"{db_path}: no open case; is the demo running?")
        return cases[0].id
    finally:
        store.close()


def take(url: str, out: Path, case_id: int, username: str = "lead", chromium: str = "/usr/bin/chromium") -> list[Path]:
    from playwright.sync_api import sync_playwright

    password = os.environ.get("DOORSTEP_DEMO_PASSWORD", "doorstep-demo")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(url)
        page.get_by_label("Username", exact=True).fill(username)
        page.get_by_label("Password", exact=True).fill(password)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("heading", name="Inbox").wait_for(timeout=60000)
        # The login cookie is HttpOnly (scripts cannot read it): wait until the browser holds it,
        # after the round trip through /auth/session, then for the inbox drawn again.
        deadline = time.monotonic() + 60
        while not any(c["name"] == "doorstep_session" for c in page.context.cookies()):
            if time.monotonic() > deadline:
                raise SystemExit("no login cookie after 60 s: is the console behind a proxy that drops it?")
            page.wait_for_timeout(250)
        page.get_by_role("heading", name="Inbox").wait_for(timeout=60000)
        _idle(page)
        paths.append(_shot(page, "inbox", out))

        page.get_by_role("link", name="Case").click()
        _idle(page)
        box = page.get_by_label("Case number")
        box.fill(str(case_id))
        box.press("Enter")
        page.get_by_role("heading", name=f"Case #{case_id}").wait_for(timeout=30000)
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        paths.append(_shot(page, "case", out))

        page.get_by_role("link", name="Dashboard").click()
        page.get_by_role("heading", name="Dashboard").wait_for()
        page.locator("[data-testid=\"stVegaLiteChart\"]").first.wait_for(timeout=30000)
        paths.append(_shot(page, "dashboard", out))

        if page.get_by_role("link", name="Sent mail").count():
            page.get_by_role("link", name="Sent mail").click()
            page.get_by_role("heading", name="Sent mail (demo)").wait_for()
            paths.append(_shot(page, "sent-mail", out, max_height=1400))
        browser.close()
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="http://localhost:8501")
    parser.add_argument("--out", default=str(SHOTS))
    parser.add_argument("--user", default="lead")
    parser.add_argument("--db", default=os.environ.get("DOORSTEP_DB", str(REPO / "doorstep-demo.db")),
                        help="the running demo's database, to find the top case (default ./doorstep-demo.db)")
    parser.add_argument("--case", type=int, default=None, help="case to show (default: the inbox's top case)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    take(args.url, Path(args.out), args.case or top_case(args.db), args.user)
    print(f"done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
