"""What the review queue and the case page's "Correct labels" do with an agent's review (audit of
2026-12: review queue and learning loop, findings 1, 2, 3 and 8).

* Enter saves the post that was on screen, with the keys the agent pressed on it; a post someone
  else reviewed meanwhile is refused in words, and nothing unseen is ever confirmed.
* Two reviewers are served different posts.
* A corrected post scores its case again, as a new post would (intent, priority and its reasons,
  complaint), and the audit says so.
* The case page's form has the same effect as the queue (labels, "needs review", the case).
* The timeline says a review once, in the team's words; confirmed fields still reach
  ``doorstep train --with-feedback``.

Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from streamlit.testing.v1 import AppTest

from console.auth import add_user
from console.review import INTENT_KEYS, review_queue, save_review
from doorstep.config import load_config
from doorstep.models import INTENTS, Labels, Mention
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from tests.conftest import DEMO_CONFIG, console_store, mention, run_page, texts

#: The posts and how the model read them: (external id, text, author, intent, its confidence, complaint,
#: needs review). The queue walks them r1, r2, r3.
POSTS = (
    ("r1", "@LarkspurHelp Royal Mail driver never knocked, just left a card saying I was out", "nina",
     "product_or_account", 0.30, True, True),
    ("r2", "@LarkspurHelp ordered on Monday, still nothing here, where is it", "omar",
     "where_is_my_order", 0.35, True, True),
    ("r3", "@LarkspurHelp the mug arrived, lovely", "pat", "praise", 0.90, False, False),
)


def _labels(intent: str, p: float, complaint: bool, needs_review: bool) -> Labels:
    rest = (1.0 - p) / (len(INTENTS) - 1)
    sentiment = "negative" if complaint else "positive"
    return Labels(sentiment=sentiment, sentiment_scores={s: (0.8 if s == sentiment else 0.1)
                                                         for s in ("negative", "neutral", "positive")},
                  complaint=complaint, complaint_score=0.9 if complaint else 0.1, intent=intent,
                  intent_scores={i: (p if i == intent else rest) for i in INTENTS}, urgency=0.3,
                  needs_review=needs_review, model="test")


class FixedClassifier:
    """Reads each post as :data:`POSTS` (or ``extra``) says, so the queue's order is known."""

    name = "test-fixed"

    def __init__(self, extra: dict[str, Labels] | None = None) -> None:
        self.by_text = {text: _labels(i, p, c, n) for _, text, _, i, p, c, n in POSTS} | (extra or {})

    def classify(self, texts: Sequence[str]) -> list[Labels]:
        return [self.by_text[t] for t in texts]


@pytest.fixture
def store(db_url: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Store:
    s = console_store(db_url, request, monkeypatch)  # DOORSTEP_CONFIG: the demo shop
    Pipeline(s, load_config(DEMO_CONFIG), FixedClassifier()).ingest(
        [mention(ext, text, minutes=n, author_handle=author) for n, (ext, text, author, *_) in enumerate(POSTS)])
    for username in ("ann", "bob"):
        add_user(s, username, "correct horse battery", role="agent", name=username.title(), rounds=4)
    return s


def post(store: Store, ext: str) -> Mention:
    found = store.mention_by_external_id("x", ext)
    assert found is not None and found.labels is not None and found.case_id is not None
    return found


def key(intent: str) -> str:
    return f"rv_intent_{INTENT_KEYS[INTENTS.index(intent)]}"


def rows(store: Store, where: str = "1 = 1", params: Sequence[object] = ()) -> list[dict]:
    return store.rows("select mention_id, field, old_value, new_value, corrected_by from label_corrections "
                      f"where {where} order by id", list(params))


def shown(at: AppTest) -> str:
    return "\n".join(str(t.value) for t in at.text)  # the post's text is drawn with st.text


# ------------------------------------------------------------------ finding 1: Enter saves the post on screen
def test_enter_never_confirms_a_post_the_agent_did_not_see_when_another_reviewed_it_meanwhile(store: Store) -> None:
    r1, r2 = post(store, "r1"), post(store, "r2")
    ann = run_page("review", store, "ann")
    assert POSTS[0][1] in shown(ann)
    ann.button(key=key("lost_or_missing")).click().run()  # ann's "4" on post r1
    save_review(store, r1, r1.labels.intent, r1.labels.sentiment, r1.labels.complaint, "bob")  # bob confirms r1
    ann.button(key="rv_confirm").click().run()  # ann's Enter, still looking at r1
    assert not ann.exception, ann.exception
    assert rows(store, "corrected_by = ?", ["ann"]) == []  # nothing of ann's is stored ...
    assert rows(store, "mention_id = ?", [r2.id]) == [] and post(store, "r2").labels.needs_review  # r2 untouched
    assert f"post {r1.id} was reviewed by bob meanwhile" in texts(ann)  # ... and she is told why


def test_a_key_pressed_on_a_post_reviewed_meanwhile_moves_on_and_is_not_applied_to_the_next(store: Store) -> None:
    r1, r2 = post(store, "r1"), post(store, "r2")
    ann = run_page("review", store, "ann")
    save_review(store, r1, "late_delivery", r1.labels.sentiment, r1.labels.complaint, "bob")  # bob corrects r1
    ann.button(key="rv_complaint").click().run()  # ann's "c", meant for r1
    assert f"post {r1.id} was reviewed by bob meanwhile; your choices for it were not saved" in texts(ann)
    assert POSTS[1][1] in shown(ann)  # the next post, with the model's labels: the "c" was not carried over
    ann.button(key="rv_confirm").click().run()
    assert [(r["field"], r["old_value"], r["new_value"]) for r in rows(store, "mention_id = ?", [r2.id])] == [
        ("intent", "where_is_my_order", "where_is_my_order"), ("sentiment", "negative", "negative"),
        ("complaint", "True", "True")]
    assert post(store, "r1").labels.intent == "late_delivery"  # bob's review stands


def test_enter_saves_the_post_on_screen_when_a_new_unsure_post_arrives(store: Store) -> None:
    r1 = post(store, "r1")
    ann = run_page("review", store, "ann")
    ann.button(key=key("late_delivery")).click().run()  # ann's "2" on r1
    arrival = "@LarkspurHelp NEW ARRIVAL hmm not sure what this is"
    Pipeline(store, load_config(DEMO_CONFIG), FixedClassifier({arrival: _labels("other", 0.10, False, True)})).ingest(
        [mention("new", arrival, minutes=30, author_handle="quinn")])
    ann.button(key="rv_confirm").click().run()
    assert not ann.exception, ann.exception
    assert [(r["mention_id"], r["field"], r["new_value"]) for r in rows(store, "old_value <> new_value")] == [
        (r1.id, "intent", "late_delivery")]
    fresh = post(store, "new")
    assert rows(store, "mention_id = ?", [fresh.id]) == [] and fresh.labels.needs_review  # never confirmed unseen
    assert f"post {r1.id}: 1 correction(s) saved" in texts(ann)


def test_two_reviewers_are_served_different_posts(store: Store) -> None:
    ann = run_page("review", store, "ann")
    bob = run_page("review", store, "bob")
    assert POSTS[0][1] in shown(ann) and POSTS[1][1] in shown(bob)
    ann.run()  # ann's page keeps her post while she works it
    assert POSTS[0][1] in shown(ann)


# ------------------------------------------------------------------ finding 2: a correction re-scores the case
def test_a_corrected_intent_and_complaint_score_the_case_again_with_an_audit_line(store: Store) -> None:
    r1, r2 = post(store, "r1"), post(store, "r2")
    before1, before2 = store.get_case(r1.case_id), store.get_case(r2.case_id)
    assert before1.intent == "product_or_account" and before2.complaint
    ann = run_page("review", store, "ann")
    ann.button(key=key("failed_delivery")).click().run()  # r1: product or account -> failed delivery
    ann.button(key="rv_confirm").click().run()
    ann.button(key="rv_complaint").click().run()  # r2: complaint yes -> no
    ann.button(key="rv_confirm").click().run()
    assert not ann.exception, ann.exception
    after1, after2 = store.get_case(r1.case_id), store.get_case(r2.case_id)
    assert after1.intent == "failed_delivery" and "failed delivery (+14)" in after1.priority_reasons
    assert after1.priority > before1.priority and after1.version == before1.version + 1
    assert not after2.complaint and after2.priority < before2.priority
    assert not any(r.startswith("complaint") for r in after2.priority_reasons)
    rescored = [e for e in store.audit_trail(r1.case_id) if e.action == "case.update"]
    assert [(e.actor, e.details["intent"], e.details["because"]["review_of"]) for e in rescored] == [
        ("ann", "failed_delivery", r1.id)]


# ------------------------------------------------------------------ finding 3: the case page's form
def test_the_case_page_correction_updates_the_post_and_rescores_its_case(store: Store) -> None:
    r1 = post(store, "r1")
    at = run_page("case_view", store, "ann", case_id=r1.case_id)
    at.session_state[f"labels_open_{r1.id}"] = True  # "Correct labels" opened
    at.run()
    at.selectbox(key=f"lab_int_{r1.id}").select("lost_or_missing")
    at.button(key=f"FormSubmitter:labels_{r1.id}-Save correction").click().run()
    assert not at.exception, at.exception
    after = post(store, "r1")
    assert after.labels.intent == "lost_or_missing" and not after.labels.needs_review
    assert store.get_case(r1.case_id).intent == "lost_or_missing"
    assert r1.id not in {m.id for m in review_queue(store)}
    assert [(r["field"], r["new_value"]) for r in rows(store, "old_value <> new_value")] == [
        ("intent", "lost_or_missing")]


# ------------------------------------------------------------------ finding 8: one review, said in words
def test_the_timeline_says_a_review_once_in_team_words_and_confirmations_still_train(store: Store) -> None:
    from classifiers.train import feedback_examples
    from console import timeline

    r1, r2 = post(store, "r1"), post(store, "r2")
    ann = run_page("review", store, "ann")
    ann.button(key=key("failed_delivery")).click().run()
    ann.button(key="rv_confirm").click().run()  # r1: one field changed
    ann.button(key="rv_confirm").click().run()  # r2: confirmed as the model read it
    assert not ann.exception, ann.exception
    assert [(r["mention_id"], r["field"]) for r in rows(store, "old_value <> new_value")] == [(r1.id, "intent")]
    config = load_config(DEMO_CONFIG)
    for m, said in ((r1, f"ann reviewed post {r1.id}: intent product or account → failed delivery; "
                         "sentiment and complaint confirmed"),
                    (r2, f"ann reviewed post {r2.id}: intent, sentiment and complaint confirmed")):
        events = store.audit_trail(m.case_id)
        reviews = [e for e in events if e.action.startswith("label.")]
        assert len(reviews) == 1, [(e.action, e.details) for e in reviews]
        words = [w for _, w in timeline.lines(events, [], {}, config, lambda t: "now")]
        assert said in words, words
        assert not any("from True to True" in w or "_" in w for w in words if "reviewed" in w), words
    # doorstep train --with-feedback reads these rows: both posts count, with every field the agent saw
    examples = {e.text: e for e in feedback_examples(
        store.rows("select text, field, new_value from label_corrections order by id"), 3.0)}
    assert examples[r1.text].intent == INTENTS.index("failed_delivery")
    assert examples[r2.text].intent == INTENTS.index("where_is_my_order") and examples[r2.text].complaint == 1
