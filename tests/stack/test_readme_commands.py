"""Every shell block of README.md and docs/*.md runs, as written, against the test stack.

A block that is not meant to run (it installs from the network, starts the user's stack, ...) is
preceded by ``<!-- not-run: reason -->``; the reason is required. The blocks of one file run in
order, on the session's test stack (tests/fixtures/docker_stack.py), in the repository, with
.venv/bin first on PATH and ``docker compose`` pointed at the test stack (COMPOSE_* variables).
That stack differs from a user's in two ways, substituted in the text before a block runs: its
ports are ephemeral (``--port 1507``, ``port=1507``, ``127.0.0.1:8025`` ... become its own) and
its secrets live elsewhere (``secrets/`` becomes its secrets directory).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.docker_stack import REPO_ROOT, STACK_PORTS

SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
NOT_RUN = re.compile(r"<!--\s*not-run:(.*?)-->")
FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass
class Block:
    path: str
    line: int
    language: str
    text: str
    not_run: str | None  # the reason, or None when the block runs

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    def commands(self) -> str:
        """The shell text: for ``console`` blocks only the ``$ `` lines (the rest is output)."""
        if self.language != "console":
            return self.text
        return "\n".join(line[2:] for line in self.text.splitlines() if line.startswith("$ "))


def documents() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def shell_blocks(path: Path) -> list[Block]:
    """The fenced shell blocks of a Markdown file, with the not-run reason before each, if any."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        start = index
        index += 1
        body = []
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        index += 1
        language = match.group(1).lower()
        if language not in SHELL_LANGUAGES:
            continue
        previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
        marker = NOT_RUN.search(previous)
        blocks.append(Block(str(path.relative_to(REPO_ROOT)), start + 1, language, "\n".join(body),
                            marker.group(1).strip() if marker else None))
    return blocks


ALL_BLOCKS = [block for path in documents() for block in shell_blocks(path)]
# The blocks that run; the others are checked for their reason (test_every_not_run_marker_gives_a_reason).
RUN_BLOCKS = [block for block in ALL_BLOCKS if block.not_run is None]


def test_the_readme_starts_with_the_two_commands():
    first, second = (REPO_ROOT / "README.md").read_text().splitlines()[:2]
    assert "`scripts/up`" in first
    assert "`scripts/test`" in second


def test_every_not_run_marker_gives_a_reason():
    for path in documents():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "not-run" in line:
                marker = NOT_RUN.search(line)
                assert marker and marker.group(1).strip(), f"{path.name}:{number}: not-run without a reason: {line!r}"
    assert any(block.path == "README.md" and block.not_run is None for block in ALL_BLOCKS)


def substituted(text: str, stack) -> str:
    """The block as it must read for the test stack: its host ports and its secrets directory.

    Lines that run inside a container (``docker compose exec``) keep their ports: those are the
    container's own.
    """
    published = {port: str(stack.port(service)) for service, (port, _) in STACK_PORTS.items()}
    lines = []
    for line in text.splitlines():
        if "compose exec" not in line:
            for port, host_port in published.items():
                line = re.sub(rf"(--port[ =]|port=|127\.0\.0\.1:|localhost:){port}\b", rf"\g<1>{host_port}", line)
        lines.append(re.sub(r"(?<![\w./-])secrets/", f"{stack.secrets_dir}/", line))
    return "\n".join(lines)


@pytest.mark.docker
@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[block.id for block in RUN_BLOCKS])
def test_shell_block_runs_against_the_test_stack(block, lab_stack):
    env = {**lab_stack.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    script = substituted(block.commands(), lab_stack)
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=REPO_ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (f"{block.id} exited {done.returncode}\n--- block as run:\n{script}\n"
                                  f"--- stdout:\n{done.stdout[-3000:]}\n--- stderr:\n{done.stderr[-3000:]}")
