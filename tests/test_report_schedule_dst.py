"""The Reports page's schedule across a clock change (time audit L2): the week before the clocks went back,
a send the worker had missed that morning was not mentioned, only the next one, because the page stepped
back a week in UTC and landed after the missed send's local time."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from console.reports import schedule_lines
from doorstep.config import parse_config

LONDON = ZoneInfo("Europe/London")
CONFIG = parse_config({"timezone": "Europe/London",
                       "reports": {"weekly_at": "Mon 08:00", "recipients": ["care-lead@larkspur.example"]}})


@pytest.mark.parametrize("monday", [datetime(2026, 10, 12, 10, 0), datetime(2026, 10, 19, 10, 0),
                                    datetime(2026, 3, 23, 10, 0), datetime(2026, 3, 30, 10, 0)],
                         ids=["two weeks before autumn", "week before autumn", "week before spring", "after spring"])
def test_a_missed_send_that_morning_is_said_whatever_the_clocks_do_next(monday: datetime) -> None:
    now = monday.replace(tzinfo=LONDON).astimezone(timezone.utc)
    lines = schedule_lines(CONFIG, [], now)
    assert lines[0].startswith(f"Due since Mon {monday:%d %b} 08:00"), lines
    assert lines[-1].startswith("Next send: Mon "), lines
