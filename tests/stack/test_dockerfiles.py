"""The one multi-stage Dockerfile: a target per image, shared stages, non-root, healthchecks.

The service images share their layers because their targets derive from the same stages (base ->
lab-utils): tests/stack/test_stack.py checks the layers of the built images.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
SERVICES = ("socket-daemon", "db-admin", "log-relay")


def stages(dockerfile: Path) -> dict[str, tuple[str, list[str]]]:
    """Stage name -> (what it is built FROM, its instructions), comments dropped, lines joined."""
    found: dict[str, tuple[str, list[str]]] = {}
    current: list[str] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        instruction, pending = " ".join(pending.split()), ""
        match = re.fullmatch(r"FROM (\S+) AS (\S+)", instruction)
        if match:
            current = []
            found[match.group(2)] = (match.group(1), current)
        else:
            current.append(instruction)
    return found


def test_one_target_per_image_and_the_service_targets_share_the_lab_utils_stage():
    found = stages(DOCKERFILE)
    assert found["base"][0] == "${LABUTILS_PYTHON_BASE_IMAGE}"
    assert found["lab-utils"][0] == "base"
    for service in SERVICES:
        assert found[service][0] == "lab-utils", service
    assert found["mail-sink"][0] == "base"
    shared = found["lab-utils"][1]
    # Dependency layer before code layer: a code edit does not reinstall the dependencies.
    assert shared.index("RUN install-lab-utils dependencies") < shared.index(
        "COPY lab_utils_common /src/lab_utils_common")
    assert not list(REPO_ROOT.glob("services/*/Dockerfile")), "per-service Dockerfiles are back"


def test_every_image_runs_as_a_non_root_user_with_a_healthcheck_and_an_exec_form_command():
    found = stages(DOCKERFILE)
    for target in (*SERVICES, "mail-sink"):
        instructions = found[target][1]
        assert "USER labutils" in instructions, target
        assert any(line.startswith("HEALTHCHECK ") and "CMD [" in line for line in instructions), target
        assert instructions[-1].startswith("CMD ["), f"{target}: last instruction {instructions[-1]!r}"


def test_compose_builds_each_service_from_its_target_and_publishes_on_loopback_only():
    services = {}
    for name in ("compose.yaml", "compose.override.yml"):
        for service, spec in yaml.safe_load((REPO_ROOT / name).read_text())["services"].items():
            services.setdefault(service, {}).update(spec)
    for service in (*SERVICES, "mail-sink"):
        build = services[service]["build"]
        assert (build["dockerfile"], build["target"]) == ("Dockerfile", service)
    for service, spec in services.items():
        for port in spec.get("ports", []):
            assert re.fullmatch(r"\$\{LABUTILS_PUBLISH_\w+:-127\.0\.0\.1:\d+\}:\d+", port), (service, port)


def test_production_compose_requires_the_secrets_and_has_no_mail_sink():
    production = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    assert "mail-sink" not in production["services"]
    for name, secret in production["secrets"].items():
        assert re.fullmatch(r"\$\{LABUTILS_\w+_FILE:\?.*scripts/secrets.*\}", secret["file"]), name
    assert not (REPO_ROOT / ".env").exists() or ".env" not in _tracked_files()


def _tracked_files() -> set[str]:
    import subprocess

    done = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True)
    return set(done.stdout.split())
