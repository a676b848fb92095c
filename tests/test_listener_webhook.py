"""The signed webhook: 202 once per mention, 401/413/400/411 with clear reasons, nothing half-stored."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest
import requests

from doorstep.config import ConfigError, parse_config
from doorstep.store import Store
from listeners.health import listener_health
from listeners.webhook import SIGNATURE_HEADER, WebhookServer, sign

SECRET = "webhook-shared-SECRET"


@pytest.fixture
def server(tmp_path: Path):
    config = parse_config({
        "brands": [{"name": "Shop", "handles": {"x": "ShopHelp"}, "keywords": ["shop"]}],
        "channels": {"webhook": {"port": 0, "max_body_bytes": 2000, "default_channel": "courier_page"}},
    })
    with WebhookServer(tmp_path / "hook.db", config, secret=SECRET) as srv:
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
    body = json.dumps([mention(1), mention(2, channel="x")]).encode()
    first = post(server, body)
    assert first.status_code == 202 and first.json()["stored"] == 2
    again = post(server, body)
    assert again.status_code == 202 and again.json() == {"status": "accepted", "received": 2, "stored": 0,
                                                         "duplicates": 2}
    assert sorted(stored(server)) == [("courier_page", "page-1"), ("x", "page-2")]
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
    assert listener_health(server.store)[0]["status"] == "error"


def test_signature_of_another_secret_is_401(server: WebhookServer) -> None:
    body = json.dumps(mention(1)).encode()
    assert post(server, body, signature=sign(body, "not-the-secret")).status_code == 401


def test_oversize_body_is_413_without_reading_it(server: WebhookServer) -> None:
    body = json.dumps([mention(i) for i in range(40)]).encode()
    assert len(body) > 2000
    response = post(server, body)
    assert response.status_code == 413 and "max_body_bytes" in response.json()["error"]
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
