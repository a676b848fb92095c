"""The courier's page in a real browser: it opens from the escalation's link, shows a hostile
tracking description as text, and its form posts an update that lands on the case once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from doorstep.store import Store
from responders.courier_page import CourierPageServer
from responders.escalation import escalate

from test_courier_link import courier_config, path_of  # noqa: F401
from test_e2e_browser import chromium_or_skip, launch_chromium
from test_outbox import NOW, add_order, make_case

pytestmark = [pytest.mark.e2e]
HOSTILE = "<script>alert('courier')</script><img src=x onerror=alert(2)>"


def test_a_courier_opens_the_link_and_posts_an_update(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("COURIER_LINK_SECRET", "browser-test-key")
    config = courier_config(customer_message="off")
    order = add_order(store, events=[(NOW - timedelta(days=1), "attempt_failed", "Harrogate")])
    store.db.execute("update tracking_events set description = ?", [HOSTILE])
    case_id = make_case(store, config, order=order, text="@LarkspurHelp nobody came")
    escalate(store, config, case_id, "courier", "please rebook for Friday", "sam")
    email = next(m for m in store.outbound_for_case(case_id) if m.kind == "escalation")
    link = next(w for w in email.text.split() if "/courier/" in w)
    with CourierPageServer(store, config, port=0) as server, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        hosts: set[str] = set()
        page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
        page.goto(server.url + path_of(link))
        page.get_by_role("heading", name="Shipment 1Z999AA10123456784").wait_for()
        assert page.get_by_text("Our care team asks you to look into this parcel").is_visible()
        assert page.get_by_text("please rebook for Friday").count() == 0  # the agent's note is in the e-mail only
        assert page.get_by_text(HOSTILE).is_visible()  # shown as text
        page.get_by_label("What happened").select_option("redelivery_booked")
        page.get_by_placeholder("e.g. redelivery booked for Friday").fill("Redelivery booked for Fri")
        update_id = page.input_value("input[name=update_id]")
        page.get_by_role("button", name="Send update").click()
        page.get_by_text("Thank you: your update is on the case.").wait_for()
        assert page.get_by_text("redelivery booked: Redelivery booked for Fri").is_visible()
        # The same form sent again (a double click, a retried request) is the same update.
        again = page.request.post(server.url + path_of(link) + "/updates", form={
            "update_id": update_id, "status": "redelivery_booked", "text": "Redelivery booked for Fri"})
        assert again.ok and "Thank you" in again.text()
        browser.close()
    assert dialogs == []
    assert hosts == {server.url.split("/")[2]}
    notes = [n.text for n in store.notes(case_id)]
    assert notes == ["Courier update (redelivery booked): Redelivery booked for Fri"]
