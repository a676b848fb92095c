"""Customers' replies over HTTP: SMS through Twilio's inbound webhook, e-mail through a raw-message endpoint.

Both are routes on the one inbound application (:mod:`doorstep.inbound_app`), served with the
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
"On ... wrote:" or ``>`` lines is dropped before the answer is read. A part in a charset Python
does not know (``unknown-8bit``) is read as UTF-8, else Windows-1252, with what cannot be read
replaced; a message whose parts are nested too deeply to parse is stored with the text found in
it, marked so, for a person (never read as a yes). Only a message with no From is refused (400).

Both store the answer without NUL characters and with a lone surrogate replaced
(:func:`doorstep.dialogue.storable_text`). :func:`responders.dialogue.handle_reply` records the
answer and acts on it in one transaction, so a failure leaves nothing behind:

* a busy or unreachable store (:data:`doorstep.dialect.OPERATIONAL_ERRORS`) is answered 503 with
  Retry-After and keeps nothing: the sender's retry of the same ``MessageSid`` or ``Message-ID`` is
  handled as the first delivery;
* any other failure (a bug in a step, data a step cannot take) would fail every retry the same
  way, and Twilio retries little or not at all: the answer is kept for a person instead, in a small
  transaction of its own (:func:`responders.dialogue.keep_for_person`, the worker's way for a post
  that keeps failing: ``answers``, its case back with the team, a note on it,
  ``dialogue.needs_human``; a STOP still opts the customer out when that can be done) and answered
  as a success (empty TwiML, 202), so it is not sent again; a redelivery is then a duplicate;
* only when even that fails is the answer a one-line JSON 500 (the sender retries).

Each 503 and 500, and each answer kept for a person, is an error in the webhook's listener
health (a health write that fails never stops the answer); the next reply stored clears the
error a 503 or 500 of these endpoints wrote there, as the webhook's next stored post does.
Refused (unsigned or badly signed) requests count in the webhook's ``rejected``, like its own.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.errors import MessageError
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from typing import TYPE_CHECKING, Any

from doorstep.config import Config, secret
from doorstep.dialect import OPERATIONAL_ERRORS
from doorstep.dialogue import storable_text
from doorstep.store import Store
from listeners.health import record_error, record_success
from doorstep.inbound_app import BodyTimeout, BodyTooLarge, InboundLimits, json_error, read_body

if TYPE_CHECKING:
    from listeners.webhook import RejectedCounter

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
#: Put before the text of a message whose parts are nested too deeply to parse: the person who
#: reads it knows why it looks odd, and the rules read it as "other" (never as a yes or a STOP).
NOT_READ_IN_FULL = "(e-mail not read in full: its parts are nested too deeply; the text found in it:)"
#: MIME lines of a message read without its structure: boundaries, part headers, their parameters.
_MIME_LINE = re.compile(r"^(?:--\S*|\s*(?:content-[\w-]+|mime-version)\s*:.*|\s+[\w-]+\*?=.*)$", re.IGNORECASE)
#: The listener health row the reply endpoints write to (they are routes of the webhook's application).
HEALTH_ROW = "webhook"
#: Said in every health error of a 503 or 500 of these endpoints: the next reply stored clears only those.
ASKED_TO_RETRY = "the sender was asked to retry"
REPLY_PATHS = ("/sms", "/mail")
#: Longest wait for the store's write lock for a health write: the answer (Twilio waits 15 s in all)
#: must not wait a second busy timeout, after the one the reply itself may have waited.
HEALTH_WAIT_S = 2.0


class UnreadableMail(ValueError):
    """A message that cannot be taken at all (no From): a one-line 400, never worth a retry."""


class NotKept(RuntimeError):
    """An answer that could be neither acted on nor kept for a person: the sender is asked to retry (500)."""


@dataclass
class MailReply:
    """What ``POST /mail`` needs of one message, every string storable."""

    sender: str
    message_id: str
    subject: str
    recipients: str
    references: str
    text: str


def reply_text(body: str) -> str:
    """The customer's own words in a reply: everything above the quoted message or signature."""
    kept = []
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith(">") or QUOTE_START.match(stripped):
            break
        kept.append(line)
    return "\n".join(kept).strip()


def _part_text(part: Any) -> str:
    """One text part's words. A charset Python does not know ("unknown-8bit", "x-bogus") or bytes
    its charset cannot read are taken as UTF-8, else Windows-1252, with what is unreadable replaced:
    the customer's answer is stored for a person, never refused for its label."""
    charset = part.get_content_charset() or "us-ascii"
    try:
        codecs.lookup(charset)
        return str(part.get_content())
    except (LookupError, UnicodeError, ValueError):
        pass
    payload = part.get_payload(decode=True) or b""
    if isinstance(payload, str):
        return payload
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.decode("cp1252", "replace")


def _body_text(mail: Any) -> str:
    part = mail.get_body(preferencelist=("plain", "html")) if hasattr(mail, "get_body") else None
    if part is None:
        return ""
    content = _part_text(part)
    if part.get_content_subtype() == "html":
        content = re.sub(r"<[^>]+>", " ", content)
    return str(content)


def _text_without_structure(raw: bytes) -> str:
    """The words of a message read as plain lines: what a person can still read when its MIME
    structure cannot be parsed (boundaries and part headers dropped)."""
    head_end = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=len(raw))
    body = raw[head_end:].decode("utf-8", "replace")
    return "\n".join(line for line in body.splitlines() if line.strip() and not _MIME_LINE.match(line))[:4000]


def read_mail(raw: bytes) -> MailReply:
    """The parts of one message ``POST /mail`` uses, or :class:`UnreadableMail`.

    Python's parser recurses once per nesting level of MIME parts; a message nested deeper than
    its recursion limit (no mailer writes one) is read by its headers, and its text without its
    structure, prefixed with :data:`NOT_READ_IN_FULL`.
    """
    try:
        try:
            mail = message_from_bytes(raw, policy=policy.default)
            text = reply_text(_body_text(mail))
        except RecursionError:
            mail = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
            text = f"{NOT_READ_IN_FULL} {reply_text(_text_without_structure(raw))}"
        sender = parseaddr(str(mail.get("From", "")))[1]
        message_id = str(mail.get("Message-ID", "")).strip() or hashlib.sha256(raw).hexdigest()
        subject = str(mail.get("Subject", ""))
        recipients = " ".join(a for _, a in getaddresses([str(v) for v in mail.get_all("To", []) or []]))
        references = f"{mail.get('In-Reply-To', '')} {mail.get('References', '')}"
    except (ValueError, LookupError, TypeError, IndexError, AttributeError, MessageError) as exc:
        # The parser is lenient; what still fails is a header no mailer writes.
        raise UnreadableMail(f"the message could not be read ({type(exc).__name__})") from None
    if not storable_text(sender):
        raise UnreadableMail("the message has no From address")
    return MailReply(sender=storable_text(sender), message_id=storable_text(message_id)[:998],
                     subject=storable_text(subject), recipients=storable_text(recipients),
                     references=storable_text(references), text=storable_text(text))


class ReplyEndpoints:
    """``POST /sms`` and ``POST /mail`` on one store (one write at a time, as the webhook)."""

    def __init__(self, store: Store, config: Config, limits: InboundLimits, *, lock: threading.Lock | None = None,
                 classifier: Any = None, rejected: RejectedCounter | None = None):
        from listeners.webhook import RejectedCounter
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
        #: ... and counted in the webhook's listener health (``rejected``), the count its own refusals go to.
        self.rejected = rejected or RejectedCounter(store, "webhook", self._lock)

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
            await run_in_threadpool(self._note_refused, "/sms", "missing" if not signature else "bad")
            return json_error(401, f"{'missing' if not signature else 'bad'} {TWILIO_SIGNATURE}")
        # Checked as signed, stored as any store can hold them (no NUL, no lone surrogate).
        sender, text, sid = (storable_text(params.get(k, "")) for k in ("From", "Body", "MessageSid"))
        if not sender or not sid:
            return json_error(400, "an SMS webhook needs From and MessageSid")
        try:
            result = await run_in_threadpool(self.answer, "/sms", channel="sms", external_id=sid, sender=sender,
                                             text=text)
        except OPERATIONAL_ERRORS as exc:
            return await self._busy("/sms", exc)
        except Exception as exc:  # noqa: BLE001 - not even kept for a person: one line to Twilio, the error in health
            return await self._failed("/sms", exc)
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
            await run_in_threadpool(self._note_refused, "/mail", "missing" if not header else "bad")
            return json_error(401, f"{'missing' if not header else 'bad'} signature: send {MAIL_SIGNATURE}: "
                                   "sha256=<HMAC-SHA256 of the raw message>")
        try:
            result = await run_in_threadpool(self.accept_mail, body)
        except UnreadableMail as exc:
            return json_error(400, str(exc))
        except OPERATIONAL_ERRORS as exc:
            return await self._busy("/mail", exc)
        except Exception as exc:  # noqa: BLE001 - not even kept for a person: one line to the relay, and in health
            return await self._failed("/mail", exc)
        return JSONResponse(result, status_code=202)

    def accept_mail(self, raw: bytes) -> dict[str, Any]:
        mail = read_mail(raw)
        return self.answer("/mail", channel="email", external_id=mail.message_id, sender=mail.sender, text=mail.text,
                           find_question=lambda: self._mail_question(mail))

    def _mail_question(self, mail: MailReply) -> tuple[Any, bool]:
        """The question a mail answers (by its token, else the Message-ID it replies to) and whether
        it comes from the address we asked (no question: nothing to compare, as before)."""
        from doorstep import dialogue as rows

        question = None
        match = TOKEN.search(mail.subject) or PLUS_TOKEN.search(mail.recipients)
        if match:
            question = rows.question_by_token(self.store, match.group(1))
        if question is None:
            for ref in re.findall(r"<[^>]+>", mail.references):
                question = rows.question_by_mail_id(self.store, ref)
                if question is not None:
                    break
        verified = question is None or rows.address_key("email", mail.sender) == rows.address_key("email",
                                                                                                   question.target)
        return question, verified

    # ------------------------------------------------------------------ handling, and keeping what failed
    def answer(self, path: str, *, channel: str, external_id: str, sender: str, text: str,
               find_question: Callable[[], tuple[Any, bool]] | None = None) -> dict[str, Any]:
        """Handle one reply; when that fails for another reason than a busy or unreachable store, keep
        it for a person (:meth:`keep_for_person`) and return that outcome, so the sender is answered
        with a success and does not send again what would fail again.

        Raises an operational error (busy: 503, nothing kept) or :class:`NotKept` (500).
        """
        question, verified = None, True
        try:
            if find_question is not None:
                question, verified = find_question()
            result = self._handle(channel=channel, external_id=external_id, sender=sender, text=text,
                                  question=question, sender_verified=verified)
        except OPERATIONAL_ERRORS:
            raise  # nothing kept: the retry is handled as the first delivery
        except Exception as exc:  # noqa: BLE001 - a bug or data a step cannot take: the same on every retry
            log.error("%s: a reply (%s) could not be acted on; keeping it for a person", path, external_id,
                      exc_info=exc)
            try:
                return self.keep_for_person(path, exc, channel=channel, external_id=external_id, sender=sender,
                                            text=text, question=question, sender_verified=verified)
            except OPERATIONAL_ERRORS:
                raise
            except Exception as second:  # noqa: BLE001 - the store itself is broken: the sender retries
                raise NotKept(f"{type(exc).__name__}: {exc}; keeping it for a person failed too: "
                              f"{type(second).__name__}: {second}") from second
        self._clear_store_error()
        return result

    def keep_for_person(self, path: str, exc: Exception, *, channel: str, external_id: str, sender: str, text: str,
                        question: Any = None, sender_verified: bool = True) -> dict[str, Any]:
        """Keep an answer whose handling failed for a person (:func:`responders.dialogue.keep_for_person`:
        recorded, its case back with the team, a note, ``dialogue.needs_human``, a STOP still honoured),
        under the endpoints' one write lock, and show it in the webhook's listener health: what the
        worker does with a post after it failed three ticks in a row, at once, since a webhook is not
        sent again. Returns what the sender is answered (the outcome, the answer's kind, its case)."""
        from responders.dialogue import error_line, keep_for_person

        with self._lock:
            kept = keep_for_person(self.store, self.config, channel=channel, external_id=external_id, sender=sender,
                                   text=text, error=exc, question=question, sender_verified=sender_verified)
        reply_id = kept.pop("reply_id", None)
        if reply_id is not None:
            where = f", case {kept['case_id']}" if kept.get("case_id") is not None else ", no case found"
            self._note_health(path, f"{path}: an answer could not be acted on ({error_line(exc)}); it is kept "
                                    f"for a person (answers id {reply_id}{where})")
        return kept

    # ------------------------------------------------------------------ failures
    async def _busy(self, path: str, exc: Exception) -> Any:
        """The store was busy or locked: worth a retry, as the webhook answers it; in health too,
        so a store that stays locked does not look healthy."""
        from starlette.concurrency import run_in_threadpool

        log.warning("%s: store busy (%s); asked the sender to retry", path, exc)
        await run_in_threadpool(self._note_health, path, f"{path}: store busy, {ASKED_TO_RETRY}: "
                                                         f"{type(exc).__name__}: {exc}")
        return json_error(503, "the store is busy; retry later", headers={"Retry-After": "5"})

    async def _failed(self, path: str, exc: Exception) -> Any:
        """The answer could not even be kept for a person: logged with its traceback, shown in listener
        health, one JSON line to the sender, who retries."""
        from starlette.concurrency import run_in_threadpool

        log.error("%s: could not store a reply", path, exc_info=exc)
        await run_in_threadpool(self._note_health, path, f"{path}: reply not kept, {ASKED_TO_RETRY}: "
                                                         f"{type(exc).__name__}: {exc}")
        return json_error(500, "could not store the reply; retry later")

    def _note_health(self, path: str, error: str) -> None:
        """An error on the webhook's health row; never raises (the answer goes out whatever the store does)."""
        try:
            with self._lock, self.store.waiting_at_most(HEALTH_WAIT_S):
                record_error(self.store, HEALTH_ROW, error)
        except Exception:  # noqa: BLE001 - the store may be what failed; the log line before this is the trace
            log.warning("%s: could not write the error to listener health either", path, exc_info=True)

    def _clear_store_error(self) -> None:
        """After a reply was stored: the error a 503 or 500 of these endpoints left on the health row is
        over (as the webhook's next stored post writes ok). An error written by anything else (the
        webhook's own posts, an answer kept for a person) is left for its own writer to clear."""
        try:
            with self._lock, self.store.waiting_at_most(HEALTH_WAIT_S):
                row = self.store.db.execute("select last_outcome, last_error from listener_health where name = ?",
                                            [HEALTH_ROW]).fetchone()
                if (row is not None and row[0] == "error" and str(row[1] or "").startswith(
                        tuple(f"{p}: " for p in REPLY_PATHS)) and ASKED_TO_RETRY in str(row[1])):
                    record_success(self.store, HEALTH_ROW, fetched=0, stored=0)
        except Exception:  # noqa: BLE001 - the reply is stored; health is written again on the next one
            log.warning("could not clear the reply endpoints' error in listener health", exc_info=True)

    def _note_refused(self, path: str, reason: str) -> None:
        """Strangers may post unsigned requests at will: counted in the webhook's listener health
        (``rejected``, never ``last_error``), logged at most once a minute per path."""
        import time

        self.rejected.add()
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
