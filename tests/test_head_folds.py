"""The intent head's out-of-fold figure on the labelled real tweets does not see a tweet's own correction.

Real-posts audit, finding 3: a team that reviewed posts which are also among the 220 guide-labelled tweets
(a shop that imports twcs data) saw ``train --with-feedback --head-only`` report 0.659 out-of-fold accuracy
where the same model read 0.636 without: each correction (weight 3) was fitted in every fold, including the
fold that held its own tweet out. A training row with a labelled tweet's text is held out with it."""

from __future__ import annotations

from classifiers.head_fit import customer_folds, row_folds


def test_a_correction_of_a_labelled_tweet_is_held_out_in_that_tweets_fold() -> None:
    rows = [{"text": f"tweet {i}", "source": "twcs-labelled", "group": f"author{i}"} for i in range(10)]
    rows += [{"text": " Tweet 3 ", "source": "feedback", "group": ""},   # the team's correction of tweet 3
             {"text": "tweet 3", "source": "delivery", "group": ""},     # any other source with its text
             {"text": "another post", "source": "feedback", "group": ""}]
    folds = customer_folds(r["group"] for r in rows if r["source"] == "twcs-labelled")
    fold = row_folds(rows)
    assert list(fold[:10]) == [folds[f"author{i}"] for i in range(10)]
    assert fold[10] == fold[3] and fold[11] == fold[3]
    assert fold[12] == -1  # trains in every fold
