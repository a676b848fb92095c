"""Console side of issue 13 part B: loud failures (case header, inbox row, resolve confirmation),
the approvals page, and the refused second reply with its explicit "Send anyway" (Streamlit AppTest)."""

from __future__ import annotations

from typing import Any

from doorstep.store import Store
from responders.outbox import enqueue

from test_console_apptest import _open_case, db, demo_template, page, sel, texts, xss_case  # noqa: F401 - fixtures


def _failed_escalation(db: Store, case_id: int) -> int:
    message = enqueue(db, kind="escalation", channel="email", text="Subject: x\n\nplease check", actor="ann",
                      idempotency_key=f"esc-fail-{case_id}", case_id=case_id, target="courier@ups.test")
    db.db.execute("update outbound_messages set status = 'failed', attempts = 6, last_error = '451 try again later' "
                  "where id = ?", [message.id])
    return message.id  # type: ignore[return-value]


def test_failed_escalation_shows_in_the_header_and_resolving_asks_for_confirmation(db: Store) -> None:
    """Failure 6: the escalation failed six times and the case could be resolved with no warning."""
    case_id = xss_case(db)
    _failed_escalation(db, case_id)
    at, _ = _open_case(db, "ann", case_id)
    assert any("Not delivered: escalation via e-mail to courier@ups.test is failed" in
               e.value.replace("\\", "").replace("\u2060", "") for e in at.error), [e.value for e in at.error]
    sel(at, f"status_sel_{case_id}").select("resolved")
    at.button(key=f"FormSubmitter:status_{case_id}-Set status").click().run()
    assert db.get_case(case_id).status != "resolved"  # type: ignore[union-attr]
    assert "pending or failed" in texts(at)
    sel(at, f"status_sel_{case_id}").select("resolved")
    [confirm] = [c for c in at.checkbox if c.key.startswith(f"resolve_anyway_{case_id}")]
    confirm.check()
    at.button(key=f"FormSubmitter:status_{case_id}-Set status").click().run()
    assert db.get_case(case_id).status == "resolved"  # type: ignore[union-attr]


def test_inbox_row_marks_the_failed_send(db: Store) -> None:
    case_id = xss_case(db)
    _failed_escalation(db, case_id)
    at = page("inbox", "ann", db)
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    frame = table.data if hasattr(table, "data") else table
    row = frame[frame["case"] == case_id]
    assert "⚠ escalation failed" in list(row["flags"])[0]


def test_approvals_page_approves_and_rejects(db: Store) -> None:
    from doorstep.config import load_config
    from responders.automatic import record

    from test_console_apptest import DEMO_CONFIG

    config = load_config(DEMO_CONFIG)  # approval on for e-mail follow-ups
    case_id = db.db.execute("select id from cases where link_confirmed = 1 and order_number is not null and status in "
                            "('new', 'open', 'pending_customer') order by id limit 1").fetchone()[0]
    ids = []
    for n in range(2):
        message = enqueue(db, kind="follow_up", channel="email", text=f"Subject: hi\n\nfollow-up {n}", actor="follow-up",
                          idempotency_key=f"fu-{n}", case_id=case_id, target="jane@example.com")
        ids.append(record(db, config, message, "follow_up").id)
    assert [r[0] for r in db.db.execute("select status from outbound_messages where id in (?, ?)", ids)] == [
        "awaiting_approval"] * 2
    at = page("approvals", "ann", db)
    assert not at.exception, at.exception
    assert "follow-up 0" in texts(at) and "follow-up 1" in texts(at)
    at.button(key=f"approve_{ids[0]}").click().run()
    at.button(key=f"reject_{ids[1]}").click().run()
    statuses = dict(db.db.execute("select id, status from outbound_messages where id in (?, ?)", ids).fetchall())
    assert statuses == {ids[0]: "queued", ids[1]: "cancelled"}
    actions = {(e.actor, e.action) for e in db.audit_trail(case_id)}
    assert {("ann", "automatic.approved"), ("ann", "automatic.rejected")} <= actions
    assert "Nothing waits for approval" in texts(at)


def test_approvals_page_says_when_approving_would_cancel_the_message(db: Store) -> None:
    """A follow-up held for approval on a case resolved since (resolving no longer waits for it) stayed on the
    Approvals page like any other, and "Approve" then cancelled it: the page says so before anyone clicks."""
    from doorstep.config import load_config
    from responders.automatic import record

    from test_console_apptest import DEMO_CONFIG

    config = load_config(DEMO_CONFIG)
    case_id = db.db.execute("select id from cases where link_confirmed = 1 and order_number is not null and status in "
                            "('new', 'open', 'pending_customer') order by id limit 1").fetchone()[0]
    message = enqueue(db, kind="follow_up", channel="email", text="Subject: hi\n\nfollow-up", actor="follow-up",
                      idempotency_key="fu-resolved", case_id=case_id, target="jane@example.com")
    record(db, config, message, "follow_up")
    db.db.execute("update cases set status = 'resolved' where id = ?", [case_id])
    at = page("approvals", "ann", db)
    assert not at.exception, at.exception
    warned = [w.value.replace("\\", "") for w in at.warning]
    assert any("Approving cancels it: the case is resolved" in w for w in warned), warned


def _walk(block: Any) -> list[str]:
    """The page's buttons and refusals in the order they are drawn."""
    out: list[str] = []
    for node in getattr(block, "children", {}).values():
        if getattr(node, "type", "") == "button":
            out.append(node.label)
        elif "already answered" in str(getattr(node, "value", "")).replace("\u2060", ""):
            out.append("refusal")
        out += _walk(node)
    return out


def test_second_reply_is_refused_in_the_composer_with_send_anyway(db: Store) -> None:
    """Failure 2 in the console: bob opened the case, ann answered, bob's reply is refused."""
    from doorstep.config import load_config
    from responders.outbox import queue_reply

    case_id = xss_case(db)
    bob, _ = _open_case(db, "bob", case_id)
    queue_reply(db, load_config(__import__("test_console_apptest").DEMO_CONFIG), case_id, "@mallory sorry!", "ann")
    bob.text_area(key=f"draft_{case_id}").input("@mallory we're on it")  # one form: sent with the click
    bob.button(key=f"send_{case_id}").click().run()
    assert "ann already answered @mallory's post" in texts(bob).replace("\u2060", "")
    # The refusal says it once: it read "Reply not queued: ann already answered ... Not queued: one answer ...".
    refusal = [e.value.replace("\\", "") for e in bob.error if "already answered" in e.value.replace("\u2060", "")]
    assert len(refusal) == 1 and refusal[0].lower().count("not queued") == 1, refusal
    assert "one answer per customer post" in refusal[0], refusal
    # Right under "Queue reply", above "Ask for details privately": drawn below it, it was off screen at 1366x768.
    order = _walk(bob.main)
    assert order.index("refusal") < order.index("Ask for details privately"), order
    assert [m.created_by for m in db.outbound_for_case(case_id)] == ["ann"]
    bob.button(key=f"send_anyway_{case_id}").click().run()
    assert [m.created_by for m in db.outbound_for_case(case_id)] == ["ann", "bob"]
    assert any(e.action == "reply.send_anyway" and e.actor == "bob" for e in db.audit_trail(case_id))


def test_a_message_waiting_for_approval_is_not_shown_as_failed(db: Store) -> None:
    """Final browser check, finding 3: an outreach SMS waiting on the Approvals page made the case header
    say "Not delivered" in red, as if it had failed."""
    case_id = xss_case(db)
    message = enqueue(db, kind="outreach", channel="sms", text="Shall we ask UPS to redeliver?", actor="proactive",
                      idempotency_key=f"await-{case_id}", case_id=case_id, target="+447700900283")
    db.db.execute("update outbound_messages set status = 'awaiting_approval' where id = ?", [message.id])
    at, _ = _open_case(db, "ann", case_id)
    assert not any("Not delivered" in e.value for e in at.error), [e.value for e in at.error]
    assert any("Waiting for approval" in i.value for i in at.info), [i.value for i in at.info]
