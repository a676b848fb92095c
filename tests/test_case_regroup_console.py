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


def _page(store: Store, case_id: int, regroup: bool = False) -> AppTest:
    """The case page; ``regroup``: with "Split or merge" opened (its forms are drawn only while open)."""
    at = run_page("case_view", store, case_id=case_id)
    assert not at.exception, at.exception
    if regroup:
        at.session_state[f"regroup_open_{case_id}"] = True
        at.run()
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
    at = _page(db, case_id, regroup=True)  # type: ignore[arg-type]
    [split_box] = [s for s in at.selectbox if s.key.startswith(f"split_sel_{case_id}_")]
    split_box.select(torch.id)  # type: ignore[union-attr]
    at.button(key=f"FormSubmitter:split_{case_id}-Split into a new case").click().run()
    assert not at.exception, at.exception
    new_id = db.get_mention(torch.id).case_id  # type: ignore[arg-type, union-attr]
    assert new_id != case_id
    assert ("ann", "case.split") in [(e.actor, e.action) for e in db.audit_trail(case_id)]
    # On the new case, the customer's first case is offered for merging.
    at = _page(db, new_id, regroup=True)  # type: ignore[arg-type]
    [merge_box] = [s for s in at.selectbox if s.key.startswith(f"merge_sel_{new_id}_")]
    merge_box.select(case_id)
    at.button(key=f"FormSubmitter:merge_{new_id}-Merge that case into this one").click().run()
    assert not at.exception, at.exception
    assert db.get_case(case_id).merged_into == new_id  # type: ignore[arg-type, union-attr]
    assert "merged into case #" in _texts(_page(db, case_id))  # type: ignore[arg-type]
    # The timeline says the split and the merge, not every field they worked out again (audit of last stop's
    # changes, F5: "jo set mention count to 2, opened at to 2026-..., priority reasons to [...]").
    kept = _texts(_page(db, new_id))  # type: ignore[arg-type]
    assert f"ann merged case #{case_id} into this case" in kept, kept
    for dumped in ("mention count to", "priority reasons to", "last activity at to", "opened at to"):
        assert dumped not in kept and dumped not in _texts(_page(db, case_id)), dumped  # type: ignore[arg-type]


def test_a_split_on_a_case_changed_meanwhile_is_refused_and_moves_nothing(db: Store):
    case_id = db.mention_by_external_id("x", "1").case_id  # type: ignore[union-attr]
    torch = db.mention_by_external_id("x", "2")
    at = _page(db, case_id, regroup=True)  # type: ignore[arg-type]
    case = db.get_case(case_id)  # type: ignore[arg-type]
    db.update_case(case_id, case.version, "bob", assignee="bob")  # type: ignore[arg-type, union-attr]
    [split_box] = [s for s in at.selectbox if s.key.startswith(f"split_sel_{case_id}_")]
    split_box.select(torch.id)  # type: ignore[union-attr]
    at.button(key=f"FormSubmitter:split_{case_id}-Split into a new case").click().run()
    assert "changed by bob" in _texts(at)
    assert db.get_mention(torch.id).case_id == case_id  # type: ignore[arg-type, union-attr]


# ------------------------------------------------------------------ issue 17, sixth round: what a case opens with
def _keys(at: AppTest) -> set[str]:
    return {w.key for kind in ("selectbox", "text_input", "checkbox") for w in getattr(at, kind) if w.key}


def test_closed_sections_are_drawn_when_opened_and_work_as_before(db: Store):
    """"Correct labels", "Change the linked order" and "Split or merge" were drawn (forms, select boxes)
    while closed, on every case opened; now each is drawn when the agent opens it, and stays open."""
    case_id = db.mention_by_external_id("x", "1").case_id  # type: ignore[union-attr]
    posts = [m for m in db.mentions_for_case(case_id) if m.labels is not None]  # type: ignore[arg-type]
    assert posts
    at = _page(db, case_id)  # type: ignore[arg-type]
    labels = [e.label for e in at.expander]
    assert labels.count("Correct labels") == len(posts)
    assert "Change the linked order" in labels and "Split or merge" in labels
    keys = _keys(at)
    assert not [k for k in keys if k.startswith(("lab_int_", "lab_sent_", "relink_number_", "split_sel_", "merge_sel_"))]
    for m in posts:
        at.session_state[f"labels_open_{m.id}"] = True
    at.session_state[f"relink_open_{case_id}"] = True
    at.session_state[f"regroup_open_{case_id}"] = True
    at.run()
    assert not at.exception, at.exception
    keys = _keys(at)
    assert {f"lab_int_{m.id}" for m in posts} | {f"relink_number_{case_id}"} <= keys
    assert any(k.startswith(f"split_sel_{case_id}_") for k in keys)
    # opened, it works: a label correction is saved, and the section is still open afterwards
    m = posts[0]
    at.selectbox(key=f"lab_sent_{m.id}").select("negative" if m.labels.sentiment != "negative" else "positive")  # type: ignore[union-attr]
    at.button(key=f"FormSubmitter:labels_{m.id}-Save correction").click().run()
    assert not at.exception, at.exception
    assert db.db.execute("select count(*) from label_corrections where mention_id = ? and old_value <> new_value", [m.id]).fetchone()[0] == 1
    assert f"lab_int_{m.id}" in _keys(at)
    assert "correction(s) saved for retraining" in _texts(at)


def test_the_orders_items_are_a_static_table_shown_literally(db: Store):
    """The order's few items were a data grid (a heavy component to mount on every case opened): now a
    static table, every cell escaped (``st.table`` reads Markdown), and no grid on the case page."""
    from console.widgets import escape_md

    case_id = db.mention_by_external_id("x", "1").case_id  # type: ignore[union-attr]
    at = _page(db, case_id)  # type: ignore[arg-type]
    assert not at.dataframe and not at.table  # an order without items says so instead of an empty grid
    assert "No items listed on the order." in _texts(at)
    name = "[click me](http://evil.example) **boots**"
    db.upsert_orders([Order(number="ORD-2026-000300", customer_id="c-hk", placed_at=T0 - timedelta(days=3),
                            brand="Fettle", items=[{"name": name, "quantity": 2, "price": "59.50"}])])
    at = _page(db, case_id)  # type: ignore[arg-type]
    assert not at.dataframe
    [table] = at.table
    shown = table.value
    assert list(shown.columns) == ["item", "qty", "price"]
    assert list(shown.iloc[0]) == [escape_md(name), "2", escape_md("59.50")]


def _merged_pair(db: Store, config) -> tuple[int, int]:  # noqa: ANN001
    """Post 2 split out of the customer's case, then that case merged into the new one: (merged, kept)."""
    from doorstep.regroup import merge_cases, split_post

    case_id = db.mention_by_external_id("x", "1").case_id  # type: ignore[union-attr]
    torch = db.mention_by_external_id("x", "2")
    case = db.get_case(case_id)  # type: ignore[arg-type]
    new = split_post(db, config, case_id, torch.id, case.version, "ann")  # type: ignore[arg-type, union-attr]
    merge_cases(db, config, new.id, new.version, case_id, db.get_case(case_id).version, "ann")  # type: ignore[arg-type, union-attr]
    return case_id, new.id  # type: ignore[return-value]


def test_a_merged_case_refuses_every_change_and_names_the_case_it_went_into(db: Store, config) -> None:  # noqa: ANN001
    """Audit (two agents) finding 1: assign, resolve and reopen all went through on a merged case."""
    from doorstep.case_merge import hold, update_case_merging
    from doorstep.store import StaleCaseError
    from responders.outbox import ReplyRejected, queue_reply

    merged, kept = _merged_pair(db, config)
    before = db.get_case(merged)
    for change in ({"assignee": "sam"}, {"status": "open"}, {"status": "resolved"}):
        with pytest.raises(StaleCaseError, match=f"case {merged} was merged into case #{kept}"):
            db.update_case(merged, before.version, "sam", **change)  # type: ignore[union-attr]
        with pytest.raises(StaleCaseError, match=f"merged into case #{kept}"):
            update_case_merging(db, hold(db, before), "sam", **change)  # type: ignore[arg-type]
    after = db.get_case(merged)
    assert (after.status, after.assignee, after.version) == (before.status, before.assignee, before.version)  # type: ignore[union-attr]
    # A reply there is refused too, naming where to answer (no "send anyway": nothing is left to answer).
    with pytest.raises(ReplyRejected, match=f"merged into case #{kept}: answer on case #{kept}"):
        queue_reply(db, config, merged, "@hking12 sorry, looking now", "sam")
    with pytest.raises(ReplyRejected, match=f"answer on case #{kept}"):
        queue_reply(db, config, merged, "@hking12 sorry, looking now", "sam", force=True)


def test_the_page_of_a_merged_case_links_to_where_it_went_and_offers_no_actions(db: Store, config) -> None:  # noqa: ANN001
    merged, kept = _merged_pair(db, config)
    at = _page(db, merged)
    assert f"merged into case #{kept}" in _texts(at)
    labels = [b.label for b in at.button]
    assert f"Open case #{kept}" in labels
    assert set(labels) <= {f"Open case #{kept}", "Previous", "Next"}, labels  # moving between cases only
    assert not at.text_area and not at.selectbox and not at.radio


def test_the_post_being_answered_split_off_by_a_colleague_is_said_not_switched_silently(db: Store, config) -> None:  # noqa: ANN001
    """Agents audit, left open last round: ann chose to answer the boots post; bob split it off into a
    new case; "In reply to" quietly showed the torch post instead, and the refusal read "post 969 is
    not a customer post of case 538", naming neither the new case nor who moved it."""
    from doorstep.regroup import split_post
    from responders.outbox import ReplyRejected, queue_reply

    case_id = db.mention_by_external_id("x", "1").case_id  # type: ignore[union-attr]
    boots = db.mention_by_external_id("x", "1")
    at = _page(db, case_id)  # type: ignore[arg-type]
    at.selectbox(key=f"reply_parent_{case_id}").select(boots.id).run()  # type: ignore[union-attr]
    at.text_area(key=f"draft_{case_id}").input("Sorry about your boots, we are on it.")
    moved = split_post(db, config, case_id, boots.id, db.get_case(case_id).version, "bob")  # type: ignore[arg-type, union-attr]
    at.run()
    assert not at.exception, at.exception
    shown = " ".join(w.value for w in at.warning).replace("\\", "")
    assert f"bob moved it to case #{moved.id}" in shown, shown
    with pytest.raises(ReplyRejected, match=f"bob moved post {boots.id} to case #{moved.id}"):  # type: ignore[union-attr]
        queue_reply(db, config, case_id, "Sorry about your boots", "ann", parent_id=boots.id)  # type: ignore[arg-type, union-attr]


def test_an_escalation_and_a_cli_reply_on_a_merged_case_name_the_case_it_went_into(db: Store, config,  # noqa: ANN001
                                                                                   tmp_path: Path) -> None:
    """README audit 1 and 3: `doorstep escalate` on a merged case queued Slack and e-mail escalations, exited 0
    and logged "kept changing"; `doorstep reply` there said "resolved ... add --force" instead of naming the
    case it was merged into."""
    import os

    from click.testing import CliRunner

    from commands.cli import cli
    from responders.escalation import EscalationRejected, escalate

    merged, kept = _merged_pair(db, config)
    with pytest.raises(EscalationRejected, match=f"case {merged} was merged into case #{kept}: escalate case #{kept}"):
        escalate(db, config, merged, "email:lead@fettle.example", "x", "ann")
    assert not [m for m in db.outbound_for_case(merged) if m.kind == "escalation"]
    where = ["--db", os.environ["DOORSTEP_DB"], "--config", os.environ["DOORSTEP_CONFIG"]]
    escalated = CliRunner().invoke(cli, [*where, "escalate", "--case", str(merged), "--to", "email:lead@fettle.example",
                                         "--note", "x"])
    assert escalated.exit_code == 1 and f"merged into case #{kept}" in escalated.output, escalated.output
    replied = CliRunner().invoke(cli, [*where, "reply", "--case", str(merged), "--text", "@hking12 hi"])
    assert replied.exit_code == 1 and f"merged into case #{kept}: answer on case #{kept}" in replied.output, replied.output
    assert not [m for m in db.outbound_for_case(merged) if m.kind == "escalation"]
