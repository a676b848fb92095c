"""The lead's dashboard: the same figures as the weekly report (doorstep.metrics), drawn with Altair."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import altair as alt
import streamlit as st

from console.widgets import escape_md, get_config, get_store, imports_section, listener_rows, open_inbox, require
from doorstep.models import channel_name
from doorstep.reports import guess_notes, standout_courier_finding, top_intent_finding

WINDOWS = {"Last 7 days": 7, "Last 14 days": 14, "Last 30 days": 30}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


#: Brands one under another below a chart: side by side the second read "Larkspur Hon" at 1024 px.
BRAND_LEGEND = alt.Legend(orient="bottom", direction="vertical")
#: Days read "Tue 01": the full "2026-12-01" overlapped, and only the first and last day were labelled.
DAY_AXIS = alt.Axis(labelAngle=0, labelExpr="utcFormat(toDate(datum.value), '%a %d')")


def _minutes(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} min" if value < 120 else f"{value / 60:.1f} h"


def _delta(entry: dict[str, Any]) -> str | None:
    change = entry.get("change")
    if change is None:
        return None
    return f"{change:+.0%}" if isinstance(entry.get("value"), float) and abs(entry["value"]) <= 1 else f"{change:+g}"


def chart_findings(data: dict[str, Any]) -> dict[str, str]:
    """Each chart's title as what it shows ("Complaints peaked on Wed 02 Dec (21)"), not what it is.

    Why: a lead glancing at the page reads the titles; a label ("Complaints per day") makes them
    read every chart, a finding tells them which one to look at.
    """
    daily = data["daily"]
    per_day: dict[str, dict[str, float]] = {}
    for row in daily:
        day = per_day.setdefault(row["day"], {"mentions": 0, "complaints": 0})
        day["mentions"] += row.get("mentions") or 0
        day["complaints"] += row.get("complaints") or 0
    out = {"mentions": "Mentions per day", "complaints": "Complaints per day", "sentiment": "Net sentiment per day",
           "intents": "Complaints by intent", "couriers": "Couriers: complaints per 1,000 shipments"}
    if per_day and any(d["mentions"] for d in per_day.values()):
        busiest = max(per_day, key=lambda k: (per_day[k]["mentions"], k))
        out["mentions"] = f"Busiest day: {_day(busiest)} with {per_day[busiest]['mentions']:.0f} mentions"
    if per_day and any(d["complaints"] for d in per_day.values()):  # no "peak" in a week without complaints
        worst = max(per_day, key=lambda k: (per_day[k]["complaints"], k))  # a tie names the latest day
        out["complaints"] = f"Complaints peaked on {_day(worst)} ({per_day[worst]['complaints']:.0f})"
    # The headline's net sentiment over the window: (positive - negative) / labelled posts, every post
    # weighing the same (an average of per-brand daily ratios would let one post outweigh twenty).
    labelled = sum(r.get("labelled") or 0 for r in daily)
    if labelled:
        mean = (sum(r.get("positive") or 0 for r in daily) - sum(r.get("negative") or 0 for r in daily)) / labelled
        mood = "negative" if mean < -0.05 else "positive" if mean > 0.05 else "mixed"
        out["sentiment"] = f"Sentiment {mood} on average ({mean:+.2f})"
    # The report's words and rule (doorstep.reports): a topic or a courier resting on the model's unreviewed guesses
    # is not stated as fact.
    top_intent = top_intent_finding(data["intents"], now=True)
    if top_intent:
        out["intents"] = top_intent[0]
    league = [r for r in data["couriers"] if r["complaints_per_1000"] is not None]
    if league and league[0].get("stands_out"):  # beyond noise: doorstep.metrics.standout_courier
        out["couriers"] = standout_courier_finding(league[0], now=True)
    elif len(league) > 1:
        rates = [r["complaints_per_1000"] for r in league]
        out["couriers"] = f"No courier stands out: {min(rates):.0f} to {max(rates):.0f} complaints per 1,000 shipments"
    return out


def _day(iso_day: str) -> str:
    return datetime.fromisoformat(iso_day).strftime("%a %d %b")


def _picked(event: Any, name: str, field: str) -> str | None:
    """The value a click on an Altair chart picked (``on_select``), if any."""
    selection = (getattr(event, "selection", None) or (event or {}).get("selection") or {}) if event else {}
    points = selection.get(name) or []
    if points and isinstance(points, list):
        return points[0].get(field)
    return None


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

    titles = chart_findings(data)
    # Two rows of three, what was said and how the team answered: six in one row read "First respo…" and
    # "93 …" at 1024 px with the sidebar open.
    m = [*st.columns(3), *st.columns(3)]
    m[0].metric("Mentions", counts["mentions"], _delta(head["mentions"]), delta_color="off")
    m[1].metric("Complaints", counts["complaints"], _delta(head["complaints"]), delta_color="inverse")
    m[2].metric("Negative share", _pct(counts["negative_share"]))
    m[3].metric("First response (median)", _minutes(counts["first_response_median_min"]))
    m[4].metric("SLA attainment", _pct(counts["sla_attainment"]))
    m[5].metric("Resolution rate", _pct(counts["resolution_rate"]))
    st.caption(escape_md(
        f"{start.astimezone(config.tz):%a %d %b} – {(end - timedelta(seconds=1)).astimezone(config.tz):%a %d %b} "
        f"({config.timezone}); first response p90 {_minutes(counts['first_response_p90_min'])}; "
        f"escalations: {counts.get('escalations', 0)}; "
        + ("no data in the previous window, so no change is shown" if head["mentions"].get("previous_empty")
           else "changes against the previous window as it stood the same time before")
        + ". Click a bar of the intent or courier chart for its open cases."
    ))
    # How much of these figures is the model's guess (posts still for review), as the report's brief says it.
    guesses = guess_notes(data)
    said = [guesses[key] for key in ("mentions", "labelled", "complaints") if key in guesses]
    if said:
        st.caption(escape_md(" ".join(said)))

    daily = [dict(r) for r in data["daily"]]
    whole = alt.Axis(tickMinStep=1, format="d")
    left, right = st.columns(2)
    with left:
        st.subheader(escape_md(titles["mentions"]))
        chart = alt.Chart(alt.Data(values=daily)).mark_bar().encode(
            x=alt.X("day:O", title=None, axis=DAY_AXIS), y=alt.Y("sum(mentions):Q", title="mentions", axis=whole),
            color=alt.Color("brand:N", legend=BRAND_LEGEND), tooltip=["day:O", "brand:N", "mentions:Q"],
        ).properties(height=260)
        st.altair_chart(chart, width="stretch")
    with right:
        st.subheader(escape_md(titles["complaints"]))
        chart = alt.Chart(alt.Data(values=daily)).mark_line(point=True).encode(
            x=alt.X("day:O", title=None, axis=DAY_AXIS), y=alt.Y("complaints:Q", axis=whole),
            color=alt.Color("brand:N", legend=BRAND_LEGEND), tooltip=["day:O", "brand:N", "complaints:Q"],
        ).properties(height=260)
        st.altair_chart(chart, width="stretch")

    left, right = st.columns(2)
    with left:
        st.subheader(escape_md(titles["sentiment"]))
        sentiment = [r for r in daily if r.get("net_sentiment") is not None]
        chart = alt.Chart(alt.Data(values=sentiment)).mark_line(point=True).encode(
            x=alt.X("day:O", title=None, axis=DAY_AXIS),
            y=alt.Y("net_sentiment:Q", scale=alt.Scale(domain=[-1, 1]), title="net sentiment (-1 to +1)"),
            color=alt.Color("brand:N", legend=BRAND_LEGEND),
            tooltip=["day:O", "brand:N", alt.Tooltip("net_sentiment:Q", format="+.2f"),
                     alt.Tooltip("negative_share:Q", format=".0%")],
        ).properties(height=260)
        rule = alt.Chart(alt.Data(values=[{"y": 0}])).mark_rule(color="#bbb").encode(y="y:Q")
        st.altair_chart(chart + rule, width="stretch")
    with right:
        st.subheader(escape_md(titles["intents"]))
        top_intent = top_intent_finding(data["intents"], now=True)
        if top_intent and top_intent[1]:
            st.caption(escape_md(top_intent[1] + "."))
        pick_intent = alt.selection_point(name="intent", fields=["intent"])
        chart = alt.Chart(alt.Data(values=data["intents"])).mark_bar(cursor="pointer").encode(
            x=alt.X("complaints:Q", axis=whole),
            y=alt.Y("label:N", sort="-x", title=None, axis=alt.Axis(labelLimit=220)),
            tooltip=["label:N", "complaints:Q", alt.Tooltip("share:Q", format=".0%"),
                     alt.Tooltip("guessed:Q", title="of those, the model's guess")],
        ).add_params(pick_intent).properties(height=260)
        event = st.altair_chart(chart, width="stretch", on_select="rerun", key="dash_intent_pick")
        intent = _picked(event, "intent", "intent")
        if intent:
            open_inbox(intent=intent, brand=brand)

    st.subheader(escape_md(titles["couriers"]))
    pick_courier = alt.selection_point(name="courier", fields=["courier"])
    chart = alt.Chart(alt.Data(values=data["couriers"])).mark_bar(cursor="pointer").encode(
        x=alt.X("complaints_per_1000:Q", title="complaints per 1,000 shipments (active, or complained about)"),
        y=alt.Y("courier:N", sort="-x", title=None, axis=alt.Axis(labelLimit=220)),
        color=alt.Color("failed_attempt_rate:Q", title="failed delivery attempts",
                        scale=alt.Scale(scheme="oranges"), legend=alt.Legend(format=".0%")),
        tooltip=["courier:N", "shipments:Q", "active_shipments:Q", "complaints:Q",
                 alt.Tooltip("complaints_guessed:Q", title="of those, the model's guess"), "unlinked_complaints:Q",
                 "failed_attempts:Q", "exceptions:Q"],
    ).add_params(pick_courier).properties(height=200)
    event = st.altair_chart(chart, width="stretch", on_select="rerun", key="dash_courier_pick")
    courier = _picked(event, "courier", "courier")
    if courier:
        open_inbox(courier=courier, brand=brand)

    answers_by_channel_and_hour(store, config, start, end, brand)

    from console.dialogue import answer_rates_section

    answer_rates_section(store, start, end, config, brand)

    st.subheader("Listener health")
    try:
        from listeners.health import listener_health

        health = listener_health(store)
    except ImportError:  # pragma: no cover - listeners package absent
        health = []
    if health:
        st.dataframe(listener_rows(health, config), hide_index=True, width="stretch")
        st.caption(escape_md(f"Times in {config.timezone}."))
    else:
        st.caption("No listener has run yet.")
    imports_section(store, config)
    if data["gaps"]:
        st.caption("Possible data gaps: hours already past with no posts where the usual traffic would have brought some")
        st.dataframe([{**{k: g[k] for k in ("from_local", "to_local", "hours", "expected_mentions")},
                       "channel": channel_name(g["channel"])} for g in data["gaps"]],
                     column_order=("channel", "from_local", "to_local", "hours", "expected_mentions"),
                     hide_index=True, width="stretch")


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
        row["channel"] = channel_name(row["channel"])
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
