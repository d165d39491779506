"""The TCP server that receives alarm records from many long-lived sender connections.

A connection that opens with a hello (this project's sender) speaks the
acknowledgement protocol of :mod:`lab_utils_common.alarm_wire`: the receiver
answers ``ready`` with the last sequence number the spool holds for that sender,
reads sequenced lines, and acknowledges each batch once the writer committed it.
Any other connection (lab-utils 0.5.x) gets its own
:class:`~log_relay.record_parser.RecordParser` and no answer.

Parsed records go to the :class:`~log_relay.spool_writer.SpoolWriter`. While the
records waiting for the disk take more than ``max_backlog_bytes`` (or number more
than ``max_backlog``), or from the first failed commit until one succeeds, every
connection stops reading: the senders feel TCP back-pressure, memory stays
bounded and nothing is thrown away. At most ``max_connections`` senders are
served at once; more are refused (closed at once), counted and logged at most
once per ``refusal_log_interval`` seconds.

Example::

    receiver = RecordReceiver(writer, host="127.0.0.1", port=0)
    await receiver.start()
    receiver.address          # ('127.0.0.1', 41234)
    await receiver.close()    # stops listening, flushes every connection's last record
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import time
from typing import Optional

from lab_utils_common.alarm_wire import (
    HELLO_PREFIX,
    MAX_HELLO,
    ProtocolError,
    ack_line,
    parse_hello,
    ready_line,
)
from lab_utils_common.custom_logging import getLogger
from log_relay.record_parser import RecordParser, merge_raw, parse_sequenced
from log_relay.spool_writer import SpoolWriter

__all__ = ["RecordReceiver"]

_log = getLogger(__name__)


class _SenderConnection(asyncio.Protocol):
    """One sender: find out which kind, feed what arrives to its parser, hand the records over."""

    def __init__(self, receiver: RecordReceiver) -> None:
        self._receiver = receiver
        self._parser: Optional[RecordParser] = None  # a 0.5.x sender's
        self._transport: Optional[asyncio.Transport] = None
        self._peer = "?"
        self._tail_timer: Optional[asyncio.TimerHandle] = None
        self._mode: Optional[str] = None  # None (not known yet), "ack" or "legacy"
        self._head = b""                  # the start of a connection, until its kind is known
        self._lines = b""                 # an acknowledging sender's partial line
        self._skipping = False            # inside the rest of a line that was cut
        self.sender: Optional[str] = None
        self.refused = False
        self._reading = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if peer else "?"
        if not self._receiver._admit(self):
            self.refused = True
            transport.abort()  # type: ignore[attr-defined]
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Senders stay connected for months: notice peers that vanished without a FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        # A new connection is read until its kind is known, even while the others are paused:
        # the hello is answered, so this project's sender does not take the relay for a
        # silent receiver.

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self._mode is None:
            data = self._identify(data)
            if self._mode is None:
                return
            if self._receiver.paused:
                self.pause()
        if self._mode == "ack":
            self._feed_lines(data)
        else:
            self._feed_legacy(data)

    def _identify(self, data: bytes) -> bytes:
        head = self._head + data
        probe = head[:len(HELLO_PREFIX)]
        if not HELLO_PREFIX.startswith(probe):
            self._mode, self._head = "legacy", b""
            self._parser = RecordParser(self._receiver.max_record_size)
            return head
        end = head.find(b"\n")
        if end < 0:
            if len(head) <= MAX_HELLO:
                self._head = head
                return b""
            end = len(head)
        self._head = b""
        try:
            _version, self.sender = parse_hello(head[:end + 1])
        except ProtocolError as exc:
            _log.warning("connection from %s: %s; reading it as a 0.5.x sender", self._peer, exc)
            self._mode = "legacy"
            self._parser = RecordParser(self._receiver.max_record_size)
            return head
        self._mode = "ack"
        assert self._transport is not None
        self._transport.write(ready_line(self._receiver.writer.last_sequence(self.sender)))
        return head[end + 1:]

    def _feed_lines(self, data: bytes) -> None:
        buffer = self._lines + data if self._lines else data
        cut = buffer.rfind(b"\n") + 1
        complete, self._lines = buffer[:cut], buffer[cut:]
        if self._skipping and cut:
            complete = complete[complete.find(b"\n") + 1:]  # the rest of a cut line
            self._skipping = False
        limit = self._receiver.max_record_size
        now = time.time()
        parsed = parse_sequenced(complete, limit, now, self._peer, self.sender) if complete else []
        if len(self._lines) > limit + 32 and not self._skipping:
            parsed += parse_sequenced(self._lines[:limit + 32] + b"\n", limit, now, self._peer,
                                      self.sender)
            self._lines, self._skipping = b"", True
        elif self._skipping:
            self._lines = b""
        if parsed:
            self._receiver._accept_rows(parsed, self, len(data))

    def _feed_legacy(self, data: bytes) -> None:
        assert self._parser is not None
        records = merge_raw(self._parser.feed(data), self._receiver.max_record_size)
        if records:
            self._receiver._accept([(record, None) for record in records], self._peer, None,
                                   len(data))
        self._arm_tail_timer()

    def _arm_tail_timer(self) -> None:
        if self._tail_timer is not None:
            self._tail_timer.cancel()
            self._tail_timer = None
        if self._parser is not None and self._parser.pending and self._reading:
            # A 0.5.x record has no terminator: it is complete when the sender goes quiet.
            # Not while this relay stopped reading: then the quiet is its own doing.
            self._tail_timer = asyncio.get_running_loop().call_later(
                self._receiver.tail_wait, self.flush)

    def flush(self) -> None:
        """Hand over the record still held by a 0.5.x sender's parser."""
        self._tail_timer = None
        if self._parser is None:
            return
        records = merge_raw(self._parser.flush(), self._receiver.max_record_size)
        if records:
            self._receiver._accept([(record, None) for record in records], self._peer, None, 0)

    def ack(self, seq: int) -> None:
        """Tell an acknowledging sender that its records up to ``seq`` are committed."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(ack_line(seq))

    def eof_received(self) -> bool:
        self.flush()
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self.refused:
            return
        if self._tail_timer is not None:
            self._tail_timer.cancel()
        self.flush()  # an acknowledging sender's partial line is not flushed: it comes again
        self._receiver._forget(self)

    def pause(self) -> None:
        if self._mode is None:
            return  # read on until the kind is known (see connection_made)
        self._reading = False
        if self._tail_timer is not None:
            self._tail_timer.cancel()
            self._tail_timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._reading:
            return
        self._reading = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()
        self._arm_tail_timer()

    def half_close(self) -> None:
        if self._transport is not None and self._transport.can_write_eof() \
                and not self._transport.is_closing():
            self._transport.write_eof()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class RecordReceiver:
    """Listen for sender connections and hand every record to the spool writer."""

    def __init__(self, writer: SpoolWriter, *, host: str = "localhost", port: int = 9020,
                 max_record_size: int = 65536, tail_wait: float = 0.25,
                 max_backlog: int = 200000, max_backlog_bytes: int = 64 << 20,
                 max_connections: int = 500, refusal_log_interval: float = 60.0) -> None:
        self.writer = writer
        self.host = host
        self.port = port
        self.max_record_size = max_record_size
        self.tail_wait = tail_wait
        self.max_backlog = max_backlog
        self.max_backlog_bytes = max_backlog_bytes
        self.max_connections = max_connections
        self.refusal_log_interval = refusal_log_interval
        self.received = 0
        #: connections refused because ``max_connections`` were open
        self.refused = 0
        self.paused = False
        self._refused_unlogged = 0
        self._refusal_logged_at: Optional[float] = None
        self._connections: set[_SenderConnection] = set()
        self._server: Optional[asyncio.base_events.Server] = None
        self._all_closed: Optional[asyncio.Event] = None

    @property
    def address(self) -> tuple[str, int]:
        """The first (host, port) listened on; the real port when ``port`` was 0."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the receiver is not listening: call start() first")
        return self._server.sockets[0].getsockname()[:2]

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def _fit_file_limit(self) -> None:
        """Make room for ``max_connections`` sockets: raise the soft file limit if allowed,
        else lower the connection limit (running out of descriptors stalls every sender)."""
        needed = self.max_connections + 64  # the spool, its WAL, logs, the listener, ...
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < needed:
            target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
            if soft < needed:
                limit = max(1, soft - 64)
                _log.warning("max_connections = %d does not fit the open-file limit %d: serving "
                             "at most %d connections", self.max_connections, soft, limit)
                self.max_connections = limit

    async def start(self) -> None:
        """Start listening; raise OSError naming the address if it is taken."""
        loop = asyncio.get_running_loop()
        self._fit_file_limit()
        try:
            self._server = await loop.create_server(
                lambda: _SenderConnection(self), self.host, self.port, reuse_address=True,
                backlog=512)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise OSError(exc.errno, f"cannot listen on {self.host}:{self.port}: {reason}") from exc
        _log.info("receiving alarm records on %s",
                  ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in self._server.sockets))

    async def close(self, grace: float = 1.0) -> None:
        """Stop listening; half-close every connection and read on until each sender closes
        its end (at most ``grace`` seconds), then close what is left.

        The half-close (FIN) tells this project's sender to stop writing and to send
        again, after reconnecting, whatever this relay had not acknowledged.
        """
        if self._server is not None:
            self._server.close()
        if self.paused:
            self.paused = False
            for connection in list(self._connections):
                connection.resume()
        for connection in list(self._connections):
            connection.half_close()
        if self._connections and grace > 0:
            self._all_closed = asyncio.Event()
            try:
                await asyncio.wait_for(self._all_closed.wait(), grace)
            except TimeoutError:
                pass
        for connection in list(self._connections):
            connection.flush()
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _admit(self, connection: _SenderConnection) -> bool:
        if len(self._connections) < self.max_connections:
            self._connections.add(connection)
            return True
        self.refused += 1
        self._refused_unlogged += 1
        now = time.monotonic()
        if self._refusal_logged_at is None or now - self._refusal_logged_at >= self.refusal_log_interval:
            _log.error("refused %d connection(s): %d senders connected already (max_connections); "
                       "the next such line comes after %g s at the earliest",
                       self._refused_unlogged, len(self._connections), self.refusal_log_interval)
            self._refusal_logged_at = now
            self._refused_unlogged = 0
        return False

    def _forget(self, connection: _SenderConnection) -> None:
        self._connections.discard(connection)
        if not self._connections and self._all_closed is not None:
            self._all_closed.set()

    def _too_much_waiting(self) -> bool:
        return self.writer.backlog > self.max_backlog \
            or self.writer.backlog_bytes > self.max_backlog_bytes

    def pause_all(self, why: str) -> None:
        """Stop reading from every connection (the senders feel TCP back-pressure)."""
        if self.paused:
            return
        self.paused = True
        _log.warning("%s: pausing all %d connections", why, len(self._connections))
        for connection in list(self._connections):
            connection.pause()

    def on_commit(self) -> None:
        """Called (in the loop) after the writer committed: resume reading if it caught up."""
        if self.paused and self.writer.failing_since is None \
                and self.writer.backlog <= self.max_backlog // 2 \
                and self.writer.backlog_bytes <= self.max_backlog_bytes // 2:
            self.paused = False
            for connection in list(self._connections):
                connection.resume()

    def on_commit_failed(self) -> None:
        """Called (in the loop) at the first failed commit: read nothing more until one succeeds."""
        self.pause_all(f"spool commit failing ({self.writer.last_error})")

    def _accept_rows(self, rows: list, connection: _SenderConnection, size: int) -> None:
        """Spool rows of an acknowledging sender (from :func:`parse_sequenced`)."""
        self.received += len(rows)
        self.writer.submit(rows, connection=connection, size=size)
        if not self.paused and self._too_much_waiting():
            self.pause_all(f"spool writer is {self.writer.backlog} records "
                           f"({self.writer.backlog_bytes} bytes) behind")

    def _accept(self, records: list, peer: str, connection: Optional[_SenderConnection],
                size: int) -> None:
        now = time.time()
        self.received += len(records)
        sender = connection.sender if connection is not None else None
        self.writer.submit([
            (now, peer, r.date, r.level, r.levelno, r.app, r.module, r.function, r.message, r.note,
             sender if seq is not None else None, seq)
            for r, seq in records], connection=connection, size=size)
        if not self.paused and self._too_much_waiting():
            self.pause_all(f"spool writer is {self.writer.backlog} records "
                           f"({self.writer.backlog_bytes} bytes) behind")
