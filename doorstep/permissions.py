"""Who may do what: the roles, the least role each action needs, and the check the actions run.

Every console page and click checks the role before it acts, but a page that forgot its check (or a
future one) must still not let an agent make themselves admin or change the alert rules, so the
action functions themselves (``console.auth``'s user changes, ``doorstep.team_settings.save_setting``)
call :func:`require` too, inside the transaction that makes the change: a role changed a moment ago
counts. :func:`require_case_change` is the same check for a change of a case (giving a colleague's
case away is a lead's), for ``Store.update_case`` to run in its transaction. Here in the core so
both the core and the console use the one table (the core never imports the console;
``console.auth`` re-exports ``ROLES`` and ``PERMISSIONS``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the store checks case changes with this module: no import back at run time
    from doorstep.store import Store

ROLES: tuple[str, ...] = ("agent", "lead", "admin")

#: The least role allowed to do each action; roles are ordered agent < lead < admin.
PERMISSIONS: dict[str, str] = {
    "reply": "agent",
    "escalate": "agent",
    "note": "agent",
    "assign_self": "agent",
    "status": "agent",
    "snooze": "agent",
    "correct_labels": "agent",
    "relink": "agent",
    "regroup": "agent",
    "retry_message": "agent",
    "callback": "agent",
    "view_dashboard": "agent",
    "reassign": "lead",
    "edit_templates": "lead",
    "edit_alerts": "lead",
    "view_settings": "lead",
    "view_audit": "lead",
    "manage_users": "admin",
    "manage_channels": "admin",
    "manage_brands": "admin",
    "erase_personal_data": "admin",
}

#: Actors that are not console users and may do every action: the person at the machine owns the
#: database (``doorstep user ...``, ``doorstep demo``'s logins). No user may be named like one.
SYSTEM_ACTORS: frozenset[str] = frozenset({"cli", "demo"})

#: The product's own machinery, named as the actor of what it does to cases (the outbox setting the
#: status after a reply was sent, the dialogue's notes, the SLA monitor's escalations) and in the audit
#: log. They may change cases and leave notes, as the machinery is no console user; they may not
#: manage users or settings. No user may be named like one, so no one passes for the machinery.
SERVICE_ACTORS: frozenset[str] = frozenset({
    "pipeline", "outbox", "dialogue", "sla-monitor", "callback-sla", "follow-up", "follow_up", "proactive",
    "outreach", "courier_update", "report", "reports", "console", "import"})

#: Service actors named after what they serve ("courier:UPS", "alert:urgent", "cli:ann"). A username
#: never holds ":" (``console.auth.add_user``), so no user can pass for one.
SERVICE_ACTOR_PREFIXES: tuple[str, ...] = ("courier:", "alert:", "cli:")

#: The action a person's change of each case field is (``Store.update_case`` checks it). The assignee is
#: not here: taking a case or giving back one's own is "assign_self", any other change of hands
#: "reassign" (:func:`case_assignment`). The SLA clocks follow the status (and the snooze) that moved
#: them; the counts and times a split or merge works out again are "regroup".
CASE_FIELD_ACTIONS: dict[str, str] = {
    "status": "status", "resolved_at": "status", "snoozed_until": "snooze",
    **dict.fromkeys(("first_response_due", "next_response_due", "resolution_due", "awaiting_since", "sla_paused_at",
                     "priority_band"), "status"),
    **dict.fromkeys(("intent", "sentiment", "complaint", "priority", "priority_reasons"), "correct_labels"),
    **dict.fromkeys(("order_number", "customer_id", "tracking_number", "courier", "link_method", "link_confidence",
                     "link_confirmed"), "relink"),
}


class NotAllowed(PermissionError):
    """The actor's role does not allow the action; the one-line message says who may."""


def allows(role: str, action: str) -> bool:
    """Whether ``role`` may do ``action``; unknown roles and actions are refused."""
    needed = PERMISSIONS.get(action)
    return needed is not None and role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def who_may(action: str) -> str:
    """"an admin", "a lead or an admin": the roles that may do ``action``, as a refusal says it."""
    roles = ROLES[ROLES.index(PERMISSIONS[action]):]
    return " or ".join(f"{'an' if r[0] in 'aeiou' else 'a'} {r}" for r in roles)


def actor_role(store: Store, actor: str) -> str | None:
    """The role of the console user ``actor``, or None where no such user exists (now).

    On PostgreSQL the row is read FOR SHARE: inside a change's transaction a role change waits until
    the change commits, so a demotion can never commit between the check and the write it allowed
    (on SQLite the change's transaction holds the write lock, which gives the same order)."""
    lock = " for share" if store.dialect.postgres else ""
    row = store.db.execute(f"select role from users where username = ?{lock}", [actor.strip().lower()]).fetchone()
    return row[0] if row else None


def is_service_actor(actor: str) -> bool:
    """Whether ``actor`` names the product's own machinery (:data:`SERVICE_ACTORS`, ``courier:UPS``)."""
    return actor in SERVICE_ACTORS or actor.startswith(SERVICE_ACTOR_PREFIXES)


def require(store: Store, actor: str, action: str, doing: str | None = None, *,
            services: bool = False) -> str | None:
    """Refuse (:class:`NotAllowed`) unless ``actor`` may do ``action``; returns their role (None: a system actor).

    A console user must hold the action's role (read now, so call this inside the change's
    transaction); a system actor may act, and so may a service actor where ``services`` (case
    changes and notes); any other actor (a removed user's stale page, a made-up name) is refused.
    ``doing`` names the change in the message ("change roles").
    """
    if action not in PERMISSIONS:
        raise ValueError(f"unknown action {action!r}; see doorstep.permissions.PERMISSIONS")
    doing = doing or action.replace("_", " ")
    role = actor_role(store, actor)
    if role is None:
        if actor in SYSTEM_ACTORS or (services and is_service_actor(actor)):
            return None
        if services:
            # A case change or a note by a name that is no console user: the machine's own (a script, the CLI's
            # --as name, machinery not in SERVICE_ACTORS) acts as the CLI does, unless that name was a user who
            # has been removed: their stale page or session must not keep working cases.
            if was_removed(store, actor):
                raise NotAllowed(f"{actor} may not {doing}: {actor!r} is no longer a console user (removed); act as "
                                 "a user who may")
            return None
        raise NotAllowed(f"{actor} may not {doing}: {actor!r} is not a console user (removed?) nor a system actor "
                         f"({', '.join(sorted(SYSTEM_ACTORS))})")
    if not allows(role, action):
        raise NotAllowed(f"{actor} ({role}) may not {doing}: only {who_may(action)} may")
    return role


def was_removed(store: Store, username: str) -> bool:
    """Whether a console user of that name was removed (``console.auth.remove_user`` audits "user.remove")."""
    name = username.strip().lower()
    quoted = json.dumps(name)
    return store.db.execute("select 1 from audit_events where action = 'user.remove' and (details like ? or details "
                            "like ?) limit 1", [f'%"username":{quoted}%', f'%"username": {quoted}%']).fetchone() is not None


def case_field_action(field: str) -> str:
    """The action changing case ``field`` is (the assignee's depends on who: :func:`case_assignment`)."""
    return CASE_FIELD_ACTIONS.get(field, "regroup")


def case_assignment(case_id: int, actor: str, owner: str | None, assignee: str | None) -> tuple[str, str]:
    """(action, what it does) of ``actor`` setting the assignee of case ``case_id``, held by ``owner``, to
    ``assignee``: taking a free case or giving back one's own is "assign_self"; handing a case to someone
    else, or taking it from them, is "reassign" (a lead's)."""
    me = actor.strip().lower()
    if assignee == owner:
        return "assign_self", f"assign case {case_id} to {assignee}" if assignee else f"unassign case {case_id}"
    if owner and owner != me:
        if assignee == me:
            return "reassign", f"take case {case_id} from {owner}"
        return "reassign", (f"reassign case {case_id} from {owner} to {assignee}" if assignee
                            else f"unassign {owner} from case {case_id}")
    if assignee and assignee != me:
        return "reassign", f"assign case {case_id} to {assignee}"
    return "assign_self", f"take case {case_id}" if assignee else f"unassign themselves from case {case_id}"


def require_case_change(store: Store, actor: str, case_id: int, changes: Mapping[str, Any], owner: str | None,
                        action: str | None = None) -> None:
    """Refuse (:class:`NotAllowed`) a change of case ``case_id`` (now assigned to ``owner``) that ``actor``
    may not make: each action the changed fields are, the assignee's first (call inside the change's
    transaction). ``action`` names the operation the change is part of when its fields do not say it (a
    merge carries the other case's assignee over: "regroup"); then that alone is checked.
    Service and system actors may make any change (no user may take their names, so no query is needed)."""
    if actor in SYSTEM_ACTORS or is_service_actor(actor):
        return
    doings = {"status": f"change the status of case {case_id}", "snooze": f"snooze case {case_id}",
              "correct_labels": f"correct the labels of case {case_id}",
              "relink": f"change the order of case {case_id}", "regroup": f"split or merge case {case_id}"}
    needed: dict[str, str] = {}
    if action is not None:
        needed[action] = doings.get(action, f"{action.replace('_', ' ')} case {case_id}")
    else:
        if "assignee" in changes:
            what, doing = case_assignment(case_id, actor, owner or None, changes["assignee"] or None)
            needed[what] = doing
        for what in sorted({case_field_action(f) for f in changes if f != "assignee"}):
            needed.setdefault(what, doings.get(what, f"{what.replace('_', ' ')} case {case_id}"))
    for what, doing in (needed or {"status": doings["status"]}).items():
        require(store, actor, what, doing, services=True)
