"""The shop's file imports are seen by the team, not only by whoever ran them.

Before: an orders or tracking import run from cron reported itself on its terminal and nowhere else. A
nightly orders file that was refused, or whose rows were half rejected, left linking on yesterday's orders
and nobody in the console knew (left open last stop: "file imports have no listener-health row"). Each
``doorstep import`` now records its run; Settings and the Dashboard show the latest, in words and the
shop's time, on both stores."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from commands.cli import cli
from console.auth import add_user
from doorstep.config import load_config
from doorstep.store import Store
from listeners.files import recent_imports
from tests.conftest import DEMO_CONFIG, console_store, run_page

HEADER = "number,customer_id,placed_at,customer_name\n"


def _import(db: str, kind: str, path: Path, *extra: str) -> str:
    result = CliRunner().invoke(cli, ["--db", db, "--config", DEMO_CONFIG, "import", kind, str(path), *extra])
    return result.output


@pytest.fixture
def shop(db_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Store:
    store = console_store(db_url, request, monkeypatch)
    add_user(store, "lee", "correct horse battery", role="lead", name="Lee", rounds=4)
    add_user(store, "ada", "correct horse battery", role="admin", name="Ada", rounds=4)
    return store


def test_each_import_is_recorded_with_what_it_wrote_and_what_it_refused(shop: Store, db_url: str, tmp_path: Path):
    good = tmp_path / "orders.csv"
    good.write_text(HEADER + "ORD-1,c1,2026-11-01T10:00:00+00:00,Ann Lee\n"
                    "ORD-2,c2,2026-11-01T10:00:00+00:00,Bob Roe\n"
                    "ORD-3,c3,not a date,Cat Lee\n", encoding="utf-8")
    _import(db_url, "orders", good)
    bad = tmp_path / "tracking.csv"
    bad.write_text("tracking_number,time,time\nX,Y,Z\n", encoding="utf-8")  # a column named twice: refused whole
    _import(db_url, "tracking", bad)
    [tracking, orders] = recent_imports(shop)
    assert (orders["kind"], orders["file"], orders["rows"], orders["new"], orders["rejected"], orders["outcome"]) == (
        "orders", str(good), 3, 2, 1, "rows rejected")
    assert "row 4" in orders["message"] and "placed_at" in orders["message"], orders["message"]
    assert (tracking["kind"], tracking["outcome"], tracking["rows"]) == ("tracking", "file refused", 0)
    assert tracking["message"].startswith("row 1: time:") and "twice" in tracking["message"], tracking["message"]


def test_an_import_that_wrote_nothing_says_so(shop: Store, db_url: str, tmp_path: Path):
    path = tmp_path / "orders.csv"
    path.write_text(HEADER + "ORD-1,c1,never,Ann Lee\nORD-2,c2,never,Bob Roe\n", encoding="utf-8")
    _import(db_url, "orders", path)
    [run] = recent_imports(shop)
    assert (run["outcome"], run["rows"], run["new"], run["rejected"]) == ("nothing written", 2, 0, 2)


def test_settings_and_the_dashboard_show_the_latest_imports_in_words(shop: Store, db_url: str, tmp_path: Path):
    config = load_config(DEMO_CONFIG)
    path = tmp_path / "orders.csv"
    path.write_text(HEADER + "ORD-1,c1,2026-11-01T10:00:00+00:00,Ann Lee\nORD-2,c2,never,Bob Roe\n", encoding="utf-8")
    _import(db_url, "orders", path, "--max-rejected", "1")
    [run] = recent_imports(shop)
    for page, user in (("settings", "ada"), ("dashboard", "lee")):
        at = run_page(page, shop, user)
        assert not at.exception, at.exception
        [table] = [d.value for d in at.dataframe if "file" in d.value.columns]
        row = table.iloc[0].to_dict()
        assert row["import"] == "Orders" and row["file"] == "orders.csv", row
        assert row["result"] == "1 of 2 rows rejected", row
        assert row["when"] == config.local_time(run["finished_at"]), row
        assert "row 3: placed_at" in row["first error"], row


def test_an_import_that_wrote_nothing_alerts_the_lead_until_a_later_run_succeeds(db_url: str, tmp_path: Path):
    from tests.test_alerts import alert_config
    from responders.alerts import evaluate

    config = alert_config(listener_unhealthy=True, listener_stale_minutes=15, email="ops@larkspur.test")
    path = tmp_path / "orders.csv"
    path.write_text("number,number\nORD-1,ORD-1\n", encoding="utf-8")  # refused whole
    _import(db_url, "orders", path)
    store = Store(db_url)
    try:
        [firing] = evaluate(store, config)
        assert firing.subject == "import:orders" and "file refused" in firing.why and "twice" in firing.why, firing
        path.write_text(HEADER + "ORD-1,c1,2026-11-01T10:00:00+00:00,Ann Lee\n", encoding="utf-8")
        _import(db_url, "orders", path)
        assert evaluate(store, config) == []
    finally:
        store.close()


def test_a_nightly_file_with_no_rows_alerts_the_lead(db_url: str, tmp_path: Path):
    """Alerts audit, finding 7: a header-only orders file was recorded 'ok' and closed the import alert."""
    from tests.test_alerts import alert_config
    from responders.alerts import evaluate

    config = alert_config(listener_unhealthy=True, listener_stale_minutes=15, email="ops@larkspur.test")
    path = tmp_path / "orders.csv"
    path.write_text(HEADER, encoding="utf-8")
    _import(db_url, "orders", path)
    store = Store(db_url)
    try:
        [firing] = evaluate(store, config)
        assert firing.subject == "import:orders" and "no rows" in firing.why, firing
    finally:
        store.close()


def test_a_file_with_no_rows_exits_non_zero_and_says_so(tmp_path: Path):
    """Final check, finding 3: a header-only orders file exited 0 with "0 orders rows: ..."; README says the exit
    status is 1 when nothing was written, and a cron wrapper reads only that."""
    path = tmp_path / "orders.csv"
    path.write_text(HEADER, encoding="utf-8")
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "shop.db"), "--config", DEMO_CONFIG, "import", "orders",
                                      str(path)])
    assert result.exit_code == 1, result.output
    assert "no rows" in result.output, result.output
