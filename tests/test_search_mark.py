"""The search memo and the mark it is kept by (m019, issue 16).

``Store.search_cases`` remembers a search's cases (the console asks for the same search once per
count and again on every rerun). It used to be kept while SQLite's data_version and PostgreSQL's
``pg_current_snapshot()`` stood still: any commit anywhere moved them (on PostgreSQL any commit in
the cluster: another schema, another database, an unrelated table), so under other writers every
inbox query ran the full-text search again (97-1,607 ms p95 at 1M mentions, bench/RESULTS.md).
These tests pin both halves: commits that cannot change a search leave it remembered, and every
write that can change one (from this connection, another one, or another process) is seen.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from doorstep.models import Case, Customer, Order, Shipment
from doorstep.pipeline import Pipeline
from doorstep.store import InboxQuery, Store
from doorstep.store.migrations import MENTION_FTS_COLUMNS

from conftest import KeywordClassifier, T0, drop_postgres_schema, mention, new_postgres_schema

HOUR = 60


def _full_text_queries(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The full-text queries over posts this store's connection runs from now on (a spy)."""
    fts = store.dialect.fts_ids("mentions", MENTION_FTS_COLUMNS, key="id")
    ran: list[str] = []
    db = store.db
    real = db.execute

    def spy(sql, *args, **kwargs):
        # (on SQLite a word is asked as its terms since issue 17's fifth round: Store._post_hits_sql)
        if fts in sql or "from mentions_fts where mentions_fts match (" in sql:
            ran.append(sql)
        return real(sql, *args, **kwargs)

    monkeypatch.setattr(db, "execute", spy)
    return ran


def test_commits_that_cannot_change_a_search_leave_it_remembered(store: Store, monkeypatch):
    rain = store.insert_case(Case(priority=10))
    other_case = store.insert_case(Case(priority=20))
    store.set_mention_case(store.insert_mention(mention("1", "parcel left in the rain")), rain)
    store.set_mention_case(store.insert_mention(mention("2", "a lost parcel")), other_case)
    ran = _full_text_queries(store, monkeypatch)
    assert store.search_cases("rain") == [rain]
    assert [c.id for c in store.inbox(InboxQuery(search="rain"))] == [rain]
    assert store.inbox_count(InboxQuery(search="rain")) == 1
    assert len(ran) == 1

    writer = Store(store.path)  # another connection, as the worker's or another agent's
    try:
        writer.set_cursor("x:larkspur", "1999")  # an unrelated table
        writer.set_mention_labels(store.mention_by_external_id("x", "1").id, __import__("conftest").labels("other"))
        version = writer.get_case(other_case).version
        writer.update_case(other_case, version, "amy", assignee="amy", status="open")  # no searched column
        # A status change is seen at once although the search is remembered: the status is not
        # part of what is remembered (the inbox filters the remembered cases by their status).
        writer.update_case(rain, writer.get_case(rain).version, "amy", status="resolved")
    finally:
        writer.close()
    if store.dialect.postgres:
        import psycopg

        from conftest import POSTGRES_URL

        elsewhere = new_postgres_schema()  # another shop's schema in the same database
        schema = elsewhere.rsplit("%3D", 1)[1]
        try:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as pg:
                pg.execute(f"create table {schema}.mentions (id bigint, text text)")
                for n in range(3):
                    pg.execute(f"insert into {schema}.mentions values (%s, 'rain rain')", [n])
        finally:
            drop_postgres_schema(elsewhere)
    assert store.search_cases("rain") == [rain]
    assert [c.id for c in store.inbox(InboxQuery(search="rain"))] == []  # resolved: out of the open queue
    assert [c.id for c in store.inbox(InboxQuery(search="rain", statuses=("resolved",)))] == [rain]
    assert store.inbox_count(InboxQuery(search="rain")) == 0
    assert store.search_is_capped("rain") is False
    assert len(ran) == 1, "a commit that cannot change the search ran it again"


@pytest.fixture
def shop(store: Store) -> Store:
    store.upsert_customers([Customer(id="c-hk", name="Harriet King", email="harriet@example.org",
                                     handles={"x": "hking12"})])
    store.upsert_orders([
        Order(number="ORD-2026-000200", customer_id="c-hk", placed_at=T0 - timedelta(days=4), brand="Fettle",
              items=["hiking boots"]),
    ])
    return store


def _ids(store: Store, text: str) -> list[int]:
    return sorted(store.search_cases(text))


def test_every_write_that_can_change_a_search_is_seen_from_any_connection(shop: Store, config, tmp_path: Path):
    from doorstep.regroup import merge_cases, split_post

    store = shop  # the console's store: it searches, others write
    writer = Store(store.path)
    try:
        pipeline = Pipeline(writer, config, KeywordClassifier())
        # A new post through the pipeline (another connection) opens a case.
        assert _ids(store, "boots") == []
        pipeline.ingest([mention("1", "@FettleCare my boots are lost", author_handle="hking12")])
        boots = writer.mention_by_external_id("x", "1").case_id
        assert _ids(store, "boots") == [boots]
        # A second post joins it.
        assert _ids(store, "torch") == []
        pipeline.ingest([mention("2", "@FettleCare where is my head torch, so late", minutes=HOUR,
                                 author_handle="hking12")])
        torch = writer.mention_by_external_id("x", "2")
        assert torch.case_id == boots and _ids(store, "torch") == [boots]
        # Split: the post moves to a new case.
        new = split_post(writer, config, boots, torch.id, writer.get_case(boots).version, "ann")
        assert _ids(store, "torch") == [new.id]
        # Merge: back into the first one.
        merge_cases(writer, config, boots, writer.get_case(boots).version, new.id, writer.get_case(new.id).version,
                    "ann")
        assert _ids(store, "torch") == [boots]
        # Status: the remembered cases are filtered by status on every query.
        assert [c.id for c in store.inbox(InboxQuery(search="torch"))] == [boots]
        writer.update_case(boots, writer.get_case(boots).version, "ann", status="resolved")
        assert [c.id for c in store.inbox(InboxQuery(search="torch"))] == []
        # The customer's name changes: found by the new one.
        assert _ids(store, "Queen") == []
        writer.upsert_customers([Customer(id="c-hk", name="Harriet Queen", email="harriet@example.org",
                                          handles={"x": "hking12"})])
        assert _ids(store, "Queen") == sorted([boots, new.id])  # the merged case is still hers
        # A post from a handle no customer has; then a customer with that handle (customers, customer_handles).
        pipeline.ingest([mention("3", "@LarkspurHelp is the sofa coming?", author_handle="zz_top")])
        sofa = writer.mention_by_external_id("x", "3").case_id
        assert _ids(store, "Zebra") == []
        writer.upsert_customers([Customer(id="c-zz", name="Zed Zebra", handles={"x": "zz_top"})])
        assert _ids(store, "Zebra") == [sofa]
        # A case's order number set; then a shipment of that order (its tracking number).
        assert _ids(store, "ORD-2026-000300") == [] and _ids(store, "1Z999AA10123456784") == []
        writer.db.execute("update cases set order_number = 'ORD-2026-000300' where id = ?", [sofa])
        assert _ids(store, "ORD-2026-000300") == [sofa]
        writer.upsert_orders([Order(number="ORD-2026-000300", customer_id="c-zz", placed_at=T0, brand="Larkspur",
                                    items=["sofa"], shipments=[Shipment(tracking_number="1Z999AA10123456784",
                                                                        order_number="ORD-2026-000300",
                                                                        courier="UPS")])])
        assert _ids(store, "1Z999AA10123456784") == [sofa]
        # A post's words change (redacted), then a post goes.
        assert _ids(store, "sofa") == [sofa]
        writer.db.execute("update mentions set text = 'is the [removed] coming?' where external_id = '3'")
        assert _ids(store, "sofa") == []
        assert _ids(store, "lost") == [boots]
        writer.db.execute("delete from mentions where external_id = '1'")
        assert _ids(store, "lost") == []
    finally:
        writer.close()
    # Another process.
    assert _ids(store, "umbrella") == []
    script = ("import sys; from doorstep.store import Store; from doorstep.models import Case, Mention; "
              "from datetime import datetime, timezone; s = Store(sys.argv[1]); c = s.insert_case(Case(priority=5)); "
              "s.set_mention_case(s.insert_mention(Mention(channel='x', external_id='p1', text='my umbrella broke', "
              "created_at=datetime(2026, 11, 1, tzinfo=timezone.utc))), c); print(c)")
    done = subprocess.run([sys.executable, "-c", script, store.path], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert _ids(store, "umbrella") == [int(done.stdout.split()[-1])]


def test_a_search_inside_a_transaction_sees_its_own_writes_and_not_after_a_rollback(store: Store):
    case = store.insert_case(Case(priority=10))
    assert store.search_cases("kettle") == []
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.set_mention_case(store.insert_mention(mention("1", "the kettle leaks")), case)
            assert store.search_cases("kettle") == [case]
            assert store.search_cases("kettle") == [case]
            raise RuntimeError("rolled back")
    assert store.search_cases("kettle") == []
    store.set_mention_case(store.insert_mention(mention("2", "a kettle, again")), case)
    assert store.search_cases("kettle") == [case]


def test_a_postgres_schema_copied_table_by_table_gets_its_triggers_again(postgres_url: str, tmp_path: Path):
    """Tests copy template schemas with ``create table ... like`` (no triggers): the copy installs them."""
    from conftest import copy_postgres_schema

    template = Store(postgres_url)
    template.close()
    copy = new_postgres_schema()
    try:
        copy_postgres_schema(postgres_url, copy)
        store = Store(copy)
        case = store.insert_case(Case(priority=10))
        assert store.search_cases("kettle") == []
        writer = Store(copy)
        writer.set_mention_case(writer.insert_mention(mention("1", "the kettle leaks")), case)
        writer.close()
        assert store.search_cases("kettle") == [case]
        assert store._search_marked is True
        store.close()
    finally:
        drop_postgres_schema(copy)
