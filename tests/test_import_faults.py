"""Faults a user can cause end in one line naming the file, row or database and the remedy.

Issue 14 items 8 and 10: bad bytes, absurd values, a read-only or full database. Never a
traceback (``--debug`` shows it), and one bad row never costs the good ones.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

import doorstep.store as store_module
from doorstep.cases import sla_due
from doorstep.cli import cli
from doorstep.models import Mention, Order
from doorstep.store import Store

from conftest import T0

GOOD = {"channel": "x", "external_id": "1", "text": "where is my parcel", "created_at": "2026-11-16T09:00:00Z"}


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def test_year_9999_and_huge_follower_counts_are_rejected_by_the_model_not_by_an_overflow(config):
    with pytest.raises(ValidationError, match="year 9999 is outside"):
        Mention.model_validate({**GOOD, "created_at": "9999-12-31T23:59:59Z"})
    with pytest.raises(ValidationError, match="less than or equal"):
        Mention.model_validate({**GOOD, "author_followers": 10**30})
    with pytest.raises(ValidationError, match="greater than or equal"):
        Mention.model_validate({**GOOD, "author_followers": -5})
    for empty in ("channel", "external_id"):
        with pytest.raises(ValidationError) as exc:
            Mention.model_validate({**GOOD, empty: "  "})
        assert exc.value.errors()[0]["loc"] == (empty,)
    # What is accepted can be scheduled: the latest allowed year does not overflow the SLA.
    latest = Mention.model_validate({**GOOD, "created_at": "2199-12-31T00:00:00Z"})
    assert sla_due(10.0, latest.created_at, config)[1].year >= 2199


def test_order_items_accept_plain_names(tmp_path):
    order = Order.model_validate({"number": "1", "customer_id": "c", "placed_at": T0, "items": ["lamp", {"sku": "MUG"}]})
    assert order.items == [{"name": "lamp"}, {"sku": "MUG"}]


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "no-such-folder" / "x.db"
    # A command that creates the database (read-only ones refuse earlier: "no database at ...").
    result = run("--db", str(missing), "user", "add", "ana", "--password-stdin", input="a-long-password\n")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "folder exists" in lines[0]
    assert "Traceback" not in result.output
    debug = run("--debug", "--db", str(missing), "user", "add", "ana", "--password-stdin", input="a-long-password\n")
    assert debug.exit_code == 1 and debug.exception is not None  # the real exception, not a message
    assert not isinstance(debug.exception, SystemExit)


def test_user_list_works_on_a_read_only_database_and_writes_name_the_path(tmp_path, monkeypatch):
    db = tmp_path / "ro.db"
    Store(db).close()  # created and migrated while writable
    real = store_module._connect
    monkeypatch.setattr(store_module, "_connect", lambda path, params="": real(path, params or "mode=ro"))
    store = Store(db)
    assert store.count("mentions") == 0
    store.close()
    listed = run("--db", str(db), "user", "list")
    assert listed.exit_code == 0, listed.output
    orders = tmp_path / "o.jsonl"
    orders.write_text(json.dumps({"number": "1", "customer_id": "c1", "placed_at": "2026-11-10T10:00:00Z"}) + "\n")
    imported = run("--db", str(db), "import", "orders", str(orders))
    assert imported.exit_code == 1
    assert "Traceback" not in imported.output
    last = imported.output.strip().splitlines()[-1]
    assert str(db) in last and "read-only" in last


def test_a_full_disk_is_one_line_naming_the_database(tmp_path, monkeypatch):
    db = tmp_path / "full.db"
    Store(db).close()
    real = store_module._connect

    def tiny(path: str, params: str = "") -> sqlite3.Connection:
        conn = real(path, params)
        pages = conn.execute("pragma page_count").fetchone()[0]
        conn.execute(f"pragma max_page_count = {pages}")  # not one page more: the "disk" is full
        return conn

    monkeypatch.setattr(store_module, "_connect", tiny)
    rows = [{"number": str(n), "customer_id": "c1", "placed_at": "2026-11-10T10:00:00Z", "items": ["x" * 500]}
            for n in range(200)]
    orders = tmp_path / "o.jsonl"
    orders.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run("--db", str(db), "import", "orders", str(orders))
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert str(db) in last and "disk is full" in last and "free some space" in last


def test_a_read_only_database_not_yet_in_wal_mode_opens_without_writing(tmp_path, monkeypatch):
    db = tmp_path / "ro.db"
    Store(db).close()
    conn = sqlite3.connect(db)
    conn.execute("pragma journal_mode = delete")  # as a copy made by a backup tool would be
    conn.close()
    real = store_module._connect
    monkeypatch.setattr(store_module, "_connect", lambda path, params="": real(path, params or "mode=ro"))
    store = Store(db)
    assert store.read_only and store.count("cases") == 0
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.db.execute("insert into notes (case_id, author, text) values (1, 'a', 'b')")
