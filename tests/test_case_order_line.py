"""The order and shipment lines of the case page say what the shop's file gave, with no empty parts
(exports audit, 2026-12-07: an order with no brand read "Possible order #1001 ·  · placed …")."""

from __future__ import annotations

from datetime import date, datetime, timezone

from console.case_view import order_line, shipment_line
from doorstep.models import Order, Shipment

PLACED = datetime(2026, 11, 10, 8, 0, tzinfo=timezone.utc)


def test_an_order_without_a_brand_or_promise_leaves_no_empty_parts() -> None:
    order = Order(number="#1001", customer_id="c1", placed_at=PLACED, total=61.0)
    line = order_line(order, False, "Tue 10 Nov 08:00")
    assert line == "Possible order #1001 · placed Tue 10 Nov 08:00 · 61.00 GBP · placed"
    assert "·  ·" not in line


def test_a_full_order_reads_every_part() -> None:
    order = Order(number="1002", customer_id="c1", placed_at=PLACED, brand="Larkspur", total=12.5, currency="EUR",
                  promised_date=date(2026, 11, 14), status="shipped")
    assert order_line(order, True, "Tue 10 Nov 08:00") == \
        "Order 1002 · Larkspur · placed Tue 10 Nov 08:00 · 12.50 EUR · promised 2026-11-14 · shipped"


def test_a_shipment_without_service_or_status() -> None:
    bare = Shipment(order_number="#1001", tracking_number="15501234567890", courier="DPD")
    assert shipment_line(bare) == "Shipment 15501234567890 · DPD · no tracking status yet"
    assert shipment_line(Shipment(order_number="1002", tracking_number="1Z9", courier="UPS", service="Express", status="in_transit")) \
        == "Shipment 1Z9 · UPS Express · status in transit"
