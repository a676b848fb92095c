"""Passwords a guesser tries first are refused, wherever a password is set.

Security audit (2026-12-06, second run), finding 3: the only rule was 8 characters, so "12345678", "password" and
"aaaaaaaa" were accepted through `doorstep user add` and Settings → Add user alike. The strength estimate is
zxcvbn's (the library Dropbox published for this), with the username and name as words a guesser knows."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from commands.cli import cli
from console.auth import AuthError, add_user, check_password, set_password
from doorstep.store import Store


@pytest.mark.parametrize("weak", ["12345678", "password", "aaaaaaaa", "qwertyuiop", "priya2026", "priyapriya"])
def test_a_guessable_password_is_refused_with_the_reason(tmp_path: Path, weak: str) -> None:
    store = Store(tmp_path / "shop.db")
    try:
        with pytest.raises(AuthError) as refused:
            add_user(store, "priya", weak, role="agent", name="Priya", rounds=4)
        message = str(refused.value)
        assert message.startswith("password is too easy to guess") and "\n" not in message, message
        assert "a few uncommon words" in message, message
        add_user(store, "priya", "correct horse battery", role="agent", name="Priya", rounds=4)
        with pytest.raises(AuthError, match="too easy to guess"):
            set_password(store, "priya", weak, actor="admin", rounds=4)
        assert check_password(store, "priya", "correct horse battery")
    finally:
        store.close()


def test_the_cli_refuses_it_in_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "shop.db")
    result = CliRunner().invoke(cli, ["--db", db, "user", "add", "tim", "--password-stdin"], input="password1\n")
    assert result.exit_code != 0 and "too easy to guess" in result.output, result.output
    ok = CliRunner().invoke(cli, ["--db", db, "user", "add", "tim", "--password-stdin"], input="doorstep-demo\n")
    assert ok.exit_code == 0, ok.output
