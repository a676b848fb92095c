"""Review queue: walk the posts the classifier is unsure of, one at a time, from the keyboard.

Why: a post read confidently wrong is worse than one flagged for review, and the fastest way
to a better model is a team correcting what it was unsure of (``doorstep train --with-feedback``
folds the corrections in). So the queue is the ``needs_review`` posts first, then the lowest
intent confidence; each post shows the model's labels, and the keys set them:

    1-9, 0   intent (in the order shown)      c   complaint yes/no
    s n p    sentiment negative/neutral/positive
    Enter    confirm and go to the next post   (also: the Confirm button)

Shortcuts come from the maintained ``streamlit-shortcuts`` component (buttons with keys, so
mouse users get the same buttons), its script drawn with ``st.iframe`` (see :func:`add_shortcuts`).
Streamlit's own ``shortcut=`` cannot stand in: it reserves C, the complaint key. Corrections are stored exactly as on the case page
(``label_corrections`` + audit log, :func:`console.case_view.record_label_correction`); a
confirmed post's labels are updated and it leaves ``needs_review``, but stays in its case and
in the inbox as before.
"""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from console.widgets import escape_md, flash, get_store, require, safe_text, show_flashes
from console.words import channel_name, intent_name
from doorstep.models import INTENTS, SENTIMENTS, Mention
from doorstep.store import Store

#: Keys for the intents, in INTENTS order (ten intents: 1-9, then 0).
INTENT_KEYS: tuple[str, ...] = tuple("1234567890")[: len(INTENTS)]
SENTIMENT_KEYS = {"negative": "s", "neutral": "n", "positive": "p"}
#: How many candidate posts are read to pick the least confident ones.
QUEUE_SCAN = 2000


def review_queue(store: Store, limit: int = 50, skip: set[int] | None = None) -> list[Mention]:
    """Inbound labelled posts not yet reviewed: ``needs_review`` first, then by intent confidence (lowest first)."""
    skip = skip or set()
    rows = store.rows(
        "select * from mentions where outbound = 0 and intent is not null "
        "and id not in (select mention_id from label_corrections where mention_id is not null) "
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


def save_review(store: Store, mention: Mention, intent: str, sentiment: str, complaint: bool, actor: str) -> int:
    """Store the reviewed labels: every changed field as a correction (as the case page does), and a
    confirmation row for unchanged ones so the post leaves the queue; returns how many fields changed."""
    from console.case_view import record_label_correction

    labels = mention.labels
    assert labels is not None
    changed = 0
    for field, old, new in (("intent", labels.intent, intent), ("sentiment", labels.sentiment, sentiment),
                            ("complaint", labels.complaint, complaint)):
        if old != new:
            changed += 1
        record_label_correction(store, mention, field, old, new, actor)
    updated = labels.model_copy(update={"intent": intent, "sentiment": sentiment, "complaint": complaint,
                                       "needs_review": False})
    assert mention.id is not None
    store.set_mention_labels(mention.id, updated)
    return changed


def _draft(m: Mention) -> dict[str, Any]:
    drafts: dict[int, dict[str, Any]] = st.session_state.setdefault("review_drafts", {})
    assert m.id is not None and m.labels is not None
    return drafts.setdefault(m.id, {"intent": m.labels.intent, "sentiment": m.labels.sentiment,
                                    "complaint": m.labels.complaint})


class _IframeComponents:
    """What streamlit-shortcuts calls as ``components.html``, drawn with ``st.iframe`` instead, its script run in
    the page's own window rather than the iframe's.

    Why the page's window: the library's script adds its keydown listener to the page once (a flag on the page
    says so), but creates that listener inside the iframe. A rerun that moves the iframe (the "labels confirmed"
    note above it, after every Enter) replaces it, and a browser never calls a listener whose iframe is gone; the
    flag still says "added", so no key worked after the first post. Made by the page's own ``Function``, the
    listener lives as long as the page does. The script is the library's, unchanged."""

    @staticmethod
    def html(script: str, height: int = 0, width: int = 0) -> None:
        body = script.strip().removeprefix("<script>").removesuffix("</script>")
        # json.dumps makes it a JavaScript string literal; "</" is escaped so the text cannot close the tag.
        code = json.dumps(body).replace("</", "<\\/")
        st.iframe(f"<script>new window.parent.Function({code})();</script>", height="content")


def add_shortcuts(**shortcuts: str) -> None:
    """streamlit-shortcuts' ``add_shortcuts`` (element key -> key), its script drawn with ``st.iframe``.

    Why: the library draws it with ``st.components.v1.html``, which Streamlit deprecated (removal
    announced for 2026-06-01): every draw of this page printed that deprecation to the terminal
    running the console (``make demo``). The script is the library's, unchanged; only the iframe
    it runs in differs (same-origin, as before, so it still reaches the page)."""
    import streamlit_shortcuts

    if hasattr(st, "iframe"):  # Streamlit before st.iframe keeps the library's own call
        streamlit_shortcuts.components = _IframeComponents  # the module global its functions call
    streamlit_shortcuts.add_shortcuts(**shortcuts)


def render() -> None:
    """The review page (agents and leads: ``correct_labels``)."""
    user = require("correct_labels")
    store = get_store()
    st.title("Review queue")
    st.caption("Keys: 1-9, 0 intent · c complaint · s/n/p sentiment · Enter confirm. "
               "Unsure posts first, then the least confident; confirmed labels are kept for retraining.")
    show_flashes()
    skipped: set[int] = st.session_state.setdefault("review_skipped", set())
    queue = review_queue(store, skip=skipped)
    done = st.session_state.get("review_done", 0)
    if not queue:
        st.success(f"Nothing left to review. Reviewed this session: {done}.")
        return
    m = queue[0]
    assert m.labels is not None and m.id is not None
    draft = _draft(m)
    st.progress(min(1.0, done / max(1, done + len(queue))), text=f"reviewed this session: {done} · in queue: {len(queue)}"
                + ("+" if len(queue) == 50 else ""))
    with st.container(border=True):
        safe_text(f"@{m.author_handle or '?'} · {channel_name(m.channel)} · case {m.case_id or '-'}"
                  + (" · needs review" if m.labels.needs_review else ""), caption=True)
        safe_text(m.text)
        model_p = m.labels.intent_scores.get(m.labels.intent, 0.0)
        st.caption(escape_md(f"model: {intent_name(m.labels.intent)} ({model_p:.0%}) · {m.labels.sentiment} · "
                             f"complaint {'yes' if m.labels.complaint else 'no'}"))

    def set_value(field: str, value: Any) -> None:
        _draft(m)[field] = value

    st.markdown("**Intent**")
    cols = st.columns(5)
    for i, (intent, key) in enumerate(zip(INTENTS, INTENT_KEYS)):
        chosen = draft["intent"] == intent
        # the short key words: "damaged or wrong item" does not fit a fifth of the page
        cols[i % 5].button(f"{key} · {intent.replace('_', ' ')}", key=f"rv_intent_{key}",
                           type="primary" if chosen else "secondary", on_click=set_value, args=("intent", intent),
                           use_container_width=True)
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Sentiment**")
        scols = st.columns(3)
        for j, sentiment in enumerate(SENTIMENTS):
            key = SENTIMENT_KEYS[sentiment]
            scols[j].button(f"{key} · {sentiment}", key=f"rv_sent_{key}",
                            type="primary" if draft["sentiment"] == sentiment else "secondary",
                            on_click=set_value, args=("sentiment", sentiment), use_container_width=True)
    with right:
        st.markdown("**Complaint**")
        st.button(f"c · complaint: {'yes' if draft['complaint'] else 'no'}", key="rv_complaint",
                  type="primary" if draft["complaint"] else "secondary",
                  on_click=set_value, args=("complaint", not draft["complaint"]), use_container_width=True)
    bcols = st.columns([2, 1, 3])
    confirm = bcols[0].button("Confirm (Enter)", key="rv_confirm", type="primary", use_container_width=True)
    skip = bcols[1].button("Skip", key="rv_skip", use_container_width=True)
    add_shortcuts(
        **{f"rv_intent_{key}": key for key in INTENT_KEYS},
        **{f"rv_sent_{key}": key for key in SENTIMENT_KEYS.values()},
        rv_complaint="c",
        rv_confirm="enter",
    )
    if skip:
        skipped.add(m.id)
        st.rerun()
    if confirm:
        changed = save_review(store, m, draft["intent"], draft["sentiment"], bool(draft["complaint"]), user.username)
        st.session_state["review_done"] = done + 1
        st.session_state["review_drafts"].pop(m.id, None)
        flash("success", f"post {m.id}: {changed} correction(s) saved" if changed else f"post {m.id}: labels confirmed")
        st.rerun()
