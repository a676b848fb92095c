"""Twilio's REST API for SMS as the sender uses it (the twilio client talks to it unchanged)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from standins.recording import RecordingServer

#: The account the stand-in answers for (tests set TWILIO_ACCOUNT_SID to it).
SID = "ACtest0000000000000000000000000000"


class TwilioStandIn:
    """Answers the two Twilio REST calls the SMS sender makes: create and list messages."""

    def __init__(self) -> None:
        self.sms: list[dict[str, str]] = []
        self.server = RecordingServer({f"/2010-04-01/Accounts/{SID}/Messages.json": self.route})

    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if method == "POST":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            record = {"sid": f"SM{len(self.sms):032d}", "to": form["To"], "from": form["From"], "body": form["Body"],
                      "status": "queued", "account_sid": SID}
            self.sms.append(record)
            return 201, record
        query = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
        found = [m for m in self.sms if m["to"] == query.get("To")]
        return 200, {"messages": found, "next_page_uri": None, "page": 0, "page_size": 50, "uri": path}
