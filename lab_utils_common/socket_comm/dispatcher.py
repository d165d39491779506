"""From a framed message to a reply: decode, authenticate, split, parse, check, run the command.

The dispatcher knows nothing about sockets or threads: :meth:`Dispatcher.prepare`
turns the bytes of one message into a :class:`Request` (or a refusal
:class:`Reply`), :meth:`Dispatcher.run` runs the request's handler and returns
its :class:`Reply`. The command map is the server's argparse sub-parsers: the
built-in commands are registered first and an application's own command of
the same name replaces one (:class:`~.parser.ReplacingSubParsersAction`).
Replies carry ``ok``: nothing parses an ``Error!`` prefix back.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

from .admin import admin_refusal
from .log_limits import cut
from .message import ERROR_PREFIX, SPLIT_PATTERN, Message, decode_message, split_message
from .parser import MessageError

if TYPE_CHECKING:
    from .server import Server

__all__ = ["Reply", "Request", "Dispatcher", "EMPTY_MESSAGE", "AUTH_FAILED", "TOO_MANY_WORDS", "NO_COMMAND",
           "PARSE_TIMEOUT", "HANDLER_FAILED"]

# The errors the daemon itself answers, by name (str.format fields in braces).
EMPTY_MESSAGE = "empty message; send 'help' for the list of commands"
AUTH_FAILED = "authentication failed ({reason}); the daemon needs the shared token (token_file)"
TOO_MANY_WORDS = ("message has {count} words, the maximum is {limit} (max_words); put a value with "
                  "spaces in braces: {{a long value}}")
NO_COMMAND = "no command given"
PARSE_TIMEOUT = ("the message was not parsed within {limit:g} s (parse_timeout); send shorter messages, "
                 "or fewer at once")
#: 0.5.x's reply to a command that raised anything but MessageError.
HANDLER_FAILED = "Unknown exception! Check daemon log!\n{kind}: {text}"


@dataclass(frozen=True)
class Reply:
    """What goes back to the client: ``text``, and ``ok`` (False for every error reply)."""

    text: str
    ok: bool = True

    @classmethod
    def error(cls, text: str) -> Reply:
        """An ``Error! <text>`` reply."""
        return cls(f"{ERROR_PREFIX}{text}", False)


@dataclass(frozen=True)
class Request:
    """A parsed message, ready to run: its text, body and argparse namespace."""

    message: Message
    namespace: argparse.Namespace

    @property
    def command(self) -> str:
        """The command name (the sub-parser's ``which``)."""
        return getattr(self.namespace, "which", None) or ""


class Dispatcher:
    """Parses and runs the messages of one :class:`~.server.Server` (its parser, settings and handlers).

    Example::

        dispatcher = Dispatcher(server)
        prepared = dispatcher.prepare(b"echo a {b c}", authenticated=False)
        reply = prepared if isinstance(prepared, Reply) else dispatcher.run(prepared)
    """

    def __init__(self, server: Server) -> None:
        self.server = server

    # ---------------------------------------------------------------- bytes -> request
    def prepare(self, data: bytes, authenticated: bool) -> Union[Request, Reply]:
        """Decode, authenticate, split and parse one message; never raises."""
        server = self.server
        try:
            text = decode_message(data)
        except ValueError as exc:
            server._warn_bad_input("undecodable", "Client message refused: %s", exc)
            return Reply.error(str(exc))
        message = Message.from_text(text, server.accepts_body)
        if server._token is not None and not authenticated:
            from .auth_token import tokens_match
            if message.token is None or not tokens_match(message.token, server._token):
                reason = "no token given" if message.token is None else "wrong token"
                server._warn_bad_input("auth", "Refused a message: %s", reason)
                return Reply.error(AUTH_FAILED.format(reason=reason))
        if not message.head.strip():
            return Reply.error(EMPTY_MESSAGE)
        return self.parse(message)

    def split(self, head: str) -> list[str]:
        """The words of a command line (0.5.x rules, linear time; a subclass's own ``regex`` is used as is)."""
        server = self.server
        left, right = server.delimiter_left, server.delimiter_right
        # 0.5.x apps may compile 0.5.x's own (quadratic) pattern themselves: the linear splitter
        # gives the same words.
        if server.regex is SPLIT_PATTERN or getattr(server.regex, "pattern", None) == f" (?![^{left}{right}]*{right})":
            return split_message(head, left, right)
        delimiters = f" {server.delimiter_left}{server.delimiter_right}"
        return [word.strip(delimiters) for word in server.regex.split(head)]

    def _count_without_braces(self, head: str) -> Optional[int]:
        """The word count of a head without delimiters under the default splitter, counted in C
        (a flood of ``a a a ...`` is refused without building its half a million words); else None."""
        server = self.server
        if server.regex is not SPLIT_PATTERN or server.delimiter_left in head or server.delimiter_right in head:
            return None
        return head.count(" ") + 1

    def parse(self, message: Message) -> Union[Request, Reply]:
        """The request of ``message``, or the error reply; never raises."""
        server = self.server
        quote = server.quote_chars
        count = self._count_without_braces(message.head)
        words = self.split(message.head) if count is None or count <= server.max_words else None
        count = len(words) if words is not None else count
        if count > server.max_words:
            server._warn_bad_input("too many words", "Invalid message %s: %d words, the maximum is %d (max_words)",
                                   cut(message.head, quote), count, server.max_words)
            return Reply.error(TOO_MANY_WORDS.format(count=count, limit=server.max_words))
        try:
            namespace = server.parser.parse_args(args=words)
        except MessageError as exc:
            server._warn_bad_input("invalid", "Invalid message %s: %s", cut(message.head, quote), cut(exc, quote))
            return Reply.error(f"{shorten(str(exc), quote)}\n{server.parser.full_help()}")
        except Exception as exc:  # a type= converter of the application that raised
            server.logger.exception("Parsing %s failed", cut(message.head, quote))
            return Reply(HANDLER_FAILED.format(kind=type(exc).__name__, text=shorten(str(exc), quote)), False)
        if not callable(getattr(namespace, "func", None)):
            return Reply.error(f"{NO_COMMAND}\n{server.parser.full_help()}")
        request = Request(message, namespace)
        if request.command in server.admin_commands and not server.admin_allowed:
            server._warn_bad_input("admin", "Refused the admin command %r: no token configured", request.command)
            return Reply.error(admin_refusal(repr(request.command)))
        return request

    # ---------------------------------------------------------------- request -> reply
    def run(self, request: Request) -> Reply:
        """Run the request's handler (on the calling thread) with 0.5.x's per-request attributes set."""
        server = self.server
        message = request.message
        server.message, server.body, server.namespace, server.reply = message.head, message.body, request.namespace, ""
        try:
            request.namespace.func()
        except MessageError as exc:
            server.logger.warning("Command %s refused: %s", cut(message.head, server.quote_chars), exc)
            return Reply.error(str(exc))
        except BaseException as exc:  # noqa: BLE001 - a failing command must not kill the daemon
            server.logger.exception("Command %s failed: %s: %s", cut(message.head, server.quote_chars),
                                    type(exc).__name__, exc)
            return Reply(HANDLER_FAILED.format(kind=type(exc).__name__, text=exc), False)
        finally:
            server.body = ""  # a body may be many MB: not kept until the next request
        reply = server.reply
        return Reply("" if reply is None else str(reply))


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, naming its full size (for error replies)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text.encode('utf-8', errors='replace'))} bytes, cut to {limit} characters)"
