"""Errors raised by :mod:`lab_utils_common.database`.

lab-utils 0.5.4 documents ``psycopg2.Error`` as what ``Database`` raises, so
every database-side error here is a subclass of the matching psycopg2 class
(callers catching ``psycopg2.Error`` keep working). Bad arguments detected
before any SQL is sent are ``ValueError``/``TypeError`` instead
(:class:`~lab_utils_common.database.identifiers.InvalidIdentifierError`...).
"""

from __future__ import annotations

import psycopg2

__all__ = ["NotConnectedError", "ConnectionLostError", "DatabaseUnavailableError",
           "MissingTableError", "MissingColumnError", "ColumnCountError",
           "TimescaleDBUnavailableError"]


class NotConnectedError(psycopg2.DatabaseError):
    """An operation was called before :meth:`Database.connect` or after :meth:`Database.close`."""


class DatabaseUnavailableError(psycopg2.OperationalError):
    """The server could not be reached, even after retrying for ``reconnect_timeout`` seconds."""


class ConnectionLostError(psycopg2.OperationalError):
    """The connection broke while a statement was in flight.

    The statement may or may not have been committed: the caller decides
    whether to repeat it. The next call reconnects.
    """


class MissingTableError(psycopg2.IntegrityError):
    """The table does not exist (0.5.4 raised ``IntegrityError`` too)."""


class MissingColumnError(psycopg2.IntegrityError):
    """A column does not exist in the table (0.5.4 raised ``IntegrityError`` too)."""


class ColumnCountError(psycopg2.DataError):
    """A row has not as many values as there are columns (0.5.4 raised ``DataError`` too)."""


class TimescaleDBUnavailableError(psycopg2.NotSupportedError):
    """A TimescaleDB feature was asked of a server without the extension."""
