"""An agent corrects how posts were grouped: split a post out into a case of its own, merge two cases.

The pipeline groups posts by rules (doorstep/cases.py ``choose_case``); rules guess wrong
sometimes ("where is my parcel" three hours after a complaint about another one). Agents fix
it here. Both operations are optimistic like every other case change: they name the version
of each case the agent was looking at and are refused (``StaleCaseError``) if someone changed
it since, and both are in the audit log under the agent's name.

What we said goes with what it answered: a split post takes our replies to it (and what hangs on
them: the follow-ups written from them, the questions those asked), so the new case shows its
answer and refuses a second one, and the case it left owes its own answer again. Each case's first
response, "waiting on the customer" and SLA clocks are then worked out from what it holds: it waits
on the customer only while our newest answer to them asked something and they have not written
since, so a merge that brings in a customer post written after our question ends the wait, as that
post arriving on the kept case would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from doorstep import sla
from doorstep.cases import new_case
from doorstep.config import Config
from doorstep.linking import link_mention
from doorstep.models import Case, Mention, utcnow
from doorstep.permissions import require
from doorstep.store import StaleCaseError, Store, parse_time
from doorstep.store.orders import HANDLE_CHANNEL

if TYPE_CHECKING:
    from doorstep.pipeline import Pipeline


class RegroupError(ValueError):
    """The split or merge cannot be done as asked; the message says why and what to do instead."""


def _check_version(store: Store, case_id: int, expected: int) -> Case:
    case = store.get_case(case_id)
    if case is None:
        raise RegroupError(f"no case {case_id}")
    if case.version != expected:
        row = store.db.execute("select updated_by from cases where id = ?", [case_id]).fetchone()
        raise StaleCaseError(case_id, expected, case.version, row[0] if row else None)
    return case


def split_post(store: Store, config: Config, case_id: int, mention_id: int, expected_version: int,
               actor: str) -> Case:
    """Move one customer post (and our replies to it) out of ``case_id`` into a new case; return the new case.

    The new case is linked afresh from the post alone (its numbers, its author), not from the
    case it leaves; both cases are counted and prioritised again. Our answers to the post go with
    it (see :func:`_messages_about`): left behind, the new case would show no answer (a colleague
    answers the post a second time) and the old one would count it as its own first response,
    wait on the customer for a question about the other issue and follow it up with an e-mail
    about the wrong order.
    """
    from doorstep.pipeline import Pipeline

    with store.transaction():
        source = _check_version(store, case_id, expected_version)
        mention = store.get_mention(mention_id)
        if mention is None or mention.case_id != case_id:
            raise RegroupError(f"post {mention_id} is not in case {case_id}")
        if mention.outbound:
            raise RegroupError(f"post {mention_id} is our own reply; split the customer's post it answers")
        posts = store.mentions_for_case(case_id)
        if sum(1 for m in posts if not m.outbound) < 2:
            raise RegroupError(f"post {mention_id} is the only customer post of case {case_id}; nothing to split")
        replies = [m for m in posts if m.outbound and m.channel == mention.channel
                   and m.in_reply_to == mention.external_id]
        answering = _messages_about(store, case_id, mention, posts)
        link = link_mention(mention, store, config)
        names = {b.name for b in config.brands}
        brand = next((n for n in mention.matched if n in names), None)
        couriers = {c.name for c in config.couriers}
        shipment = store.shipment_brief(link.tracking_number) if link.tracking_number else None
        courier = shipment[1] if shipment else next((n for n in mention.matched if n in couriers), None)
        fresh = new_case(mention, link, brand, courier)
        fresh.id = store.insert_case(fresh)
        for moved in (mention, *replies):
            store.set_mention_case(moved.id, fresh.id)  # type: ignore[arg-type]
        messages = _move_messages(store, answering, fresh.id)
        pipeline = Pipeline(store, config)
        fresh_posts = [mention, *replies]
        took = _answers(store, fresh, fresh_posts)
        if took:
            fresh.first_response_at = min(a.at for a in took)
        fresh = _recount(pipeline, fresh, fresh_posts, took, may_start_wait=True)
        store.save_case(fresh, None)
        remaining = [m for m in posts if m.id not in {mention.id, *(r.id for r in replies)}]
        left = _answers(store, source, remaining)
        # The first response recorded on the case stands unless it was one of the answers that left
        # (at or after the first of them): then the first answer is the first of those still here.
        recorded = source.first_response_at
        if recorded is not None and took and recorded >= min(a.at for a in took):
            recorded = None
        first = min([a.at for a in left] + ([recorded] if recorded is not None else []), default=None)
        view = source.model_copy(update={"first_response_at": first})
        changes = _recount_changes(pipeline, view, remaining, left, base=source)
        store.update_case(case_id, expected_version, actor, action="regroup", because={"regroup": "split"},
                          **changes)
        store.audit(actor, "case.split", case_id, {"mention_id": mention_id, "new_case": fresh.id,
                                                   "moved": [m.id for m in (mention, *replies)],
                                                   "messages": messages})
        store.audit(actor, "case.split_from", fresh.id, {"mention_id": mention_id, "from_case": case_id})
    return store.get_case(fresh.id)  # type: ignore[arg-type, return-value]


def same_customer(a: Case, b: Case) -> bool:
    """Whether two cases are about the same person: the same customer record, or the same handle on one channel."""
    if a.customer_id and b.customer_id:
        return a.customer_id == b.customer_id
    handle_a = (a.author_handle or "").lstrip("@").casefold()
    handle_b = (b.author_handle or "").lstrip("@").casefold()
    return bool(handle_a) and a.channel == b.channel and handle_a == handle_b


def merge_cases(store: Store, config: Config, keep_id: int, keep_version: int, other_id: int, other_version: int,
                actor: str) -> Case:
    """Move every post, note, message, question and call back of ``other_id`` into ``keep_id``; the other
    case is closed as merged.

    Only cases of the same customer merge (one customer's issue per case; two customers'
    posts in one case would put one's order in front of the other). The kept case keeps the
    stronger link (confirmed first, then the more confident). The merge says the other case's
    author is the customer: their handle is recorded as the customer's (:func:`_vouch_for_handle`),
    so their posts keep speaking for her. A customer post the other case brings in, written after
    the question the kept case waits on, ends that wait (see :func:`_settle_wait`).
    """
    from doorstep.pipeline import Pipeline

    if keep_id == other_id:
        raise RegroupError(f"case {keep_id} cannot be merged into itself")
    with store.transaction():
        keep = _check_version(store, keep_id, keep_version)
        other = _check_version(store, other_id, other_version)
        if other.merged_into or keep.merged_into:
            merged = other if other.merged_into else keep
            raise RegroupError(f"case {merged.id} was already merged into case {merged.merged_into}")
        _require_merge(store, actor, keep, other)
        if not same_customer(keep, other):
            raise RegroupError(f"cases {keep_id} and {other_id} are not the same customer's "
                               f"(@{keep.author_handle or '?'} and @{other.author_handle or '?'}); only one "
                               "customer's cases can be merged")
        # Everything that belongs to the customer's issue goes with it: the questions we asked and
        # their answers, call-back tasks, the facts our automatic messages were written from and
        # the contact attempts (left behind, the kept case would offer a second call back).
        for table in ("mentions", "notes", "outbound_messages", "questions", "answers", "callbacks",
                      "automatic_messages", "contact_attempts"):
            store.db.execute(f"update {table} set case_id = ? where case_id = ?", [keep_id, other_id])
        vouched = _vouch_for_handle(store, keep, other)
        changes: dict[str, object] = {}
        if _link_strength(other) > _link_strength(keep):
            changes.update(customer_id=other.customer_id or keep.customer_id, order_number=other.order_number,
                           tracking_number=other.tracking_number, link_method=other.link_method,
                           link_confidence=other.link_confidence, link_confirmed=other.link_confirmed,
                           courier=other.courier or keep.courier)
        for field in ("brand", "courier", "customer_id"):
            if getattr(keep, field) is None and getattr(other, field) is not None:
                changes.setdefault(field, getattr(other, field))
        # An owner comes with open work only: a resolved case's former owner handed an unassigned open case was
        # an agent handing work to a colleague without a lead (security audit of today's changes, finding 2).
        if keep.assignee is None and other.assignee is not None and other.status != "resolved":
            changes["assignee"] = other.assignee
        answered = [t for t in (keep.first_response_at, other.first_response_at) if t is not None]
        if answered and keep.first_response_at is None:
            changes["first_response_at"] = min(answered)
        if keep.status == "resolved" and other.status != "resolved":
            # Reopened by the other's open work, which keeps its owner (or none): left to the kept case's, it was
            # handed to a colleague without a lead (audit of stop 39: sam's open case into priya's resolved one).
            changes.update(status=other.status, resolved_at=None, sla_paused_at=other.sla_paused_at,
                           assignee=other.assignee)
        pipeline = Pipeline(store, config)
        merged_view = keep.model_copy(update=changes)
        posts = store.mentions_for_case(keep_id)
        changes.update(_recount_changes(pipeline, merged_view, posts, _answers(store, merged_view, posts)))
        # A merge carries the other case's assignee and status over: checked as the split or merge it is.
        store.update_case(keep_id, keep_version, actor, action="regroup", because={"regroup": "merge"}, **changes)
        store.update_case(other_id, other_version, actor, action="regroup", because={"regroup": "merge"},
                          status="resolved", resolved_at=utcnow(),
                          mention_count=0,
                          merged_into=keep_id)
        store.audit(actor, "case.merge", keep_id, {"merged_case": other_id,
                                                   **({"customer_handle": vouched} if vouched else {})})
        store.audit(actor, "case.merged_into", other_id, {"into_case": keep_id})
    return store.get_case(keep_id)  # type: ignore[return-value]


def _require_merge(store: Store, actor: str, keep: Case, other: Case) -> None:
    """A merge moves one case's posts and messages into the other: where either is an open case held by
    someone else, that is taking (or handing over) a colleague's case, a lead's to do (audit: an agent
    merged a colleague's open case into hers). One's own and unassigned cases are an agent's to merge."""
    me = actor.strip().lower()
    held = [c for c in (keep, other) if c.assignee and c.assignee != me and c.status != "resolved"]
    if held:
        whose = " and ".join(f"{c.assignee}'s case {c.id}" for c in held)
        require(store, actor, "reassign", f"merge case {other.id} into case {keep.id} ({whose})", services=True)


def _link_strength(case: Case) -> tuple[bool, bool, float]:
    return (case.link_confirmed, case.order_number is not None, case.link_confidence)


@dataclass(frozen=True)
class _Answer:
    """One answer of ours to the case's customer: when, and its words (whether it asked them something)."""

    at: datetime
    text: str


def _network(channel: str) -> str:
    return channel.removesuffix("_dm")


def _messages_about(store: Store, case_id: int, post: Mention, posts: Sequence[Mention]) -> list[int]:
    """Ids of our replies on ``case_id`` that answer ``post``, whatever their status (a queued one is an
    answer too: the one-answer check counts it).

    A reply names the post it answers (same channel, ``in_reply_to``: public replies, e-mail answers to
    an e-mail). A private message (a direct message, an SMS or e-mail to the order's address) names
    none: it answers the customer's newest post written before it (on its own network, for a direct
    message), which is what "ask privately" writes about and what the one-answer check counts it as
    answering. One written before the split post, or after a later post of theirs, stays.
    """
    theirs = [m for m in posts if not m.outbound and m.by_customer is not False]
    found: list[int] = []
    for row in store.db.query("select id, channel, in_reply_to, created_at from outbound_messages "
                              "where case_id = ? and kind = 'reply' order by id", [case_id]):
        if row["in_reply_to"]:
            # A direct message names the public post it answers (responders/private.py): same network.
            if _network(row["channel"]) == _network(post.channel) and row["in_reply_to"] == post.external_id:
                found.append(int(row["id"]))
            continue
        written = parse_time(row["created_at"])
        network = row["channel"].removesuffix("_dm") if row["channel"].endswith("_dm") else None
        before = [m for m in theirs if written is not None and m.created_at <= written
                  and (network is None or m.channel.removesuffix("_dm") == network)]
        about = max(before, key=lambda m: (m.created_at, m.id or 0), default=None)
        if about is not None and about.id == post.id:
            found.append(int(row["id"]))
    return found


def _ids(values: Iterable[int]) -> tuple[str, list[int]]:
    """The ``?, ?, ?`` of an ``in (...)`` and its values."""
    values = list(values)
    return ",".join("?" * len(values)), values


def _move_messages(store: Store, message_ids: list[int], case_id: int) -> list[int]:
    """Move our messages ``message_ids`` to ``case_id`` with what hangs on them: the follow-ups written
    from them (a follow-up is its reply's, see responders/followup.py), the facts and contact attempts
    of each, the questions they asked and those questions' answers and call backs. Returns the ids of
    the messages moved."""
    if not message_ids:
        return []
    marks, ids = _ids(message_ids)
    follow_ups = [int(r[0]) for r in store.db.execute(
        f"select message_id from automatic_messages where reply_message_id in ({marks})", ids).fetchall()]
    marks, ids = _ids(dict.fromkeys([*message_ids, *follow_ups]))
    for table, key in (("outbound_messages", "id"), ("automatic_messages", "message_id"),
                       ("contact_attempts", "message_id")):
        store.db.execute(f"update {table} set case_id = ? where {key} in ({marks})", [case_id, *ids])
    questions = [int(r[0]) for r in store.db.execute(
        f"select id from questions where message_id in ({marks})", ids).fetchall()]
    if questions:
        asked, qids = _ids(questions)
        store.db.execute(f"update questions set case_id = ? where id in ({asked})", [case_id, *qids])
        for table in ("answers", "callbacks"):
            store.db.execute(f"update {table} set case_id = ? where question_id in ({asked})", [case_id, *qids])
    return ids


def _answers(store: Store, case: Case, posts: Sequence[Mention]) -> list[_Answer]:
    """Our answers to the case's customer that ``case`` holds now: our posts among ``posts`` (stored by
    the listeners) and the replies the outbox sent on the case, public or private, except a reply to
    someone else's post in the customer's thread (that answers and asks the customer nothing)."""
    from doorstep.cases import replied_to_customer

    found = [_Answer(m.created_at, m.text) for m in posts if m.outbound]
    for row in store.db.query("select channel, in_reply_to, text, sent_at from outbound_messages "
                              "where case_id = ? and kind = 'reply' and status = 'sent' order by id", [case.id]):
        sent = parse_time(row["sent_at"])
        if sent is not None and replied_to_customer(store, case, row["channel"], row["in_reply_to"]):
            found.append(_Answer(sent, row["text"]))
    return found


def _vouch_for_handle(store: Store, keep: Case, other: Case) -> dict[str, str] | None:
    """Record the other case's author as the customer's handle when the merge is what says so.

    Cases of one customer record (the agent linked both to her orders) merge even when the other
    case's author, on another network, is not on the record ("jane@mastodon.social"). Her posts
    there must keep speaking for her in the merged case, now and when the pipeline, the follow-up
    and the one-answer check ask later (doorstep.cases.is_customers_post reads the record), so the
    handle goes on the record. A handle already someone else's is left to them. Returns what was
    recorded (None: nothing needed).
    """
    handle = (other.author_handle or "").strip().lstrip("@").lower()
    if not handle or not other.channel or not keep.customer_id or keep.customer_id != other.customer_id:
        return None
    network = HANDLE_CHANNEL.get(other.channel, other.channel)
    same_author = (network == HANDLE_CHANNEL.get(keep.channel or "", keep.channel)
                   and handle == (keep.author_handle or "").lstrip("@").lower())
    if same_author or store.customer_id_by_handle(network, handle) is not None:
        return None
    store.db.execute("insert into customer_handles (channel, handle, customer_id) values (?, ?, ?) "
                     "on conflict (channel, handle) do nothing", [network, handle, keep.customer_id])
    return {"channel": network, "handle": handle}


def _settle_wait(case: Case, answers: Sequence[_Answer], posts: Sequence[Mention], config: Config, *,
                 may_start: bool) -> None:
    """Whether ``case`` (its clocks just worked out again by ``sla.replay``) waits on the customer.

    It waits only while our newest answer to them asked something and they have not written since.
    A wait that no longer holds ends: the case is open again, and when it ended with their post (one
    a merge brought in) its clocks get the paused time back (``sla.resume``); when it ended because
    the question left with a split post, the clocks were never the case's to pause. ``may_start``: a
    new case split out with our question to its post waits on the customer from that answer.
    Escalated and resolved cases keep their status.
    """
    from doorstep.cases import asks_question

    if case.status not in ("new", "open", "pending_customer"):
        return
    newest = max(answers, key=lambda a: a.at, default=None)
    wrote = sorted(m.created_at for m in posts if not m.outbound and m.by_customer is not False)
    if newest is not None and asks_question(newest.text) and not any(at > newest.at for at in wrote):
        if case.status != "pending_customer" and may_start:
            case.status, case.sla_paused_at = "pending_customer", newest.at
        return
    if case.status == "pending_customer":
        paused_at, case.status = case.sla_paused_at, "open"
        ended = next((at for at in wrote if paused_at is not None and at > paused_at), None)
        if paused_at is not None and ended is not None:
            sla.resume(case, paused_at, ended, config)
        case.sla_paused_at = None
    elif case.status == "new" and answers and may_start:
        case.status = "open"


def _recount(pipeline: Pipeline, case: Case, posts: list[Mention], answers: Sequence[_Answer] = (), *,
             may_start_wait: bool = False) -> Case:
    """The case with its counts, times, labels, priority, SLA clocks and "waiting on the customer"
    worked out again from ``posts`` and our ``answers``."""
    inbound = [m for m in posts if not m.outbound]
    everything = sorted(posts, key=lambda m: m.created_at)
    case = case.model_copy(update={
        "mention_count": len(inbound),
        "opened_at": min(m.created_at for m in inbound) if inbound else case.opened_at,
        "last_activity_at": everything[-1].created_at if everything else case.last_activity_at,
    })
    if inbound:
        pipeline.reprioritise(case, max(inbound, key=lambda m: m.created_at), [a.at for a in answers])
        # By the flags reprioritise just worked out again (whose each post is, in this case).
        flags = {m.id: m.by_customer for m in pipeline.store.mentions_for_case(case.id)} if case.id else {}
        posts = [m.model_copy(update={"by_customer": flags.get(m.id, m.by_customer)}) for m in posts]
        _settle_wait(case, answers, posts, pipeline.config, may_start=may_start_wait)
    return case


#: The fields ``_recount`` works out.
RECOUNTED = ("mention_count", "opened_at", "last_activity_at", "priority", "priority_reasons", "intent", "sentiment",
             "complaint", "first_response_due", "resolution_due", "brand", "first_response_at", "next_response_due",
             "awaiting_since", "priority_band", "status", "sla_paused_at", "snoozed_until")


def _recount_changes(pipeline: Pipeline, case: Case, posts: list[Mention], answers: Sequence[_Answer] = (), *,
                     base: Case | None = None) -> dict[str, object]:
    """What ``_recount`` changed, as fields for ``Store.update_case``: against ``base`` (default ``case``)."""
    after = _recount(pipeline, case, posts, answers)
    base = base or case
    return {f: getattr(after, f) for f in RECOUNTED if getattr(after, f) != getattr(base, f)}
