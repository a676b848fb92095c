"""A PostgreSQL connection that drops (a server restart, a failover, pg_terminate_backend) is opened again.

PostgreSQL worker audit (2026-12-06), finding 1: after one drop, both `doorstep worker` processes kept running
but every job failed with "the connection is closed" (each thread keeps one store connection for life): no reply,
escalation, alert or poll until someone restarted them; an open console tab failed on every click. A store's
connection now reopens itself: a read is asked again at once, a write fails once (it may have reached the server)
and the next call works, with the connection's settings (lock timeout, schema) as before."""

from __future__ import annotations

import psycopg
import pytest

from doorstep.store import Store


def _drop(store: Store) -> None:
    """What a server restart does to the store's connection: its backend ends."""
    pid = store.db.execute("select pg_backend_pid()").fetchone()[0]
    with psycopg.connect(store.path.split("?")[0], autocommit=True) as admin:
        admin.execute("select pg_terminate_backend(%s)", [pid])


def test_a_dropped_connection_is_opened_again_with_its_settings(postgres_url: str) -> None:
    store = Store(postgres_url)
    try:
        store.db.execute("create table if not exists t (x int)")
        before = store.db.execute("show lock_timeout").fetchone()[0]
        _drop(store)
        assert store.db.execute("select count(*) from cases").fetchone()[0] == 0  # a read is asked again
        assert store.db.execute("show lock_timeout").fetchone()[0] == before
        assert store.db.execute("select to_regclass('t') is not null").fetchone()[0]  # the same schema
        _drop(store)
        with pytest.raises(psycopg.OperationalError):
            store.db.execute("insert into t (x) values (1)")  # a write is not repeated blindly
        store.db.execute("insert into t (x) values (2)")  # the next call works
        with store.transaction():
            store.db.execute("insert into t (x) values (3)")
        _drop(store)
        with pytest.raises(psycopg.OperationalError):
            with store.transaction():
                store.db.execute("insert into t (x) values (4)")
        with store.transaction():  # a transaction after a drop starts on a fresh connection
            store.db.execute("insert into t (x) values (5)")
        assert [r[0] for r in store.db.execute("select x from t order by x")] == [2, 3, 5]
    finally:
        store.close()
