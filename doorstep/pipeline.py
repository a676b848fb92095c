"""A mention's path: ingest -> classify -> link -> case -> priority and SLA.

Every listener and every import goes through :class:`Pipeline.ingest`, so a post
that arrives twice (two queries, stream and poll, a re-imported file, a restart in
the middle of a page) is stored once: the store's unique key (channel, external_id)
is the single source of truth, and one batch is one transaction.

Concurrency: the classifier, the slow part, runs *before* the batch's write transaction,
which then takes SQLite's write lock at once (``Store.transaction`` begins IMMEDIATE) and
checks again which posts are new, so a post that another writer stored meanwhile is a
duplicate, not a unique-key error.

Speed: what a batch's posts read (their authors, orders, shipments, the posts they answer,
their conversations' cases, the cases of their authors they may join, the contact attempts
they may answer) is read for the whole batch at once under the write lock and remembered for
the batch, and what it writes (posts, new and changed cases, audit events) is written together
at its end, each row once (doorstep/lookups.py); each post still sees exactly what it saw one
query at a time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from doorstep import sla
from doorstep.classifying import Classifier, classify_mentions
from doorstep.cases import (PriorityInputs, absorb, looks_promotional, by_customer, choose_case, is_customers_post, may_reopen, new_case,
                            quoted_order, score_priority)
from doorstep.config import Config
from doorstep.contact_history import AnswerWatch
from doorstep.linking import Evidence, find_numbers, link_mention
from doorstep.lookups import BatchCases, BatchPosts, ShopLookups
from doorstep.models import MAX_FUTURE_SKEW, Case, Labels, Link, Mention, utcnow
from doorstep.store import Store, iso


#: Answers about the shop and posts a pipeline keeps from batch to batch at most (then it reads
#: afresh): a listener's pipeline lives for days.
KEPT_LIMIT = 500_000


@dataclass
class IngestResult:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    cases_opened: int = 0
    cases_updated: int = 0
    mention_ids: list[int] = field(default_factory=list)
    #: Seconds spent in each stage, for the benchmark's split.
    timings: dict[str, float] = field(default_factory=lambda: {"classify": 0.0, "link": 0.0, "store": 0.0})

    def add(self, other: IngestResult) -> None:
        for name in ("received", "stored", "duplicates", "cases_opened", "cases_updated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.mention_ids += other.mention_ids
        for key, value in other.timings.items():
            self.timings[key] = self.timings.get(key, 0.0) + value


def match_names(text: str, author_handle: str | None, config: Config,
                names: list[tuple[str, re.Pattern[str]]] | None = None) -> list[str]:
    """Brands and couriers a post names by handle or keyword (case-insensitive, whole words); ``names``
    is :func:`name_words` of ``config`` when the caller keeps it."""
    return [name for name, pattern in (names if names is not None else name_words(config)) if pattern.search(text)]


def name_words(config: Config) -> list[tuple[str, re.Pattern[str]]]:
    """Each brand and courier with one pattern for the ``@handles`` and keywords that name it.

    Whole words and whole handles only: "ups" inside "upset", "cups" or "startups" named UPS on 8 of 21
    real care tweets (real-posts audit), each offering an escalation to UPS; "@americanairlnes" named
    @AmericanAir. A handle is not part of an address ("care@upshelp.example") or of a longer handle, and may
    carry its server ("@LarkspurHelp@mastodon.social"); a keyword may begin a hashtag ("#LarkspurHome")."""
    out = []
    for entity in [*config.brands, *config.couriers]:
        handles = [f"@{re.escape(h)}" for h in entity.handles.values() if h]
        keywords = [re.escape(k) for k in entity.keywords if k]
        # A hashtag may run on past the keyword: "#LarkspurHome" names Larkspur.
        alternatives = [f"(?<![\\w@.]){h}(?!\\w)" for h in handles] + \
            [f"(?<!\\w){k}(?!\\w)|(?<=#){k}" for k in keywords]
        if alternatives:
            out.append((entity.name, re.compile("|".join(alternatives), re.IGNORECASE)))
    return out


class Pipeline:
    """Turns raw mentions into classified, linked, prioritised cases."""

    def __init__(self, store: Store, config: Config, classifier: Classifier | None = None, batch_size: int = 500):
        self.store = store
        self.config = config
        self.classifier = classifier
        self.batch_size = batch_size
        self._brands = {b.name for b in config.brands}
        self._couriers = {c.name for c in config.couriers}
        self._names = name_words(config)
        #: The last batch's shop lookups, posts and cases, the store's change mark after its writes and
        #: the id of the last post it wrote (see _kept_lookups).
        self._kept: tuple[ShopLookups, BatchPosts, BatchCases, Any, int] | None = None

    def ingest(self, mentions: Iterable[Mention],
               numbers: Mapping[tuple[str, str], Evidence] | None = None) -> IngestResult:
        """Store ``mentions`` (new ones only), batch by batch. ``numbers`` may give, by (channel,
        external_id), what :func:`find_numbers` finds in a post's text with this pipeline's config,
        worked out elsewhere (an import's classifier process); posts it does not name are read here."""
        total = IngestResult()
        batch: list[Mention] = []
        for mention in mentions:
            batch.append(mention)
            if len(batch) >= self.batch_size:
                total.add(self._ingest_batch(batch, numbers or {}))
                batch = []
        if batch:
            total.add(self._ingest_batch(batch, numbers or {}))
        return total

    # ------------------------------------------------------------------ batch
    def _ingest_batch(self, batch: list[Mention], numbers: Mapping[tuple[str, str], Evidence]) -> IngestResult:
        result = IngestResult(received=len(batch))
        t0 = time.perf_counter()
        unique: dict[tuple[str, str], Mention] = {}
        for mention in batch:
            unique.setdefault((mention.channel, mention.external_id), mention)
        existing = self.store.existing_mention_ids(unique)
        fresh = sorted((m for k, m in unique.items() if k not in existing), key=lambda m: m.created_at)
        # A network whose clock runs fast stamps posts up to MAX_FUTURE_SKEW ahead of ours (listeners and
        # imports refuse more): such a post stands at the time we received it, or its case opened "in the
        # future" and an answer a minute later was a negative first response (time audit). Further ahead is
        # no clock's error but a built world (the demo moved to a later date): left as it is.
        received = utcnow()
        for mention in fresh:
            if received < mention.created_at <= received + MAX_FUTURE_SKEW:
                mention.created_at = received
        result.duplicates = len(batch) - len(fresh)
        result.timings["store"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        to_classify = [m for m in fresh if not m.outbound and m.labels is None]
        if to_classify and self.classifier is not None:
            for mention, labels in zip(to_classify, classify_mentions(self.classifier, to_classify, self.config)):
                mention.labels = labels
        result.timings["classify"] += time.perf_counter() - t0

        with self.store.transaction():
            # On PostgreSQL several workers write at once: each waits here for the threads, authors
            # and order/tracking numbers of its posts (released at commit), so two workers never
            # both open a case for one thread or customer. SQLite's write lock already did that.
            if fresh:
                self.store.serialise(lambda: self._case_keys(fresh, numbers))
            # Looked up again under the write lock: another import, listener or the webhook may
            # have stored some of these posts while this batch was being classified.
            if fresh:
                raced = self.store.existing_mention_ids((m.channel, m.external_id) for m in fresh)
                if raced:
                    fresh = [m for m in fresh if (m.channel, m.external_id) not in raced]
                    result.duplicates += len(raced)
            if fresh:
                batch = self._read_ahead(fresh, numbers)
                result.timings["link"] += batch.numbers_seconds
                for mention in fresh:
                    self._ingest_one(mention, result, batch)
                t0 = time.perf_counter()
                batch.cases.flush()
                self.store.audit_many(batch.events)
                written = batch.posts.flush()
                result.mention_ids += written
                mark = self.store.change_mark()
                self._kept = (batch.shop, batch.posts, batch.cases, mark, max(written)) if mark is not None else None
                result.timings["store"] += time.perf_counter() - t0
        return result

    def _kept_lookups(self) -> tuple[ShopLookups | None, BatchPosts | None, BatchCases | None]:
        """What the previous batch read of the shop, of posts (each post's thread and case, the
        peaks and contact counts of the cases it touched) and of cases (the conversations' cases,
        each author key's first cases, the cases as it read or wrote them), when nothing at all has been written to
        the database since its writes: the store's change mark, taken under this batch's write lock,
        is the one taken then (no other connection committed, this one wrote nothing else; the
        pipeline never writes the shop, and what it wrote of posts those lookups hold as written).
        Else (None, None, None): read afresh. Exact, like the rest of a batch's memory: an import's
        batches read the shop, their posts' history and their authors' cases once, not each.

        It also needs the previous batch's transaction to have been committed (its last post is
        stored): a rollback moves neither part of the mark, and takes back the batch's posts and
        whatever the caller wrote before it in that transaction (which the batch may have read).
        """
        kept = self._kept
        self._kept = None
        if (kept is None or kept[0].size() + kept[1].size() + kept[2].size() > KEPT_LIMIT
                or kept[3] != self.store.change_mark() or self.store.get_mention(kept[4]) is None):
            return None, None, None
        return kept[0], kept[1], kept[2]

    def _evidence(self, mention: Mention, numbers: Mapping[tuple[str, str], Evidence]) -> Evidence:
        """The numbers in the post's text: given, or found now."""
        found = numbers.get((mention.channel, mention.external_id))
        return found if found is not None else find_numbers(mention.text, self.config)

    def _case_keys(self, mentions: Sequence[Mention], numbers: Mapping[tuple[str, str], Evidence]) -> set[str]:
        """What decides which case a post joins (see :meth:`_choose_case`): its thread, its author on
        its channel, the order and tracking numbers it names. Posts sharing none of these can be
        stored side by side; posts sharing one are stored one after the other."""
        keys: set[str] = set()
        for m in mentions:
            keys.add(f"thread:{m.channel}:{m.thread_id or m.in_reply_to or m.external_id}")
            if m.author_handle:
                keys.add(f"author:{m.channel}:{m.author_handle.lstrip('@').casefold()}")
            if not m.outbound:
                evidence = self._evidence(m, numbers)
                keys.update(f"number:{n}" for n in (*evidence.order_numbers, *evidence.tracking_numbers,
                                                    *evidence.possible_tracking_numbers))
        return keys

    def _read_ahead(self, fresh: list[Mention], numbers: Mapping[tuple[str, str], Evidence]) -> _Batch:
        """Read what these posts will ask for in a few queries (see doorstep/lookups.py)."""
        shop, posts, cases = self._kept_lookups()
        batch = _Batch(ShopLookups(self.store, shop), BatchPosts(self.store, posts), BatchCases(self.store, cases))
        t0 = time.perf_counter()
        for mention in fresh:
            if not mention.outbound:
                batch.evidence[id(mention)] = self._evidence(mention, numbers)
        batch.numbers_seconds = time.perf_counter() - t0
        found = list(batch.evidence.values())
        batch.shop.prefetch(
            ((m.channel, m.author_handle) for m in fresh if not m.outbound),
            (n for e in found for n in e.order_numbers),
            (n for e in found for n in (*e.tracking_numbers, *e.possible_tracking_numbers)),
        )
        batch.shop.prefetch_recent_orders(
            batch.shop.customer_id_by_handle(m.channel, m.author_handle) for m in fresh
            if not m.outbound and m.author_handle and not batch.shop.quotes_known_order(batch.evidence[id(m)]))
        batch.posts.prefetch_parents(fresh)
        batch.sent_by_outbox = sent_by_outbox(self.store, [m for m in fresh if m.outbound])
        threads: set[tuple[str, str]] = set()
        for mention in fresh:
            # Every id the post's conversation may carry: its own, the one it answers, the answered one's.
            parent = batch.posts.parent(mention.channel, mention.in_reply_to) if mention.in_reply_to else None
            for thread_id in (mention.thread_id, parent[0] if parent else None, mention.in_reply_to, mention.external_id):
                if thread_id:
                    threads.add((mention.channel, thread_id))
        batch.cases.prefetch_threads(threads)
        # What the priorities of the conversations' cases look at: their orders, shipments, most
        # serious posts and contact counts.
        known = batch.cases.read()
        batch.shop.prefetch_numbers((c.order_number for c in known if c.order_number),
                                    (c.tracking_number for c in known if c.tracking_number))
        batch.posts.prefetch_cases(c.id for c in known if c.id is not None)
        inbound = [m for m in fresh if not m.outbound]
        if inbound:
            # The cases these posts may join outside their conversations (Store.author_cases): by
            # author, by the customers and orders found above, by the conversations' customers.
            customers, orders = batch.shop.known()
            customers.update(c.customer_id for c in known if c.customer_id)
            first, last = min(m.created_at for m in inbound), max(m.created_at for m in inbound)
            batch.cases.prefetch_authors(
                handles=((m.channel, m.author_handle) for m in inbound if m.author_handle),
                customer_ids=customers, order_numbers=orders,
                resolved_since=first - timedelta(hours=self.config.cases.reopen_window_hours))
            batch.answers = AnswerWatch(self.store, first, last)
        return batch

    def _new_batch(self) -> _Batch:
        return _Batch(ShopLookups(self.store), BatchPosts(self.store), BatchCases(self.store))

    def _ingest_one(self, mention: Mention, result: IngestResult, batch: _Batch) -> None:
        t0 = time.perf_counter()
        store = self.store
        if not mention.matched:
            mention.matched = match_names(mention.text, mention.author_handle, self.config, self._names)
        parent = batch.posts.parent(mention.channel, mention.in_reply_to) if mention.in_reply_to else None
        if mention.thread_id is None:
            mention.thread_id = (parent[0] if parent else None) or mention.in_reply_to or mention.external_id
        # A listener that knows the case (a private answer to our direct message) says so.
        hinted = batch.cases.get(mention.case_id) if mention.case_id else None
        thread_case = hinted or self._thread_case(mention, parent, batch)
        if thread_case is None and parent is not None and parent[1] is not None:
            # The parent joined an older case (same order or customer) opened by another thread.
            thread_case = batch.cases.get(parent[1])
        while thread_case is not None and thread_case.merged_into:
            # An agent merged the conversation's case into another: its posts live on there.
            thread_case = batch.cases.get(thread_case.merged_into)

        if mention.outbound:
            # Our own reply: it joins the thread and stops the first (or next) response clock.
            mention.case_id = thread_case.id if thread_case else None
            self._store_mention(mention, result, batch)
            answered = sla.we_answered(thread_case, mention.created_at) if thread_case is not None else {}
            if thread_case is not None and answered:
                batch.cases.save(thread_case.model_copy(update=answered), thread_case)
            if thread_case is not None and (mention.channel, mention.external_id) not in batch.sent_by_outbox:
                # Typed in the network's own app: only this post tells the case who answered and when. Written
                # with the post, in its transaction; a post already stored is a duplicate and never gets here, so
                # once per post. A reply the outbox sent already has its "sent" event.
                batch.audit("case.answered", thread_case.id, {
                    "channel": mention.channel, "external_id": mention.external_id,
                    "posted_at": iso(mention.created_at), "first_response": "first_response_at" in answered,
                }, actor=our_account(mention))
            result.timings["store"] += time.perf_counter() - t0
            return

        # Someone other than the customer writing in the thread of a resolved case has an issue of
        # their own, and nobody watches a resolved case: their post opens their own case (in this
        # conversation), linked from what it says and who wrote it, not from the customer's case.
        # Only the customer's post reopens the customer's case.
        own_issue = (thread_case is not None and hinted is None and thread_case.status == "resolved"
                     and not by_customer(batch.shop, thread_case, mention))
        t1 = time.perf_counter()
        link = link_mention(mention, batch.shop, self.config, None if own_issue else thread_case,
                            batch.evidence.get(id(mention)))
        t_link = time.perf_counter() - t1
        result.timings["link"] += t_link

        brand = next((n for n in mention.matched if n in self._brands), None)
        case = None if own_issue else self._choose_case(mention, link, brand, thread_case, hinted is not None, batch)
        shipment = batch.shop.shipment_brief(link.tracking_number) if link.tracking_number else None
        courier = shipment[1] if shipment else next((n for n in mention.matched if n in self._couriers), None)
        if case is None:
            # A new case is written once, whole: scored and its clocks started before its insert
            # (its one post is its peak), then the post is stored into it. Version 2, as when it
            # was inserted and then saved, so nothing reading versions sees a difference.
            case = new_case(mention, link, brand, courier)
            case.mention_count = 1
            self._prioritise(case, mention, batch, customers=True)
            sla.start_clocks(case, mention.created_at, self.config)
            case.version += 1
            batch.cases.open(case)  # inserted with the batch's other writes, under the id it would get now
            batch.posts.new_case(case.id)  # type: ignore[arg-type]
            result.cases_opened += 1
            # The order and customer it was first linked to: after a relink, that order is still nobody's business
            # in a public reply (responders.outbox reads the links of the audit trail).
            batch.audit("case.open", case.id, {"external_id": mention.external_id, "link": link.method,
                                               **({"order_number": link.order_number} if link.order_number else {}),
                                               **({"customer_id": link.customer_id} if link.customer_id else {})})
            mention.case_id = case.id
            mention.by_customer = True  # its author is the new case's customer
            self._store_mention(mention, result, batch)
            self._mark_answered(batch, case.id, mention)
            result.timings["store"] += time.perf_counter() - t0 - t_link
            return
        before = old = case
        if case.status == "resolved":
            # When the post was written: an imported post reopened the case then, not when it was stored.
            batch.audit("case.reopen", case.id, {"external_id": mention.external_id,
                                                 "posted_at": iso(mention.created_at)})
        # Only the case's customer's post may change its link or end a wait for the customer: someone
        # else answering in the thread is shown there, nothing more (see cases.by_customer).
        customers = by_customer(batch.shop, case, mention)
        case = absorb(case, mention, link, customers)
        result.cases_updated += 1
        # Stored with its case already set, and whether it speaks for the case's customer (what the
        # case's peak and contact count look at, see _prioritise): one insert, no update of the new row.
        mention.case_id, mention.by_customer = case.id, customers
        self._store_mention(mention, result, batch)
        # An answer to a follow-up or question we sent privately: the channel learner's evidence.
        self._mark_answered(batch, case.id, mention)  # type: ignore[arg-type]
        case.mention_count += 1
        case.brand = case.brand or brand
        if customers:
            case.courier = case.courier or courier
        self._prioritise(case, mention, batch, customers)
        if old.status == "resolved":
            sla.start_clocks(case, mention.created_at, self.config)
        elif customers:
            sla.customer_wrote(case, old, mention.created_at, self.config)
        batch.cases.save(case, before)
        result.timings["store"] += time.perf_counter() - t0 - t_link

    def _thread_case(self, mention: Mention, parent: tuple[str | None, int | None] | None,
                     batch: _Batch) -> Case | None:
        """The case of the post's conversation: the one its author is the customer of, else the
        conversation's case (open before resolved, the newest first).

        A conversation holds more than one case when someone answered in it after its case was
        resolved (they got a case of their own, see _ingest_one) or a post came after the reopen
        window: each author's later posts go to their own case, whichever is newer or open. Our own
        reply goes to the case of the post it answers, when that post is in one of them.
        """
        cases = batch.cases.thread_cases(mention.channel, mention.thread_id)
        if len(cases) < 2:
            return cases[0] if cases else None
        if mention.outbound:
            answered = parent[1] if parent is not None else None
            return next((c for c in cases if c.id == answered), cases[0])
        shop = batch.shop
        return next((c for c in cases if is_customers_post(shop, c, mention)), cases[0])

    def _mark_answered(self, batch: _Batch, case_id: int, mention: Mention) -> None:
        """Contact attempts this post answers (see doorstep/contact_history.py)."""
        if batch.answers is None:
            batch.answers = AnswerWatch(self.store, mention.created_at, mention.created_at)
        batch.answers.mark(case_id, mention.created_at)

    def _choose_case(self, mention: Mention, link: Link, brand: str | None, thread_case: Case | None,
                     hinted: bool, batch: _Batch) -> Case | None:
        """The case the post joins (None: it opens one). One case is one issue (see cases.choose_case):
        the conversation's case, unless it was resolved longer ago than the reopen window, else one
        of the author's cases about the same order, or the same brand within the join window."""
        if thread_case is not None and (hinted or may_reopen(thread_case, mention.created_at, self.config)):
            return thread_case
        order = quoted_order(link)
        if brand is None and order:
            summary = batch.shop.order_summary(order)
            brand = summary.brand if summary else None
        candidates = batch.cases.author_cases(
            channel=mention.channel, author_handle=mention.author_handle, customer_id=link.customer_id,
            order_number=order if link.confirmed else None,
            resolved_since=mention.created_at - timedelta(hours=self.config.cases.reopen_window_hours))

        def numbers_quoted_in(case: Case) -> set[str]:
            """Order and tracking numbers the case's customer posts quoted, matched or not (asked only
            when a post quoting a number may join a case whose order is not known)."""
            numbers: set[str] = set()
            for text in batch.posts.case_texts(case.id):  # type: ignore[arg-type]
                evidence = find_numbers(text, self.config)
                numbers.update(evidence.order_numbers, evidence.tracking_numbers, evidence.malformed)
            return numbers

        # Views of the candidates (doorstep/lookups.py): the chosen one is read whole.
        def link_confirmed(view: Case) -> bool:
            """Whether another author's case (a view) is confirmed about its order: read whole, as the batch leaves it."""
            case = batch.cases.get(view.id)  # type: ignore[arg-type]
            return case is not None and case.link_confirmed

        chosen = choose_case(mention, link, brand, candidates, self.config, numbers_quoted_in,  # type: ignore[arg-type]
                             link_confirmed)[0]
        return batch.cases.get(chosen.id) if chosen is not None else None

    def _store_mention(self, mention: Mention, result: IngestResult, batch: _Batch) -> None:
        """Written with the rest of the batch when it ends (Store.insert_mentions), in this order."""
        batch.posts.add(mention)
        result.stored += 1

    def reprioritise(self, case: Case, newest: Mention, answers: Sequence[datetime] = ()) -> None:
        """Score a case again after an agent moved posts into or out of it (doorstep/regroup.py), and
        work its SLA clocks out again from the posts it now holds.

        Whether each post speaks for the case's customer is worked out again first, against the case
        as it now is: a stranger's post split out into a case of its own is that case's customer's,
        and the peak and contact count the score reads must not keep the flags of the case it left.
        Strangers' posts start no clock here either, as they start none when they arrive.

        ``answers``: when we answered the customer outside the case's posts (replies the outbox sent,
        public or private, which no listener stored as a post of ours): each stops a response clock
        as our post would, so a customer post after the last of them owes a next response."""
        posts = self.store.mentions_for_case(case.id) if case.id is not None else []
        self._recheck_customers(case, posts)
        self._prioritise(case, newest, self._new_batch(), by_customer(self.store, case, newest))
        if case.id is not None:
            ours = [SimpleNamespace(created_at=at, outbound=True) for at in answers]
            sla.replay(case, [*(m for m in posts if m.outbound or m.by_customer is not False), *ours], self.config)

    def _recheck_customers(self, case: Case, posts: list[Mention]) -> None:
        """Set ``by_customer`` of the case's inbound ``posts`` (stored, and in place) as
        :func:`by_customer` answers for ``case`` now; our own posts keep theirs."""
        changed: list[tuple[int, bool]] = []
        for post in posts:
            if post.outbound or post.id is None:
                continue
            flag = by_customer(self.store, case, post)
            if post.by_customer is not flag:
                post.by_customer = flag
                changed.append((post.id, flag))
        if changed:
            self.store.set_mentions_by_customer(changed)

    def _prioritise(self, case: Case, mention: Mention, batch: _Batch, customers: bool) -> None:
        """Score the case on its customer's most serious post, in the context of everything we know.

        A calmer follow-up ("any news?") must not lower the priority the complaint earned,
        so the labels used are those of the case's most serious inbound post. ``customers``:
        whether ``mention`` speaks for the case's customer (cases.by_customer); a stranger's post
        in the thread ("disgrace, lost, urgent", 250,000 followers) is shown there but its labels
        and followers do not count, and neither do its posts in the peak and contact count
        (``Mention.by_customer``): the case stays scored on what its customer wrote.
        """
        shop = batch.shop
        labels, followers = (mention.labels, mention.author_followers) if customers else (None, 0)
        text = mention.text if customers else None  # the post the labels come from
        peak = batch.posts.peak(case.id) if case.id else None
        if peak is not None:
            followers = max(followers, peak.author_followers)
            if peak.labels and (labels is None or _seriousness(peak.labels) > _seriousness(labels)):
                labels, text = peak.labels, peak.text
        if labels is not None:
            # The case shows the reading its priority rests on, so intent and reasons agree.
            case.intent, case.sentiment, case.complaint = labels.intent, labels.sentiment, labels.complaint
        order = shop.order_summary(case.order_number) if case.order_number else None
        shipment = shop.shipment_brief(case.tracking_number) if case.tracking_number else None
        if order is not None and not case.brand:
            case.brand = order.brand
        case.priority, case.priority_reasons = score_priority(
            PriorityInputs(
                labels=labels,
                followers=followers,
                vip=shop.customer_is_vip(case.customer_id) if case.customer_id else False,
                order_total=order.total if order else None,
                currency=order.currency if order else "GBP",
                shipment_events=shipment[2] if shipment else frozenset(),
                # One post is never a repeat contact: count (one query) only when there are more.
                contacts=batch.posts.contacts(case.id) if case.id and case.mention_count > 1 else 1,
                promotion=looks_promotional(text) if text else None,
            ),
            self.config,
        )


@dataclass
class _Batch:
    """What one batch's posts read, read ahead and kept for the batch (doorstep/lookups.py)."""

    shop: ShopLookups
    posts: BatchPosts
    cases: BatchCases
    #: The numbers found in each inbound post's text, by id() of the post.
    evidence: dict[int, Evidence] = field(default_factory=dict)
    #: The contact attempts the batch's posts may answer (read ahead with the rest).
    answers: AnswerWatch | None = None
    #: The batch's audit events, written together when it ends (Store.audit_many), in this order.
    events: list[tuple[str, str, str, int | None, dict]] = field(default_factory=list)
    #: (channel, external_id) of the batch's own posts that Doorstep's outbox sent (see :func:`sent_by_outbox`).
    sent_by_outbox: set[tuple[str, str]] = field(default_factory=set)

    def audit(self, action: str, case_id: int | None, details: dict, actor: str = "pipeline") -> None:
        """Store.audit (by the pipeline unless ``actor`` says who did it), stamped now: when the system
        wrote it, as every audit event; written with the batch."""
        self.events.append((iso(utcnow()), actor, action, case_id, details))  # type: ignore[arg-type]
    numbers_seconds: float = 0.0


#: Networks where an account is known by its @handle (an e-mail address is shown as it is).
HANDLE_CHANNELS = ("x", "mastodon", "bluesky")


def our_account(mention: Mention) -> str:
    """Who answered, for the audit: our account as the team knows it ("@FettleCare", an e-mail address),
    or "Our team" when the post names none."""
    handle = (mention.author_handle or "").strip()
    if not handle:
        return "Our team"
    return f"@{handle.lstrip('@')}" if mention.channel in HANDLE_CHANNELS else handle


def sent_by_outbox(store: Store, posts: Sequence[Mention]) -> set[tuple[str, str]]:
    """(channel, external_id) of those of our own ``posts`` that Doorstep's outbox sent (it records the
    post's id when the network accepts it): a listener reading our account's timeline stores them too,
    and their answer is already on the case as "Reply ... sent". One read per batch and channel."""
    by_channel: dict[str, list[str]] = {}
    for post in posts:
        by_channel.setdefault(post.channel, []).append(post.external_id)
    found: set[tuple[str, str]] = set()
    for channel, ids in by_channel.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = store.db.execute("select external_id from outbound_messages where channel = ? and external_id in "
                                    f"({','.join('?' * len(chunk))})", [channel, *chunk]).fetchall()
            found.update((channel, row[0]) for row in rows)
    return found


def _seriousness(labels: Labels) -> tuple[bool, float]:
    return (labels.complaint, labels.urgency)
