"""Private means private (issue 13, failure 5): "ask privately" is a direct message, and the answer comes back.

Real tweepy and Mastodon.py against local stand-ins (the X emulator's DM endpoints follow
``openapi.json``); assertions are on what the servers received.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.config import XSettings
from listeners.x import XListener
from listeners.x_emulator import XEmulator
from responders.outbox import Outbox, get_message, queue_reply
from responders.private import plan_private, queue_private
from test_accounts import add_order, emulator, later, send_all, two_brand_config  # noqa: F401 - fixture
from test_outbox import make_case

from conftest import KeywordClassifier

ORDER = "ORD-2026-001021"


def test_ask_privately_before_the_fix_went_out_as_a_public_post(store: Store, emulator: XEmulator) -> None:
    """Failure 5 as reported: the console queued the ask-privately text with queue_reply, a public reply."""
    config = two_brand_config()
    case_id = make_case(store, config, emulator, text="@FettleCare where is my head torch?", handle="sienna_l")
    queue_reply(store, config, case_id, "@sienna_l please DM us your order number", "agent")
    send_all(store, config)
    assert len(emulator.posted) == 1 and emulator.dms == []  # public: what the fix must never do for "privately"


def test_ask_privately_is_an_x_direct_message_and_the_private_answer_confirms_the_link(
        store: Store, emulator: XEmulator) -> None:
    config = two_brand_config()
    add_order(store, ORDER, "Fettle Outdoor", customer="C7", handle="someone_else")
    # The public post names an order whose customer is not the author: linked, but unconfirmed.
    case_id = make_case(store, config, emulator, text=f"@FettleCare where is {ORDER}?", handle="sienna_l")
    case = store.get_case(case_id)
    assert case is not None and case.order_number == ORDER and not case.link_confirmed

    plan = plan_private(store, config, case_id)
    assert plan.channel == "x_dm" and plan.account == "FettleCare" and plan.recipient == "@sienna_l"
    assert "from @FettleCare" in plan.describe() and "private" in plan.describe()
    message = queue_private(store, config, case_id, "Hi, could you send us the e-mail address you ordered with?",
                            "agent", plan=plan)
    send_all(store, config)
    sent = get_message(store, message.id)  # type: ignore[arg-type]
    assert sent.status == "sent", sent.last_error
    # What X received: one direct message from @FettleCare to @sienna_l, and nothing public.
    assert emulator.posted == []
    (dm,) = emulator.dms
    assert (dm["sender"], dm["recipient"]) == ("FettleCare", "sienna_l") and dm["id"] == sent.external_id
    assert sent.account == "FettleCare"

    # The customer answers privately; the DM listener (FettleCare's own token) brings it into the case.
    emulator.send_dm("sienna_l", "FettleCare", f"It's my order {ORDER}, sienna@example.com")
    listener = XListener(store, config, Pipeline(store, config, KeywordClassifier()),
                         settings=XSettings(accounts=["FettleCare"], direct_messages=True))
    result = listener.poll_once()
    assert result.ok, result.errors
    answers = [m for m in store.mentions_for_case(case_id) if m.channel == "x_dm"]
    assert [m.text for m in answers] == [f"It's my order {ORDER}, sienna@example.com"]
    assert answers[0].account == "FettleCare" and answers[0].author_handle == "sienna_l"
    case = store.get_case(case_id)
    assert case is not None and case.link_confirmed and case.order_number == ORDER
    # Our own DM is not read back as a customer message, and a second round adds nothing.
    assert listener.poll_once().stored == 0
    assert len([m for m in store.mentions_for_case(case_id) if m.channel == "x_dm"]) == 1


def test_dm_endpoints_need_a_user_token(emulator: XEmulator) -> None:
    import tweepy

    app_only = tweepy.Client(bearer_token="app-x_bearer_token")
    from doorstep.clients import mount_base_url

    mount_base_url(app_only.session, emulator.base_url)
    with pytest.raises(tweepy.Forbidden):
        app_only.get_direct_message_events(user_auth=False)


def test_a_reply_on_the_dm_channel_stays_private(store: Store, emulator: XEmulator) -> None:
    """An agent answering the customer's DM answers by DM, from the same account."""
    config = two_brand_config()
    case_id = make_case(store, config, emulator, text="@FettleCare torch broken", handle="kit")
    queue_private(store, config, case_id, "Could you DM us your order number?", "agent")
    send_all(store, config)
    emulator.send_dm("kit", "FettleCare", "sure, it's ORD-2026-000999")
    XListener(store, config, Pipeline(store, config, KeywordClassifier()),
              settings=XSettings(accounts=["FettleCare"], direct_messages=True)).poll_once()
    message = queue_reply(store, config, case_id, "Thanks, checking now", "agent", channel="x_dm")
    Outbox(store, config, now=later(10)).send_due()
    assert get_message(store, message.id).status == "sent"  # type: ignore[arg-type]
    assert emulator.posted == [] and [d["sender"] for d in emulator.dms] == ["FettleCare", "kit", "FettleCare"]
