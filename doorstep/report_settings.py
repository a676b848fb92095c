"""``[reports]`` settings of doorstep.toml, checked by every ``doorstep`` command at start.

Apart from :mod:`doorstep.reports` because every command runs this check, and that module brings
the store, sqlite-utils and pandas with it (~90 MB, 0.4 s): ``doorstep classify`` needs none of
them, and its peak memory is a goal of its own (issue 15).
"""

from __future__ import annotations

import re
from datetime import time

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from doorstep.config import Config, ConfigError, config_source, format_validation_error

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


class ReportSettings(BaseModel):
    """``[reports]`` in doorstep.toml."""

    model_config = ConfigDict(extra="forbid")

    #: Local day and time of the weekly send, e.g. "Mon 08:00" (the previous ISO week is sent).
    weekly_at: str = "Mon 08:00"
    recipients: list[str] = Field(default_factory=list)
    #: Slack incoming-webhook URL for a short summary (optional; also $REPORTS_SLACK_WEBHOOK_URL).
    slack_webhook_url: str | None = None
    #: Only this brand's figures (None: every brand).
    brand: str | None = None
    attach_pdf: bool = True
    #: Failed sends are retried this many times, waiting retry_minutes * 2^attempt (at most 6 h).
    max_attempts: int = Field(default=8, ge=1)
    retry_minutes: float = Field(default=5.0, gt=0)
    #: How often the worker checks whether a report is due.
    check_seconds: float = Field(default=60.0, gt=0)
    #: A worker that was down at the send time still sends within this many hours; later, that
    #: week is skipped (a report a week late helps nobody, and a fresh install must not mail old weeks).
    catch_up_hours: float = Field(default=72.0, gt=0)

    @field_validator("weekly_at")
    @classmethod
    def _weekly_at(cls, value: str) -> str:
        parse_weekly_at(value)
        return value

    @field_validator("recipients")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        for index, address in enumerate(value):
            if not re.fullmatch(r"[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+", address.strip()):
                raise ValueError(f"recipient {index + 1} ({address!r}) is not an email address")
        return [a.strip() for a in value]


def parse_weekly_at(value: str) -> tuple[int, time]:
    """"Mon 08:00" -> (0, 08:00). Raises ValueError naming the expected form."""
    match = re.fullmatch(r"\s*([A-Za-z]{3})[a-z]*\s+(\d{1,2}):(\d{2})\s*", value)
    if not match or match.group(1).lower() not in _DAYS or int(match.group(2)) > 23 or int(match.group(3)) > 59:
        raise ValueError(f"{value!r}: expected a day and a 24-hour time, e.g. \"Mon 08:00\"")
    return _DAYS[match.group(1).lower()], time(int(match.group(2)), int(match.group(3)))


def report_settings(config: Config) -> ReportSettings:
    try:
        return ReportSettings.model_validate(config.reports or {})
    except ValidationError as exc:
        source = config_source(config)
        raise ConfigError(format_validation_error(source, exc).replace(f"{source}: ", f"{source}: reports.")) from None
