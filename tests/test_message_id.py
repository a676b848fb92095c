"""The Message-ID of our e-mail: well formed, in the domain of the address it is sent from.

The shop's ``SMTP_FROM`` or a brand's own address may be written with a display name
(``Larkspur Care <care@larkspur.example>``). The domain of our Message-IDs was cut from that text
with string surgery, which gave ``larkspur.example>`` and a malformed header; and a brand's own
mailbox still got the shared ``SMTP_FROM``'s domain. What the local SMTP server (aiosmtpd)
received is parsed with the standard library, and an answer that quotes it in In-Reply-To
(no token in its subject, so the Message-ID alone must find the question) is posted to the
inbound application's ``POST /mail``, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

import pytest

from doorstep import dialogue as rows
from doorstep.config import Config, parse_config
from doorstep.models import utcnow
from doorstep.store import Store
from listeners.webhook import WebhookServer
from responders.outbox import Outbox
from standins.smtp import SmtpSink

from test_dialogue import MAIL_SECRET, ask_redelivery, later, post_mail
from test_outbox import serve_smtp


class RawSink(SmtpSink):
    """The SMTP stand-in that also keeps the bytes each message arrived as (the header as sent)."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(envelope.content)
        return await super().handle_DATA(server, session, envelope)

    def received_message_ids(self) -> list[str]:
        """Each delivered message's Message-ID line as it arrived, unfolded and unparsed."""
        out = []
        for raw in self.raw:
            mail = message_from_bytes(raw, policy=policy.compat32)
            out.append(" ".join(str(mail["Message-ID"]).split()))
        return out


@pytest.fixture
def mail_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[RawSink]:
    yield from serve_smtp(monkeypatch, RawSink())


def well_formed_domain(message_id: str) -> str:
    """The domain of a Message-ID, asserting the standard library reads it without a defect."""
    header = policy.default.header_factory("Message-ID", message_id)
    assert not header.defects, f"{message_id!r}: {header.defects}"
    assert str(header) == message_id, f"{message_id!r} reads back as {str(header)!r}"
    assert message_id.startswith("<") and message_id.endswith(">") and message_id.count(">") == 1, message_id
    return Address(addr_spec=message_id[1:-1]).domain


def config_with(brand_email: str | None) -> Config:
    brand: dict[str, Any] = {"name": "Larkspur", "handles": {"x": "LarkspurHelp"}, "keywords": ["larkspur"]}
    if brand_email:
        brand["email"] = brand_email
    return parse_config({
        "timezone": "Europe/London",
        "brands": [brand],
        "couriers": [{"name": "UPS", "handles": {"x": "UPSHelp"}, "tracking_formats": ["ups"],
                      "escalation_email": "depot@ups.test"}],
        "channels": {"webhook": {"port": 0}},
        "responders": {"proactive": {"questions": {"attempt_failed": "redeliver"}, "channels": ["sms", "email"]},
                       "callback": {"sla_minutes": 60}},
    })


def ask_by_mail_and_answer_by_in_reply_to(db_url: str, config: Config, sink: RawSink,
                                         monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Ask the redelivery question by e-mail through the real outbox and SMTP, answer it quoting only
    its Message-ID; returns (the Message-ID as received, the From as received)."""
    monkeypatch.setenv("DOORSTEP_MAIL_SECRET", MAIL_SECRET)
    store = Store(db_url)
    try:
        with WebhookServer(db_url, config, secret="hook-secret", port=0) as server:
            now = utcnow()
            _, question = ask_redelivery(store, config, now, phone=None)
            assert question.channel == "email"
            Outbox(store, config, now=later).send_due()
            [sent] = sink.messages
            [message_id] = sink.received_message_ids()


            def answer(sender: str, number: int) -> dict[str, Any]:
                mail = EmailMessage()
                mail["From"], mail["To"] = sender, str(sent["From"])
                mail["Subject"] = "Re: your parcel"  # no [ref token]: only In-Reply-To can name the question
                mail["In-Reply-To"] = message_id
                mail["References"] = message_id
                mail["Message-ID"] = f"<answer-{number}@example.com>"
                mail.set_content("yes please")
                response = post_mail(f"{server.url}/mail", mail)
                assert response.status_code == 202, response.text
                return response.json()

            # From an address we never asked: no question is sent to it, so only In-Reply-To finds ours.
            elsewhere = answer("Jane at work <jane.doe@work.example>", 1)
            assert elsewhere["question_id"] == question.id, elsewhere
            assert elsewhere["outcome"] == "handed to a person (unverified sender)"
            assert answer("Jane Doe <jane@example.com>", 2)["outcome"] == "answered"
            # What the listener looks answers up by is what the server received.
            assert rows.get_question(store, question.id).mail_id == message_id  # type: ignore[union-attr]
            return message_id, str(sent["From"])
    finally:
        store.close()


def test_a_display_name_in_smtp_from_gives_a_well_formed_message_id_that_an_answer_finds(
        db_url: str, mail_server: RawSink, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_FROM", "Larkspur Care <care@larkspur.example>")
    message_id, sender = ask_by_mail_and_answer_by_in_reply_to(db_url, config_with(None), mail_server, monkeypatch)
    assert parseaddr(sender)[1] == "care@larkspur.example"
    assert well_formed_domain(message_id) == "larkspur.example"


def test_a_brands_own_address_gives_the_message_id_its_domain(db_url: str, mail_server: RawSink,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared SMTP_FROM is another domain: the question goes From the brand's address, in its domain."""
    monkeypatch.setenv("SMTP_FROM", "care@shared.example")
    config = config_with("Larkspur Care <care@larkspur.example>")
    message_id, sender = ask_by_mail_and_answer_by_in_reply_to(db_url, config, mail_server, monkeypatch)
    assert parseaddr(sender)[1] == "care@larkspur.example"
    assert well_formed_domain(message_id) == "larkspur.example"


def test_a_mail_without_a_given_message_id_gets_one_in_the_senders_domain(mail_server: RawSink,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Escalations and alerts go through send_email without a Message-ID: build_message makes one."""
    from responders.email import send_email

    monkeypatch.setenv("SMTP_FROM", "Larkspur Care <care@larkspur.example>")
    returned = send_email(None, "depot@ups.test", "Parcel 1Z999", "Please redeliver.")
    [message_id] = mail_server.received_message_ids()
    assert returned == message_id
    assert well_formed_domain(message_id) == "larkspur.example"


def test_the_weekly_report_message_id_is_in_the_smtp_from_domain(store: Store, mail_server: RawSink,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """It was always ``@doorstep.local``, whatever address the report came from."""
    from datetime import datetime, timezone

    from responders.reports import WeeklyReportJob

    monkeypatch.setenv("SMTP_FROM", "Shop Reports <reports@shop.example>")
    monkeypatch.delenv("REPORTS_SLACK_WEBHOOK_URL", raising=False)
    config = parse_config({"timezone": "Europe/London",
                           "brands": [{"name": "Larkspur", "handles": {"x": "LarkspurHelp"}}],
                           "reports": {"weekly_at": "Mon 08:00", "recipients": ["lead@shop.example"],
                                       "attach_pdf": False}})
    monday_8 = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
    assert WeeklyReportJob(store, config, clock=lambda: monday_8 + timedelta(minutes=1)).run_once() == 1
    [message_id] = mail_server.received_message_ids()
    assert message_id.startswith("<report.2026-W47.")
    assert well_formed_domain(message_id) == "shop.example"
