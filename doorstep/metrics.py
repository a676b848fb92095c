"""The one query layer behind every figure a lead reads: the weekly report and the console's dashboard.

Why one module: when the report says "SLA attainment 91 %" and the dashboard says 88 %, nobody
trusts either. Every figure is defined here once, in SQL over the store, and both readers call
these functions. Each function takes ``(store, start, end, tz, brand=None)``:

- ``start``/``end``: aware datetimes, the half-open window ``[start, end)`` (UTC inside; see
  :func:`week_window` for ISO weeks in the configured zone);
- ``tz``: the configured zone (name or tzinfo) - days and hours are *local* days and hours;
- ``brand``: only mentions/cases attributed to that brand (``cases.brand``, the same
  attribution the inbox filters on), shipments of that brand's orders.

They return plain dicts and lists (JSON-serialisable apart from nothing: times are ISO strings),
so the console can put them in a dataframe and the report in a template.

Definitions (the tests recompute each with straight SQL):

- *mention*: an inbound post (``outbound = 0``) created in the window.
- *complaint*: such a mention labelled ``complaint = 1`` (posts, not cases), written by its case's customer: a
  stranger's post in a customer's thread (``by_customer = 0``: "same here", "@Shop answer her!") is no complaint
  about her order, and a viral thread's 1,200 of them made Evri 13,415 complaints per 1,000 shipments (audit of a
  viral day). Negative and positive shares count every mention: they are the brand's mood.
- A case an agent closed as spam (``cases.closed_as = 'spam'``, doorstep/closing.py): its posts are no complaints
  and no part of the mood (negative, positive, net sentiment, the daily trend, the courier league, themes): 500
  spam-bot cases of a viral day read "parcel lost? DM me" as negative complaints (audit of a viral day). They
  still count as mentions (what the listeners saw); ``closed_as_spam`` counts the cases resolved in the window
  that are closed as spam. Nor are they the team's cases: no response was owed, so they are left out of cases
  opened, response times, SLA attainment, the resolution rate and the notable cases, unless the team answered one
  (its answer was given, late or not: marked spam afterwards, it stays in them).
- *negative share*: negative / mentions with a sentiment label; *net sentiment*:
  (positive - negative) / mentions with a sentiment label, from -1 to +1.
- *first-response time*: for cases opened in the window that have a first response,
  ``first_response_at - opened_at`` in minutes; median and p90 use linear interpolation
  between closest ranks (numpy's default).
- *SLA attainment*: of the cases opened in the window whose first-response clock has run out
  or stopped by ``end`` (answered, or unanswered with ``first_response_due < end``), the share
  answered by ``first_response_due``. Unanswered cases still inside their SLA are not counted.
- *resolution rate*: cases opened in the window that are resolved (``resolved_at`` set) / cases
  opened in the window.
- *escalations*: escalations made in the window (one to a team by Slack and e-mail counts once):
  outbound messages of kind ``escalation`` created in the window, not cancelled, one per escalation.
- A case an agent merged into another (``merged_into`` set) is not a case of its own in any of
  these figures: its posts and clocks are the kept case's.
- *the model's guess*: a post whose labels no one has checked and the classifier does not vouch for
  (``needs_review = 1``): written in a language it was not trained on (``read_language``, or the network's own
  language tag), or read with too little confidence. Once a person reviews it the flag is cleared and its labels
  are no guess (the console's "written in German: labels are a guess" follows the same rule,
  ``doorstep.cases.score_priority``). :func:`label_guesses` counts them for each figure they feed, and the
  intents and the courier league carry theirs (``guessed``, ``complaints_guessed``), so a reader is told how much
  of a figure is the model's guess.
- *active shipments* of a courier: shipments with at least one tracking event in the window.
- *shipments of the week* (the courier league's base): active shipments plus the shipments that
  a complaint or negative post of the window is about; complaints per 1,000 shipments count only
  complaints about those shipments (see :func:`courier_league`).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from doorstep.config import courier_key
from doorstep.models import utcnow
from doorstep.store import Store, iso, parse_time
from doorstep.store.mentions import customers_posts_sql

__all__ = [
    "HEADLINE_KEYS",
    "week_window",
    "previous_window",
    "headline",
    "headline_comparison",
    "daily_trend",
    "complaints_by_intent",
    "courier_league",
    "standout_courier",
    "tracking_problem_complaints",
    "label_guesses",
    "top_themes",
    "notable_cases",
    "listener_status",
    "data_gaps",
    "dashboard",
]

TzLike = str | tzinfo

#: Headline figures in the order the report shows them.
HEADLINE_KEYS: tuple[str, ...] = (
    "mentions",
    "complaints",
    "negative_share",
    "net_sentiment",
    "first_response_median_min",
    "first_response_p90_min",
    "sla_attainment",
    "resolution_rate",
    "escalations",
)

#: Figures where a rise is bad news (the report colours the week-over-week change by this).
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {"complaints", "negative_share", "first_response_median_min", "first_response_p90_min", "escalations"}
)

#: Tracking statuses that mean "the courier had a problem with this parcel".
TRACKING_PROBLEMS: tuple[str, ...] = ("exception", "attempt_failed")


#: A post that speaks for its case's customer (the store's rule; a post with no case counts too).
BY_CUSTOMER = customers_posts_sql("m")
#: A post whose case was not closed as spam (``c``: the post's case, joined; a post with no case counts).
NOT_SPAM = "coalesce(c.closed_as, '') != 'spam'"
#: A case of the team's: not closed as spam, or answered by the team all the same. Why: closing answered cases as
#: spam afterwards made their late answers vanish from a past week's SLA figures ("95 %" became "98 %", lead audit);
#: the answer was given, so its clocks count. The posts of such a case still count as spam's (the figures of posts).
TEAMS_CASE = f"({NOT_SPAM} or c.first_response_at is not null)"
#: A complaint, as the module docstring defines it.
COMPLAINT = f"m.complaint = 1 and {BY_CUSTOMER} and {NOT_SPAM}"


# ---------------------------------------------------------------------------- windows
def _zone(tz: TzLike) -> tzinfo:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


#: The years a report week may be in: a week of year 9999 (or 1) runs past what a datetime holds once
#: the following Monday or the week before (for the comparison) is counted, an OverflowError
#: instead of a message; before 1970 can only be a typo.
FIRST_REPORT_YEAR, LAST_REPORT_YEAR = 1970, 9998


def week_window(week: str, tz: TzLike) -> tuple[datetime, datetime]:
    """``"2026-W47"`` -> [Monday 00:00 local, next Monday 00:00 local) as UTC datetimes.

    The boundaries are local midnights, so a week that contains a clock change is 167 or 169
    hours long: a post at Sunday 23:30 local belongs to the week it was written in, whatever
    the UTC offset.
    """
    match = re.fullmatch(r"(\d{4})-?W(\d{1,2})", week.strip(), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"week {week!r}: expected an ISO week like 2026-W47")
    year, number = int(match.group(1)), int(match.group(2))
    if not FIRST_REPORT_YEAR <= year <= LAST_REPORT_YEAR:
        raise ValueError(f"week {week!r}: outside the supported years {FIRST_REPORT_YEAR} to {LAST_REPORT_YEAR}")
    try:
        monday = date.fromisocalendar(year, number, 1)
    except ValueError as exc:
        raise ValueError(f"week {week!r}: {exc}") from None
    zone = _zone(tz)
    start = datetime.combine(monday, datetime.min.time(), tzinfo=zone)
    end = datetime.combine(monday + timedelta(days=7), datetime.min.time(), tzinfo=zone)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def previous_window(start: datetime, end: datetime, tz: TzLike) -> tuple[datetime, datetime]:
    """The window of the same local length just before ``[start, end)`` (last week for a week)."""
    zone = _zone(tz)
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    days = (local_end.date() - local_start.date()).days
    prev_start = datetime.combine(local_start.date() - timedelta(days=days), local_start.time(), tzinfo=zone)
    return prev_start.astimezone(timezone.utc), start


def _bounds(start: datetime, end: datetime) -> tuple[str, str]:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware datetimes")
    if end <= start:
        raise ValueError(f"empty window: end {end.isoformat()} is not after start {start.isoformat()}")
    return iso(start) or "", iso(end) or ""


def _brand_clause(brand: str | None, alias: str = "c") -> tuple[str, list[Any]]:
    return (f" and {alias}.brand = ?", [brand]) if brand else ("", [])


def escalation_of(key: str | None, channel: str, target: str | None) -> str | None:
    """Which escalation an escalation message carries: one escalation to a team reached by Slack and
    e-mail is two messages whose idempotency keys are the escalation's own key + ``:channel:target``
    (``responders.escalation.escalate``), and a lead counts it once. A message written otherwise
    (an import, an older version) is an escalation of its own."""
    suffix = f":{channel}:{target or ''}"
    return key[: -len(suffix)] if key and key.endswith(suffix) else key


def _ratio(part: float, whole: float) -> float | None:
    return None if not whole else part / whole


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _minutes(later: str, earlier: str) -> float:
    return ((parse_time(later) or datetime.min) - (parse_time(earlier) or datetime.min)).total_seconds() / 60.0


# ---------------------------------------------------------------------------- headline
def headline(store: Store, start: datetime, end: datetime, tz: TzLike, brand: str | None = None,
             as_of: datetime | None = None) -> dict[str, Any]:
    """The headline figures of one window (see the module docstring for each definition).

    Rates are fractions 0-1 (``None`` when there is nothing to divide by), times in minutes.
    Also returns the counts behind each rate so a reader can check them.

    ``as_of`` (default now): the figures as the store stood then: posts, cases and escalations up to it, a case
    answered or resolved only if it was by then. Why: a window is compared with the one before as it stood the
    same time before (:func:`headline_comparison`); now (the default) it changes nothing.
    """
    lo, hi = _bounds(start, end)  # checked as given: an empty or naive window is refused in its own words
    as_of = utcnow() if as_of is None else as_of
    if start < as_of and as_of + timedelta(seconds=1) < end:
        hi = iso(as_of + timedelta(seconds=1)) or hi  # the store keeps whole seconds: as_of's own second counts
    bclause, bparams = _brand_clause(brand)
    db = store.db
    row = db.execute(
        "select count(*), "
        f"count(case when {COMPLAINT} then 1 end), "
        f"count(case when m.sentiment = 'negative' and {NOT_SPAM} then 1 end), "
        f"count(case when m.sentiment = 'positive' and {NOT_SPAM} then 1 end), "
        f"count(case when m.sentiment is not null and {NOT_SPAM} then 1 end) "
        "from mentions m left join cases c on c.id = m.case_id "
        f"where m.outbound = 0 and m.created_at >= ? and m.created_at < ?{bclause}",
        [lo, hi, *bparams],
    ).fetchone()
    mentions, complaints, negative, positive, labelled = (int(v) for v in row)

    cases = list(
        db.query(
            # A case merged into another is part of that issue, not one of its own.
            # A case closed as spam is no case of the team's: no response owed (counted in closed_as_spam).
            "select id, opened_at, first_response_at, first_response_due, resolved_at from cases c "
            f"where c.opened_at >= ? and c.opened_at < ? and c.merged_into is null and {TEAMS_CASE}{bclause}",
            [lo, hi, *bparams],
        )
    )
    def by_then(value: str | None) -> str | None:
        """A time the store holds, if it had happened by ``as_of``."""
        return value if value and parse_time(value) <= as_of else None  # type: ignore[operator]

    response_minutes = [
        _minutes(c["first_response_at"], c["opened_at"]) for c in cases if by_then(c["first_response_at"])
        and c["opened_at"]
    ]
    # For a week still in progress, an unanswered case is only a breach once its due time has passed.
    breach_cutoff = min(end, as_of)
    sla_eligible = sla_met = 0
    for c in cases:
        due, answered = c["first_response_due"], by_then(c["first_response_at"])
        if not due:
            continue
        if answered:
            sla_eligible += 1
            sla_met += parse_time(answered) <= parse_time(due)  # type: ignore[operator]
        elif parse_time(due) < breach_cutoff:  # type: ignore[operator]
            sla_eligible += 1
    resolved = sum(1 for c in cases if by_then(c["resolved_at"]))
    closed_as_spam = int(db.execute(
        # No status test: the mark is cleared when a case opens again, and the test made SQLite read every resolved
        # case (129k of a year-old shop, three times per dashboard view: scale audit); idx_cases_spam_resolved serves.
        "select count(*) from cases c where c.closed_as = 'spam' and c.resolved_at >= ? "
        f"and c.resolved_at < ? and c.merged_into is null{bclause}", [lo, min(hi, iso(as_of) or hi), *bparams]
    ).fetchone()[0])
    escalations = len({
        escalation_of(key, channel, target) or f"message {message_id}"
        for message_id, key, channel, target in db.execute(
            "select o.id, o.idempotency_key, o.channel, o.target from outbound_messages o left join cases c on c.id = o.case_id "
            f"where o.kind = 'escalation' and o.status != 'cancelled' and o.created_at >= ? and o.created_at < ?{bclause}",
            [lo, hi, *bparams],
        ).fetchall()
    })
    return {
        "mentions": mentions,
        "complaints": complaints,
        "negative": negative,
        "positive": positive,
        "labelled": labelled,
        "negative_share": _ratio(negative, labelled),
        "net_sentiment": _ratio(positive - negative, labelled),
        "cases_opened": len(cases),
        "responded": len(response_minutes),
        "first_response_median_min": percentile(response_minutes, 50),
        "first_response_p90_min": percentile(response_minutes, 90),
        "sla_eligible": sla_eligible,
        "sla_met": sla_met,
        "sla_attainment": _ratio(sla_met, sla_eligible),
        "resolved": resolved,
        "resolution_rate": _ratio(resolved, len(cases)),
        "escalations": escalations,
        "closed_as_spam": closed_as_spam,
    }


def headline_comparison(store: Store, start: datetime, end: datetime, tz: TzLike,
                        brand: str | None = None, current: dict[str, Any] | None = None,
                        now: datetime | None = None) -> dict[str, dict[str, Any]]:
    """Each headline figure with last window's value and the change, for "vs last week".

    ``{key: {"value", "previous", "change", "lower_is_better"}}``; ``change`` is the difference
    (percentage points for rates, minutes for times, a count for counts), ``None`` if either
    side is missing. Counts also get ``change_pct``. ``current``: this window's :func:`headline` as of ``now``,
    where the caller has it already (the dashboard computed it twice: a second or more on a year-old shop, scale
    audit). ``now``: when the comparison is made (default: now).

    Like with like: the previous window is read as the store stood one window earlier (:func:`headline`'s
    ``as_of``). The dashboard's "Last 7 days" runs to tomorrow's midnight: at 09:30 it held 6 days and 9.5 hours
    and was compared with 7 whole days, so complaints "fell" every morning, shown green; and a week's cases,
    resolved by now, were compared with last week's, which had had a week longer: "94 % vs 100 % (worse)" for a
    team that kept up (lead audit).
    """
    now = utcnow() if now is None else now
    figures = current if current is not None else headline(store, start, end, tz, brand, as_of=now)
    prev_start, prev_end = previous_window(start, end, tz)
    before = headline(store, prev_start, prev_end, tz, brand, as_of=now - (start - prev_start))
    # A previous window without a single mention is no baseline (the shop was not listening
    # yet): "+737 mentions" against it would read as a surge. No change is stated then.
    empty_before = before["mentions"] == 0
    out: dict[str, dict[str, Any]] = {}
    for key in HEADLINE_KEYS:
        value, previous = figures[key], (None if empty_before else before[key])
        change = None if value is None or previous is None else value - previous
        entry = {"value": value, "previous": previous, "change": change, "lower_is_better": key in LOWER_IS_BETTER,
                 "previous_empty": empty_before}
        if key in ("mentions", "complaints", "escalations"):
            entry["change_pct"] = _ratio(change or 0, previous) if previous else None
        out[key] = entry
    return out


# ---------------------------------------------------------------------------- trends
def _local_day(value: str, zone: tzinfo) -> str:
    return (parse_time(value) or datetime.min).astimezone(zone).date().isoformat()


def _days(start: datetime, end: datetime, zone: tzinfo) -> list[str]:
    day, last = start.astimezone(zone).date(), (end - timedelta(microseconds=1)).astimezone(zone).date()
    out = []
    while day <= last:
        out.append(day.isoformat())
        day += timedelta(days=1)
    return out


def daily_trend(store: Store, start: datetime, end: datetime, tz: TzLike, brand: str | None = None) -> list[dict[str, Any]]:
    """One row per local day and brand: mentions, complaints, negative, positive, net sentiment.

    Every day of the window appears for every brand seen in it (zeros included), so a chart
    shows a silent day as a dip rather than skipping it. Mentions with no brand are under
    ``"(no brand)"``.
    """
    lo, hi = _bounds(start, end)
    zone = _zone(tz)
    bclause, bparams = _brand_clause(brand)
    rows = store.db.execute(
        f"select m.created_at, coalesce(c.brand, '(no brand)'), case when {COMPLAINT} then 1 else 0 end, m.sentiment, "
        f"case when {NOT_SPAM} then 0 else 1 end from mentions m left join cases c on c.id = m.case_id "
        f"where m.outbound = 0 and m.created_at >= ? and m.created_at < ?{bclause}",
        [lo, hi, *bparams],
    ).fetchall()
    cells: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    brands: set[str] = {brand} if brand else set()
    for created_at, brand_name, complaint, sentiment, spam in rows:
        cell = cells[(_local_day(created_at, zone), brand_name)]
        brands.add(brand_name)
        cell["mentions"] += 1
        if spam:  # a mention still, but no complaint and no part of the mood
            continue
        cell["complaints"] += int(complaint or 0)
        cell["labelled"] += sentiment is not None
        cell["negative"] += sentiment == "negative"
        cell["positive"] += sentiment == "positive"
    out = []
    for day in _days(start, end, zone):
        for name in sorted(brands):
            cell = cells.get((day, name), Counter())
            out.append(
                {
                    "day": day,
                    "brand": name,
                    "mentions": cell["mentions"],
                    "labelled": cell["labelled"],
                    "complaints": cell["complaints"],
                    "negative": cell["negative"],
                    "positive": cell["positive"],
                    "negative_share": _ratio(cell["negative"], cell["labelled"]),
                    "net_sentiment": _ratio(cell["positive"] - cell["negative"], cell["labelled"]),
                }
            )
    return out


def complaints_by_intent(store: Store, start: datetime, end: datetime, tz: TzLike,
                         brand: str | None = None) -> list[dict[str, Any]]:
    """Complaint mentions per intent, most frequent first, with their share of all complaints."""
    lo, hi = _bounds(start, end)
    bclause, bparams = _brand_clause(brand)
    rows = store.db.execute(
        "select coalesce(m.intent, 'unlabelled'), count(*), count(case when m.needs_review = 1 then 1 end) "
        f"from mentions m left join cases c on c.id = m.case_id "
        f"where m.outbound = 0 and {COMPLAINT} and m.created_at >= ? and m.created_at < ?{bclause} "
        "group by 1 order by 2 desc, 1",
        [lo, hi, *bparams],
    ).fetchall()
    total = sum(n for _, n, _ in rows)
    from doorstep.cases import INTENT_LABELS

    # ``guessed``: of those complaints, how many carry the model's guess (see the module docstring).
    return [
        {"intent": intent, "label": INTENT_LABELS.get(intent, intent), "complaints": n, "share": _ratio(n, total),
         "guessed": int(guessed or 0)}
        for intent, n, guessed in rows
    ]


# ---------------------------------------------------------------------------- couriers
def courier_league(store: Store, start: datetime, end: datetime, tz: TzLike,
                   brand: str | None = None) -> list[dict[str, Any]]:
    """Couriers compared fairly: complaints and negative mentions per 1,000 shipments of the week.

    Raw complaint counts punish the courier that carries most parcels, so each count is divided
    by the courier's shipments of the week; and the shipments divided by are the shipments the
    posts are about. ``shipments``: those with a tracking event in the window (``active_shipments``)
    plus those that a complaint or negative post of the window is about (through its case's
    tracking number), which are often parcels that did *not* move: lost or stuck. ``complaints`` /
    ``negative_mentions``: complaint / negative posts of the window about one of those shipments,
    counted for the shipment's courier (the carrier of the parcel, even where the case names another).
    A complaint on a case that names the courier but links no known shipment is not about any
    of them: it is counted apart as ``unlinked_complaints`` and is in no rate.
    Also: failed-attempt and exception rates (share of active shipments with such an event in
    the window) and complaints that followed a tracking problem on the linked shipment.
    Sorted by complaints per 1,000 shipments, worst first; couriers with only unlinked complaints
    come last with ``None`` rates. ``stands_out`` is true on the first row only when
    :func:`standout_courier` says its rate is beyond noise.
    """
    lo, hi = _bounds(start, end)
    bclause, bparams = _brand_clause(brand)
    oclause, oparams = (" and o.brand = ?", [brand]) if brand else ("", [])
    db = store.db
    stats: dict[str, dict[str, Any]] = {}
    # One courier is one row however its name was typed in the shop's files ("UPS", "ups", "UPS "):
    # rows are keyed by courier_key and named by the spelling most of its rows use.
    spellings: dict[str, Counter[str]] = {}

    def row_for(courier: str, seen: int = 1) -> dict[str, Any]:
        key = courier_key(courier)
        spellings.setdefault(key, Counter())[courier.strip()] += seen
        return stats.setdefault(
            key,
            {"courier": courier, "shipments": 0, "active_shipments": 0, "failed_attempts": 0, "exceptions": 0,
             "complaints": 0, "complaints_guessed": 0, "negative_mentions": 0, "unlinked_complaints": 0,
             "complaints_after_tracking_problem": 0},
        )

    for courier, shipments, failed, exceptions in db.execute(
        "select s.courier, count(distinct e.tracking_number), "
        "count(distinct case when e.status = 'attempt_failed' then e.tracking_number end), "
        "count(distinct case when e.status = 'exception' then e.tracking_number end) "
        "from tracking_events e join shipments s on s.tracking_number = e.tracking_number "
        "left join orders o on o.number = s.order_number "
        f"where e.time >= ? and e.time < ?{oclause} group by s.courier",
        [lo, hi, *oparams],
    ).fetchall():
        # Each parcel has one courier, so the counts of one courier's spellings add up.
        r = row_for(courier, shipments)
        r["active_shipments"] += shipments
        r["failed_attempts"] += failed
        r["exceptions"] += exceptions

    # The base: active shipments (of the brand's orders) plus the shipments the window's complaint and
    # negative posts (on the brand's cases) are about.
    active = (
        "select e.tracking_number from tracking_events e join shipments s on s.tracking_number = e.tracking_number "
        f"left join orders o on o.number = s.order_number where e.time >= ? and e.time < ?{oclause}"
    )
    talked_about = (
        "select c.tracking_number from mentions m join cases c on c.id = m.case_id "
        f"where m.outbound = 0 and (m.complaint = 1 or m.sentiment = 'negative') and {BY_CUSTOMER} and {NOT_SPAM} "
        f"and m.created_at >= ? and m.created_at < ?{bclause}"
    )
    for courier, shipments in db.execute(
        f"select s.courier, count(*) from shipments s where s.tracking_number in ({active}) "
        f"or s.tracking_number in ({talked_about}) group by s.courier",
        [lo, hi, *oparams, lo, hi, *bparams],
    ).fetchall():
        row_for(courier, shipments)["shipments"] += shipments

    for courier, complaints, negative, guessed in db.execute(
        "select s.courier, count(case when m.complaint = 1 then 1 end), count(case when m.sentiment = 'negative' then 1 end), "
        "count(case when m.complaint = 1 and m.needs_review = 1 then 1 end) "
        "from mentions m join cases c on c.id = m.case_id join shipments s on s.tracking_number = c.tracking_number "
        f"where m.outbound = 0 and {BY_CUSTOMER} and {NOT_SPAM} and m.created_at >= ? and m.created_at < ?{bclause} "
        "group by s.courier",
        [lo, hi, *bparams],
    ).fetchall():
        if complaints or negative:
            r = row_for(courier, 0)
            r["complaints"] += complaints
            r["complaints_guessed"] += int(guessed or 0)
            r["negative_mentions"] += negative

    for courier, unlinked in db.execute(
        "select c.courier, count(*) from mentions m join cases c on c.id = m.case_id "
        f"where m.outbound = 0 and {COMPLAINT} and c.courier is not null "
        "and (c.tracking_number is null or c.tracking_number not in (select tracking_number from shipments)) "
        f"and m.created_at >= ? and m.created_at < ?{bclause} group by c.courier",
        [lo, hi, *bparams],
    ).fetchall():
        row_for(courier, 0)["unlinked_complaints"] += unlinked

    for item in tracking_problem_complaints(store, start, end, tz, brand):
        if item["courier"]:
            row_for(item["courier"], 0)["complaints_after_tracking_problem"] += 1

    for key, r in stats.items():
        r["courier"] = max(spellings[key].items(), key=lambda item: (item[1], item[0] != item[0].lower(), item[0]))[0]
        n, active_n = r["shipments"], r["active_shipments"]
        r["complaints_per_1000"] = None if not n else 1000.0 * r["complaints"] / n
        r["negative_per_1000"] = None if not n else 1000.0 * r["negative_mentions"] / n
        r["failed_attempt_rate"] = _ratio(r["failed_attempts"], active_n)
        r["exception_rate"] = _ratio(r["exceptions"], active_n)
        r["stands_out"] = False
    league = sorted(
        stats.values(),
        key=lambda r: (r["complaints_per_1000"] is None, -(r["complaints_per_1000"] or 0.0), -r["complaints"], r["courier"]),
    )
    worst = standout_courier(league)
    if worst is not None:
        worst["stands_out"] = True
    return league


def standout_courier(league: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The courier of ``league`` (sorted worst first) whose complaint rate is beyond noise, or None.

    The rule: complaints are counts of rare events, so roughly Poisson, give or take the square
    root of the count expected. The worst courier stands out when its complaints exceed the
    number the *other* couriers' combined rate (their complaints / their shipments) predicts for
    its own shipments by more than two standard deviations (2 x sqrt(expected), at least 2) *and*
    by at least 3 complaints. With one rated courier, or couriers within that band, nobody is
    named "most complaints" (the demo's 2026-W47: UPS's 33 complaints on 122 shipments against
    28.6 expected from the others' rate, 4.4 more where noise is +-10.7).
    """
    rated = [r for r in league if r.get("complaints_per_1000") is not None and r.get("shipments")]
    if len(rated) < 2:
        return None
    worst, rest = rated[0], rated[1:]
    rest_shipments = sum(r["shipments"] for r in rest)
    expected = worst["shipments"] * sum(r["complaints"] for r in rest) / rest_shipments
    excess = worst["complaints"] - expected
    if excess >= 3 and excess > 2 * math.sqrt(max(expected, 1.0)):
        return worst
    return None


def tracking_problem_complaints(store: Store, start: datetime, end: datetime, tz: TzLike,
                                brand: str | None = None) -> list[dict[str, Any]]:
    """Complaint mentions of the window whose linked shipment had an exception or failed
    attempt *before* the post (at any earlier time): the complaints the courier caused.

    One row per complaint mention: mention id, case id, courier, tracking number, the first
    problem status and its time.
    """
    lo, hi = _bounds(start, end)
    bclause, bparams = _brand_clause(brand)
    marks = ",".join("?" * len(TRACKING_PROBLEMS))
    rows = store.db.execute(
        "select m.id, c.id, coalesce(c.courier, s.courier), c.tracking_number, "
        f"  (select e.status from tracking_events e where e.tracking_number = c.tracking_number "
        f"     and e.status in ({marks}) and e.time <= m.created_at order by e.time, e.id limit 1), "
        f"  (select min(e.time) from tracking_events e where e.tracking_number = c.tracking_number "
        f"     and e.status in ({marks}) and e.time <= m.created_at) "
        "from mentions m join cases c on c.id = m.case_id left join shipments s on s.tracking_number = c.tracking_number "
        f"where m.outbound = 0 and {COMPLAINT} and m.created_at >= ? and m.created_at < ?{bclause} "
        "and c.tracking_number is not null order by m.created_at, m.id",
        [*TRACKING_PROBLEMS, *TRACKING_PROBLEMS, lo, hi, *bparams],
    ).fetchall()
    return [
        {"mention_id": r[0], "case_id": r[1], "courier": r[2], "tracking_number": r[3], "problem": r[4], "problem_at": r[5]}
        for r in rows
        if r[4] is not None
    ]


# ---------------------------------------------------------------------------- themes
_STOPWORDS = frozenset(
    """a about above after again against all am an and any are aren't as at be because been before being below
    between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
    few for from further get got had hadn't has hasn't have haven't having he her here hers herself him himself
    his how i i'd i'll i'm i've if in into is isn't it it's its itself just let's me more most my myself no nor
    not now of off on once only or other ought our ours ourselves out over own same she should shouldn't so some
    such than that that's the their theirs them themselves then there there's these they they're this those
    through to too under until up very was wasn't we we're were weren't what when where which while who whom why
    will with won't would wouldn't you you're your yours yourself still yet also even really im ive dont cant
    u ur pls please hi hello hey thanks thank one two us via amp rt where's what's it's that's there's
    want wanted need idea sign yet know tell told much many any anyone anything nothing nobody someone
    time times day days week weeks today yesterday tomorrow now again ever never always already every
    either else back got get getting going gone make made say says said see seen look looking""".split()
)
_TOKEN = re.compile(r"[a-z][a-z']+")
_NOISE = re.compile(r"https?://\S+|www\.\S+|[@#]\w+|\S+@\S+|\d[\w\-/]*")


def _guessed_language(read: str | None, tag: str | None) -> str | None:
    """The language a guessed post was written in, as the console names it ("German"); None where the model was
    merely unsure of an English post (or one whose language nobody identified)."""
    from doorstep.cases import LANGUAGE_NAMES

    if read:  # what the classifier identified: never English ("und": it could not tell which)
        base = re.split(r"[-_]", read.strip().lower())[0]
        return LANGUAGE_NAMES.get(base, read)
    base = re.split(r"[-_]", (tag or "").strip().lower())[0]  # the network's own tag (X's "lang"): "zxx", "qme" are none
    return LANGUAGE_NAMES[base] if base in LANGUAGE_NAMES and base not in ("en", "und") else None


def _guess_tally() -> dict[str, Any]:
    return {"posts": 0, "languages": Counter(), "unsure": 0}


def label_guesses(store: Store, start: datetime, end: datetime, tz: TzLike, brand: str | None = None) -> dict[str, Any]:
    """How much of each figure is the model's guess (module docstring): posts still for review, by the language
    they were written in, or ``unsure`` where the model read an English post with too little confidence.

    Why: the report said "Most complaints were about refund or return (67 %)" of a lost Hermes parcel and a Turkish
    "not delivered", and counted German praise as negative, while the console flagged each of those posts "written
    in German: labels are a guess" (intl audit). Returns ``{"mentions", "labelled", "complaints"}``, each
    ``{"posts", "languages": [{"language", "posts"}] (most first), "unsure"}``: ``mentions`` of all inbound posts
    (whether each is a complaint is a guess), ``labelled`` of those in the mood figures, ``complaints`` of the
    complaints. The intents and the courier league carry their own (:func:`complaints_by_intent`,
    :func:`courier_league`).
    """
    lo, hi = _bounds(start, end)
    bclause, bparams = _brand_clause(brand)
    tallies = {key: _guess_tally() for key in ("mentions", "labelled", "complaints")}
    for read, tag, complaint, labelled, n in store.db.execute(
        f"select m.read_language, m.language, case when {COMPLAINT} then 1 else 0 end, "
        f"case when m.sentiment is not null and {NOT_SPAM} then 1 else 0 end, count(*) "
        "from mentions m left join cases c on c.id = m.case_id "
        f"where m.outbound = 0 and m.needs_review = 1 and m.created_at >= ? and m.created_at < ?{bclause} "
        "group by m.read_language, m.language, 3, 4",
        [lo, hi, *bparams],
    ).fetchall():
        language = _guessed_language(read, tag)
        for key, counts in (("mentions", True), ("labelled", labelled), ("complaints", complaint)):
            if not counts:
                continue
            tally = tallies[key]
            tally["posts"] += int(n)
            if language:
                tally["languages"][language] += int(n)
            else:
                tally["unsure"] += int(n)
    return {key: {"posts": t["posts"], "unsure": t["unsure"],
                  "languages": [{"language": name, "posts": count}
                                for name, count in sorted(t["languages"].items(), key=lambda kv: (-kv[1], kv[0]))]}
            for key, t in tallies.items()}


def _terms(text: str) -> set[str]:
    """Content words and pairs of *adjacent* content words ("driver left", not "says transit" across "in")."""
    words = [w.strip("'") for w in _TOKEN.findall(_NOISE.sub(" | ", text.lower()))]
    keep = [len(w) > 2 and w not in _STOPWORDS for w in words]
    grams = {w for w, k in zip(words, keep) if k}
    grams.update(f"{a} {b}" for a, b, ka, kb in zip(words, words[1:], keep, keep[1:]) if ka and kb and a != b)
    return grams


def _same_post(text: str) -> str:
    """The words of a post without handles, links and numbers: the same complaint sent twice looks the same."""
    return " ".join(_TOKEN.findall(_NOISE.sub(" ", text.lower())))


def top_themes(store: Store, start: datetime, end: datetime, tz: TzLike, brand: str | None = None,
               limit: int = 6, examples: int = 3) -> list[dict[str, Any]]:
    """What this week's complaints are about that usual traffic is not: distinctive words and
    word pairs, each with a few representative posts.

    A term scores by how many complaint posts use it times the log of how much more often they
    use it than the baseline (all inbound posts of the previous 28 days; this week's other posts
    when there is no history). Handles, URLs, hashtags and numbers are left out, so order and
    tracking numbers never become a theme. Example texts are raw: the report masks them.
    """
    lo, hi = _bounds(start, end)
    bclause, bparams = _brand_clause(brand)
    db = store.db
    week = db.execute(
        "select m.id, m.text, m.channel, m.created_at, m.author_handle, m.author_name, m.urgency, m.intent "
        "from mentions m left join cases c on c.id = m.case_id "
        f"where m.outbound = 0 and {COMPLAINT} and m.created_at >= ? and m.created_at < ?{bclause} order by m.id",
        [lo, hi, *bparams],
    ).fetchall()
    if not week:
        return []
    base_lo = iso(start - timedelta(days=28))
    baseline = [r[0] for r in db.execute(
        "select m.text from mentions m left join cases c on c.id = m.case_id "
        f"where m.outbound = 0 and m.created_at >= ? and m.created_at < ?{bclause}",
        [base_lo, lo, *bparams],
    ).fetchall()]
    if len(baseline) < 50:
        baseline = [r[0] for r in db.execute(
            "select m.text from mentions m left join cases c on c.id = m.case_id "
            f"where m.outbound = 0 and coalesce(m.complaint, 0) = 0 and m.created_at >= ? and m.created_at < ?{bclause}",
            [lo, hi, *bparams],
        ).fetchall()]
    week_terms = [_terms(r[1]) for r in week]
    df_week: Counter[str] = Counter(t for terms in week_terms for t in terms)
    df_base: Counter[str] = Counter(t for text in baseline for t in _terms(text))
    n_week, n_base = len(week), max(len(baseline), 1)
    min_posts = max(2, math.ceil(0.02 * n_week))
    scored = []
    for term, count in df_week.items():
        if count < min_posts:
            continue
        lift = (count / n_week) / ((df_base[term] + 0.5) / (n_base + 1))
        if lift < 2.0:
            continue
        scored.append((count * math.log(lift) * (1.3 if " " in term else 1.0), term, count, lift))
    scored.sort(key=lambda s: (-s[0], s[1]))
    posts_of: dict[str, set[int]] = defaultdict(set)
    for index, terms in enumerate(week_terms):
        for term in terms:
            posts_of[term].add(index)
    chosen: list[tuple[float, str, int, float]] = []
    related: dict[str, list[str]] = {}
    for item in scored:
        term = item[1]
        # Pairs of one phrase ("driver left", "left parcel") hit the same posts: keep the best-scoring
        # one and list the others as related words rather than repeat the same posts as new themes.
        mine = posts_of[term]
        twin = next((o[1] for o in chosen if len(mine & posts_of[o[1]]) >= 0.6 * len(mine | posts_of[o[1]])), None)
        if twin is not None:
            related[twin].append(term)
            continue
        chosen.append(item)
        related[term] = []
        if len(chosen) >= limit:
            break
    out = []
    shown: set[str] = set()
    for _, term, count, lift in chosen:
        # Posts not quoted under an earlier theme first, then the most urgent.
        posts = sorted(
            (r for r, terms in zip(week, week_terms) if term in terms),
            key=lambda r: (_same_post(r[1]) in shown, -(r[6] or 0.0), r[0]),
        )
        seen: set[str] = set()
        picked = []
        for r in posts:
            key = _same_post(r[1])
            if key in seen:
                continue
            seen.add(key)
            shown.add(key)
            picked.append({"mention_id": r[0], "text": r[1], "channel": r[2], "created_at": r[3],
                           "author_handle": r[4], "author_name": r[5], "intent": r[7]})
            if len(picked) >= examples:
                break
        words = list(dict.fromkeys(w for r in related[term] for w in r.split() if w not in term.split()))
        out.append({"term": term, "posts": count, "share": count / n_week, "lift": lift,
                    "baseline_posts": df_base[term], "related": words[:6], "examples": picked})
    return out


# ---------------------------------------------------------------------------- cases
def notable_cases(store: Store, start: datetime, end: datetime, tz: TzLike, brand: str | None = None,
                  limit: int = 25) -> list[dict[str, Any]]:
    """Cases a lead should know about: escalated, VIP customers, SLA breaches in the window.

    A case is considered when it was opened or active in the window. Reasons:
    ``escalated`` (status escalated, or an escalation sent in the window), ``VIP customer``,
    ``first response late`` / ``no first response`` (first-response due time fell in the window
    and was missed), ``resolution late`` (resolution due time fell in the window and was missed).
    Most serious reasons first (escalated > VIP, no response > late response > late resolution),
    then highest priority. Texts and handles are raw: the report masks them.
    """
    lo, hi = _bounds(start, end)
    now = iso(utcnow()) or ""
    bclause, bparams = _brand_clause(brand)
    rows = list(
        store.db.query(
            "select c.*, cu.name as customer_name, coalesce(cu.vip, 0) as vip, "
            "(select count(*) from outbound_messages o where o.case_id = c.id and o.kind = 'escalation' "
            "  and o.status != 'cancelled' and o.created_at >= ? and o.created_at < ?) as escalations "
            "from cases c left join customers cu on cu.id = c.customer_id "
            "where ((c.opened_at >= ? and c.opened_at < ?) or (c.last_activity_at >= ? and c.last_activity_at < ?)"
            "  or (c.first_response_due >= ? and c.first_response_due < ?)"
            "  or (c.resolution_due >= ? and c.resolution_due < ?)) and c.merged_into is null "
            f"and {TEAMS_CASE}{bclause}",
            [lo, hi, lo, hi, lo, hi, lo, hi, lo, hi, *bparams],
        )
    )
    out = []
    for c in rows:
        reasons = []
        if c["status"] == "escalated" or c["escalations"]:
            reasons.append("escalated")
        if c["vip"]:
            reasons.append("VIP customer")
        due, answered = c["first_response_due"], c["first_response_at"]
        if due and lo <= due < hi:
            if answered and parse_time(answered) > parse_time(due):  # type: ignore[operator]
                reasons.append("first response late")
            elif not answered and due < now:
                reasons.append("no first response")
        rdue, resolved = c["resolution_due"], c["resolved_at"]
        if rdue and lo <= rdue < hi and rdue < now and (not resolved or parse_time(resolved) > parse_time(rdue)):  # type: ignore[operator]
            reasons.append("resolution late")
        if not reasons:
            continue
        out.append(
            {
                "case_id": c["id"],
                "reasons": reasons,
                "status": c["status"],
                "priority": c["priority"],
                "brand": c["brand"],
                "courier": c["courier"],
                "channel": c["channel"],
                "intent": c["intent"],
                "opened_at": c["opened_at"],
                "first_response_due": due,
                "first_response_at": answered,
                "resolved_at": resolved,
                "author_handle": c["author_handle"],
                "customer_name": c["customer_name"],
                "order_number": c["order_number"],
                "tracking_number": c["tracking_number"],
                "vip": bool(c["vip"]),
            }
        )
    out.sort(key=lambda r: (-sum(_REASON_WEIGHT[x] for x in r["reasons"]), -(r["priority"] or 0.0), r["case_id"]))
    out = out[:limit]
    # The quoted post of the cases kept only, in one query: one per case before the cut was 2,298 round trips for a
    # week of a year-old shop (scale audit).
    peaks = store.peak_mentions([r["case_id"] for r in out])
    for r in out:
        peak = peaks.get(r["case_id"])
        r["text"], r["author_name"] = (peak.text, peak.author_name) if peak else (None, None)
    return out


#: Order of notable cases: what a lead must act on first.
_REASON_WEIGHT: dict[str, int] = {
    "escalated": 4, "VIP customer": 3, "no first response": 3, "first response late": 2, "resolution late": 1,
}


# ---------------------------------------------------------------------------- health
def listener_status(store: Store, start: datetime, end: datetime, tz: TzLike, brand: str | None = None,
                    now: datetime | None = None, stale_after: timedelta = timedelta(hours=1)) -> list[dict[str, Any]]:
    """Each listener's state as it bears on the window (the health table keeps latest state only).

    ``state``: ``down`` (no successful poll since before the end of the window, or never),
    ``errors`` (an error recorded in the window, polls succeeded since), ``ok``. ``brand`` is
    ignored: listeners serve every brand.
    """
    lo, hi = _bounds(start, end)
    horizon = min(end, now or utcnow()) - stale_after
    out = []
    for row in store.db.query("select * from listener_health order by name"):
        success, error = parse_time(row["last_success_at"]), parse_time(row["last_error_at"])
        if success is None or success < horizon:
            state = "down"
        elif error is not None and start <= error < end:
            state = "errors"
        else:
            state = "ok"
        out.append(
            {
                "name": row["name"],
                "state": state,
                "last_success_at": row["last_success_at"],
                "last_error_at": row["last_error_at"],
                "last_error": row["last_error"],
                "errors": row["errors"] or 0,
            }
        )
    return out


def data_gaps(store: Store, start: datetime, end: datetime, tz: TzLike, brand: str | None = None,
              min_expected: float = 5.0, now: datetime | None = None) -> list[dict[str, Any]]:
    """Stretches of local hours with no mentions on a channel that normally has traffic.

    The expected count of each hour comes from the channel's hour-of-day profile over the
    previous 28 days (this window's own profile when there is no history). A run of silent
    hours is a gap when at least ``min_expected`` mentions were expected in it, and at least
    ln(100 x the window's expected mentions): a busy week has hundreds of short lulls, and only
    a silence that healthy traffic would show in under 1 % of weeks is a listener that stopped.
    ``brand`` is ignored (a dead listener silences every brand). Only hours that have passed
    by ``now`` count: tomorrow's hours are not silent, they have not happened.
    """
    lo, hi = _bounds(start, end)
    zone = _zone(tz)
    passed_by = min(end, now or utcnow())
    base_start = start - timedelta(days=28)
    db = store.db
    channels = [r[0] for r in db.execute(
        "select distinct channel from mentions where outbound = 0 and created_at >= ? and created_at < ?",
        [iso(base_start), hi],
    ).fetchall()]
    hours: list[datetime] = []
    cursor = start
    while cursor + timedelta(hours=1) <= passed_by:
        hours.append(cursor)
        cursor += timedelta(hours=1)
    out = []
    for channel in channels:
        history = [parse_time(r[0]) for r in db.execute(
            "select created_at from mentions where outbound = 0 and channel = ? and created_at >= ? and created_at < ?",
            [channel, iso(base_start), lo],
        ).fetchall()]
        current = [parse_time(r[0]) for r in db.execute(
            "select created_at from mentions where outbound = 0 and channel = ? and created_at >= ? and created_at < ?",
            [channel, lo, hi],
        ).fetchall()]
        if history:
            first = min(history)
            span_days = max((start - first).total_seconds() / 86400.0, 1.0)  # type: ignore[operator]
            profile_source = history
        else:
            span_days = max((end - start).total_seconds() / 86400.0, 1.0)
            profile_source = current
        profile = Counter(t.astimezone(zone).hour for t in profile_source)  # type: ignore[union-attr]
        rate = {h: profile[h] / span_days for h in range(24)}
        # Each post goes to the hour of ``hours`` it falls in (``start`` + whole hours elapsed), the same
        # boundaries as the list: in a zone with a :30 or :45 offset these are not whole UTC hours.
        busy = Counter(start + timedelta(hours=(t - start) // timedelta(hours=1)) for t in current)  # type: ignore[operator]
        # A week of healthy Poisson traffic with N posts has about N silences between posts, and
        # each is "a lull worth m expected posts" with odds e^-m: to keep the chance of any false
        # warning in the window near 1 %, a gap must be worth at least ln(100 N) expected posts
        # (about 10 for 300 posts a week); a dead listener is worth far more than that.
        window_expected = sum(rate[h.astimezone(zone).hour] for h in hours)
        threshold = max(min_expected, math.log(100 * max(1.0, window_expected)))
        run: list[datetime] = []
        for hour in [*hours, None]:
            if hour is not None and busy[hour] == 0:
                run.append(hour)
                continue
            if run:
                expected = sum(rate[h.astimezone(zone).hour] for h in run)
                if expected >= threshold:
                    out.append(
                        {
                            "channel": channel,
                            "from": iso(run[0]),
                            "to": iso(run[-1] + timedelta(hours=1)),
                            "from_local": run[0].astimezone(zone).strftime("%a %d %b %H:%M"),
                            "to_local": (run[-1] + timedelta(hours=1)).astimezone(zone).strftime("%a %d %b %H:%M"),
                            "hours": len(run),
                            "expected_mentions": round(expected, 1),
                            "whole_window": len(run) == len(hours),
                        }
                    )
                run = []
    out.sort(key=lambda g: (g["channel"], g["from"]))
    return out


# ---------------------------------------------------------------------------- all at once
def dashboard(store: Store, start: datetime, end: datetime, tz: TzLike, brand: str | None = None) -> dict[str, Any]:
    """Everything above for one window, as the console's dashboard and the report use it."""
    counts = headline(store, start, end, tz, brand)
    return {
        "window": {"start": iso(start), "end": iso(end), "tz": str(tz if isinstance(tz, str) else getattr(tz, "key", tz)),
                   "brand": brand},
        "headline": headline_comparison(store, start, end, tz, brand, current=counts),
        "counts": counts,
        "daily": daily_trend(store, start, end, tz, brand),
        "intents": complaints_by_intent(store, start, end, tz, brand),
        "couriers": courier_league(store, start, end, tz, brand),
        "tracking_problem_complaints": len(tracking_problem_complaints(store, start, end, tz, brand)),
        "guesses": label_guesses(store, start, end, tz, brand),
        "themes": top_themes(store, start, end, tz, brand),
        "notable_cases": notable_cases(store, start, end, tz, brand, limit=500),
        "listeners": listener_status(store, start, end, tz, brand),
        "gaps": data_gaps(store, start, end, tz, brand),
    }
