"""The reply box's live count (console/reply_count.py) counts in the browser as the server does.

Left open by the languages audit: on Mastodon and Bluesky (and X with links on) the box sets the browser no
limit, and the page counted the words only as last sent, so an agent saw no count while typing. The browser's
count must be the server's (``responders.channels.weighted_length``, what Queue reply checks), text for text.
"""

from __future__ import annotations

from typing import Any

import pytest

from console.reply_count import COUNT_JS, count_rules
from responders.channels import weighted_length
from tests.test_e2e_browser import _needs_chromium, launch_chromium  # noqa: F401 - fixture

pytestmark = [pytest.mark.e2e]

TEXTS = [
    "Hi Jane, so sorry about the parcel. We have asked Evri to look into it today.",
    "Track it here: https://www.evri.com/track/parcel/H01HYA0012345678/details?lang=en thanks!",
    "see evri.com/track or www.royalmail.com/track-your-item — and larkspur.co.uk/help",
    "@jane@mastodon.social @bob thanks, we're on it",
    "email care@larkspur.example, not @care",
    "👨‍👩‍👧‍👦 🇬🇧 1️⃣ 👍🏽 ❤️ family, flag, keycap, skin tone, heart",
    "您好，我们已经联系快递公司，请稍候。https://larkspur.com/track查看",
    "こんにちは、お荷物の件で大変申し訳ございません。",
    "안녕하세요, 배송 지연에 대해 사과드립니다.",
    "नमस्ते, आपका पार्सल कल पहुँच जाएगा। धन्यवाद",
    "مرحبا، نعتذر عن التأخير في التوصيل",
    "Ćwiczenie: żółć, Zoë, José with a combining accent",
    "a" * 290 + " https://example.com/a/very/long/path/that/counts/as/23",
    "😀" * 120,
    "zero\u200bwidth\u200djoiner and e\u0301\u0301 stacked marks",
]
CHANNELS = ["mastodon", "mastodon_dm", "bluesky", "bluesky_dm", "x"]


def test_the_browser_counts_every_text_as_the_server_does() -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page()
        page.goto("about:blank")
        wrong: list[Any] = []
        for channel in CHANNELS:
            recipient = "jane@mastodon.social" if channel in ("mastodon", "mastodon_dm") else None
            rules = count_rules(channel, 500, channel, recipient)
            counted = page.evaluate("([rules, texts]) => {" + COUNT_JS + " return texts.map((t) => doorstepCount(rules, t)); }",
                                    [rules, TEXTS])
            for text, seen in zip(TEXTS, counted):
                expected = weighted_length(channel, text, recipient=recipient)
                if seen["length"] != expected or seen["bytes"] != len(text.encode()):
                    wrong.append((channel, text[:40], seen, expected))
        browser.close()
    assert not wrong, wrong


def test_a_bluesky_reply_is_counted_as_the_agent_types(tmp_path: Any) -> None:
    """On a Bluesky case the count moves with each word typed, before Queue reply; over the limit it says so."""
    from playwright.sync_api import expect, sync_playwright

    from commands.demo import build_demo
    from console.auth import add_user
    from doorstep.store import Store
    from tests.conftest import KeywordClassifier
    from tests.test_e2e_browser import DEMO_CONFIG, PASSWORD, login, serve_console, wait_idle

    db = tmp_path / "count.db"
    build_demo(str(db), seed=5, customers=20, orders=30, mentions=60, config_path=str(DEMO_CONFIG),
               classifier=KeywordClassifier())
    store = Store(db)
    add_user(store, "ann", PASSWORD, role="agent", name="Ann Agent", rounds=4)
    row = store.db.execute("select id from cases where channel = 'bluesky' and merged_into is null order by id").fetchone()
    store.close()
    assert row, "the demo shop has a Bluesky case"
    with serve_console(tmp_path, {"DOORSTEP_DB": str(db), "DOORSTEP_CONFIG": str(DEMO_CONFIG)}) as url, \
            sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        login(page, url, "ann")
        page.goto(f"{url}/case?id={row[0]}")
        page.get_by_role("heading", name=f"Case #{row[0]}").wait_for()
        wait_idle(page)
        box = page.get_by_label("Reply text")
        box.click()
        page.keyboard.type("Hi 👨‍👩‍👧‍👦 नमस्ते")
        expect(page.locator(".doorstep-count")).to_have_text(
            f"{weighted_length('bluesky', 'Hi 👨‍👩‍👧‍👦 नमस्ते')}/300 graphemes as Bluesky counts them · "
            f"{len('Hi 👨‍👩‍👧‍👦 नमस्ते'.encode())}/3000 bytes")
        box.fill("a" * 301)
        expect(page.locator(".doorstep-count")).to_contain_text("301/300 graphemes as Bluesky counts them")
        expect(page.locator(".doorstep-count")).to_contain_text("too long")
        browser.close()
