"""PostgreSQL going away for a while (a restart, a failover, the network) stops no worker, and the console says so.

PostgreSQL worker audit (2026-12-06); a dropped store connection reopens itself since (test_pg_reconnect.py):

* with PostgreSQL unreachable for ~30 s every ``doorstep worker`` exited with status 1
  (``ConnectorException: Database error.``) and nothing restarted it: no reply or escalation went out
  afterwards. A worker now waits and tries again (2 s, doubling to 60 s) until it is stopped.
* ``doorstep run`` exited after one ``pg_terminate_backend`` of its connections, advising to
  "start PostgreSQL" although the server was running. A dropped connection now reads as lost, and its
  main loop's look at the settings goes on when the database cannot be asked, as its jobs' ticks do.
* the console showed "Something went wrong" on every page while the database was unreachable.

The database goes away through :class:`Proxy`, a TCP proxy in front of the test PostgreSQL: ``stop()``
closes its port and cuts every connection it forwarded, as a server that went down does to its clients.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from doorstep.store import Store, StoreError
from standins.recording import RecordingServer, free_port

from conftest import REPO, KeywordClassifier
from test_pg_worker import Workers, _tail, _toml, _wait

#: The escalation route every test here sends to: a Slack stand-in (its URL from the environment).
_SLACK = """[responders]
outbox_interval_s = 1

[responders.escalation.targets.team]
slack_webhook_url = "$SLACK_TEAM_URL"
"""


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream``; ``stop()`` is the database going away."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.port = free_port()
        self._server: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> Proxy:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))  # the same port again: clients find the database where it was
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def stop(self) -> None:
        """The port refuses connections and every forwarded connection is cut, both ways."""
        server, self._server = self._server, None
        if server is not None:
            _close(server)
        with self._lock:
            cut, self._open = self._open, []
        for sock in cut:
            _close(sock)

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by this proxy's."""
        parts = urlsplit(url)
        user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        _close(a)
        _close(b)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # (wakes a thread blocked in accept() or recv() on it)
    except OSError:
        pass
    sock.close()


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[Proxy]:
    parts = urlsplit(postgres_url)
    p = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432)).start()
    yield p
    p.stop()


@pytest.fixture
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        monkeypatch.setenv("SLACK_TEAM_URL", server.url + "/services/T000/B000/XXXX")
        yield server


def _case(store: Store, text: str, author: str) -> int:
    from doorstep.config import load_config
    from doorstep.models import Mention, utcnow
    from doorstep.pipeline import Pipeline

    mention = Mention(channel="x", external_id=f"m-{time.monotonic_ns()}", text=text, created_at=utcnow(),
                      author_handle=author)
    Pipeline(store, load_config(os.environ["DOORSTEP_CONFIG"]), KeywordClassifier()).ingest([mention])
    return store.mention_by_external_id("x", mention.external_id).case_id  # type: ignore[union-attr]


def _escalate(url: str, note: str) -> None:
    """Escalate a new case to the team (queued in the database directly, as the console does); each case
    has a customer of its own (one customer's cases share a timeline, which an escalation quotes)."""
    from doorstep.config import load_config
    from responders.outbox import queue_escalation

    store = Store(url)
    try:
        case_id = _case(store, f"@LarkspurHelp {note}", author=note.replace(" ", "_"))
        queue_escalation(store, load_config(os.environ["DOORSTEP_CONFIG"]), case_id, "team", note, "sam")
    finally:
        store.close()


def _arrived(slack: RecordingServer, note: str) -> int:
    return sum(1 for body in slack.json_bodies() if note in body.get("text", ""))


def _wait_alive(what: str, done: Any, proc: subprocess.Popen, timeout_s: float) -> None:
    """Wait for ``done()``; a process that exits meanwhile fails the test at once, with its log."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if done():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the process exited with status {proc.returncode} while waiting for {what}"
                                 f"{_tail(proc)}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}{_tail(proc)}")


# ----------------------------------------------------------------------------- doorstep worker
def test_a_worker_outlives_a_database_outage_and_sends_what_is_queued_after_it(
        postgres_url: str, proxy: Proxy, slack: RecordingServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit's outage: PostgreSQL unreachable until the worker has given up on it (~30 s: procrastinate's
    pool waits that long for a connection) and then back on the same port. The worker is still running,
    says so in one line, and an escalation queued afterwards reaches Slack once."""
    from commands.jobs_queue import apply_schema

    Store(postgres_url).close()
    apply_schema(postgres_url)
    toml = _toml(tmp_path, _SLACK)
    monkeypatch.setenv("DOORSTEP_CONFIG", str(toml))
    workers = Workers(tmp_path, proxy.url(postgres_url), toml)
    try:
        worker = workers.start("send")
        _escalate(postgres_url, "before the outage")
        _wait_alive("the first escalation", lambda: _arrived(slack, "before the outage") == 1, worker, 60)

        proxy.stop()
        log = Path(worker.log_path)  # type: ignore[attr-defined]
        _wait("the worker to give up on the database",
              lambda: "database unreachable" in log.read_text() or worker.poll() is not None, timeout_s=90)
        proxy.start()
        assert worker.poll() is None, f"the worker exited with status {worker.returncode}{_tail(worker)}"

        _escalate(postgres_url, "after the outage")
        _wait_alive("the escalation queued after the outage", lambda: _arrived(slack, "after the outage") == 1,
                    worker, 120)
        assert worker.poll() is None
        lines = [line for line in log.read_text().splitlines() if "database unreachable" in line]
        assert lines and all("trying again in" in line for line in lines), _tail(worker)

        worker.send_signal(signal.SIGTERM)  # a stop signal still stops it, as before the outage
        assert worker.wait(timeout=30) == 0, _tail(worker)
    finally:
        workers.stop()
    assert _arrived(slack, "before the outage") == 1 and _arrived(slack, "after the outage") == 1


class _GoneDatabase:
    """A procrastinate App whose database does not answer: each try fails as procrastinate 3.10 fails then
    (a ConnectorException whose cause is psycopg's OperationalError). After ``limit`` tries it fails with an
    AssertionError instead, so a worker that never stops fails the test rather than hanging it."""

    def __init__(self, limit: int = 60):
        self.tries = 0
        self.limit = limit

    def _fail(self) -> None:
        import procrastinate

        self.tries += 1
        if self.tries > self.limit:
            raise AssertionError(f"still trying after {self.limit} tries: the stop signal was not heard")
        try:
            raise psycopg.OperationalError("connection failed: connection to server at \"127.0.0.1\", port 1 "
                                           "failed: Connection refused")
        except psycopg.OperationalError as exc:
            raise procrastinate.exceptions.ConnectorException() from exc

    def open_async(self) -> Any:
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def opened() -> Any:
            self._fail()
            yield self

        return opened()

    async def run_worker_async(self, **options: Any) -> None:  # pragma: no cover - open_async fails first
        self._fail()

    def run_worker(self, **options: Any) -> None:
        import asyncio

        async def run() -> None:
            async with self.open_async():
                await self.run_worker_async(**options)

        asyncio.run(run())


@pytest.fixture
def gone_database(monkeypatch: pytest.MonkeyPatch) -> _GoneDatabase:
    import commands.jobs_queue as jobs_queue

    app = _GoneDatabase()
    monkeypatch.setattr(jobs_queue, "apply_schema", lambda conninfo: False)
    monkeypatch.setattr(jobs_queue, "build_app", lambda db, config: app)
    monkeypatch.setattr(jobs_queue, "RECONNECT_FIRST_S", 0.05, raising=False)
    monkeypatch.setattr(jobs_queue, "RECONNECT_MAX_S", 0.2, raising=False)
    return app


def test_a_worker_waiting_for_the_database_stops_at_once_on_sigterm(
        gone_database: _GoneDatabase, config: Any, caplog: pytest.LogCaptureFixture) -> None:
    """While the database stays away the worker tries again, a little later each time, one log line a try;
    SIGTERM during a wait ends it (status 0, as a stop always did), not after the next try."""
    from commands.jobs_queue import run_worker

    caplog.set_level(logging.WARNING, logger="doorstep.jobs")
    heard: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: heard.append(1))  # (a fence: never pytest's death)
    tries_at_signal: list[int] = []

    def stop_on_the_third_wait() -> None:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if sum("trying again in" in r.getMessage() for r in caplog.records) >= 3:
                tries_at_signal.append(gone_database.tries)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=stop_on_the_third_wait, daemon=True)
    killer.start()
    try:
        run_worker("postgresql://nobody@127.0.0.1:1/none", config, queues=["send"], wait=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    killer.join(5)
    assert tries_at_signal and gone_database.tries <= tries_at_signal[0] + 1
    assert heard == []  # the worker's own handler took the signal
    lines = [r.getMessage() for r in caplog.records if "database unreachable" in r.getMessage()]
    assert len(lines) >= 3 and "Connection refused" in lines[0] and "\n" not in "".join(lines)
    assert "trying again in 0.05 s" in lines[0] and "trying again in 0.1 s" in lines[1]  # a little later each time


def test_a_worker_until_empty_still_fails_when_the_database_is_gone(gone_database: _GoneDatabase,
                                                                   config: Any) -> None:
    """``--until-empty`` (a backfill, a test) is not kept waiting: it fails as before."""
    import procrastinate

    from commands.jobs_queue import run_worker

    with pytest.raises(procrastinate.exceptions.ConnectorException):
        run_worker("postgresql://nobody@127.0.0.1:1/none", config, queues=["send"], wait=False)
    assert gone_database.tries == 1


# ----------------------------------------------------------------------------- doorstep run
def _terminate(application_name: str) -> int:
    """End the backends of one process (its connections carry ``application_name``), as the audit's
    pg_terminate_backend did; other tests' connections on the same server are left alone."""
    from conftest import POSTGRES_URL

    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        return int(admin.execute("select count(pg_terminate_backend(pid)) from pg_stat_activity "
                                 "where datname = current_database() and application_name = %s",
                                 [application_name]).fetchone()[0])


def _looked_at_settings(application_name: str, before: set[int]) -> bool:
    """A backend of the process opened after ``before`` whose last statement was the worker's look at
    the settings stamp (``doorstep run``'s main loop, every 30 s)."""
    from conftest import POSTGRES_URL

    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        pids = {r[0] for r in admin.execute("select pid from pg_stat_activity where application_name = %s "
                                            "and query like '%%from team_settings%%'", [application_name])}
    return bool(pids - before)


def _backends(application_name: str) -> set[int]:
    from conftest import POSTGRES_URL

    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        return {r[0] for r in admin.execute("select pid from pg_stat_activity where application_name = %s",
                                            [application_name])}


def test_doorstep_run_goes_on_after_its_connections_are_terminated(
        postgres_url: str, slack: RecordingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit's ``doorstep run`` exited with status 1 after one pg_terminate_backend of its connections
    (its main loop's next look at the settings failed on the dropped connection). It goes on: the look
    after the drop works, and an escalation queued after it reaches Slack once."""
    from conftest import _schema_of

    Store(postgres_url).close()
    toml = _toml(tmp_path, _SLACK)
    monkeypatch.setenv("DOORSTEP_CONFIG", str(toml))
    name = f"doorstep-run-{_schema_of(postgres_url)}"
    log = tmp_path / "run.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "DOORSTEP_CONFIG": str(toml),
           "DOORSTEP_DB": f"{postgres_url}&application_name={name}"}
    proc = subprocess.Popen([sys.executable, "-m", "commands", "run"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))
    proc.log_path = log  # type: ignore[attr-defined]
    try:
        _escalate(postgres_url, "before the drop")
        _wait_alive("the first escalation", lambda: _arrived(slack, "before the drop") == 1, proc, 60)
        before = _backends(name)
        assert _terminate(name) >= 2  # the main loop's connection and the sender's at least
        _escalate(postgres_url, "after the drop")
        _wait_alive("the escalation queued after the drop", lambda: _arrived(slack, "after the drop") == 1, proc, 60)
        _wait_alive("the main loop's next look at the settings", lambda: _looked_at_settings(name, before),
                    proc, 60)
        assert proc.poll() is None, _tail(proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert _arrived(slack, "before the drop") == 1 and _arrived(slack, "after the drop") == 1
    assert "start PostgreSQL" not in log.read_text()


def test_doorstep_run_goes_on_through_a_database_outage(postgres_url: str, proxy: Proxy, config: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """While PostgreSQL cannot be reached, ``doorstep run``'s main loop looks at the settings stamp (every
    30 s) and that look fails: one log line, and the loop goes on (the next look tries again), as a job's
    failed tick is logged and tried again. Before, the worker exited with the look's error. (The loop's
    look every 0.1 s here, in a thread of this test.)"""
    from commands.worker import FunctionJob, Worker
    from doorstep.team_settings import settings_stamp

    Store(postgres_url).close()
    store = Store(proxy.url(postgres_url))
    ticks: list[bool] = []

    def look_at_the_cases() -> None:
        try:
            store.db.execute("select count(*) from cases").fetchone()
        except Exception:
            ticks.append(False)
            raise
        ticks.append(True)

    worker = Worker(store, config, None, jobs=[FunctionJob("cases", 0.05, look_at_the_cases)], providers=[],
                    reload_check_s=0.1, settings_stamp=lambda: settings_stamp(store), reload_config=lambda: config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # noqa: BLE001 - what ended the loop, for the assertion below
            errors.append(exc)

    caplog.set_level(logging.WARNING, logger="commands.worker")
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        _wait("a tick that works", lambda: any(ticks))
        proxy.stop()
        _wait("ticks that fail and failed looks at the settings",
              lambda: ticks[-3:] == [False] * 3 and ("settings" in caplog.text or not thread.is_alive()), timeout_s=30)
        proxy.start()
        failed = len(ticks)
        _wait("a tick that works again", lambda: any(ticks[failed:]) or not thread.is_alive(), timeout_s=30)
        assert thread.is_alive(), f"the worker's loop ended: {errors!r}"
        assert any(ticks[failed:])
    finally:
        worker.stop()
        thread.join(15)
        store.close()
    assert not errors and not thread.is_alive()
    looks = [r.getMessage() for r in caplog.records if "settings" in r.getMessage()]
    assert looks and all("\n" not in line and "Connection refused" in line for line in looks), looks


# ----------------------------------------------------------------------------- what people read
@pytest.fixture
def outage_errors(postgres_url: str, proxy: Proxy) -> dict[str, BaseException]:
    """What a command, a worker or a console page meets when PostgreSQL goes away, each raised for real:
    a write on a connection the server ended (pg_terminate_backend), a write on one the network cut, a
    transaction on a connection that dropped, a read while the server refuses, a store opened meanwhile."""
    from conftest import POSTGRES_URL

    raised: dict[str, BaseException] = {}

    def catch(name: str, action: Any) -> None:
        with pytest.raises(Exception) as caught:
            action()
        raised[name] = caught.value

    Store(postgres_url).close()
    store = Store(postgres_url)
    cut = Store(proxy.url(postgres_url))
    try:
        store.db.execute("create table if not exists t (x int)")
        pid = store.db.execute("select pg_backend_pid()").fetchone()[0]
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(%s)", [pid])
        catch("terminated", lambda: store.db.execute("insert into t (x) values (1)"))

        def cut_in_a_transaction() -> None:
            with cut.transaction():
                cut.db.execute("insert into cursors (name, value) values ('a', 'b')")
                proxy.stop()
                cut.db.execute("insert into cursors (name, value) values ('c', 'd')")

        catch("in a transaction", cut_in_a_transaction)
        catch("refused", lambda: cut.db.execute("select count(*) from cases"))
        catch("opened meanwhile", lambda: Store(proxy.url(postgres_url)))
        proxy.start()
        cut.db.execute("select 1")
        proxy.stop()
        catch("cut", lambda: cut.db.execute("insert into cursors (name, value) values ('e', 'f')"))
    finally:
        store.close()
        cut.close()
    return raised


def test_a_dropped_connection_reads_as_lost_not_as_start_postgresql(postgres_url: str,
                                                                    outage_errors: dict[str, BaseException]) -> None:
    """The audit's `doorstep run` ended with "cannot connect (terminating connection due to administrator
    command); start PostgreSQL (pg_ctlcluster ...)" although the server was running: the connection was lost,
    and the next try opens another. A connection the server refuses still says to start it."""
    for name in ("terminated", "cut"):
        text = str(StoreError.from_postgres(postgres_url, outage_errors[name]))
        assert "the connection to PostgreSQL was lost" in text and "opened again on the next try" in text, (name, text)
        assert "start PostgreSQL" not in text and "cannot connect" not in text, (name, text)
    assert "terminating connection due to administrator command" in str(
        StoreError.from_postgres(postgres_url, outage_errors["terminated"]))
    closed = psycopg.connect(postgres_url)
    closed.close()
    with pytest.raises(psycopg.OperationalError) as on_closed:
        closed.execute("select 1")
    assert "was lost (the connection is closed)" in str(StoreError.from_postgres(postgres_url, on_closed.value))
    refused = str(StoreError.from_postgres(postgres_url, outage_errors["refused"]))
    assert "cannot connect" in refused and "start PostgreSQL" in refused and "was lost" not in refused


def _show_error(exc: BaseException) -> None:
    """A console page that raised ``exc`` (AppTest runs this function's body as the page)."""
    from console.server import on_script_error

    on_script_error(exc)


@pytest.mark.parametrize("name", ["terminated", "cut", "in a transaction", "refused", "opened meanwhile"])
def test_a_page_that_cannot_reach_the_database_says_so_not_something_went_wrong(
        name: str, outage_errors: dict[str, BaseException], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """While PostgreSQL is away every page of the console said "Something went wrong on this page and it was
    logged (reference ...)": the agent reads that the database cannot be reached and that the page works
    again when it is back; the log says why, in one line."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv("DOORSTEP_CONFIG", raising=False)
    caplog.set_level(logging.WARNING)
    at = AppTest.from_function(_show_error, args=(outage_errors[name],), default_timeout=30).run()
    assert not at.exception
    shown = " ".join(e.value for e in at.error).replace("\\", "")
    assert "The database cannot be reached right now" in shown and "try again in a moment" in shown, shown
    assert "Something went wrong" not in shown and "reference" not in shown
    assert "cannot be reached" in caplog.text and "Traceback" not in caplog.text


def test_a_page_error_of_another_kind_still_gets_a_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """A statement PostgreSQL refuses (a bug) is not "the database cannot be reached"."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv("DOORSTEP_CONFIG", raising=False)
    refused = psycopg.errors.UndefinedColumn('column "nope" does not exist')
    at = AppTest.from_function(_show_error, args=(refused,), default_timeout=30).run()
    shown = " ".join(e.value for e in at.error)
    assert "Something went wrong" in shown and "cannot be reached" not in shown
