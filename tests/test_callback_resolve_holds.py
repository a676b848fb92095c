"""A call back's "Resolved" follows the rule every other way of resolving follows (maintainer audit).

The rule "resolving a case past a reply or escalation that has not gone needs a confirmation" lived in the
case page only; the Call backs page's "Resolved" (``responders.dialogue.record_outcome``) resolved a case whose
reply had failed, without a word, and nobody watches a resolved case. Now the rule is the core's
(``doorstep.resolving``) and ``record_outcome`` refuses in one line naming what is pending, records nothing,
and resolves only with ``force`` (the page's "Resolved even though…").
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from doorstep import dialogue as rows
from doorstep.models import Case, utcnow
from doorstep.store import Store, iso
from responders.dialogue import DialogueError, record_outcome


def _case_with_a_failed_reply_and_a_call_back(store: Store) -> tuple[int, int]:
    now = utcnow()
    with store.transaction():
        case_id = store.insert_case(Case(status="open", channel="x", brand="Larkspur", opened_at=now - timedelta(hours=3),
                                         last_activity_at=now - timedelta(hours=1)))
        store.db.execute("insert into outbound_messages (case_id, kind, channel, target, text, status, attempts, "
                         "idempotency_key, created_by, created_at, last_error) values (?, 'reply', 'x', '@jane', "
                         "'Sorry, looking now', 'failed', 5, 't:1', 'ann', ?, 'X 403: forbidden')", [case_id, iso(now)])
        callback = rows.insert_callback(store, case_id=case_id, question_id=None, reason="asked", offered_by="ann",
                                        offered_at=now, phone="+447700900123")
        rows.schedule_callback(store, callback, requested_at=now, slot_at=None, slot_text=None, sla=timedelta(hours=2))
    return case_id, callback


def test_a_call_backs_resolved_does_not_resolve_past_a_failed_reply(store: Store) -> None:
    case_id, callback = _case_with_a_failed_reply_and_a_call_back(store)
    with pytest.raises(DialogueError) as refused:
        record_outcome(store, callback, "resolved", "ann")
    assert str(refused.value).startswith("Not resolved: 1 message is pending or failed (1 reply failed)")
    assert "\n" not in str(refused.value)
    assert store.get_case(case_id).status == "open"  # type: ignore[union-attr]
    assert rows.get_callback(store, callback).status == "scheduled"  # type: ignore[union-attr] - nothing recorded
    # Reached is still recorded (the call happened); resolving past the reply is a confirmed choice.
    record_outcome(store, callback, "resolved", "ann", force=True)
    assert store.get_case(case_id).status == "resolved"  # type: ignore[union-attr]
    assert rows.get_callback(store, callback).outcome == "resolved"  # type: ignore[union-attr]


def test_the_case_page_reads_the_same_rule() -> None:
    import console.case_view as page
    import doorstep.resolving as core

    assert page.resolve_holds is core.resolve_holds and page.pending_words is core.pending_words


def test_who_resolved_a_case_with_no_audit_line_is_read_from_the_case(store: Store) -> None:
    """Maintainer audit (mypy): ``resolved_words`` fell back to ``case.updated_by``, which :class:`Case` has not, so
    ``doorstep reply`` on a resolved case with no "resolved" audit line (older versions, rows written by hand) ended
    in ``AttributeError`` instead of asking for --force."""
    from responders.outbox import resolved_words

    now = utcnow()
    with store.transaction():
        case_id = store.insert_case(Case(status="resolved", channel="email", brand="Larkspur",
                                         opened_at=now - timedelta(hours=2), last_activity_at=now - timedelta(hours=1),
                                         resolved_at=now - timedelta(hours=1)))
    assert resolved_words(store, store.get_case(case_id)).startswith("someone resolved this case at ")  # type: ignore[arg-type]
    store.db.execute("update cases set updated_by = 'bob' where id = ?", [case_id])
    assert resolved_words(store, store.get_case(case_id)).startswith("bob resolved this case at ")  # type: ignore[arg-type]
