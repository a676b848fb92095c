"""Reports page: past weekly-report sends and any week's report on demand.

The report is the same object the worker mails (doorstep.reports), rendered here so a
lead can check a week before or after it goes out. Personal data stays masked: the
unmasked report is a CLI-only action (``--no-redact``) that leaves an audit entry.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from console.widgets import escape_md, get_config, get_store, local_time, require
from doorstep.models import utcnow
from doorstep.store import parse_time


def render() -> None:
    require("view_dashboard")
    from doorstep import reports

    store, config = get_store(), get_config()
    st.title("Weekly reports")

    weeks = reports.weeks_with_data(store, config)
    if not weeks:
        st.info("No mentions yet, so there is no week to report on.")
        return
    cols = st.columns([1, 1, 1])
    # The last complete week by default: the current one is still filling up, and its "drop"
    # in complaints or its "silent" coming hours are not findings.
    complete = reports.last_complete_week(utcnow(), config.tz)
    current = reports.week_of(utcnow(), config.tz)
    week = cols[0].selectbox("Week", weeks, index=weeks.index(complete) if complete in weeks else 0, key="report_week",
                             format_func=lambda w: f"{w} · {reports.week_dates(w, config.tz)}"
                             + (" (in progress)" if w == current else ""))
    brands = ["(all brands)", *[b.name for b in config.brands]]
    brand_choice = cols[1].selectbox("Brand", brands, key="report_brand")
    brand = None if brand_choice == brands[0] else brand_choice

    if cols[2].button("Render report", type="primary", key="report_render"):
        with st.spinner(f"Building the report for {week}..."):
            user = st.session_state.get("user")
            report = reports.build_weekly_report(store, config, week=week, brand=brand,
                                                 actor=getattr(user, "username", "console"))
            html = reports.render_html(report)
            # The PDF is kept in the session for the download button; its file goes with the folder.
            with tempfile.TemporaryDirectory(prefix="doorstep-report-") as folder:
                pdf = reports.render_pdf(report, Path(folder) / "report.pdf").read_bytes()
            st.session_state["report_rendered"] = (week, brand, html, pdf)

    rendered = st.session_state.get("report_rendered")
    if rendered and rendered[:2] == (week, brand):
        _, _, html, pdf = rendered
        stem = f"weekly-{week}" + (f"-{brand.replace(' ', '-')}" if brand else "")
        d = st.columns([1, 1, 4])
        d[0].download_button("Download HTML", html, file_name=f"{stem}.html", mime="text/html", key="report_dl_html")
        d[1].download_button("Download PDF", pdf, file_name=f"{stem}.pdf", mime="application/pdf", key="report_dl_pdf")
        # Our own template with autoescaping: customer text inside it is escaped and masked.
        st.iframe(html, height=900)

    st.subheader("Sent and scheduled")
    deliveries = reports.report_deliveries(store)
    if not deliveries:
        st.caption("No weekly report has been sent yet (set [reports] recipients to schedule one).")
        return
    st.dataframe(
        [
            {
                "week": d.get("week"),
                "to": d.get("target"),
                "status": d.get("status"),
                "attempts": d.get("attempts"),
                "last error": d.get("last_error") or "",
                "sent": local_time(parse_time(d.get("sent_at")), config) if d.get("sent_at") else "",
            }
            for d in deliveries
        ],
        hide_index=True,
        use_container_width=True,
    )
    st.caption(escape_md("A failed send is retried by the worker; its error stays here until it goes through."))
