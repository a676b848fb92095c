"""Soak test: Doorstep under concurrent work and faults, with nothing lost (issue 14).

For ``--duration`` seconds (default 600), all on 127.0.0.1:

* the worker (``doorstep run --skip outbox``): the X listener polling the X API emulator,
  which injects 429s, 5xx, stalled connections and slow answers, and the signed webhook;
* the webhook driven at ``--rate`` signed requests per second (default 50); a 5xx is retried,
  as a real sender would;
* new X posts published on the emulator every half second (the listener must fetch them);
* two imports (``doorstep import mentions``) of ``--import-rows`` posts each, one at 10 % and
  one at 40 % of the run;
* two console users (Streamlit AppTest, each in its own process) opening the inbox and cases,
  adding notes and replying on X cases;
* the sender (``doorstep run --job outbox``) killed with SIGKILL every ``--kill-every`` s
  (default 30) and started again.

At the end the load stops, the sender runs undisturbed until the outbox is empty, and the
script checks: every accepted webhook post, imported row and emulator post stored exactly
once; every queued X reply at the emulator exactly once; no page showed an exception; and it
reports the webhook's p95 latency and the longest reply delay. Results go to ``--out`` (JSON)
and stdout; bench/RESULTS.md records runs.

    .venv/bin/python bench/soak.py --duration 600
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from standins.recording import free_port  # noqa: E402 - after the repo is on sys.path

QUERY = "@LarkspurHelp OR @FettleCare OR larkspur OR fettle -is:retweet"
WEBHOOK_SECRET = "soak-webhook-secret"
PASSWORD = "soak-password-1"
PAGE = "from console import {module}\n{module}.render()\n"




def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def soak_config(webhook_port: int) -> str:
    """The demo shop's doorstep.toml (each brand answers from its own X account), with fast soak settings."""
    demo = (REPO / "demo" / "doorstep.toml").read_text(encoding="utf-8")
    head = demo.split("[channels.x]")[0]
    head = head.replace('timezone = "Europe/London"', 'timezone = "Europe/London"\nclassifier = "baseline"', 1)
    return head + f"""
[channels.x]
queries = ["{QUERY}"]
poll_seconds = 2

[channels.webhook]
host = "127.0.0.1"
port = {webhook_port}

[responders]
outbox_interval_s = 1
sending_lease_s = 10      # a killed sender's message is checked and re-sent 10 s later
backoff_base_s = 2
backoff_max_s = 20
channel_pause_s = 3
max_attempts = 100        # faults are injected on purpose: never give up in a soak
"""


# ------------------------------------------------------------------ console users (own process)
def console_user(db: str, config: str, username: str, until: float, log_path: str, seed: int, since: str) -> None:
    """Work cases as ``username`` until ``until`` (epoch s), one JSON line per page run.

    Replies go only to cases whose X post the listener fetched during the soak (``since``):
    those are the posts the emulator knows, so a reply to any other would be refused.
    """
    os.environ["DOORSTEP_DB"], os.environ["DOORSTEP_CONFIG"] = db, config
    from streamlit.testing.v1 import AppTest

    from console.auth import get_user
    from doorstep.store import InboxQuery, Store

    rng = random.Random(seed)
    store = Store(db)
    user = get_user(store, username)
    replies = 0
    with open(log_path, "a", encoding="utf-8") as log:

        def record(at: Any, page: str, case_id: int | None, started: float, action: str) -> None:
            entry = {"user": username, "page": page, "action": action, "case": case_id,
                     "seconds": round(time.monotonic() - started, 3),
                     "exceptions": [str(e.value)[:300] for e in at.exception],
                     "errors": [str(e.value)[:300] for e in at.error]}
            log.write(json.dumps(entry) + "\n")
            log.flush()

        def run(module: str, **state: Any) -> Any:
            at = AppTest.from_string(PAGE.format(module=module), default_timeout=120)
            at.session_state["user"] = user
            for key, value in state.items():
                at.session_state[key] = value
            return at

        n = 0
        while time.time() < until:
            n += 1
            started = time.monotonic()
            try:
                at = run("inbox").run()
                record(at, "inbox", None, started, "open")
                cases = store.inbox(InboxQuery(limit=30))
                fetched = [r["case_id"] for r in store.rows(
                    "select distinct case_id from mentions where channel = 'x' and outbound = 0 and ingested_at >= ? "
                    "and case_id is not null order by id desc limit 30", [since])]
                if rng.random() < 0.5 and fetched:
                    case = store.get_case(rng.choice(fetched))
                elif cases:
                    case = rng.choice(cases)
                else:
                    time.sleep(1)
                    continue
                if case is None:
                    continue
                started = time.monotonic()
                at = run("case_view", case_id=case.id).run()
                record(at, "case_view", case.id, started, "open")
                if at.exception:
                    continue
                started = time.monotonic()
                at.text_area(key=f"note_text_{case.id}").input(f"soak note {n} by {username}")
                at.button(key=f"FormSubmitter:note_{case.id}-Add note").click().run()
                record(at, "case_view", case.id, started, "note")
                if case.id in fetched and not store.outbound_for_case(case.id) and replies < 400:
                    started = time.monotonic()
                    # The reply box is in a form: its text reaches the page with the Queue reply click,
                    # in the same run (typed in a run of its own, it is lost and the page says
                    # "Nothing to send"; the soak at 35d8022 queued no reply that way).
                    send = at.button(key=f"send_{case.id}")
                    if send.disabled:
                        record(at, "case_view", case.id, started, "draft")
                        continue
                    at.text_area(key=f"draft_{case.id}").input(
                        f"Sorry to hear this, we are looking into it now ({username} {n})")
                    send.click().run()
                    record(at, "case_view", case.id, started, "reply")
                    replies += 1
            except Exception as exc:  # noqa: BLE001 - a harness failure is recorded, not fatal
                log.write(json.dumps({"user": username, "page": "harness", "action": "error", "case": None,
                                      "seconds": 0, "exceptions": [f"{type(exc).__name__}: {exc}"[:300]],
                                      "errors": []}) + "\n")
                log.flush()
                time.sleep(1)


# ------------------------------------------------------------------ the soak
class Soak:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="doorstep-soak-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.db = str(self.work / "soak.db")
        self.config_path = self.work / "doorstep.toml"
        self.webhook_port = free_port()
        self.config_path.write_text(soak_config(self.webhook_port), encoding="utf-8")
        self.stop_load = threading.Event()
        self.lock = threading.Lock()
        self.webhook_results: list[tuple[str, int, float]] = []  # external id, final status, seconds
        self.webhook_statuses: dict[int, int] = {}
        self.webhook_accepted: set[str] = set()
        self.feed_ids: list[str] = []
        self.imports: list[dict[str, Any]] = []
        self.sender_kills = 0
        self.faults: dict[str, int] = {}
        self.children: list[subprocess.Popen[bytes]] = []

    # --------------------------------------------------------------- set-up
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOORSTEP_", "X_"))}
        env.update(PYTHONPATH=str(REPO), DOORSTEP_DB=self.db, DOORSTEP_CONFIG=str(self.config_path),
                   DOORSTEP_WEBHOOK_SECRET=WEBHOOK_SECRET, X_API_BASE_URL=self.em.base_url,
                   X_BEARER_TOKEN="soak-bearer", X_API_KEY="soak", X_API_SECRET="soak", X_ACCESS_TOKEN="soak",
                   X_ACCESS_TOKEN_SECRET="soak", X_API_TIMEOUT="3",
                   LARKSPUR_X_ACCESS_TOKEN="soak-larkspur", FETTLE_X_ACCESS_TOKEN="soak-fettle")
        return env

    def build(self) -> None:
        from classifiers import load_classifier
        from console.auth import add_user
        from commands.demo import build_demo
        from doorstep.store import Store
        from standins.x_emulator import XEmulator

        feed = self.work / "x-feed.jsonl"
        build_demo(self.db, seed=7, customers=300, orders=1200, mentions=800, config_path=str(self.config_path),
                   classifier=load_classifier("baseline"), x_feed_path=feed, x_live_posts=40)
        store = Store(self.db)
        for username in ("ann", "bob"):
            add_user(store, username, PASSWORD, role="agent", name=username.title(), rounds=4)
        store.close()
        # slow_s > X_API_TIMEOUT: a "slow" post is created but its answer comes too late (in doubt).
        self.em = XEmulator.from_jsonl(feed, me={"username": "LarkspurHelp"}, reset_after_s=5, slow_s=4.0, stall_s=4.0,
                                       accounts={"soak-larkspur": {"username": "LarkspurHelp"},
                                                 "soak-fettle": {"username": "FettleCare"}}).start()
        for number in (1, 2):
            path = self.work / f"import-{number}.jsonl"
            with path.open("w", encoding="utf-8") as out:
                for i in range(self.args.import_rows):
                    out.write(json.dumps({
                        "channel": "shop_chat", "external_id": f"imp{number}-{i}", "created_at": now_iso(),
                        "text": f"Larkspur order question {i}: where is my parcel? (import {number})",
                        "author_handle": f"chat{i % 500}"}) + "\n")
            self.imports.append({"file": str(path), "rows": self.args.import_rows})

    def start(self, name: str, *command: str) -> subprocess.Popen[bytes]:
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        child = subprocess.Popen([sys.executable, *command], cwd=REPO, env=self.env(), stdout=log, stderr=log)
        self.children.append(child)
        return child

    def start_worker(self) -> subprocess.Popen[bytes]:
        return self.start("worker", "-m", "commands", "--db", self.db, "--config", str(self.config_path),
                          "run", "--skip", "outbox")

    def start_sender(self) -> subprocess.Popen[bytes]:
        return self.start("sender", "-m", "commands", "--db", self.db, "--config", str(self.config_path),
                          "run", "--job", "outbox")

    def wait_for_webhook(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.webhook_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"the webhook did not start on port {self.webhook_port}; see {self.work}/worker.log")

    # --------------------------------------------------------------- load
    def webhook_load(self) -> None:
        import requests

        session_local = threading.local()

        def post(n: int) -> None:
            session = getattr(session_local, "s", None) or requests.Session()
            session_local.s = session
            external_id = f"wh-{n}"
            body = json.dumps({"external_id": external_id, "created_at": now_iso(), "author_handle": f"web{n % 300}",
                               "text": f"@LarkspurHelp parcel {n} has not arrived, help"}).encode()
            signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
            started = time.monotonic()
            status = 0
            for _ in range(20):  # a sender retries 5xx and connection errors
                try:
                    response = session.post(f"http://127.0.0.1:{self.webhook_port}/mentions", data=body, timeout=30,
                                            headers={"X-Doorstep-Signature": signature,
                                                     "Content-Type": "application/json"})
                    status = response.status_code
                except requests.RequestException:
                    status = -1
                with self.lock:
                    self.webhook_statuses[status] = self.webhook_statuses.get(status, 0) + 1
                if 0 < status < 500:
                    break
                time.sleep(0.5)
            with self.lock:
                self.webhook_results.append((external_id, status, time.monotonic() - started))
                if status == 202:
                    self.webhook_accepted.add(external_id)

        interval = 1.0 / self.args.rate
        with ThreadPoolExecutor(max_workers=32) as pool:
            n, next_at = 0, time.monotonic()
            while not self.stop_load.is_set():
                pool.submit(post, n)
                n += 1
                next_at += interval
                self.stop_load.wait(max(0.0, next_at - time.monotonic()))

    def x_feeder(self) -> None:
        n = 0
        while not self.stop_load.wait(0.5):
            post_id = self.em.add_post({"text": f"@LarkspurHelp soak post {n}: my parcel is late", "username": f"xsoak{n % 200}",
                                        "created_at": now_iso()})
            with self.lock:
                self.feed_ids.append(post_id)
            n += 1

    def fault_injector(self) -> None:
        rng = random.Random(14)
        choices = [("429", "/2/tweets/search/recent"), ("500", "/2/tweets/search/recent"),
                   ("503", "/2/tweets/search/recent"), ("timeout", "/2/tweets/search/recent"),
                   ("500", "/2/tweets"), ("slow", "/2/tweets"), ("timeout", "/2/tweets"), ("429", "/2/tweets")]
        while not self.stop_load.wait(3.0):
            fault, path = rng.choice(choices)
            self.em.inject(fault, path=path)
            with self.lock:
                key = f"{fault} {path}"
                self.faults[key] = self.faults.get(key, 0) + 1

    def sender_killer(self) -> None:
        sender = self.start_sender()
        while not self.stop_load.wait(self.args.kill_every):
            sender.send_signal(signal.SIGKILL)
            sender.wait()
            self.sender_kills += 1
            sender = self.start_sender()
        self.sender = sender

    def run_import(self, index: int) -> None:
        entry = self.imports[index]
        started = time.monotonic()
        child = self.start(f"import-{index + 1}", "-m", "commands", "--db", self.db, "--config", str(self.config_path),
                           "import", "mentions", entry["file"], "--classifier", "baseline")
        entry["exit_code"] = child.wait()
        entry["seconds"] = round(time.monotonic() - started, 1)

    # --------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        duration = self.args.duration
        print(f"soak: building the shop in {self.work}", flush=True)
        self.build()
        self.worker = self.start_worker()
        self.wait_for_webhook()
        started = time.monotonic()
        since = now_iso()
        until = time.time() + duration
        users = [self.start(f"console-{name}", str(Path(__file__).resolve()), "console-user", "--db", self.db,
                            "--config", str(self.config_path), "--user", name, "--until", str(until),
                            "--log", str(self.work / "console.jsonl"), "--seed", str(seed), "--since", since)
                 for seed, name in enumerate(("ann", "bob"))]
        threads = [threading.Thread(target=fn, daemon=True)
                   for fn in (self.webhook_load, self.x_feeder, self.fault_injector, self.sender_killer)]
        for thread in threads:
            thread.start()
        import_threads = []
        for index, at in enumerate((0.1, 0.4)):
            timer = threading.Timer(duration * at, self.run_import, args=(index,))
            timer.start()
            import_threads.append(timer)
        print(f"soak: running for {duration:.0f} s", flush=True)
        while time.monotonic() - started < duration:
            time.sleep(1)
            if self.worker.poll() is not None:
                print(f"soak: the worker exited ({self.worker.returncode}); see {self.work}/worker.log", flush=True)
                break
        self.stop_load.set()
        for thread in threads:
            thread.join(120)
        self.em.clear_faults()
        for timer in import_threads:
            timer.join(1800)
        for user in users:
            user.wait(300)
        print("soak: load stopped; draining the outbox and the listener", flush=True)
        drained = self.drain()
        self.stop_children()
        return self.verify(drained, time.monotonic() - started)

    def drain(self, timeout: float = 300) -> bool:
        from doorstep.store import Store

        store = Store(self.db)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                pending = store.rows("select count(*) as n from outbound_messages where kind = 'reply' "
                                     "and status in ('queued', 'sending')")[0]["n"]
                with self.lock:
                    feed = list(self.feed_ids)
                stored = store.existing_mention_ids(("x", i) for i in feed)
                if pending == 0 and len(stored) == len(feed):
                    return True
                time.sleep(1)
            return False
        finally:
            store.close()

    def stop_children(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
        self.em.stop()

    # --------------------------------------------------------------- verify
    def verify(self, drained: bool, seconds: float) -> dict[str, Any]:
        conn = sqlite3.connect(self.db)
        q = lambda sql, *p: conn.execute(sql, p).fetchall()  # noqa: E731

        def stored_count(channel: str, ids: list[str]) -> tuple[int, int]:
            """(missing, duplicated) of ``ids`` on ``channel``."""
            found: dict[str, int] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                for ext, n in q(f"select external_id, count(*) from mentions where channel = ? and external_id in "
                                f"({','.join('?' * len(chunk))}) group by external_id", channel, *chunk):
                    found[ext] = n
            return sum(1 for i in ids if i not in found), sum(1 for n in found.values() if n > 1)

        webhook_missing, webhook_dup = stored_count("webhook", sorted(self.webhook_accepted))
        feed_missing, feed_dup = stored_count("x", list(self.feed_ids))
        imports = []
        for number, entry in enumerate(self.imports, start=1):
            ids = [f"imp{number}-{i}" for i in range(entry["rows"])]
            missing, dup = stored_count("shop_chat", ids)
            imports.append({**entry, "missing": missing, "duplicated": dup})

        replies = q("select id, status, in_reply_to, text, external_id, created_at, sent_at, attempts from outbound_messages "
                    "where kind = 'reply' and channel = 'x'")
        posted: dict[tuple[str, str], int] = {}
        for post in self.em.posted:
            reply = (post.get("reply") or {}).get("in_reply_to_tweet_id")
            key = (str(reply), post.get("text", ""))
            posted[key] = posted.get(key, 0) + 1
        at_emulator = [posted.get((str(r[2]), r[3]), 0) for r in replies]
        delays = [(datetime.fromisoformat(r[6]) - datetime.fromisoformat(r[5])).total_seconds()
                  for r in replies if r[1] == "sent" and r[5] and r[6]]
        latencies = sorted(s for _, status, s in self.webhook_results if status == 202)

        pages = [json.loads(line) for line in (self.work / "console.jsonl").read_text().splitlines()] \
            if (self.work / "console.jsonl").exists() else []
        pages, harness = [p for p in pages if p["page"] != "harness"], [p for p in pages if p["page"] == "harness"]
        result = {
            "load_s": self.args.duration, "elapsed_s": round(seconds), "rate_per_s": self.args.rate,
            "kill_every_s": self.args.kill_every,
            "drained": drained,
            "webhook": {
                "requests": len(self.webhook_results), "accepted": len(self.webhook_accepted),
                "statuses": {str(k): v for k, v in sorted(self.webhook_statuses.items())},
                "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
                "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1) if latencies else None,
                "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
                "missing": webhook_missing, "duplicated": webhook_dup,
            },
            "x_listener": {"published": len(self.feed_ids), "missing": feed_missing, "duplicated": feed_dup,
                           "faults_injected": self.faults},
            "imports": imports,
            "replies": {
                "queued": len(replies),
                "statuses": {s: sum(1 for r in replies if r[1] == s) for s in sorted({r[1] for r in replies})},
                "at_emulator_once": sum(1 for n in at_emulator if n == 1),
                "missing_at_emulator": sum(1 for n in at_emulator if n == 0),
                "duplicated_at_emulator": sum(1 for n in at_emulator if n > 1),
                "max_attempts": max((r[7] for r in replies), default=0),
                "max_delay_s": max(delays, default=None),
                "p95_delay_s": sorted(delays)[int(len(delays) * 0.95) - 1] if delays else None,
            },
            "sender_kills": self.sender_kills,
            "console": {
                "page_runs": len(pages),
                "by_action": {a: sum(1 for p in pages if p["action"] == a) for a in sorted({p["action"] for p in pages})},
                "pages_with_exception": sum(1 for p in pages if p["exceptions"]),
                "pages_with_error": sum(1 for p in pages if p["errors"]),
                "examples": [p for p in pages if p["exceptions"]][:5],
                # st.error boxes are also how the console shows a refused action or a message's
                # last delivery error: listed by kind, so a reader can tell them from failures.
                "error_kinds": dict(Counter(re.sub(r"[\\\u2060]", "", e)[:70] for p in pages
                                            for e in p["errors"]).most_common(10)),
                "p95_page_s": sorted(p["seconds"] for p in pages)[int(len(pages) * 0.95) - 1] if pages else None,
                "harness_errors": len(harness),
                "harness_examples": harness[:3],
            },
            "integrity_check": q("pragma integrity_check")[0][0],
            "rows": {t: q(f"select count(*) from {t}")[0][0] for t in ("mentions", "cases", "notes", "outbound_messages")},
            "workdir": str(self.work),
        }
        conn.close()
        reply_clicks = result["console"]["by_action"].get("reply", 0)
        lost = (webhook_missing + feed_missing + sum(i["missing"] for i in imports)
                + result["replies"]["missing_at_emulator"])
        duplicated = (webhook_dup + feed_dup + sum(i["duplicated"] for i in imports)
                      + result["replies"]["duplicated_at_emulator"])
        result["verdict"] = {
            "lost": lost, "duplicated": duplicated,
            "page_exceptions": result["console"]["pages_with_exception"],
            "webhook_5xx_final": sum(1 for _, s, _ in self.webhook_results if s >= 500 or s < 0),
            "imports_failed": sum(1 for i in imports if i.get("exit_code") != 0),
            # Queue reply clicked but no reply queued: the console users' driver no longer reaches
            # the composer, and "every reply once" would hold vacuously (it did, for 54 clicks).
            "reply_clicks": reply_clicks,
            "replies_queued": len(replies),
            "ok": bool(lost == 0 and duplicated == 0 and drained and not result["console"]["pages_with_exception"]
                       and all(i.get("exit_code") == 0 for i in imports) and result["integrity_check"] == "ok"
                       and (reply_clicks == 0 or len(replies) > 0)),
        }
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    user = sub.add_parser("console-user", help="(internal) one console user's loop")
    user.add_argument("--db", required=True)
    user.add_argument("--config", required=True)
    user.add_argument("--user", required=True)
    user.add_argument("--until", type=float, required=True)
    user.add_argument("--log", required=True)
    user.add_argument("--seed", type=int, default=0)
    user.add_argument("--since", required=True)
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--rate", type=float, default=50, help="webhook requests per second (default 50)")
    parser.add_argument("--kill-every", type=float, default=30, help="SIGKILL the sender every N s (default 30)")
    parser.add_argument("--import-rows", type=int, default=20000, help="posts per import file (default 20000)")
    parser.add_argument("--workdir", help="keep the database and logs here (default: a new temp folder)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.mode == "console-user":
        console_user(args.db, args.config, args.user, args.until, args.log, args.seed, args.since)
        return 0
    result = Soak(args).run()
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0 if result["verdict"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
