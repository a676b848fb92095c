"""A batch of posts that fails to store: nothing lost, and listener health does not turn green over it.

- X (tweepy against the emulator), Mastodon and Bluesky (Mastodon.py and atproto against the local
  fakes of their test modules), on SQLite and PostgreSQL: a round whose batch fails (the classifier
  raises, the store says "database is locked" / a lock timeout) leaves the source's cursor where it
  was, the next round fetches the posts again and stores them, a restart stores nothing twice;
  health is ``error`` while the batch fails and ``ok`` after, with the last error and its time kept.
- PostgreSQL workers (the listener only stages its posts; ``classify``/``ingest`` jobs store them):
  a batch whose ingest job failed keeps the listener ``error`` on the rounds after it, until it is stored.
- The webhook: a POST whose posts cannot be stored is a retryable 5xx, and health shows it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
import requests

from doorstep.clients import mastodon_client, x_client
from doorstep.config import Config, parse_config
from doorstep.models import Labels
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.health import Backoff, listener_health

from conftest import KeywordClassifier
from test_listener_bluesky import HANDLE as BLUESKY_HANDLE
from test_listener_bluesky import PASSWORD as BLUESKY_PASSWORD
from test_listener_bluesky import FakeBluesky
from test_listener_mastodon import FakeMastodon
from test_listener_mastodon import TOKEN as MASTODON_TOKEN

X_TOKEN = "test-bearer-token-SECRET123"
X_QUERY = "@ShopHelp -is:retweet"


class FlakyClassifier(KeywordClassifier):
    """The classifier of a worker whose model fails while ``broken`` (out of memory, a lost file)."""

    def __init__(self) -> None:
        self.broken = False

    def classify(self, texts: Sequence[str]) -> list[Labels]:
        if self.broken:
            raise RuntimeError("classifier crashed: CUDA out of memory")
        return super().classify(texts)


class LockedStore:
    """While ``locked``, every write of posts fails as a busy database does on this backend."""

    def __init__(self, store: Store) -> None:
        self.locked = False
        real = store.insert_mentions

        def insert_mentions(mentions: Any) -> list[int]:
            if self.locked:
                if store.dialect.postgres:
                    raise psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
                raise sqlite3.OperationalError("database is locked")
            return real(mentions)

        store.insert_mentions = insert_mentions  # type: ignore[method-assign]


def _health(store: Store, name: str) -> dict[str, Any]:
    return {row["name"]: row for row in listener_health(store)}[name]


def _count(store: Store, channel: str) -> int:
    return store.db.execute("select count(*) from mentions where channel = ?", [channel]).fetchone()[0]


def _cursors(store: Store, prefix: str) -> dict[str, str]:
    return {r[0]: r[1] for r in store.db.execute("select name, value from cursors where name like ?", [prefix + "%"])}


def _fail_twice_then_store(store: Store, poll: Any, classifier: FlakyClassifier, channel: str,
                           cursors_before: dict[str, str], prefix: str) -> None:
    """Round 1: the classifier raises; round 2: the store is locked; round 3: both fixed.

    After each failed round nothing is stored, the cursors are as they were and health is ``error``
    (the second failure keeps it so); after round 3 every post is stored once and health is ``ok``
    with the last error and its time still on the row."""
    locked = LockedStore(store)
    stored_before = _count(store, channel)
    classifier.broken = True
    first = poll()
    assert not first.ok and "classifier crashed" in "; ".join(first.errors)
    assert _count(store, channel) == stored_before and _cursors(store, prefix) == cursors_before
    row = _health(store, channel)
    assert row["status"] == "error" and "classifier crashed" in row["last_error"]

    classifier.broken, locked.locked = False, True
    second = poll()
    assert not second.ok and second.fetched == first.fetched  # the same posts, fetched again
    assert _count(store, channel) == stored_before and _cursors(store, prefix) == cursors_before
    row = _health(store, channel)
    assert row["status"] == "error" and row["errors"] == 2
    assert ("database is locked" if not store.dialect.postgres else "lock timeout") in row["last_error"]

    locked.locked = False
    third = poll()
    assert third.ok, third.errors
    # Every post the failed rounds fetched comes again (a failed round stops at its failed page).
    assert third.fetched >= first.fetched > 0 and third.stored > 0
    row = _health(store, channel)
    assert row["status"] == "ok" and row["errors"] == 2
    assert row["last_error"] and row["last_error_at"] and row["last_error_at"] < row["last_success_at"]


# ------------------------------------------------------------------ X
def test_x_batch_that_fails_to_store_is_fetched_again_and_stored_once(store: Store,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from listeners.x import XListener
    from standins.x_emulator import XEmulator
    from test_listener_x import ME, feed, make_config

    monkeypatch.setenv("X_BEARER_TOKEN", X_TOKEN)
    config = make_config()
    classifier = FlakyClassifier()

    def listener(em: XEmulator) -> XListener:
        return XListener(store, config, Pipeline(store, config, classifier=classifier),
                         client=x_client(config, base_url=em.base_url), backoff=Backoff(sleep=lambda s: None))

    with XEmulator(feed(4), me=ME) as em:
        live = listener(em)
        assert live.poll_once().ok  # the cursors are set
        before = _cursors(store, "x:")
        for i in range(3):
            em.add_post({"text": f"@ShopHelp my parcel {i} is lost", "username": f"late{i}"})
        _fail_twice_then_store(store, live.poll_once, classifier, "x", before, "x:")
        assert _count(store, "x") == 7
        restarted = listener(em).poll_once()  # a restart: nothing fetched twice, nothing stored twice
    assert restarted.ok and restarted.stored == 0 and _count(store, "x") == 7
    assert _cursors(store, "x:") != before


# ------------------------------------------------------------------ Mastodon
def test_mastodon_batch_that_fails_to_store_is_fetched_again_and_stored_once(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from listeners.mastodon import MastodonListener

    monkeypatch.setenv("MASTODON_ACCESS_TOKEN", MASTODON_TOKEN)
    config = parse_config({"brands": [{"name": "Shop", "handles": {"mastodon": "shophelp"}}],
                           "channels": {"mastodon": {"limit": 5}}})  # mention notifications only
    classifier = FlakyClassifier()
    with FakeMastodon() as fake:
        monkeypatch.setenv("MASTODON_BASE_URL", fake.base_url)

        def listener() -> MastodonListener:
            return MastodonListener(store, config, Pipeline(store, config, classifier=classifier),
                                    client=mastodon_client(config), backoff=Backoff(sleep=lambda s: None))

        fake.post("@shophelp where is my parcel", "first@other.social")
        live = listener()
        assert live.poll_once().ok and _count(store, "mastodon") == 1  # the cursor is set
        before = _cursors(store, "mastodon:")
        for i in range(7):  # more than one page: min_id paging
            fake.post(f"@shophelp parcel {i} lost", f"user{i}@other.social")
        _fail_twice_then_store(store, live.poll_once, classifier, "mastodon", before, "mastodon:")
        assert _count(store, "mastodon") == 8
        restarted = listener().poll_once()
    assert restarted.ok and restarted.fetched == 0 and _count(store, "mastodon") == 8


# ------------------------------------------------------------------ Bluesky
def test_bluesky_batch_that_fails_to_store_is_fetched_again_and_stored_once(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from listeners.bluesky import BlueskyListener

    monkeypatch.setenv("BLUESKY_HANDLE", BLUESKY_HANDLE)
    monkeypatch.setenv("BLUESKY_APP_PASSWORD", BLUESKY_PASSWORD)
    bluesky_config = parse_config({"brands": [{"name": "Shop", "handles": {"bluesky": BLUESKY_HANDLE}}],
                                   "channels": {"bluesky": {"queries": ["parcel"], "limit": 5}}})
    classifier = FlakyClassifier()
    bluesky_fake = FakeBluesky().__enter__()
    monkeypatch.setenv("BLUESKY_BASE_URL", bluesky_fake.base_url)

    def listener() -> BlueskyListener:
        return BlueskyListener(store, bluesky_config, Pipeline(store, bluesky_config, classifier=classifier),
                               backoff=Backoff(sleep=lambda s: None))

    bluesky_fake.post("@shophelp.bsky.social where is my parcel", "first.bsky.social")
    live = listener()
    assert live.poll_once().ok and _count(store, "bluesky") == 1
    before = _cursors(store, "bluesky:")
    for i in range(3):
        bluesky_fake.post(f"@shophelp.bsky.social parcel {i} lost", f"user{i}.bsky.social")
    _fail_twice_then_store(store, live.poll_once, classifier, "bluesky", before, "bluesky:")
    assert _count(store, "bluesky") == 4
    restarted = listener().poll_once()
    bluesky_fake.__exit__(None, None, None)
    assert restarted.ok and restarted.stored == 0 and _count(store, "bluesky") == 4


# ------------------------------------------------------------------ PostgreSQL workers
@pytest.fixture
def runtime(postgres_url: str, config: Config) -> Any:
    from commands.jobs_queue import Runtime, apply_schema, set_runtime

    Store(postgres_url).close()
    apply_schema(postgres_url)
    rt = Runtime(postgres_url, config)
    rt._classifier = KeywordClassifier()
    set_runtime(rt)
    yield rt
    set_runtime(None)
    rt.close()


def _run_jobs(runtime: Any) -> None:
    """What ``doorstep worker --queues classify,ingest`` does until those queues are empty."""
    from commands.jobs_queue import build_app

    build_app(runtime.db, runtime.config).run_worker(queues=["classify", "ingest"], wait=False, concurrency=1,
                                                     fetch_job_polling_interval=0.1)


def test_a_failed_ingest_job_keeps_the_listener_failing_until_its_posts_are_stored(
        runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL the listener's round only stages its posts and moves its cursor; the ingest job
    stores them. When that job fails (a post PostgreSQL refuses), the posts are kept in job_batches
    and the job writes the error; the listener's next round, which fetches nothing new, must not
    turn the listener back to ``ok`` while the posts are still not stored."""
    from commands.jobs_queue import QueuedPipeline
    from listeners.x import XListener
    from standins.x_emulator import XEmulator
    from test_listener_x import ME, make_config

    monkeypatch.setenv("X_BEARER_TOKEN", X_TOKEN)
    real = Pipeline._store_mention
    refusing = {"on": True}

    def refuse(self: Pipeline, m: Any, *args: Any) -> None:
        if refusing["on"] and "REFUSED" in m.text:
            raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        real(self, m, *args)

    monkeypatch.setattr(Pipeline, "_store_mention", refuse)
    config = make_config(accounts=[])
    store = runtime.store()
    with XEmulator(me=ME) as em:
        listener = XListener(store, config, QueuedPipeline(store, config), client=x_client(config, base_url=em.base_url),
                             backoff=Backoff(sleep=lambda s: None))
        em.add_post({"text": "@ShopHelp parcel late", "username": "jane"})
        em.add_post({"text": "@ShopHelp parcel REFUSED lost", "username": "joe"})
        assert listener.poll_once().fetched == 2
        _run_jobs(runtime)
        assert _count(store, "x") == 1
        row = _health(store, "x")
        assert row["status"] == "error" and "kept for a retry" in row["last_error"]
        failed_at = row["last_error_at"]

        quiet = listener.poll_once()  # nothing new: the round itself is fine
        assert quiet.ok and quiet.fetched == 0
        row = _health(store, "x")
        assert row["status"] == "error", row
        assert "kept for a retry" in row["last_error"] and row["last_error_at"] == failed_at

        # Fixed and retried (as a person does from the failed job): stored, and the next round is ok.
        refusing["on"] = False
        with psycopg.connect(runtime.db, autocommit=True) as conn:
            conn.execute("update procrastinate_jobs set status = 'todo', attempts = 0 where status = 'failed'")
        _run_jobs(runtime)
        assert _count(store, "x") == 2
        assert listener.poll_once().ok
    row = _health(store, "x")
    assert row["status"] == "ok" and row["last_error_at"] == failed_at


def test_a_classify_job_out_of_retries_keeps_the_listener_failing_and_names_the_batch(
        runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``classify`` job whose classifier keeps failing writes its error on each failed try; once it has
    failed for good, the listener's next round says how many posts are not stored and which batch holds them."""
    from commands.jobs_queue import QueuedPipeline
    from listeners.x import XListener
    from standins.x_emulator import XEmulator
    from test_listener_x import ME, make_config

    monkeypatch.setenv("X_BEARER_TOKEN", X_TOKEN)
    runtime._classifier = FlakyClassifier()
    runtime._classifier.broken = True
    config = make_config(accounts=[])
    store = runtime.store()
    with XEmulator(me=ME) as em:
        listener = XListener(store, config, QueuedPipeline(store, config), client=x_client(config, base_url=em.base_url),
                             backoff=Backoff(sleep=lambda s: None))
        for i in range(3):
            em.add_post({"text": f"@ShopHelp parcel {i} late", "username": f"user{i}"})
        assert listener.poll_once().fetched == 3
        _run_jobs(runtime)  # fails; retried later by procrastinate: not yet counted as kept
        row = _health(store, "x")  # ... but each failed try is in health at once
        assert row["status"] == "error" and "classifier crashed" in row["last_error"]
        assert listener.poll_once().ok and _health(store, "x")["status"] == "ok"
        with psycopg.connect(runtime.db, autocommit=True) as conn:  # its last retry failed too
            conn.execute("update procrastinate_jobs set status = 'failed' where task_name = 'doorstep.classify'")
            (batch,) = [r[0] for r in conn.execute("select id from job_batches")]
        assert listener.poll_once().ok
        row = _health(store, "x")
        assert row["status"] == "error" and _count(store, "x") == 0
        assert row["last_error"].startswith("x: 3 posts fetched earlier are not stored")
        assert f"job_batches id {batch}" in row["last_error"]
        first_at, errors = row["last_error_at"], row["errors"]
        assert listener.poll_once().ok  # said once, not once a round
        assert _health(store, "x")["last_error_at"] == first_at and _health(store, "x")["errors"] == errors


# ------------------------------------------------------------------ webhook
SECRET = "webhook-shared-SECRET"


def _hook_config() -> Config:
    return parse_config({
        "brands": [{"name": "Shop", "handles": {"x": "ShopHelp"}, "keywords": ["shop"]}],
        "channels": {"webhook": {"port": 0, "default_channel": "courier_page"}},
    })


def _post(url: str, items: list[dict[str, Any]]) -> requests.Response:
    from listeners.webhook import SIGNATURE_HEADER, sign

    body = json.dumps(items).encode()
    return requests.post(url + "/mentions", data=body, timeout=10,
                         headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, SECRET)})


def _item(i: int) -> dict[str, Any]:
    return {"external_id": f"page-{i}", "text": f"Parcel {i} for shop left in the rain", "author_handle": f"user{i}",
            "created_at": "2026-11-20T10:00:00Z"}


class ValueErrorClassifier(FlakyClassifier):
    """A model that fails with a ValueError (an output of the wrong shape): a fault of ours, not of the post."""

    def classify(self, texts: Sequence[str]) -> list[Labels]:
        if self.broken:
            raise ValueError("model output has shape (0, 7), expected (2, 7)")
        return super().classify(texts)


def test_webhook_batch_that_fails_to_store_is_a_retryable_5xx_and_shows_in_health(db_url: str) -> None:
    from listeners.webhook import WebhookServer

    classifier = ValueErrorClassifier()
    with WebhookServer(db_url, _hook_config(), secret=SECRET, classifier=classifier) as srv:
        locked = LockedStore(srv.store)
        locked.locked = True
        busy = _post(srv.url, [_item(1), _item(2)])
        assert busy.status_code == 503 and busy.headers.get("Retry-After"), busy.text
        assert _count(srv.store, "courier_page") == 0
        row = _health(srv.store, "webhook")
        assert row["status"] == "error" and row["last_error"] and row["errors"] == 1

        locked.locked, classifier.broken = False, True
        broken = _post(srv.url, [_item(1), _item(2)])
        assert 500 <= broken.status_code < 600, broken.text
        assert _count(srv.store, "courier_page") == 0
        row = _health(srv.store, "webhook")
        assert row["status"] == "error" and "model output" in row["last_error"] and row["errors"] == 2

        classifier.broken = False
        retried = _post(srv.url, [_item(1), _item(2)])  # the sender retries: stored once
        assert retried.status_code == 202 and retried.json()["stored"] == 2
        row = _health(srv.store, "webhook")
        assert row["status"] == "ok" and "model output" in row["last_error"] and row["last_error_at"]
        assert _count(srv.store, "courier_page") == 2
