"""The Bluesky listener with the real atproto client against a local XRPC server."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from doorstep.config import Config, parse_config
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.bluesky import BlueskyListener
from listeners.health import Backoff, listener_health

HANDLE = "shophelp.bsky.social"
PASSWORD = "app-password-SECRET"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
B32 = "abcdefghijklmnopqrstuvwxyz234567"


def _b32(seed: str, n: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest() * 4
    return "".join(B32[b % 32] for b in digest[:n])


def did(handle: str) -> str:
    return "did:plc:" + _b32(handle, 24)


def _jwt(sub: str) -> str:
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    now = int(time.time())
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': sub, 'iat': now, 'exp': now + 7200, 'scope': 'com.atproto.appPass'})}.c2ln"


class FakeBluesky:
    """A PDS/AppView with createSession, searchPosts (cursor, since) and listNotifications."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []  # newest last
        self.notifications: list[dict[str, Any]] = []
        self.faults: list[str] = []
        #: Faults for every request whose path starts with the key (a permission missing on one endpoint).
        self.path_faults: dict[str, str] = {}
        self.requests: list[str] = []
        self.server: ThreadingHTTPServer | None = None
        self._n = 0

    def post(self, text: str, handle: str, *, reply_to: str | None = None, root: str | None = None,
             notify: str | None = "mention", display_name: str | None = None) -> str:
        self._n += 1
        author_did = did(handle)
        uri = f"at://{author_did}/app.bsky.feed.post/3l{_b32(str(self._n), 11)}"
        created = (T0 + timedelta(seconds=self._n)).isoformat().replace("+00:00", "Z")
        record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text, "createdAt": created, "langs": ["en"]}
        if reply_to:
            record["reply"] = {"root": {"uri": root or reply_to, "cid": "bafyrei" + _b32(root or reply_to, 52)},
                               "parent": {"uri": reply_to, "cid": "bafyrei" + _b32(reply_to, 52)}}
        view = {"uri": uri, "cid": "bafyrei" + _b32(uri, 52),
                "author": {"did": author_did, "handle": handle, "displayName": display_name or handle.split(".")[0]},
                "record": record, "indexedAt": created, "replyCount": 0, "repostCount": 0, "likeCount": 0,
                "quoteCount": 0, "labels": []}
        self.posts.append(view)
        if notify:
            self.notifications.append({"uri": uri, "cid": view["cid"], "author": view["author"], "reason": notify,
                                       "record": record, "isRead": False, "indexedAt": created, "labels": []})
        return uri

    def __enter__(self) -> FakeBluesky:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:  # noqa: N802
                fake.requests.append(self.path)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path == "/xrpc/com.atproto.server.createSession":
                    if body.get("identifier") != HANDLE or body.get("password") != PASSWORD:
                        return self.send(401, {"error": "AuthenticationRequired", "message": "Invalid identifier or password"})
                    return self.send(200, {"accessJwt": _jwt(did(HANDLE)), "refreshJwt": _jwt(did(HANDLE)),
                                           "handle": HANDLE, "did": did(HANDLE), "active": True})
                self.send(404, {"error": "MethodNotImplemented", "message": self.path})

            def do_GET(self) -> None:  # noqa: N802
                fake.requests.append(self.path)
                url = urlsplit(self.path)
                q = parse_qs(url.query)
                if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                    return self.send(401, {"error": "AuthenticationRequired", "message": "Authentication Required"})
                fault = fake.faults.pop(0) if fake.faults else None
                fault = fault or next((f for p, f in fake.path_faults.items() if url.path.startswith(p)), None)
                if fault == "403":
                    return self.send(403, {"error": "Forbidden", "message": "Search is not available to this account"})
                if fault == "429-badreset":
                    return self.send(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                                     {"ratelimit-limit": "3000", "ratelimit-remaining": "0", "ratelimit-reset": "soon"})
                if fault == "429":
                    return self.send(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                                     {"ratelimit-limit": "3000", "ratelimit-remaining": "0",
                                      "ratelimit-reset": str(int(time.time()) + 2)})
                if fault == "500":
                    return self.send(500, {"error": "InternalServerError", "message": "Internal Server Error"})
                if fault == "expired":
                    return self.send(400, {"error": "ExpiredToken", "message": "Token has expired"})
                limit = int((q.get("limit") or ["25"])[0])
                if not (q.get("cursor") or ["0"])[0].isdigit():  # one it never handed out (or expired)
                    return self.send(400, {"error": "InvalidRequest", "message": "invalid cursor"})
                start = int((q.get("cursor") or ["0"])[0])
                if url.path == "/xrpc/app.bsky.feed.searchPosts":
                    word = q["q"][0].lower()
                    since = q.get("since", [None])[0]
                    items = [p for p in reversed(fake.posts) if word in p["record"]["text"].lower()
                             and (since is None or p["indexedAt"] >= since)]
                    key = "posts"
                elif url.path == "/xrpc/app.bsky.notification.listNotifications":
                    items, key = list(reversed(fake.notifications)), "notifications"
                else:
                    return self.send(404, {"error": "MethodNotImplemented", "message": url.path})
                page = items[start:start + limit]
                out: dict[str, Any] = {key: page}
                if start + limit < len(items):
                    out["cursor"] = str(start + limit)
                    if fault == "loop-cursor" and start:
                        out["cursor"] = str(start)  # the cursor it was asked with, again
                self.send(200, out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def config() -> Config:
    return parse_config({
        "brands": [{"name": "Shop", "handles": {"bluesky": HANDLE}}],
        "channels": {"bluesky": {"queries": ["parcel"], "limit": 5}},
    })


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BLUESKY_HANDLE", HANDLE)
    monkeypatch.setenv("BLUESKY_APP_PASSWORD", PASSWORD)
    with FakeBluesky() as server:
        monkeypatch.setenv("BLUESKY_BASE_URL", server.base_url)
        yield server


def make_listener(store: Store, config: Config, sleeps: list[float] | None = None, **backoff: Any) -> BlueskyListener:
    recorder = sleeps if sleeps is not None else []
    return BlueskyListener(store, config, Pipeline(store, config, classifier=None),
                           backoff=Backoff(sleep=recorder.append, **backoff))


def uris(store: Store) -> list[str]:
    return [r[0] for r in store.db.execute("select external_id from mentions where channel = 'bluesky'").fetchall()]


def test_search_and_notifications_with_threads(fake: FakeBluesky, store: Store, config: Config) -> None:
    root = fake.post("@shophelp.bsky.social my parcel is late", "jane.bsky.social", display_name="Jane")
    ours = fake.post("so sorry, parcel checked", HANDLE, reply_to=root, notify=None)
    follow = fake.post("thanks, still no parcel", "jane.bsky.social", reply_to=ours, root=root, notify="reply")
    fake.post("liked your post", "bob.bsky.social", notify="like")
    result = make_listener(store, config).poll_once()
    assert result.ok, result.errors
    stored = uris(store)
    assert len(stored) == len(set(stored)) == 3
    first = store.mention_by_external_id("bluesky", root)
    assert first is not None and (first.author_handle, first.author_name) == ("jane.bsky.social", "Jane")
    assert first.thread_id == root and first.url.startswith("https://bsky.app/profile/jane.bsky.social/post/")
    reply = store.mention_by_external_id("bluesky", ours)
    assert reply is not None and reply.outbound and reply.in_reply_to == root
    answer = store.mention_by_external_id("bluesky", follow)
    assert answer is not None and answer.thread_id == root and answer.in_reply_to == ours
    assert "/xrpc/com.atproto.server.createSession" in fake.requests


def test_cursor_pages_and_resumes_without_duplicates(fake: FakeBluesky, store: Store, config: Config) -> None:
    for i in range(12):
        fake.post(f"parcel {i} missing", f"user{i}.bsky.social")
    listener = make_listener(store, config)
    first = listener.poll_once()
    assert first.ok and len(uris(store)) == 12
    assert any("cursor=" in p for p in fake.requests if "searchPosts" in p)
    for i in range(7):
        fake.post(f"parcel late again {i}", f"late{i}.bsky.social")
    fake.requests.clear()
    second = listener.poll_once()
    assert second.ok and second.stored == 7
    assert all("since=" in p for p in fake.requests if "searchPosts" in p)
    ids = uris(store)
    assert len(ids) == len(set(ids)) == 19


def test_rate_limit_and_5xx_are_retried(fake: FakeBluesky, store: Store, config: Config) -> None:
    fake.post("parcel gone", "jane.bsky.social")
    sleeps: list[float] = []
    fake.faults = ["429", "500"]
    result = make_listener(store, config, sleeps, rng=lambda: 1.0).poll_once()
    assert result.ok and result.rate_limited == 1 and result.retries == 1
    assert 1.0 <= sleeps[0] <= 4.0 and sleeps[1] == 1.0
    assert len(uris(store)) == 1


def test_bad_app_password_is_a_visible_error(fake: FakeBluesky, store: Store, config: Config,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLUESKY_APP_PASSWORD", "wrong")
    result = make_listener(store, config).poll_once()
    assert not result.ok and "401" in result.errors[0]
    health = listener_health(store)
    assert health[0]["status"] == "error" and "wrong" not in health[0]["last_error"]


# ------------------------------------------------------------------ issue 14: items 6 and 11
def test_403_on_search_leaves_notifications_polling(fake: FakeBluesky, store: Store, config: Config) -> None:
    fake.post("@shophelp.bsky.social parcel late", "jane.bsky.social")
    fake.post("@shophelp.bsky.social where is it", "bob.bsky.social")
    fake.path_faults = {"/xrpc/app.bsky.feed.searchPosts": "403"}
    result = make_listener(store, config).poll_once()
    assert len(result.errors) == 1 and "search" in result.errors[0]
    assert len(uris(store)) == 2  # the notifications were still read
    assert any("listNotifications" in p for p in fake.requests)
    assert listener_health(store)[0]["status"] == "error"


def test_429_with_an_unreadable_reset_waits_the_default_window(fake: FakeBluesky, store: Store,
                                                               config: Config) -> None:
    fake.post("parcel gone", "jane.bsky.social")
    sleeps: list[float] = []
    fake.faults = ["429-badreset"]
    result = make_listener(store, config, sleeps, rate_limit_default_s=30.0).poll_once()
    assert result.ok, result.errors
    assert result.rate_limited == 1 and sleeps == [30.0]
    assert len(uris(store)) == 1


def test_repeated_page_cursor_stops_the_source(fake: FakeBluesky, store: Store, config: Config) -> None:
    for i in range(23):
        fake.post(f"parcel {i} missing", f"user{i}.bsky.social", notify=None)
    fake.path_faults = {"/xrpc/app.bsky.feed.searchPosts": "loop-cursor"}
    listener = make_listener(store, config)
    result = listener.poll_once()
    searches = [p for p in fake.requests if "searchPosts" in p]
    assert len(searches) == 2  # the second page repeated its cursor: not max_pages (50) pages
    assert result.stored == 10  # both pages were stored
    assert any("repeated page cursor" in e for e in result.errors)
    fake.path_faults = {}
    assert listener.poll_once().ok
    ids = uris(store)
    assert len(ids) == len(set(ids)) == 23


def test_malformed_post_is_counted_and_shown_as_a_health_warning(fake: FakeBluesky, store: Store,
                                                                 config: Config) -> None:
    fake.post("parcel fine", "jane.bsky.social", notify=None)
    fake.post("parcel broken", "bob.bsky.social", notify=None)
    fake.posts[-1]["record"]["createdAt"] = "not a date"
    fake.posts[-1]["indexedAt"] = fake.posts[-2]["indexedAt"]
    result = make_listener(store, config).poll_once()
    assert result.ok and result.malformed == 1 and len(uris(store)) == 1
    health = listener_health(store)[0]
    assert health["status"] == "warning" and health["malformed"] == 1 and "malformed" in health["last_warning"]


# ------------------------------------------------------------------ audit (listen) finding 2
def _spread(fake: FakeBluesky) -> None:
    """Posts (and their notifications) five minutes apart, as in real life: the 60 s overlap of
    ``since`` then covers one post, not the whole burst."""
    for i, p in enumerate(fake.posts):
        p["indexedAt"] = p["record"]["createdAt"] = (T0 + timedelta(minutes=5 * i)).isoformat().replace("+00:00", "Z")
    for n in fake.notifications:
        n["indexedAt"] = next(p["indexedAt"] for p in fake.posts if p["uri"] == n["uri"])


@pytest.mark.parametrize("kind", ["search", "notifications"])
def test_burst_beyond_the_page_budget_resumes_next_round_without_loss(fake: FakeBluesky, store: Store,
                                                                      kind: str) -> None:
    config = parse_config({
        "brands": [{"name": "Shop", "handles": {"bluesky": HANDLE}}],
        "channels": {"bluesky": {"queries": ["parcel"] if kind == "search" else [],
                                 "notifications": kind == "notifications", "limit": 5, "max_pages": 2}},
    })
    cursor = "bluesky:search:parcel" if kind == "search" else "bluesky:notifications"
    listener = make_listener(store, config)
    for i in range(3):
        fake.post(f"parcel {i} missing @shophelp", f"u{i}.bsky.social")
    _spread(fake)
    assert listener.poll_once().ok
    # A cursor in the format of earlier versions (a finished pass only) must still be read.
    finished = json.loads(store.get_cursor(cursor) or "{}")
    store.set_cursor(cursor, json.dumps({k: v for k, v in finished.items() if k in ("since", "seen")}))
    for i in range(3, 23):  # a burst of 20 (4 pages of 5) while the worker was down: more than 2 pages
        fake.post(f"parcel {i} missing @shophelp", f"u{i}.bsky.social")
    _spread(fake)
    first = listener.poll_once()
    assert first.ok and first.pages == 2
    cut = json.loads(store.get_cursor(cursor) or "{}")
    for i in range(23, 25):  # more arrive while the pass is under way
        fake.post(f"parcel {i} missing @shophelp", f"u{i}.bsky.social")
    _spread(fake)
    for _ in range(5):
        assert listener.poll_once().ok
    ids = uris(store)
    assert len(ids) == len(set(ids)) and set(ids) == {p["uri"] for p in fake.posts}  # all 25, each once
    assert cut.get("cursor"), cut  # the pass cut by the budget stayed open (it did not jump to the newest)
    assert not json.loads(store.get_cursor(cursor) or "{}").get("cursor")  # the pass finished
    assert listener_health(store)[0]["status"] == "ok"


@pytest.mark.parametrize("kind", ["search", "notifications"])
def test_a_refused_stored_page_cursor_starts_the_pass_again(fake: FakeBluesky, store: Store, kind: str) -> None:
    config = parse_config({
        "brands": [{"name": "Shop", "handles": {"bluesky": HANDLE}}],
        "channels": {"bluesky": {"queries": ["parcel"] if kind == "search" else [],
                                 "notifications": kind == "notifications", "limit": 5, "max_pages": 2}},
    })
    cursor = "bluesky:search:parcel" if kind == "search" else "bluesky:notifications"
    for i in range(14):
        fake.post(f"parcel {i} missing @shophelp", f"u{i}.bsky.social")
    _spread(fake)
    listener = make_listener(store, config)
    assert listener.poll_once().ok
    state = json.loads(store.get_cursor(cursor) or "{}")
    assert state.get("cursor") and state.get("newest")  # cut by the budget: the pass is open
    store.set_cursor(cursor, json.dumps({**state, "cursor": "expired"}))
    for _ in range(3):
        assert listener.poll_once().ok
    ids = uris(store)
    assert len(ids) == len(set(ids)) and set(ids) == {p["uri"] for p in fake.posts}
    assert not json.loads(store.get_cursor(cursor) or "{}").get("cursor")
