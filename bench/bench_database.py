"""Insert throughput: lab-utils 0.5.4's new_entry vs this package, and raw COPY as the limit.

Run:  .venv/bin/python bench/bench_database.py [--rows 300000] [--single-rows 3000]

Starts a throwaway PostgreSQL 15 (the test suite's PostgresServer; TimescaleDB
preloaded and tables made hypertables when the extension is installed), then
measures, in one run, rows/s for:

- 0.5.4 new_entry: the real lab_utils 0.5.4 Database, one INSERT + COMMIT per row;
- new_entry: this package, one row per call, committed on return;
- new_entries: this package, one COPY of Python rows;
- insert_many over TCP: a CSV body through a db-admin daemon (body built, sent, stored);
- raw COPY: psycopg2 copy_expert of the same rows already formatted as COPY text
  (formatting not timed: the limit, the server's own speed).

Targets: new_entries >= 50 % of raw COPY; insert_many >= 100,000 rows/s;
new_entry no slower than 0.5.4's. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import io
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import psycopg2

from lab_utils_common.database import Database, DataType
from lab_utils_common.socket_comm import Client


def _load_pg_cluster():
    # The suite's throwaway cluster (tests/fixtures/pg_cluster.py), loaded by path: putting tests/ on
    # sys.path would let its tests/lab_utils_common folder shadow the installed package.
    path = Path(__file__).resolve().parent.parent / "tests" / "pg_cluster.py"
    spec = importlib.util.spec_from_file_location("labutils_pg_cluster", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_pg_cluster = _load_pg_cluster()
PostgresServer, start_cluster = _pg_cluster.PostgresServer, _pg_cluster.start_cluster

COLUMNS = ["time", "current", "voltage", "counts"]


def make_rows(count: int) -> list[tuple]:
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    step = datetime.timedelta(milliseconds=10)
    return [(start + i * step, 1e-3 * (i % 1000), 230.0 + (i % 7) * 0.125, i) for i in range(count)]


def start_server() -> PostgresServer:
    return start_cluster(Path(tempfile.mkdtemp(prefix="bench-database-")))


def create_table(server: PostgresServer, dbname: str, table: str) -> None:
    db = Database(host=server.host, port=server.port, database=dbname, user=server.user,
                  password=server.password, timescaledb=server.has_timescaledb)
    db.connect()
    db.create_timescale_db(table)
    db.new_column(table, "current", DataType.double)
    db.new_column(table, "voltage", DataType.double)
    db.new_column(table, "counts", DataType.long)
    db.close()


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows for the batch methods")
    parser.add_argument("--single-rows", type=int, default=3_000, help="rows for one-per-call methods")
    args = parser.parse_args()

    server = start_server()
    try:
        dbname = "bench"
        server.psql(f"CREATE DATABASE {dbname}")
        rows = make_rows(args.rows)
        single = rows[:args.single_rows]
        tables = ["old_entry", "new_entry", "new_entries", "insert_many", "raw_copy"]
        for table in tables:
            create_table(server, dbname, table)
        results: dict[str, tuple[int, float]] = {}

        # lab-utils 0.5.4, the real package (one INSERT and one COMMIT per row)
        import lab_utils.database as old
        old_db = old.Database(host=server.host, port=server.port, database=dbname, user=server.user,
                              passfile=str(server.passfile))
        old_db.connect()
        results["0.5.4 new_entry"] = (len(single), timed(
            lambda: [old_db.new_entry("old_entry", COLUMNS, list(row)) for row in single]))
        old_db.close()

        db = Database(host=server.host, port=server.port, database=dbname, user=server.user,
                      password=server.password, timescaledb=server.has_timescaledb)
        db.connect()
        results["new_entry"] = (len(single), timed(
            lambda: [db.new_entry("new_entry", COLUMNS, row) for row in single]))
        results["new_entries (COPY)"] = (len(rows), timed(
            lambda: db.new_entries("new_entries", COLUMNS, rows)))

        # db-admin over TCP: the client builds a CSV body from the rows and sends it
        from db_admin import DbAdmin
        admin = DbAdmin(host="127.0.0.1", port=0, pid_file_name=str(server.root / "db-admin.pid"),
                        database=Database(host=server.host, port=server.port, database=dbname,
                                          user=server.user, password=server.password,
                                          timescaledb=server.has_timescaledb))
        admin.connect_database(wait=10)
        thread = threading.Thread(target=admin.start_daemon, daemon=True)
        thread.start()
        admin.ready.wait(15)
        host, port = admin.server_address
        client = Client(host=host, port=port, timeout=300)

        def insert_many() -> None:
            body = "\n".join(f"{t.isoformat()},{c!r},{v!r},{n}" for t, c, v, n in rows)
            reply = client.send_message("insert_many insert_many\n" + ",".join(COLUMNS) + "\n" + body)
            if reply != f"{len(rows)} rows inserted into insert_many":
                raise RuntimeError(f"db-admin replied {reply[:300]!r}")

        results["insert_many over TCP"] = (len(rows), timed(insert_many))
        admin.shutdown()
        thread.join(30)

        raw = psycopg2.connect(server.dsn(dbname))

        # The limit: the COPY text is built before the clock starts, so only the transfer and
        # the server's work are timed (psycopg2 sends it as fast as the server takes it).
        text = "".join("\t".join(map(str, row)) + "\n" for row in rows)

        def raw_copy() -> None:
            with raw, raw.cursor() as cur:
                cur.copy_expert("COPY raw_copy (time, current, voltage, counts) FROM STDIN",
                                io.StringIO(text))

        results["raw psycopg2 COPY"] = (len(rows), timed(raw_copy))
        raw.close()
        counts = {t: server.psql(f"SELECT count(*) FROM {t}", dbname) for t in tables}
        db.close()
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(server.root, ignore_errors=True)

    rate = {name: count / seconds for name, (count, seconds) in results.items()}
    kind = "TimescaleDB hypertables" if server.has_timescaledb else "plain tables"
    print(f"PostgreSQL 15 on 127.0.0.1, {kind}; rows of (timestamptz, double, double, bigint)")
    print(f"{'method':<24}{'rows':>10}{'seconds':>10}{'rows/s':>12}")
    for name, (count, seconds) in results.items():
        print(f"{name:<24}{count:>10}{seconds:>10.3f}{rate[name]:>12,.0f}")
    print(f"stored rows per table: {counts}")
    checks = [
        ("new_entries >= 50 % of raw COPY", rate["new_entries (COPY)"] >= 0.5 * rate["raw psycopg2 COPY"],
         f"{rate['new_entries (COPY)'] / rate['raw psycopg2 COPY']:.0%}"),
        ("insert_many over TCP >= 100,000 rows/s", rate["insert_many over TCP"] >= 100_000,
         f"{rate['insert_many over TCP']:,.0f}"),
        ("new_entry >= 0.5.4 new_entry", rate["new_entry"] >= rate["0.5.4 new_entry"],
         f"x{rate['new_entry'] / rate['0.5.4 new_entry']:.2f}"),
    ]
    expected = {"old_entry": len(single), "new_entry": len(single), "new_entries": len(rows),
                "insert_many": len(rows), "raw_copy": len(rows)}
    checks.append(("every row stored", {t: int(c) for t, c in counts.items()} == expected, ""))
    for label, ok, figure in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}  {figure}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
