"""Where the demo's outgoing e-mail, Slack messages and webhooks go: local sinks, not the world.

A working day of care includes escalations to couriers, alerts to the team lead and follow-up
e-mails to customers. On the demo they must visibly arrive somewhere without any real mail
server or Slack workspace, so ``doorstep demo`` starts this module as a child process:

* an SMTP server (aiosmtpd) on 127.0.0.1 that files every message it receives in an mbox;
* an HTTP server on 127.0.0.1 that accepts any POST (a Slack incoming webhook answers "ok",
  a courier webhook gets 200) and files it as one JSON line.

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
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = min(int(self.headers.get("Content-Length") or 0), 1_000_000)
            body = self.rfile.read(length).decode("utf-8", "replace")
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
            kind = "slack" if row["path"].startswith("/slack") else "webhook"
            text = body.get("text") if isinstance(body, dict) and "text" in body else json.dumps(body, indent=1)
            out.append({"kind": kind, "at": row["at"], "to": row["path"], "subject": "", "text": str(text)})
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
