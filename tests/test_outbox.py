"""Outbox: replies reach the channel exactly once, across 5xx, resets, timeouts and a crash.

Everything runs against real clients (tweepy, smtplib) and local servers on 127.0.0.1: the X
emulator, an aiosmtpd SMTP server and a small recording HTTP server. Assertions are about what
*arrived* at those servers. The helpers at the top are shared with the other responder tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from doorstep.config import Config, parse_config
from doorstep.models import Customer, Mention, Order, Shipment, TrackingEvent
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from standins.bluesky import BlueskyStandIn
from standins.mastodon import MastodonStandIn
from standins.recording import RecordingServer, free_port  # noqa: F401 - other tests import them from here
from standins.smtp import SmtpSink
from standins.x_emulator import XEmulator
from responders.outbox import Outbox, ReplyRejected, cancel, get_message, list_messages, queue_reply, retry

from conftest import REPO, KeywordClassifier

NOW = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


# ----------------------------------------------------------------------------- local servers
# The stand-ins live in standins/ (shared with the demo and the other tests); imported here too
# because other test modules import them from this one.
def serve_smtp(monkeypatch: pytest.MonkeyPatch, sink: SmtpSink, timeout_s: int = 5) -> Iterator[SmtpSink]:
    """``sink`` as the shop's SMTP relay on a free 127.0.0.1 port (SMTP_* set) until the generator ends."""
    from aiosmtpd.controller import Controller

    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    monkeypatch.setenv("SMTP_FROM", "care@larkspur.test")
    monkeypatch.setenv("SMTP_TIMEOUT", str(timeout_s))
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    yield from serve_smtp(monkeypatch, SmtpSink())


def x_env(monkeypatch: pytest.MonkeyPatch, em: XEmulator) -> None:
    for name in ("X_BEARER_TOKEN", "X_API_KEY", "X_API_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET"):
        monkeypatch.setenv(name, f"test-{name.lower()}")
    monkeypatch.setenv("X_API_BASE_URL", em.base_url)
    monkeypatch.setenv("X_API_TIMEOUT", "5")


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[XEmulator]:
    with XEmulator(me={"username": "LarkspurHelp"}, slow_s=1.0, stall_s=0.3) as em:
        x_env(monkeypatch, em)
        yield em


def shop_config(**responders: Any) -> Config:
    return parse_config({
        "timezone": "Europe/London",
        "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}, "keywords": ["larkspur"]}],
        "couriers": [{"name": "UPS", "handles": {"x": "UPSHelp"}, "tracking_formats": ["ups"]}],
        "responders": responders,
    })


def add_order(store: Store, *, email: str | None = "jane@example.com", phone: str | None = "+447700900123",
              opt_out: list[str] | None = None, events: list[tuple[datetime, str, str]] | None = None,
              number: str = "LS-100234", tracking: str = "1Z999AA10123456784", promised: str | None = "2026-11-14",
              customer_id: str = "C1", name: str = "Jane Doe", vip: bool = False) -> Order:
    store.upsert_customers([Customer(id=customer_id, name=name, email=email, phone=phone, handles={"x": "jane"},
                                     opt_out=opt_out or [], vip=vip)])
    evs = [TrackingEvent(tracking_number=tracking, time=t, status=s, location=loc) for t, s, loc in (events or [
        (NOW - timedelta(days=2), "in_transit", "Leeds hub")])]
    order = Order(number=number, customer_id=customer_id, placed_at=NOW - timedelta(days=5), brand="Larkspur",
                  items=[{"name": "Linen shirt", "quantity": 1}], total=60.0,
                  promised_date=datetime.fromisoformat(promised).date() if promised else None,
                  shipments=[Shipment(tracking_number=tracking, order_number=number, courier="UPS", events=evs)])
    store.upsert_orders([order])
    for shipment in order.shipments:
        store.upsert_shipment(shipment)
    return order


def make_case(store: Store, config: Config, em: XEmulator | None = None, *, text: str = "@LarkspurHelp where is my parcel?",
              confirmed: bool = True, handle: str = "jane", channel: str = "x", external_id: str | None = None,
              order: Order | None = None, created_at: datetime = NOW, followers: int = 0) -> int:
    """A case opened by the pipeline from one post (published on the emulator when given)."""
    if em is not None:
        external_id = em.add_post({"text": text, "username": handle, "created_at": created_at.isoformat(),
                                   "followers": followers})
    mention = Mention(channel=channel, external_id=external_id or f"m-{time.monotonic_ns()}", text=text,
                      created_at=created_at, author_handle=handle, author_followers=followers)
    Pipeline(store, config, KeywordClassifier()).ingest([mention])
    case_id = store.mention_by_external_id(channel, mention.external_id).case_id  # type: ignore[union-attr]
    if order is not None:
        case = store.get_case(case_id)
        store.update_case(case_id, case.version, "agent", customer_id=order.customer_id,  # type: ignore[union-attr]
                          order_number=order.number, tracking_number=order.shipments[0].tracking_number,
                          link_method="agent" if confirmed else "order_number", link_confirmed=confirmed,
                          courier=order.shipments[0].courier, brand=order.brand)
    return case_id


def later(minutes: float) -> Callable[[], datetime]:
    """A clock ``minutes`` after the real now (so every backoff and lease has run out)."""
    return lambda: datetime.now(timezone.utc) + timedelta(minutes=minutes)


# ----------------------------------------------------------------------------- tests
def test_reply_reaches_x_once_across_5xx_reset_and_429(store: Store, emulator: XEmulator) -> None:
    config = shop_config(backoff_base_s=1)
    case_id = make_case(store, config, emulator)
    message = queue_reply(store, config, case_id, "@jane so sorry! Could you DM us your order number?", "agent1")
    parent = store.mentions_for_case(case_id)[0].external_id
    emulator.inject("500", 1, "/2/tweets")
    emulator.inject("reset", 1, "/2/tweets")
    emulator.inject("429", 1, "/2/tweets")
    outbox = Outbox(store, config)
    assert outbox.send_due() == 0
    assert get_message(store, message.id).status == "queued"  # type: ignore[arg-type]
    assert "500" in (get_message(store, message.id).last_error or "")  # type: ignore[arg-type]
    for minutes in (10, 20, 30, 40):
        Outbox(store, config, now=later(minutes)).send_due()
    sent = get_message(store, message.id)  # type: ignore[arg-type]
    assert sent.status == "sent" and sent.attempts == 4
    assert len(emulator.posted) == 1
    assert emulator.posted[0]["reply"]["in_reply_to_tweet_id"] == parent
    assert emulator.posted[0]["id"] == sent.external_id
    case = store.get_case(case_id)
    assert case.first_response_at is not None and case.status == "pending_customer"  # type: ignore[union-attr]


def test_timeout_after_the_post_was_created_is_not_posted_again(store: Store, emulator: XEmulator,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The client gives up (0.3 s) while the emulator is still creating the post (1 s): ambiguous."""
    monkeypatch.setenv("X_API_TIMEOUT", "0.3")
    config = shop_config()
    case_id = make_case(store, config, emulator)
    message = queue_reply(store, config, case_id, "@jane we're on it, sorry for the wait.", "agent1")
    emulator.inject("slow", 1, "/2/tweets")
    Outbox(store, config).send_due()
    assert get_message(store, message.id).status == "queued"  # type: ignore[arg-type]
    deadline = time.monotonic() + 10.0  # the emulator finishes at ~1 s; room for a loaded CI host
    while not emulator.posted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(emulator.posted) == 1  # the post exists although we saw a timeout
    Outbox(store, config, now=later(10)).send_due()
    sent = get_message(store, message.id)  # type: ignore[arg-type]
    assert sent.status == "sent" and sent.external_id == emulator.posted[0]["id"]
    assert sent.last_error == "found already posted; not sent again"
    assert len(emulator.posted) == 1


def _sender_subprocess(db: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "responders.outbox", str(db)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_crash_between_post_and_record_posts_exactly_once(tmp_path: Path, emulator: XEmulator) -> None:
    db = tmp_path / "crash.db"
    store = Store(db)
    config = shop_config()
    case_id = make_case(store, config, emulator)
    message = queue_reply(store, config, case_id, "@jane sorry about this, we're checking with UPS now.", "agent1")
    env = {**os.environ, "DOORSTEP_TEST_CRASH_AFTER_SEND": "86", "PYTHONPATH": str(REPO)}
    env.pop("DOORSTEP_CONFIG", None)
    crashed = _sender_subprocess(db, env)
    assert crashed.returncode == 86, crashed.stderr
    assert len(emulator.posted) == 1
    assert get_message(store, message.id).status == "sending"  # type: ignore[arg-type]  # the post went out, unrecorded

    # Restart: the sender finds the message in doubt once its lease ran out, checks X, and records it.
    env.pop("DOORSTEP_TEST_CRASH_AFTER_SEND")
    assert Outbox(store, config, now=later(5)).send_due() == 1
    recovered = get_message(store, message.id)  # type: ignore[arg-type]
    assert recovered.status == "sent" and recovered.external_id == emulator.posted[0]["id"]
    assert len(emulator.posted) == 1
    assert any(e.action == "outbox.in_doubt" for e in store.audit_trail(case_id))
    assert any(e.action == "outbox.sent" and e.details["recovered"] for e in store.audit_trail(case_id))
    # Another sender process afterwards has nothing to do.
    again = _sender_subprocess(db, env)
    assert again.returncode == 0, again.stderr
    assert len(emulator.posted) == 1
    store.close()


def test_crash_before_the_post_sends_it_after_checking(store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    case_id = make_case(store, config, emulator)
    message = queue_reply(store, config, case_id, "@jane thanks for waiting, checking now.", "agent1")
    # A sender claimed it and died before calling X.
    store.db.execute("update outbound_messages set status = 'sending', attempts = 1, next_attempt_at = ? where id = ?",
                     [(datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat(timespec="seconds"), message.id])
    assert Outbox(store, config).send_due() == 1
    assert len(emulator.posted) == 1
    assert ("GET", next(p for m, p in emulator.requests if "/tweets?" in p and "/users/" in p)) in emulator.requests


def test_double_click_queues_one_message(store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    case_id = make_case(store, config, emulator)
    first = queue_reply(store, config, case_id, "@jane on it!", "agent1")
    second = queue_reply(store, config, case_id, "@jane on it!", "agent1")
    assert first.id == second.id
    assert store.count("outbound_messages") == 1
    Outbox(store, config).send_due()
    Outbox(store, config).send_due()
    assert len(emulator.posted) == 1


@pytest.mark.parametrize(
    ("channel", "text", "allow_urls", "fragment"),
    [
        ("x", "a" * 281, False, "281 characters is over the x limit of 280"),
        ("x", "Track it at https://ups.com/track?n=1", False, "links are off"),
        ("x", "Track it at ups.com/track", False, "13x"),
        ("mastodon", "b" * 501, False, "over the mastodon limit of 500"),
        ("bluesky", "\U0001F469\u200D\U0001F469\u200D\U0001F467" * 301, False, "301 graphemes"),
        ("x", "   ", False, "empty"),
        ("x", "\u65e5" * 141, False, "282 characters is over the x limit"),  # CJK weighs 2 on X
    ],
)
def test_channel_limits(channel: str, text: str, allow_urls: bool, fragment: str) -> None:
    from responders.channels import check_limits

    with pytest.raises(ReplyRejected) as err:
        check_limits(channel, text, allow_urls=allow_urls)
    assert fragment in err.value.reason


def test_limits_allow_what_the_channel_allows() -> None:
    from responders.channels import check_limits, weighted_length

    check_limits("x", "Track it at https://ups.com/" + "x" * 300, allow_urls=True)  # a link counts as 23
    assert weighted_length("x", "see https://example.com/" + "y" * 100) == 4 + 23
    check_limits("x", "\u65e5" * 140)
    assert weighted_length("x", "ok \U0001F469\u200D\U0001F469\u200D\U0001F467") == 3 + 2  # one emoji weighs 2
    family = "\U0001F469\u200D\U0001F469\u200D\U0001F467"
    check_limits("bluesky", family * 160)  # 800 code points, 160 graphemes, 2,880 bytes
    with pytest.raises(ReplyRejected, match="5400 bytes is over the bluesky limit of 3000 bytes"):
        check_limits("bluesky", family * 300)  # 300 graphemes, but Bluesky's post lexicon caps 3000 bytes too
    # Languages audit, finding 10: Mastodon counts graphemes (480 letters and 5 family emoji: 485, refused as 505),
    # and X counts a flag or a keycap as one emoji (2), not as its code points (4 and 5).
    check_limits("mastodon", "a" * 480 + family * 5)
    assert weighted_length("mastodon", "a" * 480 + family * 5) == 485
    assert weighted_length("x", "Go \U0001F1EC\U0001F1E7") == 3 + 2
    assert weighted_length("x", "1\ufe0f\u20e3 done") == 2 + 5
    check_limits("email", "z" * 5000)


def test_privacy_of_unconfirmed_orders_and_public_contact_details(store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    order = add_order(store)
    unconfirmed = make_case(store, config, emulator, order=order, confirmed=False)
    with pytest.raises(ReplyRejected, match="LS-100234"):
        queue_reply(store, config, unconfirmed, "@jane your order LS-100234 is in Leeds", "agent1")
    with pytest.raises(ReplyRejected, match="not confirmed"):
        queue_reply(store, config, unconfirmed, "@jane Jane Doe, we found it", "agent1")
    queue_reply(store, config, unconfirmed, "@jane please DM us your order number", "agent1")
    confirmed = make_case(store, config, emulator, order=order, handle="jane", text="@LarkspurHelp lost parcel again")
    with pytest.raises(ReplyRejected, match="email address or phone"):
        queue_reply(store, config, confirmed, "@jane we emailed jane@example.com", "agent1")
    with pytest.raises(ReplyRejected, match="email address or phone"):
        queue_reply(store, config, confirmed, "@jane we'll call +44 7700 900123", "agent1")


def test_permanent_failure_is_visible_then_retry_and_cancel(store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    case_id = make_case(store, config, emulator)
    message = queue_reply(store, config, case_id, "@jane sorry!", "agent1")
    emulator.inject("403", 1, "/2/tweets")
    Outbox(store, config).send_due()
    failed = get_message(store, message.id)  # type: ignore[arg-type]
    assert failed.status == "failed" and "403" in (failed.last_error or "")
    assert list_messages(store, ("failed",))[0].id == message.id
    assert emulator.posted == []
    retry(store, message.id, "lead")  # type: ignore[arg-type]
    Outbox(store, config).send_due()
    assert get_message(store, message.id).status == "sent"  # type: ignore[arg-type]
    assert len(emulator.posted) == 1
    with pytest.raises(ValueError, match="sent"):
        cancel(store, message.id, "lead")  # type: ignore[arg-type]
    other = queue_reply(store, config, case_id, "@jane one more thing", "agent1", force=True)
    cancel(store, other.id, "agent1")  # type: ignore[arg-type]
    Outbox(store, config).send_due()
    assert get_message(store, other.id).status == "cancelled"  # type: ignore[arg-type]
    assert len(emulator.posted) == 1
    actions = [e.action for e in store.audit_trail(case_id)]
    assert {"outbox.queue.reply", "outbox.failed", "outbox.retry", "outbox.sent", "outbox.cancel"} <= set(actions)


def test_gives_up_after_max_attempts(store: Store, emulator: XEmulator) -> None:
    config = shop_config(max_attempts=2, backoff_base_s=1)
    case_id = make_case(store, config, emulator)
    message = queue_reply(store, config, case_id, "@jane hello", "agent1")
    emulator.inject("503", 5, "/2/tweets")
    Outbox(store, config).send_due()
    Outbox(store, config, now=later(5)).send_due()
    final = get_message(store, message.id)  # type: ignore[arg-type]
    assert final.status == "failed" and final.attempts == 2
    assert emulator.posted == []


def test_email_reply_threads_and_survives_a_451(store: Store, smtp: SmtpSink) -> None:
    config = shop_config()
    case_id = make_case(store, config, channel="email", handle="jane@example.com",
                        external_id="<CAF123@mail.example.com>", text="Where is my parcel? Order LS-100234")
    message = queue_reply(store, config, case_id, "Hi Jane, it's on its way.", "agent1")
    assert message.target == "jane@example.com" and message.in_reply_to == "<CAF123@mail.example.com>"
    smtp.refuse(1)
    Outbox(store, config).send_due()
    assert smtp.messages == [] and get_message(store, message.id).status == "queued"  # type: ignore[arg-type]
    Outbox(store, config, now=later(10)).send_due()
    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert mail["In-Reply-To"] == "<CAF123@mail.example.com>" and mail["References"] == "<CAF123@mail.example.com>"
    assert mail["Subject"].startswith("Re: ") and mail.envelope_to == ["jane@example.com"]
    assert "it's on its way" in mail.get_payload(decode=True).decode()
    assert get_message(store, message.id).external_id == mail["Message-ID"]  # type: ignore[arg-type]


def test_send_email_api_with_attachment(smtp: SmtpSink, tmp_path: Path) -> None:
    from responders.email import send_email

    report = tmp_path / "weekly.csv"
    report.write_text("a,b\n1,2\n")
    message_id = send_email(None, ["lead@larkspur.test"], "Weekly report", "See attached.", html="<p>See attached.</p>",
                            attachments=[report])
    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert mail["Message-ID"] == message_id and mail["Subject"] == "Weekly report"
    names = [part.get_filename() for part in mail.walk() if part.get_filename()]
    assert names == ["weekly.csv"]


def test_cli_reply_and_outbox(tmp_path: Path, emulator: XEmulator) -> None:
    from commands.cli import cli

    db = tmp_path / "cli.db"
    store = Store(db)
    config = parse_config({})
    case_id = make_case(store, config, emulator)
    store.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", str(db), "reply", "--case", str(case_id), "--template", "ask_details_privately",
                                 "--as", "sam", "--send-now"])
    assert result.exit_code == 0, result.output
    assert "sent" in result.output
    assert len(emulator.posted) == 1 and emulator.posted[0]["text"].startswith("Hi @jane")
    bad = runner.invoke(cli, ["--db", str(db), "reply", "--case", str(case_id), "--text", "x" * 300])
    assert bad.exit_code != 0 and "over the x limit" in bad.output
    listing = runner.invoke(cli, ["--db", str(db), "outbox", "list"])
    assert listing.exit_code == 0 and "\tsent\treply\tx\t" in listing.output


def test_mastodon_reply_once_across_a_timeout(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in = MastodonStandIn()
    with stand_in.server:
        monkeypatch.setenv("MASTODON_BASE_URL", stand_in.server.url)
        monkeypatch.setenv("MASTODON_ACCESS_TOKEN", "token")
        monkeypatch.setenv("MASTODON_TIMEOUT", "0.3")
        config = shop_config()
        case_id = make_case(store, config, channel="mastodon", handle="jane@mastodon.social",
                            external_id="109999999999999999", text="@LarkspurHelp where is my parcel?")
        message = queue_reply(store, config, case_id, "@jane@mastodon.social sorry! Checking now.", "sam")
        stand_in.server.fail("slow")
        Outbox(store, config).send_due()
        assert get_message(store, message.id).status == "queued"  # type: ignore[arg-type]  # timed out...
        time.sleep(1.0)
        assert len(stand_in.statuses) == 1  # ...but the status was created
        Outbox(store, config, now=later(10)).send_due()
        sent = get_message(store, message.id)  # type: ignore[arg-type]
        assert sent.status == "sent" and sent.external_id == stand_in.statuses[0]["id"]
        assert len(stand_in.statuses) == 1
        assert stand_in.statuses[0]["in_reply_to_id"] == "109999999999999999"
        assert stand_in.idempotency_keys == [message.idempotency_key]


def test_worker_runs_the_responder_jobs(store: Store, emulator: XEmulator) -> None:
    from commands.worker import Worker

    config = shop_config()
    case_id = make_case(store, config, emulator)
    queue_reply(store, config, case_id, "@jane hello from the worker", "sam")
    worker = Worker(store, config, pipeline=None, providers=["responders.jobs:jobs"])
    names = [job.name for job in worker.collect_jobs()]
    assert names[0] == "outbox" and {"alerts", "sla-escalation", "follow-up", "proactive"} <= set(names)
    assert worker.run(once=True) == dict.fromkeys(names, 0)
    assert len(emulator.posted) == 1


def test_bluesky_reply_with_reply_ref_once_across_a_5xx(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in = BlueskyStandIn()
    parent = "at://did:plc:jane000000000000000000000/app.bsky.feed.post/3kparent0001"
    stand_in.add(parent, "@larkspurhelp.bsky.social where is my parcel?", "did:plc:jane000000000000000000000")
    with stand_in.server:
        monkeypatch.setenv("BLUESKY_BASE_URL", stand_in.server.url)
        monkeypatch.setenv("BLUESKY_HANDLE", "larkspurhelp.bsky.social")
        monkeypatch.setenv("BLUESKY_APP_PASSWORD", "app-pass-word")
        config = shop_config()
        case_id = make_case(store, config, channel="bluesky", handle="jane.bsky.social", external_id=parent,
                            text="@larkspurhelp.bsky.social where is my parcel?")
        message = queue_reply(store, config, case_id, "Sorry Jane! Could you DM us your order number?", "sam")
        stand_in.server.fail("503")
        outbox = Outbox(store, config)
        outbox.send_due()
        Outbox(store, config, now=later(10), senders=outbox._senders).send_due()
        sent = get_message(store, message.id)  # type: ignore[arg-type]
        assert sent.status == "sent", sent.last_error
        assert len(stand_in.created) == 1
        reply = stand_in.created[0]["record"]["reply"]
        assert reply["parent"]["uri"] == parent and reply["root"]["uri"] == parent
        assert sent.external_id.startswith(f"at://{BlueskyStandIn.DID}/")  # type: ignore[union-attr]


def test_cli_reply_on_a_webhook_case_says_which_channel_to_use(tmp_path: Path) -> None:
    """Before: `doorstep reply --case N --text ...` on a case that came in by the webhook failed with
    "cannot reply on channel 'webhook'" and no way forward, where the console's composer says why and
    replies by e-mail."""
    from commands.cli import cli
    from doorstep.models import Case, utcnow

    db = tmp_path / "cli.db"
    store = Store(db)
    store.upsert_customers([Customer(id="C-wh", name="Wren Hale", email="wren@example.com")])
    now = utcnow()
    ids = []
    for customer in ("C-wh", None):
        case_id = store.insert_case(Case(status="new", priority=50.0, channel="webhook", author_handle="wh",
                                         customer_id=customer, link_confirmed=customer is not None, opened_at=now,
                                         last_activity_at=now, mention_count=1))
        store.insert_mention(Mention(channel="webhook", external_id=f"wh-{case_id}", text="my parcel never came",
                                     created_at=now, author_handle="wh", case_id=case_id))
        ids.append(case_id)
    store.close()
    runner = CliRunner()
    known, unknown = (runner.invoke(cli, ["--db", str(db), "reply", "--case", str(i), "--text", "So sorry, on it."])
                      for i in ids)
    assert known.exit_code == 1 and unknown.exit_code == 1
    assert known.output.strip() == (f"Error: case {ids[0]}: webhook posts cannot be answered there; "
                                    "reply by e-mail with --channel email"), known.output
    line = unknown.output.strip()
    assert "\n" not in line and "webhook posts cannot be answered there" in line and "no email address known" in line
    assert "link the case to the customer's order" in line  # and what to do about it
    assert "doorstep import orders" in line  # where a record gets an address: the console has no form for it
    assert "Traceback" not in known.output + unknown.output
    sent = runner.invoke(cli, ["--db", str(db), "reply", "--case", str(ids[0]), "--text", "So sorry, on it.",
                               "--channel", "email"])
    assert sent.exit_code == 0 and "(email" in sent.output, sent.output
