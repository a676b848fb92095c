"""Outbound messages as the case page reads them (the outbox's writes live in responders)."""

from __future__ import annotations

from typing import Any

from doorstep.models import OutboundMessage
from doorstep.store.base import StoreBase, parse_time


def outbound_from_row(r: dict[str, Any]) -> OutboundMessage:
    data = {k: v for k, v in r.items() if k in OutboundMessage.model_fields}
    for key in ("created_at", "sent_at", "next_attempt_at"):
        data[key] = parse_time(data.get(key))
    return OutboundMessage(**data)


class OutboxStore(StoreBase):
    """Reads of ``outbound_messages``."""

    # ---------------------------------------------------------------- outbound
    def outbound_for_case(self, case_id: int) -> list[OutboundMessage]:
        rows = self.db.query("select * from outbound_messages where case_id = ? order by id", [case_id])
        return [outbound_from_row(r) for r in rows]

