"""The courier's page and API, served by Starlette on uvicorn (``doorstep courier-page``).

Routes, all under one shipment's link ``/courier/TRACKING/TOKEN`` (see responders/courier_link.py):

* ``GET  /courier/TRACKING/TOKEN``          the page: facts, tracking timeline, earlier updates, a form;
* ``GET  /courier/TRACKING/TOKEN/facts``    the same facts as JSON;
* ``POST /courier/TRACKING/TOKEN/updates``  an update, JSON ``{"update_id", "status", "text"}`` or the
  page's form; 201 when recorded, 200 for a re-post of the same ``update_id``.

A refused link is 403 with a one-line reason (plain text on the page, JSON on the API); a bad
update 422, too long 413, too many 429; a body that is not JSON (nested too deeply included) 400.
The store's work runs in Starlette's thread pool, never on the event loop: one update waiting for
a busy store must not hold up every other courier's page. A busy store is 503 with ``Retry-After``
(as the webhook answers), so the courier's tool tries again. The page is rendered by Jinja2 with
autoescaping, so whatever a courier or a tracking feed wrote is shown as text, never as HTML, and
it is sent with a strict Content-Security-Policy, no caching and no referrer (the URL is the key).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs

from jinja2 import Environment, StrictUndefined

from doorstep.config import Config
from doorstep.dialect import OPERATIONAL_ERRORS, is_busy
from doorstep.models import utcnow
from doorstep.store import Store
from doorstep.inbound_app import BodyTimeout, BodyTooLarge, InboundLimits, InboundServer, json_error, read_body
from responders.courier_link import (
    UPDATE_STATUSES,
    LinkRefused,
    UpdateRejected,
    courier_facts,
    post_update,
    read_link,
    settings_of,
)

log = logging.getLogger("doorstep.courier_page")
T = TypeVar("T")

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
#: How long a courier's tool is asked to wait when the store was busy (as the webhook asks).
RETRY_AFTER_S = 5

PAGE = Environment(autoescape=True, undefined=StrictUndefined).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Shipment {{ f.tracking_number }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:46rem;margin:1.5rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #ddd}
.ask{background:#fff6e0;padding:.5rem .75rem;border-left:4px solid #e0a000}textarea{width:100%}
.done{background:#e8f6e8;padding:.5rem .75rem}</style></head><body>
<h1>Shipment {{ f.tracking_number }}</h1>
{% if posted %}<p class="done">Thank you: your update is on the case.</p>{% endif %}
<table>
<tr><th>Courier</th><td>{{ f.courier or "" }}{% if f.service %} ({{ f.service }}){% endif %}</td></tr>
<tr><th>Status</th><td>{{ (f.status or "unknown").replace("_", " ") }}</td></tr>
<tr><th>Delivery town</th><td>{{ f.delivery_town or "not known" }}</td></tr>
<tr><th>Promised by</th><td>{{ f.promised_date or "not given" }}</td></tr>
<tr><th>This link works until</th><td>{{ expires }}</td></tr>
</table>
{% if f.ask %}<h2>What we ask</h2><p class="ask">{{ f.ask }}</p>{% endif %}
<h2>Tracking events</h2>
<table><tr><th>Time</th><th>Status</th><th>Where</th><th>Description</th></tr>
{% for e in f.timeline %}<tr><td>{{ e.time }}</td><td>{{ e.status.replace("_", " ") }}</td><td>{{ e.location or "" }}</td>
<td>{{ e.description or "" }}</td></tr>{% else %}<tr><td colspan="4">No events.</td></tr>{% endfor %}</table>
<h2>Your updates</h2>
{% for u in f.updates %}<p><b>{{ u.received_at }}</b> {{ u.status.replace("_", " ") }}: {{ u.text }}</p>
{% else %}<p>None yet.</p>{% endfor %}
<h2>Post an update</h2>
<form method="post" action="{{ action }}">
<input type="hidden" name="update_id" value="{{ update_id }}">
<label>What happened <select name="status">{% for s in statuses %}<option value="{{ s }}">{{ s.replace("_", " ") }}</option>
{% endfor %}</select></label>
<p><textarea name="text" rows="3" maxlength="{{ max_chars }}" placeholder="e.g. redelivery booked for Friday"></textarea></p>
<button type="submit">Send update</button></form>
</body></html>""")


class CourierPage:
    """The routes of the courier page over one store (shared across the server's threads)."""

    def __init__(self, store: Store, config: Config, clock: Callable[[], datetime] = utcnow):
        self.store = store if store.path == ":memory:" else store.share_across_threads()
        self.config = config
        self.clock = clock
        self.settings = settings_of(config)
        self.limits = InboundLimits.from_config(config)
        # An in-memory store is one connection: the pool's threads take turns on it (one transaction at a time).
        self._one_at_a_time = threading.Lock() if store.path == ":memory:" else None

    async def _in_thread(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` in Starlette's thread pool: store work never runs on the event loop, where one
        update waiting for a busy store would hold up every other courier's request."""
        from starlette.concurrency import run_in_threadpool

        def run() -> T:
            if self._one_at_a_time is None:
                return work(*args)
            with self._one_at_a_time:
                return work(*args)

        return await run_in_threadpool(run)

    def routes(self) -> list[Any]:
        from starlette.routing import Route

        return [
            Route("/courier/{tracking_number}/{token}", self.page, methods=["GET"]),
            Route("/courier/{tracking_number}/{token}/facts", self.facts, methods=["GET"]),
            Route("/courier/{tracking_number}/{token}/updates", self.post, methods=["POST"]),
        ]

    def _claims(self, request: Any) -> Any:
        return read_link(self.config, request.path_params["tracking_number"], request.path_params["token"],
                         self.clock())

    async def page(self, request: Any) -> Any:
        from starlette.responses import HTMLResponse, PlainTextResponse

        try:
            claims = self._claims(request)
            facts = await self._in_thread(courier_facts, self.store, self.config, claims)
        except LinkRefused as exc:
            self._refused(request, exc)
            return PlainTextResponse(f"{exc}\n", status_code=403, headers=HEADERS)
        except OPERATIONAL_ERRORS as exc:
            reason = self._store_trouble(exc, "show the page")
            return PlainTextResponse(f"{reason}\n", status_code=503,
                                     headers={**HEADERS, "Retry-After": str(RETRY_AFTER_S)})
        from responders.courier_link import expires_text

        html = PAGE.render(f=facts, expires=expires_text(claims.expires_at, self.config), statuses=list(UPDATE_STATUSES),
                           action=f"{request.url.path}/updates", update_id=uuid.uuid4().hex,
                           max_chars=self.settings.max_update_chars, posted=request.query_params.get("posted") == "1")
        return HTMLResponse(html, headers=HEADERS)

    async def facts(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        try:
            claims = self._claims(request)
            facts = await self._in_thread(courier_facts, self.store, self.config, claims)
        except LinkRefused as exc:
            self._refused(request, exc)
            return json_error(403, str(exc), headers=HEADERS)
        except OPERATIONAL_ERRORS as exc:
            return self._busy(exc, "read the facts")
        return JSONResponse(facts, headers=HEADERS)

    async def post(self, request: Any) -> Any:
        from starlette.responses import JSONResponse, RedirectResponse

        try:
            claims = self._claims(request)
        except LinkRefused as exc:
            self._refused(request, exc)
            return json_error(403, str(exc), headers=HEADERS)
        try:
            body = await read_body(request, self.limits.read_timeout_s, self.settings.max_body_bytes)
        except BodyTooLarge:
            return json_error(413, f"body over {self.settings.max_body_bytes} bytes "
                                   "([responders.courier_link] max_body_bytes)", close=True)
        except BodyTimeout:
            return json_error(408, "the body did not arrive in time", close=True)
        form = "application/x-www-form-urlencoded" in request.headers.get("content-type", "")
        try:
            if form:
                fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
            else:
                fields = json.loads(body or b"null")
                if not isinstance(fields, dict):
                    raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deeply
            return json_error(400, 'send JSON {"update_id": ..., "status": ..., "text": ...} or the page\'s form')
        try:
            update, repeat = await self._in_thread(post_update, self.store, self.config, claims,
                                                   fields.get("update_id"), fields.get("text", ""),
                                                   fields.get("status"), self.clock())
        except LinkRefused as exc:
            return json_error(403, str(exc), headers=HEADERS)
        except UpdateRejected as exc:
            return json_error(exc.status, str(exc))
        except OPERATIONAL_ERRORS as exc:
            return self._busy(exc, "record an update")
        if form:
            return RedirectResponse(f"{request.url.path.removesuffix('/updates')}?posted=1", status_code=303,
                                    headers=HEADERS)
        return JSONResponse({"update": update, "duplicate": repeat}, status_code=200 if repeat else 201, headers=HEADERS)

    def _store_trouble(self, exc: BaseException, doing: str) -> str:
        """Log why the store could not ``doing`` now; the one-line reason for the courier."""
        if is_busy(exc):
            log.warning("courier page: store busy, could not %s (%s); asked to retry", doing, exc)
            return "the store is busy; retry later"
        # Not a lock (a dropped PostgreSQL connection, a full disk): still worth a retry, but logged whole.
        log.exception("courier page: store unavailable, could not %s", doing)
        return "the store is unavailable; retry later"

    def _busy(self, exc: BaseException, doing: str) -> Any:
        """JSON 503 with Retry-After, as the webhook answers a busy store (the courier's tool retries)."""
        return json_error(503, self._store_trouble(exc, doing),
                          headers={**HEADERS, "Retry-After": str(RETRY_AFTER_S)})

    def _refused(self, request: Any, exc: Exception) -> None:
        # The reason, never the token: the URL is the courier's key.
        log.info("courier link refused for %s: %s", request.path_params.get("tracking_number"), exc)


class CourierPageServer:
    """uvicorn serving :class:`CourierPage` in a daemon thread (``port=0`` picks a free port)."""

    def __init__(self, store: Store, config: Config, *, host: str | None = None, port: int | None = None,
                 clock: Callable[[], datetime] = utcnow):
        self.page = CourierPage(store, config, clock)
        settings = settings_of(config)
        self._server = InboundServer(self.page.routes(), self.page.limits, host=host or settings.host,
                                     port=settings.port if port is None else port)

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> CourierPageServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> CourierPageServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
