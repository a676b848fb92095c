"""Complaint alerts: rules from ``[alerts]`` evaluated by the worker, delivered through the outbox.

Rules (each can be switched off):

* ``urgent_complaint``: a new complaint whose urgency is at least ``urgency_threshold``;
* ``vip_author``: a new complaint from a VIP customer or an author with at least
  ``followers_threshold`` followers (default ``[priority] vip_followers``);
* ``spike``: the last hour's complaint volume per brand, courier or intent is far above its
  seasonal baseline (method below);
* ``sla_breach``: an open case's first (or next) response is due within ``sla_warn_minutes`` (or overdue);
* ``listener_unhealthy``: a listener has not succeeded for ``listener_stale_minutes`` or its
  last round failed; or the latest run of a file import (orders, tracking, posts) wrote nothing
  (file refused, stopped, too many rows rejected, no rows).

One *incident* is (rule, subject), e.g. ``spike:courier:UPS`` or ``sla:case:42``. The first
firing sends an alert; while it keeps firing, at most one "update" per ``cooldown_minutes``
(and only if something changed); an incident that stops firing for a cooldown is closed. On top,
``max_per_hour`` caps all alerts: beyond it, firings are counted and reported in the next alert.
The state lives in the store's ``cursors`` table (``alerts.state``, JSON), so a restart of the
worker does not re-send. Every alert is an outbound message of kind ``alert`` whose text names
the rule and why it fired.

Spike method (:func:`spike_test`). For a facet value (say courier UPS), ``n`` = complaints in
the last hour. The expected count ``lambda`` is the mean of the same hour-of-week over the past
``weeks`` weeks (Monday 09-10 is compared with earlier Mondays 09-10 on the shop's clock, ``timezone``,
across clock changes too: :func:`same_hour_weeks_back`; so the Monday-morning rush is not a spike);
while less than one full week of history exists, an EWMA (``ewma_alpha``) of the
previous 24 hourly counts stands in (with fewer than 6 hours of history nothing is judged). When
both exist, the larger of the two is the baseline: the seasonal mean keeps the weekly rush from
alerting, the EWMA keeps a thin or outdated seasonal history (a brand that has grown since, a week
that happened to be quiet) from flagging a normal current level. ``lambda`` is floored at 0.5 so an always-quiet facet does
not fire on two posts. Complaint arrivals are modelled as Poisson(``lambda``), and the spike
fires when the tail probability ``P(X >= n) < p_value`` (default 0.001) *and* ``n >= min_count``
*and* ``n >= min_ratio * lambda``: significance alone would flag 12 vs an expected 6 on a
big brand; the ratio and floor keep alerts to what a lead would act on.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from doorstep.config import Config, courier_key, find_courier
from doorstep.cases import INTENT_LABELS
from doorstep.models import PRIVATE_CHANNELS, channel_name, utcnow
from doorstep.reports import Redactor
from doorstep.store import Store, iso, parse_time
from doorstep.text import shorten
from responders.config import Alerts, alert_settings
from responders.escalation import target_routes
from responders.automatic import record
from responders.outbox import _key, enqueue

log = logging.getLogger("doorstep.alerts")

STATE_CURSOR = "alerts.state"
#: Rules that fire once, on a new post: an alert of theirs held back by the hourly cap is kept until it is sent.
ONE_SHOT_RULES = frozenset({"urgent_complaint", "vip_author"})
#: Without a seasonal baseline, at least this many previous hours are needed to judge a spike.
MIN_HISTORY_HOURS = 6


#: The rules as a care team names them: alert subjects, and the case timeline ("The VIP customer alert fired").
RULE_WORDS = {"urgent_complaint": "urgent complaint", "vip_author": "VIP customer", "spike": "spike",
              "sla_breach": "SLA", "escalation_failed": "failed escalation", "listener_unhealthy": "listener health"}


def facet_words(facet: str, value: str) -> str:
    """"intent failed delivery", "courier UPS": what a spike (or another subject) is about, in words."""
    return f"{facet} {INTENT_LABELS.get(value, value) if facet == 'intent' else value}".strip()


def subject_words(rule: str, subject: str, case_id: int | None = None) -> str:
    """"Urgent complaint: case #608" for (urgent_complaint, case:608); "Spike: courier UPS"; a failed
    escalation (subject message:12) names its case, which is what the lead opens.

    Why words: the lead reads the subject in a mail list or a Slack channel. The rule's key stays in
    the body ("Rule: urgent_complaint"), where a mail filter can still find it.
    """
    kind, _, value = subject.partition(":")
    if kind == "message" and case_id:
        kind, value = "case", str(case_id)
    what = f"{kind} #{value}" if kind in ("case", "message") else facet_words(kind, value)
    words = RULE_WORDS.get(rule, rule.replace("_", " "))
    return f"{words[:1].upper()}{words[1:]}: {what}"


@dataclass(frozen=True)
class Firing:
    """One rule firing on one subject, with the human reason."""

    rule: str
    subject: str
    why: str
    case_id: int | None = None
    #: What "changed" means for updates (a count, a status); an update is sent only when it differs.
    level: str = ""

    @property
    def incident(self) -> str:
        return f"{self.rule}:{self.subject}"


# ------------------------------------------------------------------ spike statistics
def poisson_tail(n: int, lam: float) -> float:
    """P(X >= n) for X ~ Poisson(lam), accurate in the far tail (no 1 - cdf cancellation)."""
    if n <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    if n <= lam:
        cdf = sum(math.exp(k * math.log(lam) - lam - math.lgamma(k + 1)) for k in range(n))
        return max(0.0, 1.0 - cdf)
    total, k = 0.0, n
    while True:
        term = math.exp(k * math.log(lam) - lam - math.lgamma(k + 1))
        total += term
        if term < total * 1e-12 or k > n + 10_000:
            return min(1.0, total)
        k += 1


def ewma(values: list[float], alpha: float) -> float:
    level = values[0] if values else 0.0
    for value in values[1:]:
        level = alpha * value + (1 - alpha) * level
    return level


@dataclass(frozen=True)
class SpikeResult:
    observed: int
    expected: float
    p_value: float
    method: str
    spike: bool

    def why(self, facet: str, value: str) -> str:
        return (f"{self.observed} complaints about {facet_words(facet, value)} in the last hour "
                f"vs {self.expected:.1f} expected "
                f"({self.method}); Poisson P(X>={self.observed}) = {self.p_value:.2g}")


def spike_test(observed: int, seasonal: list[int], recent: list[int], *, alpha: float = 0.3, p_value: float = 0.001,
               min_count: int = 8, min_ratio: float = 2.0) -> SpikeResult:
    """Is ``observed`` (this hour) a spike? ``seasonal``: same hour-of-week in past weeks (may be
    empty); ``recent``: the previous hourly counts, oldest first (for the EWMA fallback)."""
    if len(recent) < MIN_HISTORY_HOURS and not seasonal:
        # A new installation has no baseline: every busy first hour would look like a storm.
        return SpikeResult(observed, 0.0, 1.0, f"only {len(recent)} hours of history", False)
    level = ewma([float(v) for v in recent], alpha) if len(recent) >= MIN_HISTORY_HOURS else 0.0
    if seasonal:
        same_hour = sum(seasonal) / len(seasonal)
        expected = max(same_hour, level)
        method = (f"same hour of week, {len(seasonal)}-week mean" if same_hour >= level
                  else f"EWMA of the last {len(recent)} hours (above the {len(seasonal)}-week same-hour mean)")
    else:
        expected, method = level, f"EWMA of the last {len(recent)} hours"
    expected = max(expected, 0.5)
    p = poisson_tail(observed, expected)
    spike = p < p_value and observed >= min_count and observed >= min_ratio * expected
    return SpikeResult(observed, expected, p, method, spike)


def _facet_sql(dimension: str) -> str:
    return {"brand": "c.brand", "courier": "c.courier", "intent": "m.intent", "channel": "m.channel"}[dimension]


def hourly_counts(store: Store, dimension: str, start: datetime, end: datetime, complaints_only: bool,
                  spellings: dict[str, Counter[str]] | None = None) -> dict[str, int]:
    """Complaints (or posts) per facet value in [start, end).

    Couriers are counted by :func:`doorstep.config.courier_key`: a shop's order export may spell one courier
    "UPS", "ups" and "UPS ", and the team means one courier, so a spike split three ways would be missed.
    ``spellings`` (courier key -> how often each spelling was written) collects the names to show it by.
    """
    complaint = " and m.complaint = 1" if complaints_only else ""
    facet = _facet_sql(dimension)
    rows = store.db.execute(
        f"select {facet} as v, count(*) from mentions m left join cases c on c.id = m.case_id "
        f"where m.outbound = 0 and m.created_at >= ? and m.created_at < ?{complaint} and {facet} is not null "
        f"group by {facet}",
        [iso(start), iso(end)]).fetchall()
    if dimension != "courier":
        return {r[0]: r[1] for r in rows}
    counts: dict[str, int] = {}
    for name, count in rows:
        key = courier_key(name)
        if not key:
            continue  # a blank courier is no courier
        counts[key] = counts.get(key, 0) + count
        if spellings is not None:
            spellings.setdefault(key, Counter())[" ".join(name.split())] += count
    return counts


def _courier_name(config: Config, key: str, spellings: Counter[str]) -> str:
    """The name a courier spike is shown (and its incident keyed) by: the ``[[couriers]]`` name, else the
    spelling written most often this hour (the first in order among equals)."""
    configured = find_courier(config.couriers, key)
    if configured is not None:
        return configured.name
    return min(spellings.items(), key=lambda item: (-item[1], item[0]))[0] if spellings else key


def same_hour_weeks_back(hour_start: datetime, zone: ZoneInfo, weeks: int) -> datetime | None:
    """The start (UTC) of the same hour of the week ``weeks`` weeks before ``hour_start``, on the shop's clock.

    Why the shop's clock: customers complain by their wall clock, so Monday 09:00 BST is compared with earlier
    Mondays at 09:00 GMT. Stepping back in UTC compared it with 08:00 on the Mondays before the clocks went forward
    (a false spike to Slack and e-mail), and hid real spikes after they went back (time audit).

    On a clock-change day: an hour the clocks skipped (01:00-02:00 on the last Sunday of March in London) gives
    ``None``, that week is left out of the mean (it had no such hour; counting it as quiet would lower the
    baseline). An hour that happened twice (01:00-02:00 on the last Sunday of October) is its first occurrence
    (summer time): the comparison hour is one UTC hour long, so the mean still weighs each week once.
    """
    wall = hour_start.astimezone(zone).replace(tzinfo=None) - timedelta(weeks=weeks)
    moment = wall.replace(tzinfo=zone, fold=0)
    if moment.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None) != wall:
        return None  # a time the clocks jumped over
    return moment.astimezone(timezone.utc)


def detect_spikes(store: Store, config: Config, now: datetime | None = None) -> list[tuple[str, str, SpikeResult]]:
    """(dimension, value, result) for every facet value seen in the last hour."""
    settings = alert_settings(config).spike
    now = now or utcnow()
    hour_start = now - timedelta(hours=1)
    oldest = store.db.execute("select min(created_at) from mentions where outbound = 0").fetchone()[0]
    oldest_at = parse_time(oldest) if oldest else now
    out = []
    for dimension in settings.dimensions:
        spellings: dict[str, Counter[str]] = {}
        current = hourly_counts(store, dimension, hour_start, now, settings.complaints_only, spellings)
        if not current:
            continue
        seasonal: dict[str, list[int]] = {v: [] for v in current}
        for week in range(1, settings.weeks + 1):
            start = same_hour_weeks_back(hour_start, config.tz, week)
            if start is None:
                continue  # the clocks skipped that hour that week: unknown, not zero
            if start < oldest_at - timedelta(hours=1):
                break  # no data that far back: an absent week is unknown, not zero
            counts = hourly_counts(store, dimension, start, start + timedelta(hours=1), settings.complaints_only)
            for value in current:
                seasonal[value].append(counts.get(value, 0))
        recent: dict[str, list[int]] = {v: [] for v in current}
        for hours_back in range(24, 0, -1):
            start = hour_start - timedelta(hours=hours_back)
            if start < oldest_at - timedelta(hours=1):
                continue
            counts = hourly_counts(store, dimension, start, start + timedelta(hours=1), settings.complaints_only)
            for value in current:
                recent[value].append(counts.get(value, 0))
        for value, observed in current.items():
            result = spike_test(observed, seasonal[value], recent[value], alpha=settings.ewma_alpha,
                                p_value=settings.p_value, min_count=settings.min_count, min_ratio=settings.min_ratio)
            shown = _courier_name(config, value, spellings.get(value, Counter())) if dimension == "courier" else value
            out.append((dimension, shown, result))
    return out


# ------------------------------------------------------------------ rules
def _quoted(store: Store, redactor: Redactor, row: dict[str, Any]) -> tuple[str, str]:
    """(who, ": \"quote\"") for an alert about ``row``'s post, as a Slack channel or a mail list may read it.

    A private message (SMS, e-mail, direct message) is neither quoted nor named by its address: an SMS complaint
    went to Slack with the customer's mobile number as its author and their e-mail in the quote (alerts audit).
    A public post is quoted with contact details, numbers and names masked, as the weekly report quotes, in
    at most 140 characters cut between whole letters and emoji (``text[:140]`` left a lone "👩" of 👩‍👩‍👧‍👦)."""
    channel = row["channel"]
    if channel in PRIVATE_CHANNELS:
        return f"a customer by {channel_name(channel)}", " (a private message: open the case to read it)"
    customer = store.get_customer(row["customer_id"]) if row.get("customer_id") else None
    text = redactor.text(" ".join((row["text"] or "").split()),
                         names=[row.get("author_name"), customer.name if customer else None],
                         handles=[row["author_handle"]]) or ""
    return f"@{row['author_handle']} on {channel_name(channel)}", f": \"{shorten(text, 140)}\""


def _new_complaints(store: Store, after_id: int) -> list[dict[str, Any]]:
    return list(store.db.query(
        "select m.id, m.case_id, m.author_handle, m.author_name, m.author_followers, m.urgency, m.intent, m.text, "
        "m.channel, "
        "c.customer_id, c.brand from mentions m left join cases c on c.id = m.case_id "
        "where m.id > ? and m.outbound = 0 and m.complaint = 1 order by m.id", [after_id]))


def evaluate(store: Store, config: Config, now: datetime | None = None, *, last_mention_id: int = 0) -> list[Firing]:
    """Every rule's firings now. ``last_mention_id``: mentions up to it were already looked at."""
    settings = alert_settings(config)
    now = now or utcnow()
    firings: list[Firing] = []
    if settings.urgent_complaint or settings.vip_author:
        followers_threshold = settings.followers_threshold or config.priority.vip_followers
        redactor = Redactor(config)
        for row in _new_complaints(store, last_mention_id):
            who, quoted = _quoted(store, redactor, row)
            if settings.urgent_complaint and (row["urgency"] or 0) >= settings.urgency_threshold:
                firings.append(Firing("urgent_complaint", f"case:{row['case_id']}",
                                      f"complaint with urgency {row['urgency']:.2f} >= {settings.urgency_threshold} "
                                      f"from {who}{quoted}", row["case_id"]))
            if settings.vip_author:
                customer = store.get_customer(row["customer_id"]) if row["customer_id"] else None
                reasons = []
                if customer is not None and customer.vip:
                    reasons.append("VIP customer")
                if (row["author_followers"] or 0) >= followers_threshold:
                    reasons.append(f"{row['author_followers']:,} followers >= {followers_threshold:,}")
                if reasons:
                    firings.append(Firing("vip_author", f"case:{row['case_id']}",
                                          f"complaint from {who} ({', '.join(reasons)}){quoted}", row["case_id"]))
    if settings.spike.enabled:
        for dimension, value, result in detect_spikes(store, config, now):
            if result.spike:
                # Level in steps of doubling: an update goes out when the spike grows markedly.
                firings.append(Firing("spike", f"{dimension}:{value}", result.why(dimension, value),
                                      level=str(int(math.log2(max(result.observed, 1))))))
    if settings.sla_breach:
        horizon = iso(now + timedelta(minutes=settings.sla_warn_minutes))
        for row in store.db.query(
                "select id, due_at, due_kind, brand, priority from cases where status in ('new', 'open', 'escalated') "
                "and due_kind in ('first response', 'next response') and due_at <= ? order by due_at limit 200",
                [horizon]):
            overdue = row["due_at"] <= iso(now)
            firings.append(Firing("sla_breach", f"case:{row['id']}",
                                  f"case #{row['id']} ({row['brand'] or 'no brand'}, priority {row['priority']:.0f}): "
                                  f"{row['due_kind']} {'overdue since' if overdue else 'due at'} {config.local_time(row['due_at'], zone=True)}",
                                  row["id"], level="overdue" if overdue else "due"))
    if settings.escalation_failed_minutes:
        # An escalation nobody received is worse than none: the team believes the courier knows.
        cutoff = iso(now - timedelta(minutes=settings.escalation_failed_minutes))
        for row in store.db.query(
                "select id, case_id, channel, target, status, attempts, last_error, created_at from outbound_messages "
                "where kind = 'escalation' and created_at <= ? and (status = 'failed' or "
                "(status in ('queued', 'sending') and attempts > 0 and last_error is not null)) order by id limit 200",
                [cutoff]):
            firings.append(Firing("escalation_failed", f"message:{row['id']}",
                                  f"escalation of case #{row['case_id']} by {channel_name(row['channel'])} to {row['target']} is "
                                  f"undelivered after {row['attempts']} attempt(s) since {config.local_time(row['created_at'], zone=True)} "
                                  f"({row['status']}): {(row['last_error'] or '')[:200]}",
                                  row["case_id"], level=row["status"]))
    if settings.listener_unhealthy:
        stale = iso(now - timedelta(minutes=settings.listener_stale_minutes))
        for row in store.db.query("select * from listener_health"):
            problems = []
            if not row["last_success_at"] or row["last_success_at"] < stale:
                since = config.local_time(row["last_success_at"], zone=True) if row["last_success_at"] else "ever"
                problems.append(f"no successful round since {since}")
            # Failing when the last write was an error (the order of the writes, as listeners.health.failing:
            # timestamps compare wrongly after the wall clock stepped back); older rows compare their times.
            outcome = row.get("last_outcome")
            if row["last_error_at"] and (outcome == "error" if outcome else
                                         (not row["last_success_at"] or row["last_error_at"] > row["last_success_at"])):
                problems.append(f"last error at {config.local_time(row['last_error_at'], zone=True)}: {(row['last_error'] or '')[:200]}")
            if problems:
                firings.append(Firing("listener_unhealthy", f"listener:{row['name']}",
                                      f"listener {channel_name(row['name'])}: {'; '.join(problems)}",
                                      level="error" if row["last_error_at"] else "stale"))
        # A file import whose latest run wrote nothing (a cron job's orders file refused, stopped, mostly
        # rejected): linking works from stale orders until someone looks. A later good run ends it.
        for row in store.db.query(
                "select r.* from import_runs r where r.id = (select max(id) from import_runs l where l.kind = r.kind) "
                "and r.outcome in ('file refused', 'nothing written', 'stopped', 'no rows') order by r.kind"):
            firings.append(Firing("listener_unhealthy", f"import:{row['kind']}",
                                  f"import of {row['kind']} from {row['file']}: {row['outcome']} at "
                                  f"{config.local_time(row['finished_at'], zone=True)}: {(row['message'] or '')[:200]}",
                                  level=f"{row['outcome']} {row['finished_at']}"))
    return firings


# ------------------------------------------------------------------ dedup, rate limit, delivery
class AlertEngine:
    """Evaluates the rules and turns firings into (few) alert messages."""

    def __init__(self, store: Store, config: Config, *, now: Any = utcnow):
        self.store = store
        self.config = config
        self.settings: Alerts = alert_settings(config)
        self.now = now

    def _load(self) -> dict[str, Any]:
        raw = self.store.get_cursor(STATE_CURSOR)
        state = json.loads(raw) if raw else {}
        state.setdefault("incidents", {})
        state.setdefault("sent", [])
        state.setdefault("last_mention_id", None)
        state.setdefault("held", [])
        return state

    def run_once(self) -> list[int]:
        """Evaluate, deduplicate, rate-limit and queue; returns the ids of queued alert messages.

        The alerts a round queues and the state that says they were sent are written in one transaction: a worker
        killed in the middle queued them again after its restart, and Slack got ten alerts twice (alerts audit).
        An alert the hourly cap holds back is kept whole and sent when the cap allows: urgent and VIP alerts fire
        once, on new posts, so one held and then forgotten was never sent, even after the cap was raised."""
        if not self.settings.enabled:
            return []
        now = self.now()
        state = self._load()
        if state["last_mention_id"] is None:
            # First run: do not alert on the whole history, only on what arrives from now on.
            state["last_mention_id"] = self.store.db.execute("select coalesce(max(id), 0) from mentions").fetchone()[0]
        last_id = state["last_mention_id"]
        firings = evaluate(self.store, self.config, now, last_mention_id=last_id)
        state["last_mention_id"] = self.store.db.execute("select coalesce(max(id), 0) from mentions").fetchone()[0]
        # Held one-shot alerts first (oldest first): nothing will fire them again. A held alert of a rule that keeps
        # firing while its cause lasts (a spike, an SLA, a listener) is sent only while it still fires.
        fired_now = {f.incident for f in firings}
        held = [h for h in state["held"] if isinstance(h, dict)]  # a state written before kept names only
        firings = [Firing(**h["firing"]) for h in held
                   if h["firing"]["rule"] in ONE_SHOT_RULES and h["incident"] not in fired_now] + firings
        state["held"] = held
        cooldown = timedelta(minutes=self.settings.cooldown_minutes)
        hour_ago = iso(now - timedelta(hours=1))
        state["sent"] = [t for t in state["sent"] if t > hour_ago]
        queued: list[int] = []
        seen: set[str] = set()
        with self.store.transaction():
            for firing in firings:
                if firing.incident in seen:
                    continue
                seen.add(firing.incident)
                incident = state["incidents"].get(firing.incident)
                if incident is None or incident.get("pending"):
                    kind = "new"
                else:
                    incident["last_seen"] = iso(now)
                    incident["firings"] = incident.get("firings", 1) + 1
                    due = parse_time(incident["last_sent"]) + cooldown <= now  # type: ignore[operator]
                    if not due or incident.get("level") == firing.level:
                        continue
                    kind = "update"
                held_names = [h["incident"] for h in state["held"]]
                if len(state["sent"]) >= self.settings.max_per_hour:
                    if firing.incident not in held_names:
                        state["held"].append({"incident": firing.incident, "firing": asdict(firing)})
                    if incident is None:
                        # Remember it, so it is reported (once) when the rate limit allows.
                        state["incidents"][firing.incident] = {"first": iso(now), "last_seen": iso(now),
                                                               "pending": True, "firings": 1}
                    else:
                        incident["last_seen"] = iso(now)
                    continue
                state["held"] = [h for h in state["held"] if h["incident"] != firing.incident]
                ids = self._deliver(firing, kind, len(state["held"]), now)
                queued += ids
                state["sent"].append(iso(now))
                record = state["incidents"].setdefault(firing.incident, {"first": iso(now), "firings": 1})
                record.update(last_sent=iso(now), last_seen=iso(now), level=firing.level, why=firing.why, pending=False)
            # Close incidents that stopped firing for a whole cooldown (a later one alerts afresh); a held one-shot
            # alert stays until it is sent.
            state["held"] = [h for h in state["held"] if h["incident"] in seen]
            kept = {h["incident"] for h in state["held"]}
            for name in list(state["incidents"]):
                if name not in seen and name not in kept and \
                        parse_time(state["incidents"][name]["last_seen"]) + cooldown <= now:  # type: ignore[operator]
                    del state["incidents"][name]
            self.store.set_cursor(STATE_CURSOR, json.dumps(state))
        return queued

    def _deliver(self, firing: Firing, kind: str, held: int, now: datetime) -> list[int]:
        label = "UPDATE" if kind == "update" else "ALERT"
        lines = [f"Subject: [Doorstep {label}] {subject_words(firing.rule, firing.subject, firing.case_id)}", "",
                 f"Rule: {firing.rule}", f"Why: {firing.why}"]
        if firing.case_id:
            lines.append(f"Case: #{firing.case_id}")
        if held:
            lines.append(f"({held} further incident(s) held back by the rate limit of "
                         f"{self.settings.max_per_hour}/hour; they follow when it allows)")
        text = "\n".join(lines)
        ids = []
        routes = target_routes(self.settings.target)
        if not routes:
            log.warning("alert %s fired but [alerts] has no slack_webhook_url, email or apprise: %s",
                        firing.incident, firing.why)
        for channel, ref in routes:
            message = enqueue(self.store, kind="alert", channel=channel, text=text, actor=f"alert:{firing.rule}",
                              idempotency_key=_key("alert", firing.incident, iso(now), channel, ref),
                              case_id=firing.case_id, target=ref)
            if firing.case_id:  # re-checked before sending (the case may be answered or resolved by then)
                message = record(self.store, self.config, message, f"alert:{firing.rule}")
            ids.append(message.id)  # type: ignore[arg-type]
        self.store.audit(f"alert:{firing.rule}", f"alert.{kind}", firing.case_id,
                         {"rule": firing.rule, "subject": firing.subject, "why": firing.why, "message_ids": ids})
        return ids
