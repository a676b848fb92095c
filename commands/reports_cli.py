"""``doorstep report ...``: render the weekly report on demand (the worker mails it on schedule)."""

from __future__ import annotations

from pathlib import Path

import click

from doorstep.context import Context, pass_ctx


@click.group()
def report() -> None:
    """Weekly brand- and courier-sentiment reports."""


@report.command("weekly")
@click.option("--week", default=None, help="ISO week, e.g. 2026-W47 (default: the last complete week).")
@click.option("--brand", default=None, help="Only this brand's figures (default: all brands).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write weekly-WEEK[-BRAND].html/.pdf into.")
@click.option("--format", "fmt", type=click.Choice(["html", "pdf", "both"]), default="both", show_default=True)
@click.option("--no-redact", is_flag=True,
              help="Keep handles, names, contact details and order/tracking numbers (internal use; recorded in the audit log).")
@click.option("--as", "actor", default="cli", show_default=True, help="Who asks (audit log of --no-redact).")
# The name this option had before it was called --as like every other command's; kept for scripts.
@click.option("--actor", "old_actor", default=None, hidden=True)
@pass_ctx
def weekly(ctx: Context, week: str | None, brand: str | None, out_dir: Path, fmt: str, no_redact: bool,
           actor: str, old_actor: str | None) -> None:
    """Write the weekly report as self-contained HTML and/or PDF."""
    from doorstep.reports import build_weekly_report, write_report

    if old_actor is not None:
        if click.get_current_context().get_parameter_source("actor") is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("give --as only (--actor is its old name)")
        actor = old_actor
    config = ctx.config
    if brand and brand not in {b.name for b in config.brands}:
        known = ", ".join(b.name for b in config.brands) or "(none configured)"
        raise click.BadParameter(f"unknown brand {brand!r}; configured brands: {known}", param_hint="--brand")
    try:
        built = build_weekly_report(ctx.store, config, week, brand, redact=not no_redact,
                                    actor=actor)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--week") from None
    # What the PDF cannot draw is said here, on stderr, not logged: the CLI shows no log line, and a quote
    # printed as blank boxes is otherwise found only by reading the PDF (audit of stop 39).
    notes: list[str] = []
    for path in write_report(built, out_dir, fmt, notes=notes):
        click.echo(str(path))
    for note in notes:
        click.echo(f"warning: {note}", err=True)
    for warning in built.warnings:
        click.echo(f"warning: {warning}", err=True)
    if no_redact:
        click.echo("note: personal data NOT masked; this export was recorded in the audit log", err=True)


commands: list[click.Command] = [report]
