"""A German shop's parcel numbers, as its customers quote them (intl audit, finding 1).

DHL Paket numbers are 12 digits ("1234 5678 9012") or 20 digits, the label's NVE ("00340434161234567890");
Hermes Germany's are 14 digits. The orders import stored them, yet "Meine DHL Sendung 00340434161234567890
hängt seit Tagen…" opened a case with no order, no parcel and no tracking timeline: only DHL Express's
10-digit and JJD… numbers were read from posts, and Hermes only as Evri's 16 characters.

Such digit runs have no check digit and are shaped like phone numbers, order numbers and other couriers'
numbers, so they link only where a shipment with that very number is stored, and one that names no
stored shipment is nobody's business: no link, and no "no such parcel" for the agent (both stores).
The shop keeps its configuration: `dhl` covers DHL Paket, `evri` (Evri was Hermes UK) Hermes Germany.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from doorstep.config import Config, parse_config
from doorstep.linking import find_numbers, link_mention
from doorstep.pipeline import Pipeline
from doorstep.store import Store

from listeners.files import import_orders

from conftest import KeywordClassifier, mention

NVE = "00340434161234567890"  # DHL Paket, 20 digits
PAKET = "123456789012"  # DHL Paket, 12 digits
HERMES = "12345678901234"  # Hermes Germany, 14 digits

#: The shop's orders export, as the auditor's (one DHL number typed spaced, as shops paste them).
ORDERS = """number;customer_id;placed_at;total;customer_name;customer_phone;tracking_number;courier
100251;K-3001;2026-12-01T08:00:00+01:00;10.00;Lena Schäfer;0171 2223334;00340434161234567890;DHL
100252;K-3002;2026-12-01T08:00:00+01:00;10.00;Ömer Yılmaz;0152 9998887;1234 5678 9012;DHL
100253;K-3003;2026-12-01T08:00:00+01:00;10.00;Ida Groß;0160 5556667;12345678901234;Hermes
100254;K-3004;2026-12-01T08:00:00+01:00;10.00;Jürgen Weiß;0171 1234567;JJD000390007000123456;DHL
202612070001;K-3005;2026-12-02T08:00:00+01:00;10.00;Grete Straßmann;0171 7654321;;
"""


def _config(couriers: bool = True, order_patterns: list[str] | None = None) -> Config:
    """The German shop of the audit ('#12345' and 'BST-123456' are its order numbers), its couriers as it
    named their formats; ``couriers=False``: none configured, every format read."""
    return parse_config({
        "timezone": "Europe/Berlin",
        "order_patterns": order_patterns or [r"#(\d{5,8})\b", r"\b(BST-\d{6})\b"],
        "brands": [{"name": "Gärtnerei Grünfink", "handles": {"x": "GruenfinkHilfe"}, "keywords": ["grünfink"]}],
        "couriers": [
            {"name": "DHL", "handles": {"x": "DHLPaket"}, "keywords": ["dhl"], "tracking_formats": ["dhl"]},
            {"name": "Hermes", "handles": {"x": "HermesParcelDE"}, "keywords": ["hermes"], "tracking_formats": ["evri"]},
        ] if couriers else [],
    })


@pytest.fixture
def shop(store: Store, tmp_path: Path) -> Store:
    path = tmp_path / "bestellungen.csv"
    path.write_text(ORDERS, encoding="utf-8")
    report = import_orders(path, store, couriers=_config().couriers)
    assert not report.errors and report.stored == 5, report
    for customer_id, handle in (("K-3001", "lena_s"), ("K-3002", "oemer_y2"), ("K-3003", "ida_g2"),
                                ("K-3005", "grete_s")):
        customer = store.get_customer(customer_id)
        store.upsert_customer(customer.model_copy(update={"handles": {"x": handle}}))  # type: ignore[union-attr]
    return store


@pytest.mark.parametrize("couriers", [True, False], ids=["dhl+evri", "every format"])
@pytest.mark.parametrize(("text", "author", "order", "number"), [
    ("@GruenfinkHilfe Meine DHL Sendung 00340434161234567890 hängt seit Tagen im Paketzentrum fest. Wo ist sie?",
     "lena_s", "100251", NVE),
    ("@GruenfinkHilfe Sendungsnummer 0034 0434 1612 3456 7890, seit Montag keine Bewegung", "lena_s", "100251", NVE),
    ("@GruenfinkHilfe DHL Sendungsnummer 1234 5678 9012 – nichts bewegt sich seit Montag!", "oemer_y2", "100252", PAKET),
    ("@GruenfinkHilfe Paket 123456789012 kommt nicht an", "oemer_y2", "100252", PAKET),
    ("@GruenfinkHilfe Sendung 1234 5678 9012 2 Pakete, keins da", "oemer_y2", "100252", PAKET),
    ("@GruenfinkHilfe Hermes Sendung 12345678901234 angeblich zugestellt, ist aber nicht da.", "ida_g2", "100253",
     HERMES),
    ("@GruenfinkHilfe Hermes-Sendungsnr.: 1234 5678 9012 34 – Zustellversuch erfolglos??", "ida_g2", "100253", HERMES),
    ("@GruenfinkHilfe DHL Sendung JJD000390007000123456 ist angeblich zugestellt", "someone", "100254",
     "JJD000390007000123456"),
])
def test_a_german_post_quoting_a_stored_parcel_number_links_its_order(shop, couriers, text, author, order, number):
    link = link_mention(mention("1", text, author_handle=author), shop, _config(couriers))
    assert (link.method, link.order_number, link.tracking_number) == ("tracking_number", order, number)
    assert link.confirmed is (author != "someone")
    assert link.unmatched_numbers == []


def test_the_case_gets_its_order_parcel_and_courier(shop):
    """The audit's repro: the case had no order, no parcel and no tracking timeline (link_method none)."""
    Pipeline(shop, _config(), KeywordClassifier()).ingest([
        mention("t1", "@GruenfinkHilfe Meine DHL Sendung 00340434161234567890 hängt seit Tagen im Paketzentrum "
                      "fest. Wo ist sie?", author_handle="lena_s"),
        mention("t3", "@GruenfinkHilfe Hermes Sendung 12345678901234 angeblich zugestellt, ist aber nicht da.",
                author_handle="ida_g2", minutes=2),
    ])
    cases = {c.order_number: c for c in shop.inbox()}
    assert set(cases) == {"100251", "100253"}
    assert (cases["100251"].tracking_number, cases["100251"].courier, cases["100251"].link_method,
            cases["100251"].link_confirmed) == (NVE, "DHL", "tracking_number", True)
    assert (cases["100253"].tracking_number, cases["100253"].courier) == (HERMES, "Hermes")


@pytest.mark.parametrize("text", [
    "@GruenfinkHilfe Paket nicht da, bitte ruft mich an: 0171 1234567",
    "@GruenfinkHilfe Paket nicht da, bitte ruft mich an: 015112345678",
    "@GruenfinkHilfe Bestellnummer 202612070001, das Paket ist nie gekommen",
    "@GruenfinkHilfe Sendung 00123456789012345678 fehlt",
    "@GruenfinkHilfe Sendung 1234 5678 9012 3456 7890 fehlt",
    "@GruenfinkHilfe Hermes Sendung 98765432109876 fehlt, Tel. 0049 171 1234567",
])
def test_a_digit_run_that_names_no_stored_parcel_links_nothing_and_is_not_reported(shop, text):
    """A phone number, an order number the shop's patterns do not cover (the order exists), a random
    20-digit run, the first twelve digits of one (a stored parcel's number): no link, and nothing for
    the agent to chase as "tracking number: no such parcel"."""
    link = link_mention(mention("1", text, author_handle="nobody"), shop, _config())
    assert (link.method, link.order_number, link.tracking_number) == ("none", None, None)
    assert link.unmatched_numbers == []
    assert find_numbers(text, _config()).tracking_numbers == []


def test_a_phone_and_an_order_number_in_the_same_post_do_not_become_the_parcel(shop):
    text = ("@GruenfinkHilfe Bestellnummer 202612070001: die DHL Sendung 1234 5678 9012 ist seit Montag im "
            "Paketzentrum. Erreichbar unter 0152 99988870 oder 015299988870")
    link = link_mention(mention("1", text, author_handle="oemer_y2"), shop, _config())
    assert (link.method, link.order_number, link.tracking_number, link.confirmed) == (
        "tracking_number", "100252", PAKET, True)
    assert link.unmatched_numbers == []


def test_an_order_number_the_shop_quotes_by_its_pattern_stays_an_order_number(shop):
    """A number the order patterns take is an order number, never also looked up as a parcel."""
    config = _config(order_patterns=[r"\b(2026\d{8})\b"])
    evidence = find_numbers("@GruenfinkHilfe Bestellung 202612070001 fehlt", config)
    assert (evidence.order_numbers, evidence.tracking_numbers, evidence.possible_tracking_numbers) == (
        ["202612070001"], [], [])
    link = link_mention(mention("1", "@GruenfinkHilfe Bestellung 202612070001 fehlt", author_handle="grete_s"),
                        shop, config)
    assert (link.method, link.order_number, link.confirmed) == ("order_number", "202612070001", True)


def test_a_shop_without_dhl_or_evri_does_not_look_their_numbers_up(shop, config):
    """The shared UK test shop (UPS and Royal Mail) names neither courier."""
    link = link_mention(mention("1", f"Sendung {NVE} wo?", author_handle="lena_s"), shop, config)
    assert link.method != "tracking_number" and link.tracking_number is None


def test_how_the_numbers_are_read():
    from doorstep.numbers import find_possible_tracking_numbers, find_tracking_numbers, is_valid_tracking_number

    assert [(t.format, t.courier, t.number) for t in find_possible_tracking_numbers(
        "DHL 0034 0434 1612 3456 7890, alt 1234 5678 9012, Hermes 12345678901234, Tel. +49 171 123456789")] == [
        ("dhl", "DHL", NVE), ("dhl", "DHL", PAKET), ("evri", "Hermes", HERMES)]
    assert [t.number for t in find_possible_tracking_numbers(f"{NVE} {HERMES}", ["dhl"])] == [NVE]
    assert [t.number for t in find_possible_tracking_numbers(f"{NVE} {HERMES}", ["evri"])] == [HERMES]
    assert find_possible_tracking_numbers(f"{NVE} {HERMES}", ["ups", "dpd"]) == []
    # A 20-digit NVE starts 00; the label's number is read whole, not as a piece of a longer run.
    assert find_possible_tracking_numbers("12345678901234567890 und 0034 0434 1612 3456 7890 12", ["dhl"]) == []
    # A number of a checked format at that place is that number, not a piece of it.
    assert find_possible_tracking_numbers("Evri 1234 5678 9012 3456", ["evri"]) == []
    # Not tracking numbers on their own: nothing here says a digit run is one.
    assert find_tracking_numbers(f"{NVE} {PAKET} {HERMES}", ["dhl", "evri"]) == []
    assert not is_valid_tracking_number(NVE, "dhl") and not is_valid_tracking_number(HERMES, "evri")
