#!/usr/bin/env bash
# Throwaway instances of every service the tests use, for `make test` and `.ci/run`.
#
#   scripts/services.sh start        install what is missing, start, write $STATE/env
#   scripts/services.sh stop         stop and delete everything it started
#   scripts/services.sh run -- CMD   start, run CMD with the services' variables, stop
#
# Services: PostgreSQL (Debian's server package). Tests read KERNOS_TEST_PG_URL.
set -euo pipefail

# start/stop share one folder per user; `run` makes its own, so concurrent runs
# (two `make test`s, a developer and a helper) never stop each other's servers.
STATE=${KERNOS_SERVICES_DIR:-${TMPDIR:-/tmp}/kernos-services-$(id -u)}
PG_DIR=$STATE/postgres

log() { echo "services: $*" >&2; }

as_pg_user() {
  # initdb refuses to run as root: run the server as the 'postgres' system user.
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_bindir() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  return 1
}

install_postgres() {
  pg_bindir >/dev/null && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "PostgreSQL is not installed; run: sudo apt-get install -y postgresql"
    exit 1
  fi
  log "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql >/dev/null
  id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_postgres() {
  install_postgres
  local bin port
  bin=$(pg_bindir)
  port=$(free_port)
  rm -rf "$PG_DIR"
  mkdir -p "$PG_DIR"
  [ "$(id -u)" -eq 0 ] && chown postgres "$PG_DIR" && chmod 700 "$PG_DIR"
  as_pg_user "$bin/initdb" -D "$PG_DIR/data" -U kernos -A trust --no-sync -E UTF8 >"$STATE/initdb.log" 2>&1 \
    || { cat "$STATE/initdb.log" >&2; exit 1; }
  # fsync off: a throwaway test cluster; the kernel's durability is tested on SQLite files.
  as_pg_user "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || { cat "$PG_DIR/server.log" >&2; exit 1; }
  echo "export KERNOS_TEST_PG_URL=postgresql+psycopg://kernos@127.0.0.1:$port/postgres" >>"$STATE/env"
  log "PostgreSQL $(basename "$(dirname "$bin")") on 127.0.0.1:$port"
}

stop_postgres() {
  local bin
  bin=$(pg_bindir 2>/dev/null) || return 0
  if [ -f "$PG_DIR/data/postmaster.pid" ]; then
    as_pg_user "$bin/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
}

start() {
  stop
  mkdir -p "$STATE"
  : >"$STATE/env"
  start_postgres
}

stop() {
  stop_postgres
  rm -rf "$STATE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  run)
    shift
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || { echo "usage: $0 run -- COMMAND..." >&2; exit 2; }
    if [ -z "${KERNOS_SERVICES_DIR:-}" ]; then
      STATE=$(mktemp -d "${TMPDIR:-/tmp}/kernos-services-run.XXXXXX")
      chmod 755 "$STATE"  # the server runs as another user and must reach its folder
      PG_DIR=$STATE/postgres
    fi
    trap stop EXIT
    start
    # shellcheck disable=SC1091
    . "$STATE/env"
    "$@"
    ;;
  *)
    echo "usage: $0 start|stop|run -- COMMAND..." >&2
    exit 2
    ;;
esac
