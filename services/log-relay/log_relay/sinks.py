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
from typing import Protocol

from lab_utils_common.mail import MailSettings, build_message, send_email
from lab_utils_common.safe_text import slack_text

from log_relay.digest import DEFAULT_SUBJECT_TEMPLATE, Digest

__all__ = ["Sink", "MailSink", "SlackSink", "SinkError"]


class SinkError(RuntimeError):
    """A sink refused a digest (e.g. the webhook answered with an error status)."""


class Sink(Protocol):
    """A destination for digests: ``name`` keys its queue in the spool."""

    name: str

    def send(self, digest: Digest) -> None:
        """Deliver ``digest``; return only once the destination accepted it, else raise."""


class MailSink:
    """Send each digest as one e-mail; long digests carry every record as ``records.txt``.

    Example::

        MailSink(settings, subject_template="{subject} [{level}] {app}: {first_message}{more}")
    """

    name = "mail"

    def __init__(self, settings: MailSettings,
                 subject_template: str = DEFAULT_SUBJECT_TEMPLATE) -> None:
        self.settings = settings
        self.subject_template = subject_template

    def send(self, digest: Digest) -> None:
        message = build_message(self.settings,
                                digest.subject(self.subject_template, self.settings.subject),
                                digest.body)
        if digest.attachment is not None:
            message.add_attachment(digest.attachment, filename="records.txt")
        send_email(self.settings, message)

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
            raise SinkError(f"Slack webhook answered HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise SinkError(f"Slack webhook unreachable: {exc.reason}") from None

    def __repr__(self) -> str:
        return "<SlackSink (webhook URL hidden)>"
