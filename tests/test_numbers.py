"""How doorstep.numbers reads order and tracking numbers out of posts.

The valid examples are published test numbers (UPS developer docs' 1Z999AA10123456784,
the UPU S10 standard's EE123456785US, and the example numbers collected in the MIT-licensed
jkeen/tracking_number_data repository), written the way customers type them.
"""

from __future__ import annotations

import random
import re

import pytest

from doorstep.numbers import (
    DEFAULT_ORDER_PATTERNS,
    TRACKING_FORMATS,
    TrackingNumber,
    find_invalid_tracking_candidates,
    find_order_numbers,
    find_tracking_numbers,
    is_valid_tracking_number,
    make_tracking_number,
)

# (format, as typed in the post, normalised number we expect back)
VALID_EXAMPLES: list[tuple[str, str, str]] = [
    ("ups", "1Z999AA10123456784", "1Z999AA10123456784"),
    ("ups", "1Z 999 AA1 01 2345 6784", "1Z999AA10123456784"),
    ("ups", "1z5r89390357567127", "1Z5R89390357567127"),
    ("ups", "1Z410E7W0392751591", "1Z410E7W0392751591"),
    ("usps", "9400 1112 0108 0805 4830 16", "9400111201080805483016"),
    ("usps", "9405803699300124287899", "9405803699300124287899"),
    ("usps", "9361 2898 7870 0317 6337 95", "9361289878700317633795"),
    ("usps", "92748931507708513018050063", "92748931507708513018050063"),
    ("usps", "0307 1790 0005 2348 3741", "03071790000523483741"),
    ("usps", "7196 9010 7560 0307 7385", "71969010756003077385"),  # IMpb printed without its "91"
    ("usps", "4201002334249200190132607600833457", "9200190132607600833457"),  # 420 + ZIP+4 routing dropped
    ("fedex", "986578788855", "986578788855"),
    ("fedex", "7905 3531 2317", "790535312317"),
    ("fedex", "0414 4176 0228 964", "041441760228964"),
    ("fedex", "5682 8361 0012 734", "568283610012734"),
    ("fedex", "9611020987654312345672", "987654312345672"),  # Ground barcode -> 15-digit number
    ("dhl", "3318810025", "3318810025"),
    ("dhl", "84 8713 5506", "8487135506"),
    ("dhl", "1099255990", "1099255990"),
    ("royal_mail", "RB123456785GB", "RB123456785GB"),
    ("royal_mail", "RB 1234 5678 5 GB", "RB123456785GB"),
    ("s10", "EE123456785US", "EE123456785US"),
    ("s10", "EE 123 456 785 US", "EE123456785US"),
    ("s10", "rb123456785cf", "RB123456785CF"),
]

# Formats with no check digit: recognised by shape alone.
FORMAT_ONLY_EXAMPLES: list[tuple[str, str, str]] = [
    ("dpd", "15501234567890", "15501234567890"),
    ("dpd", "1550 1234 5678 90", "15501234567890"),
    ("evri", "H00A0A0012345678", "H00A0A0012345678"),
    ("evri", "1234 5678 9012 3456", "1234567890123456"),
    ("dhl", "JJD0099999999", "JJD0099999999"),
    ("dhl", "JVGL0999999990", "JVGL0999999990"),
]


def in_a_post(number: str) -> str:
    return f"@LarkspurHelp hi, where is my parcel {number}? Ordered a week ago and nothing since"


def with_wrong_check_digit(typed: str, shift: int) -> str:
    """The same number with its check digit (the last digit typed) changed by ``shift``."""
    last = max(i for i, ch in enumerate(typed) if ch.isdigit())
    return typed[:last] + str((int(typed[last]) + shift) % 10) + typed[last + 1 :]


@pytest.mark.parametrize(("fmt", "typed", "number"), VALID_EXAMPLES + FORMAT_ONLY_EXAMPLES)
def test_a_valid_number_is_found_in_a_post(fmt: str, typed: str, number: str) -> None:
    text = in_a_post(typed)
    found = find_tracking_numbers(text)
    assert [(t.format, t.number) for t in found] == [(fmt, number)]
    assert text[found[0].start : found[0].end] == typed
    assert found[0].courier == TRACKING_FORMATS[fmt]
    assert is_valid_tracking_number(typed, fmt)
    assert find_invalid_tracking_candidates(text) == []


@pytest.mark.parametrize(("fmt", "typed", "number"), VALID_EXAMPLES)
@pytest.mark.parametrize("shift", [1, 5])
def test_a_wrong_check_digit_is_not_found_but_reported_as_looking_wrong(
    fmt: str, typed: str, number: str, shift: int
) -> None:
    typo = with_wrong_check_digit(typed, shift)
    text = in_a_post(typo)
    assert find_tracking_numbers(text) == []
    assert not is_valid_tracking_number(typo, fmt)
    wrong = find_invalid_tracking_candidates(text)
    assert len(wrong) == 1
    assert wrong[0] == with_wrong_check_digit(number, shift)


@pytest.mark.parametrize("fmt", sorted(TRACKING_FORMATS))
def test_every_format_has_a_known_valid_example(fmt: str) -> None:
    assert any(f == fmt for f, _, _ in VALID_EXAMPLES + FORMAT_ONLY_EXAMPLES)


@pytest.mark.parametrize("fmt", sorted(TRACKING_FORMATS))
def test_generated_numbers_are_valid_and_found(fmt: str) -> None:
    numbers = [make_tracking_number(fmt, random.Random(seed)) for seed in range(200)]
    assert len(set(numbers)) > 190, "the generator should not repeat itself"
    for number in numbers:
        assert is_valid_tracking_number(number, fmt), number
        found = find_tracking_numbers(in_a_post(number))
        assert [(t.format, t.number) for t in found] == [(fmt, number)]


def test_generated_royal_mail_numbers_end_in_gb_and_s10_numbers_do_not() -> None:
    rng = random.Random(7)
    assert all(make_tracking_number("royal_mail", rng).endswith("GB") for _ in range(50))
    assert not any(make_tracking_number("s10", rng).endswith("GB") for _ in range(200))


def test_unknown_format_is_refused_with_the_known_ones_listed() -> None:
    with pytest.raises(ValueError, match="'parcelforce'.*ups"):
        find_tracking_numbers("1Z999AA10123456784", ["parcelforce"])
    with pytest.raises(ValueError, match="'parcelforce'"):
        is_valid_tracking_number("1Z999AA10123456784", "parcelforce")
    with pytest.raises(ValueError, match="'parcelforce'"):
        make_tracking_number("parcelforce", random.Random(1))


# --- several numbers, and choosing formats -----------------------------------------


def test_several_numbers_in_one_post_come_back_in_text_order() -> None:
    text = "Two parcels: DHL 3318810025 and UPS 1Z 999 AA1 01 2345 6784, plus RB123456785GB for order #48213"
    found = find_tracking_numbers(text)
    assert [(t.format, t.number) for t in found] == [
        ("dhl", "3318810025"),
        ("ups", "1Z999AA10123456784"),
        ("royal_mail", "RB123456785GB"),
    ]
    assert [text[t.start : t.end] for t in found] == ["3318810025", "1Z 999 AA1 01 2345 6784", "RB123456785GB"]
    assert find_order_numbers(text) == ["48213"]


def test_two_waybills_side_by_side_are_two_numbers() -> None:
    found = find_tracking_numbers("both stuck: 3318810025 8487135506")
    assert [t.number for t in found] == ["3318810025", "8487135506"]


def test_formats_limit_what_is_reported() -> None:
    text = "UPS 1Z999AA10123456784, DHL 3318810025, typo 3318810010"
    assert [t.format for t in find_tracking_numbers(text, ["dhl"])] == ["dhl"]
    assert find_invalid_tracking_candidates(text, ["ups"]) == []
    assert find_invalid_tracking_candidates(text, {"dhl"}) == ["3318810010"]


def test_a_british_s10_number_is_royal_mail_unless_only_s10_is_asked_for() -> None:
    text = in_a_post("RB123456785GB")
    assert [t.format for t in find_tracking_numbers(text)] == ["royal_mail"]
    assert [(t.format, t.courier) for t in find_tracking_numbers(text, ["s10"])] == [
        ("s10", TRACKING_FORMATS["s10"])
    ]
    assert is_valid_tracking_number("RB123456785GB", "s10")
    assert not is_valid_tracking_number("EE123456785US", "royal_mail")


def test_a_usps_typo_is_not_half_read_as_another_courier() -> None:
    typo = in_a_post("9400 1112 0108 0805 4830 17")
    assert find_tracking_numbers(typo) == []
    assert find_invalid_tracking_candidates(typo) == ["9400111201080805483017"]


def test_the_same_typo_twice_is_reported_once() -> None:
    assert find_invalid_tracking_candidates("3318810010 or was it 3318810010") == ["3318810010"]


def test_tracking_number_is_a_frozen_record() -> None:
    number = find_tracking_numbers("1Z999AA10123456784")[0]
    assert number == TrackingNumber("ups", "UPS", "1Z999AA10123456784", 0, 18)
    with pytest.raises(AttributeError):
        number.number = "x"  # type: ignore[misc]


# --- things that are not tracking numbers --------------------------------------------

NOT_TRACKING: list[tuple[str, str]] = [
    ("plain words", "Still waiting for my delivery, this is the worst service ever"),
    ("UK phone", "call me back on +44 7700 900123 please"),
    ("phone without spaces", "call me back on +447700900123 please"),
    ("US phone", "ring +1 (555) 123-4567 or 555 123 4567"),
    ("French phone in pairs", "mon numéro 06 12 34 56 78"),
    ("international dialling prefix", "tel 00447700900123"),
    ("price", "I paid £1234567890 for this?!"),
    ("dollar price with pence", "refund $1234567890.00 now"),
    ("decimal", "weighs 1234567890.5 grams"),
    ("digits after a decimal point", "ratio 0.3318810025"),
    ("a valid FedEx number read out in pairs", "code 79 05 35 31 23 17"),
    ("waybill glued to longer digits", "ref 33188100255"),
    ("waybill glued to letters", "ref AB3318810025 and 3318810025x"),
    ("tweet link", "see https://x.com/someone/status/3318810025"),
    ("query string", "https://example.com/track?id=3318810025"),
    ("dashed identifiers", "order 123-1234567-1234567 and ORD-2026-000123"),
    ("words in capitals around digits", "WHERE IS 123 456 785 OK"),
    ("card number", "my card 4111 1111 1111 1111 was charged twice"),
    ("card number unspaced", "my card 4111111111111111 was charged twice"),
    ("capital words", "HELLOWORLDTHISIS parcel"),
    ("UPS prefix running into words", "1Z 12345 in transit now ok"),
    ("one digit at a time", "3 3 1 8 8 1 0 0 2 5"),
]


@pytest.mark.parametrize(("why", "text"), NOT_TRACKING, ids=[why for why, _ in NOT_TRACKING])
def test_not_a_tracking_number(why: str, text: str) -> None:
    assert find_tracking_numbers(text) == []
    assert find_invalid_tracking_candidates(text) == []


@pytest.mark.parametrize(
    ("fmt", "near_miss"),
    [
        ("dpd", "1550123456789"),  # 13 digits
        ("dpd", "00501234567890"),  # starts like a dialling prefix
        ("evri", "H00A0A001234567"),  # 15 characters
        ("evri", "HABCDEFGHIJ12345"),  # too few digits to be a parcel id
        ("evri", "4111111111111111"),  # a payment card (Luhn-valid, starts 4)
        ("dhl", "JJD00999999"),  # too short
    ],
)
def test_format_only_near_misses_are_ignored(fmt: str, near_miss: str) -> None:
    assert not is_valid_tracking_number(near_miss, fmt)
    assert find_tracking_numbers(in_a_post(near_miss)) == []
    assert find_invalid_tracking_candidates(in_a_post(near_miss)) == []


@pytest.mark.parametrize(
    ("number", "why"),
    [
        # weights 8 6 4 2 3 5 9 7 over the serial; check = 11 - sum % 11, then 10 -> 0 and 11 -> 5
        ("RR000000005GB", "sum 0: 11 - 0 = 11 -> 5"),
        ("RR000600000GB", "sum 6*2 = 12, 12 % 11 = 1: 11 - 1 = 10 -> 0"),
        ("EE123456785US", "sum 204, 204 % 11 = 6: 11 - 6 = 5"),
    ],
)
def test_s10_check_digit_special_cases(number: str, why: str) -> None:
    assert is_valid_tracking_number(number, "s10"), why
    for wrong in "0123456789".replace(number[10], ""):
        assert not is_valid_tracking_number(number[:10] + wrong + number[11:], "s10")


def test_an_unknown_country_code_is_not_an_s10_number() -> None:
    assert not is_valid_tracking_number("RB123456785XX", "s10")
    assert find_invalid_tracking_candidates(in_a_post("RB123456785XX")) == []


# --- order numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "orders"),
    [
        ("where is #1234??", ["1234"]),
        ("order #12345678 still not here", ["12345678"]),
        ("my order 123-1234567-1234567 never came", ["123-1234567-1234567"]),
        ("ORD-2026-000123 is late", ["ORD-2026-000123"]),
        ("#4821 and ORD-2026-000123, also #4821 again", ["4821", "ORD-2026-000123"]),
        ("ORD-2026-000123 then #4821", ["ORD-2026-000123", "4821"]),
        ("#123 is too short and #123456789 too long", []),
        ("no numbers here at all", []),
        ("call +44 7700 900123", []),
    ],
)
def test_order_numbers(text: str, orders: list[str]) -> None:
    assert find_order_numbers(text) == orders


def test_custom_order_pattern_without_a_group_returns_the_whole_match() -> None:
    assert find_order_numbers("it's LK-88812 and LK-88812", [r"\bLK-\d{5}\b"]) == ["LK-88812"]
    assert find_order_numbers("it's LK-88812", [r"\bLK-(\d{5})\b"]) == ["88812"]


def test_a_broken_order_pattern_is_named_in_the_error() -> None:
    broken = r"#(\d{4"
    with pytest.raises(ValueError, match=re.escape(f"order pattern {broken!r}")):
        find_order_numbers("#1234", [broken])


def test_default_order_patterns_match_the_configuration_defaults() -> None:
    from doorstep.config import DEFAULT_ORDER_PATTERNS as CONFIG_DEFAULTS

    assert DEFAULT_ORDER_PATTERNS == CONFIG_DEFAULTS


def test_a_span_can_be_both_an_order_and_a_tracking_number_and_the_linker_decides() -> None:
    text = "#7905 3531 2317"
    assert find_order_numbers(text) == ["7905"]
    assert [t.number for t in find_tracking_numbers(text)] == ["790535312317"]
