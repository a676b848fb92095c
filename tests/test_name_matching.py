"""Brands and couriers are named by whole words and whole handles, not by letters inside other words.

Real-posts audit, finding 1: with the natural ``keywords = ["ups"]``, 8 of 21 UPS cases on real care tweets
matched only "ups" inside "upset", "cups" and "startups"; each pre-selected "Escalate to: courier (UPS)" and
counted in the report's courier complaints. A post to @americanairlnes was matched to @AmericanAir."""

from __future__ import annotations

import pytest

from doorstep.config import parse_config
from doorstep.pipeline import match_names

CONFIG = parse_config({
    "brands": [{"name": "American Air", "handles": {"x": "AmericanAir"}, "keywords": ["american airlines"]},
               {"name": "Fettle", "handles": {"x": "FettleCare"}, "keywords": ["fettle"]}],
    "couriers": [{"name": "UPS", "handles": {"x": "UPSHelp"}, "keywords": ["ups"]},
                 {"name": "Royal Mail", "handles": {"x": "RoyalMail"}, "keywords": ["royal mail"]}],
})


@pytest.mark.parametrize("text", [
    "My only Halloween song won't play and I'm starting to get upset",
    "two cups arrived broken",
    "great for startups",
    "@americanairlnes thanks for nothing",
    "@UPSHelpdesk is a different account",
    "email me at care@upshelp.example",
])
def test_letters_inside_another_word_or_handle_name_nobody(text: str) -> None:
    assert match_names(text, None, CONFIG) == []


@pytest.mark.parametrize("text, names", [
    ("UPS lost my parcel", ["UPS"]),
    ("the ups driver left it in the rain", ["UPS"]),
    ("@UPSHelp where is it?", ["UPS"]),
    ("@UPSHelp@mastodon.social my parcel never arrived", ["UPS"]),  # a fediverse handle with its server
    ("hey @upshelp, @FettleCare: my order!", ["Fettle", "UPS"]),
    ("Royal Mail's van never came", ["Royal Mail"]),
    ("flew American Airlines, lost bag (ups!)", ["American Air", "UPS"]),
    ("Fettle.", ["Fettle"]),
    ("back in stock any time soon? #FettleOutdoor", ["Fettle"]),  # a hashtag runs on past the keyword
])
def test_whole_words_and_handles_still_name_them(text: str, names: list[str]) -> None:
    assert sorted(match_names(text, None, CONFIG)) == names
