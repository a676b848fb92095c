"""``doorstep db backup``: a consistent, checked copy of a SQLite shop while it is being written.

The product told people to "restore a backup" and never how to take one; ``cp`` of a database in WAL mode while
workers write can be torn (the newest commits live in ``-wal``)."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

from click.testing import CliRunner

from commands.cli import cli
from doorstep.store import Store

from tests.conftest import mention


def test_a_backup_taken_while_posts_are_written_is_whole_and_opens(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    store = Store(db)
    with store.transaction():  # a few MB, so the copy takes a while and the writer writes meanwhile
        for n in range(3000):
            store.insert_mention(mention(str(n), f"post {n} " + "x" * 2000))
    stop = threading.Event()

    def write() -> None:
        writer = Store(db)
        n = 3000
        while not stop.is_set():
            with writer.transaction():
                writer.insert_mention(mention(str(n), f"post {n} " + "x" * 2000))
            n += 1
        writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        result = CliRunner().invoke(cli, ["--db", str(db), "db", "backup", "--to", str(tmp_path / "b.db")])
    finally:
        stop.set()
        thread.join()
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"backup written: {tmp_path / 'b.db'} (") and "integrity checked" in result.output
    copy = sqlite3.connect(tmp_path / "b.db")
    assert copy.execute("pragma integrity_check").fetchone()[0] == "ok"
    ids = [int(r[0]) for r in copy.execute("select external_id from mentions")]
    assert ids and sorted(ids) == list(range(len(ids)))  # a snapshot: every post up to one moment, no gap
    assert copy.execute("pragma journal_mode").fetchone()[0] == "delete"  # one file, no -wal needed
    copy.close()
    assert stat.S_IMODE(os.stat(tmp_path / "b.db").st_mode) == 0o600  # customers' data: its owner's only
    assert Store(tmp_path / "b.db").count("mentions") == len(ids)  # a restore opens as a shop
    assert not (tmp_path / "b.db.partial").exists()
    store.close()


def test_a_backup_never_overwrites_and_says_what_to_do_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    Store(db).close()
    (tmp_path / "old.db").write_text("yesterday's backup")
    runner = CliRunner()
    cases = [
        (["--db", str(db), "db", "backup", "--to", str(tmp_path / "old.db")], "exists: a backup never overwrites"),
        (["--db", str(tmp_path / "none.db"), "db", "backup", "--to", str(tmp_path / "n.db")], "no database at"),
        (["--db", str(db), "db", "backup", "--to", str(db)], "exists"),
        (["--db", str(db), "db", "backup", "--to", str(tmp_path / "no" / "such" / "b.db")], "is not a folder"),
        (["--db", "postgresql://u:secret@127.0.0.1/test", "db", "backup", "--to", str(tmp_path / "p.db")], "pg_dump"),
        (["--db", "postgresql://127.0.0.1/test?user=u&password=secret", "db", "backup", "--to", str(tmp_path / "q.db")],
         "pg_dump"),
    ]
    for args, words in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code == 1, (args, result.output)
        assert words in result.output and result.output.count("\n") == 1, result.output
        assert "secret" not in result.output
    assert (tmp_path / "old.db").read_text() == "yesterday's backup"
    # Security audit of today's changes: a file named like the copy in progress ("<target>.partial") was deleted.
    (tmp_path / "report.partial").write_text("a thesis")
    assert runner.invoke(cli, ["--db", str(db), "db", "backup", "--to", str(tmp_path / "report")]).exit_code == 0
    assert (tmp_path / "report.partial").read_text() == "a thesis"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial") and p.name != "report.partial"]
    assert not (tmp_path / "none.db").exists()  # a backup never makes the database it was asked for
