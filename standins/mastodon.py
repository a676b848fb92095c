"""The Mastodon API as the sender uses it, on a local RecordingServer (Mastodon.py talks to it unchanged)."""

from __future__ import annotations

import json
from typing import Any

from standins.recording import RecordingServer


class MastodonStandIn:
    """The three Mastodon endpoints the sender uses: post a status, who am I, my statuses."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.idempotency_keys: list[str] = []
        self.server = RecordingServer({"/api/v1/statuses": self.post, "/api/v1/accounts/": self.accounts})

    def post(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        from urllib.parse import parse_qs

        form = json.loads(body) if body.startswith(b"{") else {k: v[0] for k, v in parse_qs(body.decode()).items()}
        self.idempotency_keys.append(headers.get("Idempotency-Key", ""))
        status = {"id": str(110000000000000000 + len(self.statuses) + 1), "content": f"<p>{form['status']}</p>",
                  "in_reply_to_id": form.get("in_reply_to_id"), "created_at": "2026-11-16T10:00:00.000Z",
                  "account": {"id": "42", "username": "LarkspurHelp", "acct": "LarkspurHelp"}, "visibility": "public"}
        self.statuses.append(status)
        return 200, status

    def accounts(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if path.startswith("/api/v1/accounts/verify_credentials"):
            return 200, {"id": "42", "username": "LarkspurHelp", "acct": "LarkspurHelp"}
        return 200, list(reversed(self.statuses))
