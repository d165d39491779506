"""lab_utils_common: the shared library of the lab-utils stack.

The successor of lab-utils 0.5.4 keeps its public names, so an existing lab
application ports by changing ``from lab_utils import X`` into
``from lab_utils_common import X``. Modules:

- :mod:`lab_utils_common.config`: INI + environment + secret files.
- :mod:`lab_utils_common.custom_logging`: the 0.5.4 logging setup and handlers.
- :mod:`lab_utils_common.socket_comm`: daemon-like TCP ``Server`` and ``Client``.
- :mod:`lab_utils_common.database`: ``Database`` on psycopg2 (PostgreSQL/TimescaleDB).
"""

__version__ = "0.6.0"

__all__ = ["LabUtilsError", "__version__"]


class LabUtilsError(Exception):
    """Base of the exceptions this library adds (the 0.5.x ones, like ``MessageError``, keep their bases).

    ``except LabUtilsError`` catches e.g. ``PidLockError`` and ``TokenFileError``.
    """
