"""TimescaleDB room of ``Database``: time tables, aggregates, retention, compression, status.

Edition-aware, three modes (the table in docs/db-admin.md):

- TSL (``timescaledb.license = timescale``): hypertables, a continuous
  aggregate refreshed by a policy, retention and compression policies run by
  TimescaleDB's job scheduler;
- Apache (``apache``, e.g. Debian's package): hypertables, the aggregate as a
  plain ``time_bucket`` view of the same name and columns, retention by
  :meth:`run_retention` (``drop_chunks``) on a schedule the caller owns
  (db-admin runs it), compression refused naming the edition;
- plain PostgreSQL (``timescaledb = off``): tables indexed on time, the
  aggregate as a ``date_bin`` view; no retention or compression.
"""

from __future__ import annotations

import datetime
import time
from typing import Any, Optional, Sequence, Union

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from . import timescale
from .errors import MissingColumnError, TimescaleDBUnavailableError
from .identifiers import check_identifier, check_identifiers
from .logger import logger
from .types import is_numeric_type

__all__ = ["TimescaleRoom", "AGGREGATE_VIEW_MARK", "RETENTION_TABLE"]

#: Comment put on the aggregate views this library creates: only those are ever dropped or replaced.
AGGREGATE_VIEW_MARK = "lab-utils aggregate view of table "
#: The Apache edition's retention schedule, in the database itself (one row per table).
RETENTION_TABLE = "labutils_retention"

Interval = Union[str, datetime.timedelta]


class TimescaleRoom:
    """TimescaleDB features of a :class:`~lab_utils_common.database.Database` (a mixin of it)."""

    # ------------------------------------------------------------------ edition

    @property
    def timescaledb_edition(self) -> str:
        """``"tsl"``, ``"apache"``, ``"off"`` (configuration) or ``"not installed"`` (this database)."""
        if not self.timescaledb:
            return "off"
        if not self.timescaledb_version:
            return "not installed"
        return {"timescale": "tsl", "apache": "apache"}.get(self.timescaledb_license or "",
                                                             self.timescaledb_license or "unknown")

    def _edition_text(self) -> str:
        return (f"this server runs TimescaleDB {self.timescaledb_version}, "
                f"{self.timescaledb_license} edition (timescaledb.license = {self.timescaledb_license})")

    def _require_timescaledb(self, feature: str) -> None:
        """Make sure the extension is installed in this database, or raise a clear error."""
        if not self.timescaledb:
            raise TimescaleDBUnavailableError(
                f"{feature} needs TimescaleDB, but the configuration says timescaledb = off")
        if self.timescaledb_version:
            return

        def install(cur: Any) -> Optional[tuple]:
            cur.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'")
            if cur.fetchone() is None:
                return None
            cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            cur.execute("SELECT extversion, current_setting('timescaledb.license', true) "
                        "FROM pg_extension WHERE extname = 'timescaledb'")
            return cur.fetchone()

        found = self._run("installing the timescaledb extension", install, retry=True)
        if found is None:
            raise TimescaleDBUnavailableError(
                f"{feature} needs TimescaleDB, but the server {self.host}:{self.port} does not have "
                f"the timescaledb extension; install it, or set timescaledb = off in [Overall] "
                f"(LABUTILS_DATABASE_TIMESCALEDB=off) to use plain PostgreSQL tables")
        self.timescaledb_version, self.timescaledb_license = found
        logger.info("Installed the timescaledb extension %s (%s license) in database <%s>",
                    self.timescaledb_version, self.timescaledb_license, self.database)

    def _require_tsl(self, feature: str) -> None:
        self._require_timescaledb(feature)
        if self.timescaledb_license != "timescale":
            raise TimescaleDBUnavailableError(
                f"{feature} needs the TSL (Timescale-licensed) edition of TimescaleDB; "
                f"{self._edition_text()}")

    # ------------------------------------------------------------------ time tables

    def create_timescale_db(self, table_name: str, default_now: bool = True, *,
                            if_not_exists: bool = False) -> bool:
        """Create table ``table_name`` with one column ``time TIMESTAMPTZ NOT NULL``, as a hypertable.

        ``default_now`` makes ``time`` default to ``NOW()``. With
        ``timescaledb = off`` it is a plain table indexed on ``time``.
        Returns False if the table existed and ``if_not_exists`` is set.
        """
        table = check_identifier(table_name, "table name")
        if not isinstance(default_now, bool):
            raise TypeError(f"default_now must be a bool, not {type(default_now).__name__} {default_now!r}")
        if self.timescaledb:
            self._require_timescaledb(f"create_timescale_db({table!r})")
        if if_not_exists and self.check_table(table):
            return False
        query = timescale.time_table(table, default_now, self.timescaledb)
        kind = "TimescaleDB" if self.timescaledb else "time"
        logger.info("Creating %s table <%s> %s", kind, table,
                    "with default <time> NOW()" if default_now else "without default <time>")
        self._run(f"create_timescale_db({table!r})", lambda cur: cur.execute(query), retry=False)
        self._forget_queries(table)
        logger.info("%s table <%s> created", kind, table)
        return True

    # ------------------------------------------------------------------ aggregate view

    def _existing_view(self, cur: Any, view: str) -> Optional[dict[str, Any]]:
        """Facts on the relation named ``view``: kind, our mark, continuous or not, dependents."""
        cur.execute("SELECT c.oid, c.relkind, obj_description(c.oid, 'pg_class') FROM pg_class c "
                    "WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace", (view,))
        row = cur.fetchone()
        if row is None:
            return None
        oid, relkind, comment = row
        continuous = False
        if self.timescaledb_version:
            cur.execute("SELECT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates "
                        "WHERE view_name = %s AND view_schema = current_schema())", (view,))
            continuous = bool(cur.fetchone()[0])
        # views (and materialized views) whose query reads this one
        cur.execute("SELECT DISTINCT n.nspname || '.' || v.relname FROM pg_depend d "
                    "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
                    "JOIN pg_namespace n ON n.oid = v.relnamespace "
                    "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s AND v.oid <> %s "
                    "ORDER BY 1", (oid, oid))
        dependents = [name for (name,) in cur.fetchall()]
        return {"relkind": relkind, "ours": (comment or "").startswith(AGGREGATE_VIEW_MARK),
                "continuous": continuous, "dependents": dependents}

    def create_aggregate_view(self, table_name: str, index_name: str = "time",
                              recreate: bool = True) -> str:
        """Create ``<table>_1min``: the 1-minute average of every numeric column. Returns its name.

        TSL edition: a continuous aggregate refreshed every minute by a policy;
        Apache edition: a plain ``time_bucket`` view; ``timescaledb = off``: a
        plain ``date_bin`` view. All three have the same name, columns and rows.
        ``recreate`` replaces an existing view of that name, but only one this
        library created, and only when no other view depends on it (the error
        names them); nothing else is ever dropped.
        """
        table = check_identifier(table_name, "table name")
        index = check_identifier(index_name, "index column name")
        view = check_identifier(timescale.aggregate_view_name(table), "aggregate view name")
        edition = "off"
        if self.timescaledb:
            self._require_timescaledb(f"create_aggregate_view({table!r})")
            edition = self.timescaledb_edition
        continuous = edition == "tsl"
        self._require_table(table, "create an aggregate view")
        types = self.list_columns(table)
        if index not in types:
            raise MissingColumnError(f"index column {index!r} not found in table {table!r}")
        numeric = [c for c, t in types.items() if c != index and is_numeric_type(t)]
        if not numeric:
            raise psycopg2.IntegrityError(f"cannot create an aggregate view of table {table!r}: "
                                          f"no numeric column in {types}")
        mark = sql.SQL("COMMENT ON VIEW {view} IS {text}").format(
            view=sql.Identifier(view), text=sql.Literal(AGGREGATE_VIEW_MARK + table))

        def drop_if_allowed(cur: Any) -> None:
            found = self._existing_view(cur, view)
            if found is None:
                return
            if not recreate:
                raise psycopg2.errors.DuplicateTable(
                    f"aggregate view {view!r} already exists (recreate=False / --no-recreate)")
            if not found["ours"]:
                raise psycopg2.errors.DuplicateTable(
                    f"{view!r} exists and was not created by lab-utils (its comment does not start "
                    f"with {AGGREGATE_VIEW_MARK!r}): it is not dropped; rename or drop it yourself")
            if found["dependents"]:
                raise psycopg2.errors.DependentObjectsStillExist(
                    f"aggregate view {view!r} is not replaced: other views depend on it: "
                    f"{', '.join(found['dependents'])}; drop or change them first")
            # no CASCADE: should anything else depend on it after all, the DROP fails
            cur.execute(sql.SQL("DROP {kind} {view}").format(
                kind=sql.SQL("MATERIALIZED VIEW" if found["continuous"] else "VIEW"),
                view=sql.Identifier(view)))

        def create(cur: Any) -> None:
            cur.execute(timescale.aggregate_view(table, view, index, numeric, edition))
            cur.execute(mark)
            if continuous:
                cur.execute(timescale.aggregate_refresh_policy(view))

        def replace(cur: Any) -> None:
            drop_if_allowed(cur)
            create(cur)

        logger.info("Creating aggregate view <%s> of table <%s>", view, table)
        what = f"create_aggregate_view({table!r})"
        if continuous:
            # A continuous aggregate cannot be created inside a transaction block.
            self._run(what, drop_if_allowed, retry=False)
            self._run(what, create, retry=False)
        else:
            self._run_in_transaction(what, replace)
        return view

    # ------------------------------------------------------------------ retention

    def _require_hypertable(self, table: str, feature: str) -> None:
        def action(cur: Any) -> bool:
            cur.execute("SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables "
                        "WHERE hypertable_name = %s AND hypertable_schema = current_schema())", (table,))
            return bool(cur.fetchone()[0])

        if not self._run(f"{feature}: hypertable check", action, retry=True):
            raise TimescaleDBUnavailableError(f"cannot {feature}: {table!r} is not a hypertable "
                                              f"(create it with create_timescale_db)")

    def _ensure_retention_table(self, cur: Any) -> None:
        cur.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {t} (table_name text PRIMARY KEY, drop_after interval NOT NULL, "
            "last_run timestamptz, last_dropped integer, last_error text)").format(
            t=sql.Identifier(RETENTION_TABLE)))

    def set_retention_policy(self, table_name: str, drop_after: Interval) -> None:
        """Drop data older than ``drop_after`` (``"90 days"``), replacing any previous policy.

        TSL: a TimescaleDB retention policy. Apache: a row of the
        ``labutils_retention`` schedule, applied by :meth:`run_retention`.
        """
        table = check_identifier(table_name, "table name")
        age = timescale.interval(drop_after, "drop_after")
        self._require_timescaledb(f"set_retention_policy({table!r})")
        self._require_table(table, "set a retention policy")
        if self.timescaledb_edition == "tsl":
            query = timescale.retention_policy(table)
            self._run(f"set_retention_policy({table!r})", lambda cur: cur.execute(query, (age,)),
                      retry=True)
            return
        self._require_hypertable(table, "set a retention policy")

        def upsert(cur: Any) -> None:
            self._ensure_retention_table(cur)
            cur.execute(sql.SQL(
                "INSERT INTO {t} (table_name, drop_after) VALUES (%s, %s::interval) "
                "ON CONFLICT (table_name) DO UPDATE SET drop_after = EXCLUDED.drop_after").format(
                t=sql.Identifier(RETENTION_TABLE)), (table, age))

        self._run(f"set_retention_policy({table!r})", upsert, retry=True)
        logger.info("Retention of <%s>: data older than %s is dropped by lab-utils (Apache edition)",
                    table, age)

    def remove_retention_policy(self, table_name: str) -> None:
        """Keep all data of ``table_name`` (no error if it had no policy)."""
        table = check_identifier(table_name, "table name")
        self._require_timescaledb(f"remove_retention_policy({table!r})")
        if self.timescaledb_edition == "tsl":
            query = timescale.remove_retention_policy(table)
            self._run(f"remove_retention_policy({table!r})", lambda cur: cur.execute(query), retry=True)
            return

        def delete(cur: Any) -> None:
            self._ensure_retention_table(cur)
            cur.execute(sql.SQL("DELETE FROM {t} WHERE table_name = %s").format(
                t=sql.Identifier(RETENTION_TABLE)), (table,))

        self._run(f"remove_retention_policy({table!r})", delete, retry=True)

    def retention_schedule(self) -> list[dict[str, Any]]:
        """The Apache edition's retention schedule: table, drop_after, last run, chunks dropped, error."""
        if self.timescaledb_edition != "apache":
            return []

        def action(cur: Any) -> list[dict[str, Any]]:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (RETENTION_TABLE,))
            if not cur.fetchone()[0]:
                return []
            cur.execute(sql.SQL("SELECT table_name, drop_after::text, last_run, last_dropped, last_error "
                                "FROM {t} ORDER BY table_name").format(t=sql.Identifier(RETENTION_TABLE)))
            keys = ("table", "drop_after", "last_run", "last_dropped", "last_error")
            return [dict(zip(keys, row)) for row in cur.fetchall()]

        return self._run("retention_schedule", action, retry=True)

    def run_retention(self) -> list[dict[str, Any]]:
        """Apache edition: drop the chunks older than each table's ``drop_after`` now; log each.

        Returns one entry per scheduled table (``table``, ``dropped``,
        ``error``); a table that fails is logged at ERROR and recorded, the
        others still run. Nothing to do (``[]``) in the other modes, where
        TimescaleDB's own policies (TSL) or nothing (plain) apply.
        """
        results = []
        for entry in self.retention_schedule():
            table, age = entry["table"], entry["drop_after"]
            dropped: Optional[int] = None
            error: Optional[str] = None
            try:
                def drop(cur: Any) -> int:
                    cur.execute("SELECT drop_chunks(%s::regclass, older_than => now() - %s::interval)",
                                (f'"{table}"', age))
                    return len(cur.fetchall())

                dropped = self._run(f"drop_chunks({table!r})", drop, retry=True)
                logger.info("Retention: dropped %d chunk(s) of <%s> older than %s", dropped, table, age)
            except psycopg2.Error as exc:
                error = " ".join(str(exc).split())
                logger.error("Retention of <%s> failed: %s: %s", table, type(exc).__name__, error)

            def record(cur: Any) -> None:
                cur.execute(sql.SQL("UPDATE {t} SET last_run = now(), last_dropped = %s, last_error = %s "
                                    "WHERE table_name = %s").format(t=sql.Identifier(RETENTION_TABLE)),
                            (dropped, error, table))

            try:
                self._run("recording a retention run", record, retry=True)
            except psycopg2.Error as exc:  # the run itself is logged; the record is best effort
                logger.warning("Could not record the retention run of <%s>: %s", table, exc)
            results.append({"table": table, "dropped": dropped, "error": error,
                            "at": time.time()})
        return results

    # ------------------------------------------------------------------ compression

    def set_compression_policy(self, table_name: str, compress_after: Interval,
                               segment_by: Optional[Sequence[str]] = None) -> None:
        """Compress chunks older than ``compress_after``, replacing any previous policy (TSL only).

        ``segment_by``: columns whose values repeat (a sensor id) to compress by.
        Raises :class:`TimescaleDBUnavailableError` naming the edition on the Apache edition.
        """
        table = check_identifier(table_name, "table name")
        age = timescale.interval(compress_after, "compress_after")
        segments = check_identifiers(segment_by, "segment_by column name") if segment_by else None
        self._require_tsl(f"compression of {table!r}")
        self._require_table(table, "set a compression policy")
        query = timescale.compression_policy(table, segments)
        self._run(f"set_compression_policy({table!r})", lambda cur: cur.execute(query, (age,)),
                  retry=True)

    def remove_compression_policy(self, table_name: str) -> None:
        """Stop compressing new chunks of ``table_name`` (compressed chunks stay compressed; TSL only)."""
        table = check_identifier(table_name, "table name")
        self._require_tsl(f"compression of {table!r}")
        query = timescale.remove_compression_policy(table)
        self._run(f"remove_compression_policy({table!r})", lambda cur: cur.execute(query), retry=True)

    # ------------------------------------------------------------------ jobs and status

    def policies(self, table_name: str) -> dict[str, dict]:
        """The jobs of a table and its aggregate view, as ``{proc_name: config}``.

        On the Apache edition, db-admin's own retention shows as
        ``policy_retention`` with ``{"drop_after": ..., "run_by": "lab-utils"}``.
        """
        table = check_identifier(table_name, "table name")
        self._require_timescaledb(f"policies({table!r})")

        def action(cur: Any) -> dict[str, dict]:
            cur.execute("SELECT proc_name, config FROM timescaledb_information.jobs "
                        "WHERE hypertable_name IN (%s, %s) ORDER BY job_id",
                        (table, timescale.aggregate_view_name(table)))
            return {name: config for name, config in cur.fetchall()}

        jobs = self._run(f"policies({table!r})", action, retry=True)
        for entry in self.retention_schedule():
            if entry["table"] == table:
                jobs["policy_retention"] = {"drop_after": entry["drop_after"], "run_by": "lab-utils"}
        return jobs

    def failed_jobs(self) -> list[dict[str, Any]]:
        """TimescaleDB jobs that failed since their last success, with their latest error (``job_errors``)."""
        if not self.timescaledb_version:
            return []

        def action(cur: Any) -> list[dict[str, Any]]:
            cur.execute("SELECT DISTINCT ON (e.job_id) e.job_id, e.proc_name, e.finish_time, "
                        "e.sqlerrcode, e.err_message FROM timescaledb_information.job_errors e "
                        "LEFT JOIN timescaledb_information.job_stats s ON s.job_id = e.job_id "
                        # last_run_status stays NULL for a job refused before it started
                        "WHERE s.last_successful_finish IS NULL "
                        "OR e.finish_time > s.last_successful_finish "
                        "ORDER BY e.job_id, e.finish_time DESC")
            keys = ("job_id", "proc_name", "finish_time", "sqlerrcode", "err_message")
            return [dict(zip(keys, row)) for row in cur.fetchall()]

        return self._run("failed_jobs", action, retry=True)

    def status(self) -> dict[str, Any]:
        """Health facts: server, connected, versions, edition, failed jobs, retention (no secrets)."""
        info: dict[str, Any] = {"server": self.server, "timescaledb_mode": bool(self.timescaledb)}
        try:
            def action(cur: Any) -> tuple:
                cur.execute("SELECT current_setting('server_version'), (SELECT extversion FROM "
                            "pg_extension WHERE extname = 'timescaledb'), "
                            "current_setting('timescaledb.license', true)")
                return cur.fetchone()

            version, ts_version, license_ = self._run("status", action, retry=True)
            self.timescaledb_version, self.timescaledb_license = ts_version, license_
            info.update(connected=True, server_version=version, timescaledb_version=ts_version,
                        timescaledb_license=license_, timescaledb_edition=self.timescaledb_edition)
            if self.timescaledb and ts_version:
                info["failed_jobs"] = self.failed_jobs()
                info["retention"] = self.retention_schedule()
        except psycopg2.Error as exc:
            info.update(connected=False, error=str(exc).strip())
        return info
