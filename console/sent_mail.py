"""Sent mail (demo only): what the demo's local SMTP and Slack/webhook sinks received.

On a real deployment e-mail and Slack messages leave for real servers and this page does
not exist. The demo (``doorstep demo``) runs local sinks instead (``standins/sinks.py``)
and names their folder in ``DOORSTEP_DEMO_SINK_DIR``, so escalations, alerts, follow-ups and
reports can be seen arriving. Everything is shown as plain text, never as HTML or Markdown.
"""

from __future__ import annotations

import os

import streamlit as st

from console.widgets import escape_md, get_config, local_time, require, safe_text

SINK_ENV = "DOORSTEP_DEMO_SINK_DIR"


def available() -> bool:
    return bool(os.environ.get(SINK_ENV))


def render() -> None:
    require("view_dashboard")
    from standins.sinks import read_sent

    st.title("Sent mail (demo)")
    st.caption("The demo's e-mail, text messages, Slack and courier webhooks go to local sinks on this machine, "
               "not to anyone.")
    folder = os.environ.get(SINK_ENV, "")
    sent = read_sent(folder) if folder else []
    kinds = ["e-mail", "sms", "slack", "webhook"]
    counts = {k: sum(1 for s in sent if s["kind"] == k) for k in kinds}
    cols = st.columns(len(kinds))
    for col, kind in zip(cols, kinds):
        col.metric({"slack": "Slack", "sms": "SMS"}.get(kind, kind.capitalize()), counts[kind])
    if st.button("Refresh", key="sent_refresh"):
        st.rerun()
    if not sent:
        st.info("Nothing sent yet: escalate a case, or wait for the worker's alerts and follow-ups.")
        return
    from doorstep.store import parse_time

    config = get_config()
    for item in sent:
        received = parse_time(item["at"]) if item["at"] else None  # stored in UTC; read in the team's zone
        at = local_time(received, config, "%a %d %b %H:%M:%S") if received else item["at"] or "-"
        title = f"{item['kind']} · {at} · to {item['to']}" + (f" · {item['subject']}" if item["subject"] else "")
        with st.expander(escape_md(title)):
            safe_text(item["text"])
