"""The ``doorstep`` command line. It mirrors the Python API: each command is a thin
wrapper that opens the store and config and calls one function.

Commands of the outer packages (listeners, classifiers, responders) import them
inside the command, so ``doorstep --help`` stays fast and the core does not depend
on them.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import click

from doorstep.config import Config, database_location, default_db_path
from doorstep.context import Context, pass_ctx
from doorstep.models import utcnow


#: Validators of the doorstep.toml sections the outer packages own ("module:function" taking a
#: Config and raising ConfigError). Every command runs them once at start, so a bad key is the
#: same one-line error from ``run``, ``outbox send`` and ``report weekly`` alike.
CONFIG_CHECKS = [
    "listeners.config:known_channel_sections",
    "listeners.config:configured_channels",
    "responders.config:responders_settings",
    "responders.config:alert_settings",
    "doorstep.report_settings:report_settings",
    "classifiers:check_configured",
]

#: Commands that only read or change what is already stored: without a database they say so
#: instead of creating an empty ./doorstep.db (matched on the words after ``doorstep``).
NEEDS_DATABASE = ("user list", "user remove", "user set-role", "user set-email", "user set-password",
                  "user unlock", "case", "outbox", "reply", "escalate", "export", "report", "proactive", "customer")


def _load_classifier(spec: str) -> Any:
    from classifiers import load_classifier

    return load_classifier(spec)


def validate_config(config: Config) -> Config:
    """Run every package's section checks on ``config`` (ConfigError names file and key)."""
    from doorstep.jobs import optional_attribute

    for spec in CONFIG_CHECKS:
        check = optional_attribute(spec)
        if check is not None:
            check(config)
    return config


#: Options of the ``doorstep`` group that the README lets you write after the subcommand too.
GLOBAL_OPTIONS = ("--db", "--config")
GLOBAL_FLAGS = ("--debug",)


def hoist_global_options(args: list[str]) -> list[str]:
    """Move ``--db X`` / ``--config X`` (or ``--db=X``) and ``--debug`` written after the subcommand to the front."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in GLOBAL_FLAGS:
            front.append(arg)
            i += 1
            continue
        if arg in GLOBAL_OPTIONS and i + 1 < len(args):
            front += [arg, args[i + 1]]
            i += 2
            continue
        if arg.split("=", 1)[0] in GLOBAL_OPTIONS and "=" in arg:
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


class _OptionsAnywhereGroup(click.Group):
    """Global options anywhere on the line; notes a --help so the config check leaves help alone."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = hoist_global_options(list(args))
        ctx.meta["doorstep.help"] = any(a in ("--help", "-h") for a in args)
        return super().parse_args(ctx, args)


def one_line_error(exc: BaseException, db_path: str | None = None) -> str:
    """What a user sees instead of a traceback: what failed, where, and what to do.

    Why here: every command shares it, so no command can leak a traceback for a mistake
    a user can make (a read-only or full database, a missing file, bad data).
    """
    from doorstep.dialect import DATABASE_ERRORS
    from doorstep.store import StoreError

    from doorstep.permissions import NotAllowed

    if isinstance(exc, (StoreError, NotAllowed)):  # a refusal is a PermissionError, not a file problem
        return str(exc)
    if isinstance(exc, DATABASE_ERRORS):
        return str(StoreError.from_sqlite(db_path or "(unknown)", exc))
    if isinstance(exc, OSError):
        # Only the file the error names: an output file's write error is not the database's.
        where = exc.filename or "a file this command reads or writes"
        cause = exc.strerror or str(exc)
        remedy = {28: "free some space and run the command again", 30: "run it where the file is writable",
                  13: "check the file's permissions", 2: "check the path"}.get(exc.errno or 0, "")
        return f"{where}: {cause}" + (f"; {remedy}" if remedy else "")
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"


class DoorstepGroup(_OptionsAnywhereGroup):
    """The top-level group: turns any unexpected exception into one line (unless --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit,
                KeyboardInterrupt):
            raise
        except BrokenPipeError:
            # The reader went away (`doorstep user list | head -1`): stop quietly, as Unix tools do.
            import os

            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):  # no real file descriptor (tests): nothing left to flush
                pass
            raise SystemExit(141) from None
        except Exception as exc:  # noqa: BLE001 - the one place that turns errors into messages
            obj = ctx.obj if isinstance(ctx.obj, Context) else None
            if (obj is not None and obj.debug) or ctx.params.get("debug"):
                raise
            raise click.ClickException(one_line_error(exc, obj.db_path if obj else None)) from None


def check_db_option(db: str, from_env: bool) -> None:
    """Refuse a ``--db`` that names no file before any command runs.

    SQLite opens a throwaway in-memory database for "", ``sqlite:///`` and ``:memory:``: an
    import would say "1 new" and keep nothing, and the worker would run against a database that
    is gone when it exits. An unset shell variable (``--db "$DB"``) or a ``DOORSTEP_DB=`` line is
    enough to get there, so the message says where the value came from.
    """
    try:
        problem = "':memory:' keeps nothing once the command ends" if database_location(db) == ":memory:" else None
    except ValueError as exc:
        problem = str(exc)
    if problem:
        where = " (from $DOORSTEP_DB)" if from_env else ""
        raise click.ClickException(f"--db: {problem}{where}; give a file path (e.g. ./doorstep.db) or a "
                                   "postgresql:// URL")


@click.group(cls=DoorstepGroup)
@click.option("--db", default=default_db_path, show_default="$DOORSTEP_DB or ./doorstep.db",
              help="SQLite database file (or sqlite:///PATH), or a postgresql://user@host/db URL (also accepted "
                   "after the command).")
@click.option("--config", "config_path", default=None,  # $DOORSTEP_CONFIG is read by load_config, which names it
              help="doorstep.toml (default $DOORSTEP_CONFIG, else ./doorstep.toml, else built-in defaults; "
                   "also accepted after the command). A file named here must exist.")
@click.option("--debug", is_flag=True, envvar="DOORSTEP_DEBUG",
              help="Show the full traceback of an error instead of the one-line message.")
@click.version_option(package_name="doorstep")
@click.pass_context
def cli(ctx: click.Context, db: str, config_path: str | None, debug: bool = False) -> None:
    """Doorstep: every complaint seen, answered fast, never posted twice."""
    ctx.obj = Context(db, config_path, checks=[validate_config], needs_database=NEEDS_DATABASE,
                      load_classifier=_load_classifier)
    ctx.obj.debug = debug
    if not ctx.meta.get("doorstep.help"):
        check_db_option(db, from_env=ctx.get_parameter_source("db") is click.core.ParameterSource.DEFAULT)
        ctx.obj.config  # validate the whole file once, before any command does work  # noqa: B018


# ------------------------------------------------------------------ import
@cli.group(name="import")
def import_() -> None:
    """Import mentions, orders or tracking events from a file."""


#: Rejected rows listed by default; more would bury the summary (--all-errors lists every one).
SHOWN_ERRORS = 100


def _report_import(report: Any, strict: bool = False, all_errors: bool = False) -> None:
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    shown = report.errors if all_errors else report.errors[:SHOWN_ERRORS]
    for error in shown:
        click.echo(f"error: {error}", err=True)
    if len(shown) < len(report.errors):
        click.echo(f"error: ... and {len(report.errors) - len(shown)} more rejected rows (--all-errors lists them all)",
                   err=True)
    click.echo(report.summary(), err=True)
    if report.stopped:
        raise click.ClickException(f"{report.file}: {report.stopped}")
    if report.errors or not report.committed:
        sys.exit(1)
    if report.valid == 0:  # an empty or header-only file: nothing written, which a cron wrapper must see
        click.echo(f"error: {report.file}: the file has no rows (empty, or a header line only): check the export "
                   "that wrote it", err=True)
        sys.exit(1)


def _record_import(ctx: Context, kind: str, file: Path, started: datetime, **outcome: Any) -> None:
    """Record the run for the team (``listeners.files.record_import``); a store that cannot take the
    record (busy, read-only) is said in one line and does not change the import's own outcome."""
    from listeners.files import record_import

    try:
        record_import(ctx.store, kind, file, started, **outcome)
    except Exception as exc:  # noqa: BLE001 - the import is done; only its record in the console is missing
        click.echo(f"warning: {file}: this import is not recorded for the console ({exc.__class__.__name__}: "
                   f"{str(exc).splitlines()[0] if str(exc) else ''}); the rows it wrote are kept", err=True)


def _not_a_file(file: Path) -> str | None:
    """Why FILE cannot be imported at all (it does not exist, or is a folder), in one line naming it;
    None when it is a file. Checked by the command, not by click, so the refusal is recorded as a run
    ("file refused") and alerts the lead like any refused file: a cron job's missing nightly orders
    file left no trace in the console."""
    if not file.exists():
        return f"{file}: the file does not exist; check the path (a scheduled job runs in its own folder)"
    if file.is_dir():
        return f"{file}: is a folder, not a file; name the file to import"
    return None


def _import_options(fn: Any) -> Any:
    """Options every import command shares."""
    fn = click.option("--max-rejected", "max_rejected", type=click.FloatRange(0.0, 1.0), default=None,
                      help="Share of rejected rows (0-1) above which nothing is written "
                           "(default: [imports] max_rejected_share, 0.5).")(fn)
    fn = click.option("--strict", is_flag=True, help="Write nothing if any row is rejected (--max-rejected 0).")(fn)
    fn = click.option("--all-errors", is_flag=True, help=f"List every rejected row (default: the first {SHOWN_ERRORS}).")(fn)
    fn = click.option("--encoding", default=None,
                      help="Text encoding of FILE when it is not UTF-8 (e.g. cp1252, latin-1).")(fn)
    fn = click.option("--map", "column_map", multiple=True, metavar="FIELD=COLUMN",
                      help="Read the file's COLUMN as FIELD, e.g. --map number=Name --map placed_at=\"Created at\" "
                           "(repeatable, for another tool's export). With --map, the file's columns that are not "
                           "the import's are skipped, and the run names them.")(fn)
    fn = click.option("--timezone", "zone_name", default=None, metavar="ZONE",
                      help="Time zone of the file's times that give no offset, e.g. Europe/Berlin (an IANA name; "
                           "default: UTC). Times that give their offset keep it.")(fn)
    return fn


class _ImportCommand(click.Command):
    """An import whose --help ends with the columns its files may have.

    Why lazily: the columns come from listeners.files, which ``doorstep --help`` should not load."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from listeners.files import columns_help

        formatter.write_paragraph()
        formatter.write_text(columns_help(self.name or ""))
        super().format_epilog(ctx, formatter)


#: An import, given the share of rejected rows allowed and the rows per batch, returns its report.
ImportRun = Callable[[float, int], Any]


def import_command(name: str, formats: list[str], format_help: str, *options: Any) -> Callable[..., Any]:
    """``doorstep import NAME FILE``: FILE, ``--format``, then ``options``, then the options every import
    shares. The decorated function gets (ctx, file, fmt, encoding, columns: the ``--map`` options, zone: the
    ``--timezone``, and ``options``' values) and returns the import to run; it runs with the configured limits,
    its errors and summary reported alike. A ``--map`` or ``--timezone`` that cannot be read is refused as a
    file is (one line, recorded: a scheduled job's typo is seen in the console)."""
    def register(make_run: Callable[..., ImportRun]) -> click.Command:
        @functools.wraps(make_run)
        def command(ctx: Context, file: Path, fmt: str | None, strict: bool, encoding: str | None,
                    max_rejected: float | None, all_errors: bool, column_map: tuple[str, ...], zone_name: str | None,
                    **extra: Any) -> None:
            from listeners.files import ImportFileError, ImportStopped, column_map as read_column_map, time_zone

            limits = ctx.config.imports
            share = 0.0 if strict else (limits.max_rejected_share if max_rejected is None else max_rejected)
            started = utcnow()
            missing = _not_a_file(file)
            if missing is not None:
                _record_import(ctx, name, file, started, refused=missing)
                raise click.ClickException(missing)
            try:
                columns, zone = read_column_map(column_map), time_zone(zone_name)
                report = make_run(ctx, file, fmt, encoding, columns, zone, **extra)(share, limits.batch_rows)
            except ImportFileError as exc:
                _record_import(ctx, name, file, started, refused=str(exc))
                raise click.ClickException(str(exc)) from None
            except ImportStopped as stop:
                if ctx.debug:
                    raise stop.cause from stop
                report = stop.report
            except KeyboardInterrupt:
                # Ctrl-C outside a batch's write (reading the file, starting the classifiers): the
                # import's own count is not at hand, but what is written stays and a re-run skips it.
                if ctx.debug:
                    raise
                _record_import(ctx, name, file, started, interrupted=True)
                raise click.ClickException(f"{file}: interrupted (Ctrl-C); rows already written are kept, and "
                                           "running the same import again finishes it") from None
            _record_import(ctx, name, file, started, report=report)
            _report_import(report, strict, all_errors)

        decorated: Any = command
        for option in reversed([
                # Not click's exists=True: its usage error came before any run was recorded (see _not_a_file).
                click.argument("file", type=click.Path(readable=False, path_type=Path)),
                click.option("--format", "fmt", type=click.Choice(formats), default=None, help=format_help),
                *options, _import_options, pass_ctx]):
            decorated = option(decorated)
        return import_.command(name, cls=_ImportCommand)(decorated)
    return register


_BY_NAME = "Default: from the file name (.jsonl/.ndjson/.json or .csv"


@import_command(
    "mentions", ["jsonl", "csv", "twcs"], f"{_BY_NAME}; twcs is recognised by its header).",
    click.option("--channel", default=None, help="Channel for rows that do not name one."),
    click.option("--classifier", default=None, help="Classifier to label the mentions with (default: configured)."),
    click.option("--classify-processes", "classify_processes", type=click.IntRange(0, 64), default=None,
                 help="Classifier processes that label the next batches while one is written (0: classify in "
                      "this process). Default: 1 on a machine with two or more cores, else 0."),
    click.option("--history", is_flag=True,
                 help="FILE is the shop's past posts: stored, classified, linked and grouped as usual, then each case "
                      "this import opened is resolved (by \"import\", audited), so the history is context, not "
                      "overdue answers. Cases that existed before, or got a post from elsewhere meanwhile, stay as "
                      "they are."))
def import_mentions_cmd(ctx: Context, file: Path, fmt: str | None, encoding: str | None, columns: dict[str, str],
                        zone: tzinfo | None, channel: str | None, classifier: str | None,
                        classify_processes: int | None, history: bool) -> ImportRun:
    """Import mentions from FILE and run them through the pipeline (classify, link, case).

    Rows that carry labels (as `doorstep export mentions` writes them) keep them. With --history, the cases
    the import opens are resolved once it is written (past posts owe no answer).
    """
    from classifiers import load_classifier
    from classifiers.process import ClassifierProcesses, default_processes
    from doorstep.linking import numbers_in
    from listeners.files import import_mentions

    def run(share: float, batch: int) -> Any:
        pipeline = ctx.pipeline(classifier)
        processes = default_processes() if classify_processes is None else classify_processes
        if processes == 0:
            return import_mentions(file, pipeline, fmt, channel, encoding=encoding, max_rejected_share=share,
                                   batch_rows=batch, columns=columns, timezone=zone, history=history)
        # Each process builds the same classifier from the same spec (started only for an import
        # of more than one batch; see classifiers/process.py), and finds the numbers in the texts.
        spec = classifier or ctx.config.classifier
        remedy = "--classify-processes 0 classifies in the import's own process"
        also = functools.partial(numbers_in, config=ctx.config)
        with ClassifierProcesses(functools.partial(load_classifier, spec), processes, remedy, also=also) as ahead:
            return import_mentions(file, pipeline, fmt, channel, encoding=encoding, max_rejected_share=share,
                                   batch_rows=batch, classify_ahead=ahead, columns=columns, timezone=zone,
                                   history=history)

    return run


@import_command("orders", ["jsonl", "csv"], f"{_BY_NAME}).")
def import_orders_cmd(ctx: Context, file: Path, fmt: str | None, encoding: str | None,
                      columns: dict[str, str], zone: tzinfo | None) -> ImportRun:
    """Import orders (with embedded customers and shipments) from FILE.

    Only the columns a row gives a value for are written: nothing stored is erased.
    """
    from listeners.files import import_orders

    return lambda share, batch: import_orders(file, ctx.store, fmt, encoding=encoding, max_rejected_share=share,
                                              batch_rows=batch, couriers=ctx.config.couriers, columns=columns,
                                              timezone=zone, status_words=ctx.config.imports.tracking_statuses)


@import_command("tracking", ["jsonl", "csv"], f"{_BY_NAME}).")
def import_tracking_cmd(ctx: Context, file: Path, fmt: str | None, encoding: str | None,
                        columns: dict[str, str], zone: tzinfo | None) -> ImportRun:
    """Import courier tracking events from FILE."""
    from listeners.files import import_tracking

    return lambda share, batch: import_tracking(file, ctx.store, fmt, encoding=encoding, max_rejected_share=share,
                                                batch_rows=batch, columns=columns, timezone=zone,
                                                status_words=ctx.config.imports.tracking_statuses)


@cli.group()
def export() -> None:
    """Export stored data."""


@export.command("mentions")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl")
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-",
              help="File to write (default: standard output).")
@pass_ctx
def export_mentions_cmd(ctx: Context, fmt: str, output: Any) -> None:
    """Write one JSON object per stored mention (with labels when present)."""
    from doorstep.store import mention_export_row

    for mention in ctx.store.iter_mentions():
        output.write(json.dumps(mention_export_row(mention), ensure_ascii=False) + "\n")


# ----------------------------------------------------------------- customer
@cli.group()
def customer() -> None:
    """A customer's personal data: erase it at their request (right to erasure)."""


@customer.command("erase")
@click.option("--customer-id", default=None, help="The customer's id in the shop's records.")
@click.option("--handle", default=None, help='One of their handles: "@janedoe", or "x:@janedoe" for one network '
                                             '(a person who only posted, with no customer record, too).')
@click.option("--email", default=None, help="Their e-mail address.")
@click.option("--phone", default=None, help="Their phone number, in any spelling (+44 7700 900123, 07700900123).")
@click.option("--yes", is_flag=True, help="Erase without showing the counts and asking first (for scripts).")
@click.option("--as", "actor", default="cli", show_default=True, help="Who erases (audit log).")
@pass_ctx
def customer_erase(ctx: Context, customer_id: str | None, handle: str | None, email: str | None, phone: str | None,
                   yes: bool, actor: str) -> None:
    """Erase one customer's personal data, named by exactly one of --customer-id, --handle, --email, --phone.

    A handle, e-mail or phone no customer has names the person who wrote from it: their posts and
    everything about them are erased the same way (a handle on several networks needs "x:@janedoe").

    Their name, e-mail, phone and handles go; their posts, our messages to them and their answers keep
    their rows (counts, SLA figures and reports stay true) with the text replaced by "[erased at the
    customer's request]"; notes on their cases are erased and their details masked elsewhere; messages
    not sent yet are cancelled. Orders stay (the shop's own records) without any link to contact details.
    All in one transaction, audited without personal data under --as. It cannot be undone. (The console
    lets only an admin erase; the command line may, as whoever runs it holds the database.)

    A later order import that names the same person creates a customer again: that is the shop's
    data. Take them out of the shop's export first if they must not come back.
    """
    from doorstep.erasure import ErasureError, erase_customer, find_person, preview_erasure

    try:
        found = find_person(ctx.store, customer_id=customer_id, handle=handle, email=email, phone=phone,
                            config=ctx.config)
        if not yes:
            click.echo(f"{found}: would erase {preview_erasure(ctx.store, found).counts()}")
            try:
                confirmed = click.confirm("Erase this person's personal data? This cannot be undone", default=False)
            except click.Abort:
                confirmed = False
            if not confirmed:
                raise click.ClickException("nothing erased (not confirmed; pass --yes to erase without asking)")
        erasure = erase_customer(ctx.store, found, actor, permission_of="cli")
    except ErasureError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{found} erased by {actor}; {erasure.counts()}")


# ---------------------------------------------------------------- classify
@cli.command()
@click.option("--input", "-i", "infile", type=click.File("r", encoding="utf-8"), default="-",
              help='JSONL file of {"id", "text"} lines (default: standard input). An optional "addressed": true '
                   'marks a reply or a private message whose text has no @mention; false, a post not written to '
                   'you whatever it @mentions.')
@click.option("--output", "-o", "outfile", type=click.File("w", encoding="utf-8"), default="-",
              help="Where the labelled JSONL goes (default: standard output).")
@click.option("--model", default=None,
              help="baseline, onnx, a model directory (one `doorstep train` wrote, or a Hugging Face one) "
                   "or a Hugging Face model id.")
@click.option("--batch-size", default=2048, show_default=True,
              help="Posts read and classified together; the model sorts them by length, so larger batches pad less.")
@pass_ctx
def classify(ctx: Context, infile: Any, outfile: Any, model: str | None, batch_size: int) -> None:
    """Label JSONL {"id", "text"} lines with sentiment, complaint, intent and urgency."""
    from classifiers.cli import classifier_for_cli
    from classifiers.jsonl import classify_jsonl

    classifier = classifier_for_cli(ctx, model)  # a bad --model is one line naming it, never a traceback
    try:
        classify_jsonl(infile, outfile, classifier, batch_size=batch_size, progress=sys.stderr.isatty())
    except ValueError as exc:  # "line 3: ...": say which file
        source = "standard input" if getattr(infile, "name", "-") in ("-", "<stdin>") else infile.name
        raise click.ClickException(f"{source}: {exc}") from None


# --------------------------------------------------------------------- demo
@cli.command()
@click.option("--seed", default=7, show_default=True, help="Same seed, same demo shop.")
@click.option("--customers", default=500, show_default=True)
@click.option("--orders", default=2000, show_default=True)
@click.option("--mentions", default=1000, show_default=True)
@click.option("--build-only", is_flag=True, help="Build the database and exit (no worker, no console).")
@click.option("--reference-dates", is_flag=True,
              help="Keep the reference dates (2026-11-25 14:00 UTC) instead of moving the shop to now.")
@click.option("--port", default=8501, show_default=True, help="The console's port.")
@click.option("--x-port", default=8765, show_default=True, help="The X API emulator's port.")
@click.option("--smtp-port", default=8025, show_default=True, help="The local SMTP sink's port (sent e-mail).")
@click.option("--sink-port", default=8767, show_default=True, help="The local Slack/webhook sink's port.")
@click.option("--mastodon-port", default=8768, show_default=True, help="The local Mastodon stand-in's port.")
@click.option("--bluesky-port", default=8769, show_default=True, help="The local Bluesky stand-in's port.")
@pass_ctx
def demo(ctx: Context, seed: int, customers: int, orders: int, mentions: int, build_only: bool,
         reference_dates: bool, port: int, x_port: int, smtp_port: int, sink_port: int, mastodon_port: int,
         bluesky_port: int) -> None:
    """Build a fresh demo shop database, then start the worker and the console."""
    from datetime import datetime, timezone

    from commands.demo import DemoError, DemoPorts, build_demo, check_ports, run_demo, standin_feed_path
    from doorstep.store import files_beside

    ports = DemoPorts(console=port, x=x_port, smtp=smtp_port, sinks=sink_port, mastodon=mastodon_port,
                      bluesky=bluesky_port)
    try:
        if not build_only:
            check_ports(ports)  # before minutes of building, not after
        feed = files_beside(ctx.db_path, ".x-feed.jsonl")
        now = None if reference_dates else datetime.now(timezone.utc)
        summary = build_demo(ctx.db_path, seed=seed, customers=customers, orders=orders, mentions=mentions,
                             config_path=ctx.config_path, x_feed_path=feed, shift_to=now, live=not reference_dates)
        click.echo(summary, err=True)
        click.echo(f"the X API emulator serves the demo's X posts ({feed}); the newest wait there for the "
                   "X listener; the local Mastodon and Bluesky stand-ins serve theirs "
                   f"({standin_feed_path(feed, 'mastodon').name}, {standin_feed_path(feed, 'bluesky').name})", err=True)
        _add_demo_users(ctx.db_path)
        if not build_only:
            sys.exit(run_demo(ctx.db_path, config_path=ctx.config_path, x_feed_path=feed, ports=ports))
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None


def _add_demo_users(db_path: str) -> None:
    """One user per role, and one agent login per care-team member the demo assigns cases to."""
    import os

    from console.auth import add_user
    from commands.demo import AGENTS
    from doorstep.store import Store

    password = os.environ.get("DOORSTEP_DEMO_PASSWORD", "doorstep-demo")
    store = Store(db_path)
    try:
        people = [("agent", "agent", "Ann Agent"), ("lead", "lead", "Lee Lead"), ("admin", "admin", "Ada Admin")]
        people += [(name.lower(), "agent", name) for name in AGENTS]
        for username, role, name in people:
            add_user(store, username, password, role=role, name=name, actor="demo", rounds=10)
    finally:
        store.close()
    click.echo(f"demo logins: agent / lead / admin (and the care team: {', '.join(a.lower() for a in AGENTS)}), "
               f"password {password!r} (set DOORSTEP_DEMO_PASSWORD to change)", err=True)


# ---------------------------------------------------------------------- run
def config_reloader(config_path: str | None, store: Any) -> tuple[Callable[[], Config], Callable[[], Any]]:
    """The worker's ``reload_config`` and ``settings_stamp``: doorstep.toml as it is now, with the
    console's saved settings on top, and a stamp that moves when either changes.

    Why the file too: the worker kept the doorstep.toml it started with until someone restarted it,
    and nothing said so. A file that no longer loads or validates is logged in one line and the
    config in force is kept, so a half-saved edit never stops the worker.
    """
    import logging
    import os

    from doorstep.config import ConfigError, config_source, load_config
    from doorstep.team_settings import apply_settings, settings_stamp

    log = logging.getLogger("doorstep.worker")
    in_force: list[Config] = [validate_config(load_config(config_path))]

    def file_stamp() -> tuple[int, int] | None:
        try:
            found = os.stat(config_source(in_force[0]))
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size

    def reload_config() -> Config:
        from responders.config import check_template_names

        try:
            in_force[0] = check_template_names(validate_config(load_config(config_path)), store)
        except ConfigError as exc:
            log.error("doorstep.toml changed but cannot be used, so the worker keeps the config in force: %s", exc)
        return apply_settings(in_force[0], store)

    return reload_config, lambda: (settings_stamp(store), file_stamp())


@cli.command()
@click.option("--once", is_flag=True, help="One round of every job, then exit.")
@click.option("--job", "only", multiple=True, metavar="NAME",
              help="Run only this job (repeatable), e.g. --job outbox to run the sender on its own.")
@click.option("--skip", multiple=True, metavar="NAME", help="Run every job but this one (repeatable).")
@pass_ctx
def run(ctx: Context, once: bool, only: tuple[str, ...], skip: tuple[str, ...]) -> None:
    """Start the long-running worker (listeners, outbox, alerts, scheduled reports), each job on its own thread."""
    from commands.worker import Worker

    from doorstep.team_settings import apply_settings

    from doorstep.config import ConfigError
    from responders.config import check_template_names

    store = ctx.store
    try:  # a rule naming no template stops the worker now, not when its first message is due days later
        check_template_names(ctx.config, store)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    reload_config, stamp = config_reloader(ctx.config_path, store)
    worker = Worker(store, apply_settings(ctx.config, store), ctx.pipeline(), only=set(only) or None, skip=set(skip),
                    reload_config=reload_config, settings_stamp=stamp)
    unknown = (set(only) | set(skip)) - {job.name for job in worker.collect_jobs(filtered=False)}
    if unknown:
        names = ", ".join(job.name for job in worker.collect_jobs(filtered=False)) or "(none configured)"
        raise click.UsageError(f"no job named {', '.join(sorted(unknown))}; the jobs are: {names}")
    failures = worker.run(once=once)
    failed = [name for name, count in (failures or {}).items() if count]
    if once and failed:
        # A cron line or a deploy check runs ``run --once``: a failed job must not read as success.
        raise click.ClickException(f"{len(failed)} job{'s' if len(failed) != 1 else ''} failed in this round: "
                                   f"{', '.join(failed)} (see the log above); the other jobs ran")


#: Packages that add commands ("module:attribute" naming a list of click commands). Their
#: modules keep heavy imports inside the command functions so ``doorstep --help`` stays fast.
COMMAND_PROVIDERS = [
    "listeners.cli:commands",
    "responders.cli:commands",
    "classifiers.cli:commands",
    "console.cli:commands",
    "commands.reports_cli:commands",
    "commands.case_cli:commands",
    "commands.queue_cli:commands",
]


def _add_provided_commands() -> None:
    from doorstep.jobs import optional_attribute

    for spec in COMMAND_PROVIDERS:
        for command in optional_attribute(spec) or []:
            cli.add_command(command)


_add_provided_commands()


def main() -> None:  # pragma: no cover - console script entry point
    cli(prog_name="doorstep")


if __name__ == "__main__":  # pragma: no cover
    main()
