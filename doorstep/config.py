"""One ``doorstep.toml`` configures a deployment; secrets come from the environment.

The file is validated at start-up so that a typo is reported as
``doorstep.toml: sla.p1.first_response: Input should be a valid integer`` instead of
surfacing hours later as a case with no SLA clock. Every section has defaults, so a
missing file still gives a working (demo) configuration.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from doorstep.models import TrackingStatus
from doorstep.numbers import DEFAULT_ORDER_PATTERNS, TRACKING_FORMATS
from doorstep.redaction import register_config_values, register_secret


class ConfigError(ValueError):
    """The configuration file is unreadable or invalid; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _regular_expression(pattern: str) -> str:
    """An order pattern must compile now: else every import and webhook post fails on it later,
    reported as a data problem (and answered 422, so senders drop valid mentions)."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return pattern


def _tracking_format(name: str) -> str:
    """A courier's tracking format must be one doorstep.numbers reads, checked at load for the same reason."""
    if name not in TRACKING_FORMATS:
        raise ValueError(f"unknown format {name!r}; known: {', '.join(TRACKING_FORMATS)}")
    return name


#: The ``[channels.NAME]`` sections, each of which runs a listener: the core names them (the weekly
#: report lists one that never polled), ``listeners.config.SECTIONS`` holds their settings models
#: (tests/test_layout.py checks that the two agree).
LISTENER_CHANNELS: tuple[str, ...] = ("x", "mastodon", "bluesky", "webhook")

#: Channels on which a brand has accounts of its own (e-mail: the address replies come from).
ACCOUNT_CHANNELS = ("x", "mastodon", "bluesky", "email")


class Account(_Section):
    """One of a brand's own identities on a channel: the handle customers write to and reply from.

    Only the *names* of its secrets are configured (a prefix), never their values: with
    ``secrets = "FETTLE_X"`` the X credentials are ``FETTLE_X_ACCESS_TOKEN`` and friends, read
    from the environment or ``$DOORSTEP_SECRETS_FILE``.
    """

    #: The handle (X/Mastodon), Bluesky handle, or e-mail From address. Defaults to ``handles``.
    handle: str | None = None
    #: Prefix of this account's secret names; default ``<CHANNEL>_<HANDLE>`` (e.g. X_FETTLECARE).
    secrets: str | None = None
    #: X bills reads and posts: a daily cap on each for this account (None: no cap).
    max_reads_per_day: int | None = Field(default=None, ge=0)
    max_posts_per_day: int | None = Field(default=None, ge=0)


class SlaTarget(_Section):
    """Minutes allowed until first response and until resolution.

    Counted in business hours (see :class:`BusinessHours`) unless ``business_hours = false``
    (a P1 a team answers around the clock). The resolution target may equal the first-response
    target only when configured so; it can never be shorter (that would make the first answer
    due after the case should be resolved).
    """

    first_response: int = Field(gt=0)
    resolution: int = Field(gt=0)
    business_hours: bool = True

    @model_validator(mode="after")
    def _resolution_not_before_first_response(self) -> SlaTarget:
        if self.resolution < self.first_response:
            raise ValueError(f"resolution ({self.resolution} min) is shorter than first_response "
                             f"({self.first_response} min)")
        return self


#: The days of a week as the [business_hours] keys name them (Monday first, as date.weekday()).
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_day_hours(text: str) -> list[tuple[int, int]]:
    """"09:00-17:00" or "08:00-12:00, 13:00-18:00" or "closed" -> [(start, end) minutes after midnight].

    "24:00" ends a day; ranges must be in order and not overlap, so a typo cannot silently
    give the team a 30-hour day.
    """
    text = text.strip().lower()
    if text in ("closed", ""):
        return []
    out: list[tuple[int, int]] = []
    for part in text.split(","):
        start_text, sep, end_text = part.strip().partition("-")
        if not sep:
            raise ValueError(f"{part.strip()!r}: write hours as HH:MM-HH:MM (e.g. 09:00-17:30) or \"closed\"")
        start, end = _minute_of_day(start_text), _minute_of_day(end_text)
        if end <= start:
            raise ValueError(f"{part.strip()!r}: the end must be after the start")
        if out and start < out[-1][1]:
            raise ValueError(f"{part.strip()!r}: ranges must be in order and must not overlap")
        out.append((start, end))
    return out


def _minute_of_day(text: str) -> int:
    hours, sep, minutes = text.strip().partition(":")
    if not (sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"{text.strip()!r} is not a time of day (HH:MM)")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60:
        raise ValueError(f"{text.strip()!r} is not a time of day (00:00 to 24:00)")
    return value


class BusinessHours(_Section):
    """When the care team works ([business_hours], and per brand [brands.business_hours]).

    SLA clocks count only these hours (unless a band says ``business_hours = false``): a post
    on Saturday night is due on Monday morning, not "overdue 1d" when the team arrives.
    Public holidays come from the ``holidays`` package for ``country`` / ``subdivision``
    (e.g. "GB" / "ENG", "DE" / "BY", "US" / "NY"); ``country = ""`` counts none. A brand's
    section only needs the keys that differ from the default section.
    """

    #: IANA zone the hours are in; default: the top-level ``timezone``.
    timezone: str | None = None
    monday: str = "09:00-17:00"
    tuesday: str = "09:00-17:00"
    wednesday: str = "09:00-17:00"
    thursday: str = "09:00-17:00"
    friday: str = "09:00-17:00"
    saturday: str = "closed"
    sunday: str = "closed"
    #: ISO 3166 country code whose public holidays close the team ("" for none).
    country: str = "GB"
    #: Subdivision (state, nation) of ``country`` for regional holidays; "" for the whole country
    #: (ignored when ``country`` is "").
    subdivision: str = "ENG"
    #: Further days the team is closed (company shutdown), as dates: ["2026-12-24"].
    closed_dates: list[date] = Field(default_factory=list)

    @field_validator(*WEEKDAYS)
    @classmethod
    def _hours_of_a_day(cls, value: str) -> str:
        parse_day_hours(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/London)") from None
        return value

    @model_validator(mode="after")
    def _open_some_time_and_known_holidays(self) -> BusinessHours:
        if not any(parse_day_hours(getattr(self, day)) for day in WEEKDAYS):
            raise ValueError("every day is closed: SLA clocks would never run; open at least one day "
                             "(or set business_hours = false on the SLA bands)")
        if self.country:
            import holidays

            try:
                holidays.country_holidays(self.country, subdiv=self.subdivision or None)
            except NotImplementedError as exc:
                raise ValueError(f"public holidays: {exc} (see the country and subdivision codes of the "
                                 "holidays package)") from None
        return self

    def week(self) -> list[list[tuple[int, int]]]:
        """Open ranges per weekday (Monday first), in minutes after local midnight."""
        return [parse_day_hours(getattr(self, day)) for day in WEEKDAYS]


class Brand(_Section):
    name: str
    #: channel -> our own care handle on that channel, e.g. {"x": "LarkspurHelp"}.
    handles: dict[str, str] = Field(default_factory=dict)
    keywords: list[str] = Field(default_factory=list)
    #: Email address customers write to; replies by email come from it.
    email: str | None = None
    #: The brand's published phone number (a helpline): the one number a public reply may give
    #: (responders.outbox refuses any other phone number in public).
    phone: str | None = None
    #: channel -> this brand's account there (credentials by secret name); see :class:`Account`.
    #: A channel listed only in ``handles`` is an account too, with the default secret names.
    accounts: dict[str, Account] = Field(default_factory=dict)
    #: This brand's team hours, where they differ from [business_hours] (only the keys that differ).
    business_hours: dict[str, Any] | None = None
    #: This brand's SLA targets for some bands, where they differ from [sla] (e.g. [brands.sla.p1]).
    sla: dict[str, SlaTarget] = Field(default_factory=dict)

    @field_validator("business_hours")
    @classmethod
    def _valid_hours(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                BusinessHours.model_validate(value)
            except ValidationError as exc:
                raise ValueError("; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'business_hours'}: {e['msg']}"
                                           for e in exc.errors())) from None
        return value

    @field_validator("sla")
    @classmethod
    def _known_bands(cls, value: dict[str, SlaTarget]) -> dict[str, SlaTarget]:
        unknown = set(value) - {"p1", "p2", "p3", "p4"}
        if unknown:
            raise ValueError(f"unknown SLA bands: {', '.join(sorted(unknown))} (bands are p1, p2, p3, p4)")
        return value

    @model_validator(mode="after")
    def _accounts_and_handles_agree(self) -> Brand:
        for channel, account in self.accounts.items():
            if channel not in ACCOUNT_CHANNELS:
                raise ValueError(f"accounts.{channel}: unknown channel; expected one of {', '.join(ACCOUNT_CHANNELS)}")
            known = self.email if channel == "email" else self.handles.get(channel)
            if account.handle is None:
                if not known:
                    raise ValueError(f"accounts.{channel}: give a handle (or set handles.{channel})")
                account.handle = known
            account.handle = account.handle.strip().lstrip("@")
            if channel == "email":
                self.email = self.email or account.handle
            else:
                self.handles.setdefault(channel, account.handle)
        return self


class Courier(_Section):
    """A courier we ship with ([[couriers]] in doorstep.toml): how posts name it, its tracking numbers, where its
    escalations go and the helpline it publishes (``phone``), which a public reply may give as a brand's own."""

    name: str
    handles: dict[str, str] = Field(default_factory=dict)
    keywords: list[str] = Field(default_factory=list)
    #: Tracking-number formats this courier uses (keys of doorstep.numbers.TRACKING_FORMATS).
    tracking_formats: list[Annotated[str, AfterValidator(_tracking_format)]] = Field(default_factory=list)
    #: Where escalations to this courier go (email address or signed webhook URL).
    escalation_email: str | None = None
    escalation_webhook: str | None = None
    #: The courier's published customer phone number ("call DPD on 0121 275 0500"): a public reply may give it, as
    #: it may a brand's ``phone`` (responders.outbox refuses any other phone number in public).
    phone: str | None = None


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


class Cases(_Section):
    """When a new post joins one of its author's cases ([cases] in doorstep.toml).

    A case is one issue: one brand and, when known, one order. A post joins an open case of
    its author only when it is in the same conversation, quotes the same order or tracking
    number, or (quoting no other order) is about the same brand within ``join_window_hours``
    of the case's last post. A resolved case reopens only for its own thread or order, and
    only within ``reopen_window_hours`` of its resolution; later, a new case is opened.
    """

    join_window_hours: float = Field(default=48.0, ge=0, le=24 * 90)
    reopen_window_hours: float = Field(default=72.0, ge=0, le=24 * 365)


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

    #: Seconds a writer waits for another writer's lock on the database (SQLite's busy
    #: timeout) before "database is locked". Writers hold the lock for one bounded batch.
    busy_timeout_s: float = Field(default=10.0, gt=0, le=600)
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
    #: A courier's words for a scan that Doorstep does not know, each with the status it is
    #: ({ "Sendung sortiert" = "in_transit" }); the common ones are known (doorstep/courier_words.py).
    tracking_statuses: dict[str, TrackingStatus] = Field(default_factory=dict)


class Config(_Section):
    timezone: str = "Europe/London"
    brands: list[Brand] = Field(default_factory=list)
    couriers: list[Courier] = Field(default_factory=list)
    order_patterns: list[Annotated[str, AfterValidator(_regular_expression)]] = Field(
        default_factory=lambda: list(DEFAULT_ORDER_PATTERNS))
    sla: dict[str, SlaTarget] = Field(default_factory=_default_sla)
    #: When the team works: SLA clocks count these hours only (defaults: Mon-Fri 09:00-17:00,
    #: public holidays of England); brands may differ ([brands.business_hours]).
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    priority: Priority = Field(default_factory=Priority)
    cases: Cases = Field(default_factory=Cases)
    #: Free-form per-channel sections ([channels.x], [channels.mastodon], ...) owned by the
    #: listeners and responders, which validate their own keys.
    channels: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: [responders], [alerts], [reports]... sections validated by their owners.
    responders: dict[str, Any] = Field(default_factory=dict)
    alerts: dict[str, Any] = Field(default_factory=dict)
    reports: dict[str, Any] = Field(default_factory=dict)
    classifier: str | None = None
    console: Console = Field(default_factory=Console)
    limits: Limits = Field(default_factory=Limits)
    imports: Imports = Field(default_factory=Imports)
    #: The file this configuration came from, so errors found later name it (not always doorstep.toml).
    _source: str = PrivateAttr(default="doorstep.toml")
    _hours: dict[str | None, BusinessHours] = PrivateAttr(default_factory=dict)
    #: Working calendars built from the hours (doorstep.business_hours), one per brand and kind.
    _calendars: dict[Any, Any] = PrivateAttr(default_factory=dict)

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
        """A band the file leaves out keeps its built-in times (a lead changes one band with one
        section, as a brand's [brands.sla.pN] does); a band that does not exist is a typo."""
        defaults = _default_sla()
        unknown = sorted(set(value) - set(defaults))
        if unknown:
            raise ValueError(f"unknown SLA band {', '.join(unknown)}: the bands are {', '.join(defaults)}")
        return {band: value.get(band, target) for band, target in defaults.items()}

    @model_validator(mode="after")
    def _brand_hours(self) -> Config:
        """Each brand's hours: the default [business_hours] with the brand's own keys over it."""
        hours: dict[str | None, BusinessHours] = {None: self.business_hours}
        for brand in self.brands:
            if brand.business_hours:
                try:
                    hours[brand.name] = BusinessHours.model_validate(
                        {**self.business_hours.model_dump(exclude_unset=True), **brand.business_hours})
                except ValidationError as exc:
                    raise ValueError(f"brand {brand.name!r}: business_hours: {exc.errors()[0]['msg']}") from None
        self._hours = hours
        return self

    def hours_for(self, brand: str | None) -> BusinessHours:
        """The business hours of ``brand``'s team (the default section when it has none of its own)."""
        return self._hours.get(brand) or self.business_hours

    def sla_target(self, band: str, brand: str | None = None) -> SlaTarget:
        """The SLA target of a priority band for ``brand`` (its own [brands.sla.pN], else [sla.pN])."""
        own = next((b.sla.get(band) for b in self.brands if b.name == brand), None)
        return own or self.sla[band]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_time(self, value: datetime | str | None, fmt: str = "%a %d %b %H:%M", *, zone: bool = False) -> str:
        """A time as the team reads it, in the configured zone ("Mon 07 Dec 09:30", with ``zone``
        "... (Europe/London)"); a stored ISO string is read first. Pages, alerts and escalation
        e-mails share it, so a person never meets a UTC ISO stamp."""
        if value is None or value == "":
            return "-"
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        local = moment.astimezone(self.tz)
        text = local.strftime(fmt)
        if "%H" in fmt and local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset():
            # The hour the clocks go back happens twice: its zone's name (BST, then GMT) tells the two apart.
            text += f" {local.tzname()}"
        return text + (f" ({self.timezone})" if zone else "")

    def own_handles(self, channel: str) -> set[str]:
        """Our care handles on a channel (lower-case), so our replies never count as mentions."""
        return {b.handles[channel].lower().lstrip("@") for b in self.brands if channel in b.handles}

    def listened_handles(self, channel: str) -> set[str]:
        """Every handle of ours on a channel, brands' and couriers' (lower-case, no leading @; a Mastodon handle also by
        its local part), so a post that names one is written to us whichever listener found it
        (:func:`doorstep.classifying.addressed_flags`)."""
        handles = {h.handles[channel].lower().lstrip("@") for h in [*self.brands, *self.couriers] if channel in h.handles}
        return handles | {h.split("@", 1)[0] for h in handles}

    def courier(self, name: str | None) -> Courier | None:
        """The configured courier ``name`` is, matched as :func:`find_courier` does ("ups ", "UPS")."""
        return find_courier(self.couriers, name)


def courier_key(name: str) -> str:
    """What two spellings of one courier's name share: "UPS", "ups" and "UPS " are one courier.

    Shops type courier names by hand in their order exports; the care team means one courier."""
    return " ".join(name.split()).casefold()


def find_courier(couriers: Sequence[Courier], name: str | None) -> Courier | None:
    """The courier of ``couriers`` whose name ``name`` is, whatever its case and spacing (None: none is)."""
    if not name:
        return None
    key = courier_key(name)
    return next((c for c in couriers if courier_key(c.name) == key), None)


def format_validation_error(source: str, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{source}: {key}: {item['msg']}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], source: str = "doorstep.toml") -> Config:
    register_config_values(data)  # a credential written literally in the file is still masked everywhere
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
    check_secrets_file()
    explicit = path is not None or "DOORSTEP_CONFIG" in os.environ
    candidate = Path(path or os.environ.get("DOORSTEP_CONFIG") or "doorstep.toml")
    if not candidate.exists():
        if explicit:
            how = "--config" if path is not None else "$DOORSTEP_CONFIG"
            raise ConfigError(f"{candidate}: file not found (named by {how}; leave it out to use ./doorstep.toml "
                              "or the built-in defaults)")
        return Config()
    raw = candidate.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # an editor's byte-order mark is not TOML, but is no mistake either
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"{candidate}: not UTF-8 (byte 0x{raw[exc.start]:02x} at line {line}, column {column}); "
                          "save it as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{candidate}: {exc}") from None
    return parse_config(data, str(candidate))


def check_secrets_file() -> None:
    """A ``$DOORSTEP_SECRETS_FILE`` that names no file is an error, not "no secrets": ignored, it made
    every secret read as unset, and the message then blamed the secret instead of the path."""
    secrets_file = os.environ.get("DOORSTEP_SECRETS_FILE")
    if secrets_file and not Path(secrets_file).is_file():
        raise ConfigError(f"DOORSTEP_SECRETS_FILE={secrets_file}: file not found; fix the path or unset the variable")


def secret(name: str, default: str | None = None) -> str | None:
    """Read a secret from the environment, or from ``$DOORSTEP_SECRETS_FILE`` (KEY=VALUE lines).

    Secrets are never part of doorstep.toml, so the file can be committed and shared.
    """
    value = _secret_value(name, default)
    if value is not default:
        register_secret(value, name)  # whatever we read as a secret is masked in every log, error and audit line
    return value


def _secret_value(name: str, default: str | None) -> str | None:
    if name in os.environ:
        return os.environ[name]
    secrets_file = os.environ.get("DOORSTEP_SECRETS_FILE")
    if secrets_file:
        check_secrets_file()
        for line in Path(secrets_file).read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == name and not line.lstrip().startswith("#"):
                return value.strip().strip('"').strip("'")
    return default


# ------------------------------------------------------------------ accounts
#: Secret-name stem per channel: X_ACCESS_TOKEN, MASTODON_ACCESS_TOKEN, BLUESKY_APP_PASSWORD, SMTP_USER...
SECRET_STEMS = {"x": "X", "mastodon": "MASTODON", "bluesky": "BLUESKY", "email": "SMTP"}


@dataclass(frozen=True)
class AccountRef:
    """A resolved account: which brand, which channel, which handle, and where its secrets are."""

    brand: str
    channel: str
    handle: str
    #: Prefix of the account's own secret names (``FETTLE_X`` -> ``FETTLE_X_ACCESS_TOKEN``).
    prefix: str
    max_reads_per_day: int | None = None
    max_posts_per_day: int | None = None

    @property
    def label(self) -> str:
        return self.handle if self.channel == "email" else f"@{self.handle}"

    def secret_names(self, suffix: str) -> tuple[str, str]:
        """(this account's own name, the channel's shared name) for one secret."""
        return f"{self.prefix}_{suffix}", f"{SECRET_STEMS[self.channel]}_{suffix}"

    def secret(self, suffix: str) -> str | None:
        """The account's own secret, else the channel's shared one (single-account configs).

        A shared credential may belong to another brand's account; the senders check who they
        are logged in as before posting, so a fallback can never make the wrong brand answer.
        """
        own, shared = self.secret_names(suffix)
        return secret(own) or secret(shared)

    def has_own(self, suffix: str) -> bool:
        return bool(secret(self.secret_names(suffix)[0]))


def _secret_prefix(channel: str, handle: str) -> str:
    return f"{SECRET_STEMS[channel]}_" + re.sub(r"[^A-Z0-9]+", "_", handle.upper()).strip("_")


def brand_accounts(config: Config, channel: str | None = None) -> list[AccountRef]:
    """Every brand's account (per channel), from ``accounts`` and, for old files, ``handles``/``email``."""
    out: list[AccountRef] = []
    for brand in config.brands:
        channels = {c: None for c in ACCOUNT_CHANNELS if (c == "email" and brand.email) or c in brand.handles}
        for name in (channel,) if channel else ACCOUNT_CHANNELS:
            if name not in channels and name not in brand.accounts:
                continue
            account = brand.accounts.get(name)
            handle = (account.handle if account else None) or (brand.email if name == "email" else brand.handles.get(name))
            if not handle:
                continue
            handle = handle.lstrip("@")
            out.append(AccountRef(
                brand=brand.name, channel=name, handle=handle,
                prefix=(account.secrets if account and account.secrets else _secret_prefix(name, handle)),
                max_reads_per_day=account.max_reads_per_day if account else None,
                max_posts_per_day=account.max_posts_per_day if account else None,
            ))
    return out


def find_account(config: Config, channel: str, handle: str | None) -> AccountRef | None:
    """Our account on ``channel`` with this handle (case-insensitive, ``@`` optional)."""
    if not handle:
        return None
    wanted = handle.lower().lstrip("@")
    return next((a for a in brand_accounts(config, channel) if a.handle.lower() == wanted), None)


def brand_account(config: Config, brand: str | None, channel: str) -> AccountRef | None:
    """The brand's account on ``channel``, or None when the brand has none there."""
    return next((a for a in brand_accounts(config, channel) if a.brand == brand), None)


def default_db_path() -> str:
    return os.environ.get("DOORSTEP_DB", "doorstep.db")


def database_location(target: str) -> str:
    """What ``--db``/``DOORSTEP_DB`` names: a PostgreSQL URL as given, else the SQLite file path.

    ``sqlite:///doorstep.db`` is the relative file ``doorstep.db`` and ``sqlite:////srv/d.db``
    the absolute ``/srv/d.db`` (SQLAlchemy's spelling, which operators already know). A target
    that names no file (empty, ``sqlite:///``, ``sqlite://``) is a ValueError: SQLite would open a
    throwaway in-memory database, and an import would report success and keep nothing. Only
    ``:memory:`` itself (or ``sqlite:///:memory:``) asks for one. It lives here, not in
    doorstep.dialect, so that every command can check ``--db`` at start without importing psycopg.
    """
    text = str(target)
    if text.startswith("sqlite:///"):
        path = text[len("sqlite:///"):]
    elif text.startswith("sqlite://"):
        path = ""  # SQLAlchemy's in-memory spelling, or a URL missing its third slash
    else:
        path = text
    if not path.strip():
        raise ValueError(f"{text!r} names no file" if text.strip() else "empty")
    return path
