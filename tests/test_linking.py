"""Linking a mention to its customer, order and shipment — and not leaking someone else's order."""

from __future__ import annotations

from datetime import timedelta

import pytest

from doorstep.linking import link_mention, override_link, rank_open_orders
from doorstep.models import Case, Customer, Order, Shipment, TrackingEvent
from doorstep.store import StaleCaseError, Store

from conftest import T0, mention

UPS = "1Z999AA10123456784"
ROYAL_MAIL = "AB123456785GB"


@pytest.fixture
def shop(store: Store) -> Store:
    store.upsert_customers([
        Customer(id="ann", name="Ann", handles={"x": "ann_lee", "mastodon": "ann@social.example"}),
        Customer(id="bob", name="Bob", handles={"x": "bobroe"}),
    ])

    def shipment(number, courier, *statuses):
        events = [TrackingEvent(tracking_number=number, time=T0 + timedelta(hours=i), status=s) for i, s in enumerate(statuses)]
        return Shipment(tracking_number=number, order_number="", courier=courier, events=events)

    store.upsert_orders([
        Order(number="111111", customer_id="ann", placed_at=T0 - timedelta(days=10), shipments=[shipment(UPS, "UPS", "in_transit", "exception")]),
        Order(number="222222", customer_id="ann", placed_at=T0 - timedelta(days=1), shipments=[shipment(ROYAL_MAIL, "Royal Mail", "in_transit")]),
        Order(number="ORD-2026-000333", customer_id="bob", placed_at=T0 - timedelta(days=2)),
    ])
    return store


def test_tracking_number_in_text_links_shipment_order_and_customer(shop, config):
    link = link_mention(mention("1", f"where is {ROYAL_MAIL} please", author_handle="ann_lee"), shop, config)
    assert (link.method, link.order_number, link.tracking_number, link.customer_id, link.confirmed) == (
        "tracking_number", "222222", ROYAL_MAIL, "ann", True)


def test_tracking_number_typed_with_spaces_is_found(shop, config):
    link = link_mention(mention("1", "parcel 1Z 999 AA1 01 2345 6784 is late", author_handle="ann_lee"), shop, config)
    assert link.tracking_number == UPS


def test_wrong_check_digit_does_not_link_and_is_shown_to_the_agent(shop, config):
    link = link_mention(mention("1", "parcel 1Z999AA10123456785 lost", author_handle="nobody"), shop, config)
    assert link.method == "none" and link.order_number is None
    assert link.unmatched_numbers == ["1Z999AA10123456785"]


@pytest.mark.parametrize("text", ["my order #111111 is stuck", "order ORD-2026-000333 late"])
def test_order_number_patterns(shop, config, text):
    link = link_mention(mention("1", text, author_handle="zed"), shop, config)
    assert link.method == "order_number" and link.order_number in ("111111", "ORD-2026-000333")


def test_a_number_alone_is_a_suggestion_not_a_disclosure(shop, config):
    stranger = link_mention(mention("1", "order #111111 where??", author_handle="zed"), shop, config)
    other_customer = link_mention(mention("2", "order #111111 where??", author_handle="bobroe"), shop, config)
    assert stranger.confirmed is False and stranger.customer_id is None
    assert other_customer.confirmed is False and other_customer.customer_id == "bob"
    assert other_customer.confidence < stranger.confidence  # the handle belongs to someone else: less likely


def test_a_private_channel_confirms_a_number(shop, config):
    link = link_mention(mention("1", "order #111111 where??", channel="email", author_handle="x@example.org"), shop, config)
    assert link.confirmed and link.customer_id == "ann"


def test_a_private_message_from_another_known_customer_does_not_confirm_their_order_number(shop, config):
    """Found by the issue-13 re-check in the browser: @bobroe, known as customer Bob, sent a direct
    message quoting Ann's order number; the link became "confirmed (its customer quoted the order
    number)" beside the red "belongs to Ann, not the author", and private replies could then carry
    Ann's details to Bob. A private channel hides who else reads a number, not who wrote it: from
    someone we know to be another customer it stays a suggestion."""
    for channel in ("x_dm", "email"):
        handle = "bobroe" if channel == "x_dm" else "bob@example.org"
        if channel == "email":
            shop.upsert_customers([Customer(id="bob", name="Bob", email="bob@example.org",
                                            handles={"x": "bobroe", "email": "bob@example.org"})])
        link = link_mention(mention("1", "it's order #111111, where is it?", channel=channel, author_handle=handle),
                            shop, config)
        assert (link.order_number, link.confirmed, link.customer_id) == ("111111", False, "bob"), channel
    # Ann's own DM still confirms, and so does one from someone we do not know yet (as before).
    assert link_mention(mention("2", "order #111111?", channel="x_dm", author_handle="ann_lee"), shop, config).confirmed
    assert link_mention(mention("3", "order #111111?", channel="x_dm", author_handle="newcomer"), shop, config).confirmed


def test_unknown_numbers_are_kept_for_the_agent(shop, config):
    link = link_mention(mention("1", "order #999999 missing", author_handle="ann_lee"), shop, config)
    assert "999999" in link.unmatched_numbers
    assert link.customer_id == "ann"  # the handle still identifies her


def test_thread_inherits_the_link(shop, config):
    thread_case = Case(id=1, customer_id="ann", order_number="222222", tracking_number=ROYAL_MAIL,
                       link_method="tracking_number", link_confidence=0.97, link_confirmed=True)
    link = link_mention(mention("2", "any update?", author_handle="ann_lee", in_reply_to="1"), shop, config, thread_case)
    assert (link.method, link.order_number, link.confirmed) == ("thread", "222222", True)
    assert link.confidence < 0.97


def test_handle_only_ranks_troubled_orders_first(shop, config):
    link = link_mention(mention("1", "still nothing from you", channel="mastodon", author_handle="ann@social.example"), shop, config)
    # The older order has a courier exception, so it outranks the newer, uneventful one.
    assert (link.method, link.order_number, link.customer_id) == ("recent_order", "111111", "ann")
    assert link.confidence < 0.7  # two open orders: a guess the agent should check
    assert [o.number for o in rank_open_orders(shop.order_summaries(customer_id="ann"))] == ["111111", "222222"]


def test_a_guess_is_never_another_brands_order(shop, config):
    """Found by a user check of the demo: a post to @FettleCare was guessed as a returned Larkspur order."""
    shop.upsert_orders([Order(number="333333", customer_id="bob", placed_at=T0 - timedelta(days=1), brand="Larkspur")])
    to_fettle = link_mention(mention("1", "@FettleCare still nothing", author_handle="bobroe", matched=["Fettle"]),
                             shop, config)
    # bob's newest order is Larkspur's; his order with no brand recorded stays a candidate
    assert (to_fettle.method, to_fettle.order_number, to_fettle.customer_id) == ("recent_order", "ORD-2026-000333", "bob")
    to_larkspur = link_mention(mention("2", "@LarkspurHelp still nothing", author_handle="bobroe",
                                       matched=["Larkspur"]), shop, config)
    assert (to_larkspur.method, to_larkspur.order_number) == ("recent_order", "333333")
    unnamed = link_mention(mention("3", "still nothing", author_handle="bobroe"), shop, config)
    assert unnamed.order_number == "333333"  # no brand named: every open order is a candidate, as before
    shop.upsert_orders([Order(number="ORD-2026-000333", customer_id="bob", placed_at=T0 - timedelta(days=2),
                              brand="Larkspur")])
    only_larkspur = link_mention(mention("4", "@FettleCare hello?", author_handle="bobroe", matched=["Fettle"]),
                                 shop, config)
    assert (only_larkspur.method, only_larkspur.order_number, only_larkspur.customer_id) == ("handle", None, "bob")


def test_agent_override_confirms_and_is_audited(shop):
    case_id = shop.insert_case(Case(order_number="111111", link_method="order_number", link_confidence=0.3))
    case = override_link(shop, case_id, 1, "amy", order_number="222222", verified_how="customer confirmed by DM")
    assert (case.order_number, case.customer_id, case.tracking_number, case.link_method, case.link_confirmed) == (
        "222222", "ann", ROYAL_MAIL, "agent", True)
    assert case.courier == "Royal Mail"
    with pytest.raises(StaleCaseError):
        override_link(shop, case_id, 1, "bob", order_number="111111")
    with pytest.raises(KeyError):
        override_link(shop, case_id, case.version, "amy", order_number="nope")
