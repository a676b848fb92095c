"""The store: one SQLite file through sqlite-utils, or a PostgreSQL database (issue 16).

Why SQLite by default: a care team of a few dozen people produces at most a few thousand
writes a minute, and one file is trivial to back up, copy and inspect with Datasette. WAL
mode lets the console read while the worker writes. A shop that outgrows one machine points
``--db``/``DOORSTEP_DB`` at ``postgresql://...`` instead: :mod:`doorstep.postgres` gives
PostgreSQL the face of the sqlite-utils ``Database`` used here, and :mod:`doorstep.dialect`
holds the SQL that differs (``store.dialect``). The schema evolves through
``sqlite_utils.migrations``, one list for both databases; add a new function to
``MIGRATIONS``, never edit an applied one.

Conventions: times are stored as ISO 8601 UTC text (``2026-11-23T06:44:28+00:00``)
so they sort lexicographically; lists and dicts are stored as JSON text.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils
from sqlite_utils.migrations import Migrations
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from doorstep.dialect import (
    DATABASE_ERRORS,
    POSTGRES,
    SQLITE,
    Dialect,
    database_target,
    describe_target,
    dialect_of,
    is_busy,
    is_postgres,
)
from doorstep.redaction import redact_details
from doorstep.sla import CLOCK_FIELDS, queue_fields
from doorstep.models import (
    OPEN_CASE_STATUSES,
    AuditEvent,
    Case,
    Customer,
    Labels,
    Mention,
    Note,
    Order,
    OutboundMessage,
    Shipment,
    TrackingEvent,
    utcnow,
)

MIGRATIONS = Migrations("doorstep")

#: How long a connection waits for another connection's write lock before "database is locked"
#: (SQLite's busy timeout). ``[limits] busy_timeout_s`` in doorstep.toml sets it per deployment.
DEFAULT_BUSY_TIMEOUT_S = 10.0

#: Starting a write transaction is retried this long when SQLite answers BUSY without waiting
#: (a WAL recovery or checkpoint in another process), on top of the busy timeout.
BUSY_RETRY_S = 2.0

#: Full-text search looks at this many of the newest matching posts (see Store.search_mentions).
SEARCH_MATCH_LIMIT = 2000

T = TypeVar("T")

#: The SQL for "open case"; queries use this exact text so SQLite picks the partial indexes.
OPEN_CASES_SQL = "status in ('new', 'open', 'pending_customer', 'escalated')"

#: The inbox's equality filters (columns of ``cases`` and fields of ``InboxQuery``).
INBOX_FILTER_COLUMNS = ("brand", "courier", "channel", "intent", "assignee")

#: The inbox's due order (doorstep.sla.queue_fields, stored on every write): cases owing the customer
#: an answer first, soonest answer deadline first; then cases owing a resolution, soonest first;
#: then cases whose clocks are paused (waiting on the customer) or stopped.
CASE_DUE_SQL = "due_key"

#: The inbox's orders: priority (the default: band P1 first, then the due order within the band),
#: the due order, newest case first. Each walks a partial index over open cases (m013, m008), so
#: a page stops after its rows.
INBOX_SORTS = {
    "priority": f"priority_band, {CASE_DUE_SQL}, priority desc, id desc",
    "due": f"{CASE_DUE_SQL}, id",
    "newest": "opened_at desc, id desc",
}

#: Which snoozed cases the inbox lists: "hide" (the default queue: they come back when the
#: snooze ends or the customer writes), "only" (the "snoozed" filter) or "include".
SNOOZE_VIEWS = ("hide", "only", "include")

#: A customer's phone number with spaces, dashes, brackets, dots and "+" taken out, so "+44 7700
#: 900434" is found as "447700900434" too (indexed by this exact text, m008).
PHONE_DIGITS_SQL = ("replace(replace(replace(replace(replace(replace(phone, ' ', ''), '-', ''), '(', ''), ')', ''), "
                    "'.', ''), '+', '')")

#: Customers a search by name, e-mail or phone looks at (the newest-created first).
CUSTOMER_MATCH_LIMIT = 200

#: Full-text results kept per Store (see Store._memo): a console page asks for the same search
#: once per filter count, and again on every rerun while the agent changes other filters.
SEARCH_MEMO_SIZE = 32


class StaleCaseError(RuntimeError):
    """Someone else changed the case since it was read: reload and try again."""

    def __init__(self, case_id: int, expected: int, actual: int, changed_by: str | None):
        who = f" by {changed_by}" if changed_by else ""
        super().__init__(
            f"case {case_id} was changed{who} since you opened it (your version {expected}, now {actual}); "
            "the fresh state has been loaded, please review and try again"
        )
        self.case_id, self.expected, self.actual, self.changed_by = case_id, expected, actual, changed_by


#: The key of PostgreSQL's transaction-level advisory lock that :meth:`Store.write_transaction`
#: takes: the one "write lock first" SQLite's BEGIN IMMEDIATE gives, for check-then-insert work.
PG_WRITE_LOCK_KEY = 0x600D_D008

#: The advisory lock key under which one process at a time migrates a PostgreSQL schema.
PG_MIGRATE_LOCK_KEY = 0x600D_D009

#: The columns each full-text index covers (m001, m008); search queries name the same ones.
MENTION_FTS_COLUMNS = ("text",)
CUSTOMER_FTS_COLUMNS = ("name", "email", "phone")


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
        where = describe_target(url)
        text = " ".join(str(exc).split())
        if isinstance(exc, __import__("psycopg").OperationalError) and ("connect" in text or "connection" in text):
            return cls(where, f"cannot connect ({text})",
                       "start PostgreSQL (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) "
                       "or check the --db / DOORSTEP_DB URL")
        if is_busy(exc):
            return cls(where, f"is busy ({text})", "another connection holds the lock; try again in a moment")
        return cls(where, text)


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

        name = "doorstep-" + str(conninfo_to_dict(target).get("dbname") or "postgresql")
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
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat(timespec="seconds")
    return value.isoformat()


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _unjson(value: str | None, default: Any = None) -> Any:
    return default if value in (None, "") else json.loads(value)


@MIGRATIONS()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["mentions"].create(
        {
            "id": int,
            "channel": str,
            "external_id": str,
            "text": str,
            "created_at": str,
            "author_id": str,
            "author_handle": str,
            "author_name": str,
            "author_followers": int,
            "language": str,
            "url": str,
            "thread_id": str,
            "in_reply_to": str,
            "matched": str,
            "outbound": int,
            "raw": str,
            "case_id": int,
            "sentiment": str,
            "sentiment_scores": str,
            "complaint": int,
            "complaint_score": float,
            "intent": str,
            "intent_scores": str,
            "urgency": float,
            "needs_review": int,
            "model": str,
            "ingested_at": str,
        },
        pk="id",
        not_null={"channel", "external_id", "text", "created_at"},
        defaults={"author_followers": 0, "outbound": 0},
    )
    db["mentions"].create_index(["channel", "external_id"], unique=True)
    db["mentions"].create_index(["channel", "thread_id"])
    db["mentions"].create_index(["case_id"])
    db["mentions"].create_index(["channel", "author_handle"])
    db["mentions"].create_index(["created_at"])
    db["mentions"].enable_fts(list(MENTION_FTS_COLUMNS), create_triggers=True, tokenize="unicode61")
    # Re-index only when the text changes: the pipeline and the console update case_id and
    # labels all the time, and re-indexing the post each time would double the write cost.
    # (PostgreSQL's GIN index is kept by PostgreSQL itself: no triggers there.)
    if dialect_of(db) is SQLITE:
        db.execute("drop trigger mentions_au")
        db.execute(
            'create trigger mentions_au after update of text on mentions begin '
            "insert into mentions_fts (mentions_fts, rowid, text) values ('delete', old.rowid, old.text); "
            "insert into mentions_fts (rowid, text) values (new.rowid, new.text); end"
        )

    db["customers"].create(
        {"id": str, "name": str, "email": str, "phone": str, "vip": int, "opt_out": str}, pk="id"
    )
    db["customer_handles"].create(
        {"channel": str, "handle": str, "customer_id": str}, pk=("channel", "handle")
    )
    db["customer_handles"].create_index(["customer_id"])
    db["orders"].create(
        {
            "number": str,
            "customer_id": str,
            "placed_at": str,
            "brand": str,
            "items": str,
            "total": float,
            "currency": str,
            "promised_date": str,
            "status": str,
        },
        pk="number",
    )
    db["orders"].create_index(["customer_id", "placed_at"])
    db["shipments"].create(
        {
            "tracking_number": str,
            "order_number": str,
            "courier": str,
            "service": str,
            "status": str,
            "last_event_at": str,
        },
        pk="tracking_number",
    )
    db["shipments"].create_index(["order_number"])
    db["tracking_events"].create(
        {"id": int, "tracking_number": str, "time": str, "status": str, "location": str, "description": str},
        pk="id",
    )
    db["tracking_events"].create_index(["tracking_number", "time", "status"], unique=True)

    db["cases"].create(
        {
            "id": int,
            "status": str,
            "priority": float,
            "priority_reasons": str,
            "brand": str,
            "courier": str,
            "channel": str,
            "intent": str,
            "sentiment": str,
            "complaint": int,
            "author_handle": str,
            "thread_id": str,
            "customer_id": str,
            "order_number": str,
            "tracking_number": str,
            "link_method": str,
            "link_confidence": float,
            "link_confirmed": int,
            "assignee": str,
            "opened_at": str,
            "last_activity_at": str,
            "first_response_due": str,
            "resolution_due": str,
            "first_response_at": str,
            "resolved_at": str,
            "snoozed_until": str,
            "mention_count": int,
            "version": int,
            "updated_by": str,
        },
        pk="id",
        defaults={"version": 1, "mention_count": 0, "complaint": 0, "link_confirmed": 0},
    )
    # The inbox reads "open cases by priority", maybe filtered by one facet. Partial indexes
    # over open cases only, in priority order, let it stop after the first 50 rows instead
    # of sorting every open case. The WHERE text must match OPEN_CASES_SQL exactly.
    db.execute(f"create index idx_cases_open_priority on cases (priority, id) where {OPEN_CASES_SQL}")
    for column in ("brand", "courier", "intent", "channel", "assignee", "status"):
        db.execute(f"create index idx_cases_open_{column} on cases ({column}, priority, id) where {OPEN_CASES_SQL}")
    # Covers the SLA-state filter, so counting breached cases never reads the table.
    db.execute(
        "create index idx_cases_open_sla on cases (status, first_response_at, first_response_due, resolution_due) "
        f"where {OPEN_CASES_SQL}"
    )
    db["cases"].create_index(["status", "priority"])
    db["cases"].create_index(["customer_id", "status"])
    db["cases"].create_index(["channel", "thread_id"])
    db["cases"].create_index(["channel", "author_handle"])
    db["cases"].create_index(["order_number"])
    db["cases"].create_index(["opened_at"])

    db["outbound_messages"].create(
        {
            "id": int,
            "case_id": int,
            "kind": str,
            "channel": str,
            "target": str,
            "text": str,
            "in_reply_to": str,
            "status": str,
            "attempts": int,
            "last_error": str,
            "idempotency_key": str,
            "external_id": str,
            "created_by": str,
            "created_at": str,
            "sent_at": str,
            "next_attempt_at": str,
        },
        pk="id",
        defaults={"attempts": 0, "status": "queued"},
    )
    db["outbound_messages"].create_index(["idempotency_key"], unique=True)
    db["outbound_messages"].create_index(["status", "next_attempt_at"])
    db["outbound_messages"].create_index(["case_id"])
    db["notes"].create({"id": int, "case_id": int, "author": str, "text": str, "created_at": str}, pk="id")
    db["notes"].create_index(["case_id"])
    db["audit_events"].create(
        {"id": int, "at": str, "actor": str, "action": str, "case_id": int, "details": str}, pk="id"
    )
    db["audit_events"].create_index(["case_id"])
    db["audit_events"].create_index(["at"])
    db["cursors"].create({"name": str, "value": str, "updated_at": str}, pk="name")
    db["listener_health"].create(
        {
            "name": str,
            "last_success_at": str,
            "last_error_at": str,
            "last_error": str,
            "lag_seconds": float,
            "fetched": int,
            "stored": int,
            "errors": int,
            "updated_at": str,
        },
        pk="name",
    )
    db["label_corrections"].create(
        {
            "id": int,
            "mention_id": int,
            "text": str,
            "field": str,
            "old_value": str,
            "new_value": str,
            "corrected_by": str,
            "at": str,
        },
        pk="id",
    )
    db["users"].create({"username": str, "name": str, "role": str, "password_hash": str, "created_at": str}, pk="username")


@MIGRATIONS()
def m002_user_email(db: sqlite_utils.Database) -> None:
    """Console users get an e-mail address: single sign-on identifies people by it.

    The audit index serves the login lockout, which counts each user's recent failures.
    """
    db["users"].add_column("email", str)
    db["users"].create_index(["email"], unique=True, if_not_exists=True)
    db["audit_events"].create_index(["action", "actor", "at"], if_not_exists=True)


@MIGRATIONS()
def m003_inbox_facet_index(db: sqlite_utils.Database) -> None:
    """The counts beside the inbox's filters, read from one covering index over open cases.

    Each filter's count is taken under the *other* filters (brand and SLA state, say), which
    the one-column indexes of m001 can only answer by reading every matching case row
    (~130 ms at 114k open cases). This index holds every facet and the SLA columns, so such
    counts scan index entries only (``Store._count_index`` asks for it by name). It leads
    with resolution_due, which no query compares for equality and the listing only ever
    writes as ``+resolution_due``, so the planner never takes it for the queue itself,
    where the priority-ordered indexes of m001 stop after 50 rows.
    """
    db.execute(
        "create index if not exists idx_cases_open_facets on cases (resolution_due, brand, courier, intent, channel, "
        f"assignee, status, first_response_at, first_response_due) where {OPEN_CASES_SQL}"
    )


@MIGRATIONS()
def m004_answers_automatic_messages(db: sqlite_utils.Database) -> None:
    """The facts an automatic message (follow-up, outreach, alert) was written from, and its approval.

    The outbox re-checks these facts immediately before sending (``responders/recheck.py``) and
    cancels the message with the reason when one is no longer true; a rule that needs an agent's
    approval keeps its message ``awaiting_approval`` until someone decides on the approvals page.
    """
    db["automatic_messages"].create(
        {"message_id": int, "case_id": int, "rule": str, "reply_message_id": int, "last_mention_id": int,
         "order_number": str, "customer_id": str, "approval": str, "decided_by": str, "decided_at": str,
         "cancel_reason": str},
        pk="message_id", if_not_exists=True,
    )
    db["automatic_messages"].create_index(["approval"], if_not_exists=True)


@MIGRATIONS()
def m005_inbound_listener_health_warnings(db: sqlite_utils.Database) -> None:
    """Listener health keeps warnings apart from errors (branch ``inbound``).

    ``malformed`` counts posts a round skipped as unreadable and ``last_warning`` says which
    round and why, so a listener that drops posts is visible without calling its round failed.
    ``rejected`` counts unsigned or badly signed webhook requests: strangers can send those at
    will, so they must not write ``last_error`` (that would flip health and page the team).
    """
    for column, kind in (("malformed", int), ("rejected", int), ("last_warning", str), ("last_warning_at", str)):
        if column not in db["listener_health"].columns_dict:
            db["listener_health"].add_column(column, kind)


@MIGRATIONS()
def m006_accounts_per_brand(db: sqlite_utils.Database) -> None:
    """Which of our accounts a post reached, and which account sent each message.

    A reply goes out from the account the customer wrote to (their brand's, never another
    brand's), and the outbound row records it so the team can see who answered as whom.
    """
    if "account" not in db["mentions"].columns_dict:
        db["mentions"].add_column("account", str)
    if "account" not in db["outbound_messages"].columns_dict:
        db["outbound_messages"].add_column("account", str)


@MIGRATIONS()
def m007_security_console_sessions(db: sqlite_utils.Database) -> None:
    """Console logins kept on the server (branch ``security``), checked on every console run.

    A browser holds only an HttpOnly cookie with a random token; the table holds its digest, the
    digest of the user's password hash and role at login (``stamp``: a change ends the login),
    the expiry, and when and why it was ended. ``console/auth.py`` owns the rows.
    """
    db["console_sessions"].create(
        {"id": str, "username": str, "method": str, "stamp": str, "created_at": str, "expires_at": str,
         "token_digest": str, "grant_digest": str, "grant_expires_at": str, "revoked_at": str, "revoked_reason": str},
        pk="id", if_not_exists=True,
    )
    db["console_sessions"].create_index(["token_digest"], if_not_exists=True)
    db["console_sessions"].create_index(["grant_digest"], if_not_exists=True)
    db["console_sessions"].create_index(["username"], if_not_exists=True)


@MIGRATIONS()
def m008_inbox_queue_sort_and_search(db: sqlite_utils.Database) -> None:
    """The inbox as a queue over every case (branch ``inbox``, issue 17).

    Sorting by due time or by newest walks these partial indexes over open cases (as the
    priority order walks ``idx_cases_open_priority``), so a page of 50 stops after 50 rows
    at any offset. Search finds what agents type besides words: a case's tracking number,
    its author's handle whatever the case, and customers by name, e-mail or phone
    (``customers_fts``, kept by triggers).
    """
    # The due order as it was before m013 replaced it with the stored due_key (this exact text).
    due = "(case when first_response_at is null then first_response_due else resolution_due end)"
    db.execute(f"create index if not exists idx_cases_open_due on cases ({due}, id) where {OPEN_CASES_SQL}")
    db.execute(f"create index if not exists idx_cases_open_opened on cases (opened_at, id) where {OPEN_CASES_SQL}")
    db.execute("create index if not exists idx_cases_tracking_number on cases (tracking_number)")
    dialect = dialect_of(db)
    db.execute("create index if not exists idx_cases_author_handle_nocase on cases "
               f"{dialect.nocase_index('author_handle')}")
    db.execute(f"create index if not exists idx_customers_phone_digits on customers ({PHONE_DIGITS_SQL})")
    if dialect.postgres or "customers_fts" not in db.table_names():
        db["customers"].enable_fts(list(CUSTOMER_FTS_COLUMNS), create_triggers=True, tokenize="unicode61")


@MIGRATIONS()
def m009_courier_updates_and_contact_attempts(db: sqlite_utils.Database) -> None:
    """Courier updates posted through a courier link, and every private question or follow-up's fate.

    ``courier_updates`` holds what a courier posted on its signed link (``responders/courier_link.py``);
    the unique (tracking_number, update_id) makes a re-posted update a no-op. ``contact_attempts``
    records, for every follow-up or question we send a customer, the channel, the local send hour
    and whether (and how fast) they answered: the history the channel learner
    (``responders/channel_learner.py``) chooses the next channel and hour from.
    """
    db["courier_updates"].create(
        {"id": int, "tracking_number": str, "update_id": str, "case_id": int, "courier": str, "status": str,
         "text": str, "received_at": str, "message_id": int},
        pk="id", if_not_exists=True,
    )
    db["courier_updates"].create_index(["tracking_number", "update_id"], unique=True, if_not_exists=True)
    db["courier_updates"].create_index(["tracking_number", "received_at"], if_not_exists=True)
    db["contact_attempts"].create(
        {"message_id": int, "case_id": int, "customer_id": str, "brand": str, "rule": str, "channel": str,
         "send_hour": int, "planned_at": str, "chosen_by": str, "answered_at": str, "answer_minutes": float},
        pk="message_id", if_not_exists=True,
    )
    db["contact_attempts"].create_index(["case_id", "answered_at"], if_not_exists=True)
    db["contact_attempts"].create_index(["customer_id"], if_not_exists=True)
    db["contact_attempts"].create_index(["brand", "planned_at"], if_not_exists=True)


@MIGRATIONS()
def m010_case_merged_into(db: sqlite_utils.Database) -> None:
    """A case an agent merged into another one points to it (doorstep/regroup.py, issue 17)."""
    db["cases"].add_column("merged_into", int)


@MIGRATIONS()
def m011_dialogue_questions_callbacks(db: sqlite_utils.Database) -> None:
    """Questions customers can answer, their answers, and call-back tasks (branch ``dialogue``, issue 19).

    ``questions``: one closed question asked on a case (by SMS or e-mail), where it went
    (``address_key``: the phone's digits or the lower-cased address, so a reply finds it), its
    reply token, expiry, and once answered the answer, what it was understood as and what it
    triggered. ``answers``: every inbound reply seen, keyed by channel and the channel's own id,
    so a reply delivered twice is handled once. ``callbacks``: a call back offered on a case, the
    slot the customer picked, its SLA deadline and outcome.
    """
    db["questions"].create(
        {"id": int, "case_id": int, "customer_id": str, "rule": str, "channel": str, "target": str,
         "address_key": str, "message_id": int, "mail_id": str, "token": str, "asked_at": str, "expires_at": str,
         "status": str, "answer": str, "answer_kind": str, "answer_channel": str, "answered_at": str,
         "slot_at": str, "action": str},
        pk="id", if_not_exists=True,
    )
    db["questions"].create_index(["case_id"], if_not_exists=True)
    db["questions"].create_index(["address_key", "status"], if_not_exists=True)
    db["questions"].create_index(["token"], unique=True, if_not_exists=True)
    db["questions"].create_index(["status", "expires_at"], if_not_exists=True)
    db["answers"].create(
        {"id": int, "channel": str, "external_id": str, "sender": str, "text": str, "received_at": str,
         "question_id": int, "case_id": int, "kind": str, "outcome": str},
        pk="id", if_not_exists=True,
    )
    db["answers"].create_index(["channel", "external_id"], unique=True, if_not_exists=True)
    db["callbacks"].create(
        {"id": int, "case_id": int, "question_id": int, "reason": str, "offered_by": str, "offered_at": str,
         "status": str, "phone": str, "slot_at": str, "slot_text": str, "requested_at": str, "due_at": str,
         "breached_at": str, "outcome": str, "outcome_by": str, "outcome_at": str},
        pk="id", if_not_exists=True,
    )
    db["callbacks"].create_index(["case_id"], if_not_exists=True)
    db["callbacks"].create_index(["status", "due_at"], if_not_exists=True)


@MIGRATIONS()
def m012_team_settings(db: sqlite_utils.Database) -> None:
    """Templates and alert rules a lead edits in the console, one row per saved version (doorstep/team_settings.py)."""
    db["team_settings"].create(
        {"id": int, "kind": str, "name": str, "value": str, "author": str, "created_at": str, "note": str},
        pk="id", if_not_exists=True,
    )
    db["team_settings"].create_index(["kind", "name", "id"], if_not_exists=True)


@MIGRATIONS()
def m013_sla_clocks(db: sqlite_utils.Database) -> None:
    """SLA clocks that pause, restart per unanswered post and count business hours (branch ``sla``).

    New case columns (doorstep/sla.py): the oldest unanswered customer post (``awaiting_since``),
    the "next response" deadline, when the clocks paused (waiting on the customer), the
    priority band, and, derived from those on every write, the next deadline while the clocks
    run (``due_at``, ``due_kind``: what the red and amber states and the alerts read) and the
    due order's key (``due_key``). The queue's two orders walk ``idx_cases_open_queue`` (band,
    then due) and ``idx_cases_open_due`` (due); the facet counts' covering index gains the
    snooze and the next deadline, so counting overdue ones never reads the table, and
    ``idx_cases_open_snooze`` finds the (few) snoozed cases: the default queue's counts are
    "every open case minus the snoozed ones". Existing cases get the old meaning (first response while unanswered, else
    resolution; pending cases paused since their last activity) until their next change.
    """
    for column in ("awaiting_since", "next_response_due", "sla_paused_at", "priority_band", "due_at", "due_kind",
                   "due_key"):
        if column not in db["cases"].columns_dict:
            db["cases"].add_column(column, str)
    db.execute("update cases set priority_band = case when priority >= 70 then 'p1' when priority >= 50 then 'p2' "
               "when priority >= 30 then 'p3' else 'p4' end")
    db.execute("update cases set sla_paused_at = coalesce(last_activity_at, opened_at) where status = 'pending_customer'")
    answer_owed = "first_response_at is null and first_response_due is not null"
    db.execute(
        f"update cases set due_at = case when {answer_owed} and (resolution_due is null or first_response_due "
        "<= resolution_due) then first_response_due else resolution_due end, "
        f"due_kind = case when {answer_owed} and (resolution_due is null or first_response_due <= resolution_due) "
        "then 'first response' when resolution_due is not null then 'resolution' end, "
        f"due_key = case when {answer_owed} then '1 ' || first_response_due when resolution_due is not null "
        "then '2 ' || resolution_due else '3' end where status in ('new', 'open', 'escalated')")
    db.execute("update cases set due_key = '3' where due_key is null")
    db.execute("drop index if exists idx_cases_open_due")
    db.execute(f"create index if not exists idx_cases_open_due on cases (due_key, id) where {OPEN_CASES_SQL}")
    db.execute(f"create index if not exists idx_cases_open_queue on cases (priority_band, due_key, priority desc, id desc) "
               f"where {OPEN_CASES_SQL}")
    db.execute(f"create index if not exists idx_cases_open_snooze on cases (snoozed_until) where {OPEN_CASES_SQL}")
    db.execute("drop index if exists idx_cases_open_facets")
    db.execute(
        "create index if not exists idx_cases_open_facets on cases (resolution_due, brand, courier, intent, channel, "
        f"assignee, status, first_response_at, first_response_due, snoozed_until, due_at) where {OPEN_CASES_SQL}"
    )


@MIGRATIONS()
def m014_job_queue_batches(db: sqlite_utils.Database) -> None:
    """Posts waiting between the job queue's stages (PostgreSQL workers, commands/jobs_queue.py).

    A ``classify`` or ``ingest`` job names its batch here instead of carrying its posts in its
    arguments: procrastinate copies and logs a job's arguments several times per job, which cost
    more than storing the posts. ``stage`` is the job that takes the batch next; the ingest job
    deletes the row in the transaction that stores the posts.
    """
    db["job_batches"].create({"id": int, "stage": str, "posts": str, "created_at": str}, pk="id",
                             if_not_exists=True)


@MIGRATIONS()
def m015_postgres_sla_count_index(db: sqlite_utils.Database) -> None:
    """PostgreSQL counts overdue open cases from an index of their deadlines (issue 16).

    SQLite is told to count from the covering facets index (``Store._count_index``); PostgreSQL
    chooses by statistics and, with no index leading with ``due_at``, scanned the table: 73 ms
    for 85k overdue cases of 200k, 17 ms with this index (bench/RESULTS.md). SQLite would never
    use it and would pay for it on every case write, so it is made on PostgreSQL only.
    (m015: m014 is taken on the pg-worker branch.)
    """
    if dialect_of(db).postgres:
        db.execute(f"create index if not exists idx_cases_open_due_at on cases (due_at, snoozed_until) "
                   f"where {OPEN_CASES_SQL}")


@dataclass(frozen=True)
class OrderSummary:
    """An order as linking and priority see it: no items, no event list."""

    number: str
    customer_id: str
    placed_at: datetime
    status: str
    brand: str | None
    total: float
    currency: str
    #: The latest shipment's tracking number (the one a vague complaint is most likely about).
    tracking_number: str | None
    shipment_statuses: frozenset[str]
    event_statuses: frozenset[str]
    last_event_at: datetime | None


@dataclass
class InboxQuery:
    """Filters of the console's inbox; ``None`` means "any"."""

    statuses: Sequence[str] = OPEN_CASE_STATUSES
    brand: str | None = None
    courier: str | None = None
    channel: str | None = None
    intent: str | None = None
    assignee: str | None = None
    search: str | None = None
    #: "breached" (a running clock's deadline passed), "due_soon" (within the hour) or None.
    sla_state: str | None = None
    #: Snoozed cases: "hide" (default), "only" or "include" (see SNOOZE_VIEWS).
    snoozed: str = "hide"
    #: The moment "overdue", "due soon" and "snoozed" are judged at (default: now); tests pass a fake clock.
    now: datetime | None = None
    limit: int = 50
    offset: int = 0
    #: "priority" (default), "due" (next due time first) or "newest" (see INBOX_SORTS).
    sort: str = "priority"
    #: "answer" (our question was sent and is still open) or "callback" (a call back is due), else None.
    waiting: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _fts_query(text: str) -> str:
    """Turn what an agent types into a safe FTS5 query: every word must appear (prefix match)."""
    return SQLITE.fts_query(text)


class Store:
    """All reads and writes of Doorstep's data.

    One instance per thread or process, unless :meth:`share_across_threads` was called (the
    worker does): then each thread that uses the store gets its own connection.

    ``path`` is a SQLite file (or ``sqlite:///path``) or a ``postgresql://`` URL; ``dialect``
    says which SQL the database speaks where the two differ.
    """

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
        self._search_memo: dict[tuple[str, str], tuple[tuple[int, int, int], Any]] = {}
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
            db.execute(f"set lock_timeout = {int(self.busy_timeout_s * 1000)}")
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
        except (sqlite3.DatabaseError, *DATABASE_ERRORS) as exc:
            raise StoreError.from_sqlite(self.path, exc) from exc
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

    def share_across_threads(self) -> Store:
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
    def waiting_at_most(self, seconds: float) -> Iterator[Store]:
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
    def transaction(self) -> Iterator[Store]:
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
    def write_transaction(self) -> Iterator[Store]:
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
    def _sqlite_transaction(self) -> Iterator[Store]:
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

    # ----------------------------------------------------------------- mentions
    def existing_mention_ids(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Map (channel, external_id) -> stored id for the keys that are already stored."""
        found: dict[tuple[str, str], int] = {}
        by_channel: dict[str, list[str]] = {}
        for channel, external_id in keys:
            by_channel.setdefault(channel, []).append(external_id)
        for channel, ids in by_channel.items():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                sql = (
                    "select id, external_id from mentions where channel = ? and external_id in "
                    f"({','.join('?' * len(chunk))})"
                )
                for row in self.db.execute(sql, [channel, *chunk]).fetchall():
                    found[(channel, row[1])] = row[0]
        return found

    def insert_mention(self, mention: Mention) -> int:
        row = _mention_row(mention)
        row.pop("id", None)
        cursor = self.db.execute(
            f"insert into mentions ({', '.join(row)}) values ({', '.join('?' * len(row))})", list(row.values())
        )
        return int(cursor.lastrowid or 0)

    def insert_mentions(self, mentions: Sequence[Mention]) -> list[int]:
        """Store new posts, many rows per INSERT, and return their ids in the same order.

        Why not one INSERT per post: SQLite's full-text index flushes its pending terms at
        every statement that writes it (a statement savepoint), so one-row inserts wrote a tiny
        index segment per post and merged them again, most of an import's write time.
        """
        if not mentions:
            return []
        rows = [_mention_row(m) for m in mentions]
        for row in rows:
            row.pop("id", None)
        columns = list(rows[0])
        per_statement = max(1, MAX_PARAMETERS // len(columns))
        one = f"({_marks(columns)})"
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            self.db.execute(
                f"insert into mentions ({', '.join(columns)}) values {', '.join([one] * len(chunk))}",
                [value for row in chunk for value in row.values()],
            )
        ids = self.existing_mention_ids((m.channel, m.external_id) for m in mentions)
        return [ids[(m.channel, m.external_id)] for m in mentions]

    def set_mention_case(self, mention_id: int, case_id: int) -> None:
        self.db.execute("update mentions set case_id = ? where id = ?", [case_id, mention_id])

    def set_mention_labels(self, mention_id: int, labels: Labels) -> None:
        row = _label_columns(labels)
        self.db.execute(
            f"update mentions set {', '.join(f'{k} = ?' for k in row)} where id = ?", [*row.values(), mention_id]
        )

    def get_mention(self, mention_id: int) -> Mention | None:
        rows = self.rows("select * from mentions where id = ?", [mention_id])
        return _mention_from_row(rows[0]) if rows else None

    def mention_by_external_id(self, channel: str, external_id: str) -> Mention | None:
        rows = self.rows("select * from mentions where channel = ? and external_id = ?", [channel, external_id])
        return _mention_from_row(rows[0]) if rows else None

    def mention_threads(self, channel: str, external_ids: Iterable[str]) -> dict[str, tuple[str | None, int | None]]:
        """external id -> (thread id, case id) of the stored posts among ``external_ids``: what a
        reply needs of the post it answers, for a whole batch in one query per chunk."""
        found: dict[str, tuple[str | None, int | None]] = {}
        for chunk in _chunks(external_ids):
            for external_id, thread_id, case_id in self.db.conn.execute(
                "select external_id, thread_id, case_id from mentions where channel = ? and external_id in "
                f"({_marks(chunk)})", [channel, *chunk],
            ).fetchall():
                found[external_id] = (thread_id, case_id)
        return found

    def mentions_for_case(self, case_id: int) -> list[Mention]:
        rows = self.db.query("select * from mentions where case_id = ? order by created_at, id", [case_id])
        return [_mention_from_row(r) for r in rows]

    def peak_mention(self, case_id: int) -> Mention | None:
        """The case's most serious inbound post (complaint first, then urgency)."""
        rows = self.rows(
            "select * from mentions where case_id = ? and outbound = 0 order by complaint desc, urgency desc, id limit 1",
            [case_id],
        )
        return _mention_from_row(rows[0]) if rows else None

    def thread(self, channel: str, thread_id: str) -> list[Mention]:
        rows = self.db.query(
            "select * from mentions where channel = ? and thread_id = ? order by created_at, id", [channel, thread_id]
        )
        return [_mention_from_row(r) for r in rows]

    def iter_mentions(self, batch: int = 1000) -> Iterator[Mention]:
        last = 0
        while True:
            rows = list(self.db.query("select * from mentions where id > ? order by id limit ?", [last, batch]))
            if not rows:
                return
            for row in rows:
                yield _mention_from_row(row)
            last = rows[-1]["id"]

    def count(self, table: str) -> int:
        return int(self.db.execute(f"select count(*) from [{table}]").fetchone()[0])

    # --------------------------------------------------------------- shop data
    def upsert_customers(self, customers: Iterable[Customer]) -> int:
        n = 0
        for customer in customers:
            self.upsert_customer(customer)
            n += 1
        return n

    def _insert_or_update(self, table: str, key_column: str, key: str, values: dict[str, Any], mentioned: set[str],
                          *, never_clear: frozenset[str] = frozenset()) -> str:
        """The one partial-update rule of customers, orders and shipments: a new row is inserted
        whole; an existing one gets only the ``mentioned`` columns whose value differs (and never
        None over a ``never_clear`` column), so a file never erases what it did not mention.
        Returns "new", "updated" or "unchanged"."""
        existing = self.db.execute(f"select {', '.join(values)} from {table} where {key_column} = ?", [key]).fetchone()
        if existing is None:
            self.db.execute(f"insert into {table} ({key_column}, {', '.join(values)}) values (?{', ?' * len(values)})",
                            [key, *values.values()])
            return "new"
        stored = dict(zip(values, existing))
        update = {k: v for k, v in values.items()
                  if k in mentioned and stored[k] != v and not (v is None and k in never_clear)}
        if not update:
            return "unchanged"
        self.db.execute(f"update {table} set {', '.join(f'{k} = ?' for k in update)} where {key_column} = ?",
                        [*update.values(), key])
        return "updated"

    def upsert_customer(self, customer: Customer, fields: Iterable[str] | None = None) -> str:
        """Insert a customer, or update only the ``fields`` given (default: those set on the model).

        Returns "new", "updated" or "unchanged". Why partial: an orders file that names a
        customer only to say whose order it is must not erase the e-mail, phone or handles
        another file gave (issue 14). Handles are only ever added (or moved to this
        customer when the file says so), never deleted by an upsert.
        """
        mentioned = set(customer.model_fields_set if fields is None else fields) - {"id"}
        values = {
            "name": customer.name,
            "email": customer.email,
            "phone": customer.phone,
            "vip": int(customer.vip),
            "opt_out": _json(customer.opt_out),
        }
        status = self._insert_or_update("customers", "id", customer.id, values, mentioned)
        changed = status != "unchanged"
        if "handles" in mentioned:
            for channel, handle in customer.handles.items():
                handle = handle.lower().lstrip("@")
                owner = self.db.execute(
                    "select customer_id from customer_handles where channel = ? and handle = ?", [channel, handle]
                ).fetchone()
                if owner is None or owner[0] != customer.id:
                    self.db.execute(
                        "insert into customer_handles (channel, handle, customer_id) values (?, ?, ?) "
                        "on conflict (channel, handle) do update set customer_id = excluded.customer_id",
                        [channel, handle, customer.id],
                    )
                    changed = True
        if status == "new":
            return "new"
        return "updated" if changed else "unchanged"

    def get_customer(self, customer_id: str) -> Customer | None:
        row = self.db.execute("select id, name, email, phone, vip, opt_out from customers where id = ?", [customer_id]).fetchone()
        if not row:
            return None
        handles = dict(
            self.db.execute("select channel, handle from customer_handles where customer_id = ?", [customer_id]).fetchall()
        )
        return Customer(
            id=row[0], name=row[1], email=row[2], phone=row[3], vip=bool(row[4]), opt_out=_unjson(row[5], []), handles=handles
        )

    def customer_id_by_handle(self, channel: str, handle: str | None) -> str | None:
        if not handle:
            return None
        row = self.db.execute(
            "select customer_id from customer_handles where channel = ? and handle = ?", [channel, handle.lower().lstrip("@")]
        ).fetchone()
        return row[0] if row else None

    def customer_ids_by_handles(self, channel: str, handles: Iterable[str | None]) -> dict[str, str]:
        """handle as given -> customer id, for the handles on ``channel`` that belong to a customer
        (matched as :meth:`customer_id_by_handle` does: any case, with or without the @)."""
        given: dict[str, list[str]] = {}
        for handle in handles:
            if handle:
                given.setdefault(handle.lower().lstrip("@"), []).append(handle)
        found: dict[str, str] = {}
        for chunk in _chunks(given):
            for handle, customer_id in self.db.conn.execute(
                f"select handle, customer_id from customer_handles where channel = ? and handle in ({_marks(chunk)})",
                [channel, *chunk],
            ).fetchall():
                found.update(dict.fromkeys(given[handle], customer_id))
        return found

    def upsert_orders(self, orders: Iterable[Order]) -> int:
        n = 0
        for order in orders:
            self.upsert_order(order)
            n += 1
        return n

    def upsert_order(self, order: Order, fields: Iterable[str] | None = None) -> str:
        """Insert an order (and its shipments), or update only the fields set on the model.

        Returns "new", "updated" (the order, one of its shipments or their events changed)
        or "unchanged", so a re-import can say truthfully what it did.
        """
        mentioned = set(order.model_fields_set if fields is None else fields)
        values = {
            "customer_id": order.customer_id,
            "placed_at": iso(order.placed_at),
            "brand": order.brand,
            "items": _json(order.items),
            "total": order.total,
            "currency": order.currency,
            "promised_date": iso(order.promised_date),
            "status": order.status,
        }
        status = self._insert_or_update("orders", "number", order.number, values, mentioned)
        changed = status == "updated"
        for shipment in order.shipments:
            fields_of = set(shipment.model_fields_set) | {"order_number"}
            changed = self.upsert_shipment(shipment.model_copy(update={"order_number": order.number}),
                                           fields_of) != "unchanged" or changed
        if status == "new":
            return "new"
        return "updated" if changed else "unchanged"

    def upsert_shipment(self, shipment: Shipment, fields: Iterable[str] | None = None) -> str:
        """Insert a shipment or update only its given fields; its status follows its events.

        A file that repeats a tracking number without a service must not erase the service
        (and a status is never cleared by an upsert). Returns "new", "updated" or "unchanged".
        """
        mentioned = set(shipment.model_fields_set if fields is None else fields)
        values = {
            "order_number": shipment.order_number,
            "courier": shipment.courier,
            "service": shipment.service,
            "status": shipment.status,
        }
        status = self._insert_or_update("shipments", "tracking_number", shipment.tracking_number, values, mentioned,
                                        never_clear=frozenset({"status"}))
        changed = status == "updated"
        if shipment.events and self.add_tracking_events(shipment.events):
            changed = True
        if status == "new":
            return "new"
        return "updated" if changed else "unchanged"

    def add_tracking_events(self, events: Iterable[TrackingEvent]) -> int:
        """Store events (idempotent) and keep each shipment's current status = its latest event."""
        added = 0
        touched: set[str] = set()
        for event in events:
            cursor = self.db.execute(
                "insert into tracking_events (tracking_number, time, status, location, description) "
                "values (?, ?, ?, ?, ?) on conflict do nothing",
                [event.tracking_number, iso(event.time), event.status, event.location, event.description],
            )
            added += cursor.rowcount
            touched.add(event.tracking_number)
        for tracking_number in touched:
            self.db.execute(
                "update shipments set (status, last_event_at) = (select status, time from tracking_events "
                "where tracking_number = ?1 order by time desc, id desc limit 1) where tracking_number = ?1",
                [tracking_number],
            )
        return added

    def get_order(self, number: str) -> Order | None:
        rows = list(self.db.query("select * from orders where number = ?", [number]))
        if not rows:
            return None
        return _order_from_row(rows[0], self.shipments_for_order(number))

    def orders_for_customer(self, customer_id: str) -> list[Order]:
        rows = self.db.query("select * from orders where customer_id = ? order by placed_at desc", [customer_id])
        return [_order_from_row(r, self.shipments_for_order(r["number"])) for r in rows]

    def order_summaries(self, *, customer_id: str | None = None, number: str | None = None,
                        limit: int = 20) -> list[OrderSummary]:
        """Orders with what linking and priority need, in one query (no per-order round trips).

        For a customer, only the ``limit`` most recent orders: a complaint is about a
        recent order, and a heavy buyer's history must not slow every mention down.
        """
        where, param = ("o.customer_id = ?", customer_id) if customer_id is not None else ("o.number = ?", number)
        return self._order_summaries(f"{where} order by o.placed_at desc limit ?", [param, limit])

    def order_summaries_by_numbers(self, numbers: Iterable[str]) -> dict[str, OrderSummary]:
        """The summaries of these orders (those that exist), in one query per chunk: a batch of
        mentions quotes many order numbers, and asking once per number was most of linking's time."""
        found: dict[str, OrderSummary] = {}
        for chunk in _chunks(numbers):
            for summary in self._order_summaries(f"o.number in ({_marks(chunk)})", chunk):
                found[summary.number] = summary
        return found

    def _order_summaries(self, where: str, params: Sequence[Any]) -> list[OrderSummary]:
        concat = self.dialect.group_concat
        sql = f"""
            select o.number, o.customer_id, o.placed_at, o.status, o.brand, o.total, o.currency,
              (select tracking_number from shipments where order_number = o.number order by rowid desc limit 1),
              (select {concat('status')} from shipments where order_number = o.number),
              (select {concat('e.status', distinct=True)} from shipments s join tracking_events e
                 on e.tracking_number = s.tracking_number where s.order_number = o.number),
              (select max(last_event_at) from shipments where order_number = o.number)
            from orders o where {where}"""
        return [
            OrderSummary(
                number=r[0], customer_id=r[1], placed_at=parse_time(r[2]), status=r[3] or "placed", brand=r[4],
                total=r[5] or 0.0, currency=r[6] or "GBP", tracking_number=r[7],
                shipment_statuses=frozenset(filter(None, (r[8] or "").split(","))),
                event_statuses=frozenset(filter(None, (r[9] or "").split(","))),
                last_event_at=parse_time(r[10]),
            )
            for r in self.db.conn.execute(sql, list(params)).fetchall()
        ]

    def order_summary(self, number: str) -> OrderSummary | None:
        found = self.order_summaries(number=number)
        return found[0] if found else None

    def shipment_brief(self, tracking_number: str) -> tuple[str, str, frozenset[str]] | None:
        """(order number, courier, every tracking status it has had) of a shipment."""
        return self._shipment_briefs("tracking_number = ?", [tracking_number]).get(tracking_number)

    def shipment_briefs(self, tracking_numbers: Iterable[str]) -> dict[str, tuple[str, str, frozenset[str]]]:
        """:meth:`shipment_brief` of many shipments (those that exist), in one query per chunk."""
        found: dict[str, tuple[str, str, frozenset[str]]] = {}
        for chunk in _chunks(tracking_numbers):
            found.update(self._shipment_briefs(f"tracking_number in ({_marks(chunk)})", chunk))
        return found

    def _shipment_briefs(self, where: str, params: Sequence[Any]) -> dict[str, tuple[str, str, frozenset[str]]]:
        rows = self.db.conn.execute(
            f"select tracking_number, order_number, courier, (select {self.dialect.group_concat('status', distinct=True)} "
            f"from tracking_events where tracking_number = s.tracking_number) from shipments s where {where}",
            list(params),
        ).fetchall()
        return {r[0]: (r[1], r[2], frozenset(filter(None, (r[3] or "").split(",")))) for r in rows}

    def customer_is_vip(self, customer_id: str) -> bool:
        row = self.db.conn.execute("select vip from customers where id = ?", [customer_id]).fetchone()
        return bool(row and row[0])

    def vip_customer_ids(self, customer_ids: Iterable[str]) -> set[str]:
        """Which of these customers are VIPs, in one query per chunk (see :meth:`customer_is_vip`)."""
        found: set[str] = set()
        for chunk in _chunks(customer_ids):
            found.update(r[0] for r in self.db.conn.execute(
                f"select id from customers where id in ({_marks(chunk)}) and vip = 1", chunk).fetchall())
        return found

    def get_shipment(self, tracking_number: str) -> Shipment | None:
        rows = list(self.db.query("select * from shipments where tracking_number = ?", [tracking_number]))
        return _shipment_from_row(rows[0], self.tracking_events(tracking_number)) if rows else None

    def shipments_for_order(self, order_number: str) -> list[Shipment]:
        rows = self.db.query("select * from shipments where order_number = ?", [order_number])
        return [_shipment_from_row(r, self.tracking_events(r["tracking_number"])) for r in rows]

    def tracking_events(self, tracking_number: str) -> list[TrackingEvent]:
        rows = self.db.query(
            "select tracking_number, time, status, location, description from tracking_events "
            "where tracking_number = ? order by time, id",
            [tracking_number],
        )
        return [TrackingEvent(**{**r, "time": parse_time(r["time"])}) for r in rows]

    # -------------------------------------------------------------------- cases
    def insert_case(self, case: Case) -> int:
        row = _case_row(case)
        row.pop("id", None)
        cursor = self.db.execute(
            f"insert into cases ({', '.join(row)}) values ({', '.join('?' * len(row))})", list(row.values())
        )
        return int(cursor.lastrowid or 0)

    def get_case(self, case_id: int) -> Case | None:
        rows = self.rows("select * from cases where id = ?", [case_id])
        return _case_from_row(rows[0]) if rows else None

    def save_case(self, case: Case, before: Case | None = None) -> Case:
        """Write a case the pipeline changed (no lock check: the pipeline owns new mentions).

        With ``before`` (the case as it was read), only the changed columns are written, so
        SQLite leaves the indexes of unchanged columns alone.
        """
        assert case.id is not None
        row = _case_row(case)
        if before is not None:
            old = _case_row(before)
            row = {k: v for k, v in row.items() if old.get(k) != v}
        row.pop("id", None)
        row["version"] = case.version + 1
        self.db.conn.execute(
            f"update cases set {', '.join(f'{k} = ?' for k in row)} where id = ?", [*row.values(), case.id]
        )
        return case.model_copy(update={"version": row["version"]})

    def update_case(self, case_id: int, expected_version: int, actor: str, *, because: dict[str, Any] | None = None,
                    **changes: Any) -> Case:
        """Change a case on behalf of a person, refusing to overwrite a newer version silently.

        The version check and the write happen in one UPDATE, so two agents who read
        version 3 cannot both write version 4. ``because`` (kept in the audit event beside the
        changed fields) says on whose behalf a machine made the change, e.g. the outbox setting
        the status after ann's reply was sent, so it counts as ann's own (``doorstep.case_merge``).
        """
        allowed = set(Case.model_fields) - {"id", "version"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown case fields: {', '.join(sorted(unknown))}")
        row = {k: v for k, v in _case_row(Case(**{**self._require_case(case_id).model_dump(), **changes})).items()
               if k in changes or k in _QUEUE_COLUMNS}
        with self.transaction():
            cursor = self.db.execute(
                f"update cases set {', '.join(f'{k} = ?' for k in row)}{',' if row else ''} version = version + 1, "
                "updated_by = ? where id = ? and version = ?",
                [*row.values(), actor, case_id, expected_version],
            )
            if cursor.rowcount == 0:
                current = self.db.execute("select version, updated_by from cases where id = ?", [case_id]).fetchone()
                raise StaleCaseError(case_id, expected_version, current[0], current[1])
            # What the person changed (and on whose behalf); the SLA clocks it moved follow from that
            # (doorstep/sla.py).
            details = {k: _plain(v) for k, v in changes.items() if k not in CLOCK_FIELDS}
            if because:
                details["because"] = because
            self.audit(actor, "case.update", case_id, details)
        return self._require_case(case_id)

    def _require_case(self, case_id: int) -> Case:
        case = self.get_case(case_id)
        if case is None:
            raise KeyError(f"no case {case_id}")
        return case

    def open_case_for(self, *, channel: str | None = None, thread_id: str | None = None,
                      customer_id: str | None = None, order_number: str | None = None,
                      author_handle: str | None = None, include_resolved: bool = True) -> Case | None:
        """The case a new mention belongs to: same thread first, then same order, then same customer."""
        statuses = ("new", "open", "pending_customer", "escalated", "resolved") if include_resolved else OPEN_CASE_STATUSES
        marks = ",".join("?" * len(statuses))
        probes: list[tuple[str, list[Any]]] = []
        if thread_id and channel:
            probes.append(("channel = ? and thread_id = ?", [channel, thread_id]))
        if order_number:
            probes.append(("order_number = ?", [order_number]))
        if customer_id:
            probes.append(("customer_id = ? and order_number is null", [customer_id]))
        elif author_handle and channel:
            probes.append(("channel = ? and author_handle = ? and order_number is null and customer_id is null", [channel, author_handle]))
        for where, params in probes:
            rows = self.rows(
                f"select * from cases where {where} and status in ({marks}) order by (status = 'resolved'), id desc limit 1",
                [*params, *statuses],
            )
            if rows:
                return _case_from_row(rows[0])
        return None

    def cases_in_threads(self, channel: str, thread_ids: Iterable[str]) -> list[Case]:
        """Every case (open or resolved) of these conversations on ``channel``: what
        :meth:`open_case_for` chooses from by thread, for a whole batch in one query per chunk."""
        statuses = ("new", "open", "pending_customer", "escalated", "resolved")
        found: list[Case] = []
        for chunk in _chunks(thread_ids):
            found += [_case_from_row(r) for r in self.rows(
                f"select * from cases where channel = ? and thread_id in ({_marks(chunk)}) "
                f"and status in ({_marks(statuses)})", [channel, *chunk, *statuses])]
        return found

    def author_cases(self, *, channel: str, author_handle: str | None, customer_id: str | None,
                     order_number: str | None, resolved_since: datetime, limit: int = 50) -> list[Case]:
        """The cases a new post of this author may join (see cases.choose_case), newest activity first.

        The author's cases on any channel (by customer) or on this channel (by handle), and the
        cases about ``order_number`` (pass it only for an order the author is known to own): every
        open one, and resolved ones resolved since ``resolved_since`` (older ones never reopen);
        never a case merged into another.
        """
        probes: list[str] = []
        params: list[Any] = []
        if customer_id:
            probes.append("customer_id = ?")
            params.append(customer_id)
        if author_handle:
            probes.append("(channel = ? and author_handle = ?)")
            params += [channel, author_handle]
        if order_number:
            probes.append("order_number = ?")
            params.append(order_number)
        if not probes:
            return []
        rows = self.rows(
            f"select * from cases where ({' or '.join(probes)}) and merged_into is null and ({OPEN_CASES_SQL} or "
            "(status = 'resolved' and coalesce(resolved_at, last_activity_at) >= ?)) "
            "order by last_activity_at desc, id desc limit ?",
            [*params, iso(resolved_since), limit],
        )
        return [_case_from_row(r) for r in rows]

    def case_post_texts(self, case_id: int) -> list[str]:
        """The texts of the customer's posts in a case (not ours), oldest first."""
        return [r[0] for r in self.db.execute(
            "select text from mentions where case_id = ? and outbound = 0 order by created_at, id", [case_id])]

    def contact_count(self, case_id: int) -> int:
        """The customer's posts in the case that ask for something, for "repeat contact".

        Our own posts, praise, and thanks (a positive post that is no complaint: "it's arrived,
        thank you!") are not counted: a happy customer writing twice is not a repeat contact.
        Posts not yet classified count.
        """
        row = self.db.execute(
            "select count(*) from mentions where case_id = ? and outbound = 0 and coalesce(intent, '') != 'praise' "
            "and not (coalesce(sentiment, '') = 'positive' and coalesce(complaint, 0) = 0)", [case_id]).fetchone()
        return int(row[0])

    def inbox(self, query: InboxQuery | None = None) -> list[Case]:
        """Open cases, highest priority first (or by ``sort``), one page as the console's queue shows them."""
        where, params = self._inbox_where(query or InboxQuery())
        q = query or InboxQuery()
        if q.sort not in INBOX_SORTS:
            raise ValueError(f"not an inbox order: {q.sort} (choose {', '.join(INBOX_SORTS)})")
        # Due and newest walk their own index over open cases and stop after the page; left to
        # itself (no ANALYZE statistics) SQLite would sort every open case. With a search or a
        # filter the matching cases are few or indexed by the filter, so the planner chooses.
        index = ""
        if q.snoozed == "only" and tuple(q.statuses) == OPEN_CASE_STATUSES and not q.search:
            if self._indexes is None:
                self._indexes = self.dialect.index_names(self.db)
            index = self.dialect.indexed_by("idx_cases_open_snooze") if "idx_cases_open_snooze" in self._indexes else ""
        elif (tuple(q.statuses) == OPEN_CASE_STATUSES and not q.search
                and not any(getattr(q, c) for c in INBOX_FILTER_COLUMNS)):
            name = {"priority": "idx_cases_open_queue", "due": "idx_cases_open_due",
                    "newest": "idx_cases_open_opened"}[q.sort]
            if self._indexes is None:
                self._indexes = self.dialect.index_names(self.db)
            index = self.dialect.indexed_by(name) if name in self._indexes else ""
        sql = f"select * from cases{index} where {where} order by {INBOX_SORTS[q.sort]} limit ? offset ?"
        return [_case_from_row(r) for r in self.db.query(sql, [*params, q.limit, q.offset])]

    def inbox_count(self, query: InboxQuery | None = None) -> int:
        q = query or InboxQuery()
        if q.snoozed == "hide" and not q.sla_state:
            # Every case minus the snoozed ones: each count walks the index made for it (the snoozed
            # are few), where testing the snooze of every open case would read them all.
            return (self.inbox_count(replace(q, snoozed="include"))
                    - self.inbox_count(replace(q, snoozed="only")))
        where, params = self._inbox_where(q, for_count=True)
        index = self._count_index(q)
        return int(self.db.execute(f"select count(*) from cases{index} where {where}", params).fetchone()[0])

    def inbox_facets(self, column: str, query: InboxQuery | None = None) -> dict[str, int]:
        """Counts per value of one filter column, for the filter widgets (most cases first)."""
        if column not in {*INBOX_FILTER_COLUMNS, "status"}:
            raise ValueError(f"not a facet: {column}")
        q = query or InboxQuery()
        if q.snoozed == "hide" and not q.sla_state:  # as in inbox_count: all minus the snoozed
            counts = self.inbox_facets(column, replace(q, snoozed="include"))
            for value, n in self.inbox_facets(column, replace(q, snoozed="only")).items():
                counts[value] -= n
            return dict(sorted(((k, n) for k, n in counts.items() if n), key=lambda item: -item[1]))
        where, params = self._inbox_where(q)
        # Grouping by the bare column lets an index in that column's order answer the
        # unfiltered counts without sorting; NULL is named "(none)" here instead of in SQL.
        rows = self.db.execute(
            f"select {column}, count(*) from cases{self._count_index(q, column)} where {where} group by {column}", params
        ).fetchall()
        counts: dict[str, int] = {}
        for value, n in rows:
            key = "(none)" if value is None else value
            counts[key] = counts.get(key, 0) + n
        return dict(sorted(counts.items(), key=lambda item: -item[1]))

    def _count_index(self, q: InboxQuery, grouped: str | None = None) -> str:
        """The ``indexed by`` clause for counting open cases: the index that answers it alone.

        Left to itself, SQLite's planner takes a one-column index that matches a filter (or
        the grouped column's order) and then reads every matching case row: 50-350 ms at
        114k open cases, worst in databases without ANALYZE statistics, which is every
        database Doorstep writes. Counting needs no case row: the one-column partial indexes
        of m001 answer a count with at most one filter, or a grouping without filters, in
        the column's order; the covering index of m003 answers everything else (2-40 ms).
        A search's few hundred cases are looked up by id (``not indexed`` still uses the
        rowid; without statistics the planner would scan an index instead). Status sets
        other than "open", which the partial indexes do not cover, are left to the planner.
        """
        if q.search and self.dialect.fts_query(q.search):
            return self.dialect.indexed_by(None)
        if tuple(q.statuses) != OPEN_CASE_STATUSES:
            return ""
        filters = [column for column in INBOX_FILTER_COLUMNS if getattr(q, column) and column != grouped]
        if q.snoozed == "only" and not q.sla_state:
            name = "idx_cases_open_snooze"  # the few snoozed cases, found by their snooze's end
        elif q.sla_state or q.snoozed != "include" or len(filters) > 1 or (grouped and filters):
            name = "idx_cases_open_facets"
        elif grouped or filters:
            name = f"idx_cases_open_{grouped or filters[0]}"
        else:
            name = "idx_cases_open_status"
        if self._indexes is None:
            self._indexes = self.dialect.index_names(self.db)
        return self.dialect.indexed_by(name) if name in self._indexes else ""

    def _memo(self, kind: str, query: str, compute: Any) -> Any:
        """``compute()``, remembered while the database is unchanged.

        The key holds SQLite's data_version (it moves when another connection commits) and
        this connection's total_changes (it moves on our own writes, triggers included), so
        a remembered result is always what the query would return now. On PostgreSQL the
        snapshot (which transactions have finished) stands in for data_version: it stays the
        same exactly while no other transaction commits.
        """
        db = self.db
        if self.dialect.postgres:
            seen = db.execute("select cast(pg_current_snapshot() as text)").fetchone()[0]
        else:
            seen = int(db.execute("pragma data_version").fetchone()[0])
        version = (id(db), seen, db.conn.total_changes)
        held = self._search_memo.get((kind, query))
        if held is not None and held[0] == version:
            return held[1]
        value = compute()
        if len(self._search_memo) >= SEARCH_MEMO_SIZE:
            self._search_memo.pop(next(iter(self._search_memo)))
        self._search_memo[(kind, query)] = (version, value)
        return value

    def search_cases(self, text: str) -> list[int]:
        """Ids of the cases an agent's search means, by what they typed.

        An exact handle (``hannah_pr`` or ``@hannah_pr``) that some case is from wins alone:
        the words of a handle would otherwise also find ``@hannah_no``'s posts. Otherwise the
        cases of: a linked order number or tracking number typed exactly; customers whose
        name, e-mail or phone matches (their linked cases and the cases from their handles);
        and the newest posts matching the words (SEARCH_MATCH_LIMIT posts at most: searching
        is for finding a live conversation, and capping keeps a common word as fast as a rare
        one; :meth:`search_is_capped` tells the console when to say so). An order number
        quoted in a post is found by its words. Every lookup is by an index.
        """
        dialect = self.dialect
        query = dialect.fts_query(text)
        if not query:
            return []
        typed = text.strip()

        def run() -> tuple[int, ...]:
            handle = typed.removeprefix("@")
            if handle and not any(c.isspace() for c in handle):
                exact = self.db.execute(
                    f"select id from cases where {dialect.nocase_equals('author_handle')} order by id desc", [handle]
                ).fetchall()
                if exact:
                    return tuple(r[0] for r in exact)
            found: dict[int, None] = {}
            numbers = list(dict.fromkeys([typed, typed.upper()]))
            marks = ",".join("?" * len(numbers))
            for sql in (
                f"select id from cases where order_number in ({marks})",
                f"select id from cases where tracking_number in ({marks})",
                f"select id from cases where order_number in (select order_number from shipments "
                f"where tracking_number in ({marks}))",
            ):
                found.update((r[0], None) for r in self.db.execute(sql, numbers).fetchall())
            customers = [r[0] for r in self.db.execute(
                f"select id from customers where rowid in ({dialect.fts_ids('customers', CUSTOMER_FTS_COLUMNS)})",
                [query, CUSTOMER_MATCH_LIMIT]).fetchall()]
            digits = "".join(c for c in typed if c.isdigit())
            if len(digits) >= 7 and all(c.isdigit() or c in " -().+" for c in typed):
                customers += [r[0] for r in self.db.execute(
                    f"select id from customers where {PHONE_DIGITS_SQL} = ? limit ?", [digits, CUSTOMER_MATCH_LIMIT])]
            if customers:
                ids = json.dumps(customers)
                found.update((r[0], None) for r in self.db.execute(
                    f"select id from cases where customer_id in ({dialect.json_values()})", [ids]).fetchall())
                found.update((r[0], None) for r in self.db.execute(
                    "select c.id from customer_handles h join cases c on c.channel = h.channel and "
                    f"c.author_handle = h.handle where h.customer_id in ({dialect.json_values()})",
                    [ids]).fetchall())
            found.update((r[0], None) for r in self.db.execute(
                "select distinct case_id from mentions where case_id is not null and id in "
                f"({dialect.fts_ids('mentions', MENTION_FTS_COLUMNS, key='id')})",
                [query, SEARCH_MATCH_LIMIT],
            ).fetchall())
            return tuple(found)

        return list(self._memo("cases", typed, run))

    def search_is_capped(self, text: str) -> bool:
        query = self.dialect.fts_query(text)
        if not query:
            return False

        def run() -> bool:
            row = self.db.execute(
                f"select count(*) from ({self.dialect.fts_ids('mentions', MENTION_FTS_COLUMNS, key='id')}) as hits",
                [query, SEARCH_MATCH_LIMIT + 1],
            ).fetchone()
            return bool(row[0] > SEARCH_MATCH_LIMIT)

        return bool(self._memo("capped", query, run))

    def _inbox_where(self, q: InboxQuery, for_count: bool = False) -> tuple[str, list[Any]]:
        params: list[Any] = []
        if tuple(q.statuses) == OPEN_CASE_STATUSES:
            clauses = [OPEN_CASES_SQL]
        else:
            clauses = [f"status in ({','.join('?' * len(q.statuses))})"]
            params += list(q.statuses)
        for column in INBOX_FILTER_COLUMNS:
            value = getattr(q, column)
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        moment = q.now or utcnow()
        now = iso(moment)
        # Listing: the unary + keeps SQLite walking the queue's index (stop at 50) instead of
        # collecting every breached case and sorting. Counting: no +, so the covering facets
        # index (m013) answers without reading the table.
        plus = "" if for_count or self.dialect.postgres else "+"
        if q.snoozed not in SNOOZE_VIEWS:
            raise ValueError(f"not a snooze view: {q.snoozed} (choose {', '.join(SNOOZE_VIEWS)})")
        if q.snoozed == "hide":
            clauses.append(f"({plus}snoozed_until is null or {plus}snoozed_until <= ?)")
            params.append(now)
        elif q.snoozed == "only":
            clauses.append("snoozed_until > ?")  # a range of idx_cases_open_snooze
            params.append(now)
        if q.sla_state == "breached":
            clauses.append(f"{plus}due_at < ?")
            params.append(now)
        elif q.sla_state == "due_soon":
            soon = iso(datetime.fromtimestamp(moment.timestamp() + 3600, timezone.utc))
            clauses.append(f"{plus}due_at >= ? and {plus}due_at <= ?")
            params += [now, soon]
        if q.waiting == "answer":
            clauses.append("id in (select case_id from questions where status = 'open' and expires_at > ? and message_id in "
                           "(select id from outbound_messages where status = 'sent'))")
            params.append(now)
        elif q.waiting == "callback":
            clauses.append("id in (select case_id from callbacks where status = 'scheduled' and due_at is not null "
                           "and coalesce(slot_at, requested_at) <= ?)")
            params.append(now)
        if q.search and self.dialect.fts_query(q.search):
            clauses.append(f"id in ({self.dialect.json_values('int')})")
            params.append(json.dumps(self.search_cases(q.search)))
        return " and ".join(clauses), params

    # ------------------------------------------------------ notes, audit, cursors
    def add_note(self, case_id: int, author: str, text: str) -> Note:
        with self.transaction():
            now = iso(utcnow())
            cursor = self.db.execute(
                "insert into notes (case_id, author, text, created_at) values (?, ?, ?, ?)", [case_id, author, text, now]
            )
            self.audit(author, "case.note", case_id, {"note_id": cursor.lastrowid})
        return Note(id=cursor.lastrowid, case_id=case_id, author=author, text=text, created_at=parse_time(now))

    def notes(self, case_id: int) -> list[Note]:
        rows = self.db.query("select * from notes where case_id = ? order by id", [case_id])
        return [Note(**{**r, "created_at": parse_time(r["created_at"])}) for r in rows]

    def audit(self, actor: str, action: str, case_id: int | None = None, details: dict[str, Any] | None = None) -> None:
        self.db.execute(
            "insert into audit_events (at, actor, action, case_id, details) values (?, ?, ?, ?, ?)",
            [iso(utcnow()), actor, action, case_id, _json(redact_details(details or {}))],
        )

    def audit_trail(self, case_id: int | None = None, limit: int = 200) -> list[AuditEvent]:
        if case_id is None:
            rows = self.db.query("select * from audit_events order by id desc limit ?", [limit])
        else:
            rows = self.db.query("select * from audit_events where case_id = ? order by id limit ?", [case_id, limit])
        return [AuditEvent(**{**r, "at": parse_time(r["at"]), "details": _unjson(r["details"], {})}) for r in rows]

    def get_cursor(self, name: str) -> str | None:
        row = self.db.execute("select value from cursors where name = ?", [name]).fetchone()
        return row[0] if row else None

    def set_cursor(self, name: str, value: str) -> None:
        self.db.execute(
            "insert into cursors (name, value, updated_at) values (?, ?, ?) on conflict (name) do update set "
            "value = excluded.value, updated_at = excluded.updated_at", [name, value, iso(utcnow())]
        )

    # ---------------------------------------------------------------- outbound
    def outbound_for_case(self, case_id: int) -> list[OutboundMessage]:
        rows = self.db.query("select * from outbound_messages where case_id = ? order by id", [case_id])
        return [outbound_from_row(r) for r in rows]

    # ----------------------------------------------------------------- helpers
    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts, straight from sqlite3: the pipeline's hot path skips sqlite-utils' extras."""
        cursor = self.db.conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


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


def _label_columns(labels: Labels | None) -> dict[str, Any]:
    if labels is None:
        return dict.fromkeys(
            ("sentiment", "sentiment_scores", "complaint", "complaint_score", "intent", "intent_scores", "urgency", "needs_review", "model")
        )
    return {
        "sentiment": labels.sentiment,
        "sentiment_scores": _json(labels.sentiment_scores),
        "complaint": int(labels.complaint),
        "complaint_score": labels.complaint_score,
        "intent": labels.intent,
        "intent_scores": _json(labels.intent_scores),
        "urgency": labels.urgency,
        "needs_review": int(labels.needs_review),
        "model": labels.model,
    }


def _mention_row(m: Mention) -> dict[str, Any]:
    return {
        "id": m.id,
        "channel": m.channel,
        "external_id": m.external_id,
        "text": m.text,
        "created_at": iso(m.created_at),
        "author_id": m.author_id,
        "author_handle": m.author_handle,
        "author_name": m.author_name,
        "author_followers": m.author_followers,
        "language": m.language,
        "url": m.url,
        "thread_id": m.thread_id,
        "in_reply_to": m.in_reply_to,
        "matched": _json(m.matched),
        "outbound": int(m.outbound),
        "raw": _json(m.raw),
        "case_id": m.case_id,
        "account": m.account,
        **_label_columns(m.labels),
        "ingested_at": iso(utcnow()),
    }


def _mention_from_row(r: dict[str, Any]) -> Mention:
    labels = None
    if r.get("sentiment"):
        labels = Labels(
            sentiment=r["sentiment"],
            sentiment_scores=_unjson(r["sentiment_scores"], {}),
            complaint=bool(r["complaint"]),
            complaint_score=r["complaint_score"] or 0.0,
            intent=r["intent"],
            intent_scores=_unjson(r["intent_scores"], {}),
            urgency=r["urgency"] or 0.0,
            needs_review=bool(r["needs_review"]),
            model=r["model"] or "",
        )
    return Mention(
        id=r["id"],
        channel=r["channel"],
        external_id=r["external_id"],
        text=r["text"],
        created_at=parse_time(r["created_at"]),
        author_id=r["author_id"],
        author_handle=r["author_handle"],
        author_name=r["author_name"],
        author_followers=r["author_followers"] or 0,
        language=r["language"],
        url=r["url"],
        thread_id=r["thread_id"],
        in_reply_to=r["in_reply_to"],
        matched=_unjson(r["matched"], []),
        outbound=bool(r["outbound"]),
        raw=_unjson(r["raw"]),
        case_id=r["case_id"],
        account=r.get("account"),
        labels=labels,
    )


def mention_export_row(m: Mention) -> dict[str, Any]:
    """The stable JSON shape of ``doorstep export mentions``; ``doorstep import mentions`` reads it back.

    Every field of the post and of its labels is written (flat, as the import expects), so
    an export imports into a new database without loss. ``id`` and ``case_id`` are for
    reading only: an import assigns them anew (cases are rebuilt by the pipeline).
    """
    out: dict[str, Any] = {
        "channel": m.channel,
        "external_id": m.external_id,
        "text": m.text,
        "author_id": m.author_id,
        "author_handle": m.author_handle,
        "author_name": m.author_name,
        "author_followers": m.author_followers,
        "language": m.language,
        "url": m.url,
        "created_at": iso(m.created_at),
        "thread_id": m.thread_id,
        "in_reply_to": m.in_reply_to,
        "outbound": m.outbound,
        "matched": m.matched,
        "raw": m.raw,
        "case_id": m.case_id,
    }
    if m.labels:
        out.update(m.labels.model_dump())
    return out


def _order_from_row(r: dict[str, Any], shipments: list[Shipment]) -> Order:
    return Order(
        number=r["number"],
        customer_id=r["customer_id"],
        placed_at=parse_time(r["placed_at"]),
        brand=r["brand"],
        items=_unjson(r["items"], []),
        total=r["total"] or 0.0,
        currency=r["currency"] or "GBP",
        promised_date=date.fromisoformat(r["promised_date"]) if r["promised_date"] else None,
        status=r["status"] or "placed",
        shipments=shipments,
    )


def _shipment_from_row(r: dict[str, Any], events: list[TrackingEvent]) -> Shipment:
    return Shipment(
        tracking_number=r["tracking_number"],
        order_number=r["order_number"],
        courier=r["courier"],
        service=r["service"],
        status=r["status"],
        events=events,
    )


_CASE_TIMES = (
    "opened_at",
    "last_activity_at",
    "first_response_due",
    "resolution_due",
    "first_response_at",
    "resolved_at",
    "snoozed_until",
    "awaiting_since",
    "next_response_due",
    "sla_paused_at",
)

#: Columns derived from a case on every write (doorstep.sla.queue_fields): the inbox's orders and SLA states.
_QUEUE_COLUMNS = ("due_at", "due_kind", "due_key", "priority_band")


def _case_row(c: Case) -> dict[str, Any]:
    row = c.model_dump()
    for key in _CASE_TIMES:
        row[key] = iso(row[key])
    row["priority_reasons"] = _json(c.priority_reasons)
    row["complaint"] = int(c.complaint)
    row["link_confirmed"] = int(c.link_confirmed)
    row.update(queue_fields(c, iso))
    return row


#: The columns a Case is read from. A plain set: asking the model class for its fields on every
#: column of every row was a third of an import's time (pydantic builds that mapping per access).
_CASE_FIELDS = frozenset(Case.model_fields)


def _case_from_row(r: dict[str, Any]) -> Case:
    # NULL columns take the model's defaults (rows written by hand or by older versions).
    data = {k: v for k, v in r.items() if k in _CASE_FIELDS and v is not None}
    for key in _CASE_TIMES:
        data[key] = parse_time(data.get(key))
    data["priority_reasons"] = _unjson(r["priority_reasons"], [])
    data["complaint"] = bool(r["complaint"])
    data["link_confirmed"] = bool(r["link_confirmed"])
    return Case(**data)


def outbound_from_row(r: dict[str, Any]) -> OutboundMessage:
    data = {k: v for k, v in r.items() if k in OutboundMessage.model_fields}
    for key in ("created_at", "sent_at", "next_attempt_at"):
        data[key] = parse_time(data.get(key))
    return OutboundMessage(**data)
