"""Escalations: hand a case to a team, a lead or the courier, through the outbox.

Targets:

* a named audience from ``[responders.escalation.targets.NAME]`` (``team``, ``lead``, ...) with
  any of ``slack_webhook_url`` (Slack incoming webhook, via slack_sdk), ``email`` and ``apprise``;
* ``courier``: the case's courier, by ``escalation_email`` and/or ``escalation_webhook`` from its
  ``[[couriers]]`` entry, each with a signed, expiring link to the shipment's courier page
  (responders/courier_link.py). The webhook body is JSON with the order, tracking number, the customer's
  complaint and the tracking timeline, signed with HMAC-SHA256 (``X-Doorstep-Signature:
  sha256=HEX`` over ``TIMESTAMP.BODY``, ``X-Doorstep-Timestamp``) using ``webhook_secret``;
* ad hoc: ``email:ADDRESS``, ``slack:$ENV_OR_URL``, ``webhook:URL``, ``apprise:URL``.

Every escalation is one outbound message per route (visible on the case's timeline), an audit
event, and the case's status set to ``escalated``. Escalating to the courier needs a confirmed
order: we must not send someone else's order to a courier on the strength of a number in a post.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from doorstep.config import Config
from doorstep.models import Case, OutboundMessage, tracking_name, utcnow
from doorstep.permissions import require
from doorstep.redaction import redact
from doorstep.store import Store, iso
from responders.channels import webhook_payload
from responders.config import Target, responders_settings
from responders.outbox import _key, customers_peak, enqueue, update_case_retrying

log = logging.getLogger("doorstep.escalation")


class EscalationRejected(ValueError):
    """The escalation cannot be made as asked; the message says why."""


def case_brief(store: Store, config: Config, case: Case) -> dict[str, Any]:
    """What a courier or a team needs to act without opening the console."""
    complaint = customers_peak(store, case)
    shipment = store.get_shipment(case.tracking_number) if case.tracking_number else None
    order = store.get_order(case.order_number) if case.order_number else None
    if shipment is None and order is not None and order.shipments:
        shipment = order.shipments[0]
    return {
        "case_id": case.id,
        "brand": case.brand,
        "status": case.status,
        "priority": case.priority,
        "intent": case.intent,
        "channel": case.channel,
        "order_number": order.number if order else case.order_number,
        "promised_date": order.promised_date.isoformat() if order and order.promised_date else None,
        "tracking_number": shipment.tracking_number if shipment else case.tracking_number,
        "courier": shipment.courier if shipment else case.courier,
        "complaint": {
            "text": complaint.text, "author": complaint.author_handle, "at": iso(complaint.created_at),
            "url": complaint.url,
        } if complaint else None,
        "timeline": [
            {"time": iso(e.time), "status": e.status, "location": e.location, "description": e.description}
            for e in (shipment.events if shipment else [])
        ],
        "first_response_due": iso(case.first_response_due),
        "resolution_due": iso(case.resolution_due),
    }


def _text(brief: dict[str, Any], note: str | None, actor: str, config: Config, target: str) -> str:
    lines = [f"Subject: Escalation: case #{brief['case_id']}"
             + (f" - order {brief['order_number']}" if brief.get("order_number") else "")
             + (f" ({brief['brand']})" if brief.get("brand") else "")]
    lines.append("")
    lines.append(f"Escalated to {target} by {actor}.")
    if note:
        lines.append(f"Note: {note}")
    if brief.get("complaint"):
        c = brief["complaint"]
        who = f"@{c['author'].lstrip('@')}" if c.get("author") else "no handle"  # a courier-page post has none
        lines.append(f"Customer ({who}, {config.local_time(c['at'])}): {c['text']}")
    if brief.get("tracking_number"):
        lines.append(f"Courier: {brief.get('courier')}  Tracking: {brief['tracking_number']}")
    for event in brief.get("timeline", [])[-6:]:
        when = config.local_time(event["time"])
        lines.append(f"  {when}  {tracking_name(event['status'])}  {event.get('location') or ''}  {event.get('description') or ''}".rstrip())
    if brief.get("first_response_due"):
        lines.append(f"First response due: {config.local_time(brief['first_response_due'])}; resolution due: "
                     f"{config.local_time(brief['resolution_due'])} ({config.timezone})")
    return "\n".join(lines)


def _routes(config: Config, case: Case, target: str) -> list[tuple[str, str]]:
    """(channel, target reference) pairs for an escalation target."""
    kind, sep, rest = target.partition(":")
    if sep and kind in ("email", "slack", "webhook", "apprise"):
        from doorstep.redaction import SecretTargetError, stored_target

        try:
            stored_target(rest)
        except SecretTargetError as exc:
            raise EscalationRejected(str(exc)) from None
        return [(kind, rest)]
    if target == "courier":
        courier = config.courier(case.courier)
        if courier is None:
            raise EscalationRejected(f"case {case.id} has no known courier ({case.courier or 'none'}) to escalate to")
        if not case.link_confirmed:
            raise EscalationRejected("confirm the case's order before escalating to the courier: the number may be "
                                     "someone else's order")
        routes = [("email", courier.escalation_email)] if courier.escalation_email else []
        if courier.escalation_webhook:
            routes.append(("webhook", courier.escalation_webhook))
        if not routes:
            raise EscalationRejected(f"courier {courier.name} has no escalation_email or escalation_webhook configured")
        return routes
    audiences = responders_settings(config).escalation.targets
    audience: Target | None = audiences.get(target)
    if audience is None or audience.empty:
        known = ", ".join(sorted([*audiences, "courier"]))
        raise EscalationRejected(f"unknown escalation target {target!r}; configured: {known} "
                                 "(or email:ADDRESS, slack:URL, webhook:URL, apprise:URL)")
    return target_routes(audience)


def target_routes(audience: Target) -> list[tuple[str, str]]:
    routes: list[tuple[str, str]] = []
    if audience.slack_webhook_url:
        routes.append(("slack", audience.slack_webhook_url))
    routes += [("email", address) for address in audience.email]
    routes += [("apprise", url) for url in audience.apprise]
    return routes


def escalate(store: Store, config: Config, case_id: int, target: str, note: str | None, actor: str, *,
             reason: str = "manual", key: str | None = None) -> list[OutboundMessage]:
    """Queue the escalation on every route of ``target`` and mark the case escalated."""
    case = store.get_case(case_id)
    if case is None:
        raise EscalationRejected(f"no case {case_id}")
    if case.merged_into:  # its posts and clocks went there: a lead paged about this one finds only a pointer
        raise EscalationRejected(f"case {case_id} was merged into case #{case.merged_into}: escalate case "
                                 f"#{case.merged_into}")
    routes = _routes(config, case, target)
    # A secret pasted into the note (a webhook URL, a token) is masked as the audit log masks it: a message's text
    # is stored and shown, and only a secret's $NAME may be (README audit).
    note = redact(note) if note else note
    brief = case_brief(store, config, case)
    text = _text(brief, note, actor, config, target)
    link = _courier_link(store, config, case, actor) if target == "courier" else None
    if link is not None:
        from responders.courier_link import expires_text

        text += (f"\n\nSee this shipment and post updates (this link shows this parcel only and works until "
                 f"{expires_text(link[1], config)}):\n{link[0]}")
    base = key or _key("escalation", case_id, target, note, actor, iso(utcnow()))
    mailbox = _courier_mailbox(store, config, case) if target == "courier" else None
    messages = []
    with store.transaction():  # all of it or nothing: a refused actor leaves no message queued to be sent
        require(store, actor, "escalate", f"escalate case {case_id}", services=True)
        for channel, ref in routes:
            if channel == "webhook":
                body = webhook_payload({"event": "case.escalated", "escalated_by": actor, "note": note,
                                        "reason": reason, **brief,
                                        **({"courier_link": link[0], "courier_link_expires_at": iso(link[1])}
                                           if link else {})})
            else:
                body = text
            messages.append(enqueue(store, kind="escalation", channel=channel, text=body, actor=actor,
                                    idempotency_key=f"{base}:{channel}:{ref}", case_id=case_id, target=ref,
                                    account=mailbox if channel == "email" else None))
        store.audit(actor, "case.escalate", case_id,
                    {"target": target, "note": note, "reason": reason, "message_ids": [m.id for m in messages]})
        # Escalating a resolved case reopens it: no longer resolved (the dashboard's count, a later resolution).
        update_case_retrying(store, case_id, actor, lambda c: {
            **({"status": "escalated"} if c.status != "escalated" else {}),
            **({"resolved_at": None} if c.resolved_at is not None else {})}, config=config)
    return messages


def _courier_mailbox(store: Store, config: Config, case: Case) -> str | None:
    """The address a courier escalation goes From: the e-mail account of the brand that owns the case's
    order, else of the case's brand (a courier shared by two brands must see each one's claims come from
    that brand, logged in to its mailbox); None: that brand has none, so the shop-wide SMTP_FROM."""
    from responders.accounts import case_mailbox

    account = case_mailbox(store, config, case)
    return account.handle if account is not None else None


def _courier_link(store: Store, config: Config, case: Case, actor: str) -> tuple[str, datetime] | None:
    """A signed link to the courier page for this case's shipment (None when switched off or not possible)."""
    from responders.courier_link import LinkUnavailable, make_link

    if not responders_settings(config).courier_link.enabled or not case.tracking_number or case.id is None:
        return None
    try:
        return make_link(config, case.id, case.tracking_number)
    except LinkUnavailable as exc:
        store.audit(actor, "courier.link.unavailable", case.id, {"reason": str(exc)})
        log.warning("courier escalation of case %s goes without a link: %s", case.id, exc)
        return None


#: Who escalates a case automatically (the outbox and the audit log name it).
SLA_MONITOR = "sla-monitor"


def _escalated_within_hour(store: Store, now: datetime) -> int:
    """Cases escalated automatically in the hour before ``now`` (each escalation is a message per route)."""
    return int(store.db.execute(
        "select count(distinct case_id) from outbound_messages where kind = 'escalation' and created_by = ? "
        "and created_at > ?", [SLA_MONITOR, iso(now - timedelta(hours=1))]).fetchone()[0] or 0)


def _escalated_for(store: Store, key: str) -> bool:
    """Whether this case's deadline has been escalated already (its messages carry the key)."""
    return bool(list(store.db.query("select 1 from outbound_messages where idempotency_key like ? limit 1",
                                    [f"{key}:%"])))


def auto_escalate_sla(store: Store, config: Config, now: datetime | None = None) -> list[int]:
    """Escalate open cases whose SLA is about to breach (once per case and due time), at most
    ``auto_max_per_hour`` cases in an hour, the highest priority first, then the earliest due: on a viral day one
    round escalated 409 cases to the lead, spam bots among them, while the same breaches' alerts were capped."""
    settings = responders_settings(config).escalation
    if settings.auto_sla_minutes is None:
        return []
    audience = settings.targets.get(settings.auto_target)
    if audience is None or audience.empty:
        return []
    now = now or utcnow()
    horizon = iso(now + timedelta(minutes=settings.auto_sla_minutes))
    # due_at is the next deadline of a running clock (doorstep/sla.py): none while the case
    # waits on the customer, and a snoozed case's deadlines already lie after its snooze.
    rows = list(store.db.query(
        "select id, due_at, due_kind from cases where status in ('new', 'open') and due_at <= ? "
        "order by priority desc, due_at, id", [horizon]))
    escalated: list[int] = []
    waiting = 0
    done = _escalated_within_hour(store, now)
    for row in rows:
        if done >= settings.auto_max_per_hour:
            waiting += 1
            continue
        which, due = row["due_kind"] or "resolution", row["due_at"]
        key = _key("auto-sla", row["id"], which, due)
        if _escalated_for(store, key):
            continue
        state = "breached" if due <= iso(now) else "due"
        # In the shop's zone, as the deadlines under it are: a raw UTC stamp read as the wrong hour.
        when = config.local_time(due, zone=True)
        try:
            # Counted again under the write lock, with the escalation: two rounds at once (two workers, a cron
            # `run --once` beside one) each counted once and escalated 7 cases under a cap of 5 (audit).
            with store.write_transaction():
                if _escalated_for(store, key):  # by the other round, meanwhile
                    continue
                done = _escalated_within_hour(store, now)
                if done >= settings.auto_max_per_hour:
                    waiting += 1
                    continue
                escalate(store, config, row["id"], settings.auto_target,
                         f"SLA {which} {state} at {when}", SLA_MONITOR, reason="sla", key=key)
        except Exception as exc:  # noqa: BLE001 - one case must not stop the others
            log.warning("automatic escalation of case %s failed: %s", row["id"], exc)
            continue
        done += 1
        escalated.append(row["id"])
    if waiting:
        log.warning("automatic SLA escalation: %d case(s) this hour, the cap ([responders.escalation] "
                    "auto_max_per_hour = %d); %d more due or overdue wait for the next hour (the inbox's SLA filter "
                    "lists them)", done, settings.auto_max_per_hour, waiting)
    return escalated
