"""``doorstep db copy`` audit: another shop is never merged in, a rerun converges after rows changed,
a NUL or a refused value names its row, and --to/--from mistakes are one line about --to/--from."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from commands.db_copy import CopyError, copy_database
from doorstep.models import Case, Mention
from doorstep.store import Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo shop on SQLite with a lead, an admin and an agent (tests copy it before changing it)."""
    from classifiers import load_classifier
    from commands.demo import DEFAULT_CONFIG, build_demo
    from console.auth import add_user

    path = tmp_path_factory.mktemp("copy_audit") / "shop.db"
    build_demo(str(path), seed=5, customers=20, orders=40, mentions=40, now=NOW, config_path=str(DEFAULT_CONFIG),
               classifier=load_classifier("baseline"), live=False)
    store = Store(path)
    add_user(store, "maria", "a long enough password 1", role="admin", name="María")
    add_user(store, "callum", "a long enough password 2", role="agent", name="Callum")
    add_user(store, "zoe", "a long enough password 3", role="agent", name="Zoë")
    store.close()
    return path


@pytest.fixture
def shop(template: Path, tmp_path: Path) -> Path:
    """This test's own copy of the demo shop."""
    path = tmp_path / "shop.db"
    shutil.copy(template, path)
    return path


def _other_shop(path: Path) -> Path:
    """Shop B: a shop of its own (created now), one post that must never land in shop A's copy."""
    store = Store(path)
    store.insert_mention(Mention(channel="x", external_id="b-1", text="shop B's customer: my parcel is late",
                                 created_at=NOW, author_handle="shop_b_customer"))
    store.close()
    return path


def _pg(url: str, sql: str, params: list | None = None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params or []).fetchall()


# ---------------------------------------------------------------- F1: another shop is never merged in
def test_another_shop_onto_a_filled_target_is_refused_before_writing(shop: Path, tmp_path: Path,
                                                                     postgres_url: str) -> None:
    assert copy_database(str(shop), postgres_url).identical
    before = _pg(postgres_url, "select count(*), max(id) from mentions")
    other = _other_shop(tmp_path / "other.db")

    with pytest.raises(CopyError) as refused:
        copy_database(str(other), postgres_url)
    message = str(refused.value)
    assert "another shop" in message and str(shop) in message and "--replace" in message and "\n" not in message
    assert "schema test_" in message  # which target: the schema too
    assert _pg(postgres_url, "select count(*), max(id) from mentions") == before
    assert _pg(postgres_url, "select count(*) from mentions where text like %s", ["shop B%"]) == [(0,)]

    # Asked for: shop B replaces shop A, nothing of A left.
    report = copy_database(str(other), postgres_url, replace=True)
    assert report.identical
    assert _pg(postgres_url, "select author_handle from mentions") == [("shop_b_customer",)]


def test_a_target_with_a_shop_of_its_own_is_refused(shop: Path, postgres_url: str) -> None:
    """A shop built on PostgreSQL (no copy bookkeeping) is not merged with the SQLite shop."""
    target = Store(postgres_url)
    case_id = target.insert_case(Case(channel="x", opened_at=NOW, status="new", author_handle="pg_customer"))
    target.close()

    with pytest.raises(CopyError, match="already holds a shop that was not copied from .*--replace"):
        copy_database(str(shop), postgres_url)
    assert _pg(postgres_url, "select id, author_handle from cases") == [(case_id, "pg_customer")]
    assert _pg(postgres_url, "select count(*) from mentions") == [(0,)]


def test_another_shop_on_the_command_line_is_one_line_naming_the_target(shop: Path, tmp_path: Path,
                                                                        postgres_url: str) -> None:
    from commands.cli import cli

    assert copy_database(str(shop), postgres_url).identical
    other = _other_shop(tmp_path / "other.db")
    result = CliRunner().invoke(cli, ["db", "copy", "--from", str(other), "--to", postgres_url])
    assert result.exit_code == 1
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: --to postgresql://") and "another shop" in error, result.output
    assert "DIFFERENT" not in result.output and "same" not in result.output  # nothing copied, nothing compared


# ---------------------------------------------------------------- F2: a rerun converges
def test_a_rerun_brings_changed_and_removed_rows_over(shop: Path, postgres_url: str) -> None:
    from console.auth import remove_user, set_password
    from doorstep.erasure import erase_customer

    assert copy_database(str(shop), postgres_url, batch=9).identical
    # The shop goes on for a moment on SQLite: an erasure, a password change, a removed user.
    store = Store(shop)
    customer = store.db.execute("select id, name, email from customers order by id limit 1").fetchone()
    erase_customer(store, customer[0], "maria", permission_of="cli")
    set_password(store, "zoe", "zoe's new password 9", rounds=4)
    remove_user(store, "callum")
    sqlite_customer = store.db.execute("select * from customers where id = ?", [customer[0]]).fetchall()
    zoe_hash = store.db.execute("select password_hash from users where username = 'zoe'").fetchone()[0]
    store.close()

    report = copy_database(str(shop), postgres_url, batch=9)
    differing = [t.table for t in report.tables if t.source_checksum != t.target_checksum
                 or t.source_count != t.target_count]
    assert report.identical, differing
    assert _pg(postgres_url, "select username from users where username = 'callum'") == []
    assert _pg(postgres_url, "select password_hash from users where username = 'zoe'") == [(zoe_hash,)]
    pg_customer = _pg(postgres_url, "select * from customers where id = %s", [customer[0]])
    assert len(pg_customer) == len(sqlite_customer)
    if pg_customer:
        assert customer[1] not in [v for v in pg_customer[0] if isinstance(v, str)], pg_customer
    assert {t.table for t in report.tables if t.recopied} >= {"users"}

    again = copy_database(str(shop), postgres_url, batch=9)  # the shop stopped: nothing left to do
    assert again.identical and sum(t.copied for t in again.tables) == 0
    assert not [t.table for t in again.tables if t.recopied]


def test_a_rerun_after_the_shop_stopped_says_match_on_the_command_line(shop: Path, postgres_url: str) -> None:
    from commands.cli import cli
    from console.auth import remove_user

    assert copy_database(str(shop), postgres_url).identical
    store = Store(shop)
    remove_user(store, "callum")
    store.close()
    result = CliRunner().invoke(cli, ["db", "copy", "--from", str(shop), "--to", postgres_url])
    assert result.exit_code == 0, result.output
    assert "DIFFERENT" not in result.output and "counts and checksums match" in result.output


def test_a_target_written_since_the_last_copy_is_left_alone(shop: Path, postgres_url: str) -> None:
    """The shop moved to PostgreSQL and took a case there: copying the old SQLite file again must not
    merge into it, nor bring it "into line" (that would delete the new case)."""
    assert copy_database(str(shop), postgres_url).identical
    target = Store(postgres_url)
    case_id = target.insert_case(Case(channel="x", opened_at=NOW, status="new", author_handle="new_on_pg"))
    target.close()
    with sqlite3.connect(shop) as conn:
        conn.execute("update users set name = 'Zoë Changed' where username = 'zoe'")

    with pytest.raises(CopyError, match=r"cases.*changed on PostgreSQL since the last copy.*--replace"):
        copy_database(str(shop), postgres_url)
    assert _pg(postgres_url, "select author_handle from cases where id = %s", [case_id]) == [("new_on_pg",)]
    assert _pg(postgres_url, "select name from users where username = 'zoe'") == [("Zoë",)]


def test_an_interrupted_rerun_still_resumes(shop: Path, postgres_url: str) -> None:
    """Kill-and-resume keeps working with the new bookkeeping: the next run continues, then matches."""
    with pytest.raises(CopyError, match="run the copy again"):
        copy_database(str(shop), postgres_url, batch=5, stop_after_batches=4)
    report = copy_database(str(shop), postgres_url, batch=5)
    assert report.identical and not [t.table for t in report.tables if t.recopied]


def test_a_value_postgresql_stores_differently_never_advises_a_rerun(shop: Path, postgres_url: str) -> None:
    """If a table still differs after being copied again, "run the copy again" would loop forever."""
    from commands.cli import cli

    with sqlite3.connect(shop) as conn:
        case_id = conn.execute("select min(id) from cases").fetchone()[0]
        # An INTEGER column keeps the REAL 1.5 on SQLite; PostgreSQL's bigint rounds it to 2.
        conn.execute("update cases set mention_count = 1.5 where id = ?", [case_id])
    result = CliRunner().invoke(cli, ["db", "copy", "--from", str(shop), "--to", postgres_url])
    assert result.exit_code == 1
    error = result.output.strip().splitlines()[-1]
    assert "run the copy again" not in error and "cases" in error, error


# ---------------------------------------------------------------- F3: NUL, and values PostgreSQL refuses
def test_a_post_with_a_nul_is_copied_without_it(shop: Path, postgres_url: str) -> None:
    with sqlite3.connect(shop) as conn:
        mention_id = conn.execute("select min(id) from mentions").fetchone()[0]
        conn.execute("update mentions set text = 'where is' || char(0) || ' my parcel' where id = ?", [mention_id])
    report = copy_database(str(shop), postgres_url)
    assert report.identical
    assert _pg(postgres_url, "select text from mentions where id = %s", [mention_id]) == [("where is my parcel",)]


def test_a_value_postgresql_refuses_names_the_table_and_row(shop: Path, postgres_url: str) -> None:
    from commands.cli import cli

    with sqlite3.connect(shop) as conn:
        case_id = conn.execute("select max(id) from cases").fetchone()[0]
        conn.execute("update cases set priority = 'high' where id = ?", [case_id])  # SQLite keeps the text
    with pytest.raises(CopyError, match=rf"cases.* id {case_id}\b.*high"):
        copy_database(str(shop), postgres_url)
    result = CliRunner().invoke(cli, ["db", "copy", "--from", str(shop), "--to", postgres_url])
    error = result.output.strip().splitlines()[-1]
    assert result.exit_code == 1 and f"id {case_id}" in error and "doorstep.db" not in error, result.output


# ---------------------------------------------------------------- F4: --to / --from mistakes
def test_a_refused_connection_never_prints_the_password(shop: Path) -> None:
    from commands.cli import cli

    result = CliRunner().invoke(cli, ["db", "copy", "--from", str(shop), "--to",
                                      "postgresql://postgres:s3cretpw@127.0.0.1:1/test"])
    assert result.exit_code == 1
    assert "s3cretpw" not in result.output
    assert "--to postgresql://postgres@127.0.0.1:1/test" in result.output
    assert "--db" not in result.output and "DOORSTEP_DB" not in result.output
    assert result.output.count(" or ") <= 1 and "check the URL and that PostgreSQL is running" not in result.output


def test_from_takes_a_sqlite_url(shop: Path, postgres_url: str) -> None:
    from commands.cli import cli

    result = CliRunner().invoke(cli, ["db", "copy", "--from", f"sqlite:///{shop}", "--to", postgres_url])
    assert result.exit_code == 0, result.output
    assert "counts and checksums match" in result.output


def test_from_a_file_that_is_no_database_names_from(tmp_path: Path) -> None:
    from commands.cli import cli

    text = tmp_path / "notes.db"
    text.write_text("not a database\n")
    result = CliRunner().invoke(cli, ["db", "copy", "--from", str(text), "--to", "postgresql://x@127.0.0.1:1/db"])
    assert result.exit_code == 1
    error = result.output.strip().splitlines()[-1]
    assert error.startswith(f"Error: --from {text}") and "doorstep.db" not in error and "--db" not in error, error


# ---------------------------------------------------------------- two copies into one schema at once
def test_a_second_copy_into_the_same_schema_while_one_runs_is_refused(shop: Path, tmp_path: Path,
                                                                       postgres_url: str) -> None:
    """Left open last stop: two ``db copy`` runs into one schema were not locked against each other (a second
    terminal, a cron rerun), so both claimed the target and wrote the same tables at once. The second is now
    refused at once, in one line, and the first finishes as if alone."""
    second: list[BaseException | None] = []

    def meanwhile(line: str) -> None:  # the first copy's progress: it is running now
        if not second:
            try:
                copy_database(str(shop), postgres_url)
                second.append(None)
            except CopyError as exc:
                second.append(exc)

    assert copy_database(str(shop), postgres_url, progress=meanwhile, batch=10).identical
    assert second and isinstance(second[0], CopyError), second
    message = str(second[0])
    assert "another doorstep db copy" in message and "schema test_" in message and "\n" not in message, message
    assert copy_database(str(shop), postgres_url).identical  # once the first is done, a rerun may go ahead
