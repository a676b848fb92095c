"""The review queue says in words which intent and sentiment are chosen, and lists the intents in key order.

Why (keyboard and screen-reader audit, 2026-12-07): the chosen intent and sentiment were told by the button's
colour alone, so a screen reader heard no selected state; and the intent buttons were placed column by column
(``cols[i % 5]``), so Tab and reading order went 1, 6, 2, 7, 3, 8 instead of 1, 2, 3, ...
"""

from __future__ import annotations

from console.review import INTENT_KEYS, SENTIMENT_KEYS
from doorstep.models import INTENTS
from doorstep.store import Store
from tests.conftest import run_page
from tests.test_review_queue import store  # noqa: F401 - the review queue's fixture: three posts, ann an agent


def _label(at: object, key: str) -> str:
    return str(at.button(key=key).label)  # type: ignore[attr-defined]


def test_intent_buttons_read_in_key_order(store: Store) -> None:  # noqa: F811
    at = run_page("review", store)
    assert not at.exception
    intent_keys = [b.key for b in at.button if str(b.key).startswith("rv_intent_")]
    assert intent_keys == [f"rv_intent_{k}" for k in INTENT_KEYS]


def test_the_chosen_intent_and_sentiment_are_said_in_words(store: Store) -> None:  # noqa: F811
    at = run_page("review", store)
    # The first post: the model read product_or_account, neutral, no complaint.
    chosen_intent = f"rv_intent_{INTENT_KEYS[INTENTS.index('product_or_account')]}"
    assert "(chosen)" in _label(at, chosen_intent)
    assert "(chosen)" in _label(at, f"rv_sent_{SENTIMENT_KEYS['neutral']}")
    others = [b for b in at.button if str(b.key).startswith(("rv_intent_", "rv_sent_"))
              and b.key not in (chosen_intent, f"rv_sent_{SENTIMENT_KEYS['neutral']}")]
    assert others and not any("chosen" in str(b.label) for b in others)
    captions = "\n".join(str(c.value).replace("\\", "") for c in at.caption)  # markdown escapes dropped
    assert "Chosen: product or account · neutral · not a complaint" in captions
    # A key pressed (its button clicked) moves the words with it.
    at.button(key=f"rv_sent_{SENTIMENT_KEYS['negative']}").click().run()
    assert "(chosen)" in _label(at, f"rv_sent_{SENTIMENT_KEYS['negative']}")
    assert "(chosen)" not in _label(at, f"rv_sent_{SENTIMENT_KEYS['neutral']}")
    at.button(key="rv_complaint").click().run()
    assert "Chosen: product or account · negative · complaint" in "\n".join(
        str(c.value).replace("\\", "") for c in at.caption)

