"""A customer's name in Chinese, Japanese or Korean is masked whether or not a space sets its parts apart, and a
one-letter name is not masked inside other words (audit of stop 39, finding 10).

A name stored as "王 芳" left "我是王芳" quoted as written, and "김민수" missed "김 민수입니다": Han and kana are written
without spaces and Hangul names are typed either way, but the name was matched only as stored. A one-letter name
("安", "中", "金") masked that letter in every word that has it ("包裹[name]全到达", "[name]曜日")."""

from __future__ import annotations

import pytest

from doorstep.reports import Redactor

from test_metrics import fixture_config


def _masked(text: str, name: str) -> str:
    return Redactor(fixture_config()).text(text, names=[name]) or ""


@pytest.mark.parametrize("name, text, expected", [
    # Stored with a space, written without one (Chinese, Japanese with an ideographic space).
    ("王 芳", "我是王芳，包裹没到", "我是[name]，包裹没到"),
    ("山田　太郎", "山田太郎です。荷物が届きません", "[name]です。荷物が届きません"),
    # Stored without a space, written with one (Korean family and given name, Chinese).
    ("김민수", "김 민수입니다", "[name]입니다"),
    ("김민수", "김민수님 택배가 안 왔어요", "[name]님 택배가 안 왔어요"),
    ("王芳", "我是王 芳，包裹没到", "我是[name]，包裹没到"),
    # Stored and written alike, still masked.
    ("김 민수", "김 민수입니다", "[name]입니다"),
    ("王芳", "我是王芳，包裹没到", "我是[name]，包裹没到"),
])
def test_a_cjk_name_is_masked_with_or_without_the_space_between_its_parts(name: str, text: str, expected: str) -> None:
    assert _masked(text, name) == expected


@pytest.mark.parametrize("name, text", [
    ("安", "包裹安全到达"),
    ("中", "中国的包裹中心"),
    ("金", "金曜日に届くはずでした"),
    ("김", "김치가 상했어요"),
    ("王 ", "王府井的包裹"),
])
def test_a_one_letter_name_is_not_masked_inside_other_words(name: str, text: str) -> None:
    assert _masked(text, name) == text


@pytest.mark.parametrize("name, text, expected", [
    ("安", "安，你好。包裹安全到达", "[name]，你好。包裹安全到达"),
    ("金", "— 金", "— [name]"),
])
def test_a_one_letter_name_is_masked_where_it_stands_alone(name: str, text: str, expected: str) -> None:
    assert _masked(text, name) == expected


@pytest.mark.parametrize("name, text, expected", [
    ("Ann", "Ann here: the Annual sale parcel went to Annie", "[name] here: the Annual sale parcel went to Annie"),
    ("Ann Lee", "Ann  Lee wrote; Annual leave", "[name] wrote; Annual leave"),
    ("John Smith", "私はJohnです", "私は[name]です"),
])
def test_latin_names_keep_their_word_boundaries(name: str, text: str, expected: str) -> None:
    assert _masked(text, name) == expected


@pytest.mark.parametrize("name, text, expected", [
    # Left open last stop: a Korean name stored without a space did not mask the given name written alone.
    ("김민수", "민수입니다. 택배가 안 왔어요", "[name]입니다. 택배가 안 왔어요"),
    ("남궁민수", "민수 씨 택배가 안 왔어요", "[name] 씨 택배가 안 왔어요"),
    ("王小明", "小明的包裹还没到", "[name]的包裹还没到"),
    ("欧阳小明", "我是小明，包裹没到", "我是[name]，包裹没到"),
])
def test_the_given_name_of_a_name_stored_without_a_space_is_masked_alone(name: str, text: str, expected: str) -> None:
    """Korean and Chinese names are most often a one-letter family name and a two-letter given name ("김민수",
    "王小明"; a few family names have two: "남궁", "欧阳"): the given name is a part of its own."""
    assert _masked(text, name) == expected
