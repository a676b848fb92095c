"""What a case is: one customer's issue with one brand (and, when known, one order).

The demo once put 13 posts of one author over ten days into one case (praise, a Royal Mail
complaint, a UPS parcel, a head torch, both brands), linked by a 40 % guess shown as
"confirmed", with the praise counted as "repeat contact". These tests pin the rules that
replaced "every post of an author is one case" (doorstep/cases.py choose_case).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from doorstep.cases import choose_case
from doorstep.linking import describe_link
from doorstep.models import Case, Customer, Link, Order, Shipment, TrackingEvent
from doorstep.pipeline import Pipeline
from doorstep.store import Store

from conftest import T0, KeywordClassifier, mention

UPS = "1Z999AA10123456784"
HOUR = 60
DAY = 24 * HOUR


@pytest.fixture
def shop(store: Store) -> Store:
    """Harriet has three open orders: a Larkspur duvet (UPS) and two Fettle ones (boots, head torch)."""
    store.upsert_customers([
        Customer(id="c-hk", name="Harriet King", email="harriet@example.org",
                 handles={"x": "hking12", "mastodon": "hking@mastodon.social", "email": "harriet@example.org"}),
    ])
    ups_events = [TrackingEvent(tracking_number=UPS, time=T0 - timedelta(days=2), status="in_transit")]
    store.upsert_orders([
        Order(number="ORD-2026-000100", customer_id="c-hk", placed_at=T0 - timedelta(days=5), brand="Larkspur",
              items=["linen duvet cover"],
              shipments=[Shipment(tracking_number=UPS, order_number="ORD-2026-000100", courier="UPS",
                                  events=ups_events)]),
        Order(number="ORD-2026-000200", customer_id="c-hk", placed_at=T0 - timedelta(days=4), brand="Fettle",
              items=["hiking boots"]),
        Order(number="ORD-2026-000300", customer_id="c-hk", placed_at=T0 - timedelta(days=3), brand="Fettle",
              items=["head torch"]),
    ])
    return store


@pytest.fixture
def pipeline(shop: Store, config) -> Pipeline:
    return Pipeline(shop, config, KeywordClassifier())


def _cases(store: Store) -> list[Case]:
    return [c for r in store.db.query("select id from cases order by id") if (c := store.get_case(r["id"]))]


def _posts(store: Store, case: Case) -> list[str]:
    return [m.external_id for m in store.mentions_for_case(case.id)]  # type: ignore[arg-type]


def test_an_author_with_two_brands_three_topics_and_praise_gets_one_case_per_issue(pipeline: Pipeline):
    store = pipeline.store
    pipeline.ingest([
        mention("praise", "@LarkspurHelp thank you, lovely cushions", author_handle="hking12"),
        mention("royalmail", "@FettleCare @RoyalMailHelp the driver never knocked, where is my parcel",
                minutes=2 * DAY, author_handle="hking12"),
        mention("royalmail-again", "@FettleCare still late, nobody knocked", minutes=2 * DAY + 3 * HOUR,
                author_handle="hking12"),
        mention("ups", f"@LarkspurHelp where is my duvet cover? {UPS}", minutes=5 * DAY, author_handle="hking12"),
        mention("torch", "@FettleCare where is my head torch, ORD-2026-000300", minutes=9 * DAY,
                author_handle="hking12"),
        mention("praise-again", "@LarkspurHelp thank you for the quick help!", minutes=10 * DAY,
                author_handle="hking12"),
    ])
    cases = _cases(store)
    groups = sorted(_posts(store, c) for c in cases)
    assert groups == sorted([["praise"], ["royalmail", "royalmail-again"], ["ups"], ["torch"], ["praise-again"]])
    by_post = {p: c for c in cases for p in _posts(store, c)}
    assert by_post["ups"].brand == "Larkspur" and by_post["torch"].brand == "Fettle"
    assert (by_post["ups"].order_number, by_post["ups"].link_confirmed) == ("ORD-2026-000100", True)
    assert (by_post["torch"].order_number, by_post["torch"].link_confirmed) == ("ORD-2026-000300", True)
    # The complaint without a number is linked to a guess, and says so.
    guess = by_post["royalmail"]
    assert guess.link_method == "recent_order" and not guess.link_confirmed
    assert "not confirmed" in describe_link(guess) and "· confirmed" not in describe_link(guess)
    # Praise never counts as repeat contact; the second complaint does.
    assert not any("repeat contact" in r for c in cases for r in c.priority_reasons if c is not guess)
    assert "repeat contact (+8)" in guess.priority_reasons


def test_a_reply_in_the_same_thread_stays_in_its_case_whatever_it_says_and_however_late(pipeline: Pipeline):
    pipeline.ingest([mention("1", "@FettleCare my boots are lost", author_handle="hking12")])
    pipeline.ingest([
        mention("2", "@LarkspurHelp sorry, wrong brand, but still lost", minutes=4 * DAY, author_handle="hking12",
                in_reply_to="1"),
        mention("3", f"it is {UPS} by the way", minutes=5 * DAY, author_handle="hking12", in_reply_to="2"),
    ])
    cases = _cases(pipeline.store)
    assert len(cases) == 1 and _posts(pipeline.store, cases[0]) == ["1", "2", "3"]


def test_the_same_order_across_channels_is_one_case(pipeline: Pipeline):
    pipeline.ingest([
        mention("x1", "@FettleCare where are my boots? order ORD-2026-000200", author_handle="hking12"),
        # Three days later (past the join window), by e-mail and on Mastodon, about the same order.
        mention("mail1", "Hello, order ORD-2026-000200 still has not arrived", minutes=3 * DAY, channel="email",
                author_handle="harriet@example.org"),
        mention("m1", "@FettleCare any news on ORD-2026-000200? still late", minutes=4 * DAY, channel="mastodon",
                author_handle="hking@mastodon.social"),
    ])
    cases = _cases(pipeline.store)
    assert len(cases) == 1 and _posts(pipeline.store, cases[0]) == ["x1", "mail1", "m1"]
    assert (cases[0].order_number, cases[0].link_confirmed) == ("ORD-2026-000200", True)


def test_another_order_of_the_same_brand_opens_its_own_case(pipeline: Pipeline):
    pipeline.ingest([
        mention("1", "@FettleCare where are my boots? ORD-2026-000200", author_handle="hking12"),
        mention("2", "@FettleCare and where is ORD-2026-000300, the head torch?", minutes=HOUR,
                author_handle="hking12"),
    ])
    cases = _cases(pipeline.store)
    assert sorted(c.order_number for c in cases) == ["ORD-2026-000200", "ORD-2026-000300"]


def test_a_follow_up_without_an_order_joins_within_the_window_and_not_after(pipeline: Pipeline):
    pipeline.ingest([
        mention("1", "@FettleCare where are my boots? ORD-2026-000200", author_handle="hking12"),
        mention("2", "@FettleCare still nothing, so late", minutes=20 * HOUR, author_handle="hking12"),
        mention("3", "@FettleCare where is my parcel", minutes=20 * HOUR + 3 * DAY, author_handle="hking12"),
    ])
    cases = _cases(pipeline.store)
    assert [_posts(pipeline.store, c) for c in cases] == [["1", "2"], ["3"]]


def test_the_join_window_is_configurable(shop: Store, config):
    config.cases.join_window_hours = 100
    pipeline = Pipeline(shop, config, KeywordClassifier())
    pipeline.ingest([
        mention("1", "@FettleCare where are my boots? ORD-2026-000200", author_handle="hking12"),
        mention("3", "@FettleCare where is my parcel", minutes=3 * DAY, author_handle="hking12"),
    ])
    assert len(_cases(shop)) == 1


def test_a_resolved_case_reopens_only_for_its_order_within_the_reopen_window(pipeline: Pipeline):
    store = pipeline.store
    pipeline.ingest([mention("1", "@FettleCare where are my boots? ORD-2026-000200", author_handle="hking12")])
    case = _cases(store)[0]
    store.update_case(case.id, case.version, "amy", status="resolved", resolved_at=T0 + timedelta(hours=2))  # type: ignore[arg-type]
    # Praise of the same brand a day later is not about the order: a new case, the old one stays resolved.
    pipeline.ingest([mention("2", "@FettleCare thank you, lovely boots", minutes=DAY, author_handle="hking12")])
    assert store.get_case(case.id).status == "resolved"  # type: ignore[arg-type, union-attr]
    # The same order two days later reopens it.
    pipeline.ingest([mention("3", "@FettleCare ORD-2026-000200 the left boot is lost", minutes=2 * DAY,
                             author_handle="hking12")])
    assert store.get_case(case.id).status == "open" and _posts(store, case) == ["1", "3"]  # type: ignore[arg-type, union-attr]
    # Resolved again; ten days later the same order opens a new case instead.
    fresh = store.get_case(case.id)
    store.update_case(case.id, fresh.version, "amy", status="resolved", resolved_at=T0 + timedelta(days=2, hours=1))  # type: ignore[arg-type, union-attr]
    pipeline.ingest([mention("4", "@FettleCare ORD-2026-000200 lost again", minutes=12 * DAY, author_handle="hking12")])
    assert store.get_case(case.id).status == "resolved"  # type: ignore[arg-type, union-attr]
    assert _posts(store, _cases(store)[-1]) == ["4"]


def test_a_thread_reply_after_the_reopen_window_opens_a_new_case(pipeline: Pipeline):
    store = pipeline.store
    pipeline.ingest([mention("1", "@FettleCare my boots are lost", author_handle="hking12")])
    case = _cases(store)[0]
    store.update_case(case.id, case.version, "amy", status="resolved", resolved_at=T0 + timedelta(hours=1))  # type: ignore[arg-type]
    pipeline.ingest([mention("2", "lost again!", minutes=8 * DAY, author_handle="hking12", in_reply_to="1")])
    assert store.get_case(case.id).status == "resolved"  # type: ignore[arg-type, union-attr]
    assert [_posts(store, c) for c in _cases(store)] == [["1"], ["2"]]


def test_praise_and_thanks_are_not_repeat_contact(pipeline: Pipeline):
    pipeline.ingest([
        mention("1", "@FettleCare my boots are lost", author_handle="hking12"),
        mention("2", "thank you so much!", minutes=HOUR, author_handle="hking12", in_reply_to="1"),
        mention("3", "thanks again, lovely", minutes=2 * HOUR, author_handle="hking12", in_reply_to="2"),
    ])
    case = _cases(pipeline.store)[0]
    assert case.mention_count == 3
    assert not any("repeat contact" in r for r in case.priority_reasons)
    assert pipeline.store.contact_count(case.id) == 1  # type: ignore[arg-type]


def test_a_guessed_order_is_shown_as_a_guess_and_templates_refuse_its_details(pipeline: Pipeline, config):
    from responders.templates import TemplateError, render_template

    pipeline.ingest([mention("1", "@FettleCare where is my parcel, so late", author_handle="hking12")])
    case = _cases(pipeline.store)[0]
    assert (case.link_method, case.link_confirmed, case.link_confidence) == ("recent_order", False, 0.4)
    assert describe_link(case).startswith(f"possible order {case.order_number} (40 %) — not confirmed")
    with pytest.raises(TemplateError, match="not confirmed"):
        render_template(pipeline.store, config, case.id, "Your order {{ order_number }}", channel="email")  # type: ignore[arg-type]


def test_choose_case_keeps_brands_apart_and_lets_a_post_naming_no_brand_join(config):
    open_case = Case(id=1, status="open", brand="Fettle", opened_at=T0, last_activity_at=T0)
    later = mention("2", "where is it", minutes=HOUR)
    assert choose_case(later, Link(), "Larkspur", [open_case], config) == (None, "new issue")
    assert choose_case(later, Link(), None, [open_case], config)[0] is open_case
    assert choose_case(later, Link(), "Fettle", [open_case], config)[0] is open_case


def test_a_post_quoting_a_number_that_matches_no_order_is_another_order(pipeline: Pipeline):
    pipeline.ingest([
        mention("1", "@FettleCare where are my boots? ORD-2026-000200", author_handle="hking12"),
        mention("2", "@FettleCare and ORD-2026-009999, where is that one?", minutes=HOUR, author_handle="hking12"),
        # Quoting a real order after a case whose posts quoted only an unknown number: another issue too.
        mention("3", "@FettleCare ORD-2026-000300 the head torch is late", minutes=2 * HOUR, author_handle="hking12"),
    ])
    assert [_posts(pipeline.store, c) for c in _cases(pipeline.store)] == [["1"], ["2"], ["3"]]


def test_praise_and_a_complaint_of_the_same_brand_are_separate_cases_unless_in_one_thread(pipeline: Pipeline):
    pipeline.ingest([
        mention("1", "@FettleCare my boots are lost", author_handle="hking12"),
        mention("2", "@FettleCare thank you, the jacket is lovely", minutes=HOUR, author_handle="hking12"),
        mention("3", "thank you for finding them!", minutes=2 * HOUR, author_handle="hking12", in_reply_to="1"),
    ])
    assert [_posts(pipeline.store, c) for c in _cases(pipeline.store)] == [["1", "3"], ["2"]]


# ----------------------------------------------------------------- agents regroup posts
def test_an_agent_splits_a_post_into_a_new_case_audited_and_versioned(pipeline: Pipeline, config):
    from doorstep.regroup import RegroupError, split_post
    from doorstep.store import StaleCaseError

    store = pipeline.store
    pipeline.ingest([
        mention("1", "@FettleCare my boots are lost", author_handle="hking12"),
        mention("2", "@FettleCare where is my head torch, so late", minutes=HOUR, author_handle="hking12"),
        mention("r2", "@hking12 sorry, we're on it", minutes=2 * HOUR, author_handle="FettleCare", in_reply_to="2",
                outbound=True),
    ])
    case = _cases(store)[0]
    assert _posts(store, case) == ["1", "2", "r2"]
    torch = store.mention_by_external_id("x", "2")
    with pytest.raises(StaleCaseError):
        split_post(store, config, case.id, torch.id, case.version - 1, "ann")  # type: ignore[arg-type, union-attr]
    new = split_post(store, config, case.id, torch.id, case.version, "ann")  # type: ignore[arg-type, union-attr]
    assert _posts(store, new) == ["2", "r2"] and new.mention_count == 1
    assert new.first_response_at == torch.created_at + timedelta(hours=1)  # type: ignore[union-attr]
    left = store.get_case(case.id)  # type: ignore[arg-type]
    assert _posts(store, left) == ["1"] and left.mention_count == 1 and left.version > case.version  # type: ignore[arg-type, union-attr]
    assert not any("repeat contact" in r for r in left.priority_reasons)  # type: ignore[union-attr]
    assert ("ann", "case.split") in [(e.actor, e.action) for e in store.audit_trail(case.id)]
    with pytest.raises(RegroupError, match="only customer post"):
        split_post(store, config, case.id, store.mention_by_external_id("x", "1").id, left.version, "ann")  # type: ignore[arg-type, union-attr]


def test_an_agent_merges_two_cases_of_the_same_customer_only(pipeline: Pipeline, config):
    from doorstep.regroup import RegroupError, merge_cases
    from doorstep.store import StaleCaseError

    store = pipeline.store
    pipeline.ingest([
        mention("1", "@FettleCare where are my boots? ORD-2026-000200", author_handle="hking12"),
        mention("2", "@FettleCare so late, where is it", minutes=3 * DAY, author_handle="hking12"),
        mention("3", "@FettleCare where is my parcel", minutes=3 * DAY, author_handle="stranger"),
    ])
    first, second, strangers = _cases(store)
    store.add_note(second.id, "ann", "same boots, I think")  # type: ignore[arg-type]
    with pytest.raises(RegroupError, match="not the same customer"):
        merge_cases(store, config, first.id, first.version, strangers.id, strangers.version, "ann")  # type: ignore[arg-type]
    with pytest.raises(StaleCaseError):
        merge_cases(store, config, first.id, first.version, second.id, second.version - 1, "ann")  # type: ignore[arg-type]
    kept = merge_cases(store, config, first.id, first.version, second.id, second.version, "ann")  # type: ignore[arg-type]
    assert _posts(store, kept) == ["1", "2"] and kept.mention_count == 2
    assert (kept.order_number, kept.link_confirmed) == ("ORD-2026-000200", True)
    assert [n.text for n in store.notes(kept.id)] == ["same boots, I think"]  # type: ignore[arg-type]
    gone = store.get_case(second.id)  # type: ignore[arg-type]
    assert (gone.status, gone.merged_into, gone.mention_count) == ("resolved", first.id, 0)  # type: ignore[union-attr]
    assert ("ann", "case.merge") in [(e.actor, e.action) for e in store.audit_trail(first.id)]
    with pytest.raises(RegroupError, match="already merged"):
        merge_cases(store, config, first.id, kept.version, second.id, gone.version, "ann")  # type: ignore[arg-type, union-attr]


def test_the_cli_shows_splits_and_merges_cases(pipeline: Pipeline, tmp_path):
    from click.testing import CliRunner

    from commands.cli import cli

    store = pipeline.store
    pipeline.ingest([
        mention("1", "@FettleCare my boots are lost", author_handle="hking12"),
        mention("2", "@FettleCare where is my head torch, so late", minutes=HOUR, author_handle="hking12"),
    ])
    case = _cases(store)[0]
    torch = store.mention_by_external_id("x", "2")
    db = ["--db", store.path]
    shown = CliRunner().invoke(cli, [*db, "case", "show", str(case.id)])
    assert shown.exit_code == 0 and f"version {case.version}" in shown.output and f"post {torch.id}" in shown.output  # type: ignore[union-attr]
    stale = CliRunner().invoke(cli, [*db, "case", "split", str(case.id), "--post", str(torch.id),  # type: ignore[union-attr]
                                     "--version", str(case.version - 1)])
    assert stale.exit_code == 1 and "changed" in stale.output and "Traceback" not in stale.output
    split = CliRunner().invoke(cli, [*db, "case", "split", str(case.id), "--post", str(torch.id), "--as", "ann"])  # type: ignore[union-attr]
    assert split.exit_code == 0, split.output
    new_id = int(split.output.split("new case ")[1].split()[0])
    merged = CliRunner().invoke(cli, [*db, "case", "merge", str(case.id), str(new_id), "--as", "ann"])
    assert merged.exit_code == 0, merged.output
    assert _posts(store, store.get_case(case.id)) == ["1", "2"]  # type: ignore[arg-type]
    assert store.get_case(new_id).merged_into == case.id  # type: ignore[union-attr]


def test_a_reply_in_the_thread_of_a_merged_case_goes_to_the_case_it_was_merged_into(pipeline: Pipeline, config):
    from doorstep.regroup import merge_cases

    store = pipeline.store
    pipeline.ingest([
        mention("1", "@FettleCare where are my boots? ORD-2026-000200", author_handle="hking12"),
        mention("2", "@FettleCare so late, where is it", minutes=3 * DAY, author_handle="hking12"),
    ])
    first, second = _cases(store)
    merge_cases(store, config, first.id, first.version, second.id, second.version, "ann")  # type: ignore[arg-type]
    pipeline.ingest([
        mention("3", "any news?", minutes=3 * DAY + HOUR, author_handle="hking12", in_reply_to="2"),
        mention("r3", "@hking12 on its way", minutes=3 * DAY + 2 * HOUR, author_handle="FettleCare",
                in_reply_to="3", outbound=True),
        mention("4", "@FettleCare ORD-2026-000200 still nothing", minutes=3 * DAY + 3 * HOUR, author_handle="hking12"),
    ])
    assert _posts(store, store.get_case(first.id)) == ["1", "2", "3", "r3", "4"]  # type: ignore[arg-type]
    assert store.get_case(second.id).mention_count == 0  # type: ignore[union-attr]


def test_a_bad_case_window_in_doorstep_toml_names_the_key():
    from doorstep.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"cases\.join_window_hours"):
        parse_config({"cases": {"join_window_hours": -1}})


def test_a_merged_case_is_not_counted_as_an_issue_of_its_own_in_the_figures(pipeline: Pipeline, config):
    from doorstep.metrics import headline, notable_cases
    from doorstep.regroup import merge_cases

    store = pipeline.store
    pipeline.ingest([
        mention("1", "@FettleCare where are my boots? ORD-2026-000200", author_handle="hking12"),
        mention("2", "@FettleCare so late, where is it", minutes=3 * DAY, author_handle="hking12"),
    ])
    window = (T0 - timedelta(days=1), T0 + timedelta(days=7), "Europe/London")
    assert headline(store, *window)["cases_opened"] == 2
    first, second = _cases(store)
    merge_cases(store, config, first.id, first.version, second.id, second.version, "ann")  # type: ignore[arg-type]
    assert headline(store, *window)["cases_opened"] == 1
    assert second.id not in {c["case_id"] for c in notable_cases(store, *window)}


@pytest.mark.parametrize(("method", "confirmed", "expected"), [
    ("order_number", True, "order ORD-1 · confirmed (its customer quoted the order number)"),
    ("agent", True, "order ORD-1 · confirmed (linked by an agent)"),
    ("recent_order", False, "possible order ORD-1 (40 %) — not confirmed (the customer's most likely open order)"),
    ("order_number", False, "order ORD-1 quoted — not confirmed: nothing shows the author is its customer"),
    ("agent", False, "order ORD-1 linked by an agent — not confirmed: its customer is not the author"),
])
def test_the_link_reads_honestly(method: str, confirmed: bool, expected: str):
    # a case a post opened has its network and author (one Doorstep opened for a parcel has neither, and says so)
    case = Case(order_number="ORD-1", link_method=method, link_confidence=0.4, link_confirmed=confirmed, channel="x",
                author_handle="hannah_pr")
    assert describe_link(case) == expected


# ------------------------------------------------------------ strangers in a customer's case
def _with_bob(store: Store) -> None:
    store.upsert_customers([Customer(id="c-bob", name="Bob Brown", email="bob@example.org", handles={"x": "bob_b"})])
    store.upsert_orders([Order(number="ORD-2026-000900", customer_id="c-bob", placed_at=T0 - timedelta(days=2),
                               brand="Larkspur", items=["lamp"])])


def test_a_stranger_who_quoted_the_customers_order_does_not_get_the_customers_post(pipeline: Pipeline):
    # Anyone can type an order number: the stranger's case only suggests the order, unconfirmed.
    pipeline.ingest([mention("z1", "@LarkspurHelp where is ORD-2026-000100 ??", author_handle="random_troll")])
    # The order's customer quotes it later: her post opens her own case, not the stranger's.
    pipeline.ingest([mention("h1", "@LarkspurHelp where is my duvet ORD-2026-000100", minutes=DAY,
                             author_handle="hking12")])
    cases = _cases(pipeline.store)
    assert [_posts(pipeline.store, c) for c in cases] == [["z1"], ["h1"]]
    stranger, own = cases
    assert (stranger.author_handle, stranger.link_confirmed) == ("random_troll", False)
    assert (own.author_handle, own.customer_id, own.order_number, own.link_confirmed) == (
        "hking12", "c-hk", "ORD-2026-000100", True)


def test_a_confirmed_case_about_the_order_still_takes_the_customers_post_from_another_network(pipeline: Pipeline):
    pipeline.ingest([
        mention("x1", "@LarkspurHelp where is my duvet ORD-2026-000100", author_handle="hking12"),
        mention("m1", "@LarkspurHelp any news on ORD-2026-000100?", minutes=3 * DAY, channel="mastodon",
                author_handle="hking@mastodon.social"),
    ])
    cases = _cases(pipeline.store)
    assert len(cases) == 1 and _posts(pipeline.store, cases[0]) == ["x1", "m1"]


def test_another_customer_quoting_their_order_in_the_thread_does_not_relink_the_case(pipeline: Pipeline):
    _with_bob(pipeline.store)
    pipeline.ingest([mention("h1", "@LarkspurHelp where is my duvet ORD-2026-000100", author_handle="hking12")])
    pipeline.ingest([mention("b1", "same here, my ORD-2026-000900 is late too", minutes=10, author_handle="bob_b",
                             in_reply_to="h1", thread_id="h1")])
    (case,) = [c for c in _cases(pipeline.store) if "h1" in _posts(pipeline.store, c)]
    assert (case.customer_id, case.order_number, case.tracking_number, case.link_confirmed) == (
        "c-hk", "ORD-2026-000100", UPS, True)


def test_another_customer_in_the_thread_of_a_guessed_case_does_not_take_it_over(pipeline: Pipeline):
    _with_bob(pipeline.store)
    pipeline.ingest([mention("h1", "@LarkspurHelp my parcel has not come", author_handle="hking12")])
    before = _cases(pipeline.store)[0]
    pipeline.ingest([mention("b1", "same here, my ORD-2026-000900 is late too", minutes=10, author_handle="bob_b",
                             in_reply_to="h1", thread_id="h1")])
    after = pipeline.store.get_case(before.id)
    assert (after.customer_id, after.order_number, after.link_method, after.link_confirmed) == (
        before.customer_id, before.order_number, before.link_method, before.link_confirmed)


def test_a_strangers_post_does_not_end_the_wait_for_the_customer(pipeline: Pipeline):
    store = pipeline.store
    pipeline.ingest([mention("h1", "@LarkspurHelp where is my duvet ORD-2026-000100", author_handle="hking12")])
    case = _cases(store)[0]
    case = store.update_case(case.id, case.version, "agent", status="pending_customer")
    pipeline.ingest([mention("z1", "any update on this?", minutes=HOUR, author_handle="random_troll",
                             in_reply_to="h1", thread_id="h1")])
    after = store.get_case(case.id)
    assert _posts(store, after) == ["h1", "z1"]
    assert (after.status, after.sla_paused_at, after.next_response_due) == (
        "pending_customer", case.sla_paused_at, case.next_response_due)
    pipeline.ingest([mention("h2", "still nothing", minutes=2 * HOUR, author_handle="hking12",
                             in_reply_to="h1", thread_id="h1")])
    assert store.get_case(case.id).status == "open"


def test_strangers_posts_in_the_thread_do_not_set_the_customers_priority(pipeline: Pipeline):
    store = pipeline.store
    pipeline.ingest([mention("h1", "@LarkspurHelp my lamp has not come yet", author_handle="hking12",
                             author_followers=12)])
    before = _cases(store)[0]
    pipeline.ingest([
        mention("z1", "this is a disgrace, my parcel is lost!! urgent", minutes=10, author_handle="loud",
                author_followers=250_000, in_reply_to="h1", thread_id="h1"),
        mention("z2", "same, lost parcel, terrible, urgent", minutes=20, author_handle="loud2",
                in_reply_to="h1", thread_id="h1"),
    ])
    after = store.get_case(before.id)
    assert _posts(store, after) == ["h1", "z1", "z2"]
    assert (after.priority, after.priority_reasons, after.intent, after.complaint) == (
        before.priority, before.priority_reasons, before.intent, before.complaint)
    # Each post records whether it speaks for the case's customer; the case's peak and contact count
    # are the customer's.
    flags = {m.external_id: m.by_customer for m in store.mentions_for_case(after.id)}  # type: ignore[arg-type]
    assert flags == {"h1": True, "z1": False, "z2": False}
    assert store.peak_mention(after.id).external_id == "h1"  # type: ignore[arg-type, union-attr]
    assert store.contact_count(after.id) == 1  # type: ignore[arg-type]
    # The customer's own follow-up still counts, as before.
    pipeline.ingest([mention("h2", "still nothing, where is it? so late", minutes=30, author_handle="hking12",
                             in_reply_to="z2", thread_id="h1")])
    again = store.get_case(before.id)
    assert again.complaint and "repeat contact (+8)" in again.priority_reasons  # type: ignore[union-attr]
    assert not any("followers" in r for r in again.priority_reasons)  # type: ignore[union-attr]


def test_a_post_stored_before_the_flag_was_recorded_counts_as_the_customers(pipeline: Pipeline):
    """Rows written before m022 hold NULL: they count in the peak and contact count, as they always did."""
    store = pipeline.store
    pipeline.ingest([
        mention("h1", "@LarkspurHelp my lamp has not come yet", author_handle="hking12"),
        mention("z1", "this is a disgrace, my parcel is lost!! urgent", minutes=10, author_handle="loud",
                in_reply_to="h1", thread_id="h1"),
    ])
    case = _cases(store)[0]
    assert store.peak_mention(case.id).external_id == "h1"  # type: ignore[arg-type, union-attr]
    store.db.execute("update mentions set by_customer = null")
    assert store.get_mention(store.mention_by_external_id("x", "z1").id).by_customer is None  # type: ignore[union-attr, arg-type]
    assert store.peak_mention(case.id).external_id == "z1"  # type: ignore[arg-type, union-attr]
    assert store.peak_mentions([case.id])[case.id].external_id == "z1"  # type: ignore[index, list-item]
    assert store.contact_count(case.id) == 2 and store.contact_counts([case.id]) == {case.id: 2}  # type: ignore[arg-type, dict-item, list-item]


def test_a_strangers_post_split_out_of_the_customers_case_is_its_new_cases_customers(pipeline: Pipeline, config):
    """Splitting and merging works out again whose each post is: a stranger's post split into a case of
    its own is that case's customer's, and scores it; the case it left stays scored on its customer."""
    from doorstep.regroup import merge_cases, split_post

    store = pipeline.store
    pipeline.ingest([mention("h1", "@LarkspurHelp my lamp has not come yet", author_handle="hking12",
                             author_followers=12)])
    before = _cases(store)[0]
    pipeline.ingest([mention("z1", "this is a disgrace, my parcel is lost!! urgent", minutes=10, author_handle="loud",
                             author_followers=250_000, in_reply_to="h1", thread_id="h1")])
    case = store.get_case(before.id)
    loud = store.mention_by_external_id("x", "z1")
    assert loud.by_customer is False  # type: ignore[union-attr]
    new = split_post(store, config, case.id, loud.id, case.version, "ann")  # type: ignore[arg-type, union-attr]
    assert store.get_mention(loud.id).by_customer is True  # type: ignore[arg-type, union-attr]
    assert store.peak_mention(new.id).external_id == "z1" and store.contact_count(new.id) == 1  # type: ignore[arg-type, union-attr]
    assert new.complaint and new.intent == "lost_or_missing" and "250,000 followers (+12)" in new.priority_reasons
    left = store.get_case(case.id)  # type: ignore[arg-type]
    assert (left.priority, left.priority_reasons, left.intent, left.complaint) == (  # type: ignore[union-attr]
        before.priority, before.priority_reasons, before.intent, before.complaint)
    # Merged back (an agent's mistake undone by hand, the same customer's cases only): the stranger's
    # post is a stranger's again in the customer's case.
    pipeline.ingest([mention("h2", "@LarkspurHelp any news on the lamp?", minutes=4 * DAY, author_handle="hking12")])
    first, _, second = _cases(store)
    assert _posts(store, second) == ["h2"]
    store.set_mention_case(loud.id, second.id)  # type: ignore[arg-type, union-attr]
    kept = merge_cases(store, config, first.id, first.version, second.id, second.version, "ann")  # type: ignore[arg-type]
    assert store.get_mention(loud.id).by_customer is False  # type: ignore[arg-type, union-attr]
    assert not kept.complaint and not any("followers" in r for r in kept.priority_reasons)


@pytest.mark.parametrize("batch_size", [1, 500])
def test_a_strangers_post_on_a_resolved_case_opens_their_own_case_in_that_thread(pipeline: Pipeline, batch_size: int):
    """Nobody watches a resolved case: someone else answering in its thread gets a case of their own
    (in that conversation), their later posts there join it, and only the customer's post reopens the
    customer's case. Our replies go to the case of the post they answer. A batch decides as posts one at
    a time do."""
    store = pipeline.store
    pipeline.batch_size = batch_size
    pipeline.ingest([mention("h1", "@FettleCare my boots are lost", author_handle="hking12")])
    customers = _cases(store)[0]
    store.update_case(customers.id, customers.version, "amy", status="resolved",  # type: ignore[arg-type]
                      resolved_at=T0 + timedelta(hours=1))
    pipeline.ingest([
        mention("z1", "where is my parcel, so late", minutes=2 * HOUR, author_handle="loud", in_reply_to="h1",
                thread_id="h1", author_followers=250_000),
        mention("z2", "any news on mine?", minutes=3 * HOUR, author_handle="loud", in_reply_to="h1", thread_id="h1"),
        mention("h2", "the boots are still lost", minutes=4 * HOUR, author_handle="hking12", in_reply_to="h1",
                thread_id="h1"),
        mention("z3", "still nothing for me", minutes=5 * HOUR, author_handle="loud", in_reply_to="z1",
                thread_id="h1"),
        mention("r1", "@loud sorry, we are on it", minutes=6 * HOUR, author_handle="FettleCare", in_reply_to="z1",
                thread_id="h1", outbound=True),
        mention("r2", "@hking12 sorry, we are on it", minutes=7 * HOUR, author_handle="FettleCare", in_reply_to="h2",
                thread_id="h1", outbound=True),
    ])
    first, own = _cases(store)
    assert first.id == customers.id
    assert (_posts(store, first), first.status, first.author_handle) == (["h1", "h2", "r2"], "open", "hking12")
    assert (_posts(store, own), own.status, own.author_handle, own.channel, own.thread_id) == (
        ["z1", "z2", "z3", "r1"], "new", "loud", "x", "h1")
    assert own.intent == "late_delivery" and "250,000 followers (+12)" in own.priority_reasons
    assert not any("followers" in r for r in first.priority_reasons)
    assert {m.external_id: m.by_customer for m in store.mentions_for_case(own.id) if not m.outbound} == {  # type: ignore[arg-type]
        "z1": True, "z2": True, "z3": True}
    assert own.first_response_at == T0 + timedelta(hours=6) and first.first_response_at == T0 + timedelta(hours=7)
    actions = [(e.action, e.case_id) for e in store.audit_trail(first.id)]  # type: ignore[arg-type]
    assert actions.count(("case.reopen", first.id)) == 1


def test_a_database_from_before_the_flag_keeps_its_posts_counting(pipeline: Pipeline):
    """m022 adds ``mentions.by_customer`` to a database that has posts (SQLite and PostgreSQL alike):
    they stay NULL, which counts, so the old database's cases read as they did until posts are regrouped."""
    store = pipeline.store
    pipeline.ingest([
        mention("h1", "@LarkspurHelp my lamp has not come yet", author_handle="hking12"),
        mention("z1", "this is a disgrace, my parcel is lost!! urgent", minutes=10, author_handle="loud",
                in_reply_to="h1", thread_id="h1"),
    ])
    # The database as it was before m022: no column, the migration not applied.
    store.db.execute("alter table mentions drop column by_customer")
    store.db.execute("delete from _sqlite_migrations where name = 'm022_mentions_by_customer'")
    if not store.dialect.postgres:
        store.db.conn.commit()
    assert "by_customer" not in store.db["mentions"].columns_dict
    reopened = Store(store.path)
    try:
        assert "by_customer" in reopened.db["mentions"].columns_dict
        assert [m.by_customer for m in reopened.mentions_for_case(_cases(reopened)[0].id)] == [None, None]  # type: ignore[arg-type]
        assert reopened.peak_mention(_cases(reopened)[0].id).external_id == "z1"  # type: ignore[arg-type, union-attr]
    finally:
        reopened.close()
