"""Clock changes (Europe/London) in the spike alert's "same hour of the week" and the weekly report's listener line.

Time audit findings 1 and 2: the spike rule stepped back whole weeks in UTC, so on the first Monday after the clocks
went forward 10:00 BST was compared with earlier Mondays at 09:00 GMT-equivalent (a false "Spike" to Slack and
e-mail); after the clocks go back the reverse hid a real spike. The weekly report named a listener's last poll in
UTC while its other lines are in the shop's time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from doorstep.config import parse_config
from doorstep.models import Case, Mention
from doorstep.reports import build_weekly_report, render_html
from doorstep.store import Store
from responders.alerts import AlertEngine, detect_spikes
from responders.outbox import list_messages

from conftest import labels
from test_alerts import alert_config

UTC = timezone.utc
LONDON = ZoneInfo("Europe/London")
#: Complaints per London hour, the same every day: a morning rush at 09-10, quiet nights. Hour 01 differs from
#: 00 and 02, so a comparison with the wrong hour around a clock change shows.
PROFILE = {h: 1 for h in range(24)} | {1: 4, 2: 2, 7: 3, 8: 10, 9: 25, 10: 25, 11: 5, 12: 5, 17: 15}


def steady_traffic(store: Store, first: datetime, now: datetime, last_hour: int | None = None) -> None:
    """Larkspur complaints from ``first`` to ``now`` (UTC hours), PROFILE[London hour] an hour: both 01:00 hours of
    25 Oct get their share, 29 Mar has no 01:00. ``last_hour``: the complaints of the hour before ``now`` instead."""
    case_id = store.insert_case(Case(brand="Larkspur", channel="x", opened_at=first))
    complaint = labels("late_delivery", "negative", True, 0.4)
    posts: list[Mention] = []
    start = first.astimezone(UTC)
    while start < now:
        count = PROFILE[start.astimezone(LONDON).hour]
        if last_hour is not None and start == now - timedelta(hours=1):
            count = last_hour
        for i in range(count):
            n = len(posts)
            posts.append(Mention(channel="x", external_id=f"d{n}", text="larkspur parcel late again", labels=complaint,
                                 created_at=start + timedelta(seconds=60 + (i * 3540) // count), case_id=case_id,
                                 author_handle=f"c{n % 89}"))
        start += timedelta(hours=1)
    with store.transaction():
        store.insert_mentions(posts)


def spike_config():
    return alert_config(spike={"dimensions": ["brand"]}, apprise="json://127.0.0.1:9/unused")


def larkspur(store: Store, now: datetime):
    return {value: result for _, value, result in detect_spikes(store, spike_config(), now.astimezone(UTC))}["Larkspur"]


def test_no_spike_on_the_first_monday_after_the_clocks_go_forward(store: Store) -> None:
    """Mon 30 Mar 2026 09-10 BST had its usual 25; the Mondays before at 09-10 GMT had 25 too (not 08-09's 10)."""
    now = datetime(2026, 3, 30, 10, 0, tzinfo=LONDON)
    steady_traffic(store, datetime(2026, 3, 1, tzinfo=LONDON), now.astimezone(UTC))
    AlertEngine(store, spike_config(), now=lambda: now.astimezone(UTC)).run_once()
    assert [m.text.splitlines()[0] for m in list_messages(store, kind="alert")] == []
    result = larkspur(store, now)
    assert (result.observed, result.expected, result.spike) == (25, 25.0, False), result


def test_a_real_spike_is_still_seen_on_the_monday_after_the_clocks_go_back(store: Store) -> None:
    """Mon 26 Oct 2026 08-09 GMT got 30 complaints where 08-09 BST on earlier Mondays had 10 (09-10 BST had 25)."""
    now = datetime(2026, 10, 26, 9, 0, tzinfo=LONDON)
    steady_traffic(store, datetime(2026, 9, 27, tzinfo=LONDON), now.astimezone(UTC), last_hour=30)
    ids = AlertEngine(store, spike_config(), now=lambda: now.astimezone(UTC)).run_once()
    texts = [m.text for m in list_messages(store, kind="alert")]
    assert len(ids) == 1 and "Spike: brand Larkspur" in texts[0], texts
    assert "30 complaints about brand Larkspur in the last hour vs 10.0 expected (same hour of week, 4-week mean)" \
        in texts[0], texts


def test_the_repeated_hour_is_counted_once(store: Store) -> None:
    """Sun 1 Nov 01-02 GMT: a week before, 01:00-02:00 happened twice (BST, then GMT); the first is the week's hour."""
    now = datetime(2026, 11, 1, 2, 0, tzinfo=LONDON)
    steady_traffic(store, datetime(2026, 10, 1, tzinfo=LONDON), now.astimezone(UTC))
    result = larkspur(store, now)
    assert (result.observed, result.expected, result.method) == (4, 4.0, "same hour of week, 4-week mean"), result


def test_the_skipped_hour_is_left_out_not_counted_as_quiet(store: Store) -> None:
    """Sun 5 Apr 01-02 BST: on 29 Mar there was no 01:00-02:00, so three earlier Sundays make the mean."""
    now = datetime(2026, 4, 5, 2, 0, tzinfo=LONDON)
    steady_traffic(store, datetime(2026, 3, 1, tzinfo=LONDON), now.astimezone(UTC))
    result = larkspur(store, now)
    assert (result.observed, result.expected, result.method) == (4, 4.0, "same hour of week, 3-week mean"), result


def test_the_listener_down_line_is_in_the_shops_time(store: Store) -> None:
    """Last good poll Thu 22 Oct 2026 13:05 UTC = 14:05 BST; the report's period and gap lines are in London time."""
    store.db.execute("insert into listener_health (name, last_success_at, last_error_at, last_error, errors) "
                     "values ('x', '2026-10-22T13:05:00+00:00', '2026-10-23T09:00:00+00:00', 'HTTP 401', 3)")
    config = parse_config({"timezone": "Europe/London", "brands": [{"name": "Larkspur", "keywords": ["larkspur"]}]})
    report = build_weekly_report(store, config, "2026-W43", charts=False, now=datetime(2026, 12, 1, tzinfo=UTC))
    down = [w for w in report.warnings if w.startswith("Listener X was down")]
    assert down and "no successful poll since Thu 22 Oct 14:05 (last error: HTTP 401)" in down[0], report.warnings
    assert "UTC" not in down[0]
    assert "no successful poll since Thu 22 Oct 14:05 (last error" in render_html(report)
