"""API clients for the social channels, shared by the listeners (reading) and the responders (posting).

Why one module: the credentials, base URLs and timeouts of a channel must be the same for the
code that reads mentions and the code that replies, and tests point both at a local server on
127.0.0.1 by setting one environment variable (``X_API_BASE_URL``, ``MASTODON_BASE_URL``,
``BLUESKY_BASE_URL``). The client libraries are imported inside the functions so that importing
the core stays light.

Secrets come from :func:`doorstep.config.secret` (environment or ``$DOORSTEP_SECRETS_FILE``) and
never reach logs: tweepy logs request headers at DEBUG level, bearer token included, so a filter
on its logger masks them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from doorstep.config import AccountRef, Config, secret

if TYPE_CHECKING:  # pragma: no cover
    import atproto
    import mastodon
    import tweepy

X_DEFAULT_BASE_URL = "https://api.twitter.com"
#: tweepy builds every URL on this host; the adapter below rewrites it.
TWEEPY_HOST = "https://api.twitter.com"
MASTODON_DEFAULT_BASE_URL = "https://mastodon.social"
BLUESKY_DEFAULT_BASE_URL = "https://bsky.social"
#: Mastodon server version assumed unless MASTODON_VERSION says otherwise (any 4.x behaves the same
#: for what Doorstep uses: notifications by type, tag timelines, search, posting).
MASTODON_ASSUMED_VERSION = "4.2.0"
#: Seconds to wait for a channel API before counting the request as a network error. Without a
#: timeout, requests (and so tweepy) waits forever on a stalled connection: a silent stop.
DEFAULT_TIMEOUT_S = 30.0

def redact(text: str) -> str:
    """Mask bearer tokens, OAuth parameters, passwords and session tokens in a log line
    (kept for its callers: :func:`doorstep.redaction.redact` is the one redaction point)."""
    from doorstep.redaction import redact as _redact

    return _redact(text)


class RedactSecrets(logging.Filter):
    """Rewrites records of chatty client libraries so credentials never land in a log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record must still not leak
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_REDACTOR = RedactSecrets()
for _name in ("tweepy", "tweepy.client", "requests_oauthlib", "oauthlib", "mastodon", "atproto", "httpx", "urllib3"):
    if _REDACTOR not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_REDACTOR)


def _channel_settings(config: Config | None, channel: str) -> dict[str, Any]:
    return dict(config.channels.get(channel, {})) if config is not None else {}


def _timeout(config: Config | None, channel: str, env: str) -> float:
    value = secret(env) or _channel_settings(config, channel).get("timeout_s")
    return float(value) if value else DEFAULT_TIMEOUT_S


def _make_rewrite_adapter(base_url: str, default_timeout: float) -> Any:
    import requests.adapters

    class RewriteHostAdapter(requests.adapters.HTTPAdapter):
        """Send tweepy's requests for ``https://api.twitter.com`` to ``base_url`` instead.

        tweepy hard-codes its host; mounting this on ``client.session`` is the least invasive
        way to reach an emulator or a proxy. It also gives every request a timeout.
        """

        def send(self, request: Any, stream: bool = False, timeout: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
            if request.url and request.url.startswith(TWEEPY_HOST) and base_url != TWEEPY_HOST:
                request.url = base_url + request.url[len(TWEEPY_HOST):]
            return super().send(request, stream=stream, timeout=timeout if timeout is not None else default_timeout, **kwargs)

    return RewriteHostAdapter(pool_connections=4, pool_maxsize=8)


def mount_base_url(session: Any, base_url: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Route a requests session's calls to the X API host to ``base_url`` (with a default timeout)."""
    adapter = _make_rewrite_adapter(base_url.rstrip("/"), timeout)
    session.mount(TWEEPY_HOST + "/", adapter)


def x_base_url(config: Config | None = None) -> str:
    return (secret("X_API_BASE_URL") or _channel_settings(config, "x").get("base_url") or X_DEFAULT_BASE_URL).rstrip("/")


def _secret_of(account: AccountRef | None) -> Any:
    """Where one client's secrets come from: the account's own names first (see AccountRef.secret)."""
    if account is None:
        return lambda stem, suffix: secret(f"{stem}_{suffix}")
    return lambda stem, suffix: account.secret(suffix)


#: The OAuth 1.0a user keys that posting, ``get_me`` and direct messages need (the bearer token only reads).
X_USER_KEYS = ("API_KEY", "API_SECRET", "ACCESS_TOKEN", "ACCESS_TOKEN_SECRET")


def missing_x_user_keys(account: AccountRef | None = None) -> list[str]:
    """The X user keys that are not set, by the names that would set them ("LARKSPUR_X_API_KEY or
    X_API_KEY"): tweepy would otherwise fail with "Consumer key must be string or bytes, not
    NoneType", which names nothing a person can set."""
    if account is None:
        return [f"X_{key}" for key in X_USER_KEYS if not secret(f"X_{key}")]
    return [" or ".join(account.secret_names(key)) for key in X_USER_KEYS if not account.secret(key)]


def missing_mastodon_token(config: Config) -> list[str]:
    """When no Mastodon token is set at all, the names that would set one (the shared
    MASTODON_ACCESS_TOKEN, then each brand account's own); empty when one is. Without it every
    request is a 401, or, with no MASTODON_BASE_URL, a round of retries against mastodon.social."""
    from doorstep.config import brand_accounts

    accounts = brand_accounts(config, "mastodon")
    if secret("MASTODON_ACCESS_TOKEN") or any(a.has_own("ACCESS_TOKEN") for a in accounts):
        return []
    return ["MASTODON_ACCESS_TOKEN", *(a.secret_names("ACCESS_TOKEN")[0] for a in accounts)]


def missing_bluesky_login(config: Config) -> list[str]:
    """When the Bluesky listener could not log in, the names that would let it (the shared
    BLUESKY_HANDLE / BLUESKY_APP_PASSWORD it lacks, then each brand account's own app password);
    empty when it can. Without a login atproto sends anonymous requests that fail, on
    bsky.social's default host, with an empty "network error: "."""
    from doorstep.config import brand_accounts

    accounts = brand_accounts(config, "bluesky")
    shared = [name for name in ("BLUESKY_HANDLE", "BLUESKY_APP_PASSWORD") if not secret(name)]
    if not shared or any(a.has_own("APP_PASSWORD") for a in accounts):
        return []
    return [*shared, *(a.secret_names("APP_PASSWORD")[0] for a in accounts)]


def x_client(config: Config | None = None, *, base_url: str | None = None, timeout: float | None = None,
             account: AccountRef | None = None) -> tweepy.Client:
    """A tweepy v2 client with app auth (``X_BEARER_TOKEN``) and, when set, OAuth 1.0a user keys.

    Reading (search, mentions timeline) uses the bearer token; posting and ``get_me`` need the
    user keys (``X_API_KEY``, ``X_API_SECRET``, ``X_ACCESS_TOKEN``, ``X_ACCESS_TOKEN_SECRET``).
    ``wait_on_rate_limit`` is off: the listener and the outbox decide how to wait, so a 429 is
    visible in their health records and tests can inject the clock.
    """
    import tweepy

    get = _secret_of(account)
    client = tweepy.Client(
        bearer_token=get("X", "BEARER_TOKEN"),
        consumer_key=get("X", "API_KEY"),
        consumer_secret=get("X", "API_SECRET"),
        access_token=get("X", "ACCESS_TOKEN"),
        access_token_secret=get("X", "ACCESS_TOKEN_SECRET"),
        wait_on_rate_limit=False,
    )
    mount_base_url(
        client.session,
        (base_url or x_base_url(config)).rstrip("/"),
        timeout if timeout is not None else _timeout(config, "x", "X_API_TIMEOUT"),
    )

    def keep_rate(response: Any, *args: Any, **kwargs: Any) -> None:
        # The token's own rate-limit window, for the per-account usage on the Channels page.
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith("x-rate-limit-")}
        if headers:
            client._doorstep_last_rate = {k.lower().removeprefix("x-rate-limit-"): v for k, v in headers.items()}

    client.session.hooks["response"].append(keep_rate)
    return client


def x_streaming_client(config: Config | None = None, *, base_url: str | None = None, **kwargs: Any) -> tweepy.StreamingClient:
    """A tweepy ``StreamingClient`` on the same base URL (the filtered stream is optional)."""
    import tweepy

    client = tweepy.StreamingClient(secret("X_BEARER_TOKEN") or "", **kwargs)
    # The stream connection uses the session's adapter too; its read timeout must exceed the
    # 20 s keep-alive interval of the real stream.
    mount_base_url(client.session, (base_url or x_base_url(config)).rstrip("/"), 90.0)
    return client


def mastodon_client(config: Config | None = None, *, base_url: str | None = None, timeout: float | None = None,
                    account: AccountRef | None = None) -> mastodon.Mastodon:
    """A Mastodon.py client for ``MASTODON_BASE_URL`` with ``MASTODON_ACCESS_TOKEN``.

    ``ratelimit_method="throw"``: the listener waits out a 429 itself (with an injectable
    clock) and records it, instead of Mastodon.py sleeping inside a call.
    """
    from mastodon import Mastodon

    get = _secret_of(account)
    return Mastodon(
        access_token=get("MASTODON", "ACCESS_TOKEN"),
        api_base_url=(base_url or get("MASTODON", "BASE_URL") or _channel_settings(config, "mastodon").get("base_url")
                      or MASTODON_DEFAULT_BASE_URL).rstrip("/"),
        ratelimit_method="throw",
        request_timeout=timeout if timeout is not None else _timeout(config, "mastodon", "MASTODON_TIMEOUT"),
        version_check_mode="none",
        # Given, so Mastodon.py does not probe /api/v1/instance inside other calls: when that probe
        # fails (a 5xx, a revoked token) Mastodon.py 2.x recurses until RecursionError.
        mastodon_version=secret("MASTODON_VERSION") or MASTODON_ASSUMED_VERSION,
    )


def bluesky_client(config: Config | None = None, *, base_url: str | None = None, login: bool = True,
                   account: AccountRef | None = None) -> atproto.Client:
    """An atproto client for ``BLUESKY_BASE_URL``, logged in with ``BLUESKY_HANDLE`` and an app password.

    An app password (Settings > App passwords) rather than the account password, so the team
    can revoke the tool's access without locking anyone out.
    """
    from atproto import Client

    get = _secret_of(account)
    url = (base_url or get("BLUESKY", "BASE_URL") or _channel_settings(config, "bluesky").get("base_url")
           or BLUESKY_DEFAULT_BASE_URL).rstrip("/")
    client = Client(base_url=url)
    handle, password = get("BLUESKY", "HANDLE"), get("BLUESKY", "APP_PASSWORD")
    if account is not None and not account.has_own("HANDLE") and account.has_own("APP_PASSWORD"):
        handle = account.handle  # the account's own password goes with the account's own handle
    if login and handle and password:
        client.login(handle, password, fetch_bsky_profile=False)
    return client

