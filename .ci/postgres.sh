#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for tests and benchmarks.
#
#   .ci/postgres.sh          install (if missing), initdb (if needed), start (if stopped), create the
#                            role, then print the `export HOMESERVER_TEST_POSTGRES_URL=...` line
#   .ci/postgres.sh stop     stop the server (the data directory is kept)
#   .ci/postgres.sh status   say whether it runs
#   .ci/postgres.sh url      print the export line only
#
# Idempotent: every step checks before it acts, so running it twice is harmless. Works on a fresh
# Debian 12 machine that can reach only the Debian mirrors (postgresql-15 is the bookworm default).
# When run as root the server runs as the Debian `postgres` user (created if absent), because
# PostgreSQL refuses to run as root.
#
# Environment (all optional):
#   HOMESERVER_PG_PORT   port on 127.0.0.1               (default 55432)
#   HOMESERVER_PG_DATA   data directory                  (default /tmp/homeserver-pg-$PORT)
#   HOMESERVER_PG_USER   role the tests connect as       (default homeserver, password the same)
#
# The role may create databases: the test fixtures make one fresh database per test and drop it.
# This server is for tests only: it trusts local socket connections and listens on loopback only.
set -euo pipefail

PORT="${HOMESERVER_PG_PORT:-55432}"
DATA="${HOMESERVER_PG_DATA:-/tmp/homeserver-pg-${PORT}}"
ROLE="${HOMESERVER_PG_USER:-homeserver}"
PASSWORD="${ROLE}"
PG_MAJOR=15
URL="postgresql://${ROLE}:${PASSWORD}@127.0.0.1:${PORT}/postgres"

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    if [ -x "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_ctl" ]; then
        echo "/usr/lib/postgresql/${PG_MAJOR}/bin"
    elif command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/pg_ctl" ]; then
        pg_config --bindir
    fi
}

install_postgres() {
    if [ -n "$(find_bindir)" ]; then
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        log "PostgreSQL ${PG_MAJOR} is not installed and we are not root: apt-get install postgresql-${PG_MAJOR}"
        exit 1
    fi
    log "installing postgresql-${PG_MAJOR} from the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "postgresql-${PG_MAJOR}" "postgresql-client-${PG_MAJOR}"
}

# Run a command as the user that owns the server.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

ensure_owner() {
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        log "creating the postgres system user"
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
}

is_running() {
    [ -f "${DATA}/PG_VERSION" ] && as_owner "${BIN}/pg_ctl" -D "${DATA}" status >/dev/null 2>&1
}

init_cluster() {
    if [ -f "${DATA}/PG_VERSION" ]; then
        return
    fi
    log "initdb into ${DATA}"
    mkdir -p "${DATA}"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "${DATA}"
    fi
    chmod 700 "${DATA}"
    as_owner "${BIN}/initdb" -D "${DATA}" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 --username=postgres >/dev/null
    cat >>"${DATA}/postgresql.conf" <<EOF
# added by .ci/postgres.sh
listen_addresses = '127.0.0.1'
port = ${PORT}
unix_socket_directories = '${DATA}'
max_connections = 200
EOF
}

start_cluster() {
    if is_running; then
        log "already running on 127.0.0.1:${PORT}"
        return
    fi
    log "starting on 127.0.0.1:${PORT}"
    as_owner "${BIN}/pg_ctl" -D "${DATA}" -l "${DATA}/server.log" -w -t 60 start >/dev/null
    for _ in $(seq 1 60); do
        if "${BIN}/pg_isready" -q -h 127.0.0.1 -p "${PORT}"; then
            return
        fi
        sleep 0.5
    done
    log "server did not become ready; see ${DATA}/server.log"
    exit 1
}

ensure_role() {
    as_owner "${BIN}/psql" -q -h "${DATA}" -p "${PORT}" -U postgres -d postgres -v ON_ERROR_STOP=1 <<EOF
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${ROLE}') THEN
        CREATE ROLE "${ROLE}" LOGIN CREATEDB PASSWORD '${PASSWORD}';
    ELSE
        ALTER ROLE "${ROLE}" LOGIN CREATEDB PASSWORD '${PASSWORD}';
    END IF;
END
\$\$;
-- DROP DATABASE ... WITH (FORCE) in the test teardown may have to stop an autovacuum worker
-- on that database, which only pg_signal_backend members may do.
GRANT pg_signal_backend TO "${ROLE}";
EOF
}

print_url() {
    echo "export HOMESERVER_TEST_POSTGRES_URL=${URL}"
}

cmd="${1:-start}"
case "${cmd}" in
    start)
        install_postgres
        BIN="$(find_bindir)"
        ensure_owner
        init_cluster
        start_cluster
        ensure_role
        print_url
        ;;
    stop)
        BIN="$(find_bindir)"
        if [ -n "${BIN}" ] && is_running; then
            as_owner "${BIN}/pg_ctl" -D "${DATA}" -m fast -w stop >/dev/null
            log "stopped"
        else
            log "not running"
        fi
        ;;
    status)
        BIN="$(find_bindir)"
        if [ -n "${BIN}" ] && is_running; then
            log "running on 127.0.0.1:${PORT}, data in ${DATA}"
        else
            log "not running"
            exit 3
        fi
        ;;
    url)
        print_url
        ;;
    *)
        echo "usage: $0 [start|stop|status|url]" >&2
        exit 2
        ;;
esac
