"""The "written in X" priority factor outlives the moment the post arrived (audit of stop 39, finding 2).

``Labels.other_language`` lived in memory only: the case lost "written in Chinese: labels are a guess, read it"
(+20) the next time it was scored (a follow-up post in the thread, an export read back in), because labels read
back from the row had no language. It is stored with the labels now (``mentions.read_language``), and once a
person corrected the post's labels they are no guess: the factor goes.
"""

from __future__ import annotations

from datetime import timedelta

from doorstep.config import parse_config
from doorstep.models import Labels, Mention
from doorstep.pipeline import Pipeline
from doorstep.store import Store

from tests.conftest import T0

CONFIG = parse_config({"brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}}]})


class ReadsChinese:
    """A classifier that, like the shipped one, cannot read Chinese: a guess, flagged, with the language seen."""

    name = "reads-chinese"

    def classify(self, texts):  # noqa: ANN001, ANN201
        return [Labels(sentiment="neutral", sentiment_scores={"neutral": 0.5}, complaint=False, complaint_score=0.2,
                       intent="other", intent_scores={"other": 0.5}, urgency=0.1, needs_review=True, model="t",
                       other_language="zh") for _ in texts]


def _factor(store: Store, case_id: int) -> list[str]:
    return [r for r in store.get_case(case_id).priority_reasons if "written in Chinese" in r]  # type: ignore[union-attr]


def test_a_follow_up_in_the_thread_keeps_the_language_factor(store: Store) -> None:
    pipeline = Pipeline(store, CONFIG, ReadsChinese())
    pipeline.ingest([Mention(channel="x", external_id="z1", text="@LarkspurHelp 包裹丢了", created_at=T0,
                             author_handle="wei", thread_id="z1")])
    case_id = store.mention_by_external_id("x", "z1").case_id  # type: ignore[union-attr]
    assert _factor(store, case_id)
    assert store.mention_by_external_id("x", "z1").labels.other_language == "zh"  # type: ignore[union-attr]
    pipeline.ingest([Mention(channel="x", external_id="z2", text="@LarkspurHelp 还没有消息", created_at=T0 + timedelta(hours=1),
                             author_handle="wei", thread_id="z1", in_reply_to="z1")])
    assert store.mention_by_external_id("x", "z2").case_id == case_id  # type: ignore[union-attr]
    assert _factor(store, case_id), store.get_case(case_id).priority_reasons  # type: ignore[union-attr]


def test_a_person_who_corrected_the_labels_took_the_guess_away(store: Store) -> None:
    from doorstep.corrections import correct_labels

    Pipeline(store, CONFIG, ReadsChinese()).ingest([Mention(channel="x", external_id="z1", text="@LarkspurHelp 包裹丢了",
                                                            created_at=T0, author_handle="wei")])
    post = store.mention_by_external_id("x", "z1")
    assert _factor(store, post.case_id)  # type: ignore[union-attr, arg-type]
    correct_labels(store, CONFIG, post.id, "ann", intent="lost_or_missing", complaint=True)  # type: ignore[union-attr, arg-type]
    reasons = store.get_case(post.case_id).priority_reasons  # type: ignore[union-attr, arg-type]
    assert not _factor(store, post.case_id) and "complaint" in " ".join(reasons), reasons  # type: ignore[union-attr, arg-type]
