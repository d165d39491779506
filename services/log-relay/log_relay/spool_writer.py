"""The thread that commits received records to the spool, in batches.

The event loop hands over parsed records with :meth:`SpoolWriter.submit` and
goes on reading; this thread commits whatever has gathered in one transaction
(one fsync), so the batch grows with the load: one record per commit when it is
quiet, thousands under a flood. SQLite releases the GIL while it writes, so the
loop keeps receiving during an fsync. A failed commit (disk full, ...) is
retried with back-off and the records stay queued: nothing is dropped, and the
receiver stops reading at the first failure (``on_failure``) and while
:attr:`SpoolWriter.backlog_bytes` is too large.

Records of an acknowledging sender carry (sender id, sequence number): one the
spool already holds (sent again after a lost acknowledgement) is dropped, and
after each commit ``on_commit`` gets the highest sequence number committed per
connection, to acknowledge.

Example::

    writer = SpoolWriter(spool_path, sinks=("mail",), min_level=30)
    writer.start()
    writer.submit([(time.time(), "10.0.0.5", date, "ERROR", 40, "pump", "m", "f", "hot", None,
                    None, None)])
    writer.stop()       # commits everything submitted, then returns
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from lab_utils_common.custom_logging import getLogger
from log_relay.spool import RecordRow, Spool

__all__ = ["SpoolWriter", "CommitCallback"]

_log = getLogger(__name__)

#: Called in the writer thread after each commit: (records committed, {(app, level): oldest
#: received_at} of the records queued for delivery, {connection: last sequence number committed}).
CommitCallback = Callable[[int, dict, dict], None]

# Row fields used here (see log_relay.spool.RecordRow).
_LEVEL, _LEVELNO, _APP, _SENDER, _SEQ = 3, 4, 5, 10, 11


@dataclass
class _Chunk:
    rows: Sequence[RecordRow]
    connection: Any  # what to acknowledge to (None: a sender without acknowledgements)
    size: int        # bytes received for these rows (the memory bound counts these)


class SpoolWriter:
    """Own the spool's write connection in a thread; commit submitted records in batches."""

    def __init__(self, spool_path: str, *, sinks: Sequence[str], min_level: int,
                 on_commit: Optional[CommitCallback] = None,
                 on_failure: Optional[Callable[[], None]] = None, max_batch: int = 20000,
                 retry_max: float = 30.0) -> None:
        self.spool_path = spool_path
        self.sinks = tuple(sinks)
        self.min_level = min_level
        self.on_commit = on_commit
        self.on_failure = on_failure
        self.max_batch = max_batch
        self.retry_max = retry_max
        self.committed = 0
        #: records dropped because the spool held them already (sent again by their sender)
        self.duplicates = 0
        self.last_error: Optional[str] = None
        #: monotonic time of the first failed commit of the current run of failures, else None
        self.failing_since: Optional[float] = None
        self._queue: collections.deque[_Chunk] = collections.deque()
        self._queued_rows = 0
        self._queued_bytes = 0
        self._meta: dict[str, Optional[str]] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._abandoned = False
        self._thread: Optional[threading.Thread] = None
        self._spool: Optional[Spool] = None
        self._next_id = 0
        self._in_flight = 0
        self._in_flight_bytes = 0
        # Last sequence number committed per sender: read by the loop to answer a hello.
        self._committed_seqs: dict[str, int] = {}

    @property
    def backlog(self) -> int:
        """Records submitted and not committed yet (waiting, or in the batch being written)."""
        return self._queued_rows + self._in_flight

    @property
    def backlog_bytes(self) -> int:
        """Bytes received for the records not committed yet."""
        return self._queued_bytes + self._in_flight_bytes

    def last_sequence(self, sender: str) -> int:
        """The last sequence number of ``sender`` that the spool holds (0: none)."""
        return self._committed_seqs.get(sender, 0)

    def start(self) -> None:
        """Open the spool (raises :class:`~log_relay.spool.SpoolError`) and start the thread."""
        self._spool = Spool.open(self.spool_path)
        self._next_id = self._spool.next_record_id()
        self._committed_seqs = self._spool.sender_sequences()
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    def submit(self, rows: Sequence[RecordRow], *, connection: Any = None, size: int = 0) -> None:
        """Queue records for the next commit (thread-safe, never blocks on the disk);
        ``connection`` gets their acknowledgement, ``size`` is the bytes they took to receive."""
        with self._cond:
            self._queue.append(_Chunk(rows, connection, size))
            self._queued_rows += len(rows)
            self._queued_bytes += size
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
            return self._queued_rows + self._in_flight

    def _take_batch(self) -> tuple[list[RecordRow], dict, dict, int]:
        """Called with the lock held: the next batch without the records already held, the
        senders' last sequence numbers, what to acknowledge to whom, and its size."""
        rows: list[RecordRow] = []
        seqs: dict[str, int] = {}
        acks: dict = {}
        size = 0
        taken = 0
        committed = self._committed_seqs
        while self._queue and (not rows or len(rows) + len(self._queue[0].rows) <= self.max_batch):
            chunk = self._queue.popleft()
            taken += len(chunk.rows)
            size += chunk.size
            if not chunk.rows:
                continue
            first, last_row = chunk.rows[0], chunk.rows[-1]
            sender = first[_SENDER]
            if sender is not None and sender == last_row[_SENDER] \
                    and first[_SEQ] > seqs.get(sender, committed.get(sender, 0)) \
                    and last_row[_SEQ] >= first[_SEQ]:
                # The usual chunk: one sender's new records in order; no row by row check.
                rows.extend(chunk.rows)
                seqs[sender] = last_row[_SEQ]
                if chunk.connection is not None:
                    acks[chunk.connection] = max(acks.get(chunk.connection, 0), last_row[_SEQ])
                continue
            for row in chunk.rows:
                sender = row[_SENDER]
                if sender is not None:
                    seq = row[_SEQ]
                    last = seqs.get(sender)
                    if last is None:
                        last = committed.get(sender, 0)
                    if seq <= last:
                        self.duplicates += 1
                    else:
                        seqs[sender] = seq
                        rows.append(row)
                    if chunk.connection is not None:
                        acks[chunk.connection] = max(acks.get(chunk.connection, 0), seq)
                else:
                    rows.append(row)
        self._queued_rows -= taken
        self._queued_bytes -= size
        self._in_flight = taken
        self._in_flight_bytes = size
        return rows, seqs, acks, size

    def _run(self) -> None:
        assert self._spool is not None
        delay = 0.05
        batch: Optional[tuple[list[RecordRow], dict, dict, int]] = None
        meta: dict[str, Optional[str]] = {}
        while True:
            with self._cond:
                while not self._queue and not self._meta and batch is None and not meta:
                    if self._stopping:
                        self._spool.close()
                        return
                    self._cond.wait()
                if batch is None and self._queue:
                    batch = self._take_batch()
                meta.update(self._meta)
                self._meta.clear()
            rows, seqs, acks = (batch[0], batch[1], batch[2]) if batch else ([], {}, {})
            try:
                if rows or seqs:
                    self._spool.append(rows, first_id=self._next_id, sinks=self.sinks,
                                       min_level=self.min_level, senders=seqs)
                if meta:
                    self._spool.set_meta(meta)
            except Exception as exc:  # disk full, I/O error, locked: keep the batch and retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                    if self.on_failure is not None:
                        self.on_failure()
                _log.error("spool %s: commit of %d record(s) failed, retrying in %.1f s: %s",
                           self.spool_path, len(rows), delay, self.last_error)
                with self._cond:
                    if self._abandoned:
                        self._spool.close()
                        return
                    self._cond.wait(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            delay = 0.05
            self.failing_since = None
            self._next_id += len(rows)
            self.committed += len(rows)
            self._committed_seqs.update(seqs)
            with self._cond:
                self._in_flight = 0
                self._in_flight_bytes = 0
            if batch is not None and self.on_commit is not None:
                self.on_commit(len(rows), self._groups(rows), acks)
            batch, meta = None, {}

    def _groups(self, batch: list[RecordRow]) -> dict:
        """(app, level) -> oldest received_at of the batch's records that go to the sinks."""
        groups: dict = {}
        min_level = self.min_level
        for row in batch:
            levelno = row[_LEVELNO]
            if levelno is None or levelno >= min_level:
                key = (row[_APP] or "", row[_LEVEL])
                if key not in groups:
                    groups[key] = row[0]
        return groups
