"""The Dockerfiles keep the shared build steps identical, so that the images share their layers.

A build cache hit needs the same instruction with the same inputs, in the same order, from the
first line: one differing character in the shared part gives each service its own copy of the
Python dependencies. (tests/stack/test_stack.py checks the layers of the built images.)
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE_DOCKERFILES = [REPO_ROOT / "services" / name / "Dockerfile"
                       for name in ("socket-daemon", "db-admin", "log-relay")]
MAIL_SINK_DOCKERFILE = REPO_ROOT / "images" / "mail-sink" / "Dockerfile"


def instructions(dockerfile: Path) -> list[str]:
    """The file's instructions, comments dropped and continuation lines joined."""
    result: list[str] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        result.append(" ".join(pending.split()))
        pending = ""
    return result


def leading(dockerfile: Path, last: str) -> list[str]:
    """Instructions from the first one down to ``last`` (included)."""
    found = instructions(dockerfile)
    assert last in found, f"{dockerfile}: no instruction {last!r}"
    return found[:found.index(last) + 1]


def test_service_dockerfiles_share_every_step_down_to_the_code_layer():
    shared = [leading(path, "RUN install-lab-utils code") for path in SERVICE_DOCKERFILES]
    assert shared[0] == shared[1] == shared[2]
    assert shared[0][:2] == ["ARG LABUTILS_PYTHON_BASE_IMAGE=python:3.11-slim-bookworm",
                             "FROM ${LABUTILS_PYTHON_BASE_IMAGE}"]
    # Dependency layer before code layer: a code edit does not reinstall the dependencies.
    assert shared[0].index("RUN install-lab-utils dependencies") < shared[0].index(
        "COPY lab_utils_common /src/lab_utils_common")


def test_mail_sink_dockerfile_shares_the_system_step():
    last = "RUN install-lab-utils system"
    assert leading(MAIL_SINK_DOCKERFILE, last) == leading(SERVICE_DOCKERFILES[0], last)


def test_every_image_runs_as_a_non_root_user_with_a_healthcheck_and_an_exec_form_command():
    for path in [*SERVICE_DOCKERFILES, MAIL_SINK_DOCKERFILE]:
        found = instructions(path)
        assert "USER labutils" in found, path
        assert any(line.startswith("HEALTHCHECK ") and "CMD [" in line for line in found), path
        assert found[-1].startswith("CMD ["), f"{path}: last instruction {found[-1]!r}"
