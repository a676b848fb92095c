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

    .venv/bin/python bench/inbox_bench.py --mentions 1000000 --cases 200000 --other-network-share 0.02

puts each post on its case's own network (the default run puts every post on X) and that share of
each case's later posts on another network (a customer who opened the case on Bluesky and then wrote
on X), so a case is under more than one channel (``Store._other_channels``, m023). It adds the
Channel = X and Channel = Bluesky queues, ``Store.inbox_ids`` under X (the J / K walk) and the
whole-queue ``Store.inbox_summary``, each also "after a new post": the store's memo emptied before
each call, as it is the first time the console asks after a post moves the search mark.
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
#: The networks a customer may write on besides the case's own (a webhook case's customer, too).
NETWORKS = ["x", "mastodon", "bluesky"]


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


def _post_networks(case_channels: list[str | None], share: float, seed: int):
    """A function from a post's case id to the network the post came on: the case's own for its
    first post, and for each later one another network with probability ``share``.

    Why its own random stream: the other columns stay exactly the rows of the default run."""
    rng = random.Random(seed + 1)
    seen = bytearray(len(case_channels) + 1)

    def network(case_id: int) -> str:
        own = case_channels[case_id] or "x"
        if seen[case_id] and rng.random() < share:
            return rng.choice([n for n in NETWORKS if n != own])
        seen[case_id] = 1
        return own

    return network


def _case_channels(rows, n_cases: int) -> list[str | None]:
    """The channel each case was opened on, by id (index 0 unused), from ``select id, channel from cases``."""
    channels: list[str | None] = [None] * (n_cases + 1)
    for case_id, channel in rows:
        channels[int(case_id)] = channel
    return channels


def fill_postgres(store: Store, n_mentions: int, n_cases: int, seed: int = 1,
                  other_network_share: float | None = None) -> None:
    """The same rows as :func:`fill`, written with COPY (PostgreSQL's bulk load)."""
    rng = random.Random(seed)
    pg = store.db.pg
    with pg.transaction(), pg.cursor() as cur:
        with cur.copy("copy cases (id, status, priority, brand, courier, channel, intent, complaint, opened_at, "
                      "first_response_due, resolution_due, priority_band, due_at, due_kind, due_key, version, "
                      "mention_count) from stdin") as copy:
            for row in _case_rows(rng, n_cases):
                copy.write_row((*_with_queue_columns(row), 1, 5))
        network = None
        if other_network_share is not None:
            rows = cur.execute("select id, channel from cases").fetchall()
            network = _post_networks(_case_channels(rows, n_cases), other_network_share, seed)
        with cur.copy("copy mentions (channel, external_id, text, created_at, case_id) from stdin") as copy:
            for row in _mention_rows(rng, n_mentions, n_cases):
                copy.write_row((network(row[3]) if network else "x", *row))
        cur.execute("select setval(pg_get_serial_sequence('cases', 'id'), %s)", [n_cases])
    pg.execute("vacuum analyze")  # what autovacuum does soon after a bulk load: visibility map, statistics


def fill(store: Store, n_mentions: int, n_cases: int, seed: int = 1,
         other_network_share: float | None = None) -> None:
    """Write the cases and posts; every post on X, or with ``other_network_share`` each on its case's
    own network but that share of the later ones (see :func:`_post_networks`)."""
    if store.dialect.postgres:
        fill_postgres(store, n_mentions, n_cases, seed, other_network_share)
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
        if other_network_share is not None:
            rows = db.execute("select id, channel from cases").fetchall()
            network = _post_networks(_case_channels(rows, n_cases), other_network_share, seed)
            db.conn.executemany(
                "insert into mentions (channel, external_id, text, created_at, case_id) values (?, ?, ?, ?, ?)",
                ((network(row[3]), *row) for row in _mention_rows(rng, n_mentions, n_cases)))
        else:
            db.conn.executemany(
                "insert into mentions (channel, external_id, text, created_at, case_id) values ('x', ?, ?, ?, ?)",
                (
                    (str(i), " ".join(rng.choices(WORDS, cum_weights=CUM_WEIGHTS, k=12)),
                     "2026-11-%02dT10:00:00+00:00" % rng.randint(1, 20), rng.randint(1, n_cases))
                    for i in range(n_mentions)
                ),
            )
    db.execute("analyze")


def _percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return round(statistics.median(times), 1), round(times[max(0, int(len(times) * 0.95) - 1)], 1)


def measure(store: Store, query: InboxQuery, repeat: int, after_new_post: bool = False) -> dict[str, float]:
    """Latency of the queue itself (top 50) and, separately, of the count shown beside it.

    ``after_new_post``: the store's memo emptied before each call, as the first call after a post
    moved the search mark finds it (what a channel filter then looks up afresh: Store._other_channels)."""
    listing, counting = [], []
    for _ in range(repeat):
        if after_new_post:
            store._search_memo.clear()
        t0 = time.perf_counter()
        store.inbox(query)
        if after_new_post:
            store._search_memo.clear()
        t1 = time.perf_counter()
        store.inbox_count(query)
        t2 = time.perf_counter()
        listing.append((t1 - t0) * 1000)
        counting.append((t2 - t1) * 1000)
    (l50, l95), (c50, c95) = _percentiles(listing), _percentiles(counting)
    return {"top50_p50_ms": l50, "top50_p95_ms": l95, "count_p50_ms": c50, "count_p95_ms": c95}


def measure_call(store: Store, call, repeat: int, after_new_post: bool = False) -> dict[str, float]:
    """Latency of one store call (``call(store)``), the memo emptied before each when ``after_new_post``."""
    times = []
    for _ in range(repeat):
        if after_new_post:
            store._search_memo.clear()
        t0 = time.perf_counter()
        call(store)
        times.append((time.perf_counter() - t0) * 1000)
    p50, p95 = _percentiles(times)
    return {"p50_ms": p50, "p95_ms": p95}


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
    parser.add_argument("--other-network-share", type=float, default=None, metavar="SHARE",
                        help="each post on its case's own network, SHARE (e.g. 0.02) of each case's later posts "
                        "on another; adds the Channel queries, inbox_ids and inbox_summary (see the docstring)")
    args = parser.parse_args()
    if args.other_network_share is not None and not 0 <= args.other_network_share <= 1:
        parser.error(f"--other-network-share {args.other_network_share}: a share between 0 and 1, e.g. 0.02")
    db = args.db or str(Path(tempfile.mkdtemp(prefix="doorstep-inbox-")) / "inbox.db")
    store = Store(db)
    if store.count("cases") == 0:
        t0 = time.perf_counter()
        fill(store, args.mentions, args.cases, other_network_share=args.other_network_share)
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
    channels = None
    if args.other_network_share is not None:
        by_channel = {"Channel = X": InboxQuery(channel="x"), "Channel = Bluesky": InboxQuery(channel="bluesky")}
        for name, q in by_channel.items():
            results[name] = measure(store, q, args.repeat)
            results[f"{name}, after a new post"] = measure(store, q, args.repeat, after_new_post=True)
        held: list = [None]

        def live(s: Store) -> None:  # the console's counts on each rerun: the summary kept and brought up to date
            held[0] = s.inbox_summary_live(held[0])[1]

        calls = {
            "inbox_ids, Channel = X (J/K walk)": lambda s: s.inbox_ids(InboxQuery(channel="x")),
            "inbox_summary, whole queue": lambda s: s.inbox_summary(InboxQuery()),
            "inbox_summary_live, held (each console rerun)": live,
            "_other_channels alone": lambda s: s._other_channels(),
        }
        for name, call in calls.items():
            if name != "_other_channels alone":  # (remembered: only its first call after a post costs)
                results[name] = measure_call(store, call, args.repeat)
            results[f"{name}, after a new post"] = measure_call(store, call, args.repeat, after_new_post=True)
        pairs = store._other_channels()
        channels = {
            "cases under a channel besides their own": len({case_id for case_id, _ in pairs}),
            "(case, channel) pairs by channel": {c: sum(1 for _, ch in pairs if ch == c) for c in sorted({ch for _, ch in pairs})},
            "Channel = X ids (J/K)": len(store.inbox_ids(InboxQuery(channel="x"))),
            "Channel = Bluesky count": store.inbox_count(InboxQuery(channel="bluesky")),
        }
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
        "other_network_share": args.other_network_share,
        "other_networks": channels,
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
