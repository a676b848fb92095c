"""Issue 17, measured: the counts beside the inbox's filters come from one summary of the cases
(``Store.inbox_summary``) instead of ~14 counting queries per run, and must count exactly what
``Store.inbox_facets`` and ``Store.inbox_count`` count for the same filters (snoozed cases, SLA
states, the "Waiting for" views, status sets with closed cases, a search)."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta

from conftest import mention

from console.inbox import FACETS, SLA_STATES, WAITING, _query, _summary_statuses, counts_from_summary
from doorstep.models import OPEN_CASE_STATUSES, Case, utcnow
from doorstep.store import InboxQuery, Store, iso

VALUES = {"brand": ["Larkspur", "Fettle"], "courier": ["UPS", "DPD", None], "channel": ["x", "mastodon"],
          "intent": ["late_delivery", "praise", None], "assignee": ["amy", None]}


def _shop(store: Store) -> None:
    """160 cases of every combination: statuses open and closed, snoozed, answered, overdue, due soon;
    some waiting on the customer's answer to our question, some with a call back due; a word to search."""
    rng = random.Random(5)
    now = utcnow()
    offsets = [timedelta(hours=-3), timedelta(minutes=-20), timedelta(minutes=30), timedelta(hours=5), None]
    for n in range(160):
        fields = {column: rng.choice(options) for column, options in VALUES.items()}
        due, resolution = rng.choice(offsets), rng.choice(offsets)
        snooze = rng.choice([None, None, None, timedelta(hours=2), timedelta(hours=-1)])
        case_id = store.insert_case(Case(
            status=rng.choice(["new", "open", "pending_customer", "escalated", "resolved"]),
            priority=rng.randint(0, 99), first_response_due=due and now + due,
            resolution_due=resolution and now + resolution, first_response_at=now if rng.random() < 0.3 else None,
            snoozed_until=snooze and now + snooze, **fields))
        if n % 3 == 0:
            store.set_mention_case(store.insert_mention(mention(str(n), f"parcel number {n} went missing")), case_id)
        if n % 7 == 0:  # our question, sent and still open (or sent and expired, or not sent yet)
            sent = "sent" if n % 14 else "queued"
            message = store.db.execute(
                "insert into outbound_messages (case_id, kind, channel, text, status, idempotency_key, created_at) "
                "values (?, 'question', 'sms', 'yes or no?', ?, ?, ?)", [case_id, sent, f"q{n}", iso(now)])
            expires = now + (timedelta(days=1) if n % 21 else timedelta(hours=-1))
            store.db.execute("insert into questions (case_id, message_id, status, expires_at, token) "
                             "values (?, ?, 'open', ?, ?)",
                             [case_id, message.lastrowid, iso(expires), f"t{n}"])
        if n % 5 == 0:  # a call back, due now or later
            slot = now + (timedelta(hours=-1) if n % 10 else timedelta(hours=3))
            store.db.execute("insert into callbacks (case_id, status, slot_at, due_at) values (?, 'scheduled', ?, ?)",
                             [case_id, iso(slot), iso(slot + timedelta(hours=1))])


def _expected(store: Store, filters: dict) -> dict:
    """The counts the inbox showed before the summary: one query per facet, SLA state and waiting view."""
    counts = {"status": store.inbox_facets("status", _query(filters, without="status"))}
    for column in FACETS:
        counts[column] = store.inbox_facets(column, _query(filters, without=column))
    counts["sla_state"] = {SLA_STATES[s].split(" (")[0]: store.inbox_count(_query({**filters, "sla_state": s}))
                           for s in SLA_STATES}
    counts["waiting"] = {w: store.inbox_count(_query({**filters, "waiting": w})) for w in WAITING}
    return counts


def _from_summary(store: Store, filters: dict) -> dict:
    statuses, search = _summary_statuses(filters), filters.get("search") or None
    counts = counts_from_summary(store.inbox_summary(
        InboxQuery(statuses=statuses, search=search, waiting=filters.get("waiting"))), filters)
    counts["waiting"] = {w: counts_from_summary(store.inbox_summary(
        InboxQuery(statuses=statuses, search=search, waiting=w)), filters, total_only=True) for w in WAITING}
    assert counts.pop("total") == store.inbox_count(_query(filters)), filters  # the queue's total (issue 17)
    return counts


def test_summary_counts_equal_the_per_filter_counts(store: Store) -> None:
    _shop(store)
    singles = [(column, value) for column, options in VALUES.items() for value in options if value]
    checked = 0
    for n in range(3):
        for chosen in itertools.combinations(singles, n):
            if len({column for column, _ in chosen}) < n:
                continue
            for sla, waiting, statuses, search in itertools.product(
                    [None, "breached", "due_soon", "snoozed"], [None, "answer", "callback"],
                    [None, ["new", "escalated"], ["resolved", "open"]], [None, "parcel"]):
                if n == 2 and (statuses or search):  # enough combinations: keep the test quick
                    continue
                filters = {**dict(chosen), "sla_state": sla, "waiting": waiting, "status": statuses, "search": search}
                got, want = _from_summary(store, filters), _expected(store, filters)
                assert got == want, filters
                # the queue's total alone, as the "Waiting for" counts take it (issue 17)
                assert counts_from_summary(store.inbox_summary(InboxQuery(
                    statuses=_summary_statuses(filters), search=search, waiting=waiting)), filters,
                    total_only=True) == store.inbox_count(_query(filters)), filters
                for column in ("status", *FACETS):  # most cases first, as the filters list them
                    assert list(got[column].values()) == sorted(got[column].values(), reverse=True)
                checked += 1
    assert checked > 500


def test_summary_splits_open_cases_by_sla_state_and_snooze(store: Store) -> None:
    now = utcnow()
    common = {"brand": "Larkspur", "channel": "x", "priority": 50.0}
    store.insert_case(Case(status="new", first_response_due=now - timedelta(minutes=5), **common))  # overdue
    store.insert_case(Case(status="new", first_response_due=now + timedelta(minutes=20), **common))  # due soon
    store.insert_case(Case(status="open", first_response_due=now + timedelta(hours=3), **common))  # later
    store.insert_case(Case(status="open", first_response_due=now - timedelta(hours=1),  # overdue but snoozed
                           snoozed_until=now + timedelta(hours=1), **common))
    store.insert_case(Case(status="resolved", first_response_due=now - timedelta(hours=1), **common))  # closed
    rows = store.inbox_summary(InboxQuery(now=now))
    by_status = {row[5]: row[6:] for row in rows}
    assert all(row[:5] == ("Larkspur", None, "x", None, None) for row in rows)
    assert by_status == {"new": (2, 1, 1, 0), "open": (1, 0, 0, 1)}  # awake, breached, due soon, snoozed
    assert {row[5] for row in store.inbox_summary(InboxQuery(statuses=(*OPEN_CASE_STATUSES, "resolved")))} \
        == {"new", "open", "resolved"}


def test_summary_walks_the_facets_index_without_sorting(store: Store) -> None:
    """m016: the facets index leads with the summary's groups, so SQLite groups 114k open cases as it
    reads them instead of sorting them first (200-400 ms -> 40-80 ms at 1M, bench/RESULTS.md)."""
    import pytest

    if store.dialect.postgres:
        pytest.skip("SQLite's query plan (PostgreSQL plans by statistics and groups by hashing)")
    store.insert_case(Case(status="new", brand="Larkspur", channel="x", priority=1.0))
    plans: list[str] = []
    execute = store.db.execute

    def explained(sql: str, params: object = ()) -> object:
        if "group by" in sql:
            plans.append(" ".join(str(r) for r in execute(f"explain query plan {sql}", params).fetchall()))
        return execute(sql, params)

    store.db.execute = explained  # type: ignore[method-assign]
    assert store.inbox_summary(InboxQuery())[0][:6] == ("Larkspur", None, "x", None, None, "new")
    [plan] = plans
    assert "idx_cases_open_facets" in plan and "TEMP B-TREE" not in plan, plan


def test_a_new_session_takes_the_summaries_another_session_took_for_the_same_data(store: Store, monkeypatch) -> None:
    """Issue 17, first load after login: a new session (every login) held no summary and took the whole
    queue's again although another session had just taken it for the same data and minute; now the
    sessions of one server share them, and a change to the data (a new case) takes them anew."""
    from console import inbox

    _shop(store)
    monkeypatch.setattr(inbox, "utcnow", lambda: utcnow().replace(hour=3, minute=0))  # one minute for the test
    inbox._SHARED.clear()
    inbox._LIVE.clear()
    taken: list[InboxQuery] = []
    real = Store.inbox_summary
    monkeypatch.setattr(Store, "inbox_summary", lambda self, q=None: taken.append(q) or real(self, q))
    first = inbox.filter_counts(store, {"brand": "Fettle"}, {})  # one session (its own `held`)
    assert len(taken) == 1 + len(WAITING)
    second = inbox.filter_counts(store, {"brand": "Fettle"}, {})  # a colleague's new session, same data
    assert len(taken) == 1 + len(WAITING) and second == first
    store.insert_case(Case(status="new", priority=50, brand="Fettle"))  # the data changed: counted again
    third = inbox.filter_counts(store, {"brand": "Fettle"}, {})
    # (the whole queue's summary on SQLite: brought up to date from the change, not taken again; fifth round)
    assert len(taken) == 2 * (1 + len(WAITING)) - (0 if store.dialect.postgres else 1)
    assert third["brand"] != first["brand"]


def test_a_new_session_takes_the_counts_another_session_summed_for_the_same_filters(store: Store, monkeypatch) -> None:
    """Issue 17, first load after login: with the summary shared, summing its rows (a Python pass over
    every combination of the facets, the largest part of a login's first inbox run at 1M cases) was
    still done again by every new session for the same, unfiltered view. Now the sums are shared too:
    the same summary and filters are summed once; other filters, or new data, are summed anew, and
    each session's counts equal what summing afresh gives."""
    from console import inbox

    _shop(store)
    monkeypatch.setattr(inbox, "utcnow", lambda: utcnow().replace(hour=3, minute=0))  # one minute for the test
    inbox._SHARED.clear()
    inbox._COUNTS.clear()
    inbox._LIVE.clear()
    summed: list[bool] = []
    real = inbox.counts_from_summary
    monkeypatch.setattr(inbox, "counts_from_summary",
                        lambda rows, filters, total_only=False: summed.append(total_only) or real(rows, filters,
                                                                                              total_only=total_only))
    per = 1 + len(WAITING)  # the counts (the queue's total among them), each "Waiting for" view's total
    first = inbox.filter_counts(store, {}, {})
    assert len(summed) == per
    second = inbox.filter_counts(store, {}, {})  # a colleague's login, same data and minute
    assert len(summed) == per and second == first
    second["brand"] = {}  # a session's counts are its own to change
    assert inbox.filter_counts(store, {}, {})["brand"] == first["brand"]
    fettle = inbox.filter_counts(store, {"brand": "Fettle"}, {})  # another filter: summed for it
    assert len(summed) == 2 * per and fettle != first
    rows = store.inbox_summary(InboxQuery(statuses=_summary_statuses({})))
    assert fettle["brand"] == real(rows, {"brand": "Fettle"})["brand"]
    store.insert_case(Case(status="new", priority=50, brand="Fettle"))  # the data changed: summed again
    third = inbox.filter_counts(store, {}, {})
    assert len(summed) == 3 * per and third["brand"] != first["brand"]
