"""Listener health: the guard against silent loss.

The worst failure of a care tool is a channel that stops without anyone noticing (an expired
token, a revoked permission, a stream that keeps dropping). Every polling round therefore ends
in exactly one write here, success or error (a round whose every source another worker was
polling leaves it to that worker's round), and the console shows :func:`listener_health`,
including channels that have not succeeded for a while (``stale``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from doorstep.models import utcnow
from doorstep.store import Store, parse_time

#: A listener that has not succeeded for this many poll intervals is shown as stale.
STALE_AFTER_INTERVALS = 3


def _stamp(at: datetime | None) -> str:
    # Microseconds, so an error and the success right after it never share a timestamp.
    return (at or utcnow()).isoformat(timespec="microseconds")


def _ensure(store: Store, name: str) -> None:
    store.db.execute(
        "insert into listener_health (name, fetched, stored, errors) values (?, 0, 0, 0) on conflict do nothing", [name]
    )


def record_success(store: Store, name: str, *, fetched: int, stored: int, lag_seconds: float | None = None,
                   at: datetime | None = None, malformed: int = 0, warning: str | None = None) -> None:
    """A round that reached every source: counts add up, the error stays visible until now.

    ``warning`` (with ``malformed``, the posts skipped as unreadable) marks a round that
    succeeded but dropped something: the console shows it as ``warning``, not ``ok``.
    """
    from doorstep.redaction import redact

    now = _stamp(at)
    _ensure(store, name)
    store.db.execute(
        "update listener_health set last_success_at = ?, lag_seconds = coalesce(?, lag_seconds), "
        "fetched = fetched + ?, stored = stored + ?, malformed = coalesce(malformed, 0) + ?, updated_at = ?, "
        "last_outcome = ? where name = ?",
        [now, lag_seconds, fetched, stored, malformed, now, "warning" if warning else "ok", name],
    )
    if warning:
        store.db.execute("update listener_health set last_warning = ?, last_warning_at = ? where name = ?",
                         [redact(warning)[:2000], now, name])


def record_error(store: Store, name: str, error: str, *, fetched: int = 0, stored: int = 0,
                 lag_seconds: float | None = None, at: datetime | None = None, malformed: int = 0) -> None:
    """A round with at least one failed source. ``error`` must not contain secrets."""
    from doorstep.redaction import redact

    now = _stamp(at)
    _ensure(store, name)
    store.db.execute(
        "update listener_health set last_error_at = ?, last_error = ?, errors = errors + 1, "
        "lag_seconds = coalesce(?, lag_seconds), fetched = fetched + ?, stored = stored + ?, "
        "malformed = coalesce(malformed, 0) + ?, updated_at = ?, last_outcome = 'error' where name = ?",
        [now, redact(error)[:2000], lag_seconds, fetched, stored, malformed, now, name],
    )


def add_stored(store: Store, name: str, stored: int) -> None:
    """Posts a listener fetched that were stored later, by another job (PostgreSQL's ``ingest``
    jobs): they count in ``stored`` like the posts a round stores itself. Not a round: the
    listener's outcome and times stay as its last round left them."""
    if stored:
        _ensure(store, name)
        store.db.execute("update listener_health set stored = stored + ? where name = ?", [stored, name])


def failing(row: dict[str, Any]) -> bool:
    """Whether a health row's last outcome was an error (its latest write, success or error, decides).

    The order of the writes, not their timestamps: after the wall clock stepped back, an error
    written later may carry an earlier time than the last success. Rows written before
    ``last_outcome`` existed compare their timestamps."""
    outcome = row.get("last_outcome")
    if outcome:
        return outcome == "error"
    success, error = parse_time(row.get("last_success_at")), parse_time(row.get("last_error_at"))
    return error is not None and (success is None or error >= success)


def record_rejected(store: Store, name: str, count: int = 1) -> None:
    """Count requests refused before they were trusted (unsigned, badly signed).

    Anyone can send those, so they only add to ``rejected``: they never write ``last_error``
    (which would flip the listener to ``error`` and fire the listener alert) and nothing about
    the sender (no address) is stored.
    """
    _ensure(store, name)
    store.db.execute(
        "update listener_health set rejected = coalesce(rejected, 0) + ?, updated_at = ? where name = ?",
        [count, _stamp(None), name],
    )


def listener_health(store: Store, *, poll_seconds: dict[str, float] | None = None,
                    now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per listener for the console, with ``status``: ok, warning, error, stale or never.

    ``error`` when the last write was an error, not a success (the team must act: renew a
    token, restore a permission); ``stale`` when the last success is older than
    ``STALE_AFTER_INTERVALS`` poll intervals (``poll_seconds`` per name, default 60 s);
    ``warning`` when the latest successful round skipped malformed posts (``last_warning``).
    Which write was last is the order of the writes (``last_outcome``), not their timestamps,
    which a wall clock stepped back puts out of order.
    """
    now = now or utcnow()
    rows = [dict(r) for r in store.db.query("select * from listener_health order by name")]
    for row in rows:
        success = parse_time(row.get("last_success_at"))
        warning = parse_time(row.get("last_warning_at"))
        interval = (poll_seconds or {}).get(row["name"], 60.0)
        if row.get("last_outcome"):
            warned = row["last_outcome"] == "warning"
        else:
            warned = warning is not None and success is not None and warning >= success
        if failing(row):
            row["status"] = "error"
        elif success is None:
            row["status"] = "never"
        elif now - success > timedelta(seconds=interval * STALE_AFTER_INTERVALS):
            row["status"] = "stale"
        elif warned:
            row["status"] = "warning"
        else:
            row["status"] = "ok"
    return rows


# ------------------------------------------------------------------ rounds and retries
class ListenerError(RuntimeError):
    """A polling round did not reach every source; the message says which and why."""


class MissingCredentials(ValueError):
    """A listener was started without the credentials it needs; said at once, by the names that
    would set them, instead of after a round of requests that cannot succeed."""


class AuthError(ListenerError):
    """Credentials expired or a permission was revoked: retrying will not help, a person must act."""


class SourceError(ListenerError):
    """One source (query, account, hashtag) failed this round; the others still ran."""


@dataclass
class RoundResult:
    """What one polling round of one channel did (the CLI prints it, health stores it)."""

    channel: str
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    skipped: int = 0
    malformed: int = 0
    rate_limited: int = 0
    retries: int = 0
    pages: int = 0
    lag_seconds: float | None = None
    errors: list[str] = field(default_factory=list)
    #: Sources left this round to another poller that holds their lock (see :func:`poll_sources`).
    busy: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def warning(self) -> str | None:
        """What health shows for a round that succeeded but skipped posts."""
        if not self.malformed:
            return None
        return (f"{self.channel}: skipped {self.malformed} malformed post{'s' if self.malformed != 1 else ''} "
                "(each is in the listener log with its payload)")

    def summary(self) -> str:
        text = (f"{self.channel}: {self.fetched} fetched, {self.stored} new, {self.duplicates} already stored, "
                f"{self.skipped} skipped, {self.malformed} malformed, {self.pages} pages, "
                f"{self.rate_limited} rate-limit waits, {self.retries} retries")
        if self.busy:
            text += f", {self.busy} source{'s' if self.busy != 1 else ''} left to another poller"
        return text + ("; errors: " + "; ".join(self.errors) if self.errors else "")

    def note_lag(self, created_at: datetime, now: datetime) -> None:
        lag = max((now - created_at).total_seconds(), 0.0)
        self.lag_seconds = lag if self.lag_seconds is None else max(self.lag_seconds, lag)


def record_round(store: Store, result: RoundResult, name: str | None = None) -> None:
    """Write one round's outcome to the health table (one row per channel).

    A round that polled nothing because another poller held every source writes nothing: the
    holder writes its own round (this one would only overwrite its lag with zero)."""
    if result.busy and not result.pages and not result.fetched and result.ok:
        return
    lag = result.lag_seconds if result.lag_seconds is not None else (0.0 if result.ok else None)
    if result.ok:
        name = name or result.channel
        before = _outcome(store, name)
        record_success(store, name, fetched=result.fetched, stored=result.stored, lag_seconds=lag,
                       malformed=result.malformed, warning=result.warning)
        _keep_failing_while_posts_are_kept(store, name, before)
    else:
        errors = result.errors + ([result.warning] if result.warning else [])
        record_error(store, name or result.channel, "; ".join(errors), fetched=result.fetched,
                     stored=result.stored, lag_seconds=lag, malformed=result.malformed)


#: Said in every health error about posts a failed job left staged (commands/jobs_queue.py writes it too):
#: a round finding it on the row leaves that error, the one naming the cause, as it is.
KEPT_FOR_RETRY = "kept for a retry"


def kept_posts(store: Store, name: str) -> tuple[int, list[int]]:
    """How many posts of listener ``name`` wait in batches whose job failed, and those batches' ids.

    PostgreSQL only: there a round only stages what it fetched (``job_batches``) and moves its cursor;
    ``doorstep.classify`` / ``doorstep.ingest`` jobs store the posts. A job that failed for good
    (``failed`` in procrastinate's table) leaves its posts staged until someone retries it: fetched,
    past the cursor, not stored. A batch still being tried (or not yet) is not counted."""
    if not getattr(getattr(store, "dialect", None), "postgres", False):
        return 0, []
    from doorstep.dialect import DATABASE_ERRORS
    from doorstep.job_queue import CLASSIFY_TASK, INGEST_TASK

    try:
        if not store.rows("select to_regclass('procrastinate_jobs') is not null and "
                          "to_regclass('job_batches') is not null as ready")[0]["ready"]:
            return 0, []
        rows = store.rows(
            "select b.id, count(*) as n from job_batches b cross join lateral jsonb_array_elements(b.posts::jsonb) p "
            "where regexp_replace(p ->> 'channel', '_dm$', '') = ? and exists (select 1 from procrastinate_jobs j "
            "where j.status = 'failed' and j.task_name in (?, ?) and j.args ->> 'batch' = b.id::text) "
            "group by b.id order by b.id", [name, CLASSIFY_TASK, INGEST_TASK])
    except DATABASE_ERRORS:  # the round's own health write matters more than this check
        logging.getLogger("doorstep.listeners").exception("%s: could not look for posts of failed jobs", name)
        return 0, []
    return sum(int(r["n"]) for r in rows), [int(r["id"]) for r in rows]


def _outcome(store: Store, name: str) -> tuple[str | None, str | None]:
    """The health row's last outcome and last error (None, None before its first write)."""
    row = store.db.execute("select last_outcome, last_error from listener_health where name = ?", [name]).fetchone()
    return (row[0], row[1]) if row is not None else (None, None)


def _keep_failing_while_posts_are_kept(store: Store, name: str, before: tuple[str | None, str | None]) -> None:
    """After a round that succeeded: if posts this listener fetched earlier are still not stored (their
    job failed), the listener stays ``error``, whatever this round fetched (``before``: the row's
    outcome and error as the round found them).

    Without this, the next round (often fetching nothing) wrote ``ok`` over the failed job's error: the
    console, ``doorstep status`` and the listener alert all said green while the posts were lost to
    view. The error the job wrote (its cause, its time) stays as it is; a listener whose failed batch
    wrote none (a ``classify`` job that ran out of retries) gets one naming the batches."""
    count, batches = kept_posts(store, name)
    if not count:
        return
    said = before[0] == "error" and KEPT_FOR_RETRY in (before[1] or "")
    if not said:
        from doorstep.redaction import redact

        ids = ", ".join(str(b) for b in batches[:10]) + (", ..." if len(batches) > 10 else "")
        now = _stamp(None)
        store.db.execute(
            "update listener_health set last_error = ?, last_error_at = ?, errors = errors + 1 where name = ?",
            [redact(f"{name}: {count} post{'s' if count != 1 else ''} fetched earlier {'are' if count != 1 else 'is'} "
                    f"not stored: {'their' if len(batches) != 1 else 'its'} job failed; they are {KEPT_FOR_RETRY} "
                    f"(job_batches id {ids}): fix the cause, then retry the failed doorstep.classify or "
                    "doorstep.ingest job")[:2000], now, name])
    store.db.execute("update listener_health set last_outcome = 'error' where name = ?", [name])


def poll_sources(channel: str, sources: Iterable[Any], poll: Callable[[Any], None], result: RoundResult,
                 logger: logging.Logger, store: Store | None = None) -> None:
    """Poll each source on its own: one failing source (a 403 on one endpoint, a bad query,
    a broken page) is recorded in ``result.errors`` and the others still run.

    The error is caught *inside* the loop on purpose: an auth error on one endpoint often
    means only that endpoint lacks a permission (search without the mentions scope, say).

    With ``store``, each source (an account's mentions, a query: one cursor) is polled under
    its lock ``poll:<cursor>`` (:func:`doorstep.dialect.exclusive`): however many workers poll
    the channel, one polls a given account and cursor at a time. A source whose lock another
    poller holds is left to it for this round (``result.busy``), not waited for; the others go on.
    """
    from doorstep.dialect import exclusive

    for source in sources:
        cursor = getattr(source, "cursor", None)
        try:
            with exclusive(store.path, f"poll:{cursor}") if store is not None and cursor else nullcontext(True) as held:
                if not held:
                    result.busy += 1
                    logger.info("%s: %s is being polled by another worker; left to it this round", channel,
                                _label(source))
                    continue
                poll(source)
        except ListenerError as exc:
            message = str(exc) if str(exc).startswith(f"{channel}:") else f"{channel}: {exc}"
            result.errors.append(message)
            logger.error("%s", message)
        except Exception as exc:  # noqa: BLE001 - a bug or a broken store must still show in health
            result.errors.append(f"{channel}: {_label(source)}: unexpected {type(exc).__name__}: {exc}")
            logger.exception("%s: %s failed", channel, _label(source))


def _label(source: Any) -> str:
    return str(getattr(source, "label", None) or f"{getattr(source, 'kind', 'source')} {getattr(source, 'target', '')}"
               ).strip()


def parse_reset(value: Any, *, now: float | None = None) -> float | None:
    """A rate-limit reset header as an epoch time, or ``None`` when it cannot be read.

    Servers send epoch seconds (X, Bluesky), seconds to wait (``Retry-After``), an ISO 8601 or
    an HTTP date (Mastodon), and sometimes nonsense; nonsense must mean "use the default
    backoff", never a ``ValueError`` that ends the round.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    text = str(value).strip()
    if not text:
        return None
    now = time.time() if now is None else now
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if number != number or number in (float("inf"), float("-inf")) or number < 0:
            return None
        return number if number > 1e9 else now + number  # small numbers are seconds to wait
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed.tzinfo is None:
        from datetime import timezone

        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


@dataclass
class Backoff:
    """The listeners' retry policy: how long to wait, how often to try (tenacity runs the loop).

    Transient failures back off exponentially with a cap and "equal jitter" (half fixed, half
    random): jitter spreads the retries of several workers after a shared outage; the fixed half
    keeps the wait from collapsing to nothing. A rate limit waits for its reset; one without a
    readable reset waits ``rate_limit_default_s`` (doubling per wait), never the short transient
    delay, so the window is respected. ``sleep``, ``clock`` and ``rng`` are injectable so tests
    assert the delays without waiting.
    """

    base_s: float = 1.0
    cap_s: float = 300.0
    max_retries: int = 6
    #: 429s waited out per call before the source is given up for this round.
    max_rate_limit_waits: int = 3
    #: Longest single wait for a rate-limit reset (X windows are 15 minutes).
    max_rate_limit_wait_s: float = 960.0
    #: Wait after a 429 that names no (readable) reset time.
    rate_limit_default_s: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    rng: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (0-based)."""
        ceiling = min(self.cap_s, self.base_s * (2 ** attempt))
        return ceiling / 2 + self.rng() * ceiling / 2

    def rate_limit_delay(self, reset_epoch: float | None, wait: int = 0) -> float:
        """Delay before rate-limit wait number ``wait`` (0-based)."""
        if reset_epoch is None:
            return min(self.rate_limit_default_s * (2 ** wait), self.max_rate_limit_wait_s)
        return min(max(reset_epoch - self.clock() + 1.0, 1.0), self.max_rate_limit_wait_s)


#: What a channel's error classifier says about an exception:
#: ("rate_limit", reset_epoch_or_None) | ("auth", message) | ("retry", message) | ("fail", message).
Verdict = tuple[str, Any]


class _Retryable(Exception):
    """Internal: a classified failure tenacity may retry (``kind`` is rate_limit or retry)."""

    def __init__(self, kind: str, detail: Any, number: int):
        super().__init__(kind, detail)
        self.kind, self.detail, self.number = kind, detail, number


def call_with_retries(what: str, fn: Callable[[], Any], classify: Callable[[BaseException], Verdict | None],
                      backoff: Backoff, result: RoundResult | None = None) -> Any:
    """Call ``fn`` with the listener retry policy; ``classify`` maps the library's exceptions.

    Every listener goes through here (tenacity does the looping, :class:`Backoff` the
    arithmetic). Rate limits wait until the reset (at most ``max_rate_limit_waits`` times);
    transient errors back off exponentially (at most ``max_retries`` retries); auth errors raise
    :class:`AuthError` at once; other failures raise :class:`SourceError`. Exceptions that
    ``classify`` does not know propagate.
    """
    import tenacity

    counts = {"rate_limit": 0, "retry": 0}

    def attempt() -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below, unknown ones re-raised
            verdict = classify(exc)
            if verdict is None:
                raise
            kind, detail = verdict
            if kind == "auth":
                raise AuthError(f"{what}: {detail}") from None
            if kind == "fail":
                raise SourceError(f"{what}: {detail}") from None
            kind = "rate_limit" if kind == "rate_limit" else "retry"
            counts[kind] += 1
            raise _Retryable(kind, detail, counts[kind]) from None

    def failure(state: tenacity.RetryCallState) -> _Retryable:
        exc = state.outcome.exception() if state.outcome else None
        assert isinstance(exc, _Retryable)
        return exc

    def stop(state: tenacity.RetryCallState) -> bool:
        exc = failure(state)
        limit = backoff.max_rate_limit_waits if exc.kind == "rate_limit" else backoff.max_retries
        return exc.number > limit

    def wait(state: tenacity.RetryCallState) -> float:
        exc = failure(state)
        if exc.kind == "rate_limit":
            return backoff.rate_limit_delay(parse_reset(exc.detail, now=backoff.clock()), exc.number - 1)
        return backoff.delay(exc.number - 1)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = failure(state)
        delay = state.upcoming_sleep
        if exc.kind == "rate_limit":
            if result is not None:
                result.rate_limited += 1
            detail = "rate limited (429); waiting for the window to reset"
        else:
            if result is not None:
                result.retries += 1
            detail = str(exc.detail)
        logging.getLogger("doorstep.listeners").warning("%s: %s; waiting %.1f s", what, detail, delay)

    retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(_Retryable), stop=stop, wait=wait,
                                 before_sleep=before_sleep, sleep=backoff.sleep, reraise=True)
    try:
        return retrying(attempt)
    except _Retryable as exc:
        if exc.kind == "rate_limit":
            raise SourceError(f"{what}: still rate-limited after {exc.number - 1} waits") from None
        raise SourceError(f"{what}: gave up after {exc.number} attempts: {exc.detail}") from None
