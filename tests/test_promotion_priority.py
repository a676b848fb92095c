"""A post that reads as a promotion sinks, whatever its labels (audit of a viral day, finding 3).

Bots answering a brand's complaints ("refund issue? DM me, I recover lost parcel money fast http://wa.me/…") were
labelled refund complaints and sat at P2, above customers' own complaints; "claim your £500 voucher" posts at P3.
A link together with words that sell or bait takes 40 points off, and the inbox row says why it is low.
"""

from __future__ import annotations

import csv

import pytest

from doorstep.cases import looks_promotional
from doorstep.config import parse_config
from doorstep.models import Labels, Mention
from doorstep.pipeline import Pipeline
from doorstep.store import Store

from tests.conftest import T0, require_shared

CONFIG = parse_config({"brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}}]})


class CallsEverythingARefundComplaint:
    name = "refund"

    def classify(self, texts):  # noqa: ANN001, ANN201
        return [Labels(sentiment="negative", sentiment_scores={"negative": 0.9}, complaint=True, complaint_score=0.95,
                       intent="refund_or_return", intent_scores={"refund_or_return": 0.9}, urgency=0.7, model="t")
                for _ in texts]


def test_a_bot_selling_refund_recovery_sinks_below_a_customers_complaint(store: Store) -> None:
    pipeline = Pipeline(store, CONFIG, CallsEverythingARefundComplaint())
    pipeline.ingest([
        Mention(channel="x", external_id="bot", author_handle="promo_bot0060x", created_at=T0,
                text="@LarkspurHelp refund issue? DM me, I recover lost parcel money fast 💰 http://wa.me/44i97nqk5"),
        Mention(channel="x", external_id="ann", author_handle="ann", created_at=T0,
                text="@LarkspurHelp I returned the lamp three weeks ago and still no refund"),
    ])
    bot = store.get_case(store.mention_by_external_id("x", "bot").case_id)  # type: ignore[union-attr, arg-type]
    ann = store.get_case(store.mention_by_external_id("x", "ann").case_id)  # type: ignore[union-attr, arg-type]
    assert bot.priority < ann.priority - 30, (bot.priority, ann.priority)  # type: ignore[union-attr]
    assert bot.priority_reasons[-1] == "reads as a promotion (a link and “dm me”), not a customer's question (-40)"  # type: ignore[union-attr]
    from console.inbox import top_reason

    assert top_reason(bot.priority_reasons).startswith("reads as a promotion")  # type: ignore[union-attr]


@pytest.mark.parametrize("text", [
    "@LarkspurHelp my parcel never came, order LS-100234, tracking says delivered",
    "@LarkspurHelp where is my refund? https://larkspur.example/orders/12 says refunded",
    "@LarkspurHelp I won't order again, the courier was awful",
    "@LarkspurHelp can I claim a refund for the broken vase?",
])
def test_a_customer_asking_is_no_promotion(text: str) -> None:
    assert looks_promotional(text) is None


@pytest.mark.parametrize("text", [  # audit of last stop's behaviours, finding 1: these lost 40 points (P1 to P4)
    "@LarkspurHelp my parcel arrived smashed, photo: https://imgur.com/a/Xy12 I want a refund, please DM me",
    "@LarkspurHelp please DM me, parcel says delivered but it never came https://www.evri.com/track/H01HYA0012345678",
    "@LarkspurHelp can you DM me? my parcel is lost, proof: https://i.imgur.com/abc.jpg",
    "@LarkspurHelp courier left my parcel in the rain, pics on whatsapp if you want, or here https://imgur.com/x",
    "@LarkspurHelp I won a voucher in your giveaway and it doesn't work at checkout https://larkspur.example/checkout",
    "@LarkspurHelp the promo code from your email fails https://larkspur.example/cart",
    "@LarkspurHelp ordered a free gift with purchase, never arrived https://larkspur.example/o/1",
    "@LarkspurHelp your chat says click here to track, the link is dead http://track.larkspur.example",
    "@LarkspurHelp I want to claim your guarantee, parcel lost https://larkspur.example/guarantee",
    "@LarkspurHelp where is my Bitcoin miner order?? https://larkspur.example/o/9",
    "@LarkspurHelp your telegram bot t.me/larkspurbot doesn't answer, where's my parcel",
    "@LarkspurHelp please DM me www.larkspur.example order stuck",
    # Audit of today's changes, finding 2: a customer's own "contact me" read as an offer.
    "@LarkspurCare my sofa arrived ripped, photos here https://imgur.com/a/k2Lp9. Please contact me, or DM me",
    "Driver threw my parcel over the fence https://youtu.be/abc123 can someone contact me? DM me please",
    "Order ORD-2026-001249 never arrived, tracking https://www.royalmail.com/track?id=AB123 says delivered. "
    "Contact me asap, inbox me",
    "Second time my order has gone missing. Contact me on 07700 900123 or message me here +44 7700 900123",
    "@LarkspurHelp you promised a free replacement. Contact me on WhatsApp +44 7700 900123",
    "@LarkspurHelp your email says contact us https://larkspur.example/help but nobody answers",
    "@LarkspurHelp will I get my money back? DM me, photos https://imgur.com/a/zz1",
    # Code review of the day's changes: a customer asking for a full refund, hoping the team can help, asking how
    # they recover their money, read as the bot's offer.
    "@LarkspurHelp Lamp arrived smashed, photos: https://imgur.com/a/Xy12 . Asking for a full refund, please DM me.",
    "@LarkspurHelp hope your team can help, parcel says delivered but nothing here "
    "https://www.royalmail.com/track?t=AB123456789GB please DM me",
    "@LarkspurHelp 3rd time asking for a full refund. Photo https://imgur.com/a/abc - DM me or call +44 7700 900123",
    "@LarkspurHelp how do I recover lost money for order #104233? tracking https://www.evri.com/track/T123",
    "@LarkspurHelp can I retrieve my parcel from the depot myself? tracking "
    "https://www.evri.com/track/H01HYA0012345678 please DM me",
    "@LarkspurHelp how do I recover my money for the broken lamp? photo https://imgur.com/a/abc DM me please",
])
def test_a_customer_with_a_link_who_asks_to_be_messaged_is_no_promotion(text: str) -> None:
    assert looks_promotional(text) is None


@pytest.mark.parametrize("text", [  # the same audit: the bots' wording a little changed
    "Refund issue? D M me, I recover lost parcel money http://wa.me/447000",
    "Refund issue? message me, I get lost parcel money back for you https://bit.ly/3xYz",
    "Lost parcel? Contact our agent on W h a t s A p p +44 7000 000000",
    "Lost parcel? inbox me for a quick refund 👉 https://tinyurl.com/refundnow",
    "Lost parcel? DM me, I recover lost parcel money wa . me/447000",
    "hit me up, I help recover funds https://refund.example",
    "I can help you get your refund, send me a message https://t.co/abc",
    "Having issues? ＤＭ ｍｅ, I recover lost parcels https://x.co/abc",
    "WIN A PS5! RT & follow to enter https://promo.example",
    # Audit of today's changes, finding 3: common bot texts missed.
    "Parcel lost? DM me for refund https://wa.me/447700900123",
    "Parcel lost? I'll get your refund sorted, message me https://wa.me/447700900123",
    "Lost parcel? I got my money back in 24h, message my agent on telegram https://t.me/refundpro",
    "Had the same issue! contact us on WhatsApp +1 (555) 010-9999, we can help you recover it",
    "Same here! Our team can help you recover your money, WhatsApp +44-7700-900-123",
])
def test_a_bot_offering_help_for_money_is_a_promotion(text: str) -> None:
    assert looks_promotional(text)


def test_real_customer_tweets_rarely_read_as_promotions() -> None:
    """On the twcs sample's customer tweets (real posts to brands' care handles), only brand contests match."""
    path = require_shared("data/twcs-sample/twcs_sample.csv")
    with path.open(newline="", encoding="utf-8") as f:
        posts = [r["text"] for r in csv.DictReader(f) if r.get("inbound") in ("True", "true", "1")]
    found = [t for t in posts if looks_promotional(t)]
    assert len(posts) > 2000 and len(found) <= 3, found
    assert all("win" in t.lower() for t in found), found
