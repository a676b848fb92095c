"""One slow channel must not stall everything (issue 14, item 5).

Against local stand-ins that are rate-limited or do not answer: a queued reply on another
channel still arrives, while the slow one is still waiting. Assertions are on what the
servers received; the only times are generous bounds on waiting for an arrival.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from datetime import datetime, timezone
from typing import Any

import pytest

from doorstep.config import parse_config
from doorstep.store import Store
from commands.worker import FunctionJob, Worker
from standins.x_emulator import XEmulator
from responders.outbox import Outbox, get_message, queue_reply

from test_outbox import MastodonStandIn, SmtpSink, add_order, make_case, shop_config, smtp, x_env  # noqa: F401

#: How long a test waits for something that should happen within a second or two.
ARRIVAL_TIMEOUT_S = 30.0


def eventually(condition: Callable[[], Any], timeout: float = ARRIVAL_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)  # on SQLite and on PostgreSQL
    yield s
    s.close()


class RunningWorker:
    """A worker on a background thread, stopped (and its threads given back) at the end."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self.thread = threading.Thread(target=worker.run, daemon=True)

    def __enter__(self) -> Worker:
        self.thread.start()
        return self.worker

    def __exit__(self, *exc: Any) -> None:
        self.worker.stop()
        self.thread.join(30)


def test_a_job_stuck_waiting_does_not_hold_up_the_other_jobs(store: Store) -> None:
    release = threading.Event()
    runs: list[int] = []
    stuck = FunctionJob("listen:stuck", 0.05, lambda: release.wait(120))
    sender = FunctionJob("outbox", 0.05, lambda: runs.append(1))
    worker = Worker(store, parse_config({}), None, jobs=[stuck, sender], providers=[])
    try:
        with RunningWorker(worker):
            assert eventually(lambda: len(runs) >= 3), "the sender never ran while another job was waiting"
            assert not release.is_set()
            release.set()
    finally:
        release.set()


def test_a_reply_goes_out_while_the_x_listener_waits_out_a_rate_limit(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    with XEmulator(me={"username": "LarkspurHelp"}, reset_after_s=45) as em:
        x_env(monkeypatch, em)
        config = parse_config({
            "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}, "keywords": ["larkspur"]}],
            "channels": {"x": {"queries": ["@LarkspurHelp"], "poll_seconds": 60}},
        })
        case_id = make_case(store, config, em)
        message = queue_reply(store, config, case_id, "@jane sorry about that, checking now", "sam")
        em.inject("429", count=100, path="/2/tweets/search/recent")  # the listener's window: 45 s
        worker = Worker(store, config, None, providers=["listeners.jobs:jobs", "responders.jobs:jobs"], stop_grace_s=1)
        with RunningWorker(worker):
            assert eventually(lambda: ("GET", "/2/tweets/search/recent") in
                              {(m, p.split("?")[0]) for m, p in list(em.requests)}), "the listener never polled"
            assert eventually(lambda: len(em.posted) == 1), "the reply waited for the listener's rate-limit window"
        assert [p["text"] for p in em.posted] == [message.text]


class Unanswering:
    """A Mastodon stand-in whose status posts hang until ``release()`` (an unreachable server)."""

    def __init__(self) -> None:
        self.stand_in = MastodonStandIn()
        self._release = threading.Event()
        self.waiting = threading.Event()
        post = self.stand_in.post

        def hanging_post(*args: Any) -> tuple[int, Any]:
            self.waiting.set()
            self._release.wait(120)
            return post(*args)

        self.stand_in.server.routes["/api/v1/statuses"] = hanging_post

    def release(self) -> None:
        self._release.set()


def test_a_reply_by_email_goes_out_while_mastodon_does_not_answer(store: Store, smtp: SmtpSink,  # noqa: F811
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    mastodon = Unanswering()
    with mastodon.stand_in.server:
        monkeypatch.setenv("MASTODON_BASE_URL", mastodon.stand_in.server.url)
        monkeypatch.setenv("MASTODON_ACCESS_TOKEN", "token")
        monkeypatch.setenv("MASTODON_TIMEOUT", "120")
        config = shop_config()
        toot_case = make_case(store, config, channel="mastodon", handle="jane@mastodon.social",
                              external_id="109999999999999999", text="@LarkspurHelp where is my parcel?")
        toot = queue_reply(store, config, toot_case, "@jane@mastodon.social sorry! Checking now.", "sam")
        order = add_order(store)
        mail_case = make_case(store, config, text="@LarkspurHelp my order never came", handle="jane",
                              external_id="200", order=order)
        mail = queue_reply(store, config, mail_case, "We are on it.", "sam", channel="email")
        worker = Worker(store, config, None, providers=["responders.jobs:jobs"])
        try:
            with RunningWorker(worker):
                assert mastodon.waiting.wait(ARRIVAL_TIMEOUT_S), "the mastodon reply was never tried"
                assert eventually(lambda: len(smtp.messages) == 1), "the e-mail waited for mastodon"
                assert mastodon.stand_in.statuses == []  # mastodon was still hanging meanwhile
                mastodon.release()
                assert eventually(lambda: len(mastodon.stand_in.statuses) == 1)
        finally:
            mastodon.release()
        assert smtp.messages[0]["To"] and "We are on it." in smtp.messages[0].get_payload()
        assert [s["in_reply_to_id"] for s in mastodon.stand_in.statuses] == ["109999999999999999"]
        assert get_message(store, toot.id).status == "sent" and get_message(store, mail.id).status == "sent"  # type: ignore[arg-type]


def _three_x_replies_and_a_mail(store: Store, config: Any, em: XEmulator) -> tuple[list[Any], Any]:
    """Three customers' X replies and one e-mail reply, queued by sam."""
    replies = []
    for n in range(3):
        case_id = make_case(store, config, em, handle=f"cust{n}", text=f"@LarkspurHelp parcel {n} is late")
        replies.append(queue_reply(store, config, case_id, f"@cust{n} sorry, looking into parcel {n}", "sam"))
    order = add_order(store)
    mail_case = make_case(store, config, text="@LarkspurHelp my order never came", external_id="200", order=order)
    return replies, queue_reply(store, config, mail_case, "We are on it.", "sam", channel="email")


def test_a_rate_limited_channel_is_paused_until_its_window_not_tried_per_message(store: Store, smtp: SmtpSink,  # noqa: F811
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with XEmulator(me={"username": "LarkspurHelp"}, reset_after_s=45) as em:
        x_env(monkeypatch, em)
        config = shop_config()
        replies, mail = _three_x_replies_and_a_mail(store, config, em)
        em.inject("429", count=3, path="/2/tweets")
        clock = {"now": get_message(store, mail.id).created_at}  # type: ignore[arg-type]
        outbox = Outbox(store, config, now=lambda: clock["now"])
        outbox.send_due()
        creates = [p for m, p in list(em.requests) if m == "POST" and p.split("?")[0] == "/2/tweets"]
        assert len(creates) == 1  # one 429, then X's other replies waited for the window
        assert len(smtp.messages) == 1  # another channel was not held up
        assert sorted(get_message(store, r.id).attempts for r in replies) == [0, 0, 1]  # type: ignore[arg-type]
        assert any(lane.startswith("x") for lane in outbox.paused())
        from datetime import timedelta

        clock["now"] += timedelta(seconds=50)  # the window has passed
        em.clear_faults()
        outbox.send_due()
        assert sorted(p["text"] for p in em.posted) == sorted(r.text for r in replies)  # each exactly once
        outbox.close()


def test_run_can_start_the_sender_alone_and_names_unknown_jobs(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from commands.cli import cli

    db = tmp_path / "d.db"
    Store(db).close()
    runner = CliRunner()
    only = runner.invoke(cli, ["--db", str(db), "run", "--once", "--job", "outbox"])
    assert only.exit_code == 0, only.output
    wrong = runner.invoke(cli, ["--db", str(db), "run", "--once", "--job", "outbx"])
    assert wrong.exit_code == 2 and "no job named outbx" in wrong.output and "outbox" in wrong.output
    worker = Worker(Store(db), parse_config({}), None, providers=["responders.jobs:jobs"], skip={"outbox"})
    assert "outbox" not in {j.name for j in worker.collect_jobs()}


def test_an_in_memory_store_sends_its_lanes_one_after_another(monkeypatch: pytest.MonkeyPatch) -> None:
    with XEmulator(me={"username": "LarkspurHelp"}) as em:
        x_env(monkeypatch, em)
        store = Store(":memory:")
        config = shop_config()
        case_id = make_case(store, config, em)
        queue_reply(store, config, case_id, "@jane on it", "sam")
        assert Outbox(store, config).send_due() == 1
        assert [p["text"] for p in em.posted] == ["@jane on it"]


def test_a_paused_lane_is_not_tried_per_message_by_the_job_queues_sends(store: Store, smtp: SmtpSink,  # noqa: F811
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit of last stop's changes, F1: on PostgreSQL each send is a job of its own (``Outbox.send_one``, on an
    Outbox of the job's thread), and the lane pause was never asked there: with X not answering, every queued X
    reply took its own 30 s timeout in the one send slot, and a Bluesky reply or an e-mail behind them waited
    minutes. A lane paused by one failure (in any of the process's threads) now puts its other messages back to
    the end of the pause, untried (no attempt used), so the slot goes on to other lanes at once."""
    from commands.jobs_queue import Runtime

    with XEmulator(me={"username": "LarkspurHelp"}, reset_after_s=45) as em:
        x_env(monkeypatch, em)
        config = shop_config()
        replies, mail = _three_x_replies_and_a_mail(store, config, em)
        em.inject("429", count=3, path="/2/tweets")
        clock = {"now": get_message(store, mail.id).created_at}  # type: ignore[arg-type]
        pauses = Runtime(store.path, config).outbox_pauses  # what the worker's job threads share
        for message in (*replies, mail):  # each job on an Outbox of its own thread, as the worker runs them
            Outbox(store, config, now=lambda: clock["now"], pauses=pauses).send_one(message.id)  # type: ignore[arg-type]
        creates = [p for m, p in list(em.requests) if m == "POST" and p.split("?")[0] == "/2/tweets"]
        assert len(creates) == 1, creates  # one 429; X's other replies were not tried
        assert len(smtp.messages) == 1
        after = [get_message(store, r.id) for r in replies]  # type: ignore[arg-type]
        assert sorted(m.attempts for m in after) == [0, 0, 1] and all(m.status == "queued" for m in after)
        untried = [m for m in after if m.attempts == 0]
        assert all(m.next_attempt_at and m.next_attempt_at > clock["now"] for m in untried), untried
        from datetime import timedelta

        clock["now"] += timedelta(seconds=3600)  # the window and the backoff have passed
        em.clear_faults()
        for message in replies:
            Outbox(store, config, now=lambda: clock["now"], pauses=pauses).send_one(message.id)  # type: ignore[arg-type]
        assert sorted(p["text"] for p in em.posted) == sorted(r.text for r in replies)  # each exactly once


class _Hung:
    """A sender whose server does not answer: every send times out (counted)."""

    can_check = False

    def __init__(self) -> None:
        self.tries: list[str | None] = []

    def send(self, message: Any) -> str:
        from responders.channels import SendError

        self.tries.append(message.account)
        raise SendError("ReadTimeout: read timeout=30.0", retryable=True)


class _Taking:
    can_check = False

    def send(self, message: Any) -> str:
        return f"ok-{message.id}"


def test_a_hung_x_pauses_every_account_on_x_not_one_at_a_time(store: Store) -> None:
    """Audit of the per-queue workers, F1: X stopped answering and each of two brands' X accounts took its own 30 s
    timeout in the one send slot, again and again (the pause of one account ran out while the other's timeout used the
    slot), so Bluesky, Mastodon and e-mail replies went out minutes late. A timeout on X (one API host for all our
    accounts) now pauses X for every account, untried; a rate limit stays one account's."""
    from datetime import timedelta

    from responders.outbox import enqueue

    hung, taking = _Hung(), _Taking()
    config = shop_config()
    clock = {"now": datetime.now(timezone.utc)}
    queued = [enqueue(store, kind="reply", channel=channel, text=f"reply {n}", actor="sam", idempotency_key=f"k{n}",
                      target=f"@cust{n}", account=account)
              for n, (channel, account) in enumerate([("x", "LarkspurHelp"), ("x", "FettleCare"), ("x", "LarkspurHelp"),
                                                      ("x", "FettleCare"), ("bluesky", "larkspur.bsky.social")])]
    outbox = Outbox(store, config, now=lambda: clock["now"], senders={"x": hung, "bluesky": taking})
    for message in queued:  # one send slot, in the order the jobs came
        outbox.send_one(message.id)  # type: ignore[arg-type]
    assert hung.tries == ["LarkspurHelp"], hung.tries  # one timeout for X, not one per account
    statuses = [get_message(store, m.id) for m in queued]  # type: ignore[arg-type]
    assert [m.attempts for m in statuses[:4]] == [1, 0, 0, 0] and statuses[4].status == "sent", statuses
    # Still hung after the pause: the next pause is longer, so X takes the slot ever less often.
    clock["now"] += timedelta(seconds=31)
    first_until = outbox.held("x", "@cust1", "FettleCare")
    assert first_until is None  # the first pause is over
    outbox.send_one(queued[1].id)  # type: ignore[arg-type]
    assert hung.tries == ["LarkspurHelp", "FettleCare"]
    again = outbox.held("x", "@cust2", "LarkspurHelp")
    assert again is not None and again[0] - clock["now"] > timedelta(seconds=45), again
