"""doorstep.toml: validated at start, with messages that name the key and the problem."""

from __future__ import annotations

import pytest

from doorstep.config import ConfigError, load_config, secret


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
        ("[sla.p1]\nfirst_response = 5\nresolution = 10", "sla: Value error, missing SLA bands: p2, p3, p4"),
        ("timezone = ", "Invalid value"),
        ("[console]\nsession_hours = -1", "console.session_hours: Input should be greater than or equal to 0"),
        ("[console]\npassword_login = \"maybe\"", "console.password_login"),
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
