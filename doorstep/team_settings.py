"""Settings a lead changes in the console: reply templates and alert rules, versioned and audited.

doorstep.toml stays the base (reviewed like code, validated at start). On top of it, a lead may
edit a template or an alert rule in the console; each save is a new row in ``team_settings``
(who, when, what), never an update, so every earlier version can be read back and restored,
and each save is in the audit log. ``None`` as a value means "back to what doorstep.toml says".

The core stores and applies them; it does not validate them: templates and alert rules belong to
``responders``, whose checks (the same ones the file goes through) the console runs before
calling :func:`save_setting`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from doorstep.config import Config, config_source
from doorstep.models import utcnow
from doorstep.permissions import require
from doorstep.store import Store, iso, parse_time

#: What a lead may change here, and where in the config it lands.
KINDS = ("template", "alert_rule")
#: The permission (doorstep.permissions) a save of each kind needs, as the Settings page's tab checks it,
#: and how a refusal names the change.
KIND_PERMISSIONS: dict[str, tuple[str, str]] = {"template": ("edit_templates", "change reply templates"),
                                                "alert_rule": ("edit_alerts", "change alert rules")}


@dataclass(frozen=True)
class SettingVersion:
    id: int
    kind: str
    name: str
    value: Any
    author: str
    created_at: datetime
    note: str | None = None


#: "Not given" for :func:`save_setting`'s ``before``/``after`` (None is a value: "none", or doorstep.toml's).
_UNSET: Any = object()
#: How much of a template's text an audit event keeps, before and after (the full text is in ``team_settings``).
AUDIT_TEXT_CHARS = 400
#: Alert-rule names whose values are never written to the audit log (none is editable in the console today).
_SECRET_WORDS = ("token", "secret", "password", "key", "webhook", "url", "email", "apprise")


def audit_value(kind: str, name: str, value: Any) -> Any:
    """``value`` as a settings audit event records it: a long text cut to :data:`AUDIT_TEXT_CHARS`
    characters (saying how long it was), nothing for a rule whose name says it may carry a secret."""
    if kind != "template" and any(word in name.lower() for word in _SECRET_WORDS):
        return "(not recorded)"
    if isinstance(value, str) and len(value) > AUDIT_TEXT_CHARS:
        return f"{value[:AUDIT_TEXT_CHARS]}… [{len(value)} characters in all]"
    return value


def save_setting(store: Store, kind: str, name: str, value: Any, actor: str, note: str | None = None, *,
                 before: Any = _UNSET, after: Any = _UNSET) -> int:
    """Record a new version of one setting (``value`` None: back to doorstep.toml); returns its id.

    The audit event (``settings.KIND_saved``, or ``settings.KIND_reset`` for None) records the name,
    the version and the value in force ``before`` and ``after`` the change, as the caller (which knows
    doorstep.toml's and the built-in values) gives them. Not given: ``before`` is the console version
    this one replaces (left out where there is none, or it was a reset), ``after`` is ``value``
    (left out for a reset). Long texts are cut (:func:`audit_value`).

    ``actor`` must hold the kind's permission (:data:`KIND_PERMISSIONS`; a system actor such as the
    CLI may): checked here too, in the same transaction, so a page that forgot its check changes nothing.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown setting kind {kind!r} (known: {', '.join(KINDS)})")
    with store.write_transaction():
        require(store, actor, *KIND_PERMISSIONS[kind])
        if before is _UNSET:
            earlier = history(store, kind, name, limit=1)
            if earlier and earlier[0].value is not None:
                before = earlier[0].value
        if after is _UNSET and value is not None:
            after = value
        version = int(store.db["team_settings"].insert(
            {"kind": kind, "name": name, "value": json.dumps(value), "author": actor, "created_at": iso(utcnow()),
             "note": note}).last_pk)
        details: dict[str, Any] = {"name": name, "version": version}
        if before is not _UNSET:
            details["before"] = audit_value(kind, name, before)
        if after is not _UNSET:
            details["after"] = audit_value(kind, name, after)
        store.audit(actor, f"settings.{kind}_saved" if value is not None else f"settings.{kind}_reset", None, details)
    return version


def history(store: Store, kind: str, name: str, limit: int = 50) -> list[SettingVersion]:
    """Versions of one setting, newest first."""
    rows = store.db.execute(
        "select id, kind, name, value, author, created_at, note from team_settings where kind = ? and name = ? "
        "order by id desc limit ?", [kind, name, limit]).fetchall()
    return [SettingVersion(r[0], r[1], r[2], json.loads(r[3]), r[4], parse_time(r[5]), r[6]) for r in rows]  # type: ignore[arg-type]


def current_settings(store: Store) -> dict[tuple[str, str], Any]:
    """The latest value of every setting ever saved (None where it was reset to doorstep.toml)."""
    rows = store.db.execute(
        "select t.kind, t.name, t.value from team_settings t join "
        "(select kind, name, max(id) as id from team_settings group by kind, name) last on last.id = t.id").fetchall()
    return {(r[0], r[1]): json.loads(r[2]) for r in rows}


def settings_stamp(store: Store) -> int:
    """Changes whenever a setting is saved: the console and the worker reload their config on a new stamp."""
    row = store.db.execute("select coalesce(max(id), 0) from team_settings").fetchone()
    return int(row[0])


def apply_settings(config: Config, store: Store) -> Config:
    """``config`` with the console's templates and alert rules on top (a copy; ``config`` is untouched)."""
    saved = current_settings(store)
    if not saved:
        return config
    responders = dict(config.responders)
    templates = dict(responders.get("templates") or {})
    alerts = dict(config.alerts)
    for (kind, name), value in saved.items():
        if kind == "template":
            if value is None:
                continue  # reset: doorstep.toml's (or the built-in) template applies
            base = templates.get(name)
            if hasattr(base, "model_dump"):
                base = base.model_dump()
            if isinstance(value, str) and isinstance(base, dict):
                # A file template with intents/statuses ({ text = ..., intents = [...] }): the console
                # edits its text; it stays suggested for the same cases.
                value = {**base, "text": value}
            templates[name] = value
        elif kind == "alert_rule" and value is not None:
            _set_path(alerts, name, value)
    if templates:
        responders["templates"] = templates
    updated = config.model_copy(update={"responders": responders, "alerts": alerts})
    updated._source = config_source(config)
    return updated


def _set_path(section: dict[str, Any], dotted: str, value: Any) -> None:
    """``spike.min_count`` = 10 inside the [alerts] dict (nested tables copied, never shared)."""
    *parents, leaf = dotted.split(".")
    node = section
    for part in parents:
        child = dict(node.get(part) or {})
        node[part] = child
        node = child
    node[leaf] = value
