"""The shared query layer against independent straight SQL over a hand-built fixture database.

The fixture is written through the Store API (mentions with labels, cases with SLA clocks,
orders/shipments/tracking events, escalations, listener health) from a seeded generator, so the
numbers are irregular; each test recomputes its figure with its own SQL and compares.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from doorstep import metrics
from doorstep.config import Config, parse_config
from doorstep.models import Case, Customer, Labels, Mention, Order, Shipment, TrackingEvent
from doorstep.numbers import make_tracking_number
from doorstep.store import Store, iso

LONDON = ZoneInfo("Europe/London")
WEEK = "2026-W47"
START = datetime(2026, 11, 16, tzinfo=timezone.utc)  # Monday 00:00 GMT
END = datetime(2026, 11, 23, tzinfo=timezone.utc)
HISTORY_START = START - timedelta(days=28)
#: The mastodon listener dies at this moment of the report week.
MASTODON_DIES = datetime(2026, 11, 18, 12, 0, tzinfo=timezone.utc)
COURIERS = ("UPS", "Royal Mail", "DPD")
BRANDS = ("Larkspur", "Fettle")


def fixture_config(reports: dict[str, Any] | None = None) -> Config:
    return parse_config(
        {
            "timezone": "Europe/London",
            "brands": [
                {"name": "Larkspur", "handles": {"x": "LarkspurHelp"}, "keywords": ["larkspur"]},
                {"name": "Fettle", "handles": {"x": "FettleCare"}, "keywords": ["fettle"]},
            ],
            "couriers": [
                {"name": "UPS", "handles": {"x": "UPSHelp"}, "keywords": ["ups"], "tracking_formats": ["ups"]},
                {"name": "Royal Mail", "handles": {"x": "RoyalMailHelp"}, "tracking_formats": ["royal_mail"]},
                {"name": "DPD", "handles": {"x": "DPD_UK"}, "tracking_formats": ["dpd"]},
            ],
            "reports": reports or {},
        }
    )


def _labels(sentiment: str, complaint: bool, intent: str, urgency: float) -> Labels:
    return Labels(
        sentiment=sentiment,
        sentiment_scores={s: (0.8 if s == sentiment else 0.1) for s in ("negative", "neutral", "positive")},
        complaint=complaint,
        complaint_score=0.9 if complaint else 0.1,
        intent=intent,
        intent_scores={intent: 1.0},
        urgency=urgency,
        model="fixture",
    )


_COMPLAINTS = [
    ("late_delivery", "my {brand} order is late again, promised for yesterday"),
    ("where_is_my_order", "where is my {brand} parcel? tracking has not moved"),
    ("lost_or_missing", "{brand} parcel lost, nobody answers"),
    ("damaged_or_wrong", "box arrived crushed and the mug inside is broken"),
    ("failed_delivery", "courier says nobody home but I was in all day"),
]
#: This week's story: drivers leaving parcels outside in the rain.
_THEME = "the driver left my parcel outside in the rain, soaked through"
_PRAISE = ["love my new {brand} jumper, thank you", "great service from {brand} today", "{brand} sale is on"]


def build_fixture(store: Store, seed: int = 47) -> dict[str, Any]:
    """Five weeks of traffic ending with report week 2026-W47. Returns facts the tests need."""
    rng = random.Random(seed)
    customers = [
        Customer(id=f"C{i}", name=f"Customer Number{i}", email=f"c{i}@example.com", vip=(i % 10 == 0),
                 handles={"x": f"cust{i}"})
        for i in range(40)
    ]
    store.upsert_customers(customers)

    shipments: list[tuple[str, str]] = []  # (tracking number, courier)
    formats = {"UPS": "ups", "Royal Mail": "royal_mail", "DPD": "dpd"}
    orders = []
    for i in range(180):
        courier = COURIERS[i % 3]
        placed = HISTORY_START + timedelta(days=21 + rng.random() * 13)
        tracking = make_tracking_number(formats[courier], rng)
        events = [TrackingEvent(tracking_number=tracking, time=placed + timedelta(hours=6), status="info_received")]
        t = placed + timedelta(days=1, hours=rng.randint(0, 20))
        events.append(TrackingEvent(tracking_number=tracking, time=t, status="in_transit"))
        roll = rng.random()
        if roll < (0.12 if courier == "DPD" else 0.05):
            events.append(TrackingEvent(tracking_number=tracking, time=t + timedelta(hours=20), status="exception",
                                        description="Delayed at depot"))
        if rng.random() < (0.15 if courier == "Royal Mail" else 0.06):
            events.append(TrackingEvent(tracking_number=tracking, time=t + timedelta(hours=26), status="attempt_failed"))
        events.append(TrackingEvent(tracking_number=tracking, time=t + timedelta(hours=40), status="delivered"))
        orders.append(
            Order(number=f"{100000 + i}", customer_id=customers[i % 40].id, placed_at=placed, brand=BRANDS[i % 2],
                  total=20 + i, shipments=[Shipment(tracking_number=tracking, order_number=f"{100000 + i}",
                                                    courier=courier, events=events)])
        )
        shipments.append((tracking, courier))
    store.upsert_orders(orders)

    n_mentions = 0
    day = HISTORY_START
    while day < END:
        for channel, per_day in (("x", 12), ("mastodon", 6)):
            for _ in range(per_day + rng.randint(-2, 2)):
                at = day + timedelta(hours=rng.randint(7, 22), minutes=rng.randint(0, 59), seconds=rng.randint(0, 59))
                if channel == "mastodon" and at >= MASTODON_DIES:
                    continue
                n_mentions += 1
                _add_mention(store, rng, channel, at, n_mentions, customers, orders, shipments)
        day += timedelta(days=1)

    # Escalations: some in the week, one cancelled (not counted), one the week before.
    cases = [r[0] for r in store.db.execute(
        "select id from cases where complaint = 1 and opened_at >= ? and opened_at < ? order by id", [iso(START), iso(END)]
    ).fetchall()]
    for i, case_id in enumerate(cases[:7]):
        store.db.execute(
            "insert into outbound_messages (case_id, kind, channel, target, text, status, idempotency_key, created_at) "
            "values (?, 'escalation', 'email', 'ops@courier.example', 'please investigate', ?, ?, ?)",
            [case_id, "cancelled" if i == 6 else "sent", f"esc:{case_id}", iso(START + timedelta(hours=10 + 12 * i))],
        )
        if i == 0:
            store.db.execute("update cases set status = 'escalated' where id = ?", [case_id])
    store.db.execute(
        "insert into outbound_messages (case_id, kind, channel, target, text, status, idempotency_key, created_at) "
        "values (?, 'escalation', 'email', 'ops@courier.example', 'x', 'sent', 'esc:old', ?)",
        [cases[0], iso(START - timedelta(days=2))],
    )
    store.db.execute(
        "insert into listener_health (name, last_success_at, last_error_at, last_error, errors, fetched, stored, updated_at) "
        "values ('x', ?, ?, 'HTTP 503', 2, 900, 800, ?)",
        [iso(END - timedelta(minutes=2)), iso(START + timedelta(days=2)), iso(END - timedelta(minutes=2))],
    )
    store.db.execute(
        "insert into listener_health (name, last_success_at, last_error_at, last_error, errors, fetched, stored, updated_at) "
        "values ('mastodon', ?, ?, '401 Unauthorized: the access token was revoked', 40, 300, 290, ?)",
        [iso(MASTODON_DIES), iso(END - timedelta(hours=3)), iso(END - timedelta(hours=3))],
    )
    return {"mentions": n_mentions, "shipments": shipments}


def _add_mention(store: Store, rng: random.Random, channel: str, at: datetime, n: int, customers: list[Customer],
                 orders: list[Order], shipments: list[tuple[str, str]]) -> None:
    brand = BRANDS[rng.random() < 0.4]
    in_week = at >= START
    complaint = rng.random() < (0.45 if in_week else 0.3)
    customer = customers[rng.randrange(len(customers))]
    if complaint:
        if in_week and rng.random() < 0.3:
            intent, text = "failed_delivery", _THEME
        else:
            intent, text = _COMPLAINTS[rng.randrange(len(_COMPLAINTS))]
        sentiment = "negative" if rng.random() < 0.9 else "neutral"
    else:
        intent, text = ("praise", _PRAISE[rng.randrange(len(_PRAISE))]) if rng.random() < 0.6 else ("other", "does {brand} ship to Ireland?")
        sentiment = "positive" if intent == "praise" else rng.choice(["neutral", "neutral", "negative"])
    text = text.format(brand=brand) + f" ({n})"
    labels = None if rng.random() < 0.03 else _labels(sentiment, complaint, intent, rng.random())
    mention = Mention(channel=channel, external_id=f"{channel}-{n}", text=text, created_at=at,
                      author_handle=f"cust{customers.index(customer)}", author_name=customer.name,
                      author_followers=rng.randint(0, 20000), matched=[brand], labels=labels)
    mention_id = store.insert_mention(mention)
    order = orders[rng.randrange(len(orders))] if complaint and rng.random() < 0.6 else None
    shipment = order.shipments[0] if order else None
    first_due = at + timedelta(minutes=60)
    answered = None if rng.random() < 0.15 else at + timedelta(minutes=rng.expovariate(1 / 45))
    resolved = None
    if answered and rng.random() < 0.7:
        resolved = answered + timedelta(hours=rng.randint(1, 30))
    case = Case(
        status="resolved" if resolved else ("open" if answered else "new"),
        brand=brand,
        courier=shipment.courier if shipment else (rng.choice(COURIERS) if complaint and rng.random() < 0.3 else None),
        channel=channel,
        intent=labels.intent if labels else None,
        sentiment=labels.sentiment if labels else None,
        complaint=complaint,
        author_handle=mention.author_handle,
        customer_id=customer.id,
        order_number=order.number if order else None,
        tracking_number=shipment.tracking_number if shipment else None,
        opened_at=at,
        last_activity_at=at,
        first_response_due=first_due,
        resolution_due=at + timedelta(hours=24),
        first_response_at=answered,
        resolved_at=resolved,
        mention_count=1,
        priority=rng.random() * 100,
    )
    case_id = store.insert_case(case)
    store.set_mention_case(mention_id, case_id)


@pytest.fixture(scope="module")
def fixture_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(tmp_path_factory.mktemp("metrics") / "fixture.db")
    with store.transaction():
        build_fixture(store)
    yield store
    store.close()


def q(store: Store, sql: str, *params: Any) -> Any:
    return store.db.execute(sql, list(params)).fetchone()[0]


W = [iso(START), iso(END)]


# ------------------------------------------------------------------------------ windows
def test_week_window_is_local_midnight_to_midnight() -> None:
    assert metrics.week_window(WEEK, "Europe/London") == (START, END)
    # Summer time: the week starts at Monday 00:00 BST = Sunday 23:00 UTC.
    start, end = metrics.week_window("2026-W27", LONDON)
    assert start == datetime(2026, 6, 28, 23, 0, tzinfo=timezone.utc)
    assert end == datetime(2026, 7, 5, 23, 0, tzinfo=timezone.utc)
    # The week of the October clock change is 169 hours long.
    start, end = metrics.week_window("2026-W43", LONDON)  # clocks go back Sun 25 Oct
    assert (end - start) == timedelta(hours=169)
    with pytest.raises(ValueError, match="2026-47"):
        metrics.week_window("2026-47", LONDON)
    with pytest.raises(ValueError, match="W54"):
        metrics.week_window("2026-W54", LONDON)


def test_sunday_late_evening_and_monday_early_morning_fall_in_their_local_weeks(tmp_path: Path) -> None:
    store = Store(tmp_path / "edge.db")
    # Sunday 5 July 23:30 BST (22:30 UTC) belongs to W27; Monday 6 July 00:30 BST (23:30 UTC on
    # Sunday!) belongs to W28 although its UTC date is still Sunday.
    sunday = datetime(2026, 7, 5, 22, 30, tzinfo=timezone.utc)
    monday = datetime(2026, 7, 5, 23, 30, tzinfo=timezone.utc)
    for ext, at, complaint in (("sun", sunday, True), ("mon", monday, False)):
        store.insert_mention(Mention(channel="x", external_id=ext, text=f"post {ext}", created_at=at,
                                     labels=_labels("negative" if complaint else "positive", complaint, "other", 0.1)))
    w27 = metrics.week_window("2026-W27", LONDON)
    w28 = metrics.week_window("2026-W28", LONDON)
    a, b = metrics.headline(store, *w27, LONDON), metrics.headline(store, *w28, LONDON)
    assert (a["mentions"], a["complaints"], a["net_sentiment"]) == (1, 1, -1.0)
    assert (b["mentions"], b["complaints"], b["net_sentiment"]) == (1, 0, 1.0)
    days_27 = {r["day"]: r["mentions"] for r in metrics.daily_trend(store, *w27, LONDON)}
    days_28 = {r["day"]: r["mentions"] for r in metrics.daily_trend(store, *w28, LONDON)}
    assert days_27["2026-07-05"] == 1 and sum(days_27.values()) == 1
    assert days_28["2026-07-06"] == 1 and sum(days_28.values()) == 1
    assert len(days_27) == 7 and min(days_27) == "2026-06-29"
    store.close()


# ------------------------------------------------------------------------------ headline
def test_headline_counts_and_sentiment_match_sql(fixture_store: Store) -> None:
    s = fixture_store
    h = metrics.headline(s, START, END, LONDON)
    base = "from mentions where outbound = 0 and created_at >= ? and created_at < ?"
    mentions = q(s, f"select count(*) {base}", *W)
    complaints = q(s, f"select count(*) {base} and complaint = 1", *W)
    neg = q(s, f"select count(*) {base} and sentiment = 'negative'", *W)
    pos = q(s, f"select count(*) {base} and sentiment = 'positive'", *W)
    labelled = q(s, f"select count(*) {base} and sentiment is not null", *W)
    assert mentions > 80 and 0 < complaints < mentions and labelled < mentions  # the fixture is not degenerate
    assert h["mentions"] == mentions
    assert h["complaints"] == complaints
    assert h["negative_share"] == pytest.approx(neg / labelled)
    assert h["net_sentiment"] == pytest.approx((pos - neg) / labelled)


def test_first_response_percentiles_sla_resolution_and_escalations_match_sql(fixture_store: Store) -> None:
    s = fixture_store
    h = metrics.headline(s, START, END, LONDON)
    opened = "from cases where opened_at >= ? and opened_at < ?"
    minutes = [r[0] for r in s.db.execute(
        f"select (julianday(first_response_at) - julianday(opened_at)) * 1440 {opened} and first_response_at is not null", W
    ).fetchall()]
    assert len(minutes) > 50
    assert h["first_response_median_min"] == pytest.approx(float(np.percentile(minutes, 50)), abs=0.02)
    assert h["first_response_p90_min"] == pytest.approx(float(np.percentile(minutes, 90)), abs=0.02)

    met = q(s, f"select count(*) {opened} and first_response_at is not null "
               "and julianday(first_response_at) <= julianday(first_response_due)", *W)
    eligible = q(s, f"select count(*) {opened} and (first_response_at is not null or first_response_due < ?)", *W, W[1])
    assert 0 < met < eligible
    assert (h["sla_met"], h["sla_eligible"]) == (met, eligible)
    assert h["sla_attainment"] == pytest.approx(met / eligible)

    resolved = q(s, f"select count(*) {opened} and resolved_at is not null", *W)
    total = q(s, f"select count(*) {opened}", *W)
    assert h["resolution_rate"] == pytest.approx(resolved / total)

    escalations = q(s, "select count(*) from outbound_messages where kind = 'escalation' and status != 'cancelled' "
                       "and created_at >= ? and created_at < ?", *W)
    assert escalations == 6  # seven written in the week, one cancelled
    assert h["escalations"] == escalations


def test_brand_filter_and_week_over_week_change(fixture_store: Store) -> None:
    s = fixture_store
    h = metrics.headline(s, START, END, LONDON, brand="Fettle")
    sql = ("select count(*) from mentions m join cases c on c.id = m.case_id where m.outbound = 0 "
           "and m.created_at >= ? and m.created_at < ? and c.brand = ?")
    assert h["mentions"] == q(s, sql, *W, "Fettle")
    assert h["complaints"] == q(s, sql + " and m.complaint = 1", *W, "Fettle")
    assert 0 < h["mentions"] < metrics.headline(s, START, END, LONDON)["mentions"]

    comparison = metrics.headline_comparison(s, START, END, LONDON)
    previous = q(s, "select count(*) from mentions where outbound = 0 and complaint = 1 and created_at >= ? and created_at < ?",
                 iso(START - timedelta(days=7)), iso(START))
    assert comparison["complaints"]["previous"] == previous
    assert comparison["complaints"]["change"] == comparison["complaints"]["value"] - previous
    assert comparison["complaints"]["lower_is_better"] and not comparison["sla_attainment"]["lower_is_better"]


# ------------------------------------------------------------------------------ breakdowns
def test_daily_trend_per_brand_matches_sql(fixture_store: Store) -> None:
    s = fixture_store
    rows = metrics.daily_trend(s, START, END, LONDON)
    assert {r["day"] for r in rows} == {f"2026-11-{d}" for d in range(16, 23)}
    # November: London is on GMT, so the SQL date() of the UTC time is the local day.
    expected = {
        (d, b): (n, c)
        for d, b, n, c in s.db.execute(
            "select date(m.created_at), c.brand, count(*), sum(m.complaint) from mentions m join cases c on c.id = m.case_id "
            "where m.outbound = 0 and m.created_at >= ? and m.created_at < ? group by 1, 2", W
        ).fetchall()
    }
    got = {(r["day"], r["brand"]): (r["mentions"], r["complaints"]) for r in rows if r["mentions"]}
    assert got == expected


def test_complaints_by_intent_matches_sql(fixture_store: Store) -> None:
    s = fixture_store
    got = {r["intent"]: r["complaints"] for r in metrics.complaints_by_intent(s, START, END, LONDON)}
    expected = dict(s.db.execute(
        "select coalesce(intent, 'unlabelled'), count(*) from mentions where outbound = 0 and complaint = 1 "
        "and created_at >= ? and created_at < ? group by 1", W).fetchall())
    assert got == expected
    shares = [r["share"] for r in metrics.complaints_by_intent(s, START, END, LONDON)]
    assert sum(shares) == pytest.approx(1.0) and shares == sorted(shares, reverse=True)


def test_courier_league_matches_sql(fixture_store: Store) -> None:
    # One population for every rate: a courier's shipments of the week are those with a tracking event in
    # it plus those a complaint or negative post of the week was about; complaints on cases with the
    # courier but no known shipment are counted apart, never divided by shipments they are not among.
    s = fixture_store
    league = {r["courier"]: r for r in metrics.courier_league(s, START, END, LONDON)}
    assert set(league) == set(COURIERS)
    talked_about = ("select c.tracking_number from mentions m join cases c on c.id = m.case_id where m.outbound = 0 "
                    "and (m.complaint = 1 or m.sentiment = 'negative') and m.created_at >= ? and m.created_at < ?")
    for courier in COURIERS:
        active = q(s, "select count(distinct e.tracking_number) from tracking_events e join shipments sh "
                      "on sh.tracking_number = e.tracking_number where sh.courier = ? and e.time >= ? and e.time < ?", courier, *W)
        base = q(s, "select count(*) from shipments sh where sh.courier = ? and (exists (select 1 from tracking_events e "
                    "where e.tracking_number = sh.tracking_number and e.time >= ? and e.time < ?) "
                    f"or sh.tracking_number in ({talked_about}))", courier, *W, *W)
        failed = q(s, "select count(distinct e.tracking_number) from tracking_events e join shipments sh "
                      "on sh.tracking_number = e.tracking_number where sh.courier = ? and e.status = 'attempt_failed' "
                      "and e.time >= ? and e.time < ?", courier, *W)
        exceptions = q(s, "select count(distinct e.tracking_number) from tracking_events e join shipments sh "
                          "on sh.tracking_number = e.tracking_number where sh.courier = ? and e.status = 'exception' "
                          "and e.time >= ? and e.time < ?", courier, *W)
        complaints = q(s, "select count(*) from mentions m join cases c on c.id = m.case_id join shipments sh "
                          "on sh.tracking_number = c.tracking_number where m.outbound = 0 and m.complaint = 1 "
                          "and sh.courier = ? and m.created_at >= ? and m.created_at < ?", courier, *W)
        unlinked = q(s, "select count(*) from mentions m join cases c on c.id = m.case_id where m.outbound = 0 "
                        "and m.complaint = 1 and c.courier = ? and m.created_at >= ? and m.created_at < ? and "
                        "(c.tracking_number is null or c.tracking_number not in (select tracking_number from shipments))",
                     courier, *W)
        negative = q(s, "select count(*) from mentions m join cases c on c.id = m.case_id join shipments sh "
                        "on sh.tracking_number = c.tracking_number where m.outbound = 0 and m.sentiment = 'negative' "
                        "and sh.courier = ? and m.created_at >= ? and m.created_at < ?", courier, *W)
        after = q(s, "select count(*) from mentions m join cases c on c.id = m.case_id where m.outbound = 0 "
                     "and m.complaint = 1 and c.courier = ? and m.created_at >= ? and m.created_at < ? and exists ("
                     "select 1 from tracking_events e where e.tracking_number = c.tracking_number "
                     "and e.status in ('exception', 'attempt_failed') and e.time <= m.created_at)", courier, *W)
        row = league[courier]
        assert active > 0 and complaints > 0 and base > active  # the fixture has complaints about parcels idle this week
        assert row["active_shipments"] == active and row["shipments"] == base
        assert row["complaints"] == complaints and row["unlinked_complaints"] == unlinked
        assert row["complaints_per_1000"] == pytest.approx(1000 * complaints / base)
        assert row["negative_per_1000"] == pytest.approx(1000 * negative / base)
        assert row["failed_attempt_rate"] == pytest.approx(failed / active)
        assert row["exception_rate"] == pytest.approx(exceptions / active)
        assert row["complaints_after_tracking_problem"] == after
    assert sum(r["unlinked_complaints"] for r in league.values()) > 0
    rates = [r["complaints_per_1000"] for r in metrics.courier_league(s, START, END, LONDON)]
    assert rates == sorted(rates, reverse=True)
    total_after = len(metrics.tracking_problem_complaints(s, START, END, LONDON))
    assert total_after == sum(r["complaints_after_tracking_problem"] for r in league.values()) > 0


def _courier_shop(tmp_path: Path, spec: dict[str, tuple[int, int, int, int]]) -> Store:
    """Per courier: (active shipments, complaints on active ones, complaints on shipments idle this week,
    complaints on cases that name the courier but link no shipment)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = Store(tmp_path / "couriers.db")
    rng = random.Random(3)
    formats = {"UPS": "ups", "Royal Mail": "royal_mail", "DPD": "dpd"}
    n = 0
    with store.transaction():
        for courier, (active, on_active, on_idle, unlinked) in spec.items():
            orders = []
            for i in range(active + on_idle):
                tracking = make_tracking_number(formats[courier], rng)
                when = START + timedelta(hours=10 + i) if i < active else START - timedelta(days=9)  # idle: last scan before
                orders.append(Order(number=f"{courier[:2]}{i}", customer_id="C1", placed_at=when - timedelta(days=1),
                                    brand="Larkspur", total=10, shipments=[Shipment(
                                        tracking_number=tracking, order_number=f"{courier[:2]}{i}", courier=courier,
                                        events=[TrackingEvent(tracking_number=tracking, time=when, status="in_transit")])]))
            store.upsert_orders(orders)
            targets = ([o.shipments[0] for o in orders[:on_active]] + [o.shipments[0] for o in orders[active:]]
                       + [None] * unlinked)
            for shipment in targets:
                n += 1
                at = START + timedelta(days=2, minutes=7 * n)
                mention_id = store.insert_mention(Mention(
                    channel="x", external_id=str(n), text="where is my parcel", created_at=at, author_handle=f"c{n}",
                    labels=_labels("negative", True, "where_is_my_order", 0.5)))
                case_id = store.insert_case(Case(
                    status="new", brand="Larkspur", courier=courier, channel="x", complaint=True, author_handle=f"c{n}",
                    tracking_number=shipment.tracking_number if shipment else None, opened_at=at, last_activity_at=at,
                    first_response_due=at + timedelta(hours=1), resolution_due=at + timedelta(days=1), mention_count=1))
                store.set_mention_case(mention_id, case_id)
    return store


def test_courier_league_counts_and_divides_the_same_parcels(tmp_path: Path) -> None:
    # UPS: 12 complaints about its 100 parcels moving this week, 10 about parcels stuck since last week and
    # 5 that name UPS but no parcel. Dividing all 27 by the 100 moving parcels made UPS "worst" (270 vs 200).
    store = _courier_shop(tmp_path, {"UPS": (100, 12, 10, 5), "DPD": (100, 20, 0, 0)})
    league = {r["courier"]: r for r in metrics.courier_league(store, START, END, LONDON)}
    for courier, (shipments, complaints) in {"UPS": (110, 22), "DPD": (100, 20)}.items():
        assert q(store, "select count(*) from shipments where courier = ?", courier) == shipments
        assert league[courier]["shipments"] == shipments and league[courier]["complaints"] == complaints
        assert league[courier]["complaints_per_1000"] == pytest.approx(1000 * complaints / shipments)
    assert league["UPS"]["active_shipments"] == 100 and league["UPS"]["unlinked_complaints"] == 5
    assert league["DPD"]["unlinked_complaints"] == 0
    assert metrics.standout_courier(list(league.values())) is None  # 200 vs 200 per 1,000: nobody stands out
    store.close()


def test_a_courier_stands_out_only_beyond_noise(tmp_path: Path) -> None:
    # DPD 14 vs UPS 10 complaints on 100 parcels each: 4 more than the others' rate predicts, under two
    # Poisson standard deviations (2 x sqrt(10) = 6.3): noise. 40 vs 10 is not.
    close = _courier_shop(tmp_path / "close", {"UPS": (100, 10, 0, 0), "DPD": (100, 14, 0, 0)})
    league = metrics.courier_league(close, START, END, LONDON)
    assert [r["courier"] for r in league] == ["DPD", "UPS"] and metrics.standout_courier(league) is None
    close.close()
    far = _courier_shop(tmp_path / "far", {"UPS": (100, 10, 0, 0), "DPD": (100, 40, 0, 0), "Royal Mail": (50, 6, 0, 0)})
    league = metrics.courier_league(far, START, END, LONDON)
    worst = metrics.standout_courier(league)
    assert worst is not None and worst["courier"] == "DPD" and worst is league[0]
    assert [r["stands_out"] for r in league] == [True, False, False]
    far.close()


def test_top_themes_find_this_weeks_story_with_examples(fixture_store: Store) -> None:
    themes = metrics.top_themes(fixture_store, START, END, LONDON)
    terms = [t["term"] for t in themes]
    assert any(term in _THEME for term in terms[:3]), terms
    story = next(t for t in themes if t["term"] in _THEME)
    expected = q(fixture_store, "select count(*) from mentions where complaint = 1 and created_at >= ? and created_at < ? "
                                "and text like ?", *W, f"%{story['term']}%")
    assert story["posts"] == expected
    assert 1 <= len(story["examples"]) <= 3 and all(story["term"] in e["text"] for e in story["examples"])
    assert not any(ch.isdigit() for term in terms for ch in term)  # numbers never become themes


def test_notable_cases_reasons(fixture_store: Store) -> None:
    s = fixture_store
    cases = metrics.notable_cases(s, START, END, LONDON, limit=1000)
    by_id = {c["case_id"]: c for c in cases}
    escalated = [r[0] for r in s.db.execute(
        "select distinct case_id from outbound_messages where kind = 'escalation' and status != 'cancelled' "
        "and created_at >= ? and created_at < ?", W).fetchall()]
    assert escalated and all("escalated" in by_id[c]["reasons"] for c in escalated)
    missed = [r[0] for r in s.db.execute(
        "select id from cases where first_response_due >= ? and first_response_due < ? and first_response_at is null", W)]
    assert missed and all("no first response" in by_id[c]["reasons"] for c in missed)
    late = [r[0] for r in s.db.execute(
        "select id from cases where first_response_due >= ? and first_response_due < ? "
        "and julianday(first_response_at) > julianday(first_response_due)", W)]
    assert late and all("first response late" in by_id[c]["reasons"] for c in late)
    vip = {r[0] for r in s.db.execute(
        "select c.id from cases c join customers cu on cu.id = c.customer_id where cu.vip = 1 and c.opened_at >= ? "
        "and c.opened_at < ?", W)}
    assert vip and vip <= set(by_id)
    # What a lead must act on comes first: every escalation before any case that is only late to resolve.
    order = [c["case_id"] for c in cases]
    only_late = [order.index(c["case_id"]) for c in cases if c["reasons"] == ["resolution late"]]
    assert only_late and max(order.index(c) for c in escalated) < min(only_late)


# ------------------------------------------------------------------------------ health
def test_dead_listener_week_says_so(fixture_store: Store) -> None:
    status = {l["name"]: l for l in metrics.listener_status(fixture_store, START, END, LONDON)}
    assert status["mastodon"]["state"] == "down"
    assert "revoked" in status["mastodon"]["last_error"]
    assert status["x"]["state"] == "errors"  # one 503 during the week, polling since
    gaps = metrics.data_gaps(fixture_store, START, END, LONDON)
    mastodon = [g for g in gaps if g["channel"] == "mastodon"]
    assert mastodon, gaps
    last_post = q(fixture_store, "select max(created_at) from mentions where channel = 'mastodon'")
    assert mastodon[-1]["to"] == iso(END)
    assert mastodon[-1]["from"] <= iso(MASTODON_DIES + timedelta(hours=12)) and mastodon[-1]["from"] > last_post
    assert not [g for g in gaps if g["channel"] == "x"]  # normal night-time quiet is not a gap


def test_healthy_week_has_no_warnings(fixture_store: Store) -> None:
    prev = (START - timedelta(days=7), START)
    assert metrics.data_gaps(fixture_store, *prev, LONDON) == []


def test_quiet_but_healthy_channel_is_not_a_gap(tmp_path: Path) -> None:
    store = Store(tmp_path / "quiet.db")
    for i in range(3):  # three posts a week: silence is normal
        store.insert_mention(Mention(channel="email", external_id=str(i), text="hello",
                                     created_at=START - timedelta(days=7 * i + 2)))
    assert metrics.data_gaps(store, START, END, LONDON) == []
    store.close()


def test_dashboard_bundles_everything(fixture_store: Store) -> None:
    data = metrics.dashboard(fixture_store, START, END, LONDON, brand="Larkspur")
    assert set(data) >= {"headline", "daily", "intents", "couriers", "themes", "notable_cases", "listeners", "gaps"}
    assert data["headline"]["mentions"]["value"] == metrics.headline(fixture_store, START, END, LONDON, "Larkspur")["mentions"]
    assert {r["brand"] for r in data["daily"]} == {"Larkspur"}


def test_bad_windows_are_refused(fixture_store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        metrics.headline(fixture_store, datetime(2026, 11, 16), END, LONDON)
    with pytest.raises(ValueError, match="empty window"):
        metrics.headline(fixture_store, END, START, LONDON)


def test_hours_that_have_not_happened_are_never_a_gap(fixture_store: Store) -> None:
    # Mid-week, the window still runs to Sunday night: the mastodon gap ends now, not at the window's end,
    # and the quiet x channel has no "gap" in hours still to come.
    now = MASTODON_DIES + timedelta(days=2, hours=5, minutes=30)
    gaps = metrics.data_gaps(fixture_store, START, END, LONDON, now=now)
    assert gaps and all(g["to"] <= iso(now) for g in gaps), gaps
    assert max(g["to"] for g in gaps if g["channel"] == "mastodon") == iso(now.replace(minute=0))
    before_the_window = metrics.data_gaps(fixture_store, START, END, LONDON, now=START)
    assert before_the_window == []


def test_an_empty_previous_window_is_no_baseline(tmp_path: Path) -> None:
    store = Store(tmp_path / "new-shop.db")
    for i in range(30):  # the shop's first week with Doorstep: nothing before it
        store.insert_mention(Mention(channel="x", external_id=str(i), text="where is my parcel",
                                     created_at=START + timedelta(hours=5 * i)))
    head = metrics.headline_comparison(store, START, END, LONDON)
    assert head["mentions"]["value"] == 30
    assert head["mentions"]["change"] is None and head["mentions"]["previous_empty"] is True
    from doorstep.reports import fmt_change

    assert fmt_change("mentions", head["mentions"]) == "no data the week before"
    store.close()


def test_half_hour_zone_busy_channel_has_no_gap(tmp_path: Path) -> None:
    # Asia/Kolkata is UTC+05:30: its local midnight is hh:30 UTC, so the hours to check start at :30
    # and a post at 10:45 UTC belongs to the hour that began at 10:30 UTC, not to "10:00 UTC".
    kolkata = ZoneInfo("Asia/Kolkata")
    start, end = metrics.week_window("2026-W46", kolkata)
    assert start.astimezone(timezone.utc).minute == 30
    store = Store(tmp_path / "kolkata.db")
    outage = (start + timedelta(days=3), start + timedelta(days=3, hours=12))  # the listener down for 12 h
    at, n = start - timedelta(days=28), 0
    with store.transaction():
        while at < end:
            for minute in (5, 25, 45):  # three X posts an hour, every hour
                t = at + timedelta(minutes=minute)
                if not outage[0] <= t < outage[1]:
                    n += 1
                    store.insert_mention(Mention(channel="x", external_id=str(n), text="where is my parcel", created_at=t))
            at += timedelta(hours=1)
    in_week = q(store, "select count(*) from mentions where created_at >= ? and created_at < ?", iso(start), iso(end))
    assert in_week == 3 * 168 - 3 * 12
    gaps = metrics.data_gaps(store, start, end, kolkata, now=end)
    assert [(g["channel"], g["from"], g["to"], g["hours"]) for g in gaps] == [("x", iso(outage[0]), iso(outage[1]), 12)]
    assert gaps[0]["from_local"] == "Thu 12 Nov 00:00"
    store.close()


def test_strangers_in_a_customers_thread_are_no_complaints_about_her_parcel(tmp_path: Path) -> None:
    """Audit of a viral day, finding 2: 1,200 strangers replied in one customer's thread ("same here", "@Shop answer
    her!"); their 509 complaint-labelled posts were counted against her one parcel, and Evri read 13,415 complaints
    per 1,000 shipments in the report and on the dashboard. A complaint is a post by the case's customer
    (``by_customer`` not false); the mood counts everyone."""
    store = _courier_shop(tmp_path, {"UPS": (10, 1, 0, 0)})
    case_id = store.db.execute("select id from cases").fetchone()[0]
    strangers = []
    for n in range(30):
        at = START + timedelta(days=2, hours=1, minutes=n)
        strangers.append(store.insert_mention(Mention(
            channel="x", external_id=f"s{n}", text="@LarkspurHelp answer her!! disgrace", created_at=at,
            author_handle=f"stranger{n}", labels=_labels("negative", True, "customer_service", 0.8))))
        store.set_mention_case(strangers[-1], case_id)
    store.set_mentions_by_customer([(m, False) for m in strangers])
    league = {r["courier"]: r for r in metrics.courier_league(store, START, END, LONDON)}
    assert league["UPS"]["complaints"] == 1 and league["UPS"]["negative_mentions"] == 1, league["UPS"]
    head = metrics.headline(store, START, END, LONDON)
    assert head["complaints"] == 1, head
    assert head["negative_share"] == pytest.approx(1.0)  # 31 negative of 31: the brand's mood is everyone's
    assert [r["complaints"] for r in metrics.complaints_by_intent(store, START, END, LONDON)] == [1]
    # Audit of last stop's behaviours, finding 2: the "Complaints per day" chart (dashboard, weekly report) said 31.
    assert sum(r["complaints"] for r in metrics.daily_trend(store, START, END, LONDON)) == 1
    store.close()
