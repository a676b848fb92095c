"""The inbox: the queue's filters, orders, counts and search over open cases."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from doorstep.dialect import _words
from doorstep.models import OPEN_CASE_STATUSES, Case, utcnow
from doorstep.store.base import StoreBase, iso
from doorstep.store.cases import _case_from_row
from doorstep.store.migrations import (
    CUSTOMER_FTS_COLUMNS,
    MENTION_FTS_COLUMNS,
    OPEN_CASES_SQL,
    PHONE_DIGITS_SQL,
    SEARCH_MARK_SQL,
    SUMMARY_CHANGE_COLUMNS,
    search_mark_trigger_names,
)

#: Full-text search looks at this many of the newest matching posts (see Store.search_mentions).
SEARCH_MATCH_LIMIT = 2000

#: The inbox's equality filters (columns of ``cases`` and fields of ``InboxQuery``).
INBOX_FILTER_COLUMNS = ("brand", "courier", "channel", "intent", "assignee")

#: What :meth:`InboxStore.inbox_facets` calls a case without a value, and the filter value that
#: asks for those cases (nobody assigned, no post yet, no courier): ``column is null``, not the words.
NO_VALUE = "(none)"

#: The networks a handle can write on (and their direct messages): an exact-handle search looks the
#: handle up on each, so the (channel, handle) indexes of posts and customer handles answer it.
HANDLE_CHANNELS = ("x", "x_dm", "mastodon", "mastodon_dm", "bluesky", "bluesky_dm")
#: Seconds between whole reads of the cases under a second network (:meth:`InboxStore._other_channels_now`);
#: in between only new posts are read.
OTHER_CHANNELS_FULL_S = 60.0

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

#: The columns the orders of INBOX_SORTS read (a queue under a channel is sorted over two parts).
_SORT_COLUMNS = "id, priority_band, due_key, priority, opened_at"

#: The columns one row of ``Store.inbox_summary`` stands for, in the order of idx_cases_open_facets (m016).
INBOX_SUMMARY_GROUPS = ("brand", "courier", "channel", "intent", "assignee", "status")

#: A row of ``Store.inbox_summary`` this long (the groups, the four counts, then True) counts cases that
#: are under its ``channel`` by a post of the customer's there, though opened on another network (or on
#: none): they are counted under their own channel in the other rows, so such a row counts only for the
#: channel filter (see ``Store._other_channels``).
SUMMARY_ALSO_ROW = len(INBOX_SUMMARY_GROUPS) + 5

#: A case is under a channel when it was opened there (``cases.channel``) or when any inbound post on
#: it came there: a customer who opened a case on Bluesky and wrote again on X is in the X queue too,
#: where the row shows "[X]" (audit of the inbox: the filter matched the opening network only). The
#: cases under a channel besides their own are few and remembered (``Store._other_channels``): a query
#: under a channel is its cases opened there, as before, and apart those few, by id (``Store._wheres``).

#: The index that answers "which channels did the customer write on in this case" from the index alone:
#: ``create index idx_mentions_case_inbound on mentions (case_id, channel) where outbound = 0``. Used
#: where the database has it (SQLite without statistics takes mentions(case_id) otherwise and reads
#: every post of every case it looks at); without it the lookups read the posts by mentions(case_id).
CASE_POSTS_INDEX = "idx_mentions_case_inbound"

#: Which snoozed cases the inbox lists: "hide" (the default queue: they come back when the
#: snooze ends or the customer writes), "only" (the "snoozed" filter) or "include".
SNOOZE_VIEWS = ("hide", "only", "include")

#: Customers a search by name, e-mail or phone looks at (the newest-created first).
CUSTOMER_MATCH_LIMIT = 200

#: Full-text results kept per Store (see Store._search_mark): a console page asks for the same search
#: once per filter count, and again on every rerun while the agent changes other filters.
SEARCH_MEMO_SIZE = 32


#: A live summary (Store.inbox_summary_live) is taken afresh this long after it was taken: the cases
#: whose SLA state or snooze can change within it are the ones it follows as the clock moves.
SUMMARY_HORIZON = timedelta(minutes=30)
#: More logged changes than this since a live summary was brought up to date: it is taken afresh.
SUMMARY_CHANGES_MAX = 20_000
_OPEN = frozenset(OPEN_CASE_STATUSES)
#: One ``case_changes`` row as the live summary reads it: seq, case, old values, new values.
_CHANGE_ROW = ("seq, case_id, " + ", ".join(f"old_{c}" for c in SUMMARY_CHANGE_COLUMNS) + ", "
               + ", ".join(f"new_{c}" for c in SUMMARY_CHANGE_COLUMNS))


def _due_state(values: Sequence[Any], now: str, soon: str) -> tuple[int, int, int, int] | None:
    """One case's part of a summary row at ``now`` (``soon``: an hour later), as the summary's SQL counts
    it: (awake, breached, due_soon, snoozed); None for a case that is not open. ``values`` are the
    case's SUMMARY_CHANGE_COLUMNS (times as the stored ISO text, compared as SQLite compares text)."""
    if values[5] not in _OPEN:
        return None
    snoozed_until, due = values[6], values[7]
    if snoozed_until is None or snoozed_until <= now:
        return (1, 1 if due is not None and due < now else 0, 1 if due is not None and now <= due <= soon else 0, 0)
    return (0, 0, 0, 1)


@dataclass
class LiveSummary:
    """The whole open queue's summary (``Store.inbox_summary`` with no filter) and what it needs to
    follow the data and the clock without counting every case again (``Store.inbox_summary_live``)."""

    path: str
    #: Taken at (ISO); followed by the clock up to ``until``.
    taken_at: str
    until: str
    #: ``until`` plus the hour of "due within the hour": deadlines up to it are followed.
    due_until: str
    #: The moment the counts are for, and the last ``case_changes`` row they include.
    moment: datetime
    seq: int
    #: (brand, courier, channel, intent, assignee, status) -> [awake, breached, due_soon, snoozed]
    counts: dict[tuple[Any, ...], list[int]]
    #: Open cases whose state can change with the clock before ``until``: id -> SUMMARY_CHANGE_COLUMNS
    watch: dict[int, tuple[Any, ...]]
    #: The log's row ``seq`` as it was applied (None: none): found unchanged next time, or the log is
    #: not this summary's (pruned past it, or another database at the same path) and it is taken afresh.
    last: tuple[Any, ...] | None = None
    #: Each group's row as last handed out: unchanged groups keep their tuple, so an update makes a new
    #: tuple only for the groups it changed (thousands of new long-lived tuples per update made Python's
    #: full garbage collection, ~100 ms in a loaded console, run every few updates).
    made: dict[tuple[Any, ...], tuple[Any, ...]] = field(default_factory=dict)

    def rows(self) -> list[tuple[Any, ...]]:
        made = self.made
        for group, n in self.counts.items():
            if group not in made:
                made[group] = (*group, *n)
        return [row for row in made.values() if row[6] or row[7] or row[8] or row[9]]

    def watched(self, values: Sequence[Any]) -> bool:
        """Whether a case with these values can change its SLA state or snooze before ``until``."""
        due, snoozed_until = values[7], values[6]
        return values[5] in _OPEN and ((due is not None and self.taken_at <= due <= self.due_until)
                                       or (snoozed_until is not None and self.taken_at < snoozed_until <= self.until))

    def add(self, values: Sequence[Any], now: str, soon: str, sign: int) -> None:
        part = _due_state(values, now, soon)
        if part is None:
            return
        group = tuple(values[:6])
        n = self.counts.setdefault(group, [0, 0, 0, 0])
        for i in range(4):
            n[i] += sign * part[i]
        self.made.pop(group, None)


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


#: More terms than this starting with a searched word: the word is asked as a prefix (see _post_hits_sql).
PREFIX_TERMS_MAX = 30

#: The per-connection (temp) fts5vocab table over the posts' full-text index: its terms, in order.
FTS_TERMS = "mentions_fts_terms"


def _as_terms(word: str) -> bool:
    """A word whose prefix query can be asked as its terms: ASCII letters and digits (which FTS5's
    unicode61 folds exactly as ``str.lower``), three or more of them (shorter ones start too many terms)."""
    return len(word) >= 3 and word.isascii() and word.isalnum()


class InboxStore(StoreBase):
    """The console's queue over ``cases`` (and full-text search over posts and customers)."""

    #: :meth:`_other_channels` for the live summary's snapshot, taken just before it (see _take_live_summary).
    _channels_pinned: tuple[tuple[int, str], ...] | None = None
    #: (when it was read whole, the newest post id it has seen, its pairs): see :meth:`_other_channels_now`.
    _channels_base: tuple[float, int, frozenset[tuple[int, str]]] | None = None

    def inbox(self, query: InboxQuery | None = None) -> list[Case]:
        """Open cases, highest priority first (or by ``sort``), one page as the console's queue shows them."""
        q = query or InboxQuery()
        where, params = self._inbox_where(q)
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
        order = INBOX_SORTS[q.sort]
        sql = f"select * from cases{index} where {where} order by {order} limit ? offset ?"
        also = self._also_under(q)
        if also:
            # and the few cases under the channel by their posts (opened elsewhere: no case is in both): each
            # part's first cases, each planned as alone (see _wheres), then the page of those in order
            first = q.limit + q.offset
            where2, params2 = self._inbox_where(q, also=also)
            ids = [r[0] for r in self.db.execute(
                f"select id from cases{index} where {where} order by {order} limit {first}", params).fetchall()]
            ids += [r[0] for r in self.db.execute(
                f"select id from cases{self.dialect.indexed_by(None)} where {where2} order by {order} limit {first}",
                params2).fetchall()]
            sql = (f"select * from cases{self.dialect.indexed_by(None)} where id in "
                   f"({self.dialect.json_values('int')}) order by {order} limit ? offset ?")
            params = [json.dumps(ids)]
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
        n = int(self.db.execute(f"select count(*) from cases{index} where {where}", params).fetchone()[0])
        also = self._also_under(q)
        if also:
            where, params = self._inbox_where(q, for_count=True, also=also)
            n += int(self.db.execute(f"select count(*) from cases{self.dialect.indexed_by(None)} where {where}",
                                     params).fetchone()[0])
        return n

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
        rows: list[Any] = []
        for where, params, index in self._wheres(q, self._count_index(q, column)):
            # Grouping by the bare column lets an index in that column's order answer the
            # unfiltered counts without sorting; NULL is named "(none)" here instead of in SQL.
            rows += self.db.execute(
                f"select {column}, count(*) from cases{index} where {where} group by {column}", params).fetchall()
            if column == "channel":  # and the cases under a channel besides their own, by their posts there
                rows += [(r[2], r[-1]) for r in self._also_rows(where, params, ["1"], [])]
        counts: dict[str, int] = {}
        for value, n in rows:
            key = NO_VALUE if value is None else value
            counts[key] = counts.get(key, 0) + n
        return dict(sorted(counts.items(), key=lambda item: -item[1]))

    def _case_posts_index(self) -> str:
        """The hint that makes a lookup of one case's inbound posts walk :data:`CASE_POSTS_INDEX`, if there."""
        if self._indexes is None:
            self._indexes = self.dialect.index_names(self.db)
        return self.dialect.indexed_by(CASE_POSTS_INDEX) if CASE_POSTS_INDEX in self._indexes else ""

    def _other_channels(self) -> tuple[tuple[int, str], ...]:
        """(case, channel) for every case, open or closed, with an inbound post on a channel it was not
        opened on, by case: what puts a case under more than one channel.

        Why remembered by the search mark (:meth:`_search_mark`): finding them looks up every case's posts
        (~0.2 s at 200k cases with CASE_POSTS_INDEX, seconds without), and the counts beside the filters
        need them after every reply and every minute. The mark moves on every write of a post or of its
        case (``mentions`` insert, delete, ``case_id``; ``cases`` insert, delete, ``channel``), which are
        all that can change them (a post's channel and direction are never rewritten); a case's status,
        SLA and other columns are read afresh by :meth:`_also_rows`. The filter lists the same cases
        (:meth:`_wheres`), so the list and the counts beside it agree.
        """
        if self._channels_pinned is not None:
            return self._channels_pinned
        mark = self._search_mark()
        held = self._memo_get(mark, "channels", "")
        if held is not None:
            return held
        found = self._other_channels_now()
        self._memo_put(mark, "channels", "", found)
        return found

    def _other_channels_now(self) -> tuple[tuple[int, str], ...]:
        """:meth:`_other_channels` read from the database: all of it at most every
        :data:`OTHER_CHANNELS_FULL_S`, and in between only the posts stored since (by id).

        Why: the whole answer walks every case's posts (~0.15 s at 1M posts, bench/RESULTS.md), and the
        mark moves on every new post, so every inbox refresh of every agent paid it while posts came in.
        New posts can only add pairs; a post moved to another case (a split or merge) or deleted, or a
        post whose id committed out of order (PostgreSQL), is seen at the next whole read, within
        :data:`OTHER_CHANNELS_FULL_S`: until then such a case may be missing from, or still listed under,
        its second network's filter (its own page and every other filter are not affected).
        """
        import time

        base = self._channels_base
        now = time.monotonic()
        newest = int(self.db.execute("select coalesce(max(id), 0) from mentions").fetchone()[0])
        if base is None or now - base[0] >= OTHER_CHANNELS_FULL_S:
            pairs = frozenset((int(r[0]), r[1]) for r in self.db.execute(
                f"select distinct c.id, m.channel from cases c join mentions m{self._case_posts_index()} "
                "on m.case_id = c.id and m.outbound = 0 and (c.channel is null or m.channel <> c.channel)").fetchall())
            taken = now
        else:
            taken, since, pairs = base
            if newest > since:
                pairs = pairs | {(int(r[0]), r[1]) for r in self.db.execute(
                    "select distinct m.case_id, m.channel from mentions m join cases c on c.id = m.case_id "
                    "where m.id > ? and m.outbound = 0 and (c.channel is null or m.channel <> c.channel)",
                    [since]).fetchall()}
        if not self.db.conn.in_transaction:  # a transaction's own writes may still be rolled back
            self._channels_base = (taken, newest, pairs)
        return tuple(sorted(pairs))

    def _also_rows(self, where: str, params: list[Any], sums: Sequence[str], sum_params: list[Any]
                   ) -> list[tuple[Any, ...]]:
        """Per :data:`INBOX_SUMMARY_GROUPS` (``channel`` being the post's), the sums of ``sums`` (one
        expression per case over its columns, named bare) over the cases of ``where`` that are under a
        channel besides their own (:meth:`_other_channels`), once per such channel.

        Such cases are few (a customer who wrote on two networks): they are looked up by id and summed
        here, so this costs nothing like a walk of the queue.
        """
        channels: dict[int, list[str]] = {}
        for case_id, channel in self._other_channels():
            channels.setdefault(case_id, []).append(channel)
        if not channels:
            return []
        sql = (f"select id, brand, courier, intent, assignee, status, {', '.join(sums)} "
               f"from cases{self.dialect.indexed_by(None)} where {where} and id in ({self.dialect.json_values('int')})")
        totals: dict[tuple[Any, ...], list[int]] = {}
        for r in self.db.execute(sql, [*sum_params, *params, json.dumps(list(channels))]).fetchall():
            for channel in channels[r[0]]:
                n = totals.setdefault((r[1], r[2], channel, r[3], r[4], r[5]), [0] * len(sums))
                for i, value in enumerate(r[6:]):
                    n[i] += int(value)
        return [(*group, *n) for group, n in totals.items()]

    def inbox_summary(self, query: InboxQuery | None = None) -> list[tuple[Any, ...]]:
        """Every count beside the inbox's filters, from one pass over the cases.

        The cases of ``query.statuses`` that match its search and its waiting filter (its other
        filters, SLA state and snooze view are left out), counted per combination of
        :data:`INBOX_SUMMARY_GROUPS` and split at ``query.now`` (default: now) by SLA state. A row
        is ``(brand, courier, channel, intent, assignee, status, awake, breached, due_soon,
        snoozed)``: ``awake`` are the cases not snoozed (the default queue), ``breached`` and
        ``due_soon`` those of them overdue and due within the hour (as ``sla_state`` counts them),
        ``snoozed`` the rest. Rows of :data:`SUMMARY_ALSO_ROW` items (True last) come after them:
        the cases under ``channel`` by a customer's post there though opened elsewhere
        (``Store._other_channels``), once per such channel; they count only for the channel filter
        (``console.inbox.counts_from_summary``). Any count of :meth:`inbox_count` or
        :meth:`inbox_facets` under these statuses, search and waiting filter is a sum over these rows.

        Why: the inbox's counts under the other filters were ~14 such queries per run, each a
        walk of every matching open case (0.16-0.6 s at 114k open cases, bench/RESULTS.md issue
        17). Grouped in the order of the facets index (m016) this is one walk that sorts
        nothing; a search or a waiting filter looks its few cases up by id.
        """
        return self._summary(query or InboxQuery())

    def _summary(self, q: InboxQuery, own: bool = True) -> list[tuple[Any, ...]]:
        """:meth:`inbox_summary`; without ``own``, its rows of SUMMARY_ALSO_ROW items only: the live summary
        follows the others from the log of case changes, which does not see posts, and takes these afresh
        each time (the few cases whose customer wrote on two networks)."""
        moment = q.now or utcnow()
        q = replace(q, snoozed="include", sla_state=None, now=moment, **{c: None for c in INBOX_FILTER_COLUMNS})
        where, params = self._inbox_where(q, for_count=True)
        now = iso(moment)
        soon = iso(datetime.fromtimestamp(moment.timestamp() + 3600, timezone.utc))
        if (q.search and self.dialect.fts_query(q.search)) or q.waiting:
            index = self.dialect.indexed_by(None)  # the few matching cases, by id
        elif tuple(q.statuses) != OPEN_CASE_STATUSES:
            index = ""  # closed cases are in no partial index: the planner chooses
        else:
            if self._indexes is None:
                self._indexes = self.dialect.index_names(self.db)
            index = self.dialect.indexed_by("idx_cases_open_facets") if "idx_cases_open_facets" in self._indexes else ""
        groups = ", ".join(INBOX_SUMMARY_GROUPS)
        awake = "(snoozed_until is null or snoozed_until <= ?)"
        parts = [f"case when {awake} then 1 else 0 end", f"case when {awake} and due_at < ? then 1 else 0 end",
                 f"case when {awake} and due_at >= ? and due_at <= ? then 1 else 0 end",
                 "case when snoozed_until > ? then 1 else 0 end"]
        sums = ", ".join(f"sum({part})" for part in parts)
        sum_params = [now, now, now, now, now, soon, now]
        rows = self.db.execute(f"select {groups}, {sums} from cases{index} where {where} group by {groups}",
                               [*sum_params, *params]).fetchall() if own else []
        # (one tuple per row without a generator per row: ~5,800 rows at 1M, 50-100 ms under load before)
        out = [(r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), int(r[7]), int(r[8]), int(r[9])) for r in rows]
        out += [(*r, True) for r in self._also_rows(where, params, parts, sum_params)]
        return out

    def inbox_summary_live(self, held: LiveSummary | None = None,
                           now: datetime | None = None) -> tuple[list[tuple[Any, ...]], LiveSummary | None]:
        """:meth:`inbox_summary` of the whole open queue (no search, no waiting view) at ``now``, and the state
        to pass back next time: ``held`` brought up to date instead of counting every case again.

        The rows are exactly what :meth:`inbox_summary` returns at ``now`` (in another order). From
        ``held``, only what moved since: the changes to cases' summary columns logged by m020's
        triggers (old and new values, so a change takes its case out of its old row and puts it in
        the new one, whoever wrote it), then the clock: only cases whose deadline or snooze end falls
        between ``held``'s take and SUMMARY_HORIZON after it (plus the hour of "due soon") change SLA
        state or snooze within that time, and those are followed by id. A summary older than the
        horizon, with more than SUMMARY_CHANGES_MAX changes to apply, whose log was pruned past it,
        or of another database is taken afresh (one walk of every open case, as before).

        Why: that walk is 60-190 ms at 1M mentions / 200k cases, and it ran again after every
        reply and every minute (bench/RESULTS.md issue 17, fifth round). PostgreSQL (no log): the
        summary is taken every time, as before, and the state is None.
        """
        moment = now or utcnow()
        if self.dialect.postgres:
            return self.inbox_summary(InboxQuery(now=moment)), None
        if self._indexes is None:
            self._indexes = self.dialect.index_names(self.db)
        now_s = iso(moment)
        if (held is None or held.path != str(self.path) or self.path in (":memory:", "")
                or not held.taken_at <= now_s <= held.until):
            return self._take_live_summary(moment)
        changes = [tuple(r) for r in self.db.execute(
            f"select {_CHANGE_ROW} from case_changes where seq >= ? order by seq limit ?",
            [held.seq, SUMMARY_CHANGES_MAX + 2]).fetchall()]
        if held.seq and (not changes or changes[0] != held.last):
            return self._take_live_summary(moment)  # the log no longer holds what it applied: not its log
        changes = changes[1:] if held.seq else changes
        if len(changes) > SUMMARY_CHANGES_MAX or (changes and changes[0][0] != held.seq + 1):
            return self._take_live_summary(moment)  # too many to apply, or the log no longer reaches back
        if not changes and self._changes_seq() != held.seq:
            return self._take_live_summary(moment)  # changes it cannot read, or another database at this path
        columns = SUMMARY_CHANGE_COLUMNS
        width = len(columns)
        try:
            then = iso(held.moment)
            then_soon = iso(datetime.fromtimestamp(held.moment.timestamp() + 3600, timezone.utc))
            for change in changes:
                old, new = change[2:2 + width], change[2 + width:2 + 2 * width]
                held.add(old, then, then_soon, -1)
                held.add(new, then, then_soon, 1)
                if held.watched(new):
                    held.watch[change[1]] = tuple(new)
                else:
                    held.watch.pop(change[1], None)
            if changes:
                held.seq, held.last = changes[-1][0], changes[-1]
            if moment != held.moment:
                soon = iso(datetime.fromtimestamp(moment.timestamp() + 3600, timezone.utc))
                for values in held.watch.values():
                    held.add(values, then, then_soon, -1)
                    held.add(values, now_s, soon, 1)
                held.moment = moment
        except BaseException:
            held.until = ""  # half applied: never used again
            raise
        return held.rows() + self._summary(InboxQuery(now=moment), own=False), held

    def _changes_seq(self) -> int:
        row = self.db.execute("select seq from sqlite_sequence where name = 'case_changes'").fetchone()
        return int(row[0]) if row else 0

    def _take_live_summary(self, moment: datetime) -> tuple[list[tuple[Any, ...]], LiveSummary | None]:
        """The summary, the log's position and the cases to follow, from one snapshot of the database."""
        if "cases_summary_au" not in {r[0] for r in self.db.execute(
                "select name from sqlite_master where type = 'trigger' and name = 'cases_summary_au'")}:
            return self.inbox_summary(InboxQuery(now=moment)), None  # (no log: a database not yet migrated)
        db = self.db
        own = not db.conn.in_transaction
        # (found, or remembered, before the snapshot: inside a transaction nothing is remembered)
        self._channels_pinned = self._other_channels()
        if own:
            db.execute("begin")
        try:
            rows = self.inbox_summary(InboxQuery(now=moment))
            also = [r for r in rows if len(r) == SUMMARY_ALSO_ROW]  # taken afresh each time (they see posts)
            rows = [r for r in rows if len(r) != SUMMARY_ALSO_ROW]
            seq = self._changes_seq()
            taken_at = iso(moment)
            until = iso(moment + SUMMARY_HORIZON)
            due_until = iso(moment + SUMMARY_HORIZON + timedelta(hours=1))
            state = LiveSummary(path=str(self.path), taken_at=taken_at, until=until, due_until=due_until,
                                moment=moment, seq=seq, counts={tuple(r[:6]): list(r[6:10]) for r in rows}, watch={})
            index = self.dialect.indexed_by("idx_cases_open_facets") if "idx_cases_open_facets" in self._indexes else ""
            found = db.execute(f"select {_CHANGE_ROW} from case_changes where seq = ?", [seq]).fetchone()
            state.last = tuple(found) if found else None
            for r in db.execute(
                    f"select id, {', '.join(SUMMARY_CHANGE_COLUMNS)} from cases{index} where {OPEN_CASES_SQL} and "
                    "((due_at >= ? and due_at <= ?) or (snoozed_until > ? and snoozed_until <= ?))",
                    [taken_at, due_until, taken_at, until]).fetchall():
                state.watch[r[0]] = tuple(r[1:])
            rows += also
        finally:
            self._channels_pinned = None
            if own:
                db.execute("commit")
        return rows, state

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

    def _search_mark(self) -> Any:
        """What a remembered search result is valid for, or None when nothing may be remembered now.

        The mark is ``change_marks``' search row (m019): triggers move it on every write that can
        change a search's answer (a post, a case's handle, order, tracking number or customer, a
        customer, a handle, a shipment; :data:`~doorstep.store.migrations.SEARCH_SOURCES`), in the
        writer's own transaction on SQLite and when it commits on PostgreSQL, whichever process or
        connection writes. Writes to other tables, schemas or databases leave it still (it was
        SQLite's data_version and PostgreSQL's ``pg_current_snapshot()``, which any commit in the
        cluster moved: issue 16). It is read *before* the search runs, so a result is never older
        than its mark. Inside a transaction nothing is remembered: the transaction's own writes are
        not in the mark yet (PostgreSQL) or may be rolled back (both). A database whose triggers are
        missing (a schema copied table by table) remembers nothing either.
        """
        db = self.db
        if db.conn.in_transaction:
            return None
        if self._search_marked is None:
            self._search_marked = self._has_search_mark_triggers()
        if not self._search_marked:
            return None
        row = db.execute(SEARCH_MARK_SQL).fetchone()
        return None if row is None else (id(db), row[0])

    def _has_search_mark_triggers(self) -> bool:
        names = search_mark_trigger_names()
        if self.dialect.postgres:
            found = {r[0] for r in self.db.execute(
                "select tgname from pg_trigger t join pg_class c on c.oid = t.tgrelid "
                "where c.relnamespace = current_schema()::regnamespace and not t.tgisinternal").fetchall()}
            names.append("change_marks_bump")
        else:
            found = {r[0] for r in self.db.execute("select name from sqlite_master where type = 'trigger'").fetchall()}
        return set(names) <= found

    def _memo_get(self, mark: Any, kind: str, query: str) -> Any:
        """The result remembered for ``(kind, query)`` at ``mark`` (see :meth:`_search_mark`), or None."""
        if mark is None:
            return None
        held = self._search_memo.get((kind, query))
        return held[1] if held is not None and held[0] == mark else None

    def _memo_put(self, mark: Any, kind: str, query: str, value: Any) -> None:
        if mark is None:
            return
        self._search_memo.pop((kind, query), None)
        if len(self._search_memo) >= SEARCH_MEMO_SIZE:
            self._search_memo.pop(next(iter(self._search_memo)))
        self._search_memo[(kind, query)] = (mark, value)

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
        mark = self._search_mark()  # before the search: the result is at least as new as its mark
        held = self._memo_get(mark, "cases", typed)
        if held is not None:
            return list(held)

        def run() -> tuple[int, ...]:
            handle = typed.removeprefix("@")
            if handle and not any(c.isspace() for c in handle):
                exact = self._handle_cases(handle)
                if exact:
                    return exact
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
            found.update(dict.fromkeys(self._customers_cases(customers)))
            # One full-text query, one post past the cap: it answers search_is_capped too (a second
            # query for the same words was 10-60 ms of a search's first run at 1M posts, issue 17).
            sql, params = self._post_hits_sql(text, query)
            hits = [r[0] for r in self.db.execute(sql, [*params, SEARCH_MATCH_LIMIT + 1]).fetchall()]
            capped = len(hits) > SEARCH_MATCH_LIMIT
            self._memo_put(mark, "capped", query, capped)
            found.update((r[0], None) for r in self.db.execute(
                "select distinct case_id from mentions where case_id is not null and id in "
                f"({dialect.json_values('int')})", [json.dumps(hits[:SEARCH_MATCH_LIMIT])],
            ).fetchall())
            return tuple(found)

        found = run()
        self._memo_put(mark, "cases", typed, found)
        return list(found)

    def _handle_cases(self, handle: str) -> tuple[int, ...]:
        """The cases an exact handle means, newest first: those opened by it, those it wrote a post in, and
        those of the customer whose record holds it (their linked cases and the cases of their other handles).

        Why not the opening author alone: a customer who opened a case on Bluesky and complained again on X
        is one case, and the lead who searches the X handle is looking for that live conversation (audit of
        the inbox, finding 6). Each lookup walks an index: handles are looked up per network
        (:data:`HANDLE_CHANNELS`), as typed and lower-cased (customer handles are stored lower-cased).
        """
        dialect = self.dialect
        found: dict[int, None] = {}
        found.update((r[0], None) for r in self.db.execute(
            f"select id from cases where {dialect.nocase_equals('author_handle')}", [handle]).fetchall())
        spellings = list(dict.fromkeys([handle, handle.lower()]))
        networks = ",".join("?" * len(HANDLE_CHANNELS))
        spelled = ",".join("?" * len(spellings))
        found.update((r[0], None) for r in self.db.execute(
            f"select distinct case_id from mentions where channel in ({networks}) and author_handle in ({spelled}) "
            "and case_id is not null", [*HANDLE_CHANNELS, *spellings]).fetchall())
        customers = [r[0] for r in self.db.execute(
            f"select distinct customer_id from customer_handles where channel in ({networks}) and handle = ?",
            [*HANDLE_CHANNELS, handle.lower()]).fetchall()]
        found.update(dict.fromkeys(self._customers_cases(customers)))
        return tuple(sorted(found, reverse=True))

    def _customers_cases(self, customers: list[str]) -> list[int]:
        """The cases of these customers: linked to them, or opened by one of the handles on their record."""
        if not customers:
            return []
        dialect, ids = self.dialect, json.dumps(customers)
        linked = [r[0] for r in self.db.execute(
            f"select id from cases where customer_id in ({dialect.json_values()})", [ids]).fetchall()]
        by_handle = [r[0] for r in self.db.execute(
            "select c.id from customer_handles h join cases c on c.channel = h.channel and "
            f"c.author_handle = h.handle where h.customer_id in ({dialect.json_values()})", [ids]).fetchall()]
        return linked + by_handle

    def inbox_ids(self, query: InboxQuery | None = None) -> list[int]:
        """Every matching case's id in the queue's order (``query``'s page left out): what J / K and
        "resolve and go to the next case" walk, past the page of 50 the inbox shows (audit finding 8).
        Ids only, from the same filters and order as :meth:`inbox`."""
        q = query or InboxQuery()
        if q.sort not in INBOX_SORTS:
            raise ValueError(f"not an inbox order: {q.sort} (choose {', '.join(INBOX_SORTS)})")
        parts = [(f"select {_SORT_COLUMNS} from cases{index} where {where}", params)
                 for where, params, index in self._wheres(q, "")]
        sql = " union all ".join(sql for sql, _ in parts)
        if len(parts) > 1:
            sql = f"select * from ({sql}) as q"
        return [int(r[0]) for r in self.db.execute(
            f"{sql} order by {INBOX_SORTS[q.sort]}", [p for _, params in parts for p in params]).fetchall()]

    def _post_hits_sql(self, text: str, query: str) -> tuple[str, list[Any]]:
        """SQL (and its parameters, the cap's ``?`` last) for the ids of the newest posts whose words
        match what was typed: every word as a prefix, as ``fts_query`` asks.

        On SQLite each ASCII word of three or more characters is asked as its own term OR every
        longer term of the index that starts with it (``("parcel" OR "parcels")`` for ``"parcel"*``),
        listed from the index's vocabulary in the same statement (so from the same snapshot of the
        index). Those are exactly the terms the prefix matches, so the posts are the same, but FTS5
        walks such a query lazily, newest first, and stops at the cap, where a prefix query first
        merges the whole posting list of every matching term (15-100 ms for a frequent word at 1M
        posts, 0.5-1.5 ms this way; bench/RESULTS.md issue 17, fifth round). The vocabulary is read
        from the first term after the word itself (a word's own posting list is not walked); more
        than PREFIX_TERMS_MAX longer terms, a word under three characters or one with other
        characters (whose folding only FTS5 knows) is asked as the prefix, as before.
        PostgreSQL: the prefix query (its GIN index has no such cost).
        """
        if self.dialect.postgres:
            return self.dialect.fts_ids("mentions", MENTION_FTS_COLUMNS, key="id"), [query]
        words = _words(text)
        if not any(_as_terms(w) for w in words):
            return self.dialect.fts_ids("mentions", MENTION_FTS_COLUMNS, key="id"), [query]
        try:
            self.db.execute(f"create virtual table if not exists temp.{FTS_TERMS} using fts5vocab(main, 'mentions_fts', 'row')")
        except sqlite3.Error:  # (a connection that may not even make a temp table): the prefix, as before
            return self.dialect.fts_ids("mentions", MENTION_FTS_COLUMNS, key="id"), [query]
        parts: list[str] = []
        params: list[Any] = []
        for word in words:
            if not _as_terms(word):
                parts.append("?")
                params.append(f'"{word}"*')
                continue
            term = word.lower()
            after = term[:-1] + chr(ord(term[-1]) + 1)  # every term that starts with ``term`` sorts below this
            parts.append(
                f"(select case when count(*) = 0 then ? when count(*) <= {PREFIX_TERMS_MAX} then "
                "'(' || ? || ' OR ' || group_concat('\"' || replace(term, '\"', '\"\"') || '\"', ' OR ') || ')' "
                f"else ? end from (select term from temp.{FTS_TERMS} where term >= ? || char(1) and term < ? "
                f"limit {PREFIX_TERMS_MAX + 1}))")
            params += [f'"{term}"', f'"{term}"', f'"{term}"*', term, after]
        match = " || ' AND ' || ".join(parts)
        return (f"select rowid from mentions_fts where mentions_fts match ({match}) order by rowid desc limit ?",
                params)

    def search_is_capped(self, text: str) -> bool:
        query = self.dialect.fts_query(text)
        if not query:
            return False
        mark = self._search_mark()
        held = self._memo_get(mark, "capped", query)
        if held is not None:
            return bool(held)
        sql, params = self._post_hits_sql(text, query)
        row = self.db.execute(f"select count(*) from ({sql}) as hits", [*params, SEARCH_MATCH_LIMIT + 1]).fetchone()
        capped = bool(row[0] > SEARCH_MATCH_LIMIT)
        self._memo_put(mark, "capped", query, capped)
        return capped

    def _also_under(self, q: InboxQuery) -> list[int]:
        """The cases under ``q``'s channel by a customer's post there, though opened on another network
        (or on none), by id (:meth:`_other_channels`); none without a channel filter."""
        if not q.channel or q.channel == NO_VALUE:
            return []
        return [case_id for case_id, channel in self._other_channels() if channel == q.channel]

    def _wheres(self, q: InboxQuery, index: str) -> list[tuple[str, list[Any], str]]:
        """(where, params, index hint) of the cases of ``q``: one, or under a channel two that do not meet:
        the cases opened there (``index``: as every other filter is planned) and those under it by their
        posts (by id, :meth:`_also_under`). Why two: each is planned as it was without the other (the
        channel's own index, or a walk of the queue; a few lookups by id), where one ``or`` of the two
        made SQLite read every open case and sort them (0.5-1.9 s for X at 114k open cases)."""
        where, params = self._inbox_where(q)
        parts = [(where, params, index)]
        also = self._also_under(q)
        if also:
            where, params = self._inbox_where(q, also=also)
            parts.append((where, params, self.dialect.indexed_by(None)))
        return parts

    def _inbox_where(self, q: InboxQuery, for_count: bool = False,
                     also: list[int] | None = None) -> tuple[str, list[Any]]:
        """The where clause of ``q`` (its channel: the cases opened there; with ``also``, these cases instead,
        those under the channel by their posts: see :meth:`_wheres`)."""
        params: list[Any] = []
        if tuple(q.statuses) == OPEN_CASE_STATUSES:
            clauses = [OPEN_CASES_SQL]
        else:
            clauses = [f"status in ({','.join('?' * len(q.statuses))})"]
            params += list(q.statuses)
        for column in INBOX_FILTER_COLUMNS:
            value = getattr(q, column)
            if value == NO_VALUE:  # "nobody", "no post yet", "no courier": the cases without one
                clauses.append(f"{column} is null")
            elif value and column == "channel" and also:
                clauses.append(f"id in ({self.dialect.json_values('int')})")
                params.append(json.dumps(also))
            elif value:
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

