"""E-mail over SMTP with TLS: the settings, the message and the sending, shared by
``TlsSMTPHandler`` and log-relay.

lab-utils 0.5.x sent alarm mails from its ``[MailHandler]`` section with
STARTTLS only when credentials were set and never verified the server
certificate. Here the connection is encrypted by default (STARTTLS, or implicit
TLS with ``security = tls``), the certificate is verified against the system
CAs or a private ``ca_file``, and ``security = none`` must be asked for.

Example::

    from lab_utils_common.mail import MailSettings, build_message, send_email

    settings = MailSettings.from_config("logging.ini")      # [MailHandler]
    send_email(settings, build_message(settings, "pump 3", "pressure too high"))
"""

from __future__ import annotations

import email.utils
import os
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Mapping, Optional

from lab_utils_common.config import (
    ConfigFileError,
    InvalidValueError,
    MissingOptionError,
    Option,
    load_section,
    parse_bool,
    port_number,
    positive_float,
    string_list,
)
from lab_utils_common.safe_text import display_text, header_text

__all__ = ["SECURITY_MODES", "MailSettings", "build_message", "send_email", "read_credentials_file",
           "MessageTooLargeError", "SmtpConversation", "is_permanent"]

#: ``starttls``: plain connection upgraded with STARTTLS (port 587 or 25);
#: ``tls``: implicit TLS from the first byte (port 465); ``none``: no encryption.
SECURITY_MODES = ("starttls", "tls", "none")

_DEFAULT_PORTS = {"starttls": 25, "tls": 465, "none": 25}

# The MailSettings field names that differ from the 0.5.x [MailHandler] option names.
_FIELD_TO_OPTION = {"host": "mail_host"}


def _security_mode(text: str) -> str:
    mode = str(text).strip().lower()
    if mode not in SECURITY_MODES:
        raise ValueError(f"{text!r} is not a security mode (use one of: {', '.join(SECURITY_MODES)})")
    return mode


def _optional_path(text: str) -> Optional[str]:
    text = str(text).strip()
    return os.path.abspath(os.path.expanduser(text)) if text else None


def read_credentials_file(path: str, *, section: str = "MailHandler",
                          option: str = "credentials_file") -> tuple[str, str]:
    """Read a 0.5.x credentials file: the user name on line 1, the password on line 2."""
    full = os.path.abspath(os.path.expanduser(path))
    try:
        with open(full, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ConfigFileError(
            f"option {option!r} of section [{section}]: cannot read the credentials file "
            f"{full!r}: {exc.strerror or exc}", file=full, section=section, option=option) from None
    lines = [line.strip() for line in lines]
    if len(lines) < 2 or not lines[0] or not lines[1]:
        # The content is a secret: say what is wrong, never what is there.
        raise InvalidValueError(
            f"option {option!r} of section [{section}]: the credentials file {full!r} must hold "
            f"the user name on line 1 and the password on line 2 (found {len(lines)} line(s))",
            file=full, section=section, option=option, value=full)
    return lines[0], lines[1]


@dataclass(frozen=True)
class MailSettings:
    """Where and how to send mail; read from a 0.5.x ``[MailHandler]`` section or built directly.

    Example::

        settings = MailSettings(host="smtp.example.org", port=587, sender="lab@example.org",
                                recipients=("alice@example.org",), subject="lab alarm",
                                username="lab", password="...", ca_file="/etc/lab/ca.pem")
    """

    host: str
    sender: str
    recipients: tuple[str, ...]
    subject: str
    port: int = 25
    security: str = "starttls"
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    ca_file: Optional[str] = None
    verify: bool = True
    timeout: float = 10.0
    #: seconds for a whole SMTP conversation, connect to QUIT (``timeout`` is per read)
    deadline: float = 60.0

    def __post_init__(self) -> None:
        if self.security not in SECURITY_MODES:
            raise ValueError(f"security {self.security!r} is not one of {', '.join(SECURITY_MODES)}")
        if isinstance(self.recipients, str):
            object.__setattr__(self, "recipients", tuple(string_list(self.recipients)))
        else:
            object.__setattr__(self, "recipients", tuple(self.recipients))
        if not self.recipients:
            raise ValueError("recipients is empty: give at least one address")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both or neither")
        if self.username is not None and self.security == "none":
            # A password in clear text over the network: refuse rather than leak it.
            raise ValueError(f"credentials for {self.host}:{self.port} would be sent unencrypted "
                             "(security = none): use security = starttls or tls")

    @classmethod
    def from_config(cls, config_file: Optional[str] = None, *, section: str = "MailHandler",
                    environ: Optional[Mapping[str, str]] = None, **overrides: Any) -> MailSettings:
        """Resolve the settings: defaults < ``config_file``'s section < environment < ``overrides``.

        Options (0.5.x names): ``mail_host``, ``port``, ``sender``, ``subject``,
        ``recipients`` (one per line), ``credentials_file`` (user on line 1,
        password on line 2), and new: ``security``, ``ca_file``, ``verify``,
        ``timeout`` (per read), ``deadline`` (per conversation), ``username``/``password`` (when no credentials file;
        ``LABUTILS_MAILHANDLER_PASSWORD_FILE`` reads the password from a file).
        ``overrides`` take the option names or the field names (``host``).
        """
        overrides = {_FIELD_TO_OPTION.get(key, key): value for key, value in overrides.items()}
        options = [
            Option("mail_host", str),
            Option("port", port_number, 0),
            Option("sender", str),
            Option("subject", str, "lab-utils notification"),
            Option("recipients", string_list),
            Option("credentials_file", _optional_path, None),
            Option("username", str, None),
            Option("password", str, None, secret=True),
            Option("security", _security_mode, "starttls"),
            Option("ca_file", _optional_path, None),
            Option("verify", parse_bool, True),
            Option("timeout", positive_float, 10.0),
            Option("deadline", positive_float, 60.0),
        ]
        values = load_section(section, options, config_file, overrides=overrides, environ=environ)
        username, password = values["username"], values["password"]
        if values["credentials_file"]:
            username, password = read_credentials_file(values["credentials_file"], section=section)
        elif (username is None) != (password is None):
            missing = "password" if password is None else "username"
            raise MissingOptionError(
                f"option {missing!r} of section [{section}] is required when "
                f"{'username' if missing == 'password' else 'password'} is set "
                "(or use credentials_file)", file=config_file, section=section, option=missing)
        if not values["recipients"]:
            raise InvalidValueError(f"option 'recipients' of section [{section}] lists no address",
                                    file=config_file, section=section, option="recipients", value="")
        if values["ca_file"] and not os.path.isfile(values["ca_file"]):
            raise ConfigFileError(f"option 'ca_file' of section [{section}]: {values['ca_file']!r} "
                                  "is not a file", file=config_file, section=section,
                                  option="ca_file", value=values["ca_file"])
        port = values["port"] or _DEFAULT_PORTS[values["security"]]
        try:
            return cls(host=values["mail_host"], port=port, security=values["security"],
                       username=username, password=password, sender=values["sender"],
                       recipients=tuple(values["recipients"]), subject=values["subject"],
                       ca_file=values["ca_file"], verify=values["verify"], timeout=values["timeout"],
                       deadline=values["deadline"])
        except ValueError as exc:
            raise InvalidValueError(f"section [{section}]: {exc}", file=config_file,
                                    section=section) from None

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context: system CAs (or only ``ca_file``), hostname checked unless ``verify`` is off."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def build_message(settings: MailSettings, subject: str, body: str) -> EmailMessage:
    """One plain-text message from ``settings.sender`` to ``settings.recipients``; the subject
    and body shown as sent (:mod:`lab_utils_common.safe_text`), never interpreted."""
    message = EmailMessage()
    # A header must not gain a line break (header injection): folded, encoded words defused.
    message["Subject"] = header_text(subject)
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message["Date"] = email.utils.formatdate(localtime=True)
    message["Message-ID"] = email.utils.make_msgid(domain=_sender_domain(settings.sender))
    message.set_content(display_text(body))
    for name, value in message.items():
        if "\r" in value or "\n" in value:  # defence in depth: never send such a message
            raise ValueError(f"mail header {name} would hold a line break: {value!r}")
    return message


def _sender_domain(sender: str) -> Optional[str]:
    address = email.utils.parseaddr(sender)[1]
    return address.rpartition("@")[2] or None


class MessageTooLargeError(smtplib.SMTPException):
    """The message is larger than the server's SIZE (from EHLO) or ``max_message_bytes``."""

    def __init__(self, size: int, limit: int, what: str) -> None:
        super().__init__(f"message of {size} bytes exceeds {what} = {limit} bytes")
        self.size = size
        self.limit = limit


def is_permanent(error: BaseException) -> bool:
    """Whether sending again cannot help: a 5xx answer, or a message too large."""
    if isinstance(error, MessageTooLargeError):
        return True
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return bool(error.recipients) and all(500 <= code < 600
                                              for code, _ in error.recipients.values())
    code = getattr(error, "smtp_code", None)
    return isinstance(code, int) and 500 <= code < 600


class SmtpConversation:
    """One call of :func:`send_email` that another thread may cut short with :meth:`abort`.

    Example::

        conversation = SmtpConversation()
        # thread A: send_email(settings, message, conversation=conversation)
        # thread B: conversation.abort()     # A raises TimeoutError at once
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._smtp: Optional[smtplib.SMTP] = None
        self.aborted: Optional[str] = None

    def _attach(self, smtp: Optional[smtplib.SMTP]) -> None:
        with self._lock:
            self._smtp = smtp
            if smtp is not None and self.aborted:
                self._cut(smtp)

    def abort(self, why: str = "aborted") -> None:
        """End the conversation in progress (and any that starts later) with TimeoutError."""
        with self._lock:
            self.aborted = why
            if self._smtp is not None:
                self._cut(self._smtp)

    @staticmethod
    def _cut(smtp: smtplib.SMTP) -> None:
        sock = getattr(smtp, "sock", None)
        if sock is not None:
            try:  # wakes the thread blocked reading: it sees the end of the connection
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _ReportsSocket:
    """Mixin for smtplib's clients: reports the socket as soon as it exists (before the greeting;
    for SMTP_SSL once its handshake is done), so the conversation's deadline can cut it short."""

    conversation: Optional[SmtpConversation] = None

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self.sock = sock
        if self.conversation is not None:
            self.conversation._attach(self)
        return sock


class _SMTP(_ReportsSocket, smtplib.SMTP):
    pass


class _SMTP_SSL(_ReportsSocket, smtplib.SMTP_SSL):
    pass


def send_email(settings: MailSettings, message: EmailMessage, *,
               max_message_bytes: Optional[int] = None,
               conversation: Optional[SmtpConversation] = None) -> None:
    """Connect as ``settings.security`` says, log in if credentials are set, send ``message``;
    the whole conversation ends within ``settings.deadline`` seconds.

    Raises :class:`smtplib.SMTPException` (:func:`is_permanent` tells whether sending again
    can help; :class:`MessageTooLargeError` for a message over the server's SIZE or
    ``max_message_bytes``), :class:`ssl.SSLError` (e.g. a certificate that does not verify),
    :class:`TimeoutError` (``deadline`` passed, or aborted) or :class:`OSError` (server
    unreachable); retrying is the caller's decision.
    """
    conversation = conversation or SmtpConversation()
    data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    if max_message_bytes is not None and len(data) > max_message_bytes:
        raise MessageTooLargeError(len(data), max_message_bytes, "max_message_bytes")
    timer = threading.Timer(settings.deadline, conversation.abort,
                            (f"no answer within deadline = {settings.deadline} s",))
    timer.daemon = True
    timer.start()
    try:
        _converse(settings, message, len(data), conversation)
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        if conversation.aborted:
            raise TimeoutError(f"mail server {settings.host}:{settings.port}: "
                               f"{conversation.aborted}") from exc
        raise
    finally:
        timer.cancel()
        conversation._attach(None)


def _converse(settings: MailSettings, message: EmailMessage, size: int,
              conversation: SmtpConversation) -> None:
    context = settings.ssl_context() if settings.security != "none" else None
    smtp: smtplib.SMTP
    if settings.security == "tls":
        smtp = _SMTP_SSL(timeout=settings.timeout, context=context)
    else:
        smtp = _SMTP(timeout=settings.timeout)
    smtp.conversation = conversation  # type: ignore[attr-defined]
    smtp._host = settings.host  # what SMTP(host) would set: TLS checks the certificate against it
    try:
        smtp.connect(settings.host, settings.port)
        smtp.ehlo()
        if settings.security == "starttls":
            if not smtp.has_extn("starttls"):
                raise smtplib.SMTPNotSupportedError(
                    f"mail server {settings.host}:{settings.port} does not offer STARTTLS; use "
                    "security = tls if it expects TLS from the start, or security = none for a "
                    "trusted relay without encryption")
            smtp.starttls(context=context)
            conversation._attach(smtp)  # the TLS socket replaced the plain one
            smtp.ehlo()
        limit = smtp.esmtp_features.get("size", "").strip()
        if limit.isdigit() and int(limit) > 0 and size > int(limit):
            raise MessageTooLargeError(size, int(limit), f"the SIZE of {settings.host}")
        if settings.username is not None:
            smtp.login(settings.username, settings.password or "")
        smtp.send_message(message)
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass  # the message was accepted: a lost goodbye changes nothing
    finally:
        smtp.close()
