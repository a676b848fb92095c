"""The courier in the loop: a signed, scoped, expiring link to one shipment's case facts.

A courier escalation (``responders/escalation.py``) carries a link
``BASE/courier/TRACKING/TOKEN``. The token is an itsdangerous ``URLSafeTimedSerializer``
signature (key: the ``COURIER_LINK_SECRET`` secret, never doorstep.toml) over the case id, the
tracking number, the scope ``courier:shipment`` and the expiry. It opens that one shipment's
page and nothing else: a token presented under another tracking number, an altered token, an
expired one or one signed with another key is refused with 403 and a one-line reason.

What the courier sees (:func:`courier_facts`) is what delivery needs: the tracking number, its
service and status, the delivery town as the tracking events name it, the promised date, the
tracking timeline, what we ask of them and their earlier updates. Never the customer's name,
e-mail, phone, handle, post or order contents. What we ask is Doorstep's own fixed wording for the
kind of escalation (:data:`ASKS`), never the escalation's note: that note is free text (an agent's
typing, a rule's note filled in from the customer's answer) that may quote the customer, and the
link can be forwarded. The note reaches the courier in the escalation itself.

A link whose case was since merged into another works on the case it went into (updates land
where the team works on the customer's issue now).

What the courier posts (:func:`post_update`) lands on the case timeline as a note and an audit
event (``courier.update``), once per ``update_id`` (a re-post returns the first one), within
``max_update_chars`` and ``max_updates_per_hour``; with ``customer_message`` "approval" it also
queues a message to the customer that waits for an agent on the Approvals page ("send": it goes
out like a follow-up; "off": nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from doorstep.config import Config
from doorstep.contact_history import record_attempt
from doorstep.dialogue import case_now
from doorstep.models import Case, utcnow
from doorstep.store import Store, iso
from responders.config import CourierLink, resolve, responders_settings

SALT = "doorstep.courier-link.v1"
SCOPE = "courier:shipment"
#: What a courier may say the state is, besides free text (and how the customer hears it).
UPDATE_STATUSES: dict[str, str] = {
    "redelivery_booked": "a new delivery is booked",
    "found_at_depot": "your parcel has been found at the depot",
    "out_for_delivery": "your parcel is out for delivery",
    "delivered": "your parcel has been delivered",
    "returning": "your parcel is on its way back to us",
    "other": "there is news about your parcel",
}
UPDATE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
#: What the page says we ask of the courier, by the kind of escalation that sent the link (its audit
#: ``reason``; ``answer:RULE`` for a dialogue rule). Fixed words, never the escalation's note, which
#: may quote the customer (see the module's docstring).
ASKS: dict[str, str] = {
    "answer:redeliver": "The customer asked for a redelivery: please book one and post the new date here.",
    "answer": "The customer answered our question about this parcel: please post here what you can do.",
    "sla": "This case is close to its deadline: please post here where the parcel is.",
    "manual": "Our care team asks you to look into this parcel (their note is in the escalation we sent you): "
              "please post here what you find.",
}
#: The customer's message when no template of that name is configured. The courier's own words go
#: only into a message an agent approves first (customer_message = "approval", the default).
DEFAULT_TEMPLATE = ("Hi {{ first_name }}, an update from {{ courier }} on your order {{ order_number }}: "
                    "{{ courier_status }}.{% if courier_update %} They say: \"{{ courier_update }}\"{% endif %}")


class LinkUnavailable(RuntimeError):
    """No link can be made: the signing secret is not set (the message names it)."""


class LinkRefused(PermissionError):
    """The link does not open this page: altered, expired, for another shipment (one-line reason)."""


class UpdateRejected(ValueError):
    """The courier's update is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Claims:
    case_id: int
    tracking_number: str
    expires_at: datetime


def settings_of(config: Config) -> CourierLink:
    return responders_settings(config).courier_link


def _key(config: Config) -> str:
    settings = settings_of(config)
    key = resolve(settings.secret)
    if not key:
        name = settings.secret[1:] if settings.secret.startswith("$") else "the secret"
        raise LinkUnavailable(f"courier links need a signing key: set {name} in the environment or "
                              "$DOORSTEP_SECRETS_FILE ([responders.courier_link] secret)")
    return key


def _serializer(key: str, now: datetime) -> URLSafeTimedSerializer:
    """A serializer whose clock reads ``now`` (so expiry is tested on a fake clock, never by waiting)."""
    stamp = int(now.timestamp())

    class _Signer(TimestampSigner):
        def get_timestamp(self) -> int:
            return stamp

    return URLSafeTimedSerializer(key, salt=SALT, signer=_Signer)


def make_link(config: Config, case_id: int, tracking_number: str, now: datetime | None = None) -> tuple[str, datetime]:
    """(URL, expiry) of a new courier link for one case's shipment."""
    settings = settings_of(config)
    now = now or utcnow()
    expires = (now + timedelta(hours=settings.valid_hours)).replace(microsecond=0)
    token = _serializer(_key(config), now).dumps(
        {"case": case_id, "tn": tracking_number, "scope": SCOPE, "exp": int(expires.timestamp())})
    return f"{settings.base_url}/courier/{quote(tracking_number, safe='')}/{token}", expires


def read_link(config: Config, tracking_number: str, token: str, now: datetime | None = None) -> Claims:
    """The claims of a link presented under ``tracking_number``, or :class:`LinkRefused` saying why."""
    now = now or utcnow()
    settings = settings_of(config)
    try:
        key = _key(config)
    except LinkUnavailable:
        raise LinkRefused("courier links are switched off here (no signing key set)") from None
    # The signed issue time bounds a link's life even if the payload's expiry were ever trusted wrongly.
    max_age = int(settings.valid_hours * 3600) + 60
    try:
        payload = _serializer(key, now).loads(token, max_age=max_age)
    except SignatureExpired:
        raise LinkRefused("this link has expired; ask the care team for a new one") from None
    except BadSignature:
        raise LinkRefused("this link is not valid (altered, or not issued by us)") from None
    if not isinstance(payload, dict) or payload.get("scope") != SCOPE:
        raise LinkRefused("this link does not open courier pages")
    if payload.get("tn") != tracking_number:
        raise LinkRefused("this link is for another shipment")
    expires = datetime.fromtimestamp(int(payload.get("exp", 0)), timezone.utc)
    if now >= expires:
        raise LinkRefused(f"this link expired at {expires:%Y-%m-%d %H:%M} UTC; ask the care team for a new one")
    return Claims(int(payload["case"]), tracking_number, expires)


def _case_for(store: Store, claims: Claims) -> Case:
    """The case the link's update goes to: the link's own, or the case it was merged into since.

    A merged case is closed and takes no changes (its page only says where it went), so an update
    left there would be seen by nobody."""
    case = store.get_case(claims.case_id)
    if case is not None and case.merged_into is not None:
        case = store.get_case(case_now(store, claims.case_id))
    if case is None or case.tracking_number != claims.tracking_number:
        # The case was relinked to another parcel since the escalation: the link must not follow it.
        raise LinkRefused("this link's case no longer concerns this shipment; ask the care team for a new one")
    return case


def _ask(store: Store, case_id: int) -> str | None:
    """What we ask the courier, in :data:`ASKS`' words for the latest escalation to them (None: none).

    Never the escalation's note: it is free text that may quote the customer (see the module's docstring)."""
    for event in reversed(store.audit_trail(case_id, limit=1000)):
        if event.action == "case.escalate" and event.details.get("target") == "courier":
            reason = str(event.details.get("reason") or "manual")
            kind = reason if reason in ASKS else "answer" if reason.startswith("answer:") else reason
            return ASKS.get(kind, ASKS["manual"])
    return None


def updates(store: Store, tracking_number: str) -> list[dict[str, Any]]:
    return store.rows("select update_id, status, text, received_at from courier_updates where tracking_number = ? "
                      "order by id", [tracking_number])


def courier_facts(store: Store, config: Config, claims: Claims) -> dict[str, Any]:
    """The shipment's facts a courier needs, and nothing about the customer beyond the delivery town."""
    case = _case_for(store, claims)
    shipment = store.get_shipment(claims.tracking_number)
    order = store.get_order(shipment.order_number) if shipment else None
    events = shipment.events if shipment else []
    town = next((e.location for e in reversed(events)
                 if e.location and e.status in ("out_for_delivery", "attempt_failed", "delivered", "exception")), None)
    return {
        "tracking_number": claims.tracking_number,
        "courier": shipment.courier if shipment else case.courier,
        "service": shipment.service if shipment else None,
        "status": shipment.status if shipment else None,
        "delivery_town": town,
        "promised_date": order.promised_date.isoformat() if order and order.promised_date else None,
        "ask": _ask(store, claims.case_id),
        "timeline": [{"time": iso(e.time), "status": e.status, "location": e.location, "description": e.description}
                     for e in events],
        "updates": updates(store, claims.tracking_number),
        "link_expires_at": iso(claims.expires_at),
        "statuses": list(UPDATE_STATUSES),
    }


def post_update(store: Store, config: Config, claims: Claims, update_id: Any, text: Any, status: Any = None,
                now: datetime | None = None) -> tuple[dict[str, Any], bool]:
    """Record the courier's update on the case; returns (the update, True when it was a re-post)."""
    settings = settings_of(config)
    now = now or utcnow()
    case = _case_for(store, claims)
    if not isinstance(update_id, str) or not UPDATE_ID.match(update_id):
        raise UpdateRejected(422, "update_id: give 1-64 letters, digits or . _ : - (the same id again is a re-post)")
    existing = store.rows("select update_id, status, text, received_at, message_id from courier_updates "
                          "where tracking_number = ? and update_id = ?", [claims.tracking_number, update_id])
    if existing:
        return existing[0], True
    status = status or "other"
    if not isinstance(status, str) or status not in UPDATE_STATUSES:
        raise UpdateRejected(422, f"status: unknown {str(status)[:40]!r}; expected one of {', '.join(UPDATE_STATUSES)}")
    if not isinstance(text, str):
        raise UpdateRejected(422, "text: give the update as text")
    text = " ".join(text.split())
    if not text and status == "other":
        raise UpdateRejected(422, "text: say what happened (or pick a status)")
    if len(text) > settings.max_update_chars:
        raise UpdateRejected(413, f"text is {len(text)} characters; at most {settings.max_update_chars} "
                                  "([responders.courier_link] max_update_chars)")
    recent = store.db.execute("select count(*) from courier_updates where tracking_number = ? and received_at > ?",
                              [claims.tracking_number, iso(now - timedelta(hours=1))]).fetchone()[0]
    if recent >= settings.max_updates_per_hour:
        raise UpdateRejected(429, f"at most {settings.max_updates_per_hour} updates per hour on one link; "
                                  "try again later ([responders.courier_link] max_updates_per_hour)")
    actor = f"courier:{case.courier or 'unknown'}"
    with store.transaction():
        cursor = store.db.execute(
            "insert into courier_updates (tracking_number, update_id, case_id, courier, status, text, received_at) "
            "values (?, ?, ?, ?, ?, ?, ?) on conflict (tracking_number, update_id) do nothing",
            [claims.tracking_number, update_id, case.id, case.courier, status, text, iso(now)])
        if cursor.rowcount == 0:  # the same update raced in on another connection
            row = store.rows("select update_id, status, text, received_at, message_id from courier_updates "
                             "where tracking_number = ? and update_id = ?", [claims.tracking_number, update_id])
            return row[0], True
        store.add_note(case.id, actor, f"Courier update ({status.replace('_', ' ')}): {text}" if text  # type: ignore[arg-type]
                       else f"Courier update: {status.replace('_', ' ')}")
        store.audit(actor, "courier.update", case.id,
                    {"tracking_number": claims.tracking_number, "update_id": update_id, "status": status,
                     "chars": len(text)})
    message_id = _customer_message(store, config, case, claims, update_id, status, text, now)
    if message_id is not None:
        store.db.execute("update courier_updates set message_id = ? where tracking_number = ? and update_id = ?",
                         [message_id, claims.tracking_number, update_id])
    return {"update_id": update_id, "status": status, "text": text, "received_at": iso(now),
            "message_id": message_id}, False


def _customer_message(store: Store, config: Config, case: Case, claims: Claims, update_id: str, status: str,
                      text: str, now: datetime) -> int | None:
    """Queue the customer's message about the update (per ``customer_message``); its id, or None."""
    from responders.automatic import record
    from responders.channel_learner import plan_contact
    from responders.channels import ReplyRejected
    from responders.followup import _contact, next_allowed, sending_account
    from responders.outbox import enqueue
    from responders.templates import TemplateError, case_variables, render_source, resolve_template

    settings = settings_of(config)
    if settings.customer_message == "off":
        return None
    actor = f"courier:{case.courier or 'unknown'}"
    customer = store.get_customer(case.customer_id) if case.customer_id else None
    quiet = responders_settings(config).followup.for_brand(case.brand).quiet_hours
    plan = None
    if responders_settings(config).channel_learner.enabled:
        plan = plan_contact(store, config, customer, case.brand, settings.channels, quiet, now)
    contact = (plan.channel, plan.address) if plan else _contact(customer, settings.channels)
    if contact is None:
        store.audit(actor, "courier.update.no_message", case.id, {"reason": "no contact channel (missing or opted out)"})
        return None
    values = {**case_variables(store, config, case), "courier_update": text,
              "courier_status": UPDATE_STATUSES[status]}
    try:  # a name that is no template is refused here, never sent as the text
        name, source = resolve_template(config, settings.template, defaults={"courier_update": DEFAULT_TEMPLATE})
        body = render_source(source, values, confirmed=case.link_confirmed, name=name,
                             limits=responders_settings(config).template_limits)
    except TemplateError as exc:
        store.audit(actor, "courier.update.no_message", case.id, {"reason": str(exc)})
        return None
    channel, address = contact
    try:  # the case brand's own account (its e-mail address), chosen as for an agent's reply
        account = sending_account(store, config, case, channel)
    except ReplyRejected as exc:
        store.audit(actor, "courier.update.no_message", case.id, {"reason": str(exc)})
        return None
    if channel == "email":
        body = f"Subject: An update on your order {case.order_number or ''}".rstrip() + f"\n\n{body}"
    not_before = next_allowed(plan.send_at if plan else now, quiet, config)
    # Queued and held for approval in one transaction: between the two, the worker's outbox sent one nobody
    # approved (newcomer audit).
    with store.write_transaction():
        message = enqueue(store, kind="follow_up", channel=channel, text=body, actor=actor,
                          idempotency_key=f"courier-update:{claims.tracking_number}:{update_id}", case_id=case.id,
                          target=address, not_before=not_before, account=account)
        message = record(store, config, message, "follow_up:courier_update")
        if settings.customer_message == "approval" and message.status == "queued":
            with store.transaction():
                store.db.execute("update automatic_messages set approval = 'pending' where message_id = ?", [message.id])
                store.db.execute("update outbound_messages set status = 'awaiting_approval' where id = ? and status = 'queued'",
                                 [message.id])
                store.audit("courier_update", "automatic.awaiting_approval", case.id,
                            {"message_id": message.id, "channel": message.channel})
        record_attempt(store, message_id=message.id, case_id=case.id, customer_id=case.customer_id,  # type: ignore[arg-type]
                       brand=case.brand, rule="courier_update", channel=channel, planned_at=not_before, tz=config.tz,
                       chosen_by="learner" if plan else "rule")
    return message.id


def expires_text(expires: datetime, config: Config) -> str:
    return config.local_time(expires, zone=True)

