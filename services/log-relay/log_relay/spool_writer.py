"""The thread that commits received records to the spool, in batches.

The event loop hands over parsed records with :meth:`SpoolWriter.submit` and
goes on reading; this thread commits whatever has gathered in one transaction
(one fsync), so the batch grows with the load: one record per commit when it is
quiet, thousands under a flood. SQLite releases the GIL while it writes, so the
loop keeps receiving during an fsync. A failed commit (disk full, ...) is
retried with back-off and the records stay queued: nothing is dropped, and the
receiver stops reading once :attr:`SpoolWriter.backlog` is too long.

Example::

    writer = SpoolWriter(spool_path, sinks=("mail",), min_level=30)
    writer.start()
    writer.submit([(time.time(), "10.0.0.5", date, "ERROR", 40, "pump", "m", "f", "hot", None)])
    writer.stop()       # commits everything submitted, then returns
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional, Sequence

from lab_utils_common.custom_logging import getLogger

from log_relay.spool import RecordRow, Spool

__all__ = ["SpoolWriter", "CommitCallback"]

_log = getLogger(__name__)

#: Called in the writer thread after each commit: (records committed, {(app, level): oldest
#: received_at} of the records queued for delivery).
CommitCallback = Callable[[int, dict], None]


class SpoolWriter:
    """Own the spool's write connection in a thread; commit submitted records in batches."""

    def __init__(self, spool_path: str, *, sinks: Sequence[str], min_level: int,
                 on_commit: Optional[CommitCallback] = None, max_batch: int = 20000,
                 retry_max: float = 30.0) -> None:
        self.spool_path = spool_path
        self.sinks = tuple(sinks)
        self.min_level = min_level
        self.on_commit = on_commit
        self.max_batch = max_batch
        self.retry_max = retry_max
        self.committed = 0
        self.last_error: Optional[str] = None
        #: monotonic time of the first failed commit of the current run of failures, else None
        self.failing_since: Optional[float] = None
        self._queue: list[RecordRow] = []
        self._meta: dict[str, Optional[str]] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._abandoned = False
        self._thread: Optional[threading.Thread] = None
        self._spool: Optional[Spool] = None
        self._next_id = 0
        self._in_flight = 0

    @property
    def backlog(self) -> int:
        """Records submitted and not committed yet."""
        return len(self._queue)

    def start(self) -> None:
        """Open the spool (raises :class:`~log_relay.spool.SpoolError`) and start the thread."""
        self._spool = Spool.open(self.spool_path)
        self._next_id = self._spool.next_record_id()
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    def submit(self, rows: Sequence[RecordRow]) -> None:
        """Queue records for the next commit (thread-safe, never blocks on the disk)."""
        with self._cond:
            self._queue.extend(rows)
            self._cond.notify()

    def set_meta(self, values: dict[str, Optional[str]]) -> None:
        """Queue status entries to write with the next commit."""
        with self._cond:
            self._meta.update(values)
            self._cond.notify()

    def stop(self, timeout: Optional[float] = None, *,
             give_up_failing_after: Optional[float] = None) -> bool:
        """Commit everything submitted, then stop; False if that took longer than ``timeout``,
        or if commits have been failing (disk full) for ``give_up_failing_after`` seconds:
        then :attr:`backlog` records are not in the spool."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.is_alive():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            failing = self.failing_since
            if give_up_failing_after is not None and failing is not None \
                    and now - failing >= give_up_failing_after:
                with self._cond:  # the thread stops retrying; the records stay uncommitted
                    self._abandoned = True
                    self._cond.notify()
                return False
            self._thread.join(0.05 if deadline is None else min(0.05, deadline - now))
        return True

    @property
    def uncommitted(self) -> int:
        """Records submitted and not committed: waiting, or in the batch being retried."""
        with self._cond:
            return len(self._queue) + self._in_flight

    def _run(self) -> None:
        assert self._spool is not None
        delay = 0.05
        batch: list[RecordRow] = []
        meta: dict[str, Optional[str]] = {}
        while True:
            with self._cond:
                while not self._queue and not self._meta and not batch and not meta:
                    if self._stopping:
                        self._spool.close()
                        return
                    self._cond.wait()
                if not batch:
                    batch = self._queue[:self.max_batch]
                    del self._queue[:len(batch)]
                    self._in_flight = len(batch)
                meta.update(self._meta)
                self._meta.clear()
            try:
                if batch:
                    self._spool.append(batch, first_id=self._next_id, sinks=self.sinks,
                                       min_level=self.min_level)
                if meta:
                    self._spool.set_meta(meta)
            except Exception as exc:  # disk full, I/O error, locked: keep the batch and retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                _log.error("spool %s: commit of %d record(s) failed, retrying in %.1f s: %s",
                           self.spool_path, len(batch), delay, self.last_error)
                with self._cond:
                    if self._abandoned:
                        self._spool.close()
                        return
                    self._cond.wait(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            delay = 0.05
            self.failing_since = None
            self._next_id += len(batch)
            self.committed += len(batch)
            with self._cond:
                self._in_flight = 0
            if batch and self.on_commit is not None:
                self.on_commit(len(batch), self._groups(batch))
            batch, meta = [], {}

    def _groups(self, batch: list[RecordRow]) -> dict:
        """(app, level) -> oldest received_at of the batch's records that go to the sinks."""
        groups: dict = {}
        min_level = self.min_level
        for row in batch:
            levelno = row[4]
            if levelno is None or levelno >= min_level:
                key = (row[5] or "", row[3])
                if key not in groups:
                    groups[key] = row[0]
        return groups
