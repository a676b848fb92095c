"""Review queue: walk the posts the classifier is unsure of, one at a time, from the keyboard.

Why: a post read confidently wrong is worse than one flagged for review, and the fastest way
to a better model is a team correcting what it was unsure of (``doorstep train --with-feedback``
folds the corrections in). So the queue is the ``needs_review`` posts first, then the lowest
intent confidence; each post shows the model's labels, and the keys set them:

    1-9, 0   intent (in the order shown)      c   complaint yes/no
    s n p    sentiment negative/neutral/positive
    Enter    confirm and go to the next post   (also: the Confirm button)

Every key is a button too (mouse users get the same buttons); the keys are a small listener of the page's
own (:func:`add_review_keys`) that acts only on this page and never in a text box, and Enter on a focused
button or link is that control's. Streamlit's own ``shortcut=`` cannot stand in: it reserves C, the complaint key.

Every key applies to the post on screen: the buttons carry its id (their callbacks are bound to the
post drawn), and the page keeps that post until the agent confirms or skips it, whatever arrives
meanwhile. Confirm saves it through :func:`doorstep.corrections.correct_labels`, the case page's
action too (labels, "needs review" cleared, the case scored again, ``label_corrections`` and one
audit event); a post someone reviewed after it was shown is refused in words ("post 538 was reviewed
by priya meanwhile") and nothing is saved. Two reviewers are served different posts: the post a
reviewer has open is claimed for :data:`CLAIM_TTL` (one JSON document in the ``cursors`` table, as
``doorstep/presence.py`` keeps presence), and the queue serves the others first. A confirmed post
leaves the queue but stays in its case and in the inbox as before.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

import streamlit as st

from console.widgets import (
    busy_message, escape_md, flash, get_config, get_store, require, run_script, safe_text, show_flashes,
)
from console.words import channel_name, intent_name
from doorstep.config import Config
from doorstep.corrections import ReviewError, correct_labels, last_review
from doorstep.dialect import DATABASE_ERRORS
from doorstep.models import INTENTS, SENTIMENTS, Mention, utcnow
from doorstep.store import Store, iso, parse_time

log = logging.getLogger("doorstep.console.review")

#: Keys for the intents, in INTENTS order (ten intents: 1-9, then 0).
INTENT_KEYS: tuple[str, ...] = tuple("1234567890")[: len(INTENTS)]
SENTIMENT_KEYS = {"negative": "s", "neutral": "n", "positive": "p"}
#: How many candidate posts are read to pick the least confident ones.
QUEUE_SCAN = 2000
#: How long a post shown to a reviewer stays theirs (each draw of the page renews it): a closed tab
#: frees its post after two minutes, as presence does.
CLAIM_TTL = timedelta(minutes=2)
#: The claims: one JSON document in the cursors table, {"<post id>": {"user": ..., "at": ...}}.
CLAIMS_KEY = "review:claims"
#: How long a claim waits for the database's write lock before the page goes on without it.
CLAIM_WAIT_S = 0.5


def review_queue(store: Store, limit: int = 50, skip: set[int] | None = None) -> list[Mention]:
    """Inbound labelled posts not yet reviewed: ``needs_review`` first, then by intent confidence (lowest first).

    A post still flagged "needs review" is queued even with stored corrections: the case page's form
    used to store them without updating the post, which left it flagged and out of the queue for good."""
    skip = skip or set()
    rows = store.rows(
        "select * from mentions where outbound = 0 and intent is not null and (needs_review = 1 "
        "or id not in (select mention_id from label_corrections where mention_id is not null)) "
        "order by needs_review desc, id desc limit ?",
        [QUEUE_SCAN],
    )
    from doorstep.store import _mention_from_row

    mentions = [_mention_from_row(r) for r in rows if r["id"] not in skip]

    def confidence(m: Mention) -> float:
        assert m.labels is not None
        return m.labels.intent_scores.get(m.labels.intent, 0.0)

    mentions.sort(key=lambda m: (not m.labels.needs_review, confidence(m)))  # type: ignore[union-attr]
    return mentions[:limit]


def save_review(store: Store, mention: Mention, intent: str, sentiment: str, complaint: bool, actor: str,
                config: Config | None = None) -> int:
    """Store ``actor``'s review of ``mention`` as the review queue does (:func:`doorstep.corrections.correct_labels`,
    refused if the post was reviewed since ``mention`` was read); returns how many fields changed."""
    if config is None:
        import os

        from doorstep.config import load_config

        config = load_config(os.environ.get("DOORSTEP_CONFIG") or None)
    assert mention.id is not None
    review = correct_labels(store, config, mention.id, actor, intent=intent, sentiment=sentiment, complaint=complaint,
                            seen_labels=mention.labels)
    return len(review.changed)


# ------------------------------------------------------------------ claims: one post per reviewer
def _claims(store: Store, now: datetime) -> dict[str, dict[str, str]]:
    """The claims younger than :data:`CLAIM_TTL`."""
    raw = store.get_cursor(CLAIMS_KEY)
    try:
        data = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        data = {}
    fresh = {}
    for post, claim in (data.items() if isinstance(data, dict) else ()):
        at = parse_time(claim.get("at")) if isinstance(claim, dict) else None
        if at is not None and now - at <= CLAIM_TTL:
            fresh[post] = claim
    return fresh


def claim_post(store: Store, username: str, queue: list[Mention], current: int | None = None,
               now: datetime | None = None) -> tuple[Mention, str | None]:
    """The post to show ``username``: ``current`` if it is in ``queue``, else the first post no other
    reviewer has open (the first post when all are); claimed for them (their other claim dropped).
    Returns it with the other reviewer who has it open too, if any.

    Best-effort like presence: when the database stays busy, the post is served without a claim."""
    now = now or utcnow()
    try:
        with store.waiting_at_most(CLAIM_WAIT_S), store.write_transaction():
            claims = _claims(store, now)
            others = {int(post): c.get("user") for post, c in claims.items() if c.get("user") != username}
            m = next((m for m in queue if m.id == current), None) or next(
                (m for m in queue if m.id not in others), queue[0])
            claims = {post: c for post, c in claims.items() if c.get("user") != username}
            claims[str(m.id)] = {"user": username, "at": iso(now)}
            store.set_cursor(CLAIMS_KEY, json.dumps(claims, sort_keys=True))
            return m, others.get(m.id)  # type: ignore[arg-type]
    except DATABASE_ERRORS as exc:
        log.info("review claim not recorded for %s: %s", username, exc)
        return next((m for m in queue if m.id == current), queue[0]), None


def release_claim(store: Store, username: str) -> None:
    """``username`` has no post open any more (the queue is empty for them)."""
    try:
        with store.waiting_at_most(CLAIM_WAIT_S), store.write_transaction():
            claims = _claims(store, utcnow())
            kept = {post: c for post, c in claims.items() if c.get("user") != username}
            if kept != claims:
                store.set_cursor(CLAIMS_KEY, json.dumps(kept, sort_keys=True))
    except DATABASE_ERRORS as exc:
        log.info("review claim not released for %s: %s", username, exc)


# ------------------------------------------------------------------ the post on screen
def _drafts() -> dict[int, dict[str, Any]]:
    return st.session_state.setdefault("review_drafts", {})


def _draft(store: Store, m: Mention) -> dict[str, Any]:
    """The agent's choices for post ``m``, with what they were shown of it (``seen``: its labels, and its
    newest review then) so Confirm can tell whether someone reviewed it meanwhile."""
    assert m.id is not None and m.labels is not None
    drafts = _drafts()
    if m.id not in drafts:
        drafts[m.id] = {"intent": m.labels.intent, "sentiment": m.labels.sentiment, "complaint": m.labels.complaint,
                        "seen": m.labels, "seen_review": last_review(store, m.id)[0]}
    return drafts[m.id]


def _still_open(store: Store, mention_id: int) -> tuple[Mention | None, str | None]:
    """The post kept on screen, re-read, if nobody reviewed it since it was first shown; else (None, who did)."""
    draft = _drafts().get(mention_id)
    m = store.get_mention(mention_id)
    newest, by = last_review(store, mention_id)
    if m is None or m.labels is None or draft is None or newest != draft["seen_review"]:
        return None, by
    return m, None


def _set(mention_id: int, field: str, value: Any) -> None:
    """A key pressed on post ``mention_id`` (bound when its buttons were drawn: the post on screen)."""
    draft = _drafts().get(mention_id)
    if draft is not None:
        draft[field] = (not draft["complaint"]) if field == "complaint" else value


def _forget(mention_id: int) -> None:
    _drafts().pop(mention_id, None)
    if st.session_state.get("review_current") == mention_id:
        st.session_state["review_current"] = None


def _skip(mention_id: int) -> None:
    st.session_state.setdefault("review_skipped", set()).add(mention_id)
    _forget(mention_id)


def _confirm(mention_id: int) -> None:
    """Enter on post ``mention_id``: save the agent's choices for that post, the one on screen.

    A callback runs before app.py's login check, so it checks the login itself (``acting_user``)."""
    from console.login import acting_user

    store = get_store()
    user = acting_user(store, "correct_labels")
    draft = _drafts().get(mention_id)
    if user is None or draft is None:
        return
    try:
        review = correct_labels(store, get_config(), mention_id, user.username, intent=draft["intent"],
                                sentiment=draft["sentiment"], complaint=bool(draft["complaint"]),
                                seen_labels=draft["seen"], seen_review=draft["seen_review"])
    except ReviewError as exc:
        flash("warning", str(exc))
    except Exception as exc:  # the database stayed busy: say so, keep the agent's choices
        words = busy_message(exc, f"The review of post {mention_id}")
        if words is None:
            raise
        flash("error", words)
        return
    else:
        st.session_state["review_done"] = st.session_state.get("review_done", 0) + 1
        flash("success", review.words())
    _forget(mention_id)


#: The page's keys, in the browser: a keydown listener on the page's own window (see :func:`add_review_keys`).
REVIEW_KEYS_JS = """
const w = window.parent;
const doc = w.document;
const keys = %(keys)s;
// Text boxes and widgets that take letters themselves: no review key there.
const TYPING = 'input, textarea, select, [contenteditable]:not([contenteditable="false"]), [role="textbox"], '
  + '[role="combobox"], [role="listbox"], [role="option"], [role="grid"], [role="slider"], [role="spinbutton"], '
  + '[role="menu"], [role="menuitem"], [role="radiogroup"], [role="radio"], [role="tablist"], [role="tab"]';
// Controls whose own action Enter is (a focused Skip skips, a focused link is followed).
const CONTROL = 'a[href], button, summary, [role="button"], [role="link"], [role="checkbox"], [role="switch"]';
// A tab that once ran streamlit-shortcuts' page-lifetime listener (this page's keys before) loses it.
if (w.__streamlitShortcutsListener) {
  doc.removeEventListener('keydown', w.__streamlitShortcutsListener);
  w.__streamlitShortcutsListener = null;
  w.__streamlitShortcutsMap = {};
}
if (w.__doorstepReviewKeys) doc.removeEventListener('keydown', w.__doorstepReviewKeys);
w.__doorstepReviewKeys = function (e) {
  if (e.defaultPrevented || e.isComposing || e.repeat || e.ctrlKey || e.altKey || e.metaKey || e.shiftKey) return;
  const name = keys[e.key === 'Enter' ? 'enter' : String(e.key).toLowerCase()];
  if (!name) return;
  // Only where the key's button is: on every other page the key is that page's, untouched.
  const button = doc.querySelector('.st-key-' + name + ' button');
  if (!button || button.disabled) return;
  const at = doc.activeElement;
  const focused = at && at !== doc.body && at !== doc.documentElement ? at : null;
  if (focused && focused.closest(TYPING)) return;
  if (e.key === 'Enter' && focused && focused.closest(CONTROL)) return;
  e.preventDefault();
  button.click();  // focus stays where it was: the next key, Enter too, still applies to the page
};
doc.addEventListener('keydown', w.__doorstepReviewKeys);
"""


def add_review_keys(**keys: str) -> None:
    """The review keys (element key -> key, ``"enter"`` for Enter) as a keydown listener of the page's own window.

    Why not streamlit-shortcuts, which this page used before: its listener lives as long as the tab and, on any
    matching key, called ``preventDefault`` before it looked for the button, on every page and inside text boxes:
    after one visit to the review queue, c, s, n, p, the digits and Enter did nothing anywhere until a reload (the
    inbox search typed as "parcel snc 1290" read "arel  "; Enter on a focused link or "Add note" was dropped), and
    Enter on a focused Skip confirmed the post (keyboard audit, 2026-12-07). Streamlit's own ``shortcut=`` cannot
    stand in: it reserves C, the complaint key. So this listener acts only while the key's button is on the page,
    never while a text box (or a widget that takes letters) has the focus, and leaves Enter to a focused button or
    link; Enter confirms when nothing in particular has the focus. Each draw replaces the tab's listener, so there
    is one, and it is the current code.

    The script runs in the page's window (made by its ``Function``), not in the frame ``st.iframe`` draws: a rerun
    that moves the frame replaces it, and a gone frame's listener is never called (keys died after the first post).
    """
    body = REVIEW_KEYS_JS % {"keys": json.dumps({key.lower(): name for name, key in keys.items()}, sort_keys=True)}
    # json.dumps makes it a JavaScript string literal; "</" is escaped so the text cannot close the tag.
    code = json.dumps(body).replace("</", "<\\/")
    run_script(f"<script>new window.parent.Function({code})();</script>")


def chosen_words(draft: dict[str, Any]) -> str:
    """What the agent has chosen for the post, in words (the buttons' colour alone reaches no screen reader)."""
    return (f"Chosen: {intent_name(draft['intent'])} · {draft['sentiment']} · "
            f"{'complaint' if draft['complaint'] else 'not a complaint'}")


#: Intent buttons in a row (ten intents: two rows).
INTENTS_PER_ROW = 5


def _chosen_label(words: str, chosen: bool) -> str:
    """A button's words, with "(chosen)" on the chosen one: said by a screen reader, not only shown in colour."""
    return f"✓ {words} (chosen)" if chosen else words


def render() -> None:
    """The review page (agents and leads: ``correct_labels``)."""
    user = require("correct_labels")
    store = get_store()
    st.title("Review queue")
    st.caption("Keys (outside a text box): 1-9, 0 intent · c complaint · s/n/p sentiment · Enter confirm (when no "
               "button or link has the focus). "
               "Unsure posts first, then the least confident; confirmed labels are kept for retraining.")
    show_flashes()
    current: int | None = st.session_state.get("review_current")
    kept: Mention | None = None
    if current is not None:
        kept, by = _still_open(store, current)
        if kept is None:  # reviewed by someone else while it was on screen: the agent's keys are not saved
            st.warning(escape_md(f"post {current} was reviewed by {by or 'someone else'} meanwhile; "
                                 "your choices for it were not saved"))
            _forget(current)
            current = None
    skipped: set[int] = st.session_state.setdefault("review_skipped", set())
    queue = review_queue(store, skip=skipped)
    if kept is not None and kept.id not in {m.id for m in queue}:
        queue = [kept, *queue]  # kept on screen even when newer unsure posts pushed it out of the first 50
    done = st.session_state.get("review_done", 0)
    if not queue:
        release_claim(store, user.username)
        st.success(f"Nothing left to review. Reviewed this session: {done}.")
        return
    m, also_open = claim_post(store, user.username, queue, current)
    assert m.labels is not None and m.id is not None
    st.session_state["review_current"] = m.id
    draft = _draft(store, m)
    st.progress(min(1.0, done / max(1, done + len(queue))), text=f"reviewed this session: {done} · in queue: {len(queue)}"
                + ("+" if len(queue) == 50 else ""))
    with st.container(border=True):
        safe_text(f"post {m.id} · @{m.author_handle or '?'} · {channel_name(m.channel)} · case {m.case_id or '-'}"
                  + (" · needs review" if m.labels.needs_review else "")
                  + (f" · {also_open} has it open too" if also_open else ""), caption=True)
        safe_text(m.text)
        model_p = m.labels.intent_scores.get(m.labels.intent, 0.0)
        st.caption(escape_md(f"model: {intent_name(m.labels.intent)} ({model_p:.0%}) · {m.labels.sentiment} · "
                             f"complaint {'yes' if m.labels.complaint else 'no'}"))

    st.markdown("**Intent**")
    pairs = list(zip(INTENTS, INTENT_KEYS))
    for row in range(0, len(pairs), INTENTS_PER_ROW):  # rows filled left to right: Tab goes 1, 2, 3, ...
        cols = st.columns(INTENTS_PER_ROW)
        for col, (intent, key) in zip(cols, pairs[row:row + INTENTS_PER_ROW]):
            chosen = draft["intent"] == intent
            # the short key words: "damaged or wrong item" does not fit a fifth of the page
            col.button(_chosen_label(f"{key} · {intent.replace('_', ' ')}", chosen), key=f"rv_intent_{key}",
                       type="primary" if chosen else "secondary", on_click=_set, args=(m.id, "intent", intent),
                       width="stretch")
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Sentiment**")
        scols = st.columns(3)
        for j, sentiment in enumerate(SENTIMENTS):
            key = SENTIMENT_KEYS[sentiment]
            scols[j].button(_chosen_label(f"{key} · {sentiment}", draft["sentiment"] == sentiment), key=f"rv_sent_{key}",
                            type="primary" if draft["sentiment"] == sentiment else "secondary",
                            on_click=_set, args=(m.id, "sentiment", sentiment), width="stretch")
    with right:
        st.markdown("**Complaint**")
        st.button(f"c · complaint: {'yes' if draft['complaint'] else 'no'}", key="rv_complaint",
                  type="primary" if draft["complaint"] else "secondary",
                  on_click=_set, args=(m.id, "complaint", None), width="stretch")
    st.caption(escape_md(chosen_words(draft)))
    bcols = st.columns([2, 1, 3])
    # Both carry the id of the post drawn here: Enter saves this post, whatever tops the queue by then.
    bcols[0].button("Confirm (Enter)", key="rv_confirm", type="primary", width="stretch",
                    on_click=_confirm, args=(m.id,))
    bcols[1].button("Skip", key="rv_skip", width="stretch", on_click=_skip, args=(m.id,))
    add_review_keys(
        **{f"rv_intent_{key}": key for key in INTENT_KEYS},
        **{f"rv_sent_{key}": key for key in SENTIMENT_KEYS.values()},
        rv_complaint="c",
        rv_confirm="enter",
    )
