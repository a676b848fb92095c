"""The store's connection, transactions and shared helpers: what every domain module builds on."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Self, TypeVar

import sqlite_utils
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from doorstep.dialect import (
    DATABASE_ERRORS,
    POSTGRES,
    SQLITE,
    Dialect,
    database_target,
    describe_target,
    is_busy,
    is_postgres,
)
from doorstep.store.migrations import MIGRATIONS, PG_MIGRATE_LOCK_KEY, unknown_migrations

#: How long a connection waits for another connection's write lock before "database is locked"
#: (SQLite's busy timeout). ``[limits] busy_timeout_s`` in doorstep.toml sets it per deployment.
DEFAULT_BUSY_TIMEOUT_S = 10.0

#: Starting a write transaction is retried this long when SQLite answers BUSY without waiting
#: (a WAL recovery or checkpoint in another process), on top of the busy timeout.
BUSY_RETRY_S = 2.0

T = TypeVar("T")


#: The key of PostgreSQL's transaction-level advisory lock that :meth:`Store.write_transaction`
#: takes: the one "write lock first" SQLite's BEGIN IMMEDIATE gives, for check-then-insert work.
PG_WRITE_LOCK_KEY = 0x600D_D008


def when_busy(fn: Callable[..., T], *args: Any, seconds: float = BUSY_RETRY_S) -> T:
    """``fn(*args)``, retried briefly (bounded, with jitter) while SQLite answers BUSY.

    Only for statements that can simply be run again (BEGIN, a pragma, one autocommitted
    write): a transaction's body is never repeated behind its caller's back.
    """
    retrying = Retrying(retry=retry_if_exception(is_busy), stop=stop_after_delay(seconds),
                        wait=wait_random_exponential(multiplier=0.01, max=0.25), reraise=True)
    return retrying(fn, *args)


class StoreError(RuntimeError):
    """The database file cannot be used as asked: names the path, the cause and the remedy."""

    def __init__(self, path: str, cause: str, remedy: str = ""):
        super().__init__(f"database {path}: {cause}" + (f"; {remedy}" if remedy else ""))
        self.path, self.cause, self.remedy = path, cause, remedy

    @classmethod
    def from_sqlite(cls, path: str, exc: BaseException) -> StoreError:
        """Translate SQLite's (or PostgreSQL's) terse messages into what happened and what to do."""
        if is_postgres(path):
            return cls.from_postgres(path, exc)
        text = str(exc)
        low = text.lower()
        if "full" in low:
            return cls(path, "the disk is full (database or disk is full)",
                       "free some space and run the command again (rows already stored are skipped)")
        if "unable to open" in low:
            return cls(path, "cannot be opened (unable to open database file)",
                       "check that the folder exists and is accessible")
        if _is_read_only_error(exc):
            return cls(path, "is read-only (the file, its folder or the file system cannot be written)",
                       "run this command where the database is writable, or use a read-only command")
        if "not a database" in low or "malformed" in low:
            return cls(path, f"is not a usable SQLite database ({text})", "check the --db path or restore a backup")
        if "locked" in low or "busy" in low:
            return cls(path, f"is busy ({text})", "another process holds the write lock; try again in a moment")
        return cls(path, text)

    @classmethod
    def from_postgres(cls, url: str, exc: BaseException) -> StoreError:
        """Translate PostgreSQL's messages. A connection the server ended or the network cut (a restart,
        a failover, pg_terminate_backend) was *lost*: the next try opens another (doorstep.postgres), so
        it is not "cannot connect ... start PostgreSQL", which a running server made no sense of
        (PostgreSQL worker audit)."""
        where = describe_target(url)
        text = " ".join(str(exc).split())
        operational = isinstance(exc, __import__("psycopg").OperationalError)
        lost = ("terminating connection", "server closed the connection unexpectedly", "the connection is closed",
                "the connection is lost", "connection to PostgreSQL was lost", "SSL connection has been closed",
                "SSL SYSCALL error")
        if operational and (getattr(exc, "sqlstate", None) in ("57P01", "57P02", "57P05")
                            or any(words in text for words in lost)):
            return cls(where, f"the connection to PostgreSQL was lost ({text})", "it is opened again on the next try")
        if operational and ("connect" in text or "connection" in text or "invalid" in text):
            return cls(where, f"cannot connect ({text})", _postgres_remedy(url, text))
        if is_busy(exc):
            return cls(where, f"is busy ({text})", "another connection holds the lock; try again in a moment")
        return cls(where, text)


def _postgres_remedy(url: str, text: str) -> str:
    """The fix that matches why PostgreSQL refused: the server is running when it names a missing
    database or role, so "start PostgreSQL" is only for a refused or timed-out connection."""
    import re

    from psycopg.conninfo import conninfo_to_dict

    missing = re.search(r'database "([^"]+)" does not exist', text)
    if missing:
        try:
            params = conninfo_to_dict(url)
        except Exception:  # noqa: BLE001 - only for the words of the remedy
            params = {}
        where = "".join(f" {flag} {params[key]}" for flag, key in (("-h", "host"), ("-p", "port"), ("-U", "user"))
                        if params.get(key))
        return f"create the database first (createdb{where} {missing.group(1)}); Doorstep creates its tables on first use"
    if re.search(r'role "[^"]+" does not exist|password authentication failed|no password supplied', text):
        return "check the user name and password in the --db / DOORSTEP_DB URL"
    if "invalid" in text and ("value" in text or "option" in text or "URI" in text or "conninfo" in text):
        return "correct the --db / DOORSTEP_DB URL (see the setting the error names)"
    if "translate host name" in text or "Name or service not known" in text:
        return "check the host name in the --db / DOORSTEP_DB URL"
    return ("start PostgreSQL (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) "
            "or check the --db / DOORSTEP_DB URL")


def _connect(path: str, params: str = "") -> sqlite3.Connection:
    """Open the database file; ``params`` are SQLite URI parameters such as ``mode=ro``.

    ``isolation_level=None``: the sqlite3 module opens no implicit (deferred) transactions; a
    statement outside :meth:`Store.transaction` commits by itself, and the transaction says
    BEGIN IMMEDIATE. The busy timeout (how long a writer waits for another connection's write
    lock instead of failing at once) is set by the Store, from ``[limits] busy_timeout_s``.
    """
    if params:
        uri = Path(path).resolve().as_uri() + "?" + params
        return sqlite3.connect(uri, uri=True, timeout=DEFAULT_BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
    return sqlite3.connect(path, timeout=DEFAULT_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)


def _is_read_only_error(exc: BaseException) -> bool:
    low = str(exc).lower()
    return "readonly" in low or "read-only" in low or "read only" in low or "unable to open" in low


def remove_database(target: str | Path) -> None:
    """Delete a whole database, to build a new one in its place (the demo does).

    A SQLite file goes with its WAL, shared-memory and journal files; on PostgreSQL every
    table of the URL's schema is dropped (the schema itself, its grants and the other schemas
    of the database stay).
    """
    target = database_target(target)
    if not is_postgres(target):
        for suffix in ("", "-wal", "-shm", "-journal"):
            candidate = Path(target + suffix)
            if candidate.exists():
                candidate.unlink()
        return
    from doorstep.postgres import PgDatabase

    db = PgDatabase(target)
    try:
        with db.atomic():
            for table in db.table_names():
                db.execute(f'drop table if exists "{table}" cascade')
    finally:
        db.close()


def database_exists(target: str | Path) -> bool:
    """Whether ``--db`` names a Doorstep database already (commands that only read must not make one).

    A SQLite file exists or not; a PostgreSQL schema is Doorstep's once its migrations table is
    there. A server that cannot be reached counts as existing, so the store says why it failed.
    """
    target = database_target(target)
    if not is_postgres(target):
        return target == ":memory:" or Path(target).exists()
    import psycopg

    try:
        with psycopg.connect(target, connect_timeout=10) as conn:
            return bool(conn.execute("select to_regclass('_sqlite_migrations') is not null").fetchone()[0])
    except psycopg.Error:
        return True


def files_beside(target: str | Path, suffix: str) -> Path:
    """Where files that belong with a database go (the demo's X feed, its sent mail): next to a
    SQLite file (``shop.db`` -> ``shop.x-feed.jsonl``), or in the working folder, named after the
    database, for PostgreSQL."""
    target = database_target(target)
    if is_postgres(target):
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(target)
        name = "doorstep-" + str(info.get("dbname") or "postgresql")
        # Two shops in two schemas of one database (search_path) keep their files apart.
        schema = re.search(r"search_path\s*=\s*([A-Za-z0-9_]+)", str(info.get("options") or ""))
        if schema:
            name += f"-{schema.group(1)}"
        return Path(name).resolve().with_suffix(suffix)
    return Path(target).resolve().with_suffix(suffix)


def database_for_children(target: str | Path) -> str:
    """``--db``/``DOORSTEP_DB`` as a child process in another folder must be given it: a SQLite
    path made absolute, a PostgreSQL URL as it is."""
    target = database_target(target)
    return target if is_postgres(target) else str(Path(target).resolve())


def iso(value: datetime | date | None) -> str | None:
    """Serialise a time the one way the store sorts correctly."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is timezone.utc:  # most times (the import's millions): nothing to convert
            return value.isoformat(timespec="seconds")
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat(timespec="seconds")
    return value.isoformat()


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


#: ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``, without building an encoder per
#: call as ``dumps`` does for any non-default option (several per stored post and case).
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json(value: Any) -> str | None:
    return None if value is None else _encode(value)


def _unjson(value: str | None, default: Any = None) -> Any:
    return default if value in (None, "") else json.loads(value)


#: Values per ``in (?, ?, ...)`` list: below SQLite's old limit of 999 parameters with room for the others.
IN_CHUNK = 500
#: Parameters one statement may carry (SQLite before 3.32 allowed 999).
MAX_PARAMETERS = 999


def _chunks(values: Iterable[Any], size: int = IN_CHUNK) -> Iterator[list[Any]]:
    """Distinct values in lists short enough for one ``in (...)`` each (empty input: none)."""
    distinct = list(dict.fromkeys(values))
    for start in range(0, len(distinct), size):
        yield distinct[start : start + size]


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return iso(value)
    return value


class StoreBase:
    """One connection per thread, transactions that take the write lock first, and the dialect."""

    def __init__(self, path: str | Path = "doorstep.db", *, migrate: bool = True,
                 busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S):
        self.path = database_target(path)
        self.busy_timeout_s = busy_timeout_s
        #: The SQL spelling of this store's database (see doorstep.dialect).
        self.dialect: Dialect = POSTGRES if is_postgres(self.path) else SQLITE
        #: True when the file (or its folder) cannot be written: reads work, writes fail with
        #: a StoreError naming the path (see _open_read_only).
        self.read_only = False
        self._home = self._connect()
        self._home_thread = threading.get_ident()
        self._threads: threading.local | None = None
        self._connections: list[sqlite_utils.Database] = [self._home]
        self._connections_lock = threading.Lock()
        self._search_memo: dict[tuple[str, str], tuple[Any, Any]] = {}
        #: Whether this database has the triggers that keep the search mark (checked once; see _search_mark).
        self._search_marked: bool | None = None
        self._indexes: set[str] | None = None
        if migrate:
            self._migrate()

    # ------------------------------------------------------- connections, transactions
    def _connect(self) -> sqlite_utils.Database:
        """A connection set up the one way every Doorstep connection is (see :func:`_connect`)."""
        if self.dialect.postgres:
            return self._connect_postgres()
        if self.read_only:
            return self._open_read_only()
        try:
            conn = _connect(self.path)
        except sqlite3.Error as exc:
            raise StoreError.from_sqlite(self.path, exc) from exc
        conn.execute(f"pragma busy_timeout = {int(self.busy_timeout_s * 1000)}")
        db = sqlite_utils.Database(conn)
        try:
            if self.path != ":memory:":
                when_busy(db.enable_wal)
        except sqlite3.OperationalError as exc:
            if not _is_read_only_error(exc):
                raise StoreError.from_sqlite(self.path, exc) from exc
            db.close()
            db = self._open_read_only()
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        # A 64 MB page cache (default 2 MB) keeps the inbox and linking indexes in memory.
        db.execute("PRAGMA cache_size=-64000")
        db.execute("PRAGMA temp_store=MEMORY")
        return db

    def _connect_postgres(self) -> Any:
        """A PostgreSQL connection (autocommit, like the SQLite ones) that waits at most the busy
        timeout for a row or table lock, then fails as busy, as SQLite's busy timeout does."""
        import psycopg

        from doorstep.postgres import PgDatabase

        try:
            db = PgDatabase(self.path)
            db.setting(f"set lock_timeout = {int(self.busy_timeout_s * 1000)}")
            if db.execute("select current_schema()").fetchone()[0] is None:
                # The URL names a schema (options=-csearch_path=...) that is not there yet: make it,
                # as a SQLite file is made on first use.
                first = db.execute("show search_path").fetchone()[0].split(",")[0].strip().strip('"')
                db.execute(f'create schema if not exists "{first}"')
        except psycopg.Error as exc:
            raise StoreError.from_postgres(self.path, exc) from exc
        return db

    def _open_read_only(self) -> sqlite_utils.Database:
        """Open without any write: a read-only file system or file still serves reads.

        WAL needs its ``-shm`` file; where that cannot be created either, the database is
        opened as immutable (no other process can be writing to a read-only file anyway).
        """
        self.read_only = True
        for params in ("mode=ro", "mode=ro&immutable=1"):
            conn = _connect(self.path, params)
            try:
                conn.execute(f"pragma busy_timeout = {int(self.busy_timeout_s * 1000)}")
                conn.execute("select count(*) from sqlite_master").fetchone()
            except sqlite3.OperationalError:
                conn.close()
                continue
            return sqlite_utils.Database(conn)
        raise StoreError(self.path, "cannot be opened, not even for reading", "check the path and its permissions")

    def _migrate(self) -> None:
        """Apply pending migrations; none pending means no write at all (read-only opening)."""
        try:
            pending = MIGRATIONS.pending(self.db)
            newer = unknown_migrations(self.db)
        except (sqlite3.DatabaseError, *DATABASE_ERRORS) as exc:
            raise StoreError.from_sqlite(self.path, exc) from exc
        if newer:
            # Rows this version writes would lack what the newer schema expects (an older version's case had
            # no SLA deadline and left the Overdue filter: upgrade audit, finding 3). Nothing is written.
            raise StoreError(self.path, f"was upgraded by a newer Doorstep (its schema has {len(newer)} change(s) this "
                                        f"version does not know: {', '.join(newer[:3])}{' ...' if len(newer) > 3 else ''})",
                             "run that version (or newer) on it, or restore the backup taken before the upgrade")
        if not pending:
            return
        if self.dialect.postgres:
            # One process at a time migrates a schema; the next one finds nothing pending.
            with self.db.atomic():
                self.db.execute("select pg_advisory_xact_lock(?)", [PG_MIGRATE_LOCK_KEY])
                MIGRATIONS.apply(self.db)
            return
        if self.read_only:
            raise StoreError(self.path, "is read-only and its schema needs upgrading",
                             "open it once with write access (any doorstep command) to upgrade it")
        try:
            # Under the write lock: two processes opening a new file must not both migrate it.
            with self.transaction():
                MIGRATIONS.apply(self.db)
        except sqlite3.OperationalError as exc:
            raise StoreError.from_sqlite(self.path, exc) from exc

    @property
    def db(self) -> sqlite_utils.Database:
        """This thread's connection (the store's only one unless shared across threads)."""
        local = self._threads
        if local is None or threading.get_ident() == self._home_thread:
            return self._home
        db = getattr(local, "db", None)
        if db is None:
            db = local.db = self._connect()
            with self._connections_lock:
                self._connections.append(db)
        return db

    def share_across_threads(self) -> Self:
        """Let several threads use this store: each gets its own connection on first use.

        A SQLite connection has one transaction at a time, so threads that shared one would
        commit or roll back each other's work. The worker calls this before it starts a
        thread per job; the console keeps one store per browser session instead.
        """
        if self.path in (":memory:", ""):
            raise ValueError("an in-memory store cannot be shared across threads (each connection is a new database)")
        if self._threads is None:
            self._threads = threading.local()
        return self

    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()

    @contextmanager
    def waiting_at_most(self, seconds: float) -> Iterator[Self]:
        """Wait at most ``seconds`` for the write lock inside this block (then "database is locked").

        For writers that must not hold up a page, such as presence: they give up quickly
        and treat the write as skipped.
        """
        db = self.db
        setting = "set lock_timeout =" if self.dialect.postgres else "pragma busy_timeout ="
        # (PostgreSQL reads lock_timeout 0 as "wait for ever": 1 ms is its "do not wait".)
        db.execute(f"{setting} {max(1 if self.dialect.postgres else 0, int(seconds * 1000))}")
        db._doorstep_retry_s = 0.0  # type: ignore[attr-defined]  # no retries on top either
        try:
            yield self
        finally:
            db.execute(f"{setting} {int(self.busy_timeout_s * 1000)}")
            del db._doorstep_retry_s  # type: ignore[attr-defined]

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """Group the writes of one logical operation: all of them land, or none.

        The outermost transaction begins IMMEDIATE: it takes the write lock before it reads,
        waiting up to the busy timeout for another writer. A deferred transaction that read
        first would get "database is locked" at once on its first write whenever another
        connection had committed meanwhile (SQLite cannot move its snapshot forward), which
        is how a long import used to fail beside a note writer. Nested transactions are
        savepoints.

        On PostgreSQL it is a READ COMMITTED transaction (savepoints inside); rows are locked
        as they are written, so writers run side by side. :meth:`write_transaction` also
        takes the one write lock first, as BEGIN IMMEDIATE does on SQLite.
        """
        if self.dialect.postgres:
            with self.db.atomic():
                yield self
            return
        with self._sqlite_transaction():
            yield self

    @contextmanager
    def write_transaction(self) -> Iterator[Self]:
        """A transaction that holds the write lock from its start, before its first read.

        For check-then-write work (has a reply been queued? then queue one) that must see the
        state it writes into. SQLite's transactions all do (BEGIN IMMEDIATE); on PostgreSQL the
        outermost one takes a transaction-level advisory lock that every write_transaction waits
        for, and that is released at commit or rollback.
        """
        if not self.dialect.postgres:
            with self._sqlite_transaction():
                yield self
            return
        db = self.db
        outer = not db.in_transaction
        with db.atomic():
            if outer:
                db.execute("select pg_advisory_xact_lock(?)", [PG_WRITE_LOCK_KEY])
            yield self

    @contextmanager
    def _sqlite_transaction(self) -> Iterator[Self]:
        db = self.db
        if db.conn.in_transaction:
            with db.atomic():
                yield self
            return
        when_busy(db.conn.execute, "BEGIN IMMEDIATE", seconds=getattr(db, "_doorstep_retry_s", BUSY_RETRY_S))
        try:
            yield self
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise
        try:
            db.conn.execute("COMMIT")
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise

    def serialise(self, keys: Callable[[], Iterable[str]]) -> None:
        """Inside a transaction: wait until no other transaction holds any of ``keys``; hold them to the end.

        SQLite has one writer at a time already (the transaction's write lock), so ``keys`` is not
        even computed. PostgreSQL takes a transaction advisory lock per key (hashed with the schema:
        two shops in one database do not wait for each other), in sorted order so that two writers
        wanting the same keys never deadlock; they are released at commit or rollback.
        """
        if not self.dialect.postgres:
            return
        wanted = sorted(set(keys()))
        if wanted:
            self.db.execute("select count(pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || k, 0))) "
                            "from (select unnest(?::text[]) as k order by 1) as ordered", [wanted])

    def change_mark(self) -> Any:
        """A value that stays equal exactly while nothing is written to the database, or None where
        there is none as cheap (PostgreSQL: callers read again).

        SQLite: this connection (the object itself, so its id cannot be reused), its ``data_version``
        (moves when any other connection, in any process, commits) and its ``total_changes`` (moves
        on its own writes, triggers included). An import keeps what it read about the shop from one
        batch to the next while the mark taken after a batch's writes is still the mark at the next
        batch's start (doorstep/pipeline.py).
        """
        if self.dialect.postgres:
            return None
        conn = self.db.conn
        return (conn, conn.execute("pragma data_version").fetchone()[0], conn.total_changes)

    def count(self, table: str) -> int:
        return int(self.db.execute(f"select count(*) from [{table}]").fetchone()[0])

    # ----------------------------------------------------------------- helpers
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts, straight from sqlite3: the pipeline's hot path skips sqlite-utils' extras."""
        cursor = self.db.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

