"""The logger lookup used inside socket_comm.

Goes through :func:`lab_utils_common.custom_logging.getLogger` so records carry
the application's logger name (the AlarmLogger format uses it as ``--app``);
falls back to :func:`logging.getLogger` while custom_logging is not importable.
"""

from __future__ import annotations

import logging
from typing import Optional

try:
    from lab_utils_common.custom_logging import getLogger as _get_logger
except ImportError:  # pragma: no cover - only while custom_logging is being written
    _get_logger = None


def get_logger(name: Optional[str] = None) -> logging.Logger:
    """The named logger (the application logger for ``None``), through custom_logging when present."""
    if _get_logger is not None:
        return _get_logger(name)
    return logging.getLogger(name)
