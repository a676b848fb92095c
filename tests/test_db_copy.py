"""``doorstep db copy``: a SQLite shop copied to PostgreSQL losslessly and resumably (issue 16)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from commands.db_copy import CopyError, copy_database
from doorstep.models import Case
from doorstep.store import Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo shop on SQLite, plus users, sessions, cursors, an outbox row and awkward values."""
    from classifiers import load_classifier
    from console.auth import add_user
    from commands.demo import DEFAULT_CONFIG, build_demo

    path = tmp_path_factory.mktemp("copy") / "shop.db"
    build_demo(str(path), seed=3, customers=30, orders=80, mentions=60, now=NOW, config_path=str(DEFAULT_CONFIG),
               classifier=load_classifier("baseline"), live=False)
    store = Store(path)
    add_user(store, "maria", "a long enough password 1", role="lead", name="María José 🚚")
    store.set_cursor("x:search:larkspur", '{"since_id":"1900000000000000001","newest":null,"until_id":null}')
    from responders.outbox import enqueue

    enqueue(store, kind="reply", channel="x", text="Sorry — we're on it 🙏", actor="maria", idempotency_key="copy-1",
            case_id=store.inbox()[0].id, in_reply_to="1900000000000000001")
    store.add_note(store.inbox()[0].id, "maria", "Quote: \"x\" — tab\there, newline\nthere, NUL-free, ünïcödé")
    store.close()
    return path


def _sqlite_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("select name from sqlite_master where type = 'table' and sql not like "
                                        "'%VIRTUAL TABLE%' and name not like 'sqlite_%' and name not like '\\_%' "
                                        "escape '\\' and name not like '%_fts_%'")]
    counts = {n: conn.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}
    conn.close()
    return counts


def test_copy_is_lossless_resumable_and_a_rerun_copies_nothing(shop: Path, postgres_url: str) -> None:
    with pytest.raises(CopyError, match="run the copy again"):
        copy_database(str(shop), postgres_url, batch=7, stop_after_batches=5)  # interrupted
    report = copy_database(str(shop), postgres_url, batch=7)  # resumes
    assert report.identical
    counts = {t.table: t.target_count for t in report.tables}
    expected = _sqlite_counts(shop)
    for table in ("cases", "mentions", "outbound_messages", "audit_events", "users", "cursors", "customers", "orders",
                  "shipments", "notes"):
        assert counts[table] == expected[table] > 0, table
    assert sum(t.copied for t in report.tables) == sum(counts.values()) - 5 * 7  # the first 5 batches not again

    again = copy_database(str(shop), postgres_url, batch=7)
    assert again.identical and sum(t.copied for t in again.tables) == 0

    # Ids kept, and new rows on PostgreSQL continue after them.
    source = Store(shop)
    target = Store(postgres_url)
    case = source.inbox()[0]
    assert target.get_case(case.id) == case
    top = int(source.db.execute("select max(id) from cases").fetchone()[0])
    new_id = target.insert_case(Case(channel="x", opened_at=NOW, status="new"))
    assert new_id == top + 1
    note = source.notes(case.id)[-1]
    assert target.notes(case.id)[-1].text == note.text
    source.close()
    target.close()


def test_checksums_notice_a_row_that_differs(shop: Path, postgres_url: str) -> None:
    """A row changed on PostgreSQL since the copy is noticed, and left alone (the shop may run there now);
    --replace starts over from SQLite."""
    assert copy_database(str(shop), postgres_url, batch=500).identical
    with psycopg.connect(postgres_url) as conn:
        conn.execute("update cases set priority = priority + 1 where id = (select min(id) from cases)")
    with pytest.raises(CopyError, match=r": cases changed on PostgreSQL since the last copy"):
        copy_database(str(shop), postgres_url, batch=500)
    report = copy_database(str(shop), postgres_url, batch=500, replace=True)
    assert report.identical


def test_db_copy_command_prints_counts_and_checksums(shop: Path, postgres_url: str) -> None:
    from commands.cli import cli

    result = CliRunner().invoke(cli, ["db", "copy", "--from", str(shop), "--to", postgres_url])
    assert result.exit_code == 0, result.output
    assert "counts and checksums match" in result.output
    line = next(l for l in result.output.splitlines() if l.startswith("mentions "))
    assert line.split()[1] == line.split()[2] and line.endswith("same")


def test_db_copy_from_a_missing_file_is_one_line(tmp_path: Path) -> None:
    from commands.cli import cli

    result = CliRunner().invoke(cli, ["db", "copy", "--from", str(tmp_path / "nope.db"), "--to", "postgresql://x@h/db"])
    assert result.exit_code != 0 and "no such SQLite file" in result.output and "Traceback" not in result.output
