"""The care team's vocabulary as typed records.

Every other package (listeners, classifiers, responders, console) speaks in these
types, so they live in the core and depend on nothing but pydantic. Times are
always timezone-aware UTC inside the program; the console and reports convert to
the configured zone only when a person reads them.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")
#: Channels where only the customer can write to us, so a number they give is theirs (linking) and every
#: post is written to us (:attr:`Mention.addressed`).
PRIVATE_CHANNELS = frozenset({"email", "dm", "x_dm", "mastodon_dm", "bluesky_dm", "sms", "chat"})
#: The channels listeners fill and replies go out on, as README lists them.
CHANNEL_ANSWERED = ("x", "x_dm", "mastodon", "mastodon_dm", "bluesky", "bluesky_dm", "email", "sms")
#: Channels as the team says them ("on X", "by X direct message"): pages, alerts and reports share them.
CHANNEL_WORDS = {
    "x": "X", "x_dm": "X direct message", "mastodon": "Mastodon", "mastodon_dm": "Mastodon direct message",
    "bluesky": "Bluesky", "bluesky_dm": "Bluesky chat", "email": "e-mail", "sms": "SMS", "slack": "Slack",
    "apprise": "Apprise", "webhook": "webhook",
}


#: What exports call our channels: a social tool's "Twitter" is the X listener's "x" (exports audit: one tweet
#: imported as "Twitter", "X" and "x" was stored three times, in three cases).
CHANNEL_ALIASES = {"twitter": "x", "twitter_dm": "x_dm", "e-mail": "email", "mail": "email", "text": "sms"}
#: A channel's stored name: lowercase letters, digits and "_" ("x", "mastodon_dm", "tiktok").
_CHANNEL_KEY = re.compile(r"[a-z][a-z0-9_]*")


def channel_key(value: str) -> str:
    """The stored name of a channel as a file, the webhook or a person writes it: case and spaces around it do not
    matter, and the names other tools use for our channels are ours ("Twitter" is "x"). Raises ValueError for a
    name that is no channel name ("Facebook Messenger"), naming the channels Doorstep answers on."""
    key = value.strip().casefold()
    key = CHANNEL_ALIASES.get(key, key)
    if not _CHANNEL_KEY.fullmatch(key):
        known = ", ".join(CHANNEL_ANSWERED)
        raise ValueError(f"{value!r} is not a channel name: use one of {known}, or for another source a short name "
                         "of lowercase letters, digits and _ (e.g. tiktok)")
    return key


def channel_name(channel: str | None) -> str:
    """"x_dm" reads "X direct message"; a channel without a word keeps its key."""
    return CHANNEL_WORDS.get(channel or "", channel or "-")


INTENTS: tuple[str, ...] = (
    "where_is_my_order",
    "late_delivery",
    "failed_delivery",
    "lost_or_missing",
    "damaged_or_wrong",
    "refund_or_return",
    "customer_service",
    "product_or_account",
    "praise",
    "other",
)
#: The first five intents are about a parcel; the rest are general care topics.
DELIVERY_INTENTS: frozenset[str] = frozenset(INTENTS[:5])

TRACKING_STATUSES: tuple[str, ...] = (
    "info_received",
    "in_transit",
    "out_for_delivery",
    "attempt_failed",
    "exception",
    "delivered",
    "returned",
)
#: A courier's scans as a customer would read them on a tracking page (pages, escalation e-mails).
TRACKING_WORDS = {
    "info_received": "details received", "in_transit": "in transit", "out_for_delivery": "out for delivery",
    "attempt_failed": "delivery attempt failed", "exception": "problem reported", "delivered": "delivered",
    "returned": "returned to sender",
}


def tracking_name(status: str | None) -> str:
    """A parcel scan: "attempt_failed" reads "delivery attempt failed"."""
    return TRACKING_WORDS.get(status or "", (status or "-").replace("_", " "))


CASE_STATUSES: tuple[str, ...] = ("new", "open", "pending_customer", "escalated", "resolved")
OPEN_CASE_STATUSES: tuple[str, ...] = ("new", "open", "pending_customer", "escalated")
OUTBOUND_STATUSES: tuple[str, ...] = ("queued", "sending", "sent", "failed", "cancelled", "awaiting_approval")

Sentiment = Literal["negative", "neutral", "positive"]
Intent = Literal[
    "where_is_my_order",
    "late_delivery",
    "failed_delivery",
    "lost_or_missing",
    "damaged_or_wrong",
    "refund_or_return",
    "customer_service",
    "product_or_account",
    "praise",
    "other",
]
TrackingStatus = Literal[
    "info_received", "in_transit", "out_for_delivery", "attempt_failed", "exception", "delivered", "returned"
]
CaseStatus = Literal["new", "open", "pending_customer", "escalated", "resolved"]
LinkMethod = Literal["tracking_number", "order_number", "handle", "thread", "recent_order", "agent", "none"]


def utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


#: How far ahead of our clock a post's ``created_at`` may be (a sender's clock a little fast). Further
#: ahead is a wrong clock or milliseconds read as seconds: its case would be due then, never overdue and
#: never escalated, so the webhook refuses it (400) and an import rejects its row.
MAX_FUTURE_SKEW = timedelta(minutes=5)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


#: Times outside these years are typing or unit mistakes (a year 9999 placeholder, seconds
#: read as milliseconds), and far-future ones overflow SLA arithmetic: they are rejected.
EARLIEST_YEAR, LATEST_YEAR = 1990, 2199
#: More followers than any account has had; larger values are rejected, not stored (SQLite
#: integers stop at 2**63 - 1).
MAX_FOLLOWERS = 10**10


def sane_time(value: datetime) -> datetime:
    """``value`` in UTC, or a ValueError naming the accepted range."""
    value = utc(value)
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"year {value.year} is outside {EARLIEST_YEAR}-{LATEST_YEAR}; check the date")
    return value


def sane_date(value: date | None) -> date | None:
    if value is not None and not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"year {value.year} is outside {EARLIEST_YEAR}-{LATEST_YEAR}; check the date")
    return value


#: A UTF-16 surrogate on its own: what a JSON "\\ud83d" escape leaves when an emoji is cut in two.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def whole_characters(value: Any) -> tuple[Any, str | None]:
    """``value`` (a string, or JSON-like dicts and lists of them) without NUL characters (the same
    object when it holds none), and its first lone surrogate written as its escape ("\\ud83d"), or None.

    Why both, in one walk over the value: PostgreSQL's text cannot hold NUL, so one post with a stray
    ``\\x00`` failed the write of its whole batch on every retry, and the posts around it were lost
    with it (a NUL carries no meaning in a post, an order or a name: dropping it keeps the post); and
    ``json.loads`` accepts a lone surrogate, but no database, classifier or terminal can encode it, so
    a record holding one would fail wherever it is used next, far from its row.
    """
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "")
        if value.isascii():  # most values: no surrogate possible, and checked in C
            return value, None
        found = _LONE_SURROGATE.search(value)
        return value, (f"\\u{ord(found.group()):04x}" if found else None)
    if isinstance(value, dict):
        pairs, first, same = [], None, True
        for key, item in value.items():
            (clean_key, in_key), (clean_item, in_item) = whole_characters(key), whole_characters(item)
            first = first or in_key or in_item
            same = same and clean_key is key and clean_item is item
            pairs.append((clean_key, clean_item))
        return (value if same else dict(pairs)), first
    if isinstance(value, (list, tuple)):
        parts = [whole_characters(part) for part in value]
        first = next((char for _, char in parts if char), None)
        if all(clean is part for (clean, _), part in zip(parts, value)):
            return value, first
        return type(value)(clean for clean, _ in parts), first
    return value, None


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class _Inbound(_Record):
    """A record built from what others send (import files, the webhook, the networks' APIs).

    Every value is checked for lone surrogates here, the one place files, the webhook and the
    listeners share, so the row (or request) holding one is rejected naming its field (error type
    ``lone_surrogate``) instead of stopping the write of every row after it; NUL characters, which
    no PostgreSQL text can hold, are taken out (:func:`whole_characters`). One check of the whole input (not one
    validator per field: that made every Mention 4-6 times slower to build, reads included).
    """

    @model_validator(mode="before")
    @classmethod
    def _whole_characters(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        cleaned: dict[str, Any] = {}
        for field, value in data.items():
            cleaned[field], char = whole_characters(value)
            if char:
                raise ValidationError.from_exception_data(cls.__name__, [InitErrorDetails(
                    type=PydanticCustomError(
                        "lone_surrogate",
                        "holds a lone surrogate {char} (half of an emoji cut in two); remove it or fix the export",
                        {"char": char}),
                    loc=(field,), input=value)])
        return cleaned


class Labels(_Inbound):
    """What a classifier read in one post. Scores are probabilities that sum to 1."""

    sentiment: Sentiment
    sentiment_scores: dict[str, float]
    complaint: bool
    complaint_score: float = Field(ge=0.0, le=1.0)
    intent: Intent
    intent_scores: dict[str, float]
    urgency: float = Field(ge=0.0, le=1.0)
    #: True when the model is unsure or the post is not in a language it reads well:
    #: the console shows such posts for human triage instead of trusting the labels.
    needs_review: bool = False
    model: str = ""
    #: The language the classifier saw where it is not English (ISO 639-1, "und" when it could not tell which):
    #: its labels are then a guess, so the post is for review and its case is read first (``score_priority``).
    #: None: English, or not identified. Not part of ``doorstep classify``'s output (its contract is fixed). Not
    #: named ``language``: a post's own ``language`` (``Mention.language``) shares rows with its labels in exports.
    other_language: str | None = None

    @property
    def is_delivery(self) -> bool:
        return self.intent in DELIVERY_INTENTS


class Mention(_Inbound):
    """One public or private post that names a brand or courier, as a listener saw it."""

    channel: str = Field(min_length=1)
    external_id: str = Field(min_length=1)
    text: str
    created_at: datetime
    author_id: str | None = None
    author_handle: str | None = None
    author_name: str | None = None
    author_followers: int = Field(default=0, ge=0, le=MAX_FOLLOWERS)
    language: str | None = None
    url: str | None = None
    #: The conversation this post belongs to (X conversation_id, the root post's id otherwise).
    thread_id: str | None = None
    #: External id of the post this one answers, on the same channel.
    in_reply_to: str | None = None
    #: Names of the brands and couriers the post matched.
    matched: list[str] = Field(default_factory=list)
    #: True for posts written by our own care handles (they join threads, never open cases).
    outbound: bool = False
    raw: dict[str, Any] | None = None
    #: Our own account the post reached (the mentions timeline or inbox it came from), if known.
    account: str | None = None
    # Filled in by the pipeline.
    id: int | None = None
    labels: Labels | None = None
    case_id: int | None = None
    #: Whether the post speaks for its case's customer (doorstep.cases.by_customer), set when it is
    #: stored into its case: a stranger's post in the customer's thread is shown there but never sets
    #: the case's priority (its peak and contact count count only these). None: not known (our own
    #: posts, posts stored before this was recorded), which counts as the customer's, as it always did.
    by_customer: bool | None = None

    @property
    def addressed(self) -> bool:
        """Written to someone, whether or not its text shows an @mention: a reply in a thread, a private
        message, or a post that reached one of our accounts (a mentions timeline, an inbox).

        Why the classifier is told: a negative post written to someone is nearly always a complaint, one
        written to nobody ("ugh, Mondays") may be mood; replies drop the handle from their text, so the text
        alone cannot say which (issue 15, thirteenth round). A post that names one of our handles is written to us
        too; that needs the config, so :func:`doorstep.classifying.addressed_flags` adds it (eighteenth round)."""
        return self.in_reply_to is not None or self.account is not None or self.channel in PRIVATE_CHANNELS

    @field_validator("created_at")
    @classmethod
    def as_utc(cls, value: datetime) -> datetime:
        return sane_time(value)

    @field_validator("channel", "external_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("is empty")
        return value

    @field_validator("channel")
    @classmethod
    def _channel_key(cls, value: str) -> str:
        return channel_key(value)

    @field_validator("author_handle")
    @classmethod
    def _handle_without_at(cls, value: str | None) -> str | None:
        """A handle as the listeners store it, without its "@": a social tool's "@tomprice" opened a case of its own
        beside the X listener's "tomprice" (exports audit). A Mastodon account keeps its server ("jo@host")."""
        if value is None:
            return None
        value = value.strip()
        return value[1:] if value.startswith("@") and len(value) > 1 else value

    @field_validator("text")
    @classmethod
    def _text_not_empty(cls, value: str) -> str:
        if not value or not value.strip():
            raise ValueError("text is empty")
        return value


class Customer(_Inbound):
    id: str
    name: str
    email: str | None = None
    phone: str | None = None
    #: channel -> handle, without the leading @ (e.g. {"x": "janedoe"}).
    handles: dict[str, str] = Field(default_factory=dict)
    vip: bool = False
    #: Channels the customer asked us not to contact them on (e.g. ["sms"]).
    opt_out: list[str] = Field(default_factory=list)


class TrackingEvent(_Inbound):
    tracking_number: str
    time: datetime
    status: TrackingStatus
    location: str | None = None
    #: The courier's own wording, shown to agents as-is.
    description: str | None = None

    @field_validator("time")
    @classmethod
    def as_utc(cls, value: datetime) -> datetime:
        return sane_time(value)


class Shipment(_Inbound):
    tracking_number: str
    order_number: str
    courier: str
    service: str | None = None
    status: TrackingStatus | None = None
    events: list[TrackingEvent] = Field(default_factory=list)


class Order(_Inbound):
    number: str
    customer_id: str
    placed_at: datetime
    brand: str | None = None
    items: list[dict[str, Any]] = Field(default_factory=list)
    total: float = 0.0
    currency: str = "GBP"
    promised_date: date | None = None
    status: str = "placed"
    shipments: list[Shipment] = Field(default_factory=list)

    @field_validator("placed_at")
    @classmethod
    def as_utc(cls, value: datetime) -> datetime:
        return sane_time(value)

    @field_validator("promised_date")
    @classmethod
    def _sane_promise(cls, value: date | None) -> date | None:
        return sane_date(value)

    @field_validator("items", mode="before")
    @classmethod
    def _item_names(cls, value: Any) -> Any:
        """``["lamp"]`` is shorthand for ``[{"name": "lamp"}]``: shops export both."""
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value


class Link(_Record):
    """How a mention was tied to a customer, order and shipment, and how sure we are."""

    customer_id: str | None = None
    order_number: str | None = None
    tracking_number: str | None = None
    method: LinkMethod = "none"
    confidence: float = 0.0
    #: False while the link rests on a number alone: the order may belong to someone
    #: else, so its details must not be shown to the author until confirmed.
    confirmed: bool = False
    #: Numbers found in the text that matched nothing we know, for the agent to see.
    unmatched_numbers: list[str] = Field(default_factory=list)


class Case(_Record):
    """The unit of work: one customer's issue, possibly spread over several posts."""

    id: int | None = None
    status: CaseStatus = "new"
    priority: float = 0.0
    #: Human-readable factors that raised the priority, e.g. "complaint (+25)".
    priority_reasons: list[str] = Field(default_factory=list)
    brand: str | None = None
    courier: str | None = None
    channel: str | None = None
    intent: str | None = None
    sentiment: str | None = None
    complaint: bool = False
    author_handle: str | None = None
    thread_id: str | None = None
    customer_id: str | None = None
    order_number: str | None = None
    tracking_number: str | None = None
    link_method: str = "none"
    link_confidence: float = 0.0
    link_confirmed: bool = False
    assignee: str | None = None
    opened_at: datetime | None = None
    last_activity_at: datetime | None = None
    first_response_due: datetime | None = None
    resolution_due: datetime | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    snoozed_until: datetime | None = None
    #: The customer's oldest post we have not answered yet (None: nothing unanswered); see doorstep/sla.py.
    awaiting_since: datetime | None = None
    #: When our answer to a post written after our first answer is due (the "next response" clock).
    next_response_due: datetime | None = None
    #: When the clocks paused because the case waits on the customer (None while they run).
    sla_paused_at: datetime | None = None
    #: "p1".."p4": the SLA band of ``priority`` (the inbox sorts by it, then by due time).
    priority_band: str | None = None
    mention_count: int = 0
    #: Set when an agent merged this case into another one (its posts are there now).
    merged_into: int | None = None
    #: How a resolved case was closed when that is not "dealt with": "spam" (doorstep/closing.py). Its posts are
    #: left out of the mood and complaint figures (doorstep/metrics.py). Only a resolved case holds it: the store
    #: writes None once the case is open again (a new post reopening it, a person setting an open status).
    closed_as: str | None = None
    #: Bumped on every update; a write that names an older version is refused.
    version: int = 1


class OutboundMessage(_Record):
    id: int | None = None
    case_id: int | None = None
    kind: Literal["reply", "escalation", "alert", "follow_up", "outreach", "report"] = "reply"
    channel: str
    target: str | None = None
    text: str
    in_reply_to: str | None = None
    #: ``awaiting_approval``: an automatic message an agent must approve before the worker may send it.
    status: Literal["queued", "sending", "sent", "failed", "cancelled", "awaiting_approval"] = "queued"
    attempts: int = 0
    last_error: str | None = None
    idempotency_key: str
    external_id: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None
    #: Our account that sends (sent) it, e.g. "FettleCare"; None for alerts and escalations.
    account: str | None = None


class Note(_Record):
    id: int | None = None
    case_id: int
    author: str
    text: str
    created_at: datetime | None = None


class AuditEvent(_Record):
    id: int | None = None
    at: datetime | None = None
    actor: str
    action: str
    case_id: int | None = None
    details: dict[str, Any] = Field(default_factory=dict)
