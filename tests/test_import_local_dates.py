"""Dates as a German (or Swiss, Austrian, Nordic) shop's tools write them: "24.12.2026 14:30".

Before: every such row was refused ("Input should be a valid datetime or date, invalid character in year"), though
a date written with dots is always day first, so nothing is guessed in reading it. A date with slashes is
written both ways ("12/11/2026": 12 November in Europe, December 11 in the US), so it is still refused, and now
says so and how to write it, instead of a parser's words.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from listeners.files import parse_orders, parse_tracking


def tracking(tmp_path: Path, time: str) -> Path:
    path = tmp_path / "scans.csv"
    path.write_text(f"tracking_number;time;status\nJD0001112223;{time};delivered\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(("written", "read"), [
    ("24.12.2026 14:30", datetime(2026, 12, 24, 14, 30, tzinfo=timezone.utc)),
    ("24.12.2026 14:30:15", datetime(2026, 12, 24, 14, 30, 15, tzinfo=timezone.utc)),
    ("3.10.2026", datetime(2026, 10, 3, tzinfo=timezone.utc)),
    ("03.10.2026, 08:05", datetime(2026, 10, 3, 8, 5, tzinfo=timezone.utc)),
])
def test_a_date_written_with_dots_is_read_day_first(tmp_path, written, read):
    parsed = parse_tracking(tracking(tmp_path, written))
    assert parsed.errors == []
    assert parsed.records[0].time == read


def test_with_a_timezone_it_is_that_zones_local_time(tmp_path):
    parsed = parse_tracking(tracking(tmp_path, "24.12.2026 14:30"), timezone="Europe/Berlin")
    assert parsed.records[0].time == datetime(2026, 12, 24, 13, 30, tzinfo=timezone.utc)


def test_a_date_that_does_not_exist_is_the_rows_error_in_its_own_words(tmp_path):
    [error] = parse_tracking(tracking(tmp_path, "31.02.2026 10:00")).errors
    assert (error.row, error.field) == (2, "time")
    assert "'31.02.2026 10:00' is not a date" in str(error) and "\n" not in str(error)


def test_a_date_with_slashes_is_refused_saying_why_and_how_to_write_it(tmp_path):
    [error] = parse_tracking(tracking(tmp_path, "12/11/2026 09:40")).errors
    message = str(error)
    assert "'12/11/2026 09:40'" in message and "day or the month first" in message
    assert "2026-11-12T09:40" in message and "2026-12-11T09:40" in message


def test_an_orders_placed_at_is_read_the_same_way(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("number;customer_id;placed_at\nORD-1;c1;01.12.2026 09:00\n", encoding="utf-8")
    parsed = parse_orders(path)
    assert parsed.errors == []
    assert parsed.records[0].order.placed_at == datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def test_an_amount_with_a_decimal_comma_is_read_and_a_thousands_comma_is_refused(tmp_path):
    """Before: '61,00' and '1.234,50' were refused ("has a decimal comma: write 61.00") though one or two digits
    after a comma are never an English thousands separator; "1,234" may be either, so it is refused, saying so."""
    path = tmp_path / "orders.csv"
    path.write_text("number;customer_id;placed_at;total;item_name;item_price\n"
                    "ORD-1;c1;01.12.2026 09:00;1.234,50;Lampe;1.234,50\n"
                    "ORD-2;c2;01.12.2026 09:00;61,5;Tasse;61,5\n"
                    "ORD-3;c3;01.12.2026 09:00;1,234;Vase;12.00\n", encoding="utf-8")
    parsed = parse_orders(path)
    assert [(b.order.number, b.order.total, b.order.items[0]["price"]) for b in parsed.records] == [
        ("ORD-1", 1234.5, 1234.5), ("ORD-2", 61.5, 61.5)]
    [error] = parsed.errors
    assert (error.row, error.field) == (4, "total") and "'1,234' has a comma that may separate thousands" in str(error)


@pytest.mark.parametrize("amount", ["1.234", "12.500", "1.234.567"])
def test_a_dot_before_three_digits_is_refused_as_a_thousands_separator_may_be(tmp_path, amount):
    """Code review: with decimal commas read, a German "1.234" (1234 euros) was stored as 1.234 and "12.500" as 12.5,
    without a word; the remedy of the comma message even told people to write "1.234". A dot before exactly three
    digits, and no comma, may be either separator: refused, naming both readings."""
    path = tmp_path / "orders.csv"
    path.write_text(f"number;customer_id;placed_at;total\nORD-1;c1;01.12.2026 09:00;{amount}\n", encoding="utf-8")
    [error] = parse_orders(path).errors
    assert error.field == "total" and f"'{amount}'" in str(error) and "thousands" in str(error)
    assert "1.234 " not in str(error).replace(f"'{amount}'", "")  # the remedy never offers the ambiguous form


@pytest.mark.parametrize(("written", "says"), [
    ("12.11.26 09:40", "a two-digit year"), ("12.11.26", "a two-digit year"), ("1.12.2026 9:5", "09:05"),
])
def test_a_dotted_date_that_cannot_be_read_says_why(tmp_path, written, says):
    """Code review: "12.11.26" and "1.12.2026 9:5" got the parser's "invalid character in year"."""
    [error] = parse_tracking(tracking(tmp_path, written)).errors
    assert f"'{written}'" in str(error) and says in str(error) and "invalid character" not in str(error)


def test_a_slashed_date_with_one_reading_still_names_it_alone(tmp_path):
    [error] = parse_tracking(tracking(tmp_path, "13/11/2026")).errors
    assert "2026-11-13" in str(error) and " or " not in str(error).split("ISO 8601 (")[1].split(")")[0]
