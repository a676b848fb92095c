"""The Bluesky XRPC calls the sender makes, on a local RecordingServer (the atproto client talks to it unchanged)."""

from __future__ import annotations

import json
from typing import Any

from standins.recording import RecordingServer


class BlueskyStandIn:
    """The XRPC calls of the Bluesky sender: log in, read a post, create a record, our author feed."""

    DID = "did:plc:larkspurhelp000000000000"
    CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"

    def __init__(self) -> None:
        import base64

        def b64(data: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

        self.jwt = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'sub': self.DID, 'exp': 4102444800, 'iat': 1700000000, 'scope': 'com.atproto.access'})}.c2ln"
        self.posts: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.server = RecordingServer({"/xrpc/": self.xrpc})

    def add(self, uri: str, text: str, author: str, reply: dict | None = None) -> None:
        record = {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-11-16T10:00:00.000Z"}
        if reply:
            record["reply"] = reply
        self.posts[uri] = {"uri": uri, "cid": self.CID, "author": {"did": author, "handle": author.split(":")[-1] + ".bsky.social"},
                           "record": record, "indexedAt": "2026-11-16T10:00:00.000Z"}

    def xrpc(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        from urllib.parse import parse_qs, urlsplit

        name = urlsplit(path).path.removeprefix("/xrpc/")
        query = parse_qs(urlsplit(path).query)
        if name == "com.atproto.server.createSession":
            return 200, {"accessJwt": self.jwt, "refreshJwt": self.jwt, "handle": "larkspurhelp.bsky.social", "did": self.DID}
        if name == "app.bsky.feed.getPosts":
            return 200, {"posts": [self.posts[u] for u in query.get("uris", []) if u in self.posts]}
        if name == "com.atproto.repo.createRecord":
            data = json.loads(body)
            uri = f"at://{self.DID}/app.bsky.feed.post/3k{len(self.created):011d}"
            self.created.append(data)
            self.add(uri, data["record"]["text"], self.DID, data["record"].get("reply"))
            return 200, {"uri": uri, "cid": self.CID}
        if name == "app.bsky.feed.getAuthorFeed":
            mine = [{"post": p} for p in reversed(list(self.posts.values())) if p["author"]["did"] == self.DID]
            return 200, {"feed": mine}
        return 404, {"error": "MethodNotImplemented", "message": name}
