"""doorstep.toml: validated at start, with messages that name the key and the problem."""

from __future__ import annotations

import pytest

from doorstep.config import Config, ConfigError, load_config, secret


def test_missing_default_file_gives_working_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOORSTEP_CONFIG", raising=False)
    config = load_config()
    assert config.timezone == "Europe/London" and set(config.sla) == {"p1", "p2", "p3", "p4"}


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('timezone = "Mars/Olympus"', "timezone: Value error, unknown time zone 'Mars/Olympus'"),
        ("[sla.p1]\nfirst_response = \"soon\"\nresolution = 10", "sla.p1.first_response"),
        ("[[brands]]\nname = \"A\"\nhandle = \"typo\"", "brands.0.handle: Extra inputs are not permitted"),
        ("[sla.p5]\nfirst_response = 5\nresolution = 10", "sla: Value error, unknown SLA band p5: the bands are p1, p2, p3, p4"),
        ("timezone = ", "Invalid value"),
        ("[console]\nsession_hours = -1", "console.session_hours: Input should be greater than or equal to 0"),
        ("[console]\npassword_login = \"maybe\"", "console.password_login"),
        # Before: both passed the start-up check and failed every import (and the webhook's 422) later.
        ('order_patterns = ["#(\\\\d+)", "(ORD-\\\\d+"]',
         "order_patterns.1: Value error, not a valid regular expression: missing ), unterminated subpattern"),
        ('[[couriers]]\nname = "UPS"\ntracking_formats = ["ups", "UPS"]',
         "couriers.0.tracking_formats.1: Value error, unknown format 'UPS'; known: ups, usps, fedex"),
    ],
)
def test_invalid_config_names_file_key_and_problem(tmp_path, toml, message):
    path = tmp_path / "doorstep.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_secrets_come_from_environment_then_secrets_file(tmp_path, monkeypatch):
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text("# comment\nX_BEARER_TOKEN=from-file\n")
    monkeypatch.setenv("DOORSTEP_SECRETS_FILE", str(secrets_file))
    monkeypatch.delenv("X_BEARER_TOKEN", raising=False)
    assert secret("X_BEARER_TOKEN") == "from-file"
    monkeypatch.setenv("X_BEARER_TOKEN", "from-env")
    assert secret("X_BEARER_TOKEN") == "from-env"
    assert secret("MISSING", "default") == "default"


def test_config_that_is_not_utf8_names_the_file_and_the_remedy(tmp_path):
    """Before: "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xe9 ..." named neither file nor remedy."""
    path = tmp_path / "cfg.toml"
    path.write_bytes(b'timezone = "Europe/London" # caf\xe9\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: not UTF-8 (byte 0xe9 at line 1, column 33); save it as UTF-8"


def test_config_with_a_byte_order_mark_loads(tmp_path):
    """Before: "cfg.toml: Invalid statement (at line 1, column 1)", which never mentioned the BOM."""
    path = tmp_path / "cfg.toml"
    path.write_bytes(b'\xef\xbb\xbftimezone = "Europe/Paris"\n')
    assert load_config(path).timezone == "Europe/Paris"


def test_a_secrets_file_that_is_not_there_is_an_error_naming_the_variable(tmp_path, monkeypatch):
    """Before: a DOORSTEP_SECRETS_FILE naming no file was ignored, so every secret read as "not set"."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOORSTEP_CONFIG", raising=False)
    missing = tmp_path / "nosecrets.env"
    monkeypatch.setenv("DOORSTEP_SECRETS_FILE", str(missing))
    monkeypatch.delenv("X_BEARER_TOKEN", raising=False)
    expected = f"DOORSTEP_SECRETS_FILE={missing}: file not found; fix the path or unset the variable"
    with pytest.raises(ConfigError) as err:
        load_config()  # checked at start, with or without a doorstep.toml
    assert str(err.value) == expected
    with pytest.raises(ConfigError, match="DOORSTEP_SECRETS_FILE=.*file not found"):
        secret("X_BEARER_TOKEN")
    monkeypatch.setenv("X_BEARER_TOKEN", "from-env")
    assert secret("X_BEARER_TOKEN") == "from-env"  # the environment still wins without reading the file


def test_an_sla_band_left_out_keeps_its_built_in_times(tmp_path):
    """A lead who changed only [sla.p1] was refused ("missing SLA bands: p2, p3, p4"), and the README
    gave neither the rule nor the built-in times (docs audit, 2026-12-06). The others keep theirs."""
    path = tmp_path / "doorstep.toml"
    path.write_text("[sla.p1]\nfirst_response = 60\nresolution = 90\n")
    config = load_config(path)
    assert (config.sla["p1"].first_response, config.sla["p1"].resolution) == (60, 90)
    defaults = Config().sla
    assert {band: (config.sla[band].first_response, config.sla[band].resolution) for band in ("p2", "p3", "p4")} == \
        {band: (defaults[band].first_response, defaults[band].resolution) for band in ("p2", "p3", "p4")}


def test_a_missing_doorstep_config_file_is_blamed_on_the_variable_not_on_config(tmp_path, monkeypatch):
    """`DOORSTEP_CONFIG=nonexist.toml doorstep user list` said "named by --config", an option the
    newcomer never typed (docs audit, 2026-12-06)."""
    from click.testing import CliRunner

    from commands.cli import cli

    monkeypatch.setenv("DOORSTEP_CONFIG", str(tmp_path / "nonexist.toml"))
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "d.db"), "user", "list"])
    assert result.exit_code == 1
    assert "named by $DOORSTEP_CONFIG" in result.output and "--config" not in result.output
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "d.db"), "--config", str(tmp_path / "other.toml"),
                                      "user", "list"])
    assert "other.toml: file not found (named by --config" in result.output
