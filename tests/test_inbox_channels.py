"""The inbox's Channel filter lists a case under every network the customer wrote on in it.

A case opened by a customer's Bluesky post whose newest post (the customer's) is on X showed "[X]" in
its row, but a lead who chose Channel = "X" to work the X queue did not see it: the filter matched
only the network the case was opened on (``cases.channel``). A case is under a channel when it was
opened there or when any inbound post on it (``mentions.case_id`` = the case, ``outbound`` = 0) came
on it; the list, its total, J / K's walk past the page (``Store.inbox_ids``) and the counts beside
the filters (``Store.inbox_summary``, summed by ``counts_from_summary``) all say the same, a case
with posts on two networks counting under each. Both stores.
"""

from __future__ import annotations

from datetime import timedelta

from conftest import mention

from console import inbox
from console.inbox import _query, counts_from_summary
from doorstep.models import Case, utcnow
from doorstep.store import InboxQuery, Store


def _cross_network_shop(store: Store) -> dict[str, int]:
    """Four open cases: one opened on Bluesky whose customer wrote again on X (and whom we answered on
    Mastodon: our own post puts no case under a channel), one on X only, one on Bluesky only, and one
    on Mastodon only; plus a resolved Bluesky case with an X post (closed: not in the queue)."""
    now = utcnow()

    def case(channel: str, handle: str, status: str = "open", priority: int = 50) -> int:
        return store.insert_case(Case(status=status, priority=priority, brand="Larkspur", channel=channel,
                                      author_handle=handle, first_response_due=now + timedelta(hours=2)))

    ids = {"both": case("bluesky", "hannah.bsky.social", priority=90), "x_only": case("x", "xavier"),
           "bluesky_only": case("bluesky", "bo.bsky.social"), "mastodon_only": case("mastodon", "mo"),
           "closed": case("bluesky", "cleo.bsky.social", status="resolved")}
    posts = [
        ("both", "b1", "my parcel is late", 0, {"channel": "bluesky", "author_handle": "hannah.bsky.social"}),
        ("both", "b2", "still nothing, writing here too", 30, {"channel": "x", "author_handle": "hannah_pr"}),
        ("both", "b3", "we are on it", 40, {"channel": "mastodon", "author_handle": "LarkspurHelp", "outbound": True}),
        ("x_only", "x1", "where is my order", 5, {"channel": "x", "author_handle": "xavier"}),
        ("bluesky_only", "s1", "broken mug", 6, {"channel": "bluesky", "author_handle": "bo.bsky.social"}),
        ("mastodon_only", "m1", "late again", 7, {"channel": "mastodon", "author_handle": "mo"}),
        ("closed", "c1", "lost", 8, {"channel": "bluesky", "author_handle": "cleo.bsky.social"}),
        ("closed", "c2", "lost, still", 9, {"channel": "x", "author_handle": "cleo_x"}),
    ]
    for key, external_id, text, minutes, fields in posts:
        store.set_mention_case(store.insert_mention(mention(external_id, text, minutes, **fields)), ids[key])
    return ids


def test_channel_filter_lists_a_case_under_every_network_its_customer_wrote_on(store: Store) -> None:
    ids = _cross_network_shop(store)
    both = ids["both"]
    for channel, want in (("x", {both, ids["x_only"]}), ("bluesky", {both, ids["bluesky_only"]}),
                          ("mastodon", {ids["mastodon_only"]})):  # our answer on Mastodon is not the customer's
        query = InboxQuery(channel=channel)
        assert {c.id for c in store.inbox(query)} == want, channel
        assert store.inbox_count(query) == len(want), channel
        assert set(store.inbox_ids(query)) == want, channel  # J / K past the page of 50
        for sort in ("due", "newest"):
            assert {c.id for c in store.inbox(InboxQuery(channel=channel, sort=sort))} == want, (channel, sort)
    # the closed case is listed under X too once closed cases are asked for
    assert ids["closed"] in store.inbox_ids(InboxQuery(channel="x", statuses=("resolved",)))
    # every other filter still applies beside the channel
    assert store.inbox(InboxQuery(channel="x", brand="Fettle")) == []
    assert store.inbox_ids(InboxQuery(channel="x", search="writing")) == [both]


def test_counts_beside_the_filters_count_a_case_under_each_of_its_networks(store: Store) -> None:
    ids = _cross_network_shop(store)
    facets = store.inbox_facets("channel", InboxQuery())
    assert facets == {"x": 2, "bluesky": 2, "mastodon": 1}, facets  # the two-network case under each
    assert store.inbox_facets("brand", InboxQuery(channel="x")) == {"Larkspur": 2}
    rows = store.inbox_summary(InboxQuery())
    for filters in ({}, {"channel": "x"}, {"channel": "bluesky"}, {"channel": "mastodon"},
                    {"channel": "x", "brand": "Larkspur"}, {"channel": "x", "sla_state": "due_soon"}):
        counts = counts_from_summary(rows, filters)
        assert counts["total"] == store.inbox_count(_query(filters)), filters
        for column in ("channel", "brand", "status"):
            assert counts[column] == store.inbox_facets(column, _query(filters, without=column)), (filters, column)
    assert counts_from_summary(rows, {"channel": "x"})["total"] == 2
    assert counts_from_summary(rows, {})["total"] == 4  # counted once in the whole queue
    assert counts_from_summary(rows, {})["channel"] == {"x": 2, "bluesky": 2, "mastodon": 1}
    assert ids["both"] in store.inbox_ids(InboxQuery(channel="x"))


def test_the_console_counts_and_lists_the_x_queue_alike(store: Store, monkeypatch) -> None:
    """The console's own path: its counts (the live summary of the whole queue on SQLite, shared between
    sessions) and its list under Channel = X, before and after the customer writes on X."""
    ids = _cross_network_shop(store)
    inbox._SHARED.clear()
    inbox._COUNTS.clear()
    inbox._LIVE.clear()
    held: dict = {}
    counts = inbox.filter_counts(store, {"channel": "x"}, held)
    assert counts["total"] == 2 and counts["channel"] == {"x": 2, "bluesky": 2, "mastodon": 1}
    assert {c.id for c in store.inbox(_query({"channel": "x"}))} == {ids["both"], ids["x_only"]}
    # the Bluesky-only customer writes on X: the case joins the X queue, in the list and the counts
    store.set_mention_case(store.insert_mention(mention("s2", "any news?", 50, channel="x",
                                                        author_handle="bo_on_x")), ids["bluesky_only"])
    counts = inbox.filter_counts(store, {"channel": "x"}, held)
    assert counts["total"] == 3 and counts["channel"] == {"x": 3, "bluesky": 2, "mastodon": 1}, counts
    assert {c.id for c in store.inbox(_query({"channel": "x"}))} == {ids["both"], ids["x_only"], ids["bluesky_only"]}


def test_a_new_or_upgraded_store_has_the_index_the_channel_filter_walks(store: Store) -> None:
    """Without it, finding the cases with a post on a second network read every post (1.9 s at 1M)."""
    from doorstep.store.inbox import CASE_POSTS_INDEX

    assert CASE_POSTS_INDEX in store.dialect.index_names(store.db)


def test_a_new_post_on_another_network_lists_its_case_there_at_once_without_reading_every_post(
        store: Store, monkeypatch) -> None:
    """The cases under a second network were read whole after every new post (~0.15 s at 1M posts on both
    stores, bench/RESULTS.md): every inbox refresh paid it while posts came in. Between whole reads only the
    posts stored since are read, and a new post still counts at once."""
    import doorstep.store.inbox as inbox_store

    ids = _cross_network_shop(store)
    assert ids["bluesky_only"] not in store.inbox_ids(InboxQuery(channel="x"))  # read whole once
    whole: list[str] = []
    real = type(store)._case_posts_index
    monkeypatch.setattr(type(store), "_case_posts_index", lambda self: whole.append("read") or real(self))
    store.set_mention_case(store.insert_mention(mention("s2", "and here on X", 20, channel="x",
                                                        author_handle="bo_x")), ids["bluesky_only"])
    query = InboxQuery(channel="x")
    assert ids["bluesky_only"] in store.inbox_ids(query) and ids["bluesky_only"] in {c.id for c in store.inbox(query)}
    assert store.inbox_count(query) == 3
    assert whole == [], "the new post was found by reading every case's posts again"
    # a post moved to another case (a split or merge) is seen at the next whole read
    store.db.execute("update mentions set case_id = ? where external_id = 's2'", [ids["x_only"]])
    monkeypatch.setattr(inbox_store, "OTHER_CHANNELS_FULL_S", 0.0)
    assert ids["bluesky_only"] not in store.inbox_ids(query)
