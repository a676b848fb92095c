"""End to end in a real browser: headless Chromium (Debian's package) driven by Playwright.

Two agents and two brands (issue 13): a second agent's reply to a post already answered is
refused and the emulator holds exactly one; each reply is posted by the brand account the
customer wrote to (the emulator records the token's account); relinking a Fettle case to another
customer's order never puts that customer's data in a public post. A reply that fails on X is
followed by no message that says we replied (the follow-up waits on the Approvals page and the
customer's mail server receives the truthful one), and "Ask for details privately" reaches X as
a direct message whose answer comes back into the case.

The console runs as ``streamlit run app.py`` against a small demo database, with the X API
emulator and a local SMTP server standing in for the outside world. An agent logs in, opens the
top case, sees the order and the tracking timeline, replies with a template (the outbox sends it
to the emulator), escalates to the courier (email to the SMTP server), and sees both on the case;
a second agent on the same case triggers the locking conflict; a post full of HTML and Markdown
is shown as text. Screenshots go to ``test-artifacts/e2e/``; the README's come from the demo
(``demo/screenshots.py``), so a test run never changes tracked files.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest

from standins.recording import free_port
from standins.smtp import SmtpSink
from tests.conftest import REPO, labels

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "e2e"
DEMO_CONFIG = REPO / "demo" / "doorstep.toml"
PASSWORD = "correct horse battery"
XSS_TEXT = "<script>alert('xss')</script> <img src=x onerror=alert(2)> [click me](http://evil.example) ![pic](http://evil.example/p.png)"

FAIL_ORDER = "LS-E2E-0001"
FAIL_POST = "1900000000000000888"
DM_POST = "1900000000000000999"

pytestmark = [pytest.mark.e2e]


def chromium_or_skip(path: Path = CHROMIUM) -> None:
    """Skip without chromium on a developer's machine; in CI (CI=true) a missing browser is a failure."""
    if path.exists():
        return
    why = (f"{path} not found: install Debian's chromium package (apt-get install -y chromium) to run the "
           "browser test; .ci/run does this itself")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    chromium_or_skip()


def prepare_db(path: Path) -> dict[str, Any]:
    """A small demo shop, two agents, a fillable top case, and a post full of markup."""
    from console.auth import add_user
    from doorstep.config import load_config
    from commands.demo import build_demo
    from doorstep.models import Case, Mention, utcnow
    from doorstep.store import Store
    from responders.templates import TemplateError, render_template, suggest_templates
    from tests.conftest import KeywordClassifier

    build_demo(str(path), seed=5, customers=30, orders=60, mentions=60, config_path=str(DEMO_CONFIG),
               classifier=KeywordClassifier())
    config = load_config(DEMO_CONFIG)
    store = Store(path)
    add_user(store, "ann", PASSWORD, role="agent", name="Ann Agent", rounds=4)
    add_user(store, "bob", PASSWORD, role="agent", name="Bob Agent", rounds=4)
    top: tuple[int, str, str] | None = None
    # The demo's statuses depend on the clock (its SLA and follow-up history is relative to now),
    # so an open case is preferred but a closed one that fits is reopened for the test.
    rows = store.db.execute("select id, order_number from cases where link_confirmed = 1 and channel = 'x' and "
                            "order_number is not null and courier is not null "
                            "order by status in ('new', 'open') desc, priority desc").fetchall()
    for case_id, number in rows:
        case = store.get_case(case_id)
        shipment = store.get_shipment(case.tracking_number) if case and case.tracking_number else None
        if not shipment or not shipment.events:
            continue
        name = suggest_templates(case, shipment, config)[0]  # type: ignore[arg-type]
        try:
            text = render_template(store, config, case_id, name, agent="Ann Agent")
        except TemplateError:
            continue
        if number in text:
            top = (case_id, name, text)
            break
    assert top is not None, "the demo has a confirmed X case whose first suggested template fills"
    chosen = store.get_case(top[0])
    if chosen is not None and chosen.status not in ("new", "open"):
        store.update_case(chosen.id, chosen.version, "e2e-fixture", status="open", resolved_at=None)  # type: ignore[arg-type]
    store.db.execute("update cases set priority = 200 where id = ?", [top[0]])
    now = utcnow()
    xss_case = store.insert_case(Case(status="new", priority=150.0, priority_reasons=["test (+150)"], channel="x",
                                      brand="Larkspur Home", author_handle="mallory", opened_at=now,
                                      last_activity_at=now, first_response_due=now + timedelta(minutes=20),
                                      resolution_due=now + timedelta(hours=3), mention_count=1))
    store.insert_mention(Mention(channel="x", external_id="e2e-xss", text=XSS_TEXT, created_at=now,
                                 author_handle="mallory", author_name="<b>Mallory</b>", thread_id="e2e-xss",
                                 case_id=xss_case, labels=labels("customer_service", "negative", True)))
    # The other brand: a post to @FettleCare by someone who is not a customer of the shop. Relinking
    # it to the top case's order (another customer's) must never put that customer's data in public.
    fettle_case = store.insert_case(Case(status="new", priority=140.0, priority_reasons=["test (+140)"], channel="x",
                                         brand="Fettle Outdoor", author_handle="sienna_l", opened_at=now,
                                         last_activity_at=now, first_response_due=now + timedelta(minutes=30),
                                         resolution_due=now + timedelta(hours=4), mention_count=1, complaint=True,
                                         intent="refund_or_return"))
    store.insert_mention(Mention(channel="x", external_id="1900000000000000777", author_handle="sienna_l",
                                 text="@FettleCare my head torch never came, I want a refund", created_at=now,
                                 author_name="Sienna L", thread_id="1900000000000000777", case_id=fettle_case,
                                 matched=["Fettle Outdoor"],
                                 labels=labels("refund_or_return", "negative", True)))
    top_case = store.get_case(top[0])
    owner = store.get_customer(top_case.customer_id) if top_case and top_case.customer_id else None  # type: ignore[union-attr]
    top_shipment = store.get_shipment(top_case.tracking_number) if top_case and top_case.tracking_number else None  # type: ignore[union-attr]
    courier = top_case.courier  # type: ignore[union-attr]
    store.close()
    return {"case_id": top[0], "template": top[1], "reply": top[2], "xss_case": xss_case,
            "courier_email": config.courier(courier).escalation_email,  # type: ignore[union-attr]
            "fettle_case": fettle_case, "top_order": top_case.order_number,  # type: ignore[union-attr]
            "top_brand": top_case.brand,  # type: ignore[union-attr]
            "top_account": next(b.handles["x"] for b in config.brands if b.name == top_case.brand),  # type: ignore[union-attr]
            "top_secrets": [w for w in ((owner.name.split() if owner else []) + [top_case.order_number,  # type: ignore[union-attr]
                            top_case.tracking_number] + [e.location for e in (top_shipment.events if top_shipment else [])  # type: ignore[union-attr]
                                                         if e.location]) if w and len(w) >= 3]}


def add_failed_reply_and_private_cases(path: Path) -> dict[str, Any]:
    """Two more cases, one per brand, for the failed-reply and ask-privately paths (issue 13, failures 3 and 5)."""
    from doorstep.models import Case, Customer, Mention, Order, utcnow
    from doorstep.store import Store

    store = Store(path)
    now = utcnow()
    # Failure 3 of issue 13: a Larkspur customer whose post is gone from X when we answer (the
    # fixture never puts it on the emulator), so the reply fails ("tweet ... does not exist").
    store.upsert_customers([Customer(id="E2E-OLU", name="Olu Adebayo", email="olu.adebayo@example.com",
                                     handles={"x": "olu_a"})])
    store.upsert_orders([Order(number=FAIL_ORDER, customer_id="E2E-OLU", placed_at=now - timedelta(days=6),
                               brand="Larkspur Home", items=[{"name": "Linen throw", "quantity": 1}], total=45.0)])
    fail_case = store.insert_case(Case(status="open", priority=130.0, priority_reasons=["test (+130)"], channel="x",
                                       brand="Larkspur Home", author_handle="olu_a", customer_id="E2E-OLU",
                                       order_number=FAIL_ORDER, link_method="handle", link_confidence=1.0,
                                       link_confirmed=True, opened_at=now, last_activity_at=now,
                                       first_response_due=now + timedelta(minutes=30),
                                       resolution_due=now + timedelta(hours=4), mention_count=1, complaint=True,
                                       intent="late_delivery"))
    store.insert_mention(Mention(channel="x", external_id=FAIL_POST, author_handle="olu_a", author_name="Olu A",
                                 text="@LarkspurHelp my linen throw is a week late", created_at=now,
                                 thread_id=FAIL_POST, case_id=fail_case, matched=["Larkspur Home"],
                                 labels=labels("late_delivery", "negative", True)))
    # Failure 5: a Fettle case nobody can link yet; "ask privately" must be a direct message.
    dm_case = store.insert_case(Case(status="new", priority=120.0, priority_reasons=["test (+120)"], channel="x",
                                     brand="Fettle Outdoor", author_handle="kit_walker", opened_at=now,
                                     last_activity_at=now, first_response_due=now + timedelta(minutes=30),
                                     resolution_due=now + timedelta(hours=4), mention_count=1,
                                     intent="where_is_my_order"))
    store.insert_mention(Mention(channel="x", external_id=DM_POST, author_handle="kit_walker", author_name="Kit Walker",
                                 text="@FettleCare where is my tent? Ordered it ages ago", created_at=now,
                                 thread_id=DM_POST, case_id=dm_case, matched=["Fettle Outdoor"],
                                 labels=labels("where_is_my_order", "negative", True)))
    dm_order = "ORD-2026-009901"  # Kit's own order, which the demo's posts never mention
    store.upsert_customers([Customer(id="E2E-KIT", name="Kit Walker", email="kit.walker@example.com")])
    store.upsert_orders([Order(number=dm_order, customer_id="E2E-KIT", placed_at=now - timedelta(days=9),
                               brand="Fettle Outdoor", items=[{"name": "Two-person tent", "quantity": 1}], total=249.0)])
    store.close()
    return {"fail_case": fail_case, "dm_case": dm_case, "dm_order": dm_order}


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    from aiosmtpd.controller import Controller

    from standins.x_emulator import XEmulator

    db = tmp_path / "e2e.db"
    facts = {**prepare_db(db), **add_failed_reply_and_private_cases(db)}
    sink = SmtpSink(policy=policy.default)
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    # One developer app, one user token per brand account: the emulator records which account posted.
    emulator = XEmulator(me={"username": "LarkspurHelp"},
                         accounts={"tok-larkspur": {"username": "LarkspurHelp"},
                                   "tok-fettle": {"username": "FettleCare"}}).start()
    from doorstep.store import Store, iso

    store = Store(db)  # the posts the demo "received" exist on X, so replies can answer them
    # (fail_case's post is left off: it was deleted before the reply went out.)
    for m in [*store.mentions_for_case(facts["case_id"]), *store.mentions_for_case(facts["fettle_case"]),
              *store.mentions_for_case(facts["dm_case"])]:
        if m.channel == "x":
            emulator.add_post({"id": m.external_id, "text": m.text, "username": m.author_handle or "someone",
                               "name": m.author_name or "", "created_at": iso(m.created_at),
                               "conversation_id": m.thread_id or m.external_id})
    store.close()
    env = {
        "DOORSTEP_DB": str(db), "DOORSTEP_CONFIG": str(DEMO_CONFIG),
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port), "SMTP_FROM": "care@larkspur.test", "SMTP_TIMEOUT": "5",
        "X_API_BASE_URL": emulator.base_url, "X_API_TIMEOUT": "5",
        **{n: f"test-{n.lower()}" for n in ("X_BEARER_TOKEN", "X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN_SECRET")},
        "LARKSPUR_X_ACCESS_TOKEN": "tok-larkspur", "FETTLE_X_ACCESS_TOKEN": "tok-fettle",
    }
    monkeypatch.delenv("X_ACCESS_TOKEN", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        with serve_console(tmp_path, env) as url:
            yield {**facts, "url": url, "db": db, "emulator": emulator, "smtp": sink}
    finally:
        emulator.stop()
        controller.stop()


def send_outbox(db: Path) -> int:
    from doorstep.config import load_config
    from doorstep.store import Store
    from responders.outbox import Outbox

    store = Store(db)
    try:
        return Outbox(store, load_config(DEMO_CONFIG)).send_due()
    finally:
        store.close()


def outbox_rows(db: Path) -> list[tuple[Any, ...]]:
    from doorstep.store import Store

    store = Store(db)
    try:
        return [tuple(r) for r in store.db.execute(
            "select id, kind, channel, target, status, last_error from outbound_messages order by id").fetchall()]
    finally:
        store.close()


def linked_order(db: Path, case_id: int) -> str | None:
    from doorstep.store import Store

    store = Store(db)
    try:
        case = store.get_case(case_id)
        return case.order_number if case else None
    finally:
        store.close()


def shot(page: Any, name: str, docs: bool = False) -> None:
    """Screenshot of the whole page: Streamlit scrolls inside its main section, so grow the viewport to fit."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    wait_idle(page)
    # widgets draw skeletons until their code is loaded; wait until none is left
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=20000)
    page.wait_for_timeout(500)
    size = page.viewport_size
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('section, [data-testid=\"stMain\"]')]"
                           ".map(e => e.scrollHeight), document.body.scrollHeight)")
    page.set_viewport_size({"width": size["width"], "height": min(max(height, size["height"]), 6000)})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    # The README's console screenshots come from the demo (demo/screenshots.py), not this fixture.


def wait_idle(page: Any) -> None:
    """Streamlit shows a running indicator while the script reruns; wait until it is gone."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=20000)
    # Elements of the previous run stay in the page, marked stale, until the new run replaces them
    # (the live presence fragment reruns every few seconds); wait until none is left.
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')", timeout=20000)


@contextmanager
def serve_console(tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    """Run ``streamlit run app.py`` on a free 127.0.0.1 port with ``env`` until the block ends; yields its URL."""
    import urllib.request

    port = free_port()
    log = (tmp_path / "streamlit.log").open("wb")
    console = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none", "--server.runOnSave", "false", "--client.toolbarMode", "viewer"],
        cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if console.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamlit did not start:\n" + (tmp_path / "streamlit.log").read_text())
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        console.terminate()
        try:
            console.wait(timeout=10)
        except subprocess.TimeoutExpired:
            console.kill()
        log.close()


def launch_chromium(playwright: Any) -> Any:
    """Debian's headless Chromium with the flags this machine needs."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=["--headless", "--no-sandbox", "--disable-gpu",
                                            "--disable-background-networking"])


def login(page: Any, url: str, username: str) -> None:
    page.goto(url)
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Inbox").wait_for()
    # The first console run sends the browser through /auth/session, which sets the login
    # cookie (HttpOnly: the page's JavaScript cannot see it) and reloads the console.
    for _ in range(100):
        cookies = [c for c in page.context.cookies() if c["name"] == "doorstep_session"]
        if cookies:
            break
        page.wait_for_timeout(200)
    page.get_by_role("heading", name="Inbox").wait_for()
    wait_idle(page)
    [cookie] = cookies
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert page.evaluate("() => document.cookie.includes('doorstep_session')") is False


def open_case(page: Any, case_id: int) -> None:
    """Open a case by its number; a reply box left with words not queued (a draft kept) asks once, and the same
    number again leaves them, as an agent who meant it does."""
    page.get_by_role("link", name="Case").click()
    wait_idle(page)
    box = page.get_by_label("Case number")
    box.fill(str(case_id))
    box.press("Enter")
    wait_idle(page)
    if page.get_by_text("enter the number again", exact=False).count():
        box.fill(str(case_id))
        box.press("Enter")
    page.get_by_role("heading", name=f"Case #{case_id}").wait_for()
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    wait_idle(page)


def choose(page: Any, label: str, option: str) -> None:
    from playwright.sync_api import expect

    select = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text(label, exact=True))
    expect(select).to_have_count(1)
    box = select.locator("input")
    box.click()
    box.fill(option)
    box.press("Enter")


def test_agent_works_a_case_end_to_end(world: dict[str, Any]) -> None:
    from playwright.sync_api import expect, sync_playwright

    case_id = world["case_id"]
    with sync_playwright() as p:
        browser = launch_chromium(p)
        alerts: list[str] = []
        ann = browser.new_page(viewport={"width": 1500, "height": 1000})
        ann.set_default_timeout(20000)
        ann.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))

        # Login is required; a wrong password is refused.
        ann.goto(world["url"])
        ann.get_by_label("Username", exact=True).fill("ann")
        ann.get_by_label("Password", exact=True).fill("not the password")
        ann.get_by_role("button", name="Log in").click()
        expect(ann.get_by_text("Wrong username or password.")).to_be_visible()
        shot(ann, "01-login-refused")
        login(ann, world["url"], "ann")
        expect(ann.get_by_role("link", name="Settings")).to_have_count(0)  # agents have no settings page
        ann.reload()  # the login is kept in a signed cookie: a reload stays logged in
        ann.get_by_role("heading", name="Inbox").wait_for()
        wait_idle(ann)
        expect(ann.get_by_label("Password", exact=True)).to_have_count(0)
        shot(ann, "inbox", docs=True)

        # The fixture's case (the queue's order puts the cases due soonest first): order and tracking timeline.
        ann.get_by_label("…or any case number").fill(str(case_id))
        ann.get_by_role("button", name="Open case").click()
        ann.get_by_role("heading", name=f"Case #{case_id}").wait_for()
        wait_idle(ann)
        expect(ann.get_by_text("Customer, order and parcel")).to_be_visible()
        expect(ann.locator('[data-testid="stVegaLiteChart"]').first).to_be_visible(timeout=20000)  # drawn last
        expect(ann.get_by_text("Shipment ", exact=False).first).to_be_visible()

        # Reply with the suggested template; the worker's outbox sends it to X.
        ann.get_by_role("button", name="Fill template").click()
        wait_idle(ann)
        expect(ann.get_by_label("Reply text")).to_have_value(world["reply"])
        ann.get_by_role("button", name="Queue reply").click()
        wait_idle(ann)
        expect(ann.get_by_text(re.compile(r"^reply queued \(message"))).to_be_visible()

        # Escalate to the courier by email.
        expect(ann.get_by_label("Note for them")).to_have_count(1)  # stale elements of the last run are gone
        ann.get_by_label("Note for them").fill("Customer waiting, please check the depot.")
        ann.get_by_role("button", name="Escalate").click()
        wait_idle(ann)
        expect(ann.get_by_text("escalation queued to", exact=False)).to_be_visible()

        sent = send_outbox(world["db"])
        assert sent == 2, outbox_rows(world["db"])
        posted = world["emulator"].posted
        assert [p["text"] for p in posted] == [world["reply"]]
        # From the account of the brand the customer wrote to (the emulator records which token posted it).
        assert posted[0]["account"] == world["top_account"], (posted[0], world["top_brand"])
        smtp = world["smtp"].messages
        assert [m.envelope_to for m in smtp] == [[world["courier_email"]]]
        assert "please check the depot" in smtp[0].get_body(preferencelist=("plain",)).get_content()

        open_case(ann, case_id)  # reload: both now sent, on the case's timeline
        expect(ann.get_by_text("reply via X", exact=False)).to_contain_text("sent")
        expect(ann.get_by_text("escalation via e-mail", exact=False)).to_contain_text("sent")
        # The timeline in the team's words, not the audit log's.
        expect(ann.get_by_text("ann queued: escalation to", exact=False).first).to_be_visible()
        expect(ann.get_by_text("outbox.queue.escalation", exact=False)).to_have_count(0)
        # Her own reply, sent by the outbox, changed the case: that is not someone else's change.
        expect(ann.get_by_text("changed by outbox", exact=False)).to_have_count(0)
        expect(ann.get_by_role("button", name="Work from the latest version")).to_have_count(0)
        shot(ann, "case", docs=True)

        # A second agent on the same case changes it first: ann gets the conflict message.
        bob = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()  # his own cookies
        bob.set_default_timeout(20000)
        login(bob, world["url"], "bob")
        open_case(bob, case_id)
        expect(bob.get_by_text("Also on this case", exact=False)).to_be_visible()
        # One answer per customer post: bob's second reply to the post ann answered is refused,
        # says who answered, offers an explicit "Send anyway", and X still holds exactly one reply.
        expect(bob.get_by_role("button", name="Fill template")).to_have_count(1)
        bob.get_by_role("button", name="Fill template").click()
        wait_idle(bob)
        expect(bob.get_by_label("Reply text")).not_to_have_value("")  # the filled template is in the box
        bob.get_by_role("button", name="Queue reply").click()
        wait_idle(bob)
        expect(bob.get_by_text("ann already answered", exact=False)).to_be_visible()
        expect(bob.get_by_role("button", name="Send anyway")).to_be_visible()
        shot(bob, "06-second-reply-refused")
        send_outbox(world["db"])
        assert [p["text"] for p in world["emulator"].posted] == [world["reply"]]
        bob.get_by_role("button", name="Keep my draft, don't send").click()
        wait_idle(bob)

        # The other brand, and another customer's order: bob relinks @sienna_l's Fettle case to the
        # top case's order. The link stays unconfirmed and the case says in red whose order it is;
        # templates and replies carrying that customer's data are refused; a safe reply goes out
        # from @FettleCare and nothing of the other customer reaches X.
        open_case(bob, world["fettle_case"])
        bob.get_by_text("Change the linked order").click()
        wait_idle(bob)  # the run that draws the form has finished, as it has before a person types in it
        number_box = bob.get_by_label("Order number")
        expect(number_box).to_have_value("")  # this case's own box, not the last case's order
        number_box.fill(world["top_order"])
        expect(number_box).to_have_value(world["top_order"])
        # One click, while the presence line ticks every few seconds: it must land the first time (no retry).
        # The answer gets 20 s, not 5: this step once failed in CI after 5 s with the case unlinked, and
        # 40 runs here did not show whether the click was lost or the two runs it starts were slow.
        bob.get_by_role("button", name="Link this order").click()
        wait_idle(bob)
        landed = bob.get_by_text("NOT confirmed: the order's customer is not the author", exact=False)
        try:
            expect(landed).to_be_visible(timeout=20000)
        except AssertionError as exc:
            raise AssertionError(f"Link this order: no answer in 20 s; the case's order in the database is "
                                 f"{linked_order(world['db'], world['fettle_case'])!r}") from exc
        assert linked_order(world["db"], world["fettle_case"]) == world["top_order"]
        expect(bob.get_by_text(f"Order {world['top_order']} belongs to", exact=False)).to_be_visible()
        choose(bob, "Template", "refund")
        wait_idle(bob)
        expect(bob.get_by_role("button", name="Fill template")).to_have_count(1)  # the previous case's are gone
        bob.get_by_role("button", name="Fill template").click()
        wait_idle(bob)
        expect(bob.get_by_text("is not confirmed", exact=False).first).to_be_visible()
        leak = f"Hi {world['top_secrets'][0]}, sorry about order {world['top_order']}, we're refunding it."
        # Typed, then one click: the reply box and its button are one form, the words go with the click.
        bob.get_by_label("Reply text").fill(leak)
        bob.get_by_role("button", name="Queue reply").click()
        wait_idle(bob)
        expect(bob.get_by_text("Reply not queued", exact=False).first).to_be_visible()
        shot(bob, "07-relinked-other-customers-order-refused")
        bob.get_by_label("Reply text").fill("So sorry @sienna_l! Could you DM us the e-mail address you ordered with?")
        bob.get_by_role("button", name="Queue reply").click()
        wait_idle(bob)
        expect(bob.get_by_text(re.compile(r"^reply queued \(message")).first).to_be_visible()
        send_outbox(world["db"])
        posted = world["emulator"].posted
        assert [(p["account"], p["reply"]["in_reply_to_tweet_id"]) for p in posted[1:]] == [
            ("FettleCare", "1900000000000000777")]
        for post in posted[1:]:
            leaked = [w for w in world["top_secrets"] if w.casefold() in post["text"].casefold()]
            assert not leaked, (leaked, post["text"])
        open_case(bob, world["case_id"])
        choose(bob, "Status", "pending customer")
        bob.get_by_role("button", name="Set status").click()
        wait_idle(bob)
        expect(bob.get_by_text("status set to pending customer")).to_be_visible()
        choose(ann, "Status", "resolved")
        ann.get_by_role("button", name="Set status").click()
        wait_idle(ann)
        expect(ann.get_by_text("was changed by bob", exact=False)).to_be_visible()
        expect(ann.get_by_test_id("stMetricValue").first).to_have_text("pending customer")  # the fresh state
        shot(ann, "04-conflict")
        from doorstep.store import Store

        store = Store(world["db"])
        assert store.get_case(case_id).status == "pending_customer"  # type: ignore[union-attr]
        store.close()

        # A post full of markup shows as text.
        open_case(ann, world["xss_case"])
        # As text wherever it is shown: the post being answered, the reply line's excerpt, the thread.
        expect(ann.get_by_text("<script>alert('xss')</script>", exact=False).first).to_be_visible()
        expect(ann.get_by_text("[click me](http://evil.example)", exact=False).first).to_be_visible()
        assert ann.locator("img[src='x']").count() == 0
        assert ann.locator("a[href='http://evil.example']").count() == 0, ann.locator(
            "a[href='http://evil.example']").first.evaluate("e => e.parentElement.parentElement.outerHTML")
        assert alerts == []
        shot(ann, "05-xss-as-text")

        ann.get_by_role("link", name="Dashboard").click()
        ann.get_by_role("heading", name="Dashboard").wait_for()
        wait_idle(ann)
        ann.locator("[data-testid=\"stVegaLiteChart\"]").nth(4).wait_for()
        ann.wait_for_timeout(800)
        shot(ann, "dashboard", docs=True)

        # Logging out ends the cookie too: a reload asks for the password again, and a copy of
        # the cookie kept elsewhere (another browser, a stolen token) no longer logs anyone in.
        kept = [c for c in ann.context.cookies() if c["name"] == "doorstep_session"]
        assert kept
        ann.get_by_role("button", name="Log out").click()
        ann.get_by_label("Password", exact=True).wait_for()
        ann.wait_for_function("() => true")
        assert not [c for c in ann.context.cookies() if c["name"] == "doorstep_session"]
        ann.reload()
        ann.get_by_label("Password", exact=True).wait_for()
        elsewhere = browser.new_context()
        elsewhere.add_cookies(kept)
        thief = elsewhere.new_page()
        thief.goto(world["url"])
        thief.get_by_label("Password", exact=True).wait_for()
        expect(thief.get_by_text("Signed in as", exact=False)).to_have_count(0)
        browser.close()


def test_two_agents_a_failed_reply_and_asking_privately(world: dict[str, Any]) -> None:
    """Issue 13's other browser paths, two agents and both brands, asserted on what the servers received.

    Failure 3: bob's reply to a Larkspur customer fails on X ("tweet ... does not exist"); the case
    says so, and the follow-up the worker writes waits for approval, never says "we replied", and
    is what the customer's mail server receives once ann approves it. Failure 5: ann asks a Fettle
    customer privately; X receives a direct message from @FettleCare and no public post, and the
    customer's direct answer comes back into the case, where bob sees it and it confirms the order.
    """
    from datetime import datetime, timezone

    from playwright.sync_api import expect, sync_playwright

    from doorstep.config import load_config
    from doorstep.pipeline import Pipeline
    from doorstep.store import Store
    from listeners.config import XSettings
    from listeners.x import XListener
    from responders.followup import run_followups
    from responders.outbox import Outbox, get_message
    from tests.conftest import KeywordClassifier

    emulator, db, config = world["emulator"], world["db"], load_config(DEMO_CONFIG)
    fail_case, dm_case = world["fail_case"], world["dm_case"]
    with sync_playwright() as p:
        browser = launch_chromium(p)
        ann = browser.new_page(viewport={"width": 1500, "height": 1000})
        ann.set_default_timeout(20000)
        login(ann, world["url"], "ann")
        bob = browser.new_context(viewport={"width": 1500, "height": 1000}).new_page()  # his own cookies
        bob.set_default_timeout(20000)
        login(bob, world["url"], "bob")

        # Failure 3: the reply fails on X, and the case header says so.
        open_case(bob, fail_case)
        reply = "@olu_a so sorry it's late, we're looking into it now."
        bob.get_by_label("Reply text").fill(reply)
        bob.get_by_role("button", name="Queue reply").click()
        wait_idle(bob)
        expect(bob.get_by_text(re.compile(r"^reply queued \(message")).first).to_be_visible()
        send_outbox(db)
        assert emulator.posted == []  # X holds nothing: the post it answers is gone
        store = Store(db)
        try:
            [failed] = [m for m in store.outbound_for_case(fail_case) if m.kind == "reply"]
            assert failed.status == "failed" and "does not exist" in (failed.last_error or ""), failed
            [follow_up] = [i for i in run_followups(store, config) if get_message(store, i).case_id == fail_case]
            held = get_message(store, follow_up)
        finally:
            store.close()
        open_case(bob, fail_case)
        expect(bob.get_by_text("Not delivered: reply via X", exact=False).first).to_be_visible()
        # The worker's follow-up by e-mail waits for an agent (the demo's approval rule) and tells the truth.
        assert held.status == "awaiting_approval" and held.channel == "email", held
        assert "we replied" not in held.text.casefold() and "could not answer you there" in held.text
        ann.get_by_role("link", name="Approvals").click()
        ann.get_by_role("heading", name="Approvals").wait_for()
        wait_idle(ann)
        expect(ann.locator(f".st-key-approve_{follow_up} button")).to_have_count(1)
        expect(ann.get_by_text("could not answer you there", exact=False)).to_have_count(1)  # what ann approves
        expect(ann.get_by_text("we replied", exact=False)).to_have_count(0)
        shot(ann, "08-approvals-follow-up-of-a-failed-reply")
        ann.locator(f".st-key-approve_{follow_up} button").click()
        wait_idle(ann)
        expect(ann.get_by_text(f"message {follow_up} approved", exact=False)).to_be_visible()
        store = Store(db)
        try:  # 14 h on, outside quiet hours: past any quiet hours the follow-up waits for, and not in them
            from tests.test_dialogue import later

            Outbox(store, config, now=later).send_due()
        finally:
            store.close()
        [mail] = [m for m in world["smtp"].messages if m.envelope_to == ["olu.adebayo@example.com"]]
        body = mail.get_body(preferencelist=("plain",)).get_content()
        assert "we replied" not in body.casefold() and "could not answer you there" in body, body
        assert emulator.posted == []

        # Failure 5: ann asks @kit_walker privately: a preview first, then an X direct message from @FettleCare.
        open_case(ann, dm_case)
        ann.get_by_role("button", name="Ask for details privately").click()
        wait_idle(ann)
        expect(ann.get_by_text("nothing is posted publicly", exact=False).first).to_be_visible()
        expect(ann.get_by_text("from @FettleCare", exact=False).first).to_be_visible()
        assert emulator.dms == []  # the preview sends nothing
        shot(ann, "09-ask-privately-preview")
        ann.get_by_role("button", name="Send privately").click()
        wait_idle(ann)
        expect(ann.get_by_text("private message queued", exact=False).first).to_be_visible()
        send_outbox(db)
        assert emulator.posted == []  # nothing public
        [asked] = emulator.dms
        assert (asked["sender"], asked["recipient"]) == ("FettleCare", "kit_walker"), asked
        # The customer answers by direct message; FettleCare's DM listener brings it into the case.
        answer = f"It's order {world['dm_order']}, thanks for checking"
        emulator.send_dm("kit_walker", "FettleCare", answer, created_at=datetime.now(timezone.utc) + timedelta(seconds=2))
        store = Store(db)
        try:
            result = XListener(store, config, Pipeline(store, config, KeywordClassifier()),
                               settings=XSettings(accounts=["FettleCare"], direct_messages=True)).poll_once()
            assert result.ok, result.errors
            case = store.get_case(dm_case)
            assert case is not None and case.order_number == world["dm_order"] and case.link_confirmed, case
        finally:
            store.close()
        open_case(bob, dm_case)  # the second agent sees the private answer on the case
        expect(bob.get_by_text(answer, exact=False).first).to_be_visible()
        shot(bob, "10-private-answer-in-the-case")
        browser.close()
