"""Approvals: automatic messages (follow-ups, proactive messages, alerts) that wait for an agent.

A rule named in ``[responders.approval]`` never sends on its own: its message waits here with the
facts it was written from. Approving re-checks those facts first (a message whose reply failed,
whose customer answered meanwhile or whose case was resolved is cancelled instead, with the reason);
rejecting cancels it. Both are in the audit log under the agent's name.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from console.auth import can
from console.widgets import escape_md, flash, get_config, get_store, local_time, open_case, require, safe_text, show_flashes
from console.words import by_channel, kind_name, rule_name
from doorstep.models import utcnow


def render() -> None:
    """The approval queue page."""
    from responders.automatic import ApprovalError, approve, pending_approval, recheck, reject

    user = require("reply")
    store = get_store()
    config = get_config()
    show_flashes()
    st.title("Approvals")
    st.caption("Automatic messages to customers that an agent must approve before they are sent. "
               "Approving re-checks every fact the message states.")
    held = pending_approval(store)
    if not held:
        st.info("Nothing waits for approval.")
        return
    for message, facts in held:
        with st.container(border=True):
            kind = kind_name(message.kind)
            safe_text(f"{kind[:1].upper()}{kind[1:]} {by_channel(message.channel)} to {message.target or '-'} · "
                      f"written by the rule: {rule_name(_asking(store, message.id) or facts.rule)} · "
                      f"case #{message.case_id} · written {local_time(message.created_at, config)} · "
                      f"not before {local_time(message.next_attempt_at, config)}", caption=True)
            safe_text(message.text)
            stale = recheck(store, message)
            if stale:  # e.g. resolved since it was written: resolving does not wait for it (case page)
                st.warning(escape_md(f"Approving cancels it: {stale}. Reject it, or reopen the case first."),
                           icon=":material/block:")
            cols = st.columns([1, 1, 1, 3])
            if cols[0].button("Approve", key=f"approve_{message.id}", type="primary", disabled=not can(user, "reply")):
                try:
                    approved = approve(store, message.id, user.username, config=config)  # type: ignore[arg-type]
                except ApprovalError as exc:
                    flash("error", str(exc))
                else:
                    goes = approved.next_attempt_at
                    flash("success", f"message {message.id} approved; the worker sends it"
                          + (f" at {local_time(goes, config)} (not before)" if goes and goes > utcnow() else ""))
                st.rerun()
            why = cols[3].text_input("Why not (optional)", key=f"reject_why_{message.id}", label_visibility="collapsed",
                                     placeholder="why not (optional)")
            if cols[1].button("Reject", key=f"reject_{message.id}", disabled=not can(user, "reply")):
                try:
                    reject(store, message.id, user.username, why or None)  # type: ignore[arg-type]
                except ApprovalError as exc:
                    flash("error", str(exc))
                else:
                    flash("success", f"message {message.id} rejected")
                st.rerun()
            if message.case_id and cols[2].button("Open case", key=f"approval_case_{message.id}"):
                open_case(message.case_id)
    st.caption(escape_md(f"{len(held)} message(s) waiting"))


def _asking(store: Any, message_id: int | None) -> str | None:
    """"question:callback" when the message asks one of the dialogue's questions: a call-back offer is
    recorded as the outreach it is sent as, and read "proactive outreach about a parcel" here."""
    row = store.db.execute("select rule from questions where message_id = ?", [message_id]).fetchone()
    return f"question:{row[0]}" if row else None
