"""SQL for the time-series parts: time tables, 1-minute aggregates, retention and compression.

Each function returns a composed statement (names quoted, values as
parameters) for TimescaleDB 2.x, or for stock PostgreSQL when the extension is
off. The plain-PostgreSQL variants give the same queries the same answers:
``date_bin`` with TimescaleDB's default origin (Monday 2000-01-03) puts rows
in the same buckets as ``time_bucket``.
"""

from __future__ import annotations

import datetime
from typing import Optional, Sequence, Union

from psycopg2 import sql

__all__ = ["BUCKET_ORIGIN", "time_table", "bucket_expression", "aggregate_view",
           "aggregate_view_name", "aggregate_refresh_policy",
           "retention_policy", "remove_retention_policy", "compression_policy",
           "remove_compression_policy", "interval", "regclass"]

#: TimescaleDB's default ``time_bucket`` origin, reused for ``date_bin``.
BUCKET_ORIGIN = "2000-01-03 00:00:00+00"

Interval = Union[str, datetime.timedelta]


def interval(value: Interval, what: str = "interval") -> Interval:
    """Check an interval argument: a ``timedelta`` or text such as ``"30 days"``.

    The value is always sent as a parameter cast to ``interval``, so the
    server parses it; this only refuses wrong Python types and empty text.
    """
    if isinstance(value, datetime.timedelta):
        if value <= datetime.timedelta(0):
            raise ValueError(f"{what} must be positive, not {value!r}")
        return value
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise TypeError(f"{what} must be a datetime.timedelta or text such as '1 minute', "
                    f"not {type(value).__name__} {value!r}")


def regclass(name: str) -> sql.Composable:
    """A checked table or view name as a ``regclass`` literal (quoted, so case is kept)."""
    return sql.Literal(f'"{name}"')


def time_table(table: str, default_now: bool, timescaledb: bool) -> sql.Composed:
    """CREATE TABLE with a single ``time TIMESTAMPTZ NOT NULL`` column, made a hypertable.

    Sent as one multi-statement query: PostgreSQL runs it as one implicit
    transaction, so a failing ``create_hypertable`` leaves no plain table behind.
    """
    default = sql.SQL(" DEFAULT NOW()") if default_now else sql.SQL("")
    create = sql.SQL("CREATE TABLE {table} (time TIMESTAMPTZ NOT NULL{default});").format(
        table=sql.Identifier(table), default=default)
    if timescaledb:
        # the 2.x generic API (by_range) exists only from 2.13; the classic form works in every 2.x
        finish = sql.SQL("SELECT create_hypertable({name}::regclass, 'time'::name);").format(
            name=regclass(table))
    else:
        # hypertables get this index by default; plain tables need it for the same queries
        finish = sql.SQL("CREATE INDEX ON {table} (time DESC);").format(table=sql.Identifier(table))
    return sql.Composed([create, sql.SQL(" "), finish])


def bucket_expression(column: str, timescaledb: bool) -> sql.Composed:
    """``time_bucket(%s::interval, col)`` or its stock-PostgreSQL equivalent with ``date_bin``."""
    if timescaledb:
        return sql.SQL("time_bucket(%s::interval, {col})").format(col=sql.Identifier(column))
    return sql.SQL("date_bin(%s::interval, {col}, {origin}::timestamptz)").format(
        col=sql.Identifier(column), origin=sql.Literal(BUCKET_ORIGIN))


def aggregate_view_name(table: str) -> str:
    """The name of the 1-minute aggregate view of ``table`` (as in 0.5.4: ``<table>_1min``)."""
    return f"{table}_1min"


def aggregate_view(table: str, view: str, index: str, numeric_columns: Sequence[str],
                   edition: str) -> sql.Composed:
    """The 1-minute average of every numeric column: same name, columns and rows in every edition.

    ``edition`` ``"tsl"``: a continuous aggregate, created ``WITH NO DATA``
    (creating it never blocks on a long table) and ``materialized_only =
    false``, so queries combine the materialized buckets with the newest rows;
    ``"apache"``: a plain view on ``time_bucket``; ``"off"``: a plain view on
    ``date_bin`` with ``time_bucket``'s origin.
    """
    averages = sql.SQL(", ").join(
        sql.SQL("avg({col}) AS {alias}").format(col=sql.Identifier(col),
                                                 alias=sql.Identifier(f"{col}_avg"))
        for col in numeric_columns)
    if edition == "tsl":
        template = ("CREATE MATERIALIZED VIEW {view} WITH (timescaledb.continuous, "
                    "timescaledb.materialized_only = false) AS SELECT "
                    "time_bucket(INTERVAL '1 minute', {index}) AS {index}, {averages} "
                    "FROM {table} GROUP BY 1 WITH NO DATA")
    elif edition == "apache":
        template = ("CREATE VIEW {view} AS SELECT "
                    "time_bucket(INTERVAL '1 minute', {index}) AS {index}, "
                    "{averages} FROM {table} GROUP BY 1")
    else:
        template = ("CREATE VIEW {view} AS SELECT "
                    "date_bin(INTERVAL '1 minute', {index}, {origin}::timestamptz) AS {index}, "
                    "{averages} FROM {table} GROUP BY 1")
    return sql.SQL(template).format(view=sql.Identifier(view), index=sql.Identifier(index),
                                    averages=averages, table=sql.Identifier(table),
                                    origin=sql.Literal(BUCKET_ORIGIN))


def aggregate_refresh_policy(view: str) -> sql.Composed:
    """Refresh the continuous aggregate every minute, everything older than one minute.

    ``start_offset => NULL`` refreshes all invalidated history, so late or
    back-filled measurements are aggregated too (TimescaleDB tracks what changed).
    """
    return sql.SQL(
        "SELECT add_continuous_aggregate_policy({view}::regclass, start_offset => NULL, "
        "end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute')").format(
        view=regclass(view))


def retention_policy(table: str) -> sql.Composed:
    """Replace the retention policy of ``table``; parameter: ``drop_after`` interval."""
    name = regclass(table)
    return sql.SQL("SELECT remove_retention_policy({name}::regclass, if_exists => true); "
                   "SELECT add_retention_policy({name}::regclass, drop_after => %s::interval)"
                   ).format(name=name)


def remove_retention_policy(table: str) -> sql.Composed:
    """Remove the retention policy of ``table`` if it has one."""
    return sql.SQL("SELECT remove_retention_policy({name}::regclass, if_exists => true)").format(
        name=regclass(table))


def compression_policy(table: str, segment_by: Optional[Sequence[str]]) -> sql.Composed:
    """Enable compression and replace the policy; parameter: ``compress_after`` interval.

    ``segment_by`` (checked identifiers) go into TimescaleDB's option as a
    quoted, comma-separated literal: columns whose values repeat (a sensor id).
    """
    name = regclass(table)
    options = sql.SQL("timescaledb.compress")
    if segment_by:
        options = sql.SQL("timescaledb.compress, timescaledb.compress_segmentby = {cols}").format(
            cols=sql.Literal(", ".join(f'"{col}"' for col in segment_by)))
    return sql.SQL("ALTER TABLE {table} SET ({options}); "
                   "SELECT remove_compression_policy({name}::regclass, if_exists => true); "
                   "SELECT add_compression_policy({name}::regclass, compress_after => %s::interval)"
                   ).format(table=sql.Identifier(table), options=options, name=name)


def remove_compression_policy(table: str) -> sql.Composed:
    """Remove the compression policy of ``table`` if it has one (compressed chunks stay)."""
    return sql.SQL("SELECT remove_compression_policy({name}::regclass, if_exists => true)").format(
        name=regclass(table))
