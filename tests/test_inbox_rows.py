"""An inbox row says enough to pick the next case: the post's words, who wrote it, what needs care, who has it, why.

Reported: rows showed no words of the customer's post, no customer name, VIP or needs-review
marker; assignee, "why it is high" and last activity were off-screen to the right at 1440 px.
"""

from __future__ import annotations

from console.inbox import ROW_COLUMNS, short_sla, snippet, top_reason
from doorstep.models import Customer
from doorstep.store import Store
from test_console_apptest import db, demo_template, page  # noqa: F401 - fixtures


def _frame(at):  # type: ignore[no-untyped-def]
    table = at.dataframe[0].value
    return table.data if hasattr(table, "data") else table


def test_rows_carry_the_newest_post_the_customer_and_the_markers(db: Store) -> None:  # noqa: F811
    case = next(c for c in db.inbox() if c.customer_id and c.author_handle)
    customer = db.get_customer(case.customer_id)  # type: ignore[arg-type]
    db.upsert_customer(Customer(id=customer.id, name=customer.name, vip=True), fields={"vip"})  # type: ignore[union-attr]
    newest = max((m for m in db.mentions_for_case(case.id) if not m.outbound), key=lambda m: (m.created_at, m.id))
    db.db.execute("update mentions set needs_review = 1 where id = ?", [newest.id])
    at = page("inbox", "ann", db)
    assert not at.exception, at.exception
    frame = _frame(at)
    assert list(frame.columns) == list(ROW_COLUMNS)
    row = frame[frame["case"] == case.id].iloc[0]
    assert snippet(newest.text)[:20] in row["newest post"]
    assert row["customer"] == f"{customer.name} · @{case.author_handle}"  # type: ignore[union-attr]
    assert "★ VIP" in row["flags"] and "needs review" in row["flags"]
    assert row["assignee"] == (case.assignee or "")
    assert row["priority"].startswith(f"{case.priority:.0f}")


def test_row_wording() -> None:
    assert snippet("@LarkspurHelp   any news?\nThis is getting ridiculous") == "any news? This is getting ridiculous"
    long = "word " * 40
    cut = snippet(long, 30)
    assert len(cut) <= 30 and cut.endswith("…") and not cut[:-1].endswith(" ")
    assert snippet("@only_a_handle") == "@only_a_handle"
    assert top_reason(["complaint (+25)", "failed delivery (+14)", "VIP customer (+10)"]) == "failed delivery (+14)"
    assert top_reason(["complaint (+25)"]) == "complaint (+25)" and top_reason([]) == ""
    assert short_sla("first response overdue 2h44m") == "answer overdue 2h44m"
    assert short_sla("resolution due in 5h42m") == "resolve in 5h42m"


def test_the_row_fits_a_1366_px_screen_beside_the_sidebar() -> None:
    # Measured in Chromium at 1366 px: the grid's frame is 904 px (the sidebar takes 300, the page's padding 162),
    # of which the row-select column takes 32 (tests/test_case_page_browser.py checks it in the browser).
    assert sum(c["width"] for c in ROW_COLUMNS.values()) <= 904 - 32
