"""The life of a :class:`~.server.Server`: bind, the event loop thread, signals, start and stop.

:meth:`Controller.run` (what ``Server.start_daemon`` calls) binds the address,
runs the asyncio loop on a background thread (network I/O for every client)
and the command runner on the calling thread (command handlers, as in 0.5.x),
until ``quit``, SIGTERM/SIGINT, ``quit_flag`` or ``Server.shutdown``; then it
finishes open requests (up to ``shutdown_timeout``), runs ``quit()`` when a
signal asked for it, and releases the socket and the PID lock.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from .command_runner import InlineRunner, PoolRunner, SerialRunner
from .connection import Connection
from .dispatcher import Reply
from .memory import return_large_blocks_to_os
from .parse_lane import ParseLane

if TYPE_CHECKING:
    from .server import Server

__all__ = ["Controller"]


class Controller:
    """Runs one server: ``Controller(server).run()`` blocks until the server stopped.

    Example::

        controller = Controller(server)
        threading.Thread(target=controller.run).start()
        controller.stop_from_any_thread(run_quit=True)
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.runner: Any = None                       #: Where handlers run (SerialRunner or PoolRunner).
        self.lane: Optional[ParseLane] = None         #: Where long messages are parsed.
        self.address: Optional[tuple[str, int]] = None  #: The bound (host, port).
        self.connections: set[Connection] = set()     #: Open connections.
        self._stop_requested: Optional[asyncio.Event] = None
        self._all_closed: Optional[asyncio.Event] = None
        self._run_quit_on_stop = False

    # ---------------------------------------------------------------- connections (event loop thread)
    def track(self, connection: Connection) -> None:
        """Count an open connection (stopping waits for it)."""
        self.connections.add(connection)
        self._all_closed.clear()

    def untrack(self, connection: Connection) -> None:
        """Forget a closed connection."""
        self.connections.discard(connection)
        if not self.connections:
            self._all_closed.set()

    # ---------------------------------------------------------------- start
    def bind(self) -> socket.socket:
        """A socket bound to the server's host and port (IPv4 preferred); OSError naming the address."""
        server = self.server
        server.logger.info("Binding to address %s:%s", server.host, server.port)
        infos = socket.getaddrinfo(server.host or None, server.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        # 0.5.x bound IPv4 only; prefer IPv4 so 'localhost' still means 127.0.0.1 for old clients.
        family, kind, proto, _, address = sorted(infos, key=lambda info: info[0] != socket.AF_INET)[0]
        sock = socket.socket(family, kind, proto)
        try:
            # Restarting right after a stop must not fail on connections in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot bind {server.host}:{server.port}: {exc.strerror}") from exc
        self.address = sock.getsockname()[:2]
        return sock

    def run(self) -> None:
        """Serve until stopped (see the module docstring); OSError when the address cannot be bound."""
        server = self.server
        return_large_blocks_to_os()  # a burst of large messages must not keep the daemon's RSS up
        loop = asyncio.new_event_loop()
        self.loop = loop
        name = type(server).__name__
        if server.handler_threads > 1:
            self.runner = PoolRunner(loop, server.handler_threads, f"{name}-handler")
        elif server.handler_threads == 0:
            self.runner = InlineRunner()
        else:
            self.runner = SerialRunner(loop)
        self.lane = ParseLane(loop, f"{name}-parse")
        failure: list[BaseException] = []
        previous = self._install_signal_handlers()
        io_thread = None
        try:
            server.sock = self.bind()
            server.address = self.address[1]
            if isinstance(self.runner, InlineRunner):
                # Handlers run on the event loop: the loop runs here, on the start_daemon thread.
                self._run_io_loop(loop, failure)
                if failure:
                    raise failure[0]
                return
            io_thread = threading.Thread(target=self._run_io_loop, args=(loop, failure), name=f"{name}-io",
                                         daemon=True)
            io_thread.start()
            self.runner.run_forever()
            io_thread.join()
            if failure:
                raise failure[0]
        except OSError as exc:
            server.logger.error("%s: %s", type(exc).__name__, exc)
            raise
        finally:
            if io_thread is not None and io_thread.is_alive():
                # The handler thread left early (an exception): stop the network side too.
                loop.call_soon_threadsafe(self.request_stop)
                io_thread.join(server.shutdown_timeout + 1)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if io_thread is None or not io_thread.is_alive():
                loop.close()
            server.close()
            server.stopped.set()

    def _run_io_loop(self, loop: asyncio.AbstractEventLoop, failure: list) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # handed to run()'s thread, which re-raises it
            failure.append(exc)
        finally:
            self.runner.stop()
            self.lane.stop()

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, self.server.signal_handler)
                for signum in (signal.SIGTERM, signal.SIGINT)}

    async def _serve(self) -> None:
        server = self.server
        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        listener = await loop.create_server(lambda: Connection(server), sock=server.sock,
                                            backlog=server.max_backlog)
        server.started_at = time.monotonic()
        server.logger.info("Server is now listening on %s:%s, send a 'quit' message to stop it", *self.address)
        watcher = loop.call_later(server.socket_timeout, self._watch_quit_flag)
        server.ready.set()
        if server.quit_flag:
            self.request_stop()
        try:
            await self._stop_requested.wait()
        finally:
            watcher.cancel()
            listener.close()
            await self._finish_open_requests()
            if self._run_quit_on_stop:
                quit_done = loop.create_future()
                self.runner.submit(server._run_quit_cleanup, quit_done.set_result)
                await quit_done

    # ---------------------------------------------------------------- stop
    async def _finish_open_requests(self) -> None:
        server = self.server
        try:
            await asyncio.wait_for(self._all_closed.wait(), server.shutdown_timeout)
        except TimeoutError:
            server.logger.warning("Stopping: %d connection(s) still open after %g s, dropping them",
                                  len(self.connections), server.shutdown_timeout)
            # A client whose command is still running must not take the close for an empty
            # (successful) reply: it gets an error saying what happened.
            for connection in list(self.connections):
                connection.send_reply(Reply.error(
                    f"the daemon is stopping and did not finish this request within {server.shutdown_timeout:g} s "
                    f"(shutdown_timeout); a command that was running may still complete"))
            try:
                await asyncio.wait_for(self._all_closed.wait(), 1.0)
            except TimeoutError:
                pass
            for connection in list(self.connections):
                connection.drop()
            await asyncio.sleep(0)  # let connection_lost run

    def _watch_quit_flag(self) -> None:
        # 0.5.x code stops the daemon by setting quit_flag (from a handler or another thread).
        if self.server.quit_flag:
            self.request_stop()
        else:
            self.loop.call_later(self.server.socket_timeout, self._watch_quit_flag)

    def request_stop(self, run_quit: bool = False) -> None:
        """Stop accepting and finish open requests (event loop thread); ``run_quit``: then run quit()."""
        self.server.quit_flag = True
        self._run_quit_on_stop = self._run_quit_on_stop or run_quit
        if self._stop_requested is not None and not self._stop_requested.is_set():
            self.server.logger.info("Stopping: no new connections, finishing open requests")
            self._stop_requested.set()

    def stop_from_any_thread(self, run_quit: bool) -> None:
        """:meth:`request_stop` from any thread (a signal handler, another thread); no-op once stopped."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self.request_stop, run_quit)
            except RuntimeError:  # the loop closed in between
                pass
