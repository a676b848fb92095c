"""Removing a user hands their open cases back to the queue (lead audit, finding 1).

Before: an admin removed tom (a leaver); his 12 open cases stayed "tom"'s, two of them never answered. An agent
on one read "tom has this case; a lead can reassign it" with no "Assign to me", the lead's Assign box read
"(nobody)" under "Assignee tom", and nothing said tom had gone. Now the removal unassigns each of his open cases,
audited as the admin's change with the reason, and says how many; resolved cases keep who worked them.
"""

from __future__ import annotations

from datetime import timedelta

from console.auth import add_user, remove_user
from doorstep.models import Case
from doorstep.store import Store
from doorstep.store.inbox import InboxQuery

from conftest import T0


def _case(store: Store, n: int, assignee: str | None, status: str = "open") -> int:
    return store.insert_case(Case(status=status, brand="Larkspur", channel="x", author_handle=f"c{n}", opened_at=T0,
                                  last_activity_at=T0, first_response_due=T0 + timedelta(hours=1), assignee=assignee,
                                  resolved_at=T0 if status == "resolved" else None, thread_id=f"t{n}"))


def test_removing_a_user_hands_their_open_cases_back_and_says_so(store: Store) -> None:
    for username, role in (("ada", "admin"), ("tom", "agent"), ("ann", "agent")):
        add_user(store, username, "correct horse battery", role=role, rounds=4)
    toms = [_case(store, 1, "tom"), _case(store, 2, "tom", "escalated"), _case(store, 3, "tom", "pending_customer")]
    done = _case(store, 4, "tom", "resolved")
    anns = _case(store, 5, "ann")

    handed_back = remove_user(store, "tom", actor="ada")

    assert sorted(handed_back) == sorted(toms)
    assert [store.get_case(c).assignee for c in toms] == [None, None, None]  # type: ignore[union-attr]
    assert store.get_case(done).assignee == "tom"  # type: ignore[union-attr]  # who worked it stays
    assert store.get_case(anns).assignee == "ann"  # type: ignore[union-attr]
    for case_id in toms:
        [event] = [e for e in store.audit_trail(case_id) if e.action == "case.update"]
        assert event.actor == "ada" and event.details.get("assignee") is None
        assert "tom was removed" in str(event.details)
    unassigned = {c.id for c in store.inbox(InboxQuery(assignee="(none)", limit=50))}
    assert set(toms) <= unassigned
