"""Issue 17, fifth round: the whole queue's summary (the counts beside the inbox's filters) follows the
data and the clock from what changed (``Store.inbox_summary_live``: m020's log of case changes, and the
cases whose deadline or snooze end is near) instead of walking every open case again after each reply
and each minute. Whatever changed, its rows must be exactly what a fresh ``Store.inbox_summary`` counts
at the same moment, and so every count beside the filters exactly what the per-filter counts give."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from test_inbox_summary import VALUES, _expected, _shop

from console import inbox
from console.inbox import SLA_STATES, WAITING, counts_from_summary
from doorstep.models import OPEN_CASE_STATUSES, Case, utcnow
from doorstep.store import InboxQuery, Store, iso
from doorstep.store import inbox as store_inbox

STATUSES = ["new", "open", "pending_customer", "escalated", "resolved"]


def _fresh(store: Store, now) -> list:
    return sorted(store.inbox_summary(InboxQuery(now=now)), key=repr)


def _change(store: Store, rng: random.Random, now) -> None:
    """One change as the console, the worker or a hand-written UPDATE makes it."""
    ids = [r[0] for r in store.db.execute("select id from cases").fetchall()]
    case_id = rng.choice(ids)
    kind = rng.randrange(7)
    case = store.get_case(case_id)
    if kind == 0:
        store.update_case(case_id, case.version, "ann", status=rng.choice(STATUSES))
    elif kind == 1:
        column = rng.choice(list(VALUES))
        store.update_case(case_id, case.version, "ann", **{column: rng.choice(VALUES[column])})
    elif kind == 2:
        snooze = rng.choice([None, timedelta(minutes=3), timedelta(minutes=50), timedelta(hours=-1), timedelta(days=1)])
        store.update_case(case_id, case.version, "ann", snoozed_until=snooze and now + snooze)
    elif kind == 3:  # a deadline moves (the SLA clock): near, past, far, none
        due = rng.choice([None, timedelta(minutes=-2), timedelta(minutes=7), timedelta(minutes=65), timedelta(hours=9)])
        store.db.execute("update cases set due_at = ? where id = ?", [iso(now + due) if due else None, case_id])
    elif kind == 4:
        store.insert_case(Case(status=rng.choice(STATUSES), priority=50,
                               first_response_due=now + timedelta(minutes=rng.randint(-90, 120)),
                               **{c: rng.choice(v) for c, v in VALUES.items()}))
    elif kind == 5:
        store.db.execute("delete from cases where id = ? and id not in (select case_id from questions) "
                         "and id not in (select case_id from callbacks) and id not in "
                         "(select case_id from outbound_messages where case_id is not null) "
                         "and id not in (select case_id from mentions where case_id is not null)", [case_id])
    else:  # a write that changes nothing the summary counts
        store.update_case(case_id, case.version, "ann", priority=rng.randint(0, 99))


def test_the_live_summary_equals_a_fresh_one_after_changes_and_as_the_clock_moves(store: Store, monkeypatch) -> None:
    _shop(store)
    rng = random.Random(18)
    takes: list[object] = []
    real = Store._take_live_summary
    monkeypatch.setattr(Store, "_take_live_summary", lambda self, moment: takes.append(moment) or real(self, moment))
    now = utcnow().replace(microsecond=0)
    rows, state = store.inbox_summary_live(None, now)
    assert sorted(rows, key=repr) == _fresh(store, now)
    for step in range(60):
        for _ in range(rng.randrange(4)):
            _change(store, rng, now)
        now += timedelta(seconds=rng.choice([0, 1, 29, 60, 61, 170]))
        rows, state = store.inbox_summary_live(state, now)
        assert sorted(rows, key=repr) == _fresh(store, now), step
    if store.dialect.postgres:
        assert state is None  # no log there: taken every time, as before
    else:
        # what changed: one walk of every open case, then only the changes and the cases near a deadline,
        # until the horizon
        assert len(takes) == 1 + (now - takes[0]) // store_inbox.SUMMARY_HORIZON
        assert store.db.execute("select count(*) from case_changes").fetchone()[0] > 0


def test_the_live_summary_is_taken_afresh_past_its_horizon_or_its_log(store: Store, monkeypatch) -> None:
    if store.dialect.postgres:
        pytest.skip("SQLite's change log (PostgreSQL takes the summary every time)")
    _shop(store)
    rng = random.Random(3)
    now = utcnow().replace(microsecond=0)
    rows, state = store.inbox_summary_live(None, now)
    taken = state.taken_at
    for _ in range(5):
        _change(store, rng, now)
    monkeypatch.setattr(store_inbox, "SUMMARY_CHANGES_MAX", 2)  # more changes than it applies: counted again
    rows, state = store.inbox_summary_live(state, now + timedelta(minutes=1))
    assert sorted(rows, key=repr) == _fresh(store, now + timedelta(minutes=1)) and state.taken_at != taken
    monkeypatch.setattr(store_inbox, "SUMMARY_CHANGES_MAX", 20_000)
    for brand in ("Gone", "Back"):
        store.db.execute("update cases set brand = ? where id = (select min(id) from cases where status = 'new')", [brand])
    store.db.execute("delete from case_changes where seq = ?", [state.seq + 1])  # the log no longer reaches back
    later = now + timedelta(minutes=2)
    rows, state = store.inbox_summary_live(state, later)
    assert sorted(rows, key=repr) == _fresh(store, later) and state.taken_at == iso(later)
    store.db.execute("update cases set brand = 'Gone' where id = (select min(id) from cases where status = 'new')")
    store.db.execute("delete from case_changes where seq = ?", [state.seq + 1])  # its only change lost
    later += timedelta(minutes=1)
    rows, state = store.inbox_summary_live(state, later)
    assert sorted(rows, key=repr) == _fresh(store, later) and state.taken_at == iso(later)
    past = later + store_inbox.SUMMARY_HORIZON + timedelta(seconds=1)
    rows, state = store.inbox_summary_live(state, past)
    assert sorted(rows, key=repr) == _fresh(store, past) and state.taken_at == iso(past)


def test_the_change_log_keeps_its_newest_rows_and_logs_only_what_the_summary_counts(store: Store, monkeypatch) -> None:
    if store.dialect.postgres:
        pytest.skip("SQLite's change log")
    case_id = store.insert_case(Case(status="new", priority=50, brand="Fettle"))
    case = store.get_case(case_id)
    before = store.db.execute("select count(*) from case_changes").fetchone()[0]
    store.update_case(case_id, case.version, "ann", priority=70)  # not a summary column: not logged
    assert store.db.execute("select count(*) from case_changes").fetchone()[0] == before
    store.update_case(case_id, case.version + 1, "ann", brand="Larkspur")
    last = store.db.execute("select case_id, old_brand, new_brand, old_status, new_status from case_changes "
                            "order by seq desc limit 1").fetchone()
    assert tuple(last) == (case_id, "Fettle", "Larkspur", "new", "new")
    store.db.execute("insert into sqlite_sequence (name, seq) select 'case_changes', 0 where not exists "
                     "(select 1 from sqlite_sequence where name = 'case_changes')")
    store.db.execute("update sqlite_sequence set seq = 149990 where name = 'case_changes'")
    for n in range(20):  # the 150,000th change drops every change up to the 100,000th
        store.db.execute("update cases set assignee = ? where id = ?", [f"a{n}", case_id])
    low = store.db.execute("select min(seq) from case_changes").fetchone()[0]
    assert low > 100_000


def test_counts_beside_the_filters_after_changes_equal_the_per_filter_counts(store: Store, monkeypatch) -> None:
    """The console's counts through the live summary (a reply, a new case, a snooze, a closed case and
    a minute later) equal one count per filter, as the summary tests of the second round pin them."""
    _shop(store)
    inbox._SHARED.clear()
    inbox._COUNTS.clear()
    inbox._LIVE.clear()
    clock = [utcnow().replace(second=0, microsecond=0)]
    monkeypatch.setattr(inbox, "utcnow", lambda: clock[0])
    monkeypatch.setattr(store_inbox, "utcnow", lambda: clock[0])
    rng = random.Random(11)
    held: dict = {}
    filter_sets = [{}, {"brand": "Fettle"}, {"courier": "UPS", "sla_state": "breached"},
                   {"sla_state": "due_soon"}, {"sla_state": "snoozed", "channel": "x"}, {"waiting": "answer"},
                   {"assignee": "amy", "intent": "praise"}]
    for step in range(12):
        for filters in filter_sets:
            got = inbox.filter_counts(store, filters, held)
            got.pop("total")
            want = _expected(store, filters)
            assert got == want, (step, filters)
        for _ in range(rng.randrange(1, 4)):
            _change(store, rng, clock[0])
        clock[0] += timedelta(minutes=rng.choice([0, 1, 7]))
    if not store.dialect.postgres:
        assert inbox._LIVE  # the whole queue's summary was followed, not taken each time
    assert counts_from_summary(store.inbox_summary(InboxQuery(statuses=OPEN_CASE_STATUSES)), {})["sla_state"].keys() \
        == {SLA_STATES[s].split(" (")[0] for s in SLA_STATES} and WAITING


def test_a_live_summary_of_another_database_at_the_same_path_is_taken_afresh(tmp_path) -> None:
    """The server keeps one live summary per database path; a file replaced under it (a restore, a
    copy) has another log, so the summary is counted again, never followed with the other's changes."""
    path = tmp_path / "shop.db"
    first = Store(path)
    _shop(first)
    now = utcnow().replace(microsecond=0)
    _, state = first.inbox_summary_live(None, now)
    first.close()
    for extra in (path, tmp_path / "shop.db-wal", tmp_path / "shop.db-shm"):
        extra.unlink(missing_ok=True)
    second = Store(path)  # a new database there: its log starts at 1 again
    for n in range(state.seq + 3 if state else 3):
        second.insert_case(Case(status="new", priority=50, brand="Larkspur" if n % 2 else "Fettle"))
    rows, _ = second.inbox_summary_live(state, now + timedelta(seconds=30))
    assert sorted(rows, key=repr) == _fresh(second, now + timedelta(seconds=30))
    second.close()
