"""Escalations reach Slack, email and the courier's signed webhook exactly once, and mark the case."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from doorstep.config import parse_config
from doorstep.store import Store
from responders.escalation import EscalationRejected, auto_escalate_sla, escalate
from responders.outbox import Outbox, queue_escalation

from test_outbox import NOW, RecordingServer, SmtpSink, add_order, later, make_case, smtp  # noqa: F401 - fixture

SECRET = "whsec-test-123"


def courier_config(webhook: str | None = None, email: str | None = None, **escalation: object):
    return parse_config({
        "timezone": "Europe/London",
        "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}}],
        "couriers": [{"name": "UPS", "escalation_webhook": webhook, "escalation_email": email}],
        "responders": {"escalation": {
            "targets": {
                "team": {"slack_webhook_url": "$SLACK_TEAM_URL", "email": "care-team@larkspur.test"},
                "lead": {"email": ["lead@larkspur.test"]},
            },
            "webhook_secret": "$COURIER_WEBHOOK_SECRET",
            **escalation,
        }},
    })


def test_team_escalation_reaches_slack_and_email_once(store: Store, smtp: SmtpSink,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with RecordingServer() as slack:
        monkeypatch.setenv("SLACK_TEAM_URL", slack.url + "/services/T000/B000/XXXX")
        config = courier_config()
        order = add_order(store)
        case_id = make_case(store, config, order=order, text="@LarkspurHelp my parcel is lost, third time asking!")
        first = queue_escalation(store, config, case_id, "team", "customer threatening chargeback", "sam")
        messages = store.outbound_for_case(case_id)
        assert {m.channel for m in messages} == {"slack", "email"} and first.id == messages[0].id
        assert all("/services/" not in (m.target or "") for m in messages)  # the secret URL is not stored
        slack.fail("503")
        smtp.refuse(1)
        Outbox(store, config).send_due()
        assert slack.received == [] and smtp.messages == []
        Outbox(store, config, now=later(10)).send_due()
        Outbox(store, config, now=later(20)).send_due()
        assert len(slack.received) == 1 and len(smtp.messages) == 1
        text = json.loads(slack.received[0]["body"])["text"]
        assert f"case #{case_id}" in text and "chargeback" in text and "third time asking" in text
        assert "1Z999AA10123456784" in text
        assert smtp.messages[0]["Subject"].startswith(f"Escalation: case #{case_id} - order LS-100234")
    case = store.get_case(case_id)
    assert case.status == "escalated"  # type: ignore[union-attr]
    audit = [e for e in store.audit_trail(case_id) if e.action == "case.escalate"]
    assert audit and audit[0].details["target"] == "team" and audit[0].details["note"] == "customer threatening chargeback"


def test_courier_webhook_is_signed_and_carries_the_timeline(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURIER_WEBHOOK_SECRET", SECRET)
    with RecordingServer() as courier:
        config = courier_config(webhook=courier.url + "/claims")
        order = add_order(store, events=[(NOW - timedelta(days=3), "in_transit", "Leeds hub"),
                                         (NOW - timedelta(days=1), "delivered", "Front porch")])
        case_id = make_case(store, config, order=order, text="@LarkspurHelp says delivered but my parcel is lost")
        escalate(store, config, case_id, "courier", "please open a trace", "sam")
        courier.fail("reset")
        Outbox(store, config).send_due()
        Outbox(store, config, now=later(10)).send_due()
        assert courier.attempts == 2 and len(courier.received) == 1
        request = courier.received[0]
        body = request["body"]
        expected = "sha256=" + hmac.new(SECRET.encode(), request["headers"]["X-Doorstep-Timestamp"].encode() + b"." + body,
                                        hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request["headers"]["X-Doorstep-Signature"], expected)
        assert request["headers"]["Idempotency-Key"]
        payload = json.loads(body)
        assert payload["event"] == "case.escalated" and payload["order_number"] == "LS-100234"
        assert payload["tracking_number"] == "1Z999AA10123456784" and payload["note"] == "please open a trace"
        assert "my parcel is lost" in payload["complaint"]["text"]
        assert [e["status"] for e in payload["timeline"]] == ["in_transit", "delivered"]
        assert payload["timeline"][1]["location"] == "Front porch"


def test_courier_escalation_needs_a_confirmed_order_and_a_route(store: Store) -> None:
    config = courier_config(email="claims@ups.test")
    order = add_order(store)
    unconfirmed = make_case(store, config, order=order, confirmed=False)
    with pytest.raises(EscalationRejected, match="confirm the case's order"):
        escalate(store, config, unconfirmed, "courier", None, "sam")
    no_route = courier_config()
    confirmed = make_case(store, no_route, order=order, text="@LarkspurHelp lost it")
    with pytest.raises(EscalationRejected, match="no escalation_email or escalation_webhook"):
        escalate(store, no_route, confirmed, "courier", None, "sam")
    with pytest.raises(EscalationRejected, match="unknown escalation target 'ops'.*courier, lead, team"):
        escalate(store, config, confirmed, "ops", None, "sam")
    assert store.get_case(unconfirmed).status != "escalated"  # type: ignore[union-attr]


def test_courier_escalation_by_email(store: Store, smtp: SmtpSink) -> None:
    config = courier_config(email="claims@ups.test")
    order = add_order(store)
    case_id = make_case(store, config, order=order, text="@LarkspurHelp lost parcel")
    escalate(store, config, case_id, "courier", "trace please", "sam")
    Outbox(store, config).send_due()
    assert len(smtp.messages) == 1 and smtp.messages[0].envelope_to == ["claims@ups.test"]
    body = smtp.messages[0].get_payload(decode=True).decode()
    assert "Tracking: 1Z999AA10123456784" in body and "lost parcel" in body
    # People read it: scans and deadlines in words and the team's time zone (the webhook's JSON keeps the keys)
    assert "in transit" in body and "in_transit" not in body
    due = next(line for line in body.splitlines() if line.startswith("First response due: "))
    assert "+00:00" not in due and "T" not in due.split(": ", 1)[1][:11] and config.timezone in due, due


def test_automatic_escalation_when_sla_is_about_to_breach(store: Store, smtp: SmtpSink) -> None:
    config = courier_config(auto_sla_minutes=15, auto_target="lead")
    case_id = make_case(store, config, created_at=datetime.now(timezone.utc) - timedelta(minutes=20))
    calm = make_case(store, config, handle="bob", text="@LarkspurHelp thanks!", created_at=datetime.now(timezone.utc))
    case = store.get_case(case_id)
    now = case.first_response_due - timedelta(minutes=10)  # type: ignore[operator,union-attr]
    assert store.get_case(calm).first_response_due > now + timedelta(minutes=15)  # type: ignore[union-attr,operator]
    assert auto_escalate_sla(store, config, now) == [case_id]
    assert auto_escalate_sla(store, config, now + timedelta(minutes=1)) == []  # once per case and due time
    Outbox(store, config).send_due()
    assert len(smtp.messages) == 1 and smtp.messages[0].envelope_to == ["lead@larkspur.test"]
    assert "SLA first response due" in smtp.messages[0].get_payload(decode=True).decode()
    assert store.get_case(case_id).status == "escalated"  # type: ignore[union-attr]
    assert any(e.action == "case.escalate" and e.details["reason"] == "sla" for e in store.audit_trail(case_id))


def test_cli_escalate(tmp_path, smtp: SmtpSink) -> None:  # noqa: F811
    from commands.cli import cli

    db = tmp_path / "esc.db"
    store = Store(db)
    config = parse_config({})
    case_id = make_case(store, config)
    store.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", str(db), "escalate", "--case", str(case_id), "--to", "email:ops@larkspur.test",
                                 "--note", "VIP", "--as", "sam"])
    assert result.exit_code == 0, result.output
    sent = runner.invoke(cli, ["--db", str(db), "outbox", "send"])
    assert sent.exit_code == 0 and "sent 1" in sent.output
    assert len(smtp.messages) == 1 and "Note: VIP" in smtp.messages[0].get_payload(decode=True).decode()
    bad = runner.invoke(cli, ["--db", str(db), "escalate", "--case", str(case_id), "--to", "nobody"])
    assert bad.exit_code != 0 and "unknown escalation target" in bad.output


def test_an_escalation_of_a_post_without_a_handle_does_not_say_none() -> None:
    """A user check (2026-12-06): a courier-page post's escalation read "Customer (None, ...)"."""
    from doorstep.config import Config
    from responders.escalation import _text

    brief = {"case_id": 575, "complaint": {"text": "Nobody came to the door.", "author": None,
                                           "at": "2026-12-06T09:45:00+00:00", "url": None}}
    text = _text(brief, None, "ann", Config(), "lead")
    assert "Customer (no handle, Sun 06 Dec 09:45): Nobody came to the door." in text
    assert "Customer (@jane, " in _text({**brief, "complaint": {**brief["complaint"], "author": "jane"}}, None, "ann",
                                         Config(), "lead")


def test_the_brief_quotes_the_customer_not_a_stranger_who_answered_in_their_thread(store: Store) -> None:
    """A courier escalation named @eve_stranger, who only replied in the customer's thread, as
    "Customer" and sent the courier her words (outbound audit, 2026-12-06)."""
    from conftest import KeywordClassifier
    from doorstep.models import Mention
    from doorstep.pipeline import Pipeline
    from responders.escalation import case_brief

    config = parse_config({"timezone": "Europe/London",
                           "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}, "keywords": ["larkspur"]}],
                           "couriers": [{"name": "UPS", "handles": {"x": "UPSHelp"}, "tracking_formats": ["ups"]}]})
    order = add_order(store)
    case_id = make_case(store, config, text="@LarkspurHelp where is my order LS-100234?", order=order,
                        external_id="jane-1")
    Pipeline(store, config, KeywordClassifier()).ingest([Mention(
        channel="x", external_id="eve-1", text="@LarkspurHelp lost my parcel too, you lot are useless",
        created_at=NOW + timedelta(minutes=3), author_handle="eve_stranger", in_reply_to="jane-1")])
    assert store.mention_by_external_id("x", "eve-1").case_id == case_id  # type: ignore[union-attr]
    brief = case_brief(store, config, store.get_case(case_id))  # type: ignore[arg-type]
    assert brief["complaint"]["author"] == "jane" and "LS-100234" in brief["complaint"]["text"]


def test_escalating_a_case_that_waits_on_the_customer_resumes_its_clocks(store: Store) -> None:
    """Dialogue fix report: escalate moved a pending_customer case to escalated without its config, so
    its SLA clocks stayed paused (sla_paused_at set) and it dropped out of the due order for good."""
    from doorstep import sla
    from doorstep.models import utcnow

    config = courier_config(email="depot@ups.test")
    case_id = make_case(store, config, order=add_order(store), text="@LarkspurHelp my parcel is lost")
    case = store.get_case(case_id)
    changes = sla.follow(case, {"status": "pending_customer"}, utcnow(), config)  # type: ignore[arg-type]
    store.update_case(case_id, case.version, "sam", **changes)  # type: ignore[union-attr]
    assert store.get_case(case_id).sla_paused_at is not None  # type: ignore[union-attr]
    escalate(store, config, case_id, "lead", "customer waiting for a refund decision", "sam")
    after = store.get_case(case_id)
    assert after.status == "escalated" and after.sla_paused_at is None  # type: ignore[union-attr]


def test_one_escalation_by_slack_and_email_counts_once_in_the_figures(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard's and the weekly report's "Escalations" count escalations, not the messages that carry
    them: one escalation to a team reached by Slack and e-mail counted 2 (final browser check, stop 36)."""
    from doorstep import metrics
    from doorstep.models import utcnow

    monkeypatch.setenv("SLACK_TEAM_URL", "http://127.0.0.1:9/services/T000/B000/XXXX")
    config = courier_config(email="claims@ups.test")
    order = add_order(store)
    case_id = make_case(store, config, order=order, text="@LarkspurHelp my parcel is lost")
    escalate(store, config, case_id, "team", "chargeback threatened", "sam")  # Slack + e-mail: one escalation
    escalate(store, config, case_id, "lead", None, "sam")                    # one more, one route
    assert len(store.outbound_for_case(case_id)) == 3
    start, end = utcnow() - timedelta(days=1), utcnow() + timedelta(days=1)
    assert metrics.headline(store, start, end, "Europe/London")["escalations"] == 2


def test_a_secret_pasted_into_an_escalation_note_is_not_stored(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """README audit 7 ("Only the $NAME reference is stored on a message, never the secret URL"): a webhook URL
    pasted into the note was masked in the audit log but kept whole in the message's text, in the database."""
    from doorstep import redaction

    hook = "http://127.0.0.1:9/services/T000/B000/XXXXsecretXXXX"
    monkeypatch.setenv("SLACK_TEAM_URL", hook)
    config = courier_config()
    redaction.register_secret(hook)
    case_id = make_case(store, config, order=add_order(store), text="@LarkspurHelp my parcel is lost")
    escalate(store, config, case_id, "team", f"the hook is {hook}, please check", "sam")
    texts = [r[0] for r in store.db.execute("select text from outbound_messages where case_id = ?", [case_id]).fetchall()]
    assert texts and not [t for t in texts if "XXXXsecretXXXX" in t], texts
    assert all("please check" in t for t in texts)


def test_automatic_escalations_are_capped_per_hour_most_urgent_first(store: Store) -> None:
    """Audit of a viral day, finding 1: one worker round escalated 409 cases breaching their SLA to the lead (430
    e-mails and 409 Slack posts, spam bots among them), ~1,250 by the end of the day; the alerts of the same
    breaches were capped at 20 an hour. Automatic escalations are capped too (``auto_max_per_hour``), the most
    urgent first; the others wait for the next hour while still due (the inbox's overdue filter lists them)."""
    config = courier_config(auto_sla_minutes=15, auto_target="lead", auto_max_per_hour=3)
    created = datetime.now(timezone.utc) - timedelta(days=5)  # every clock long breached, whatever the hours
    calm = [make_case(store, config, handle=f"c{n}", text="@LarkspurHelp where is my parcel?", created_at=created)
            for n in range(4)]
    urgent = [make_case(store, config, handle=f"u{n}", created_at=created,
                        text="@LarkspurHelp my parcel is LOST, third time asking, I want a refund NOW!!") for n in range(2)]
    now = datetime.now(timezone.utc)  # the worker's clock: the hour counted is that of the messages it wrote
    assert all(store.get_case(c).first_response_due < now for c in calm + urgent)  # type: ignore[union-attr,operator]
    first = auto_escalate_sla(store, config, now)
    assert len(first) == 3 and set(urgent) <= set(first), first
    assert auto_escalate_sla(store, config, now + timedelta(minutes=30)) == []  # the hour's three are spent
    later_round = auto_escalate_sla(store, config, now + timedelta(minutes=61))
    assert len(later_round) == 3 and not set(later_round) & set(first)


def test_two_rounds_at_once_keep_the_hourly_cap(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit of last stop's behaviours, finding 3: two worker rounds at the same moment (two `doorstep run`, or a
    cron `run --once` beside the worker) each read the hour's count once and escalated 7 cases under a cap of 5
    on SQLite. The count is read again under the write lock before each escalation."""
    import threading

    import responders.escalation as escalation

    config = courier_config(auto_sla_minutes=15, auto_target="lead", auto_max_per_hour=3)
    setup = Store(db_url)
    created = datetime.now(timezone.utc) - timedelta(days=5)
    for n in range(8):
        make_case(setup, config, handle=f"c{n}", text="@LarkspurHelp where is my parcel? lost", created_at=created)
    real = escalation.escalate

    def slow_escalate(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - round "b" writes long after it counted
        import time

        time.sleep(0.4 if threading.current_thread().name == "b" else 0.02)
        return real(*args, **kwargs)

    monkeypatch.setattr(escalation, "escalate", slow_escalate)
    now = datetime.now(timezone.utc)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def round_() -> None:
        store = Store(db_url)
        try:
            start.wait()
            auto_escalate_sla(store, config, now)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            store.close()

    rounds = [threading.Thread(target=round_, name=name) for name in ("a", "b")]
    for t in rounds:
        t.start()
    for t in rounds:
        t.join()
    assert not errors, errors
    escalated = setup.db.execute("select count(distinct case_id) from outbound_messages where kind = 'escalation' "
                                 "and created_by = 'sla-monitor'").fetchone()[0]
    setup.close()
    assert escalated == 3
