"""Answers to our questions act only for the customer we asked, wherever their case went (audit a_followup).

Each test reproduces one finding of the follow-up audit on a fake clock, against the store on
SQLite and on PostgreSQL: a stranger's post in the customer's thread answering for her (1), an
answer lost because the question's case was merged (5), a case left "waiting on the customer"
after she accepted a call back (6), a reply from another country's number with the same last ten
digits acting for someone else (7), and an answer after housekeeping expired the question told
as "a second, different answer" (8).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from conftest import KeywordClassifier
from doorstep import dialogue as rows
from doorstep import sla
from doorstep.models import Mention
from doorstep.pipeline import Pipeline
from doorstep.regroup import merge_cases
from doorstep.store import Store
from responders.dialogue import ask, handle_reply, offer_callback, run_housekeeping, scan_mentions
from responders.followup import run_proactive
from responders.outbox import Outbox
from test_dialogue import Accepting, dialogue_config, later
from test_outbox import add_order

#: Monday 16 November 2026, 10:00 in London (GMT): inside the team's hours all day.
NOW = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)
PHONE = "+447700900123"


def deliver(store: Store, config: Any) -> int:
    """Send what is queued, so our questions count as asked (a reply cannot answer one still queued)."""
    return Outbox(store, config, now=later, senders={"sms": Accepting(), "email": Accepting()}).send_due()


def post(store: Store, config: Any, external_id: str, text: str, at: datetime, *, handle: str = "jane",
         channel: str = "x", in_reply_to: str | None = None) -> Mention:
    """A post stored by the pipeline, as a listener would hand it over."""
    Pipeline(store, config, KeywordClassifier()).ingest([Mention(
        channel=channel, external_id=external_id, text=text, created_at=at, author_handle=handle,
        in_reply_to=in_reply_to)])
    return store.mention_by_external_id(channel, external_id)  # type: ignore[return-value]


def janes_case(store: Store, config: Any) -> tuple[int, Mention]:
    """Jane's own X post about her order, which an agent linked: a case confirmed to her (the order's customer)."""
    order = add_order(store)
    jane = post(store, config, "jane-1", "@LarkspurHelp where is my parcel LS-100234?", NOW)
    case = store.get_case(jane.case_id)  # type: ignore[arg-type]
    if not case.link_confirmed:  # type: ignore[union-attr]
        case = store.update_case(case.id, case.version, "sam", customer_id="C1", order_number=order.number,  # type: ignore[union-attr,arg-type]
                                 tracking_number=order.shipments[0].tracking_number, link_method="agent",
                                 link_confirmed=True, courier="UPS", brand="Larkspur")
    assert case.link_confirmed and case.customer_id == "C1" and case.author_handle == "jane"  # type: ignore[union-attr]
    return case.id, jane  # type: ignore[return-value]


def escalations(store: Store, case_id: int) -> list[Any]:
    return [m for m in store.outbound_for_case(case_id) if m.kind == "escalation"]


def proactive_question(store: Store, config: Any, **order: Any) -> tuple[int, rows.Question]:
    """A proactive case about a failed delivery that asked "Shall we ask UPS to redeliver?" by SMS (sent)."""
    add_order(store, events=[(NOW - timedelta(days=1), "in_transit", "Leeds hub"),
                             (NOW - timedelta(hours=2), "attempt_failed", "Bath")], **order)
    [case_id] = run_proactive(store, config, NOW)
    [question] = rows.questions_for_case(store, case_id)
    assert question.channel == "sms"
    deliver(store, config)
    return case_id, question


# ------------------------------------------------------------------ 1: a stranger in the thread
@pytest.mark.parametrize("word", ["STOP", "yes"])
def test_a_strangers_post_in_the_thread_answers_nothing_for_the_customer(store: Store, word: str) -> None:
    config = dialogue_config()
    case_id, jane = janes_case(store, config)
    scan_mentions(store, config, NOW)  # the job's first run: from now on
    question = ask(store, config, store.get_case(case_id), "redeliver", channels=["sms"], actor="sam",  # type: ignore[arg-type]
                   kind="outreach", key="redeliver-1", now=NOW, automatic=False)
    assert question is not None
    deliver(store, config)
    bob = post(store, config, "bob-1", word, NOW + timedelta(hours=1), handle="bob_troll", in_reply_to=jane.external_id)
    assert bob.case_id == case_id  # in her thread, so on her case (the inbox shows it)
    scan_mentions(store, config, NOW + timedelta(hours=1))
    assert store.get_customer("C1").opt_out == []  # type: ignore[union-attr]
    assert rows.get_question(store, question.id).status == "open"  # type: ignore[union-attr]
    assert escalations(store, case_id) == []
    assert not [e for e in store.audit_trail(case_id) if e.action in ("customer.opt_out", "dialogue.answered")]
    # Jane's own answer in the same thread still answers.
    post(store, config, "jane-2", "yes please", NOW + timedelta(hours=2), in_reply_to=jane.external_id)
    scan_mentions(store, config, NOW + timedelta(hours=2))
    assert rows.get_question(store, question.id).answer_kind == "yes"  # type: ignore[union-attr]
    assert len(escalations(store, case_id)) == 1


def test_a_strangers_stop_on_a_confirmed_case_without_a_question_opts_nobody_out(store: Store) -> None:
    config = dialogue_config()
    case_id, jane = janes_case(store, config)
    scan_mentions(store, config, NOW)
    post(store, config, "bob-1", "STOP", NOW + timedelta(hours=1), handle="bob_troll", in_reply_to=jane.external_id)
    scan_mentions(store, config, NOW + timedelta(hours=1))
    assert store.get_customer("C1").opt_out == []  # type: ignore[union-attr]
    post(store, config, "jane-2", "STOP", NOW + timedelta(hours=2), in_reply_to=jane.external_id)
    scan_mentions(store, config, NOW + timedelta(hours=2))
    assert "sms" in store.get_customer("C1").opt_out  # type: ignore[union-attr]


# ------------------------------------------------------------------ 5: the question's case was merged
def _merge_proactive_into_janes_post(store: Store, config: Any, proactive: int) -> int:
    """Jane writes on X 50 h later (a new case; the worker's dialogue job reads it), and the lead
    merges the proactive case into it."""
    x = post(store, config, "jane-x", "@LarkspurHelp the courier never came and now nothing, where is it??",
             NOW + timedelta(hours=50))
    scan_mentions(store, config, NOW + timedelta(hours=50))
    kept = x.case_id
    assert kept is not None and kept != proactive
    merge_cases(store, config, kept, store.get_case(kept).version, proactive,  # type: ignore[union-attr]
                store.get_case(proactive).version, "lead")  # type: ignore[union-attr]
    assert store.get_case(proactive).merged_into == kept  # type: ignore[union-attr]
    return kept


def test_an_sms_answer_to_a_question_whose_case_was_merged_acts_on_the_case_it_went_into(store: Store) -> None:
    config = dialogue_config()
    proactive, question = proactive_question(store, config)
    kept = _merge_proactive_into_janes_post(store, config, proactive)
    result = handle_reply(store, config, channel="sms", external_id="SM1", sender=PHONE, text="YES please",
                          now=NOW + timedelta(hours=51))
    assert result["outcome"] == "answered" and result["case_id"] == kept
    assert len(escalations(store, kept)) == 1  # the redelivery is booked, on the case the team works on
    assert store.get_case(kept).status == "escalated"  # type: ignore[union-attr]
    assert rows.get_question(store, question.id).status == "answered"  # type: ignore[union-attr]
    assert any(e.action == "dialogue.answered" for e in store.audit_trail(kept))
    assert "dialogue.answered" not in [e.action for e in store.audit_trail(proactive)]


def test_a_call_back_accepted_after_its_case_was_merged_is_scheduled_on_the_case_it_went_into(store: Store) -> None:
    config = dialogue_config()
    proactive, redeliver = proactive_question(store, config)
    rows.claim_answer(store, redeliver.id, status="answered", answer="no", kind="no", channel="sms", at=NOW)
    callback = offer_callback(store, config, proactive, "sam", "agent", now=NOW + timedelta(minutes=5))
    deliver(store, config)
    kept = _merge_proactive_into_janes_post(store, config, proactive)
    result = handle_reply(store, config, channel="sms", external_id="SM2", sender=PHONE, text="yes",
                          now=NOW + timedelta(hours=51))
    assert result["outcome"] == "answered" and result["case_id"] == kept
    task = rows.get_callback(store, callback.id)
    assert task.status == "scheduled" and task.case_id == kept  # type: ignore[union-attr]


def test_an_answer_to_a_merged_question_on_a_resolved_case_reopens_the_case_it_went_into(store: Store) -> None:
    config = dialogue_config()
    proactive, question = proactive_question(store, config)
    kept = _merge_proactive_into_janes_post(store, config, proactive)
    case = store.get_case(kept)
    store.update_case(kept, case.version, "ann", status="resolved", resolved_at=NOW + timedelta(hours=50))  # type: ignore[union-attr]
    result = handle_reply(store, config, channel="sms", external_id="SM3", sender=PHONE, text="YES",
                          now=NOW + timedelta(hours=51))
    assert result == {"outcome": "reopened", "kind": "yes", "question_id": question.id, "case_id": kept}
    assert store.get_case(kept).status == "open"  # type: ignore[union-attr]
    assert "after the case was closed" in store.notes(kept)[-1].text
    assert escalations(store, kept) == []


def test_a_dm_answer_on_the_case_a_question_was_merged_into_answers_it(store: Store) -> None:
    config = dialogue_config()
    proactive, question = proactive_question(store, config)
    scan_mentions(store, config, NOW)
    kept = _merge_proactive_into_janes_post(store, config, proactive)
    store.insert_mention(Mention(channel="x_dm", external_id="dm-yes", text="yep", created_at=NOW + timedelta(hours=51),
                                 author_handle="jane", case_id=kept))
    assert scan_mentions(store, config, NOW + timedelta(hours=51)) == 1
    assert rows.get_question(store, question.id).answer_kind == "yes"  # type: ignore[union-attr]
    assert len(escalations(store, kept)) == 1


# ------------------------------------------------------------------ 6: a call back is owed
@pytest.mark.parametrize("answer", ["YES", "Thursday after 2 is fine"])
def test_accepting_a_call_back_ends_the_wait_on_the_customer_and_resumes_the_clocks(store: Store, answer: str) -> None:
    config = dialogue_config()
    case_id, _ = janes_case(store, config)
    paused_at = NOW + timedelta(minutes=10)  # our public question: waiting on the customer, clocks paused
    case = store.get_case(case_id)
    store.update_case(case_id, case.version, "sam", **sla.follow(case, {"status": "pending_customer"}, paused_at,  # type: ignore[arg-type]
                                                                 config))
    before = store.get_case(case_id)
    assert before.status == "pending_customer" and before.sla_paused_at == paused_at  # type: ignore[union-attr]
    callback = offer_callback(store, config, case_id, "sam", "agent", now=NOW + timedelta(hours=1))
    deliver(store, config)
    answered_at = NOW + timedelta(hours=3)  # 13:00, the same working day: 2h50m of paused business time
    result = handle_reply(store, config, channel="sms", external_id="SM-1", sender=PHONE, text=answer, now=answered_at)
    assert result["outcome"] == "answered" and "call back scheduled" in result["action"]
    assert rows.get_callback(store, callback.id).status == "scheduled"  # type: ignore[union-attr]
    after = store.get_case(case_id)
    assert after.status == "open" and after.sla_paused_at is None  # type: ignore[union-attr]
    gap = answered_at - paused_at
    assert after.resolution_due == before.resolution_due + gap  # type: ignore[union-attr,operator]


def test_a_person_handed_an_answer_gets_the_case_with_its_clocks_resumed(store: Store) -> None:
    config = dialogue_config()
    case_id, _ = janes_case(store, config)
    paused_at = NOW + timedelta(minutes=10)
    case = store.get_case(case_id)
    store.update_case(case_id, case.version, "sam", **sla.follow(case, {"status": "pending_customer"}, paused_at,  # type: ignore[arg-type]
                                                                 config))
    before = store.get_case(case_id)
    offer_callback(store, config, case_id, "sam", "agent", now=NOW + timedelta(hours=1))
    deliver(store, config)
    answered_at = NOW + timedelta(hours=3)
    result = handle_reply(store, config, channel="sms", external_id="SM-1", sender=PHONE, text="what?", now=answered_at)
    assert result["outcome"] == "answered" and "handed to a person" in result["action"]
    after = store.get_case(case_id)
    assert after.status == "open" and after.sla_paused_at is None  # type: ignore[union-attr]
    assert after.resolution_due == before.resolution_due + (answered_at - paused_at)  # type: ignore[union-attr,operator]


# ------------------------------------------------------------------ 7: the same last ten digits, another country
def test_a_uk_number_never_answers_or_opts_out_a_us_customer_with_the_same_last_ten_digits(store: Store) -> None:
    config = dialogue_config(proactive={"questions": {"attempt_failed": "redeliver"}, "channels": ["sms"]})
    bobs_case, question = proactive_question(store, config, customer_id="US1", name="Bob US", phone="+1 770-090-0123",
                                             email="bob@example.com")
    add_order(store, number="LS-2", tracking="1Z999AA10000000002", customer_id="UK1", name="Jane UK",
              phone="+44 7700 900123", email="jane.uk@example.com")
    yes = handle_reply(store, config, channel="sms", external_id="SM-uk", sender="+447700900123", text="yes",
                       now=NOW + timedelta(hours=1))
    assert yes["question_id"] is None and yes["case_id"] != bobs_case
    assert rows.get_question(store, question.id).status == "open"  # type: ignore[union-attr]
    assert escalations(store, bobs_case) == []
    handle_reply(store, config, channel="sms", external_id="SM-uk2", sender="+447700900123", text="STOP",
                 now=NOW + timedelta(hours=2))
    assert store.get_customer("US1").opt_out == []  # type: ignore[union-attr]
    assert "sms" in store.get_customer("UK1").opt_out  # type: ignore[union-attr]
    assert rows.get_question(store, question.id).status == "open"  # type: ignore[union-attr]
    # Bob's own number still answers his question.
    bob = handle_reply(store, config, channel="sms", external_id="SM-us", sender="+17700900123", text="yes",
                       now=NOW + timedelta(hours=3))
    assert bob["outcome"] == "answered" and bob["question_id"] == question.id
    assert len(escalations(store, bobs_case)) == 1


@pytest.mark.parametrize(("stored", "sender", "match"), [
    ("+44 7700 900123", "+447700900123", True), ("0044 7700 900123", "+447700900123", True),
    ("+44 (0)7700 900123", "+447700900123", True),
    ("07700 900123", "+447700900123", True), ("447700900123", "+447700900123", True),
    ("(770) 090-0123", "+17700900123", True),
    ("+1 770-090-0123", "+447700900123", False), ("447700900123", "+17700900123", False),
    ("+44 7700 900123", "+44 7700 900124", False), ("", "+447700900123", False),
])
def test_phone_numbers_are_the_same_only_with_the_same_country_code(stored: str, sender: str, match: bool) -> None:
    assert rows.same_address("sms", stored, sender) is match


def test_a_stop_from_a_number_stored_without_country_code_opts_out_only_a_single_match(store: Store) -> None:
    config = dialogue_config()
    add_order(store, customer_id="UK1", name="Jane UK", phone="07700 900123", email="jane.uk@example.com")
    handle_reply(store, config, channel="sms", external_id="SM-1", sender="+447700900123", text="STOP", now=NOW)
    assert "sms" in store.get_customer("UK1").opt_out  # type: ignore[union-attr]
    # Two customers whose national numbers both end so: the sender may be either, so neither is opted out.
    add_order(store, number="LS-2", tracking="1Z999AA10000000002", customer_id="A1", name="Ann", phone="7700 900999",
              email="ann@example.com")
    add_order(store, number="LS-3", tracking="1Z999AA10000000003", customer_id="B1", name="Ben", phone="07700 900999",
              email="ben@example.com")
    result = handle_reply(store, config, channel="sms", external_id="SM-2", sender="+447700900999", text="STOP", now=NOW)
    assert result["outcome"] == "opt-out from an unknown sender (nothing to opt out)"
    assert store.get_customer("A1").opt_out == [] and store.get_customer("B1").opt_out == []  # type: ignore[union-attr]


@pytest.mark.parametrize(("stored", "sender"), [
    ("+49 (0)89 1234567", "+49891234567"), ("+49 (0)171 123456", "+49171123456"), ("+44 (0)7700 900123", PHONE),
    ("+49 (0)89 1234567", "089 1234567"),
])
def test_an_answer_and_a_stop_reach_a_customer_stored_with_a_bracketed_trunk_zero(store: Store, stored: str,
                                                                                   sender: str) -> None:
    """Intl audit (finding 7): a German customer stored as "+49 (0)89 1234567" texting from "+49891234567" was no
    one (``customer_by_address`` None): the lookup key, the last ten digits, kept the bracketed 0 ("0891234567" of
    "490891234567") and missed the sender's "9891234567"; their answer answered nothing and their STOP stopped
    nothing. The key is now the number's last seven digits, on which every spelling agrees; same_address decides."""
    config = dialogue_config(proactive={"questions": {"attempt_failed": "redeliver"}, "channels": ["sms"]})
    case_id, question = proactive_question(store, config, customer_id="DE1", name="Max Muster", phone=stored,
                                           email="max@example.de")
    yes = handle_reply(store, config, channel="sms", external_id="SM-de1", sender=sender, text="yes",
                       now=NOW + timedelta(hours=1))
    assert yes["outcome"] == "answered" and yes["question_id"] == question.id
    handle_reply(store, config, channel="sms", external_id="SM-de2", sender=sender, text="STOP",
                 now=NOW + timedelta(hours=2))
    assert "sms" in store.get_customer("DE1").opt_out  # type: ignore[union-attr]


# ------------------------------------------------------------------ 8: housekeeping expired the question first
def test_an_answer_after_housekeeping_expired_the_question_is_a_late_answer(store: Store) -> None:
    config = dialogue_config()
    case_id, question = proactive_question(store, config)
    answered_at = NOW + timedelta(hours=74)
    assert run_housekeeping(store, config, answered_at - timedelta(minutes=1))["expired"] == [question.id]
    result = handle_reply(store, config, channel="sms", external_id="SM9", sender=PHONE, text="YES", now=answered_at)
    assert result["outcome"] == "late"
    late = rows.get_question(store, question.id)
    assert late.status == "late" and late.answer == "YES" and late.answered_at == answered_at  # type: ignore[union-attr]
    why = [e.details.get("why") for e in store.audit_trail(case_id) if e.action == "dialogue.needs_human"]
    assert why == ["answered after the question expired"]
    assert escalations(store, case_id) == []
    [sms] = rows.answer_rates(store, NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert sms["asked"] == 1 and sms["answered"] == 1
    # The same "YES" again is a repeat, not a second, different answer.
    again = handle_reply(store, config, channel="sms", external_id="SM10", sender=PHONE, text="yes",
                         now=answered_at + timedelta(minutes=5))
    assert again["outcome"] == "repeat (already acted on)"


def test_a_merge_moves_questions_call_backs_and_their_records_to_the_case_kept(store: Store) -> None:
    """Dialogue fix report: merge_cases moved posts, notes and messages but left questions, call-back
    tasks, automatic-message facts and contact attempts on the merged case, so the kept case offered
    the customer a second call back (one open offer per case) and its page showed none of them."""
    config = dialogue_config()
    proactive, _ = proactive_question(store, config)
    offered = offer_callback(store, config, proactive, "sam", "agent", now=NOW + timedelta(minutes=5))
    deliver(store, config)
    kept = _merge_proactive_into_janes_post(store, config, proactive)
    questions = store.db.execute("select count(*) from questions").fetchone()[0]
    for table in ("questions", "callbacks", "automatic_messages", "contact_attempts", "answers"):
        left = store.db.execute(f"select count(*) from {table} where case_id = ?", [proactive]).fetchone()[0]
        assert left == 0, f"{table}: {left} row(s) left on the merged case"
    assert [c.case_id for c in rows.callbacks_for_case(store, kept)] == [kept]
    # The offer made before the merge is the kept case's open offer: no second one, no second question.
    again = offer_callback(store, config, kept, "sam", "agent", now=NOW + timedelta(hours=52))
    assert again.id == offered.id
    assert store.db.execute("select count(*) from questions").fetchone()[0] == questions


def test_a_text_from_a_customers_number_that_answers_nothing_of_ours_reaches_her_open_case(store: Store) -> None:
    """Lifecycle audit finding 4: Jane texted the shop's number from the phone on her order record
    ("leave it with the neighbour at number 5") though we had written to her only by e-mail: the text
    was stored where nobody reads it, and her case stayed "waiting on the customer" with clocks paused."""
    config = dialogue_config()
    case_id, _ = janes_case(store, config)
    case = store.get_case(case_id)
    store.update_case(case_id, case.version, "sam",  # type: ignore[union-attr]
                      **sla.follow(case, {"status": "pending_customer"}, NOW + timedelta(minutes=5), config))  # type: ignore[arg-type]
    result = handle_reply(store, config, channel="sms", external_id="SM-n5", sender=PHONE,
                          text="Leave it with the neighbour at number 5 please", now=NOW + timedelta(hours=3))
    assert result["case_id"] == case_id and result["outcome"].startswith("handed to a person"), result
    after = store.get_case(case_id)
    assert after.status == "open" and after.sla_paused_at is None  # type: ignore[union-attr]
    assert sla.next_due(after) is not None  # an answer is owed, with a deadline, as for a post of hers
    note = next(n.text for n in store.notes(case_id) if "neighbour at number 5" in n.text)
    assert "not an answer to a message of ours" in note and "asked no question" not in note


def test_a_question_asked_before_the_upgrade_is_still_answered_after_it(store: Store) -> None:
    """m031: questions asked by SMS before the key was the last seven digits kept their last-ten key; without the
    upgrade, a customer's answer to one found nothing."""
    from doorstep.store import MIGRATIONS

    config = dialogue_config(proactive={"questions": {"attempt_failed": "redeliver"}, "channels": ["sms"]})
    _, question = proactive_question(store, config)
    store.db.execute("update questions set address_key = '7700900123' where id = ?", [question.id])  # as stored then
    store.db.execute("delete from _sqlite_migrations where name = 'm031_sms_questions_keyed_by_the_last_seven_digits'")
    MIGRATIONS.apply(store.db)
    yes = handle_reply(store, config, channel="sms", external_id="SM-old", sender=PHONE, text="yes",
                       now=NOW + timedelta(hours=1))
    assert yes["outcome"] == "answered" and yes["question_id"] == question.id
