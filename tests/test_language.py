"""Non-English posts go to human review (issue 18, item 9): offline language identification."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from classifiers.language import detect, looks_non_english

NON_ENGLISH = {
    "es": "Mi paquete nunca llegó, pésimo servicio",
    "fr": "Où est mon colis ? Toujours rien",
    "de": "Wo ist mein Paket? Seit einer Woche nichts",
    "it": "Il mio pacco non è mai arrivato",
    "pt": "Meu pedido ainda não chegou",
    "nl": "Mijn pakket is nog steeds niet bezorgd",
    "pl": "Gdzie jest moja paczka?",
    "ru": "Где моя посылка?",
    "zh": "我的包裹还没到",
    "ja": "荷物がまだ届きません",
}
ENGLISH = [
    "parcel lost again",
    "where's my order?",
    "DM sent. Any update?",
    "still nothing",
    "Evri lost my parcel AGAIN",
    "café was lovely, parcel arrived",
    "hello?? Still no parcel and no reply to my DM.",
    "Ordered a jute rug on Monday, no sign of it yet",
    "ok",
]


@pytest.mark.parametrize("lang", sorted(NON_ENGLISH))
def test_short_posts_in_other_languages_are_identified_and_flagged(lang: str) -> None:
    text = NON_ENGLISH[lang]
    assert detect(text)[0] == lang
    assert looks_non_english(text)


@pytest.mark.parametrize("text", ENGLISH)
def test_short_english_posts_are_not_flagged(text: str) -> None:
    assert not looks_non_english(text)


@pytest.mark.parametrize("model", ["baseline", "onnx"])
def test_the_spanish_complaint_from_the_issue_goes_to_review(model: str, tmp_path) -> None:
    from commands.cli import cli

    line = json.dumps({"id": 1, "text": "Mi paquete nunca llegó, pésimo servicio"}, ensure_ascii=False)
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "x.db"), "classify", "--model", model], input=line + "\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[-1])["needs_review"] is True


def test_no_post_of_the_english_demo_shop_is_taken_for_another_language() -> None:
    from doorstep.config import load_config
    from commands.demo import DEFAULT_CONFIG, REFERENCE_NOW, _Generator, _mentions
    from classifiers.baseline import clean

    gen = _Generator(load_config(DEFAULT_CONFIG), 7, REFERENCE_NOW)
    gen.make_people(200)
    gen.make_orders(600)
    posts = [clean(m.text) for m in _mentions(gen, 400)]
    flagged = [p for p in posts if looks_non_english(p)]
    assert flagged == []
