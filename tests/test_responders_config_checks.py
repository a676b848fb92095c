"""A rule's template name is checked when the config is taken into use, not when the first message is due.

``[responders.followup] template`` (and its per-brand overrides, and ``[responders.courier_link]
template``) is a template's name or its source. A misspelt name was accepted at start and failed
only when the first follow-up was due, maybe days later in the worker, the case skipped. The check
(:func:`responders.config.check_template_names`) refuses it in one line naming the setting and the
known template names. Templates a lead saved in the console count (a rule may name one that is not
in doorstep.toml), so with the store the check reads them too, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest

from doorstep.config import Config, ConfigError, parse_config
from doorstep.store import Store
from doorstep.team_settings import save_setting
from responders.config import check_template_names


def shop(**responders: Any) -> Config:
    return parse_config({"timezone": "Europe/London",
                         "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}}],
                         "responders": responders})


def refusal(config: Config, store: Store | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        check_template_names(config, store)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_a_misspelt_follow_up_template_is_refused_naming_the_setting_and_the_known_names() -> None:
    config = shop(followup={"template": "folow_up"}, templates={"gentle_nudge": "Hi {{ first_name }}!"})
    message = refusal(config)
    assert "responders.followup.template" in message and "'folow_up'" in message
    known = message.split("known: ", 1)[1]
    assert "follow_up" in known and "gentle_nudge" in known and "thank_you" in known


def test_a_brands_own_follow_up_template_and_the_courier_update_template_are_checked_too() -> None:
    message = refusal(shop(followup={"brands": {"Larkspur": {"template": "lark_nudge"}}}))
    assert "responders.followup.brands.Larkspur.template" in message and "'lark_nudge'" in message
    message = refusal(shop(courier_link={"template": "courier_updat"}))
    assert "responders.courier_link.template" in message and "'courier_updat'" in message
    assert "courier_update" in message.split("known: ", 1)[1]  # the courier link's own wording counts


@pytest.mark.parametrize("template", [
    "follow_up",                                            # built in
    "gentle_nudge",                                         # [responders.templates]
    "Hi {{ first_name }}, did our reply help?",             # source with Jinja markup
    "Did our reply help?",                                  # words: source, not a name
])
def test_names_that_exist_and_template_sources_pass(template: str) -> None:
    config = shop(followup={"template": template, "brands": {"Larkspur": {"template": template}}},
                  courier_link={"template": "courier_update"}, templates={"gentle_nudge": "Hi {{ first_name }}!"})
    assert check_template_names(config) is config


def test_a_template_saved_in_the_console_may_be_named_by_a_rule(store: Store) -> None:
    """doorstep.toml names a template a lead made in the console: known with the store, not without it."""
    from console.auth import add_user

    add_user(store, "lee", None, role="lead", email="lee@shop.example")  # save_setting checks the actor's role
    config = shop(followup={"template": "gentle_nudge"})
    assert "'gentle_nudge'" in refusal(config, store)
    save_setting(store, "template", "gentle_nudge", "Hi {{ first_name }}, did you see our reply?", "lee")
    assert check_template_names(config, store) is config
    assert "'gentle_nudge'" in refusal(config)  # the file alone does not have it
    # Put back to the file's version (it has none): the template is gone, the rule is refused again.
    save_setting(store, "template", "gentle_nudge", None, "lee")
    assert "'gentle_nudge'" in refusal(config, store)


def test_the_file_name_is_in_the_one_line(tmp_path: Any) -> None:
    from doorstep.config import load_config

    path = tmp_path / "doorstep.toml"
    path.write_text('timezone = "Europe/London"\n[responders.followup]\ntemplate = "folow_up"\n')
    message = refusal(load_config(str(path)))
    assert message.startswith(f"{path}: responders.followup.template: "), message


def test_doorstep_run_stops_at_start_on_a_misspelt_follow_up_template(tmp_path: Any) -> None:
    """The worker refused nothing: `run --once --job follow-up` exited 0 and every follow-up was skipped later."""
    from click.testing import CliRunner

    from commands.cli import cli

    path = tmp_path / "doorstep.toml"
    path.write_text('timezone = "Europe/London"\n[responders.followup]\ntemplate = "folow_up"\n')
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "shop.db"), "--config", str(path),
                                      "run", "--once", "--job", "follow-up"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "responders.followup.template" in lines[0] and "'folow_up'" in lines[0], result.output
    assert "Traceback" not in result.output
