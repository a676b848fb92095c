"""The batch's memory of cases answers what the store would (doorstep/lookups.py).

A batch chooses each post's case among the author's cases kept in memory (BatchCases.author_cases)
and writes the cases it changed once, when it ends (BatchCases.flush). These tests change cases
through a batch step by step and compare, before each flush, what the batch answers with what
Store.author_cases answers once the changes are written: the same cases in the same order, with a
small limit and a tiny read-ahead so that the "too few cases read, read again" path runs too.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from doorstep import lookups
from doorstep.lookups import BatchCases
from doorstep.models import Case
from doorstep.store import Store

from conftest import T0


def _case(n: int, **fields) -> Case:
    base = dict(status="open", channel="x", author_handle="ann", thread_id=f"t{n}", opened_at=T0,
                last_activity_at=T0 + timedelta(minutes=n), mention_count=1)
    return Case(**{**base, **fields})


def _history(store: Store) -> list[int]:
    """Ann's cases: by handle, by customer (on another channel), about her order; open, resolved
    long ago and lately, one merged into another, and other people's."""
    cases = [
        _case(1),
        _case(2, customer_id="c-ann"),
        _case(3, status="resolved", resolved_at=T0 - timedelta(days=30)),
        _case(4, status="resolved", resolved_at=T0 + timedelta(minutes=4)),
        _case(5, channel="email", author_handle="ann@example.org", customer_id="c-ann"),
        _case(6, author_handle="bob", order_number="123456"),
        _case(7, merged_into=1),
        _case(8, status="pending_customer"),
        _case(9, author_handle="bob"),
        _case(10, status="resolved", resolved_at=None, last_activity_at=T0 + timedelta(minutes=10)),
        _case(11, last_activity_at=T0 + timedelta(minutes=5)),  # ties with 5 on time: the id decides
        _case(12, author_handle="Ann"),  # another handle (the store compares exactly)
    ]
    return [store.insert_case(c) for c in cases]


def _ask(source, since, **overrides) -> list[int]:
    who = dict(channel="x", author_handle="ann", customer_id="c-ann", order_number="123456")
    who.update(overrides)
    return [c.id for c in source.author_cases(**who, resolved_since=since, limit=3)]


@pytest.mark.parametrize("per_key", [1, 100])
def test_the_batch_answers_what_the_store_answers_as_it_changes_cases(store: Store, per_key: int,
                                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(lookups, "PER_KEY", per_key)
    ids = _history(store)
    since = T0 - timedelta(days=1)
    with store.transaction():
        batch = BatchCases(store)
        batch.prefetch_authors(handles=[("x", "ann")], customer_ids=["c-ann"], order_numbers=["123456"],
                               resolved_since=since)

        def same(when, **who) -> None:
            got = _ask(batch, when, **who)
            batch.flush()
            assert got == _ask(store, when, **who)

        same(since)
        same(since, customer_id=None, order_number=None)
        same(since, author_handle=None)
        # A case moves to the top, one is resolved, one reopens, one gains the customer.
        for n, change in ((1, dict(last_activity_at=T0 + timedelta(hours=2))),
                          (8, dict(status="resolved", resolved_at=T0 + timedelta(hours=1))),
                          (3, dict(status="open", resolved_at=None, last_activity_at=T0 + timedelta(hours=3))),
                          (9, dict(customer_id="c-ann"))):
            before = batch.get(ids[n - 1])
            assert before is not None
            batch.save(before.model_copy(update=change), before)
            same(since)
        # A new case of hers, then later posts: resolved cases fall out of the window one by one.
        new = _case(20, last_activity_at=T0 + timedelta(hours=4))
        new.id = store.insert_case(new)
        batch.written(new)
        for hours in (0, 1, 2, 5):
            same(T0 + timedelta(hours=hours) - timedelta(minutes=30))
        same(T0, author_handle="Ann")
        same(T0, author_handle="nobody", customer_id=None, order_number=None)
        # Versions as the store would have them: one bump per save.
        assert [store.get_case(i).version for i in (ids[0], ids[7], ids[2], ids[8])] == [2, 2, 2, 2]  # type: ignore[union-attr]


def test_a_batchs_answer_watch_marks_what_mark_answered_marks(store: Store):
    """Follow-ups sent at various times on two cases (and one still queued), answered by posts in
    time order: the batch's AnswerWatch (one read) marks the same attempts, with the same times."""
    from zoneinfo import ZoneInfo

    from doorstep.contact_history import AnswerWatch, mark_answered, record_attempt
    from doorstep.store import iso

    cases = [store.insert_case(_case(n)) for n in (1, 2)]
    sent = [(cases[0], -100), (cases[0], -30), (cases[0], 5), (cases[1], -80 * 60), (cases[1], -10), (cases[1], 50)]
    for n, (case_id, minutes) in enumerate(sent):
        at = T0 + timedelta(minutes=minutes)
        message_id = store.db.execute(
            "insert into outbound_messages (case_id, kind, channel, text, status, idempotency_key, created_at, sent_at) "
            "values (?, 'follow_up', 'email', 'any news?', ?, ?, ?, ?)",
            [case_id, "queued" if n == 2 else "sent", f"k{n}", iso(at), iso(at)]).lastrowid
        record_attempt(store, message_id=message_id, case_id=case_id, customer_id=None, brand=None, rule="test",
                       channel="email", planned_at=at, tz=ZoneInfo("UTC"))
    posts = [(cases[0], 0), (cases[1], 0), (cases[0], 20), (cases[1], 60), (cases[1], 61)]

    def answered() -> list[tuple]:
        return [tuple(r) for r in store.db.execute(
            "select message_id, answered_at, answer_minutes from contact_attempts order by message_id").fetchall()]

    with store.transaction():
        watch = AnswerWatch(store, T0, T0 + timedelta(minutes=61))
        counts = [watch.mark(case_id, T0 + timedelta(minutes=m)) for case_id, m in posts]
    batched = answered()
    store.db.execute("update contact_attempts set answered_at = null, answer_minutes = null")
    with store.transaction():
        singly = [mark_answered(store, case_id, T0 + timedelta(minutes=m)) for case_id, m in posts]
    assert (counts, batched) == (singly, answered())
    assert counts == [2, 1, 0, 1, 0]  # the queued one and the one sent 80 hours before never count
