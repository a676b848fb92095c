"""Per-channel senders used by the outbox, and the per-channel limits checked before queueing.

Each sender has ``send(message) -> external id`` and, where the channel lets us look,
``find_existing(message) -> external id | None``: "did we already post this?". The outbox asks
that before *every* re-send of a message that was attempted before (a crash, a timeout or a
5xx may all have posted it), so a public post never goes out twice. Channels where we cannot
look (SMTP, Slack webhooks) are at-least-once; webhooks carry an ``Idempotency-Key`` header so
the receiver can drop a repeat.

Errors are normalised into :class:`SendError` with ``retryable`` (try again later) and
``retry_after_s`` (what a 429 asked for).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import re
import time
import unicodedata
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import regex

from doorstep.clients import redact
from doorstep.config import AccountRef, Config, secret
from doorstep.models import OutboundMessage

log = logging.getLogger("doorstep.channels")

#: Channels whose replies are public posts (checked for length, URLs and privacy).
PUBLIC_CHANNELS = frozenset({"x", "mastodon", "bluesky"})
#: The private (direct message) channel of each public network: "ask privately" goes there.
DM_CHANNELS = {"x": "x_dm", "mastodon": "mastodon_dm", "bluesky": "bluesky_dm"}
#: The network a channel belongs to (its accounts and credentials): x_dm -> x.
def network_of(channel: str) -> str:
    return channel[: -len("_dm")] if channel.endswith("_dm") else channel

#: Each channel's limit, in the unit :func:`weighted_length` counts. A Mastodon reply or direct message is a
#: status (500, counted with the @mention it is posted with); a Bluesky chat message is at most 1000
#: graphemes (``chat.bsky.convo.defs#messageInput``). X direct messages take 10000 characters: no check.
LIMITS: dict[str, int] = {"x": 280, "mastodon": 500, "mastodon_dm": 500, "bluesky": 300, "bluesky_dm": 1000,
                          "sms": 1600}
#: Limits in UTF-8 bytes besides the graphemes: Bluesky's lexicons cap both (a post, ``app.bsky.feed.post``: 300
#: graphemes and 3000 bytes; a chat message: 1000 and 10000), and text of emoji sequences reaches the bytes first
#: (300 family emoji are 5,400 bytes: Bluesky refuses the post).
BYTE_LIMITS: dict[str, int] = {"bluesky": 3000, "bluesky_dm": 10000}
#: X and Mastodon count every link as 23 characters, whatever its length.
LINK_WEIGHT = 23

# What a link is, as twitter-text (X's counter, and the extractor Mastodon's validator uses) finds it.
#: twitter-text's ``validUrlPrecedingChars``: a link may follow anything but a Latin letter, a digit, @, $ or #
#: (or a character twitter-text calls invalid). A Chinese or Japanese letter right before ``https://`` does
#: not stop X from linking it (reply-counting audit, finding 7: ``\w`` used to).
_NOT_BEFORE_A_LINK = "A-Za-z0-9@\uff20$#\uff03\ufffe\ufeff\uffff"
#: A bare domain may not follow these either (twitter-text's ``invalidUrlWithoutProtocolPrecedingChars``):
#: ``jane_larkspur.com`` or ``a/larkspur.com`` is no link.
_NOT_BEFORE_A_BARE_DOMAIN = _NOT_BEFORE_A_LINK + "_./\\-"
#: A character of a link: not a space, and not Chinese, Japanese or Korean text or punctuation, which
#: twitter-text never takes into a link (so ``https://larkspur.com/track查看`` ends before 查看).
_LINK_CHAR = "[^\\s\u2e80-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]"
#: The last character of a link: twitter-text ends a path or query on a letter, a digit or one of
#: ``+ - = _ # / &``, so a full stop, comma, quote or bracket after a link is text (counted).
_LINK_END = "[0-9a-z\u00c0-\u024f\u0400-\u04ff+=#/&_-]"
_LINK_BODY = f"(?:{_LINK_CHAR}*{_LINK_END})"
#: A link with its scheme: the only kind Mastodon counts as 23 (``extract_url_without_protocol: false``).
_SCHEME_LINK = f"(?<![{_NOT_BEFORE_A_LINK}])https?://{_LINK_BODY}"
_BARE_TLDS = "com|net|org|io|co|uk|co\\.uk|de|fr|eu|ly|me|app|shop|store"
#: Every link X makes: with a scheme, ``www.``, or a bare domain on a known TLD (X links ``ups.com/track``).
URL_RE = re.compile(
    f"(?i){_SCHEME_LINK}|(?<![{_NOT_BEFORE_A_BARE_DOMAIN}])(?:www\\.{_LINK_BODY}|[a-z0-9-]+(?:\\.[a-z0-9-]+)*"
    f"\\.(?:{_BARE_TLDS})(?![0-9a-z@+-])(?:/{_LINK_BODY}?)?)"
)
#: The links Mastodon's ``StatusLengthValidator`` counts as 23: those with ``http://`` or ``https://`` only; a
#: bare domain is counted as the text it is (reply-counting audit, finding 6).
MASTODON_URL_RE = re.compile(f"(?i){_SCHEME_LINK}")
#: A mention as Mastodon finds it (``Account::MENTION_RE``): ``@user`` or ``@user@domain``, not after a
#: letter, ``/`` or ``=`` (an e-mail address or a profile link is no mention). Counted as ``@user``.
MASTODON_MENTION_RE = re.compile(r"(?i)(?<![=/\w])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)(?:@[\w.-]+\w)?")


def mastodon_status_text(recipient: str, text: str) -> str:
    """What a Mastodon reply or direct message to ``recipient`` posts: their @mention first, unless the text
    has it. A direct status reaches only the accounts it mentions, and a public reply notifies only them:
    Mastodon's own app puts the mention in the reply box, the API posts the words as given, so our public
    replies reached nobody's notifications (twobrands audit, F7). The limit check counts this, not the
    agent's words alone. (``console/reply_count.py`` counts the same as the agent types.)"""
    mention = f"@{recipient.strip().lstrip('@')}"
    return text if mention.lower() in text.lower() else f"{mention} {text}"


#: A direct message's text: the same rule (its older name).
mastodon_direct_text = mastodon_status_text


class ReplyRejected(ValueError):
    """The reply cannot be queued as written; ``reason`` is shown to the agent."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SendError(RuntimeError):
    def __init__(self, message: str, *, retryable: bool = True, retry_after_s: float | None = None):
        super().__init__(redact(message))
        self.retryable = retryable
        self.retry_after_s = retry_after_s


def grapheme_count(text: str) -> int:
    """What a person sees as characters (an emoji with skin tone is one): Bluesky's unit."""
    return len(regex.findall(r"\X", text))


#: twitter-text v3: code points in these ranges weigh 1, everything else (CJK, most symbols) 2.
_X_LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
#: A grapheme X counts as one emoji: a pictograph (and its ZWJ sequence), a flag (two regional indicators) or a
#: keycap ("1️⃣": a digit, VS16 and U+20E3).
_EMOJI = regex.compile(r"\p{Extended_Pictographic}|\p{Regional_Indicator}|.\ufe0f?\u20e3")


def x_weighted_length(text: str) -> int:
    """X's own count: links weigh 23, an emoji (even a ZWJ family) 2, CJK characters 2 each."""
    total = 0
    for grapheme in regex.findall(r"\X", unicodedata.normalize("NFC", URL_RE.sub("x" * LINK_WEIGHT, text))):
        if _EMOJI.match(grapheme):
            total += 2
            continue
        for char in grapheme:
            code = ord(char)
            total += 1 if any(low <= code <= high for low, high in _X_LIGHT_RANGES) else 2
    return total


def mastodon_length(text: str) -> int:
    """Mastodon's own count (``StatusLengthValidator``): grapheme clusters, with each link that has its scheme
    as 23 and each mention as its local part (``@jane@mastodon.social`` counts as ``@jane``)."""
    countable = MASTODON_URL_RE.sub("x" * LINK_WEIGHT, text)
    return grapheme_count(MASTODON_MENTION_RE.sub(lambda m: f"@{m.group(1)}", countable))


def weighted_length(channel: str, text: str, *, recipient: str | None = None) -> int:
    """The length ``channel`` counts for ``text``, in the unit of :data:`LIMITS`.

    ``recipient``: the author a Mastodon reply answers or the customer a Mastodon direct message goes to;
    their @mention is posted with the text (:func:`mastodon_status_text`), so it counts (without it, the
    words alone are counted).
    """
    if channel in ("bluesky", "bluesky_dm"):
        return grapheme_count(text)
    if channel == "x":
        return x_weighted_length(text)
    if channel in ("mastodon", "mastodon_dm"):  # grapheme clusters, a link as 23 (languages audit, finding 10)
        return mastodon_length(mastodon_status_text(recipient, text) if recipient else text)
    return len(text)


def check_limits(channel: str, text: str, *, allow_urls: bool = False, recipient: str | None = None) -> None:
    """Refuse what the channel would refuse (or charge extra for) before it reaches the outbox.

    ``recipient``: for a Mastodon reply or direct message, the person whose @mention is posted with the text.
    """
    if not text.strip():
        raise ReplyRejected("the reply is empty")
    limit = LIMITS.get(channel)
    if limit is not None:
        length = weighted_length(channel, text, recipient=recipient)
        if length > limit:
            unit = "characters" if channel in ("x", "sms") else "graphemes"
            sent_with = ""
            if channel in ("mastodon", "mastodon_dm") and recipient and mastodon_status_text(recipient, text) != text:
                sent_with = f" (with the @{recipient.strip().lstrip('@')} it is sent with)"
            raise ReplyRejected(f"{length} {unit} is over the {channel} limit of {limit}{sent_with}; "
                                f"shorten it by {length - limit}")
    byte_limit = BYTE_LIMITS.get(channel)
    if byte_limit is not None and len(text.encode()) > byte_limit:
        size = len(text.encode())
        raise ReplyRejected(f"{size} bytes is over the {channel} limit of {byte_limit} bytes (emoji take up to 4 "
                            f"bytes each, and a combined emoji several); shorten it by {size - byte_limit} bytes")
    if channel == "x" and not allow_urls and URL_RE.search(text):
        raise ReplyRejected(
            f"links are off for X replies ({URL_RE.search(text).group(0)}): on pay-per-use X access a post with a "  # type: ignore[union-attr]
            "URL costs about 13x more. Remove the link or set [responders] allow_urls = true"
        )


def split_subject(text: str, default: str) -> tuple[str, str]:
    """Email-like messages store their subject as a first ``Subject: ...`` line."""
    if text.startswith("Subject: "):
        first, _, rest = text.partition("\n")
        return first[len("Subject: "):].strip(), rest.lstrip("\n")
    return default, text


def _same_text(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        s = html.unescape(re.sub(r"<[^>]+>", " ", s))
        s = URL_RE.sub("<url>", s)  # X rewrites links to t.co
        return " ".join(s.split()).casefold()

    return norm(a) == norm(b)


def _network_error(exc: BaseException) -> SendError:
    return SendError(f"{type(exc).__name__}: {exc}", retryable=True)


#: What to do to send a refused message of this kind again, in the words a failed message shows.
SEND_AGAIN = {"reply": "queue the reply again from the case", "escalation": "escalate the case again"}


def no_longer_ours(network: str, handle: str, kind: str | None = None, why: str | None = None) -> str:
    """The one line that fails a message whose account left doorstep.toml (a handle or address changed,
    the account or its brand removed), with the remedy: a new message from the case is sent from the
    account that answers the case now. ``why``: what else stands in the way (the shared login's account)."""
    label = handle if network == "email" else f"@{handle.lstrip('@')}"
    noun = kind if kind in SEND_AGAIN else "message"
    extra = f" and {why}" if why else ""
    return (f"{label} is no longer one of our {network} accounts in doorstep.toml{extra}, so this {noun} was not "
            f"sent: {SEND_AGAIN.get(kind or '', 'queue it again from the case')} (it then goes from the account that "
            "answers the case now)")


#: The secret suffixes a sender's client is made from, per network (see :func:`credentials_stamp`).
CLIENT_SECRETS: dict[str, tuple[str, ...]] = {
    "x": ("API_KEY", "API_SECRET", "ACCESS_TOKEN", "ACCESS_TOKEN_SECRET", "BEARER_TOKEN"),
    "mastodon": ("ACCESS_TOKEN", "BASE_URL"),
    "bluesky": ("HANDLE", "APP_PASSWORD", "BASE_URL"),
}
#: The same for the channels without brand accounts whose senders keep a client.
SHARED_CLIENT_SECRETS: dict[str, tuple[str, ...]] = {"sms": ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_BASE_URL")}


def credentials_stamp(channel: str, account: AccountRef | None = None) -> str:
    """A digest of the secrets the channel's client for ``account`` is made from, as they are now.

    A worker keeps its senders (and their logged-in clients) for its life; a token rotated or set in
    ``$DOORSTEP_SECRETS_FILE`` after a 401 or a wrong-account failure must be used by the next retry,
    not after a restart. The outbox keys its cache on this digest (never on, or logging, the values).
    """
    network = network_of(channel)
    suffixes = CLIENT_SECRETS.get(network)
    if suffixes is None:
        names = SHARED_CLIENT_SECRETS.get(channel, ())
        values = [secret(name) for name in names]
    elif account is None:
        values = [secret(f"{network.upper()}_{suffix}") for suffix in suffixes]
    else:  # the account's own and the shared name: either one set or changed makes another client
        values = [secret(name) for suffix in suffixes for name in account.secret_names(suffix)]
    if not any(values):
        return ""
    return hashlib.sha256("\x1f".join(v or "" for v in values).encode()).hexdigest()


# ------------------------------------------------------------------ API senders
class _ClientSender:
    """A sender that talks through an API client, made on first use (tests pass their own).

    ``account`` is the brand account the message goes out from; its own credentials make the
    client, and the sender checks who it is logged in as before the first post (a shared or
    misfiled token must never let one brand answer as another).
    """

    #: The secret that logs the account in (its suffix): what the wrong-account error tells to set.
    credential = "ACCESS_TOKEN"

    def __init__(self, config: Config, client: Any = None, account: AccountRef | None = None,
                 former: str | None = None):
        self.config = config
        self._client = client
        self.account = account
        #: The kind of message, when ``account`` is one that left doorstep.toml and only the shared
        #: credentials remain (an old single-account file): they may post only as that very account.
        self.former = former
        self._verified = False

    def _wrong_account(self, actual: str) -> SendError:
        assert self.account is not None
        own, shared = self.account.secret_names(self.credential)
        if self.former is not None:
            return SendError(no_longer_ours(self.account.channel, self.account.handle, self.former,
                                            why=f"the shared {shared} is logged in as {actual}"), retryable=False)
        return SendError(f"the {self.account.channel} credentials for {self.account.label} are logged in as "
                         f"{actual}; set {self.account.label}'s own ({own}...) and retry", retryable=False)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        raise NotImplementedError


# ----------------------------------------------------------------------------- X
class XSender(_ClientSender):
    channel = "x"
    can_check = True

    def __init__(self, config: Config, client: Any = None, account: AccountRef | None = None,
                 former: str | None = None):
        super().__init__(config, client, account, former)
        self._me: str | None = None

    def _make_client(self) -> Any:
        from doorstep.clients import missing_x_user_keys, x_client

        # Missing user keys are a named, permanent error, not tweepy's TypeError ("Consumer key
        # must be string or bytes, not NoneType") with a traceback and a retry that cannot succeed.
        missing = missing_x_user_keys(self.account)
        if missing:
            who = self.account.label if self.account is not None else "X"
            raise SendError(f"cannot post to X as {who}: {', '.join(missing)} not set (the account's user keys; "
                            "set them in the environment or $DOORSTEP_SECRETS_FILE, then `doorstep outbox retry ID`)",
                            retryable=False)
        return x_client(self.config, account=self.account)

    def verify_account(self) -> None:
        """Refuse to post unless the credentials are the account's own (GET /2/users/me)."""
        if self.account is None or self._verified:
            return
        me = self._call(lambda: self.client.get_me(user_auth=True))
        username = str(me.data.username if hasattr(me.data, "username") else me.data["username"])
        if username.lower() != self.account.handle.lower():
            raise self._wrong_account(f"@{username}")
        self._me = str(me.data.id if hasattr(me.data, "id") else me.data["id"])
        self._verified = True

    def _call(self, fn: Callable[[], Any]) -> Any:
        import requests
        import tweepy

        try:
            return fn()
        except tweepy.TooManyRequests as exc:
            reset = exc.response.headers.get("x-rate-limit-reset") if exc.response is not None else None
            wait = max(1.0, float(reset) - time.time()) if reset else None
            raise SendError(f"X 429 rate limited: {exc}", retryable=True, retry_after_s=wait) from None
        except tweepy.TwitterServerError as exc:
            raise SendError(f"X server error: {exc}", retryable=True) from None
        except tweepy.Forbidden as exc:
            # "duplicate content" means it is already there: retry, and the check finds it.
            duplicate = "duplicate" in str(exc).lower()
            raise SendError(f"X 403: {exc}", retryable=duplicate) from None
        except tweepy.HTTPException as exc:
            raise SendError(f"X {exc.response.status_code if exc.response is not None else ''}: {exc}",
                            retryable=False) from None
        except (requests.RequestException, OSError, ValueError) as exc:
            # ValueError: a truncated JSON body (the post may still have been created).
            raise _network_error(exc) from None

    def send(self, message: OutboundMessage) -> str:
        self.verify_account()
        kwargs: dict[str, Any] = {"text": message.text, "user_auth": True}
        if message.in_reply_to:
            kwargs["in_reply_to_tweet_id"] = message.in_reply_to
        response = self._call(lambda: self.client.create_tweet(**kwargs))
        return str(response.data["id"])

    def my_id(self) -> str:
        if self._me is None:
            me = self._call(lambda: self.client.get_me(user_auth=True))
            self._me = str(me.data.id)
        return self._me

    def find_existing(self, message: OutboundMessage) -> str | None:
        """Our post replying to the same tweet with the same text, among our recent posts."""
        self.verify_account()
        uid = self.my_id()
        token = None
        for _ in range(5):
            kwargs: dict[str, Any] = {"max_results": 100, "tweet_fields": ["referenced_tweets", "created_at"],
                                      "user_auth": True}
            if message.in_reply_to and message.in_reply_to.isdigit():
                kwargs["since_id"] = message.in_reply_to  # our reply is newer than what it answers
            if token:
                kwargs["pagination_token"] = token
            page = self._call(lambda: self.client.get_users_tweets(uid, **kwargs))
            for tweet in page.data or []:
                refs = {str(r.id) for r in (tweet.referenced_tweets or []) if r.type == "replied_to"}
                if (not message.in_reply_to or message.in_reply_to in refs) and _same_text(tweet.text, message.text):
                    return str(tweet.id)
            token = (page.meta or {}).get("next_token")
            if not token:
                return None
        return None


class XDirectMessageSender(XSender):
    """A private message on X (``POST /2/dm_conversations/with/:participant_id/messages``).

    ``target`` is the customer's X user id; nothing is posted publicly.
    """

    channel = "x_dm"

    def send(self, message: OutboundMessage) -> str:
        self.verify_account()
        participant = self._participant(message)
        response = self._call(lambda: self.client.create_direct_message(
            participant_id=participant, text=message.text, user_auth=True))
        data = response.data if hasattr(response, "data") else response["data"]
        return str(data["dm_event_id"])

    def _participant(self, message: OutboundMessage) -> str:
        """The customer's user id (``target``), looked up when only their ``@handle`` is known."""
        target = (message.target or "").strip()
        if target.isdigit():
            return target
        if not target.startswith("@"):
            raise SendError("X direct message without the customer's user id or handle", retryable=False)
        user = self._call(lambda: self.client.get_user(username=target[1:], user_auth=True))
        if not user.data:
            raise SendError(f"X has no user {target}", retryable=False)
        return str(user.data.id)

    #: How far X's clock may be behind ours: a DM stamped this much before the message was queued
    #: can still be its own. (Ours with the same words sent before that are another message's.)
    clock_skew = timedelta(minutes=2)

    def find_existing(self, message: OutboundMessage) -> str | None:
        """The DM this message posted, if any: ours, in the conversation with its customer, created
        since the message was queued, with its text.

        An older DM of ours with the same words (last week's "could you send us your order
        number?") is another message's: taking it for this one recorded a DM lost to a 503 as sent.
        """
        self.verify_account()
        uid = self.my_id()
        participant = self._participant(message)
        since = message.created_at - self.clock_skew if message.created_at is not None else None
        page = self._call(lambda: self.client.get_direct_message_events(
            participant_id=participant, dm_event_fields=["sender_id", "text", "created_at"], max_results=100,
            user_auth=True))
        for event in page.data or []:
            sender = self._field(event, "sender_id")
            event_id = str(self._field(event, "id"))
            if str(sender) != uid or not _same_text(self._field(event, "text") or "", message.text):
                continue
            if since is not None:
                created = self._created_at(self._field(event, "created_at"), event_id)
                if created is None or created < since:
                    continue
            return event_id
        return None

    @staticmethod
    def _field(event: Any, name: str) -> Any:
        return getattr(event, name, None) if not isinstance(event, dict) else event.get(name)

    @staticmethod
    def _created_at(value: Any, event_id: str) -> Any:
        """When X created the event: its ``created_at``, else the time in its (snowflake) id."""
        from datetime import datetime, timezone

        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                value = None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        if event_id.isdigit() and int(event_id) >> 22:
            return datetime.fromtimestamp(((int(event_id) >> 22) + 1288834974657) / 1000, timezone.utc)
        return None


# ---------------------------------------------------------------------- Mastodon
class MastodonSender(_ClientSender):
    channel = "mastodon"
    can_check = True

    def _make_client(self) -> Any:
        from doorstep.clients import mastodon_client

        return mastodon_client(self.config, account=self.account)

    def verify_account(self) -> dict[str, Any]:
        me = self._call(lambda: self.client.me())
        if self.account is not None and not self._verified:
            acct = str(me.get("acct") or me.get("username") or "")
            if acct.lower().split("@")[0] != self.account.handle.lower().split("@")[0]:
                raise self._wrong_account(f"@{acct}")
            self._verified = True
        return me

    def _call(self, fn: Callable[[], Any]) -> Any:
        import mastodon

        try:
            return fn()
        except mastodon.MastodonRatelimitError as exc:
            raise SendError(f"Mastodon rate limited: {exc}", retry_after_s=60.0) from None
        except (mastodon.MastodonNetworkError, mastodon.MastodonServerError) as exc:
            raise _network_error(exc) from None
        except mastodon.MastodonAPIError as exc:
            raise SendError(f"Mastodon refused: {exc}", retryable=False) from None
        except OSError as exc:
            raise _network_error(exc) from None

    #: Mastodon's visibility of what this sender posts ("direct": only the mentioned people see it).
    visibility: str | None = None
    #: A mention as the instance renders it (a link of class "mention") or as we wrote it (@user@host).
    _MENTION_LINK = re.compile(r"<a\s[^>]*class=\"[^\"]*\bmention\b[^\"]*\"[^>]*>.*?</a>", re.S | re.I)
    _MENTION_TEXT = re.compile(r"(?<![\w@])@[\w.-]+(?:@[\w-]+(?:\.[\w-]+)+)?")

    def _posted_text(self, message: OutboundMessage) -> str:
        """The status text as it is posted: a public reply starts with the @mention of the author it answers
        (``target``), unless the text has it (:func:`mastodon_status_text`): Mastodon notifies only the
        accounts a status mentions, so a reply without it reached nobody (twobrands audit, F7).

        A reply queued before the limit counted the mention, with no room left for it, goes as written:
        the instance would refuse the whole status for the mention we add (the log says so)."""
        if not message.target or not message.in_reply_to:
            return message.text
        posted = mastodon_status_text(message.target, message.text)
        if posted != message.text and mastodon_length(posted) > LIMITS["mastodon"] >= mastodon_length(message.text):
            log.warning("mastodon: reply %s posted without @%s: with it, it is over %s graphemes", message.id,
                        message.target.lstrip("@"), LIMITS["mastodon"])
            return message.text
        return posted

    def _in_reply_to(self, message: OutboundMessage) -> str | None:
        """The status ours is posted in reply to: the post the message answers."""
        return message.in_reply_to

    def send(self, message: OutboundMessage) -> str:
        if self.account is not None:
            self.verify_account()
        text, in_reply_to = self._posted_text(message), self._in_reply_to(message)
        extra = {"visibility": self.visibility} if self.visibility else {}
        # Mastodon honours Idempotency-Key itself: a repeat within an hour returns the first post.
        status = self._call(lambda: self.client.status_post(
            text, in_reply_to_id=in_reply_to, idempotency_key=message.idempotency_key, **extra))
        return str(status["id"])

    def find_existing(self, message: OutboundMessage) -> str | None:
        """Our status answering the same post with the text as it was posted (its @mention included)."""
        me = self.verify_account()
        posted, in_reply_to = self._posted_text(message), self._in_reply_to(message)
        statuses = self._call(lambda: self.client.account_statuses(me["id"], since_id=in_reply_to, limit=40))
        for status in statuses or []:
            if (not in_reply_to or str(status.get("in_reply_to_id")) == str(in_reply_to)) and \
                    self._same_words(status, posted, message.text):
                return str(status["id"])
        return None

    @classmethod
    def _same_words(cls, status: dict[str, Any], posted: str, written: str) -> bool:
        """Whether ``status`` says ``posted``: an instance renders a mention as a link to the account
        ("@<span>jane</span>") and lists the accounts, so with mentions listed the words around them are
        compared; a status posted before replies had their mention may say ``written`` alone."""
        content = status.get("content") or ""
        if any(isinstance(m, dict) for m in status.get("mentions") or []):
            return _same_text(cls._without_mentions(content), cls._without_mentions(posted))
        return _same_text(content, posted) or _same_text(content, written)

    @classmethod
    def _without_mentions(cls, text: str) -> str:
        return cls._MENTION_TEXT.sub(" ", cls._MENTION_LINK.sub(" ", text))


class MastodonDirectSender(MastodonSender):
    """A private message on Mastodon: a status with ``visibility="direct"`` mentioning only the customer."""

    channel = "mastodon_dm"
    visibility = "direct"
    #: How far the instance's clock may be behind ours (see XDirectMessageSender.clock_skew).
    clock_skew = timedelta(minutes=2)

    @staticmethod
    def _recipient(message: OutboundMessage) -> str:
        """The customer's account (``jane@mastodon.social``): a direct status reaches whom it mentions."""
        recipient = (message.target or "").strip().lstrip("@")
        if not recipient:
            raise SendError("Mastodon direct message without the customer's handle", retryable=False)
        return recipient

    def _posted_text(self, message: OutboundMessage) -> str:
        """The status text as it is posted: the customer's @mention first, unless the text has it (the
        same text the limit check counted: :func:`mastodon_status_text`)."""
        return mastodon_status_text(self._recipient(message), message.text)

    def _in_reply_to(self, message: OutboundMessage) -> str | None:
        """None: a direct message is posted on its own. Its ``in_reply_to`` names the post it answers (for the
        one-answer check, responders/private.py), which may be the customer's public status: threaded under
        it, our private words would hang in their public conversation."""
        return None

    def find_existing(self, message: OutboundMessage) -> str | None:
        """The direct status this message posted, if any: ours, to its customer, created since the message
        was queued, with the text as it was posted (the @mention included).

        Comparing the stored text (no mention) never matched, so a DM that timed out after the
        instance created it was posted again; and an older DM with the same words is another message's.
        """
        me = self.verify_account()
        posted = self._posted_text(message)
        recipient = self._recipient(message).casefold()
        since = message.created_at - self.clock_skew if message.created_at is not None else None
        # Posted on its own (no since_id: it answers no status of the instance's, see _in_reply_to).
        statuses = self._call(lambda: self.client.account_statuses(me["id"], since_id=None, limit=40))
        for status in statuses or []:
            if (status.get("visibility") or "direct") != "direct":
                continue
            if since is not None:
                created = self._created_at(status.get("created_at"))
                if created is None or created < since:
                    continue
            content = status.get("content") or ""
            mentioned = [str(m.get("acct") or "").casefold() for m in status.get("mentions") or []
                         if isinstance(m, dict)]
            if mentioned:
                # As an instance renders it: the mention is a link to the account, the accounts are listed.
                to_customer = any(a == recipient or ("@" not in a and a == recipient.split("@")[0]) for a in mentioned)
                same = _same_text(self._without_mentions(content), self._without_mentions(posted))
            else:
                to_customer, same = True, _same_text(content, posted)  # the @mention is in the compared text
            if to_customer and same:
                return str(status["id"])
        return None

    @staticmethod
    def _created_at(value: Any) -> Any:
        from datetime import datetime, timezone

        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return None


# ----------------------------------------------------------------------- Bluesky
class BlueskySender(_ClientSender):
    channel = "bluesky"
    can_check = True
    credential = "APP_PASSWORD"

    def _make_client(self) -> Any:
        from doorstep.clients import bluesky_client

        return self._call(lambda: bluesky_client(self.config, account=self.account))

    def _call(self, fn: Callable[[], Any]) -> Any:
        from atproto import exceptions

        try:
            return fn()
        except exceptions.NetworkError as exc:
            raise _network_error(exc) from None
        except (exceptions.UnauthorizedError, exceptions.LoginRequiredError) as exc:
            # A rejected app password is permanent: fail at once, naming what to set (no traceback, no
            # retries logging in with it again). UnauthorizedError is no RequestException.
            raise SendError(self._rejected_login(exc), retryable=False) from None
        except exceptions.RequestErrorBase as exc:  # RequestException, BadRequestError: HTTP answers
            status = getattr(getattr(exc, "response", None), "status_code", 0) or 0
            raise SendError(f"Bluesky {status}: {exc}", retryable=status == 429 or status >= 500) from None
        except OSError as exc:
            raise _network_error(exc) from None

    def _rejected_login(self, exc: Exception) -> str:
        """One line naming the secret to set: the account's own app password (never its value)."""
        if self.account is None:
            who, names = "Bluesky", "BLUESKY_HANDLE / BLUESKY_APP_PASSWORD"
        else:
            who, names = self.account.label, self.account.secret_names("APP_PASSWORD")[0]
            if self.former is not None:  # only the shared password is left for an account that left
                return no_longer_ours("bluesky", self.account.handle, self.former,
                                      why=f"the shared BLUESKY_APP_PASSWORD does not log in as {who} ({exc})")
        return (f"Bluesky did not log in {who} ({exc}): set {names} (an app password of that account) in the "
                "environment or $DOORSTEP_SECRETS_FILE, then `doorstep outbox retry ID`")

    def _ref(self, uri: str) -> Any:
        from atproto import models

        posts = self._call(lambda: self.client.get_posts([uri])).posts
        if not posts:
            raise SendError(f"Bluesky post {uri} no longer exists", retryable=False)
        post = posts[0]
        parent = models.ComAtprotoRepoStrongRef.Main(uri=post.uri, cid=post.cid)
        reply = getattr(post.record, "reply", None)
        root = models.ComAtprotoRepoStrongRef.Main(uri=reply.root.uri, cid=reply.root.cid) if reply else parent
        return models.AppBskyFeedPost.ReplyRef(parent=parent, root=root)

    def _repo(self) -> str:
        """Our DID: from the profile when fetched, else from the session (login without profile)."""
        client = self.client
        did = getattr(getattr(client, "me", None), "did", None) or getattr(getattr(client, "_session", None), "did", None)
        session_handle = getattr(getattr(client, "_session", None), "handle", None)
        if self.account is not None and session_handle and session_handle.lower() != self.account.handle.lower():
            raise self._wrong_account(session_handle)
        repo = did or (self.account.secret("HANDLE") if self.account else secret("BLUESKY_HANDLE"))
        if not repo:
            raise SendError("Bluesky is not logged in (BLUESKY_HANDLE / BLUESKY_APP_PASSWORD)", retryable=False)
        return str(repo)

    def send(self, message: OutboundMessage) -> str:
        reply_to = self._ref(message.in_reply_to) if message.in_reply_to else None
        repo = self._repo()
        response = self._call(lambda: self.client.send_post(text=message.text, reply_to=reply_to, profile_identify=repo))
        return str(response.uri)

    def find_existing(self, message: OutboundMessage) -> str | None:
        actor = self._repo()
        feed = self._call(lambda: self.client.get_author_feed(actor=actor, limit=50)).feed
        for item in feed:
            record = item.post.record
            reply = getattr(record, "reply", None)
            parent = reply.parent.uri if reply else None
            if parent == message.in_reply_to and _same_text(record.text, message.text):
                return str(item.post.uri)
        return None


class BlueskyChatSender(BlueskySender):
    """A private message on Bluesky: chat (``chat.bsky.convo.*`` through the bsky.chat proxy).

    ``target`` is the customer's DID (or ``@handle``, resolved first). The app password needs
    the "allow access to your direct messages" permission.
    """

    channel = "bluesky_dm"

    def _chat(self) -> Any:
        if getattr(self, "_chat_client", None) is None:
            self._chat_client = self.client.with_bsky_chat_proxy()
        return self._chat_client.chat.bsky.convo

    def _convo_id(self, message: OutboundMessage) -> str:
        target = (message.target or "").strip()
        if not target:
            raise SendError("Bluesky chat message without the customer's DID or handle", retryable=False)
        if target.startswith("@"):
            target = str(self._call(lambda: self.client.resolve_handle(target[1:])).did)
        convo = self._call(lambda: self._chat().get_convo_for_members({"members": [target]})).convo
        return str(convo.id)

    def send(self, message: OutboundMessage) -> str:
        self._repo()  # logged in, as the right account
        convo_id = self._convo_id(message)
        sent = self._call(lambda: self._chat().send_message({"convo_id": convo_id, "message": {"text": message.text}}))
        return str(sent.id)

    def find_existing(self, message: OutboundMessage) -> str | None:
        me = self._repo()
        convo_id = self._convo_id(message)
        page = self._call(lambda: self._chat().get_messages({"convo_id": convo_id, "limit": 50}))
        for item in page.messages:
            sender = getattr(getattr(item, "sender", None), "did", None)
            if sender == me and _same_text(getattr(item, "text", "") or "", message.text):
                return str(item.id)
        return None


# ------------------------------------------------------------------------- email
def message_id_for(message: OutboundMessage) -> str:
    """A stable Message-ID per outbound message: a re-send after a crash carries the same id.

    Its domain is that of the address the message goes From: the brand's own e-mail account
    (``message.account``, as :class:`EmailSender` sends it) or else the shared ``SMTP_FROM``. It
    depends on the message alone, because responders/dialogue.py stores it when the question is
    asked and the answer's In-Reply-To is looked up by it.
    """
    from responders.email import mail_domain

    digest = hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:24]
    sender = message.account if message.channel == "email" and message.account else secret("SMTP_FROM")
    return f"<doorstep.{digest}@{mail_domain(sender)}>"


class EmailSender:
    channel = "email"
    can_check = False

    def __init__(self, config: Config, account: AccountRef | None = None, former: str | None = None):
        self.config = config
        #: The brand's e-mail account: its address is the From of the message, and its
        #: ``<PREFIX>_USER``/``<PREFIX>_PASSWORD`` log in to the SMTP server (else the shared SMTP_*).
        self.account = account
        #: The kind of message, when ``account`` is an address that left doorstep.toml and no brand
        #: address is left (an old single-account file): only SMTP_FROM remains, and it may send the
        #: message only where it is that very address.
        self.former = former

    def send(self, message: OutboundMessage) -> str:
        from responders.email import EmailError, send_email

        if not message.target:
            raise SendError("email message without a recipient", retryable=False)
        subject, body = split_subject(message.text, "Your message to us")
        headers = {"Message-ID": message_id_for(message)}
        if message.in_reply_to:
            parent = message.in_reply_to if message.in_reply_to.startswith("<") else f"<{message.in_reply_to}>"
            headers.update({"In-Reply-To": parent, "References": parent})
            if not subject.lower().startswith("re:"):
                subject = f"Re: {subject}"
        account = self.account
        if account is not None and self.former is not None:
            from email.utils import parseaddr

            shared = parseaddr(secret("SMTP_FROM") or "")[1]
            if shared.lower() != parseaddr(account.handle)[1].lower():
                raise SendError(no_longer_ours("email", account.handle, self.former,
                                               why=f"SMTP_FROM is {shared or 'not set'}"), retryable=False)
            account = None  # SMTP_FROM is that very address: the shared mailbox sends it
        try:
            # From the brand's address, logged in to its own mailbox (shared SMTP_* where it has none).
            return send_email(self.config, [a.strip() for a in message.target.split(",")], subject, body,
                              headers=headers, account=account)
        except EmailError as exc:
            raise SendError(str(exc), retryable=exc.retryable) from None


# --------------------------------------------------------------------------- SMS
def twilio_client(config: Config | None = None) -> Any:
    """A Twilio REST client; ``TWILIO_BASE_URL`` points it at a local stand-in (the API domain's base_url)."""
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    client = Client(secret("TWILIO_ACCOUNT_SID"), secret("TWILIO_AUTH_TOKEN"),
                    http_client=TwilioHttpClient(timeout=float(secret("TWILIO_TIMEOUT") or 30)))
    base = secret("TWILIO_BASE_URL")
    if base:
        client.api.base_url = base.rstrip("/")
    return client


class SmsSender(_ClientSender):
    channel = "sms"
    can_check = True

    def _make_client(self) -> Any:
        return twilio_client(self.config)

    def _call(self, fn: Callable[[], Any]) -> Any:
        from twilio.base.exceptions import TwilioException, TwilioRestException

        try:
            return fn()
        except TwilioRestException as exc:
            raise SendError(f"Twilio {exc.status}: {exc.msg}", retryable=exc.status == 429 or exc.status >= 500) from None
        except TwilioException as exc:
            raise _network_error(exc) from None
        except OSError as exc:
            raise _network_error(exc) from None

    def _from(self) -> str:
        sender = secret("TWILIO_FROM")
        if not sender:
            raise SendError("TWILIO_FROM is not set", retryable=False)
        return sender

    def send(self, message: OutboundMessage) -> str:
        if not message.target:
            raise SendError("SMS without a phone number", retryable=False)
        sms = self._call(lambda: self.client.messages.create(to=message.target, from_=self._from(), body=message.text))
        return str(sms.sid)

    def find_existing(self, message: OutboundMessage) -> str | None:
        after = (message.created_at - timedelta(minutes=5)) if message.created_at else None
        found = self._call(lambda: self.client.messages.list(to=message.target, from_=self._from(),
                                                             date_sent_after=after, limit=50))
        for sms in found:
            if _same_text(sms.body or "", message.text):
                return str(sms.sid)
        return None


# ------------------------------------------------------- Slack, webhooks, Apprise
def slack_escape(text: str) -> str:
    """``&``, ``<`` and ``>`` as Slack's entities: the three characters Slack parses for mentions
    (``<!channel>``, ``<@U123>``) and links (``<url|words>``), so a customer's words can never notify
    a channel or hide a link behind words (alerts audit: a post's ``<!channel>`` pinged everyone)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(body: str, subject: str = "") -> dict[str, Any]:
    """What a Slack incoming webhook is sent: the text escaped, with formatting off (``mrkdwn``
    false), so a customer's ``*...*``, ``_..._`` or ``~...~`` is shown as written, not as bold,
    italics or strike-through. The subject stays the first line between asterisks (shown as they
    are), which is how the demo's sink and Sent page find a Slack message's title. No Slack message
    of ours carries a link of ours in ``<url|words>`` form (courier-page links go by e-mail and webhook
    only), so nothing of ours is lost by escaping."""
    text = f"*{slack_escape(subject)}*\n{slack_escape(body)}" if subject else slack_escape(body)
    return {"text": text, "mrkdwn": False}


class SlackSender:
    channel = "slack"
    can_check = False

    def __init__(self, config: Config):
        self.config = config

    def send(self, message: OutboundMessage) -> str:
        from slack_sdk.webhook import WebhookClient

        from responders.config import resolve

        url = resolve(message.target)
        if not url:
            raise SendError(f"Slack webhook {message.target} is not set", retryable=False)
        subject, body = split_subject(message.text, "")
        try:
            # send_dict: WebhookClient.send() has no ``mrkdwn`` argument.
            response = WebhookClient(url, timeout=int(secret("SLACK_TIMEOUT") or 30)).send_dict(
                slack_payload(body, subject))
        except Exception as exc:  # noqa: BLE001 - urllib raises many kinds; all mean "try again"
            raise SendError(f"Slack: {type(exc).__name__}", retryable=True) from None
        if response.status_code != 200:
            raise SendError(f"Slack {response.status_code}: {response.body[:200]}",
                            retryable=response.status_code == 429 or response.status_code >= 500)
        return f"slack:{message.idempotency_key}"


def sign_webhook(secret_value: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` HMAC of ``timestamp.body``: the receiver recomputes it to trust the payload."""
    mac = hmac.new(secret_value.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


class WebhookSender:
    channel = "webhook"
    can_check = False

    def __init__(self, config: Config):
        self.config = config

    def send(self, message: OutboundMessage) -> str:
        import requests

        from responders.config import resolve, responders_settings

        url = resolve(message.target)
        if not url:
            raise SendError(f"webhook {message.target} is not set", retryable=False)
        key = resolve(responders_settings(self.config).escalation.webhook_secret)
        if not key:
            raise SendError("webhook signing secret is not set (COURIER_WEBHOOK_SECRET)", retryable=False)
        body = message.text.encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.idempotency_key,
                   "X-Doorstep-Timestamp": timestamp, "X-Doorstep-Signature": sign_webhook(key, timestamp, body)}
        try:
            response = requests.post(url, data=body, headers=headers, timeout=float(secret("WEBHOOK_TIMEOUT") or 30))
        except requests.RequestException as exc:
            raise SendError(f"webhook: {type(exc).__name__}", retryable=True) from None
        if response.status_code >= 300:
            raise SendError(f"webhook {response.status_code}",
                            retryable=response.status_code in (408, 409, 425, 429) or response.status_code >= 500)
        return f"webhook:{message.idempotency_key}"


class AppriseSender:
    channel = "apprise"
    can_check = False

    def __init__(self, config: Config):
        self.config = config

    def send(self, message: OutboundMessage) -> str:
        import apprise

        from responders.config import resolve

        url = resolve(message.target)
        if not url:
            raise SendError(f"Apprise URL {message.target} is not set", retryable=False)
        notifier = apprise.Apprise()
        if not notifier.add(url):
            raise SendError(f"not a valid Apprise URL: {message.target}", retryable=False)
        subject, body = split_subject(message.text, "Doorstep")
        if not notifier.notify(body=body, title=subject):
            raise SendError("Apprise: the service did not accept the notification", retryable=True)
        return f"apprise:{message.idempotency_key}"


SENDERS: dict[str, type] = {
    "x": XSender,
    "x_dm": XDirectMessageSender,
    "mastodon": MastodonSender,
    "mastodon_dm": MastodonDirectSender,
    "bluesky": BlueskySender,
    "bluesky_dm": BlueskyChatSender,
    "email": EmailSender,
    "sms": SmsSender,
    "slack": SlackSender,
    "webhook": WebhookSender,
    "apprise": AppriseSender,
}


def make_sender(channel: str, config: Config, account: AccountRef | None = None, *, former: str | None = None) -> Any:
    """The sender for ``channel``, logged in as ``account`` (None: the channel's shared credentials).

    ``former`` (the message's kind): ``account`` left doorstep.toml and the network has no brand
    account left, so it is an :func:`former_account` on the shared credentials; the sender checks
    that they log in as it before anything is sent.
    """
    cls = SENDERS.get(channel)
    if cls is None:
        raise SendError(f"no sender for channel {channel!r}", retryable=False)
    if account is not None and channel in {*DM_CHANNELS.values(), *PUBLIC_CHANNELS, "email"}:
        return cls(config, account=account, former=former)
    return cls(config)


def former_account(network: str, handle: str) -> AccountRef:
    """An account that is no longer in doorstep.toml, as the shared credentials of ``network`` would be
    it (``MASTODON_ACCESS_TOKEN``, ``SMTP_FROM``...): the senders verify who those log in as (README,
    "a sender checks who its credentials log in as") and refuse when it is anyone else."""
    from doorstep.config import SECRET_STEMS

    return AccountRef(brand="", channel=network, handle=handle.lstrip("@"), prefix=SECRET_STEMS[network])


def webhook_payload(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)
