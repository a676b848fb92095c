"""What the care team lead is told, as the alerts audit found it on the sinks (/tmp/audit/alerts).

A. A customer's words reached the alerts Slack as Slack markup: ``<!channel>`` notified everyone,
   ``<https://evil.example/login|Click to open case>`` was a disguised link, ``*bold*`` rendered.
B. A message that failed for good (webhook variable unset, SMTP 550, a bad Apprise URL) left the
   worker's log empty: only ``doorstep outbox list --status failed`` showed it.
C. An empty or header-only orders file was recorded as ``ok`` (and closed an open "import failed"
   alert); a missing file was refused by click before any run was recorded.
D. The automatic SLA escalation's note gave the breach time as a UTC ISO stamp.

Assertions are on what a local HTTP sink received, on the log records and on ``import_runs``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from commands.cli import cli
from doorstep.store import Store
from listeners.files import recent_imports
from responders.escalation import auto_escalate_sla, escalate
from responders.outbox import Outbox, enqueue, list_messages
from tests.conftest import DEMO_CONFIG, console_store

from test_escalation import courier_config
from test_outbox import RecordingServer, SmtpSink, make_case, serve_smtp, shop_config, smtp  # noqa: F401 - fixture

#: The post the audit sent: a channel-wide ping, a disguised link and Slack formatting.
HOSTILE = "@LarkspurHelp <!channel> @here <https://evil.example/login|Click to open case> *bold* & _it_ ~gone~"


def _slack_bodies(server: RecordingServer) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in server.received]


def _assert_no_slack_markup(body: dict[str, Any]) -> None:
    """Nothing in the text can be a mention, a channel ping or a link, and nothing is formatted."""
    text = body["text"]
    assert "<" not in text and ">" not in text, text
    assert "&lt;!channel&gt;" in text and "&lt;https://evil.example/login|Click to open case&gt;" in text, text
    assert "&amp; _it_" in text and "*bold*" in text, text  # shown as written
    assert body.get("mrkdwn") is False, body


# ------------------------------------------------------------------ A: Slack escaping
def test_a_customers_words_reach_slack_as_text_not_markup(store: Store, smtp: SmtpSink,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with RecordingServer() as slack:
        monkeypatch.setenv("SLACK_TEAM_URL", slack.url + "/services/T000/B000/XXXX")
        config = courier_config()
        case_id = make_case(store, config, text=HOSTILE)
        escalate(store, config, case_id, "team", "see <!here> & act", "sam")
        Outbox(store, config).send_due()
        [body] = _slack_bodies(slack)
    _assert_no_slack_markup(body)
    assert "see &lt;!here&gt; &amp; act" in body["text"], body
    # The subject stays the message's first line (the demo's Sent page lists a Slack message by it).
    subject = body["text"].split("\n", 1)[0]
    assert subject == f"*Escalation: case #{case_id} (Larkspur)*", body


def test_an_alert_to_slack_is_escaped_the_same_way(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    with RecordingServer() as slack:
        monkeypatch.setenv("SLACK_ALERTS_URL", slack.url + "/services/T000/B000/YYYY")
        config = shop_config()
        enqueue(store, kind="alert", channel="slack", actor="alert:urgent_complaint", idempotency_key="alert-a",
                target="$SLACK_ALERTS_URL",
                text=f"Subject: [Doorstep ALERT] urgent <b>\n\nRule: urgent_complaint\nWhy: {HOSTILE}")
        Outbox(store, config).send_due()
        [body] = _slack_bodies(slack)
    _assert_no_slack_markup(body)
    assert body["text"].startswith("*[Doorstep ALERT] urgent &lt;b&gt;*\n"), body


# ------------------------------------------------------------------ B: failed for good is logged
class RefusingSmtp(SmtpSink):
    """A relay that refuses every message for good (550), as a wrong recipient domain does."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "550 5.1.1 mailbox unavailable"


def test_each_message_that_fails_for_good_is_one_warning_line(store: Store, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    apprise_secret = "supersecret-apprise-7731"
    monkeypatch.delenv("SLACK_ALERTS_UNSET", raising=False)
    monkeypatch.setenv("CARE_APPRISE", f"notaservice://{apprise_secret}/room")
    config = shop_config()
    targets = {"slack": "$SLACK_ALERTS_UNSET", "email": "lead@larkspur.test", "apprise": "$CARE_APPRISE"}
    ids = {channel: enqueue(store, kind="alert", channel=channel, actor="alert:spike", idempotency_key=f"b-{channel}",
                            target=target, text="Subject: [Doorstep ALERT] spike\n\nWhy: 40 complaints").id
           for channel, target in targets.items()}
    smtp = serve_smtp(monkeypatch, RefusingSmtp())
    next(smtp)
    try:
        with caplog.at_level(logging.WARNING, logger="doorstep.outbox"):
            Outbox(store, config).send_due()
    finally:
        smtp.close()
    assert {m.id for m in list_messages(store, ("failed",))} == set(ids.values())
    lines = [r for r in caplog.records if r.name == "doorstep.outbox" and "failed for good" in r.getMessage()]
    assert len(lines) == 3 and all(r.levelno == logging.WARNING for r in lines), [r.getMessage() for r in lines]
    said = {channel: next(r.getMessage() for r in lines if f"message {ids[channel]} " in r.getMessage())
            for channel in ids}
    assert "alert" in said["slack"] and "slack to $SLACK_ALERTS_UNSET" in said["slack"] \
        and "Slack webhook $SLACK_ALERTS_UNSET is not set" in said["slack"], said["slack"]
    assert "email to lead@larkspur.test" in said["email"] and "550" in said["email"], said["email"]
    assert "apprise to $CARE_APPRISE" in said["apprise"] and "not a valid Apprise URL" in said["apprise"], said
    assert all("\n" not in line for line in said.values())
    assert not any(apprise_secret in r.getMessage() for r in caplog.records if r.name == "doorstep.outbox")



def test_a_customer_message_that_fails_for_good_keeps_the_customers_address_out_of_the_log(
        store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The failed-for-good line names the case, not the customer's phone or e-mail: logs are not for personal data."""
    config = shop_config()
    case_id = make_case(store, config, text="@LarkspurHelp where is my parcel?", handle="jane")
    message = enqueue(store, kind="reply", channel="sms", actor="ann", idempotency_key="b-customer",
                      target="+447700900123", case_id=case_id, text="Hi Jane, your parcel is on its way.")
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    with caplog.at_level(logging.WARNING, logger="doorstep.outbox"):
        Outbox(store, config).send_due()
    [line] = [r.getMessage() for r in caplog.records if r.name == "doorstep.outbox" and "failed for good" in r.getMessage()]
    assert f"message {message.id} (reply by sms to the customer of case #{case_id})" in line, line
    assert "7700" not in line, line

def test_a_message_that_will_be_retried_is_not_called_failed(store: Store, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with RecordingServer() as slack:
        monkeypatch.setenv("SLACK_ALERTS_URL", slack.url + "/services/T000/B000/ZZZZ")
        enqueue(store, kind="alert", channel="slack", actor="alert:spike", idempotency_key="b-retry",
                target="$SLACK_ALERTS_URL", text="Subject: [Doorstep ALERT] spike\n\nWhy: 40 complaints")
        slack.fail("503")
        with caplog.at_level(logging.WARNING, logger="doorstep.outbox"):
            Outbox(store, shop_config()).send_due()
    assert [m.status for m in list_messages(store)] == ["queued"]
    assert not [r for r in caplog.records if "failed for good" in r.getMessage()]


# ------------------------------------------------------------------ C: empty files and missing files
HEADER = "number,customer_id,placed_at,customer_name\n"


@pytest.fixture
def shop(db_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Store:
    return console_store(db_url, request, monkeypatch)


def _import(db: str, kind: str, path: Path | str) -> Any:
    return CliRunner().invoke(cli, ["--db", db, "--config", DEMO_CONFIG, "import", kind, str(path)])


@pytest.mark.parametrize("kind, content", [("orders", ""), ("orders", HEADER),
                                           ("tracking", "tracking_number,time,status\n")],
                         ids=["empty orders", "header-only orders", "header-only tracking"])
def test_a_file_with_no_rows_is_recorded_as_no_rows_not_ok(shop: Store, db_url: str, tmp_path: Path,
                                                           kind: str, content: str) -> None:
    path = tmp_path / f"{kind}.csv"
    path.write_text(content, encoding="utf-8")
    _import(db_url, kind, path)
    [run] = recent_imports(shop)
    assert (run["kind"], run["file"], run["rows"], run["outcome"]) == (kind, str(path), 0, "no rows"), run
    assert "no rows" in run["message"] and "header" in run["message"], run["message"]


def test_a_missing_file_is_refused_in_one_line_and_recorded(shop: Store, db_url: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    result = _import(db_url, "tracking", missing)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [f"Error: {missing}: the file does not exist; check the path "
                                                  "(a scheduled job runs in its own folder)"], result.output
    [run] = recent_imports(shop)
    assert (run["kind"], run["file"], run["outcome"], run["rows"]) == ("tracking", str(missing), "file refused", 0)
    assert run["message"].startswith("the file does not exist"), run["message"]


def test_a_folder_is_refused_and_recorded_like_a_missing_file(shop: Store, db_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "orders.csv"
    folder.mkdir()
    result = _import(db_url, "orders", folder)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert "is a folder, not a file" in result.output, result.output
    [run] = recent_imports(shop)
    assert (run["outcome"], run["file"]) == ("file refused", str(folder)), run


# ------------------------------------------------------------------ D: the SLA note in the shop's time
def test_the_automatic_escalation_note_gives_the_breach_in_the_shops_time(store: Store) -> None:
    config = courier_config(auto_sla_minutes=15, auto_target="lead")
    case_id = make_case(store, config, created_at=datetime.now(timezone.utc) - timedelta(hours=3))
    due = store.get_case(case_id).first_response_due  # type: ignore[union-attr]
    assert auto_escalate_sla(store, config, due + timedelta(minutes=5)) == [case_id]  # type: ignore[operator]
    [message] = store.outbound_for_case(case_id)
    note = next(line for line in message.text.splitlines() if line.startswith("Note: "))
    assert note == f"Note: SLA first response breached at {config.local_time(due, zone=True)}", note
    assert "+00:00" not in note
