"""Privacy by construction (issue 13, failure 4): public replies carry only what the author posted.

Unit tests for the public-safe template rule, and the relink path of the demo's failure, with
assertions on what the X emulator received.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from doorstep.linking import override_link
from doorstep.models import Customer
from doorstep.store import Store
from standins.x_emulator import XEmulator
from responders.outbox import Outbox, ReplyRejected, queue_reply
from responders.templates import TemplateError, render_source, render_template

from test_outbox import NOW, add_order, emulator, make_case, shop_config  # noqa: F401 - fixtures


def _euans_order(store: Store):  # noqa: ANN202
    order = add_order(store, number="104233", tracking="1Z999AA10123456700", customer_id="C9", name="Euan Watson",
                      email="euan@example.com", phone="+447700900999",
                      events=[(NOW - timedelta(days=3), "in_transit", "Leeds hub"),
                              (NOW - timedelta(days=1), "delivered", "Oxford")])
    store.upsert_customers([Customer(id="C9", name="Euan Watson", email="euan@example.com", phone="+447700900999",
                                     handles={"x": "euanw"})])
    return order


def test_public_safe_rule_refuses_private_variables_on_public_channels() -> None:
    values = {"first_name": "Euan", "customer_name": "Euan Watson", "tracking_location": "Oxford", "handle": "sienna_l",
              "author_first_name": "Sienna", "order_number": "104233", "courier": "UPS", "items": "Velvet cushion"}
    for source, var in (("Hi {{ first_name }}", "first_name"), ("{{ customer_name }}", "customer_name"),
                        ("at {{ tracking_location }}", "tracking_location"), ("your {{ items }}", "items")):
        with pytest.raises(TemplateError, match=f"{var}, which a public reply may not contain"):
            render_source(source, values, confirmed=True, public=True)
        assert render_source(source, values, confirmed=True, public=False)  # fine by DM or e-mail
    assert render_source("Hi {{ author_first_name }}, {{ courier }} has it", values, confirmed=True,
                         public=True) == "Hi Sienna, UPS has it"


def test_order_number_is_public_only_when_the_author_posted_it() -> None:
    values = {"author_first_name": "Jane", "order_number": "LS-100234"}
    with pytest.raises(TemplateError, match="order_number is not public"):
        render_source("order {{ order_number }}", values, confirmed=True, public=True, posted=set())
    assert render_source("order {{ order_number }}", values, confirmed=True, public=True,
                         posted={"LS-100234"}) == "order LS-100234"
    optional = "your order{% if order_number is defined %} {{ order_number }}{% endif %}"
    assert render_source(optional, values, confirmed=True, public=True, posted=set()) == "your order"


def test_relinking_to_another_customers_order_stays_unconfirmed(store: Store, emulator: XEmulator) -> None:
    """Failure 4: "Change the linked order" to Euan's order on @sienna_l's case."""
    config = shop_config()
    add_order(store)  # Jane's, so the shop has more than one customer
    _euans_order(store)
    case_id = make_case(store, config, emulator, handle="sienna_l", text="@LarkspurHelp my parcel never came, refund pls")
    case = store.get_case(case_id)
    relinked = override_link(store, case_id, case.version, "ann", order_number="104233")  # type: ignore[union-attr]
    assert relinked.order_number == "104233" and not relinked.link_confirmed
    assert any(e.action == "link.unconfirmed" for e in store.audit_trail(case_id))
    for name in ("refund", "delivered_but_missing", "in_transit"):
        with pytest.raises(TemplateError):
            render_template(store, config, case_id, name)
    with pytest.raises(ReplyRejected):
        queue_reply(store, config, case_id, "@sienna_l Hi Euan, sorry about order 104233, delivered Wed (Oxford)", "ann")
    Outbox(store, config).send_due()
    assert emulator.posted == []


def test_agent_verified_link_is_audited_and_still_never_public(store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    _euans_order(store)
    case_id = make_case(store, config, emulator, handle="sienna_l", text="@LarkspurHelp parcel missing, refund pls")
    case = store.get_case(case_id)
    relinked = override_link(store, case_id, case.version, "ann", order_number="104233",  # type: ignore[union-attr]
                             verified_how="Sienna e-mailed from euan@example.com; it is her partner's order")
    assert relinked.link_confirmed
    event = next(e for e in store.audit_trail(case_id) if e.action == "link.verified")
    assert event.actor == "ann" and "partner" in event.details["how"]
    for name in ("refund", "delivered_but_missing"):
        text = render_template(store, config, case_id, name)
        assert "Euan" not in text and "104233" not in text and "Oxford" not in text, text
        queue_reply(store, config, case_id, text, "ann", force=True)
    for bad in ("@sienna_l Hi Euan, we're on it", "@sienna_l it was delivered in Oxford"):
        with pytest.raises(ReplyRejected, match="public reply"):
            queue_reply(store, config, case_id, bad, "ann", force=True)
    Outbox(store, config).send_due()
    assert len(emulator.posted) == 2
    for post in emulator.posted:
        assert not any(word in post["text"] for word in ("Euan", "Watson", "104233", "Oxford", "euan@"))


# ---------------------------------------------------------------- a stranger in the thread (security audit, 2026-12-06)
JANES_DETAILS = ("Hi Jane, order LS-100234 (Linen shirt) tracking 1Z999AA10123456784 will be redelivered; "
                 "we have jane@example.com / +447700900123")


def _stranger_joins(store: Store, config, case_id: int, channel: str, handle: str, external_id: str) -> None:  # noqa: ANN001
    """``handle`` answers the case's first post in its thread: the post joins the case."""
    from doorstep.models import Mention
    from doorstep.pipeline import Pipeline
    from conftest import KeywordClassifier

    root = store.get_mention(min(m.id for m in store.mentions_for_case(case_id)))  # type: ignore[type-var]
    Pipeline(store, config, KeywordClassifier()).ingest([Mention(
        channel=channel, external_id=external_id, text="same here, mine never came either @LarkspurHelp",
        created_at=NOW + timedelta(minutes=5), author_handle=handle, thread_id=root.thread_id or root.external_id,
        in_reply_to=root.external_id)])
    assert store.mention_by_external_id(channel, external_id).case_id == case_id  # type: ignore[union-attr]


def test_asking_privately_goes_to_the_customer_not_to_a_stranger_who_answered_in_the_thread(
        store: Store, emulator: XEmulator) -> None:
    from responders.private import plan_private, queue_private

    config = shop_config()
    order = add_order(store)
    case_id = make_case(store, config, emulator, text="@LarkspurHelp where is my parcel? order LS-100234",
                        handle="jane", order=order, confirmed=True)
    _stranger_joins(store, config, case_id, "x", "mallory", "stranger-1")
    plan = plan_private(store, config, case_id)
    assert plan.about is not None and plan.about.author_handle == "jane"
    assert plan.recipient_name == "@jane"
    message = queue_private(store, config, case_id, JANES_DETAILS, "ann", plan=plan)
    assert message.target != "@mallory"
    # The agent may still write to the stranger about their own post, without the customer's details.
    stranger = store.mention_by_external_id("x", "stranger-1")
    to_mallory = plan_private(store, config, case_id, about=stranger)
    with pytest.raises(ReplyRejected, match="not this case's customer"):
        queue_private(store, config, case_id, JANES_DETAILS, "bob", plan=to_mallory, force=True)


def test_an_email_reply_goes_to_the_customer_not_to_a_stranger_who_answered_in_the_thread(store: Store) -> None:
    from doorstep.models import Mention
    from doorstep.pipeline import Pipeline
    from conftest import KeywordClassifier

    config = shop_config()
    add_order(store)
    Pipeline(store, config, KeywordClassifier()).ingest([Mention(
        channel="email", external_id="<m1@example.com>", text="Larkspur: where is my order LS-100234?", created_at=NOW,
        author_handle="jane@example.com", thread_id="<m1@example.com>")])
    case_id = store.mention_by_external_id("email", "<m1@example.com>").case_id  # type: ignore[union-attr]
    case = store.get_case(case_id)
    store.update_case(case_id, case.version, "agent", customer_id="C1", order_number="LS-100234",  # type: ignore[union-attr]
                      tracking_number="1Z999AA10123456784", link_method="agent", link_confirmed=True)
    _stranger_joins(store, config, case_id, "email", "mallory@evil.test", "<m2@evil.test>")
    message = queue_reply(store, config, case_id, JANES_DETAILS, "ann", channel="email")
    assert message.target == "jane@example.com" and message.in_reply_to == "<m1@example.com>"


def test_a_typed_public_reply_follows_the_templates_rule_for_numbers_items_and_phone(
        store: Store, emulator: XEmulator) -> None:
    """The template path refused the order number the customer never posted; typed words went out
    to X with it, the item and the phone written another way (security audit, 2026-12-06)."""
    config = shop_config()
    order = add_order(store)  # Jane Doe, LS-100234, 1Z999AA10123456784, "Linen shirt", +447700900123
    case_id = make_case(store, config, emulator, text="@LarkspurHelp where is my parcel?", handle="jane", order=order,
                        confirmed=True)
    for text, named in (("@jane your order LS-100234 is on its way", "LS-100234"),
                        ("@jane tracking 1Z999AA10123456784 shows it moving", "1Z999AA10123456784"),
                        ("@jane your linen shirt is on its way", "Linen shirt"),
                        ("@jane we'll call you on 07700 900123", "phone"),
                        ("@jane we'll call you on +44-7700-900-123", "phone"),
                        ("@jane we'll call you on (07700) 900.123", "phone")):
        with pytest.raises(ReplyRejected, match=named):
            queue_reply(store, config, case_id, text, "ann")
    Outbox(store, config).send_due()
    assert emulator.posted == []
    # What the customer posted themselves may be said back to them in public.
    own = make_case(store, config, emulator, text="@LarkspurHelp where is LS-100234? my linen shirt is late",
                    handle="jane", order=order, confirmed=True)
    queue_reply(store, config, own, "@jane your linen shirt (LS-100234) left the Leeds hub yesterday", "ann")


def test_what_the_customer_told_us_by_direct_message_is_not_said_back_in_public(
        store: Store, emulator: XEmulator) -> None:
    """Security audit (2026-12-06, second): after the customer DMed "it's order LS-100234 - the linen shirt,
    please don't post this publicly", the number and the item counted as posted by them: the built-in templates
    filled them into a public X reply and typed text naming them was queued. Only their public posts count."""
    from doorstep.models import Mention
    from doorstep.pipeline import Pipeline

    from conftest import KeywordClassifier

    config = shop_config()
    order = add_order(store)  # Jane Doe, LS-100234, "Linen shirt"
    case_id = make_case(store, config, emulator, text="@LarkspurHelp where is my parcel??", handle="jane", order=order,
                        confirmed=True)
    dm = Mention(channel="x_dm", external_id="dm-1", author_handle="jane", created_at=NOW + timedelta(minutes=5),
                 text="it's order LS-100234 - the linen shirt. Please don't post this publicly.")
    Pipeline(store, config, KeywordClassifier()).ingest([dm])
    assert store.mention_by_external_id("x_dm", "dm-1").case_id == case_id  # type: ignore[union-attr]
    for text, named in (("@jane your order LS-100234 is on its way", "LS-100234"),
                        ("@jane your linen shirt is on its way", "Linen shirt")):
        with pytest.raises(ReplyRejected, match=named):
            queue_reply(store, config, case_id, text, "ann", channel="x")
    with pytest.raises(TemplateError):
        render_template(store, config, case_id, "Sorry about your order {{ order_number }}", channel="x")
    # By DM the order may be named: it is private.
    assert "LS-100234" in render_template(store, config, case_id, "Your order {{ order_number }}", channel="x_dm")


def test_after_a_relink_to_another_customers_order_the_authors_own_details_stay_out_of_public(
        store: Store, emulator: XEmulator) -> None:
    """Security audit (2026-12-06, second), finding 2: relinked to Theo's order, the case forgot that its author
    @pq_parcels is Priscilla Quenby on her own record; a public reply with her e-mail and phone was queued."""
    config = shop_config()
    store.upsert_customers([Customer(id="CP", name="Priscilla Quenby", email="priscilla.quenby@example.com",
                                     phone="07700 900777", handles={"x": "pq_parcels"})])
    theo = add_order(store, customer_id="CT", name="Theo Jones", email="theo@example.com", phone="+447700900555",
                     number="LS-104201")
    case_id = make_case(store, config, emulator, text="@LarkspurHelp where is my parcel??", handle="pq_parcels",
                        order=theo, confirmed=False)
    for text in ("@pq_parcels we'll email priscilla.quenby@example.com today",
                 "@pq_parcels we'll call you on 07700 900777",
                 "@pq_parcels thanks Priscilla Quenby, checking"):
        with pytest.raises(ReplyRejected):
            queue_reply(store, config, case_id, text, "ann")
    Outbox(store, config).send_due()
    assert emulator.posted == []
