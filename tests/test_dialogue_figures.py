"""The dialogue's figures ("answers to our questions") recomputed by hand: per brand, and the median
as every other median in the reports (linear interpolation, metrics.percentile)."""

from __future__ import annotations

import statistics
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from doorstep import dialogue as rows
from doorstep.models import Case
from doorstep.store import Store, iso

ASKED = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
#: (brand, minutes to answer) for four e-mail questions.
QUESTIONS = [("Larkspur", 10), ("Larkspur", 50), ("Fettle", 30), ("Fettle", 40)]


def _store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "q.db")
    for i, (brand, minutes) in enumerate(QUESTIONS):
        case_id = store.insert_case(Case(status="open", brand=brand, channel="x", author_handle=f"c{i}", opened_at=ASKED,
                                         last_activity_at=ASKED, mention_count=1))
        asked = ASKED + timedelta(hours=i)
        store.db.execute("insert into questions (case_id, rule, channel, target, token, asked_at, status, answered_at) "
                         "values (?, 'safe_place', 'email', 'a@example.com', ?, ?, 'answered', ?)",
                         [case_id, f"t{i}", iso(asked), iso(asked + timedelta(minutes=minutes))])
    return store


def test_answer_rates_median_and_brand(tmp_path: Path) -> None:
    store = _store(tmp_path)
    start, end = ASKED - timedelta(days=1), ASKED + timedelta(days=1)
    expected = {None: [m for _, m in QUESTIONS]}
    for brand in ("Larkspur", "Fettle"):
        expected[brand] = [m for b, m in QUESTIONS if b == brand]
    for brand, minutes in expected.items():
        [email] = rows.answer_rates(store, start, end, ZoneInfo("Europe/London"), brand=brand)
        assert (email["asked"], email["answered"]) == (len(minutes), len(minutes))
        assert email["median_minutes"] == statistics.median(minutes), brand  # 30 (not 50), 35 and 35 (not 40)
    store.close()
