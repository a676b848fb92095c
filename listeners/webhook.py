"""The webhook listener: other tools (a courier's page export, an automation platform) POST mentions.

Authentication is an HMAC-SHA256 of the raw request body with a shared secret
(``DOORSTEP_WEBHOOK_SECRET``), sent as ``X-Doorstep-Signature: sha256=<hex>`` and compared in
constant time. The body is one mention object, a list of them, or ``{"mentions": [...]}`` with
the fields of :class:`doorstep.models.Mention` (``external_id``, ``text``, ``created_at`` are
required; ``channel`` defaults to ``[channels.webhook] default_channel``).

Answers: 202 accepted (also for a repeat: delivery is idempotent, keyed by channel and
external_id), 401 missing or bad signature, 413 body over ``max_body_bytes``, 411 no
Content-Length, 400 malformed JSON or an invalid mention (the body names the item and field),
404/405 for other paths and methods. Nothing is stored unless the whole request is valid.

Sign a request (shell)::

    body='{"external_id":"42","text":"@ShopHelp parcel late","created_at":"2026-11-20T10:00:00Z"}'
    sig=$(printf %s "$body" | openssl dgst -sha256 -hmac "$DOORSTEP_WEBHOOK_SECRET" | sed 's/^.* //')
    curl -H "X-Doorstep-Signature: sha256=$sig" -H 'Content-Type: application/json' -d "$body" \\
         http://127.0.0.1:8766/mentions
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from doorstep.config import Config, ConfigError
from doorstep.models import Mention
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.config import WebhookSettings, channel_settings
from listeners.health import record_error, record_success

log = logging.getLogger("doorstep.listeners.webhook")

SIGNATURE_HEADER = "X-Doorstep-Signature"
PATHS = ("/", "/mentions", "/webhook")


def sign(body: bytes, secret: str) -> str:
    """The header value a sender must send for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secret: str) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(body, secret), header.strip())


class BadMention(ValueError):
    """The request body is not a valid list of mentions; the message names item and field."""


def parse_body(body: bytes, default_channel: str, max_mentions: int) -> list[Mention]:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadMention(f"body: not valid JSON: {getattr(exc, 'msg', exc)}") from None
    if isinstance(data, dict) and "mentions" in data:
        data = data["mentions"]
        prefix = "mentions"
    else:
        prefix = ""
    items = data if isinstance(data, list) else [data]
    if not items:
        raise BadMention("body: no mentions")
    if len(items) > max_mentions:
        raise BadMention(f"body: {len(items)} mentions in one request, at most {max_mentions}")
    mentions = []
    for index, item in enumerate(items):
        where = f"{prefix}[{index}]" if isinstance(data, list) else (prefix or "mention")
        if not isinstance(item, dict):
            raise BadMention(f"{where}: expected a JSON object")
        item = {k: v for k, v in item.items() if v is not None}
        unknown = sorted(set(item) - set(Mention.model_fields) | ({"id", "labels", "case_id"} & set(item)))
        if unknown:
            raise BadMention(f"{where}.{unknown[0]}: unknown field")
        item.setdefault("channel", default_channel)
        try:
            mentions.append(Mention.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "(object)"
            raise BadMention(f"{where}.{field}: {first['msg']}") from None
    return mentions


class WebhookServer:
    """ThreadingHTTPServer on ``host:port``; requests are ingested one at a time (one store)."""

    def __init__(self, db: str | Path | Store, config: Config, *, classifier: Any = None,
                 settings: WebhookSettings | None = None, secret: str | None = None,
                 host: str | None = None, port: int | None = None):
        self.settings = settings or channel_settings(config, "webhook")
        self.secret = secret or self.settings.secret
        if not self.secret:
            raise ConfigError("webhook: DOORSTEP_WEBHOOK_SECRET is not set; refusing to accept unsigned mentions")
        self._owns_store = not isinstance(db, Store)
        self.store = db if isinstance(db, Store) else Store(db)
        self.pipeline = Pipeline(self.store, config, classifier=classifier)
        self.host = host or self.settings.host
        self.port = self.settings.port if port is None else port
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> WebhookServer:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="doorstep-webhook", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._owns_store:
            self.store.close()
            self._owns_store = False

    def __enter__(self) -> WebhookServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def accept(self, body: bytes) -> dict[str, int]:
        mentions = parse_body(body, self.settings.default_channel, self.settings.max_mentions)
        with self._lock:
            with self.store.transaction():
                result = self.pipeline.ingest(mentions)
            record_success(self.store, "webhook", fetched=len(mentions), stored=result.stored)
        return {"received": result.received, "stored": result.stored, "duplicates": result.duplicates}

    def note_rejected(self, reason: str) -> None:
        with self._lock:
            record_error(self.store, "webhook", reason)


class _Handler(BaseHTTPRequestHandler):
    owner: WebhookServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, keep-alive clients wait ~40 ms for
    # the delayed ACK before the body arrives.
    disable_nagle_algorithm = True
    server_version = "doorstep-webhook"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    def _reply(self, status: int, body: dict[str, Any], close: bool = False) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/health", "/healthz"):
            self._reply(200, {"status": "ok"})
        else:
            self._reply(404, {"error": f"no such path {self.path}; POST mentions to /mentions"})

    def do_PUT(self) -> None:
        self._reply(405, {"error": "use POST"}, close=True)

    def do_POST(self) -> None:
        owner = self.owner
        path = self.path.split("?")[0]
        if path.rstrip("/") not in {p.rstrip("/") for p in PATHS}:
            self._reply(404, {"error": f"no such path {path}; POST mentions to /mentions"}, close=True)
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self._reply(411, {"error": "Content-Length required"}, close=True)
            return
        try:
            length = int(length_header)
        except ValueError:
            self._reply(400, {"error": "Content-Length: not a number"}, close=True)
            return
        if length > owner.settings.max_body_bytes:
            # Do not read it: answer and close, so a huge body cannot tie up the server.
            self._reply(413, {"error": f"body of {length} bytes exceeds max_body_bytes={owner.settings.max_body_bytes}"},
                        close=True)
            return
        body = self.rfile.read(length)
        if not verify(body, self.headers.get(SIGNATURE_HEADER), owner.secret):
            reason = "missing" if not self.headers.get(SIGNATURE_HEADER) else "bad"
            owner.note_rejected(f"rejected a request with a {reason} {SIGNATURE_HEADER} from {self.client_address[0]}")
            self._reply(401, {"error": f"{reason} signature: send {SIGNATURE_HEADER}: sha256=<HMAC-SHA256 of the body>"})
            return
        try:
            counts = owner.accept(body)
        except BadMention as exc:
            log.warning("webhook: rejected body (%s): %s", exc, body[:2000].decode("utf-8", "replace"))
            self._reply(400, {"error": str(exc)})
            return
        except Exception as exc:  # noqa: BLE001 - the sender must retry; we log the cause
            log.exception("webhook: could not store mentions")
            owner.note_rejected(f"store error: {type(exc).__name__}: {exc}")
            self._reply(500, {"error": "could not store the mentions; retry later"})
            return
        self._reply(202, {"status": "accepted", **counts})
