"""SlackWebhookHandler: records to a Slack incoming webhook (replaces 0.5.x's slacker API)."""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from typing import Optional

from lab_utils_common.safe_text import slack_text

__all__ = ["SlackWebhookHandler", "read_webhook_file", "NoStacktraceFormatter"]

SLACK_FORMAT = "%(asctime)s   %(levelname)s   %(name)s   %(module)s   %(funcName)s   %(message)s"


def read_webhook_file(path: str) -> str:
    """Read a webhook URL from a file (first non-empty line); raise ValueError if there is none."""
    full = os.path.abspath(os.path.expanduser(path))
    with open(full, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle.read().splitlines() if line.strip()]
    if not lines or not lines[0].startswith(("https://", "http://")):
        # Never show the content: it is a secret (or a 0.5.x API token left in place).
        raise ValueError(f"{full!r} does not hold a webhook URL (https://hooks.slack.com/...) on "
                         "its first line; 0.5.x API tokens are not supported any more")
    return lines[0]


class NoStacktraceFormatter(logging.Formatter):
    """Formatter that leaves tracebacks out (a chat message stays short, as in 0.5.4)."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted message without exception text or stack."""
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


class SlackWebhookHandler(logging.Handler):
    """POST each record as ``{"text": ...}`` JSON to a Slack incoming webhook.

    Give ``webhook_url`` or ``webhook_file`` (a file holding the URL: it is a
    secret). ``channel`` and ``username`` are sent when set (legacy webhooks
    honour them). A failed POST goes to ``handleError``; ``emit`` waits for the
    HTTP reply (at most ``timeout`` s), ``configure_logging`` runs it in a
    background thread.

    Example::

        handler = SlackWebhookHandler(webhook_file="~/.slack-webhook")
        handler.setLevel(25)  # SUCCESS
    """

    def __init__(self, webhook_url: Optional[str] = None, *, webhook_file: Optional[str] = None,
                 channel: Optional[str] = None, username: Optional[str] = None,
                 timeout: float = 5.0, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        if webhook_url is None and webhook_file is None:
            raise ValueError("give webhook_url or webhook_file")
        self._url = webhook_url if webhook_url is not None else read_webhook_file(webhook_file)  # type: ignore[arg-type]
        if not self._url.startswith(("https://", "http://")):
            raise ValueError("webhook_url must start with https:// (the URL itself is not shown: "
                             "it is a secret)")
        self.channel = channel
        self.username = username
        self.timeout = timeout
        self.setFormatter(NoStacktraceFormatter(SLACK_FORMAT, "%Y-%m-%d %H:%M:%S"))

    def payload(self, record: logging.LogRecord) -> dict:
        """The JSON document posted for ``record``."""
        document = {"text": slack_text(self.format(record))}
        if self.channel:
            document["channel"] = self.channel
        if self.username:
            document["username"] = self.username
        return document

    def emit(self, record: logging.LogRecord) -> None:
        """POST ``record``; any failure (network, non-2xx reply) goes to ``handleError``."""
        try:
            body = json.dumps(self.payload(record)).encode("utf-8")
            request = urllib.request.Request(self._url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                reply.read()
        except Exception:
            self.handleError(record)

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} ({level})>"  # the URL is a secret
