"""TCP client for a :class:`~.server.Server` (or a lab-utils 0.5.x server)."""

from __future__ import annotations

import errno
import os
import socket
from typing import Optional

from lab_utils_common.config import Option, load_section, port_number, positive_float

from ._log import get_logger
from .auth_token import read_token_file
from .message import add_token, buffer_size

__all__ = ["Client"]

# As 0.5.4: records go to the application logger (custom_logging.getLogger()), looked up at
# each call because configure_logging may name the application after this module is imported.
_QUOTE_CHARS = 4096  # a message or reply longer than this is logged cut, with its size named


class Client:
    """Send one message to a daemon and return its reply.

    The message goes out, then the socket is half-closed so the server knows
    the message is complete (any length up to the server's max_message_size);
    the reply is read until the server closes. Against a lab-utils 0.5.x
    server, messages must stay within 4096 bytes (all it reads).

    Example::

        client = Client(host="127.0.0.1", port=1507)
        client.send_message("status")          # 'status: running\\npid: 4242\\n...'
        client.send_message("set {my sensor} 3.5")

    Settings: ``[Overall]`` host, port, token_file, timeout of ``config_file``;
    environment ``LABUTILS_CLIENT_<OPTION>``; then the constructor arguments.
    """

    host: str = "localhost"          #: Host address.
    port: int = 1507                 #: Connection port.
    timeout: float = 60.0            #: Seconds to connect, and to wait for the reply.
    token_file: Optional[str] = None  #: File holding the shared token; None: send no token.
    env_section: str = "CLIENT"      #: Environment variables are LABUTILS_<env_section>_<OPTION>.

    def __init__(self, config_file: Optional[str] = None, host: Optional[str] = None,
                 port: Optional[int] = None, *, token_file: Optional[str] = None,
                 timeout: Optional[float] = None) -> None:
        """Read the settings; raises a :class:`configparser.Error` for a bad configuration."""
        self._token: Optional[str] = None
        if config_file is not None and type(self).config is not Client.config:
            # As in 0.5.x the constructor calls config(): a subclass reads its own options there.
            self.config(config_file)
        self._load_settings(config_file, {"host": host, "port": port, "token_file": token_file,
                                          "timeout": timeout})

    def _load_settings(self, config_file: Optional[str], overrides: Optional[dict] = None) -> None:
        values = load_section("Overall", [
            Option("host", str, self.host),
            Option("port", port_number, self.port),
            Option("token_file", str, self.token_file),
            Option("timeout", positive_float, self.timeout),
        ], config_file, env_section=self.env_section, overrides=overrides)
        for name, value in values.items():
            setattr(self, name, value)
        self._token = read_token_file(self.token_file) if self.token_file else None

    def config(self, config_file: str) -> None:
        """Load ``[Overall]`` host, port, token_file and timeout from ``config_file``."""
        logger = get_logger()
        logger.info("Loading configuration file %s", os.path.abspath(os.path.expanduser(config_file)))
        try:
            self._load_settings(config_file)
        except Exception as exc:
            logger.error("%s: %s", type(exc).__name__, exc)
            raise
        logger.info("Configuration file loaded")

    def send_message(self, message: str) -> str:
        """Connect, send ``message``, return the reply; :class:`OSError` naming the address on failure."""
        where = f"{self.host}:{self.port}"
        logger = get_logger()
        logger.info("Sending message to the server: %s", _quoted(message))
        try:
            reply = self._exchange(where, message)
        except OSError as exc:
            logger.error("%s: %s", type(exc).__name__, exc)  # as 0.5.4: the failure is in the log
            raise
        logger.info("Reply received: %s", _quoted(reply))
        return reply

    def _exchange(self, where: str, message: str) -> str:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise type(exc)(exc.errno, f"cannot connect to {where}: {exc.strerror or exc}") from exc
        payload = add_token(message, self._token).encode("utf-8")
        with sock:
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)  # end of message
                chunks = []
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            except TimeoutError:
                raise TimeoutError(f"no reply from {where} within {self.timeout:g} s") from None
            except OSError as exc:
                hint = ""
                # ENOTCONN: the reset came before our half-close (seen on a loaded machine).
                if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN) and len(payload) > buffer_size:
                    # What a lab-utils 0.5.x server does with a longer message: one recv, then close.
                    hint = (f" (the message is {len(payload)} bytes; a lab-utils 0.5.x daemon reads at "
                            f"most {buffer_size} and drops the connection)")
                raise type(exc)(exc.errno, f"talking to {where} failed: {exc.strerror or exc}{hint}") from exc
        return b"".join(chunks).decode("utf-8", errors="replace")


def _quoted(text: str) -> str:
    if len(text) <= _QUOTE_CHARS:
        return text
    return f"{text[:_QUOTE_CHARS]}... ({len(text.encode('utf-8', errors='replace'))} bytes, cut)"
