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

#: Every queue, in the order ``doorstep worker --queues`` lists them (see commands/jobs_queue.py).
QUEUES = ("listen", "classify", "ingest", "send", "alerts", "reports")

#: Task names shared by the code that defers them and commands.jobs_queue, which runs them.
SEND_TASK = "doorstep.send"
CLASSIFY_TASK = "doorstep.classify"
INGEST_TASK = "doorstep.ingest"

_deferrer: Any = None
#: Databases (URLs) whose procrastinate tables this process has seen.
_ready: set[str] = set()

#: Advisory lock key under which one process at a time creates procrastinate's tables.
SCHEMA_LOCK_KEY = 0x600D_D00B


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

    if store.path not in _ready:
        apply_schema(store.path)
        _ready.add(store.path)
    if _deferrer is None:
        # Never opened: it only writes through the connections it is handed.
        _deferrer = procrastinate.App(connector=procrastinate.SyncPsycopgConnector())
    _deferrer.configure_task(task, queue=queue, lock=lock, queueing_lock=queueing_lock,
                             schedule_at=schedule_at, connection=store.db.pg).defer(**kwargs)


def apply_schema(url: str) -> bool:
    """Create procrastinate's tables in the database (its current schema) unless they exist; returns whether it did.

    Idempotent and safe to race: under an advisory lock, so workers (or a console queueing the
    first reply) starting together do not both create them. Called by ``doorstep worker`` on
    start and before the first job a process defers.
    """
    import procrastinate
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", [SCHEMA_LOCK_KEY])
        try:
            if conn.execute("select to_regclass('procrastinate_jobs')").fetchone()[0] is not None:
                return False
            conn.execute(procrastinate.schema.SchemaManager.get_schema())
            return True
        finally:
            conn.execute("select pg_advisory_unlock(%s)", [SCHEMA_LOCK_KEY])
