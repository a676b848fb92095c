"""The Mastodon API as the sender uses it, on a local RecordingServer (Mastodon.py talks to it unchanged).

Tests build it in-process; ``doorstep demo`` runs it as a child process (``python -m standins.mastodon``)
with the brand accounts' access tokens and the demo's Mastodon posts, so a reply from the case
page reaches 127.0.0.1, never a real instance.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from standins.recording import RecordingServer

#: The account every token is when no accounts are given (the single-account tests).
DEFAULT_ACCOUNT = "LarkspurHelp"


class MastodonStandIn:
    """The Mastodon endpoints the sender uses: post a status, who am I, my statuses (and read one status).

    ``accounts``: access token -> username; a request with another token gets the 401 a real
    instance gives. ``None``: any token is @LarkspurHelp. ``posts``: statuses the instance already
    has (``{"id", "text", "username", "in_reply_to_id"?, "created_at"?}``); when given, a reply to
    a status the instance does not have gets the real 404 ("Record not found").
    """

    def __init__(self, accounts: dict[str, str] | None = None, posts: Iterable[dict[str, Any]] | None = None,
                 port: int = 0) -> None:
        self.tokens = None if accounts is None else dict(accounts)
        names = [DEFAULT_ACCOUNT] if accounts is None else list(dict.fromkeys(accounts.values()))
        self.accounts = {name.lower(): {"id": str(42 + i), "username": name, "acct": name} for i, name in enumerate(names)}
        self.statuses: list[dict[str, Any]] = []
        self.idempotency_keys: list[str] = []
        self.known: dict[str, dict[str, Any]] | None = None if posts is None else {}
        for post in posts or ():
            self._remember(post)
        self.server = RecordingServer({"/api/v1/statuses": self.route_statuses, "/api/v1/accounts/": self.accounts_route},
                                      port=port)

    def _account_named(self, username: str) -> dict[str, Any]:
        key = username.lower()
        if key not in self.accounts:
            self.accounts[key] = {"id": str(42 + len(self.accounts)), "username": username, "acct": username}
        return self.accounts[key]

    def _remember(self, post: dict[str, Any]) -> None:
        assert self.known is not None
        self.known[str(post["id"])] = {
            "id": str(post["id"]), "content": f"<p>{post.get('text', '')}</p>",
            "in_reply_to_id": post.get("in_reply_to_id"), "created_at": post.get("created_at", "2026-11-16T10:00:00.000Z"),
            "account": self._account_named(str(post.get("username") or "someone")), "visibility": "public",
        }

    def _caller(self, headers: dict[str, str]) -> dict[str, Any] | None:
        """The account the request's token belongs to (None: not a token of this instance)."""
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        if self.tokens is None:
            return self.accounts[DEFAULT_ACCOUNT.lower()]
        name = self.tokens.get(token)
        return self.accounts[name.lower()] if name else None

    def route_statuses(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if method == "GET":
            status = (self.known or {}).get(path.split("?")[0].rstrip("/").rsplit("/", 1)[-1])
            mine = next((s for s in self.statuses if s["id"] == path.split("?")[0].rsplit("/", 1)[-1]), None)
            return (200, status or mine) if (status or mine) else (404, {"error": "Record not found"})
        return self.post(method, path, headers, body)

    def post(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        from urllib.parse import parse_qs

        account = self._caller(headers)
        if account is None:
            return 401, {"error": "The access token is invalid"}
        form = json.loads(body) if body.startswith(b"{") else {k: v[0] for k, v in parse_qs(body.decode()).items()}
        reply_to = form.get("in_reply_to_id")
        if reply_to and self.known is not None and str(reply_to) not in self.known and \
                all(s["id"] != str(reply_to) for s in self.statuses):
            return 404, {"error": "Record not found"}
        self.idempotency_keys.append(headers.get("Idempotency-Key", ""))
        # Stamped with the time it was created, and listing whom it mentions, as an instance does (the
        # outbox's check before a re-send looks at both).
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        mentions = [{"acct": acct, "username": acct.split("@")[0]}
                    for acct in dict.fromkeys(re.findall(r"(?<![\w@])@([\w.-]+(?:@[\w-]+(?:\.[\w-]+)+)?)", form["status"]))]
        status = {"id": str(110000000000000000 + len(self.statuses) + 1), "content": f"<p>{form['status']}</p>",
                  "in_reply_to_id": reply_to, "created_at": now, "mentions": mentions,
                  "account": dict(account), "visibility": form.get("visibility") or "public"}
        self.statuses.append(status)
        if sys.stderr and self.known is not None:  # the demo's child: say what arrived
            to = f" in reply to {reply_to}" if reply_to else ""
            print(f"mastodon stand-in: @{account['acct']} posted{to}: {form['status'][:60]!r}", file=sys.stderr, flush=True)
        return 200, status

    def accounts_route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        account = self._caller(headers)
        if path.startswith("/api/v1/accounts/verify_credentials"):
            return (200, dict(account)) if account else (401, {"error": "The access token is invalid"})
        wanted = path.split("?")[0].removeprefix("/api/v1/accounts/").split("/")[0]
        return 200, [s for s in reversed(self.statuses) if s["account"]["id"] == wanted]


def read_posts(path: Path) -> list[dict[str, Any]]:
    """The statuses of a feed file (JSON lines); a missing file is an instance with no posts yet."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def serve(argv: list[str] | None = None, name: str = "Mastodon", make: Any = None) -> int:
    """Run a stand-in on 127.0.0.1 until SIGTERM/Ctrl-C (``python -m standins.mastodon --port ...``)."""
    parser = argparse.ArgumentParser(description=f"A local {name} API stand-in (127.0.0.1 only).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--feed", type=Path, help="JSON lines: the posts the service already has")
    parser.add_argument("--account", action="append", default=[], metavar="SECRET=HANDLE",
                        help="an account: its access token (Bluesky: app password) and its handle")
    args = parser.parse_args(argv)
    accounts: dict[str, str] = {}
    for item in args.account:
        secret, sep, handle = item.partition("=")
        if not sep or not secret or not handle:
            parser.error(f"--account {item!r}: expected SECRET=HANDLE")
        accounts[secret] = handle
    posts = read_posts(args.feed) if args.feed else []
    stand_in = (make or (lambda a, p, port: MastodonStandIn(a, p, port)))(accounts, posts, args.port)

    # Ctrl-C reaches the whole `make demo` process group and the demo then sends SIGTERM: either
    # asks the stand-in to stop; neither may interrupt its shutdown (a KeyboardInterrupt raised
    # there printed a traceback when the demo was stopped).
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # started in the background: Ctrl-C is not ours
        signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))
    with stand_in.server:
        print(f"{name} stand-in on {stand_in.server.url} ({len(posts)} posts, accounts: "
              f"{', '.join(sorted(accounts.values())) or '-'})", file=sys.stderr, flush=True)
        while not stopping:
            time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(serve())
