"""scripts/up and its parts (scripts/secrets, scripts/check-ports), apart from any user's stack.

Each test gives the scripts its own settings file (DOTENV), project name, image tag, secrets
and ports, and an environment without the user's LABUTILS_* / COMPOSE_* variables.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.docker_stack import DAEMON_UID, OFFLINE_ENV_FILE, REPO_ROOT, STACK_PORTS

SECRET_VARIABLES = {"db_password": "LABUTILS_DB_PASSWORD_FILE",
                    "socket_daemon_token": "LABUTILS_SOCKET_DAEMON_TOKEN_FILE",
                    "db_admin_token": "LABUTILS_DB_ADMIN_TOKEN_FILE"}


def clean_environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LABUTILS_", "COMPOSE_"))}
    env.update(extra)
    return env


def settings_file(tmp_path: Path, *, project: str, secrets_dir: Path, ports: dict[str, str] | None = None) -> Path:
    """A DOTENV for the scripts: own project and tag, secrets in ``secrets_dir``, free ports."""
    lines = [f"LABUTILS_STACK_NAME={project}", f"LABUTILS_IMAGE_TAG={project}", "LABUTILS_HEALTHCHECK_INTERVAL=1s"]
    lines += [f"{variable}={secrets_dir / name}" for name, variable in SECRET_VARIABLES.items()]
    lines += [f"{variable}={(ports or {}).get(variable, '127.0.0.1:')}" for _, variable in STACK_PORTS.values()]
    if OFFLINE_ENV_FILE.exists():
        lines += [line for line in OFFLINE_ENV_FILE.read_text().splitlines() if line and not line.startswith("#")]
    path = tmp_path / "settings.env"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(command: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- without secrets


def test_compose_without_secrets_stops_naming_the_secret_and_the_command_that_creates_it(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = run(["docker", "compose", "--env-file", str(empty), "config", "--quiet"], clean_environment())
    if "is not a docker command" in done.stderr:
        pytest.skip("no Compose v2 plugin on this machine (scripts/up installs it)")
    assert done.returncode != 0
    assert re.search(r"LABUTILS_\w+_FILE", done.stderr) and "scripts/secrets" in done.stderr, done.stderr


# --------------------------------------------------------------------------- scripts/secrets


def test_secrets_are_random_private_kept_and_written_to_the_settings(tmp_path):
    secrets_dir = tmp_path / "secrets"
    dotenv = tmp_path / "lab.env"
    env = clean_environment(DOTENV=str(dotenv), **{variable: str(secrets_dir / name)
                                                  for name, variable in SECRET_VARIABLES.items()})
    first = run(["scripts/secrets"], env)
    assert first.returncode == 0, first.stderr
    values = {}
    for name in SECRET_VARIABLES:
        path = secrets_dir / name
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600, name
        if os.geteuid() == 0:
            assert info.st_uid == DAEMON_UID, name
        values[name] = path.read_text().strip()
        assert re.fullmatch(r"[A-Za-z0-9]{40}", values[name]), name
    assert len(set(values.values())) == 3
    # The settings name the files only when the environment does not (here it does): nothing to add.
    (secrets_dir / "db_admin_token").chmod(0o644)
    second = run(["scripts/secrets"], env)
    assert second.returncode == 0, second.stderr
    assert {name: (secrets_dir / name).read_text().strip() for name in SECRET_VARIABLES} == values
    assert stat.S_IMODE((secrets_dir / "db_admin_token").stat().st_mode) == 0o600
    assert "now mode 0600" in second.stderr


def test_secrets_paths_go_to_the_settings_file_and_a_labs_own_path_is_kept(tmp_path):
    dotenv = tmp_path / "lab.env"
    own = tmp_path / "elsewhere" / "password"
    dotenv.write_text(f"LABUTILS_DB_PASSWORD_FILE={own}\nLABUTILS_MAILHANDLER_MAIL_HOST=mail.lab\n")
    # The default paths are ./secrets/...: run in a copy of scripts/ so the repository's stay untouched.
    copy = tmp_path / "repo"
    (copy / "scripts" / "lib").mkdir(parents=True)
    for script in ("scripts/secrets", "scripts/lib/dotenv.sh"):
        (copy / script).write_bytes((REPO_ROOT / script).read_bytes())
        (copy / script).chmod(0o755)
    done = subprocess.run(["scripts/secrets"], cwd=copy, env=clean_environment(DOTENV=str(dotenv)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    settings = dotenv.read_text()
    assert settings.count("LABUTILS_DB_PASSWORD_FILE=") == 1 and f"LABUTILS_DB_PASSWORD_FILE={own}" in settings
    assert "LABUTILS_SOCKET_DAEMON_TOKEN_FILE=./secrets/socket_daemon_token" in settings
    assert "LABUTILS_MAILHANDLER_MAIL_HOST=mail.lab" in settings
    assert own.stat().st_size > 0 and (copy / "secrets" / "db_admin_token").stat().st_size > 0


# --------------------------------------------------------------------------- scripts/check-ports


@pytest.mark.docker
def test_check_ports_names_the_port_its_holder_and_the_variable_that_moves_it(tmp_path, docker_client):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for name in SECRET_VARIABLES:
        (secrets_dir / name).write_text("x\n")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        project = f"labutils-ports-{secrets.token_hex(3)}"
        dotenv = settings_file(tmp_path, project=project, secrets_dir=secrets_dir,
                               ports={"LABUTILS_PUBLISH_DB_ADMIN": f"127.0.0.1:{port}"})
        done = run(["scripts/check-ports", "--env-file", str(dotenv)], clean_environment())
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"127.0.0.1:{port} (db-admin)" in done.stderr
    assert f"pid {os.getpid()}" in done.stderr  # this test's process holds it
    assert "LABUTILS_PUBLISH_DB_ADMIN=127.0.0.1:<free port>" in done.stderr


# --------------------------------------------------------------------------- scripts/up


def test_up_production_without_a_mail_server_stops_before_anything_naming_the_variable(tmp_path):
    dotenv = tmp_path / "lab.env"
    dotenv.write_text("LABUTILS_STACK_NAME=labutils-never-started\n")
    done = run(["scripts/up", "--production"], clean_environment(DOTENV=str(dotenv)))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "LABUTILS_MAILHANDLER_MAIL_HOST" in done.stderr
    assert dotenv.read_text() == "LABUTILS_STACK_NAME=labutils-never-started\n"  # nothing made


@pytest.mark.docker
def test_up_refuses_a_new_password_for_an_existing_database_volume(tmp_path, docker_client):
    project = f"labutils-up-{os.getpid()}-{secrets.token_hex(3)}"
    secrets_dir = tmp_path / "secrets"
    dotenv = settings_file(tmp_path, project=project, secrets_dir=secrets_dir)
    volume = docker_client.volumes.create(f"{project}_database")  # made with a password now lost
    try:
        done = run(["scripts/up"], clean_environment(DOTENV=str(dotenv)), timeout=300)
    finally:
        volume.remove()
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"the database volume {project}_database exists" in done.stderr
    assert f"docker compose -p {project} down --volumes" in done.stderr
    assert not (secrets_dir / "db_password").exists()  # no new password made


@pytest.mark.docker
def test_up_brings_every_service_healthy_prints_the_endpoints_and_is_idempotent(tmp_path, docker_client):
    project = f"labutils-up-{os.getpid()}-{secrets.token_hex(3)}"
    secrets_dir = tmp_path / "secrets"
    dotenv = settings_file(tmp_path, project=project, secrets_dir=secrets_dir)
    env = clean_environment(DOTENV=str(dotenv))
    compose = ["docker", "compose", "--env-file", str(dotenv)]
    try:
        first = run(["scripts/up"], env, timeout=900)
        assert first.returncode == 0, first.stdout + first.stderr[-3000:]
        for service in ("socket-daemon", "db-admin", "log-relay", "timescaledb"):
            assert re.search(rf"^  {service} +127\.0\.0\.1:\d+ ", first.stdout, re.MULTILINE), first.stdout
        assert re.search(r"^  mail-sink +http://127\.0\.0\.1:\d+/messages", first.stdout, re.MULTILINE)
        assert "docker compose exec socket-daemon lab-utils-client status" in first.stdout
        for name in SECRET_VARIABLES:
            assert stat.S_IMODE((secrets_dir / name).stat().st_mode) == 0o600
        started = run([*compose, "ps", "--format", "{{.Name}} {{.ID}}"], env).stdout

        second = run(["scripts/up"], env, timeout=900)
        assert second.returncode == 0, second.stdout + second.stderr[-3000:]
        assert run([*compose, "ps", "--format", "{{.Name}} {{.ID}}"], env).stdout == started  # nothing recreated
        healthy = run([*compose, "ps", "--format", "{{.Service}} {{.Health}}"], env).stdout.split("\n")
        assert sorted(line for line in healthy if line) == [
            f"{service} healthy" for service in ("db-admin", "log-relay", "mail-sink", "socket-daemon", "timescaledb")]
    finally:
        run([*compose, "down", "--volumes", "--remove-orphans"], env, timeout=300)
        for service in ("socket-daemon", "db-admin", "log-relay", "mail-sink"):
            run(["docker", "image", "rm", f"lab-utils/{service}:{project}"], env)
