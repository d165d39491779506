"""PostgreSQL/TimescaleDB access: lab-utils 0.5.4's ``Database``, safe by construction.

Example::

    from lab_utils_common.database import Database, DataType, Constraint

    db = Database(config_file="database.ini")   # [Overall] host, port, database, user, passfile
    db.connect()
    db.create_timescale_db("beam")
    db.new_column("beam", "current", DataType.double, [Constraint.positive])
    db.new_entry("beam", ["current"], [1.5e-3])
"""

from .database import DATABASE_OPTIONS, Database
from .errors import (
                     ColumnCountError,
                     ConnectionLostError,
                     DatabaseUnavailableError,
                     MissingColumnError,
                     MissingTableError,
                     NotConnectedError,
                     TimescaleDBUnavailableError,
)
from .identifiers import InvalidIdentifierError
from .types import Constraint, DataType

__all__ = [
    "Database",
    "DataType",
    "Constraint",
    "DATABASE_OPTIONS",
    "InvalidIdentifierError",
    "NotConnectedError",
    "DatabaseUnavailableError",
    "ConnectionLostError",
    "MissingTableError",
    "MissingColumnError",
    "ColumnCountError",
    "TimescaleDBUnavailableError",
]
