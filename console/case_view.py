"""One case: the posts, the order and the parcel's journey, and every action on it.

Collision safety: the version of the case the agent is working from is kept in the session
(``case_versions``) from the moment the case is opened. Status, assignment, snooze, link and
label changes are written with that version; if someone else changed the case meanwhile the
store refuses (``StaleCaseError``), the agent is told who changed it, and the page shows the
fresh state with the new version, so nothing is overwritten silently. Presence (who else is
looking or drafting) warns before that happens.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from zoneinfo import ZoneInfo

import altair as alt
import streamlit as st

from doorstep import presence
from console.auth import can
from console.login import acting_user, signed_in
from console.reply_count import live_count
from console.timeline import LINK_FIELDS, actor_name, escalation_names, recipient
from console.widgets import (
    busy_message,
    current_user,
    run_script,
    escape_md,
    flash,
    get_config,
    get_store,
    lazy_expander,
    local_time,
    open_case,
    plain,
    require,
    safe_table,
    safe_text,
    show_flashes,
    show_priority,
    sla_badge,
    sla_clock_line,
)
from console.words import (case_status_name, channel_name, intent_name, kind_name, status_name, status_words,
                           template_name, tracking_name)
from doorstep import sla
from doorstep.models import CASE_STATUSES, INTENTS, SENTIMENTS, TRACKING_STATUSES, Case, Labels, Mention, utcnow
from doorstep import case_merge
from doorstep.corrections import ReviewError, correct_labels, last_review
from doorstep.case_merge import Held
from doorstep.permissions import NotAllowed
from doorstep.resolving import (  # noqa: F401 - re-exported: the page's rule lives in the core
    RETIRED_BY_RESOLVING, held_up_words, pending_messages, pending_words, resolve_holds, retired_words,
    undelivered_messages,
)
from doorstep.store import StaleCaseError, Store, iso
from doorstep.text import shorten

SNOOZE_CHOICES = {"1 hour": timedelta(hours=1), "4 hours": timedelta(hours=4), "Tomorrow (24 h)": timedelta(days=1)}


# --------------------------------------------------------------------- the case's address
def url_case_id() -> int | None:
    """The case this page shows, kept in its address (``/case?id=123``) and in the session.

    The address wins: it is what a reload, the back button or a shared link brings, and the
    session (lost on reload) follows it. Opened from the inbox without one, the session's case
    is written into the address, so the page can be reloaded and linked.
    """
    raw = st.query_params.get("id")
    number = int(raw) if raw and str(raw).strip().isdigit() and int(raw) > 0 else None
    if number is not None:
        st.session_state["case_id"] = number
    else:
        held = st.session_state.get("case_id")
        number = int(held) if held else None
        if number is not None:
            st.query_params["id"] = str(number)
    if number is not None and st.session_state.get("case_pick") != number:
        st.session_state["case_pick"] = number
    return number


# --------------------------------------------------------------------- versions
def _held_map() -> dict[int, Held]:
    return st.session_state.setdefault("case_held", {})


def held(store: Store, case: Case) -> Held:
    """The case as this agent is working from it (first seen on opening it)."""
    assert case.id is not None
    cases = _held_map()
    if case.id not in cases:
        cases[case.id] = case_merge.hold(store, case)
    return cases[case.id]


def held_version(case: Case) -> int:
    found = _held_map().get(case.id)  # type: ignore[arg-type]
    return found.case.version if found is not None else held(get_store(), case).case.version


def hold(case: Case) -> None:
    _held_map()[case.id] = case_merge.hold(get_store(), case)  # type: ignore[index]


def write_case(store: Store, case: Case, actor: str, what: str, at: str = "actions", **changes: Any) -> Case | None:
    """Write ``changes`` from the version the agent is working from; on conflict, explain and load fresh.

    Only a change by someone else to one of the same fields is a conflict: the agent's own
    earlier changes, and the outbox's after their own reply, are not (``doorstep.case_merge``).
    A status or snooze moves the SLA clocks too (paused while waiting on the customer or snoozed),
    computed from the version the change is finally written on.
    """
    config = get_config()
    try:
        updated = case_merge.update_case_merging(
            store, held(store, case), actor, follow=lambda base, person: sla.follow(base, person, utcnow(), config),
            **changes)
    except StaleCaseError as exc:
        fresh = store.get_case(case.id)  # type: ignore[arg-type]
        if fresh is not None:
            hold(fresh)
        flash("error", str(exc), at=f"{at}:{case.id}")
        _next_form_round(case)
        return None
    except NotAllowed as exc:  # the role changed since the page was drawn: said, nothing written
        flash("error", str(exc), at=f"{at}:{case.id}")
        return None
    hold(updated)
    flash("success", what, at=f"{at}:{case.id}")
    _next_form_round(case)
    return updated


# --------------------------------------------------------------------- presence and failures
def _presence_live(case_id: int, username: str, drawn_version: int) -> None:
    """Who else is here, redrawn every few seconds without a click (a fragment rerun).

    Each tick only *reads* presence; the heartbeat is written when this agent's entry is
    about to age (every :data:`PRESENCE_BEAT`) or their drafting state changed, so an open
    case costs one small write a half-minute, not one every few seconds. Fragment reruns and
    the agent's own clicks never run side by side: ``runner.fastReruns = false`` in
    ``.streamlit/config.toml`` (see the README, "Live parts and lost clicks").
    """

    @st.fragment(run_every=timedelta(seconds=PRESENCE_EVERY_S))
    def live() -> None:
        store = get_store()
        if not signed_in(store):  # a tick runs without app.py: a login that ended shows nothing more
            st.rerun(scope="app")
        # The reply box is in a form, so its words reach the server only with "Queue reply": the
        # browser says whether it holds any (issue 13: "bob is replying" showed only after a click).
        on_server = bool(str(st.session_state.get(f"draft_{case_id}", "")).strip())  # a filled template, a kept draft
        said = _reply_box_typing(case_id, known=on_server)  # the browser's word since the server last wrote the box
        drafting = on_server if said is None else said
        beat_key = f"_presence_beat_{case_id}"
        last = st.session_state.get(beat_key)
        now = utcnow()
        if last is None or last[1] != drafting or now - last[0] >= PRESENCE_BEAT:
            presence.touch(store, case_id, username, drafting=drafting, now=now)
            st.session_state[beat_key] = (now, drafting)
        others = presence.others(store, case_id, username)
        if others:
            words = ", ".join(f"{o['user']} is replying" if o["drafting"] else f"{o['user']} is viewing" for o in others)
            st.warning(escape_md(f"Also on this case: {words}"), icon=":material/group:")
        _changed_by_others(store, case_id, username, drawn_version)

    live()


def changed_by_others(store: Store, case_id: int, username: str,
                      drawn_version: int) -> tuple[list[str], list[str]] | None:
    """(who, which fields) when someone else changed the case after this page was drawn.

    A user check found a colleague's assignment invisible on an open case for as long as the agent
    stayed on it: they learnt of it only when their own change was refused. One key lookup per
    tick; the audit trail is read only when the stored version has moved on. The agent's own
    changes and those made on their behalf (``doorstep.case_merge.is_own``) are not news.
    """
    mine = _held_map().get(case_id)
    row = store.db.execute("select version from cases where id = ?", [case_id]).fetchone()
    if mine is None or row is None or int(row[0]) == drawn_version:
        return None
    _own, fields, who = case_merge.changes_since(store, mine, username)
    if not who:
        return None
    return who, sorted(f for f in fields if f not in ("version", "updated_by"))


def changed_for_me(store: Store, case_id: int, username: str, drawn_version: int) -> list[str] | None:
    """Which fields the product changed on this agent's behalf since the page was drawn (the outbox setting the
    first response and the status after their reply was sent), or None. Their own clicks redraw the page; this
    change comes later, from the worker, and left the header saying "new" with the first-response clock running
    while the page's own timeline said the reply had gone (PostgreSQL team audit)."""
    mine = _held_map().get(case_id)
    row = store.db.execute("select version from cases where id = ?", [case_id]).fetchone()
    if mine is None or row is None or int(row[0]) == drawn_version:
        return None
    own, _others, _who = case_merge.changes_since(store, mine, username)
    fields = sorted(f for f in own if f not in ("version", "updated_by"))
    return fields or None


#: A relinked order brings its customer, parcel and courier with it: not told apart.
_CAME_WITH_THE_ORDER = frozenset({"customer_id", "tracking_number", "courier"})
#: The order and how it was linked (the rest of a relink's fields, :data:`console.timeline.LINK_FIELDS`).
_LINK_FIELDS = LINK_FIELDS - _CAME_WITH_THE_ORDER
#: The case's fields in the team's words, in the order they are told. One relink changes seven fields
#: (order, customer, tracking number, courier and how the link was made): to the agent it is one change.
_CHANGE_WORDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("the status", frozenset({"status", "closed_as"})),  # closed as spam: a status ("resolved as spam")
    # A fact, not a clock: "the first response" is when the customer was first answered (a banner that said only
    # "the status" left the header's "first response due in 12h" unexplained; final browser check).
    ("the first response", frozenset({"first_response_at"})),
    ("the assignee", frozenset({"assignee"})),
    ("the snooze", frozenset({"snoozed_until"})),
    ("the priority", frozenset({"priority", "priority_band", "priority_reasons"})),
    ("the labels", frozenset({"intent", "sentiment", "complaint"})),
    ("the linked order", _LINK_FIELDS),
    ("the customer", frozenset({"customer_id", "author_handle"})),
    ("the tracking number", frozenset({"tracking_number"})),
    ("the courier", frozenset({"courier"})),
    ("the brand", frozenset({"brand"})),
    ("the channel", frozenset({"channel", "thread_id"})),
    ("the merge", frozenset({"merged_into"})),
    ("its posts", frozenset({"mention_count", "last_activity_at"})),
)
#: Clocks follow the status (and the SLA rules): told only when nothing else changed.
_CLOCKS = frozenset({"opened_at", "first_response_due", "resolution_due", "next_response_due", "first_response_at",
                     "resolved_at", "awaiting_since", "sla_paused_at"})


def changed_words(fields: list[str] | set[str]) -> str:
    """Which parts of the case changed, as an agent says it: "the assignee and the linked order"."""
    left = set(fields) - {"id", "version", "updated_by"}
    phrases: list[str] = []
    if left & _LINK_FIELDS:
        left -= _CAME_WITH_THE_ORDER
    for phrase, names in _CHANGE_WORDS:
        if left & names:
            phrases.append(phrase)
            left -= names
    if left & _CLOCKS and not phrases:
        phrases.append("the SLA clocks")
    phrases += sorted(f.replace("_", " ") for f in left - _CLOCKS)
    if not phrases:
        return "the case"
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def changed_since_note(who: list[str], fields: set[str] | list[str]) -> str:
    """The header's note once the page shows a colleague's change: who changed what, and what that means for
    the agent's next click."""
    if not who:
        return "A new post came in since you opened this case; the page shows the latest state."
    return (f"{' and '.join(who)} changed {changed_words(fields)} since you opened this case; the page shows the "
            "latest state. Your next change is refused only if it touches what they changed.")


def _changed_by_others(store: Store, case_id: int, username: str, drawn_version: int) -> None:
    found = changed_by_others(store, case_id, username, drawn_version)
    if found is None:
        mine = changed_for_me(store, case_id, username, drawn_version)
        if mine:
            st.info(escape_md(f"Doorstep changed {changed_words(mine)} on your behalf since this page was drawn (after "
                              "your message went out)."),
                    icon=":material/update:")
            if st.button("Show the case as it is now", key=f"show_mine_{case_id}"):
                st.rerun(scope="app")
        return
    who, fields = found
    what = changed_words(fields)
    st.info(escape_md(f"{' and '.join(who)} changed {what} since this page was drawn."), icon=":material/update:")
    if st.button("Show their changes", key=f"show_changes_{case_id}"):
        st.rerun(scope="app")  # the page redraws from the stored case (the header then says what to review)


#: In the browser: whether this case's reply box holds words the server has not seen yet. It looks
#: on every keystroke and every 2 s (the box is emptied by a send or by the agent), and reports only
#: a change, which reruns the presence fragment alone; the form and the words typed are untouched.
REPLY_TYPING_JS = """
export default function(component) {
  const { data, setStateValue } = component;
  const selector = '.st-key-draft_' + data.case_id + ' textarea';
  let last = Boolean(data.typing);
  const check = () => {
    const box = document.querySelector(selector);
    const typing = Boolean(box && box.value.trim());
    if (typing !== last) {
      last = typing;
      // With the round of the server's last write to the box (a template, a kept draft, a queued reply):
      // "empty" said after a template filled it means the agent cleared it.
      setStateValue('typing', {words: typing, round: data.round});
    }
  };
  document.addEventListener('input', check, true);
  const timer = setInterval(check, 2000);
  check();
  // A link away from the case (the sidebar's pages) and a reload or closed tab ask first while the box holds
  // words: J / K and the case number already do, and the sidebar's Inbox lost them unsaid (audit).
  const words = () => { const box = document.querySelector(selector); return Boolean(box && box.value.trim()); };
  const leaving = (event) => {
    const link = event.target.closest && event.target.closest('a[href]');
    // A link opening another tab ("Open original") leaves nothing: the page and its words stay.
    if (!link || link.target === '_blank' || !words() || event.doorstepAsked) { return; }
    event.doorstepAsked = true;  // asked once per click, however many of these listeners a rerun left
    if (!window.confirm('Your reply box holds words that are not queued. Leave them unsent?')) {
      event.preventDefault();
      event.stopPropagation();
    }
  };
  const unloading = (event) => { if (words()) { event.preventDefault(); event.returnValue = ''; } };
  document.addEventListener('click', leaving, true);
  window.addEventListener('beforeunload', unloading);
  return () => {
    document.removeEventListener('input', check, true);
    document.removeEventListener('click', leaving, true);
    window.removeEventListener('beforeunload', unloading);
    clearInterval(timer);
  };
}
"""
#: On several lines: Streamlit reads a one-line string with "[" or "*" in it as a file glob.
TYPING_CSS = """
[class*="st-key-reply_typing_"] { display: none !important; }
[data-testid="stLayoutWrapper"]:has(> [data-testid="stVerticalBlock"] > [class*="st-key-reply_typing_"]:only-child) {
  display: none !important;
}
"""
_typing_component: Any = None


def box_round(case_id: int) -> int:
    """How many times the server has written this case's reply box (a template, a kept draft, a queued reply)."""
    return int(st.session_state.get(f"_box_round_{case_id}", 0))


def set_box(case_id: int, text: str) -> None:
    """The server writes the reply box: the browser's earlier word on it ("empty", "holds words") is old news."""
    st.session_state[f"draft_{case_id}"] = text
    st.session_state[f"_box_round_{case_id}"] = box_round(case_id) + 1


def _browser_said(case_id: int) -> bool | None:
    """What the browser said of the reply box since the server last wrote it: holds words, empty, or nothing."""
    value = st.session_state.get(f"reply_typing_{case_id}")
    said = value.get("typing") if isinstance(value, dict) else None
    if isinstance(said, dict) and said.get("round") == box_round(case_id):
        return bool(said.get("words"))
    return None


def _reply_box_typing(case_id: int, known: bool = False) -> bool | None:
    """Whether the agent's reply box on this case holds words (typed, not yet queued), as the browser said
    since the server last wrote the box (None: it said nothing since).

    ``known``: the server already has words for the box (a filled template), so the browser seeing
    them is no news and costs no extra rerun (one between "T" and "Q" could swallow the key).
    """
    global _typing_component
    components = getattr(getattr(st, "components", None), "v2", None)
    if components is None:  # Streamlit before components v2: drafting is known from a filled template only
        return None
    if _typing_component is None:
        # It draws nothing and must take no room either: nor may the presence line's block, when it
        # holds nothing else (an empty block still takes the page's gap and moved the composer down).
        _typing_component = components.component("doorstep_reply_typing", js=REPLY_TYPING_JS, css=TYPING_CSS,
                                                  isolate_styles=False)
    said = _browser_said(case_id)
    _typing_component(key=f"reply_typing_{case_id}", data={"case_id": case_id, "typing": bool(said) or known,
                                                           "round": box_round(case_id)},
                      default={"typing": None}, on_typing_change=lambda: None)
    return _browser_said(case_id)


#: How often the "Also on this case" line is redrawn.
PRESENCE_EVERY_S = 5
#: How often this agent's own presence is written (well inside presence.PRESENCE_TTL).
PRESENCE_BEAT = timedelta(seconds=30)


def sent_from(channel: str | None, account: str | None) -> str:
    """" from @FettleCare" (" from care@shop.example" for e-mail): the account a message goes out from, or nothing."""
    if not account:
        return ""
    return f" from {'' if channel == 'email' or account.startswith('@') else '@'}{account}"


def one_line(text: str | None) -> str:
    """An error as one line, whole: its line breaks and runs of spaces as single spaces."""
    return " ".join((text or "").split())


# --------------------------------------------------------------------- sections
def _header(store: Store, case: Case, user: Any, title_slot: Any | None = None) -> None:
    config = get_config()
    (title_slot or st).title(f"Case #{case.id}")
    cols = st.columns([3, 1.2, 2, 3])
    cols[0].metric("Status", case_status_name(case))
    cols[1].metric("Priority", f"{case.priority:g}")
    cols[2].metric("Assignee", case.assignee or "nobody")
    with cols[3]:
        sla_badge(case)
        st.caption(escape_md(sla_clock_line(case, config)))
    show_priority(case)
    _presence_live(case.id, user.username, case.version)  # type: ignore[arg-type]
    undelivered = undelivered_messages(store, case.id)  # type: ignore[arg-type]
    def said(messages: list[dict[str, Any]]) -> str:
        # The whole error on one line (wrapped by the page, never cut): its end is the remedy ("... then doorstep
        # outbox retry 12"), and the account it went from says which brand's credentials to fix.
        return "; ".join(f"{kind_name(m['kind'])} via {channel_name(m['channel'])}{sent_from(m['channel'], m['account'])} "
                         f"to {m['target'] or '-'} is {m['status'].replace('_', ' ')}"
                         + (f" ({one_line(m['last_error'])})" if m["last_error"] else "") for m in messages)

    # A message waiting for someone's approval has not failed: it is said apart, not in red.
    failed = [m for m in undelivered if m["status"] != "awaiting_approval"]
    waiting = [m for m in undelivered if m["status"] == "awaiting_approval"]
    if failed:
        st.error(escape_md(f"Not delivered: {said(failed)}"), icon=":material/error:")
    if waiting:
        # Resolved past them (they do not hold resolving up): approved now, they are cancelled, not sent.
        retired = "; the case is resolved, so approving cancels them unless it is reopened first" \
            if case.status == "resolved" else ""
        st.info(escape_md(f"Waiting for approval (Approvals page), not sent yet: {said(waiting)}{retired}"),
                icon=":material/hourglass_top:")
    mine = held(store, case)
    if mine.case.version != case.version:
        if case_merge.only_own_changes(store, mine, case, user.username):
            hold(case)  # the agent's own change, or the outbox's after their own reply: nothing to review
        else:
            _, fields, who = case_merge.changes_since(store, mine, user.username)
            st.info(escape_md(changed_since_note(who, fields)))
            if st.button("Work from the latest version", key="case_reload"):
                hold(case)
                st.rerun()


def _posts(store: Store, case: Case) -> list[Mention]:
    """The case's posts and their threads, newest first, in a box of its own height: the page
    stays short enough that the composer (above it) is on screen when the case opens."""
    config = get_config()
    mentions = store.mentions_for_case(case.id)  # type: ignore[arg-type]
    thread_ids = {(m.channel, m.thread_id) for m in mentions if m.thread_id}
    seen = {m.id for m in mentions}
    thread: list[Mention] = list(mentions)
    for channel, thread_id in thread_ids:
        thread += [m for m in store.thread(channel, thread_id) if m.id not in seen and not seen.add(m.id)]  # type: ignore[func-returns-value]
    thread.sort(key=lambda m: (m.created_at, m.id or 0), reverse=True)
    every_key = f"_case_all_posts_{case.id}"
    shown = thread if st.session_state.get(every_key) else thread[:THREAD_SHOWN]
    if not thread:  # a case we opened ourselves for a parcel in trouble, or one whose posts were moved
        ours = not case.author_handle and not case.channel
        st.caption("No post on this case" + (" yet: Doorstep opened it for the customer's parcel." if ours else "."))
        return mentions
    with st.expander(f"Posts and thread ({len(thread)}, newest first)", expanded=True):
        with st.container(height=THREAD_HEIGHT_PX if len(shown) > 2 else "content", border=False):
            for m in shown:
                with st.container(border=True):
                    safe_text(post_byline(m, lambda t: local_time(t, config)), caption=True)
                    safe_text(m.text)
                    if m.url and m.url.startswith(("https://", "http://")):
                        st.link_button("Open original", m.url)
                    if m.labels and not m.outbound:
                        _labels(store, m)
            if len(shown) < len(thread):
                st.button(f"Show {len(thread) - len(shown)} older post(s)", key=f"older_posts_{case.id}",
                          on_click=lambda: st.session_state.__setitem__(every_key, True))
    return mentions


#: Posts drawn when a case opens (the newest; the older behind "Show N older posts"): each post is
#: 5-11 elements (its label-correction form among them), all drawn before the page first shows.
THREAD_SHOWN = 3


#: The thread's box: long threads scroll inside it instead of pushing the page down.
THREAD_HEIGHT_PX = 560


def _save_labels(store: Store, mention_id: int, seen: Labels, seen_review: int) -> None:
    """"Save correction": the review queue's action (doorstep.corrections): the post's labels, "needs
    review" cleared, its case scored again; ``label_corrections`` for retraining. A callback (it runs
    before app.py's login check, so it checks the login itself), reading the form's boxes by key."""
    actor = acting_user(store, "correct_labels")
    if actor is None:
        return
    at = f"labels:{mention_id}"
    try:
        review = correct_labels(store, get_config(), mention_id, actor.username,
                                intent=st.session_state[f"lab_int_{mention_id}"],
                                sentiment=st.session_state[f"lab_sent_{mention_id}"],
                                complaint=bool(st.session_state[f"lab_comp_{mention_id}"]),
                                seen_labels=seen, seen_review=seen_review)
    except ReviewError as exc:
        flash("warning", str(exc), at=at)
        return
    before, after = review.case_before, review.case_after
    if before is not None and after is not None and held_version(before) == before.version:
        hold(after)  # the re-score is the agent's own change: keep working on the case from it
    said = (f"{len(review.changed)} correction(s) saved for retraining" if review.changed
            else "labels confirmed" if review.stored else "no change")
    flash("success", said + review.case_words(), at=at)


def _labels(store: Store, m: Mention) -> None:
    labels = m.labels
    assert labels is not None
    intent_p = labels.intent_scores.get(labels.intent, 0.0)
    sent_p = labels.sentiment_scores.get(labels.sentiment, 0.0)
    st.caption(escape_md(
        f"labels: {intent_name(labels.intent)} ({intent_p:.0%}) · {labels.sentiment} ({sent_p:.0%}) · "
        f"complaint {'yes' if labels.complaint else 'no'} ({labels.complaint_score:.0%}) · urgency {labels.urgency:.2f}"
        + (" · needs review" if labels.needs_review else "") + (f" · model {labels.model}" if labels.model else "")
    ))
    user = current_user()
    if not can(user, "correct_labels"):
        return
    box, is_open = lazy_expander("Correct labels", key=f"labels_open_{m.id}")  # drawn when opened
    with box:
        if is_open:
            with st.form(f"labels_{m.id}"):
                st.selectbox("Intent", INTENTS, index=INTENTS.index(labels.intent), key=f"lab_int_{m.id}",
                                      format_func=intent_name)
                st.selectbox("Sentiment", SENTIMENTS, index=SENTIMENTS.index(labels.sentiment),
                                         key=f"lab_sent_{m.id}")
                st.checkbox("Complaint", value=labels.complaint, key=f"lab_comp_{m.id}")
                # The labels and the review this form was drawn with travel with its button: a review
                # someone made after the agent opened it is refused, not overwritten.
                st.form_submit_button("Save correction", on_click=_save_labels,
                                      args=(store, m.id, labels, last_review(store, m.id)[0]))
        show_flashes(at=f"labels:{m.id}")


#: The scans in their natural order, in words (the chart's axis).
SCAN_ORDER = [tracking_name(s) for s in TRACKING_STATUSES]


def tracking_chart(events: list[Any], tz: str) -> alt.Chart:
    """The parcel's journey: one point per scan, statuses in their natural order."""
    zone = ZoneInfo(tz)
    # Wall-clock times in the team's zone, without offset: Vega-Lite shows them as written,
    # whatever zone the browser is in.
    data = [
        {"time": e.time.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S"), "status": tracking_name(e.status),
         "location": e.location or "",
         "description": e.description or "", "step": TRACKING_STATUSES.index(e.status)}
        for e in events
    ]
    base = alt.Chart(alt.Data(values=data))
    y = alt.Y("status:N", sort=SCAN_ORDER, title=None, axis=alt.Axis(labelLimit=200))  # "delivery attempt failed" whole
    x = alt.X("time:T", title=f"time ({tz})")
    line = base.mark_line(color="#999").encode(x=x, y=y)
    points = base.mark_circle(size=120).encode(
        x=x, y=y,
        color=alt.Color("status:N", sort=SCAN_ORDER, legend=None,
                        scale=alt.Scale(domain=SCAN_ORDER,
                                        range=["#9e9e9e", "#1e88e5", "#43a047", "#fb8c00", "#e53935", "#2e7d32",
                                               "#8e24aa"])),
        tooltip=["time:T", "status:N", "location:N", "description:N"],
    )
    return (line + points).properties(height=220)


def quoted_numbers(store: Store, config: Any, mentions: list[Mention]) -> list[tuple[str, str]]:
    """("warning" | "info", words) for each order or tracking number the customer wrote that we
    cannot find, or that is not the one linked: "customer quoted ORD-2026-001291: no such order".

    An order is looked up as linking looks it up (:func:`doorstep.linking.quoted_order`: as typed, in capitals
    or in small letters), so "ord-2026-008001", which linked the case to ORD-2026-008001, is not "no such order"."""
    from doorstep.linking import find_numbers, quoted_order

    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for m in mentions:
        if m.outbound:
            continue
        evidence = find_numbers(m.text, config)
        for number in evidence.order_numbers:
            if number not in seen and not seen.add(number) and quoted_order(store, number) is None:  # type: ignore[func-returns-value]
                out.append(("warning", f"customer quoted {number}: no such order (check it with them; "
                                       "a typo or another shop's order?)"))
        for number in evidence.tracking_numbers:
            if number not in seen and not seen.add(number) and store.get_shipment(number) is None:  # type: ignore[func-returns-value]
                out.append(("warning", f"customer quoted tracking number {number}: no such parcel in our shipments"))
        for number in evidence.malformed:
            if number not in seen and not seen.add(number):  # type: ignore[func-returns-value]
                out.append(("info", f"customer wrote {number}: shaped like a tracking number but its check digit "
                                    "is wrong (a typo?)"))
    return out


def order_line(order: Any, confirmed: bool, placed: str) -> str:
    """The order's one line on the case page, without the parts the shop's file left blank: an order with no
    brand read "Possible order #1001 ·  · placed …" (exports audit)."""
    parts = [f"{'Order' if confirmed else 'Possible order'} {order.number}", order.brand or "", f"placed {placed}",
             f"{order.total:.2f} {order.currency}",
             f"promised {order.promised_date.isoformat()}" if order.promised_date else "", order.status or ""]
    return " · ".join(p for p in parts if p)


def shipment_line(shipment: Any) -> str:
    """A shipment's one line: courier and service as far as they are known."""
    carrier = " ".join(p for p in (shipment.courier, shipment.service) if p)
    status = f"status {tracking_name(shipment.status)}" if shipment.status else "no tracking status yet"
    return " · ".join(p for p in (f"Shipment {shipment.tracking_number}", carrier, status) if p)


def _order(store: Store, case: Case, mentions: list[Mention] | None = None) -> None:
    from responders.templates import item_quantity

    config = get_config()
    st.subheader("Customer, order and parcel")
    for kind, words in quoted_numbers(store, config, mentions or []):
        getattr(st, kind)(escape_md(words), icon=":material/search_off:")
    customer = store.get_customer(case.customer_id) if case.customer_id else None
    order = store.get_order(case.order_number) if case.order_number else None
    from doorstep.linking import describe_link, order_owner_is_author

    safe_text(describe_link(case) + ("" if case.link_confirmed or not case.order_number
                                     else " · do not share order details publicly"), caption=True)

    if order is not None and order_owner_is_author(store, case) is False:
        owner = store.get_customer(order.customer_id)
        st.error(escape_md(f"Order {order.number} belongs to {owner.name if owner else order.customer_id}, not to "
                           f"the author @{case.author_handle or '?'}. Never put its details in a public reply."),
                 icon=":material/person_alert:")
    if customer:
        safe_text(f"Customer: {customer.name}" + (" (VIP)" if customer.vip else "")
                  + (f" · opted out of {', '.join(customer.opt_out)}" if customer.opt_out else ""))
    if order:
        safe_text(order_line(order, case.link_confirmed, local_time(order.placed_at, config)))
        if order.items:  # a few rows of text: a static table, not a data grid to mount
            safe_table([{"item": i.get("name") or i.get("sku") or "item", "qty": item_quantity(i),
                         "price": i.get("price", "")} for i in order.items])
        else:
            st.caption("No items listed on the order.")
        for shipment in order.shipments:
            safe_text(shipment_line(shipment))
            if shipment.events:
                if len(shipment.events) > 1:  # one scan is a dot over a meaningless axis: the table says it
                    st.altair_chart(tracking_chart(shipment.events, config.timezone), width="stretch")
                safe_table([{"time": local_time(e.time, config), "status": tracking_name(e.status), "location": e.location or "",
                             "courier says": e.description or ""} for e in shipment.events])
            else:
                st.caption("No tracking events yet.")
    else:
        st.info("No order linked to this case.")
    if can(current_user(), "relink"):
        box, is_open = lazy_expander("Change the linked order", key=f"relink_open_{case.id}")  # drawn when opened
        with box:
            if is_open:
                _relink_form(store, case)
    show_flashes(at=f"order:{case.id}")
    if case.customer_id:
        _other_cases(store, case)


#: The customer's other cases listed before "Show N more": the open ones come first.
OTHER_CASES_SHOWN = 5


def _other_cases(store: Store, case: Case) -> None:
    """The customer's other cases, open ones first, then the newest; a long history (a VIP's sixteen cases)
    stays one click away instead of pushing the actions a screen down."""
    rows = list(store.db.query(
        "select id, status, closed_as, intent from cases where customer_id = ? and id != ? "
        "order by case when status = 'resolved' then 1 else 0 end, id desc limit 50", [case.customer_id, case.id]))
    if not rows:
        return
    every_key = f"_other_all_{case.id}"
    shown = rows if st.session_state.get(every_key) else rows[:OTHER_CASES_SHOWN]
    still_open = sum(1 for r in rows if r["status"] != "resolved")
    st.caption(f"The customer's other cases ({still_open} open, {len(rows)}{'+' if len(rows) == 50 else ''} in all)")
    for r in shown:
        if st.button(f"#{r['id']} · {status_words(r['status'], r['closed_as'])} · "
                     f"{intent_name(r['intent']) if r['intent'] else '-'}", key=f"other_{r['id']}"):
            # Not past words typed and not queued, as J / K and the case number (code review: they were lost).
            if may_leave(case.id, f"other {r['id']}"):
                open_case(r["id"])
            st.rerun()
    if len(shown) < len(rows):
        st.button(f"Show {len(rows) - len(shown)} more", key=f"other_all_{case.id}",
                  on_click=lambda: st.session_state.__setitem__(every_key, True))


def _relink_form(store: Store, case: Case) -> None:
    """"Change the linked order": the order number and how it was verified (drawn only while open)."""
    with st.form(f"relink_{case.id}"):
        number = st.text_input("Order number", value=case.order_number or "", key=f"relink_number_{case.id}")
        how = st.text_input("How did you verify it is the author's order? (leave empty if you did not)",
                            key=f"relink_how_{case.id}", help="If the order's customer is not the author, the link stays "
                            "unconfirmed unless you record how you verified it (kept in the audit log).")
        if st.form_submit_button("Link this order"):
            from doorstep.linking import override_link

            try:
                updated = override_link(store, case.id, held_version(case), current_user().username,  # type: ignore[arg-type]
                                        order_number=number.strip() or None, verified_how=how.strip() or None)
            except KeyError:
                st.error(escape_md(f"No order {number.strip()} in the shop data."))
            except StaleCaseError as exc:
                fresh = store.get_case(case.id)  # type: ignore[arg-type]
                if fresh:
                    hold(fresh)
                flash("error", str(exc), at=f"order:{case.id}")
                st.rerun()
            else:
                hold(updated)
                flash("success", f"case linked to order {number.strip()} "
                      + ("(confirmed by you)" if updated.link_confirmed else
                         "(NOT confirmed: the order's customer is not the author)"), at=f"order:{case.id}")
                st.rerun()


def post_byline(m: Mention, when: Any) -> str:
    """Who wrote a post, where and when: "Alice Stewart @astewart17 · 1,292 followers · X · Sat 05 Dec 01:46".
    A handle and followers only where the post has them (a courier page's post by the webhook has a name only)."""
    who = " ".join(p for p in (m.author_name, f"@{m.author_handle}" if m.author_handle else None) if p) or "?"
    followers = f" · {m.author_followers:,} followers" if m.author_followers else ""
    return f"{who}{followers} · {channel_name(m.channel)} · {when(m.created_at)}" + (" · our reply" if m.outbound else "")


def _post_label(m: Mention, own: bool, when: Any = None) -> str:
    """The post as "In reply to" offers it: who, where, when and its words. ``when`` formats its time; two posts
    with the same words must read differently, or the choice answered the older of two alike while the page
    showed the newer (browser check: "hello?? anyone there" posted twice)."""
    snippet = " ".join(plain(m.text).split())  # (bidi controls as marks: a cut cannot carry one past the label)
    snippet = shorten(snippet, 70)
    at = f", {when(m.created_at)}" if when is not None else ""
    return plain(f"@{m.author_handle or '?'}") + f" on {channel_name(m.channel)}{at}: {snippet}" + (
        "" if own else "  [not this case's customer]") + (f"  (post {m.id})" if when is not None else "")


#: Networks that count a reply's graphemes.
GRAPHEME_CHANNELS = frozenset({"bluesky", "mastodon", "bluesky_dm", "mastodon_dm"})
#: Networks whose count is not the browser's: the box (which counts UTF-16 units and drops a whole paste beyond
#: ``max_chars``) sets them no limit; the page counts as the network does and Queue reply checks. X counts a flag
#: (4 units) or a family emoji (11) as 2 and a long tracking link as 23.
WEIGHTED_CHANNELS = GRAPHEME_CHANNELS | {"x"}


def box_limit(channel: str | None, limit: int | None, allow_urls: bool) -> int | None:
    """The browser's ``max_chars`` for the reply box: it counts as the agent types (the only live count
    Streamlit has), but in UTF-16 units, and drops a paste beyond it. Right for X while links are off (the
    default: X weighs every other character at least 1, emoji aside, which care replies rarely pile up); with
    links on, a long tracking link counts 23 on X and many more in the browser, and networks that count
    graphemes count Hindi or emoji far below their units: those boxes set no limit, and Queue reply checks."""
    if channel == "x" and not allow_urls:
        return limit
    return None if channel in WEIGHTED_CHANNELS else limit


def _composer(store: Store, case: Case, user: Any) -> None:
    """Answer the case: the post being answered, then the reply form right under it.

    The text and "Queue reply" are one form, so the click and the words reach the server
    together (a text box outside a form sends its words on blur, and the click that caused
    the blur used to land on a button drawn disabled for an empty draft). The box counts
    characters as the agent types (``max_chars``: the channel's limit), and the exact count
    the channel uses (links 23 on X and Mastodon, graphemes on Bluesky) is checked on
    "Queue reply", with the answer shown under the button.
    """
    from responders.channels import LIMITS, PUBLIC_CHANNELS, weighted_length
    from responders.config import responders_settings
    from responders.outbox import (
        AlreadyAnswered, NamesACustomer, ReplyRejected, default_parent, is_customers_post, latest_message_id,
        moved_words,
        queue_reply, reply_candidates,
    )
    from responders.templates import TemplateError, list_templates, render_template, suggest_templates
    from doorstep.erasure import is_erased

    config = get_config()
    st.subheader("Reply")
    inbound = reply_candidates(store, case)
    if inbound and all(is_erased(m) for m in inbound):
        # Not a composer that offers "@?" and asks for the customer's e-mail to be added back (browser check).
        st.info("This person's data was erased at their request: the case cannot be answered.")
        return
    # What this agent has seen of the case's outbox: a reply queued by someone else after this is a collision.
    seen = st.session_state.setdefault("case_seen_outbox", {}).setdefault(case.id, latest_message_id(store, case.id))  # type: ignore[arg-type]
    shipment = store.get_shipment(case.tracking_number) if case.tracking_number else None
    templates = list_templates(config)
    suggested = suggest_templates(case, shipment, config)
    names = [*suggested, *[n for n in sorted(templates) if n not in suggested]]
    key = f"draft_{case.id}"
    channel_key = f"reply_channel_{case.id}"
    channel_options, refused = answerable_channels(store, case)
    if not channel_options:
        st.warning(escape_md("No reply can be sent on this case: " + "; ".join(refused.values()) + "."))
        return
    whys = dict(refused)
    if case.channel in whys:  # the case's own channel takes no replies: say why, and which one is used
        why = whys.pop(case.channel)
        st.info(escape_md(f"{why[:1].upper() + why[1:]}; replying by {channel_name(channel_options[0])}"))
    if whys:  # each channel left out, by name, and why
        st.caption(escape_md("Not offered: " + "; ".join(f"{channel_name(c)} ({why})" for c, why in whys.items())
                             + "."))

    def keep_draft() -> None:
        # The box's size limit follows the channel, and a new limit is a new widget: carry the words over.
        st.session_state[f"_draft_keep_{case.id}"] = st.session_state.get(key, "")

    where, what = st.columns([1, 3])
    with where:
        channel = st.radio("Reply on", channel_options, horizontal=True, key=channel_key, on_change=keep_draft,
                           format_func=channel_name)
    parent_key = f"reply_parent_{case.id}"
    parent: Mention | None = None
    if channel in PUBLIC_CHANNELS:
        candidates = reply_candidates(store, case, channel)
        default = default_parent(store, case, channel)
        if candidates:
            ids = [m.id for m in candidates]
            by_id = {m.id: m for m in candidates}
            own = {m.id: is_customers_post(store, case, m) for m in candidates}
            chosen_before = st.session_state.get(parent_key)
            if chosen_before not in ids:
                st.session_state[parent_key] = default.id if default is not None else ids[0]
                gone = store.get_mention(chosen_before) if isinstance(chosen_before, int) else None
                if gone is not None and gone.case_id not in (None, case.id):
                    # A colleague split it off: say so, rather than answer another post with these words.
                    st.warning(escape_md(f"The post you were answering is no longer in this case: "
                                         f"{moved_words(store, gone, case.id).replace(f'post {gone.id}', 'it')}. "
                                         "\"In reply to\" now shows another post: check your reply fits it."))
            with what:
                chosen = st.selectbox("In reply to", ids, key=parent_key,
                                      format_func=lambda i: _post_label(by_id[i], own[i],
                                                                        lambda t: local_time(t, config)))
            parent = by_id.get(chosen)
            if parent is not None and not own[parent.id]:
                st.warning(escape_md(f"@{parent.author_handle or '?'} is not this case's customer: the reply must not "
                                     "contain the customer's order or personal details."))
    account = _account_picker(store, config, case, channel, parent)
    route = reply_route_line(store, config, case, channel, account, parent)
    # Who answers what, and the post being answered in full, right above the answer.
    with st.container(border=parent is not None):
        if route:
            st.text(plain(route))  # plain text: the excerpt is the customer's words
        if parent is not None:
            safe_text(f"@{parent.author_handle or '?'} · {channel_name(parent.channel)} · {local_time(parent.created_at, config)}"
                      + (f" · {parent.author_followers:,} followers" if parent.author_followers else ""), caption=True)
            if len(parent.text) > 80:  # the route line's excerpt holds shorter posts whole
                safe_text(parent.text)
    cols = st.columns([3, 1])
    with cols[0]:
        name = st.selectbox("Template", names, key=f"tpl_{case.id}",
                            format_func=lambda n: template_name(n) + (" (suggested)" if n in suggested else ""))
    limit = LIMITS.get(channel or "")
    error_key = f"reply_error_{case.id}"
    refused_key = f"reply_refused_{case.id}"
    with cols[1]:
        st.write("")

        def fill() -> None:
            actor = acting_user(store, "reply")  # a callback runs before app.py's login check
            if actor is None:
                return
            try:
                text = render_template(
                    store, config, case.id, st.session_state[f"tpl_{case.id}"], agent=actor.name,  # type: ignore[arg-type]
                    channel=st.session_state.get(channel_key),
                    parent_id=st.session_state.get(parent_key) if channel in PUBLIC_CHANNELS else None)
            except TemplateError as exc:
                st.session_state[error_key] = str(exc)
                return
            if limit is not None and len(text) > limit:
                # The box would cut it at the limit without a word; say so and leave the draft alone.
                st.session_state[error_key] = (f"Template {st.session_state[f'tpl_{case.id}']} fills to {len(text)} "
                                               f"characters, over the {channel} limit of {limit}: shorten the template "
                                               "or answer on another channel.")
                return
            set_box(case.id, text)

        st.button("Fill template", key=f"fill_{case.id}", on_click=fill, shortcut=SHORTCUTS["fill"])
    kept = st.session_state.pop(f"_draft_keep_{case.id}", None)
    if kept is not None:
        set_box(case.id, kept[:limit] if limit is not None else kept)

    ack_key = f"reply_refused_ack_{case.id}"

    names_key = f"reply_names_asked_{case.id}"

    def queue(body: str | None = None, force: bool = False, names_ok: list[str] | None = None) -> None:
        # A callback, so the draft can be cleared before the text area is drawn again. It runs before
        # app.py's login check, so it checks the login itself.
        actor = acting_user(store, "reply")
        if actor is None:
            return
        chosen_channel = st.session_state.get(channel_key)
        parent_id = st.session_state.get(parent_key) if chosen_channel in PUBLIC_CHANNELS else None
        text = st.session_state.get(key, "") if body is None else body
        if not str(text).strip():
            st.session_state[error_key] = "Nothing to send: write the reply (or fill a template) first."
            return
        try:
            message = queue_reply(store, config, case.id, text,  # type: ignore[arg-type]
                                  actor.username, channel=chosen_channel if body is None else None,
                                  parent_id=parent_id if body is None else None, seen_up_to=seen, force=force,
                                  account=st.session_state.get(f"reply_account_{case.id}_{chosen_channel}")
                                  if body is None else None,
                                  names_ok=names_ok or (),
                                  **(st.session_state.get(ack_key, {}) if force else
                                     {"seen_status": held(store, case).case.status}))
        except NamesACustomer as exc:  # asked, not refused for good: the name may be a brand or a product's
            st.session_state[names_key] = exc.names
            return
        except AlreadyAnswered as exc:
            st.session_state[refused_key] = exc.said_as("Reply")
            # What this refusal showed: "Send anyway" overrides that and nothing newer.
            st.session_state[ack_key] = {"acknowledged_up_to": exc.latest, "seen_status": exc.status}
            return
        except (ReplyRejected, NotAllowed) as exc:  # NotAllowed: a role taken away since the click
            st.session_state[error_key] = f"Reply not queued: {exc}"
            return
        st.session_state.pop(refused_key, None)
        st.session_state.pop(names_key, None)
        reopened = force and (st.session_state.pop(ack_key, None) or {}).get("seen_status") == "resolved"
        flash("success", f"reply queued (message {message.id}); the worker sends it"
              + (" (sent anyway: recorded in the audit log)" if force else "")
              + ("; the case is open again so someone follows it up" if reopened else ""), at=f"reply:{case.id}")
        st.session_state["case_seen_outbox"][case.id] = latest_message_id(store, case.id)  # type: ignore[arg-type]
        if body is None:
            set_box(case.id, "")
        _done_drafting(store, case.id, actor.username)  # type: ignore[arg-type]
        _after_own_write(store, case)

    # enter_to_submit stays on: in Streamlit it is also what lets Ctrl+Enter in the text area submit (Enter alone
    # makes a new line); off, "Q or Ctrl+Enter" was half true and an agent who believed it sent resolved with X.
    with st.form(f"reply_form_{case.id}", border=False, enter_to_submit=True):
        max_chars = box_limit(channel, limit, responders_settings(config).allow_urls)
        text = st.text_area("Reply text", key=key, height=120, max_chars=max_chars)
        # 1.3 of 4: "Queue reply" and its key keep their words at a tablet's 768 px (a quarter cut them to "Queue …"); two
        # fifths wrapped the answer beside it at 1440 px.
        button, answer = st.columns([1.3, 2.7], vertical_alignment="center")
        button.form_submit_button("Queue reply", key=f"send_{case.id}", type="primary", on_click=queue,
                                  disabled=not can(user, "reply"), shortcut=SHORTCUTS["queue"])
        with answer:  # the answer to "Queue reply", in the same row as the button
            if st.session_state.get(error_key):
                st.error(escape_md(st.session_state.pop(error_key)))
            show_flashes(at=f"reply:{case.id}")
    # Right under the button: at 1366x768 the refusal drawn below "Ask for details privately" was off screen, and the
    # click seemed to do nothing (browser check).
    refused = st.session_state.get(refused_key)
    if refused:
        st.error(escape_md(refused), icon=":material/block:")
        r1, r2 = st.columns(2)
        r1.button("Send anyway", key=f"send_anyway_{case.id}", on_click=lambda: queue(force=True),
                  disabled=not str(text or "").strip() or not can(user, "reply"),
                  help="Queue this reply as well; recorded in the audit log as sent anyway.")
        if r2.button("Keep my draft, don't send", key=f"refused_ok_{case.id}"):
            st.session_state.pop(refused_key, None)
            st.session_state["case_seen_outbox"][case.id] = latest_message_id(store, case.id)  # type: ignore[arg-type]
            st.rerun()
    named = st.session_state.get(names_key)
    if named:
        st.warning(escape_md(f"Not queued: {', '.join(named)} is the name of a customer of the shop, and a public "
                             "reply must not name another customer. If you mean that customer, send it privately "
                             "(DM or e-mail); if the words are a brand, a product or a colleague, confirm it."),
                   icon=":material/person_alert:")
        n1, n2 = st.columns(2)
        n1.button("Not that customer: send", key=f"names_ok_{case.id}", on_click=lambda: queue(names_ok=named),
                  disabled=not str(text or "").strip() or not can(user, "reply"),
                  help="Queue the reply; the audit log records the names you confirmed.")
        if n2.button("Keep my draft, don't send", key=f"names_keep_{case.id}"):
            st.session_state.pop(names_key, None)
            st.rerun()
    # A Mastodon reply or direct message posts the author's @mention with the words: counted as Queue reply counts it.
    recipient = (case.author_handle if channel == "mastodon_dm"
                 else parent.author_handle if channel == "mastodon" and parent is not None else None)
    counted_live = False
    if limit and max_chars is None:
        how = ("links count as 23, an emoji or a Chinese, Japanese or Korean character as 2" if channel == "x" else
               "an emoji or a letter with its marks counts as one"
               + (", links with https:// as 23 and @name@server as @name" if channel in ("mastodon", "mastodon_dm")
                  else ""))
        counted_live = live_count(case.id, channel, limit, channel_name(channel), recipient)  # type: ignore[arg-type]
        st.caption(escape_md(f"Limit {limit} characters on {channel_name(channel)} ({how}): "
                             + ("counted above as you type" if counted_live else "the count below is of the words as "
                                "last sent") + ", and Queue reply checks it."))
    elif limit:
        st.caption(escape_md(f"The box counts characters as you type (limit {limit} on {channel_name(channel)}); "
                             + ("an emoji or a Chinese, Japanese or Korean character counts as 2 there, "
                                if channel == "x" else "") + "the exact count is checked on Queue reply."))
    st.caption(KEYS_HELP)
    length = weighted_length(channel or "", text or "", recipient=recipient) if channel else len(text or "")
    if text and text.strip():
        over = limit is not None and length > limit
        if not counted_live:
            st.caption(escape_md(f"{length}/{limit} characters as {channel} counts them" if limit else
                                 f"{length} characters"))
        if over and not counted_live:  # the live count says "too long" already, and Queue reply refuses
            st.error(escape_md(f"Too long for {channel}: {length} > {limit}."))
    st.button("Ask for details privately", key=f"askdm_{case.id}",
              on_click=lambda: (st.session_state.__setitem__(f"askdm_open_{case.id}", True),
                                st.session_state.__setitem__(f"askdm_text_{case.id}", PRIVATE_QUESTION)),
              disabled=not can(user, "reply"))
    if st.session_state.get(f"askdm_open_{case.id}"):
        _ask_privately_preview(store, config, case, user)


#: The private question's default text: it goes by direct message, so it may ask for details.
PRIVATE_QUESTION = ("Hi, thanks for getting in touch. Could you reply here with your order number and the e-mail "
                    "address you ordered with? Then we can look into it straight away.")


def reply_channels(store: Store, case: Case) -> list[str]:
    """Every channel a post of this case came on (each post is answerable on its own): the channel of the
    customer's newest post first, then by each channel's newest post of the customer, then of anyone;
    then those the customer answered our questions on (an SMS answer is answered by SMS), then e-mail.
    The first is what "Reply on" starts on, and "In reply to" then starts on the customer's newest post
    there (``default_parent``): their newest unanswered post, since posts older than one we answered
    count as answered.

    Why not the case's own channel first: a customer who asked on Bluesky and complained later on X is
    one case, and the composer opened on the old Bluesky question: a quick templated answer went there,
    the X complaint stayed unanswered and the first-response clock stopped all the same (audit of the
    inbox, finding 2). The case's channel now only breaks ties (posts of the same moment, no posts).
    """
    from doorstep.cases import by_customer

    posts = [m for m in store.mentions_for_case(case.id) if not m.outbound]  # type: ignore[arg-type]
    posts.sort(key=lambda m: (m.created_at, m.channel == case.channel, m.id or 0), reverse=True)
    own = [m.channel for m in posts if by_customer(store, case, m)]
    answered = store.rows("select channel, max(received_at) as last from answers where case_id = ? and channel in "
                          "('sms', 'email') group by channel order by last desc", [case.id])
    return [c for c in dict.fromkeys([*own, *(m.channel for m in posts), case.channel,
                                      *(r["channel"] for r in answered), "email"]) if c]


def answerable_channels(store: Store, case: Case) -> tuple[list[str], dict[str, str]]:
    """:func:`reply_channels` split in two: those a reply can be queued on, in order, and why not on the others."""
    from responders.outbox import reply_refusal

    channels = reply_channels(store, case)
    refused = {c: why for c in channels if (why := reply_refusal(store, case, c))}
    return [c for c in channels if c not in refused], refused


def _reply_parent(store: Store, case: Case, channel: str | None) -> Mention | None:
    """The post a reply on ``channel`` answers by default (the outbox's own choice)."""
    from responders.channels import PUBLIC_CHANNELS
    from responders.outbox import default_parent

    return default_parent(store, case, channel) if channel in PUBLIC_CHANNELS else None


def _account_picker(store: Store, config: Any, case: Case, channel: str | None,
                    parent: Mention | None = None) -> str | None:
    """Where the post reached more than one of our accounts, the agent chooses which one answers."""
    from responders.accounts import candidate_accounts

    if not channel or channel in ("email", "sms"):
        return None
    candidates = candidate_accounts(store, config, case, channel, parent or _reply_parent(store, case, channel))
    if len(candidates) < 2:
        return None
    return st.radio("Reply from (the post reached several of our accounts)", [a.handle for a in candidates],
                    index=None, horizontal=True, format_func=lambda h: f"@{h}",
                    key=f"reply_account_{case.id}_{channel}")


def reply_route_line(store: Store, config: Any, case: Case, channel: str | None, account: str | None,
                     parent: Mention | None = None) -> str:
    """"from @FettleCare, in reply to @sienna_l: 'my head torch…'": who answers what, for the preview."""
    from responders.accounts import choose_account
    from responders.channels import ReplyRejected

    parent = parent or _reply_parent(store, case, channel)
    try:
        sender = choose_account(store, config, case, channel or "", parent, account) if channel else None
    except ReplyRejected as exc:
        return f"not sendable as it stands: {exc.reason}"
    who = (f"from @{sender.handle}" if channel != "email" else f"from {sender.handle}") if sender else \
        "from our shared account"
    if parent is None:
        return who
    excerpt = shorten(parent.text, 80)
    return f"{who}, in reply to @{parent.author_handle or '?'}: \u201c{excerpt}\u201d"


def _ask_privately_preview(store: Store, config: Any, case: Case, user: Any) -> None:
    """The direct message, previewed: network, sending account, recipient and text, then sent or dropped."""
    from responders.channels import ReplyRejected
    from responders.outbox import AlreadyAnswered, latest_message_id
    from responders.private import plan_private, queue_private

    with st.container(border=True):
        st.markdown("**Ask privately** (a direct message; nothing is posted publicly)")
        try:
            plan = plan_private(store, config, case.id)  # type: ignore[arg-type]
        except ReplyRejected as exc:
            st.error(escape_md(f"No private route: {exc.reason}"))
            if st.button("Close", key=f"askdm_close_{case.id}"):
                st.session_state[f"askdm_open_{case.id}"] = False
                st.rerun()
            return
        st.caption(escape_md(plan.describe()))
        body = st.text_area("Private message", key=f"askdm_text_{case.id}", height=100)
        st.caption("Preview (as the customer will see it, privately)")
        st.text(body.strip())

        refused_key, ack_key = f"askdm_refused_{case.id}", f"askdm_ack_{case.id}"

        def send_private(force: bool = False) -> None:
            actor = acting_user(store, "reply")  # a callback runs before app.py's login check
            if actor is None:
                return
            # The one-answer rule as for "Queue reply": what this page had seen, and "Send anyway"
            # overriding only the refusal it showed.
            seen = st.session_state.get("case_seen_outbox", {}).get(case.id)
            try:
                message = queue_private(store, config, case.id, st.session_state.get(f"askdm_text_{case.id}", ""),  # type: ignore[arg-type]
                                        actor.username, plan=plan, seen_up_to=seen, force=force,
                                        **(st.session_state.get(ack_key, {}) if force else
                                           {"seen_status": held(store, case).case.status}))
            except AlreadyAnswered as exc:
                st.session_state[refused_key] = exc.said_as("Private message")
                st.session_state[ack_key] = {"acknowledged_up_to": exc.latest, "seen_status": exc.status}
                return
            except (ReplyRejected, NotAllowed) as exc:
                st.session_state[f"reply_error_{case.id}"] = f"Private message not queued: {exc}"
                return
            st.session_state.pop(refused_key, None)
            reopened = force and (st.session_state.pop(ack_key, None) or {}).get("seen_status") == "resolved"
            st.session_state[f"askdm_open_{case.id}"] = False
            flash("success", f"private message queued (message {message.id}, {message.channel}); the worker sends it"
                  + (" (sent anyway: recorded in the audit log)" if force else "")
                  + ("; the case is open again so someone follows it up" if reopened else ""),
                  at=f"reply:{case.id}")
            st.session_state.setdefault("case_seen_outbox", {})[case.id] = latest_message_id(store, case.id)  # type: ignore[arg-type]
            _done_drafting(store, case.id, actor.username)  # type: ignore[arg-type]
            _after_own_write(store, case)

        def cancel_private() -> None:
            st.session_state[f"askdm_open_{case.id}"] = False
            st.session_state.pop(refused_key, None)
            st.session_state.pop(ack_key, None)

        refused = st.session_state.get(refused_key)
        if refused:
            st.error(escape_md(refused), icon=":material/block:")
            st.button("Send anyway", key=f"askdm_send_anyway_{case.id}", on_click=lambda: send_private(force=True),
                      disabled=not body.strip() or not can(user, "reply"),
                      help="Queue this private message as well; recorded in the audit log as sent anyway.")
        c1, c2 = st.columns(2)
        c1.button("Send privately", key=f"askdm_send_{case.id}", type="primary", on_click=send_private,
                  disabled=not body.strip() or not can(user, "reply"))
        c2.button("Cancel", key=f"askdm_cancel_{case.id}", on_click=cancel_private)


def _done_drafting(store: Store, case_id: int, username: str) -> None:
    """The reply is queued: colleagues' pages stop saying "is replying" at their next tick, not at this
    page's next heartbeat (the typing box may still say it is typing until then)."""
    now = utcnow()
    presence.touch(store, case_id, username, drafting=False, now=now)
    st.session_state[f"_presence_beat_{case_id}"] = (now, False)


def _after_own_write(store: Store, case: Case) -> None:
    """Our own reply/escalation may bump the case (status, first response): keep working on it."""
    fresh = store.get_case(case.id)  # type: ignore[arg-type]
    if fresh is not None and held_version(case) == case.version:
        hold(fresh)


def _newest_audit_id(store: Store) -> int:
    row = store.db.execute("select max(id) from audit_events").fetchone()
    return int(row[0] or 0) if row else 0


def _courier_link_missing(store: Store, case_id: int, after_id: int) -> str | None:
    """Why the escalation just queued on ``case_id`` went without a courier link (its
    ``courier.link.unavailable`` event, newer than ``after_id``), or None when it had one or needed none.
    Why: the answer said only "escalation queued", and the reason (a missing COURIER_LINK_SECRET) was in
    the server log and the leads' raw events alone (pages audit, finding 3)."""
    import json

    row = store.db.execute("select details from audit_events where case_id = ? and action = 'courier.link.unavailable' "
                           "and id > ? order by id desc limit 1", [case_id, after_id]).fetchone()
    if row is None:
        return None
    details = row[0] if isinstance(row[0], dict) else json.loads(row[0] or "{}")
    return str(details.get("reason") or "set COURIER_LINK_SECRET")


def _escalate(store: Store, case: Case, user: Any) -> None:
    from responders.config import responders_settings
    from responders.escalation import EscalationRejected
    from responders.outbox import queue_escalation

    config = get_config()
    targets = ["courier", *sorted(responders_settings(config).escalation.targets)]
    note_key, error_key = f"esc_note_{case.id}", f"esc_error_{case.id}"

    def escalate() -> None:
        # A callback, so the note is cleared only once the escalation is queued: a refusal keeps
        # what the agent wrote (the form does not clear itself on submit). It runs before app.py's
        # login check, so it checks the login itself.
        actor = acting_user(store, "escalate")
        if actor is None:
            return
        before = _newest_audit_id(store)
        try:
            message = queue_escalation(store, config, case.id, st.session_state[f"esc_target_{case.id}"],  # type: ignore[arg-type]
                                       st.session_state.get(note_key) or None, actor.username)
        except (EscalationRejected, ValueError, NotAllowed) as exc:
            st.session_state[error_key] = f"Not escalated: {exc}"
            return
        st.session_state[note_key] = ""
        # The target as the agent chose it: its stored address may name a secret setting ("$SLACK_TEAM_WEBHOOK").
        chosen = st.session_state[f"esc_target_{case.id}"]
        to = f"courier ({case.courier or 'unknown'})" if chosen == "courier" else chosen
        flash("success", f"escalation queued to {to} by {channel_name(message.channel)} (message {message.id})",
              at=f"escalate:{case.id}")
        missing = _courier_link_missing(store, case.id, before)  # type: ignore[arg-type]
        if missing is not None:
            flash("warning", f"It goes without a courier link (the courier cannot open this parcel's page or post "
                             f"updates); whoever runs Doorstep can fix it: {missing}", at=f"escalate:{case.id}")
        _after_own_write(store, case)

    with st.form(f"escalate_{case.id}"):
        st.markdown("**Escalate**")
        st.selectbox("To", targets, key=f"esc_target_{case.id}",
                     format_func=lambda t: f"courier ({case.courier or 'unknown'})" if t == "courier" else t)
        st.text_area("Note for them", key=note_key, height=80)
        st.form_submit_button("Escalate", disabled=not can(user, "escalate"), shortcut=SHORTCUTS["escalate"],
                              on_click=escalate)
        if st.session_state.get(error_key):
            st.error(escape_md(st.session_state.pop(error_key)))
    show_flashes(at=f"escalate:{case.id}")


def form_round(case: Case) -> int:
    """Part of the action forms' widget keys: moved on after each write and each conflict, so the
    choices then start again from the fresh state. Not the case version: a change by the
    outbox or a colleague to *another* field must not throw away what the agent is choosing."""
    return int(st.session_state.get(f"_case_form_round_{case.id}", 0))


def status_changes(case: Case, status: str) -> dict[str, Any]:
    """The fields a status set by hand changes: resolving records when (each time, not only the first), closing
    keeps the resolution's time (or now), and any open status clears it, as a customer's post reopening a case
    does. A case reopened from here kept its old ``resolved_at``: the dashboard counted it resolved while open and
    its late second resolution as on time (PostgreSQL team audit)."""
    changes: dict[str, Any] = {"status": status}
    if status == "resolved":
        changes["resolved_at"] = case.resolved_at if case.status == "resolved" and case.resolved_at else utcnow()
    elif status == "closed":
        changes["resolved_at"] = case.resolved_at or utcnow()
    elif case.resolved_at is not None:
        changes["resolved_at"] = None
    return changes


def unqueued_reply(case_id: int) -> bool:
    """Whether this agent's reply box on the case holds words not queued: typed (the browser says so; the words
    of a form reach the server only with Queue reply) or filled from a template. X resolved such a case and moved
    on, the words lost and the customer unanswered (browser check of today's changes)."""
    said = _browser_said(case_id)  # said since the server last wrote the box: a template cleared reads empty
    if said is not None:
        return said
    return bool(str(st.session_state.get(f"draft_{case_id}", "") or "").strip())


def _resolve_and_next(store: Store, case: Case, user: Any) -> None:
    """X: resolve (never past an undelivered reply or escalation), then the next case of the queue."""
    hold_up, retired = resolve_holds(store, case.id)  # type: ignore[arg-type]
    if hold_up:
        flash("error", f"{held_up_words('resolved', hold_up)}. Use \"Resolve even though...\" under Status to "
              "confirm, or retry/cancel them first.", at=f"status:{case.id}")
        st.rerun()
    if unqueued_reply(case.id):  # type: ignore[arg-type]
        flash("error", "Not resolved: your reply box holds words that are not queued. Queue them (Q, or Ctrl+Enter "
              "in the box) or clear the box, then resolve; or choose Resolved under Status and press \"Set status\" "
              "to resolve anyway.", at=f"status:{case.id}")
        st.rerun()
    typing = sorted(u for u in presence.drafting(store, case.id) if u != user.username)  # type: ignore[arg-type]
    if typing:  # resolved under them, their reply would be refused as "resolved since you opened it"
        flash("error", f"Not resolved: {', '.join(typing)} {'is' if len(typing) == 1 else 'are'} replying right now. "
              "Resolve after their reply, or choose Resolved under Status and press \"Set status\" to resolve anyway.",
              at=f"status:{case.id}")
        st.rerun()
    changes = status_changes(case, "resolved")
    # The next case in the queue's whole order, found before this one leaves it.
    after = queue_neighbours(store, case.id)[1]
    if write_case(store, case, user.username, "resolved" + retired_words(retired), at="status", **changes) is None:
        st.rerun()  # someone else changed the status: the conflict is shown, nothing moves on
    if after is not None:
        flash("success", f"case #{case.id} resolved" + retired_words(retired))
        open_case(after)
    st.rerun()


def _next_form_round(case: Case) -> None:
    st.session_state[f"_case_form_round_{case.id}"] = form_round(case) + 1


def take_case(store: Store, case: Case) -> Case | None:
    """"Assign to me" (A): the case goes to the signed-in agent, unless it is a colleague's and they may not
    reassign. Checked as it acts, on the stored case and the user's role as they are now: the page may have
    been drawn before a colleague took the case or before the role changed (README "Roles": an agent
    assigns to self, a lead also reassigns; audit of the inbox, finding 5)."""
    actor = acting_user(store, "assign_self")
    if actor is None:
        flash("error", "Not assigned: your role cannot assign cases.", at=f"assign:{case.id}")
        return None
    fresh = store.get_case(case.id)  # type: ignore[arg-type]
    owner = fresh.assignee if fresh is not None else case.assignee
    if owner and owner != actor.username and not can(actor, "reassign"):
        flash("error", f"Not assigned: {owner} has this case; a lead can reassign it.", at=f"assign:{case.id}")
        return None
    return write_case(store, case, actor.username, "assigned to you", at="assign", assignee=actor.username)


def _actions(store: Store, case: Case, user: Any) -> None:
    st.subheader("Actions")
    with st.form(f"status_{case.id}"):
        # Keyed by the stored status too: when the outbox (after the agent's reply) or a colleague moves it, the
        # choice starts again from it, and "Set status" can never quietly put back the status the page opened with.
        status = st.selectbox("Status", CASE_STATUSES, index=CASE_STATUSES.index(case.status), format_func=status_name,
                              key=f"status_sel_{case.id}_g{form_round(case)}_{case.status}")
        hold_up, retired = resolve_holds(store, case.id)  # type: ignore[arg-type]
        anyway = False
        if hold_up:
            n = len(hold_up)
            anyway = st.checkbox(f"Resolve even though {n} message{'' if n == 1 else 's'} {'is' if n == 1 else 'are'} "
                                 f"not delivered ({pending_words(hold_up)})",
                                 key=f"resolve_anyway_{case.id}_g{form_round(case)}")
        if st.form_submit_button("Set status", disabled=not can(user, "status")):
            if status in ("resolved", "closed") and hold_up and not anyway:
                flash("error", f"{held_up_words(status_name(status), hold_up)}. Tick \"Resolve even though...\" to "
                      "confirm, or retry/cancel them first.", at=f"status:{case.id}")
                st.rerun()
            changes = status_changes(case, status)
            write_case(store, case, user.username, f"status set to {status_name(status)}"
                       + (retired_words(retired) if status in ("resolved", "closed") else ""), at="status", **changes)
            st.rerun()
    if st.button("Resolve and go to the next case", key=f"resolve_next_{case.id}", disabled=not can(user, "status"),
                 shortcut=SHORTCUTS["resolve"], help="Resolve this case, then open the next one in the inbox's order"):
        _resolve_and_next(store, case, user)
    show_flashes(at=f"status:{case.id}")
    users = [u[0] for u in store.db.execute("select username from users order by username").fetchall()]
    # A case whose assignee is no console user (a case assigned before they were removed, by an older version that
    # did not hand it back): the box shows them, marked, rather than "(nobody)" under "Assignee tom" (lead audit).
    gone = [case.assignee] if case.assignee and case.assignee not in users else []
    assignees = ["", *gone, *users]
    if can(user, "reassign"):
        with st.form(f"assign_{case.id}"):
            who = st.selectbox("Assign to", assignees, index=assignees.index(case.assignee) if case.assignee in assignees
                               else 0, format_func=lambda u: "(nobody)" if not u else
                               f"{u} (no longer a user)" if u in gone else u,
                               key=f"assign_sel_{case.id}_g{form_round(case)}")
            if st.form_submit_button("Assign"):
                write_case(store, case, user.username, f"assigned to {who or 'nobody'}", at="assign", assignee=who or None)
                st.rerun()
    if case.assignee and case.assignee != user.username and not can(user, "reassign"):
        # Taking a colleague's case is a reassignment (leads only): no button, and no A key, to take it.
        st.caption(escape_md(f"{case.assignee} has this case; a lead can reassign it."))
    elif case.assignee != user.username and st.button("Assign to me", key=f"assign_me_{case.id}",
                                                      disabled=not can(user, "assign_self"),
                                                      shortcut=SHORTCUTS["assign"]):
        if take_case(store, case) is not None:
            st.rerun()
        # refused (or a colleague's change came first): the reason is shown right below, nothing moved
    show_flashes(at=f"assign:{case.id}")
    with st.form(f"snooze_{case.id}"):
        choice = st.selectbox("Snooze for", list(SNOOZE_CHOICES), key=f"snooze_sel_{case.id}")
        if st.form_submit_button("Snooze", disabled=not can(user, "snooze"), shortcut=SHORTCUTS["snooze"]):
            until = utcnow() + SNOOZE_CHOICES[choice]
            write_case(store, case, user.username, f"snoozed until {local_time(until, get_config())}", at="snooze",
                       snoozed_until=until)
            st.rerun()
    show_flashes(at=f"snooze:{case.id}")
    with st.form(f"note_{case.id}", clear_on_submit=True):
        text = st.text_area("Internal note (never sent to the customer)", key=f"note_text_{case.id}", height=80)
        if st.form_submit_button("Add note", disabled=not can(user, "note")) and text.strip():
            try:
                store.add_note(case.id, user.username, text.strip())  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - only a busy database or a role taken away is answered here
                refused = str(exc) if isinstance(exc, NotAllowed) else busy_message(exc, "Your note")
                if refused is None:
                    raise
                # The form has cleared the box: the agent gets their words back with the reason.
                st.error(escape_md(f"{refused} Your note: {text.strip()}"))
            else:
                flash("success", "note added", at=f"note:{case.id}")
                st.rerun()
    show_flashes(at=f"note:{case.id}")


def _dm_handles(store: Store, case: Case, messages: list[Any]) -> dict[str, str]:
    """Author id -> handle of the case's posts, read only when a direct message names its recipient
    by network id (an X user id, a Bluesky DID), so the page can say "@janev" instead."""
    if not any(m.channel.endswith("_dm") and m.target and not m.target.startswith("@") for m in messages):
        return {}
    return {m.author_id: m.author_handle for m in store.mentions_for_case(case.id)  # type: ignore[arg-type]
            if m.author_id and m.author_handle}


def _outbound(store: Store, case: Case, user: Any) -> None:
    from responders.outbox import cancel, retry

    config = get_config()
    messages = store.outbound_for_case(case.id)  # type: ignore[arg-type]
    handles = _dm_handles(store, case, messages)
    # Named as the timeline names them: the escalation's target ("team"), never its setting's $NAME.
    names = escalation_names(store.audit_trail(case.id), {m.id: m for m in messages}, config)  # type: ignore[arg-type]
    st.subheader("Outbound messages")
    if not messages:
        st.caption("Nothing sent or queued yet.")
    for m in messages:
        with st.container(border=True):
            sender = sent_from(m.channel, m.account)
            safe_text(f"{m.status.replace('_', ' ')} · {kind_name(m.kind)} via {channel_name(m.channel)}{sender} to "
                      f"{recipient(m, handles, names.get(m.id))} · "
                      f"by {actor_name(m.created_by, start=False) if m.created_by else '-'} · {local_time(m.created_at, config)}"
                      + (f" · sent {local_time(m.sent_at, config)}" if m.sent_at else "")
                      + (f" · attempts {m.attempts}" if m.attempts else ""), caption=True)
            safe_text(m.text)
            if m.last_error:
                st.error(escape_md(f"last error: {m.last_error}"))
            if m.status in ("failed", "cancelled") and st.button("Retry", key=f"retry_{m.id}",
                                                                  disabled=not can(user, "retry_message")):
                try:  # a message whose account has left doorstep.toml is refused with what to do instead
                    retry(store, m.id, user.username, config=config)  # type: ignore[arg-type]
                except (KeyError, ValueError) as exc:
                    st.error(escape_md(str(exc).strip("'\"")))
                else:
                    flash("success", f"message {m.id} queued again", at=f"outbound:{case.id}")
                    st.rerun()
            if m.status in ("queued", "failed") and st.button("Cancel", key=f"cancel_{m.id}"):
                try:
                    cancel(store, m.id, user.username)  # type: ignore[arg-type]
                except ValueError as exc:
                    st.error(escape_md(str(exc)))
                else:
                    st.rerun()


def _timeline(store: Store, case: Case, user: Any) -> None:
    """The case's history as sentences, newest first; the raw audit events for leads in an expander."""
    from console import timeline

    config = get_config()
    st.subheader("Timeline")
    events = store.audit_trail(case.id)  # type: ignore[arg-type]
    messages = {m.id: m for m in store.outbound_for_case(case.id)}  # type: ignore[arg-type]
    items = timeline.lines(events, store.notes(case.id), messages, config,  # type: ignore[arg-type]
                           lambda t: local_time(t, config, "%H:%M" if t and t.date() == utcnow().date() else
                                                "%a %d %b %H:%M"), _dm_handles(store, case, list(messages.values())),
                           opened_at=case.opened_at, posts=store.mentions_for_case(case.id))  # type: ignore[arg-type]
    all_key = f"_timeline_all_{case.id}"
    shown = items if st.session_state.get(all_key) else items[-TIMELINE_SHOWN:]
    with st.container(height=TIMELINE_HEIGHT_PX if len(items) > 8 else "content", border=False):
        for when, words in reversed(shown):
            safe_text(f"{local_time(when, config)} — {words}", caption=True)
        if len(shown) < len(items):
            older = len(items) - len(shown)
            st.button(f"Show {older} older line{'' if older == 1 else 's'}", key=f"timeline_older_{case.id}",
                      on_click=lambda: st.session_state.__setitem__(all_key, True))
    if can(user, "view_audit"):
        box, is_open = lazy_expander(f"Raw audit events (for leads, {len(events)})", key=f"raw_audit_open_{case.id}")
        with box:
            if is_open:  # one line per event: drawn only when a lead opens it
                for event in events:
                    safe_text(f"{local_time(event.at, config, '%Y-%m-%d %H:%M:%S')} {timeline.raw(event)}", caption=True)


TIMELINE_HEIGHT_PX = 360
#: Timeline lines drawn before "Show N older lines": a thread of 500 posts drew 500 lines and took 3-5 s to open
#: (scale audit); the box shows about ten at a time.
TIMELINE_SHOWN = 60


def _erase_person(store: Store, case: Case, user: Any) -> None:
    """"Erase this person's data" (admins only), so a lead's request needs no shell: what it would erase, as
    counts; the customer id or the author's handle typed to confirm; then the erasure (doorstep.erasure,
    which checks the role again) and the page again, with the erased posts."""
    if not can(user, "erase_personal_data"):
        return
    from doorstep.erasure import ErasureError, erase_customer, person_of_case, preview_erasure

    box, is_open = lazy_expander("Erase this person's data", key=f"erase_open_{case.id}")
    with box:
        show_flashes(at=f"erase:{case.id}")
        if not is_open:
            return
        try:
            person = person_of_case(store, case.id, get_config())  # type: ignore[arg-type]
            preview = preview_erasure(store, person)
        except ErasureError as exc:
            st.caption(escape_md(str(exc)))
            return
        word = person.customer_id or (case.author_handle or "")
        st.caption(escape_md(f"{person}: would erase {preview.counts()}. The rows stay with their text erased; "
                             "messages not sent yet are cancelled. This cannot be undone."))
        with st.form(f"erase_{case.id}", clear_on_submit=True):
            typed = st.text_input(f"Type {'the customer id' if person.customer_id else 'the handle'} {word} to confirm",
                                  key=f"erase_confirm_{case.id}")
            if st.form_submit_button("Erase", type="primary"):
                if typed.strip().lstrip("@").lower() != word.strip().lstrip("@").lower():
                    flash("error", f"Nothing erased: type {word} to confirm.", at=f"erase:{case.id}")
                    st.rerun()
                try:
                    erasure = erase_customer(store, person, user.username)
                except (ErasureError, PermissionError) as exc:
                    flash("error", f"Nothing erased: {exc}", at=f"erase:{case.id}")
                else:
                    fresh = store.get_case(case.id)  # type: ignore[arg-type]
                    if fresh is not None:
                        hold(fresh)  # the erasure's own change to the case: nothing to review
                    flash("success", f"{person}: personal data erased ({erasure.counts()})")
                st.rerun()


def neighbour(queue: list[int], case_id: int | None, step: int) -> int | None:
    """The case ``step`` places from ``case_id`` in the inbox's list (the first one when it is not there)."""
    if not queue:
        return None
    if case_id not in queue:
        return queue[0]
    at = queue.index(case_id) + step
    return queue[at] if 0 <= at < len(queue) else None


#: The page's keys (Streamlit's own button shortcuts, which leave text boxes alone; R and C are
#: Streamlit's own). Ctrl+Enter in the reply box queues the reply (it submits the form).
SHORTCUTS = {"next": "J", "previous": "K", "assign": "A", "escalate": "E", "fill": "T", "queue": "Q", "snooze": "S",
             "resolve": "X"}
#: What the keys do, as the page lists them (Streamlit cannot bind "?", so the list is always shown).
KEYS_HELP = ("Keys (outside a text box): J / K next and previous case · A assign to me · T fill the suggested "
             "template · Q or Ctrl+Enter queue the reply · E escalate · S snooze · X resolve and go to the next case")


def queue_neighbours(store: Store, case_id: int | None) -> tuple[int | None, int | None]:
    """The cases before and after ``case_id`` in the inbox's order, over the whole queue under the inbox's
    filters, not only the page of 50 it showed (audit of the inbox, finding 8: on the 50th case J stopped).

    Inside the page the inbox showed, its ids answer; at its edges or past it, the queue's ids in order
    (``Store.inbox_ids``, ids only), kept for the session while the data stays the same
    (:func:`console.inbox.change_mark`). A session that has not drawn the inbox (a reload of /case?id=N, a
    shared link) walks the queue the inbox would show it: under the filters the session keeps, else the
    inbox's defaults (open cases, priority order); before, J / K and "resolve and next" were dead there
    (pages audit, finding 2)."""
    from console.inbox import change_mark, queue_query

    page = [int(i) for i in st.session_state.get("_inbox_ids") or []]
    if case_id in page and 0 < page.index(case_id) < len(page) - 1:
        return neighbour(page, case_id, -1), neighbour(page, case_id, 1)
    query = st.session_state.get("_inbox_query")
    if query is None:
        query = queue_query(st.session_state.get("inbox_filters") or {})
    mark = (change_mark(store), repr(query))
    held_ids = st.session_state.get("_inbox_queue_ids")
    if held_ids is None or held_ids[0] != mark:
        held_ids = (mark, store.inbox_ids(query))
        st.session_state["_inbox_queue_ids"] = held_ids
    queue = held_ids[1]
    return neighbour(queue, case_id, -1), neighbour(queue, case_id, 1)


#: Seconds in which a second J / K (or the same case number again) leaves words typed and not queued behind.
LEAVE_AGAIN_S = 10.0


def may_leave(case_id: int | None, how: str) -> bool:
    """Whether the agent may leave the case now (J / K, the case-number box): not while its reply box holds words
    not queued, unless they asked the same way again within :data:`LEAVE_AGAIN_S` (then the words are left, as
    asked). The words of the box's form reach the server only with Queue reply, so leaving lost them unsaid
    (left open by the keyboard audit; X already refused)."""
    if case_id is None or not unqueued_reply(case_id):
        return True
    asked = st.session_state.get(f"_leave_asked_{case_id}")
    if isinstance(asked, tuple) and asked[0] == how and time.monotonic() - asked[1] < LEAVE_AGAIN_S:
        st.session_state.pop(f"_leave_asked_{case_id}", None)
        return True
    st.session_state[f"_leave_asked_{case_id}"] = (how, time.monotonic())
    again = {"next": "press J again", "previous": "press K again"}.get(
        how, "press the case's button again" if how.startswith("other ") else "enter the number again")
    flash("error", f"Still on case #{case_id}: your reply box holds words that are not queued. Queue them (Q, or "
          f"Ctrl+Enter in the box) or clear the box; or {again} within {LEAVE_AGAIN_S:g} s to leave them unsent.")
    return False


def _next_previous(case_id: int | None) -> None:
    """Previous / Next case in the order the inbox listed them (J / K), without going back to it."""
    before, after = queue_neighbours(get_store(), case_id)
    left, right = st.columns(2)
    if left.button("Previous", key="case_previous", icon=":material/chevron_left:", disabled=before is None,
                   shortcut=SHORTCUTS["previous"], help="The case above this one in the inbox"):
        if may_leave(case_id, "previous"):
            open_case(before)  # type: ignore[arg-type]
        st.rerun()
    if right.button("Next", key="case_next", icon=":material/chevron_right:", disabled=after is None,
                    shortcut=SHORTCUTS["next"], help="The case below this one in the inbox"):
        if may_leave(case_id, "next"):
            open_case(after)  # type: ignore[arg-type]
        st.rerun()


def _to_the_top() -> None:
    """Scroll the page to its top. Streamlit keeps the scroll position when the page shows another case (X, J/K, a
    case number), so after "resolve and next" from a note at the bottom the next case opened at its bottom, its
    header, SLA, composer and the "resolved" confirmation off screen (keyboard audit)."""
    script = ("<script>const d = window.parent.document; "
              "for (const e of d.querySelectorAll('[data-testid=stMain], [data-testid=stAppViewContainer]')) "
              "{ e.scrollTop = 0; } window.parent.scrollTo(0, 0);</script>")
    run_script(script)


def render() -> None:
    """The case page."""
    user = require("reply")
    store = get_store()
    show_flashes()
    conflict = st.session_state.pop("case_conflict", None)  # sections that answer at the top (split, merge)
    if conflict:
        st.error(escape_md(conflict), icon=":material/warning:")
    case_id = url_case_id()

    def _picked() -> None:
        picked = st.session_state.get("case_pick")
        if picked and case_id and int(picked) != int(case_id) and not may_leave(int(case_id), f"number {int(picked)}"):
            st.session_state["case_pick"] = int(case_id)  # the box shows the case the page still shows
            return
        st.session_state["case_id"] = picked
        if st.session_state["case_id"]:
            st.query_params["id"] = str(int(st.session_state["case_id"]))

    initial: dict[str, Any] = {} if "case_pick" in st.session_state else {"value": None}
    # The title and the case-number box share one row: the composer starts higher on the page.
    title_slot, nav, pick = st.columns([3.6, 2.2, 1.2], vertical_alignment="bottom")
    with nav:
        _next_previous(case_id)
    with pick:
        st.number_input("Case number", min_value=1, step=1, key="case_pick", placeholder="type a case number",
                        on_change=_picked, **initial)
    if not case_id:
        st.info("Open a case from the inbox.")
        return
    case = store.get_case(int(case_id))
    if case is None:
        st.error(f"No case {int(case_id)}.")
        return
    held(store, case)
    if st.session_state.get("_case_drawn") != case.id:  # another case in the same page: start at its top
        st.session_state["_case_drawn"] = case.id
        _to_the_top()
    from console.case_regroup import merged_notice, regroup_section

    _header(store, case, user, title_slot)
    merged_notice(case)
    if case.merged_into:  # read-only: its posts, notes and messages are on the case it went into
        return
    # The composer first, beside the order: answering is what the page is for. The thread
    # scrolls in its own box below it, newest first, so the page never grows with it.
    left, right = st.columns([3, 2])
    with left:
        _composer(store, case, user)
        mentions = _posts(store, case)
        _outbound(store, case, user)
    with right:
        _order(store, case, mentions)
        _actions(store, case, user)
        regroup_section(store, case, user)
        _escalate(store, case, user)
        from console.dialogue import case_section

        case_section(store, case, user)
        _timeline(store, case, user)
        _erase_person(store, case, user)
