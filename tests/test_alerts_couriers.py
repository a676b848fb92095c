"""A complaint spike about one courier is one spike, however the shop's order export spelled the courier.

Before: responders/alerts.py counted complaints per raw ``cases.courier``, so "UPS", "ups" and "UPS "
were three couriers with a third of the complaints each, and a spike about UPS could go unnoticed.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from doorstep.config import WEEKDAYS, parse_config
from doorstep.models import Case, Mention
from doorstep.store import Store
from responders.alerts import detect_spikes, evaluate

from conftest import labels

#: A Monday, 10:00 UTC; "the last hour" is 09:00-10:00.
NOW = datetime(2026, 11, 16, 10, 0, tzinfo=timezone.utc)


def courier_config():
    always = {day: "00:00-24:00" for day in WEEKDAYS}
    rules = {"urgent_complaint": False, "vip_author": False, "sla_breach": False, "listener_unhealthy": False,
             "spike": {"enabled": True, "dimensions": ["courier"]}}
    return parse_config({"brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}}],
                         "couriers": [{"name": "UPS", "tracking_formats": ["ups"]}],
                         "alerts": rules, "business_hours": {**always, "country": ""}})


def _complaints(store: Store, courier: str, count: int, hour_start: datetime, serial: list[int]) -> None:
    """``count`` complaints in the hour from ``hour_start``, on a case whose courier is spelled ``courier``."""
    case_id = store.insert_case(Case(brand="Larkspur", channel="x", courier=courier, opened_at=NOW - timedelta(weeks=5)))
    complaint = labels("late_delivery", "negative", True, 0.4)
    for i in range(count):
        serial[0] += 1
        store.insert_mention(Mention(
            channel="x", external_id=f"c{serial[0]}", text="@LarkspurHelp where is my parcel", labels=complaint,
            created_at=hour_start + timedelta(seconds=(i * 3600) // count), case_id=case_id,
            author_handle=f"user{serial[0]}"))


def _traffic(store: Store) -> None:
    """A day of one UPS complaint an hour, then 21 in the last hour, written "UPS", "ups" and "UPS "."""
    serial = [0]
    with store.transaction():
        for hours_back in range(24, 0, -1):
            _complaints(store, "UPS", 1, NOW - timedelta(hours=hours_back + 1), serial)
        for spelling in ("UPS", "ups", "UPS "):
            _complaints(store, spelling, 7, NOW - timedelta(hours=1), serial)


def test_a_courier_spelled_three_ways_is_one_courier_in_the_spike_counts(store: Store) -> None:
    _traffic(store)
    results = {(dimension, value): result for dimension, value, result in detect_spikes(store, courier_config(), NOW)}
    assert list(results) == [("courier", "UPS")], results
    result = results[("courier", "UPS")]
    assert result.observed == 21 and result.spike, result


def test_the_spike_alert_names_the_configured_courier_once(store: Store) -> None:
    _traffic(store)
    spikes = [f for f in evaluate(store, courier_config(), NOW) if f.rule == "spike"]
    assert [f.subject for f in spikes] == ["courier:UPS"], spikes
    assert "21 complaints about courier UPS" in spikes[0].why
