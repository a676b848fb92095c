"""The file listener: mentions, orders and tracking events from CSV or JSONL files.

An import never half-happens. Every row is parsed and validated first; the rows
that fail are reported with file, row number, field and reason; all valid rows are
then committed in one transaction. Re-importing the same file changes nothing,
because mentions are keyed by (channel, external_id), orders by number and tracking
events by (tracking number, time, status).

Formats (see README "Importing data" for the full column lists):

* mentions ``jsonl``/``csv``: the fields of :class:`doorstep.models.Mention`.
* mentions ``twcs``: the public "Customer Support on Twitter" layout. Inbound rows
  are customers; outbound rows are the brands' replies, which join the thread.
* orders: one row per order; ``customer_*`` columns embed the customer and
  ``tracking_number``/``courier`` columns embed a shipment (JSONL may instead nest
  ``customer`` and ``shipments`` objects).
* tracking: one row per courier event.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from doorstep.models import Customer, Mention, Order, Shipment, TrackingEvent
from doorstep.pipeline import Pipeline
from doorstep.store import Store

TWCS_TIME_FORMAT = "%a %b %d %H:%M:%S %z %Y"


@dataclass(frozen=True)
class RowError:
    file: str
    row: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: row {self.row}: {self.field}: {self.reason}"


@dataclass
class Parsed:
    """What a file held: the valid records and one error per rejected row."""

    records: list[Any] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def detect_format(path: Path, given: str | None) -> str:
    if given:
        return given
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            header = fh.readline()
        return "twcs" if "inbound" in header and "in_response_to_tweet_id" in header else "csv"
    raise ValueError(f"{path}: cannot tell the format from the file name; pass --format jsonl, csv or twcs")


def read_rows(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """Yield (row number, row dict) — or a RowError for a line that is not even a row.

    Row numbers are what a person sees in an editor: JSONL lines from 1, CSV data rows
    counted from 2 (row 1 is the header).
    """
    name = str(path)
    if fmt == "jsonl":
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, RowError(name, number, "(line)", f"not valid JSON: {exc.msg}")
                    continue
                if not isinstance(value, dict):
                    yield number, RowError(name, number, "(line)", "expected a JSON object")
                    continue
                yield number, value
    else:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            for number, row in enumerate(reader, start=2):
                if None in row:
                    yield number, RowError(name, number, "(row)", "more values than header columns")
                    continue
                yield number, {k: (v if v != "" else None) for k, v in row.items()}


def _errors_from_validation(name: str, number: int, exc: ValidationError) -> RowError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(row)"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return RowError(name, number, where, first["msg"] + more)


# ---------------------------------------------------------------- mentions
def parse_mentions(path: str | Path, fmt: str | None = None, channel: str | None = None) -> Parsed:
    path = Path(path)
    fmt = detect_format(path, fmt)
    if fmt == "twcs":
        return parse_twcs(path)
    result = Parsed()
    for number, row in read_rows(path, fmt):
        if isinstance(row, RowError):
            result.errors.append(row)
            continue
        row = dict(row)
        if channel and not row.get("channel"):
            row["channel"] = channel
        for key in ("matched",):
            if isinstance(row.get(key), str):
                row[key] = [v.strip() for v in row[key].split(",") if v.strip()]
        if isinstance(row.get("raw"), str):
            row["raw"] = {"text": row["raw"]}
        if fmt == "csv" and isinstance(row.get("outbound"), str):
            row["outbound"] = row["outbound"].strip().lower() in ("1", "true", "yes")
        row = {k: v for k, v in row.items() if v is not None}
        unknown = set(row) - set(Mention.model_fields) - {"labels", "id", "case_id"}
        if unknown:
            result.errors.append(RowError(str(path), number, ", ".join(sorted(unknown)), "unknown field"))
            continue
        row.pop("id", None)
        row.pop("case_id", None)
        row.pop("labels", None)
        try:
            result.records.append(Mention.model_validate(row))
        except ValidationError as exc:
            result.errors.append(_errors_from_validation(str(path), number, exc))
    return result


def parse_twcs(path: Path) -> Parsed:
    """Customer Support on Twitter rows -> mentions, with threads resolved within the file.

    Threads: each row's ``in_response_to_tweet_id`` is its parent. The thread id is the
    oldest ancestor present in the file, or the first missing ancestor's id, so that
    replies to a tweet outside the sample still share one thread.
    """
    name = str(path)
    result = Parsed()
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, row in read_rows(path, "csv"):
        if isinstance(row, RowError):
            result.errors.append(row)
            continue
        missing = [c for c in ("tweet_id", "author_id", "inbound", "created_at", "text") if not row.get(c)]
        if missing:
            result.errors.append(RowError(name, number, missing[0], "missing value"))
            continue
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
        inbound = inbound_text == "true"
        author = row["author_id"]
        try:
            result.records.append(
                Mention(
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
                )
            )
        except ValidationError as exc:
            result.errors.append(_errors_from_validation(name, number, exc))
    result.errors.sort(key=lambda e: e.row)
    return result


# ------------------------------------------------------------------ orders
ORDER_COLUMNS = (
    "number, customer_id, placed_at, brand, total, currency, promised_date, status, items (JSON list), "
    "customer_name, customer_email, customer_phone, customer_vip, customer_x, customer_mastodon, customer_bluesky, "
    "tracking_number, courier, service"
)


@dataclass
class OrderBundle:
    customer: Customer | None
    order: Order


def _parse_each(path: str | Path, fmt: str | None, build: Callable[[dict[str, Any]], Any]) -> Parsed:
    """Run ``build`` on every row, collecting records and one error per rejected row."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    result = Parsed()
    for number, row in read_rows(path, fmt):
        if isinstance(row, RowError):
            result.errors.append(row)
            continue
        try:
            result.records.append(build(row))
        except ValidationError as exc:
            result.errors.append(_errors_from_validation(str(path), number, exc))
        except (ValueError, TypeError) as exc:
            result.errors.append(RowError(str(path), number, getattr(exc, "field", "(row)"), str(exc)))
    return result


def parse_orders(path: str | Path, fmt: str | None = None) -> Parsed:
    return _parse_each(path, fmt, _order_bundle)


class _FieldError(ValueError):
    def __init__(self, field_name: str, reason: str):
        super().__init__(reason)
        self.field = field_name


def _order_bundle(row: dict[str, Any]) -> OrderBundle:
    row = dict(row)
    customer: Customer | None = None
    if isinstance(row.get("customer"), dict):
        customer = Customer.model_validate(row.pop("customer"))
        row.setdefault("customer_id", customer.id)
    elif row.get("customer_name"):
        handles = {ch: row.pop(f"customer_{ch}") for ch in ("x", "mastodon", "bluesky") if row.get(f"customer_{ch}")}
        customer = Customer(
            id=row.get("customer_id") or "",
            name=row.pop("customer_name"),
            email=row.pop("customer_email", None),
            phone=row.pop("customer_phone", None),
            vip=str(row.pop("customer_vip", "") or "").lower() in ("1", "true", "yes"),
            handles=handles,
        )
    for key in [k for k in row if k.startswith("customer_") and k != "customer_id"]:
        row.pop(key)
    if isinstance(row.get("items"), str):
        try:
            row["items"] = json.loads(row["items"])
        except json.JSONDecodeError as exc:
            raise _FieldError("items", f"not valid JSON: {exc.msg}") from None
    shipments = row.pop("shipments", None) or []
    tracking, courier, service = row.pop("tracking_number", None), row.pop("courier", None), row.pop("service", None)
    if tracking:
        if not courier:
            raise _FieldError("courier", "required when tracking_number is given")
        shipments.append({"tracking_number": tracking, "courier": courier, "service": service})
    number = row.get("number")
    row["shipments"] = [
        Shipment.model_validate({"order_number": number or "", **s}) if isinstance(s, dict) else s for s in shipments
    ]
    row = {k: v for k, v in row.items() if v is not None}
    return OrderBundle(customer=customer, order=Order.model_validate(row))


# ---------------------------------------------------------------- tracking
TRACKING_COLUMNS = "tracking_number, time, status, location, description"


def parse_tracking(path: str | Path, fmt: str | None = None) -> Parsed:
    return _parse_each(path, fmt, lambda row: TrackingEvent.model_validate({k: v for k, v in row.items() if v is not None}))


# ------------------------------------------------------------------ import
@dataclass
class ImportReport:
    file: str
    kind: str
    valid: int
    stored: int
    errors: list[RowError]
    #: Seconds per stage (parse, classify, link, store), for benchmarks and logs.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def import_mentions(path: str | Path, pipeline: Pipeline, fmt: str | None = None, channel: str | None = None) -> ImportReport:
    """Parse a whole file, then run every valid mention through the pipeline in one transaction."""
    started = time.perf_counter()
    parsed = parse_mentions(path, fmt, channel)
    parse_seconds = time.perf_counter() - started
    with pipeline.store.transaction():
        result = pipeline.ingest(parsed.records)
    timings = {"parse": parse_seconds, **result.timings}
    return ImportReport(str(path), "mentions", len(parsed.records), result.stored, parsed.errors, timings)


def import_orders(path: str | Path, store: Store, fmt: str | None = None) -> ImportReport:
    parsed = parse_orders(path, fmt)
    with store.transaction():
        customers = [b.customer for b in parsed.records if b.customer is not None]
        store.upsert_customers(customers)
        stored = store.upsert_orders(b.order for b in parsed.records)
    return ImportReport(str(path), "orders", len(parsed.records), stored, parsed.errors)


def import_tracking(path: str | Path, store: Store, fmt: str | None = None) -> ImportReport:
    """Events for shipments we do not know yet are kept: the order file may arrive later."""
    parsed = parse_tracking(path, fmt)
    with store.transaction():
        stored = store.add_tracking_events(parsed.records)
    return ImportReport(str(path), "tracking", len(parsed.records), stored, parsed.errors)
