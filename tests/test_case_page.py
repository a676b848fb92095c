"""The case page built for answering (issue 17): the composer first and one form with its button,
feedback beside the button pressed, own writes never conflicting, quoted numbers that match
nothing, the timeline in the team's words, and the live parts never racing a click."""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta, timezone
from typing import Any

from doorstep.models import AuditEvent, Mention, utcnow
from doorstep.store import StaleCaseError, Store
from test_console_apptest import (  # noqa: F401 - fixtures
    DEMO_CONFIG, REPO, _open_case, db, demo_template, page, sel, texts, xss_case,
)


class _Posted:
    """A channel that accepts every post (the outbox's sender interface)."""

    def __init__(self) -> None:
        self.n = 0

    def find_existing(self, message: Any) -> None:
        return None

    def send(self, message: Any) -> str:
        self.n += 1
        return f"posted-{self.n}"


def _send_all(db: Store) -> int:
    from doorstep.config import load_config
    from responders.outbox import Outbox

    sender = _Posted()
    return Outbox(db, load_config(DEMO_CONFIG), senders={c: sender for c in ("x", "email", "mastodon", "bluesky")},
                  now=lambda: datetime.now(timezone.utc) + timedelta(minutes=5)).send_due()


# ------------------------------------------------------------------ item 3: own writes
def test_own_reply_sent_by_the_outbox_does_not_refuse_the_agents_next_action(db: Store) -> None:
    """Before: ann's reply was sent, the outbox set first response and status, and ann's next
    "Set status" failed with "case was changed by outbox since you opened it"."""
    case_id = xss_case(db)
    at, _ = _open_case(db, "ann", case_id)
    at.text_area(key=f"draft_{case_id}").input("@mallory so sorry, we're looking into it.")
    at.button(key=f"send_{case_id}").click().run()
    assert "reply queued" in texts(at)
    assert _send_all(db) == 1
    after_send = db.get_case(case_id)
    assert after_send is not None and after_send.first_response_at is not None  # the outbox changed the case
    assert any(e.actor == "outbox" and e.action == "case.update" for e in db.audit_trail(case_id))
    at.run()
    assert "changed by outbox" not in texts(at)
    sel(at, f"status_sel_{case_id}").select("resolved")
    at.button(key=f"FormSubmitter:status_{case_id}-Set status").click().run()
    assert db.get_case(case_id).status == "resolved", texts(at)  # type: ignore[union-attr]
    assert "status set to resolved" in texts(at) and "changed by" not in texts(at)


def test_the_status_choice_follows_the_stored_status_after_the_outbox_moved_it(db: Store) -> None:
    """A user check (2026-12-06): after ann's reply was sent the header said "open" and the Status choice
    under Actions still said "new" (the status when she opened the case); "Set status" without a look
    would have put the case back to new."""
    case_id = xss_case(db)
    at, _ = _open_case(db, "ann", case_id)
    assert sel(at, f"status_sel_{case_id}").value == "new"
    at.text_area(key=f"draft_{case_id}").input("@mallory so sorry, we're looking into it.")
    at.button(key=f"send_{case_id}").click().run()
    assert _send_all(db) == 1
    assert db.get_case(case_id).status == "open"  # type: ignore[union-attr]
    at.run()
    assert sel(at, f"status_sel_{case_id}").value == "open"
    at.button(key=f"FormSubmitter:status_{case_id}-Set status").click().run()
    assert db.get_case(case_id).status == "open", texts(at)  # type: ignore[union-attr]


def test_another_agents_change_to_the_same_field_is_still_a_conflict(db: Store) -> None:
    case_id = xss_case(db)
    at, _ = _open_case(db, "ann", case_id)
    current = db.get_case(case_id)
    assert current is not None
    db.update_case(case_id, current.version, "bob", status="pending_customer")
    sel(at, f"status_sel_{case_id}").select("resolved")
    at.button(key=f"FormSubmitter:status_{case_id}-Set status").click().run()
    assert db.get_case(case_id).status == "pending_customer"  # type: ignore[union-attr]
    assert "changed by bob" in texts(at)


def test_the_open_page_learns_of_a_colleagues_change_but_not_of_its_own(db: Store,
                                                                         monkeypatch: Any) -> None:
    """What the presence line's tick asks (console.case_view.changed_by_others): nothing while the
    stored case is the one drawn or changed only by the agent; who and which fields when bob changed it."""
    from console import case_view
    from doorstep import case_merge

    case_id = xss_case(db)
    case = db.get_case(case_id)
    assert case is not None
    held = {case_id: case_merge.hold(db, case)}
    monkeypatch.setattr(case_view, "_held_map", lambda: held)
    assert case_view.changed_by_others(db, case_id, "ann", case.version) is None
    own = db.update_case(case_id, case.version, "ann", status="open")
    assert case_view.changed_by_others(db, case_id, "ann", case.version) is None  # ann's own change
    db.update_case(case_id, own.version, "bob", assignee="bob")
    assert case_view.changed_by_others(db, case_id, "ann", case.version) == (["bob"], ["assignee"])
    drawn = db.get_case(case_id)
    assert drawn is not None and case_view.changed_by_others(db, case_id, "ann", drawn.version) is None


def test_the_open_page_learns_what_the_outbox_did_after_the_agents_own_reply(db: Store, monkeypatch: Any) -> None:
    """PostgreSQL team audit: after priya's own reply was sent, her open page still read "Status new · SLA: first
    response due in 5h14m" with no banner (the outbox's change on her behalf is hers, so it was no news), while
    its own timeline said the outbox had set the first response and the status. The tick now says so."""
    from console import case_view
    from doorstep import case_merge

    case_id = xss_case(db)
    case = db.get_case(case_id)
    assert case is not None
    held = {case_id: case_merge.hold(db, case)}
    monkeypatch.setattr(case_view, "_held_map", lambda: held)
    assert case_view.changed_for_me(db, case_id, "ann", case.version) is None
    db.update_case(case_id, case.version, "outbox", because={"message_id": 1, "message_by": "ann"}, status="open")
    assert case_view.changed_by_others(db, case_id, "ann", case.version) is None  # still not someone else's
    assert case_view.changed_for_me(db, case_id, "ann", case.version) == ["status"]
    assert case_view.changed_words(["status", "first_response_at", "next_response_due"]) == \
        "the status and the first response"
    drawn = db.get_case(case_id)
    assert drawn is not None and case_view.changed_for_me(db, case_id, "ann", drawn.version) is None


def test_a_colleagues_change_is_told_in_the_teams_words_not_the_fields_names() -> None:
    """A user check (two agents on one case, 2026-12-06): after priya relinked the order, sam's page said
    "priya changed courier, customer id, link confidence, link confirmed, link method, order number,
    tracking number". One relink is one change to the agent: the linked order."""
    from console.case_view import changed_words

    relink = ["courier", "customer_id", "link_confidence", "link_confirmed", "link_method", "order_number",
              "tracking_number"]
    assert changed_words(relink) == "the linked order"
    assert changed_words(["assignee"]) == "the assignee"
    assert changed_words(["status", "first_response_at", "resolution_due", "resolved_at"]) == "the status and the first response"
    assert changed_words(["priority", "priority_band", "priority_reasons"]) == "the priority"
    assert changed_words(["complaint", "intent", "sentiment"]) == "the labels"
    assert changed_words(["assignee", "order_number", "link_method"]) == "the assignee and the linked order"
    assert changed_words(["snoozed_until", "status"]) == "the status and the snooze"
    # Two-brand browser audit: "lead changed the status and closed as since you opened this case".
    assert changed_words(["status", "closed_as", "resolved_at"]) == "the status"
    assert changed_words([]) == "the case"
    assert changed_words(["some_new_field"]) == "some new field"  # a field added later still says something
    # After "Show their changes", the header says the same (it said "This case was changed by priya").
    from console.case_view import changed_since_note

    assert changed_since_note(["priya"], {"assignee", *relink}).startswith(
        "priya changed the assignee and the linked order since you opened this case;")
    assert changed_since_note([], {"mention_count"}).startswith("A new post came in")


def test_another_agents_change_to_another_field_does_not_block(db: Store) -> None:
    """bob assigned the case; ann's status change touches another field and goes through."""
    case_id = xss_case(db)
    at, _ = _open_case(db, "ann", case_id)
    current = db.get_case(case_id)
    assert current is not None
    db.update_case(case_id, current.version, "bob", assignee="bob")
    sel(at, f"status_sel_{case_id}").select("pending_customer")
    at.button(key=f"FormSubmitter:status_{case_id}-Set status").click().run()
    after = db.get_case(case_id)
    assert after is not None and after.status == "pending_customer" and after.assignee == "bob"


def test_merge_rules_in_the_core(db: Store) -> None:
    from doorstep import case_merge

    case_id = xss_case(db)
    case = db.get_case(case_id)
    assert case is not None
    held = case_merge.hold(db, case)
    # The outbox on ann's behalf, then a new post written by the pipeline (no audit) changing the priority.
    db.update_case(case_id, case.version, "outbox", because={"message_id": 1, "message_by": "ann"}, status="open")
    db.db.execute("update cases set priority = priority + 5, version = version + 1 where id = ?", [case_id])
    assert case_merge.update_case_merging(db, held, "ann", assignee="ann").assignee == "ann"
    assert case_merge.update_case_merging(db, held, "ann", status="resolved").status == "resolved"
    for field, value in (("priority", 1.0),):
        try:
            case_merge.update_case_merging(db, held, "ann", **{field: value})
        except StaleCaseError:
            pass
        else:  # pragma: no cover - the assertion message is the point
            raise AssertionError("a field changed with no audit event (a new post) must still conflict")
    try:
        case_merge.update_case_merging(db, held, "bob", status="open")
    except StaleCaseError:
        pass
    else:  # pragma: no cover
        raise AssertionError("ann's changes are bob's conflict")


# ------------------------------------------------------------------ item 1: the composer
def test_composer_comes_before_the_thread_and_is_one_form_with_its_button(db: Store) -> None:
    case_id = xss_case(db)
    at, _ = _open_case(db, "ann", case_id)
    [left] = [c for c in at.columns if any(getattr(e, "label", None) == "Reply text" for e in c)]
    order = [str(getattr(e, "label", "") or "") for e in left]
    assert order.index("Reply text") < next(i for i, v in enumerate(order) if v.startswith("Posts and thread"))
    box = at.text_area(key=f"draft_{case_id}")
    assert box.proto.max_chars == 280  # the browser counts as the agent types (X, links off: the default)
    assert box.proto.form_id  # in a form: the words arrive with the click on "Queue reply"
    [send] = [b for b in at.button if b.key == f"send_{case_id}"]
    assert send.proto.form_id == box.proto.form_id and not send.disabled  # never drawn disabled for an empty draft


def test_queue_reply_with_nothing_written_says_so_beside_the_button(db: Store) -> None:
    case_id = xss_case(db)
    at, _ = _open_case(db, "ann", case_id)
    at.button(key=f"send_{case_id}").click().run()
    assert "Nothing to send" in " ".join(e.value for e in at.error).replace("\\", "")
    assert db.outbound_for_case(case_id) == []


def test_confirmations_are_drawn_next_to_the_action(db: Store) -> None:
    case_id = xss_case(db)
    at, _ = _open_case(db, "ann", case_id)
    at.text_area(key=f"draft_{case_id}").input("@mallory we're on it")
    at.button(key=f"send_{case_id}").click().run()
    flat = [str(getattr(e, "value", "")) for e in at.main]
    queued = next(i for i, v in enumerate(flat) if "reply queued" in v)
    title = next(i for i, v in enumerate(flat) if v == f"Case #{case_id}")
    reply_box = next(i for i, e in enumerate(at.main) if getattr(e, "label", None) == "Reply text")
    assert queued > reply_box > title  # under the composer, not at the page's top
    sel(at, f"status_sel_{case_id}").select("pending_customer")
    at.button(key=f"FormSubmitter:status_{case_id}-Set status").click().run()
    flat = [str(getattr(e, "value", "")) for e in at.main]
    status_msg = next(i for i, v in enumerate(flat) if "status set to pending" in v.replace("\\", ""))
    status_box = next(i for i, e in enumerate(at.main) if getattr(e, "label", None) == "Status")
    snooze_box = next(i for i, e in enumerate(at.main) if getattr(e, "label", None) == "Snooze for")
    assert status_box < status_msg < snooze_box  # between "Set status" and the next form


def test_a_template_longer_than_the_channel_limit_is_not_cut_silently(db: Store, monkeypatch: Any) -> None:
    import responders.templates as templates

    monkeypatch.setattr(templates, "render_template", lambda *a, **k: "x" * 300)
    case_id = xss_case(db)
    at, _ = _open_case(db, "ann", case_id)
    at.button(key=f"fill_{case_id}").click().run()
    assert "over the x limit of 280" in " ".join(e.value for e in at.error).replace("\\", "")
    assert at.text_area(key=f"draft_{case_id}").value == ""


# ------------------------------------------------------------------ item 4: quoted numbers
def test_an_order_number_the_customer_quotes_that_matches_nothing_is_shown(db: Store) -> None:
    case_id = xss_case(db)
    db.insert_mention(Mention(channel="x", external_id="quote-1", created_at=utcnow(), author_handle="mallory",
                              text="@LarkspurHelp it's order ORD-2026-001291, still nothing", case_id=case_id))
    known = db.db.execute("select number from orders where number like 'ORD-%' limit 1").fetchone()
    if known:
        db.insert_mention(Mention(channel="x", external_id="quote-2", created_at=utcnow(), author_handle="mallory",
                                  text=f"and {known[0]} too", case_id=case_id))
    at, _ = _open_case(db, "ann", case_id)
    warnings = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "customer quoted ORD-2026-001291: no such order" in warnings
    if known:
        assert f"quoted {known[0]}" not in warnings  # an order we have is not flagged


# ------------------------------------------------------------------ item 5: the timeline
def _event(action: str, actor: str = "outbox", **details: Any) -> AuditEvent:
    return AuditEvent(id=1, at=utcnow(), actor=actor, action=action, case_id=1, details=details)


def test_timeline_sentences() -> None:
    from console.timeline import sentence
    from responders.outbox import OutboundMessage

    message = OutboundMessage(id=9, kind="reply", channel="x", target="sienna_l", text="hi", status="queued",
                              idempotency_key="t-1")
    when = lambda t: "14:05"  # noqa: E731
    messages = {9: message}
    assert sentence(_event("outbox.retry_later", message_id=9, attempts=2, error="429", rate_limited=True,
                           retry_at="2026-12-04T14:05:00+00:00"), messages, when) == \
        "Reply to @sienna_l on X failed (rate limited), will retry at 14:05"
    assert sentence(_event("link.unconfirmed", "ann", order_number="ORD-2026-000101"), messages, when).startswith(
        "ann linked order ORD-2026-000101")
    assert sentence(_event("outbox.sent", message_id=9), messages, when) == "Reply to @sienna_l on X sent"
    # A retry only queues the message again (outbound audit, 2026-12-06: "ann sent the reply again", then it failed).
    assert sentence(_event("outbox.retry", "ann", message_id=9), messages, when) == \
        "ann queued reply to @sienna_l on X again, to be sent"
    assert sentence(_event("case.update", "outbox", status="open", because={"message_by": "ann"}), messages,
                    when) == "The outbox set the status to open (after ann's reply was sent)"
    assert sentence(_event("case.update", "bob", assignee="ann"), messages, when) == "bob assigned the case to ann"
    assert sentence(_event("case.split", "ann", mention_id=4, new_case=12), messages, when) == \
        "ann split post 4 into a new case #12"
    assert sentence(_event("something.new", "ann"), messages, when) == "ann: something new"  # never blank
    # A post matched to no order (the linker's method "none") read "(matched by none)"; a match says how.
    assert sentence(_event("case.open", "pipeline", link="none"), messages, when) == "A new post opened this case"
    assert sentence(_event("case.open", "pipeline", link="order_number"), messages, when) == \
        "A new post opened this case (matched by order number)"



def test_a_case_we_opened_for_a_parcel_says_so() -> None:
    """A user check (2026-12-06): a proactive case (a parcel with two failed attempts, no post yet) said
    "confirmed (its customer quoted the tracking number)", and its timeline "proactive opened this case proactively"."""
    from console.timeline import sentence
    from doorstep.linking import describe_link
    from doorstep.models import Case

    case = Case(id=645, status="new", channel=None, order_number="105100", tracking_number="1Z0V", customer_id="C1",
                link_method="tracking_number", link_confidence=1.0, link_confirmed=True)
    assert describe_link(case) == "order 105100 · confirmed (we opened this case for its parcel)"
    opened = _event("case.open.proactive", "proactive", reason="attempt_failed", tracking_number="1Z0V",
                    event_at="2026-12-01T13:46:00+00:00")
    assert sentence(opened, {}, lambda t: "13:46") == "Doorstep opened this case for parcel 1Z0V (failed delivery attempt)"
    assert sentence(_event("dialogue.answered", "dialogue", channel="sms", answer="YES", understood="yes"), {},
                    lambda t: "") == "The customer answered by SMS: “YES”, read as yes"  # not "on sms"
    # its outreach message is "by Doorstep", not "by proactive"
    from console.timeline import actor_name

    assert actor_name("proactive", start=False) == "Doorstep" and actor_name("follow-up", start=False) == "the follow-up"



def test_a_proactive_case_page_says_no_post_yet_instead_of_an_empty_thread(db: Store) -> None:
    from doorstep.models import Case

    now = utcnow()
    case_id = db.insert_case(Case(status="new", priority=40.0, brand="Larkspur Home", intent="late_delivery",
                                  opened_at=now, last_activity_at=now))
    at, _ = _open_case(db, case_id=case_id)
    assert "No post on this case yet: Doorstep opened it for the customer's parcel." in texts(at)
    assert not [e for e in at.expander if e.label.startswith("Posts and thread")]


def test_a_relink_reads_as_one_sentence_on_the_timeline(db: Store) -> None:
    """A user check (2026-12-06): a relink showed "priya linked order 104210, NOT confirmed (...)" and under it
    "priya set order to 104210, customer to C00444, tracking number to 1Z..., courier to UPS, link method to agent,
    link confidence to 0.5, order link confirmed to False": the store's fields and an internal customer id."""
    from console.timeline import lines, sentence
    from doorstep.config import load_config
    from doorstep.linking import override_link

    when = lambda t: "10:12"  # noqa: E731
    case_id = xss_case(db)
    case = db.get_case(case_id)
    assert case is not None
    number = db.db.execute("select number from orders where customer_id is not null and customer_id != ? "
                           "order by number limit 1", [case.customer_id or ""]).fetchone()[0]
    override_link(db, case_id, case.version, "priya", order_number=number)  # another customer's order
    said = [text for _, text in lines(db.audit_trail(case_id), [], {}, load_config(DEMO_CONFIG), when)]
    told = [text for text in said if number in text]
    assert told == [f"priya linked order {number}, NOT confirmed (its customer is not the author)"], said
    assert not [text for text in said if "link method" in text or "link confidence" in text], said
    # Stamped to the second each: the link event may fall in the next second; it still says the relink.
    update, link = [e for e in db.audit_trail(case_id) if e.action in ("case.update", "link.unconfirmed")][-2:]
    link = link.model_copy(update={"at": update.at + timedelta(seconds=1)})  # type: ignore[operator]
    again = [text for _, text in lines([update, link], [], {}, load_config(DEMO_CONFIG), when)]
    assert again == [f"priya linked order {number}, NOT confirmed (its customer is not the author)"], again
    relink = {"order_number": "104210", "customer_id": "C00444", "tracking_number": "1Z3UWMKL6696368396",
              "courier": "UPS", "link_method": "agent", "link_confidence": 0.5, "link_confirmed": False}
    # The author's own order: no link event, so the update says it, in words.
    confirmed = {**relink, "link_confidence": 1.0, "link_confirmed": True}
    assert sentence(_event("case.update", "priya", **confirmed), {}, when) == \
        "priya linked order 104210 (parcel 1Z3UWMKL6696368396 with UPS), confirmed"
    assert sentence(_event("case.update", "priya", order_number=None, customer_id=None, tracking_number=None,
                           link_method="agent", link_confidence=1.0, link_confirmed=True), {}, when) == \
        "priya removed the linked order"
    # Other fields changed with it are still told.
    assert sentence(_event("case.update", "priya", status="open", **confirmed), {}, when) == \
        "priya linked order 104210 (parcel 1Z3UWMKL6696368396 with UPS), confirmed; set status to open"


def test_an_alert_on_the_timeline_is_said_in_words() -> None:
    """A user check (2026-12-06): a VIP's complaint showed "alert:vip_author: alert new" and
    "alert:vip_author queued: alert to ... by e-mail" on the case's timeline: the rule's key and the action's."""
    from console.timeline import sentence
    from responders.outbox import OutboundMessage

    when = lambda t: "10:34"  # noqa: E731
    email = OutboundMessage(id=7, kind="alert", channel="email", target="care-lead@shop.example", text="x",
                            status="queued", idempotency_key="a-1")
    fired = sentence(_event("alert.new", "alert:vip_author", rule="vip_author", subject="s", why="w"), {7: email}, when)
    assert fired == "The VIP customer alert fired"
    assert sentence(_event("alert.update", "alert:sla_breach", rule="sla_breach"), {}, when) == \
        "The SLA alert fired again"
    assert sentence(_event("outbox.queue.alert", "alert:vip_author", message_id=7), {7: email}, when) == \
        "The VIP customer alert queued: alert to care-lead@shop.example by e-mail"
    assert sentence(_event("alert.new", "alert:some_new_rule"), {}, when) == "The some new rule alert fired"
    # Outbound messages say who queued each: "by the VIP customer alert", not "by alert:vip_author".
    from console.timeline import actor_name

    assert actor_name("alert:vip_author", start=False) == "the VIP customer alert"
    assert actor_name("outbox", start=False) == "the outbox" and actor_name("ann", start=False) == "ann"


def test_case_page_timeline_reads_as_sentences_and_raw_events_are_for_leads(db: Store) -> None:
    case_id = xss_case(db)
    at, _ = _open_case(db, "ann", case_id)
    at.text_area(key=f"draft_{case_id}").input("@mallory we're on it")
    at.button(key=f"send_{case_id}").click().run()
    shown = texts(at).replace("\u2060", "")
    assert "ann queued: reply to @mallory on X" in shown
    assert "outbox.queue.reply" not in shown  # no raw log for an agent
    assert not [e for e in at.expander if e.label.startswith("Raw audit events")]
    lead, _ = _open_case(db, "lee", case_id)
    [raw] = [e for e in lead.expander if e.label.startswith("Raw audit events")]
    assert not raw.caption  # closed: its lines are drawn when a lead opens it (issue 17, sixth round)
    lead.session_state[f"raw_audit_open_{case_id}"] = True
    lead.run()
    [raw] = [e for e in lead.expander if e.label.startswith("Raw audit events")]
    assert "outbox.queue.reply" in " ".join(c.value for c in raw.caption).replace("\\", "")


# ------------------------------------------------------------------ items 2 and 6: live parts
def test_live_parts_never_run_beside_a_click() -> None:
    """Fragment ticks (presence, inbox) and clicks must not run on two script threads at once: with
    fast reruns a finishing tick's end-of-run trigger reset can swallow the click's submit."""
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["runner"]["fastReruns"] is False


def test_presence_heartbeat_is_written_every_half_minute_not_every_tick(db: Store, monkeypatch: Any) -> None:
    from doorstep import presence

    case_id = xss_case(db)
    writes: list[str] = []
    real = presence.touch
    monkeypatch.setattr(presence, "touch", lambda store, cid, user, **kw: (writes.append(user), real(store, cid, user, **kw)))
    at, _ = _open_case(db, "ann", case_id)
    for _ in range(3):
        at.run()
    assert writes == ["ann"]


def test_inbox_change_mark_moves_on_a_new_case_and_stays_still_when_idle(db: Store) -> None:
    from console.inbox import change_mark
    from doorstep.models import Case

    before = change_mark(db)
    assert change_mark(db) == before
    db.insert_case(Case(status="new", priority=500.0, channel="x", author_handle="loud", opened_at=utcnow(),
                        last_activity_at=utcnow()))
    assert change_mark(db)[0] > before[0]


def test_next_and_previous_follow_the_inbox_order() -> None:
    from console.case_view import neighbour

    assert neighbour([5, 9, 2], 9, 1) == 2 and neighbour([5, 9, 2], 9, -1) == 5
    assert neighbour([5, 9, 2], 2, 1) is None and neighbour([5, 9, 2], 7, 1) == 5 and neighbour([], 1, 1) is None


# --------------------------------------------- the composer's channel (issue 17, defect)
def _webhook_case(db: Store, customer_id: str | None) -> int:
    """A case opened by a post that came in by the webhook (no reply goes back that way)."""
    from doorstep.models import Case

    now = utcnow()
    case_id = db.insert_case(Case(status="new", priority=50.0, channel="webhook", author_handle="wh_customer",
                                  opened_at=now, last_activity_at=now, first_response_due=now + timedelta(hours=1),
                                  resolution_due=now + timedelta(days=1), mention_count=1, customer_id=customer_id,
                                  link_confirmed=customer_id is not None))
    db.insert_mention(Mention(channel="webhook", external_id=f"wh-{case_id}", text="my parcel never came",
                              created_at=now, author_handle="wh_customer", case_id=case_id))
    return case_id


def test_a_webhook_case_is_answered_by_e_mail_and_the_composer_says_why(db: Store) -> None:
    """Before: the composer defaulted to "webhook", and Queue reply failed with "cannot reply on channel"."""
    from doorstep.models import Customer

    db.upsert_customers([Customer(id="C-wh", name="Wren Hale", email="wren@example.com")])
    case_id = _webhook_case(db, "C-wh")
    at, _ = _open_case(db, "ann", case_id)
    radio = at.radio(key=f"reply_channel_{case_id}")
    assert radio.options == ["e-mail"] and radio.value == "email"  # the team's word; the value stays the key
    assert "Webhook posts cannot be answered there; replying by e-mail" in texts(at)
    at.text_area(key=f"draft_{case_id}").input("So sorry, we are on it.")
    at.button(key=f"send_{case_id}").click().run()
    assert "reply queued" in texts(at), texts(at)
    [message] = db.outbound_for_case(case_id)
    assert message.channel == "email" and message.target == "wren@example.com"


def test_a_case_no_channel_can_answer_offers_no_send(db: Store) -> None:
    """No customer, so no e-mail address: the composer says so instead of a Queue reply that fails."""
    case_id = _webhook_case(db, None)
    at, _ = _open_case(db, "ann", case_id)
    assert not [r for r in at.radio if r.key == f"reply_channel_{case_id}"]
    assert not [b for b in at.button if b.key == f"send_{case_id}"]
    shown = texts(at)
    assert "No reply can be sent on this case" in shown
    assert "webhook posts cannot be answered there" in shown and "no email address known" in shown


# --------------------------------------------- a proactive case names no author (uxcheck)
def test_a_proactive_case_does_not_say_its_own_customers_order_belongs_to_someone_else(db: Store) -> None:
    """Before: a case we opened ourselves (a troubled parcel, no post, so no author) showed "Order N
    belongs to <its customer>, not to the author @?. Never put its details in a public reply." on
    its confirmed order: an alarm about a stranger where there is none."""
    from doorstep.linking import order_owner_is_author
    from doorstep.models import Case

    number, customer_id = db.db.execute("select number, customer_id from orders order by number limit 1").fetchone()
    now = utcnow()
    case_id = db.insert_case(Case(status="new", priority=40.0, channel=None, customer_id=customer_id,
                                  order_number=number, link_method="tracking_number", link_confidence=1.0,
                                  link_confirmed=True, opened_at=now, last_activity_at=now,
                                  first_response_due=now + timedelta(hours=1), resolution_due=now + timedelta(days=1)))
    case = db.get_case(case_id)
    assert case is not None and order_owner_is_author(db, case) is None  # no author: no way to tell
    at, _ = _open_case(db, "ann", case_id)
    assert "not to the author" not in texts(at) and "Never put its details" not in texts(at)
    # A post by someone else about that order still raises the alarm.
    stranger = case.model_copy(update={"channel": "x", "author_handle": "not_the_customer_42"})
    assert order_owner_is_author(db, stranger) is False


def test_the_composer_names_the_channel_it_does_not_offer(db: Store) -> None:
    """Before: "Not offered: The customer's contact details come from an unconfirmed order: confirm it
    first." left the agent to guess what was not offered (e-mail) and why the radio had one choice."""
    from doorstep.models import Case

    number, customer_id = db.db.execute("select number, customer_id from orders order by number limit 1").fetchone()
    now = utcnow()
    case_id = db.insert_case(Case(status="new", priority=60.0, channel="x", author_handle="guessed_buyer",
                                  customer_id=customer_id, order_number=number, link_method="recent_order",
                                  link_confidence=0.4, link_confirmed=False, opened_at=now, last_activity_at=now,
                                  first_response_due=now + timedelta(hours=1), resolution_due=now + timedelta(days=1),
                                  mention_count=1))
    db.insert_mention(Mention(channel="x", external_id=f"nf-{case_id}", text="@LarkspurHelp where is my parcel?",
                              created_at=now, author_handle="guessed_buyer", case_id=case_id))
    at, _ = _open_case(db, "ann", case_id)
    assert at.radio(key=f"reply_channel_{case_id}").options == ["X"]
    assert ("Not offered: e-mail (the customer's contact details come from an unconfirmed order: confirm it first)."
            in texts(at)), texts(at)


def test_timeline_puts_no_handle_sign_on_a_slack_or_webhook_target() -> None:
    """Before: "Alert to @$SLACK_ALERTS_WEBHOOK on slack sent": a Slack webhook read as an X handle."""
    from console.timeline import sentence
    from responders.outbox import OutboundMessage

    when = lambda t: "14:05"  # noqa: E731
    messages = {n: OutboundMessage(id=n, kind="alert", channel=channel, target=target, text="hi", status="sent",
                                   idempotency_key=f"t-{n}")
                for n, channel, target in [(1, "slack", "$SLACK_ALERTS_WEBHOOK"), (2, "apprise", "$CARE_APPRISE"),
                                           (3, "webhook", "https://hooks.example/c"), (4, "mastodon", "ann@social.ex"),
                                           (5, "x_dm", "sienna_l")]}
    said = [sentence(_event("outbox.sent", message_id=n), messages, when) for n in sorted(messages)]
    # A configured destination by what it is to the team, never its $NAME (browser check, 2026-12-07).
    assert said == ["Alert to the alerts channel on Slack sent", "Alert to the alerts channel by Apprise sent",
                    "Alert to https://hooks.example/c by webhook sent", "Alert to @ann@social.ex on Mastodon sent",
                    "Alert to @sienna_l by X direct message sent"]


def test_a_direct_message_names_the_customer_by_handle_not_by_network_id() -> None:
    """Before: an X direct message goes to the customer's numeric user id (what the X API takes) and
    the timeline read "Reply to @1849302 on x_dm sent": nobody on the team knows a customer by that."""
    from console.timeline import recipient, sentence
    from responders.outbox import OutboundMessage

    when = lambda t: "14:05"  # noqa: E731
    x_dm = OutboundMessage(id=1, kind="reply", channel="x_dm", target="1849302", text="hi", status="sent",
                           idempotency_key="dm-1")
    chat = OutboundMessage(id=2, kind="reply", channel="bluesky_dm", target="did:plc:sienna", text="hi",
                           status="sent", idempotency_key="dm-2")
    handles = {"1849302": "janev", "did:plc:sienna": "sienna.bsky.social"}
    said = [sentence(_event("outbox.sent", message_id=n), {1: x_dm, 2: chat}, when, handles) for n in (1, 2)]
    assert said == ["Reply to @janev by X direct message sent", "Reply to @sienna.bsky.social by Bluesky chat sent"]
    assert recipient(x_dm, {}) == "@1849302"  # no post of theirs on the case: the id, not a guess


def test_a_post_without_handle_or_followers_says_neither() -> None:
    """Before: a courier tracking page's post (by the webhook: a name, no handle, no followers) read
    "Amelia Fraser @? · 0 followers · webhook · ..." in the thread."""
    from console.case_view import post_byline

    when = lambda t: "Sat 05 Dec 01:18"  # noqa: E731
    page_post = Mention(channel="webhook", external_id="wh-1", text="parcel not delivered", created_at=utcnow(),
                        author_name="Amelia Fraser")
    assert post_byline(page_post, when) == "Amelia Fraser · webhook · Sat 05 Dec 01:18"
    x_post = Mention(channel="x", external_id="1", text="hi", created_at=utcnow(), author_name="Alice Stewart",
                     author_handle="astewart17", author_followers=1292)
    # The network as the team names it ("X", "Bluesky", "X direct message"), not its key ("x", "x_dm").
    assert post_byline(x_post, when) == "Alice Stewart @astewart17 · 1,292 followers · X · Sat 05 Dec 01:18"
    ours = x_post.model_copy(update={"outbound": True, "author_followers": 0})
    assert post_byline(ours, when) == "Alice Stewart @astewart17 · X · Sat 05 Dec 01:18 · our reply"
    dm = x_post.model_copy(update={"channel": "x_dm", "author_followers": 0})
    assert post_byline(dm, when) == "Alice Stewart @astewart17 · X direct message · Sat 05 Dec 01:18"


def test_the_post_to_answer_names_its_network_in_the_teams_words() -> None:
    """A user check (2026-12-06): the "In reply to" choice read "@astewart17 on x: @FettleCare ..."."""
    from console.case_view import _post_label

    post = Mention(channel="bluesky", external_id="b-1", text="where is it", created_at=utcnow(), author_handle="sam.bsky")
    assert _post_label(post, own=True) == "@sam.bsky on Bluesky: where is it"


def test_two_posts_with_the_same_words_read_differently_in_in_reply_to() -> None:
    """Browser check (2026-12-07): "hello?? anyone there" posted twice gave two equal "In reply to" labels, and
    "Queue reply" answered the older while the page showed the newer. Each label names its time and post."""
    from datetime import timedelta

    from console.case_view import _post_label

    first = Mention(id=1003, channel="x", external_id="d-1", text="@FettleCare hello?? anyone there",
                    created_at=utcnow() - timedelta(minutes=2), author_handle="bc_dupe")
    second = first.model_copy(update={"id": 1004, "external_id": "d-2", "created_at": utcnow()})
    when = lambda t: f"{t:%a %d %b %H:%M:%S}"  # noqa: E731
    assert _post_label(first, True, when) != _post_label(second, True, when)
    assert _post_label(second, True, when).endswith("(post 1004)")


def test_a_parcel_with_one_scan_gets_its_table_and_no_chart(db: Store) -> None:
    """A user check (2026-12-06): a parcel with one scan ("info_received") drew a chart of one dot over an
    axis labelled ":07". A journey needs two scans to be a line; one is read from the table."""
    from test_console_apptest import _open_case

    one_scan = db.db.execute(
        "select c.id from cases c join tracking_events e on e.tracking_number = c.tracking_number "
        "group by c.id having count(*) = 1 order by c.id limit 1").fetchone()[0]
    several = db.db.execute(
        "select c.id from cases c join tracking_events e on e.tracking_number = c.tracking_number "
        "group by c.id having count(*) > 2 order by c.id limit 1").fetchone()[0]
    at, _ = _open_case(db, case_id=one_scan)
    assert len(at.get("vega_lite_chart")) == 0
    assert any(len(t.value) == 1 and "status" in t.value.columns for t in at.table), "the scan's table is shown"
    at, _ = _open_case(db, case_id=several)
    assert len(at.get("vega_lite_chart")) == 1


def test_sent_mail_page_says_when_in_the_teams_words(db: Store, tmp_path: Any, monkeypatch: Any) -> None:
    """Before: the demo's Sent mail page titled each message "e-mail · 2026-12-05T02:03:45+00:00 · to ...",
    where every other page says "Sat 05 Dec 02:03" in the team's time zone."""
    import json

    from test_console_apptest import page

    (tmp_path / "sent-webhooks.jsonl").write_text(json.dumps(
        {"at": "2026-12-05T02:03:45+00:00", "path": "/slack/alerts", "body": {"text": "hello"}}) + "\n")
    monkeypatch.setenv("DOORSTEP_DEMO_SINK_DIR", str(tmp_path))
    at = page("sent_mail", "ann", db)
    assert not at.exception, at.exception
    [title] = [e.label for e in at.expander]
    assert title.replace("\\", "") == "slack · Sat 05 Dec 02:03:45 · to /slack/alerts", title  # Europe/London


# ------------------------------------------------------------------ issue 17: opening a case draws less
def test_a_long_thread_opens_with_its_newest_posts_and_shows_the_older_on_request(db: Store) -> None:
    """Issue 17, open case: every post (with its label-correction form) was drawn before the page first
    showed; now the newest THREAD_SHOWN are, and "Show N older post(s)" draws the rest."""
    from conftest import mention

    from console.case_view import THREAD_SHOWN
    from doorstep.models import Case

    case_id = db.insert_case(Case(status="new", priority=50, channel="x", author_handle="longthread"))
    for n in range(THREAD_SHOWN + 3):
        db.set_mention_case(db.insert_mention(mention(f"long-{n}", f"long thread post {n}", minutes=n,
                                                     author_handle="longthread")), case_id)
    at, _ = _open_case(db, "ann", case_id)
    drawn = [n for n in range(THREAD_SHOWN + 3) if f"long thread post {n}\n" in texts(at) + "\n"]
    assert drawn == [3, 4, 5], texts(at)  # the newest three (the composer quotes none: they are short)
    [older] = [b for b in at.button if b.key == f"older_posts_{case_id}"]
    assert older.label == "Show 3 older post(s)"
    older.click().run()
    drawn = [n for n in range(THREAD_SHOWN + 3) if f"long thread post {n}\n" in texts(at) + "\n"]
    assert drawn == list(range(THREAD_SHOWN + 3)) and not [b for b in at.button if b.key == f"older_posts_{case_id}"]


def test_inbox_change_mark_stays_still_on_a_login_and_moves_on_an_audited_case_change(db: Store) -> None:
    """Issue 17, first load after login: the login's own audit event moved the mark, so the new session
    could not use the count summaries another session had just taken for the same cases."""
    from console.inbox import change_mark

    before = change_mark(db)
    for action in ("login", "logout", "login.failed"):
        db.audit("ann", action, None, {"method": "password"})
    assert change_mark(db) == before
    case_id = xss_case(db)
    db.audit("ann", "case.update", case_id, {"status": "open"})
    assert change_mark(db)[2] > before[2]


def test_the_case_page_names_intents_statuses_scans_and_templates_in_words(db: Store) -> None:
    """A user check (2026-12-06): the case page said "labels: lost_or_missing (33%)", offered the template
    "ask_details_privately (suggested)", listed scans as "attempt_failed" and the status "pending_customer"."""
    import json

    case_id = db.db.execute(
        "select c.id from cases c join tracking_events e on e.tracking_number = c.tracking_number "
        "where c.intent is not null group by c.id having count(*) > 2 order by c.id limit 1").fetchone()[0]
    at, _ = _open_case(db, case_id=case_id)
    keys = ("where_is_my_order", "late_delivery", "failed_delivery", "lost_or_missing", "damaged_or_wrong",
            "refund_or_return", "customer_service", "product_or_account", "pending_customer", "info_received",
            "in_transit", "out_for_delivery", "attempt_failed", "ask_details_privately")
    shown = texts(at)
    assert "labels: " in shown
    assert not [k for k in keys if k in shown], [k for k in keys if k in shown]
    assert "pending customer" in sel(at, f"status_sel_{case_id}").options
    templates = at.selectbox(key=f"tpl_{case_id}").options
    assert templates and not [t for t in templates if "_" in t], templates
    scans = [s for t in at.table if "status" in t.value.columns for s in t.value["status"]]
    assert scans and not [s for s in scans if "_" in s], scans
    chart = at.get("vega_lite_chart")[0].proto
    axis = json.loads(chart.spec)["layer"][0]["encoding"]["y"]["sort"]
    assert "delivery attempt failed" in axis and not [s for s in axis if "_" in s], axis
    assert b"in transit" in chart.data.data and b"in_transit" not in chart.data.data  # the scans drawn


def test_the_customers_other_cases_show_open_ones_first_and_the_rest_on_request(db: Store) -> None:
    """A user check (2026-12-06): a VIP's case listed 16 other cases, one button each, pushing Actions a screen
    down; the open ones (what the agent must know about) were among the resolved ones."""
    from doorstep.models import Case

    at, case_id = _open_case(db)
    customer = db.get_case(case_id).customer_id or "C-OTHER"  # type: ignore[union-attr]
    db.db.execute("update cases set customer_id = ? where id = ?", [customer, case_id])
    now = utcnow()
    others = [db.insert_case(Case(status="open" if i == 0 else "resolved", priority=1.0, customer_id=customer,
                                  intent="praise", opened_at=now, last_activity_at=now)) for i in range(8)]
    at, _ = _open_case(db, case_id=case_id)
    listed = [b.label for b in at.button if b.key.startswith("other_") and b.key != f"other_all_{case_id}"]
    assert len(listed) <= 5 and listed[0].startswith(f"#{others[0]} · open"), listed  # the oldest, but open
    more = [b for b in at.button if b.key == f"other_all_{case_id}"]
    assert more and more[0].label.startswith("Show ")
    more[0].click().run()
    assert len([b for b in at.button if b.key.startswith("other_") and b.key != f"other_all_{case_id}"]) >= 8


def test_a_message_queued_from_an_e_mail_address_is_said_without_an_at_sign_in_front() -> None:
    """Final audit re-run: every courier escalation read "ann queued: escalation ... from @help@larkspur-home.example"."""
    from console.timeline import sentence
    from responders.outbox import OutboundMessage

    when = lambda t: "10:34"  # noqa: E731
    email = OutboundMessage(id=7, kind="escalation", channel="email", target="claims@ups.example", text="x",
                            status="queued", idempotency_key="e-1")
    said = sentence(_event("outbox.queue.escalation", "ann", message_id=7, account="help@larkspur-home.example"),
                    {7: email}, when)
    assert said.endswith(" from help@larkspur-home.example") and "@help@" not in said, said
    post = OutboundMessage(id=8, kind="reply", channel="x", target="jane", text="x", status="queued", idempotency_key="r-1")
    assert sentence(_event("outbox.queue.reply", "ann", message_id=8, account="FettleCare"), {8: post},
                    when).endswith(" from @FettleCare")


def test_the_reply_box_takes_a_bluesky_reply_of_300_graphemes_in_any_script(db: Store) -> None:
    """Languages audit, finding 4: a Hindi reply of 243 graphemes (360 UTF-16 units) pasted in a Bluesky case's box
    vanished: the box's ``max_chars`` was Bluesky's 300, and the browser counts UTF-16 units and refuses the whole
    paste beyond it, while Bluesky (and Mastodon) count graphemes. Their box sets no such limit now (the page counts
    graphemes and checks the limit on Queue reply); X's box keeps its count as the agent types."""
    case_id = db.db.execute("select id from cases where channel = 'bluesky' and status in ('new', 'open') "
                            "and merged_into is null order by id limit 1").fetchone()[0]
    hindi = "नमस्ते, आपके पार्सल के बारे में हमें खेद है। " * 8  # 360 UTF-16 units, under 300 graphemes
    assert len(hindi.encode("utf-16-le")) // 2 > 300
    at, _ = _open_case(db, "ann", case_id)
    box = at.text_area(key=f"draft_{case_id}")
    assert box.proto.max_chars == 0 or box.proto.max_chars >= len(hindi.encode("utf-16-le")) // 2, box.proto.max_chars


def test_with_links_on_the_x_box_takes_a_long_tracking_link() -> None:
    """With ``allow_urls`` on, a reply with a long tracking link that X takes (the link counts 23) ran past the
    browser's 280 and was cut off: the X box sets no browser limit then (Queue reply checks X's count). Links off
    (the default), the box keeps its live count: every X character weighs at least 1, emoji aside."""
    from console.case_view import box_limit
    from responders.channels import check_limits

    reply = "Sorry for the wait, Ann: track it here " + "https://track.example.com/" + "a" * 240
    check_limits("x", reply, allow_urls=True)  # X takes it
    assert len(reply.encode("utf-16-le")) // 2 > 280
    assert box_limit("x", 280, allow_urls=True) is None
    assert box_limit("x", 280, allow_urls=False) == 280
    assert box_limit("bluesky", 300, allow_urls=False) is None and box_limit("sms", 1600, allow_urls=False) == 1600


def test_a_long_thread_draws_its_newest_timeline_lines_and_the_rest_on_asking(db: Store) -> None:
    """Scale audit, finding 2: a case of 500 posts took 3.2-5.2 s to open (1.7-2.6 s for an ordinary one), 566
    elements drawn, 499 of them "posted again" lines of the timeline, which showed every post while the thread box
    above shows three. The timeline draws its newest lines, and the older ones when asked."""
    from console.case_view import TIMELINE_SHOWN

    case_id = xss_case(db)
    case = db.get_case(case_id)
    start = case.opened_at or utcnow()  # type: ignore[union-attr]
    for n in range(120):
        db.insert_mention(Mention(channel="x", external_id=f"again-{n}", text=f"still waiting {n}", case_id=case_id,
                                  created_at=start + timedelta(minutes=n + 1), author_handle=case.author_handle))  # type: ignore[union-attr]
    at, _ = _open_case(db, "ann", case_id)
    lines = [c.value for c in at.caption if "still waiting" in c.value]
    assert 0 < len(lines) <= TIMELINE_SHOWN, len(lines)
    assert any("still waiting 119" in line for line in lines)  # the newest are the ones drawn
    older = [b for b in at.button if b.key == f"timeline_older_{case_id}"]
    assert older and "older" in older[0].label, [b.key for b in at.button]
    older[0].click().run()
    assert len([c.value for c in at.caption if "still waiting" in c.value]) == 120


def test_a_reply_too_long_for_bluesky_is_refused_once(db: Store) -> None:
    """Browser check: a Bluesky reply over 300 graphemes was refused beside the button and again in a second red
    box ("Too long for bluesky: 453 > 300") under the live count, which already said "too long"."""
    row = db.db.execute("select id from cases where channel = 'bluesky' and merged_into is null order by id").fetchone()
    assert row, "the demo shop has a Bluesky case"
    at, _ = _open_case(db, "ann", row[0])
    box = [t for t in at.text_area if t.key == f"draft_{row[0]}"]
    assert box and [r.value for r in at.radio if r.label == "Reply on"] == ["bluesky"], "the Bluesky reply box"
    box[0].input("a" * 301)
    at.button(key=f"send_{row[0]}").click().run()
    errors = [e.value.replace("\\", "") for e in at.error]
    assert len([e for e in errors if "300" in e]) == 1, errors


# ------------------------------------------------------------------ the customer's other cases (code review)
def _customer_with_two_cases(db: Store) -> tuple[int, int]:
    """(a case, another case of the same customer) from the demo shop."""
    row = db.db.execute("select min(id), max(id) from cases where customer_id is not null and merged_into is null "
                        "group by customer_id having count(*) > 1 order by customer_id limit 1").fetchone()
    return row[1], row[0]


def test_the_customers_other_cases_do_not_leave_words_not_queued(db: Store) -> None:
    """Code review of the day's changes: J / K, the case number, the sidebar and X asked before leaving words typed
    and not queued; a button of "The customer's other cases" left at once and the words were lost."""
    case_id, other = _customer_with_two_cases(db)
    at, _ = _open_case(db, "ann", case_id)
    at.button(key=f"fill_{case_id}").click().run()  # the server holds the template's words, not queued
    assert at.text_area(key=f"draft_{case_id}").value.strip()
    at.button(key=f"other_{other}").click().run()
    assert not at.exception, at.exception
    assert at.session_state["case_id"] == case_id
    assert f"Still on case #{case_id}: your reply box holds words that are not queued" in texts(at), texts(at)
    assert "press the case's button again" in texts(at)
    at.button(key=f"other_{other}").click().run()  # asked again: the words are left, as asked
    assert at.session_state["case_id"] == other


def test_a_case_closed_as_spam_reads_so_among_the_customers_other_cases(db: Store) -> None:
    """Code review: its page and its inbox row said "resolved as spam", the customer's other cases "resolved"."""
    from doorstep.closing import close_cases

    case_id, other = _customer_with_two_cases(db)
    [done] = close_cases(db, [other], "lead", as_spam=True, now=utcnow(), force=True)
    assert done.closed, done
    at, _ = _open_case(db, "ann", case_id)
    [label] = [b.label for b in at.button if b.key == f"other_{other}"]
    assert label.startswith(f"#{other} · resolved as spam · "), label


def test_an_escalation_is_said_by_the_target_the_agent_chose_not_a_settings_name(db: Store,
                                                                                monkeypatch: Any) -> None:
    """Two-brand browser audit: "escalation queued to $SLACK_TEAM_WEBHOOK (message 410)" showed an agent the
    name of a secret setting; README promises targets in words."""
    monkeypatch.setenv("SLACK_TEAM_WEBHOOK", "https://hooks.slack.example/services/T0/B0/secret")
    at, case_id = _open_case(db, "ann")
    at.selectbox(key=f"esc_target_{case_id}").select("team")
    at.button(key=f"FormSubmitter:escalate_{case_id}-Escalate").click().run()
    shown = texts(at)
    assert "escalation queued to team by Slack (message " in shown, shown
    assert "$SLACK" not in shown and "hooks.slack" not in shown
