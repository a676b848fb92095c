"""The demo shop: deterministic, consistent tracking, posts that match the tracking, links that hold up."""

from __future__ import annotations

import json

import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from doorstep.config import load_config
from commands.demo import DEFAULT_CONFIG, _Generator, _stop_children, build_demo, digest, resolve_config_path
from commands.demo import _mentions as _generate_mentions
from doorstep.models import Mention
from doorstep.store import Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
SIZE = {"customers": 60, "orders": 200, "mentions": 150}


def _classifier():
    from classifiers import load_classifier

    return load_classifier("baseline")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _small_demo_with_standins(tmp_path: Path, name: str) -> tuple[Path, Path, Any]:
    """A small demo shop with its X feed, and free ports for the console and every stand-in."""
    from commands.demo import DemoPorts

    db, feed = tmp_path / f"{name}.db", tmp_path / f"{name}.x-feed.jsonl"
    build_demo(str(db), seed=5, customers=60, orders=150, mentions=150, config_path=str(DEFAULT_CONFIG),
               classifier=_classifier(), x_feed_path=feed)
    ports = DemoPorts(console=_free_port(), x=_free_port(), smtp=_free_port(), sinks=_free_port(),
                      mastodon=_free_port(), bluesky=_free_port())
    return db, feed, ports


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    summary = build_demo(str(path), seed=11, now=NOW, config_path=str(DEFAULT_CONFIG), classifier=_classifier(), **SIZE)
    return path, summary


@pytest.fixture(scope="module")
def demo(built: tuple[Path, str]) -> Store:
    store = Store(built[0])
    yield store
    store.close()


def _mentions(store: Store) -> list[Mention]:
    return list(store.iter_mentions())


def _story(m: Mention) -> str | None:
    return (m.raw or {}).get("demo", {}).get("story")


def test_demo_config_is_valid_and_names_both_brands_and_four_couriers():
    config = load_config(DEFAULT_CONFIG)
    assert [b.name for b in config.brands] == ["Larkspur Home", "Fettle Outdoor"]
    assert {c.name: c.tracking_formats for c in config.couriers} == {
        "UPS": ["ups"], "DPD": ["dpd"], "Evri": ["evri"], "Royal Mail": ["royal_mail"],
    }
    assert config.timezone == "Europe/London"


def test_same_seed_same_shop_even_in_another_process(built: tuple[Path, str], demo: Store, tmp_path: Path):
    # The rebuild runs in another process with another str-hash seed: nothing may depend on hash().
    again = tmp_path / "again.db"
    code = (
        "from datetime import datetime\n"
        "from classifiers import load_classifier\n"
        "from commands.demo import build_demo\n"
        f"build_demo({str(again)!r}, seed=11, now=datetime.fromisoformat({NOW.isoformat()!r}), "
        f"config_path={str(DEFAULT_CONFIG)!r}, classifier=load_classifier('baseline'), **{SIZE!r})\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    rebuilt = Store(again)
    try:
        assert digest(rebuilt) == digest(demo)
    finally:
        rebuilt.close()


def test_another_seed_gives_another_shop():
    def posts(seed: int) -> list[str]:
        gen = _Generator(load_config(DEFAULT_CONFIG), seed, NOW)
        gen.make_people(SIZE["customers"])
        gen.make_orders(SIZE["orders"])
        return [m.text for m in _generate_mentions(gen, SIZE["mentions"])]

    assert posts(11) == posts(11)
    assert posts(11) != posts(12)


def test_rebuilding_replaces_the_database(tmp_path: Path):
    path = tmp_path / "demo.db"
    path.write_bytes(b"not a database")
    Path(str(path) + "-wal").write_bytes(b"stale")
    build_demo(str(path), seed=3, customers=10, orders=20, mentions=12, now=NOW, classifier=_classifier())
    store = Store(path)
    try:
        assert (store.count("customers"), store.count("orders"), store.count("mentions")) == (10, 20, 12)
    finally:
        store.close()


def test_counts_are_as_asked_and_summary_reports_them(built: tuple[Path, str], demo: Store):
    assert demo.count("customers") == SIZE["customers"]
    assert demo.count("orders") == SIZE["orders"]
    assert demo.count("mentions") == SIZE["mentions"]
    shipments = demo.count("shipments")
    assert SIZE["orders"] <= shipments <= SIZE["orders"] * 1.3
    assert demo.count("tracking_events") >= 3 * shipments
    assert 0 < demo.count("cases") < SIZE["mentions"]
    summary = built[1]
    assert f"{SIZE['customers']} customers" in summary and f"{SIZE['mentions']} mentions" in summary
    assert "priority" in summary


def test_people_have_handles_some_vips_and_opt_outs(demo: Store):
    customers = [demo.get_customer(r["id"]) for r in demo.db.query("select id from customers")]
    with_handle = [c for c in customers if c and c.handles]
    assert len(with_handle) > 0.6 * len(customers)
    assert all(c.email and "@example." in c.email for c in customers if c)
    assert any(c.vip for c in customers) and not all(c.vip for c in customers)
    assert any(c.opt_out for c in customers)


def test_every_shipment_is_in_time_order_and_its_status_is_its_last_event(demo: Store):
    numbers = [r["tracking_number"] for r in demo.db.query("select tracking_number from shipments")]
    statuses = set()
    for number in numbers:
        shipment = demo.get_shipment(number)
        assert shipment is not None and shipment.events, number
        times = [e.time for e in shipment.events]
        assert times == sorted(times) and len(set(times)) == len(times), number
        assert shipment.status == shipment.events[-1].status, number
        assert shipment.events[0].status == "info_received"
        assert times[-1] <= NOW
        statuses.add(shipment.status)
    # The demo shows trouble as well as happy deliveries.
    assert {"delivered", "in_transit", "returned"} <= statuses
    assert statuses & {"exception", "attempt_failed"}


def test_mentions_span_the_last_days_up_to_the_last_hours(demo: Store):
    times = [m.created_at for m in _mentions(demo)]
    assert max(times) <= NOW and max(times) > NOW - timedelta(hours=6)
    assert min(times) >= NOW - timedelta(days=4.5)  # a small demo is a busy few days
    assert min(times) < NOW - timedelta(days=2)
    assert {m.channel for m in _mentions(demo)} >= {"x", "webhook"}


def test_the_full_demo_spans_three_weeks(full: Path):
    # Three full weeks before the reference week: the weekly report has a last week and a week before.
    from commands.demo import REFERENCE_NOW

    store = Store(full)
    try:
        times = [m.created_at for m in _mentions(store)]
    finally:
        store.close()
    assert max(times) > REFERENCE_NOW - timedelta(hours=6)
    assert REFERENCE_NOW - timedelta(days=25) <= min(times) < REFERENCE_NOW - timedelta(days=17)


def test_own_order_number_links_and_confirms(demo: Store):
    own = [m for m in _mentions(demo) if _story(m) == "own_order"]
    assert own
    for mention in own:
        order = demo.get_order(mention.raw["demo"]["order"])
        assert order is not None
        shown = f"#{order.number}" if order.number.isdigit() else order.number
        assert shown in mention.text
        assert demo.customer_id_by_handle(mention.channel, mention.author_handle) == order.customer_id
        case = demo.get_case(mention.case_id)
        assert case is not None
        assert (case.order_number, case.customer_id, case.link_confirmed) == (order.number, order.customer_id, True)


def test_someone_elses_order_number_is_not_confirmed(demo: Store):
    borrowed = [m for m in _mentions(demo) if _story(m) == "other_order"]
    assert borrowed
    for mention in borrowed:
        order = demo.get_order(mention.raw["demo"]["order"])
        assert order is not None
        assert demo.customer_id_by_handle(mention.channel, mention.author_handle) != order.customer_id
        case = demo.get_case(mention.case_id)
        assert not (case.order_number == order.number and case.link_confirmed)


def test_each_case_is_one_issue_with_one_brand_and_an_honest_link(demo: Store):
    """The full demo once put 13 posts of one author over ten days, to both brands, in one case."""
    brands = {b.name for b in load_config(DEFAULT_CONFIG).brands}
    cases = [demo.get_case(r["id"]) for r in demo.db.query("select id from cases")]
    assert len(cases) > 0
    for case in cases:
        assert case is not None
        posts = [m for m in demo.mentions_for_case(case.id) if not m.outbound]  # type: ignore[arg-type]
        named = {n for m in posts for n in m.matched if n in brands}
        assert len(named) <= 1 or len({m.thread_id for m in posts}) == 1, (case.id, named)
        # A guess is never confirmed; praise and thanks never make "repeat contact".
        assert not (case.link_method == "recent_order" and case.link_confirmed), case.id
        if any("repeat contact" in r for r in case.priority_reasons):
            assert demo.contact_count(case.id) > 1, case.id  # type: ignore[arg-type]


def test_complaints_match_the_tracking_of_their_parcel(demo: Store):
    checked = 0
    expected = {"failed": "attempt_failed", "failed_twice": "attempt_failed", "returned": "returned",
                "damaged": "exception", "address": "exception", "not_received": "delivered"}
    for mention in _mentions(demo):
        info = (mention.raw or {}).get("demo", {})
        if info.get("story") not in ("own_order", "own_tracking", "handle_only", "courier_page"):
            continue
        status = expected.get(info.get("topic"))
        if status is None:
            continue
        order = demo.get_order(info["order"])
        before = [e.status for s in order.shipments for e in s.events if e.time <= mention.created_at]
        assert status in before, (mention.text, before)
        checked += 1
    assert checked >= 3


def test_threads_have_our_replies_which_stop_the_first_response_clock(demo: Store):
    replies = [m for m in _mentions(demo) if m.outbound]
    assert replies
    config = load_config(DEFAULT_CONFIG)
    answered = 0
    for reply in replies:
        assert reply.author_handle.lower() in config.own_handles(reply.channel)
        thread = demo.thread(reply.channel, reply.thread_id)
        root = thread[0]
        assert root.outbound is False and root.created_at < reply.created_at
        case = demo.get_case(root.case_id)
        # Also when the root joined an older case of the same order from another thread.
        assert reply.case_id == root.case_id
        assert case.first_response_at is not None and case.first_response_at <= reply.created_at
        answered += 1
    assert answered >= 3
    follow_ups = [m for m in _mentions(demo) if _story(m) == "follow_up"]
    assert follow_ups and all(m.in_reply_to and not m.outbound for m in follow_ups)


def test_hostile_posts_are_stored_verbatim(demo: Store):
    texts = [m.text for m in _mentions(demo)]
    assert any(t.startswith("<script>alert(1)</script> @") for t in texts)
    assert any(t.startswith("![img](http://x) @") for t in texts)


def test_config_path_comes_from_argument_then_environment_then_repo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("DOORSTEP_CONFIG", raising=False)
    assert resolve_config_path(None) == DEFAULT_CONFIG
    assert resolve_config_path("demo/doorstep.toml").resolve() == DEFAULT_CONFIG.resolve()
    mine = tmp_path / "mine.toml"
    monkeypatch.setenv("DOORSTEP_CONFIG", str(mine))
    assert resolve_config_path(None) == mine


def test_cli_builds_a_small_demo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from commands.cli import cli

    monkeypatch.setenv("DOORSTEP_CLASSIFIER", "baseline")
    db = tmp_path / "cli.db"
    result = CliRunner().invoke(
        cli,
        ["--db", str(db), "--config", str(DEFAULT_CONFIG), "demo", "--build-only", "--customers", "12",
         "--orders", "25", "--mentions", "15"],
    )
    assert result.exit_code == 0, result.output
    feed = [json.loads(line) for line in db.with_suffix(".x-feed.jsonl").read_text().splitlines()]
    store = Store(db)
    try:
        stored_x = {m.external_id for m in store.iter_mentions() if m.channel == "x"}
        held_back = [p for p in feed if p["id"] not in stored_x]
        # Every stored X post is in the emulator too (a reply to any X case finds its tweet), the
        # newest stand-alone ones wait there for the listener, and together nothing is lost.
        assert stored_x and stored_x <= {p["id"] for p in feed}
        assert held_back and store.count("mentions") + len(held_back) == 15
        for post in feed:
            assert post["username"] and post["text"]
        stored_replies_to_feed = store.db.execute(
            f"select count(*) from mentions where in_reply_to in ({','.join('?' * len(held_back))})",
            [p["id"] for p in held_back],
        ).fetchone()[0]
        assert stored_replies_to_feed == 0  # no stored post answers a post that is not there yet
        # The demo's assignees can log in: every one is a user.
        users = {r[0] for r in store.db.execute("select username from users")}
        assignees = {r[0] for r in store.db.execute("select distinct assignee from cases where assignee is not null")}
        assert assignees <= users and {"agent", "lead", "admin"} <= users
    finally:
        store.close()


def test_stopping_the_demo_ends_its_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    _stop_children([child], grace_s=5)
    assert child.returncode is not None  # terminated (not left running behind the demo)


@pytest.mark.parametrize("module", ["standins.mastodon", "standins.bluesky"])
def test_ctrl_c_then_the_demos_sigterm_stops_a_stand_in_without_a_traceback(module: str, tmp_path: Path):
    """Before: Ctrl-C on `make demo` reaches every child (one process group); the demo then sends
    each SIGTERM, which struck the stand-in while it was shutting down, and the terminal showed a
    KeyboardInterrupt traceback from standins/mastodon.py (found stopping a fresh clone's demo)."""
    import signal
    import time

    child = _start_stand_in(module)
    try:
        child.send_signal(signal.SIGINT)
        time.sleep(0.002)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0 and "Traceback" not in err, (child.returncode, err)


def _start_stand_in(module: str, **popen: Any) -> subprocess.Popen:
    """A stand-in (``python -m <module>``) on a free port, returned once it says it is listening."""
    child = subprocess.Popen([sys.executable, "-m", module, "--port", str(_free_port())], cwd=Path(__file__).parent.parent,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    first = child.stderr.readline()
    if "stand-in on" not in first:
        child.kill()
    assert "stand-in on" in first, first
    return child


def test_a_stand_in_started_with_ctrl_c_ignored_keeps_ignoring_it():
    """A demo started in the background (Ctrl-C ignored, as a shell does for `make demo &`) keeps
    its stand-ins through a SIGINT, as it keeps itself: else they stop and the demo reports them dead."""
    import signal
    import time

    child = _start_stand_in("standins.mastodon", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        child.send_signal(signal.SIGINT)
        time.sleep(0.6)
        assert child.poll() is None
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0 and "Traceback" not in err, (child.returncode, err)


# ------------------------------------------------------------------ issue 18: a working day, reproducibly
@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo as `make demo` builds it (default sizes and seed), at its reference dates."""
    path = tmp_path_factory.mktemp("full") / "demo.db"
    build_demo(str(path), config_path=str(DEFAULT_CONFIG), classifier=_classifier(),
               x_feed_path=path.with_suffix(".x-feed.jsonl"), live=False)
    return path


def test_the_demo_is_built_at_a_fixed_reference_moment_not_today(full: Path):
    from commands.demo import REFERENCE_NOW

    store = Store(full)
    try:
        newest = max(m.created_at for m in store.iter_mentions())
        assert REFERENCE_NOW - timedelta(hours=6) < newest <= REFERENCE_NOW
    finally:
        store.close()


def test_moving_the_demo_to_now_changes_dates_not_figures(full: Path, tmp_path: Path):
    from commands.demo import REFERENCE_NOW
    from responders.followup import complaints_after_events

    later = REFERENCE_NOW + timedelta(days=40, hours=5)
    moved = tmp_path / "moved.db"
    build_demo(str(moved), config_path=str(DEFAULT_CONFIG), classifier=_classifier(),
               x_feed_path=moved.with_suffix(".x-feed.jsonl"), shift_to=later)
    config = load_config(DEFAULT_CONFIG)
    a, b = Store(full), Store(moved)
    try:
        for table in ("customers", "orders", "shipments", "tracking_events", "mentions", "cases"):
            assert a.count(table) == b.count(table), table
        assert complaints_after_events(a, config) == complaints_after_events(b, config)
        newest = max(m.created_at for m in b.iter_mentions())
        assert later - timedelta(hours=6) < newest <= later
        statuses = "select status, count(*) from cases group by status order by status"
        assert a.db.execute(statuses).fetchall() == b.db.execute(statuses).fetchall()
    finally:
        a.close()
        b.close()


def test_a_team_that_keeps_up_few_open_cases_are_overdue(tmp_path: Path):
    from commands.demo import REFERENCE_NOW
    from doorstep.models import utcnow
    from doorstep.store import InboxQuery

    path = tmp_path / "live.db"
    build_demo(str(path), config_path=str(DEFAULT_CONFIG), classifier=_classifier(), shift_to=utcnow())
    store = Store(path)
    try:
        open_cases = store.inbox_count()
        overdue = store.inbox_count(InboxQuery(sla_state="breached"))
        assert open_cases >= 30
        assert overdue <= 0.3 * open_cases, (overdue, open_cases)
        unassigned_open = store.db.execute(
            "select count(*) from cases where status in ('open', 'pending_customer') and assignee is null").fetchone()[0]
        assert unassigned_open == 0
    finally:
        store.close()
    assert REFERENCE_NOW  # built from the reference shop, moved to now


def test_the_last_full_week_reports_without_data_gaps_or_a_jump(full: Path):
    from doorstep import metrics
    from doorstep.reports import week_bounds

    config = load_config(DEFAULT_CONFIG)
    store = Store(full)
    try:
        counts = []
        for week in ("2026-W46", "2026-W47"):  # the two full weeks before the reference moment
            start, end = week_bounds(week, config.tz)
            assert metrics.data_gaps(store, start, end, config.tz) == [], week
            counts.append(store.db.execute("select count(*) from mentions where outbound = 0 and created_at >= ? "
                                           "and created_at < ?", [start.isoformat(), end.isoformat()]).fetchone()[0])
        assert counts[0] > 150 and 0.7 < counts[1] / counts[0] < 1.4, counts
    finally:
        store.close()


def test_every_post_the_listener_should_fetch_matches_the_demo_queries(full: Path):
    from commands.demo import matches_x_queries

    queries = load_config(DEFAULT_CONFIG).channels["x"]["queries"]
    feed = [json.loads(line) for line in full.with_suffix(".x-feed.jsonl").read_text().splitlines()]
    store = Store(full)
    try:
        held_back = [p for p in feed if store.mention_by_external_id("x", p["id"]) is None]
    finally:
        store.close()
    assert len(held_back) == 40
    assert all(matches_x_queries(p["text"], queries, p["username"]) for p in held_back)
    assert not matches_x_queries("larkspurs are lovely #LarkspurHome", ["larkspur"])  # the matcher is X's


def test_a_taken_port_stops_the_demo_before_it_builds_anything(tmp_path: Path):
    import socket

    from commands.cli import cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "never.db"
        result = CliRunner().invoke(cli, ["--db", str(db), "--config", str(DEFAULT_CONFIG), "demo", "--port", str(port)])
    assert result.exit_code == 1
    assert f"port {port} for the demo's console is already in use" in result.output
    assert "make demo PORT=" in result.output
    assert not db.exists()


def test_escalations_and_alerts_arrive_in_the_demo_sinks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The demo's config, its environment and the local sinks: an escalation really arrives."""
    from commands.cli import cli
    from commands.demo import DemoPorts, demo_environment
    from standins.sinks import read_sent, serve
    from responders.config import alert_settings, resolve

    db = tmp_path / "sink.db"
    build_demo(str(db), seed=5, customers=40, orders=120, mentions=80, config_path=str(DEFAULT_CONFIG),
               classifier=_classifier())
    ports = DemoPorts(console=_free_port(), x=_free_port(), smtp=_free_port(), sinks=_free_port())
    folder = tmp_path / "sent"
    env = demo_environment(str(db), DEFAULT_CONFIG, ports, folder, with_x=False)
    for key in ("SMTP_HOST", "SMTP_PORT", "SMTP_FROM", "SMTP_SSL", "SMTP_STARTTLS", "SLACK_ALERTS_WEBHOOK",
                "SLACK_TEAM_WEBHOOK", "COURIER_WEBHOOK_SECRET", "DEMO_COURIER_WEBHOOK"):
        monkeypatch.setenv(key, env[key])
    config = load_config(DEFAULT_CONFIG)
    # Alerts have somewhere to go: no "has no slack_webhook_url" at start-up.
    assert resolve(alert_settings(config).slack_webhook_url) == f"http://127.0.0.1:{ports.sinks}/slack/alerts"
    controller, http = serve(folder, ports.smtp, ports.sinks)
    try:
        store = Store(db)
        case_id = store.db.execute("select id from cases order by opened_at desc limit 1").fetchone()[0]
        store.close()
        run = CliRunner().invoke
        result = run(cli, ["--db", str(db), "--config", str(DEFAULT_CONFIG), "escalate", "--case", str(case_id),
                           "--to", "lead", "--note", "customer waiting since Monday"])
        assert result.exit_code == 0, result.output
        result = run(cli, ["--db", str(db), "--config", str(DEFAULT_CONFIG), "outbox", "send"])
        assert result.exit_code == 0, result.output
    finally:
        http.shutdown()
        controller.stop()
    sent = read_sent(folder)
    mail = [s for s in sent if s["kind"] == "e-mail"]
    slack = [s for s in sent if s["kind"] == "slack"]
    assert mail and "care-lead@larkspur-home.example" in mail[0]["to"] and f"#{case_id}" in mail[0]["subject"]
    assert "customer waiting since Monday" in mail[0]["text"]
    assert slack and slack[0]["to"] == "/slack/care-team" and "customer waiting since Monday" in slack[0]["text"]
    assert slack[0]["subject"].startswith(f"Escalation: case #{case_id} (")  # the Sent mail page lists it by its title


@pytest.fixture(scope="module")
def as_make_demo_builds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo exactly as `make demo` builds it (default seed, sizes and classifier, the shipped
    model), at its reference dates: what the README's figures must come from. The baseline
    classifier gives other complaint and status counts, so ``full`` cannot stand in for it."""
    path = tmp_path_factory.mktemp("as-built") / "demo.db"
    build_demo(str(path), config_path=str(DEFAULT_CONFIG), x_feed_path=path.with_suffix(".x-feed.jsonl"), live=False)
    return path


def test_the_readme_quotes_the_demo_it_builds(as_make_demo_builds: Path) -> None:
    """Before: the README said 67 open cases, 1 due within the hour, 37 waiting on the customer and
    "108 of them (27%) ... 18.4 hours" for proactive outreach, while `make demo` built 70, 2, 39 and
    109 (28%), 18.1 h: figures from an older demo, which nothing re-checked (issue 18, item 3)."""
    from dataclasses import replace

    from commands.demo import REFERENCE_NOW
    from doorstep.store import InboxQuery
    from responders.followup import complaints_after_events

    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8").split())
    store = Store(as_make_demo_builds)
    try:
        n = {t: store.count(t) for t in ("customers", "orders", "shipments", "tracking_events", "mentions", "cases")}
        at_reference = InboxQuery(now=REFERENCE_NOW)
        open_cases = store.inbox_count(at_reference)
        overdue = store.inbox_count(replace(at_reference, sla_state="breached"))
        due_soon = store.inbox_count(replace(at_reference, sla_state="due_soon"))
        waiting = store.inbox_count(replace(at_reference, statuses=("pending_customer",)))
        measured = complaints_after_events(store, load_config(DEFAULT_CONFIG))
        feed = as_make_demo_builds.with_suffix(".x-feed.jsonl").read_text(encoding="utf-8").splitlines()
        held_back = sum(1 for line in feed if store.mention_by_external_id("x", json.loads(line)["id"]) is None)
    finally:
        store.close()
    quoted = [
        f"{n['customers']:,} customers, {n['orders']:,} orders, {n['shipments']:,} shipments with "
        f"{n['tracking_events']:,} tracking events",
        f"{n['mentions'] + held_back:,} posts over three weeks",
        f"({n['mentions']:,} stored, {n['cases']:,} cases; the newest {held_back} X posts wait",
        f"at the reference moment {open_cases} cases are open, {overdue} of them overdue",
        f"and {due_soon} due within the hour, and {waiting} wait on the customer",
        f"{measured['shipments_with_event']} shipments had such an event, and {measured['complained_after_event']} "
        f"of them ({measured['complained_after_event'] / measured['shipments_with_event']:.0%}) drew a complaint",
        f"{measured['share_of_complaint_orders_preceded_by_event']:.0%} of the orders with complaints had the event first",
        f"The median time from event to complaint was {measured['median_hours_event_to_complaint']} hours",
    ]
    missing = [q for q in quoted if q not in readme]
    assert not missing, "the README does not say what `make demo` builds: " + " | ".join(missing)


def test_what_make_demo_writes_is_ignored_by_git() -> None:
    """Before: after `make demo` a fresh clone's `git status` listed doorstep-demo.db.sent/ (the demo's
    sent mail and webhooks) as untracked, inviting a newcomer to commit it."""
    import shutil

    repo = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    written = ["doorstep-demo.db", "doorstep-demo.db-wal", "doorstep-demo.db-locks", "doorstep-demo.x-feed.jsonl",
               "doorstep-demo.mastodon-feed.jsonl", "doorstep-demo.bluesky-feed.jsonl",
               "doorstep-demo.db.sent/0001-mail.eml", "doorstep-test.sent/0001-mail.eml"]  # SQLite, then PostgreSQL
    for path in written:
        result = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=repo)
        assert result.returncode == 0, f"{path} is not ignored by .gitignore"


def test_demo_replies_on_mastodon_and_bluesky_reach_local_stand_ins_from_the_brand_account(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Before: `make demo` ran no Mastodon or Bluesky stand-in; a Mastodon reply went to mastodon.social
    (a name-resolution error) and Bluesky was not logged in at all, so both replies failed."""
    from urllib.parse import urlsplit

    from commands.demo import demo_environment, standin_commands, standin_feed_path
    from doorstep.config import find_account
    from responders.outbox import Outbox, get_message, queue_reply
    from standins.bluesky import BlueskyStandIn
    from standins.mastodon import MastodonStandIn, read_posts

    db, feed, ports = _small_demo_with_standins(tmp_path, "social")
    # The shell that starts the demo may hold real credentials: they must not be used.
    monkeypatch.setenv("MASTODON_ACCESS_TOKEN", "a-real-token")
    monkeypatch.setenv("BLUESKY_HANDLE", "someone.bsky.social")
    env = demo_environment(str(db), DEFAULT_CONFIG, ports, tmp_path / "sent", with_x=True)
    added = {k: v for k, v in env.items() if os.environ.get(k) != v}
    urls = {k: v for k, v in added.items() if v.startswith(("http://", "https://")) or k.endswith(("_URL", "_HOST"))}
    assert {"MASTODON_BASE_URL", "BLUESKY_BASE_URL", "X_API_BASE_URL"} <= set(urls)
    for key, value in urls.items():  # every outbound address of the demo stays on this machine
        assert (urlsplit(value).hostname if "//" in value else value) == "127.0.0.1", (key, value)
    assert "MASTODON_ACCESS_TOKEN" not in env and "BLUESKY_HANDLE" not in env
    for key in [k for k in os.environ if k.startswith(("MASTODON_", "BLUESKY_"))]:
        monkeypatch.delenv(key)
    for key, value in added.items():
        monkeypatch.setenv(key, value)

    # The stand-ins exactly as the demo starts them: their ports, the demo's posts, the brand accounts.
    commands = standin_commands(DEFAULT_CONFIG, ports, feed)

    def argument(command: list[str], name: str) -> list[str]:
        return [command[i + 1] for i, a in enumerate(command) if a == name]

    def accounts(command: list[str]) -> dict[str, str]:
        return dict(a.split("=", 1) for a in argument(command, "--account"))

    mastodon_cmd, bluesky_cmd = commands["Mastodon stand-in"], commands["Bluesky stand-in"]
    assert argument(mastodon_cmd, "--port") == [str(ports.mastodon)]
    assert argument(bluesky_cmd, "--port") == [str(ports.bluesky)]
    mastodon = MastodonStandIn(accounts(mastodon_cmd), read_posts(Path(argument(mastodon_cmd, "--feed")[0])),
                               port=ports.mastodon)
    bluesky = BlueskyStandIn(accounts(bluesky_cmd), read_posts(Path(argument(bluesky_cmd, "--feed")[0])),
                             port=ports.bluesky)
    assert mastodon.known and bluesky.posts
    assert Path(argument(mastodon_cmd, "--feed")[0]) == standin_feed_path(feed.resolve(), "mastodon")

    config = load_config(DEFAULT_CONFIG)
    store = Store(db)
    try:
        picked = {}
        for channel in ("mastodon", "bluesky"):
            for brand in ("Larkspur Home", "Fettle Outdoor"):
                row = store.db.execute("select id from cases where channel = ? and brand = ? order by id desc limit 1",
                                       [channel, brand]).fetchone()
                if row:
                    picked[(channel, brand)] = row[0]
        assert {c for c, _ in picked} == {"mastodon", "bluesky"}, picked
        queued = {key: queue_reply(store, config, case_id, "Sorry about this, we're on it.", "sam", force=True)
                  for key, case_id in picked.items()}
        with mastodon.server, bluesky.server:
            Outbox(store, config).send_due()
        for (channel, brand), message in queued.items():
            sent = get_message(store, message.id)
            assert sent.status == "sent", (channel, brand, sent.last_error)
            handle = find_account(config, channel, next(b for b in config.brands if b.name == brand).handles[channel]).handle
            if channel == "mastodon":
                status = next(s for s in mastodon.statuses if s["id"] == sent.external_id)
                assert status["account"]["acct"] == handle
                assert status["in_reply_to_id"] == message.in_reply_to and status["in_reply_to_id"] in mastodon.known
            else:
                made = [r for r in bluesky.created if r["_account"] == handle
                        and r["record"]["reply"]["parent"]["uri"] == message.in_reply_to]
                assert len(made) == 1, (handle, bluesky.created)
                assert message.in_reply_to in bluesky.posts and made[0]["repo"] == sent.external_id.split("/")[2]
    finally:
        store.close()


def test_demo_text_messages_go_to_the_local_sink_not_twilio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Before: the demo left Twilio unset, so an approved SMS went wherever the shell's TWILIO_* said
    (api.twilio.com by default). Now the twilio client talks to the demo's HTTP sink."""
    from urllib.parse import urlsplit

    from commands.demo import DemoPorts, demo_environment
    from responders.channels import twilio_client
    from standins.sinks import read_sent, serve

    ports = DemoPorts(console=_free_port(), x=_free_port(), smtp=_free_port(), sinks=_free_port(), mastodon=_free_port(), bluesky=_free_port())
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "ACreal")  # a real account in the shell is not used
    folder = tmp_path / "sent"
    env = demo_environment(str(tmp_path / "d.db"), DEFAULT_CONFIG, ports, folder, with_x=False)
    assert urlsplit(env["TWILIO_BASE_URL"]).hostname == "127.0.0.1" and env["TWILIO_ACCOUNT_SID"] != "ACreal"
    for key in ("TWILIO_BASE_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"):
        monkeypatch.setenv(key, env[key])
    controller, http = serve(folder, ports.smtp, ports.sinks)
    try:
        client = twilio_client(load_config(DEFAULT_CONFIG))
        sms = client.messages.create(to="+447700900123", from_=env["TWILIO_FROM"], body="Shall we rebook it? YES/NO")
        listed = client.messages.list(to="+447700900123", limit=50)
    finally:
        http.shutdown()
        controller.stop()
    assert sms.sid and [m.sid for m in listed] == [sms.sid] and listed[0].body == "Shall we rebook it? YES/NO"
    sent = read_sent(folder)
    assert [(s["kind"], s["to"], s["text"]) for s in sent] == [("sms", "+447700900123", "Shall we rebook it? YES/NO")]


def test_demo_private_replies_on_mastodon_and_bluesky_reach_the_stand_ins(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch):
    """"Ask privately" on a demo Mastodon or Bluesky case: a direct status, a Bluesky chat message, both
    to the local stand-ins from the brand's account (the Bluesky stand-in knew no chat before)."""

    from commands.demo import demo_environment, standin_accounts, standin_feed_path
    from responders.outbox import Outbox, get_message, queue_reply
    from standins.bluesky import BlueskyStandIn
    from standins.mastodon import MastodonStandIn, read_posts

    db, feed, ports = _small_demo_with_standins(tmp_path, "dm")
    env = demo_environment(str(db), DEFAULT_CONFIG, ports, tmp_path / "sent", with_x=True)
    for key in [k for k in os.environ if k.startswith(("MASTODON_", "BLUESKY_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.endswith(("_BASE_URL", "_ACCESS_TOKEN", "_APP_PASSWORD", "_HANDLE")):
            monkeypatch.setenv(key, value)
    accounts = standin_accounts(DEFAULT_CONFIG)
    mastodon = MastodonStandIn(accounts["mastodon"], read_posts(standin_feed_path(feed, "mastodon")), port=ports.mastodon)
    bluesky = BlueskyStandIn(accounts["bluesky"], read_posts(standin_feed_path(feed, "bluesky")), port=ports.bluesky)
    config = load_config(DEFAULT_CONFIG)
    store = Store(db)
    try:
        queued = {}
        for channel in ("mastodon", "bluesky"):
            case_id = store.db.execute("select id from cases where channel = ? and brand is not null order by id desc "
                                       "limit 1", [channel]).fetchone()[0]
            queued[channel] = queue_reply(store, config, case_id, "Could you send us your order number here?", "sam",
                                          channel=f"{channel}_dm", force=True)
        with mastodon.server, bluesky.server:
            Outbox(store, config).send_due()
        for channel, message in queued.items():
            sent = get_message(store, message.id)
            assert sent.status == "sent", (channel, sent.last_error)
        [status] = [s for s in mastodon.statuses if s["visibility"] == "direct"]
        assert status["account"]["acct"].lower() == queued["mastodon"].account.lower()
        [convo] = bluesky.convos.values()
        assert [m["text"] for m in convo["messages"]] == ["Could you send us your order number here?"]
        assert bluesky._did_of(queued["bluesky"].account) in convo["members"]
    finally:
        store.close()
