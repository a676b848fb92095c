"""When each part of the first inbox after login appears in the browser (issue 17), per round.

    .venv/bin/python bench/console_firstpaint.py --db /tmp/casespeed/bench.db --repeat 4

Uses bench/console_bench.py's database, console and page states. Each round logs in from a new tab
and records, on every animation frame from the click on "Log in", the first moment each of the
bench's "done" conditions held: the Inbox heading, the caption's total, the table's element, its
canvas, the first row's text painted on the canvas (``ink``: dark pixels in the first data row),
no stale element, Streamlit's running indicator gone, and the first row's accessible cell holding
the top case (``cell``, the last condition console_bench.py waits for). Times in ms from the click.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import console_bench as cb  # noqa: E402

from doorstep.store import Store  # noqa: E402

#: Installed just before the click: polls the conditions on every frame for 5 s.
POLL_JS = """(e) => { const t0 = performance.now(); window.__cond = {}; const d = document;
 const f = () => { const now = Math.round(performance.now() - t0); const c = window.__cond;
  const set = (k, v) => { if (v && !(k in c)) c[k] = now; if (!v && k in c) delete c[k]; };
  set('running gone', !d.querySelector('[data-testid="stStatusWidget"]'));
  set('no stale', !d.querySelector('[data-stale="true"]'));
  set('heading', [...d.querySelectorAll('h1')].some(h => h.innerText.trim().startsWith('Inbox')));
  const caps = [...d.querySelectorAll('[data-testid="stCaptionContainer"]')].map(c => c.innerText.trim());
  set('caption', caps.some(t => t.startsWith(`${e.total} case(s)`)));
  const grid = d.querySelector('[data-testid="stDataFrame"]'); set('table', !!grid);
  const cell = grid && grid.querySelector('[role="row"][aria-rowindex="2"] [role="gridcell"][aria-colindex="1"]');
  set('cell', !!cell && cell.innerText.trim() === String(e.top));
  const cv = grid && grid.querySelector('canvas'); set('canvas', !!cv);
  if (cv && cv.width > 100 && !('ink' in c)) { const r = cv.getBoundingClientRect(), s = cv.width / r.width;
    const px = cv.getContext('2d').getImageData(Math.round(60 * s), Math.round(52 * s), Math.round(400 * s),
                                                Math.round(6 * s)).data;
    let dark = 0; for (let k = 0; k < px.length; k += 4) if (px[k] < 120 && px[k + 3] > 0) dark++;
    if (dark > 5) c['ink'] = now; }
  if (now < 5000) requestAnimationFrame(f); };
 requestAnimationFrame(f); }"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True, help="a database bench/console_bench.py has prepared")
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    store = Store(args.db)
    port = cb.free_port()
    out = cb.REPO / "test-artifacts" / "console_firstpaint"
    out.mkdir(parents=True, exist_ok=True)
    console = cb.start_console(args.db, port, out / "streamlit.log")
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=cb.CHROMIUM, headless=True, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            context = browser.new_context(viewport={"width": 1500, "height": 1000})
            for i in range(-1, args.repeat):
                context.clear_cookies()
                page = context.new_page()
                page.set_default_timeout(60000)
                cb.login_form(page, f"http://127.0.0.1:{port}")
                page.wait_for_timeout(800)
                state = cb.expected(store, {})
                page.evaluate(POLL_JS, state)
                t0 = time.perf_counter()
                page.get_by_role("button", name="Log in").click()
                cb.wait_done(page, state)
                ms = (time.perf_counter() - t0) * 1000
                seen = sorted(page.evaluate("() => window.__cond").items(), key=lambda kv: kv[1])
                print(f"round {i}{' (warm-up)' if i < 0 else ''}, load {os.getloadavg()[0]:.1f}: {ms:.0f} ms; "
                      + ", ".join(f"{k} {v}" for k, v in seen), flush=True)
                page.close()
            browser.close()
    finally:
        console.terminate()
        console.wait(timeout=10)
        store.close()


if __name__ == "__main__":
    main()
