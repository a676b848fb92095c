"""A database written before channels and handles were stored by one name (commit 516969e) holds them as exports
wrote them: channel "Twitter" or "X" for the X listener's "x", author "@tomprice" for its "tomprice". Re-imported
after that commit, such a tweet was stored a second time as ("x", "tomprice") in a second case, and the "Twitter"
case could still not be answered (review of 516969e, finding 1). Upgrading renames the stored names (m030), on
both stores; a post stored under two spellings keeps its canonical row and the other is reported, not lost."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from doorstep.models import Case
from doorstep.pipeline import Pipeline
from doorstep.regroup import merge_cases
from doorstep.store import MIGRATIONS, Store
from listeners.files import import_mentions

from conftest import T0, KeywordClassifier

MIGRATION = "m030_channel_names_and_handles_as_stored_today"
TWEET = "1860000000000000001"


def _rows(store: Store, sql: str) -> list[tuple]:
    return [tuple(r) for r in store.db.execute(sql).fetchall()]


def _old_case(store: Store, channel: str, handle: str) -> int:
    """A case as an older version opened it: its first post's channel and author as the file wrote them."""
    return store.insert_case(Case(status="new", channel=channel, author_handle=handle, thread_id=TWEET,
                                  opened_at=T0, last_activity_at=T0))


def _old_post(store: Store, channel: str, external_id: str, handle: str | None, case_id: int | None) -> int:
    """A post as an older version stored it (today's Mention would rename it, so it is written as the row was)."""
    with store.transaction():
        return store.db.execute(
            "insert into mentions (channel, external_id, text, created_at, author_handle, case_id, outbound) "
            "values (?, ?, '@LarkspurHelp where is my parcel? ordered a week ago', ?, ?, ?, 0)",
            [channel, external_id, T0.isoformat(), handle, case_id]).lastrowid


def _upgrade(store: Store) -> None:
    store.db.execute(f"delete from _sqlite_migrations where name = '{MIGRATION}'")
    MIGRATIONS.apply(store.db)


def test_upgrading_renames_channels_and_handles_and_a_reimported_tweet_finds_its_post(tmp_path: Path, store: Store,
                                                                                   config) -> None:
    tom = _old_case(store, "Twitter", "@tomprice")
    _old_post(store, "Twitter", TWEET, "@tomprice", tom)
    ann = _old_case(store, "X", "@ann")
    _old_post(store, "X", "1860000000000000002", "@ann", ann)
    jo = _old_case(store, "mastodon", "@jo@mastodon.social")
    _old_post(store, "mastodon", "109", "@jo@mastodon.social", jo)
    relay = _old_case(store, "facebook messenger", "@bob")  # a webhook's name today's Mention refuses
    _old_post(store, "facebook messenger", "f1", "@bob", relay)
    _old_post(store, "TikTok", "t1", "lee", None)
    _old_post(store, "x", "1860000000000000003", "tomprice", tom)  # stored as today: left as it is
    versions = {c: store.get_case(c).version for c in (tom, ann, jo, relay)}  # type: ignore[union-attr]

    _upgrade(store)

    assert _rows(store, "select channel, external_id, author_handle from mentions order by id") == [
        ("x", TWEET, "tomprice"), ("x", "1860000000000000002", "ann"), ("mastodon", "109", "jo@mastodon.social"),
        ("facebook messenger", "f1", "bob"), ("tiktok", "t1", "lee"), ("x", "1860000000000000003", "tomprice")]
    assert _rows(store, "select id, channel, author_handle from cases order by id") == [
        (tom, "x", "tomprice"), (ann, "x", "ann"), (jo, "mastodon", "jo@mastodon.social"),
        (relay, "facebook messenger", "bob")]
    for case_id, version in versions.items():  # a page open on a renamed case sees the change
        assert store.get_case(case_id).version == version + 1  # type: ignore[union-attr]

    # The reviewer's re-import: the same file, read by today's code, finds the tweet it stored before.
    tweets = tmp_path / "tweets.csv"
    tweets.write_text("channel,external_id,text,created_at,author_handle\n"
                      f"Twitter,{TWEET},@LarkspurHelp where is my parcel? ordered a week ago,2026-11-16T09:00:00Z,"
                      "@tomprice\n", encoding="utf-8")
    report = import_mentions(tweets, Pipeline(store, config, KeywordClassifier()))
    assert not report.errors
    assert _rows(store, f"select channel, author_handle, case_id from mentions where external_id = '{TWEET}'") == [
        ("x", "tomprice", tom)]
    assert store.count("cases") == 4


def test_a_post_stored_under_two_spellings_keeps_its_canonical_row_and_the_other_is_reported(
        store: Store, config, caplog: pytest.LogCaptureFixture) -> None:
    """One tweet imported as "Twitter", "X" and "x" before 516969e (exports audit) is three rows in three cases:
    the unique (channel, external_id) forbids renaming the other two. The canonical row stays; the others stay as
    they are and their cases are named with the merge that joins them, which their renamed cases now allow.
    Where no canonical row was stored, the oldest spelling becomes it."""
    canonical = _old_case(store, "x", "tomprice")
    twitter = _old_case(store, "Twitter", "@tomprice")
    capital = _old_case(store, "X", "tomprice")
    _old_post(store, "Twitter", TWEET, "@tomprice", twitter)
    _old_post(store, "x", TWEET, "tomprice", canonical)
    _old_post(store, "X", TWEET, "tomprice", capital)
    _old_post(store, "X", "1860000000000000009", "ann", None)  # older: becomes the canonical row
    _old_post(store, "twitter", "1860000000000000009", "@ann", None)

    with caplog.at_level(logging.WARNING):
        _upgrade(store)

    assert _rows(store, "select channel, external_id, author_handle, case_id from mentions order by id") == [
        ("Twitter", TWEET, "tomprice", twitter), ("x", TWEET, "tomprice", canonical),
        ("X", TWEET, "tomprice", capital), ("x", "1860000000000000009", "ann", None),
        ("twitter", "1860000000000000009", "ann", None)]
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(f"doorstep case merge {canonical} {twitter}" in line for line in said), said
    assert any(f"doorstep case merge {canonical} {capital}" in line for line in said), said
    assert all("\n" not in line for line in said), said
    # The remedy works: the renamed cases are one customer's (before, "Twitter" and "x" were two networks).
    for other in (twitter, capital):
        keep = store.get_case(canonical)
        old = store.get_case(other)
        assert keep is not None and old is not None and (old.channel, old.author_handle) == ("x", "tomprice")
        merge_cases(store, config, canonical, keep.version, other, old.version, "admin")
    assert store.get_case(twitter).merged_into == canonical  # type: ignore[union-attr]


def test_a_database_opened_by_todays_code_is_upgraded_once(db_url: str) -> None:
    """The migration runs when the store opens (both stores), and a second opening finds nothing to do."""
    store = Store(db_url)
    _old_post(store, "Twitter", TWEET, "@tomprice", None)
    store.db.execute(f"delete from _sqlite_migrations where name = '{MIGRATION}'")
    store.close()
    store = Store(db_url)
    try:
        assert _rows(store, "select channel, author_handle from mentions") == [("x", "tomprice")]
        assert not MIGRATIONS.pending(store.db)
        assert MIGRATION in {m.name for m in MIGRATIONS.applied(store.db)}
    finally:
        store.close()
