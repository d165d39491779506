"""The alarm line: what NonPickledSocketHandler sends and log-relay receives.

lab-utils 0.5.x formats each record with :data:`ALARM_FORMAT` and sends it with
no terminator, so records arrive back to back. This project sends the same text
followed by ``\\n``, with the message escaped (:func:`escape_message`) so that a
record is always exactly one line; 0.5.x receivers still parse it.

It also holds the acknowledgement protocol between this project's sender and log-relay
(hello, ready, sequenced lines, acks; see below).
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional

__all__ = [
    "ALARM_FORMAT",
    "ALARM_DATEFMT",
    "ALARM_FIELDS",
    "escape_message",
    "unescape_message",
    "AlarmRecord",
    "LINE_PATTERN",
    "format_line",
    "parse_line",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "hello_line",
    "parse_hello",
    "ready_line",
    "parse_ready",
    "ack_line",
    "parse_ack",
    "sequenced_line",
    "split_sequenced",
]

#: lab-utils 0.5.x's ``[AlarmLogger]`` format (``%`` style).
ALARM_FORMAT = (
    "{%(name)s} --date {%(asctime)s} --level {%(levelname)s} --app {%(name)s} "
    "--module {%(module)s} --function {%(funcName)s} --message {%(message)s}"
)

#: lab-utils 0.5.x's ``[AlarmLogger]`` date format.
ALARM_DATEFMT = "%Y-%m-%d %H:%M:%S"

#: The fields of an alarm line, in order, after the leading ``{name}``.
ALARM_FIELDS = ("date", "level", "app", "module", "function", "message")

#: One line of this project's sender (message escaped), with an optional sequence number in
#: front: groups seq, name, date, level, app, module, function, message. Fields other than the
#: message hold no braces or line breaks; the escaped message holds no line break.
LINE_PATTERN = (
    r"(?:(\d{1,19}) )?\{([^{}\r\n]*)\} --date \{([^{}\r\n]*)\} --level \{([^{}\r\n]*)\} "
    r"--app \{([^{}\r\n]*)\} --module \{([^{}\r\n]*)\} --function \{([^{}\r\n]*)\} "
    r"--message \{([^\r\n]*)\}")
_LINE = re.compile(LINE_PATTERN)


class AlarmRecord(NamedTuple):
    """One alarm record as it travels from the handler to the relay's spool.

    Example::

        record = AlarmRecord("pump", "2024-05-01 10:00:00", "ERROR", "vacuum", "check", "too hot")
        line = format_line(record)            # '{pump} --date {2024-05-01 10:00:00} ...'
        parse_line(line) == (None, record)    # True
    """

    app: str
    date: str
    level: str
    module: str
    function: str
    message: str


def format_line(record: AlarmRecord) -> str:
    """The record as this project's sender writes it (without line end): the 0.5.x text with
    the message escaped. Raises ValueError naming a field that holds a brace or line break."""
    for name in AlarmRecord._fields[:-1]:
        value = getattr(record, name)
        if any(char in value for char in "{}\r\n"):
            raise ValueError(f"alarm field {name} = {value!r} holds a brace or a line break")
    return (f"{{{record.app}}} --date {{{record.date}}} --level {{{record.level}}} "
            f"--app {{{record.app}}} --module {{{record.module}}} --function {{{record.function}}} "
            f"--message {{{escape_message(record.message)}}}")


def parse_line(line: str) -> tuple[Optional[int], AlarmRecord]:
    """(sequence number or None, record) of one line as :func:`format_line` or
    :func:`sequenced_line` make it (line end optional); ProtocolError if it is not one."""
    match = _LINE.fullmatch(line.rstrip("\n"))
    if match is None:
        raise ProtocolError(f"not an alarm line: {line[:200]!r}")
    seq, _name, date, level, app, module, function, message = match.groups()
    return (None if seq is None else int(seq),
            AlarmRecord(app, date, level, module, function, unescape_message(message)))


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {"\\": "\\", "n": "\n", "r": "\r"}


def escape_message(text: str) -> str:
    """Escape backslash, newline and carriage return so the text fits on one line."""
    if "\\" not in text and "\n" not in text and "\r" not in text:
        return text
    return "".join(_ESCAPES.get(char, char) for char in text)


def unescape_message(text: str) -> str:
    """Invert :func:`escape_message`; an unknown escape is kept as it is."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in _UNESCAPES:
            out.append(_UNESCAPES[text[i + 1]])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


# ---------------------------------------------------------------------- acknowledged delivery
#
# This project's sender and log-relay speak a small protocol on top of the lines, as RELP
# does for rsyslog. A 0.5.x sender never sends the hello and never reads: the relay treats
# such a connection as before.
#
#   sender -> relay   "#lab-utils-relay hello 1 <sender id>\n"       first line of a connection
#   relay  -> sender  "#lab-utils-relay ready 1 <last seq>\n"        last sequence number the
#                                                                    spool holds for that sender
#   sender -> relay   "<seq> <alarm line>\n"                          seq: 1, 2, 3 ... per sender
#   relay  -> sender  "ack <seq>\n"                                   every record up to seq of
#                                                                    this sender is committed
#
# The sender keeps each record until acknowledged and, after reconnecting, sends again those
# above <last seq>; the relay drops a (sender id, seq) it already holds.

#: The version of the acknowledgement protocol this library speaks.
PROTOCOL_VERSION = 1
HELLO_PREFIX = b"#lab-utils-relay hello "
READY_PREFIX = b"#lab-utils-relay ready "
#: Longest hello line accepted (a sender id is short: host/pid/random).
MAX_HELLO = 512


class ProtocolError(ValueError):
    """A protocol line that does not parse; the message quotes it."""


def hello_line(sender_id: str) -> bytes:
    """The first line this project's sender writes on a connection."""
    if not sender_id or any(char.isspace() for char in sender_id) or len(sender_id) > 200:
        raise ValueError(f"sender id {sender_id!r} must be 1-200 characters without spaces")
    return b"%s%d %s\n" % (HELLO_PREFIX, PROTOCOL_VERSION, sender_id.encode("utf-8"))


def parse_hello(line: bytes) -> tuple[int, str]:
    """(protocol version, sender id) of a hello line (with or without its line end)."""
    parts = line.rstrip(b"\r\n")[len(HELLO_PREFIX):].split(b" ")
    if not line.startswith(HELLO_PREFIX) or len(parts) != 2 or not parts[0].isdigit() \
            or not parts[1]:
        raise ProtocolError(f"not a hello line: {line[:MAX_HELLO]!r}")
    return int(parts[0]), parts[1].decode("utf-8", "backslashreplace")


def ready_line(last_seq: int) -> bytes:
    """The relay's answer to a hello: the last sequence number it holds for that sender."""
    return b"%s%d %d\n" % (READY_PREFIX, PROTOCOL_VERSION, last_seq)


def parse_ready(line: bytes) -> int:
    """The last sequence number of a ready line."""
    parts = line.rstrip(b"\r\n")[len(READY_PREFIX):].split(b" ")
    if not line.startswith(READY_PREFIX) or len(parts) != 2 or not parts[1].isdigit():
        raise ProtocolError(f"not a ready line: {line[:MAX_HELLO]!r}")
    return int(parts[1])


def ack_line(seq: int) -> bytes:
    """The relay's acknowledgement: every record of this sender up to ``seq`` is committed."""
    return b"ack %d\n" % seq


def parse_ack(line: bytes) -> int:
    """The sequence number of an ack line."""
    if not line.startswith(b"ack ") or not line[4:].rstrip(b"\r\n").isdigit():
        raise ProtocolError(f"not an ack line: {line[:MAX_HELLO]!r}")
    return int(line[4:])


def sequenced_line(seq: int, line: str) -> bytes:
    """A record line with its sequence number, as sent after a hello."""
    return b"%d %s\n" % (seq, line.encode("utf-8", "backslashreplace"))


def split_sequenced(line: bytes) -> tuple[Optional[int], bytes]:
    """(seq, record line) of a line received after a hello; seq None if it has none."""
    head, _, rest = line.partition(b" ")
    if head.isdigit() and len(head) <= 19 and rest:
        return int(head), rest
    return None, line
