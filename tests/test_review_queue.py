"""The review queue page (console/review.py): unsure posts first, keyboard-shortcut buttons, and
corrections stored as the case page stores them (label_corrections + audit), ready for
``doorstep train --with-feedback``."""

from __future__ import annotations


import pytest
from streamlit.testing.v1 import AppTest

from console.auth import add_user
from console.review import INTENT_KEYS, review_queue, save_review
from doorstep.models import INTENTS, Labels, Mention, utcnow
from doorstep.store import Store
from tests.conftest import PAGE, console_store, run_page


def _labels(intent: str, p: float, needs_review: bool = False) -> Labels:
    rest = (1.0 - p) / (len(INTENTS) - 1)
    return Labels(sentiment="neutral", sentiment_scores={"negative": 0.2, "neutral": 0.6, "positive": 0.2},
                  complaint=False, complaint_score=0.2, intent=intent,
                  intent_scores={i: (p if i == intent else rest) for i in INTENTS}, urgency=0.1,
                  needs_review=needs_review, model="test")


@pytest.fixture
def store(db_url: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Store:
    s = console_store(db_url, request, monkeypatch, config=None)  # on SQLite and on PostgreSQL
    add_user(s, "ann", "correct horse battery", role="agent", name="Ann", rounds=4)
    now = utcnow()
    for ext, text, labels in (
        ("sure", "thanks, the parcel came today, great service", _labels("praise", 0.95)),
        ("unsure", "driver left it on the step again, soaked", _labels("product_or_account", 0.62)),
        ("flagged", "ordered with Prime on Wednesday and it's still not here", _labels("product_or_account", 0.85, True)),
    ):
        s.insert_mention(Mention(channel="x", external_id=ext, text=text, created_at=now, author_handle="cust",
                                 labels=labels))
    s.insert_mention(Mention(channel="x", external_id="ours", text="our reply", created_at=now, outbound=True,
                             labels=_labels("other", 0.3, True)))
    return s


def test_queue_puts_needs_review_first_then_least_confident(store: Store) -> None:
    queue = review_queue(store)
    assert [m.external_id for m in queue] == ["flagged", "unsure", "sure"]  # our own replies are never queued


def test_a_reviewed_post_is_stored_as_corrections_and_leaves_the_queue(store: Store) -> None:
    flagged = review_queue(store)[0]
    changed = save_review(store, flagged, "late_delivery", "negative", True, "ann")
    assert changed == 3
    rows = store.rows("select field, old_value, new_value, corrected_by, text from label_corrections order by id")
    assert [(r["field"], r["old_value"], r["new_value"]) for r in rows] == [
        ("intent", "product_or_account", "late_delivery"), ("sentiment", "neutral", "negative"),
        ("complaint", "False", "True")]
    assert {r["corrected_by"] for r in rows} == {"ann"} and rows[0]["text"] == flagged.text
    after = store.get_mention(flagged.id)  # type: ignore[arg-type]
    assert after.labels.intent == "late_delivery" and not after.labels.needs_review  # type: ignore[union-attr]
    assert [m.external_id for m in review_queue(store)] == ["unsure", "sure"]
    assert any(e.action == "label.review" and e.actor == "ann" for e in store.audit_trail())


def test_review_page_sets_labels_with_the_shortcut_buttons_and_confirms(store: Store) -> None:
    at = run_page("review", store)
    assert not at.exception
    assert [t.value for t in at.title] == ["Review queue"]
    assert "still not here" in "\n".join(str(t.value) for t in at.text)  # st.text: shown literally
    keys = {b.key for b in at.button}
    assert {f"rv_intent_{k}" for k in INTENT_KEYS} | {"rv_sent_s", "rv_sent_n", "rv_sent_p", "rv_complaint",
                                                      "rv_confirm"} <= keys
    # "2" is late_delivery, "s" negative, "c" toggles complaint; then Enter (Confirm).
    at.button(key=f"rv_intent_{INTENT_KEYS[INTENTS.index('late_delivery')]}").click().run()
    at.button(key="rv_sent_s").click().run()
    at.button(key="rv_complaint").click().run()
    at.button(key="rv_confirm").click().run()
    assert not at.exception
    rows = store.rows("select field, new_value from label_corrections order by id")
    assert {(r["field"], r["new_value"]) for r in rows} == {("intent", "late_delivery"), ("sentiment", "negative"),
                                                          ("complaint", "True")}
    # The next post is shown: the least confident of the rest.
    assert "driver left it on the step" in "\n".join(str(t.value) for t in at.text)


def test_review_page_needs_a_logged_in_user(store: Store) -> None:
    at = AppTest.from_string(PAGE.format(module="review"), default_timeout=30).run()
    assert any("Please log in" in e.value for e in at.error)
    assert store.rows("select count(*) as n from label_corrections")[0]["n"] == 0
