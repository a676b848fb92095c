"""A database written before tracking numbers were normalised (stop 35) holds them as the shop typed
them: "1Z 999 AA1 01 2345 6784", "ab123456785gb". Posts, courier updates and imports read numbers
normalised, so such a parcel was never found again until its order was re-imported, and events of a
parcel whose order never came, courier updates and cases kept the old spelling for good. Upgrading
renames every stored number (m025), merging a parcel stored both ways, on both stores."""

from __future__ import annotations

from datetime import timedelta

from doorstep.models import Case, Customer, Order
from doorstep.store import MIGRATIONS, Store

from listeners.files import import_orders

from conftest import T0

UPS = "1Z999AA10123456784"
UPS_SPACED = "1Z 999 AA1 01 2345 6784"
RM = "AB123456785GB"
RM_TYPED = "ab 123-456-785 gb"
DPD = "15501234567890"
DPD_TYPED = "1550 1234 5678 90"


def _rows(store: Store, sql: str) -> list[tuple]:
    return [tuple(r) for r in store.db.execute(sql).fetchall()]


def test_upgrading_renames_tracking_numbers_stored_as_typed_and_merges_a_parcel_stored_both_ways(store: Store):
    store.upsert_customer(Customer(id="c1", name="Ann Lee"))
    store.upsert_order(Order(number="ORD-1", customer_id="c1", placed_at=T0 - timedelta(days=3)))
    store.upsert_order(Order(number="ORD-2", customer_id="c1", placed_at=T0 - timedelta(days=3)))
    early, late = (T0 - timedelta(hours=5)).isoformat(), (T0 - timedelta(hours=1)).isoformat()
    with store.transaction():  # as an older version left them
        db = store.db
        # ORD-1's parcel, only as typed, with its event, a courier update and a case.
        db.execute("insert into shipments (tracking_number, order_number, courier, status, last_event_at) "
                   "values (?, 'ORD-1', 'UPS', 'attempt_failed', ?)", [UPS_SPACED, early])
        db.execute("insert into tracking_events (tracking_number, time, status) values (?, ?, 'attempt_failed')",
                   [UPS_SPACED, early])
        db.execute("insert into courier_updates (tracking_number, update_id, courier, status, text, received_at) "
                   "values (?, 'u1', 'UPS', 'attempt_failed', 'card left', ?)", [UPS_SPACED, early])
        # ORD-2's parcel stored both ways (a later import added the canonical one): one event each,
        # one of them the same event.
        db.execute("insert into shipments (tracking_number, order_number, courier) values (?, 'ORD-2', 'Royal Mail')",
                   [RM_TYPED])
        db.execute("insert into shipments (tracking_number, order_number, courier, status, last_event_at) "
                   "values (?, 'ORD-2', 'Royal Mail', 'in_transit', ?)", [RM, early])
        db.execute("insert into tracking_events (tracking_number, time, status) values (?, ?, 'in_transit')", [RM, early])
        db.execute("insert into tracking_events (tracking_number, time, status) values (?, ?, 'in_transit')",
                   [RM_TYPED, early])
        db.execute("insert into tracking_events (tracking_number, time, status) values (?, ?, 'exception')",
                   [RM_TYPED, late])
        # Events of a parcel whose order never came.
        db.execute("insert into tracking_events (tracking_number, time, status) values (?, ?, 'delivered')",
                   [DPD_TYPED, late])
    case_id = store.insert_case(Case(status="new", order_number="ORD-1", tracking_number=UPS_SPACED,
                                     opened_at=T0, last_activity_at=T0))
    version = store.get_case(case_id).version  # type: ignore[union-attr]

    store.db.execute("delete from _sqlite_migrations where name = 'm025_tracking_numbers_normalised'")
    MIGRATIONS.apply(store.db)

    assert _rows(store, "select tracking_number, order_number, status from shipments order by tracking_number") == [
        (UPS, "ORD-1", "attempt_failed"), (RM, "ORD-2", "exception")]  # merged; status from the latest event
    assert _rows(store, "select tracking_number, status from tracking_events order by tracking_number, time") == [
        (DPD, "delivered"), (UPS, "attempt_failed"), (RM, "in_transit"), (RM, "exception")]
    assert _rows(store, "select tracking_number, update_id from courier_updates") == [(UPS, "u1")]
    case = store.get_case(case_id)
    assert case is not None and case.tracking_number == UPS
    assert case.version == version + 1  # a page open on it sees the change
    shipment = store.get_shipment(UPS)
    assert shipment is not None and [e.status for e in shipment.events] == ["attempt_failed"]


def test_upgrading_leaves_a_parcel_claimed_by_two_orders_as_typed(tmp_path, store: Store):
    """Two orders each holding one spelling of a parcel cannot be merged without choosing an order:
    the typed one stays as it was, and an import of the other order's row is refused as a parcel on two
    orders instead of moving it."""
    store.upsert_customer(Customer(id="c1", name="Ann Lee"))
    for number in ("ORD-1", "ORD-2"):
        store.upsert_order(Order(number=number, customer_id="c1", placed_at=T0 - timedelta(days=3)))
    with store.transaction():
        store.db.execute("insert into shipments (tracking_number, order_number) values (?, 'ORD-1')", [RM])
        store.db.execute("insert into shipments (tracking_number, order_number) values (?, 'ORD-2')", [RM_TYPED])
    store.db.execute("delete from _sqlite_migrations where name = 'm025_tracking_numbers_normalised'")
    MIGRATIONS.apply(store.db)
    assert _rows(store, "select tracking_number, order_number from shipments order by order_number") == [
        (RM, "ORD-1"), (RM_TYPED, "ORD-2")]
    orders = tmp_path / "orders.csv"
    orders.write_text("number,customer_id,placed_at,tracking_number,courier\n"
                      f"ORD-2,c1,{(T0 - timedelta(days=3)).isoformat()},{RM_TYPED},Royal Mail\n", encoding="utf-8")
    result = import_orders(orders, store)
    assert len(result.errors) == 1 and "ORD-1" in str(result.errors[0]), result.errors
    assert _rows(store, "select tracking_number, order_number from shipments order by order_number") == [
        (RM, "ORD-1"), (RM_TYPED, "ORD-2")]


def test_a_database_upgraded_by_a_newer_version_is_refused_not_used(db_url: str):
    """Upgrade audit, finding 3: an older Doorstep opened a database a newer one had upgraded and wrote rows the
    newer one then misread (a case without its SLA fields, missing from Overdue). This version refuses a
    database whose schema holds changes it does not know, in one line, and writes nothing."""
    import pytest

    from doorstep.store import StoreError

    store = Store(db_url)
    with store.transaction():
        store.db.execute("insert into _sqlite_migrations (migration_set, name, applied_at) "
                         "values ('doorstep', 'm999_from_a_newer_version', '2027-01-01 00:00:00+00:00')")
    cases = store.db.execute("select count(*) from cases").fetchone()[0]
    store.close()
    with pytest.raises(StoreError) as refused:
        Store(db_url)
    message = str(refused.value)
    assert "upgraded by a newer Doorstep" in message and "m999_from_a_newer_version" in message, message
    assert "run that version" in message and "\n" not in message, message
    assert cases == 0
