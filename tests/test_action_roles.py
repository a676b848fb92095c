"""The action functions check the actor's role themselves (defence in depth).

Reported: every console page and click checks the role, but ``console.auth.set_role(store, "bob",
"admin", actor="ann")`` worked for an agent, and ``save_setting`` took any actor string: one page that
forgot its check would let an agent make themselves admin or change the alert rules. Now a console
user must hold the action's role, the system actors (the CLI, the demo) may act, and any other actor
(a removed user's stale page, a made-up name) is refused. SQLite and PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from console import auth
from doorstep.store import Store
from doorstep.team_settings import history, save_setting

PASSWORD = "a long and uncommon passphrase"


@pytest.fixture
def team(store: Store) -> Store:
    """ann and bob (agents), lee (lead), ada (admin), all added at the machine (actor "cli")."""
    for username, role in (("ann", "agent"), ("bob", "agent"), ("lee", "lead"), ("ada", "admin")):
        auth.add_user(store, username, PASSWORD, role=role, rounds=4)
    return store


def _events(store: Store, prefix: str) -> list[str]:
    return [e.action for e in store.audit_trail(limit=500) if e.action.startswith(prefix)]


#: Each user-management action, done by ``actor`` on bob (or adding zoe).
USER_ACTIONS: dict[str, Callable[[Store, str], Any]] = {
    "add_user": lambda s, actor: auth.add_user(s, "zoe", None, role="admin", email="zoe@shop.example", actor=actor),
    "remove_user": lambda s, actor: auth.remove_user(s, "bob", actor=actor),
    "set_role": lambda s, actor: auth.set_role(s, "bob", "admin", actor=actor),
    "set_email": lambda s, actor: auth.set_email(s, "bob", "bob@shop.example", actor=actor),
    "unlock_user": lambda s, actor: auth.unlock_user(s, "bob", actor=actor),
    "set_password": lambda s, actor: auth.set_password(s, "bob", "another uncommon passphrase", actor=actor, rounds=4),
}


@pytest.mark.parametrize("action", list(USER_ACTIONS))
@pytest.mark.parametrize("actor", ["ann", "lee"])
def test_only_an_admin_manages_users(team: Store, action: str, actor: str) -> None:
    before = (auth.list_users(team), _events(team, "user."))
    with pytest.raises(PermissionError) as refused:
        USER_ACTIONS[action](team, actor)
    role = auth.get_user(team, actor).role  # type: ignore[union-attr]
    message = str(refused.value)
    assert message.startswith(f"{actor} ({role}) may not ") and message.endswith(": only an admin may"), message
    assert "\n" not in message
    assert (auth.list_users(team), _events(team, "user.")) == before  # nothing changed, nothing audited
    USER_ACTIONS[action](team, "ada")  # the admin may


def test_an_agent_cannot_make_themselves_admin(team: Store) -> None:
    with pytest.raises(PermissionError, match=r"^ann \(agent\) may not change roles: only an admin may$"):
        auth.set_role(team, "ann", "admin", actor="ann")
    assert auth.get_user(team, "ann").role == "agent"  # type: ignore[union-attr]


def test_a_user_may_change_their_own_password_but_not_a_colleagues(team: Store) -> None:
    auth.set_password(team, "ann", "another uncommon passphrase", actor="ann", rounds=4)
    assert auth.check_password(team, "ann", "another uncommon passphrase")
    with pytest.raises(PermissionError, match=r"ann \(agent\) may not change bob's password"):
        auth.set_password(team, "bob", "another uncommon passphrase", actor="ann", rounds=4)
    assert auth.check_password(team, "bob", PASSWORD)


@pytest.mark.parametrize("actor", ["ghost", "mallory", "admin", "system"])
def test_an_actor_that_is_neither_a_user_nor_a_system_actor_is_refused(team: Store, actor: str) -> None:
    """A removed user's stale page (ghost) or any made-up name: refused, naming who may act."""
    auth.add_user(team, "ghost", PASSWORD, role="admin", rounds=4)
    auth.remove_user(team, "ghost")
    with pytest.raises(PermissionError, match=rf"^{actor} may not change roles: .*not a console user"):
        auth.set_role(team, "bob", "admin", actor=actor)
    with pytest.raises(PermissionError, match=rf"^{actor} may not change alert rules"):
        save_setting(team, "alert_rule", "urgency_threshold", 0.6, actor)
    assert auth.get_user(team, "bob").role == "agent"  # type: ignore[union-attr]
    assert history(team, "alert_rule", "urgency_threshold") == []


def test_the_system_actors_are_named_and_may_act(team: Store) -> None:
    from doorstep.permissions import SYSTEM_ACTORS

    assert SYSTEM_ACTORS == frozenset({"cli", "demo"})  # the CLI's and `doorstep demo`'s actor strings
    for actor in sorted(SYSTEM_ACTORS):
        auth.set_role(team, "bob", "lead", actor=actor)
        save_setting(team, "template", "late", "We are on it.", actor)
    for name in sorted(SYSTEM_ACTORS):  # so a console user can never pass for one
        with pytest.raises(auth.AuthError, match=f"username '{name}' is kept for"):
            auth.add_user(team, name, PASSWORD, rounds=4)


def test_a_role_demoted_a_moment_ago_counts(team: Store) -> None:
    auth.add_user(team, "root", PASSWORD, role="admin", rounds=4)
    auth.set_role(team, "ada", "lead", actor="root")
    with pytest.raises(PermissionError, match=r"^ada \(lead\) may not change roles"):
        auth.set_role(team, "ann", "admin", actor="ada")


@pytest.mark.parametrize("kind,what", [("template", "change reply templates"), ("alert_rule", "change alert rules")])
def test_an_agent_cannot_change_templates_or_alert_rules(team: Store, kind: str, what: str) -> None:
    name, value = ("late", "We are on it.") if kind == "template" else ("urgency_threshold", 0.6)
    with pytest.raises(PermissionError) as refused:
        save_setting(team, kind, name, value, "ann")
    assert str(refused.value) == f"ann (agent) may not {what}: only a lead or an admin may"
    assert history(team, kind, name) == [] and _events(team, "settings.") == []
    version = save_setting(team, kind, name, value, "lee")  # the lead may, and so may the admin
    assert history(team, kind, name)[0].id == version and history(team, kind, name)[0].author == "lee"
    save_setting(team, kind, name, None, "ada")


def test_the_last_admin_is_neither_demoted_nor_removed(team: Store) -> None:
    with pytest.raises(PermissionError, match=r"^ada is the only admin: make another user admin first$"):
        auth.set_role(team, "ada", "lead", actor="ada")
    with pytest.raises(PermissionError, match=r"^ada is the only admin"):
        auth.remove_user(team, "ada", actor="ada")
    assert auth.get_user(team, "ada").role == "admin"  # type: ignore[union-attr]
    auth.add_user(team, "root", PASSWORD, role="admin", actor="ada", rounds=4)
    auth.set_role(team, "ada", "lead", actor="ada")  # another admin remains
    assert auth.get_user(team, "ada").role == "lead"  # type: ignore[union-attr]


def test_console_auth_keeps_the_permission_table() -> None:
    from doorstep import permissions

    assert auth.PERMISSIONS is permissions.PERMISSIONS and auth.ROLES == permissions.ROLES == ("agent", "lead", "admin")
    assert auth.can(auth.User("lee", "Lee", "lead"), "reassign") and not auth.can(auth.User("ann", "Ann", "agent"),
                                                                                   "reassign")
    assert auth.role_rank("admin") == 2
    with pytest.raises(auth.AuthError):
        auth.role_rank("owner")
