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
import collections
import concurrent.futures
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from lab_utils_common.custom_logging import getLogger
from log_relay.digest import build_digest, cut_record, dead_letter_digest, due_at, summary_digest
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
    #: digests per sink in any ``group_interval`` across all groups; more are folded into one
    #: summary digest per interval
    max_digests: int = 10
    retention: float = 86400.0
    purge_every: float = 60.0


@dataclass
class _Group:
    oldest: Optional[float] = None       # oldest undelivered record, None when all delivered
    last_sent: Optional[float] = None
    backlog: bool = False                # the last digest was cut at max_records
    fresh: Optional[float] = None        # oldest record notified while a delivery ran
    failures: int = 0                    # failed attempts in a row (back-off is per group)
    retry_at: float = 0.0
    limit: Optional[int] = None          # records per digest after a refusal split it


@dataclass
class _Outcome:
    key: GroupKey
    ok: bool
    oldest: Optional[float] = None
    sent_at: Optional[float] = None
    backlog: bool = False
    error: Optional[str] = None
    delivered: int = 0
    split: Optional[int] = None          # refused for good: try again at once with this many


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
        self._wake = asyncio.Event()
        self._stopping = False
        self._spool: Optional[Spool] = None
        # One thread owns the spool connection and does the (blocking) sending.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="delivery")
        self._next_purge = 0.0
        self._drain_timeout = 5.0
        self._stop_deadline = 0.0
        self._sent: dict[str, collections.deque] = {name: collections.deque() for name in self.sinks}
        self._summary_sent: dict[str, float] = {}

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
                    except TimeoutError:
                        pass
                    if self._stopping:
                        return
            await self._deliver_until_stopped()
            try:
                await asyncio.wait_for(self._deliver_due(ignore_wait=True),
                                       max(0.0, self._stop_deadline - time.monotonic()))
            except TimeoutError:
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
            except TimeoutError:
                pass

    def stop(self, drain_timeout: float = 5.0) -> None:
        """Ask :meth:`run` to make its last pass (sending what is pending now) and return,
        within ``drain_timeout`` seconds whatever the servers do: then every conversation
        still going is cut (what it carried stays in the spool)."""
        self._stopping = True
        self._drain_timeout = drain_timeout
        self._stop_deadline = time.monotonic() + drain_timeout
        asyncio.get_running_loop().call_later(drain_timeout, self._abort_sinks)
        self._wake.set()

    def _abort_sinks(self) -> None:
        for sink in self.sinks.values():
            sink.abort("log-relay stopping: drain_timeout passed")

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
                at = max(at, group.retry_at)
                if at <= now:
                    due.append((group.oldest, key))
                else:
                    next_due = min(next_due, at)
            if not due:
                return next_due
            overflow: dict[str, list[GroupKey]] = {}
            for _, key in sorted(due):
                if self._stopping and not ignore_wait:
                    return time.time()  # the final pass takes over
                if not self._may_send(key[0], now):
                    overflow.setdefault(key[0], []).append(key)
                    continue
                self._groups[key].fresh = None
                outcome = await loop.run_in_executor(self._executor, self._deliver, key)
                if outcome.sent_at is not None:
                    self._sent[key[0]].append(outcome.sent_at)
                self._apply(outcome)
            for sink_name, keys in overflow.items():
                summary_at = self._summary_sent.get(sink_name)
                if summary_at is None or now - summary_at >= self.timing.group_interval \
                        or self._stopping:
                    for key in keys:
                        self._groups[key].fresh = None
                    outcomes = await loop.run_in_executor(self._executor, self._deliver_summary,
                                                          sink_name, keys)
                    if any(outcome.sent_at is not None for outcome in outcomes):
                        self._summary_sent[sink_name] = time.time()
                    for outcome in outcomes:
                        self._apply(outcome)
                else:
                    # Over the cap and the summary went out this interval: wait for room.
                    free_at = min(self._sent[sink_name][0] if self._sent[sink_name] else now,
                                  summary_at) + self.timing.group_interval
                    for key in keys:
                        self._groups[key].retry_at = max(self._groups[key].retry_at, free_at)

    def _may_send(self, sink_name: str, now: float) -> bool:
        """Whether the sink is under ``max_digests`` digests in the last ``group_interval``."""
        sent = self._sent[sink_name]
        while sent and sent[0] <= now - self.timing.group_interval:
            sent.popleft()
        return len(sent) < self.timing.max_digests

    def _apply(self, outcome: _Outcome) -> None:
        group = self._groups[outcome.key]
        if outcome.ok:
            group.oldest = _min(outcome.oldest, group.fresh)
            if outcome.sent_at is not None:
                group.last_sent = outcome.sent_at
            group.backlog = outcome.backlog
            group.failures = 0
            group.retry_at = 0.0
            self.delivered += outcome.delivered
        elif outcome.split is not None:
            # Refused for good as a whole: smaller digests go at once (down to one record,
            # then cut, then parked): one refused digest never holds up the rest.
            group.limit = outcome.split
            group.retry_at = 0.0
            _log.warning("delivery to %s refused a digest of %s/%s for good; sending it in "
                         "digests of at most %d record(s): %s", outcome.key[0], outcome.key[1],
                         outcome.key[2], outcome.split, outcome.error)
        else:
            self.failed_attempts += 1
            delay = min(self.timing.retry_initial * (2 ** group.failures), self.timing.retry_max)
            group.failures += 1
            group.retry_at = time.time() + delay
            _log.error("delivery of %s/%s to %s failed (attempt %d), retrying in %.1f s: %s",
                       outcome.key[1] or "unparsed input", outcome.key[2], outcome.key[0],
                       group.failures, delay, outcome.error)
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
        sink = self.sinks[sink_name]
        limit = self._groups[key].limit or self.timing.max_records
        try:
            # A digest holds each message up to twice (body and attachment): half the limit.
            batch = spool.take_batch(sink_name, app, level, limit,
                                     max_bytes=getattr(sink, "max_message_bytes", 10 << 20) // 2)
            if not batch:
                return _Outcome(key, ok=True, oldest=spool.oldest_pending(sink_name, app, level))
            remaining = spool.pending_count(sink_name, app, level) - len(batch)
            digest = build_digest(batch, app=app, level=level, max_lines=self.timing.max_lines,
                                  remaining=remaining)
        except Exception as exc:  # the spool itself fails: report, retry later
            return self._failed(key, f"spool: {type(exc).__name__}: {exc}")
        try:
            sink.send(digest)
        except Exception as exc:  # SMTP/TLS/network/webhook errors alike
            error = f"{type(exc).__name__}: {exc}"
            if not sink.is_permanent(exc):
                return self._failed(key, error)  # retried with back-off
            if len(batch) > 1:
                return _Outcome(key, ok=False, split=max(1, len(batch) // 2), error=error)
            # One record refused for good: cut it to fit, and if even that is refused, park it.
            try:
                digest = build_digest([cut_record(batch[0], sink.cut_size(exc), error)], app=app,
                                      level=level, max_lines=self.timing.max_lines,
                                      remaining=remaining)
                sink.send(digest)
            except Exception as again:
                if not sink.is_permanent(again):
                    return self._failed(key, f"{type(again).__name__}: {again}")
                return self._park(key, batch, f"{type(again).__name__}: {again}")
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
        if remaining == 0:
            self._groups[key].limit = None  # what was refused went out or was parked
        return _Outcome(key, ok=True, oldest=oldest, sent_at=sent_at, backlog=remaining > 0,
                        delivered=len(batch))

    def _deliver_summary(self, sink_name: str, keys: list[GroupKey]) -> list[_Outcome]:
        """Fold the records of ``keys`` into one summary digest (the sink is over its cap)."""
        assert self._spool is not None
        spool = self._spool
        share = max(1, self.timing.max_records // len(keys))
        try:
            batches = {key: spool.take_batch(sink_name, key[1], key[2], share) for key in keys}
            batches = {key: batch for key, batch in batches.items() if batch}
            if not batches:
                return [_Outcome(key, ok=True, oldest=spool.oldest_pending(*key)) for key in keys]
            digest = summary_digest({(key[1], key[2]): batch for key, batch in batches.items()},
                                    max_lines=self.timing.max_lines)
            self.sinks[sink_name].send(digest)
        except Exception as exc:
            return [self._failed(key, f"summary: {type(exc).__name__}: {exc}") for key in keys]
        sent_at = time.time()
        outcomes = []
        for key in keys:
            batch = batches.get(key, [])
            try:
                if batch:
                    spool.mark_delivered(sink_name, key[1], key[2], [r.id for r in batch], sent_at,
                                         f"{len(batch)} {key[2]} record(s) from {key[1] or '?'} "
                                         f"in a summary to {sink_name}")
                oldest = spool.oldest_pending(*key)
            except Exception as exc:
                outcomes.append(self._failed(key, f"spool: {exc}"))
                continue
            outcomes.append(_Outcome(key, ok=True, oldest=oldest, sent_at=sent_at,
                                     backlog=oldest is not None, delivered=len(batch)))
        _log.info("delivered a summary of %d group(s) to %s: over max_digests = %d per "
                  "group_interval", len(batches), sink_name, self.timing.max_digests)
        return outcomes

    def _park(self, key: GroupKey, batch: list, error: str) -> _Outcome:
        """Move records the sink refuses whatever their size into the dead letters, and send
        a digest of their own that says so."""
        assert self._spool is not None
        sink_name, app, level = key
        try:
            self._spool.park(sink_name, app, level, [record.id for record in batch], error)
        except Exception as exc:
            return self._failed(key, f"spool: parking a refused record failed: {exc}")
        _log.error("%s refused %d record(s) of %s/%s for good, even cut: parked as dead letters "
                   "(log-relay status counts them): %s", sink_name, len(batch),
                   app or "unparsed input", level, error)
        self._notify_dead_letters(sink_name)
        return _Outcome(key, ok=True, oldest=self._spool.oldest_pending(sink_name, app, level),
                        backlog=True)

    def _notify_dead_letters(self, sink_name: str) -> None:
        """Send the digest about dead letters not reported yet (best effort: retried at each
        purge pass; a notice refused for good is not retried)."""
        assert self._spool is not None
        try:
            parked = self._spool.dead_letters_to_notify(sink_name, self.timing.max_lines)
            if not parked:
                return
            digest = dead_letter_digest(parked)
            try:
                self.sinks[sink_name].send(digest)
            except Exception as exc:
                if not self.sinks[sink_name].is_permanent(exc):
                    raise
                _log.error("the dead-letter notice itself was refused by %s: %s", sink_name, exc)
            self._spool.mark_dead_letters_notified(sink_name, [record.id for record, _ in parked])
        except Exception as exc:
            _log.error("dead-letter notice to %s not sent yet: %s", sink_name, exc)

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
        for sink_name in self.sinks:
            self._notify_dead_letters(sink_name)
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
