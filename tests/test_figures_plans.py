"""The dashboard's figures read what they count on a shop a year old (scale audit, 2026-12-07).

On 200,500 posts and 131,936 cases the Dashboard took 4-8 s to open: ``data_gaps`` read every X post of the year
through the (channel, author_handle) index, the count of cases closed as spam read every resolved case (three
times per view: the headline was computed twice), and ``notable_cases`` fetched each case's quoted post one by one
before keeping 500 (2,298 queries for a week). SQLite's plans are checked here (PostgreSQL plans by statistics);
the rest on both stores.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from doorstep import metrics
from doorstep.models import Case, Mention
from doorstep.store import Store

from conftest import T0, labels


def _plan(store: Store, sql: str, params: list) -> str:
    return " ".join(str(r) for r in store.db.execute("explain query plan " + sql, params).fetchall())


def test_each_networks_posts_of_the_window_are_read_by_network_and_time(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "plans.db"))
    plan = _plan(store, "select created_at from mentions where outbound = 0 and channel = ? and created_at >= ? "
                 "and created_at < ?", ["x", "2026-01-01", "2026-02-01"])
    assert "idx_mentions_channel_inbound_created" in plan, plan


def test_the_spam_count_reads_the_spam_cases_only(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "plans.db"))
    plan = _plan(store, "select count(*) from cases c where c.closed_as = 'spam' and c.resolved_at >= ? "
                 "and c.resolved_at < ? and c.merged_into is null", ["2026-01-01", "2026-02-01"])
    assert "idx_cases_spam_resolved" in plan, plan


def test_the_dashboard_computes_its_headline_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = metrics.headline
    monkeypatch.setattr(metrics, "headline", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    metrics.dashboard(store, T0, T0 + timedelta(days=7), "Europe/London")
    assert sorted(calls) == [T0 - timedelta(days=7), T0], calls  # this window and the one before, once each


def test_notable_cases_fetch_the_quoted_posts_of_the_cases_kept_in_one_go(store: Store,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(6):
        at = T0 + timedelta(hours=n)
        case_id = store.insert_case(Case(status="open", brand="Larkspur", channel="x", author_handle=f"c{n}",
                                         opened_at=at, last_activity_at=at, first_response_due=at + timedelta(hours=1),
                                         resolution_due=at + timedelta(hours=2), priority=float(n), mention_count=1))
        store.insert_mention(Mention(channel="x", external_id=f"p{n}", text=f"where is parcel {n}", created_at=at,
                                     author_handle=f"c{n}", case_id=case_id, labels=labels("late_delivery")))
    monkeypatch.setattr(type(store), "peak_mention", lambda *a: pytest.fail("one query per case"))
    kept = metrics.notable_cases(store, T0, T0 + timedelta(days=7), "Europe/London", limit=3)
    assert [r["text"] for r in kept] == ["where is parcel 5", "where is parcel 4", "where is parcel 3"], kept


def test_the_reports_pages_first_and_last_post_are_read_from_the_time_index(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "plans.db"))
    for end in ("min", "max"):
        plan = _plan(store, f"select {end}(created_at) from mentions where outbound = 0", [])
        assert "SEARCH mentions USING INDEX idx_mentions_created_at" in plan, plan
    from doorstep.reports import weeks_with_data

    from test_metrics import fixture_config

    assert weeks_with_data(store, fixture_config()) == []
