"""Inbox query latency at scale: 1M mentions in 200k cases.

    .venv/bin/python bench/inbox_bench.py --mentions 1000000 --cases 200000

Rows are written straight through SQL (not the pipeline) because this measures the
read path the console uses: Store.inbox() and Store.inbox_count() with brand /
courier / intent filters and full-text search, top 50 by priority.

    .venv/bin/python bench/inbox_bench.py --db 'postgresql://...?options=-csearch_path%3Dbench_1m' \
        --writer-elsewhere 5

adds a second process that commits one small row every 5 ms (as fast as it can after that) into a
table of another schema of the same PostgreSQL database (``bench_elsewhere``) while the queries run:
another shop, another application or a test run sharing the server. Its commits/s are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

from doorstep.models import INTENTS
from doorstep.sla import band_of
from doorstep.store import InboxQuery, Store

# Tweets use a large vocabulary with a long tail: a Zipf-weighted pool of 20,000 words, in
# which the domain words below sit among the most frequent (so searching "parcel" matches a
# large share of posts, and "smashed" a realistic few).
DOMAIN = ("parcel order refund driver late lost broken smashed card door rain tracking courier delivery "
          "mug tent jacket boots lamp sofa cushion thanks great help waiting again week days hours").split()
WORDS = DOMAIN + [f"w{i}" for i in range(20_000)]
CUM_WEIGHTS = list(__import__('itertools').accumulate(1.0 / (rank + 3) for rank in range(len(WORDS))))
BRANDS = ["Larkspur Home", "Fettle Outdoor"]
COURIERS = ["UPS", "DPD", "Evri", "Royal Mail", None]
STATUSES = ["new", "open", "pending_customer", "escalated", "resolved", "resolved", "resolved"]


def _with_queue_columns(row: tuple) -> tuple:
    """The row plus the columns the store derives on every write (doorstep.sla.queue_fields):
    unanswered cases, so the next deadline is the first response (none while pending)."""
    status, priority, first_due = row[1], row[2], row[9]
    running = status in ("new", "open", "escalated")
    return (*row, band_of(priority), first_due if running else None, "first response" if running else None,
            f"1 {first_due}" if running else "3")


def _case_rows(rng: random.Random, n_cases: int):
    for i in range(1, n_cases + 1):
        yield (i, rng.choice(STATUSES), round(rng.random() * 100, 1), rng.choice(BRANDS), rng.choice(COURIERS),
               rng.choice(["x", "x", "mastodon", "bluesky", "webhook"]), rng.choice(INTENTS), int(rng.random() < 0.5),
               "2026-11-%02dT10:00:00+00:00" % rng.randint(1, 20), "2026-11-%02dT11:00:00+00:00" % rng.randint(1, 28),
               "2026-11-%02dT18:00:00+00:00" % rng.randint(1, 28))


def _mention_rows(rng: random.Random, n_mentions: int, n_cases: int):
    for i in range(n_mentions):
        yield (str(i), " ".join(rng.choices(WORDS, cum_weights=CUM_WEIGHTS, k=12)),
               "2026-11-%02dT10:00:00+00:00" % rng.randint(1, 20), rng.randint(1, n_cases))


def fill_postgres(store: Store, n_mentions: int, n_cases: int, seed: int = 1) -> None:
    """The same rows as :func:`fill`, written with COPY (PostgreSQL's bulk load)."""
    rng = random.Random(seed)
    pg = store.db.pg
    with pg.transaction(), pg.cursor() as cur:
        with cur.copy("copy cases (id, status, priority, brand, courier, channel, intent, complaint, opened_at, "
                      "first_response_due, resolution_due, priority_band, due_at, due_kind, due_key, version, "
                      "mention_count) from stdin") as copy:
            for row in _case_rows(rng, n_cases):
                copy.write_row((*_with_queue_columns(row), 1, 5))
        with cur.copy("copy mentions (channel, external_id, text, created_at, case_id) from stdin") as copy:
            for row in _mention_rows(rng, n_mentions, n_cases):
                copy.write_row(("x", *row))
        cur.execute("select setval(pg_get_serial_sequence('cases', 'id'), %s)", [n_cases])
    pg.execute("vacuum analyze")  # what autovacuum does soon after a bulk load: visibility map, statistics


def fill(store: Store, n_mentions: int, n_cases: int, seed: int = 1) -> None:
    if store.dialect.postgres:
        fill_postgres(store, n_mentions, n_cases, seed)
        return
    rng = random.Random(seed)
    db = store.db
    with store.transaction():
        db.conn.executemany(
            "insert into cases (id, status, priority, brand, courier, channel, intent, complaint, opened_at, "
            "first_response_due, resolution_due, version, mention_count, priority_band, due_at, due_kind, due_key) "
            "values (?,?,?,?,?,?,?,?,?,?,?,1,5,?,?,?,?)",
            (_with_queue_columns(
                (
                    i,
                    rng.choice(STATUSES),
                    round(rng.random() * 100, 1),
                    rng.choice(BRANDS),
                    rng.choice(COURIERS),
                    rng.choice(["x", "x", "mastodon", "bluesky", "webhook"]),
                    rng.choice(INTENTS),
                    rng.random() < 0.5,
                    "2026-11-%02dT10:00:00+00:00" % rng.randint(1, 20),
                    "2026-11-%02dT11:00:00+00:00" % rng.randint(1, 28),
                    "2026-11-%02dT18:00:00+00:00" % rng.randint(1, 28),
                ))
                for i in range(1, n_cases + 1)
            ),
        )
        db.conn.executemany(
            "insert into mentions (channel, external_id, text, created_at, case_id) values ('x', ?, ?, ?, ?)",
            (
                (str(i), " ".join(rng.choices(WORDS, cum_weights=CUM_WEIGHTS, k=12)), "2026-11-%02dT10:00:00+00:00" % rng.randint(1, 20),
                 rng.randint(1, n_cases))
                for i in range(n_mentions)
            ),
        )
    db.execute("analyze")


def _percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return round(statistics.median(times), 1), round(times[max(0, int(len(times) * 0.95) - 1)], 1)


def measure(store: Store, query: InboxQuery, repeat: int) -> dict[str, float]:
    """Latency of the queue itself (top 50) and, separately, of the count shown beside it."""
    listing, counting = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        store.inbox(query)
        t1 = time.perf_counter()
        store.inbox_count(query)
        t2 = time.perf_counter()
        listing.append((t1 - t0) * 1000)
        counting.append((t2 - t1) * 1000)
    (l50, l95), (c50, c95) = _percentiles(listing), _percentiles(counting)
    return {"top50_p50_ms": l50, "top50_p95_ms": l95, "count_p50_ms": c50, "count_p95_ms": c95}


def _write_elsewhere(url: str, pause_ms: float, stop, commits) -> None:
    """Commit one row at a time into another schema until ``stop`` is set (see the docstring)."""
    import psycopg

    from doorstep.dialect import database_target

    with psycopg.connect(database_target(url).split("options=")[0].rstrip("?&"), autocommit=True) as pg:
        pg.execute("create schema if not exists bench_elsewhere")
        pg.execute("create table if not exists bench_elsewhere.events (id bigserial primary key, at text)")
        while not stop.is_set():
            pg.execute("insert into bench_elsewhere.events (at) values (now()::text)")
            with commits.get_lock():
                commits.value += 1
            time.sleep(pause_ms / 1000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mentions", type=int, default=1_000_000)
    parser.add_argument("--cases", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--db", default=None, help="a SQLite file (default: a new temporary one) or a "
                        "postgresql:// URL (its schema is filled when it holds no cases)")
    parser.add_argument("--writer-elsewhere", type=float, default=None, metavar="MS",
                        help="PostgreSQL: a second process commits into another schema every MS ms meanwhile")
    args = parser.parse_args()
    db = args.db or str(Path(tempfile.mkdtemp(prefix="doorstep-inbox-")) / "inbox.db")
    store = Store(db)
    if store.count("cases") == 0:
        t0 = time.perf_counter()
        fill(store, args.mentions, args.cases)
        print(f"filled {args.mentions:,} mentions / {args.cases:,} cases in {time.perf_counter() - t0:.0f} s")
    queries = {
        "top 50 open": InboxQuery(),
        "brand": InboxQuery(brand="Larkspur Home"),
        "courier": InboxQuery(courier="Evri"),
        "intent": InboxQuery(intent="lost_or_missing"),
        "brand+courier+intent": InboxQuery(brand="Fettle Outdoor", courier="DPD", intent="late_delivery"),
        "search 'smashed'": InboxQuery(search="smashed"),
        "search 'parcel' (frequent)": InboxQuery(search="parcel"),
        "search 'rain tent'": InboxQuery(search="rain tent"),
        "search + courier": InboxQuery(search="driver", courier="UPS"),
        "sla breached": InboxQuery(sla_state="breached"),
        "due order": InboxQuery(sort="due"),
        "snoozed": InboxQuery(snoozed="only"),
    }
    writer = None
    if args.writer_elsewhere is not None:
        import multiprocessing

        stop, commits = multiprocessing.Event(), multiprocessing.Value("q", 0)
        writer = multiprocessing.Process(target=_write_elsewhere, args=(db, args.writer_elsewhere, stop, commits))
        writer.start()
        while commits.value == 0 and writer.is_alive():
            time.sleep(0.05)
        started, first = time.perf_counter(), commits.value
    results = {name: measure(store, q, args.repeat) for name, q in queries.items()}
    elsewhere = None
    if writer is not None:
        rate = (commits.value - first) / (time.perf_counter() - started)
        stop.set()
        writer.join()
        elsewhere = f"{rate:.0f} commits/s into another schema while measuring"
    print(json.dumps({
        "writer_elsewhere": elsewhere,
        "mentions": store.count("mentions"), "cases": store.count("cases"),
        "database": "postgresql" if store.dialect.postgres else "sqlite",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "note": "top50 = Store.inbox() (the queue); count = Store.inbox_count() (the total beside it)",
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
