"""Accounts per brand: a reply goes out from the account the customer wrote to (issue 13, failure 1).

Real tweepy against the X emulator, which acts as a different user for each access token; the
assertions are on what the emulator recorded (which account created each post), never on what
the outbox believes it sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from doorstep.config import Config, brand_accounts, parse_config
from doorstep.models import Customer, Order, Shipment, TrackingEvent
from doorstep.store import Store
from standins.x_emulator import XEmulator
from responders.accounts import AccountChoiceNeeded
from responders.outbox import Outbox, ReplyRejected, get_message, queue_reply
from test_outbox import NOW, later, make_case

TOKENS = {"tok-larkspur": {"username": "LarkspurHelp"}, "tok-fettle": {"username": "FettleCare"}}


def two_brand_config(**extra) -> Config:
    return parse_config({
        "timezone": "Europe/London",
        "brands": [
            {"name": "Larkspur Home", "handles": {"x": "LarkspurHelp"}, "keywords": ["larkspur"],
             "accounts": {"x": {"secrets": "LARKSPUR_X"}}},
            {"name": "Fettle Outdoor", "handles": {"x": "FettleCare"}, "keywords": ["fettle"],
             "accounts": {"x": {"handle": "FettleCare", "secrets": "FETTLE_X"}}},
            {"name": "Quiet Goods", "keywords": ["quietgoods"]},  # no X account at all
        ],
        "couriers": [{"name": "UPS", "handles": {"x": "UPSHelp"}, "tracking_formats": ["ups"]}],
        **extra,
    })


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[XEmulator]:
    with XEmulator(accounts=TOKENS) as em:
        monkeypatch.setenv("X_API_BASE_URL", em.base_url)
        monkeypatch.setenv("X_API_TIMEOUT", "5")
        # One developer app (shared consumer keys), one user token per brand account.
        for name in ("X_BEARER_TOKEN", "X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN_SECRET"):
            monkeypatch.setenv(name, f"app-{name.lower()}")
        monkeypatch.setenv("LARKSPUR_X_ACCESS_TOKEN", "tok-larkspur")
        monkeypatch.setenv("FETTLE_X_ACCESS_TOKEN", "tok-fettle")
        monkeypatch.delenv("X_ACCESS_TOKEN", raising=False)
        yield em


def add_order(store: Store, number: str, brand: str, customer: str = "C9", handle: str = "sam") -> Order:
    store.upsert_customers([Customer(id=customer, name="Sam Pole", email="sam@example.com", handles={"x": handle})])
    tracking = "1Z999AA10123456784"
    order = Order(number=number, customer_id=customer, placed_at=NOW - timedelta(days=4), brand=brand,
                  items=[{"name": "Head torch", "quantity": 1}], total=30.0,
                  shipments=[Shipment(tracking_number=tracking, order_number=number, courier="UPS",
                                      events=[TrackingEvent(tracking_number=tracking, time=NOW - timedelta(days=1),
                                                            status="in_transit", location="Leeds")])])
    store.upsert_orders([order])
    store.upsert_shipment(order.shipments[0])
    return order


def send_all(store: Store, config: Config) -> None:
    Outbox(store, config).send_due()
    Outbox(store, config, now=later(5)).send_due()


def test_old_handles_only_config_still_makes_one_account_per_brand_and_channel() -> None:
    config = parse_config({"brands": [{"name": "Shop", "handles": {"x": "ShopHelp", "mastodon": "shophelp"},
                                       "email": "care@shop.example"}]})
    accounts = {(a.channel, a.handle, a.prefix) for a in brand_accounts(config)}
    assert accounts == {("x", "ShopHelp", "X_SHOPHELP"), ("mastodon", "shophelp", "MASTODON_SHOPHELP"),
                        ("email", "care@shop.example", "SMTP_CARE_SHOP_EXAMPLE")}


def test_each_brand_answers_from_its_own_account(store: Store, emulator: XEmulator) -> None:
    """Failure 1: one set of X credentials served every brand, so @LarkspurHelp answered a @FettleCare post."""
    config = two_brand_config()
    fettle_case = make_case(store, config, emulator, text="@FettleCare my head torch stopped working", handle="sienna_l")
    larkspur_case = make_case(store, config, emulator, text="@LarkspurHelp my cushion never came", handle="olu")
    to_fettle = queue_reply(store, config, fettle_case, "@sienna_l sorry! Could you DM us?", "agent")
    to_larkspur = queue_reply(store, config, larkspur_case, "@olu sorry! Could you DM us?", "lead")
    assert (to_fettle.account, to_larkspur.account) == ("FettleCare", "LarkspurHelp")
    send_all(store, config)
    by_text = {p["text"]: p for p in emulator.posted}
    assert by_text["@sienna_l sorry! Could you DM us?"]["account"] == "FettleCare"
    assert by_text["@olu sorry! Could you DM us?"]["account"] == "LarkspurHelp"
    fettle_post = store.mentions_for_case(fettle_case)[0].external_id
    assert by_text["@sienna_l sorry! Could you DM us?"]["reply"]["in_reply_to_tweet_id"] == fettle_post
    assert get_message(store, to_fettle.id).account == "FettleCare"  # type: ignore[arg-type]


def test_a_merged_case_answers_each_post_from_the_brand_it_was_written_to(store: Store, emulator: XEmulator) -> None:
    config = two_brand_config()
    case_id = make_case(store, config, emulator, text="@FettleCare my head torch is broken", handle="sienna_l")
    emulator.add_post({"text": "@LarkspurHelp and where is my UPS parcel?", "username": "sienna_l",
                       "created_at": (NOW + timedelta(minutes=5)).isoformat()})
    from doorstep.models import Mention
    from doorstep.pipeline import Pipeline

    from conftest import KeywordClassifier

    newest = emulator.posts[0]
    Pipeline(store, config, KeywordClassifier()).ingest([Mention(
        channel="x", external_id=newest["id"], text=newest["text"], created_at=NOW + timedelta(minutes=5),
        author_handle="sienna_l")])
    # A post to the other brand opens a case of its own (one brand per case); the agent merges the two.
    other = store.mention_by_external_id("x", newest["id"]).case_id  # type: ignore[union-attr]
    assert other != case_id
    from doorstep.regroup import merge_cases

    merge_cases(store, config, case_id, store.get_case(case_id).version, other,  # type: ignore[union-attr]
                store.get_case(other).version, "agent")  # type: ignore[union-attr]
    assert len(store.mentions_for_case(case_id)) == 2  # the author's two posts now share one case
    message = queue_reply(store, config, case_id, "@sienna_l we're on it", "agent")
    send_all(store, config)
    (posted,) = emulator.posted
    # Whatever post the reply answers, it goes out from the account that post was written to.
    answered = store.mention_by_external_id("x", posted["reply"]["in_reply_to_tweet_id"])
    expected = "LarkspurHelp" if "@larkspurhelp" in answered.text.lower() else "FettleCare"  # type: ignore[union-attr]
    assert posted["account"] == expected == message.account


def test_a_post_to_both_brands_makes_the_agent_choose(store: Store, emulator: XEmulator) -> None:
    config = two_brand_config()
    case_id = make_case(store, config, emulator, text="@FettleCare @LarkspurHelp which of you sent this?", handle="kit")
    with pytest.raises(AccountChoiceNeeded) as refused:
        queue_reply(store, config, case_id, "@kit looking now", "agent")
    assert set(refused.value.choices) == {"FettleCare", "LarkspurHelp"}
    assert not emulator.posted
    message = queue_reply(store, config, case_id, "@kit looking now", "agent", account="@FettleCare")
    send_all(store, config)
    assert [p["account"] for p in emulator.posted] == ["FettleCare"] and message.account == "FettleCare"


def test_another_brands_account_is_refused(store: Store, emulator: XEmulator) -> None:
    config = two_brand_config()
    case_id = make_case(store, config, emulator, text="@FettleCare torch broken", handle="kit")
    with pytest.raises(ReplyRejected, match="another brand"):
        queue_reply(store, config, case_id, "@kit sorry", "agent", account="LarkspurHelp")


def test_courier_page_post_is_answered_by_the_brand_that_owns_the_order(store: Store, emulator: XEmulator) -> None:
    config = two_brand_config()
    order = add_order(store, "ORD-2026-001021", "Fettle Outdoor")
    case_id = make_case(store, config, emulator, text="@UPSHelp parcel 1Z999AA10123456784 is stuck", handle="sam",
                        order=order)
    message = queue_reply(store, config, case_id, "@sam sorry, we're chasing UPS", "agent")
    send_all(store, config)
    assert message.account == "FettleCare" and [p["account"] for p in emulator.posted] == ["FettleCare"]


def test_a_post_that_names_a_brand_is_answered_by_that_brand_not_the_orders(store: Store, emulator: XEmulator) -> None:
    """Two-brand browser audit: a post naming Larkspur Home (no @handle) whose author's linked order was Fettle's
    was answered by @FettleCare while the case read "Larkspur Home". The order's brand decides only for a post
    that names no brand (a post on a courier's page), as README says."""
    from doorstep.linking import override_link

    config = two_brand_config()
    case_id = make_case(store, config, emulator, text="Larkspur, UPS says my parcel was delivered, it was not",
                        handle="sam")
    add_order(store, "ORD-2026-001023", "Fettle Outdoor")  # the author's own order, linked and verified
    override_link(store, case_id, store.get_case(case_id).version, "agent",  # type: ignore[union-attr]
                  order_number="ORD-2026-001023", verified_how="asked by DM")
    assert store.get_case(case_id).brand == "Larkspur Home"  # type: ignore[union-attr]
    message = queue_reply(store, config, case_id, "@sam sorry, we're chasing UPS", "agent")
    send_all(store, config)
    assert message.account == "LarkspurHelp" and [p["account"] for p in emulator.posted] == ["LarkspurHelp"]


def test_courier_page_post_of_a_brand_without_an_account_is_not_answered(store: Store, emulator: XEmulator) -> None:
    config = two_brand_config()
    order = add_order(store, "ORD-2026-001022", "Quiet Goods")
    case_id = make_case(store, config, emulator, text="@UPSHelp parcel 1Z999AA10123456784 is stuck", handle="sam",
                        order=order)
    with pytest.raises(ReplyRejected, match="Quiet Goods has no x account"):
        queue_reply(store, config, case_id, "@sam sorry", "agent")
    # Nor when the agent picks another brand's account (outbound audit, 2026-12-06: @FettleCare answered).
    with pytest.raises(ReplyRejected, match="Quiet Goods has no x account"):
        queue_reply(store, config, case_id, "@sam sorry, we're chasing UPS", "agent", account="@FettleCare")
    send_all(store, config)
    assert not emulator.posted


def test_shared_credentials_of_another_brand_never_post(store: Store, emulator: XEmulator,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An old shared X_ACCESS_TOKEN (it is @LarkspurHelp's) must not answer a @FettleCare post."""
    monkeypatch.delenv("FETTLE_X_ACCESS_TOKEN")
    monkeypatch.setenv("X_ACCESS_TOKEN", "tok-larkspur")
    config = two_brand_config()
    case_id = make_case(store, config, emulator, text="@FettleCare torch broken", handle="kit")
    message = queue_reply(store, config, case_id, "@kit sorry", "agent")
    send_all(store, config)
    failed = get_message(store, message.id)  # type: ignore[arg-type]
    assert failed.status == "failed" and "logged in as @LarkspurHelp" in (failed.last_error or "")
    assert "FETTLE_X_ACCESS_TOKEN" in (failed.last_error or "") and "tok-" not in (failed.last_error or "")
    assert emulator.posted == []


@pytest.mark.parametrize("unset", ["X_API_KEY", "LARKSPUR_X_ACCESS_TOKEN"])
def test_missing_user_keys_fail_the_message_naming_them_without_a_traceback(
        store: Store, emulator: XEmulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        unset: str) -> None:
    """Before: `doorstep outbox send` (and the worker) without X user keys printed tweepy's
    traceback ("TypeError: Consumer key must be string or bytes, not NoneType") and paused the
    lane, retrying a message that could never go (found walking the README, issue 18)."""
    import logging

    monkeypatch.delenv(unset)
    config = two_brand_config()
    case_id = make_case(store, config, emulator, text="@LarkspurHelp my cushion never came", handle="olu")
    message = queue_reply(store, config, case_id, "@olu sorry! Could you DM us?", "agent")
    with caplog.at_level(logging.WARNING):
        send_all(store, config)
    failed = get_message(store, message.id)  # type: ignore[arg-type]
    assert failed.status == "failed", failed
    assert unset in (failed.last_error or "") and "@LarkspurHelp" in (failed.last_error or "")
    assert "TypeError" not in (failed.last_error or "") and not [r for r in caplog.records if r.exc_info]
    assert emulator.posted == []


def test_each_account_is_polled_with_its_own_token_and_its_usage_is_kept(store: Store, emulator: XEmulator,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from doorstep.accounts import account_usage
    from doorstep.pipeline import Pipeline
    from listeners.x import XListener

    from conftest import KeywordClassifier

    monkeypatch.setenv("FETTLE_X_BEARER_TOKEN", "bearer-fettle")
    monkeypatch.setenv("LARKSPUR_X_BEARER_TOKEN", "bearer-larkspur")
    config = two_brand_config(channels={"x": {"queries": ["larkspur OR fettle"],
                                              "accounts": ["FettleCare", "LarkspurHelp"]}})
    for i in range(3):
        emulator.add_post({"text": f"@FettleCare torch {i}", "username": f"walker{i}"})
    emulator.add_post({"text": "@LarkspurHelp cushion", "username": "olu"})
    listener = XListener(store, config, Pipeline(store, config, KeywordClassifier()))
    result = listener.poll_once()
    assert result.ok, result.errors
    fettle_id, larkspur_id = emulator.user("FettleCare")["id"], emulator.user("LarkspurHelp")["id"]  # type: ignore[index]
    bearer = {path: token for _, path, _, token in emulator.auth_log}
    assert bearer[f"/2/users/{fettle_id}/mentions"] == "bearer-fettle"
    assert bearer[f"/2/users/{larkspur_id}/mentions"] == "bearer-larkspur"
    assert bearer["/2/tweets/search/recent"] == "app-x_bearer_token"  # searches are the app's, not an account's
    fettle, larkspur = account_usage(store, "x", "FettleCare"), account_usage(store, "x", "LarkspurHelp")
    assert (fettle["reads"], larkspur["reads"]) == (3, 1)
    assert int(fettle["rate"]["remaining"]) < int(fettle["rate"]["limit"])  # the account's own window
    # Mentions arrive tagged with the account they reached (which then answers them), unless a
    # search found them first (then the @-mention in the text says which account answers).
    tagged = {r["author_handle"]: r["account"] for r in store.rows("select author_handle, account from mentions")}
    assert tagged["olu"] in ("LarkspurHelp", None) and set(tagged.values()) - {None} <= {"FettleCare", "LarkspurHelp"}


def test_an_accounts_read_budget_stops_its_polling_visibly(store: Store, emulator: XEmulator) -> None:
    from doorstep.accounts import record_account_usage
    from doorstep.pipeline import Pipeline
    from listeners.x import XListener

    from conftest import KeywordClassifier

    config = two_brand_config(channels={"x": {"accounts": ["FettleCare"]}})
    config.brands[1].accounts["x"].max_reads_per_day = 10
    record_account_usage(store, "x", "FettleCare", reads=10)
    result = XListener(store, config, Pipeline(store, config, KeywordClassifier())).poll_once()
    assert not result.ok and any("read budget of @FettleCare" in e for e in result.errors)


# ------------------------------------------------------------------ e-mail from the brand's own mailbox
def email_brand_config(**extra) -> Config:
    """Both brands answer by e-mail from their own address; Fettle's mailbox has its own login."""
    return parse_config({
        "timezone": "Europe/London",
        "brands": [
            {"name": "Larkspur Home", "handles": {"x": "LarkspurHelp"}, "email": "care@larkspur.test",
             "accounts": {"x": {"secrets": "LARKSPUR_X"}}},
            {"name": "Fettle Outdoor", "handles": {"x": "FettleCare"}, "email": "care@fettle.test",
             "accounts": {"x": {"secrets": "FETTLE_X"}, "email": {"secrets": "FETTLE_SMTP"}}},
        ],
        "couriers": [{"name": "UPS", "handles": {"x": "UPSHelp"}, "tracking_formats": ["ups"]}],
        "responders": {"followup": {"after_hours": 24}},
        **extra,
    })


class LoginSink:
    """The SMTP stand-in with AUTH: the mail it took, and the login of the session that sent each one."""

    def __init__(self) -> None:
        from standins.smtp import SmtpSink

        self.sink = SmtpSink()
        self.logins: dict[int, str] = {}  # session id -> login
        self.mail: list[tuple[Any, str | None]] = []

        outer = self

        class Handler(SmtpSink):
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                answer = await outer.sink.handle_DATA(server, session, envelope)
                outer.mail.append((outer.sink.messages[-1], outer.logins.get(id(session))))
                return answer

        self.handler = Handler()

    def authenticator(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        self.logins[id(session)] = auth_data.login.decode()
        return AuthResult(success=True)

    def sent(self) -> list[tuple[str, str, str | None]]:
        """(From, Subject, SMTP login) of every delivered mail."""
        return [(str(m["From"]), str(m["Subject"]), login) for m, login in self.mail]


@pytest.fixture
def smtp_auth(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoginSink]:
    from aiosmtpd.controller import Controller
    from standins.recording import free_port

    sink = LoginSink()
    port = free_port()
    controller = Controller(sink.handler, hostname="127.0.0.1", port=port, authenticator=sink.authenticator,
                            auth_require_tls=False)
    controller.start()
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    monkeypatch.setenv("SMTP_TIMEOUT", "5")
    # The shop-wide mailbox is Larkspur's; Fettle has its own (README "Accounts per brand": <PREFIX>_USER).
    monkeypatch.setenv("SMTP_FROM", "care@larkspur.test")
    monkeypatch.setenv("SMTP_USER", "larkspur-mailbox")
    monkeypatch.setenv("SMTP_PASSWORD", "pw-larkspur")
    monkeypatch.setenv("FETTLE_SMTP_USER", "fettle-mailbox")
    monkeypatch.setenv("FETTLE_SMTP_PASSWORD", "pw-fettle")
    yield sink
    controller.stop()


def _fettle_case_asked_on_x(store: Store, config: Config, emulator: XEmulator) -> int:
    """A confirmed Fettle case: our X reply (from @FettleCare) asked something and got no answer."""
    from doorstep.store import iso

    order = add_order(store, "ORD-2026-001021", "Fettle Outdoor")
    case_id = make_case(store, config, emulator, text="@FettleCare where is my head torch?", handle="sam",
                        order=order, created_at=NOW - timedelta(hours=1))
    reply = queue_reply(store, config, case_id, "@sam sorry! Is there a safe place to leave it?", "agent")
    Outbox(store, config).send_due()
    assert get_message(store, reply.id).status == "sent"  # type: ignore[arg-type]
    assert [p["account"] for p in emulator.posted] == ["FettleCare"]
    store.db.execute("update outbound_messages set sent_at = ? where id = ?", [iso(NOW), reply.id])
    return case_id


def test_every_email_of_a_brand_goes_from_its_address_and_logs_in_to_its_own_mailbox(
        store: Store, emulator: XEmulator, smtp_auth: LoginSink, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit (outbound) finding 2: the follow-up went From the shop-wide SMTP_FROM (Larkspur's address),
    and every e-mail logged in with the shared SMTP_USER (Larkspur's mailbox), never FETTLE_SMTP_USER."""
    from responders.followup import run_followups

    monkeypatch.setenv("X_ACCESS_TOKEN", "tok-larkspur")  # an old shared token: finding 3 is not in the way here
    config = email_brand_config()
    case_id = _fettle_case_asked_on_x(store, config, emulator)
    agent_mail = queue_reply(store, config, case_id, "Hello Sam, we are on it.", "agent", channel="email", force=True)
    Outbox(store, config).send_due()
    at = NOW + timedelta(hours=26)
    [follow_up] = run_followups(store, config, at)
    Outbox(store, config, now=lambda: at).send_due()
    assert smtp_auth.sent() == [
        ("care@fettle.test", "Your message about order ORD-2026-001021", "fettle-mailbox"),
        ("care@fettle.test", "About your order ORD-2026-001021", "fettle-mailbox"),
    ]
    assert get_message(store, agent_mail.id).status == "sent"  # type: ignore[arg-type]
    assert get_message(store, follow_up).status == "sent"
    assert get_message(store, follow_up).account == "care@fettle.test"  # shown on the case


def test_a_brand_without_its_own_mailbox_login_uses_the_shared_one(store: Store, emulator: XEmulator,
                                                                   smtp_auth: LoginSink) -> None:
    """Larkspur's e-mail account has no LARKSPUR SMTP secrets: the shared SMTP_USER logs in, From is its address."""
    config = email_brand_config()
    order = add_order(store, "ORD-2026-000007", "Larkspur Home", customer="C7", handle="olu")
    case_id = make_case(store, config, emulator, text="@LarkspurHelp my cushion never came", handle="olu", order=order)
    message = queue_reply(store, config, case_id, "Hello, we are on it.", "agent", channel="email")
    assert message.account == "care@larkspur.test"
    send_all(store, config)
    assert smtp_auth.sent() == [("care@larkspur.test", "Your message about order ORD-2026-000007", "larkspur-mailbox")]


def test_a_dialogue_question_goes_from_the_case_brands_mailbox(store: Store, emulator: XEmulator,
                                                               smtp_auth: LoginSink) -> None:
    """Finding 2, responders/dialogue.py: a question was queued with no account (shop-wide From and login)."""
    from responders.dialogue import ask

    config = email_brand_config()
    order = add_order(store, "ORD-2026-001021", "Fettle Outdoor")
    case_id = make_case(store, config, emulator, text="@FettleCare where is my head torch?", handle="sam", order=order)
    question = ask(store, config, store.get_case(case_id), "redeliver", channels=["email"], actor="t",  # type: ignore[arg-type]
                   kind="outreach", key="fettle-question", now=NOW, not_before=NOW)
    assert question is not None and get_message(store, question.message_id).account == "care@fettle.test"  # type: ignore[arg-type]
    Outbox(store, config, now=lambda: NOW).send_due()  # Monday 10:00 in London: outside quiet hours
    [(sender, subject, login)] = smtp_auth.sent()
    assert (sender, login) == ("care@fettle.test", "fettle-mailbox") and "ORD-2026-001021" in subject


def test_a_follow_up_that_says_we_replied_is_checked_with_the_replys_own_x_account(
        store: Store, emulator: XEmulator, smtp_auth: LoginSink) -> None:
    """Audit (outbound) finding 3: with per-brand X tokens and no shared X_ACCESS_TOKEN (this file's
    setup), the pre-send check that our reply still exists used the shared token, failed, and cancelled
    every "we replied" follow-up."""
    from responders.followup import run_followups

    config = email_brand_config()
    case_id = _fettle_case_asked_on_x(store, config, emulator)
    reply = next(m for m in store.outbound_for_case(case_id) if m.kind == "reply")
    at = NOW + timedelta(hours=26)
    [follow_up] = run_followups(store, config, at)
    Outbox(store, config, now=lambda: at).send_due()
    message = get_message(store, follow_up)
    assert message.status == "sent", message.last_error
    [(sender, subject, _)] = smtp_auth.sent()
    assert sender == "care@fettle.test" and subject == "About your order ORD-2026-001021"
    assert "we replied to you on X" in smtp_auth.mail[0][0].get_payload(decode=True).decode()
    # The existence check asked X as the account that posted the reply.
    assert ("GET", f"/2/tweets/{reply.external_id}", "FettleCare", None) in emulator.auth_log
