"""A DM whose handling keeps failing is kept for a person the way ``POST /sms`` and ``/mail`` keep one.

The worker's scan of DMs and public replies tries a post whose handling fails on
``MENTION_TRIES`` ticks in a row, then hands it to a person. It did so with a copy of its own
that recorded the post and left a note, but never honoured a STOP (the customer who asked us to
stop kept getting our messages until a person read the note) and left a case that waited on
the customer waiting, so nobody's queue showed it. The reply endpoints' keeping
(``responders.dialogue.keep_for_person``, now the one copy) does both. Each test makes the
handling of one post fail on every tick, on the store of each backend, and asserts what the
store holds after the third tick.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from doorstep import dialogue as rows
from doorstep.models import Mention
from doorstep.store import Store
from responders.dialogue import MENTION_TRIES, ask, scan_mentions
from test_dialogue import dialogue_config
from test_dialogue_audit import NOW, deliver, janes_case

import responders.dialogue


class Hiccup(RuntimeError):
    """A bug in a step, met on every try."""


def answers(store: Store) -> list[tuple[str, str | None, int | None]]:
    return [tuple(r) for r in store.db.execute("select external_id, outcome, case_id from answers order by id")]


def audits(store: Store, case_id: int, action: str) -> list[Any]:
    return [e for e in store.audit_trail(case_id) if e.action == action]


def waiting_on_the_customer(store: Store, case_id: int) -> None:
    case = store.get_case(case_id)
    store.update_case(case_id, case.version, "sam", status="pending_customer")  # type: ignore[union-attr]


def dm(store: Store, case_id: int, external_id: str, text: str) -> Mention:
    """Jane's DM on her case, as the listener stores it."""
    store.insert_mention(Mention(channel="x_dm", external_id=external_id, text=text,
                                 created_at=NOW + timedelta(hours=1), author_handle="jane", case_id=case_id))
    return store.mention_by_external_id("x_dm", external_id)  # type: ignore[return-value]


def fails_for(monkeypatch: pytest.MonkeyPatch, external_id: str) -> None:
    """Handling the post ``external_id`` fails on every tick (a bug in a step)."""
    real = responders.dialogue.handle_reply

    def broken(store: Store, config: Any, **kwargs: Any) -> Any:
        if kwargs["external_id"] == external_id:
            raise Hiccup("a bug in a step")
        return real(store, config, **kwargs)

    monkeypatch.setattr(responders.dialogue, "handle_reply", broken)


def fail_until_handed_over(store: Store, config: Any) -> None:
    at = NOW + timedelta(hours=1)
    for _ in range(MENTION_TRIES - 1):
        with pytest.raises(Hiccup):
            scan_mentions(store, config, at)
    assert scan_mentions(store, config, at) == 1


@pytest.mark.parametrize("asked", [True, False], ids=["answering-a-question", "no-question"])
def test_a_dm_stop_whose_handling_always_fails_still_opts_the_customer_out(
        store: Store, monkeypatch: pytest.MonkeyPatch, asked: bool) -> None:
    config = dialogue_config()
    case_id, _ = janes_case(store, config)
    scan_mentions(store, config, NOW)  # the job's first run: from now on
    question = None
    if asked:
        question = ask(store, config, store.get_case(case_id), "redeliver", channels=["sms"],  # type: ignore[arg-type]
                       actor="sam", kind="outreach", key="redeliver-1", now=NOW, automatic=False)
        deliver(store, config)
    waiting_on_the_customer(store, case_id)
    dm(store, case_id, "dm-stop", "STOP")
    fails_for(monkeypatch, "dm-stop")

    fail_until_handed_over(store, config)
    assert {"all", "sms", "email", "dm"} <= set(store.get_customer("C1").opt_out)  # type: ignore[union-attr]
    if question is not None:
        assert rows.get_question(store, question.id).status == "opted_out"  # type: ignore[union-attr]
    assert len(audits(store, case_id, "customer.opt_out")) == 1
    [(external_id, outcome, on_case)] = answers(store)
    assert (external_id, on_case) == ("dm-stop", case_id)
    assert outcome == f"handed to a person (handling it failed {MENTION_TRIES} times); opted out"
    [note] = [n for n in store.notes(case_id) if "STOP" in n.text]
    assert "could not be acted on" in note.text and "Hiccup" in note.text and "we opted them out" in note.text
    [audit] = audits(store, case_id, "dialogue.needs_human")
    assert "opted out" in audit.details["why"] and "Hiccup" in audit.details["error"]
    assert store.get_case(case_id).status == "open"  # type: ignore[union-attr]  # back with the team


def test_a_dm_answer_whose_handling_always_fails_goes_back_to_the_team(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    config = dialogue_config()
    case_id, _ = janes_case(store, config)
    scan_mentions(store, config, NOW)
    question = ask(store, config, store.get_case(case_id), "redeliver", channels=["sms"],  # type: ignore[arg-type]
                   actor="sam", kind="outreach", key="redeliver-1", now=NOW, automatic=False)
    assert question is not None
    deliver(store, config)
    waiting_on_the_customer(store, case_id)
    dm(store, case_id, "dm-yes", "yes please")
    fails_for(monkeypatch, "dm-yes")

    fail_until_handed_over(store, config)
    assert store.get_case(case_id).status == "open"  # type: ignore[union-attr]  # back with the team
    assert rows.get_question(store, question.id).status == "open"  # type: ignore[union-attr]  # not acted on
    assert store.get_customer("C1").opt_out == []  # type: ignore[union-attr]
    assert answers(store) == [("dm-yes", f"handed to a person (handling it failed {MENTION_TRIES} times)", case_id)]
    assert len([n for n in store.notes(case_id) if "“yes please”" in n.text]) == 1
    assert len(audits(store, case_id, "dialogue.needs_human")) == 1
