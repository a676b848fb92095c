"""The Doorstep console: ``streamlit run app.py`` (DOORSTEP_DB, DOORSTEP_CONFIG pick the data).

Nothing is shown before login (``console/login.py``: single sign-on or username + password).
Pages a role may not open are not in the navigation, and each
page checks the role again itself (a URL is not a permission).

This file is both the page script and its server: ``streamlit run app.py`` finds the ``st.App``
below and serves it (uvicorn imports this module as ``app``), with the routes that set the
HttpOnly login cookie (``console/server.py``); that App runs this same file as its script
(``__main__``), which draws the console.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from console import auth, login
from console.widgets import escape_md, get_config, get_store


#: Streamlit draws captions at 60 % of the text colour: 3.9:1 on white, under WCAG AA's 4.5:1, and the console
#: puts SLA due times, priority reasons, bylines and the whole timeline in captions (keyboard and accessibility
#: audit). The body text's own colour at 80 % gives about 7:1, in the light theme and the dark one alike. The key
#: hint inside a button ("Q", "X") was drawn at Streamlit's secondary opacity: 2.8:1 on the red primary button; at
#: full opacity white on that red is about 5:1.
READABLE_SMALL_PRINT = ("<style>[data-testid='stCaptionContainer'] { color: inherit !important; opacity: 0.8; }"
                        " button kbd { opacity: 1 !important; }"
                        # "Queue reply" as wide as its words, the answer beside it takes the rest: at 1024 px with the
                        # sidebar open a share of the row cut it to "Qu…" (keyboard audit, left open).
                        " [data-testid='stColumn']:has(> [data-testid='stVerticalBlock'] > [class*='st-key-send_']),"
                        # The inbox's "Open case" and "Select several" likewise ("O…" and no label at 1024 px).
                        " [data-testid='stColumn']:has(> [data-testid='stVerticalBlock'] > .st-key-inbox_open),"
                        " [data-testid='stColumn']:has(> [data-testid='stVerticalBlock'] > .st-key-inbox_select_mode),"
                        # The case page's Previous and Next, and the column that holds them ("P K", "N J" at 1024).
                        " [data-testid='stColumn']:has(.st-key-case_next)"
                        " { flex: 0 0 auto !important; width: auto !important; min-width: max-content; }"
                        # The review queue's buttons wrap their words: "✓ 2 · late delivery (chosen)" read "(cho…".
                        " [class*='st-key-rv_'] button [data-testid='stMarkdownContainer'],"
                        " [class*='st-key-rv_'] button [data-testid='stMarkdownContainer'] p"
                        " { white-space: normal !important; overflow: visible !important; text-overflow: clip !important; }"
                        "</style>")


def main() -> None:
    st.set_page_config(page_title="Doorstep", page_icon=login.FAVICON, layout="wide")
    st.html(READABLE_SMALL_PRINT)
    store = get_store()
    config = get_config()  # a broken doorstep.toml stops here with the file and key named
    user = login.current_user(store, config)
    if user is None:
        return
    from console import approvals, case_view, dashboard, dialogue, inbox, reports, review, settings

    pages = {
        # Served at "/" (Streamlit's default page; the url_path it is given is only reserved, never served).
        "inbox": st.Page(inbox.render, title="Inbox", icon=":material/inbox:", url_path=HOME_PATH, default=True),
        "case": st.Page(case_view.render, title="Case", icon=":material/assignment:", url_path="case"),
        "callbacks": st.Page(dialogue.render, title="Call-backs", icon=":material/phone_callback:",
                             url_path="callbacks"),
        "approvals": st.Page(approvals.render, title="Approvals", icon=":material/approval:", url_path="approvals"),
        "dashboard": st.Page(dashboard.render, title="Dashboard", icon=":material/monitoring:", url_path="dashboard"),
        "reports": st.Page(reports.render, title="Reports", icon=":material/summarize:", url_path="reports"),
    }
    if auth.can(user, "correct_labels"):
        pages["review"] = st.Page(review.render, title="Review queue", icon=":material/rule:", url_path="review")
    from console import sent_mail

    if sent_mail.available():  # the demo's local mail and webhook sinks
        pages["sent"] = st.Page(sent_mail.render, title="Sent mail", icon=":material/outbox:", url_path="sent")
    if auth.can(user, "view_settings"):
        pages["settings"] = st.Page(settings.render, title="Settings", icon=":material/settings:", url_path="settings")
    pages[INBOX_ADDRESS] = inbox_address(inbox.render)
    st.session_state["_pages"] = pages
    with st.sidebar:
        st.caption(escape_md(f"Signed in as {user.name} ({user.role})"))
        if st.button("Log out", key="logout_button"):
            login.logout(store)
    try:
        _run_page(st.navigation(list(pages.values())))
    except Exception as exc:  # noqa: BLE001 - logged in full; the agent gets a short note, never a traceback
        from console.server import on_script_error

        on_script_error(exc)
    with st.sidebar:  # after a password login: the HttpOnly cookie, fetched once the page is drawn (so the
        login.send_cookie()  # request does not compete with drawing it; a run cut short sends it next run)
    from console.server import freeze_after_first_console_run

    freeze_after_first_console_run()  # served: what this first run left alive, out of the collector's way


#: What the default page (the inbox, at "/") reserves as its url_path. Streamlit serves a default page at "/"
#: only, whatever url_path it has (``Page.url_path`` reads ""), so a bookmarked or printed /inbox was "Page not
#: found": /inbox is :func:`inbox_address`'s, and this name is only held, never linked.
HOME_PATH = "home"
#: The inbox's own address, /inbox (the url_path of :func:`inbox_address`'s page).
INBOX_PATH = "inbox"
#: That page's key in ``st.session_state["_pages"]`` ("inbox" is the default page's: what "Inbox" links go to).
INBOX_ADDRESS = "inbox_address"


def inbox_address(render: Any) -> Any:
    """The page that answers /inbox: the inbox again, hidden (the sidebar lists the inbox once, at "/").

    Why a second page and not the inbox made a plain page at /inbox with "/" sending on to it: "/" is where
    every login lands, and a page that only switches costs the login a second run of the whole script
    (tests/test_console_sessions.py holds the login click to one run)."""
    return st.Page(render, title="Inbox", icon=":material/inbox:", url_path=INBOX_PATH, visibility="hidden")


#: The page this run of the script drew (named in DOORSTEP_PROFILE's files).
_page_name = "login"


def _run_page(page: Any) -> None:
    global _page_name
    asked = login.page_asked_before_login()
    pages = st.session_state.get("_pages") or {}
    wanted = next((p for p in pages.values() if asked and p.url_path == asked), None)
    if wanted is not None and wanted.url_path != page.url_path:
        st.switch_page(wanted, query_params=st.query_params.to_dict())  # the link the login stood in front of
    _page_name = page.url_path or "inbox"
    page.run()


def profiled(run: Any) -> None:
    """``run()``; with DOORSTEP_PROFILE=<folder>, under cProfile, one .prof file per script run named
    after its page and the moment it ended (bench/RESULTS.md: where a page's time goes at scale)."""
    import os

    folder = os.environ.get("DOORSTEP_PROFILE")
    if not folder:
        run()
        return
    import cProfile
    import time
    from pathlib import Path

    profile = cProfile.Profile()
    try:
        profile.runcall(run)
    finally:
        Path(folder).mkdir(parents=True, exist_ok=True)
        profile.dump_stats(str(Path(folder) / f"{_page_name}-{time.time():.3f}.prof"))


if __name__ == "__main__":  # the page script (streamlit's script runner, AppTest)
    profiled(main)
else:  # imported by `streamlit run app.py` (uvicorn): the web server with the login-cookie routes
    from pathlib import Path

    from console import server
    from console.server import on_script_error, routes

    login.COOKIE_ROUTES = True
    server.SERVED = True
    app = st.App(Path(__file__).resolve(), routes=routes(), on_script_error=on_script_error)
