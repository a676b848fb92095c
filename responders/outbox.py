"""The outbox: every outbound message is a row first, then sent by the worker, exactly once.

Life of a message: ``queued`` -> ``sending`` -> ``sent`` (with the channel's id) or back to
``queued`` with a backoff (``next_attempt_at``, ``last_error``) or ``failed`` for good; an agent
can ``retry`` or ``cancel`` a failed or queued one. Nothing is posted from the console or the
CLI directly, so every reply, escalation, alert and follow-up is visible on its case.

Exactly-once: a sender claims a message by moving it to ``sending`` in one UPDATE (so two
workers never both send it) with a lease in ``next_attempt_at``. If the process dies between
the channel's "created" and our "sent" write, the message stays in ``sending``; once the lease
has run out it is treated as *in doubt*. Before *any* re-send of a message that was attempted
before (in doubt, timed out, 5xx), the sender asks the channel whether the post is already
there (X: our recent tweets replying to the same tweet with the same text) and records it as
sent instead of posting again. Every message also has an idempotency key, unique in the table,
so a double click queues one message.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from doorstep.config import Config
from doorstep.models import Case, Mention, OutboundMessage, utcnow
from doorstep.redaction import redact, stored_target
from doorstep.store import StaleCaseError, Store, iso, outbound_from_row
from responders.channels import PUBLIC_CHANNELS, ReplyRejected, SendError, check_limits, make_sender
from responders.config import responders_settings

__all__ = [
    "Outbox", "ReplyRejected", "SendError", "cancel", "enqueue", "get_message", "list_messages",
    "queue_escalation", "queue_reply", "retry",
]

log = logging.getLogger("doorstep.outbox")

#: Test hook: exit the process right after the channel accepted a post and before it is recorded.
CRASH_HOOK_ENV = "DOORSTEP_TEST_CRASH_AFTER_SEND"


def _key(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


def get_message(store: Store, message_id: int) -> OutboundMessage:
    rows = list(store.db.query("select * from outbound_messages where id = ?", [message_id]))
    if not rows:
        raise KeyError(f"no outbound message {message_id}")
    return outbound_from_row(rows[0])


def list_messages(store: Store, statuses: tuple[str, ...] | None = None, limit: int = 100,
                  kind: str | None = None) -> list[OutboundMessage]:
    clauses, params = [], []
    if statuses:
        clauses.append(f"status in ({','.join('?' * len(statuses))})")
        params += list(statuses)
    if kind:
        clauses.append("kind = ?")
        params.append(kind)
    where = f"where {' and '.join(clauses)}" if clauses else ""
    rows = store.db.query(f"select * from outbound_messages {where} order by id desc limit ?", [*params, limit])
    return [outbound_from_row(r) for r in rows]


def enqueue(store: Store, *, kind: str, channel: str, text: str, actor: str, idempotency_key: str,
            case_id: int | None = None, target: str | None = None, in_reply_to: str | None = None,
            not_before: datetime | None = None) -> OutboundMessage:
    """Write one message to the outbox (or return the one already queued under this key).

    A credential-bearing ``target`` is stored as a reference (:func:`doorstep.redaction.stored_target`).
    """
    if target is not None:
        safe = stored_target(target)  # raises SecretTargetError for a credential we could not find again
        idempotency_key, target = idempotency_key.replace(target, safe or ""), safe
    existing = list(store.db.query("select * from outbound_messages where idempotency_key = ?", [idempotency_key]))
    if existing:
        return outbound_from_row(existing[0])
    now = utcnow()
    message = OutboundMessage(kind=kind, channel=channel, target=target, text=text, in_reply_to=in_reply_to,  # type: ignore[arg-type]
                              case_id=case_id, idempotency_key=idempotency_key, created_by=actor, created_at=now,
                              next_attempt_at=not_before or now)
    row = message.model_dump(exclude={"id"})
    for key in ("created_at", "sent_at", "next_attempt_at"):
        row[key] = iso(row[key])
    with store.transaction():
        cursor = store.db.execute(
            f"insert or ignore into outbound_messages ({', '.join(row)}) values ({', '.join('?' * len(row))})",
            list(row.values()),
        )
        if cursor.rowcount == 0:  # a concurrent writer queued the same key first
            return outbound_from_row(next(iter(store.db.query(
                "select * from outbound_messages where idempotency_key = ?", [idempotency_key]))))
        store.audit(actor, f"outbox.queue.{kind}", case_id,
                    {"message_id": cursor.lastrowid, "channel": channel, "target": target})
    return message.model_copy(update={"id": cursor.lastrowid})


def _latest_inbound(store: Store, case_id: int, channel: str) -> Mention | None:
    rows = list(store.db.query(
        "select id from mentions where case_id = ? and channel = ? and outbound = 0 order by created_at desc, id desc "
        "limit 1", [case_id, channel]))
    return store.get_mention(rows[0]["id"]) if rows else None


def _privacy_check(store: Store, case: Case, channel: str, text: str) -> None:
    """Refuse order details in a reply while the link is unconfirmed, and contact details in public."""
    low = text.casefold()
    if not case.link_confirmed:
        secrets_ = [case.order_number, case.tracking_number]
        order = store.get_order(case.order_number) if case.order_number else None
        if order is not None:
            secrets_ += [s.tracking_number for s in order.shipments]
            customer = store.get_customer(order.customer_id)
            if customer is not None:
                secrets_ += [customer.name, customer.email, customer.phone]
        named = [s for s in secrets_ if s and len(s) >= 4 and s.casefold() in low]
        if named:
            raise ReplyRejected(
                "this case's link to an order is not confirmed (the number may be someone else's order), so the "
                f"reply must not mention {', '.join(sorted(set(named)))}. Confirm the order on the case first."
            )
    if channel in PUBLIC_CHANNELS and case.customer_id:
        customer = store.get_customer(case.customer_id)
        if customer is not None:
            for value in (customer.email, customer.phone):
                if value and re.sub(r"\s", "", value).casefold() in re.sub(r"\s", "", low):
                    raise ReplyRejected("a public reply must not contain the customer's email address or phone number")


def queue_reply(store: Store, config: Config, case_id: int, text: str, actor: str, *, channel: str | None = None,
                idempotency_key: str | None = None) -> OutboundMessage:
    """Queue a reply to the customer on the case's channel (or ``channel``, e.g. "email").

    Raises :class:`ReplyRejected` for an empty or over-long reply, a URL on X when not allowed,
    order details on an unconfirmed case, contact details in public, or no post to answer.
    """
    case = store.get_case(case_id)
    if case is None:
        raise ReplyRejected(f"no case {case_id}")
    channel = channel or case.channel
    if not channel:
        raise ReplyRejected(f"case {case_id} has no channel to reply on; choose one (email or sms)")
    settings = responders_settings(config)
    text = text.strip()
    _privacy_check(store, case, channel, text)
    check_limits(channel, text, allow_urls=settings.allow_urls)
    target = in_reply_to = None
    if channel in PUBLIC_CHANNELS:
        parent = _latest_inbound(store, case_id, channel)
        if parent is None:
            raise ReplyRejected(f"case {case_id} has no {channel} post to reply to")
        in_reply_to = parent.external_id
        target = parent.author_handle
    elif channel in ("email", "sms"):
        parent = _latest_inbound(store, case_id, channel)
        if parent is not None and channel == "email":
            in_reply_to, target = parent.external_id, parent.author_handle
        else:
            if not case.link_confirmed:
                raise ReplyRejected("the customer's contact details come from an unconfirmed order: confirm it first")
            customer = store.get_customer(case.customer_id) if case.customer_id else None
            target = (customer.email if channel == "email" else customer.phone) if customer else None
            if customer is not None and (channel in customer.opt_out or "all" in customer.opt_out):
                raise ReplyRejected(f"the customer opted out of {channel}")
        if not target:
            raise ReplyRejected(f"no {channel} address known for case {case_id}")
        if channel == "email" and not text.startswith("Subject: "):
            order = f" about order {case.order_number}" if case.order_number and case.link_confirmed else ""
            text = f"Subject: Your message{order}\n\n{text}"
    else:
        raise ReplyRejected(f"cannot reply on channel {channel!r}")
    key = idempotency_key or _key("reply", case_id, channel, in_reply_to, text)
    return enqueue(store, kind="reply", channel=channel, text=text, actor=actor, idempotency_key=key,
                   case_id=case_id, target=target, in_reply_to=in_reply_to)


def queue_escalation(store: Store, config: Config, case_id: int, target: str, note: str | None,
                     actor: str) -> OutboundMessage:
    """Escalate a case to ``target`` (a configured audience, ``courier``, ``email:ADDR``, ...).

    Returns the first message; targets with several routes (Slack and email) queue one per route,
    all on the case's timeline. See :func:`responders.escalation.escalate`.
    """
    from responders.escalation import escalate

    return escalate(store, config, case_id, target, note, actor)[0]


def retry(store: Store, message_id: int, actor: str) -> OutboundMessage:
    """Send a failed (or waiting) message again now; the attempt count is kept, so the channel is checked first."""
    message = get_message(store, message_id)
    if message.status not in ("failed", "queued", "cancelled"):
        raise ValueError(f"message {message_id} is {message.status}; only failed, queued or cancelled messages can be retried")
    with store.transaction():
        store.db.execute("update outbound_messages set status = 'queued', next_attempt_at = ? where id = ?",
                         [iso(utcnow()), message_id])
        store.audit(actor, "outbox.retry", message.case_id, {"message_id": message_id})
    return get_message(store, message_id)


def cancel(store: Store, message_id: int, actor: str) -> OutboundMessage:
    message = get_message(store, message_id)
    if message.status not in ("queued", "failed"):
        raise ValueError(f"message {message_id} is {message.status}; only queued or failed messages can be cancelled")
    with store.transaction():
        cursor = store.db.execute(
            "update outbound_messages set status = 'cancelled' where id = ? and status in ('queued', 'failed')",
            [message_id])
        if cursor.rowcount == 0:
            raise ValueError(f"message {message_id} is being sent; it can no longer be cancelled")
        store.audit(actor, "outbox.cancel", message.case_id, {"message_id": message_id})
    return get_message(store, message_id)


def update_case_retrying(store: Store, case_id: int, actor: str, change: Callable[[Case], dict[str, Any]]) -> Case | None:
    """Apply a change computed from the fresh case, retrying when an agent changed it meanwhile."""
    for _ in range(5):
        case = store.get_case(case_id)
        if case is None:
            return None
        changes = change(case)
        if not changes:
            return case
        try:
            return store.update_case(case_id, case.version, actor, **changes)
        except StaleCaseError:
            continue
    log.warning("case %s kept changing; gave up recording %s", case_id, actor)
    return None


class Outbox:
    """Sends due messages; one instance per worker. ``now`` and ``senders`` are injectable for tests."""

    def __init__(self, store: Store, config: Config, *, now: Callable[[], datetime] = utcnow,
                 senders: dict[str, Any] | None = None, actor: str = "outbox"):
        self.store = store
        self.config = config
        self.settings = responders_settings(config)
        self.now = now
        self.actor = actor
        self._senders: dict[str, Any] = dict(senders or {})

    def sender(self, channel: str) -> Any:
        if channel not in self._senders:
            self._senders[channel] = make_sender(channel, self.config)
        return self._senders[channel]

    # ------------------------------------------------------------------ state changes
    def recover_in_doubt(self) -> int:
        """Messages left in ``sending`` past their lease: a sender died. Re-queue them (checked before re-send)."""
        now = iso(self.now())
        rows = list(self.store.db.query(
            # Weekly reports have their own sender (doorstep.reports), which owns their retries.
            "select id, case_id from outbound_messages where status = 'sending' and next_attempt_at <= ? "
            "and kind != 'report'", [now]))
        for row in rows:
            with self.store.transaction():
                cursor = self.store.db.execute(
                    "update outbound_messages set status = 'queued', next_attempt_at = ?, "
                    "last_error = coalesce(last_error, 'sender stopped while sending') "
                    "where id = ? and status = 'sending' and next_attempt_at <= ?", [now, row["id"], now])
                if cursor.rowcount:
                    self.store.audit(self.actor, "outbox.in_doubt", row["case_id"], {"message_id": row["id"]})
        return len(rows)

    def _claim(self, message_id: int) -> OutboundMessage | None:
        lease = iso(self.now() + timedelta(seconds=self.settings.sending_lease_s))
        cursor = self.store.db.execute(
            "update outbound_messages set status = 'sending', attempts = attempts + 1, next_attempt_at = ? "
            "where id = ? and status = 'queued'", [lease, message_id])
        return get_message(self.store, message_id) if cursor.rowcount else None

    def _mark_sent(self, message: OutboundMessage, external_id: str, recovered: bool) -> None:
        now = self.now()
        with self.store.transaction():
            self.store.db.execute(
                "update outbound_messages set status = 'sent', external_id = ?, sent_at = ?, next_attempt_at = null, "
                "last_error = ? where id = ?",
                [external_id, iso(now), "found already posted; not sent again" if recovered else None, message.id])
            self.store.audit(self.actor, "outbox.sent", message.case_id,
                             {"message_id": message.id, "external_id": external_id, "recovered": recovered,
                              "kind": message.kind, "channel": message.channel})
        if message.case_id and message.kind in ("reply", "follow_up", "outreach"):
            self._after_reply(message, now)

    def _after_reply(self, message: OutboundMessage, now: datetime) -> None:
        """A reply stops the first-response clock; a question hands the case to the customer."""
        def change(case: Case) -> dict[str, Any]:
            changes: dict[str, Any] = {}
            status = case.status
            if message.kind == "reply":
                if case.first_response_at is None:
                    changes["first_response_at"] = now
                if case.status in ("new", "open"):
                    status = "pending_customer" if "?" in message.text else "open"
            elif case.status == "new":
                status = "open"
            if status != case.status:
                changes["status"] = status
            return changes

        update_case_retrying(self.store, message.case_id, self.actor, change)  # type: ignore[arg-type]

    def _mark_error(self, message: OutboundMessage, error: SendError) -> None:
        attempts = message.attempts
        permanent = not error.retryable or attempts >= self.settings.max_attempts
        if permanent:
            status, next_at = "failed", None
        else:
            delay = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2 ** (attempts - 1))
            if error.retry_after_s:
                delay = max(delay, error.retry_after_s)
            status, next_at = "queued", iso(self.now() + timedelta(seconds=delay))
        with self.store.transaction():
            self.store.db.execute(
                "update outbound_messages set status = ?, last_error = ?, next_attempt_at = ? where id = ?",
                [status, redact(str(error))[:500], next_at, message.id])
            self.store.audit(self.actor, "outbox.failed" if permanent else "outbox.retry_later", message.case_id,
                             {"message_id": message.id, "attempts": attempts, "error": redact(str(error))[:300]})

    # ------------------------------------------------------------------ sending
    def send_one(self, message_id: int) -> str:
        """Claim and send one message; returns its new status."""
        before = get_message(self.store, message_id)
        message = self._claim(message_id)
        if message is None:
            return get_message(self.store, message_id).status
        try:
            sender = self.sender(message.channel)
            if before.attempts > 0 and getattr(sender, "can_check", False):
                existing = sender.find_existing(message)
                if existing:
                    self._mark_sent(message, existing, recovered=True)
                    return "sent"
            external_id = sender.send(message)
        except SendError as exc:
            self._mark_error(message, exc)
            return get_message(self.store, message_id).status
        except Exception as exc:  # noqa: BLE001 - an unexpected library error must not lose the message
            log.exception("sending message %s failed unexpectedly", message_id)
            self._mark_error(message, SendError(f"{type(exc).__name__}: {exc}", retryable=True))
            return get_message(self.store, message_id).status
        if os.environ.get(CRASH_HOOK_ENV):
            os._exit(int(os.environ[CRASH_HOOK_ENV]) if os.environ[CRASH_HOOK_ENV].isdigit() else 86)
        self._mark_sent(message, external_id, recovered=False)
        return "sent"

    def send_due(self, limit: int = 50) -> int:
        """Send every message that is due; returns how many were sent (the worker's job)."""
        self.recover_in_doubt()
        rows = list(self.store.db.query(
            "select id from outbound_messages where status = 'queued' and (next_attempt_at is null or next_attempt_at <= ?) "
            "and kind != 'report' order by next_attempt_at, id limit ?", [iso(self.now()), limit]))
        sent = 0
        for row in rows:
            if self.send_one(row["id"]) == "sent":
                sent += 1
        return sent


def _main() -> None:  # pragma: no cover - used by the crash test and by operators
    """``python -m responders.outbox DB [CONFIG]``: one round of the sender."""
    import sys

    from doorstep.config import load_config

    store = Store(sys.argv[1])
    config = load_config(sys.argv[2] if len(sys.argv) > 2 else None)
    print(Outbox(store, config).send_due())


if __name__ == "__main__":  # pragma: no cover
    _main()
