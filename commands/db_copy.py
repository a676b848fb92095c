"""``doorstep db copy``: move a shop from its SQLite file to PostgreSQL without losing a row.

How it stays lossless and resumable:

* The target's schema is Doorstep's own (the store's migration list, run on PostgreSQL), so
  every column keeps its name and meaning; full-text indexes are rebuilt by PostgreSQL, not copied.
* Each table is copied in batches in SQLite's rowid order. A batch and the table's progress
  mark (``doorstep_copy_progress``) commit in one PostgreSQL transaction, so an interrupted
  copy resumes after its last committed batch, and a rerun of a finished copy copies nothing.
  Inserts say ON CONFLICT DO NOTHING besides, so a row is never doubled.
* Ids are copied as they are (links between tables and in audit details stay true), and each
  identity sequence is moved past the largest id, so new rows on PostgreSQL never collide.
* Afterwards both sides are counted and checksummed per table (an order-independent sum of
  per-row hashes over the same columns, values normalised: 3 and 3.0 are the same number), and
  printed; a difference is an error.

Copy a stopped shop (or copy once while it runs, stop it, and copy again: the rerun adds the
rows written meanwhile; rows *changed* meanwhile show up as a checksum difference).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Our own bookkeeping on the target, and SQLite's (never copied).
PROGRESS_TABLE = "doorstep_copy_progress"
SKIP_PREFIXES = ("sqlite_", "_", "procrastinate_")
#: Tables each database keeps for itself: the search mark (m019) counts that database's own writes.
OWN_TABLES = ("change_marks", "change_marks_pending")
#: Full-text shadow tables (SQLite FTS5/FTS4): PostgreSQL has its own index.
FTS_SUFFIXES = ("_fts", "_fts_data", "_fts_idx", "_fts_docsize", "_fts_config", "_fts_content", "_fts_segments",
                "_fts_segdir", "_fts_stat")


class CopyError(RuntimeError):
    """The copy cannot go on: says which database or table, and what to do."""


@dataclass
class TableCopy:
    table: str
    source_count: int = 0
    target_count: int = 0
    copied: int = 0
    source_checksum: str = ""
    target_checksum: str = ""


@dataclass
class CopyReport:
    tables: list[TableCopy] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return all(t.source_count == t.target_count and t.source_checksum == t.target_checksum for t in self.tables)


def _normalise(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return value


def _row_hash(values: tuple[Any, ...]) -> int:
    text = "\x1f".join("\x00" if v is None else repr(_normalise(v)) for v in values)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big")


def _checksum(rows: Iterator[tuple[Any, ...]]) -> tuple[int, str]:
    count, total = 0, 0
    for row in rows:
        count += 1
        total = (total + _row_hash(tuple(row))) % (1 << 64)
    return count, f"{total:016x}"


def _source_tables(src: sqlite3.Connection) -> list[str]:
    names = [r[0] for r in src.execute("select name from sqlite_master where type = 'table' order by rowid")]
    fts = {r[0] for r in src.execute("select name from sqlite_master where type = 'table' and sql like '%VIRTUAL TABLE%'")}
    return [n for n in names if n not in fts and n not in OWN_TABLES and not n.startswith(SKIP_PREFIXES)
            and not n.endswith(FTS_SUFFIXES)]


def _target_columns(conn: Any, table: str) -> dict[str, str]:
    rows = conn.execute(
        "select column_name, data_type from information_schema.columns where table_schema = current_schema() "
        "and table_name = %s and is_generated = 'NEVER' and (generation_expression is null)", [table]).fetchall()
    return {r[0]: r[1] for r in rows}


def _convert(value: Any, pg_type: str) -> Any:
    """A SQLite value as the target column holds it: SQLite lets any column hold any type, so a
    number in a text column becomes its text, and a whole float in an integer column an int."""
    if value is None:
        return None
    if pg_type == "boolean":
        return bool(value)
    if pg_type == "text" and not isinstance(value, str):
        return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)
    if pg_type in ("bigint", "integer", "smallint") and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def copy_database(source: str, target: str, *, batch: int = 5000,
                  progress: Callable[[str], None] | None = None,
                  stop_after_batches: int | None = None) -> CopyReport:
    """Copy ``source`` (a SQLite file) into ``target`` (a PostgreSQL URL); returns counts and checksums.

    ``stop_after_batches``: stop after that many batches (tests of an interrupted copy).
    """
    import psycopg

    from doorstep.dialect import database_target as conninfo, is_postgres
    from doorstep.store import Store

    say = progress or (lambda line: None)
    if not Path(source).is_file():
        raise CopyError(f"--from {source}: no such SQLite file")
    if not is_postgres(target):
        raise CopyError(f"--to {target}: expected a postgresql:// URL")
    Store(source).close()  # the source's schema up to date, so both sides have the same columns
    try:
        Store(target).close()  # the target's schema: Doorstep's migrations on PostgreSQL
        conn = psycopg.connect(conninfo(target))
    except Exception as exc:  # noqa: BLE001 - any connection failure is one line
        raise CopyError(f"--to {target}: cannot open the PostgreSQL database ({exc}); check the URL and that "
                        "PostgreSQL is running") from None
    src = sqlite3.connect(f"{Path(source).resolve().as_uri()}?mode=ro", uri=True)
    report = CopyReport()
    batches = 0
    try:
        conn.execute(f"create table if not exists {PROGRESS_TABLE} (name text primary key, last_rowid bigint not null)")
        conn.commit()
        for table in _source_tables(src):
            target_cols = _target_columns(conn, table)
            if not target_cols:
                say(f"{table}: not in the PostgreSQL schema; skipped")
                continue
            source_cols = [r[1] for r in src.execute(f'pragma table_info("{table}")')]
            cols = [c for c in source_cols if c in target_cols]
            item = TableCopy(table)
            row = conn.execute(f"select last_rowid from {PROGRESS_TABLE} where name = %s", [table]).fetchone()
            last = row[0] if row else 0
            quoted = ", ".join(f'"{c}"' for c in cols)
            insert = (f'insert into "{table}" ({quoted}) values ({", ".join(["%s"] * len(cols))}) '
                      "on conflict do nothing")
            types = [target_cols[c] for c in cols]
            while True:
                if stop_after_batches is not None and batches >= stop_after_batches:
                    raise CopyError(f"stopped after {batches} batches as asked; run the copy again to continue")
                rows = src.execute(f'select rowid, {quoted} from "{table}" where rowid > ? order by rowid limit ?',
                                   [last, batch]).fetchall()
                if not rows:
                    break
                with conn.transaction():
                    with conn.cursor() as cur:
                        cur.executemany(insert, [[_convert(v, t) for v, t in zip(r[1:], types)] for r in rows])
                    last = rows[-1][0]
                    conn.execute(f"insert into {PROGRESS_TABLE} (name, last_rowid) values (%s, %s) "
                                 "on conflict (name) do update set last_rowid = excluded.last_rowid", [table, last])
                conn.commit()
                batches += 1
                item.copied += len(rows)
                say(f"{table}: {item.copied} rows copied (up to rowid {last})")
            _advance_identity(conn, table, target_cols)
            # The source as the target holds it (see _convert), so equal sums mean equal rows.
            item.source_count, item.source_checksum = _checksum(
                tuple(_convert(v, t) for v, t in zip(r, types)) for r in src.execute(f'select {quoted} from "{table}"'))
            with conn.cursor() as cur:
                cur.execute(f'select {quoted} from "{table}"')
                item.target_count, item.target_checksum = _checksum(iter(cur))
            conn.commit()
            report.tables.append(item)
    finally:
        src.close()
        conn.close()
    return report


def _advance_identity(conn: Any, table: str, target_cols: dict[str, str]) -> None:
    """Move the table's id sequence past the largest copied id (new rows must not reuse one)."""
    if "id" not in target_cols or target_cols["id"] not in ("bigint", "integer"):
        return
    sequence = conn.execute("select pg_get_serial_sequence(%s, 'id')", [f'"{table}"']).fetchone()[0]
    if sequence is None:
        return
    conn.execute(f'select setval(%s, greatest((select coalesce(max(id), 0) from "{table}"), 1), '
                 f'(select count(*) > 0 from "{table}"))', [sequence])
    conn.commit()
