"""The store: one SQLite file through sqlite-utils, or a PostgreSQL database (issue 16).

Why SQLite by default: a care team of a few dozen people produces at most a few thousand
writes a minute, and one file is trivial to back up, copy and inspect with Datasette. WAL
mode lets the console read while the worker writes. A shop that outgrows one machine points
``--db``/``DOORSTEP_DB`` at ``postgresql://...`` instead: :mod:`doorstep.postgres` gives
PostgreSQL the face of the sqlite-utils ``Database`` used here, and :mod:`doorstep.dialect`
holds the SQL that differs (``store.dialect``). The schema evolves through
``sqlite_utils.migrations``, one list for both databases (:mod:`doorstep.store.migrations`);
add a new function at its end, never edit an applied one.

The package is grouped by what each part keeps, as Zulip groups its writes by domain, over one
connection and dialect layer:

* ``base``: connections, transactions, locks, errors, time and JSON conventions;
* ``migrations``: the schema history (and the SQL texts its partial indexes are built on);
* ``mentions``: posts and their labels;
* ``orders``: customers, orders, shipments and tracking events;
* ``cases``: cases and their versioned (optimistically locked) writes;
* ``inbox``: the console's queue, its counts and search;
* ``audit``: notes and the audit trail;
* ``cursors``: where each listener stopped;
* ``outbox``: outbound messages as a case reads them (reads only).

:class:`Store` is all of them at once; ``from doorstep.store import Store`` stays the one way in.

Not every write is here: the data of one feature is written by the module that owns the feature,
through the store's connection and transactions (``store.db``, ``store.transaction()``). Outbound
messages are written by responders/ (outbox, automatic, reports, courier_link, dialogue), by
doorstep/erasure.py and commands/demo.py; questions, answers and call backs by doorstep/dialogue.py
and responders/dialogue.py; users and sign-ins by console/auth.py; listener health by
listeners/health.py; job batches by commands/jobs_queue.py. README, "Who writes what", lists
every table.

Conventions: times are stored as ISO 8601 UTC text (``2026-11-23T06:44:28+00:00``)
so they sort lexicographically; lists and dicts are stored as JSON text.
"""

from __future__ import annotations

from doorstep.store.audit import AuditStore
from doorstep.store.base import (
    DEFAULT_BUSY_TIMEOUT_S,
    StoreError,
    database_exists,
    database_for_children,
    files_beside,
    iso,
    parse_time,
    remove_database,
    when_busy,
)
from doorstep.store.cases import NEW_POST, CaseMergedError, CaseStore, StaleCaseError
from doorstep.store.cursors import CursorStore
from doorstep.store.inbox import INBOX_SORTS, InboxQuery, InboxStore
from doorstep.store.mentions import MentionStore, _mention_from_row, mention_export_row
from doorstep.store.migrations import MIGRATIONS, OPEN_CASES_SQL, PHONE_DIGITS_SQL
from doorstep.store.orders import OrderStore, OrderSummary
from doorstep.store.outbox import OutboxStore, outbound_from_row

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_S", "INBOX_SORTS", "MIGRATIONS", "OPEN_CASES_SQL", "PHONE_DIGITS_SQL", "InboxQuery",
    "OrderSummary", "StaleCaseError", "CaseMergedError", "NEW_POST", "Store", "StoreError", "_mention_from_row", "database_exists",
    "database_for_children", "files_beside", "iso", "mention_export_row", "outbound_from_row", "parse_time",
    "remove_database", "when_busy",
]


class Store(MentionStore, OrderStore, CaseStore, InboxStore, AuditStore, CursorStore, OutboxStore):
    """Reads and writes of the data every package shares (posts, customers and orders, cases, notes and
    audit, cursors), and reads of the queue and of outbound messages; other tables are written by
    their feature's module (module docstring above).

    One instance per thread or process, unless :meth:`share_across_threads` was called (the
    worker does): then each thread that uses the store gets its own connection.

    ``path`` is a SQLite file (or ``sqlite:///path``) or a ``postgresql://`` URL; ``dialect``
    says which SQL the database speaks where the two differ.
    """
