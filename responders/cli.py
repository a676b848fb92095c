"""``doorstep reply``, ``doorstep escalate`` and ``doorstep outbox``: automation through the outbox.

Nothing here posts directly: each command queues a message (the worker's outbox job sends it)
or changes a queued one, so CLI actions show up on the case and are exactly-once like the console's.
"""

from __future__ import annotations

import click

from doorstep.context import Context, pass_ctx


#: How a channel is named in a sentence.
_CHANNEL_NAMES = {"email": "e-mail", "sms": "SMS"}


def _channel_key(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--channel`` as imports and the webhook read a channel: "Email" is "email", "Twitter" is "x" (review of
    516969e: imports took these spellings and the reply said "cannot reply on channel 'Email'")."""
    from doorstep.models import channel_key

    if value is None:
        return None
    try:
        return channel_key(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option("--case", "case_id", type=int, required=True, help="Case id.")
@click.option("--text", default=None, help="Reply text.")
@click.option("--template", default=None, help="Template name (see the console) or template source.")
@click.option("--channel", default=None, callback=_channel_key,
              help="Reply on this channel instead of the case's (email, sms).")
@click.option("--in-reply-to", "parent_id", type=int, default=None, metavar="POST",
              help="The post to answer (an id from `doorstep case show`); default: the customer's newest unanswered post.")
@click.option("--as", "actor", default="cli", show_default=True, help="Who the reply is from (audit log).")
@click.option("--send-now", is_flag=True, help="Also run the outbox once instead of waiting for the worker.")
@click.option("--force", is_flag=True,
              help="Queue even if the customer's post already has a reply queued or sent (audited as send anyway).")
@click.option("--account", default=None,
              help="Our account to reply from, where the post reached several (e.g. @FettleCare).")
@click.option("--not-a-customer", "names_ok", multiple=True, metavar="NAME",
              help="A full name in a public reply that is not the shop's customer of that name (a brand, a product, "
                   "a colleague), as the refusal named it (repeatable; audited).")
@pass_ctx
def reply(ctx: Context, case_id: int, text: str | None, template: str | None, channel: str | None,
          parent_id: int | None, actor: str, send_now: bool, force: bool, account: str | None,
          names_ok: tuple[str, ...]) -> None:
    """Queue a reply to the case given by --case (exactly one of --text or --template).

    One answer per customer post: a second reply to a post that already has one queued or sent
    exits with status 1 and says who answered and what, unless --force. With --send-now, a reply
    that failed for good also exits with status 1, after its line.
    """
    from responders.outbox import (NamesACustomer, Outbox, ReplyRejected, get_message, queue_reply, reply_refusal,
                                   resolved_words)
    from responders.templates import TemplateError, render_template

    if (text is None) == (template is None):
        raise click.UsageError("give exactly one of --text or --template")
    case = ctx.store.get_case(case_id) if channel is None else None
    why = reply_refusal(ctx.store, case, case.channel) if case is not None and case.channel else None
    if why:  # the case's own channel takes no replies (a webhook post): say which one does, as the console does
        others = {c: reply_refusal(ctx.store, case, c) for c in ("email", "sms") if c != case.channel}  # type: ignore[union-attr]
        usable = [c for c, no in others.items() if no is None]
        raise click.ClickException(
            f"case {case_id}: {why}; " + (" or ".join(f"reply by {_CHANNEL_NAMES[c]} with --channel {c}" for c in usable)
                                          if usable else "no other channel takes a reply either ("
                                          + "; ".join(f"{c}: {no}" for c, no in others.items()) + ")"))
    try:
        from doorstep.team_settings import apply_settings

        config = apply_settings(ctx.config, ctx.store)  # templates leads saved in the console count too
        body = text if text is not None else render_template(ctx.store, config, case_id, template or "", agent=actor,
                                                             channel=channel, parent_id=parent_id)
        # As the console refuses a reply on a case resolved since the page showed it: the command's
        # "page" is the case as it is now. A reply reopens it, so that needs --force.
        current = ctx.store.get_case(case_id)
        if current is not None and current.merged_into:  # no "--force" helps: say where to answer
            raise ReplyRejected(f"case {case_id} was merged into case #{current.merged_into}: answer on case "
                                f"#{current.merged_into}")
        if current is not None and current.status == "resolved" and not force:
            raise click.ClickException(f"case {case_id}: {resolved_words(ctx.store, current, since_seen=False)}; "
                                       "a reply reopens it: add --force to send it anyway")
        message = queue_reply(ctx.store, ctx.config, case_id, body, actor, channel=channel, force=force,
                              account=account, parent_id=parent_id,
                              seen_status=None if force or current is None else current.status, names_ok=names_ok)
    except NamesACustomer as exc:
        raise click.ClickException(f"{exc}: --not-a-customer {' --not-a-customer '.join(map(repr, exc.names))}") \
            from None
    except (ReplyRejected, TemplateError) as exc:
        raise click.ClickException(str(exc)) from None
    sender = f", from {'@' if message.channel != 'email' else ''}{message.account}" if message.account else ""
    click.echo(f"queued message {message.id} ({message.channel}{sender}, {message.status})")
    if send_now:
        Outbox(ctx.store, ctx.config).send_due()
        click.echo(_describe(ctx, message.id))
        if get_message(ctx.store, message.id).status == "failed":  # type: ignore[arg-type]
            # Failed for good (a refusal no retry mends; the line above says why): a script must not take
            # it for sent (reply-counting audit, finding 8: it exited 0).
            raise click.exceptions.Exit(1)


@click.command()
@click.option("--case", "case_id", type=int, required=True)
@click.option("--to", "target", required=True,
              help="team, lead, courier (or another configured target), email:ADDR, slack:URL, webhook:URL, apprise:URL.")
@click.option("--note", default=None, help="Why; goes with the escalation and into the audit log.")
@click.option("--as", "actor", default="cli", show_default=True, help="Who escalates (audit log).")
@pass_ctx
def escalate(ctx: Context, case_id: int, target: str, note: str | None, actor: str) -> None:
    """Escalate the case given by --case to the audience given by --to; the case becomes "escalated"."""
    from responders.escalation import EscalationRejected, escalate as do_escalate

    try:
        messages = do_escalate(ctx.store, ctx.config, case_id, target, note, actor)
    except EscalationRejected as exc:
        raise click.ClickException(str(exc)) from None
    for message in messages:
        click.echo(f"queued message {message.id} ({message.channel})")


def _describe(ctx: Context, message_id: int | None) -> str:
    from responders.outbox import get_message

    m = get_message(ctx.store, message_id or 0)
    # One line per message (a list, a script's grep): X's 403 error text spans several lines.
    error = f"  last error: {' '.join(m.last_error.split())}" if m.last_error else ""
    channel = f"{m.channel} @{m.account}" if m.account and m.channel != "email" else \
        f"{m.channel} {m.account}" if m.account else m.channel
    return f"{m.id}\t{m.status}\t{m.kind}\t{channel}\tcase {m.case_id}\tattempts {m.attempts}\t{m.external_id or ''}{error}"


@click.group()
def outbox() -> None:
    """List, retry or cancel outbound messages."""


@outbox.command("list")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(["queued", "sending", "sent", "failed", "cancelled"]),
              help="Only messages in this state (repeatable).")
@click.option("--limit", default=50, show_default=True, help="Newest messages at most.")
@pass_ctx
def outbox_list(ctx: Context, statuses: tuple[str, ...], limit: int) -> None:
    """List outbound messages: id, status, kind, channel, case, attempts, channel id, last error."""
    from responders.outbox import list_messages

    for m in list_messages(ctx.store, statuses or None, limit):
        click.echo(_describe(ctx, m.id))


@outbox.command("retry")
@click.argument("message_id", type=int)
@click.option("--as", "actor", default="cli", show_default=True, help="Who retries (audit log).")
@pass_ctx
def outbox_retry(ctx: Context, message_id: int, actor: str) -> None:
    """Queue message MESSAGE_ID (failed, cancelled or waiting) to be sent now by the worker or `outbox send`."""
    from responders.outbox import retry

    try:
        retry(ctx.store, message_id, actor, config=ctx.config)
    except (KeyError, ValueError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    click.echo(_describe(ctx, message_id))


@outbox.command("cancel")
@click.argument("message_id", type=int)
@click.option("--as", "actor", default="cli", show_default=True, help="Who cancels (audit log).")
@pass_ctx
def outbox_cancel(ctx: Context, message_id: int, actor: str) -> None:
    """Cancel queued or failed message MESSAGE_ID so it is never sent."""
    from responders.outbox import cancel

    try:
        cancel(ctx.store, message_id, actor)
    except (KeyError, ValueError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    click.echo(_describe(ctx, message_id))


@outbox.command("send")
@pass_ctx
def outbox_send(ctx: Context) -> None:
    """Send what is due now (one round of the worker's outbox job)."""
    from responders.outbox import Outbox

    click.echo(f"sent {Outbox(ctx.store, ctx.config).send_due()}")


@click.command()
@click.option("--measure", is_flag=True,
              help="Only report how many complaints arrived on shipments that had a failed attempt, exception or "
                   "scan gap first (JSON).")
@click.option("--window-days", default=7.0, show_default=True, help="How long after the event a complaint counts.")
@pass_ctx
def proactive(ctx: Context, measure: bool, window_days: float) -> None:
    """Open proactive cases for troubled shipments now (or --measure the case for doing so)."""
    import json

    from responders.followup import complaints_after_events, run_proactive

    if measure:
        click.echo(json.dumps(complaints_after_events(ctx.store, ctx.config, window_days=window_days), indent=2))
        return
    opened = run_proactive(ctx.store, ctx.config)
    click.echo(f"opened {len(opened)} proactive case(s): {', '.join(map(str, opened)) or '-'}")


@click.command("courier-page")
@click.option("--host", default=None, help="Address to listen on (default: [responders.courier_link] host).")
@click.option("--port", type=int, default=None, help="Port (default: [responders.courier_link] port).")
@pass_ctx
def courier_page(ctx: Context, host: str | None, port: int | None) -> None:
    """Serve the couriers' pages: the signed links in courier escalations open them (Ctrl-C stops)."""
    import time

    from doorstep.config import ConfigError
    from responders.courier_link import LinkUnavailable, _key, settings_of
    from responders.courier_page import CourierPageServer

    try:
        _key(ctx.config)
    except (LinkUnavailable, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        server = CourierPageServer(ctx.store, ctx.config, host=host, port=port).start()
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"courier pages on {server.url}/courier/... (links point at base_url "
               f"{settings_of(ctx.config).base_url})", err=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


commands: list[click.Command] = [reply, escalate, outbox, proactive, courier_page]
