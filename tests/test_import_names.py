"""A shop's own exports name networks and people as their tools write them (exports audit, 2026-12-07):
"Twitter", "X" and "x" for one network, "@tomprice" for the X listener's "tomprice". One tweet must be stored once,
and one person's posts must meet in one case, whatever the export wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from doorstep.models import Mention
from doorstep.pipeline import Pipeline
from listeners.files import import_mentions

from conftest import KeywordClassifier


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tweet(channel: str, **fields: str) -> dict[str, str]:
    return {"channel": channel, "external_id": "1862000000000000001", "text": "@LarkspurHelp order #1002 still not here",
            "created_at": "2026-11-16T09:00:00Z", "author_handle": "tomprice", **fields}


def test_one_tweet_imported_as_twitter_x_and_x_is_stored_once(tmp_path, store, config) -> None:
    """Finding 1: it was stored as Twitter, X and x, in three cases; a "Twitter" case could not be answered."""
    pipeline = Pipeline(store, config, KeywordClassifier())
    for i, name in enumerate(["Twitter", "X", "x", " twitter "]):
        report = import_mentions(write_jsonl(tmp_path / f"m{i}.jsonl", [tweet(name)]), pipeline)
        assert not report.errors
    assert [tuple(r) for r in store.db.execute("select channel, external_id from mentions").fetchall()] == \
        [("x", "1862000000000000001")]
    assert store.count("cases") == 1


def test_a_handle_written_with_its_at_sign_joins_the_persons_case(tmp_path, store, config) -> None:
    """Finding 2: "@tomprice" (as social tools export it) opened a case of its own beside tomprice's, and the inbox
    read "@@tomprice"."""
    pipeline = Pipeline(store, config, KeywordClassifier())
    import_mentions(write_jsonl(tmp_path / "a.jsonl", [tweet("x")]), pipeline)
    later = tweet("x", external_id="1862000000000000002", author_handle="@tomprice",
                  text="@LarkspurHelp any news on #1002?", created_at="2026-11-16T10:00:00Z")
    assert not import_mentions(write_jsonl(tmp_path / "b.jsonl", [later]), pipeline).errors
    handles = {r[0] for r in store.db.execute("select author_handle from mentions").fetchall()}
    assert handles == {"tomprice"}
    assert store.count("cases") == 1


@pytest.mark.parametrize("name", ["Facebook Messenger", "x/twitter", "e-mail!"])
def test_a_channel_name_that_is_no_name_is_refused_saying_which_are(name: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Mention.model_validate(tweet(name))
    said = str(refused.value)
    assert "channel" in said and "x, x_dm, mastodon" in said and name in said


def test_a_mastodon_account_keeps_its_server_and_an_email_address_stays_whole() -> None:
    assert Mention.model_validate(tweet("mastodon", author_handle="@jo@mastodon.social")).author_handle == \
        "jo@mastodon.social"
    assert Mention.model_validate(tweet("email", author_handle="jo@example.net")).author_handle == "jo@example.net"
    assert Mention.model_validate(tweet("tiktok")).channel == "tiktok"
