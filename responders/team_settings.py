"""The checks a console edit goes through before it is saved: the same ones doorstep.toml passes.

A template typed in the console is validated by the ``[responders]`` model (syntax, unknown
variables) and an alert rule by the ``[alerts]`` model (ranges, types), each on the whole
section as it would be after the change, so a console edit can never store what a file could not.
Where an alert goes (Slack webhook, e-mail, Apprise URLs) is not editable here: destinations may
carry secrets and stay in doorstep.toml and the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from doorstep.config import Config, ConfigError
from responders.config import Alerts, Responders, _format


@dataclass(frozen=True)
class AlertRule:
    """One alert setting a lead may change: its key under [alerts], what it is called, its type."""

    key: str
    label: str
    kind: type


EDITABLE_ALERT_RULES: tuple[AlertRule, ...] = (
    AlertRule("enabled", "Alerts on", bool),
    AlertRule("urgent_complaint", "Alert on urgent complaints", bool),
    AlertRule("urgency_threshold", "Urgency that counts as urgent (0-1)", float),
    AlertRule("vip_author", "Alert when a VIP or a large account writes", bool),
    AlertRule("followers_threshold", "Followers that make a large account (empty: doorstep.toml's, else the priority setting)",
              int),
    AlertRule("sla_breach", "Alert before and at an SLA breach", bool),
    AlertRule("sla_warn_minutes", "Warn this many minutes before a breach", float),
    AlertRule("listener_unhealthy", "Alert when a listener stops", bool),
    AlertRule("listener_stale_minutes", "A listener is stale after (minutes)", float),
    AlertRule("escalation_failed_minutes", "Alert when an escalation fails this long (minutes)", float),
    AlertRule("cooldown_minutes", "Repeat an incident's alert at most every (minutes)", float),
    AlertRule("max_per_hour", "At most this many alerts an hour", int),
    AlertRule("spike.enabled", "Alert on complaint spikes", bool),
    AlertRule("spike.min_count", "A spike needs at least this many complaints in the hour", int),
    AlertRule("spike.min_ratio", "...and this multiple of the usual hour", float),
)
RULE_KEYS = {rule.key for rule in EDITABLE_ALERT_RULES}


def check_template(config: Config, name: str, source: str) -> None:
    """Raise ConfigError (one line, naming the key) unless ``source`` would pass as [responders.templates.NAME]."""
    if not name.strip() or not name.replace("_", "").isalnum():
        raise ConfigError("responders.templates: a template name is letters, digits and _ (e.g. late_apology)")
    section = dict(config.responders)
    section["templates"] = {**(section.get("templates") or {}), name: source}
    try:
        Responders.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(_format("responders", exc, "console")) from None


def check_alert_rules(config: Config, changes: dict[str, Any]) -> None:
    """Raise ConfigError unless [alerts] with ``changes`` applied still validates (only editable keys)."""
    unknown = set(changes) - RULE_KEYS
    if unknown:
        raise ConfigError(f"alerts: {', '.join(sorted(unknown))} cannot be changed in the console (edit doorstep.toml)")
    section: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.alerts.items()}
    for key, value in changes.items():
        head, _, leaf = key.rpartition(".")
        target = section.setdefault(head, {}) if head else section
        target[leaf] = value
    try:
        Alerts.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(_format("alerts", exc, "console")) from None
