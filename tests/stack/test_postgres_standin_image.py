"""The offline PostgreSQL stand-in image honours the official image's POSTGRES_* variables."""

from __future__ import annotations

import psycopg2
import pytest
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import HealthcheckWaitStrategy

pytestmark = pytest.mark.docker


def test_first_start_creates_user_database_and_password_from_file(offline_postgres_image, tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text("from-a-file-not-secret\n")
    password_file.chmod(0o644)
    container = (DockerContainer(offline_postgres_image)
                 .with_env("POSTGRES_USER", "physicist")
                 .with_env("POSTGRES_DB", "beamline")
                 .with_env("POSTGRES_PASSWORD_FILE", "/run/secrets/password")
                 .with_volume_mapping(str(password_file), "/run/secrets/password", "ro")
                 .with_exposed_ports(5432)
                 .waiting_for(HealthcheckWaitStrategy().with_startup_timeout(60)))
    with container:
        port = int(container.get_exposed_port(5432))
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="physicist",
                                password="from-a-file-not-secret", dbname="beamline", connect_timeout=10)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_user, current_database(), current_setting('server_version_num')::int")
                user, database, version = cur.fetchone()
        finally:
            conn.close()
        assert (user, database) == ("physicist", "beamline")
        assert 150000 <= version < 160000
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(host="127.0.0.1", port=port, user="physicist", password="wrong",
                             dbname="beamline", connect_timeout=10)


def test_refuses_to_start_without_a_password(offline_postgres_image, docker_client):
    container = docker_client.containers.run(offline_postgres_image, detach=True,
                                             environment={"POSTGRES_USER": "physicist"})
    try:
        result = container.wait(timeout=60)
        logs = container.logs().decode()
    finally:
        container.remove(force=True, v=True)  # v: its anonymous data volume too
    assert result["StatusCode"] != 0
    assert "POSTGRES_PASSWORD_FILE" in logs
