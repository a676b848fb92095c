"""Following the customer across channels, and reaching out before they complain.

Follow-up ("move across channels if no response"): a case is waiting for the customer
(``pending_customer``) after our public reply asked them something; if nothing came back within
``after_hours``, or the public reply could not be posted at all (failed for good: the post was
deleted, the account blocks us), we write to the email or phone number of the order record.
Only for a *confirmed* order (otherwise the contact details may be someone else's), never on a
channel the customer opted out of (``opt_out`` on the customer: "email", "sms" or "all"), and
never during quiet hours: the message is queued to go out when they end. Rules are per brand
(``[responders.followup.brands.NAME]``). The follow-up is an outbound message of kind
``follow_up`` on the case, plus an audit event, so the agent sees it on the timeline.

Proactive outreach: a shipment whose latest event is a failed attempt or an exception, or that
has had no scan for ``no_scan_days``, opens a case before the customer writes (``link_method``
"tracking_number", confirmed: it comes from our own order records), and if ``message`` is on,
tells them what happens next. :func:`complaints_after_events` measures how often complaints
arrive on shipments that had such an event first: the case for doing this at all.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from doorstep import sla
from doorstep.cases import PriorityInputs, by_customer, score_priority
from doorstep.config import Config
from doorstep.contact_history import record_attempt
from doorstep.models import Case, Customer, utcnow
from doorstep.store import Store, iso, parse_time
from responders.config import FollowUpRule, QuietHours, responders_settings
from responders.automatic import REPLY_RETRYING, REPLY_SENT_SINCE, UNSENT_RULE, answered_since, answered_there, record
from responders.channel_learner import plan_contact
from responders.channels import ReplyRejected
from doorstep.cases import replied_to_customer
from responders.outbox import _key, enqueue, get_message
from responders.templates import TemplateError, case_variables, render_source, resolve_template

log = logging.getLogger("doorstep.followup")

PROACTIVE_INTENT = {"attempt_failed": "failed_delivery", "exception": "late_delivery", "no_scan": "late_delivery"}
PROACTIVE_REASON = {"attempt_failed": "failed delivery attempt", "exception": "courier exception",
                    "no_scan": "no tracking scan"}


def brand_quiet_hours(config: Config, brand: str | None) -> QuietHours | None:
    """The quiet hours of ``brand``'s follow-ups ([responders.followup], a brand's own if it has them): when no
    automatic message goes to its customers."""
    return responders_settings(config).followup.for_brand(brand).quiet_hours


def next_allowed(now: datetime, quiet: QuietHours | None, config: Config) -> datetime:
    """``now`` if outside quiet hours, else the (UTC) moment they end."""
    if quiet is None:
        return now
    local = now.astimezone(config.tz)
    if not quiet.contains(local):
        return now
    end = local.replace(hour=quiet.end.hour, minute=quiet.end.minute, second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(now.tzinfo)


def _contact(customer: Customer | None, channels: list[str]) -> tuple[str, str] | None:
    """First (channel, address) the customer has and did not opt out of."""
    if customer is None or "all" in customer.opt_out:
        return None
    for channel in channels:
        address = customer.email if channel == "email" else customer.phone
        if address and channel not in customer.opt_out:
            return channel, address
    return None


def sending_account(store: Store, config: Config, case: Case, channel: str) -> str | None:
    """The account an automatic message to the case's customer on ``channel`` goes out from.

    Chosen exactly as for an agent's reply to the case (:func:`responders.accounts.choose_account`,
    no post to answer): the e-mail account of the brand that owns the case's order, else of the
    case's brand. None: the channel's shared sender may write (SMS; SMTP_FROM in a one-brand shop, where
    no brand has an ``email``, or for a case of no brand). Raises ``ReplyRejected`` when no account of
    ours may write there, another brand's address included (:func:`responders.accounts.choose_account`).
    """
    from responders.accounts import choose_account

    account = choose_account(store, config, case, channel, None)
    return account.handle if account else None


def _render(store: Store, config: Config, case: Case, template: str, *, source: bool = False) -> str:
    """``template`` (a name or source; ``source``: always source) filled for ``case``.

    A name that is no template raises :class:`TemplateError` (the caller skips the message and says why).
    """
    name, text = ("template", template) if source else resolve_template(config, template)
    from responders.config import responders_settings

    return render_source(text, case_variables(store, config, case), confirmed=case.link_confirmed, name=name,
                         limits=responders_settings(config).template_limits)


def _private_message(store: Store, config: Config, case: Case, rule_channels: list[str], template: str, kind: str,
                     key: str, actor: str, now: datetime, quiet: QuietHours | None, subject: str,
                     reply_message_id: int | None = None, learner_cache: dict[Any, Any] | None = None,
                     rule: str | None = None) -> Any:
    customer = store.get_customer(case.customer_id) if case.customer_id else None
    # With [responders.channel_learner] on, the customer's own history picks channel and hour.
    plan = None
    if responders_settings(config).channel_learner.enabled:
        plan = plan_contact(store, config, customer, case.brand, rule_channels, quiet, now, cache=learner_cache)
    contact = (plan.channel, plan.address) if plan else _contact(customer, rule_channels)
    if contact is None:
        store.audit(actor, f"{kind}.skipped", case.id, {"reason": "no contact channel (missing or opted out)"})
        return None
    channel, address = contact
    try:
        text = _render(store, config, case, template)
    except TemplateError as exc:
        log.warning("%s on case %s not sent: %s", kind, case.id, exc)
        store.audit(actor, f"{kind}.skipped", case.id, {"reason": str(exc), "template": template})
        return None
    try:
        account = sending_account(store, config, case, channel)
    except ReplyRejected as exc:
        store.audit(actor, f"{kind}.skipped", case.id, {"reason": str(exc)})
        return None
    if channel == "email":
        text = f"Subject: {subject}\n\n{text}"
    not_before = next_allowed(plan.send_at if plan else now, quiet, config)
    # Queued and held for approval in one transaction: between the two, the worker's outbox sent one nobody
    # approved (newcomer audit).
    with store.write_transaction():
        message = enqueue(store, kind=kind, channel=channel, text=text, actor=actor, idempotency_key=key,
                          case_id=case.id, target=address, not_before=not_before, account=account)
        record_attempt(store, message_id=message.id, case_id=case.id, customer_id=case.customer_id,  # type: ignore[arg-type]
                       brand=case.brand, rule=kind, channel=channel, planned_at=not_before, tz=config.tz,
                       chosen_by="learner" if plan else "rule")
        if plan:
            store.audit(actor, "channel_learner.choice", case.id,
                        {"message_id": message.id, "channel": channel, "send_at": iso(not_before), "why": plan.why})
        # The facts it was written from are re-checked immediately before it is sent (responders/automatic.py).
        return record(store, config, message, rule or kind, reply_message_id=reply_message_id)


def _last_public_reply(store: Store, case: Case) -> dict[str, Any] | None:
    """Our newest public reply to the case's customer (sent, or failed for good): what a follow-up follows.

    A reply to a stranger's post in their thread is not one (doorstep.cases.replied_to_customer):
    the follow-up would tell the customer "we replied to you on X" when we had not.
    """
    for row in store.db.query(
            "select * from outbound_messages where case_id = ? and kind = 'reply' and channel in ('x', 'mastodon', "
            "'bluesky') and status in ('sent', 'failed') order by id desc", [case.id]):
        if replied_to_customer(store, case, row["channel"], row["in_reply_to"]):
            return row
    return None


def _follow_up_key(reply_id: int, *more: Any) -> str:
    """The idempotency key of the follow-up of our public reply ``reply_id``: the reply alone names it, so
    it is written once whichever case holds the reply (a merge or a split moves replies to another case)."""
    return _key("follow_up", "reply", reply_id, *more)


def _cases_the_reply_was_on(store: Store, case_id: int) -> list[int]:
    """``case_id``, the cases merged into it (and into those) and the case it was split from: where a
    reply now on ``case_id`` may have been when a follow-up of it was written."""
    found, todo = [case_id], [case_id]
    while todo and len(found) < 100:
        current = todo.pop()
        later = [int(r[0]) for r in store.db.execute("select id from cases where merged_into = ?", [current]).fetchall()]
        for row in store.db.execute("select details from audit_events where case_id = ? and action = 'case.split_from'",
                                    [current]).fetchall():
            try:
                source = json.loads(row[0] or "{}").get("from_case")
            except (ValueError, AttributeError):
                source = None
            if isinstance(source, int):
                later.append(source)
        for other in later:
            if other not in found:
                found.append(other)
                todo.append(other)
    return found


#: What a follow-up's key adds when it is written again from its reply's new state (see _follow_up_case).
_KEY_SUFFIXES: tuple[tuple[str, ...], ...] = ((), ("sent",), ("failed",))


def _follow_ups_of(store: Store, case: Case, reply_id: int) -> list[dict[str, Any]]:
    """The follow-ups already written about reply ``reply_id``: under its own keys, or, in a database
    written before the key named the reply alone, under (case, reply) for a case the reply was on
    (this one; else, looked up only then, a case merged into it or the one it was split from)."""
    def under(keys: list[str]) -> list[dict[str, Any]]:
        return list(store.db.query(
            "select o.id, o.idempotency_key, o.status, a.rule, a.cancel_reason from outbound_messages o left join "
            f"automatic_messages a on a.message_id = o.id where o.idempotency_key in ({','.join('?' * len(keys))}) "
            "order by o.id", keys))

    found = under([_follow_up_key(reply_id, *more) for more in _KEY_SUFFIXES]
                  + [_key("follow_up", case.id, reply_id, *more) for more in _KEY_SUFFIXES])
    former = [] if found else _cases_the_reply_was_on(store, case.id)[1:]  # type: ignore[arg-type]
    return found or (under([_key("follow_up", c, reply_id, *more) for c in former for more in _KEY_SUFFIXES])
                     if former else [])


def _unsent_follow_up_overtaken(row: dict[str, Any]) -> bool:
    """True when the follow-up ``row`` was written about an unsent reply and cancelled because it was retried."""
    return (row["status"] == "cancelled" and row["rule"] == UNSENT_RULE
            and (row["cancel_reason"] or "").startswith((REPLY_SENT_SINCE, REPLY_RETRYING)))


def _customer_wrote_since(store: Store, case: Case, since: str) -> bool:
    """Whether the customer wrote since ``since`` (our reply): a post of theirs on the case (a stranger's
    post in their thread is not them), or an answer on any channel (an SMS or e-mail answer to one of
    our questions lives in ``answers``, not among the posts)."""
    for row in store.db.query("select id from mentions where case_id = ? and outbound = 0 and created_at > ? "
                              "order by id", [case.id, since]):
        post = store.get_mention(row["id"])
        if post is not None and by_customer(store, case, post):
            return True
    return answered_since(store, case.id, since) is not None  # type: ignore[arg-type]


def run_followups(store: Store, config: Config, now: datetime | None = None) -> list[int]:
    """Queue private follow-ups for cases whose public conversation stalled; returns message ids."""
    settings = responders_settings(config).followup
    now = now or utcnow()
    queued: list[int] = []
    learner_cache: dict[Any, Any] = {}
    candidates = store.db.query(
        "select distinct c.id from cases c join outbound_messages o on o.case_id = c.id "
        "where o.kind = 'reply' and o.channel in ('x', 'mastodon', 'bluesky') and c.status in ('new', 'open', "
        "'pending_customer', 'escalated') and c.link_confirmed = 1 and "
        "((c.status = 'pending_customer' and o.status = 'sent') or o.status = 'failed')")
    for row in list(candidates):
        try:
            message_id = _follow_up_case(store, config, settings, row["id"], now, learner_cache)
        except Exception as exc:  # noqa: BLE001 - one case must not stop the follow-ups of all the others
            log.exception("follow-up of case %s failed", row["id"])
            try:
                store.audit("follow-up", "follow_up.skipped", row["id"],
                            {"reason": f"failed: {type(exc).__name__}: {exc}"})
            except Exception:  # noqa: BLE001 - the log has it
                log.exception("could not record the failed follow-up of case %s", row["id"])
            continue
        if message_id is not None:
            queued.append(message_id)
    return queued


def _follow_up_case(store: Store, config: Config, settings: Any, case_id: int, now: datetime,
                    learner_cache: dict[Any, Any]) -> int | None:
    """The follow-up of one candidate case, if it is due; the queued message's id."""
    case = store.get_case(case_id)
    if case is None:
        return None
    rule: FollowUpRule = settings.for_brand(case.brand)
    if not rule.enabled:
        return None
    reply = _last_public_reply(store, case)
    if reply is None:
        return None
    if reply["status"] == "sent":
        if case.status != "pending_customer":
            return None
        sent_at = parse_time(reply["sent_at"])
        if sent_at is None or now - sent_at < timedelta(hours=rule.after_hours):
            return None
        if _customer_wrote_since(store, case, reply["sent_at"]):
            return None
        why = f"no answer {rule.after_hours:g} h after our {reply['channel']} reply"
    elif answered_there(store, case, reply):
        # Our reply failed, but another answer of ours reached them there (a chat message, an earlier
        # reply): "we could not answer you there" would be false (twobrands audit, F6).
        return None
    else:
        why = f"our {reply['channel']} reply could not be posted: {reply['last_error'] or 'failed'}"
    # One follow-up per reply, whichever case holds it now; but one written while the reply had failed
    # ("could not answer you there") and cancelled because the reply was retried is written once more
    # from its new state.
    written = _follow_ups_of(store, case, reply["id"])
    if any(not _unsent_follow_up_overtaken(row) for row in written):
        return None
    key = _follow_up_key(reply["id"], reply["status"]) if written else _follow_up_key(reply["id"])
    if any(row["idempotency_key"] == key for row in written):
        return None
    subject = f"About your order {case.order_number}" if case.order_number else "Following up"
    # A reply that never went out must not be described as sent: it gets the "could not answer there" wording.
    template = rule.template if reply["status"] == "sent" or rule.template != "follow_up" else "follow_up_unsent"
    if rule.question:
        from responders.dialogue import ask

        asked = ask(store, config, case, rule.question, channels=rule.channels, actor="follow-up", kind="follow_up",
                    key=key, now=now, subject=subject, not_before=next_allowed(now, rule.quiet_hours, config),
                    quiet=rule.quiet_hours, learner_cache=learner_cache)
        message = get_message(store, asked.message_id) if asked and asked.message_id else None
        if message is not None:  # the reply it follows: an answer since then cancels it (responders/automatic.py)
            store.db.execute("update automatic_messages set reply_message_id = ? where message_id = ? "
                             "and reply_message_id is null", [reply["id"], message.id])
    else:
        # Written from a reply that was not sent: re-checked before sending (responders/automatic.py).
        message = _private_message(store, config, case, rule.channels, template, "follow_up", key, "follow-up",
                                   now, rule.quiet_hours, subject, reply_message_id=reply["id"],
                                   learner_cache=learner_cache,
                                   rule=UNSENT_RULE if reply["status"] != "sent" else None)
    if message is None:
        return None
    store.audit("follow-up", "follow_up.queue", case.id,
                {"message_id": message.id, "channel": message.channel, "why": why,
                 "not_before": iso(message.next_attempt_at)})
    return message.id


# ------------------------------------------------------------------ proactive outreach
def _trigger_events(store: Store, config: Config, now: datetime) -> list[tuple[str, str, datetime]]:
    """(tracking_number, reason, event time) for shipments that warrant a proactive case now."""
    rule = responders_settings(config).proactive
    since = iso(now - timedelta(days=rule.lookback_days))
    out: list[tuple[str, str, datetime]] = []
    marks = ",".join("?" * len(rule.statuses))
    if rule.statuses:
        for row in store.db.query(
                f"select tracking_number, status, last_event_at from shipments where status in ({marks}) "
                "and last_event_at >= ? and last_event_at <= ?", [*rule.statuses, since, iso(now)]):
            out.append((row["tracking_number"], row["status"], parse_time(row["last_event_at"])))  # type: ignore[arg-type]
    stale = iso(now - timedelta(days=rule.no_scan_days))
    oldest = iso(now - timedelta(days=rule.no_scan_days + rule.lookback_days))
    for row in store.db.query(
            "select tracking_number, last_event_at from shipments where status in ('info_received', 'in_transit') "
            "and last_event_at <= ? and last_event_at >= ?", [stale, oldest]):
        when = parse_time(row["last_event_at"]) + timedelta(days=rule.no_scan_days)  # type: ignore[operator]
        out.append((row["tracking_number"], "no_scan", when))
    return out


def _event_covered(store: Store, order_number: str, event_at: datetime) -> bool:
    """Whether a case on this order already covers a parcel event: one opened since it (by us or by the
    customer), or one still open."""
    return store.db.execute("select 1 from cases where order_number = ? and (opened_at >= ? or status in "
                            "('new', 'open', 'pending_customer', 'escalated')) limit 1",
                            [order_number, iso(event_at - timedelta(hours=1))]).fetchone() is not None


def run_proactive(store: Store, config: Config, now: datetime | None = None) -> list[int]:
    """Open proactive cases (and optionally message the customer); returns the new case ids."""
    rule = responders_settings(config).proactive
    if not rule.enabled:
        return []
    now = now or utcnow()
    opened: list[int] = []
    for tracking_number, reason, event_at in _trigger_events(store, config, now):
        shipment = store.get_shipment(tracking_number)
        order = store.get_order(shipment.order_number) if shipment else None
        if shipment is None or order is None or _event_covered(store, order.number, event_at):
            continue  # most events are covered already: skipped without the lock (checked again under it)
        customer = store.get_customer(order.customer_id)
        case = Case(status="new", brand=order.brand, courier=shipment.courier, channel=None,
                    intent=PROACTIVE_INTENT[reason], complaint=False, customer_id=order.customer_id,
                    order_number=order.number, tracking_number=tracking_number, link_method="tracking_number",
                    link_confidence=1.0, link_confirmed=True, opened_at=now, last_activity_at=now)
        score, reasons = score_priority(
            PriorityInputs(labels=None, vip=bool(customer and customer.vip), order_total=order.total,
                           currency=order.currency, shipment_events=frozenset(e.status for e in shipment.events)),
            config)
        case.priority, case.priority_reasons = score, [f"proactive: {PROACTIVE_REASON[reason]}", *reasons]
        sla.start_clocks(case, now, config)
        with store.transaction():
            # Two rounds at once (`doorstep proactive` beside the worker, two workers) must not both find
            # no case and both open one: the check and the insert hold the order's and the parcel's numbers
            # (the keys a post naming them holds while it opens a case, doorstep/pipeline.py); on SQLite
            # the transaction's write lock already does.
            store.serialise(lambda: (f"number:{order.number}", f"number:{tracking_number}"))
            if _event_covered(store, order.number, event_at):
                continue
            case.id = store.insert_case(case)
            store.audit("proactive", "case.open.proactive", case.id,
                        {"reason": reason, "tracking_number": tracking_number, "event_at": iso(event_at)})
        opened.append(case.id)
        # One message per parcel event, whichever round or case writes it.
        key = _key("outreach", tracking_number, reason, iso(event_at))
        question = rule.questions.get(reason)
        if question:
            # A closed question ("Shall we ask UPS to redeliver? Reply YES or NO"): the answer, on
            # any channel, triggers the rule's next step (responders/dialogue.py).
            from responders.dialogue import ask

            quiet = brand_quiet_hours(config, order.brand)
            asked = ask(store, config, case, question, channels=rule.channels, actor="proactive", kind="outreach",
                        key=key, now=now,
                        subject=f"An update on your order {order.number}", not_before=next_allowed(now, quiet, config),
                        quiet=quiet)
            if asked is not None:
                store.audit("proactive", "outreach.queue", case.id, {"message_id": asked.message_id,
                                                                     "channel": asked.channel, "question": question})
        elif rule.message:
            quiet = brand_quiet_hours(config, order.brand)
            message = _private_message(store, config, case, rule.channels, "proactive", "outreach",
                                       key, "proactive", now, quiet,
                                       f"An update on your order {order.number}")
            if message is not None:
                store.audit("proactive", "outreach.queue", case.id, {"message_id": message.id, "channel": message.channel})
    return opened


def complaints_after_events(store: Store, config: Config, *, window_days: float = 7.0) -> dict[str, Any]:
    """How many complaints arrive on shipments that had a failed attempt, an exception or a scan gap first.

    For every shipment with a trigger event, look for a complaint mention linked to its order
    within ``window_days`` after the event. Returns counts, the share, and the median lead time
    (hours from event to complaint): the time proactive outreach could have won.
    """
    rule = responders_settings(config).proactive
    events: dict[str, tuple[str, datetime]] = {}
    marks = ",".join("?" * len(rule.statuses)) or "''"
    for row in store.db.query(
            "select tracking_number, status, time as t from (select tracking_number, status, time, row_number() "
            "over (partition by tracking_number order by time, id) as n from tracking_events "
            f"where status in ({marks})) as firsts where n = 1", list(rule.statuses)):
        events[row["tracking_number"]] = (row["status"], parse_time(row["t"]))  # type: ignore[assignment]
    gap_s = rule.no_scan_days * 86400
    for row in store.db.query(
            "select tracking_number, prev, time from (select tracking_number, time, lag(time) over "
            "(partition by tracking_number order by time) as prev from tracking_events) as gaps where prev is not null"):
        gap = (parse_time(row["time"]) - parse_time(row["prev"])).total_seconds()  # type: ignore[operator]
        if gap >= gap_s and row["tracking_number"] not in events:
            events[row["tracking_number"]] = ("no_scan", parse_time(row["prev"]) + timedelta(seconds=gap_s))  # type: ignore[operator]
    complained, lead_hours = 0, []
    by_reason: dict[str, list[int]] = {}
    for tracking_number, (reason, at) in events.items():
        shipment = store.get_shipment(tracking_number)
        if shipment is None:
            continue
        row = store.db.execute(
            "select min(m.created_at) from mentions m join cases c on c.id = m.case_id where m.outbound = 0 "
            "and m.complaint = 1 and (c.order_number = ? or c.tracking_number = ?) and m.created_at >= ? "
            "and m.created_at <= ?",
            [shipment.order_number, tracking_number, iso(at), iso(at + timedelta(days=window_days))]).fetchone()
        hit = row[0] is not None
        stats = by_reason.setdefault(reason, [0, 0])
        stats[0] += 1
        if hit:
            complained += 1
            stats[1] += 1
            lead_hours.append((parse_time(row[0]) - at).total_seconds() / 3600)  # type: ignore[operator]
    all_complaints = store.db.execute(
        "select count(distinct c.order_number) from mentions m join cases c on c.id = m.case_id "
        "where m.outbound = 0 and m.complaint = 1 and c.order_number is not null").fetchone()[0]
    lead_hours.sort()
    return {
        "shipments_with_event": len(events),
        "complained_after_event": complained,
        "share": round(complained / len(events), 3) if events else 0.0,
        "orders_with_complaints": all_complaints,
        "share_of_complaint_orders_preceded_by_event": round(complained / all_complaints, 3) if all_complaints else 0.0,
        "median_hours_event_to_complaint": round(lead_hours[len(lead_hours) // 2], 1) if lead_hours else None,
        "by_reason": {k: {"shipments": v[0], "complained": v[1]} for k, v in sorted(by_reason.items())},
    }
