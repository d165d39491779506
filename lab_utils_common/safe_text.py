"""Text from senders made safe to show: in a mail header, a mail body, a Slack message.

Alarm text comes from anyone who can reach the relay's port. Shown raw, a NUL or an
escape sequence confuses mail clients and terminals, a bidi override (U+202E) makes
text read differently from what it is, an RFC 2047 encoded word (``=?utf-8?q?...?=``)
put into a header is decoded by the mail library into whatever it holds (a line break
and a header of the sender's choosing), and Slack turns ``<!channel>`` into a ping.

Example::

    display_text("a\\x1b[31mred\\u202e")          # 'a\\\\x1b[31mred\\\\u202e'
    header_text("=?utf-8?q?=0D=0AX:_y?= hi")    # the literal text, never decoded
    slack_text("<!channel> & ```code```")        # '&lt;!channel&gt; &amp; `\\u200b``code`\\u200b``'
"""

from __future__ import annotations

import re

__all__ = ["display_text", "header_text", "slack_text"]

# C0 controls but tab and line feed, DEL, C1 controls: shown as \x.. escapes.
_CONTROLS = {code: f"\\x{code:02x}" for code in [*range(0, 9), *range(11, 32), *range(127, 160)]}
# Bidirectional formatting characters: embeddings, overrides, isolates, marks.
_BIDI = {code: f"\\u{code:04x}" for code in [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F),
                                             *range(0x2066, 0x206A)]}
_DISPLAY = {**_CONTROLS, **_BIDI}
_ENCODED_WORD_START = re.compile(r"=\?")
# A zero-width space between "=" and "?": the text reads the same, but is no encoded word.
_DEFUSED = "=\u200b?"


def display_text(text: object) -> str:
    """``text`` with control characters (but tab and line feed) and bidi controls escaped."""
    return str(text).translate(_DISPLAY)


def header_text(text: object) -> str:
    """One line for a mail header: escaped as :func:`display_text`, line breaks folded into
    spaces, and ``=?`` no longer starting an encoded word."""
    return _ENCODED_WORD_START.sub(_DEFUSED, display_text(" ".join(str(text).split())))


def slack_text(text: object) -> str:
    """Escaped for a Slack message: ``&``, ``<``, ``>`` as Slack documents (so no mention,
    link or ``<!channel>``), code fences broken, controls as :func:`display_text`."""
    escaped = display_text(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("```", "`\u200b``")
