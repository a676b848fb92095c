"""The webhook listener: other tools (a courier's page export, an automation platform) POST mentions.

Authentication is an HMAC-SHA256 of the raw request body with a shared secret
(``DOORSTEP_WEBHOOK_SECRET``), sent as ``X-Doorstep-Signature: sha256=<hex>`` and compared in
constant time. The body is one mention object, a list of them, or ``{"mentions": [...]}`` with
the fields of :class:`doorstep.models.Mention` (``external_id``, ``text``, ``created_at`` are
required; ``channel`` defaults to ``[channels.webhook] default_channel``).

A signature proves who sent a request, not that everything in it is theirs to say: a sender
may only post to the webhook's own channels (``[channels.webhook] channels``, by default just
``default_channel``; a post "on x" with a made-up id would pre-empt the real tweet), and may not
mark a post as ours (``outbound``), which would stop a case's SLA clock without any reply sent
(``allow_outbound = true`` for a trusted relay of the team's own replies).

Answers, all JSON: 202 accepted (also for a repeat: delivery is idempotent, keyed by channel and
external_id); 400 malformed JSON or an invalid mention (the body names the item and field: a
channel that is not a string, a number too long to read, a ``created_at`` more than
``MAX_FUTURE_SKEW`` after the request arrived);
401 missing or bad signature; 403 a channel or field this sender may not use; 408 body not
received within ``[limits] inbound_read_timeout_s``; 411 no Content-Length; 413 body over
``max_body_bytes``; 422 a mention that can never be stored (its reason in one line); 404/405 for
other paths and methods; 503 the store was busy (retry); 500 the posts could not be stored (a
broken store, a failing classifier: retry). Both 5xx are written to the webhook's listener health.
Only 5xx ask the sender to retry; every 4xx is permanent. Nothing is stored unless the whole request is valid. It is served by
the inbound ASGI application (:mod:`doorstep.inbound_app`) on uvicorn.

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
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from doorstep.config import Config, ConfigError
from doorstep.dialect import OPERATIONAL_ERRORS
from doorstep.models import MAX_FUTURE_SKEW, Mention, channel_key, utcnow
from doorstep.pipeline import Pipeline
from doorstep.redaction import redact
from doorstep.store import Store
from listeners.config import WebhookSettings, channel_settings
from listeners.health import record_error, record_rejected, record_success
from doorstep.inbound_app import (
    BodyTimeout,
    BodyTooLarge,
    InboundLimits,
    InboundServer,
    declared_length,
    json_error,
    read_body,
)

log = logging.getLogger("doorstep.listeners.webhook")

SIGNATURE_HEADER = "X-Doorstep-Signature"
PATHS = ("/", "/mentions", "/webhook")
#: Fields a sender may never set: the store assigns them.
STORE_FIELDS = {"id", "labels", "case_id", "by_customer"}
#: At most one log line per this many seconds about refused (unsigned) requests.
REJECTED_LOG_EVERY_S = 60.0
#: At most one write of the refused-request count per this many seconds.
REJECTED_FLUSH_S = 1.0


def sign(body: bytes, secret: str) -> str:
    """The header value a sender must send for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secret: str) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(sign(body, secret), header.strip())


class BadMention(ValueError):
    """The request body is not a valid list of mentions; the message names item and field.

    ``status`` is the HTTP answer: 400 unreadable or invalid, 403 not this sender's to say,
    422 valid JSON that can never be stored. All are permanent: the sender must not retry.
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class _HugeNumber:
    """Stands in for a JSON integer too long for Python to read, so its field can be named."""

    def __init__(self, digits: int):
        self.digits = digits


def _huge_number_at(value: Any, where: str) -> str | None:
    """Where the first :class:`_HugeNumber` is in ``value`` (``where.raw.n[1]``), or None."""
    if isinstance(value, _HugeNumber):
        return f"{where}: a number of {value.digits} digits, longer than any field holds"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _huge_number_at(item, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]")
        if found:
            return found
    return None


def _read_json(body: bytes) -> Any:
    """The body's JSON, or :class:`BadMention` (400: the sender's mistake, never worth a retry)."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadMention(f"body: not valid JSON: {getattr(exc, 'msg', exc)}") from None
    except RecursionError:
        raise BadMention("body: JSON nested too deeply") from None
    except ValueError:
        pass  # an integer longer than Python reads (sys.get_int_max_str_digits): find its field below
    limit = sys.get_int_max_str_digits() or 4300

    def parse_int(text: str) -> Any:
        digits = len(text.lstrip("-"))
        return _HugeNumber(digits) if digits > limit else int(text)

    try:
        data = json.loads(body, parse_int=parse_int)
    except (ValueError, RecursionError) as exc:
        raise BadMention(f"body: not valid JSON: {getattr(exc, 'msg', str(exc)[:200])}") from None
    items = data.get("mentions") if isinstance(data, dict) and "mentions" in data else data
    prefix = "mentions" if items is not data else ""
    if isinstance(items, list):
        found = next(filter(None, (_huge_number_at(item, f"{prefix}[{i}]") for i, item in enumerate(items))), None)
    else:
        found = _huge_number_at(items, prefix or "mention")
    raise BadMention(found or "body: a number longer than any field holds")


def parse_body(body: bytes, default_channel: str, max_mentions: int, *, channels: set[str] | None = None,
               allow_outbound: bool = False, max_post_chars: int | None = None,
               received_at: datetime | None = None) -> list[Mention]:
    """The mentions of one request, all valid, or :class:`BadMention` naming the first problem.

    ``channels`` are the channels this sender may post to, by their stored names (``channel_key``:
    ``WebhookSettings`` reads them so; ``None``: any, for callers that check themselves); a post's
    channel is compared by its stored name too; ``outbound`` is refused unless ``allow_outbound``. A post dated more than
    ``MAX_FUTURE_SKEW`` after ``received_at`` (when the request arrived; default now) is refused:
    its case would never be overdue.
    """
    if not body.strip():
        raise BadMention("body: empty; send one mention, a list, or {\"mentions\": [...]} as JSON")
    data = _read_json(body)
    latest = (received_at or utcnow()) + MAX_FUTURE_SKEW
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
        unknown = sorted(set(item) - set(Mention.model_fields) | (STORE_FIELDS & set(item)))
        if unknown:
            raise BadMention(f"{where}.{unknown[0]}: unknown field")
        item.setdefault("channel", default_channel)
        if not isinstance(item["channel"], str):
            raise BadMention(f"{where}.channel: expected a string, got a JSON {type(item['channel']).__name__}")
        sent = item["channel"]
        try:
            # Checked by the name it is stored under: "Twitter" is "x", which no webhook may post to.
            item["channel"] = channel_key(sent)
        except ValueError as exc:
            raise BadMention(f"{where}.channel: {str(exc)[:300]}") from None
        if channels is not None and item["channel"] not in channels:
            raise BadMention(f"{where}.channel: {sent[:40]!r} is not a channel this webhook accepts "
                             f"(allowed: {', '.join(sorted(channels))}; see [channels.webhook] channels)", 403)
        if max_post_chars is not None and isinstance(item.get("text"), str) and len(item["text"]) > max_post_chars:
            raise BadMention(f"{where}.text: {len(item['text'])} characters, at most {max_post_chars} "
                             "([imports] max_post_chars)", 422)
        try:
            mention = Mention.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "(object)"
            # A lone surrogate is well-formed JSON that no store can ever hold: 422, and never a 500 later.
            status = 422 if first["type"] == "lone_surrogate" else 400
            raise BadMention(f"{where}.{field}: {first['msg']}", status) from None
        except (ValueError, OverflowError, TypeError) as exc:
            raise BadMention(f"{where}: {type(exc).__name__}: {str(exc)[:200]}", 422) from None
        # Checked on the validated value: "true", "yes", "on" and 1 all become True there.
        if mention.outbound and not allow_outbound:
            raise BadMention(f"{where}.outbound: senders cannot mark a post as the team's own reply (it would stop "
                             "the case's SLA clock); set [channels.webhook] allow_outbound = true for a trusted relay",
                             403)
        if mention.created_at > latest:
            raise BadMention(f"{where}.created_at: {mention.created_at.isoformat()} is in the future (received at "
                             f"{latest - MAX_FUTURE_SKEW:%Y-%m-%dT%H:%M:%SZ}, at most "
                             f"{MAX_FUTURE_SKEW.total_seconds() / 60:g} minutes ahead is taken); check the sender's "
                             "clock and that it sends seconds, not milliseconds")
        mentions.append(mention)
    return mentions


class _RejectedLog:
    """Counts refused requests and logs at most one line per ``every_s`` (never the address).

    Unsigned requests are free to send; a line per request would let anyone flood the log.
    """

    def __init__(self, every_s: float = REJECTED_LOG_EVERY_S):
        self.every_s = every_s
        self._pending = 0
        self._last = float("-inf")
        self._lock = threading.Lock()

    def note(self, reason: str) -> None:
        with self._lock:
            self._pending += 1
            now = time.monotonic()
            if now - self._last < self.every_s:
                return
            count, self._pending, self._last = self._pending, 0, now
        log.warning("webhook: refused %d request(s) with a %s %s since the last report", count, reason,
                    SIGNATURE_HEADER)


class RejectedCounter:
    """The ``rejected`` count of one listener's health row, written at most once per ``every_s``.

    A flood of strangers' requests must not become a flood of writes competing with real ones,
    yet the last burst must reach the console too: a refusal inside the window arms one timer
    that writes what is pending when the window ends (and :meth:`close` writes the rest).
    Shared by every route of the inbound application (webhook, ``/sms``, ``/mail``).
    """

    def __init__(self, store: Store, name: str, lock: threading.Lock, every_s: float = REJECTED_FLUSH_S):
        self.store, self.name, self.every_s = store, name, every_s
        self._store_lock = lock
        self._lock = threading.Lock()
        self._pending = 0
        self._flushed_at = float("-inf")
        self._timer: threading.Timer | None = None

    def add(self) -> None:
        """One more refused request (call off the event loop: it may write). Never raises: the
        stranger gets its 401 whatever the store does, and a count not written is kept for the next write."""
        with self._lock:
            self._pending += 1
            wait = self._flushed_at + self.every_s - time.monotonic()
            if wait > 0:
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._flush_late)
                    self._timer.daemon = True
                    self._timer.start()
                return
        self._flush_quietly()

    def _flush_late(self) -> None:
        with self._lock:
            self._timer = None
        self._flush_quietly()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - a busy store must not turn a 401 into a 500; the next write retries
            log.warning("%s: could not write the refused-request count to listener health", self.name, exc_info=True)

    def flush(self) -> None:
        """Write the pending count now."""
        with self._lock:
            count, self._pending = self._pending, 0
            self._flushed_at = time.monotonic()
        if count:
            try:
                with self._store_lock:
                    record_rejected(self.store, self.name, count)
            except Exception:
                with self._lock:
                    self._pending += count  # kept for the next write
                raise

    def close(self) -> None:
        """Stop the timer and write what is pending (before the store closes)."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            if timer is not threading.current_thread():
                timer.join()
        self.flush()


class ClassifierFailed(RuntimeError):
    """The classifier raised while labelling a request's posts: our fault, not the sender's.

    Raised in place of what it raised, so that a ``ValueError`` of a model (an output of the wrong
    shape) is not mistaken for a post that can never be stored (422, which the sender drops): the
    request is answered 500, the sender retries, and health shows the error."""


class _GuardedClassifier:
    """The pipeline's classifier, its failures raised as :class:`ClassifierFailed` (all else passed through)."""

    def __init__(self, inner: Any):
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def classify(self, texts: Any, **kwargs: Any) -> Any:
        try:
            return self._inner.classify(texts, **kwargs)
        except Exception as exc:
            name = getattr(self._inner, "name", type(self._inner).__name__)
            raise ClassifierFailed(f"classifier {name} failed: {type(exc).__name__}: {exc}") from exc


class WebhookEndpoint:
    """The ``POST /mentions`` endpoint: checks, then one transaction per request (one store)."""

    def __init__(self, store: Store, pipeline: Pipeline, settings: WebhookSettings, secret: str,
                 limits: InboundLimits, *, max_post_chars: int | None = None):
        self.store = store
        self.pipeline = pipeline
        if pipeline.classifier is not None and not isinstance(pipeline.classifier, _GuardedClassifier):
            pipeline.classifier = _GuardedClassifier(pipeline.classifier)
        self.settings = settings
        self.secret = secret
        self.limits = limits
        self.max_post_chars = max_post_chars
        self.channels = set(settings.channels or [settings.default_channel])
        self.max_body_bytes = min(settings.max_body_bytes, limits.body_max_bytes)
        self._lock = threading.Lock()
        self._rejected = _RejectedLog()
        #: Refused requests of every inbound route, in this listener's health row.
        self.rejected = RejectedCounter(store, "webhook", self._lock)

    def routes(self) -> list[Any]:
        from starlette.routing import Route

        return [Route(path, self.handle, methods=["POST"]) for path in PATHS]

    async def handle(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        length = declared_length(request.headers)
        if length is None:
            return json_error(411, "Content-Length required", close=True)
        too_large = json_error(413, f"body of {length} bytes is over the webhook's limit of {self.max_body_bytes} "
                                    "bytes ([channels.webhook] max_body_bytes, [limits] inbound_body_max_bytes)",
                               close=True)
        if length > self.max_body_bytes:
            return too_large  # answered without reading it
        try:
            body = await read_body(request, self.limits.read_timeout_s, self.max_body_bytes)
        except BodyTooLarge:
            return too_large
        except BodyTimeout:
            return json_error(408, f"body not received within {self.limits.read_timeout_s:g} s "
                                   "([limits] inbound_read_timeout_s)", close=True)
        arrived = utcnow()
        header = request.headers.get(SIGNATURE_HEADER)
        if not verify(body, header, self.secret):
            reason = "missing" if not header else "bad"
            await run_in_threadpool(self.note_rejected, reason)
            return json_error(401, f"{reason} signature: send {SIGNATURE_HEADER}: sha256=<HMAC-SHA256 of the body>")
        try:
            counts = await run_in_threadpool(self.accept, body, arrived)
        except BadMention as exc:
            log.warning("webhook: refused a signed body (%s): %s", exc, redact(body[:2000].decode("utf-8", "replace")))
            return json_error(exc.status, str(exc))
        except OPERATIONAL_ERRORS as exc:  # busy or locked: worth a retry
            log.warning("webhook: store busy (%s); asked the sender to retry", exc)
            # In health too: posts were refused for now, and a store that stays locked must not look
            # healthy (the next stored request writes ok again, this error staying on the row).
            await run_in_threadpool(self._note_store_error, exc, "store busy")
            return json_error(503, "the store is busy; retry later", headers={"Retry-After": "5"})
        except Exception as exc:  # noqa: BLE001 - a bug, a broken store or classifier; the sender retries
            log.exception("webhook: could not store mentions")
            await run_in_threadpool(self._note_store_error, exc, "posts not stored")
            return json_error(500, "could not store the mentions; retry later")
        return JSONResponse({"status": "accepted", **counts}, status_code=202)

    def accept(self, body: bytes, received_at: datetime | None = None) -> dict[str, int]:
        mentions = parse_body(body, self.settings.default_channel, self.settings.max_mentions, channels=self.channels,
                              allow_outbound=self.settings.allow_outbound, max_post_chars=self.max_post_chars,
                              received_at=received_at)
        with self._lock:
            try:
                with self.store.transaction():
                    result = self.pipeline.ingest(mentions)
            except (ValidationError, ValueError, OverflowError) as exc:
                # Valid JSON the pipeline still cannot take (a date beyond the calendar, say):
                # permanent, so a 4xx, never "retry later".
                raise BadMention(f"mentions: cannot be stored: {type(exc).__name__}: {str(exc)[:200]}", 422) from None
            record_success(self.store, "webhook", fetched=len(mentions), stored=result.stored)
        return {"received": result.received, "stored": result.stored, "duplicates": result.duplicates}

    def note_rejected(self, reason: str) -> None:
        """An unsigned or badly signed request: counted apart, never ``last_error``, no address.

        The count reaches the store at most once per ``REJECTED_FLUSH_S`` (see
        :class:`RejectedCounter`): a flood of strangers' requests is not a flood of writes.
        """
        self._rejected.note(reason)
        self.rejected.add()

    def flush_rejected(self) -> None:
        self.rejected.flush()

    def _note_store_error(self, exc: Exception, what: str = "posts not stored") -> None:
        """A request whose posts were not stored (the sender was told to retry): in health, never lost from view."""
        try:
            with self._lock:
                record_error(self.store, "webhook", f"webhook: {what}, the sender was asked to retry: "
                                                    f"{type(exc).__name__}: {exc}")
        except Exception:  # noqa: BLE001 - a store too busy for this write too: the answer still goes out
            log.exception("webhook: could not write listener health")


class WebhookServer:
    """The webhook on the inbound ASGI application (uvicorn in a background thread)."""

    def __init__(self, db: str | Path | Store, config: Config, *, classifier: Any = None,
                 settings: WebhookSettings | None = None, secret: str | None = None,
                 host: str | None = None, port: int | None = None, replies: bool | None = None):
        self.settings = settings or channel_settings(config, "webhook")
        self.secret = secret or self.settings.secret
        if not self.secret:
            raise ConfigError("webhook: DOORSTEP_WEBHOOK_SECRET is not set; refusing to accept unsigned mentions")
        self._owns_store = not isinstance(db, Store)
        self.store = db if isinstance(db, Store) else Store(db)
        self.pipeline = Pipeline(self.store, config, classifier=classifier)
        self.limits = InboundLimits.from_config(config)
        imports = getattr(config, "imports", None)
        self.endpoint = WebhookEndpoint(self.store, self.pipeline, self.settings, self.secret, self.limits,
                                        max_post_chars=getattr(imports, "max_post_chars", None))
        self.host = host or self.settings.host
        self.port = self.settings.port if port is None else port
        self._server: InboundServer | None = None
        # Customers' SMS and e-mail replies (POST /sms, POST /mail) on the same application.
        # Served even with [responders.dialogue] enabled = false: no answer is acted on then, but a
        # STOP to one of our texts or e-mails is still an opt-out.
        self.replies: Any = None
        if replies is None or replies:
            from listeners.replies import ReplyEndpoints

            self.replies = ReplyEndpoints(self.store, config, self.limits, lock=self.endpoint._lock,
                                          classifier=classifier, rejected=self.endpoint.rejected)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        return self._server.open_connections if self._server is not None else 0

    def start(self) -> WebhookServer:
        routes = [*self.endpoint.routes(), *(self.replies.routes() if self.replies is not None else [])]
        self._server = InboundServer(routes, self.limits, host=self.host, port=self.port).start()
        self.port = self._server.port
        # Listening is the webhook's "round": health shows it up (not "never") before the first
        # sender, so refused strangers alone cannot make it look broken.
        with self.endpoint._lock:
            record_success(self.store, "webhook", fetched=0, stored=0)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.endpoint.rejected.close()  # the last refusals' count, before the store closes
        if self._owns_store:
            self.store.close()
            self._owns_store = False

    def __enter__(self) -> WebhookServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def accept(self, body: bytes, received_at: datetime | None = None) -> dict[str, int]:
        return self.endpoint.accept(body, received_at)
