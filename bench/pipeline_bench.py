"""Import + pipeline throughput: N synthetic mentions through parse -> classify -> link -> case.

    .venv/bin/python bench/pipeline_bench.py --mentions 100000 [--classifier baseline] [--classify-processes N]

Reports mentions/s overall (and per CPU second of this process, which shared cores disturb
less) and the split between storage, linking and classification. ``--classify-processes N`` (default:
what ``doorstep import mentions`` does on this machine) classifies in N spawned processes while the
import writes (classifiers/process.py); their start is inside the timed import, their CPU is
reported apart (``classifier_processes_cpu_seconds``). Run it against another
checkout by putting that first on PYTHONPATH (the bench takes doorstep/ and listeners/ from it).
The shop (customers, orders, shipments) comes from the demo generator so linking has
real work to do: a third of the posts cite an order or tracking number.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from doorstep.config import load_config
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.files import import_mentions

REPO = Path(__file__).resolve().parent.parent

TEMPLATES = [
    "@LarkspurHelp where is my order #{order}? tracking hasn't moved in days",
    "@UPSHelp parcel {tracking} says delivered but it's not here!!",
    "Driver never knocked, just left a card. Again. @EvriHelp",
    "Thanks @FettleCare, the tent arrived early and it's brilliant",
    "my mug arrived smashed to pieces, what now @LarkspurHelp",
    "Anyone else waiting forever for a refund from Fettle?",
    "lovely weather today, nothing to do with parcels",
    "@DPD_UK third time you've missed my delivery, I was home all day",
]


def synth_file(path: Path, n: int, orders: list[tuple[str, str, str]], seed: int = 1) -> None:
    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            number, tracking, handle = rng.choice(orders)
            text = rng.choice(TEMPLATES).format(order=number, tracking=tracking)
            reply_to = str(i - rng.randint(1, 50)) if i > 50 and rng.random() < 0.2 else None
            row = {
                "channel": "x",
                "external_id": str(i),
                "text": text,
                "created_at": (start + timedelta(seconds=i * 7)).isoformat(),
                "author_handle": handle if rng.random() < 0.5 else f"user{rng.randint(1, 40000)}",
                "author_followers": rng.choice([3, 40, 200, 1500, 25000]),
                "in_reply_to": reply_to,
            }
            fh.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mentions", type=int, default=100_000)
    parser.add_argument("--classifier", default="baseline")
    parser.add_argument("--db", default=None)
    parser.add_argument("--classify-processes", type=int, default=None,
                        help="classifier processes beside the import (default: as doorstep import mentions; 0: none)")
    parser.add_argument("--without-change-triggers", action="store_true",
                        help="SQLite: drop the search mark's (m019) and the inbox summary's change log's (m020) "
                        "triggers before the import, to measure what they cost it")
    args = parser.parse_args()

    import functools
    import resource

    from classifiers import load_classifier
    from classifiers.process import ClassifierProcesses, default_processes
    from doorstep.linking import numbers_in
    from commands.demo import build_demo

    workdir = Path(tempfile.mkdtemp(prefix="doorstep-bench-"))
    db = args.db or str(workdir / "bench.db")
    config_path = str(REPO / "demo" / "doorstep.toml")
    build_demo(db, seed=3, customers=500, orders=2000, mentions=0, config_path=config_path)
    store = Store(db)
    if args.without_change_triggers and not store.dialect.postgres:
        from doorstep.store.migrations import search_mark_trigger_names
        for name in [*search_mark_trigger_names(), "cases_summary_ai", "cases_summary_au", "cases_summary_ad",
                     "case_changes_keep"]:
            store.db.execute(f"drop trigger if exists {name}")
    orders = [
        (r[0], r[1], r[2] or "nobody")
        for r in store.db.execute(
            "select o.number, s.tracking_number, h.handle from orders o join shipments s on s.order_number = o.number "
            "left join customer_handles h on h.customer_id = o.customer_id and h.channel = 'x'"
        ).fetchall()
    ]
    feed = workdir / "mentions.jsonl"
    synth_file(feed, args.mentions, orders)

    pipeline = Pipeline(store, load_config(config_path), load_classifier(args.classifier))
    processes = default_processes() if args.classify_processes is None else args.classify_processes

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    started, cpu_started, children_started = time.perf_counter(), time.process_time(), children_cpu()
    if processes:
        with ClassifierProcesses(functools.partial(load_classifier, args.classifier), processes,
                                 also=functools.partial(numbers_in, config=pipeline.config)) as ahead:
            report = import_mentions(feed, pipeline, classify_ahead=ahead)
    else:
        report = import_mentions(feed, pipeline)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    children = children_cpu() - children_started
    assert report.stored == args.mentions, report
    print(json.dumps({
        "mentions": args.mentions,
        "classifier": pipeline.classifier.name,
        "seconds": round(elapsed, 1),
        "mentions_per_s": round(args.mentions / elapsed),
        # CPU seconds of this process: on shared cores the wall time mostly measures the neighbours.
        "cpu_seconds": round(cpu, 1),
        "mentions_per_cpu_s": round(args.mentions / cpu),
        "classify_processes": processes,
        # CPU of the classifier processes (start-up included), on the other core.
        "classifier_processes_cpu_seconds": round(children, 1),
        "load_average": [round(x, 2) for x in __import__("os").getloadavg()],
        "cases": store.count("cases"),
        "split_seconds": {k: round(v, 1) for k, v in report.timings.items()},
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}",
    }, indent=2))


if __name__ == "__main__":
    main()
