"""The weekly report: self-contained HTML, PDF, masking of personal data, CLI, and the scheduled send
(fake clock, real SMTP client against a local aiosmtpd server on 127.0.0.1)."""

from __future__ import annotations

import email
import random
import socket
from datetime import datetime, timedelta, timezone
from email.message import Message
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from doorstep import reports
from doorstep.config import ConfigError
from doorstep.models import Case, Customer, Labels, Mention
from doorstep.numbers import make_tracking_number
from doorstep.reports import Redactor, build_weekly_report, render_html, render_pdf, report_deliveries
from doorstep.store import Store, iso
from responders.reports import WeeklyReportJob, jobs
from test_metrics import START, fixture_config

UPS = make_tracking_number("ups", random.Random(3))
PII = {
    "handle": "janedoe_77",
    "name": "Jane Doe",
    "email": "jane.doe@example.com",
    "phone": "07700 900123",
    "intl_phone": "+44 20 7946 0958",
    "postcode": "SW1A 1AA",
    "street": "12 Acacia Avenue",
    "order": "#123456",
    "order_long": "ORD-2026-000123",
    "tracking": UPS,
}
PII_POST = (
    f"@LarkspurHelp parcel left in the rain again! I'm {PII['name']}, order {PII['order']} ({PII['order_long']}), "
    f"tracking {PII['tracking']}. Call {PII['phone']} or {PII['intl_phone']}, mail {PII['email']}, "
    f"I live at {PII['street']}, London {PII['postcode']}. cc @{PII['handle']}"
)


def _labels(complaint: bool) -> Labels:
    sentiment = "negative" if complaint else "positive"
    return Labels(sentiment=sentiment, sentiment_scores={sentiment: 1.0}, complaint=complaint,
                  complaint_score=1.0 if complaint else 0.0, intent="failed_delivery" if complaint else "praise",
                  intent_scores={}, urgency=0.9 if complaint else 0.1, model="t")


def small_store(path: Path | str) -> Store:
    """A week with a few complaints about parcels left in the rain, one of them full of personal data."""
    store = Store(path)
    store.upsert_customers([Customer(id="C1", name=PII["name"], email=PII["email"], vip=True, handles={"x": PII["handle"]})])
    texts = [PII_POST] + [f"parcel left in the rain by the driver, day {i}" for i in range(4)] + ["love it, thanks"] * 3
    for i, text in enumerate(texts):
        at = START + timedelta(days=i % 6, hours=9 + i)
        complaint = "rain" in text
        m = Mention(channel="x", external_id=str(i), text=text, created_at=at, author_handle=PII["handle"] if i == 0 else f"u{i}",
                    author_name=PII["name"] if i == 0 else None, labels=_labels(complaint))
        mid = store.insert_mention(m)
        case_id = store.insert_case(Case(
            status="escalated" if i == 0 else "open", brand="Larkspur", channel="x", complaint=complaint,
            author_handle=m.author_handle, customer_id="C1" if i == 0 else None, opened_at=at, last_activity_at=at,
            order_number="123456" if i == 0 else None, tracking_number=UPS if i == 0 else None,
            first_response_due=at + timedelta(hours=1), first_response_at=at + timedelta(minutes=20 + 10 * i),
            priority=90 - i, mention_count=1))
        store.set_mention_case(mid, case_id)
    return store


@pytest.fixture
def store(db_url: str) -> Store:
    """The small shop, on SQLite and on PostgreSQL."""
    s = small_store(db_url)
    yield s
    s.close()


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "srcset", "background", "poster", "data") and value:
                self.refs.append((tag, name, value))


# ------------------------------------------------------------------------------ rendering
def test_generated_line_is_on_the_shops_clock_with_its_zone_name(store: Store) -> None:
    """A lead in London read "generated 2026-07-06 08:00 UTC" for a report made at 09:00 on their clock (time audit):
    the line is in the shop's zone and names it (BST in summer, GMT in winter), as the period line does."""
    config = fixture_config()
    config.timezone = "Europe/London"
    summer = build_weekly_report(store, config, "2026-W47", now=datetime(2026, 7, 6, 8, 0, tzinfo=timezone.utc))
    assert "generated 2026-07-06 09:00 BST" in render_html(summer)
    winter = build_weekly_report(store, config, "2026-W47", now=datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc))
    html = render_html(winter)
    assert "generated 2026-12-07 08:00 GMT" in html and "UTC</div>" not in html


def test_html_is_self_contained_and_accessible(store: Store) -> None:
    report = build_weekly_report(store, fixture_config(), "2026-W47")
    html = render_html(report)
    parser = _Links()
    parser.feed(html)
    images = [v for t, n, v in parser.refs if t == "img"]
    assert images and all(v.startswith("data:image/png;base64,") for v in images)
    assert not [r for r in parser.refs if r[2].startswith(("http:", "https:", "//"))]
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert html.count('alt="') == len(images) and 'alt=""' not in html
    # Chart titles state the finding, with the number.
    assert "Failed delivery drove 100 % of complaints" in html


def test_pdf_file_is_a_pdf(store: Store, tmp_path: Path) -> None:
    report = build_weekly_report(store, fixture_config(), "2026-W47")
    path = render_pdf(report, tmp_path / "out" / "r.pdf")
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 20_000  # with embedded charts
    html_path = render_pdf(render_html(report), tmp_path / "from-html.pdf")
    assert html_path.read_bytes().startswith(b"%PDF")


def test_personal_data_masked_by_default_and_kept_when_asked(store: Store) -> None:
    config = fixture_config()
    masked = render_html(build_weekly_report(store, config, "2026-W47"))
    for kind, value in PII.items():
        assert value not in masked, kind
    assert "Jane" not in masked and "Acacia" not in masked and "123456" not in masked
    assert "[email]" in masked and "[tracking no.]" in masked and "[postcode]" in masked
    assert "@LarkspurHelp" in masked  # our own public handle is not personal data
    assert not [e for e in store.audit_trail() if e.action == "report.unredacted"]

    internal = render_html(build_weekly_report(store, config, "2026-W47", redact=False, actor="lead@shop"))
    for kind, value in PII.items():
        assert value in internal, kind
    assert "NOT REDACTED" in internal
    audit = [e for e in store.audit_trail() if e.action == "report.unredacted"]
    assert len(audit) == 1 and audit[0].actor == "lead@shop" and audit[0].details["week"] == "2026-W47"


@pytest.mark.parametrize(
    "text, leaked",
    [
        ("ring me on 07700 900123 please", "900123"),
        ("ring me on +44 7700 900 123", "7700"),
        ("US number (415) 555-0132", "555"),
        ("order ORD-2026-000123 never came", "000123"),
        ("send it to 221B Baker Street", "Baker"),
        ("postcode is m1 1ae", "m1 1ae"),
        ("my name is Priya Patel and I'm cross", "Priya"),
        (f"tracking {UPS[:6]} {UPS[6:]}", UPS[-4:]),
        ("email me: a.b+care@mail.co.uk", "mail.co.uk"),
        ("card ending 4111 1111 1111 1111", "1111 1111"),
        ("thanks @jane.bsky.social for nothing", "jane"),
        ("cc @bob@mastodon.social", "bob"),
    ],
)
def test_redactor_patterns(text: str, leaked: str) -> None:
    assert leaked not in (Redactor(fixture_config()).text(text) or "")


def test_redactor_keeps_ordinary_words_and_prices() -> None:
    r = Redactor(fixture_config())
    assert r.text("paid £25.99 for 2 mugs, arrived on 12 May") == "paid £25.99 for 2 mugs, arrived on 12 May"
    assert r.text("hello Jane", names=["Jane Smith"]) == "hello [name]"
    assert r.text("it's jane_doe here, @DPD_UK please", handles=["jane_doe"]) == "it's [handle] here, @DPD_UK please"


def test_week_without_listener_problems_says_data_is_complete(store: Store) -> None:
    store.db.execute("insert into listener_health (name, last_success_at, errors) values ('x', ?, 0)",
                     [iso(datetime.now(timezone.utc))])
    html = render_html(build_weekly_report(store, fixture_config(), "2026-W47"))
    assert "every listener polled successfully" in html
    store.db.execute("delete from listener_health")
    store.db.execute("insert into listener_health (name, last_success_at, last_error_at, last_error, errors) "
                     "values ('x', ?, ?, 'token expired', 9)", [iso(START + timedelta(days=1)), iso(START + timedelta(days=2))])
    html = render_html(build_weekly_report(store, fixture_config(), "2026-W47"))
    assert "figures are incomplete" in html and "Listener X was down" in html


def test_a_listener_that_never_polled_is_not_down_since_never(store: Store) -> None:
    """Scale audit finding 2: "no successful poll since never UTC"."""
    store.db.execute("insert into listener_health (name, last_error_at, last_error, errors) "
                     "values ('x', ?, 'X_BEARER_TOKEN is not set', 3)", [iso(START + timedelta(days=2))])
    html = render_html(build_weekly_report(store, fixture_config(), "2026-W47"))
    assert "since never" not in html and "Listener X has never polled successfully" in html, html


# ------------------------------------------------------------------------------ CLI
def test_cli_writes_html_and_pdf_and_audits_no_redact(tmp_path: Path) -> None:
    from commands.cli import cli

    small_store(tmp_path / "cli.db").close()
    config = tmp_path / "doorstep.toml"
    config.write_text('timezone = "Europe/London"\n[[brands]]\nname = "Larkspur"\n', encoding="utf-8")
    runner = CliRunner()
    base = ["--db", str(tmp_path / "cli.db"), "--config", str(config), "report", "weekly", "--week", "2026-W47"]
    result = runner.invoke(cli, [*base, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "weekly-2026-W47.html").exists()
    assert (tmp_path / "out" / "weekly-2026-W47.pdf").read_bytes()[:4] == b"%PDF"
    result = runner.invoke(cli, [*base, "--brand", "Larkspur", "--format", "html", "--no-redact", "--out", str(tmp_path / "o2")])
    assert result.exit_code == 0, result.output
    assert PII["email"] in (tmp_path / "o2" / "weekly-2026-W47-Larkspur.html").read_text(encoding="utf-8")
    check = Store(tmp_path / "cli.db")
    assert [e.action for e in check.audit_trail()].count("report.unredacted") == 1
    check.close()
    bad = runner.invoke(cli, [*base[:-2], "--week", "2026-47", "--out", str(tmp_path / "o3")])
    assert bad.exit_code != 0 and "2026-W47" in bad.output


# ------------------------------------------------------------------------------ settings
def test_settings_are_validated_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match=r"reports\.weekly_at"):
        reports.report_settings(fixture_config({"weekly_at": "Monday at eight"}))
    with pytest.raises(ConfigError, match=r"reports\.recipients"):
        reports.report_settings(fixture_config({"recipients": ["not an address"]}))
    with pytest.raises(ConfigError, match=r"reports\.weeky_at"):
        reports.report_settings(fixture_config({"weeky_at": "Mon 08:00"}))


def test_no_job_without_recipients(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPORTS_SLACK_WEBHOOK_URL", raising=False)
    assert jobs(store, fixture_config(), None) == []
    assert len(jobs(store, fixture_config({"recipients": ["lead@shop.example"]}), None)) == 1


# ------------------------------------------------------------------------------ scheduled send
class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Mailbox:
    """aiosmtpd handler: collects messages; answers the next ``fail`` DATA commands with ``code``."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.fail = 0
        self.code = "451 4.3.0 Mail server temporarily unavailable"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.fail:
            self.fail -= 1
            return self.code
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Mailbox:
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    box = Mailbox()
    port = _free_port()
    controller = aiosmtpd.Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    for key in ("SMTP_USER", "SMTP_PASSWORD", "SMTP_SSL", "SMTP_STARTTLS", "REPORTS_SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(port))
    monkeypatch.setenv("SMTP_FROM", "reports@shop.example")
    monkeypatch.setenv("SMTP_TIMEOUT", "5")
    yield box
    controller.stop()


RECIPIENTS = ["lead@shop.example", "head.of.care@shop.example"]
# Monday 23 November 2026, 08:00 in London (GMT, so 08:00 UTC): the W47 report is due.
MONDAY_8 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)


def _job(store: Store, clock: Clock, **settings: Any) -> WeeklyReportJob:
    config = fixture_config({"weekly_at": "Mon 08:00", "recipients": RECIPIENTS, **settings})
    return WeeklyReportJob(store, config, clock=clock)


def test_sends_once_at_monday_8_local_and_not_again_after_restart(store: Store, smtp: Mailbox, tmp_path: Path) -> None:
    clock = Clock(MONDAY_8 - timedelta(minutes=1))
    job = _job(store, clock)
    assert job.run_once() == 0 and smtp.messages == []
    assert store.db.execute("select count(*) from outbound_messages where kind = 'report'").fetchone()[0] == 0

    clock.now = MONDAY_8
    assert job.run_once() == 2
    assert sorted(m["To"] for m in smtp.messages) == sorted(RECIPIENTS)
    message = smtp.messages[0]
    assert "2026-W47" in message["Subject"]
    assert message["Message-ID"].startswith("<report.2026-W47.")
    parts = {part.get_content_type(): part for part in message.walk()}
    assert {"text/plain", "text/html", "application/pdf"} <= set(parts)
    assert parts["application/pdf"].get_payload(decode=True)[:4] == b"%PDF"
    assert PII["email"] not in str(message)  # the mailed report is the masked one

    clock.now = MONDAY_8 + timedelta(minutes=1)
    assert job.run_once() == 0

    # Restart: a new process, a new store connection, the same database file.
    again = Store(store.path)
    restarted = _job(again, Clock(MONDAY_8 + timedelta(hours=3)))
    assert restarted.run_once() == 0
    assert len(smtp.messages) == 2
    rows = report_deliveries(again)
    assert {(r["week"], r["target"], r["status"]) for r in rows} == {("2026-W47", r, "sent") for r in RECIPIENTS}

    # The next Monday brings the next week's report, once.
    restarted.clock = Clock(MONDAY_8 + timedelta(days=7))
    assert restarted.run_once() == 2
    assert sorted(m["Subject"].split()[3] for m in smtp.messages[2:]) == ["2026-W48", "2026-W48"]
    again.close()


def test_failed_send_is_visible_and_retried(store: Store, smtp: Mailbox) -> None:
    clock = Clock(MONDAY_8)
    job = _job(store, clock, recipients=["lead@shop.example"], retry_minutes=5)
    smtp.fail = 1
    assert job.run_once() == 0
    row = report_deliveries(store)[0]
    assert row["status"] == "failed" and row["attempts"] == 1 and "451" in row["last_error"]
    assert row["next_attempt_at"] == iso(MONDAY_8 + timedelta(minutes=5))
    assert [e.action for e in store.audit_trail()].count("report.send_failed") == 1
    # Never left "queued": the responders' outbox sends queued rows of any kind.
    assert store.db.execute("select count(*) from outbound_messages where status = 'queued'").fetchone()[0] == 0

    clock.now = MONDAY_8 + timedelta(minutes=2)  # backing off
    assert job.run_once() == 0 and smtp.messages == []
    clock.now = MONDAY_8 + timedelta(minutes=5)
    assert job.run_once() == 1 and len(smtp.messages) == 1
    row = report_deliveries(store)[0]
    assert row["status"] == "sent" and row["attempts"] == 2 and row["last_error"] is None
    clock.now = MONDAY_8 + timedelta(hours=1)
    assert job.run_once() == 0 and len(smtp.messages) == 1


def test_permanent_refusal_is_not_retried(store: Store, smtp: Mailbox) -> None:
    clock = Clock(MONDAY_8)
    job = _job(store, clock, recipients=["lead@shop.example"], max_attempts=5)
    smtp.fail, smtp.code = 1, "550 5.1.1 mailbox unavailable"
    assert job.run_once() == 0
    row = report_deliveries(store)[0]
    assert row["status"] == "failed" and "550" in row["last_error"] and row["attempts"] == 5
    clock.now = MONDAY_8 + timedelta(days=1)
    assert job.run_once() == 0 and smtp.messages == []


def test_send_interrupted_by_a_crash_is_not_repeated(store: Store, smtp: Mailbox) -> None:
    job = _job(store, Clock(MONDAY_8), recipients=["lead@shop.example"])
    store.db.execute(
        "insert into outbound_messages (kind, channel, target, text, status, attempts, idempotency_key, created_at) "
        "values ('report', 'email', 'lead@shop.example', 'x', 'sending', 1, 'report:2026-W47:lead@shop.example', ?)",
        [iso(MONDAY_8)],
    )
    assert job.run_once() == 0 and smtp.messages == []
    row = report_deliveries(store)[0]
    assert row["status"] == "failed" and "interrupted" in row["last_error"]


def test_worker_down_for_days_skips_the_stale_week(store: Store, smtp: Mailbox) -> None:
    job = _job(store, Clock(MONDAY_8 + timedelta(days=4)))  # Friday: more than 72 h late
    assert job.run_once() == 0 and smtp.messages == []
    job.clock = Clock(MONDAY_8 + timedelta(hours=30))  # Tuesday afternoon: still sent
    assert job.run_once() == 2


def test_summer_time_send_is_at_8_local(tmp_path: Path, smtp: Mailbox) -> None:
    s = Store(tmp_path / "bst.db")
    bst_monday_8 = datetime(2026, 7, 6, 7, 0, tzinfo=timezone.utc)  # 08:00 BST
    job = _job(s, Clock(bst_monday_8 - timedelta(seconds=1)), recipients=["lead@shop.example"])
    assert job.run_once() == 0
    job.clock = Clock(bst_monday_8)
    assert job.run_once() == 1 and "2026-W27" in smtp.messages[0]["Subject"]
    s.close()


def test_slack_summary_once_per_week(store: Store, smtp: Mailbox) -> None:
    posted: list[tuple[str, dict[str, Any]]] = []
    job = _job(store, Clock(MONDAY_8), recipients=[], slack_webhook_url="http://127.0.0.1:9/hook")
    job.post_slack = lambda url, payload: posted.append((url, payload))
    assert job.run_once() == 1 and job.run_once() == 0
    assert len(posted) == 1 and "2026-W47" in posted[0][1]["text"] and "complaints" in posted[0][1]["text"]
    assert PII["email"] not in posted[0][1]["text"]


def test_slack_failure_is_retried_without_recording_the_webhook_url(store: Store, smtp: Mailbox) -> None:
    url = "http://127.0.0.1:9/services/T000/B000/secretpart"
    calls: list[int] = []

    def flaky(hook: str, payload: dict[str, Any]) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(f"500 Server Error for url: {hook}")

    clock = Clock(MONDAY_8)
    job = _job(store, clock, recipients=[], slack_webhook_url=url)
    job.post_slack = flaky
    assert job.run_once() == 0
    row = report_deliveries(store)[0]
    assert row["status"] == "failed" and "secretpart" not in row["last_error"] and "500" in row["last_error"]
    assert all("secretpart" not in str(e.details) for e in store.audit_trail())
    clock.now = MONDAY_8 + timedelta(minutes=5)
    assert job.run_once() == 1 and len(calls) == 2


def test_manual_retry_of_a_report_is_sent_by_the_report_job(store: Store, smtp: Mailbox) -> None:
    clock = Clock(MONDAY_8)
    job = _job(store, clock, recipients=["lead@shop.example"], max_attempts=1)
    smtp.fail = 1
    assert job.run_once() == 0
    message_id = report_deliveries(store)[0]["id"]
    clock.now = MONDAY_8 + timedelta(hours=2)
    assert job.run_once() == 0  # attempts used up: waits for a person
    # What responders.outbox.retry does: back to queued, attempts kept.
    store.db.execute("update outbound_messages set status = 'queued', next_attempt_at = ? where id = ?",
                     [iso(clock.now), message_id])
    assert job.run_once() == 1 and len(smtp.messages) == 1


def test_the_report_names_networks_in_words(store: Store) -> None:
    """A user check (2026-12-06): the demo's report said "x · Wed 25 Nov" and "bluesky @[handle]" under quoted posts
    and "x" for the listener; a reader who never opens the console knows X and Bluesky, not our keys."""
    import re

    html = render_html(build_weekly_report(store, fixture_config(), "2026-W47"))
    bylines = re.findall(r'<span class="muted">([^<&@]+?)\s*(?:&middot;|@)', html)
    assert bylines, "posts are quoted with their network"
    assert not [b for b in bylines if b.strip() in ("x", "bluesky", "mastodon", "x_dm", "email")], bylines


# ------------------------------------------------------------------------------ audit of the weekly report (2026-12)
# Finding 2: the header promised masked names and addresses; lowercase names and streets, "I'm ...", house names and
# bank details went out whole (shops/pii.jsonl of the audit: the same text in the HTML and in the PDF).
@pytest.mark.parametrize(
    "text, leaked",
    [
        ("My name is jane doe, deliver to 22 acacia avenue, Leeds LS1 4AP", ["jane", "doe", "acacia"]),
        ("I'm Sarah Jones, parcel lost, it was for 5 The Green, Little Snoring", ["Sarah", "Jones", "The Green"]),
        ("I'm Sarah Jones and my parcel is lost", ["Sarah", "Jones"]),
        ("hi, i am Tom O'Neill, still no parcel", ["Tom", "Neill"]),
        ("This is Anna-Maria Lopez again, where is it", ["Anna", "Lopez"]),
        ("my name's priya, nothing came", ["priya"]),
        ("My name is jane doe, 14 high st, Bath BA1 1AA", ["jane", "high st"]),
        ("Flat 3b, 22 acacia avenue, Leeds LS1 4AP", ["acacia"]),
        ("my address is 5 The Green, Little Snoring NR21 0AA", ["Green", "Snoring"]),
        ("my address: Rose Cottage, Mill Lane, Ambridge", ["Rose", "Mill", "Ambridge"]),
        ("Address - the old rectory, church road", ["rectory", "church"]),
        ("please send it to Rose Cottage, Ambridge. Thanks", ["Rose", "Ambridge"]),
        ("could you deliver to 7 station road instead", ["station"]),
        ("IBAN GB29NWBK60161331926819", ["NWBK", "6016"]),
        ("iban: GB29 NWBK 6016 1331 9268 19 for the refund", ["NWBK", "6016", "9268"]),
        ("Account no 12345, card ending 4242, sort code 12-34-56", ["12345", "4242", "34-56"]),
        ("refund to acct number 87654321", ["87654321"]),
        ("tel (020) 7946 0018", ["7946"]),
    ],
)
def test_redactor_masks_lowercase_intros_streets_house_names_and_bank_details(text: str, leaked: list[str]) -> None:
    out = Redactor(fixture_config()).text(text) or ""
    assert not [word for word in leaked if word.lower() in out.lower()], out


@pytest.mark.parametrize(
    "text",
    [
        "I'm still waiting, this is ridiculous",
        "I am so fed up. This is the third time!",
        "I'm Not impressed and this is Royal Mail's fault",
        "waited 3 days in a row and the driver left it on the road",
        "2 weeks down the line and nothing, 3 parcels on the drive",
        "they tried to deliver to the wrong house again",
        "the driver couldn't deliver to my door, it's not hard",
        "parcel not delivered because of an 'address issue'. The driver just couldn't find the house.",
        "the address is correct on the label",
        "thanks for nothing, DPD. Cheers for the 5 day wait",
        "Ordered this for my mum on Tuesday, order total £54.20",
        "Nobody came to the door. Absolute joke.",
    ],
)
def test_redactor_leaves_ordinary_complaints_readable(text: str) -> None:
    assert Redactor(fixture_config()).text(text) == text


def test_report_quotes_mask_the_audits_posts_and_the_header_is_honest(tmp_path: Path) -> None:
    store = Store(tmp_path / "pii.db")
    texts = ["@FettleCare parcel lost again. My name is jane doe, deliver to 22 acacia avenue, Leeds LS1 4AP",
             "@FettleCare I'm Sarah Jones, parcel lost, it was for 5 The Green, Little Snoring"]
    for i, text in enumerate(texts * 3):
        at = START + timedelta(days=1, hours=10 + i)
        mid = store.insert_mention(Mention(channel="x", external_id=f"p{i}", text=text, created_at=at,
                                           author_handle=f"u{i}", labels=_labels(True)))
        case_id = store.insert_case(Case(status="escalated", brand="Fettle", channel="x", complaint=True,
                                         author_handle=f"u{i}", opened_at=at, last_activity_at=at, mention_count=1))
        store.set_mention_case(mid, case_id)
    html = render_html(build_weekly_report(store, fixture_config(), "2026-W47"))
    store.close()
    import re

    assert "parcel lost" in html  # still quoted
    # Nor as a theme ("acacia avenue", with: jane, doe): themes are counted on the posts' own words.
    for word in ("jane", "doe", "acacia", "sarah", "jones", "the green"):
        assert not re.search(rf"\b{word}\b", html, re.IGNORECASE), word
    # The header promises no more than the patterns keep: free text can still hold a name or an address.
    header = html.split("<h2>", 1)[0]
    assert "Personal data in quoted posts is masked (handles, names" not in header
    assert "may still" in header


# Finding 6: "Complaints peaked on Mon 16 Nov (0)" in a week without complaints; on ties the first day was named
# where the dashboard names the latest.
def _posts_store(path: Path, days: dict[int, tuple[int, int]]) -> Store:
    """``days``: day of the week (0 = Monday) -> (complaints, praise posts)."""
    store = Store(path)
    n = 0
    for day, (complaints, praise) in days.items():
        for complaint in [True] * complaints + [False] * praise:
            at = START + timedelta(days=day, hours=9, minutes=n)
            store.insert_mention(Mention(channel="x", external_id=f"m{n}", text="parcel late" if complaint else "love it",
                                         created_at=at, author_handle=f"u{n}", labels=_labels(complaint)))
            n += 1
    return store


def _titles(store: Store) -> dict[str, str]:
    return {c.name: c.title for c in build_weekly_report(store, fixture_config(), "2026-W47").charts}


def test_no_peak_is_named_in_a_week_without_complaints(tmp_path: Path) -> None:
    store = _posts_store(tmp_path / "none.db", {d: (0, 1) for d in range(7)})
    titles = _titles(store)
    store.close()
    assert "peaked" not in titles["daily_complaints"] and "(0)" not in titles["daily_complaints"], titles
    assert "No complaints" in titles["daily_complaints"]


def test_ties_name_the_latest_day_as_the_dashboard_does(tmp_path: Path) -> None:
    store = _posts_store(tmp_path / "tie.db", {0: (3, 1), 2: (3, 1), 4: (1, 3)})
    titles = _titles(store)
    store.close()
    assert titles["daily_complaints"] == "Complaints peaked on Wed 18 Nov (3)", titles
    # Mon and Wed: net -0.50 each, Fri +0.50: the latest of the lowest.
    assert titles["daily_sentiment"] == "Net sentiment was lowest on Wed 18 Nov (-0.50)", titles


def test_no_lowest_day_when_every_day_is_equal(tmp_path: Path) -> None:
    store = _posts_store(tmp_path / "flat.db", {d: (1, 1) for d in range(7)})
    titles = _titles(store)
    store.close()
    assert "lowest" not in titles["daily_sentiment"] and "peaked" not in titles["daily_complaints"], titles
    assert titles["daily_sentiment"] == "Net sentiment was the same every day (+0.00)"
    assert titles["daily_complaints"] == "Complaints were the same every day (1)"


# Finding 7: "Every listener polled successfully" when no listener had ever polled.
def test_no_listener_ran_is_said_not_every_listener_polled(store: Store) -> None:
    config = fixture_config()
    html = render_html(build_weekly_report(store, config, "2026-W47"))
    assert "every listener polled successfully" not in html
    assert "no listener ran" in html
    # A configured listener without a health record is listed as never polled.
    config = config.model_copy(update={"channels": {"x": {"queries": ["larkspur"]}, "mastodon": {}}})
    html = render_html(build_weekly_report(store, config, "2026-W47"))
    assert "every listener polled successfully" not in html
    assert "no listener ran" in html and "never polled" in html and "Mastodon" in html
    # X polls, Mastodon never has: neither sentence may claim every listener polled.
    store.db.execute("insert into listener_health (name, last_success_at, errors) values ('x', ?, 0)",
                     [iso(datetime.now(timezone.utc))])
    html = render_html(build_weekly_report(store, config, "2026-W47"))
    assert "every listener polled successfully" not in html and "no listener ran" not in html
    assert "Mastodon never polled" in html


# Finding 8: "33 more in the console (Reports page, or the inbox filtered by SLA breached)": the Reports page shows the
# same 15, the inbox lists open cases only. The cases left out are all resolved.
def test_notable_cases_beyond_the_first_fifteen_are_named_not_pointed_to_nowhere(store: Store) -> None:
    ids = []
    for i in range(20):
        at = START + timedelta(days=2, hours=i % 9 + 1)
        ids.append(store.insert_case(Case(
            status="resolved", brand="Larkspur", channel="x", complaint=True, author_handle=f"late{i}", opened_at=at,
            last_activity_at=at, first_response_due=at + timedelta(hours=1), first_response_at=at + timedelta(hours=3),
            resolved_at=at + timedelta(hours=5), priority=10, mention_count=1)))
    report = build_weekly_report(store, fixture_config(), "2026-W47")
    assert len(report.data["notable_cases"]) > 15 and set(ids) <= {c["case_id"] for c in report.data["notable_cases"]}
    html = render_html(report)
    assert "Reports page, or the inbox filtered by SLA breached" not in html
    import re

    section = html.split("<h2>Notable cases</h2>", 1)[1].split("<h2>", 1)[0]
    assert set(ids) <= {int(n) for n in re.findall(r"#(\d+)(?!\w)", section)}, section[-800:]


def test_one_day_of_sentiment_is_not_called_the_lowest(tmp_path: Path) -> None:
    store = _posts_store(tmp_path / "one.db", {1: (2, 0)})
    titles = _titles(store)
    store.close()
    assert titles["daily_sentiment"] == "Net sentiment was -1.00 on Tue 17 Nov, the only day with labelled posts"
    assert titles["daily_complaints"] == "Complaints peaked on Tue 17 Nov (2)"


def test_the_report_names_a_worst_courier_only_when_it_stands_out() -> None:
    """Reports audit, 2026-12-06: "UPS had the most complaints per 1,000 shipments (280.7)" when the four
    couriers were within 2 % of each other (metrics.standout_courier decides; the report says so)."""
    from doorstep.reports import _findings

    def data(stands_out: bool) -> dict:
        league = [{"courier": "UPS", "complaints_per_1000": 270.5, "stands_out": stands_out, "unlinked_complaints": 0},
                  {"courier": "DPD", "complaints_per_1000": 248.1, "stands_out": False, "unlinked_complaints": 9}]
        return {"headline": {"complaints": {"value": None}, "sla_attainment": {"value": None}}, "intents": [], "couriers": league,
                "tracking_problem_complaints": 0, "sla": {}}

    within = _findings(data(False))
    assert "No courier stood out: 248.1 to 270.5 complaints per 1,000 shipments." in within
    assert not any("had the most" in line for line in within)
    assert "9 complaints named a courier but no shipment we know (not in the rates)." in within
    assert "UPS had the most complaints per 1,000 shipments (270.5)." in _findings(data(True))


def test_redactor_masks_an_order_number_written_after_the_word_order() -> None:
    """Linking now reads "order 10492" without "#" as an order number (README, order_patterns): a report, an
    alert or a courier quote masks it too, where only runs of six digits and "#" numbers were masked."""
    from doorstep.config import parse_config

    config = parse_config({"order_patterns": [r"#(\d{4,8})"]})
    out = Redactor(config).text("it's order 10492 and order no. 7781 still hasn't come, 2 items") or ""
    assert "10492" not in out and "7781" not in out and "2 items" in out, out
