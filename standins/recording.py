"""A small HTTP stand-in on 127.0.0.1: answers given routes, records what it processed, misbehaves on demand.

The stand-ins for Slack, webhooks, Mastodon, Bluesky and Twilio are built on it; tests assert on
what *arrived* here, which is what a real service would have received.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RecordingServer:
    """An HTTP server on 127.0.0.1 that records every request it *processed* and can misbehave.

    ``fail(kind, count)``: the next requests get ``"500"``/``"503"``/``"429"`` (recorded as failed,
    not as arrived), ``"reset"`` (connection dropped before any processing) or ``"slow"`` (processed,
    answered after 1 s).
    ``routes``: path prefix -> function(method, path, headers, body) -> (status, json-able body).
    ``port``: 0 (tests) picks a free one; the demo gives its fixed, settable ports.
    """

    def __init__(self, routes: dict[str, Callable[..., tuple[int, Any]]] | None = None, port: int = 0):
        self.routes = routes or {}
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        self._faults: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server._lock:
                    server.attempts += 1
                    fault = server._faults.pop(0) if server._faults else None
                if fault == "reset":
                    self.close_connection = True
                    import struct

                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    return
                if fault in ("500", "503", "429"):
                    self._reply(int(fault), {"error": "injected"})
                    return
                record = {"method": method, "path": self.path, "headers": dict(self.headers), "body": body}
                route = next((fn for prefix, fn in server.routes.items() if self.path.startswith(prefix)), None)
                status, payload = route(method, self.path, dict(self.headers), body) if route else (200, "ok")
                if status < 300:
                    with server._lock:
                        server.received.append(record)
                if fault == "slow":  # processed, but the answer comes after the client gave up
                    time.sleep(1.0)
                self._reply(status, payload)

            def _reply(self, status: int, payload: Any) -> None:
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def fail(self, kind: str, count: int = 1) -> None:
        with self._lock:
            self._faults += [kind] * count

    def json_bodies(self) -> list[Any]:
        return [json.loads(r["body"]) for r in self.received]

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

