"""Resolving a case while messages of it have not gone: which hold it up, which it retires, in words.

One rule for every way a case gets resolved (the case page's Set status and "Resolve and next", a call
back's "Resolved"): a reply or an escalation that is failed, retrying, queued or being sent still goes
out (or stays failed) on a resolved case, which nobody watches any more, so resolving past it needs an
explicit confirmation. A rule's follow-up or outreach message that has not left never goes out on a
resolved case (the outbox and the Approvals page re-check it and cancel it), so resolving retires it
instead of being held up by it. The rule lived in the case page, and the Call backs page's "Resolved"
resolved past a failed reply without a word (maintainer audit).
"""

from __future__ import annotations

from typing import Any

from doorstep.store import Store

#: Kinds of outbound message (``outbound_messages.kind``) whose key does not read as a word.
KIND_WORDS = {"follow_up": "follow-up", "outreach": "outreach message", "report": "weekly report"}
#: The kinds of a rule's messages to the customer: re-checked right before they go (or are approved) and
#: cancelled where the case is no longer open (responders.automatic.recheck, "the case is resolved").
RETIRED_BY_RESOLVING = ("follow_up", "outreach")


def kind_name(kind: str | None) -> str:
    """An outbound message's kind: "follow_up" reads "follow-up", "outreach" "outreach message"."""
    return KIND_WORDS.get(kind or "", (kind or "-").replace("_", " "))


def undelivered_messages(store: Store, case_id: int) -> list[dict[str, Any]]:
    """Replies and escalations of the case that have not reached anyone: failed, retrying after an error,
    or waiting for approval. Shown in the case header; resolving asks for confirmation while any exist,
    except for a rule's messages that resolving retires (:func:`resolve_holds`)."""
    return list(store.db.query(
        "select id, kind, channel, target, status, last_error, account from outbound_messages where case_id = ? and "
        "kind in ('reply', 'escalation', 'follow_up', 'outreach') and (status in ('failed', 'awaiting_approval') or "
        "(status in ('queued', 'sending') and last_error is not null)) order by id", [case_id]))


def pending_messages(store: Store, case_id: int) -> list[dict[str, Any]]:
    """Undelivered ones plus those still queued or being sent; ``automatic``: written by a rule, whose facts
    the outbox re-checks before it goes (``automatic_messages``)."""
    return list(store.db.query(
        "select o.id, o.kind, o.channel, o.status, o.last_error, (case when exists (select 1 from automatic_messages a "
        "where a.message_id = o.id) then 1 else 0 end) as automatic from outbound_messages o where o.case_id = ? and "
        "o.kind in ('reply', 'escalation', 'follow_up', 'outreach') and o.status in ('failed', 'awaiting_approval', "
        "'queued', 'sending') order by o.id", [case_id]))


def resolve_holds(store: Store, case_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The case's pending messages in two: those resolving needs a confirmation for, and those it retires.

    Before, a follow-up awaiting the lead's approval refused resolving as "1 reply/escalation message(s)
    are pending or failed" (browser check). One being sent right now is past recalling: it holds, as a reply.
    """
    hold_up, retired = [], []
    for message in pending_messages(store, case_id):
        moot = (message["kind"] in RETIRED_BY_RESOLVING and message["automatic"]
                and message["status"] in ("awaiting_approval", "queued", "failed"))
        (retired if moot else hold_up).append(message)
    return hold_up, retired


def _pending_state(message: dict[str, Any]) -> str:
    if message["status"] == "queued" and message.get("last_error"):
        return "retrying after an error"
    return {"awaiting_approval": "awaiting approval", "sending": "being sent"}.get(message["status"], message["status"])


def pending_words(messages: list[dict[str, Any]]) -> str:
    """"1 escalation failed, 2 replies queued": pending messages counted by kind and state, in their order."""
    counts: dict[tuple[str, str], int] = {}
    for message in messages:
        key = (kind_name(message["kind"]), _pending_state(message))
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {kind if n == 1 else kind[:-1] + 'ies' if kind.endswith('y') else kind + 's'} {state}"
                     for (kind, state), n in counts.items())


def held_up_words(verb: str, hold_up: list[dict[str, Any]]) -> str:
    """"Not resolved: 3 messages are pending or failed (1 escalation failed, 2 replies queued)"."""
    n = len(hold_up)
    return (f"Not {verb}: {n} message{'' if n == 1 else 's'} {'is' if n == 1 else 'are'} pending or failed "
            f"({pending_words(hold_up)})")


def retired_words(retired: list[dict[str, Any]]) -> str:
    """What resolving does to the rule's messages that had not gone out ("" when there were none)."""
    if not retired:
        return ""
    return f"; its {pending_words(retired)} will not be sent while the case stays resolved"
