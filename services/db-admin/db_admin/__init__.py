"""db-admin: a socket daemon in front of PostgreSQL/TimescaleDB (see docs/db-admin.md)."""

from .daemon import DbAdmin

__all__ = ["DbAdmin"]
