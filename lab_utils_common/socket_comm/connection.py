"""One client connection on the server side: receive one message, send one reply, close.

Where a message ends (the framing):

- this package's :class:`~.client.Client` sends the message, then half-closes
  its socket: end of file ends the message, whatever its size;
- a lab-utils 0.5.x client sends the message in one ``send`` and then waits
  for the reply without half-closing. Such a message is at most
  :data:`~.message.buffer_size` bytes (all a 0.5.x server reads), so once some
  data arrived, the total is at most that size and nothing more came for
  ``Server.message_gap`` seconds, the message is complete. Messages longer
  than that only end at end of file, so a long message from this Client is
  never cut by a pause in the network.

Every connection is bounded: ``receive_timeout`` for the whole message,
``max_message_size`` bytes (the rest is read and dropped so the client still
gets its error reply), ``send_timeout`` for the reply to leave.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Optional

from .message import ERROR_PREFIX, buffer_size

if TYPE_CHECKING:
    from .server import Server

__all__ = ["Connection"]

_RECEIVING, _DISCARDING, _PROCESSING, _REPLIED, _CLOSED = range(5)


class Connection(asyncio.Protocol):
    """asyncio protocol for one request; the :class:`~.server.Server` creates one per client."""

    def __init__(self, server: "Server") -> None:
        self._server = server
        self._chunks: list[bytes] = []
        self._size = 0
        self._state = _RECEIVING
        self._transport: Optional[asyncio.Transport] = None
        self._gap_timer: Optional[asyncio.TimerHandle] = None
        self._deadline: Optional[asyncio.TimerHandle] = None
        self._send_deadline: Optional[asyncio.TimerHandle] = None
        self.peer: object = None
        self._refusal: Optional[str] = None  # set: read the message to its end, then send this

    # ----------------------------------------------------------------- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._server._connection_opened(self)
        self._deadline = loop.call_later(self._server.receive_timeout, self._receive_timed_out)

    def refuse(self, reason: str) -> None:
        """Answer ``Error! <reason>`` once the client's message is complete (its content is dropped).

        Reading to the end first matters: closing a socket with unread data makes the kernel
        reset the connection, and the client would lose the reply.
        """
        self._refusal = reason
        self._state = _DISCARDING
        self._chunks = []

    def data_received(self, data: bytes) -> None:
        if self._state == _RECEIVING or self._state == _DISCARDING:
            self._size += len(data)
            if self._state == _RECEIVING:
                if self._size > self._server.max_message_size:
                    self.refuse(f"message too long: {self._size} bytes or more, the maximum is "
                                f"{self._server.max_message_size} bytes (max_message_size)")
                else:
                    self._chunks.append(data)
            self._cancel(self._gap_timer)
            self._gap_timer = None
            if self._size <= buffer_size:
                self._gap_timer = self._loop.call_later(self._server.message_gap, self._gap_elapsed)
        # Data after the end of the message (a client that keeps talking) is ignored.

    def eof_received(self) -> bool:
        if self._state == _RECEIVING:
            self._complete()
        elif self._state == _DISCARDING:
            self._send_refusal()
        return True  # keep our side open: the reply still has to go out

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._state = _CLOSED
        self._chunks = []
        for timer in (self._gap_timer, self._deadline, self._send_deadline):
            self._cancel(timer)
        self._server._connection_closed(self)

    # ----------------------------------------------------------------- framing
    def _gap_elapsed(self) -> None:
        if self._state == _RECEIVING:
            self._complete()
        elif self._state == _DISCARDING:
            self._send_refusal()

    def _receive_timed_out(self) -> None:
        limit = self._server.receive_timeout
        if self._state == _RECEIVING:
            if self._size == 0:
                reason = f"no message received within {limit:g} s"
            else:
                reason = (f"message incomplete after {limit:g} s ({self._size} bytes received "
                          f"without an end of message)")
            self._server.logger.warning("Client %s: %s", self.peer, reason)
            self.send_reply(ERROR_PREFIX + reason)
        elif self._state == _DISCARDING:
            self._send_refusal()

    def _send_refusal(self) -> None:
        self._server.logger.warning("Client %s: %s", self.peer, self._refusal)
        self.send_reply(f"{ERROR_PREFIX}{self._refusal}")

    def _complete(self) -> None:
        self._state = _PROCESSING
        self._cancel(self._gap_timer)
        self._cancel(self._deadline)
        data = b"".join(self._chunks)
        self._chunks = []
        self._server._handle_message(self, data)

    # ----------------------------------------------------------------- reply
    @property
    def replied(self) -> bool:
        """True once a reply went out (or the client is gone): later replies are dropped."""
        return self._state in (_REPLIED, _CLOSED)

    def send_reply(self, reply: str) -> None:
        """Send the reply and close; does nothing when the client is already gone."""
        if self._state in (_REPLIED, _CLOSED) or self._transport is None:
            return
        self._state = _REPLIED
        self._cancel(self._gap_timer)
        self._cancel(self._deadline)
        self._server._count_reply(reply)
        if self._transport.is_closing():
            return
        if reply:
            self._transport.write(reply.encode("utf-8"))
        self._transport.close()  # flushes the reply, then closes
        # A client that never reads its reply must not keep a file descriptor forever.
        self._send_deadline = self._loop.call_later(self._server.send_timeout, self._transport.abort)

    @staticmethod
    def _cancel(timer: Optional[asyncio.TimerHandle]) -> None:
        if timer is not None:
            timer.cancel()
