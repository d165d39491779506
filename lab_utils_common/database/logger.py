"""The logger of the database package: the application's logger, as in lab-utils 0.5.4.

0.5.4's ``Database`` logs through ``custom_logging.getLogger()``: the logger
named by ``configure_logging(logger_name=...)`` at the time of each call
(``root`` by default), so its records reach the application's handlers (the
alarm relay included). ``logger`` resolves that name at each call too.
"""

from __future__ import annotations

import logging
from typing import Any

from ..custom_logging import getLogger

__all__ = ["logger"]


class _ApplicationLogger:
    """Forwards every call to ``getLogger()``, the current application logger."""

    def __getattr__(self, name: str) -> Any:
        return getattr(getLogger(), name)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (logging's name)
        return getLogger().isEnabledFor(level)


logger: logging.Logger = _ApplicationLogger()  # type: ignore[assignment]
