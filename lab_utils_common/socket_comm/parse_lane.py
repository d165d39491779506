"""The thread where long messages are split and parsed, so the network thread never waits on them.

A short message (most commands) is parsed right on the network thread: it costs
microseconds, and a thread hop would cost more. A long one may take argparse
tenths of a second (it is quadratic in option-like words), so it goes to this
lane: one thread, jobs in arrival order, each with a deadline. A job whose
deadline passed while it waited is skipped, so a queue of hostile messages
drains at once; the caller answers the client when the deadline passes,
whether or not the job finished.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any, Callable, Optional

__all__ = ["ParseLane", "EXPIRED"]

#: The result handed to ``done`` for a job skipped because its deadline had passed.
EXPIRED = object()


class ParseLane:
    """One worker thread; ``submit(job, done, deadline)`` runs ``job()`` there, then ``done(result)`` on the loop.

    Example::

        lane = ParseLane(loop)
        lane.submit(lambda: parse(text), on_parsed, time.monotonic() + 2.0)
        lane.stop()
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str = "parse") -> None:
        self._loop = loop
        self._name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None

    def submit(self, job: Callable[[], Any], done: Callable[[Any], None], deadline: float) -> None:
        """Queue ``job`` (to start before ``deadline``, a ``time.monotonic()`` value)."""
        if self._thread is None:  # started on first use: most daemons never get a long message
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put((job, done, deadline))

    def stop(self) -> None:
        """Let the thread end after the jobs queued so far (it does not wait for them)."""
        if self._thread is not None:
            self._queue.put(None)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job, done, deadline = item
            result = EXPIRED if time.monotonic() > deadline else job()
            try:
                self._loop.call_soon_threadsafe(done, result)
            except RuntimeError:  # the loop is closed: the daemon stopped
                return
