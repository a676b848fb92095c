"""The lead's dashboard: the same figures as the weekly report (doorstep.metrics), drawn with Altair."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import altair as alt
import streamlit as st

from console.widgets import escape_md, get_config, get_store, require

WINDOWS = {"Last 7 days": 7, "Last 14 days": 14, "Last 30 days": 30}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _minutes(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} min" if value < 120 else f"{value / 60:.1f} h"


def _delta(entry: dict[str, Any]) -> str | None:
    change = entry.get("change")
    if change is None:
        return None
    return f"{change:+.0%}" if isinstance(entry.get("value"), float) and abs(entry["value"]) <= 1 else f"{change:+g}"


def window(days: int, tz: Any) -> tuple[datetime, datetime]:
    """Whole local days ending with today, so a day's bar never covers half a day."""
    today = datetime.now(tz).date()
    end = datetime.combine(today + timedelta(days=1), time(0), tz)
    return end - timedelta(days=days), end


def render() -> None:
    require("view_dashboard")
    from doorstep import metrics

    store, config = get_store(), get_config()
    st.title("Dashboard")
    cols = st.columns(2)
    with cols[0]:
        label = st.selectbox("Window", list(WINDOWS), key="dash_window")
    with cols[1]:
        brands = ["(all brands)", *[b.name for b in config.brands]]
        brand_choice = st.selectbox("Brand", brands, key="dash_brand")
    brand = None if brand_choice == brands[0] else brand_choice
    start, end = window(WINDOWS[label], config.tz)
    data = metrics.dashboard(store, start, end, config.timezone, brand)
    head, counts = data["headline"], data["counts"]

    m = st.columns(6)
    m[0].metric("Mentions", counts["mentions"], _delta(head["mentions"]), delta_color="off")
    m[1].metric("Complaints", counts["complaints"], _delta(head["complaints"]), delta_color="inverse")
    m[2].metric("Negative share", _pct(counts["negative_share"]))
    m[3].metric("First response (median)", _minutes(counts["first_response_median_min"]))
    m[4].metric("SLA attainment", _pct(counts["sla_attainment"]))
    m[5].metric("Resolution rate", _pct(counts["resolution_rate"]))
    st.caption(escape_md(
        f"{start.astimezone(config.tz):%a %d %b} – {(end - timedelta(seconds=1)).astimezone(config.tz):%a %d %b} "
        f"({config.timezone}); first response p90 {_minutes(counts['first_response_p90_min'])}; "
        f"escalations: {counts.get('escalations', 0)}; changes against the previous window"
    ))

    daily = [dict(r) for r in data["daily"]]
    whole = alt.Axis(tickMinStep=1, format="d")
    left, right = st.columns(2)
    with left:
        st.subheader("Mentions per day")
        chart = alt.Chart(alt.Data(values=daily)).mark_bar().encode(
            x=alt.X("day:O", title=None, axis=alt.Axis(labelAngle=0)), y=alt.Y("sum(mentions):Q", title="mentions", axis=whole),
            color=alt.Color("brand:N", legend=alt.Legend(orient="bottom")), tooltip=["day:O", "brand:N", "mentions:Q"],
        ).properties(height=260)
        st.altair_chart(chart, width="stretch")
    with right:
        st.subheader("Complaints per day")
        chart = alt.Chart(alt.Data(values=daily)).mark_line(point=True).encode(
            x=alt.X("day:O", title=None, axis=alt.Axis(labelAngle=0)), y=alt.Y("complaints:Q", axis=whole),
            color=alt.Color("brand:N", legend=alt.Legend(orient="bottom")), tooltip=["day:O", "brand:N", "complaints:Q"],
        ).properties(height=260)
        st.altair_chart(chart, width="stretch")

    left, right = st.columns(2)
    with left:
        st.subheader("Net sentiment per day")
        sentiment = [r for r in daily if r.get("net_sentiment") is not None]
        chart = alt.Chart(alt.Data(values=sentiment)).mark_line(point=True).encode(
            x=alt.X("day:O", title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("net_sentiment:Q", scale=alt.Scale(domain=[-1, 1]), title="net sentiment (-1 to +1)"),
            color=alt.Color("brand:N", legend=alt.Legend(orient="bottom")),
            tooltip=["day:O", "brand:N", alt.Tooltip("net_sentiment:Q", format="+.2f"),
                     alt.Tooltip("negative_share:Q", format=".0%")],
        ).properties(height=260)
        rule = alt.Chart(alt.Data(values=[{"y": 0}])).mark_rule(color="#bbb").encode(y="y:Q")
        st.altair_chart(chart + rule, width="stretch")
    with right:
        st.subheader("Complaints by intent")
        chart = alt.Chart(alt.Data(values=data["intents"])).mark_bar().encode(
            x=alt.X("complaints:Q", axis=whole), y=alt.Y("label:N", sort="-x", title=None),
            tooltip=["label:N", "complaints:Q", alt.Tooltip("share:Q", format=".0%")],
        ).properties(height=260)
        st.altair_chart(chart, width="stretch")

    st.subheader("Couriers: complaints per 1,000 shipments")
    chart = alt.Chart(alt.Data(values=data["couriers"])).mark_bar().encode(
        x=alt.X("complaints_per_1000:Q", title="complaints per 1,000 active shipments"),
        y=alt.Y("courier:N", sort="-x", title=None),
        color=alt.Color("failed_attempt_rate:Q", title="failed delivery attempts",
                        scale=alt.Scale(scheme="oranges"), legend=alt.Legend(format=".0%")),
        tooltip=["courier:N", "shipments:Q", "complaints:Q", "failed_attempts:Q", "exceptions:Q"],
    ).properties(height=200)
    st.altair_chart(chart, width="stretch")

    answers_by_channel_and_hour(store, config, start, end, brand)

    st.subheader("Listener health")
    try:
        from listeners.health import listener_health

        health = listener_health(store)
    except ImportError:  # pragma: no cover - listeners package absent
        health = []
    if health:
        st.dataframe([{"listener": h["name"], "status": h["status"], "last success": h.get("last_success_at") or "",
                       "last error": h.get("last_error") or "", "lag (s)": h.get("lag_seconds"), "stored": h.get("stored")}
                      for h in health], hide_index=True, width="stretch")
    else:
        st.caption("No listener has run yet.")
    if data["gaps"]:
        st.caption("Possible data gaps (hours with no posts where some were expected)")
        st.dataframe([{k: g[k] for k in ("channel", "from_local", "to_local", "hours", "expected_mentions")}
                      for g in data["gaps"]], hide_index=True, width="stretch")


def answers_by_channel_and_hour(store: Any, config: Any, start: datetime, end: datetime, brand: str | None) -> None:
    """How often customers answer our e-mails and texts, by channel and local send hour.

    The channel learner's evidence (doorstep/contact_history.py): an attempt counts once it was
    answered or its answer window passed without one, so the latest hours are not shown as failures.
    """
    from doorstep.contact_history import answer_rates
    from doorstep.models import utcnow

    st.subheader("Answers to our messages by channel and hour")
    rows = answer_rates(store, config.tz, min(end, utcnow()), since=start, brand=brand)
    if not rows:
        st.caption("No follow-up or question in this window has been answered or has waited out its answer window yet.")
        return
    for row in rows:
        row["hour_label"] = f"{row['hour']:02d}:00"
    base = alt.Chart(alt.Data(values=rows)).encode(
        x=alt.X("hour_label:O", title=f"local send hour ({config.timezone})", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("channel:N", title=None),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("answer_rate:Q", title="answered", scale=alt.Scale(domain=[0, 1], scheme="greens"),
                        legend=alt.Legend(format=".0%")),
        tooltip=["channel:N", "hour_label:O", "sent:Q", "answered:Q", alt.Tooltip("answer_rate:Q", format=".0%"),
                 alt.Tooltip("median_minutes:Q", title="median minutes to answer")],
    )
    labels = base.mark_text(fontSize=11).encode(text=alt.Text("sent:Q"))
    st.altair_chart((heat + labels).properties(height=120), width="stretch")
    sent = sum(r["sent"] for r in rows)
    answered = sum(r["answered"] for r in rows)
    st.caption(escape_md(f"{answered} of {sent} messages answered ({answered / sent:.0%}); the number in each cell is "
                         "how many were sent then. The channel learner chooses from this history when it is on."))
