"""X listener throughput: N posts through the emulator -> tweepy -> pipeline -> SQLite store.

    .venv/bin/python bench/listener_bench.py --posts 10000 [--with-mentions] [--write]

Classification is left out (``Pipeline(..., classifier=None)``): the goal is that the listener
itself is never the bottleneck (>= 500 mentions/s). Three figures:

* fetch only: HTTP + JSON + Mention mapping, pages of 100, pipeline replaced by a counter;
* end to end: the same plus the pipeline (dedupe, linking, cases) and the store, per-page commits;
* the count check: exactly N rows, no duplicates.

``--write`` runs both variants (with and without the mentions timeline); their sections go in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from doorstep.clients import x_client
from doorstep.config import parse_config
from doorstep.pipeline import IngestResult, Pipeline
from doorstep.store import Store
from listeners.health import Backoff
from listeners.x import XListener
from standins.x_emulator import XEmulator

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = [
    "@ShopHelp where is my order #{n}? tracking hasn't moved in days",
    "@ShopHelp parcel 1Z999AA1012345678{d} says delivered but it's not here!!",
    "Thanks @ShopHelp, the tent arrived early and it's brilliant ({n})",
    "@ShopHelp my mug arrived smashed to pieces, what now? #{n}",
]


def feed(n: int) -> list[dict[str, Any]]:
    posts = []
    for i in range(n):
        minute, second = divmod(i, 60)
        hour, minute = divmod(minute, 60)
        posts.append({
            "text": TEMPLATES[i % len(TEMPLATES)].format(n=100000 + i, d=i % 10),
            "username": f"customer{i % 3000}", "name": f"Customer {i % 3000}", "followers": (i * 37) % 5000,
            "created_at": f"2026-11-{1 + hour // 24:02d}T{hour % 24:02d}:{minute:02d}:{second:02d}Z",
        })
    return posts


class CountingPipeline:
    """Stands in for the pipeline to time the listener alone."""

    def __init__(self) -> None:
        self.count = 0

    def ingest(self, mentions: Any) -> IngestResult:
        mentions = list(mentions)
        self.count += len(mentions)
        return IngestResult(received=len(mentions), stored=len(mentions))


def run(n: int, with_mentions: bool) -> dict[str, Any]:
    os.environ.setdefault("X_BEARER_TOKEN", "bench")
    config = parse_config({
        "brands": [{"name": "Shop", "handles": {"x": "ShopHelp"}, "keywords": ["shop"]}],
        "channels": {"x": {"queries": ["@ShopHelp -is:retweet"], "accounts": ["ShopHelp"] if with_mentions else [],
                           "max_results": 100, "max_pages": 10_000}},
    })
    out: dict[str, Any] = {"posts": n, "load": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp, XEmulator(feed(n), me={"username": "ShopHelp"}) as em:
        # 1. fetch only
        store = Store(Path(tmp) / "fetch.db")
        counter = CountingPipeline()
        listener = XListener(store, config, counter, client=x_client(config, base_url=em.base_url),  # type: ignore[arg-type]
                             backoff=Backoff())
        started = time.perf_counter()
        result = listener.poll_once()
        out["fetch_s"] = time.perf_counter() - started
        out["fetched"] = result.fetched
        out["pages"] = result.pages
        store.close()
        # 2. end to end
        for label in ("e2e",):
            store = Store(Path(tmp) / f"{label}.db")
            pipeline = Pipeline(store, config, classifier=None)
            listener = XListener(store, config, pipeline, client=x_client(config, base_url=em.base_url),
                                 backoff=Backoff())
            started = time.perf_counter()
            result = listener.poll_once()
            out[f"{label}_s"] = time.perf_counter() - started
            assert result.ok, result.errors
            rows = store.db.execute("select count(*), count(distinct external_id) from mentions").fetchone()
            assert rows == (n, n), (label, rows)
            out["stored_rows"], out["distinct_rows"] = rows
            out["stored"], out["duplicates"] = result.stored, result.duplicates
            out["cases"] = store.count("cases")
            store.close()
    assert out["stored_rows"] == out["distinct_rows"] == n, out
    return out


def render(out: dict[str, Any], command: str) -> str:
    fetch_rate = out["fetched"] / out["fetch_s"]
    e2e_rate = out["posts"] / out["e2e_s"]
    return "\n".join([
        "## Listeners: X emulator -> tweepy -> pipeline -> store",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, load average {out['load']:.1f} at start (other jobs share the "
        f"CPUs, so rates vary by +-30%). Command: `{command}`.",
        "",
        "| measure | posts | fetched | pages | seconds | rate |",
        "|---|---|---|---|---|---|",
        f"| fetch only (HTTP + JSON + mapping) | {out['posts']} | {out['fetched']} | {out['pages']} | "
        f"{out['fetch_s']:.2f} | {fetch_rate:,.0f} posts fetched/s |",
        f"| end to end, classifier off | {out['posts']} | {out['stored'] + out['duplicates']} | {out['pages']} | "
        f"{out['e2e_s']:.2f} | {e2e_rate:,.0f} mentions stored/s |",
        "",
        f"Count check: {out['stored_rows']} rows stored, {out['distinct_rows']} distinct external ids "
        f"(expected {out['posts']}); {out['duplicates']} duplicate deliveries absorbed; {out['cases']} cases opened.",
        "Goal: >= 500 mentions/s excluding classification. The listener's own share is the fetch-only row (the",
        "emulator runs in the same process, so it includes serving); the rest of the end-to-end time is the",
        "pipeline (dedupe, linking, cases) and SQLite, one transaction per page of 100 with its cursor.",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--with-mentions", action="store_true",
                        help="Also poll the account's mentions timeline (every post arrives twice).")
    parser.add_argument("--write", action="store_true",
                        help="Run with and without the mentions timeline (sections for bench/RESULTS.md).")
    args = parser.parse_args()
    command = ".venv/bin/python bench/listener_bench.py --posts {}{}{}".format(
        args.posts, " --with-mentions" if args.with_mentions else "", " --write" if args.write else "")
    variants = [False, True] if args.write else [args.with_mentions]
    sections = []
    for with_mentions in variants:
        out = run(args.posts, with_mentions)
        title = "search + mentions timeline (every post delivered twice)" if with_mentions else "recent search only"
        sections.append(render(out, command).replace("-> store", f"-> store: {title}", 1))
        print(sections[-1])
    if args.write:
        # The sections printed above go under "Listeners" in bench/RESULTS.md.
        print("\n(with --write: both variants ran; copy the sections above into bench/RESULTS.md)")

if __name__ == "__main__":
    main()
