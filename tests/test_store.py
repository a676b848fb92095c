"""The store: migrations, idempotent writes, the inbox query and optimistic locking."""

from __future__ import annotations

from datetime import timedelta

import pytest

from doorstep.models import Case, Customer, Order, Shipment, TrackingEvent
from doorstep.store import InboxQuery, StaleCaseError, Store

from conftest import T0, mention


def test_migrations_apply_once_and_database_uses_wal(tmp_path):
    path = tmp_path / "d.db"
    Store(path).close()
    again = Store(path)  # re-opening applies nothing new and does not fail
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    applied = again.db.execute("select count(*) from _sqlite_migrations").fetchone()[0]
    assert applied >= 1
    assert "mentions_fts" in again.db.table_names()


def test_mention_key_is_channel_and_external_id(store: Store):
    store.insert_mention(mention("1", "hello @LarkspurHelp"))
    with pytest.raises(Exception):
        store.insert_mention(mention("1", "same id, same channel"))
    store.insert_mention(mention("1", "same id on another channel", channel="mastodon"))
    assert store.count("mentions") == 2
    assert store.existing_mention_ids([("x", "1"), ("x", "2"), ("mastodon", "1")]).keys() == {("x", "1"), ("mastodon", "1")}


def test_orders_shipments_and_tracking_are_idempotent_and_status_follows_latest_event(store: Store):
    store.upsert_customers([Customer(id="c1", name="Ann Lee", handles={"x": "@AnnLee"})])
    events = [
        TrackingEvent(tracking_number="1Z999AA10123456784", time=T0, status="info_received"),
        TrackingEvent(tracking_number="1Z999AA10123456784", time=T0 + timedelta(days=1), status="attempt_failed"),
    ]
    order = Order(number="1234", customer_id="c1", placed_at=T0, total=80,
                  shipments=[Shipment(tracking_number="1Z999AA10123456784", order_number="1234", courier="UPS", events=events)])
    store.upsert_orders([order])
    store.upsert_orders([order])
    assert store.count("tracking_events") == 2
    assert store.get_shipment("1Z999AA10123456784").status == "attempt_failed"
    assert store.customer_id_by_handle("x", "annlee") == "c1"  # handles match without @ and case
    store.add_tracking_events([TrackingEvent(tracking_number="1Z999AA10123456784", time=T0 + timedelta(days=2), status="delivered")])
    assert store.get_order("1234").shipments[0].status == "delivered"


def _case(store: Store, **fields) -> int:
    return store.insert_case(Case(**fields))


def test_inbox_orders_by_priority_and_filters(store: Store):
    low = _case(store, priority=20, brand="Larkspur", intent="praise")
    high = _case(store, priority=90, brand="Larkspur", courier="UPS", intent="lost_or_missing")
    _case(store, priority=99, brand="Fettle", status="resolved")
    mid = _case(store, priority=50, brand="Fettle", courier="UPS")
    assert [c.id for c in store.inbox()] == [high, mid, low]
    assert [c.id for c in store.inbox(InboxQuery(brand="Larkspur"))] == [high, low]
    assert [c.id for c in store.inbox(InboxQuery(courier="UPS"))] == [high, mid]
    assert store.inbox_count(InboxQuery(intent="lost_or_missing")) == 1
    assert store.inbox_facets("brand") == {"Larkspur": 2, "Fettle": 1}


def test_inbox_full_text_search_finds_cases_by_their_posts(store: Store):
    first = _case(store, priority=10)
    second = _case(store, priority=20)
    m1 = store.insert_mention(mention("1", "My parcel was left in the rain"))
    m2 = store.insert_mention(mention("2", "Driver never knocked"))
    store.set_mention_case(m1, first)
    store.set_mention_case(m2, second)
    assert [c.id for c in store.inbox(InboxQuery(search="rain"))] == [first]
    assert [c.id for c in store.inbox(InboxQuery(search="knock"))] == [second]  # prefix match
    assert store.inbox(InboxQuery(search='"); drop table cases; --')) == []  # typed text is never SQL


def test_inbox_counts_equal_plain_counts_under_every_filter_combination(store: Store):
    """The counts name an index for SQLite (Store._count_index); they must still count right."""
    import itertools
    import random

    from doorstep.models import OPEN_CASE_STATUSES, Case, utcnow
    from doorstep.sla import next_due

    rng = random.Random(3)
    now = utcnow()
    offsets = [timedelta(hours=-3), timedelta(minutes=-20), timedelta(minutes=30), timedelta(hours=5), None]
    values = {"brand": ["Larkspur", "Fettle"], "courier": ["UPS", "DPD", None], "channel": ["x", "mastodon"],
              "intent": ["late_delivery", "praise", None], "assignee": ["amy", None]}
    cases = []
    for _ in range(160):
        fields = {column: rng.choice(options) for column, options in values.items()}
        due, resolution = rng.choice(offsets), rng.choice(offsets)
        fields.update(status=rng.choice(["new", "open", "pending_customer", "escalated", "resolved"]),
                      priority=rng.randint(0, 99), first_response_due=due and now + due,
                      resolution_due=resolution and now + resolution,
                      first_response_at=now if rng.random() < 0.3 else None)
        fields["id"] = _case(store, **fields)
        cases.append(fields)

    # The SLA states judge the next deadline of a running clock (doorstep/sla.py): none while the
    # case waits on the customer; an answered case's first-response deadline no longer counts.
    def next_deadline(c):
        found = next_due(Case(**{k: v for k, v in c.items() if k != "id"}))
        return found[1] if found else None

    def breached(c):
        due = next_deadline(c)
        return due is not None and due < now

    def due_soon(c):
        due = next_deadline(c)
        return due is not None and now <= due <= now + timedelta(hours=1)

    sla_test = {None: lambda c: True, "breached": breached, "due_soon": due_soon}
    filters = [(column, value) for column, options in values.items() for value in options if value]
    for n in range(3):
        for chosen in itertools.combinations(filters, n):
            if len({column for column, _ in chosen}) < n:
                continue
            for sla in sla_test:
                for statuses in (OPEN_CASE_STATUSES, ("resolved", "open")):
                    query = InboxQuery(statuses=statuses, sla_state=sla, **dict(chosen))
                    match = [c for c in cases if c["status"] in statuses and sla_test[sla](c)
                             and all(c[column] == value for column, value in chosen)]
                    assert store.inbox_count(query) == len(match), query
                    for column in [*values, "status"]:
                        others = InboxQuery(statuses=statuses, sla_state=sla,
                                            **{k: v for k, v in chosen if k != column})
                        expected: dict[str, int] = {}
                        for c in cases:
                            if c["status"] in statuses and sla_test[sla](c) and all(
                                    c[k] == v for k, v in chosen if k != column):
                                key = c[column] if c[column] is not None else "(none)"
                                expected[key] = expected.get(key, 0) + 1
                        counts = store.inbox_facets(column, others)
                        assert counts == expected, (column, others)
                        assert list(counts.values()) == sorted(counts.values(), reverse=True)


def test_search_results_follow_new_posts_from_any_connection(store: Store, tmp_path):
    first, second, third = _case(store, priority=10), _case(store, priority=20), _case(store, priority=30)
    store.set_mention_case(store.insert_mention(mention("1", "parcel left in the rain")), first)
    assert store.search_cases("rain") == [first]
    assert store.search_cases("rain") == [first]  # remembered while nothing changes
    store.set_mention_case(store.insert_mention(mention("2", "more rain, still no parcel")), second)
    assert sorted(store.search_cases("rain")) == [first, second]
    other = Store(store.path)  # the worker writes through its own connection
    other.set_mention_case(other.insert_mention(mention("3", "rain again")), third)
    other.close()
    assert sorted(store.search_cases("rain")) == [first, second, third]
    assert [c.id for c in store.inbox(InboxQuery(search="rain"))] == [third, second, first]
    assert store.search_is_capped("rain") is False


def test_a_search_past_the_cap_keeps_the_newest_posts_cases_and_says_it_is_capped(store: Store, monkeypatch):
    """Search looks at the newest SEARCH_MATCH_LIMIT matching posts and says when there were more. Issue 17:
    the "more?" answer now comes from the search's own full-text query (one post past the cap) instead of
    a second query for the same words; the cases found and the answer are the same as before."""
    import doorstep.store.inbox as store_inbox

    monkeypatch.setattr(store_inbox, "SEARCH_MATCH_LIMIT", 3)
    cases = [_case(store, priority=10 + n) for n in range(5)]
    for n, case_id in enumerate(cases[:4]):
        store.set_mention_case(store.insert_mention(mention(str(n), f"smashed mug number {n}")), case_id)
    store.set_mention_case(store.insert_mention(mention("x", "a parcel, all fine")), cases[4])
    assert sorted(store.search_cases("smashed")) == sorted(cases[1:4])  # the newest three posts' cases
    assert store.search_is_capped("smashed") is True
    assert sorted(store.search_cases("parcel")) == [cases[4]] and store.search_is_capped("parcel") is False
    store.set_mention_case(store.insert_mention(mention("y", "parcel smashed too")), cases[0])
    assert sorted(store.search_cases("parcel")) == [cases[0], cases[4]] and store.search_is_capped("parcel") is False
    monkeypatch.setattr(store_inbox, "SEARCH_MATCH_LIMIT", 2)
    store._search_memo.clear()
    assert sorted(store.search_cases("parcel")) == [cases[0], cases[4]] and store.search_is_capped("parcel") is False
    store._search_memo.clear()
    assert store.search_is_capped("parcel") is False and store.search_cases("parcel")  # asked in either order


def test_second_writer_with_stale_version_is_refused_with_a_clear_message(store: Store):
    case_id = _case(store, priority=10)
    seen_by_both = store.get_case(case_id).version
    store.update_case(case_id, seen_by_both, "amy", assignee="amy")
    with pytest.raises(StaleCaseError) as err:
        store.update_case(case_id, seen_by_both, "bob", status="resolved")
    assert "amy" in str(err.value)
    fresh = store.get_case(case_id)
    assert fresh.assignee == "amy" and fresh.status == "new"
    actions = [(e.actor, e.action) for e in store.audit_trail(case_id)]
    assert actions == [("amy", "case.update")]


def test_update_case_rejects_unknown_fields(store: Store):
    case_id = _case(store)
    with pytest.raises(ValueError, match="colour"):
        store.update_case(case_id, 1, "amy", colour="red")
