"""Sending the weekly report: the worker's job that mails and posts it once per week and recipient.

Building and rendering the report is the core's (doorstep/reports.py); sending it is outbound
work like any reply, so it lives here, beside the e-mail and Slack senders it uses, and goes
through outbound_messages so a failed send stays visible and retryable.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from doorstep.config import Config
from doorstep.models import utcnow
from doorstep.reports import (
    WeeklyReport, build_weekly_report, last_complete_week, parse_weekly_at, render_html, render_pdf,
    report_settings,
)
from doorstep.store import Store, iso

log = logging.getLogger("responders.reports")


def report_key(week: str, recipient: str) -> str:
    return f"report:{week}:{recipient}"


def report_message_id(key: str) -> str:
    """The Message-ID of one report mail, the same on every retry: ``<report.2026-W47.lead.at.shop.example@DOMAIN>``.

    The domain is that of ``SMTP_FROM``, the address reports come from (it was always
    ``doorstep.local``); characters a Message-ID cannot carry unquoted become ``-``.
    """
    from doorstep.config import secret
    from responders.email import mail_domain

    left = re.sub(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]", "-", key.replace(":", ".").replace("@", ".at."))
    left = re.sub(r"\.{2,}", ".", left).strip(".") or "report"
    return f"<{left}@{mail_domain(secret('SMTP_FROM'))}>"


@dataclass
class WeeklyReportJob:
    """Worker job: at the configured local time, send last week's report to every recipient once.

    ``clock`` and ``send_email``/``post_slack`` are injectable for tests (fake time, local SMTP).
    If the worker was down at the scheduled moment the report goes out when it comes back.
    A send that was interrupted mid-way (status ``sending`` after a crash) is marked failed and
    not retried automatically: the mail may have left, and a duplicate is worse than a person
    pressing retry.
    """

    store: Store
    config: Config
    clock: Callable[[], datetime] = utcnow
    send_email: Callable[..., str] | None = None
    post_slack: Callable[[str, dict[str, Any]], None] | None = None
    name: str = "reports.weekly"
    interval_s: float = 60.0
    _cache: tuple[str, tuple[WeeklyReport, str, list[tuple[str, bytes, str]]]] | None = None

    def __post_init__(self) -> None:
        self.settings = report_settings(self.config)
        self.interval_s = self.settings.check_seconds

    def due_week(self, now: datetime) -> str | None:
        """The week whose report is due at ``now`` (None before this week's send time)."""
        zone = self.config.tz
        local = now.astimezone(zone)
        weekday, at = parse_weekly_at(self.settings.weekly_at)
        monday = local.date() - timedelta(days=local.weekday())
        moment = datetime.combine(monday + timedelta(days=weekday), at, tzinfo=zone)
        if local < moment:
            moment -= timedelta(days=7)
        if local - moment > timedelta(hours=self.settings.catch_up_hours):
            return None
        # The report covers the last full ISO week before the scheduled moment.
        return last_complete_week(moment, zone)

    def run_once(self) -> int:
        """Send what is due; returns the number of messages sent now.

        Report rows are never left ``queued``: the responders' outbox sends queued rows of any
        kind. A row is inserted already claimed (``sending``, with a lease in
        ``next_attempt_at``), waits for a retry as ``failed``, and ends ``sent``. A ``queued``
        report row (a person pressed retry) is picked up here too.
        """
        now = self.clock()
        self._recover_interrupted(now)
        week = self.due_week(now)
        if week is None:
            return 0
        targets = [("email", r) for r in self.settings.recipients]
        if self._slack_url():
            targets.append(("slack", "slack"))
        if not targets:
            return 0
        keys = {report_key(week, target): (channel, target) for channel, target in targets}
        marks = ",".join("?" * len(keys))
        existing = {
            r["idempotency_key"]: r
            for r in self.store.db.query(f"select * from outbound_messages where idempotency_key in ({marks})", list(keys))
        }
        todo = [
            key for key in keys
            if key not in existing
            or existing[key]["status"] == "queued"  # a person pressed retry: the attempt limit does not apply
            or (
                existing[key]["status"] == "failed"
                and (existing[key]["attempts"] or 0) < self.settings.max_attempts
                and (existing[key]["next_attempt_at"] is None or existing[key]["next_attempt_at"] <= iso(now))
            )
        ]
        if not todo:
            return 0
        report, html, attachments = self._rendered(week, now)
        lease = iso(now + timedelta(minutes=30))
        sent = 0
        for key in todo:
            channel, target = keys[key]
            if key not in existing:
                cursor = self.store.db.execute(
                    "insert into outbound_messages (kind, channel, target, text, status, attempts, "
                    "idempotency_key, created_by, created_at, next_attempt_at) "
                    "values ('report', ?, ?, ?, 'sending', 1, ?, 'reports', ?, ?) on conflict do nothing",
                    [channel, target, report.summary_text(), key, iso(now), lease],
                )
                if not cursor.rowcount:
                    continue  # another worker got there first
                message_id, attempts = int(cursor.lastrowid or 0), 1
            else:
                cursor = self.store.db.execute(
                    "update outbound_messages set status = 'sending', attempts = attempts + 1, next_attempt_at = ? "
                    "where id = ? and status in ('queued', 'failed')",
                    [lease, existing[key]["id"]],
                )
                if not cursor.rowcount:
                    continue
                message_id, attempts = existing[key]["id"], (existing[key]["attempts"] or 0) + 1
            sent += self._deliver(message_id, key, channel, target, attempts, report, html, attachments, now)
        return sent

    def _rendered(self, week: str, now: datetime) -> tuple[WeeklyReport, str, list[tuple[str, bytes, str]]]:
        """Build the week's report once per process: every recipient (and every retry) gets the same one."""
        if self._cache is not None and self._cache[0] == week:
            return self._cache[1]
        report = build_weekly_report(self.store, self.config, week, self.settings.brand, redact=True, now=now)
        html = render_html(report)
        attachments: list[tuple[str, bytes, str]] = [(f"weekly-{week}.html", html.encode("utf-8"), "text/html")]
        if self.settings.attach_pdf:
            import tempfile

            notes: list[str] = []
            with tempfile.TemporaryDirectory() as tmp:
                pdf = render_pdf(report, Path(tmp) / "report.pdf", notes=notes).read_bytes()
            for note in notes:  # mailed with boxes for those letters: the operator's log says so, above INFO
                log.warning("weekly report %s: %s", week, note.split(": ", 1)[-1])
            attachments.append((f"weekly-{week}.pdf", pdf, "application/pdf"))
        self._cache = (week, (report, html, attachments))
        return self._cache[1]

    def _slack_url(self) -> str | None:
        from doorstep.config import secret

        return self.settings.slack_webhook_url or secret("REPORTS_SLACK_WEBHOOK_URL")

    def _recover_interrupted(self, now: datetime) -> None:
        for row in self.store.db.query(
            "select id from outbound_messages where kind = 'report' and status = 'sending' "
            "and (next_attempt_at is null or next_attempt_at <= ?)", [iso(now)]
        ):
            self.store.db.execute(
                "update outbound_messages set status = 'failed', attempts = ?, last_error = ? where id = ?",
                [self.settings.max_attempts, "interrupted while sending (the worker stopped); it may have been "
                 "delivered, so it is not retried automatically: retry by hand if it did not arrive", row["id"]],
            )
            self.store.audit("reports", "report.interrupted", None, {"message_id": row["id"]})

    def _deliver(self, message_id: int, key: str, channel: str, target: str, attempts: int, report: WeeklyReport,
                 html: str, attachments: list[Any], now: datetime) -> int:
        db = self.store.db
        try:
            if channel == "slack":
                self._post_slack(report)
                external = "slack"
            else:
                send = self.send_email or _default_send_email
                external = send(
                    self.config,
                    target,
                    f"{report.title} ({report.period})",
                    report.summary_text(),
                    html=html,
                    headers={"Message-ID": report_message_id(key)},
                    attachments=attachments,
                )
        except Exception as exc:  # noqa: BLE001 - any failure is recorded and retried
            from doorstep.redaction import redact, register_secret

            # A Slack webhook URL is itself the credential; requests prints its host and path apart.
            register_secret(self._slack_url(), "slack webhook URL")
            error = redact(f"{type(exc).__name__}: {exc}")
            retryable = getattr(exc, "retryable", True)
            wait = min(self.settings.retry_minutes * (2 ** (attempts - 1)), 360.0)
            db.execute(
                "update outbound_messages set status = 'failed', last_error = ?, next_attempt_at = ?, attempts = ? where id = ?",
                [error[:1000], iso(now + timedelta(minutes=wait)),
                 attempts if retryable else self.settings.max_attempts, message_id],
            )
            self.store.audit("reports", "report.send_failed", None,
                             {"message_id": message_id, "target": target, "week": report.week, "error": error[:300]})
            log.warning("weekly report %s to %s failed (attempt %d): %s", report.week, target, attempts, error)
            return 0
        db.execute(
            "update outbound_messages set status = 'sent', sent_at = ?, external_id = ?, last_error = null, "
            "next_attempt_at = null where id = ?",
            [iso(now), external, message_id],
        )
        self.store.audit("reports", "report.sent", None, {"message_id": message_id, "target": target, "week": report.week})
        return 1

    def _post_slack(self, report: WeeklyReport) -> None:
        url = self._slack_url()
        from responders.channels import slack_payload

        # Plain text, escaped: a finding may carry a brand's or a theme's words (security: no ping, no hidden link).
        lines = [f":warning: {w}" for w in report.warnings] + [f"- {f}" for f in report.findings]
        payload = slack_payload("\n".join(lines), f"{report.title} ({report.period})")
        if self.post_slack is not None:
            self.post_slack(url or "", payload)
            return
        import requests

        response = requests.post(url or "", json=payload, timeout=15)
        response.raise_for_status()


def _default_send_email(*args: Any, **kwargs: Any) -> str:
    from responders.email import send_email

    return send_email(*args, **kwargs)


def jobs(store: Store, config: Config, pipeline: Any) -> list[Any]:
    """The worker's scheduled report job (none when no recipient or Slack webhook is configured)."""
    settings = report_settings(config)
    job = WeeklyReportJob(store, config)
    if not settings.recipients and not job._slack_url():
        return []
    return [job]
