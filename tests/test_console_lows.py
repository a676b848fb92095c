"""Low findings of a browser check of the console on the demo.

1. ``/inbox`` (a bookmark, a link) was "Page not found": the inbox was the navigation's default page, and
   Streamlit serves the default page at ``/`` only (its ``url_path`` reads ``""``), so no page answered
   ``/inbox``.
2. The timeline named a Slack escalation by the setting's ``$NAME`` ("queued: escalation to
   $SLACK_TEAM_WEBHOOK on Slack") instead of the target the agent chose ("team", "lead"), and a courier's
   webhook by its ``$DEMO_COURIER_WEBHOOK``.
3. A customer's post that joined an open case had no line on the timeline (the opening post has one).
4. A case Doorstep opened for a parcel said "confirmed (its customer quoted the tracking number)" after the
   customer joined it quoting their *order* number.
5. Settings listed the reply templates by their keys ("ask_details_privately"), the case page by name.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
import pytest

from console.auth import add_user
from doorstep.config import Config, load_config, parse_config
from doorstep.models import AuditEvent, Mention
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from tests.conftest import DEMO_CONFIG, T0, KeywordClassifier, console_store, mention, run_page, texts

PASSWORD = "correct horse battery"
#: What the case page shows between a line's time and its words.
DASH = " — "


@pytest.fixture
def shop(db_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Store:
    """An empty shop the console's pages open (demo configuration), on SQLite and on PostgreSQL, with ann and lee."""
    store = console_store(db_url, request, monkeypatch)
    add_user(store, "ann", PASSWORD, role="agent", name="Ann", rounds=4)
    add_user(store, "lee", PASSWORD, role="lead", name="Lee", rounds=4)
    return store


def _page_timeline(store: Store, case_id: int) -> list[str]:
    """The case page's timeline lines (newest first) as drawn (Markdown escapes and word joiners taken out)."""
    at = run_page("case_view", store, case_id=case_id)
    assert not at.exception, at.exception
    return [c.value.replace("\\", "").replace("\u2060", "") for c in at.caption if DASH in c.value]


# ------------------------------------------------------------------ 1: /inbox opens the inbox
def test_the_inbox_answers_at_its_own_address(shop: Store) -> None:
    """Streamlit finds the page a URL names by ``url_path`` (``PagesManager``: ``url_pathname ==
    intended_page_name``); the default page's reads "" whatever it was given, so /inbox matched nothing."""
    from streamlit.testing.v1 import AppTest

    from tests.test_console_apptest import APP, log_in

    at = log_in(AppTest.from_file(APP, default_timeout=30).run(), "ann", PASSWORD)
    assert not at.exception, at.exception
    pages = at.session_state["_pages"]
    answering = [p for p in pages.values() if p.url_path == "inbox"]
    assert [p.title for p in answering] == ["Inbox"], {k: p.url_path for k, p in pages.items()}
    assert answering[0].visibility == "hidden"  # the sidebar still lists the inbox once
    assert [p.title for p in pages.values() if p.visibility == "visible"].count("Inbox") == 1
    assert "Inbox" in [t.value for t in at.title]  # "/" still opens the inbox, in one run


@pytest.mark.e2e
def test_a_bookmarked_inbox_address_opens_the_inbox_in_the_browser(tmp_path: Path) -> None:
    """The same with ``streamlit run app.py`` and headless Chromium: /inbox, logged in and logged out."""
    from playwright.sync_api import expect, sync_playwright

    from tests.test_e2e_browser import chromium_or_skip, launch_chromium, login, prepare_db, serve_console, wait_idle

    chromium_or_skip()
    db = tmp_path / "lows.db"
    prepare_db(db)
    with serve_console(tmp_path, {"DOORSTEP_DB": str(db), "DOORSTEP_CONFIG": str(DEMO_CONFIG)}) as url, \
            sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            login(page, url, "ann")  # at "/"
            page.goto(f"{url}/inbox")  # a bookmark, with the login cookie
            expect(page.get_by_role("heading", name="Inbox")).to_be_visible(timeout=30_000)
            wait_idle(page)
            assert page.get_by_text("Page not found").count() == 0
            assert page.url.rstrip("/").endswith("/inbox"), page.url
            fresh = browser.new_page(viewport={"width": 1440, "height": 900})  # logged out: the login, then the inbox
            fresh.goto(f"{url}/inbox")
            fresh.get_by_label("Username", exact=True).fill("bob")
            fresh.get_by_label("Password", exact=True).fill(PASSWORD)
            fresh.get_by_role("button", name="Log in").click()
            expect(fresh.get_by_role("heading", name="Inbox")).to_be_visible(timeout=30_000)
            wait_idle(fresh)
            assert fresh.get_by_text("Page not found").count() == 0
        finally:
            browser.close()


# ------------------------------------------------------------------ 2: an escalation's target by its name
def _escalation_config(courier_hook: str = "$LOWS_COURIER_WEBHOOK") -> Config:
    """The demo's shape: two audiences sharing one Slack webhook reference, one with an e-mail too."""
    return parse_config({
        "timezone": "Europe/London",
        "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}}],
        "couriers": [{"name": "UPS", "tracking_formats": ["ups"], "escalation_webhook": courier_hook}],
        "responders": {"escalation": {"targets": {
            "lead": {"email": "care-lead@larkspur.test", "slack_webhook_url": "$SLACK_TEAM_WEBHOOK"},
            "team": {"slack_webhook_url": "$SLACK_TEAM_WEBHOOK"},
        }}, "courier_link": {"enabled": False}},
    })


def test_the_timeline_names_an_escalation_by_its_target_never_its_setting(store: Store) -> None:
    from console.timeline import lines
    from responders.escalation import escalate
    from tests.test_outbox import add_order, make_case

    config = _escalation_config()
    case_id = make_case(store, config, order=add_order(store), text="@LarkspurHelp my parcel is lost")
    escalate(store, config, case_id, "team", "please look", "sam")
    escalate(store, config, case_id, "lead", None, "sam")
    escalate(store, config, case_id, "courier", "open a trace", "sam")
    messages = {m.id: m for m in store.outbound_for_case(case_id)}
    said = [words for _, words in lines(store.audit_trail(case_id), [], messages, config, config.local_time)]
    assert "sam queued: escalation to team on Slack" in said, said
    assert "sam queued: escalation to lead on Slack" in said, said
    assert "sam queued: escalation to care-lead@larkspur.test by e-mail" in said, said  # an address is its name
    assert "sam queued: escalation to UPS by webhook" in said, said
    assert not [w for w in said if "$" in w], said


# ------------------------------------------------------------------ 3: a post joining an open case
def _two_posts(store: Store, config: Config) -> int:
    pipeline = Pipeline(store, config, KeywordClassifier())
    pipeline.ingest([mention("join-1", "@FettleCare my boots are lost", author_handle="hking12")])
    pipeline.ingest([mention("join-2", "@FettleCare still nothing <b>at all</b>\n**day three**  [x](http://e.x)",
                             minutes=30, author_handle="hking12", thread_id="join-1", in_reply_to="join-1")])
    case_id = store.mention_by_external_id("x", "join-1").case_id  # type: ignore[union-attr]
    assert store.mention_by_external_id("x", "join-2").case_id == case_id  # type: ignore[union-attr]
    assert store.get_case(case_id).status in ("new", "open")  # type: ignore[union-attr]
    return case_id


def test_a_customers_post_joining_an_open_case_has_its_line(store: Store) -> None:
    from console.timeline import lines

    config = load_config(DEMO_CONFIG)
    case_id = _two_posts(store, config)
    case = store.get_case(case_id)
    assert case is not None
    said = lines(store.audit_trail(case_id), [], {}, config, config.local_time, opened_at=case.opened_at,
                 posts=store.mentions_for_case(case_id))
    assert said[0][0] == T0 and said[0][1].startswith("A new post opened this case")  # the opening post: its own line
    joined = [(at, w) for at, w in said if "posted" in w]
    assert joined == [(T0 + timedelta(minutes=30),
                       "@hking12 posted again on X: "
                       "“@FettleCare still nothing <b>at all</b> **day three** [x](http://e.x)”")]


def test_a_post_line_is_cut_and_says_a_stranger_is_not_the_customer() -> None:
    from console.timeline import lines

    config = load_config(DEMO_CONFIG)
    opened = AuditEvent(id=1, at=T0, actor="pipeline", action="case.open", case_id=1,
                        details={"external_id": "p1", "link": "none"})
    # An answer to our question, which the dialogue's own line quotes ("The customer answered ...: “YES”").
    answered = AuditEvent(id=2, at=T0 + timedelta(minutes=31), actor="dialogue", action="dialogue.answered", case_id=1,
                          details={"channel": "x_dm", "answer": "YES", "understood": "yes"})
    posts = [Mention(channel="x", external_id="p1", text="first", created_at=T0, author_handle="jane", case_id=1),
             Mention(channel="x", external_id="p2", text="same here! " * 20, created_at=T0 + timedelta(minutes=5),
                     author_handle="zed", case_id=1, by_customer=False),
             Mention(channel="x", external_id="p3", text="thanks", created_at=T0 + timedelta(minutes=9),
                     author_handle="LarkspurHelp", case_id=1, outbound=True),  # our reply: the outbox tells it
             Mention(channel="email", external_id="p4", text="any news?", created_at=T0 + timedelta(minutes=20),
                     author_handle="jane@example.com", case_id=1),
             Mention(channel="x_dm", external_id="p5", text="YES", created_at=T0 + timedelta(minutes=30),
                     author_handle="jane", case_id=1)]
    said = [w for _, w in lines([opened, answered], [], {}, config, config.local_time, opened_at=T0, posts=posts)]
    assert said[0] == "A new post opened this case" and len(said) == 4, said
    assert said[3] == "The customer answered by X direct message: “YES”, read as yes"  # said once, not twice
    # Cut at POST_QUOTE characters, after the last whole word (doorstep.text.shorten).
    assert said[1] == f"@zed posted on X (not the case's customer): “{('same here! ' * 7).strip()}…”", said[1]
    assert said[2] == "jane@example.com posted by e-mail: “any news?”"


def test_the_case_page_shows_the_post_that_joined_an_open_case(shop: Store) -> None:
    case_id = _two_posts(shop, load_config(DEMO_CONFIG))
    lines = _page_timeline(shop, case_id)
    assert any("@hking12 posted again on X: “@FettleCare still nothing" in line for line in lines), lines


# ------------------------------------------------------------------ 4: what the customer quoted
def test_a_case_we_opened_for_a_parcel_says_the_order_number_its_customer_quoted(store: Store) -> None:
    from doorstep.linking import describe_link
    from responders.followup import run_proactive
    from tests.test_outbox import NOW, add_order, make_case, shop_config

    config = shop_config(proactive={"message": False})
    add_order(store, number="ORD-2026-100234", customer_id="C1",
              events=[(NOW - timedelta(days=1), "in_transit", "Leeds"),
                      (NOW - timedelta(hours=2), "attempt_failed", "Bath")])
    [opened] = run_proactive(store, config, NOW)
    before = store.get_case(opened)
    assert before is not None
    assert describe_link(before) == "order ORD-2026-100234 · confirmed (we opened this case for its parcel)"
    joined = make_case(store, config, text="@LarkspurHelp order ORD-2026-100234, I was home all day!", handle="jane",
                       external_id="9001", created_at=NOW + timedelta(minutes=30))
    assert joined == opened
    case = store.get_case(opened)
    assert case is not None and (case.order_number, case.tracking_number) == ("ORD-2026-100234", "1Z999AA10123456784")
    assert describe_link(case) == "order ORD-2026-100234 · confirmed (its customer quoted the order number)"
    assert (case.link_confirmed, case.link_confidence) == (True, 1.0)  # the link is as sure as before


def test_a_case_we_opened_keeps_its_link_when_its_customer_quotes_another_order() -> None:
    """Only a number naming the case's own order says how it is known: another order leaves the link alone."""
    from doorstep.cases import absorb
    from doorstep.models import Case, Link

    case = Case(id=1, status="new", channel=None, customer_id="C1", order_number="LS-1", tracking_number="T1",
                link_method="tracking_number", link_confidence=1.0, link_confirmed=True)
    post = Mention(channel="x", external_id="1", text="order LS-2?", created_at=T0, author_handle="jane")
    other = Link(customer_id="C1", order_number="LS-2", method="order_number", confidence=0.95, confirmed=True)
    same = other.model_copy(update={"order_number": "LS-1"})
    guess = Link(customer_id="C1", order_number="LS-1", method="recent_order", confidence=0.7, confirmed=False)
    assert absorb(case, post, other).link_method == "tracking_number"
    assert absorb(case, post, guess).link_method == "tracking_number"
    assert absorb(case, post, same, customers=False).link_method == "tracking_number"
    assert absorb(case, post, same).link_method == "order_number"
    answered = case.model_copy(update={"channel": "x", "author_handle": "jane"})  # a case a post opened
    assert absorb(answered, post, same).link_method == "tracking_number"  # its customer did quote the parcel


# ------------------------------------------------------------------ 5: templates by name in Settings
def test_settings_lists_templates_by_name_with_the_key_small(shop: Store) -> None:
    at = run_page("settings", shop, "lee")
    assert not at.exception, at.exception
    box = at.selectbox(key="tpl_name")
    assert "ask details privately" in box.options and "ask_details_privately" not in box.options, box.options
    box.select("ask_details_privately").run()  # the choice is still the key (text boxes and saves use it)
    assert not at.exception, at.exception
    assert any("ask_details_privately" in c.value.replace("\\", "") for c in at.caption), texts(at)
    assert at.text_area(key="tpl_text_ask_details_privately").value.startswith("Hi @{{ handle }}")


def test_the_outbound_list_names_an_escalation_by_its_target_too(shop: Store) -> None:
    """The timeline said "escalation to team on Slack" but the same page's Outbound messages list still read
    "to $SLACK_TEAM_WEBHOOK" (the setting's name): both name whom it reaches."""
    from responders.escalation import escalate

    config = load_config(DEMO_CONFIG)
    Pipeline(shop, config, KeywordClassifier()).ingest([mention("out-1", "@FettleCare my boots are lost",
                                                                author_handle="hking12")])
    case_id = shop.mention_by_external_id("x", "out-1").case_id  # type: ignore[union-attr]
    escalate(shop, config, case_id, "team", "please look", "ann")
    at = run_page("case_view", shop, case_id=case_id)
    assert not at.exception, at.exception
    shown = [c.value.replace("\\", "") for c in at.caption if "escalation via" in c.value]
    assert shown and all("$" not in line for line in shown), shown
    assert any("to team" in line for line in shown), shown


def test_the_timeline_names_an_alert_by_its_channel_never_its_setting(store: Store) -> None:
    """Browser check of this stop: "The urgent complaint alert queued: alert to $SLACK_ALERTS_WEBHOOK on Slack", where
    escalations already read "escalation to team on Slack"."""
    from console.timeline import lines
    from responders.outbox import enqueue
    from tests.test_outbox import make_case

    config = _escalation_config()
    case_id = make_case(store, config, text="@LarkspurHelp my parcel is lost")
    enqueue(store, kind="alert", channel="slack", text="Urgent complaint", actor="alert:urgent_complaint",
            idempotency_key="alert-1", case_id=case_id, target="$SLACK_ALERTS_WEBHOOK")
    messages = {m.id: m for m in store.outbound_for_case(case_id)}
    said = [words for _, words in lines(store.audit_trail(case_id), [], messages, config, config.local_time)]
    assert any("alert to the alerts channel on Slack" in w for w in said), said
    assert not [w for w in said if "$" in w], said
