"""Who else has a case open, or is drafting a reply on it.

Why in the core: the console writes presence, and three actions read it before they act on a case a colleague
is typing a reply on: queueing a reply (``responders.outbox``), X on the case page and closing several cases
at once (:mod:`doorstep.closing`); one reading of the heartbeat, so they agree on who is drafting.

The store has no presence table, so presence is one JSON document per case in the
``cursors`` table (``presence:case:<id>`` -> {username: {"at": ISO time, "drafting": bool}}).
Entries older than :data:`PRESENCE_TTL` are dropped, so a closed browser tab disappears
after two minutes without any clean-up job. It is advisory; optimistic locking on the case
is what actually stops two agents overwriting each other.

So presence is best-effort: when the database is busy (an import is writing, say) a touch
waits at most :data:`PRESENCE_WAIT_S` and is then skipped, and a failed read shows nobody;
the page itself never fails because of presence.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from doorstep.dialect import DATABASE_ERRORS
from doorstep.models import utcnow
from doorstep.store import Store, iso, parse_time

PRESENCE_TTL = timedelta(minutes=2)
#: A colleague whose drafting heartbeat is older than this is no longer counted as drafting: the console
#: writes one every 30 s while the box holds words (and at once when it fills or empties), read every 5 s.
DRAFTING_FRESH = timedelta(seconds=45)
#: How long a presence write waits for the database's write lock before it is skipped.
PRESENCE_WAIT_S = 0.5

log = logging.getLogger("doorstep.doorstep.presence")


def _key(case_id: int) -> str:
    return f"presence:case:{case_id}"


def _load(store: Store, case_id: int) -> dict[str, dict[str, Any]]:
    raw = store.get_cursor(_key(case_id))
    try:
        data = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        data = {}
    return data if isinstance(data, dict) else {}


def _fresh(entries: dict[str, dict[str, Any]], now: datetime) -> dict[str, dict[str, Any]]:
    out = {}
    for user, entry in entries.items():
        at = parse_time(entry.get("at")) if isinstance(entry, dict) else None
        if at is not None and now - at <= PRESENCE_TTL:
            out[user] = entry
    return out


def touch(store: Store, case_id: int, username: str, *, drafting: bool = False, now: datetime | None = None) -> None:
    """Record that ``username`` is looking at (or drafting on) the case now (skipped if the database is busy)."""
    now = now or utcnow()
    try:
        with store.waiting_at_most(PRESENCE_WAIT_S), store.transaction():
            entries = _fresh(_load(store, case_id), now)
            before = entries.get(username) or {}
            # When this drafting began: of two colleagues typing, the one who began first answers
            # (responders.outbox._drafting_others).
            began = now.isoformat(timespec="microseconds")  # finer than a heartbeat: who began first
            since = (before.get("since") or began) if drafting and before.get("drafting") else began
            entries[username] = {"at": iso(now), "drafting": drafting, **({"since": since} if drafting else {})}
            store.set_cursor(_key(case_id), json.dumps(entries, sort_keys=True))
    except DATABASE_ERRORS as exc:
        log.info("presence on case %s not recorded for %s: %s", case_id, username, exc)


def leave(store: Store, case_id: int, username: str) -> None:
    try:
        with store.waiting_at_most(PRESENCE_WAIT_S), store.transaction():
            entries = _load(store, case_id)
            if entries.pop(username, None) is not None:
                store.set_cursor(_key(case_id), json.dumps(entries, sort_keys=True))
    except DATABASE_ERRORS as exc:
        log.info("leaving case %s not recorded for %s: %s", case_id, username, exc)


def others(store: Store, case_id: int, username: str, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Other people on the case in the last two minutes: [{"user", "at", "drafting"}]."""
    now = now or utcnow()
    try:
        entries = _fresh(_load(store, case_id), now)
    except DATABASE_ERRORS as exc:
        log.info("presence on case %s not read: %s", case_id, exc)
        return []
    return [
        {"user": user, "at": parse_time(entry["at"]), "drafting": bool(entry.get("drafting"))}
        for user, entry in sorted(entries.items())
        if user != username
    ]


def drafting(store: Store, case_id: int, *, now: datetime | None = None) -> dict[str, datetime]:
    """Who is drafting a reply on the case right now: username -> when their drafting began.

    A fresh heartbeat (:data:`DRAFTING_FRESH`) that says "drafting", from someone who has not queued a reply on
    the case since it was written: one who has is done drafting, whatever their page last said."""
    now = now or utcnow()
    try:
        entries = _load(store, case_id)
    except DATABASE_ERRORS as exc:
        log.info("presence on case %s not read: %s", case_id, exc)
        return {}
    out = {}
    for user, entry in entries.items():
        if not isinstance(entry, dict) or not entry.get("drafting"):
            continue
        at = parse_time(entry.get("at"))
        if at is None or now - at > DRAFTING_FRESH:
            continue
        if store.db.execute("select 1 from outbound_messages where case_id = ? and kind = 'reply' and created_by = ? "
                            "and created_at >= ?", [case_id, user, entry.get("at")]).fetchone():
            continue
        out[user] = parse_time(entry.get("since")) or at
    return out
