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

Admission: a new connection is *unadmitted* until it proves itself: its
``#auth`` line carries the right token (a server with a token), or its first
bytes arrive (a server without). Unadmitted connections have their own small
budget (``max_unauthenticated_connections``: the oldest is dropped for a new
one) and a short deadline (``auth_timeout``), so idle or token-less sockets
never take the slots (``max_connections``) of real clients. An admitted
connection over ``max_connections`` gets a ``busy`` error, except a plain
``status`` (a healthcheck), which is always answered.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Optional

from .auth_token import tokens_match
from .dispatcher import Reply
from .message import AUTH_PREFIX, buffer_size

if TYPE_CHECKING:
    from .server import Server

__all__ = ["Connection"]

_RECEIVING, _DISCARDING, _PROCESSING, _REPLIED, _CLOSED = range(5)
_AUTH_PREFIX = AUTH_PREFIX.encode("ascii")
#: The longest auth line looked at before deciding (the token file holds one word).
_MAX_AUTH_LINE = 4096


class Connection(asyncio.Protocol):
    """asyncio protocol for one request; the :class:`~.server.Server` creates one per client."""

    def __init__(self, server: Server) -> None:
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
        self.admitted = False                # counted in max_connections (see the module docstring)
        self.authenticated = False           # its #auth line matched the server's token
        self.over_budget = False             # admitted beyond max_connections: only 'status' is answered
        self._auth_deadline: Optional[asyncio.TimerHandle] = None
        self._reserved = 0                   # bytes counted in the server's bytes_in_flight

    # ----------------------------------------------------------------- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._deadline = loop.call_later(self._server.receive_timeout, self._receive_timed_out)
        self._auth_deadline = loop.call_later(self._server.auth_timeout, self._auth_timed_out)
        self._server._connection_opened(self)

    def refuse(self, reason: str) -> None:
        """Answer ``Error! <reason>`` once the client's message is complete (its content is dropped).

        Reading to the end first matters: closing a socket with unread data makes the kernel
        reset the connection, and the client would lose the reply.
        """
        self._refusal = reason
        self._state = _DISCARDING
        self._chunks = []

    def drop(self) -> None:
        """Close at once, without a reply (an unauthenticated connection pushed out by a newer one)."""
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._state == _RECEIVING or self._state == _DISCARDING:
            self._size += len(data)
            if self._state == _RECEIVING:
                if not self.admitted:
                    self._chunks.append(data)
                    self._try_admission(eof=False)
                    if self.admitted:
                        return  # _admit() passed the data on, as an admitted connection
                elif self.over_budget and self._size > buffer_size:
                    self._refuse_busy()
                elif self._size > self._server.max_message_size:
                    self.refuse(f"message too long: {self._size} bytes or more, the maximum is "
                                f"{self._server.max_message_size} bytes (max_message_size)")
                elif not self._server._reserve(len(data)):
                    self.refuse(_over_flight_budget(self._server, "message"))
                else:
                    self._reserved += len(data)
                    self._chunks.append(data)
            self._cancel(self._gap_timer)
            self._gap_timer = None
            if self._size <= buffer_size and (self.admitted or self._state == _DISCARDING):
                self._gap_timer = self._loop.call_later(self._server.message_gap, self._gap_elapsed)
        # Data after the end of the message (a client that keeps talking) is ignored.

    def _try_admission(self, eof: bool) -> None:
        token = self._server._token
        if token is None:
            self._admit()
            return
        head = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = [head]
        if not head.startswith(_AUTH_PREFIX[:len(head)]):
            self._refuse_unauthenticated("no token given")
            return
        end = head.find(b"\n")
        if end < 0:
            if eof and head.startswith(_AUTH_PREFIX):
                end = len(head)  # an auth line and nothing else
            elif len(head) > _MAX_AUTH_LINE or eof:
                self._refuse_unauthenticated("no token given" if eof else "wrong token")
                return
            else:
                return  # the rest of the line is still on its way (until auth_timeout)
        given = head[len(_AUTH_PREFIX):end].decode("utf-8", errors="replace").strip()
        if not tokens_match(given, token):
            self._refuse_unauthenticated("wrong token")
            return
        self.authenticated = True
        self._admit()

    def _admit(self) -> None:
        self._cancel(self._auth_deadline)
        self.admitted = True
        self._server._connection_admitted(self)
        data, self._chunks, self._size = b"".join(self._chunks), [], 0
        self.data_received(data)

    def _refuse_unauthenticated(self, reason: str) -> None:
        self._server._warn_bad_input("auth", "Refused a message from %s: %s", self.peer, reason)
        self.refuse(f"authentication failed ({reason}); the daemon needs the shared token (token_file)")

    def _refuse_busy(self) -> None:
        server = self._server
        self.refuse(f"the daemon is busy: {server.admitted_connections - 1} connections open, "
                    f"the maximum is {server.max_connections} (max_connections)")

    def _auth_timed_out(self) -> None:
        if self.admitted or self._state not in (_RECEIVING, _DISCARDING):
            return
        if self._state == _DISCARDING:
            self._send_refusal()
            return
        what = "#auth line" if self._server._token is not None else "message"
        self._server._warn_bad_input("auth timeout", "Client %s: no %s within %g s (auth_timeout)",
                                     self.peer, what, self._server.auth_timeout)
        self.send_reply(Reply.error(f"no {what} received within {self._server.auth_timeout:g} s (auth_timeout)"))

    def eof_received(self) -> bool:
        if self._state == _RECEIVING and not self.admitted:
            if self._server._token is not None and self._chunks:
                self._try_admission(eof=True)
            else:
                self._admit()
        if self._state == _RECEIVING:
            self._complete()
        elif self._state == _DISCARDING:
            self._send_refusal()
        return True  # keep our side open: the reply still has to go out

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._state = _CLOSED
        self._chunks = []
        if self._reserved:
            self._server._release(self._reserved)
            self._reserved = 0
        for timer in (self._gap_timer, self._deadline, self._send_deadline, self._auth_deadline):
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
            self._server._warn_bad_input("receive timeout", "Client %s: %s", self.peer, reason)
            self.send_reply(Reply.error(reason))
        elif self._state == _DISCARDING:
            self._send_refusal()

    def _send_refusal(self) -> None:
        self._server._warn_bad_input("refused", "Client %s: %s", self.peer, self._refusal)
        self.send_reply(Reply.error(self._refusal))

    def _complete(self) -> None:
        self._state = _PROCESSING
        self._cancel(self._gap_timer)
        self._cancel(self._deadline)
        data = b"".join(self._chunks)
        self._chunks = []
        if self.over_budget and not self._server._is_status(data):
            self._refuse_busy()
            self._send_refusal()
            return
        self._server._handle_message(self, data)

    # ----------------------------------------------------------------- reply
    @property
    def replied(self) -> bool:
        """True once a reply went out (or the client is gone): later replies are dropped."""
        return self._state in (_REPLIED, _CLOSED)

    def send_reply(self, reply: Reply) -> None:
        """Send the reply and close; does nothing when the client is already gone."""
        if self._state in (_REPLIED, _CLOSED) or self._transport is None:
            return
        self._state = _REPLIED
        self._cancel(self._gap_timer)
        self._cancel(self._deadline)
        self._cancel(self._auth_deadline)
        self._server._count_reply(reply)
        if self._transport.is_closing():
            return
        if reply.text:
            data = self._encode_reply(reply.text)
            self._transport.write(data)
        self._transport.close()  # flushes the reply, then closes
        # A client that never reads its reply must not keep a file descriptor forever.
        self._send_deadline = self._loop.call_later(self._server.send_timeout, self._transport.abort)

    def _encode_reply(self, reply: str) -> bytes:
        server = self._server
        # The message is handled: its bytes no longer count (the reply's do, until closed).
        if self._reserved:
            server._release(self._reserved)
            self._reserved = 0
        if len(reply) > server.max_reply_size:  # characters <= bytes: too long whatever the encoding
            return self._refused_reply(f"the reply is {len(reply)} characters or more, the maximum is "
                                       f"{server.max_reply_size} bytes (max_reply_size)")
        data = reply.encode("utf-8")
        if len(data) > server.max_reply_size:
            return self._refused_reply(f"the reply is {len(data)} bytes, the maximum is "
                                       f"{server.max_reply_size} bytes (max_reply_size)")
        if not server._reserve(len(data)):
            return self._refused_reply(_over_flight_budget(server, "reply"))
        self._reserved = len(data)
        return data

    def _refused_reply(self, reason: str) -> bytes:
        self._server._warn_bad_input("reply refused", "Client %s: %s", self.peer, reason)
        self._server.error_replies += 1
        return Reply.error(reason).text.encode("utf-8")

    @staticmethod
    def _cancel(timer: Optional[asyncio.TimerHandle]) -> None:
        if timer is not None:
            timer.cancel()


def _over_flight_budget(server: Server, what: str) -> str:
    limit = max(server.max_bytes_in_flight, server.max_message_size)
    return (f"the daemon is busy: {server.bytes_in_flight} bytes of messages and replies in flight, "
            f"the maximum is {limit} (max_bytes_in_flight); this {what} was refused, try again")
