"""An SMS or e-mail answer whose handling fails is never lost, and every failure shows in listener health.

1. ``POST /sms`` and ``POST /mail`` answered a reply whose handling failed with a 500 and kept
   nothing, so the sender's retry is handled as the first delivery. When handling fails every time
   (a bug in a step, data a step cannot take), every retry failed too, Twilio (which retries little
   or not at all) gave up, and the customer's words were only in the server log: nobody read them,
   a STOP was never honoured. Now such an answer is kept for a person in a small transaction of its
   own (``answers``, a note on its case, ``dialogue.needs_human``; a STOP still opts the customer
   out when that succeeds) and answered as a success, so it is not sent again; a busy store is
   still a 503 that keeps nothing.
2. A busy store on ``/sms`` and ``/mail`` (503) wrote nothing to listener health, so a store that
   stayed locked looked healthy; now a 503 and a 500 both show on the webhook's health row.
3. On PostgreSQL, a ``classify`` job whose classifier raised wrote no listener health: the failure
   showed only once the job had failed for good. Now each failure is on the listener's row.

Each test drives the real inbound application (a Twilio-signed request, a signed raw e-mail) on the
store of each backend and asserts what the store holds afterwards.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

import doorstep.dialogue
import listeners.replies
import responders.dialogue
from conftest import KeywordClassifier
from doorstep import dialogue as rows
from doorstep.config import Config
from doorstep.models import Labels, utcnow
from doorstep.store import Store
from listeners.health import listener_health
from test_dialogue import ask_redelivery, deliver
from test_http_audit import inbound, post_mail, post_sms, webhook_health  # noqa: F401 - fixture


class Hiccup(RuntimeError):
    """The failure a test injects: a bug in one step, met on every try."""


def always_fails(*args: Any, **kwargs: Any) -> Any:
    raise Hiccup("a bug in a step")


def kept_answers(store: Store) -> list[tuple[str, str | None, int | None]]:
    return [tuple(r) for r in store.db.execute("select external_id, outcome, case_id from answers order by id")]


def audits(store: Store, case_id: int, action: str) -> list[Any]:
    return [e for e in store.audit_trail(case_id) if e.action == action]


def busy_error(store: Store) -> Exception:
    """What a busy store raises on this backend (a lock wait that ran out)."""
    if store.dialect.postgres:
        return psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")
    return sqlite3.OperationalError("database is locked")


def is_empty_twiml(response: Any) -> bool:
    return (response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
            and "<Response" in response.text)


def yes_mail(token: str, message_id: str, text: str = "Yes please") -> bytes:
    return (f"From: jane@example.com\r\nTo: care@larkspur.test\r\nSubject: Re: About your order [ref {token}]\r\n"
            f"Message-ID: {message_id}\r\n\r\n{text}\r\n").encode()


# ------------------------------------------------------------------ 1. an answer that always fails
def test_an_sms_answer_whose_handling_always_fails_is_kept_for_a_person_and_not_sent_again(
        inbound: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    store, config = inbound["store"], inbound["config"]
    case_id, question = ask_redelivery(store, config, utcnow())
    deliver(store, config)
    case = store.get_case(case_id)
    store.update_case(case_id, case.version, "sam", status="pending_customer")  # type: ignore[union-attr]  # waits on her
    monkeypatch.setattr(responders.dialogue, "_apply_step", always_fails)

    first = post_sms(inbound, "YES please", "SMbug")
    assert is_empty_twiml(first), (first.status_code, first.text[:200])
    assert kept_answers(store) == [("SMbug", "handed to a person (could not be acted on: Hiccup)", case_id)]
    [note] = [n for n in store.notes(case_id) if "YES please" in n.text]
    assert "could not be acted on" in note.text and "Hiccup" in note.text
    [audit] = audits(store, case_id, "dialogue.needs_human")
    assert audit.details["answer"] == "YES please" and "Hiccup" in audit.details["error"]
    assert rows.get_question(store, question.id).status == "open"  # type: ignore[union-attr]  # not acted on
    assert store.get_case(case_id).status == "open"  # type: ignore[union-attr]  # back with the team
    assert "/sms" in webhook_health(store)["last_error"] and "Hiccup" in webhook_health(store)["last_error"]

    # Twilio (or the operator) sends it again: a duplicate now, kept once.
    assert is_empty_twiml(post_sms(inbound, "YES please", "SMbug"))
    assert len(kept_answers(store)) == 1 and len(audits(store, case_id, "dialogue.needs_human")) == 1
    assert len([n for n in store.notes(case_id) if "YES please" in n.text]) == 1


def test_a_stop_whose_handling_always_fails_still_opts_the_customer_out(
        inbound: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    store, config = inbound["store"], inbound["config"]
    case_id, question = ask_redelivery(store, config, utcnow())
    deliver(store, config)
    monkeypatch.setattr(doorstep.dialogue, "claim_answer", always_fails)  # a step before the opt-out

    assert is_empty_twiml(post_sms(inbound, "STOP", "SMstop"))
    assert {"all", "sms", "email", "dm"} <= set(store.get_customer("C1").opt_out)  # type: ignore[union-attr]
    assert rows.get_question(store, question.id).status == "opted_out"  # type: ignore[union-attr]
    [(sid, outcome, on_case)] = kept_answers(store)
    assert (sid, on_case) == ("SMstop", case_id) and outcome.startswith("handed to a person (could not be acted on")
    [note] = [n for n in store.notes(case_id) if "STOP" in n.text]
    assert "we opted them out" in note.text
    assert len(audits(store, case_id, "customer.opt_out")) == 1
    assert len(audits(store, case_id, "dialogue.needs_human")) == 1


def test_a_stop_whose_opt_out_always_fails_is_put_before_a_person(
        inbound: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    store, config = inbound["store"], inbound["config"]
    case_id, _ = ask_redelivery(store, config, utcnow())
    deliver(store, config)
    monkeypatch.setattr(responders.dialogue, "opt_out", always_fails)

    assert is_empty_twiml(post_sms(inbound, "STOP", "SMstop"))
    assert store.get_customer("C1").opt_out == []  # type: ignore[union-attr]
    assert [a for a, _, _ in kept_answers(store)] == ["SMstop"]
    [note] = [n for n in store.notes(case_id) if "STOP" in n.text]
    assert "NOT opted out" in note.text and "by hand" in note.text
    [audit] = audits(store, case_id, "dialogue.needs_human")
    assert "not opted out" in audit.details["why"]


def test_a_mail_answer_whose_handling_always_fails_is_kept_for_a_person_and_not_sent_again(
        inbound: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    store, config = inbound["store"], inbound["config"]
    case_id, question = ask_redelivery(store, config, utcnow(), phone=None)
    assert question.channel == "email"
    deliver(store, config)
    monkeypatch.setattr(responders.dialogue, "_apply_step", always_fails)

    raw = yes_mail(question.token, "<bug-1@mail.test>")
    first = post_mail(inbound, raw)
    assert first.status_code == 202, first.text[:200]
    assert first.json()["outcome"] == "handed to a person (could not be acted on: Hiccup)"
    assert kept_answers(store) == [("<bug-1@mail.test>", "handed to a person (could not be acted on: Hiccup)",
                                    case_id)]
    assert len([n for n in store.notes(case_id) if "Yes please" in n.text]) == 1
    assert len(audits(store, case_id, "dialogue.needs_human")) == 1
    assert rows.get_question(store, question.id).status == "open"  # type: ignore[union-attr]

    again = post_mail(inbound, raw)
    assert again.status_code == 202 and again.json()["outcome"] == "duplicate"
    assert len(kept_answers(store)) == 1 and len(audits(store, case_id, "dialogue.needs_human")) == 1


def test_an_answer_from_nobody_we_know_is_still_kept(inbound: dict[str, Any],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """No question, no case, no customer: the answer still lands in ``answers`` for a person."""
    store = inbound["store"]
    monkeypatch.setattr(responders.dialogue, "_handle_reply", always_fails)
    assert is_empty_twiml(post_sms(inbound, "who is this?", "SMstranger", sender="+15005550006"))
    assert kept_answers(store) == [("SMstranger", "handed to a person (could not be acted on: Hiccup)", None)]


def test_a_busy_store_still_keeps_nothing_and_asks_for_a_retry(inbound: dict[str, Any],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    store, config = inbound["store"], inbound["config"]
    case_id, question = ask_redelivery(store, config, utcnow())
    deliver(store, config)
    error = busy_error(store)

    def busy(*args: Any, **kwargs: Any) -> Any:
        raise error

    with monkeypatch.context() as patched:
        patched.setattr(responders.dialogue, "_apply_step", busy)
        response = post_sms(inbound, "YES please", "SMbusy")
    assert response.status_code == 503 and response.headers["retry-after"]
    assert kept_answers(store) == [] and audits(store, case_id, "dialogue.needs_human") == []
    assert is_empty_twiml(post_sms(inbound, "YES please", "SMbusy"))  # the retry is the first delivery
    assert kept_answers(store) == [("SMbusy", "answered", case_id)]


def test_when_keeping_it_fails_too_the_sender_is_asked_to_retry(inbound: dict[str, Any],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A store that cannot even keep the answer for a person: a 500 (the sender retries), in health."""
    store = inbound["store"]
    monkeypatch.setattr(responders.dialogue, "handle_reply", always_fails)
    monkeypatch.setattr(doorstep.dialogue, "remember_reply", always_fails)
    for response in (post_sms(inbound, "yes", "SMbroken"),
                     post_mail(inbound, b"From: jane@example.com\r\nMessage-ID: <broken@x>\r\n\r\nyes\r\n")):
        assert response.status_code == 500 and "retry" in response.json()["error"]
    assert kept_answers(store) == []
    assert "Hiccup" in webhook_health(store)["last_error"] and webhook_health(store)["status"] == "error"


# ------------------------------------------------------------------ 2. a busy store shows in health
@pytest.mark.parametrize("path", ["/sms", "/mail"])
def test_a_busy_store_on_a_reply_endpoint_shows_in_listener_health(
        inbound: dict[str, Any], monkeypatch: pytest.MonkeyPatch, path: str) -> None:  # noqa: F811
    store = inbound["store"]
    error = busy_error(store)

    def busy(*args: Any, **kwargs: Any) -> Any:
        raise error

    with monkeypatch.context() as patched:
        patched.setattr(responders.dialogue, "handle_reply", busy)
        response = (post_sms(inbound, "yes", "SMlocked") if path == "/sms" else
                    post_mail(inbound, b"From: jane@example.com\r\nMessage-ID: <locked@x>\r\n\r\nyes\r\n"))
    assert response.status_code == 503
    health = webhook_health(store)
    assert health.get("status") == "error", health
    assert health["last_error"].startswith(f"{path}: store busy") and "retry" in health["last_error"]

    # The store is free again: the retry is stored and the reply endpoints' own error is cleared.
    retry = post_sms(inbound, "yes", "SMlocked") if path == "/sms" else post_mail(
        inbound, b"From: jane@example.com\r\nMessage-ID: <locked@x>\r\n\r\nyes\r\n")
    assert retry.status_code in (200, 202)
    health = webhook_health(store)
    assert health["status"] == "ok" and health["last_error"].startswith(f"{path}: store busy")


def test_a_failed_health_write_never_stops_the_answer(inbound: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    store = inbound["store"]
    error = busy_error(store)

    def busy(*args: Any, **kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(responders.dialogue, "handle_reply", busy)
    monkeypatch.setattr(listeners.replies, "record_error", busy)
    assert post_sms(inbound, "yes", "SMlocked2").status_code == 503
    monkeypatch.setattr(responders.dialogue, "handle_reply", always_fails)
    monkeypatch.setattr(doorstep.dialogue, "remember_reply", always_fails)
    assert post_sms(inbound, "yes", "SMlocked3").status_code == 500


def test_an_error_of_the_webhook_itself_is_not_cleared_by_a_reply(inbound: dict[str, Any]) -> None:  # noqa: F811
    """Only the reply endpoints' own error is cleared by a stored reply: a failing ``/mentions`` stays red."""
    from listeners.health import record_error

    store = inbound["store"]
    record_error(store, "webhook", "webhook: posts not stored, the sender was asked to retry: RuntimeError: x")
    assert is_empty_twiml(post_sms(inbound, "hello", "SMplain"))
    assert webhook_health(store)["status"] == "error"


# ------------------------------------------------------------------ 3. a failing classify job shows in health
class BrokenClassifier(KeywordClassifier):
    """A worker's model that fails while ``broken`` (out of memory, a lost file)."""

    def __init__(self) -> None:
        self.broken = True

    def classify(self, texts: Sequence[str]) -> list[Labels]:
        if self.broken:
            raise RuntimeError("classifier crashed: CUDA out of memory")
        return super().classify(texts)


@pytest.fixture
def runtime(postgres_url: str, config: Config) -> Any:
    from commands.jobs_queue import Runtime, apply_schema, set_runtime

    Store(postgres_url).close()
    apply_schema(postgres_url)
    rt = Runtime(postgres_url, config)
    rt._classifier = BrokenClassifier()
    set_runtime(rt)
    yield rt
    set_runtime(None)
    rt.close()


def test_each_failure_of_a_classify_job_shows_on_its_listeners_health(runtime: Any) -> None:
    from commands.jobs_queue import QueuedPipeline, classify_batch, ingest_batch
    from conftest import mention
    from listeners.health import RoundResult, record_round

    store = runtime.store()
    posts = [mention(f"90{i}", f"@LarkspurHelp parcel {i} is late", minutes=i, author_handle=f"c{i}")
             for i in range(3)]
    posts.append(mention("dm-1", "where is my parcel", minutes=4, author_handle="c9", channel="x_dm"))
    with store.transaction():
        QueuedPipeline(store, runtime.config).ingest(posts)
    record_round(store, RoundResult("x", fetched=len(posts)))
    [batch] = [r["id"] for r in store.rows("select id from job_batches where stage = 'classify'")]

    for attempt in (1, 2):  # procrastinate retries the job: each failure is on the row
        with pytest.raises(RuntimeError, match="classifier crashed"):
            classify_batch(batch)
        row = {r["name"]: r for r in listener_health(store)}["x"]
        assert row["status"] == "error" and row["errors"] == attempt, row
        assert "classifier crashed" in row["last_error"] and f"job_batches id {batch}" in row["last_error"]
        assert "4 posts" in row["last_error"]
    assert store.rows("select stage from job_batches where id = ?", [batch]) == [{"stage": "classify"}]

    runtime._classifier.broken = False
    assert classify_batch(batch) == 4
    for staged in [r["id"] for r in store.rows("select id from job_batches where stage = 'ingest'")]:
        ingest_batch(staged)
    assert store.count("mentions") == 4
