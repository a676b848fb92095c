"""One poller per account and cursor (issue 16): the lock itself, on both databases.

:func:`doorstep.dialect.exclusive` is what ``poll_sources`` takes for each source and the
job queue for each periodic round. On PostgreSQL it is a session advisory lock; on SQLite a
lock within the process plus a record lock on ``<database>-locks``. These tests hold it from a
second process too, and kill that process (``kill -9``) to show the lock goes with it. The
PostgreSQL cases skip outside CI without PostgreSQL and fail under CI=true (conftest).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from doorstep.dialect import exclusive
from doorstep.store import Store
from listeners.health import RoundResult, poll_sources, record_round

from conftest import REPO, drop_postgres_schema, new_postgres_schema

#: A hang must fail the test, not wait for ever.
DEADLINE_S = 30.0

_HOLDER = """
import sys, time
from doorstep.dialect import exclusive
with exclusive(sys.argv[1], sys.argv[2]) as held:
    print("held" if held else "busy", flush=True)
    time.sleep(600)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return str(tmp_path / "shop.db")


def _holder(target: str, name: str) -> subprocess.Popen:
    """Another process that takes ``name`` and keeps it; returns once it said whether it got it."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, target, name], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    line = proc.stdout.readline().strip()  # type: ignore[union-attr]
    assert line == "held", f"the holder process said {line!r}"
    return proc


def _free(target: str, name: str) -> bool:
    with exclusive(target, name) as held:
        return held


def test_one_holder_at_a_time_and_free_again_after(target: str) -> None:
    name = "poll:x:mentions:1001"
    with exclusive(target, name) as first:
        assert first
        with exclusive(target, name) as second:
            assert not second  # the same account and cursor: left to the first
        with exclusive(target, "poll:x:mentions:2002") as other:
            assert other  # another account is polled meanwhile
        assert not _free(target, name)  # still held: a refused try takes nothing away
    assert _free(target, name)


def test_two_threads_one_holder(target: str) -> None:
    name = "periodic:alerts"
    inside, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def hold() -> None:
        with exclusive(target, name) as held:
            seen.append(held)
            inside.set()
            release.wait(DEADLINE_S)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert inside.wait(DEADLINE_S)
        assert not _free(target, name)
    finally:
        release.set()
        thread.join()
    assert seen == [True] and _free(target, name)


def test_another_process_holds_it_until_killed(target: str) -> None:
    """A poller killed with ``kill -9`` holds nothing: its session (or process) ends, its lock with it."""
    name = "poll:x:mentions:1001"
    proc = _holder(target, name)
    try:
        assert not _free(target, name)
        assert _free(target, "poll:x:search:larkspur")
        proc.send_signal(signal.SIGKILL)
        proc.wait(DEADLINE_S)
        end = time.monotonic() + DEADLINE_S
        while not _free(target, name):  # PostgreSQL ends the session as soon as it sees the socket close
            assert time.monotonic() < end, "the killed holder's lock was never released"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]


def test_postgres_lock_is_per_schema(postgres_url: str) -> None:
    """Two shops in one database (two schemas) poll their own accounts side by side."""
    other = new_postgres_schema()
    try:
        with exclusive(postgres_url, "poll:x:mentions:1001") as mine, exclusive(other, "poll:x:mentions:1001") as theirs:
            assert mine and theirs
    finally:
        drop_postgres_schema(other)


def test_postgres_holder_is_named_in_pg_stat_activity(postgres_url: str) -> None:
    import psycopg

    with exclusive(postgres_url, "poll:x:mentions:1001") as held:
        assert held
        with psycopg.connect(postgres_url) as conn:
            rows = conn.execute("select a.application_name from pg_locks l join pg_stat_activity a using (pid) "
                                "where l.locktype = 'advisory' and a.application_name like %s",
                                [f"doorstep {os.getpid()} %"]).fetchall()
    assert rows == [(f"doorstep {os.getpid()} poll:x:mentions:1001",)]


# ----------------------------------------------------------------------------- in the listeners
class _Source:
    def __init__(self, target: str):
        self.kind, self.target, self.label = "mentions", target, f"@{target} mentions"

    @property
    def cursor(self) -> str:
        return f"x:mentions:{self.target}"


def test_poll_sources_leaves_a_held_account_to_its_poller(db_url: str, caplog: Any) -> None:
    """The account another poller holds is skipped (counted, logged), the others are polled; a
    round that found every source held writes no health row (the holder writes its own)."""
    store = Store(db_url)
    polled: list[str] = []
    result = RoundResult("x")
    with exclusive(store.path, "poll:x:mentions:1001") as held:
        assert held
        with caplog.at_level(logging.INFO, logger="test.poll"):
            poll_sources("x", [_Source("1001"), _Source("2002")], lambda s: polled.append(s.target), result,
                         logging.getLogger("test.poll"), store=store)
        assert polled == ["2002"] and result.busy == 1 and result.ok
        assert "left to another poller" in result.summary()
        assert "@1001 mentions is being polled by another worker" in caplog.text

        idle = RoundResult("x")
        poll_sources("x", [_Source("1001")], lambda s: polled.append(s.target), idle, logging.getLogger("test.poll"),
                     store=store)
        record_round(store, idle)
        assert idle.busy == 1 and store.count("listener_health") == 0
    poll_sources("x", [_Source("1001")], lambda s: polled.append(s.target), RoundResult("x"),
                 logging.getLogger("test.poll"), store=store)
    assert polled == ["2002", "1001"]
    store.close()


def test_a_failing_source_releases_its_lock(db_url: str) -> None:
    store = Store(db_url)
    result = RoundResult("x")

    def poll(source: _Source) -> None:
        raise RuntimeError("the page was unreadable")

    poll_sources("x", [_Source("1001")], poll, result, logging.getLogger("test.poll"), store=store)
    assert "unexpected RuntimeError" in result.errors[0]
    assert _free(store.path, "poll:x:mentions:1001")
    store.close()


# ----------------------------------------------------------------------------- periodic rounds
def test_a_periodic_round_is_skipped_while_the_last_one_still_runs(postgres_url: str, config: Any) -> None:
    """Procrastinate defers one alerts job per period; a round that outlasts its period must not
    run beside the next one on another worker: that period's round is skipped, the next one runs."""
    from commands.jobs_queue import Runtime, run_periodic, set_runtime
    from doorstep.jobs import FunctionJob

    rounds: list[int] = []
    rt = Runtime(postgres_url, config)
    rt._local.jobs = {"alerts": FunctionJob("alerts", 1.0, lambda: rounds.append(1))}
    set_runtime(rt)
    try:
        with exclusive(postgres_url, "periodic:alerts") as held:  # the last round, on another worker
            assert held
            assert run_periodic(1, "alerts") == "skipped" and rounds == []
        assert run_periodic(2, "alerts") == "ran" and rounds == [1]
    finally:
        set_runtime(None)
        rt.close()
