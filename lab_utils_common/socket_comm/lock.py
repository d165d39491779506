"""The PID lock file that keeps a second instance of a daemon from starting.

Built on ``zc.lockfile`` (as 0.5.x): an ``flock`` on the file, released by the
kernel when the process dies, so a crashed daemon never leaves a stale lock.
"""

from __future__ import annotations

import os
from typing import Optional

from zc.lockfile import LockError, LockFile

from lab_utils_common import LabUtilsError

__all__ = ["PidLockError", "acquire_pid_lock", "read_lock_holder"]


class PidLockError(LabUtilsError, LockError):
    """Another process holds the PID lock file; a :class:`zc.lockfile.LockError` as in 0.5.x."""

    def __init__(self, path: str, holder_pid: Optional[int], holder_host: Optional[str]) -> None:
        holder = f"process {holder_pid}" if holder_pid is not None else "another process"
        if holder_host:
            holder += f" on host {holder_host}"
        super().__init__(
            f"PID lock file {path!r} is held by {holder}: another instance of this daemon is "
            f"running; stop it first or give this one another pid file (pid_file / --pid-file)")
        self.path = path
        self.holder_pid = holder_pid
        self.holder_host = holder_host


def read_lock_holder(path: str) -> tuple[Optional[int], Optional[str]]:
    """The ``(pid, hostname)`` written in a lock file by :class:`zc.lockfile.LockFile`, or Nones."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            content = handle.read().strip()
    except OSError:
        return None, None
    pid_text, _, host = content.partition(";")
    try:
        return int(pid_text), (host or None)
    except ValueError:
        return None, None


def acquire_pid_lock(path: str) -> LockFile:
    """Lock ``path`` and write ``pid;hostname`` into it, or raise :class:`PidLockError` naming the holder."""
    path = os.path.abspath(os.path.expanduser(path))
    try:
        return LockFile(path, content_template="{pid};{hostname}")
    except LockError:
        raise PidLockError(path, *read_lock_holder(path)) from None
