"""Notes and the audit trail: who did what to which case."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from doorstep.models import AuditEvent, Note, utcnow
from doorstep.permissions import require
from doorstep.redaction import redact_details
from doorstep.store.base import MAX_PARAMETERS, StoreBase, _json, _unjson, iso, parse_time


class AuditStore(StoreBase):
    """Reads and writes of ``notes`` and ``audit_events``."""

    # ------------------------------------------------------ notes, audit, cursors
    def add_note(self, case_id: int, author: str, text: str) -> Note:
        """Leave ``author``'s note on the case: a console user who may ("note"), or the product's own
        machinery (the dialogue, a courier's update). Anyone else (a removed user's stale page, a
        made-up name) is refused with :class:`~doorstep.permissions.NotAllowed`, in the note's transaction."""
        with self.transaction():
            require(self, author, "note", f"add a note to case {case_id}", services=True)  # type: ignore[arg-type]
            now = iso(utcnow())
            cursor = self.db.execute(
                "insert into notes (case_id, author, text, created_at) values (?, ?, ?, ?)", [case_id, author, text, now]
            )
            self.audit(author, "case.note", case_id, {"note_id": cursor.lastrowid})
        return Note(id=cursor.lastrowid, case_id=case_id, author=author, text=text, created_at=parse_time(now))

    def notes(self, case_id: int) -> list[Note]:
        rows = self.db.query("select * from notes where case_id = ? order by id", [case_id])
        return [Note(**{**r, "created_at": parse_time(r["created_at"])}) for r in rows]

    def audit(self, actor: str, action: str, case_id: int | None = None, details: dict[str, Any] | None = None) -> None:
        self.db.execute(
            "insert into audit_events (at, actor, action, case_id, details) values (?, ?, ?, ?, ?)",
            [iso(utcnow()), actor, action, case_id, _json(redact_details(details or {}))],
        )

    def audit_many(self, events: Sequence[tuple[str, str, str, int | None, dict[str, Any] | None]]) -> None:
        """:meth:`audit` of many events at once, in this order: (time in stored form, actor, action,
        case id, details). The pipeline keeps a batch's events and writes them when it ends."""
        rows = [[at, actor, action, case_id, _json(redact_details(details or {}))]
                for at, actor, action, case_id, details in events]
        per_statement = MAX_PARAMETERS // 5
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            self.db.execute("insert into audit_events (at, actor, action, case_id, details) values "
                            + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk)), [v for row in chunk for v in row])

    def audit_trail(self, case_id: int | None = None, limit: int = 200) -> list[AuditEvent]:
        if case_id is None:
            rows = self.db.query("select * from audit_events order by id desc limit ?", [limit])
        else:
            rows = self.db.query("select * from audit_events where case_id = ? order by id limit ?", [case_id, limit])
        return [AuditEvent(**{**r, "at": parse_time(r["at"]), "details": _unjson(r["details"], {})}) for r in rows]

