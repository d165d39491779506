"""The optional shared token: read from a file, compared in constant time.

The token never travels on a command line and never goes into a log; the wire
form (an ``#auth <token>`` first line) is in :mod:`.message`.
"""

from __future__ import annotations

import hmac
import os

from lab_utils_common import LabUtilsError

__all__ = ["TokenFileError", "read_token_file", "tokens_match"]


class TokenFileError(LabUtilsError, OSError):
    """The token file cannot be read or is empty; the message names the file."""


def read_token_file(path: str) -> str:
    """The token in ``path`` (surrounding whitespace removed), or :class:`TokenFileError`."""
    full = os.path.abspath(os.path.expanduser(path))
    try:
        with open(full, encoding="utf-8") as handle:
            token = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read the token file {full!r}: {getattr(exc, 'strerror', None) or exc}") \
            from None
    if not token:
        raise TokenFileError(f"the token file {full!r} is empty")
    if "\n" in token or " " in token:
        raise TokenFileError(f"the token in {full!r} contains spaces or line breaks; use one word")
    return token


def tokens_match(given: str, expected: str) -> bool:
    """Compare two tokens in constant time (no timing hint about how much of a guess was right)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
