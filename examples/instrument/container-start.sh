#!/bin/sh
# Runs the example in one container: the simulated instrument on a pty, the daemon, and then
# (EXAMPLE_AUTOSTART=1, the default) `device --on` and `logging --start --use-database`, so that
# rows arrive in the database without anyone typing a command. SIGTERM (docker stop) reaches the
# daemon, which runs its quit(); the simulator stops after it.
#
# Settings (environment): EXAMPLE_TTY (pty link, /tmp/instrument-tty, must match conf/device.ini),
# EXAMPLE_PID_FILE (/tmp/instrument.pid), EXAMPLE_AUTOSTART (1), EXAMPLE_START_TIMEOUT (60 s),
# and the port the daemon listens on: LABUTILS_SERVER_PORT (else conf/server.ini's 1507).
set -eu
cd "$(dirname "$0")"
tty_link=${EXAMPLE_TTY:-/tmp/instrument-tty}
pid_file=${EXAMPLE_PID_FILE:-/tmp/instrument.pid}
port=${LABUTILS_SERVER_PORT:-1507}
timeout=${EXAMPLE_START_TIMEOUT:-60}

python3 simulator.py --link "$tty_link" >/dev/null &
simulator=$!

python3 daemon.py --pid-file "$pid_file" &
daemon=$!
trap 'kill -TERM "$daemon" 2>/dev/null || true' TERM INT

# Listening: read from /proc, because a probe connection would be a message to the daemon.
listening() {
    hex=$(printf ':%04X ' "$port")
    grep -q "$hex[0-9A-F]*:0000 0A" /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

if [ "${EXAMPLE_AUTOSTART:-1}" = 1 ]; then
    waited=0
    until listening; do
        if ! kill -0 "$daemon" 2>/dev/null; then
            echo "container-start.sh: the daemon exited before listening on port $port" >&2
            break
        fi
        if [ "$waited" -ge $((timeout * 10)) ]; then
            echo "container-start.sh: the daemon does not listen on port $port after ${timeout} s" >&2
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    # The CLI's own errors are for this terminal, not alarms for the lab
    if listening; then
        LABUTILS_ALARMLOGGER_ACTIVE=0 python3 cli.py device --on
        LABUTILS_ALARMLOGGER_ACTIVE=0 python3 cli.py logging --start --use-database || true
    fi
fi

# The first wait returns when the trap fires; the second collects the daemon's exit status.
status=0
wait "$daemon" || status=$?
if kill -0 "$daemon" 2>/dev/null; then
    status=0
    wait "$daemon" || status=$?
fi
kill -TERM "$simulator" 2>/dev/null || true
wait "$simulator" || true
exit "$status"
