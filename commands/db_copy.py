"""``doorstep db copy``: move a shop from its SQLite file to PostgreSQL without losing a row.

How it stays lossless, resumable and safe:

* The target's schema is Doorstep's own (the store's migration list, run on PostgreSQL), so
  every column keeps its name and meaning; full-text indexes are rebuilt by PostgreSQL, not copied.
* One shop per target. The target records which shop it was copied from (``doorstep_copy_source``:
  the moment the SQLite shop was created, its first migration's time, which every backup and move
  of the file keeps and no other shop shares). A target that holds rows of any other shop, or rows
  no copy recorded (a shop built on PostgreSQL), is refused before anything is written there, its
  schema included: merging two shops would put one shop's posts into the other's cases.
  ``replace=True`` (``--replace``) empties the target's Doorstep tables first instead.
* Each table is copied in batches in SQLite's rowid order. A batch and the table's progress
  mark (``doorstep_copy_progress``: last rowid, and the count and checksum of what PostgreSQL
  returned as stored) commit in one PostgreSQL transaction, so an interrupted copy resumes after
  its last committed batch, and a rerun of a finished copy copies nothing. Inserts say ON CONFLICT
  DO NOTHING besides, so a row is never doubled.
* A rerun first checks that the target still holds exactly what the copies stored (its count and
  checksum per table against the progress marks). If not, something else wrote there since (the
  shop already runs on PostgreSQL) and the copy stops before writing: bringing the tables into line
  would delete that shop's new rows.
* After the new rows, each table's source (count, checksum) is compared with the target's, in one
  SQLite read snapshot. A table that differs had rows changed or removed on SQLite since the last
  copy (rowid order sees only new rows): it is copied again whole, truncate and insert in one
  PostgreSQL transaction, from that same snapshot. Why whole rather than an upsert plus a delete of
  the keys SQLite no longer has: both read and send every row of the table anyway, and the whole copy
  needs no key list, no per-column update and no second pass to find deleted keys, and it cannot
  leave a row behind. It costs the table's rewrite, once, on the run after the shop changed it.
  So the rerun after the shop stopped converges, and the one after that finds nothing to do.
* Ids are copied as they are (links between tables and in audit details stay true), and each
  identity sequence is moved past the largest id, so new rows on PostgreSQL never collide.
* Checksums are order-independent sums of per-row hashes over the same columns, values normalised
  (3 and 3.0 are the same number), the source's as PostgreSQL will hold them (see _convert).

Copy a stopped shop, or copy once while it runs, stop it, and copy again.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

#: Our own bookkeeping on the target, and SQLite's (never copied).
PROGRESS_TABLE = "doorstep_copy_progress"
#: Which shop the target was copied from (one row).
#: The advisory lock (with the schema's hash) that one copy into a schema holds while it runs.
COPY_LOCK_KEY = 0x0D5C
SOURCE_TABLE = "doorstep_copy_source"
SKIP_PREFIXES = ("sqlite_", "_", "procrastinate_")
#: Tables each database keeps for itself: the search mark (m019) counts that database's own writes.
OWN_TABLES = ("change_marks", "change_marks_pending")
#: Full-text shadow tables (SQLite FTS5/FTS4): PostgreSQL has its own index.
FTS_SUFFIXES = ("_fts", "_fts_data", "_fts_idx", "_fts_docsize", "_fts_config", "_fts_content", "_fts_segments",
                "_fts_segdir", "_fts_stat")
#: sqlite-utils' record of applied migrations (its first row: when the shop's file was created).
MIGRATIONS_TABLE = "_sqlite_migrations"
_SUM = 1 << 64
_INTEGERS = ("bigint", "integer", "smallint")
#: What a value PostgreSQL refuses raises: named with its table and row, not as a database failure.
_ROW_ERRORS: tuple[type[BaseException], ...] = (psycopg.DataError, psycopg.IntegrityError, UnicodeEncodeError)
_REPLACE_REMEDY = ("copy into an empty schema or database, or pass --replace to empty the target's Doorstep "
                   "tables first (their rows are lost)")


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
    #: Rows were changed or removed on SQLite since the last copy: the table was copied again whole.
    recopied: bool = False


@dataclass
class CopyReport:
    tables: list[TableCopy] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differing

    @property
    def differing(self) -> list[str]:
        """Tables whose counts or checksums differ (after copying them again whole: a value PostgreSQL
        holds differently, never one a rerun would fix)."""
        return [t.table for t in self.tables
                if t.source_count != t.target_count or t.source_checksum != t.target_checksum]


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


def _sum_rows(rows: Iterable[Iterable[Any]]) -> tuple[int, int]:
    count, total = 0, 0
    for row in rows:
        count += 1
        total = (total + _row_hash(tuple(row))) % _SUM
    return count, total


def _hex(total: int) -> str:
    return f"{total:016x}"


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
    number in a text column becomes its text, and a whole float in an integer column an int.

    NUL characters are dropped, as :func:`doorstep.models.whole_characters` drops them from new
    input: older versions kept them in posts, and PostgreSQL's text cannot hold one, so a single
    such post failed the whole copy on every rerun (a NUL carries no meaning in a post or a name)."""
    if value is None:
        return None
    if pg_type == "boolean":
        return bool(value)
    if pg_type == "text" and not isinstance(value, str):
        value = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if pg_type in _INTEGERS and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass
class _Table:
    """One table's copy plan: the columns both sides have, and their PostgreSQL types."""

    name: str
    cols: list[str]
    types: list[str]
    target_cols: dict[str, str]

    @property
    def quoted(self) -> str:
        return ", ".join(f'"{c}"' for c in self.cols)

    @property
    def insert(self) -> str:
        return (f'insert into "{self.name}" ({self.quoted}) values ({", ".join(["%s"] * len(self.cols))}) '
                f"on conflict do nothing returning {self.quoted}")

    def convert(self, rows: Iterable[Iterable[Any]]) -> tuple[list[list[Any]], int]:
        """``rows`` as PostgreSQL will hold them, and how many values lost a NUL."""
        converted, nul = [], 0
        for row in rows:
            values = list(row)
            nul += sum(1 for v in values if isinstance(v, str) and "\x00" in v)
            converted.append([_convert(v, t) for v, t in zip(values, self.types)])
        return converted, nul


def _describe(conn: Any, target: str) -> str:
    """The target for messages: the URL without its password, and the schema it writes to."""
    from doorstep.dialect import describe_target

    where = describe_target(target)
    try:
        schema = conn.execute("select current_schema()").fetchone()[0]
    except Exception:  # noqa: BLE001 - only for the words of a message
        schema = None
    return f"{where} (schema {schema})" if schema else where


def _without_password(text: str, target: str) -> str:
    """``text`` with the --to URL's password masked wherever a driver message repeated it."""
    from psycopg.conninfo import conninfo_to_dict

    text = re.sub(r"(postgres(?:ql)?://[^:/@\s]*):[^@\s]*@", r"\1@", text)
    text = re.sub(r"(password\s*=\s*)\S+", r"\1***", text)
    try:
        password = str(conninfo_to_dict(target).get("password") or "")
    except Exception:  # noqa: BLE001 - an unreadable URL: the patterns above are all we can do
        password = ""
    return text.replace(password, "***") if len(password) >= 4 else text  # a shorter one would mask other words


def _target_error(target: str, exc: BaseException, where: str, doing: str = "") -> CopyError:
    """A PostgreSQL failure as one line about --to: its cause and one remedy, no password."""
    from doorstep.store import StoreError

    error = exc if isinstance(exc, StoreError) else StoreError.from_postgres(target, exc)
    remedy = error.remedy.replace("--db / DOORSTEP_DB URL", "--to URL").replace("--db", "--to")
    text = f"--to {where}: " + (f"{doing}: " if doing else "") + error.cause + (f"; {remedy}" if remedy else "")
    return CopyError(_without_password(text, target))


def _source_error(source: str, path: str, exc: BaseException) -> CopyError:
    """A SQLite failure as one line about --from (never the --db default, which the copy does not use)."""
    from doorstep.store import StoreError

    error = exc if isinstance(exc, StoreError) else StoreError.from_sqlite(path, exc)
    remedy = error.remedy.replace("--db", "--from")
    return CopyError(f"--from {source}: {error.cause}" + (f"; {remedy}" if remedy else ""))


def _shop_identity(src: sqlite3.Connection, source: str) -> str:
    """Which shop the SQLite file holds: when its first migration ran, i.e. when the shop was created.

    Why this: it is written once, by Doorstep, when the file is made; a backup, a copy or a move of
    the file keeps it (the same shop), and two shops never share it (microseconds). A path would
    change when the file moves, and a shop's rows change all the time."""
    try:
        row = src.execute(f'select applied_at from "{MIGRATIONS_TABLE}" where migration_set = ? '
                          "order by id limit 1", ["doorstep"]).fetchone()
    except sqlite3.Error:
        row = None
    if not row or not row[0]:
        raise CopyError(f"--from {source}: not a Doorstep shop (no record of its migrations); check the --from path")
    return f"sqlite shop created {row[0]}"


def _claim_target(conn: Any, tables: list[str], shop: str, source: str, where: str, replace: bool) -> bool:
    """Refuse a target that holds another shop (or rows no copy recorded) before anything is written.

    Returns whether the copy starts afresh there (an empty target, or ``replace``)."""
    existing = {r[0] for r in conn.execute(
        "select table_name from information_schema.tables where table_schema = current_schema()")}
    filled = [t for t in tables if t in existing and conn.execute(f'select exists (select 1 from "{t}")').fetchone()[0]]
    if replace or not filled:
        return True
    recorded = conn.execute(f"select shop, path from {SOURCE_TABLE}").fetchone() if SOURCE_TABLE in existing else None
    if recorded is None:
        raise CopyError(f"--to {where} already holds a shop that was not copied from {source} "
                        f"({filled[0]} has rows); nothing was written: {_REPLACE_REMEDY}")
    if recorded[0] != shop:
        raise CopyError(f"--to {where} holds another shop (copied from {recorded[1]}), not {source}; "
                        f"nothing was written: {_REPLACE_REMEDY}")
    return False


def _target_state(conn: Any, plan: _Table) -> tuple[int, int]:
    """The table's count and checksum as PostgreSQL holds it now."""
    with conn.cursor() as cur:
        cur.execute(f'select {plan.quoted} from "{plan.name}"')
        return _sum_rows(cur)


def _mark(conn: Any, table: str, last: int, count: int, total: int) -> None:
    conn.execute(f"insert into {PROGRESS_TABLE} (name, last_rowid, row_count, checksum) values (%s, %s, %s, %s) "
                 "on conflict (name) do update set last_rowid = excluded.last_rowid, row_count = excluded.row_count, "
                 "checksum = excluded.checksum", [table, last, count, _hex(total)])


def _insert(conn: Any, plan: _Table, values: list[list[Any]]) -> tuple[int, int]:
    """Insert ``values``; the count and checksum of the rows PostgreSQL stored, as it returned them."""
    with conn.cursor() as cur:
        cur.executemany(plan.insert, values, returning=True)
        stored = []
        while True:
            stored += cur.fetchall()
            if not cur.nextset():
                break
    return _sum_rows(stored)


def _refused_row(conn: Any, plan: _Table, rows: list[tuple[Any, ...]], values: list[list[Any]], source: str,
                 exc: BaseException) -> CopyError:
    """Which row of a refused batch PostgreSQL cannot hold: tried one at a time, all rolled back."""
    culprit = None
    try:
        with conn.transaction():
            conn.execute(f'truncate "{plan.name}"')  # rolled back: only so that no existing row hides the culprit
            for row, value in zip(rows, values):
                try:
                    with conn.transaction():
                        conn.execute(plan.insert, value)
                except _ROW_ERRORS as row_exc:
                    culprit, exc = row, row_exc
                    break
            raise psycopg.Rollback()
    except psycopg.Error:  # the search for the row failed: name the batch instead
        pass
    if culprit is None:
        label = f"rowids {rows[0][0]}-{rows[-1][0]}"
    elif "id" in plan.cols:
        label = f"id {culprit[1 + plan.cols.index('id')]}"
    else:
        label = f"rowid {culprit[0]}"
    cause = " ".join(str(exc).split()) or type(exc).__name__
    return CopyError(f"--from {source}: table {plan.name}, row {label}: PostgreSQL cannot hold a value of it "
                     f"({cause}); correct that row in the SQLite file and run the copy again")


def copy_database(source: str, target: str, *, batch: int = 5000,
                  progress: Callable[[str], None] | None = None,
                  stop_after_batches: int | None = None, replace: bool = False) -> CopyReport:
    """Copy ``source`` (a SQLite file, or a sqlite:/// URL) into ``target`` (a PostgreSQL URL); returns
    counts and checksums of both sides per table.

    ``replace``: empty the target's Doorstep tables first, whatever they hold (otherwise a target
    holding another shop, or rows written there since the last copy, is refused).
    ``stop_after_batches``: stop after that many batches (tests of an interrupted copy).
    """
    from doorstep.config import database_location
    from doorstep.dialect import database_target as conninfo, describe_target, is_postgres
    from doorstep.store import Store, StoreError

    say = progress or (lambda line: None)
    if is_postgres(source):
        raise CopyError(f"--from {describe_target(source)}: expected a SQLite file (the copy goes from SQLite to "
                        "PostgreSQL)")
    try:
        path = database_location(source)
    except ValueError:
        raise CopyError(f"--from {source!r}: names no file; give the SQLite file's path") from None
    if not Path(path).is_file():
        raise CopyError(f"--from {source}: no such SQLite file")
    if not is_postgres(target):
        raise CopyError(f"--to {target}: expected a postgresql:// URL")
    try:
        Store(path).close()  # the source's schema up to date, so both sides have the same columns
    except (StoreError, sqlite3.Error) as exc:
        raise _source_error(source, path, exc) from None
    src = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        shop = _shop_identity(src, source)
        tables = _source_tables(src)
        try:
            conn = psycopg.connect(conninfo(target), autocommit=True)
        except psycopg.Error as exc:
            raise _target_error(target, exc, describe_target(target)) from None
        try:
            where = _describe(conn, target)
            # One copy into a schema at a time (a second terminal, a cron rerun): both would claim the target
            # and write the same tables at once. A session lock, so a killed copy releases it.
            if not conn.execute("select pg_try_advisory_lock(%s, hashtext(current_schema()))",
                                [COPY_LOCK_KEY]).fetchone()[0]:
                raise CopyError(f"--to {where}: another doorstep db copy into it is running; wait for it to finish, "
                                "then run this one again")
            try:
                fresh = _claim_target(conn, tables, shop, source, where, replace)
                Store(target).close()  # the target's schema: Doorstep's migrations on PostgreSQL
            except (StoreError, psycopg.Error) as exc:
                raise _target_error(target, exc, where) from None
            return _copy(src, conn, tables, shop=shop, source=source, path=path, target=target, where=where,
                         fresh=fresh, replace=replace, batch=batch, say=say, stop_after_batches=stop_after_batches)
        finally:
            conn.close()
    except sqlite3.Error as exc:  # reading the source's tables: about --from, never the --db default
        raise _source_error(source, path, exc) from None
    finally:
        src.close()


def _copy(src: sqlite3.Connection, conn: Any, tables: list[str], *, shop: str, source: str, path: str, target: str,
          where: str, fresh: bool, replace: bool, batch: int, say: Callable[[str], None],
          stop_after_batches: int | None) -> CopyReport:
    """The copy itself, once the target is known to hold this shop (or nothing)."""
    plans: list[_Table] = []
    try:
        conn.execute(f"create table if not exists {PROGRESS_TABLE} (name text primary key, last_rowid bigint not null)")
        conn.execute(f"alter table {PROGRESS_TABLE} add column if not exists row_count bigint, "
                     "add column if not exists checksum text")
        conn.execute(f"create table if not exists {SOURCE_TABLE} (shop text not null, path text not null)")
        for table in tables:
            target_cols = _target_columns(conn, table)
            if not target_cols:
                say(f"{table}: not in the PostgreSQL schema; skipped")
                continue
            cols = [c for c in (r[1] for r in src.execute(f'pragma table_info("{table}")')) if c in target_cols]
            plans.append(_Table(table, cols, [target_cols[c] for c in cols], target_cols))
        if fresh:
            with conn.transaction():
                if replace and plans:
                    conn.execute("truncate " + ", ".join(f'"{p.name}"' for p in plans))
                conn.execute(f"delete from {PROGRESS_TABLE}")
                conn.execute(f"delete from {SOURCE_TABLE}")
                conn.execute(f"insert into {SOURCE_TABLE} (shop, path) values (%s, %s)",
                             [shop, str(Path(path).resolve())])
                for plan in plans:  # what the migrations themselves put there, if anything
                    _mark(conn, plan.name, 0, *_target_state(conn, plan))
        else:
            _check_unchanged(conn, plans, source, where)
    except psycopg.Error as exc:
        raise _target_error(target, exc, where) from None
    report = CopyReport()
    batches = 0
    for plan in plans:
        try:
            item, batches = _copy_table(src, conn, plan, source=source, batch=batch, say=say, batches=batches,
                                        stop_after_batches=stop_after_batches)
        except sqlite3.Error as exc:
            raise CopyError(f"--from {source}: table {plan.name}: {' '.join(str(exc).split())}; check the file "
                            "(sqlite3 FILE 'pragma integrity_check') or restore a backup") from None
        except psycopg.Error as exc:
            raise _target_error(target, exc, where, f"table {plan.name}") from None
        report.tables.append(item)
    return report


def _check_unchanged(conn: Any, plans: list[_Table], source: str, where: str) -> None:
    """Refuse, before writing, a target whose rows are no longer what the copies stored there: the
    shop has been running on PostgreSQL since, and making the tables equal SQLite's would delete
    what it wrote."""
    marks = {r[0]: (r[1], r[2]) for r in conn.execute(f"select name, row_count, checksum from {PROGRESS_TABLE}")}
    changed = []
    for plan in plans:
        count, total = _target_state(conn, plan)
        if marks.get(plan.name, (0, _hex(0))) != (count, _hex(total)):
            changed.append(plan.name)
    if changed:
        names = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise CopyError(f"--to {where}: {names} changed on PostgreSQL since the last copy (is the shop running there "
                        f"now?); nothing was written: if PostgreSQL is the shop now, stop copying; to start over "
                        f"from {source}, pass --replace (the rows on PostgreSQL are lost)")


def _copy_table(src: sqlite3.Connection, conn: Any, plan: _Table, *, source: str, batch: int,
                say: Callable[[str], None], batches: int, stop_after_batches: int | None) -> tuple[TableCopy, int]:
    """New rows by rowid (resumable), then the whole table again if SQLite changed or removed rows."""
    item = TableCopy(plan.name)
    row = conn.execute(f"select last_rowid, row_count, checksum from {PROGRESS_TABLE} where name = %s",
                       [plan.name]).fetchone()
    last, count, total = (row[0], row[1] or 0, int(row[2] or "0", 16)) if row else (0, 0, 0)
    while True:
        if stop_after_batches is not None and batches >= stop_after_batches:
            raise CopyError(f"stopped after {batches} batches as asked; run the copy again to continue")
        rows = src.execute(f'select rowid, {plan.quoted} from "{plan.name}" where rowid > ? order by rowid limit ?',
                           [last, batch]).fetchall()
        if not rows:
            break
        values, nul = plan.convert(r[1:] for r in rows)
        try:
            with conn.transaction():
                added, added_sum = _insert(conn, plan, values)
                _mark(conn, plan.name, rows[-1][0], count + added, (total + added_sum) % _SUM)
        except _ROW_ERRORS as exc:
            raise _refused_row(conn, plan, rows, values, source, exc) from None
        last, count, total = rows[-1][0], count + added, (total + added_sum) % _SUM
        batches += 1
        item.copied += added
        say(f"{plan.name}: {item.copied} rows copied (up to rowid {last})"
            + (f"; NUL characters dropped from {nul} values" if nul else ""))
    src.execute("begin")  # one read snapshot: the check, and the copy again if it fails, see the same rows
    try:
        source_count, source_sum = _sum_rows(plan.convert(src.execute(f'select {plan.quoted} from "{plan.name}"'))[0])
        if (source_count, source_sum) != (count, total):
            say(f"{plan.name}: rows changed or removed on SQLite since the last copy; copying the table again")
            source_count, source_sum, count, total, copied = _recopy(src, conn, plan, source, batch)
            item.recopied, item.copied = True, item.copied + copied
    finally:
        src.rollback()
    _advance_identity(conn, plan.name, plan.target_cols)
    item.source_count, item.source_checksum = source_count, _hex(source_sum)
    item.target_count, item.target_checksum = count, _hex(total)
    return item, batches


def _recopy(src: sqlite3.Connection, conn: Any, plan: _Table, source: str,
            batch: int) -> tuple[int, int, int, int, int]:
    """The whole table again, in one PostgreSQL transaction (a failure leaves the last copy as it was):
    the source's count and checksum, the stored rows', and how many were stored."""
    source_count = source_sum = count = total = last = 0
    with conn.transaction():
        conn.execute(f'truncate "{plan.name}"')
        cursor = src.execute(f'select rowid, {plan.quoted} from "{plan.name}" order by rowid')
        while rows := cursor.fetchmany(batch):
            values, _ = plan.convert(r[1:] for r in rows)
            n, s = _sum_rows(values)
            source_count, source_sum = source_count + n, (source_sum + s) % _SUM
            try:
                with conn.transaction():
                    added, added_sum = _insert(conn, plan, values)
            except _ROW_ERRORS as exc:
                raise _refused_row(conn, plan, rows, values, source, exc) from None
            count, total, last = count + added, (total + added_sum) % _SUM, rows[-1][0]
        _mark(conn, plan.name, last, count, total)
    return source_count, source_sum, count, total, count


def _advance_identity(conn: Any, table: str, target_cols: dict[str, str]) -> None:
    """Move the table's id sequence past the largest copied id (new rows must not reuse one)."""
    if "id" not in target_cols or target_cols["id"] not in ("bigint", "integer"):
        return
    sequence = conn.execute("select pg_get_serial_sequence(%s, 'id')", [f'"{table}"']).fetchone()[0]
    if sequence is None:
        return
    conn.execute(f'select setval(%s, greatest((select coalesce(max(id), 0) from "{table}"), 1), '
                 f'(select count(*) > 0 from "{table}"))', [sequence])
