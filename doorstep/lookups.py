"""What one batch of mentions reads, read once per batch instead of once per mention.

Linking and scoring a post used to ask the database about its author, its order, its
shipment, the post it answers, its conversation's case and the case's most serious post,
one indexed query each: about ten per mention, most of the import's time. A batch's posts
share authors, orders and conversations, so these lookups are made for the whole batch in a
few queries (``in (...)`` lists) and remembered for the batch.

The batch's new posts are written together when it ends (:meth:`BatchPosts.flush`), several
rows per INSERT: SQLite's full-text index flushes once per statement, and one-row inserts made
that flush the largest single cost of an import.

Why this changes nothing the pipeline decides: everything here lives for one batch only, and
a batch is written in one transaction that holds the write lock, so nobody else changes the
shop, the posts or the cases meanwhile. Cases are written as before, post by post (every later
query sees them), and are also told to :meth:`BatchCases.written`; the pending posts count in
what :class:`BatchPosts` answers; so each answer is what the database would have given.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from doorstep.models import Case, Mention
from doorstep.store import OrderSummary, Store

#: What :meth:`Store.shipment_brief` gives: (order number, courier, every tracking status it has had).
ShipmentBrief = tuple[str, str, frozenset[str]]


class ShopLookups:
    """Customers, orders and shipments as :func:`doorstep.linking.link_mention` and the priority
    score ask for them (the same method names as :class:`Store`), each read at most once."""

    def __init__(self, store: Store):
        self.store = store
        self._handles: dict[tuple[str, str], str | None] = {}
        self._orders: dict[str, OrderSummary | None] = {}
        self._shipments: dict[str, ShipmentBrief | None] = {}
        self._customer_orders: dict[str, list[OrderSummary]] = {}
        self._vips: dict[str, bool] = {}

    def prefetch(self, handles: Iterable[tuple[str, str | None]], order_numbers: Iterable[str],
                 tracking_numbers: Iterable[str]) -> None:
        """Read, in a few queries, what a batch's posts will ask for: their authors' customers, the
        orders and shipments they quote, the orders of those shipments and who of them is a VIP."""
        by_channel: dict[str, set[str]] = {}
        for channel, handle in handles:
            if handle:
                by_channel.setdefault(channel, set()).add(handle)
        customers: set[str] = set()
        for channel, names in by_channel.items():
            found = self.store.customer_ids_by_handles(channel, names)
            for handle in names:
                self._handles[(channel, _handle_key(handle))] = found.get(handle)
            customers.update(found.values())
        tracking = [t for t in dict.fromkeys(tracking_numbers) if t not in self._shipments]
        briefs = self.store.shipment_briefs(tracking)
        for number in tracking:
            self._shipments[number] = briefs.get(number)
        numbers = {*order_numbers, *(brief[0] for brief in briefs.values())}
        wanted = [n for n in numbers if n not in self._orders]
        summaries = self.store.order_summaries_by_numbers(wanted)
        for number in wanted:
            self._orders[number] = summaries.get(number)
        customers.update(s.customer_id for s in summaries.values())
        wanted_vips = [c for c in customers if c not in self._vips]
        vips = self.store.vip_customer_ids(wanted_vips)
        for customer_id in wanted_vips:
            self._vips[customer_id] = customer_id in vips

    def customer_id_by_handle(self, channel: str, handle: str | None) -> str | None:
        if not handle:
            return None
        key = (channel, _handle_key(handle))
        if key not in self._handles:
            self._handles[key] = self.store.customer_id_by_handle(channel, handle)
        return self._handles[key]

    def order_summary(self, number: str) -> OrderSummary | None:
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
    """

    def __init__(self, store: Store):
        self.store = store
        #: (channel, external id) -> (thread id, case id) of stored posts (None: not stored).
        self._threads: dict[tuple[str, str], tuple[str | None, int | None] | None] = {}
        self._peaks: dict[int, Mention | None] = {}
        self._pending: list[Mention] = []
        self._pending_by_case: dict[int, list[Mention]] = {}
        self._contacts: dict[int, int] = {}

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

    def parent(self, channel: str, external_id: str) -> tuple[str | None, int | None] | None:
        """(thread id, case id) of the stored post ``external_id``, or None if it is not stored."""
        key = (channel, external_id)
        if key not in self._threads:
            stored = self.store.mention_by_external_id(channel, external_id)
            self._threads[key] = (stored.thread_id, stored.case_id) if stored else None
        return self._threads[key]

    def peak(self, case_id: int) -> Mention | None:
        """:meth:`Store.peak_mention` over the stored and the pending posts: the case's most
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
        """:meth:`Store.contact_count` with the pending posts: the case's posts that ask for something."""
        if case_id not in self._contacts:
            self._contacts[case_id] = self.store.contact_count(case_id) + sum(
                1 for m in self._pending_by_case.get(case_id, ()) if asks_for_something(m))
        return self._contacts[case_id]

    def new_case(self, case_id: int) -> None:
        """``case_id`` was just opened: it has no post yet, so its peak is the first post stored into it."""
        self._peaks[case_id] = None

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
        peak = self._peaks[case_id]
        # Strictly more serious: of equals, the earlier post (lower id) stays the peak.
        if peak is None or _seriousness(mention) > _seriousness(peak):
            self._peaks[case_id] = mention


def asks_for_something(mention: Mention) -> bool:
    """What :meth:`Store.contact_count` counts: an inbound post that is neither praise nor thanks
    (positive and no complaint); a post without labels counts."""
    labels = mention.labels
    if mention.outbound:
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
    """Cases by id and each conversation's case (what :meth:`Store.open_case_for` finds by
    thread), as stored: the pipeline reports every case it writes through :meth:`written`."""

    def __init__(self, store: Store):
        self.store = store
        self._cases: dict[int, Case | None] = {}
        #: (channel, thread id) -> id of the case open_case_for(thread) answers (None: no case).
        self._threads: dict[tuple[str, str], int | None] = {}

    def prefetch_threads(self, keys: Iterable[tuple[str, str]]) -> None:
        """Read the cases of these conversations, in one query per channel and chunk."""
        by_channel: dict[str, set[str]] = {}
        for channel, thread_id in keys:
            if channel and thread_id and (channel, thread_id) not in self._threads:
                by_channel.setdefault(channel, set()).add(thread_id)
        for channel, thread_ids in by_channel.items():
            for thread_id in thread_ids:
                self._threads[(channel, thread_id)] = None
            for case in self.store.cases_in_threads(channel, thread_ids):
                self._cases[case.id] = case  # type: ignore[index]
                key = (channel, case.thread_id or "")
                best = self._threads[key]
                if best is None or _rank(case) > _rank(self._cases[best]):  # type: ignore[arg-type]
                    self._threads[key] = case.id

    def get(self, case_id: int) -> Case | None:
        """:meth:`Store.get_case` (a copy: change it, then report it through :meth:`written`)."""
        if case_id not in self._cases:
            self._cases[case_id] = self.store.get_case(case_id)
        case = self._cases[case_id]
        return case.model_copy() if case is not None else None

    def in_thread(self, channel: str, thread_id: str | None) -> Case | None:
        """:meth:`Store.open_case_for` by thread: the conversation's open case, else its latest resolved one."""
        if not (channel and thread_id):
            return None
        key = (channel, thread_id)
        if key not in self._threads:
            found = self.store.open_case_for(channel=channel, thread_id=thread_id)
            if found is not None:
                self._cases[found.id] = found  # type: ignore[index]
            self._threads[key] = found.id if found is not None else None
        best = self._threads[key]
        return self.get(best) if best is not None else None

    def written(self, case: Case) -> None:
        """The pipeline inserted or saved ``case`` (as given, with its new version)."""
        case = as_stored(case)
        previous = self._cases.get(case.id)  # type: ignore[arg-type]
        self._cases[case.id] = case  # type: ignore[index]
        if previous is not None and (previous.channel, previous.thread_id) != (case.channel, case.thread_id):
            self._threads.pop((previous.channel or "", previous.thread_id or ""), None)
        if not (case.channel and case.thread_id):
            return
        key = (case.channel, case.thread_id)
        if key not in self._threads:
            return  # never asked: a later question goes to the database, which has this write
        best = self._threads[key]
        if best == case.id:
            if previous is not None and _rank(case) < _rank(previous):
                del self._threads[key]  # it fell behind others we have not read: ask again
        elif best is None or _rank(case) > _rank(self._cases[best]):  # type: ignore[arg-type]
            self._threads[key] = case.id


def _rank(case: Case) -> tuple[bool, int]:
    """The order of :meth:`Store.open_case_for`: open before resolved, then the newest."""
    return (case.status != "resolved", case.id or 0)


def as_stored(case: Case) -> Case:
    """A copy of ``case`` as reading it back from the store gives it: times in UTC, to the whole second."""
    update = {}
    for name, value in case.__dict__.items():
        if isinstance(value, datetime):
            stored = _stored_time(value)
            if stored != value or stored.tzinfo is not value.tzinfo:
                update[name] = stored
    return case.model_copy(update=update)


def _stored_time(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).replace(microsecond=0)
