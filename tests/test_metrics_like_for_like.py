""""vs last week" compares like with like (lead audit, findings 2 and 4).

Before: the dashboard's "Last 7 days" is whole local days ending tomorrow at midnight, so at 09:30 it held six days
and nine and a half hours, and was compared with seven whole days: complaints "fell" every morning, shown green.
And a week's resolution rate counts its cases resolved by now, while last week's cases had a week longer to be
resolved: a team that keeps up read "worse" every week (94.1 % vs 100 %). Now the previous window is read as the
store stood the same time before: up to the same hour of its last day, with what was answered and resolved by then.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from doorstep import metrics
from doorstep.models import Case, Labels, Mention
from doorstep.store import Store

TZ = "Europe/London"
#: A Monday in winter (London is UTC then), the day the comparison is made.
MONDAY = datetime(2026, 11, 30, tzinfo=timezone.utc)
COMPLAINT = Labels(sentiment="negative", sentiment_scores={"negative": 0.9, "neutral": 0.05, "positive": 0.05},
                   complaint=True, complaint_score=0.9, intent="late_delivery", intent_scores={"late_delivery": 1.0},
                   urgency=0.2, model="fixture")


def _steady_shop(store: Store, first: datetime, last: datetime, every: timedelta, resolve_after: timedelta) -> None:
    """A complaint every ``every`` from ``first`` to ``last``, each its own case, answered in 30 minutes and
    resolved ``resolve_after`` after it was posted: a team that keeps up, week after week."""
    at, n = first, 0
    while at < last:
        case_id = store.insert_case(Case(status="resolved", brand="Larkspur", channel="x", author_handle=f"c{n}",
                                         complaint=True, intent="late_delivery", opened_at=at, last_activity_at=at,
                                         first_response_due=at + timedelta(hours=1),
                                         first_response_at=at + timedelta(minutes=30),
                                         resolution_due=at + timedelta(days=5), resolved_at=at + resolve_after,
                                         thread_id=f"t{n}"))
        store.insert_mention(Mention(channel="x", external_id=f"t{n}", text="my order is late", created_at=at,
                                     author_handle=f"c{n}", thread_id=f"t{n}", case_id=case_id, labels=COMPLAINT))
        at, n = at + every, n + 1


def test_a_window_still_running_is_compared_with_the_same_hours_of_the_one_before(store: Store) -> None:
    now = MONDAY + timedelta(hours=9, minutes=30)
    _steady_shop(store, MONDAY - timedelta(days=14), now, timedelta(hours=2), timedelta(hours=4))
    start, end = MONDAY - timedelta(days=6), MONDAY + timedelta(days=1)  # the dashboard's "Last 7 days"
    compared = metrics.headline_comparison(store, start, end, TZ, now=now)
    complaints = compared["complaints"]
    # 6 days and 09:30 of complaints every two hours, against the same span of the week before, not 7 whole days.
    assert complaints["value"] == 6 * 12 + 5
    assert (complaints["previous"], complaints["change"]) == (6 * 12 + 5, 0)
    assert compared["mentions"]["change"] == 0


def test_a_weeks_resolution_rate_is_compared_with_last_weeks_as_it_stood_a_week_earlier(store: Store) -> None:
    """A week's report sent on Monday at 08:00: its cases resolved three days after they were opened."""
    sent = MONDAY + timedelta(hours=8)
    _steady_shop(store, MONDAY - timedelta(days=14), MONDAY, timedelta(hours=6), timedelta(days=3))
    start, end = metrics.week_window("2026-W48", TZ)
    compared = metrics.headline_comparison(store, start, end, TZ, now=sent)
    rate = compared["resolution_rate"]
    # Cases opened before Friday 08:00 were resolved by Monday 08:00: 18 of 28, this week and last week alike.
    assert rate["value"] == rate["previous"] == 18 / 28
    assert rate["change"] == 0


def test_a_case_the_team_answered_late_stays_a_breach_when_marked_spam_afterwards(store: Store) -> None:
    """Lead audit (finding 3): four resolved complaints answered publicly, late, were closed as spam the next week
    (`doorstep case close ... --spam`), and last week's report then read "SLA met 98 %" instead of 95 % and lost
    them from "first response late". A case the team answered is the team's case, whatever it is marked later:
    its response and clocks count; a spam case nobody answered still owes nothing."""
    from doorstep.closing import close_cases

    start, end = metrics.week_window("2026-W48", TZ)
    at = start + timedelta(days=1)
    late = store.insert_case(Case(status="resolved", brand="Larkspur", channel="x", author_handle="jane",
                                  opened_at=at, last_activity_at=at, first_response_due=at + timedelta(hours=1),
                                  first_response_at=at + timedelta(hours=5), resolved_at=at + timedelta(hours=6),
                                  thread_id="late"))
    bot = store.insert_case(Case(status="new", brand="Larkspur", channel="x", author_handle="bot", opened_at=at,
                                 last_activity_at=at, first_response_due=at + timedelta(hours=1), thread_id="bot"))
    later = MONDAY + timedelta(days=2)
    assert [c.closed for c in close_cases(store, [late, bot], "cli", as_spam=True, now=later)] == [True, True]
    week = metrics.headline(store, start, end, TZ, as_of=later)
    assert (week["cases_opened"], week["sla_eligible"], week["sla_met"]) == (1, 1, 0)
    notable = {n["case_id"]: n["reasons"] for n in metrics.notable_cases(store, start, end, TZ)}
    assert notable.get(late) == ["first response late"] and bot not in notable
