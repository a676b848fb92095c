"""Splitting and merging cases found wrong by the case-lifecycle audit (/tmp/audit/life.md, findings 1 and 2).

A split post takes our answers to it along (the replies, private messages about it, the follow-ups and
questions written from them), so the new case shows its answer and refuses a second one, and the case it
left owes its own answer again and is no longer "waiting on the customer" (no follow-up telling her "we
replied to you about order LS-100234" about a reply on the lamp). A merge that brings in a customer post
written after our question ends the wait on her, as that post arriving on the kept case would (clocks
resumed, next response due), and the merged case's posts speak for the customer the merge says she is.
Against the X emulator and the aiosmtpd relay, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from doorstep import sla
from doorstep.config import Config
from doorstep.models import Mention
from doorstep.pipeline import Pipeline
from doorstep.regroup import merge_cases, split_post
from doorstep.store import Store, iso
from responders.followup import run_followups
from responders.outbox import AlreadyAnswered, Outbox, get_message, latest_message_id, queue_reply
from standins.x_emulator import XEmulator

from conftest import KeywordClassifier
from test_outbox import NOW, SmtpSink, add_order, emulator, shop_config, smtp  # noqa: F401 - fixtures

LAMP_QUESTION = "@jane so sorry about the lamp! Could you send us a photo?"
PARCEL_QUESTION = "@jane sorry! Is there a safe place UPS can leave it?"


def _xpost(store: Store, config: Config, em: XEmulator, text: str, *, at: datetime, handle: str = "jane") -> Mention:
    """A post published on the emulator and ingested by the pipeline."""
    external_id = em.add_post({"text": text, "username": handle, "created_at": at.isoformat()})
    Pipeline(store, config, KeywordClassifier()).ingest([Mention(
        channel="x", external_id=external_id, text=text, created_at=at, author_handle=handle)])
    return store.mention_by_external_id("x", external_id)  # type: ignore[return-value]


def _confirm(store: Store, case_id: int, order: Any) -> None:
    """An agent confirms the case's order (Change the linked order)."""
    case = store.get_case(case_id)
    assert case is not None
    store.update_case(case_id, case.version, "agent", customer_id=order.customer_id, order_number=order.number,
                      tracking_number=order.shipments[0].tracking_number, link_method="agent", link_confirmed=True,
                      courier="UPS", brand=order.brand)


def _reply(store: Store, config: Config, case_id: int, text: str, parent: Mention, at: datetime) -> int:
    """Sam's reply to ``parent``, sent to the emulator by the outbox at ``at``."""
    message = queue_reply(store, config, case_id, text, "sam", parent_id=parent.id)
    store.db.execute("update outbound_messages set created_at = ?, next_attempt_at = ? where id = ?",
                     [iso(at), iso(at), message.id])  # written and sent on the test's clock
    Outbox(store, config, now=lambda: at).send_due()
    assert get_message(store, message.id).status == "sent"  # type: ignore[arg-type]
    return message.id  # type: ignore[return-value]


def _split(store: Store, config: Config, case_id: int, post: Mention) -> int:
    case = store.get_case(case_id)
    return split_post(store, config, case_id, post.id, case.version, "priya").id  # type: ignore[arg-type, union-attr, return-value]


def _merge(store: Store, config: Config, keep: int, other: int) -> None:
    merge_cases(store, config, keep, store.get_case(keep).version, other,  # type: ignore[union-attr]
                store.get_case(other).version, "priya")  # type: ignore[union-attr]


def _parcel_and_lamp(store: Store, config: Config, em: XEmulator) -> tuple[int, Mention, Mention]:
    """Jane's parcel post and, in the same case, her scratched-lamp post (case A, order confirmed)."""
    order = add_order(store)
    parcel = _xpost(store, config, em, "@LarkspurHelp where is my parcel LS-100234? it's late", at=NOW)
    _confirm(store, parcel.case_id, order)  # type: ignore[arg-type]
    lamp = _xpost(store, config, em, "@LarkspurHelp and the lamp I got last month arrived scratched",
                  at=NOW + timedelta(minutes=5))
    assert lamp.case_id == parcel.case_id
    return parcel.case_id, parcel, lamp  # type: ignore[return-value]


# ------------------------------------------------------------------ 1: a split post takes our answer along
def test_a_split_post_takes_our_answer_along_and_the_case_it_left_owes_its_own(
        store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24, "channels": ["email"]})
    a, parcel, lamp = _parcel_and_lamp(store, config, emulator)
    answered = NOW + timedelta(minutes=20)
    reply = _reply(store, config, a, LAMP_QUESTION, lamp, answered)
    assert store.get_case(a).status == "pending_customer"  # type: ignore[union-attr]

    b = _split(store, config, a, lamp)

    # The answer went with the post it answers: case B shows it, answered and waiting on her photo.
    assert [m.id for m in store.outbound_for_case(b)] == [reply]
    assert store.outbound_for_case(a) == []
    new = store.get_case(b)
    assert new is not None
    assert (new.status, new.first_response_at, new.sla_paused_at) == ("pending_customer", answered, answered)
    # Case A's parcel post was never answered: it owes its first answer, its clocks run.
    left = store.get_case(a)
    assert left is not None
    assert (left.status, left.first_response_at, left.sla_paused_at) == ("open", None, None)
    assert sla.next_due(left) == ("first response", parcel.created_at + timedelta(hours=1))

    # Tom opens case B and answers the lamp post again: refused, B already holds the answer.
    with pytest.raises(AlreadyAnswered, match="sam already answered"):
        queue_reply(store, config, b, "@jane sorry about the scratch! Could you DM us a photo?", "tom",
                    parent_id=lamp.id, seen_up_to=latest_message_id(store, b))
    # A day later nothing tells her "we replied to you about order LS-100234": A asked her nothing.
    at = NOW + timedelta(hours=26)
    assert run_followups(store, config, at) == []
    Outbox(store, config, now=lambda: at).send_due()
    assert smtp.messages == []
    assert [p["text"] for p in emulator.posted] == [LAMP_QUESTION]
    moved = next(e for e in store.audit_trail(a) if e.action == "case.split")
    assert moved.details["messages"] == [reply]


def test_a_follow_up_waiting_for_quiet_hours_goes_with_the_reply_it_follows(
        store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    """Written from the lamp reply on case A (order LS-100234), the follow-up is that reply's: it moves
    with it, is checked against case B's facts (B's order is only a guess) and is not sent."""
    config = shop_config(followup={"after_hours": 24, "channels": ["email"],
                                   "quiet_hours": {"start": "21:00", "end": "08:00"}})
    a, _, lamp = _parcel_and_lamp(store, config, emulator)
    reply = _reply(store, config, a, LAMP_QUESTION, lamp, NOW + timedelta(minutes=20))
    night = datetime(2026, 11, 17, 23, 30, tzinfo=timezone.utc)
    [follow_up] = run_followups(store, config, night)

    b = _split(store, config, a, lamp)

    assert get_message(store, follow_up).case_id == b
    facts = store.db.execute("select case_id, reply_message_id from automatic_messages where message_id = ?",
                             [follow_up]).fetchone()
    assert tuple(facts) == (b, reply)
    attempt = store.db.execute("select case_id from contact_attempts where message_id = ?", [follow_up]).fetchone()
    assert attempt[0] == b
    assert run_followups(store, config, night + timedelta(minutes=5)) == []
    morning = datetime(2026, 11, 18, 8, 1, tzinfo=timezone.utc)
    Outbox(store, config, now=lambda: morning).send_due()
    assert get_message(store, follow_up).status == "cancelled"
    assert smtp.messages == []


def test_a_private_message_goes_with_the_customers_post_it_was_written_after(
        store: Store, emulator: XEmulator) -> None:
    """A direct message names no post: it is about the customer's newest post when it was written (what
    "ask privately" picks). One written after the lamp post goes with it; one written before stays."""
    config = shop_config()
    a, parcel, lamp = _parcel_and_lamp(store, config, emulator)
    before = queue_reply(store, config, a, "Hi Jane, we're checking with UPS now.", "sam", channel="x_dm")
    after = queue_reply(store, config, a, "Hi Jane, could you send us a photo of the lamp?", "sam", channel="x_dm",
                        seen_up_to=latest_message_id(store, a), force=True)
    store.db.execute("update outbound_messages set created_at = ?, in_reply_to = ? where id = ?",
                     [iso(parcel.created_at + timedelta(minutes=2)), parcel.external_id, before.id])
    store.db.execute("update outbound_messages set created_at = ? where id = ?",
                     [iso(lamp.created_at + timedelta(minutes=2)), after.id])

    b = _split(store, config, a, lamp)

    assert [m.id for m in store.outbound_for_case(b)] == [after.id]
    assert [m.id for m in store.outbound_for_case(a)] == [before.id]
    with pytest.raises(AlreadyAnswered):
        queue_reply(store, config, b, "@jane sorry about the scratch!", "tom", parent_id=lamp.id)


# ------------------------------------------------------------------ 2: a merge that brings in her newer post
def _waiting_on_jane(store: Store, config: Config, em: XEmulator) -> tuple[int, Any]:
    """Case A: Jane's parcel post (order confirmed) and our question to her, sent at 10:20: waiting on her."""
    order = add_order(store)
    parcel = _xpost(store, config, em, "@LarkspurHelp where is my parcel LS-100234? it's late", at=NOW)
    _confirm(store, parcel.case_id, order)  # type: ignore[arg-type]
    _reply(store, config, parcel.case_id, PARCEL_QUESTION, parcel, NOW + timedelta(minutes=20))  # type: ignore[arg-type]
    case = store.get_case(parcel.case_id)  # type: ignore[arg-type]
    assert case is not None and case.status == "pending_customer"
    assert case.sla_paused_at == NOW + timedelta(minutes=20)
    return parcel.case_id, order  # type: ignore[return-value]


def test_merging_in_her_newer_unanswered_post_ends_the_wait_on_her(
        store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    config = shop_config(followup={"after_hours": 24, "channels": ["email"]})
    a, order = _waiting_on_jane(store, config, emulator)
    wrote = NOW + timedelta(days=3)  # Thursday 10:00
    complaint = _xpost(store, config, emulator, "@LarkspurHelp where is my order?? nobody answers", at=wrote)
    c = complaint.case_id
    assert c != a
    _confirm(store, c, order)  # type: ignore[arg-type]

    _merge(store, config, a, c)  # type: ignore[arg-type]

    case = store.get_case(a)
    assert case is not None
    assert (case.status, case.sla_paused_at) == ("open", None)
    assert case.first_response_at == NOW + timedelta(minutes=20)
    # Her post is owed its answer within the band's hour; the resolution clock got the paused time back
    # (7h40 of business time were left at 10:20 on Monday: from Thursday 10:00, Friday 09:40).
    assert sla.next_due(case) == ("next response", wrote + timedelta(hours=1))
    assert case.resolution_due == datetime(2026, 11, 20, 9, 40, tzinfo=timezone.utc)
    at = wrote + timedelta(hours=1)
    assert run_followups(store, config, at) == []
    Outbox(store, config, now=lambda: at).send_due()
    assert smtp.messages == []


def test_merging_in_her_post_on_another_network_ends_the_wait_and_it_stays_hers(
        store: Store, emulator: XEmulator, smtp: SmtpSink) -> None:
    """Her Mastodon handle is not on the customer record: the agent linked that case to her order and
    merged it, vouching that it is hers. Her post ends the wait, no follow-up tells her "make sure you saw
    it", and her later post in that conversation is hers too."""
    config = shop_config(followup={"after_hours": 24, "channels": ["email"]})
    a, order = _waiting_on_jane(store, config, emulator)
    wrote = NOW + timedelta(hours=3)
    Pipeline(store, config, KeywordClassifier()).ingest([Mention(
        channel="mastodon", external_id="md-1", text="@LarkspurHelp where is my order?? nobody answers",
        created_at=wrote, author_handle="jane@mastodon.social")])
    c = store.mention_by_external_id("mastodon", "md-1").case_id  # type: ignore[union-attr]
    assert c != a
    _confirm(store, c, order)  # type: ignore[arg-type]

    _merge(store, config, a, c)  # type: ignore[arg-type]

    case = store.get_case(a)
    assert case is not None
    assert (case.status, case.sla_paused_at) == ("open", None)
    assert sla.next_due(case) == ("next response", wrote + timedelta(hours=1))
    assert store.mention_by_external_id("mastodon", "md-1").by_customer is True  # type: ignore[union-attr]
    assert store.customer_id_by_handle("mastodon", "jane@mastodon.social") == "C1"
    at = NOW + timedelta(hours=26)
    assert run_followups(store, config, at) == []
    Outbox(store, config, now=lambda: at).send_due()
    assert smtp.messages == []
    Pipeline(store, config, KeywordClassifier()).ingest([Mention(
        channel="mastodon", external_id="md-2", text="@LarkspurHelp hello??", created_at=wrote + timedelta(hours=1),
        author_handle="jane@mastodon.social", in_reply_to="md-1")])
    later = store.mention_by_external_id("mastodon", "md-2")
    assert later is not None and later.case_id == a and later.by_customer is True


def test_merging_in_her_post_written_before_our_question_keeps_the_wait(
        store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    add_order(store)
    earlier = _xpost(store, config, emulator, "@LarkspurHelp where is my parcel?", at=NOW - timedelta(days=4))
    a, _ = _waiting_on_jane(store, config, emulator)
    assert earlier.case_id != a

    _merge(store, config, a, earlier.case_id)  # type: ignore[arg-type]

    case = store.get_case(a)
    assert case is not None
    assert (case.status, case.sla_paused_at) == ("pending_customer", NOW + timedelta(minutes=20))
    assert sla.next_due(case) is None
