"""A local stand-in for the X API v2, so tweepy itself is exercised in tests and in the demo.

Why an emulator rather than mocks: the listener and the reply path must survive what the real
service does (pagination with ``next_token``, ``since_id``, fields only when asked for,
``includes.users``, rate-limit headers, 429s with a reset time, 5xx, stalls, broken JSON). An
emulator that answers with the shapes and headers of tweepy's recordings
(``$DOORSTEP_SHARED/x-api``) lets the same code run against it and against the real API by
changing ``X_API_BASE_URL`` only.

Endpoints: ``GET /2/tweets/search/recent``, ``GET /2/users/:id/mentions``, ``GET /2/users/me``,
``GET /2/users/by/username/:username``, ``GET /2/users/:id/tweets``, ``GET /2/tweets/:id``,
``POST /2/tweets``, ``DELETE /2/tweets/:id``, the filtered stream
(``GET/POST /2/tweets/search/stream/rules``, ``GET /2/tweets/search/stream``) and direct
messages (``POST /2/dm_conversations/with/:participant_id/messages``, ``GET /2/dm_events``,
``GET /2/dm_conversations/with/:participant_id/dm_events``), shaped as ``openapi.json`` says
(``CreateDmEventResponse``, ``Get2DmEventsResponse``).

Several accounts: ``accounts={"<access token>": {"username": "FettleCare"}, ...}`` makes each
OAuth 1.0a access token act as its own user, as on X: ``/2/users/me``, posts and direct messages
are that user's, an unknown token gets 401, and each token has its own rate-limit windows.
``posted`` records which account (``"account"``) created each post.

Posts are plain dicts::

    {"id", "text", "author_id", "username", "name", "created_at", "conversation_id",
     "in_reply_to_user_id", "referenced_tweets", "followers", "lang"}

Only ``text`` and ``username`` are needed; the rest is filled in (ids are snowflake-like and
ordered by ``created_at``, as on X). Feed files may also use the names of
:class:`doorstep.models.Mention` (``external_id``, ``author_handle``, ``author_name``,
``author_followers``, ``thread_id``, ``in_reply_to``).

Run it alone with ``doorstep emulate x --feed posts.jsonl --port 8765``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import socket
import struct
import threading
import time
import unicodedata
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import regex

log = logging.getLogger("doorstep.x_emulator")

FAULTS = ("429", "500", "503", "timeout", "malformed", "slow", "reset", "401", "403",
          "429-noreset", "429-badreset", "loop-token")
DEFAULT_ME = {"id": "1000000000000000001", "username": "DoorstepCare", "name": "Doorstep Care"}
#: Rate limits per 15-minute window, as X documents them for app auth (search/mentions) and user auth.
RATE_LIMITS = {
    "search": 450,
    "mentions": 450,
    "users_tweets": 1500,
    "me": 75,
    "by_username": 300,
    "tweet": 300,
    "create": 200,
    "delete": 50,
    "rules": 450,
    "stream": 50,
    "dm_create": 200,
    "dm_events": 300,
}
WINDOW_S = 900
_EPOCH_MS = 1288834974657  # Twitter's snowflake epoch


#: The most a post may weigh, and twitter-text v3's weights (``config/v3.json``): code points in these
#: ranges weigh 1, every other one 2; an emoji (a whole ZWJ sequence, flag or keycap) 2; a link 23.
TWEET_MAX_WEIGHT = 280
_LIGHT_RANGES = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))
_TCO_LENGTH = 23
#: Links as X finds them, simply: with a scheme after anything but a Latin letter, digit, @, $ or #, or a
#: ``www.``/common bare domain; a link stops at a space or Chinese, Japanese or Korean text.
_TWEET_LINK = re.compile(
    r"(?i)(?:(?<![a-z0-9@$#\uff20\uff03])https?://"
    r"|(?<![a-z0-9@$#_./-])(?:www\.|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|co\.uk|io)\b))"
    r"[^\s\u2e80-\u9fff\uac00-\ud7af\uff00-\uffef]*"
)


def tweet_weight(text: str) -> int:
    """X's weighted length of ``text``: what "Tweet text is too long" is measured in (not code points: a
    family emoji is 7 of them and weighs 2). Written here apart from Doorstep's own count, which tests
    check against this stand-in."""
    normalised = unicodedata.normalize("NFC", text)
    total = _TCO_LENGTH * len(_TWEET_LINK.findall(normalised))
    rest = _TWEET_LINK.sub("", normalised)
    for cluster in regex.findall(r"\X", rest):
        if regex.match(r"\p{Extended_Pictographic}|\p{Regional_Indicator}|[0-9#*]\ufe0f?\u20e3", cluster):
            total += 2
            continue
        total += sum(1 if any(lo <= ord(c) <= hi for lo, hi in _LIGHT_RANGES) else 2 for c in cluster)
    return total


def snowflake(created_at: datetime, sequence: int) -> str:
    """A tweet id in X's layout: ids sort by time, as ``since_id`` relies on."""
    ms = int(created_at.timestamp() * 1000) - _EPOCH_MS
    return str((max(ms, 0) << 22) | (sequence & 0x3FFFFF))


def user_id_for(username: str) -> str:
    """A stable numeric user id for a handle that the feed gave without one."""
    digest = hashlib.sha1(username.lower().encode()).hexdigest()
    return str(int(digest[:14], 16) % 10**15 + 10**15)


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and value:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc)


# ------------------------------------------------------------------ search query
class QueryError(ValueError):
    pass


_TOKEN = re.compile(r'\s*(\(|\)|-?"[^"]*"|-?[^\s()"]+)')


def _tokens(query: str) -> list[str]:
    tokens, pos = [], 0
    query = query.strip()
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if not m:
            raise QueryError(f"cannot parse query near {query[pos:pos + 20]!r}")
        tokens.append(m.group(1))
        pos = m.end()
        while pos < len(query) and query[pos].isspace():
            pos += 1
    return tokens


Predicate = Callable[[dict[str, Any]], bool]


def compile_query(query: str) -> Predicate:
    """Compile the subset of X's search syntax the listener uses.

    Supported: keywords (whole words, case-insensitive), ``"exact phrases"``, ``@mention``,
    ``#hashtag``, ``from:``, ``to:``, ``is:retweet``, ``is:reply``, ``is:quote``, ``lang:``,
    ``conversation_id:``, negation with ``-``, ``OR`` and parentheses. As on X, AND (juxtaposition)
    binds tighter than OR.
    """
    tokens = _tokens(query)
    if not tokens:
        raise QueryError("query is empty")
    position = 0

    def parse_or() -> Predicate:
        nonlocal position
        options = [parse_and()]
        while position < len(tokens) and tokens[position] == "OR":
            position += 1
            options.append(parse_and())
        return options[0] if len(options) == 1 else (lambda p, o=tuple(options): any(f(p) for f in o))

    def parse_and() -> Predicate:
        nonlocal position
        terms: list[Predicate] = []
        while position < len(tokens) and tokens[position] not in ("OR", ")"):
            token = tokens[position]
            position += 1
            if token == "(":
                inner = parse_or()
                if position >= len(tokens) or tokens[position] != ")":
                    raise QueryError("unbalanced parentheses")
                position += 1
                terms.append(inner)
            elif token == "-(":
                raise QueryError("negated groups are not supported")
            else:
                terms.append(_term(token))
        if not terms:
            raise QueryError("empty clause")
        return terms[0] if len(terms) == 1 else (lambda p, t=tuple(terms): all(f(p) for f in t))

    predicate = parse_or()
    if position != len(tokens):
        raise QueryError(f"unexpected {tokens[position]!r}")
    return predicate


def _term(token: str) -> Predicate:
    negate = token.startswith("-") and len(token) > 1
    if negate:
        token = token[1:]
    predicate = _positive_term(token)
    return (lambda p: not predicate(p)) if negate else predicate


def _positive_term(token: str) -> Predicate:
    if token.startswith('"'):
        phrase = token.strip('"').lower()
        return lambda p: phrase in p["_lower"]
    operator, sep, value = token.partition(":")
    if sep and value:
        op, val = operator.lower(), value.lower().lstrip("@")
        if op == "from":
            return lambda p: p["username"].lower() == val
        if op == "to":
            return lambda p: p.get("_to", "") == val
        if op == "is":
            kinds = {"retweet": "retweeted", "quote": "quoted", "reply": "replied_to"}
            if val not in kinds:
                raise QueryError(f"unsupported operator is:{val}")
            return lambda p, k=kinds[val]: any(r.get("type") == k for r in p.get("referenced_tweets") or [])
        if op == "lang":
            return lambda p: (p.get("lang") or "").lower() == val
        if op == "conversation_id":
            return lambda p: p["conversation_id"] == value
        if op in ("has", "url", "place", "bio", "list", "retweets_of", "context", "entity"):
            raise QueryError(f"operator {op}: is not supported by the emulator")
    word = token.lower()
    if word.startswith(("@", "#")):
        pattern = re.compile(re.escape(word) + r"(?![\w])")
    else:
        pattern = re.compile(r"(?<![\w])" + re.escape(word) + r"(?![\w])")
    return lambda p: pattern.search(p["_lower"]) is not None


# ------------------------------------------------------------------ emulator
class XEmulator:
    """Threaded X API v2 emulator on 127.0.0.1; use as a context manager.

    ``inject(fault, count, path)`` makes the next ``count`` requests (whose path starts with
    ``path``, when given) fail: ``"429"`` (with ``x-rate-limit-reset`` ``reset_after_s`` ahead),
    ``"500"``/``"503"``, ``"401"``/``"403"`` (expired token / revoked permission), ``"timeout"``
    (hold the connection ``stall_s`` then drop it), ``"reset"`` (drop it at once), ``"malformed"``
    (a truncated JSON body with status 200) and ``"slow"`` (answer after ``slow_s``).
    ``"429-noreset"`` is a 429 without ``x-rate-limit-reset``, ``"429-badreset"`` one whose
    header is not a number (``soon``), and ``"loop-token"`` answers a page asked for with a
    ``next_token``/``pagination_token`` with that same token again (a paging loop).
    """

    def __init__(self, posts: list[dict] | None = None, *, port: int = 0, me: dict | None = None,
                 page_delay_s: float = 0.0, reset_after_s: float = 1.0, slow_s: float = 0.5, stall_s: float = 1.0,
                 bearer_token: str | None = None, accounts: dict[str, dict] | None = None):
        self.port = port
        self.me = {**DEFAULT_ME, **(me or {})}
        self.posted: list[dict] = []
        #: Direct-message events (MessageCreate), oldest first; see :meth:`send_dm`.
        self.dms: list[dict] = []
        #: (method, path, acting username or None, bearer token or None) of every authorised request.
        self.auth_log: list[tuple[str, str, str | None, str | None]] = []
        self.requests: list[tuple[str, str]] = []
        #: Delay added to every search/mentions page: lets a test kill a listener mid-round.
        self.page_delay_s = page_delay_s
        self.reset_after_s = reset_after_s
        self.slow_s = slow_s
        self.stall_s = stall_s
        #: When set, requests with another bearer token get 401 (user-auth requests pass).
        self.bearer_token = bearer_token
        self._lock = threading.RLock()
        self._posts: dict[str, dict] = {}
        self._order: list[str] = []  # ids, newest first
        self._users: dict[str, dict] = {}
        self._by_username: dict[str, str] = {}
        self._version = 0
        self._cache: dict[Any, tuple[int, list[str]]] = {}
        self._faults: list[list[Any]] = []
        self._sequence = 0
        self._windows: dict[str, tuple[float, int]] = {}
        self._rules: dict[str, dict] = {}
        self._stream_queues: list[list[dict]] = []
        self._stream_cv = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._add_user(self.me["id"], self.me["username"], self.me["name"], int(self.me.get("followers", 0)))
        #: access token -> user id of the account it acts as.
        self._tokens: dict[str, str] = {}
        for token, account in (accounts or {}).items():
            username = str(account["username"]).lstrip("@")
            # One account, one id: the acting account named as ``me`` too keeps me's id (the demo names
            # @LarkspurHelp both ways, and our own DMs came back as a customer's from "another" @LarkspurHelp).
            user_id = str(account.get("id") or self._by_username.get(username.lower()) or user_id_for(username))
            self._add_user(user_id, username, account.get("name") or username, int(account.get("followers", 0)))
            self._tokens[token] = user_id
        for post in posts or []:
            self.add_post(post)

    # ------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> XEmulator:
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"x-emulator-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        with self._stream_cv:
            self._stream_cv.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> XEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Block until interrupted (for ``doorstep emulate x``)."""
        if self._server is None:
            self.start()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    # ------------------------------------------------------------ feed
    @classmethod
    def from_jsonl(cls, path: str | Path, **kwargs: Any) -> XEmulator:
        posts = []
        with Path(path).open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    posts.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}: line {number}: not valid JSON: {exc.msg}") from None
        emulator = cls(**kwargs)
        emulator.add_posts(posts)
        return emulator

    def add_posts(self, posts: list[dict]) -> None:
        """Add many posts; those without an id get ids in ``created_at`` order."""
        normalised = [_from_mention_names(p) for p in posts]
        normalised.sort(key=lambda p: (0 if _numeric_id(p.get("id")) else 1, _parse_time(p.get("created_at"))))
        id_map: dict[str, str] = {}
        for post in normalised:
            original = post.get("id")
            new = self.add_post(post, _id_map=id_map)
            if original is not None:
                id_map[str(original)] = new

    def add_post(self, post: dict, *, _id_map: dict[str, str] | None = None) -> str:
        """Publish a post (it shows up in search, mentions and the stream); returns its id."""
        post = _from_mention_names(dict(post))
        id_map = _id_map or {}
        with self._lock:
            created = _parse_time(post.get("created_at"))
            post_id = str(post.get("id")) if _numeric_id(post.get("id")) else None
            if post_id is None:
                self._sequence += 1
                post_id = snowflake(created, self._sequence)
                while post_id in self._posts:
                    self._sequence += 1
                    post_id = snowflake(created, self._sequence)
            username = str(post.get("username") or "someone")
            author_id = str(post.get("author_id") or (self.me["id"] if username.lower() == self.me["username"].lower()
                                                       else user_id_for(username)))
            self._add_user(author_id, username, post.get("name") or username, int(post.get("followers") or 0))
            for handle in _MENTIONED.findall(str(post.get("text") or "")):
                if handle.lower() not in self._by_username:  # mentioned accounts exist on X too
                    self._add_user(user_id_for(handle), handle, handle, 0)
            refs = []
            for ref in post.get("referenced_tweets") or []:
                refs.append({"type": ref["type"], "id": id_map.get(str(ref["id"]), str(ref["id"]))})
            parent_id = next((r["id"] for r in refs if r["type"] == "replied_to"), None)
            parent = self._posts.get(parent_id) if parent_id else None
            in_reply_to_user_id = post.get("in_reply_to_user_id") or (parent["author_id"] if parent else None)
            conversation = post.get("conversation_id")
            conversation = id_map.get(str(conversation), str(conversation)) if conversation else None
            stored = {
                "id": post_id,
                "text": post.get("text"),
                "author_id": author_id,
                "username": username,
                "created_at": created,
                "conversation_id": conversation or (parent["conversation_id"] if parent else post_id),
                "in_reply_to_user_id": str(in_reply_to_user_id) if in_reply_to_user_id else None,
                "referenced_tweets": refs or None,
                "lang": post.get("lang") or "en",
                "public_metrics": post.get("public_metrics") or {
                    "retweet_count": 0, "reply_count": 0, "like_count": 0, "quote_count": 0,
                    "bookmark_count": 0, "impression_count": 0},
                "_lower": str(post.get("text") or "").lower(),
                "_to": self._users[str(in_reply_to_user_id)]["username"].lower()
                if in_reply_to_user_id and str(in_reply_to_user_id) in self._users else "",
            }
            if "_raw" in post:  # a test's deliberately broken tweet object
                stored["_raw"] = post["_raw"]
            self._posts[post_id] = stored
            self._insert_ordered(post_id)
            self._version += 1
            for rule_matches, queue in self._stream_matches(stored):
                queue.append({"post": stored, "rules": rule_matches})
            self._stream_cv.notify_all()
            return post_id

    def _insert_ordered(self, post_id: str) -> None:
        key = int(post_id)
        if not self._order or int(self._order[0]) < key:
            self._order.insert(0, post_id)
            return
        lo, hi = 0, len(self._order)
        while lo < hi:  # descending order
            mid = (lo + hi) // 2
            if int(self._order[mid]) > key:
                lo = mid + 1
            else:
                hi = mid
        self._order.insert(lo, post_id)

    def _add_user(self, user_id: str, username: str, name: str, followers: int) -> None:
        existing = self._users.get(user_id)
        if existing is None or followers:
            self._users[user_id] = {"id": user_id, "username": username, "name": name, "followers": followers}
        self._by_username[username.lower()] = user_id

    def inject(self, fault: str, count: int = 1, path: str | None = None) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults.append([fault, count, path])

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def user(self, username: str) -> dict | None:
        with self._lock:
            user_id = self._by_username.get(username.lower().lstrip("@"))
            return dict(self._users[user_id]) if user_id else None

    @property
    def posts(self) -> list[dict]:
        """All posts, newest first, without internal keys (for assertions)."""
        with self._lock:
            return [{k: v for k, v in self._posts[i].items() if not k.startswith("_")} for i in self._order]

    # ------------------------------------------------------------ internals used by the handler
    def _take_fault(self, path: str) -> str | None:
        with self._lock:
            for entry in self._faults:
                fault, count, prefix = entry
                if prefix is None or path.startswith(prefix):
                    entry[1] = count - 1
                    if entry[1] <= 0:
                        self._faults.remove(entry)
                    return fault
        return None

    def _rate_headers(self, family: str, principal: str = "") -> dict[str, str]:
        """Each token (app or user) has its own window per endpoint family, as on X."""
        limit = RATE_LIMITS.get(family, 300)
        now = time.time()
        key = f"{family}:{principal}" if principal else family
        with self._lock:
            start, used = self._windows.get(key, (now, 0))
            if now - start >= WINDOW_S:
                start, used = now, 0
            used += 1
            self._windows[key] = (start, used)
        return {
            "x-rate-limit-limit": str(limit),
            "x-rate-limit-remaining": str(max(limit - used, 0)),
            "x-rate-limit-reset": str(int(start + WINDOW_S)),
        }

    def _matching_ids(self, key: Any, predicate: Predicate) -> list[str]:
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached[0] == self._version:
                return cached[1]
            ids = [i for i in self._order if predicate(self._posts[i])]
            self._cache[key] = (self._version, ids)
            return ids

    def _stream_matches(self, post: dict) -> list[tuple[list[dict], list[dict]]]:
        if not self._stream_queues or not self._rules:
            return []
        matched = [{"id": r["id"], "tag": r.get("tag")} for r in self._rules.values() if r["_predicate"](post)]
        return [(matched, q) for q in self._stream_queues] if matched else []

    def acting_user(self, authorization: str) -> dict | None:
        """The user an OAuth 1.0a request acts as (None: app-only or an unknown token)."""
        match = re.search(r'oauth_token="([^"]*)"', authorization or "")
        if not match:
            return None
        from urllib.parse import unquote

        token = unquote(match.group(1))
        if not self._tokens:
            return self._users[self.me["id"]]
        user_id = self._tokens.get(token)
        return self._users[user_id] if user_id else None

    def send_dm(self, sender: str, recipient: str, text: str, *, created_at: datetime | None = None) -> str:
        """A direct message from ``sender`` to ``recipient`` (usernames); returns the event id."""
        with self._lock:
            sender_id = self._by_username.get(sender.lower().lstrip("@")) or user_id_for(sender)
            if sender_id not in self._users:
                self._add_user(sender_id, sender.lstrip("@"), sender.lstrip("@"), 0)
            recipient_id = self._by_username.get(recipient.lower().lstrip("@")) or user_id_for(recipient)
            if recipient_id not in self._users:
                self._add_user(recipient_id, recipient.lstrip("@"), recipient.lstrip("@"), 0)
            return self._add_dm(sender_id, recipient_id, text, created_at)

    def _add_dm(self, sender_id: str, recipient_id: str, text: str, created_at: datetime | None = None) -> str:
        created = created_at or datetime.now(timezone.utc)
        self._sequence += 1
        event_id = snowflake(created, self._sequence)
        low, high = sorted([sender_id, recipient_id], key=int)
        self.dms.append({"id": event_id, "event_type": "MessageCreate", "text": text, "sender_id": sender_id,
                         "recipient_id": recipient_id, "dm_conversation_id": f"{low}-{high}", "created_at": created,
                         "sender": self._users[sender_id]["username"],
                         "recipient": self._users[recipient_id]["username"]})
        return event_id

    def _create_dm(self, user: dict, participant_id: str, body: dict) -> dict:
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _ApiError(400, "invalid-request", "Invalid Request", "text: must not be empty")
        if len(text) > 10000:
            raise _ApiError(400, "invalid-request", "Invalid Request", "text: longer than 10000 characters")
        with self._lock:
            if participant_id not in self._users:
                raise _ApiError(400, "invalid-request", "Invalid Request",
                                f"participant_id: user {participant_id} does not exist")
            if participant_id == user["id"]:
                raise _ApiError(400, "invalid-request", "Invalid Request", "participant_id: cannot message yourself")
            event_id = self._add_dm(user["id"], participant_id, text)
            event = self.dms[-1]
        return {"data": {"dm_conversation_id": event["dm_conversation_id"], "dm_event_id": event_id}}

    def _create_tweet(self, body: dict, user: dict | None = None) -> dict:
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _ApiError(400, "invalid-request", "Invalid Request", "text: must not be empty")
        if tweet_weight(text) > TWEET_MAX_WEIGHT:  # weighed as X weighs it, not code points (audit, finding 8)
            raise _ApiError(400, "invalid-request", "Invalid Request",
                            f"text: Tweet text is too long (max {TWEET_MAX_WEIGHT})")
        refs = None
        reply = body.get("reply") or {}
        parent_id = reply.get("in_reply_to_tweet_id")
        if parent_id:
            if str(parent_id) not in self._posts:
                raise _ApiError(400, "invalid-request", "Invalid Request",
                                f"reply.in_reply_to_tweet_id: tweet {parent_id} does not exist")
            refs = [{"type": "replied_to", "id": str(parent_id)}]
        if body.get("quote_tweet_id"):
            refs = (refs or []) + [{"type": "quoted", "id": str(body["quote_tweet_id"])}]
        author = user or self.me
        post_id = self.add_post({
            "text": text, "username": author["username"], "author_id": author["id"], "name": author["name"],
            "referenced_tweets": refs,
        })
        with self._lock:
            self.posted.append({**body, "id": post_id, "account": author["username"]})
        return {"data": {"id": post_id, "text": text}}


class _ApiError(Exception):
    def __init__(self, status: int, kind: str, title: str, detail: str):
        super().__init__(detail)
        self.status, self.kind, self.title, self.detail = status, kind, title, detail

    def body(self) -> dict:
        if self.kind == "about:blank":
            return {"title": self.title, "detail": self.detail, "type": "about:blank", "status": self.status}
        return {"errors": [{"message": self.detail}], "title": self.title, "detail": self.detail,
                "type": f"https://api.twitter.com/2/problems/{self.kind}", "status": self.status}


_MENTIONED = re.compile(r"(?<![\w])@(\w{1,15})")


def _numeric_id(value: Any) -> bool:
    return value is not None and str(value).isdigit() and len(str(value)) <= 19


def _from_mention_names(post: dict) -> dict:
    """Accept feeds written with Mention field names (as the demo and exports produce)."""
    mapping = {"external_id": "id", "author_handle": "username", "author_name": "name",
               "author_followers": "followers", "thread_id": "conversation_id", "language": "lang"}
    for old, new in mapping.items():
        if old in post and new not in post:
            post[new] = post.pop(old)
    if post.get("in_reply_to") and not post.get("referenced_tweets"):
        post["referenced_tweets"] = [{"type": "replied_to", "id": str(post.pop("in_reply_to"))}]
    if isinstance(post.get("username"), str):
        post["username"] = post["username"].lstrip("@")
    return post


TWEET_DEFAULT_FIELDS = ("id", "text", "edit_history_tweet_ids")
USER_DEFAULT_FIELDS = ("id", "name", "username")


def _split(values: list[str] | None) -> set[str]:
    return {v for item in values or [] for v in item.split(",") if v}


def render_tweet(post: dict, fields: set[str]) -> dict:
    if "_raw" in post:
        return post["_raw"]
    tweet: dict[str, Any] = {"edit_history_tweet_ids": [post["id"]], "id": post["id"], "text": post["text"]}
    if "created_at" in fields:
        tweet["created_at"] = _iso(post["created_at"])
    if "author_id" in fields:
        tweet["author_id"] = post["author_id"]
    if "conversation_id" in fields:
        tweet["conversation_id"] = post["conversation_id"]
    if "lang" in fields:
        tweet["lang"] = post["lang"]
    if "in_reply_to_user_id" in fields and post.get("in_reply_to_user_id"):
        tweet["in_reply_to_user_id"] = post["in_reply_to_user_id"]
    if "referenced_tweets" in fields and post.get("referenced_tweets"):
        tweet["referenced_tweets"] = post["referenced_tweets"]
    if "public_metrics" in fields:
        tweet["public_metrics"] = post["public_metrics"]
    return tweet


def render_user(user: dict, fields: set[str]) -> dict:
    out: dict[str, Any] = {"id": user["id"], "name": user["name"], "username": user["username"]}
    if "public_metrics" in fields:
        out["public_metrics"] = {"followers_count": user["followers"], "following_count": 0,
                                 "tweet_count": 0, "listed_count": 0}
    if "created_at" in fields:
        out["created_at"] = "2015-01-01T00:00:00.000Z"
    return out


class _Handler(BaseHTTPRequestHandler):
    emulator: XEmulator
    #: The user an OAuth 1.0a request acts as (None for app-only requests).
    acting: dict | None = None
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, keep-alive clients wait ~40 ms for
    # the delayed ACK before the body arrives.
    disable_nagle_algorithm = True
    server_version = "doorstep-x-emulator"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    # -------------------------------------------------------------- plumbing
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        em = self.emulator
        url = urlsplit(self.path)
        path, query = url.path.rstrip("/"), parse_qs(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        with em._lock:
            em.requests.append((method, self.path))
        fault = em._take_fault(path)
        family = _family(method, path)
        if fault in ("timeout", "reset"):
            if fault == "timeout":
                time.sleep(em.stall_s)
            self._drop()
            return
        if fault == "slow":
            time.sleep(em.slow_s)
        if fault == "429":
            reset = int(time.time() + em.reset_after_s) + (1 if em.reset_after_s % 1 else 0)
            headers = {"x-rate-limit-limit": str(RATE_LIMITS.get(family, 300)), "x-rate-limit-remaining": "0",
                       "x-rate-limit-reset": str(reset)}
            self._send(429, {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank",
                             "status": 429}, headers)
            return
        if fault in ("429-noreset", "429-badreset"):
            headers = {"x-rate-limit-limit": str(RATE_LIMITS.get(family, 300)), "x-rate-limit-remaining": "0"}
            if fault == "429-badreset":
                headers["x-rate-limit-reset"] = "soon"
            self._send(429, {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank",
                             "status": 429}, headers)
            return
        if fault in ("500", "503"):
            status = int(fault)
            title = "Internal Server Error" if status == 500 else "Service Unavailable"
            self._send(status, {"title": title, "detail": title, "type": "about:blank", "status": status})
            return
        if fault == "401":
            self._send(401, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})
            return
        if fault == "403":
            self._send(403, _ApiError(403, "client-forbidden", "Client Forbidden",
                                      "When authenticating requests to the Twitter API v2 endpoints, you must use "
                                      "keys and tokens from a Twitter developer App that is attached to a "
                                      "Project.").body())
            return
        auth = self.headers.get("Authorization") or ""
        if not auth:
            self._send(401, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})
            return
        if em.bearer_token and auth.startswith("Bearer ") and auth[7:] != em.bearer_token:
            self._send(401, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})
            return
        self.acting = None
        if auth.startswith("OAuth "):
            self.acting = em.acting_user(auth)
            if self.acting is None:  # an access token X does not know (revoked, or another app's)
                self._send(401, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})
                return
        principal = self.acting["id"] if self.acting else auth[-12:]
        with em._lock:  # who asked: the acting account, or the app's bearer token (tests assert on it)
            em.auth_log.append((method, path, self.acting["username"] if self.acting else None,
                                auth[7:] if auth.startswith("Bearer ") else None))
        try:
            if method == "GET" and path == "/2/tweets/search/stream":
                self._stream(query)
                return
            status, body = self._route(method, path, query, raw_body)
        except _ApiError as exc:
            self._send(exc.status, exc.body())
            return
        except QueryError as exc:
            self._send(400, _ApiError(400, "invalid-request", "Invalid Request", f"query: {exc}").body())
            return
        if family in ("search", "mentions", "users_tweets") and em.page_delay_s:
            time.sleep(em.page_delay_s)
        if fault == "loop-token" and isinstance(body.get("meta"), dict):
            asked = (query.get("next_token") or query.get("pagination_token") or [None])[0]
            if asked:
                body["meta"]["next_token"] = asked
        if fault == "malformed":
            payload = json.dumps(body).encode()
            self._send_bytes(200, payload[: max(len(payload) // 2, 1)], em._rate_headers(family, principal))
            return
        self._send(status, body, em._rate_headers(family, principal))

    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(body, ensure_ascii=False).encode(), headers,
                         "application/problem+json" if status >= 400 and "type" in body else None)

    def _send_bytes(self, status: int, payload: bytes, headers: dict[str, str] | None = None,
                    content_type: str | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("api-version", "2.159")
            self.send_header("content-type", content_type or "application/json; charset=utf-8")
            self.send_header("x-access-level", "read-write")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _drop(self) -> None:
        """Close the connection without an answer (RST), like a dead load balancer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -------------------------------------------------------------- routes
    def _route(self, method: str, path: str, q: dict[str, list[str]], raw_body: bytes) -> tuple[int, dict]:
        em = self.emulator
        parts = path.split("/")[1:]  # ["2", "tweets", ...]
        if method == "GET" and path == "/2/tweets/search/recent":
            query = (q.get("query") or [""])[0]
            if not query:
                raise _ApiError(400, "invalid-request", "Invalid Request", "query: is required")
            return 200, self._timeline(("search", query), compile_query(query), q, "next_token", 10, 100)
        if method == "GET" and len(parts) == 4 and parts[1] == "users" and parts[3] == "mentions":
            user = em._users.get(parts[2])
            if user is None:
                raise _ApiError(404, "resource-not-found", "Not Found Error", f"id: user {parts[2]} not found")
            handle = "@" + user["username"].lower()
            pattern = re.compile(re.escape(handle) + r"(?![\w])")
            uid = user["id"]
            return 200, self._timeline(
                ("mentions", uid),
                lambda p: p["author_id"] != uid and (pattern.search(p["_lower"]) is not None
                                                     or p.get("in_reply_to_user_id") == uid),
                q, "pagination_token", 5, 100)
        if method == "GET" and len(parts) == 4 and parts[1] == "users" and parts[3] == "tweets":
            uid = parts[2]
            if uid not in em._users:
                raise _ApiError(404, "resource-not-found", "Not Found Error", f"id: user {uid} not found")
            return 200, self._timeline(("tweets", uid), lambda p: p["author_id"] == uid, q, "pagination_token", 5, 100)
        if method == "GET" and path == "/2/users/me":
            me = self.acting or em._users[em.me["id"]]
            return 200, {"data": render_user(me, _split(q.get("user.fields")))}
        if path.startswith("/2/dm_"):
            return self._dm_route(method, parts, q, raw_body)
        if method == "GET" and len(parts) == 5 and parts[1:4] == ["users", "by", "username"]:
            user = em.user(parts[4])
            if user is None:
                return 200, {"errors": [{"value": parts[4], "detail": f"Could not find user with username: [{parts[4]}].",
                                         "title": "Not Found Error", "resource_type": "user", "parameter": "username",
                                         "resource_id": parts[4],
                                         "type": "https://api.twitter.com/2/problems/resource-not-found"}]}
            return 200, {"data": render_user(user, _split(q.get("user.fields")))}
        if method == "GET" and len(parts) == 3 and parts[1] == "tweets" and parts[2].isdigit():
            post = em._posts.get(parts[2])
            if post is None:
                return 200, {"errors": [{"value": parts[2], "detail": f"Could not find tweet with id: [{parts[2]}].",
                                         "title": "Not Found Error", "resource_type": "tweet", "parameter": "id",
                                         "resource_id": parts[2],
                                         "type": "https://api.twitter.com/2/problems/resource-not-found"}]}
            out = self._render_page([post], q)
            out["data"] = out["data"][0]
            return 200, out
        if method == "POST" and path == "/2/tweets":
            try:
                body = json.loads(raw_body or b"{}")
            except json.JSONDecodeError as exc:
                raise _ApiError(400, "invalid-request", "Invalid Request", f"body: not valid JSON: {exc.msg}") from None
            return 201, em._create_tweet(body, self.acting)
        if method == "DELETE" and len(parts) == 3 and parts[1] == "tweets":
            with em._lock:
                deleted = em._posts.pop(parts[2], None) is not None
                if deleted:
                    em._order.remove(parts[2])
                    em._version += 1
            return 200, {"data": {"deleted": deleted}}
        if path == "/2/tweets/search/stream/rules":
            return 200, self._rules(method, q, raw_body)
        raise _ApiError(404, "about:blank", "Not Found", f"no route for {method} {path}")

    def _dm_route(self, method: str, parts: list[str], q: dict[str, list[str]], raw_body: bytes) -> tuple[int, dict]:
        """Direct messages: user context only (an app bearer token gets 403, as on X)."""
        em = self.emulator
        if self.acting is None:
            raise _ApiError(403, "unsupported-authentication", "Unsupported Authentication",
                            "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint. "
                            "Supported authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context].")
        me = self.acting
        # /2/dm_conversations/with/:participant_id/messages
        if method == "POST" and len(parts) == 5 and parts[1:3] == ["dm_conversations", "with"] and parts[4] == "messages":
            try:
                body = json.loads(raw_body or b"{}")
            except json.JSONDecodeError as exc:
                raise _ApiError(400, "invalid-request", "Invalid Request", f"body: not valid JSON: {exc.msg}") from None
            return 201, em._create_dm(me, parts[3], body)
        if method == "GET" and parts[1:] == ["dm_events"]:
            return 200, self._dm_events(lambda e: me["id"] in (e["sender_id"], e["recipient_id"]), q)
        if method == "GET" and len(parts) == 5 and parts[1:3] == ["dm_conversations", "with"] and parts[4] == "dm_events":
            other = parts[3]
            return 200, self._dm_events(lambda e: {e["sender_id"], e["recipient_id"]} == {me["id"], other}, q)
        raise _ApiError(404, "about:blank", "Not Found", f"no route for {method} /{'/'.join(parts)}")

    def _dm_events(self, predicate: Callable[[dict], bool], q: dict[str, list[str]]) -> dict:
        em = self.emulator
        try:
            max_results = int((q.get("max_results") or ["100"])[0])
        except ValueError:
            raise _ApiError(400, "invalid-request", "Invalid Request", "max_results: must be a number") from None
        if not 1 <= max_results <= 100:
            raise _ApiError(400, "invalid-request", "Invalid Request", "max_results: must be between 1 and 100")
        token = (q.get("pagination_token") or [None])[0]
        with em._lock:
            events = sorted((e for e in em.dms if predicate(e)), key=lambda e: int(e["id"]), reverse=True)
        if token:
            try:
                below = int(base64.urlsafe_b64decode(token.encode() + b"==").decode())
            except (ValueError, UnicodeDecodeError):
                raise _ApiError(400, "invalid-request", "Invalid Request", "pagination_token: invalid token") from None
            events = [e for e in events if int(e["id"]) < below]
        page = events[:max_results]
        if not page:
            return {"meta": {"result_count": 0}}
        fields = _split(q.get("dm_event.fields")) | {"id", "event_type", "text"}
        expansions = _split(q.get("expansions"))
        data = []
        for event in page:
            item: dict[str, Any] = {"id": event["id"], "event_type": event["event_type"], "text": event["text"]}
            if "created_at" in fields:
                item["created_at"] = _iso(event["created_at"])
            if "sender_id" in fields or "sender_id" in expansions:
                item["sender_id"] = event["sender_id"]
            if "dm_conversation_id" in fields:
                item["dm_conversation_id"] = event["dm_conversation_id"]
            if "participant_ids" in fields:
                item["participant_ids"] = [event["sender_id"], event["recipient_id"]]
            data.append(item)
        out: dict[str, Any] = {"data": data, "meta": {"result_count": len(page)}}
        if "sender_id" in expansions:
            users = {e["sender_id"]: None for e in page}
            out["includes"] = {"users": [render_user(em._users[u], _split(q.get("user.fields"))) for u in users
                                         if u in em._users]}
        if len(events) > max_results:
            out["meta"]["next_token"] = base64.urlsafe_b64encode(page[-1]["id"].encode()).decode().rstrip("=")
        return out

    def _timeline(self, key: Any, predicate: Predicate, q: dict[str, list[str]], token_name: str,
                  min_results: int, max_allowed: int) -> dict:
        em = self.emulator
        try:
            max_results = int((q.get("max_results") or [str(min_results if min_results == 10 else 10)])[0])
        except ValueError:
            raise _ApiError(400, "invalid-request", "Invalid Request", "max_results: must be a number") from None
        if not min_results <= max_results <= max_allowed:
            raise _ApiError(400, "invalid-request", "Invalid Request",
                            f"max_results: must be between {min_results} and {max_allowed}")
        ids = em._matching_ids(key, predicate)
        since = int((q.get("since_id") or ["0"])[0] or 0)
        until = (q.get("until_id") or [None])[0]
        token = (q.get(token_name) or [None])[0]
        below: int | None = int(until) if until else None
        if token:
            try:
                below = int(base64.urlsafe_b64decode(token.encode() + b"==").decode())
            except (ValueError, UnicodeDecodeError):
                raise _ApiError(400, "invalid-request", "Invalid Request", f"{token_name}: invalid token") from None
        with em._lock:
            window = [i for i in ids if int(i) > since and (below is None or int(i) < below)]
            page = [em._posts[i] for i in window[:max_results] if i in em._posts]
        if not page:
            return {"meta": {"result_count": 0}}
        out = self._render_page(page, q)
        meta: dict[str, Any] = {"newest_id": page[0]["id"], "oldest_id": page[-1]["id"], "result_count": len(page)}
        if len(window) > max_results:
            meta["next_token"] = base64.urlsafe_b64encode(page[-1]["id"].encode()).decode().rstrip("=")
        out["meta"] = meta
        return out

    def _render_page(self, page: list[dict], q: dict[str, list[str]]) -> dict:
        em = self.emulator
        tweet_fields = _split(q.get("tweet.fields"))
        user_fields = _split(q.get("user.fields"))
        expansions = _split(q.get("expansions"))
        # Asking for an expansion makes the API include the field it expands, as X does.
        implied = {"author_id": "author_id", "in_reply_to_user_id": "in_reply_to_user_id",
                   "referenced_tweets.id": "referenced_tweets"}
        tweet_fields = tweet_fields | {implied[e] for e in expansions if e in implied}
        out: dict[str, Any] = {"data": [render_tweet(p, tweet_fields) for p in page]}
        includes: dict[str, list[dict]] = {}
        user_ids: dict[str, None] = {}
        tweets: dict[str, None] = {}
        for post in page:
            if "_raw" in post:
                continue
            if "author_id" in expansions:
                user_ids[post["author_id"]] = None
            if "in_reply_to_user_id" in expansions and post.get("in_reply_to_user_id"):
                user_ids[post["in_reply_to_user_id"]] = None
            if "referenced_tweets.id" in expansions:
                for ref in post.get("referenced_tweets") or []:
                    if ref["id"] in em._posts:
                        tweets[ref["id"]] = None
            if "referenced_tweets.id.author_id" in expansions:
                for ref in post.get("referenced_tweets") or []:
                    if ref["id"] in em._posts:
                        user_ids[em._posts[ref["id"]]["author_id"]] = None
        users = [render_user(em._users[u], user_fields) for u in user_ids if u in em._users]
        if users:
            includes["users"] = users
        referenced = [render_tweet(em._posts[t], tweet_fields) for t in tweets]
        if referenced:
            includes["tweets"] = referenced
        if includes:
            out["includes"] = includes
        return out

    def _rules(self, method: str, q: dict[str, list[str]], raw_body: bytes) -> dict:
        em = self.emulator
        now = datetime.now(timezone.utc)
        if method == "GET":
            with em._lock:
                rules = [{k: v for k, v in r.items() if not k.startswith("_")} for r in em._rules.values()]
            out: dict[str, Any] = {"meta": {"sent": _iso(now), "result_count": len(rules)}}
            if rules:
                out["data"] = rules
            return out
        body = json.loads(raw_body or b"{}")
        summary = {"created": 0, "not_created": 0, "valid": 0, "invalid": 0, "deleted": 0, "not_deleted": 0}
        created = []
        with em._lock:
            for rule in body.get("add") or []:
                predicate = compile_query(rule["value"])
                rule_id = str(int(time.time() * 1000) * 1000 + len(em._rules))
                em._rules[rule_id] = {"id": rule_id, "value": rule["value"], "tag": rule.get("tag"),
                                      "_predicate": predicate}
                created.append({"id": rule_id, "value": rule["value"], **({"tag": rule["tag"]} if rule.get("tag") else {})})
                summary["created"] += 1
                summary["valid"] += 1
            for rule_id in (body.get("delete") or {}).get("ids") or []:
                if em._rules.pop(str(rule_id), None) is not None:
                    summary["deleted"] += 1
                else:
                    summary["not_deleted"] += 1
        # Exactly one of the spec's two summary shapes: adding, or deleting.
        keys = ("deleted", "not_deleted") if body.get("delete") and not body.get("add") else \
            ("created", "not_created", "valid", "invalid")
        out = {"meta": {"sent": _iso(now), "summary": {k: summary[k] for k in keys}}}
        if created:
            out["data"] = created
        return out

    def _stream(self, q: dict[str, list[str]]) -> None:
        """Newline-delimited JSON of posts added while connected, with ``matching_rules``."""
        em = self.emulator
        queue: list[dict] = []
        with em._lock:
            em._stream_queues.append(queue)
        self.send_response(200)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True

        def chunk(data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        try:
            chunk(b"\r\n")
            while not em._stopping:
                with em._stream_cv:
                    if not queue:
                        em._stream_cv.wait(timeout=1.0)
                    items, queue[:] = list(queue), []
                if not items:
                    chunk(b"\r\n")  # keep-alive, as the real stream sends every 20 s
                    continue
                for item in items:
                    out = self._render_page([item["post"]], q)
                    out["data"] = out["data"][0]
                    out["matching_rules"] = item["rules"]
                    chunk(json.dumps(out).encode() + b"\r\n")
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            with em._lock:
                if queue in em._stream_queues:
                    em._stream_queues.remove(queue)


def _family(method: str, path: str) -> str:
    if path.startswith("/2/dm_conversations") and method == "POST":
        return "dm_create"
    if path.startswith("/2/dm_"):
        return "dm_events"
    if path.startswith("/2/tweets/search/recent"):
        return "search"
    if path.endswith("/mentions"):
        return "mentions"
    if path.startswith("/2/users/") and path.endswith("/tweets"):
        return "users_tweets"
    if path == "/2/users/me":
        return "me"
    if path.startswith("/2/users/by/username"):
        return "by_username"
    if path.startswith("/2/tweets/search/stream/rules"):
        return "rules"
    if path.startswith("/2/tweets/search/stream"):
        return "stream"
    if path == "/2/tweets" and method == "POST":
        return "create"
    if method == "DELETE":
        return "delete"
    return "tweet"
