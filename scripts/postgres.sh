#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and benchmarks. Idempotent.
#
#   scripts/postgres.sh [start]   install (Debian) if absent, init, start; print the URL
#                                 (postgresql+asyncpg://...): CHATD_TEST_PG_URL for tests
#   scripts/postgres.sh env       the same, printed as `export CHATD_TEST_PG_URL='...'`
#                                 (for `eval "$(scripts/postgres.sh env)"`)
#   scripts/postgres.sh url       print the URL of the running cluster
#   scripts/postgres.sh stop      stop the cluster (its files stay for the next start)
#
# Env: CHATD_PG_DIR (default /tmp/chatd-pg), CHATD_PG_PORT (default 55432, or a free
# port if that one is taken by something else), CHATD_PG_DB (default chatd_test).
# The URL is also written to $CHATD_PG_DIR/url. Tuned for tests: fsync is off.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PGDIR="${CHATD_PG_DIR:-/tmp/chatd-pg}"
DB="${CHATD_PG_DB:-chatd_test}"
DATA="$PGDIR/data"
LOG="$PGDIR/postgres.log"
URLFILE="$PGDIR/url"

find_bindir() {
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$dir" ] && [ -x "$dir/postgres" ]; then
        echo "$dir"
    elif command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
    fi
}

BINDIR="$(find_bindir)"
if [ -z "$BINDIR" ]; then
    apt_install postgres.sh PostgreSQL postgresql
    BINDIR="$(find_bindir)"
fi

if [ "$(id -u)" = 0 ]; then
    RUNAS=(su postgres -s /bin/sh -c)
else
    RUNAS=(sh -c)
fi

as_pg() { "${RUNAS[@]}" "cd / && $*"; }

running() { [ -f "$DATA/postmaster.pid" ] && as_pg "$BINDIR/pg_ctl -D '$DATA' status" >/dev/null 2>&1; }

running_port() { sed -n 4p "$DATA/postmaster.pid"; }

print_url() {
    local url="postgresql+asyncpg://postgres@127.0.0.1:$(running_port)/$DB"
    echo "$url" >"$URLFILE"
    if [ "${1:-}" = export ]; then echo "export CHATD_TEST_PG_URL='$url'"; else echo "$url"; fi
}

start() {
    mkdir -p "$PGDIR"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$PGDIR"; fi
    if [ ! -f "$DATA/PG_VERSION" ]; then
        as_pg "$BINDIR/initdb -D '$DATA' -U postgres -A trust -E UTF8 --no-locale" >"$PGDIR/initdb.log"
    fi
    if ! running; then
        local port="${CHATD_PG_PORT:-55432}"
        if port_in_use "$port"; then port="$(free_port)"; fi
        as_pg "$BINDIR/pg_ctl -D '$DATA' -l '$LOG' -w -t 60 start -o \
            '-p $port -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off -c max_connections=200'" >/dev/null
    fi
    local port
    port="$(running_port)"
    local exists
    exists="$(as_pg "$BINDIR/psql -h 127.0.0.1 -p $port -U postgres -d postgres -tAc \
        \"SELECT 1 FROM pg_database WHERE datname = '$DB'\"")"
    if [ "$exists" != 1 ]; then
        as_pg "$BINDIR/createdb -h 127.0.0.1 -p $port -U postgres '$DB'"
    fi
    print_url "${1:-}"
}

case "${1:-start}" in
start) start ;;
env) start export ;;
url) running && print_url ;;
stop) if running; then as_pg "$BINDIR/pg_ctl -D '$DATA' -m fast -w stop" >/dev/null; fi ;;
*)
    echo "usage: $0 [start|url|stop]" >&2
    exit 2
    ;;
esac
