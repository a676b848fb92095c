"""The case page's "Split or merge" section: an agent corrects which posts make one case.

Why its own module: the grouping rules (doorstep/cases.py) guess, and an agent who sees two
issues in one case, or one issue in two, must be able to fix it where they read the case.
Both actions are role-checked (``can(user, "regroup")``), written with the case version the
agent opened (a change made meanwhile is refused, as for every other case action), and
audited by doorstep/regroup.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from console.auth import can
from console.widgets import escape_md, flash, get_config, lazy_expander, local_time, open_case
from console.words import intent_name, status_name
from doorstep.models import Case
from doorstep.store import StaleCaseError, Store
from doorstep.text import shorten


def merged_notice(case: Case) -> None:
    """A merged case says where its posts went, with a way there."""
    if case.merged_into:
        st.info(f"This case was merged into case #{case.merged_into}; its posts, notes and messages are there.",
                icon=":material/call_merge:")
        if st.button(f"Open case #{case.merged_into}", key=f"merged_open_{case.id}"):
            open_case(case.merged_into)


def _conflict(store: Store, case: Case, exc: StaleCaseError) -> None:
    from console.case_view import hold

    fresh = store.get_case(case.id)  # type: ignore[arg-type]
    if fresh is not None:
        hold(fresh)
    st.session_state["case_conflict"] = str(exc)
    st.rerun()


def other_cases_of_customer(store: Store, case: Case) -> list[Case]:
    """The same customer's other cases that could be merged into this one (not merged ones), newest first."""
    from doorstep.regroup import same_customer

    if case.customer_id:
        rows = store.rows("select * from cases where customer_id = ? and id != ? and merged_into is null "
                          "order by id desc limit 20", [case.customer_id, case.id])
    else:
        rows = store.rows("select * from cases where channel = ? and author_handle = ? and id != ? and "
                          "merged_into is null order by id desc limit 20",
                          [case.channel, case.author_handle, case.id])
    found = [store.get_case(int(r["id"])) for r in rows]
    return [c for c in found if c is not None and same_customer(case, c)]


def regroup_section(store: Store, case: Case, user: Any) -> None:
    """Split a post out into a new case; merge another case of the same customer into this one."""
    from console.case_view import held_version
    from doorstep.regroup import merge_cases, split_post

    if case.merged_into or not can(user, "regroup"):
        return
    config = get_config()
    posts = [m for m in store.mentions_for_case(case.id) if not m.outbound]  # type: ignore[arg-type]
    others = other_cases_of_customer(store, case)
    if len(posts) < 2 and not others:
        return
    def split(chosen: int) -> str:
        new = split_post(store, config, case.id, int(chosen), held_version(case), user.username)  # type: ignore[arg-type]
        return f"post moved into new case #{new.id}"

    def merge(chosen: int) -> str:
        other = by_case[chosen]
        merge_cases(store, config, case.id, held_version(case), other.id, other.version, user.username)  # type: ignore[arg-type]
        return f"case #{other.id} merged into this case"

    by_id = {m.id: m for m in posts}
    by_case = {c.id: c for c in others}
    box, is_open = lazy_expander("Split or merge", key=f"regroup_open_{case.id}")  # drawn when opened
    with box:
        if is_open and len(posts) >= 2:
            _form(store, case, "split", "Post about another issue", list(by_id), "Split into a new case", split,
                  # "post N" keeps two posts of the same words and minute apart: Streamlit picks an option by its label.
                  lambda i: f"post {i} · {local_time(by_id[i].created_at, config)} · "
                            f"{shorten(' '.join(by_id[i].text.split()), 60)}")
        if is_open and others:
            _form(store, case, "merge", "The customer's case about the same issue", list(by_case),
                  "Merge that case into this one", merge,
                  lambda i: f"#{i} · {status_name(by_case[i].status)} · {by_case[i].brand or '-'} · "
                            f"{intent_name(by_case[i].intent) if by_case[i].intent else '-'} · "
                            f"{by_case[i].mention_count} post(s)"
                            + (f" · {by_case[i].assignee}'s" if by_case[i].assignee else ""))


def _form(store: Store, case: Case, name: str, label: str, options: list[Any], button: str,
          act: Callable[[Any], str], format_func: Callable[[Any], str]) -> None:
    """One regroup form: choose, press, ``act`` (its words are the flash); a stale case or a refusal is said."""
    from console.case_view import hold
    from doorstep.permissions import NotAllowed
    from doorstep.regroup import RegroupError

    with st.form(f"{name}_{case.id}"):
        chosen = st.selectbox(label, options, key=f"{name}_sel_{case.id}_v{case.version}", format_func=format_func)
        if st.form_submit_button(button):
            try:
                done = act(chosen)
            except StaleCaseError as exc:
                _conflict(store, case, exc)
            except (RegroupError, NotAllowed) as exc:  # NotAllowed: a colleague's open case is a lead's to merge
                st.error(escape_md(str(exc)))
            else:
                hold(store.get_case(case.id))  # type: ignore[arg-type]
                flash("success", done)
                st.rerun()
