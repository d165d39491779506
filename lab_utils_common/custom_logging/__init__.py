"""The lab-utils 0.5.4 logging API, kept, and made fit for months of unattended running.

Names as in 0.5.4: :data:`SUCCESS`, :class:`CustomLogger`, :func:`getLogger`,
:class:`ColoredFormatter`, :class:`CustomTimedRotatingFileHandler`,
:class:`NonPickledSocketHandler`, :class:`TlsSMTPHandler`,
:func:`configure_logging`, :func:`string_to_bool`. New: :class:`SlackWebhookHandler`,
:class:`JsonLinesFormatter`, :class:`AlarmFormatter`, :func:`unconfigure_logging`,
:func:`set_handler_level`.

Example::

    from lab_utils_common.custom_logging import configure_logging, getLogger

    configure_logging("logging.ini", logger_name="pump")   # 0.5.x file, unchanged
    log = getLogger()
    log.success("bake-out finished")
    log.error("pressure %.1e mbar above limit", 3e-5)       # -> alarm receiver, mail...
"""

from lab_utils_common.custom_logging.configure import (
    configure_logging,
    set_handler_level,
    unconfigure_logging,
)
from lab_utils_common.custom_logging.file_handler import CustomTimedRotatingFileHandler
from lab_utils_common.custom_logging.formatters import (
    AlarmFormatter,
    ColoredFormatter,
    JsonLinesFormatter,
)
from lab_utils_common.custom_logging.levels import SUCCESS, CustomLogger, getLogger, string_to_bool
from lab_utils_common.custom_logging.slack_handler import SlackWebhookHandler
from lab_utils_common.custom_logging.smtp_handler import TlsSMTPHandler
from lab_utils_common.custom_logging.socket_handler import NonPickledSocketHandler

__all__ = [
    # the 0.5.4 API
    "SUCCESS",
    "CustomLogger",
    "getLogger",
    "ColoredFormatter",
    "CustomTimedRotatingFileHandler",
    "NonPickledSocketHandler",
    "TlsSMTPHandler",
    "configure_logging",
    "string_to_bool",
    # new
    "SlackWebhookHandler",
    "JsonLinesFormatter",
    "AlarmFormatter",
    "unconfigure_logging",
    "set_handler_level",
]
