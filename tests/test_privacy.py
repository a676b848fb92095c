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
