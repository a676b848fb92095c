"""The case page tells the truth about when things happened and says it in words.

Before:

1. A post imported (or caught up by a listener) a week after it was written opened its case "now": the
   timeline's "A new post opened this case" carried the ``case.open`` audit stamp, which is when the system
   stored the post, not when the case opened.
2. A reply our team typed in the network's own app stopped the first-response clock when a listener stored it,
   but no audit event was written: no timeline said who answered or when.
3. The Dashboard's "Answers to our questions" showed ``email`` and ``sms``; a case's questions block showed the
   answer kind and what it triggered as stored (``opt_out``, ``status pending_customer``).
4. The case page looked a quoted order number up exactly: "ord-2026-008001" read "no such order" although
   linking found ORD-2026-008001.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from console.auth import add_user
from doorstep.config import load_config
from doorstep.models import AuditEvent, Case, Customer, Mention, Order, utcnow
from doorstep.pipeline import Pipeline
from doorstep.store import Store, iso
from tests.conftest import DEMO_CONFIG, T0, KeywordClassifier, console_store, mention, run_page, texts

#: What the page shows between a line's time and its words.
DASH = " — "


@pytest.fixture
def shop(db_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Store:
    """An empty shop the console's pages open (demo configuration), on SQLite and on PostgreSQL, with ann."""
    store = console_store(db_url, request, monkeypatch)
    add_user(store, "ann", "correct horse battery", role="agent", name="Ann", rounds=4)
    add_user(store, "lee", "correct horse battery", role="lead", name="Lee", rounds=4)
    return store


def _timeline(store: Store, case_id: int) -> list[str]:
    """The case page's timeline lines (newest first), as the page draws them (Markdown escapes and the word
    joiner the page puts after an @ taken out)."""
    at = run_page("case_view", store, case_id=case_id)
    assert not at.exception, at.exception
    return [c.value.replace("\\", "").replace("\u2060", "") for c in at.caption if DASH in c.value]


def _events(store: Store, case_id: int, action: str) -> list[AuditEvent]:
    return [e for e in store.audit_trail(case_id) if e.action == action]


# ------------------------------------------------------------------ 1: the opened line
def test_an_imported_posts_case_opened_when_the_post_was_written_and_says_when_it_was_imported(shop: Store) -> None:
    config = load_config(DEMO_CONFIG)
    Pipeline(shop, config, KeywordClassifier()).ingest(
        [mention("old-1", "@FettleCare my boots are lost", author_handle="hking12")])  # written at T0, stored now
    case_id = shop.mention_by_external_id("x", "old-1").case_id  # type: ignore[union-attr]
    case = shop.get_case(case_id)
    [opened] = _events(shop, case_id, "case.open")
    assert case.opened_at == T0 and opened.at - T0 > timedelta(days=1)  # the audit keeps when it was stored
    lines = _timeline(shop, case_id)
    [line] = [line for line in lines if "A new post opened this case" in line]
    assert line.startswith(config.local_time(T0) + DASH), lines
    assert line.endswith(f"; imported {config.local_time(opened.at)}"), line
    assert lines[-1] == line, lines  # newest first: the opening is the oldest line



def test_an_imported_post_that_reopened_a_resolved_case_stands_at_its_own_time(shop: Store) -> None:
    """The reopen is told like the opening: a post written two hours after the first, imported days later
    into the resolved case, reopened it when it was written (its line said the import time before)."""
    config = load_config(DEMO_CONFIG)
    pipeline = Pipeline(shop, config, KeywordClassifier())
    pipeline.ingest([mention("old-1", "@FettleCare my boots are lost", author_handle="hking12")])
    case_id = shop.mention_by_external_id("x", "old-1").case_id  # type: ignore[union-attr]
    with shop.transaction():  # resolved an hour after the first post, within the reopen window
        shop.db.execute("update cases set status = 'resolved', resolved_at = ? where id = ?",
                        [iso(T0 + timedelta(hours=1)), case_id])
    pipeline.ingest([mention("old-2", "@FettleCare still no boots", minutes=120, author_handle="hking12",
                             thread_id="old-1", in_reply_to="old-1")])
    assert shop.mention_by_external_id("x", "old-2").case_id == case_id  # type: ignore[union-attr]
    [reopened] = _events(shop, case_id, "case.reopen")
    lines = _timeline(shop, case_id)
    [line] = [line for line in lines if "reopened this resolved case" in line]
    assert line.startswith(config.local_time(T0 + timedelta(hours=2)) + DASH), lines
    assert line.endswith(f"; imported {config.local_time(reopened.at)}"), line

def test_a_post_stored_as_it_was_written_says_nothing_of_an_import_and_lines_stay_in_time_order() -> None:
    from console.timeline import lines

    config = load_config(DEMO_CONFIG)
    stored = T0 + timedelta(minutes=2)  # a listener's poll, minutes after the post
    events = [AuditEvent(id=1, at=stored, actor="pipeline", action="case.open", case_id=1,
                         details={"external_id": "1", "link": "none"}),
              AuditEvent(id=2, at=stored + timedelta(minutes=1), actor="ann", action="case.update", case_id=1,
                         details={"assignee": "ann"})]
    said = lines(events, [], {}, config, config.local_time, opened_at=T0)
    assert said == [(T0, "A new post opened this case"),
                    (stored + timedelta(minutes=1), "ann assigned the case to ann")]
    week_late = [events[0].model_copy(update={"at": T0 + timedelta(days=7)}), events[1]]
    said = lines(week_late, [], {}, config, config.local_time, opened_at=T0)
    assert [at for at, _ in said] == sorted(at for at, _ in said) and said[0][0] == T0
    assert said[0][1] == f"A new post opened this case; imported {config.local_time(T0 + timedelta(days=7))}"


# ------------------------------------------------------------------ 2: our reply typed on the network
def _customer_and_our_reply(channel: str = "x", ours: str = "FettleCare", external: str = "our-1") -> list[Mention]:
    return [mention("cust-1", "@FettleCare where is my parcel, so late", channel=channel, author_handle="hking12"),
            mention(external, "@hking12 sorry! checking now", minutes=30, channel=channel, author_handle=ours,
                    in_reply_to="cust-1", outbound=True)]


def test_a_reply_typed_in_the_networks_own_app_is_on_the_timeline_once(shop: Store) -> None:
    config = load_config(DEMO_CONFIG)
    customer, reply = _customer_and_our_reply()
    Pipeline(shop, config, KeywordClassifier()).ingest([customer])
    Pipeline(shop, config, KeywordClassifier()).ingest([reply])  # a listener polling our account's timeline
    case_id = shop.mention_by_external_id("x", "cust-1").case_id  # type: ignore[union-attr]
    assert shop.get_case(case_id).first_response_at == T0 + timedelta(minutes=30)
    [answered] = _events(shop, case_id, "case.answered")
    assert answered.actor == "@FettleCare"
    assert answered.details == {"channel": "x", "external_id": "our-1", "posted_at": iso(T0 + timedelta(minutes=30)),
                                "first_response": True}
    # A re-import of the same post (a file, a restarted listener) adds no second line.
    Pipeline(shop, config, KeywordClassifier()).ingest([_customer_and_our_reply()[1]])
    assert len(_events(shop, case_id, "case.answered")) == 1
    lines = _timeline(shop, case_id)
    [line] = [line for line in lines if "answered" in line]
    assert line.startswith(f"{config.local_time(T0 + timedelta(minutes=30))}{DASH}@FettleCare answered on X "
                           "(outside Doorstep)"), lines
    assert lines.index(line) < [i for i, text in enumerate(lines) if "opened this case" in text][0]


def test_one_batch_writes_the_answer_as_posts_one_at_a_time_do(tmp_path: Path) -> None:
    config = load_config(DEMO_CONFIG)
    said = []
    for size in (500, 1):
        store = Store(tmp_path / f"batch{size}.db")
        Pipeline(store, config, KeywordClassifier(), batch_size=size).ingest(_customer_and_our_reply())
        said.append([(e.actor, e.action, e.case_id, e.details) for e in store.audit_trail(None)][::-1])
        store.close()
    assert said[0] == said[1] and [a for _, a, _, _ in said[0]] == ["case.open", "case.answered"], said


def test_the_answer_is_written_in_the_posts_transaction(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(DEMO_CONFIG)
    customer, reply = _customer_and_our_reply()
    pipeline = Pipeline(store, config, KeywordClassifier())
    pipeline.ingest([customer])
    real_insert = store.insert_mentions

    def fail(mentions: list[Mention]) -> list[int]:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "insert_mentions", fail)
    with pytest.raises(RuntimeError):
        pipeline.ingest([reply])
    case_id = store.mention_by_external_id("x", "cust-1").case_id  # type: ignore[union-attr]
    assert not _events(store, case_id, "case.answered") and store.mention_by_external_id("x", "our-1") is None
    monkeypatch.setattr(store, "insert_mentions", real_insert)
    pipeline.ingest([_customer_and_our_reply()[1]])
    assert len(_events(store, case_id, "case.answered")) == 1


def test_a_reply_doorstep_sent_is_not_told_as_one_from_outside(store: Store) -> None:
    """The outbox's "Reply to @hking12 on X sent" already says it; the listener storing that post says nothing more."""
    config = load_config(DEMO_CONFIG)
    customer, reply = _customer_and_our_reply(external="posted-7")
    Pipeline(store, config, KeywordClassifier()).ingest([customer])
    case_id = store.mention_by_external_id("x", "cust-1").case_id  # type: ignore[union-attr]
    store.db.execute(
        "insert into outbound_messages (case_id, kind, channel, target, text, status, attempts, idempotency_key, "
        "external_id, created_by, created_at, sent_at) values (?, 'reply', 'x', 'hking12', ?, 'sent', 1, 'k-7', "
        "'posted-7', 'ann', ?, ?)", [case_id, reply.text, iso(reply.created_at), iso(reply.created_at)])
    Pipeline(store, config, KeywordClassifier()).ingest([reply])
    assert store.mention_by_external_id("x", "posted-7").case_id == case_id  # type: ignore[union-attr]
    assert not _events(store, case_id, "case.answered")



def test_a_reply_the_outbox_records_after_a_listener_stored_it_is_not_told_as_one_from_outside(shop: Store) -> None:
    """After a crash between posting and recording, the outbox finds its reply already posted and records it
    (found already posted, not sent twice); a listener that stored the post in between had no outbox record
    to match and wrote "answered (outside Doorstep)". The page tells the reply once, as the outbox's."""
    config = load_config(DEMO_CONFIG)
    customer, reply = _customer_and_our_reply(external="posted-8")
    Pipeline(shop, config, KeywordClassifier()).ingest([customer])
    case_id = shop.mention_by_external_id("x", "cust-1").case_id  # type: ignore[union-attr]
    with shop.transaction():  # the reply went out; the worker died before recording its post id
        shop.db.execute(
            "insert into outbound_messages (case_id, kind, channel, target, text, status, attempts, idempotency_key, "
            "created_by, created_at) values (?, 'reply', 'x', 'hking12', ?, 'sending', 1, 'k-8', 'ann', ?)",
            [case_id, reply.text, iso(reply.created_at)])
    Pipeline(shop, config, KeywordClassifier()).ingest([reply])  # the listener stores it first
    assert len(_events(shop, case_id, "case.answered")) == 1
    [message_id] = [r[0] for r in shop.db.execute("select id from outbound_messages where idempotency_key = 'k-8'")]
    with shop.transaction():  # what the outbox's recovery records
        shop.db.execute("update outbound_messages set status = 'sent', external_id = 'posted-8', sent_at = ?, "
                        "last_error = 'found already posted; not sent again' where id = ?",
                        [iso(reply.created_at), message_id])
        shop.audit("outbox", "outbox.sent", case_id, {"message_id": message_id, "external_id": "posted-8",
                                                      "recovered": True, "kind": "reply", "channel": "x"})
    lines = _timeline(shop, case_id)
    assert not [line for line in lines if "outside Doorstep" in line], lines
    assert [line for line in lines if "found already posted, not sent twice" in line], lines

def test_a_bluesky_answer_keeps_through_redaction_what_its_timeline_line_needs(store: Store) -> None:
    from console.timeline import lines

    config = load_config(DEMO_CONFIG)
    root = "at://did:plc:hking000000000000000000000/app.bsky.feed.post/3kroot"
    ours = "at://did:plc:fettle00000000000000000000/app.bsky.feed.post/3kours"
    posts = [mention(root, "@fettleoutdoor.bsky.social where is my parcel", channel="bluesky",
                     author_handle="hking.bsky.social"),
             mention(ours, "@hking.bsky.social on it!", minutes=45, channel="bluesky",
                     author_handle="fettleoutdoor.bsky.social", in_reply_to=root, outbound=True)]
    Pipeline(store, config, KeywordClassifier()).ingest(posts)
    case_id = store.mention_by_external_id("bluesky", root).case_id  # type: ignore[union-attr]
    [answered] = _events(store, case_id, "case.answered")
    assert (answered.details["channel"], answered.details["posted_at"]) == ("bluesky", iso(T0 + timedelta(minutes=45)))
    said = lines(store.audit_trail(case_id), [], {}, config, config.local_time)
    [(at, words)] = [(at, words) for at, words in said if "answered" in words]
    assert at == T0 + timedelta(minutes=45), said
    assert words.startswith("@fettleoutdoor.bsky.social answered on Bluesky (outside Doorstep)"), said


# ------------------------------------------------------------------ 3: words, not keys
def _case(store: Store) -> int:
    now = utcnow()
    return store.insert_case(Case(status="open", brand="Larkspur Home", channel="x", author_handle="jane",
                                  opened_at=now, last_activity_at=now, mention_count=1))


def test_the_dashboards_answers_to_our_questions_name_the_channels_in_words(shop: Store) -> None:
    case_id = _case(shop)
    asked = utcnow().replace(microsecond=0) - timedelta(hours=2)
    for i, channel in enumerate(("email", "sms")):
        shop.db.execute("insert into questions (case_id, rule, channel, target, token, asked_at, expires_at, status, "
                        "answered_at) values (?, 'redeliver', ?, 'jane', ?, ?, ?, 'answered', ?)",
                        [case_id, channel, f"words-{i}", iso(asked), iso(asked + timedelta(days=1)),
                         iso(asked + timedelta(minutes=20))])
    at = run_page("dashboard", shop, "lee")
    assert not at.exception, at.exception
    [answers] = [d.value for d in at.dataframe if "asked" in d.value.columns]
    assert sorted(answers["channel"]) == ["SMS", "e-mail"]


def test_a_cases_questions_say_the_answer_and_what_it_triggered_in_words(shop: Store) -> None:
    case_id = _case(shop)
    asked = utcnow().replace(microsecond=0) - timedelta(hours=2)
    shop.db.execute("insert into questions (case_id, rule, channel, target, token, asked_at, expires_at, status, "
                    "answer, answer_kind, answer_channel, answered_at, action) values (?, 'redeliver', 'sms', '+447700900123', "
                    "'kinds-1', ?, ?, 'answered', 'Tomorrow after 5', 'time', 'sms', ?, ?)",
                    [case_id, iso(asked), iso(asked + timedelta(days=1)), iso(asked + timedelta(minutes=20)),
                     "note added; status pending_customer"])
    at = run_page("case_view", shop, case_id=case_id)
    assert not at.exception, at.exception
    shown = texts(at)
    assert "read as a time:" in shown, shown
    assert "Triggered: note added; status set to pending customer" in shown, shown
    assert "pending_customer" not in shown


# ------------------------------------------------------------------ 4: quoted numbers in small letters
def test_a_quoted_order_number_in_small_letters_is_the_order_linking_finds(store: Store) -> None:
    from console.case_view import quoted_numbers

    config = load_config(DEMO_CONFIG)
    config = config.model_copy(update={"order_patterns": [r"#(\d{4,8})\b", r"(?i)\b(ORD-\d{4}-\d{6})\b"]})
    store.upsert_customers([Customer(id="c1", name="Ann Lee", handles={"x": "annlee"})])
    store.upsert_orders([Order(number="ORD-2026-008001", customer_id="c1", placed_at=T0 - timedelta(days=2),
                               brand="Fettle Outdoor")])
    posts = [Mention(channel="x", external_id="q1", created_at=T0, author_handle="annlee",
                     text="@FettleCare order ord-2026-008001 still not here, and ord-2026-009999?")]
    assert quoted_numbers(store, config, posts) == [
        ("warning", "customer quoted ord-2026-009999: no such order (check it with them; a typo or another shop's "
                    "order?)")]


def test_the_timeline_says_a_queued_outreach_in_english() -> None:
    """Browser check (2026-12-07): "Doorstep queued a outreach"."""
    from datetime import datetime, timezone

    from console.timeline import sentence
    from doorstep.models import AuditEvent

    event = AuditEvent(id=1, at=datetime(2026, 12, 7, tzinfo=timezone.utc), actor="proactive", action="outreach.queue",
                       case_id=1, details={})
    assert sentence(event, {}, lambda t: "").endswith("queued an outreach message")


def test_a_question_or_call_back_offer_is_told_as_queued_not_as_asked() -> None:
    """Two-brand browser audit: a rule's call-back offer by SMS, still awaiting a lead's approval (nothing sent),
    read "callback-rule asked the customer a question by SMS" and "offered a call back"."""
    from console.timeline import sentence

    asked = AuditEvent(actor="callback-rule", action="question.asked", case_id=1,
                       details={"question_id": 3, "rule": "callback", "channel": "sms", "message_id": 9}, at=T0)
    offered = AuditEvent(actor="callback-rule", action="callback.offered", case_id=1,
                         details={"callback_id": 2, "reason": "late", "question_id": 3, "channel": "sms"}, at=T0)
    said = [sentence(e, {}, lambda t: "10:00") for e in (asked, offered)]
    assert said[0].startswith("callback-rule queued a question to the customer by SMS"), said
    assert said[1] == "callback-rule queued an offer of a call back by SMS", said


def test_a_cancelled_automatic_message_says_who_cancelled_it_and_why() -> None:
    """Two-brand browser audit: a follow-up's cancellation read "...by e-mail: cancelled", with no actor or reason,
    though the event kept both."""
    from console.timeline import sentence

    event = AuditEvent(actor="lee", action="automatic.cancelled", case_id=1, at=T0,
                       details={"message_id": 9, "kind": "follow_up", "reason": "the customer wrote again since"})
    said = sentence(event, {}, lambda t: "10:00")
    assert said.endswith(": cancelled by lee: the customer wrote again since"), said
