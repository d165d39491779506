"""Where command handlers run: off the network thread, one at a time by default.

:class:`SerialRunner` runs every handler on the thread that called
``Server.start_daemon`` (the main thread of a daemon, as in lab-utils 0.5.x:
instrument libraries that must stay on one thread, or use signals, keep
working). Jobs submitted during one event loop iteration cross to the handler
thread as one batch, and their replies come back in one wake-up: under load
the cost of crossing threads (and of handing the GIL back and forth) is paid
per batch, not per request.

:class:`PoolRunner` runs up to N handlers at once on a thread pool, for
subclasses whose handlers are all thread-safe (``Server.handler_threads > 1``).

:class:`InlineRunner` runs each handler at once on the event loop thread, which
then is the thread that called ``start_daemon`` (``Server.handler_threads = 0``):
no thread hop per command, but while a handler runs no other client is served.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

__all__ = ["SerialRunner", "PoolRunner", "InlineRunner"]

Job = Callable[[], Any]
Done = Callable[[Any], None]

_STOP = object()
_logger = logging.getLogger(__name__)


def _deliver(results: list[tuple[Done, Any]]) -> None:
    for done, result in results:
        try:
            done(result)
        except Exception:  # one broken callback must not lose the other replies of the batch
            _logger.exception("Delivering a command result failed")


def _post(loop: asyncio.AbstractEventLoop, results: list[tuple[Done, Any]]) -> None:
    try:
        loop.call_soon_threadsafe(_deliver, results)
    except RuntimeError:  # the event loop is closed: the daemon stopped, the clients are gone
        pass


class SerialRunner:
    """Run jobs one at a time on the thread that calls :meth:`run_forever`.

    Example::

        runner = SerialRunner(loop)
        runner.submit(lambda: "reply", print)   # from the event loop thread
        runner.run_forever()                    # on the handler thread, until stop()
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: list[Any] = []

    def submit(self, job: Job, done: Done) -> None:
        """Queue ``job`` (event loop thread only); ``done(result)`` is later called on that thread."""
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append((job, done))

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._queue.put(batch)

    def stop(self) -> None:
        """Make :meth:`run_forever` return once the jobs submitted before this call ran."""
        if self._pending:
            self._flush()
        self._queue.put([_STOP])

    def run_forever(self) -> None:
        """Run queued jobs until :meth:`stop`; a job returns its result, it must not raise."""
        while True:
            batch = self._queue.get()
            while True:
                try:
                    batch += self._queue.get_nowait()
                except queue.Empty:
                    break
            results = []
            stopping = False
            for item in batch:
                if item is _STOP:
                    stopping = True
                    continue
                job, done = item
                results.append((done, job()))
            if results:
                _post(self._loop, results)
            if stopping:
                return


class PoolRunner:
    """Run up to ``workers`` jobs at once on a thread pool; :meth:`run_forever` waits for stop()."""

    def __init__(self, loop: asyncio.AbstractEventLoop, workers: int, name: str = "handler") -> None:
        self._loop = loop
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._stopped = threading.Event()

    def submit(self, job: Job, done: Done) -> None:
        """Start ``job`` on the pool; ``done(result)`` is then called on the event loop thread."""
        future = self._executor.submit(job)
        future.add_done_callback(lambda finished: self._finished(finished, done))

    def _finished(self, future: Future, done: Done) -> None:
        if not future.cancelled():
            _post(self._loop, [(done, future.result())])

    def stop(self) -> None:
        """Make :meth:`run_forever` return after the running jobs finished."""
        self._stopped.set()

    def run_forever(self) -> None:
        """Block until :meth:`stop`, then wait for the pool's running jobs."""
        self._stopped.wait()
        self._executor.shutdown(wait=True, cancel_futures=True)


class InlineRunner:
    """Run each job at once on the event loop thread (no thread hop); :meth:`run_forever` is not used.

    Example::

        runner = InlineRunner()
        runner.submit(lambda: "reply", print)   # prints 'reply' before returning
    """

    def submit(self, job: Job, done: Done) -> None:
        """Run ``job`` now and hand its result to ``done``."""
        done(job())

    def stop(self) -> None:
        """Nothing to stop: jobs never wait."""

    def run_forever(self) -> None:  # pragma: no cover - the controller runs the loop itself
        """Not used: with inline handlers the event loop runs on the calling thread."""
