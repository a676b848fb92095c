"""The orders audit (findings 1-5 and 8-11): tracking numbers, shipments, couriers and links as
the shop's files and the team's relinks leave them, on both stores, through the import functions
the ``doorstep import`` commands call (and the CLI itself where it runs the whole path)."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from commands.cli import cli
from doorstep.config import Config
from doorstep.linking import link_mention, override_link
from doorstep.metrics import courier_league
from doorstep.models import Case, Customer, Order, Shipment, TrackingEvent
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.files import import_orders, import_tracking

from conftest import T0, KeywordClassifier, mention

UPS = "1Z999AA10123456784"
UPS_SPACED = "1Z 999 AA1 01 2345 6784"
RM = "AB123456785GB"
PLACED = (T0 - timedelta(days=3)).isoformat()
ORDER_HEADER = ["number", "customer_id", "placed_at", "brand", "customer_name", "customer_x", "tracking_number",
                "courier"]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def tracking_file(path: Path, rows: list[tuple[str, datetime, str]]) -> Path:
    return write_csv(path, ["tracking_number", "time", "status", "location", "description"],
                     [[number, when.isoformat(), status, "Leeds", "scan"] for number, when, status in rows])


# ------------------------------------------------------------------ 1: tracking numbers as typed
def test_spaced_and_lower_case_tracking_numbers_are_stored_as_the_courier_and_the_post_write_them(
        tmp_path: Path, store: Store, config: Config):
    orders = write_csv(tmp_path / "o.csv", ORDER_HEADER, [
        ["ORD-2026-002001", "c2", PLACED, "Fettle", "Bob Roe", "bobroe", UPS_SPACED, "UPS"],
        ["ORD-2026-002002", "c3", PLACED, "Fettle", "Cat Lee", "catlee", RM.lower(), "Royal Mail"],
    ])
    events = tracking_file(tmp_path / "t.csv", [(UPS, T0 - timedelta(hours=3), "attempt_failed"),
                                                ("ab 123 456 785 gb", T0 - timedelta(hours=3), "exception")])
    assert import_orders(orders, store).ok
    assert import_tracking(events, store).ok
    assert store.db.execute("select tracking_number from shipments order by tracking_number").fetchall() == \
        [(UPS,), (RM,)]
    ups, rm = store.get_shipment(UPS), store.get_shipment(RM)
    assert (ups.order_number, ups.status, [e.status for e in ups.events]) == \
        ("ORD-2026-002001", "attempt_failed", ["attempt_failed"])
    assert (rm.order_number, rm.status) == ("ORD-2026-002002", "exception")
    # The owner quoting their own number is a confirmed link, not a guess.
    link = link_mention(mention("1", f"where is my parcel {UPS_SPACED} ?? nobody came", author_handle="bobroe"),
                        store, config)
    assert (link.method, link.order_number, link.tracking_number, link.confirmed) == \
        ("tracking_number", "ORD-2026-002001", UPS, True)


def test_one_parcel_typed_two_ways_in_two_files_is_one_shipment(tmp_path: Path, store: Store):
    first = write_csv(tmp_path / "a.csv", ORDER_HEADER, [
        ["ORD-2026-002001", "c2", PLACED, "Fettle", "Bob Roe", "bobroe", UPS_SPACED, "UPS"]])
    second = tmp_path / "b.jsonl"
    second.write_text(json.dumps({"number": "ORD-2026-002001", "customer_id": "c2", "placed_at": PLACED,
                                  "shipments": [{"tracking_number": UPS.lower(), "courier": "UPS"}]}) + "\n")
    assert import_orders(first, store).ok
    report = import_orders(second, store)
    assert report.ok and (report.stored, report.updated, report.unchanged) == (0, 0, 1)
    assert store.db.execute("select tracking_number, order_number from shipments").fetchall() == \
        [(UPS, "ORD-2026-002001")]


def test_the_core_normalises_a_tracking_number_as_posts_are_read():
    from doorstep.numbers import normalise_tracking_number

    assert normalise_tracking_number(" 1z 999-aa1 01 2345 6784 ") == UPS


# ------------------------------------------------------------------ 2: events before their order
def _order_then_proactive(store: Store, config: Config, tmp_path: Path, tracking_first: bool) -> list[int]:
    from responders.followup import run_proactive

    now = T0
    events = tracking_file(tmp_path / "t.csv", [(UPS, now - timedelta(days=1), "in_transit"),
                                                (UPS, now - timedelta(hours=3), "attempt_failed")])
    orders = write_csv(tmp_path / "o.csv", [*ORDER_HEADER, "customer_email"], [
        ["ORD-2026-004001", "c2", PLACED, "Fettle", "Bob Roe", "bobroe", UPS, "UPS", "bob@example.com"]])
    for load in ((lambda: import_tracking(events, store), lambda: import_orders(orders, store)) if tracking_first
                 else (lambda: import_orders(orders, store), lambda: import_tracking(events, store))):
        assert load().ok
    return run_proactive(store, config, now=now)


@pytest.mark.parametrize("tracking_first", [True, False], ids=["tracking-first", "orders-first"])
def test_events_imported_before_their_order_give_the_shipment_its_status(
        tmp_path: Path, store: Store, config: Config, tracking_first: bool):
    opened = _order_then_proactive(store, config, tmp_path, tracking_first)
    row = store.db.execute("select status, last_event_at from shipments where tracking_number = ?", [UPS]).fetchone()
    assert row[0] == "attempt_failed" and row[1] is not None
    assert store.get_shipment(UPS).status == "attempt_failed"
    assert len(opened) == 1
    case = store.get_case(opened[0])
    assert (case.order_number, case.tracking_number) == ("ORD-2026-004001", UPS)


def test_a_shipment_status_given_in_the_file_is_kept_when_no_events_are_stored(tmp_path: Path, store: Store):
    path = tmp_path / "o.jsonl"
    path.write_text(json.dumps({"number": "9", "customer_id": "c9", "placed_at": PLACED, "customer": {"name": "Ann"},
                                "shipments": [{"tracking_number": UPS, "courier": "UPS", "status": "in_transit"}]}) + "\n")
    assert import_orders(path, store).ok
    assert store.get_shipment(UPS).status == "in_transit"


# ------------------------------------------------------------------ 3: one parcel on two orders
def test_one_tracking_number_on_two_orders_in_one_file_rejects_the_second_row(tmp_path: Path, store: Store):
    path = write_csv(tmp_path / "f3.csv", ORDER_HEADER, [
        ["ORD-2026-005001", "c1", PLACED, "Fettle", "Ann Lee", "annlee", UPS, "UPS"],
        ["ORD-2026-005002", "c2", PLACED, "Fettle", "Bob Roe", "bobroe", UPS_SPACED, "UPS"],
    ])
    report = import_orders(path, store)
    assert [str(e) for e in report.errors] == [
        f"{path}: row 3: tracking_number: {UPS} is already the parcel of order ORD-2026-005001 (row 2); a parcel "
        "belongs to one order: check the number"]
    assert report.committed and (report.stored, report.valid) == (1, 1)
    assert store.db.execute("select tracking_number, order_number from shipments").fetchall() == \
        [(UPS, "ORD-2026-005001")]
    assert store.get_order("ORD-2026-005002") is None


def test_a_stored_parcel_is_not_moved_to_another_order(tmp_path: Path, store: Store):
    first = write_csv(tmp_path / "a.csv", ORDER_HEADER, [
        ["ORD-2026-005001", "c1", PLACED, "Fettle", "Ann Lee", "annlee", UPS, "UPS"]])
    second = write_csv(tmp_path / "b.csv", ORDER_HEADER, [
        ["ORD-2026-005002", "c2", PLACED, "Fettle", "Bob Roe", "bobroe", UPS, "UPS"],
        ["ORD-2026-005003", "c3", PLACED, "Fettle", "Cat Lee", "catlee", RM, "Royal Mail"],
        ["ORD-2026-005001", "c1", PLACED, "Fettle", "Ann Lee", "annlee", UPS_SPACED, "UPS"],
    ])
    assert import_orders(first, store).ok
    report = import_orders(second, store)
    assert [str(e) for e in report.errors] == [
        f"{second}: row 2: tracking_number: {UPS} is already the parcel of order ORD-2026-005001; a parcel "
        "belongs to one order: check the number"]
    # The valid rows are written: a new order, and the same order repeating its own parcel.
    assert report.committed and (report.stored, report.unchanged) == (1, 1)
    assert store.get_shipment(UPS).order_number == "ORD-2026-005001"
    assert store.get_shipment(RM).order_number == "ORD-2026-005003"


# ------------------------------------------------------------------ 4: stray spaces
def test_order_numbers_and_customer_ids_are_stripped_and_a_padded_repeat_is_a_duplicate(
        tmp_path: Path, store: Store, config: Config):
    path = write_csv(tmp_path / "f4.csv", ["number", "customer_id", "placed_at", "customer_name", "customer_x"], [
        ["ORD-2026-006005 ", "c5", PLACED, "Eve", "eve5"],
        [" ORD-2026-006005", "c5", PLACED, "Eve", "eve5"],
        ["ORD-2026-006006", "c6 ", PLACED, " Fay ", "fay6"],
    ])
    report = import_orders(path, store)
    assert [str(e) for e in report.errors] == [
        f"{path}: row 3: number: duplicate of row 2 (ORD-2026-006005); keep one row for it"]
    assert store.db.execute("select number, customer_id from orders order by number").fetchall() == \
        [("ORD-2026-006005", "c5"), ("ORD-2026-006006", "c6")]
    assert store.db.execute("select id, name from customers order by id").fetchall() == [("c5", "Eve"), ("c6", "Fay")]
    link = link_mention(mention("1", "ORD-2026-006005 is late", author_handle="eve5"), store, config)
    assert (link.order_number, link.confirmed) == ("ORD-2026-006005", True)


# ------------------------------------------------------------------ 5: courier names
def test_courier_cells_are_matched_to_the_configured_couriers(tmp_path: Path, store: Store, config: Config):
    path = write_csv(tmp_path / "f5.csv", ORDER_HEADER, [
        ["ORD-2026-009001", "c1", PLACED, "Fettle", "Ann Lee", "annlee", UPS, "UPS"],
        ["ORD-2026-009002", "c2", PLACED, "Fettle", "Bob Roe", "bobroe", "1Z12345E0205271688", "ups"],
        ["ORD-2026-009003", "c3", PLACED, "Fettle", "Cat Lee", "catlee", "1Z12345E6605272234", "UPS "],
        ["ORD-2026-009004", "c4", PLACED, "Fettle", "Dee Day", "deeday", RM, " royal  mail"],
        ["ORD-2026-009005", "c5", PLACED, "Fettle", "Eve Eng", "eveeng", "1Z12345E1505270452", "Parcelforce"],
    ])
    report = import_orders(path, store, couriers=config.couriers)
    assert [str(e) for e in report.errors] == [
        f"{path}: row 6: courier: 'Parcelforce' is not a configured courier (known: UPS, Royal Mail); "
        "use one of those names or add it to [[couriers]] in doorstep.toml"]
    assert store.db.execute("select courier, count(*) from shipments group by courier order by courier").fetchall() \
        == [("Royal Mail", 1), ("UPS", 3)]


def test_the_orders_command_checks_courier_names_against_the_config(tmp_path: Path):
    db = tmp_path / "shop.db"
    path = write_csv(tmp_path / "o.csv", ORDER_HEADER, [
        ["ORD-2026-009002", "c2", PLACED, "Fettle Outdoor", "Bob Roe", "bobroe", UPS, "ups"],
        ["ORD-2026-009003", "c3", PLACED, "Fettle Outdoor", "Cat Lee", "catlee", "1Z12345E6605272234", "Hermes"],
    ])
    result = CliRunner().invoke(cli, ["--db", str(db), "--config", "demo/doorstep.toml", "import", "orders",
                                      str(path), "--max-rejected", "1"])
    assert "row 3: courier: 'Hermes' is not a configured courier" in result.output, result.output
    store = Store(str(db))
    try:
        assert store.db.execute("select courier from shipments").fetchall() == [("UPS",)]
    finally:
        store.close()


def test_a_courier_is_found_whatever_the_case_and_spaces_of_its_name(config: Config):
    assert config.courier("ups ").name == "UPS"
    assert config.courier(" royal MAIL").name == "Royal Mail"
    assert config.courier("Parcelforce") is None and config.courier(None) is None


def test_the_courier_league_counts_one_courier_once_whatever_its_stored_spelling(store: Store):
    # Rows stored before the import matched courier names: the same courier spelt three ways.
    for i, (tracking, spelling) in enumerate(
            [(UPS, "UPS"), ("1Z12345E0205271688", "ups"), ("1Z12345E6605272234", "UPS ")]):
        store.upsert_customer(Customer(id=f"c{i}", name=f"Customer {i}"))
        store.upsert_order(Order(number=f"ORD-{i}", customer_id=f"c{i}", placed_at=T0 - timedelta(days=2),
                                 shipments=[Shipment(tracking_number=tracking, order_number=f"ORD-{i}",
                                                     courier=spelling, events=[TrackingEvent(
                                                         tracking_number=tracking, time=T0 - timedelta(hours=5),
                                                         status="attempt_failed")])]))
    league = courier_league(store, T0 - timedelta(days=1), T0 + timedelta(days=1), timezone.utc)
    assert [(r["courier"], r["active_shipments"], r["failed_attempts"]) for r in league] == [("UPS", 3, 3)]


# ------------------------------------------------------------------ 8: relink to an order not shipped yet
def test_relinking_to_an_order_without_a_parcel_drops_the_old_courier(tmp_path: Path, store: Store, config: Config):
    path = write_csv(tmp_path / "f8.csv", [*ORDER_HEADER, "customer_email"], [
        ["105282", "c1", PLACED, "Larkspur", "Amelia Fraser", "amelia96", UPS, "UPS", "amelia@example.com"],
        ["ORD-2026-009999", "c1", PLACED, "Larkspur", "Amelia Fraser", "", "", "", ""],
    ])
    assert import_orders(path, store).ok
    Pipeline(store, config, KeywordClassifier()).ingest(
        [mention("1", f"@LarkspurHelp UPS lost my parcel {UPS}", author_handle="amelia96", matched=["UPS"])])
    case = store.inbox()[0]
    assert (case.order_number, case.courier, case.link_confirmed) == ("105282", "UPS", True)
    updated = override_link(store, case.id, case.version, "agent", order_number="ORD-2026-009999")
    assert (updated.order_number, updated.tracking_number, updated.courier) == ("ORD-2026-009999", None, None)
    assert store.get_case(case.id).courier is None
    back = override_link(store, case.id, updated.version, "agent", order_number="105282")
    assert (back.tracking_number, back.courier) == (UPS, "UPS")


# ------------------------------------------------------------------ 9: order numbers in lower case
def test_an_order_number_typed_in_lower_case_links_with_a_case_insensitive_pattern(
        tmp_path: Path, store: Store, config: Config):
    config = config.model_copy(update={"order_patterns": [r"#(\d{4,8})\b", r"(?i)\b(ORD-\d{4}-\d{6})\b"]})
    path = write_csv(tmp_path / "f9.csv", ["number", "customer_id", "placed_at", "brand", "customer_name", "customer_x"], [
        ["ORD-2026-008001", "c1", PLACED, "Fettle", "Ann Lee", "annlee"],
        ["ORD-2026-008002", "c1", (T0 - timedelta(days=1)).isoformat(), "Fettle", "Ann Lee", "annlee"],
    ])
    assert import_orders(path, store).ok
    post = mention("1", "@FettleCare order ord-2026-008001 still not here", author_handle="annlee")
    link = link_mention(post, store, config)
    assert (link.method, link.order_number, link.confirmed) == ("order_number", "ORD-2026-008001", True)
    # The import's batch path (doorstep/lookups.py) finds it too.
    Pipeline(store, config, KeywordClassifier()).ingest([post])
    case = store.inbox()[0]
    assert (case.order_number, case.link_method, case.link_confirmed) == ("ORD-2026-008001", "order_number", True)



def test_an_order_stored_with_its_hash_is_the_order_a_post_quoting_it_names(tmp_path: Path, store: Store, config: Config):
    """Upgrade audit, finding 4: shop exports (Shopify's "Name") write order numbers "#990001"; the order pattern
    ``#(\\d{4,8})`` takes "990001" from the post. Linking missed the number, and the case page warned "customer
    quoted 990001: no such order" beside order #990001 itself."""
    from console.case_view import quoted_numbers

    path = write_csv(tmp_path / "hash.csv", ["number", "customer_id", "placed_at", "brand", "customer_name", "customer_x"], [
        ["#990001", "c1", PLACED, "Fettle", "Ann Lee", "annlee"],
        ["#990002", "c1", (T0 - timedelta(days=1)).isoformat(), "Fettle", "Ann Lee", "annlee"],
    ])
    assert import_orders(path, store).ok
    post = mention("1", "@FettleCare order #990001 still not here", author_handle="annlee")
    link = link_mention(post, store, config)
    assert (link.method, link.order_number, link.confirmed) == ("order_number", "#990001", True)
    Pipeline(store, config, KeywordClassifier()).ingest([post])
    case = store.inbox()[0]
    assert (case.order_number, case.link_method) == ("#990001", "order_number")
    assert quoted_numbers(store, config, [post]) == []

# ------------------------------------------------------------------ 10: semicolon-separated CSV
def test_a_semicolon_separated_csv_imports(tmp_path: Path, store: Store):
    path = tmp_path / "f10.csv"
    path.write_bytes(b"number;customer_id;placed_at;customer_name;items\r\n"
                     b"ORD-2026-006001;c1;2026-11-19T11:00:00Z;Ann;\"[\"\"lamp; large\"\"]\"\r\n"
                     b"ORD-2026-006002;c2;2026-11-19T12:00:00Z;Bo;[]\r\n")
    report = import_orders(path, store)
    assert report.ok and report.stored == 2, [str(e) for e in report.errors]
    assert store.get_order("ORD-2026-006001").items == [{"name": "lamp; large"}]


def test_a_semicolon_separated_row_with_too_many_values_names_the_separator(tmp_path: Path, store: Store):
    path = tmp_path / "f10.csv"
    path.write_text("number;customer_id;placed_at;customer_name\nORD-1;c1;2026-11-19T11:00:00Z;Ann;extra\n")
    report = import_orders(path, store)
    assert [str(e) for e in report.errors] == [
        f"{path}: row 2: (row): 5 values for 4 header columns; quote values that contain ';'"]


# ------------------------------------------------------------------ 11: the demo's orders
def test_the_demo_places_no_order_after_now_and_scans_no_parcel_before_its_order():
    from commands.demo import DEFAULT_CONFIG, _Generator
    from doorstep.config import load_config

    now = datetime(2026, 12, 6, 19, 22, tzinfo=timezone.utc)  # the audit's evening: late drafts land tonight
    generator = _Generator(load_config(str(DEFAULT_CONFIG)), 7, now)
    generator.make_people(500)
    orders = generator.make_orders(2000)
    assert [o.number for o in orders if o.placed_at > now] == []
    early = [(o.number, s.tracking_number) for o in orders for s in o.shipments
             if s.events and s.events[0].time < o.placed_at]
    assert early == []
