"""The console's pages as the pages audit, the orders audit and the accounts audit found them (2026-12-06):
what a lead and an agent read on the Reports page, the case page (J / K after a reload, a failed send's whole
error, item quantities, the questions block), the timeline, Settings, Approvals and the inbox's filters.

Each test runs on SQLite and on PostgreSQL (the ``db`` demo shop of tests/test_console_apptest.py, or the
``store`` fixture), through Streamlit's AppTest or the functions the pages call."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from doorstep.models import utcnow
from doorstep.store import InboxQuery, Store
from console.widgets import WORD_JOINER
from tests.conftest import DEMO_CONFIG, sign_in
from tests.conftest import texts as _texts
from tests.test_console_apptest import db, demo_template, page  # noqa: F401 - fixtures

from test_outbox import add_order, make_case, shop_config


def texts(at: AppTest) -> str:
    """What the page shows, as read (the invisible joiners that keep "@handle" from becoming a link taken out)."""
    return _texts(at).replace(WORD_JOINER, "")


# ------------------------------------------------------------------ 1. Reports: the scheduled send
def test_next_send_is_the_coming_weekly_at_in_local_time() -> None:
    from console.reports import next_send

    # Sun 06 Dec 2026 19:25 GMT: the next "Mon 08:00" in London is Mon 07 Dec 08:00 GMT.
    now = datetime(2026, 12, 6, 19, 25, tzinfo=timezone.utc)
    assert next_send(now, "Europe/London", "Mon 08:00") == datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc)
    # In summer time 08:00 London is 07:00 UTC; at the very moment of a send, the next is a week on.
    july = datetime(2026, 7, 6, 7, 0, tzinfo=timezone.utc)
    assert next_send(july, "Europe/London", "Mon 08:00") == datetime(2026, 7, 13, 7, 0, tzinfo=timezone.utc)
    assert next_send(july - timedelta(minutes=1), "Europe/London", "Mon 08:00") == july


def test_reports_page_shows_the_scheduled_send_and_advises_recipients_only_when_none_are_set(
        db: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from console.reports import next_send
    from doorstep.config import load_config

    db.db.execute(
        "insert into outbound_messages (kind, channel, target, text, status, attempts, idempotency_key, created_at, "
        "sent_at) values ('report', 'email', 'care-lead@larkspur-home.example', 'weekly', 'sent', 1, "
        "'report:2026-W45:care-lead@larkspur-home.example', '2026-11-09T08:00:00+00:00', '2026-11-09T08:00:05+00:00')")
    at = page("reports", "lee", db)
    assert not at.exception, at.exception
    shown = texts(at)
    # demo/doorstep.toml has [reports] recipients and weekly_at: the page must not say to set them.
    assert "set [reports] recipients" not in shown, shown
    config = load_config(DEMO_CONFIG)
    coming = next_send(utcnow(), config.tz, "Mon 08:00")
    assert f"Next send: {config.local_time(coming, zone=True)}" in shown, shown
    assert "care-lead@larkspur-home.example" in shown.split("Next send:")[1].splitlines()[0]
    sends = at.dataframe[0].value
    assert list(sends["status"]) == ["sent"] and list(sends["sent"]) == ["Mon 09 Nov 08:00"]

    # Without recipients (nor a Slack webhook) nothing is scheduled: then, and only then, the advice.
    bare = tmp_path / "no-recipients.toml"
    bare.write_text(Path(DEMO_CONFIG).read_text().replace('recipients = ["care-lead@larkspur-home.example"]', ""))
    monkeypatch.setenv("DOORSTEP_CONFIG", str(bare))
    monkeypatch.delenv("REPORTS_SLACK_WEBHOOK_URL", raising=False)
    at = page("reports", "lee", db)
    assert not at.exception, at.exception
    shown = texts(at)
    assert "Next send" not in shown and "set [reports] recipients" in shown, shown


# ------------------------------------------------------------------ 2. J / K after a reload or a shared link
def test_case_page_opened_by_its_address_alone_walks_the_inbox_default_queue(db: Store) -> None:  # noqa: F811
    queue = [c.id for c in db.inbox(InboxQuery(limit=10))]
    assert len(queue) >= 3
    at = AppTest.from_string("from console import case_view\ncase_view.render()", default_timeout=30)
    sign_in(at, db, "ann")
    at.query_params["id"] = str(queue[1])  # a reload or a shared /case?id=N: no inbox in this session
    at.run()
    assert not at.exception, at.exception
    assert not at.button(key="case_next").disabled and not at.button(key="case_previous").disabled
    at.button(key="case_next").click().run()
    assert str(queue[2]) in str(at.query_params["id"])
    at.button(key="case_previous").click().run()
    at.button(key="case_previous").click().run()
    assert str(queue[0]) in str(at.query_params["id"])


# ------------------------------------------------------------------ 3. the courier link that could not be made
def test_timeline_says_who_escalated_without_a_courier_link_and_the_remedy(db: Store) -> None:  # noqa: F811
    case_id = db.inbox(InboxQuery(limit=1))[0].id
    reason = ("courier links need a signing key: set COURIER_LINK_SECRET in the environment or "
              "$DOORSTEP_SECRETS_FILE ([responders.courier_link] secret)")
    db.audit("ann", "courier.link.unavailable", case_id, {"reason": reason})  # as responders/escalation.py writes it
    at = page("case_view", "ann", db, case_id=case_id)
    assert not at.exception, at.exception
    [line] = [c.value for c in at.caption if "courier link" in c.value.replace("\\", "")]
    line = line.replace("\\", "")
    assert "ann: courier link unavailable" not in line
    assert "ann's escalation to the courier went without a courier link" in line, line
    assert "set COURIER_LINK_SECRET" in line and "whoever runs Doorstep" in line, line


# ------------------------------------------------------------------ 4. Settings: listener health and locks
def test_settings_listener_health_and_locks_in_the_shops_time_zone_and_words(db: Store) -> None:  # noqa: F811
    from console.auth import LOCKOUT_FAILURES

    db.db.execute("insert into listener_health (name, last_success_at, last_error_at, last_error, lag_seconds, fetched, "
                  "stored, errors) values ('x', '2026-12-06T19:31:38.312083+00:00', null, null, 0, 1140, 41, 0)")
    for _ in range(LOCKOUT_FAILURES):
        db.audit("bob", "login.failed", None, {})  # as the login page writes a wrong password
    at = page("settings", "ada", db)
    assert not at.exception, at.exception
    frames = [f.value for f in at.dataframe]
    [health] = [f for f in frames if "listener" in f.columns]
    assert "last_success_at" not in health.columns and "lag_seconds" not in health.columns
    row = health.iloc[0]
    assert row["listener"] == "X" and row["last success"] == "Sun 06 Dec 19:31", row.to_dict()
    assert "Times in Europe/London." in texts(at)
    [users] = [f for f in frames if "username" in f.columns]
    assert "locked until (UTC)" not in users.columns
    from console.auth import lock_ends
    from doorstep.config import load_config

    bob = users[users["username"] == "bob"].iloc[0]
    assert bob["locked until"] == load_config(DEMO_CONFIG).local_time(lock_ends(db, "bob"))


# ------------------------------------------------------------------ 5. words, not keys
def test_questions_block_and_approvals_say_channels_rules_and_states_in_words(db: Store) -> None:  # noqa: F811
    from doorstep import dialogue as rows
    from doorstep.config import load_config
    from responders.automatic import record
    from responders.outbox import enqueue

    case_id = db.inbox(InboxQuery(limit=1))[0].id
    now = utcnow()
    message = enqueue(db, kind="outreach", channel="sms", text="Shall we call you?", actor="dialogue",
                      idempotency_key=f"pages-audit-{case_id}", case_id=case_id, target="+44 7700 900412")
    rows.insert_question(db, case_id=case_id, customer_id=None, rule="callback", channel="sms",
                         target="+44 7700 900412", message_id=message.id, token="abc12", asked_at=now,
                         expires_at=now + timedelta(hours=72), mail_id=None)
    rows.insert_callback(db, case_id=case_id, question_id=None, reason="agent", offered_by="ann", offered_at=now,
                         phone="+44 7700 900412")
    at = page("case_view", "ann", db, case_id=case_id)
    assert not at.exception, at.exception
    shown = texts(at)
    assert "by sms" not in shown and "“callback”" not in shown and "· offered ·" not in shown, shown
    assert "by SMS to +44 7700 900412" in shown and "call back question" in shown, shown
    assert "reason: offered by an agent" in shown, shown

    held = record(db, load_config(DEMO_CONFIG), message, "outreach")
    db.db.execute("update outbound_messages set status = 'awaiting_approval' where id = ?", [held.id])
    db.db.execute("update automatic_messages set approval = 'pending' where message_id = ?", [held.id])
    at = page("approvals", "ann", db)
    assert not at.exception, at.exception
    shown = texts(at)
    assert "rule outreach" not in shown and "outreach via" not in shown, shown
    assert "Outreach message by SMS to +44 7700 900412" in shown, shown
    # a call-back offer is sent as outreach, but its rule is the call back question (final re-run, finding 2)
    assert "written by the rule: call back question" in shown and "proactive outreach about a parcel" not in shown, shown


# ------------------------------------------------------------------ 6. a failed send's whole error
def test_case_header_shows_a_failed_sends_whole_error_and_its_account(db: Store) -> None:  # noqa: F811
    case_id = db.inbox(InboxQuery(limit=1))[0].id
    error = ("cannot post to X as @FettleCare: FETTLE_X_ACCESS_TOKEN or X_ACCESS_TOKEN not set (the account's user "
             "keys; set them in the environment or $DOORSTEP_SECRETS_FILE, then doorstep outbox retry 12)")
    db.db.execute("insert into outbound_messages (kind, channel, target, text, status, attempts, last_error, "
                  "idempotency_key, created_at, case_id, account) values ('reply', 'x', 'oliver_k', 'sorry', 'failed', "
                  "1, ?, 'pages-audit-failed', ?, ?, 'FettleCare')", [error, utcnow().isoformat(), case_id])
    at = page("case_view", "ann", db, case_id=case_id)
    assert not at.exception, at.exception
    [failed] = [e.value.replace("\\", "").replace(WORD_JOINER, "") for e in at.error if "Not delivered" in e.value.replace("\\", "")]
    assert "from @FettleCare" in failed, failed
    assert "then doorstep outbox retry 12)" in failed, failed


# ------------------------------------------------------------------ 7. item quantities under "qty"
def test_qty_is_the_items_quantity_on_the_case_page_and_in_items(db: Store) -> None:  # noqa: F811
    from doorstep.config import load_config
    from responders.templates import case_variables

    case = next(c for c in db.inbox(InboxQuery(limit=200)) if c.order_number)
    order = db.get_order(case.order_number)  # type: ignore[arg-type]
    assert order is not None
    db.upsert_order(order.model_copy(update={"items": [{"sku": "MUG", "name": "Mug", "qty": 2}, {"name": "Lamp"}]}))
    values = case_variables(db, load_config(DEMO_CONFIG), db.get_case(case.id))  # type: ignore[arg-type]
    assert values["items"] == "Mug x2, Lamp"
    assert [i["quantity"] for i in values["item_list"]] == [2, 1]
    at = page("case_view", "ann", db, case_id=case.id)
    assert not at.exception, at.exception
    [table] = [t.value for t in at.table if "qty" in t.value.columns]
    assert list(table["item"]) == ["Mug", "Lamp"] and [str(q) for q in table["qty"]] == ["2", "1"]


# ------------------------------------------------------------------ 8. a number inside a longer one
def test_public_reply_fills_the_order_number_only_when_posted_as_a_whole_number(store: Store) -> None:
    from responders.templates import render_template

    config = shop_config()
    source = "Sorry!{% if order_number is defined %} Your order {{ order_number }}.{% endif %}" \
             "{% if tracking_number is defined %} Parcel {{ tracking_number }}.{% endif %}"
    order = add_order(store, number="104233")
    inside = make_case(store, config, order=order, external_id="inside",
                       text="@LarkspurHelp I paid by bank transfer, reference 5104233 - parcel 1Z999AA101234567840 lost")
    assert render_template(store, config, inside, source) == "Sorry!"
    posted = make_case(store, config, order=order, external_id="posted", handle="jane",
                       text="@LarkspurHelp my order #104233 (parcel 1z999aa10123456784) is lost")
    assert render_template(store, config, posted, source) == "Sorry! Your order 104233. Parcel 1Z999AA10123456784."


# ------------------------------------------------------------------ 9 and 10. the inbox's filters
def test_clearing_a_filter_puts_case_to_open_back_on_the_top_case(db: Store) -> None:  # noqa: F811
    at = page("inbox", "ann", db)
    unfiltered = list(at.selectbox(key="inbox_pick").options)
    at.selectbox(key="inbox_channel").select("x").run()
    filtered = at.selectbox(key="inbox_pick")
    lower = [o for o in filtered.options if o in unfiltered and o != unfiltered[0]]
    assert lower, (filtered.options, unfiltered)
    filtered.select(lower[-1]).run()
    at.selectbox(key="inbox_channel").select("(any)").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="inbox_pick").value == db.inbox(InboxQuery(limit=1))[0].id


LINK_SCRIPT = """
import streamlit as st
from console import inbox
from console.widgets import open_inbox
if st.session_state.pop("_dashboard_link", False):
    open_inbox(brand="Larkspur Home")
inbox.render()
"""


def test_a_dashboard_link_clears_waiting_for_and_sort(db: Store) -> None:  # noqa: F811
    at = AppTest.from_string(LINK_SCRIPT, default_timeout=30)
    sign_in(at, db, "ann")
    at.run()
    at.selectbox(key="inbox_waiting").select("callback").run()
    at.selectbox(key="inbox_sort").select("newest").run()
    at.session_state["_dashboard_link"] = True
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="inbox_brand").value == "Larkspur Home"
    assert at.selectbox(key="inbox_waiting").value == "(any)"
    assert at.selectbox(key="inbox_sort").value == "priority"


def test_escalating_to_the_courier_without_a_signing_key_says_so_at_once(
        db: Store, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from doorstep.config import load_config

    monkeypatch.delenv("COURIER_LINK_SECRET", raising=False)
    monkeypatch.delenv("DOORSTEP_SECRETS_FILE", raising=False)
    couriers = {c.name for c in load_config(DEMO_CONFIG).couriers if c.escalation_email}
    case = next(c for c in db.inbox(InboxQuery(limit=500)) if c.link_confirmed and c.tracking_number
                and c.courier in couriers)
    at = page("case_view", "ann", db, case_id=case.id)
    at.selectbox(key=f"esc_target_{case.id}").select("courier")
    at.button(key=f"FormSubmitter:escalate_{case.id}-Escalate").click().run()
    assert not at.exception, at.exception
    assert any(e.action == "courier.link.unavailable" for e in db.audit_trail(case.id, limit=1000))
    [warning] = [w.value.replace("\\", "") for w in at.warning if "courier link" in w.value.replace("\\", "")]
    assert "goes without a courier link" in warning and "set COURIER_LINK_SECRET" in warning, warning
    shown = texts(at)
    assert "ann's escalation to the courier went without a courier link" in shown, shown
