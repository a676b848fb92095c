"""The X listener through real tweepy against the emulator: nothing lost, nothing twice, never silent."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import REPO
from doorstep.clients import x_client
from doorstep.config import Config, ConfigError, parse_config
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.config import channel_settings
from listeners.health import Backoff, listener_health
from listeners.x import XListener
from standins.x_emulator import XEmulator

TOKEN = "test-bearer-token-SECRET123"
QUERY = "@ShopHelp -is:retweet"


@pytest.fixture(autouse=True)
def _x_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_BEARER_TOKEN", TOKEN)
    for name in ("X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET"):
        monkeypatch.setenv(name, f"{name.lower()}-value")


def make_config(**x: object) -> Config:
    section = {"queries": [QUERY], "accounts": ["ShopHelp"], **x}
    return parse_config({
        "brands": [{"name": "Shop", "handles": {"x": "ShopHelp"}, "keywords": ["shop"]}],
        "couriers": [{"name": "UPS", "handles": {"x": "UPSHelp"}, "keywords": ["ups"]}],
        "channels": {"x": section},
    })


def feed(n: int, start_minute: int = 0) -> list[dict]:
    return [
        {"text": f"@ShopHelp where is my parcel #{i}?", "username": f"customer{i % 50}", "name": f"Customer {i % 50}",
         "followers": i, "created_at": f"2026-11-20T{10 + (start_minute + i) // 3600 % 10:02d}:"
                                       f"{(start_minute + i) // 60 % 60:02d}:{(start_minute + i) % 60:02d}Z"}
        for i in range(n)
    ]


class Sleeps:
    """Injected sleep: records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_listener(store: Store, config: Config, em: XEmulator, backoff: Backoff | None = None,
                  timeout: float = 5.0) -> XListener:
    return XListener(store, config, Pipeline(store, config, classifier=None),
                     client=x_client(config, base_url=em.base_url, timeout=timeout),
                     backoff=backoff or Backoff(sleep=Sleeps()))


def stored_ids(store: Store) -> list[str]:
    return [r[0] for r in store.db.execute("select external_id from mentions where channel = 'x'").fetchall()]


ME = {"username": "ShopHelp", "name": "Shop Help"}
ME_ID = XEmulator(me=ME).me["id"]


# ------------------------------------------------------------------ mapping and threads
def test_round_ingests_mentions_with_authors_threads_and_our_replies(store: Store) -> None:
    config = make_config()
    with XEmulator(me=ME) as em:
        root = em.add_post({"text": "@ShopHelp my parcel is late, order 12345", "username": "jane", "name": "Jane D",
                            "followers": 1200, "created_at": "2026-11-20T09:00:00Z"})
        em.add_post({"text": "RT @ShopHelp we are hiring", "username": "fan", "created_at": "2026-11-20T09:01:00Z",
                     "referenced_tweets": [{"type": "retweeted", "id": root}]})
        result = make_listener(store, config, em).poll_once()
        assert result.ok, result.errors
        # Our reply (posted as the care handle) and the customer's answer to it.
        reply = em._create_tweet({"text": "@jane sorry, looking now", "reply": {"in_reply_to_tweet_id": root}})["data"]["id"]
        answer = em.add_post({"text": "@ShopHelp thanks! still nothing", "username": "jane",
                              "referenced_tweets": [{"type": "replied_to", "id": reply}]})
        second = make_listener(store, config, em).poll_once()
    assert second.ok, second.errors
    first = store.mention_by_external_id("x", root)
    assert first is not None
    assert (first.author_handle, first.author_name, first.author_followers) == ("jane", "Jane D", 1200)
    assert first.thread_id == root and first.in_reply_to is None and not first.outbound
    assert first.url == f"https://x.com/jane/status/{root}"
    ours = store.mention_by_external_id("x", reply)
    assert ours is not None and ours.outbound and ours.in_reply_to == root and ours.thread_id == root
    follow_up = store.mention_by_external_id("x", answer)
    assert follow_up is not None and follow_up.thread_id == root and follow_up.in_reply_to == reply
    assert len(store.thread("x", root)) == 3
    assert result.skipped == 1 and len(stored_ids(store)) == 3  # the retweet was skipped
    # One case for the thread; our reply joined it (stopping the first-response clock) without opening one.
    assert store.count("cases") == 1
    case = store.get_case(first.case_id)
    assert case is not None and case.first_response_at is not None


def test_retweets_are_ingested_when_configured(store: Store) -> None:
    with XEmulator([{"text": "RT @ShopHelp nice", "username": "fan",
                     "referenced_tweets": [{"type": "retweeted", "id": "1"}]}], me=ME) as em:
        result = make_listener(store, make_config(queries=["@ShopHelp"], include_retweets=True), em).poll_once()
    assert result.ok and result.stored == 1 and result.skipped == 0


def test_cursor_since_id_fetches_only_new_posts(store: Store) -> None:
    config = make_config(accounts=[])
    with XEmulator(feed(30), me=ME) as em:
        listener = make_listener(store, config, em)
        assert listener.poll_once().stored == 30
        em.requests.clear()
        again = listener.poll_once()
        assert again.fetched == 0 and again.ok
        assert all("since_id=" in path for _, path in em.requests)
        new = em.add_post({"text": "@ShopHelp still waiting", "username": "late"})
        third = listener.poll_once()
    assert third.fetched == 1 and third.stored == 1
    assert store.get_cursor(f"x:search:{QUERY}") == f'{{"since_id":"{new}","newest":null,"until_id":null}}'


def test_account_resolved_once_and_cached(store: Store) -> None:
    with XEmulator(feed(5), me=ME) as em:
        listener = make_listener(store, make_config(queries=[]), em)
        listener.poll_once()
        listener.poll_once()
        lookups = [p for _, p in em.requests if p.startswith("/2/users/by/username/")]
    assert len(lookups) == 1
    assert store.get_cursor("x:user:shophelp") == em.me["id"]
    assert len(stored_ids(store)) == 5


def test_page_budget_resumes_next_round_without_loss_or_duplicates(store: Store) -> None:
    config = make_config(accounts=[], max_results=10, max_pages=2)
    with XEmulator(feed(45), me=ME) as em:
        listener = make_listener(store, config, em)
        counts = []
        for _ in range(3):
            result = listener.poll_once()
            assert result.ok and result.duplicates == 0
            counts.append(len(stored_ids(store)))
        em.add_post({"text": "@ShopHelp new one", "username": "n"})
        listener.poll_once()
        listener.poll_once()
        ids = stored_ids(store)
        expected = {p["id"] for p in em.posts}
    assert counts == [20, 40, 45]
    assert len(ids) == len(set(ids)) == 46 and set(ids) == expected


def test_same_post_from_two_queries_is_stored_once(store: Store) -> None:
    config = make_config(queries=["@ShopHelp", "parcel", QUERY], accounts=["ShopHelp"])
    with XEmulator(feed(12), me=ME) as em:
        result = make_listener(store, config, em).poll_once()
    assert result.ok
    assert result.fetched == 48 and result.stored == 12 and result.duplicates == 36
    assert len(stored_ids(store)) == 12


def test_stream_and_poll_deliver_the_same_post_once(store: Store) -> None:
    config = make_config()
    with XEmulator(feed(3), me=ME) as em:
        listener = make_listener(store, config, em)
        # What the stream hands over is the same tweet JSON as a page; ingesting it first...
        from listeners.x import tweet_to_mention

        body = listener.client.get_tweet(em.posts[0]["id"], expansions=["author_id"],
                                         tweet_fields=["created_at", "conversation_id"], user_fields=["public_metrics"])
        users = {u["id"]: u for u in body["includes"]["users"]}
        listener.pipeline.ingest([tweet_to_mention(body["data"], users, listener.own)])
        result = listener.poll_once()
    assert result.stored == 2 and result.duplicates >= 1
    assert len(stored_ids(store)) == 3


# ------------------------------------------------------------------ rate limits and errors
def test_429_is_waited_out_until_reset_and_resumed(store: Store) -> None:
    sleeps = Sleeps()
    with XEmulator(feed(15), me=ME, reset_after_s=2) as em:
        em.inject("429", path="/2/tweets/search/recent")
        listener = make_listener(store, make_config(accounts=[]), em, Backoff(sleep=sleeps))
        before = time.time()
        result = listener.poll_once()
    assert result.ok and result.rate_limited == 1 and result.stored == 15
    assert len(sleeps.delays) == 1
    # Waited until x-rate-limit-reset (now + 2 s, whole seconds) plus one second of margin.
    assert 1.0 <= sleeps.delays[0] <= (before + 2 + 1) - before + 1.5


def test_rate_limit_without_end_gives_up_visibly(store: Store) -> None:
    with XEmulator(feed(3), me=ME) as em:
        em.inject("429", count=50, path="/2/tweets/search/recent")
        result = make_listener(store, make_config(accounts=[]), em, Backoff(sleep=Sleeps(), max_rate_limit_waits=2)).poll_once()
    assert not result.ok and "rate-limited" in result.errors[0]
    assert listener_health(store)[0]["status"] == "error"


def test_repeated_5xx_back_off_exponentially_with_cap(store: Store) -> None:
    sleeps = Sleeps()
    backoff = Backoff(base_s=1.0, cap_s=8.0, max_retries=7, sleep=sleeps, rng=lambda: 1.0)
    with XEmulator(feed(10), me=ME) as em:
        em.inject("500", count=3, path="/2/tweets/search/recent")
        em.inject("503", count=3, path="/2/tweets/search/recent")
        result = make_listener(store, make_config(accounts=[]), em, backoff).poll_once()
    assert result.ok and result.retries == 6 and result.stored == 10
    assert sleeps.delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_jitter_stays_between_half_and_full_delay() -> None:
    low = Backoff(base_s=2.0, cap_s=60.0, rng=lambda: 0.0)
    high = Backoff(base_s=2.0, cap_s=60.0, rng=lambda: 0.999)
    assert [low.delay(a) for a in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert all(low.delay(a) <= Backoff(base_s=2.0, cap_s=60.0).delay(a) <= high.delay(a) + 1e-9 for a in range(7))


def test_persistent_5xx_gives_up_without_moving_the_cursor(store: Store) -> None:
    sleeps = Sleeps()
    with XEmulator(feed(10), me=ME) as em:
        listener = make_listener(store, make_config(accounts=[]), em, Backoff(max_retries=3, sleep=sleeps))
        em.inject("503", count=100, path="/2/tweets/search/recent")
        result = listener.poll_once()
        assert not result.ok and "gave up after 4 attempts" in result.errors[0]
        assert len(sleeps.delays) == 3 and store.get_cursor(f"x:search:{QUERY}") is None
        em.clear_faults()
        assert listener.poll_once().stored == 10
    health = listener_health(store)[0]
    assert health["status"] == "ok" and health["errors"] == 1 and "503" in health["last_error"]


def test_network_errors_are_retried(store: Store) -> None:
    sleeps = Sleeps()
    with XEmulator(feed(10), me=ME, stall_s=0.6) as em:
        em.inject("reset", path="/2/tweets/search/recent")
        em.inject("timeout", path="/2/tweets/search/recent")
        result = make_listener(store, make_config(accounts=[]), em, Backoff(sleep=sleeps), timeout=0.3).poll_once()
    assert result.ok and result.retries == 2 and result.stored == 10


def test_malformed_body_is_logged_with_payload_and_retried(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    with XEmulator(feed(10), me=ME) as em:
        em.inject("malformed", path="/2/tweets/search/recent")
        with caplog.at_level(logging.WARNING, logger="doorstep.listeners.x"):
            result = make_listener(store, make_config(accounts=[]), em).poll_once()
    assert result.ok and result.stored == 10
    assert "malformed response body" in caplog.text and '{"data": [{"edit_history_tweet_ids"' in caplog.text


def test_malformed_post_is_skipped_not_fatal(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    with XEmulator(feed(5), me=ME) as em:
        em.add_post({"text": "@ShopHelp broken", "username": "x",
                     "_raw": {"id": "123", "text": "@ShopHelp no date", "edit_history_tweet_ids": ["123"]}})
        em.add_post({"text": "@ShopHelp broken", "username": "y",
                     "_raw": {"id": "124", "text": "", "created_at": "2026-11-20T10:00:00.000Z",
                              "edit_history_tweet_ids": ["124"]}})
        with caplog.at_level(logging.WARNING, logger="doorstep.listeners.x"):
            result = make_listener(store, make_config(accounts=[]), em).poll_once()
    assert result.ok and result.malformed == 2 and result.stored == 5
    assert "no date" in caplog.text and "created_at" in caplog.text
    # Not only a log line: health counts them and shows the round as a warning (issue 14, item 11).
    health = listener_health(store)[0]
    assert health["status"] == "warning" and health["malformed"] == 2
    assert "skipped 2 malformed posts" in health["last_warning"]


@pytest.mark.parametrize(("fault", "words"), [("401", "401 Unauthorized"), ("403", "403 Forbidden")])
def test_expired_token_or_revoked_permission_is_a_visible_error(store: Store, fault: str, words: str) -> None:
    with XEmulator(feed(5), me=ME) as em:
        em.inject(fault, count=100)
        result = make_listener(store, make_config(), em).poll_once()
    assert not result.ok and words in result.errors[0]
    health = listener_health(store)
    assert health[0]["status"] == "error" and words in health[0]["last_error"]
    assert TOKEN not in health[0]["last_error"]


def test_bad_query_fails_that_query_only(store: Store) -> None:
    with XEmulator(feed(5), me=ME) as em:
        result = make_listener(store, make_config(queries=["(parcel OR", QUERY], accounts=[]), em).poll_once()
    assert not result.ok and "400" in result.errors[0] and "query" in result.errors[0]
    assert result.stored == 5


def test_secrets_never_reach_logs(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    with XEmulator(feed(3), me=ME) as em, caplog.at_level(logging.DEBUG):
        em.inject("401", count=10)
        make_listener(store, make_config(), em).poll_once()
    assert "Bearer" in caplog.text  # tweepy did log its request headers...
    assert TOKEN not in caplog.text  # ...with the token masked


def test_config_errors_name_the_key() -> None:
    bad = parse_config({"channels": {"x": {"queries": "not a list", "querys": []}}})
    with pytest.raises(ConfigError) as info:
        channel_settings(bad, "x")
    assert "channels.x.queries" in str(info.value) and "channels.x.querys" in str(info.value)


# ------------------------------------------------------------------ volume
def test_2000_posts_through_tweepy_exact_count_no_duplicates(store: Store) -> None:
    config = make_config()
    with XEmulator(feed(2000), me=ME) as em:
        result = make_listener(store, config, em).poll_once()
        expected = {p["id"] for p in em.posts}
    ids = stored_ids(store)
    assert result.ok and len(ids) == len(set(ids)) == 2000 and set(ids) == expected


# ------------------------------------------------------------------ CLI and crash safety
def _write_config(path: Path) -> Path:
    path.write_text(
        '[[brands]]\nname = "Shop"\nhandles = { x = "ShopHelp" }\n\n'
        f'[channels.x]\nqueries = ["{QUERY}"]\naccounts = ["ShopHelp"]\nmax_results = 50\n',
        encoding="utf-8",
    )
    return path


def test_cli_listen_once_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from commands.cli import cli

    config = _write_config(tmp_path / "doorstep.toml")
    db = tmp_path / "cli.db"
    with XEmulator(feed(20), me=ME) as em:
        monkeypatch.setenv("X_API_BASE_URL", em.base_url)
        ok = CliRunner().invoke(cli, ["--db", str(db), "--config", str(config), "listen", "x", "--once",
                                      "--classifier", "none"])
        assert ok.exit_code == 0, ok.output
        assert "20 new" in ok.output
        em.inject("401", count=100)
        failed = CliRunner().invoke(cli, ["--db", str(db), "--config", str(config), "listen", "x", "--once",
                                          "--classifier", "none"])
    assert failed.exit_code == 1 and "401 Unauthorized" in failed.output


def test_sigkill_mid_round_then_restart_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    config = _write_config(tmp_path / "doorstep.toml")
    db = tmp_path / "kill.db"
    Store(db).close()  # migrate before the race, so the reader below sees the table
    env = {**os.environ, "PYTHONPATH": str(REPO), "DOORSTEP_CONFIG": str(config), "DOORSTEP_DB": str(db)}
    # Not "-m commands.cli": that loads the module twice (as __main__), and plugin commands would
    # get the other copy's context class.
    command = [sys.executable, "-c", "from commands.cli import main; main()", "listen", "x", "--once",
               "--classifier", "none"]
    total = 600
    with XEmulator(feed(total), me=ME, page_delay_s=0.15) as em:
        env["X_API_BASE_URL"] = em.base_url
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        reader = sqlite3.connect(db, timeout=5)
        stored_before_kill = 0
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline and process.poll() is None:
                stored_before_kill = reader.execute("select count(*) from mentions").fetchone()[0]
                if stored_before_kill >= 100:  # two pages committed, the third one in flight
                    break
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            reader.close()
        output = process.stdout.read().decode(errors="replace") if process.stdout else ""
        assert process.returncode == -signal.SIGKILL, f"listener ended by itself ({process.returncode}): {output}"
        assert 0 < stored_before_kill < total, "the kill must land in the middle of the round"
        # The killed pass left its place in the cursor: the restart resumes below the last committed page.
        killed = Store(db)
        try:
            cursor = json.loads(killed.get_cursor(f"x:search:{QUERY}") or "{}")
        finally:
            killed.close()
        assert cursor.get("until_id") and cursor.get("newest") and cursor.get("since_id") is None
        em.requests.clear()
        em.page_delay_s = 0.0
        restarted = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        expected = {p["id"] for p in em.posts}
        first_search = next(path for _, path in em.requests if path.startswith("/2/tweets/search/recent"))
        assert f"until_id={cursor['until_id']}" in first_search
    store = Store(db)
    try:
        ids = stored_ids(store)
        assert len(ids) == len(set(ids)) == total and set(ids) == expected
        assert listener_health(store)[0]["status"] == "ok"
    finally:
        store.close()


def test_stream_and_poll_of_the_same_post_store_it_once(tmp_path: Path) -> None:
    from listeners.x import XStream

    config = make_config(stream=True)
    db = tmp_path / "stream.db"
    store = Store(db)
    with XEmulator(feed(2), me=ME) as em:
        stream = XStream(str(db), config, base_url=em.base_url)
        thread = stream.start()
        try:
            assert [r["tag"] for r in em._rules.values()] == [stream.rule_tag(QUERY)]
            deadline = time.monotonic() + 5
            while not em._stream_queues and time.monotonic() < deadline:
                time.sleep(0.02)
            post_id = em.add_post({"text": "@ShopHelp streamed and polled", "username": "both", "followers": 9})
            em.add_post({"text": "not for us", "username": "other"})
            while stream.received < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            stream.stop()
            thread.join(timeout=5)
        assert stream.received == 1
        streamed = store.mention_by_external_id("x", post_id)
        assert streamed is not None and streamed.author_handle == "both" and streamed.author_followers == 9
        result = make_listener(store, config, em).poll_once()
        stream.sync_rules()  # idempotent: no second rule
        assert len(em._rules) == 1
    assert result.ok and result.duplicates >= 1
    ids = stored_ids(store)
    assert len(ids) == len(set(ids)) == 3
    assert {r["name"] for r in listener_health(store)} == {"x", "x:stream"}


def test_jobs_for_configured_channels(store: Store) -> None:
    from listeners.jobs import jobs

    config = parse_config({"channels": {"x": {"queries": [QUERY], "poll_seconds": 30},
                                        "bluesky": {"queries": ["parcel"], "enabled": False},
                                        "webhook": {"port": 0}}})
    found = {job.name: job for job in jobs(store, config, Pipeline(store, config, classifier=None))}
    assert set(found) == {"listen:x", "listen:webhook"}
    assert found["listen:x"].interval_s == 30


def test_health_status_ok_stale_error_and_redaction(store: Store) -> None:
    from datetime import datetime, timedelta, timezone

    from listeners.health import record_error, record_success

    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
    record_success(store, "x", fetched=10, stored=7, lag_seconds=3.5, at=t0)
    record_success(store, "x", fetched=5, stored=5, lag_seconds=1.0, at=t0 + timedelta(seconds=30))
    row = listener_health(store, now=t0 + timedelta(seconds=60))[0]
    assert (row["status"], row["fetched"], row["stored"], row["lag_seconds"]) == ("ok", 15, 12, 1.0)
    assert listener_health(store, poll_seconds={"x": 60}, now=t0 + timedelta(minutes=10))[0]["status"] == "stale"
    record_error(store, "x", f"boom with header Authorization: Bearer {TOKEN}", at=t0 + timedelta(seconds=31))
    row = listener_health(store, now=t0 + timedelta(seconds=60))[0]
    assert row["status"] == "error" and row["errors"] == 1 and TOKEN not in row["last_error"]
    record_error(store, "mastodon", "never worked", at=t0)
    assert {r["name"]: r["status"] for r in listener_health(store, now=t0)} == {"mastodon": "error", "x": "error"}


def test_no_sources_is_an_error_not_a_quiet_success(store: Store) -> None:
    with XEmulator(me=ME) as em:
        result = make_listener(store, make_config(queries=[], accounts=[]), em).poll_once()
    assert not result.ok and "nothing is being listened to" in result.errors[0]


# ------------------------------------------------------------------ issue 14: items 6 and 11
@pytest.mark.parametrize("refused", ["/2/tweets/search/recent", "/2/users/"])
def test_403_on_one_endpoint_leaves_the_other_sources_polling(store: Store, refused: str) -> None:
    with XEmulator(feed(30), me=ME) as em:
        if refused == "/2/users/":  # the mentions timeline refused, search allowed
            store.set_cursor("x:user:shophelp", em.me["id"])
            refused = f"/2/users/{em.me['id']}/mentions"
        em.inject("403", count=1000, path=refused)
        result = make_listener(store, make_config(), em).poll_once()
        polled = {p.split("?")[0] for _, p in em.requests}
    assert len(result.errors) == 1 and "403 Forbidden" in result.errors[0]
    assert len(stored_ids(store)) == 30  # the other source still delivered every post
    assert "/2/tweets/search/recent" in polled and f"/2/users/{ME_ID}/mentions" in polled
    health = listener_health(store)[0]
    assert health["status"] == "error" and "403" in health["last_error"]


def test_403_on_account_lookup_leaves_search_polling(store: Store) -> None:
    with XEmulator(feed(12), me=ME) as em:
        em.inject("403", count=1000, path="/2/users/by/username/")
        result = make_listener(store, make_config(), em).poll_once()
    assert len(result.errors) == 1 and "@ShopHelp" in result.errors[0]
    assert len(stored_ids(store)) == 12


def test_repeated_next_token_stops_paging_instead_of_burning_the_budget(store: Store) -> None:
    config = make_config(accounts=[], max_results=10)
    with XEmulator(feed(50), me=ME) as em:
        em.inject("loop-token", count=10_000, path="/2/tweets/search/recent")
        listener = make_listener(store, config, em)
        result = listener.poll_once()
        pages = [p for _, p in em.requests if p.startswith("/2/tweets/search/recent")]
        assert len(pages) == 2  # the second page repeated its token: not max_pages (200) requests
        assert not result.ok and "repeated next_token" in result.errors[0]
        assert listener_health(store)[0]["status"] == "error"
        em.clear_faults()
        assert listener.poll_once().ok
        ids = stored_ids(store)
        expected = {p["id"] for p in em.posts}
    assert len(ids) == len(set(ids)) == 50 and set(ids) == expected  # nothing skipped, nothing twice


@pytest.mark.parametrize("fault", ["429-noreset", "429-badreset"])
def test_429_without_a_readable_reset_waits_the_default_window(store: Store, fault: str) -> None:
    sleeps = Sleeps()
    with XEmulator(feed(7), me=ME) as em:
        em.inject(fault, path="/2/tweets/search/recent")
        listener = make_listener(store, make_config(accounts=[]), em, Backoff(sleep=sleeps, rate_limit_default_s=75.0))
        result = listener.poll_once()
    assert result.ok, result.errors
    assert result.rate_limited == 1 and sleeps.delays == [75.0]  # the window, not a one-second retry
    assert result.stored == 7


def test_rate_limit_waits_without_reset_grow_and_are_capped() -> None:
    backoff = Backoff(rate_limit_default_s=60.0, max_rate_limit_wait_s=200.0)
    assert [backoff.rate_limit_delay(None, n) for n in range(4)] == [60.0, 120.0, 200.0, 200.0]


@pytest.mark.parametrize(("header", "expected"), [
    ("1764000000", 1764000000.0), ("1764000000.5", 1764000000.5), ("30", 1000030.0),
    ("2026-11-24T16:00:00Z", 1795536000.0), ("Tue, 24 Nov 2026 16:00:00 GMT", 1795536000.0),
    ("soon", None), ("", None), ("-5", None), ("nan", None), (None, None),
])
def test_parse_reset_reads_what_it_can_and_never_raises(header: object, expected: float | None) -> None:
    from listeners.health import parse_reset

    assert parse_reset(header, now=1_000_000.0) == expected


def test_stream_counts_malformed_posts_as_a_health_warning(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from listeners.x import XStream

    stream = XStream(str(tmp_path / "stream.db"), make_config(stream=True))
    user = SimpleNamespace(id="7", data={"id": "7", "username": "jane", "name": "Jane"})
    good = {"id": "1862200000000000001", "text": "@ShopHelp parcel late", "author_id": "7",
            "created_at": "2026-11-20T10:00:00.000Z"}
    broken = {"id": "1862200000000000002", "text": "@ShopHelp no date", "author_id": "7"}
    for tweet in (good, broken):
        stream.handle(SimpleNamespace(data=SimpleNamespace(data=tweet), includes={"users": [user]}))
    store = Store(tmp_path / "stream.db")
    row = next(r for r in listener_health(store) if r["name"] == "x:stream")
    assert stream.received == 1 and row["malformed"] == 1 and row["status"] == "warning"
    assert "malformed" in row["last_warning"]


# ------------------------------------------------------------------ audit (listen) finding 4
def test_direct_messages_beyond_the_page_budget_resume_next_round_without_loss(store: Store) -> None:
    config = make_config(queries=[], direct_messages=True, max_pages=1)  # one DM page (100 events) a round
    with XEmulator(me=ME) as em:
        em.send_dm("jane", "ShopHelp", "hello, first message")
        listener = make_listener(store, config, em)
        assert listener.poll_once().ok
        # A cursor in the format of earlier versions (the newest event id seen) must still be read.
        assert store.get_cursor("x:dm:shophelp") is not None
        store.set_cursor("x:dm:shophelp", em.dms[-1]["id"])
        for i in range(150):
            em.send_dm(f"cust{i}", "ShopHelp", f"my order #{i} has not arrived")
        first = listener.poll_once()
        assert first.ok and first.fetched == 100
        em.send_dm("late", "ShopHelp", "still waiting")  # arrives while the pass is under way
        for _ in range(4):
            assert listener.poll_once().ok
        got = [r[0] for r in store.db.execute("select external_id from mentions where channel = 'x_dm'").fetchall()]
        expected = {e["id"] for e in em.dms if e["sender_id"] != ME_ID}
    assert len(got) == len(set(got)) and set(got) == expected  # all 152, each once
    assert listener_health(store)[0]["status"] == "ok"


def test_direct_messages_pass_with_a_refused_stored_token_starts_again(store: Store) -> None:
    config = make_config(queries=[], direct_messages=True, max_pages=1)
    with XEmulator(me=ME) as em:
        for i in range(120):
            em.send_dm(f"cust{i}", "ShopHelp", f"my order #{i} has not arrived")
        listener = make_listener(store, config, em)
        assert listener.poll_once().ok
        state = json.loads(store.get_cursor("x:dm:shophelp") or "{}")
        assert state["next_token"] and state["since_id"] is None  # the pass is open
        store.set_cursor("x:dm:shophelp", json.dumps({**state, "next_token": "not a token!"}))
        assert listener.poll_once().ok  # refused: the pass starts again from the newest
        assert listener.poll_once().ok
        got = [r[0] for r in store.db.execute("select external_id from mentions where channel = 'x_dm'").fetchall()]
        expected = {e["id"] for e in em.dms}
    assert len(got) == len(set(got)) and set(got) == expected
    assert json.loads(store.get_cursor("x:dm:shophelp") or "{}")["since_id"] == max(expected, key=int)
