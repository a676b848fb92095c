"""The X listener: recent search per query and the mentions timeline per account, via tweepy.

Nothing lost, nothing twice:

* Each source (a query, an account's mentions, our own account's posts) keeps a cursor in the
  store: ``since_id`` of the last finished pass, plus, while a pass is under way, the newest id
  it saw and the oldest id already committed (``until_id``). The cursor is written in the
  same transaction as the page's mentions, so a process killed at any instant resumes at the
  first uncommitted page: committed pages are never fetched again, uncommitted ones are.
* The pipeline's unique key (channel, external_id) absorbs every other duplicate (two queries,
  stream and poll, a page fetched twice after a crash between fetch and commit).
* Retries go through :func:`listeners.health.call_with_retries` (tenacity): a 429 waits until
  ``x-rate-limit-reset`` (a missing or unreadable header means the default rate-limit wait, not
  a short retry and not a ``ValueError``); 5xx, network errors and unreadable bodies back off
  exponentially (capped, jittered); a 401/403 is an :class:`AuthError` that the health record
  shows ("renew X_BEARER_TOKEN"), never a silent stop.
* Each source fails on its own: a 403 on search (or one account) leaves the other sources
  polling, and the round's health lists every failed source. A ``next_token`` the API has
  already handed out stops that source's paging for the round (an error in health) instead of
  burning the page budget; malformed posts are skipped, counted and shown as a warning.

Our own posts (authored by a handle in ``config.own_handles("x")``) never open cases: they are
stored with ``outbound=True`` so threads stay whole. The accounts' own timelines are polled too,
so replies an agent wrote natively in the X app still join their threads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from doorstep.config import Config
from doorstep.models import Mention, utcnow
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from doorstep.accounts import account_usage_allows, record_account_usage
from listeners.config import XSettings, channel_settings
from listeners.health import (
    AuthError,
    Backoff,
    MissingCredentials,
    ListenerError,
    RoundResult,
    SourceError,
    Verdict,
    call_with_retries,
    parse_reset,
    poll_sources,
    record_error,
    record_round,
    record_success,
)

log = logging.getLogger("doorstep.listeners.x")

CHANNEL = "x"
EXPANSIONS = ["author_id", "referenced_tweets.id", "in_reply_to_user_id"]
TWEET_FIELDS = ["created_at", "conversation_id", "lang", "referenced_tweets", "in_reply_to_user_id", "public_metrics"]
USER_FIELDS = ["username", "name", "public_metrics"]
#: Longest payload excerpt written to the log for a malformed post or page.
LOG_PAYLOAD_CHARS = 2000


@dataclass
class Source:
    """One thing polled each round. ``cursor`` is its row in the store's cursors table."""

    kind: str  # "search" | "mentions" | "tweets" | "dm"
    target: str  # the query, or a user id
    label: str  # for logs and errors: the query or "@handle"
    #: Our account whose token polls it (its own rate limits and budget); None: the shared client.
    account: str | None = None

    @property
    def cursor(self) -> str:
        return f"x:{self.kind}:{self.target}"


def tweet_to_mention(tweet: dict[str, Any], users: dict[str, dict[str, Any]], own: set[str]) -> Mention:
    """Map one API v2 tweet (with ``includes.users``) to a Mention; raises on a malformed tweet."""
    author = users.get(str(tweet.get("author_id")), {})
    handle = author.get("username")
    replied_to = next((r.get("id") for r in tweet.get("referenced_tweets") or [] if r.get("type") == "replied_to"), None)
    metrics = author.get("public_metrics") or {}
    tweet_id = str(tweet["id"])
    return Mention(
        channel=CHANNEL,
        external_id=tweet_id,
        text=tweet["text"],
        created_at=datetime.fromisoformat(str(tweet["created_at"]).replace("Z", "+00:00")),
        author_id=str(tweet["author_id"]) if tweet.get("author_id") else None,
        author_handle=handle,
        author_name=author.get("name"),
        author_followers=int(metrics.get("followers_count") or 0),
        language=tweet.get("lang"),
        url=f"https://x.com/{handle or 'i/web'}/status/{tweet_id}",
        thread_id=str(tweet.get("conversation_id") or tweet_id),
        in_reply_to=str(replied_to) if replied_to else None,
        outbound=bool(handle) and handle.lower() in own,
        raw={k: tweet[k] for k in ("id", "author_id", "conversation_id", "referenced_tweets", "in_reply_to_user_id",
                                   "public_metrics") if k in tweet},
    )


def _is_retweet(tweet: dict[str, Any]) -> bool:
    return any(r.get("type") == "retweeted" for r in tweet.get("referenced_tweets") or [])


def _excerpt(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text[:LOG_PAYLOAD_CHARS]


def require_x_credentials() -> None:
    """Reading X needs the app's bearer token: without it every request is a 401 (or a long retry)."""
    from doorstep.config import secret

    if not secret("X_BEARER_TOKEN"):
        raise MissingCredentials(
            "x: X_BEARER_TOKEN is not set: export X_BEARER_TOKEN=... (the app's bearer token from the X developer "
            "portal) or put it in $DOORSTEP_SECRETS_FILE; for the local emulator any value works")


class XListener:
    """Polls X for mentions and runs them through the pipeline. One round: :meth:`poll_once`."""

    def __init__(self, store: Store, config: Config, pipeline: Pipeline, *, client: Any = None,
                 settings: XSettings | None = None, backoff: Backoff | None = None):
        self.store = store
        self.config = config
        self.pipeline = pipeline
        self.settings = settings or channel_settings(config, CHANNEL)
        #: A client a test passes in serves every account; otherwise each account polls with its own token.
        self._client_given = client is not None
        if client is None:
            from doorstep.clients import x_client

            require_x_credentials()
            client = x_client(config)
        # Raw JSON: one malformed tweet must be skippable, and tweepy's model objects would fail
        # on the whole page (and cost time) before we could look at it.
        client.return_type = dict
        hooks = client.session.hooks.setdefault("response", [])
        if _readable_rate_headers not in hooks:
            hooks.append(_readable_rate_headers)
        self.client = client
        self._account_clients: dict[str, Any] = {}
        self.backoff = backoff or Backoff()
        self.own = config.own_handles(CHANNEL)
        self._round: RoundResult | None = None

    # ------------------------------------------------------------------ round
    def poll_once(self) -> RoundResult:
        """Poll every source once; record health; never raises for a single failed source.

        Each source fails on its own (:func:`poll_sources`): a 403 on recent search (an access
        level without it) must not keep the mentions timeline from being polled.
        """
        result = self._round = RoundResult(CHANNEL)
        try:
            sources = self.sources(result)
        except Exception as exc:  # noqa: BLE001 - a bug or a broken store must still show in health
            result.errors.append(f"x: unexpected {type(exc).__name__}: {exc}")
            log.exception("x: round failed")
            sources = []
        poll_sources(CHANNEL, sources, lambda source: self._poll_source(source, result), result, log,
                     store=self.store)
        self._round = None
        record_round(self.store, result)
        return result

    def sources(self, result: RoundResult) -> list[Source]:
        if not self.settings.queries and not self.settings.accounts:
            # Nothing to poll is a misconfiguration, not a quiet success.
            result.errors.append("x: channels.x has no queries and no accounts: nothing is being listened to")
            return []
        sources = [Source("search", q, q) for q in self.settings.queries]
        for handle in self.settings.accounts:
            try:
                user_id = self.resolve_user_id(handle)
            except ListenerError as exc:  # this account only; the queries and other accounts go on
                result.errors.append(str(exc))
                log.error("%s", exc)
                continue
            ours = handle.lower() in self.own
            # Our own accounts poll with their own token: own rate limits, own budget.
            account = handle if ours else None
            sources.append(Source("mentions", user_id, f"@{handle} mentions", account))
            if ours:
                sources.append(Source("tweets", user_id, f"@{handle} own posts", account))
                if self.settings.direct_messages:
                    sources.append(Source("dm", user_id, f"@{handle} direct messages", handle))
        return sources

    def client_for(self, source: Source) -> Any:
        """The account's own client (its token) for its sources; the shared one for searches."""
        if source.account is None or self._client_given:
            return self.client
        key = source.account.lower()
        if key not in self._account_clients:
            from doorstep.clients import x_client
            from doorstep.config import find_account

            ref = find_account(self.config, CHANNEL, source.account)
            if ref is None:
                return self.client
            client = x_client(self.config, account=ref)
            client.return_type = dict
            self._account_clients[key] = client
        return self._account_clients[key]

    def resolve_user_id(self, handle: str) -> str:
        """Handle -> user id, asked once and cached in the cursors table (ids never change)."""
        key = f"x:user:{handle.lower()}"
        cached = self.store.get_cursor(key)
        if cached:
            return cached
        body = self._call(f"look up @{handle}", self.client.get_user, username=handle, user_fields=["username"])
        user = (body or {}).get("data")
        if not user or not user.get("id"):
            detail = "; ".join(e.get("detail", "") for e in (body or {}).get("errors", [])) or "no such user"
            raise SourceError(f"x: account @{handle}: {detail}")
        self.store.set_cursor(key, str(user["id"]))
        return str(user["id"])

    # ------------------------------------------------------------------ one source
    def _load_cursor(self, source: Source, name: str | None = None,
                     extra: tuple[str, ...] = ()) -> dict[str, str | None]:
        """The pass state of a source (row ``name``, else ``source.cursor``): ``since_id``,
        ``newest``, ``until_id`` and the ``extra`` keys (direct messages: ``next_token``)."""
        raw = self.store.get_cursor(name or source.cursor)
        state: dict[str, str | None] = {key: None for key in ("since_id", "newest", "until_id", *extra)}
        if not raw:
            return state
        if raw.isdigit():  # a plain since_id (older format, or set by hand)
            state["since_id"] = raw
            return state
        stored = json.loads(raw)
        return {key: stored.get(key) for key in state}

    def _poll_source(self, source: Source, result: RoundResult) -> None:
        if source.kind == "dm":
            self._poll_direct_messages(source, result)
            return
        if source.account and not account_usage_allows(self.store, self.config, CHANNEL, source.account, "reads"):
            raise SourceError(f"x: {source.label}: the daily read budget of @{source.account} is spent; "
                              "raise max_reads_per_day or wait for tomorrow")
        state = self._load_cursor(source)
        token: str | None = None
        seen_tokens: set[str] = set()
        for _ in range(self.settings.max_pages):
            params: dict[str, Any] = {
                "max_results": max(self.settings.max_results, 5),
                "expansions": EXPANSIONS,
                "tweet_fields": TWEET_FIELDS,
                "user_fields": USER_FIELDS,
            }
            if state["since_id"]:
                params["since_id"] = state["since_id"]
            if token:
                params["next_token" if source.kind == "search" else "pagination_token"] = token
            elif state["until_id"]:
                params["until_id"] = state["until_id"]
            body = self._fetch(source, params, state)
            result.pages += 1
            meta = body.get("meta") or {}
            mentions = self._page_mentions(body, result)
            if source.kind == "mentions" and source.account:
                for mention in mentions:  # the account it reached answers it (responders.accounts)
                    mention.account = source.account
            next_token = meta.get("next_token")
            if meta.get("result_count", len(body.get("data") or [])) and meta.get("newest_id"):
                state["newest"] = state["newest"] or str(meta["newest_id"])
                state["until_id"] = str(meta.get("oldest_id") or state["until_id"])
            if not next_token:  # the pass is complete: everything newer than since_id is stored
                if state["newest"]:
                    state["since_id"] = state["newest"]
                state["newest"] = state["until_id"] = None
            self._commit(source, mentions, state, result)
            if not next_token:
                return
            if next_token in seen_tokens or next_token == token:
                # The API handed back a token it gave before: following it would fetch the same
                # pages until the page budget is spent, every round. The cursor keeps the pass
                # where it is (nothing is skipped); health shows the fault.
                raise SourceError(f"x: {source.label}: the API repeated next_token {next_token[:40]!r}; "
                                  "stopped paging this source for this round")
            seen_tokens.add(next_token)
            token = next_token
        # Page budget spent: the cursor remembers where the pass stopped; the next round goes on.
        log.info("x: %s: page budget of %s reached, continuing next round", source.label, self.settings.max_pages)

    def _fetch(self, source: Source, params: dict[str, Any], state: dict[str, str | None]) -> dict[str, Any]:
        client = self.client_for(source)
        if source.kind == "search":
            call, args = client.search_recent_tweets, (source.target,)
        elif source.kind == "mentions":
            call, args = client.get_users_mentions, (source.target,)
        else:
            call, args = client.get_users_tweets, (source.target,)
        try:
            body = self._call(f"{source.kind} {source.label!r}", call, *args, **params)
        except SourceError as exc:
            # Recent search only reaches 7 days back: a cursor older than that is refused with a
            # 400. Start a fresh pass rather than stopping for good (anything older is gone anyway).
            if "since_id" in str(exc) and params.get("since_id"):
                log.warning("x: %s: since_id refused (%s); starting a fresh pass", source.label, exc)
                state.update(since_id=None, newest=None, until_id=None)
                params = {k: v for k, v in params.items() if k not in ("since_id", "until_id")}
                body = self._call(f"{source.kind} {source.label!r}", call, *args, **params)
            else:
                raise
        if not isinstance(body, dict):
            raise SourceError(f"x: {source.label}: unexpected response {_excerpt(body)[:200]}")
        if source.account:
            record_account_usage(self.store, CHANNEL, source.account, reads=len(body.get("data") or []),
                                 requests=1, rate=self._last_rate(client))
        return body

    @staticmethod
    def _last_rate(client: Any) -> dict[str, str] | None:
        """The x-rate-limit-* headers of the client's last answer (tweepy keeps no copy: the session hook does)."""
        return getattr(client, "_doorstep_last_rate", None)

    # ------------------------------------------------------------------ direct messages
    def _poll_direct_messages(self, source: Source, result: RoundResult) -> None:
        """The account's direct messages (``GET /2/dm_events``, newest first, with its own token).

        DM events have no ``since_id``: pages are read newest first until the last event seen
        (``since_id`` in the cursor). A pass keeps the timelines' state (the newest event of the
        pass, the oldest committed) plus the ``next_token`` to go on from, written with each page,
        so a pass cut by the page budget goes on next round and ``since_id`` moves to the newest
        only when the pass reached it. A customer's message becomes a mention on ``x_dm`` that
        joins the case we asked privately from (the newest private message we sent to that
        customer from this account), so their answer lands where the agent is waiting for it.
        """
        if not self._client_given:
            from doorstep.clients import missing_x_user_keys
            from doorstep.config import find_account

            missing = missing_x_user_keys(find_account(self.config, CHANNEL, source.account) if source.account else None)
            if missing:  # named here: tweepy would fail with "Consumer key must be string or bytes, not NoneType"
                raise SourceError(f"x: {source.label}: {', '.join(missing)} not set (direct_messages = true reads "
                                  "each account's direct messages with its user keys; set them, or direct_messages "
                                  "= false)")
        client = self.client_for(source)
        # The pass state of the timelines (since_id, newest, until_id; see _poll_source), plus the
        # page token to go on from: dm_events has no since_id / until_id, only pagination_token.
        # A cursor of earlier versions (the plain id of the newest event seen) reads as since_id.
        cursor_name = f"x:dm:{source.account.lower() if source.account else source.target}"
        state = self._load_cursor(source, cursor_name, ("next_token",))
        users: dict[str, dict[str, Any]] = {}
        seen_tokens: set[str] = set()
        for number in range(self.settings.max_pages):
            params: dict[str, Any] = {"max_results": 100, "event_types": "MessageCreate",
                                      "dm_event_fields": ["id", "text", "created_at", "sender_id", "dm_conversation_id"],
                                      "expansions": ["sender_id"], "user_fields": USER_FIELDS, "user_auth": True}
            token = state["next_token"]
            if token:
                params["pagination_token"] = token
            what = f"direct messages of {source.label}"
            try:
                body = self._call(what, client.get_direct_message_events, **params)
            except SourceError as exc:
                # A token stored last round that the API no longer takes: start the pass again from
                # the newest (since_id kept); the events committed already are absorbed as duplicates.
                if not (number == 0 and token):
                    raise
                log.warning("x: %s: stored pagination_token refused (%s); starting the pass again", source.label, exc)
                state.update(newest=None, until_id=None, next_token=None)
                params.pop("pagination_token")
                body = self._call(what, client.get_direct_message_events, **params)
            result.pages += 1
            if not isinstance(body, dict):
                raise SourceError(f"x: {source.label}: unexpected response {_excerpt(body)[:200]}")
            for user in (body.get("includes") or {}).get("users") or []:
                users[str(user.get("id"))] = user
            page = body.get("data") or []
            record_account_usage(self.store, CHANNEL, source.account or "", reads=len(page), requests=1,
                                 rate=self._last_rate(client))
            events: list[dict[str, Any]] = []
            reached = False
            for event in page:
                if state["since_id"] and int(event["id"]) <= int(state["since_id"]):
                    reached = True
                    break
                state["newest"] = state["newest"] or str(event["id"])
                state["until_id"] = str(event["id"])
                events.append(event)
            next_token = (body.get("meta") or {}).get("next_token")
            complete = reached or not next_token
            if complete:  # the pass reached the last event seen: everything newer is stored
                if state["newest"]:
                    state["since_id"] = state["newest"]
                state["newest"] = state["until_id"] = state["next_token"] = None
            elif next_token not in seen_tokens and next_token != token:
                state["next_token"] = next_token
            self._commit_dms(source, cursor_name, events, users, state, result)
            if complete:
                return
            if next_token in seen_tokens or next_token == token:
                # As for the timelines: the cursor keeps the pass where it is; health shows the fault.
                raise SourceError(f"x: {source.label}: the API repeated next_token {next_token[:40]!r}; "
                                  "stopped paging this source for this round")
            seen_tokens.add(next_token)
        # Page budget spent: the cursor remembers where the pass stopped; the next round goes on.
        log.info("x: %s: page budget of %s reached, continuing next round", source.label, self.settings.max_pages)

    def _commit_dms(self, source: Source, cursor_name: str, events: list[dict[str, Any]],
                    users: dict[str, dict[str, Any]], state: dict[str, str | None], result: RoundResult) -> None:
        """One page of DM events and the pass state, in one transaction (as :meth:`_commit`)."""
        mentions = []
        for event in reversed(events):  # oldest first, as the pipeline expects
            result.fetched += 1
            if str(event.get("sender_id")) == source.target or event.get("event_type", "MessageCreate") != "MessageCreate":
                result.skipped += 1  # our own messages are already on the case as outbound messages
                continue
            try:
                mentions.append(self._dm_to_mention(event, users, source))
            except Exception as exc:  # noqa: BLE001 - a broken event is skipped, never fatal
                result.malformed += 1
                log.warning("x: skipping malformed direct message (%s: %s): %s", type(exc).__name__, exc, _excerpt(event))
        self._commit(source, mentions, state, result, cursor_name)

    def _dm_to_mention(self, event: dict[str, Any], users: dict[str, dict[str, Any]], source: Source) -> Mention:
        sender_id = str(event["sender_id"])
        author = users.get(sender_id, {})
        handle = author.get("username")
        rows = self.store.rows(
            "select case_id from outbound_messages where channel = 'x_dm' and case_id is not null and "
            "(target = ? or lower(target) = ?) and (account is null or lower(account) = ?) order by id desc limit 1",
            [sender_id, f"@{(handle or '').lower()}", (source.account or "").lower()])
        return Mention(
            channel="x_dm",
            external_id=str(event["id"]),
            text=event["text"],
            created_at=datetime.fromisoformat(str(event["created_at"]).replace("Z", "+00:00")),
            author_id=sender_id,
            author_handle=handle,
            author_name=author.get("name"),
            thread_id=str(event.get("dm_conversation_id") or sender_id),
            account=source.account,
            case_id=rows[0]["case_id"] if rows else None,
            raw={"id": str(event["id"]), "dm_conversation_id": event.get("dm_conversation_id")},
        )

    def _page_mentions(self, body: dict[str, Any], result: RoundResult) -> list[Mention]:
        users = {}
        for user in (body.get("includes") or {}).get("users") or []:
            if isinstance(user, dict) and user.get("id"):
                users[str(user["id"])] = user
        mentions = []
        now = utcnow()
        for tweet in body.get("data") or []:
            result.fetched += 1
            try:
                if not self.settings.include_retweets and _is_retweet(tweet):
                    result.skipped += 1
                    continue
                mention = tweet_to_mention(tweet, users, self.own)
            except Exception as exc:  # noqa: BLE001 - any broken post is skipped, never fatal
                result.malformed += 1
                log.warning("x: skipping malformed post (%s: %s): %s", type(exc).__name__, exc, _excerpt(tweet))
                continue
            if not mention.outbound:
                result.note_lag(mention.created_at, now)
            mentions.append(mention)
        return mentions

    def _commit(self, source: Source, mentions: list[Mention], state: dict[str, str | None], result: RoundResult,
                name: str | None = None) -> None:
        with self.store.transaction():
            ingested = self.pipeline.ingest(mentions) if mentions else None
            self.store.set_cursor(name or source.cursor, json.dumps(state, separators=(",", ":")))
        if ingested is not None:
            result.stored += ingested.stored
            result.duplicates += ingested.duplicates

    # ------------------------------------------------------------------ retries
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return call_with_retries(f"x: {what}", lambda: fn(*args, **kwargs), classify_error, self.backoff, self._round)


def classify_error(exc: BaseException) -> Verdict | None:
    """How the shared retry policy treats a tweepy or requests failure."""
    import requests
    import tweepy

    if isinstance(exc, tweepy.TooManyRequests):
        return ("rate_limit", getattr(exc, "reset_time", None))
    if isinstance(exc, tweepy.Unauthorized):
        return ("auth", "401 Unauthorized: the X credentials were refused (expired or revoked X_BEARER_TOKEN / "
                        "access token); renew them and restart the listener")
    if isinstance(exc, tweepy.Forbidden):
        return ("auth", "403 Forbidden: the app lacks permission or access level for this endpoint "
                        f"({_api_message(exc)})")
    if isinstance(exc, (tweepy.BadRequest, tweepy.NotFound)):
        return ("fail", f"{exc.response.status_code}: {_api_message(exc)}")
    if isinstance(exc, json.JSONDecodeError):
        log.warning("x: malformed response body (%s): %s", exc, _excerpt(exc.doc))
        return ("retry", f"malformed response body: {exc}")
    if isinstance(exc, (tweepy.TwitterServerError, requests.RequestException)):
        return ("retry", _short(exc))
    return None


def _readable_rate_headers(response: Any, *args: Any, **kwargs: Any) -> Any:
    """requests response hook: make ``x-rate-limit-reset`` an integer tweepy can read.

    tweepy calls ``int()`` on the header of a 429; a proxy or a broken edge that sends
    ``"soon"`` or ``"1764.5"`` would end the whole round in a ``ValueError``. Readable values
    (a float, a date, seconds to wait) become epoch seconds; unreadable ones are dropped, so
    the rate-limit wait falls back to :attr:`Backoff.rate_limit_default_s`.
    """
    value = response.headers.get("x-rate-limit-reset")
    if value is not None and not value.strip().isdigit():
        reset = parse_reset(value)
        if reset is None:
            log.warning("x: unreadable x-rate-limit-reset header %r; using the default rate-limit wait", value[:80])
            del response.headers["x-rate-limit-reset"]
        else:
            response.headers["x-rate-limit-reset"] = str(int(reset + 0.999))
    return response


def _api_message(exc: Any) -> str:
    messages = getattr(exc, "api_messages", None) or getattr(exc, "api_errors", None)
    if messages:
        return "; ".join(str(m) for m in messages)[:500]
    try:
        return exc.response.text[:500]
    except Exception:  # noqa: BLE001
        return str(exc)[:500]


def _short(exc: BaseException) -> str:
    from doorstep.redaction import redact

    return redact(f"{type(exc).__name__}: {exc}")[:300]


class XStream:
    """The filtered stream, in a background thread, next to polling (never instead of it).

    The stream is not on every access level and it drops; polling with ``since_id`` stays the
    source of truth and the pipeline stores a post seen by both once. Rules are one per
    configured query, always tagged ``doorstep:<hash>`` (tweepy fails on untagged matches), and
    rules with another ``doorstep:`` tag are removed. Connects, drops and refusals are written to
    the ``x:stream`` health row, so a stream that keeps dropping is visible.
    """

    HEALTH = "x:stream"

    def __init__(self, db_path: str, config: Config, *, classifier: Any = None, base_url: str | None = None):
        self.db_path = db_path
        self.config = config
        self.classifier = classifier
        self.base_url = base_url
        self.settings: XSettings = channel_settings(config, CHANNEL)
        self.own = config.own_handles(CHANNEL)
        self._store: Store | None = None
        self._pipeline: Pipeline | None = None
        self._client: Any = None
        self.received = 0

    def _open(self) -> tuple[Store, Pipeline]:
        if self._store is None:
            self._store = Store(self.db_path)
            self._pipeline = Pipeline(self._store, self.config, classifier=self.classifier)
        assert self._pipeline is not None
        return self._store, self._pipeline

    def rule_tag(self, query: str) -> str:
        import hashlib

        return "doorstep:" + hashlib.sha1(query.encode()).hexdigest()[:10]

    def client(self) -> Any:
        import tweepy

        from doorstep.clients import mount_base_url, x_base_url
        from doorstep.config import secret

        owner = self

        class _Stream(tweepy.StreamingClient):
            def on_connect(self) -> None:
                store, _ = owner._open()
                record_success(store, owner.HEALTH, fetched=0, stored=0)

            def on_response(self, response: Any) -> None:
                owner.handle(response)

            def on_request_error(self, status_code: int) -> None:
                store, _ = owner._open()
                hint = {401: " (X_BEARER_TOKEN refused)", 403: " (the access level has no filtered stream)"}.get(status_code, "")
                record_error(store, owner.HEALTH, f"x: stream refused with HTTP {status_code}{hint}")
                if status_code in (401, 403):
                    self.disconnect()

            def on_connection_error(self) -> None:
                store, _ = owner._open()
                record_error(store, owner.HEALTH, "x: stream connection dropped; reconnecting")

            def on_exception(self, exception: Exception) -> None:
                store, _ = owner._open()
                record_error(store, owner.HEALTH, f"x: stream stopped: {type(exception).__name__}: {exception}")
                log.exception("x: stream stopped", exc_info=exception)

        if self._client is None:
            # A daemon thread: the stream must not keep a stopped listener process alive.
            self._client = _Stream(secret("X_BEARER_TOKEN") or "", wait_on_rate_limit=False, daemon=True)
            mount_base_url(self._client.session, (self.base_url or x_base_url(self.config)).rstrip("/"), 90.0)
        return self._client

    def sync_rules(self) -> list[str]:
        """Make the stream's doorstep rules equal to the configured queries; returns their tags."""
        import tweepy

        client = self.client()
        wanted = {self.rule_tag(q): q for q in self.settings.queries}
        existing = client.get_rules().data or []
        stale = [r.id for r in existing if (r.tag or "").startswith("doorstep:") and wanted.get(r.tag) != r.value]
        present = {r.tag for r in existing if wanted.get(r.tag or "") == r.value}
        if stale:
            client.delete_rules(stale)
        missing = [tweepy.StreamRule(q, tag=t) for t, q in wanted.items() if t not in present]
        if missing:
            client.add_rules(missing)
        return sorted(wanted)

    def handle(self, response: Any) -> None:
        store, pipeline = self._open()
        users = {str(u.id): u.data for u in (response.includes or {}).get("users", [])}
        tweet = getattr(response.data, "data", None) or {}
        try:
            if not self.settings.include_retweets and _is_retweet(tweet):
                return
            mention = tweet_to_mention(tweet, users, self.own)
        except Exception as exc:  # noqa: BLE001 - a broken post is skipped, never fatal
            log.warning("x: stream: skipping malformed post (%s): %s", exc, _excerpt(tweet))
            # Counted and shown (status "warning"), not only logged: a stream that drops posts
            # must not look healthy.
            record_success(store, self.HEALTH, fetched=1, stored=0, malformed=1,
                           warning="x: stream: skipped a malformed post (in the listener log with its payload)")
            return
        with store.transaction():
            result = pipeline.ingest([mention])
        self.received += 1
        record_success(store, self.HEALTH, fetched=1, stored=result.stored)

    def start(self) -> Any:
        """Sync the rules and connect in a daemon thread (returned)."""
        self.sync_rules()
        return self.client().filter(expansions=EXPANSIONS, tweet_fields=TWEET_FIELDS, user_fields=USER_FIELDS,
                                    threaded=True)

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()


def run_forever(listener: XListener, poll_seconds: float | None = None, stop: Any = None) -> None:
    """Poll until ``stop()`` is true (``doorstep listen x`` without ``--once``)."""
    import time

    interval = poll_seconds or listener.settings.poll_seconds
    while not (stop and stop()):
        started = time.monotonic()
        try:
            result = listener.poll_once()
            log.info("%s", result.summary())
        except Exception as exc:  # noqa: BLE001 - keep polling; health shows the failure
            record_error(listener.store, CHANNEL, f"{type(exc).__name__}: {exc}")
            log.exception("x: round failed")
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


__all__ = ["XListener", "XStream", "Source", "tweet_to_mention", "ListenerError", "AuthError", "run_forever"]
