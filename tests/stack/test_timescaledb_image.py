"""The offline TimescaleDB image honours the official timescale/timescaledb image's contract."""

from __future__ import annotations

import psycopg2
import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import HealthcheckWaitStrategy

from tests.fixtures.ports import wait_until
from tests.fixtures.postgres import TimescaleServer

pytestmark = pytest.mark.docker


def _query(port: int, statement: str, *, user: str = "physicist", password: str = "from-a-file-not-secret",
           dbname: str = "beamline") -> list:
    return TimescaleServer("127.0.0.1", port, user, password).execute(statement, dbname=dbname)


def test_first_start_creates_user_database_extension_and_runs_init_scripts(timescaledb_image, tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text("from-a-file-not-secret\n")
    password_file.chmod(0o644)
    init = tmp_path / "initdb.d"
    init.mkdir()
    (init / "10-table.sql").write_text("CREATE TABLE from_sql (x int); INSERT INTO from_sql VALUES (1);\n")
    (init / "20-shell.sh").write_text(
        'psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d "$POSTGRES_DB" '
        '-c "INSERT INTO from_sql VALUES (2)"\n')
    for path in (init, *init.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    container = (DockerContainer(timescaledb_image)
                 .with_env("POSTGRES_USER", "physicist")
                 .with_env("POSTGRES_DB", "beamline")
                 .with_env("POSTGRES_PASSWORD_FILE", "/run/secrets/password")
                 .with_volume_mapping(str(password_file), "/run/secrets/password", "ro")
                 .with_volume_mapping(str(init), "/docker-entrypoint-initdb.d", "ro")
                 .with_exposed_ports(5432)
                 .waiting_for(HealthcheckWaitStrategy().with_startup_timeout(120)))
    with container:
        port = int(container.get_exposed_port(5432))
        [(user, database, version)] = _query(
            port, "SELECT current_user, current_database(), current_setting('server_version_num')::int")
        assert (user, database) == ("physicist", "beamline")
        assert 170000 <= version < 180000
        [(extversion, license, telemetry, preload)] = _query(
            port, "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), "
                  "current_setting('timescaledb.license'), current_setting('timescaledb.telemetry_level'), "
                  "current_setting('shared_preload_libraries')")
        assert extversion.startswith("2.19.")
        assert (license, telemetry) == ("apache", "off")
        assert "timescaledb" in preload
        assert _query(port, "SELECT x FROM from_sql ORDER BY x") == [(1,), (2,)]
        assert _query(port, "SELECT extname FROM pg_extension WHERE extname = 'timescaledb'",
                      dbname="template1") == [("timescaledb",)]
        # the Apache edition's features work
        _query(port, "CREATE TABLE m (time timestamptz NOT NULL, v float8); "
                     "SELECT create_hypertable('m', 'time'); "
                     "INSERT INTO m VALUES ('2024-01-01', 1), ('2024-01-01 00:00:30', 3)")
        assert _query(port, "SELECT time_bucket('1 minute', time)::text, avg(v) FROM m GROUP BY 1") == [
            ("2024-01-01 00:00:00+00", 2.0)]
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            _query(port, "SELECT 1", password="wrong")


def test_refuses_to_start_without_a_password(timescaledb_image, docker_client):
    container = docker_client.containers.run(timescaledb_image, detach=True,
                                             environment={"POSTGRES_USER": "physicist"})
    try:
        result = container.wait(timeout=60)
        logs = container.logs().decode()
    finally:
        container.remove(force=True, v=True)  # v: its anonymous data volume too
    assert result["StatusCode"] != 0
    assert "POSTGRES_PASSWORD_FILE" in logs


def test_data_volume_survives_a_new_container_and_sigint_stops_it(timescaledb_image, docker_client):
    volume = docker_client.volumes.create()
    env = {"POSTGRES_USER": "physicist", "POSTGRES_DB": "beamline",
           "POSTGRES_PASSWORD": "from-a-file-not-secret"}

    def run():
        return docker_client.containers.run(timescaledb_image, detach=True, environment=env,
                                            volumes={volume.name: {"bind": "/var/lib/postgresql/data"}},
                                            ports={"5432/tcp": ("127.0.0.1", None)})

    def healthy(container) -> bool:
        container.reload()
        return container.attrs["State"].get("Health", {}).get("Status") == "healthy"

    def port_of(container) -> int:
        container.reload()
        return int(container.attrs["NetworkSettings"]["Ports"]["5432/tcp"][0]["HostPort"])

    first = second = None
    try:
        first = run()
        wait_until(lambda: healthy(first), 120, lambda: first.logs().decode()[-2000:])
        assert first.attrs["Config"]["StopSignal"] == "SIGINT"
        _query(port_of(first), "CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)")
        first.stop(timeout=60)
        first.reload()
        assert first.attrs["State"]["ExitCode"] == 0
        assert "received fast shutdown request" in first.logs().decode()  # SIGINT, not SIGKILL
        first.remove()
        first = None
        second = run()
        wait_until(lambda: healthy(second), 120, lambda: second.logs().decode()[-2000:])
        assert _query(port_of(second), "SELECT x FROM kept") == [(7,)]
        assert "database cluster created" not in second.logs().decode()  # no second initdb
    finally:
        for container in (first, second):
            if container is not None:
                container.remove(force=True)
        volume.remove(force=True)
