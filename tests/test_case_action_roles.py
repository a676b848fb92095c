"""Case actions check the actor's role themselves, as user and settings changes do (defence in depth).

Reported: the console pages check roles before they change a case, but ``Store.update_case`` and
``Store.add_note`` took any actor: from Python an agent could give a case to a colleague (reassigning
is a lead's), and a made-up actor or a removed user's stale page could change a case or leave a note.
Now a console user must hold the role of what the change does (the assignee: "assign_self" or
"reassign"; the status: "status"; a snooze: "snooze"; a note: "note"), the product's own machinery
(``SYSTEM_ACTORS``, ``SERVICE_ACTORS``) and names that are no console user (a script, the CLI's ``--as``)
may act, and a removed user is refused; nothing is written or audited when refused. SQLite and PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

from typing import Any

import pytest

from console import auth
from doorstep import case_merge
from doorstep.models import Case
from doorstep.permissions import PERMISSIONS, SERVICE_ACTORS, SYSTEM_ACTORS, NotAllowed, case_field_action
from doorstep.sla import CLOCK_FIELDS
from doorstep.store import Store
from conftest import T0
from test_action_roles import PASSWORD, team  # noqa: F401 - fixture: ann and bob (agents), lee (lead), ada (admin)


def _case(store: Store, assignee: str | None = None) -> int:
    return store.insert_case(Case(status="open", brand="Larkspur", channel="x", author_handle="someone",
                                  assignee=assignee, opened_at=T0, last_activity_at=T0))


def _state(store: Store, case_id: int) -> tuple[Any, ...]:
    """What a refused change must leave alone: the case, its notes and its audit trail."""
    return (store.get_case(case_id), store.notes(case_id), [e.action for e in store.audit_trail(case_id)])


def _update(store: Store, case_id: int, actor: str, **changes: Any) -> Case:
    case = store.get_case(case_id)
    assert case is not None
    return store.update_case(case_id, case.version, actor, **changes)


@pytest.mark.parametrize("owner,assignee,doing", [
    (None, "bob", "assign case {id} to bob"),
    ("ann", "bob", "assign case {id} to bob"),
    ("bob", "ann", "take case {id} from bob"),
    ("bob", None, "unassign bob from case {id}"),
    ("bob", "lee", "reassign case {id} from bob to lee"),
])
def test_an_agent_cannot_reassign_a_case(team: Store, owner: str | None, assignee: str | None, doing: str) -> None:
    case_id = _case(team, owner)
    before = _state(team, case_id)
    with pytest.raises(NotAllowed) as refused:
        _update(team, case_id, "ann", assignee=assignee)
    assert str(refused.value) == f"ann (agent) may not {doing.format(id=case_id)}: only a lead or an admin may"
    assert _state(team, case_id) == before  # nothing changed, nothing audited
    assert _update(team, case_id, "lee", assignee=assignee).assignee == assignee  # the lead may
    assert team.audit_trail(case_id)[-1].actor == "lee"


def test_the_console_path_is_checked_too(team: Store) -> None:
    """``update_case_merging`` (the case page's writes) goes through the same check, on its retry as well."""
    case_id = _case(team)
    held = case_merge.hold(team, team.get_case(case_id))  # type: ignore[arg-type]
    _update(team, case_id, "bob", status="pending_customer")  # a newer version: the retry path
    with pytest.raises(NotAllowed, match=r"^ann \(agent\) may not assign case \d+ to bob: only a lead"):
        case_merge.update_case_merging(team, held, "ann", assignee="bob")
    assert team.get_case(case_id).assignee is None  # type: ignore[union-attr]


def test_an_agent_takes_a_case_works_it_and_gives_it_back(team: Store) -> None:
    case_id = _case(team)
    assert _update(team, case_id, "ann", assignee="ann").assignee == "ann"
    assert _update(team, case_id, "ann", status="pending_customer").status == "pending_customer"
    assert _update(team, case_id, "ann", snoozed_until=T0).snoozed_until == T0
    assert team.add_note(case_id, "ann", "called the depot").author == "ann"
    assert _update(team, case_id, "ann", assignee=None).assignee is None  # their own: no lead needed
    assert [(e.actor, e.action) for e in team.audit_trail(case_id)] == [("ann", "case.update")] * 3 + [
        ("ann", "case.note"), ("ann", "case.update")]


def test_a_role_demoted_a_moment_ago_counts(team: Store) -> None:
    case_id = _case(team)
    auth.set_role(team, "lee", "agent", actor="ada")
    with pytest.raises(NotAllowed, match=r"^lee \(agent\) may not assign case \d+ to bob: only a lead or an admin"):
        _update(team, case_id, "lee", assignee="bob")


def test_a_removed_user_is_refused(team: Store) -> None:
    """A removed user's stale page or script: no change, no note, nothing audited."""
    auth.add_user(team, "ghost", PASSWORD, role="admin", rounds=4)
    case_id = _case(team, "ghost")
    auth.remove_user(team, "ghost")
    before = _state(team, case_id)
    with pytest.raises(NotAllowed) as refused:
        _update(team, case_id, "ghost", status="resolved", resolved_at=T0)
    message = str(refused.value)
    assert message.startswith(f"ghost may not change the status of case {case_id}: 'ghost' is no longer a console "
                              "user (removed)") and "\n" not in message, message
    with pytest.raises(NotAllowed, match=rf"^ghost may not add a note to case {case_id}: .*no longer a console user"):
        team.add_note(case_id, "ghost", "closing this")
    assert _state(team, case_id) == before


@pytest.mark.parametrize("actor", ["mallory", "script", "cli:night-job"])
def test_a_name_that_is_no_console_user_acts_as_the_machine(team: Store, actor: str) -> None:
    """A name that never was a console user is the machine's own (the CLI's ``--as``, a script), as the CLI is:
    whoever runs code against the database owns it. The console's people are who roles are for."""
    case_id = _case(team, "bob")
    assert _update(team, case_id, actor, status="pending_customer").status == "pending_customer"
    assert team.add_note(case_id, actor, "noted").author == actor


def test_a_merge_is_checked_as_the_operation_it_is(team: Store) -> None:
    """A merge carries the other case's assignee over: the operation ("regroup") is what the agent does."""
    case_id = _case(team)
    assert _update(team, case_id, "ann", action="regroup", assignee="bob", mention_count=2).assignee == "bob"
    auth.add_user(team, "ghost", PASSWORD, role="agent", rounds=4)
    auth.remove_user(team, "ghost")
    with pytest.raises(NotAllowed, match=rf"^ghost may not split or merge case {case_id}: .*no longer a console user"):
        _update(team, case_id, "ghost", action="regroup", mention_count=3)


@pytest.mark.parametrize("actor", sorted(SERVICE_ACTORS | SYSTEM_ACTORS) + ["courier:UPS", "alert:urgent"])
def test_the_products_own_actors_may_act(team: Store, actor: str) -> None:
    case_id = _case(team, "bob")
    assert _update(team, case_id, actor, assignee=None, status="escalated").status == "escalated"
    assert team.add_note(case_id, actor, "noted by the machine").author == actor


def test_the_service_actors_are_the_products_own() -> None:
    # "import": `doorstep import mentions --history` resolves the cases its past posts opened (2026-12-07); a user
    # named so would have had their role checked in its place.
    assert {"pipeline", "outbox", "dialogue", "sla-monitor", "follow-up", "proactive", "report",
            "reports", "import"} <= SERVICE_ACTORS
    assert not SERVICE_ACTORS & SYSTEM_ACTORS


@pytest.mark.parametrize("name", sorted(SERVICE_ACTORS))
def test_no_user_may_be_named_like_a_service_actor(team: Store, name: str) -> None:
    with pytest.raises(auth.AuthError, match=f"username '{name}' is kept for the {name} actor in the audit log"):
        auth.add_user(team, name, PASSWORD, rounds=4)
    assert auth.get_user(team, name) is None


def test_every_case_field_is_some_action() -> None:
    """A new case field must be given an action (or be a clock that follows the status)."""
    for field in set(Case.model_fields) - {"id", "version"}:
        action = case_field_action(field)
        assert action in PERMISSIONS, field
        assert action != "reassign"  # the assignee's action depends on who it goes to
    assert {case_field_action(f) for f in CLOCK_FIELDS} == {"status"}
    assert case_field_action("snoozed_until") == "snooze" and case_field_action("resolved_at") == "status"


def test_a_role_change_waits_for_a_case_change_that_read_the_old_role(team: Store) -> None:
    """Left open last stop: on PostgreSQL the actor's role was read without a lock, so a lead demoted in the
    same instant could still hand a case to a colleague after the demotion committed. The role is now read
    FOR SHARE inside the case change's transaction: the demotion waits for it (and so comes after it). On
    SQLite the case change holds the write lock, which gives the same order."""
    from doorstep.permissions import require_case_change

    case_id = _case(team, "bob")
    other = Store(team.path)
    try:
        with team.transaction():
            require_case_change(team, "lee", case_id, {"assignee": "ann"}, "bob")  # reads lee's role: lead
            with other.waiting_at_most(0.3), pytest.raises(Exception) as waited:
                auth.set_role(other, "lee", "agent", actor="ada")
            assert "lock" in str(waited.value).lower(), waited.value
        assert auth.set_role(other, "lee", "agent", actor="ada") is not False  # once the case change is done
    finally:
        other.close()
    assert team.db.execute("select role from users where username = 'lee'").fetchone()[0] == "agent"


# ---------------------------------------------------------------- audit of last stop's changes, F2 and F3
def _resolved_case(store: Store) -> int:
    case_id = _case(store, "bob")
    _update(store, case_id, "lee", status="resolved", resolved_at=T0)
    return case_id


def _team_config() -> Any:
    from doorstep.config import parse_config

    return parse_config({"brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}}],
                         "responders": {"escalation": {"targets": {"team": {"email": "team@shop.example"}}}}})


def test_escalating_a_resolved_case_reopens_it_and_clears_when_it_was_resolved(team: Store) -> None:
    """F2: escalating a resolved case set it "escalated" but kept ``resolved_at``, so the dashboard still counted it
    resolved (and a later resolution as on time), as reopening from Set status did before last stop."""
    from responders.escalation import escalate

    case_id = _resolved_case(team)
    escalate(team, _team_config(), case_id, "team", "customer chasing again", "bob")
    after = team.get_case(case_id)
    assert after is not None and after.status == "escalated" and after.resolved_at is None, after


def test_a_removed_user_escalates_nothing(team: Store) -> None:
    """F3: ``doorstep escalate --as <removed user>`` printed the refusal and exited 1, but the escalation was queued
    (and would be sent) and audited; the status change alone was refused. Nothing is written now."""
    from responders.escalation import escalate

    auth.remove_user(team, "bob", actor="ada")
    case_id = _case(team)
    before = (_state(team, case_id), team.outbound_for_case(case_id))
    with pytest.raises(NotAllowed, match="bob may not escalate case"):
        escalate(team, _team_config(), case_id, "team", "test", "bob")
    assert (_state(team, case_id), team.outbound_for_case(case_id)) == before
    # An already escalated case too (its status would not change, so the status check alone never ran).
    _update(team, case_id, "lee", status="escalated")
    before = (_state(team, case_id), team.outbound_for_case(case_id))
    with pytest.raises(NotAllowed):
        escalate(team, _team_config(), case_id, "team", "test", "bob")
    assert (_state(team, case_id), team.outbound_for_case(case_id)) == before


@pytest.mark.parametrize("channel", ["x", "x_dm"])
def test_a_removed_user_queues_no_reply(team: Store, channel: str) -> None:
    """F3: ``doorstep reply --as <removed user> --force`` on a resolved case queued the reply (it would go out on a
    case nobody watches, still resolved) and then failed on reopening it. Refused before anything is queued."""
    from responders.outbox import queue_reply
    from test_outbox import make_case, shop_config

    config = shop_config()
    case_id = make_case(team, config)
    _update(team, case_id, "lee", status="resolved", resolved_at=T0)
    auth.remove_user(team, "bob", actor="ada")
    before = (_state(team, case_id), team.outbound_for_case(case_id))
    with pytest.raises(NotAllowed, match="bob may not (reply|send a private message) on case"):
        queue_reply(team, config, case_id, "@jane we're on it, sorry.", "bob", channel=channel, force=True)
    assert (_state(team, case_id), team.outbound_for_case(case_id)) == before


def test_an_agent_cannot_take_a_colleagues_open_case_by_merging_it(team: Store) -> None:
    """Audit of last stop's changes, F4: jo (agent) merged tom's open case into hers; his posts and messages moved to
    her case and his became a pointer, which is taking a colleague's case without a lead (the reassign rule). A
    merge that involves an open case held by someone else needs a lead; one's own and unassigned cases merge."""
    from doorstep.config import parse_config
    from doorstep.regroup import merge_cases

    config = parse_config({})
    mine, theirs, free = _case(team, "ann"), _case(team, "bob"), _case(team)

    def merge(keep: int, other: int, actor: str) -> Case:
        k, o = team.get_case(keep), team.get_case(other)
        return merge_cases(team, config, keep, k.version, other, o.version, actor)  # type: ignore[union-attr]

    for keep, other in ((mine, theirs), (theirs, mine)):
        before = (_state(team, keep), _state(team, other))
        with pytest.raises(NotAllowed) as refused:
            merge(keep, other, "ann")
        assert "ann (agent) may not merge" in str(refused.value) and "bob's" in str(refused.value), refused.value
        assert (_state(team, keep), _state(team, other)) == before
    assert merge(mine, free, "ann").id == mine  # her own and an unassigned one: an agent's to merge
    assert merge(mine, theirs, "lee").assignee == "ann"  # a lead may


def test_merging_ones_open_case_into_a_colleagues_resolved_one_keeps_it_ones_own(team: Store) -> None:
    """Audit of stop 39, finding 9: sam (agent) merged his open case into priya's resolved one; the merge reopened hers
    and it stayed hers, so his open work was handed to a colleague without a lead (which assigning it is refused as).
    A merge that reopens the kept case carries the open case's owner (or none) with the work."""
    from doorstep.config import parse_config
    from doorstep.regroup import merge_cases

    config = parse_config({})
    for owner in ("ann", None):
        theirs = _case(team, "bob")
        _update(team, theirs, "bob", status="resolved")
        mine = _case(team, owner)
        k, o = team.get_case(theirs), team.get_case(mine)
        merged = merge_cases(team, config, theirs, k.version, mine, o.version, "ann")  # type: ignore[union-attr]
        assert merged.status == "open" and merged.assignee == owner, (merged.status, merged.assignee)


def test_merging_a_colleagues_resolved_case_into_an_unassigned_open_one_hands_nothing_over(team: Store) -> None:
    """Security audit of today's changes, finding 2: the other way round of the finding above. sam merged priya's
    resolved case into an unassigned open one; the kept case took her name with it, so open work became hers
    without a lead. A resolved case's owner does not come with a merge."""
    from doorstep.config import parse_config
    from doorstep.regroup import merge_cases

    config = parse_config({})
    theirs = _case(team, "bob")
    _update(team, theirs, "bob", status="resolved")
    free = _case(team)
    k, o = team.get_case(free), team.get_case(theirs)
    merged = merge_cases(team, config, free, k.version, theirs, o.version, "ann")  # type: ignore[union-attr]
    assert merged.status == "open" and merged.assignee is None, (merged.status, merged.assignee)
    mine = _case(team, "ann")  # an open case of one's own still brings its owner
    free = _case(team)
    k, o = team.get_case(free), team.get_case(mine)
    assert merge_cases(team, config, free, k.version, mine, o.version, "ann").assignee == "ann"  # type: ignore[union-attr]
