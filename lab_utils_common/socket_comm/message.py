"""What a message and a reply look like on the wire (lab-utils 0.5.x compatible).

A message is UTF-8 text, one per TCP connection. Words are separated by spaces;
a word in braces keeps its spaces: ``set_point {my sensor} 3.5`` becomes
``['set_point', 'my sensor', '3.5']``, exactly as the 0.5.x server splits it.

Optional authentication puts one extra first line in front of the message,
``#auth <token>``. A 0.5.x server would split that into the command word
``#auth``, which no parser accepts: it answers ``invalid choice: '#auth'`` and
runs nothing, and the token does not appear in that reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

__all__ = [
    "buffer_size",
    "SPLIT_PATTERN",
    "split_message",
    "split_raw",
    "AUTH_PREFIX",
    "add_token",
    "take_token",
    "ERROR_PREFIX",
    "REPLY_ERROR_PREFIXES",
    "is_error_reply",
    "decode_message",
    "Message",
]

#: What a 0.5.x peer reads in one ``recv``: the longest message a 0.5.x server
#: accepts and the longest reply a 0.5.x client receives.
buffer_size: int = 4096

#: A space that is not inside ``{...}`` (the 0.5.x regex).
SPLIT_PATTERN = re.compile(r" (?![^{}]*})")

#: First-line marker of an authenticated message: ``#auth <token>\n<message>``.
AUTH_PREFIX = "#auth "

#: Start of every error reply that the daemon itself produces (0.5.x: ``Error! <argparse message>``).
ERROR_PREFIX = "Error! "

#: Starts of replies that report a failure; the CLI exits non-zero on them.
REPLY_ERROR_PREFIXES = (ERROR_PREFIX, "Unknown exception!", "Daemon error")

# C0 control characters other than tab, newline and carriage return: binary data, not a command.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def split_message(message: str, left: str = "{", right: str = "}") -> list[str]:
    """Split on spaces outside braces and strip spaces and braces from each word, as 0.5.x does.

    Same words as ``SPLIT_PATTERN.split`` (``" (?![^{}]*})"``), in linear time: that
    regex scans ahead to the next brace from every space, quadratic in the length.
    """
    strip = " " + left + right
    return [word.strip(strip) for word in split_raw(message, left, right)]


def split_raw(message: str, left: str = "{", right: str = "}") -> list[str]:
    """The words of ``SPLIT_PATTERN.split(message)`` (delimiters kept), in linear time."""
    if left not in message and right not in message:
        return message.split(" ")
    # A space is kept inside a word exactly when the next brace after it closes: split the
    # text at the braces, and each piece between two braces is split on spaces or not as a whole.
    parts = re.split(f"([{re.escape(left)}{re.escape(right)}])", message)
    words: list[str] = []
    current: list[str] = []
    for index in range(0, len(parts) - 1, 2):
        text, brace = parts[index], parts[index + 1]
        if brace == right or " " not in text:
            current.append(text)
        else:
            first, *middle, last = text.split(" ")
            current.append(first)
            words.append("".join(current))
            words.extend(middle)
            current = [last]
        current.append(brace)
    last_text = parts[-1]
    if " " in last_text:
        first, *middle, last = last_text.split(" ")
        current.append(first)
        words.append("".join(current))
        words.extend(middle)
        current = [last]
    else:
        current.append(last_text)
    words.append("".join(current))
    return words


def add_token(message: str, token: Optional[str]) -> str:
    """The message with the authentication line in front, or unchanged when ``token`` is empty."""
    if not token:
        return message
    return f"{AUTH_PREFIX}{token}\n{message}"


def take_token(message: str) -> tuple[Optional[str], str]:
    """Split off the authentication line: ``(token, rest)``, or ``(None, message)`` without one."""
    if not message.startswith(AUTH_PREFIX):
        return None, message
    first, _, rest = message.partition("\n")
    return first[len(AUTH_PREFIX):].strip(), rest


def is_error_reply(reply: str) -> bool:
    """True when the reply reports an error (bad message, failed command, refused token)."""
    return reply.startswith(REPLY_ERROR_PREFIXES)


def decode_message(data: bytes) -> str:
    """Decode a received message, raising ValueError naming the bad byte for non-text input."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start:exc.start + 1]
        raise ValueError(f"message is not valid UTF-8 text (byte 0x{bad.hex()} at position {exc.start})") from None
    control = _CONTROL.search(text)
    if control is not None:
        raise ValueError(f"message contains the control character {control.group()!r} at position "
                         f"{control.start()}; messages are text")
    return text


@dataclass(frozen=True)
class Message:
    """A received message: ``head`` (the command line, split into words), ``body`` and ``token``.

    The body is everything after the first line, for a server with ``accepts_body``
    (db-admin's ``insert_many`` rows), handed to the command untouched; otherwise it is
    empty and the whole text is the head, as 0.5.x read it.

    Example::

        Message.from_text("#auth s3cret\ninsert_many beam\ntime,current\n...", with_body=True)
        # Message(head='insert_many beam', body='time,current\n...', token='s3cret')
    """

    head: str
    body: str = ""
    token: Optional[str] = None

    @classmethod
    def from_text(cls, text: str, with_body: bool = False) -> Message:
        """Split off the ``#auth`` line, then (``with_body``) the head line from the body."""
        token, text = take_token(text)
        if with_body:
            head, _, body = text.partition("\n")
            return cls(head.rstrip(), body, token)
        return cls(text.rstrip(), "", token)
