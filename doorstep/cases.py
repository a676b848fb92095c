"""Cases: grouping mentions into units of work, scoring their priority, setting SLA clocks.

Priority is a sum of named factors, not an opaque score, because an agent who sees
"complaint (+25), lost parcel (+20), repeat contact (+8)" trusts the queue and a
lead can tune the weights.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from doorstep.config import Config
from doorstep.models import Case, Labels, Link, Mention
from doorstep.sla import band_of

#: How much each delivery problem adds: a lost parcel outranks a "where is it?".
INTENT_SEVERITY: dict[str, float] = {
    "lost_or_missing": 20,
    "damaged_or_wrong": 18,
    "failed_delivery": 14,
    "late_delivery": 10,
    "where_is_my_order": 6,
    "refund_or_return": 8,
    "customer_service": 8,
}
INTENT_LABELS: dict[str, str] = {
    "where_is_my_order": "where is my order",
    "late_delivery": "late delivery",
    "failed_delivery": "failed delivery",
    "lost_or_missing": "lost or missing parcel",
    "damaged_or_wrong": "damaged or wrong item",
    "refund_or_return": "refund or return",
    "customer_service": "customer service",
    "product_or_account": "product or account",
    "praise": "praise",
    "other": "other",
}


@dataclass(frozen=True)
class PriorityInputs:
    """What the priority score looks at; plain values so the hot path needs no full records."""

    labels: Labels | None
    followers: int = 0
    vip: bool = False
    order_total: float | None = None
    currency: str = "GBP"
    #: Every tracking status the case's shipment has had (e.g. {"in_transit", "exception"}).
    shipment_events: frozenset[str] = frozenset()
    #: The customer's posts in the case that ask for something: praise and thanks are not
    #: counted (see Store.contact_count), so a happy customer is never "repeat contact".
    contacts: int = 1
    #: The promotion phrase of the post the labels come from, when it reads as one (:func:`looks_promotional`).
    promotion: str | None = None


#: A way to reach the writer outside the post: a link, or a phone number written out ("+1 (555) 010-9999").
_REACH = re.compile(r"https?://|www\.|\bwa\.me/|\bt\.me/|\bbit\.ly/|\+\d[\d ().-]{8,}\d", re.IGNORECASE)
#: A chat link (WhatsApp, Telegram): where a bot takes its marks; with an invitation to message, a promotion.
_CHAT_LINK = re.compile(r"\b(?:wa|t)\.me/", re.IGNORECASE)
#: Words that sell on their own: recovering someone's money, earnings, free money.
_SELLING = re.compile(r"\b(recover (?:your|funds|stolen|scammed)|(?:earn|make) [$£€]\d+|"
                      r"free (?:iphone|money))", re.IGNORECASE)
#: Words that bait, but that customers write too ("please DM me", "the promo code fails", "pics on whatsapp"):
#: a promotion only beside an offer (:data:`_OFFER`), or those inviting a message beside a chat link.
_INVITATION = r"dm me|inbox me|message me|text me|send me an? (?:message|dm)|hit me up|(?:message|contact|dm) my agent"
_BAIT = re.compile(
    rf"\b({_INVITATION}|giveaway|win an?|won an?|free (?:gift|voucher)|claim (?:your|now|it)|whatsapp|wa\.me|"
    r"t\.me|telegram|crypto|bitcoin|forex|promo code|click (?:here|the link))\b", re.IGNORECASE)
_INVITES = re.compile(rf"\b({_INVITATION})\b", re.IGNORECASE)
#: A question's words before "I ...": "how do I recover my money", "can I retrieve my parcel" ask, they offer nothing.
_ASKING = "".join(rf"(?<!\b{w} )" for w in ("do", "can", "could", "would", "should", "will", "how", "where", "did"))
#: The writer offering to do something for the reader, or a contest's call to enter. Not "contact me": customers
#: ask for that ("photos here https://…, please contact me, or DM me" lost 40 points: audit of today's changes);
#: nor a customer "asking for a full refund", hoping "your team can help" or asking how they recover their money
#: (code review of the day's changes): the offer is said, to the reader, by "I", "we" or "our team".
_OFFER = re.compile(
    rf"{_ASKING}\b(?:i|we|i'll|we'll) (?:can |will |do )?(?:help|recover|retrieve)\b|"
    r"\b(?:we|our (?:team|agents?|experts?)) can help\b|"
    r"\b(?:i|we|i'll|we'll) (?:can |will )?get (?:(?!my\b|our\b)\w+ ){0,4}(?:money|refunds?|funds) (?:back|sorted)\b|"
    r"\bcontact (?:us|our (?:agent|team|expert))\b|"
    r"\b(?:dm|message|contact|text|inbox) (?:me|us) for an? (?:quick|fast|instant|full|guaranteed) refund\b|"
    r"\b(?:rt|retweet|follow)\b.{0,30}\bto (?:enter|win)\b", re.IGNORECASE)
#: Points off for a post that reads as a promotion: a bot's "refund issue? DM me, I recover lost parcel money
#: http://wa.me/…" was labelled a refund complaint and sat at P2 above customers' own (audit of a viral day).
PROMOTION_POINTS = -40.0


def _plain(text: str) -> str:
    """The text as a filter should read it: full-width letters as plain ones ("ＤＭ ｍｅ"), letters spaced out
    joined ("W h a t s A p p", "D M me"), a link's dots unspaced ("wa . me/")."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"(?<![^\W\d_])([^\W\d_]) (?=[^\W\d_](?![^\W\d_]))", r"\1", text)
    return re.sub(r"(?<=\w) ?\. ?(?=(?:me|ly|co|com)\b/?)", ".", text)


def looks_promotional(text: str) -> str | None:
    """The promotion phrase of ``text`` (lower-cased) where it has a link (or a phone number) and words that sell,
    or words that bait beside an offer; else None.

    Bait words alone are not enough: customers write "please DM me" and "the promo code fails" beside a photo or
    tracking link, and such complaints lost 40 points and fell from P1 to P4 (audit of last stop's behaviours).
    On 2,284 real customer tweets to care handles none matches (the first rule: two brand contests); on 47,585
    TweetEval tweets three (an offer of help by message, two "make $100" teasers; the first rule: 49)."""
    plain = _plain(text)
    if not _REACH.search(plain):
        return None
    selling = _SELLING.search(plain)
    if selling:
        return selling.group(1).lower()
    invitation = _INVITES.search(plain)
    if invitation and _CHAT_LINK.search(plain):  # "DM me for refund https://wa.me/…"
        return invitation.group(1).lower()
    bait = _BAIT.search(plain)
    return bait.group(1).lower() if bait and _OFFER.search(plain) else None


#: Names of the languages the classifier tells apart (``classifiers.language.LANGUAGES``), as a reason says them.
LANGUAGE_NAMES: dict[str, str] = {
    "es": "Spanish", "fr": "French", "de": "German", "it": "Italian", "pt": "Portuguese", "nl": "Dutch",
    "pl": "Polish", "sv": "Swedish", "da": "Danish", "no": "Norwegian", "fi": "Finnish", "tr": "Turkish",
    "ru": "Russian", "uk": "Ukrainian", "ar": "Arabic", "zh": "Chinese", "ja": "Japanese", "ko": "Korean",
    "hi": "Hindi", "el": "Greek", "cs": "Czech", "ro": "Romanian", "hu": "Hungarian", "id": "Indonesian",
    "vi": "Vietnamese", "th": "Thai", "he": "Hebrew", "cy": "Welsh",
    "ga": "Irish", "und": "another language",
}
#: Points for a post the classifier cannot read (not English): its "no complaint" is a guess, so it must not sink
#: to the bottom band; 10 + 20 reaches p3's default threshold (languages audit).
UNREAD_LANGUAGE_POINTS = 20.0


def score_priority(inputs: PriorityInputs, config: Config) -> tuple[float, list[str]]:
    """Return (score 0-100, the factors that raised it, largest first)."""
    factors: list[tuple[str, float]] = [("base", 10.0)]
    labels = inputs.labels
    if labels is not None:
        if labels.complaint:
            factors.append(("complaint", 25.0))
        negative = labels.sentiment_scores.get("negative", 0.0)
        if labels.sentiment == "negative" and negative > 0:
            factors.append(("negative sentiment", round(10.0 * negative, 1)))
        severity = INTENT_SEVERITY.get(labels.intent)
        if severity:
            factors.append((INTENT_LABELS[labels.intent], severity))
        if labels.urgency > 0.5:
            factors.append(("urgent wording", round(10.0 * labels.urgency, 1)))
        if labels.other_language and labels.needs_review:  # once a person has read it, its labels are no guess
            name = LANGUAGE_NAMES.get(labels.other_language, labels.other_language)
            factors.append((f"written in {name}: labels are a guess, read it", UNREAD_LANGUAGE_POINTS))
    if inputs.contacts > 1:
        factors.append(("repeat contact", min(16.0, 8.0 * (inputs.contacts - 1))))
    if inputs.followers >= config.priority.vip_followers:
        factors.append((f"{inputs.followers:,} followers", 12.0))
    elif inputs.followers >= 1000:
        factors.append((f"{inputs.followers:,} followers", 5.0))
    if inputs.vip:
        factors.append(("VIP customer", 10.0))
    if "exception" in inputs.shipment_events:
        factors.append(("courier exception on shipment", 10.0))
    elif "attempt_failed" in inputs.shipment_events:
        factors.append(("failed delivery attempt on shipment", 8.0))
    if inputs.promotion:
        factors.append((f"reads as a promotion (a link and “{inputs.promotion}”), not a customer's question",
                        PROMOTION_POINTS))
    if inputs.order_total is not None:
        if inputs.order_total >= 200:
            factors.append((f"order value {inputs.order_total:.0f} {inputs.currency}", 6.0))
        elif inputs.order_total >= 100:
            factors.append((f"order value {inputs.order_total:.0f} {inputs.currency}", 3.0))
    score = _squash(max(0.0, sum(weight for _, weight in factors)))
    reasons = [f"{name} ({weight:+g})" for name, weight in sorted(factors[1:], key=lambda f: -f[1])]
    return round(score, 1), reasons


def _squash(points: float) -> float:
    """Points up to 90 count as they are; above, they approach 100 without reaching it.

    A hard cap would give every very bad case the same 100 and let the queue order them
    by accident; this keeps "more reasons" ranking higher while the score stays 0-100.
    """
    if points <= 90.0:
        return points
    return 90.0 + 10.0 * (1.0 - math.exp(-(points - 90.0) / 30.0))


def sla_due(score: float, start: datetime, config: Config, brand: str | None = None) -> tuple[datetime, datetime]:
    """(first response due, resolution due) for clocks of this priority started at ``start``,
    counted in the brand's business hours (see doorstep/sla.py for pauses and later changes)."""
    from doorstep.business_hours import calendar_for

    target = config.sla_target(band_of(score, config.priority), brand)
    cal = calendar_for(config, brand, target.business_hours)
    return (cal.add(start, timedelta(minutes=target.first_response)),
            cal.add(start, timedelta(minutes=target.resolution)))


def new_case(mention: Mention, link: Link, brand: str | None, courier: str | None) -> Case:
    labels = mention.labels
    return Case(
        status="new",
        brand=brand,
        courier=courier,
        channel=mention.channel,
        intent=labels.intent if labels else None,
        sentiment=labels.sentiment if labels else None,
        complaint=labels.complaint if labels else False,
        author_handle=mention.author_handle,
        thread_id=mention.thread_id or mention.external_id,
        customer_id=link.customer_id,
        order_number=link.order_number,
        tracking_number=link.tracking_number,
        link_method=link.method,
        link_confidence=link.confidence,
        link_confirmed=link.confirmed,
        opened_at=mention.created_at,
        last_activity_at=mention.created_at,
        mention_count=0,
    )


class HandleLookup(Protocol):
    """What :func:`is_customers_post` asks of the shop data (a Store or a batch's ShopLookups)."""

    def customer_id_by_handle(self, channel: str, handle: str | None) -> str | None: ...


def is_customers_post(store: HandleLookup, case: Case, mention: Mention) -> bool:
    """Whether ``mention`` was written by the case's customer (not a stranger in the same thread).

    The case's author handle on its own network is the customer (their public posts and their
    direct messages there: ``x`` and ``x_dm`` are one account); on another network, the handle
    must belong to the case's confirmed customer in the shop's records.
    """
    handle = (mention.author_handle or "").lstrip("@").casefold()
    if not handle:
        return False
    same_network = mention.channel.removesuffix("_dm") == (case.channel or "").removesuffix("_dm")
    if case.author_handle and same_network and handle == case.author_handle.lstrip("@").casefold():
        return True
    if case.customer_id and store.customer_id_by_handle(mention.channel, mention.author_handle) == case.customer_id:
        return True
    return False


def by_customer(store: HandleLookup, case: Case, mention: Mention) -> bool:
    """Whether a post speaks for the case's customer, so it may set the case's link, priority and
    "waiting on the customer" state: :func:`is_customers_post`, or a post without a handle (a
    courier's page: strangers there have no thread), or the first post of a case we opened
    ourselves (no author yet: that post gives it its author, see :func:`absorb`)."""
    if mention.outbound:
        return False
    if not mention.author_handle or (case.channel is None and not case.author_handle):
        return True
    return is_customers_post(store, case, mention)


def absorb(case: Case, mention: Mention, link: Link, customers: bool = True) -> Case:
    """Fold a later mention into its case: a resolved case reopens, a stronger link wins.

    ``customers``: whether the post is the case's customer's (:func:`by_customer`). Only theirs
    ends a "waiting on the customer" pause or changes the case's link (customer, order,
    tracking): another customer answering in the thread with their own order number must not
    make the case theirs.

    The case's intent and sentiment are set afterwards from its most serious post
    (see Pipeline._prioritise).
    """
    update: dict[str, object] = {
        "mention_count": case.mention_count,
        "last_activity_at": max(case.last_activity_at or mention.created_at, mention.created_at),
    }
    if case.channel is None:
        # A case we opened ourselves (proactive: no post yet): the customer's first post gives it the
        # channel, author and conversation a reply goes to, as a case opened by that post would have.
        update.update(channel=mention.channel, author_handle=mention.author_handle,
                      thread_id=mention.thread_id or mention.external_id)
    if case.status == "resolved":
        update.update(status="open", resolved_at=None, first_response_at=None, opened_at=mention.created_at)
    elif case.status == "pending_customer" and customers:
        update["status"] = "open"
    if customers and case.link_method != "agent" and link.method != "none" and (
        link.confidence > case.link_confidence or (link.confirmed and not case.link_confirmed)
    ):
        update.update(
            customer_id=link.customer_id or case.customer_id,
            order_number=link.order_number or case.order_number,
            tracking_number=link.tracking_number or case.tracking_number,
            link_method=link.method,
            link_confidence=link.confidence,
            link_confirmed=link.confirmed,
        )
    elif customers and case.channel is None and link.confirmed and link.method in QUOTED_METHODS \
            and link.order_number == case.order_number:
        # A case we opened for a parcel holds its order for certain (our own records: "tracking_number",
        # confidence 1), which no quoted number outranks; but once its customer writes, the link's reason
        # must say what they quoted ("its customer quoted the order number"), not the parcel we started from.
        update["link_method"] = link.method
    return case.model_copy(update=update)


# ----------------------------------------------------------------- which case a post joins
#: Link methods that name the order for certain: a number the customer quoted, or an agent's choice.
#: A ``recent_order`` link is a guess and says nothing about which order the case is about.
KNOWN_ORDER_METHODS = frozenset({"tracking_number", "order_number", "agent"})
#: Link methods from a number the post quotes (its order's or its parcel's).
QUOTED_METHODS = frozenset({"tracking_number", "order_number"})


def known_order(case: Case) -> str | None:
    """The order the case is about, if it is known (quoted or set by an agent), not guessed."""
    return case.order_number if case.link_method in KNOWN_ORDER_METHODS else None


def quoted_order(link: Link) -> str | None:
    """The order a post names by quoting its order or tracking number (matched in the shop data)."""
    return link.order_number if link.method in QUOTED_METHODS else None


def may_reopen(case: Case, at: datetime, config: Config) -> bool:
    """A resolved case takes a later post only within ``[cases] reopen_window_hours`` of its resolution."""
    if case.status != "resolved":
        return True
    resolved = case.resolved_at or case.last_activity_at or case.opened_at
    return resolved is not None and at - resolved <= timedelta(hours=config.cases.reopen_window_hours)


def authors_case(mention: Mention, link: Link, case: Case) -> bool:
    """Whether ``case`` is one of the post's author's own (what Store.author_cases finds by customer or
    by handle), not one it was offered only for being about the order the post quotes. A case with
    neither an author nor a customer is nobody else's."""
    if not case.author_handle and not case.customer_id:
        return True
    if link.customer_id and case.customer_id == link.customer_id:
        return True
    return bool(mention.author_handle) and case.author_handle == mention.author_handle and case.channel == mention.channel


def choose_case(mention: Mention, link: Link, brand: str | None, candidates: Sequence[Case], config: Config,
                numbers_quoted_in: Callable[[Case], set[str]] | None = None,
                link_confirmed: Callable[[Case], bool] | None = None) -> tuple[Case | None, str]:
    """The case of its author that a post outside any known thread joins, and why (None: open a new one).

    A case is one issue: one brand and, when known, one order. ``candidates`` are the author's
    recent cases (by customer or handle) and, for a post that quotes a confirmed order, the
    cases about that order. In order:

    1. the same order or tracking number (open, or resolved within the reopen window);
    2. otherwise an open case of the same brand (or a post naming no brand) whose last post is
       within ``[cases] join_window_hours``, unless the post quotes a number (even one that matches
       no order) that is not the case's known order nor one its posts quoted
       (``numbers_quoted_in``), or one of the two is praise and the other not.

    A post to another brand, or quoting another order, opens a new case; a post that is neither
    in a resolved case's thread nor about its order never reopens it.

    Another author's case takes the post only by its order, and only when that case's link to the
    order is confirmed (``link_confirmed``, default ``case.link_confirmed``): anyone can type an
    order number, and the order's customer quoting it later must not join, and confirm, the case of
    the stranger who typed it first (the reply would go to the stranger).
    """
    confirmed = link_confirmed or (lambda c: c.link_confirmed)
    at = mention.created_at
    post_order = quoted_order(link)
    newest_first = sorted(candidates, key=lambda c: (c.last_activity_at or c.opened_at or at, c.id or 0), reverse=True)
    if post_order:
        for case in newest_first:
            # A case's guessed order does not count: a guess must not pull a post into a case days later.
            if post_order == known_order(case) and may_reopen(case, at, config) and (
                    authors_case(mention, link, case) or confirmed(case)):
                return case, "same order"
    window = timedelta(hours=config.cases.join_window_hours)
    quoted = {n for n in (post_order, link.tracking_number if post_order else None, *link.unmatched_numbers) if n}
    praise = _is_praise(mention)
    for case in newest_first:
        if case.status == "resolved" or not authors_case(mention, link, case):
            continue
        if brand and case.brand and brand != case.brand:
            continue
        # Praise is its own topic: "the lamp is gorgeous" is not part of a lost-parcel case.
        if praise != (case.intent == "praise"):
            continue
        case_order = known_order(case)
        if quoted and case_order and not quoted & {case_order, case.tracking_number}:
            continue  # the post quotes a number, and not the case's order: another order
        if quoted and not case_order and numbers_quoted_in is not None:
            earlier = numbers_quoted_in(case)
            if earlier and not quoted & earlier:
                continue  # the case's posts quoted other numbers (none of them a known order)
        last = case.last_activity_at or case.opened_at
        if last is not None and abs(at - last) <= window:
            return case, "same brand within the window"
    return None, "new issue"


def _is_praise(mention: Mention) -> bool:
    return mention.labels is not None and mention.labels.intent == "praise"


class PostLookup(HandleLookup, Protocol):
    """What :func:`replied_to_customer` asks of the store: a handle's customer and a stored post."""

    def mention_by_external_id(self, channel: str, external_id: str) -> Mention | None: ...


def replied_to_customer(store: PostLookup, case: Case, channel: str, in_reply_to: str | None) -> bool:
    """Whether our reply on ``channel`` to the post ``in_reply_to`` answered the case's customer.

    Not when it answered someone else's post in their thread (doorstep.cases.is_customers_post): that
    reply neither answers the customer nor asks them anything, and a follow-up must not tell them "we
    replied to you". A reply without a post (a DM, an SMS: they go to the customer) or whose post is
    no longer stored counts as the customer's, as every reply did before.
    """
    if not in_reply_to:
        return True
    parent = store.mention_by_external_id(channel, in_reply_to)
    return parent is None or parent.outbound or is_customers_post(store, case, parent)


#: A link, which may hold a "?" (``track?tracknum=...``) that asks nobody anything.
_LINK = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)


def asks_question(text: str) -> bool:
    """Whether a reply asks the customer something, so the case waits on them (``pending_customer``).

    Read in our own words only: not the "?" of a link (a tracking URL), of an e-mail's ``Subject:``
    line ("Re: where is my parcel?" repeats the customer's question) or of the lines quoting their
    mail ("> where is it?"). A "?" left after those is a question: the team lead would rather pause
    a clock on a real question than leave the case owing an answer it does not.
    """
    lines = text.splitlines()
    if lines and lines[0].startswith("Subject: "):
        lines = lines[1:]
    own = "\n".join(line for line in lines if not line.lstrip().startswith(">"))
    return "?" in _LINK.sub(" ", own)
