"""The signed webhook: 202 once per mention, 401/413/400/411 with clear reasons, nothing half-stored."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from pathlib import Path

import pytest
import requests

from doorstep.config import ConfigError, parse_config
from doorstep.store import Store
from listeners.health import listener_health
from listeners.webhook import SIGNATURE_HEADER, WebhookServer, sign

from conftest import KeywordClassifier

SECRET = "webhook-shared-SECRET"


def hook_config(limits: dict | None = None, **webhook: object):
    return parse_config({
        "brands": [{"name": "Shop", "handles": {"x": "ShopHelp"}, "keywords": ["shop"]}],
        "channels": {"webhook": {"port": 0, "max_body_bytes": 2000, "default_channel": "courier_page",
                                 "channels": ["courier_page", "tiktok"], **webhook}},
        **({"limits": limits} if limits else {}),
    })


@pytest.fixture
def server(tmp_path: Path):
    with WebhookServer(tmp_path / "hook.db", hook_config(), secret=SECRET) as srv:
        yield srv


def post(server: WebhookServer, body: bytes, signature: str | None = "auto", path: str = "/mentions") -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if signature == "auto":
        headers[SIGNATURE_HEADER] = sign(body, SECRET)
    elif signature is not None:
        headers[SIGNATURE_HEADER] = signature
    return requests.post(server.url + path, data=body, headers=headers, timeout=5)


def mention(i: int, **extra: object) -> dict:
    return {"external_id": f"page-{i}", "text": f"Parcel {i} for shop left in the rain", "author_handle": f"user{i}",
            "created_at": "2026-11-20T10:00:00Z", **extra}


def stored(server: WebhookServer) -> list[tuple[str, str]]:
    return [tuple(r) for r in server.store.db.execute("select channel, external_id from mentions").fetchall()]


def test_signed_mentions_are_accepted_once(server: WebhookServer) -> None:
    body = json.dumps([mention(1), mention(2, channel="tiktok")]).encode()
    first = post(server, body)
    assert first.status_code == 202 and first.json()["stored"] == 2
    again = post(server, body)
    assert again.status_code == 202 and again.json() == {"status": "accepted", "received": 2, "stored": 0,
                                                         "duplicates": 2}
    assert sorted(stored(server)) == [("courier_page", "page-1"), ("tiktok", "page-2")]
    single = post(server, json.dumps({"mentions": [mention(3)]}).encode())
    assert single.status_code == 202 and len(stored(server)) == 3
    assert server.store.count("cases") == 3
    health = listener_health(server.store)
    assert health[0]["name"] == "webhook" and health[0]["status"] == "ok" and health[0]["stored"] == 3


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, "md5=abc", sign(b"other body", SECRET)])
def test_missing_or_bad_signature_is_401(server: WebhookServer, signature: str | None) -> None:
    response = post(server, json.dumps(mention(1)).encode(), signature=signature)
    assert response.status_code == 401 and SIGNATURE_HEADER in response.json()["error"]
    assert stored(server) == []
    # Counted apart: strangers cannot flip health to error (issue 14, item 9).
    health = listener_health(server.store)[0]
    assert health["status"] == "ok" and health["last_error"] is None and health["rejected"] == 1


def test_signature_of_another_secret_is_401(server: WebhookServer) -> None:
    body = json.dumps(mention(1)).encode()
    assert post(server, body, signature=sign(body, "not-the-secret")).status_code == 401


def test_oversize_body_is_413_without_reading_it(server: WebhookServer) -> None:
    body = json.dumps([mention(i) for i in range(40)]).encode()
    assert len(body) > 2000
    response = post(server, body)
    assert response.status_code == 413 and "limit of 2000 bytes" in response.json()["error"]
    assert stored(server) == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"{not json", "body: not valid JSON"),
        (json.dumps({"external_id": "1", "created_at": "2026-11-20T10:00:00Z"}).encode(), "mention.text"),
        (json.dumps([mention(1), mention(2, created_at="yesterday")]).encode(), "[1].created_at"),
        (json.dumps([mention(1, colour="red")]).encode(), "[0].colour: unknown field"),
        (json.dumps([mention(1, text="   ")]).encode(), "[0].text"),
        (json.dumps([]).encode(), "no mentions"),
        (json.dumps(["just text"]).encode(), "[0]: expected a JSON object"),
    ],
)
def test_malformed_or_invalid_mentions_are_400_naming_the_field(server: WebhookServer, payload: bytes, field: str) -> None:
    response = post(server, payload)
    assert response.status_code == 400
    assert field in response.json()["error"]
    assert stored(server) == []  # a request with one bad mention stores none of them


def test_missing_length_wrong_path_and_health_probe(server: WebhookServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.putrequest("POST", "/mentions")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    connection.send(b"0\r\n\r\n")
    assert connection.getresponse().status == 411
    connection.close()
    assert post(server, b"{}", path="/elsewhere").status_code == 404
    assert requests.get(server.url + "/health", timeout=5).json() == {"status": "ok"}


def test_refuses_to_start_without_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOORSTEP_WEBHOOK_SECRET", raising=False)
    with pytest.raises(ConfigError, match="DOORSTEP_WEBHOOK_SECRET"):
        WebhookServer(Store(tmp_path / "x.db"), parse_config({}))


def test_secret_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOORSTEP_WEBHOOK_SECRET", "from-env")
    with WebhookServer(tmp_path / "env.db", parse_config({}), port=0) as srv:
        body = json.dumps(mention(1)).encode()
        ok = requests.post(srv.url + "/mentions", data=body, headers={SIGNATURE_HEADER: sign(body, "from-env")}, timeout=5)
        assert ok.status_code == 202


# ------------------------------------------------------------------ issue 14: items 7 and 9
def raw_request(server: WebhookServer, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes, half-close, and read the whole answer (the server must close)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def wait_until(condition, seconds: float = 15.0) -> bool:
    """Poll ``condition`` (a safety bound, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_negative_content_length_is_refused_without_reading(server: WebhookServer) -> None:
    answer = raw_request(server, b"POST /mentions HTTP/1.1\r\nHost: hook\r\nContent-Length: -1\r\n"
                                 b"Content-Type: application/json\r\n\r\n" + b"x" * 100)
    # Refused from the headers alone (h11); the old server read until the client closed, then answered.
    assert answer.startswith(b"HTTP/1.1 400")
    assert stored(server) == []


def test_declared_huge_body_is_413_at_once_and_the_connection_closed(server: WebhookServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /mentions HTTP/1.1\r\nHost: hook\r\nContent-Length: 60000000\r\n\r\n" + b"x" * 1000)
        answer = b""
        while chunk := sock.recv(65536):  # EOF: the server closed without waiting for 60 MB
            answer += chunk
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 413")
    assert b"application/json" in rest and b"inbound_body_max_bytes" in rest
    assert stored(server) == []


def test_global_body_limit_applies_to_every_inbound_endpoint(tmp_path: Path) -> None:
    config = hook_config(limits={"inbound_body_max_bytes": 500}, max_body_bytes=1_000_000)
    with WebhookServer(tmp_path / "limit.db", config, secret=SECRET) as srv:
        body = json.dumps([mention(i) for i in range(10)]).encode()
        response = post(srv, body)
        assert response.status_code == 413 and "inbound_body_max_bytes" in response.json()["error"]
        assert stored(srv) == []


def test_stalled_half_bodies_get_408_and_are_let_go(tmp_path: Path) -> None:
    config = hook_config(limits={"inbound_read_timeout_s": 0.5, "inbound_max_connections": 1000})
    clients = 150
    with WebhookServer(tmp_path / "stall.db", config, secret=SECRET) as srv:
        socks = []
        for _ in range(clients):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
            sock.sendall(b"POST /mentions HTTP/1.1\r\nHost: hook\r\nContent-Length: 1000\r\n\r\n" + b"{" * 10)
            socks.append(sock)
        # A few stall inside the headers, or say nothing at all: they never reach the app; the
        # header deadline closes them.
        for i in range(10):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
            if i % 2:
                sock.sendall(b"POST /mentions HTTP/1.1\r\nHost: ho")
            socks.append(sock)
        answers = []
        for sock in socks:
            data = b""
            while chunk := sock.recv(65536):  # each must end: the server closes the connection
                data += chunk
            answers.append(data)
            sock.close()
        assert wait_until(lambda: srv.open_connections == 0), f"{srv.open_connections} connections still held"
        health = listener_health(srv.store)[0]
    half_bodies, half_headers = answers[:clients], answers[clients:]
    assert all(a.startswith(b"HTTP/1.1 408") and b"inbound_read_timeout_s" in a for a in half_bodies)
    assert all(a == b"" for a in half_headers)
    assert health["status"] == "ok" and health["last_error"] is None


def test_signed_sender_cannot_post_on_a_polled_channel(server: WebhookServer) -> None:
    response = post(server, json.dumps([mention(1), mention(2, channel="x", external_id="1862200000000000000")]).encode())
    assert response.status_code == 403
    assert "[1].channel: 'x' is not a channel this webhook accepts" in response.json()["error"]
    assert stored(server) == []  # not even the valid first mention


def test_signed_sender_cannot_stop_an_sla_clock_with_a_fake_reply(server: WebhookServer) -> None:
    assert post(server, json.dumps(mention(1)).encode()).status_code == 202
    fake_reply = mention(2, text="Sorted, sorry!", outbound=True, in_reply_to="page-1", author_handle="ShopHelp")
    response = post(server, json.dumps(fake_reply).encode())
    assert response.status_code == 403 and "mention.outbound" in response.json()["error"]
    assert server.store.db.execute("select first_response_at from cases").fetchall() == [(None,)]
    assert stored(server) == [("courier_page", "page-1")]


def test_trusted_relay_may_send_outbound_when_configured(tmp_path: Path) -> None:
    with WebhookServer(tmp_path / "relay.db", hook_config(allow_outbound=True), secret=SECRET) as srv:
        assert post(srv, json.dumps(mention(1)).encode()).status_code == 202
        reply = mention(2, text="Sorted, sorry!", outbound=True, in_reply_to="page-1", author_handle="ShopHelp")
        assert post(srv, json.dumps(reply).encode()).status_code == 202
        assert srv.store.db.execute("select first_response_at is not null from cases").fetchall() == [(1,)]


@pytest.mark.parametrize(("item", "words"), [
    (mention(1, created_at="9999-12-31T23:59:59Z"), "created_at"),
    (mention(1, author_followers=10**30), "author_followers"),
    (mention(1, text="late " * 6000), "characters, at most"),
])
def test_permanently_bad_mentions_are_4xx_not_retry_later(tmp_path: Path, item: dict, words: str) -> None:
    config = hook_config(max_body_bytes=1_000_000)
    config.imports.max_post_chars = 25_000
    with WebhookServer(tmp_path / "bad.db", config, secret=SECRET) as srv:
        response = post(srv, json.dumps(item).encode())
        assert 400 <= response.status_code < 500, response.text
        assert words in response.json()["error"] and "\n" not in response.json()["error"]
        assert stored(srv) == []
        assert listener_health(srv.store)[0]["last_error"] is None


def test_unsigned_requests_are_counted_not_errors_and_logged_rate_limited(server: WebhookServer,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="doorstep.listeners.webhook"):
        for i in range(5):
            assert post(server, json.dumps(mention(i)).encode(), signature=None).status_code == 401
    writes = listener_health(server.store)[0]["rejected"]
    assert 1 <= writes <= 5  # batched: a flood of strangers is not a flood of writes
    server.endpoint.flush_rejected()
    health = listener_health(server.store)[0]
    assert health["rejected"] == 5 and health["errors"] == 0 and health["last_error"] is None
    assert "127.0.0.1" not in json.dumps(health)
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1
    assert "127.0.0.1" not in caplog.text

    from responders.alerts import evaluate

    alerts = parse_config({"alerts": {"urgent_complaint": False, "vip_author": False, "sla_breach": False,
                                      "listener_unhealthy": True, "spike": {"enabled": False}}})
    assert [f for f in evaluate(server.store, alerts) if f.subject == "listener:webhook"] == []


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH", "GET"])
def test_other_methods_get_a_plain_json_405(server: WebhookServer, method: str) -> None:
    response = requests.request(method, server.url + "/mentions", timeout=5)
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/json" and response.headers["allow"] == "POST"
    assert "not allowed" in response.json()["error"]


def test_unknown_path_is_json_404_and_empty_body_is_400(server: WebhookServer) -> None:
    response = post(server, b"{}", path="/elsewhere")
    assert response.status_code == 404 and "/mentions" in response.json()["error"]
    empty = post(server, b"")
    assert empty.status_code == 400 and "body: empty" in empty.json()["error"]


def test_limits_are_validated_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match="inbound_read_timeout_s"):
        parse_config({"limits": {"inbound_read_timeout_s": -1}})


def test_headers_trickled_a_byte_at_a_time_do_not_keep_the_connection(tmp_path: Path) -> None:
    config = hook_config(limits={"inbound_read_timeout_s": 0.5})
    request = b"POST /mentions HTTP/1.1\r\nHost: hook\r\n" + b"X-Padding: " + b"a" * 400
    with WebhookServer(tmp_path / "trickle.db", config, secret=SECRET) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sent = 0
            closed = False
            for byte in request:  # ~40 s of trickling at most: far past the 0.5 s deadline
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                sent += 1
                time.sleep(0.1)
                sock.setblocking(False)
                try:
                    if sock.recv(1) == b"":
                        closed = True
                        break
                except BlockingIOError:
                    pass
                except OSError:
                    closed = True
                    break
                finally:
                    sock.setblocking(True)
        assert closed and sent < len(request)
        assert wait_until(lambda: srv.open_connections == 0)


class TokenizerLikeClassifier(KeywordClassifier):
    """Raises on a lone surrogate as the ONNX model's tokenizer does (a TypeError: "retry later" before)."""

    def classify(self, texts):
        if any("\ud800" <= c <= "\udfff" for text in texts for c in text):
            raise TypeError("TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]")
        return super().classify(texts)


@pytest.mark.parametrize("item", [
    mention(1, text="cut emoji \ud83d"),
    mention(1, author_handle="user\udc00"),
    mention(1, raw={"note": "x\ud800"}),
])
def test_a_lone_surrogate_is_422_naming_the_field_not_retry_later(tmp_path: Path, item: dict) -> None:
    field = next(k for k, v in item.items() if "\\ud" in json.dumps(v))
    body = json.dumps({"mentions": [mention(2), item]}).encode()  # json.dumps writes the "\ud83d" escape
    with WebhookServer(tmp_path / "s.db", hook_config(), secret=SECRET, classifier=TokenizerLikeClassifier()) as srv:
        response = post(srv, body)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error.startswith(f"mentions[1].{field}: holds a lone surrogate \\u") and "\n" not in error
        assert stored(srv) == [] and listener_health(srv.store)[0]["last_error"] is None


# Review of 516969e, finding 2: the webhook checked a post's channel as sent, then Mention renamed it. With
# channels = ["twitter"] a post was stored on "x" (where a made-up id takes over a real tweet's), and with
# channels = ["facebook messenger"] every post was refused while the config loaded without a word.

@pytest.mark.parametrize(("setting", "value", "words"), [
    ("channels", ["courier_page", "facebook messenger"], "'facebook messenger' is not a channel name"),
    ("channels", ["twitter"], "'twitter' is X's own channel (x)"),
    ("channels", ["X"], "'X' is X's own channel (x)"),
    ("channels", ["E-mail"], "'E-mail' is e-mail's own channel (email)"),
    ("default_channel", "Twitter", "'Twitter' is X's own channel (x)"),
])
def test_a_configured_channel_that_is_no_name_or_a_network_of_ours_is_refused_when_the_config_is_read(
        setting: str, value: object, words: str) -> None:
    from listeners.config import configured_channels

    with pytest.raises(ConfigError) as refused:
        configured_channels(hook_config(**{setting: value}))
    message = str(refused.value)
    assert f"channels.webhook.{setting}" in message and words in message, message
    assert "\n" not in message, message


def test_configured_channels_and_posts_are_compared_by_their_stored_names(tmp_path: Path) -> None:
    config = hook_config(default_channel=" Courier_Page ", channels=["Courier_Page", "TikTok"])
    with WebhookServer(tmp_path / "names.db", config, secret=SECRET) as srv:
        assert srv.endpoint.channels == {"courier_page", "tiktok"}
        accepted = post(srv, json.dumps([mention(1), mention(2, channel="TikTok"), mention(3, channel=" tiktok ")]
                                        ).encode())
        assert accepted.status_code == 202, accepted.text
        assert sorted(stored(srv)) == [("courier_page", "page-1"), ("tiktok", "page-2"), ("tiktok", "page-3")]
        for name in ("Twitter", "twitter", "X"):  # stored as "x": refused like "x" itself
            refused = post(srv, json.dumps(mention(9, channel=name, external_id="1862200000000000000")).encode())
            assert refused.status_code == 403, refused.text
            assert f"{name!r} is not a channel this webhook accepts" in refused.json()["error"]
        unnamed = post(srv, json.dumps(mention(9, channel="facebook messenger")).encode())
        assert unnamed.status_code == 400 and "mention.channel: 'facebook messenger' is not a channel name" in \
            unnamed.json()["error"], unnamed.text
        assert len(stored(srv)) == 3
