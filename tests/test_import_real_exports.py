"""A small shop's real exports brought to ``doorstep import`` (exports audit, 2026-12-07): Shopify and WooCommerce
orders, a courier's tracking CSV and a social tool's CSV, each as its tool writes it. A file whose header is not
ours is one message about the header, not one per row; foreign columns can be mapped; what a spreadsheet did to a
value is named, not stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from commands.cli import cli
from listeners.files import ImportFileError, parse_mentions, parse_orders, parse_tracking

#: The header of Shopify's own orders export, as it writes it.
SHOPIFY_HEADER = (
    "Name,Email,Financial Status,Paid at,Fulfillment Status,Fulfilled at,Accepts Marketing,Currency,Subtotal,Shipping,"
    "Taxes,Total,Discount Code,Discount Amount,Shipping Method,Created at,Lineitem quantity,Lineitem name,Lineitem price,"
    "Lineitem compare at price,Lineitem sku,Lineitem requires shipping,Lineitem taxable,Lineitem fulfillment status,"
    "Billing Name,Billing Street,Billing Address1,Billing Address2,Billing Company,Billing City,Billing Zip,"
    "Billing Province,Billing Country,Billing Phone,Shipping Name,Shipping Street,Shipping Address1,Shipping Address2,"
    "Shipping Company,Shipping City,Shipping Zip,Shipping Province,Shipping Country,Shipping Phone,Notes,"
    "Note Attributes,Cancelled at,Payment Method,Payment Reference,Refunded Amount,Vendor,Id,Tags,Risk Level,Source,"
    "Lineitem discount,Phone,Tracking Number"
)


def shopify_row(number: int, email: str, name: str, created: str, phone: str) -> str:
    """One Shopify order line (only the columns this test reads are filled in, as in a continuation line)."""
    values = dict.fromkeys(SHOPIFY_HEADER.split(","), "")
    values.update({"Name": f"#{number}", "Email": email, "Created at": created, "Billing Name": name,
                   "Billing Phone": phone, "Total": "26.45", "Currency": "GBP"})
    return ",".join(values.values())


def shopify_file(tmp_path: Path) -> Path:
    path = tmp_path / "orders_export.csv"
    rows = [SHOPIFY_HEADER,
            shopify_row(1001, "ana.silva@example.org", "Ana Silva", "2026-11-10 08:00:12 +0000", "+44 7700 900123"),
            shopify_row(1002, "tom.p@example.org", "Tom Price", "2026-11-10 09:07:12 +0000", "07700 900456"),
            shopify_row(1003, "zoe.mueller@example.de", "Zoë Müller", "2026-11-11 10:14:12 +0000", "+49 151 23456789")]
    path.write_text("\ufeff" + "\r\n".join(rows) + "\r\n", encoding="utf-8")
    return path


def run(tmp_path: Path, *args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "shop.db"), "import", *args])
    return result.exit_code, result.output.splitlines()


# ------------------------------------------------------------------ 1. a header that is not ours
def test_a_shopify_export_is_one_message_about_its_header_not_one_per_row(tmp_path: Path) -> None:
    """Before: 3 row errors (31 for the real file), each "row 2: number: Field required: add it (and 43 more:
    customer_id, placed_at, Name, Email, ...)": the file's own columns listed as if to add."""
    code, lines = run(tmp_path, "orders", str(shopify_file(tmp_path)))
    assert code == 1
    assert not any("row 2" in line for line in lines), lines
    [line] = lines
    assert line.startswith(f"Error: {tmp_path / 'orders_export.csv'}: row 1: header: "), line
    assert "missing columns number, customer_id, placed_at;" in line
    assert "unknown columns Name, Email, Financial Status," in line and "Tracking Number" in line
    # The columns an orders file may have, required ones marked, and how to map another tool's.
    assert "(known: number*, customer_id*, placed_at*, brand, total," in line and "customer_email" in line
    assert "--map FIELD=COLUMN" in line


@pytest.mark.parametrize("header", ["Tracking_Number,Time,Status,Location,Description",
                                    " TRACKING_NUMBER , time ,STATUS,location,description"])
def test_tracking_columns_are_matched_whatever_their_case_and_the_spaces_around_them(tmp_path: Path,
                                                                                     header: str) -> None:
    """Before: "row 2: tracking_number: Field required: add it (and 7 more: time, status, Tracking_Number, ...)"."""
    path = tmp_path / "caps.csv"
    path.write_text(f"{header}\nAB497236329GB,2026-11-11T07:12:00Z,in_transit,Leeds,x\n", encoding="utf-8")
    parsed = parse_tracking(path)
    assert not parsed.errors, [str(e) for e in parsed.errors]
    [event] = parsed.records
    assert (event.tracking_number, event.status, event.location) == ("AB497236329GB", "in_transit", "Leeds")


def test_a_tracking_file_missing_a_required_column_names_it_and_the_expected_ones(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("tracking_number,time,location\nAB497236329GB,2026-11-11T07:12:00Z,Leeds\n", encoding="utf-8")
    with pytest.raises(ImportFileError) as refused:
        parse_tracking(path)
    assert str(refused.value) == (
        f"{path}: row 1: header: missing columns status (known: tracking_number*, time*, status*, location, "
        "description; * required); rename the file's columns to these, or map each with --map FIELD=COLUMN "
        "(e.g. --map status=COLUMN)")


def test_an_orders_header_with_one_misspelt_column_names_it_and_a_likely_map(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("Order Number,customer_id,placed_at,custmer_email\nA1,c1,2026-11-01T10:00:00Z,a@example.org\n",
                    encoding="utf-8")
    with pytest.raises(ImportFileError) as refused:
        parse_orders(path)
    message = str(refused.value)
    assert "missing columns number; unknown columns Order Number, custmer_email (known: number*," in message
    assert "(e.g. --map number='Order Number')" in message


def test_a_mentions_csv_with_an_unknown_column_says_so_once_as_mentions_rows_do(tmp_path: Path) -> None:
    """The words of a mentions row's "unknown field (known: ...)", once for the header."""
    path = tmp_path / "social.csv"
    path.write_text("Channel,external_id,text,created_at,Author\n"
                    "x,900001,where is #1002?,2026-12-07T10:00:00Z,tomprice\n"
                    "x,900002,still waiting,2026-12-07T10:05:00Z,zoe_m\n", encoding="utf-8")
    with pytest.raises(ImportFileError) as refused:
        parse_mentions(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: row 1: header: unknown columns Author (known: channel*, external_id*, text*, "
                              "created_at*, author_id, author_handle,"), message
    path.write_text("Channel,external_id,text,created_at\nx,900001,where is #1002?,2026-12-07T10:00:00Z\n")
    assert [m.external_id for m in parse_mentions(path).records] == ["900001"]


# ------------------------------------------------------------------ 2. another tool's columns, mapped
SHOPIFY_MAP = ["--map", "number=Name", "--map", "customer_id=Email", "--map", "customer_email=Email",
               "--map", "placed_at=Created at", "--map", "customer_name=Billing Name",
               "--map", "customer_phone=Billing Phone"]


def test_a_shopify_export_imports_with_its_columns_mapped(tmp_path: Path) -> None:
    """Before: "No such option: --map"; and Shopify's "2026-11-10 08:00:12 +0000" (a space before the offset)
    was no time."""
    code, lines = run(tmp_path, "orders", str(shopify_file(tmp_path)), *SHOPIFY_MAP)
    assert code == 0, lines
    assert lines[-1].endswith("3 orders rows: 3 new, 0 updated, 0 unchanged, 0 rejected"), lines
    # The columns no --map names are not read, and the run says which (once, not per row).
    [note] = [line for line in lines if line.startswith("note: ")]
    assert "not read: columns Financial Status, Paid at," in note and "Tracking Number" in note
    assert "Total" not in note.split("not read: ")[1].split(",")  # ours by name: read as total
    from doorstep.store import Store

    store = Store(tmp_path / "shop.db")
    order = store.get_order("#1001")
    assert order.placed_at.isoformat() == "2026-11-10T08:00:12+00:00" and order.total == 26.45
    customer = store.get_customer("ana.silva@example.org")
    assert (customer.name, customer.email, customer.phone) == ("Ana Silva", "ana.silva@example.org", "+44 7700 900123")
    again = run(tmp_path, "orders", str(shopify_file(tmp_path)), *SHOPIFY_MAP)
    assert again[1][-1].endswith("3 orders rows: 0 new, 0 updated, 3 unchanged, 0 rejected"), again


@pytest.mark.parametrize(("written", "instant"), [
    ("2026-11-10 08:00:12 +0000", "2026-11-10T08:00:12+00:00"),
    ("2026-11-10 09:00:12 +0100", "2026-11-10T08:00:12+00:00"),
    ("2026-11-10T08:00:12Z", "2026-11-10T08:00:12+00:00"),
])
def test_a_time_with_a_space_before_its_offset_is_the_same_instant(tmp_path: Path, written: str,
                                                                    instant: str) -> None:
    path = tmp_path / "o.csv"
    path.write_text(f"number,customer_id,placed_at\nA1,c1,{written}\n", encoding="utf-8")
    parsed = parse_orders(path)
    assert not parsed.errors, [str(e) for e in parsed.errors]
    assert parsed.records[0].order.placed_at.isoformat() == instant


def test_a_day_month_or_month_day_date_is_still_refused(tmp_path: Path) -> None:
    """"11/12/2026" is 11 December in Leeds and November 12 in Ohio: never guessed."""
    path = tmp_path / "t.csv"
    path.write_text("tracking_number,time,status\nAB497236329GB,11/12/2026 09:40,in_transit\n", encoding="utf-8")
    [error] = parse_tracking(path).errors
    assert (error.row, error.field) == (2, "time") and "ISO 8601" in error.reason


def test_a_courier_export_imports_with_its_columns_mapped_json_lines_too(tmp_path: Path) -> None:
    path = tmp_path / "dpd.jsonl"
    path.write_text('{"Paketnummer": "15503337446730", "Zeit": "2026-11-11T08:05:00Z", "STATUS": "in_transit", '
                    '"Ort": "Hub 3 Hinckley"}\n', encoding="utf-8")
    parsed = parse_tracking(path, columns={"tracking_number": "Paketnummer", "time": "Zeit", "location": "Ort"})
    assert not parsed.errors, [str(e) for e in parsed.errors]
    [event] = parsed.records
    assert (event.tracking_number, event.status, event.location) == ("15503337446730", "in_transit", "Hub 3 Hinckley")


@pytest.mark.parametrize(("given", "problem"), [
    ("numbr=Name", "--map numbr=Name: numbr is not an orders column (known: number*, customer_id*, placed_at*, "),
    ("number", "--map 'number': write FIELD=COLUMN, e.g. --map number='Order Number'"),
    ("number=Order No", "--map number='Order No': the file has no column 'Order No' (its columns: Name, Email, "),
    ("number=", "--map 'number=': write FIELD=COLUMN, e.g. --map number='Order Number'"),
])
def test_a_wrong_map_is_one_line_naming_it(tmp_path: Path, given: str, problem: str) -> None:
    code, lines = run(tmp_path, "orders", str(shopify_file(tmp_path)), "--map", given)
    assert code == 1
    [line] = lines
    assert problem in line, line


def test_a_field_mapped_twice_is_refused(tmp_path: Path) -> None:
    code, lines = run(tmp_path, "orders", str(shopify_file(tmp_path)), "--map", "number=Name", "--map", "number=Id")
    assert code == 1 and lines == ["Error: --map number=Id: number is mapped twice (also from 'Name'); keep one"]


TWCS = ("tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id\n"
        "1,115712,True,Tue Oct 31 22:10:47 +0000 2017,@sprintcare where is my parcel?,2,\n"
        "2,sprintcare,False,Tue Oct 31 22:11:47 +0000 2017,@115712 sorry! DM us,,1\n")


@pytest.mark.parametrize(("option", "problem"), [
    (("--map", "text=Body"), "--map: a twcs file is read by its own fixed columns (tweet_id, author_id, inbound, "
                             "created_at, text, response_tweet_id, in_response_to_tweet_id), not mapped; drop --map"),
    (("--timezone", "Europe/London"), "--timezone: a twcs file's times give their offset (+0000), so no zone is "
                                      "applied to them; drop --timezone"),
])
def test_map_and_timezone_are_refused_for_a_twcs_file_not_ignored(tmp_path: Path, option: tuple[str, str],
                                                                   problem: str) -> None:
    """Before: both were silently ignored for a twcs file (its own layout, UTC times): the run said nothing of
    them, and a user who meant them could not tell they did nothing."""
    path = tmp_path / "twcs.csv"
    path.write_text(TWCS, encoding="utf-8")
    code, lines = run(tmp_path, "mentions", str(path), "--classifier", "baseline", *option)
    assert (code, lines) == (1, [f"Error: {path}: {problem}"])
    # The library says the same to a caller of its own.
    with pytest.raises(ImportFileError, match=problem.split(";")[0].replace("(", r"\(").replace(")", r"\)")
                       .replace("+", r"\+")):
        parse_mentions(path, **({"columns": {"text": "Body"}} if option[0] == "--map" else {"timezone": option[1]}))
    assert len(parse_mentions(path).records) == 2  # without them it imports as before


def test_a_mapped_column_the_header_has_twice_in_another_case_says_so(tmp_path: Path) -> None:
    """Before: "--map customer_email=EMAIL: the file has no column 'EMAIL'" where it has two ('Email', 'email')."""
    path = tmp_path / "o.csv"
    path.write_text("number,customer_id,placed_at,Email,email\nLS-1,C1,2026-11-10T08:00:00Z,a@x.com,b@x.com\n",
                    encoding="utf-8")
    for given in ("customer_email=EMAIL", "customer_email=Email"):
        code, lines = run(tmp_path, "orders", str(path), "--map", given)
        assert (code, lines) == (1, [
            f"Error: {path}: row 1: header: --map {given}: the file has 2 columns named {given.split('=')[1]!r} "
            "whatever their case ('Email', 'email'); rename or remove all but one"]), lines


@pytest.mark.parametrize(("kind", "listed"), [
    ("orders", "number*, customer_id*, placed_at*, brand, total,"),
    ("tracking", "tracking_number*, time*, status*, location, description"),
    ("mentions", "channel*, external_id*, text*, created_at*, author_id,"),
])
def test_each_imports_help_lists_its_columns_required_ones_marked(kind: str, listed: str) -> None:
    result = CliRunner().invoke(cli, ["import", kind, "--help"])
    assert result.exit_code == 0
    flat = " ".join(result.output.split())
    assert f"Columns (* required): {listed}" in flat, result.output
    assert "--map FIELD=COLUMN" in flat


# ------------------------------------------------------------------ 3. local times
DPD_READY = ("tracking_number;time;status;location\n"
             "15503337446730;2026-11-11 08:05;in_transit;Hub 3 Hinckley\n"
             "15503337446730;2026-07-12 13:55;attempt_failed;Leeds Depot\n"
             "15503337446730;2026-11-13 09:00+00:00;delivered;Leeds\n")


@pytest.mark.parametrize(("zone", "instants"), [
    (None, ["2026-11-11T08:05:00+00:00", "2026-07-12T13:55:00+00:00"]),
    ("Europe/Berlin", ["2026-11-11T07:05:00+00:00", "2026-07-12T11:55:00+00:00"]),
    ("Europe/London", ["2026-11-11T08:05:00+00:00", "2026-07-12T12:55:00+00:00"]),
    ("utc", ["2026-11-11T08:05:00+00:00", "2026-07-12T13:55:00+00:00"]),
])
def test_times_without_an_offset_are_read_in_the_zone_given(tmp_path: Path, zone: str | None,
                                                            instants: list[str]) -> None:
    """Before: "No such option: --timezone": a courier's local 08:05 in Germany was stored as 08:05 UTC."""
    path = tmp_path / "dpd.csv"
    path.write_text(DPD_READY, encoding="utf-8")
    parsed = parse_tracking(path, timezone=zone)
    assert not parsed.errors, [str(e) for e in parsed.errors]
    # A time that gives its offset keeps it, whatever the zone.
    assert [e.time.isoformat() for e in parsed.records] == [*instants, "2026-11-13T09:00:00+00:00"]


def test_a_social_tools_local_times_import_in_its_zone_from_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "social.csv"
    path.write_text("channel,external_id,text,created_at,author_handle\n"
                    "x,900001,@MossgroveHelp any news on order #1002?,2026-12-07 10:00,tomprice\n", encoding="utf-8")
    code, lines = run(tmp_path, "mentions", str(path), "--classifier", "baseline", "--timezone", "America/New_York")
    assert code == 0, lines
    from doorstep.store import Store

    [stored] = Store(tmp_path / "shop.db").db.query("select created_at from mentions")
    assert stored["created_at"].startswith("2026-12-07T15:00:00"), stored


@pytest.mark.parametrize("zone", ["Europe/Londn", "", "+01:00", "../etc/passwd"])
def test_an_unknown_time_zone_is_one_line_naming_it(tmp_path: Path, zone: str) -> None:
    path = tmp_path / "dpd.csv"
    path.write_text(DPD_READY, encoding="utf-8")
    code, lines = run(tmp_path, "tracking", str(path), "--timezone", zone)
    assert code == 1
    assert lines == [f"Error: --timezone {zone!r}: not an IANA time zone; give one such as Europe/London, "
                     "Europe/Berlin or America/New_York (times that give their offset keep it)"], lines


#: A courier's local times across London's clock changes: on 25 October 2026 the clocks go back at 02:00 (01:00 to
#: 01:59 happen twice), on 29 March 2026 they go forward at 01:00 (01:00 to 01:59 never happen).
UPS_ACROSS_THE_CLOCK_CHANGES = ("tracking_number,time,status,location\n"
                                "1Z999AA10123456784,2026-10-25 00:50:00,in_transit,Leeds hub\n"
                                "1Z999AA10123456784,2026-10-25 01:40:00,out_for_delivery,Leeds depot\n"
                                "1Z999AA10123456784,2026-10-25 01:20:00,delivered,Leeds\n"
                                "1Z999AA10123456784,2026-03-29 01:30:00,in_transit,Leeds hub\n"
                                "1Z999AA10123456784,2026-10-25 02:10:00,delivered,Leeds\n")


def test_a_local_time_the_clock_change_repeats_or_skips_is_refused_naming_it(tmp_path: Path) -> None:
    """Before: 01:40 out_for_delivery and 01:20 delivered were both read as the first 01:xx (BST), so delivered was
    stored 20 minutes before out_for_delivery and the shipment showed out_for_delivery; 01:30 on 29 March, which
    never happened in London, was stored with no word. Which instant the courier meant is not guessed."""
    path = tmp_path / "ups.csv"
    path.write_text(UPS_ACROSS_THE_CLOCK_CHANGES, encoding="utf-8")
    parsed = parse_tracking(path, timezone="Europe/London")
    assert [str(e).removeprefix(f"{path}: ") for e in parsed.errors] == [
        "row 3: time: '2026-10-25 01:40:00' happened twice in Europe/London (the clocks went back): write the "
        "offset, e.g. 2026-10-25T01:40:00+01:00 or 2026-10-25T01:40:00+00:00",
        "row 4: time: '2026-10-25 01:20:00' happened twice in Europe/London (the clocks went back): write the "
        "offset, e.g. 2026-10-25T01:20:00+01:00 or 2026-10-25T01:20:00+00:00",
        "row 5: time: '2026-03-29 01:30:00' never happened in Europe/London (the clocks went forward): write the "
        "offset, e.g. 2026-03-29T01:30:00+00:00 or 2026-03-29T01:30:00+01:00",
    ]
    # The times either side of the changes are read as before.
    assert [(n, e.time.isoformat()) for n, e in zip(parsed.rows, parsed.records)] == [
        (2, "2026-10-24T23:50:00+00:00"), (6, "2026-10-25T02:10:00+00:00")]
    # With the offset written, the same rows import, in the order they happened.
    fixed = tmp_path / "ups_fixed.csv"
    fixed.write_text(UPS_ACROSS_THE_CLOCK_CHANGES.replace("01:40:00,", "01:40:00+01:00,")
                     .replace("01:20:00,", "01:20:00+00:00,").replace("2026-03-29 01:30:00,", "2026-03-29 01:30:00+00:00,"),
                     encoding="utf-8")
    again = parse_tracking(fixed, timezone="Europe/London")
    assert not again.errors, [str(e) for e in again.errors]
    assert [e.time.isoformat() for e in again.records][1:3] == ["2026-10-25T00:40:00+00:00", "2026-10-25T01:20:00+00:00"]


@pytest.mark.parametrize(("kind", "text", "field"), [
    ("orders", "number,customer_id,placed_at,total\nA1,c1,2026-10-25 01:15,1,234\n", "placed_at"),
    ("mentions", "channel,external_id,text,created_at\nx,900001,where is my parcel?,2026-10-25 01:15\n", "created_at"),
])
def test_orders_and_posts_at_a_repeated_local_time_are_refused_too_with_the_rows_other_faults(
        tmp_path: Path, kind: str, text: str, field: str) -> None:
    path = tmp_path / f"{kind}.csv"
    path.write_text(text.replace("1,234", '"1,234"'), encoding="utf-8")
    classifier = ("--classifier", "baseline") if kind == "mentions" else ()
    code, lines = run(tmp_path, kind, str(path), "--timezone", "Europe/London", *classifier)
    assert code == 1, lines
    row = next(line for line in lines if "row 2:" in line)
    assert (f"row 2: {field}: '2026-10-25 01:15' happened twice in Europe/London (the clocks went back): write the "
            "offset, e.g. 2026-10-25T01:15:00+01:00 or 2026-10-25T01:15:00+00:00") in row, row
    if kind == "orders":  # the row's other fault is named on the same line
        assert "total: '1,234' has a comma that may separate thousands or decimals" in row, row


# ------------------------------------------------------------------ 4. phones a spreadsheet mangled
PHONES = ("number,customer_id,placed_at,customer_name,customer_phone\n"
          "P1,c-p1,2026-11-03T09:15:00Z,Phone One,4.47701E+11\n"
          "P2,c-p2,2026-11-03T09:15:00Z,Phone Two,447700900123\n"
          "P3,c-p3,2026-11-03T09:15:00Z,Phone Three,=+447700900124\n"
          "P4,c-p4,2026-11-03T09:15:00Z,Phone Four,'+447700900125\n"
          'P5,c-p5,2026-11-03T09:15:00Z,Phone Five,"=""+44 7700 900126"""\n'
          "P6,c-p6,2026-11-03T09:15:00Z,Phone Six,'0161 496 0000\n"
          "P7,c-p7,2026-11-03T09:15:00Z,Phone Seven,=B2\n")


def test_a_phone_in_scientific_notation_is_refused_and_formula_markers_are_dropped(tmp_path: Path) -> None:
    """Before: "4.47701E+11" (digits lost: an SMS would go to a stranger), "=+447700900124" and "'+447700900125"
    were stored as written."""
    path = tmp_path / "phones.csv"
    path.write_text(PHONES, encoding="utf-8")
    parsed = parse_orders(path)
    assert [(e.row, e.field) for e in parsed.errors] == [(2, "customer_phone"), (8, "customer_phone")]
    assert str(parsed.errors[0]).endswith(
        "row 2: customer_phone: '4.47701E+11' is a number in scientific notation, its last digits lost: format the "
        "column as text in the spreadsheet (or export the phone numbers again) and import again")
    assert str(parsed.errors[1]).endswith(
        "row 8: customer_phone: '=B2' is a spreadsheet formula, not a phone number: export the values (format the "
        "column as text) and import again")
    assert {b.customer.id: b.customer.phone for b in parsed.records} == {
        "c-p2": "447700900123", "c-p3": "+447700900124", "c-p4": "+447700900125", "c-p5": "+44 7700 900126",
        "c-p6": "0161 496 0000"}


def test_a_nested_customers_phone_in_scientific_notation_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "orders.jsonl"
    path.write_text('{"number": "P1", "placed_at": "2026-11-03T09:15:00Z", '
                    '"customer": {"id": "c-p1", "name": "Phone One", "phone": "4,47701E+11"}}\n', encoding="utf-8")
    [error] = parse_orders(path).errors
    assert error.field == "customer.phone" and "scientific notation" in error.reason


# ------------------------------------------------------------------ 5. every field's error of a row
WOO = ("number;customer_id;placed_at;customer_name;total;currency\n"
       "2101;zoe.mueller@example.de;03/11/2026 09:15;Zoë Müller;1,234;EUR\n"
       "2102;sean@example.ie;2026-11-04T10:15:00+01:00;Seán Ó Briain;2,700;EUR\n"
       "2103;priya.p@example.co.uk;2026-11-05T11:15:00+01:00;Priya Patel;11.49;EUR\n")


def test_a_row_names_every_field_that_fails_each_with_its_remedy(tmp_path: Path) -> None:
    """Before: "row 2: placed_at: ...: write a time as ISO 8601, e.g. 2026-11-16T09:00:00Z (and 1 more: total)":
    the total's fault and its remedy were hidden until the dates were fixed. (A dotted date and a decimal comma
    are read since: tests/test_import_local_dates.py; a slashed date and a comma that may separate thousands are
    still refused.)"""
    path = tmp_path / "woo.csv"
    path.write_text(WOO, encoding="utf-8")
    code, lines = run(tmp_path, "orders", str(path), "--max-rejected", "1")
    assert code == 1
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == [
        f"error: {path}: row 2: placed_at: '03/11/2026 09:15' writes the date with slashes, which tools write with "
        "the day or the month first: write it as ISO 8601 (2026-11-03T09:15 or 2026-03-11T09:15), or export the "
        "file with ISO dates; total: '1,234' has a comma that may separate thousands or decimals: write the amount "
        "with a decimal point and no thousands separator, e.g. 1234.00",
        f"error: {path}: row 3: total: '2,700' has a comma that may separate thousands or decimals: write the "
        "amount with a decimal point and no thousands separator, e.g. 1234.00",
    ], lines
    assert lines[-1].endswith("3 orders rows: 1 new, 0 updated, 0 unchanged, 2 rejected")


def test_a_bad_tracking_status_names_the_rows_value_and_the_statuses_beside_the_times_error(tmp_path: Path) -> None:
    """Before: "row 2: time: ...: write a time as ISO 8601, ... (and 1 more: status)"; and alone, "status: Input
    should be 'info_received', 'in_transit', ... or 'returned'", without the value the row gave. (A courier's
    common words, "Out for delivery", are read since: tests/test_import_courier_words.py; a word known nowhere is
    still the row's error, naming the setting that adds it.)"""
    path = tmp_path / "rm.csv"
    path.write_text("tracking_number,time,status,location\n"
                    "AB497236329GB,12/11/2026 09:40,Sorted at Leeds,Leeds Delivery Office\n"
                    "AB497236329GB,2026-11-12T09:40:00Z,Sorted at Leeds,Leeds Delivery Office\n", encoding="utf-8")
    first, second = parse_tracking(path).errors
    statuses = ("'Sorted at Leeds' is not a tracking status or a courier's word Doorstep knows: add it to [imports] "
                'tracking_statuses in doorstep.toml ("Sorted at Leeds" = "delivered", or whichever of info_received, '
                "in_transit, out_for_delivery, attempt_failed, exception, delivered, returned it is)")
    assert (first.row, first.field) == (2, "time")
    assert str(first).endswith("or export the file with ISO dates; status: " + statuses), first
    assert str(second).endswith(f"row 3: status: {statuses}")


def test_checks_made_before_validation_are_listed_with_the_models_own(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("number,customer_id,placed_at,customer_name,customer_phone,total,tracking_number\n"
                    "A1,c1,yesterday,Ann Lee,4.47701E+11,abc,AB497236329GB\n", encoding="utf-8")
    [error] = parse_orders(path).errors
    reasons = str(error).split(": row 2: ", 1)[1].split("; ")
    assert [r.split(":")[0] for r in reasons] == ["customer_phone", "courier", "placed_at", "total"], reasons
    assert "format the column as text" in reasons[0] and "required when tracking_number is given" in reasons[1]


def test_the_recorded_run_names_every_field_of_its_first_rejected_row(tmp_path: Path) -> None:
    from doorstep.store import Store
    from listeners.files import recent_imports

    path = tmp_path / "woo.csv"
    path.write_text(WOO, encoding="utf-8")
    run(tmp_path, "orders", str(path), "--max-rejected", "1")
    [recorded] = recent_imports(Store(tmp_path / "shop.db"))
    assert recorded["message"].startswith("row 2: placed_at: '03/11/2026 09:15' writes the date with slashes")
    assert "; total: '1,234' has a comma that may separate thousands or decimals" in recorded["message"]
    assert recorded["message"].endswith("(and 1 more)")


# ------------------------------------------------------------------ what held still holds, mapped
def test_a_mapped_semicolon_export_keeps_row_numbers_duplicates_reimports_and_partial_updates(tmp_path: Path) -> None:
    """A WooCommerce export (byte-order mark, CRLF, ';', a note spanning two lines) through --map: rows are
    numbered as in an editor, a repeated order is refused, a re-import changes nothing, and a later file
    giving fewer columns erases nothing."""
    path = tmp_path / "woo.csv"
    path.write_bytes("\ufeffOrder Number;Order Date;Customer Note;First Name (Billing);Email (Billing);"
                     "Phone (Billing);Order Total Amount\r\n"
                     '2101;2026-11-03 09:15;"Bitte beim Nachbarn,\r\nHaus Nr. 7";Zoë;zoe@example.de;'
                     "+49 151 23456789;61.00\r\n"
                     "2101;2026-11-03 09:15;;Zoë;zoe@example.de;+49 151 23456789;61.00\r\n"
                     "2102;2026-11-04 10:15;;Seán;sean@example.ie;'+353 85 123 4567;27.00\r\n".encode())
    woo_map = ["--map", "number=Order Number", "--map", "placed_at=Order Date",
               "--map", "customer_name=First Name (Billing)", "--map", "customer_id=Email (Billing)", "--map", "customer_phone=Phone (Billing)",
               "--map", "total=Order Total Amount", "--timezone", "Europe/Berlin"]
    code, lines = run(tmp_path, "orders", str(path), *woo_map)
    assert code == 1
    assert [line for line in lines if line.startswith("error: ")] == [
        f"error: {path}: row 4: number: duplicate of row 2 (2101); keep one row for it"]
    assert lines[-1].endswith("3 orders rows: 2 new, 0 updated, 0 unchanged, 1 rejected")
    assert run(tmp_path, "orders", str(path), *woo_map)[1][-1].endswith("0 new, 0 updated, 2 unchanged, 1 rejected")

    partial = tmp_path / "partial.csv"
    partial.write_text("Number,Customer_ID,Placed_At\n2102,sean@example.ie,2026-11-04T09:15:00Z\n", encoding="utf-8")
    assert run(tmp_path, "orders", str(partial)) == (0, [f"{partial}: 1 orders rows: 0 new, 0 updated, 1 unchanged, "
                                                         "0 rejected"])
    from doorstep.store import Store

    store = Store(tmp_path / "shop.db")
    customer = store.get_customer("sean@example.ie")
    assert (customer.name, customer.phone) == ("Seán", "+353 85 123 4567")
    order = store.get_order("2102")
    assert (order.placed_at.isoformat(), order.total) == ("2026-11-04T09:15:00+00:00", 27.0)


def test_a_column_of_ours_mapped_to_another_field_too_still_feeds_its_own(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("number,customer_id,placed_at,customer_name\nA1,ann@example.org,2026-11-01T10:00:00Z,Ann\n",
                    encoding="utf-8")
    [bundle] = parse_orders(path, columns={"customer_email": "customer_id"}).records
    assert (bundle.order.customer_id, bundle.customer.email) == ("ann@example.org", "ann@example.org")
    jsonl = tmp_path / "o.jsonl"
    jsonl.write_text('{"number": "A1", "customer_id": "ann@example.org", "placed_at": "2026-11-01T10:00:00Z", '
                     '"customer_name": "Ann", "Notes": "x"}\n', encoding="utf-8")
    parsed = parse_orders(jsonl, columns={"customer_email": "customer_id"})
    [bundle] = parsed.records
    assert (bundle.order.customer_id, bundle.customer.email) == ("ann@example.org", "ann@example.org")
    assert parsed.notes == [f"{jsonl}: not read: columns Notes (no --map names them)"]


# ------------------------------------------------------------------ 6. one row per item (Shopify, WooCommerce)
#: What README's Shopify command line adds to SHOPIFY_MAP: each row's line item.
ITEM_MAP = ["--map", "item_name=Lineitem name", "--map", "item_quantity=Lineitem quantity",
            "--map", "item_price=Lineitem price", "--map", "item_sku=Lineitem sku"]


def item_row(number: int, email: str, created: str, item: tuple[str, str, str, str], **order: str) -> str:
    """A Shopify line: its item, and the order's values only where given (Shopify leaves them blank on an
    order's second and later lines, but for Name, Email, Currency and Created at)."""
    values = dict.fromkeys(SHOPIFY_HEADER.split(","), "")
    name, sku, quantity, price = item
    values.update({"Name": f"#{number}", "Email": email, "Created at": created, "Currency": "GBP",
                   "Lineitem name": name, "Lineitem sku": sku, "Lineitem quantity": quantity,
                   "Lineitem price": price, **order})
    return ",".join(f'"{v}"' if "," in v else v for v in values.values())


ANA = ("ana.silva@example.org", "2026-11-10 08:00:12 +0000")
TOM = ("tom.p@example.org", "2026-11-10 09:07:12 +0000")
ANA_FIRST = {"Billing Name": "Ana Silva", "Billing Phone": "+44 7700 900123", "Total": "67.44"}


def items_file(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "orders_export.csv"
    path.write_text("\ufeff" + "\r\n".join([SHOPIFY_HEADER, *rows]) + "\r\n", encoding="utf-8")
    return path


def test_an_orders_rows_one_per_item_fold_into_one_order_with_its_items(tmp_path: Path) -> None:
    """Before: "row 3: number: duplicate of row 2 (#1001); keep one row for it" for each further item: the order's
    other items were lost, and with most orders of several items nothing was written without --max-rejected 1."""
    path = items_file(
        tmp_path,
        item_row(1001, *ANA, ("Moss terrarium kit", "MOSS-TK", "1", "34.00"), **ANA_FIRST),
        item_row(1001, *ANA, ("Glass cloche", "CLOCHE-L", "1", "22.50")),
        item_row(1002, *TOM, ("Glass cloche", "CLOCHE-L", "2", "22.50"), **{"Billing Name": "Tom Price",
                                                                            "Total": "48.95"}),
        item_row(1001, *ANA, ("Fern spray", "FERN-SP", "1", "6.99")))
    code, lines = run(tmp_path, "orders", str(path), *SHOPIFY_MAP, *ITEM_MAP)
    assert code == 0, lines
    assert lines[-1] == f"{path}: 4 orders rows for 2 orders: 2 new, 0 updated, 0 unchanged, 0 rejected", lines
    from doorstep.store import Store

    store = Store(tmp_path / "shop.db")
    order = store.get_order("#1001")
    assert order.items == [{"name": "Moss terrarium kit", "sku": "MOSS-TK", "quantity": 1, "price": 34.0},
                           {"name": "Glass cloche", "sku": "CLOCHE-L", "quantity": 1, "price": 22.5},
                           {"name": "Fern spray", "sku": "FERN-SP", "quantity": 1, "price": 6.99}]
    assert (order.total, order.customer_id, order.placed_at.isoformat()) == (
        67.44, "ana.silva@example.org", "2026-11-10T08:00:12+00:00")
    customer = store.get_customer("ana.silva@example.org")
    assert (customer.name, customer.phone) == ("Ana Silva", "+44 7700 900123")
    assert store.get_order("#1002").items == [{"name": "Glass cloche", "sku": "CLOCHE-L", "quantity": 2,
                                               "price": 22.5}]
    # The same file again changes nothing; a partial file (no item columns) erases no item.
    again = run(tmp_path, "orders", str(path), *SHOPIFY_MAP, *ITEM_MAP)
    assert again == (0, [again[1][0], f"{path}: 4 orders rows for 2 orders: 0 new, 0 updated, 2 unchanged, "
                                      "0 rejected"]), again
    partial = tmp_path / "partial.csv"
    partial.write_text("number,customer_id,placed_at,status\n#1001,ana.silva@example.org,2026-11-10T08:00:12Z,"
                       "shipped\n", encoding="utf-8")
    assert run(tmp_path, "orders", str(partial))[0] == 0
    order = store.get_order("#1001")
    assert (order.status, len(order.items), order.total) == ("shipped", 3, 67.44)


def test_rows_of_one_order_that_disagree_are_refused_naming_both_rows_and_the_field(tmp_path: Path) -> None:
    """Two totals, or two customers, under one order number: which is right is the shop's call, never ours; the
    order is not written in part (its other rows are refused with it, naming the row to fix)."""
    path = items_file(
        tmp_path,
        item_row(1001, *ANA, ("Moss terrarium kit", "MOSS-TK", "1", "34.00"), **ANA_FIRST),
        item_row(1001, *ANA, ("Glass cloche", "CLOCHE-L", "1", "22.50"), Total="70.00"),
        item_row(1002, *TOM, ("Glass cloche", "CLOCHE-L", "1", "22.50"), **{"Billing Name": "Tom Price"}),
        item_row(1002, "jo.king@example.org", TOM[1], ("Fern spray", "FERN-SP", "1", "6.99")),
        item_row(1003, *TOM, ("Fern spray", "FERN-SP", "1", "6.99"), **{"Billing Name": "Tom Price"}))
    code, lines = run(tmp_path, "orders", str(path), *SHOPIFY_MAP, *ITEM_MAP, "--max-rejected", "1")
    assert code == 1
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == [
        f"error: {path}: row 2: number: order #1001 is not imported: its row 3 is rejected; fix that row and "
        "import again",
        f"error: {path}: row 3: total: 70.0 differs from 67.44 in row 2, the same order #1001: an order's rows "
        "repeat its values or leave them blank; correct one of them",
        f"error: {path}: row 4: number: order #1002 is not imported: its row 5 is rejected; fix that row and "
        "import again",
        f"error: {path}: row 5: customer_id: 'jo.king@example.org' differs from 'tom.p@example.org' in row 4, the "
        "same order #1002: an order's rows repeat its values or leave them blank; correct one of them; "
        "customer_email: 'jo.king@example.org' differs from 'tom.p@example.org' in row 4, the same order #1002: an "
        "order's rows repeat its values or leave them blank; correct one of them",
    ], lines
    assert lines[-1] == f"{path}: 5 orders rows: 1 new, 0 updated, 0 unchanged, 4 rejected", lines
    from doorstep.store import Store

    store = Store(tmp_path / "shop.db")
    assert store.get_order("#1001") is None and store.get_order("#1002") is None
    assert store.get_order("#1003").items == [{"name": "Fern spray", "sku": "FERN-SP", "quantity": 1, "price": 6.99}]


def test_item_columns_are_checked_like_an_orders_own(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("number,customer_id,placed_at,item_name,item_quantity,item_price,items\n"
                    "A1,c1,2026-11-01T10:00:00Z,Lamp,two,\"3,400\",\n"
                    "A2,c1,2026-11-01T10:00:00Z,Lamp,1,34.00,\"[\"\"mug\"\"]\"\n"
                    "A3,c1,2026-11-01T10:00:00Z,Lamp,,,\n", encoding="utf-8")
    parsed = parse_orders(path)
    assert [str(e).split(": row ", 1)[1] for e in parsed.errors] == [
        "2: item_quantity: 'two' is not a whole number: write how many, e.g. 2; item_price: '3,400' has a comma "
        "that may separate thousands or decimals: write the amount with a decimal point and no thousands separator, "
        "e.g. 1234.00",
        "3: items: give the items either as the items list or as item_* columns (one item a row), not both",
    ]
    [bundle] = parsed.records
    assert bundle.order.items == [{"name": "Lamp"}]
