"""The long-running worker: every periodic job on its own thread, with its own schedule.

Jobs are small objects with a name, an interval and ``run_once()``. Listeners,
the outbox sender, alert rules and the report scheduler each provide jobs through a
``jobs(store, config, pipeline)`` function in their package; the worker collects
them from :data:`JOB_PROVIDERS`, so the core never imports those packages at module
level and a deployment can leave one out.

Why a thread per job: jobs wait on the outside world. A listener waits out a 45-second
rate-limit window, a channel that does not answer holds a sender for its whole timeout;
in one shared loop every other job (replies, escalations, SLA alerts) waited with it.
Now each job only ever waits for itself. The store is shared across the threads
(:meth:`Store.share_across_threads`), so each thread writes through its own connection.

A job that raises is logged and retried on its next tick: one broken channel must
not stop the others (its health record makes the failure visible).

A lead's save in the console (a new settings stamp) restarts each job on its own: it is told to
stop after its round, and the job built from the new config takes its place as soon as its thread
ended and it was closed. A listener in a long backoff only holds up itself; before, every job
waited for the slowest round and alerts went out minutes after the save.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from doorstep.config import Config
from doorstep.jobs import FunctionJob, Job, optional_attribute  # noqa: F401 - FunctionJob: re-exported for jobs' tests
from doorstep.store import Store

log = logging.getLogger("commands.worker")

#: Seconds the worker waits, once stopped, for jobs to finish their round.
STOP_GRACE_S = 10.0

#: "module:function" returning a list of jobs; a module that is not installed is skipped.
JOB_PROVIDERS: list[str] = [
    "listeners.jobs:jobs",
    "responders.jobs:jobs",
    "responders.reports:jobs",
]


def _named(exc: BaseException) -> bool:
    """A failure whose message is the whole story: a listener's missing credential or its round's
    named errors (already in listener health). Anything else keeps its traceback for a developer."""
    from listeners.health import ListenerError, MissingCredentials

    return isinstance(exc, (ListenerError, MissingCredentials))


def _database_trouble(store: Store, exc: BaseException) -> str | None:
    """``exc`` in one line where the database could not be asked (gone away, refused, busy), else None."""
    from doorstep.dialect import DATABASE_ERRORS
    from doorstep.store import StoreError

    if isinstance(exc, StoreError):
        return str(exc)
    if isinstance(exc, DATABASE_ERRORS):
        return str(StoreError.from_sqlite(store.path, exc))
    return None


@dataclass
class _Running:
    """A job on its own thread, with its own stop: a reload tells one job to stop after its round."""

    job: Job
    thread: threading.Thread
    told_to_stop: threading.Event


@dataclass
class Worker:
    store: Store
    config: Config
    pipeline: Any
    jobs: list[Job] = field(default_factory=list)
    providers: list[str] = field(default_factory=lambda: list(JOB_PROVIDERS))
    #: Seconds to wait, once stopped, for jobs to finish their round.
    stop_grace_s: float = STOP_GRACE_S
    #: Only these jobs (by name), e.g. {"outbox"} for a sender process of its own; None: all.
    only: set[str] | None = None
    #: Every job but these.
    skip: set[str] = field(default_factory=set)
    #: The config in force now (doorstep.toml + the console's saved settings) and a stamp that
    #: changes when a lead saves one: the worker restarts its jobs with the new config.
    reload_config: Callable[[], Config] | None = None
    settings_stamp: Callable[[], Any] | None = None
    #: Seconds between looks at the stamp.
    reload_check_s: float = 30.0
    _stop: threading.Event = field(default_factory=threading.Event)
    #: Set when a job's thread ends or the worker is stopped: the main loop acts at once.
    _wake: threading.Event = field(default_factory=threading.Event)
    _failures: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def collect_jobs(self, *, filtered: bool = True) -> list[Job]:
        jobs = list(self.jobs)
        for spec in self.providers:
            provider = optional_attribute(spec)
            if provider is not None:
                jobs.extend(provider(self.store, self.config, self.pipeline))
        if filtered:
            jobs = [j for j in jobs if (self.only is None or j.name in self.only) and j.name not in self.skip]
        return jobs

    def run(self, once: bool = False, max_ticks: int | None = None) -> dict[str, int]:
        """Run every job on its own thread until stopped. Returns how many times each job failed.

        ``once``: every job runs one round (all at the same time) and the worker returns when
        the last one finished. ``max_ticks``: each job runs at most that many rounds.
        """
        if self.store.path != ":memory:":  # (an in-memory test store has one connection only)
            self.store.share_across_threads()
        if not once and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
        self._failures = {}
        rounds = 1 if once else max_ticks
        jobs = self.collect_jobs()
        log.info("worker started with jobs: %s", ", ".join(j.name for j in jobs) or "(none)")
        # Looked at before any job starts: a save during the first rounds is a change. None: not known
        # (the database could not be asked, or the settings not read); the first look that works reloads.
        stamp = None if once else self._look_at_settings()
        running: dict[str, _Running] = {}
        for job in jobs:
            self._failures.setdefault(job.name, 0)
            running[job.name] = self._start(job, rounds)
        try:
            self._watch(running, stamp, once, rounds)
        except BaseException:
            self.stop()  # (a reload that failed for another reason than the database): nothing runs on behind it
            raise
        finally:
            for entry in running.values():  # a job stuck in a long wait (a rate-limit window) at the end
                self._close(entry.job)
        return dict(self._failures)

    def _watch(self, running: dict[str, _Running], stamp: Any, once: bool, rounds: int | None) -> None:
        """Until every job ended: close each job whose thread ended (and start its replacement), look at
        the settings stamp, and after stop() give the jobs stop_grace_s to finish their round."""
        # Replacements after a reload, by name: each starts once the job it replaces has ended and was
        # closed, never two copies of a job, and no job waits for another's round (a listener's backoff).
        waiting: dict[str, Job] = {}
        looked_at = time.monotonic()
        stopped_at: float | None = None
        while running:
            # Waited for in slices: a plain join() would keep the main thread from handling SIGTERM.
            self._wake.wait(0.5)
            self._wake.clear()
            for name, entry in list(running.items()):
                if entry.thread.is_alive():
                    continue
                del running[name]
                self._close(entry.job)
                if name in waiting and not self._stop.is_set():
                    running[name] = self._start(waiting.pop(name), rounds)
                    log.info("job %s restarted with the new config", name)
            if self._stop.is_set():
                waiting.clear()
                for entry in running.values():
                    entry.told_to_stop.set()
                stopped_at = stopped_at or time.monotonic()
                if running and time.monotonic() - stopped_at > self.stop_grace_s:
                    # A job stuck in a long wait (a rate-limit window) ends with the process.
                    log.warning("worker stopped; still busy: %s", ", ".join(e.thread.name for e in running.values()))
                    return
            elif (not once and self.settings_stamp is not None
                    and time.monotonic() - looked_at >= self.reload_check_s):
                looked_at = time.monotonic()
                now = self._look_at_settings()
                if now is not None and now != stamp:
                    stamp = now if self._reload(running, waiting, rounds) else None

    def _reload(self, running: dict[str, _Running], waiting: dict[str, Job], rounds: int | None) -> bool:
        """A lead saved a template or an alert rule: read the config once and restart each job on its own
        with it. Before, every job waited for the slowest round (a listener's backoff held the alerts up
        for minutes). False where the database could not be asked: the jobs go on with the config in force."""
        in_force = self.config
        try:
            if self.reload_config is not None:
                self.config = self.reload_config()
            jobs = {job.name: job for job in self.collect_jobs()}
        except Exception as exc:  # noqa: BLE001 - narrowed in _database_trouble
            self.config = in_force
            if (trouble := _database_trouble(self.store, exc)) is None:
                raise
            log.warning("settings changed in the console but could not be read: %s; the jobs go on "
                        "with the config in force and read them at the next look", trouble)
            return False
        gone = sorted(set(running) - set(jobs))
        for entry in running.values():
            entry.told_to_stop.set()  # after its round; its replacement (if any) waits for it in ``waiting``
        waiting.clear()
        restarted, started = [], []
        for name, job in jobs.items():
            self._failures.setdefault(name, 0)
            if name in running:
                waiting[name] = job
                restarted.append(name)
            else:
                running[name] = self._start(job, rounds)
                started.append(name)
        log.info("settings changed in the console: jobs restart with the new config, each after its round: %s%s%s",
                 ", ".join(restarted) or "(none)", f"; started: {', '.join(started)}" if started else "",
                 f"; stopped: {', '.join(gone)}" if gone else "")
        return True

    def _start(self, job: Job, rounds: int | None) -> _Running:
        told_to_stop = threading.Event()
        thread = threading.Thread(target=self._loop, args=(job, rounds, told_to_stop), name=f"job:{job.name}",
                                  daemon=True)
        thread.start()
        return _Running(job, thread, told_to_stop)

    def _close(self, job: Job) -> None:
        """A job may leave work running in the background (the outbox's channel lanes): close() lets it
        finish, so a round of ``run --once`` is a whole round, and a restarted job's lanes end before the
        new job's start."""
        close = getattr(job, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001
                log.exception("job %s did not close cleanly", job.name)

    def _look_at_settings(self) -> Any:
        """The settings stamp now; None where the database could not be asked (one log line; the next look
        tries again). A database that is away for a while (a restart, a failover) ended the worker here:
        its jobs log a failed tick and try again, and so does this look (PostgreSQL worker audit)."""
        if self.settings_stamp is None:
            return None
        try:
            return self.settings_stamp()
        except Exception as exc:  # noqa: BLE001 - narrowed in _database_trouble
            if (trouble := _database_trouble(self.store, exc)) is None:
                raise
            log.warning("could not look at the console's settings: %s; the jobs go on and the next look is "
                        "in %g s", trouble, self.reload_check_s)
            return None

    def _loop(self, job: Job, rounds: int | None, told_to_stop: threading.Event) -> None:
        """One job's own schedule: run, wait its interval (or until told to stop), run again."""
        try:
            done = 0
            while not (self._stop.is_set() or told_to_stop.is_set()):
                started = time.monotonic()
                self.run_job(job)
                done += 1
                if rounds is not None and done >= rounds:
                    return
                # Waiting on the event (not sleeping) lets stop() or a reload end the wait at once.
                told_to_stop.wait(max(0.05, job.interval_s - (time.monotonic() - started)))
        finally:
            self._wake.set()

    def run_job(self, job: Job) -> bool:
        """One round of ``job``; a failure is logged and counted, never raised."""
        try:
            job.run_once()
            return True
        except Exception as exc:  # noqa: BLE001 - one job must not stop the others
            with self._lock:
                self._failures[job.name] = self._failures.get(job.name, 0) + 1
            if _named(exc):  # its message says what failed and what to do: one line, no traceback
                log.error("job %s failed: %s", job.name, exc)
            else:
                log.exception("job %s failed", job.name)
            return False

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()  # the main loop tells each job at once
