"""The Mastodon listener with the real Mastodon.py client against a local server speaking the API."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from doorstep.clients import mastodon_client
from doorstep.config import Config, parse_config
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.health import Backoff, listener_health
from listeners.mastodon import MastodonListener, html_to_text

TOKEN = "mastodon-token-SECRET"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)


class FakeMastodon:
    """Just enough of a Mastodon instance: statuses, mention notifications, tag timelines, search."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.faults: list[str] = []
        #: Faults for every request whose path starts with the key (a permission missing on one endpoint).
        self.path_faults: dict[str, str] = {}
        self.requests: list[str] = []
        self._next = 1000
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def account(self, username: str, followers: int = 0) -> dict[str, Any]:
        return {"id": str(abs(hash(username)) % 10**9), "username": username.split("@")[0], "acct": username,
                "display_name": username.title(), "followers_count": followers, "following_count": 0,
                "statuses_count": 1, "url": f"https://example.social/@{username}", "locked": False, "bot": False,
                "created_at": "2020-01-01T00:00:00.000Z", "note": "", "avatar": "", "header": "",
                "emojis": [], "fields": []}

    def post(self, text: str, author: str, *, followers: int = 0, tags: list[str] | None = None,
             mention: bool = True, reply_to: str | None = None, reblog: bool = False) -> str:
        with self.lock:
            self._next += 1
            status_id = str(self._next)
            status = {
                "id": status_id, "uri": f"https://example.social/users/{author}/statuses/{status_id}",
                "url": f"https://example.social/@{author}/{status_id}",
                "created_at": (T0 + timedelta(seconds=self._next)).isoformat().replace("+00:00", ".000Z"),
                "content": f"<p>{text.replace('&', '&amp;')}</p>", "account": self.account(author, followers),
                "in_reply_to_id": reply_to, "in_reply_to_account_id": None, "reblog": None,
                "visibility": "public", "language": "en", "sensitive": False, "spoiler_text": "",
                "media_attachments": [], "mentions": [], "tags": [{"name": t, "url": ""} for t in tags or []],
                "emojis": [], "replies_count": 0, "reblogs_count": 0, "favourites_count": 0,
            }
            if reblog:
                status["reblog"] = dict(status, id="1")
            self.statuses.append(status)
            if mention:
                self._next += 1
                self.notifications.append({"id": str(self._next), "type": "mention", "created_at": status["created_at"],
                                           "account": status["account"], "status": status})
            return status_id

    # ---------------------------------------------------------------- server
    def __enter__(self) -> FakeMastodon:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                fake.requests.append(self.path)
                url = urlsplit(self.path)
                url = url._replace(path=url.path.rstrip("/"))
                q = parse_qs(url.query)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}" and url.path != "/api/v1/instance":
                    return self.send(401, {"error": "The access token is invalid"})
                fault = fake.faults.pop(0) if fake.faults and url.path != "/api/v1/instance" else None
                fault = fault or next((f for p, f in fake.path_faults.items() if url.path.startswith(p)), None)
                self.malformed = fault == "malformed"
                if fault == "403":
                    return self.send(403, {"error": "This action is outside the authorized scopes"})
                if fault in ("429-noreset", "429-badreset"):
                    headers = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0"}
                    if fault == "429-badreset":
                        headers["X-RateLimit-Reset"] = "soon"
                    return self.send(429, {"error": "Too many requests"}, headers)
                self.stuck = fault == "stuck"
                if fault == "429":
                    reset = (datetime.now(timezone.utc) + timedelta(seconds=2)).isoformat()
                    return self.send(429, {"error": "Too many requests"},
                                     {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
                if fault in ("500", "503"):
                    return self.send(int(fault), {"error": "oops"})
                if fault == "401":
                    return self.send(401, {"error": "The access token was revoked"})
                if url.path == "/api/v1/instance":
                    return self.send(200, {"uri": "127.0.0.1", "title": "Test", "version": "4.3.0",
                                           "description": "", "email": "", "urls": {}, "stats": {}, "languages": ["en"]})
                if url.path == "/api/v1/notifications":
                    types = q.get("types[]") or []
                    items = [n for n in fake.notifications if not types or n["type"] in types]
                elif url.path.startswith("/api/v1/timelines/tag/"):
                    tag = url.path.rsplit("/", 1)[1].lower()
                    items = [s for s in fake.statuses if tag in {t["name"].lower() for t in s["tags"]}]
                elif url.path == "/api/v2/search":
                    word = q["q"][0].lower()
                    items = [s for s in fake.statuses if word in s["content"].lower()]
                else:
                    return self.send(404, {"error": "Record not found"})
                page = self.paginate(items, q)
                if url.path == "/api/v2/search":
                    return self.send(200, {"accounts": [], "statuses": page, "hashtags": []})
                return self.send(200, page)

            def paginate(self, items: list[dict[str, Any]], q: dict[str, list[str]]) -> list[dict[str, Any]]:
                limit = int((q.get("limit") or ["20"])[0])
                key = lambda item: int(item["id"])  # noqa: E731
                items = sorted(items, key=key)
                if "max_id" in q:
                    items = [i for i in items if key(i) < int(q["max_id"][0])]
                if "since_id" in q:
                    items = [i for i in items if key(i) > int(q["since_id"][0])]
                if "min_id" in q and getattr(self, "stuck", False):  # a broken server: the page up to min_id
                    items = [i for i in items if key(i) <= int(q["min_id"][0])][-limit:]
                elif "min_id" in q:  # the oldest items just after min_id
                    items = [i for i in items if key(i) > int(q["min_id"][0])][:limit]
                else:  # the newest items
                    items = items[-limit:]
                return list(reversed(items))

            def send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(body).encode()
                if getattr(self, "malformed", False):
                    payload = payload[: len(payload) // 2]
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

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
        "brands": [{"name": "Shop", "handles": {"mastodon": "shophelp"}}],
        "channels": {"mastodon": {"hashtags": ["#ShopFail"], "keywords": ["parcel"], "limit": 5}},
    })


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MASTODON_ACCESS_TOKEN", TOKEN)
    with FakeMastodon() as server:
        monkeypatch.setenv("MASTODON_BASE_URL", server.base_url)
        yield server


def make_listener(store: Store, config: Config, sleeps: list[float] | None = None, **backoff: Any) -> MastodonListener:
    recorder = sleeps if sleeps is not None else []
    return MastodonListener(store, config, Pipeline(store, config, classifier=None), client=mastodon_client(config),
                            backoff=Backoff(sleep=recorder.append, **backoff))


def external_ids(store: Store) -> list[str]:
    return [r[0] for r in store.db.execute("select external_id from mentions where channel = 'mastodon'").fetchall()]


def test_html_to_text() -> None:
    assert html_to_text('<p>Hi <span class="h-card"><a href="x">@<span>shop</span></a></span> &amp; bye</p><p>two</p>') == \
        "Hi @shop & bye\ntwo"


def test_mentions_tags_and_keywords_ingested_once(fake: FakeMastodon, store: Store, config: Config) -> None:
    first = fake.post("@shophelp my parcel is late #ShopFail", "jane@other.social", followers=77, tags=["ShopFail"])
    fake.post("#shopfail again", "bob", tags=["shopfail"], mention=False)
    fake.post("where is my parcel", "carol", mention=False)
    fake.post("boosted", "dave", reblog=True, tags=["ShopFail"], mention=False)
    ours = fake.post("@jane sorry! DM us", "shophelp", reply_to=first, mention=False, tags=["ShopFail"])
    result = make_listener(store, config).poll_once()
    assert result.ok, result.errors
    ids = external_ids(store)
    assert len(ids) == len(set(ids)) == 4  # the boost is skipped; the first post came from 3 sources
    assert result.skipped == 1 and result.duplicates == 2
    jane = store.mention_by_external_id("mastodon", first)
    assert jane is not None and jane.text == "@shophelp my parcel is late #ShopFail"
    assert (jane.author_handle, jane.author_followers) == ("jane@other.social", 77)
    reply = store.mention_by_external_id("mastodon", ours)
    assert reply is not None and reply.outbound and reply.in_reply_to == first and reply.thread_id == jane.thread_id
    notifications = [p for p in fake.requests if p.startswith("/api/v1/notifications")]
    assert notifications and all("types%5B%5D=mention" in p or "types[]=mention" in p for p in notifications)


def test_paging_forward_with_min_id_leaves_no_gap(fake: FakeMastodon, store: Store, config: Config) -> None:
    for i in range(12):
        fake.post(f"@shophelp first batch {i}", f"user{i}")
    listener = make_listener(store, config)
    assert listener.poll_once().ok
    assert len(external_ids(store)) == 12  # first round walked back over three pages of five
    # A burst of 13 new mentions between two rounds: more than one page above the cursor.
    for i in range(13):
        fake.post(f"@shophelp burst {i}", f"burst{i}")
    fake.requests.clear()
    assert listener.poll_once().ok
    ids = external_ids(store)
    assert len(ids) == len(set(ids)) == 25
    assert any("min_id=" in p for p in fake.requests if p.startswith("/api/v1/notifications"))
    assert listener.poll_once().fetched == 0


def test_rate_limit_and_server_errors_are_retried(fake: FakeMastodon, store: Store, config: Config) -> None:
    fake.post("@shophelp help", "jane")
    sleeps: list[float] = []
    fake.faults = ["429", "503", "500"]
    result = make_listener(store, config, sleeps, rng=lambda: 1.0, base_s=2.0).poll_once()
    assert result.ok and result.rate_limited == 1 and result.retries == 2
    assert 1.0 <= sleeps[0] <= 4.0  # until X-RateLimit-Reset (2 s ahead), plus a second
    assert sleeps[1:] == [2.0, 4.0]
    assert len(external_ids(store)) == 1


def test_malformed_response_is_retried(fake: FakeMastodon, store: Store, config: Config) -> None:
    fake.post("@shophelp help", "jane")
    fake.faults = ["malformed"]
    result = make_listener(store, config).poll_once()
    assert result.ok and result.retries == 1 and len(external_ids(store)) == 1


def test_revoked_token_is_a_visible_error(fake: FakeMastodon, store: Store, config: Config) -> None:
    fake.post("@shophelp help", "jane")
    fake.faults = ["401"]
    result = make_listener(store, config).poll_once()
    assert not result.ok and "401" in result.errors[0]
    health = listener_health(store)
    assert health[0]["name"] == "mastodon" and health[0]["status"] == "error"
    assert TOKEN not in health[0]["last_error"]
    assert make_listener(store, config).poll_once().ok
    assert listener_health(store)[0]["status"] == "ok"


# ------------------------------------------------------------------ issue 14: items 6 and 11
def test_403_on_notifications_leaves_hashtags_and_keywords_polling(fake: FakeMastodon, store: Store,
                                                                    config: Config) -> None:
    fake.post("#shopfail parcel lost", "bob", tags=["ShopFail"], mention=False)
    fake.post("my parcel is late", "carol", mention=False)
    fake.path_faults = {"/api/v1/notifications": "403"}
    result = make_listener(store, config).poll_once()
    assert len(result.errors) == 1 and "403" in result.errors[0] and "notifications" in result.errors[0]
    assert len(external_ids(store)) == 2  # the tag timeline and the search were still polled
    assert any(p.startswith("/api/v1/timelines/tag/") for p in fake.requests)
    assert any(p.startswith("/api/v2/search") for p in fake.requests)
    assert listener_health(store)[0]["status"] == "error"


@pytest.mark.parametrize("fault", ["429-noreset", "429-badreset"])
def test_429_without_a_readable_reset_waits_the_default_window(fake: FakeMastodon, store: Store, config: Config,
                                                               fault: str) -> None:
    fake.post("@shophelp help", "jane")
    sleeps: list[float] = []
    fake.faults = [fault]
    result = make_listener(store, config, sleeps, rate_limit_default_s=45.0).poll_once()
    assert result.ok, result.errors
    assert result.rate_limited == 1 and sleeps == [45.0]
    assert len(external_ids(store)) == 1


def test_malformed_status_is_counted_and_shown_as_a_health_warning(fake: FakeMastodon, store: Store,
                                                                   config: Config) -> None:
    fake.post("@shophelp help", "jane")
    broken = fake.post("@shophelp broken", "bob")
    for item in [*fake.statuses, *(n["status"] for n in fake.notifications)]:
        if item["id"] == broken:
            item["created_at"] = "not a date"
    result = make_listener(store, config).poll_once()
    assert result.ok and result.malformed >= 1
    health = listener_health(store)[0]
    assert health["status"] == "warning" and health["malformed"] >= 1 and "malformed" in health["last_warning"]


def test_server_that_ignores_min_id_is_not_paged_forever(fake: FakeMastodon, store: Store, config: Config) -> None:
    for i in range(12):
        fake.post(f"@shophelp first {i}", f"user{i}")
    listener = make_listener(store, config)
    assert listener.poll_once().ok
    cursor = store.get_cursor("mastodon:notifications")
    fake.requests.clear()
    fake.path_faults = {"/api/v1/notifications": "stuck"}
    result = listener.poll_once()
    pages = [p for p in fake.requests if p.startswith("/api/v1/notifications")]
    assert len(pages) == 1  # not max_pages (50) of the same page
    assert any("min_id" in e for e in result.errors)
    assert store.get_cursor("mastodon:notifications") == cursor  # never moved backwards
