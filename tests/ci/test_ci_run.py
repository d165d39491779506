""".ci/run: every step's failure stops CI with a non-zero status (stub steps in a copy of the tree)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("install-system-packages", "docker-engine", "up", "test", "lint")


def make_tree(tmp_path: Path, failing: str = "") -> Path:
    """A copy of .ci/run next to stub scripts/ that log their call; ``failing`` exits 1."""
    (tmp_path / ".ci").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    (tmp_path / "scripts").mkdir()
    for step in STEPS:
        output = "echo export DOCKER_HOST=unix:///stub.sock" if step == "docker-engine" else ":"
        status = 1 if step == failing else 0
        script = tmp_path / "scripts" / step
        script.write_text(f'#!/usr/bin/env bash\necho "{step} DOCKER_HOST=${{DOCKER_HOST:-}}" >> "$CALLS"\n'
                          f'[ {status} = 0 ] && {output}\nexit {status}\n')
        script.chmod(0o755)
    return tmp_path


def run_ci(tree: Path) -> tuple[int, list[str]]:
    calls = tree / "calls"
    env = {key: value for key, value in os.environ.items() if key != "DOCKER_HOST"}
    done = subprocess.run([str(tree / ".ci" / "run")], env={**env, "CALLS": str(calls)},
                          capture_output=True, text=True, timeout=60)
    return done.returncode, calls.read_text().splitlines() if calls.exists() else []


def test_all_steps_pass_and_the_tests_get_the_engine_address(tmp_path):
    status, calls = run_ci(make_tree(tmp_path))
    assert status == 0
    assert [call.split()[0] for call in calls] == list(STEPS)
    # Every step after the engine's start gets its address.
    assert calls[2:] == [f"{step} DOCKER_HOST=unix:///stub.sock" for step in STEPS[2:]]


@pytest.mark.parametrize("failing", STEPS)
def test_a_failing_step_stops_ci_non_zero(tmp_path, failing):
    status, calls = run_ci(make_tree(tmp_path, failing))
    assert status != 0
    assert calls[-1].split()[0] == failing  # nothing ran after the failed step
