"""What a job is: the small contract every package's periodic work fulfils.

Listeners, the outbox sender, alert rules and the report scheduler each offer jobs through a
``jobs(store, config, pipeline)`` function in their package. The contract lives in the core so
the packages can implement it without importing the worker that runs them (commands/worker.py,
above the packages) or a job queue (commands/queue on PostgreSQL).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


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
    """Wrap a plain function as a job (``close``: what to call when the worker stops)."""

    name: str
    interval_s: float
    fn: Callable[[], Any]
    close: Callable[[], Any] | None = None

    def run_once(self) -> Any:
        return self.fn()
