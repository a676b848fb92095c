"""Sending email over SMTP: customer replies and follow-ups, escalations, alerts, reports.

Settings come from the environment (``SMTP_HOST``, ``SMTP_PORT``, ``SMTP_USER``,
``SMTP_PASSWORD``, ``SMTP_FROM``, ``SMTP_STARTTLS``, ``SMTP_SSL``, ``SMTP_TIMEOUT``) so the
password never sits in doorstep.toml; ``[responders.email]``-style keys are not needed.
Port 465 means implicit TLS, port 587 STARTTLS, anything else plain (a local relay).

The caller may pass a ``Message-ID`` header: the outbox derives it from the message's
idempotency key so that the same outbound message always has the same id, and threads a reply
under the customer's mail with ``In-Reply-To``/``References``.
"""

from __future__ import annotations

import mimetypes
import re
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.errors import HeaderParseError, MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any

from doorstep.config import AccountRef, Config, secret

#: The right-hand side of our Message-IDs when no sender address gives one.
FALLBACK_DOMAIN = "doorstep.local"
#: RFC 5322 dot-atom text: what a Message-ID's domain part may be without quoting.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def mail_domain(address: str | None) -> str:
    """The domain of a sender ``address`` as written in SMTP_FROM or a brand's ``email``, for our Message-IDs.

    The address may carry a display name (``Larkspur Care <care@larkspur.example>``); cutting at the
    last ``@`` kept the ``>`` and made the header malformed, so it is read as the standard library
    reads a From header. A non-ASCII domain is written in IDNA (a Message-ID is ASCII); an address
    that gives no usable domain falls back to :data:`FALLBACK_DOMAIN`.
    """
    spec = parseaddr(address or "")[1]
    try:
        domain = Address(addr_spec=spec).domain if spec else ""
    except (ValueError, IndexError, HeaderParseError, MessageError):
        return FALLBACK_DOMAIN
    if domain and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return FALLBACK_DOMAIN
    return domain if _DOT_ATOM.fullmatch(domain) else FALLBACK_DOMAIN


class EmailError(RuntimeError):
    """SMTP refused or could not be reached. ``retryable`` is False for permanent refusals (5xx)."""

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


def smtp_settings(account: AccountRef | None = None) -> dict[str, Any]:
    """The SMTP settings; with a brand's e-mail ``account``, its address and its own mailbox login.

    The account logs in with ``<PREFIX>_USER``/``<PREFIX>_PASSWORD`` (README, "Accounts per brand and
    channel"); a secret it does not have falls back to the shared ``SMTP_USER``/``SMTP_PASSWORD``.
    """
    port = int(secret("SMTP_PORT") or 25)
    return {
        "host": secret("SMTP_HOST") or "localhost",
        "port": port,
        "user": account.secret("USER") if account is not None else secret("SMTP_USER"),
        "password": account.secret("PASSWORD") if account is not None else secret("SMTP_PASSWORD"),
        "sender": (account.handle if account is not None else None) or secret("SMTP_FROM") or "care@localhost",
        "ssl": (secret("SMTP_SSL") or ("1" if port == 465 else "0")) in ("1", "true", "yes"),
        "starttls": (secret("SMTP_STARTTLS") or ("1" if port == 587 else "0")) in ("1", "true", "yes"),
        "timeout": float(secret("SMTP_TIMEOUT") or 30),
    }


def build_message(sender: str, to: str | Sequence[str], subject: str, text: str, html: str | None = None,
                  headers: Mapping[str, str] | None = None, attachments: Sequence[Any] | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to if isinstance(to, str) else ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    for key, value in (headers or {}).items():
        if key.lower() in ("from", "to", "subject", "date"):
            del msg[key]
        msg[key] = value
    if "Message-ID" not in msg:
        msg["Message-ID"] = make_msgid(domain=mail_domain(sender))
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for item in attachments or []:
        if isinstance(item, tuple):
            filename, data, mime = item
        else:
            path = Path(item)
            filename, data = path.name, path.read_bytes()
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        maintype, _, subtype = mime.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
    return msg


def send_email(config: Config | None, to: str | Sequence[str], subject: str, text: str, html: str | None = None,
               headers: Mapping[str, str] | None = None, attachments: Sequence[Any] | None = None,
               account: AccountRef | None = None) -> str:
    """Send one email and return its Message-ID.

    ``account`` (a brand's e-mail account) is the From address and the mailbox that logs in
    (:func:`smtp_settings`); None: the shop-wide ``SMTP_FROM`` and ``SMTP_USER``.

    Raises :class:`EmailError` (``retryable`` False when the server refused the message or the
    recipients for good, e.g. a 550).
    """
    settings = smtp_settings(account)
    msg = build_message(settings["sender"], to, subject, text, html, headers, attachments)
    try:
        if settings["ssl"]:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(settings["host"], settings["port"], timeout=settings["timeout"],
                                                  context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(settings["host"], settings["port"], timeout=settings["timeout"])
        with smtp:
            if settings["starttls"] and not settings["ssl"]:
                smtp.starttls(context=ssl.create_default_context())
            if settings["user"] and settings["password"]:
                smtp.login(settings["user"], settings["password"])
            smtp.send_message(msg)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise EmailError(f"recipients refused: {', '.join(str(c) for c in codes)}",
                         retryable=all(400 <= c < 500 for c in codes)) from None
    except smtplib.SMTPResponseException as exc:
        raise EmailError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", retryable=exc.smtp_code < 500) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise EmailError(f"SMTP {settings['host']}:{settings['port']}: {type(exc).__name__}: {exc}") from None
    return str(msg["Message-ID"])
