"""Jobs written in the caller's own transaction (PostgreSQL only; procrastinate's job table).

Why here, in the core, and this small: the outbox (responders) must defer a message's send
job in the very transaction that writes the message, so that a rolled-back reply leaves no
job and a committed one has exactly one. That needs only procrastinate's "defer" SQL on the
store's connection, not the worker (commands.jobs_queue defines the tasks and runs them). On
SQLite there is no job table: ``doorstep run`` finds due messages by polling the outbox.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

#: Task names shared by the code that defers them and commands.jobs_queue, which runs them.
SEND_TASK = "doorstep.send"
CLASSIFY_TASK = "doorstep.classify"
INGEST_TASK = "doorstep.ingest"

_deferrer: Any = None


def uses_job_queue(store: Any) -> bool:
    """Whether the store is on PostgreSQL, where work is done as procrastinate jobs."""
    return bool(getattr(getattr(store, "dialect", None), "postgres", False))


def defer_job(store: Any, task: str, *, queue: str, lock: str | None = None, queueing_lock: str | None = None,
              schedule_at: datetime | None = None, **kwargs: Any) -> None:
    """Insert a job on the store's connection: it commits, or rolls back, with the store's transaction.

    Raises procrastinate's ``AlreadyEnqueued`` when ``queueing_lock`` already has a waiting job
    (which aborts the transaction on PostgreSQL: call it in a transaction of its own then).
    """
    global _deferrer
    import procrastinate

    if _deferrer is None:
        # Never opened: it only writes through the connections it is handed.
        _deferrer = procrastinate.App(connector=procrastinate.SyncPsycopgConnector())
    _deferrer.configure_task(task, queue=queue, lock=lock, queueing_lock=queueing_lock,
                             schedule_at=schedule_at, connection=store.db.pg).defer(**kwargs)
