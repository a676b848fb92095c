"""Worker jobs of the listeners: one polling job per configured channel, plus the webhook server.

The worker (commands/worker.py) calls ``run_once`` every ``interval_s``. A round that failed
raises :class:`ListenerError` after its health record is written, so the worker logs it too;
the next tick tries again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from doorstep.config import Config
from doorstep.store import Store
from listeners.config import channel_settings, configured_channels
from listeners.health import ListenerError, RoundResult, record_error

log = logging.getLogger("doorstep.listeners")

POLLING_CHANNELS = ("x", "mastodon", "bluesky")


def make_listener(channel: str, store: Store, config: Config, pipeline: Any, **kwargs: Any) -> Any:
    """The listener object for ``channel`` (each has ``poll_once() -> RoundResult``)."""
    if channel == "x":
        from listeners.x import XListener

        return XListener(store, config, pipeline, **kwargs)
    if channel == "mastodon":
        from listeners.mastodon import MastodonListener

        return MastodonListener(store, config, pipeline, **kwargs)
    if channel == "bluesky":
        from listeners.bluesky import BlueskyListener

        return BlueskyListener(store, config, pipeline, **kwargs)
    raise ValueError(f"no polling listener for channel {channel!r}; expected one of {', '.join(POLLING_CHANNELS)}")


@dataclass
class ListenerJob:
    name: str
    interval_s: float
    channel: str
    store: Store
    config: Config
    pipeline: Any
    _listener: Any = field(default=None, repr=False)

    def run_once(self) -> RoundResult:
        # Built on first use, so a missing credential is a job failure on the first tick (and a
        # health error), not a crash of the worker at start-up.
        if self._listener is None:
            try:
                self._listener = make_listener(self.channel, self.store, self.config, self.pipeline)
            except Exception as exc:
                # Written to health, or the console says "no listener has run yet" and no alert fires
                # for a channel that stopped (a secrets file lost in a redeploy). Tried again next tick.
                message = str(exc) if str(exc).startswith(f"{self.channel}:") else (
                    f"{self.channel}: cannot start the listener: {type(exc).__name__}: {exc}")
                try:
                    record_error(self.store, self.channel, message)
                except Exception:  # noqa: BLE001 - the start-up error is the one to report
                    log.exception("%s: could not write listener health", self.channel)
                raise
        result = self._listener.poll_once()
        log.info("%s", result.summary())
        if not result.ok:
            raise ListenerError(result.summary())
        return result


@dataclass
class WebhookJob:
    """Keeps the webhook server running; the worker ticks it like any job."""

    name: str
    interval_s: float
    store: Store
    config: Config
    pipeline: Any = None
    _server: Any = field(default=None, repr=False)

    def run_once(self) -> None:
        if self._server is None:
            from listeners.webhook import WebhookServer

            # Its own store connection (it answers on other threads), the worker's classifier.
            self._server = WebhookServer(self.store.path, self.config,
                                         classifier=getattr(self.pipeline, "classifier", None)).start()
            log.info("webhook listening on %s", self._server.url)

    def close(self) -> None:
        """Stop the server: a replacement job (a lead saved a setting) starts its own on the same port,
        which failed on "address in use" every round while this one went on with the old config."""
        if self._server is not None:
            self._server.stop()
            self._server = None


@dataclass
class XStreamJob:
    """Starts the filtered stream once (it reconnects by itself); ``[channels.x] stream = true``."""

    name: str
    interval_s: float
    store: Store
    config: Config
    pipeline: Any
    _stream: Any = field(default=None, repr=False)

    def run_once(self) -> None:
        if self._stream is None:
            from listeners.x import XStream

            stream = XStream(self.store.path, self.config, classifier=getattr(self.pipeline, "classifier", None))
            stream.start()
            self._stream = stream

    def close(self) -> None:
        """Disconnect: X allows one filtered-stream connection per app, so a replacement job's stream
        must not meet this one still connected."""
        if self._stream is not None:
            self._stream.stop()
            self._stream = None


def jobs(store: Store, config: Config, pipeline: Any) -> list[Any]:
    out: list[Any] = []
    for channel in configured_channels(config):
        settings = channel_settings(config, channel)
        if channel in POLLING_CHANNELS:
            out.append(ListenerJob(f"listen:{channel}", settings.poll_seconds, channel, store, config, pipeline))
            if channel == "x" and settings.stream:
                out.append(XStreamJob("listen:x:stream", 60.0, store, config, pipeline))
        elif channel == "webhook":
            out.append(WebhookJob("listen:webhook", 60.0, store, config, pipeline))
    return out
