"""One answer per customer post, to the right post and the right person (issue 13, failures 2 and 7).

Assertions are on what the X emulator received, not on what the outbox believes it sent.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner

from doorstep.linking import link_mention
from doorstep.models import Mention
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from standins.x_emulator import XEmulator
from responders.outbox import Outbox, ReplyRejected, queue_reply

from conftest import KeywordClassifier
from test_outbox import NOW, add_order, emulator, make_case, shop_config  # noqa: F401 - fixtures


def test_second_reply_to_the_same_post_is_refused_and_x_holds_one(store: Store, emulator: XEmulator) -> None:
    """Failure 2: agent and lead both queue a reply to the same post seconds apart."""
    from responders.outbox import AlreadyAnswered, latest_message_id

    config = shop_config()
    case_id = make_case(store, config, emulator)
    seen_by_ann = latest_message_id(store, case_id)
    seen_by_lead = latest_message_id(store, case_id)  # both opened the case before anyone answered
    queue_reply(store, config, case_id, "@jane sorry! Could you DM us your order number?", "ann", seen_up_to=seen_by_ann)
    with pytest.raises(AlreadyAnswered, match="ann already answered @jane's post") as refused:
        queue_reply(store, config, case_id, "@jane we're looking into it now", "lead", seen_up_to=seen_by_lead)
    assert [m.created_by for m in refused.value.existing] == ["ann"]
    Outbox(store, config).send_due()
    assert [p["text"] for p in emulator.posted] == ["@jane sorry! Could you DM us your order number?"]
    # "Send anyway" is explicit and audited.
    forced = queue_reply(store, config, case_id, "@jane we're looking into it now", "lead", seen_up_to=seen_by_lead,
                         force=True)
    Outbox(store, config).send_due()
    assert len(emulator.posted) == 2 and emulator.posted[1]["text"] == "@jane we're looking into it now"
    event = next(e for e in store.audit_trail(case_id) if e.action == "reply.send_anyway")
    assert event.actor == "lead" and event.details["message_id"] == forced.id


def test_a_new_post_after_the_answer_can_be_answered(store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    case_id = make_case(store, config, emulator)
    queue_reply(store, config, case_id, "@jane sorry! Could you DM us your order number?", "ann")
    Outbox(store, config).send_due()
    make_case(store, config, emulator, text="@LarkspurHelp it's LS-100234, still nothing", created_at=NOW + timedelta(minutes=5))
    queue_reply(store, config, case_id, "@jane thanks, checking now", "ann")
    Outbox(store, config).send_due()
    assert [p["text"] for p in emulator.posted] == ["@jane sorry! Could you DM us your order number?",
                                                   "@jane thanks, checking now"]
    assert emulator.posted[0]["reply"]["in_reply_to_tweet_id"] != emulator.posted[1]["reply"]["in_reply_to_tweet_id"]


def test_a_colleague_drafting_blocks_the_reply(store: Store, emulator: XEmulator) -> None:
    from doorstep import presence
    from responders.outbox import AlreadyAnswered

    config = shop_config()
    case_id = make_case(store, config, emulator)
    presence.touch(store, case_id, "bob", drafting=True)
    with pytest.raises(AlreadyAnswered, match="bob is replying"):
        queue_reply(store, config, case_id, "@jane on it", "ann", seen_up_to=0)
    Outbox(store, config).send_due()
    assert emulator.posted == []
    presence.touch(store, case_id, "bob", drafting=False)  # bob stopped typing
    queue_reply(store, config, case_id, "@jane on it", "ann", seen_up_to=0)
    Outbox(store, config).send_due()
    assert [p["text"] for p in emulator.posted] == ["@jane on it"]


def test_cli_second_reply_exits_nonzero_unless_force(tmp_path, emulator: XEmulator) -> None:  # noqa: ANN001
    from commands.cli import cli

    db = tmp_path / "d.db"
    store = Store(db)
    config = shop_config()
    case_id = make_case(store, config, emulator)
    store.close()
    runner = CliRunner()
    first = runner.invoke(cli, ["--db", str(db), "reply", "--case", str(case_id), "--text", "@jane on it", "--as", "sam",
                                "--send-now"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(cli, ["--db", str(db), "reply", "--case", str(case_id), "--text", "@jane also this",
                                 "--as", "kim", "--send-now"])
    assert second.exit_code != 0 and "sam already answered" in second.output
    assert [p["text"] for p in emulator.posted] == ["@jane on it"]
    forced = runner.invoke(cli, ["--db", str(db), "reply", "--case", str(case_id), "--text", "@jane also this",
                                 "--as", "kim", "--force", "--send-now"])
    assert forced.exit_code == 0, forced.output
    assert [p["text"] for p in emulator.posted] == ["@jane on it", "@jane also this"]


def _stranger_in_thread(store: Store, emulator: XEmulator) -> tuple[int, Mention, Mention]:
    """@jane (confirmed, order LS-100234) posts; @eve_attacker replies in the same X thread."""
    config = shop_config()
    order = add_order(store)
    case_id = make_case(store, config, emulator, order=order, text="@LarkspurHelp my Velvet cushion order LS-100234?")
    jane = store.mentions_for_case(case_id)[0]
    eve_id = emulator.add_post({"text": "@LarkspurHelp any update on this?", "username": "eve_attacker",
                                "created_at": (NOW + timedelta(minutes=3)).isoformat(), "in_reply_to": jane.external_id})
    eve = Mention(channel="x", external_id=eve_id, text="@LarkspurHelp any update on this?",
                  created_at=NOW + timedelta(minutes=3), author_handle="eve_attacker", in_reply_to=jane.external_id)
    Pipeline(store, config, KeywordClassifier()).ingest([eve])
    eve = store.mention_by_external_id("x", eve_id)  # type: ignore[assignment]
    assert eve.case_id == case_id  # it joins the thread's case
    return case_id, jane, eve


def test_stranger_in_thread_never_inherits_the_confirmed_link(store: Store, emulator: XEmulator) -> None:
    """Failure 7: a post by someone other than the case's customer is not linked to the customer's order."""
    config = shop_config()
    case_id, _, eve = _stranger_in_thread(store, emulator)
    link = link_mention(eve, store, config, store.get_case(case_id))
    assert not link.confirmed and link.customer_id is None and link.order_number is None


def test_reply_goes_to_the_customers_post_not_the_strangers(store: Store, emulator: XEmulator) -> None:
    """Failure 7: the default post answered is the customer's newest, never the stranger's newer one."""
    config = shop_config()
    case_id, jane, eve = _stranger_in_thread(store, emulator)
    queue_reply(store, config, case_id, "@jane your order LS-100234 is in transit with UPS", "ann")
    Outbox(store, config).send_due()
    assert len(emulator.posted) == 1
    assert emulator.posted[0]["reply"]["in_reply_to_tweet_id"] == jane.external_id


def test_the_strangers_post_never_receives_the_customers_data(store: Store, emulator: XEmulator) -> None:
    config = shop_config()
    case_id, _, eve = _stranger_in_thread(store, emulator)
    for text in ("@eve_attacker order LS-100234 is in transit", "@eve_attacker hi Jane, last scan Leeds hub",
                 "@eve_attacker tracking 1Z999AA10123456784", "@eve_attacker your Linen shirt is on its way"):
        with pytest.raises(ReplyRejected, match="not this case's customer"):
            queue_reply(store, config, case_id, text, "ann", parent_id=eve.id)
    queue_reply(store, config, case_id, "@eve_attacker hi! If you have an order with us, please DM us.", "ann",
                parent_id=eve.id)
    Outbox(store, config).send_due()
    assert [(p["text"], p["reply"]["in_reply_to_tweet_id"]) for p in emulator.posted] == [
        ("@eve_attacker hi! If you have an order with us, please DM us.", eve.external_id)]


def test_cli_reply_answers_the_post_in_reply_to_names(store: Store, emulator: XEmulator) -> None:
    """The console's "In reply to" had no CLI twin: `doorstep reply` always answered the default post
    (docs audit, 2026-12-06). --in-reply-to POST (an id of `doorstep case show`) chooses it, with the
    same checks: the stranger's post may be answered, never with the customer's details."""
    from commands.cli import cli

    case_id, _, eve = _stranger_in_thread(store, emulator)
    runner = CliRunner()
    leak = runner.invoke(cli, ["--db", str(store.path), "reply", "--case", str(case_id), "--in-reply-to", str(eve.id),
                               "--text", "@eve_attacker order LS-100234 is in transit"])
    assert leak.exit_code == 1 and "not this case's customer" in leak.output
    sent = runner.invoke(cli, ["--db", str(store.path), "reply", "--case", str(case_id), "--in-reply-to", str(eve.id),
                               "--text", "@eve_attacker please DM us your order number", "--send-now"])
    assert sent.exit_code == 0, sent.output
    assert [p["reply"]["in_reply_to_tweet_id"] for p in emulator.posted] == [eve.external_id]
    unknown = runner.invoke(cli, ["--db", str(store.path), "reply", "--case", str(case_id), "--in-reply-to", "999999",
                                  "--text", "hello"])
    assert unknown.exit_code == 1 and "post 999999 is not a customer post of case" in unknown.output


def test_a_template_with_no_post_to_answer_greets_the_customer_not_a_stranger(store: Store, emulator: XEmulator) -> None:
    """Without a post to answer (a direct message, a follow-up), the author's name came from the
    case's most serious post by anyone: "Hi Eve" to Jane when a stranger's angrier post joined her thread."""
    from responders.templates import render_template

    config = shop_config()
    case_id = make_case(store, config, emulator, text="@LarkspurHelp where is my parcel?", confirmed=False)
    jane = store.mentions_for_case(case_id)[0]
    Pipeline(store, config, KeywordClassifier()).ingest([Mention(
        channel="x", external_id="eve-angry", text="@LarkspurHelp useless, lost mine too!!", author_handle="eve_attacker",
        author_name="Eve Attacker", created_at=NOW + timedelta(minutes=3), in_reply_to=jane.external_id)])
    store.db.execute("update mentions set author_name = ? where id = ?", ["Jane Doe", jane.id])
    # A row stored before posts recorded whose they are (by_customer null counts): the stranger's is the peak.
    store.db.execute("update mentions set complaint = ?, urgency = ?, by_customer = null where external_id = ?",
                     [True, 0.99, "eve-angry"])
    assert store.peak_mention(case_id).author_handle == "eve_attacker"  # type: ignore[union-attr]
    assert render_template(store, config, case_id, "Hi {{ author_first_name }}", channel="x_dm") == "Hi Jane"


def test_send_anyway_overrides_only_the_refusal_the_agent_saw(store: Store, emulator: XEmulator) -> None:
    """Audit (two agents) finding 3: both refused while the other drafted; both pressed Send anyway; X got two."""
    from doorstep import presence
    from responders.outbox import AlreadyAnswered, latest_message_id

    config = shop_config()
    case_id = make_case(store, config, emulator)
    seen = latest_message_id(store, case_id)
    presence.touch(store, case_id, "sam", drafting=True)  # sam began typing first
    presence.touch(store, case_id, "priya", drafting=True)
    with pytest.raises(AlreadyAnswered, match="sam is replying") as priyas:
        queue_reply(store, config, case_id, "@jane priya here, on it", "priya", seen_up_to=seen)
    first = queue_reply(store, config, case_id, "@jane sam here, on it", "sam", seen_up_to=seen)
    # priya's page still shows "sam is replying": her Send anyway does not cover his queued reply.
    with pytest.raises(AlreadyAnswered, match=f"sam already answered @jane's post \\(queued, message {first.id}") as again:
        queue_reply(store, config, case_id, "@jane priya here, on it", "priya", seen_up_to=seen, force=True,
                    acknowledged_up_to=priyas.value.latest)
    assert [m.id for m in again.value.existing] == [first.id]
    Outbox(store, config).send_due()
    assert [p["text"] for p in emulator.posted] == ["@jane sam here, on it"]
    # Having now seen his reply, she may still send anyway (audited), as may the CLI's --force.
    queue_reply(store, config, case_id, "@jane priya here, on it", "priya", seen_up_to=seen, force=True,
                acknowledged_up_to=again.value.latest)
    Outbox(store, config).send_due()
    assert len(emulator.posted) == 2


def test_when_both_agents_draft_the_first_to_start_answers_and_the_other_is_told(
        store: Store, emulator: XEmulator) -> None:
    """Final browser check, finding 1: priya and sam both typed on one case and each was refused
    ("X is replying right now"), so the customer got no answer at all. The one who began typing
    first may queue; the other is refused; once the first reply is queued, their drafting no longer
    blocks anyone (their page may not have said it stopped yet), and the second answer is refused as one."""
    from datetime import timedelta as td

    from doorstep import presence
    from doorstep.models import utcnow
    from responders.outbox import AlreadyAnswered, latest_message_id

    config = shop_config()
    case_id = make_case(store, config, emulator)
    seen = latest_message_id(store, case_id)
    start = utcnow() - td(seconds=20)
    presence.touch(store, case_id, "priya", drafting=True, now=start)
    presence.touch(store, case_id, "sam", drafting=True, now=start + td(seconds=4))
    presence.touch(store, case_id, "priya", drafting=True, now=start + td(seconds=8))  # her heartbeat: still typing
    with pytest.raises(AlreadyAnswered, match="priya is replying"):
        queue_reply(store, config, case_id, "@jane sam here", "sam", seen_up_to=seen)
    first = queue_reply(store, config, case_id, "@jane priya here, on it", "priya", seen_up_to=seen)
    with pytest.raises(AlreadyAnswered, match="priya already answered") as refused:
        queue_reply(store, config, case_id, "@jane sam here", "sam", seen_up_to=seen)
    assert "is replying" not in str(refused.value)  # her reply is queued: she is no longer "replying"
    Outbox(store, config).send_due()
    assert [p["text"] for p in emulator.posted] == [first.text]


def test_a_reply_on_a_case_resolved_since_it_was_opened_is_refused_and_send_anyway_reopens_it(
        store: Store, emulator: XEmulator) -> None:
    """Audit (two agents) finding 2: a reply went out on a case a colleague had just resolved; it stayed resolved."""
    from responders.outbox import AlreadyAnswered, latest_message_id

    config = shop_config()
    case_id = make_case(store, config, emulator)
    opened = store.get_case(case_id)
    seen = latest_message_id(store, case_id)
    store.update_case(case_id, opened.version, "priya", status="resolved", resolved_at=NOW)  # type: ignore[union-attr]
    with pytest.raises(AlreadyAnswered, match="priya resolved this case") as refused:
        queue_reply(store, config, case_id, "@jane we'll update you today", "sam", seen_up_to=seen,
                    seen_status=opened.status)  # type: ignore[union-attr]
    assert "Not queued" in str(refused.value)
    Outbox(store, config).send_due()
    assert emulator.posted == []
    assert store.get_case(case_id).status == "resolved"  # type: ignore[union-attr]
    # Send anyway, having seen the refusal: queued, and the case reopens so someone follows up.
    queue_reply(store, config, case_id, "@jane we'll update you today", "sam", seen_up_to=seen, force=True,
                acknowledged_up_to=refused.value.latest, seen_status=refused.value.status)
    after = store.get_case(case_id)
    assert after.status == "open" and after.resolved_at is None  # type: ignore[union-attr]
    Outbox(store, config).send_due()
    assert [p["text"] for p in emulator.posted] == ["@jane we'll update you today"]


def test_send_anyway_after_a_drafting_refusal_does_not_cover_a_resolve_since(store: Store, emulator: XEmulator) -> None:
    from doorstep import presence
    from responders.outbox import AlreadyAnswered, latest_message_id

    config = shop_config()
    case_id = make_case(store, config, emulator)
    opened = store.get_case(case_id)
    seen = latest_message_id(store, case_id)
    presence.touch(store, case_id, "priya", drafting=True)
    with pytest.raises(AlreadyAnswered, match="priya is replying") as refused:
        queue_reply(store, config, case_id, "@jane on it", "sam", seen_up_to=seen, seen_status=opened.status)  # type: ignore[union-attr]
    store.update_case(case_id, opened.version, "priya", status="resolved", resolved_at=NOW)  # type: ignore[union-attr]
    with pytest.raises(AlreadyAnswered, match="priya resolved this case"):
        queue_reply(store, config, case_id, "@jane on it", "sam", seen_up_to=seen, force=True,
                    acknowledged_up_to=refused.value.latest, seen_status=refused.value.status)
    assert store.get_case(case_id).status == "resolved"  # type: ignore[union-attr]


def test_cli_reply_on_a_resolved_case_is_refused_unless_force_which_reopens_it(tmp_path, emulator: XEmulator) -> None:  # noqa: ANN001
    """Agents audit, left open last round: `doorstep reply` went out on a resolved case, which stayed
    resolved, so nobody followed up what the reply promised (the console refuses it and reopens on
    "Send anyway")."""
    from commands.cli import cli

    db = tmp_path / "d.db"
    store = Store(db)
    config = shop_config()
    case_id = make_case(store, config, emulator)
    case = store.get_case(case_id)
    store.update_case(case_id, case.version, "priya", status="resolved", resolved_at=NOW)  # type: ignore[union-attr]
    store.close()
    runner = CliRunner()
    refused = runner.invoke(cli, ["--db", str(db), "reply", "--case", str(case_id), "--text", "@jane we'll check",
                                  "--as", "sam", "--send-now"])
    assert refused.exit_code == 1 and "priya resolved this case" in refused.output, refused.output
    assert "--force" in refused.output and "Traceback" not in refused.output
    assert emulator.posted == []
    forced = runner.invoke(cli, ["--db", str(db), "reply", "--case", str(case_id), "--text", "@jane we'll check",
                                 "--as", "sam", "--force", "--send-now"])
    assert forced.exit_code == 0, forced.output
    assert [p["text"] for p in emulator.posted] == ["@jane we'll check"]
    store = Store(db)
    assert store.get_case(case_id).status == "open"  # type: ignore[union-attr]
    assert any(e.action == "reply.send_anyway" and e.details.get("reopened") for e in store.audit_trail(case_id))


def test_an_answer_to_a_stranger_in_the_thread_does_not_count_as_answering_the_customer(
        store: Store, emulator: XEmulator) -> None:
    """Lifecycle audit finding 3: priya answered @eve (a stranger who replied in jane's thread); sam's
    answer to jane was then refused as "priya already answered @jane's post", quoting the reply to eve."""
    case_id, jane, eve = _stranger_in_thread(store, emulator)
    config = shop_config()
    queue_reply(store, config, case_id, "@eve_attacker sorry to hear that, could you DM us?", "priya",
                parent_id=eve.id)
    answer = queue_reply(store, config, case_id, "@jane we're on it, sorry for the wait", "sam", parent_id=jane.id)
    Outbox(store, config).send_due()
    assert [(p["text"], p["reply"]["in_reply_to_tweet_id"]) for p in emulator.posted] == [
        ("@eve_attacker sorry to hear that, could you DM us?", eve.external_id),
        ("@jane we're on it, sorry for the wait", jane.external_id)]
    assert answer.created_by == "sam"
    # Jane's post is answered now: a second answer to it is refused as before.
    from responders.outbox import AlreadyAnswered

    with pytest.raises(AlreadyAnswered, match="sam already answered @jane's post"):
        queue_reply(store, config, case_id, "@jane another word", "tom", parent_id=jane.id)


def test_the_resolved_refusal_says_when_the_case_was_resolved_not_when_it_was_recorded(
        store: Store, emulator: XEmulator) -> None:
    """README audit: the refusal took the time of the audit event ("16:55 UTC on 06 Dec", the moment the
    demo was built) instead of the case's own resolution time (13 Nov), and gave no year."""
    from datetime import datetime, timezone

    from responders.outbox import AlreadyAnswered

    config = shop_config()
    case_id = make_case(store, config, emulator)
    case = store.get_case(case_id)
    resolved = datetime(2025, 11, 13, 9, 30, tzinfo=timezone.utc)
    store.update_case(case_id, case.version, "priya", status="resolved", resolved_at=resolved)  # type: ignore[union-attr]
    with pytest.raises(AlreadyAnswered, match="priya resolved this case at 09:30 UTC on 13 Nov 2025"):
        queue_reply(store, config, case_id, "@jane hello again", "sam", seen_status="open")


def test_a_colleagues_unseen_direct_message_is_named_as_one(store: Store, emulator: XEmulator) -> None:
    """A colleague answered the customer by DM; an agent who had not seen it replies in public. That is a second
    answer to the customer (two agents, two stories), so it is still refused, but the refusal read "(queued,
    message 1, x_dm)" (browser check): it says it was a direct message and that a public answer too needs "send
    anyway"."""
    from responders.outbox import AlreadyAnswered, latest_message_id

    config = shop_config()
    case_id = make_case(store, config, emulator)
    seen_by_lead = latest_message_id(store, case_id)
    queue_reply(store, config, case_id, "Could you send us your order number here, please?", "ann", channel="x_dm")
    with pytest.raises(AlreadyAnswered) as refused:
        queue_reply(store, config, case_id, "@jane we're looking into it now", "lead", seen_up_to=seen_by_lead)
    said = str(refused.value)
    assert "ann already answered @jane's post (queued, message" in said and "by X direct message" in said, said
    assert "x_dm" not in said and "answered privately" in said, said
