"""The case's history in the care team's words.

The audit log is written for auditors (``outbox.retry_later (message_id=9, attempts=2)``);
agents read sentences: "Reply to @sienna_l on X failed (rate limited), will retry at 14:05",
"ann linked order ORD-2026-000101". Each audit action has one sentence here; an action
without one still reads as "who did what", and the raw events stay one click away for leads.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from console.words import answer_kind_name, by_channel, channel_name, intent_name, kind_name
from doorstep.config import Config
from doorstep.models import AuditEvent, Mention
from doorstep.store import parse_time
from doorstep.text import shorten
from responders.alerts import RULE_WORDS
from responders.followup import PROACTIVE_REASON

#: Words for case fields an update can change.
FIELD_WORDS = {
    "status": "status", "assignee": "assignee", "snoozed_until": "snoozed until", "priority": "priority",
    "order_number": "order", "first_response_at": "first response", "resolved_at": "resolved at",
    "link_confirmed": "order link confirmed", "customer_id": "customer", "tracking_number": "tracking number",
}


def actor_name(actor: str, start: bool = True) -> str:
    """Who did something, as the team says it: "outbox" and "pipeline" are machines, an alert rule acts as
    "alert:<rule>". ``start``: at the start of a sentence ("The outbox ..."), else "... by the outbox"."""
    if actor.startswith("alert:"):
        rule = actor.removeprefix("alert:")
        words = f"The {RULE_WORDS.get(rule, rule.replace('_', ' '))} alert"
    else:
        words = {"outbox": "The outbox", "pipeline": "Doorstep", "worker": "The worker", "proactive": "Doorstep",
                 "dialogue": "Doorstep", "follow-up": "The follow-up"}.get(actor, actor)
    return words if start or not words.startswith("The ") else "the" + words.removeprefix("The")


def recipient(message: Any, handles: Mapping[str, str] | None = None, name: str | None = None) -> str:
    """Who a message goes to, as the team reads it.

    An X direct message is addressed to the customer's numeric user id and a Bluesky chat to their
    DID, because that is what the networks take; the team knows the customer by handle, so ``handles``
    (author id -> handle, from the case's posts) turns the id back into "@handle". A Slack, Apprise or
    webhook target is shown as itself, without an @, unless ``name`` says whom it reaches: an escalation's
    target stores its setting's ``$NAME`` (``$SLACK_TEAM_WEBHOOK``: the secret stays in the environment),
    which the team does not know it by; ``name`` is the target they chose ("team", "lead", the courier),
    see :func:`escalation_names`.
    """
    if name and is_reference(message.target):
        return name
    if message.kind == "alert" and is_reference(message.target):
        return "the alerts channel"  # [alerts] names one destination per route; its $NAME is no name to the team
    target = message.target or "-"
    social = message.channel in ("x", "mastodon", "bluesky") or message.channel.endswith("_dm")
    if social and handles and target in handles:
        target = handles[target]
    if social and target != "-" and not target.startswith("@"):  # a handle; not a Slack or webhook target
        target = f"@{target}"
    return target


def is_reference(target: str | None) -> bool:
    """Whether a message's target names a setting rather than a place: ``$NAME`` (read from the environment)
    or ``@config:KEY#FINGERPRINT`` (a credential-bearing URL written in doorstep.toml; doorstep.redaction)."""
    return bool(target) and (str(target).startswith("$") or str(target).startswith("@config:"))


def escalation_names(events: list[AuditEvent], messages: Mapping[int, Any], config: Config) -> dict[int, str]:
    """Message id -> whom the escalation that queued it went to, for the messages whose target is a setting's
    reference (:func:`is_reference`): the configured target the agent chose ("team", "lead": the keys of
    ``[responders.escalation.targets]``), or the courier's name for a courier escalation. An address is its
    own name and an ad hoc ``slack:$NAME`` has no other: neither is in the result. Never the secret itself."""
    from responders.config import responders_settings

    audiences = responders_settings(config).escalation.targets
    names: dict[int, str] = {}
    for event in events:
        d = event.details or {}
        target = str(d.get("target") or "")
        if event.action != "case.escalate" or not isinstance(d.get("message_ids"), list):
            continue
        for message_id in d["message_ids"]:
            message = messages.get(int(message_id or 0))
            if message is None or not is_reference(message.target):
                continue
            if target == "courier":
                courier = next((c for c in config.couriers
                                if message.target in (c.escalation_webhook, c.escalation_email)), None)
                names[message.id] = courier.name if courier is not None else "the courier"
            elif target in audiences:
                names[message.id] = target.replace("_", " ")
    return names


def _message_words(details: dict[str, Any], messages: dict[int, Any], handles: Mapping[str, str] | None = None,
                   names: Mapping[int, str] | None = None) -> str:
    """"Reply to @sienna_l on X", "Escalation to ups@example.com by e-mail", "Escalation to team on Slack"
    (or "Message 9" when the message is unknown). ``names``: see :func:`escalation_names`."""
    message = messages.get(int(details.get("message_id") or 0))
    if message is None:
        kind = kind_name(details.get("kind") or "message")
        return f"{kind[:1].upper()}{kind[1:]} {details.get('message_id', '')}".strip()
    kind = kind_name(message.kind)
    name = (names or {}).get(message.id) if message.id is not None else None
    return f"{kind[:1].upper()}{kind[1:]} to {recipient(message, handles, name)} {by_channel(message.channel)}"


def _value(field: str, value: Any, when: Callable[[datetime | None], str]) -> str:
    if value is None or value == "":
        return "nobody" if field == "assignee" else "none"
    if field in ("snoozed_until", "first_response_at", "resolved_at"):
        parsed = parse_time(str(value))
        return when(parsed) if parsed else str(value)
    return str(value).replace("_", " ")


#: The fields an agent's relink writes (``doorstep.linking.override_link``): the order brings its customer,
#: parcel and courier; the link's method, confidence and confirmation say how it was made.
LINK_FIELDS = frozenset({"order_number", "customer_id", "tracking_number", "courier", "link_method", "link_confidence",
                         "link_confirmed"})
#: The audit actions that say a relink in words (written in the same transaction as its update).
LINK_ACTIONS = ("link.verified", "link.unconfirmed")


def _relink_words(d: dict[str, Any]) -> str:
    """"linked order 104210 (parcel 1Z... with UPS), confirmed" or "removed the linked order"."""
    if not d.get("order_number"):
        return "removed the linked order"
    parcel = f" (parcel {d['tracking_number']}" + (f" with {d['courier']})" if d.get("courier") else ")") \
        if d.get("tracking_number") else ""
    return f"linked order {d['order_number']}{parcel}" + (", confirmed" if d.get("link_confirmed") else "")


#: A sentence made by code: (the event's details, what a template would see, ``when``) -> words.
Said = Callable[[dict[str, Any], dict[str, Any], Callable[[datetime | None], str]], str]


def _case_update(d: dict[str, Any], c: dict[str, Any], when: Callable[[datetime | None], str]) -> str:
    if isinstance(d.get("because"), dict) and "review_of" in d["because"]:
        return _rescored(d, c)
    if isinstance(d.get("because"), dict) and "regroup" in d["because"]:
        # A split or merge works the counts, clocks and scores out again: its own line says what happened, and only
        # a status or assignee it brought over is news (a raw list of every field read as a dump: audit, F5).
        brought = [f"the status {_value('status', d['status'], when)}" if "status" in d else "",
                   f"the assignee {_value('assignee', d['assignee'], when)}" if "assignee" in d else ""]
        brought = [b for b in brought if b]
        if not brought or "merged_into" in d:  # the merged-away case: its "merged this case into" line says it
            return ""
        return f"{c['who']}'s {d['because']['regroup']} brought over {' and '.join(brought)}"
    if d.get("closed_as") == "spam":  # doorstep/closing.py: resolved and marked spam, one change said as one
        return f"{c['who']} closed the case as spam"
    # When it was resolved follows the status, and a spam mark goes when the case opens again: said in words
    # ("set status to open, resolved at to none" read as a dump: two-brand browser audit).
    spam_cleared = "closed_as" in d and d["closed_as"] is None
    d = {k: v for k, v in d.items() if k != "closed_as" and not (k == "resolved_at" and "status" in d)}
    fields = set(d) - {"because"}
    if fields == {"status"}:
        text = f"{c['who']} set the status to {_value('status', d['status'], when)}"
        text += "; it is no longer marked spam" if spam_cleared else ""
    elif fields == {"assignee"}:
        text = f"{c['who']} assigned the case to {_value('assignee', d['assignee'], when)}"
    else:
        relinked = "order_number" in fields  # one relink changes seven fields: said as one change
        rest = [f"{FIELD_WORDS.get(k, k.replace('_', ' '))} to {_value(k, v, when)}" for k, v in d.items()
                if k != "because" and not (relinked and k in LINK_FIELDS)]
        said = ([_relink_words(d)] if relinked else []) + (["set " + ", ".join(rest)] if rest else [])
        text = f"{c['who']} " + "; ".join(said)
    because = d.get("because") if isinstance(d.get("because"), dict) else None
    return text + (f" (after {because['message_by']}'s reply was sent)" if because and because.get("message_by") else "")


def _label_value(field: str, value: Any) -> str:
    """A label as the team says it: "failed delivery", "negative", "yes"."""
    if field == "intent":
        return intent_name(str(value))
    if field == "complaint":
        return "yes" if str(value).lower() in ("true", "1", "yes") else "no"
    return str(value).replace("_", " ")


def _and(words: list[str]) -> str:
    """"sentiment and complaint", "intent, sentiment and complaint"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _review(d: dict[str, Any], c: dict[str, Any], when: Callable[[datetime | None], str]) -> str:
    """One review (doorstep.corrections): "ann reviewed post 847: intent product or account → failed
    delivery; sentiment and complaint confirmed"."""
    changed = d.get("changed") if isinstance(d.get("changed"), dict) else {}
    said = [f"{field} {_label_value(field, pair[0])} → {_label_value(field, pair[1])}"
            for field, pair in changed.items() if isinstance(pair, (list, tuple)) and len(pair) == 2]
    confirmed = [str(f) for f in d.get("confirmed") or []]
    if confirmed:
        said.append(f"{_and(confirmed)} confirmed")
    return f"{c['who']} reviewed post {d.get('mention_id', '?')}" + (f": {'; '.join(said)}" if said else "")


def _correction(d: dict[str, Any], c: dict[str, Any], when: Callable[[datetime | None], str]) -> str:
    """One field of a review, as reviews were logged before one event said the whole review."""
    field, old, new = str(d.get("field") or "label"), d.get("old"), d.get("new")
    if old == new:
        return f"{c['who']} confirmed the {field} of post {d.get('mention_id', '?')} ({_label_value(field, new)})"
    return (f"{c['who']} corrected the {field} of post {d.get('mention_id', '?')} from {_label_value(field, old)} "
            f"to {_label_value(field, new)}")


#: What the timeline names of a re-score after a review (the reasons are on the case page).
RESCORED_WORDS = ("intent", "sentiment", "complaint", "priority")


def _rescored(d: dict[str, Any], c: dict[str, Any]) -> str:
    """The case scored again after a review: "ann's review of post 847 scored the case again: intent
    failed delivery, priority 57 (was 43)"."""
    because = d["because"]
    said = [f"{field} {_label_value(field, d[field])}" for field in RESCORED_WORDS[:3] if field in d]
    if "priority" in d:
        was = because.get("priority_was")
        said.append(f"priority {float(d['priority']):g}" + (f" (was {float(was):g})" if was is not None else ""))
    elif "priority_reasons" in d:
        said.append("its priority reasons")
    return f"{c['who']}'s review of post {because.get('review_of', '?')} scored the case again" + (
        f": {', '.join(said)}" if said else "")


#: Characters of an outbox error a timeline line quotes: a retry's and a failure for good's. The whole error (as the
#: outbox keeps it) is in the raw audit events, and the newest one in the case's Outbound messages ("last error").
RETRY_ERROR_CHARS, FAILED_ERROR_CHARS = 80, 120


def _retry_later(d: dict[str, Any], c: dict[str, Any], when: Callable[[datetime | None], str]) -> str:
    at = parse_time(d["retry_at"]) if d.get("retry_at") else None
    why = "rate limited" if d.get("rate_limited") else shorten(str(d.get("error") or "error"), RETRY_ERROR_CHARS)
    return f"{c['message']} failed ({why}), will retry" + (f" at {when(at)}" if at else "")


class _Words(string.Formatter):
    """Fills a template from the event's details ("?", or :data:`MISSING`'s word, for one it lacks), ``{who}``,
    ``{message}``, ``{the_message}``. ``{x!w}``: underscores as spaces; ``{x!b}``: a channel as "on X";
    ``{x!k}``: an answer's kind in words ("a time"); ``{x:.80}``: at most 80 characters, cut after a whole word with
    "…" (:func:`doorstep.text.shorten`: "…could not reach the ser" told no one that words were missing);
    ``{x:? (%s)}``: the words after ``?`` with the detail for ``%s``, nothing when the detail is empty."""

    def get_value(self, key: Any, args: Any, kwargs: Any) -> Any:
        return kwargs[key] if key in kwargs else MISSING.get(key, "?")

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion == "b":  # a channel as "on X" / "by SMS"
            return by_channel(str(value))
        if conversion == "k":  # how an answer was read: "a time", not "time"
            return answer_kind_name(str(value))
        return str(value).replace("_", " ") if conversion == "w" else super().convert_field(value, conversion)

    def format_field(self, value: Any, spec: str) -> str:
        if spec.startswith("?"):
            return spec[1:].replace("%s", str(value)) if value else ""
        if spec.startswith(".") and spec[1:].isdigit():
            return shorten(str(value), int(spec[1:]))
        return format(str(value), spec)


#: What a template says for a detail the event lacks (any other reads "?").
MISSING = {"how": "", "why": "", "reason": "", "answer": "", "said": "", "rule": "", "status": "", "field": "label",
           "old": None, "new": None, "recovered": "", "note": "", "link": "", "account": ""}

#: Each audit action's sentence: a template for :class:`_Words`, or a :data:`Said` function.
SENTENCES: dict[str, str | Said] = {
    "case.update": _case_update,
    "outbox.sent": "{message} sent{recovered:? (found already posted, not sent twice)}",
    "outbox.retry_later": _retry_later,
    "outbox.failed": lambda d, c, when: f"{c['message']} failed for good: {shorten(str(d.get('error') or ''), FAILED_ERROR_CHARS)} — retry it "
                                       "from Outbound messages",
    "outbox.in_doubt": "{message}: sending was interrupted; checked before any retry so it is not sent twice",
    "outbox.retry": "{who} queued {the_message} again, to be sent",  # a retry queues; "sent" comes with outbox.sent
    "outbox.cancel": "{who} cancelled {the_message}",
    "case.escalate": "{who} escalated to {target}{note:?: “%s”}{reason:? (%s)}",
    "automatic.approved": lambda d, c, when: f"Automatic reply {c['the_message']}: approved by {c['actor']}" + (
        f"; it goes at {when(parse_time(d['not_before']))}" + (f", after the {d['reason']}" if d.get("reason") else "")
        if d.get("not_before") else ""),
    "automatic.waiting_for_quiet_hours_to_end": lambda d, c, when: (
        f"{c['message']} waits for the end of {d.get('reason') or 'quiet hours'}: it goes at "
        f"{when(parse_time(d.get('until')))}"),
    "case.open": lambda d, c, when: "A new post opened this case" + (
        f" (matched by {str(d['link']).replace('_', ' ')})" if d.get("link") not in (None, "", "none") else ""),
    "case.open.proactive": lambda d, c, when: f"Doorstep opened this case for parcel {d.get('tracking_number') or '?'}"
                                              + (f" ({PROACTIVE_REASON.get(d['reason'], d['reason'])})"
                                                 if d.get("reason") else ""),
    "case.reopen": "A new post reopened this resolved case",
    # Our reply typed in the network's own app, which a listener (or an import) stored on the case.
    "case.answered": lambda d, c, when: f"{c['who']} answered {by_channel(d.get('channel'))} (outside Doorstep)" + (
        ", the case's first response" if d.get("first_response") else ""),
    "link.verified": "{who} linked order {order_number}, verified: {how}",
    "link.unconfirmed": "{who} linked order {order_number}, NOT confirmed (its customer is not the author)",
    "label.review": _review,
    "label.correct": _correction,
    "reply.send_anyway": "{who} sent a reply anyway, although the post was already answered",
    "follow_up.queue": "{who} queued a follow-up",
    "outreach.queue": "{who} queued an outreach message",
    "case.split": "{who} split post {mention_id} into a new case #{new_case}",
    "case.split_from": "{who} opened this case from post {mention_id} of case #{from_case}",
    "case.merge": "{who} merged case #{merged_case} into this case",
    "case.merged_into": "{who} merged this case into case #{into_case}",
    # Queued, not asked: a rule's message may wait for a lead's approval, and its sending has its own line.
    "question.asked": "{who} queued a question to the customer {channel!b} ({rule!w})",
    "dialogue.answered": "The customer answered {channel!b}: “{answer:.80}”, read as {understood!k}",
    "dialogue.needs_human": "Handed to a person: {why}",
    "customer.opt_out": "The customer opted out of SMS, e-mail and direct messages (wrote “{said:.40}” {channel!b})",
    "dialogue.reopened": "The customer answered “{answer:.80}” after the case was closed: reopened, not acted on",
    "dialogue.repeat": "The customer answered again: “{answer:.80}” (already acted on, nothing more done)",
    "callback.offered": "{who} queued an offer of a call back {channel!b}",
    "callback.scheduled": "The customer asked for a call back: {slot}",
    "callback.sla_breach": "The call back is overdue (its SLA has passed)",
    "callback.bridge": "{who} started a bridged call through Twilio",
    "callback.outcome": "{who} recorded the call back: {outcome!w}",
    "courier.update": "The courier updated parcel {tracking_number}: {status!w}",
    # Written by the agent's escalation, but not their doing: the shop's signing key is missing. The sentence says
    # what the courier misses and what whoever runs Doorstep sets (the reason names the setting and where it is read).
    "courier.link.unavailable": lambda d, c, when: (
        f"{c['who']}'s escalation to the courier went without a courier link (the courier cannot open this parcel's "
        f"page or post updates)" + (f"; whoever runs Doorstep can fix it: {d['reason']}" if d.get("reason") else
                                    "; whoever runs Doorstep can fix it: set COURIER_LINK_SECRET")),
    "customer.erase": lambda d, c, when: "Personal data erased at the customer's request by "
                                         + actor_name(c["actor"], start=False),
    "alert.new": "{who} fired",
    "alert.update": "{who} fired again",
}

#: Families of actions, by how the name starts or ends, for those :data:`SENTENCES` does not name.
FAMILIES: list[tuple[Callable[[str], bool], str | Said]] = [
    # an account is a handle ("from @FettleCare") or, for e-mail, an address ("from help@shop.example")
    (lambda a: a.startswith("outbox.queue."), lambda d, c, when: f"{c['who']} queued: {c['the_message']}" + (
        "" if not d.get("account") else f" from {d['account']}" if "@" in str(d["account"])
        else f" from @{d['account']}")),
    (lambda a: a.endswith(".skipped"), lambda d, c, when: f"{c['action'].rsplit('.', 1)[0].replace('_', ' ').capitalize()}"
                                                          f" not sent: {d.get('reason', '')}"),
    (lambda a: a.startswith("automatic."), lambda d, c, when: f"Automatic reply {c['the_message']}: {c['state']}" + (
        f" by {c['actor']}" if c["state"] in ("approved", "rejected") else "")
     # who cancelled it and why (it read "...: cancelled" alone: two-brand browser audit)
     + (f" by {actor_name(c['actor'], start=False)}: {d['reason']}" if c["state"] == "cancelled" and d.get("reason")
        else "")),
]


def sentence(event: AuditEvent, messages: dict[int, Any], when: Callable[[datetime | None], str],
             handles: Mapping[str, str] | None = None, names: Mapping[int, str] | None = None) -> str:
    """One audit event as the team says it. ``when`` formats a time in the team's zone; ``handles``
    (author id -> handle) names a direct message's recipient (see :func:`recipient`); ``names`` (message id ->
    name) an escalation's (see :func:`escalation_names`)."""
    d, who = event.details or {}, actor_name(event.actor)
    words = SENTENCES.get(event.action) or next((w for match, w in FAMILIES if match(event.action)), None)
    if words is None:
        return f"{who}: {event.action.replace('.', ' ').replace('_', ' ')}"
    message = _message_words(d, messages, handles, names)
    c = {**d, "who": who, "message": message, "the_message": message[0].lower() + message[1:],
         "action": event.action, "actor": event.actor, "state": event.action.split(".", 1)[-1].replace("_", " ")}
    return words(d, c, when) if callable(words) else _Words().vformat(words, (), c)


def raw(event: AuditEvent) -> str:
    """The event as the audit log holds it, for leads checking what happened."""
    details = ", ".join(f"{k}={v}" for k, v in (event.details or {}).items())
    return f"{event.actor}: {event.action}" + (f" ({details})" if details else "")


#: A post stored longer than this after it was written came late (a file import, a listener catching up):
#: its line stands at the post's time and says when it was imported. A listener's poll stays under it.
IMPORTED_AFTER = timedelta(minutes=5)


def happened_at(event: AuditEvent, opened_at: datetime | None = None) -> datetime | None:
    """When what ``event`` records happened, for the events written when the system stored a post rather
    than when the post was written: the case's opening (``opened_at``, the case's), its reopening by a post and
    our own reply typed on the network (the post's ``posted_at``). None for every other event: it happened
    when it was written."""
    if event.action == "case.open" and opened_at is not None:
        return opened_at
    if event.action in ("case.answered", "case.reopen"):
        try:
            return parse_time((event.details or {}).get("posted_at"))
        except (TypeError, ValueError):
            return None
    return None


def lines(events: list[AuditEvent], notes: list[Any], messages: dict[int, Any], config: Config,
          when: Callable[[datetime | None], str], handles: Mapping[str, str] | None = None,
          opened_at: datetime | None = None, posts: list[Mention] | None = None) -> list[tuple[datetime, str]]:
    """(time, sentence) for the notes, events and ``posts`` (the case's, ``Store.mentions_for_case``), oldest first.

    An event keeps its meaning in the audit log (when the system did it), but a post imported a week after
    it was written did not open its case a week late: the opening stands at ``opened_at`` (the case's), a
    reopening and our reply typed on the network at their post's time, each with "; imported <when>" where the system stored it
    more than :data:`IMPORTED_AFTER` later. Lines are ordered by the time they show. A post that joined the
    case without an event of its own (the customer writing again on an open case) is said by
    :func:`post_lines`."""
    from doorstep.models import utcnow

    items: list[tuple[datetime, str]] = [(n.created_at or utcnow(), f"{n.author} noted: {n.text}") for n in notes]
    link_events = [e for e in events if e.action in LINK_ACTIONS]
    outbox_posts = {str((e.details or {}).get("external_id")) for e in events if e.action == "outbox.sent"}
    names = escalation_names(events, messages, config)
    for e in events:
        if e.action == "case.note" or _said_by_its_link_event(e, link_events):
            continue
        if e.action == "case.answered" and str((e.details or {}).get("external_id")) in outbox_posts:
            # A listener stored our reply before the outbox recorded its post id (a crash between the two:
            # "found already posted"); the outbox's line tells it, it was not typed outside Doorstep.
            continue
        at, words = e.at or utcnow(), sentence(e, messages, when, handles, names)
        if not words:  # told by another event's line (a split's or merge's recount)
            continue
        happened = happened_at(e, opened_at)
        if happened is not None:
            if e.at is not None and e.at - happened > IMPORTED_AFTER:
                words += f"; imported {config.local_time(e.at)}"
            at = happened
        items.append((at, words))
    items += post_lines(posts or [], events)
    return sorted(items, key=lambda i: i[0])


#: The actions whose line already tells of a post (its ``external_id``): its opening, a reopening, our reply.
POST_ACTIONS = ("case.open", "case.reopen", "case.answered")
#: The actions whose line quotes a customer's answer to our question (a post on the case, when it came as one).
ANSWER_ACTIONS = ("dialogue.answered", "dialogue.repeat", "dialogue.reopened")
#: How much of a post's words its line quotes.
POST_QUOTE = 80


def post_lines(posts: list[Mention], events: list[AuditEvent]) -> list[tuple[datetime, str]]:
    """(the post's time, "@jane posted again on X: “still nothing”") for each post of the case that no event's
    line already tells: the opening post, a reopening one and our own replies have theirs (``events``), and
    an answer to our question is quoted by the dialogue's line. "again" when its author posted earlier on the
    case; a stranger in the customer's thread is said to be one. The words are the author's, quoted as text
    (the page escapes them: never Markdown or HTML), on one line and cut at :data:`POST_QUOTE` characters."""
    told = {str((e.details or {}).get("external_id")) for e in events if e.action in POST_ACTIONS}
    # An answer's event keeps its first 300 characters (responders/dialogue.py); each quotes one post.
    answers = Counter(_one_line(str((e.details or {}).get("answer") or "")[:300]) for e in events
                      if e.action in ANSWER_ACTIONS)
    seen: set[str] = set()
    out: list[tuple[datetime, str]] = []
    for post in sorted(posts, key=lambda m: (m.created_at, m.id or 0)):
        author = _poster(post)
        earlier = author in seen
        seen.add(author)
        if post.outbound or post.external_id in told:
            continue
        if answers[_one_line(post.text[:300])] > 0:
            answers[_one_line(post.text[:300])] -= 1
            continue
        words = _one_line(post.text)
        quote = shorten(words, POST_QUOTE)
        stranger = " (not the case's customer)" if post.by_customer is False else ""
        out.append((post.created_at, f"{author} posted{' again' if earlier else ''} {by_channel(post.channel)}"
                                     f"{stranger}: “{quote}”"))
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _poster(post: Mention) -> str:
    """Who wrote a post, as the thread shows them: "@jane" on a network, an address or number as itself, a
    name where the post has no handle (a courier page's post)."""
    handle = (post.author_handle or "").strip()
    if not handle:
        return post.author_name or "Someone"
    social = post.channel in ("x", "mastodon", "bluesky") or post.channel.endswith("_dm")
    return f"@{handle.lstrip('@')}" if social else handle


def _said_by_its_link_event(event: AuditEvent, link_events: list[AuditEvent]) -> bool:
    """A relink's field update when its link event already says it: "ann linked order X, verified: ..." or
    "..., NOT confirmed"; the update would repeat it with the store's field names. The two are written in one
    transaction, each stamped to the second when written: a second boundary may fall between them."""
    d = event.details or {}
    if event.action != "case.update" or "order_number" not in d or not set(d) <= LINK_FIELDS or event.at is None:
        return False
    return any(e.actor == event.actor and str((e.details or {}).get("order_number")) == str(d["order_number"])
               and e.at is not None and abs((e.at - event.at).total_seconds()) <= 2 for e in link_events)
