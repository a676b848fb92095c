"""Secrets never leak: fake secrets of every configured kind go through real failures, and the
database file, the log and the rendered Reports page are searched for them afterwards."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from doorstep import redaction
from doorstep.config import parse_config, secret
from doorstep.redaction import SecretTargetError, redact, stored_target
from doorstep.store import Store
from tests.conftest import REPO, run_page, texts

#: One fake value of every kind of secret Doorstep is configured with (environment or secrets file).
FAKE_SECRETS = {
    "X_BEARER_TOKEN": "AAAAAAAAAAAAAAAAAAAAAFakeBearerToken0001",
    "X_API_KEY": "fakeconsumerkey0002",
    "X_API_SECRET": "fakeconsumersecret0003",
    "X_ACCESS_TOKEN": "12345-fakeaccesstoken0004",
    "X_ACCESS_TOKEN_SECRET": "fakeaccesssecret0005",
    "MASTODON_ACCESS_TOKEN": "fakemastodontoken0006",
    "BLUESKY_APP_PASSWORD": "abcd-efgh-ijkl-0007",
    "TWILIO_AUTH_TOKEN": "faketwiliotoken0008",
    "SMTP_PASSWORD": "fakesmtppassword0009",
    "COURIER_WEBHOOK_SECRET": "whsec-fake-0010",
    "DOORSTEP_COOKIE_KEY": "fakecookiekey0011",
    "REPORTS_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0FAKE012/B0FAKE012/fakeslackpath0012",
    "TEAM_APPRISE_URL": "tgram://123456789:fakebottoken0013/4242",
}
#: The part of each that must never be seen (for URLs: the credential, not the host).
NEEDLES = [v for v in FAKE_SECRETS.values()] + ["fakeslackpath0012", "fakebottoken0013"]


@pytest.fixture(autouse=True)
def fresh_registry() -> Any:
    redaction.forget_secrets()
    yield
    redaction.forget_secrets()


def _leaks(text: str) -> list[str]:
    return [n for n in NEEDLES if n in text]


def test_every_configured_kind_of_secret_is_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    half = list(FAKE_SECRETS.items())
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text("".join(f"{k}={v}\n" for k, v in half[::2]), encoding="utf-8")
    monkeypatch.setenv("DOORSTEP_SECRETS_FILE", str(secrets_file))
    for key, value in half[1::2]:
        monkeypatch.setenv(key, value)
    redaction.register_environment()  # what a process that never read them (the console) does at import
    line = " | ".join(f"{k}: {v}" for k, v in FAKE_SECRETS.items())
    assert _leaks(line) and not _leaks(redact(line))
    # Printed apart, as requests does: host and path separately.
    assert "fakeslackpath0012" not in redact("HTTPSConnectionPool(host='hooks.slack.com', port=443): Max retries "
                                             "exceeded with url: /services/T0FAKE012/B0FAKE012/fakeslackpath0012")
    # Shapes, even when never configured.
    shaped = redact("tgram://987:tok999999/1 mailto://me:pw999999@mail.example https://u:pw888888@h.example/x "
                    "https://h.example/hook?token=tk777777&x=1 Authorization: Bearer br666666")
    for needle in ("tok999999", "pw999999", "pw888888", "tk777777", "br666666"):
        assert needle not in shaped
    # What must stay readable: plain addresses and base URLs.
    assert redact("POST http://127.0.0.1:8080 failed for lead@shop.example") == \
        "POST http://127.0.0.1:8080 failed for lead@shop.example"


def test_secret_read_through_config_is_masked_in_every_log_line(monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ALERTS_SLACK", "http://127.0.0.1:9/services/T000/B000/readlater0014")
    assert secret("ALERTS_SLACK")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("some.library").info("posting to %s", "http://127.0.0.1:9/services/T000/B000/readlater0014")
    try:
        raise RuntimeError("url: /services/T000/B000/readlater0014")
    except RuntimeError:
        logging.getLogger("urllib3.connectionpool").exception("failed")
    assert "readlater0014" not in caplog.text
    assert "posting to" in caplog.text and "RuntimeError" in caplog.text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database_bytes(store: Store) -> str:
    """Everything the database holds, as text: the SQLite file's bytes, or every PostgreSQL row."""
    if store.dialect.postgres:
        return " ".join(str(r[0]) for t in store.db.table_names()
                        for r in store.db.execute(f'select cast(t as text) from "{t}" as t'))
    store.db.execute("pragma wal_checkpoint(truncate)")
    path = Path(store.db.conn.execute("pragma database_list").fetchone()[2])
    data = path.read_bytes()
    for extra in (Path(f"{path}-wal"), Path(f"{path}-journal")):
        if extra.exists():
            data += extra.read_bytes()
    return data.decode("latin-1")


def test_unreachable_report_webhook_leaks_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from test_reports import MONDAY_8, Clock, _job, small_store

    url = f"http://127.0.0.1:{_closed_port()}/services/T000/B000/unreachable0015"
    monkeypatch.setenv("REPORTS_SLACK_WEBHOOK_URL", url)
    caplog.set_level(logging.DEBUG)
    store = small_store(tmp_path / "r.db")
    job = _job(store, Clock(MONDAY_8), recipients=[])  # Slack only, through requests
    assert job.run_once() == 0
    row = store.db.execute("select status, last_error from outbound_messages where kind = 'report'").fetchone()
    assert row[0] == "failed" and "ConnectionError" in row[1]
    assert "unreachable0015" not in _database_bytes(store)
    assert "unreachable0015" not in caplog.text and "failed" in caplog.text

    monkeypatch.setenv("DOORSTEP_DB", str(tmp_path / "r.db"))
    monkeypatch.setenv("DOORSTEP_CONFIG", str(REPO / "demo" / "doorstep.toml"))
    from console.auth import User

    at = AppTest.from_string("from console import reports\nreports.render()\n", default_timeout=30)
    at.session_state["user"] = User("lee", "Lee", "lead")
    at.run()
    assert not at.exception, at.exception
    shown = at.dataframe[0].value.to_csv()
    assert "ConnectionError" in shown and "unreachable0015" not in shown
    store.close()


def test_slack_sdk_never_logs_the_escalation_webhook(store: Store, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    from test_escalation import courier_config
    from test_outbox import RecordingServer, add_order, later, make_case

    from responders.outbox import Outbox, queue_escalation

    caplog.set_level(logging.DEBUG)
    with RecordingServer() as slack:
        monkeypatch.setenv("SLACK_TEAM_URL", slack.url + "/services/T000/B000/sdkpath0016")
        config = courier_config()
        case_id = make_case(store, config, order=add_order(store), text="@LarkspurHelp where is my parcel?")
        queue_escalation(store, config, case_id, "team", None, "sam")
        Outbox(store, config, now=later(1)).send_due()
        assert len(slack.received) == 1 and slack.received[0]["path"].endswith("sdkpath0016")  # it did go out
    assert any(r.name.startswith("slack_sdk") for r in caplog.records)  # the library did log the request
    assert "sdkpath0016" not in caplog.text


def test_literal_apprise_url_is_stored_as_a_reference_and_still_delivered(store: Store,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """An Apprise URL with a password written in doorstep.toml: stored as ``@config:...``, sent as the URL."""
    from test_outbox import RecordingServer, add_order, later, make_case

    from responders.outbox import Outbox, queue_escalation

    caplog.set_level(logging.DEBUG)
    with RecordingServer() as hook:
        host = hook.url.split("://", 1)[1]
        literal = f"json://care:apprisepw0017@{host}/notify"
        config = parse_config({
            "timezone": "Europe/London",
            "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}}],
            "responders": {"escalation": {"targets": {"ops": {"apprise": [literal]}}}},
        })
        case_id = make_case(store, config, order=add_order(store), text="@LarkspurHelp where is my parcel?")
        queue_escalation(store, config, case_id, "ops", "please look", "sam")
        target = store.db.execute("select target from outbound_messages where channel = 'apprise'").fetchone()[0]
        assert target.startswith("@config:responders.escalation.targets.ops.apprise#")
        Outbox(store, config, now=later(1)).send_due()
        assert len(hook.received) == 1 and hook.received[0]["path"] == "/notify"
        assert hook.received[0]["headers"].get("Authorization", "").startswith("Basic ")  # credentials were used
        assert "please look" in json.loads(hook.received[0]["body"])["message"]
    assert "apprisepw0017" not in _database_bytes(store)
    assert "apprisepw0017" not in caplog.text


def test_ad_hoc_credential_url_is_refused_with_the_remedy() -> None:
    from responders.escalation import EscalationRejected, _routes

    with pytest.raises(SecretTargetError, match=r"tgram://\*\*\*.*\$NAME"):
        stored_target("tgram://123:adhoc0018/42")
    assert stored_target("$TEAM_APPRISE_URL") == "$TEAM_APPRISE_URL"
    assert stored_target("lead@shop.example") == "lead@shop.example"
    config = parse_config({"timezone": "Europe/London"})
    with pytest.raises(EscalationRejected, match=r"\$NAME"):
        _routes(config, None, "apprise:tgram://123:adhoc0018/42")  # type: ignore[arg-type]


def test_audit_details_are_masked(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASTODON_ACCESS_TOKEN", "auditleak0019")
    secret("MASTODON_ACCESS_TOKEN")
    store.audit("worker", "listener.error", None, {"error": "401 for token auditleak0019", "nested": ["auditleak0019"]})
    details = store.audit_trail()[0].details
    assert "auditleak0019" not in json.dumps(details) and "401 for token" in details["error"]


def test_failed_sends_of_every_kind_leak_no_secret(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """X (a server that echoes the credentials it got), e-mail, Slack and the courier webhook all
    fail with fake secrets set; then the database file, the log and the case page are searched."""
    from test_outbox import RecordingServer, add_order, later, make_case

    from console.auth import add_user
    from doorstep.config import load_config
    from responders.outbox import Outbox, queue_escalation, queue_reply

    caplog.set_level(logging.DEBUG)
    closed = _closed_port()
    fake = {
        "X_BEARER_TOKEN": "xbearerleak0101", "X_API_KEY": "xkeyleak0102", "X_API_SECRET": "xsecretleak0103",
        "X_ACCESS_TOKEN": "1-xaccessleak0104", "X_ACCESS_TOKEN_SECRET": "xaccesssecretleak0105",
        "SMTP_USER": "care@shop.example", "SMTP_PASSWORD": "smtpleak0106",
        "COURIER_WEBHOOK_SECRET": "whsecleak0107",
        "SLACK_TEAM_URL": f"http://127.0.0.1:{closed}/services/T0LEAK/B0LEAK/slackleak0108",
    }
    needles = [v for k, v in fake.items() if k != "SMTP_USER"] + ["slackleak0108"]

    def echo(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        return 401, {"title": "Unauthorized", "detail": f"refused {headers.get('Authorization')}"}

    with RecordingServer(routes={"/2/": echo}) as x_api:
        for key, value in {**fake, "X_API_BASE_URL": x_api.url, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(closed),
                           "SMTP_FROM": "care@shop.example", "SMTP_TIMEOUT": "2", "X_API_TIMEOUT": "2"}.items():
            monkeypatch.setenv(key, value)
        toml = tmp_path / "doorstep.toml"
        toml.write_text(f'''timezone = "Europe/London"
[[brands]]
name = "Larkspur"
handles = {{x = "LarkspurHelp"}}
[[couriers]]
name = "UPS"
escalation_webhook = "http://127.0.0.1:{closed}/claims"
[responders.escalation]
webhook_secret = "$COURIER_WEBHOOK_SECRET"
[responders.escalation.targets.team]
slack_webhook_url = "$SLACK_TEAM_URL"
''', encoding="utf-8")
        config = load_config(toml)
        case_id = make_case(store, config, order=add_order(store), text="@LarkspurHelp where is my parcel?")
        queue_reply(store, config, case_id, "Sorry, we are on it.", "ann")
        queue_reply(store, config, case_id, "Details by e-mail.", "ann", channel="email", force=True)
        queue_escalation(store, config, case_id, "team", "please chase", "ann")
        queue_escalation(store, config, case_id, "courier", "please trace", "ann")
        Outbox(store, config, now=later(1)).send_due()
        assert x_api.attempts >= 1  # the X API was reached and answered 401 with the credentials in it
    errors = [m.last_error or "" for m in store.outbound_for_case(case_id)]
    assert len(errors) == 4 and all(errors), errors  # every send failed and says why
    assert not _leaks_of(needles, _database_bytes(store))
    assert not _leaks_of(needles, caplog.text)

    add_user(store, "ann", "correct horse battery", rounds=4)
    monkeypatch.setenv("DOORSTEP_DB", str(store.path))
    monkeypatch.setenv("DOORSTEP_CONFIG", str(toml))
    at = run_page("case_view", store, "ann", case_id=case_id)
    assert not at.exception, at.exception
    shown = texts(at)
    assert "last error" in shown  # the errors are on the page ...
    assert not _leaks_of(needles, shown)  # ... without a secret


def _leaks_of(needles: list[str], text: str) -> list[str]:
    return [n for n in needles if n in text]


def test_failed_sends_and_polls_on_mastodon_bluesky_and_sms_leak_no_secret(store: Store, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    """The kinds the test above leaves out: Mastodon's token, Bluesky's app password and Twilio's
    auth token, each refused by a server that echoes back everything it got (headers and body),
    on a reply and on a listener's poll; then the database, the log and the case page are searched."""
    import base64

    from test_outbox import RecordingServer, add_order, later, make_case

    from console.auth import add_user
    from doorstep.clients import mastodon_client
    from doorstep.pipeline import Pipeline
    from listeners.bluesky import BlueskyListener
    from listeners.health import Backoff, listener_health
    from listeners.mastodon import MastodonListener
    from responders.outbox import Outbox, queue_reply

    caplog.set_level(logging.DEBUG)
    fake = {
        "MASTODON_ACCESS_TOKEN": "mastodonleak0201",
        "BLUESKY_HANDLE": "larkspurhelp.bsky.social", "BLUESKY_APP_PASSWORD": "blueskyleak0202",
        "TWILIO_ACCOUNT_SID": "ACleak00000000000000000000000203", "TWILIO_AUTH_TOKEN": "twilioleak0204",
        "TWILIO_FROM": "+447700900000",
    }
    needles = ["mastodonleak0201", "blueskyleak0202", "twilioleak0204",
               base64.b64encode(f"{fake['TWILIO_ACCOUNT_SID']}:{fake['TWILIO_AUTH_TOKEN']}".encode()).decode()]

    def echo(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        """Says back the bare credential, in no shape a pattern would know (decoded, unquoted)."""
        scheme, _, credential = (headers.get("Authorization") or "").partition(" ")
        if scheme == "Basic":
            credential = base64.b64decode(credential).decode()
        try:
            sent = " ".join(str(v) for v in json.loads(body).values())
        except ValueError:
            sent = body.decode("utf-8", "replace")
        said = f"refused {credential} with {sent}"
        return 401, {"error": said, "message": said, "code": 20003, "status": 401}

    with RecordingServer(routes={"/": echo}) as server:
        for key, value in {**fake, "MASTODON_BASE_URL": server.url, "BLUESKY_BASE_URL": server.url,
                           "TWILIO_BASE_URL": server.url, "MASTODON_TIMEOUT": "5", "TWILIO_TIMEOUT": "5"}.items():
            monkeypatch.setenv(key, value)
        config = parse_config({
            "timezone": "Europe/London",
            "brands": [{"name": "Larkspur", "keywords": ["larkspur"],
                        "handles": {"x": "LarkspurHelp", "mastodon": "larkspurhelp",
                                    "bluesky": "larkspurhelp.bsky.social"}}],
            "channels": {"mastodon": {"hashtags": ["#Larkspur"], "keywords": ["parcel"]},
                         "bluesky": {"queries": ["parcel"]}},
        })
        toot = make_case(store, config, channel="mastodon", handle="jane@mastodon.social",
                         external_id="109999999999999999", text="@larkspurhelp where is my parcel?")
        skeet = make_case(store, config, channel="bluesky", handle="jane.bsky.social",
                          external_id="at://did:plc:jane000000000000000000000/app.bsky.feed.post/3kparent0001",
                          text="@larkspurhelp.bsky.social where is my parcel?")
        texted = make_case(store, config, order=add_order(store), text="@LarkspurHelp my order never came")
        queue_reply(store, config, toot, "@jane@mastodon.social sorry! Checking now.", "ann")
        queue_reply(store, config, skeet, "Sorry Jane, checking now.", "ann")
        queue_reply(store, config, texted, "Your parcel is on its way.", "ann", channel="sms", force=True)
        Outbox(store, config, now=later(1)).send_due()
        for listener in (MastodonListener(store, config, Pipeline(store, config, classifier=None),
                                          client=mastodon_client(config), backoff=Backoff(sleep=lambda s: None)),
                         BlueskyListener(store, config, Pipeline(store, config, classifier=None),
                                         backoff=Backoff(sleep=lambda s: None))):
            assert not listener.poll_once().ok
        assert server.attempts >= 5  # every one of them reached the server and was refused
    errors = [m.last_error or "" for case_id in (toot, skeet, texted) for m in store.outbound_for_case(case_id)]
    assert len(errors) == 3 and all(errors), errors  # every send failed and says why
    health = {h["name"]: h for h in listener_health(store)}
    assert health["mastodon"]["last_error"] and health["bluesky"]["last_error"]
    assert not _leaks_of(needles, _database_bytes(store))
    assert not _leaks_of(needles, caplog.text)

    add_user(store, "ann", "correct horse battery", rounds=4)
    monkeypatch.setenv("DOORSTEP_DB", str(store.path))
    monkeypatch.delenv("DOORSTEP_CONFIG", raising=False)
    for case_id in (toot, skeet, texted):
        at = run_page("case_view", store, "ann", case_id=case_id)
        assert not at.exception, at.exception
        shown = texts(at)
        assert "last error" in shown  # the error is on the page ...
        assert not _leaks_of(needles, shown)  # ... without a secret


def test_words_after_bearer_are_not_taken_for_a_token() -> None:
    """The worker's log turned "the app's bearer token from the X developer portal" into "bearer ***
    from": the hint that says where to get the token lost its word (docs audit, 2026-12-06)."""
    hint = "x: X_BEARER_TOKEN is not set: export X_BEARER_TOKEN=... (the app's bearer token from the X developer portal)"
    assert redact(hint) == hint
    assert "AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid" not in redact(
        "Authorization: Bearer AAAAAAAAAAAAAAAAAAAAAMLheAAAAAAA0%2BuSeid")
    assert "s3cr3t-t0k" not in redact("{'Authorization': 'Bearer s3cr3t-t0k'}")


def test_a_bluesky_post_address_is_not_a_secret() -> None:
    """An audit line "replied to at://did:plc:.../app.bsky.feed.post/3k..." read "at://***" (left open): a Bluesky
    post's address is public and is how an admin finds the post; it is kept, while an Apprise URL stays masked."""
    from doorstep.redaction import redact

    uri = "at://did:plc:abc123xyz/app.bsky.feed.post/3kxyzabc"
    assert redact(f"replied to {uri}") == f"replied to {uri}"
    assert redact("tgram://123456:ABCdef/987") == "tgram://***"
