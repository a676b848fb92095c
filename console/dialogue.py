"""The dialogue on the console: a case's questions, answers and call backs; the Call-backs page; answer rates.

Everything a customer wrote (an answer) is shown as text, never Markdown or HTML. The ``tel:``
link is built from the phone number's digits only (and a leading +), so an odd value on an order
record can never become a link to anything else.
"""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

from console.auth import can
from console.widgets import escape_md, flash, get_config, get_store, local_time, open_case, require, safe_text, show_flashes
from console.words import (
    answer_kind_name,
    by_channel,
    callback_reason,
    callback_status_name,
    channel_name,
    intent_name,
    question_action_words,
    question_name,
    question_status_name,
    status_name,
)
from doorstep import dialogue as rows
from doorstep.models import Case, tracking_name, utcnow
from responders.outbox import customers_peak

OUTCOME_WORDS = {"reached": "Reached", "no_answer": "No answer", "resolved": "Resolved"}
SLA_WORDS = {"breached": "🔴 SLA breached", "due": "🟠 due now", "upcoming": "upcoming"}


def tel_href(phone: str | None) -> str | None:
    """``tel:+447700900123`` from any way of writing the number; None when there are not enough digits."""
    if not phone or not re.fullmatch(r"\+?[\d\s().\-/]+", phone.strip()):
        return None  # anything but a phone number's characters is not dialled
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 6:
        return None
    return f"tel:{'+' if phone.strip().startswith('+') else ''}{digits}"


def _call_link(phone: str | None, key: str) -> None:
    href = tel_href(phone)
    if href is None:
        st.caption("No phone number on the order record.")
        return
    st.link_button(f"Call {phone}", href, icon=":material/call:", key=key)


def _bridge_button(store: Any, callback: rows.Callback, user: Any, where: str) -> None:
    """"Ring me and connect" through Twilio's voice API, when the desk's phone is configured."""
    from responders.config import responders_settings
    from responders.dialogue import DialogueError, bridge_call

    if not responders_settings(get_config()).callback.bridge_desk_phone:
        return
    if st.button("Ring the desk and connect", key=f"cb_bridge_{where}_{callback.id}", icon=":material/call_merge:",
                 disabled=not can(user, "callback")):
        try:
            sid = bridge_call(store, get_config(), callback.id, user.username)
        except DialogueError as exc:
            st.error(escape_md(str(exc)))
        else:
            flash("success", f"Twilio is ringing the desk, then the customer (call {sid})")
            st.rerun()


def _outcome_buttons(store: Any, callback: rows.Callback, user: Any, where: str) -> None:
    from responders.dialogue import DialogueError, record_outcome

    cols = st.columns(len(OUTCOME_WORDS))
    held_key = f"cb_held_{where}_{callback.id}"  # "Resolved" refused past a message that has not gone
    for col, (outcome, words) in zip(cols, OUTCOME_WORDS.items()):
        if col.button(words, key=f"cb_{where}_{callback.id}_{outcome}", disabled=not can(user, "callback")):
            st.session_state.pop(held_key, None)
            try:
                record_outcome(store, callback.id, outcome, user.username)
            except DialogueError as exc:
                if outcome == "resolved" and str(exc).startswith("Not resolved"):
                    st.session_state[held_key] = str(exc)
                else:
                    st.error(escape_md(str(exc)))
            else:
                flash("success", f"call back {callback.id}: {words.lower()} recorded")
                st.rerun()
    held = st.session_state.get(held_key)
    if held:
        st.error(escape_md(held), icon=":material/block:")
        if st.button("Resolve even though", key=f"cb_{where}_{callback.id}_resolved_anyway",
                     disabled=not can(user, "callback"),
                     help="Record the call and resolve the case; what has not gone stays as it is"):
            st.session_state.pop(held_key, None)
            try:
                record_outcome(store, callback.id, "resolved", user.username, force=True)
            except DialogueError as exc:
                st.error(escape_md(str(exc)))
            else:
                flash("success", f"call back {callback.id}: resolved recorded (past what had not gone)")
                st.rerun()


def _callback_line(callback: rows.Callback, config: Any, now: Any) -> str:
    state = callback.sla_state(now)
    slot = local_time(callback.slot_at, config) if callback.slot_at else (
        "as soon as possible" if callback.requested_at else "not chosen yet")
    parts = [f"call back #{callback.id} · {callback_status_name(callback.status)}",
             f"reason: {callback_reason(callback.reason)}", f"slot: {slot}"]
    if callback.due_at:
        parts.append(f"call by {local_time(callback.due_at, config)}")
    if state in SLA_WORDS:
        parts.append(SLA_WORDS[state])
    if callback.outcome:
        parts.append(f"last outcome: {callback.outcome.replace('_', ' ')} by {callback.outcome_by} "
                     f"{local_time(callback.outcome_at, config)}")
    return " · ".join(parts)


def case_section(store: Any, case: Case, user: Any) -> None:
    """On the case page: the questions we asked, what the customer answered and what it triggered; call backs."""
    from responders.dialogue import DialogueError, offer_callback

    config = get_config()
    now = utcnow()
    questions = rows.questions_for_case(store, case.id)  # type: ignore[arg-type]
    callbacks = rows.callbacks_for_case(store, case.id)  # type: ignore[arg-type]
    st.subheader("Questions and call backs")
    if not questions and not callbacks:
        st.caption("No question asked and no call back offered on this case.")
    sent = {m.id: m.status for m in store.outbound_for_case(case.id)}  # type: ignore[arg-type]
    for q in questions:
        with st.container(border=True):
            waiting = q.is_open(now)
            message = sent.get(q.message_id, "missing")  # type: ignore[arg-type]
            state = ("⏳ awaiting the customer’s answer" if message == "sent" else
                     f"not sent yet (message {message.replace('_', ' ')})") if waiting else question_status_name(q.status)
            head = (f"{state} · "
                    f"{question_name(q.rule)} question {by_channel(q.channel)} to {q.target or '-'} · "
                    f"{'asked' if message == 'sent' or not waiting else 'written'} {local_time(q.asked_at, config)}"
                    + (f" · expires {local_time(q.expires_at, config)}" if waiting else ""))
            safe_text(head, caption=True)
            if q.answer is not None:
                safe_text(f"Answer ({channel_name(q.answer_channel)}, {local_time(q.answered_at, config)}), read as "
                          f"{answer_kind_name(q.answer_kind)}:", caption=True)
                safe_text(q.answer)
            if q.action:
                safe_text(f"Triggered: {question_action_words(q.action)}", caption=True)
    for callback in callbacks:
        with st.container(border=True):
            safe_text(_callback_line(callback, config, now), caption=True)
            if callback.status == "scheduled":
                _call_link(callback.phone, key=f"tel_case_{callback.id}")
                _bridge_button(store, callback, user, "case")
                _outcome_buttons(store, callback, user, "case")
    if not any(c.status in ("offered", "scheduled") for c in callbacks):
        if st.button("Offer a call back", key=f"offer_callback_{case.id}", icon=":material/phone_callback:",
                     disabled=not can(user, "callback")):
            try:
                callback = offer_callback(store, config, case.id, user.username, "agent")  # type: ignore[arg-type]
            except DialogueError as exc:
                st.error(escape_md(f"No call back offered: {exc}"))
            else:
                flash("success", f"call back offered to the customer (task #{callback.id}); their answer picks the slot")
                st.rerun()


def render() -> None:
    """The Call-backs page: every call back waiting for a call, soonest first."""
    user = require("reply")
    store, config = get_store(), get_config()
    show_flashes()
    st.title("Call-backs")
    now = utcnow()
    tasks = rows.scheduled_callbacks(store)
    due = [t for t in tasks if t.sla_state(now) in ("due", "breached")]
    st.caption(escape_md(f"{len(tasks)} call back(s) waiting, {len(due)} due now or overdue; times in {config.timezone}"))
    if not tasks:
        st.info("No call back is waiting.")
        return
    for task in tasks:
        case = store.get_case(task.case_id)
        if case is None:
            continue
        with st.container(border=True):
            cols = st.columns([3, 2])
            with cols[0]:
                st.markdown(f"**Case #{case.id}** · " + escape_md(f"{case.brand or '-'} · "
                                                                   f"{intent_name(case.intent) if case.intent else 'case'} · "
                                                                   f"{status_name(case.status)}"))
                safe_text(_callback_line(task, config, now), caption=True)
                peak = customers_peak(store, case)  # not a stranger who answered in their thread
                if peak is not None:
                    safe_text(f"Customer wrote ({local_time(peak.created_at, config)}): {peak.text}", caption=True)
                order = store.get_order(case.order_number) if case.order_number else None
                customer = store.get_customer(case.customer_id) if case.customer_id else None
                if order is not None:
                    safe_text(f"Order {order.number} · {order.total:.2f} {order.currency} · "
                              f"{customer.name if customer else '-'}", caption=True)
                shipment = store.get_shipment(case.tracking_number) if case.tracking_number else None
                if shipment is not None:
                    last = shipment.events[-1] if shipment.events else None
                    safe_text(f"{shipment.courier} {shipment.tracking_number}: "
                              + (f"{tracking_name(last.status)} at {last.location or '-'}, "
                                 f"{local_time(last.time, config)}" if last else "no tracking event"), caption=True)
            with cols[1]:
                _call_link(task.phone, key=f"tel_page_{task.id}")
                _bridge_button(store, task, user, "page")
                _outcome_buttons(store, task, user, "page")
                if st.button("Open case", key=f"cb_open_{task.id}"):
                    open_case(case.id)  # type: ignore[arg-type]


def answer_rates_section(store: Any, start: Any, end: Any, config: Any, brand: str | None = None) -> None:
    """The dashboard's "answers to our questions": asked, answered, rate and time to answer per channel; call backs.

    ``brand``: the dashboard's Brand filter (questions and call backs on that brand's cases).
    (Answer rates of every private message by local send hour are the channel learner's chart, above.)
    """
    rates = rows.answer_rates(store, start, end, config.tz, brand=brand)
    st.subheader("Answers to our questions")
    if not rates:
        st.caption("No question was asked in this window.")
        return
    st.dataframe([{"channel": channel_name(r["channel"]), "asked": r["asked"], "answered": r["answered"],
                   "answer rate": "-" if r["rate"] is None else f"{r['rate']:.0%}",
                   "median time to answer": "-" if r["median_minutes"] is None else f"{r['median_minutes']:.0f} min"}
                  for r in rates], hide_index=True, width="stretch")
    summary = rows.callback_summary(store, start, end, brand=brand)
    st.caption(escape_md(f"Call backs offered {summary['offered']}, accepted {summary['accepted']}, reached "
                         f"{summary['reached']}, no answer {summary['no_answer']}, resolved {summary['resolved']}, "
                         f"SLA breached {summary['sla_breached']}"))


