"""The case page's split and merge actions and its honest link wording, driven through AppTest."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from console.auth import add_user
from doorstep.models import Customer, Order
from doorstep.pipeline import Pipeline
from doorstep.store import Store
from tests.conftest import T0, KeywordClassifier, console_store, mention, run_page, texts


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, config) -> Store:
    store = console_store(tmp_path / "console.db", request, monkeypatch)
    store.upsert_customers([Customer(id="c-hk", name="Harriet King", handles={"x": "hking12"})])
    store.upsert_orders([
        Order(number="ORD-2026-000200", customer_id="c-hk", placed_at=T0 - timedelta(days=4), brand="Fettle"),
        Order(number="ORD-2026-000300", customer_id="c-hk", placed_at=T0 - timedelta(days=3), brand="Fettle"),
    ])
    Pipeline(store, config, KeywordClassifier()).ingest([
        mention("1", "@FettleCare my boots are lost", author_handle="hking12"),
        mention("2", "@FettleCare where is my head torch, so late", minutes=60, author_handle="hking12"),
    ])
    add_user(store, "ann", "correct horse battery", role="agent", name="Ann", rounds=4)
    return store


def _page(store: Store, case_id: int) -> AppTest:
    at = run_page("case_view", store, case_id=case_id)
    assert not at.exception, at.exception
    return at


_texts = texts


def test_a_guessed_order_reads_as_a_guess_on_the_case_page(db: Store):
    case_id = db.mention_by_external_id("x", "1").case_id  # type: ignore[union-attr]
    shown = _texts(_page(db, case_id))  # type: ignore[arg-type]
    assert "possible order ORD-2026-000300 (40 %) — not confirmed" in shown
    assert "· confirmed" not in shown


def test_an_agent_splits_a_post_out_and_merges_it_back_on_the_case_page(db: Store):
    case_id = db.mention_by_external_id("x", "1").case_id  # type: ignore[union-attr]
    torch = db.mention_by_external_id("x", "2")
    assert torch.case_id == case_id  # type: ignore[union-attr]
    at = _page(db, case_id)  # type: ignore[arg-type]
    [split_box] = [s for s in at.selectbox if s.key.startswith(f"split_sel_{case_id}_")]
    split_box.select(torch.id)  # type: ignore[union-attr]
    at.button(key=f"FormSubmitter:split_{case_id}-Split into a new case").click().run()
    assert not at.exception, at.exception
    new_id = db.get_mention(torch.id).case_id  # type: ignore[arg-type, union-attr]
    assert new_id != case_id
    assert ("ann", "case.split") in [(e.actor, e.action) for e in db.audit_trail(case_id)]
    # On the new case, the customer's first case is offered for merging.
    at = _page(db, new_id)  # type: ignore[arg-type]
    [merge_box] = [s for s in at.selectbox if s.key.startswith(f"merge_sel_{new_id}_")]
    merge_box.select(case_id)
    at.button(key=f"FormSubmitter:merge_{new_id}-Merge that case into this one").click().run()
    assert not at.exception, at.exception
    assert db.get_case(case_id).merged_into == new_id  # type: ignore[arg-type, union-attr]
    assert "merged into case #" in _texts(_page(db, case_id))  # type: ignore[arg-type]


def test_a_split_on_a_case_changed_meanwhile_is_refused_and_moves_nothing(db: Store):
    case_id = db.mention_by_external_id("x", "1").case_id  # type: ignore[union-attr]
    torch = db.mention_by_external_id("x", "2")
    at = _page(db, case_id)  # type: ignore[arg-type]
    case = db.get_case(case_id)  # type: ignore[arg-type]
    db.update_case(case_id, case.version, "bob", assignee="bob")  # type: ignore[arg-type, union-attr]
    [split_box] = [s for s in at.selectbox if s.key.startswith(f"split_sel_{case_id}_")]
    split_box.select(torch.id)  # type: ignore[union-attr]
    at.button(key=f"FormSubmitter:split_{case_id}-Split into a new case").click().run()
    assert "changed by bob" in _texts(at)
    assert db.get_mention(torch.id).case_id == case_id  # type: ignore[arg-type, union-attr]
