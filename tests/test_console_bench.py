"""The browser bench's data (bench/console_bench.py): what its interactions look for must exist.

The bench itself drives Chromium at 1M mentions and is run by hand (bench/RESULTS.md); these
checks keep its data honest at a small scale: every case has a customer record with a name and
a linked order whose number the inbox search finds, so "search by order number" and the
rows' customer column measure real work, not an empty result.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture()
def bench(tmp_path: Path) -> Any:
    sys.path.insert(0, str(BENCH))
    try:
        import console_bench
        from inbox_bench import fill
    finally:
        sys.path.remove(str(BENCH))
    from doorstep.store import Store

    store = Store(tmp_path / "bench.db")
    fill(store, 600, 120)
    console_bench.enrich(store)
    console_bench.enrich_customers(store)
    yield console_bench, store
    store.close()


def test_every_case_has_a_named_customer_and_a_findable_order(bench: Any) -> None:
    console_bench, store = bench
    info = console_bench.check_db(store)
    assert info["customer"] == info["order_number"] == info["cases"] == 120
    case_id = console_bench.open_case_id(store, 0)
    assert store.search_cases(console_bench.order_number(case_id)) == [case_id]
    case = store.get_case(case_id)
    assert store.db.execute("select name from customers where id = ?", [case.customer_id]).fetchone()[0].startswith(
        "Customer ")


def test_enrich_customers_runs_once(bench: Any) -> None:
    console_bench, store = bench
    console_bench.enrich_customers(store)  # a reused database: nothing inserted twice
    assert store.count("customers") == console_bench.AUTHORS
    assert store.count("orders") == 120
