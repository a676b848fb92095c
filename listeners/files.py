"""The file listener: mentions, orders and tracking events from CSV or JSONL files.

An import never half-happens silently. Every row is read and validated before anything is
written; each rejected row is reported with file, row number (the editor's line), field,
reason and remedy. When more than ``[imports] max_rejected_share`` of the rows are rejected
(a wrong file, most likely) nothing is written; otherwise every valid row is written, in
transactions of ``[imports] batch_rows`` rows so a long import holds the write lock only
briefly. Each batch is read and classified first and then written under BEGIN IMMEDIATE.
If an import stops midway (a full disk, a crash), the report says how far it got; running
it again is safe, because mentions are keyed by (channel, external_id), orders by number,
shipments by tracking number and tracking events by (tracking number, time, status).

Partial updates never erase: a re-imported order, customer or shipment changes only the
columns the file gives a value for. An empty cell, a missing column or a JSON ``null``
leaves what is stored as it is.

Formats (see README "Importing data" for the full column lists):

* mentions ``jsonl``/``csv``: the fields of :class:`doorstep.models.Mention`, optionally
  with the classifier's labels (what ``doorstep export mentions`` writes), so an export
  imports back without loss.
* mentions ``twcs``: the public "Customer Support on Twitter" layout. Inbound rows are
  customers; outbound rows are the brands' replies, which join the thread.
* orders: one row per order, or one row per item (Shopify, WooCommerce): the rows of one
  order number fold into one order whose ``items`` gathers each row's ``item_*`` values, as
  long as they agree on the order's own values; ``customer_*`` columns embed the customer and
  ``tracking_number``/``courier`` columns embed a shipment (JSONL may instead nest
  ``customer`` and ``shipments`` objects).
* tracking: one row per courier event.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import functools
import gc
import itertools
import json
import math
import re
import shlex
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any, Protocol

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import TypeAdapter, ValidationError

from doorstep.closing import close_cases
from doorstep.courier_words import tracking_status, word_key
from doorstep.config import Courier, Imports, find_courier
from doorstep.dialect import DATABASE_ERRORS
from doorstep.models import (MAX_FUTURE_SKEW, TRACKING_STATUSES, TRACKING_WORDS, Customer, Labels, Mention, Order,
                             Shipment, TrackingEvent, utcnow)
from doorstep.classifying import addressed_flags, classify_mentions
from doorstep.numbers import normalise_tracking_number
from doorstep.pipeline import Pipeline
from doorstep.store import Store, StoreError
from doorstep.store.base import MAX_PARAMETERS, parse_time

TWCS_TIME_FORMAT = "%a %b %d %H:%M:%S %z %Y"
#: The columns of the twcs layout, as its header names them.
TWCS_COLUMNS = ("tweet_id", "author_id", "inbound", "created_at", "text", "response_tweet_id",
                "in_response_to_tweet_id")
FORMATS = ("jsonl", "csv", "twcs")
#: What the CLI suggests when a file is not UTF-8.
ENCODING_REMEDY = ("save the file as UTF-8, or pass --encoding with the code page it was saved in (a Windows/Excel "
                   "export: --encoding cp1252 in Western Europe, --encoding cp1250 for Polish, Czech or Hungarian)")
DEFAULTS = Imports()


class ImportFileError(ValueError):
    """The file as a whole cannot be read (unknown format, unreadable, bad header): one line."""


@dataclass(frozen=True)
class RowError:
    file: str
    row: int
    #: The first field that fails, and why (with the remedy).
    field: str
    reason: str
    #: The row's other fields that fail, (field, reason) each. Why: "(and 1 more: total)" hid the other
    #: faults and their remedies (a decimal-comma total) until the first was fixed and the file imported
    #: again (exports audit); a row names every field that fails, on its one line.
    more: tuple[tuple[str, str], ...] = ()

    @property
    def detail(self) -> str:
        """Every failing field of the row with its reason: "placed_at: ...; total: ..."."""
        return "; ".join(f"{f}: {r}" for f, r in ((self.field, self.reason), *self.more))

    def __str__(self) -> str:
        return f"{self.file}: row {self.row}: {self.detail}"


def _row_error(name: str, number: int, faults: Sequence[tuple[str, str]]) -> RowError:
    """One row's error naming each field that fails once, in the order found."""
    unique = list(dict.fromkeys(faults))
    seen: set[str] = set()
    kept = [(f, r) for f, r in unique if not (f in seen or seen.add(f))]
    (first, reason), *more = kept
    return RowError(name, number, first, reason, tuple(more))


@dataclass
class Parsed:
    """What a file held: the valid records and one error per rejected row."""

    records: list[Any] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    #: Editor row of each record (same order as ``records``), for reports.
    rows: list[int] = field(default_factory=list)
    #: What the run says once, not per row (columns a ``--map`` run did not read).
    notes: list[str] = field(default_factory=list)
    #: Rows that were an order's further items, folded into the order of an earlier row (see :func:`parse_orders`).
    folded: int = 0

    def add(self, number: int, record: Any) -> None:
        self.records.append(record)
        self.rows.append(number)


def detect_format(path: Path, given: str | None, allowed: Sequence[str] = FORMATS) -> str:
    if given:
        return given
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        if "twcs" not in allowed:
            return "csv"
        try:
            with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
                header = fh.readline()
        except OSError as exc:
            raise ImportFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
        return "twcs" if "inbound" in header and "in_response_to_tweet_id" in header else "csv"
    raise ImportFileError(
        f"{path}: cannot tell the format from the name {path.name!r} (known: .jsonl, .ndjson, .json, .csv); "
        f"pass --format {' or '.join(allowed)}"
    )


# ------------------------------------------------------------------ reading
def _read_text(path: Path, encoding: str | None) -> tuple[str, bool]:
    """The file's text and whether it is exactly what was asked for.

    Without ``encoding`` the file must be UTF-8; bytes that are not are kept as lone
    surrogates (``surrogateescape``) so that only the rows holding them are rejected. A leading
    byte-order mark is dropped either way: ``--encoding utf-8`` keeps it as U+FEFF, which would
    become part of the first column's name (or make the first JSON line unreadable).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if encoding:
        try:
            return data.decode(encoding).removeprefix("\ufeff"), True
        except LookupError:
            raise ImportFileError(f"{path}: unknown --encoding {encoding!r}; try utf-8, cp1252 or latin-1") from None
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"{path}: not valid {encoding} at byte {exc.start}; {ENCODING_REMEDY}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with its byte-order mark (Windows' "Unicode" files)
        try:
            return data.decode("utf-16").removeprefix("\ufeff"), True
        except UnicodeDecodeError:
            pass  # not UTF-16 after all: read as UTF-8 below, which names the bad bytes
    try:
        return data.decode("utf-8"), True
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="surrogateescape"), False


_BAD_BYTE = re.compile("[\udc80-\udcff]")


def _bad_bytes(text: str) -> str | None:
    """A description of the first byte that was not UTF-8, or None."""
    found = _BAD_BYTE.search(text)
    if not found:
        return None
    byte = ord(found.group()) - 0xDC00
    return f"not valid UTF-8 (byte 0x{byte:02x} at character {found.start() + 1}); {ENCODING_REMEDY}"


def _lines(text: str) -> list[str]:
    """Lines with their endings, split on \\n only (JSON strings may hold U+2028 and friends)."""
    return [line for line in re.split(r"(?<=\n)", text) if line]


def read_rows(path: Path, fmt: str, encoding: str | None = None,
              spec: Columns | None = None) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """Yield (row number, row dict) — or a RowError for a line that is not even a row.

    Row numbers are what a person sees in an editor: JSONL lines from 1, CSV lines from 1
    (the header), counting the lines inside quoted values, so "row N" is line N.
    ``spec``: what the import reads; a CSV header is checked against it once, before any row
    (see :class:`Columns`), and each row's keys are its field names.
    """
    text, _ = _read_text(path, encoding)
    if fmt == "jsonl":
        rows = _jsonl_rows(str(path), text)
        if spec is None:
            yield from rows
        else:
            yield from ((n, row if isinstance(row, RowError) else spec.keys(row)) for n, row in rows)
    else:
        yield from _csv_rows(str(path), text, spec)


def _jsonl_rows(name: str, text: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    if text.lstrip().startswith("["):
        raise ImportFileError(
            f"{name}: row 1: (file): holds a JSON array, but imports read JSON Lines (one object per line); "
            f"convert it, e.g. jq -c '.[]' {name} > {Path(name).with_suffix('.jsonl').name}"
        )
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        bad = _bad_bytes(line)
        if bad:
            yield number, RowError(name, number, "(line)", bad)
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, RowError(name, number, "(line)", f"not valid JSON: {exc.msg} at character {exc.pos + 1}")
            continue
        if not isinstance(value, dict):
            yield number, RowError(name, number, "(line)", "expected a JSON object ({...}) on each line")
            continue
        yield number, value


@dataclass(frozen=True)
class _CsvProblem:
    """A CSV record that cannot be read: why, and which of its values (0-based), when known."""

    reason: str
    value_index: int | None = None


def _value_over(lines: list[str], start: int, limit: int, separator: str = ",") -> int | None:
    """The index of the first value longer than ``limit`` in the record starting at line ``start``.

    The csv module stops at such a value without saying which; this scans the record the way it
    reads it (quotes, doubled quotes, newlines inside quotes), so the error can name the column.
    """
    index = length = 0
    quoted = False
    for line in itertools.islice(lines, start, None):
        for char in line:
            if char == '"':
                quoted = not quoted
                continue
            if char == separator and not quoted:
                index, length = index + 1, 0
                continue
            if char in "\r\n" and not quoted:
                return None
            length += 1
            if length > limit:
                return index
    return None


def _csv_records(lines: list[str], separator: str = ",") -> Iterator[tuple[int, list[str] | _CsvProblem]]:
    """(first line number, values) per CSV record; (line, problem) where it cannot be read.

    The reader is strict, so an unterminated quote is an error rather than a value that
    silently swallows the rest of the file; reading resumes on the line after the bad
    record's first line, so the rows that follow are still read.
    """
    start = 0
    while start < len(lines):
        reader = csv.reader(itertools.islice(lines, start, None), strict=True, delimiter=separator)
        row_start = start
        try:
            for values in reader:
                yield row_start + 1, values
                row_start = start + reader.line_num
            return
        except csv.Error as exc:
            problem = str(exc)
            if "field larger than field limit" in problem:
                # Not a quoting fault: the value is longer than the csv module reads (a process-wide
                # setting we leave alone); only a shorter value or another format helps.
                limit = csv.field_size_limit()
                yield row_start + 1, _CsvProblem(
                    f"value longer than {limit:,} characters, the most a CSV value may hold; shorten it, "
                    "or write the file as JSON Lines", _value_over(lines, row_start, limit, separator))
            else:
                if "end of data" in problem or "EOF" in problem:
                    problem = "a quote opened here is never closed (everything after it would be one value)"
                yield row_start + 1, _CsvProblem(f"{problem}; close the quote or double it (\"\") inside a quoted value")
            start = row_start + 1


#: Separators a spreadsheet writes instead of commas: Excel where the decimal mark is a comma
#: writes ';' ("CSV" in much of Europe), and a copy out of a sheet is tab-separated.
OTHER_SEPARATORS = (";", "\t")


def _separator(lines: list[str]) -> str:
    """The file's separator, told from its header: a comma, unless the header read with commas is
    one column that ';' or a tab splits into several (then every row would lack every column)."""
    first = next((line for line in lines if line.strip()), "")
    try:
        if len(next(csv.reader([first]), [])) == 1:
            for separator in OTHER_SEPARATORS:
                if len(next(csv.reader([first], delimiter=separator), [])) > 1:
                    return separator
    except csv.Error:
        pass
    return ","


def _csv_rows(name: str, text: str, spec: Columns | None = None) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    header: list[str] | None = None
    #: (field, index of its value) per column read; None: every column, by its own name.
    plan: list[tuple[str, int]] | None = None
    lines = _lines(text)
    separator = _separator(lines)
    for number, values in _csv_records(lines, separator):
        if isinstance(values, _CsvProblem):
            if header is None:
                raise ImportFileError(f"{name}: row {number}: header: {values.reason}")
            index = values.value_index
            column = header[index] if index is not None and index < len(header) else "(row)"
            yield number, RowError(name, number, column, values.reason)
            continue
        if not values or not any(v.strip() for v in values):
            continue
        if header is None:
            header = [h.strip() for h in values]
            bad = _bad_bytes(",".join(header))
            if bad:
                raise ImportFileError(f"{name}: row {number}: header: {bad}")
            seen: set[str] = set()
            for column in header:
                if not column:
                    raise ImportFileError(f"{name}: row {number}: header: a column has no name; name it or remove it")
                if column in seen:
                    raise ImportFileError(
                        f"{name}: row {number}: {column}: the column appears twice in the header; rename or remove one"
                    )
                seen.add(column)
            if spec is not None:
                plan = spec.plan(name, number, header)
            continue
        bad = _bad_bytes("\x00".join(values))
        if bad:
            column = next(h for h, v in zip(header, values) if _BAD_BYTE.search(v)) if len(values) <= len(header) else "(row)"
            yield number, RowError(name, number, column, bad)
            continue
        if len(values) > len(header):
            yield number, RowError(
                name, number, "(row)",
                f"{len(values)} values for {len(header)} header columns; quote values that contain "
                + ("commas" if separator == "," else repr(separator)),
            )
            continue
        if plan is not None:
            yield number, {f: (values[i] if i < len(values) and values[i] != "" else None) for f, i in plan}
            continue
        yield number, {k: (v if v != "" else None) for k, v in itertools.zip_longest(header, values)}


def _column_key(name: str) -> str:
    """A column's name as it is matched: "Tracking_Number", " STATUS " and "status" name the same column."""
    return name.strip().casefold()


def _loose(name: str) -> str:
    """A name without case, spaces or punctuation ("Tracking Number" -> "trackingnumber"), to suggest a map."""
    return re.sub(r"[^0-9a-z]", "", name.casefold())


@dataclass
class Columns:
    """The columns one kind of import reads, and how a file's header names them.

    Why: a file from another tool (Shopify's "Name, Email, Financial Status, ...") failed on every row with
    "Field required ... (and 43 more: <the file's own columns>)", once per row (exports audit). The header is
    checked once, before any row: a column is one of ours whatever its case and the spaces around it; a
    missing required column, or one that is not ours, is one message naming both and the columns we know.
    """

    #: What the import is called (the words of messages): "orders", "tracking", "mentions".
    kind: str
    #: The columns we read, in the order the README lists them.
    known: tuple[str, ...]
    #: Those a file must have.
    required: tuple[str, ...]
    #: Also read (in JSON Lines), but not listed as a file's columns: export-only fields, nested objects.
    also: tuple[str, ...] = ()
    #: ``--map FIELD=COLUMN``: the file's column that holds each field, by our name (see :meth:`mapped`).
    mapping: dict[str, str] = field(default_factory=dict)
    #: The file's columns that were not read (with a ``--map``, columns none of ours and none mapped).
    ignored: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Looked up once per column of every row of a JSON Lines file: a dict, not a scan of the names.
        self._names = {f.casefold(): f for f in (*self.known, *self.also)}

    def mapped(self, mapping: dict[str, str] | None) -> Columns:
        """These columns, with another tool's taken as ours (``--map number=Name``), applied before any row
        is validated. Why: a shop's Shopify or WooCommerce export names its columns its own way, and a
        newcomer should not have to rewrite the header in a spreadsheet (exports audit). One column may
        feed several fields (Shopify's Email is both customer_id and customer_email)."""
        for field_name, column in (mapping or {}).items():
            if field_name not in self.known:
                raise ImportFileError(f"--map {field_name}={shlex.quote(column)}: {field_name} is not an {self.kind} "
                                      f"column (known: {self.listed()}; * required); write --map FIELD=COLUMN with "
                                      "FIELD one of these")
        return dataclasses.replace(self, mapping=dict(mapping or {}), ignored=[])

    def help(self) -> str:
        """What ``doorstep import KIND --help`` says of a file's columns."""
        return (f"Columns (* required): {self.listed()}. Column names match whatever their case; another tool's "
                "columns are read as ours with --map FIELD=COLUMN (repeatable; e.g. --map number=Name).")

    def note(self, name: str) -> str | None:
        """What the run did not read, said once (not per row); None when it read every column."""
        if not self.ignored:
            return None
        return f"{name}: not read: columns {', '.join(self.ignored)} (no --map names them)"

    def listed(self) -> str:
        """The known columns, required ones marked with a *."""
        return ", ".join(f"{c}*" if c in self.required else c for c in self.known)

    def field(self, column: str) -> str | None:
        """Our name for a file's column, or None when it is none of ours."""
        return self._names.get(_column_key(column))

    def plan(self, name: str, number: int, header: Sequence[str]) -> list[tuple[str, int]]:
        """(field, index) per column to read; an ImportFileError (one line) when the header cannot be read."""
        taken: dict[str, int] = {}
        unknown: list[str] = []
        for field_name, column in self.mapping.items():
            twins = [c for c in header if _column_key(c) == _column_key(column)]
            if len(twins) > 1:  # "Email" and "email": which one holds the field is not guessed, even from the case
                raise ImportFileError(f"{name}: row {number}: header: --map {field_name}={shlex.quote(column)}: the "
                                      f"file has {len(twins)} columns named {column!r} whatever their case "
                                      f"({', '.join(map(repr, twins))}); rename or remove all but one")
            index = self._index(header, column)
            if index is None:
                raise ImportFileError(f"{name}: row {number}: header: --map {field_name}={shlex.quote(column)}: the "
                                      f"file has no column {column!r} (its columns: {', '.join(header)}); check the "
                                      "spelling (case does not matter)")
            taken[field_name] = index
        mapped = set(taken.values())
        for index, column in enumerate(header):
            found = self.field(column)
            if found is not None and found not in self.mapping:  # ours (a --map may read it as another field too)
                if found in taken:
                    raise ImportFileError(f"{name}: row {number}: {column}: the column appears twice in the header "
                                          f"(as {header[taken[found]]!r} too); rename or remove one")
                taken[found] = index
            elif index not in mapped:  # none of ours, or a field --map reads from another column
                unknown.append(column)
        missing = [f for f in self.required if f not in taken]
        if missing or (unknown and not self.mapping):
            raise ImportFileError(self.header_problem(name, number, missing, unknown))
        self.ignored = unknown  # with --map, the columns it does not name are another tool's, not read
        return list(taken.items())

    @staticmethod
    def _index(header: Sequence[str], column: str) -> int | None:
        """Where a mapped column is: its exact name, or the one column that matches it whatever its case."""
        if column in header:
            return list(header).index(column)
        near = [i for i, c in enumerate(header) if _column_key(c) == _column_key(column)]
        return near[0] if len(near) == 1 else None

    def header_problem(self, name: str, number: int, missing: Sequence[str], unknown: Sequence[str]) -> str:
        parts = []
        if missing:
            parts.append(f"missing columns {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown columns {', '.join(unknown)}")
        example = f"{missing[0] if missing else self.known[0]}=COLUMN"
        near = self._near(missing, unknown)
        if near is not None:
            example = f"{near[0]}={shlex.quote(near[1])}"
        return (f"{name}: row {number}: header: {'; '.join(parts)} (known: {self.listed()}; * required); rename "
                f"the file's columns to these, or map each with --map FIELD=COLUMN (e.g. --map {example})")

    def _near(self, missing: Sequence[str], unknown: Sequence[str]) -> tuple[str, str] | None:
        """A missing field and the unknown column that most likely holds it: "Tracking Number" for
        tracking_number, "Order Number" for number (but not "Tracking Number": that is another field's)."""
        for field_name in missing:
            for column in unknown:
                if _loose(column) == _loose(field_name):
                    return field_name, column
        for field_name in missing:
            for column in unknown:
                others = [f for f in self.known if f != field_name and _loose(f) in _loose(column)]
                if _loose(field_name) in _loose(column) and not others:
                    return field_name, column
        return None

    def keys(self, row: dict[str, Any]) -> dict[str, Any]:
        """A JSON Lines row with our names for its keys ("Status" is status), as a CSV header is read. A key
        that is none of ours is kept as it is (the row's error names it), or with a ``--map`` skipped and
        named once in the run's note."""
        if not self.mapping and all(key in self._names for key in row):
            return row  # our own names already (what Doorstep's exports write): nothing to rename
        named: dict[str, Any] = {}
        given = list(row)
        sources = set()
        for field_name, column in self.mapping.items():
            index = self._index(given, column)
            if index is not None:
                named[field_name] = row[given[index]]
                sources.add(given[index])
        for key, value in row.items():
            found = self.field(key)
            if self.mapping and (found is None or found in self.mapping):
                if key not in sources and key not in self.ignored:
                    self.ignored.append(key)
                continue
            named.setdefault(found if found is not None and found not in row else key, value)
        return named


def column_map(specs: Sequence[str]) -> dict[str, str]:
    """``--map FIELD=COLUMN`` options as {field: column}; an ImportFileError (one line) for one that is not."""
    mapping: dict[str, str] = {}
    for spec in specs:
        field_name, _, column = spec.partition("=")
        field_name, column = field_name.strip().casefold(), column.strip()
        if not field_name or not column:
            raise ImportFileError(f"--map {spec!r}: write FIELD=COLUMN, e.g. --map number='Order Number'")
        if field_name in mapping:
            raise ImportFileError(f"--map {field_name}={shlex.quote(column)}: {field_name} is mapped twice "
                                  f"(also from {mapping[field_name]!r}); keep one")
        mapping[field_name] = column
    return mapping


#: What to do about pydantic's error types, appended to its message (which says what is wrong).
REMEDIES = {
    "missing": "add it",
    "datetime_parsing": "write a time as ISO 8601, e.g. 2026-11-16T09:00:00Z",
    "datetime_from_date_parsing": "write a time as ISO 8601, e.g. 2026-11-16T09:00:00Z",
    "datetime_type": "write a time as ISO 8601, e.g. 2026-11-16T09:00:00Z",
    "date_parsing": "write a date as YYYY-MM-DD",
    "date_from_datetime_parsing": "write a date as YYYY-MM-DD",
    "int_parsing": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number such as 59.50",
    "bool_parsing": "write true or false",
    "extra_forbidden": "remove it or check its spelling",
    "string_too_short": "give a value",
}


#: An amount written with a decimal comma ("61,00", "1.234,50"): Excel's in much of Europe.
_DECIMAL_COMMA = re.compile(r"-?\d{1,3}(?:\.\d{3})*,\d{1,2}|-?\d+,\d{1,2}")


def _comma_reason(value: str) -> str:
    """Why an amount with a comma that is not plainly a decimal comma ("1,234") is refused, and the remedy."""
    return (f"{value.strip()!r} has a comma that may separate thousands or decimals: write the amount with a "
            "decimal point and no thousands separator, e.g. 1234.00")


#: A dot before exactly three digits and no comma: "1.234" is 1.234 in English and 1234 in German, "12.500" 12.5
#: or 12500 (code review: with decimal commas read, a German "1.234" was stored as 1.234 without a word).
_DOT_THOUSANDS = re.compile(r"-?\d{1,3}(?:\.\d{3})+")


def _dot_reason(value: str) -> str:
    """Why an amount whose dot may separate thousands ("1.234") is refused, and the remedy."""
    return (f"{value.strip()!r} has a dot that may separate thousands or decimals: write the amount with no "
            "thousands separator and two decimals, e.g. 1234.00")


def _ambiguous_amount(value: Any) -> str | None:
    """Why an amount cell may be read two ways (None: it may not): a thousands comma or dot."""
    if not isinstance(value, str):
        return None
    if _DOT_THOUSANDS.fullmatch(value.strip()):
        return _dot_reason(value)
    if "," in value and not _DECIMAL_COMMA.fullmatch(value.strip()):
        return _comma_reason(value)
    return None


def _decimal_point(value: Any) -> Any:
    """An amount written with a decimal comma, as a German or French shop's export writes it ("61,00", "1.234,50"),
    with a decimal point ("61.00", "1234.50"); anything else as it is. Why: every such row was refused ("has a
    decimal comma: write 61.00"), though one or two digits after a comma are never an English thousands
    separator, so the reading guesses nothing ("1,234" is left, and refused, as it could be either)."""
    if isinstance(value, str) and _DECIMAL_COMMA.fullmatch(value.strip()):
        return value.strip().replace(".", "").replace(",", ".")
    return value


def _reason(error: Any) -> str:
    """What is wrong with one field, and the remedy, from one of pydantic's errors."""
    kind, value = error["type"], error.get("input")
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
        if set(allowed) == set(TRACKING_STATUSES):
            return (f"{value!r} is not a tracking status or a courier's word Doorstep knows: add it to [imports] "
                    f"tracking_statuses in doorstep.toml ({json.dumps(str(value), ensure_ascii=False)} = \"delivered\", "
                    f"or whichever of {', '.join(TRACKING_STATUSES)} it is)")
        if allowed:
            return f"{value!r} is not one of {', '.join(allowed)}: write one of them"
    if kind == "float_parsing" and isinstance(value, str) and "," in value:
        return _comma_reason(value)
    message = error["msg"].removeprefix("Value error, ")
    remedy = REMEDIES.get(kind)
    return message + (f": {remedy}" if remedy else "")


def _validation_faults(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, reason) for each field the model refused, once each."""
    return [(".".join(str(p) for p in e["loc"]) or "(row)", _reason(e)) for e in exc.errors()]


def _errors_from_validation(name: str, number: int, exc: ValidationError) -> RowError:
    return _row_error(name, number, _validation_faults(exc))


class _RowFaults(ValueError):
    """Several fields of one row fail (checks of ours and the model's): each is named, with its remedy."""

    def __init__(self, faults: Sequence[tuple[str, str]]):
        super().__init__("; ".join(f"{f}: {r}" for f, r in faults))
        self.faults = list(faults)


#: A time as Shopify writes it, "2026-11-10 08:00:12 +0000": ISO 8601 but for the space before the offset.
_SPACED_OFFSET = re.compile(r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?) ([+-]\d{2}:?\d{2})")


_DATETIME = TypeAdapter(datetime)


def time_zone(name: str | tzinfo | None) -> tzinfo | None:
    """``--timezone``: the zone of a file's times that give no offset (None: UTC, as README says).

    Why: a courier's or a social tool's export writes local times, and 08:05 in Germany read as UTC is an
    hour late (exports audit). An unknown name is one line, not a traceback."""
    if name is None or isinstance(name, tzinfo):
        return name
    if name.strip().upper() in ("UTC", "Z"):
        return timezone.utc
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ImportFileError(f"--timezone {name!r}: not an IANA time zone; give one such as Europe/London, "
                              "Europe/Berlin or America/New_York (times that give their offset keep it)") from None


#: A date written with dots, day first as wherever dots are written (Germany, Austria, Switzerland, the Nordics):
#: "24.12.2026", "3.10.2026 08:05", "03.10.2026, 08:05:30".
_DOTTED_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})(?:,?[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?")
#: What a dotted date looks like even when it cannot be read (a two-digit year "12.11.26", a minute "9:5").
_LOOSE_DOTTED_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{2,4})(?:,?[ T](\d{1,2}):(\d{1,2})(?::\d{1,2})?)?")
#: A date written with slashes: "12/11/2026" is 12 November or December 11, depending on who wrote it.
_SLASHED_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:,?[ T](\d{1,2}:\d{2}(?::\d{2})?))?")


def _day_first(value: str, field_name: str) -> str:
    """A dotted date as ISO 8601 ("24.12.2026 14:30" -> "2026-12-24T14:30:00"), no offset: the caller's zone rule
    applies. Why: a German shop's and courier's exports write dates so, and every row was refused, though a dotted
    date is day first wherever it is written, so reading it guesses nothing. A slashed date is a _FieldError
    saying both readings: which was meant is the shop's to say."""
    text = value.strip()
    dotted = _DOTTED_DATE.fullmatch(text)
    if dotted:
        day, month, year, hour, minute, second = (int(g) if g else 0 for g in dotted.groups())
        try:
            return datetime(year, month, day, hour, minute, second).isoformat()
        except ValueError as exc:
            raise _FieldError(field_name, f"{value!r} is not a date ({exc}): check the row in the file") from None
    loose = _LOOSE_DOTTED_DATE.fullmatch(text)
    if loose:
        year, minute = loose.group(3), loose.group(5)
        if len(year) != 4:
            raise _FieldError(field_name, f"{value!r} has a two-digit year: write the year in full, e.g. "
                                          f"{loose.group(1)}.{loose.group(2)}.20{year[-2:]}, or ISO 8601")
        if minute is not None and len(minute) != 2:
            raise _FieldError(field_name, f"{value!r}: write the minutes with two digits, e.g. "
                                          f"{int(loose.group(4)):02d}:{int(minute):02d}")
    slashed = _SLASHED_DATE.fullmatch(text)
    if slashed:
        first, second, year, clock = slashed.groups()
        clock = f"T{int(clock.split(':')[0]):02d}:{clock.split(':', 1)[1]}" if clock else ""
        readings = [f"{year}-{int(b):02d}-{int(a):02d}{clock}" for a, b in ((first, second), (second, first))
                    if int(b) <= 12 and int(a) <= 31]
        raise _FieldError(field_name, f"{value!r} writes the date with slashes, which tools write with the day or the "
                                      f"month first: write it as ISO 8601 ({' or '.join(dict.fromkeys(readings))}), "
                                      "or export the file with ISO dates")
    return value


def _time_cell(value: Any, zone: tzinfo | None = None, field_name: str = "time") -> Any:
    """A file's time as the models read it: Shopify's "2026-11-10 08:00:12 +0000" is the same instant as
    "2026-11-10 08:00:12+0000", and with ``zone`` a time without an offset is that zone's (the models read
    it as UTC). Anything else is left to the model, which refuses what is not ISO 8601 (a "11/12/2026" is
    11 December or November 12 depending on who wrote it: never guessed).

    A local time the zone's clock change repeats or skips is a _FieldError naming ``field_name``: which instant
    was meant is not guessed either (see :func:`_clock_change`)."""
    if not isinstance(value, str):
        return value
    value = _day_first(value, field_name)
    spaced = _SPACED_OFFSET.fullmatch(value.strip())
    if spaced:
        return spaced.group(1) + spaced.group(2)
    if zone is not None:
        try:
            parsed = _DATETIME.validate_python(value)
        except ValidationError:
            return value  # the model says what is wrong with it, in the row's words
        if parsed.tzinfo is None:
            problem = _clock_change(parsed, zone)
            if problem:
                raise _FieldError(field_name, f"{value!r} {problem}")
            return parsed.replace(tzinfo=zone)
    return value


def _read_time(row: dict[str, Any], field_name: str, zone: tzinfo | None, faults: list[tuple[str, str]]) -> None:
    """Reads the row's time cell in place; a time that cannot be read joins the row's other ``faults``
    (one look at the file shows every fix) and stays as written, for the model to name it too."""
    if field_name not in row:
        return
    try:
        row[field_name] = _time_cell(row[field_name], zone, field_name)
    except _FieldError as exc:
        faults.append((exc.field, str(exc)))


def _read_status(row: dict[str, Any], status_words: Mapping[str, str] | None, keep_word: bool = True) -> None:
    """Reads a scan's or a shipment's status cell in place: a courier's word ("Out for Delivery", "Zugestellt") is
    our status (doorstep.courier_words), and the word itself becomes the description where the row gives none,
    so agents still read the scan as the courier wrote it. A word known nowhere stays as written: the model
    refuses it, naming the setting that adds it."""
    word = row.get("status")
    if not isinstance(word, str):
        return
    status = tracking_status(word, status_words)
    if status is None:
        return
    row["status"] = status
    if keep_word and word_key(word) not in (status.replace("_", " "), TRACKING_WORDS[status]) and "description" not in row:
        row["description"] = word


def _clock_change(local: datetime, zone: tzinfo) -> str | None:
    """Why the wall time ``local`` (no offset) names no single instant in ``zone``, with the remedy; None when it
    names one.

    Why: with Europe/London, 01:40 and then 01:20 on the night the clocks go back were both read as the first
    01:xx, so a parcel's "delivered" was stored 20 minutes before its "out for delivery" and the shipment showed
    out for delivery; 01:30 on the night they go forward, which never happened, was stored with no word (code
    review). zoneinfo's ``fold`` tells both apart: the hour is repeated when fold 0 and fold 1 give different
    offsets, and it never happened when the time read in the zone, to UTC and back, is another wall time."""
    first, second = local.replace(tzinfo=zone, fold=0), local.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return None
    wall = local.replace(fold=0)
    example = f"e.g. {first.isoformat()} or {second.isoformat()}"
    name = getattr(zone, "key", None) or str(zone)
    if first.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None, fold=0) != wall:
        return f"never happened in {name} (the clocks went forward): write the offset, {example}"
    return f"happened twice in {name} (the clocks went back): write the offset, {example}"


class _FieldError(ValueError):
    def __init__(self, field_name: str, reason: str):
        super().__init__(reason)
        self.field = field_name


def _flag(value: Any, field_name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "t"):
        return True
    if text in ("0", "false", "no", "n", "f", ""):
        return False
    raise _FieldError(field_name, f"expected true or false, got {value!r}")


def _json_cell(value: Any, field_name: str, example: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise _FieldError(field_name, f"not valid JSON ({exc.msg}); write it like {example}") from None


# ---------------------------------------------------------------- mentions
#: Columns of the label a classifier gave (flat in exports and CSV, or nested under "labels").
LABEL_FIELDS = tuple(Labels.model_fields)
#: Written by ``doorstep export mentions`` but assigned anew on import.
EXPORT_ONLY_FIELDS = ("id", "case_id", "by_customer")


def mention_columns(channel: str | None = None) -> Columns:
    """A mentions file's columns: ``channel`` is not required when ``--channel`` gives it."""
    known = tuple(f for f in Mention.model_fields if f not in EXPORT_ONLY_FIELDS)
    required = ("channel", "external_id", "text", "created_at")
    return Columns("mentions", (*known, *LABEL_FIELDS),
                   required=tuple(f for f in required if not (channel and f == "channel")), also=EXPORT_ONLY_FIELDS)


def parse_mentions(path: str | Path, fmt: str | None = None, channel: str | None = None, *,
                   encoding: str | None = None, max_post_chars: int = DEFAULTS.max_post_chars,
                   columns: dict[str, str] | None = None, timezone: str | tzinfo | None = None) -> Parsed:
    """Mention rows; ``timezone``: the zone of times that give no offset (None: UTC)."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    if fmt == "twcs":
        _refuse_for_twcs(path, columns, timezone)
        return parse_twcs(path, encoding=encoding, max_post_chars=max_post_chars)
    spec = mention_columns(channel).mapped(columns)
    zone = time_zone(timezone)
    name = str(path)
    result = Parsed()
    first_row: dict[tuple[str, str], int] = {}
    for number, row in read_rows(path, fmt, encoding, spec):
        if isinstance(row, RowError):
            result.errors.append(row)
            continue
        try:
            mention = _mention(row, channel, max_post_chars, zone)
        except ValidationError as exc:
            result.errors.append(_errors_from_validation(name, number, exc))
            continue
        except _RowFaults as exc:
            result.errors.append(_row_error(name, number, exc.faults))
            continue
        except _FieldError as exc:
            result.errors.append(RowError(name, number, exc.field, str(exc)))
            continue
        key = (mention.channel, mention.external_id)
        if key in first_row:
            result.errors.append(RowError(
                name, number, "external_id",
                f"duplicate of row {first_row[key]} ({mention.channel} {mention.external_id}); keep one row per post",
            ))
            continue
        first_row[key] = number
        result.add(number, mention)
    note = spec.note(name)
    if note:
        result.notes.append(note)
    return result


def _refuse_for_twcs(path: Path, columns: dict[str, str] | None, zone: str | tzinfo | None) -> None:
    """A ``--map`` or ``--timezone`` given for a twcs file is refused, one line naming it.

    Why: both were silently ignored (code review): the layout's columns are fixed (nothing to map) and its times
    give their offset, so a user who meant them would have been told nothing of their doing nothing."""
    if columns:
        raise ImportFileError(f"{path}: --map: a twcs file is read by its own fixed columns ({', '.join(TWCS_COLUMNS)}),"
                              " not mapped; drop --map")
    if zone is not None:
        raise ImportFileError(f"{path}: --timezone: a twcs file's times give their offset (+0000), so no zone is "
                              "applied to them; drop --timezone")


def _mention(row: dict[str, Any], channel: str | None, max_post_chars: int, zone: tzinfo | None = None) -> Mention:
    row = {k: v for k, v in row.items() if v is not None}
    if channel and not row.get("channel"):
        row["channel"] = channel
    faults: list[tuple[str, str]] = []
    _read_time(row, "created_at", zone, faults)
    unknown = set(row) - set(Mention.model_fields) - set(LABEL_FIELDS) - set(EXPORT_ONLY_FIELDS)
    if unknown:
        raise _FieldError(", ".join(sorted(unknown)),
                          f"unknown field (known: {', '.join(f for f in Mention.model_fields if f not in EXPORT_ONLY_FIELDS)}"
                          f" and the label fields {', '.join(LABEL_FIELDS)})")
    for key in EXPORT_ONLY_FIELDS:
        row.pop(key, None)
    if isinstance(row.get("matched"), str):
        row["matched"] = [v.strip() for v in row["matched"].split(",") if v.strip()]
    if isinstance(row.get("raw"), str):
        try:
            raw = json.loads(row["raw"])
        except json.JSONDecodeError:
            raw = None
        row["raw"] = raw if isinstance(raw, dict) else {"text": row["raw"]}
    if isinstance(row.get("outbound"), str):
        row["outbound"] = _flag(row["outbound"], "outbound")
    text = row.get("text")
    if isinstance(text, str) and len(text) > max_post_chars:
        faults.append(("text", f"{len(text):,} characters, more than the limit of {max_post_chars:,} "
                               "([imports] max_post_chars in doorstep.toml)"))
    flat = {k: row.pop(k) for k in LABEL_FIELDS if k in row}
    nested = row.get("labels")
    if flat and nested is not None:
        raise _FieldError("labels", "give the labels either nested under 'labels' or as columns, not both")
    if flat:
        row["labels"] = _labels(flat)
    elif isinstance(nested, str):
        row["labels"] = _json_cell(nested, "labels", '{"sentiment": "negative", ...}')
    try:
        mention = Mention.model_validate(row)
    except ValidationError as exc:
        raise _RowFaults(faults + _validation_faults(exc)) from None
    if faults:
        raise _RowFaults(faults)
    # A post dated ahead of the import (a wrong clock, milliseconds read as seconds) would make a case
    # due then, never overdue and never escalated: the row is rejected, as the webhook refuses it.
    latest = utcnow() + MAX_FUTURE_SKEW
    if mention.created_at > latest:
        raise _FieldError("created_at", f"{mention.created_at.isoformat()} is in the future (at most "
                                        f"{int(MAX_FUTURE_SKEW.total_seconds() // 60)} minutes ahead is taken); "
                                        "check the export's time zone or units")
    return mention


def _labels(flat: dict[str, Any]) -> dict[str, Any]:
    """Flat label columns (as exported, or CSV text) -> the nested dict Labels validates."""
    missing = [k for k in ("sentiment", "complaint", "intent") if k not in flat]
    if missing:
        raise _FieldError(missing[0], "a labelled row needs sentiment, complaint and intent (or no label columns at all)")
    labels = dict(flat)
    for key in ("sentiment_scores", "intent_scores"):
        labels[key] = _json_cell(labels.get(key, {}), key, '{"negative": 0.8, "neutral": 0.1, "positive": 0.1}')
    for key in ("complaint", "needs_review"):
        if key in labels:
            labels[key] = _flag(labels[key], key)
    labels.setdefault("complaint_score", 1.0 if labels["complaint"] else 0.0)
    labels.setdefault("urgency", 0.0)
    try:
        return Labels.model_validate(labels).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise _FieldError(".".join(str(p) for p in first["loc"]), first["msg"]) from None


def parse_twcs(path: Path, *, encoding: str | None = None, max_post_chars: int = DEFAULTS.max_post_chars) -> Parsed:
    """Customer Support on Twitter rows -> mentions, with threads resolved within the file.

    Threads: each row's ``in_response_to_tweet_id`` is its parent. The thread id is the
    oldest ancestor present in the file, or the first missing ancestor's id, so that
    replies to a tweet outside the sample still share one thread.
    """
    name = str(path)
    result = Parsed()
    rows: list[tuple[int, dict[str, Any]]] = []
    first_row: dict[str, int] = {}
    for number, row in read_rows(path, "csv", encoding):
        if isinstance(row, RowError):
            result.errors.append(row)
            continue
        missing = [c for c in ("tweet_id", "author_id", "inbound", "created_at", "text") if not row.get(c)]
        if missing:
            result.errors.append(RowError(name, number, missing[0], "missing value"))
            continue
        if row["tweet_id"] in first_row:
            result.errors.append(RowError(name, number, "tweet_id",
                                          f"duplicate of row {first_row[row['tweet_id']]}; keep one row per tweet"))
            continue
        first_row[row["tweet_id"]] = number
        rows.append((number, row))
    parent_of = {row["tweet_id"]: row.get("in_response_to_tweet_id") for _, row in rows}

    def thread_root(tweet_id: str) -> str:
        seen = set()
        current = tweet_id
        while True:
            parent = parent_of.get(current)
            if not parent or parent in seen:
                return current
            seen.add(current)
            if parent not in parent_of:
                return parent
            current = parent

    for number, row in rows:
        inbound_text = row["inbound"].strip().lower()
        if inbound_text not in ("true", "false"):
            result.errors.append(RowError(name, number, "inbound", f"expected True or False, got {row['inbound']!r}"))
            continue
        try:
            created = datetime.strptime(row["created_at"], TWCS_TIME_FORMAT)
        except ValueError:
            result.errors.append(
                RowError(name, number, "created_at", f"expected like 'Tue Oct 31 22:10:47 +0000 2017', got {row['created_at']!r}")
            )
            continue
        if len(row["text"]) > max_post_chars:
            result.errors.append(RowError(name, number, "text", f"{len(row['text']):,} characters, more than the limit "
                                          f"of {max_post_chars:,} ([imports] max_post_chars in doorstep.toml)"))
            continue
        inbound = inbound_text == "true"
        author = row["author_id"]
        try:
            result.add(number, Mention(
                channel="x",
                external_id=row["tweet_id"],
                text=row["text"],
                created_at=created,
                author_id=author,
                author_handle=author,
                thread_id=thread_root(row["tweet_id"]),
                in_reply_to=row.get("in_response_to_tweet_id"),
                outbound=not inbound,
                url=f"https://x.com/{author}/status/{row['tweet_id']}",
                raw={"response_tweet_id": row.get("response_tweet_id")},
            ))
        except ValidationError as exc:
            result.errors.append(_errors_from_validation(name, number, exc))
    result.errors.sort(key=lambda e: e.row)
    return result


# ------------------------------------------------------------------ orders
CUSTOMER_COLUMNS = ("name", "email", "phone", "vip")
HANDLE_CHANNELS = ("x", "mastodon", "bluesky")
#: One item of an order, as a "one row per item" export writes it on each row: ``item_name``, ``item_sku``, ...
ITEM_COLUMNS = ("name", "sku", "quantity", "price")
#: An orders file's columns (README "Importing data"); ``items`` is a JSON list, ``item_*`` one item a row.
ORDER_COLUMNS = Columns(
    "orders",
    ("number", "customer_id", "placed_at", "brand", "total", "currency", "promised_date", "status", "items",
     *(f"item_{c}" for c in ITEM_COLUMNS),
     *(f"customer_{c}" for c in CUSTOMER_COLUMNS + HANDLE_CHANNELS), "tracking_number", "courier", "service"),
    required=("number", "customer_id", "placed_at"),
    also=("customer", "shipments"),  # JSON Lines may nest them
)


@dataclass
class OrderBundle:
    """One order row: the order, and the customer as far as the row describes them."""

    customer: Customer | None
    order: Order
    #: Customer fields the row gave a value for: only these are written (never erase the rest).
    customer_fields: frozenset[str] = frozenset()
    #: The further rows of the order (one row per item) folded into it, after its first.
    further: tuple[int, ...] = ()


def _built(path: str | Path, fmt: str | None, build: Callable[[dict[str, Any]], Any], result: Parsed,
           encoding: str | None = None, spec: Columns | None = None
           ) -> Iterator[tuple[int, dict[str, Any] | None, Any]]:
    """(row number, row, record) for each row, the record None where the row is rejected (its error is in
    ``result.errors``; the row None where it is not even a row)."""
    path = Path(path)
    fmt = detect_format(path, fmt, ("jsonl", "csv"))
    name = str(path)
    for number, row in read_rows(path, fmt, encoding, spec):
        if isinstance(row, RowError):
            result.errors.append(row)
            yield number, None, None
            continue
        try:
            record = build(row)
        except ValidationError as exc:
            result.errors.append(_errors_from_validation(name, number, exc))
        except _RowFaults as exc:
            result.errors.append(_row_error(name, number, exc.faults))
        except (ValueError, TypeError) as exc:
            result.errors.append(RowError(name, number, getattr(exc, "field", "(row)"), str(exc)))
        else:
            yield number, row, record
            continue
        yield number, row, None
    note = spec.note(name) if spec is not None else None
    if note:
        result.notes.append(note)


def _parse_each(path: str | Path, fmt: str | None, build: Callable[[dict[str, Any]], Any],
                encoding: str | None = None, key: Callable[[Any], Any] | None = None,
                key_field: str = "(row)", spec: Columns | None = None) -> Parsed:
    """Run ``build`` on every row, collecting records and one error per rejected row.

    ``key``: the record's identity; a second row with the same key is rejected (which one
    should win is the user's call, not ours). ``spec``: what a file's header must name.
    """
    name = str(path)
    result = Parsed()
    first_row: dict[Any, int] = {}
    for number, _, record in _built(path, fmt, build, result, encoding, spec):
        if record is None:
            continue
        if key is not None:
            k = key(record)
            if k in first_row:
                result.errors.append(RowError(name, number, key_field,
                                              f"duplicate of row {first_row[k]} ({k}); keep one row for it"))
                continue
            first_row[k] = number
        result.add(number, record)
    return result


def parse_orders(path: str | Path, fmt: str | None = None, *, encoding: str | None = None,
                 couriers: Sequence[Courier] | None = None, columns: dict[str, str] | None = None,
                 timezone: str | tzinfo | None = None, status_words: Mapping[str, str] | None = None) -> Parsed:
    """Order rows; ``couriers`` (the configured ``[[couriers]]``): the names a ``courier`` cell may
    give, matched whatever its case and spacing and stored as configured (None or none: any name).
    ``status_words``: the shop's courier words for a shipment's status, as :func:`parse_tracking` reads them.
    ``columns``: the file's column for a field, where it names it otherwise (``--map``); ``timezone``:
    the zone of times that give no offset (None: UTC).

    Rows of one order number fold into one order (Shopify and WooCommerce write one row per item, repeating the
    order's values or leaving them blank): its ``items`` gathers each row's item. Why: each further item row was
    refused as a duplicate, so an order's other items were lost, and with most orders of several items more than
    half the rows failed (exports audit). The rows must agree: one that gives another value for the order (a
    second customer or total) is refused naming both rows and the field, since which is right is the shop's
    call; a row exactly like an earlier one of its order is a duplicate, refused as before. An order with a
    rejected row is not written at all (its other rows say which row to fix): written in part, it would lack
    items or its total without a word."""
    build = functools.partial(_order_bundle, couriers=couriers, zone=time_zone(timezone), status_words=status_words)
    name = str(path)
    result = Parsed()
    orders: dict[str, _OrderRows] = {}
    rejected: dict[str, list[int]] = {}
    for number, row, bundle in _built(path, fmt, build, result, encoding, ORDER_COLUMNS.mapped(columns)):
        if bundle is None:
            given = row.get("number") if row is not None else None
            if isinstance(given, str) and given.strip():
                rejected.setdefault(given.strip(), []).append(number)
            continue
        read = _given(_stripped(row))  # type: ignore[arg-type]
        rows = orders.get(bundle.order.number)
        if rows is None:
            orders[bundle.order.number] = _OrderRows.start(number, bundle, read)
            continue
        same = rows.same_as(read)
        if same is not None:
            result.errors.append(RowError(name, number, "number", f"duplicate of row {same} ({bundle.order.number}); "
                                                                  "keep one row for it"))
            continue
        faults = rows.fold(number, bundle, read)
        if faults:
            result.errors.append(_row_error(name, number, faults))
            rejected.setdefault(bundle.order.number, []).append(number)
    for order_number, rows in orders.items():
        if order_number in rejected:
            result.errors.extend(_order_refused(name, order_number, rows.numbers, rejected[order_number]))
            continue
        result.add(rows.first, rows.bundle)
        result.folded += len(rows.bundle.further)
    result.errors.sort(key=lambda e: e.row)
    return result


def _order_refused(name: str, order_number: str, rows: Sequence[int], rejected: Sequence[int]) -> list[RowError]:
    """The errors of an order's valid ``rows`` when its ``rejected`` rows keep it out: each names the row to fix."""
    which = (f"row {rejected[0]} is" if len(rejected) == 1
             else f"rows {', '.join(map(str, rejected[:-1]))} and {rejected[-1]} are")
    return [RowError(name, row, "number", f"order {order_number} is not imported: its {which} rejected; fix that "
                                          f"row{'s' if len(rejected) > 1 else ''} and import again") for row in rows]


def _shown(value: Any) -> str:
    """A value as a message quotes it: a time in ISO 8601, text quoted, a number as it is."""
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value) if isinstance(value, str) else str(value)


def _order_values(bundle: OrderBundle) -> dict[tuple[str, str | None], Any]:
    """What a row says of its order beyond its item: (field, parcel) -> value, the parcel's tracking number for a
    shipment's courier and service (an order may have several parcels), None for the rest."""
    order = bundle.order
    values: dict[tuple[str, str | None], Any] = {  # in the order of the file's columns (README)
        (f, None): getattr(order, f) for f in Order.model_fields
        if f in order.model_fields_set and f not in ("number", "items", "shipments")}
    customer = bundle.customer
    if customer is not None:
        for f in (*CUSTOMER_COLUMNS, "handles"):
            if f not in bundle.customer_fields:
                continue
            if f == "handles":
                values.update({(f"customer_{ch}", None): handle for ch, handle in customer.handles.items()})
            else:
                values[(f"customer_{f}", None)] = getattr(customer, f)
    for shipment in order.shipments:
        for f in sorted(shipment.model_fields_set & {"courier", "service"}):
            values[(f, shipment.tracking_number)] = getattr(shipment, f)
    return values


@dataclass
class _OrderRows:
    """An order as its rows so far give it: the bundle they fold into, each row as read, and which row gave each of
    the order's values (what a later row's values are checked against)."""

    first: int
    bundle: OrderBundle
    read: list[tuple[int, dict[str, Any]]]
    given: dict[tuple[str, str | None], tuple[Any, int]]

    @classmethod
    def start(cls, number: int, bundle: OrderBundle, read: dict[str, Any]) -> _OrderRows:
        return cls(number, bundle, [(number, read)], {k: (v, number) for k, v in _order_values(bundle).items()})

    @property
    def numbers(self) -> list[int]:
        return [self.first, *self.bundle.further]

    def same_as(self, read: dict[str, Any]) -> int | None:
        """The earlier row of the order that ``read`` repeats exactly (its item too), or None."""
        return next((number for number, earlier in self.read if earlier == read), None)

    def fold(self, number: int, bundle: OrderBundle, read: dict[str, Any]) -> list[tuple[str, str]]:
        """Fold row ``number`` into the order; or, where it gives another value than an earlier row, leave the order
        as it is and return (field, reason) for each such value."""
        values = _order_values(bundle)
        faults = [(key[0], f"{_shown(value)} differs from {_shown(was)} in row {row}, the same order "
                           f"{bundle.order.number}: an order's rows repeat its values or leave them blank; correct one "
                           "of them")
                  for key, value in values.items() if key in self.given
                  for was, row in [self.given[key]] if was != value]
        if faults:
            return faults
        for key, value in values.items():
            self.given.setdefault(key, (value, number))
        self.read.append((number, read))
        old, new = self.bundle.order, bundle.order
        update: dict[str, Any] = {f: getattr(new, f) for f in new.model_fields_set - old.model_fields_set
                                  if f not in ("items", "shipments")}
        if "items" in new.model_fields_set:
            update["items"] = [*old.items, *new.items]
        parcels = {s.tracking_number: i for i, s in enumerate(old.shipments)}
        shipments = list(old.shipments)
        for shipment in new.shipments:
            if shipment.tracking_number not in parcels:
                shipments.append(shipment)
                continue
            i = parcels[shipment.tracking_number]
            shipments[i] = shipments[i].model_copy(update={
                f: getattr(shipment, f) for f in shipment.model_fields_set - shipments[i].model_fields_set})
        update["shipments"] = shipments
        customer, fields = self.bundle.customer, self.bundle.customer_fields
        if bundle.customer is not None and customer is None:
            customer, fields = bundle.customer, bundle.customer_fields
        elif bundle.customer is not None and customer is not None:
            more = bundle.customer_fields - fields
            changes = {f: getattr(bundle.customer, f) for f in more if f != "handles"}
            if "handles" in bundle.customer_fields:
                changes["handles"] = {**bundle.customer.handles, **customer.handles}
            customer, fields = customer.model_copy(update=changes), fields | bundle.customer_fields
        self.bundle = OrderBundle(customer, old.model_copy(update=update), fields, (*self.bundle.further, number))
        return []


def _parcels(bundle: OrderBundle) -> list[str]:
    return [s.tracking_number for s in bundle.order.shipments]


#: Why a row giving another order's parcel is rejected, and what to do.
PARCEL_REMEDY = "a parcel belongs to one order: check the number"


def _one_order_per_parcel(parsed: Parsed, name: str, store: Store) -> None:
    """Reject a row whose tracking number the store or an earlier row gives to another order, naming it.

    Why: the row would silently move the parcel, so the first order's customer quoting their own
    tracking number would be linked to a stranger's order (which one is right is the user's call;
    a partial update never erases what it did not mention, and this row did not mention that order).
    """
    claimed: dict[str, tuple[str, int | None]] = {
        tracking: (brief[0], None)
        for tracking, brief in store.shipment_briefs({t for b in parsed.records for t in _parcels(b)}).items()}
    records, rows = [], []
    for number, bundle in zip(parsed.rows, parsed.records):
        taken = next(((t, claimed[t]) for t in _parcels(bundle)
                      if t in claimed and claimed[t][0] != bundle.order.number), None)
        if taken is not None:
            tracking, (order, row) = taken
            where = f" (row {row})" if row is not None else ""
            parsed.errors.append(RowError(name, number, "tracking_number",
                                          f"{tracking} is already the parcel of order {order}{where}; {PARCEL_REMEDY}"))
            parsed.errors.extend(_order_refused(name, bundle.order.number, bundle.further, [number]))
            continue
        for tracking in _parcels(bundle):
            claimed.setdefault(tracking, (bundle.order.number, number))
        records.append(bundle)
        rows.append(number)
    parsed.records, parsed.rows = records, rows
    parsed.errors.sort(key=lambda e: e.row)


def _stripped(values: dict[str, Any]) -> dict[str, Any]:
    """Values without the spaces around them: a spreadsheet's "ORD-1 " is order ORD-1, "c6 " customer c6.

    Why: a padded copy would be another order or customer, not a repeat of the same one."""
    return {k: (v.strip() if isinstance(v, str) else v) for k, v in values.items()}


def _courier_name(value: Any, couriers: Sequence[Courier] | None, field_name: str) -> Any:
    """The configured name of the courier a cell names ("ups" -> "UPS"), so one courier is one name
    everywhere (escalation, the inbox filter, the weekly league); an unknown name is the row's error."""
    if not couriers or not isinstance(value, str):
        return value
    found = find_courier(couriers, value)
    if found is None:
        raise _FieldError(field_name, f"{value!r} is not a configured courier (known: "
                                      f"{', '.join(c.name for c in couriers)}); use one of those names or add it to "
                                      "[[couriers]] in doorstep.toml")
    return found.name


def _shipment_values(values: dict[str, Any], couriers: Sequence[Courier] | None, where: str,
                     status_words: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A shipment as given, its number normalised as posts are read, its courier as configured and its status
    read from a courier's word (a shipment has no description to keep the word in)."""
    values = _given(_stripped(values))
    _read_status(values, status_words, keep_word=False)
    if isinstance(values.get("tracking_number"), str):
        values["tracking_number"] = normalise_tracking_number(values["tracking_number"])
    if "courier" in values:
        values["courier"] = _courier_name(values["courier"], couriers, where + "courier")
    return values


def _given(values: dict[str, Any]) -> dict[str, Any]:
    """The values a row gives: a JSON null, ``""`` or a cell holding only spaces is "not given".

    Why: a re-import updates only what a row gives, and a blank-looking value is an export's way of
    saying "unknown", never "erase the e-mail we have" (nor "add an empty handle").
    """
    return {k: v for k, v in values.items() if v is not None and not (isinstance(v, str) and not v.strip())}


#: A number as a spreadsheet shows a long one it took for a number: "4.47701E+11" (its last digits are gone).
_SCIENTIFIC = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+")
#: What a phone number is written with: digits, a leading +, spaces, brackets, dots, dashes and slashes.
_PHONE_LIKE = re.compile(r"\+?[\d\s().\-/]*\d[\d\s().\-/]*")


def _phone_cell(value: Any, field_name: str) -> Any:
    """A customer's phone as a spreadsheet left it, or the row's error.

    Why: SMS replies and call backs go to the stored number, so a mangled one reaches a stranger or no one
    (exports audit). "4.47701E+11" lost its last digits: refused, with the remedy. A leading "'" (the
    spreadsheet's "this is text" marker) and a leading "=" ("=+447700900124", or '="+44 7700 900126"', the
    formula a spreadsheet writes for a number typed with its +) are dropped, but only when what follows is
    written like a phone number: neither is ever part of one, and what follows is exactly what was typed,
    no digit lost or guessed. Any other formula ("=B2") is refused: its value is not in the file, and a
    formula stored would run again in the spreadsheet of whoever exports it.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if _SCIENTIFIC.fullmatch(text):
        raise _FieldError(field_name, f"{text!r} is a number in scientific notation, its last digits lost: "
                                      "format the column as text in the spreadsheet (or export the phone numbers "
                                      "again) and import again")
    if text.startswith("'") and _PHONE_LIKE.fullmatch(text[1:].strip()):
        return text[1:].strip()
    if text.startswith("="):
        inner = text[1:].strip()
        if len(inner) >= 2 and inner[0] == inner[-1] == '"':
            inner = inner[1:-1].strip()
        if _PHONE_LIKE.fullmatch(inner):
            return inner
        raise _FieldError(field_name, f"{text!r} is a spreadsheet formula, not a phone number: export the values "
                                      "(format the column as text) and import again")
    return value


#: A value one of the row's checks refused (its fault is kept for the row's error).
_REFUSED: Any = object()

#: Why an order total is refused (NaN would be stored as NULL and read back as 0.0; inf counts as "over 250").
TOTAL_REASON = "not a finite amount ≥ 0; write an amount such as 59.50"


def _order_bundle(row: dict[str, Any], couriers: Sequence[Courier] | None = None,
                  zone: tzinfo | None = None, status_words: Mapping[str, str] | None = None) -> OrderBundle:
    """One order row, or a _RowFaults naming each of its fields that fails (ours and the model's checks),
    so one look at the file shows every fix (a row whose shape cannot be read is one _FieldError)."""
    row = _given(_stripped(row))
    faults: list[tuple[str, str]] = []

    def checked(check: Callable[..., Any], *args: Any) -> Any:
        """``check(*args)``, or _REFUSED with its fault kept for the row's error."""
        try:
            return check(*args)
        except _FieldError as exc:
            faults.append((exc.field, str(exc)))
            return _REFUSED

    ambiguous_total = _ambiguous_amount(row.get("total"))
    if ambiguous_total:
        row.pop("total")  # named once, with its remedy, where the model names its faults (the model's words differ)
    elif "total" in row:
        row["total"] = _decimal_point(row["total"])
    if "placed_at" in row:
        placed = checked(_time_cell, row["placed_at"], zone, "placed_at")
        if placed is not _REFUSED:  # else the fault is the row's error, and the model reads the value as it is
            row["placed_at"] = placed
    customer_id = row.get("customer_id")
    customer: Customer | None = None
    fields: set[str] = set()
    nested = row.pop("customer", None)
    if isinstance(nested, dict):
        if isinstance(nested.get("handles"), dict):
            nested["handles"] = _given(_stripped(nested["handles"])) or None
        nested = _given(_stripped(nested))
        nested_id = nested.get("id")
        if nested_id is not None and customer_id is not None and str(nested_id) != str(customer_id):
            raise _FieldError("customer.id", f"{nested_id!r} differs from customer_id {customer_id!r}; "
                                             "both must name the same customer")
        if "phone" in nested:
            nested["phone"] = checked(_phone_cell, nested["phone"], "customer.phone")
            if nested["phone"] is _REFUSED:
                del nested["phone"]
        nested.setdefault("id", customer_id)
        fields = set(nested) - {"id"}
        nested.setdefault("name", "")
        try:
            customer = Customer.model_validate(nested)
        except ValidationError as exc:
            faults.extend(("customer." + f, r) for f, r in _validation_faults(exc))
        if customer is not None:
            row.setdefault("customer_id", customer.id)
        elif isinstance(nested.get("id"), str):
            row.setdefault("customer_id", nested["id"])
    elif nested is not None:
        raise _FieldError("customer", "expected an object like {\"id\": \"c1\", \"name\": \"Ann Lee\"}")
    else:
        given = {k: row.pop(f"customer_{k}") for k in CUSTOMER_COLUMNS if f"customer_{k}" in row}
        handles = {ch: str(row.pop(f"customer_{ch}")) for ch in HANDLE_CHANNELS if f"customer_{ch}" in row}
        if (given or handles) and not customer_id:
            faults.append(("customer_id", "required when customer_* columns are given"))
        elif given or handles:
            fields = set(given) | ({"handles"} if handles else set())
            if "vip" in given:
                given["vip"] = checked(_flag, given["vip"], "customer_vip")
            if "phone" in given:
                given["phone"] = checked(_phone_cell, given["phone"], "customer_phone")
            given = {k: v for k, v in given.items() if v is not _REFUSED}  # a value refused is the row's error
            try:
                customer = Customer(id=str(customer_id), name=str(given.pop("name", "")),
                                    **{k: (str(v) if k != "vip" else v) for k, v in given.items()}, handles=handles)
            except ValidationError as exc:  # named by the row's column, e.g. customer_name or customer_x
                faults.extend(("customer_" + str(e["loc"][-1]), _reason(e)) for e in exc.errors())
    unknown_customer = [k for k in row if k.startswith("customer_") and k != "customer_id"]
    if unknown_customer:
        raise _FieldError(unknown_customer[0], f"unknown column (customer columns: customer_id, "
                                               f"{', '.join('customer_' + c for c in CUSTOMER_COLUMNS + HANDLE_CHANNELS)})")
    if "items" in row:
        items = checked(_json_cell, row.pop("items"), "items", '["lamp"] or [{"sku": "MUG", "qty": 2}]')
        if items is not _REFUSED:
            row["items"] = items
    item = {k: row.pop(f"item_{k}") for k in ITEM_COLUMNS if f"item_{k}" in row}
    if item and "items" in row:
        faults.append(("items", "give the items either as the items list or as item_* columns (one item a row), "
                                "not both"))
    elif item:
        if "quantity" in item:
            item["quantity"] = checked(_quantity, item["quantity"], "item_quantity")
        if "price" in item:
            item["price"] = checked(_amount, item["price"], "item_price")
        row["items"] = [{k: (str(v) if k in ("name", "sku") else v) for k, v in item.items() if v is not _REFUSED}]
    shipments = row.pop("shipments", None) or []
    if not isinstance(shipments, list):
        raise _FieldError("shipments", "expected a list of objects like {\"tracking_number\": ..., \"courier\": ...}")
    shipments = [checked(_shipment_values, s, couriers, f"shipments.{i}.", status_words) if isinstance(s, dict) else s
                 for i, s in enumerate(shipments)]
    tracking, courier, service = row.pop("tracking_number", None), row.pop("courier", None), row.pop("service", None)
    if tracking:
        if not courier:
            faults.append(("courier", "required when tracking_number is given"))
        else:
            shipments.append(checked(_shipment_values, {"tracking_number": tracking, "courier": courier,
                                                        "service": service}, couriers, ""))
    elif courier or service:
        faults.append(("tracking_number", "required when courier or service is given"))
    number = row.get("number")
    built = []
    for s in shipments:
        if s is _REFUSED:
            continue
        try:
            built.append(Shipment.model_validate({"order_number": number or "", **s}) if isinstance(s, dict) else s)
        except ValidationError as exc:
            faults.extend(_validation_faults(exc))
    row["shipments"] = built
    if ambiguous_total:
        faults.append(("total", ambiguous_total))
    try:
        order: Order | None = Order.model_validate(row)
    except ValidationError as exc:
        faults.extend(_validation_faults(exc))
        order = None
    if order is not None and not (math.isfinite(order.total) and order.total >= 0):
        faults.append(("total", TOTAL_REASON))
    if faults or order is None:
        raise _RowFaults(faults)
    return OrderBundle(customer=customer, order=order, customer_fields=frozenset(fields))


def _quantity(value: Any, field_name: str) -> int:
    """How many of an item a row gives: a whole number (0 for an item refunded whole)."""
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"\d+(?:\.0+)?", text):
        raise _FieldError(field_name, f"{value!r} is not a whole number: write how many, e.g. 2")
    return int(float(text))


def _amount(value: Any, field_name: str) -> float:
    """An amount of money a cell gives (an item's price), as an order total is read."""
    ambiguous = _ambiguous_amount(value)
    if ambiguous:
        raise _FieldError(field_name, ambiguous)
    value = _decimal_point(value)
    try:
        amount = float(value)
    except (TypeError, ValueError):
        amount = math.nan
    if isinstance(value, bool) or not (math.isfinite(amount) and amount >= 0):
        raise _FieldError(field_name, TOTAL_REASON)
    return amount


# ---------------------------------------------------------------- tracking
TRACKING_COLUMNS = Columns("tracking", ("tracking_number", "time", "status", "location", "description"),
                           required=("tracking_number", "time", "status"))


def columns_help(kind: str) -> str:
    """The columns ``doorstep import KIND`` reads, for its ``--help``."""
    return {"orders": ORDER_COLUMNS, "tracking": TRACKING_COLUMNS}.get(kind, mention_columns()).help()


def parse_tracking(path: str | Path, fmt: str | None = None, *, encoding: str | None = None,
                   columns: dict[str, str] | None = None, timezone: str | tzinfo | None = None,
                   status_words: Mapping[str, str] | None = None) -> Parsed:
    """Courier events; ``timezone``: the zone of times that give no offset (None: UTC); ``status_words``: the
    shop's own courier words for a status ([imports] tracking_statuses), read before the common ones."""
    build = functools.partial(_tracking_event, zone=time_zone(timezone), status_words=status_words)
    return _parse_each(path, fmt, build, encoding, spec=TRACKING_COLUMNS.mapped(columns))


def _tracking_event(row: dict[str, Any], zone: tzinfo | None = None,
                    status_words: Mapping[str, str] | None = None) -> TrackingEvent:
    """A courier's event, its number normalised as shipments' and posts' are (the courier's file
    may space it or write it in lower case; it must still meet its parcel), its status read from the courier's
    word (:func:`_read_status`)."""
    row = _given(_stripped(row))
    if isinstance(row.get("tracking_number"), str):
        row["tracking_number"] = normalise_tracking_number(row["tracking_number"])
    _read_status(row, status_words)
    faults: list[tuple[str, str]] = []
    _read_time(row, "time", zone, faults)
    try:
        event = TrackingEvent.model_validate(row)
    except ValidationError as exc:
        raise _RowFaults(faults + _validation_faults(exc)) from None
    if faults:
        raise _RowFaults(faults)
    return event


# ------------------------------------------------------------------ import
@dataclass
class ImportReport:
    file: str
    kind: str
    valid: int
    #: Rows written as new records.
    stored: int
    errors: list[RowError]
    #: Seconds per stage (parse, classify, link, store), for benchmarks and logs.
    timings: dict[str, float] = field(default_factory=dict)
    #: Rows that changed a stored record / that matched a stored record exactly.
    updated: int = 0
    unchanged: int = 0
    #: False when nothing was written because too many rows were rejected.
    committed: bool = True
    #: The share of rejected rows above which nothing is written (see [imports]).
    max_rejected_share: float = DEFAULTS.max_rejected_share
    #: Why the import stopped before the end (a full disk, ...), with how far it got.
    stopped: str | None = None
    #: What the run says once (columns a ``--map`` run did not read).
    notes: list[str] = field(default_factory=list)
    #: Rows that were further items of an order counted in ``valid`` (one row per item): new, updated and
    #: unchanged count orders, the file's rows are ``valid + folded`` and the rejected.
    folded: int = 0
    #: The posts this import wrote (a mentions import), as the pipeline reports them: which cases it opened
    #: is worked out from these (see :func:`_close_history`), never from ids or times.
    mention_ids: list[int] = field(default_factory=list)
    #: ``--history``: the cases this import opened are resolved as history; how many were, and why the others
    #: were not ("case 12: refused: ...").
    history: bool = False
    closed_as_history: int = 0
    left_open: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and self.stopped is None

    @property
    def rows(self) -> int:
        """The rows the file held."""
        return self.valid + self.folded + len(self.errors)

    @property
    def rejected_share(self) -> float:
        return len(self.errors) / self.rows if self.rows else 0.0

    def summary(self) -> str:
        what = f" for {self.valid} orders" if self.folded else ""
        line = (f"{self.file}: {self.rows} {self.kind} rows{what}: {self.stored} new, "
                f"{self.updated} updated, {self.unchanged} unchanged, {len(self.errors)} rejected")
        if self.history and self.committed:
            n = self.closed_as_history
            line += f"; {n} case{'' if n == 1 else 's'} closed as history"
            if self.left_open:
                line += (f" ({len(self.left_open)} left open: {self.left_open[0]}"
                         + (f"; and {len(self.left_open) - 1} more" if len(self.left_open) > 1 else "") + ")")
        if not self.committed:
            if self.max_rejected_share == 0:
                line += "; nothing written (--strict: fix the rejected rows, or drop --strict to write the valid ones)"
            else:
                line += (f"; nothing written: {self.rejected_share:.0%} of rows were rejected, more than "
                         f"{self.max_rejected_share:.0%} ([imports] max_rejected_share); fix the rows, check the file "
                         "and --format, or pass --max-rejected 1 to write the valid rows anyway")
        return line


def _should_commit(parsed: Parsed, max_rejected_share: float) -> bool:
    total = len(parsed.records) + parsed.folded + len(parsed.errors)
    if not parsed.errors:
        return True
    return total > 0 and len(parsed.errors) / total <= max_rejected_share


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ImportStopped(RuntimeError):
    """An import stopped between batches; what was written is named, re-running is safe."""

    def __init__(self, report: ImportReport, cause: BaseException):
        super().__init__(report.stopped)
        self.report, self.cause = report, cause


def _stop(report: ImportReport, store: Store, done_rows: int, next_row: int | None,
          exc: BaseException) -> ImportStopped:
    """Say how far the import got and why it stopped (a database fault names the database)."""
    if isinstance(exc, DATABASE_ERRORS):
        cause = str(StoreError.from_sqlite(store.path, exc))
    elif isinstance(exc, StoreError):
        cause = str(exc)
    else:
        cause = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    where = f" at row {next_row}" if next_row else ""
    report.stopped = (f"stopped{where} after writing {done_rows} of {report.valid} valid rows: {cause}. "
                      "Running the same import again finishes it (rows already written are skipped)")
    return ImportStopped(report, exc)


def _interrupted(report: ImportReport, done_rows: int, exc: KeyboardInterrupt) -> ImportStopped:
    """Ctrl-C between or during batches: the batch being written is rolled back, the earlier ones
    are kept, so say how many and that the same import finishes the job (else only "Aborted!")."""
    report.stopped = (f"interrupted (Ctrl-C) after writing {done_rows} of {report.valid} valid rows; running the "
                      "same import again finishes it (rows already written are skipped)")
    return ImportStopped(report, exc)


class LabelsPending(Protocol):
    """A batch being classified elsewhere: ``result()`` waits for its labels (or raises why not)."""

    #: After ``result()``: what else was worked out for the same posts, if anything: the numbers in
    #: each text (doorstep.linking.numbers_in with the pipeline's config), handed to the pipeline.
    also: list[Any] | None

    def result(self) -> list[Labels]: ...


class ClassifyAhead(Protocol):
    """Classifies batches in other processes while the import writes (classifiers/process.py's
    ClassifierProcesses, composed by the command line: this package never loads a classifier)."""

    #: How many batches it can classify at once (the import prepares that many ahead).
    processes: int

    def start(self) -> None:
        """Begin starting up (in the background) before the import needs it."""
        ...

    def submit(self, texts: Sequence[str], addressed: Sequence[bool | None] | None = None) -> LabelsPending | None:
        """None: nothing free to take them now (still starting); the import classifies them itself.
        ``addressed``: which posts are written to someone (:attr:`Mention.addressed`), for a classifier that reads it."""
        ...


@dataclass
class _Prepared:
    """A batch read ahead: its posts, those still to classify, and their labels on the way."""

    rows: Sequence[int]
    mentions: list[Mention] = field(default_factory=list)
    fresh: list[Mention] = field(default_factory=list)
    to_classify: list[Mention] = field(default_factory=list)
    pending: LabelsPending | None = None
    #: The numbers in the posts' texts, by (channel, external_id), when worked out with the labels.
    numbers: dict[tuple[str, str], Any] = field(default_factory=dict)
    #: What went wrong preparing it, raised when its turn to be written comes (so the stop names it).
    error: Exception | None = None


#: Fewer bytes than a row of any import file takes (channel, id, text and time, as JSON or CSV).
MIN_ROW_BYTES = 48


def _may_hold(path: str | Path, rows: int) -> bool:
    """Could the file hold ``rows`` rows? (From its size: cheaper than reading it.)"""
    try:
        return Path(path).stat().st_size >= rows * MIN_ROW_BYTES
    except OSError:
        return False


def import_mentions(path: str | Path, pipeline: Pipeline, fmt: str | None = None, channel: str | None = None, *,
                    encoding: str | None = None, max_rejected_share: float | None = None,
                    batch_rows: int | None = None, classify_ahead: ClassifyAhead | None = None,
                    columns: dict[str, str] | None = None, timezone: str | tzinfo | None = None,
                    history: bool = False) -> ImportReport:
    """Parse a whole file, then run the valid mentions through the pipeline in bounded batches.

    ``history``: the file is the shop's past posts, context for the team and not owed work: once they are
    written, each case the import opened is resolved (:func:`_close_history`).

    Each batch is classified before its write transaction opens (BEGIN IMMEDIATE), so the
    write lock is held for the writes only. Posts are written oldest first, so a reply's
    parent is stored before it and the reply joins its case.

    With ``classify_ahead`` (and more than one batch), the next batches' posts are sent to be
    classified elsewhere before this batch is written, so classifying and writing overlap; a batch
    whose labels are not on their way (the processes are still starting) is classified here with
    ``pipeline.classifier``. What is written is the same either way: the same labels, in the same
    batches, through the same ``pipeline.ingest``; a batch whose classification fails is not
    written, and the import stops there as it would on any other error.
    """
    limits = pipeline.config.imports
    share = limits.max_rejected_share if max_rejected_share is None else max_rejected_share
    size = batch_rows or limits.batch_rows
    started = time.perf_counter()
    if classify_ahead is not None and pipeline.classifier is not None and _may_hold(path, size + 1):
        # Started while the file is read, so that it is ready for the first batch.
        classify_ahead.start()
    parsed = parse_mentions(path, fmt, channel, encoding=encoding, max_post_chars=limits.max_post_chars,
                            columns=columns, timezone=timezone)
    timings = {"parse": time.perf_counter() - started, "classify": 0.0, "link": 0.0, "store": 0.0}
    report = ImportReport(str(path), "mentions", len(parsed.records), 0, parsed.errors, timings,
                          max_rejected_share=share, notes=parsed.notes, history=history)
    if not _should_commit(parsed, share):
        report.committed = False
        return report
    with _OutOfCollection() as kept:
        try:
            report = _write_mentions(parsed, report, pipeline, size, classify_ahead, timings, kept)
        except ImportStopped as stop:
            if history:  # what was written is history all the same (the summary says how many were closed)
                _close_history(stop.report, pipeline.store)
            raise
    if history:
        _close_history(report, pipeline.store)
    return report


#: Who resolves the cases a ``--history`` import opened (the audit trail's actor).
HISTORY_ACTOR = "import"


def _close_history(report: ImportReport, store: Store) -> None:
    """Resolve each case this import opened, as history: by "import", through doorstep.closing (audited, and a
    case that a pending reply or escalation or a colleague typing holds up is left open and named, not forced).

    Why: past posts imported as live ones opened cases that were open, overdue and P1 ("answer overdue
    146d10h"), hundreds of owed answers for a shop bringing its history (exports audit). Only the cases opened by
    this import's posts that hold no other post are closed: a case that existed before, or that a listener gave a
    post while the import ran, is someone's live work. A later live post reopens a closed one as it reopens any
    resolved case. A store fault is said on the summary, not raised: the posts are written either way.

    Each case is resolved at its last post: the conversation ended then, handled by the shop's previous tool.
    Resolved "now", a report of the history's weeks called each case "resolution late", months late because of
    the import (code review). The audit event still records when the import resolved it."""
    try:
        last_posts = _cases_opened(store, report.mention_ids)
        for closing in close_cases(store, last_posts, HISTORY_ACTOR, as_spam=False, now=utcnow(),
                                   resolved_at=last_posts):
            if closing.closed:
                report.closed_as_history += 1
            else:
                report.left_open.append(closing.words(as_spam=False))
    except Exception as exc:  # noqa: BLE001 - the import itself is done
        report.left_open.append(f"the cases could not be closed ({type(exc).__name__}: {' '.join(str(exc).split())})"
                                "; resolve them in the inbox")


def _chunks(values: Sequence[Any], size: int = MAX_PARAMETERS - 1) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _cases_opened(store: Store, mention_ids: Sequence[int]) -> dict[int, datetime]:
    """The cases that the posts ``mention_ids`` (one import's) opened and that hold no other post, oldest first,
    each with the time of its last post.

    A case is opened by a post (the pipeline's "case.open" event names it); one opened otherwise (for a parcel,
    by a split) was not the import's, even where only its posts joined it."""
    ours: dict[int, dict[int, str]] = collections.defaultdict(dict)  # case -> {post id: external id}, this import's
    for chunk in _chunks(sorted(set(mention_ids))):
        marks = ", ".join("?" * len(chunk))
        for row in store.db.query(f"select id, case_id, external_id from mentions where id in ({marks}) "
                                  "and case_id is not null", list(chunk)):
            ours[row["case_id"]][row["id"]] = row["external_id"]
    opened: dict[int, datetime] = {}
    for chunk in _chunks(sorted(ours)):
        marks = ", ".join("?" * len(chunk))
        held, last = {}, {}
        for row in store.db.query(f"select case_id, count(*) as posts, max(created_at) as last_post from mentions "
                                  f"where case_id in ({marks}) group by case_id", list(chunk)):
            held[row["case_id"]], last[row["case_id"]] = row["posts"], row["last_post"]
        for row in store.db.query(f"select case_id, details from audit_events where action = 'case.open' and case_id "
                                  f"in ({marks})", list(chunk)):
            case_id, details = row["case_id"], json.loads(row["details"] or "{}")
            if details.get("external_id") in ours[case_id].values() and held.get(case_id) == len(ours[case_id]):
                opened[case_id] = parse_time(last[case_id])
    return dict(sorted(opened.items()))


class _OutOfCollection:
    """Keeps what the import holds (the parsed file's records, then each written batch's labels)
    out of the cycle collector's full collections until the import ends.

    Each full collection walks every object alive, and an import of 20,000 posts spent about a
    tenth of its CPU there, each collection longer than the last (bench/RESULTS.md). ``gc.freeze``
    moves the objects tracked now to a permanent generation (at once, whatever their number), once
    the file is parsed and again after each batch; ``gc.unfreeze`` gives them back at the end, where
    any garbage among them is collected as usual. A process that froze objects itself (a forking
    server) is left as it is.
    """

    def __enter__(self) -> _OutOfCollection:
        self.active = not gc.get_freeze_count()
        self.keep()
        return self

    def keep(self) -> None:
        if self.active:
            gc.freeze()

    def __exit__(self, *_exc: object) -> None:
        if self.active:
            gc.unfreeze()


def _write_mentions(parsed: Parsed, report: ImportReport, pipeline: Pipeline, size: int,
                    classify_ahead: ClassifyAhead | None, timings: dict[str, float],
                    kept: _OutOfCollection) -> ImportReport:
    """:func:`import_mentions` once the file is parsed and may be written."""
    store = pipeline.store
    order = sorted(range(len(parsed.records)), key=lambda i: parsed.records[i].created_at)
    batches = list(_batches(order, size))
    ahead = classify_ahead if classify_ahead is not None and pipeline.classifier is not None and len(batches) > 1 \
        else None

    def prepare(batch: Sequence[int]) -> _Prepared:
        """Which of the batch's posts are new, and their labels asked for (errors kept for its turn)."""
        prepared = _Prepared(batch, [parsed.records[i] for i in batch])
        try:
            t0 = time.perf_counter()
            existing = store.existing_mention_ids((m.channel, m.external_id) for m in prepared.mentions)
            prepared.fresh = [m for m in prepared.mentions if (m.channel, m.external_id) not in existing]
            prepared.to_classify = [m for m in prepared.fresh if not m.outbound and m.labels is None]
            timings["store"] += time.perf_counter() - t0
            if ahead is not None and prepared.to_classify:
                prepared.pending = ahead.submit([m.text for m in prepared.to_classify],
                                                addressed_flags(prepared.to_classify, pipeline.config))
        except Exception as exc:  # noqa: BLE001 - raised when the batch's turn comes
            prepared.error = exc
        return prepared

    queued: collections.deque[_Prepared] = collections.deque()
    done = 0
    for number, batch in enumerate(batches):
        try:
            prepared = queued.popleft() if queued else prepare(batch)
            if prepared.error is not None:
                raise prepared.error
            if prepared.to_classify and pipeline.classifier is not None:
                t0 = time.perf_counter()
                if prepared.pending is not None:
                    labels = prepared.pending.result()
                    if prepared.pending.also is not None:
                        prepared.numbers = {(m.channel, m.external_id): found for m, found
                                            in zip(prepared.to_classify, prepared.pending.also, strict=True)}
                else:
                    labels = classify_mentions(pipeline.classifier, prepared.to_classify, pipeline.config)
                for mention, label in zip(prepared.to_classify, labels, strict=True):
                    mention.labels = label
                timings["classify"] += time.perf_counter() - t0
            if ahead is not None:
                # The next batches go to be classified while this one is written.
                while len(queued) < ahead.processes and number + 1 + len(queued) < len(batches):
                    queued.append(prepare(batches[number + 1 + len(queued)]))
            with store.write_transaction():
                result = pipeline.ingest(prepared.fresh, prepared.numbers)
        except KeyboardInterrupt as exc:
            raise _interrupted(report, done, exc) from exc
        except Exception as exc:
            raise _stop(report, store, done, parsed.rows[batch[0]], exc) from exc
        for key in ("link", "store"):
            timings[key] += result.timings.get(key, 0.0)
        report.stored += result.stored
        report.unchanged += len(prepared.mentions) - result.stored
        report.mention_ids += result.mention_ids
        done += len(prepared.mentions)
        kept.keep()
    return report


def import_orders(path: str | Path, store: Store, fmt: str | None = None, *, encoding: str | None = None,
                  max_rejected_share: float = DEFAULTS.max_rejected_share,
                  batch_rows: int = DEFAULTS.batch_rows, couriers: Sequence[Courier] | None = None,
                  columns: dict[str, str] | None = None, timezone: str | tzinfo | None = None,
                  status_words: Mapping[str, str] | None = None) -> ImportReport:
    """Orders with their customers and shipments; only what a row gives a value for is written.

    ``couriers``: the configured ``[[couriers]]``, which a ``courier`` cell must name (see
    :func:`parse_orders`). A row giving a parcel the store holds for another order is rejected:
    moving it silently would give the first order's customer a stranger's order."""
    parsed = parse_orders(path, fmt, encoding=encoding, couriers=couriers, columns=columns, timezone=timezone,
                          status_words=status_words)
    name = str(path)
    _one_order_per_parcel(parsed, name, store)
    # A customer new to the store needs a name; known ones may be named by id alone.
    valid: list[tuple[int, OrderBundle]] = []
    known: dict[str, bool] = {}
    for number, bundle in zip(parsed.rows, parsed.records):
        customer = bundle.customer
        if customer is not None and "name" not in bundle.customer_fields:
            if customer.id not in known:
                known[customer.id] = store.get_customer(customer.id) is not None
            if not known[customer.id]:
                parsed.errors.append(RowError(name, number, "customer_name",
                                              f"customer {customer.id!r} is new: give their name"))
                parsed.errors.extend(_order_refused(name, bundle.order.number, bundle.further, [number]))
                continue
        valid.append((number, bundle))
    parsed.errors.sort(key=lambda e: e.row)
    parsed.records = [b for _, b in valid]
    parsed.rows = [n for n, _ in valid]
    parsed.folded = sum(len(b.further) for b in parsed.records)
    report = ImportReport(name, "orders", len(valid), 0, parsed.errors, max_rejected_share=max_rejected_share,
                          notes=parsed.notes, folded=parsed.folded)
    if not _should_commit(parsed, max_rejected_share):
        report.committed = False
        return report
    done = 0
    for batch in _batches(valid, batch_rows):
        try:
            with store.write_transaction():
                statuses = []
                for _, bundle in batch:
                    changed = "unchanged"
                    if bundle.customer is not None:
                        changed = store.upsert_customer(bundle.customer, bundle.customer_fields)
                    status = store.upsert_order(bundle.order)
                    if status == "unchanged" and changed != "unchanged":
                        status = "updated"
                    statuses.append(status)
        except KeyboardInterrupt as exc:
            raise _interrupted(report, done, exc) from exc
        except Exception as exc:
            raise _stop(report, store, done, batch[0][0], exc) from exc
        report.stored += statuses.count("new")
        report.updated += statuses.count("updated")
        report.unchanged += statuses.count("unchanged")
        done += len(batch)
    return report


def import_tracking(path: str | Path, store: Store, fmt: str | None = None, *, encoding: str | None = None,
                    max_rejected_share: float = DEFAULTS.max_rejected_share,
                    batch_rows: int = DEFAULTS.batch_rows, columns: dict[str, str] | None = None,
                    timezone: str | tzinfo | None = None, status_words: Mapping[str, str] | None = None) -> ImportReport:
    """Events for shipments we do not know yet are kept: the order file may arrive later. ``status_words``: the
    shop's courier words ([imports] tracking_statuses), as :func:`parse_tracking` reads them."""
    parsed = parse_tracking(path, fmt, encoding=encoding, columns=columns, timezone=timezone,
                            status_words=status_words)
    report = ImportReport(str(path), "tracking", len(parsed.records), 0, parsed.errors,
                          max_rejected_share=max_rejected_share, notes=parsed.notes)
    if not _should_commit(parsed, max_rejected_share):
        report.committed = False
        return report
    done = 0
    for batch_index, batch in enumerate(_batches(parsed.records, batch_rows)):
        try:
            with store.write_transaction():
                added = store.add_tracking_events(batch)
        except KeyboardInterrupt as exc:
            raise _interrupted(report, done, exc) from exc
        except Exception as exc:
            raise _stop(report, store, done, parsed.rows[batch_index * batch_rows], exc) from exc
        report.stored += added
        report.unchanged += len(batch) - added
        done += len(batch)
    return report


# ------------------------------------------------------------------ the team sees each import
#: What an import run came to, in the words Settings and the Dashboard show.
IMPORT_OUTCOMES = ("ok", "rows rejected", "nothing written", "stopped", "file refused", "interrupted", "no rows")
#: Why a run that read no rows is not "ok": an empty or header-only nightly file (an export that failed
#: upstream) leaves linking on yesterday's orders, as a refused one does.
NO_ROWS = "the file has no rows (empty, or a header line only): check the export that wrote it"


def record_import(store: Store, kind: str, file: str | Path, started_at: datetime, *,
                  report: ImportReport | None = None, refused: str | None = None, interrupted: bool = False) -> None:
    """Record one ``doorstep import`` run (``import_runs``, m026): its counts and what went wrong.

    ``report`` for a run that read the file, ``refused`` (the one-line error) for a file refused whole
    (one that does not exist included). A run that read no rows at all is "no rows", never "ok".
    The message is the first rejected row (row, field, reason; "and N more") or why the run stopped,
    redacted as every stored error is. The caller says what to do when this write fails: the import
    itself is done either way."""
    from doorstep.redaction import redact

    counts = {"rows": 0, "new": 0, "updated": 0, "unchanged": 0, "rejected": 0}
    message = (refused or "").removeprefix(f"{file}: ")  # the file has its own column
    if report is not None:
        counts = {"rows": report.rows, "new": report.stored, "updated": report.updated,
                  "unchanged": report.unchanged, "rejected": len(report.errors)}
        if report.errors:
            first = report.errors[0]
            message = f"row {first.row}: {first.detail}"
            if len(report.errors) > 1:
                message += f" (and {len(report.errors) - 1} more)"
        if report.stopped:
            message = report.stopped + (f"; {message}" if message else "")
    if refused is not None:
        outcome = "file refused"
    elif interrupted:
        outcome = "interrupted"
    elif report is not None and report.stopped:
        outcome = "stopped"
    elif report is not None and not report.committed:
        outcome = "nothing written"
    elif report is not None and report.errors:
        outcome = "rows rejected"
    elif report is not None and report.valid == 0:
        outcome, message = "no rows", NO_ROWS
    else:
        outcome = "ok"
    with store.transaction():
        store.db.execute(
            "insert into import_runs (kind, file, started_at, finished_at, rows, new, updated, unchanged, rejected, "
            "outcome, message) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [kind, str(file), started_at.isoformat(), utcnow().isoformat(), counts["rows"], counts["new"],
             counts["updated"], counts["unchanged"], counts["rejected"], outcome, redact(message)[:2000]])


def recent_imports(store: Store, limit: int = 10) -> list[dict[str, Any]]:
    """The latest import runs, newest first, as :func:`record_import` wrote them."""
    return [dict(r) for r in store.db.query("select * from import_runs order by finished_at desc, id desc limit ?",
                                            [limit])]
