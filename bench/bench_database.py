"""Insert throughput: lab-utils 0.5.4's new_entry vs this package, and raw COPY as the limit.

Run:  .venv/bin/python bench/bench_database.py [--rows 300000] [--single-rows 3000]
      (with DOCKER_HOST set, e.g. eval "$(scripts/docker-engine start)", for the container run)

Starts a throwaway PostgreSQL 15 (the test suite's PostgresServer; TimescaleDB
preloaded and tables made hypertables when the extension is installed), then
the TimescaleDB image of scripts/build-offline-images (PostgreSQL 17, hypertables),
and measures on each, in the same run, rows/s for:

- 0.5.4 new_entry: the real lab_utils 0.5.4 Database, one INSERT + COMMIT per row;
- new_entry: this package, one row per call, committed on return;
- new_entries: this package, one COPY of Python rows;
- insert_many over TCP: a CSV body through a db-admin daemon (body built before the clock,
  as raw COPY's text; sent, split, streamed to COPY, stored);
- raw COPY: psycopg2 copy_expert of the same rows already formatted as COPY text
  (formatting not timed: the limit, the server's own speed).

Targets (issue 12), on both servers: new_entries >= 0.9 of raw COPY; insert_many over TCP
>= 0.6 of raw COPY; new_entry no slower than 0.5.4's (host). Exit status 1 when one is missed.
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
    path = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pg_cluster.py"
    spec = importlib.util.spec_from_file_location("labutils_pg_cluster", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_pg_cluster = _load_pg_cluster()
PostgresServer, start_cluster = _pg_cluster.PostgresServer, _pg_cluster.start_cluster

COLUMNS = ["time", "current", "voltage", "counts"]


def make_rows(count: int) -> list[tuple]:
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    step = datetime.timedelta(milliseconds=10)
    return [(start + i * step, 1e-3 * (i % 1000), 230.0 + (i % 7) * 0.125, i) for i in range(count)]


def start_server() -> PostgresServer:
    return start_cluster(Path(tempfile.mkdtemp(prefix="bench-database-")))


def create_table(target: Target, dbname: str, table: str) -> None:
    db = target.database(dbname)
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


class Target:
    """Where the rows go: host, port, superuser, password; ``psql`` runs one statement."""

    def __init__(self, label: str, host: str, port: int, user: str, password: str,
                 timescaledb: bool) -> None:
        self.label, self.host, self.port, self.user, self.password = label, host, port, user, password
        self.timescaledb = timescaledb

    def dsn(self, dbname: str) -> str:
        return f"host={self.host} port={self.port} user={self.user} password={self.password} dbname={dbname}"

    def psql(self, statement: str, dbname: str = "postgres") -> str:
        conn = psycopg2.connect(self.dsn(dbname), connect_timeout=10)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return str(cur.fetchone()[0]) if cur.description else ""
        finally:
            conn.close()

    def database(self, dbname: str) -> Database:
        return Database(host=self.host, port=self.port, database=dbname, user=self.user,
                        password=self.password, timescaledb=self.timescaledb)


def start_container(image: str):
    """The TimescaleDB image (scripts/build-offline-images) on an ephemeral 127.0.0.1 port."""
    import docker  # only this target needs the docker SDK

    client = docker.from_env(timeout=120)
    container = client.containers.run(
        image, detach=True, environment={"POSTGRES_USER": "labadmin", "POSTGRES_PASSWORD": "bench-only"},
        command=["postgres", "-c", "fsync=off"], ports={"5432/tcp": ("127.0.0.1", None)})
    deadline = time.monotonic() + 120
    while True:
        container.reload()
        if container.attrs["State"].get("Health", {}).get("Status") == "healthy":
            break
        if time.monotonic() > deadline or container.status == "exited":
            logs = container.logs().decode()[-2000:]
            container.remove(force=True, v=True)
            raise RuntimeError(f"{image} did not become healthy: {logs}")
        time.sleep(0.2)  # polling the engine for health, not a synchronisation of the measurement
    port = int(container.attrs["NetworkSettings"]["Ports"]["5432/tcp"][0]["HostPort"])
    version = Target("", "127.0.0.1", port, "labadmin", "bench-only", True).psql(
        "SELECT current_setting('server_version') || ', TimescaleDB ' || extversion || ' ' || "
        "current_setting('timescaledb.license') FROM pg_extension WHERE extname = 'timescaledb'",
        "labadmin")
    return container, Target(f"PostgreSQL {version} (container {image}), hypertables",
                             "127.0.0.1", port, "labadmin", "bench-only", True)


def measure(target: Target, rows: list[tuple], single: list[tuple], old_too: bool,
            passfile: str = "") -> tuple[dict, dict, dict]:
    """Rows/s of each method on ``target``; returns results, stored counts, expected counts."""
    dbname = "bench"
    target.psql(f"CREATE DATABASE {dbname}")
    tables = ["new_entry", "new_entries", "insert_many", "raw_copy"] + (["old_entry"] if old_too else [])
    for table in tables:
        create_table(target, dbname, table)
    results: dict[str, tuple[int, float]] = {}
    if old_too:
        # lab-utils 0.5.4, the real package (one INSERT and one COMMIT per row)
        import lab_utils.database as old
        old_db = old.Database(host=target.host, port=target.port, database=dbname, user=target.user,
                              passfile=passfile)
        old_db.connect()
        results["0.5.4 new_entry"] = (len(single), timed(
            lambda: [old_db.new_entry("old_entry", COLUMNS, list(row)) for row in single]))
        old_db.close()

    db = target.database(dbname)
    db.connect()
    results["new_entry"] = (len(single), timed(
        lambda: [db.new_entry("new_entry", COLUMNS, row) for row in single]))
    results["new_entries (COPY)"] = (len(rows), timed(
        lambda: db.new_entries("new_entries", COLUMNS, rows)))

    # db-admin over TCP: a CSV body (built before the clock, as raw COPY's text) sent and stored
    from db_admin import DbAdmin
    admin = DbAdmin(host="127.0.0.1", port=0, pid_file_name=tempfile.mktemp(prefix="bench-db-admin-"),
                    database=target.database(dbname))
    admin.connect_database(wait=10)
    thread = threading.Thread(target=admin.start_daemon, daemon=True)
    thread.start()
    admin.ready.wait(15)
    host, port = admin.server_address
    client = Client(host=host, port=port, timeout=300)
    message = ("insert_many insert_many\n" + ",".join(COLUMNS) + "\n"
               + "\n".join(f"{t.isoformat()},{c!r},{v!r},{n}" for t, c, v, n in rows))

    def insert_many() -> None:
        reply = client.send_message(message)
        if reply != f"{len(rows)} rows inserted into insert_many":
            raise RuntimeError(f"db-admin replied {reply[:300]!r}")

    results["insert_many over TCP"] = (len(rows), timed(insert_many))
    admin.shutdown()
    thread.join(30)

    raw = psycopg2.connect(target.dsn(dbname))
    # The limit: the COPY text is built before the clock starts, so only the transfer and
    # the server's work are timed (psycopg2 sends it as fast as the server takes it).
    text = "".join("\t".join(map(str, row)) + "\n" for row in rows)

    def raw_copy() -> None:
        with raw, raw.cursor() as cur:
            cur.copy_expert("COPY raw_copy (time, current, voltage, counts) FROM STDIN", io.StringIO(text))

    results["raw psycopg2 COPY"] = (len(rows), timed(raw_copy))
    raw.close()
    counts = {t: int(target.psql(f"SELECT count(*) FROM {t}", dbname)) for t in tables}
    db.close()
    expected = {t: len(single) if t in ("old_entry", "new_entry") else len(rows) for t in tables}
    return results, counts, expected


def report(label: str, results: dict, counts: dict, expected: dict, old_too: bool) -> bool:
    rate = {name: count / seconds for name, (count, seconds) in results.items()}
    raw = rate["raw psycopg2 COPY"]
    print(f"\n{label}; rows of (timestamptz, double, double, bigint)")
    print(f"{'method':<24}{'rows':>10}{'seconds':>10}{'rows/s':>12}{'of raw COPY':>13}")
    for name, (count, seconds) in results.items():
        print(f"{name:<24}{count:>10}{seconds:>10.3f}{rate[name]:>12,.0f}{rate[name] / raw:>13.2f}")
    checks = [
        ("new_entries >= 0.9 of raw COPY", rate["new_entries (COPY)"] >= 0.9 * raw,
         f"{rate['new_entries (COPY)'] / raw:.2f}"),
        ("insert_many over TCP >= 0.6 of raw COPY", rate["insert_many over TCP"] >= 0.6 * raw,
         f"{rate['insert_many over TCP'] / raw:.2f}"),
        ("every row stored", counts == expected, "" if counts == expected else f"{counts}"),
    ]
    if old_too:
        checks.append(("new_entry >= 0.5.4 new_entry", rate["new_entry"] >= rate["0.5.4 new_entry"],
                       f"x{rate['new_entry'] / rate['0.5.4 new_entry']:.2f}"))
    for name, ok, figure in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}  {figure}")
    return all(ok for _, ok, _ in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000, help="rows for the batch methods")
    parser.add_argument("--single-rows", type=int, default=3_000, help="rows for one-per-call methods")
    parser.add_argument("--timescaledb-image", default="lab-utils/timescaledb:2.19-pg17-trixie",
                        help="TimescaleDB image for the second run ('' to skip it)")
    args = parser.parse_args()
    rows = make_rows(args.rows)
    single = rows[:args.single_rows]
    ok = True

    server = start_server()
    try:
        host = Target(f"PostgreSQL 15 on 127.0.0.1 (host), "
                      f"{'hypertables' if server.has_timescaledb else 'plain tables'}",
                      server.host, server.port, server.user, server.password, server.has_timescaledb)
        ok &= report(host.label, *measure(host, rows, single, True, str(server.passfile)), True)
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(server.root, ignore_errors=True)

    if args.timescaledb_image:
        container, target = start_container(args.timescaledb_image)
        try:
            ok &= report(target.label, *measure(target, rows, single, False), False)
        finally:
            container.remove(force=True, v=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
