"""The TCP server that receives alarm records from many long-lived sender connections.

Each connection gets its own :class:`~log_relay.record_parser.RecordParser`;
parsed records go to the :class:`~log_relay.spool_writer.SpoolWriter`. When the
writer falls behind by more than ``max_backlog`` records, every connection stops
reading (the senders feel TCP back-pressure) until the backlog has halved: memory
stays bounded and nothing is thrown away.

Example::

    receiver = RecordReceiver(writer, host="127.0.0.1", port=0)
    await receiver.start()
    receiver.address          # ('127.0.0.1', 41234)
    await receiver.close()    # stops listening, flushes every connection's last record
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Optional

from lab_utils_common.custom_logging import getLogger

from log_relay.record_parser import RecordParser
from log_relay.spool_writer import SpoolWriter

__all__ = ["RecordReceiver"]

_log = getLogger(__name__)


class _SenderConnection(asyncio.Protocol):
    """One sender: feed what arrives to the parser, hand the records to the writer."""

    def __init__(self, receiver: "RecordReceiver") -> None:
        self._receiver = receiver
        self._parser = RecordParser(receiver.max_record_size)
        self._transport: Optional[asyncio.Transport] = None
        self._peer = "?"
        self._tail_timer: Optional[asyncio.TimerHandle] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if peer else "?"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Senders stay connected for months: notice peers that vanished without a FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._receiver._connections.add(self)
        if self._receiver.paused:
            transport.pause_reading()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        records = self._parser.feed(data)
        if records:
            self._receiver._accept(records, self._peer)
        if self._tail_timer is not None:
            self._tail_timer.cancel()
            self._tail_timer = None
        if self._parser.pending:
            # A 0.5.x record has no terminator: it is complete when the sender goes quiet.
            self._tail_timer = asyncio.get_running_loop().call_later(
                self._receiver.tail_wait, self.flush)

    def flush(self) -> None:
        """Hand over the record still held by the parser."""
        self._tail_timer = None
        records = self._parser.flush()
        if records:
            self._receiver._accept(records, self._peer)

    def eof_received(self) -> bool:
        self.flush()
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._tail_timer is not None:
            self._tail_timer.cancel()
        self.flush()
        self._receiver._forget(self)

    def pause(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

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
                 max_backlog: int = 200000) -> None:
        self.writer = writer
        self.host = host
        self.port = port
        self.max_record_size = max_record_size
        self.tail_wait = tail_wait
        self.max_backlog = max_backlog
        self.received = 0
        self.paused = False
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

    async def start(self) -> None:
        """Start listening; raise OSError naming the address if it is taken."""
        loop = asyncio.get_running_loop()
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
        again, after reconnecting, whatever this relay had not read: so a restart loses
        nothing that was in flight.
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
            except asyncio.TimeoutError:
                pass
        for connection in list(self._connections):
            connection.flush()
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _forget(self, connection: _SenderConnection) -> None:
        self._connections.discard(connection)
        if not self._connections and self._all_closed is not None:
            self._all_closed.set()

    def on_commit(self) -> None:
        """Called (in the loop) after the writer committed: resume reading if it caught up."""
        if self.paused and self.writer.backlog <= self.max_backlog // 2:
            self.paused = False
            for connection in list(self._connections):
                connection.resume()

    def _accept(self, records: list, peer: str) -> None:
        now = time.time()
        self.received += len(records)
        self.writer.submit([
            (now, peer, r.date, r.level, r.levelno, r.app, r.module, r.function, r.message, r.note)
            for r in records])
        if not self.paused and self.writer.backlog > self.max_backlog:
            self.paused = True
            _log.warning("spool writer is %d records behind: pausing all %d connections",
                         self.writer.backlog, len(self._connections))
            for connection in list(self._connections):
                connection.pause()
