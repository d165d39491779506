"""NonPickledSocketHandler: alarm lines over TCP that survive a receiver restart.

lab-utils 0.5.x wrote each record with no terminator on a persistent
connection and dropped it on any socket error. Here each record is one
``\\n``-terminated line (message escaped, :mod:`lab_utils_common.alarm_wire`),
``emit`` only appends to a bounded queue, and a background thread sends the
queue in order, reconnecting with back-off while the receiver is away.

What "not lost" means: a line leaves the queue once written to the socket, and
stays in an in-flight list until the peer's TCP stack acknowledged it (Linux
``SIOCOUTQ``); lines not acknowledged when the connection breaks are sent again
after reconnection (so a receiver may see a line twice, never a gap). A line
the receiver's kernel acknowledged but its process never read (it crashed with
unread data) cannot be detected: 0.5.x receivers send no acknowledgement.

A lab-utils 0.5.x alarm receiver is a ``socket_comm`` Server: it reads one
message per connection (one ``recv``), replies and closes; lines written behind
the first one would be acknowledged by its kernel and never read (or read
together with the first as one garbled message). So the first line on a new
connection goes alone, and the sender waits up to ``first_line_wait`` seconds:
a receiver that answers or closes gets one line per connection from then on
(waiting up to ``one_shot_wait`` for each close); one that stays silent
(log-relay) gets the following lines streamed on the same connection.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import logging.handlers
import select
import socket
import struct
import sys
import termios
import threading
import time
from typing import Deque, Optional, Union

from lab_utils_common.custom_logging.formatters import AlarmFormatter

__all__ = ["NonPickledSocketHandler"]

# Linux: bytes written to a TCP socket that the peer has not acknowledged yet (tcp(7)).
_SIOCOUTQ = getattr(termios, "TIOCOUTQ", None)


class _DropReport:
    """Stands in the queue for records dropped while it was full; formatted when sent."""

    def __init__(self, count: int, name: str) -> None:
        self.count = count
        self.name = name


_Item = Union[str, _DropReport]


class NonPickledSocketHandler(logging.handlers.SocketHandler):
    """Send each record as one text line to ``host:port`` (log-relay, or a 0.5.x alarm receiver).

    ``emit`` never waits for the network: records go to a queue of at most
    ``queue_size`` lines that a background thread sends in order. While the
    receiver is unreachable the thread retries (``retry_start`` doubling up to
    ``retry_max`` seconds); when the queue is full new records are dropped,
    counted in :attr:`dropped`, and one WARNING line saying how many is sent in
    their place once there is room again. :meth:`flush` and :meth:`close` wait
    at most ``flush_timeout`` seconds for the queue to drain. A receiver that
    answers or closes within ``first_line_wait`` seconds of the first line on a
    connection (a 0.5.x ``socket_comm`` Server) gets one line per connection.

    Example::

        handler = NonPickledSocketHandler("log-relay", 9020)
        handler.setLevel(logging.WARNING)
        logging.getLogger().addHandler(handler)
    """

    def __init__(self, host: str, port: int, *, queue_size: int = 10_000,
                 connect_timeout: float = 5.0, retry_start: float = 0.5, retry_max: float = 10.0,
                 flush_timeout: float = 5.0, first_line_wait: float = 0.5,
                 one_shot_wait: float = 10.0) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size!r}")
        super().__init__(host, port)
        self.queue_size = queue_size
        self.connect_timeout = connect_timeout
        self.retryStart = retry_start
        self.retryMax = retry_max
        self.flush_timeout = flush_timeout
        self.first_line_wait = first_line_wait
        self.one_shot_wait = one_shot_wait
        #: True while the receiver takes one message per connection (a 0.5.x socket_comm Server).
        self.one_message_per_connection = False
        self._trial_until: Optional[float] = None  # the first line of this connection awaits a verdict
        self.sent = 0  #: Lines written to the socket (a line sent again counts again).
        self.dropped = 0  #: Records dropped because the queue was full or the handler closed.
        self.setFormatter(AlarmFormatter())
        self._condition = threading.Condition()
        self._pending: Deque[_Item] = collections.deque()
        self._in_flight: Deque[tuple[_Item, int]] = collections.deque()  # (item, end offset)
        self._written = 0  # bytes written on the current connection
        self._unreported = 0
        self._unreported_name = ""
        self._connected = False
        self._closing = False
        self._abort = False
        self._thread: Optional[threading.Thread] = None
        self._delay = retry_start
        self._gave_up = False

    # ------------------------------------------------------------------ application side

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` and queue it; never blocks on the network."""
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self._condition:
            if self._closing:
                self.dropped += 1
                return
            if len(self._pending) >= self.queue_size:
                self.dropped += 1
                self._unreported += 1
                self._unreported_name = record.name
                return
            if self._unreported:
                self._queue_drop_report()
            self._pending.append(line)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f"NonPickledSocketHandler-{self.host}:{self.port}")
                self._thread.start()
            self._condition.notify_all()

    @property
    def queued(self) -> int:
        """Records waiting to be sent."""
        with self._condition:
            return len(self._pending)

    @property
    def connected(self) -> bool:
        """Whether the sender holds a connection to the receiver now."""
        return self._connected

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every queued record was written (at most ``timeout``, default
        ``flush_timeout`` seconds); True if the queue is empty."""
        timeout = self.flush_timeout if timeout is None else timeout
        with self._condition:
            if self._thread is None:
                return not self._pending
            drained = self._condition.wait_for(lambda: not self._pending or self._abort, timeout) \
                and not self._pending
            # logging.shutdown() calls flush() then close(): with the receiver away, close()
            # need not wait a second time.
            self._gave_up = not drained and not self._connected
            return drained

    def close(self) -> None:
        """Drain the queue (at most ``flush_timeout`` seconds), then stop the sender."""
        with self._condition:
            if self._closing:
                return
            self._closing = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(0.0 if self._gave_up and not self._connected else self.flush_timeout)
            with self._condition:
                self._abort = True
                self._condition.notify_all()
                sock = self.sock
            if thread.is_alive() and sock is not None:
                # Wakes a sendall() blocked on a receiver that stopped reading.
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            thread.join(self.connect_timeout + 1.0)
        with self._condition:
            lost = len([item for item in self._pending if isinstance(item, str)])
            lost += self._unreported
            self._pending.clear()
        if lost:
            self.dropped += lost
            # Logging is shutting down: stderr is the last place left to say it.
            print(f"lab_utils_common: {lost} alarm record(s) not delivered to "
                  f"{self.host}:{self.port} before close", file=sys.stderr)
        super().close()

    # ------------------------------------------------------------------ sender thread

    def _queue_drop_report(self) -> None:
        # Called with the condition held.
        self._pending.append(_DropReport(self._unreported, self._unreported_name))
        self._unreported = 0

    def _run(self) -> None:
        while True:
            if self._trial_until is not None:
                self._await_first_line_verdict()
                continue
            probe = False
            with self._condition:
                while True:
                    if self._abort:
                        break
                    if self._unreported and not self._pending:
                        self._queue_drop_report()
                    if self._pending or self._closing:
                        break
                    if self.sock is not None:
                        # Idle but connected: look at the connection now and then, so lines
                        # not yet acknowledged are sent again and a receiver that went away
                        # is noticed before the next record, not by losing it.
                        self._condition.wait(0.2 if self._in_flight else 1.0)
                        if not (self._pending or self._closing or self._abort):
                            probe = True
                            break
                    else:
                        self._condition.wait()
                if probe:
                    pass
                elif self._abort or not self._pending:
                    break
                else:
                    item = self._pending[0]
            if probe:
                if self.sock is None:
                    continue
                try:
                    self._check_peer_open()
                except OSError:
                    self._connection_lost()
                    continue
                with self._condition:
                    self._forget_acknowledged()
                continue
            if self.sock is None and not self._connect():
                with self._condition:
                    if not self._abort:
                        self._condition.wait(self._delay)
                    self._delay = min(self._delay * self.retryFactor, self.retryMax)
                continue
            data = (self._render(item) + "\n").encode("utf-8", "backslashreplace")
            try:
                self._check_peer_open()
                self.sock.sendall(data)  # type: ignore[union-attr]
            except OSError:
                self._connection_lost()
                continue
            with self._condition:
                if self._pending and self._pending[0] is item:
                    self._pending.popleft()
                if self._written == 0:
                    wait = self.one_shot_wait if self.one_message_per_connection else self.first_line_wait
                    self._trial_until = time.monotonic() + wait
                self._written += len(data)
                self._in_flight.append((item, self._written))
                self.sent += 1
                self._gave_up = False
                self._forget_acknowledged()
                self._condition.notify_all()
        self._disconnect()

    def _await_first_line_verdict(self) -> None:
        """After the first line of a connection: does the receiver answer or close (one message
        per connection, as a 0.5.x socket_comm Server), or stay silent and read on (log-relay)?"""
        deadline, self._trial_until = self._trial_until, None
        sock = self.sock
        if sock is None or deadline is None:
            return
        remaining = deadline - time.monotonic()
        try:
            # close() shuts the socket down to stop this wait early: it then reads as EOF.
            readable, _, _ = select.select([sock], [], [], max(remaining, 0.0))
            if not readable:
                self.one_message_per_connection = False  # silent: a streaming receiver
                return
            with self._condition:
                if self._abort:
                    return
                self._forget_acknowledged()
            sock.recv(4096)  # its reply, or EOF: either way it is done with this connection
        except OSError:
            self._connection_lost()  # reset: what it did not acknowledge goes again
            return
        # It answered or closed: it read the line (a receiver that closes without reading
        # resets the connection instead). The next line gets a connection of its own.
        with self._condition:
            self._in_flight.clear()
        self.one_message_per_connection = True
        self._disconnect()

    def _render(self, item: _Item) -> str:
        if isinstance(item, str):
            return item
        record = logging.LogRecord(
            item.name, logging.WARNING, __file__, 0,
            "%d record(s) dropped: the receiver at %s:%s was unreachable and the queue "
            "(queue_size=%d) was full", (item.count, self.host, self.port, self.queue_size),
            None, func="NonPickledSocketHandler")
        return self.format(record)

    def _connect(self) -> bool:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError:
            return False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._condition:
            self.sock = sock
            self._connected = True
            self._written = 0
            self._delay = self.retryStart
        return True

    def _check_peer_open(self) -> None:
        """Raise if the receiver closed its end, before writing into a dead connection."""
        sock = self.sock
        assert sock is not None
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            # Before the EOF check: acknowledgements are still readable in CLOSE_WAIT.
            with self._condition:
                self._forget_acknowledged()
            data = sock.recv(4096)
            if not data:
                raise ConnectionResetError(f"the receiver at {self.host}:{self.port} closed the connection")
            # Otherwise the receiver talked back (a 0.5.x socket_comm Server replies); ignore it.

    def _forget_acknowledged(self) -> None:
        # Called with the condition held: drop in-flight lines the peer has acknowledged.
        if not self._in_flight:
            return
        unacknowledged = self._unacknowledged_bytes()
        if unacknowledged is None:
            self._in_flight.clear()  # no way to know: behave as a plain socket
            return
        acknowledged = self._written - unacknowledged
        while self._in_flight and self._in_flight[0][1] <= acknowledged:
            self._in_flight.popleft()

    def _unacknowledged_bytes(self) -> Optional[int]:
        if _SIOCOUTQ is None or self.sock is None:
            return None
        try:
            raw = fcntl.ioctl(self.sock.fileno(), _SIOCOUTQ, b"\0\0\0\0")
        except OSError:
            return None
        return struct.unpack("i", raw)[0]

    def _connection_lost(self) -> None:
        with self._condition:
            # Lines the receiver may not have got go first again, in their order.
            self._pending.extendleft(reversed([item for item, _ in self._in_flight]))
            self._in_flight.clear()
        self._disconnect()

    def _disconnect(self) -> None:
        with self._condition:
            sock, self.sock = self.sock, None
            self._connected = False
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {self.host}:{self.port} ({level})>"
