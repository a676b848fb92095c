"""Issue 17, SLA clocks that mean something: business hours with public holidays, a response clock
per unanswered post, a priority raised late counted from then, pauses while we wait on the
customer or the case is snoozed, snoozed cases out of the queue until they wake, and a due
order a lead can defend. Every test runs on a fake clock (``now`` passed in)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from console.widgets import sla_state
from doorstep import sla
from doorstep.cases import sla_due
from doorstep.business_hours import Calendar, calendar_for
from doorstep.config import BusinessHours, Config, ConfigError, parse_config
from doorstep.models import Case, Mention
from doorstep.pipeline import Pipeline
from doorstep.store import InboxQuery, Store

from conftest import labels

UTC = timezone.utc
# Monday 16 November 2026, 09:00 in London (GMT in November, so UTC = local time).
MONDAY = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
LOST = labels("lost_or_missing", "negative", True, 0.8)  # scores 71: P1
CHAT = labels()  # scores 10: P4
LATE = labels("late_delivery", "negative", True, 0.5)  # scores 58: P2


@pytest.fixture
def config() -> Config:
    """The demo's targets: answers within the hour or so, resolutions in days (business hours)."""
    return parse_config({
        "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}, "keywords": ["larkspur"]}],
        "sla": {"p1": {"first_response": 30, "resolution": 240}, "p2": {"first_response": 60, "resolution": 2880},
                "p3": {"first_response": 240, "resolution": 4320}, "p4": {"first_response": 1440, "resolution": 7200}},
    })


def london() -> Calendar:
    return Calendar(BusinessHours(), "Europe/London")


def post(external_id: str, at: datetime, reading=CHAT, thread: str = "t1", **fields) -> Mention:
    fields.setdefault("author_handle", "jane")
    return Mention(channel="x", external_id=external_id, text=f"post {external_id}", created_at=at,
                   thread_id=thread, labels=reading, **fields)


def our_reply(external_id: str, at: datetime, thread: str = "t1") -> Mention:
    return Mention(channel="x", external_id=external_id, text="We're on it", created_at=at, thread_id=thread,
                   author_handle="LarkspurHelp", outbound=True)


def only_case(store: Store) -> Case:
    rows = store.db.execute("select id from cases").fetchall()
    assert len(rows) == 1
    case = store.get_case(rows[0][0])
    assert case is not None
    return case


# ----------------------------------------------------------------------- calendar
def test_business_hours_skip_the_weekend() -> None:
    cal = london()
    friday_late = datetime(2026, 11, 20, 16, 50, tzinfo=UTC)
    assert cal.add(friday_late, timedelta(minutes=30)) == datetime(2026, 11, 23, 9, 20, tzinfo=UTC)
    saturday = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert cal.add(saturday, timedelta(minutes=30)) == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    assert cal.between(friday_late, datetime(2026, 11, 23, 9, 20, tzinfo=UTC)) == timedelta(minutes=30)
    # and backwards: a snooze's unused time given back
    assert cal.add(datetime(2026, 11, 23, 9, 20, tzinfo=UTC), timedelta(minutes=-30)) == friday_late


def test_public_holidays_come_from_the_holidays_package() -> None:
    cal = london()
    # Christmas Day is a Friday in 2026; Boxing Day falls on Saturday, so Monday 28th is its substitute.
    christmas_eve = datetime(2026, 12, 24, 16, 45, tzinfo=UTC)
    assert cal.add(christmas_eve, timedelta(minutes=30)) == datetime(2026, 12, 29, 9, 15, tzinfo=UTC)
    assert cal.is_closed_day(date(2026, 12, 28)) and not cal.is_closed_day(date(2026, 12, 29))
    # another country, another calendar: 28 December is a working day in Germany (Bavaria)
    bavaria = Calendar(BusinessHours(country="DE", subdivision="BY", timezone="Europe/Berlin"))
    assert not bavaria.is_closed_day(date(2026, 12, 28)) and bavaria.is_closed_day(date(2026, 12, 26))
    # closed dates of the team's own
    shutdown = Calendar(BusinessHours(closed_dates=[date(2026, 11, 17)]))
    assert shutdown.add(MONDAY.replace(hour=16, minute=50), timedelta(minutes=30)) == \
        datetime(2026, 11, 18, 9, 20, tzinfo=UTC)


def test_a_day_on_which_the_clocks_change_is_as_long_as_it_really_is() -> None:
    always = Calendar(BusinessHours(sunday="00:00-24:00", country=""), "Europe/London")
    # Saturday noon to Monday 08:00 local: only Sunday is open, 00:00 to 24:00 local
    autumn = always.between(datetime(2026, 10, 24, 12, 0, tzinfo=UTC), datetime(2026, 10, 26, 8, 0, tzinfo=UTC))
    assert autumn == timedelta(hours=25)  # British Summer Time ends on Sunday 25 October
    spring = always.between(datetime(2026, 3, 28, 12, 0, tzinfo=UTC), datetime(2026, 3, 30, 7, 0, tzinfo=UTC))
    assert spring == timedelta(hours=23)  # and begins on Sunday 29 March
    sunday = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # 00:00 BST
    assert always.add(sunday, timedelta(hours=24)) == datetime(2026, 10, 25, 23, 0, tzinfo=UTC)  # 23:00 GMT


@pytest.mark.parametrize("section, expected", [
    ({"business_hours": {"monday": "9-17"}}, "business_hours.monday: Value error, '9' is not a time of day"),
    ({"business_hours": {"country": "XX"}}, "public holidays: Country XX not available"),
    ({"business_hours": {day: "closed" for day in ("monday", "tuesday", "wednesday", "thursday", "friday")}},
     "every day is closed"),
    ({"business_hours": {"timezone": "Mars/Olympus"}}, "unknown time zone 'Mars/Olympus'"),
    ({"brands": [{"name": "A", "business_hours": {"sunday": "17:00-09:00"}}]},
     "brands.0.business_hours: Value error, sunday"),
    ({"sla": {"p1": {"first_response": 60, "resolution": 30}, "p2": {"first_response": 1, "resolution": 2},
              "p3": {"first_response": 1, "resolution": 2}, "p4": {"first_response": 1, "resolution": 2}}},
     "sla.p1: Value error, resolution (30 min) is shorter than first_response (60 min)"),
])
def test_bad_business_hours_are_one_line_naming_the_key(section: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(section)
    assert expected in str(exc.value) and "\n" not in str(exc.value) and "Traceback" not in str(exc.value)


def test_a_brand_keeps_its_own_hours_and_targets() -> None:
    config = parse_config({"brands": [
        {"name": "Fettle", "business_hours": {"saturday": "10:00-16:00"},
         "sla": {"p1": {"first_response": 15, "resolution": 120, "business_hours": False}}},
        {"name": "Larkspur"}]})
    saturday = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    fettle, larkspur = calendar_for(config, "Fettle"), calendar_for(config, "Larkspur")
    assert fettle.add(saturday, timedelta(minutes=30)) == saturday + timedelta(minutes=30)
    assert larkspur.add(saturday, timedelta(minutes=30)) == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    assert config.hours_for("Fettle").monday == "09:00-17:00"  # the default's other days
    # a P1 around the clock for Fettle only: Saturday night's post is due in 15 minutes
    night = datetime(2026, 11, 21, 23, 0, tzinfo=UTC)
    assert sla_due(80.0, night, config, "Fettle") == (night + timedelta(minutes=15), night + timedelta(minutes=120))
    assert sla_due(80.0, night, config, "Larkspur")[0] == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


# ----------------------------------------------------------------------- clocks on cases
def test_first_response_starts_at_the_unanswered_post_and_a_later_post_gets_its_own_clock(
        store: Store, config: Config) -> None:
    pipeline = Pipeline(store, config)
    friday = datetime(2026, 11, 20, 16, 50, tzinfo=UTC)
    pipeline.ingest([post("1", friday, LATE)])  # P2: 60 minutes
    case = only_case(store)
    assert case.first_response_due == datetime(2026, 11, 23, 9, 50, tzinfo=UTC)  # Monday, not Friday 17:50
    assert case.first_response_due != case.resolution_due
    assert sla_state(case, datetime(2026, 11, 21, 12, 0, tzinfo=UTC))[0] == "green"  # Saturday: nothing overdue
    pipeline.ingest([our_reply("2", datetime(2026, 11, 23, 9, 30, tzinfo=UTC))])
    case = only_case(store)
    assert case.first_response_at == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    assert sla.next_due(case) == ("resolution", case.resolution_due)
    # Tuesday 14:00 the customer writes again: our answer to *that* post is due an hour later
    tuesday = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    pipeline.ingest([post("3", tuesday, LATE)])
    case = only_case(store)
    assert sla.next_due(case) == ("next response", tuesday + timedelta(hours=1))
    assert sla_state(case, tuesday + timedelta(minutes=76)) == ("red", "next response overdue 16m")
    assert case.first_response_at == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)  # the reports' first answer stays
    pipeline.ingest([our_reply("4", tuesday + timedelta(minutes=20))])
    assert sla.next_due(only_case(store))[0] == "resolution"  # type: ignore[index]


def test_first_response_due_never_equals_resolution_due(store: Store, config: Config) -> None:
    pipeline = Pipeline(store, config)
    for n, (reading, at) in enumerate([(LOST, MONDAY), (LATE, MONDAY.replace(hour=16, minute=59)),
                                       (CHAT, datetime(2026, 11, 21, 3, 0, tzinfo=UTC))]):
        pipeline.ingest([post(f"p{n}", at, reading, thread=f"t{n}", author_handle=f"who{n}")])
    for (first, resolution,) in store.db.execute("select first_response_due, resolution_due from cases"):
        assert first < resolution


def test_a_priority_raised_late_counts_from_then_not_from_the_first_post(store: Store, config: Config) -> None:
    pipeline = Pipeline(store, config)
    pipeline.ingest([post("1", MONDAY, CHAT), our_reply("2", MONDAY + timedelta(minutes=40))])
    assert only_case(store).priority_band == "p4"
    nine_days = MONDAY + timedelta(days=9)  # Wednesday 25 November, 09:00
    pipeline.ingest([post("3", nine_days, LOST)])
    case = only_case(store)
    assert case.priority_band == "p1"
    colour, words = sla_state(case, nine_days + timedelta(minutes=5))
    assert colour != "red" and "overdue" not in words, words
    assert case.next_response_due == nine_days + timedelta(minutes=30)
    assert case.resolution_due == nine_days + timedelta(minutes=240)  # P1's 4 hours from the raise
    # in the queue it is due soon, not nine days overdue
    assert store.inbox_count(InboxQuery(sla_state="breached", now=nine_days + timedelta(minutes=5))) == 0
    assert store.inbox_count(InboxQuery(sla_state="due_soon", now=nine_days + timedelta(minutes=5))) == 1


def test_waiting_on_the_customer_pauses_the_clocks_and_their_answer_resumes_them(store: Store, config: Config) -> None:
    pipeline = Pipeline(store, config)
    pipeline.ingest([post("1", MONDAY, LATE), our_reply("2", MONDAY + timedelta(minutes=20))])
    case = only_case(store)
    due_before = case.resolution_due
    assert due_before is not None
    asked = MONDAY + timedelta(hours=1)  # our question went out: waiting on the customer
    case = store.update_case(case.id, case.version, "ann",  # type: ignore[arg-type]
                             **sla.follow(case, {"status": "pending_customer"}, asked, config))
    assert case.sla_paused_at == asked and sla.next_due(case) is None
    weeks_later = MONDAY + timedelta(days=14)
    assert sla_state(case, weeks_later) == ("grey", "waiting on customer (clock paused)")
    assert store.inbox_count(InboxQuery(sla_state="breached", now=weeks_later)) == 0
    # Thursday 10:00 they answer: the clock resumes with what it had left (3 business days later)
    thursday = datetime(2026, 11, 19, 10, 0, tzinfo=UTC)
    pipeline.ingest([post("3", thursday, LATE)])
    case = only_case(store)
    assert case.status == "open" and case.sla_paused_at is None
    assert case.resolution_due == london().add(due_before, timedelta(hours=3 * 8))  # three working days
    assert london().between(thursday, case.resolution_due) == london().between(asked, due_before)


def test_snoozed_cases_leave_the_queue_and_come_back(store: Store, config: Config) -> None:
    pipeline = Pipeline(store, config)
    pipeline.ingest([post("1", MONDAY, LATE), post("9", MONDAY, LATE, thread="t9", author_handle="other")])
    case = next(c for c in store.inbox(InboxQuery(now=MONDAY)) if c.author_handle == "jane")
    due_before = case.first_response_due
    now = MONDAY + timedelta(minutes=10)
    until = now + timedelta(hours=2)
    case = store.update_case(case.id, case.version, "ann",  # type: ignore[arg-type]
                             **sla.follow(case, {"snoozed_until": until}, now, config))
    # the snooze pauses the clock: its two hours are added to the deadline
    assert case.first_response_due == due_before + timedelta(hours=2)  # type: ignore[operator]
    queue = [c.id for c in store.inbox(InboxQuery(now=now + timedelta(minutes=1)))]
    assert case.id not in queue and len(queue) == 1
    assert store.inbox_count(InboxQuery(now=now + timedelta(minutes=1))) == 1
    assert store.inbox_facets("channel", InboxQuery(now=now + timedelta(minutes=1))) == {"x": 1}
    assert store.inbox_count(InboxQuery(snoozed="only", now=now + timedelta(minutes=1))) == 1
    assert [c.id for c in store.inbox(InboxQuery(snoozed="only", now=now + timedelta(minutes=1)))] == [case.id]
    # it comes back when the snooze ends...
    assert case.id in [c.id for c in store.inbox(InboxQuery(now=until + timedelta(seconds=1)))]
    assert sla_state(case, until + timedelta(seconds=1))[1].startswith("first response due in")
    # ...or at once when the customer writes, with the snooze's unused time given back
    pipeline.ingest([post("2", now + timedelta(minutes=30), LATE)])
    woken = store.get_case(case.id)
    assert woken is not None and woken.snoozed_until is None
    assert case.id in [c.id for c in store.inbox(InboxQuery(now=now + timedelta(minutes=31)))]
    assert woken.first_response_due == due_before + timedelta(minutes=30)  # paused 09:10-09:40  # type: ignore[operator]


def test_the_due_order_puts_a_fresh_overdue_answer_above_old_resolution_backlog(store: Store) -> None:
    now = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)

    def add(**fields) -> int:
        fields.setdefault("status", "open")
        return store.insert_case(Case(channel="x", opened_at=now - timedelta(days=10),
                                      last_activity_at=now, mention_count=1, **fields))

    backlog = add(priority=60.0, first_response_at=now - timedelta(days=10), resolution_due=now - timedelta(days=9))
    fresh = add(priority=55.0, first_response_due=now - timedelta(minutes=16), resolution_due=now + timedelta(days=2))
    calm = add(priority=65.0, first_response_due=now + timedelta(hours=3), resolution_due=now + timedelta(days=3))
    urgent = add(priority=80.0, first_response_at=now - timedelta(hours=1), resolution_due=now + timedelta(hours=2))
    waiting = add(priority=90.0, status="pending_customer", sla_paused_at=now - timedelta(days=1),
                  first_response_at=now - timedelta(days=2), resolution_due=now - timedelta(days=1))
    fresh_case = store.get_case(fresh)
    assert sla_state(fresh_case, now) == ("red", "first response overdue 16m")  # type: ignore[arg-type]
    # due: answers owed first (overdue on top), then resolutions by deadline, then paused cases
    assert [c.id for c in store.inbox(InboxQuery(sort="due", now=now))] == [fresh, calm, backlog, urgent, waiting]
    # priority: P1 first; within a band (all P2 here) the same due order, whatever the score
    assert [c.id for c in store.inbox(InboxQuery(now=now))] == [urgent, waiting, fresh, calm, backlog]
    assert store.inbox_count(InboxQuery(sla_state="breached", now=now)) == 2  # fresh and backlog, not waiting


# ----------------------------------------------------------------------- the console
def test_the_inbox_hides_snoozed_cases_lists_them_under_a_filter_and_states_its_order(
        tmp_path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    from console.auth import add_user
    from doorstep.models import utcnow
    from tests.conftest import console_store
    from tests.test_inbox_queue import listed, page, texts

    store = console_store(tmp_path / "shop.db", request, monkeypatch)
    add_user(store, "ann", "correct horse battery", role="agent", name="Ann", rounds=4)
    now = utcnow()
    ids = [store.insert_case(Case(status="open", priority=60.0, channel="x", author_handle=f"c{n}",
                                  opened_at=now, last_activity_at=now, mention_count=1,
                                  first_response_due=now + timedelta(hours=n + 1),
                                  resolution_due=now + timedelta(days=2),
                                  snoozed_until=now + timedelta(hours=3) if n == 1 else None))
           for n in range(3)]
    at = page("inbox", store)
    assert sorted(listed(at)) == [ids[0], ids[2]]
    assert "snoozed cases are hidden until they wake" in texts(at)
    assert "within a band, cases owing the customer an answer" in texts(at)
    at.selectbox(key="inbox_sla").select("snoozed").run()
    assert listed(at) == [ids[1]]


def test_a_status_changed_by_the_worker_resumes_the_clocks_and_a_reopened_case_gets_a_new_resolution_clock(
        store: Store, config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    import responders.outbox as outbox
    from responders.outbox import update_case_retrying

    pipeline = Pipeline(store, config)
    pipeline.ingest([post("1", MONDAY, LATE), our_reply("2", MONDAY + timedelta(minutes=20))])
    case = only_case(store)
    due_before = case.resolution_due
    asked = MONDAY + timedelta(hours=1)
    store.update_case(case.id, case.version, "ann",  # type: ignore[arg-type]
                      **sla.follow(case, {"status": "pending_customer"}, asked, config))
    # the customer answers our question by SMS (dialogue): the worker sets the case open again
    answered_at = MONDAY + timedelta(days=1)  # Tuesday 09:00
    monkeypatch.setattr(outbox, "utcnow", lambda: answered_at)
    case = update_case_retrying(store, case.id, "dialogue", lambda c: {"status": "open"}, config)  # type: ignore[arg-type,assignment]
    assert case is not None and case.status == "open"
    # paused Monday 10:00-17:00 (then closed until Tuesday 09:00): seven open hours later
    assert case.resolution_due == london().add(due_before, timedelta(hours=7))  # type: ignore[arg-type]
    assert sla.next_due(case) == ("resolution", case.resolution_due)
    # resolved, then reopened by an agent: a fresh resolution clock from the reopening
    case = store.update_case(case.id, case.version, "ann", **sla.follow(case, {"status": "resolved"}, answered_at,  # type: ignore[arg-type]
                                                                         config))
    reopened = answered_at + timedelta(hours=2)
    case = store.update_case(case.id, case.version, "ann", **sla.follow(case, {"status": "open"}, reopened, config))  # type: ignore[arg-type]
    assert case.resolution_due == london().add(reopened, timedelta(minutes=2880))


def test_an_answer_to_an_older_post_leaves_the_newer_posts_clock(config: Config) -> None:
    """Two-brand audit, F4, as the clock rule itself (doorstep.sla.clock_after_answer): answering old post 872 again
    cleared the due time of the customer's newer, unanswered post 969. The clock stays with post 969."""
    due = MONDAY + timedelta(hours=1)
    case = Case(channel="x", author_handle="jane", brand="Larkspur", priority=58, status="open",
                first_response_at=MONDAY - timedelta(hours=2), awaiting_since=MONDAY, next_response_due=due)
    left = sla.clock_after_answer(case, MONDAY - timedelta(hours=3), [MONDAY], MONDAY + timedelta(minutes=5), config)
    assert left == {"awaiting_since": MONDAY, "next_response_due": due}


def test_an_answer_to_the_clocks_post_stops_it_unless_the_customer_wrote_again(config: Config) -> None:
    """Answering the post the clock counts from stops it (None: as every answer did); where the customer wrote again
    after that post, the clock counts from their first post after it, with a full response target (P2: an hour)."""
    case = Case(channel="x", author_handle="jane", brand="Larkspur", priority=58, status="open",
                first_response_at=MONDAY - timedelta(hours=2), awaiting_since=MONDAY,
                next_response_due=MONDAY + timedelta(hours=1))
    assert sla.clock_after_answer(case, MONDAY, [], MONDAY + timedelta(minutes=5), config) is None
    later = MONDAY + timedelta(minutes=20)
    left = sla.clock_after_answer(case, MONDAY, [later + timedelta(minutes=3), later], MONDAY + timedelta(minutes=30),
                                  config)
    assert left == {"awaiting_since": later, "next_response_due": later + timedelta(hours=1)}
