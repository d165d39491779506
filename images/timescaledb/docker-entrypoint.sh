#!/bin/bash
# Entrypoint of the offline TimescaleDB image: on first start (empty $PGDATA) create the cluster from
# the official image's variables (timescaledb preloaded and created, telemetry as
# TIMESCALEDB_TELEMETRY says), run /docker-entrypoint-initdb.d, then run the server as user postgres.
set -euo pipefail

if [ "$(id -u)" = 0 ]; then
    # As the official image: the password file is read as root (a compose secret of mode 0600 that
    # belongs to another user), before this script becomes postgres.
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ] && [ -r "$POSTGRES_PASSWORD_FILE" ]; then
        POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
        export POSTGRES_PASSWORD
        unset POSTGRES_PASSWORD_FILE
    fi
    # A fresh named volume belongs to root: hand it to postgres, then restart this script as postgres.
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "${1:-postgres}" != postgres ]; then
    exec "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    user=${POSTGRES_USER:-postgres}
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        if [ ! -r "$POSTGRES_PASSWORD_FILE" ]; then
            echo "docker-entrypoint: POSTGRES_PASSWORD_FILE=$POSTGRES_PASSWORD_FILE is not a readable file" >&2
            exit 1
        fi
        password=$(cat "$POSTGRES_PASSWORD_FILE")
    else
        password=${POSTGRES_PASSWORD:-}
    fi
    if [ -z "$password" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
        echo "docker-entrypoint: the database has no password: set POSTGRES_PASSWORD_FILE (or POSTGRES_PASSWORD)," \
             "or POSTGRES_HOST_AUTH_METHOD=trust for a throwaway server" >&2
        exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "$password" > "$pwfile"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words, as in the official image
    initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" \
        ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f "$pwfile"
    echo "host all all all ${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$PGDATA/pg_hba.conf"
    # As the official image: the extension is loaded at start, and telemetry is what
    # TIMESCALEDB_TELEMETRY says (off here: a lab's server must not call home).
    telemetry=${TIMESCALEDB_TELEMETRY:-off}
    case "$telemetry" in off|basic) ;; *) telemetry=off ;; esac
    cat >> "$PGDATA/postgresql.conf" <<CONF
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = $telemetry
listen_addresses = '*'
CONF
    # Create the database and run the init scripts on a server reachable through its socket only,
    # so that the healthcheck (TCP) does not report ready before the initialisation is complete.
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" start >/dev/null
    db=${POSTGRES_DB:-$user}
    if [ "$db" != postgres ]; then
        psql -v ON_ERROR_STOP=1 -q -U "$user" -d postgres -v db="$db" <<'SQL'
CREATE DATABASE :"db";
SQL
    fi
    # As the official image's 000_install_timescaledb.sh: in template1 (so every later database
    # has it) and in POSTGRES_DB.
    for target in template1 "$db"; do
        psql -v ON_ERROR_STOP=1 -q -U "$user" -d "$target" -c 'CREATE EXTENSION IF NOT EXISTS timescaledb' >/dev/null
    done
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sql) echo "docker-entrypoint: running $script"; psql -v ON_ERROR_STOP=1 -q -U "$user" -d "$db" -f "$script" ;;
            *.sh)
                # as the official image: executable scripts run, others are sourced
                echo "docker-entrypoint: running $script"
                if [ -x "$script" ]; then "$script"; else . "$script"; fi ;;
            *) ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "docker-entrypoint: database cluster created in $PGDATA (user $user, database $db)"
fi

unset POSTGRES_PASSWORD  # not in the server's environment
exec postgres "${@:2}"
