"""What one batch of mentions reads, read once per batch instead of once per mention.

Linking and scoring a post used to ask the database about its author, its order, its
shipment, the post it answers, its conversation's case, the cases of its author it may join
and the case's most serious post, one indexed query each: about ten per mention, most of the
import's time. A batch's posts share authors, orders and conversations, so these lookups are
made for the whole batch in a few queries (``in (...)`` lists) and remembered for the batch:
the batch's reads are the same few statements whatever its size (tests/test_pipeline_batches.py).

The batch's writes are made when it ends, each row once: its new posts, several rows per
INSERT (SQLite's full-text index flushes once per statement, and one-row inserts made that
flush the largest single cost of an import); the cases it opened, inserted as they are at the
end, under the ids they were given when opened (:meth:`Store.case_ids`); the cases it changed,
one UPDATE each however many posts joined them (:meth:`BatchCases.flush`).

Why this changes nothing the pipeline decides: everything here lives for one batch only, and
a batch is written in one transaction that holds the write lock (on PostgreSQL, the advisory
locks of its threads, authors and numbers), so nobody else changes the shop, the posts or the
cases it looks at meanwhile. The cases it opens or changes are kept as the database would hold
them (:meth:`BatchCases.written`), the pending posts count in what :class:`BatchPosts` answers,
and anything that must still ask the database writes what is pending first; so each answer is
what the database would have given one post at a time (bench/pipeline_same.py compares whole
imports row for row).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from doorstep.models import OPEN_CASE_STATUSES, Case, Mention

if TYPE_CHECKING:
    from doorstep.linking import Evidence
from doorstep.store import OrderSummary, Store, iso, parse_time
from doorstep.store.cases import _CASE_TIMES, CASE_VIEW_COLUMNS

#: What :meth:`Store.shipment_brief` gives: (order number, courier, every tracking status it has had).
ShipmentBrief = tuple[str, str, frozenset[str]]


class ShopLookups:
    """Customers, orders and shipments as :func:`doorstep.linking.link_mention` and the priority
    score ask for them (the same method names as :class:`Store`), each read at most once.

    ``kept``: the lookups of an earlier batch whose answers still hold (nothing has been written to
    the database since it read them, see :meth:`Store.change_mark`); what they read is not read
    again. An import's batches ask about the same customers and orders over and over.
    """

    def __init__(self, store: Store, kept: ShopLookups | None = None):
        self.store = store
        self._handles: dict[tuple[str, str], str | None] = kept._handles if kept else {}
        self._orders: dict[str, OrderSummary | None] = kept._orders if kept else {}
        self._shipments: dict[str, ShipmentBrief | None] = kept._shipments if kept else {}
        self._customer_orders: dict[str, list[OrderSummary]] = kept._customer_orders if kept else {}
        self._vips: dict[str, bool] = kept._vips if kept else {}
        #: The handles and order numbers this batch asked about (:meth:`known`), kept or read.
        self._asked_handles: set[tuple[str, str]] = set()
        self._asked_orders: set[str] = set()

    def size(self) -> int:
        """How many answers are kept (a long-lived pipeline starts afresh above a bound)."""
        return len(self._handles) + len(self._orders) + len(self._shipments) + len(self._customer_orders)

    def prefetch(self, handles: Iterable[tuple[str, str | None]], order_numbers: Iterable[str],
                 tracking_numbers: Iterable[str]) -> None:
        """Read, in a few queries, what a batch's posts will ask for: their authors' customers, the
        orders and shipments they quote, the orders of those shipments and who of them is a VIP
        (what is known already is not read again)."""
        by_channel: dict[str, set[str]] = {}
        for channel, handle in handles:
            if handle:
                by_channel.setdefault(channel, set()).add(handle)
        customers: set[str] = set()
        for channel, names in by_channel.items():
            keys = {handle: (channel, _handle_key(handle)) for handle in names}
            self._asked_handles.update(keys.values())
            unknown = [handle for handle, key in keys.items() if key not in self._handles]
            found = self.store.customer_ids_by_handles(channel, unknown) if unknown else {}
            for handle in unknown:
                self._handles[keys[handle]] = found.get(handle)
            customers.update(c for c in (self._handles[key] for key in keys.values()) if c)
        given = list(dict.fromkeys(tracking_numbers))
        tracking = [t for t in given if t not in self._shipments]
        briefs = self.store.shipment_briefs(tracking)
        for number in tracking:
            self._shipments[number] = briefs.get(number)
        numbers = {*order_numbers, *(brief[0] for brief in map(self._shipments.get, given) if brief)}
        self._asked_orders.update(numbers)
        wanted = [n for n in numbers if n not in self._orders]
        summaries = self.store.order_summaries_by_numbers(wanted)
        for number in wanted:
            self._orders[number] = summaries.get(number)
        customers.update(s.customer_id for s in map(self._orders.get, numbers) if s is not None)
        wanted_vips = [c for c in customers if c not in self._vips]
        vips = self.store.vip_customer_ids(wanted_vips)
        for customer_id in wanted_vips:
            self._vips[customer_id] = customer_id in vips

    def prefetch_recent_orders(self, customer_ids: Iterable[str]) -> None:
        """Read these customers' recent orders (a post that quotes no known number is linked to one
        of them), and with them their summaries and shipments, which the cases' priorities look at."""
        given = [c for c in dict.fromkeys(customer_ids) if c]
        wanted = [c for c in given if c not in self._customer_orders]
        recent = self.store.order_summaries_for_customers(wanted)
        self._customer_orders.update(recent)
        for summaries in recent.values():
            for summary in summaries:
                self._orders.setdefault(summary.number, summary)
        asked = [s for c in given for s in self._customer_orders[c]]
        self._asked_orders.update(s.number for s in asked)
        self.prefetch_numbers((), (s.tracking_number for s in asked if s.tracking_number))

    def quotes_known_order(self, evidence: Evidence) -> bool:
        """Whether a post with these numbers is linked by one of them (see linking.link_mention)."""
        for number in evidence.tracking_numbers:
            shipment = self.shipment_brief(number)
            if shipment and self.order_summary(shipment[0]) is not None:
                return True
        return any(self.order_summary(number) is not None for number in evidence.order_numbers)

    def prefetch_numbers(self, order_numbers: Iterable[str], tracking_numbers: Iterable[str]) -> None:
        """Read the orders and shipments not read yet (the numbers the batch's known cases are about)."""
        tracking = [t for t in dict.fromkeys(tracking_numbers) if t and t not in self._shipments]
        briefs = self.store.shipment_briefs(tracking)
        for number in tracking:
            self._shipments[number] = briefs.get(number)
        given = [n for n in dict.fromkeys(order_numbers) if n]
        self._asked_orders.update(given)
        wanted = [n for n in given if n not in self._orders]
        summaries = self.store.order_summaries_by_numbers(wanted)
        for number in wanted:
            self._orders[number] = summaries.get(number)

    def known(self) -> tuple[set[str], set[str]]:
        """(customers, order numbers) this batch has asked about and found: its authors and the
        orders quoted (with those orders' customers)."""
        customers = {c for c in map(self._handles.get, self._asked_handles) if c}
        orders = {n for n in self._asked_orders if self._orders.get(n) is not None}
        customers.update(self._orders[n].customer_id for n in orders)  # type: ignore[union-attr]
        return customers, orders

    def customer_id_by_handle(self, channel: str, handle: str | None) -> str | None:
        if not handle:
            return None
        key = (channel, _handle_key(handle))
        self._asked_handles.add(key)
        if key not in self._handles:
            self._handles[key] = self.store.customer_id_by_handle(channel, handle)
        return self._handles[key]

    def order_summary(self, number: str) -> OrderSummary | None:
        self._asked_orders.add(number)
        if number not in self._orders:
            self._orders[number] = self.store.order_summary(number)
        return self._orders[number]

    def order_summaries(self, *, customer_id: str) -> list[OrderSummary]:
        """A customer's recent orders (what :meth:`Store.order_summaries` gives for a customer)."""
        if customer_id not in self._customer_orders:
            self._customer_orders[customer_id] = self.store.order_summaries(customer_id=customer_id)
        return self._customer_orders[customer_id]

    def shipment_brief(self, tracking_number: str) -> ShipmentBrief | None:
        if tracking_number not in self._shipments:
            self._shipments[tracking_number] = self.store.shipment_brief(tracking_number)
        return self._shipments[tracking_number]

    def customer_is_vip(self, customer_id: str) -> bool:
        if customer_id not in self._vips:
            self._vips[customer_id] = self.store.customer_is_vip(customer_id)
        return self._vips[customer_id]


def _handle_key(handle: str) -> str:
    return handle.lower().lstrip("@")


class BatchPosts:
    """The batch's new posts, written together when the batch ends (:meth:`flush`), with what
    the pipeline asks of posts meanwhile: the post a reply answers and each case's most
    serious post, both counting the posts not yet written.

    Anything else that reads posts from the database during a batch must :meth:`flush` first.

    ``kept``: an earlier batch's, flushed, whose answers still hold (nothing has been written to the
    database since, see :meth:`Store.change_mark`): its answers are the store's, so they are not
    read again (the posts a reply answers, the peaks and contact counts of the cases it touched).
    """

    def __init__(self, store: Store, kept: BatchPosts | None = None):
        self.store = store
        assert kept is None or not kept._pending
        #: (channel, external id) -> (thread id, case id) of stored posts (None: not stored).
        self._threads: dict[tuple[str, str], tuple[str | None, int | None] | None] = kept._threads if kept else {}
        self._peaks: dict[int, Mention | None] = kept._peaks if kept else {}
        self._pending: list[Mention] = []
        self._pending_by_case: dict[int, list[Mention]] = {}
        self._contacts: dict[int, int] = kept._contacts if kept else {}

    def size(self) -> int:
        """How many answers are kept (a long-lived pipeline starts afresh above a bound)."""
        return len(self._threads) + len(self._peaks) + len(self._contacts)

    def prefetch_parents(self, mentions: Iterable[Mention]) -> None:
        """Read the stored posts these mentions reply to, in one query per channel and chunk."""
        by_channel: dict[str, set[str]] = {}
        for mention in mentions:
            if mention.in_reply_to and (mention.channel, mention.in_reply_to) not in self._threads:
                by_channel.setdefault(mention.channel, set()).add(mention.in_reply_to)
        for channel, external_ids in by_channel.items():
            found = self.store.mention_threads(channel, external_ids)
            for external_id in external_ids:
                self._threads[(channel, external_id)] = found.get(external_id)

    def prefetch_cases(self, case_ids: Iterable[int]) -> None:
        """Read the most serious post and the contact count of these cases, one query each per chunk."""
        wanted = [i for i in dict.fromkeys(case_ids) if i not in self._peaks or i not in self._contacts]
        if not wanted:
            return
        peaks, contacts = self.store.peak_mentions(wanted), self.store.contact_counts(wanted)
        for case_id in wanted:
            if case_id not in self._peaks:
                self._peaks[case_id] = peaks.get(case_id)
                for mention in self._pending_by_case.get(case_id, ()):
                    self._fold_peak(case_id, mention)
            if case_id not in self._contacts:
                self._contacts[case_id] = contacts[case_id] + sum(
                    1 for m in self._pending_by_case.get(case_id, ()) if asks_for_something(m))

    def parent(self, channel: str, external_id: str) -> tuple[str | None, int | None] | None:
        """(thread id, case id) of the stored post ``external_id``, or None if it is not stored."""
        key = (channel, external_id)
        if key not in self._threads:
            stored = self.store.mention_by_external_id(channel, external_id)
            self._threads[key] = (stored.thread_id, stored.case_id) if stored else None
        return self._threads[key]

    def peak(self, case_id: int) -> Mention | None:
        """:meth:`Store.peak_mention` over the stored and the pending posts: the case's customer's most
        serious inbound post (complaint first, then urgency, the earliest of equals)."""
        if case_id not in self._peaks:
            self._peaks[case_id] = self.store.peak_mention(case_id)
            for mention in self._pending_by_case.get(case_id, ()):
                self._fold_peak(case_id, mention)
        return self._peaks[case_id]

    def case_texts(self, case_id: int) -> list[str]:
        """:meth:`Store.case_post_texts` with the pending posts (those last, whatever their time)."""
        pending = [m.text for m in self._pending_by_case.get(case_id, ())]
        return self.store.case_post_texts(case_id) + pending

    def contacts(self, case_id: int) -> int:
        """:meth:`Store.contact_count` with the pending posts: the customer's posts that ask for something."""
        if case_id not in self._contacts:
            self._contacts[case_id] = self.store.contact_count(case_id) + sum(
                1 for m in self._pending_by_case.get(case_id, ()) if asks_for_something(m))
        return self._contacts[case_id]

    def new_case(self, case_id: int) -> None:
        """``case_id`` was just opened: it has no post yet, so its peak is the first post stored into it
        and its contacts are those of its posts to come."""
        self._peaks[case_id] = None
        self._contacts[case_id] = 0

    def add(self, mention: Mention) -> None:
        """Keep ``mention`` (with its case) for :meth:`flush`: later replies and peaks see it now."""
        self._pending.append(mention)
        self._threads[(mention.channel, mention.external_id)] = (mention.thread_id, mention.case_id)
        case_id = mention.case_id
        if mention.outbound or case_id is None:
            return
        self._pending_by_case.setdefault(case_id, []).append(mention)
        if case_id in self._peaks:
            self._fold_peak(case_id, mention)
        if case_id in self._contacts and asks_for_something(mention):
            self._contacts[case_id] += 1

    def flush(self) -> list[int]:
        """Write the pending posts (oldest handled first, as one at a time would) and set their ids."""
        pending, self._pending, self._pending_by_case = self._pending, [], {}
        ids = self.store.insert_mentions(pending)
        for mention, mention_id in zip(pending, ids):
            mention.id = mention_id
        return ids

    def _fold_peak(self, case_id: int, mention: Mention) -> None:
        # As Store.peak_mention: a stranger's post in the customer's thread is never the case's peak.
        if mention.by_customer is False:
            return
        peak = self._peaks[case_id]
        # Strictly more serious: of equals, the earlier post (lower id) stays the peak.
        if peak is None or _seriousness(mention) > _seriousness(peak):
            self._peaks[case_id] = mention


def asks_for_something(mention: Mention) -> bool:
    """What :meth:`Store.contact_count` counts: an inbound post of the case's customer (not a
    stranger's in their thread, see ``Mention.by_customer``) that is neither praise nor thanks
    (positive and no complaint); a post without labels counts."""
    labels = mention.labels
    if mention.outbound or mention.by_customer is False:
        return False
    if labels is None:
        return True
    return labels.intent != "praise" and not (labels.sentiment == "positive" and not labels.complaint)


def _seriousness(mention: Mention) -> tuple[int, float]:
    """The order of :meth:`Store.peak_mention` (complaint desc, urgency desc; posts without labels,
    whose columns are NULL, last)."""
    labels = mention.labels
    if labels is None:
        return (-1, float("-inf"))
    return (int(labels.complaint), labels.urgency)


class BatchCases:
    """Cases by id, each conversation's cases (what :meth:`Store.cases_in_threads` finds) and
    the cases a post of an author may join (what :meth:`Store.author_cases` gives), as the pipeline
    leaves them: it reports every case it writes through :meth:`written` or :meth:`save`.

    Changes to existing cases (:meth:`save`) are kept and written once per case when the batch
    ends (:meth:`flush`): a case that three posts of the batch join is updated once, not three
    times. Anything that reads cases from the database during a batch must :meth:`flush` first.
    """

    def __init__(self, store: Store, kept: BatchCases | None = None):
        self.store = store
        assert kept is None or not (kept._new or kept._stored)
        self._cases: dict[int, Case | None] = kept._cases if kept else {}
        #: (channel, thread id) -> the ids of every case of that conversation (open or resolved; empty:
        #: none). All of them, not only the newest open one: a conversation may hold
        #: its customer's case and the case of someone who answered in it after it was resolved, and
        #: each one's posts go to their own (see :meth:`thread_cases`).
        self._threads: dict[tuple[str, str], set[int]] = kept._threads if kept else {}
        #: What author_cases filters, sorts and chooses on, for every case read or written so far.
        self._views: dict[int, CaseView] = kept._views if kept else {}
        #: Cases inserted or changed -> when last (a count of writes); under which author keys they were seen.
        self._written: dict[int, int] = kept._written if kept else {}
        self._written_by_key: dict[tuple[str, ...], set[int]] = kept._written_by_key if kept else {}
        #: Writes so far, and how many of them the database holds (made before the last flush).
        self._writes: int = kept._writes if kept else 0
        self._flushed: int = kept._flushed if kept else 0
        #: Author key -> the store's first cases for it (see _Keyed).
        self._keyed: dict[tuple[str, ...], _Keyed] = kept._keyed if kept else {}
        #: The resolved_since (stored form) the batch's author cases were read with.
        self._since: str | None = None
        #: Cases changed and not yet written -> the case as the database holds it.
        self._stored: dict[int, Case] = {}
        #: Cases opened and not yet inserted, and where their ids come from.
        self._new: set[int] = set()
        self._ids: Iterator[int] | None = None
        self._nulls_first = store.dialect.postgres  # where "order by ... desc" puts NULL
        #: The ids of the cases of this batch's conversations (see read).
        self._read: set[int] = set()

    def size(self) -> int:
        """How many cases and conversations are kept (a long-lived pipeline starts afresh above a bound)."""
        return len(self._views) + len(self._threads)

    def prefetch_threads(self, keys: Iterable[tuple[str, str]]) -> None:
        """Read the cases of these conversations, in one query per channel and chunk."""
        by_channel: dict[str, set[str]] = {}
        for channel, thread_id in keys:
            if channel and thread_id:
                if (channel, thread_id) not in self._threads:
                    by_channel.setdefault(channel, set()).add(thread_id)
                else:  # known from an earlier batch (kept)
                    self._read.update(self._threads[(channel, thread_id)])
        for channel, thread_ids in by_channel.items():
            for thread_id in thread_ids:
                self._threads[(channel, thread_id)] = set()
            for case in self.store.cases_in_threads(channel, thread_ids):
                self._remember(case)
                self._read.add(case.id)  # type: ignore[arg-type]
                self._threads[(channel, case.thread_id or "")].add(case.id)  # type: ignore[arg-type]

    def prefetch_authors(self, *, handles: Iterable[tuple[str, str]], customer_ids: Iterable[str],
                         order_numbers: Iterable[str], resolved_since: datetime) -> None:
        """Read the cases the batch's posts may join (:meth:`author_cases`), a few queries for the
        batch: each author's (by handle and by customer) and each quoted order's first cases."""
        self._since = since = iso(resolved_since)
        by_channel: dict[str, set[str]] = {}
        for channel, handle in handles:
            if channel and handle:
                by_channel.setdefault(channel, set()).add(handle)
        # Keys an earlier batch read (kept, see Pipeline._kept_lookups) whose first cases still
        # hold what author_cases needs are not read again, unless what it would choose among has
        # grown (more than PER_KEY cases read, or written since): read again, it is PER_KEY cases.
        keyed, holds, written = self._keyed, self._holds, self._written_by_key

        def kept(key: tuple[str, ...]) -> bool:
            entry = keyed.get(key)
            return (entry is not None and len(entry.ids) <= PER_KEY and len(written.get(key, ())) <= PER_KEY
                    and holds(entry, since))

        for channel, names in by_channel.items():
            self._load("author_handle", {n for n in names if not kept(("author_handle", channel, n))},
                       since, PER_KEY, channel)
        self._load("customer_id", {v for v in filter(None, customer_ids) if not kept(("customer_id", v))},
                   since, PER_KEY)
        self._load("order_number", {v for v in filter(None, order_numbers) if not kept(("order_number", v))},
                   since, PER_KEY)

    def read(self) -> list[Case]:
        """The cases of the batch's conversations (:meth:`prefetch_threads`): those it read, and
        each conversation's case kept from an earlier batch."""
        return [c for c in (self._cases[i] for i in sorted(self._read)) if c is not None]

    def get(self, case_id: int) -> Case | None:
        """:meth:`Store.get_case` (a copy: change it, then report it through :meth:`written`)."""
        if case_id not in self._cases:
            self._cases[case_id] = self.store.get_case(case_id)
        case = self._cases[case_id]
        return case.model_copy() if case is not None else None

    def thread_cases(self, channel: str, thread_id: str | None) -> list[Case]:
        """Every case of the conversation (copies, see :meth:`get`), open before resolved, then the
        newest (:func:`_rank`). The first is the conversation's case; the pipeline looks further for
        the case of the post's own author (doorstep/pipeline.py)."""
        if not (channel and thread_id):
            return []
        key = (channel, thread_id)
        if key not in self._threads:
            self.flush()  # the database must hold what the batch changed before it is asked
            found = self.store.cases_in_threads(channel, [thread_id])
            for case in found:
                self._remember(case)
            self._threads[key] = {c.id for c in found}  # type: ignore[misc]
        ranked = sorted((c for c in map(self._cases.get, self._threads[key]) if c is not None), key=_rank, reverse=True)
        return [c.model_copy() for c in ranked]

    def author_cases(self, *, channel: str, author_handle: str | None, customer_id: str | None,
                     order_number: str | None, resolved_since: datetime, limit: int = 50) -> list[CaseView]:
        """What :meth:`Store.author_cases` gives with the batch's changes, as :class:`CaseView`s
        (enough for :func:`doorstep.cases.choose_case`; :meth:`get` the one chosen).

        Exact, not a guess: every case that query could give is either one the batch wrote (kept
        by key in memory) or one the store gave for one of the post's keys when the batch began,
        unchanged since; a key whose first cases are not known to hold the ``limit`` first ones
        still (too many of them changed or fell out of the window) is read again."""
        keys: list[tuple[str, ...]] = []
        if customer_id:
            keys.append(("customer_id", customer_id))
        if author_handle:
            keys.append(("author_handle", channel, author_handle))
        if order_number:
            keys.append(("order_number", order_number))
        if not keys:
            return []
        since = iso(resolved_since)
        assert since is not None
        pool: set[int] = set()
        for key in keys:
            pool.update(self._first_cases(key, since, limit))
            # Cases written since the key was read (those written before are in what it read, in order).
            read_at, written = self._keyed[key].writes, self._written
            pool.update(i for i in self._written_by_key.get(key, ()) if written[i] > read_at)
        views = self._views
        found = []
        for case_id in pool:
            view = views[case_id]
            if view.merged_into is None and view.joinable(since) and (
                    (customer_id and view.customer_id == customer_id)
                    or (author_handle and view.author_handle == author_handle and view.channel == channel)
                    or (order_number and view.order_number == order_number)):
                found.append(view)
        nulls_first = self._nulls_first
        found.sort(key=lambda v: ((v.last_text is None) == nulls_first, v.last_text or "", v.id), reverse=True)
        return found[:limit]

    def _first_cases(self, key: tuple[str, ...], since: str, limit: int) -> list[int]:
        """The ids of the key's cases read from the store that still hold its ``limit`` first ones
        (see :meth:`author_cases`), reading the key (again) when they may not."""
        entry = self._keyed.get(key)
        if self._holds(entry, since, limit):
            return entry.ids  # type: ignore[union-attr]
        per_key = max(PER_KEY, 2 * len(entry.ids) if entry is not None else 0, 2 * limit)
        column, *rest = key
        if column == "author_handle":
            self._load(column, {rest[1]}, min(since, self._since or since), per_key, rest[0])
        else:
            self._load(column, {rest[0]}, min(since, self._since or since), per_key)
        return self._keyed[key].ids

    def _holds(self, entry: _Keyed | None, since: str, limit: int = 50) -> bool:
        """Whether ``entry`` (a key's first cases, read with resolved_since ``entry.since`` when the
        database held the first ``entry.writes`` writes) still holds the key's ``limit`` first cases
        for ``since``, with the cases written since: complete, or ``limit`` of its cases unchanged
        since it was read still qualify (cases it did not read rank below every one it read, and
        unchanged ones keep their order; changed ones are known as written)."""
        if entry is None or since < entry.since:
            return False
        if entry.complete:
            return True
        unchanged, written, views, read_at = 0, self._written, self._views, entry.writes
        for i in entry.ids:
            if written.get(i, 0) <= read_at and views[i].joinable(since):
                unchanged += 1
                if unchanged >= limit:
                    return True
        return False

    def _load(self, column: str, values: set[str], since: str | None, per_key: int, channel: str | None = None) -> None:
        if not values or since is None:
            return
        found: dict[str, list[tuple[int, int]]] = {v: [] for v in values}
        at = CASE_VIEW_COLUMNS.index(column)
        views = self._views
        for row in self.store.author_case_views(column, values, since, per_key, channel):
            case_id = row[0]
            found.setdefault(row[at], []).append((row[-1], case_id))
            if case_id not in views:  # else known already: as read before, or as the batch wrote it
                views[case_id] = CaseView.from_row(row)
        for value, ranked in found.items():
            key = (column, channel, value) if column == "author_handle" else (column, value)
            ranked.sort()
            self._keyed[key] = _Keyed([i for _, i in ranked], len(ranked) < per_key, since, self._flushed)  # type: ignore[arg-type]
            # What was written under the key before it was read is in what it read.
            mine = self._written_by_key.get(key)
            if mine:
                self._written_by_key[key] = {i for i in mine if self._written[i] > self._flushed}

    def _remember(self, case: Case) -> None:
        """A case read from the store (not changed in this batch)."""
        self._cases[case.id] = case  # type: ignore[index]
        self._views[case.id] = CaseView.from_case(case)  # type: ignore[index]

    def open(self, case: Case) -> int:
        """:meth:`Store.insert_case`, kept for :meth:`flush` (the id is the one it would get)."""
        if self._ids is None:
            self._ids = self.store.case_ids()
        case.id = next(self._ids)
        self._new.add(case.id)
        self.written(case)
        return case.id

    def save(self, case: Case, before: Case) -> None:
        """:meth:`Store.save_case` (``case`` changed from ``before``, its version bumped), kept for
        :meth:`flush`: the case is written once, however many posts of the batch change it."""
        assert case.id is not None
        if case.id not in self._new:
            self._stored.setdefault(case.id, before)
        self.written(case.model_copy(update={"version": case.version + 1}))

    def flush(self) -> None:
        """Write the cases opened or changed since the last flush, each once: a new case as it is
        now, a changed one's columns that differ from its stored row, and the versions saves bumped."""
        new, self._new = self._new, set()
        self.store.insert_cases([self._cases[i] for i in sorted(new)])  # type: ignore[misc]
        if self._stored:
            stored, self._stored = self._stored, {}
            self.store.save_cases([(self._cases[i], stored[i]) for i in sorted(stored)])  # type: ignore[misc]
        self._flushed = self._writes

    def written(self, case: Case) -> None:
        """The pipeline inserted or saved ``case`` (as given, with its new version)."""
        case = as_stored(case)
        previous = self._cases.get(case.id)  # type: ignore[arg-type]
        self._cases[case.id] = case  # type: ignore[index]
        self._views[case.id] = view = CaseView.from_case(case)  # type: ignore[index]
        self._writes += 1
        self._written[case.id] = self._writes  # type: ignore[index]
        for key in view.keys():
            self._written_by_key.setdefault(key, set()).add(case.id)  # type: ignore[arg-type]
        if previous is not None and (previous.channel, previous.thread_id) != (case.channel, case.thread_id):
            self._threads.pop((previous.channel or "", previous.thread_id or ""), None)
        if not (case.channel and case.thread_id):
            return
        # A conversation asked about knows all its cases (kept as written): one more, or the same one
        # changed (thread_cases ranks them as they are now). One never asked about is read when asked
        # (flushed first).
        known = self._threads.get((case.channel, case.thread_id))
        if known is not None:
            known.add(case.id)  # type: ignore[arg-type]


#: How many of each author's (and order's) cases a batch reads at first: Store.author_cases gives
#: at most 50, and the rest leaves room for the batch's own changes before a key is read again.
PER_KEY = 100


@dataclass
class _Keyed:
    """The first ``per_key`` cases of one author key, as the store ordered them (newest activity
    first), read with resolved_since ``since``; ``complete`` when there were no more."""

    ids: list[int]
    complete: bool
    since: str
    #: How many of BatchCases' writes the database held when it was read (those after changed cases).
    writes: int


class CaseView:
    """A case as :meth:`Store.author_cases` filters and sorts it and :func:`doorstep.cases.choose_case`
    looks at it: the same attribute names as :class:`Case`, without building one per candidate."""

    __slots__ = ("id", "status", "stored_status", "brand", "intent", "channel", "author_handle", "customer_id",
                 "order_number", "tracking_number", "link_method", "opened_at", "last_activity_at", "resolved_at",
                 "merged_into", "last_text", "resolved_text")

    id: int
    status: str
    stored_status: str | None
    brand: str | None
    intent: str | None
    channel: str | None
    author_handle: str | None
    customer_id: str | None
    order_number: str | None
    tracking_number: str | None
    link_method: str
    opened_at: datetime | None
    last_activity_at: datetime | None
    resolved_at: datetime | None
    merged_into: int | None
    last_text: str | None
    resolved_text: str | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> CaseView:
        """From the store's CASE_VIEW_COLUMNS, as reading the Case would give it (NULL columns take the model's defaults)."""
        view = cls()
        (view.id, status, view.brand, view.intent, view.channel, view.author_handle, view.customer_id,
         view.order_number, view.tracking_number, link_method, opened, view.last_text, view.resolved_text,
         view.merged_into) = row[:14]
        view.stored_status, view.status, view.link_method = status, status or "new", link_method or "none"
        # parse_time, inlined: a batch reads thousands of these rows.
        view.opened_at = _fromiso(opened) if opened else None
        view.last_activity_at = _fromiso(view.last_text) if view.last_text else None
        view.resolved_at = _fromiso(view.resolved_text) if view.resolved_text else None
        return view

    @classmethod
    def from_case(cls, case: Case) -> CaseView:
        view = cls()
        view.id = case.id  # type: ignore[assignment]
        view.stored_status = view.status = case.status
        for name in ("brand", "intent", "channel", "author_handle", "customer_id", "order_number", "tracking_number",
                     "link_method", "opened_at", "last_activity_at", "resolved_at", "merged_into"):
            setattr(view, name, getattr(case, name))
        view.last_text, view.resolved_text = iso(case.last_activity_at), iso(case.resolved_at)
        return view

    def joinable(self, since: str) -> bool:
        """Store.author_cases' condition: open, or resolved since ``since`` (stored form)."""
        status = self.stored_status
        if status in _OPEN:
            return True
        if status != "resolved":
            return False
        when = self.resolved_text if self.resolved_text is not None else self.last_text
        return when is not None and when >= since

    def keys(self) -> list[tuple[str, ...]]:
        """The author keys this case answers to (see BatchCases.author_cases)."""
        keys: list[tuple[str, ...]] = []
        if self.customer_id:
            keys.append(("customer_id", self.customer_id))
        if self.author_handle and self.channel:
            keys.append(("author_handle", self.channel, self.author_handle))
        if self.order_number:
            keys.append(("order_number", self.order_number))
        return keys


_OPEN = frozenset(OPEN_CASE_STATUSES)
_fromiso = datetime.fromisoformat


def _rank(case: Case) -> tuple[bool, int]:
    """The order a conversation's cases are chosen in: open before resolved, then the newest."""
    return (case.status != "resolved", case.id or 0)


def as_stored(case: Case) -> Case:
    """``case`` as reading it back from the store gives it: times in UTC, to the whole second (a
    copy if that changes anything; ``case`` itself otherwise)."""
    update = {}
    fields = case.__dict__
    for name in _CASE_TIMES:
        value = fields[name]
        if value is not None:
            stored = _stored_time(value)
            if stored != value or stored.tzinfo is not value.tzinfo:
                update[name] = stored
    return case.model_copy(update=update) if update else case


def _stored_time(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).replace(microsecond=0)
