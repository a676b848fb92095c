"""The case's history in the care team's words.

The audit log is written for auditors (``outbox.retry_later (message_id=9, attempts=2)``);
agents read sentences: "Reply to @sienna_l on x failed (rate limited), will retry at 14:05",
"ann linked order ORD-2026-000101". Each audit action has one sentence here; an action
without one still reads as "who did what", and the raw events stay one click away for leads.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from doorstep.config import Config
from doorstep.models import AuditEvent
from doorstep.store import parse_time

#: Words for case fields an update can change.
FIELD_WORDS = {
    "status": "status", "assignee": "assignee", "snoozed_until": "snoozed until", "priority": "priority",
    "order_number": "order", "first_response_at": "first response", "resolved_at": "resolved at",
    "link_confirmed": "order link confirmed", "customer_id": "customer", "tracking_number": "tracking number",
}


def _who(actor: str) -> str:
    """"outbox" and "pipeline" are machines; say what they are."""
    return {"outbox": "The outbox", "pipeline": "Doorstep", "worker": "The worker"}.get(actor, actor)


def _message_words(details: dict[str, Any], messages: dict[int, Any]) -> str:
    """"Reply to @sienna_l on x" (or "Message 9" when the message is unknown)."""
    message = messages.get(int(details.get("message_id") or 0))
    if message is None:
        kind = details.get("kind") or "message"
        return f"{str(kind).replace('_', ' ').capitalize()} {details.get('message_id', '')}".strip()
    target = message.target or "-"
    if message.channel not in ("email", "webhook", "sms") and not target.startswith("@"):
        target = f"@{target}"
    return f"{message.kind.replace('_', ' ').capitalize()} to {target} on {message.channel}"


def _value(field: str, value: Any, when: Callable[[datetime | None], str]) -> str:
    if value is None or value == "":
        return "nobody" if field == "assignee" else "none"
    if field in ("snoozed_until", "first_response_at", "resolved_at"):
        parsed = parse_time(str(value))
        return when(parsed) if parsed else str(value)
    return str(value).replace("_", " ")


def sentence(event: AuditEvent, messages: dict[int, Any], when: Callable[[datetime | None], str]) -> str:
    """One audit event as the team says it. ``when`` formats a time in the team's zone."""
    d = event.details or {}
    who = _who(event.actor)
    action = event.action
    if action == "case.update":
        because = d.get("because") if isinstance(d.get("because"), dict) else None
        parts = [f"{FIELD_WORDS.get(k, k.replace('_', ' '))} to {_value(k, v, when)}"
                 for k, v in d.items() if k != "because"]
        if set(d) - {"because"} == {"status"}:
            text = f"{who} set the status to {_value('status', d['status'], when)}"
        elif set(d) - {"because"} == {"assignee"}:
            text = f"{who} assigned the case to {_value('assignee', d['assignee'], when)}"
        else:
            text = f"{who} set " + ", ".join(parts)
        if because and because.get("message_by"):
            text += f" (after {because['message_by']}'s reply was sent)"
        return text
    if action.startswith("outbox.queue."):
        message = _message_words(d, messages)
        return f"{who} queued: {message[0].lower() + message[1:]}" + (f" from @{d['account']}" if d.get("account") else "")
    if action == "outbox.sent":
        return f"{_message_words(d, messages)} sent" + (" (found already posted, not sent twice)" if d.get("recovered") else "")
    if action == "outbox.retry_later":
        why = "rate limited" if d.get("rate_limited") else (str(d.get("error") or "error")[:80])
        at = parse_time(d["retry_at"]) if d.get("retry_at") else None
        return f"{_message_words(d, messages)} failed ({why}), will retry" + (f" at {when(at)}" if at else "")
    if action == "outbox.failed":
        return f"{_message_words(d, messages)} failed for good: {str(d.get('error') or '')[:120]} — retry it from Outbound messages"
    if action == "outbox.in_doubt":
        return f"{_message_words(d, messages)}: sending was interrupted; checked before any retry so it is not sent twice"
    if action == "outbox.retry":
        return f"{who} sent {_message_words(d, messages)[0].lower() + _message_words(d, messages)[1:]} again"
    if action == "outbox.cancel":
        return f"{who} cancelled {_message_words(d, messages)[0].lower() + _message_words(d, messages)[1:]}"
    if action == "case.escalate":
        return f"{who} escalated to {d.get('target', '?')}" + (f": “{d['note']}”" if d.get("note") else "") + (
            f" ({d['reason']})" if d.get("reason") else "")
    if action == "case.open":
        return "A new post opened this case" + (f" (matched by {d['link']})" if d.get("link") else "")
    if action == "case.open.proactive":
        return f"{who} opened this case proactively"
    if action == "case.reopen":
        return "A new post reopened this resolved case"
    if action == "link.verified":
        return f"{who} linked order {d.get('order_number', '?')}, verified: {d.get('how', '')}"
    if action == "link.unconfirmed":
        return f"{who} linked order {d.get('order_number', '?')}, NOT confirmed (its customer is not the author)"
    if action == "label.correct":
        return f"{who} corrected the {d.get('field', 'label')} of post {d.get('mention_id', '?')} from {d.get('old')} to {d.get('new')}"
    if action == "reply.send_anyway":
        return f"{who} sent a reply anyway, although the post was already answered"
    if action.endswith(".skipped"):
        kind = action.rsplit(".", 1)[0].replace("_", " ")
        return f"{kind.capitalize()} not sent: {d.get('reason', '')}"
    if action in ("follow_up.queue", "outreach.queue"):
        return f"{who} queued a {action.split('.')[0].replace('_', ' ')}"
    if action.startswith("automatic."):
        state = action.split(".", 1)[1].replace("_", " ")
        return f"Automatic reply {_message_words(d, messages)[0].lower() + _message_words(d, messages)[1:]}: {state}" + (
            f" by {event.actor}" if state in ("approved", "rejected") else "")
    if action == "case.split":
        return f"{who} split post {d.get('mention_id', '?')} into a new case #{d.get('new_case', '?')}"
    if action == "case.split_from":
        return f"{who} opened this case from post {d.get('mention_id', '?')} of case #{d.get('from_case', '?')}"
    if action == "case.merge":
        return f"{who} merged case #{d.get('merged_case', '?')} into this case"
    if action == "case.merged_into":
        return f"{who} merged this case into case #{d.get('into_case', '?')}"
    if action == "question.asked":
        return f"{who} asked the customer a question on {d.get('channel', '?')} ({str(d.get('rule', '')).replace('_', ' ')})"
    if action == "dialogue.answered":
        return (f"The customer answered on {d.get('channel', '?')}: “{str(d.get('answer', ''))[:80]}”, read as "
                f"{str(d.get('understood', '?')).replace('_', ' ')}")
    if action == "dialogue.needs_human":
        return f"Handed to a person: {d.get('why', '')}"
    if action == "customer.opt_out":
        return (f"The customer opted out of SMS, e-mail and direct messages (wrote “{str(d.get('said', ''))[:40]}” "
                f"on {d.get('channel', '?')})")
    if action == "dialogue.reopened":
        return f"The customer answered “{str(d.get('answer', ''))[:80]}” after the case was closed: reopened, not acted on"
    if action == "dialogue.repeat":
        return f"The customer answered again: “{str(d.get('answer', ''))[:80]}” (already acted on, nothing more done)"
    if action == "callback.offered":
        return f"{who} offered a call back"
    if action == "callback.scheduled":
        return f"The customer asked for a call back: {d.get('slot', '?')}"
    if action == "callback.sla_breach":
        return "The call back is overdue (its SLA has passed)"
    if action == "callback.bridge":
        return f"{who} started a bridged call through Twilio"
    if action == "callback.outcome":
        return f"{who} recorded the call back: {str(d.get('outcome', '?')).replace('_', ' ')}"
    if action == "courier.update":
        return f"The courier updated parcel {d.get('tracking_number', '?')}: {str(d.get('status', '')).replace('_', ' ')}"
    return f"{who}: {action.replace('.', ' ').replace('_', ' ')}"


def raw(event: AuditEvent) -> str:
    """The event as the audit log holds it, for leads checking what happened."""
    details = ", ".join(f"{k}={v}" for k, v in (event.details or {}).items())
    return f"{event.actor}: {event.action}" + (f" ({details})" if details else "")


def lines(events: list[AuditEvent], notes: list[Any], messages: dict[int, Any], config: Config,
          when: Callable[[datetime | None], str]) -> list[tuple[datetime, str]]:
    """(time, sentence) for the notes and events, oldest first."""
    from doorstep.models import utcnow

    items: list[tuple[datetime, str]] = [(n.created_at or utcnow(), f"{n.author} noted: {n.text}") for n in notes]
    items += [(e.at or utcnow(), sentence(e, messages, when)) for e in events if e.action != "case.note"]
    return sorted(items, key=lambda i: i[0])
