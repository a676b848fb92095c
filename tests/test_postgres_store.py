"""Issue 16, one store on two databases: what selects PostgreSQL, how SQLite's SQL reaches it,
and that "busy" means the same on both (the suites that take the ``store`` fixture run on both;
these check the layer itself)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from doorstep.dialect import POSTGRES, SQLITE, database_target, describe_target, is_busy
from doorstep.postgres import translate
from doorstep.store import Store, StoreError


def test_sqlite_sql_is_translated_for_psycopg() -> None:
    sql, order = translate("select [count], '?%' as lit, x from t where a = ? and b like ? and c = '50%'")
    assert sql == "select \"count\", '?%%' as lit, x from t where a = %s and b like %s and c = '50%%'"
    assert order is None
    sql, order = translate("update s set v = (select v from e where n = ?1) where n = ?1 and m = ?2")
    assert sql.count("%s") == 3 and order == (0, 0, 1)


def test_a_path_or_sqlite_url_keeps_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert database_target("sqlite:///shop.db") == "shop.db"
    assert database_target("sqlite:////srv/shop.db") == "/srv/shop.db"
    store = Store("sqlite:///shop.db")
    assert store.dialect is SQLITE and (tmp_path / "shop.db").exists()
    store.close()
    assert describe_target("postgresql://ann:secret@db.example:5433/care") == "postgresql://ann@db.example:5433/care"


def test_the_same_fts_semantics_on_both(store: Store) -> None:
    """Words are prefixes, every one must appear, an e-mail address is found by its parts."""
    from doorstep.models import Case, Customer
    from tests.conftest import mention

    case_id = store.insert_case(Case(status="open", channel="x", author_handle="someone", mention_count=1))
    store.set_mention_case(store.insert_mention(mention("1", "The parcel was SMASHED at the door")), case_id)
    store.upsert_customer(Customer(id="c1", name="Zoë Finch", email="zoe.finch@example.org"))
    other = store.insert_case(Case(status="open", channel="x", author_handle="zf", customer_id="c1", mention_count=1))
    assert store.search_cases("smash door") == [case_id]
    assert store.search_cases("smashed window") == []
    assert store.search_cases("finch@example") == [other]
    assert store.search_cases("!!!") == []


def test_cli_and_environment_switch_to_postgres(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from commands.cli import cli

    added = CliRunner().invoke(cli, ["--db", postgres_url, "user", "add", "ann", "--role", "agent", "--password-stdin"],
                               input="correct horse battery\n")
    assert added.exit_code == 0, added.output
    monkeypatch.setenv("DOORSTEP_DB", postgres_url)
    assert CliRunner().invoke(cli, ["user", "list"]).output.startswith("ann\tagent")
    with psycopg.connect(postgres_url) as conn:  # the rows are in PostgreSQL, in the URL's schema
        assert conn.execute("select username from users").fetchall() == [("ann",)]


def test_a_read_only_command_does_not_create_a_postgres_schema(postgres_url: str) -> None:
    from commands.cli import cli

    listed = CliRunner().invoke(cli, ["--db", postgres_url, "user", "list"])
    assert listed.exit_code != 0 and "no database at" in listed.output
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select to_regclass('users')").fetchone()[0] is None


def test_unreachable_postgres_is_one_line_naming_it_without_the_password() -> None:
    with pytest.raises(StoreError) as failed:
        Store("postgresql://ann:hunter2@127.0.0.1:1/care?connect_timeout=2")
    text = str(failed.value)
    assert "cannot connect" in text and "postgresql://ann@127.0.0.1:1/care" in text and "hunter2" not in text


def test_write_transactions_take_the_write_lock_first_on_postgres(postgres_url: str) -> None:
    """As BEGIN IMMEDIATE on SQLite: a second check-then-write waits for the first; a writer that
    waits at most 0.2 s gets PostgreSQL's "busy" (lock timeout), which is_busy recognises."""
    first, second = Store(postgres_url), Store(postgres_url)
    try:
        with first.write_transaction():
            started = time.monotonic()
            with pytest.raises(psycopg.Error) as waited, second.waiting_at_most(0.2), second.write_transaction():
                pass
            assert is_busy(waited.value) and time.monotonic() - started < 5
        with second.write_transaction():  # free again once the first committed
            second.set_cursor("k", "v")
        assert first.get_cursor("k") == "v"
    finally:
        first.close()
        second.close()


def test_presence_is_best_effort_when_postgres_is_busy(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    from doorstep import presence

    store, holder = Store(postgres_url), psycopg.connect(postgres_url)
    try:
        with holder.transaction():
            holder.execute("lock table cursors in access exclusive mode")
            started = time.monotonic()
            with caplog.at_level(logging.INFO, logger="doorstep.doorstep.presence"):
                presence.touch(store, 1, "ann")  # no error on the page: skipped after half a second
            assert time.monotonic() - started < 5
        assert "not recorded" in caplog.text
        presence.touch(store, 1, "ann")
        assert [p["user"] for p in presence.others(store, 1, "bob")] == ["ann"]
    finally:
        holder.close()
        store.close()


def test_optimistic_locking_across_two_postgres_connections(postgres_url: str) -> None:
    from doorstep.models import Case
    from doorstep.store import StaleCaseError

    agent_a, agent_b = Store(postgres_url), Store(postgres_url)
    try:
        case_id = agent_a.insert_case(Case(status="open", channel="x", author_handle="kit", mention_count=1))
        read_a, read_b = agent_a.get_case(case_id), agent_b.get_case(case_id)
        results: list[BaseException | None] = []

        def change(store: Store, version: int, status: str) -> None:
            try:
                store.update_case(case_id, version, status.upper(), status=status)
                results.append(None)
            except StaleCaseError as exc:
                results.append(exc)

        threads = [threading.Thread(target=change, args=(agent_a, read_a.version, "pending_customer")),
                   threading.Thread(target=change, args=(agent_b, read_b.version, "escalated"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(r is None for r in results) == [False, True]  # one wins, one is told it is stale
        assert agent_a.get_case(case_id).version == read_a.version + 1
    finally:
        agent_a.close()
        agent_b.close()


def test_dialect_names_each_difference() -> None:
    assert SQLITE.fts_query('parcel "lost"') == '"parcel"* "lost"*'
    assert POSTGRES.fts_query("Parcel lost!") == "'parcel':* & 'lost':*"
    assert SQLITE.indexed_by("idx") == " indexed by idx" and POSTGRES.indexed_by("idx") == ""
    assert POSTGRES.group_concat("status", distinct=True) == "string_agg(distinct status, ',')"


def test_postgres_counts_overdue_cases_from_an_index(postgres_url: str) -> None:
    """m015: the overdue count can be answered from idx_cases_open_due_at (an index-only scan on a
    big backlog, bench/RESULTS.md); told not to scan the table, PostgreSQL takes that index."""
    from doorstep.store import InboxQuery

    store = Store(postgres_url)
    try:
        where, params = store._inbox_where(InboxQuery(sla_state="breached"), for_count=True)
        store.db.execute("set enable_seqscan = off")
        plan = " ".join(r[0] for r in store.db.execute(f"explain select count(*) from cases where {where}", params))
        assert "idx_cases_open_due_at" in plan, plan
    finally:
        store.close()


def test_a_schema_named_in_the_url_is_made_on_first_use(postgres_url: str) -> None:
    """As a SQLite file is: `--db 'postgresql://...?options=-csearch_path%3Dshop_b'` just works."""
    from tests.conftest import drop_postgres_schema

    url = postgres_url.replace("search_path%3Dtest_", "search_path%3Dmade_")
    try:
        store = Store(url)
        assert store.count("cases") == 0
        assert store.db.execute("select current_schema()").fetchone()[0].startswith("made_")
        store.close()
    finally:
        drop_postgres_schema(url)


@pytest.mark.parametrize("path, cause, remedy", [
    ("/doorstep_no_such_database", 'database "doorstep_no_such_database" does not exist',
     "createdb -h 127.0.0.1 -p 5432 -U postgres doorstep_no_such_database"),
    ("/test?user=doorstep_no_such_role", "role", "check the user name and password in the --db / DOORSTEP_DB URL"),
    ("/test?sslmode=bogus", "sslmode", "correct the --db / DOORSTEP_DB URL"),
])
def test_a_postgres_failure_names_the_remedy_for_its_cause(path: str, cause: str, remedy: str) -> None:
    """Scale audit finding 1: every connection failure said "start PostgreSQL", also when the server
    runs and the database, the role or a URL setting is what is wrong."""
    from conftest import POSTGRES_URL, require_postgres

    require_postgres()
    server = POSTGRES_URL.rsplit("/", 1)[0]
    with pytest.raises(StoreError) as failed:
        Store(server + path)
    text = str(failed.value)
    assert cause in text and remedy in text and "pg_ctlcluster" not in text, text


def test_a_postgres_server_that_is_not_running_is_told_to_start() -> None:
    with pytest.raises(StoreError) as failed:
        Store("postgresql://ann@127.0.0.1:1/care?connect_timeout=2")
    assert "start PostgreSQL" in str(failed.value)


def test_two_shops_in_two_schemas_keep_their_demo_files_apart() -> None:
    """PostgreSQL team audit: shop_a and shop_b, two schemas of one database, were both given doorstep-test.x-feed.jsonl
    and doorstep-test.sent, so a second shop's demo would overwrite the first's X feed and empty its sent mail."""
    from doorstep.store.base import files_beside

    a = files_beside("postgresql://postgres@127.0.0.1/test?options=-csearch_path%3Dshop_a", ".x-feed.jsonl")
    b = files_beside("postgresql://postgres@127.0.0.1/test?options=-csearch_path%3Dshop_b", ".x-feed.jsonl")
    plain = files_beside("postgresql://postgres@127.0.0.1/test", ".sent")
    assert a != b and a.name == "doorstep-test-shop_a.x-feed.jsonl", (a, b)
    assert plain.name == "doorstep-test.sent"
