"""The reference 0.5.x application in the stack (profile ``example``): instrument -> daemon ->
TimescaleDB, and a forced fault -> log-relay -> a digest in the mail sink."""

from __future__ import annotations

import pytest

from tests.stack.test_stack import mail_bodies, psql, wait_until

pytestmark = pytest.mark.docker

SERVICE = "instrument-example"


def cli(stack, *words: str) -> str:
    """``docker compose exec instrument-example python3 /opt/instrument/cli.py WORDS``: its output."""
    done = stack.compose("exec", "-T", SERVICE, "python3", "/opt/instrument/cli.py", *words, check=False)
    return done.stdout + done.stderr


def readings(stack) -> int:
    exists = psql(stack, "SELECT to_regclass('power_meter') IS NOT NULL")
    return int(psql(stack, "SELECT count(*) FROM power_meter")) if exists == "t" else 0


def test_the_example_writes_readings_and_its_fault_arrives_as_a_digest(lab_stack):
    lab_stack.compose("--profile", "example", "up", "-d", "--build", "--wait", SERVICE)
    try:
        # The container switched the instrument on and started logging to the database by itself.
        wait_until(lambda: readings(lab_stack) >= 3, 90, "3 readings in power_meter")
        assert psql(lab_stack, "SELECT count(*) FROM timescaledb_information.hypertables "
                               "WHERE hypertable_name = 'power_meter'") == "1"
        assert "Error!" not in cli(lab_stack, "status")

        reply = cli(lab_stack, "fault")
        assert "Instrument fault" in reply, reply
        wait_until(lambda: any("Instrument fault" in body for body in mail_bodies(lab_stack)), 90,
                   "a digest naming the instrument fault in the mail sink")
    finally:
        lab_stack.compose("--profile", "example", "rm", "--stop", "--force", SERVICE, check=False)
