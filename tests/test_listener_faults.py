"""Listener health under faults (audit of the listeners, findings 1, 3, 5, 6 and 7).

- a listener that cannot be built (a missing credential) writes a health error;
- on PostgreSQL a round whose errors are in health ends its ``poll`` job normally, with one
  log line, and old failed poll jobs are cleaned up;
- on PostgreSQL the posts the ingest jobs store count in the listener's ``stored``;
- an ingest batch that cannot be stored stores what it can and says what it kept, in health;
- health follows the order of its writes, not timestamps compared across a clock step back.

The PostgreSQL cases skip without PostgreSQL outside CI and fail under CI=true (conftest).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from doorstep.models import utcnow
from doorstep.store import Store
from listeners.health import ListenerError, MissingCredentials, listener_health, record_error, record_success

from conftest import labels, mention


def _health(store: Store, now: Any = None) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in listener_health(store, now=now)}


def _x_config(config: Any) -> Any:
    return config.model_copy(update={"channels": {**config.channels, "x": {"poll_seconds": 60}}})


# ----------------------------------------------------------------------------- finding 3
def test_a_listener_that_cannot_start_writes_a_health_error(tmp_path: Path, config: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """No X_BEARER_TOKEN: the job fails (one line in the worker's log) *and* health says why, so the
    console shows the error and the listener alert fires, instead of "No listener has run yet"."""
    from listeners.jobs import ListenerJob
    from responders.alerts import evaluate
    from test_alerts import alert_config

    for name in ("DOORSTEP_SECRETS_FILE", "X_BEARER_TOKEN", "X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN",
                 "X_ACCESS_TOKEN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    store = Store(tmp_path / "shop.db")
    job = ListenerJob("listen:x", 60.0, "x", store, _x_config(config), pipeline=None)
    with pytest.raises(MissingCredentials):
        job.run_once()
    health = _health(store)
    assert health["x"]["status"] == "error"
    assert "X_BEARER_TOKEN" in health["x"]["last_error"]
    alerts = alert_config(listener_unhealthy=True, listener_stale_minutes=15, email="ops@larkspur.test")
    firings = evaluate(store, alerts, utcnow())
    assert [f.subject for f in firings] == ["listener:x"] and "X_BEARER_TOKEN" in firings[0].why
    store.close()


# ----------------------------------------------------------------------------- finding 7
def test_health_follows_the_order_of_writes_when_the_clock_steps_back(tmp_path: Path) -> None:
    """A good round at T, then failing rounds stamped before T (the wall clock stepped back 5
    minutes): the listener is failing, and the alert says so; and the other way round."""
    from responders.alerts import evaluate
    from test_alerts import alert_config

    alerts = alert_config(listener_unhealthy=True, listener_stale_minutes=15, email="ops@larkspur.test")
    store = Store(tmp_path / "shop.db")
    t = utcnow()
    record_success(store, "x", fetched=3, stored=3, at=t)
    for k in range(1, 4):
        record_error(store, "x", "x: 401 Unauthorized: token revoked",
                     at=t - timedelta(minutes=5) + timedelta(minutes=k))
    assert _health(store)["x"]["status"] == "error"
    firings = evaluate(store, alerts, t + timedelta(seconds=30))
    assert [f.subject for f in firings] == ["listener:x"] and "token revoked" in firings[0].why

    # Renewed token, clock stepped back again: the good round after the errors is what counts.
    record_error(store, "mastodon", "mastodon: 500", at=t)
    record_success(store, "mastodon", fetched=1, stored=1, at=t - timedelta(minutes=5))
    assert _health(store, now=t - timedelta(minutes=4))["mastodon"]["status"] == "ok"  # the clock's now
    assert [f.subject for f in evaluate(store, alerts, t)] == ["listener:x"]

    # A round that skipped malformed posts, then a clean one stamped earlier: ok again.
    record_success(store, "bluesky", fetched=2, stored=1, malformed=1, warning="bluesky: skipped 1 malformed post",
                   at=t)
    assert _health(store, now=t)["bluesky"]["status"] == "warning"
    record_success(store, "bluesky", fetched=1, stored=1, at=t - timedelta(minutes=5))
    assert _health(store, now=t - timedelta(minutes=4))["bluesky"]["status"] == "ok"
    store.close()


# ----------------------------------------------------------------------------- PostgreSQL
@pytest.fixture
def runtime(postgres_url: str, config: Any) -> Any:
    from commands.jobs_queue import Runtime, apply_schema, set_runtime

    Store(postgres_url).close()
    apply_schema(postgres_url)
    rt = Runtime(postgres_url, config)
    set_runtime(rt)
    yield rt
    set_runtime(None)
    rt.close()


class _FailingJob:
    name, interval_s = "listen:x", 60.0

    def __init__(self, exc: Exception):
        self.exc = exc

    def run_once(self) -> None:
        raise self.exc


def test_a_poll_round_whose_errors_are_in_health_ends_its_job_with_one_line(runtime: Any,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """One source fails every poll (a 403 on search) while the others poll: its error is in health
    already, so the job logs one line, without a traceback, and ends normally (not ``failed``)."""
    from commands.jobs_queue import poll_channel

    runtime._local.jobs = {"listen:x": _FailingJob(ListenerError("x: search larkspur: 403 Forbidden"))}
    with caplog.at_level(logging.INFO):
        poll_channel(1, "listen:x")
    lines = [r for r in caplog.records if "403 Forbidden" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None and lines[0].levelno == logging.ERROR

    runtime._local.jobs = {"listen:x": _FailingJob(MissingCredentials("x: X_BEARER_TOKEN is not set"))}
    poll_channel(2, "listen:x")

    runtime._local.jobs = {"listen:x": _FailingJob(RuntimeError("a bug"))}
    with pytest.raises(RuntimeError, match="a bug"):  # a bug keeps its traceback (a failed job)
        poll_channel(3, "listen:x")


def _old_failed_job(url: str, task: str, queue: str, **kwargs: Any) -> int:
    from doorstep.job_queue import defer_job

    store = Store(url)
    with store.transaction():
        defer_job(store, task, queue=queue, **kwargs)
    store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        job = conn.execute("select max(id) from procrastinate_jobs").fetchone()[0]
        conn.execute("update procrastinate_jobs set status = 'doing' where id = %s", [job])
        conn.execute("update procrastinate_jobs set status = 'failed' where id = %s", [job])
        conn.execute("update procrastinate_events set at = now() - interval '25 hours' where job_id = %s", [job])
    return job


def test_old_failed_poll_jobs_are_cleaned_up(runtime: Any) -> None:
    from commands.jobs_queue import build_app

    poll = _old_failed_job(runtime.db, "doorstep.poll", "listen", timestamp=1, job="listen:x")
    ingest = _old_failed_job(runtime.db, "doorstep.ingest", "ingest", batch=1)
    app = build_app(runtime.db, runtime.config)

    async def clean() -> None:
        async with app.open_async():
            await app.tasks["doorstep.remove_old_jobs"].func(timestamp=0)

    asyncio.run(clean())
    with psycopg.connect(runtime.db) as conn:
        left = [r[0] for r in conn.execute("select id from procrastinate_jobs order by id")]
    # The poll job's error is in health; a failed ingest job's posts are still staged: it stays for a person.
    assert left == [ingest] and poll not in left


def _staged(url: str, stage: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("select id from job_batches where stage = %s order by id", [stage])]


def _posts(n: int, first: int = 1, **fields: Any) -> list[Any]:
    return [mention(str(1000 + first + i), f"@LarkspurHelp parcel {first + i} is late", minutes=first + i,
                    author_handle=f"customer{first + i}", labels=labels("late_delivery", "negative", True), **fields)
            for i in range(n)]


def test_health_counts_the_posts_the_ingest_jobs_store(runtime: Any) -> None:
    """On PostgreSQL the listener only queues its posts; the ingest job that stores them adds them
    to the listener's ``stored`` (once: a repeated post is no new post), so the number is true."""
    from commands.jobs_queue import QueuedPipeline, classify_batch, ingest_batch
    from listeners.health import RoundResult, record_round

    store = runtime.store()
    for page in (_posts(3), _posts(2, first=3)):  # post 1003 twice: stored once
        with store.transaction():
            queued = QueuedPipeline(store, runtime.config).ingest(page)
        record_round(store, RoundResult("x", fetched=len(page), stored=queued.stored))
    for batch in _staged(runtime.db, "classify"):
        classify_batch(batch)
    for batch in _staged(runtime.db, "ingest"):
        ingest_batch(batch)
    assert store.count("mentions") == 4
    row = _health(store)["x"]
    assert (row["fetched"], row["stored"], row["status"]) == (5, 4, "ok")


def test_a_batch_that_cannot_be_stored_stores_what_it_can_and_says_so_in_health(
        runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One post PostgreSQL refuses (a DataError, as a NUL character was) must not take the other
    posts of its batch with it, nor be lost without a word: the others are stored, the refused
    one stays staged for a retry, and the listener's health says so."""
    from commands.jobs_queue import BatchNotStored, ingest_batch, queue_posts
    from doorstep.pipeline import Pipeline

    real = Pipeline._store_mention

    def refuse(self: Pipeline, m: Any, *args: Any) -> None:
        if "REFUSED" in m.text:
            raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        real(self, m, *args)

    monkeypatch.setattr(Pipeline, "_store_mention", refuse)
    store = runtime.store()
    posts = _posts(5) + [mention("2000", "@LarkspurHelp my parcel REFUSED is lost", minutes=6, author_handle="jane",
                                 labels=labels("lost_or_missing", "negative", True))] + _posts(5, first=7)
    (batch,) = queue_posts(store, posts, "ingest")
    with pytest.raises(BatchNotStored, match="1 of 11 posts"):
        ingest_batch(batch)
    assert store.count("mentions") == 10
    kept = store.rows("select posts from job_batches where id = ?", [batch])
    assert [p["external_id"] for p in json.loads(kept[0]["posts"])] == ["2000"]
    row = _health(store)["x"]
    assert row["status"] == "error" and row["stored"] == 10
    assert "1 of 11 posts" in row["last_error"] and "kept for a retry" in row["last_error"]
    assert "DataError" in row["last_error"]

    # The retry (once the cause is fixed) stores the kept post and removes the batch.
    monkeypatch.setattr(Pipeline, "_store_mention", real)
    assert ingest_batch(batch)["stored"] == 1
    assert store.count("mentions") == 11 and _staged(runtime.db, "ingest") == []


def test_the_last_try_of_a_batch_that_keeps_failing_stores_what_it_can(runtime: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure that may pass (a lock wait that ran out) is retried whole by procrastinate; its last
    try stores the posts one by one, and health says what it could not store."""
    from commands.jobs_queue import BatchNotStored, ingest_batch, queue_posts
    from doorstep.pipeline import Pipeline

    real = Pipeline._store_mention

    def wait_out(self: Pipeline, m: Any, *args: Any) -> None:
        if m.external_id == "1002":
            raise psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
        real(self, m, *args)

    monkeypatch.setattr(Pipeline, "_store_mention", wait_out)
    store = runtime.store()
    (batch,) = queue_posts(store, _posts(3), "ingest")
    with pytest.raises(psycopg.errors.LockNotAvailable):  # not the last try: retried whole
        ingest_batch(batch)
    assert store.count("mentions") == 0 and "x" not in _health(store)
    with pytest.raises(BatchNotStored, match="1 of 3 posts") as failed:
        ingest_batch(batch, last_try=True)
    from commands.jobs_queue import INGEST_RETRY
    from procrastinate.jobs import Job

    job = Job(id=1, queue="ingest", lock=None, queueing_lock=None, task_name="doorstep.ingest", attempts=1)
    assert INGEST_RETRY.get_retry_decision(exception=failed.value, job=job) is None  # not retried by itself
    assert INGEST_RETRY.get_retry_decision(exception=psycopg.errors.LockNotAvailable("x"), job=job) is not None
    assert store.count("mentions") == 2
    assert "kept for a retry" in _health(store)["x"]["last_error"]
