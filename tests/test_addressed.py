"""Whether a post is written to someone reaches the classifier on every path (issue 15, thirteenth round).

A negative post written to someone is nearly always a complaint; one written to nobody ("ugh, Mondays") may be
mood. A reply in a thread often drops the handle from its text, so the text alone cannot tell: the listener
knows (``Mention.addressed``) and hands it on. These tests follow that fact from a post to its stored labels:
the pipeline, a file import with and without a classifier process, and the ``doorstep classify`` file contract.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from classifiers.jsonl import classify_jsonl
from classifiers.process import ClassifierProcesses
from doorstep.config import Config
from doorstep.models import Labels
from doorstep.classifying import classify_mentions
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.files import import_mentions

from conftest import KeywordClassifier, labels, mention


class ReadsAddressed:
    """A test double that says what it was told: a complaint exactly when the post was marked addressed."""

    name = "reads-addressed"
    reads_addressed = True

    def __init__(self) -> None:
        self.told: list[list[bool] | None] = []

    def classify(self, texts: Sequence[str], addressed: Sequence[bool | None] | None = None) -> list[Labels]:
        self.told.append(None if addressed is None else list(addressed))
        flags = list(addressed) if addressed is not None else [False] * len(texts)
        return [labels("other", "negative", complaint=bool(flag)) for flag in flags]


def test_a_post_is_written_to_someone_when_it_replies_is_private_or_reached_our_account() -> None:
    assert mention("1", "still mad about it", in_reply_to="0").addressed  # a reply whose text dropped the handle
    assert mention("2", "where is my parcel", channel="x_dm").addressed  # a private message
    assert mention("3", "where is my parcel", channel="email").addressed
    assert mention("4", "@FettleCare hello", account="FettleCare").addressed  # it reached our account
    assert not mention("5", "ugh, Fettle parcels, mondays").addressed  # a keyword hit written to nobody


def test_the_pipeline_tells_a_classifier_that_reads_it_which_posts_are_written_to_someone(store: Store,
                                                                                         config: Config) -> None:
    reader = ReadsAddressed()
    Pipeline(store, config, reader).ingest([
        mention("a", "my parcel never came", minutes=0, author_handle="ann"),
        mention("b", "still nothing, this is a joke", minutes=1, author_handle="ann", in_reply_to="a"),
        mention("c", "hello? anyone?", minutes=2, author_handle="bob", channel="x_dm"),
    ])
    stored = {m.external_id: m.labels.complaint for m in store.iter_mentions()}  # type: ignore[union-attr]
    assert stored == {"a": False, "b": True, "c": True}
    assert reader.told == [[False, True, True]]
    # A classifier that does not read it is called as before, with the texts alone.
    assert len(classify_mentions(KeywordClassifier(), [mention("d", "where is it", in_reply_to="a")])) == 1


@pytest.mark.parametrize("processes", [0, 1])
def test_an_import_hands_it_on_with_and_without_a_classifier_process(tmp_path: Path, store: Store, config: Config,
                                                                     processes: int) -> None:
    feed = tmp_path / "posts.jsonl"
    posts = [{"channel": "x", "external_id": "p1", "author_handle": "ann", "text": "my parcel never came",
              "created_at": "2026-11-16T09:00:00Z"},
             {"channel": "x", "external_id": "p2", "author_handle": "ann", "text": "still nothing, a joke",
              "in_reply_to": "p1", "created_at": "2026-11-16T09:01:00Z"},
             {"channel": "x_dm", "external_id": "p3", "author_handle": "bob", "text": "hello? anyone?",
              "created_at": "2026-11-16T09:02:00Z"},
             {"channel": "x", "external_id": "p4", "author_handle": "cat", "text": "ugh fettle parcels",
              "created_at": "2026-11-16T09:03:00Z"}]
    feed.write_text("".join(json.dumps(p) + "\n" for p in posts), encoding="utf-8")
    pipeline = Pipeline(store, config, ReadsAddressed())
    if processes:
        with ClassifierProcesses(functools.partial(ReadsAddressed), processes) as ahead:
            ahead.wait_ready()
            report = import_mentions(feed, pipeline, batch_rows=2, classify_ahead=ahead)
            assert ahead.batches_sent == 2  # both batches were labelled in the process
    else:
        report = import_mentions(feed, pipeline, batch_rows=2)
    assert report.stored == 4
    stored = {m.external_id: m.labels.complaint for m in store.iter_mentions()}  # type: ignore[union-attr]
    assert stored == {"p1": False, "p2": True, "p3": True, "p4": False}


def test_doorstep_classify_reads_an_optional_addressed_key_and_names_a_bad_one() -> None:
    reader = ReadsAddressed()
    lines = [{"id": 1, "text": "ugh"}, {"id": 2, "text": "still nothing", "addressed": True},
             {"id": 3, "text": "meh", "addressed": False}]
    out = io.StringIO()
    assert classify_jsonl(io.StringIO("".join(json.dumps(x) + "\n" for x in lines)), out, reader) == 3
    assert [json.loads(row)["complaint"] for row in out.getvalue().splitlines()] == [False, True, False]
    # Output rows keep the contract: no new key.
    assert set(json.loads(out.getvalue().splitlines()[1])) == {
        "id", "sentiment", "sentiment_scores", "complaint", "complaint_score", "intent", "intent_scores", "urgency",
        "needs_review"}
    out = io.StringIO()
    with pytest.raises(ValueError, match=r'^line 2: "addressed" must be true or false, got "yes"$'):
        classify_jsonl(io.StringIO('{"id": 1, "text": "a"}\n{"id": 2, "text": "b", "addressed": "yes"}\n'), out, reader)
    assert len(out.getvalue().splitlines()) == 1  # the good line before it was written
    # A classifier that does not read it ignores the key.
    out = io.StringIO()
    classify_jsonl(io.StringIO('{"id": 1, "text": "where is it", "addressed": true}\n'), out, KeywordClassifier())
    assert json.loads(out.getvalue())["intent"] == "late_delivery"


def test_a_post_naming_one_of_our_handles_is_written_to_us_whichever_listener_found_it(store: Store,
                                                                                     config: Config) -> None:
    """Issue 15, eighteenth round: with ``complaint_transfer = "addressed"`` the classifier trusts what it is told over
    any @mention in the text, so the pipeline must say so for a keyword-search hit that names one of the shop's brand or
    courier handles on its channel (not only for posts from the mentions timeline); a tweet to a friend is not to us."""
    reader = ReadsAddressed()
    Pipeline(store, config, reader).ingest([
        mention("a", "@LarkspurHelp my parcel never came", minutes=0, author_handle="ann"),  # a search hit
        mention("b", "@bestie ugh mondays, everything is awful", minutes=1, author_handle="bob"),
        mention("c", "hey @upshelp where is it?", minutes=2, author_handle="cat"),  # a courier, any case
        mention("d", "still waiting on @FettleCare.", minutes=3, author_handle="dan"),
        mention("e", "@LarkspurHelpers fan club meets today", minutes=4, author_handle="eve"),  # a longer handle
    ])
    assert reader.told == [[True, False, True, True, False]]
    assert config.listened_handles("x") == {"larkspurhelp", "fettlecare", "upshelp", "royalmailhelp"}
    assert config.listened_handles("mastodon") == set()  # none configured there: no post on it names us


def test_doorstep_classify_tells_a_line_without_the_key_as_not_told() -> None:
    """A `doorstep classify` line without "addressed" says nothing (None), so a model whose transfer trusts the caller
    falls back on the @mention in the text; false says the post is not written to us."""
    reader = ReadsAddressed()
    lines = [{"id": 1, "text": "@bestie ugh"}, {"id": 2, "text": "@bestie ugh", "addressed": False}]
    classify_jsonl(io.StringIO("".join(json.dumps(x) + "\n" for x in lines)), io.StringIO(), reader)
    assert reader.told == [[None, False]]


def test_handles_are_matched_as_each_network_writes_them() -> None:
    """Mastodon writes a handle with its server (@LarkspurHelp@mastodon.social), Bluesky as a domain
    (@larkspurhome.bsky.social); both name our account. A handle of ours on another network is not ours there."""
    from doorstep.classifying import addressed_flags
    from doorstep.config import load_config

    shop = load_config(Path(__file__).resolve().parents[1] / "demo" / "doorstep.toml")
    posts = [mention("m1", "@LarkspurHelp@mastodon.social where is my order?", channel="mastodon"),
             mention("m2", "@someone@mastodon.social ugh mondays", channel="mastodon"),
             mention("b1", "@larkspurhome.bsky.social still nothing.", channel="bluesky"),
             mention("b2", "@LarkspurHelp on bluesky? nobody here", channel="bluesky")]
    assert addressed_flags(posts, shop) == [True, False, True, False]
    assert addressed_flags(posts) == [False, False, False, False]  # without the config: only Mention.addressed
