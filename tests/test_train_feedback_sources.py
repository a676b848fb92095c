"""``doorstep train --with-feedback --feedback-file FILE``: what it says when both sources are given.

The database's corrections and the file's rows are merged by the post's text, the file's label
winning where both give one. Each source's own line counted it alone: with a post in both, the two
"uses the intent of N posts" lines added up to more posts than the head learnt from, and that the file
replaced a label the team had saved was not said at all. Runs ``train --head-only`` with the quick
stand-in fit of tests/test_classifier_cli_audit.py, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from doorstep.store import Store

from test_classifier_cli_audit import _corrections, _train, fits, shared  # noqa: F401 - fixtures


def _store_with(db_url: str) -> None:
    store = Store(db_url)
    _corrections(store, [
        # in the file too, with another intent: the file's is used
        (538, "parcel came smashed", "intent", "product_or_account", "damaged_or_wrong"),
        # in the file too, with the same sentiment
        (700, "still waiting for my refund", "sentiment", "neutral", "negative"),
        # only here: a sentiment change, which a head-only refit leaves out
        (847, "driver never knocked", "sentiment", "neutral", "negative"),
        # only here: an intent change
        (911, "where is my order", "intent", "other", "where_is_my_order"),
    ])
    store.close()


def _file(tmp_path: Path) -> Path:
    source = tmp_path / "fb.csv"
    source.write_text('text,intent,sentiment\n'
                      '"parcel came smashed",late_delivery,\n'
                      '"still waiting for my refund",refund_or_return,negative\n'
                      '"so happy",,positive\n', encoding="utf-8")
    return source


def test_both_sources_count_a_post_in_both_once_and_say_the_file_replaced_a_label(
        tmp_path: Path, db_url: str, fits: list[dict[str, Any]], shared: Path) -> None:  # noqa: F811
    _store_with(db_url)
    source = _file(tmp_path)
    out = tmp_path / "m"
    result = _train(tmp_path, "--shared", str(shared), "--with-feedback", "--feedback-file", str(source),
                    "--out", str(out), db=db_url)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # Each source's own count, as with one source.
    assert any(line.startswith("folding in 4 posts corrected by the team (4 label changes) from ") for line in lines)
    assert f"folding in 3 rows of corrections from {source}" in lines
    # The head learns the intent of 3 posts: smashed (the file's), refund (the file's) and where is my
    # order (the database's), as the model's config says.
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["head_feedback_rows"] == 3
    left_out = [line for line in lines if line.startswith("a head-only refit learns intents only")]
    assert left_out == [
        "a head-only refit learns intents only: it uses the intent of 3 posts and leaves out 2 sentiment or complaint "
        f"changes from the database and 2 sentiment or complaint labels from {source} (a full `doorstep train` "
        "uses them)"], result.output
    # The post in both with another intent: the team's label is replaced, and that is said.
    both = [line for line in lines if "in both" in line]
    assert len(both) == 1, result.output
    assert both[0].startswith("2 posts are in both the database's corrections and ") and str(source) in both[0]
    assert "the file's label is used where they differ: 1 of the database's labels replaced" in both[0], both[0]


def test_a_post_in_both_with_the_same_labels_is_said_to_agree(
        tmp_path: Path, db_url: str, fits: list[dict[str, Any]], shared: Path) -> None:  # noqa: F811
    store = Store(db_url)
    _corrections(store, [(538, "parcel came smashed", "intent", "product_or_account", "damaged_or_wrong")])
    store.close()
    source = tmp_path / "fb.jsonl"
    source.write_text(json.dumps({"text": "parcel came smashed", "intent": "Damaged or wrong"}) + "\n", encoding="utf-8")
    result = _train(tmp_path, "--shared", str(shared), "--with-feedback", "--feedback-file", str(source),
                    "--out", str(tmp_path / "m"), db=db_url)
    assert result.exit_code == 0, result.output
    both = [line for line in result.output.splitlines() if "in both" in line]
    assert both == [f"1 post is in both the database's corrections and {source}, with the same labels"], result.output
    assert "a head-only refit learns intents only" not in result.output  # nothing is left out


def test_one_source_alone_says_what_it_said_before(tmp_path: Path, db_url: str, fits: list[dict[str, Any]],  # noqa: F811
                                                   shared: Path) -> None:
    _store_with(db_url)
    result = _train(tmp_path, "--shared", str(shared), "--with-feedback", "--out", str(tmp_path / "m"), db=db_url)
    assert result.exit_code == 0, result.output
    assert ("a head-only refit learns intents only: it uses the intent of 2 posts and leaves out 2 sentiment or "
            "complaint changes (a full `doorstep train --with-feedback` uses them)") in result.output
    assert "in both" not in result.output
