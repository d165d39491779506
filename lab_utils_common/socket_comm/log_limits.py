"""Log lines about bad input stay small and few: a hostile client must not flood logs and alarms.

A refused 1 MiB message would otherwise be logged whole (twice, with argparse's
error that repeats it), and each such line raises an alarm mail.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

__all__ = ["cut", "RateLimit"]


def cut(text: object, limit: int = 200) -> str:
    """``repr`` of ``text``, cut to ``limit`` characters with its full size named when longer."""
    text = str(text)
    if len(text) <= limit:
        return repr(text)
    size = len(text.encode("utf-8", errors="replace"))
    return f"{text[:limit]!r}... ({size} bytes, cut to {limit} characters)"


class RateLimit:
    """At most ``count`` events per ``interval`` seconds for each key; counts the rest.

    Example::

        limit = RateLimit(count=10, interval=60)
        allowed, suppressed = limit.allow("invalid message")
        if allowed:
            logger.warning("Invalid message ... (%d similar lines suppressed)", suppressed)
    """

    def __init__(self, count: int = 10, interval: float = 60.0) -> None:
        self.count = count
        self.interval = interval
        self._lock = threading.Lock()
        self._windows: dict[str, list] = {}  # key -> [window start, events in window, suppressed]

    def allow(self, key: str, now: Optional[float] = None) -> tuple[bool, int]:
        """``(True, suppressed since the last allowed one)`` or ``(False, 0)`` when over the limit."""
        now = time.monotonic() if now is None else now
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window[0] >= self.interval:
                suppressed = window[2] if window is not None else 0
                if len(self._windows) > 1000:  # keys are a fixed few; never grow without bound
                    self._windows.clear()
                self._windows[key] = [now, 1, 0]
                return True, suppressed
            if window[1] < self.count:
                window[1] += 1
                suppressed, window[2] = window[2], 0
                return True, suppressed
            window[2] += 1
            return False, 0
