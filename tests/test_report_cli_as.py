"""``doorstep report weekly`` names who asks with ``--as`` (default ``cli``), as every other command does;
``--actor`` still works for scripts written before, and is not shown in ``--help``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from doorstep.store import Store
from test_reports import small_store


@pytest.fixture
def report_args(tmp_path: Path) -> list[str]:
    small_store(tmp_path / "cli.db").close()
    config = tmp_path / "doorstep.toml"
    config.write_text('timezone = "Europe/London"\n[[brands]]\nname = "Larkspur"\n', encoding="utf-8")
    return ["--db", str(tmp_path / "cli.db"), "--config", str(config), "report", "weekly", "--week", "2026-W47",
            "--format", "html", "--no-redact"]


def unredacted_by(db: Path) -> list[str]:
    store = Store(db)
    try:
        return [e.actor for e in store.audit_trail() if e.action == "report.unredacted"]
    finally:
        store.close()


@pytest.mark.parametrize(("option", "expected"), [(["--as", "ann"], "ann"), (["--actor", "ann"], "ann"), ([], "cli")])
def test_the_unredacted_export_is_audited_under_as(report_args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    option: list[str], expected: str) -> None:
    from commands.cli import cli

    monkeypatch.setenv("USER", "someone-else")
    result = CliRunner().invoke(cli, [*report_args, *option, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert unredacted_by(tmp_path / "cli.db") == [expected]


def test_help_names_as_and_not_actor() -> None:
    from commands.cli import cli

    shown = CliRunner().invoke(cli, ["report", "weekly", "--help"]).output
    assert "--as" in shown and "--actor" not in shown


def test_as_and_its_old_name_together_are_refused(report_args: list[str], tmp_path: Path) -> None:
    from commands.cli import cli

    result = CliRunner().invoke(cli, [*report_args, "--as", "ann", "--actor", "kim", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "give --as only" in result.output
    assert unredacted_by(tmp_path / "cli.db") == []
