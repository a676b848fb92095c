"""Open case and back to inbox at 1M, alone, with what the case page draws (issue 17, sixth round).

    .venv/bin/python bench/console_case_probe.py /tmp/copy-of-the-1M.db 8

Per round (a new tab: log in, next page, click a row as bench/console_bench.py does): the time from
the row click until the case page is done, the number of Streamlit elements, select boxes, forms, data
grids, ... and DOM nodes on it, then the time from the "Inbox" link until the inbox is done. One JSON
line per round (round -1 is the warm-up); a screenshot of round 0's case page in test-artifacts/.
"""
import sys, time, os, json
sys.path.insert(0, "bench"); sys.path.insert(0, ".")
import console_bench as cb
from console.inbox import _query
from doorstep.store import Store
db = sys.argv[1]; rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
cb.prepare(db, 1_000_000, 200_000); store = Store(db); port = cb.free_port()
con = cb.start_console(db, port, cb.ARTIFACTS.parent / "case_probe-streamlit.log")
url = f"http://127.0.0.1:{port}"
COUNT = """() => { const q = s => document.querySelectorAll(s).length; return {
 elements: q('[data-testid="stElementContainer"]'), dataframes: q('[data-testid="stDataFrame"]'),
 tables: q('[data-testid="stTable"]'), vega: q('[data-testid="stVegaLiteChart"], .vega-embed'), iframes: q('iframe'),
 markdown: q('[data-testid="stMarkdown"]'), caption: q('[data-testid="stCaptionContainer"]'), text: q('[data-testid="stText"]'),
 expanders: q('[data-testid="stExpander"]'), forms: q('[data-testid="stForm"]'), buttons: q('button'), selects: q('[data-testid="stSelectbox"]'),
 dom: q('*')}; }"""
from playwright.sync_api import sync_playwright
out = []
try:
  with sync_playwright() as p:
    b = p.chromium.launch(executable_path=cb.CHROMIUM, headless=True, args=["--headless","--no-sandbox","--disable-gpu","--disable-background-networking"])
    ctx = b.new_context(viewport={"width": 1500, "height": 1000})
    for i in range(-1, rounds):
        ctx.clear_cookies(); page = ctx.new_page(); page.set_default_timeout(60000)
        cb.login_form(page, url); page.get_by_role("button", name="Log in").click(); cb.wait_done(page, cb.expected(store, {}))
        paged = {"offset": 50}
        page.get_by_role("button", name="Next").click(); cb.wait_done(page, cb.expected(store, paged))
        row = (i + 3) % 18
        cid = store.inbox(_query(paged))[row].id
        page.locator('[data-testid="stDataFrame"]').scroll_into_view_if_needed(); page.wait_for_timeout(400)
        t0 = time.perf_counter(); cb.click_row(page, row); cb.wait_done(page, {"kind": "case", "id": cid})
        o = (time.perf_counter() - t0) * 1000
        page.wait_for_timeout(300); counts = page.evaluate(COUNT)
        if i == 0: page.screenshot(path=str(cb.ARTIFACTS.parent / "case_probe.png"), full_page=True)
        t0 = time.perf_counter(); page.get_by_role("link", name="Inbox").click(); cb.wait_done(page, cb.expected(store, paged))
        back = (time.perf_counter() - t0) * 1000
        r = {"round": i, "case": cid, "open_ms": round(o), "back_ms": round(back), "load": os.getloadavg()[0], **counts}
        print(json.dumps(r), flush=True); out.append(r); page.close()
finally:
    con.terminate(); con.wait(timeout=10)
