"""The one place that keeps secrets out of everything a person or a file can read.

Every error stored on a record (``outbound_messages.last_error``, ``listener_health.last_error``),
every audit detail (:meth:`doorstep.store.Store.audit`) and every log line passes through
:func:`redact`. It knows two things:

* **the configured secret values**: every value :func:`doorstep.config.secret` hands out, every
  value of ``$DOORSTEP_SECRETS_FILE`` and every environment variable whose name says it is a
  secret (``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD``, ``*_KEY``, ``*_WEBHOOK*``, ``*_URL`` with
  credentials ...), registered with :func:`register_secret`. For a URL the parts that carry the
  credential are registered too (the path of ``https://hooks.slack.com/services/T0/B0/XYZ``, the
  password of ``smtp://user:pw@host``), because libraries print host and path apart
  (``HTTPConnectionPool(host=..., port=...): ... url: /services/T0/B0/XYZ``).
* **the shapes of credentials**: bearer tokens, OAuth parameters, ``password=``/``token=``
  parameters, a URL's ``user:password@``, Slack and Discord webhook paths, and URLs of any
  non-web scheme (Apprise's ``tgram://BOTTOKEN/CHAT``, ``mailto://user:pw@...``), whose whole
  body is a credential.

Logging: a record factory masks every record when it is created, whichever logger made it and
whichever handler writes it. (A ``logging.Filter`` on the root logger alone would not do: Python
runs a logger's filters only for records logged on that logger, not for those propagated from
``slack_sdk`` or ``urllib3``.) :class:`RedactingFilter` is also added to the root logger and
its handlers for code that builds records by hand.

Why a module of its own in the core: the listeners, responders and console each used to mask
what they knew about; a secret one of them did not know about leaked through the others.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: What replaces a secret.
MASK = "***"
#: Values shorter than this are not treated as secrets (a timeout "30", a flag "1"): masking them
#: would garble every number in a log line, and a real credential is never this short.
MIN_SECRET_LENGTH = 6

#: Environment variable names that hold secrets (matched anywhere in the upper-case name).
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|_PASS$|_KEY$|_KEY_|APIKEY|WEBHOOK|CREDENTIAL|_SID$|"
                          r"AUTH|DSN|APPRISE|_URL$")
#: Names that match the above but hold nothing secret (our own handle, a server's address, limits).
_NOT_SECRET_NAME = re.compile(r"(_HANDLE|_BASE_URL|_TIMEOUT|_VERSION|_FROM|_HOST|_PORT|_USER|_USERNAME|"
                              r"_ACCOUNT)$")

_WEB_SCHEMES = {"http", "https"}

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization headers and their reprs. A token is 8 characters or more: "bearer token from the
    # X developer portal" (a hint saying where to get one) keeps its words.
    (re.compile(r"(Bearer\s+)[^\s'\",}]{8,}", re.IGNORECASE), r"\1" + MASK),
    (re.compile(r"(Basic\s+)[A-Za-z0-9+/=]{8,}", re.IGNORECASE), r"\1" + MASK),
    # OAuth 1.0a header parameters.
    (re.compile(r"(oauth_(?:token|consumer_key|signature)=\")[^\"]+", re.IGNORECASE), r"\1" + MASK),
    # key=value / "key": "value" of secret-looking names (query strings, JSON, reprs).
    (re.compile(r"\b((?:access_token|refresh_token|api_key|apikey|auth_token|token|secret|client_secret|password|passwd|"
                r"accessJwt|refreshJwt|signature|sig)['\"]?\s*[:=]\s*['\"]?)[^\s'\",&}]+", re.IGNORECASE),
     r"\1" + MASK),
    # A URL's user:password@ (any scheme).
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]*:)[^\s@/'\"]+@", re.IGNORECASE), r"\1" + MASK + "@"),
    # Slack incoming webhooks, also printed without their host.
    (re.compile(r"/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+"), "/services/" + MASK),
    # Discord webhooks.
    (re.compile(r"/api/webhooks/\d+/[A-Za-z0-9_.-]+"), "/api/webhooks/" + MASK),
]
#: A URL of a scheme other than http(s): Apprise's tgram://TOKEN/CHAT, slack://A/B/C, pover://USER@TOKEN ...
_NON_WEB_URL = re.compile(r"\b([a-z][a-z0-9+.-]{1,15})://([^\s'\"<>]+)", re.IGNORECASE)

_lock = threading.Lock()
#: secret value -> what it is (the variable's name), longest first when used.
_secrets: dict[str, str] = {}
_ordered: list[str] = []
#: fingerprint -> credential-bearing value written literally in doorstep.toml (see :func:`stored_target`).
_config_values: dict[str, tuple[str, str]] = {}


def _secret_parts(value: str) -> list[str]:
    """``value`` and, for a URL, the parts of it that are themselves the credential."""
    parts = [value]
    try:
        url = urlsplit(value)
    except ValueError:
        return parts
    if not url.scheme or not url.netloc:
        return parts
    if url.password:
        parts.append(url.password)
    if url.scheme.lower() not in _WEB_SCHEMES:
        parts.append(value.split("://", 1)[1])  # tgram://TOKEN/CHAT: everything after the scheme
    tail = url.path + (f"?{url.query}" if url.query else "")
    if len(url.path.strip("/")) >= MIN_SECRET_LENGTH:
        parts.append(tail)
        parts.append(url.path)
    if url.query:
        parts.append(url.query)
    return parts


def _is_bare_address(value: str) -> bool:
    """A plain http(s) address with nothing secret in it (``http://127.0.0.1:8080``), e.g. a base URL."""
    try:
        url = urlsplit(value)
    except ValueError:
        return False
    return (url.scheme.lower() in _WEB_SCHEMES and bool(url.netloc) and not url.password and not url.query
            and len(url.path.strip("/")) < MIN_SECRET_LENGTH)


def register_secret(value: str | None, name: str = "secret") -> None:
    """Remember ``value`` (and its credential parts, for a URL) so :func:`redact` masks it everywhere."""
    if not value or not isinstance(value, str) or _NOT_SECRET_NAME.search(name.upper()):
        return  # SMTP_HOST, X_API_BASE_URL...: read through secret() but nothing to hide
    value = value.strip()
    if len(value) < MIN_SECRET_LENGTH or _is_bare_address(value):
        return
    with _lock:
        changed = False
        for part in _secret_parts(value):
            if len(part) >= MIN_SECRET_LENGTH and part not in _secrets:
                _secrets[part] = name
                changed = True
        if changed:
            _ordered[:] = sorted(_secrets, key=len, reverse=True)


def is_secret_name(name: str) -> bool:
    """Whether an environment variable called ``name`` holds a secret, judged by its name."""
    upper = name.upper()
    return bool(_SECRET_NAME.search(upper)) and not _NOT_SECRET_NAME.search(upper)


def register_environment(environ: dict[str, str] | None = None) -> None:
    """Register the secrets a process can see: secret-named environment variables and every
    value of ``$DOORSTEP_SECRETS_FILE``.

    Run at import, so even a process that never reads a secret (the console, which shows errors
    other processes stored) masks it. Cheap and idempotent; call again after changing the environment.
    """
    environ = os.environ if environ is None else environ
    for name, value in environ.items():
        if is_secret_name(name):
            register_secret(value, name)
    secrets_file = environ.get("DOORSTEP_SECRETS_FILE")
    if secrets_file:
        try:
            lines = Path(secrets_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return
        for line in lines:
            key, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#") and not _NOT_SECRET_NAME.search(key.strip().upper()):
                register_secret(value.strip().strip('"').strip("'"), key.strip())


def register_config_values(data: Any, path: str = "") -> None:
    """Register credential-bearing URLs written literally in doorstep.toml (a webhook, an Apprise URL).

    The README asks for ``"$NAME"`` references instead; this is the safety net when someone did not.
    """
    if isinstance(data, dict):
        for key, value in data.items():
            register_config_values(value, f"{path}.{key}" if path else str(key))
    elif isinstance(data, (list, tuple)):
        for value in data:
            register_config_values(value, path)
    elif isinstance(data, str) and "://" in data and not _is_bare_address(data):
        register_secret(data, path or "config")
        if redact(data) != data:
            with _lock:
                _config_values[_fingerprint(data)] = (path or "config", data)


def _fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]


class SecretTargetError(ValueError):
    """A message target carries a credential that is not in doorstep.toml or the environment."""


#: How a stored reference to a literal in doorstep.toml looks: ``@config:alerts.apprise#3f2a9c01b2c4``.
_REFERENCE = re.compile(r"^@config:(?P<path>[^#]*)#(?P<fp>[0-9a-f]{12})$")


def stored_target(target: str | None) -> str | None:
    """What an outbound message stores as its target: never a credential.

    ``$NAME`` references and plain targets (addresses, handles, plain URLs) are kept as they are.
    A credential-bearing URL written literally in doorstep.toml (``tgram://BOTTOKEN/CHAT``, a Slack
    webhook URL) becomes ``@config:KEY#FINGERPRINT``, which :func:`resolve_reference` turns back
    into the URL in any process that loaded the same configuration. Any other credential-bearing
    target is refused: the sender could not find it again without storing it.
    """
    if target is None or target.startswith("$") or _REFERENCE.match(target) or redact(target) == target:
        return target
    fingerprint = _fingerprint(target)
    known = _config_values.get(fingerprint)
    if known is None:
        raise SecretTargetError(f"{redact(target)} carries a credential: put the URL in the environment or "
                                "$DOORSTEP_SECRETS_FILE as NAME=URL and use $NAME instead")
    return f"@config:{known[0]}#{fingerprint}"


def resolve_reference(target: str) -> str | None:
    """The URL an ``@config:KEY#FINGERPRINT`` target stands for (None when the configuration no
    longer has it); any other target unchanged."""
    match = _REFERENCE.match(target)
    if match is None:
        return target
    known = _config_values.get(match.group("fp"))
    return known[1] if known else None


def forget_secrets() -> None:
    """Forget every registered value (for tests)."""
    with _lock:
        _secrets.clear()
        _ordered.clear()
        _config_values.clear()


#: Schemes whose addresses are public, never credentials: web links, and a Bluesky post's ``at://did:.../rkey``
#: (audit lines name the post a reply answered; masking it hid which post).
_PUBLIC_SCHEMES = _WEB_SCHEMES | {"at"}


def _mask_non_web(match: re.Match[str]) -> str:
    scheme = match.group(1)
    if scheme.lower() in _PUBLIC_SCHEMES:
        return match.group(0)
    return f"{scheme}://{MASK}"


def redact(text: Any) -> str:
    """``text`` with every known secret value and every credential-shaped part masked."""
    if not isinstance(text, str):
        text = str(text)
    for value in list(_ordered):
        if value in text:
            text = text.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _NON_WEB_URL.sub(_mask_non_web, text)


def redact_details(details: Any) -> Any:
    """Audit details (dicts, lists, strings) with every string masked; other values unchanged."""
    if isinstance(details, str):
        return redact(details)
    if isinstance(details, dict):
        return {key: redact_details(value) for key, value in details.items()}
    if isinstance(details, (list, tuple)):
        return [redact_details(value) for value in details]
    return details


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a record whose arguments do not fit: keep what we can, masked
        message = str(record.msg)
    cleaned = redact(message)
    if cleaned != message or record.args:
        record.msg, record.args = cleaned, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactingFilter(logging.Filter):
    """Masks secrets in a record; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


_FILTER = RedactingFilter()
_installed = False


def install_logging() -> None:
    """Mask every log record of this process from now on (idempotent; run at import)."""
    global _installed
    root = logging.getLogger()
    if _FILTER not in root.filters:
        root.addFilter(_FILTER)
    for handler in root.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


register_environment()
install_logging()
