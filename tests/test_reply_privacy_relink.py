"""Public replies after a relink, other people's contact details, and our own replies already on the network
(two-brand audit, findings F1, F2 and F4).

F1: relinked to someone else's order, the case stopped protecting the author's own order: "your order 105313
(cast-iron casserole dish, ...)" was refused, then queued and posted once the case named another order.
F2: another customer's e-mail address and phone number went out in a public reply ("it went to a neighbour:
Emily Thompson, emily.thompson13@example.net, 07700 900485").
F4: a post @LarkspurHelp had already answered on X (a stored outbound post) was answered a second time with no
warning, and that answer stopped the response clock of the customer's newer, unanswered post.

Assertions are on what the X emulator received where a reply could have gone out.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from doorstep.config import parse_config
from doorstep.linking import override_link
from doorstep.models import Customer, Mention, Order, Shipment, TrackingEvent
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from standins.x_emulator import XEmulator
from responders.outbox import AlreadyAnswered, Outbox, ReplyRejected, queue_reply

from conftest import KeywordClassifier
from test_outbox import NOW, add_order, emulator, make_case, shop_config  # noqa: F401 - fixtures


def _order_of(store: Store, customer: Customer, number: str, tracking: str, item: str) -> None:
    """An order of ``customer`` (add_order gives every customer the handle @jane: here only Jane has it)."""
    store.upsert_customers([customer])
    order = Order(number=number, customer_id=customer.id, placed_at=NOW - timedelta(days=4), brand="Larkspur",
                  items=[{"name": item, "quantity": 1}], total=30.0,
                  shipments=[Shipment(tracking_number=tracking, order_number=number, courier="UPS", events=[
                      TrackingEvent(tracking_number=tracking, time=NOW - timedelta(days=1), status="in_transit",
                                    location="Leeds hub")])])
    store.upsert_orders([order])
    store.upsert_shipment(order.shipments[0])


def _euans_order(store: Store) -> None:
    _order_of(store, Customer(id="C9", name="Euan Watson", email="euan@example.com", phone="+447700900999",
                              handles={"x": "euanw"}), "104233", "1Z999AA10123456700", "Walnut desk lamp")


def _posted(emulator: XEmulator, store: Store, config) -> list[str]:  # noqa: ANN001
    Outbox(store, config).send_due()
    return [p["text"] for p in emulator.posted]


# ---------------------------------------------------------------------------------------------------- F1
def test_relinking_to_another_customers_order_keeps_the_authors_own_order_out_of_public_replies(
        store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    janes = add_order(store)  # Jane Doe (@jane): LS-100234, 1Z999AA10123456784, "Linen shirt"
    _euans_order(store)
    case_id = make_case(store, config, emulator, text="@LarkspurHelp where is my parcel?", handle="jane", order=janes)
    text = "@jane your order LS-100234 (linen shirt) is on its way"
    with pytest.raises(ReplyRejected, match="LS-100234"):
        queue_reply(store, config, case_id, text, "ann")
    case = store.get_case(case_id)
    relinked = override_link(store, case_id, case.version, "ann", order_number="104233")  # type: ignore[union-attr]
    assert relinked.order_number == "104233" and not relinked.link_confirmed
    for words, named in ((text, "LS-100234"), ("@jane tracking 1Z999AA10123456784 shows it moving", "1Z999AA10123456784"),
                         ("@jane your linen shirt is on its way", "Linen shirt")):
        with pytest.raises(ReplyRejected, match=named):
            queue_reply(store, config, case_id, words, "ann", force=True)
    assert _posted(emulator, store, config) == []


def test_the_order_the_case_was_linked_to_before_stays_out_of_public_replies(
        store: Store, emulator: XEmulator) -> None:
    """The audit trail keeps the relinks: an order the case named before is still nobody's business in public."""
    config = shop_config()
    add_order(store)  # Jane's LS-100234 (not the author's: the author is @sienna_l, with no customer record)
    _euans_order(store)
    case_id = make_case(store, config, emulator, text="@LarkspurHelp parcel missing, refund pls", handle="sienna_l")
    case = override_link(store, case_id, store.get_case(case_id).version, "ann", order_number="104233")  # type: ignore[union-attr]
    override_link(store, case_id, case.version, "ann", order_number="LS-100234")
    with pytest.raises(ReplyRejected, match="104233"):
        queue_reply(store, config, case_id, "@sienna_l order 104233 is on its way", "ann")
    assert _posted(emulator, store, config) == []


def test_the_authors_other_order_may_be_said_back_where_they_posted_it_publicly(
        store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    add_order(store)
    _euans_order(store)
    case_id = make_case(store, config, emulator, text="@LarkspurHelp where is LS-100234? my linen shirt is late",
                        handle="jane")
    case = store.get_case(case_id)
    override_link(store, case_id, case.version, "ann", order_number="104233")  # type: ignore[union-attr]
    queue_reply(store, config, case_id, "@jane your linen shirt (LS-100234) left the Leeds hub yesterday", "ann")
    assert _posted(emulator, store, config) == ["@jane your linen shirt (LS-100234) left the Leeds hub yesterday"]


# ---------------------------------------------------------------------------------------------------- F2
def _emily(store: Store) -> None:
    _order_of(store, Customer(id="C66", name="Emily Thompson", email="emily.thompson13@example.net",
                              phone="07700 900485", handles={"x": "emthompson"}),
              "LS-200001", "1Z999AA10123456799", "Oak side table")


@pytest.mark.parametrize("text", [
    "@jane UPS left it with your neighbour at emily.thompson13@example.net",
    "@jane UPS left it with your neighbour, call 07700 900485",
    "@jane UPS left it with your neighbour, call +44 7700 900485",
    "@jane UPS left it with your neighbour (07700) 900.485",
    "@jane it went to a neighbour: emily.thompson13@example.net, 07700 900485",
    "@jane write to someone@elsewhere.example or ring 0161 496 0000",  # nobody's record: still a shape
])
def test_no_email_address_or_phone_number_in_a_public_reply(store: Store, emulator: XEmulator, text: str) -> None:
    config = shop_config()
    order = add_order(store)
    _emily(store)
    case_id = make_case(store, config, emulator, text="@LarkspurHelp where is my parcel?", handle="jane", order=order)
    with pytest.raises(ReplyRejected, match="e-mail address or phone number") as refused:
        queue_reply(store, config, case_id, text, "ann", force=True)
    assert "\n" not in str(refused.value) and "privately" in str(refused.value)
    assert _posted(emulator, store, config) == []


def test_what_the_author_posted_and_our_own_address_may_be_said_in_public(store: Store, emulator: XEmulator) -> None:
    config = parse_config({
        "timezone": "Europe/London",
        "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}, "keywords": ["larkspur"],
                    "email": "help@larkspur.example"}],
        "couriers": [{"name": "UPS", "handles": {"x": "UPSHelp"}, "tracking_formats": ["ups"]}],
    })
    order = add_order(store)
    case_id = make_case(store, config, emulator, handle="jane", order=order,
                        text="@LarkspurHelp where is LS-100234? call me on 07700 900111 or mail me at jd1984@work.example")
    allowed = ("@jane we'll ring you on +44 7700 900111 today",
               "@jane we've written to jd1984@work.example; or mail us at help@larkspur.example")
    queue_reply(store, config, case_id, allowed[0], "ann")
    queue_reply(store, config, case_id, allowed[1], "ann", force=True)
    # Numbers that are not phone numbers pass: an order the author posted, a date, a time, a price.
    queue_reply(store, config, case_id, "@jane LS-100234 is due 2026-11-18 by 14:30, refund of £60.00 if not",
                "ann", force=True)
    assert _posted(emulator, store, config)[:2] == list(allowed)


def test_the_customer_of_the_pipelines_first_link_stays_out_of_public_replies_after_a_relink(
        store: Store, emulator: XEmulator) -> None:
    """The pipeline's first link was not in the audit trail (only how it was made): relinked, the case forgot
    that Euan's order, and Euan, had been on it, and a public reply could name him."""
    config = shop_config()
    add_order(store)  # Jane Doe's LS-100234
    _euans_order(store)  # Euan Watson's 104233
    case_id = make_case(store, config, emulator, text="@LarkspurHelp order #104233 never came", handle="sienna_l")
    first = store.get_case(case_id)
    assert first.order_number == "104233" and not first.link_confirmed  # type: ignore[union-attr]
    override_link(store, case_id, first.version, "ann", order_number="LS-100234")  # type: ignore[union-attr]
    with pytest.raises(ReplyRejected, match="Euan"):
        queue_reply(store, config, case_id, "@sienna_l we asked Euan Watson's courier, it is on its way", "ann")
    assert _posted(emulator, store, config) == []


def test_our_brands_published_phone_number_may_be_given_in_public(store: Store, emulator: XEmulator) -> None:
    """Any phone number was refused in public, the shop's own helpline too (no setting named one): a brand's
    ``phone`` in doorstep.toml is ours to give, in any spelling; any other number is still refused."""
    config = parse_config({
        "timezone": "Europe/London",
        "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}, "keywords": ["larkspur"],
                    "phone": "+44 800 123 4567"}],
        "couriers": [{"name": "UPS", "handles": {"x": "UPSHelp"}, "tracking_formats": ["ups"]}],
    })
    case_id = make_case(store, config, emulator, handle="jane", order=add_order(store))
    queue_reply(store, config, case_id, "@jane so sorry! Call us free on 0800 123 4567, we'll sort it", "ann")
    with pytest.raises(ReplyRejected, match="07700 900485"):
        queue_reply(store, config, case_id, "@jane or call our driver on 07700 900485", "ann", force=True)
    assert _posted(emulator, store, config) == ["@jane so sorry! Call us free on 0800 123 4567, we'll sort it"]


# ---------------------------------------------------------------------------------------------------- F4
def _our_reply_on_x(store: Store, config, case_id: int, minutes: int) -> Mention:  # noqa: ANN001
    """@LarkspurHelp answered the case's first post in X's own app: the stream stores it as an outbound post."""
    root = store.get_mention(min(m.id for m in store.mentions_for_case(case_id)))  # type: ignore[type-var]
    ours = Mention(channel="x", external_id=f"ours-{minutes}", outbound=True, author_handle="LarkspurHelp",
                   text="@jane Oh no, sorry Jane! Please DM us a photo", created_at=NOW + timedelta(minutes=minutes),
                   thread_id=root.thread_id or root.external_id, in_reply_to=root.external_id)
    Pipeline(store, config, KeywordClassifier()).ingest([ours])
    stored = store.mention_by_external_id("x", ours.external_id)
    assert stored is not None and stored.case_id == case_id and stored.outbound
    return root


def test_a_post_we_already_answered_on_x_is_not_answered_again_without_a_warning(
        store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    case_id = make_case(store, config, emulator, text="@LarkspurHelp wrong item in my parcel, how do I return it?")
    root = _our_reply_on_x(store, config, case_id, 10)
    with pytest.raises(AlreadyAnswered, match="our reply on X at 10:10 UTC") as refused:
        queue_reply(store, config, case_id, "@jane you can return it free", "ann", parent_id=root.id, seen_up_to=0)
    assert "Please DM us a photo" in str(refused.value)
    assert _posted(emulator, store, config) == []
    forced = queue_reply(store, config, case_id, "@jane you can return it free", "ann", parent_id=root.id,
                         seen_up_to=0, force=True, acknowledged_up_to=refused.value.latest)
    assert _posted(emulator, store, config) == ["@jane you can return it free"]
    event = next(e for e in store.audit_trail(case_id) if e.action == "reply.send_anyway")
    assert event.details["message_id"] == forced.id and event.details["network_replies"]


def test_answering_an_old_post_keeps_the_clock_of_the_newer_unanswered_one(
        store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    case_id = make_case(store, config, emulator, text="@LarkspurHelp wrong item in my parcel, how do I return it?")
    root = _our_reply_on_x(store, config, case_id, 10)
    newer = make_case(store, config, emulator, text="@LarkspurHelp is my other order on its way? need it Saturday",
                      created_at=NOW + timedelta(hours=2))
    assert newer == case_id
    waiting = store.get_case(case_id)
    assert waiting.next_response_due is not None and waiting.awaiting_since == NOW + timedelta(hours=2)  # type: ignore[union-attr]
    queue_reply(store, config, case_id, "@jane you can return it free", "ann", parent_id=root.id, force=True)
    assert _posted(emulator, store, config) == ["@jane you can return it free"]
    after = store.get_case(case_id)
    assert after.next_response_due == waiting.next_response_due  # type: ignore[union-attr]
    assert after.awaiting_since == waiting.awaiting_since  # type: ignore[union-attr]
    assert after.status != "pending_customer"  # type: ignore[union-attr]


def test_answering_the_first_of_two_unanswered_posts_starts_the_clock_of_the_second(
        store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    case_id = make_case(store, config, emulator, text="@LarkspurHelp wrong item in my parcel, how do I return it?")
    first = store.get_mention(min(m.id for m in store.mentions_for_case(case_id)))  # type: ignore[type-var]
    assert make_case(store, config, emulator, text="@LarkspurHelp also, is my other order on its way?",
                     created_at=NOW + timedelta(hours=1)) == case_id
    queue_reply(store, config, case_id, "@jane you can return it free. Anything else?", "ann", parent_id=first.id)  # type: ignore[union-attr]
    assert _posted(emulator, store, config) == ["@jane you can return it free. Anything else?"]
    after = store.get_case(case_id)
    assert after.first_response_at is not None  # type: ignore[union-attr]
    assert after.awaiting_since == NOW + timedelta(hours=1) and after.next_response_due is not None  # type: ignore[union-attr]
    assert after.status != "pending_customer"  # type: ignore[union-attr]
    # Answering the newer post then stops it, as before.
    queue_reply(store, config, case_id, "@jane it's out for delivery", "ann")
    _posted(emulator, store, config)
    done = store.get_case(case_id)
    assert done.awaiting_since is None and done.next_response_due is None  # type: ignore[union-attr]
