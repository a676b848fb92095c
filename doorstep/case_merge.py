"""An agent's change to a case goes through unless someone else changed the same field.

The console holds the case as the agent saw it (its version, and the last audit event of the
case at that moment: the *mark*). When the stored version has moved on, the change is not
refused outright: the case's ``case.update`` audit events after the mark say who changed
which fields. Changes the agent made themselves, and changes a machine made on their behalf
(the outbox setting the status after *their* reply was sent: ``because.message_by``), are the
agent's own and never conflict. A field changed by someone else, or changed with no audit
event at all (a new post arriving, written by the pipeline), conflicts only when the agent is
changing that same field; otherwise the change is written on top of the newer version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from doorstep.models import Case
from doorstep.sla import CLOCK_FIELDS
from doorstep.store import CaseMergedError, StaleCaseError, Store

#: Computes a person's change against the case it is written on (the SLA clocks a status moves).
Follow = Callable[[Case, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Held:
    """The case as an agent is working from it."""

    case: Case
    #: The id of the case's newest audit event when it was read (0: none).
    mark: int


def audit_mark(store: Store, case_id: int) -> int:
    """The newest audit event of the case: what "since you opened it" starts after."""
    row = store.db.execute("select max(id) from audit_events where case_id = ?", [case_id]).fetchone()
    return int(row[0] or 0) if row else 0


def hold(store: Store, case: Case) -> Held:
    assert case.id is not None
    return Held(case=case, mark=audit_mark(store, case.id))


def is_own(actor: str, details: dict[str, Any], username: str) -> bool:
    """Whether a ``case.update`` was made by ``username`` or on their behalf."""
    because = details.get("because")
    return actor == username or (isinstance(because, dict) and because.get("message_by") == username)


def changes_since(store: Store, held: Held, username: str) -> tuple[set[str], set[str], list[str]]:
    """(fields changed by the agent or on their behalf, fields changed by others, who the others are)."""
    assert held.case.id is not None
    fields = set(Case.model_fields)
    own: set[str] = set()
    others: set[str] = set()
    who: list[str] = []
    for event in store.audit_trail(held.case.id, limit=10_000):
        if event.action != "case.update" or (event.id or 0) <= held.mark:
            continue
        changed = {k for k in event.details if k in fields}
        if is_own(event.actor, event.details, username):
            own |= changed
        else:
            others |= changed
            if event.actor not in who:
                who.append(event.actor)
    return own, others, who


def conflicting_fields(store: Store, held: Held, current: Case, username: str, wanted: set[str]) -> set[str]:
    """The fields of ``wanted`` that someone other than ``username`` changed since ``held``."""
    own, others, _ = changes_since(store, held, username)
    out = set()
    for field in set(wanted) - set(CLOCK_FIELDS):  # clocks follow the status; they are recomputed, not compared
        if getattr(current, field) == getattr(held.case, field):
            continue  # unchanged (or changed and changed back)
        if field in others or field not in own:  # another person, or a change with no audit (a new post)
            out.add(field)
    return out


def only_own_changes(store: Store, held: Held, current: Case, username: str) -> bool:
    """Whether every change since ``held`` is the agent's own (then the page just moves on to it)."""
    if current.version == held.case.version:
        return True
    own, others, _ = changes_since(store, held, username)
    if others:
        return False
    # Clocks (and the queue's sort fields the store derives) follow the changes that moved them.
    differing = {f for f in Case.model_fields if f not in ("version", "updated_by") and f not in CLOCK_FIELDS
                 and getattr(current, f) != getattr(held.case, f)}
    return differing <= own


def update_case_merging(store: Store, held: Held, actor: str, follow: Follow | None = None, **changes: Any) -> Case:
    """``store.update_case`` from the held version; on a newer version, written on top of it when no
    one else touched the same fields, else ``StaleCaseError`` as before.

    ``follow`` adds what the change does to the case's other fields (the SLA clocks), computed
    against the version it is written on, so a retry on a newer version never writes clocks
    worked out from an older one.
    """
    assert held.case.id is not None
    wanted = set(changes)
    try:
        return store.update_case(held.case.id, held.case.version, actor,
                                 **(follow(held.case, changes) if follow else changes))
    except CaseMergedError:
        raise  # a merged case takes no change, on any version
    except StaleCaseError as refused:
        for _ in range(3):
            current = store.get_case(held.case.id)
            if current is None or conflicting_fields(store, held, current, actor, wanted):
                raise refused
            try:
                return store.update_case(held.case.id, current.version, actor,
                                         **(follow(current, changes) if follow else changes))
            except CaseMergedError:
                raise
            except StaleCaseError as again:
                refused = again
        raise refused
