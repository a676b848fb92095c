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

from typing import Any

from doorstep.cases import INTENT_LABELS
from doorstep.models import CHANNEL_WORDS, TRACKING_WORDS, channel_name, tracking_name
from doorstep.resolving import KIND_WORDS, kind_name  # resolving names kinds too

__all__ = ["CHANNEL_WORDS", "NONE", "TRACKING_WORDS", "answer_kind_name", "by_channel", "callback_reason",
           "callback_status_name", "channel_name", "facet_name", "intent_name", "kind_name", "listener_status_name",
           "question_action_words", "question_name", "question_status_name", "rule_name", "status_name", "status_words",
           "template_name", "tracking_name"]

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


def status_words(status: str | None, closed_as: str | None) -> str:
    """A case's status as the team says it: "resolved as spam" for a case closed as spam (it read "resolved", like
    a case answered and done: browser check of closing as spam)."""
    words = status_name(status)
    return f"{words} as spam" if closed_as == "spam" and status == "resolved" else words


def case_status_name(case: Any) -> str:
    """:func:`status_words` of a case (the inbox, its page, the customer's other cases)."""
    return status_words(case.status, getattr(case, "closed_as", None))


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


#: Questions Doorstep asks customers (``[responders.dialogue.questions.NAME]``), by their rule's name.
QUESTION_WORDS = {"callback": "call back", "redeliver": "redelivery"}
#: A question's state (``doorstep.dialogue.QUESTION_STATUSES``) once it no longer waits for an answer.
QUESTION_STATUS_WORDS = {"open": "waiting for an answer", "answered": "answered", "late": "answered late",
                         "expired": "expired without an answer", "opted_out": "the customer opted out",
                         "cancelled": "cancelled"}
#: A call back's state (``doorstep.dialogue.CALLBACK_STATUSES``).
CALLBACK_STATUS_WORDS = {"offered": "offered, waiting for the customer to choose a time", "scheduled": "scheduled",
                         "done": "done", "declined": "declined by the customer", "cancelled": "cancelled"}
#: Why a call back was offered, where the reason is a key (a rule's reasons are written as words already).
CALLBACK_REASON_WORDS = {"agent": "offered by an agent"}
#: The rules that write automatic messages (``automatic_messages.rule``); an alert's rule reads as its alert.
AUTOMATIC_RULE_WORDS = {"follow_up": "follow-up after our reply",
                        "follow_up:unsent": "follow-up when our public reply could not be posted",
                        "follow_up:courier_update": "follow-up on the courier's update",
                        "outreach": "proactive outreach about a parcel"}
#: A listener's health (``listeners.health.listener_health``'s ``status``).
LISTENER_STATUS_WORDS = {"ok": "ok", "warning": "warning (skipped posts)", "error": "error",
                         "stale": "stale (no recent success)", "never": "never run"}


def question_name(rule: str | None) -> str:
    """A question rule: "callback" reads "call back", "redeliver" "redelivery"."""
    return QUESTION_WORDS.get(rule or "", _spaced(rule))


def question_status_name(status: str | None) -> str:
    """A question's state: "opted_out" reads "the customer opted out"."""
    return QUESTION_STATUS_WORDS.get(status or "", _spaced(status))


#: How Doorstep read a customer's answer (``responders.answers.Understanding.kind``, stored as ``answer_kind``).
ANSWER_KIND_WORDS = {"yes": "yes", "no": "no", "time": "a time", "opt_out": "a request to stop our messages",
                     "other": "something else"}


def answer_kind_name(kind: str | None) -> str:
    """How an answer was read: "time" reads "a time", "opt_out" "a request to stop our messages"."""
    return ANSWER_KIND_WORDS.get(kind or "", _spaced(kind))


def question_action_words(action: str | None) -> str:
    """What an answer triggered (``questions.action``, written by ``responders.dialogue``) without its keys:
    "note added; status pending_customer" reads "note added; status set to pending customer". The rest of
    it is words already ("escalated to courier (message 12)", "handed to a person (...)")."""
    if not action:
        return "-"
    said = []
    for part in action.split("; "):
        if part.startswith("status ") and " " not in part.removeprefix("status "):
            part = f"status set to {status_name(part.removeprefix('status '))}"
        elif part == "nothing":
            part = "nothing (the rule does nothing with this answer)"
        said.append(part)
    return "; ".join(said)


def callback_status_name(status: str | None) -> str:
    """A call back's state: "offered" reads "offered, waiting for the customer to choose a time"."""
    return CALLBACK_STATUS_WORDS.get(status or "", _spaced(status))


def callback_reason(reason: str | None) -> str:
    """Why a call back was offered: "agent" reads "offered by an agent"; a rule's reason is already words."""
    return CALLBACK_REASON_WORDS.get(reason or "", reason or "-")


def rule_name(rule: str | None) -> str:
    """The rule that wrote an automatic message: "outreach" reads "proactive outreach about a parcel",
    "alert:sla_breach" "SLA alert", "question:redeliver" "redelivery question"."""
    head, _, tail = (rule or "").partition(":")
    if head == "alert" and tail:
        from responders.alerts import RULE_WORDS

        return f"{RULE_WORDS.get(tail, _spaced(tail))} alert"
    if head == "question" and tail:
        return f"{question_name(tail)} question"
    return AUTOMATIC_RULE_WORDS.get(rule or "", _spaced(rule))


def listener_status_name(status: str | None) -> str:
    """A listener's health: "never" reads "never run", "stale" "stale (no recent success)"."""
    return LISTENER_STATUS_WORDS.get(status or "", _spaced(status))
