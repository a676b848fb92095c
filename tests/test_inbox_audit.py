"""The inbox and the case page as a team lead uses them on a real day (audit of the inbox, findings 1-9):
the "nobody" / "no post yet" / "no courier" filters, the composer starting on the customer's newest post,
the row naming that post's own channel, counts that follow the live list, "Assign to me" on a colleague's
case, search by any handle of the customer, J / K / X past the page of 50, and bidi controls shown as marks.

A shop of 60 open cases (more than a page) on SQLite and on PostgreSQL; case CARYS is a customer who asked
on Bluesky and complained later on X, with a stranger writing in her Bluesky thread after her."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from console.auth import add_user
from console.inbox import counts_from_summary, inbox_rows
from console.widgets import escape_md, plain
from doorstep.config import load_config
from doorstep.models import Case, Customer, Mention, utcnow
from doorstep.store import InboxQuery, Store
from tests.conftest import DEMO_CONFIG, console_copy, labels, run_page, sign_in, template_target, texts

OPEN = 60
PASSWORD = "correct horse battery"
#: Case ids of the template (insert order).
CARYS, SAMS, BIDI, PROACTIVE = 1, 2, 3, 4
RLO_NAME = "\u202eevil name\u202c سارة"
RLO_TEXT = "order LS-1 \u202eABC my parcel is late\u202c please"


def _shop(store: Store) -> None:
    """60 open cases: every third assigned to jo, sam's case, couriers on some, one proactive case
    (no channel, no post yet); Carys's cross-network case; a post and a name with bidi overrides."""
    for username, role in (("priya", "agent"), ("sam", "agent"), ("jo", "agent"), ("lee", "lead")):
        add_user(store, username, PASSWORD, role=role, name=username.title(), rounds=4)
    now = utcnow()
    store.upsert_customer(Customer(id="C-467", name="Carys Byrne",
                                   handles={"x": "carys93", "bluesky": "carys93.bsky.social", "mastodon": "carys@toot.example"}))
    base = {"status": "new", "brand": "Larkspur Home", "last_activity_at": now, "resolution_due": now + timedelta(days=2),
            "mention_count": 1}
    carys = store.insert_case(Case(channel="bluesky", author_handle="carys93.bsky.social", customer_id="C-467",
                                   priority=99.0, opened_at=now - timedelta(hours=3),
                                   first_response_due=now + timedelta(hours=1), courier="UPS", **base))
    store.insert_mention(Mention(channel="bluesky", external_id="at://carys/1", text="Is my order on its way?",
                                 created_at=now - timedelta(hours=3), author_handle="carys93.bsky.social",
                                 author_name="Carys Byrne", thread_id="at://carys/1", case_id=carys,
                                 labels=labels("where_is_my_order")))
    store.insert_mention(Mention(channel="x", external_id="987", text="@LarkspurHelp Twice now UPS have 'tried' to deliver",
                                 created_at=now - timedelta(minutes=40), author_handle="carys93", author_name="Carys",
                                 thread_id="987", case_id=carys, labels=labels("failed_delivery", "negative", True)))
    store.insert_mention(Mention(channel="bluesky", external_id="at://stranger/2", text="same here, awful courier",
                                 created_at=now - timedelta(minutes=10), author_handle="someone.bsky.social",
                                 thread_id="at://carys/1", case_id=carys, labels=labels()))
    sams = store.insert_case(Case(channel="x", author_handle="ollie_k", assignee="sam", priority=98.0,
                                  opened_at=now - timedelta(hours=2), first_response_due=now + timedelta(hours=2), **base))
    store.insert_mention(Mention(channel="x", external_id="sam-1", text="where is my lamp", created_at=now - timedelta(hours=2),
                                 author_handle="ollie_k", thread_id="sam-1", case_id=sams, labels=labels("late_delivery")))
    bidi = store.insert_case(Case(channel="x", author_handle="sara_b", priority=97.0, opened_at=now - timedelta(hours=1),
                                  first_response_due=now + timedelta(hours=3), **base))
    store.insert_mention(Mention(channel="x", external_id="bidi-1", text=RLO_TEXT, created_at=now - timedelta(hours=1),
                                 author_handle="sara_b", author_name=RLO_NAME, thread_id="bidi-1", case_id=bidi,
                                 labels=labels("late_delivery")))
    proactive = store.insert_case(Case(priority=96.0, opened_at=now, first_response_due=now + timedelta(hours=4),
                                       courier="DPD", **{**base, "mention_count": 0}))
    assert (carys, sams, bidi, proactive) == (CARYS, SAMS, BIDI, PROACTIVE)
    for n in range(5, OPEN + 1):
        case_id = store.insert_case(Case(
            channel="x", author_handle=f"shopper{n}", priority=float(100 - n), opened_at=now - timedelta(minutes=n),
            first_response_due=now + timedelta(hours=5, minutes=n), assignee="jo" if n % 3 == 0 else None,
            courier="DPD" if n % 2 else None, **base))
        store.insert_mention(Mention(channel="x", external_id=f"m{n}", text=f"question {n} about a parcel",
                                     created_at=now - timedelta(minutes=n), author_handle=f"shopper{n}",
                                     thread_id=f"m{n}", case_id=case_id, labels=labels()))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shop_template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = template_target(request, tmp_path_factory.mktemp("audit"), "shop.db")
    store = Store(path)
    _shop(store)
    store.close()
    return path


@pytest.fixture
def shop(shop_template: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Store:
    return console_copy(shop_template, request, monkeypatch, tmp_path, "shop.db")


def listed(at: AppTest) -> list[int]:
    return [int(o.split("#")[1].split()[0]) for o in at.selectbox(key="inbox_pick").options]


# ------------------------------------------------------------------ 1. "(none)": nobody, no post yet, no courier
@pytest.mark.parametrize("column", ["assignee", "channel", "courier"])
def test_none_filter_lists_the_cases_without_a_value(shop: Store, column: str) -> None:
    want = sorted(c.id for c in shop.inbox(InboxQuery(limit=500)) if getattr(c, column) is None)
    assert want and shop.inbox_facets(column, InboxQuery())["(none)"] == len(want)
    query = InboxQuery(limit=500, **{column: "(none)"})
    assert sorted(c.id for c in shop.inbox(query)) == want
    assert shop.inbox_count(query) == len(want)
    # the counts beside the filters, from the summary, agree with the list
    filters = {column: "(none)"}
    counts = counts_from_summary(shop.inbox_summary(InboxQuery()), filters)
    assert counts["total"] == len(want) and counts[column]["(none)"] == len(want)
    assert counts["brand"] == {"Larkspur Home": len(want)}


def test_nobody_filter_in_the_inbox_lists_and_counts_the_unassigned(shop: Store) -> None:
    at = run_page("inbox", shop, "lee")
    at.selectbox(key="inbox_assignee").select("(none)").run()
    unassigned = [c.id for c in shop.inbox(InboxQuery(limit=50, assignee="(none)"))]
    n = shop.inbox_count(InboxQuery(assignee="(none)"))
    assert n > 30 and listed(at) == unassigned
    assert f"{n} case(s)" in texts(at) and "No cases match" not in texts(at)
    assert f"{n} of {OPEN}: nobody {n}" in texts(at)
    assert f"{n}: Larkspur Home {n}" in texts(at)  # the other filters count under "nobody" too


# ------------------------------------------------------------------ 2. the composer starts on the newest post
def test_composer_starts_on_the_customers_newest_post_and_its_channel(shop: Store) -> None:
    at = run_page("case_view", shop, "priya", case_id=CARYS)
    assert not at.exception
    assert at.radio(key=f"reply_channel_{CARYS}").value == "x"  # not the case's Bluesky
    x_post = next(m for m in shop.mentions_for_case(CARYS) if m.external_id == "987")
    assert at.selectbox(key=f"reply_parent_{CARYS}").value == x_post.id


# ------------------------------------------------------------------ 3. the row names the post's own channel
def test_row_shows_the_customers_newest_post_with_its_own_channel(shop: Store) -> None:
    cases = [shop.get_case(CARYS), shop.get_case(SAMS)]
    rows, _ = inbox_rows(shop, load_config(DEMO_CONFIG), cases, utcnow())
    # her X complaint (not the stranger's later Bluesky post), labelled X (not the case's Bluesky)
    assert rows[0]["newest post"] == "[X] Twice now UPS have 'tried' to deliver"
    assert rows[0]["customer"] == "Carys Byrne · @carys93.bsky.social"
    assert rows[1]["newest post"] == "[X] where is my lamp"


# ------------------------------------------------------------------ 4. counts follow the live list
LIVE_SCRIPT = """
import streamlit as st
from console import inbox
if st.session_state.get("_fragment_only"):
    slots = {k: st.empty() for k in ("status", *inbox.FACETS, "sla_state", "waiting", "pick")}
    inbox._live_list(slots)
else:
    inbox.render()
"""


def test_live_list_redraws_the_counts_beside_the_filters(shop: Store) -> None:
    at = AppTest.from_string(LIVE_SCRIPT, default_timeout=30)
    sign_in(at, shop, "priya")
    at.run()
    nobody = len([c for c in shop.inbox(InboxQuery(limit=500)) if c.assignee is None])
    assert f"{OPEN}: Larkspur Home {OPEN}" in texts(at) and f"new {OPEN}" in texts(at)
    # sam takes an unassigned case and resolves another while priya's inbox stays open
    taken, resolved = [c.id for c in shop.inbox(InboxQuery(limit=100)) if c.assignee is None][:2]
    shop.update_case(taken, shop.get_case(taken).version, "sam", assignee="sam")  # type: ignore[union-attr]
    shop.update_case(resolved, shop.get_case(resolved).version, "sam", status="resolved")  # type: ignore[union-attr]
    at.session_state["_fragment_only"] = True  # what the 5-second tick runs
    at.run()
    assert not at.exception
    shown = texts(at)
    assert f"{OPEN - 1} case(s)" in shown
    assert f"{OPEN - 1}: Larkspur Home {OPEN - 1}" in shown and f"{OPEN}:" not in shown  # the list's total
    assert f"new {OPEN - 1}" in shown and f"{OPEN - 1}: nobody {nobody - 2}" in shown
    assert resolved not in listed(at)  # "Case to open" follows the live list too


# ------------------------------------------------------------------ 5. "Assign to me" on a colleague's case
def test_agent_is_not_offered_a_colleagues_case(shop: Store) -> None:
    at = run_page("case_view", shop, "priya", case_id=SAMS)
    assert not [b for b in at.button if b.key == f"assign_me_{SAMS}"]
    assert "sam has this case; a lead can reassign it." in texts(at)
    lead = run_page("case_view", shop, "lee", case_id=SAMS)
    assert [b for b in lead.button if b.key == f"assign_me_{SAMS}"]
    mine = run_page("case_view", shop, "priya", case_id=CARYS)  # an unassigned case: as before
    mine.button(key=f"assign_me_{CARYS}").click().run()
    assert shop.get_case(CARYS).assignee == "priya"  # type: ignore[union-attr]


def test_assign_to_me_checks_the_case_as_it_acts(shop: Store) -> None:
    """Drawn while the case was nobody's; sam takes it before priya presses A: not taken, and she is told whose it is."""
    at = run_page("case_view", shop, "priya", case_id=CARYS)
    shop.update_case(CARYS, shop.get_case(CARYS).version, "sam", assignee="sam")  # type: ignore[union-attr]
    at.button(key=f"assign_me_{CARYS}").click().run()
    assert shop.get_case(CARYS).assignee == "sam"  # type: ignore[union-attr]
    assert "sam has this case; a lead can reassign it." in texts(at)


# ------------------------------------------------------------------ 6. search by any handle of the customer
@pytest.mark.parametrize("typed", ["carys93", "@carys93", "CARYS93", "carys@toot.example", "carys93.bsky.social"])
def test_exact_handle_finds_the_case_it_wrote_in_or_its_customers(shop: Store, typed: str) -> None:
    assert shop.search_cases(typed) == [CARYS]
    assert [c.id for c in shop.inbox(InboxQuery(search=typed))] == [CARYS]


# ------------------------------------------------------------------ 8. J / K and X past the page of 50
NAV_SCRIPT = """
import streamlit as st
from console import case_view, inbox
if st.query_params.get("id"):
    case_view.render()
else:
    inbox.render()
"""


def _on_case(shop: Store, case_id: int) -> AppTest:
    at = AppTest.from_string(NAV_SCRIPT, default_timeout=30)
    sign_in(at, shop, "priya")
    at.run()
    assert len(at.session_state["_inbox_ids"]) == 50
    at.query_params["id"] = str(case_id)
    return at.run()


def test_next_walks_past_the_page_of_50(shop: Store) -> None:
    queue = [c.id for c in shop.inbox(InboxQuery(limit=100))]
    at = _on_case(shop, queue[49])
    assert not at.button(key="case_next").disabled
    at.button(key="case_next").click().run()
    assert at.query_params["id"] == [str(queue[50])] or at.query_params["id"] == str(queue[50])
    assert not at.button(key="case_previous").disabled
    at.button(key="case_previous").click().run()
    assert str(queue[49]) in str(at.query_params["id"])


def test_resolve_and_next_goes_to_the_51st_case(shop: Store) -> None:
    queue = [c.id for c in shop.inbox(InboxQuery(limit=100))]
    at = _on_case(shop, queue[49])
    at.button(key=f"resolve_next_{queue[49]}").click().run()
    assert shop.get_case(queue[49]).status == "resolved"  # type: ignore[union-attr]
    assert str(queue[50]) in str(at.query_params["id"])
    assert f"case #{queue[49]} resolved" in texts(at)


# ------------------------------------------------------------------ 9. bidi controls shown as marks
def test_bidi_controls_are_shown_as_marks_and_arabic_is_left_alone() -> None:
    assert plain(RLO_NAME) == "⟨RLO⟩evil name⟨PDF⟩ سارة"
    assert plain("\u2067abc\u2069") == "⟨RLI⟩abc⟨PDI⟩"
    for arabic in ("طلبي لم يصل بعد", "ההזמנה שלי לא הגיעה", "\u200fשלום\u200e"):
        assert plain(arabic) == arabic and escape_md(arabic) == arabic
    assert "\u202e" not in escape_md(RLO_TEXT) and "⟨RLO⟩ABC my parcel is late⟨PDF⟩" in escape_md(RLO_TEXT)


def test_case_page_and_inbox_show_no_bidi_control(shop: Store) -> None:
    at = run_page("case_view", shop, "priya", case_id=BIDI)
    shown = texts(at) + " ".join(str(o) for s in at.selectbox for o in s.options)
    assert "⟨RLO⟩evil name⟨PDF⟩ سارة" in shown and "⟨RLO⟩ABC my parcel is late⟨PDF⟩" in shown
    assert not any(c in shown for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    rows, _ = inbox_rows(shop, load_config(DEMO_CONFIG), [shop.get_case(BIDI)], utcnow())
    assert rows[0]["newest post"] == "[X] order LS-1 ⟨RLO⟩ABC my parcel is late⟨PDF⟩ please"

