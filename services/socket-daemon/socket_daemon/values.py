"""Named values that lab clients set and read (``set``/``get``), optionally kept in a file.

With a file, every change is written to a temporary file, flushed to disk and
renamed over the old one, so a crash or power cut leaves either the old or the
new set of values, never a half-written file.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Optional

__all__ = ["ValueStore", "ValueFileError"]


class ValueFileError(ValueError):
    """The values file exists but is not a JSON object of names to strings; names the file."""


class ValueStore:
    """A dict of name -> text value, saved to ``path`` (JSON) on every change when a path is given.

    Example::

        store = ValueStore("/var/lib/socket-daemon/values.json")
        store.set("setpoint", "3.5")
        store.get("setpoint")      # '3.5'
    """

    def __init__(self, path: Optional[str] = None) -> None:
        """Load the values from ``path`` if it exists; raises :class:`ValueFileError` if unreadable."""
        self.path = os.path.abspath(os.path.expanduser(path)) if path else None
        self._values: dict[str, str] = {}
        self._lock = threading.Lock()
        if self.path and os.path.exists(self.path):
            self._values = self._load(self.path)

    @staticmethod
    def _load(path: str) -> dict[str, str]:
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ValueFileError(f"values file {path!r} cannot be read: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueFileError(f"values file {path!r} is not a JSON object of names to text values")
        return data

    def _save(self) -> None:
        if not self.path:
            return
        temporary = f"{self.path}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(self._values, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def set(self, name: str, value: str) -> None:
        """Set ``name`` to ``value`` (and save)."""
        with self._lock:
            previous = self._values.get(name)
            self._values[name] = value
            try:
                self._save()
            except OSError:
                # Memory and file must agree: a value that could not be saved is not set.
                if previous is None:
                    del self._values[name]
                else:
                    self._values[name] = previous
                raise

    def get(self, name: str) -> str:
        """The value of ``name``; :class:`KeyError` naming it and the known names if unset."""
        with self._lock:
            try:
                return self._values[name]
            except KeyError:
                known = ", ".join(sorted(self._values)) or "none"
                raise KeyError(f"no value named {name!r} (set: {known})") from None

    def unset(self, name: str) -> None:
        """Remove ``name`` (and save); :class:`KeyError` if unset."""
        with self._lock:
            if name not in self._values:
                raise KeyError(f"no value named {name!r}")
            value = self._values.pop(name)
            try:
                self._save()
            except OSError:
                self._values[name] = value
                raise

    def items(self) -> list[tuple[str, str]]:
        """All ``(name, value)`` pairs, sorted by name."""
        with self._lock:
            return sorted(self._values.items())
