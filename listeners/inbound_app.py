"""The inbound HTTP application moved to the core (:mod:`doorstep.inbound_app`), so the courier
page in responders/ can serve it without the listeners; these names stay importable from here
for the webhook (listeners/webhook.py) and for code written against the old place."""

from __future__ import annotations

from doorstep.inbound_app import (  # noqa: F401 - re-exported
    MAX_HEADER_BYTES,
    BodyTimeout,
    BodyTooLarge,
    InboundLimits,
    InboundServer,
    declared_length,
    inbound_app,
    json_error,
    read_body,
)
