"""``doorstep case split|merge|close``: regroup posts, and close cases, from the command line, as the console does.

Like the console, a change names the version of the case it was decided on (``--version``, shown
by ``doorstep case show``) and is refused if someone changed the case since; without
``--version`` the current version is used.
"""

from __future__ import annotations

import click

from doorstep.context import Context, pass_ctx


@click.group()
def case() -> None:
    """Look at a case's posts, split a post out of a case, merge two cases of one customer, close cases."""


def _version(ctx: Context, case_id: int, given: int | None) -> int:
    found = ctx.store.get_case(case_id)
    if found is None:
        raise click.BadParameter(f"no case {case_id}", param_hint="case")
    return found.version if given is None else given


@case.command("show")
@click.argument("case_id", type=int)
@pass_ctx
def show(ctx: Context, case_id: int) -> None:
    """Print the case's version, link and posts (id, time, channel, author, first words)."""
    from doorstep.linking import describe_link

    found = ctx.store.get_case(case_id)
    if found is None:
        raise click.BadParameter(f"no case {case_id}", param_hint="CASE_ID")
    merged = f" · merged into case {found.merged_into}" if found.merged_into else ""
    click.echo(f"case {found.id} · version {found.version} · {found.status} · {found.brand or '-'} · "
               f"{describe_link(found)}{merged}")
    for m in ctx.store.mentions_for_case(case_id):
        words = " ".join(m.text.split())[:80]
        who = "our reply" if m.outbound else f"@{m.author_handle or '?'}"
        click.echo(f"  post {m.id} · {m.created_at:%Y-%m-%d %H:%M} · {m.channel} · {who} · {words}")


@case.command("split")
@click.argument("case_id", type=int)
@click.option("--post", "mention_id", type=int, required=True, help="The post to move into a new case (see `case show`).")
@click.option("--version", "version", type=int, default=None, help="The case version you looked at (default: current).")
@click.option("--as", "actor", default="cli", show_default=True, help="Who splits (audit log).")
@pass_ctx
def split(ctx: Context, case_id: int, mention_id: int, version: int | None, actor: str) -> None:
    """Move one customer post (and our replies to it) out of CASE_ID into a new case."""
    from doorstep.regroup import RegroupError, split_post
    from doorstep.store import StaleCaseError

    try:
        new = split_post(ctx.store, ctx.config, case_id, mention_id, _version(ctx, case_id, version), actor)
    except (RegroupError, StaleCaseError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"post {mention_id} moved from case {case_id} into new case {new.id}")


@case.command("merge")
@click.argument("keep_id", type=int)
@click.argument("other_id", type=int)
@click.option("--version", "keep_version", type=int, default=None, help="KEEP_ID's version you looked at.")
@click.option("--other-version", type=int, default=None, help="OTHER_ID's version you looked at.")
@click.option("--as", "actor", default="cli", show_default=True, help="Who merges (audit log).")
@pass_ctx
def merge(ctx: Context, keep_id: int, other_id: int, keep_version: int | None, other_version: int | None,
          actor: str) -> None:
    """Move every post, note and message of OTHER_ID into KEEP_ID (same customer only); OTHER_ID is closed."""
    from doorstep.regroup import RegroupError, merge_cases
    from doorstep.store import StaleCaseError

    try:
        kept = merge_cases(ctx.store, ctx.config, keep_id, _version(ctx, keep_id, keep_version), other_id,
                           _version(ctx, other_id, other_version), actor)
    except (RegroupError, StaleCaseError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"case {other_id} merged into case {keep_id} ({kept.mention_count} customer posts)")


@case.command("close")
@click.argument("case_ids", type=int, nargs=-1, required=True)
@click.option("--spam", is_flag=True, help="Close them as spam: their posts leave the mood and complaint figures.")
@click.option("--force", is_flag=True,
              help="Resolve even a case whose reply or escalation has failed or is still queued.")
@click.option("--as", "actor", default="cli", show_default=True, help="Who closes them (audit log; a user's role counts).")
@pass_ctx
def close(ctx: Context, case_ids: tuple[int, ...], spam: bool, force: bool, actor: str) -> None:
    """Resolve CASE_IDS in one go (--spam: as spam), as the inbox's "Select several" does.

    One line per case: closed, or refused and why (a reply not delivered, changed since, a role that may not);
    exit status 1 when any was refused. Each case is checked and written on its own.
    """
    from doorstep.closing import close_cases, summary_words
    from doorstep.models import utcnow

    outcomes = close_cases(ctx.store, case_ids, actor, as_spam=spam, now=utcnow(), force=force)
    for outcome in outcomes:
        click.echo(outcome.words(spam))
    click.echo(summary_words(outcomes, spam))
    if not all(o.closed for o in outcomes):
        click.get_current_context().exit(1)


commands: list[click.Command] = [case]
