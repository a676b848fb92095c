"""Customers' replies over HTTP: SMS through Twilio's inbound webhook, e-mail through a raw-message endpoint.

Both are routes on the one inbound application (:mod:`listeners.inbound_app`), served with the
webhook listener. What a reply means and what it triggers is :mod:`responders.dialogue`.

``POST /sms`` - Twilio's "A message comes in" webhook (form fields ``From``, ``Body``,
``MessageSid``). The ``X-Twilio-Signature`` header is checked with the twilio library's
``RequestValidator`` and ``TWILIO_AUTH_TOKEN`` over the URL Twilio called
(``[responders.dialogue] sms_webhook_url`` when a proxy changes it; else the URL as received)
and the form. Unsigned or badly signed: 401, nothing stored. Answered with empty TwiML (no
automatic reply), so Twilio does not retry; a redelivery of the same ``MessageSid`` is dropped.

``POST /mail`` - one raw RFC 822 message (``Content-Type: message/rfc822``), as an inbound mail
relay or a small mailbox poller posts it, signed like the webhook (``X-Doorstep-Signature:
sha256=HMAC(DOORSTEP_MAIL_SECRET, body)``). It is joined to the question by the reply token in
the subject (``[ref 0123abcd45]``) or the To address (``care+0123abcd45@...``), else by
``In-Reply-To``/``References`` (our question's Message-ID), else by the sender's address. A reply
whose From is not the address we asked is never acted on: a person reads it. Quoted text below
"On ... wrote:" or ``>`` lines is dropped before the answer is read.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from email import message_from_bytes, policy
from email.utils import getaddresses, parseaddr
from typing import Any

from doorstep.config import Config, secret
from doorstep.store import Store
from listeners.inbound_app import BodyTimeout, BodyTooLarge, InboundLimits, json_error, read_body

log = logging.getLogger("doorstep.listeners.replies")

TWILIO_SIGNATURE = "X-Twilio-Signature"
MAIL_SIGNATURE = "X-Doorstep-Signature"
#: At most one log line per this many seconds about refused (unsigned) replies, per path.
REFUSED_LOG_EVERY_S = 60.0
#: Longest e-mail accepted (a reply with a big attachment is cut off by the app's own limit first).
MAX_MAIL_BYTES = 1_000_000
TOKEN = re.compile(r"\[ref ([0-9a-f]{10})\]")
PLUS_TOKEN = re.compile(r"\+([0-9a-f]{10})@")
QUOTE_START = re.compile(r"^(?:on .{0,200}wrote:|-{2,} ?original message ?-{2,}|from: .*|sent from my .*|-- ?)$",
                         re.IGNORECASE)


def reply_text(body: str) -> str:
    """The customer's own words in a reply: everything above the quoted message or signature."""
    kept = []
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith(">") or QUOTE_START.match(stripped):
            break
        kept.append(line)
    return "\n".join(kept).strip()


def _body_text(mail: Any) -> str:
    part = mail.get_body(preferencelist=("plain", "html")) if hasattr(mail, "get_body") else None
    if part is None:
        return ""
    content = part.get_content()
    if part.get_content_subtype() == "html":
        content = re.sub(r"<[^>]+>", " ", content)
    return str(content)


class ReplyEndpoints:
    """``POST /sms`` and ``POST /mail`` on one store (one write at a time, as the webhook)."""

    def __init__(self, store: Store, config: Config, limits: InboundLimits, *, lock: threading.Lock | None = None,
                 classifier: Any = None):
        from responders.config import resolve, responders_settings

        self.store = store
        self.config = config
        self.limits = limits
        self.settings = responders_settings(config).dialogue
        self.mail_secret = resolve(self.settings.mail_secret)
        self._lock = lock or threading.Lock()
        #: The pipeline's classifier: reads answers the rules cannot (a hint for the person they go to).
        self.classifier = classifier
        #: Refused (unsigned) requests: at most one log line a minute, never the sender's address.
        self._refused: dict[str, list[float]] = {}
        self._refused_lock = threading.Lock()

    def routes(self) -> list[Any]:
        from starlette.routing import Route

        return [Route("/sms", self.sms, methods=["POST"]), Route("/mail", self.mail, methods=["POST"])]

    async def _body(self, request: Any, max_bytes: int) -> bytes | Any:
        try:
            return await read_body(request, self.limits.read_timeout_s, max_bytes)
        except BodyTooLarge:
            return json_error(413, f"body over {max_bytes} bytes", close=True)
        except BodyTimeout:
            return json_error(408, f"body not received within {self.limits.read_timeout_s:g} s "
                                   "([limits] inbound_read_timeout_s)", close=True)

    # ------------------------------------------------------------------ SMS
    async def sms(self, request: Any) -> Any:
        from urllib.parse import parse_qsl

        from starlette.concurrency import run_in_threadpool
        from starlette.responses import Response
        from twilio.request_validator import RequestValidator
        from twilio.twiml.messaging_response import MessagingResponse

        token = secret("TWILIO_AUTH_TOKEN")
        if not token:
            return json_error(503, "TWILIO_AUTH_TOKEN is not set: SMS replies cannot be verified, so none are accepted")
        body = await self._body(request, self.limits.body_max_bytes)
        if not isinstance(body, bytes):
            return body
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        url = self.settings.sms_webhook_url or str(request.url)
        signature = request.headers.get(TWILIO_SIGNATURE, "")
        if not signature or not RequestValidator(token).validate(url, params, signature):
            self._note_refused("/sms", "missing" if not signature else "bad")
            return json_error(401, f"{'missing' if not signature else 'bad'} {TWILIO_SIGNATURE}")
        sender, text, sid = params.get("From", ""), params.get("Body", ""), params.get("MessageSid", "")
        if not sender or not sid:
            return json_error(400, "an SMS webhook needs From and MessageSid")
        result = await run_in_threadpool(self._handle, channel="sms", external_id=sid, sender=sender, text=text)
        log.info("SMS reply %s: %s", sid, result.get("outcome"))
        return Response(str(MessagingResponse()), media_type="text/xml")

    # ------------------------------------------------------------------ e-mail
    async def mail(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        from listeners.webhook import verify

        if not self.mail_secret:
            return json_error(503, "DOORSTEP_MAIL_SECRET is not set ([responders.dialogue] mail_secret): "
                                   "e-mail replies cannot be verified, so none are accepted")
        body = await self._body(request, min(MAX_MAIL_BYTES, self.limits.body_max_bytes))
        if not isinstance(body, bytes):
            return body
        header = request.headers.get(MAIL_SIGNATURE)
        if not verify(body, header, self.mail_secret):
            self._note_refused("/mail", "missing" if not header else "bad")
            return json_error(401, f"{'missing' if not header else 'bad'} signature: send {MAIL_SIGNATURE}: "
                                   "sha256=<HMAC-SHA256 of the raw message>")
        try:
            result = await run_in_threadpool(self.accept_mail, body)
        except ValueError as exc:
            return json_error(400, str(exc))
        return JSONResponse(result, status_code=202)

    def accept_mail(self, raw: bytes) -> dict[str, Any]:
        from doorstep import dialogue as rows

        mail = message_from_bytes(raw, policy=policy.default)
        sender = parseaddr(str(mail.get("From", "")))[1]
        if not sender:
            raise ValueError("the message has no From address")
        message_id = str(mail.get("Message-ID", "")).strip() or hashlib.sha256(raw).hexdigest()
        subject = str(mail.get("Subject", ""))
        recipients = " ".join(a for _, a in getaddresses([str(v) for v in mail.get_all("To", []) or []]))
        question = None
        match = TOKEN.search(subject) or PLUS_TOKEN.search(recipients)
        if match:
            question = rows.question_by_token(self.store, match.group(1))
        if question is None:
            for ref in re.findall(r"<[^>]+>", f"{mail.get('In-Reply-To', '')} {mail.get('References', '')}"):
                question = rows.question_by_mail_id(self.store, ref)
                if question is not None:
                    break
        verified = question is None or rows.address_key("email", sender) == rows.address_key("email", question.target)
        text = reply_text(_body_text(mail))
        return self._handle(channel="email", external_id=message_id, sender=sender, text=text, question=question,
                            sender_verified=verified)

    def _note_refused(self, path: str, reason: str) -> None:
        """Strangers may post unsigned requests at will: count them, log at most once a minute per path."""
        import time

        with self._refused_lock:
            count, last = self._refused.get(path, [0, float("-inf")])
            count += 1
            now = time.monotonic()
            if now - last < REFUSED_LOG_EVERY_S:
                self._refused[path] = [count, last]
                return
            self._refused[path] = [0, now]
        log.warning("%s: refused %d request(s) with a %s signature since the last report", path, count, reason)

    def _handle(self, **kwargs: Any) -> dict[str, Any]:
        from responders.dialogue import handle_reply

        with self._lock:
            return handle_reply(self.store, self.config, classifier=self.classifier, **kwargs)
