"""Working calendars: how much of the team's time lies between two moments, and when N minutes of it end.

Why a calendar and not ``start + timedelta``: a post written on Friday at 18:00 to a team that
works Monday to Friday 09:00-17:00 is not "overdue 2 days" on Monday at 09:10; its
30-minute first response is due Monday at 09:30. Every SLA clock (doorstep/sla.py) moves
through one of these calendars: the brand's business hours with its country's public holidays
(from the ``holidays`` package), or :data:`ALWAYS` for targets counted around the clock.

Hours are local wall-clock times in the team's zone, turned into UTC day by day, so a day on
which the clocks change is as long as it really is (a 00:00-24:00 Sunday at the end of British
Summer Time has 25 hours).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from doorstep.config import BusinessHours, Config

#: How far a calendar looks for open time before it gives up (a calendar that is open at least
#: one weekday is never closed this long; config validation refuses one that is never open).
MAX_DAYS = 3 * 366

_ZERO = timedelta(0)


class Calendar:
    """Open time of one team: weekly hours in its zone, minus public holidays and closed dates."""

    def __init__(self, hours: BusinessHours, default_zone: str = "Europe/London"):
        self.zone = ZoneInfo(hours.timezone or default_zone)
        self.week = hours.week()
        self.closed_dates = frozenset(hours.closed_dates)
        self.holidays = None
        if hours.country:
            import holidays

            self.holidays = holidays.country_holidays(hours.country, subdiv=hours.subdivision or None)
        self.country = hours.country
        self._days: dict[date, list[tuple[datetime, datetime]]] = {}

    def is_closed_day(self, day: date) -> bool:
        """A public holiday or a configured closed date (the weekly hours aside)."""
        return day in self.closed_dates or (self.holidays is not None and day in self.holidays)

    def open_ranges(self, day: date) -> list[tuple[datetime, datetime]]:
        """The team's open ranges on a local calendar day, as UTC datetimes."""
        ranges = self._days.get(day)
        if ranges is None:
            ranges = []
            if not self.is_closed_day(day):
                midnight = datetime.combine(day, time(0), tzinfo=self.zone)
                for start, end in self.week[day.weekday()]:
                    ranges.append((self._at(day, start, midnight), self._at(day, end, midnight)))
            if len(self._days) > 4096:
                self._days.clear()
            self._days[day] = ranges
        return ranges

    def _at(self, day: date, minute: int, midnight: datetime) -> datetime:
        if minute >= 24 * 60:
            nxt = day + timedelta(days=1)
            return datetime.combine(nxt, time(0), tzinfo=self.zone).astimezone(timezone.utc)
        return datetime.combine(day, time(minute // 60, minute % 60), tzinfo=self.zone).astimezone(timezone.utc)

    def _local_day(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Open time from ``start`` to ``end`` (negative when ``end`` is earlier)."""
        if end < start:
            return -self.between(end, start)
        total = _ZERO
        day = self._local_day(start) - timedelta(days=1)
        last = self._local_day(end) + timedelta(days=1)
        while day <= last:
            for a, b in self.open_ranges(day):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total

    def add(self, start: datetime, amount: timedelta) -> datetime:
        """The moment ``amount`` of open time after ``start`` (before it, when negative).

        A clock started while the team is closed starts running when it opens: 30 minutes
        after Saturday 10:00 is Monday 09:30.
        """
        if amount == _ZERO:
            return start
        if amount < _ZERO:
            return self._back(start, -amount)
        left = amount
        day = self._local_day(start) - timedelta(days=1)
        for _ in range(MAX_DAYS):
            for a, b in self.open_ranges(day):
                if b <= start:
                    continue
                lo = max(a, start)
                if left <= b - lo:
                    return lo + left
                left -= b - lo
            day += timedelta(days=1)
        raise ValueError(f"no open business hours within {MAX_DAYS} days of {start.isoformat()}")

    def _back(self, start: datetime, amount: timedelta) -> datetime:
        left = amount
        day = self._local_day(start) + timedelta(days=1)
        for _ in range(MAX_DAYS):
            for a, b in reversed(self.open_ranges(day)):
                if a >= start:
                    continue
                hi = min(b, start)
                if left <= hi - a:
                    return hi - left
                left -= hi - a
            day -= timedelta(days=1)
        raise ValueError(f"no open business hours within {MAX_DAYS} days before {start.isoformat()}")


class AlwaysOpen:
    """Around the clock: for SLA targets set with ``business_hours = false``."""

    def between(self, start: datetime, end: datetime) -> timedelta:
        return end - start

    def add(self, start: datetime, amount: timedelta) -> datetime:
        return start + amount


ALWAYS = AlwaysOpen()


def calendar_for(config: Config, brand: str | None, business_hours: bool = True) -> Calendar | AlwaysOpen:
    """The calendar a clock of ``brand`` runs on (built once per configuration and brand)."""
    if not business_hours:
        return ALWAYS
    hours = config.hours_for(brand)
    key = id(hours)
    found = config._calendars.get(key)
    if found is None:
        found = config._calendars[key] = Calendar(hours, config.timezone)
    return found
