"""The one HTTP application for everything that pushes to Doorstep (the listeners' webhook with the
SMS and e-mail reply endpoints; the responders' courier page): Starlette on uvicorn.

It is in the core because both listeners/ and responders/ serve HTTP with it, and either may be
left out of a deployment: the courier page (``doorstep courier-page``) runs without the listeners.

Why not a hand-written server: the first one (``http.server``) read ``Content-Length: -1`` as
"read until the client closes", kept 150 stalled half-sent bodies forever and answered
unknown methods with an HTML page. Here the libraries do that work and ``[limits]`` in
doorstep.toml names every bound:

* body size: a ``Content-Length`` over ``inbound_body_max_bytes`` is answered 413 before any
  byte is read, and Starlette's ``max_body_size`` counts bytes as they stream in; h11 refuses a
  malformed or negative ``Content-Length`` with 400;
* time: a client has ``inbound_read_timeout_s`` for its headers and again for its whole body
  (408, connection closed); idle keep-alive connections close after ``inbound_keep_alive_s``;
* concurrency: at most ``inbound_max_connections`` at once (uvicorn answers 503 beyond);
* every error is a small JSON body (404, 405 with ``Allow``, 408, 413), never HTML.

An endpoint is a Starlette :class:`~starlette.routing.Route`; :class:`InboundServer` runs the
app in a background thread (the worker and ``doorstep listen`` keep their own main loop).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from doorstep.config import Config

log = logging.getLogger("doorstep.inbound")

#: Longest request line plus headers, in bytes (h11's incomplete-event limit).
MAX_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class InboundLimits:
    """The ``[limits]`` that bound inbound HTTP (see :class:`doorstep.config.Limits`)."""

    body_max_bytes: int = 1_000_000
    read_timeout_s: float = 10.0
    keep_alive_s: int = 5
    max_connections: int = 200

    @classmethod
    def from_config(cls, config: Config) -> InboundLimits:
        limits = getattr(config, "limits", None)
        if limits is None:
            return cls()
        return cls(body_max_bytes=limits.inbound_body_max_bytes, read_timeout_s=limits.inbound_read_timeout_s,
                   keep_alive_s=limits.inbound_keep_alive_s, max_connections=limits.inbound_max_connections)


class BodyTimeout(Exception):
    """The client did not finish sending its body within the read deadline."""


class BodyTooLarge(Exception):
    """The body passed an endpoint's own (lower) size limit while streaming in."""


async def read_body(request: Any, timeout_s: float, max_bytes: int | None = None) -> bytes:
    """The whole request body, or :class:`BodyTimeout` after ``timeout_s``.

    The application's limit is enforced underneath, chunk by chunk (Starlette's body-limit
    middleware); ``max_bytes`` is an endpoint's own lower limit, counted the same way, so no
    more than the limit is ever held.
    """
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                total += len(chunk)
                if max_bytes is not None and total > max_bytes:
                    raise BodyTooLarge
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout from None
    return b"".join(chunks)


def declared_length(headers: Any) -> int | None:
    """The request's ``Content-Length`` (h11 has already refused one that is not a number)."""
    value = headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


class _DeclaredLengthGuard:
    """ASGI middleware: a body whose ``Content-Length`` passes the limit gets a JSON 413 at once.

    Starlette's limiter would answer it too (in plain text); answering here, before anything
    reads, keeps every error JSON and names the setting. Bodies that grow past the limit while
    streaming are still stopped by Starlette's limiter underneath.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            from starlette.datastructures import Headers

            length = declared_length(Headers(scope=scope))
            if length is not None and length > self.max_bytes:
                response = json_error(413, f"body of {length} bytes is over the limit of {self.max_bytes} bytes "
                                           "([limits] inbound_body_max_bytes)", close=True)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def json_error(status: int, message: str, *, close: bool = False, headers: dict[str, str] | None = None) -> Any:
    """A JSON error answer; ``close`` ends the connection (the body may be partly unread)."""
    from starlette.responses import JSONResponse

    extra = dict(headers or {})
    if close:
        extra["Connection"] = "close"
    return JSONResponse({"error": message}, status_code=status, headers=extra)


def inbound_app(routes: Sequence[Any], limits: InboundLimits) -> Any:
    """The Starlette application serving ``routes`` within ``limits``."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    async def http_error(request: Any, exc: Exception) -> Any:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            return json_error(405, f"method {request.method} not allowed here; use {allow or 'another method'}",
                              close=True, headers={"Allow": allow} if allow else None)
        if exc.status_code == 404:
            paths = sorted({r.path for r in routes if isinstance(r, Route)})
            return json_error(404, f"no such path {request.url.path}; known paths: {', '.join(paths)}")
        if exc.status_code == 413:
            return json_error(413, f"body too large: at most {limits.body_max_bytes} bytes "
                                   "([limits] inbound_body_max_bytes)", close=True)
        return json_error(exc.status_code, str(exc.detail), close=exc.status_code >= 400)

    async def health(request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok"})

    from starlette.middleware import Middleware
    from starlette.middleware.body_limit import RequestBodyLimitMiddleware

    all_routes = [*routes, Route("/health", health, methods=["GET"]), Route("/healthz", health, methods=["GET"])]
    # The guard first (JSON 413 for a declared oversize body), then Starlette's streaming limiter
    # (as user middleware, inside the guard, rather than ``Starlette(max_body_size=...)``,
    # which would sit outside it and answer in plain text).
    middleware = [Middleware(_DeclaredLengthGuard, max_bytes=limits.body_max_bytes),
                  Middleware(RequestBodyLimitMiddleware, max_body_size=limits.body_max_bytes)]
    return Starlette(routes=all_routes, exception_handlers={HTTPException: http_error}, middleware=middleware)


def _protocol_with_header_deadline(timeout_s: float) -> type:
    """uvicorn's h11 protocol, plus a deadline for the request line and headers.

    uvicorn times out idle keep-alive connections but not a client that sends half a header
    block and stops (or connects and says nothing): that would hold a connection forever. The
    timer closes such a connection; once a request's headers are complete the app's body
    deadline (:func:`read_body`) takes over.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadlineH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_deadline()  # a client that connects and says nothing

        def data_received(self, data: bytes) -> None:
            # The first bytes of a header block start its deadline; later bytes do not move it,
            # so a client trickling one byte at a time cannot keep a connection for ever.
            starts_request = self.conn.their_state is h11.IDLE and not self.conn.trailing_data[0]
            if starts_request:
                self._arm_header_deadline(restart=True)
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

        def _arm_header_deadline(self, restart: bool = False) -> None:
            if self._header_timer is not None and restart:
                self._header_timer.cancel()
                self._header_timer = None
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(timeout_s, self._header_deadline_passed)

        def _header_deadline_passed(self) -> None:
            self._header_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return  # headers complete: the app's body deadline is in charge
            if self.cycle is not None and not self.cycle.response_complete:
                return
            half_headers = bool(self.conn.trailing_data[0])
            if half_headers or self.cycle is None:  # (an idle keep-alive connection is uvicorn's to close)
                self.transport.close()

    return HeaderDeadlineH11Protocol


class InboundServer:
    """uvicorn serving :func:`inbound_app` in a daemon thread; ``port=0`` picks a free port."""

    def __init__(self, routes: Sequence[Any], limits: InboundLimits, *, host: str = "127.0.0.1", port: int = 0):
        self.limits = limits
        self.host = host
        self.port = port
        self.app = inbound_app(routes, limits)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        """Connections the server holds now (tests watch stalled clients being let go)."""
        return len(self._server.server_state.connections) if self._server is not None else 0

    def start(self) -> InboundServer:
        import uvicorn

        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, http=_protocol_with_header_deadline(self.limits.read_timeout_s),
            lifespan="off", log_config=None, access_log=False, server_header=False,
            timeout_keep_alive=self.limits.keep_alive_s, limit_concurrency=self.limits.max_connections,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES, timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            try:
                asyncio.run(server.serve())
            except BaseException as exc:  # noqa: BLE001 - reported to start() below
                failure.append(exc)
            finally:
                started.set()

        self._server = server
        self._thread = threading.Thread(target=serve, name="doorstep-inbound", daemon=True)
        self._thread.start()
        while not server.started and not started.is_set():
            started.wait(0.02)
        if not server.started:
            detail = f"{type(failure[0]).__name__}: {failure[0]}" if failure else "see the log"
            raise OSError(f"inbound HTTP server could not listen on {self.host}:{self.port} ({detail})")
        sockets = [s for srv in server.servers for s in srv.sockets]
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("inbound endpoints listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._server = None
            self._thread = None

    def __enter__(self) -> InboundServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
