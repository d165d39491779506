"""TlsSMTPHandler: one e-mail per record over STARTTLS or implicit TLS, certificate verified."""

from __future__ import annotations

import logging
import logging.handlers
from typing import Optional, Sequence, Union

from lab_utils_common.mail import MailSettings, build_message, read_credentials_file, send_email

__all__ = ["TlsSMTPHandler"]


class TlsSMTPHandler(logging.handlers.SMTPHandler):
    """Send each record as one :class:`~email.message.EmailMessage` (0.5.4's signature).

    ``mailhost`` is ``host`` or ``(host, port)``; ``credentials`` a ``(user,
    password)`` pair. New, keyword-only: ``security`` (``starttls`` default,
    ``tls`` for implicit TLS, ``none``), ``ca_file`` (a private CA), ``verify``
    (certificate verification, on by default) and ``credentials_file`` (user on
    line 1, password on line 2). ``secure`` is accepted for compatibility
    (STARTTLS is the default anyway). A failed send goes to
    :meth:`~logging.Handler.handleError`: the application keeps running.
    ``emit`` waits for the mail server; ``configure_logging`` runs it in a
    background thread.

    Example::

        handler = TlsSMTPHandler(("smtp.example.org", 587), "lab@example.org",
                                 ["alice@example.org"], "lab alarm",
                                 credentials_file="~/.smtpcredentials", ca_file="/etc/lab/ca.pem")
        handler.setLevel(logging.ERROR)
    """

    def __init__(self, mailhost: Union[str, tuple[str, int]], fromaddr: str,
                 toaddrs: Union[str, Sequence[str]], subject: str,
                 credentials: Optional[tuple[str, str]] = None, secure: Optional[tuple] = None,
                 timeout: float = 5.0, *, security: str = "starttls", ca_file: Optional[str] = None,
                 verify: bool = True, credentials_file: Optional[str] = None) -> None:
        if credentials is None and credentials_file is not None:
            credentials = read_credentials_file(credentials_file)
        super().__init__(mailhost, fromaddr, toaddrs, subject, credentials=credentials,
                         secure=secure, timeout=timeout)
        if self.username is None:
            self.password = None  # SMTPHandler leaves it unset without credentials
        self.settings = MailSettings(
            host=self.mailhost, port=self.mailport or (465 if security == "tls" else 25),
            security=security, username=self.username, password=self.password,
            sender=fromaddr, recipients=tuple(self.toaddrs), subject=subject,
            ca_file=ca_file, verify=verify, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: MailSettings) -> TlsSMTPHandler:
        """A handler sending with ``settings`` (e.g. ``MailSettings.from_config(...)``)."""
        credentials = (settings.username, settings.password) if settings.username is not None else None
        return cls((settings.host, settings.port), settings.sender, list(settings.recipients),
                   settings.subject, credentials=credentials,  # type: ignore[arg-type]
                   timeout=settings.timeout, security=settings.security,
                   ca_file=settings.ca_file, verify=settings.verify)

    def emit(self, record: logging.LogRecord) -> None:
        """Send ``record`` as one mail; on any failure call ``handleError`` instead of raising."""
        try:
            message = build_message(self.settings, self.getSubject(record), self.format(record))
            send_email(self.settings, message)
        except Exception:
            self.handleError(record)

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return (f"<{type(self).__name__} {self.settings.security}://{self.mailhost}:"
                f"{self.settings.port} ({level})>")
