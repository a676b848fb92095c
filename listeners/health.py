"""Listener health: the guard against silent loss.

The worst failure of a care tool is a channel that stops without anyone noticing (an expired
token, a revoked permission, a stream that keeps dropping). Every polling round therefore ends
in exactly one write here, success or error, and the console shows :func:`listener_health`,
including channels that have not succeeded for a while (``stale``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
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
        "insert or ignore into listener_health (name, fetched, stored, errors) values (?, 0, 0, 0)", [name]
    )


def record_success(store: Store, name: str, *, fetched: int, stored: int, lag_seconds: float | None = None,
                   at: datetime | None = None) -> None:
    """A round that reached every source: counts add up, the error stays visible until now."""
    now = _stamp(at)
    _ensure(store, name)
    store.db.execute(
        "update listener_health set last_success_at = ?, lag_seconds = coalesce(?, lag_seconds), "
        "fetched = fetched + ?, stored = stored + ?, updated_at = ? where name = ?",
        [now, lag_seconds, fetched, stored, now, name],
    )


def record_error(store: Store, name: str, error: str, *, fetched: int = 0, stored: int = 0,
                 lag_seconds: float | None = None, at: datetime | None = None) -> None:
    """A round with at least one failed source. ``error`` must not contain secrets."""
    from doorstep.clients import redact

    now = _stamp(at)
    _ensure(store, name)
    store.db.execute(
        "update listener_health set last_error_at = ?, last_error = ?, errors = errors + 1, "
        "lag_seconds = coalesce(?, lag_seconds), fetched = fetched + ?, stored = stored + ?, updated_at = ? "
        "where name = ?",
        [now, redact(error)[:2000], lag_seconds, fetched, stored, now, name],
    )


def listener_health(store: Store, *, poll_seconds: dict[str, float] | None = None,
                    now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per listener for the console, with ``status``: ok, error, stale or never.

    ``error`` when the last error is newer than the last success (the team must act: renew a
    token, restore a permission); ``stale`` when the last success is older than
    ``STALE_AFTER_INTERVALS`` poll intervals (``poll_seconds`` per name, default 60 s).
    """
    now = now or utcnow()
    rows = [dict(r) for r in store.db.query("select * from listener_health order by name")]
    for row in rows:
        success, error = parse_time(row.get("last_success_at")), parse_time(row.get("last_error_at"))
        interval = (poll_seconds or {}).get(row["name"], 60.0)
        if error is not None and (success is None or error >= success):
            row["status"] = "error"
        elif success is None:
            row["status"] = "never"
        elif now - success > timedelta(seconds=interval * STALE_AFTER_INTERVALS):
            row["status"] = "stale"
        else:
            row["status"] = "ok"
    return rows


# ------------------------------------------------------------------ rounds and retries
class ListenerError(RuntimeError):
    """A polling round did not reach every source; the message says which and why."""


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

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        text = (f"{self.channel}: {self.fetched} fetched, {self.stored} new, {self.duplicates} already stored, "
                f"{self.skipped} skipped, {self.malformed} malformed, {self.pages} pages, "
                f"{self.rate_limited} rate-limit waits, {self.retries} retries")
        return text + ("; errors: " + "; ".join(self.errors) if self.errors else "")

    def note_lag(self, created_at: datetime, now: datetime) -> None:
        lag = max((now - created_at).total_seconds(), 0.0)
        self.lag_seconds = lag if self.lag_seconds is None else max(self.lag_seconds, lag)


def record_round(store: Store, result: RoundResult, name: str | None = None) -> None:
    """Write one round's outcome to the health table (one row per channel)."""
    lag = result.lag_seconds if result.lag_seconds is not None else (0.0 if result.ok else None)
    if result.ok:
        record_success(store, name or result.channel, fetched=result.fetched, stored=result.stored, lag_seconds=lag)
    else:
        record_error(store, name or result.channel, "; ".join(result.errors), fetched=result.fetched,
                     stored=result.stored, lag_seconds=lag)


@dataclass
class Backoff:
    """Exponential backoff with a cap and "equal jitter" (half fixed, half random).

    Jitter spreads the retries of several workers after a shared outage; the fixed half keeps
    the wait from collapsing to nothing. ``sleep``, ``clock`` and ``rng`` are injectable so tests
    assert the delays without waiting.
    """

    base_s: float = 1.0
    cap_s: float = 300.0
    max_retries: int = 6
    #: 429s waited out per call before the source is given up for this round.
    max_rate_limit_waits: int = 3
    #: Longest single wait for a rate-limit reset (X windows are 15 minutes).
    max_rate_limit_wait_s: float = 960.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    rng: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (0-based)."""
        ceiling = min(self.cap_s, self.base_s * (2 ** attempt))
        return ceiling / 2 + self.rng() * ceiling / 2

    def rate_limit_delay(self, reset_epoch: float | None, attempt: int) -> float:
        if reset_epoch is None:
            return self.delay(attempt)
        return min(max(reset_epoch - self.clock() + 1.0, 1.0), self.max_rate_limit_wait_s)


#: What a channel's error classifier says about an exception:
#: ("rate_limit", reset_epoch_or_None) | ("auth", message) | ("retry", message) | ("fail", message).
Verdict = tuple[str, Any]


def call_with_retries(what: str, fn: Callable[[], Any], classify: Callable[[BaseException], Verdict | None],
                      backoff: Backoff, result: RoundResult | None = None) -> Any:
    """Call ``fn`` with the listener retry policy; ``classify`` maps the library's exceptions.

    Rate limits wait until the reset (at most ``max_rate_limit_waits`` times); transient
    errors back off exponentially; auth errors raise :class:`AuthError` at once; other failures
    raise :class:`SourceError`. Exceptions that ``classify`` does not know propagate.
    """
    attempt = waits = 0
    while True:
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
            if kind == "rate_limit":
                waits += 1
                if waits > backoff.max_rate_limit_waits:
                    raise SourceError(f"{what}: still rate-limited after {waits - 1} waits") from None
                delay = backoff.rate_limit_delay(detail, attempt)
                if result is not None:
                    result.rate_limited += 1
            else:
                if attempt >= backoff.max_retries:
                    raise SourceError(f"{what}: gave up after {attempt + 1} attempts: {detail}") from None
                delay = backoff.delay(attempt)
                attempt += 1
                if result is not None:
                    result.retries += 1
            logging.getLogger("doorstep.listeners").warning("%s: %s; waiting %.1f s", what, detail, delay)
            backoff.sleep(delay)
