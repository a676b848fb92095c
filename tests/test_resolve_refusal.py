"""Resolving a case past messages that have not gone: the refusal names what is pending, and an
automatic message (a follow-up, an outreach message) does not hold the case up.

Browser check: a follow-up awaiting the lead's approval refused "Resolve and go to the next case" with
"Not resolved: 1 reply/escalation message(s) are pending or failed". Nothing of the kind was pending,
and the follow-up could never have gone out on a resolved case: the outbox and the Approvals page
re-check it first and cancel it ("the case is resolved", responders.automatic.recheck).
"""

from __future__ import annotations

import pytest

from doorstep.store import Store
from responders.outbox import enqueue

from test_console_apptest import _open_case, db, demo_template, sel, texts, xss_case  # noqa: F401 - fixtures


def _follow_up_awaiting_approval(db: Store, case_id: int) -> int:
    """A follow-up by e-mail that the demo's rules hold for approval (``[responders.approval]``)."""
    from doorstep.config import load_config
    from responders.automatic import record

    from test_console_apptest import DEMO_CONFIG

    message = enqueue(db, kind="follow_up", channel="email", text="Subject: hi\n\nDid your parcel arrive?",
                      actor="follow-up", idempotency_key=f"fu-approval-{case_id}", case_id=case_id,
                      target="mallory@example.com")
    held = record(db, load_config(DEMO_CONFIG), message, "follow_up")
    assert held.status == "awaiting_approval"
    return held.id  # type: ignore[return-value]


def _message(db: Store, case_id: int, kind: str, status: str, n: int = 0) -> int:
    message = enqueue(db, kind=kind, channel="email", text=f"Subject: x\n\n{kind} {n}", actor="ann",
                      idempotency_key=f"{kind}-{status}-{case_id}-{n}", case_id=case_id, target="someone@example.com")
    db.db.execute("update outbound_messages set status = ? where id = ?", [status, message.id])
    return message.id  # type: ignore[return-value]


def _errors(at) -> str:  # noqa: ANN001
    return " ".join(str(e.value) for e in at.error).replace("\\", "")


def test_a_follow_up_awaiting_approval_does_not_hold_up_resolve_and_next(db: Store) -> None:
    from responders.automatic import ApprovalError, approve

    case_id = xss_case(db)
    follow_up = _follow_up_awaiting_approval(db, case_id)
    at, _ = _open_case(db, "ann", case_id)
    at.button(key=f"resolve_next_{case_id}").click().run()
    assert not at.exception, at.exception
    assert "reply/escalation" not in _errors(at), _errors(at)
    assert db.get_case(case_id).status == "resolved"  # type: ignore[union-attr]
    # Said, not hidden: what becomes of it (on the next case's page, where the agent now is).
    assert f"case #{case_id} resolved; its 1 follow-up awaiting approval will not be sent while the case stays " \
           "resolved" in texts(at).replace("\\", ""), texts(at)
    # Why it need not hold the case up: approved now, it is cancelled, never sent.
    back, _ = _open_case(db, "ann", case_id)
    assert "the case is resolved, so approving cancels them unless it is reopened first" in \
        " ".join(str(i.value) for i in back.info), [i.value for i in back.info]
    with pytest.raises(ApprovalError, match="cancelled instead: the case is resolved"):
        approve(db, follow_up, "lee")


def test_the_refusal_counts_and_names_what_is_pending(db: Store) -> None:
    case_id = xss_case(db)
    _follow_up_awaiting_approval(db, case_id)
    _message(db, case_id, "escalation", "failed")
    _message(db, case_id, "reply", "queued", 1)
    _message(db, case_id, "reply", "queued", 2)
    at, _ = _open_case(db, "ann", case_id)
    at.button(key=f"resolve_next_{case_id}").click().run()
    assert db.get_case(case_id).status != "resolved"  # type: ignore[union-attr]
    shown = _errors(at)
    assert "Not resolved: 3 messages are pending or failed (1 escalation failed, 2 replies queued)" in shown, shown
    assert "follow-up" not in shown  # it does not hold the case up
    # "Set status": the same words, and the confirmation lists the same three.
    sel(at, f"status_sel_{case_id}").select("resolved")
    at.button(key=f"FormSubmitter:status_{case_id}-Set status").click().run()
    assert db.get_case(case_id).status != "resolved"  # type: ignore[union-attr]
    assert "Not resolved: 3 messages are pending or failed (1 escalation failed, 2 replies queued)" in _errors(at)
    [confirm] = [c for c in at.checkbox if c.key.startswith(f"resolve_anyway_{case_id}")]
    assert "Resolve even though 3 messages are not delivered (1 escalation failed, 2 replies queued)" in confirm.label
    confirm.check()
    sel(at, f"status_sel_{case_id}").select("resolved")
    at.button(key=f"FormSubmitter:status_{case_id}-Set status").click().run()
    assert db.get_case(case_id).status == "resolved"  # type: ignore[union-attr]
    assert "its 1 follow-up awaiting approval will not be sent while the case stays resolved" in \
        texts(at).replace("\\", ""), texts(at)


def test_set_status_resolves_past_a_follow_up_awaiting_approval_without_a_confirmation(db: Store) -> None:
    case_id = xss_case(db)
    _follow_up_awaiting_approval(db, case_id)
    at, _ = _open_case(db, "ann", case_id)
    assert not [c for c in at.checkbox if c.key.startswith(f"resolve_anyway_{case_id}")]
    sel(at, f"status_sel_{case_id}").select("resolved")
    at.button(key=f"FormSubmitter:status_{case_id}-Set status").click().run()
    assert not at.exception, at.exception
    assert db.get_case(case_id).status == "resolved"  # type: ignore[union-attr]


def test_pending_words_count_each_kind_in_its_state(db: Store) -> None:
    from console.case_view import pending_words, resolve_holds

    case_id = xss_case(db)
    follow_up = _follow_up_awaiting_approval(db, case_id)
    outreach = _message(db, case_id, "outreach", "queued")
    _record(db, outreach, "outreach")  # a rule's: re-checked before it goes, as the follow-up awaiting approval
    unrecorded = _message(db, case_id, "outreach", "queued", 1)  # no facts kept: nothing would stop it
    sending = _message(db, case_id, "follow_up", "sending")  # going out now: it cannot be called back
    _record(db, sending, "follow_up")
    retrying = _message(db, case_id, "reply", "queued", 3)
    db.db.execute("update outbound_messages set last_error = '451 try again later' where id = ?", [retrying])
    hold_up, retired = resolve_holds(db, case_id)
    assert [m["id"] for m in hold_up] == [unrecorded, sending, retrying]
    assert pending_words(hold_up) == "1 outreach message queued, 1 follow-up being sent, 1 reply retrying after an error"
    assert [m["id"] for m in retired] == [follow_up, outreach]
    assert pending_words(retired) == "1 follow-up awaiting approval, 1 outreach message queued"
    assert pending_words([*retired, *retired]) == "2 follow-ups awaiting approval, 2 outreach messages queued"


def _record(db: Store, message_id: int, rule: str) -> None:
    """The facts a rule keeps for its message (responders.automatic.record), its status left as it is."""
    db.db.execute("insert into automatic_messages (message_id, case_id, rule, approval) select id, case_id, ?, 'none' "
                  "from outbound_messages where id = ?", [rule, message_id])


def test_reopening_clears_resolved_at_and_resolving_again_records_the_new_time(db: Store) -> None:
    """PostgreSQL team audit: a case resolved at 04:04, reopened from Set status, kept resolved_at 04:04 (the
    dashboard counted it resolved while open), and resolved again at 04:26 it still said 04:04, so a late second
    resolution counted as on time. Reopening clears it; each resolution records its own time."""
    from datetime import datetime, timezone

    case_id = xss_case(db)
    stale = datetime(2026, 1, 1, tzinfo=timezone.utc)
    db.db.execute("update cases set status = 'resolved', resolved_at = ? where id = ?", [stale.isoformat(), case_id])
    at, _ = _open_case(db, "ann", case_id)
    sel(at, f"status_sel_{case_id}").select("open")
    at.button(key=f"FormSubmitter:status_{case_id}-Set status").click().run()
    assert not at.exception, at.exception
    reopened = db.get_case(case_id)
    assert reopened.status == "open" and reopened.resolved_at is None, reopened  # type: ignore[union-attr]
    db.db.execute("update cases set resolved_at = ? where id = ?", [stale.isoformat(), case_id])  # as old versions left it
    at, _ = _open_case(db, "ann", case_id)
    at.button(key=f"resolve_next_{case_id}").click().run()
    resolved = db.get_case(case_id)
    assert resolved.status == "resolved" and resolved.resolved_at > stale, resolved  # type: ignore[union-attr]
