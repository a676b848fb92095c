"""The encoder experiments' harness (bench/encoder_experiment.py): what it scores a candidate on must be what the
candidate never trained on."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from doorstep.models import INTENTS, Labels

from conftest import require_shared

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def test_keyword_hits_among_the_220_are_scored_by_the_fold_model_that_never_saw_them(monkeypatch) -> None:
    """`compare --guide-folds` scores a candidate whose encoder trained on the 220 by one model per customer fold.
    The keyword-hit set (real care complaints, handles removed) holds guide tweets too: each must be read by the
    model of its own fold, as written to nobody; the validation and test tweets in it keep the candidate's label."""
    shared = require_shared("data/twcs-labelled/twcs_labelled.jsonl").parents[2]
    import encoder_experiment as ex
    from classifiers.head_fit import customer_folds, labelled_tweets

    monkeypatch.setattr(ex, "SHARED", shared)
    guide = labelled_tweets(shared)
    fold_of = {str(r["tweet_id"]): k for r, k in
               zip(guide, (customer_folds(str(g["author_id"]) for g in guide)[str(r["author_id"])] for r in guide))}
    complaints = [r for r in guide if r.get("complaint")]
    rows = ([{"text": f"guide {r['tweet_id']}", "complaint": 1, "addressed": False, "tweet_id": str(r["tweet_id"])}
             for r in complaints] + [{"text": "a validation tweet", "complaint": 1, "addressed": False}])
    seen: list[tuple[str, str, bool]] = []

    class FoldModel:
        reads_addressed = True
        name = "fold"

        def __init__(self, model_dir: Path) -> None:
            self.model_dir = str(model_dir)

        def classify(self, texts, addressed):
            seen.extend((self.model_dir, t, a) for t, a in zip(texts, addressed))
            return [Labels(sentiment="negative", sentiment_scores={"negative": 1.0, "neutral": 0.0, "positive": 0.0},
                           complaint=self.model_dir == "fold-0", complaint_score=float(self.model_dir == "fold-0"),
                           intent="other", intent_scores={i: float(i == "other") for i in INTENTS}, urgency=0.0,
                           model="fold") for _ in texts]

    monkeypatch.setattr("classifiers.onnx_backend.OnnxClassifier", FoldModel)
    found = ex.guide_fold_keyword_hits([Path(f"fold-{k}") for k in range(5)], rows)
    assert sorted(found) == list(range(len(complaints)))  # every guide row, never the validation one
    for model_dir, text, addressed in seen:
        assert model_dir == f"fold-{fold_of[text.split()[1]]}" and addressed is False
    assert {found[i] for i, r in enumerate(complaints) if fold_of[str(r["tweet_id"])] == 0} == {1}
    assert {found[i] for i, r in enumerate(complaints) if fold_of[str(r["tweet_id"])] != 0} == {0}


def test_twcs_and_airline_tweets_naming_a_brand_count_as_written_to_the_shop_and_customer_numbers_do_not() -> None:
    """Eighteenth round: the harness marks a care tweet addressed when it names a brand's handle, as the pipeline marks
    a post naming one of the shop's handles; twcs anonymises customers' handles to numbers, which name no brand."""
    import encoder_experiment as ex

    assert ex.names_a_brand("@AmazonHelp where is my parcel") and ex.names_a_brand("thanks @united for nothing")
    assert not ex.names_a_brand("@115712 we are sorry to hear that") and not ex.names_a_brand("no handle at all")
    assert ex.names_a_brand("@115712 @Tesco_1 still nothing")
