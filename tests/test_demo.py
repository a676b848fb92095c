"""The demo shop: deterministic, consistent tracking, posts that match the tracking, links that hold up."""

from __future__ import annotations

import json

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from doorstep.config import load_config
from doorstep.demo import DEFAULT_CONFIG, _Generator, _stop_children, build_demo, digest, resolve_config_path
from doorstep.demo import _mentions as _generate_mentions
from doorstep.models import Mention
from doorstep.store import Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
SIZE = {"customers": 60, "orders": 200, "mentions": 150}


def _classifier():
    from classifiers import load_classifier

    return load_classifier("baseline")


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
        "from doorstep.demo import build_demo\n"
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


def test_mentions_span_the_last_ten_days_up_to_the_last_hours(demo: Store):
    times = [m.created_at for m in _mentions(demo)]
    assert max(times) <= NOW and max(times) > NOW - timedelta(hours=6)
    assert min(times) >= NOW - timedelta(days=11)
    assert min(times) < NOW - timedelta(days=5)
    assert {m.channel for m in _mentions(demo)} >= {"x", "webhook"}


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
    from doorstep.cli import cli

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
        # The newest stand-alone X posts wait in the emulator's feed; together nothing is lost.
        assert feed and store.count("mentions") + len(feed) == 15
        for post in feed:
            assert store.mention_by_external_id("x", post["id"]) is None
            assert post["username"] and post["text"]
        stored_replies_to_feed = store.db.execute(
            f"select count(*) from mentions where in_reply_to in ({','.join('?' * len(feed))})", [p["id"] for p in feed]
        ).fetchone()[0]
        assert stored_replies_to_feed == 0  # no stored post answers a post that is not there yet
    finally:
        store.close()


def test_stopping_the_demo_ends_its_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    _stop_children([child], grace_s=5)
    assert child.returncode is not None  # terminated (not left running behind the demo)
