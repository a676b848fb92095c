"""Who may do what: the roles, the least role each action needs, and the check the actions run.

Every console page and click checks the role before it acts, but a page that forgot its check (or a
future one) must still not let an agent make themselves admin or change the alert rules, so the
action functions themselves (``console.auth``'s user changes, ``doorstep.team_settings.save_setting``)
call :func:`require` too, inside the transaction that makes the change: a role changed a moment ago
counts. Here in the core so both the core and the console use the one table (the core never imports
the console; ``console.auth`` re-exports ``ROLES`` and ``PERMISSIONS``).
"""

from __future__ import annotations

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
    """The role of the console user ``actor``, or None where no such user exists (now)."""
    row = store.db.execute("select role from users where username = ?", [actor.strip().lower()]).fetchone()
    return row[0] if row else None


def require(store: Store, actor: str, action: str, doing: str | None = None) -> str | None:
    """Refuse (:class:`NotAllowed`) unless ``actor`` may do ``action``; returns their role (None: a system actor).

    A console user must hold the action's role (read now, so call this inside the change's
    transaction); a system actor may act; any other actor (a removed user's stale page, a made-up
    name) is refused. ``doing`` names the change in the message ("change roles").
    """
    if action not in PERMISSIONS:
        raise ValueError(f"unknown action {action!r}; see doorstep.permissions.PERMISSIONS")
    doing = doing or action.replace("_", " ")
    role = actor_role(store, actor)
    if role is None:
        if actor in SYSTEM_ACTORS:
            return None
        raise NotAllowed(f"{actor} may not {doing}: {actor!r} is not a console user (removed?) nor a system actor "
                         f"({', '.join(sorted(SYSTEM_ACTORS))})")
    if not allows(role, action):
        raise NotAllowed(f"{actor} ({role}) may not {doing}: only {who_may(action)} may")
    return role
