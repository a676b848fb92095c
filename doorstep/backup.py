"""A consistent copy of a SQLite shop while it runs: ``doorstep db backup --to FILE``.

The product told people to "restore a backup" (a refused upgrade, a damaged file) and never how to take one.
Copying ``doorstep.db`` with ``cp`` while the console and workers write is not a backup: the database lives in
three files (``-wal`` holds the newest commits) and a copy taken mid-write can be torn. SQLite's online backup
(``sqlite3.Connection.backup``) copies one consistent snapshot, page by page, without stopping the writers; the
copy is checked (``pragma integrity_check``) before it takes the target's name, so a backup that exists is whole.
A PostgreSQL shop is backed up with ``pg_dump`` (the README says how): this module does not wrap it.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from doorstep.dialect import database_target, describe_target, is_postgres


class BackupError(Exception):
    """The backup was not taken; the message names the file or setting and the remedy, in one line."""


@dataclass(frozen=True)
class Backup:
    path: Path
    bytes: int
    mentions: int
    cases: int


def backup_sqlite(db: str | Path, to: str | Path) -> Backup:
    """Write a consistent, checked copy of the SQLite shop ``db`` to ``to`` (which must not exist).

    Written under a temporary name beside it and renamed once checked, so an interrupted backup never leaves a file that
    looks whole. Readable by its owner only (it holds customers' posts, names and addresses)."""
    source = str(db)
    if is_postgres(source):
        raise BackupError(f"{describe_target(source)} is a PostgreSQL database: back it up with pg_dump "
                          "(README, Backups), not with doorstep db backup")
    source = database_target(source)
    if source == ":memory:" or not Path(source).is_file():
        raise BackupError(f"no database at {source}: pass --db PATH (or set DOORSTEP_DB)")
    target = Path(to)
    if target.exists():
        raise BackupError(f"{target} exists: a backup never overwrites a file; choose a new name")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a folder: create it, or choose another --to")
    if target.resolve() == Path(source).resolve():
        raise BackupError(f"{target} is the database itself: choose another --to")
    # A name of its own (never a file someone keeps beside the target), owner-only from the start.
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(fd)
    partial = Path(name)
    try:
        with sqlite3.connect(f"file:{Path(source).resolve()}?mode=ro", uri=True) as src, \
                sqlite3.connect(partial) as dst:
            # In one step, in one read transaction: in WAL mode the writers go on meanwhile. Step by step, every
            # write by another connection between two steps would start the copy again (a busy shop: never done).
            src.backup(dst, pages=-1)
            dst.execute("pragma journal_mode = delete")  # one self-contained file
            problems = [r[0] for r in dst.execute("pragma integrity_check").fetchall()]
            if problems != ["ok"]:
                raise BackupError(f"the copy of {source} failed its integrity check ({problems[0]}): the database "
                                  "itself may be damaged (sqlite3 FILE 'pragma integrity_check')")
            mentions = _count(dst, "mentions")
            cases = _count(dst, "cases")
        dst.close()
        src.close()
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"could not back up {source} to {target}: {exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return Backup(target, target.stat().st_size, mentions, cases)


def _count(db: sqlite3.Connection, table: str) -> int:
    try:
        return int(db.execute(f"select count(*) from {table}").fetchone()[0])
    except sqlite3.Error:
        return 0
