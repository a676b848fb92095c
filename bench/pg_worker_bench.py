"""Ingest throughput on PostgreSQL with 1, 2 and 4 ``doorstep worker`` processes (issue 16).

What it measures: POSTS posts (bench/pipeline_bench.py's templates, replies in threads)
deferred as ``classify`` jobs of 500, then K worker processes with the queues
``classify,ingest`` started at once and timed until every job has finished (``--until-empty``).
Posts/s = posts stored / that time. Each run gets a fresh schema; the machine's load average is
recorded with it, because on a shared machine it moves the figure more than anything else.

    python bench/pg_worker_bench.py [--posts 4000] [--workers 1,2,4] [--classifier baseline]
        [--url postgresql://postgres@127.0.0.1:5432/test] [--out bench/pg_worker_bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _posts(count: int) -> list:
    """Posts like bench/pipeline_bench.py's: its templates, 20,000 authors, one post in five a reply."""
    import random
    from datetime import datetime, timedelta, timezone

    from bench.pipeline_bench import TEMPLATES
    from doorstep.models import Mention

    rng = random.Random(16)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    posts: list[Mention] = []
    for i in range(count):
        parent = posts[rng.randrange(len(posts))] if posts and rng.random() < 0.2 else None
        text = rng.choice(TEMPLATES).format(order=f"LS-{rng.randrange(100000, 999999)}",
                                            tracking=f"1Z{rng.randrange(10**15, 10**16)}")
        posts.append(Mention(channel="x", external_id=str(10**15 + i), text=text,
                             created_at=start + timedelta(seconds=30 * i), author_handle=f"user{rng.randrange(20000)}",
                             in_reply_to=parent.external_id if parent else None,
                             thread_id=(parent.thread_id or parent.external_id) if parent else None))
    return posts


def run(url: str, posts: list, workers: int, classifier: str, config: Path) -> dict:
    from commands.jobs_queue import apply_schema, queue_posts
    from doorstep.store import Store

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"create schema {schema}")
    scoped = url + ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"
    try:
        store = Store(scoped)
        apply_schema(scoped)
        queue_posts(store, posts, "classify")
        store.close()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DOORSTEP_DB": scoped, "DOORSTEP_CONFIG": str(config)}
        load_before = os.getloadavg()
        started = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-m", "commands", "worker", "--queues", "classify,ingest",
                                   "--classifier", classifier, "--until-empty", "--name", f"bench{i}"],
                                  env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i in range(workers)]
        # A worker that found the queue empty early (the others hold every job) stops; the last one
        # to stop has drained both queues (classify jobs defer ingest jobs before they finish).
        errors = []
        for proc in procs:
            _, err = proc.communicate(timeout=3600)
            errors.append(err)
            if proc.returncode != 0:
                raise SystemExit(f"worker failed: {err[-2000:]}")
        with psycopg.connect(scoped) as conn:
            left = conn.execute("select count(*) from procrastinate_jobs where status in ('todo', 'doing') "
                                "and task_name in ('doorstep.classify', 'doorstep.ingest')").fetchone()[0]
            while left:  # a late ingest job deferred after the others stopped: one more worker drains it
                subprocess.run([sys.executable, "-m", "commands", "worker", "--queues", "classify,ingest",
                                "--classifier", classifier, "--until-empty"], env=env, cwd=ROOT, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                left = conn.execute("select count(*) from procrastinate_jobs where status in ('todo', 'doing') "
                                    "and task_name in ('doorstep.classify', 'doorstep.ingest')").fetchone()[0]
            elapsed = time.perf_counter() - started
            stored = conn.execute("select count(*) from mentions").fetchone()[0]
            failed = conn.execute("select count(*) from procrastinate_jobs where status = 'failed'").fetchone()[0]
            if failed:
                raise SystemExit(f"{failed} jobs failed:\n" + "\n".join(e[-3000:] for e in errors if e))
            cases = conn.execute("select count(*) from cases").fetchone()[0]
        return {"workers": workers, "posts": len(posts), "stored": stored, "cases": cases,
                "seconds": round(elapsed, 1), "posts_per_s": round(stored / elapsed, 1),
                "load_before": [round(x, 1) for x in load_before], "load_after": [round(x, 1) for x in os.getloadavg()]}
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"drop schema {schema} cascade")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=4000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--classifier", default="baseline")
    parser.add_argument("--url", default=os.environ.get("DOORSTEP_TEST_POSTGRES_URL",
                                                        "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    posts = _posts(args.posts)
    config = Path(tempfile.mkdtemp()) / "doorstep.toml"
    from commands.demo import DEFAULT_CONFIG

    config.write_text(Path(DEFAULT_CONFIG).read_text())
    results = []
    for workers in [int(w) for w in args.workers.split(",")]:
        result = run(args.url, posts, workers, args.classifier, config)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.out:
        Path(args.out).write_text(json.dumps({
            "machine": f"{platform.node()} {os.cpu_count()} cores, {platform.python_version()}",
            "classifier": args.classifier, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
