#!/usr/bin/env bash
# A throwaway Redis for tests and benchmarks (shared rate limits). Idempotent.
#
#   scripts/redis.sh [start]   install (Debian) if absent, start; print the URL
#                              (redis://127.0.0.1:PORT/0): CHATD_TEST_REDIS_URL for tests
#   scripts/redis.sh env       the same, printed as `export CHATD_TEST_REDIS_URL='...'`
#   scripts/redis.sh url       print the URL of the running instance
#   scripts/redis.sh stop      stop the instance
#
# Env: CHATD_REDIS_DIR (default /tmp/chatd-redis), CHATD_REDIS_PORT (default 56379, or a
# free port if that one is taken by something else). The URL is also written to
# $CHATD_REDIS_DIR/url. In memory only: no snapshots, no append-only file.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DIR="${CHATD_REDIS_DIR:-/tmp/chatd-redis}"
PIDFILE="$DIR/redis.pid"
PORTFILE="$DIR/port"
LOG="$DIR/redis.log"
URLFILE="$DIR/url"

if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis.sh Redis redis-server
fi

running() {
    [ -f "$PIDFILE" ] && [ -f "$PORTFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null &&
        redis-cli -h 127.0.0.1 -p "$(cat "$PORTFILE")" ping 2>/dev/null | grep -q PONG
}

print_url() {
    local url="redis://127.0.0.1:$(cat "$PORTFILE")/0"
    echo "$url" >"$URLFILE"
    if [ "${1:-}" = export ]; then echo "export CHATD_TEST_REDIS_URL='$url'"; else echo "$url"; fi
}

start() {
    mkdir -p "$DIR"
    if ! running; then
        local port="${CHATD_REDIS_PORT:-56379}"
        if port_in_use "$port"; then port="$(free_port)"; fi
        echo "$port" >"$PORTFILE"
        redis-server --port "$port" --bind 127.0.0.1 --dir "$DIR" --daemonize yes \
            --pidfile "$PIDFILE" --logfile "$LOG" --save "" --appendonly no >/dev/null
        local i
        for i in $(seq 1 100); do
            if running; then break; fi
            sleep 0.05
        done
        if ! running; then
            echo "redis.sh: Redis did not start; see $LOG" >&2
            exit 1
        fi
    fi
    print_url "${1:-}"
}

stop() {
    if running; then
        redis-cli -h 127.0.0.1 -p "$(cat "$PORTFILE")" shutdown nosave >/dev/null 2>&1 || true
    fi
}

case "${1:-start}" in
start) start ;;
env) start export ;;
url) running && print_url ;;
stop) stop ;;
*)
    echo "usage: $0 [start|env|url|stop]" >&2
    exit 2
    ;;
esac
