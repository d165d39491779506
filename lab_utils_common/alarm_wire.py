"""The alarm line: what NonPickledSocketHandler sends and log-relay receives.

lab-utils 0.5.x formats each record with :data:`ALARM_FORMAT` and sends it with
no terminator, so records arrive back to back. This project sends the same text
followed by ``\\n``, with the message escaped (:func:`escape_message`) so that a
record is always exactly one line; 0.5.x receivers still parse it.
"""

from __future__ import annotations

__all__ = [
    "ALARM_FORMAT",
    "ALARM_DATEFMT",
    "ALARM_FIELDS",
    "escape_message",
    "unescape_message",
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
