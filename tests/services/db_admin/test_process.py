"""The db-admin console script: configured by environment and secret file, waits for the database."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.fixtures.ports import free_port, wait_for_port

from lab_utils_common.socket_comm import Client

DB_ADMIN = str(Path(sys.executable).with_name("db-admin"))


class DbAdminProcess:
    """``db-admin`` as a real process, its merged output read line by line on a thread."""

    def __init__(self, tmp_path: Path, env: dict) -> None:
        self.process = subprocess.Popen([DB_ADMIN, "--pid-file", str(tmp_path / "db-admin.pid")],
                                        env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=lambda: [self.lines.put(line) for line in self.process.stdout],
                                       daemon=True)
        self.reader.start()

    def wait_for_line(self, needle: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"no output line with {needle!r} within {timeout} s; got:\n{''.join(seen)}")

    def stop_with_sigterm(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def rest(self) -> str:
        """The output not read yet, to the end (call once the process ended)."""
        self.reader.join(10)
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get())
        return "".join(rest)


@pytest.fixture
def start_db_admin(tmp_path) -> Iterator[Callable[[dict], DbAdminProcess]]:
    started: list[DbAdminProcess] = []

    def start(env: dict) -> DbAdminProcess:
        started.append(DbAdminProcess(tmp_path, env))
        return started[-1]

    yield start
    for admin in started:
        if admin.process.poll() is None:
            admin.process.kill()
            admin.process.wait()


def test_waits_for_the_database_then_serves_then_stops_on_sigterm(
        tmp_path, postgres_server, pg_database, start_db_admin):
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
               LABUTILS_SERVER_PORT=str(port))
    postgres_server.stop()
    admin = start_db_admin(env)
    try:
        line = admin.wait_for_line("retrying in")
        second = admin.wait_for_line("retrying in")
    finally:
        postgres_server.start()
    assert f"{postgres_server.host}:{postgres_server.port}/{pg_database}" in line
    assert "Connection refused" in line, "the log says why the database cannot be reached"
    delays = [float(re.search(r"retrying in ([0-9.]+) s", text).group(1)) for text in (line, second)]
    assert delays[1] > delays[0], f"no back-off: {delays}"
    assert postgres_server.password not in line + second
    wait_for_port("127.0.0.1", port, timeout=30)
    client = Client(host="127.0.0.1", port=port, timeout=30)
    assert "database_connected: True" in client.send_message("status")
    assert client.send_message("create_table beam") == "table beam created"
    assert admin.stop_with_sigterm() == 0


def test_dev_placeholder_password_is_warned_about_never_shown_and_sigterm_while_waiting(
        tmp_path, start_db_admin):
    from db_admin.daemon import DEV_DB_PASSWORD

    # The placeholder that compose used to fall back to (secrets/db_password.dev, removed by issue 9):
    # stacks made before still hold it.
    placeholder = tmp_path / "db_password"
    placeholder.write_text(DEV_DB_PASSWORD + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABUTILS_")}
    env.update(LABUTILS_DATABASE_HOST="127.0.0.1", LABUTILS_DATABASE_PORT=str(free_port()),  # nobody there
               LABUTILS_DATABASE_PASSWORD_FILE=str(placeholder), LABUTILS_DATABASE_TIMESCALEDB="off",
               LABUTILS_SERVER_HOST="127.0.0.1", LABUTILS_SERVER_PORT=str(free_port()))
    admin = start_db_admin(env)
    warning = admin.wait_for_line("development placeholder")
    assert warning.startswith("WARNING") and "LABUTILS_DB_PASSWORD_FILE" in warning
    admin.wait_for_line("retrying in")  # waiting for the database
    assert admin.stop_with_sigterm() == 0
    rest = admin.rest()
    assert "Stopped before serving" in rest
    assert DEV_DB_PASSWORD not in warning + rest
