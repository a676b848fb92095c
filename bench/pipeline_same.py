"""Do two versions of the pipeline store the same thing? Run one import with each, compare the dumps.

    PYTHONPATH=<checkout A> .venv/bin/python bench/pipeline_same.py --out /tmp/a.jsonl [--mentions 6000]
    PYTHONPATH=<checkout B> .venv/bin/python bench/pipeline_same.py --out /tmp/b.jsonl [--mentions 6000]
    .venv/bin/python bench/pipeline_same.py --out /tmp/c.jsonl --classify-processes 1   # labels from a second process
    cmp /tmp/a.jsonl /tmp/b.jsonl   # or: diff

``--db postgresql://...`` (an empty schema, e.g. ``?options=-csearch_path%3Dsame_a``) runs it on PostgreSQL.

The shop is the demo's (reference dates, so both runs see the same history: open, resolved and
answered cases over three weeks), plus contact attempts sent on some of its cases so that posts
answer them. The feed is bench/pipeline_bench.py's synthetic one, written in the demo's last days
by the demo customers' handles (so posts join, reopen or pass by their earlier cases) and others.
The dump holds every row the import writes (posts, cases, audit, contact attempts), without the
wall-clock stamps (ingested_at, audit time). A speed change to the pipeline must leave it unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import tempfile
from datetime import timedelta
from pathlib import Path

from doorstep.config import load_config
from doorstep.contact_history import record_attempt
from doorstep.pipeline import Pipeline
from doorstep.store import Store, iso
from listeners.files import import_mentions
from pipeline_bench import TEMPLATES as BENCH_TEMPLATES  # bench/ is on the path when run as a script

REPO = Path(__file__).resolve().parent.parent

#: The bench's posts, and one that quotes both numbers (the linker's order-then-tracking path).
TEMPLATES = [*BENCH_TEMPLATES, "order {order} or was it {tracking}? still nothing"]

#: Columns stamped with the wall clock at write time: they differ between any two runs.
WALL_CLOCK = {"mentions": {"ingested_at"}, "audit_events": {"at"}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mentions", type=int, default=6000)
    parser.add_argument("--history", type=int, default=3000, help="demo posts before the import")
    parser.add_argument("--batch", type=int, default=None, help="rows per import batch (default: the config's)")
    parser.add_argument("--classify-processes", type=int, default=0,
                        help="classifier processes beside the import (classifiers/process.py); 0: in this process")
    parser.add_argument("--out", required=True)
    parser.add_argument("--db", default=None, help="where to build it (default: a new SQLite file); an empty "
                        "PostgreSQL schema's URL runs the comparison on PostgreSQL")
    args = parser.parse_args()

    from commands.demo import REFERENCE_NOW, build_demo

    workdir = Path(tempfile.mkdtemp(prefix="doorstep-same-"))
    db = args.db or str(workdir / "same.db")
    config_path = str(REPO / "demo" / "doorstep.toml")
    build_demo(db, seed=5, customers=300, orders=1200, mentions=args.history, config_path=config_path,
               live=False, x_live_posts=0)
    store = Store(db)
    start = REFERENCE_NOW - timedelta(days=2)
    rng = random.Random(11)
    # Follow-ups sent on some cases the day before the feed: the feed's posts answer some of them.
    cases = [r[0] for r in store.db.execute("select id from cases order by id").fetchall()]
    with store.transaction():
        for n, case_id in enumerate(sorted(rng.sample(cases, min(120, len(cases))))):
            sent = start - timedelta(hours=rng.uniform(1, 80))
            message_id = store.db.execute(
                "insert into outbound_messages (case_id, kind, channel, text, status, idempotency_key, created_at, "
                "sent_at) values (?, 'follow_up', 'email', 'any news?', 'sent', ?, ?, ?)",
                [case_id, f"same-{n}", iso(sent), iso(sent)]).lastrowid
            record_attempt(store, message_id=message_id, case_id=case_id, customer_id=None, brand=None, rule="bench",
                           channel="email", planned_at=sent, tz=start.tzinfo)  # type: ignore[arg-type]
    people = [
        (r[0], r[1], r[2] or f"guest{i}")
        for i, r in enumerate(store.db.execute(
            "select o.number, s.tracking_number, h.handle from orders o join shipments s on s.order_number = o.number "
            "left join customer_handles h on h.customer_id = o.customer_id and h.channel = 'x' order by o.number"
        ).fetchall())
    ]
    history = [r[0] for r in store.db.execute("select external_id from mentions where channel = 'x' order by id")]
    feed = workdir / "mentions.jsonl"
    with feed.open("w", encoding="utf-8") as fh:
        for i in range(args.mentions):
            number, tracking, handle = rng.choice(people)
            roll = rng.random()
            reply_to = (str(i - rng.randint(1, 50)) if i > 50 and roll < 0.15
                        else rng.choice(history) if history and roll < 0.2 else None)
            fh.write(json.dumps({
                "channel": "x",
                "external_id": str(i),
                "text": rng.choice(TEMPLATES).format(order=number, tracking=tracking),
                "created_at": (start + timedelta(seconds=i * 25)).isoformat(),
                "author_handle": handle if rng.random() < 0.6 else f"user{rng.randint(1, 3000)}",
                "author_followers": rng.choice([3, 40, 200, 1500, 25000]),
                "in_reply_to": reply_to,
            }) + "\n")

    pipeline = Pipeline(store, load_config(config_path), None)
    from classifiers import load_classifier

    pipeline.classifier = load_classifier("baseline")
    if args.classify_processes:
        import functools

        from classifiers.process import ClassifierProcesses
        from doorstep.linking import numbers_in

        with ClassifierProcesses(functools.partial(load_classifier, "baseline"), args.classify_processes,
                                 also=functools.partial(numbers_in, config=pipeline.config)) as ahead:
            report = import_mentions(feed, pipeline, batch_rows=args.batch, classify_ahead=ahead)
            sent = ahead.batches_sent
    else:
        report = import_mentions(feed, pipeline, batch_rows=args.batch)
        sent = 0
    digest = hashlib.sha256()
    with open(args.out, "w", encoding="utf-8") as out:
        for table in ("mentions", "cases", "audit_events", "contact_attempts"):
            skip = WALL_CLOCK.get(table, set())
            for row in store.rows(f"select * from {table} order by 1"):
                line = json.dumps([table, {k: v for k, v in row.items() if k not in skip}], sort_keys=True)
                out.write(line + "\n")
                digest.update(line.encode())
    answered = store.db.execute("select count(*) from contact_attempts where answered_at is not null").fetchone()[0]
    print(json.dumps({"stored": report.stored, "cases": store.count("cases"), "audit": store.count("audit_events"),
                      "attempts_answered": answered,
                      "batches_classified_by_processes": sent, "sha256": digest.hexdigest()}))


if __name__ == "__main__":
    main()
