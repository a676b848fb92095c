"""An SMTP server on 127.0.0.1 (aiosmtpd) that keeps every delivered message and can answer 451."""

from __future__ import annotations

from email import message_from_bytes
from typing import Any


class SmtpSink:
    """aiosmtpd on 127.0.0.1 that records delivered messages; ``refuse(n)`` answers 451 to the next n."""

    def __init__(self, policy: Any = None) -> None:
        #: How messages are parsed (``email.policy.default`` for EmailMessage objects; else compat32).
        self.policy = policy
        self.messages: list[Any] = []
        self._refuse = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._refuse:
            self._refuse -= 1
            return "451 4.3.0 try again later"
        msg = message_from_bytes(envelope.content, **({"policy": self.policy} if self.policy else {}))
        msg.envelope_to = list(envelope.rcpt_tos)  # type: ignore[attr-defined]
        self.messages.append(msg)
        return "250 OK"

    def refuse(self, count: int = 1) -> None:
        self._refuse = count
