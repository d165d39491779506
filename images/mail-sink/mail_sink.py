"""Development mail sink: accepts every message over SMTP and shows it over HTTP.

It stands in for a lab's mail server under compose's ``dev`` profile, so that a newcomer
sees the alarm digests that log-relay sends. Nothing is forwarded anywhere.

- SMTP (no TLS, no authentication) on port 1025: each message is stored as one ``.eml``
  file in the spool directory (a volume), written to a temporary name and renamed, so a
  stop never leaves half a message.
- HTTP on port 8025: ``GET /messages`` (JSON list: id, from, to, subject, date, body),
  ``GET /messages/<id>`` (the raw message), ``DELETE /messages`` (empty the spool),
  ``GET /healthz``.

Usage: ``python3 mail_sink.py [--smtp-port 1025] [--http-port 8025] [--spool DIR]``;
``python3 mail_sink.py --check`` exits 0 when a running sink answers (the healthcheck).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import signal
import sys
import threading
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# aiosmtpd is the SMTP server the project's own tests use: a well-kept implementation of the
# protocol rather than a hand-written one.
from aiosmtpd.controller import Controller


class SpoolHandler:
    """aiosmtpd handler that stores every accepted message in the spool directory."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        message_id = f"{uuid.uuid1().hex}"
        temporary = self.spool / f".{message_id}.tmp"
        temporary.write_bytes(envelope.original_content or envelope.content)
        temporary.rename(self.spool / f"{message_id}.eml")
        print(f"mail-sink: stored {message_id} from {envelope.mail_from} to "
              f"{', '.join(envelope.rcpt_tos)}", flush=True)
        return "250 Message accepted for delivery"


def read_messages(spool: Path) -> list[dict]:
    """The stored messages, oldest first, as JSON-ready dictionaries."""
    messages = []
    for path in sorted(spool.glob("*.eml"), key=lambda p: (p.stat().st_mtime_ns, p.name)):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = parsed.get_body(preferencelist=("plain", "html"))
        messages.append({
            "id": path.stem,
            "from": str(parsed.get("From", "")),
            "to": str(parsed.get("To", "")),
            "subject": str(parsed.get("Subject", "")),
            "date": str(parsed.get("Date", "")),
            "body": body.get_content() if body is not None else "",
        })
    return messages


def make_http_handler(spool: Path) -> type[BaseHTTPRequestHandler]:
    class MailSinkHTTPHandler(BaseHTTPRequestHandler):
        def _reply(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/healthz":
                self._reply(200, b"ok\n", "text/plain")
            elif self.path in ("/", "/messages"):
                body = json.dumps(read_messages(spool), indent=1).encode()
                self._reply(200, body, "application/json")
            elif self.path.startswith("/messages/"):
                path = spool / f"{Path(self.path).name}.eml"
                if path.is_file():
                    self._reply(200, path.read_bytes(), "message/rfc822")
                else:
                    self._reply(404, f"no message {Path(self.path).name!r}\n".encode(), "text/plain")
            else:
                self._reply(404, f"no such page {self.path!r}\n".encode(), "text/plain")

        def do_DELETE(self) -> None:  # noqa: N802
            if self.path != "/messages":
                self._reply(404, f"no such page {self.path!r}\n".encode(), "text/plain")
                return
            for path in spool.glob("*.eml"):
                path.unlink(missing_ok=True)
            self._reply(200, b"deleted\n", "text/plain")

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            pass  # the healthcheck polls every few seconds: keep the container log for mail

    return MailSinkHTTPHandler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smtp-port", type=int, default=int(os.environ.get("MAIL_SINK_SMTP_PORT", 1025)))
    parser.add_argument("--http-port", type=int, default=int(os.environ.get("MAIL_SINK_HTTP_PORT", 8025)))
    parser.add_argument("--spool", type=Path, default=Path(os.environ.get("MAIL_SINK_SPOOL", "/var/spool/mail-sink")))
    parser.add_argument("--check", action="store_true", help="exit 0 when a running sink answers")
    args = parser.parse_args(argv)

    if args.check:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{args.http_port}/healthz", timeout=2):
                return 0
        except OSError as exc:
            print(f"mail-sink: not healthy: {exc}", file=sys.stderr)
            return 1

    args.spool.mkdir(parents=True, exist_ok=True)
    smtp = Controller(SpoolHandler(args.spool), hostname="0.0.0.0", port=args.smtp_port)
    smtp.start()
    http = ThreadingHTTPServer(("0.0.0.0", args.http_port), make_http_handler(args.spool))
    # serve_forever runs in the main thread; SIGTERM (docker stop) ends it from another thread.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=http.shutdown).start())
    print(f"mail-sink: SMTP on port {args.smtp_port}, HTTP on port {args.http_port}, "
          f"spool {args.spool}", flush=True)
    try:
        http.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        smtp.stop()
        http.server_close()
    print("mail-sink: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
