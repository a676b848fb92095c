"""Reports page: past weekly-report sends and any week's report on demand.

The report is the same object the worker mails (doorstep.reports), rendered here so a
lead can check a week before or after it goes out. Personal data stays masked: the
unmasked report is a CLI-only action (``--no-redact``) that leaves an audit entry.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import streamlit as st

from console.widgets import escape_md, get_config, get_store, local_time, require
from doorstep.config import Config, secret
from doorstep.models import utcnow
from doorstep.report_settings import parse_weekly_at, report_settings
from doorstep.store import parse_time


def next_send(now: datetime, tz: Any, weekly_at: str) -> datetime:
    """The first moment after ``now`` (UTC) when the worker sends the weekly report: ``weekly_at``
    ("Mon 08:00") in the shop's zone, so 08:00 stays 08:00 across a change to or from summer time."""
    zone = tz if isinstance(tz, tzinfo) else ZoneInfo(str(tz))
    weekday, at = parse_weekly_at(weekly_at)
    local = now.astimezone(zone)
    day = local.date() - timedelta(days=local.weekday()) + timedelta(days=weekday)
    moment = datetime.combine(day, at, tzinfo=zone)
    if moment <= local:
        moment = datetime.combine(day + timedelta(days=7), at, tzinfo=zone)
    return moment.astimezone(timezone.utc)


def report_targets(config: Config) -> list[str]:
    """Where the worker sends the weekly report: each ``[reports] recipients`` address, and "Slack" when a
    webhook is set (``slack_webhook_url`` or $REPORTS_SLACK_WEBHOOK_URL); none: nothing is scheduled."""
    settings = report_settings(config)
    slack = settings.slack_webhook_url or secret("REPORTS_SLACK_WEBHOOK_URL")
    return [*settings.recipients, *(["Slack"] if slack else [])]


def schedule_lines(config: Config, deliveries: list[dict[str, Any]], now: datetime) -> list[str]:
    """What the page says of the schedule: a send that is due and not made yet (the worker was down, within
    ``catch_up_hours``), then the next one, each in the shop's time zone with its week and recipients.
    Why: the page said only "set [reports] recipients to schedule one", also where recipients were set
    (pages audit, finding 1); the README promises "every scheduled send with its status"."""
    from doorstep import reports

    targets = report_targets(config)
    if not targets:
        return []
    settings = report_settings(config)
    coming = next_send(now, config.tz, settings.weekly_at)
    lines = []
    # A week back on the shop's clock (an aware local time minus 7 days keeps its wall time): a week back in
    # UTC landed after the missed send's local time in the week before the clocks went back (time audit).
    last = next_send(coming.astimezone(config.tz) - timedelta(days=7, minutes=1), config.tz, settings.weekly_at)
    if last <= now and now - last <= timedelta(hours=settings.catch_up_hours):
        week = reports.last_complete_week(last, config.tz)
        made = {d.get("target") if d.get("channel") != "slack" else "Slack" for d in deliveries if d.get("week") == week}
        waiting = [t for t in targets if t not in made]
        if waiting:
            lines.append(f"Due since {config.local_time(last, zone=True)}, not sent yet: the report for {week} "
                         f"({reports.week_dates(week, config.tz)}) to {', '.join(waiting)}; the worker "
                         "(doorstep worker) sends it at its next check.")
    week = reports.last_complete_week(coming, config.tz)
    lines.append(f"Next send: {config.local_time(coming, zone=True)} ({settings.weekly_at} each week), the report for "
                 f"{week} ({reports.week_dates(week, config.tz)}) to {', '.join(targets)}")
    return lines


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
            notes: list[str] = []  # a script the PDF has no font for: said beside the download, not only logged
            with tempfile.TemporaryDirectory(prefix="doorstep-report-") as folder:
                pdf = reports.render_pdf(report, Path(folder) / "report.pdf", notes=notes).read_bytes()
            st.session_state["report_rendered"] = (week, brand, html, pdf, notes)

    rendered = st.session_state.get("report_rendered")
    if rendered and rendered[:2] == (week, brand):
        _, _, html, pdf, notes = rendered
        for note in notes:
            st.warning(escape_md(note.split(": ", 1)[-1]))
        stem = f"weekly-{week}" + (f"-{brand.replace(' ', '-')}" if brand else "")
        d = st.columns([1, 1, 4])
        d[0].download_button("Download HTML", html, file_name=f"{stem}.html", mime="text/html", key="report_dl_html")
        d[1].download_button("Download PDF", pdf, file_name=f"{stem}.pdf", mime="application/pdf", key="report_dl_pdf")
        # Our own template with autoescaping: customer text inside it is escaped and masked.
        st.iframe(html, height=900)

    st.subheader("Sent and scheduled")
    deliveries = reports.report_deliveries(store)
    scheduled = schedule_lines(config, deliveries, utcnow())
    for line in scheduled:
        st.markdown(escape_md(line))
    if not scheduled:
        st.caption(escape_md("No weekly report is scheduled: set [reports] recipients (or slack_webhook_url) in "
                             "doorstep.toml and the worker sends one each week."))
    if not deliveries:
        st.caption("No weekly report has been sent yet.")
        return
    st.dataframe(
        [
            {
                "week": d.get("week"),
                "to": "Slack" if d.get("channel") == "slack" else d.get("target"),
                "status": str(d.get("status") or "").replace("_", " "),
                "attempts": d.get("attempts"),
                "last error": d.get("last_error") or "",
                "sent": local_time(parse_time(d.get("sent_at")), config) if d.get("sent_at") else "",
                "next try": local_time(parse_time(d.get("next_attempt_at")), config)
                if d.get("status") == "failed" and d.get("next_attempt_at") else "",
            }
            for d in deliveries
        ],
        hide_index=True,
        width="stretch",
    )
    st.caption(escape_md(f"Times in {config.timezone}. A failed send is retried by the worker; its error stays here "
                         "until it goes through."))
