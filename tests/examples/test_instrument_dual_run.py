"""The reference application, the same source run under lab-utils 0.5.4 and under the project.

examples/instrument is a 0.5.x instrument daemon; here it runs twice as real processes against a
real PostgreSQL: as written (``lab_utils`` 0.5.4) and with only its import lines rewritten to
``lab_utils_common``. The same session of CLI commands drives both, and every reply, exit code,
log line shape, the PID-lock refusal, ``quit`` and the rows stored must agree. The differences
allowed are the improvements listed in docs/porting-from-0.5.md, each asserted as such below.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Iterator, Optional

import psycopg2
import pytest

from tests.fixtures.example_app import FLAVOURS, LOG_LEVELS, PROCESS_DEADLINE, AppRun, CliResult, split_log_lines
from tests.fixtures.pg_cluster import free_port
from tests.fixtures.ports import wait_until

#: The rows both runs must have stored (at least) before logging stops.
MIN_ROWS = 5

#: The CLI session, in order; "<rows>" waits for MIN_ROWS rows, "<second daemon>" starts another
#: instance on the same PID file. 'bogus' is the documented difference (full help on an error).
SESSION = [
    "status",
    "device --test",
    "device --on",
    "status",
    "logging --start --use-database",
    "<rows>",
    "logging --start",
    "status",
    "logging --stop",
    "logging --stop",
    "fault",
    "<second daemon>",
    "device --off",
    "status",
    "bogus",
    "quit",
]

#: The console layout 0.5.4 writes with use_coloured_output = 1 (colour codes removed):
#: level in 9 columns, date, two spaces, name 20, module 30, function 25, message.
CONSOLE_LINE = re.compile(
    r"^(?P<level>%s) {1,8}(?<=^.{9})"
    r"(?P<date>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)  "
    r"(?P<name>.{20}) (?P<module>.{30}) (?P<function>.{25}) (?P<message>.*)$".replace("%s", "|".join(LOG_LEVELS)))

#: The modules 0.5.4's records name: its own three and the example's.
KNOWN_MODULES = {"socket_comm", "database", "custom_logging", "daemon", "monitor", "instrument", "cli"}
APP_MODULES = {"daemon", "monitor", "instrument", "cli"}

READINGS_TABLE = "power_meter"


def expected_readings(count: int) -> list[tuple[float, float]]:
    """The simulator's first ``count`` readings with its output on (simulator.PowerMeter)."""
    return [(float(f"{1.0e-3 * (1 + (n % 10) / 10):.4e}"), 21.0 + (n % 5) / 10) for n in range(count)]


@dataclass
class Outcome:
    """What one flavour's run said and stored."""

    flavour: str
    cli: list[CliResult] = field(default_factory=list)
    daemon_returncode: int = 0
    daemon_output: str = ""
    second_returncode: int = 0
    second_output: str = ""
    sigterm_returncode: int = 0
    sigterm_output: str = ""
    rows: list[tuple] = field(default_factory=list)
    unauthenticated_quit: Optional[CliResult] = None

    def reply(self, command: str, nth: int = 0) -> CliResult:
        return [result for result in self.cli if result.command == command][nth]


def _connect(postgres, database):
    return psycopg2.connect(postgres.dsn(database), connect_timeout=10)


def _reset_table(postgres, database) -> None:
    # Created as a DBA (or db-admin) would: 0.5.4's create_timescale_db needs TimescaleDB.
    with _connect(postgres, database) as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {READINGS_TABLE}")
        cur.execute(f"CREATE TABLE {READINGS_TABLE} (time TIMESTAMPTZ NOT NULL DEFAULT NOW(), "
                    f"power FLOAT(53), temperature FLOAT(53))")
    conn.close()


def _rows(postgres, database) -> list[tuple]:
    conn = _connect(postgres, database)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT time, power, temperature FROM {READINGS_TABLE} ORDER BY time")
            return cur.fetchall()
    finally:
        conn.close()


def run_session(run: AppRun) -> Outcome:
    """Drive one flavour through SESSION, then through a SIGTERM stop."""
    outcome = Outcome(run.flavour)
    _reset_table(run.postgres, run.database)
    run.start_simulator()
    daemon = run.daemon("daemon")
    run.wait_listening(daemon, "daemon")
    for step in SESSION:
        if step == "<rows>":
            wait_until(lambda: len(_rows(run.postgres, run.database)) >= MIN_ROWS, PROCESS_DEADLINE,
                       lambda: f"{run.flavour}: {len(_rows(run.postgres, run.database))} rows stored")
        elif step == "<second daemon>":
            second = run.daemon("second")
            outcome.second_returncode = second.wait(PROCESS_DEADLINE)
            outcome.second_output = run.daemon_output("second")
        else:
            outcome.cli.append(run.cli(step))
    outcome.daemon_returncode = daemon.wait(PROCESS_DEADLINE)
    outcome.daemon_output = run.daemon_output("daemon")
    outcome.rows = _rows(run.postgres, run.database)

    # Stopped by a service manager instead of 'quit'. This daemon has no token: the project
    # refuses 'quit' (an admin command) there, which 0.5.4 would obey.
    daemon = run.daemon("sigterm", token=False)
    run.wait_listening(daemon, "sigterm")
    if run.flavour == "project":
        outcome.unauthenticated_quit = run.cli("quit", token=False)
    daemon.send_signal(signal.SIGTERM)
    outcome.sigterm_returncode = daemon.wait(PROCESS_DEADLINE)
    outcome.sigterm_output = run.daemon_output("sigterm")
    return outcome


@pytest.fixture(scope="module")
def outcomes(postgres_server, tmp_path_factory) -> Iterator[dict[str, Outcome]]:
    """Both flavours' outcomes of the same session (run once for all the comparisons below)."""
    database = f"example_dual_run_{os.getpid()}_{free_port()}"
    postgres_server.psql(f'CREATE DATABASE "{database}"')
    runs = []
    try:
        results = {}
        for flavour in FLAVOURS:
            run = AppRun(flavour, tmp_path_factory.mktemp("run"), postgres_server, database)
            runs.append(run)
            results[flavour] = run_session(run)
        yield results
    finally:
        for run in runs:
            run.stop()
        with contextlib.suppress(subprocess.CalledProcessError):
            postgres_server.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


OLD, NEW = FLAVOURS


def _compared_commands() -> list[str]:
    return [step for step in SESSION if not step.startswith("<") and step != "bogus"]


@pytest.mark.parametrize("command", sorted(set(_compared_commands())))
def test_same_replies_and_exit_codes(outcomes, command):
    occurrences = SESSION.count(command)
    for nth in range(occurrences):
        old, new = outcomes[OLD].reply(command, nth), outcomes[NEW].reply(command, nth)
        assert (new.reply, new.returncode) == (old.reply, old.returncode), f"{command!r} #{nth + 1}"


def test_the_session_did_what_the_app_promises(outcomes):
    # Guards the comparison itself: both runs could agree on being broken.
    old = outcomes[OLD]
    assert old.reply("status", 0).reply == "Device output: off\nLogging: stopped"
    assert old.reply("device --test").reply == "Device LABSIM,PM-100,0001,1.0: self-test passed"
    assert old.reply("status", 1).reply == "Device output: on\nLogging: stopped"
    assert old.reply("logging --start --use-database").reply.startswith("Logging started, table <power_meter>")
    assert old.reply("logging --start").reply == "Logging is already running"
    assert old.reply("logging --stop", 1).reply == "Logging was not running"
    fault = old.reply("fault")
    assert fault.returncode == 1 and fault.reply.startswith("Error! Instrument fault:")
    assert old.reply("quit").reply == "Goodbye!"


def test_unknown_command_gets_full_help_instead_of_an_empty_reply(outcomes):
    """Documented difference: 0.5.4's full_help() fails under Python >= 3.10 (empty reply)."""
    old, new = outcomes[OLD].reply("bogus"), outcomes[NEW].reply("bogus")
    assert (old.reply, old.returncode) == ("", 1)
    assert new.returncode == 1
    assert new.reply.startswith("Error! argument")
    assert "invalid choice: 'bogus'" in new.reply
    for command in ("status", "device", "logging", "fault", "quit"):
        assert command in new.reply


def test_quit_stops_the_daemon_cleanly(outcomes):
    for flavour in FLAVOURS:
        outcome = outcomes[flavour]
        assert outcome.daemon_returncode == 0, outcome.daemon_output
        logs, _ = split_log_lines(outcome.daemon_output)
        assert logs[-1].endswith("Daemon stopped"), f"{flavour}: {logs[-3:]}"


def test_second_instance_is_refused_by_the_pid_lock(outcomes):
    old, new = outcomes[OLD], outcomes[NEW]
    assert (old.second_returncode, new.second_returncode) == (1, 1)
    for outcome in (old, new):
        logs, _ = split_log_lines(outcome.second_output)
        assert any(line.startswith("ERROR") and "Another instance of the daemon is running" in line
                   for line in logs), logs
        # the library's own ERROR naming the lock file comes first, as in 0.5.4
        lock_errors = [line for line in logs if line.startswith("ERROR") and "daemon.pid" in line]
        assert lock_errors, f"{outcome.flavour}: no ERROR line names the PID file: {logs}"


def test_sigterm_runs_quit_in_the_project_only(outcomes):
    """Documented difference: 0.5.4 handles only SIGINT; SIGTERM killed it without clean-up."""
    old, new = outcomes[OLD], outcomes[NEW]
    assert old.sigterm_returncode == -signal.SIGTERM
    assert "Cleaning up..." not in old.sigterm_output
    assert new.sigterm_returncode == 0, new.sigterm_output
    assert "Cleaning up..." in new.sigterm_output
    assert "Closing serial port" in new.sigterm_output  # the app's own quit() ran


def test_quit_without_token_is_refused_by_the_project(outcomes):
    """Documented difference: 'quit' is an admin command, refused without the daemon's token
    unless allow_unauthenticated_admin is set; 0.5.4 let anyone who could connect stop it."""
    refused = outcomes[NEW].unauthenticated_quit
    assert refused is not None and refused.returncode == 1
    assert refused.reply.startswith("Error!") and "quit" in refused.reply
    assert "Cleaning up..." not in outcomes[NEW].sigterm_output.split("Received SIGTERM")[0]


def test_no_colour_codes_into_a_pipe_in_the_project(outcomes):
    """Documented difference: 0.5.4 coloured the level name even into files and pipes."""
    assert "\x1b[" in outcomes[OLD].daemon_output
    assert "\x1b[" not in outcomes[NEW].daemon_output


def _console_lines(outcome: Outcome) -> list[str]:
    lines = split_log_lines(outcome.daemon_output)[0] + split_log_lines(outcome.second_output)[0]
    for result in outcome.cli:
        lines += result.log_lines
    return lines


#: Any console line: level, date, then name, module and function as the first three words.
ANY_LINE = re.compile(r"^(?P<level>%s)\s+\S+ \S+\s+(?P<name>\S+)\s+(?P<module>\S+)\s+(?P<function>\S+)"
                      .replace("%s", "|".join(LOG_LEVELS)))

#: Which code wrote a line with this module name in 0.5.4's console layout.
SOURCES = {
    "socket_comm": {"socket_comm", "server", "connection", "client", "daemon_main", "command_runner",
                    "lock", "parser", "message", "auth_token", "_log", "cli"},
    "database": {"database", "copy_stream", "timescale", "identifiers", "types", "errors"},
    "custom_logging": {"custom_logging", "configure", "levels", "socket_handler", "file_handler"},
}


def _lines_from(outcome: Outcome, source: str) -> list[str]:
    """The console lines written by ``source`` (a SOURCES key, or 'app' for the example's modules)."""
    chosen = []
    for line in _console_lines(outcome):
        loose = ANY_LINE.match(line)
        assert loose, f"not a console log line: {line!r}"
        module = loose["module"]
        if module in APP_MODULES and not loose["name"].startswith("lab_utils"):
            owner = "app"
        else:
            owner = next((key for key, modules in SOURCES.items() if module in modules), module)
        if owner == source:
            chosen.append(line)
    return chosen


_SHAPE_CASES = [pytest.param(flavour, source, id=f"{flavour}-{source}")
                for flavour in FLAVOURS for source in ("app", "custom_logging", "socket_comm")]
_SHAPE_CASES += [pytest.param(OLD, "database", id=f"{OLD}-database"),
                 pytest.param(NEW, "database", id=f"{NEW}-database")]


@pytest.mark.parametrize(("flavour", "source"), _SHAPE_CASES)
def test_log_lines_have_0_5_4_console_shape(outcomes, flavour, source):
    lines = _lines_from(outcomes[flavour], source)
    assert lines, f"{flavour}: no console line from {source}"
    for line in lines:
        match = CONSOLE_LINE.match(line)
        assert match, f"not in 0.5.4's console layout: {line!r}"
        assert match["module"].strip() in KNOWN_MODULES, f"module not as 0.5.4 names it: {line!r}"
        assert match["name"].strip() in ("instrument", "instrument-cli"), f"not the app's logger: {line!r}"


def _app_lines(outcome: Outcome) -> list[tuple[str, ...]]:
    """(level, name, module, function, message) of the example's own daemon records, digits masked."""
    found = []
    for line in split_log_lines(outcome.daemon_output)[0]:
        match = CONSOLE_LINE.match(line)
        if match and match["module"].strip() in APP_MODULES:
            found.append((match["level"], match["name"].strip(), match["module"].strip(),
                          match["function"].strip(), re.sub(r"\d+", "#", match["message"])))
    return found


def test_the_app_logs_the_same_records(outcomes):
    old, new = _app_lines(outcomes[OLD]), _app_lines(outcomes[NEW])
    assert old, "no app log lines found under 0.5.4"
    assert new == old


def test_same_rows_in_postgresql(outcomes):
    old, new = outcomes[OLD].rows, outcomes[NEW].rows
    assert len(old) >= MIN_ROWS and len(new) >= MIN_ROWS
    for rows in (old, new):
        values = [(power, temperature) for _, power, temperature in rows]
        assert values == expected_readings(len(values))
        times = [time for time, _, __ in rows]
        assert times == sorted(times) and all(t is not None and t.tzinfo is not None for t in times)
