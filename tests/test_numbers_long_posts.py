"""Long posts full of numbers are read in time proportional to their length (code review: a post listing its
order numbers, "Hallo, hier meine offenen Bestellungen: 100251 100252 …", took 0.07 s at 740 characters, 0.52 s
at 1,440 and 3.2 s at 2,840, so one post at the import limit of 25,000 characters stalled an import or the live
pipeline for minutes; "Sendung 12 12 12 …" took 4 s at 1,500 characters in the checked formats' scan).

The scan tried every stretch of a run of digit groups (each group i with each group j after it, joining the
stretch between). No number is longer than 34 digits, so only stretches up to that are read now. What it reads
must not change: the tests here compare the scan with the exhaustive one it replaced (kept below as the
reference) on random posts, and a long post with the sum of its parts. No wall-clock time is asserted; the
figures are in bench/numbers_bench.py and bench/RESULTS.md.
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

import pytest

from doorstep import numbers
from doorstep.numbers import (
    TRACKING_FORMATS,
    TrackingNumber,
    find_invalid_tracking_candidates,
    find_possible_tracking_numbers,
    find_tracking_numbers,
    make_tracking_number,
)

_Candidate = numbers._Candidate


# --- the exhaustive scan, as it was before (the reference) ------------------------------------------------


def _exhaustive_digit_candidates(masked: str) -> Iterator[_Candidate]:
    """doorstep.numbers._digit_candidates at 7d44ce9: every stretch of every run, longest first."""
    for run in numbers._DIGIT_RUN.finditer(masked):
        chunks = [(m.start() + run.start(), m.group()) for m in re.finditer(r"[0-9]+", run.group())]
        i = 0
        while i < len(chunks):
            for j in range(len(chunks) - 1, i - 1, -1):
                part = chunks[i : j + 1]
                compact = "".join(c for _, c in part)
                lengths = [len(c) for _, c in part]
                if numbers._looks_like_payment_card(compact) and numbers._grouping_ok("evri", lengths):
                    i = j + 1
                    break
                readings = [
                    (fmt, r)
                    for fmt in numbers._DIGIT_FORMATS
                    if numbers._grouping_ok(fmt, lengths) and (r := numbers._read(fmt, compact)) is not None
                ]
                if readings:
                    start, end = part[0][0], part[-1][0] + len(part[-1][1])
                    valid = [(fmt, r) for fmt, r in readings if r[1]]
                    for fmt, (number, ok) in valid or readings:
                        yield _Candidate(fmt, number, ok, start, end)
                    i = j + 1
                    break
            else:
                i += 1


def _exhaustive_whole_runs(masked: str, formats: Sequence[str]) -> Iterator[_Candidate]:
    """doorstep.numbers._whole_runs at 7d44ce9: every stretch of every run, longest first."""
    typed = numbers._typed_in_chunks
    for run in numbers._DIGIT_RUN.finditer(masked):
        chunks = [(m.start() + run.start(), m.group()) for m in re.finditer(r"[0-9]+", run.group())]
        sizes = [len(c) for _, c in chunks]
        i = 0
        while i < len(chunks):
            for j in range(len(chunks) - 1, i - 1, -1):
                lengths = sizes[i : j + 1]
                if len(lengths) > 1 and not typed(lengths):
                    continue
                if (i > 0 and typed([sizes[i - 1], *lengths])) or (j + 1 < len(chunks) and typed([*lengths, sizes[j + 1]])):
                    continue
                compact = "".join(c for _, c in chunks[i : j + 1])
                readings = [(fmt, r) for fmt in formats if (r := numbers._read(fmt, compact)) is not None]
                if readings:
                    start, end = chunks[i][0], chunks[j][0] + len(chunks[j][1])
                    for fmt, (number, _) in readings:
                        yield _Candidate(fmt, number, True, start, end)
                    i = j
                    break
            i += 1


Reading = tuple[list[TrackingNumber], list[str], list[TrackingNumber]]
FORMAT_CHOICES: list[list[str] | None] = [None, ["dhl"], ["evri"], ["dhl", "evri"], ["usps", "fedex", "dpd"]]


def _read_all(text: str, formats: list[str] | None) -> Reading:
    return (find_tracking_numbers(text, formats), find_invalid_tracking_candidates(text, formats),
            find_possible_tracking_numbers(text, formats))


# --- random posts --------------------------------------------------------------------------------------------

_WORDS = ["Sendung", "Bestellung", "und", "offene Bestellungen:", "Tel.", "€", ",", ".", "1,50", "+49 171 2223334",
          "order", "x", "(", ")", "\n", "#100251", "3.50", "12%", "2-3"]


def _digits(rng: random.Random, n: int) -> str:
    prefix = rng.choice(["", "", "", "00", "420", "91", "96", "0034"])[:n]
    return prefix + "".join(rng.choice("0123456789") for _ in range(n - len(prefix)))


def _card(rng: random.Random) -> str:
    """16 digits starting 4 that pass Luhn: a payment card's shape."""
    body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
    for last in "0123456789":
        if numbers._luhn_ok(body + last):
            return body + last
    raise AssertionError("no Luhn digit")


def _in_chunks(rng: random.Random, number: str) -> str:
    """``number`` unspaced, in fours, or as a DHL waybill is printed."""
    style = rng.random()
    if style < 0.4:
        return number
    if style < 0.5 and len(number) == 10:
        return f"{number[:2]} {number[2:6]} {number[6:]}"
    return " ".join(number[k : k + 4] for k in range(0, len(number), 4))


def _random_post(rng: random.Random) -> str:
    """A short post of digit groups, numbers of each format, card numbers and words, mostly one space apart so
    that runs of groups form across the pieces."""
    pieces: list[str] = []
    for _ in range(rng.randint(1, 7)):
        kind = rng.random()
        if kind < 0.3:
            pieces.append(" ".join(_digits(rng, rng.choice([1, 2, 2, 3, 4, 4, 4, 5, 6, 6, 8, 10, 12, 14, 16, 20, 22]))
                                   for _ in range(rng.randint(1, 25))))
        elif kind < 0.45:
            pieces.append(_in_chunks(rng, make_tracking_number(rng.choice(sorted(TRACKING_FORMATS)), rng)))
        elif kind < 0.5:  # USPS with its routing code: 420 + ZIP or ZIP+4, the longest numbers (30, 34 digits)
            pieces.append(_in_chunks(rng, "420" + _digits(rng, rng.choice([5, 9])) + make_tracking_number("usps", rng)))
        elif kind < 0.62:
            pieces.append(_in_chunks(rng, _digits(rng, rng.choice([12, 14, 20]))))
        elif kind < 0.68:
            pieces.append(_in_chunks(rng, _card(rng)))
        else:
            pieces.append(rng.choice(_WORDS))
    return "".join(piece + rng.choice([" ", " ", " ", "  ", ", "]) for piece in pieces).strip()


def test_random_posts_read_as_the_exhaustive_scan_read_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the scan finds is what trying every stretch found: the same numbers, formats, validity and spans."""
    rng = random.Random(20261205)
    posts = [_random_post(rng) for _ in range(400)]
    found = 0
    for formats in FORMAT_CHOICES[:3]:  # every checked format, and each looked-up one with only its own checked
        now = [_read_all(post, formats) for post in posts]
        with monkeypatch.context() as patched:
            patched.setattr(numbers, "_digit_candidates", _exhaustive_digit_candidates)
            patched.setattr(numbers, "_whole_runs", _exhaustive_whole_runs)
            before = [_read_all(post, formats) for post in posts]
        for post, a, b in zip(posts, now, before):
            assert a == b, f"{post!r} with formats {formats}"
        found += sum(bool(checked) + bool(wrong) + bool(possible) for checked, wrong, possible in now)
    assert found > 400  # the posts do hold numbers of every kind: the comparison is not of empty lists


# --- a long post is the sum of its parts ---------------------------------------------------------------------


def _part(k: int) -> str:
    """One customer's message: 40 order numbers, then parcel numbers of several couriers, some mistyped."""
    orders = " ".join(str(100251 + 40 * k + n) for n in range(40))
    return (f"Hallo, hier meine offenen Bestellungen: {orders}. DHL Sendung 0034 0434 {k:04d} 3456 7890, "
            f"Hermes 1234567890{k:04d}, Paket 1234 5678 {k:04d} 2 Pakete, UPS 1Z 999 AA1 01 2345 6784, "
            f"FedEx 7905 3531 2317, DPD 0123 4567 8901 {k:02d}, USPS 9400 1112 0108 0805 4830 1{k % 10}.")


def _shifted(found: list[TrackingNumber], offset: int) -> list[TrackingNumber]:
    return [TrackingNumber(t.format, t.courier, t.number, t.start + offset, t.end + offset) for t in found]


@pytest.mark.parametrize("formats", FORMAT_CHOICES)
def test_a_post_of_4000_groups_reads_as_the_sum_of_its_parts(formats: list[str] | None) -> None:
    parts = [_part(k) for k in range(100)]
    post = " ".join(parts)
    assert len(post.split()) > 4000 and len(post) > 25_000  # past the import limit
    checked: list[TrackingNumber] = []
    possible: list[TrackingNumber] = []
    wrong: dict[str, None] = {}
    offset = 0
    for part in parts:
        part_checked, part_wrong, part_possible = _read_all(part, formats)
        checked += _shifted(part_checked, offset)
        possible += _shifted(part_possible, offset)
        wrong.update(dict.fromkeys(part_wrong))
        offset += len(part) + 1
    assert _read_all(post, formats) == (checked, list(wrong), possible)
    assert checked or possible


def test_one_run_of_4000_order_numbers_holds_no_parcel_number() -> None:
    """Pieces of a list of order numbers are nobody's parcel number: two six-digit groups make twelve digits,
    but the groups beside them continue the list."""
    post = "Hallo, hier meine offenen Bestellungen: " + " ".join(str(100251 + n) for n in range(4000))
    assert find_possible_tracking_numbers(post, ["dhl", "evri"]) == []
    assert find_tracking_numbers(post, ["dhl", "evri", "dpd", "usps"]) == []


# --- the work grows with the post, not with its square -------------------------------------------------------


def _lines_run(read: Callable[[str], Any], text: str) -> int:
    """How many lines of doorstep/numbers.py run while ``read(text)`` reads it: the scan's loops, counted."""
    source = numbers.__file__
    count = 0

    def line(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return line

    def call(frame: FrameType, event: str, arg: object) -> Any:
        return line if frame.f_code.co_filename == source else None

    previous = sys.gettrace()
    sys.settrace(call)
    try:
        read(text)
    finally:
        sys.settrace(previous)
    return count


@pytest.mark.parametrize("group", ["100251", "12", "1234"], ids=["order numbers", "pairs", "fours"])
@pytest.mark.parametrize("read", [
    lambda text: find_possible_tracking_numbers(text, ["dhl", "evri"]),
    lambda text: find_tracking_numbers(text),
], ids=["possible", "checked"])
def test_four_times_the_groups_is_at_most_four_times_the_work(group: str, read: Callable[[str], Any]) -> None:
    """A post listing 60 numbers and one listing 240 (the reported posts, shorter): the scan's lines run grow by
    about four times (a little more: the last groups of a run have fewer stretches to try, a larger share of a
    short post), not sixteen (stretches i to j) or more; the scan before ran 41 to 52 times the lines."""
    def post(n: int) -> str:
        return "Hallo, hier meine offenen Bestellungen: " + " ".join([group] * n) + " Danke"

    short, long = _lines_run(read, post(60)), _lines_run(read, post(240))
    assert long <= 4.5 * short, f"{long} lines run for 240 groups, {short} for 60 ({long / short:.1f}×)"


def test_no_stretch_longer_than_the_longest_number_is_read() -> None:
    """The scan reads stretches up to :data:`doorstep.numbers._LONGEST_DIGITS` digits: no digit format (checked or
    looked up) takes a longer one, whatever it starts with."""
    for fmt in (*numbers._DIGIT_FORMATS, *numbers.LOOKED_UP_ONLY):
        for n in range(numbers._LONGEST_DIGITS + 1, numbers._LONGEST_DIGITS + 12):
            for prefix in ("", "00", "420", "4201002334", "91", "92", "96", "0034"):
                digits = (prefix + "1234567890" * 5)[:n]
                assert numbers._read(fmt, digits) is None, (fmt, digits)
    longest = "4201 0023 3424 9200 1901 3260 7600 8334 57"  # 34 digits: read, typed in chunks too
    assert [t.number for t in find_tracking_numbers(f"USPS {longest} bitte", ["usps"])] == ["9200190132607600833457"]


def test_the_longest_stretch_is_the_last_one_that_may_be_a_number() -> None:
    """:func:`doorstep.numbers._longest_stretch` against trying each stretch: the longest one, from each group,
    of at most 34 digits and typed in chunks (or the group alone)."""
    rng = random.Random(7)
    for _ in range(3000):
        sizes = [rng.choice([1, 2, 2, 3, 4, 4, 5, 6, 7, 10, 12, 20, 34, 35]) for _ in range(rng.randint(1, 20))]
        for first in range(len(sizes)):
            shaped = [j for j in range(first, len(sizes))
                      if sum(sizes[first : j + 1]) <= numbers._LONGEST_DIGITS
                      and (j == first or numbers._typed_in_chunks(sizes[first : j + 1]))]
            assert numbers._longest_stretch(sizes, first) == max(shaped, default=first - 1), (sizes, first)
