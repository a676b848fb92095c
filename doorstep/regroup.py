"""An agent corrects how posts were grouped: split a post out into a case of its own, merge two cases.

The pipeline groups posts by rules (doorstep/cases.py ``choose_case``); rules guess wrong
sometimes ("where is my parcel" three hours after a complaint about another one). Agents fix
it here. Both operations are optimistic like every other case change: they name the version
of each case the agent was looking at and are refused (``StaleCaseError``) if someone changed
it since, and both are in the audit log under the agent's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from doorstep.cases import new_case
from doorstep.config import Config
from doorstep.linking import link_mention
from doorstep.models import Case, Mention, utcnow
from doorstep.store import StaleCaseError, Store

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
    case it leaves; both cases are counted and prioritised again.
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
        if replies:
            fresh.first_response_at = min(m.created_at for m in replies)
        pipeline = Pipeline(store, config)
        fresh = _recount(pipeline, fresh, [mention, *replies])
        store.save_case(fresh, None)
        remaining = [m for m in posts if m.id not in {mention.id, *(r.id for r in replies)}]
        changes = _recount_changes(pipeline, source, remaining)
        store.update_case(case_id, expected_version, actor, **changes)
        store.audit(actor, "case.split", case_id, {"mention_id": mention_id, "new_case": fresh.id,
                                                   "moved": [m.id for m in (mention, *replies)]})
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
    stronger link (confirmed first, then the more confident).
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
        changes: dict[str, object] = {}
        if _link_strength(other) > _link_strength(keep):
            changes.update(customer_id=other.customer_id or keep.customer_id, order_number=other.order_number,
                           tracking_number=other.tracking_number, link_method=other.link_method,
                           link_confidence=other.link_confidence, link_confirmed=other.link_confirmed,
                           courier=other.courier or keep.courier)
        for field in ("brand", "courier", "customer_id", "assignee"):
            if getattr(keep, field) is None and getattr(other, field) is not None:
                changes.setdefault(field, getattr(other, field))
        answered = [t for t in (keep.first_response_at, other.first_response_at) if t is not None]
        if answered and keep.first_response_at is None:
            changes["first_response_at"] = min(answered)
        if keep.status == "resolved" and other.status != "resolved":
            changes.update(status=other.status, resolved_at=None)
        pipeline = Pipeline(store, config)
        merged_view = keep.model_copy(update=changes)
        changes.update(_recount_changes(pipeline, merged_view, store.mentions_for_case(keep_id)))
        store.update_case(keep_id, keep_version, actor, **changes)
        store.update_case(other_id, other_version, actor, status="resolved", resolved_at=utcnow(), mention_count=0,
                          merged_into=keep_id)
        store.audit(actor, "case.merge", keep_id, {"merged_case": other_id})
        store.audit(actor, "case.merged_into", other_id, {"into_case": keep_id})
    return store.get_case(keep_id)  # type: ignore[return-value]


def _link_strength(case: Case) -> tuple[bool, bool, float]:
    return (case.link_confirmed, case.order_number is not None, case.link_confidence)


def _recount(pipeline: Pipeline, case: Case, posts: list[Mention]) -> Case:
    """The case with its counts, times, labels, priority and SLA clocks worked out again from ``posts``."""
    inbound = [m for m in posts if not m.outbound]
    everything = sorted(posts, key=lambda m: m.created_at)
    case = case.model_copy(update={
        "mention_count": len(inbound),
        "opened_at": min(m.created_at for m in inbound) if inbound else case.opened_at,
        "last_activity_at": everything[-1].created_at if everything else case.last_activity_at,
    })
    if inbound:
        pipeline.reprioritise(case, max(inbound, key=lambda m: m.created_at))
    return case


#: The fields ``_recount`` works out.
RECOUNTED = ("mention_count", "opened_at", "last_activity_at", "priority", "priority_reasons", "intent", "sentiment",
             "complaint", "first_response_due", "resolution_due", "brand", "first_response_at", "next_response_due",
             "awaiting_since", "priority_band")


def _recount_changes(pipeline: Pipeline, case: Case, posts: list[Mention]) -> dict[str, object]:
    """What ``_recount`` changed, as fields for ``Store.update_case``."""
    after = _recount(pipeline, case, posts)
    return {f: getattr(after, f) for f in RECOUNTED if getattr(after, f) != getattr(case, f)}
