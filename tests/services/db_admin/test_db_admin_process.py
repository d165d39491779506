"""The db-admin console script: configured by environment and secret file, waits for the database."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import free_port, wait_for_port  # tests/conftest.py helpers

from lab_utils_common.socket_comm import Client

DB_ADMIN = str(Path(sys.executable).with_name("db-admin"))


def wait_for_line(lines: "queue.Queue[str]", needle: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"no output line with {needle!r} within {timeout} s; got:\n{''.join(seen)}")


def test_waits_for_the_database_then_serves_then_stops_on_sigterm(
        tmp_path, postgres_server, pg_database):
    secret = tmp_path / "db_password"
    secret.write_text(postgres_server.password)
    port = free_port()
    env = dict(os.environ,
               LABUTILS_DATABASE_HOST=postgres_server.host,
               LABUTILS_DATABASE_PORT=str(postgres_server.port),
               LABUTILS_DATABASE_DATABASE=pg_database,
               LABUTILS_DATABASE_USER=postgres_server.user,
               LABUTILS_DATABASE_PASSFILE=str(tmp_path / "no-pgpass"),
               LABUTILS_DATABASE_PASSWORD_FILE=str(secret),
               LABUTILS_DATABASE_TIMESCALEDB="off",
               LABUTILS_SERVER_HOST="127.0.0.1",
               LABUTILS_SERVER_PORT=str(port),
               PYTHONUNBUFFERED="1")
    postgres_server.stop()
    process = subprocess.Popen([DB_ADMIN, "--pid-file", str(tmp_path / "db-admin.pid")], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        try:
            line = wait_for_line(lines, "retrying in")
        finally:
            postgres_server.start()
        assert f"{postgres_server.host}:{postgres_server.port}/{pg_database}" in line
        assert postgres_server.password not in line
        wait_for_port("127.0.0.1", port, timeout=30)
        client = Client(host="127.0.0.1", port=port, timeout=30)
        assert "database_connected: True" in client.send_message("status")
        assert client.send_message("create_table beam") == "table beam created"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
