"""The inbound HTTP audit's findings (webhook, ``/sms``, ``/mail``): what a sender may say, what is stored.

Each test drives the real inbound application (Starlette's TestClient over the routes the webhook
listener serves) on a store of each backend, and asserts what the store holds afterwards: a signed
sender cannot stop an SLA clock with ``"outbound": "yes"``; an SMS or e-mail answer with a NUL, an
unknown charset or absurd MIME nesting is stored for a person, never a 500; a post dated in the future
is refused naming ``created_at``; a body that can never be stored is a 400, not "retry later"; and
refused ``/sms`` and ``/mail`` requests count in listener health like the webhook's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from doorstep import dialogue as rows
from doorstep.models import utcnow
from doorstep.store import Store
from listeners.health import listener_health
from doorstep.inbound_app import inbound_app
from listeners.webhook import SIGNATURE_HEADER, WebhookServer, sign

from test_dialogue import PHONE, ask_redelivery, deliver, dialogue_config

HOOK_SECRET = "hook-secret-AUDIT"
MAIL_SECRET = "mail-secret-AUDIT"
TWILIO_TOKEN = "twilio-token-AUDIT"


@pytest.fixture
def inbound(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The webhook, ``/sms`` and ``/mail`` routes on ``store`` (both backends), through a TestClient."""
    from starlette.testclient import TestClient

    monkeypatch.setenv("DOORSTEP_MAIL_SECRET", MAIL_SECRET)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
    config = dialogue_config()
    server = WebhookServer(store, config, secret=HOOK_SECRET)
    app = inbound_app([*server.endpoint.routes(), *server.replies.routes()], server.limits)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield {"store": store, "config": config, "server": server, "client": client}
    server.stop()


def post_hook(inbound: dict[str, Any], body: bytes | dict | list, *, signed: bool = True) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({SIGNATURE_HEADER: sign(raw, HOOK_SECRET)} if signed else {})}
    return inbound["client"].post("/mentions", content=raw, headers=headers)


def post_sms(inbound: dict[str, Any], body: str, sid: str, *, sender: str = PHONE, token: str = TWILIO_TOKEN) -> Any:
    from twilio.request_validator import RequestValidator

    params = {"MessageSid": sid, "From": sender, "To": "+447700900000", "Body": body}
    signature = RequestValidator(token).compute_signature("http://testserver/sms", params)
    return inbound["client"].post("/sms", content=urllib.parse.urlencode(params),
                                  headers={"X-Twilio-Signature": signature,
                                           "Content-Type": "application/x-www-form-urlencoded"})


def post_mail(inbound: dict[str, Any], raw: bytes, *, secret: str | None = MAIL_SECRET) -> Any:
    headers = {"Content-Type": "message/rfc822"}
    if secret is not None:
        headers[SIGNATURE_HEADER] = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return inbound["client"].post("/mail", content=raw, headers=headers)


def complaint(external_id: str, **extra: Any) -> dict[str, Any]:
    return {"external_id": external_id, "text": "@LarkspurHelp parcel lost, order #104240, still nothing!!",
            "created_at": (utcnow() - timedelta(minutes=5)).isoformat(), "author_handle": "eve_a", **extra}


def answers(store: Store) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in store.db.execute("select external_id, text from answers order by id").fetchall()]


def webhook_health(store: Store) -> dict[str, Any]:
    """The webhook's listener health row ({} before anything was written to it)."""
    return {row["name"]: row for row in listener_health(store)}.get("webhook", {})


def one_line_error(response: Any) -> str:
    """The error of a JSON answer, and that it is one line (never a traceback, never text/plain)."""
    assert response.headers["content-type"].startswith("application/json"), (response.status_code, response.text[:200])
    error = response.json()["error"]
    assert "\n" not in error
    return error


# ------------------------------------------------------------------ 1. outbound, however it is spelled
@pytest.mark.parametrize("spelled", ["true", "yes", "on", 1, "1", True])
def test_outbound_in_any_spelling_is_403_and_the_sla_clock_keeps_running(inbound: dict[str, Any],
                                                                         spelled: Any) -> None:
    store = inbound["store"]
    assert post_hook(inbound, complaint("sla-1")).status_code == 202
    fake = complaint("sla-2", text="Sorted, sorry!", in_reply_to="sla-1", author_handle="LarkspurHelp",
                     outbound=spelled)
    response = post_hook(inbound, fake)
    assert response.status_code == 403 and "mention.outbound" in one_line_error(response)
    assert store.db.execute("select external_id from mentions").fetchall() == [("sla-1",)]
    assert store.db.execute("select first_response_at from cases").fetchall() == [(None,)]


@pytest.mark.parametrize("spelled", [False, "false", "no", 0])
def test_outbound_false_in_any_spelling_is_accepted(inbound: dict[str, Any], spelled: Any) -> None:
    assert post_hook(inbound, complaint("sla-3", outbound=spelled)).status_code == 202


# ------------------------------------------------------------------ 3. NUL in an SMS or e-mail answer
def test_sms_answer_with_a_nul_is_stored_and_acted_on(inbound: dict[str, Any]) -> None:
    store, config = inbound["store"], inbound["config"]
    case_id, question = ask_redelivery(store, config, utcnow())
    deliver(store, config)
    response = post_sms(inbound, "yes\x00 please", "SMnul1")
    assert response.status_code == 200 and "<Response" in response.text
    assert answers(store) == [("SMnul1", "yes please")]
    answered = rows.get_question(store, question.id)
    assert answered.status == "answered" and answered.answer == "yes please"  # type: ignore[union-attr]
    assert store.get_case(case_id).status == "escalated"  # type: ignore[union-attr]


def test_stop_with_a_nul_by_sms_still_opts_out(inbound: dict[str, Any]) -> None:
    store, config = inbound["store"], inbound["config"]
    _, question = ask_redelivery(store, config, utcnow())
    deliver(store, config)
    assert post_sms(inbound, "STOP\x00", "SMnul2").status_code == 200
    assert rows.get_question(store, question.id).status == "opted_out"  # type: ignore[union-attr]


def test_mail_answer_with_a_nul_and_a_stray_byte_is_stored(inbound: dict[str, Any]) -> None:
    store, config = inbound["store"], inbound["config"]
    _, question = ask_redelivery(store, config, utcnow(), phone=None)
    deliver(store, config)
    raw = (f"From: jane@example.com\r\nSubject: Re: x [ref {question.token}]\r\nMessage-ID: <nul\xff1@x>\r\n"
           "\r\nno\x00 thanks\r\n").encode("latin-1")
    response = post_mail(inbound, raw)
    assert response.status_code == 202 and response.json()["outcome"] == "answered"
    [(external_id, text)] = answers(store)
    assert text == "no thanks" and "\x00" not in external_id
    assert rows.get_question(store, question.id).answer_kind == "no"  # type: ignore[union-attr]


def test_remember_reply_drops_nul_and_replaces_lone_surrogates(store: Store) -> None:
    reply_id = rows.remember_reply(store, channel="sms", external_id="SM\x00x", sender="+44\x007700",
                                   text="yes\x00 \ud83d please", received_at=utcnow())
    assert reply_id is not None
    assert store.db.execute("select external_id, sender, text from answers").fetchall() == [
        ("SMx", "+447700", "yes \ufffd please")]


@pytest.mark.parametrize(("error", "status"), [(sqlite3.OperationalError("database is locked"), 503),
                                               (RuntimeError("the store went away"), 500)])
def test_a_store_failure_on_sms_or_mail_is_a_json_answer_never_a_traceback(
        inbound: dict[str, Any], monkeypatch: pytest.MonkeyPatch, error: Exception, status: int) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr("responders.dialogue.handle_reply", broken)
    # Not even kept for a person (one that is only not acted on is kept: tests/test_reply_endpoint_failures.py).
    monkeypatch.setattr("doorstep.dialogue.remember_reply", broken)
    sms = post_sms(inbound, "yes", "SMbusy")
    mail = post_mail(inbound, b"From: jane@example.com\r\nMessage-ID: <busy@x>\r\n\r\nyes\r\n")
    for response in (sms, mail):
        assert response.status_code == status and "retry" in one_line_error(response)
        if status == 503:
            assert response.headers["retry-after"]
    # Both are the team's to see: a store that stays busy must not look healthy.
    assert webhook_health(inbound["store"])["last_error"].startswith("/mail: ")


# ------------------------------------------------------------------ 4. unreadable charsets and nesting
@pytest.mark.parametrize("charset", ["unknown-8bit", "x-bogus"])
def test_mail_in_an_unknown_charset_is_read_with_replacement(inbound: dict[str, Any], charset: str) -> None:
    store, config = inbound["store"], inbound["config"]
    _, question = ask_redelivery(store, config, utcnow(), phone=None)
    deliver(store, config)
    raw = (f"From: jane@example.com\r\nSubject: Re [ref {question.token}]\r\nMessage-ID: <cs-{charset}@x>\r\n"
           f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"{charset}\"\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\nNo thanks, caf\xe9 closed\r\n").encode("latin-1")
    response = post_mail(inbound, raw)
    assert response.status_code == 202, response.text[:200]
    [(_, text)] = answers(store)
    assert text.startswith("No thanks, caf") and text.endswith("closed")


def test_mail_nested_too_deeply_is_stored_for_a_person_never_acted_on(inbound: dict[str, Any]) -> None:
    store, config = inbound["store"], inbound["config"]
    case_id, question = ask_redelivery(store, config, utcnow(), phone=None)
    deliver(store, config)
    parts = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n' for i in range(1500))
    raw = (f"From: jane@example.com\r\nSubject: Re [ref {question.token}]\r\nMessage-ID: <nest1@x>\r\n"
           f"MIME-Version: 1.0\r\n{parts}Content-Type: text/plain\r\n\r\nyes\r\n").encode()
    response = post_mail(inbound, raw)
    assert response.status_code == 202, response.text[:200]
    [(external_id, text)] = answers(store)
    assert external_id == "<nest1@x>" and text.endswith("yes") and "nested" in text
    assert rows.get_question(store, question.id).answer_kind != "yes"  # type: ignore[union-attr]
    assert "dialogue.needs_human" in [e.action for e in store.audit_trail(case_id)]


def test_mail_that_cannot_be_read_at_all_is_a_one_line_400(inbound: dict[str, Any]) -> None:
    response = post_mail(inbound, b"Subject: no sender\r\n\r\nyes\r\n")
    assert response.status_code == 400 and "From" in one_line_error(response)


# ------------------------------------------------------------------ 5. a post from the future
def test_a_post_dated_in_the_future_is_400_naming_created_at(inbound: dict[str, Any]) -> None:
    store = inbound["store"]
    response = post_hook(inbound, [complaint("now-1"), complaint("fut-1", created_at="2099-06-01T10:00:00Z")])
    assert response.status_code == 400 and "[1].created_at" in one_line_error(response)
    assert "future" in response.json()["error"]
    assert store.count("mentions") == 0 and store.count("cases") == 0
    hour = post_hook(inbound, complaint("fut-2", created_at=(utcnow() + timedelta(hours=1)).isoformat()))
    assert hour.status_code == 400


def test_a_sender_clock_a_little_ahead_is_still_accepted(inbound: dict[str, Any]) -> None:
    ahead = complaint("skew-1", created_at=(utcnow() + timedelta(minutes=2)).isoformat())
    assert post_hook(inbound, ahead).status_code == 202
    old = complaint("old-1", created_at="2017-10-31T22:10:47Z")  # history still comes in
    assert post_hook(inbound, old).status_code == 202


# ------------------------------------------------------------------ 7. bodies that can never be stored
def with_huge_number(body: Any) -> bytes:
    """``body`` as JSON with its "HUGE" placeholder written as a 5000-digit number (json refuses to read it)."""
    return json.dumps(body).encode().replace(b'"HUGE"', b"9" * 5000)


@pytest.mark.parametrize(("body", "field"), [
    (json.dumps(complaint("bad-1", channel=["webhook"])).encode(), "mention.channel"),
    (json.dumps(complaint("bad-2", channel={"a": 1})).encode(), "mention.channel"),
    (with_huge_number(complaint("bad-3", author_followers="HUGE")), "mention.author_followers"),
    (with_huge_number([complaint("bad-4"), complaint("bad-5", raw={"n": [1, "HUGE"]})]), "[1].raw.n[1]"),
])
def test_a_body_that_can_never_be_stored_is_400_naming_the_field(inbound: dict[str, Any], body: bytes,
                                                                  field: str) -> None:
    response = post_hook(inbound, body)
    assert response.status_code == 400 and field in one_line_error(response), response.text[:300]
    assert inbound["store"].count("mentions") == 0
    health = webhook_health(inbound["store"])
    assert not health.get("errors") and health.get("last_error") is None


# ------------------------------------------------------------------ 8. refused /sms and /mail are counted
def test_refused_sms_and_mail_count_in_listener_health_and_the_last_burst_is_written(inbound: dict[str, Any]) -> None:
    store = inbound["store"]
    for i in range(3):
        assert post_sms(inbound, "YES", f"SMx{i}", token="wrong-token").status_code == 401
    assert post_mail(inbound, b"From: a@b.example\r\n\r\nyes", secret=None).status_code == 401
    assert post_hook(inbound, complaint("x"), signed=False).status_code == 401
    assert answers(store) == [] and store.count("mentions") == 0
    # The burst came within a second: its count is written soon after, without waiting for
    # another refusal or for the server to stop.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and webhook_health(store).get("rejected") != 5:
        time.sleep(0.1)
    health = webhook_health(store)
    assert health["rejected"] == 5
    assert health["errors"] == 0 and health["last_error"] is None
