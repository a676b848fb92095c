"""Issue 17, fifth round: a word search asks SQLite's full-text index for the word's terms (``"parcel" OR
"parcels"``) instead of the prefix (``"parcel"*``), which made FTS5 merge every matching term's whole
posting list before taking the newest posts. The posts, so the cases and the "looked at the newest
posts only" answer, must be exactly the prefix query's: these tests pin them against the prefix query
itself, for words with no, one and many longer terms, capped and not, upper case, several words,
digits, short and non-ASCII words."""

from __future__ import annotations

import random

import pytest
from conftest import mention

from doorstep.models import Case
from doorstep.store import Store
from doorstep.store import inbox as store_inbox

WORDS = ["parcel", "parcels", "parcelforce", "parcel2", "par", "parked", "smashed", "smash", "über", "uberx",
         "late", "later", "lateness", "ord", "order", "ORD-2026-001291", "2026", "20261", "de", "delivery",
         "delivered", "deliver", "deliveries", "driver", "drivers", "rain", "tent", "tents", "Zebra"]

SEARCHES = ["parcel", "Parcel", "PARCELS", "parcelf", "par", "pa", "p", "smash", "smashed parcel", "parcel smash",
            "über", "uber", "late", "lat", "ORD-2026", "ORD-2026-001291", "2026", "202", "deliv", "de", "driv",
            "rain tent", "tent", "zebra", "nothing", "parcel über", "@parcel", "parcel!", "l8"]


def _fill(store: Store, posts: int = 240) -> list[int]:
    """Cases of 1-3 posts of random words; case ids in insertion order."""
    rng = random.Random(17)
    cases: list[int] = []
    for n in range(posts):
        if n % 2 == 0:
            cases.append(store.insert_case(Case(status="open", priority=50)))
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        store.set_mention_case(store.insert_mention(mention(str(n), text, minutes=n)), cases[-1])
    return cases


def _by_prefix(store: Store, text: str, limit: int) -> tuple[list[int], bool]:
    """What the search found before this round: the prefix query's newest ``limit`` posts' cases, capped?"""
    query = store.dialect.fts_query(text)
    hits = [r[0] for r in store.db.execute(store.dialect.fts_ids("mentions", ("text",), key="id"),
                                           [query, limit + 1]).fetchall()]
    cases = {r[0] for r in store.db.execute(
        f"select case_id from mentions where id in ({','.join('?' * len(hits[:limit])) or 'null'})",
        hits[:limit]).fetchall()}
    return sorted(cases), len(hits) > limit


@pytest.mark.parametrize("cap", [3, 20, 2000])
def test_a_word_search_finds_the_cases_the_prefix_query_found(store: Store, monkeypatch, cap: int) -> None:
    _fill(store)
    monkeypatch.setattr(store_inbox, "SEARCH_MATCH_LIMIT", cap)
    for terms_max in (30, 2):  # 2: "deliv", "par", "late" fall back to the prefix
        monkeypatch.setattr(store_inbox, "PREFIX_TERMS_MAX", terms_max, raising=False)
        for text in SEARCHES:
            store._search_memo.clear()
            cases, capped = _by_prefix(store, text, cap)
            found = store.search_cases(text)
            assert sorted(found) == cases, (text, cap, terms_max)
            assert store.search_is_capped(text) is capped, (text, cap, terms_max)
            store._search_memo.clear()  # asked alone too (its own query)
            assert store.search_is_capped(text) is capped, (text, cap, terms_max)


def test_posts_written_after_a_search_are_found_by_the_next_search(store: Store) -> None:
    """A term that is new to the index (``parcelbox``) is a term of the prefix from its first post on."""
    cases = _fill(store, 20)
    before = store.search_cases("parcel")
    case = store.insert_case(Case(status="open", priority=50))
    store.set_mention_case(store.insert_mention(mention("new", "my parcelbox is empty", minutes=500)), case)
    assert sorted(store.search_cases("parcel")) == sorted({*before, case}) and cases


def test_a_word_is_asked_as_its_terms_not_as_a_prefix_on_sqlite(store: Store) -> None:
    """What changed (SQLite): the match lists the word and its longer terms; a two-letter word, a
    non-ASCII word and a word with more than PREFIX_TERMS_MAX longer terms stay prefixes."""
    if store.dialect.postgres:
        pytest.skip("PostgreSQL asks its GIN index for the prefix, as before")
    _fill(store, 60)

    def match(text: str) -> str:
        sql, params = store._post_hits_sql(text, store.dialect.fts_query(text))
        if " match (" not in sql:
            return params[0]  # the prefix query, as before
        return store.db.execute(f"select {sql.split(' match (')[1].split(') order by')[0]}", params).fetchone()[0]

    assert match("smashed") == '"smashed"'
    assert match("Tent") in ('("tent" OR "tents")',)
    assert match("parcel") == '("parcel" OR "parcel2" OR "parcelforce" OR "parcels")'
    assert match("rain über") == '"rain" AND "über"*'
    assert match("de") == '"de"*'
