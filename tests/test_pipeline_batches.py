"""A batch of posts is linked and grouped exactly as the same posts one at a time, with far fewer reads.

The pipeline reads what a batch needs (authors, orders, shipments, answered posts, conversations'
cases) once per batch and remembers it for the batch (doorstep/lookups.py). These tests run a
mixed batch - threads, repeat authors, quoted order and tracking numbers, duplicates inside the
batch and against the store, our own reply, a resolved case that reopens, a listener's case hint -
through one batch and through batches of one post (every read fresh from the database), and
compare everything stored: posts, cases with their posts, links, priorities, versions and audit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from doorstep.config import Config
from doorstep.models import Case, Customer, Mention, Order, Shipment, TrackingEvent
from doorstep.pipeline import IngestResult, Pipeline
from doorstep.store import Store

from conftest import T0, KeywordClassifier, drop_postgres_schema, mention, new_postgres_schema

UPS = "1Z999AA10123456784"


def _shop(where: Path | str) -> Store:
    store = Store(where)
    store.upsert_customers([
        Customer(id="c-ann", name="Ann Lee", handles={"x": "ann_lee"}),
        Customer(id="c-bob", name="Bob Roe", handles={"x": "bobroe"}, vip=True),
        Customer(id="c-cat", name="Cat Day", handles={"x": "catday"}),
    ])
    events = [
        TrackingEvent(tracking_number=UPS, time=T0 - timedelta(days=3), status="info_received"),
        TrackingEvent(tracking_number=UPS, time=T0 - timedelta(days=1), status="attempt_failed"),
    ]
    store.upsert_orders([
        Order(number="123456", customer_id="c-ann", placed_at=T0 - timedelta(days=4), brand="Larkspur", total=250,
              shipments=[Shipment(tracking_number=UPS, order_number="123456", courier="UPS", events=events)]),
        Order(number="654321", customer_id="c-bob", placed_at=T0 - timedelta(days=2), brand="Fettle", total=40),
        Order(number="777777", customer_id="c-cat", placed_at=T0 - timedelta(days=1), brand="Fettle", total=120),
        Order(number="777778", customer_id="c-cat", placed_at=T0 - timedelta(days=9), brand="Larkspur", total=15),
    ])
    return store


def _history(pipeline: Pipeline) -> None:
    """What the store holds before the batch: a conversation to answer, a resolved case, a known case."""
    pipeline.ingest([mention("h1", "where is my order??", author_handle="bobroe")])
    pipeline.ingest([mention("h2", f"parcel {UPS} lost", minutes=1, author_handle="ann_lee")])
    pipeline.ingest([mention("h3", "thank you for the help", minutes=2, author_handle="fan")])
    fan = pipeline.store.get_case(pipeline.store.mention_by_external_id("x", "h3").case_id)  # type: ignore[union-attr,arg-type]
    assert fan is not None
    pipeline.store.update_case(fan.id, fan.version, "amy", status="resolved")  # type: ignore[arg-type]


def _batch(hint: int) -> list[Mention]:
    """Out of time order on purpose: the pipeline writes oldest first."""
    return [
        mention("b2", "any news?? still late", minutes=62, author_handle="bobroe", in_reply_to="b1"),
        mention("b1", "my order #654321 is late", minutes=61, author_handle="bobroe"),
        mention("b1", "my order #654321 is late (sent twice)", minutes=61, author_handle="bobroe"),
        mention("h1", "where is my order?? (delivered again)", author_handle="bobroe"),
        mention("b3", "Sorry! DM us please", minutes=63, author_handle="FettleCare", in_reply_to="b1",
                outbound=True),
        mention("b4", "still nothing, where is it", minutes=64, author_handle="ann_lee", in_reply_to="h2"),
        mention("b5", "order #123456 where?? lost", minutes=65, author_handle="zed"),
        mention("b6", "order #123456 where is it", minutes=66, author_handle="zed"),
        mention("b7", "thanks again, lovely", minutes=67, author_handle="fan"),
        mention("b8", "where is my stuff, so late", minutes=68, author_handle="catday"),
        mention("b9", "it's late, order 777777", minutes=69, author_handle="catday"),
        mention("b10", "order #999999 missing, lost", minutes=70, author_handle="nobody"),
        mention("b11", "LOST: my parcel, no reply", minutes=71, author_handle="CatDay"),
        mention("b12", "my parcel was lost", minutes=72, author_handle="fan", in_reply_to="h3"),
        mention("b13", f"tracking {UPS} where??", minutes=73, channel="email", author_handle="x@example.org"),
        mention("b14", "reply to a later post", minutes=74, author_handle="zed", in_reply_to="b15"),
        mention("b15", "the later post", minutes=75, author_handle="zed"),
        mention("b16", "about my earlier case", minutes=76, author_handle="someone", case_id=hint),
        mention("b17", "no handle at all, lost", minutes=77, author_handle=None),
        mention("b18", "where is it", minutes=78, author_handle="bobroe", author_followers=50_000),
        mention("b19", "Thanks, we are on it", minutes=79, author_handle="LarkspurHelp", in_reply_to="b4",
                outbound=True),
        mention("b20", "still waiting", minutes=80, author_handle="ann_lee", in_reply_to="b19"),
    ]


def _stored(store: Store) -> dict[str, list[tuple]]:
    """Every row the pipeline writes, without the wall-clock stamps."""
    out = {}
    for table, skip in (("mentions", {"ingested_at"}), ("cases", set()), ("audit_events", {"at"})):
        out[table] = [tuple(v for k, v in row.items() if k not in skip)
                      for row in store.rows(f"select * from {table} order by id")]
    return out


def _run(where: Path | str, config: Config, batch_size: int) -> tuple[Store, IngestResult, list[Mention]]:
    store = _shop(where)
    _history(Pipeline(store, config, KeywordClassifier(), batch_size=1))
    hint = store.mention_by_external_id("x", "h2").case_id  # type: ignore[union-attr]
    posts = _batch(hint)
    if batch_size == 1:
        posts.sort(key=lambda m: m.created_at)  # the order a batch writes in (oldest first)
    result = Pipeline(store, config, KeywordClassifier(), batch_size=batch_size).ingest(posts)
    return store, result, posts


@pytest.fixture(params=["sqlite", "postgresql"])
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path | str, Path | str]]:
    """Where to build the batched and the one-at-a-time store, on each backend."""
    if request.param == "sqlite":
        yield tmp_path / "batched.db", tmp_path / "single.db"
        return
    urls = (new_postgres_schema(), new_postgres_schema())
    yield urls
    for url in urls:
        drop_postgres_schema(url)


def test_one_batch_stores_what_one_post_at_a_time_stores(two_stores: tuple[Path | str, Path | str], config: Config):
    batched, together, posts = _run(two_stores[0], config, batch_size=500)
    single, apart, _ = _run(two_stores[1], config, batch_size=1)

    assert _stored(batched) == _stored(single)
    counts = ("received", "stored", "duplicates", "cases_opened", "cases_updated", "mention_ids")
    assert [getattr(together, n) for n in counts] == [getattr(apart, n) for n in counts]
    # The batch had everything the comparison is meant to cover.
    assert (together.stored, together.duplicates) == (20, 2)
    actions = [r[0] for r in batched.db.execute("select action from audit_events where actor = 'pipeline'")]
    assert "case.reopen" in actions
    cases = {c.thread_id: c for c in batched.inbox()}
    # A reply joins its parent's case, whose conversation already held the author's order.
    assert [m.external_id for m in batched.mentions_for_case(cases["h1"].id)] == ["h1", "b1", "b2", "b3", "b18"]  # type: ignore[arg-type]
    assert cases["h1"].first_response_at == T0 + timedelta(minutes=63)
    # The hinted post (b16) and the answer to our reply (b20) join the conversation's case, and so does
    # the private e-mail quoting Ann's tracking number (b13), by its order: not zed's newer case, whose
    # link to that order is only a suggestion (zed typed Ann's order number).
    assert [m.external_id for m in batched.mentions_for_case(cases["h2"].id)] == ["h2", "b4", "b13", "b16", "b19", "b20"]  # type: ignore[arg-type]
    zed = batched.mention_by_external_id("x", "b5").case_id  # type: ignore[union-attr]
    assert "b13" not in [m.external_id for m in batched.mentions_for_case(zed)]  # type: ignore[arg-type]
    # A reply to a post later in the batch: both end in one case.
    assert batched.mention_by_external_id("x", "b14").case_id == batched.mention_by_external_id("x", "b15").case_id  # type: ignore[union-attr]
    # The posts carry their stored id and case, as before.
    stored = {m.external_id: m for m in posts if m.id is not None}
    assert stored["b2"].case_id == stored["b1"].case_id and stored["b2"].id == batched.mention_by_external_id("x", "b2").id  # type: ignore[union-attr]


def _strangers() -> list[Mention]:
    """Strangers in the customers' threads (after _history): someone else in the thread of the resolved
    case h3 gets a case of their own there, which their next posts join, while the customer's later
    post (b12) still reopens hers and our answer to it goes there; a stranger with 250,000 followers in
    the thread of Ann's open case h2 joins it without setting its priority. Out of time order on purpose."""
    return [
        mention("b22", "any news?", minutes=81, author_handle="dot", in_reply_to="h3"),
        mention("b21", "my parcel is lost too, urgent", minutes=60, author_handle="dot", in_reply_to="h3",
                author_followers=250_000),
        mention("b12", "my parcel was lost", minutes=72, author_handle="fan", in_reply_to="h3"),
        mention("b23", "this is a disgrace, lost!! urgent", minutes=82, author_handle="loud", in_reply_to="h2",
                author_followers=250_000),
        mention("b24", "Sorry! DM us please", minutes=83, author_handle="LarkspurHelp", in_reply_to="b12",
                outbound=True),
        mention("b25", "and mine??", minutes=84, author_handle="dot", in_reply_to="b12"),
        mention("b26", "still nothing, where is it", minutes=85, author_handle="ann_lee", in_reply_to="b23"),
    ]


def test_strangers_in_the_customers_threads_are_decided_in_a_batch_as_one_at_a_time(
        two_stores: tuple[Path | str, Path | str], config: Config):
    runs = []
    for where, batch_size in zip(two_stores, (500, 1)):
        store = _shop(where)
        _history(Pipeline(store, config, KeywordClassifier(), batch_size=1))
        posts = _strangers()
        if batch_size == 1:
            posts.sort(key=lambda m: m.created_at)
        Pipeline(store, config, KeywordClassifier(), batch_size=batch_size).ingest(posts)
        runs.append(store)
    batched, single = runs
    assert _stored(batched) == _stored(single)

    def case_of(external_id: str) -> Case:
        return batched.get_case(batched.mention_by_external_id("x", external_id).case_id)  # type: ignore[arg-type, union-attr, return-value]

    fan, dot, ann = case_of("h3"), case_of("b21"), case_of("h2")
    assert [m.external_id for m in batched.mentions_for_case(fan.id)] == ["h3", "b12", "b24"]  # type: ignore[arg-type]
    assert [m.external_id for m in batched.mentions_for_case(dot.id)] == ["b21", "b22", "b25"]  # type: ignore[arg-type]
    assert (fan.status, dot.author_handle, dot.thread_id) == ("open", "dot", "h3")
    assert [m.external_id for m in batched.mentions_for_case(ann.id)] == ["h2", "b23", "b26"]  # type: ignore[arg-type]
    assert not any("followers" in r for r in ann.priority_reasons) and "repeat contact (+8)" in ann.priority_reasons
    assert "250,000 followers (+12)" in dot.priority_reasons


@contextmanager
def _statements(store: Store) -> Iterator[list[str]]:
    seen: list[str] = []
    conn: sqlite3.Connection = store.db.conn
    conn.set_trace_callback(seen.append)
    try:
        yield seen
    finally:
        conn.set_trace_callback(None)


def test_a_batch_reads_the_shop_once_not_once_per_post(tmp_path: Path, config: Config):
    store = _shop(tmp_path / "shop.db")
    posts = [mention(f"p{i}", f"order #{n} is late, where is it", minutes=i, author_handle=h)
             for i, (n, h) in enumerate([("123456", "ann_lee"), ("654321", "bobroe"), ("777777", "catday")] * 20)]
    with _statements(store) as seen:
        result = Pipeline(store, config, KeywordClassifier()).ingest(posts)
    assert result.stored == 60
    handles = [s for s in seen if "from customer_handles" in s]
    orders = [s for s in seen if "from orders o" in s]
    vips = [s for s in seen if "from customers" in s]
    # One query each for the whole batch (it used to be one or two per post).
    assert (len(handles), len(orders), len(vips)) == (1, 1, 1), (handles, orders, vips)
    # What is left per post: the cases it may join and the follow-ups it may answer (about ten before).
    reads = [s for s in seen if s.lstrip().lower().startswith("select")]
    assert len(reads) < 2.5 * len(posts), len(reads)


def test_a_failed_batch_writes_nothing_and_a_retry_stores_it_whole(tmp_path: Path, config: Config,
                                                                   monkeypatch: pytest.MonkeyPatch):
    store, _, _ = _run(tmp_path / "reference.db", config, batch_size=500)
    expected = _stored(store)

    store = _shop(tmp_path / "failing.db")
    _history(Pipeline(store, config, KeywordClassifier(), batch_size=1))
    before = _stored(store)
    hint = store.mention_by_external_id("x", "h2").case_id  # type: ignore[union-attr]
    real_insert = store.insert_cases

    def insert_then_fail(cases: list[Case]) -> None:
        real_insert(cases[:3])  # the batch's fourth new case fails, three written before it
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "insert_cases", insert_then_fail)
    pipeline = Pipeline(store, config, KeywordClassifier())
    with pytest.raises(sqlite3.OperationalError):
        pipeline.ingest(_batch(hint))
    assert _stored(store) == before  # nothing of the batch: no post, no case, no audit line
    monkeypatch.setattr(store, "insert_cases", real_insert)
    pipeline.ingest(_batch(hint))
    assert _stored(store) == expected


def _people(store: Store, k: int) -> Pipeline:
    """``k`` customers, each with an order and a conversation already open about it."""
    store.upsert_customers([Customer(id=f"c{i}", name=f"Customer {i}", handles={"x": f"cust{i}"}) for i in range(k)])
    store.upsert_orders([Order(number=f"{500000 + i}", customer_id=f"c{i}", placed_at=T0 - timedelta(days=2),
                               brand="Larkspur", total=80) for i in range(k)])
    pipeline = Pipeline(store, Config.model_validate(_config_dict()), KeywordClassifier())
    pipeline.ingest([mention(f"old{i}", f"order #{500000 + i} is late", minutes=i, author_handle=f"cust{i}")
                     for i in range(k)])
    return pipeline


def _config_dict() -> dict:
    return {"timezone": "Europe/London", "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"},
                                                     "keywords": ["larkspur"]}]}


def _busy_batch(k: int) -> list[Mention]:
    """Four posts per customer: a reply in the old conversation, a new post about the same order
    (it joins the old case through the author's cases), a stranger's new post and its reply."""
    posts = []
    for i in range(k):
        posts += [
            mention(f"r{i}", "still late, where is it", minutes=100 + i, author_handle=f"cust{i}", in_reply_to=f"old{i}"),
            mention(f"n{i}", f"about order {500000 + i}: lost?", minutes=200 + i, author_handle=f"cust{i}"),
            mention(f"s{i}", "where is my parcel", minutes=300 + i, author_handle=f"stranger{i}"),
            mention(f"t{i}", "hello? still late", minutes=400 + i, author_handle=f"stranger{i}", in_reply_to=f"s{i}"),
        ]
    return posts


def _kinds(statements: list[str]) -> dict[str, int]:
    """Statements by kind (``select``, ``insert mentions``, ``update cases``...). SQLite's trace
    repeats a statement each time one of its triggers (the full-text index) runs, and shows the
    trigger's own steps as ``--`` comments: those are one statement."""
    counts: dict[str, int] = {}
    previous = None
    for sql in statements:
        if sql.startswith("--") or sql == previous:
            continue
        previous = sql
        words = sql.split()
        verb = words[0].lower()
        if verb in ("insert", "update"):
            table = words[2] if verb == "insert" else words[1]
            verb = f"{verb} {table}"
        counts[verb] = counts.get(verb, 0) + 1
    return counts


@pytest.mark.parametrize("k", [5, 20])
def test_a_batchs_statements_do_not_grow_with_its_posts(tmp_path: Path, k: int):
    """The reads of a batch are a fixed few whatever its size; each case it changes is written once."""
    counts = {}
    for size in (k, 3 * k):
        store = Store(tmp_path / f"busy{size}.db")
        pipeline = _people(store, size)
        with _statements(store) as seen:
            result = pipeline.ingest(_busy_batch(size))
        assert (result.stored, result.cases_opened, result.cases_updated) == (4 * size, size, 3 * size)
        counts[size] = _kinds(seen)
    small, large = counts[k], counts[3 * k]
    assert small["select"] == large["select"], (small, large)  # no read per post, per case or per author
    # Each case is written once, however many posts join it: the old cases (two posts join each)
    # are updated once, the strangers' new ones (their reply joins) inserted as they end the batch.
    assert (small["update cases"], large["update cases"]) == (k, 3 * k), (small, large)
    assert large["insert cases"] <= -(-3 * k // 20), large
    # Posts and audit events go in multi-row inserts (30 rows or more each), not one per row.
    posts = 4 * 3 * k
    assert large["insert mentions"] <= -(-posts // 30) and large["insert audit_events"] == 1, large


def _late(i: int, number: str, handle: str) -> Mention:
    return mention(f"p{i}", f"order #{number} is late", minutes=i, author_handle=handle)


def test_an_imports_next_batch_does_not_read_again_the_shop_it_read(tmp_path: Path, config: Config):
    """Nothing was written between two batches: the second one asks the store nothing about the
    customers, orders and shipments the first one read (Pipeline._kept_lookups)."""
    store = _shop(tmp_path / "shop.db")
    pipeline = Pipeline(store, config, KeywordClassifier())
    posts = [_late(i, n, h) for i, (n, h) in enumerate([("123456", "ann_lee"), ("654321", "bobroe"),
                                                         ("777777", "catday")] * 4)]
    pipeline.ingest(posts[:6])
    with _statements(store) as seen:
        pipeline.ingest(posts[6:])
    shop = [s for s in seen if any(f"from {t}" in s for t in ("customer_handles", "orders", "shipments", "customers"))]
    assert shop == []
    assert all(store.mention_by_external_id("x", p.external_id).case_id for p in posts)  # type: ignore[union-attr]


@pytest.mark.parametrize("writer", ["another connection", "the same connection"])
def test_a_shop_change_between_batches_is_seen_by_the_next_batch(tmp_path: Path, config: Config, writer: str):
    """What one batch read of the shop is kept for the next only while nothing was written: a
    customer added meanwhile, by another connection or by the import's own, links the next post."""
    store = _shop(tmp_path / "shop.db")
    pipeline = Pipeline(store, config, KeywordClassifier())
    pipeline.ingest([_late(0, "999999", "newbie")])
    first = store.get_case(store.mention_by_external_id("x", "p0").case_id)  # type: ignore[union-attr, arg-type]
    assert first is not None and first.customer_id is None
    other = Store(tmp_path / "shop.db") if writer == "another connection" else store
    other.upsert_customers([Customer(id="c-new", name="New Bie", handles={"x": "newbie"}, vip=True)])
    pipeline.ingest([mention("q1", "hello? parcel still missing", minutes=600, author_handle="newbie")])
    case = store.get_case(store.mention_by_external_id("x", "q1").case_id)  # type: ignore[union-attr, arg-type]
    assert case is not None and case.customer_id == "c-new"
    assert "VIP customer (+10)" in case.priority_reasons


def test_the_next_batch_does_not_read_again_the_posts_and_cases_the_last_one_wrote(tmp_path: Path, config: Config):
    """Replies to the last batch's posts and posts joining its cases: their threads, the cases' most
    serious posts and contact counts are known from that batch, not read again."""
    store = _shop(tmp_path / "shop.db")
    pipeline = Pipeline(store, config, KeywordClassifier())
    pipeline.ingest([_late(0, "123456", "ann_lee"), _late(1, "654321", "bobroe")])
    later = [mention("r0", "any news?", minutes=5, author_handle="ann_lee", in_reply_to="p0"),
             mention("r1", "order #654321 still late", minutes=6, author_handle="bobroe")]
    with _statements(store) as seen:
        pipeline.ingest(later)
    history = [s for s in seen if "from mentions" in s and ("case_id" in s or "thread_id" in s)]
    assert history == []
    first = store.mention_by_external_id("x", "p0")
    assert first is not None and store.mention_by_external_id("x", "r0").case_id == first.case_id  # type: ignore[union-attr]
    case = store.get_case(first.case_id)  # type: ignore[arg-type]
    assert case is not None and case.mention_count == 2


def test_a_batch_rolled_back_is_not_remembered_by_the_next(tmp_path: Path, config: Config):
    """The caller's transaction around a batch failed after the batch was written: the next batch
    reads the store again (the mark does not move on a rollback), and stores what a new pipeline would."""
    reference = _shop(tmp_path / "reference.db")
    store = _shop(tmp_path / "shop.db")
    pipeline = Pipeline(store, config, KeywordClassifier())
    first = [_late(0, "123456", "ann_lee"), mention("p1", "hello??", minutes=1, author_handle="ann_lee", in_reply_to="p0"),
             mention("n0", "where is my parcel", author_handle="newbie")]
    with pytest.raises(RuntimeError), store.write_transaction():
        store.upsert_customers([Customer(id="c-new", name="New Bie", handles={"x": "newbie"})])  # taken back too
        pipeline.ingest(first)
        raise RuntimeError("disk full")
    assert store.count("mentions") == 0 and store.get_customer("c-new") is None
    second = [mention("p2", "still nothing", minutes=2, author_handle="ann_lee", in_reply_to="p1"),
              mention("n1", "hello? where is my parcel", minutes=3, author_handle="newbie")]
    pipeline.ingest(second)
    Pipeline(reference, config, KeywordClassifier()).ingest(second)
    assert _stored(store) == _stored(reference)
    assert store.mention_by_external_id("x", "p2").thread_id == "p1"  # type: ignore[union-attr]



def test_the_next_batch_does_not_read_again_the_cases_of_authors_the_last_one_read(tmp_path: Path, config: Config):
    """Nothing was written between two batches: the second one does not read again the cases its
    authors, customers and orders may join, nor the cases chosen among them, that the first one
    read or wrote (their views are kept with the rest, Pipeline._kept_lookups)."""
    store = _shop(tmp_path / "shop.db")
    pipeline = Pipeline(store, config, KeywordClassifier())
    pipeline.ingest([_late(0, "123456", "ann_lee"), _late(1, "654321", "bobroe"), _late(2, "777777", "catday")])
    later = [_late(10 + i, n, h) for i, (n, h) in enumerate([("123456", "ann_lee"), ("654321", "bobroe"),
                                                              ("777777", "catday")])]
    with _statements(store) as seen:
        pipeline.ingest(later)
    author_reads = [s for s in seen if "pick_rank" in s]
    case_reads = [s for s in seen if s.startswith("select * from cases where id")]
    assert (author_reads, case_reads) == ([], [])
    for old, new in zip(["p0", "p1", "p2"], ["p10", "p11", "p12"]):
        assert store.mention_by_external_id("x", new).case_id == store.mention_by_external_id("x", old).case_id  # type: ignore[union-attr]


def _crowd(start: int, n: int, seed: int) -> list[Mention]:
    """Posts of a few busy authors quoting many orders (each author ends with many cases), replies,
    thanks and our own answers: what keeps, re-reads and re-ranks an author's cases across batches."""
    import random
    rnd = random.Random(seed)
    posts: list[Mention] = []
    for i in range(start, start + n):
        handle = rnd.choice(["ann_lee", "bobroe", "catday", "nobody", "nobody", "dot"])
        kind = rnd.random()
        if kind < 0.45:
            text = f"order #{rnd.choice(['123456', '654321', '777777', '777778', str(200000 + rnd.randrange(60))])} is late"
        elif kind < 0.6:
            text = "thank you so much, all sorted"
        elif kind < 0.75 and posts:
            parent = rnd.choice(posts)
            posts.append(mention(f"p{i}", "still nothing?", minutes=i, author_handle=parent.author_handle,
                                 in_reply_to=parent.external_id))
            continue
        elif kind < 0.8 and posts:
            parent = rnd.choice(posts)
            posts.append(mention(f"p{i}", "We are on it", minutes=i, author_handle="larkspur", outbound=True,
                                 in_reply_to=parent.external_id))
            continue
        else:
            text = f"where is my parcel {UPS}" if rnd.random() < 0.3 else "where is my parcel??"
        posts.append(mention(f"p{i}", text, minutes=i, author_handle=handle))
    return posts


@pytest.mark.parametrize("per_key", [2, 100])
def test_batches_that_keep_their_cases_store_what_batches_read_afresh_store(tmp_path: Path, config: Config,
                                                                             monkeypatch: pytest.MonkeyPatch, per_key: int):
    """Many batches of busy authors, a case resolved by an agent (another connection) between two of
    them: a pipeline that keeps its batches' cases (and reads a key again when what it kept may no
    longer hold, here after 2 cases per key) stores row for row what one that reads every batch afresh stores."""
    import doorstep.lookups
    monkeypatch.setattr(doorstep.lookups, "PER_KEY", per_key)
    stores = {}
    for name in ("kept", "afresh"):
        store = _shop(tmp_path / f"{name}.db")
        if name == "afresh":
            monkeypatch.setattr(store, "change_mark", lambda: None)
        pipeline = Pipeline(store, config, KeywordClassifier(), batch_size=7)
        reads_before = []
        for round_ in range(4):
            with _statements(store) as seen:
                pipeline.ingest(_crowd(60 * round_, 60, seed=round_))
            reads_before.append(sum(1 for s in seen if "pick_rank" in s))
            agent = Store(tmp_path / f"{name}.db")
            case = agent.get_case(agent.mention_by_external_id("x", f"p{60 * round_ + 3}").case_id)  # type: ignore[union-attr, arg-type]
            if case is not None and case.status != "resolved" and round_ % 2 == 0:
                agent.update_case(case.id, case.version, "amy", status="resolved")  # type: ignore[arg-type]
        stores[name] = (store, reads_before)
    kept, afresh = stores["kept"], stores["afresh"]
    assert _stored(kept[0]) == _stored(afresh[0])
    assert kept[0].count("cases") > 20
    assert sum(kept[1]) < sum(afresh[1])
