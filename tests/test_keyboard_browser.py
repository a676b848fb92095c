"""A case worked with the keyboard alone, in headless Chromium (issue 17: "the e2e test works a case by keyboard only").

After logging in, no mouse: Enter opens the inbox's chosen case; on the case page A assigns it to
me, T fills the suggested template, Q queues the reply, E escalates, S snoozes and X resolves and
moves to the next case. Each key's effect is checked where it lands: the store, the X emulator and
the mail sink.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_e2e_browser import (  # noqa: F401 - fixtures
    _needs_chromium, launch_chromium, login, send_outbox, shot, wait_idle, world,
)

pytestmark = [pytest.mark.e2e]


def _case(db: Any, case_id: int) -> Any:
    from doorstep.store import Store

    store = Store(db)
    try:
        return store.get_case(case_id)
    finally:
        store.close()


def _kinds(db: Any, case_id: int) -> list[str]:
    from doorstep.store import Store

    store = Store(db)
    try:
        return [r[0] for r in store.db.execute("select kind from outbound_messages where case_id = ?", [case_id])]
    finally:
        store.close()


def _ready(page: Any, button: str) -> None:
    """A key works once its button is drawn and live (not a stale copy from the previous run)."""
    from playwright.sync_api import expect

    wait_idle(page)
    expect(page.get_by_role("button", name=button, exact=False).first).to_be_enabled()
    page.locator("body").focus()


def _press(page: Any, key: str, button: str, done: Any, what: str) -> None:
    """Press ``key`` once its button is live, and wait for its effect in the store.

    A key pressed while Streamlit is still swapping the page's elements can be lost (seen in two
    of three full-suite runs on a loaded machine, never alone): the key is pressed once more then,
    and a second loss fails the test. Known limit, in the README's keys paragraph.
    """
    for attempt in (1, 2):
        _ready(page, button)
        page.locator("body").press(key)
        wait_idle(page)
        try:
            _wait_for(done, what, seconds=6.0)
            return
        except AssertionError:
            if attempt == 2:
                raise


def _wait_for(check: Any, what: str, seconds: float = 10.0) -> None:
    """The store is where a key's effect lands; the page's note of it may be redrawn away by a live tick."""
    import time

    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not done: {what}"
        time.sleep(0.2)


#: Words an agent typed and did not queue.
UNQUEUED = "Hi, so sorry, your refund is on its way."


def _type_unqueued(page: Any) -> None:
    """Type a reply, do not queue it, and leave the box (the browser tells the page it holds words: checked at
    once on input, and every 2 s)."""
    page.get_by_label("Reply text").click()
    page.keyboard.type(UNQUEUED)
    page.wait_for_timeout(2500)
    page.locator("body").evaluate("b => document.activeElement.blur()")
    wait_idle(page)


def _on_case(p: Any, world: dict[str, Any], viewport: tuple[int, int] = (1366, 768)) -> tuple[Any, Any]:
    """Chromium with ann logged in on the fixture's case page: (browser, page)."""
    browser = launch_chromium(p)
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.set_default_timeout(20000)
    login(page, world["url"], "ann")
    page.goto(f"{world['url']}/case?id={world['case_id']}")
    page.get_by_role("heading", name=f"Case #{world['case_id']}").wait_for()
    wait_idle(page)
    return browser, page


def test_an_agent_works_a_case_by_keyboard_only(world: dict[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    case_id = world["case_id"]
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(20000)
        login(page, world["url"], "ann")

        # Enter on the inbox opens the chosen case (the queue's first unless another is picked).
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="Case #", exact=False).wait_for()
        wait_idle(page)
        expect(page.get_by_text("Keys (outside a text box)", exact=False)).to_be_visible()

        # The fixture's case, by its shared address (typed, as a link is), then keys only.
        page.goto(f"{world['url']}/case?id={case_id}")
        page.get_by_role("heading", name=f"Case #{case_id}").wait_for()
        wait_idle(page)
        _press(page, "a", "Assign to me", lambda: _case(world["db"], case_id).assignee == "ann", "A assigned the case to ann")

        _ready(page, "Fill template")
        page.locator("body").press("t")
        wait_idle(page)
        expect(page.get_by_label("Reply text")).to_have_value(world["reply"])
        _press(page, "q", "Queue reply", lambda: _kinds(world["db"], case_id).count("reply") == 1, "Q queued the reply")
        send_outbox(world["db"])
        assert [post["text"] for post in world["emulator"].posted] == [world["reply"]]

        _press(page, "e", "Escalate", lambda: "escalation" in _kinds(world["db"], case_id), "E queued the escalation")
        send_outbox(world["db"])
        assert world["smtp"].messages, "the escalation e-mail reached the mail server"

        _press(page, "s", "Snooze", lambda: _case(world["db"], case_id).snoozed_until is not None, "S snoozed the case")

        _press(page, "x", "Resolve and go to the next case", lambda: _case(world["db"], case_id).status == "resolved", "X resolved the case")
        # ...and the page moved on to the next case of the queue (or stayed, if this was the last).
        heading = page.get_by_role("heading", name="Case #", exact=False).inner_text()
        shot(page, "keyboard-only-after-resolve")
        assert heading != f"Case #{case_id}" or "resolved" in page.content()
        browser.close()


def test_ctrl_enter_in_the_reply_box_queues_the_reply(world: dict[str, Any]) -> None:
    """Keyboard audit: the page and README say "Q or Ctrl+Enter queue the reply", but Ctrl+Enter in the box did
    nothing (the form was built with ``enter_to_submit=False``, which in Streamlit also turns off a text area's
    Ctrl+Enter); an agent who believed it sent pressed X and resolved a case with no reply."""
    from playwright.sync_api import sync_playwright

    case_id = world["case_id"]
    with sync_playwright() as p:
        browser, page = _on_case(p, world, (1440, 900))
        box = page.get_by_label("Reply text")
        box.click()
        page.keyboard.type("Sorry about this, checking with the courier now.")
        box.press("Control+Enter")
        wait_idle(page)
        _wait_for(lambda: _kinds(world["db"], case_id).count("reply") == 1, "Ctrl+Enter queued the reply")
        browser.close()


def test_the_next_case_after_x_opens_at_its_top(world: dict[str, Any]) -> None:
    """Keyboard audit: after scrolling down to add a note and pressing X, the next case opened scrolled to the bottom
    (Streamlit keeps the scroll position), its header, composer and the "resolved" confirmation off screen."""
    from playwright.sync_api import sync_playwright

    case_id = world["case_id"]
    scrolled = "() => document.querySelector('[data-testid=stMain]').scrollTop"
    with sync_playwright() as p:
        browser, page = _on_case(p, world)
        page.evaluate("() => { const m = document.querySelector('[data-testid=stMain]'); m.scrollTop = m.scrollHeight; }")
        assert page.evaluate(scrolled) > 300
        _press(page, "x", "Resolve and go to the next case", lambda: _case(world["db"], case_id).status == "resolved",
               "X resolved the case")
        page.wait_for_function(f"() => !document.body.innerText.includes('Case #{case_id}\\n')", timeout=15000)
        wait_idle(page)
        heading = page.get_by_role("heading", name="Case #", exact=False).first
        assert heading.inner_text() != f"Case #{case_id}"
        page.wait_for_function(f"() => ({scrolled})() < 50", timeout=10000)
        browser.close()


def test_a_case_number_typed_in_the_inbox_opens_on_enter(world: dict[str, Any]) -> None:
    """Keyboard audit: "…or any case number" said Enter opens it, but a number typed and Enter pressed in the box
    left the agent on the inbox: they had to Tab to "Open case"."""
    from playwright.sync_api import sync_playwright

    case_id = world["case_id"]
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.set_default_timeout(20000)
        login(page, world["url"], "ann")
        wait_idle(page)
        box = page.get_by_label("…or any case number")
        box.focus()
        page.keyboard.type(str(case_id))
        page.keyboard.press("Enter")
        page.get_by_role("heading", name=f"Case #{case_id}").wait_for(timeout=15000)
        browser.close()


_CONTRAST = """(el) => {
  const parse = (c) => c.match(/[\\d.]+/g).map(Number);
  let [r, g, b, a] = parse(getComputedStyle(el).color); a = a === undefined ? 1 : a;
  let o = 1; for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity);
  const alpha = a * o, mix = (c) => c * alpha + 255 * (1 - alpha);
  const lum = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
  const L = 0.2126 * lum(mix(r)) + 0.7152 * lum(mix(g)) + 0.0722 * lum(mix(b));
  return 1.05 / (L + 0.05);
}"""


def test_small_print_is_readable(world: dict[str, Any]) -> None:
    """Accessibility audit: captions (SLA due times, priority reasons, the whole timeline) were drawn at 60 % of the
    text colour, 3.9:1 on white, under WCAG AA's 4.5:1 for text of their size."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _on_case(p, world)
        captions = page.locator("[data-testid='stCaptionContainer']")
        assert captions.count() > 3
        ratios = [captions.nth(i).evaluate(_CONTRAST) for i in range(min(captions.count(), 12))]
        assert min(ratios) >= 4.5, ratios
        hints = page.locator("button kbd")  # "Q" on the red Queue reply button: 2.8:1 at Streamlit's opacity
        assert hints.count() >= 3
        assert {hints.nth(i).evaluate("(e) => getComputedStyle(e).opacity") for i in range(hints.count())} == {"1"}
        browser.close()


def test_the_page_scripts_take_no_room(world: dict[str, Any]) -> None:
    """Security audit of today's changes, finding 5: the frame of the case page's scroll-to-top script (and the login
    and review-keys scripts) was 150 px tall, a blank band that pushed the composer down."""
    from playwright.sync_api import sync_playwright

    from console.widgets import SCRIPT_FRAME

    with sync_playwright() as p:
        browser, page = _on_case(p, world)
        frames = page.locator(f"iframe[title='{SCRIPT_FRAME}']")
        assert frames.count() >= 1  # the script is there...
        for i in range(frames.count()):
            assert frames.nth(i).bounding_box() is None  # ...and takes no room
        heading = page.get_by_role("heading", name=f"Case #{world['case_id']}").bounding_box()
        # The header's Status figure (under CI's load, the "Status" first found was the Actions box's, 1,400 px down:
        # the header's was not drawn yet), waited for: it is what the script's frame must not push down.
        label = page.locator('[data-testid="stMetricLabel"]', has_text="Status").first
        label.wait_for()
        status = label.bounding_box()
        assert heading and status and status["y"] - heading["y"] < 140, (heading, status)
        browser.close()


def test_x_does_not_resolve_past_a_reply_typed_and_not_queued(world: dict[str, Any]) -> None:
    """Browser check of today's changes: an agent typed a reply, clicked elsewhere and pressed X; the case was
    resolved, the next one opened, and the words were lost with no reply queued (the words of the box's form reach
    the server only with Queue reply). X now says the box holds words not queued, and resolves nothing."""
    from playwright.sync_api import expect, sync_playwright

    case_id = world["case_id"]
    with sync_playwright() as p:
        browser, page = _on_case(p, world)
        _type_unqueued(page)
        _ready(page, "Resolve and go to the next case")
        page.locator("body").press("x")
        wait_idle(page)
        expect(page.get_by_text("your reply box holds words that are not queued", exact=False)).to_be_visible()
        assert _case(world["db"], case_id).status != "resolved"
        assert page.get_by_role("heading", name=f"Case #{case_id}").is_visible()
        browser.close()


def test_x_resolves_once_a_filled_template_is_cleared_in_the_box(world: dict[str, Any]) -> None:
    """Left open last stop: the server kept a template's words after the agent emptied the box in the browser, so
    X refused "your reply box holds words that are not queued" for words no longer there (the second press went).
    The browser's word that the box is empty, given after the template filled it, counts."""
    from playwright.sync_api import expect, sync_playwright

    case_id = world["case_id"]
    with sync_playwright() as p:
        browser, page = _on_case(p, world)
        _ready(page, "Fill template")
        page.locator("body").press("t")
        wait_idle(page)
        box = page.get_by_label("Reply text")
        expect(box).to_have_value(world["reply"])
        box.click()
        page.keyboard.press("Control+a")
        page.keyboard.press("Delete")
        page.wait_for_timeout(2500)
        page.locator("body").evaluate("b => document.activeElement.blur()")
        wait_idle(page)
        _ready(page, "Resolve and go to the next case")
        page.locator("body").press("x")
        wait_idle(page)
        _wait_for(lambda: _case(world["db"], case_id).status == "resolved", "X resolved at the first press", seconds=6)
        assert _kinds(world["db"], case_id).count("reply") == 0
        browser.close()


@pytest.mark.parametrize("viewport", [(768, 1024), (1024, 768), (1366, 768)])
def test_queue_reply_keeps_its_words_on_a_tablet(world: dict[str, Any], viewport: tuple[int, int]) -> None:
    """Accessibility audit: at a tablet's 768 px the composer's button read "Queue …" (a quarter of the row); at
    1024 px with the sidebar open it still read "Qu…" (left open last stop)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _on_case(p, world, viewport)
        button = page.get_by_role("button", name="Queue reply")
        label = button.locator("[data-testid='stMarkdownContainer']").first
        widths = label.evaluate("(e) => [e.scrollWidth, e.clientWidth]")
        assert widths[0] <= widths[1], widths  # not cut with an ellipsis
        box, text = button.bounding_box(), page.get_by_label("Reply text").bounding_box()
        assert box and text and box["x"] + box["width"] <= text["x"] + text["width"] + 1  # inside the composer
        shot(page, f"queue-reply-{viewport[0]}")
        browser.close()


def test_j_does_not_leave_a_reply_typed_and_not_queued(world: dict[str, Any]) -> None:
    """Left open last stop: J / K and the case-number box left a case with words typed and not queued, and the
    words were lost (they reach the server only with Queue reply). The first J now stays and says so; a second J
    within a few seconds leaves them, as asked."""
    from playwright.sync_api import expect, sync_playwright

    case_id = world["case_id"]
    with sync_playwright() as p:
        browser, page = _on_case(p, world)
        _type_unqueued(page)
        import re

        nxt = page.get_by_role("button", name=re.compile(r"^Next"))
        moved = "Next" if nxt.is_enabled() else "Previous"
        key = "j" if moved == "Next" else "k"
        _ready(page, moved)
        page.locator("body").press(key)
        wait_idle(page)
        expect(page.get_by_text("your reply box holds words that are not queued", exact=False)).to_be_visible()
        assert page.get_by_role("heading", name=f"Case #{case_id}").is_visible()
        expect(page.get_by_label("Reply text")).to_have_value("Hi, so sorry, your refund is on its way.")
        shot(page, "j-refused-unqueued")
        _ready(page, moved)
        page.locator("body").press(key)  # again: leave the words
        wait_idle(page)
        expect(page.get_by_role("heading", name=f"Case #{case_id}")).not_to_be_visible()
        browser.close()


def test_the_case_number_box_does_not_leave_a_reply_typed_and_not_queued(world: dict[str, Any]) -> None:
    """The same for a case number typed in the box: refused once, with the box back on this case's number."""
    from playwright.sync_api import expect, sync_playwright

    case_id, other = world["case_id"], world["fettle_case"]
    with sync_playwright() as p:
        browser, page = _on_case(p, world)
        page.get_by_label("Reply text").click()
        page.keyboard.type("Hi, so sorry, your refund is on its way.")
        page.wait_for_timeout(2500)
        number = page.get_by_label("Case number")
        for attempt in (1, 2):
            number.fill(str(other))
            number.press("Enter")
            wait_idle(page)
            if attempt == 1:
                expect(page.get_by_text("enter the number again", exact=False)).to_be_visible()
                assert page.get_by_role("heading", name=f"Case #{case_id}").is_visible()
                expect(page.get_by_label("Reply text")).to_have_value("Hi, so sorry, your refund is on its way.")
        page.get_by_role("heading", name=f"Case #{other}").wait_for()
        browser.close()


def test_the_sidebar_asks_before_leaving_a_reply_typed_and_not_queued(world: dict[str, Any]) -> None:
    """Audit of today's changes, finding 4: the sidebar's Inbox link left the case and lost typed words unsaid.
    It asks first now (the browser's confirm): No stays with the words, Yes leaves."""
    from playwright.sync_api import expect, sync_playwright

    case_id = world["case_id"]
    with sync_playwright() as p:
        browser, page = _on_case(p, world)
        page.get_by_label("Reply text").click()
        page.keyboard.type("Hi, so sorry, your refund is on its way.")
        asked: list[str] = []
        page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
        page.get_by_role("link", name="Inbox").first.click()
        wait_idle(page)
        assert asked and "not queued" in asked[0], asked
        assert page.get_by_role("heading", name=f"Case #{case_id}").is_visible()
        with page.context.expect_page() as opened:  # "Open original" opens another tab: nothing to ask
            page.get_by_role("link", name="Open original").first.click()
        opened.value.close()
        assert len(asked) == 1, asked
        expect(page.get_by_label("Reply text")).to_have_value("Hi, so sorry, your refund is on its way.")
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("link", name="Inbox").first.click()
        page.get_by_role("heading", name="Inbox").wait_for()
        browser.close()


@pytest.mark.parametrize("viewport", [(1024, 768), (1366, 768)])
def test_previous_and_next_keep_their_words(world: dict[str, Any], viewport: tuple[int, int]) -> None:
    """Browser check: at 1024 px with the sidebar open Previous and Next read "P K" and "N J"."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page = _on_case(p, world, viewport)
        for key in ("case_previous", "case_next"):
            label = page.locator(f".st-key-{key} [data-testid='stMarkdownContainer']").first
            widths = label.evaluate("(e) => [e.scrollWidth, e.clientWidth]")
            assert widths[0] <= widths[1], (key, widths)
        shot(page, f"case-nav-{viewport[0]}")
        browser.close()
