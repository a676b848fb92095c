"""Re-imports never erase and always say what they did (issue 14 item 1).

An orders file that names a customer only to say whose order it is must leave their
e-mail, phone and handles alone; a repeated order number in one file is a rejected row;
re-imports report new / updated / unchanged truthfully.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from click.testing import CliRunner

from commands.cli import cli
from doorstep.models import Customer, Order, Shipment
from doorstep.store import Store
from listeners.files import import_orders

from conftest import T0

FULL = ["number", "customer_id", "placed_at", "brand", "total", "currency", "status", "items", "customer_name",
        "customer_email", "customer_phone", "customer_x", "customer_mastodon", "tracking_number", "courier", "service"]
PARTIAL = ["number", "customer_id", "placed_at", "brand", "total", "currency", "status", "items", "customer_name"]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def full_file(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "full.csv", FULL, [
        ["1001", "c1", "2026-11-10T10:00:00Z", "Larkspur", "59.5", "GBP", "placed", '["lamp"]', "Ann Lee",
         "ann@example.com", "+447700900123", "ann_lee", "ann@mastodon.social", "1Z999AA10123456784", "UPS", "Express"],
        ["1002", "c2", "2026-11-11T10:00:00Z", "Fettle", "20", "GBP", "placed", "[]", "Bo Chen",
         "bo@example.com", "", "bochen", "", "", "", ""],
    ])


def test_a_partial_orders_file_keeps_the_customers_contact_data_and_handles(tmp_path, store):
    import_orders(full_file(tmp_path), store)
    partial = write_csv(tmp_path / "partial.csv", PARTIAL, [
        ["1001", "c1", "2026-11-10T10:00:00Z", "Larkspur", "59.5", "GBP", "shipped", '["lamp"]', "Ann Lee"],
    ])
    report = import_orders(partial, store)
    assert report.ok and (report.stored, report.updated, report.unchanged) == (0, 1, 0)
    ann = store.get_customer("c1")
    assert (ann.email, ann.phone) == ("ann@example.com", "+447700900123")
    assert ann.handles == {"x": "ann_lee", "mastodon": "ann@mastodon.social"}
    assert store.customer_id_by_handle("x", "ann_lee") == "c1"
    order = store.get_order("1001")
    assert order.status == "shipped" and order.shipments[0].service == "Express"


def test_empty_cells_and_missing_columns_erase_nothing(tmp_path, store):
    import_orders(full_file(tmp_path), store)
    blanks = write_csv(tmp_path / "blanks.csv", FULL, [
        ["1001", "c1", "2026-11-10T10:00:00Z", "", "", "", "", "", "", "", "", "", "", "1Z999AA10123456784", "UPS", ""],
    ])
    report = import_orders(blanks, store)
    assert report.ok and report.unchanged == 1
    order = store.get_order("1001")
    assert (order.brand, order.total, order.items) == ("Larkspur", 59.5, [{"name": "lamp"}])
    assert order.shipments[0].service == "Express"
    assert store.get_customer("c1").email == "ann@example.com"


def test_store_upsert_customers_updates_only_what_the_record_sets(store):
    store.upsert_customers([Customer(id="c1", name="Ann Lee", email="ann@example.com", phone="+44",
                                     handles={"x": "ann_lee", "bluesky": "ann.bsky.social"})])
    store.upsert_customers([Customer(id="c1", name="Ann Lee-Smith", handles={"x": "annls"})])
    ann = store.get_customer("c1")
    assert (ann.name, ann.email, ann.phone) == ("Ann Lee-Smith", "ann@example.com", "+44")
    assert ann.handles["bluesky"] == "ann.bsky.social"
    assert store.customer_id_by_handle("x", "annls") == "c1"
    assert store.customer_id_by_handle("x", "ann_lee") == "c1"  # the old handle still links


def test_store_upsert_orders_and_shipments_keep_what_they_do_not_set(store):
    store.upsert_orders([Order(number="9", customer_id="c1", placed_at=T0, brand="Larkspur", total=12.0, items=["mug"],
                               shipments=[Shipment(tracking_number="T1", order_number="9", courier="DPD", service="Next day")])])
    store.upsert_orders([Order(number="9", customer_id="c1", placed_at=T0, status="delivered",
                               shipments=[Shipment(tracking_number="T1", order_number="9", courier="DPD")])])
    order = store.get_order("9")
    assert (order.brand, order.total, order.items, order.status) == ("Larkspur", 12.0, [{"name": "mug"}], "delivered")
    assert order.shipments[0].service == "Next day"


def test_reimports_report_new_updated_and_unchanged(tmp_path):
    db = tmp_path / "r.db"
    path = full_file(tmp_path)
    runner = CliRunner()
    first = runner.invoke(cli, ["--db", str(db), "import", "orders", str(path)])
    assert first.exit_code == 0 and "2 new, 0 updated, 0 unchanged, 0 rejected" in first.output
    again = runner.invoke(cli, ["--db", str(db), "import", "orders", str(path)])
    assert again.exit_code == 0 and "0 new, 0 updated, 2 unchanged, 0 rejected" in again.output
    text = path.read_text().replace("bo@example.com", "bo.chen@example.com")
    path.write_text(text)
    changed = runner.invoke(cli, ["--db", str(db), "import", "orders", str(path)])
    assert "0 new, 1 updated, 1 unchanged" in changed.output
    assert Store(db).get_customer("c2").email == "bo.chen@example.com"


def test_a_repeated_order_number_in_one_file_is_a_rejected_row(tmp_path, store):
    """Rows of one order fold into it (one row per item, exports audit) only where they agree: here they give two
    customers, which is the shop's call, so neither row is written and each names the other."""
    path = write_csv(tmp_path / "dup.csv", PARTIAL, [
        ["1001", "c1", "2026-11-10T10:00:00Z", "Larkspur", "59.5", "GBP", "placed", "[]", "Ann Lee"],
        ["1002", "c1", "2026-11-10T11:00:00Z", "Larkspur", "5", "GBP", "placed", "[]", "Ann Lee"],
        ["1001", "c9", "2026-11-12T10:00:00Z", "Fettle", "1", "GBP", "placed", "[]", "Someone Else"],
    ])
    report = import_orders(path, store, max_rejected_share=1.0)
    assert [(e.row, e.field) for e in report.errors] == [(2, "number"), (4, "customer_id")]
    assert "its row 4 is rejected" in str(report.errors[0])
    assert "'c9' differs from 'c1' in row 2, the same order 1001" in str(report.errors[1])
    assert store.get_order("1001") is None and store.get_customer("c9") is None
    assert report.stored == 1


def test_a_nested_customer_id_that_differs_from_customer_id_is_rejected(tmp_path, store):
    path = tmp_path / "o.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        {"number": "1", "customer_id": "c1", "placed_at": "2026-11-10T10:00:00Z", "customer": {"id": "c2", "name": "Bo"}},
        {"number": "2", "customer_id": "c1", "placed_at": "2026-11-10T10:00:00Z", "customer": {"id": "c1", "name": "Ann"}},
        {"number": "3", "customer_id": "c1", "placed_at": "2026-11-10T10:00:00Z", "customer": {"name": "Ann"}},
    ]))
    report = import_orders(path, store)
    assert [(e.row, e.field) for e in report.errors] == [(1, "customer.id")]
    assert "differs from customer_id" in str(report.errors[0])
    assert store.get_customer("c2") is None and store.get_order("3").customer_id == "c1"


def test_a_new_customer_needs_a_name_but_a_known_one_does_not(tmp_path, store):
    import_orders(full_file(tmp_path), store)
    path = write_csv(tmp_path / "o.csv", ["number", "customer_id", "placed_at", "customer_phone"], [
        ["2001", "c1", "2026-11-12T10:00:00Z", "+447700900999"],
        ["2002", "c77", "2026-11-12T10:00:00Z", "+447700900000"],
    ])
    report = import_orders(path, store)
    assert [(e.row, e.field) for e in report.errors] == [(3, "customer_name")]
    ann = store.get_customer("c1")
    assert (ann.name, ann.phone, ann.email) == ("Ann Lee", "+447700900999", "ann@example.com")


def test_json_empty_strings_and_blank_cells_are_not_given_and_add_no_empty_handle(tmp_path, store):
    import_orders(full_file(tmp_path), store)
    blank = {"number": "1001", "customer_id": "c1", "placed_at": "2026-11-10T10:00:00Z", "brand": "", "total": "",
             "currency": " ", "status": "", "items": "", "customer_name": "", "customer_email": "", "customer_phone": "",
             "customer_x": "", "customer_mastodon": " ", "tracking_number": "", "courier": "", "service": ""}
    nested = {"number": "1002", "customer_id": "c2", "placed_at": "2026-11-11T10:00:00Z", "brand": " ",
              "customer": {"id": "c2", "name": " ", "email": "", "vip": "", "handles": {"x": "", "bluesky": " "}}}
    jsonl = tmp_path / "blank.jsonl"
    jsonl.write_text(json.dumps(blank) + "\n" + json.dumps(nested) + "\n")
    spaces = write_csv(tmp_path / "spaces.csv", FULL, [
        ["1001", "c1", "2026-11-10T10:00:00Z", " ", "  ", " ", "\t", " ", " ", " ", " ", " ", " ", "1Z999AA10123456784",
         "UPS", " "],
    ])
    for path in (jsonl, spaces):
        report = import_orders(path, store)
        assert report.ok and (report.stored, report.updated, report.unchanged) == (0, 0, report.valid), \
            (path.name, [str(e) for e in report.errors], report.summary())
        order = store.get_order("1001")
        assert (order.brand, order.total, order.currency, order.status, order.items) == \
            ("Larkspur", 59.5, "GBP", "placed", [{"name": "lamp"}])
        assert order.shipments[0].service == "Express"
        ann, bo = store.get_customer("c1"), store.get_customer("c2")
        assert (ann.name, ann.email, ann.phone) == ("Ann Lee", "ann@example.com", "+447700900123")
        assert ann.handles == {"x": "ann_lee", "mastodon": "ann@mastodon.social"}
        assert (bo.name, bo.email) == ("Bo Chen", "bo@example.com") and bo.handles == {"x": "bochen"}
    assert store.db.execute("select count(*) from customer_handles where trim(handle) = ''").fetchone()[0] == 0
    # Nor through the store: "@" or spaces are no handle at all.
    assert store.upsert_customer(Customer(id="c1", name="Ann Lee", handles={"x": " @ "}), {"handles"}) == "unchanged"
    assert store.db.execute("select count(*) from customer_handles where trim(handle, ' @') = ''").fetchone()[0] == 0
