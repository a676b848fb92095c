"""``doorstep worker`` (PostgreSQL: procrastinate workers), ``doorstep db copy`` (SQLite -> PostgreSQL) and
``doorstep db backup`` (a consistent copy of a SQLite shop while it runs)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from doorstep.context import Context, pass_ctx
from doorstep.job_queue import QUEUES as QUEUE_NAMES


def _queues(value: str) -> list[str]:
    names = [q.strip() for q in value.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUEUE_NAMES]
    if unknown or not names:
        raise click.BadParameter(f"{', '.join(unknown) or '(none)'}: the queues are {', '.join(QUEUE_NAMES)}",
                                 param_hint="--queues")
    return names


@click.command()
@click.option("--queues", default=",".join(QUEUE_NAMES), show_default=True,
              help="Comma-separated queues this worker takes jobs from.")
@click.option("--concurrency", default=None, type=click.IntRange(1, 64),
              help="Jobs this process runs at the same time (threads). Default: one per queue it serves, so a "
                   "network that stopped answering holds up its own polling, not the sends.")
@click.option("--classifier", default=None, help="Classifier of the classify queue (default: configured).")
@click.option("--name", default=None, help="This worker's name in logs and in procrastinate's tables.")
@click.option("--until-empty", is_flag=True, help="Stop once the queues are empty (tests, benchmarks, backfills).")
@click.option("--verbose", "-v", is_flag=True, help="Log every job.")
@pass_ctx
def worker(ctx: Context, queues: str, concurrency: int | None, classifier: str | None, name: str | None,
           until_empty: bool, verbose: bool) -> None:
    """Run a job-queue worker on PostgreSQL; start as many as you like, on as many machines.

    Each listener account is polled by one worker at a time, sends go out once, and periodic
    work (SLA checks, alerts, follow-ups, the weekly report) runs once per period however
    many workers run. On SQLite use `doorstep run` (one process, a thread per job).
    """
    from commands.jobs_queue import run_worker
    from doorstep.dialect import is_postgres

    if not is_postgres(ctx.db_path):
        raise click.ClickException(
            f"--db {ctx.db_path} is a SQLite file: `doorstep worker` needs PostgreSQL (--db postgresql://...); "
            "on SQLite run `doorstep run`")
    names = _queues(queues)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.store  # opens and migrates the database first: a bad URL is one line, before any worker starts
    # One job per queue by default (each its own slot): with one slot, a poll of an X API that stopped answering
    # (7 tries of a 30 s read timeout) held every send of the worker for 5 minutes (PostgreSQL team audit).
    run_worker(ctx.db_path, ctx.config, queues=names, concurrency=concurrency, classifier=classifier,
               name=name, wait=not until_empty)


@click.group()
def db() -> None:
    """The database itself: back up a SQLite shop; copy a shop from SQLite to PostgreSQL."""


@db.command(name="copy")
@click.option("--from", "source", required=True, metavar="SQLITE_FILE", help="The SQLite database to copy.")
@click.option("--to", "target", required=True, metavar="POSTGRESQL_URL", help="postgresql://user@host/db")
@click.option("--batch", default=5000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Rows per transaction (a rerun continues after the last committed batch).")
@click.option("--replace", is_flag=True,
              help="Empty the target's Doorstep tables first (their rows are lost): for a target that holds "
                   "another shop, or was written to since the last copy.")
def copy_cmd(source: str, target: str, batch: int, replace: bool) -> None:
    """Copy every table losslessly and resumably, then print per-table counts and checksums of both sides."""
    from commands.db_copy import CopyError, copy_database

    try:
        report = copy_database(source, target, batch=batch, progress=lambda line: click.echo(line, err=True),
                               replace=replace)
    except CopyError as exc:
        raise click.ClickException(str(exc)) from None
    width = max((len(t.table) for t in report.tables), default=5)
    click.echo(f"{'table':<{width}}  {'sqlite':>9}  {'postgresql':>10}  {'copied now':>10}  checksum")
    for t in report.tables:
        same = "same" if t.source_checksum == t.target_checksum and t.source_count == t.target_count else "DIFFERENT"
        click.echo(f"{t.table:<{width}}  {t.source_count:>9}  {t.target_count:>10}  {t.copied:>10}  "
                   f"{t.source_checksum[:16]} {same}")
    if not report.identical:
        # Never "run the copy again": a table that differs was already copied again whole, so a rerun
        # would end the same way (PostgreSQL holds one of its values differently from SQLite).
        raise click.ClickException(
            f"{', '.join(report.differing)} still differ(s) after being copied again whole: PostgreSQL holds some "
            "of its values differently from SQLite; keep the shop on SQLite and report this with the table above")
    click.echo("every table copied; counts and checksums match")


@db.command(name="backup")
@click.option("--to", "target", required=True, metavar="FILE", help="The backup file to write (must not exist).")
@pass_ctx
def backup_cmd(ctx: Context, target: str) -> None:
    """Write a consistent, checked copy of the SQLite shop (--db) while the console and workers run."""
    from doorstep.backup import BackupError, backup_sqlite

    try:
        made = backup_sqlite(ctx.db_path, target)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"backup written: {made.path} ({made.bytes / 1_000_000:.1f} MB, {made.mentions:,} posts, "
               f"{made.cases:,} cases; integrity checked). To restore: stop the console and workers, copy it over "
               f"{ctx.db_path}, start them again")


commands: list[Any] = [worker, db]
