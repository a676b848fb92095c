"""Private means private (issue 13, failure 5): "ask privately" is a direct message, and the answer comes back.

Real tweepy and Mastodon.py against local stand-ins (the X emulator's DM endpoints follow
``openapi.json``); assertions are on what the servers received.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from doorstep.pipeline import Pipeline
from doorstep.store import Store
from listeners.config import XSettings
from listeners.x import XListener
from standins.x_emulator import XEmulator
from responders.outbox import Outbox, get_message, queue_reply
from responders.private import plan_private, queue_private
from test_accounts import NOW as NOW_T, add_order, emulator, later, send_all, two_brand_config  # noqa: F401 - fixture
from test_outbox import make_case

from conftest import KeywordClassifier

ORDER = "ORD-2026-001021"


def test_ask_privately_before_the_fix_went_out_as_a_public_post(store: Store, emulator: XEmulator) -> None:
    """Failure 5 as reported: the console queued the ask-privately text with queue_reply, a public reply."""
    config = two_brand_config()
    case_id = make_case(store, config, emulator, text="@FettleCare where is my head torch?", handle="sienna_l")
    queue_reply(store, config, case_id, "@sienna_l please DM us your order number", "agent")
    send_all(store, config)
    assert len(emulator.posted) == 1 and emulator.dms == []  # public: what the fix must never do for "privately"


def test_ask_privately_is_an_x_direct_message_and_the_private_answer_confirms_the_link(
        store: Store, emulator: XEmulator) -> None:
    config = two_brand_config()
    add_order(store, ORDER, "Fettle Outdoor", customer="C7", handle="someone_else")
    # The public post names an order whose customer is not the author: linked, but unconfirmed.
    case_id = make_case(store, config, emulator, text=f"@FettleCare where is {ORDER}?", handle="sienna_l")
    case = store.get_case(case_id)
    assert case is not None and case.order_number == ORDER and not case.link_confirmed

    plan = plan_private(store, config, case_id)
    assert plan.channel == "x_dm" and plan.account == "FettleCare" and plan.recipient == "@sienna_l"
    assert "from @FettleCare" in plan.describe() and "private" in plan.describe()
    message = queue_private(store, config, case_id, "Hi, could you send us the e-mail address you ordered with?",
                            "agent", plan=plan)
    send_all(store, config)
    sent = get_message(store, message.id)  # type: ignore[arg-type]
    assert sent.status == "sent", sent.last_error
    # What X received: one direct message from @FettleCare to @sienna_l, and nothing public.
    assert emulator.posted == []
    (dm,) = emulator.dms
    assert (dm["sender"], dm["recipient"]) == ("FettleCare", "sienna_l") and dm["id"] == sent.external_id
    assert sent.account == "FettleCare"

    # The customer answers privately; the DM listener (FettleCare's own token) brings it into the case.
    emulator.send_dm("sienna_l", "FettleCare", f"It's my order {ORDER}, sienna@example.com")
    listener = XListener(store, config, Pipeline(store, config, KeywordClassifier()),
                         settings=XSettings(accounts=["FettleCare"], direct_messages=True))
    result = listener.poll_once()
    assert result.ok, result.errors
    answers = [m for m in store.mentions_for_case(case_id) if m.channel == "x_dm"]
    assert [m.text for m in answers] == [f"It's my order {ORDER}, sienna@example.com"]
    assert answers[0].account == "FettleCare" and answers[0].author_handle == "sienna_l"
    case = store.get_case(case_id)
    assert case is not None and case.link_confirmed and case.order_number == ORDER
    # Our own DM is not read back as a customer message, and a second round adds nothing.
    assert listener.poll_once().stored == 0
    assert len([m for m in store.mentions_for_case(case_id) if m.channel == "x_dm"]) == 1


def test_dm_endpoints_need_a_user_token(emulator: XEmulator) -> None:
    import tweepy

    app_only = tweepy.Client(bearer_token="app-x_bearer_token")
    from doorstep.clients import mount_base_url

    mount_base_url(app_only.session, emulator.base_url)
    with pytest.raises(tweepy.Forbidden):
        app_only.get_direct_message_events(user_auth=False)


def test_a_reply_on_the_dm_channel_stays_private(store: Store, emulator: XEmulator) -> None:
    """An agent answering the customer's DM answers by DM, from the same account."""
    config = two_brand_config()
    case_id = make_case(store, config, emulator, text="@FettleCare torch broken", handle="kit")
    queue_private(store, config, case_id, "Could you DM us your order number?", "agent")
    send_all(store, config)
    # The customer answers a moment after our question. (Stored times are whole seconds, and a post stamped
    # ahead of our clock stands at the time we received it: so our question is put a few seconds back.)
    from datetime import datetime, timezone

    from doorstep.store import iso

    store.db.execute("update outbound_messages set created_at = ? where case_id = ?",
                     [iso(datetime.now(timezone.utc) - timedelta(seconds=5)), case_id])
    emulator.send_dm("kit", "FettleCare", "sure, it's ORD-2026-000999", created_at=datetime.now(timezone.utc))
    XListener(store, config, Pipeline(store, config, KeywordClassifier()),
              settings=XSettings(accounts=["FettleCare"], direct_messages=True)).poll_once()
    message = queue_reply(store, config, case_id, "Thanks, checking now", "agent", channel="x_dm")
    Outbox(store, config, now=later(10)).send_due()
    assert get_message(store, message.id).status == "sent"  # type: ignore[arg-type]
    assert emulator.posted == [] and [d["sender"] for d in emulator.dms] == ["FettleCare", "kit", "FettleCare"]


# ----------------------------------------------------------------------------- Mastodon
class MastodonInstance:
    """A Mastodon instance for two brand accounts (one token each): statuses with visibility, notifications."""

    def __init__(self, tokens: dict[str, str]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.tokens = tokens  # token -> acct
        self.statuses: list[dict] = []  # what was posted, with "by" (the token's account) and "visibility"
        self.notifications: dict[str, list[dict]] = {acct: [] for acct in tokens.values()}
        self._n = 110000000000000000
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: object) -> None:
                import json

                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _who(self) -> str | None:
                return fake.tokens.get((self.headers.get("Authorization") or "").removeprefix("Bearer "))

            def do_GET(self) -> None:  # noqa: N802
                who = self._who()
                if who is None:
                    return self._send(401, {"error": "The access token is invalid"})
                if self.path.startswith("/api/v1/accounts/verify_credentials"):
                    return self._send(200, fake.account(who))
                if self.path.startswith("/api/v1/notifications"):
                    return self._send(200, list(reversed(fake.notifications[who])))
                if self.path.startswith("/api/v1/accounts/"):
                    return self._send(200, [s for s in reversed(fake.statuses) if s["account"]["acct"] == who])
                return self._send(404, {"error": "Record not found"})

            def do_POST(self) -> None:  # noqa: N802
                import json
                from urllib.parse import parse_qs

                who = self._who()
                if who is None:
                    return self._send(401, {"error": "The access token is invalid"})
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = json.loads(body) if body.startswith(b"{") else {k: v[0] for k, v in parse_qs(body.decode()).items()}
                return self._send(200, fake.add(who, form["status"], form.get("visibility") or "public",
                                                form.get("in_reply_to_id")))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def account(self, acct: str) -> dict:
        return {"id": str(abs(hash(acct)) % 10**9), "username": acct.split("@")[0], "acct": acct,
                "display_name": acct, "followers_count": 3}

    def add(self, acct: str, text: str, visibility: str, in_reply_to: str | None = None) -> dict:
        import re

        self._n += 1
        status = {"id": str(self._n), "uri": f"https://example.social/s/{self._n}", "url": None,
                  "created_at": "2026-11-16T10:00:00.000Z", "content": f"<p>{text}</p>",
                  "account": self.account(acct), "in_reply_to_id": in_reply_to, "visibility": visibility,
                  "language": "en", "reblog": None, "spoiler_text": "", "tags": [], "mentions": []}
        self.statuses.append(status)
        for mentioned in re.findall(r"@([\w.]+(?:@[\w.]+)?)", text):
            local = mentioned.split("@")[0].lower()
            for ours in self.notifications:
                if ours.lower() == local:
                    self._n += 1
                    self.notifications[ours].append({"id": str(self._n), "type": "mention", "status": status,
                                                     "account": status["account"],
                                                     "created_at": status["created_at"]})
        return status

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mastodon(monkeypatch: pytest.MonkeyPatch):
    instance = MastodonInstance({"tok-m-fettle": "FettleCare", "tok-m-larkspur": "LarkspurHelp"})
    monkeypatch.setenv("MASTODON_BASE_URL", instance.url)
    monkeypatch.setenv("MASTODON_FETTLECARE_ACCESS_TOKEN", "tok-m-fettle")
    monkeypatch.setenv("MASTODON_LARKSPURHELP_ACCESS_TOKEN", "tok-m-larkspur")
    monkeypatch.delenv("MASTODON_ACCESS_TOKEN", raising=False)
    yield instance
    instance.close()


def mastodon_config():
    config = two_brand_config(channels={"mastodon": {}})
    for brand, handle in ((config.brands[0], "LarkspurHelp"), (config.brands[1], "FettleCare")):
        brand.handles["mastodon"] = handle
    return config


def test_ask_privately_on_mastodon_is_a_direct_status_and_the_answer_joins_the_case(
        store: Store, mastodon: MastodonInstance) -> None:
    from listeners.mastodon import MastodonListener

    config = mastodon_config()
    public = mastodon.add("sienna@other.social", f"@FettleCare where is {ORDER}?", "public")
    listener = MastodonListener(store, config, Pipeline(store, config, KeywordClassifier()))
    assert listener.poll_once().ok
    post = store.mention_by_external_id("mastodon", public["id"])
    assert post is not None and post.account == "FettleCare" and post.case_id is not None
    add_order(store, ORDER, "Fettle Outdoor", customer="C7", handle="someone_else")

    message = queue_private(store, config, post.case_id, "Could you tell us the e-mail you ordered with?", "agent")
    send_all(store, config)
    assert get_message(store, message.id).status == "sent"  # type: ignore[arg-type]
    (ours,) = [s for s in mastodon.statuses if s["account"]["acct"] == "FettleCare"]
    assert ours["visibility"] == "direct" and "@sienna@other.social" in ours["content"]
    assert [s for s in mastodon.statuses if s["visibility"] != "direct" and s["account"]["acct"] != "sienna@other.social"] == []

    # The customer answers with a direct status; it joins the case, privately, and confirms the order.
    mastodon.add("sienna@other.social", f"@FettleCare it's {ORDER}", "direct", in_reply_to=ours["id"])
    assert listener.poll_once().ok
    answer = [m for m in store.mentions_for_case(post.case_id) if m.channel == "mastodon_dm"]
    assert len(answer) == 1 and answer[0].text == f"@FettleCare it's {ORDER}"
    case = store.get_case(post.case_id)
    assert case is not None and case.order_number == ORDER and case.link_confirmed


# ----------------------------------------------------------------------------- Bluesky chat
class BlueskyChat:
    """A PDS with the bsky.chat service: log in, resolve a handle, conversations and messages."""

    def __init__(self, handle: str, did: str) -> None:
        import base64
        import json as _json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        def b64(data: dict) -> str:
            return base64.urlsafe_b64encode(_json.dumps(data).encode()).decode().rstrip("=")

        self.handle, self.did = handle, did
        self.jwt = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'sub': did, 'exp': 4102444800, 'iat': 1700000000, 'scope': 'com.atproto.appPassPrivileged'})}.c2ln"
        self.users = {did: handle}
        self.messages: list[dict] = []  # {"id", "rev", "convo", "sender", "text", "sentAt"}
        self.proxied: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: object) -> None:
                payload = _json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _route(self, body: dict) -> None:
                url = urlsplit(self.path)
                name, q = url.path.removeprefix("/xrpc/"), parse_qs(url.query)
                if name == "com.atproto.server.createSession":
                    return self._send(200, {"accessJwt": fake.jwt, "refreshJwt": fake.jwt, "handle": fake.handle,
                                            "did": fake.did})
                if name.startswith("chat.bsky."):
                    fake.proxied.append(self.headers.get("atproto-proxy") or "")
                    if not (self.headers.get("atproto-proxy") or "").endswith("#bsky_chat"):
                        return self._send(400, {"error": "InvalidRequest", "message": "chat needs the bsky_chat proxy"})
                if name == "com.atproto.identity.resolveHandle":
                    did = next((d for d, h in fake.users.items() if h == q["handle"][0]), None)
                    return self._send(200, {"did": did}) if did else self._send(400, {"error": "InvalidRequest"})
                if name == "chat.bsky.convo.getConvoForMembers":
                    return self._send(200, {"convo": fake.convo(q["members"][0])})
                if name == "chat.bsky.convo.listConvos":
                    others = {m["convo"].split("|")[1] for m in fake.messages}
                    return self._send(200, {"convos": [fake.convo(o) for o in sorted(others)]})
                if name == "chat.bsky.convo.getMessages":
                    items = [fake.view(m) for m in reversed(fake.messages) if m["convo"] == q["convoId"][0]]
                    return self._send(200, {"messages": items})
                if name == "chat.bsky.convo.sendMessage":
                    other = body["convoId"].split("|")[1]
                    return self._send(200, fake.view(fake.add(fake.did, other, body["message"]["text"])))
                return self._send(404, {"error": "MethodNotImplemented", "message": name})

            def do_GET(self) -> None:  # noqa: N802
                self._route({})

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._route(_json.loads(raw) if raw else {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def convo(self, other: str) -> dict:
        return {"id": f"{self.did}|{other}", "rev": "1", "muted": False, "unreadCount": 0,
                "members": [{"did": d, "handle": self.users.get(d, "someone.test")} for d in (self.did, other)]}

    def view(self, m: dict) -> dict:
        return {"$type": "chat.bsky.convo.defs#messageView", "id": m["id"], "rev": m["rev"], "text": m["text"],
                "sender": {"did": m["sender"]}, "sentAt": m["sentAt"]}

    def add(self, sender: str, other: str, text: str) -> dict:
        n = len(self.messages) + 1
        message = {"id": f"msg{n:04d}", "rev": f"rev{n:06d}", "convo": f"{self.did}|{other}", "sender": sender,
                   "text": text, "sentAt": f"2026-11-16T10:{n:02d}:00.000Z"}
        self.messages.append(message)
        return message

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_ask_privately_on_bluesky_is_a_chat_message_and_the_answer_joins_the_case(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from listeners.bluesky import BlueskyListener
    from listeners.config import BlueskySettings

    chat = BlueskyChat("fettleoutdoor.bsky.social", "did:plc:fettle0000000000000000000")
    customer = "did:plc:sienna000000000000000000"
    chat.users[customer] = "sienna.bsky.social"
    try:
        monkeypatch.setenv("BLUESKY_BASE_URL", chat.url)
        monkeypatch.setenv("BLUESKY_FETTLEOUTDOOR_BSKY_SOCIAL_APP_PASSWORD", "app-pass-fettle")
        config = two_brand_config()
        config.brands[1].handles["bluesky"] = "fettleoutdoor.bsky.social"
        add_order(store, ORDER, "Fettle Outdoor", customer="C7", handle="someone_else")
        from doorstep.models import Mention

        Pipeline(store, config, KeywordClassifier()).ingest([Mention(
            channel="bluesky", external_id="at://did:plc:sienna000000000000000000/app.bsky.feed.post/3kaaa",
            text=f"@fettleoutdoor.bsky.social where is {ORDER}?", created_at=NOW_T, author_id=customer,
            author_handle="sienna.bsky.social")])
        case_id = store.mention_by_external_id(
            "bluesky", "at://did:plc:sienna000000000000000000/app.bsky.feed.post/3kaaa").case_id  # type: ignore[union-attr]
        plan = plan_private(store, config, case_id)
        assert (plan.channel, plan.account, plan.recipient) == ("bluesky_dm", "fettleoutdoor.bsky.social", customer)
        message = queue_private(store, config, case_id, "Could you tell us the e-mail you ordered with?", "agent",
                                plan=plan)
        Outbox(store, config).send_due()
        sent = get_message(store, message.id)  # type: ignore[arg-type]
        assert sent.status == "sent", sent.last_error
        assert [(m["sender"], m["text"]) for m in chat.messages] == [
            (chat.did, "Could you tell us the e-mail you ordered with?")]
        assert chat.proxied and all(p.endswith("#bsky_chat") for p in chat.proxied)

        chat.add(customer, customer, f"it's {ORDER}")
        listener = BlueskyListener(store, config, Pipeline(store, config, KeywordClassifier()),
                                   settings=BlueskySettings(notifications=False, direct_messages=True))
        result = listener.poll_once()
        assert result.ok, result.errors
        answers = [m for m in store.mentions_for_case(case_id) if m.channel == "bluesky_dm"]
        assert [m.text for m in answers] == [f"it's {ORDER}"] and answers[0].author_handle == "sienna.bsky.social"
        case = store.get_case(case_id)
        assert case is not None and case.link_confirmed and case.order_number == ORDER
        assert listener.poll_once().stored == 0
        assert listener.own_did == chat.did  # the listener logged in as the brand account
    finally:
        chat.close()


def test_asking_privately_follows_the_one_answer_rule(store: Store, emulator: XEmulator) -> None:
    from responders.outbox import AlreadyAnswered

    config = two_brand_config()
    case_id = make_case(store, config, emulator, text="@FettleCare torch broken", handle="kit")
    queue_reply(store, config, case_id, "@kit so sorry, we're on it", "lead")
    with pytest.raises(AlreadyAnswered, match="lead already answered"):
        queue_private(store, config, case_id, "Could you DM us your order number?", "agent")
    forced = queue_private(store, config, case_id, "Could you DM us your order number?", "agent", force=True)
    assert forced.channel == "x_dm"
    assert any(e.action == "reply.send_anyway" and e.actor == "agent" for e in store.audit_trail(case_id))


# ----------------------------------------------------------------------------- re-sending a direct message
# Before any re-send the outbox asks the channel "is this message already there?". For a direct
# message only what *this* message could have posted counts: ours, in the conversation with its
# customer, created since it was queued, with the text as it was posted (audit 2026-12, finding 4).
ASK = "Could you send us your order number here, please?"


def _send_after_a_503(store: Store, config, emulator: XEmulator, message) -> None:  # noqa: ANN001
    """X refuses the DM's first POST with a 503 (nothing is created); the retry a moment later is the re-send."""
    emulator.inject("503", count=1, path="/2/dm_conversations")
    Outbox(store, config).send_due()
    assert get_message(store, message.id).status == "queued"  # type: ignore[arg-type]
    Outbox(store, config, now=later(10)).send_due()


def test_a_dm_lost_to_a_503_is_sent_again_although_last_weeks_dm_said_the_same(
        store: Store, emulator: XEmulator) -> None:
    config = two_brand_config()
    # Last week: a first complaint, and our DM asking for the order number (delivered, case resolved).
    first_case = make_case(store, config, emulator, text="@LarkspurHelp my cushion never came", handle="olu",
                           created_at=NOW_T - timedelta(days=7))
    first = queue_reply(store, config, first_case, ASK, "ann", channel="x_dm")
    Outbox(store, config).send_due()
    assert get_message(store, first.id).status == "sent"  # type: ignore[arg-type]
    store.db.execute("update cases set status = 'resolved' where id = ?", [first_case])
    # Today: a new case, and the same question by DM. X refuses the first POST (nothing is created).
    case_id = make_case(store, config, emulator, text="@LarkspurHelp now my lamp is missing too", handle="olu")
    message = queue_reply(store, config, case_id, ASK, "bob", channel="x_dm", force=True)
    _send_after_a_503(store, config, emulator, message)

    sent = get_message(store, message.id)  # type: ignore[arg-type]
    # X has two DMs to @olu: last week's, and today's (the re-send), which the message records.
    assert [(d["sender"], d["recipient"], d["text"]) for d in emulator.dms] == [("LarkspurHelp", "olu", ASK)] * 2
    assert sent.status == "sent" and sent.last_error is None
    assert sent.external_id == emulator.dms[1]["id"] != get_message(store, first.id).external_id  # type: ignore[arg-type]


def test_a_dm_that_reached_x_before_the_timeout_is_found_not_sent_twice(
        store: Store, emulator: XEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    config = two_brand_config()
    case_id = make_case(store, config, emulator, text="@LarkspurHelp my lamp is missing", handle="olu")
    message = queue_reply(store, config, case_id, ASK, "bob", channel="x_dm")
    monkeypatch.setenv("X_API_TIMEOUT", "0.2")
    emulator.inject("slow", count=1, path="/2/dm_conversations")  # created, answered after our timeout
    Outbox(store, config).send_due()
    assert get_message(store, message.id).status == "queued"  # type: ignore[arg-type]
    import time

    time.sleep(0.6)  # the emulator has created it by now
    monkeypatch.setenv("X_API_TIMEOUT", "5")
    Outbox(store, config, now=later(10)).send_due()
    sent = get_message(store, message.id)  # type: ignore[arg-type]
    (dm,) = emulator.dms
    assert sent.status == "sent" and sent.external_id == dm["id"]
    assert sent.last_error == "found already posted; not sent again"


def _mastodon_dm_case(store: Store, config, handle: str = "jane@mastodon.social") -> int:  # type: ignore[no-untyped-def]
    return make_case(store, config, channel="mastodon", handle=handle, external_id=f"1099{time_ns()}"[:18],
                     text="@LarkspurHelp where is my parcel?")


def time_ns() -> int:
    import time

    return time.time_ns()


@pytest.fixture
def mastodon_stand_in(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from standins.mastodon import MastodonStandIn

    stand_in = MastodonStandIn()
    with stand_in.server:
        monkeypatch.setenv("MASTODON_BASE_URL", stand_in.server.url)
        monkeypatch.setenv("MASTODON_ACCESS_TOKEN", "token")
        monkeypatch.setenv("MASTODON_TIMEOUT", "0.3")
        yield stand_in


def test_a_mastodon_dm_that_timed_out_after_the_instance_created_it_is_not_posted_again(
        store: Store, mastodon_stand_in) -> None:  # type: ignore[no-untyped-def]
    import time

    from test_outbox import shop_config

    config = shop_config()
    case_id = _mastodon_dm_case(store, config)
    message = queue_reply(store, config, case_id, "Sorry! Could you send us your order number?", "sam",
                          channel="mastodon_dm")
    mastodon_stand_in.server.fail("slow")  # the instance creates the status but answers after our timeout
    Outbox(store, config).send_due()
    assert get_message(store, message.id).status == "queued"  # type: ignore[arg-type]
    time.sleep(1.0)
    Outbox(store, config, now=later(10)).send_due()
    sent = get_message(store, message.id)  # type: ignore[arg-type]
    (status,) = mastodon_stand_in.statuses  # posted once, with the mention that addresses it
    assert status["visibility"] == "direct"
    assert status["content"] == "<p>@jane@mastodon.social Sorry! Could you send us your order number?</p>"
    assert sent.status == "sent" and sent.external_id == status["id"]
    assert sent.last_error == "found already posted; not sent again"


def test_a_mastodon_dm_is_not_taken_for_an_older_one_with_the_same_words(
        store: Store, mastodon_stand_in) -> None:  # type: ignore[no-untyped-def]
    from test_outbox import shop_config

    config = shop_config()
    text = "Sorry! Could you send us your order number?"
    # Last week an agent asked @jane the same from the Mastodon app (no message of ours records it).
    mastodon_stand_in.statuses.append({
        "id": "109000000000000001", "content": f"<p>@jane@mastodon.social {text}</p>", "in_reply_to_id": None,
        "created_at": "2026-11-16T10:00:00.000Z", "mentions": [{"acct": "jane@mastodon.social", "username": "jane"}],
        "account": dict(mastodon_stand_in.accounts["larkspurhelp"]), "visibility": "direct"})
    message = queue_reply(store, config, _mastodon_dm_case(store, config), text, "sam", channel="mastodon_dm")
    mastodon_stand_in.server.fail("503")  # the first POST is refused: nothing is created
    Outbox(store, config).send_due()
    assert get_message(store, message.id).status == "queued"  # type: ignore[arg-type]
    Outbox(store, config, now=later(10)).send_due()
    sent = get_message(store, message.id)  # type: ignore[arg-type]
    assert [s["content"] for s in mastodon_stand_in.statuses] == [f"<p>@jane@mastodon.social {text}</p>"] * 2
    assert sent.status == "sent" and sent.external_id == mastodon_stand_in.statuses[1]["id"] != "109000000000000001"
    assert sent.last_error is None


def test_an_x_dm_is_not_taken_for_an_older_one_with_the_same_words(store: Store, emulator: XEmulator) -> None:
    config = two_brand_config()
    # Last week an agent asked @olu the same from the X app (no message of ours records it).
    emulator.send_dm("LarkspurHelp", "olu", ASK, created_at=NOW_T - timedelta(days=7))
    case_id = make_case(store, config, emulator, text="@LarkspurHelp my lamp is missing", handle="olu")
    message = queue_reply(store, config, case_id, ASK, "bob", channel="x_dm")
    _send_after_a_503(store, config, emulator, message)
    sent = get_message(store, message.id)  # type: ignore[arg-type]
    assert [(d["sender"], d["recipient"], d["text"]) for d in emulator.dms] == [("LarkspurHelp", "olu", ASK)] * 2
    assert sent.status == "sent" and sent.external_id == emulator.dms[1]["id"] and sent.last_error is None


def test_a_mastodon_dm_as_an_instance_renders_it_is_found_before_a_re_send(
        store: Store, mastodon_stand_in) -> None:  # type: ignore[no-untyped-def]
    """A real instance renders the mention as a link to @jane (short name): the check compares the words
    around it, and takes the customer from the status's mentions."""
    import time

    from test_outbox import shop_config

    config = shop_config()
    text = "Sorry! Could you send us your order number?"
    message = queue_reply(store, config, _mastodon_dm_case(store, config), text, "sam", channel="mastodon_dm")
    mastodon_stand_in.server.fail("slow")
    Outbox(store, config).send_due()
    time.sleep(1.0)
    (status,) = mastodon_stand_in.statuses
    status["content"] = ('<p><span class="h-card" translate="no"><a href="https://mastodon.social/@jane" '
                         f'class="u-url mention">@<span>jane</span></a></span> {text}</p>')
    Outbox(store, config, now=later(10)).send_due()
    sent = get_message(store, message.id)  # type: ignore[arg-type]
    assert len(mastodon_stand_in.statuses) == 1
    assert sent.status == "sent" and sent.external_id == status["id"]


def test_no_private_route_says_so_once(store: Store) -> None:
    """Agents audit, 2026-12-06: the case page read "No private route: no private route: …"."""
    from doorstep.models import Case
    from responders.outbox import ReplyRejected

    case_id = store.insert_case(Case(status="new", priority=10, channel="webhook", brand="Larkspur"))
    with pytest.raises(ReplyRejected) as refused:
        plan_private(store, two_brand_config(), case_id)
    assert not str(refused.value).lower().startswith("no private route")
