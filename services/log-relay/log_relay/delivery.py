"""Deliver digests from the spool: when each group is due, with back-off while a sink is down.

Records leave the spool's outbox only after their sink accepted the digest
(the SMTP server said 250): a crash between sending and marking sends that
digest again after the restart, never loses it. While a sink fails, its groups
wait ``retry_initial``, then twice as long each time, up to ``retry_max``; the
receiver keeps accepting meanwhile, and the backlog goes out once it is back.

Example::

    scheduler = DeliveryScheduler(spool_path, [MailSink(settings)], timing=DeliveryTiming())
    task = asyncio.create_task(scheduler.run())
    scheduler.notify({("pump", "ERROR"): time.time()})     # after each spool commit
    await scheduler.stop()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from lab_utils_common.custom_logging import getLogger

from log_relay.digest import build_digest, due_at
from log_relay.sinks import Sink
from log_relay.spool import Spool

__all__ = ["DeliveryScheduler", "DeliveryTiming"]

_log = getLogger(__name__)

GroupKey = tuple  # (sink, app, level)


@dataclass(frozen=True)
class DeliveryTiming:
    """Digest timing and back-off (seconds), and digest size limits."""

    group_wait: float = 30.0
    group_interval: float = 300.0
    retry_initial: float = 5.0
    retry_max: float = 300.0
    max_records: int = 5000
    max_lines: int = 50
    retention: float = 86400.0
    purge_every: float = 60.0


@dataclass
class _Group:
    oldest: Optional[float] = None       # oldest undelivered record, None when all delivered
    last_sent: Optional[float] = None
    backlog: bool = False                # the last digest was cut at max_records
    fresh: Optional[float] = None        # oldest record notified while a delivery ran


@dataclass
class _SinkState:
    failures: int = 0
    retry_at: float = 0.0
    last_error: Optional[str] = None


@dataclass
class _Outcome:
    key: GroupKey
    ok: bool
    oldest: Optional[float] = None
    sent_at: Optional[float] = None
    backlog: bool = False
    error: Optional[str] = None
    delivered: int = 0


def _min(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


class DeliveryScheduler:
    """Send each due group's digest through its sink; mark records delivered after acceptance."""

    def __init__(self, spool_path: str, sinks: Sequence[Sink], *,
                 timing: DeliveryTiming = DeliveryTiming()) -> None:
        self.spool_path = spool_path
        self.sinks = {sink.name: sink for sink in sinks}
        self.timing = timing
        self.delivered = 0
        self.failed_attempts = 0
        self._groups: dict[GroupKey, _Group] = {}
        self._sink_state = {name: _SinkState() for name in self.sinks}
        self._wake = asyncio.Event()
        self._stopping = False
        self._spool: Optional[Spool] = None
        # One thread owns the spool connection and does the (blocking) sending.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="delivery")
        self._next_purge = 0.0
        self._drain_timeout = 5.0

    # ------------------------------------------------------------------ called from the loop

    def notify(self, groups: dict) -> None:
        """New records were committed: ``{(app, level): oldest received_at}``."""
        for (app, level), oldest in groups.items():
            for sink in self.sinks:
                group = self._groups.setdefault((sink, app, level), _Group())
                group.oldest = _min(group.oldest, oldest)
                group.fresh = _min(group.fresh, oldest)
        self._wake.set()

    def pending_groups(self) -> int:
        """How many groups have undelivered records (as far as the scheduler knows)."""
        return sum(1 for group in self._groups.values() if group.oldest is not None)

    async def run(self) -> None:
        """Deliver until :meth:`stop`; then one last pass that ignores ``group_wait``, bounded
        by the ``drain_timeout`` given to :meth:`stop`."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    await loop.run_in_executor(self._executor, self._load)
                    break
                except Exception as exc:  # the writer opened this spool already: retry
                    _log.error("delivery cannot open the spool, retrying in %.1f s: %s",
                               self.timing.retry_max, exc)
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.timing.retry_max)
                    except asyncio.TimeoutError:
                        pass
                    if self._stopping:
                        return
            await self._deliver_until_stopped()
            try:
                await asyncio.wait_for(self._deliver_due(ignore_wait=True), self._drain_timeout)
            except asyncio.TimeoutError:
                _log.warning("delivery: final pass not done after %.1f s; the rest stays in the "
                             "spool for the next start", self._drain_timeout)
        finally:
            self._executor.submit(self._close)
            self._executor.shutdown(wait=False)

    async def _deliver_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            # Cleared before looking at the groups: a commit notified meanwhile wakes us again.
            self._wake.clear()
            try:
                next_due = await self._deliver_due(ignore_wait=False)
                if time.time() >= self._next_purge:
                    await loop.run_in_executor(self._executor, self._purge)
            except Exception:  # a bug or a broken spool must not end delivery for good
                _log.exception("delivery pass failed; trying again in %.1f s",
                               self.timing.retry_initial)
                next_due = time.time() + self.timing.retry_initial
            if self._stopping:
                break
            timeout = max(0.0, min(next_due, self._next_purge) - time.time())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Ask :meth:`run` to make its last pass (sending what is pending now) and return."""
        self._stopping = True
        self._drain_timeout = drain_timeout
        self._wake.set()

    async def _deliver_due(self, ignore_wait: bool) -> float:
        """Deliver every due group; return when the next one is due."""
        loop = asyncio.get_running_loop()
        while True:
            now = time.time()
            next_due = now + 3600.0
            due: list[tuple[float, GroupKey]] = []
            for key, group in self._groups.items():
                if group.oldest is None:
                    continue
                wait = 0.0 if ignore_wait else self.timing.group_wait
                at = due_at(group.oldest, group.last_sent, wait, self.timing.group_interval,
                            group.backlog)
                at = max(at, self._sink_state[key[0]].retry_at)
                if at <= now:
                    due.append((group.oldest, key))
                else:
                    next_due = min(next_due, at)
            if not due:
                return next_due
            for _, key in sorted(due):
                if self._sink_state[key[0]].retry_at > time.time():
                    continue  # this sink failed earlier in this pass
                self._groups[key].fresh = None
                outcome = await loop.run_in_executor(self._executor, self._deliver, key)
                self._apply(outcome)

    def _apply(self, outcome: _Outcome) -> None:
        group = self._groups[outcome.key]
        state = self._sink_state[outcome.key[0]]
        if outcome.ok:
            group.oldest = _min(outcome.oldest, group.fresh)
            if outcome.sent_at is not None:
                group.last_sent = outcome.sent_at
            group.backlog = outcome.backlog
            state.failures = 0
            state.retry_at = 0.0
            self.delivered += outcome.delivered
        else:
            self.failed_attempts += 1
            delay = min(self.timing.retry_initial * (2 ** state.failures), self.timing.retry_max)
            state.failures += 1
            state.retry_at = time.time() + delay
            state.last_error = outcome.error
            _log.error("delivery to %s failed (attempt %d), retrying in %.1f s: %s",
                       outcome.key[0], state.failures, delay, outcome.error)
        group.fresh = None

    # ------------------------------------------------------------------ in the worker thread

    def _load(self) -> None:
        self._spool = Spool.open(self.spool_path)
        last_sent = self._spool.last_sent()
        for sink, app, level, oldest, _count in self._spool.pending_groups():
            if sink not in self.sinks:
                _log.warning("spool holds records for sink %r that is not configured now; they "
                             "wait until it is", sink)
                continue
            self._groups[(sink, app, level)] = _Group(oldest=oldest,
                                                      last_sent=last_sent.get((sink, app, level)))
        for key, sent in last_sent.items():
            if key[0] in self.sinks:
                self._groups.setdefault(key, _Group()).last_sent = sent
        self._next_purge = time.time() + self.timing.purge_every

    def _deliver(self, key: GroupKey) -> _Outcome:
        assert self._spool is not None
        sink_name, app, level = key
        spool = self._spool
        try:
            batch = spool.take_batch(sink_name, app, level, self.timing.max_records)
            if not batch:
                return _Outcome(key, ok=True, oldest=spool.oldest_pending(sink_name, app, level))
            remaining = spool.pending_count(sink_name, app, level) - len(batch)
            digest = build_digest(batch, app=app, level=level, max_lines=self.timing.max_lines,
                                  remaining=remaining)
        except Exception as exc:  # the spool itself fails: report, retry later
            return self._failed(key, f"spool: {type(exc).__name__}: {exc}")
        try:
            self.sinks[sink_name].send(digest)
        except Exception as exc:  # SMTP/TLS/network/webhook errors alike: retry later
            return self._failed(key, f"{type(exc).__name__}: {exc}")
        sent_at = time.time()
        summary = f"{digest.summary} to {sink_name}"
        try:
            spool.mark_delivered(sink_name, app, level, [record.id for record in batch], sent_at,
                                 summary)
            oldest = spool.oldest_pending(sink_name, app, level)
        except Exception as exc:  # sent but not marked: it goes out again (at least once)
            return self._failed(key, f"spool: marking {summary} as delivered failed: "
                                     f"{type(exc).__name__}: {exc}")
        _log.info("delivered %s", summary)
        return _Outcome(key, ok=True, oldest=oldest, sent_at=sent_at, backlog=remaining > 0,
                        delivered=len(batch))

    def _failed(self, key: GroupKey, error: str) -> _Outcome:
        try:
            assert self._spool is not None
            self._spool.set_meta({"last_error": f"{key[0]}: {error}",
                                  "last_error_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        except Exception as exc:
            _log.error("cannot record the delivery error in the spool: %s", exc)
        return _Outcome(key, ok=False, error=error)

    def _purge(self) -> None:
        assert self._spool is not None
        self._next_purge = time.time() + self.timing.purge_every
        try:
            removed = self._spool.purge(time.time() - self.timing.retention)
        except Exception as exc:
            _log.error("spool purge failed: %s", exc)
            return
        if removed:
            _log.info("purged %d delivered record(s) older than %.0f s", removed,
                      self.timing.retention)

    def _close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
