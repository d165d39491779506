"""NonPickledSocketHandler: alarm lines over TCP, kept until the receiver has them.

lab-utils 0.5.x wrote each record with no terminator on a persistent
connection and dropped it on any socket error. Here each record is one
``\\n``-terminated line (message escaped, :mod:`lab_utils_common.alarm_wire`),
``emit`` only appends to a bounded queue, and a background thread sends the
queue in order, reconnecting with back-off while the receiver is away.

Each connection opens with a hello line (sender id, protocol version). Three
kinds of receiver answer it differently:

* log-relay answers ``ready`` with the last sequence number its spool holds for
  this sender: records then go with sequence numbers, the relay acknowledges
  each committed batch, and a record leaves the handler only once acknowledged.
  After a reconnection, whatever was not acknowledged is sent again; the relay
  drops what it already holds. :meth:`NonPickledSocketHandler.flush` means
  "committed by the relay".
* a lab-utils 0.5.x alarm receiver (a ``socket_comm`` Server: one message per
  connection, a reply, close) answers with an error reply, or (0.5.4, whose
  error reply fails) closes without one twice in a row: from then on each
  record gets a connection of its own, and counts as delivered once answered.
* a receiver that stays silent for ``first_line_wait`` seconds gets plain
  lines streamed; a line counts as delivered once the peer's TCP stack
  acknowledged it (Linux ``SIOCOUTQ``). A line acknowledged by its kernel but
  never read by a crashing receiver cannot be detected there.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import logging.handlers
import os
import select
import socket
import struct
import sys
import termios
import threading
import time
import uuid
from typing import Deque, Optional, Union

from lab_utils_common.alarm_wire import (
    MAX_HELLO,
    READY_PREFIX,
    ProtocolError,
    hello_line,
    parse_ack,
    parse_ready,
    sequenced_line,
)
from lab_utils_common.custom_logging.formatters import AlarmFormatter

__all__ = ["NonPickledSocketHandler"]

# Linux: bytes written to a TCP socket that the peer has not acknowledged yet (tcp(7)).
_SIOCOUTQ = getattr(termios, "TIOCOUTQ", None)

#: Records written per system call at most (a batch is re-sent whole after a reconnection).
_BATCH = 1000


class _DropReport:
    """Stands in the queue for records dropped while it was full; formatted when sent."""

    def __init__(self, count: int, name: str) -> None:
        self.count = count
        self.name = name


_Item = Union[str, _DropReport]


class NonPickledSocketHandler(logging.handlers.SocketHandler):
    """Send each record as one text line to ``host:port`` (log-relay, or a 0.5.x alarm receiver).

    ``emit`` never waits for the network: records go to a queue of at most
    ``queue_size`` records (waiting, or sent and not yet acknowledged) that a
    background thread sends in order. While the receiver is unreachable the
    thread retries (``retry_start`` doubling up to ``retry_max`` seconds); when
    the queue is full new records are dropped, counted in :attr:`dropped`, and
    one WARNING line saying how many is sent in their place once there is room
    again. :meth:`flush` and :meth:`close` wait at most ``flush_timeout``
    seconds. A relay that does not acknowledge within ``ack_timeout`` seconds
    is reconnected to.

    Example::

        handler = NonPickledSocketHandler("log-relay", 9020)
        handler.setLevel(logging.WARNING)
        logging.getLogger().addHandler(handler)
    """

    def __init__(self, host: str, port: int, *, queue_size: int = 10_000,
                 connect_timeout: float = 5.0, retry_start: float = 0.5, retry_max: float = 10.0,
                 flush_timeout: float = 5.0, first_line_wait: float = 0.5,
                 one_shot_wait: float = 10.0, ack_timeout: float = 30.0,
                 sender_id: Optional[str] = None) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size!r}")
        if ack_timeout <= 0:
            raise ValueError(f"ack_timeout must be positive, got {ack_timeout!r}")
        super().__init__(host, port)
        self.queue_size = queue_size
        self.connect_timeout = connect_timeout
        self.retryStart = retry_start
        self.retryMax = retry_max
        self.flush_timeout = flush_timeout
        self.first_line_wait = first_line_wait
        self.one_shot_wait = one_shot_wait
        self.ack_timeout = ack_timeout
        #: Names this handler instance to the relay (its records are deduplicated by it).
        self.sender_id = sender_id or (f"{socket.gethostname()}/{os.getpid()}/"
                                       f"{uuid.uuid4().hex[:12]}").replace(" ", "_")
        hello_line(self.sender_id)  # checks it
        # What the receiver is: None (not known yet), "ack" (log-relay), "one-shot" (a 0.5.x
        # socket_comm Server: one message per connection) or "stream" (silent receiver).
        self._mode: Optional[str] = None
        self._seen_relay = False
        self._closed_on_hello = 0  # connections in a row closed without a word after the hello
        self.sent = 0  #: Lines written to the socket (a line sent again counts again).
        self.dropped = 0  #: Records dropped because the queue was full or the handler closed.
        self.setFormatter(AlarmFormatter())
        self._condition = threading.Condition()
        self._pending: Deque[tuple[int, _Item]] = collections.deque()
        # Sent, not known to be delivered: (seq, item, end offset on the connection).
        self._in_flight: Deque[tuple[int, _Item, int]] = collections.deque()
        self._next_seq = 0
        self._written = 0  # bytes written on the current connection
        self._replies = b""  # unparsed bytes from the relay
        self._ack_progress = 0.0  # monotonic time of the last acknowledgement (or first send)
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
            if len(self._pending) + len(self._in_flight) >= self.queue_size:
                self.dropped += 1
                self._unreported += 1
                self._unreported_name = record.name
                return
            if self._unreported:
                self._queue_drop_report()
            self._enqueue(line)
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
    def unacknowledged(self) -> int:
        """Records sent and not yet known to be delivered."""
        with self._condition:
            return len(self._in_flight)

    @property
    def connected(self) -> bool:
        """Whether the sender holds a connection to the receiver now."""
        return self._connected

    @property
    def acknowledged(self) -> bool:
        """Whether the receiver acknowledges records (log-relay)."""
        return self._mode == "ack"

    @property
    def one_message_per_connection(self) -> bool:
        """True while the receiver takes one message per connection (a 0.5.x socket_comm Server)."""
        return self._mode == "one-shot"

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every queued record was delivered (with log-relay: committed to its
        spool), at most ``timeout`` (default ``flush_timeout``) seconds; True if so."""
        timeout = self.flush_timeout if timeout is None else timeout
        with self._condition:
            if self._thread is None:
                return not self._pending
            drained = self._condition.wait_for(
                lambda: not (self._pending or self._in_flight) or self._abort, timeout) \
                and not (self._pending or self._in_flight)
            # logging.shutdown() calls flush() then close(): with the receiver away, close()
            # need not wait a second time.
            self._gave_up = not drained and not self._connected
            return drained

    def close(self) -> None:
        """Deliver what is queued (at most ``flush_timeout`` seconds), then stop the sender."""
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
            # Drop reports stand for records counted in `dropped` already: count only records.
            lost = sum(1 for _, item in self._pending if isinstance(item, str))
            lost += sum(1 for _, item, _ in self._in_flight if isinstance(item, str))
            earlier = self._unreported + sum(
                item.count for _, item in self._pending if isinstance(item, _DropReport))
            self._pending.clear()
            self._in_flight.clear()
            self._unreported = 0
        if lost or earlier:
            self.dropped += lost
            # Logging is shutting down: stderr is the last place left to say it.
            print(f"lab_utils_common: {lost} alarm record(s) not delivered to "
                  f"{self.host}:{self.port} before close"
                  + (f" ({earlier} more dropped earlier, the queue being full)" if earlier else ""),
                  file=sys.stderr)
        super().close()

    # ------------------------------------------------------------------ sender thread

    def _enqueue(self, item: _Item) -> None:
        # Called with the condition held.
        self._next_seq += 1
        self._pending.append((self._next_seq, item))

    def _queue_drop_report(self) -> None:
        # Called with the condition held.
        self._enqueue(_DropReport(self._unreported, self._unreported_name))
        self._unreported = 0

    def _wait_for_work(self) -> bool:
        """Block until there is something to do; False when the thread should end."""
        with self._condition:
            while True:
                if self._abort:
                    return False
                if self._unreported and not self._pending:
                    self._queue_drop_report()
                if self._pending:
                    return True
                if self._closing and not self._in_flight:
                    return False
                if self.sock is not None and self._in_flight:
                    return True  # read acknowledgements, or see them acknowledged by TCP
                if self.sock is not None:
                    # Idle but connected: look at the connection now and then, so a receiver
                    # that went away is noticed before the next record, not by losing it.
                    if not self._condition.wait(1.0):
                        return True
                elif self._in_flight:
                    return True  # reconnect to send them again
                else:
                    self._condition.wait()

    def _run(self) -> None:
        while self._wait_for_work():
            if self.sock is None and not self._connect():
                with self._condition:
                    if not self._abort:
                        self._condition.wait(self._delay)
                    self._delay = min(self._delay * self.retryFactor, self.retryMax)
                continue
            try:
                if self._mode == "ack":
                    self._ack_step()
                elif self._mode == "one-shot":
                    self._one_shot_step()
                else:
                    self._stream_step()
            except (OSError, ProtocolError):  # a broken or confused connection: start afresh
                self._connection_lost()
        self._disconnect()

    def _take(self, limit: int) -> list[tuple[int, _Item]]:
        # Called with the condition held: move up to ``limit`` records from pending to in flight.
        batch = []
        while self._pending and len(batch) < limit:
            batch.append(self._pending.popleft())
        return batch

    def _ack_step(self) -> None:
        """log-relay: send what is pending with sequence numbers; read acknowledgements."""
        sock = self.sock
        assert sock is not None
        with self._condition:
            batch = self._take(_BATCH)
            if batch and not self._in_flight:
                self._ack_progress = time.monotonic()
            self._in_flight.extend((seq, item, 0) for seq, item in batch)
        if batch:
            sock.sendall(b"".join(sequenced_line(seq, self._render(item)) for seq, item in batch))
            self.sent += len(batch)
        with self._condition:
            more = bool(self._pending)
        readable, _, _ = select.select([sock], [], [], 0 if more else 0.05)
        if readable:
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError(f"log-relay at {self.host}:{self.port} closed the connection")
            self._read_acks(data)
        with self._condition:
            if self._in_flight and time.monotonic() - self._ack_progress > self.ack_timeout:
                raise TimeoutError(f"log-relay at {self.host}:{self.port} acknowledged nothing for "
                                   f"{self.ack_timeout} s (ack_timeout): reconnecting")

    def _read_acks(self, data: bytes) -> None:
        self._replies += data
        *lines, self._replies = self._replies.split(b"\n")
        if len(self._replies) > MAX_HELLO:
            raise ProtocolError(f"log-relay at {self.host}:{self.port} sent an over-long line")
        acked = 0
        for line in lines:
            acked = max(acked, parse_ack(line))
        if acked:
            with self._condition:
                while self._in_flight and self._in_flight[0][0] <= acked:
                    self._in_flight.popleft()
                self._ack_progress = time.monotonic()
                self._gave_up = False
                self._condition.notify_all()

    def _one_shot_step(self) -> None:
        """A 0.5.x socket_comm Server: one record, its answer (or close), a new connection."""
        sock = self.sock
        assert sock is not None
        with self._condition:
            batch = self._take(1)
            if not batch:
                return
            [(seq, item)] = batch
            self._in_flight.append((seq, item, 0))
        data = (self._render(item) + "\n").encode("utf-8", "backslashreplace")
        sock.sendall(data)
        self.sent += 1
        readable, _, _ = select.select([sock], [], [], self.one_shot_wait)
        if not readable:
            # Silent: not a one-message-per-connection receiver after all; stream to it.
            self._mode = "stream"
            self._written = len(data)
            with self._condition:
                self._in_flight[-1] = (seq, item, self._written)
            return
        sock.recv(4096)  # its reply, or EOF: either way it read the line and is done
        with self._condition:
            self._in_flight.clear()
            self._gave_up = False
            self._condition.notify_all()
        self._disconnect()

    def _stream_step(self) -> None:
        """A silent receiver: stream lines; delivered once its TCP stack acknowledged them."""
        sock = self.sock
        assert sock is not None
        with self._condition:
            batch = self._take(_BATCH)
        if not batch:
            if self._in_flight:
                select.select([sock], [], [], 0.2)
            self._check_peer_open()
            with self._condition:
                self._forget_acknowledged()
            return
        lines = [(self._render(item) + "\n").encode("utf-8", "backslashreplace")
                 for _, item in batch]
        try:
            self._check_peer_open()
            if self._mode == "ack":  # a relay that answered the hello late: sequenced from now
                with self._condition:
                    self._pending.extendleft(reversed(batch))
                return
            sock.sendall(b"".join(lines))
        except (OSError, ProtocolError):
            with self._condition:  # not (all) written: they go first again
                self._pending.extendleft(reversed(batch))
            raise
        with self._condition:
            offset = self._written
            for (seq, item), line in zip(batch, lines):
                offset += len(line)
                self._in_flight.append((seq, item, offset))
            self._written = offset
            self.sent += len(batch)
            self._gave_up = False
            self._forget_acknowledged()
            self._condition.notify_all()

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
        """Connect and find out what the receiver is; False (back off) if it cannot be reached."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError:
            self._mode = None if self._mode == "one-shot" else self._mode  # it may have changed
            return False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._condition:
            self.sock = sock
            self._connected = True
            self._written = 0
            self._replies = b""
        if self._mode == "one-shot":
            return True
        try:
            verdict = self._greet(sock)
        except (OSError, ProtocolError):
            self._connection_lost()
            return False
        if verdict == "one-shot":
            # It answered the hello as a command: a 0.5.x Server, done with this connection.
            self._mode = "one-shot"
            self._disconnect()
            return self._connect()
        with self._condition:
            self._delay = self.retryStart
        return True

    def _greet(self, sock: socket.socket) -> str:
        hello = hello_line(self.sender_id)
        sock.sendall(hello)
        # Once a relay answered, a slow answer is a busy relay, not a silent receiver.
        deadline = time.monotonic() + (self.ack_timeout if self._seen_relay else self.first_line_wait)
        reply = b""
        while b"\n" not in reply and len(reply) < MAX_HELLO:
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([sock], [], [], max(remaining, 0.0))
            if not readable:
                if reply:
                    return "one-shot"
                self._mode = "stream"
                self._written = len(hello)
                return "stream"
            data = sock.recv(4096)
            if not data:
                self._closed_on_hello += 1
                if reply or self._closed_on_hello >= 2:
                    # Closed on the hello again: a 0.5.x Server that failed to answer it
                    # (0.5.4's error reply itself raises), not a relay that happened to stop.
                    return "one-shot"
                raise ConnectionResetError(f"{self.host}:{self.port} closed the connection "
                                           "on the hello")
            reply += data
        line, _, rest = reply.partition(b"\n")
        if not line.startswith(READY_PREFIX):
            return "one-shot"
        last = parse_ready(line)
        self._closed_on_hello = 0
        self._mode = "ack"
        self._seen_relay = True
        with self._condition:
            self._replies = rest
            # Committed before the relay restarted, only their acknowledgement was lost.
            while self._pending and self._pending[0][0] <= last:
                self._pending.popleft()
            self._ack_progress = time.monotonic()
            self._condition.notify_all()
        return "ack"

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
            if self._mode == "stream" and data.startswith(READY_PREFIX):
                self._late_ready(sock, data)
            # Otherwise the receiver talked back; a streaming receiver's words mean nothing here.

    def _late_ready(self, sock: socket.socket, data: bytes) -> None:
        """A busy relay answered the hello after ``first_line_wait``: switch this connection to
        acknowledgements once the plain lines sent meanwhile are in its hands (TCP-acknowledged:
        it stores them as they are; sending them again would store them twice)."""
        line, _, rest = data.partition(b"\n")
        last = parse_ready(line)
        deadline = time.monotonic() + self.ack_timeout
        while (self._unacknowledged_bytes() or 0) > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.host}:{self.port} acknowledged nothing for "
                                   f"{self.ack_timeout} s (ack_timeout)")
            select.select([], [], [], 0.01)
        with self._condition:
            self._in_flight.clear()
            self._replies = rest
            while self._pending and self._pending[0][0] <= last:
                self._pending.popleft()
            self._ack_progress = time.monotonic()
            self._condition.notify_all()
        self._mode = "ack"
        self._seen_relay = True

    def _forget_acknowledged(self) -> None:
        # Called with the condition held: drop in-flight lines the peer has acknowledged.
        if not self._in_flight:
            return
        unacknowledged = self._unacknowledged_bytes()
        if unacknowledged is None:
            self._in_flight.clear()  # no way to know: behave as a plain socket
        else:
            acknowledged = self._written - unacknowledged
            while self._in_flight and self._in_flight[0][2] <= acknowledged:
                self._in_flight.popleft()
        self._condition.notify_all()

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
            # Records the receiver may not have got go first again, in their order.
            self._pending.extendleft(reversed([(seq, item) for seq, item, _ in self._in_flight]))
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
