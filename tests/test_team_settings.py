"""Templates and alert rules a lead changes in the console: checked like the file, versioned, audited, in force.

Reported: leads could not edit templates or alert rules (read-only code blocks); removing a user had
no confirmation; the settings tabs jumped back to the first one after saving.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from doorstep.config import ConfigError, parse_config
from doorstep.jobs import FunctionJob
from doorstep.store import Store
from doorstep.team_settings import apply_settings, current_settings, history, save_setting, settings_stamp
from responders.config import alert_settings
from responders.team_settings import check_alert_rules, check_template
from responders.templates import list_templates

CONFIG = parse_config({"alerts": {"urgency_threshold": 0.8, "slack_webhook_url": "https://hooks.example/T/B/x"},
                       "responders": {"templates": {"late": "Hi {{ author_first_name }}, sorry it is late."}}})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A store where lee is a lead: save_setting checks its actor's role itself (tests/test_action_roles.py)."""
    from console.auth import add_user

    s = Store(tmp_path / "t.db")
    add_user(s, "lee", None, role="lead", email="lee@shop.example")
    yield s
    s.close()


def test_a_saved_template_is_in_force_versioned_audited_and_can_go_back_to_the_file(store: Store) -> None:
    assert "Hi {{ author_first_name }}, sorry it is late." == list_templates(apply_settings(CONFIG, store))["late"]
    first = save_setting(store, "template", "late", "Hi {{ author_first_name }}, we are on it.", "lee")
    second = save_setting(store, "template", "welcome", "Thanks for writing to us!", "lee")
    assert list_templates(apply_settings(CONFIG, store))["late"] == "Hi {{ author_first_name }}, we are on it."
    assert list_templates(apply_settings(CONFIG, store))["welcome"] == "Thanks for writing to us!"
    assert list_templates(CONFIG)["late"] == "Hi {{ author_first_name }}, sorry it is late."  # the base is untouched
    reset = save_setting(store, "template", "late", None, "lee")
    assert list_templates(apply_settings(CONFIG, store))["late"] == "Hi {{ author_first_name }}, sorry it is late."
    assert [v.id for v in history(store, "template", "late")] == [reset, first]
    assert settings_stamp(store) == reset > second > first
    actions = [(e.action, e.details["name"]) for e in store.audit_trail() if e.action.startswith("settings.")]
    assert sorted(actions) == [("settings.template_reset", "late"), ("settings.template_saved", "late"),
                               ("settings.template_saved", "welcome")]


def test_console_edits_pass_the_checks_the_file_passes(store: Store) -> None:
    with pytest.raises(ConfigError, match=r"responders\.templates\.late"):
        check_template(CONFIG, "late", "Hi {{ first_name ")  # a syntax error
    with pytest.raises(ConfigError, match="letters, digits and _"):
        check_template(CONFIG, "my template!", "hello")
    check_template(CONFIG, "late", "Hi {{ author_first_name }}")
    with pytest.raises(ConfigError, match=r"alerts\.urgency_threshold"):
        check_alert_rules(CONFIG, {"urgency_threshold": 1.5})
    with pytest.raises(ConfigError, match="slack_webhook_url cannot be changed in the console"):
        check_alert_rules(CONFIG, {"slack_webhook_url": "https://evil.example/hook"})
    check_alert_rules(CONFIG, {"urgency_threshold": 0.6, "spike.min_count": 12})


def test_saved_alert_rules_apply_on_top_of_the_file_keeping_its_destinations(store: Store) -> None:
    save_setting(store, "alert_rule", "urgency_threshold", 0.6, "lee")
    save_setting(store, "alert_rule", "spike.min_count", 12, "lee")
    rules = alert_settings(apply_settings(CONFIG, store))
    assert (rules.urgency_threshold, rules.spike.min_count) == (0.6, 12)
    assert rules.slack_webhook_url == "https://hooks.example/T/B/x"
    assert rules.spike.min_ratio == alert_settings(CONFIG).spike.min_ratio  # the rest of [alerts.spike] is kept
    assert current_settings(store) == {("alert_rule", "urgency_threshold"): 0.6, ("alert_rule", "spike.min_count"): 12}


def test_the_worker_restarts_its_jobs_with_the_new_config_when_a_lead_saves(store: Store) -> None:
    from commands.worker import Worker

    seen: list[float] = []

    def provider(s: Store, config, pipeline):  # type: ignore[no-untyped-def]
        threshold = alert_settings(config).urgency_threshold
        return [FunctionJob("probe", 0.05, lambda: seen.append(threshold))]

    worker = Worker(store, apply_settings(CONFIG, store), None, providers=[], reload_check_s=0.1,
                    reload_config=lambda: apply_settings(CONFIG, store), settings_stamp=lambda: settings_stamp(store))
    import commands.worker as worker_module

    worker_module.PROBE_PROVIDER = provider  # type: ignore[attr-defined]
    worker.providers = ["commands.worker:PROBE_PROVIDER"]
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 20
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    save_setting(store, "alert_rule", "urgency_threshold", 0.55, "lee")
    while 0.55 not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.stop()
    runner.join(20)
    del worker_module.PROBE_PROVIDER  # type: ignore[attr-defined]
    assert seen[0] == 0.8 and 0.55 in seen
    # Never two copies of a job: once the new config is seen, the old one never comes back.
    assert 0.8 not in seen[seen.index(0.55):]


# ------------------------------------------------------------------ the console (AppTest on the demo shop)
from test_console_apptest import db, demo_template, page, texts  # noqa: E402,F401 - fixtures


def test_save_template_is_never_disabled_so_the_first_click_after_typing_counts(db: Store) -> None:  # noqa: F811
    """Newcomer audit: the button was disabled while the text equalled the saved one, and the browser tells the
    server of typing only when the box loses focus, so the first click after typing (the one that takes the
    focus) landed on a disabled button and was lost. It is always live; with nothing changed it says so."""
    at = page("settings", "lee", db)
    at.selectbox(key="tpl_name").select("in_transit").run()
    assert not at.button(key="tpl_save").disabled
    at.button(key="tpl_save").click().run()
    assert not at.exception, at.exception
    assert "Nothing to save: the text is as saved." in texts(at), texts(at)
    assert history(db, "template", "in_transit") == []


def test_a_lead_edits_previews_and_saves_a_template_and_an_agent_cannot(db: Store) -> None:  # noqa: F811
    from console.auth import get_user

    at = page("settings", "lee", db)
    at.selectbox(key="tpl_name").select("in_transit").run()
    case_id = db.db.execute("select id from cases where link_confirmed = 1 and channel = 'x' limit 1").fetchone()[0]
    new_text = "Hello {{ author_first_name }}, we are looking into it right now."
    at.text_area(key="tpl_text_in_transit").input(new_text).run()
    at.number_input(key="tpl_preview_case").set_value(case_id).run()
    assert not at.exception, at.exception
    assert any(t.value.startswith("Hello ") and "looking into it right now" in t.value for t in at.text), texts(at)
    # A public reply may not carry the customer's e-mail: the preview says so before anything is saved.
    at.text_area(key="tpl_text_in_transit").input("We wrote to {{ email }}").run()
    assert f"On case {case_id}" in texts(at)
    at.text_area(key="tpl_text_in_transit").input(new_text).run()
    at.button(key="tpl_save").click().run()
    assert not at.exception, at.exception
    assert [v.value for v in history(db, "template", "in_transit")] == [new_text]
    assert at.tabs[0].label == "Templates"
    # A broken template is refused with the key named, and nothing is saved.
    at.text_area(key="tpl_text_in_transit").input("Hello {{ first_name ").run()
    at.button(key="tpl_save").click().run()
    assert "responders.templates.in_transit" in texts(at)
    assert len(history(db, "template", "in_transit")) == 1
    # An agent sees the templates but cannot change them (the page is closed to agents altogether).
    assert get_user(db, "ann").role == "agent"
    agent = page("settings", "ann", db)
    assert "cannot open this page" in texts(agent)


def test_a_lead_changes_an_alert_rule_in_the_console(db: Store) -> None:  # noqa: F811
    at = page("settings", "lee", db)
    at.number_input(key="alert_spike.min_count").set_value(15)
    at.button(key="FormSubmitter:alert_rules-Save alert rules").click().run()
    assert not at.exception, at.exception
    assert current_settings(db)[("alert_rule", "spike.min_count")] == 15
    assert "alert rules saved" in texts(at)
    at.number_input(key="alert_urgency_threshold").set_value(3.0)
    at.button(key="FormSubmitter:alert_rules-Save alert rules").click().run()
    assert "alerts.urgency_threshold" in texts(at)
    assert ("alert_rule", "urgency_threshold") not in current_settings(db)


def test_removing_a_user_needs_a_confirmation(db: Store) -> None:  # noqa: F811
    from console.auth import get_user

    at = page("settings", "ada", db)
    at.selectbox(key="uc_user").select("bob")
    at.button(key="FormSubmitter:user_change-Remove user").click().run()
    assert get_user(db, "bob") is not None and "Tick" in texts(at)
    at.checkbox(key="uc_remove_sure").check()
    at.button(key="FormSubmitter:user_change-Remove user").click().run()
    assert get_user(db, "bob") is None


# ------------------------------------------------------------------ audit (settings) findings 1, 2, 3, 4, 6
def test_a_console_edit_of_a_file_template_keeps_its_intents_and_statuses(store: Store) -> None:
    """Audit (settings) finding 4: saving the text dropped intents/statuses, so it was no longer suggested."""
    from responders.config import responders_settings

    config = parse_config({"timezone": "Europe/London", "brands": [{"name": "Larkspur"}], "responders": {"templates": {
        "claim": {"text": "We've opened a claim with {{ courier }}.", "intents": ["lost_or_missing"],
                  "statuses": ["delivered"]}}}})
    save_setting(store, "template", "claim", "We have opened a claim with {{ courier }}.", "lee")
    spec = responders_settings(apply_settings(config, store)).templates["claim"]
    assert not isinstance(spec, str)
    assert (spec.text, spec.intents, spec.statuses) == ("We have opened a claim with {{ courier }}.",
                                                         ["lost_or_missing"], ["delivered"])


def test_rules_that_name_a_template_are_known() -> None:
    """Audit (settings) finding 1: the console reset a template a rule names without a word."""
    from responders.templates import rules_naming

    config = parse_config({"timezone": "Europe/London", "brands": [{"name": "Larkspur"}], "responders": {
        "followup": {"template": "gentle_nudge", "brands": {"Larkspur": {"template": "lark_nudge"}}},
        "courier_link": {"template": "gentle_nudge"}, "proactive": {"message": True}}})
    assert rules_naming(config, "gentle_nudge") == ["[responders.followup] template",
                                                    "[responders.courier_link] template"]
    assert rules_naming(config, "lark_nudge") == ['[responders.followup.brands."Larkspur"] template']
    assert rules_naming(config, "proactive") == ["[responders.proactive] message"]
    assert rules_naming(config, "late") == []


def test_the_console_refuses_a_template_that_fails_to_fill_or_names_unknown_variables(db: Store) -> None:  # noqa: F811
    """Audit (settings) findings 2, 3 and 6, on the Settings page."""
    at = page("settings", "lee", db)
    at.selectbox(key="tpl_name").select("in_transit").run()
    case_id = db.db.execute("select id from cases where link_confirmed = 1 and channel = 'x' limit 1").fetchone()[0]
    broken = "Hi {{ author_first_name }}, we add {{ case_id + ' days' }} to your wait."
    at.text_area(key="tpl_text_in_transit").input(broken).run()
    at.number_input(key="tpl_preview_case").set_value(case_id).run()
    assert not at.exception, [e.message for e in at.exception]
    assert "unsupported operand" in texts(at)
    at.button(key="tpl_save").click().run()
    assert not at.exception and history(db, "template", "in_transit") == []
    errors = [str(e.value).replace("\\", "") for e in at.error]
    assert any("responders.templates.in_transit" in e and "unsupported operand" in e and "\n" not in e
               for e in errors), texts(at)
    at.text_area(key="tpl_text_in_transit").input("Hi {{ frist_name }}, it is {{ trackng_status }}.").run()
    at.button(key="tpl_save").click().run()
    assert history(db, "template", "in_transit") == []
    assert any("frist_name, trackng_status" in str(e.value).replace("\\", "") for e in at.error), texts(at)
    # A reply over the X limit: the preview says so, as the case page would.
    long = "Hi {{ author_first_name }}, thank you so much for getting in touch with {{ brand }} about this. " * 4
    at.text_area(key="tpl_text_in_transit").input(long).run()
    assert any("over the x limit of 280" in str(w.value).replace("\\", "") for w in at.warning), texts(at)


def test_the_console_will_not_remove_a_template_a_rule_names(db: Store, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                                             tmp_path: Path) -> None:
    """Audit (settings) finding 1: "Back to file version" removed the follow-up's template without a word."""
    from tests.conftest import DEMO_CONFIG

    named = tmp_path / "doorstep.toml"
    named.write_text(Path(DEMO_CONFIG).read_text() + '\n[responders.followup]\ntemplate = "gentle_nudge"\n')
    monkeypatch.setenv("DOORSTEP_CONFIG", str(named))
    save_setting(db, "template", "gentle_nudge", "Hi {{ first_name }}, did you see our reply?", "lee")
    at = page("settings", "lee", db)
    at.selectbox(key="tpl_name").select("gentle_nudge").run()
    assert "[responders.followup] template" in texts(at)
    at.checkbox(key="tpl_reset_sure").check().run()
    at.button(key="tpl_reset").click().run()
    assert history(db, "template", "gentle_nudge")[0].value is not None  # not removed
    assert any("[responders.followup] template" in str(e.value).replace("\\", "") for e in at.error), texts(at)


# ------------------------------------------------------------------ audit (settings): rules back to the file, audit values
def _file_with_alerts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lines: str) -> Path:
    """The demo's doorstep.toml with ``lines`` added under [alerts], where the console reads it."""
    from tests.conftest import DEMO_CONFIG

    path = tmp_path / "doorstep.toml"
    text = Path(DEMO_CONFIG).read_text()
    assert "[alerts]\n" in text
    path.write_text(text.replace("[alerts]\n", f"[alerts]\n{lines}\n", 1))
    monkeypatch.setenv("DOORSTEP_CONFIG", str(path))
    return path


def _settings_events(store: Store) -> list[tuple[str, dict]]:
    """The settings audit events, oldest first."""
    events = [(e.action, e.details) for e in store.audit_trail() if e.action.startswith("settings.")]
    return sorted(events, key=lambda event: event[1]["version"])


def test_an_alert_rule_saved_in_the_console_can_go_back_to_the_file(
        db: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: F811
    """Audit (settings): the console's 0.6 stayed in force although doorstep.toml said 0.95, with no way back."""
    _file_with_alerts(tmp_path, monkeypatch, "urgency_threshold = 0.95")
    save_setting(db, "alert_rule", "urgency_threshold", 0.6, "lee")
    at = page("settings", "lee", db)
    assert not at.exception, at.exception
    assert at.number_input(key="alert_urgency_threshold").value == 0.6
    # The page says which rule the console overrides, and what doorstep.toml says.
    shown = texts(at)
    assert any("urgency_threshold" in line and "0.6" in line and "overrides doorstep.toml" in line and "0.95" in line
               for line in shown.splitlines()), shown
    # Back to the file needs a confirmation, as for templates.
    at.selectbox(key="alert_reset_rule").select("urgency_threshold").run()
    assert at.button(key="alert_reset").disabled
    at.checkbox(key="alert_reset_sure").check().run()
    at.button(key="alert_reset").click().run()
    assert not at.exception, at.exception
    assert current_settings(db)[("alert_rule", "urgency_threshold")] is None
    assert "urgency_threshold is doorstep.toml's again: 0.95" in texts(at)
    assert at.number_input(key="alert_urgency_threshold").value == 0.95
    assert "overrides doorstep.toml" not in texts(at)


def test_emptying_an_optional_alert_rule_box_means_the_files_value(db: Store) -> None:  # noqa: F811
    """Audit (settings): emptying "Followers... (empty: the priority setting)" said "Nothing changed"."""
    at = page("settings", "lee", db)
    at.number_input(key="alert_followers_threshold").set_value(5000)
    at.button(key="FormSubmitter:alert_rules-Save alert rules").click().run()
    assert current_settings(db)[("alert_rule", "followers_threshold")] == 5000
    assert at.number_input(key="alert_followers_threshold").value == 5000
    at.number_input(key="alert_followers_threshold").set_value(None)
    at.button(key="FormSubmitter:alert_rules-Save alert rules").click().run()
    assert not at.exception, at.exception
    assert "Nothing changed" not in texts(at)
    assert current_settings(db)[("alert_rule", "followers_threshold")] is None
    assert at.number_input(key="alert_followers_threshold").value is None
    # An emptied box that overrides nothing is already the file's value: nothing to save.
    at.button(key="FormSubmitter:alert_rules-Save alert rules").click().run()
    assert "Nothing changed" in texts(at)
    assert len(history(db, "alert_rule", "followers_threshold")) == 2


def test_settings_audit_events_record_the_value_before_and_after(
        db: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # noqa: F811
    """Audit (settings): the events held only the setting's name and version, never what changed."""
    _file_with_alerts(tmp_path, monkeypatch, "urgency_threshold = 0.95")
    at = page("settings", "lee", db)
    at.number_input(key="alert_urgency_threshold").set_value(0.6)
    at.button(key="FormSubmitter:alert_rules-Save alert rules").click().run()
    at.selectbox(key="alert_reset_rule").select("urgency_threshold").run()
    at.checkbox(key="alert_reset_sure").check().run()
    at.button(key="alert_reset").click().run()
    assert not at.exception, at.exception
    rules = [(a, {k: d.get(k) for k in ("name", "before", "after")}) for a, d in _settings_events(db)]
    assert rules == [("settings.alert_rule_saved", {"name": "urgency_threshold", "before": 0.95, "after": 0.6}),
                     ("settings.alert_rule_reset", {"name": "urgency_threshold", "before": 0.6, "after": 0.95})]

    at.selectbox(key="tpl_name").select("in_transit").run()
    file_text = at.text_area(key="tpl_text_in_transit").value
    new_text = "Hello {{ author_first_name }}, we are looking into it right now."
    at.text_area(key="tpl_text_in_transit").input(new_text).run()
    at.button(key="tpl_save").click().run()
    at.checkbox(key="tpl_reset_sure").check().run()
    at.button(key="tpl_reset").click().run()
    assert not at.exception, at.exception
    templates = [(a, {k: d.get(k) for k in ("name", "before", "after")}) for a, d in _settings_events(db)
                 if a.startswith("settings.template")]
    assert templates == [("settings.template_saved", {"name": "in_transit", "before": file_text, "after": new_text}),
                         ("settings.template_reset", {"name": "in_transit", "before": new_text, "after": file_text})]


def test_audited_template_texts_are_truncated_and_the_core_knows_the_earlier_version(store: Store) -> None:
    long = "Hi {{ author_first_name }}, " + "we are so sorry about this. " * 60
    save_setting(store, "template", "late", long, "lee", before="Hi, sorry it is late.")
    save_setting(store, "template", "late", "Short again.", "lee")  # no before given: the version it replaces
    save_setting(store, "alert_rule", "spike.min_count", 12, "lee", before=10)
    first, second, rule = [d for _, d in _settings_events(store)]
    assert first["before"] == "Hi, sorry it is late."
    assert len(first["after"]) < 600 and first["after"].startswith(long[:200])
    assert f"{len(long)} characters" in first["after"]
    assert second["before"] == first["after"] and second["after"] == "Short again."
    assert (rule["before"], rule["after"]) == (10, 12)


def test_an_empty_followers_box_says_which_value_the_alert_then_uses(db: Store) -> None:  # noqa: F811
    """The box said "empty: doorstep.toml's (none)", but with none in the file the alert uses the
    priority setting's vip_followers: the placeholder names it."""
    at = page("settings", "lee", db)
    [box] = [b for b in at.number_input if b.key == "alert_followers_threshold"]
    assert "the priority setting" in (box.placeholder or "") and "(none)" not in (box.placeholder or "")


def test_the_worker_takes_up_an_edited_doorstep_toml_and_keeps_the_old_one_if_the_edit_is_broken(
        store: Store, tmp_path) -> None:  # noqa: ANN001
    """Settings audit, 2026-12-06: the worker kept the doorstep.toml it started with until it was
    restarted, and nothing said so. It now restarts its jobs with the file as edited, within
    reload_check_s; a file that no longer validates is logged and the config in force is kept."""
    import os

    from commands.cli import config_reloader
    from commands.worker import Worker

    path = tmp_path / "doorstep.toml"
    path.write_text("[alerts]\nurgency_threshold = 0.8\n", encoding="utf-8")
    reload_config, stamp = config_reloader(str(path), store)
    seen: list[float] = []

    def provider(s: Store, config, pipeline):  # type: ignore[no-untyped-def]
        threshold = alert_settings(config).urgency_threshold
        return [FunctionJob("probe", 0.05, lambda: seen.append(threshold))]

    import commands.worker as worker_module

    worker_module.PROBE_PROVIDER = provider  # type: ignore[attr-defined]
    worker = Worker(store, reload_config(), None, providers=["commands.worker:PROBE_PROVIDER"], reload_check_s=0.1,
                    reload_config=reload_config, settings_stamp=stamp)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 20
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    path.write_text("[alerts]\nurgency_threshold = 0.65\n", encoding="utf-8")
    os.utime(path, ns=(time.time_ns() + 2_000_000_000,) * 2)  # a later modification time, whatever the clock's grain
    while 0.65 not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    path.write_text("[alerts]\nurgency_threshold = \"high\"\n", encoding="utf-8")  # a broken edit
    os.utime(path, ns=(time.time_ns() + 4_000_000_000,) * 2)
    time.sleep(0.6)
    worker.stop()
    runner.join(20)
    del worker_module.PROBE_PROVIDER  # type: ignore[attr-defined]
    assert seen[0] == 0.8 and 0.65 in seen and seen[-1] == 0.65
