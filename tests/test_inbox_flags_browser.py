"""A failing reply is readable in the inbox's "flags" column at 1366 and 1024 px wide, in headless Chromium.

Browser audit (low): at 1366x768 the flags cell read "★ VIP, needs r" for a VIP's case awaiting review whose reply
kept failing: the column (90 px) cut "⚠ reply retrying" and the failure came last, after the VIP star and the review
mark. At 1024 px, beside the sidebar, the column was not on screen at all (the grid scrolled sideways). A care team
lead must see that a reply is not going out.

How it is checked, honestly, on a grid that draws on a canvas: the words of each cell come from the grid's own
accessible table (glide-data-grid keeps one in the page for the columns it draws on screen), the column's edges
from the screenshot's pixels (the grid's vertical lines in the header row), and the flag's width from the grid's
font (``measureText`` with the font the grid draws in). The first flag must be the failure and fit between the
column's edges, less the cell's padding, inside the grid's visible frame. Screenshots:
``test-artifacts/e2e/inbox_flags_{width}.png``.
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.test_e2e_browser import ARTIFACTS, chromium_or_skip, launch_chromium, login, serve_console, wait_idle

pytestmark = [pytest.mark.e2e]

#: glide-data-grid's padding left and right of a cell's words (Streamlit's theme: 8 px).
CELL_PADDING = 8
#: The header row's band, in pixels from the grid's top, where the column lines are searched (the row is 35 px).
HEADER_BAND = (4, 30)
RETRYING = "⚠ reply retrying"


def _shop_env(tmp_path: Path) -> tuple[dict[str, str], int, int]:
    """The inbox audit's shop, with two cases at the top of the queue whose reply is retrying after an error:
    a plain one, and a VIP's whose newest post awaits review (the audit's "★ VIP, needs review, ⚠ reply retrying")."""
    from doorstep.models import Case, Customer, Mention, utcnow
    from doorstep.store import Store
    from responders.outbox import enqueue
    from tests.conftest import labels
    from tests.test_inbox_audit import _shop

    db = tmp_path / "inbox.db"
    store = Store(str(db))
    _shop(store)
    now = utcnow()
    store.upsert_customer(Customer(id="C-VIP", name="Vera Ives", vip=True, handles={"x": "vera_i"}))
    ids = []
    for n, (handle, customer) in enumerate((("dev_p", None), ("vera_i", "C-VIP"))):
        case_id = store.insert_case(Case(status="open", channel="x", author_handle=handle, customer_id=customer,
                                         brand="Larkspur Home", priority=200.0 - n, opened_at=now - timedelta(hours=1),
                                         last_activity_at=now, first_response_due=now + timedelta(minutes=20 + n),
                                         resolution_due=now + timedelta(days=1), mention_count=1))
        store.insert_mention(Mention(channel="x", external_id=f"flags-{n}", text="@LarkspurHelp where is my sofa?",
                                     created_at=now, author_handle=handle, thread_id=f"flags-{n}", case_id=case_id,
                                     labels=labels("late_delivery", "negative", True)))
        message = enqueue(store, kind="reply", channel="x", text="Sorry, we are on it", actor="lee",
                          idempotency_key=f"flags-reply-{n}", case_id=case_id, target=f"flags-{n}")
        # queued again after an error: what the outbox leaves while it retries (no worker runs here)
        store.db.execute("update outbound_messages set attempts = 2, last_error = 'could not reach the server' "
                         "where id = ?", [message.id])
        ids.append(case_id)
    store.db.execute("update mentions set needs_review = 1 where case_id = ?", [ids[1]])
    store.close()
    env = {"DOORSTEP_DB": str(db),
           "DOORSTEP_CONFIG": str(Path(__file__).resolve().parent.parent / "demo" / "doorstep.toml")}
    return env, ids[0], ids[1]


def _grid_cells(page: Any) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The column names the grid draws on screen, in order, and each drawn row's cells by column name, keyed by
    the row's case number (glide-data-grid's accessible table: it holds only the columns in view)."""
    headers, rows = page.evaluate("""() => {
        const g = document.querySelector('[data-testid=stDataFrame]');
        const heads = [...g.querySelectorAll('[role=columnheader]')]
            .map(h => [h.getAttribute('aria-colindex'), h.textContent.trim()]);
        const rows = [...g.querySelectorAll('[role=row]')].map(r => [...r.querySelectorAll('[role=gridcell]')]
            .map(c => [c.getAttribute('aria-colindex'), c.textContent]));
        return [heads, rows]; }""")
    names = {index: name for index, name in headers}
    by_case: dict[str, dict[str, str]] = {}
    for row in rows:
        cells = {names.get(index, index): text for index, text in row}
        if cells.get("case"):
            by_case[cells["case"]] = cells
    return [name for _, name in headers], by_case


def _column_lines(png: bytes) -> list[int]:
    """The x of each vertical line between the grid's columns, in the header row of a screenshot of the grid (its
    outer border left out).

    A line is a column of pixels of one colour from the band's top to its bottom, not the header's background, and
    of the colour most such columns have (a header's words never run the band's whole height; a name cut at its
    column's edge touches the line but is not one)."""
    from collections import Counter

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    band = pixels[HEADER_BAND[0]:HEADER_BAND[1]]
    width = band.shape[1]
    background = Counter(map(tuple, band.reshape(-1, 3))).most_common(1)[0][0]
    plain = {x: tuple(band[0, x]) for x in range(2, width - 2)
             if (band[:, x].max(axis=0) - band[:, x].min(axis=0)).max() <= 2
             and np.abs(band[0, x] - np.array(background)).max() > 6}
    if not plain:
        return []
    colour = np.array(Counter(plain.values()).most_common(1)[0][0])
    lines: list[int] = []
    for x, seen in sorted(plain.items()):
        if np.abs(np.array(seen) - colour).max() <= 3 and (not lines or x - lines[-1] > 2):
            lines.append(x)
    return lines


def _in_view(page: Any) -> dict[str, float]:
    """Scroll the page so the grid's header row is on screen below Streamlit's own header bar (fixed at the top, it
    hides what scrolls under it, as Playwright's element screenshot does); the grid's box in the viewport."""
    page.evaluate("""() => { const g = document.querySelector('[data-testid=stDataFrame]');
        const main = document.querySelector('[data-testid=stMain]');
        g.scrollIntoView({block: 'start'}); if (main) main.scrollTop -= 120; window.scrollBy(0, -120); }""")
    page.wait_for_timeout(500)
    box = page.locator("[data-testid=stDataFrame]").first.bounding_box()
    bar = page.evaluate("() => { const h = document.querySelector('[data-testid=stHeader]');"
                        " return h ? h.getBoundingClientRect().bottom : 0; }")
    assert box is not None and box["y"] >= bar, (box, bar)
    return box


@pytest.mark.parametrize("width", [1366, 1024])
def test_a_retrying_reply_reads_whole_in_the_flags_column(tmp_path: Path, width: int) -> None:
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    from console.inbox import ROW_COLUMNS

    env, plain_case, vip_case = _shop_env(tmp_path)
    with serve_console(tmp_path, env) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": width, "height": 768}).new_page()
            login(page, url, "lee")
            grid = page.locator("[data-testid=stDataFrame]").first
            grid.wait_for()
            page.wait_for_function("""(id) => [...document.querySelectorAll('[data-testid=stDataFrame] [role=gridcell]')]
                .some(c => c.textContent === id)""", arg=str(vip_case), timeout=20000)
            wait_idle(page)
            page.wait_for_timeout(500)  # the canvas is drawn after the accessible table
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"inbox_flags_{width}.png"))
            shown, rows = _grid_cells(page)
            font = page.evaluate("() => getComputedStyle(document.querySelector('[data-testid=stDataFrame]')).fontFamily")
            measure = page.evaluate("""([font, words]) => { const c = document.createElement('canvas').getContext('2d');
                c.font = `400 14px ${font}`; return c.measureText(words).width; }""", [font, RETRYING])
            frame = _in_view(page)
            shot = page.screenshot(clip={"x": frame["x"], "y": frame["y"], "width": frame["width"], "height": 40})
            lines = _column_lines(shot)
        finally:
            browser.close()
    assert "flags" in shown, f"at {width} px the flags column is not on screen; the grid shows {shown}"
    # The column's edges, as drawn: the first line ends the row-select column, then one line per column.
    column = list(ROW_COLUMNS).index("flags")
    case_width = ROW_COLUMNS["case"]["width"]
    assert len(lines) > 1 and abs(lines[1] - lines[0] - case_width) <= 1, (
        f"column lines not found where the case column ({case_width} px) is: {lines}")
    assert len(lines) > column + 1, (
        f"at {width} px the flags column's right edge is past the grid's visible frame ({frame['width']:.0f} px): "
        f"lines at {lines}")
    left, right = lines[column], lines[column + 1]
    assert measure + 2 * CELL_PADDING <= right - left, (
        f"at {width} px {RETRYING!r} needs {measure:.0f} px + padding; the flags column is {right - left} px")
    for case_id in (plain_case, vip_case):
        flags = rows[str(case_id)]["flags"]
        assert flags.split(", ")[0] == RETRYING, f"case {case_id}: the failure is not the first flag: {flags!r}"
