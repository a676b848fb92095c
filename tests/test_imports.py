"""Imports: every valid row committed together, every rejected row named, re-imports change nothing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from commands.cli import cli
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.files import import_mentions, import_orders, import_tracking, parse_mentions, parse_twcs

from conftest import KeywordClassifier, require_shared


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_bad_rows_are_reported_with_file_row_field_and_valid_rows_are_kept(tmp_path, store, config):
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"channel": "x", "external_id": "1", "text": "where is my order", "created_at": "2026-11-16T09:00:00Z"},
            "{not json",
            {"channel": "x", "external_id": "3", "text": "", "created_at": "2026-11-16T09:00:00Z"},
            {"channel": "x", "external_id": "4", "text": "hi", "created_at": "yesterday"},
            {"channel": "x", "external_id": "5", "text": "hi", "created_at": "2026-11-16T09:00:00Z", "colour": "red"},
            {"channel": "x", "external_id": "6", "text": "thanks!", "created_at": "2026-11-16T10:00:00+01:00"},
        ],
    )
    # 4 of 6 rows rejected: above the default share (0.5), so nothing is written unless told.
    refused = import_mentions(path, Pipeline(store, config, KeywordClassifier()))
    assert not refused.committed and refused.stored == 0 and store.count("mentions") == 0
    assert "nothing written: 67% of rows were rejected" in refused.summary()
    report = import_mentions(path, Pipeline(store, config, KeywordClassifier()), max_rejected_share=1.0)
    assert [(e.row, e.field) for e in report.errors] == [(2, "(line)"), (3, "text"), (4, "created_at"), (5, "colour")]
    assert all(str(path) in str(e) for e in report.errors)
    assert "text is empty" in str(report.errors[1])
    assert (report.valid, report.stored) == (2, 2)
    assert store.mention_by_external_id("x", "6").created_at.isoformat() == "2026-11-16T09:00:00+00:00"


def test_reimporting_the_same_file_adds_nothing(tmp_path, store, config):
    path = write_jsonl(tmp_path / "m.jsonl", [
        {"channel": "x", "external_id": str(i), "text": f"post {i}", "created_at": "2026-11-16T09:00:00Z"} for i in range(5)
    ])
    pipeline = Pipeline(store, config, KeywordClassifier())
    assert import_mentions(path, pipeline).stored == 5
    cases = store.count("cases")
    assert import_mentions(path, pipeline).stored == 0
    assert (store.count("mentions"), store.count("cases")) == (5, cases)


def test_an_import_that_fails_midway_writes_nothing(tmp_path, store, config):
    class Exploding(KeywordClassifier):
        def classify(self, texts):
            if any("boom" in t for t in texts):
                raise RuntimeError("model crashed")
            return super().classify(texts)

    rows = [{"channel": "x", "external_id": str(i), "text": "fine", "created_at": "2026-11-16T09:00:00Z"} for i in range(3)]
    rows.append({"channel": "x", "external_id": "9", "text": "boom", "created_at": "2026-11-16T09:00:00Z"})
    pipeline = Pipeline(store, config, Exploding(), batch_size=2)
    with pytest.raises(RuntimeError):
        import_mentions(write_jsonl(tmp_path / "m.jsonl", rows), pipeline)
    assert store.count("mentions") == 0 and store.count("cases") == 0


def test_an_import_gives_back_to_the_collector_what_it_kept_out_of_it(tmp_path, store, config, monkeypatch):
    """import_mentions keeps the parsed records and written batches out of full collections while it
    runs (gc.freeze) and gives them back when it ends, finished or stopped; objects a process froze
    itself stay frozen."""
    import gc

    rows = [{"channel": "x", "external_id": str(i), "text": "where is it", "created_at": "2026-11-16T09:00:00Z"}
            for i in range(5)]
    frozen_while_writing = []
    pipeline = Pipeline(store, config, KeywordClassifier(), batch_size=2)
    real_ingest = pipeline.ingest

    def ingest(*args, **kwargs):
        frozen_while_writing.append(gc.get_freeze_count())
        return real_ingest(*args, **kwargs)

    monkeypatch.setattr(pipeline, "ingest", ingest)
    assert gc.get_freeze_count() == 0
    assert import_mentions(write_jsonl(tmp_path / "m.jsonl", rows), pipeline, batch_rows=2).stored == 5
    assert len(frozen_while_writing) == 3 and all(frozen_while_writing)
    assert gc.get_freeze_count() == 0

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "ingest", explode)
    rows.append({"channel": "x", "external_id": "9", "text": "new", "created_at": "2026-11-16T09:00:00Z"})
    with pytest.raises(Exception):
        import_mentions(write_jsonl(tmp_path / "m2.jsonl", rows), pipeline, batch_rows=2)
    assert gc.get_freeze_count() == 0

    monkeypatch.setattr(pipeline, "ingest", real_ingest)
    gc.freeze()
    try:
        import_mentions(write_jsonl(tmp_path / "m3.jsonl", rows), pipeline, batch_rows=2)
        assert gc.get_freeze_count() > 0  # not unfrozen by the import (objects freed meanwhile leave it)
    finally:
        gc.unfreeze()


def test_csv_mentions_import(tmp_path, store, config):
    path = tmp_path / "m.csv"
    path.write_text("channel,external_id,text,created_at,author_handle\nmastodon,a1,\"lost, again\",2026-11-16T09:00:00Z,ann\n")
    report = import_mentions(path, Pipeline(store, config, KeywordClassifier()))
    assert report.ok and store.mention_by_external_id("mastodon", "a1").text == "lost, again"


def test_orders_embed_customers_and_shipments_and_tracking_follows(tmp_path, store):
    orders = tmp_path / "orders.csv"
    with orders.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "customer_id", "placed_at", "brand", "total", "items", "customer_name", "customer_x", "tracking_number", "courier"])
        w.writerow(["1001", "c1", "2026-11-10T10:00:00Z", "Larkspur", "59.5", '[{"sku": "MUG", "qty": 2}]', "Ann Lee", "ann_lee", "1Z999AA10123456784", "UPS"])
        w.writerow(["1002", "c1", "not a date", "Larkspur", "10", "[]", "Ann Lee", "", "", ""])
        w.writerow(["1003", "c1", "2026-11-10T10:00:00Z", "Larkspur", "10", "[oops", "Ann Lee", "", "", ""])
        w.writerow(["1004", "c1", "2026-11-10T10:00:00Z", "Larkspur", "10", "[]", "Ann Lee", "", "1Z999AA10123456784", ""])
    report = import_orders(orders, store, max_rejected_share=1.0)  # 3 of 4 rejected: write the good one anyway
    assert [(e.row, e.field) for e in report.errors] == [(3, "placed_at"), (4, "items"), (5, "courier")]
    order = store.get_order("1001")
    assert order.items == [{"sku": "MUG", "qty": 2}] and order.shipments[0].courier == "UPS"
    assert store.customer_id_by_handle("x", "ann_lee") == "c1"

    tracking = write_jsonl(tmp_path / "t.jsonl", [
        {"tracking_number": "1Z999AA10123456784", "time": "2026-11-11T08:00:00Z", "status": "in_transit", "location": "Leeds"},
        {"tracking_number": "1Z999AA10123456784", "time": "2026-11-12T08:00:00Z", "status": "teleported"},
    ])
    t_report = import_tracking(tracking, store)
    assert [(e.row, e.field) for e in t_report.errors] == [(2, "status")]
    assert store.get_shipment("1Z999AA10123456784").status == "in_transit"
    assert import_tracking(tracking, store).stored == 0


def test_twcs_sample_imports_with_threads_intact_and_second_import_adds_nothing(tmp_path, config):
    path = require_shared("data/twcs-sample/twcs_sample.csv")
    parsed = parse_twcs(path)
    assert not parsed.errors
    by_id = {m.external_id: m for m in parsed.records}
    store = Store(tmp_path / "twcs.db")
    pipeline = Pipeline(store, config, KeywordClassifier())
    report = import_mentions(path, pipeline, "twcs")
    assert report.stored == len(by_id)
    # Every reply whose parent is in the file shares the parent's thread, in the store too.
    replies = [m for m in parsed.records if m.in_reply_to in by_id]
    assert len(replies) > 1000
    for reply in replies:
        stored_reply = store.mention_by_external_id("x", reply.external_id)
        stored_parent = store.mention_by_external_id("x", reply.in_reply_to)
        assert stored_reply.thread_id == stored_parent.thread_id
        assert stored_reply.in_reply_to == reply.in_reply_to
    brand_rows = [m for m in parsed.records if m.outbound]
    assert brand_rows
    # Brand replies join their customer's case but never open one of their own.
    cases_of_only_brand_posts = store.db.execute(
        "select count(*) from cases c where not exists "
        "(select 1 from mentions m where m.case_id = c.id and m.outbound = 0)"
    ).fetchone()[0]
    assert cases_of_only_brand_posts == 0
    assert store.count("cases") > 0
    counts = (store.count("mentions"), store.count("cases"))
    assert import_mentions(path, pipeline, "twcs").stored == 0
    assert (store.count("mentions"), store.count("cases")) == counts


def test_twcs_bad_rows_are_named(tmp_path):
    path = tmp_path / "bad_twcs.csv"
    path.write_text(
        "tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id\n"
        "1,115712,True,Tue Oct 31 22:10:47 +0000 2017,@sprintcare hello,2,\n"
        "2,sprintcare,maybe,Tue Oct 31 22:11:47 +0000 2017,hi,,1\n"
        "3,115712,True,31/10/2017,help,,\n"
        "4,115712,True,Tue Oct 31 22:12:47 +0000 2017,,,\n"
    )
    parsed = parse_mentions(path)
    assert [(e.row, e.field) for e in parsed.errors] == [(3, "inbound"), (4, "created_at"), (5, "text")]
    assert [m.external_id for m in parsed.records] == ["1"]


def test_cli_import_then_export_round_trip(tmp_path, monkeypatch):
    db = tmp_path / "cli.db"
    src = write_jsonl(tmp_path / "m.jsonl", [
        {"channel": "x", "external_id": "1", "text": "where is my parcel?", "created_at": "2026-11-16T09:00:00Z", "author_handle": "ann"},
        {"channel": "x", "external_id": "2", "text": "Still nothing", "created_at": "2026-11-16T09:05:00Z", "in_reply_to": "1"},
        "not json",
    ])
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", str(db), "import", "mentions", str(src), "--classifier", "baseline"])
    assert result.exit_code == 1  # one rejected row
    assert "row 3" in result.output and "2 new" in result.output
    out = runner.invoke(cli, ["--db", str(db), "export", "mentions"])
    rows = [json.loads(line) for line in out.output.splitlines()]
    assert [r["external_id"] for r in rows] == ["1", "2"]
    assert rows[1]["thread_id"] == "1" and rows[1]["in_reply_to"] == "1"
    assert rows[0]["created_at"] == "2026-11-16T09:00:00+00:00"
    assert {"sentiment", "intent", "complaint", "urgency", "author_handle"} <= rows[0].keys()
    strict = runner.invoke(cli, ["--db", str(db), "import", "mentions", str(src), "--strict", "--classifier", "baseline"])
    assert strict.exit_code == 1 and "0 new" in strict.output
