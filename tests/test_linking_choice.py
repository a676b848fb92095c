"""Which order a post is linked to: the guess for a vague complaint, and order numbers written after the word "order".

Both found by a browser check of the demo: "where's my parcel??" was guessed as a weeks-old returned order while
the customer's newer parcel was out for delivery that day; "it's order 104926 and it still hasn't come" (no "#")
was not read as an order number, so the case was not linked.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from doorstep.config import Config, load_config
from doorstep.linking import find_numbers, link_mention, rank_open_orders
from doorstep.models import Customer, Order, Shipment, TrackingEvent
from doorstep.pipeline import Pipeline
from doorstep.store import Store

from conftest import DEMO_CONFIG, T0, KeywordClassifier, mention

UPS = "1Z999AA10123456784"
ROYAL_MAIL = "AB123456785GB"
DPD = "49825979190748"  # a valid DPD parcel number: digits only


def _order(number: str, customer: str, placed_days_ago: float, tracking: str | None = None,
           *scans: tuple[float, str], status: str = "placed") -> Order:
    """An order placed ``placed_days_ago`` before T0 whose parcel had ``scans`` (days before T0, status)."""
    shipments = []
    if tracking:
        events = [TrackingEvent(tracking_number=tracking, time=T0 - timedelta(days=d), status=s) for d, s in scans]
        shipments = [Shipment(tracking_number=tracking, order_number=number, courier="UPS", events=events)]
    return Order(number=number, customer_id=customer, placed_at=T0 - timedelta(days=placed_days_ago),
                 shipments=shipments, status=status)


def _ingest(store: Store, config: Config, text: str, handle: str):  # noqa: ANN202
    """The case the real pipeline makes of one post by ``handle`` at T0."""
    Pipeline(store, config, KeywordClassifier()).ingest([mention("1", text, author_handle=handle)])
    return store.inbox()[0]


# ------------------------------------------------------------------ the guess for a vague complaint


@pytest.mark.parametrize("old_trouble", ["returned", "exception"])
def test_a_live_recent_parcel_beats_an_old_troubled_order(store: Store, config: Config, old_trouble: str) -> None:
    store.upsert_customers([Customer(id="cat", name="Cat May", handles={"x": "cat_may"})])
    store.upsert_orders([
        # weeks old: its last scan was 21 days before the post
        _order("700001", "cat", 30, UPS, (29, "in_transit"), (21, old_trouble)),
        # placed two days ago, out for delivery this morning
        _order("700003", "cat", 2, ROYAL_MAIL, (1, "in_transit"), (0.1, "out_for_delivery")),
    ])
    case = _ingest(store, config, "where's my parcel??", "cat_may")
    assert (case.order_number, case.link_method, case.link_confirmed, case.link_confidence) == (
        "700003", "recent_order", False, 0.4)
    # The ranking judges age from the time it is given (the post's), not from the clock.
    ranked = rank_open_orders(store.order_summaries(customer_id="cat"), now=T0)
    assert [o.number for o in ranked] == ["700003", "700001"]


def test_recent_trouble_still_ranks_first(store: Store, config: Config) -> None:
    store.upsert_customers([Customer(id="cat", name="Cat May", handles={"x": "cat_may"})])
    store.upsert_orders([
        _order("700010", "cat", 5, UPS, (4, "in_transit"), (1, "exception")),  # exception yesterday
        _order("700011", "cat", 3, ROYAL_MAIL, (2, "in_transit")),  # newer, in transit
    ])
    case = _ingest(store, config, "where's my parcel??", "cat_may")
    assert (case.order_number, case.link_method) == ("700010", "recent_order")


def test_a_parcel_scanned_recently_is_recent_however_long_ago_it_was_ordered(store: Store, config: Config) -> None:
    """An exception scanned two days ago on an order placed a month ago is a live problem, not an old one."""
    store.upsert_customers([Customer(id="cat", name="Cat May", handles={"x": "cat_may"})])
    store.upsert_orders([
        _order("700020", "cat", 30, UPS, (28, "in_transit"), (2, "exception")),
        _order("700021", "cat", 3, ROYAL_MAIL, (2, "in_transit")),
    ])
    link = link_mention(mention("1", "where's my parcel??", author_handle="cat_may"), store, config)
    assert (link.order_number, link.method, link.confirmed) == ("700020", "recent_order", False)


def test_an_order_placed_after_the_post_is_not_guessed(store: Store, config: Config) -> None:
    """A post linked again later (or the demo's history, built from today's shop data) is judged as of its own
    time: an order placed after it was not what it was about (the demo guessed such orders for 3 posts)."""
    store.upsert_customers([Customer(id="cat", name="Cat May", handles={"x": "cat_may"})])
    store.upsert_orders([
        _order("700030", "cat", 10, UPS, (9, "in_transit")),
        _order("700031", "cat", 1, ROYAL_MAIL, (0.5, "in_transit")),  # placed four days after the post
    ])
    post = mention("1", "where's my parcel??", minutes=-5 * 24 * 60, author_handle="cat_may")
    link = link_mention(post, store, config)
    assert (link.order_number, link.method, link.confidence) == ("700030", "recent_order", 0.7)


# ------------------------------------------------------------------ "order 104926" without a "#"


@pytest.fixture
def dans_shop(store: Store) -> Store:
    store.upsert_customers([Customer(id="dan", name="Dan Oke", handles={"x": "dan_o"}),
                            Customer(id="eve", name="Eve Ash", handles={"x": "eve_a"})])
    store.upsert_orders([
        _order("104926", "dan", 6, UPS, (5, "in_transit")),
        # Dan's newer order, which a guess would pick
        _order("104990", "dan", 1, ROYAL_MAIL, (0.5, "in_transit")),
    ])
    return store


WORDED = ["it's order 104926 and it still hasn't come", "order no. 104926 still hasn't come",
          "Order number: 104926 never arrived", "Order #104926 never arrived", "my ORDER NO 104926??",
          "my order number is 104926"]


@pytest.mark.parametrize("text", WORDED)
@pytest.mark.parametrize("shop_config", ["demo", "default"])
def test_the_number_after_the_word_order_links_the_case(dans_shop: Store, config: Config, text: str,
                                                        shop_config: str) -> None:
    cfg = load_config(DEMO_CONFIG) if shop_config == "demo" else config  # both patterns require a "#"
    case = _ingest(dans_shop, cfg, text, "dan_o")
    assert (case.order_number, case.link_method, case.link_confirmed, case.customer_id) == (
        "104926", "order_number", True, "dan")


def test_a_strangers_worded_order_number_stays_a_suggestion(dans_shop: Store, config: Config) -> None:
    """Privacy as for "#104926": anyone can type a number; it is not the author's order until shown to be."""
    link = link_mention(mention("1", "it's order 104926 and it still hasn't come", author_handle="eve_a"),
                        dans_shop, config)
    assert (link.order_number, link.method, link.confirmed, link.customer_id) == ("104926", "order_number", False, "eve")


@pytest.mark.parametrize("text", ["I'd like to order 2 items", "can I order 10 more?", "order 123 please",
                                  "my order 2026-11-14 never came", "order 12/11/2026 missing"])
def test_numbers_that_are_no_order_number_are_not_read_as_one(dans_shop: Store, config: Config, text: str) -> None:
    """No bogus "customer quoted 2: no such order" warning: the number must be shaped like the shop's order numbers."""
    assert find_numbers(text, config).order_numbers == []
    link = link_mention(mention("1", text, author_handle="dan_o"), dans_shop, config)
    assert (link.method, link.unmatched_numbers) == ("recent_order", [])


def test_an_unknown_worded_number_is_kept_for_the_agent_like_a_hashed_one(dans_shop: Store, config: Config) -> None:
    link = link_mention(mention("1", "order 555555 never came", author_handle="dan_o"), dans_shop, config)
    assert link.unmatched_numbers == ["555555"]


def test_a_shop_whose_order_numbers_are_not_plain_digits_reads_no_worded_digits(config: Config) -> None:
    cfg = config.model_copy(update={"order_patterns": [r"\b(ORD-\d{4}-\d{6})\b"]})
    assert find_numbers("order 104926 never came", cfg).order_numbers == []
    assert find_numbers("order ORD-2026-000333 never came", cfg).order_numbers == ["ORD-2026-000333"]


def test_a_tracking_number_after_the_word_order_stays_a_tracking_number(config: Config) -> None:
    """With a pattern taking any number of digits, a (valid) parcel number written as "order ..." is still a parcel."""
    cfg = config.model_copy(update={"order_patterns": [r"#(\d+)"], "couriers": []})
    found = find_numbers(f"order {DPD} never came", cfg)
    assert (found.order_numbers, found.tracking_numbers) == ([], [DPD])
