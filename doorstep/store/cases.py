"""Cases: one customer's issue with one brand, versioned writes (optimistic locking)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from doorstep.models import OPEN_CASE_STATUSES, Case
from doorstep.permissions import require_case_change
from doorstep.sla import CLOCK_FIELDS, queue_fields
from doorstep.store.base import MAX_PARAMETERS, StoreBase, _chunks, _json, _marks, _plain, _unjson, iso, parse_time
from doorstep.store.mentions import CUSTOMERS_POSTS_SQL
from doorstep.store.migrations import OPEN_CASES_SQL


#: ``cases.updated_by`` of a case the pipeline changed (a new post joined it, its counts moved): words such as
#: "case 12 was changed by a new post since you opened it" read true.
NEW_POST = "a new post"


class StaleCaseError(RuntimeError):
    """Someone else changed the case since it was read: reload and try again."""

    def __init__(self, case_id: int, expected: int, actual: int, changed_by: str | None):
        who = f" by {changed_by}" if changed_by else ""
        super().__init__(
            f"case {case_id} was changed{who} since you opened it (your version {expected}, now {actual}); "
            "the fresh state has been loaded, please review and try again"
        )
        self.case_id, self.expected, self.actual, self.changed_by = case_id, expected, actual, changed_by


class CaseMergedError(StaleCaseError):
    """The case was merged into another: it takes no more changes; the work goes on there."""

    def __init__(self, case_id: int, merged_into: int, expected: int, actual: int, changed_by: str | None):
        RuntimeError.__init__(self, f"case {case_id} was merged into case #{merged_into}: work there")
        self.case_id, self.expected, self.actual, self.changed_by = case_id, expected, actual, changed_by
        self.merged_into = merged_into


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

#: The columns of a case that choosing a post's case looks at (doorstep.lookups.CaseView).
CASE_VIEW_COLUMNS = ("id", "status", "brand", "intent", "channel", "author_handle", "customer_id", "order_number",
                     "tracking_number", "link_method", "opened_at", "last_activity_at", "resolved_at", "merged_into")

#: Columns derived from a case on every write (doorstep.sla.queue_fields): the inbox's orders and SLA states.
_QUEUE_COLUMNS = ("due_at", "due_kind", "due_key", "priority_band")


def _case_row(c: Case) -> dict[str, Any]:
    row = c.model_dump()
    for key in _CASE_TIMES:
        row[key] = iso(row[key])
    row["priority_reasons"] = _json(c.priority_reasons)
    row["complaint"] = int(c.complaint)
    row["link_confirmed"] = int(c.link_confirmed)
    # Only a resolved case was closed as something ("spam"): a case open again, by a new post (the pipeline's
    # doorstep.cases.absorb) or by a person's status, is written without it, whoever reopened it.
    row["closed_as"] = c.closed_as if c.status == "resolved" else None
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


class CaseStore(StoreBase):
    """Reads and writes of ``cases``."""

    # -------------------------------------------------------------------- cases
    def insert_case(self, case: Case) -> int:
        row = _case_row(case)
        row.pop("id", None)
        cursor = self.db.execute(
            f"insert into cases ({', '.join(row)}) values ({', '.join('?' * len(row))})", list(row.values())
        )
        return int(cursor.lastrowid or 0)

    def case_ids(self) -> Iterator[int]:
        """Ids for cases this transaction will insert with :meth:`insert_cases`, in the order one
        :meth:`insert_case` after another would have given them (SQLite: one above the largest, the
        write lock being held; PostgreSQL: the identity's next values)."""
        sql = self.dialect.next_id_sql("cases")
        if sql is not None:
            while True:
                yield int(self.db.execute(sql).fetchone()[0])
        last = int(self.db.execute("select coalesce(max(id), 0) from cases").fetchone()[0])
        while True:
            last += 1
            yield last

    def insert_cases(self, cases: Sequence[Case]) -> None:
        """Insert cases with their ids (from :meth:`case_ids`), many rows per INSERT: the pipeline's new cases,
        opened by a new post (``updated_by``, as :meth:`save_cases` writes it: a batch and the same posts one by
        one store the same)."""
        if not cases:
            return
        rows = [{**_case_row(c), "updated_by": NEW_POST} for c in cases]
        columns = list(rows[0])
        per_statement = max(1, MAX_PARAMETERS // len(columns))
        one = f"({_marks(columns)})"
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            self.db.execute(f"insert into cases ({', '.join(columns)}) values {', '.join([one] * len(chunk))}",
                            [row[c] for row in chunk for c in columns])

    def get_case(self, case_id: int) -> Case | None:
        rows = self.rows("select * from cases where id = ?", [case_id])
        return _case_from_row(rows[0]) if rows else None

    def case_changed_by(self, case_id: int) -> str | None:
        """Who last changed the case (``cases.updated_by``; not part of :class:`Case`), for words such as "who
        resolved it" where the audit trail has no line saying so (older versions, rows written by hand)."""
        rows = self.rows("select updated_by from cases where id = ?", [case_id])
        return rows[0]["updated_by"] if rows else None

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
                    action: str | None = None, **changes: Any) -> Case:
        """Change a case on behalf of a person, refusing to overwrite a newer version silently.

        The version check and the write happen in one UPDATE, so two agents who read
        version 3 cannot both write version 4. ``because`` (kept in the audit event beside the
        changed fields) says on whose behalf a machine made the change, e.g. the outbox setting
        the status after ann's reply was sent, so it counts as ann's own (``doorstep.case_merge``).

        ``actor`` must be allowed the change (:func:`doorstep.permissions.require_case_change`, in
        this transaction, on the assignee of the version being changed): a console user holding the
        role of what the fields do (giving a case to someone else is a lead's), or the product's own
        machinery; else :class:`~doorstep.permissions.NotAllowed` and nothing is written. ``action``
        names the operation the change is part of where the fields do not say it ("regroup": a merge
        carries the other case's assignee over).
        """
        allowed = set(Case.model_fields) - {"id", "version"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown case fields: {', '.join(sorted(unknown))}")
        before = self._require_case(case_id)
        row = {k: v for k, v in _case_row(Case(**{**before.model_dump(), **changes})).items()
               if k in changes or k in _QUEUE_COLUMNS or (k == "closed_as" and "status" in changes)}
        with self.transaction():
            # The owner of the version being changed: the UPDATE below writes only on that version.
            # Only a change of assignee depends on it (taking a colleague's case is a lead's).
            owner = (self.db.execute("select assignee from cases where id = ?", [case_id]).fetchone()
                     if "assignee" in changes and action is None else None)
            require_case_change(self, actor, case_id, changes,  # type: ignore[arg-type]
                                owner[0] if owner else None, action)
            cursor = self.db.execute(
                f"update cases set {', '.join(f'{k} = ?' for k in row)}{',' if row else ''} version = version + 1, "
                "updated_by = ? where id = ? and version = ? and merged_into is null",
                [*row.values(), actor, case_id, expected_version],
            )
            if cursor.rowcount == 0:
                current = self.db.execute("select version, updated_by, merged_into from cases where id = ?",
                                          [case_id]).fetchone()
                if current[2] is not None:
                    raise CaseMergedError(case_id, int(current[2]), expected_version, current[0], current[1])
                raise StaleCaseError(case_id, expected_version, current[0], current[1])
            # What the person changed (and on whose behalf); the SLA clocks it moved follow from that
            # (doorstep/sla.py).
            details = {k: _plain(v) for k, v in changes.items() if k not in CLOCK_FIELDS}
            if before.closed_as and "closed_as" in row and row["closed_as"] is None:
                details["closed_as"] = None  # reopened: the spam mark went with the status (the timeline says so)
            if because:
                details["because"] = because
            self.audit(actor, "case.update", case_id, details)
        return self._require_case(case_id)

    def _require_case(self, case_id: int) -> Case:
        case = self.get_case(case_id)
        if case is None:
            raise KeyError(f"no case {case_id}")
        return case

    def cases_in_threads(self, channel: str, thread_ids: Iterable[str]) -> list[Case]:
        """Every case (open or resolved) of these conversations on ``channel``: what
        the pipeline chooses from by thread (:meth:`doorstep.lookups.BatchCases.thread_cases`), for a whole
        batch in one query per chunk."""
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

    def author_case_views(self, column: str, values: Iterable[str], resolved_since: str, per_key: int,
                          channel: str | None = None) -> list[tuple[Any, ...]]:
        """:meth:`author_cases` for a whole batch of posts, one key at a time: for each value of
        ``column`` (``customer_id``, ``order_number``, or ``author_handle`` on ``channel``), the first
        ``per_key`` cases :meth:`author_cases` would give by that key alone, in its order, as
        :data:`CASE_VIEW_COLUMNS` with the rank (1, 2, ...) last. ``resolved_since`` in stored form.

        Each value's cases are walked newest activity first in its index (m018) and the walk stops
        at ``per_key`` (``Dialect.first_rows_per_value``): ranking all of a value's cases, as this
        did, read a frequent author's thousands of cases on every batch, and an import's time grew
        with the square of the store.
        """
        assert column in ("customer_id", "order_number", "author_handle")
        where = ("x.channel = ? and " if channel is not None else "") + (
            f"x.merged_into is null and ({OPEN_CASES_SQL.replace('status', 'x.status')} or "
            "(x.status = 'resolved' and coalesce(x.resolved_at, x.last_activity_at) >= ?))")
        firsts = self.dialect.first_rows_per_value(CASE_VIEW_COLUMNS, "cases", column, where,
                                                  "x.last_activity_at desc, x.id desc", per_key)
        sql = (f"select *, row_number() over (partition by {column} order by last_activity_at desc, id desc) "
               f"as pick_rank from ({firsts}) as firsts")
        distinct = list(dict.fromkeys(values))
        if not distinct:
            return []
        return self.db.conn.execute(
            sql, [json.dumps(distinct), *([channel] if channel is not None else []), resolved_since]).fetchall()

    def save_cases(self, changes: Sequence[tuple[Case, Case]]) -> None:
        """Write cases the pipeline changed, each once: (the case now, with its version; the case as
        stored). Only the changed columns are written, as :meth:`save_case` does."""
        for case, before in changes:
            old = _case_row(before)
            row = {k: v for k, v in _case_row(case).items() if old.get(k) != v}
            row.pop("id", None)
            row["version"] = case.version
            # Not the last person's name: a refusal said "changed by bob" when the customer's post had (closing).
            row["updated_by"] = NEW_POST
            self.db.conn.execute(f"update cases set {', '.join(f'{k} = ?' for k in row)} where id = ?",
                                 [*row.values(), case.id])

    def case_post_texts(self, case_id: int) -> list[str]:
        """The texts of the customer's posts in a case (not ours), oldest first."""
        return [r[0] for r in self.db.execute(
            "select text from mentions where case_id = ? and outbound = 0 order by created_at, id", [case_id])]

    def contact_count(self, case_id: int) -> int:
        """The customer's posts in the case that ask for something, for "repeat contact".

        Our own posts, praise, and thanks (a positive post that is no complaint: "it's arrived,
        thank you!") are not counted: a happy customer writing twice is not a repeat contact.
        Posts not yet classified count. A stranger's posts in the customer's thread do not
        (``Mention.by_customer`` false): five people saying "same here" is not the customer writing
        five times.
        """
        row = self.db.execute(
            "select count(*) from mentions where case_id = ? and outbound = 0 and coalesce(intent, '') != 'praise' "
            "and not (coalesce(sentiment, '') = 'positive' and coalesce(complaint, 0) = 0) "
            f"and {CUSTOMERS_POSTS_SQL}", [case_id]).fetchone()
        return int(row[0])

    def contact_counts(self, case_ids: Iterable[int]) -> dict[int, int]:
        """:meth:`contact_count` of many cases, in one query per chunk (cases without such posts: 0)."""
        found: dict[int, int] = {}
        for chunk in _chunks(case_ids):
            found.update(dict.fromkeys(chunk, 0))
            found.update((r[0], int(r[1])) for r in self.db.execute(
                f"select case_id, count(*) from mentions where case_id in ({_marks(chunk)}) and outbound = 0 "
                "and coalesce(intent, '') != 'praise' and not (coalesce(sentiment, '') = 'positive' "
                f"and coalesce(complaint, 0) = 0) and {CUSTOMERS_POSTS_SQL} group by case_id", chunk).fetchall())
        return found
