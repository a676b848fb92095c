"""Validated settings of the responders (``[responders]``) and the complaint alerts (``[alerts]``).

The core keeps these sections as free-form dicts so this package owns its keys; a typo is
reported as ``doorstep.toml: responders.followup.after_hours: Input should be a valid number``.

Secrets never sit in doorstep.toml: any URL or address field may be written as ``"$NAME"``,
which is read from the environment (or ``$DOORSTEP_SECRETS_FILE``) through
:func:`doorstep.config.secret` when the message is sent. Only the reference is stored on the
outbound message, so a Slack webhook URL never lands in the database or a log.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime, time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from doorstep.config import Config, ConfigError, config_source, secret

if TYPE_CHECKING:
    from doorstep.store import Store


class _Section(BaseModel):
    # Unknown keys are errors: a misspelt "after_hour" must not silently disable a rule.
    model_config = ConfigDict(extra="forbid")


def resolve(value: str | None) -> str | None:
    """``"$NAME"`` -> the secret NAME (None when unset); ``@config:KEY#FP`` (a credential written
    literally in doorstep.toml, see :func:`doorstep.redaction.stored_target`) -> that value;
    anything else is returned as written."""
    if value and value.startswith("$"):
        return secret(value[1:])
    if value and value.startswith("@config:"):
        from doorstep.redaction import resolve_reference

        return resolve(resolve_reference(value))
    return value


class Target(_Section):
    """Where an escalation or alert to one audience goes; every route that is set is used."""

    slack_webhook_url: str | None = None
    email: list[str] = Field(default_factory=list)
    #: Apprise URLs (``mailto://``, ``tgram://``, ``json://``, ``msteams://`` ...): any of its services.
    apprise: list[str] = Field(default_factory=list)

    @field_validator("email", "apprise", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def empty(self) -> bool:
        return not (self.slack_webhook_url or self.email or self.apprise)


class TemplateSpec(_Section):
    text: str
    #: Case intents and shipment statuses this template is suggested for.
    intents: list[str] = Field(default_factory=list)
    statuses: list[str] = Field(default_factory=list)


class QuietHours(_Section):
    """Local hours (in the configured time zone) when no SMS or email follow-up is sent."""

    start: time = time(21, 0)
    end: time = time(8, 0)

    def contains(self, local: datetime) -> bool:
        t = local.time()
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


class FollowUpRule(_Section):
    enabled: bool = True
    #: Hours after our public question with no answer before we follow up privately.
    after_hours: float = Field(default=24.0, gt=0)
    #: Private channels to try, in order; the customer's contact data comes from the order record.
    channels: list[str] = Field(default_factory=lambda: ["email", "sms"])
    quiet_hours: QuietHours | None = Field(default_factory=QuietHours)
    #: Template (name or source) for the follow-up text.
    template: str = "follow_up"
    #: A question rule (``[responders.dialogue.questions.NAME]``) the follow-up asks instead of the template.
    question: str | None = None

    @field_validator("channels")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for channel in value:
            if channel not in ("email", "sms"):
                raise ValueError(f"unknown follow-up channel {channel!r}; expected email or sms")
        return value


class FollowUp(FollowUpRule):
    #: Per-brand overrides of any of the keys above: ``[responders.followup.brands.Larkspur]``.
    brands: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def for_brand(self, brand: str | None) -> FollowUpRule:
        base = self.model_dump(exclude={"brands"})
        override = self.brands.get(brand or "", {})
        return FollowUpRule.model_validate({**base, **override})


class Proactive(_Section):
    enabled: bool = True
    #: Proactive reason (``attempt_failed``, ``exception``, ``no_scan``) -> the question rule its
    #: message asks (``[responders.dialogue.questions.NAME]``); with one, ``message`` is implied.
    questions: dict[str, str] = Field(default_factory=dict)
    #: Tracking statuses that open a proactive case.
    statuses: list[str] = Field(default_factory=lambda: ["attempt_failed", "exception"])
    #: A shipment in transit with no scan for this many days opens a proactive case too.
    no_scan_days: float = Field(default=3.0, gt=0)
    #: Message the customer (email or SMS from the order record) with what happens next.
    message: bool = False
    channels: list[str] = Field(default_factory=lambda: ["email", "sms"])
    #: Only shipments whose event is at most this old are considered (older ones are history).
    lookback_days: float = Field(default=7.0, gt=0)


class Step(_Section):
    """What one kind of answer triggers; every key that is set is done, in this order."""

    #: Escalate to this target (``courier``, a named audience, ``email:ADDR`` ...), once per question.
    escalate: str | None = None
    #: Schedule the case's call back at the slot the customer proposed ("yes": as soon as possible).
    callback: bool = False
    #: An internal note on the case; ``{answer}`` and ``{slot}`` are filled in.
    note: str | None = None
    #: Set the case's status.
    status: str | None = None
    #: Hand the case to a person: it goes back to ``open`` and the timeline says why.
    human: bool = False

    @field_validator("status")
    @classmethod
    def _known_status(cls, value: str | None) -> str | None:
        from doorstep.models import CASE_STATUSES

        if value is not None and value not in CASE_STATUSES:
            raise ValueError(f"unknown case status {value!r}; expected one of {', '.join(CASE_STATUSES)}")
        return value

    def describe(self) -> str:
        parts = [f"escalate to {self.escalate}"] if self.escalate else []
        parts += ["schedule the call back"] if self.callback else []
        parts += [f"note “{self.note}”"] if self.note else []
        parts += [f"status {self.status}"] if self.status else []
        parts += ["hand to a person"] if self.human else []
        return ", ".join(parts) or "nothing"


class QuestionRule(_Section):
    """A closed question a message may ask, and the next step for each kind of answer."""

    #: The message (a template: Jinja2, the case's variables), e.g. "... Reply YES or NO".
    text: str
    #: An unanswered question stops waiting after this many hours (a late answer goes to a person).
    expires_hours: float = Field(default=72.0, gt=0)
    yes: Step = Field(default_factory=lambda: Step(human=True))
    no: Step = Field(default_factory=lambda: Step(human=True))
    time: Step = Field(default_factory=lambda: Step(human=True))
    other: Step = Field(default_factory=lambda: Step(human=True))

    @field_validator("text")
    @classmethod
    def _compiles(cls, value: str) -> str:
        from responders.templates import TemplateError, compile_source

        try:
            compile_source(value)
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        return value


#: The questions Doorstep knows without configuration (doorstep.toml may override or add).
BUILT_IN_QUESTIONS: dict[str, dict[str, Any]] = {
    "redeliver": {
        "text": "Hi {{ first_name }}, {{ courier }} could not deliver your order {{ order_number }}. Shall we ask "
                "{{ courier }} to redeliver it? Reply YES or NO (or tell us a day that suits you).",
        "yes": {"escalate": "courier", "note": "The customer asked for a redelivery ({answer})."},
        "no": {"note": "The customer does not want a redelivery ({answer}).", "status": "open"},
        "time": {"note": "The customer proposed {slot} for the redelivery ({answer}).", "human": True},
        "other": {"human": True},
    },
    "callback": {
        "text": "Hi {{ first_name }}, would you like us to call you about your order {{ order_number }}? Reply with "
                "a day and time that suits you (e.g. \"Thursday after 2\"), YES for as soon as we can, or NO.",
        "yes": {"callback": True},
        "time": {"callback": True},
        "no": {"note": "The customer does not want a call back ({answer})."},
        "other": {"human": True},
    },
}


class CallbackRules(_Section):
    """When Doorstep offers a call back by itself, and the call-back task's SLA."""

    #: The rules below offer call backs by themselves (off by default: it writes to customers unasked).
    #: An agent's "Offer a call back" works either way.
    enabled: bool = False
    #: How the offer is sent (the customer's contact data comes from the order record).
    channels: list[str] = Field(default_factory=lambda: ["sms", "email"])
    #: The question rule that offers it.
    question: str = "callback"
    #: The call must be made within this many minutes of the slot the customer picked.
    sla_minutes: float = Field(default=120.0, gt=0)
    #: Offer to VIP customers.
    vip: bool = True
    #: Offer when the customer has written this many times on one case (None, 0 in doorstep.toml: never).
    contacts: int | None = Field(default=3, ge=2)
    #: Offer when the order is worth more than this (None, 0 in doorstep.toml: never).
    order_value_over: float | None = Field(default=None, gt=0)
    #: Offer when the parcel has had no scan for this many days (None, 0 in doorstep.toml: never).
    stuck_days: float | None = Field(default=3.0, gt=0)
    #: Only cases active within this many days are considered.
    lookback_days: float = Field(default=7.0, gt=0)
    #: The care desk's phone for a bridged call through Twilio's voice API (Twilio rings the desk,
    #: then dials the customer); ``$NAME`` reads the environment. Unset: click-to-call (``tel:``) only.
    bridge_desk_phone: str | None = None

    @field_validator("contacts", "order_value_over", "stuck_days", mode="before")
    @classmethod
    def _zero_is_off(cls, value: Any) -> Any:
        """0 (or false) switches a rule off: TOML has no null, and contacts and stuck_days default to 3."""
        return None if value is False or value == 0 else value

    @field_validator("channels")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for channel in value:
            if channel not in ("email", "sms"):
                raise ValueError(f"unknown call-back channel {channel!r}; expected email or sms")
        return value


class Dialogue(_Section):
    """Questions customers can answer (``[responders.dialogue]``)."""

    enabled: bool = True
    #: Extra or overriding question rules: ``[responders.dialogue.questions.NAME]``.
    questions: dict[str, QuestionRule] = Field(default_factory=dict)
    #: The public URL Twilio posts SMS replies to (its signature covers the URL); default: as received.
    sms_webhook_url: str | None = None
    #: Secret for the inbound mail endpoint's HMAC (``X-Doorstep-Signature``); ``$NAME`` reads the env.
    mail_secret: str = "$DOORSTEP_MAIL_SECRET"
    #: How often the worker reads new DMs and public replies for answers.
    interval_s: float = Field(default=30.0, gt=0)

    def rule(self, name: str) -> QuestionRule:
        if name in self.questions:
            return self.questions[name]
        if name in BUILT_IN_QUESTIONS:
            return QuestionRule.model_validate(BUILT_IN_QUESTIONS[name])
        known = ", ".join(sorted({*BUILT_IN_QUESTIONS, *self.questions}))
        raise ConfigError(f"no question rule {name!r}; known: {known} ([responders.dialogue.questions.NAME])")


class Escalation(_Section):
    #: Named audiences: ``[responders.escalation.targets.team]``, ``...targets.lead``.
    targets: dict[str, Target] = Field(default_factory=dict)
    #: Secret for the HMAC-SHA256 signature of courier webhooks (``$NAME`` reads the env).
    webhook_secret: str = "$COURIER_WEBHOOK_SECRET"
    #: Escalate automatically when the first response or resolution is due within this many minutes.
    auto_sla_minutes: float | None = Field(default=15.0, gt=0)
    #: The audience of automatic escalations.
    auto_target: str = "lead"
    #: At most this many cases escalated automatically in an hour, the most urgent first; the others wait for the
    #: next hour while they are still due (a viral day escalated 409 cases in one round: the alerts' storm cap).
    auto_max_per_hour: int = Field(default=20, ge=1)


class ChannelLearner(_Section):
    """Choose each follow-up's channel and send hour per customer ([responders.channel_learner]).

    A Beta-Bernoulli Thompson sampler over (channel, local hour) arms, each customer's own
    answers on top of a prior pooled from the brand's customers (see
    ``responders/channel_learner.py`` and the README). Off by default: with it on, a follow-up
    may wait up to a day for the hour the customer answers at.
    """

    enabled: bool = False
    #: Local send hours to choose from (those inside the rule's quiet hours are never used).
    hours: list[int] = Field(default_factory=lambda: [8, 10, 12, 14, 16, 18, 20])
    #: An answer later than this many hours after the message does not count as answering it.
    answer_window_hours: float = Field(default=72.0, gt=0, le=24 * 30)
    #: Pseudo-answers the pooled rate of similar customers is worth in a customer's prior.
    prior_strength: float = Field(default=2.0, ge=2, le=1000)
    #: How far (in hours) a customer's answer or silence at one hour counts for the same channel's
    #: other hours (a Gaussian kernel; 0: each hour learns alone).
    hour_bandwidth: float = Field(default=2.5, ge=0, le=12)
    #: A brand's pool needs this many settled attempts; below it the pool of all brands is used.
    min_pool: int = Field(default=30, ge=0)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("give at least one hour (0-23)")
        for hour in value:
            if not 0 <= hour <= 23:
                raise ValueError(f"hour {hour} is not 0-23")
        return sorted(set(value))


class CourierLink(_Section):
    """The courier's signed, expiring link to one shipment's page ([responders.courier_link])."""

    #: Put a link in every courier escalation (needs the secret below to be set).
    enabled: bool = True
    #: Where couriers reach the page (``doorstep courier-page`` serves it); links are BASE/courier/...
    base_url: str = "http://127.0.0.1:8770"
    #: Address and port ``doorstep courier-page`` listens on (its own process; the webhook has 8766).
    host: str = "127.0.0.1"
    port: int = Field(default=8770, ge=0, le=65535)
    #: Signing key of the links: ``$NAME`` reads the environment or $DOORSTEP_SECRETS_FILE, never the file.
    secret: str = "$COURIER_LINK_SECRET"
    #: How long a link works after the escalation.
    valid_hours: float = Field(default=72.0, gt=0, le=24 * 90)
    #: Longest update text a courier may post, in characters; the body limit of a post, in bytes.
    max_update_chars: int = Field(default=500, ge=10, le=10_000)
    max_body_bytes: int = Field(default=8192, ge=256, le=1_000_000)
    #: Updates one link may post per hour (more are answered 429).
    max_updates_per_hour: int = Field(default=20, ge=1, le=10_000)
    #: What a courier update does for the customer: "off"; "approval" (a message waits on the
    #: Approvals page for an agent); "send" (the template goes out without waiting).
    customer_message: str = "approval"
    #: Template (name or source) of that message; ``courier_update`` is the courier's text.
    template: str = "courier_update"
    #: Channels to reach the customer on, in order (contact data from the order record).
    channels: list[str] = Field(default_factory=lambda: ["email", "sms"])

    @field_validator("customer_message")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in ("off", "approval", "send"):
            raise ValueError(f"unknown value {value!r}; expected off, approval or send")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")


class Approval(_Section):
    """Which automatic messages wait for an agent's approval (the console's Approvals page).

    A message needs approval when its rule is in ``rules`` *and* it goes out on one of ``channels``
    (an empty ``channels`` list means every channel). Off by default; the demo turns it on for
    follow-ups and proactive messages by e-mail and SMS.
    """

    #: Automatic rules: ``follow_up``, ``outreach`` (proactive messages), ``alert``.
    rules: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: list[str]) -> list[str]:
        for rule in value:
            if rule not in ("follow_up", "outreach", "alert"):
                raise ValueError(f"unknown rule {rule!r}; expected follow_up, outreach or alert")
        return value

    def needs(self, rule: str, channel: str) -> bool:
        return rule in self.rules and (not self.channels or channel in self.channels)


class TemplateLimits(_Section):
    """Bounds on what one template render may build ([responders.template_limits]).

    A template is code a lead or an agent writes; these keep one from using the worker's memory
    or time (``{{ 'a' * 10**8 }}``, ``{% for i in range(10**9) %}``). A reply is a few hundred
    characters; an e-mail a few thousand.
    """

    #: Longest text a render may produce, and longest string or list an expression may build on the way.
    max_output_chars: int = Field(default=20_000, ge=100, le=10_000_000)
    #: Items all ``range()`` calls of one render may produce together.
    max_loop_iterations: int = Field(default=10_000, ge=1, le=10_000_000)


class Responders(_Section):
    #: X replies may carry a URL only when this is true (a URL makes a pay-per-use post ~13x dearer).
    allow_urls: bool = False
    #: courier name -> tracking page pattern with ``{tracking_number}``.
    tracking_urls: dict[str, str] = Field(default_factory=dict)
    templates: dict[str, str | TemplateSpec] = Field(default_factory=dict)
    outbox_interval_s: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    backoff_base_s: float = Field(default=30.0, gt=0)
    backoff_max_s: float = Field(default=3600.0, gt=0)
    #: A message left in "sending" this long is taken to be from a crashed sender and checked.
    sending_lease_s: float = Field(default=120.0, gt=0)
    #: After a failure that may pass (a timeout, a 5xx), the channel's other messages wait this
    #: long instead of each waiting out the same timeout. A 429 pauses it until its reset.
    channel_pause_s: float = Field(default=30.0, ge=0, le=3600)
    escalation: Escalation = Field(default_factory=Escalation)
    followup: FollowUp = Field(default_factory=FollowUp)
    proactive: Proactive = Field(default_factory=Proactive)
    approval: Approval = Field(default_factory=Approval)
    dialogue: Dialogue = Field(default_factory=Dialogue)
    callback: CallbackRules = Field(default_factory=CallbackRules)
    channel_learner: ChannelLearner = Field(default_factory=ChannelLearner)
    courier_link: CourierLink = Field(default_factory=CourierLink)
    template_limits: TemplateLimits = Field(default_factory=TemplateLimits)

    @model_validator(mode="after")
    def _questions_exist(self) -> Responders:
        """Every question a rule names must exist, so a typo fails at start-up, not at the first parcel."""
        known = {*BUILT_IN_QUESTIONS, *self.dialogue.questions}
        named = {f"proactive.questions.{reason}": name for reason, name in self.proactive.questions.items()}
        named["callback.question"] = self.callback.question
        if self.followup.question:
            named["followup.question"] = self.followup.question
        for brand, override in self.followup.brands.items():
            if isinstance(override, dict) and override.get("question"):
                named[f"followup.brands.{brand}.question"] = str(override["question"])
        for key, name in named.items():
            if name not in known:
                raise ValueError(f"{key}: no question rule {name!r}; known: {', '.join(sorted(known))} "
                                 "(add [responders.dialogue.questions.NAME])")
        if not self.dialogue.enabled:
            # Nothing would read the answers (no POST /sms or /mail, no dialogue job): a "Reply YES
            # or NO" sent now would lose every answer, STOP included.
            asking = [key for key in named if key != "callback.question"]
            if self.callback.enabled:
                asking.append("callback.enabled")
            if asking:
                raise ValueError(f"{asking[0]}: asks customers a question, but [responders.dialogue] enabled = false, "
                                 "so no answer would be read; set [responders.dialogue] enabled = true or remove "
                                 f"{asking[0]}")
        return self

    @field_validator("tracking_urls")
    @classmethod
    def _has_placeholder(cls, value: dict[str, str]) -> dict[str, str]:
        for courier, pattern in value.items():
            if "{tracking_number}" not in pattern:
                raise ValueError(f"{courier}: pattern must contain {{tracking_number}}")
        return value

    @field_validator("templates")
    @classmethod
    def _compiles(cls, value: dict[str, Any]) -> dict[str, Any]:
        from responders.templates import TemplateError, compile_source

        for name, spec in value.items():
            source = spec if isinstance(spec, str) else spec.text
            try:
                compile_source(source)
            except TemplateError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return value


class Spike(_Section):
    enabled: bool = True
    #: Facets whose hourly volume is watched.
    dimensions: list[str] = Field(default_factory=lambda: ["brand", "courier", "intent"])
    #: Weeks of history for the same-hour-of-week baseline.
    weeks: int = Field(default=4, ge=1)
    #: Weight of the EWMA over the recent hours (the level of "now" when history is short).
    ewma_alpha: float = Field(default=0.3, gt=0, le=1)
    #: Fire when P(X >= observed | baseline) is below this.
    p_value: float = Field(default=0.001, gt=0, lt=1)
    #: ...and at least this many complaints arrived in the hour (5 complaints are never a storm).
    min_count: int = Field(default=8, ge=1)
    #: ...and at least this multiple of the baseline.
    min_ratio: float = Field(default=2.0, ge=1)
    #: Only complaints count (False: every inbound mention).
    complaints_only: bool = True

    @field_validator("dimensions")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for dim in value:
            if dim not in ("brand", "courier", "intent", "channel"):
                raise ValueError(f"unknown dimension {dim!r}; expected brand, courier, intent or channel")
        return value


class Alerts(_Section):
    enabled: bool = True
    interval_s: float = Field(default=60.0, gt=0)
    #: Rules (set one to false to switch it off).
    urgent_complaint: bool = True
    urgency_threshold: float = Field(default=0.8, ge=0, le=1)
    vip_author: bool = True
    #: Authors with at least this many followers (default: [priority].vip_followers).
    followers_threshold: int | None = Field(default=None, ge=0)
    spike: Spike = Field(default_factory=Spike)
    sla_breach: bool = True
    sla_warn_minutes: float = Field(default=15.0, gt=0)
    listener_unhealthy: bool = True
    listener_stale_minutes: float = Field(default=15.0, gt=0)
    #: Alert the lead when an escalation has been failing (failed, or retrying after errors) this long.
    escalation_failed_minutes: float | None = Field(default=30.0, gt=0)
    #: One incident (rule + subject) alerts once, then at most one update per this many minutes.
    cooldown_minutes: float = Field(default=60.0, gt=0)
    #: Hard cap on alerts of all rules per hour (a storm of incidents becomes one summary).
    max_per_hour: int = Field(default=20, ge=1)
    #: Where alerts go.
    slack_webhook_url: str | None = None
    email: list[str] = Field(default_factory=list)
    apprise: list[str] = Field(default_factory=list)

    @field_validator("email", "apprise", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def target(self) -> Target:
        return Target(slack_webhook_url=self.slack_webhook_url, email=self.email, apprise=self.apprise)


_CACHE: dict[int, tuple[Any, Any, Any]] = {}


def responders_settings(config: Config) -> Responders:
    """The validated ``[responders]`` section (cached per config object)."""
    return _validated(config, "responders", Responders)


def alert_settings(config: Config) -> Alerts:
    return _validated(config, "alerts", Alerts)


def _template_settings(settings: Responders) -> list[tuple[str, str, dict[str, str]]]:
    """(key, value, the rule's own default templates) of every setting that names an automatic message's template."""
    out = [("followup.template", settings.followup.template, {})]
    for brand, override in settings.followup.brands.items():
        template = override.get("template") if isinstance(override, dict) else None
        if isinstance(template, str):
            name = brand if re.fullmatch(r"[\w-]+", brand) else f'"{brand}"'
            out.append((f"followup.brands.{name}.template", template, {}))
    # The courier link's own wording is a template name there too (responders/courier_link.py).
    out.append(("courier_link.template", settings.courier_link.template, {"courier_update": ""}))
    return out


def check_template_names(config: Config, store: Store | None = None) -> Config:
    """Refuse a rule whose template is a name that names no template; returns ``config`` unchanged.

    Why: a misspelt ``[responders.followup] template = "folow_up"`` was accepted at start and failed
    only when the first follow-up was due, days later in the worker, each case skipped. Known are the
    built-in templates, ``[responders.templates]`` and, given the ``store``, the templates leads saved
    in the console (a rule may name one that is not in doorstep.toml; without the store those are not
    known). "Name or source" is decided as when the message is written
    (:func:`responders.templates.resolve_template`): text with Jinja markup or words is the source.
    Raises :class:`ConfigError` in one line naming the setting and the known template names.
    """
    from responders.templates import TemplateError, resolve_template

    in_force = config
    if store is not None:
        from doorstep.team_settings import apply_settings

        in_force = apply_settings(config, store)
    for key, value, defaults in _template_settings(responders_settings(in_force)):
        try:
            resolve_template(in_force, value, defaults=defaults)
        except TemplateError as exc:
            raise ConfigError(f"{config_source(config)}: responders.{key}: {exc} (fix the name, or add the "
                              "template under [responders.templates])") from None
    return config


def _validated(config: Config, section: str, model: type[BaseModel]) -> Any:
    key = (id(config), section)
    raw = getattr(config, section)
    cached = _CACHE.get(key)  # type: ignore[arg-type]
    if cached is not None and cached[0] is config and cached[1] == raw:
        return cached[2]
    try:
        value = model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format(section, exc, config_source(config))) from None
    from doorstep.redaction import register_config_values

    register_config_values(raw, section)  # a Config built in code never went through parse_config
    _CACHE[key] = (config, copy.deepcopy(raw), value)  # type: ignore[index]
    return value


#: Fields whose validators report the offending entry as "NAME: problem".
_KEYED_FIELDS = ("templates", "tracking_urls")


def _format(section: str, error: ValidationError, source: str = "doorstep.toml") -> str:
    """``doorstep.toml: responders.templates.broken: template syntax error ...`` (the full key)."""
    lines = []
    for item in error.errors():
        key = ".".join([section, *(str(part) for part in item["loc"])])
        message = item["msg"].removeprefix("Value error, ")
        match = re.match(r"^([^:\s]+): (.*)$", message)
        if match and item["loc"] and item["loc"][-1] in _KEYED_FIELDS:
            key, message = f"{key}.{match.group(1)}", match.group(2)
        lines.append(f"{source}: {key}: {message}")
    return "\n".join(lines)
