"""Classifying in a second process writes exactly what classifying in the import's own process writes.

An import may send its next batches to spawned classifier processes while it writes the current
one (classifiers/process.py, ``doorstep import mentions --classify-processes N``). These tests
import the same file both ways and compare every row stored, on SQLite and PostgreSQL, and check
that a classifier process that raises, or dies, stops the import before the batch it was labelling,
in one line, with every earlier batch written whole and a rerun finishing the rest without duplicates.
"""

from __future__ import annotations

import functools
import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

import doorstep.pipeline
from classifiers import load_classifier
from classifiers.process import ClassifierProcessError, ClassifierProcesses
from commands.cli import cli
from doorstep import linking
from doorstep.config import Config
from doorstep.models import Labels
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.files import ImportStopped, import_mentions

from conftest import KeywordClassifier
from test_pipeline_batches import _batch, _history, _shop, _stored, two_stores  # noqa: F401 - a fixture

BASELINE = functools.partial(load_classifier, "baseline")


class Counting:
    """The import's own classifier, counting the batches it is asked for."""

    def __init__(self, inner: object):
        self.inner, self.batches = inner, 0
        self.name = inner.name  # type: ignore[attr-defined]

    def classify(self, texts: Sequence[str]) -> list[Labels]:
        self.batches += 1
        return self.inner.classify(texts)  # type: ignore[attr-defined]


def _feed(path: Path, hint: int) -> Path:
    """test_pipeline_batches' mixed batch as a file (its repeated post becomes a rejected row)."""
    with path.open("w", encoding="utf-8") as fh:
        for post in _batch(hint):
            fh.write(post.model_dump_json(exclude_none=True, exclude={"case_id"}) + "\n")
    return path


def _import(where: Path | str, config: Config, feed_dir: Path, processes: int,
            monkeypatch: pytest.MonkeyPatch) -> tuple[Store, Counting, int, int]:
    store = _shop(where)
    _history(Pipeline(store, config, KeywordClassifier(), batch_size=1))
    hint = store.mention_by_external_id("x", "h2").case_id  # type: ignore[union-attr]
    feed = _feed(feed_dir / f"feed{processes}.jsonl", hint)  # type: ignore[arg-type]
    own = Counting(load_classifier("baseline"))
    pipeline = Pipeline(store, config, own)
    searched: list[str] = []  # texts the import's own process looked for numbers in

    def find_numbers(text: str, config: Config) -> object:
        searched.append(text)
        return linking.find_numbers(text, config)

    monkeypatch.setattr(doorstep.pipeline, "find_numbers", find_numbers)
    if not processes:
        report = import_mentions(feed, pipeline, batch_rows=4, max_rejected_share=1)
        sent = 0
    else:
        with ClassifierProcesses(BASELINE, processes, also=functools.partial(linking.numbers_in, config=config)) as ahead:
            ahead.wait_ready()
            report = import_mentions(feed, pipeline, batch_rows=4, max_rejected_share=1, classify_ahead=ahead)
            sent = ahead.batches_sent
    assert report.stored == 20 and report.stopped is None
    return store, own, sent, len(searched)


def test_labels_from_a_second_process_write_exactly_the_same_rows(two_stores, config: Config, tmp_path: Path,  # noqa: F811
                                                                  monkeypatch: pytest.MonkeyPatch):
    here, own_here, _, searched_here = _import(two_stores[0], config, tmp_path, 0, monkeypatch)
    there, own_there, sent, searched_there = _import(two_stores[1], config, tmp_path, 1, monkeypatch)
    assert _stored(there) == _stored(here)
    assert [m.labels for m in there.iter_mentions()] == [m.labels for m in here.iter_mentions()]
    # Every batch (6 of up to 4 rows) went to the process; the import labelled none itself.
    assert (own_here.batches, own_there.batches, sent) == (6, 0, 6)
    # ... and found the numbers in their texts: the import searched only older posts of cases (if any).
    assert searched_here >= 18 and searched_there < searched_here - 17


class RaisesOnBoom:
    name = "raises-on-boom"

    def classify(self, texts: Sequence[str]) -> list[Labels]:
        if any("boom" in t for t in texts):
            raise RuntimeError("model crashed")
        return KeywordClassifier().classify(texts)


class DiesOnBoom:
    name = "dies-on-boom"

    def __init__(self, how: str = "exit"):
        self.how = how

    def classify(self, texts: Sequence[str]) -> list[Labels]:
        if any("boom" in t for t in texts):
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(3)
        return KeywordClassifier().classify(texts)


def rows(n: int, boom_at: int) -> str:
    return "".join(json.dumps({"channel": "x", "external_id": str(i), "author_handle": f"a{i}",
                               "text": f"where is order {i}" + (" boom" if i + 1 == boom_at else ""),
                               "created_at": f"2026-11-16T09:{i:02d}:00Z"}) + "\n" for i in range(n))


@pytest.mark.parametrize(("factory", "cause"), [
    (RaisesOnBoom, "ClassifierProcessError: classifier process: RuntimeError: model crashed"),
    (DiesOnBoom, "ClassifierProcessError: classifier process: the classifier process stopped (exit code 3) "
                 "before it answered; R"),
    (functools.partial(DiesOnBoom, "kill"), "ClassifierProcessError: classifier process: the classifier process "
                                            "stopped (exit code -9) before it answered; R"),
], ids=["raises", "exits", "killed"])
def test_a_failing_classifier_process_stops_the_import_before_that_batch_in_one_line(
        tmp_path: Path, store: Store, config: Config, factory: object, cause: str):
    path = tmp_path / "m.jsonl"
    path.write_text(rows(11, boom_at=7))  # batches of 3: rows 1-3, 4-6, 7-9 (boom), 10-11
    # A process's own failure says how to do without processes (R); the classifier's own error does not.
    with ClassifierProcesses(factory, 1, remedy="R") as ahead:  # type: ignore[arg-type]
        ahead.wait_ready()
        with pytest.raises(ImportStopped) as stopped:
            import_mentions(path, Pipeline(store, config, KeywordClassifier()), batch_rows=3, classify_ahead=ahead)
    message = str(stopped.value)
    assert "\n" not in message
    assert message == (f"stopped at row 7 after writing 6 of 11 valid rows: {cause}. Running the same import "
                       "again finishes it (rows already written are skipped)")
    # The two batches before it, whole; nothing of the failed batch or the one prepared after it.
    assert [m.external_id for m in store.iter_mentions()] == [str(i) for i in range(6)]
    assert store.count("cases") == 6
    report = import_mentions(path, Pipeline(store, config, KeywordClassifier()), batch_rows=3)
    assert (report.stored, report.unchanged) == (5, 6)
    assert sorted(int(m.external_id) for m in store.iter_mentions()) == list(range(11))
    assert store.count("cases") == 11


def test_a_classifier_that_cannot_be_built_in_the_process_says_why():
    with ClassifierProcesses(functools.partial(load_classifier, "no-such-model"), 1) as ahead:
        with pytest.raises(ClassifierProcessError, match="ValueError: unknown classifier 'no-such-model'"):
            ahead.wait_ready()


def test_a_classifier_process_starts_whatever_script_runs_as_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Found by the full suite: after a Streamlit page had run in the same process (AppTest, or a
    console page), ``__main__`` was that page's script, and every spawned classifier process ran
    the page again as its own main and died ("exit code 1 before it answered"). The processes
    need nothing of the caller's main: they import the classifier by name."""
    import sys
    import types

    page = tmp_path / "page.py"
    page.write_text("raise SystemExit('a page script, not a classifier')\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(page)
    monkeypatch.setitem(sys.modules, "__main__", main)
    with ClassifierProcesses(BASELINE, 1) as ahead:
        ahead.wait_ready()
        pending = ahead.submit(["my parcel never came"])
        assert pending is not None
        assert [label.intent for label in pending.result()] == [label.intent for label in
                                                                 load_classifier("baseline").classify(["my parcel never came"])]
    assert sys.modules["__main__"] is main  # put back as it was


def test_the_command_labels_alike_with_and_without_a_classifier_process(tmp_path: Path):
    """Through the command line, a file of five batches: the labels and cases stored with a classifier
    process are those of --classify-processes 0."""
    feed = tmp_path / "m.jsonl"
    feed.write_text(rows(30, boom_at=0).replace("where is order", "my parcel is late, order"))
    config = tmp_path / "doorstep.toml"
    config.write_text("[imports]\nbatch_rows = 7\n")
    dumps = []
    for processes in ("0", "1"):
        db = tmp_path / f"p{processes}.db"
        result = CliRunner().invoke(cli, ["--db", str(db), "--config", str(config), "import", "mentions", str(feed),
                                          "--classifier", "baseline", "--classify-processes", processes])
        assert result.exit_code == 0, result.output
        assert "30 mentions rows: 30 new" in result.output
        dumps.append([(m.external_id, m.labels, m.case_id) for m in Store(db).iter_mentions()])
    assert dumps[0] == dumps[1] and all(labels is not None for _, labels, _ in dumps[0])
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "bad.db"), "--config", str(config), "import",
                                      "mentions", str(feed), "--classify-processes", "-1"])
    assert result.exit_code == 2 and "--classify-processes" in result.output
