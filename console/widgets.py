"""Small display helpers shared by the console pages.

Safety rule: text written by customers (posts, names, handles, notes, courier wording) is
never given to Streamlit as HTML, and never as Markdown without escaping, so a post such as
``<img src=x onerror=alert(1)>`` or ``[click](http://evil)`` is shown exactly as typed.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import streamlit as st

from doorstep.config import Config
from doorstep.models import Case, utcnow
from doorstep.sla import next_due

# Every ASCII punctuation character can be backslash-escaped in CommonMark; Streamlit adds
# its own syntax on top (:color[...], :material/icon:, $math$), all built from these.
_MD_SPECIALS = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&=\"'^%@/])")


#: Streamlit's Markdown also turns bare URLs, www. names and e-mail addresses into links (GFM
#: autolinks), which escaping does not stop; an invisible word joiner after their first
#: character does, without changing what the reader sees.
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"[a-z][a-z0-9+.-]*:/|www\.|@(?=\w)", re.IGNORECASE)


#: Bidi controls that change the direction of the text after them (embeddings, overrides, isolates and
#: their ends), shown as a visible mark instead. Why: "\u202eevil name" reads "eman live", and an
#: override in a post reverses the words around it, an order number or a handle included (audit finding
#: 9). The marks U+200E / U+200F (LRM, RLM) and U+061C (ALM) stay: they only place neutral characters
#: such as punctuation beside right-to-left words, are typed in ordinary Arabic and Hebrew, and
#: cannot reverse anything.
BIDI_CONTROLS = {"\u202a": "LRE", "\u202b": "RLE", "\u202c": "PDF", "\u202d": "LRO", "\u202e": "RLO",
                 "\u2066": "LRI", "\u2067": "RLI", "\u2068": "FSI", "\u2069": "PDI"}
_BIDI = re.compile("[" + "".join(BIDI_CONTROLS) + "]")


def plain(text: str | None) -> str:
    """Someone else's text as it is to be read: each bidi control shown as a visible mark (``⟨RLO⟩``)
    instead of turning the words around it; everything else, right-to-left script included, untouched.
    For text shown as text (st.text, table cells, a choice's label); :func:`escape_md` does it too."""
    if not text:
        return ""
    return _BIDI.sub(lambda m: f"⟨{BIDI_CONTROLS[m.group(0)]}⟩", text)


def escape_md(text: str | None) -> str:
    """Markdown source that renders as exactly ``text`` (no links, images, HTML, colours or maths; bidi
    controls shown as marks, see :func:`plain`)."""
    if not text:
        return ""
    text = plain(text)
    escaped = _MD_SPECIALS.sub(r"\\\1", _AUTOLINK.sub(lambda m: m.group(0)[0] + WORD_JOINER + m.group(0)[1:], text))
    # Keep line breaks as line breaks instead of paragraphs or headings.
    return "  \n".join(escaped.splitlines())


def safe_text(text: str | None, *, caption: bool = False) -> None:
    """Show user-generated text literally: st.text for bodies (no Markdown at all), escaped captions."""
    if caption:
        st.caption(escape_md(text))
    else:
        st.text(plain(text))


def local_time(value: datetime | None, config: Config, fmt: str = "%a %d %b %H:%M") -> str:
    """A time as the team reads it: in the configured zone (:meth:`Config.local_time`)."""
    return config.local_time(value, fmt)


def listener_rows(health: list[dict[str, Any]], config: Config, *, detail: bool = False) -> list[dict[str, Any]]:
    """Listener health (``listeners.health.listener_health``) as the team reads it: the network's name, the
    status in words, times in the shop's zone, no column named after a database field. The dashboard's table;
    ``detail`` adds what an admin checks in Settings → Channels (when the last error came, posts fetched and
    stored, skipped, the last warning). One place, so Settings no longer showed raw UTC ISO times and field
    names where the dashboard showed "Sun 06 Dec 19:14" (pages audit, finding 4)."""
    from console.words import channel_name, listener_status_name
    from doorstep.store import parse_time

    def when(value: Any) -> str:
        return local_time(parse_time(value), config) if value else ""

    rows = []
    for h in health:
        row: dict[str, Any] = {"listener": channel_name(h["name"]), "status": listener_status_name(h.get("status")),
                               "last success": when(h.get("last_success_at")), "last error": h.get("last_error") or "",
                               "lag (s)": h.get("lag_seconds"), "stored": h.get("stored")}
        if detail:
            row = {**{k: row[k] for k in ("listener", "status", "last success")},
                   "last error at": when(h.get("last_error_at")), "last error": row["last error"],
                   "lag (s)": row["lag (s)"], "fetched / stored": f"{h.get('fetched') or 0} / {h.get('stored') or 0}",
                   "errors": h.get("errors") or 0,
                   "skipped (malformed / rejected)": f"{h.get('malformed') or 0} / {h.get('rejected') or 0}",
                   "last warning": h.get("last_warning") or ""}
        rows.append(row)
    return rows



#: An import's kind as the team says it.
IMPORT_KINDS = {"orders": "Orders", "tracking": "Tracking", "mentions": "Posts"}


def import_rows(runs: list[dict[str, Any]], config: Config) -> list[dict[str, Any]]:
    """The latest ``doorstep import`` runs (``listeners.files.recent_imports``) as the team reads them: when in
    the shop's zone, the file's name, the result in words ("1 of 2 rows rejected", "file refused") and the
    first problem, so a refused nightly orders file is seen in the console, not only on cron's terminal."""
    from pathlib import PurePath

    from doorstep.store import parse_time

    rows = []
    for run in runs:
        outcome, total, rejected = run.get("outcome") or "", run.get("rows") or 0, run.get("rejected") or 0
        if outcome in ("rows rejected", "nothing written"):
            result = f"{rejected} of {total} rows rejected" + ("; nothing written" if outcome == "nothing written" else "")
        elif outcome == "no rows":
            result = "no rows in the file"
        elif outcome == "interrupted":
            result = "interrupted (Ctrl-C); rows written are kept"
        else:
            result = outcome
        rows.append({"when": local_time(parse_time(run.get("finished_at")), config) if run.get("finished_at") else "",
                     "import": IMPORT_KINDS.get(run.get("kind") or "", run.get("kind") or ""),
                     "file": PurePath(run.get("file") or "").name, "result": result,
                     "new / updated / unchanged": f"{run.get('new') or 0} / {run.get('updated') or 0} / "
                                                  f"{run.get('unchanged') or 0}",
                     "first error": run.get("message") or ""})
    return rows

def _human(delta: timedelta) -> str:
    minutes = int(abs(delta.total_seconds()) // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24}h"


def sla_state(case: Case, now: datetime | None = None, amber_minutes: int = 60) -> tuple[str, str]:
    """("red" | "amber" | "green" | "grey", words) for the case's next SLA deadline.

    Red: the next deadline of a running clock has passed. Amber: it is within ``amber_minutes``.
    Grey: resolved, snoozed, or waiting on the customer (clocks paused, doorstep/sla.py).
    "Overdue 16m" and "due in 2h" are wall-clock time; the deadlines themselves count
    business hours.
    """
    now = now or utcnow()
    if case.status == "resolved":
        return "grey", "resolved"
    if case.snoozed_until and case.snoozed_until > now:
        return "grey", f"snoozed {_human(case.snoozed_until - now)}"
    if case.status == "pending_customer":
        return "grey", "waiting on customer (clock paused)"
    nxt = next_due(case)
    if nxt is None:
        return "grey", "no SLA"
    what, at = nxt
    if at < now:
        return "red", f"{what} overdue {_human(now - at)}"
    colour = "amber" if at - now <= timedelta(minutes=amber_minutes) else "green"
    return colour, f"{what} due in {_human(at - now)}"


def sla_clock_line(case: Case, config: Config) -> str:
    """The case's deadlines in the team's time zone, for the case header."""
    parts = []
    if case.first_response_at is None:
        parts.append(f"first response due {local_time(case.first_response_due, config)}")
    else:
        parts.append(f"first response {local_time(case.first_response_at, config)}")
    if case.next_response_due is not None:
        parts.append(f"next response due {local_time(case.next_response_due, config)}")
    parts.append(f"resolution due {local_time(case.resolution_due, config)}")
    if case.status == "pending_customer" and case.sla_paused_at is not None:
        parts.append(f"clocks paused since {local_time(case.sla_paused_at, config)}")
    return " · ".join(parts) + f" ({config.timezone}; business hours)"


_BADGE_COLOURS = {"red": "red", "amber": "orange", "green": "green", "grey": "gray"}


def sla_badge(case: Case, now: datetime | None = None) -> None:
    colour, words = sla_state(case, now)
    st.badge(f"SLA: {words}", color=_BADGE_COLOURS[colour])  # type: ignore[arg-type]


def priority_line(case: Case) -> str:
    """Why the case sits where it does in the queue, as plain words."""
    reasons = ", ".join(case.priority_reasons) if case.priority_reasons else "no raising factors"
    return f"priority {case.priority:g}: {reasons}"


def show_priority(case: Case) -> None:
    st.caption(escape_md(priority_line(case)))


def flash(kind: str, message: str, at: str = "top") -> None:
    """Queue a message to show after the next rerun (st.rerun would otherwise swallow it).

    ``at`` names the place it is shown (:func:`show_flashes` there): beside the button that
    caused it, so the agent sees the answer where they are looking, not at the page's top.
    """
    st.session_state.setdefault("_flash", []).append((kind, message, at))


def show_flashes(at: str = "top") -> None:
    """Show (once) the messages queued for ``at``; the others wait for their own place."""
    queued = st.session_state.get("_flash") or []
    mine = [m for m in queued if (m[2] if len(m) > 2 else "top") == at]
    st.session_state["_flash"] = [m for m in queued if m not in mine]
    for kind, message, *_ in mine:
        getattr(st, kind)(escape_md(message))


# ------------------------------------------------------------------ session
def get_store() -> Any:
    """This browser session's store (SQLite connections are not shared between sessions' threads)."""
    import os

    from doorstep.config import default_db_path
    from doorstep.store import Store

    path = os.environ.get("DOORSTEP_DB") or default_db_path()
    held = st.session_state.get("_store")
    if held is None or held.path != path:
        held = Store(path, busy_timeout_s=file_config().limits.busy_timeout_s)
        st.session_state["_store"] = held
    return held


def busy_message(exc: BaseException, what: str = "What you just did") -> str | None:
    """The one line an agent reads when the database stayed locked past the busy timeout, or None.

    Why not an exception: a long write elsewhere (an import's batch on a loaded machine) can hold
    SQLite's write lock longer than ``[limits] busy_timeout_s``; the page must say so and keep
    working (issue 14 item 4), and nothing was written (the transaction never began).
    """
    from doorstep.dialect import is_busy

    if not is_busy(exc):
        return None
    return (f"{what} was not saved: the database was busy for over {file_config().limits.busy_timeout_s:g} s "
            "(another writer, such as an import, held it; [limits] busy_timeout_s in doorstep.toml). "
            "Try again in a moment.")


@st.cache_resource(show_spinner=False)
def _load_config(path: str | None, mtime: float) -> Config:
    from doorstep.config import load_config

    return load_config(path)


def file_config() -> Config:
    """doorstep.toml as it is on disk (reloaded when the file changes)."""
    import os
    from pathlib import Path

    path = os.environ.get("DOORSTEP_CONFIG") or None
    mtime = Path(path).stat().st_mtime if path and Path(path).exists() else 0.0
    return _load_config(path, mtime)


@st.cache_resource(show_spinner=False, max_entries=8)
def _with_team_settings(_base: Config, _store: Any, base_key: tuple[Any, ...], stamp: int) -> Config:
    from doorstep.team_settings import apply_settings

    return apply_settings(_base, _store)


def get_config() -> Config:
    """The config in force: doorstep.toml with the templates and alert rules leads saved in the console."""
    import os
    from pathlib import Path

    from doorstep.team_settings import settings_stamp

    base = file_config()
    store = get_store()
    path = os.environ.get("DOORSTEP_CONFIG") or None
    mtime = Path(path).stat().st_mtime if path and Path(path).exists() else 0.0
    return _with_team_settings(base, store, (path, mtime, str(store.path)), settings_stamp(store))


def current_user() -> Any:
    return st.session_state.get("user")


def require(action: str) -> Any:
    """Stop the page unless the logged-in user may do ``action``."""
    from console.auth import PERMISSIONS, can

    user = current_user()
    if user is None:
        st.error("Please log in.")
        st.stop()
    if not can(user, action):
        st.error(f"Your role ({user.role}) cannot open this page; it needs {PERMISSIONS.get(action, 'admin')} or above.")
        st.stop()
    return user


#: Every box of the inbox that filters or orders the queue (console/inbox.py), by its widget key: a dashboard
#: link drops them all, so a "Waiting for" or "Sort by" left from before does not narrow or reorder the cases
#: the link names (the inbox helper's finding: ``inbox_waiting`` and ``inbox_sort`` were kept).
INBOX_FILTER_BOXES = ("inbox_search", "inbox_channel", "inbox_assignee", "inbox_sla", "inbox_waiting", "inbox_status",
                      "inbox_brand", "inbox_courier", "inbox_intent", "inbox_sort")


def open_inbox(**filters: str | None) -> None:
    """Go to the inbox showing the open cases that match ``filters`` (brand, courier, intent...).

    Why: a lead who sees "failed delivery" leading the dashboard wants those cases, not a
    number. The inbox reads its filters from ``inbox_filters``; the boxes' own widget state is
    dropped so they show the new choice instead of the last one.
    """
    chosen = {k: v for k, v in filters.items() if v}
    st.session_state["inbox_filters"] = {**chosen, "offset": 0}
    for key in INBOX_FILTER_BOXES:
        st.session_state.pop(key, None)
    pages = st.session_state.get("_pages") or {}
    if "inbox" in pages:
        st.switch_page(pages["inbox"])
    st.rerun()


#: The accessible name of the frames :func:`run_script` draws, which the page's style hides.
SCRIPT_FRAME = "doorstep page script"


def run_script(script: str) -> None:
    """Run ``script`` (a ``<script>`` of our own, never user text) in a same-origin frame that takes no room.

    ``st.iframe`` sizes an HTML string to its content, and a frame holding only a script was still 150 px tall on
    Streamlit 1.67: a blank band on every case page that pushed the composer down (security audit of today's
    changes). The frame is kept out of the layout by a style-only ``st.html`` (which takes no room itself);
    a hidden frame still runs its script. ``st.components.v1.html`` (height 0) is deprecated."""
    if hasattr(st, "iframe"):
        st.html("<style>[data-testid='stElementContainer']:has(iframe[title='" + SCRIPT_FRAME + "']) "
                "{ display: none; }</style>")
        st.iframe(script, height=1, alt=SCRIPT_FRAME, tab_index=-1)
    else:  # Streamlit before st.iframe
        import streamlit.components.v1 as components

        components.html(script, height=0)


def open_case(case_id: int) -> None:
    """Go to the case page for ``case_id`` (from the inbox, the customer's other cases...)."""
    st.session_state["case_id"] = int(case_id)
    pages = st.session_state.get("_pages") or {}
    if "case" in pages:  # the address carries the case (/case?id=123): reload, back button, a shared link
        st.switch_page(pages["case"], query_params={"id": str(int(case_id))})
    st.query_params["id"] = str(int(case_id))
    st.rerun()


def lazy_expander(label: str, key: str) -> tuple[Any, bool]:
    """A collapsed expander whose contents are drawn only while it is open: (the expander, open?).

    Streamlit draws a plain expander's contents even while it is closed (issue 17, sixth round: on a
    case page the closed "Correct labels", "Change the linked order" and "Split or merge" held about
    a third of its elements, drawn on every open). Opening it reruns the page, which then draws them;
    it stays open across reruns (its state is kept under ``key``).
    """
    box = st.expander(label, key=key, on_change="rerun")
    return box, bool(box.open)


def safe_table(rows: list[dict[str, Any]]) -> None:
    """A few rows as a static table (``st.table``: no data grid to mount), every cell shown literally.

    ``st.table`` reads its cells as Markdown, so each is escaped like any other text from outside
    (an item's name, a courier's words)."""
    st.table([{column: escape_md(str(value)) for column, value in row.items()} for row in rows], hide_index=True)


def imports_section(store: Any, config: Config) -> None:
    """Settings' and the Dashboard's "File imports": the latest runs (:func:`import_rows`), nothing when the shop
    has never imported a file."""
    try:
        from listeners.files import recent_imports
    except ImportError:  # pragma: no cover - listeners package absent
        return
    runs = recent_imports(store)
    if runs:
        st.subheader("File imports")
        st.dataframe(import_rows(runs, config), hide_index=True, width="stretch")
        st.caption(escape_md(f"The latest {len(runs)} runs of doorstep import. Times in {config.timezone}."))
