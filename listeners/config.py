"""Validated settings of the channel listeners (``[channels.*]`` in doorstep.toml).

The core keeps ``channels`` as free-form dicts so the listeners own their keys; this module
checks them and reports mistakes as ``channels.x.queries: Input should be a valid list``.
Operators and automated checks configure the listeners through these key names: keep them
stable. Credentials are never here; they come from the environment (see doorstep.clients).
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from doorstep.config import Config, ConfigError, config_source, secret
from doorstep.models import CHANNEL_ANSWERED, CHANNEL_WORDS, channel_key


class _Section(BaseModel):
    # Unknown keys are errors: a misspelt "querys" must not silently disable a channel.
    # ``base_url``/``timeout_s`` are read by doorstep.clients (the env variables win).
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    poll_seconds: float = Field(default=60.0, gt=0)
    base_url: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)


class XSettings(_Section):
    #: Recent-search queries, e.g. "@ShopHelp OR ShopHelp -is:retweet".
    queries: list[str] = Field(default_factory=list)
    #: Handles whose mentions timeline is polled (resolved to user ids once, cached in cursors).
    accounts: list[str] = Field(default_factory=list)
    include_retweets: bool = False
    #: Use the filtered stream as well (not on every access level); polling still runs.
    stream: bool = False
    max_results: int = Field(default=100, ge=10, le=100)
    #: Pages per source per round at most, so one busy query cannot starve the others.
    max_pages: int = Field(default=200, ge=1)
    #: Read our accounts' direct messages (their own user tokens; dm.read): private answers join their case.
    direct_messages: bool = False

    @field_validator("queries")
    @classmethod
    def _queries_not_blank(cls, value: list[str]) -> list[str]:
        for index, query in enumerate(value):
            if not query.strip():
                raise ValueError(f"query {index + 1} is empty")
            if len(query) > 512:
                raise ValueError(f"query {index + 1} is longer than 512 characters (the X limit)")
        return value

    @field_validator("accounts")
    @classmethod
    def _strip_at(cls, value: list[str]) -> list[str]:
        return [a.strip().lstrip("@") for a in value if a.strip()]


class MastodonSettings(_Section):
    #: Accounts (of the access token) whose mention notifications are read; informative, since a
    #: token belongs to one account.
    accounts: list[str] = Field(default_factory=list)
    hashtags: list[str] = Field(default_factory=list)
    #: Words searched in the public timeline (needs full-text search on the instance).
    keywords: list[str] = Field(default_factory=list)
    limit: int = Field(default=40, ge=1, le=40)
    max_pages: int = Field(default=50, ge=1)

    @field_validator("hashtags")
    @classmethod
    def _strip_hash(cls, value: list[str]) -> list[str]:
        return [h.strip().lstrip("#") for h in value if h.strip()]


class BlueskySettings(_Section):
    queries: list[str] = Field(default_factory=list)
    #: Read mention/reply notifications of the logged-in account.
    notifications: bool = True
    #: Read the account's chat (the app password needs direct-message access): private answers join their case.
    direct_messages: bool = False
    limit: int = Field(default=100, ge=1, le=100)
    max_pages: int = Field(default=50, ge=1)


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8766, ge=0, le=65535)
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    #: Mentions in one request at most (a JSON list is accepted).
    max_mentions: int = Field(default=1000, gt=0)
    #: Channel given to mentions that do not name one.
    default_channel: str = "webhook"
    #: Channels senders may post to (default: just ``default_channel``). Never list a channel a
    #: listener polls (x, mastodon, ...): a sender could pre-empt a real post's id there.
    channels: list[str] = Field(default_factory=list)
    #: Accept ``outbound: true`` (a post by the team, which stops a case's SLA clock): only for
    #: a trusted relay of the team's own replies.
    allow_outbound: bool = False

    @field_validator("default_channel")
    @classmethod
    def _default_channel_key(cls, value: str) -> str:
        return cls._stored_name(value)

    @field_validator("channels")
    @classmethod
    def _channel_keys(cls, value: list[str]) -> list[str]:
        return [cls._stored_name(name) for name in value]

    @property
    def secret(self) -> str | None:
        return secret("DOORSTEP_WEBHOOK_SECRET")

    @staticmethod
    def _stored_name(value: str) -> str:
        """A webhook channel by the name its posts are stored under (:func:`doorstep.models.channel_key`).

        Why here: posts are checked against these names and then stored by their key, so a configured "twitter" let
        senders post on "x" (a made-up id takes a real tweet's place), and a "facebook messenger", no channel name,
        refused every post while the config loaded (review of 516969e). A network's own channel is never a webhook's.
        """
        own = "give the webhook's posts a name of their own: lowercase letters, digits and _ (e.g. {})"
        try:
            key = channel_key(value)
        except ValueError:
            near = re.sub(r"[^a-z0-9_]+", "_", value.strip().casefold()).strip("_")
            near = near if re.fullmatch(r"[a-z][a-z0-9_]*", near) and near not in CHANNEL_ANSWERED else "courier_page"
            raise PydanticCustomError("channel_name", f"{value!r} is not a channel name; {own.format(near)}") from None
        if key in CHANNEL_ANSWERED:
            raise PydanticCustomError("network_channel", f"{value!r} is {CHANNEL_WORDS[key]}'s own channel ({key}), "
                                      "filled by its listener, where a sender could take a real post's place; "
                                      f"{own.format('courier_page')}")
        return key


SECTIONS: dict[str, type[BaseModel]] = {
    "x": XSettings,
    "mastodon": MastodonSettings,
    "bluesky": BlueskySettings,
    "webhook": WebhookSettings,
}


def channel_settings(config: Config, channel: str) -> Any:
    """The validated ``[channels.CHANNEL]`` section (defaults when absent)."""
    model = SECTIONS[channel]
    try:
        return model.model_validate(config.channels.get(channel, {}))
    except ValidationError as exc:
        lines = []
        for item in exc.errors():
            key = ".".join(["channels", channel, *(str(part) for part in item["loc"])])
            lines.append(f"{config_source(config)}: {key}: {item['msg']}")
        raise ConfigError("\n".join(lines)) from None


def configured_channels(config: Config) -> list[str]:
    """Listener channels that have a section in the file and are enabled."""
    return [name for name in SECTIONS if name in config.channels and channel_settings(config, name).enabled]


def known_channel_sections(config: Config) -> None:
    """Refuse a ``[channels.NAME]`` section no package reads (``[channels.mastadon]``).

    The core keeps ``channels`` free-form, and :func:`configured_channels` looks only at the
    names it knows, so a misspelt section was ignored: that network's listener never ran and
    nothing said so. These are every channel section there is: the responders post through the
    same sections' clients (doorstep.clients) and have none of their own.
    """
    lines = []
    for name in config.channels:
        if name not in SECTIONS:
            near = difflib.get_close_matches(name, SECTIONS, n=1)
            hint = f"; did you mean {near[0]}?" if near else "; check its spelling"
            lines.append(f"{config_source(config)}: channels.{name}: unknown channel "
                         f"(known: {', '.join(SECTIONS)}){hint}")
    if lines:
        raise ConfigError("\n".join(lines))
