"""Where the demo's outgoing e-mail, Slack messages and webhooks go: local sinks, not the world.

A working day of care includes escalations to couriers, alerts to the team lead and follow-up
e-mails to customers. On the demo they must visibly arrive somewhere without any real mail
server or Slack workspace, so ``doorstep demo`` starts this module as a child process:

* an SMTP server (aiosmtpd) on 127.0.0.1 that files every message it receives in an mbox;
* an HTTP server on 127.0.0.1 that accepts any POST (a Slack incoming webhook answers "ok",
  a courier webhook gets 200) and files it as one JSON line; under ``/twilio`` it answers
  Twilio's REST API for SMS (create a message, list them), so the demo's text messages go
  through the twilio client to here (``TWILIO_BASE_URL``), never to api.twilio.com.

The worker talks to them through its ordinary senders (``SMTP_HOST``/``SMTP_PORT``, the
``$SLACK_...`` webhook URLs), so the demo exercises the real sending code. The console's
"Sent mail" page reads both files (see :func:`read_sent`), which are named by
``DOORSTEP_DEMO_SINK_DIR``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import mailbox
import signal
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAIL_FILE = "sent-mail.mbox"
HOOKS_FILE = "sent-webhooks.jsonl"
_lock = threading.Lock()


class MailSink:
    """aiosmtpd handler: accept every message and append it to the mbox."""

    def __init__(self, folder: Path):
        self.path = folder / MAIL_FILE

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        message["X-Doorstep-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        message["X-Doorstep-Received-At"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with _lock:
            box = mailbox.mbox(str(self.path))
            try:
                box.add(message)
                box.flush()
            finally:
                box.close()
        return "250 Message accepted for delivery"


def _hook_handler(folder: Path) -> type[BaseHTTPRequestHandler]:
    path = folder / HOOKS_FILE

    class Handler(BaseHTTPRequestHandler):
        def _json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            from urllib.parse import parse_qs, urlsplit

            if not self.path.startswith(TWILIO_PREFIX):
                self._json(404, {"error": "not found"})
                return
            query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            with _lock:
                rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] \
                    if path.exists() else []
            found = [_twilio_message(r["body"]) for r in rows if r["path"].startswith(TWILIO_PREFIX)
                     and (not query.get("To") or r["body"].get("to") == query["To"])]
            self._json(200, {"messages": found, "next_page_uri": None, "page": 0, "page_size": 50,
                             "uri": urlsplit(self.path).path})

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            from urllib.parse import parse_qs

            length = min(int(self.headers.get("Content-Length") or 0), 1_000_000)
            body = self.rfile.read(length).decode("utf-8", "replace")
            if self.path.startswith(TWILIO_PREFIX):  # an SMS through the twilio client
                form = {k: v[0] for k, v in parse_qs(body).items()}
                with _lock:
                    count = sum(1 for _ in path.open(encoding="utf-8")) if path.exists() else 0
                sms = {"sid": f"SM{count + 1:032d}", "to": form.get("To", ""), "from": form.get("From", ""),
                       "text": form.get("Body", "")}
                row = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "path": self.path,
                       "signed": False, "body": sms}
                with _lock, path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                self._json(201, _twilio_message(sms))
                return
            try:
                payload: Any = json.loads(body)
            except json.JSONDecodeError:
                payload = body
            row = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "path": self.path,
                   "signed": bool(self.headers.get("X-Doorstep-Signature")), "body": payload}
            with _lock, path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:  # the demo's terminal stays readable
            pass

    return Handler


#: Where the sink answers Twilio's REST API (the demo's TWILIO_BASE_URL is the sink's URL plus this).
TWILIO_PREFIX = "/twilio/"


def _twilio_message(sms: dict[str, str]) -> dict[str, Any]:
    return {"sid": sms["sid"], "to": sms["to"], "from": sms["from"], "body": sms["text"], "status": "queued",
            "direction": "outbound-api", "num_segments": "1"}


def read_sent(folder: str | Path, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first: every e-mail and webhook the sinks received (kind, at, to, subject, text)."""
    folder = Path(folder)
    out: list[dict[str, Any]] = []
    if (folder / MAIL_FILE).exists():
        box = mailbox.mbox(str(folder / MAIL_FILE))
        try:
            for message in box:
                parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
                part = parsed.get_body(preferencelist=("plain", "html")) if parsed.is_multipart() else parsed
                text = part.get_content() if part is not None else ""
                out.append({"kind": "e-mail", "at": parsed.get("X-Doorstep-Received-At", ""),
                            "to": parsed.get("X-Doorstep-Envelope-To") or parsed.get("To", ""),
                            "subject": parsed.get("Subject", ""), "text": str(text).strip()})
        finally:
            box.close()
    if (folder / HOOKS_FILE).exists():
        for line in (folder / HOOKS_FILE).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            body = row["body"]
            if row["path"].startswith(TWILIO_PREFIX):
                out.append({"kind": "sms", "at": row["at"], "to": body.get("to", ""), "subject": "",
                            "text": str(body.get("text", ""))})
                continue
            kind = "slack" if row["path"].startswith("/slack") else "webhook"
            text = body.get("text") if isinstance(body, dict) and "text" in body else json.dumps(body, indent=1)
            if kind == "slack":  # as Slack shows it: its escapes (&lt; &gt; &amp;) read as the characters
                text = str(text).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
            # A Slack message's title is its bold first line (responders.channels posts "*subject*\nbody").
            first = str(text).split("\n", 1)[0]
            title = first[1:-1] if kind == "slack" and len(first) > 2 and first[0] == first[-1] == "*" else ""
            out.append({"kind": kind, "at": row["at"], "to": row["path"], "subject": title, "text": str(text)})
    out.sort(key=lambda r: r["at"], reverse=True)
    return out[:limit]


def serve(folder: Path, smtp_port: int, http_port: int) -> tuple[Any, ThreadingHTTPServer]:
    """Start both sinks on 127.0.0.1 (threads); returns (smtp controller, http server)."""
    from aiosmtpd.controller import Controller

    folder.mkdir(parents=True, exist_ok=True)
    controller = Controller(MailSink(folder), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    http = ThreadingHTTPServer(("127.0.0.1", http_port), _hook_handler(folder))
    threading.Thread(target=http.serve_forever, name="demo-webhook-sink", daemon=True).start()
    return controller, http


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standins.sinks", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="folder for sent-mail.mbox and sent-webhooks.jsonl")
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument("--http-port", type=int, default=8767)
    args = parser.parse_args(argv)
    controller, http = serve(Path(args.dir), args.smtp_port, args.http_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        http.shutdown()
        controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
