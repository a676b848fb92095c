"""Order numbers and courier tracking numbers, as customers type them in posts.

A tracking number is the strongest evidence the linker has: it names one parcel.
But a post is full of other numbers (phones, prices, tweet ids, quantities), so a
string counts as a tracking number only when it has a format's exact shape, stands
on its own (no letters or digits glued to either side, not part of a price, a
decimal, a URL parameter or an international phone number) and, where the format
has one, passes its check digit. A string that has the shape but fails the check
is most likely a typo; :func:`find_invalid_tracking_candidates` returns those so
the console can say "number looks wrong" instead of silently ignoring them.

Check digits (each verified in tests against published example numbers):

- ``ups``: ``1Z`` + 15 characters + check digit. Letters count as ``(ord - 63) % 10``
  (A=2, B=3, ...); digits at odd positions of the 15 are doubled; check = ``-sum mod 10``.
- ``usps`` (IMpb): 20, 22 or 26 digits (22 and 26 start 91-95); GS1 mod 10 (weights
  3, 1, 3, ... from the right of the payload). A 20-digit number is accepted when it
  checks as printed (legacy labels) or with the ``91`` application identifier that
  20-digit IMpb renderings leave out put back in front. The ``420`` + ZIP (5 or 9 digits)
  routing prefix printed in front of the barcode is accepted and dropped: the
  number we return is the one USPS tracking takes.
- ``fedex``: 12-digit Express (weights 1, 3, 7 repeating from the right, sum mod 11
  mod 10); 15-digit Ground (GS1 mod 10); the 22-digit Ground barcode ``96`` + SCNC +
  service + 15-digit Ground number, returned as the 15-digit number.
  The 34-digit Express barcode and SmartPost (IMpb) numbers are not recognised.
- ``dhl``: 10-digit Express waybill, check digit = first nine digits mod 7. DHL
  eCommerce/Parcel piece ids (``JJD``/``JVGL`` + 9-20 digits, ``JD`` + 18 digits)
  have no published check and are matched by format only.
- ``royal_mail`` and ``s10``: UPU S10 (two letters, eight digits, check digit, ISO
  country code); weights 8, 6, 4, 2, 3, 5, 9, 7, check = 11 - sum mod 11 with 10 -> 0
  and 11 -> 5. A number ending ``GB`` is reported as ``royal_mail``, any other as
  ``s10`` (a ``GB`` number is also a valid ``s10``, and is reported as ``s10`` when
  only ``s10`` is asked for).
- ``dpd``: the 14-digit parcel number has no check digit of its own (the check
  character belongs to the 28-digit barcode), so it is matched by **format only**.
- ``evri`` (ex-Hermes UK): 16 characters, ``H`` + 15 letters/digits (at least eight
  digits) or 16 digits, **format only**.
- Looked up only (see below), under the format of the same courier: ``dhl`` also covers DHL Paket
  (Germany), 12 digits or the label's 20-digit NVE, ``00`` + 18 digits (``00340434…``); ``evri``
  also covers Hermes Germany (Evri was Hermes UK), 14 digits, reported with the courier ``Hermes``.

Format-only matches are weaker evidence: any 14- or 16-digit number has the shape.
Two guards keep obvious non-parcels out: numbers starting ``00`` (international
dialling prefix) are not DPD/Evri numbers, and a 16-digit number that passes the
Luhn check and starts 3-6 is taken to be a payment card and never reported (a
customer who posts a card number must not have it copied into a case).

People type long numbers in chunks (``1Z 999 AA1 01 2345 6784``, ``9400 1000 ...``).
Chunks are joined when they are separated by single spaces and are shaped like
typed chunks (2-6 digits, inner chunks at least 3) so that phone numbers such as
``06 12 34 56 78`` or ``555 123 4567`` are not glued into a parcel number. DHL
waybills are accepted unspaced or as printed (``12 3456 7890``); DPD and Evri digit
numbers unspaced or in fours. Within one run of chunks the longest stretch that has
some format's shape wins, valid or not, so a mistyped 22-digit USPS number is
reported as looking wrong rather than half of it being taken for a FedEx number.

Looked-up-only numbers (:data:`LOOKED_UP_ONLY`): a German parcel number is a bare run of 12, 14 or 20
digits with no check digit we can count on, the shape of a phone number (``015112345678``), of an order
number the shop's patterns do not cover, of a bank or customer number. Such a run is no evidence until
the shop holds a shipment with that very number, so :func:`find_tracking_numbers` never reports it (nor
does :func:`is_valid_tracking_number` call it valid); :func:`find_possible_tracking_numbers` gives it for
the linker to look up, which links it to a stored shipment or forgets it (never "no such parcel"). Only a
run as written counts (unspaced, or in chunks as people type them: ``1234 5678 9012``,
``0034 0434 1612 3456 7890``), never a piece of a longer run: the first twelve digits of
``1234 5678 9012 3456 7890`` are nobody's parcel.

Order numbers and tracking numbers are found independently: a span can match an
order pattern and a tracking format at once (e.g. ``#1234 5678 9012``).
:func:`find_tracking_numbers` still reports it; the linker decides (it drops
tracking numbers that are also order numbers).
"""

from __future__ import annotations

import random
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "DEFAULT_ORDER_PATTERNS",
    "LOOKED_UP_ONLY",
    "TRACKING_FORMATS",
    "TrackingNumber",
    "find_invalid_tracking_candidates",
    "find_order_numbers",
    "find_possible_tracking_numbers",
    "find_tracking_numbers",
    "is_valid_tracking_number",
    "make_tracking_number",
    "normalise_tracking_number",
]

#: Format key -> the courier name agents see.
TRACKING_FORMATS: dict[str, str] = {
    "ups": "UPS",
    "usps": "USPS",
    "fedex": "FedEx",
    "dhl": "DHL",
    "royal_mail": "Royal Mail",
    "dpd": "DPD",
    "evri": "Evri",
    "s10": "International post (S10)",
}

#: Numbers whose shape alone is no evidence (a bare run of digits, no check digit): one is looked up among
#: the stored shipments and is nothing if none has it. Shape -> (the format that covers it, the courier
#: agents see). A shop names DHL's formats ``dhl`` and Hermes's ``evri`` (Evri was Hermes UK), as the audited
#: German shop did: no new name to learn, and a looked-up number links only to a parcel the shop stored.
LOOKED_UP_ONLY: dict[str, tuple[str, str]] = {"dhl_paket": ("dhl", "DHL"), "hermes": ("evri", "Hermes")}

#: '#1234' (4-8 digits, returned without '#'), 'ORD-2026-000123', Amazon '123-1234567-1234567'.
#: Kept identical to doorstep.config.DEFAULT_ORDER_PATTERNS.
DEFAULT_ORDER_PATTERNS: list[str] = [r"#(\d{4,8})\b", r"\b(ORD-\d{4}-\d{6})\b", r"\b(\d{3}-\d{7}-\d{7})\b"]

#: ISO 3166-1 alpha-2 codes: the last two letters of an S10 number name the posting country.
_COUNTRIES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
    BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
    EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
    HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
    LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
    NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
    TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()
)

_DIGITS = "0123456789"
_ALNUM = _DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class TrackingNumber:
    """A tracking number found in a post, with where it was so the console can highlight it."""

    format: str
    courier: str
    number: str
    start: int
    end: int


# --- check digits -------------------------------------------------------------------


def _ups_check(payload: str) -> int:
    total = 0
    for i, char in enumerate(payload):
        value = int(char) if char.isdigit() else (ord(char) - 63) % 10
        total += value * 2 if i % 2 else value
    return (10 - total % 10) % 10


def _gs1_check(payload: str) -> int:
    """GS1 / USPS 'mod 10': weight 3 on the digit next to the check digit, then 1, 3, ..."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(payload)))
    return (10 - total % 10) % 10


def _fedex_express_check(payload: str) -> int:
    weights = (1, 3, 7)
    total = sum(int(d) * weights[i % 3] for i, d in enumerate(reversed(payload)))
    return total % 11 % 10


def _dhl_check(payload: str) -> int:
    return int(payload) % 7


def _s10_check(serial: str) -> int:
    total = sum(int(d) * w for d, w in zip(serial, (8, 6, 4, 2, 3, 5, 9, 7)))
    check = 11 - total % 11
    return {10: 0, 11: 5}.get(check, check)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        value = int(d) * (2 if i % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _looks_like_payment_card(digits: str) -> bool:
    """16 digits starting 3-6 that pass Luhn: Visa/Mastercard/Discover-shaped, never a parcel."""
    return len(digits) == 16 and digits.isdigit() and digits[0] in "3456" and _luhn_ok(digits)


# --- reading one compact string as a given format -------------------------------------

_UPS_RE = re.compile(r"1Z[A-Z0-9]{15}[0-9]")
_S10_RE = re.compile(r"[A-Z]{2}[0-9]{9}[A-Z]{2}")
_DHL_ID_RE = re.compile(r"(?:JJD|JVGL)[0-9]{9,20}|JD[0-9]{18}")
_EVRI_ID_RE = re.compile(r"H[A-Z0-9]{15}")
_USPS_PREFIX = ("91", "92", "93", "94", "95")


def _checked(number: str, check: int) -> tuple[str, bool]:
    return number, number[-1] == str(check)


def _read_usps(compact: str) -> tuple[str, bool] | None:
    n = len(compact)
    if n == 20:
        # Either a legacy 20-digit label, or an IMpb number printed without its leading "91".
        valid = compact[-1] in (str(_gs1_check(compact[:-1])), str(_gs1_check("91" + compact[:-1])))
        return compact, valid
    if n in (22, 26) and compact.startswith(_USPS_PREFIX):
        return _checked(compact, _gs1_check(compact[:-1]))
    if compact.startswith("420") and n in (30, 34):
        # Routing code 420 + ZIP (5) or ZIP+4 (9) in front of a 22- or 26-digit IMpb number.
        tails = [compact[8:]] if n == 30 else [compact[12:], compact[8:]]
        readings = [_checked(t, _gs1_check(t[:-1])) for t in tails if t.startswith(_USPS_PREFIX)]
        if readings:
            return next((r for r in readings if r[1]), readings[0])
    return None


def _read(fmt: str, compact: str) -> tuple[str, bool] | None:
    """``(number, passes_check)`` when ``compact`` has the shape of ``fmt``, else None."""
    if fmt == "ups":
        return _checked(compact, _ups_check(compact[2:17])) if _UPS_RE.fullmatch(compact) else None
    if fmt in ("royal_mail", "s10"):
        if not _S10_RE.fullmatch(compact) or compact[-2:] not in _COUNTRIES:
            return None
        if fmt == "royal_mail" and not compact.endswith("GB"):
            return None
        return compact, compact[10] == str(_s10_check(compact[2:10]))
    if not compact.isascii():
        return None
    if fmt == "usps":
        return _read_usps(compact) if compact.isdigit() else None
    if fmt == "fedex":
        if not compact.isdigit():
            return None
        if len(compact) == 12:
            return _checked(compact, _fedex_express_check(compact[:-1]))
        if len(compact) == 15:
            return _checked(compact, _gs1_check(compact[:-1]))
        if len(compact) == 22 and compact.startswith("96"):
            number = compact[7:]
            return _checked(number, _gs1_check(number[:-1]))
        return None
    if fmt == "dhl":
        if compact.isdigit() and len(compact) == 10:
            return _checked(compact, _dhl_check(compact[:-1]))
        return (compact, True) if _DHL_ID_RE.fullmatch(compact) else None
    if fmt == "dpd":
        return (compact, True) if compact.isdigit() and len(compact) == 14 and not compact.startswith("00") else None
    if fmt == "evri":
        if compact.isdigit() and len(compact) == 16:
            if compact.startswith("00") or _looks_like_payment_card(compact):
                return None
            return compact, True
        if _EVRI_ID_RE.fullmatch(compact) and sum(c.isdigit() for c in compact) >= 8:
            return compact, True
        return None
    if fmt == "dhl_paket":
        if compact.isdigit() and (len(compact) == 12 or (len(compact) == 20 and compact.startswith("00"))):
            return compact, True
        return None
    if fmt == "hermes":
        return (compact, True) if compact.isdigit() and len(compact) == 14 else None
    raise ValueError(f"unknown tracking format {fmt!r}; known formats: {', '.join(TRACKING_FORMATS)}")


def normalise_tracking_number(number: str) -> str:
    """A tracking number as couriers and the linker write it: no spaces or dashes, capitals.

    Shops paste numbers from labels and e-mails ("1Z 999 AA1 01 2345 6784", "ab123456785gb");
    posts are read this way too, so a number stored like this is found whatever way it was typed.
    """
    return re.sub(r"[\s-]", "", number).upper()


_normalise = normalise_tracking_number


def _check_formats(formats: Iterable[str] | None) -> frozenset[str]:
    if formats is None:
        return frozenset(TRACKING_FORMATS)
    wanted = frozenset(formats)
    unknown = sorted(wanted - TRACKING_FORMATS.keys())
    if unknown:
        raise ValueError(
            f"unknown tracking format(s) {', '.join(map(repr, unknown))}; known formats: {', '.join(TRACKING_FORMATS)}"
        )
    return wanted


def is_valid_tracking_number(number: str, format: str) -> bool:
    """True when ``number`` (spaces and dashes allowed) is a well-formed ``format`` number."""
    if format not in TRACKING_FORMATS:
        raise ValueError(f"unknown tracking format {format!r}; known formats: {', '.join(TRACKING_FORMATS)}")
    reading = _read(format, _normalise(number))
    return reading is not None and reading[1]


# --- scanning text ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    format: str
    number: str
    valid: bool
    start: int
    end: int


_SEP = "[ -]"
_NOT_GLUED_BEFORE = r"(?<![A-Za-z0-9])"
_NOT_GLUED_AFTER = r"(?![A-Za-z0-9])"
# Formats that carry letters are distinctive enough to allow a space or dash between any
# two characters (UPS, S10); the others are matched unspaced. Each entry: the shape, the
# formats it may be, and whether separators are allowed.
_LETTER_SHAPES: list[tuple[re.Pattern[str], tuple[str, ...], bool]] = [
    (re.compile(rf"{_NOT_GLUED_BEFORE}1Z(?:{_SEP}?[A-Z0-9]){{15}}{_SEP}?[0-9]{_NOT_GLUED_AFTER}", re.I), ("ups",), True),
    (
        re.compile(rf"{_NOT_GLUED_BEFORE}[A-Z]{{2}}{_SEP}?[0-9](?:{_SEP}?[0-9]){{8}}{_SEP}?[A-Z]{{2}}{_NOT_GLUED_AFTER}", re.I),
        ("royal_mail", "s10"),
        True,
    ),
    (re.compile(rf"{_NOT_GLUED_BEFORE}(?:JJD[0-9]{{9,20}}|JVGL[0-9]{{9,20}}|JD[0-9]{{18}}){_NOT_GLUED_AFTER}", re.I), ("dhl",), False),
    (re.compile(rf"{_NOT_GLUED_BEFORE}H[A-Z0-9]{{15}}{_NOT_GLUED_AFTER}", re.I), ("evri",), False),
]


def _spaced_words(raw: str) -> bool:
    """True for a spaced-out match whose letter-only chunks are not capitals.

    "IS 123 456 785 OK" or "rb 123 456 785 gb" are words around digits, not a code;
    a code typed in lower case is only trusted when it is typed in one piece.
    """
    chunks = re.split(_SEP, raw)
    return len(chunks) > 1 and any(c != c.upper() for c in chunks if not any(ch.isdigit() for ch in c))

# A run of digit chunks separated by single spaces, not part of a word, a price, a decimal
# number, a URL/query value, an international phone number or a dashed identifier.
_DIGIT_RUN = re.compile(r"(?<![\w+£$€¥@/=&%\-])(?<![0-9][.,])[0-9]+(?: [0-9]+)*(?!\w)(?![.,][0-9])(?!-[0-9])(?!%)")
# "+44 7700 900123", "+1 (555) 123-4567": masked before digit runs are read.
_PHONE = re.compile(r"(?<![\w+])\+[0-9]{1,3}(?:[ .\-]?\(?[0-9]+\)?(?![A-Za-z])){1,6}")
_DIGIT_FORMATS = ("usps", "fedex", "dhl", "dpd", "evri")


def _typed_in_chunks(lengths: Sequence[int]) -> bool:
    return all(2 <= n <= 6 for n in lengths) and all(n >= 3 for n in lengths[1:-1])


def _grouping_ok(fmt: str, lengths: Sequence[int]) -> bool:
    """Whether digits chunked like ``lengths`` are how people write a ``fmt`` number."""
    if len(lengths) == 1:
        return True
    if fmt == "dhl":
        return list(lengths) == [2, 4, 4]
    if fmt in ("dpd", "evri"):
        return all(n == 4 for n in lengths[:-1]) and 2 <= lengths[-1] <= 4
    return _typed_in_chunks(lengths)


def _letter_candidates(masked: list[str]) -> Iterator[_Candidate]:
    for pattern, formats, spaced in _LETTER_SHAPES:
        for match in pattern.finditer("".join(masked)):
            raw = match.group()
            if spaced and _spaced_words(raw):
                continue
            compact = _normalise(raw)
            readings = [(fmt, _read(fmt, compact)) for fmt in formats]
            found = [(fmt, r) for fmt, r in readings if r is not None]
            if not found:
                continue
            fmt, (number, valid) = found[0]
            masked[match.start() : match.end()] = "_" * (match.end() - match.start())
            yield _Candidate(fmt, number, valid, match.start(), match.end())


#: The most digits a number read out of a run of digit groups has: USPS's 420 + ZIP+4 routing code in front
#: of a 22-digit number (the others: FedEx 12, 15 or 22, DHL Paket 12 or 20, DPD and Hermes 14, Evri and a
#: payment card 16, DHL Express 10). Why it matters: the scans try stretches of a run, and a post listing its
#: order numbers is one run of hundreds of groups; reading only stretches up to this long keeps a post's
#: reading in proportion to its length (every stretch, i to j, took minutes at 25,000 characters).
_LONGEST_DIGITS = 34


def _longest_stretch(sizes: Sequence[int], first: int) -> int:
    """The last group of the longest stretch from group ``first`` that may be a number: at most
    :data:`_LONGEST_DIGITS` digits, and typed in chunks (:func:`_typed_in_chunks`: 2-6 digits a group, the
    inner ones at least 3) unless it is group ``first`` alone. Every format's chunking, and a card's, is typed
    in chunks, and a shorter stretch of one typed in chunks is too: no stretch past this one is read.
    (``first - 1`` where group ``first`` alone holds more digits than any number.)"""
    if sizes[first] > _LONGEST_DIGITS:
        return first - 1
    if not 2 <= sizes[first] <= 6:
        return first
    last, total = first, sizes[first]
    for k in range(first + 1, len(sizes)):
        total += sizes[k]
        if total > _LONGEST_DIGITS or not 2 <= sizes[k] <= 6:
            break
        last = k  # groups first..k are typed in chunks
        if sizes[k] < 3:
            break  # group k cannot be an inner one: no longer stretch is typed in chunks
    return last


def _digit_candidates(masked: str) -> Iterator[_Candidate]:
    for run in _DIGIT_RUN.finditer(masked):
        chunks = [(m.start() + run.start(), m.group()) for m in re.finditer(r"[0-9]+", run.group())]
        sizes = [len(c) for _, c in chunks]
        i = 0
        while i < len(chunks):
            # Longest stretch first, as before; a longer one than _longest_stretch's is no number and not read.
            for j in range(_longest_stretch(sizes, i), i - 1, -1):
                lengths = sizes[i : j + 1]
                part = chunks[i : j + 1]
                compact = "".join(c for _, c in part)
                if _looks_like_payment_card(compact) and _grouping_ok("evri", lengths):
                    i = j + 1  # swallow the card number whole: none of its pieces is a parcel either
                    break
                readings = [
                    (fmt, r)
                    for fmt in _DIGIT_FORMATS
                    if _grouping_ok(fmt, lengths) and (r := _read(fmt, compact)) is not None
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


def _scan(text: str) -> tuple[list[_Candidate], str]:
    """The candidates of the checked formats, and ``text`` with phone numbers and letter-shaped numbers masked."""
    masked = list(text)
    for phone in _PHONE.finditer(text):
        masked[phone.start() : phone.end()] = "_" * (phone.end() - phone.start())
    found = list(_letter_candidates(masked))
    rest = "".join(masked)
    found.extend(_digit_candidates(rest))
    return sorted(found, key=lambda c: (c.start, c.end)), rest


def _candidates(text: str) -> list[_Candidate]:
    return _scan(text)[0]


def _whole_runs(masked: str, formats: Sequence[str]) -> Iterator[_Candidate]:
    """Stretches of a digit run shaped like one of ``formats`` that are a number on their own.

    Why not the longest shaped stretch, as for the checked formats: with no check digit, a stretch cut
    out of a longer number is a different number, and it may be a stored one. A stretch counts when it
    is typed in one piece or in chunks (``1234 5678 9012``) and the chunks beside it in the run would
    not continue its chunking: ``Sendung 1234 5678 9012 2 Pakete`` gives ``123456789012``;
    ``1234 5678 9012 3456 7890`` gives nothing."""
    for run in _DIGIT_RUN.finditer(masked):
        chunks = [(m.start() + run.start(), m.group()) for m in re.finditer(r"[0-9]+", run.group())]
        sizes = [len(c) for _, c in chunks]
        i = 0
        while i < len(chunks):
            for j in range(_longest_stretch(sizes, i), i - 1, -1):  # no longer stretch is a number
                lengths = sizes[i : j + 1]
                if len(lengths) > 1 and not _typed_in_chunks(lengths):
                    continue
                if (i > 0 and _typed_in_chunks([sizes[i - 1], *lengths])) or (
                        j + 1 < len(chunks) and _typed_in_chunks([*lengths, sizes[j + 1]])):
                    continue
                compact = "".join(c for _, c in chunks[i : j + 1])
                readings = [(fmt, r) for fmt in formats if (r := _read(fmt, compact)) is not None]
                if readings:
                    start, end = chunks[i][0], chunks[j][0] + len(chunks[j][1])
                    for fmt, (number, _) in readings:
                        yield _Candidate(fmt, number, True, start, end)
                    i = j
                    break
            i += 1


def _as_requested(candidate: _Candidate, wanted: frozenset[str]) -> str | None:
    """The format to report ``candidate`` under, given the formats asked for."""
    if candidate.format in wanted:
        return candidate.format
    if candidate.format == "royal_mail" and "s10" in wanted:
        return "s10"
    return None


def find_tracking_numbers(text: str, formats: Iterable[str] | None = None) -> list[TrackingNumber]:
    """Tracking numbers in ``text`` that pass their format's check digit, in text order.

    ``formats`` limits the result to those format keys (None: all). Each occurrence is
    reported with its span, so the same number typed twice appears twice. DHL Paket and
    Hermes Germany numbers (:data:`LOOKED_UP_ONLY`) are never reported here (their shape is no
    evidence): see :func:`find_possible_tracking_numbers`.
    """
    wanted = _check_formats(formats)
    result: list[TrackingNumber] = []
    for candidate in _candidates(text):
        fmt = _as_requested(candidate, wanted)
        if fmt is not None and candidate.valid:
            result.append(TrackingNumber(fmt, TRACKING_FORMATS[fmt], candidate.number, candidate.start, candidate.end))
    return result


def find_possible_tracking_numbers(text: str, formats: Iterable[str] | None = None) -> list[TrackingNumber]:
    """Numbers in ``text`` shaped like a DHL Paket or Hermes Germany number (:data:`LOOKED_UP_ONLY`), in text
    order: a tracking number only where a shipment with that number is stored (the caller looks it up),
    otherwise nothing to report.

    ``formats`` as for :func:`find_tracking_numbers`: ``dhl`` asks for DHL Paket numbers, ``evri`` for Hermes
    Germany's; each is reported under that format, with its own courier. Where a number of an asked format's
    checked shapes stands (valid or not), no other number is read out of it."""
    wanted = _check_formats(formats)
    asked = [shape for shape, (fmt, _) in LOOKED_UP_ONLY.items() if fmt in wanted]
    if not asked:
        return []
    checked, masked = _scan(text)
    taken = [c for c in checked if _as_requested(c, wanted) is not None]  # in text order
    starts = [c.start for c in taken]
    widest = max((c.end - c.start for c in taken), default=0)
    result: list[TrackingNumber] = []
    for candidate in _whole_runs(masked, asked):
        # Only the checked numbers starting near it can overlap it: a long post has thousands of each.
        near = taken[bisect_left(starts, candidate.start - widest) : bisect_left(starts, candidate.end)]
        if any(c.start < candidate.end and candidate.start < c.end and c.number != candidate.number for c in near):
            continue
        fmt, courier = LOOKED_UP_ONLY[candidate.format]
        result.append(TrackingNumber(fmt, courier, candidate.number, candidate.start, candidate.end))
    return result


def find_invalid_tracking_candidates(text: str, formats: Iterable[str] | None = None) -> list[str]:
    """Normalised strings shaped like a tracking number but failing its check digit (typos)."""
    wanted = _check_formats(formats)
    seen: dict[str, None] = {}
    for candidate in _candidates(text):
        if not candidate.valid and _as_requested(candidate, wanted) is not None:
            seen.setdefault(candidate.number, None)
    return list(seen)


# --- order numbers ------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _compile_order_pattern(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"order pattern {pattern!r} is not a valid regular expression: {exc}") from exc


def find_order_numbers(text: str, patterns: Sequence[str] = DEFAULT_ORDER_PATTERNS) -> list[str]:
    """Order numbers in ``text`` in the form the shop's order table uses, in text order.

    A pattern with a capture group yields group 1 (``#1234`` -> ``1234``), otherwise the
    whole match. Repeats are dropped, keeping the first occurrence.
    """
    hits: list[tuple[int, str]] = []
    for pattern in patterns:
        compiled = _compile_order_pattern(pattern)
        for match in compiled.finditer(text):
            value = match.group(1) if compiled.groups else match.group(0)
            if value:
                hits.append((match.start(), value))
    hits.sort(key=lambda hit: hit[0])
    return list(dict.fromkeys(value for _, value in hits))


# --- generating numbers for demo data ------------------------------------------------------


def _random(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def make_tracking_number(format: str, rng: random.Random) -> str:
    """A random number that is valid for ``format`` (demo data and tests), normalised."""
    if format == "ups":
        payload = _random(rng, _ALNUM, 6) + rng.choice(["01", "02", "03", "12", "13", "42", "66"]) + _random(rng, _DIGITS, 7)
        return "1Z" + payload + str(_ups_check(payload))
    if format == "usps":
        payload = "9" + rng.choice("12345") + _random(rng, _DIGITS, 19)
        return payload + str(_gs1_check(payload))
    if format == "fedex":
        if rng.random() < 0.5:
            payload = rng.choice("123456789") + _random(rng, _DIGITS, 10)
            return payload + str(_fedex_express_check(payload))
        payload = rng.choice("123456789") + _random(rng, _DIGITS, 13)
        return payload + str(_gs1_check(payload))
    if format == "dhl":
        payload = rng.choice("123456789") + _random(rng, _DIGITS, 8)
        return payload + str(_dhl_check(payload))
    if format in ("royal_mail", "s10"):
        country = "GB" if format == "royal_mail" else rng.choice(sorted(_COUNTRIES - {"GB"}))
        serial = _random(rng, _DIGITS, 8)
        return _random(rng, _ALNUM[10:], 2) + serial + str(_s10_check(serial)) + country
    if format == "dpd":
        return rng.choice("123456789") + _random(rng, _DIGITS, 13)
    if format == "evri":
        return "H" + _random(rng, _DIGITS, 2) + _random(rng, _ALNUM, 3) + _random(rng, _DIGITS, 10)
    raise ValueError(f"unknown tracking format {format!r}; known formats: {', '.join(TRACKING_FORMATS)}")
