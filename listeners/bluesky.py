"""The Bluesky listener (atproto): ``app.bsky.feed.searchPosts`` per query and mention notifications.

Search has no ``since_id``: each pass pages newest-first (``sort=latest``) with the API's
``cursor`` and ``since`` = the newest ``indexedAt`` of the last finished pass minus a minute
(late-indexed posts are caught; the overlap is absorbed by the pipeline's unique key).
Notifications (reasons mention, reply, quote) are paged until the first one already seen.
As for the X timelines, a pass may take several rounds: while it is under way the stored
cursor keeps, next to ``since`` / ``seen``, the newest item of the pass and the API's page
cursor to go on from, written in the transaction of each page, so a pass cut by the page
budget (``max_pages``) or a crash resumes where it stopped; ``since`` / ``seen`` move to the
newest only when the pass is complete. Notifications are never marked read: the team may use
the app too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from doorstep.config import Config
from doorstep.models import Mention, utcnow
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.config import BlueskySettings, channel_settings
from listeners.health import (
    Backoff,
    MissingCredentials,
    RoundResult,
    SourceError,
    Verdict,
    call_with_retries,
    parse_reset,
    poll_sources,
    record_round,
)

log = logging.getLogger("doorstep.listeners.bluesky")

CHANNEL = "bluesky"
MENTION_REASONS = {"mention", "reply", "quote"}
#: Overlap between passes, for posts indexed a little after their neighbours.
SINCE_OVERLAP = timedelta(seconds=60)


def _get(obj: Any, *names: str) -> Any:
    """Read a field from an atproto model or a plain dict (records of unknown types stay dicts)."""
    for name in names:
        if obj is None:
            return None
        obj = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    return obj


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def post_to_mention(uri: str, author: Any, record: Any, own: set[str], own_did: str | None) -> Mention:
    handle = _get(author, "handle")
    did = _get(author, "did")
    parent = _get(record, "reply", "parent", "uri")
    root = _get(record, "reply", "root", "uri")
    langs = _get(record, "langs") or []
    rkey = uri.rsplit("/", 1)[-1]
    return Mention(
        channel=CHANNEL,
        external_id=uri,
        text=_get(record, "text"),
        created_at=_time(_get(record, "created_at") or _get(record, "createdAt")),
        author_id=did,
        author_handle=handle,
        author_name=_get(author, "display_name") or _get(author, "displayName"),
        author_followers=int(_get(author, "followers_count") or 0),
        language=langs[0] if langs else None,
        url=f"https://bsky.app/profile/{handle or did}/post/{rkey}",
        thread_id=root or uri,
        in_reply_to=parent,
        outbound=(bool(handle) and handle.lower() in own) or (own_did is not None and did == own_did),
        raw={"uri": uri},
    )


def classify_error(exc: BaseException) -> Verdict | None:
    from atproto_client import exceptions

    if isinstance(exc, exceptions.RateLimitExceededError):
        headers = exc.response.headers if exc.response is not None else {}
        reset = headers.get("ratelimit-reset") or headers.get("RateLimit-Reset")
        # parse_reset reads what it can; "soon" or a missing header means the default wait.
        return ("rate_limit", parse_reset(reset))
    if isinstance(exc, exceptions.UnauthorizedError):
        return ("auth", f"{exc}: the Bluesky session was refused (check BLUESKY_HANDLE / BLUESKY_APP_PASSWORD)")
    if isinstance(exc, exceptions.LoginRequiredError):
        return ("auth", "not logged in: set BLUESKY_HANDLE and BLUESKY_APP_PASSWORD")
    if isinstance(exc, exceptions.NetworkError):
        return ("retry", f"network error: {_network_reason(exc)}")
    if isinstance(exc, exceptions.BadRequestError):
        return ("fail", f"400 {exc}")
    if isinstance(exc, exceptions.RequestException):
        status = exc.response.status_code if exc.response is not None else None
        return ("retry", f"{exc}") if status is None or status >= 500 else ("fail", str(exc))
    if isinstance(exc, (ValueError, exceptions.ModelError)):
        log.warning("bluesky: malformed response (%s): %.2000s", type(exc).__name__, exc)
        return ("retry", f"malformed response: {type(exc).__name__}")
    return None


def _network_reason(exc: BaseException) -> str:
    """atproto raises ``NetworkError()`` from httpx's error with no text of its own, so the
    reason read "network error: " (nothing): name the type, what caused it and the host."""
    cause = exc.__cause__ or exc.__context__
    what = f"{type(exc).__name__}" + (f" ({type(cause).__name__}{': ' + str(cause) if str(cause) else ''})"
                                      if cause is not None else "")
    try:
        url = cause.request.url if cause is not None else None  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx: ".request property has not been set"
        url = None
    host = f" reaching {url.host}{':' + str(url.port) if url.port else ''}" if url is not None else ""
    return f"{exc}: {what}{host}" if str(exc) else f"{what}{host}"


def _repeated_cursor(cursor: str | None, seen: set[str]) -> bool:
    """Whether the API handed out this page cursor before in this pass (remembering it if not).

    Following a repeated cursor fetches the same pages until ``max_pages`` is spent, every
    round; the source stops instead (the page is stored, the pass's cursor stays where it was,
    so nothing is skipped) and health shows it.
    """
    if not cursor:
        return False
    if cursor in seen:
        return True
    seen.add(cursor)
    return False


def _cursor_loop(what: str, cursor: str) -> SourceError:
    return SourceError(f"{what}: the API repeated page cursor {str(cursor)[:40]!r}; "
                       "stopped paging this source for this round")


@dataclass
class _Source:
    kind: str  # search | notifications
    target: str

    @property
    def cursor(self) -> str:
        return f"bluesky:{self.kind}:{self.target}" if self.target else f"bluesky:{self.kind}"


class BlueskyListener:
    def __init__(self, store: Store, config: Config, pipeline: Pipeline, *, client: Any = None,
                 settings: BlueskySettings | None = None, backoff: Backoff | None = None):
        self.store, self.config, self.pipeline = store, config, pipeline
        self.settings = settings or channel_settings(config, CHANNEL)
        self.backoff = backoff or Backoff()
        self._client = client
        self.own = config.own_handles(CHANNEL)
        if client is None:
            from doorstep.clients import missing_bluesky_login

            missing = missing_bluesky_login(config)
            shared = [name for name in missing if name in ("BLUESKY_HANDLE", "BLUESKY_APP_PASSWORD")]
            if missing:
                own = missing[len(shared):]
                raise MissingCredentials(
                    f"bluesky: {' and '.join(shared)} {'is' if len(shared) == 1 else 'are'} not set"
                    + (f", nor a brand account's own app password ({', '.join(own)})" if own else "")
                    + ": export them (an app password from Settings > App passwords) or put them in "
                    "$DOORSTEP_SECRETS_FILE")

    @property
    def client(self) -> Any:
        if self._client is None:  # logging in is a request: do it inside a round, with retries
            from doorstep.clients import bluesky_client

            from doorstep.config import brand_accounts

            # A brand account with an app password of its own logs in as itself; else the shared one.
            account = next((a for a in brand_accounts(self.config, CHANNEL) if a.has_own("APP_PASSWORD")), None)
            self._client = call_with_retries("bluesky: login", lambda: bluesky_client(self.config, account=account),
                                             classify_error, self.backoff)
        return self._client

    @property
    def own_did(self) -> str | None:
        session = getattr(self.client, "_session", None)
        return getattr(session, "did", None)

    def sources(self) -> list[_Source]:
        out = [_Source("search", q) for q in self.settings.queries]
        if self.settings.notifications:
            out.append(_Source("notifications", ""))
        if self.settings.direct_messages:
            out.append(_Source("chat", ""))
        return out

    def poll_once(self) -> RoundResult:
        """Poll every source once; each fails on its own (a refused search must not stop the
        notifications, and the other way round)."""
        result = RoundResult(CHANNEL)

        def poll(source: _Source) -> None:
            if source.kind == "search":
                self._poll_search(source, result)
            elif source.kind == "chat":
                self._poll_chat(source, result)
            else:
                self._poll_notifications(source, result)

        poll_sources(CHANNEL, self.sources(), poll, result, log, store=self.store)
        record_round(self.store, result)
        return result

    # ------------------------------------------------------------------ sources
    def _state(self, source: _Source) -> dict[str, Any]:
        raw = self.store.get_cursor(source.cursor)
        return json.loads(raw) if raw else {}

    def _pass_request(self, what: str, call: Any, params: dict[str, Any], state: dict[str, Any],
                      resumed: bool, result: RoundResult) -> Any:
        """One page request. A pass resumed from a page cursor stored last round whose cursor the
        API now refuses (a 400) starts again from the top (its ``since`` / ``seen`` kept): the pages
        committed already come again and the pipeline's unique key absorbs them."""
        try:
            return call_with_retries(what, lambda: call(params=params), classify_error, self.backoff, result)
        except SourceError as exc:
            if not resumed:
                raise
            log.warning("bluesky: %s: the stored page cursor was refused (%s); starting the pass again", what, exc)
            state["cursor"] = None
            params.pop("cursor", None)
            return call_with_retries(what, lambda: call(params=params), classify_error, self.backoff, result)

    def _poll_search(self, source: _Source, result: RoundResult) -> None:
        """One pass runs newest first from ``since`` down to the end of the results, over as many
        rounds as the page budget needs: while it is under way the cursor keeps the API's page
        cursor to go on from and the newest post of the pass (as the X timelines keep
        ``until_id`` and ``newest``); ``since`` moves only when the pass is complete."""
        state = self._state(source)
        newest: str | None = state.get("newest")
        page_cursor: str | None = state.get("cursor")
        resumed = bool(page_cursor)
        seen_cursors: set[str] = set()
        for number in range(self.settings.max_pages):
            params: dict[str, Any] = {"q": source.target, "limit": self.settings.limit, "sort": "latest"}
            if state.get("since"):
                params["since"] = state["since"]
            if page_cursor:
                params["cursor"] = page_cursor
            response = self._pass_request(f"search {source.target!r}", self.client.app.bsky.feed.search_posts,
                                          params, state, resumed and number == 0, result)
            result.pages += 1
            posts = list(_get(response, "posts") or [])
            for post in posts:
                indexed = _get(post, "indexed_at")
                if indexed and (newest is None or _time(indexed) > _time(newest)):
                    newest = str(indexed)
            asked, page_cursor = params.get("cursor"), _get(response, "cursor")
            complete = not posts or not page_cursor
            looping = not complete and _repeated_cursor(page_cursor, seen_cursors)
            new_state: dict[str, Any] | None = None
            if complete:  # everything newer than since is stored: the next pass starts from the newest
                if newest:
                    new_state = {"since": (_time(newest) - SINCE_OVERLAP).isoformat().replace("+00:00", "Z")}
                elif state.get("cursor"):  # a pass that found nothing more: close it
                    new_state = {"since": state.get("since")}
            else:  # the pass goes on (this round or the next) from the page after this one
                new_state = {"since": state.get("since"), "newest": newest,
                             "cursor": asked if looping else page_cursor}
            self._commit(source, [(p.uri, p.author, p.record) for p in posts], result, new_state)
            if looping:
                raise _cursor_loop(f"search {source.target!r}", page_cursor)
            if complete:
                return
        log.info("bluesky: search %r: page budget of %s reached, continuing next round", source.target,
                 self.settings.max_pages)

    def _poll_notifications(self, source: _Source, result: RoundResult) -> None:
        """Paged newest first until the first notification already seen; a pass cut by the page
        budget keeps its page cursor and its newest notification and goes on next round, and
        ``seen`` moves only when the pass reached it (as :meth:`_poll_search`)."""
        state = self._state(source)
        seen = _time(state["seen"]) if state.get("seen") else None
        newest: str | None = state.get("newest")
        page_cursor: str | None = state.get("cursor")
        resumed = bool(page_cursor)
        seen_cursors: set[str] = set()
        for number in range(self.settings.max_pages):
            params: dict[str, Any] = {"limit": self.settings.limit}
            if page_cursor:
                params["cursor"] = page_cursor
            response = self._pass_request("notifications", self.client.app.bsky.notification.list_notifications,
                                          params, state, resumed and number == 0, result)
            result.pages += 1
            items = list(_get(response, "notifications") or [])
            fresh = []
            reached_seen = False
            for item in items:
                indexed = _time(_get(item, "indexed_at"))
                if seen is not None and indexed <= seen:
                    reached_seen = True
                    continue
                newest = newest if newest and _time(newest) >= indexed else str(_get(item, "indexed_at"))
                if _get(item, "reason") in MENTION_REASONS:
                    fresh.append((item.uri, item.author, item.record))
            asked, page_cursor = params.get("cursor"), _get(response, "cursor")
            complete = reached_seen or not items or not page_cursor
            looping = not complete and _repeated_cursor(page_cursor, seen_cursors)
            new_state: dict[str, Any] | None = None
            if complete:  # the pass reached what was seen before: the next one stops at its newest
                if newest:
                    new_state = {"seen": newest}
                elif state.get("cursor"):  # a pass that found nothing more: close it
                    new_state = {"seen": state.get("seen")}
            else:
                new_state = {"seen": state.get("seen"), "newest": newest, "cursor": asked if looping else page_cursor}
            self._commit(source, fresh, result, new_state)
            if looping:
                raise _cursor_loop("notifications", page_cursor)
            if complete:
                return
        log.info("bluesky: notifications: page budget of %s reached, continuing next round", self.settings.max_pages)

    def _poll_chat(self, source: _Source, result: RoundResult) -> None:
        """Bluesky chat (``chat.bsky.convo.listConvos`` / ``getMessages`` via the bsky.chat proxy).

        Each conversation keeps the newest message ``rev`` seen; a customer's new messages become
        posts on ``bluesky_dm`` that join the case we asked privately from (the newest chat message
        we sent to that DID), where an order number they give confirms the link.
        """
        chat = self.client.with_bsky_chat_proxy().chat.bsky.convo
        state = self._state(source)
        convos = call_with_retries("chat conversations", lambda: chat.list_convos({"limit": 100}), classify_error,
                                   self.backoff, result)
        result.pages += 1
        own_did = self.own_did
        handle = _get(getattr(self.client, "_session", None), "handle")  # our account: the one logged in
        for convo in _get(convos, "convos") or []:
            convo_id = str(_get(convo, "id"))
            members = {str(_get(m, "did")): _get(m, "handle") for m in _get(convo, "members") or []}
            seen = state.get(convo_id)
            page = call_with_retries("chat messages", lambda: chat.get_messages({"convo_id": convo_id, "limit": 100}),
                                     classify_error, self.backoff, result)
            result.pages += 1
            mentions = []
            newest = seen
            for item in reversed(list(_get(page, "messages") or [])):  # oldest first
                rev = str(_get(item, "rev") or "")
                if seen and rev <= seen:
                    continue
                newest = rev if not newest or rev > newest else newest
                sender = str(_get(item, "sender", "did") or "")
                text = _get(item, "text")
                result.fetched += 1
                if not text or sender == own_did:
                    result.skipped += 1  # our own messages are already on the case as outbound messages
                    continue
                rows = self.store.rows(
                    "select case_id from outbound_messages where channel = 'bluesky_dm' and case_id is not null and "
                    "(target = ? or lower(target) = ?) order by id desc limit 1",
                    [sender, f"@{(members.get(sender) or '').lower()}"])
                mentions.append(Mention(
                    channel="bluesky_dm", external_id=str(_get(item, "id")), text=text,
                    created_at=_time(_get(item, "sent_at")), author_id=sender, author_handle=members.get(sender),
                    thread_id=convo_id, account=handle or None, case_id=rows[0]["case_id"] if rows else None,
                    raw={"convo_id": convo_id, "rev": rev},
                ))
            with self.store.transaction():
                if mentions:
                    ingested = self.pipeline.ingest(mentions)
                    result.stored += ingested.stored
                    result.duplicates += ingested.duplicates
                if newest and newest != seen:
                    state[convo_id] = newest
                    self.store.set_cursor(source.cursor, json.dumps(state))

    def _commit(self, source: _Source, items: list[tuple[str, Any, Any]], result: RoundResult,
                state: dict[str, Any] | None) -> None:
        mentions = []
        now = utcnow()
        own_did = self.own_did
        for uri, author, record in items:
            result.fetched += 1
            try:
                mention = post_to_mention(uri, author, record, self.own, own_did)
            except Exception as exc:  # noqa: BLE001 - a broken post is skipped, never fatal
                result.malformed += 1
                log.warning("bluesky: skipping malformed post %s (%s: %s): %.2000r", uri, type(exc).__name__, exc, record)
                continue
            if not mention.outbound:
                result.note_lag(mention.created_at, now)
            mentions.append(mention)
        with self.store.transaction():
            if mentions:
                ingested = self.pipeline.ingest(mentions)
                result.stored += ingested.stored
                result.duplicates += ingested.duplicates
            if state is not None:
                self.store.set_cursor(source.cursor, json.dumps(state))
