"""Alerts audit (2026-12-06): what the care team lead is told, on what the alert messages say.

1. The hourly cap held three urgent complaints back and they were never sent, not even after the cap was raised:
   urgent and VIP alerts fire once, on new posts, so a held one that was not sent at once was lost.
3. A complaint received by SMS was quoted in the Slack alert with the customer's mobile number and e-mail.
4. A worker killed during an alert round sent the same alerts again after restart: each alert was queued (and
   committed) as it went, the record of what was sent only at the end of the round.
6. With the default automatic escalation, a case escalated before its SLA was never announced as overdue: the SLA
   rule looked at new and open cases only and the alert was cancelled as "the case is escalated".
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from doorstep.models import Mention
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from responders.alerts import AlertEngine
from responders.outbox import list_messages

from conftest import KeywordClassifier
from test_alerts import alert_config
from test_outbox import make_case


def _urgent(store: Store, config, handle: str, text: str = "@LarkspurHelp my parcel is lost AGAIN",
            channel: str = "x") -> int:
    return make_case(store, config, text=text, handle=handle, channel=channel, created_at=datetime.now(timezone.utc))


def test_urgent_complaints_held_back_by_the_cap_are_sent_when_it_allows(store: Store) -> None:
    config = alert_config(urgent_complaint=True, max_per_hour=1, email="lead@larkspur.test")
    now = datetime.now(timezone.utc)
    engine = AlertEngine(store, config, now=lambda: now)
    assert engine.run_once() == []
    cases = [_urgent(store, config, f"c{i}") for i in range(3)]
    assert len(engine.run_once()) == 1  # the cap: one an hour
    assert AlertEngine(store, config, now=lambda: now + timedelta(minutes=5)).run_once() == []  # still capped
    later = [AlertEngine(store, config, now=lambda m=m: now + timedelta(minutes=m)).run_once() for m in (61, 122)]
    assert [len(ids) for ids in later] == [1, 1]
    texts = [m.text for m in list_messages(store, kind="alert")]
    assert sorted(c for c in cases if any(f"case #{c}" in t for t in texts)) == sorted(cases)  # none lost
    assert any("(1 further incident(s) held back" in t for t in texts), texts


def test_a_raised_cap_sends_the_held_alerts_at_once(store: Store) -> None:
    config = alert_config(urgent_complaint=True, max_per_hour=1, email="lead@larkspur.test")
    now = datetime.now(timezone.utc)
    AlertEngine(store, config, now=lambda: now).run_once()
    for i in range(3):
        _urgent(store, config, f"c{i}")
    assert len(AlertEngine(store, config, now=lambda: now).run_once()) == 1
    raised = alert_config(urgent_complaint=True, max_per_hour=20, email="lead@larkspur.test")
    assert len(AlertEngine(store, raised, now=lambda: now + timedelta(minutes=1)).run_once()) == 2


def test_a_private_message_is_not_quoted_and_public_text_has_its_contact_details_masked(store: Store) -> None:
    config = alert_config(urgent_complaint=True, slack_webhook_url="http://127.0.0.1:9/hook")
    AlertEngine(store, config).run_once()
    Pipeline(store, config, KeywordClassifier()).ingest([Mention(
        channel="sms", external_id="sms-1", author_handle="+447700900456", created_at=datetime.now(timezone.utc),
        text="Jane Doe here, mob 07700 900456, email jane.private@example.com. My Larkspur order is lost AGAIN")])
    _urgent(store, config, "loud", text="@LarkspurHelp parcel lost AGAIN, call me on 07700 900123 or a@b.example")
    AlertEngine(store, config).run_once()
    texts = "\n".join(m.text for m in list_messages(store, kind="alert"))
    for private in ("07700 900456", "447700900456", "jane.private@example.com", "Jane Doe", "07700 900123",
                    "a@b.example"):
        assert private not in texts, texts
    assert "from a customer by SMS" in texts and "@loud on X" in texts and "parcel lost AGAIN" in texts, texts


def test_a_round_that_dies_before_its_end_leaves_nothing_to_send_twice(store: Store,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = alert_config(urgent_complaint=True, email="lead@larkspur.test")
    now = datetime.now(timezone.utc)
    engine = AlertEngine(store, config, now=lambda: now)
    engine.run_once()
    for i in range(3):
        _urgent(store, config, f"c{i}")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("worker killed before the round saved its state")

    monkeypatch.setattr(store, "set_cursor", killed)
    with pytest.raises(KeyboardInterrupt):
        engine.run_once()
    monkeypatch.undo()
    with store.transaction():  # the outbox, running beside the rounds, sent whatever the dead round had queued
        store.db.execute("update outbound_messages set status = 'sent' where kind = 'alert'")
    restarted = AlertEngine(store, config, now=lambda: now + timedelta(minutes=2))  # the worker back, later
    assert len(restarted.run_once()) == 3  # the round again, whole
    assert len(list_messages(store, kind="alert")) == 3  # each alert once


def test_an_escalated_case_that_goes_overdue_is_announced(store: Store) -> None:
    config = alert_config(sla_breach=True, sla_warn_minutes=15, cooldown_minutes=60, email="lead@larkspur.test")
    case_id = make_case(store, config, created_at=datetime.now(timezone.utc))
    case = store.get_case(case_id)
    store.update_case(case_id, case.version, "sla-escalation", status="escalated")  # type: ignore[union-attr]
    due = case.first_response_due  # type: ignore[union-attr]
    ids = AlertEngine(store, config, now=lambda: due + timedelta(minutes=5)).run_once()  # type: ignore[operator]
    assert len(ids) == 1
    from responders.outbox import Outbox

    Outbox(store, config, now=lambda: due + timedelta(minutes=5)).send_due()  # type: ignore[operator]
    [message] = list_messages(store, kind="alert")
    assert message.status != "cancelled", message.last_error
    assert f"case #{case_id}" in message.text and "overdue since" in message.text
