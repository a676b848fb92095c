"""The long-running worker: one loop that runs every periodic job.

Jobs are small objects with a name, an interval and ``run_once()``. Listeners,
the outbox sender, alert rules and the report scheduler each provide jobs through a
``jobs(store, config, pipeline)`` function in their package; the worker collects
them from :data:`JOB_PROVIDERS`, so the core never imports those packages at module
level and a deployment can leave one out.

A job that raises is logged and retried on its next tick: one broken channel must
not stop the others (its health record makes the failure visible).
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from doorstep.config import Config
from doorstep.store import Store

log = logging.getLogger("doorstep.worker")

#: "module:function" returning a list of jobs; a module that is not installed is skipped.
JOB_PROVIDERS: list[str] = [
    "listeners.jobs:jobs",
    "responders.jobs:jobs",
    "doorstep.reports:jobs",
]


def optional_attribute(spec: str) -> Any:
    """``"module:attribute"`` of a package that may be left out of a deployment, else None.

    A missing package is skipped; an import error *inside* an installed package is raised,
    so a broken listener is never silently treated as "not installed".
    """
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    return getattr(module, attribute, None)


class Job(Protocol):
    name: str
    interval_s: float

    def run_once(self) -> Any: ...


@dataclass
class FunctionJob:
    """Wrap a plain function as a job."""

    name: str
    interval_s: float
    fn: Callable[[], Any]

    def run_once(self) -> Any:
        return self.fn()


@dataclass
class Worker:
    store: Store
    config: Config
    pipeline: Any
    jobs: list[Job] = field(default_factory=list)
    providers: list[str] = field(default_factory=lambda: list(JOB_PROVIDERS))
    _stop: threading.Event = field(default_factory=threading.Event)

    def collect_jobs(self) -> list[Job]:
        jobs = list(self.jobs)
        for spec in self.providers:
            provider = optional_attribute(spec)
            if provider is not None:
                jobs.extend(provider(self.store, self.config, self.pipeline))
        return jobs

    def run(self, once: bool = False, max_ticks: int | None = None) -> dict[str, int]:
        """Run every job when it is due. Returns how many times each job failed."""
        jobs = self.collect_jobs()
        failures = {job.name: 0 for job in jobs}
        next_run = {job.name: 0.0 for job in jobs}
        if not once:
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
        log.info("worker started with jobs: %s", ", ".join(j.name for j in jobs) or "(none)")
        ticks = 0
        while not self._stop.is_set():
            now = time.monotonic()
            for job in jobs:
                if once or now >= next_run[job.name]:
                    try:
                        job.run_once()
                    except Exception:  # noqa: BLE001 - one job must not stop the others
                        failures[job.name] += 1
                        log.exception("job %s failed", job.name)
                    next_run[job.name] = time.monotonic() + job.interval_s
            ticks += 1
            if once or (max_ticks is not None and ticks >= max_ticks):
                break
            # Waiting on the event (not sleeping) lets SIGTERM stop the worker at once.
            self._stop.wait(max(0.05, min(next_run.values(), default=now + 1.0) - time.monotonic()))
        return failures

    def stop(self) -> None:
        self._stop.set()
