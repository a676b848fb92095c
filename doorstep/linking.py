"""Tie a mention to the customer, their order and the courier's shipment.

The evidence, strongest first: a tracking number or order number in the text, the
author's handle (known to belong to a customer), the conversation the post answers,
and finally a ranking of the customer's open orders. Each link records how it was
made and how sure we are, so an agent can see it and override it.

Privacy rule: anyone can type someone else's order number. A link made from a
number alone is ``confirmed=False`` until the author's handle belongs to the order's
customer or the post came through a private channel from an author not known to be someone
else (a known other customer's DM quoting it stays unconfirmed); the console and the reply
templates must not reveal an unconfirmed order's details to the author.

Honesty rule: a link is *confirmed* only by a number the order's own customer quoted (or
sent privately) or by an agent who checked. The customer's most likely open order is a
guess (``recent_order``, 40-70 %): it is shown as "possible order … — not confirmed" and
treated like any unconfirmed link until confirmed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from doorstep.config import Config
from doorstep.lookups import ShopLookups
from doorstep.models import PRIVATE_CHANNELS, Case, Link, Mention
from doorstep.numbers import (
    find_invalid_tracking_candidates,
    find_order_numbers,
    find_possible_tracking_numbers,
    find_tracking_numbers,
)
from doorstep.store import OrderSummary, Store

#: Shipment states that make an order the likely subject of an unexplained complaint.
TROUBLE_STATUSES = frozenset({"exception", "attempt_failed", "returned"})
#: Shipment states after which a parcel no longer moves towards the customer.
FINAL_STATUSES = frozenset({"delivered", "returned"})
#: How long after its last scan (or, unshipped, its placing) an order still counts as what a vague complaint
#: is about: a troubled parcel last scanned weeks ago does not outrank a live one (browser check of the demo).
RECENT = timedelta(days=14)

#: "order 104926", "order no. 104926", "order number: 104926", "Order #104926", "my order number is 104926":
#: how customers write an order number, with or without the "#" a shop's pattern may require.
_AFTER_ORDER = re.compile(r"\border(?:\s+(?:number|num|no|nr)\b\.?)?(?:\s+is)?\s*(?:[:#]\s*)?#?(\d{4,})\b(?![-/.,:]\d)",
                          re.IGNORECASE)


@dataclass(frozen=True)
class Evidence:
    """Numbers found in a post's text."""

    order_numbers: list[str]
    tracking_numbers: list[str]
    #: Strings shaped like a tracking number whose check digit is wrong (a typo, usually).
    malformed: list[str]
    #: Digit runs shaped like a DHL Paket or Hermes number (doorstep.numbers.LOOKED_UP_ONLY): a phone or an
    #: order number has that shape too, so one is a tracking number only where a shipment with it is stored,
    #: and one that names none is forgotten (never "no such parcel", never a number the case is about).
    possible_tracking_numbers: list[str] = field(default_factory=list)


def find_numbers(text: str, config: Config) -> Evidence:
    formats: set[str] | None = None
    if config.couriers and any(c.tracking_formats for c in config.couriers):
        formats = {f for c in config.couriers for f in c.tracking_formats}
    orders = find_order_numbers(text, config.order_patterns)
    parcels = [t.number for t in find_tracking_numbers(text, formats)]
    orders += [n for n in _numbers_after_order(text, config.order_patterns) if n not in orders and n not in parcels]
    tracking = list(dict.fromkeys(n for n in parcels if n not in orders))
    malformed = find_invalid_tracking_candidates(text, formats)
    possible = list(dict.fromkeys(t.number for t in find_possible_tracking_numbers(text, formats)
                                  if t.number not in orders and t.number not in tracking))
    return Evidence(order_numbers=orders, tracking_numbers=tracking, malformed=malformed,
                    possible_tracking_numbers=possible)


def order_number_after_word(text: str, patterns: Sequence[str], mask: str) -> str:
    """``text`` with each number :func:`_numbers_after_order` reads replaced by ``mask``: a report, an alert or
    a courier's quote masks what linking takes for an order number ("order 10492"), not only "#10492"."""
    def masked(match: re.Match[str]) -> str:
        digits = match.group(1)
        taken = any(v.lstrip("#") == digits for v in find_order_numbers(f"#{digits}", patterns))
        return match.group(0)[: match.start(1) - match.start(0)] + mask if taken else match.group(0)

    return _AFTER_ORDER.sub(masked, text)


def _numbers_after_order(text: str, patterns: Sequence[str]) -> list[str]:
    """Numbers written after the word "order" that the shop's patterns take for an order number with a "#".

    Why: customers write "it's order 104926", and a pattern like ``#(\\d{4,8})`` missed it, so the case was
    not linked (browser check of the demo). The configured patterns still decide what an order number looks
    like (its digit count; at least 4 digits), so "order 2 items" is no bogus "no such order" warning."""
    found: list[str] = []
    for match in _AFTER_ORDER.finditer(text):
        digits = match.group(1)
        value = next((v for v in find_order_numbers(f"#{digits}", patterns) if v.lstrip("#") == digits), None)
        if value is not None and value not in found:
            found.append(value)
    return found


def numbers_in(texts: Sequence[str], config: Config) -> list[Evidence]:
    """:func:`find_numbers` of each text: what a classifier process also works out for an import's
    next batch (classifiers/process.py), so the import's own process only looks the numbers up."""
    return [find_numbers(text, config) for text in texts]


def link_mention(mention: Mention, store: Store | ShopLookups, config: Config, thread_case: Case | None = None,
                 evidence: Evidence | None = None) -> Link:
    """Work out who wrote ``mention`` and which order it is about.

    ``thread_case`` is the case of the conversation the post belongs to, if any: a
    reply in a thread inherits the order that thread is already linked to. The pipeline
    passes its batch's :class:`ShopLookups` as ``store`` and the ``evidence`` it already
    found (the numbers in the text), so a batch reads each customer and order once.
    """
    if evidence is None:
        evidence = find_numbers(mention.text, config)
    author_customer = store.customer_id_by_handle(mention.channel, mention.author_handle)
    private = mention.channel in PRIVATE_CHANNELS
    # Numbers we could not use stay visible to the agent ("the number you gave looks wrong").
    unmatched: list[str] = list(evidence.malformed)

    for number in evidence.tracking_numbers:
        shipment = store.shipment_brief(number)
        order = store.order_summary(shipment[0]) if shipment else None
        if order is None:
            unmatched.append(number)
            continue
        return _number_link("tracking_number", order, number, author_customer, private, unmatched)

    # A bare run of digits counts only as the number of a parcel we hold; one we do not is not reported.
    for number in evidence.possible_tracking_numbers:
        shipment = store.shipment_brief(number)
        order = store.order_summary(shipment[0]) if shipment else None
        if order is not None:
            return _number_link("tracking_number", order, number, author_customer, private,
                                [n for n in unmatched if n != number])

    for number in evidence.order_numbers:
        order = quoted_order(store, number)
        if order is None:
            unmatched.append(number)
            continue
        return _number_link("order_number", order, order.tracking_number, author_customer, private, unmatched)

    if thread_case is not None and (thread_case.order_number or thread_case.customer_id):
        if not _same_author(mention, thread_case, author_customer):
            # A stranger replying in the customer's thread ("any update on this?") must not
            # inherit the customer's order: the case keeps its link, this post gets none.
            return Link(customer_id=author_customer, method="none", unmatched_numbers=unmatched)
        return Link(
            customer_id=thread_case.customer_id,
            order_number=thread_case.order_number,
            tracking_number=thread_case.tracking_number,
            method="thread",
            confidence=round(thread_case.link_confidence * 0.95, 3),
            confirmed=thread_case.link_confirmed,
            unmatched_numbers=unmatched,
        )

    if author_customer is None:
        return Link(method="none", unmatched_numbers=unmatched)

    candidates = rank_open_orders(store.order_summaries(customer_id=author_customer), now=mention.created_at)
    named = {b.name.casefold() for b in config.brands if b.name in mention.matched}
    if named:
        # A post to one brand is not about another brand's order: a user check found a post to
        # @FettleCare guessed as a returned Larkspur Home order. Orders without a brand stay.
        candidates = [o for o in candidates if not o.brand or o.brand.casefold() in named]
    if not candidates:
        return Link(customer_id=author_customer, method="handle", confidence=0.9, confirmed=True, unmatched_numbers=unmatched)
    best = candidates[0]
    # One open order is very likely the one; several make it a guess the agent should check.
    # Either way it is a guess, never confirmed: only the number quoted by its customer, or an
    # agent who checked, confirms an order (until then replies may not carry its details).
    confidence = 0.7 if len(candidates) == 1 else 0.4
    return Link(
        customer_id=author_customer,
        order_number=best.number,
        tracking_number=best.tracking_number,
        method="recent_order",
        confidence=confidence,
        confirmed=False,
        unmatched_numbers=unmatched,
    )


def quoted_order(store: Store | ShopLookups, number: str) -> OrderSummary | None:
    """The order a post's number names, as typed or in capitals or small letters, with or without a "#".

    Why: a case-insensitive ``order_patterns`` entry finds "ord-2026-008001", but the shop stores
    ORD-2026-008001; the customer quoted their own order all the same. Shop exports (Shopify's "Name")
    store "#990001" where the pattern ``#(\\d{4,8})`` takes "990001" from the post: the number missed
    and the case linked the customer's latest order instead (upgrade audit, finding 4). Exact lookups
    on the order number (its key) are used, so no scan: at most six, two for a number without letters."""
    hashed = number[1:] if number.startswith("#") else f"#{number}"
    for variant in dict.fromkeys((number, number.upper(), number.lower(), hashed, hashed.upper(), hashed.lower())):
        order = store.order_summary(variant)
        if order is not None:
            return order
    return None


def _same_author(mention: Mention, case: Case, author_customer: str | None) -> bool:
    """Whether ``mention`` is by the person the case is about (same handle on the case's channel, or the
    same known customer)."""
    handle = (mention.author_handle or "").lstrip("@").casefold()
    if case.author_handle and mention.channel == case.channel and handle == case.author_handle.lstrip("@").casefold():
        return True
    return author_customer is not None and author_customer == case.customer_id


def _number_link(
    method: str, order: OrderSummary, tracking: str | None, author_customer: str | None, private: bool, unmatched: list[str]
) -> Link:
    # A private channel hides who else reads a number, not who wrote it: from an author we know to
    # be another customer, a quoted number stays a suggestion, private or not.
    if author_customer == order.customer_id or (private and author_customer is None):
        return Link(
            customer_id=order.customer_id,
            order_number=order.number,
            tracking_number=tracking,
            method=method,  # type: ignore[arg-type]
            confidence=0.97 if method == "tracking_number" else 0.95,
            confirmed=True,
            unmatched_numbers=unmatched,
        )
    # The number is real but nothing says the author owns it: suggest, don't reveal.
    confidence = 0.3 if author_customer else 0.6
    return Link(
        customer_id=author_customer,
        order_number=order.number,
        tracking_number=tracking,
        method=method,  # type: ignore[arg-type]
        confidence=confidence,
        confirmed=False,
        unmatched_numbers=unmatched,
    )


def rank_open_orders(orders: Iterable[OrderSummary], now: datetime | None = None) -> list[OrderSummary]:
    """Orders a vague complaint is most likely about, as a care agent would judge them at ``now`` (the post's time):

    1. recent trouble (an exception, a failed attempt, a return, last scanned within :data:`RECENT`);
    2. recent orders whose parcel is still on its way (or not yet shipped);
    3. other recent orders (delivered lately), then the old ones, troubled before live before the rest.
    Newest placed first within each. Why: "where's my parcel??" was guessed as a weeks-old returned order
    while the customer's newer parcel was out for delivery (browser check of the demo).

    ``now`` defaults to the latest time the orders themselves show, so the ranking never depends on the clock.
    Orders placed after ``now``, cancelled and refunded orders, and delivered ones whose last scan is more than
    two weeks after they were placed, are not candidates: "where is my order" is rarely about something that
    arrived long ago.
    """
    orders = list(orders)
    if now is None:
        now = max((o.last_event_at or o.placed_at for o in orders), default=None)
    candidates = []
    for order in orders:
        delivered_long_ago = (
            order.shipment_statuses == {"delivered"}
            and order.last_event_at is not None
            and (order.last_event_at - order.placed_at).days > 14
        )
        # An order placed after the post is not what it is about (a post linked again later, the demo's
        # history): the live pipeline never sees one, a re-link must not either.
        if order.status in {"cancelled", "refunded"} or delivered_long_ago or (now is not None and order.placed_at > now):
            continue
        recent = now is None or now - (order.last_event_at or order.placed_at) <= RECENT
        trouble = bool(order.shipment_statuses & TROUBLE_STATUSES)
        on_its_way = not order.shipment_statuses or not order.shipment_statuses <= FINAL_STATUSES
        candidates.append(((recent, trouble, on_its_way, order.placed_at), order))
    candidates.sort(key=lambda item: item[0], reverse=True)
    return [order for _, order in candidates]


def override_link(store: Store, case_id: int, expected_version: int, actor: str, *, order_number: str | None,
                  customer_id: str | None = None, verified_how: str | None = None) -> Case:
    """An agent sets the order (and customer) of a case by hand.

    The link is confirmed only when the order's customer is the author of the case (their handle
    is on the customer record) or the agent records how they verified it (``verified_how``, kept in
    the audit log). Otherwise anyone could be shown, and sent, someone else's order: the link stays
    unconfirmed until the customer proves it on a private channel.
    """
    tracking = None
    order_customer = customer_id
    current = store.get_case(case_id)
    # The courier follows the linked order: its parcel's carrier, none before it ships. Unlinking the
    # order keeps a courier only where the posts named one (no parcel gave it).
    courier = current.courier if current and not current.tracking_number else None
    if order_number:
        order = quoted_order(store, order_number)
        if order is None:
            raise KeyError(f"no order {order_number}")
        order_number = order.number
        order_customer = order.customer_id
        customer_id = customer_id or order.customer_id
        tracking = order.tracking_number
        courier = None
    shipment = store.shipment_brief(tracking) if tracking else None
    if shipment:
        courier = shipment[1]
    author_customer = store.customer_id_by_handle(current.channel or "", current.author_handle) if current else None
    verified = bool(verified_how and verified_how.strip())
    confirmed = order_customer is None or order_customer == author_customer or verified
    with store.transaction():
        updated = store.update_case(
            case_id,
            expected_version,
            actor,
            order_number=order_number,
            customer_id=customer_id,
            tracking_number=tracking,
            courier=courier,
            link_method="agent",
            link_confidence=1.0 if confirmed else 0.5,
            link_confirmed=confirmed,
        )
        if verified:
            store.audit(actor, "link.verified", case_id, {"order_number": order_number, "how": verified_how.strip()})  # type: ignore[union-attr]
        elif not confirmed:
            store.audit(actor, "link.unconfirmed", case_id,
                        {"order_number": order_number, "why": "the order's customer is not the author of the case"})
    return updated


def order_owner_is_author(store: Store, case: Case) -> bool | None:
    """Whether the linked order belongs to the case's author (None: no order or no way to tell).

    A case we opened ourselves (a proactive case about a troubled parcel) has no author: no way
    to tell, never "someone else's order"."""
    if not case.order_number or not case.author_handle:
        return None
    order = store.order_summary(case.order_number)
    if order is None:
        return None
    return store.customer_id_by_handle(case.channel or "", case.author_handle) == order.customer_id


#: How each way of linking reads on the case page, when the link is confirmed.
CONFIRMED_WORDS = {
    "tracking_number": "its customer quoted the tracking number",
    "order_number": "its customer quoted the order number",
    "agent": "linked by an agent",
    "thread": "from the conversation",
    "handle": "the author's handle is on the customer record",
}


def describe_link(case: Case) -> str:
    """The case's link in the team's words, never calling a guess confirmed.

    "order ORD-1 · confirmed (its customer quoted the order number)";
    "possible order ORD-1 (40 %) — not confirmed (the customer's most likely open order)";
    "order ORD-1 quoted — not confirmed: nothing shows the author is its customer".
    """
    method = case.link_method
    if not case.order_number:
        if case.customer_id and case.link_confirmed:
            return f"customer known, no order linked ({CONFIRMED_WORDS.get(method, method)})"
        return "no order linked"
    if case.link_confirmed and not case.author_handle and not case.channel:  # no post yet: we opened it
        return f"order {case.order_number} · confirmed (we opened this case for its parcel)"
    if case.link_confirmed:
        return f"order {case.order_number} · confirmed ({CONFIRMED_WORDS.get(method, method)})"
    if method in ("tracking_number", "order_number"):
        return f"order {case.order_number} quoted — not confirmed: nothing shows the author is its customer"
    if method == "agent":
        return f"order {case.order_number} linked by an agent — not confirmed: its customer is not the author"
    why = "the customer's most likely open order" if method == "recent_order" else "from the conversation"
    return f"possible order {case.order_number} ({case.link_confidence * 100:.0f} %) — not confirmed ({why})"
