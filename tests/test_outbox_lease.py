"""A message being sent stays its sender's: it is never "recovered" and sent again meanwhile (audit 2026-12, finding 5).

A sender claims a message (``sending``, a lease in ``next_attempt_at``). A send that outlasts
``sending_lease_s`` (a slow SMTP relay, several timeouts in a row) keeps renewing its lease while
it runs, so another worker's sweep does not take it for a crashed sender's and send it again.
And a sender that did lose its claim (a frozen process) no longer writes over the attempt that
took it over. Real smtplib against an aiosmtpd relay, on SQLite and on PostgreSQL; the assertions
are on what the relay received.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from doorstep.config import Config, parse_config
from doorstep.store import Store
from responders.outbox import Outbox, enqueue, get_message
from standins.smtp import SmtpSink

from test_outbox import later, serve_smtp


class SlowRelay(SmtpSink):
    """A relay that takes ``delay_s`` over each DATA (a content filter, a tarpit); ``refuse_first``:
    its first DATA is answered 451 after that wait, the others accepted at once."""

    def __init__(self, delay_s: float, refuse_first: bool = False) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.refuse_first = refuse_first
        self.data_commands = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_commands += 1
        if self.refuse_first:
            if self.data_commands == 1:
                await asyncio.sleep(self.delay_s)
                return "451 4.3.0 try again later"
            return await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(self.delay_s)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_relay(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    yield from serve_smtp(monkeypatch, SlowRelay(delay_s=3.0), timeout_s=10)


@pytest.fixture
def refusing_relay(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    yield from serve_smtp(monkeypatch, SlowRelay(delay_s=2.0, refuse_first=True), timeout_s=10)


def lease_config(lease_s: float) -> Config:
    return parse_config({"timezone": "Europe/London", "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}}],
                         "responders": {"sending_lease_s": lease_s}})


def _escalation(store: Store) -> int:
    message = enqueue(store, kind="escalation", channel="email", text="Subject: Escalation: case #7\n\nPlease call the customer.",
                      actor="ann", idempotency_key="esc-7", target="lead@shop.test")
    assert message.id is not None
    return message.id


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(fn()))
    thread.start()
    return thread, result


def _actions(store: Store) -> list[tuple[str, str]]:
    return [(r["actor"], r["action"]) for r in store.db.query("select actor, action from audit_events order by id")]


def test_a_send_that_outlasts_its_lease_keeps_it_and_is_not_sent_again_by_another_worker(
        db_url: str, slow_relay: SlowRelay) -> None:
    config = lease_config(1.0)  # scaled down from 120 s; the relay takes 3 s
    store = Store(db_url)
    message_id = _escalation(store)
    a_store, b_store = Store(db_url), Store(db_url)
    try:
        worker_a, a_result = _in_thread(lambda: Outbox(a_store, config, actor="worker-a").send_one(message_id))
        time.sleep(2.2)  # A is still talking to the relay, well past its first lease
        assert get_message(store, message_id).status == "sending"
        worker_b = Outbox(b_store, config, actor="worker-b")
        assert worker_b.recover_in_doubt() == 0  # what the worker's sweep does every outbox_interval_s
        assert worker_b.send_one(message_id) == "sending"  # the send job: A has it
        worker_a.join(timeout=30)
        assert a_result == ["sent"]
        assert len(slow_relay.messages) == 1 and slow_relay.data_commands == 1  # the relay got it once
        assert get_message(store, message_id).status == "sent"
        assert _actions(store) == [("ann", "outbox.queue.escalation"), ("worker-a", "outbox.sent")]
    finally:
        a_store.close()
        b_store.close()
        store.close()


def test_a_sender_that_lost_its_claim_does_not_overwrite_the_attempt_that_took_it_over(
        db_url: str, refusing_relay: SlowRelay) -> None:
    """A's process froze past its lease (its renewals could not run): B took the message over and sent it.
    A's late answer from the relay (451) must not put B's sent message back in the queue for a third send."""
    config = lease_config(120)
    store = Store(db_url)
    message_id = _escalation(store)
    a_store, b_store = Store(db_url), Store(db_url)
    try:
        worker_a, a_result = _in_thread(lambda: Outbox(a_store, config, actor="worker-a").send_one(message_id))
        deadline = time.monotonic() + 10
        while refusing_relay.data_commands == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        # B's clock is 10 minutes on: A's lease has run out as far as B can tell.
        worker_b = Outbox(b_store, config, actor="worker-b", now=later(10))
        assert worker_b.recover_in_doubt() == 1
        assert worker_b.send_one(message_id) == "sent"
        worker_a.join(timeout=30)
        final = get_message(store, message_id)
        assert final.status == "sent" and final.last_error is None and final.next_attempt_at is None
        assert a_result == ["sent"]  # what the row says; A's 451 was B's business no longer
        assert len(refusing_relay.messages) == 1
        actions = _actions(store)
        assert ("worker-b", "outbox.sent") in actions
        assert not any(actor == "worker-a" for actor, _ in actions)  # A wrote nothing once it had lost the claim
        # The sweep finds nothing to re-send, so no third e-mail.
        Outbox(store, config, now=later(30)).send_due()
        assert len(refusing_relay.messages) == 1 and refusing_relay.data_commands == 2
    finally:
        a_store.close()
        b_store.close()
        store.close()
