"""The Mastodon listener (Mastodon.py): mention notifications, hashtag timelines, keyword search.

Paging forward without gaps: Mastodon's ``since_id`` returns the *newest* items above the id,
so a burst larger than one page would leave a hole. After the first round the listener pages
with ``min_id`` (the items immediately after the cursor, oldest first) and writes the cursor in
the same transaction as each page's mentions. The first round of a source walks back from the
newest item (``max_id``) for at most ``max_pages`` pages and sets the cursor when it is done.

Statuses are HTML; mentions keep the plain text. Boosts are skipped; posts by our own handles
(``[[brands]] handles.mastodon``) are stored as outbound so threads stay whole.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from doorstep.config import Config
from doorstep.models import Mention, utcnow
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.config import MastodonSettings, channel_settings
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

log = logging.getLogger("doorstep.listeners.mastodon")

CHANNEL = "mastodon"
#: Direct statuses (visibility "direct"): private messages, answered privately (responders.private).
DM_CHANNEL = "mastodon_dm"
_BREAKS = re.compile(r"<br\s*/?>|</p>\s*<p[^>]*>", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]+>")


def html_to_text(content: str) -> str:
    """Mastodon's status HTML as the plain text a person would read."""
    return html.unescape(_TAGS.sub("", _BREAKS.sub("\n", content or ""))).strip()


def _id_key(value: Any) -> tuple[int, str]:
    text = str(value)
    return (int(text), text) if text.isdigit() else (0, text)


def status_to_mention(status: dict[str, Any], own: set[str]) -> Mention:
    account = status.get("account") or {}
    acct = str(account.get("acct") or account.get("username") or "")
    created = status["created_at"]
    if isinstance(created, str):
        created = datetime.fromisoformat(created.replace("Z", "+00:00"))
    text = html_to_text(status.get("content") or "") or (status.get("spoiler_text") or "")
    reply_to = status.get("in_reply_to_id")
    # A direct status is a private message: it must never be answered by a public post.
    private = status.get("visibility") == "direct"
    return Mention(
        channel=DM_CHANNEL if private else CHANNEL,
        external_id=str(status["id"]),
        text=text,
        created_at=created,
        author_id=str(account["id"]) if account.get("id") is not None else None,
        author_handle=acct or None,
        author_name=account.get("display_name") or None,
        author_followers=int(account.get("followers_count") or 0),
        language=status.get("language"),
        url=status.get("url") or status.get("uri"),
        in_reply_to=str(reply_to) if reply_to else None,
        outbound=acct.lower().split("@")[0] in own or acct.lower() in own,
        raw={"id": str(status["id"]), "uri": status.get("uri"), "visibility": status.get("visibility")},
    )


@dataclass
class _Source:
    kind: str  # notifications | tag | search
    target: str
    #: Our account whose token reads it (notifications are per account); None: the shared token.
    account: str | None = None

    @property
    def cursor(self) -> str:
        return f"mastodon:{self.kind}:{self.target}" if self.target else f"mastodon:{self.kind}"


def _asking_case_sql() -> str:
    return ("select case_id from outbound_messages where channel = 'mastodon_dm' and case_id is not null and "
            "(external_id = ? or lower(target) = ?) order by (external_id = ?) desc, id desc limit 1")


def classify_error(exc: BaseException) -> Verdict | None:
    from mastodon import errors

    if isinstance(exc, errors.MastodonRatelimitError):
        return ("rate_limit", None)
    if isinstance(exc, errors.MastodonUnauthorizedError):
        return ("auth", "401 Unauthorized: MASTODON_ACCESS_TOKEN was refused (expired or revoked)")
    if isinstance(exc, errors.MastodonNetworkError):
        return ("retry", f"network error: {exc}")
    if isinstance(exc, errors.MastodonServerError):
        return ("retry", f"server error: {exc}")
    if isinstance(exc, errors.MastodonNotFoundError):
        return ("fail", f"404 Not Found: {exc}")
    if isinstance(exc, errors.MastodonAPIError) and "Could not parse response as JSON" in str(exc):
        log.warning("mastodon: malformed response body: %.2000s", exc)
        return ("retry", "malformed response body (logged)")
    if isinstance(exc, errors.MastodonAPIError):
        status = exc.args[1] if len(exc.args) > 1 else None
        if status == 403:
            return ("auth", f"403 Forbidden: the token lacks a scope (read:notifications, read:statuses): {exc}")
        if status == 429:
            return ("rate_limit", None)
        if isinstance(status, int) and status >= 500:
            return ("retry", str(exc))
        return ("fail", str(exc))
    if isinstance(exc, ValueError):  # an unreadable body
        return ("retry", f"malformed response: {exc}")
    return None


def _readable_rate_headers(response: Any, *args: Any, **kwargs: Any) -> Any:
    """requests response hook: drop an ``X-RateLimit-Reset`` that cannot be read.

    Mastodon.py raises a rate-limit error for *any* response whose reset header it cannot
    parse (even a 200), which would fail every request of the round. Dates pass as they are,
    numbers become whole epoch seconds; an unreadable value is removed, so a 429 falls back to
    the default rate-limit wait.
    """
    value = response.headers.get("X-RateLimit-Reset")
    if value is None or value.strip().isdigit():
        return response
    reset = parse_reset(value)
    if reset is None:
        log.warning("mastodon: unreadable X-RateLimit-Reset header %r; using the default rate-limit wait", value[:80])
        del response.headers["X-RateLimit-Reset"]
    elif not _looks_like_date(value):
        response.headers["X-RateLimit-Reset"] = str(int(reset + 0.999))  # "30.5" (seconds): epoch, as Mastodon.py reads
    return response


def _looks_like_date(value: str) -> bool:
    return any(c.isalpha() for c in value) or value.count("-") >= 2


class MastodonListener:
    def __init__(self, store: Store, config: Config, pipeline: Pipeline, *, client: Any = None,
                 settings: MastodonSettings | None = None, backoff: Backoff | None = None):
        self.store, self.config, self.pipeline = store, config, pipeline
        self.settings = settings or channel_settings(config, CHANNEL)
        self._client_given = client is not None
        if client is None:
            from doorstep.clients import mastodon_client, missing_mastodon_token

            missing = missing_mastodon_token(config)
            if missing:
                shared, *own = missing
                raise MissingCredentials(
                    f"mastodon: {shared} is not set" + (f", nor a brand account's own ({', '.join(own)})" if own else "")
                    + ": export it (a token with scopes read:notifications read:statuses, from the instance's "
                    "Preferences > Development) or put it in $DOORSTEP_SECRETS_FILE")
            client = mastodon_client(config)
        session = getattr(client, "session", None)
        if session is not None and hasattr(session, "hooks"):
            hooks = session.hooks.setdefault("response", [])
            if _readable_rate_headers not in hooks:
                hooks.append(_readable_rate_headers)
        self.client = client
        self._account_clients: dict[str, Any] = {}
        self.backoff = backoff or Backoff()
        self.own = config.own_handles(CHANNEL) | {a.lower().lstrip("@") for a in self.settings.accounts}

    def sources(self) -> list[_Source]:
        from doorstep.config import brand_accounts

        # Each brand account with a token of its own reads its own notifications (mentions and
        # direct messages to it); without any, the shared token's account is read, as before.
        own = [a for a in brand_accounts(self.config, CHANNEL) if a.has_own("ACCESS_TOKEN")]
        if own and not self._client_given:
            out = [_Source("notifications", a.handle.lower(), a.handle) for a in own]
        else:
            mine = self.settings.accounts[0].lstrip("@") if len(self.settings.accounts) == 1 else None
            out = [_Source("notifications", "", mine)]
        out += [_Source("tag", tag) for tag in self.settings.hashtags]
        out += [_Source("search", word) for word in self.settings.keywords]
        return out

    def poll_once(self) -> RoundResult:
        """Poll every source once; each fails on its own (a token without ``read:notifications``
        must not stop the hashtag and keyword sources)."""
        result = RoundResult(CHANNEL)
        poll_sources(CHANNEL, self.sources(), lambda source: self._poll_source(source, result), result, log,
                     store=self.store)
        record_round(self.store, result)
        return result

    # ------------------------------------------------------------------ fetching
    def _fetch(self, source: _Source, result: RoundResult, **params: Any) -> list[tuple[str, dict[str, Any]]]:
        """(cursor id, status) pairs of one page; notifications carry their own ids."""
        limit = self.settings.limit
        client = self.client_for(source)
        rate_reset = lambda: getattr(client, "ratelimit_reset", None)  # noqa: E731

        def classify(exc: BaseException) -> Verdict | None:
            verdict = classify_error(exc)
            if verdict and verdict[0] == "rate_limit":
                return ("rate_limit", rate_reset())
            return verdict

        if source.kind == "notifications":
            what = "mention notifications"
            page = call_with_retries(what, lambda: client.notifications(types=["mention"], limit=limit, **params),
                                     classify, self.backoff, result)
            return [(str(n["id"]), n.get("status")) for n in page or []]
        if source.kind == "tag":
            page = call_with_retries(f"#{source.target}", lambda: client.timeline_hashtag(source.target, limit=limit, **params),
                                     classify, self.backoff, result)
            return [(str(s["id"]), s) for s in page or []]
        found = call_with_retries(f"search {source.target!r}",
                                  lambda: client.search_v2(source.target, result_type="statuses", resolve=False,
                                                           limit=limit, **params),
                                  classify, self.backoff, result)
        return [(str(s["id"]), s) for s in (found or {}).get("statuses") or []]

    def _asking_case(self, mention: Mention) -> int | None:
        """The case whose private question this direct message answers (our status it replies to)."""
        handle = f"@{(mention.author_handle or '').lower()}"
        rows = self.store.rows(_asking_case_sql(), [mention.in_reply_to or "", handle, mention.in_reply_to or ""])
        return rows[0]["case_id"] if rows else None

    def client_for(self, source: _Source) -> Any:
        """The account's own client for its notifications; the shared one otherwise."""
        if source.account is None or self._client_given or not source.target:
            return self.client
        if source.target not in self._account_clients:
            from doorstep.clients import mastodon_client
            from doorstep.config import find_account

            self._account_clients[source.target] = mastodon_client(
                self.config, account=find_account(self.config, CHANNEL, source.account))
        return self._account_clients[source.target]

    def _poll_source(self, source: _Source, result: RoundResult) -> None:
        cursor = self.store.get_cursor(source.cursor)
        if cursor is None:
            self._first_round(source, result)
            return
        for _ in range(self.settings.max_pages):
            page = self._fetch(source, result, min_id=cursor)
            result.pages += 1
            if not page:
                return
            newest = max((item_id for item_id, _ in page), key=_id_key)
            if _id_key(newest) <= _id_key(cursor):
                # The server answered min_id with items not after it: paging on would fetch the
                # same page until max_pages is spent, every round.
                self._commit(source, page, result, None)
                raise SourceError(f"{source.kind} {source.target!r}: the server returned no item after "
                                  f"min_id {cursor}; stopped paging this source for this round")
            cursor = newest
            self._commit(source, page, result, cursor)
            if len(page) < self.settings.limit:
                return

    def _first_round(self, source: _Source, result: RoundResult) -> None:
        newest: str | None = None
        max_id: str | None = None
        for number in range(self.settings.max_pages):
            page = self._fetch(source, result, **({"max_id": max_id} if max_id else {}))
            result.pages += 1
            if page:
                newest = newest or max((i for i, _ in page), key=_id_key)
                oldest = min((i for i, _ in page), key=_id_key)
                if max_id is not None and _id_key(oldest) >= _id_key(max_id):
                    self._commit(source, page, result, None)
                    raise SourceError(f"{source.kind} {source.target!r}: the server returned no item before "
                                      f"max_id {max_id}; stopped paging this source for this round")
                max_id = oldest
            last = not page or len(page) < self.settings.limit or number == self.settings.max_pages - 1
            self._commit(source, page, result, newest if last else None)
            if last:
                return

    def _commit(self, source: _Source, page: list[tuple[str, dict[str, Any] | None]], result: RoundResult,
                cursor: str | None) -> None:
        mentions = []
        now = utcnow()
        for _, status in page:
            result.fetched += 1
            if not status:
                result.malformed += 1
                continue
            if status.get("reblog"):
                result.skipped += 1
                continue
            try:
                mention = status_to_mention(status, self.own)
            except Exception as exc:  # noqa: BLE001 - a broken status is skipped, never fatal
                result.malformed += 1
                log.warning("mastodon: skipping malformed status (%s: %s): %.2000s", type(exc).__name__, exc,
                            repr(dict(status)))
                continue
            if not mention.outbound:
                result.note_lag(mention.created_at, now)
            if source.kind == "notifications" and source.account:
                mention.account = source.account
            if mention.channel == DM_CHANNEL and not mention.outbound:
                mention.case_id = self._asking_case(mention)
            mentions.append(mention)
        if source.account:
            from doorstep.accounts import record_account_usage

            record_account_usage(self.store, CHANNEL, source.account, requests=1, reads=len(page))
        with self.store.transaction():
            if mentions:
                ingested = self.pipeline.ingest(mentions)
                result.stored += ingested.stored
                result.duplicates += ingested.duplicates
            if cursor is not None:
                self.store.set_cursor(source.cursor, cursor)
