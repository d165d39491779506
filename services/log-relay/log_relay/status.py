"""``log-relay status``: read the spool (WAL allows it while the relay runs) and judge health.

Healthy means: the relay is running (its heartbeat is recent and it did not
stop) and no record has waited for delivery longer than ``unhealthy_after``
seconds (a mail server down for half an hour makes the container unhealthy,
which is what someone should look at). The exit status is the healthcheck.

Example::

    report = read_status("/var/lib/log-relay/spool.sqlite3")
    report.healthy, report.problems, report.details["queue_depth"]
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Optional

from log_relay.spool import Spool

__all__ = ["StatusReport", "read_status"]

#: The heartbeat may be this many intervals old before the relay counts as not running.
_HEARTBEAT_SLACK = 3

#: Less free space than this on the spool's file system is a problem: SQLite needs room to
#: grow the file (and its WAL) for the next batch; a full disk also stops the heartbeat.
MIN_FREE_BYTES = 1 << 20


@dataclass
class StatusReport:
    """What the status command prints; ``healthy`` is False when ``problems`` is not empty."""

    details: dict
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_text(self) -> str:
        lines = [f"{'healthy' if self.healthy else 'UNHEALTHY'}"]
        lines += [f"  problem: {problem}" for problem in self.problems]
        for key, value in self.details.items():
            lines.append(f"  {key}: {value}")
        return "\n".join(lines)


def _disk_problems(path: str, min_free_bytes: int, details: dict) -> list[str]:
    """What keeps the relay from writing its spool, seen from here: a read-only or full file
    system, a file this user may not write. The relay itself cannot record these in the spool."""
    directory = os.path.dirname(path)
    try:
        fs = os.statvfs(directory)
    except OSError as exc:
        return [f"cannot inspect the spool's file system {directory!r}: {exc.strerror or exc}"]
    free = fs.f_bavail * fs.f_frsize
    details["spool_free_bytes"] = free
    problems = []
    if fs.f_flag & os.ST_RDONLY:
        problems.append(f"the spool's file system ({directory!r}) is mounted read-only: "
                        "records cannot be committed")
    elif free < min_free_bytes:
        problems.append(f"the spool's file system ({directory!r}) is full: {free} bytes free "
                        f"(less than {min_free_bytes}); records cannot be committed until space "
                        "is freed")
    for name in (path, path + "-wal"):
        if os.path.exists(name) and not os.access(name, os.W_OK):
            problems.append(f"the spool file {name!r} is not writable by uid {os.getuid()}")
    return problems


def read_status(spool_path: str, *, unhealthy_after: Optional[float] = None,
                now: Optional[float] = None, min_free_bytes: int = MIN_FREE_BYTES) -> StatusReport:
    """Read the spool's status; raise :class:`~log_relay.spool.SpoolError` if it cannot be read.

    ``unhealthy_after`` overrides the value the running relay wrote into the spool;
    ``min_free_bytes`` is the free space below which the spool's disk counts as full.
    """
    now = time.time() if now is None else now
    spool = Spool.open(spool_path, readonly=True, timeout=5.0)
    try:
        status = spool.status()
    finally:
        spool.close()
    details = status.as_dict(now)
    meta = status.meta
    problems: list[str] = _disk_problems(spool.path, min_free_bytes, details)
    interval = float(meta.get("heartbeat_interval", "5"))
    limit = unhealthy_after if unhealthy_after is not None else float(meta.get("unhealthy_after", "1800"))
    heartbeat = meta.get("heartbeat_epoch")
    if meta.get("stopped_at"):
        problems.append(f"the relay stopped at {meta['stopped_at']}")
    elif heartbeat is None:
        problems.append("the relay has not written a heartbeat yet (not started?)")
    else:
        age = now - float(heartbeat)
        details["heartbeat_age_s"] = round(age, 3)
        if age > _HEARTBEAT_SLACK * interval + 5:
            problems.append(f"no heartbeat for {age:.0f} s (expected every {interval:g} s): the "
                            "relay is not running, is stuck, or cannot write its spool (see its "
                            "log)")
    oldest_age = details.get("oldest_undelivered_age_s")
    if oldest_age is not None and oldest_age > limit:
        problems.append(f"the oldest undelivered record has waited {oldest_age:.0f} s "
                        f"(limit unhealthy_after = {limit:g} s); last error: "
                        f"{meta.get('last_error', 'none recorded')}")
    if meta.get("spool_write_error"):
        problems.append(f"the spool cannot be written: {meta['spool_write_error']}")
    return StatusReport(details=details, problems=problems)
