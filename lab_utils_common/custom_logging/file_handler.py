"""Daily log files named ``basename_YYYY-MM-DD.extension``, with an optional retention."""

from __future__ import annotations

import datetime
import logging
import logging.handlers
import os
import re
import sys
import time
from typing import Callable, Optional, TextIO

__all__ = ["CustomTimedRotatingFileHandler"]


class CustomTimedRotatingFileHandler(logging.handlers.TimedRotatingFileHandler):
    """Write to one file per local day, ``<path>/<basename>_<YYYY-MM-DD><extension>``.

    Compatible with 0.5.4's constructor. New, keyword-only: ``days_to_keep``
    (delete this handler's files older than that many days; ``None`` keeps all),
    ``separator`` between base name and date, and ``clock`` (a ``time.time``-like
    function, for tests). The directory is created if missing (``OSError`` if it
    cannot be).

    Example::

        handler = CustomTimedRotatingFileHandler("~/logs/pump", "pump", ".log", days_to_keep=30)
        logging.getLogger().addHandler(handler)   # ~/logs/pump/pump_2024-05-01.log
    """

    path: str  #: Directory of the log files.
    basename: str  #: Full path of the files without date and extension.
    extension: str  #: File name extension, e.g. '.log'.
    stream: Optional[TextIO]  #: The open file, or None before the first record.
    rolloverAt: int  #: Time (clock seconds) of the next change of file.

    def __init__(self, path: str, basename: str, extension: str = ".log", *,
                 days_to_keep: Optional[int] = None, separator: str = "_",
                 clock: Callable[[], float] = time.time, encoding: str = "utf-8") -> None:
        if days_to_keep is not None and days_to_keep < 1:
            raise ValueError(f"days_to_keep must be at least 1 (or None to keep all), got {days_to_keep!r}")
        self.path = os.path.abspath(os.path.expanduser(path))
        self.basename = os.path.join(self.path, basename)
        self.extension = extension
        self.separator = separator
        self.days_to_keep = days_to_keep
        self._clock = clock
        os.makedirs(self.path, exist_ok=True)
        super().__init__(filename=self._filename_at(clock()), when="midnight", delay=True,
                         utc=False, encoding=encoding)
        self.rolloverAt = self.computeRollover(int(clock()))
        self._delete_expired(clock())

    def _filename_at(self, timestamp: float) -> str:
        day = time.strftime("%Y-%m-%d", time.localtime(timestamp))
        return f"{self.basename}{self.separator}{day}{self.extension}"

    @property
    def current_file(self) -> str:
        """Path of the file records go to now."""
        return self.baseFilename

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 (logging API)
        """True once the clock has passed local midnight."""
        return self._clock() >= self.rolloverAt

    def doRollover(self) -> None:  # noqa: N802 (logging API)
        """Switch to the file of the current day and delete expired files."""
        if self.stream:
            self.stream.close()
            self.stream = None  # type: ignore[assignment]
        now = self._clock()
        self.baseFilename = self._filename_at(now)
        self.rolloverAt = self.computeRollover(int(now))
        self._delete_expired(now)

    def _delete_expired(self, now: float) -> None:
        if self.days_to_keep is None:
            return
        today = datetime.date.fromtimestamp(now)
        folder, stem = os.path.split(self.basename)
        pattern = re.compile(re.escape(stem + self.separator) + r"(\d{4}-\d{2}-\d{2})"
                             + re.escape(self.extension) + r"\Z")
        try:
            names = os.listdir(folder)
        except OSError:
            return
        for name in names:
            match = pattern.match(name)
            if not match:
                continue
            try:
                day = datetime.date.fromisoformat(match.group(1))
            except ValueError:
                continue
            if (today - day).days >= self.days_to_keep:
                try:
                    os.remove(os.path.join(folder, name))
                except OSError as exc:
                    # Retention must not stop logging; stderr, not a logger: this runs
                    # inside emit and the record could come back to this handler.
                    print(f"lab_utils_common: cannot delete expired log file "
                          f"{os.path.join(folder, name)}: {exc}", file=sys.stderr)
