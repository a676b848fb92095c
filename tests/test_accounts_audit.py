"""Audit (accounts over time): which of our accounts a message goes out from once doorstep.toml changes.

Every assertion is on what the stand-in servers received (the X emulator, the Mastodon and Bluesky
stand-ins, the SMTP server with AUTH): which account posted, From which address and mailbox login,
and how many times; never on what the outbox believes it sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from doorstep.config import Config, parse_config
from doorstep.store import Store
from responders.outbox import Outbox, ReplyRejected, get_message, queue_reply, retry
from standins.x_emulator import XEmulator
from test_accounts import TOKENS, LoginSink, add_order, emulator, smtp_auth  # noqa: F401 - fixtures
from test_outbox import later, make_case


def _config(*brands: dict[str, Any], **extra: Any) -> Config:
    return parse_config({
        "timezone": "Europe/London",
        "brands": list(brands),
        "couriers": [{"name": "UPS", "handles": {"x": "UPSHelp"}, "tracking_formats": ["ups"],
                      "escalation_email": "claims@ups.test"}],
        **extra,
    })


def larkspur(**accounts: Any) -> dict[str, Any]:
    """Larkspur Home with the given accounts (channel -> secrets prefix), handles to match."""
    handles = {c: "LarkspurHelp" for c in accounts if c != "email"}
    brand: dict[str, Any] = {"name": "Larkspur Home", "handles": handles, "keywords": ["larkspur"],
                             "accounts": {c: {"secrets": p} for c, p in accounts.items()}}
    if "email" in accounts:
        brand["email"] = "care@larkspur.test"
    return brand


def fettle(name: str = "Fettle Outdoor", handle: str = "FettleCare", address: str | None = "care@fettle.test",
           **accounts: Any) -> dict[str, Any]:
    """Fettle Outdoor with the given accounts (channel -> secrets prefix) and e-mail ``address``."""
    handles = {c: (handle if c != "bluesky" else "fettleoutdoor.bsky.social") for c in accounts if c != "email"}
    brand: dict[str, Any] = {"name": name, "handles": handles, "keywords": ["fettle"],
                             "accounts": {c: {"secrets": p} for c, p in accounts.items()}}
    if address is not None:
        brand["email"] = address
    return brand


def send(store: Store, config: Config, outbox: Outbox | None = None) -> None:
    (outbox or Outbox(store, config, now=later(5))).send_due()


# ------------------------------------------------------------------ finding 1: the last account leaves
@pytest.fixture
def mastodon(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from standins.mastodon import MastodonStandIn

    stand_in = MastodonStandIn({"tok-m-lark": "LarkspurHelp", "tok-m-fettle": "FettleCare"})
    with stand_in.server:
        monkeypatch.setenv("MASTODON_BASE_URL", stand_in.server.url)
        monkeypatch.setenv("MASTODON_TIMEOUT", "5")
        monkeypatch.setenv("FETTLE_MASTODON_ACCESS_TOKEN", "tok-m-fettle")
        monkeypatch.setenv("MASTODON_ACCESS_TOKEN", "tok-m-lark")  # the old single-account token is Larkspur's
        yield stand_in


def _fettle_mastodon_reply(store: Store) -> tuple[int, Config]:
    """A reply queued from @FettleCare on Mastodon, while Fettle's Mastodon account is configured."""
    before = _config(larkspur(x="LARKSPUR_X"), fettle(mastodon="FETTLE_MASTODON"))
    case_id = make_case(store, before, channel="mastodon", handle="james@mastodon.social",
                        external_id="117676259999750569", text="@FettleCare where is my tent?")
    message = queue_reply(store, before, case_id, "Hi James, checking with the courier now.", "agent")
    assert message.account == "FettleCare"
    return message.id, before  # type: ignore[return-value]


@pytest.mark.parametrize("change", ["account dropped", "brand removed"])
def test_a_reply_whose_account_left_is_never_posted_from_the_shared_token_of_another_brand(
        store: Store, mastodon: Any, change: str) -> None:
    """Before: with no brand account left on Mastodon, the outbox fell back to MASTODON_ACCESS_TOKEN
    unverified, and @LarkspurHelp posted the reply recorded "from @FettleCare"."""
    message_id, _ = _fettle_mastodon_reply(store)
    after = _config(larkspur(x="LARKSPUR_X"), fettle(x="FETTLE_X")) if change == "account dropped" else \
        _config(larkspur(x="LARKSPUR_X"))
    send(store, after)
    assert mastodon.statuses == []  # nothing reached the instance, from any account
    failed = get_message(store, message_id)
    assert failed.status == "failed" and failed.attempts == 1
    assert "@FettleCare is no longer one of our mastodon accounts" in (failed.last_error or "")
    assert "queue the reply again from the case" in (failed.last_error or "")
    assert "tok-m" not in (failed.last_error or "")


def test_the_shared_token_may_post_a_reply_only_as_the_account_it_was_recorded_from(
        store: Store, mastodon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's single-account fallback still works where the shared token is that very account."""
    message_id, _ = _fettle_mastodon_reply(store)
    monkeypatch.setenv("MASTODON_ACCESS_TOKEN", "tok-m-fettle")
    send(store, _config(larkspur(x="LARKSPUR_X"), fettle(x="FETTLE_X")))
    assert [s["account"]["acct"] for s in mastodon.statuses] == ["FettleCare"]
    assert get_message(store, message_id).status == "sent"


def test_an_x_reply_whose_account_left_is_not_posted_by_the_shared_x_token(
        store: Store, emulator: XEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_ACCESS_TOKEN", "tok-larkspur")  # the shared token is @LarkspurHelp's
    before = _config(larkspur(mastodon="LARKSPUR_MASTODON"), fettle(x="FETTLE_X"))
    case_id = make_case(store, before, emulator, text="@FettleCare my stove is late", handle="oliver_k")
    message = queue_reply(store, before, case_id, "Sorry about the wait, we are looking into it.", "agent")
    assert message.account == "FettleCare"
    send(store, _config(larkspur(mastodon="LARKSPUR_MASTODON"), fettle(mastodon="FETTLE_MASTODON")))
    assert emulator.posted == []
    assert not [a for a in emulator.auth_log if a[0] == "POST"]
    failed = get_message(store, message.id)  # type: ignore[arg-type]
    assert failed.status == "failed" and "@FettleCare is no longer one of our x accounts" in (failed.last_error or "")


# ------------------------------------------------------------------ finding 2: e-mail From another brand
def _fettle_email_case(store: Store, emulator: XEmulator, config: Config) -> int:
    order = add_order(store, "ORD-2026-001231", "Fettle Outdoor")
    return make_case(store, config, emulator, text="@FettleCare where is my tent?", handle="sam", order=order)


def test_a_renamed_brands_customer_mail_is_refused_not_sent_from_another_brands_address(
        store: Store, emulator: XEmulator, smtp_auth: LoginSink) -> None:
    """Before: after `name = "Fettle Outdoor"` became "Fettle", the reply went From SMTP_FROM
    (care@larkspur.test, Larkspur's mailbox login)."""
    original = _config(larkspur(x="LARKSPUR_X", email="LARKSPUR_SMTP"), fettle(x="FETTLE_X", email="FETTLE_SMTP"))
    case_id = _fettle_email_case(store, emulator, original)
    renamed = _config(larkspur(x="LARKSPUR_X", email="LARKSPUR_SMTP"),
                      fettle(name="Fettle", x="FETTLE_X", email="FETTLE_SMTP"))
    with pytest.raises(ReplyRejected) as refused:
        queue_reply(store, renamed, case_id, "Hi, we are checking your parcel.", "agent", channel="email")
    reason = refused.value.reason
    assert '"Fettle Outdoor" is not a brand in doorstep.toml' in reason and "name" in reason and "\n" not in reason
    send(store, renamed)
    assert smtp_auth.sent() == []


def test_a_removed_brands_customer_mail_is_refused_even_with_one_brand_left(
        store: Store, emulator: XEmulator, smtp_auth: LoginSink) -> None:
    """The Fettle brand removed, Larkspur left alone: SMTP_FROM is Larkspur's address, not Fettle's."""
    original = _config(larkspur(x="LARKSPUR_X", email="LARKSPUR_SMTP"), fettle(x="FETTLE_X", email="FETTLE_SMTP"))
    case_id = _fettle_email_case(store, emulator, original)
    removed = _config(larkspur(x="LARKSPUR_X", email="LARKSPUR_SMTP"))
    with pytest.raises(ReplyRejected, match='"Fettle Outdoor" is not a brand in doorstep.toml'):
        queue_reply(store, removed, case_id, "Hi, we are checking your parcel.", "agent", channel="email")
    send(store, removed)
    assert smtp_auth.sent() == []


def test_a_brand_without_an_email_address_is_not_answered_from_another_brands(
        store: Store, emulator: XEmulator, smtp_auth: LoginSink) -> None:
    config = _config(larkspur(x="LARKSPUR_X", email="LARKSPUR_SMTP"), fettle(address=None, x="FETTLE_X"))
    case_id = _fettle_email_case(store, emulator, config)
    with pytest.raises(ReplyRejected, match=r"Fettle Outdoor has no e-mail address.*set email"):
        queue_reply(store, config, case_id, "Hi, we are checking your parcel.", "agent", channel="email")
    # Nor when the agent picks Larkspur's address.
    with pytest.raises(ReplyRejected, match="Fettle Outdoor has no e-mail address"):
        queue_reply(store, config, case_id, "Hi, we are checking.", "agent", channel="email",
                    account="care@larkspur.test")
    send(store, config)
    assert smtp_auth.sent() == []


def test_an_automatic_question_of_a_renamed_brand_is_skipped_visibly(
        store: Store, emulator: XEmulator, smtp_auth: LoginSink) -> None:
    """Before: the question was written with account None and, once sent, went From Larkspur's address."""
    from responders.dialogue import ask

    original = _config(larkspur(x="LARKSPUR_X", email="LARKSPUR_SMTP"), fettle(x="FETTLE_X", email="FETTLE_SMTP"))
    case_id = _fettle_email_case(store, emulator, original)
    renamed = _config(larkspur(x="LARKSPUR_X", email="LARKSPUR_SMTP"),
                      fettle(name="Fettle", x="FETTLE_X", email="FETTLE_SMTP"))
    question = ask(store, renamed, store.get_case(case_id), "redeliver", channels=["email"], actor="t",  # type: ignore[arg-type]
                   kind="outreach", key="renamed-question")
    send(store, renamed)
    assert question is None and smtp_auth.sent() == []
    skipped = [e for e in store.audit_trail(case_id) if e.action == "question.skipped"]
    assert skipped and '"Fettle Outdoor" is not a brand in doorstep.toml' in skipped[-1].details["reason"]


def test_a_customer_mail_queued_without_a_brand_address_is_not_sent_from_smtp_from(
        store: Store, emulator: XEmulator, smtp_auth: LoginSink) -> None:
    """A message written with account None (before this fix, or before the brand got its address) would go
    From SMTP_FROM, Larkspur's address, to a Fettle customer: it fails, naming the remedy."""
    from responders.outbox import enqueue

    config = _config(larkspur(x="LARKSPUR_X", email="LARKSPUR_SMTP"), fettle(x="FETTLE_X", email="FETTLE_SMTP"))
    case_id = _fettle_email_case(store, emulator, config)
    message = enqueue(store, kind="follow_up", channel="email", text="Subject: Your order\n\nAny news?", actor="t",
                      idempotency_key="old-follow-up", case_id=case_id, target="sam@example.com")
    assert message.account is None
    send(store, config)
    assert smtp_auth.sent() == []
    failed = get_message(store, message.id)  # type: ignore[arg-type]
    assert failed.status == "failed" and "queue it again from the case" in (failed.last_error or "")
    assert "care@fettle.test" in (failed.last_error or "")


def test_a_single_brand_shop_without_a_brand_address_still_mails_from_smtp_from(
        store: Store, emulator: XEmulator, smtp_auth: LoginSink) -> None:
    """SMTP_FROM is the shop's own address when there is only one brand (README: old single-account files)."""
    config = _config(fettle(address=None, x="FETTLE_X"))
    case_id = _fettle_email_case(store, emulator, config)
    message = queue_reply(store, config, case_id, "Hi, we are checking your parcel.", "agent", channel="email")
    send(store, config)
    assert message.account is None
    assert [s[0] for s in smtp_auth.sent()] == ["care@larkspur.test"]


def test_an_x_reply_after_a_rename_names_the_missing_brand_not_a_missing_account(
        store: Store, emulator: XEmulator) -> None:
    """Before: "Fettle Outdoor has no x account" while @FettleCare was configured; the case keeps the old name."""
    original = _config(larkspur(x="LARKSPUR_X"), fettle(x="FETTLE_X"))
    case_id = make_case(store, original, emulator, text="my fettle stove never came", handle="oliver_k")
    assert store.get_case(case_id).brand == "Fettle Outdoor"  # type: ignore[union-attr]
    renamed = _config(larkspur(x="LARKSPUR_X"), fettle(name="Fettle", x="FETTLE_X"))
    with pytest.raises(ReplyRejected) as refused:
        queue_reply(store, renamed, case_id, "Sorry about the wait!", "agent")
    assert "has no x account" not in refused.value.reason
    assert '"Fettle Outdoor" is not a brand in doorstep.toml' in refused.value.reason
    assert emulator.posted == []


# ------------------------------------------------------------------ finding 3: a fixed secret, same worker
@pytest.mark.parametrize("first_token", ["tok-revoked", None])
def test_a_retry_after_fixing_the_token_uses_the_new_secret_in_the_same_worker(
        store: Store, emulator: XEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        first_token: str | None) -> None:
    """Before: the worker's Outbox kept the first client (and its token) for good: a retry after a 401
    or after the "logged in as @LarkspurHelp; set FETTLE_X_ACCESS_TOKEN" error failed again until restart."""
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"FETTLE_X_ACCESS_TOKEN={first_token}\n" if first_token else "")
    monkeypatch.setenv("DOORSTEP_SECRETS_FILE", str(secrets))
    monkeypatch.delenv("FETTLE_X_ACCESS_TOKEN")
    monkeypatch.setenv("X_ACCESS_TOKEN", "tok-larkspur")  # without Fettle's own, the shared one is Larkspur's
    config = _config(larkspur(x="LARKSPUR_X"), fettle(x="FETTLE_X"))
    case_id = make_case(store, config, emulator, text="@FettleCare my stove is late", handle="oliver_k")
    message = queue_reply(store, config, case_id, "Sorry about the wait, we are looking into it.", "agent")
    worker = Outbox(store, config, now=later(5))  # one Outbox for the worker's life
    worker.send_due()
    failed = get_message(store, message.id)  # type: ignore[arg-type]
    assert failed.status == "failed" and emulator.posted == []
    assert ("401" if first_token else "logged in as @LarkspurHelp") in (failed.last_error or "")
    secrets.write_text("FETTLE_X_ACCESS_TOKEN=tok-fettle\n")  # the remedy the error names
    retry(store, message.id, "lead")  # type: ignore[arg-type]
    worker.send_due()
    sent = get_message(store, message.id)  # type: ignore[arg-type]
    assert sent.status == "sent", sent.last_error
    assert [p["account"] for p in emulator.posted] == ["FettleCare"]


# ------------------------------------------------------------------ finding 4: a rejected app password
def test_a_rejected_bluesky_app_password_fails_at_once_naming_the_secret(
        store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Before: atproto's UnauthorizedError was not caught: a traceback, and the message stayed queued
    to log in with the rejected password again up to max_attempts."""
    from standins.bluesky import BlueskyStandIn

    stand_in = BlueskyStandIn({"pw-fettle": "fettleoutdoor.bsky.social"})
    parent = "at://did:plc:emma0000000000000000000000/app.bsky.feed.post/3kparent0579"
    stand_in.add(parent, "@fettleoutdoor.bsky.social my boots?", "did:plc:emma0000000000000000000000")
    with stand_in.server:
        monkeypatch.setenv("BLUESKY_BASE_URL", stand_in.server.url)
        monkeypatch.setenv("FETTLE_BLUESKY_APP_PASSWORD", "pw-wrong-and-secret")
        config = _config(larkspur(x="LARKSPUR_X"), fettle(bluesky="FETTLE_BLUESKY"))
        case_id = make_case(store, config, channel="bluesky", handle="emma.bsky.social", external_id=parent,
                            text="@fettleoutdoor.bsky.social my boots?")
        message = queue_reply(store, config, case_id, "Sorry Emma! We are checking.", "agent")
        with caplog.at_level(logging.WARNING):
            send(store, config)
            send(store, config)
        failed = get_message(store, message.id)  # type: ignore[arg-type]
        assert failed.status == "failed" and failed.attempts == 1, failed
        error = failed.last_error or ""
        assert "FETTLE_BLUESKY_APP_PASSWORD" in error and "\n" not in error and "pw-wrong" not in error
        assert not [r for r in caplog.records if r.exc_info]  # no traceback in the worker's log
        assert stand_in.created == []


# ------------------------------------------------------------------ finding 5: a handle or address changed
def test_a_reply_queued_before_a_handle_change_says_what_to_do_and_retry_refuses_it(
        store: Store, emulator: XEmulator) -> None:
    before = _config(larkspur(x="LARKSPUR_X"), fettle(x="FETTLE_X"))
    case_id = make_case(store, before, emulator, text="@FettleCare my stove is late", handle="oliver_k")
    message = queue_reply(store, before, case_id, "Sorry about the wait, we are looking into it.", "agent")
    after = _config(larkspur(x="LARKSPUR_X"), fettle(handle="FettleHelp", x="FETTLE_X"))
    send(store, after)
    failed = get_message(store, message.id)  # type: ignore[arg-type]
    line = failed.last_error or ""
    assert failed.status == "failed" and "@FettleCare is no longer one of our x accounts" in line
    assert "queue the reply again from the case" in line
    with pytest.raises(ValueError) as refused:
        retry(store, message.id, "lead", config=after)  # type: ignore[arg-type]
    assert "queue the reply again from the case" in str(refused.value)
    send(store, after)
    again = get_message(store, message.id)  # type: ignore[arg-type]
    assert (again.status, again.attempts) == ("failed", 1)  # not tried again, no attempt burnt
    assert emulator.posted == []
    assert queue_reply(store, after, case_id, "Sorry about the wait!", "agent").account == "FettleHelp"


def test_a_mail_queued_before_the_brand_address_changed_is_refused_on_retry(
        store: Store, emulator: XEmulator, smtp_auth: LoginSink) -> None:
    before = _config(larkspur(x="LARKSPUR_X", email="LARKSPUR_SMTP"), fettle(x="FETTLE_X", email="FETTLE_SMTP"))
    case_id = _fettle_email_case(store, emulator, before)
    message = queue_reply(store, before, case_id, "Hi, we are checking your parcel.", "agent", channel="email")
    assert message.account == "care@fettle.test"
    after = _config(larkspur(x="LARKSPUR_X", email="LARKSPUR_SMTP"),
                    fettle(address="help@fettle.test", x="FETTLE_X", email="FETTLE_SMTP"))
    send(store, after)
    failed = get_message(store, message.id)  # type: ignore[arg-type]
    assert failed.status == "failed" and "care@fettle.test is no longer one of our email accounts" in (failed.last_error or "")
    with pytest.raises(ValueError, match="queue the reply again from the case"):
        retry(store, message.id, "lead", config=after)  # type: ignore[arg-type]
    assert smtp_auth.sent() == []


# ------------------------------------------------------------------ finding 6: courier escalations
def test_a_courier_escalation_goes_from_the_case_brands_address(
        store: Store, emulator: XEmulator, smtp_auth: LoginSink) -> None:
    """Before: From SMTP_FROM (care@larkspur.test) and Larkspur's mailbox for a Fettle order."""
    from responders.escalation import escalate

    config = _config(larkspur(x="LARKSPUR_X", email="LARKSPUR_SMTP"), fettle(x="FETTLE_X", email="FETTLE_SMTP"))
    case_id = _fettle_email_case(store, emulator, config)
    [message] = escalate(store, config, case_id, "courier", None, "agent")
    send(store, config)
    [(sender, subject, login)] = smtp_auth.sent()
    assert (sender, login) == ("care@fettle.test", "fettle-mailbox") and "Escalation" in subject
    assert str(smtp_auth.mail[0][0]["Message-ID"]).endswith("@fettle.test>")
    assert get_message(store, message.id).account == "care@fettle.test"  # type: ignore[arg-type]


# ------------------------------------------------------------------ upgrade audit: messages from before accounts
def _as_before_accounts(store: Store, message_id: int) -> None:
    """What a database of a version before m006 (one account per network) holds: no account on the message."""
    with store.transaction():
        store.db.execute("update outbound_messages set account = null where id = ?", [message_id])


def test_a_reply_queued_before_brands_had_accounts_goes_from_its_case_brands_account(
        store: Store, mastodon: Any) -> None:
    """Upgrade audit, finding 1: a reply queued (or failed) under a version that knew one account per network has
    no account; the outbox sent it on the shared token, unverified: @LarkspurHelp answered a Fettle customer.
    It goes from the case brand's own account now, and the message says which."""
    message_id, _ = _fettle_mastodon_reply(store)
    _as_before_accounts(store, message_id)
    send(store, _config(larkspur(mastodon="LARKSPUR_MASTODON"), fettle(mastodon="FETTLE_MASTODON")))
    assert [s["account"]["acct"] for s in mastodon.statuses] == ["FettleCare"]
    sent = get_message(store, message_id)
    assert sent.status == "sent" and sent.account == "FettleCare"


def test_a_reply_queued_before_brands_had_accounts_is_refused_when_its_brand_has_no_account_there(
        store: Store, mastodon: Any) -> None:
    message_id, _ = _fettle_mastodon_reply(store)
    _as_before_accounts(store, message_id)
    send(store, _config(larkspur(mastodon="LARKSPUR_MASTODON"), fettle(x="FETTLE_X")))
    assert mastodon.statuses == []
    failed = get_message(store, message_id)
    assert failed.status == "failed" and failed.attempts == 1
    assert "Fettle Outdoor has no mastodon account" in (failed.last_error or ""), failed.last_error
    assert "queue the reply again from the case" in (failed.last_error or ""), failed.last_error
