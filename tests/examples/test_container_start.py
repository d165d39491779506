"""examples/instrument/container-start.sh, the example's container command, run without a container.

The ported copy of the example (imports rewritten) is started by the script as compose starts it:
the environment points the unchanged 0.5.x INI files at a real PostgreSQL, autostart switches the
instrument on and starts logging to the database, and SIGTERM to the script (what tini passes on
at `docker stop`) stops the daemon through its quit().
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg2

from tests.fixtures.example_app import PROCESS_DEADLINE, port_is_listening, prepare_app, strip_colour
from tests.fixtures.pg_cluster import free_port
from tests.fixtures.ports import wait_until


def _rows(postgres, database: str) -> int:
    conn = psycopg2.connect(postgres.dsn(database), connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('power_meter') IS NOT NULL")
            if not cur.fetchone()[0]:
                return 0
            # rows come only after the monitor added its columns: count them, not the columns
            cur.execute("SELECT count(*) FROM power_meter")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_container_start_autostarts_logging_to_the_database_and_passes_sigterm_on(
        postgres_server, pg_database, tmp_path):
    tty_link = tmp_path / "instrument-tty"
    port = free_port()
    app = prepare_app(tmp_path / "instrument", "project", port=port, pty=str(tty_link),
                      postgres=postgres_server, database=pg_database, interval=0.05)
    password_file = tmp_path / "db_password"
    password_file.write_text(postgres_server.password + "\n")
    token_file = tmp_path / "token"  # the compose secret socket_daemon_token
    token_file.write_text("example-test-token\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABUTILS_")}
    env.update({
        # python3 on PATH is the test venv's, as /opt/lab-utils/bin is first in the image
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        "EXAMPLE_TTY": str(tty_link),
        "EXAMPLE_PID_FILE": str(tmp_path / "instrument.pid"),
        "LABUTILS_SERVER_PORT": str(port),
        "LABUTILS_CLIENT_HOST": "127.0.0.1",
        "LABUTILS_CLIENT_PORT": str(port),
        "LABUTILS_SERVER_TOKEN_FILE": str(token_file),
        "LABUTILS_CLIENT_TOKEN_FILE": str(token_file),
        # the compose service's database settings, against the test server
        "LABUTILS_DATABASE_HOST": postgres_server.host,
        "LABUTILS_DATABASE_PORT": str(postgres_server.port),
        "LABUTILS_DATABASE_DATABASE": pg_database,
        "LABUTILS_DATABASE_USER": postgres_server.user,
        "LABUTILS_DATABASE_PASSWORD_FILE": str(password_file),
        "LABUTILS_DATABASE_TIMESCALEDB": "off",  # plain PostgreSQL here; TimescaleDB in the stack
        "PYTHONUNBUFFERED": "1",
    })
    (app / "conf" / "database.ini").write_text(  # as shipped: only the environment says where
        (Path(__file__).resolve().parents[2] / "examples/instrument/conf/database.ini").read_text())
    log = tmp_path / "container.log"
    with open(log, "w") as output:
        script = subprocess.Popen(["sh", str(app / "container-start.sh")], stdout=output,
                                  stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                  start_new_session=True)  # its own group: cleaned up as one
    try:
        wait_until(lambda: _rows(postgres_server, pg_database) >= 3 or script.poll() is not None,
                   PROCESS_DEADLINE, lambda: f"rows: {_rows(postgres_server, pg_database)}; "
                                             f"output:\n{log.read_text()}")
        assert script.poll() is None, log.read_text()
        script.send_signal(signal.SIGTERM)
        assert script.wait(PROCESS_DEADLINE) == 0, log.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever of the group is left (a failure)
            os.killpg(script.pid, signal.SIGKILL)
        script.wait(PROCESS_DEADLINE)
    conn = psycopg2.connect(postgres_server.dsn(pg_database), connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT min(power) FROM power_meter")
            assert cur.fetchone()[0] > 0  # every reading taken with the output on
    finally:
        conn.close()
    output = strip_colour(log.read_text())
    assert "Device output is on" in output
    assert "Logging started, table <power_meter>" in output
    assert "Cleaning up..." in output and "Daemon stopped" in output
    assert not port_is_listening(port)
    # the simulator went with it (its command line names this test's pty link)
    assert not _processes_naming(str(tty_link))


def _processes_naming(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if text.encode() in handle.read():
                    found.append(pid)
    return found
