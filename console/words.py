"""The words the console shows for what the database stores as keys.

An agent reads "lost or missing parcel", "pending customer", "X direct message" and "delivery
attempt failed", not ``lost_or_missing``, ``pending_customer``, ``x_dm`` or ``attempt_failed``.
Why one module: every page (inbox, case, review queue, approvals) names a status, channel,
intent, parcel scan or template the same way, and the keys stay what filters, URLs and the
database use: only what is *shown* changes. A key without a word reads as itself with spaces
(a shop's own template ``late_apology`` reads "late apology"). The channel and scan words live
in ``doorstep.models`` and the intent words in ``doorstep.cases``, because alerts, escalations
and reports use them too.
"""

from __future__ import annotations

from doorstep.cases import INTENT_LABELS
from doorstep.models import CHANNEL_WORDS, TRACKING_WORDS, channel_name, tracking_name

__all__ = ["CHANNEL_WORDS", "NONE", "TRACKING_WORDS", "by_channel", "channel_name", "facet_name", "intent_name",
           "status_name", "template_name", "tracking_name"]

#: What the store's facets call a missing value (``Store.inbox_facets``); also the filter value for it.
NONE = "(none)"

#: What a filter's "(none)" means, column by column: a case nobody has, or one opened before any post.
NONE_WORDS = {"assignee": "nobody", "channel": "no post yet", "intent": "none yet", "brand": "no brand",
              "courier": "no courier", "status": "no status"}


def _spaced(key: str | None) -> str:
    return (key or "-").replace("_", " ")


def by_channel(channel: str | None) -> str:
    """"on X" for a network or Slack, where a message is posted; "by e-mail", "by X direct message" otherwise."""
    posted = channel in ("x", "mastodon", "bluesky", "slack")
    return f"{'on' if posted else 'by'} {channel_name(channel)}"


def intent_name(intent: str | None) -> str:
    """"lost_or_missing" reads "lost or missing parcel" (``doorstep.cases.INTENT_LABELS``)."""
    return INTENT_LABELS.get(intent or "", _spaced(intent))


def status_name(status: str | None) -> str:
    """A case's status: "pending_customer" reads "pending customer"."""
    return _spaced(status)


def template_name(name: str) -> str:
    """A reply template: "ask_details_privately" reads "ask details privately"."""
    return _spaced(name)


def facet_name(column: str, value: str | None) -> str:
    """A value of an inbox filter (brand, courier, channel, intent, assignee, status) as the team says it."""
    if value is None or value == NONE:
        return NONE_WORDS.get(column, "none")
    if column == "channel":
        return channel_name(value)
    if column == "intent":
        return intent_name(value)
    if column == "status":
        return status_name(value)
    return value
