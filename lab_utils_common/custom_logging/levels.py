"""The SUCCESS level, the logger class that has ``.success()``, and ``getLogger``.

lab-utils 0.5.4 only made loggers created after ``configure_logging`` into
``CustomLogger`` objects, and ``getLogger()`` (the root logger) had no
``success`` method at all. Here :func:`getLogger` always returns a logger with
``.success()``, whenever it is called.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

__all__ = ["SUCCESS", "CustomLogger", "getLogger", "string_to_bool", "set_app_name", "app_name"]

#: Level between INFO (20) and WARNING (30) for successful events worth a notification.
SUCCESS = 25

logging.addLevelName(SUCCESS, "SUCCESS")
# 0.5.4 set this attribute too; applications may read logging.SUCCESS.
logging.SUCCESS = SUCCESS  # type: ignore[attr-defined]

_APP_NAME = "root"
_class_lock = threading.Lock()


def string_to_bool(s: str) -> bool:
    """0.5.4's lenient boolean: True for ``true, 1, t, y, yes, on`` (any case), False otherwise.

    Configuration files are read with the strict :func:`lab_utils_common.config.parse_bool`.
    """
    return str(s).lower() in ("true", "1", "t", "y", "yes", "on")


class CustomLogger(logging.Logger):
    """A :class:`logging.Logger` with :meth:`success` (level :data:`SUCCESS` = 25).

    Example::

        from lab_utils_common.custom_logging import getLogger
        getLogger("pump").success("bake-out finished after %d h", 48)
    """

    def __init__(self, name: str, level: int = logging.NOTSET) -> None:
        super().__init__(name, level)

    def success(self, message: Any, *args: Any, **kws: Any) -> None:
        """Log ``message % args`` with level :data:`SUCCESS`, like :meth:`~logging.Logger.info`."""
        if self.isEnabledFor(SUCCESS):
            # One frame more than info(): the record must name our caller, not this method.
            kws["stacklevel"] = kws.get("stacklevel", 1) + 1
            self._log(SUCCESS, message, args, **kws)


class _CustomRootLogger(logging.RootLogger, CustomLogger):
    """The root logger, given ``success()``."""


def set_app_name(name: str) -> None:
    """Set the name :func:`getLogger` uses when called without one (``configure_logging`` does)."""
    global _APP_NAME
    _APP_NAME = name


def app_name() -> str:
    """The default logger name: ``logger_name`` of the last ``configure_logging`` call, or 'root'."""
    return _APP_NAME


def getLogger(name: Optional[str] = None) -> CustomLogger:  # noqa: N802 (0.5.4 name)
    """Return the logger ``name`` (default: the app name) as a :class:`CustomLogger`.

    Loggers that already exist as plain :class:`logging.Logger` objects are
    given the ``success`` method; other logger classes are left alone.
    """
    name = _APP_NAME if name is None else name
    manager = logging.Logger.manager
    with _class_lock:
        # Create through the manager with our class without changing the process-wide
        # default (logging.setLoggerClass), so third-party loggers stay what they are.
        previous = manager.loggerClass
        manager.loggerClass = CustomLogger
        try:
            logger = logging.getLogger(name)
        finally:
            manager.loggerClass = previous
        # A logger created earlier by logging.getLogger: CustomLogger adds no state,
        # only a method, so switching the class is safe.
        if type(logger) is logging.Logger:
            logger.__class__ = CustomLogger
        elif type(logger) is logging.RootLogger:
            logger.__class__ = _CustomRootLogger
    return logger  # type: ignore[return-value]
