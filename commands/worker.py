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
    _reloading: bool = False
    _failures: dict[str, int] = field(default_factory=dict)
    #: A reload the database did not answer: the next look that works reloads again.
    _settings_unread: bool = False
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
        while True:
            failures = self._run_jobs(once, max_ticks)
            if once or not self._reloading:
                return failures
            # A lead saved a template or an alert rule: every job starts again with the config in force.
            self._reloading = False
            self._stop.clear()
            if self.reload_config is not None:
                try:
                    self.config = self.reload_config()
                except Exception as exc:  # noqa: BLE001 - narrowed in _database_trouble
                    if (trouble := _database_trouble(self.store, exc)) is None:
                        raise
                    # The jobs go on with the config in force; the next look that works reads them again.
                    log.warning("settings changed in the console but could not be read: %s; the jobs go on "
                                "with the config in force and read them at the next look", trouble)
                    self._settings_unread = True
                    continue
            log.info("settings changed in the console: jobs restarted with the new config")

    def _run_jobs(self, once: bool, max_ticks: int | None) -> dict[str, int]:
        jobs = self.collect_jobs()
        for job in jobs:
            self._failures.setdefault(job.name, 0)
        # None: not known (not read yet, or the database could not be asked); the first look that works reloads.
        stamp = None if self._settings_unread else self._look_at_settings()
        self._settings_unread = False
        looked_at = time.monotonic()
        log.info("worker started with jobs: %s", ", ".join(j.name for j in jobs) or "(none)")
        rounds = 1 if once else max_ticks
        threads = [threading.Thread(target=self._loop, args=(job, rounds), name=f"job:{job.name}", daemon=True)
                   for job in jobs]
        for thread in threads:
            thread.start()
        stopped_at: float | None = None
        while any(t.is_alive() for t in threads):
            # Waited for in slices: a plain join() would keep the main thread from handling SIGTERM.
            next(t for t in threads if t.is_alive()).join(0.5)
            if (not once and self.settings_stamp is not None and not self._stop.is_set()
                    and time.monotonic() - looked_at >= self.reload_check_s):
                looked_at = time.monotonic()
                now = self._look_at_settings()
                if now is not None and now != stamp:
                    self._reloading = True
                    self._stop.set()
            if self._stop.is_set() and self._reloading:
                continue  # a restart waits for every job to finish its round: never two copies of a job
            if self._stop.is_set():
                stopped_at = stopped_at or time.monotonic()
                if time.monotonic() - stopped_at > self.stop_grace_s:
                    # A job stuck in a long wait (a rate-limit window) ends with the process.
                    log.warning("worker stopped; still busy: %s",
                                ", ".join(t.name for t in threads if t.is_alive()))
                    break
        for job in jobs:
            # A job may leave work running in the background (the outbox's channel lanes):
            # close() lets it finish, so a round of ``run --once`` is a whole round.
            close = getattr(job, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001
                    log.exception("job %s did not close cleanly", job.name)
        return dict(self._failures)

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

    def _loop(self, job: Job, rounds: int | None) -> None:
        """One job's own schedule: run, wait its interval (or until stopped), run again."""
        done = 0
        while not self._stop.is_set():
            started = time.monotonic()
            self.run_job(job)
            done += 1
            if rounds is not None and done >= rounds:
                return
            # Waiting on the event (not sleeping) lets stop() end the wait at once.
            self._stop.wait(max(0.05, job.interval_s - (time.monotonic() - started)))

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
