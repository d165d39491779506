"""The compose stack, end to end, through the ports it publishes on 127.0.0.1.

One stack for the session (fixture ``lab_stack``). The tests run in file order and the last
one takes the stack down and up again; each leaves every service healthy.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from lab_utils.socket_comm import Client as Client054

from lab_utils_common.socket_comm import Client

pytestmark = pytest.mark.docker


def wait_until(condition, timeout: float, what: str):
    """Poll ``condition`` until it returns a true value (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout} s")
        time.sleep(0.1)


def token_file(stack, service: str) -> str:
    return str(stack.secrets_dir / f"{service.replace('-', '_')}_token")


def send(stack, service: str, message: str) -> str:
    """Send with the daemon's token (log-relay and the mail sink have none)."""
    return Client(host="127.0.0.1", port=stack.port(service), timeout=30,
                  token_file=token_file(stack, service)).send_message(message)


def mail_bodies(stack) -> list[str]:
    """Subject and body of every message in the dev mail sink."""
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.port('mail-sink')}/messages", timeout=10) as reply:
        return [f"{m['subject']}\n{m['body']}" for m in json.load(reply)]


def provoke_alarm(stack) -> str:
    """Make socket-daemon log a WARNING (an unknown command) that names a fresh token."""
    token = f"no_such_command_{secrets.token_hex(4)}"
    reply = send(stack, "socket-daemon", token)
    assert reply.startswith("Error!") and token in reply
    return token


def emails_naming(stack, tokens) -> bool:
    bodies = "\n".join(mail_bodies(stack))
    return all(token in bodies for token in tokens)


def relay_status(stack) -> tuple[int, str]:
    """Exit status and output of ``log-relay status`` in the relay's container."""
    result = stack.container("log-relay").exec_run(["log-relay", "status"])
    return result.exit_code, result.output.decode()


def relay_holds_undelivered_records(stack) -> bool:
    """Whether log-relay's spool has a record not yet delivered, from its own status command."""
    output = stack.container("log-relay").exec_run(["log-relay", "status"]).output.decode()
    for line in output.splitlines():
        if line.strip().startswith("oldest_undelivered_at:"):
            return line.split(":", 1)[1].strip() != "None"
    raise AssertionError(f"no oldest_undelivered_at in log-relay status:\n{output}")


def psql(stack, sql: str) -> str:
    """Run SQL on the stack's database through its published port."""
    env = {"PGPASSWORD": stack.db_password, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                           "-p", str(stack.port("timescaledb")), "-U", "labadmin", "-d", "lab", "-c", sql],
                          check=True, capture_output=True, text=True, env=env)
    return done.stdout.strip()


# --------------------------------------------------------------------------- images


def test_the_service_images_share_every_layer_but_their_own_last_ones(lab_stack):
    layers = {service: lab_stack.container(service).image.attrs["RootFS"]["Layers"]
              for service in ("socket-daemon", "db-admin", "log-relay")}
    common = 0
    while all(len(stack) > common for stack in layers.values()) \
            and len({stack[common] for stack in layers.values()}) == 1:
        common += 1
    # Own layers: the data directory (a RUN) and the empty one of WORKDIR; base, venv,
    # dependencies and code are stored once.
    assert all(len(stack) - common <= 2 for stack in layers.values()), \
        f"only the first {common} layers are shared: {layers}"


def test_the_test_stack_keeps_apart_from_a_users_stack(lab_stack):
    """Own project, own image tag (a user's lab-utils/*:latest are never retagged), own ports."""
    for service in ("socket-daemon", "db-admin", "log-relay", "mail-sink"):
        container = lab_stack.container(service)
        assert container.labels["com.docker.compose.project"] == lab_stack.project
        assert container.attrs["Config"]["Image"] == f"lab-utils/{service}:{lab_stack.image_tag}"
    assert {lab_stack.port(service) for service in ("socket-daemon", "db-admin", "log-relay")}.isdisjoint(
        {1507, 1508, 9020})


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("service", ["socket-daemon", "db-admin"])
def test_daemons_take_their_token_from_a_compose_secret(lab_stack, service):
    container = lab_stack.container(service)
    assert container.attrs["Config"]["User"] == "labutils"
    without = Client(host="127.0.0.1", port=lab_stack.port(service), timeout=30).send_message("status")
    assert without.startswith("Error!") and "token" in without, without
    # Inside the container lab-utils-client finds its daemon and the token by itself (compose env).
    result = container.exec_run(["lab-utils-client", "status"])
    assert result.exit_code == 0 and "status: running" in result.output.decode(), result.output.decode()


# --------------------------------------------------------------------------- socket-daemon


def test_socket_daemon_speaks_to_the_new_client_and_to_lab_utils_054(lab_stack):
    assert send(lab_stack, "socket-daemon", "set {beam current} 3.5") == "beam current = 3.5"
    old_client = Client054(host="127.0.0.1", port=lab_stack.port("socket-daemon"))
    auth = f"#auth {lab_stack.token('socket-daemon')}\n"  # a 0.5.x client sends the token line itself
    assert old_client.send_message(auth + "get {beam current}") == "3.5"
    assert old_client.send_message(auth + "echo hello lab").strip() == "hello lab"
    assert send(lab_stack, "socket-daemon", "status").startswith("status: running")


def test_lab_utils_client_command_line_reaches_every_daemon(lab_stack):
    for service in ("socket-daemon", "db-admin"):
        done = subprocess.run([str(Path(sys.executable).parent / "lab-utils-client"), "--host", "127.0.0.1", "--port",
                               str(lab_stack.port(service)), "--token-file", token_file(lab_stack, service), "status"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{service}: {done.stdout}{done.stderr}"
        assert "running" in done.stdout


# --------------------------------------------------------------------------- alarms by email


def test_a_logged_warning_arrives_as_a_digest_email(lab_stack):
    token = provoke_alarm(lab_stack)
    wait_until(lambda: emails_naming(lab_stack, [token]), 30, f"an email naming {token}")
    [email] = [body for body in mail_bodies(lab_stack) if token in body]
    assert "socket-daemon" in email.splitlines()[0]  # the subject names the app


def test_alarms_logged_while_the_mail_server_is_down_are_all_delivered(lab_stack):
    lab_stack.stop("mail-sink")
    tokens = [provoke_alarm(lab_stack) for _ in range(5)]
    # The relay tried while the sink was down, and says so.
    wait_until(lambda: "last_error: mail:" in relay_status(lab_stack)[1], 30, "a failed delivery in log-relay status")
    assert relay_holds_undelivered_records(lab_stack)
    lab_stack.start("mail-sink")
    wait_until(lambda: emails_naming(lab_stack, tokens), 60, f"emails naming all of {tokens}")


# --------------------------------------------------------------------------- db-admin


def create_table(stack, table: str, **columns: str) -> None:
    """A time table through db-admin, with the given COLUMN=TYPE columns."""
    for message in [f"create_table {table}", *(f"add_column {table} {c} {t}" for c, t in columns.items())]:
        reply = send(stack, "db-admin", message)
        assert not reply.startswith("Error"), f"{message!r}: {reply}"


def test_db_admin_logs_whether_it_runs_on_timescaledb_or_plain_postgresql(lab_stack):
    """The offline stack has no TimescaleDB (Debian does not package it): db-admin says so."""
    container = lab_stack.container("db-admin")
    environment = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    ready = next((line for line in lab_stack.logs("db-admin").splitlines() if " ready (PostgreSQL " in line), None)
    assert ready is not None, f"no 'Database ... ready' line in db-admin's log:\n{lab_stack.logs('db-admin')[-3000:]}"
    status = send(lab_stack, "db-admin", "status")
    if environment["LABUTILS_DATABASE_TIMESCALEDB"] == "off":
        assert re.search(r"TimescaleDB not installed|plain PostgreSQL", ready), ready
        assert "timescaledb: off" in status.splitlines(), status
    else:
        assert re.search(r"TimescaleDB \d+\.\d+", ready), ready


def test_db_admin_creates_a_table_inserts_and_queries(lab_stack):
    table = f"cryostat_{secrets.token_hex(3)}"
    create_table(lab_stack, table, temperature="double", pressure="double")
    reply = send(lab_stack, "db-admin", f"insert {table} temperature=4.2 pressure=1e-06")
    assert not reply.startswith("Error"), reply
    header, row = send(lab_stack, "db-admin", f"latest {table}").splitlines()
    assert header == "time,temperature,pressure"
    assert row.endswith(",4.2,1e-06")
    assert psql(lab_stack, f'SELECT temperature, pressure FROM "{table}"') == "4.2|1e-06"


def test_database_restart_during_ingest_loses_no_acknowledged_row(lab_stack):
    table = f"ingest_{secrets.token_hex(3)}"
    create_table(lab_stack, table, n="int")
    acknowledged: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def ingest() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                reply = send(lab_stack, "db-admin", f"insert {table} n={n}")
            except OSError as exc:  # the daemon may refuse while it reconnects: not acknowledged
                failures.append(f"{n}: {exc}")
                continue
            if reply.startswith("Error") or reply.startswith("Unknown exception"):
                failures.append(f"{n}: {reply.splitlines()[0]}")
            else:
                acknowledged.append(n)

    worker = threading.Thread(target=ingest, daemon=True)
    worker.start()
    try:
        wait_until(lambda: len(acknowledged) >= 20, 60, "20 rows acknowledged before the restart")
        lab_stack.restart("timescaledb")
        before = len(acknowledged)
        lab_stack.wait_healthy("timescaledb")
        wait_until(lambda: len(acknowledged) >= before + 20, 90,
                   f"20 more rows acknowledged after the restart (failures: {failures[-3:]})")
    finally:
        stop.set()
        worker.join(timeout=60)
    stored = {int(n) for n in psql(lab_stack, f'SELECT n FROM "{table}"').split()}
    lost = sorted(set(acknowledged) - stored)
    assert not lost, f"{len(lost)} acknowledged rows are missing, e.g. {lost[:10]}"


# --------------------------------------------------------------------------- volumes (last: down/up)


def test_data_values_and_undelivered_alarms_survive_down_and_up(lab_stack):
    table = f"kept_{secrets.token_hex(3)}"
    create_table(lab_stack, table, n="int")
    assert not send(lab_stack, "db-admin", f"insert {table} n=7").startswith("Error")
    assert send(lab_stack, "socket-daemon", "set setpoint 21.5") == "setpoint = 21.5"
    lab_stack.stop("mail-sink")
    token = provoke_alarm(lab_stack)
    # The relay holds the record in its spool (on its volume) until a delivery succeeds; it has
    # waited longer than unhealthy_after (3 s here): log-relay's status, its healthcheck, fails.
    wait_until(lambda: relay_holds_undelivered_records(lab_stack), 30, f"the alarm {token} in log-relay's spool")
    wait_until(lambda: relay_status(lab_stack)[0] == 1, 30, "log-relay status unhealthy (exit 1)")
    assert "the oldest undelivered record has waited" in relay_status(lab_stack)[1]

    lab_stack.down_keeping_volumes()
    # Up again while the mail server is still down: the measurements start all the same.
    lab_stack.up_services("timescaledb", "log-relay", "db-admin", "socket-daemon")
    lab_stack.wait_healthy("db-admin")
    lab_stack.wait_healthy("socket-daemon")
    assert psql(lab_stack, f'SELECT n FROM "{table}"') == "7"
    assert send(lab_stack, "socket-daemon", "get setpoint") == "21.5"
    assert relay_holds_undelivered_records(lab_stack)

    lab_stack.up()  # the mail sink too: every service healthy again
    wait_until(lambda: emails_naming(lab_stack, [token]), 60, f"the spooled alarm {token} delivered after up")
