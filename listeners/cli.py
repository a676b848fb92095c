"""``doorstep listen`` and ``doorstep emulate``: run the listeners, or a local X API to point them at."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from doorstep.context import Context, pass_ctx

CHANNELS = ("x", "mastodon", "bluesky", "webhook")


def _pipeline(ctx: Context, classifier: str | None) -> Any:
    if classifier and classifier.lower() == "none":
        from doorstep.pipeline import Pipeline

        return Pipeline(ctx.store, ctx.config, classifier=None)
    try:
        return ctx.pipeline(classifier)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.argument("channel", required=False, type=click.Choice(CHANNELS))
@click.option("--once", is_flag=True, help="One polling round, then exit (status 0 only if every source succeeded).")
@click.option("--classifier", default=None,
              help="Classifier for new mentions (default: configured); 'none' stores them unlabelled.")
@click.option("--verbose", "-v", is_flag=True, help="Log every page and retry.")
@pass_ctx
def listen(ctx: Context, channel: str | None, once: bool, classifier: str | None, verbose: bool) -> None:
    """Listen for mentions on CHANNEL (default: every channel configured in doorstep.toml)."""
    from doorstep.config import ConfigError
    from listeners.config import channel_settings, configured_channels
    from listeners.jobs import POLLING_CHANNELS, make_listener

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        channels = [channel] if channel else configured_channels(ctx.config)
        for name in channels:
            channel_settings(ctx.config, name)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not channels:
        raise click.ClickException("no channel configured: add a [channels.x] (or mastodon, bluesky, webhook) "
                                   "section to doorstep.toml, or name the channel")
    pipeline = _pipeline(ctx, classifier)

    if "webhook" in channels:
        from listeners.webhook import WebhookServer

        if once:
            raise click.ClickException("the webhook listener is a server: run it without --once")
        server = WebhookServer(ctx.db_path, ctx.config, classifier=pipeline.classifier).start()
        click.echo(f"webhook listening on {server.url}", err=True)

    polling = [c for c in channels if c in POLLING_CHANNELS]
    # A one-off check answers within seconds: an unreachable host is retried twice, briefly,
    # then reported (the long-running listener keeps the patient policy).
    once_kwargs: dict[str, Any] = {}
    if once:
        from listeners.health import Backoff

        once_kwargs["backoff"] = Backoff(max_retries=2, base_s=1.0, cap_s=5.0, max_rate_limit_waits=1,
                                         max_rate_limit_wait_s=60.0)
    try:
        listeners = {name: make_listener(name, ctx.store, ctx.config, pipeline, **once_kwargs) for name in polling}
    except Exception as exc:  # noqa: BLE001 - missing library, credentials or bad base URL
        raise click.ClickException(f"cannot start listener: {exc}") from None

    stream = None
    if not once and "x" in listeners and channel_settings(ctx.config, "x").stream:
        from listeners.x import XStream

        try:
            stream = XStream(ctx.db_path, ctx.config, classifier=pipeline.classifier)
            stream.start()
        except Exception as exc:  # noqa: BLE001 - polling goes on; the health row says why
            from listeners.health import record_error

            record_error(ctx.store, "x:stream", f"x: stream not started: {type(exc).__name__}: {exc}")
            click.echo(f"x: filtered stream not started ({exc}); polling only", err=True)

    if once:
        failed = False
        for name, listener in listeners.items():
            result = listener.poll_once()
            click.echo(result.summary(), err=True)
            failed = failed or not result.ok
        sys.exit(1 if failed else 0)

    next_run = {name: 0.0 for name in listeners}
    intervals = {name: channel_settings(ctx.config, name).poll_seconds for name in listeners}
    try:
        while True:
            now = time.monotonic()
            for name, listener in listeners.items():
                if now >= next_run[name]:
                    try:
                        click.echo(listener.poll_once().summary(), err=True)
                    except Exception as exc:  # noqa: BLE001 - one channel must not stop the others
                        from listeners.health import record_error

                        record_error(ctx.store, name, f"{type(exc).__name__}: {exc}")
                        logging.getLogger("doorstep.listeners").exception("%s: round failed", name)
                    next_run[name] = time.monotonic() + intervals[name]
            time.sleep(max(0.05, min(next_run.values(), default=time.monotonic() + 1.0) - time.monotonic()))
    except KeyboardInterrupt:
        if stream is not None:
            stream.stop()


@click.command()
@click.argument("service", type=click.Choice(["x"]))
@click.option("--feed", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSONL posts to serve (X post fields or Mention fields).")
@click.option("--port", default=8765, show_default=True)
@click.option("--me", "me_handle", default=None, help="Handle of the authenticated account (our care handle).")
@click.option("--page-delay", default=0.0, show_default=True, help="Seconds added to every timeline page.")
@click.option("--account", "accounts", multiple=True, metavar="TOKEN=HANDLE",
              help="An access token and the account it acts as (repeat for each brand account).")
def emulate(service: str, feed: Path | None, port: int, me_handle: str | None, page_delay: float,
            accounts: tuple[str, ...]) -> None:
    """Serve a local X API v2 on 127.0.0.1 (point X_API_BASE_URL at it)."""
    from standins.x_emulator import XEmulator

    me = {"username": me_handle, "name": me_handle} if me_handle else None
    tokens = {}
    for item in accounts:
        token, sep, handle = item.partition("=")
        if not sep or not token or not handle:
            raise click.BadParameter(f"{item!r}: expected TOKEN=HANDLE", param_hint="--account")
        tokens[token] = {"username": handle.lstrip("@")}
    try:
        emulator = (XEmulator.from_jsonl(feed, port=port, me=me, page_delay_s=page_delay, accounts=tokens) if feed
                    else XEmulator(port=port, me=me, page_delay_s=page_delay, accounts=tokens))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    emulator.start()
    click.echo(f"X API emulator on {emulator.base_url} serving {len(emulator.posts)} posts as "
               f"@{emulator.me['username']}; use X_API_BASE_URL={emulator.base_url} X_BEARER_TOKEN=any", err=True)
    emulator.serve_forever()


commands: list[click.Command] = [listen, emulate]
