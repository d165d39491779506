"""The relay: receiver -> spool writer -> delivery scheduler, started and stopped together.

Example::

    relay = LogRelay(RelaySettings.from_config("relay.ini"))
    await relay.start()
    relay.address               # ('127.0.0.1', 9020)
    await relay.serve_forever() # until relay.request_stop() (SIGTERM), then drains
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Optional

from lab_utils_common.custom_logging import getLogger
from log_relay.delivery import DeliveryScheduler
from log_relay.receiver import RecordReceiver
from log_relay.settings import RelaySettings
from log_relay.spool_writer import SpoolWriter

__all__ = ["LogRelay"]

_log = getLogger(__name__)


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))


class LogRelay:
    """Receive alarm records, keep them in the spool, deliver them as digests.

    ``start()`` opens the spool and listens; ``request_stop()`` (signal-safe)
    makes ``serve_forever()`` drain: stop listening, commit every record received,
    send what is pending (bounded by ``drain_timeout``), close.
    """

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self.writer = SpoolWriter(settings.spool_path, sinks=settings.sink_names,
                                  min_level=settings.min_level, on_commit=self._committed,
                                  on_failure=self._commit_failed)
        self.scheduler = DeliveryScheduler(settings.spool_path, settings.sinks,
                                           timing=settings.timing)
        self.receiver = RecordReceiver(self.writer, host=settings.host, port=settings.port,
                                       max_record_size=settings.max_record_size,
                                       tail_wait=settings.tail_wait,
                                       max_backlog=settings.max_backlog,
                                       max_backlog_bytes=settings.max_backlog_bytes,
                                       max_connections=settings.max_connections)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        #: records received but not in the spool when the relay stopped (the disk stayed full)
        self.lost_at_stop = 0

    @property
    def address(self) -> tuple[str, int]:
        return self.receiver.address

    async def start(self) -> None:
        """Open the spool, start delivering and listen (raises SpoolError / OSError)."""
        self._loop = asyncio.get_running_loop()
        self.writer.start()
        try:
            await self.receiver.start()
        except BaseException:
            self.writer.stop()
            raise
        self._tasks = [asyncio.create_task(self.scheduler.run(), name="delivery"),
                       asyncio.create_task(self._heartbeat(), name="heartbeat")]
        now = time.time()
        host, port = self.address
        self.writer.set_meta({
            "started_at": _iso(now), "pid": str(os.getpid()), "hostname": socket.gethostname(),
            "listening": f"{host}:{port}", "stopped_at": None,
            "heartbeat_interval": str(self.settings.heartbeat_interval),
            "unhealthy_after": str(self.settings.unhealthy_after),
            "sinks": ",".join(self.settings.sink_names)})
        _log.info("log-relay started: spool %s, sinks %s, email threshold %s",
                  self.settings.spool_path, ", ".join(self.settings.sink_names),
                  self.settings.min_level)

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to drain and return (safe from a signal handler)."""
        self._stop.set()

    async def serve_forever(self) -> None:
        """Run until :meth:`request_stop`, then :meth:`close`."""
        try:
            await self._stop.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop listening, commit all received records, make the last delivery pass, close."""
        if self._closed:
            return
        self._closed = True
        _log.info("log-relay stopping: draining")
        await self.receiver.close()
        self.writer.set_meta({"stopped_at": _iso(time.time())})
        # Bounded only while commits keep failing (disk full): a stop must not hang until the
        # supervisor's SIGKILL, and the records that could not be written are counted and named.
        if not await asyncio.to_thread(self.writer.stop,
                                       give_up_failing_after=self.settings.drain_timeout):
            self.lost_at_stop = self.writer.uncommitted
            _log.error("spool %s: %d received record(s) could not be committed for %.0f s (%s) "
                       "and are lost; free space on its file system", self.settings.spool_path,
                       self.lost_at_stop, self.settings.drain_timeout, self.writer.last_error)
        await asyncio.sleep(0)  # run the commit callbacks the writer queued before it stopped
        self.scheduler.stop(self.settings.drain_timeout)
        for task in self._tasks:
            if task.get_name() == "heartbeat":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        _log.info("log-relay stopped: %d record(s) received, %d committed, %d delivered",
                  self.receiver.received, self.writer.committed, self.scheduler.delivered)

    def _committed(self, count: int, groups: dict, acks: dict) -> None:
        # Called in the writer thread; the scheduler and receiver live in the loop.
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._after_commit, groups, acks)
            except RuntimeError:  # the loop closed meanwhile: the senders send again
                pass

    def _after_commit(self, groups: dict, acks: dict) -> None:
        for connection, seq in acks.items():
            connection.ack(seq)
        if groups:
            self.scheduler.notify(groups)
        self.receiver.on_commit()

    def _commit_failed(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self.receiver.on_commit_failed)
            except RuntimeError:
                pass

    async def _heartbeat(self) -> None:
        while True:
            now = time.time()
            self.writer.set_meta({
                "heartbeat_at": _iso(now), "heartbeat_epoch": f"{now:.3f}",
                "connections": str(self.receiver.connection_count),
                "accepted_since_start": str(self.writer.committed),
                "duplicates_dropped": str(self.writer.duplicates),
                "connections_refused": str(self.receiver.refused),
                "spool_write_error": self.writer.last_error})
            await asyncio.sleep(self.settings.heartbeat_interval)
