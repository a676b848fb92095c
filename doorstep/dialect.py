"""Where SQLite and PostgreSQL differ: the one place that knows (issue 16).

Doorstep's SQL is written once, with ``?`` placeholders and portable statements (``insert ...
on conflict do nothing``, ``coalesce``, ``case when``), and runs on both databases. What has no
portable spelling has one function or constant here, and call sites ask ``store.dialect`` for
it: full-text search (FTS5 ``match`` against a GIN-indexed ``tsvector``), case-insensitive
equality (``collate nocase`` against ``lower()``), JSON (``json_each``/``json_extract`` against
``json_array_elements_text``/``->>``), ``group_concat`` against ``string_agg``, the planner hints
SQLite needs (``indexed by``) and PostgreSQL has no use for, and the database errors that mean
"busy, try again", and :func:`exclusive`: one holder of a named lock (a listener's
account and cursor, a periodic round) across every process that shares the database.

Which database: :func:`database_target` reads what ``--db``/``DOORSTEP_DB`` says. A path or
``sqlite:///path`` is SQLite (the embedded default); ``postgresql://user@host/db`` is PostgreSQL.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from doorstep.config import database_location

#: The URL schemes that mean PostgreSQL.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

#: Errors any database call can raise (for the one-line error handlers of commands and pages).
DATABASE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, psycopg.Error)

#: Errors of the database's operation rather than of the statement (locked, busy, gone away):
#: worth a retry, unlike a constraint or syntax error.
OPERATIONAL_ERRORS: tuple[type[BaseException], ...] = (sqlite3.OperationalError, psycopg.OperationalError)

#: PostgreSQL's "try again" conditions: serialisation failure, deadlock, lock timeout
#: (SET lock_timeout, see Store.waiting_at_most), and a lock that was not available (NOWAIT).
_PG_BUSY_STATES = {"40001", "40P01", "55P03"}


def is_postgres(target: str | Any) -> bool:
    """Whether ``--db``/``DOORSTEP_DB`` names a PostgreSQL database (a URL) rather than a file."""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def database_target(target: str | Any) -> str:
    """What to open for ``--db``: a PostgreSQL URL as given, else the SQLite file path
    (:func:`doorstep.config.database_location`, which refuses a target that names no file)."""
    return database_location(str(target))


def describe_target(target: str) -> str:
    """The database for messages and logs: a URL without its password."""
    if not is_postgres(target):
        return target
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(target)
    except psycopg.Error:
        return "postgresql://(unreadable URL)"
    host = parts.get("host", "localhost")
    port = f":{parts['port']}" if parts.get("port") else ""
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname', '')}"


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` says another connection holds a lock (or won a race): try again later."""
    if isinstance(exc, psycopg.Error):
        return getattr(exc, "sqlstate", None) in _PG_BUSY_STATES
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def _words(text: str) -> list[str]:
    """What an agent typed, as the words a full-text index holds (letters and digits)."""
    return [w for w in "".join(c if c.isalnum() else " " for c in text).split() if w]


@dataclass(frozen=True)
class Dialect:
    """The SQL that differs between the two databases, one method or constant per difference."""

    name: str

    @property
    def postgres(self) -> bool:
        return self.name == "postgresql"

    def next_id_sql(self, table: str) -> str | None:
        """PostgreSQL: the SQL that takes ``table``'s next identity value (the id its next insert
        would get). SQLite: None, the next rowid is one above the largest (under the write lock)."""
        if self.postgres:
            return f"select nextval(pg_get_serial_sequence('{table}', 'id'))"
        return None

    def first_rows_per_value(self, columns: Sequence[str], table: str, key: str, where: str, order: str,
                             limit: int) -> str:
        """SQL for the first ``limit`` rows of ``table`` in ``order`` for each value of the JSON array
        ``?`` in its column ``key``, among the rows matching ``where`` (``?`` parameters after the
        array's). ``where`` and ``order`` name the table's columns as ``x.column``.

        Each value's rows are walked in an index that ends with ``order`` and the walk stops at
        ``limit``, however many rows the value has. PostgreSQL: a LATERAL subquery per value.
        SQLite (no LATERAL): the rowids of a correlated ``limit`` subquery, one statement whatever
        the number of values, so it is prepared once, not once per list length.
        """
        picked = ", ".join(f"c.{c}" for c in columns)
        first = f"from {table} x where x.{key} = k.value and {where} order by {order} limit {int(limit)}"
        if self.postgres:
            return (f"select {picked} from json_array_elements_text(cast(? as json)) as k(value) "
                    f"cross join lateral (select x.* {first}) as c")
        return f"select {picked} from json_each(?) as k join {table} c on c.rowid in (select x.rowid {first})"

    # --------------------------------------------------------------- full-text search
    def fts_query(self, text: str) -> str:
        """What an agent types as a safe full-text query: every word must appear, as a prefix.

        SQLite: an FTS5 query of quoted prefix terms. PostgreSQL: a ``to_tsquery`` of quoted
        prefix lexemes joined by ``&``. Empty when nothing searchable was typed.
        """
        words = _words(text)
        if self.postgres:
            return " & ".join("'" + w.lower().replace("'", "''") + "':*" for w in words)
        return " ".join(f'"{w}"*' for w in words)

    def fts_document(self, columns: tuple[str, ...] | list[str]) -> str:
        """PostgreSQL: the indexed ``tsvector`` of ``columns``, split into words the way FTS5's
        unicode61 tokenizer splits (on anything but letters and digits), so an e-mail address
        or a handle is found by its parts, as on SQLite. Queries and the GIN index use this text."""
        joined = " || ' ' || ".join(f"coalesce({c}, '')" for c in columns)
        return f"to_tsvector('simple', regexp_replace({joined}, '[^[:alnum:]]+', ' ', 'g'))"

    def fts_ids(self, table: str, columns: tuple[str, ...], key: str = "rowid") -> str:
        """SQL for the keys of ``table``'s rows matching the full-text query ``?``, newest
        (highest key) first, at most ``?`` of them."""
        if self.postgres:
            return (f"select {key} from {table} where {self.fts_document(columns)} @@ to_tsquery('simple', ?) "
                    f"order by {key} desc limit ?")
        return f"select rowid from {table}_fts where {table}_fts match ? order by rowid desc limit ?"

    # ---------------------------------------------------------------- text and JSON
    def nocase_equals(self, column: str) -> str:
        """``column`` equals ``?`` ignoring case (ASCII), answered by :meth:`nocase_index`."""
        return f"lower({column}) = lower(?)" if self.postgres else f"{column} = ? collate nocase"

    def nocase_index(self, column: str) -> str:
        """The index expression that answers :meth:`nocase_equals`."""
        return f"(lower({column}))" if self.postgres else f"({column} collate nocase)"

    def json_values(self, kind: str = "text") -> str:
        """A subquery of the values of the JSON array ``?`` (``kind`` "int" for ids)."""
        if self.postgres:
            cast = "::bigint" if kind == "int" else ""
            return f"select value{cast} from json_array_elements_text(cast(? as json))"
        return "select value from json_each(?)"

    def json_field(self, column: str, key: str) -> str:
        """The text of ``key`` in the JSON object stored in ``column``."""
        if self.postgres:
            return f"(cast({column} as json) ->> '{key}')"
        return f"json_extract({column}, '$.{key}')"

    def group_concat(self, expr: str, *, distinct: bool = False) -> str:
        """The comma-joined values of ``expr`` in a group (NULL when none)."""
        inner = f"distinct {expr}" if distinct else expr
        return f"string_agg({inner}, ',')" if self.postgres else f"group_concat({inner})"

    def greatest(self, a: str, b: str) -> str:
        """The larger of two values (SQLite's two-argument ``max``)."""
        return f"greatest({a}, {b})" if self.postgres else f"max({a}, {b})"

    # ------------------------------------------------------------------- the planner
    def indexed_by(self, index: str | None) -> str:
        """SQLite's ``indexed by`` hint (``None``: ``not indexed``); PostgreSQL plans with statistics."""
        if self.postgres:
            return ""
        return " not indexed" if index is None else f" indexed by {index}"

    def index_names(self, db: Any) -> set[str]:
        """The names of the indexes in this database (schema)."""
        if self.postgres:
            return {r[0] for r in db.execute("select indexname from pg_indexes where schemaname = current_schema()")}
        return {r[0] for r in db.execute("select name from sqlite_master where type = 'index'")}


SQLITE = Dialect("sqlite")
POSTGRES = Dialect("postgresql")


def dialect_of(db: Any) -> Dialect:
    """The dialect of a database object (a migration's ``db``: sqlite-utils or ours)."""
    return getattr(db, "dialect", SQLITE)


# ------------------------------------------------------------------ one holder at a time
_local_locks: dict[tuple[str, str], threading.Lock] = {}
_local_guard = threading.Lock()
#: SQLite: database file -> the open descriptor of its lock file (kept open: closing any
#: descriptor of a file drops every POSIX lock this process holds on it).
_lock_files: dict[str, int | None] = {}


@contextmanager
def exclusive(target: str, name: str) -> Iterator[bool]:
    """Try to become the one holder of the lock ``name`` in the database ``target``; yields
    whether we are, and keeps it until the block ends. Never waits.

    What it is for: a listener polls each account and cursor (``poll:x:mentions:123``) under
    one, so two workers (or a worker and ``doorstep listen``) never poll the same account at
    once; a periodic round (``periodic:alerts``) likewise. Why skip rather than wait: whoever
    holds it is doing this very work now; a waiter would poll the account again the moment the
    holder finished (the same ``since_id``, a request of the account's rate limit spent for
    nothing, a worker thread parked meanwhile), and the next period comes anyway.

    PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a connection of its own,
    keyed by a stable 64-bit hash (``hashtextextended``) of the schema and ``name``, so two
    shops in one database do not block each other. Session-level, not transaction-level: a poll
    commits page by page. When the holder dies (``kill -9``, a lost machine), PostgreSQL ends
    its session and frees the lock, so nobody is locked out for good; the connection's
    ``application_name`` names the process and the lock (``pg_stat_activity`` shows who polls).

    SQLite (one machine): a lock within the process (threads) and a POSIX record lock on a byte
    of ``<database>-locks`` beside the file, keyed by a hash of ``name``, for a second process
    (``doorstep listen`` beside ``doorstep run``); the kernel frees it when the process dies. An
    in-memory database, or a system without ``fcntl``, has the in-process lock only.
    """
    if is_postgres(target):
        with _postgres_exclusive(target, name) as held:
            yield held
    else:
        with _sqlite_exclusive(database_target(target), name) as held:
            yield held


@contextmanager
def _postgres_exclusive(url: str, name: str) -> Iterator[bool]:
    with psycopg.connect(url, autocommit=True, application_name=f"doorstep {os.getpid()} {name}"[:63]) as conn:
        key = conn.execute("select hashtextextended(current_schema() || ':' || %s, 0)", [name]).fetchone()[0]
        held = bool(conn.execute("select pg_try_advisory_lock(%s)", [key]).fetchone()[0])
        try:
            yield held
        finally:
            if held and not conn.closed:
                try:
                    conn.execute("select pg_advisory_unlock(%s)", [key])
                except psycopg.Error:
                    pass  # the session is gone, and its lock with it


@contextmanager
def _sqlite_exclusive(path: str, name: str) -> Iterator[bool]:
    memory = path == ":memory:" or path.startswith("file::memory:")
    where = path if memory else os.path.abspath(path)
    with _local_guard:
        local = _local_locks.setdefault((where, name), threading.Lock())
    if not local.acquire(blocking=False):
        yield False
        return
    try:
        fd = None if memory else _lock_file(where)
        if fd is None:
            yield True
            return
        import fcntl

        offset = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") % (1 << 40)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)
    finally:
        local.release()


def _lock_file(path: str) -> int | None:
    with _local_guard:
        if path not in _lock_files:
            try:
                import fcntl  # noqa: F401 - POSIX only

                _lock_files[path] = os.open(f"{path}-locks", os.O_RDWR | os.O_CREAT, 0o600)
            except (ImportError, OSError):
                _lock_files[path] = None
        return _lock_files[path]
