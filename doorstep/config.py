"""One ``doorstep.toml`` configures a deployment; secrets come from the environment.

The file is validated at start-up so that a typo is reported as
``doorstep.toml: sla.p1.first_response: Input should be a valid integer`` instead of
surfacing hours later as a case with no SLA clock. Every section has defaults, so a
missing file still gives a working (demo) configuration.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from doorstep.numbers import DEFAULT_ORDER_PATTERNS


class ConfigError(ValueError):
    """The configuration file is unreadable or invalid; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Brand(_Section):
    name: str
    #: channel -> our own care handle on that channel, e.g. {"x": "LarkspurHelp"}.
    handles: dict[str, str] = Field(default_factory=dict)
    keywords: list[str] = Field(default_factory=list)
    #: Email address customers write to; replies by email come from it.
    email: str | None = None


class Courier(_Section):
    name: str
    handles: dict[str, str] = Field(default_factory=dict)
    keywords: list[str] = Field(default_factory=list)
    #: Tracking-number formats this courier uses (keys of doorstep.numbers.TRACKING_FORMATS).
    tracking_formats: list[str] = Field(default_factory=list)
    #: Where escalations to this courier go (email address or signed webhook URL).
    escalation_email: str | None = None
    escalation_webhook: str | None = None


class SlaTarget(_Section):
    """Minutes allowed until first response and until resolution."""

    first_response: int = Field(gt=0)
    resolution: int = Field(gt=0)


def _default_sla() -> dict[str, SlaTarget]:
    return {
        "p1": SlaTarget(first_response=30, resolution=240),
        "p2": SlaTarget(first_response=60, resolution=480),
        "p3": SlaTarget(first_response=240, resolution=1440),
        "p4": SlaTarget(first_response=1440, resolution=4320),
    }


class Priority(_Section):
    """Priority score (0-100) thresholds for the SLA bands; p4 is everything below p3."""

    p1: float = 70.0
    p2: float = 50.0
    p3: float = 30.0
    vip_followers: int = 10_000


class Console(_Section):
    """How people log in to the console ([console] in doorstep.toml).

    Single sign-on is configured in Streamlit's own ``.streamlit/secrets.toml`` (an ``[auth]``
    section, see the README); these keys only say what Doorstep does around it.
    """

    #: Offer the username + password form. Set false to make single sign-on the only way in.
    password_login: bool = True
    #: How long a browser stays logged in (a signed cookie); 0 asks for the password on every visit.
    session_hours: float = Field(default=12.0, ge=0, le=24 * 30)


class Limits(_Section):
    """Resource limits ([limits] in doorstep.toml), each with a safe default.

    A limit says how long something may wait or how much it may take before Doorstep
    gives up on it and says so, instead of hanging or exhausting the machine.
    """

    #: Largest request body an inbound endpoint (the webhook, later SMS/e-mail replies) reads;
    #: enforced while the body streams in, larger is 413 (a ``[channels.webhook]
    #: max_body_bytes`` can only lower it for the webhook).
    inbound_body_max_bytes: int = Field(default=1_000_000, gt=0, le=100_000_000)
    #: Seconds a client has to send a request's headers, and then again its whole body;
    #: a stalled client gets 408 and its connection is closed.
    inbound_read_timeout_s: float = Field(default=10.0, gt=0, le=600)
    #: Seconds an idle keep-alive connection to an inbound endpoint stays open.
    inbound_keep_alive_s: int = Field(default=5, ge=1, le=600)
    #: Connections (and requests) served at once; more are answered 503 at once.
    inbound_max_connections: int = Field(default=200, ge=1, le=100_000)


class Imports(_Section):
    """Limits of ``doorstep import`` ([imports] in doorstep.toml)."""

    #: Longest post text accepted, in characters (X allows 25,000 for long posts).
    max_post_chars: int = Field(default=25_000, ge=1, le=1_000_000)
    #: Above this share of rejected rows an import commits nothing (a wrong file or format,
    #: most likely); --max-rejected overrides it for one run and --strict sets it to 0.
    max_rejected_share: float = Field(default=0.5, ge=0.0, le=1.0)
    #: Rows written per transaction: a long import holds the write lock only briefly.
    batch_rows: int = Field(default=500, ge=1, le=100_000)


class Config(_Section):
    timezone: str = "Europe/London"
    brands: list[Brand] = Field(default_factory=list)
    couriers: list[Courier] = Field(default_factory=list)
    order_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_ORDER_PATTERNS))
    sla: dict[str, SlaTarget] = Field(default_factory=_default_sla)
    priority: Priority = Field(default_factory=Priority)
    #: Free-form per-channel sections ([channels.x], [channels.mastodon], ...) owned by the
    #: listeners and responders, which validate their own keys.
    channels: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: [responders], [alerts], [reports]... sections validated by their owners.
    responders: dict[str, Any] = Field(default_factory=dict)
    alerts: dict[str, Any] = Field(default_factory=dict)
    reports: dict[str, Any] = Field(default_factory=dict)
    classifier: str | None = None
    console: Console = Field(default_factory=Console)
    imports: Imports = Field(default_factory=Imports)
    limits: Limits = Field(default_factory=Limits)
    #: The file this configuration came from, so errors found later name it (not always doorstep.toml).
    _source: str = PrivateAttr(default="doorstep.toml")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("sla")
    @classmethod
    def _all_bands(cls, value: dict[str, SlaTarget]) -> dict[str, SlaTarget]:
        missing = {"p1", "p2", "p3", "p4"} - set(value)
        if missing:
            raise ValueError(f"missing SLA bands: {', '.join(sorted(missing))}")
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def own_handles(self, channel: str) -> set[str]:
        """Our care handles on a channel (lower-case), so our replies never count as mentions."""
        return {b.handles[channel].lower().lstrip("@") for b in self.brands if channel in b.handles}

    def courier(self, name: str | None) -> Courier | None:
        return next((c for c in self.couriers if c.name == name), None)


def format_validation_error(source: str, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{source}: {key}: {item['msg']}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], source: str = "doorstep.toml") -> Config:
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None
    config._source = source
    return config


def config_source(config: Config | None) -> str:
    """The file name to put in front of an error about ``config`` ("doorstep.toml" for built-in defaults)."""
    return getattr(config, "_source", None) or "doorstep.toml"


def load_config(path: str | Path | None = None) -> Config:
    """Load ``path``, else ``$DOORSTEP_CONFIG``, else ``./doorstep.toml``, else built-in defaults."""
    explicit = path is not None or "DOORSTEP_CONFIG" in os.environ
    candidate = Path(path or os.environ.get("DOORSTEP_CONFIG") or "doorstep.toml")
    if not candidate.exists():
        if explicit:
            how = "--config" if path is not None else "$DOORSTEP_CONFIG"
            raise ConfigError(f"{candidate}: file not found (named by {how}; leave it out to use ./doorstep.toml "
                              "or the built-in defaults)")
        return Config()
    try:
        data = tomllib.loads(candidate.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{candidate}: {exc}") from None
    return parse_config(data, str(candidate))


def secret(name: str, default: str | None = None) -> str | None:
    """Read a secret from the environment, or from ``$DOORSTEP_SECRETS_FILE`` (KEY=VALUE lines).

    Secrets are never part of doorstep.toml, so the file can be committed and shared.
    """
    if name in os.environ:
        return os.environ[name]
    secrets_file = os.environ.get("DOORSTEP_SECRETS_FILE")
    if secrets_file and Path(secrets_file).exists():
        for line in Path(secrets_file).read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == name and not line.lstrip().startswith("#"):
                return value.strip().strip('"').strip("'")
    return default


def default_db_path() -> str:
    return os.environ.get("DOORSTEP_DB", "doorstep.db")
