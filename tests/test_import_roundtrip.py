"""Export then import is lossless; big imports write in batches and take the lock only to write.

Issue 18 item 1 (round trip, failure share) and issue 14 item 4 (bounded batches, BEGIN
IMMEDIATE, classification outside the write transaction).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from commands.cli import cli
from commands.demo import DEFAULT_CONFIG, build_demo
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.files import ImportStopped, import_mentions

from conftest import KeywordClassifier, require_shared

#: Fields an import assigns anew: the store's ids and the cases it rebuilds.
ASSIGNED = ("id", "case_id")


def export(db: Path, out: Path) -> list[dict]:
    result = CliRunner().invoke(cli, ["--db", str(db), "export", "mentions", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def assert_round_trip(source: Path, tmp_path: Path) -> None:
    exported = export(source, tmp_path / "export.jsonl")
    assert any("intent" in r for r in exported) and any(r["outbound"] for r in exported)
    copy = tmp_path / "copy.db"
    result = CliRunner().invoke(cli, ["--db", str(copy), "import", "mentions", str(tmp_path / "export.jsonl"),
                                      "--classifier", "baseline"])
    assert result.exit_code == 0, result.output[-2000:]
    assert "rejected" in result.output and "error:" not in result.output
    again = export(copy, tmp_path / "again.jsonl")
    strip = lambda rows: sorted(({k: v for k, v in r.items() if k not in ASSIGNED} for r in rows),  # noqa: E731
                                key=lambda r: (r["channel"], r["external_id"]))
    assert strip(again) == strip(exported)  # every field and every label, "model" included

    # Brand replies keep their parents: a reply that shared its parent's case still does.
    def shared_cases(db: Path) -> int:
        return Store(db).db.execute(
            "select count(*) from mentions r join mentions p on p.channel = r.channel and p.external_id = r.in_reply_to "
            "where r.outbound = 1 and r.case_id is not null and r.case_id = p.case_id").fetchone()[0]

    assert shared_cases(copy) == shared_cases(source) > 0


def test_the_demo_shop_exports_and_imports_back_without_loss(tmp_path):
    db = tmp_path / "demo.db"
    build_demo(str(db), seed=11, customers=30, orders=60, mentions=120, config_path=str(DEFAULT_CONFIG),
               now=datetime(2026, 11, 23, 12, tzinfo=timezone.utc), classifier=KeywordClassifier())
    assert_round_trip(db, tmp_path)


def test_the_twcs_sample_exports_and_imports_back_without_loss(tmp_path, config):
    path = require_shared("data/twcs-sample/twcs_sample.csv")
    db = tmp_path / "twcs.db"
    store = Store(db)
    report = import_mentions(path, Pipeline(store, config, KeywordClassifier()), "twcs")
    assert report.ok
    store.close()
    assert_round_trip(db, tmp_path)


def test_a_file_where_most_rows_fail_writes_nothing_unless_told(tmp_path):
    path = tmp_path / "m.jsonl"
    rows = [{"channel": "x", "external_id": str(i), "text": "hi", "created_at": "2026-11-16T09:00:00Z",
             **({"sentiment": "grumpy"} if i % 4 else {})} for i in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = tmp_path / "m.db"
    runner = CliRunner()
    refused = runner.invoke(cli, ["--db", str(db), "import", "mentions", str(path), "--classifier", "baseline"])
    assert refused.exit_code == 1
    assert "nothing written: 75% of rows were rejected, more than 50%" in refused.output
    assert "--max-rejected 1" in refused.output and Store(db).count("mentions") == 0
    forced = runner.invoke(cli, ["--db", str(db), "import", "mentions", str(path), "--classifier", "baseline",
                                 "--max-rejected", "1"])
    assert forced.exit_code == 1 and "2 new" in forced.output and Store(db).count("mentions") == 2
    strict = runner.invoke(cli, ["--db", str(tmp_path / "s.db"), "import", "mentions", str(path),
                                 "--classifier", "baseline", "--strict", "--max-rejected", "1"])
    assert "nothing written (--strict" in strict.output and Store(tmp_path / "s.db").count("mentions") == 0


def rows(n: int) -> list[dict]:
    return [{"channel": "x", "external_id": str(i), "text": f"where is order {i}", "author_handle": f"a{i}",
             "created_at": f"2026-11-16T09:{i:02d}:00Z"} for i in range(n)]


def test_a_long_import_commits_in_batches_and_a_rerun_finishes_it(tmp_path, store, config):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(7)))

    class CrashesOnThirdBatch(KeywordClassifier):
        calls = 0

        def classify(self, texts):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("model crashed")
            return super().classify(texts)

    with pytest.raises(ImportStopped) as stopped:
        import_mentions(path, Pipeline(store, config, CrashesOnThirdBatch()), batch_rows=3)
    assert "stopped at row 7 after writing 6 of 7 valid rows: RuntimeError: model crashed" in str(stopped.value)
    assert store.count("mentions") == 6
    report = import_mentions(path, Pipeline(store, config, KeywordClassifier()), batch_rows=3)
    assert (report.stored, report.unchanged) == (1, 6) and store.count("mentions") == 7


def test_classifying_happens_outside_the_write_transaction(tmp_path, config):
    """Another writer committing while the import classifies must not make the import fail."""
    db = tmp_path / "busy.db"
    store, other = Store(db), Store(db)
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(4)))

    class WhileSomeoneWrites(KeywordClassifier):
        def classify(self, texts):
            assert not store.db.conn.in_transaction  # no lock, no snapshot held while the model runs
            other.audit("agent", "note.add", None, {"text": "written during the import"})
            return super().classify(texts)

    report = import_mentions(path, Pipeline(store, config, WhileSomeoneWrites()), batch_rows=2)
    assert report.ok and store.count("mentions") == 4


def test_thousands_of_rejected_rows_do_not_bury_the_summary(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"channel": "x", "external_id": str(i), "text": "hi"}) + "\n" for i in range(150)))
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "e.db"), "import", "mentions", str(path),
                                      "--classifier", "baseline"])
    lines = result.output.strip().splitlines()
    assert len(lines) == 102 and "... and 50 more rejected rows (--all-errors" in lines[-2]
    assert "0 new" in lines[-1] and "nothing written" in lines[-1]
    every = CliRunner().invoke(cli, ["--db", str(tmp_path / "e.db"), "import", "mentions", str(path),
                                     "--classifier", "baseline", "--all-errors"])
    assert len(every.output.strip().splitlines()) == 151
