"""Listener cursors: where each inbound channel's polling stopped."""

from __future__ import annotations

from doorstep.models import utcnow
from doorstep.store.base import StoreBase, iso


class CursorStore(StoreBase):
    """Reads and writes of ``cursors``."""

    def get_cursor(self, name: str) -> str | None:
        row = self.db.execute("select value from cursors where name = ?", [name]).fetchone()
        return row[0] if row else None

    def set_cursor(self, name: str, value: str) -> None:
        self.db.execute(
            "insert into cursors (name, value, updated_at) values (?, ?, ?) on conflict (name) do update set "
            "value = excluded.value, updated_at = excluded.updated_at", [name, value, iso(utcnow())]
        )

