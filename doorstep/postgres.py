"""PostgreSQL behind the small part of sqlite-utils' ``Database`` that Doorstep uses (issue 16).

Why a stand-in rather than an ORM: Doorstep's ~160 statements, its migrations (``db[t].create``,
``add_column``, ``create_index``, ``enable_fts``) and its tests are written against
sqlite-utils. Giving PostgreSQL the same face lets one migration list and one set of statements
run on both databases, with the differences that have no portable spelling kept in
:mod:`doorstep.dialect`. What this module does for every statement:

* ``?`` placeholders become psycopg's ``%s`` (``?NNN`` ones are expanded), ``%`` is escaped,
  and SQLite's ``[name]`` quoting becomes ``"name"``; literals and quoted names are left alone.
* ``insert`` into a table with an identity column returns it, so ``cursor.lastrowid`` works as
  on SQLite. Tables get an identity column the way SQLite gives them a rowid: ``id`` when
  that is the integer primary key, else a ``rowid`` column of their own.
* Results read as SQLite's do: ``numeric`` (``sum``/``avg`` of integers) as int or float, never
  ``Decimal``; a Python ``bool`` parameter is written as 0/1 (the columns are integers, as in
  SQLite).

Connections are in autocommit mode (as Doorstep's SQLite connections are: ``isolation_level=
None``); :meth:`PgDatabase.atomic` and ``Store.transaction`` open transactions explicitly.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.adapt import Dumper, Loader
from psycopg.pq import TransactionStatus
from sqlite_utils.db import NotFoundError

from doorstep.dialect import POSTGRES, Dialect

#: sqlite-utils' column types, as PostgreSQL spells them (SQLite stores JSON and times as text).
_TYPES = {int: "bigint", float: "double precision", str: "text", bytes: "bytea", bool: "bigint",
          dict: "text", list: "text", tuple: "text"}
_TYPE_NAMES = {"integer": int, "int": int, "bigint": int, "float": float, "real": float, "text": str, "str": str,
               "blob": bytes, "bytes": bytes}
_PY_TYPES = {"bigint": int, "integer": int, "smallint": int, "double precision": float, "real": float,
             "numeric": float, "text": str, "character varying": str, "bytea": bytes, "boolean": int}

log = logging.getLogger(__name__)

_INSERT_TABLE = re.compile(r"^\s*insert\s+into\s+\"?(\w+)\"?", re.IGNORECASE)
_RETURNING = re.compile(r"\breturning\b", re.IGNORECASE)
_WRITE = re.compile(r"^\s*(insert|update|delete)\b", re.IGNORECASE)
#: Statements that only read: asked again on a new connection when the old one dropped under them.
_READ = re.compile(r"^\s*(select|show)\b", re.IGNORECASE)


class _BoolAsInt(Dumper):
    """Python booleans go into Doorstep's integer columns as 0/1, as sqlite3 writes them."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


class _NumericAsNumber(Loader):
    """``numeric`` results (PostgreSQL's ``sum`` and ``avg`` of integers) as int or float, not Decimal."""

    def load(self, data: Any) -> int | float:
        text = bytes(data)
        if b"." in text or b"e" in text.lower() or b"N" in text:
            return float(text)
        return int(text)


@lru_cache(maxsize=4096)
def translate(sql: str) -> tuple[str, tuple[int, ...] | None]:
    """SQLite-flavoured SQL as psycopg takes it, and the parameter order when ``?NNN`` was used.

    Only ``?``, ``?NNN``, ``%`` and ``[name]`` outside string literals and quoted names change.
    """
    out: list[str] = []
    order: list[int] = []
    numbered = False
    plain = 0
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            j = sql.find(c, i + 1)
            while j != -1 and j + 1 < n and sql[j + 1] == c:  # doubled quote inside
                j = sql.find(c, j + 2)
            j = n - 1 if j == -1 else j
            out.append(sql[i:j + 1].replace("%", "%%"))
            i = j + 1
            continue
        if c == "?":
            j = i + 1
            while j < n and sql[j].isdigit():
                j += 1
            if j > i + 1:
                numbered = True
                order.append(int(sql[i + 1:j]) - 1)
            else:
                order.append(plain)
                plain += 1
            out.append("%s")
            i = j
            continue
        if c == "%":
            out.append("%%")
        elif c == "[":
            j = sql.find("]", i + 1)
            if j != -1 and re.fullmatch(r"\w+", sql[i + 1:j]):
                out.append(f'"{sql[i + 1:j]}"')
                i = j + 1
                continue
            out.append(c)
        else:
            out.append(c)
        i += 1
    return "".join(out), (tuple(order) if numbered else None)


class PgCursor:
    """A psycopg cursor with sqlite3's ``lastrowid`` (the identity of the row just inserted)."""

    def __init__(self, cursor: psycopg.Cursor, lastrowid: int | None = None):
        self._cursor = cursor
        self.lastrowid = lastrowid

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def description(self) -> Any:
        return self._cursor.description

    def fetchone(self) -> tuple | None:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall() if self._cursor.description else []

    def fetchmany(self, size: int = 1) -> list[tuple]:
        return self._cursor.fetchmany(size) if self._cursor.description else []

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.fetchall())

    def close(self) -> None:
        self._cursor.close()


class _Connection:
    """What Doorstep reads from ``db.conn`` on SQLite (``execute``, ``in_transaction``,
    ``total_changes``), so the store's hot paths need no second spelling."""

    def __init__(self, db: PgDatabase):
        self._db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        return self._db.execute(sql, params)

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    @property
    def total_changes(self) -> int:
        return self._db.changes

    def close(self) -> None:
        self._db.close()


class PgDatabase:
    """One PostgreSQL connection with the sqlite-utils ``Database`` methods Doorstep calls."""

    dialect: Dialect = POSTGRES

    def __init__(self, url: str):
        self.url = url
        #: Session settings (``set lock_timeout = ...``), made again on every new connection.
        self._settings: list[str] = []
        #: Transactions open on this connection (``atomic`` blocks, nested ones counted).
        self._depth = 0
        self.pg = self._connect()
        self.conn = _Connection(self)
        #: Rows this connection has inserted, updated or deleted (SQLite's total_changes).
        self.changes = 0
        self._identity: dict[str, str] | None = None
        self._lock = threading.RLock()

    def _connect(self) -> psycopg.Connection[Any]:
        pg = psycopg.connect(self.url, autocommit=True)
        pg.adapters.register_dumper(bool, _BoolAsInt)
        pg.adapters.register_loader("numeric", _NumericAsNumber)
        for statement in self._settings:
            pg.execute(statement)
        return pg

    def setting(self, statement: str) -> None:
        """Run a session setting (``set lock_timeout = 5000``) now and on every connection opened later."""
        self.pg.execute(statement)
        self._settings.append(statement)

    def _alive(self) -> None:
        """Open the connection again where the server dropped it (a restart, a failover, pg_terminate_backend).

        A worker thread or a console session keeps one connection for life: after a drop every job failed with
        "the connection is closed" until someone restarted the process (PostgreSQL worker audit, finding 1).
        Never inside a transaction: what it wrote is gone with the connection, and the statements after it
        must not run on their own; the transaction fails whole and the next one starts afresh."""
        if not (self.pg.closed or self.pg.broken):
            return
        if self._depth:
            raise psycopg.OperationalError("the connection to PostgreSQL was lost during this transaction; "
                                           "nothing of it was committed: run it again")
        log.warning("the connection to PostgreSQL was lost; opening a new one")
        try:
            self.pg.close()
        except psycopg.Error:  # pragma: no cover - closing a broken connection
            pass
        self.pg = self._connect()

    # ------------------------------------------------------------------ statements
    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = ()) -> PgCursor:
        self._alive()
        try:
            return self._execute(sql, params)
        except psycopg.OperationalError:
            # A read that met a dropped connection is asked once more on a new one; a write is not (it may have
            # reached the server before the drop): it fails, and the next call finds a new connection.
            if self._depth or not (self.pg.closed or self.pg.broken) or not _READ.match(sql):
                raise
            self._alive()
            return self._execute(sql, params)

    def _execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = ()) -> PgCursor:
        text, order = translate(sql)
        args: Sequence[Any] = list(params or ())
        if order is not None:
            args = [args[k] for k in order]
        identity = None
        match = _INSERT_TABLE.match(text)
        if match and not _RETURNING.search(text):
            identity = self._identity_of(match.group(1).lower())
            if identity:
                text = f"{text.rstrip().rstrip(';')} returning {identity}"
        cursor = self.pg.cursor()
        cursor.execute(text, args)
        lastrowid = None
        if identity:
            rows = cursor.fetchall()
            lastrowid = rows[-1][0] if rows else None
        if _WRITE.match(text) and cursor.rowcount > 0:
            self.changes += cursor.rowcount
        return PgCursor(cursor, lastrowid)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self.execute(sql, row)

    def query(self, sql: str, params: Sequence[Any] | None = ()) -> Iterator[dict[str, Any]]:
        cursor = self.execute(sql, params)
        names = [d.name for d in cursor.description or ()]
        for row in cursor.fetchall():
            yield dict(zip(names, row))

    def _identity_of(self, table: str) -> str | None:
        """The identity column of ``table`` (``id`` or ``rowid``), or None; read once per connection."""
        if self._identity is None or table not in self._identity:
            self._identity = {
                r[0]: r[1] for r in self.pg.execute(
                    "select table_name, column_name from information_schema.columns "
                    "where table_schema = current_schema() and is_identity = 'YES'").fetchall()
            }
        return self._identity.get(table)

    # ---------------------------------------------------------------- transactions
    @property
    def in_transaction(self) -> bool:
        if self.pg.closed or self.pg.broken:
            return self._depth > 0
        return self.pg.info.transaction_status != TransactionStatus.IDLE

    @contextmanager
    def atomic(self) -> Iterator[PgDatabase]:
        """A transaction (a savepoint inside one), committed when the block ends without error."""
        self._alive()
        self._depth += 1
        try:
            with self.pg.transaction():
                yield self
        finally:
            self._depth -= 1

    # ------------------------------------------------------------------ the schema
    def __getitem__(self, name: str) -> PgTable:
        return PgTable(self, name)

    def table(self, name: str) -> PgTable:
        return PgTable(self, name)

    def table_names(self) -> list[str]:
        return [r[0] for r in self.execute(
            "select table_name from information_schema.tables where table_schema = current_schema() "
            "and table_type = 'BASE TABLE' order by table_name").fetchall()]

    def close(self) -> None:
        self.pg.close()


class PgTable:
    """``db[name]`` as sqlite-utils' ``Table``: the calls Doorstep's migrations, tools and tests make."""

    def __init__(self, db: PgDatabase, name: str):
        self.db = db
        self.name = name
        self.last_pk: Any = None
        self.last_rowid: int | None = None

    # -------------------------------------------------------------------- reading
    def exists(self) -> bool:
        return self.db.pg.execute("select to_regclass(%s) is not null", [f'"{self.name}"']).fetchone()[0]

    @property
    def columns_dict(self) -> dict[str, type]:
        """Column -> Python type, in table order; the ``rowid`` that stands in for SQLite's is left out."""
        rows = self.db.pg.execute(
            "select column_name, data_type, is_identity from information_schema.columns "
            "where table_schema = current_schema() and table_name = %s order by ordinal_position", [self.name]
        ).fetchall()
        return {r[0]: _PY_TYPES.get(r[1], str) for r in rows if not (r[0] == "rowid" and r[2] == "YES")}

    @property
    def pks(self) -> list[str]:
        rows = self.db.pg.execute(
            "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
            "and a.attnum = any(i.indkey) where i.indrelid = to_regclass(%s) and i.indisprimary "
            "order by array_position(i.indkey, a.attnum)", [f'"{self.name}"']).fetchall()
        return [r[0] for r in rows] or ["rowid"]

    @property
    def count(self) -> int:
        return int(self.db.execute(f'select count(*) from "{self.name}"').fetchone()[0])

    @property
    def rows(self) -> Iterator[dict[str, Any]]:
        return self.rows_where()

    def rows_where(self, where: str | None = None, where_args: Sequence[Any] | None = None,
                   order_by: str | None = None, limit: int | None = None, select: str = "*") -> Iterator[dict[str, Any]]:
        if order_by == "rowid" and "rowid" not in self._all_columns():
            order_by = ", ".join(self.pks)
        sql = f'select {select} from "{self.name}"' + (f" where {where}" if where else "")
        sql += (f" order by {order_by}" if order_by else "") + (f" limit {int(limit)}" if limit else "")
        return self.db.query(sql, where_args or [])

    def get(self, pk_values: Any) -> dict[str, Any]:
        pks = self.pks
        values = list(pk_values) if isinstance(pk_values, (list, tuple)) else [pk_values]
        rows = list(self.db.query(f'select * from "{self.name}" where ' + " and ".join(f"{k} = ?" for k in pks),
                                  values))
        if not rows:
            raise NotFoundError
        return rows[0]

    def _all_columns(self) -> list[str]:
        return [r[0] for r in self.db.pg.execute(
            "select column_name from information_schema.columns where table_schema = current_schema() "
            "and table_name = %s", [self.name]).fetchall()]

    # -------------------------------------------------------------------- the schema
    def create(self, columns: dict[str, Any], pk: str | Sequence[str] | None = None, *,
               not_null: Iterable[str] = (), defaults: dict[str, Any] | None = None,
               if_not_exists: bool = False, **_ignored: Any) -> PgTable:
        """The table, with an identity column: ``id`` when it is the integer key, else ``rowid``."""
        if if_not_exists and self.exists():
            return self
        pks = [pk] if isinstance(pk, str) else list(pk or [])
        not_null = set(not_null)
        defaults = defaults or {}
        parts: list[str] = []
        for name, kind in columns.items():
            sql_type = _sql_type(kind)
            if pks == [name] and sql_type == "bigint" and name == "id":
                parts.append(f"{name} bigint generated by default as identity primary key")
                continue
            part = f"{name} {sql_type}"
            if name in not_null:
                part += " not null"
            if name in defaults:
                part += f" default {_literal(defaults[name])}"
            parts.append(part)
        if not (pks == ["id"] and _sql_type(columns.get("id", str)) == "bigint"):
            parts.append("rowid bigint generated always as identity")
            if pks:
                parts.append(f"primary key ({', '.join(pks)})")
            else:
                parts[-1] += " primary key"
        self.db.execute(f'create table{" if not exists" if if_not_exists else ""} "{self.name}" ({", ".join(parts)})')
        self.db._identity = None
        return self

    def add_column(self, name: str, col_type: Any = None, *, not_null_default: Any = None, **_ignored: Any) -> PgTable:
        sql = f'alter table "{self.name}" add column {name} {_sql_type(col_type or str)}'
        if not_null_default is not None:
            sql += f" not null default {_literal(not_null_default)}"
        self.db.execute(sql)
        return self

    def create_index(self, columns: Sequence[str], index_name: str | None = None, *, unique: bool = False,
                     if_not_exists: bool = False, **_ignored: Any) -> PgTable:
        names = [c if isinstance(c, str) else c[0] for c in columns]
        index_name = index_name or f"idx_{self.name}_{'_'.join(names)}"
        self.db.execute(f"create {'unique ' if unique else ''}index {'if not exists ' if if_not_exists else ''}"
                        f'{index_name} on "{self.name}" ({", ".join(names)})')
        return self

    def enable_fts(self, columns: Sequence[str], *_args: Any, **_ignored: Any) -> PgTable:
        """A GIN index over the columns' words (see :meth:`Dialect.fts_document`), kept by PostgreSQL itself."""
        self.db.execute(f"create index if not exists idx_{self.name}_fts on \"{self.name}\" "
                        f"using gin ({self.db.dialect.fts_document(tuple(columns))})")
        return self

    # ---------------------------------------------------------------------- writing
    def insert(self, record: dict[str, Any], pk: Any = None, *, ignore: bool = False, replace: bool = False,
               **_ignored: Any) -> PgTable:
        return self.insert_all([record], ignore=ignore, replace=replace)

    def insert_all(self, records: Iterable[dict[str, Any]], pk: Any = None, *, ignore: bool = False,
                   replace: bool = False, batch_size: int = 100, **_ignored: Any) -> PgTable:
        pks = None
        explicit_id = False
        for record in records:
            record = {k: _value(v) for k, v in record.items()}
            cols = list(record)
            sql = f'insert into "{self.name}" ({", ".join(cols)}) values ({", ".join("?" * len(cols))})'
            if ignore or replace:
                pks = pks or self.pks
                if replace and set(cols) - set(pks):
                    sql += (f" on conflict ({', '.join(pks)}) do update set "
                            + ", ".join(f"{c} = excluded.{c}" for c in cols if c not in pks))
                else:
                    sql += " on conflict do nothing"
            cursor = self.db.execute(sql, list(record.values()))
            explicit_id = explicit_id or "id" in record
            self.last_rowid = cursor.lastrowid
            self.last_pk = record.get("id", cursor.lastrowid) if (pks or ["id"]) == ["id"] else \
                tuple(record.get(k) for k in (pks or []))
        if explicit_id:
            self._catch_up_identity()
        return self

    def upsert(self, record: dict[str, Any], pk: Any = None, **kwargs: Any) -> PgTable:
        return self.insert_all([record], replace=True)

    def upsert_all(self, records: Iterable[dict[str, Any]], pk: Any = None, **kwargs: Any) -> PgTable:
        return self.insert_all(records, replace=True)

    def update(self, pk_values: Any, updates: dict[str, Any] | None = None, **_ignored: Any) -> PgTable:
        if not updates:
            return self
        pks = self.pks
        values = list(pk_values) if isinstance(pk_values, (list, tuple)) else [pk_values]
        self.db.execute(f'update "{self.name}" set ' + ", ".join(f"{k} = ?" for k in updates)
                        + " where " + " and ".join(f"{k} = ?" for k in pks),
                        [*(_value(v) for v in updates.values()), *values])
        self.last_pk = pk_values
        return self

    def delete_where(self, where: str | None = None, where_args: Sequence[Any] | None = None) -> PgTable:
        self.db.execute(f'delete from "{self.name}"' + (f" where {where}" if where else ""), where_args or [])
        return self

    def _catch_up_identity(self) -> None:
        """After rows were written with their own ids, new ids continue above the largest one."""
        if self.db._identity_of(self.name) == "id":
            self.db.execute(f"select setval(pg_get_serial_sequence('\"{self.name}\"', 'id'), "
                            f'coalesce((select max(id) from "{self.name}"), 0) + 1, false)')


def _sql_type(kind: Any) -> str:
    if isinstance(kind, str):
        kind = _TYPE_NAMES.get(kind.lower(), str)
    return _TYPES.get(kind, "text")


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _value(value: Any) -> Any:
    """A Python value as sqlite-utils would store it: containers as JSON text."""
    if isinstance(value, (dict, list, tuple)):
        import json

        return json.dumps(value, default=str)
    return value
