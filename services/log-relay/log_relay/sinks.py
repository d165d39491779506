"""Where digests go: e-mail (the library's TLS SMTP settings) and, optionally, a Slack webhook.

A sink's :meth:`send` blocks and raises when the message was not accepted; the
delivery scheduler calls it from a worker thread and retries with back-off.

Example::

    sink = MailSink(MailSettings.from_config("relay.ini"))
    sink.send(digest)          # returns once the SMTP server accepted the message
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Optional, Protocol

from lab_utils_common.mail import MailSettings, SmtpConversation, build_message, is_permanent, send_email
from lab_utils_common.safe_text import slack_text
from log_relay.digest import DEFAULT_SUBJECT_TEMPLATE, Digest

__all__ = ["Sink", "MailSink", "SlackSink", "SinkError"]


class SinkError(RuntimeError):
    """A sink refused a digest (e.g. the webhook answered with an error status)."""

    def __init__(self, message: str, *, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


class Sink(Protocol):
    """A destination for digests: ``name`` keys its queue in the spool."""

    name: str

    def send(self, digest: Digest) -> None:
        """Deliver ``digest``; return only once the destination accepted it, else raise."""

    def is_permanent(self, error: BaseException) -> bool:
        """Whether sending the same digest again cannot help (it is split, cut, or parked)."""

    def cut_size(self, error: BaseException) -> int:
        """How many characters of a record's message to keep so that it may go through."""

    def abort(self, why: str) -> None:
        """Cut short the sending in progress and any later one (the relay is stopping)."""


class MailSink:
    """Send each digest as one e-mail; long digests carry every record as ``records.txt``.

    Example::

        MailSink(settings, subject_template="{subject} [{level}] {app}: {first_message}{more}")
    """

    name = "mail"

    def __init__(self, settings: MailSettings,
                 subject_template: str = DEFAULT_SUBJECT_TEMPLATE, *,
                 max_message_bytes: int = 10 << 20) -> None:
        self.settings = settings
        self.subject_template = subject_template
        self.max_message_bytes = max_message_bytes
        self._conversation = SmtpConversation()

    def send(self, digest: Digest) -> None:
        message = build_message(self.settings,
                                digest.subject(self.subject_template, self.settings.subject),
                                digest.body)
        if digest.attachment is not None:
            message.add_attachment(digest.attachment, filename="records.txt")
        send_email(self.settings, message, max_message_bytes=self.max_message_bytes,
                   conversation=self._conversation)

    def is_permanent(self, error: BaseException) -> bool:
        return is_permanent(error)

    def cut_size(self, error: BaseException) -> int:
        # Body and attachment may each hold the message, base64 or quoted-printable encoded
        # (4/3), up to 4 bytes a character: a quarter of the limit per copy is safe.
        limit = getattr(error, "limit", None) or self.max_message_bytes
        return max(256, limit // 16)

    def abort(self, why: str) -> None:
        self._conversation.abort(why)

    def __repr__(self) -> str:
        return f"<MailSink {self.settings.host}:{self.settings.port} ({self.settings.security})>"


class SlackSink:
    """POST each digest to a Slack incoming webhook as ``{"text": ...}``.

    The webhook URL is a secret (it lets anyone post): it comes from a file or
    the environment and never appears in logs or errors.

    Example::

        SlackSink("https://hooks.slack.com/services/...", base_subject="lab alarm")
    """

    name = "slack"
    #: Slack shows long messages folded; the mail has the whole digest.
    max_text = 3500

    def __init__(self, webhook_url: str, *, base_subject: str = "lab-utils alarm",
                 subject_template: str = DEFAULT_SUBJECT_TEMPLATE, timeout: float = 10.0) -> None:
        if not webhook_url.startswith(("https://", "http://")):
            raise ValueError("the Slack webhook URL must start with https:// (or http://)")
        self._url = webhook_url
        self.base_subject = base_subject
        self.subject_template = subject_template
        self.timeout = timeout

    def send(self, digest: Digest) -> None:
        body = digest.body
        if len(body) > self.max_text:
            body = body[:self.max_text] + "\n... (cut; the e-mail has the whole digest)"
        # Escaped as Slack documents: no mention, link or fence from a sender's text.
        subject = slack_text(digest.subject(self.subject_template, self.base_subject))
        text = f"*{subject}*\n```{slack_text(body)}```"
        request = urllib.request.Request(
            self._url, data=json.dumps({"text": text}).encode("utf-8"), method="POST",
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                reply.read()
        except urllib.error.HTTPError as exc:
            raise SinkError(f"Slack webhook answered HTTP {exc.code} {exc.reason}",
                            status=exc.code) from None
        except urllib.error.URLError as exc:
            raise SinkError(f"Slack webhook unreachable: {exc.reason}") from None

    def is_permanent(self, error: BaseException) -> bool:
        # 400 invalid payload, 413 too large, ...: the same text again gets the same answer.
        status = getattr(error, "status", None)
        return isinstance(status, int) and 400 <= status < 500 and status not in (408, 429)

    def cut_size(self, error: BaseException) -> int:
        return self.max_text // 2

    def abort(self, why: str) -> None:
        pass  # each post is bounded by ``timeout``

    def __repr__(self) -> str:
        return "<SlackSink (webhook URL hidden)>"
