"""The logger of the database package (the shared custom_logging one when available)."""

from __future__ import annotations

import logging

try:  # room-wide convention: logs go through lab_utils_common.custom_logging
    from ..custom_logging import getLogger as _get_logger
except ImportError:  # custom_logging not importable (yet): the standard library logger
    _get_logger = logging.getLogger

logger = _get_logger("lab_utils_common.database")
