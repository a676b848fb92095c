"""The password login's lockout (issue 17): one message while locked, unknown usernames locked
and audited exactly like known ones (a lockout must not tell which usernames exist), attempts
while locked audited, the lock's length stated, and an admin able to unlock (Settings and CLI)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from console import auth
from doorstep.store import Store
from tests.test_console_apptest import APP, PASSWORD, db, demo_template, log_in, page  # noqa: F401 - fixtures

WRONG = "guess-guess"


def _fresh() -> AppTest:
    return AppTest.from_file(APP, default_timeout=30).run()


def _lock(username: str) -> AppTest:
    """Type a wrong password LOCKOUT_FAILURES times for ``username``; returns that browser tab."""
    at = _fresh()
    for _ in range(auth.LOCKOUT_FAILURES):
        log_in(at, username, WRONG)
    return at


def _errors(at: AppTest) -> list[str]:
    return [str(e.value) for e in at.error]


def _actions(store: Store, actor: str) -> list[str]:
    return [e.action for e in store.audit_trail(limit=500) if e.actor == actor]


def test_right_password_while_locked_shows_only_the_lock_and_its_length(db: Store) -> None:
    at = _lock("bob")
    log_in(at, "bob", PASSWORD)  # the same tab that typed the wrong ones
    assert "user" not in at.session_state
    [message] = _errors(at)
    assert "Too many wrong passwords" in message and "Wrong username or password" not in message
    minutes = int(auth.LOCKOUT_WINDOW.total_seconds() // 60)
    assert f"{minutes} minutes" in message  # how long a lock lasts, stated
    [fresh_message] = _errors(log_in(_fresh(), "bob", PASSWORD))  # a new tab: the same single message
    assert "Too many wrong passwords" in fresh_message


def test_unknown_usernames_lock_and_are_audited_like_known_ones(db: Store) -> None:
    known = _lock("bob")
    unknown = _lock("nobody-here")
    assert _actions(db, "nobody-here").count("login.failed") == auth.LOCKOUT_FAILURES
    assert _actions(db, "bob").count("login.failed") == auth.LOCKOUT_FAILURES
    assert auth.locked_out(db, "nobody-here")
    # The sixth try reads the same whether the username exists or not.
    assert _errors(log_in(known, "bob", WRONG)) == _errors(log_in(unknown, "nobody-here", WRONG))
    assert "Too many wrong passwords" in _errors(unknown)[0]


def test_attempts_while_locked_are_audited_without_extending_the_lock(db: Store) -> None:
    at = _lock("bob")
    log_in(at, "bob", PASSWORD)
    log_in(at, "bob", WRONG)
    assert _actions(db, "bob").count("login.locked") == 2
    assert _actions(db, "bob").count("login.failed") == auth.LOCKOUT_FAILURES
    locked = [e for e in db.audit_trail(limit=500) if e.action == "login.locked"]
    assert all(PASSWORD not in str(e.details) and WRONG not in str(e.details) for e in locked)


def test_admin_unlocks_a_user_in_settings(db: Store) -> None:
    _lock("bob")
    assert auth.locked_out(db, "bob")
    at = page("settings", "ada", db)
    assert not at.exception
    [who] = [s for s in at.selectbox if s.key == "uc_user"]
    who.set_value("bob")
    [unlock] = [b for b in at.button if b.label == "Unlock"]
    unlock.click().run()
    assert not at.exception
    assert not auth.locked_out(db, "bob")
    [event] = [e for e in db.audit_trail(limit=500) if e.action == "user.unlock"]
    assert event.actor == "ada" and event.details["username"] == "bob"
    assert log_in(_fresh(), "bob", PASSWORD).session_state["user"].username == "bob"


def test_cli_user_unlock_mirrors_settings(db: Store) -> None:
    from commands.cli import cli

    _lock("bob")
    result = CliRunner().invoke(cli, ["--db", str(db.path), "user", "unlock", "bob"])
    assert result.exit_code == 0, result.output
    assert "unlocked bob" in result.output
    assert not auth.locked_out(db, "bob")
    assert [e.actor for e in db.audit_trail(limit=500) if e.action == "user.unlock"] == ["cli"]
    missing = CliRunner().invoke(cli, ["--db", str(db.path), "user", "unlock", "nobody-here"])
    assert missing.exit_code != 0 and "Traceback" not in missing.output and "nobody-here" in missing.output


def test_lockout_is_per_username_and_ends_after_the_window(db: Store) -> None:
    from datetime import timedelta

    from doorstep.models import utcnow

    _lock("bob")
    assert auth.locked_out(db, "bob") and not auth.locked_out(db, "ann")
    assert not auth.locked_out(db, "bob", now=utcnow() + auth.LOCKOUT_WINDOW + timedelta(seconds=1))
    assert log_in(_fresh(), "ann", PASSWORD).session_state["user"].username == "ann"


@pytest.mark.parametrize("name", ["BOB", " bob "])
def test_lock_counts_the_username_as_the_form_reads_it(db: Store, name: str) -> None:
    _lock(name)
    assert auth.locked_out(db, "bob")
