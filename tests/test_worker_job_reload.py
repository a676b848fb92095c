"""A lead saves an alert rule or a template: the worker restarts each job on its own.

Audit (reproduced): on a new settings stamp ``doorstep run`` stopped every job and started them again
only once the last one had finished its round. A listener in its retries/backoff (minutes) held up
every other job: alerts went out up to 2.5 minutes after the save, and the outbox sat idle meanwhile.
Now each job is told to stop after its own round and its replacement (built from the new config)
starts as soon as that job's thread ended and the job was closed; the other jobs do not wait for it.
Never two copies of a job at once. (Run once on SQLite and once on PostgreSQL: the stamp and the
saved settings are read from the store.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import commands.worker as worker_module
from commands.worker import Worker
from doorstep.config import Config, parse_config
from doorstep.jobs import FunctionJob
from doorstep.store import Store, StoreError
from doorstep.team_settings import apply_settings, save_setting, settings_stamp
from responders.config import alert_settings

CONFIG = parse_config({"alerts": {"urgency_threshold": 0.8}})
OLD, NEW = 0.8, 0.55


class FakeJobs:
    """Jobs that write down what they did, in order: each round (and its end) and each close(), with
    the urgency threshold of the config the job was built from; and how many copies of a job ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str, float]] = []
        self.active: dict[str, int] = {}
        self.most_at_once: dict[str, int] = {}
        self.most_threads: dict[str, int] = {}
        self.slow_in_round = threading.Event()
        self.release = threading.Event()  # ends the slow job's first round

    def record(self, what: str, name: str, threshold: float) -> None:
        with self.lock:
            self.events.append((what, name, threshold))

    def seen(self, what: str, name: str, threshold: float) -> bool:
        with self.lock:
            return (what, name, threshold) in self.events

    def index(self, what: str, name: str, threshold: float) -> int:
        with self.lock:
            return self.events.index((what, name, threshold))

    def job(self, name: str, threshold: float, slow: bool = False) -> FunctionJob:
        def one_round() -> None:
            with self.lock:
                self.events.append(("round", name, threshold))
                self.active[name] = self.active.get(name, 0) + 1
                self.most_at_once[name] = max(self.most_at_once.get(name, 0), self.active[name])
                threads = sum(1 for t in threading.enumerate() if t.name == f"job:{name}" and t.is_alive())
                self.most_threads[name] = max(self.most_threads.get(name, 0), threads)
            try:
                if slow and threshold == OLD:  # an X listener in its retries/backoff
                    self.slow_in_round.set()
                    self.release.wait(60)
            finally:
                with self.lock:
                    self.active[name] -= 1
                    self.events.append(("round ended", name, threshold))

        return FunctionJob(name, 0.05, one_round, close=lambda: self.record("close", name, threshold))


def _wait(what: str, condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        time.sleep(0.02)


@contextmanager
def running(worker: Worker, fake: FakeJobs) -> Iterator[threading.Thread]:
    """``worker.run()`` on a thread of its own; at the end the slow round is let go and the worker stopped."""
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        yield runner
    finally:
        fake.release.set()
        worker.stop()
        runner.join(20)


def _worker(store: Store, provider: Callable[[Store, Config, Any], list[FunctionJob]],
            monkeypatch: pytest.MonkeyPatch, reload_config: Callable[[], Config] | None = None,
            **options: Any) -> Worker:
    monkeypatch.setattr(worker_module, "RELOAD_PROVIDER", provider, raising=False)
    return Worker(store, apply_settings(CONFIG, store), None, providers=["commands.worker:RELOAD_PROVIDER"],
                  reload_check_s=0.1, settings_stamp=lambda: settings_stamp(store),
                  reload_config=reload_config or (lambda: apply_settings(CONFIG, store)), **options)


def _threshold(config: Config) -> float:
    return alert_settings(config).urgency_threshold


def test_a_job_in_a_long_round_does_not_hold_up_the_others_after_a_save(
        store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeJobs()

    def provider(s: Store, config: Config, pipeline: Any) -> list[FunctionJob]:
        return [fake.job("slow", _threshold(config), slow=True), fake.job("quick", _threshold(config))]

    caplog.set_level(logging.INFO, logger="commands.worker")
    worker = _worker(store, provider, monkeypatch)
    with running(worker, fake) as runner:
        _wait("the slow job in its round and a round of the quick one",
              lambda: fake.slow_in_round.is_set() and fake.seen("round", "quick", OLD))
        save_setting(store, "alert_rule", "urgency_threshold", NEW, "cli")
        _wait("a round of the quick job with the new config while the slow job is still in its round",
              lambda: fake.seen("round", "quick", NEW))
        assert not fake.seen("round ended", "slow", OLD) and not fake.release.is_set()
        assert fake.index("close", "quick", OLD) < fake.index("round", "quick", NEW)
        assert not fake.seen("round", "slow", NEW)  # never two copies: the slow one is still in its round
        fake.release.set()
        _wait("the slow job's replacement", lambda: fake.seen("round", "slow", NEW))
        worker.stop()
        runner.join(20)
        assert not runner.is_alive()
    assert fake.index("round ended", "slow", OLD) < fake.index("close", "slow", OLD) < fake.index("round", "slow", NEW)
    assert fake.most_at_once == {"slow": 1, "quick": 1} and fake.most_threads == {"slow": 1, "quick": 1}
    for name in ("slow", "quick"):  # once the new config is in force, the old one never comes back
        rounds = [t for what, n, t in fake.events if what == "round" and n == name]
        assert OLD not in rounds[rounds.index(NEW):]
    assert fake.seen("close", "slow", NEW) and fake.seen("close", "quick", NEW)  # closed when the worker stopped
    restarted = [r.getMessage() for r in caplog.records if r.getMessage().startswith("settings changed in the console")]
    assert restarted and all("quick" in line for line in restarted), restarted
    assert any("slow" in line for line in restarted), restarted


def test_jobs_gone_from_the_new_config_stop_and_new_ones_start(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeJobs()

    def provider(s: Store, config: Config, pipeline: Any) -> list[FunctionJob]:
        threshold = _threshold(config)
        return [fake.job("kept", threshold), fake.job("gone" if threshold == OLD else "new", threshold)]

    worker = _worker(store, provider, monkeypatch)
    with running(worker, fake) as runner:
        _wait("a round of each job", lambda: fake.seen("round", "kept", OLD) and fake.seen("round", "gone", OLD))
        save_setting(store, "alert_rule", "urgency_threshold", NEW, "cli")
        _wait("the new job and the kept one with the new config",
              lambda: fake.seen("round", "new", NEW) and fake.seen("round", "kept", NEW))
        _wait("the gone job closed", lambda: fake.seen("close", "gone", OLD))
        with fake.lock:
            gone_rounds = sum(1 for what, name, _ in fake.events if what == "round" and name == "gone")
        time.sleep(0.3)  # a few intervals of 0.05 s: a job still running would have had its round
        with fake.lock:
            assert gone_rounds == sum(1 for what, name, _ in fake.events if what == "round" and name == "gone")
        worker.stop()
        runner.join(20)
        assert not runner.is_alive()
    assert not any(t.name == "job:gone" and t.is_alive() for t in threading.enumerate())


def test_stop_ends_everything_while_a_replacement_waits_for_a_stuck_job(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM while a job is stuck in its round and its replacement waits for it: the worker ends after
    stop_grace_s, as without a reload, and the replacement never starts."""
    fake = FakeJobs()

    def provider(s: Store, config: Config, pipeline: Any) -> list[FunctionJob]:
        return [fake.job("slow", _threshold(config), slow=True), fake.job("quick", _threshold(config))]

    worker = _worker(store, provider, monkeypatch, stop_grace_s=0.5)
    with running(worker, fake) as runner:
        _wait("the slow job in its round", fake.slow_in_round.is_set)
        save_setting(store, "alert_rule", "urgency_threshold", NEW, "cli")
        _wait("the quick job with the new config", lambda: fake.seen("round", "quick", NEW))
        worker.stop()
        runner.join(15)  # the slow round is not let go: only the grace ends the worker
        assert not runner.is_alive(), "stop() did not end the worker while a replacement was waiting"
        assert not fake.seen("round", "slow", NEW)
        assert fake.seen("close", "quick", NEW)
    assert not any(t.name == "job:quick" and t.is_alive() for t in threading.enumerate())


def test_settings_that_cannot_be_read_leave_the_jobs_running_and_the_next_look_reads_them(
        store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeJobs()
    reads: list[str] = []

    def reload_config() -> Config:
        reads.append("read")
        if len(reads) == 1:
            fake.record("reload failed", "", 0)
            raise StoreError(store.path, "cannot be reached (connection refused)", "start the database")
        fake.record("reloaded", "", 0)
        return apply_settings(CONFIG, store)

    def provider(s: Store, config: Config, pipeline: Any) -> list[FunctionJob]:
        return [fake.job("quick", _threshold(config))]

    caplog.set_level(logging.WARNING, logger="commands.worker")
    worker = _worker(store, provider, monkeypatch, reload_config=reload_config)
    with running(worker, fake) as runner:
        _wait("a round of the job", lambda: fake.seen("round", "quick", OLD))
        save_setting(store, "alert_rule", "urgency_threshold", NEW, "cli")  # the stamp moves once
        _wait("the job with the new config", lambda: fake.seen("round", "quick", NEW))
        worker.stop()
        runner.join(20)
        assert not runner.is_alive()
    assert "could not be read" in caplog.text
    failed, reloaded = fake.index("reload failed", "", 0), fake.index("reloaded", "", 0)
    with fake.lock:
        between = fake.events[failed:reloaded]
    # The job went on with the config in force (not stopped, not closed) until the settings were read.
    assert ("close", "quick", OLD) not in between
    assert fake.index("reloaded", "", 0) < fake.index("close", "quick", OLD) < fake.index("round", "quick", NEW)


def test_once_and_max_ticks_are_as_before(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeJobs()

    def provider(s: Store, config: Config, pipeline: Any) -> list[FunctionJob]:
        return [fake.job("a", _threshold(config)), fake.job("b", _threshold(config))]

    assert _worker(store, provider, monkeypatch).run(once=True) == {"a": 0, "b": 0}
    for name in ("a", "b"):  # one round each, then closed
        assert [e for e in fake.events if e[1] == name] == [("round", name, OLD), ("round ended", name, OLD),
                                                            ("close", name, OLD)]
    fake.events.clear()
    assert _worker(store, provider, monkeypatch).run(max_ticks=3) == {"a": 0, "b": 0}
    for name in ("a", "b"):
        assert [e[0] for e in fake.events if e[1] == name] == ["round", "round ended"] * 3 + ["close"]


def test_the_webhook_server_is_handed_over_not_started_twice_on_one_port(
        store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replaced webhook job stops its server before its replacement starts one: the old one kept the
    port, so the new one failed on "address in use" every round while the old config served. (A replaced
    X stream likewise disconnects: X allows one stream connection per app.)"""
    import socket

    import httpx

    monkeypatch.setenv("DOORSTEP_WEBHOOK_SECRET", "whsec-reload-test")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = parse_config({"alerts": {"urgency_threshold": OLD},
                           "channels": {"webhook": {"host": "127.0.0.1", "port": port}}})
    caplog.set_level(logging.INFO, logger="commands.worker")
    worker = Worker(store, apply_settings(config, store), None, providers=["listeners.jobs:jobs"], reload_check_s=0.1,
                    settings_stamp=lambda: settings_stamp(store), reload_config=lambda: apply_settings(config, store))
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        def answers() -> bool:
            try:
                return httpx.post(f"http://127.0.0.1:{port}/mentions", json={}, timeout=2).status_code < 500
            except httpx.HTTPError:
                return False

        _wait("the webhook answering", answers)
        save_setting(store, "alert_rule", "urgency_threshold", NEW, "cli")
        _wait("the webhook job restarted", lambda: "job listen:webhook restarted" in caplog.text)
        time.sleep(0.3)  # its replacement's first round has run by now
        _wait("the webhook answering after the restart", answers)
        assert worker._failures.get("listen:webhook", 0) == 0, caplog.text
    finally:
        worker.stop()
        runner.join(20)
