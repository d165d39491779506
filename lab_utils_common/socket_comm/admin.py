"""Admin commands: what may stop a daemon, destroy data or silence alarms, and who may send them.

``Server.admin_commands`` names them; they are refused unless the daemon has a
token (so only token holders reach any command) or was started with
``allow_unauthenticated_admin`` (``--allow-unauthenticated-admin``). A handler
whose danger depends on its arguments (a log level) asks ``Server.require_admin``.
"""

from __future__ import annotations

import logging
from typing import Optional

__all__ = ["admin_refusal", "alarm_level", "existing_logger", "ALARM_HANDLER_NAMES"]

#: The handlers of custom_logging.configure_logging that raise alarms (mail, Slack, log-relay).
ALARM_HANDLER_NAMES = ("alarm", "slack", "mail")


def admin_refusal(what: str) -> str:
    """The error text for an admin action refused without a token."""
    return (f"{what} is an admin command, refused: the daemon has no token (token_file); give it one, "
            f"or start it with --allow-unauthenticated-admin (allow_unauthenticated_admin)")


def alarm_level() -> int:
    """The lowest level of the active alarm handlers (WARNING, the AlarmLogger default, when none)."""
    try:
        from lab_utils_common.custom_logging import configure
        handlers = list(getattr(configure, "_active", {}).get("handlers", []))
    except ImportError:  # pragma: no cover - custom_logging is part of the package
        handlers = []
    levels = [handler.level for handler in handlers if handler.name in ALARM_HANDLER_NAMES]
    return min(levels) if levels else logging.WARNING


def existing_logger(name: Optional[str]) -> Optional[logging.Logger]:
    """The logger called ``name`` if the process already has it (root for ``""``/``None``/``root``), else None.

    ``logging.getLogger`` creates and keeps a logger for every new name: a client sending
    random names would grow the daemon's memory without bound.
    """
    if not name or name == "root":
        return logging.getLogger()
    existing = logging.Logger.manager.loggerDict.get(name)
    return existing if isinstance(existing, logging.Logger) else None
