"""The inbox: open cases, highest priority first, with filters, search and SLA clocks.

A queue over every matching case: pages of PAGE_SIZE with the total ("51–100 of 302"), three
orders (priority, next due time, newest), and "Case to open" takes any case number, whatever
its status or page. Search finds words of posts, order and tracking numbers, customers by
name, e-mail or phone, and an exact handle alone (``Store.search_cases``).

Every filter is pushed down to ``Store.inbox`` (partial indexes over open cases). Under each
filter a line gives the counts from ``Store.inbox_facets`` under the *other* filters, so an
agent sees how many cases a click will leave before clicking. The counts are not part of the
options' labels: Streamlit matches a choice by its label, so a label that changes with every
click would drop the agent's choice.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Collection
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pandas as pd
import streamlit as st

from console.auth import can
from console.login import acting_user, signed_in
from console.widgets import (
    current_user,
    escape_md,
    get_config,
    get_store,
    open_case,
    plain,
    require,
    show_flashes,
    sla_state,
)
from console.words import case_status_name, channel_name, facet_name, intent_name, status_name
from doorstep.closing import Closing, close_cases
from doorstep.models import CASE_STATUSES, OPEN_CASE_STATUSES, utcnow
from doorstep.store import InboxQuery
from doorstep.store.inbox import INBOX_SUMMARY_GROUPS, NO_VALUE, SUMMARY_ALSO_ROW
from doorstep.text import shorten

ANY = "(any)"
FACETS = ("brand", "courier", "channel", "intent", "assignee")
SLA_STATES = {"breached": "overdue (red)", "due_soon": "due within the hour (amber)",
              "snoozed": "snoozed (hidden from the queue)"}
#: The dialogue filters (``InboxQuery.waiting``): an open question to the customer, a call back to make.
WAITING = {"answer": "awaiting customer answer", "callback": "call-back due"}
PAGE_SIZE = 50
#: How often the queue redraws itself (a cheap change check first: see change_mark).
INBOX_EVERY_S = 5
#: The queue's orders (``Store`` INBOX_SORTS), as the "Sort by" box names them.
SORTS = {"priority": "priority band, then due", "due": "due time (answers owed first)", "newest": "newest case"}
#: How each order ranks cases, in the words the caption under the queue uses (README "SLA clocks").
SORT_RULES = {
    "priority": "P1 first; within a band, cases owing the customer an answer by their answer deadline "
                "(overdue on top), then cases owing a resolution by its deadline, then paused ones",
    "due": "cases owing the customer an answer first, soonest deadline on top (overdue first), then cases "
           "owing a resolution, soonest first, then cases waiting on the customer",
    "newest": "newest case first",
}
#: Cell backgrounds of the SLA column (red: overdue, amber: due within the hour).
SLA_COLOURS = {"red": "#f8c4c4", "amber": "#fde2b3", "green": "", "grey": ""}


def _query(filters: dict[str, Any], *, without: str | None = None) -> InboxQuery:
    statuses = filters.get("status") or OPEN_CASE_STATUSES
    kwargs = {k: v for k, v in filters.items() if k in FACETS and k != without and v}
    sla_state = filters.get("sla_state") or None
    return InboxQuery(
        statuses=OPEN_CASE_STATUSES if without == "status" else tuple(statuses),
        search=filters.get("search") or None,
        sla_state=None if sla_state == "snoozed" else sla_state,
        snoozed="only" if sla_state == "snoozed" else "hide",
        sort=filters.get("sort") or "priority",
        waiting=filters.get("waiting") or None,
        limit=PAGE_SIZE,
        offset=int(filters.get("offset") or 0),
        **kwargs,
    )


def queue_query(filters: dict[str, Any]) -> InboxQuery:
    """The whole queue under ``filters`` (``{}``: the inbox's defaults), from its first case: what J / K walk
    (console/case_view.py queue_neighbours), the same order the inbox lists."""
    return replace(_query(filters), limit=PAGE_SIZE, offset=0)


def unsearchable(text: str) -> bool:
    """A search with no letter or digit in it (``!!!``, an emoji): the index cannot look for it."""
    return bool(text.strip()) and not any(c.isalnum() for c in text)


@st.cache_data(ttl=60, show_spinner=False)
def _facet_values(db_path: str, column: str) -> list[str]:
    """The values a filter offers: those on any open case, most cases first (cached a minute).

    Fixed while the agent clicks, so a choice never disappears from under them; how many
    cases each value has *under the other filters* is shown beside the box instead
    (:func:`_counts_caption`), computed after every filter has been read.
    """
    from doorstep.store import Store

    store = Store(db_path, migrate=False)
    try:
        return list(store.inbox_facets(column, InboxQuery()))
    finally:
        store.close()


def _facet_select(store: Any, column: str, filters: dict[str, Any], label: str, me: str) -> str | None:
    options = [ANY, *_facet_values(str(store.path), column)]
    if column == "assignee" and me not in options:
        options.insert(1, me)
    current = filters.get(column)
    if current and current not in options:
        options.append(current)
    choice = st.selectbox(label, options, index=options.index(current) if current else 0, key=f"inbox_{column}",
                          format_func=lambda value: value if value == ANY else facet_name(column, value))
    if choice == ANY:
        return None
    return choice


def _counts_caption(counts: dict[str, int], chosen: str | None = None, top: int = 4, column: str = "",
                    total: int | None = None) -> str:
    """"12 of 57: Larkspur Home 30 · Fettle Outdoor 27": the counts behind one filter (``column``'s values in words).

    ``total``: the cases under the other filters where a case can count under two values (a channel: the
    customer wrote on two networks), so the values add up to more; else the sum of the values."""
    total = sum(counts.values()) if total is None else total
    shown = " · ".join(f"{facet_name(column, value)} {n:,}" for value, n in list(counts.items())[:top])
    more = f" · +{len(counts) - top} more" if len(counts) > top else ""
    head = f"{counts.get(chosen, 0):,} of {total:,}" if chosen else f"{total:,}"
    return escape_md(f"{head}: {shown}{more}" if counts else "0")


def _open_from_table() -> None:
    """on_select of the table: open the case in the row the agent picked (see _remember_open)."""
    event = st.session_state.get("inbox_table") or {}
    rows = (event.get("selection") or {}).get("rows") or []
    shown = st.session_state.get("_inbox_ids") or []
    if rows and 0 <= rows[0] < len(shown):
        _remember_open(shown[rows[0]])


def case_number(value: Any) -> int | None:
    """The case number in what was picked or typed into "Case to open" (224, "224", "#224"), else None."""
    if isinstance(value, int):
        return value
    digits = str(value or "").strip().lstrip("#").strip()
    return int(digits) if digits.isdigit() and int(digits) > 0 else None


def _open_typed() -> None:
    """on_change of the case number box (Enter): open that case, any status, any page."""
    typed = str(st.session_state.get("inbox_number") or "").strip()
    if not typed:
        return
    number = case_number(typed)
    if number is None:
        st.session_state["_inbox_pick_error"] = f"“{typed}” is not a case number."
    elif get_store().get_case(number) is None:
        st.session_state["_inbox_pick_error"] = f"There is no case #{number}."
    else:
        st.session_state["inbox_number"] = ""
        _remember_open(number)


def _open_from_pick() -> None:
    """on_click of "Open case": the number typed, else the case chosen in "Case to open"."""
    if "_inbox_open" in st.session_state or "_inbox_pick_error" in st.session_state:
        return  # the number box's own on_change (it ran first, in this same click) has answered
    if str(st.session_state.get("inbox_number") or "").strip():
        _open_typed()
    elif st.session_state.get("inbox_pick") is not None:
        pick = st.session_state["inbox_pick"]
        if not isinstance(pick, int):  # a label the browser kept ("#616 — ..."): its case number
            found = re.match(r"#(\d+)", str(pick))
            if found is None:
                return
            pick = int(found.group(1))
        _remember_open(pick)


def _page(step: int) -> None:
    """on_click of "Previous" / "Next": move the queue one page (the offset is kept with the filters)."""
    filters = st.session_state.setdefault("inbox_filters", {})
    filters["offset"] = max(0, int(filters.get("offset") or 0) + step * PAGE_SIZE)


def _showing(offset: int, shown: int, total: int) -> str:
    """"51–100 of 302": which cases of all matching ones this page holds."""
    return f"{offset + 1:,}–{offset + shown:,} of {total:,}" if shown else f"0 of {total:,}"


def _remember_open(case_id: int) -> None:
    """Callbacks run before the page's script, so the next run goes straight to the case page
    instead of first querying and drawing the whole inbox again (which the old way, opening
    the case at the end of that run, cost on every click: facet counts, table and all)."""
    st.session_state["_inbox_open"] = int(case_id)


def _undelivered_cases(store: Any, case_ids: list[int]) -> dict[int, str]:
    """Case id -> "⚠ reply failed" / "⚠ escalation retrying" (both, each once) for the listed cases with an
    undelivered message."""
    if not case_ids:
        return {}
    marks = ",".join("?" * len(case_ids))
    out: dict[int, str] = {}
    for row in store.db.execute(
            f"select case_id, kind, status from outbound_messages where case_id in ({marks}) and kind in "
            "('reply', 'escalation') and (status = 'failed' or (status in ('queued', 'sending') and last_error is not null)) "
            "order by id", case_ids).fetchall():
        word = f"⚠ {row[1]} {'failed' if row[2] == 'failed' else 'retrying'}"
        # each its own flag: "⚠ reply failed, escalation" read as if the escalation had failed too
        if word not in out.get(row[0], "").split(", "):
            out[row[0]] = word if row[0] not in out else out[row[0]] + f", {word}"
    return out


#: Widths that fit a row at 1366 px without scrolling sideways: the post and the reason get the room, and
#: the SLA column holds its longest words whole ("resolve overdue 23h59m"): how late a case is, the one
#: number the column is for, was cut to "answer overdue" at 1366 px (audit of the inbox, finding 7).
#: The flags come third and hold their first flag whole ("⚠ escalation retrying", :func:`row_flags` puts the most
#: urgent first): at 1366 px the 90-px column read "★ VIP, needs r", the failing reply out of sight, and at 1024 px
#: beside the sidebar the column was past the grid's right edge (browser audit). Case, SLA, flags and the post fit
#: the 564 px the grid has there; why it is high, who wrote it and who has it are a scroll away.
ROW_COLUMNS: dict[str, Any] = {
    "case": st.column_config.NumberColumn(width=45, format="%d"),
    "SLA": st.column_config.TextColumn(width=160),
    "flags": st.column_config.TextColumn(
        width=140, help="What needs care, most urgent first: ⚠ a reply or escalation not delivered (retrying after an "
                        "error, or failed for good: open the case to retry it), ● NEW since you looked, needs review, "
                        "★ VIP, and the status when it is not new or open."),
    "newest post": st.column_config.TextColumn(width=176),
    "priority": st.column_config.TextColumn("priority · why", width=105),
    "customer": st.column_config.TextColumn(width=100),
    "brand · courier": st.column_config.TextColumn(width=85),
    "assignee": st.column_config.TextColumn(width=60),
}

#: Statuses that need no word in a row (the status filter above says which are listed).
PLAIN_STATUSES = ("new", "open")

#: Characters of the newest customer post shown in a row.
SNIPPET_CHARS = 90
#: Unicode's first-strong isolate and its end, around a post that has right-to-left words in a row: the post
#: keeps its own direction and the "[X]" label before it keeps its own, neither reordering the other.
FSI, PDI = "\u2068", "\u2069"
#: The Arabic letter mark, invisible and right to left, first in a row whose post reads right to left. Why:
#: Streamlit's grid (glide-data-grid) lays a cell out right to left, right-aligned, only when a Hebrew or Arabic
#: letter comes before any Latin one, and knows nothing of isolates; "[X] " made an Arabic post's row left to
#: right, its first words past the cell's right edge ("[X] …الخدمة سيئة جدا وأري", languages audit). Led by
#: this mark, the label and the post's first words are at the right edge and what does not fit is the post's end.
ALM = "\u061c"


class _PageHandles:
    """The customer handles of a page's linked customers, answering ``customer_id_by_handle`` as the store
    does (doorstep.cases.is_customers_post asks it), from one query instead of one per post."""

    def __init__(self, store: Any, customer_ids: list[str]):
        self.by_handle: dict[tuple[str, str], str] = {}
        if customer_ids:
            marks = ",".join("?" * len(customer_ids))
            for channel, handle, cid in store.db.execute(
                    f"select channel, handle, customer_id from customer_handles where customer_id in ({marks})",
                    customer_ids).fetchall():
                self.by_handle[(channel, (handle or "").lower())] = cid

    def customer_id_by_handle(self, channel: str, handle: str | None) -> str | None:
        from doorstep.store.orders import HANDLE_CHANNEL

        if not handle:
            return None
        return self.by_handle.get((HANDLE_CHANNEL.get(channel, channel), handle.lower().lstrip("@")))


def _row_facts(store: Any, cases: list[Any]) -> tuple[dict[int, tuple[str, str, bool]], dict[str, tuple[str, bool]]]:
    """For a page of cases, in three queries: each case's newest customer post (its words and its own
    channel) and whether any of its posts awaits review; each linked customer's name and VIP flag.

    The customer's post as ``doorstep.cases.by_customer`` has it (the case's author on its network, a
    handle on the linked customer's record, a post without a handle), never a stranger's words in their
    thread beside the customer's name; and its own channel, not the case's: an agent chooses where to
    answer from that label (audit of the inbox, finding 3: "[Bluesky]" on a post written on X)."""
    from types import SimpleNamespace

    from doorstep.cases import by_customer

    ids = [c.id for c in cases]
    by_id = {c.id: c for c in cases}
    customer_ids = sorted({c.customer_id for c in cases if c.customer_id})
    handles = _PageHandles(store, customer_ids)
    posts: dict[int, tuple[str, str, bool]] = {}
    review: set[int] = set()
    if ids:
        marks = ",".join("?" * len(ids))
        for case_id, text, flagged, channel, author in store.db.execute(
                f"select case_id, text, needs_review, channel, author_handle from mentions where case_id in ({marks}) "
                "and outbound = 0 order by created_at, id", ids).fetchall():
            if flagged:
                review.add(case_id)
            post = SimpleNamespace(channel=channel or "", author_handle=author, outbound=False)
            if by_customer(handles, by_id[case_id], post):  # type: ignore[arg-type]
                posts[case_id] = (text or "", channel or "", False)
    posts = {case_id: (text, channel, case_id in review) for case_id, (text, channel, _) in posts.items()}
    posts.update({case_id: ("", "", True) for case_id in review if case_id not in posts})
    customers: dict[str, tuple[str, bool]] = {}
    if customer_ids:
        marks = ",".join("?" * len(customer_ids))
        for cid, name, vip in store.db.execute(
                f"select id, name, vip from customers where id in ({marks})", customer_ids).fetchall():
            customers[cid] = (name or "", bool(vip))
    return posts, customers


#: SLA words shortened for a row ("first response overdue 2h" -> "answer overdue 2h"): the first and the
#: next response are both an answer we owe; the case page's header tells them apart. At most 22
#: characters ("resolve overdue 23h59m"), which the SLA column shows whole at 1366 px (ROW_COLUMNS).
_SLA_SHORT = (("first response", "answer"), ("next response", "answer"), ("resolution", "resolve"),
              (" due in ", " in "), ("waiting on customer (clock paused)", "waiting on customer"))
#: A reason every complaint has says nothing about why this one is on top.
_GENERIC_REASONS = ("complaint",)


def short_sla(words: str) -> str:
    for long, short in _SLA_SHORT:
        words = words.replace(long, short)
    return words


def top_reason(reasons: list[str]) -> str:
    """The first reason that tells this case apart ("failed delivery (+14)"), else the first; a reason that
    lowered the case ("reads as a promotion … (-40)") first, or a low case would show what raised it."""
    telling = [r for r in reasons if r.split(" (")[0] not in _GENERIC_REASONS]
    lowering = [r for r in telling if r.endswith(")") and " (-" in r]
    return (lowering or telling or reasons or [""])[0]


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """One line of a post: leading @handles dropped, whitespace folded, cut at a word with an ellipsis (between
    whole letters and emoji where there is no word to cut at: :func:`doorstep.text.shorten`)."""
    words = text.split()
    while len(words) > 1 and words[0].startswith("@"):
        words.pop(0)
    return shorten(" ".join(words), limit)


def _has_right_to_left(text: str) -> bool:
    """Whether ``text`` has a Hebrew or Arabic letter or an Arabic digit, which a label beside it could reorder."""
    return any(unicodedata.bidirectional(c) in ("R", "AL", "AN") for c in text)


def _reads_right_to_left(text: str) -> bool:
    """Whether ``text``'s first letter with a direction is right to left (Unicode's first-strong rule, as FSI)."""
    for c in text:
        direction = unicodedata.bidirectional(c)
        if direction in ("R", "AL"):
            return True
        if direction == "L":
            return False
    return False


def newest_post_cell(channel: str, text: str) -> str:
    """A row's "newest post": "[X] " and the post's snippet, bidi controls in the post shown as marks (so the
    only isolate is ours). A post with right-to-left words is isolated, led by :data:`ALM` when it reads right to
    left; a post without any is left as it is (an isolate there changes nothing a reader sees)."""
    words = plain(snippet(text))
    if not words:
        return ""
    label = plain(f"[{channel_name(channel)}] ") if channel else ""
    if not _has_right_to_left(words):
        return label + words
    return (ALM if _reads_right_to_left(words) else "") + label + FSI + words + PDI


def row_flags(failed: str = "", new: bool = False, review: bool = False, vip: bool = False, status: str = "") -> str:
    """A row's flags, most urgent first: a reply or escalation that is not going out ("⚠ reply retrying"), a case new
    since the agent looked, a post awaiting review, a VIP, a status other than new or open. Why this order: the
    column shows what its width holds and the rest is cut; a failing reply, which the customer is waiting on and
    nobody else will notice, came third ("★ VIP, needs review, ⚠ reply retrying" read "★ VIP, needs r")."""
    return ", ".join(f for f in (failed, "● NEW" if new else "", "needs review" if review else "",
                                 "★ VIP" if vip else "", status) if f)


def inbox_rows(store: Any, config: Any, cases: list[Any], now: Any,
               new_ids: Collection[int] = ()) -> tuple[list[dict[str, Any]], list[str]]:
    """The inbox table's rows (and each row's SLA colour): what an agent needs to pick the next case.

    Why these columns: the words of the newest post, who wrote it (name, VIP), what needs care
    (a post awaiting review, a failed send), who has it and why it is high, all readable at 1366 px
    without scrolling sideways. Text is shown by st.dataframe as text, never as HTML. ``new_ids``: the cases
    that arrived since the agent last looked, flagged "● NEW".
    """
    posts, customers = _row_facts(store, cases)
    failed = _undelivered_cases(store, [c.id for c in cases])
    rows: list[dict[str, Any]] = []
    colours: list[str] = []
    for case in cases:
        colour, words = sla_state(case, now)
        colours.append(colour)
        text, channel, review = posts.get(case.id, ("", "", False))
        name, vip = customers.get(case.customer_id or "", ("", False))
        handle = f"@{case.author_handle}" if case.author_handle else ""
        status = "" if case.status in PLAIN_STATUSES else case_status_name(case)
        reason = top_reason(list(case.priority_reasons))
        row = {
            "case": case.id,
            "SLA": short_sla(words),
            "flags": row_flags(failed.get(case.id, ""), case.id in new_ids, review, vip, status),
            "newest post": newest_post_cell(channel, text),
            "priority": f"{case.priority:.0f} {(case.priority_band or '').upper()}".strip()
                        + (f" · {reason}" if reason else ""),
            "customer": plain(" · ".join(p for p in (name, handle) if p)) or "-",
            "brand · courier": " · ".join(p for p in ((case.brand or "").split(" ")[0], case.courier) if p),
            "assignee": case.assignee or "",
        }
        rows.append({column: row[column] for column in ROW_COLUMNS})  # the table's columns in ROW_COLUMNS' order
    return rows, colours


def render() -> None:
    """The inbox page."""
    require("reply")
    store, config = get_store(), get_config()
    if not signed_in(store):  # a tick runs without app.py: a login that ended gets no more cases
        st.rerun(scope="app")
    picked = st.session_state.pop("_inbox_open", None)
    if picked is not None:
        open_case(picked)
    store, user = get_store(), current_user()
    show_flashes()
    filters: dict[str, Any] = st.session_state.setdefault("inbox_filters", {})

    st.title("Inbox")
    # In view: the search and the filters the queue is worked by (channel, assignee, SLA, waiting for), each
    # with its counts; the rest fold into "More filters", whose label names what is set there. So the queue's
    # first rows are on screen at 1366x768 as the page opens (with every filter in view they were below the fold).
    labels = {"brand": "Brand", "courier": "Courier", "channel": "Channel", "intent": "Intent", "assignee": "Assignee"}
    notes = {}
    top = st.columns([2.6, 1.2, 1.2, 1.3, 1.3])
    with top[0]:
        search = st.text_input("Search posts", value=filters.get("search", ""), key="inbox_search",
                               placeholder="words from the post, an order or tracking number, a handle")
    filters["search"] = search.strip()
    for at, column in ((1, "channel"), (2, "assignee")):
        with top[at]:
            filters[column] = _facet_select(store, column, filters, labels[column], user.username)
            notes[column] = st.empty()
    with top[3]:
        sla_options = [ANY, *SLA_STATES]
        sla = st.selectbox("SLA", sla_options,
                           index=sla_options.index(filters["sla_state"]) if filters.get("sla_state") else 0,
                           format_func=lambda s: ANY if s == ANY else SLA_STATES[s], key="inbox_sla")
        filters["sla_state"] = None if sla == ANY else sla
        notes["sla_state"] = st.empty()
    with top[4]:
        waiting_options = [ANY, *WAITING]
        waiting = st.selectbox("Waiting for", waiting_options,
                               index=waiting_options.index(filters["waiting"]) if filters.get("waiting") else 0,
                               format_func=lambda w: ANY if w == ANY else WAITING[w], key="inbox_waiting")
        filters["waiting"] = None if waiting == ANY else waiting
        waiting_note = st.empty()
    with st.expander(_more_label(filters), key="inbox_more"):
        more = st.columns([2, 1, 1, 1, 1.3])
        with more[0]:
            statuses = st.multiselect("Status", list(CASE_STATUSES),
                                      default=filters.get("status") or list(OPEN_CASE_STATUSES),
                                      format_func=status_name, key="inbox_status")
            filters["status"] = statuses or list(OPEN_CASE_STATUSES)
            status_note = st.empty()
        for at, column in ((1, "brand"), (2, "courier"), (3, "intent")):
            with more[at]:
                filters[column] = _facet_select(store, column, filters, labels[column], user.username)
                notes[column] = st.empty()
        with more[4]:
            sort = st.selectbox("Sort by", list(SORTS), index=list(SORTS).index(filters.get("sort") or "priority"),
                                format_func=SORTS.get, key="inbox_sort")
        filters["sort"] = sort
    # Another filter, search or order starts the queue at its first page again, and "Case to open" on its top
    # case: a case picked under the old filters, still listed lower down, would be what Enter opens (the
    # inbox helper's finding: after a filter was cleared, Enter opened that case, not the top one).
    signature = repr(sorted((k, v) for k, v in filters.items() if k != "offset"))
    if st.session_state.get("_inbox_signature") not in (None, signature):
        filters["offset"] = 0
        # Not popped: the browser would keep showing (and send back) the old pick's label; set to the
        # new top case where the box is drawn (:func:`_pick_box`), which the browser then shows.
        st.session_state["_inbox_pick_top"] = True
    st.session_state["_inbox_signature"] = signature

    slots = {"status": status_note, **notes, "waiting": waiting_note}
    if unsearchable(filters.get("search") or ""):
        held = st.session_state.setdefault("_inbox_summaries", {})
        counts = filter_counts(store, filters, held)
        _show_counts(slots, counts, _channel_cases(store, filters, held, counts))
        # The search index holds words and numbers only; ignoring such a search would silently list every case.
        st.warning(escape_md(f"Nothing to search for in “{filters['search']}”: search looks for words, order and "
                             "tracking numbers and handles, so punctuation and emoji alone match no case. "
                             "Clear the search box to see every case."))
        return
    slots["pick"] = _opener()
    # What this agent has seen: cases newer than this are marked new on the live list below.
    st.session_state["_inbox_seen_max_id"] = change_mark(store)[0]
    _live_list(slots)


def _more_label(filters: dict[str, Any]) -> str:
    """The "More filters" fold's label: what it holds, and what of it is set, so a folded filter is never
    forgotten ("More filters · set: brand Larkspur Home; sorted by due time"). Each box's value as this run
    will find it: its own state, else ``filters`` (a dashboard link sets those and drops the boxes' state)."""
    state = st.session_state

    def value(column: str) -> Any:
        key = f"inbox_{column}"
        return state[key] if key in state else filters.get(column)

    chosen = []
    statuses = value("status")
    if statuses and set(statuses) != set(OPEN_CASE_STATUSES):
        chosen.append("status " + ", ".join(status_name(s) for s in statuses))
    for column in ("brand", "courier", "intent"):
        if value(column) and value(column) != ANY:
            chosen.append(f"{column} {facet_name(column, value(column))}")
    if value("sort") in SORTS and value("sort") != "priority":
        chosen.append(f"sorted by {SORTS[value('sort')]}")
    return escape_md("More filters · " + ("set: " + "; ".join(chosen) if chosen
                                          else "status, brand, courier, intent, sort"))


def _show_counts(slots: dict[str, Any], counts: dict[str, Any], channel_cases: int | None = None) -> None:
    """The counts under the filters (status, each facet, SLA states, "Waiting for"), into their places;
    ``channel_cases``: the cases under the filters other than the channel (see :func:`_channel_cases`)."""
    status_counts = counts["status"]
    slots["status"].caption(escape_md(" · ".join(f"{status_name(s)} {status_counts.get(s, 0):,}"
                                                 for s in CASE_STATUSES if status_counts.get(s))))
    for column in FACETS:
        slots[column].caption(_counts_caption(counts[column], st.session_state.get("inbox_filters", {}).get(column),
                                              column=column, total=channel_cases if column == "channel" else None))
    slots["sla_state"].caption(escape_md(" · ".join(f"{k} {n:,}" for k, n in counts["sla_state"].items())))
    slots["waiting"].caption(escape_md(" · ".join(f"{words} {counts['waiting'][w]:,}" for w, words in WAITING.items())))


def _channel_cases(store: Any, filters: dict[str, Any], held: dict[tuple[Any, ...], Any],
                   counts: dict[str, Any]) -> int:
    """How many cases the Channel filter's counts are of (the "57" of "12 of 57"): the queue's total under
    every other filter. Not the sum of its counts: a case the customer wrote on two networks in counts
    under each (``Store.inbox_summary``), and "61 of 60" would read as a miscount."""
    if not filters.get("channel"):
        return int(counts["total"])
    return int(filter_counts(store, {**filters, "channel": None}, held)["total"])


def filter_counts(store: Any, filters: dict[str, Any], held: dict[tuple[Any, ...], Any]) -> dict[str, Any]:
    """The counts beside the filters: each facet's under the *other* filters, the SLA states' and the
    "Waiting for" views' under all the others (what ``Store.inbox_facets`` and ``Store.inbox_count``
    return for them), and the queue's ``total`` under every filter, summed from
    :meth:`Store.inbox_summary` rows.

    Why: they were ~14 counting queries per run, each a walk of every matching open case
    (0.16-0.6 s at 114k open cases, bench/RESULTS.md issue 17). A summary holds every
    combination of the facets for one status set, search and waiting view, so a run needs at
    most three (the waiting view shown, and one per other "Waiting for" count), and the
    summaries are kept in ``held`` (the session's) while the data (:func:`change_mark`) and the
    minute stay the same: another brand, courier, channel, intent, assignee or SLA state, another
    page, or coming back from an unchanged case query nothing; a new search or status set asks
    again. Within that minute the counts are those of the moment the summary was taken, as the
    counts kept for the next page always were.
    """
    mark = (change_mark(store), utcnow().replace(second=0, microsecond=0))
    for key in [k for k, (m, _) in held.items() if m != mark]:
        del held[key]
    statuses = _summary_statuses(filters)
    search = filters.get("search") or None

    def summary(waiting: str | None) -> list[tuple[Any, ...]]:
        key = (statuses, search, waiting)
        if key in held:
            held[key] = held.pop(key)  # the most recently used last: the least recently used goes first
        else:
            if len(held) >= SUMMARIES_KEPT:  # the least recently used search's first: the whole queue is asked most
                del held[next((k for k in held if k[1] is not None), next(iter(held)))]
            if key == (tuple(OPEN_CASE_STATUSES), None, None):  # the whole queue: brought up to date
                take = lambda: _live_summary(store)  # noqa: E731
            else:
                take = lambda: store.inbox_summary(InboxQuery(statuses=statuses, search=search, waiting=waiting))  # noqa: E731
            held[key] = (mark, _shared_summary(store, mark, key, take))
        return held[key][1]

    def counted(waiting: str | None, total_only: bool = False) -> Any:
        return _shared_counts(store, mark, (statuses, search, waiting), summary(waiting), filters, total_only)

    counts = dict(counted(filters.get("waiting") or None))
    counts["waiting"] = {w: counted(w, total_only=True) for w in WAITING}
    return counts


def _shared_counts(store: Any, mark: Any, key: tuple[Any, ...], rows: list[tuple[Any, ...]],
                   filters: dict[str, Any], total_only: bool) -> Any:
    """:func:`counts_from_summary` of ``rows`` for ``filters``, or what a session of this server already
    summed from the same rows for the same filters.

    Why: summing a summary's rows is a Python pass over every combination of the facets (~5,800 rows at
    1M cases), 20-120 ms per inbox run on two loaded cores (issue 17, profiled first load after login):
    the largest part of the run once the summary itself is shared. Every login's first inbox has no
    filters and reads the same rows, so the first session's sums serve the rest; another filter in a
    session still sums once. Kept only for the current data and minute (``mark``), as the summaries.
    """
    signature = (getattr(store, "path", None), key, tuple(filters.get(column) for column in FACETS),
                 tuple(filters.get("status") or OPEN_CASE_STATUSES), filters.get("sla_state") or None, total_only)
    with _SHARED_LOCK:
        found = _COUNTS.get(signature)
        if found is not None and found[0] == mark and found[1] is rows:
            return found[2]
    value = counts_from_summary(rows, filters, total_only=total_only)
    with _SHARED_LOCK:
        for old in [k for k, (m, _, _) in _COUNTS.items() if m != mark]:
            del _COUNTS[old]
        while len(_COUNTS) >= COUNTS_KEPT:
            del _COUNTS[next(iter(_COUNTS))]
        _COUNTS[signature] = (mark, rows, value)
    return value


def _shared_summary(store: Any, mark: Any, key: tuple[Any, ...], take: Any) -> list[tuple[Any, ...]]:
    """The summary for ``key`` at ``mark`` that another session of this server already took, or ``take()``.

    Why: a new session (every login, every new tab) held none, and the first inbox after login took
    the whole queue's summary again (70-450 ms at 1M under load, bench/RESULTS.md issue 17) although
    the colleague's session beside it had just taken the same one: the summaries hold no user's data
    (every case, grouped), so sessions on the same database, data and minute share them.
    """
    shared = (getattr(store, "path", None), *key)
    with _SHARED_LOCK:
        found = _SHARED.get(shared)
        if found is not None and found[0] == mark:
            return found[1]
    rows = take()
    with _SHARED_LOCK:
        for old in [k for k, (m, _) in _SHARED.items() if m != mark]:
            del _SHARED[old]  # the data or the minute moved on: nobody asks for those again
        while len(_SHARED) >= SUMMARIES_KEPT * 4:
            del _SHARED[next(iter(_SHARED))]
        _SHARED[shared] = (mark, rows)
    return rows


def _live_summary(store: Any) -> list[tuple[Any, ...]]:
    """The whole open queue's summary now, brought up to date from the one this server took last
    (``Store.inbox_summary_live``: the cases changed since, and those the clock moved), instead of
    walking every open case after each reply and each minute (60-190 ms at 1M, issue 17 fifth round).
    One at a time: a session waits for another's update rather than walking the cases beside it."""
    path = str(getattr(store, "path", ""))
    with _LIVE_LOCK:
        rows, state = store.inbox_summary_live(_LIVE.get(path))
        if state is None:
            _LIVE.pop(path, None)
        else:
            _LIVE[path] = state
    return rows


#: The whole queue's live summary per database (see _live_summary).
_LIVE: dict[str, Any] = {}
_LIVE_LOCK = threading.Lock()

#: Summaries every session of this server shares, by (database, statuses, search, waiting view):
#: only those of the current data and minute are kept.
_SHARED: dict[tuple[Any, ...], tuple[Any, list[tuple[Any, ...]]]] = {}
_SHARED_LOCK = threading.Lock()
#: Counts summed from those summaries, by (database, summary, filters): see _shared_counts.
_COUNTS: dict[tuple[Any, ...], tuple[Any, list[tuple[Any, ...]], Any]] = {}
#: Filter combinations whose counts are kept (the oldest go first).
COUNTS_KEPT = 256

#: Summaries kept per session (three per status set and search seen this minute): a few searches,
#: and back to the whole queue without asking again (searches' summaries go first).
SUMMARIES_KEPT = 12
#: Summary row positions (``Store.inbox_summary``): the grouping columns, then the counts per SLA view.
_GROUP_AT = {column: at for at, column in enumerate(INBOX_SUMMARY_GROUPS)}
_COUNT_AT = {view: len(INBOX_SUMMARY_GROUPS) + at for at, view in enumerate((None, "breached", "due_soon", "snoozed"))}


def _summary_statuses(filters: dict[str, Any]) -> tuple[str, ...]:
    """The statuses one summary must hold: the open ones (the status filter's own counts) and the chosen."""
    chosen = [s for s in (filters.get("status") or OPEN_CASE_STATUSES) if s not in OPEN_CASE_STATUSES]
    return tuple(OPEN_CASE_STATUSES) + tuple(dict.fromkeys(chosen))


def counts_from_summary(rows: list[tuple[Any, ...]], filters: dict[str, Any], *,
                        total_only: bool = False) -> Any:
    """The counts beside the filters from one summary (its search and waiting view already applied):
    each facet's values under the other filters (most cases first, as ``Store.inbox_facets``
    orders them; "(none)" for no value), the SLA states under every filter; with ``total_only``,
    the number of cases under every filter (``Store.inbox_count``).

    One pass over the rows (thousands at 1M cases: every combination of the facets): a row that
    meets every filter counts for each facet and state, a row that misses one filter counts only
    for that filter's own values, a row that misses two counts for nothing.
    """
    # "(none)" (nobody, no post yet, no courier) is the cases without a value, as ``Store.inbox`` lists them
    chosen = [(_GROUP_AT[column], None if filters[column] == NO_VALUE else filters[column])
              for column in FACETS if filters.get(column)]
    statuses = frozenset(filters.get("status") or OPEN_CASE_STATUSES)
    open_statuses = frozenset(OPEN_CASE_STATUSES)
    at, status_at = _COUNT_AT[filters.get("sla_state") or None], _GROUP_AT["status"]
    facet_at = [_GROUP_AT[column] for column in FACETS]
    by_value: dict[int, dict[Any, int]] = {i: {} for i in (status_at, *facet_at)}
    states = [0] * len(SLA_STATES)
    state_at = [_COUNT_AT[s] for s in SLA_STATES]
    total = 0
    channel_at = _GROUP_AT["channel"]
    # A case is under every channel a post of its customer's came on (Store._other_channels); rows of
    # SUMMARY_ALSO_ROW items count such a case under a channel besides its own. Under a channel filter they
    # count as the other rows do (the case's own row misses the filter); without one the case is counted
    # by its own row already, so they count for the channel's own counts alone.
    also_counts_alone = not filters.get("channel")
    for row in rows:
        missed = -1
        for i, value in chosen:
            if row[i] != value:
                if missed >= 0:
                    break
                missed = i
        else:
            n = row[at]
            if also_counts_alone and len(row) == SUMMARY_ALSO_ROW:
                if missed < 0 and n and row[status_at] in statuses:
                    counts = by_value[channel_at]
                    counts[row[channel_at]] = counts.get(row[channel_at], 0) + n
                continue
            if missed < 0:
                if n and row[status_at] in open_statuses:  # the status filter's own counts: open cases
                    counts = by_value[status_at]
                    counts[row[status_at]] = counts.get(row[status_at], 0) + n
                if row[status_at] in statuses:
                    total += n
                    for k, j in enumerate(state_at):
                        states[k] += row[j]
                    if n:
                        for i in facet_at:
                            counts = by_value[i]
                            counts[row[i]] = counts.get(row[i], 0) + n
            elif n and row[status_at] in statuses:
                counts = by_value[missed]
                counts[row[missed]] = counts.get(row[missed], 0) + n
    if total_only:
        return total
    out: dict[str, Any] = {}
    for column, i in (("status", status_at), *zip(FACETS, facet_at)):
        # in the database's order of values (no value first), then most cases first
        ordered = sorted(by_value[i].items(), key=lambda item: (item[0] is not None, item[0] or ""))
        out[column] = {(NO_VALUE if v is None else v): n for v, n in sorted(ordered, key=lambda item: -item[1])}
    # snoozed cases are counted by the "snoozed" state only
    out["sla_state"] = {SLA_STATES[s].split(" (")[0]: states[k] for k, s in enumerate(SLA_STATES)}
    out["total"] = total  # the queue's own total (what total_only returns), from the same pass
    return out


#: Audited actions that change no case (console/login.py): they do not move :func:`change_mark`.
_NO_CASE_CHANGE = ("login", "logout", "login.failed", "login.locked", "login.refused")


def change_mark(store: Any) -> tuple[int, int, int]:
    """(newest case, newest post, newest audit event): three primary-key lookups, whatever the size of
    the data. New cases, new posts (which change cases) and every change made through the store's
    audited writes (status, assignment, outbox state) move it; an idle inbox leaves it still. Logins
    and logouts are audited but change no case: they leave it still, so a login's first inbox can use
    the summaries another session took (issue 17); the newest other event is found walking back from
    the newest (a key walk that stops at the first, as the rest)."""
    row = store.db.execute(
        "select (select max(id) from cases), (select max(id) from mentions), "
        "(select id from audit_events where action not in (" + ", ".join("?" * len(_NO_CASE_CHANGE)) + ") "
        "order by id desc limit 1)", list(_NO_CASE_CHANGE)).fetchone()
    return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)


def _live_mark(store: Any) -> tuple[Any, ...]:
    # The minute too: SLA colours and "due in" move with the clock, snoozed cases wake.
    return (*change_mark(store), utcnow().replace(second=0, microsecond=0))


@st.fragment(run_every=timedelta(seconds=INBOX_EVERY_S))
def _live_list(slots: dict[str, Any] | None = None) -> None:
    """The queue itself, and the counts under the filters, redrawn every few seconds without a click.

    Each tick first compares :func:`change_mark` (three key lookups) and the minute with the last
    ones and, only when something changed, takes the counts again (:func:`filter_counts`: the
    summary this server keeps up to date) and queries the page again; otherwise it redraws what it
    holds. The counts beside the filters, the status line, the queue's total and its rows all come
    from that one moment, so they agree (audit of the inbox, finding 4: the captions said 138 while
    the list said 137). The filters, search and the case-number box sit outside this fragment, so a
    tick never touches what the agent is typing or choosing; the fragment writes the counts and the
    "Case to open" list into the places ``slots`` kept for them there. Clicks and ticks never run at
    the same time (``runner.fastReruns = false``).
    """
    store, config = get_store(), get_config()
    if not signed_in(store):  # a tick runs without app.py: a login that ended gets no more cases
        st.rerun(scope="app")
    picked = st.session_state.pop("_inbox_open", None)
    if picked is not None:
        # a row picked in the table (its on_select ran just before this rerun): straight to the
        # case page, without querying and drawing the rows once more on the way out
        open_case(picked)
    filters = st.session_state.get("inbox_filters") or {}
    live = st.session_state.get("_inbox_live")
    mark = _live_mark(store)
    if live is None or mark != live["mark"] or _query(filters) != live["query"]:
        held = st.session_state.setdefault("_inbox_summaries", {})
        counts = filter_counts(store, filters, held)
        # The queue's total under every filter, from the same summary as the counts (``Store.inbox_count``
        # counts the same cases: one to three more walks of the matching open cases per run, 5-25 ms at 1M).
        total = counts["total"]
        query = _query(filters)
        if query.offset and query.offset >= total:  # the queue shrank under the agent: last page
            filters["offset"] = max(0, (total - 1) // PAGE_SIZE * PAGE_SIZE)
            query = _query(filters)
        live = {"mark": mark, "query": query, "total": total, "cases": store.inbox(query), "counts": counts,
                "channel_cases": _channel_cases(store, filters, held, counts)}
        st.session_state["_inbox_live"] = live
    query, total, cases = live["query"], live["total"], live["cases"]
    # What J / K and X walk: the whole queue in this order (console/case_view.py queue_neighbours).
    st.session_state["_inbox_query"] = replace(query, limit=PAGE_SIZE, offset=0)
    if slots is not None:
        _show_counts(slots, live["counts"], live["channel_cases"])
        _pick_box(slots["pick"], cases)
    seen_max = int(st.session_state.get("_inbox_seen_max_id") or 0)
    fresh = [c for c in cases if (c.id or 0) > seen_max]
    capped = bool(filters.get("search")) and store.search_is_capped(filters["search"])
    st.caption(escape_md(
        f"{total} case(s)" + (f", showing {_showing(query.offset, len(cases), total)}" if total > len(cases) else "")
        + (" — search looked at the newest matching posts only" if capped else "")
        + f"; times in {config.timezone}; updates by itself every {INBOX_EVERY_S} s"
        + ("" if query.snoozed == "only" else "; snoozed cases are hidden until they wake (SLA filter: snoozed)")
    ))
    if fresh:
        st.info(escape_md(f"{len(fresh)} new case(s) since you looked, marked ● NEW: "
                          + ", ".join(f"#{c.id}" for c in fresh[:8])), icon=":material/fiber_new:")
    if st.session_state.get("inbox_select_mode") and not cases:
        _closed_answer(can(current_user(), "status"))  # before "No cases match": closing the last ones must still say so
    if not cases:
        st.session_state["_inbox_ids"] = []
        st.info("No cases match these filters.")
        return

    if st.session_state.get("inbox_select_mode"):
        cases = _select_several(store, config, query, cases)
    rows, colours = inbox_rows(store, config, cases, utcnow(), new_ids={c.id for c in cases if (c.id or 0) > seen_max})
    styled = pd.DataFrame(rows).style.apply(
        lambda column: [f"background-color: {SLA_COLOURS[c]}" if SLA_COLOURS[c] else "" for c in colours],
        subset=["SLA"],
    )
    if st.session_state.get("inbox_select_mode"):
        event = st.dataframe(styled, hide_index=True, height=min(36 * (len(rows) + 1) + 4, 740),
                             on_select="rerun", selection_mode="multi-row", key=_select_key(),
                             column_config=ROW_COLUMNS, width="stretch")
        _several_actions(store, cases, [cases[i] for i in event.selection.rows if 0 <= i < len(cases)])
    else:
        st.session_state["_inbox_ids"] = [c.id for c in cases]
        st.dataframe(styled, hide_index=True, height=min(36 * (len(rows) + 1) + 4, 740),
                     on_select=_open_from_table, selection_mode="single-row", key="inbox_table",
                     column_config=ROW_COLUMNS, width="stretch")

    offset = query.offset
    pager = st.columns([1, 1, 4])
    pager[0].button("Previous", key="inbox_prev", on_click=_page, args=(-1,), disabled=offset <= 0,
                    icon=":material/chevron_left:")
    pager[1].button("Next", key="inbox_next", on_click=_page, args=(1,), disabled=offset + len(cases) >= total,
                    icon=":material/chevron_right:")
    pager[2].caption(escape_md(f"Showing {_showing(offset, len(cases), total)} · page {offset // PAGE_SIZE + 1:,} "
                               f"of {max(1, -(-total // PAGE_SIZE)):,} · sorted by {SORTS[query.sort]}: "
                               f"{SORT_RULES[query.sort]}"))


def _pick_name(case: Any) -> str:
    """"#614 — lost or missing parcel @astewart17"; a case we opened ourselves has no author to name."""
    return plain(f"#{case.id} — {intent_name(case.intent) if case.intent else 'case'}"
                 + (f" @{case.author_handle}" if case.author_handle else ""))


def _opener() -> Any:
    """"Case to open": a case of this page, or any case number typed in (whatever its status or page;
    Enter in the number box opens it too). Returns the place of the list of this page's cases, which the
    live queue fills (:func:`_pick_box`), so the list and the case Enter opens are those of the rows shown."""
    error = st.session_state.pop("_inbox_pick_error", None)
    pick_cols = st.columns([2.6, 1.6, 1.1, 1.1])
    with pick_cols[0]:
        slot = st.empty()
    with pick_cols[1]:
        st.text_input("…or any case number", key="inbox_number", placeholder="e.g. 224", on_change=_open_typed)
    with pick_cols[2]:
        st.write("")
        st.button("Open case", key="inbox_open", type="primary", on_click=_open_from_pick, shortcut="Enter",
                  help="Enter opens the chosen case (the top one unless you pick another)")
    with pick_cols[3]:
        st.write("")
        # In the row already there: the queue's first rows stay above the fold at 1366x768.
        st.toggle("Select several", key="inbox_select_mode", on_change=_end_selecting,
                  help="Tick cases of this page, then close them as spam or resolve them in one go")
    if error:
        st.error(escape_md(error))
    return slot


def _pick_box(slot: Any, cases: list[Any]) -> None:
    """The "Case to open" list of the page's cases, in ``slot`` (nothing when the page has none)."""
    by_id = {c.id: c for c in cases}
    if not by_id:
        slot.empty()
        return
    if st.session_state.pop("_inbox_pick_top", False) or st.session_state.get("inbox_pick") not in by_id:
        st.session_state["inbox_pick"] = next(iter(by_id))  # the filters changed: their top case
    slot.selectbox("Case to open", list(by_id), key="inbox_pick", format_func=lambda cid: _pick_name(by_id[cid]))


# --------------------------------------------------------------------- select several, close them in one go
#: Cases a confirmation names by number and handle; the rest are counted ("and 12 more").
CONFIRM_NAMED = 5
#: What the two actions are called on their buttons, their confirmations and their answers.
SEVERAL_ACTIONS = {"spam": ("Close as spam", "closed as spam"), "resolve": ("Resolve", "resolved")}


def _select_key() -> str:
    """The multi-row table's key, moved on after each close: the ticks of the cases just closed go with them."""
    return f"inbox_multi_{int(st.session_state.get('_inbox_select_round', 0))}"


def _end_selecting() -> None:
    """on_change of "Select several": the list taken for ticking, a question and an answer start again."""
    for key in ("_inbox_selecting", "_inbox_confirm", "_inbox_closed"):
        st.session_state.pop(key, None)
    st.session_state["_inbox_select_round"] = int(st.session_state.get("_inbox_select_round", 0)) + 1


def _select_several(store: Any, config: Any, query: InboxQuery, cases: list[Any]) -> list[Any]:
    """The page's cases as they were when ticking began, in that order.

    Why held: the table's ticks are row positions, and the live list moves (a new case on top, a colleague's
    change): a tick must stay on the case it was put on. Held until another page or filter (a close takes its
    cases out; once none is left, the page as it is then is held); a case changed meanwhile is refused by its
    version (``doorstep.closing``), never closed unseen."""
    held = st.session_state.get("_inbox_selecting")
    if held is None or held["query"] != query or not held["cases"]:
        if held is not None:  # another list: no tick, and no question, may carry over to its rows by position
            # (ticks on page 1 ticked page 2's first rows, and a lead closed two complaints as spam: audit)
            st.session_state["_inbox_select_round"] = int(st.session_state.get("_inbox_select_round", 0)) + 1
            st.session_state.pop("_inbox_confirm", None)
        held = {"query": query, "cases": list(cases)}
        st.session_state["_inbox_selecting"] = held
    return held["cases"]


def _closed_answer(allowed: bool) -> None:
    """The answer to the last close: how many were closed, and each refused case with its reason, a line each;
    where some were held up (a message not gone, a colleague typing), a button to close those anyway, asked
    first like the close itself (the case page's "Resolve even though", the CLI's ``--force``)."""
    answer = st.session_state.get("_inbox_closed")
    if answer is None:
        return
    (st.success if answer["closed"] else st.info)(escape_md(answer["summary"]))
    if answer["refused"]:
        st.error(escape_md("\n".join([f"{len(answer['refused'])} not closed:", *answer["refused"]])))
    held, action = answer.get("held") or [], answer.get("action", "resolve")
    if held and st.button(f"{'Close' if action == 'spam' else 'Resolve'} the {len(held)} held up anyway"
                          f"{'' if action == 'resolve' else ' as spam'}...", key="inbox_several_anyway",
                          disabled=not allowed, icon=":material/priority_high:"):
        st.session_state["_inbox_confirm"] = {"action": action, "ids": list(held), "force": True}


def case_handle(case: Any) -> str:
    """"#12 @bot_401": a case by its number and its customer's handle, as a confirmation names it."""
    return plain(f"#{case.id}" + (f" @{case.author_handle}" if case.author_handle else ""))


def confirm_words(action: str, cases: list[Any], *, anyway: bool = False) -> str:
    """"Close 3 cases as spam: #12 @a, #13 @b, #14 @c?": how many, and the first few by number and handle."""
    n = len(cases)
    named = ", ".join(case_handle(c) for c in cases[:CONFIRM_NAMED])
    more = f" and {n - CONFIRM_NAMED} more" if n > CONFIRM_NAMED else ""
    verb = "Close" if action == "spam" else "Resolve"
    return (f"{verb} {n} case{'' if n == 1 else 's'}{' as spam' if action == 'spam' else ''}"
            f"{' anyway' if anyway else ''}: {named}{more}?")


def closed_words(action: str, outcomes: list[Closing], by_id: dict[int, Any]) -> dict[str, Any]:
    """The answer to a close: how many were closed, and each refused one with its reason, one line each."""
    done = SEVERAL_ACTIONS[action][1]
    closed = sum(o.closed for o in outcomes)
    retired = [o for o in outcomes if o.closed and o.note]
    summary = f"{closed} case{'' if closed == 1 else 's'} {done}." + (
        f" {len(retired)} had a rule's message waiting, which will not be sent." if retired else "")
    refused = [f"{case_handle(by_id[o.case_id]) if o.case_id in by_id else f'#{o.case_id}'}: {o.reason}"
               for o in outcomes if not o.closed]
    # What "anyway" may close: held up by a message not gone or a colleague typing, never a case changed since
    # it was listed (that one must be looked at first).
    held = [o.case_id for o in outcomes if not o.closed and o.held]
    return {"closed": closed, "summary": summary, "refused": refused, "action": action, "held": held}


def _several_actions(store: Any, cases: list[Any], chosen: list[Any]) -> None:
    """Under the multi-row table: "Close as spam" and "Resolve" for the ticked cases, each asked first.

    Disabled for a role that may not change a status (``doorstep.permissions``: "status"); the close itself is
    checked again as it acts, case by case, with the role as it is then."""
    user = current_user()
    allowed = can(user, "status")
    n = len(chosen)
    cols = st.columns([1.2, 1, 4])
    for at, action in ((0, "spam"), (1, "resolve")):
        if cols[at].button(SEVERAL_ACTIONS[action][0], key=f"inbox_several_{action}", disabled=not (allowed and n),
                           icon=":material/block:" if action == "spam" else ":material/check:"):
            st.session_state["_inbox_confirm"] = {"action": action, "ids": [c.id for c in chosen]}
    cols[2].caption(escape_md("Your role may not resolve cases" if not allowed else f"{n} selected" if n
                              else "Tick the cases to close in the table's first column"))
    _closed_answer(allowed)  # where the lead pressed Yes: drawn above the table it was off screen (browser check)
    asked = st.session_state.get("_inbox_confirm")
    if not asked:
        return
    by_id = {c.id: c for c in cases}
    asked_cases = [by_id[i] for i in asked["ids"] if i in by_id]
    if not asked_cases:
        st.session_state.pop("_inbox_confirm", None)
        return
    action, force = asked["action"], bool(asked.get("force"))
    st.warning(escape_md(confirm_words(action, asked_cases, anyway=force)))
    yes, no, _ = st.columns([1.6, 1, 3])
    n = len(asked_cases)
    if yes.button(f"Yes, {'close' if action == 'spam' else 'resolve'} {n}{' as spam' if action == 'spam' else ''}"
                  f"{' anyway' if force else ''}", key="inbox_several_yes", type="primary", disabled=not allowed):
        _close_several(store, action, asked_cases, by_id, force=force)
    if no.button("Cancel", key="inbox_several_no"):
        st.session_state.pop("_inbox_confirm", None)
        st.rerun(scope="fragment")


def _close_several(store: Any, action: str, chosen: list[Any], by_id: dict[int, Any], *, force: bool = False) -> None:
    """Close the confirmed cases (``doorstep.closing.close_cases``) from the versions listed, then say what
    happened; the closed cases leave the held list, whose ticks start again. ``force``: past messages not gone
    and colleagues typing (never past a change since the list was drawn: the versions still hold)."""
    st.session_state.pop("_inbox_confirm", None)
    actor = acting_user(store, "status")
    if actor is None:
        st.session_state["_inbox_closed"] = {"closed": 0, "summary": "Nothing closed: your role may not resolve cases.",
                                             "refused": []}
    else:
        outcomes = close_cases(store, [c.id for c in chosen], actor.username, as_spam=action == "spam", now=utcnow(),
                               force=force, versions={c.id: c.version for c in chosen})
        st.session_state["_inbox_closed"] = closed_words(action, outcomes, by_id)
        gone = {o.case_id for o in outcomes if o.closed}
        held = st.session_state.get("_inbox_selecting")
        if held is not None:
            held["cases"] = [c for c in held["cases"] if c.id not in gone]
    st.session_state["_inbox_select_round"] = int(st.session_state.get("_inbox_select_round", 0)) + 1
    st.rerun()
