"""db-admin on the real TimescaleDB container: a database restart in the middle of an ingest
loses no acknowledged row, and ingest resumes by itself."""

from __future__ import annotations

import threading

import pytest

from tests.fixtures.pg_cluster import free_port
from tests.fixtures.ports import wait_until

pytestmark = pytest.mark.docker

PASSWORD = "test-password-not-secret"


def _healthy(container) -> bool:
    container.reload()
    return container.attrs["State"].get("Health", {}).get("Status") == "healthy"


def test_database_restart_mid_ingest_loses_no_acknowledged_row(timescaledb_image, docker_client, tmp_path):
    from tests.fixtures.postgres import _running_admin

    from lab_utils_common.database import Database
    from lab_utils_common.socket_comm import Client

    port = free_port()  # fixed: the published port stays the same across the restart
    container = docker_client.containers.run(
        timescaledb_image, detach=True,
        environment={"POSTGRES_USER": "labadmin", "POSTGRES_PASSWORD": PASSWORD},
        ports={"5432/tcp": ("127.0.0.1", port)})
    try:
        wait_until(lambda: _healthy(container), 120, lambda: container.logs().decode()[-2000:])

        def make() -> Database:
            return Database(host="127.0.0.1", port=port, database="labadmin", user="labadmin",
                            password=PASSWORD, timescaledb=True, reconnect_timeout=60)

        with _running_admin(tmp_path, make) as admin:
            assert admin.send("create_table beam") == "table beam created"
            assert admin.send("add_column beam n long") == "column n added to beam"
            host, admin_port = admin.admin.server_address
            acknowledged: list[int] = []
            refused: list[str] = []
            stop = threading.Event()

            def ingest() -> None:
                client = Client(host=host, port=admin_port, timeout=120)
                number = 0
                while not stop.is_set():
                    number += 1
                    reply = client.send_message(f"insert beam n={number}")
                    (acknowledged.append(number) if reply == "1 row inserted into beam"
                     else refused.append(reply))

            thread = threading.Thread(target=ingest, name="ingest")
            thread.start()
            try:
                wait_until(lambda: len(acknowledged) >= 50, 60, lambda: f"{acknowledged[-3:]} {refused[-3:]}")
                started = container.attrs["State"]["StartedAt"]
                container.restart(timeout=30)  # SIGINT: fast shutdown, in-flight sessions cut
                wait_until(lambda: _healthy(container), 120, lambda: container.logs().decode()[-2000:])
                assert container.attrs["State"]["StartedAt"] != started
                mark = len(acknowledged)
                wait_until(lambda: len(acknowledged) >= mark + 50, 120,
                           lambda: f"ingest did not resume: {refused[-3:]}")
            finally:
                stop.set()
                thread.join(120)
            stored = {row[1] for row in admin.db.fetch("beam", ["n"])}
            lost = sorted(set(acknowledged) - stored)
            assert not lost, f"acknowledged but not stored: {lost[:20]}"
            # a refusal names the database trouble, never a false success
            assert all(reply.startswith("Error!") for reply in refused), refused[:3]
    finally:
        container.remove(force=True, v=True)
