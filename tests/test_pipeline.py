"""A mention's path: stored once, classified, linked to its order, grouped into a case, prioritised."""

from __future__ import annotations

from datetime import timedelta

import pytest

from doorstep.models import Customer, Order, Shipment, TrackingEvent
from doorstep.pipeline import Pipeline
from doorstep.store import InboxQuery, Store

from conftest import T0, KeywordClassifier, mention

UPS = "1Z999AA10123456784"


@pytest.fixture
def shop(store: Store) -> Store:
    store.upsert_customers(
        [
            Customer(id="c-ann", name="Ann Lee", email="ann@example.org", handles={"x": "ann_lee"}),
            Customer(id="c-bob", name="Bob Roe", handles={"x": "bobroe"}, vip=True),
        ]
    )
    events = [
        TrackingEvent(tracking_number=UPS, time=T0 - timedelta(days=3), status="info_received"),
        TrackingEvent(tracking_number=UPS, time=T0 - timedelta(days=1), status="attempt_failed", description="No one home"),
    ]
    store.upsert_orders(
        [
            Order(number="123456", customer_id="c-ann", placed_at=T0 - timedelta(days=4), brand="Larkspur", total=250,
                  shipments=[Shipment(tracking_number=UPS, order_number="123456", courier="UPS", events=events)]),
            Order(number="654321", customer_id="c-bob", placed_at=T0 - timedelta(days=2), brand="Fettle", total=40),
        ]
    )
    return store


@pytest.fixture
def pipeline(shop: Store, config) -> Pipeline:
    return Pipeline(shop, config, KeywordClassifier())


def test_same_post_twice_is_stored_once(pipeline: Pipeline):
    first = pipeline.ingest([mention("1", "where is my parcel @LarkspurHelp")])
    again = pipeline.ingest([mention("1", "where is my parcel @LarkspurHelp"), mention("1", "duplicate in one batch")])
    assert (first.stored, again.stored, again.duplicates) == (1, 0, 2)
    assert pipeline.store.count("mentions") == 1


def test_tracking_number_from_the_owner_links_and_confirms(pipeline: Pipeline):
    pipeline.ingest([mention("1", f"@UPSHelp where is {UPS}?? lost?", author_handle="ann_lee")])
    case = pipeline.store.inbox()[0]
    assert (case.order_number, case.tracking_number, case.customer_id) == ("123456", UPS, "c-ann")
    assert (case.link_method, case.link_confirmed, case.courier, case.brand) == ("tracking_number", True, "UPS", "Larkspur")


def test_someone_elses_order_number_is_only_a_suggestion(pipeline: Pipeline):
    pipeline.ingest([mention("1", "my order #123456 is late", author_handle="bobroe")])
    case = pipeline.store.inbox()[0]
    assert case.order_number == "123456"
    assert case.link_confirmed is False
    assert case.customer_id == "c-bob"  # the author is still known by handle
    assert case.link_confidence < 0.5


def test_handle_only_links_to_the_customers_troubled_order(pipeline: Pipeline):
    pipeline.ingest([mention("1", "where is my stuff, so late", author_handle="ANN_LEE")])
    case = pipeline.store.inbox()[0]
    assert (case.customer_id, case.order_number, case.link_method) == ("c-ann", "123456", "recent_order")


def test_replies_join_the_thread_case_and_inherit_its_order(pipeline: Pipeline):
    pipeline.ingest([mention("1", f"lost parcel {UPS}", author_handle="ann_lee")])
    pipeline.ingest([mention("2", "any news?? still waiting", minutes=30, author_handle="ann_lee", in_reply_to="1")])
    assert pipeline.store.count("cases") == 1
    case = pipeline.store.inbox()[0]
    assert case.mention_count == 2
    assert [m.external_id for m in pipeline.store.mentions_for_case(case.id)] == ["1", "2"]
    assert "repeat contact (+8)" in case.priority_reasons


def test_our_own_reply_joins_the_thread_and_stops_the_first_response_clock(pipeline: Pipeline):
    pipeline.ingest([mention("1", "where is my order", author_handle="someone")])
    pipeline.ingest([mention("2", "Sorry! DM us your order number", minutes=12, author_handle="LarkspurHelp",
                             in_reply_to="1", outbound=True)])
    case = pipeline.store.inbox()[0]
    assert pipeline.store.count("cases") == 1
    assert case.first_response_at == T0 + timedelta(minutes=12)


def test_a_reply_in_its_thread_reopens_a_resolved_case(pipeline: Pipeline):
    pipeline.ingest([mention("1", "where is my order", author_handle="bobroe")])
    case = pipeline.store.inbox()[0]
    pipeline.store.update_case(case.id, case.version, "amy", status="resolved", resolved_at=T0 + timedelta(minutes=30))
    assert pipeline.store.inbox() == []
    pipeline.ingest([mention("2", "it is still late!", minutes=60, author_handle="bobroe", in_reply_to="1")])
    reopened = pipeline.store.inbox()
    assert [c.id for c in reopened] == [case.id] and reopened[0].status == "open"
    assert "case.reopen" in [e.action for e in pipeline.store.audit_trail(case.id)]


def test_priority_is_explained_and_orders_the_inbox(pipeline: Pipeline):
    pipeline.ingest(
        [
            mention("1", "thank you, lovely service", author_handle="fan"),
            mention("2", f"my parcel {UPS} is lost", author_handle="ann_lee", minutes=1),
            mention("3", "where is it", author_handle="bobroe", minutes=2, author_followers=50_000),
        ]
    )
    inbox = pipeline.store.inbox()
    assert [c.author_handle for c in inbox][-1] == "fan"
    lost = next(c for c in inbox if c.author_handle == "ann_lee")
    reasons = " ".join(lost.priority_reasons)
    for factor in ("complaint", "lost or missing parcel", "failed delivery attempt on shipment", "order value"):
        assert factor in reasons
    vip = next(c for c in inbox if c.author_handle == "bobroe")
    assert any("followers" in r for r in vip.priority_reasons) and any("VIP" in r for r in vip.priority_reasons)
    assert lost.first_response_due < inbox[-1].first_response_due  # tighter SLA for higher priority


def test_brand_and_courier_are_matched_from_handles_and_keywords(pipeline: Pipeline):
    pipeline.ingest([mention("1", "@RoyalMailHelp lost my Fettle jacket", author_handle="x1")])
    stored = pipeline.store.mention_by_external_id("x", "1")
    assert set(stored.matched) == {"Fettle", "Royal Mail"}
    case = pipeline.store.inbox(InboxQuery(courier="Royal Mail"))
    assert len(case) == 1 and case[0].brand == "Fettle"


def test_priority_stays_below_100_and_more_reasons_still_rank_higher(config):
    from doorstep.cases import PriorityInputs, score_priority

    from conftest import labels

    bad = PriorityInputs(labels=labels("lost_or_missing", "negative", True, 0.9), followers=50_000, vip=True,
                         order_total=300, shipment_events=frozenset({"exception"}), contacts=2)
    worse = PriorityInputs(labels=labels("lost_or_missing", "negative", True, 0.9), followers=50_000, vip=True,
                           order_total=300, shipment_events=frozenset({"exception"}), contacts=3)
    calm = PriorityInputs(labels=labels("praise", "positive", False, 0.0))
    s_bad, s_worse, s_calm = (score_priority(i, config)[0] for i in (bad, worse, calm))
    assert s_calm == 10.0  # nothing but the base
    assert 90 < s_bad < s_worse < 100


def test_a_post_with_a_nul_character_is_stored_without_it_on_either_store(store: Store, config) -> None:  # noqa: ANN001
    """PostgreSQL's text cannot hold NUL: one post with "\\x00" failed its whole ingest batch on every
    retry, and the posts around it were lost (listener audit, 2026-12-06). The NUL goes; the post stays."""
    from doorstep.models import Mention

    posts = [mention("ok-1", "@LarkspurHelp where is my parcel?"),
             Mention(channel="x", external_id="nul-1", text="@LarkspurHelp my parcel\x00 is lost", created_at=T0,
                     author_handle="nul\x00user", raw={"data": {"text": "my parcel\x00 is lost"}}),
             mention("ok-2", "@LarkspurHelp still nothing")]
    Pipeline(store, config, KeywordClassifier()).ingest(posts)
    stored = store.mention_by_external_id("x", "nul-1")
    assert stored is not None and stored.text == "@LarkspurHelp my parcel is lost" and stored.author_handle == "nuluser"
    assert stored.raw == {"data": {"text": "my parcel is lost"}}
    assert store.mention_by_external_id("x", "ok-1") is not None and store.mention_by_external_id("x", "ok-2") is not None
