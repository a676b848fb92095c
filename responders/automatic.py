"""Automatic messages (follow-ups, proactive messages, alerts): true when they leave, approved when required.

Why: a follow-up is written hours before it goes out (quiet hours, an approval queue, a retry).
By then the public reply it mentions may have failed or been deleted, the customer may have
answered, the case may be resolved or its order relinked to someone else. So every automatic
message records the facts it was written from (:func:`record`), and the outbox calls
:func:`recheck` immediately before sending; when a fact no longer holds the message is cancelled
and the reason is put on the case's timeline (``automatic.cancelled``).

Approval: ``[responders.approval]`` names the rules (and channels) whose messages wait for an
agent (status ``awaiting_approval``, the console's Approvals page). Approving re-checks the facts
first; rejecting cancels. Both are audited.

Quiet hours: a message to a customer is written for after its brand's quiet hours, but it may become
due again later (approved, retried, a backoff, a worker catching up at 23:00). So the outbox also asks
:func:`wait_for_quiet_hours` right before it claims one; during them it waits for their end.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from doorstep.cases import by_customer, replied_to_customer
from doorstep.config import Config
from doorstep.dialogue import case_now
from doorstep.models import Case, OutboundMessage, channel_name, utcnow
from doorstep.store import Store, iso, outbound_from_row, parse_time

log = logging.getLogger("doorstep.automatic")

#: Message kinds that are written by a rule, not by a person.
AUTOMATIC_KINDS = ("follow_up", "outreach", "alert")
#: Those of them that go to the customer, and so wait out the quiet hours (an alert goes to the team).
QUIET_KINDS = ("follow_up", "outreach")
#: The audit action of a message held until its brand's quiet hours end (read on the case's timeline).
WAITING_FOR_QUIET_HOURS = "automatic.waiting_for_quiet_hours_to_end"
OPEN_STATUSES = ("new", "open", "pending_customer", "escalated")
#: The rule of a follow-up written while the public reply it follows had not been sent ("we could
#: not answer you there"): cancelled if that reply is posted before the follow-up leaves.
UNSENT_RULE = "follow_up:unsent"
#: How such a cancellation's reason starts (responders/followup.py then writes the follow-up again,
#: from the reply's new state): the reply was posted, or is being sent again (an agent's retry).
REPLY_SENT_SINCE = "the reply it calls unsent has been posted since"
REPLY_RETRYING = "the reply it calls unsent is being sent again"


@dataclass(frozen=True)
class Facts:
    """What an automatic message says or assumes, as it was when the message was written."""

    message_id: int
    case_id: int | None
    rule: str
    reply_message_id: int | None
    last_mention_id: int | None
    order_number: str | None
    customer_id: str | None
    approval: str


def needs_approval(config: Config, rule: str, channel: str) -> bool:
    from responders.config import responders_settings

    return responders_settings(config).approval.needs(rule, channel)


def last_inbound_id(store: Store, case_id: int) -> int:
    return int(store.db.execute("select coalesce(max(id), 0) from mentions where case_id = ? and outbound = 0",
                                [case_id]).fetchone()[0])


def _customer_posted_after(store: Store, case: Case, mention_id: int) -> bool:
    """Whether the case's customer posted on it after post ``mention_id``: a stranger's post in their
    thread ("same here") is not them writing, and must not cancel what we owe them."""
    for row in store.db.query("select id from mentions where case_id = ? and outbound = 0 and id > ? order by id",
                              [case.id, mention_id]):
        post = store.get_mention(row["id"])
        if post is not None and by_customer(store, case, post):
            return True
    return False


def answered_since(store: Store, case_id: int, since: str | None) -> str | None:
    """The channel of the customer's first answer on ``case_id`` received after ``since`` (an ISO time),
    None when there is none. SMS and e-mail answers to our questions (and replies to our messages)
    are kept in ``answers``, not among the case's posts: they count as the customer having written."""
    if since is None:
        return None
    row = store.db.execute("select channel from answers where case_id = ? and received_at > ? "
                           "order by received_at, id limit 1", [case_id, since]).fetchone()
    return row[0] if row else None


def answered_there(store: Store, case: Case, reply: dict[str, Any]) -> str | None:
    """Our answer that reached the case's customer on the network of our public reply ``reply`` after the
    post that reply answers (None: none did), in words ("x_dm message 12, sent 10:05 UTC 16 Nov").

    Why: a public reply that failed (the post deleted, the account blocking us) is followed up by e-mail
    saying "we saw your message there but could not answer you there". Only the newest public reply was
    looked at, so a customer whose chat message from us had been delivered there got that e-mail anyway
    (twobrands audit, F6). Any answer counts, public or private (a direct message on the same network),
    sent by the outbox or posted by us on the network and read back by a listener; one to a stranger in
    the customer's thread does not (:func:`doorstep.cases.replied_to_customer`). Where the post it
    answered is no longer stored, any answer on the case there counts.
    """
    from responders.channels import DM_CHANNELS, network_of

    network = network_of(reply["channel"])
    channels = [network, DM_CHANNELS.get(network, network)]
    parent = store.mention_by_external_id(network, reply["in_reply_to"]) if reply.get("in_reply_to") else None
    since = parent.created_at if parent is not None else None

    def to_customer(channel: str, in_reply_to: str | None) -> bool:
        # A direct message names the post it answers, a public one of the network or a direct one.
        return all(replied_to_customer(store, case, c, in_reply_to) for c in dict.fromkeys([channel, network]))

    for row in store.db.query(
            "select id, channel, in_reply_to, sent_at from outbound_messages where case_id = ? and kind = 'reply' "
            "and status = 'sent' and channel in (?, ?) and id <> ? order by id", [case.id, *channels, reply["id"]]):
        sent = parse_time(row["sent_at"])
        if sent is not None and (since is None or sent >= since) and to_customer(row["channel"], row["in_reply_to"]):
            return f"{row['channel']} message {row['id']}, sent {sent:%H:%M} UTC {sent:%d %b}"
    for post in store.mentions_for_case(case.id):  # type: ignore[arg-type]
        if post.outbound and post.channel in channels and (since is None or post.created_at >= since) \
                and to_customer(post.channel, post.in_reply_to):
            return f"our {post.channel} post {post.external_id}, {post.created_at:%H:%M} UTC {post.created_at:%d %b}"
    return None


def current_case(store: Store, case_id: int) -> Case | None:
    """The case ``case_id`` or, when it was merged, the case it was merged into (where its messages went)."""
    return store.get_case(case_now(store, case_id))


def record(store: Store, config: Config, message: OutboundMessage, rule: str, *,
           reply_message_id: int | None = None) -> OutboundMessage:
    """Keep the facts ``message`` was written from; hold it for approval when its rule requires one."""
    case = store.get_case(message.case_id) if message.case_id else None
    approval = "pending" if needs_approval(config, rule.split(":")[0], message.channel) else "none"
    with store.transaction():
        store.db.execute(
            "insert into automatic_messages (message_id, case_id, rule, reply_message_id, last_mention_id, "
            "order_number, customer_id, approval) values (?, ?, ?, ?, ?, ?, ?, ?) on conflict do nothing",
            [message.id, message.case_id, rule, reply_message_id,
             last_inbound_id(store, case.id) if case is not None and case.id else None,  # type: ignore[arg-type]
             case.order_number if case else None, case.customer_id if case else None, approval])
        if approval == "pending":
            store.db.execute("update outbound_messages set status = 'awaiting_approval' where id = ? and status = 'queued'",
                             [message.id])
            store.audit(rule, "automatic.awaiting_approval", message.case_id,
                        {"message_id": message.id, "channel": message.channel})
    return _message(store, message.id)  # type: ignore[arg-type]


def hold_if_unapproved(store: Store, message: OutboundMessage, actor: str) -> bool:
    """Whether ``message`` waits for a lead's approval (held again as ``awaiting_approval``, nothing sent).

    Why at send time, whatever the status says: a rule's message was queued in one transaction and held in the
    next, and the worker's outbox claimed it in between and sent an SMS nobody approved while the timeline said
    "awaiting approval" (newcomer audit). The callers now queue and hold in one transaction; this is the check
    that holds whatever the path."""
    facts = facts_of(store, message.id)  # type: ignore[arg-type]
    if facts is None or facts.approval != "pending":
        return False
    with store.transaction():
        store.db.execute("update outbound_messages set status = 'awaiting_approval' where id = ? "
                         "and status in ('queued', 'sending')", [message.id])
        store.audit(actor, "automatic.held_for_approval", message.case_id,
                    {"message_id": message.id, "channel": message.channel})
    return True


def facts_of(store: Store, message_id: int) -> Facts | None:
    row = store.db.execute("select message_id, case_id, rule, reply_message_id, last_mention_id, order_number, "
                           "customer_id, approval from automatic_messages where message_id = ?", [message_id]).fetchone()
    return Facts(*row) if row else None


def _message(store: Store, message_id: int) -> OutboundMessage:
    return outbound_from_row(next(iter(store.db.query("select * from outbound_messages where id = ?", [message_id]))))


def recheck(store: Store, message: OutboundMessage, *, reply_exists: Any = None) -> str | None:
    """Why ``message`` must not go out now (None: every fact still holds).

    ``reply_exists(reply_row) -> bool | None`` asks the channel whether our public reply is still
    there (None: the channel cannot tell).
    """
    facts = facts_of(store, message.id)  # type: ignore[arg-type]
    if facts is None or facts.case_id is None:
        return None
    if facts.rule.startswith("alert"):
        case = store.get_case(facts.case_id)
        return "the case no longer exists" if case is None else _recheck_alert(store, facts, case)
    # A merge moves the message (and the reply it follows) to the kept case: the facts are checked there.
    case = current_case(store, message.case_id or facts.case_id)
    if case is None:
        return "the case no longer exists"
    if case.status not in OPEN_STATUSES:
        return f"the case is {case.status.replace('_', ' ')}"
    if not case.link_confirmed or case.order_number != facts.order_number or case.customer_id != facts.customer_id:
        return (f"the case's order is no longer confirmed as this customer's (now {case.order_number or 'none'}, "
                f"{'confirmed' if case.link_confirmed else 'unconfirmed'}; was {facts.order_number})")
    if facts.last_mention_id is not None and _customer_posted_after(store, case, facts.last_mention_id):
        return "the customer wrote again since this message was written"
    if facts.reply_message_id is not None:
        rows = list(store.db.query("select * from outbound_messages where id = ?", [facts.reply_message_id]))
        row = rows[0] if rows else None
        mentions_reply = facts.rule in ("follow_up", UNSENT_RULE) and "replied" in message.text
        if row is None:
            return "the reply it mentions no longer exists"
        answered = answered_since(store, case.id, row["sent_at"] or row["created_at"])
        if answered:
            how = {"sms": "by SMS", "email": "by e-mail"}.get(answered, f"on {answered}")
            return f"the customer answered {how} since our reply"
        if facts.rule == UNSENT_RULE and row["status"] == "sent":
            # Written when the reply could not be posted; it is on the channel now, so "we could not
            # answer you there" would be false. The ordinary follow-up takes over if they do not answer.
            return f"{REPLY_SENT_SINCE} ({row['channel']} post {row['external_id']})"
        if facts.rule == UNSENT_RULE and row["status"] not in ("failed", "cancelled"):
            # Retried and not yet settled: it may be on the channel in a moment. Written again from
            # whatever it becomes (posted: the ordinary follow-up; failed again: this one).
            return f"{REPLY_RETRYING} (it is {row['status']})"
        if facts.rule == UNSENT_RULE:
            # "We could not answer you there" is false once another answer of ours reached them there (a
            # chat message before the failed reply, an agent's DM since it was written). Not written again.
            there = answered_there(store, case, row)
            if there:
                return f"we answered the customer on {channel_name(row['channel'])} since their post ({there})"
        if mentions_reply and row["status"] != "sent":
            return f"the reply it mentions was not sent (it is {row['status']}: {row['last_error'] or 'no error'})"
        if mentions_reply and reply_exists is not None:
            try:
                exists = reply_exists(row)
            except Exception as exc:  # noqa: BLE001 - a failed check must not send a possibly false message
                return f"could not check that the reply it mentions still exists: {exc}"
            if exists is False:
                return f"the reply it mentions ({row['channel']} post {row['external_id']}) no longer exists"
    return None


def _recheck_alert(store: Store, facts: Facts, case: Any) -> str | None:
    if facts.rule == "alert:sla_breach":
        if case.first_response_at is not None and case.awaiting_since is None:
            # answered: no first response and no next response owed (doorstep/sla.py)
            return "the case has been answered since the alert was written"
        if case.status not in ("new", "open", "escalated"):
            # An escalated case still owes the customer its response: the escalation 15 minutes before the SLA
            # cancelled the alert, and the breach after it was never announced (alerts audit, finding 6).
            return f"the case is {case.status.replace('_', ' ')}"
    elif facts.rule in ("alert:urgent_complaint", "alert:vip_author") and case.status not in OPEN_STATUSES:
        return f"the case is {case.status.replace('_', ' ')}"
    return None


def quiet_hours_end(store: Store, config: Config, message: OutboundMessage,
                    now: datetime) -> tuple[datetime, str] | None:
    """When the quiet hours that hold ``message`` at ``now`` end, and which they are (None: it may go now).

    Only a rule's message to the customer waits: an agent's own reply or call-back offer goes when the agent
    sends it (it has no facts recorded), and an alert goes to the team. The quiet hours are those of the
    brand of the case it is on now (a merge moves it).
    """
    from responders.followup import brand_quiet_hours, next_allowed

    if message.kind not in QUIET_KINDS or message.case_id is None or message.id is None:
        return None
    if facts_of(store, message.id) is None:  # queued by an agent (their own call-back offer): not held
        return None
    case = current_case(store, message.case_id)
    brand = case.brand if case is not None else None
    quiet = brand_quiet_hours(config, brand)
    until = next_allowed(now, quiet, config)
    if quiet is None or until <= now:
        return None
    return until, (f"quiet hours {quiet.start:%H:%M}-{quiet.end:%H:%M} ({config.timezone})"
                   + (f" of {brand}" if brand else ""))


def wait_for_quiet_hours(store: Store, config: Config, message: OutboundMessage, now: datetime,
                         actor: str = "outbox") -> bool:
    """Whether ``message`` must not be sent at ``now`` because its brand's quiet hours hold it.

    If so it stays ``queued`` and is due when they end (``next_attempt_at``), with the reason on the case's
    timeline once. Asked before the outbox claims the message, so holding it is no attempt and the claim
    (the one UPDATE that makes a sender its only owner) is untouched.
    """
    held = quiet_hours_end(store, config, message, now)
    if held is None:
        return False
    until, reason = held
    with store.transaction():
        cursor = store.db.execute(
            "update outbound_messages set next_attempt_at = ? where id = ? and status = 'queued' "
            "and (next_attempt_at is null or next_attempt_at < ?)", [iso(until), message.id, iso(until)])
        if cursor.rowcount:
            store.audit(actor, WAITING_FOR_QUIET_HOURS, message.case_id,
                        {"message_id": message.id, "kind": message.kind, "until": iso(until), "reason": reason})
    return True


def cancel_for(store: Store, message: OutboundMessage, reason: str, actor: str = "outbox") -> None:
    """Cancel an automatic message whose facts changed, with the reason on the case timeline."""
    with store.transaction():
        cursor = store.db.execute(
            "update outbound_messages set status = 'cancelled', last_error = ?, next_attempt_at = null "
            "where id = ? and status in ('queued', 'sending', 'awaiting_approval')", [f"cancelled: {reason}", message.id])
        store.db.execute("update automatic_messages set cancel_reason = ? where message_id = ?", [reason, message.id])
        if cursor.rowcount:
            store.audit(actor, "automatic.cancelled", message.case_id,
                        {"message_id": message.id, "kind": message.kind, "reason": reason})


def pending_approval(store: Store, limit: int = 200) -> list[tuple[OutboundMessage, Facts]]:
    rows = store.db.query(
        "select o.* from outbound_messages o join automatic_messages a on a.message_id = o.id "
        "where o.status = 'awaiting_approval' order by o.id limit ?", [limit])
    out = []
    for row in rows:
        message = outbound_from_row(row)
        facts = facts_of(store, message.id)  # type: ignore[arg-type]
        if facts is not None:
            out.append((message, facts))
    return out


class ApprovalError(ValueError):
    """The message cannot be approved or rejected (already decided, or its facts changed)."""


def approve(store: Store, message_id: int, actor: str, *, now: datetime | None = None,
            config: Config | None = None) -> OutboundMessage:
    """Release a held message to the outbox, after re-checking its facts (a stale one is cancelled).

    It is due at once (or at its ``next_attempt_at``, if later); during its brand's quiet hours the
    outbox then holds it until they end (:func:`wait_for_quiet_hours`). When it will not go at once, the
    approval says when it goes (and, with ``config``, which quiet hours hold it): approved at 02:06, a
    follow-up waiting for 08:00 read only "approved" on the timeline (browser check). ``now``: for tests.
    """
    now = now or utcnow()
    message = _message(store, message_id)
    if message.status != "awaiting_approval":
        raise ApprovalError(f"message {message_id} is {message.status}, not awaiting approval")
    reason = recheck(store, message)
    if reason:
        cancel_for(store, message, reason, actor)
        raise ApprovalError(f"message {message_id} was cancelled instead: {reason}")
    with store.transaction():
        later = store.dialect.greatest("coalesce(next_attempt_at, ?)", "?")
        cursor = store.db.execute(f"update outbound_messages set status = 'queued', next_attempt_at = {later} "
                                  "where id = ? and status = 'awaiting_approval'",
                                  [iso(now), iso(now), message_id])
        if cursor.rowcount == 0:
            raise ApprovalError(f"message {message_id} was decided by someone else meanwhile")
        store.db.execute("update automatic_messages set approval = 'approved', decided_by = ?, decided_at = ? "
                         "where message_id = ?", [actor, iso(now), message_id])
        released = _message(store, message_id)
        details: dict[str, Any] = {"message_id": message_id, "kind": message.kind}
        held = quiet_hours_end(store, config, released, now) if config is not None else None
        goes_at = max(filter(None, [released.next_attempt_at, held[0] if held else None]), default=None)
        if goes_at is not None and goes_at > now:
            details["not_before"] = iso(goes_at)
            if held:
                details["reason"] = held[1]
        store.audit(actor, "automatic.approved", message.case_id, details)
    return _message(store, message_id)


def reject(store: Store, message_id: int, actor: str, why: str | None = None) -> OutboundMessage:
    message = _message(store, message_id)
    if message.status != "awaiting_approval":
        raise ApprovalError(f"message {message_id} is {message.status}, not awaiting approval")
    with store.transaction():
        store.db.execute("update outbound_messages set status = 'cancelled', last_error = ? where id = ? "
                         "and status = 'awaiting_approval'", [f"rejected by {actor}" + (f": {why}" if why else ""),
                                                              message_id])
        store.db.execute("update automatic_messages set approval = 'rejected', decided_by = ?, decided_at = ? "
                         "where message_id = ?", [actor, iso(utcnow()), message_id])
        store.audit(actor, "automatic.rejected", message.case_id,
                    {"message_id": message_id, "kind": message.kind, "why": why})
    return _message(store, message_id)


def reply_exists_on_channel(outbox: Any) -> Any:
    """A ``reply_exists`` check that asks the channel through the outbox's sender (X: GET /2/tweets/:id)."""
    def check(row: dict[str, Any]) -> bool | None:
        if not row.get("external_id"):
            return False
        sender = outbox.sender(row["channel"], row.get("account"))  # the account that posted it (its own token)
        exists = getattr(sender, "post_exists", None)
        if exists is not None:
            return bool(exists(row["external_id"]))
        if row["channel"] == "x":
            response = sender._call(lambda: sender.client.get_tweet(row["external_id"], user_auth=True))
            return getattr(response, "data", None) is not None
        return None
    return check
