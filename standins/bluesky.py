"""The Bluesky XRPC calls the sender makes, on a local RecordingServer (the atproto client talks to it unchanged).

Tests build it in-process; ``doorstep demo`` runs it as a child process (``python -m standins.bluesky``)
with the brand accounts' app passwords and the demo's Bluesky posts, so a reply from the case page
reaches 127.0.0.1, never bsky.social.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from collections.abc import Iterable
from typing import Any

from standins.recording import RecordingServer


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


class BlueskyStandIn:
    """The XRPC calls of the Bluesky sender: log in, read a post, create a record, an author feed.

    ``accounts``: app password -> handle; logging in with another pair gets the real 401
    (``AuthenticationRequired``). ``None``: any login is larkspurhelp.bsky.social (:data:`DID`).
    ``posts``: posts the network already has (``{"uri", "text", "handle", "reply"?: {"root", "parent"}}``,
    the author's DID is the URI's); ``getPosts`` leaves out any other URI, as the real AppView does
    for a post that does not exist, so a reply to it is refused by the sender.
    """

    DID = "did:plc:larkspurhelp000000000000"
    CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"

    def __init__(self, accounts: dict[str, str] | None = None, posts: Iterable[dict[str, Any]] = (),
                 port: int = 0) -> None:
        self.passwords = None if accounts is None else {h.lower(): p for p, h in accounts.items()}
        self.posts: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        #: access token -> (did, handle) of the account it was issued to.
        self.sessions: dict[str, tuple[str, str]] = {}
        self.dids: dict[str, str] = {}  # handle -> DID
        for post in posts:
            did = post["uri"].split("/")[2]
            self.dids.setdefault(post["handle"].lower(), did)
            self.add(post["uri"], post.get("text", ""), did, post.get("reply"), handle=post["handle"],
                     created_at=post.get("created_at"))
        #: Chat (``chat.bsky.convo.*``, the private replies): convo id -> {"members": [did], "messages": [...]}.
        self.convos: dict[str, dict[str, Any]] = {}
        self.jwt = self._token(self.DID)
        self.server = RecordingServer({"/xrpc/": self.xrpc}, port=port)

    def _token(self, did: str) -> str:
        return (f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}."
                f"{_b64({'sub': did, 'exp': 4102444800, 'iat': 1700000000, 'scope': 'com.atproto.access'})}.c2ln")

    def _did_of(self, handle: str) -> str:
        key = handle.lower()
        if key not in self.dids:
            self.dids[key] = "did:plc:" + hashlib.sha256(key.encode()).hexdigest()[:24]
        return self.dids[key]

    def _ref(self, uri: str) -> dict[str, str]:
        return {"uri": uri, "cid": self.CID}

    def add(self, uri: str, text: str, author: str, reply: dict | None = None, *, handle: str | None = None,
            created_at: str | None = None) -> None:
        record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text,
                                  "createdAt": created_at or "2026-11-16T10:00:00.000Z"}
        if reply:
            # Refs as URIs (a feed file) or as strong refs (what a client sent).
            record["reply"] = {k: (self._ref(v) if isinstance(v, str) else v) for k, v in reply.items()}
        self.posts[uri] = {"uri": uri, "cid": self.CID,
                           "author": {"did": author, "handle": handle or author.split(":")[-1] + ".bsky.social"},
                           "record": record, "indexedAt": record["createdAt"]}

    def _session(self, headers: dict[str, str]) -> tuple[str, str] | None:
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        if self.passwords is None:
            return self.DID, "larkspurhelp.bsky.social"
        return self.sessions.get(token)

    def xrpc(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        from urllib.parse import parse_qs, urlsplit

        name = urlsplit(path).path.removeprefix("/xrpc/")
        query = parse_qs(urlsplit(path).query)
        if name == "com.atproto.server.createSession":
            if self.passwords is None:
                return 200, {"accessJwt": self.jwt, "refreshJwt": self.jwt, "handle": "larkspurhelp.bsky.social",
                             "did": self.DID}
            login = json.loads(body or b"{}")
            handle = str(login.get("identifier", "")).lower()
            if not handle or self.passwords.get(handle) != login.get("password"):
                return 401, {"error": "AuthenticationRequired", "message": "Invalid identifier or password"}
            did = self._did_of(handle)
            token = self._token(did)
            self.sessions[token] = (did, handle)
            return 200, {"accessJwt": token, "refreshJwt": token, "handle": handle, "did": did}
        if name == "app.bsky.feed.getPosts":
            return 200, {"posts": [self.posts[u] for u in query.get("uris", []) if u in self.posts]}
        session = self._session(headers)
        if name == "com.atproto.repo.createRecord":
            if session is None:
                return 401, {"error": "AuthenticationRequired", "message": "Authentication Required"}
            did, handle = session
            data = json.loads(body)
            if data.get("repo") not in (did, handle):
                return 400, {"error": "InvalidRequest", "message": "Input/repo must be the authorized account"}
            uri = f"at://{did}/app.bsky.feed.post/3k{len(self.created):011d}"
            self.created.append({**data, "_account": handle})
            self.add(uri, data["record"]["text"], did, data["record"].get("reply"), handle=handle)
            if self.passwords is not None:  # the demo's child: say what arrived
                parent = (data["record"].get("reply") or {}).get("parent", {}).get("uri")
                print(f"bluesky stand-in: @{handle} replied to {parent}: {data['record']['text'][:60]!r}",
                      file=sys.stderr, flush=True)
            return 200, {"uri": uri, "cid": self.CID}
        if name == "app.bsky.feed.getAuthorFeed":
            actor = (query.get("actor") or [""])[0].lower()
            mine = [{"post": p} for p in reversed(list(self.posts.values()))
                    if actor in (p["author"]["did"].lower(), p["author"]["handle"].lower())]
            return 200, {"feed": mine}
        if name == "com.atproto.identity.resolveHandle":
            handle = (query.get("handle") or [""])[0].lower()
            known = self.dids.get(handle) or next((p["author"]["did"] for p in self.posts.values()
                                                   if p["author"]["handle"].lower() == handle), None)
            return (200, {"did": known}) if known else (400, {"error": "InvalidRequest", "message": "Unable to resolve handle"})
        if name.startswith("chat.bsky.convo."):
            return self._chat(name.removeprefix("chat.bsky.convo."), query, body, session)
        return 404, {"error": "MethodNotImplemented", "message": name}

    def _handle_of(self, did: str) -> str:
        mine = next((h for h, d in self.dids.items() if d == did), None)
        return mine or next((p["author"]["handle"] for p in self.posts.values() if p["author"]["did"] == did),
                            "handle.invalid")

    def _chat(self, name: str, query: dict[str, list[str]], body: bytes, session: tuple[str, str] | None) -> tuple[int, Any]:
        """The chat calls of the private sender: the convo with a member, send a message, read them."""
        if session is None:
            return 401, {"error": "AuthenticationRequired", "message": "Authentication Required"}
        did, handle = session
        if name == "getConvoForMembers":
            members = sorted({did, *query.get("members", [])})
            convo_id = hashlib.sha256(" ".join(members).encode()).hexdigest()[:16]
            convo = self.convos.setdefault(convo_id, {"members": members, "messages": []})
            return 200, {"convo": self._convo_view(convo_id, convo)}
        data = json.loads(body) if body else {}
        convo_id = data.get("convoId") or (query.get("convoId") or [""])[0]
        convo = self.convos.get(convo_id)
        if convo is None or did not in convo["members"]:
            return 400, {"error": "InvalidConvo", "message": "Convo not found"}
        if name == "sendMessage":
            message = {"id": f"msg{sum(len(c['messages']) for c in self.convos.values()) + 1:09d}", "rev": "1",
                       "text": data["message"]["text"], "sender": {"did": did},
                       "sentAt": "2026-11-16T10:00:00.000Z"}
            convo["messages"].append(message)
            if self.passwords is not None:  # the demo's child: say what arrived
                other = ", ".join(self._handle_of(m) for m in convo["members"] if m != did)
                print(f"bluesky stand-in: @{handle} sent a chat message to {other}: {message['text'][:60]!r}",
                      file=sys.stderr, flush=True)
            return 200, message
        if name == "getMessages":
            return 200, {"messages": list(reversed(convo["messages"]))}
        return 404, {"error": "MethodNotImplemented", "message": f"chat.bsky.convo.{name}"}

    def _convo_view(self, convo_id: str, convo: dict[str, Any]) -> dict[str, Any]:
        return {"id": convo_id, "rev": str(len(convo["messages"]) + 1), "muted": False, "unreadCount": 0,
                "members": [{"did": m, "handle": self._handle_of(m)} for m in convo["members"]]}


if __name__ == "__main__":
    from standins.mastodon import serve

    sys.exit(serve(name="Bluesky", make=lambda accounts, posts, port: BlueskyStandIn(accounts, posts, port)))
