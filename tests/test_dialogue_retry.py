"""A customer's answer whose handling failed half-way is acted on when it comes again, exactly once.

``handle_reply`` recorded the reply (``answers``, which drops a redelivery as a duplicate) and
committed it before acting on it. When a later step failed ("database is locked" beside an
import, a dropped PostgreSQL connection, a bug in a step), the sender's retry (Twilio, the mail
relay, the worker's next scan of DMs) was answered "duplicate": the answer, a STOP among them,
was lost half-done. Each test makes one step fail once on the store of each backend, asserts that
the failure left nothing behind, delivers the same answer again and asserts it was acted on once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from doorstep import dialogue as rows
from doorstep.models import utcnow
from doorstep.store import Store
from responders.dialogue import MENTIONS_CURSOR, ask, handle_reply, scan_mentions
from test_dialogue import ask_redelivery, deliver, dialogue_config
from test_dialogue_audit import NOW, PHONE, escalations, janes_case, post, proactive_question
from test_http_audit import inbound, post_sms  # noqa: F401 - fixture

import responders.dialogue


class Hiccup(RuntimeError):
    """The one failure a test injects."""


def fails_once(fn: Callable[..., Any], error: BaseException | None = None) -> Callable[..., Any]:
    """``fn``, except that its first call raises ``error`` (a :class:`Hiccup` by default)."""
    calls = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise error or Hiccup("the step failed")
        return fn(*args, **kwargs)

    return wrapper


def answers(store: Store) -> list[tuple[str, str | None]]:
    return [tuple(r) for r in store.db.execute("select external_id, outcome from answers order by id").fetchall()]


def actions(store: Store, case_id: int, action: str) -> int:
    return sum(1 for e in store.audit_trail(case_id) if e.action == action)


def test_a_yes_whose_handling_failed_half_way_is_acted_on_once_when_it_comes_again(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    config = dialogue_config()
    case_id, question = proactive_question(store, config)
    # The "yes" step escalates to the courier, then leaves a note: the note fails, after the escalation.
    monkeypatch.setattr(store, "add_note", fails_once(store.add_note))
    at = NOW + timedelta(hours=1)
    with pytest.raises(Hiccup):
        handle_reply(store, config, channel="sms", external_id="SM1", sender=PHONE, text="YES please", now=at)
    # Nothing half-done is left behind for the retry to repeat, and the reply is not taken as seen.
    assert escalations(store, case_id) == []
    assert rows.get_question(store, question.id).status == "open"  # type: ignore[union-attr]
    assert answers(store) == []

    result = handle_reply(store, config, channel="sms", external_id="SM1", sender=PHONE, text="YES please", now=at)
    assert result["outcome"] == "answered"
    # A redelivery after the success is still a duplicate.
    assert handle_reply(store, config, channel="sms", external_id="SM1", sender=PHONE, text="YES please",
                        now=at) == {"outcome": "duplicate"}
    assert len(escalations(store, case_id)) == 1
    assert [n.text for n in store.notes(case_id)] == ["The customer asked for a redelivery (“YES please”)."]
    answered = rows.get_question(store, question.id)
    assert answered.status == "answered" and "escalated to courier" in answered.action  # type: ignore[union-attr,operator]
    assert actions(store, case_id, "dialogue.answered") == 1
    assert answers(store) == [("SM1", "answered")]


def test_a_stop_the_sms_webhook_failed_on_is_honoured_when_twilio_sends_it_again(
        inbound: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    store, config = inbound["store"], inbound["config"]
    case_id, question = ask_redelivery(store, config, utcnow())
    deliver(store, config)
    busy = sqlite3.OperationalError("database is locked")
    monkeypatch.setattr(responders.dialogue, "opt_out", fails_once(responders.dialogue.opt_out, busy))
    first = post_sms(inbound, "STOP", "SMstop")
    assert first.status_code == 503 and first.headers["retry-after"]
    assert store.get_customer("C1").opt_out == []  # type: ignore[union-attr]
    assert rows.get_question(store, question.id).status == "open"  # type: ignore[union-attr]
    assert answers(store) == []

    assert post_sms(inbound, "STOP", "SMstop").status_code == 200  # Twilio (or the operator) sends it again
    assert post_sms(inbound, "STOP", "SMstop").status_code == 200  # ... and once more: a duplicate now
    assert {"all", "sms", "email", "dm"} <= set(store.get_customer("C1").opt_out)  # type: ignore[union-attr]
    assert rows.get_question(store, question.id).status == "opted_out"  # type: ignore[union-attr]
    assert actions(store, case_id, "customer.opt_out") == 1
    assert answers(store) == [("SMstop", "opted out")]


def test_a_dm_answer_whose_handling_failed_is_read_again_by_the_next_scan(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    config = dialogue_config()
    case_id, jane = janes_case(store, config)
    scan_mentions(store, config, NOW)  # the job's first run: from now on
    question = ask(store, config, store.get_case(case_id), "redeliver", channels=["sms"], actor="sam",  # type: ignore[arg-type]
                   kind="outreach", key="redeliver-1", now=NOW, automatic=False)
    assert question is not None
    deliver(store, config)
    yes = post(store, config, "jane-2", "yes please", NOW + timedelta(hours=1), in_reply_to=jane.external_id)
    monkeypatch.setattr(store, "add_note", fails_once(store.add_note))
    with pytest.raises(Hiccup):
        scan_mentions(store, config, NOW + timedelta(hours=1))
    assert escalations(store, case_id) == []
    assert rows.get_question(store, question.id).status == "open"  # type: ignore[union-attr]
    assert int(store.get_cursor(MENTIONS_CURSOR)) < yes.id  # type: ignore[arg-type]  # not past the failed post

    assert scan_mentions(store, config, NOW + timedelta(hours=1)) == 1
    assert scan_mentions(store, config, NOW + timedelta(hours=1)) == 0
    assert rows.get_question(store, question.id).answer_kind == "yes"  # type: ignore[union-attr]
    assert len(escalations(store, case_id)) == 1
    assert [n.text for n in store.notes(case_id)] == ["The customer asked for a redelivery (“yes please”)."]
    assert actions(store, case_id, "dialogue.answered") == 1
    assert int(store.get_cursor(MENTIONS_CURSOR)) == yes.id  # type: ignore[arg-type]


def test_a_post_that_can_never_be_handled_goes_to_a_person_and_holds_up_no_other(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    config = dialogue_config()
    case_id, jane = janes_case(store, config)
    scan_mentions(store, config, NOW)
    ask(store, config, store.get_case(case_id), "redeliver", channels=["sms"], actor="sam",  # type: ignore[arg-type]
        kind="outreach", key="redeliver-1", now=NOW, automatic=False)
    deliver(store, config)
    post(store, config, "jane-2", "yes please", NOW + timedelta(hours=1), in_reply_to=jane.external_id)
    post(store, config, "jane-3", "STOP", NOW + timedelta(hours=2), in_reply_to=jane.external_id)
    real = responders.dialogue.handle_reply

    def broken_for_jane_2(store: Store, config: Any, **kwargs: Any) -> Any:
        if kwargs["external_id"] == "jane-2":
            raise Hiccup("a bug in a step")
        return real(store, config, **kwargs)

    monkeypatch.setattr(responders.dialogue, "handle_reply", broken_for_jane_2)
    for _ in range(2):  # tried again on the next ticks (responders.dialogue.MENTION_TRIES: 3) ...
        with pytest.raises(Hiccup):
            scan_mentions(store, config, NOW + timedelta(hours=2))
        assert store.get_customer("C1").opt_out == []  # type: ignore[union-attr]
    # ... and then handed to a person, so that the next answer (a STOP) is read.
    assert scan_mentions(store, config, NOW + timedelta(hours=2)) == 2
    assert "sms" in store.get_customer("C1").opt_out  # type: ignore[union-attr]
    [note] = [n for n in store.notes(case_id) if "“yes please”" in n.text]
    assert "could not be acted on" in note.text and "Hiccup" in note.text
    assert ("jane-2", "handed to a person (handling it failed 3 times)") in answers(store)
    assert actions(store, case_id, "dialogue.needs_human") == 1


def test_the_classifier_reads_an_answer_outside_the_write_transaction(store: Store) -> None:
    """A classifier may take a while (a model on the CPU): it must not hold SQLite's write lock meanwhile."""
    config = dialogue_config()
    case_id, _ = proactive_question(store, config)
    seen: list[bool] = []

    class Watching:
        def classify(self, texts: list[str]) -> list[Any]:
            from conftest import labels

            seen.append(store.db.conn.in_transaction)
            return [labels("lost_or_missing", "negative", complaint=True, urgency=0.8) for _ in texts]

    result = handle_reply(store, config, channel="sms", external_id="SM9", sender=PHONE, text="what?",
                          now=NOW + timedelta(hours=1), classifier=Watching())
    assert result["outcome"] == "answered" and seen == [False]
    [audit] = [e for e in store.audit_trail(case_id) if e.action == "dialogue.answered"]
    assert "the classifier reads: negative complaint" in audit.details["why"]
