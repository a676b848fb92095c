"""Where the console's first load after login and "open case" spend their time (issue 17), per round.

    .venv/bin/python bench/console_trace.py --db /tmp/casespeed/bench.db --repeat 4 [--profile]

Uses bench/console_bench.py's database, console and page states. For each round (a new tab that
logs in, goes to the inbox's second page and clicks a row) it records, in the browser, every
websocket message sent and received and every long task (a main-thread task over 50 ms: mostly
React drawing what arrived), timed from the action, and the time the page reached its expected
state (the bench's figure). ``--profile`` also sets DOORSTEP_PROFILE, so each script run leaves a
cProfile file under test-artifacts/console_trace/prof (writing it delays the run's last message:
leave it off for the timings). Output: test-artifacts/console_trace/trace.json and a summary:

    open 1006 ms: out@170 | in x4 @178-186 | in x13 @316-330 | ... ; long tasks [start, ms] ...

"pointerdown@40" / "pointerup@45" / "click@46": the browser saw the driver's click; "out@170" is the browser sending
the click's rerun 170 ms after the click began; "in xN @a-b" are N messages (deltas) received
between a and b ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import console_bench as cb  # noqa: E402

from console.inbox import _query  # noqa: E402
from doorstep.store import Store  # noqa: E402

OUT = cb.REPO / "test-artifacts" / "console_trace"
#: Installed before the console's own scripts: websocket messages and long tasks, on the page's clock.
INIT_JS = """(() => { const W = window.WebSocket; window.__ws = []; window.__lt = [];
  window.WebSocket = function (...a) { const ws = new W(...a);
    ws.addEventListener('message', ev => window.__ws.push(['in', performance.timeOrigin + performance.now()]));
    const send = ws.send.bind(ws); ws.send = d => { window.__ws.push(['out', performance.timeOrigin + performance.now()]); return send(d); };
    return ws; };
  window.WebSocket.prototype = W.prototype; Object.assign(window.WebSocket, W);
  for (const kind of ['pointerdown', 'pointerup', 'click']) window.addEventListener(kind,
    () => window.__ws.push([kind, performance.timeOrigin + performance.now()]), true);
  new PerformanceObserver(l => l.getEntries().forEach(e => window.__lt.push([performance.timeOrigin + e.startTime, e.duration])))
    .observe({type: 'longtask'}); })()"""
MARK_JS = "() => { window.__at = performance.timeOrigin + performance.now(); }"
#: The messages and long tasks since the mark, and the time now, in ms from the mark. After a login's
#: reload the mark is gone with the old page: the new page's messages count from its own start.
READ_JS = """() => { const at = window.__at || performance.timeOrigin, r = x => Math.round(x - at);
  return {now: r(performance.timeOrigin + performance.now()), reloaded: !window.__at, at_epoch_ms: at,
          ws: window.__ws.filter(m => m[1] >= at - 5).map(m => [m[0], r(m[1])]),
          long: window.__lt.filter(t => t[0] >= at - 5).map(t => [r(t[0]), Math.round(t[1])])}; }"""


def groups(messages: list[list]) -> str:
    out: list[list] = []
    for kind, t in messages:
        if out and out[-1][0] == kind and t - out[-1][2] < 15:
            out[-1][2], out[-1][3] = t, out[-1][3] + 1
        else:
            out.append([kind, t, t, 1])
    return " | ".join(f"{k}@{a}" if n == 1 else f"{k} x{n} @{a}-{b}" for k, a, b, n in out)


def script_runs(since_epoch_ms: float, within_ms: float) -> list[list]:
    """The console's script runs (DOORSTEP_PROFILE files: named by page and the moment the run ended,
    holding its duration) that ended within ``within_ms`` after ``since_epoch_ms``, as [page, start ms,
    end ms] from then."""
    import pstats

    runs = []
    for path in sorted((OUT / "prof").glob("*.prof")):
        page, _, ended = path.stem.rpartition("-")
        end_ms = float(ended) * 1000 - since_epoch_ms
        if -5 < end_ms < within_ms + 100:
            took = pstats.Stats(str(path)).total_tt * 1000
            runs.append([page, round(end_ms - took), round(end_ms)])
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True, help="a database bench/console_bench.py has prepared")
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--profile", action="store_true", help="DOORSTEP_PROFILE for the console (slows each run's end)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.profile:
        os.environ["DOORSTEP_PROFILE"] = str(OUT / "prof")
    store = Store(args.db)
    port = cb.free_port()
    console = cb.start_console(args.db, port, OUT / "streamlit.log")
    url, rounds = f"http://127.0.0.1:{port}", []
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=cb.CHROMIUM, headless=True, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            context = browser.new_context(viewport={"width": 1500, "height": 1000})
            context.add_init_script(INIT_JS)
            for i in range(-1, args.repeat):
                context.clear_cookies()
                page = context.new_page()
                page.set_default_timeout(60000)
                cb.login_form(page, url)
                page.evaluate(MARK_JS)
                t0 = time.perf_counter()
                page.get_by_role("button", name="Log in").click()
                cb.wait_done(page, cb.expected(store, {}))
                login = {"ms": round((time.perf_counter() - t0) * 1000), **page.evaluate(READ_JS)}
                paged = {"offset": 50}
                page.get_by_role("button", name="Next").click()
                cb.wait_done(page, cb.expected(store, paged))
                row = (i + 3) % 18
                case_id = store.inbox(_query(paged))[row].id
                page.locator('[data-testid="stDataFrame"]').scroll_into_view_if_needed()
                page.wait_for_timeout(500)
                page.evaluate(MARK_JS)
                t0 = time.perf_counter()
                cb.click_row(page, row)
                cb.wait_done(page, {"kind": "case", "id": case_id})
                opened = {"ms": round((time.perf_counter() - t0) * 1000), **page.evaluate(READ_JS)}
                rounds.append({"round": i, "load": os.getloadavg()[0], "login": login, "open": opened})
                if args.profile:  # each script run's [start, end] in ms from the action, and its page
                    login["runs"] = script_runs(login["at_epoch_ms"], login["ms"])
                    opened["runs"] = script_runs(opened["at_epoch_ms"], opened["ms"])
                    for path in (OUT / "prof").glob("*.prof"):
                        path.unlink()
                for name, r in (("login", login), ("open", opened)):
                    print(f"round {i}{' (warm-up)' if i < 0 else ''}, load {os.getloadavg()[0]:.1f}: {name} {r['ms']} ms "
                          f"(page clock {r['now']}{', since the reloaded page began' if r['reloaded'] else ''}): "
                          f"{groups(r['ws'])}; long tasks {r['long']}"
                          + (f"; script runs {r['runs']}" if args.profile else ""), flush=True)
                page.close()
            browser.close()
    finally:
        console.terminate()
        console.wait(timeout=10)
        store.close()
    (OUT / "trace.json").write_text(json.dumps(rounds, indent=1), encoding="utf-8")
    print(f"wrote {OUT / 'trace.json'}")


if __name__ == "__main__":
    main()
