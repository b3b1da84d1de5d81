#!/usr/bin/env bash
# Throwaway instances of every service the tests use, for `make test` and `.ci/run`.
#
#   scripts/services.sh start        install what is missing, start, write $STATE/env
#   scripts/services.sh stop         stop and delete everything it started
#   scripts/services.sh run -- CMD   start, run CMD with the services' variables, stop
#
# Services: PostgreSQL (Debian's server package), tests read KERNOS_TEST_PG_URL; mosquitto
# (Debian's MQTT broker), tests read KERNOS_TEST_MQTT_URL.
set -euo pipefail

# start/stop share one folder per user; `run` makes its own, so concurrent runs
# (two `make test`s, a developer and a helper) never stop each other's servers.
STATE=${KERNOS_SERVICES_DIR:-${TMPDIR:-/tmp}/kernos-services-$(id -u)}
PG_DIR=$STATE/postgres
MQTT_DIR=$STATE/mosquitto

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

install_mosquitto() {
  { command -v mosquitto || [ -x /usr/sbin/mosquitto ]; } >/dev/null && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "mosquitto is not installed; run: sudo apt-get install -y mosquitto"
    exit 1
  fi
  log "installing mosquitto from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq mosquitto >/dev/null
}

start_mosquitto() {
  install_mosquitto
  local bin port
  bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  port=$(free_port)
  mkdir -p "$MQTT_DIR"
  # Loopback only, anonymous, in memory. Sessions still persist across a client's
  # reconnects while the broker runs (what the QoS 1 tests need); the offline queue is
  # raised from mosquitto's 1000 so a test that publishes while a client is away loses none.
  cat >"$MQTT_DIR/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
log_dest stderr
log_type error
log_type warning
EOF
  chmod 644 "$MQTT_DIR/mosquitto.conf"
  # As root, mosquitto drops to its own 'mosquitto' user; it only reads its config.
  setsid "$bin" -c "$MQTT_DIR/mosquitto.conf" >"$MQTT_DIR/mosquitto.log" 2>&1 </dev/null &
  echo $! >"$MQTT_DIR/pid"
  local _
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "export KERNOS_TEST_MQTT_URL=mqtt://127.0.0.1:$port" >>"$STATE/env"
      log "mosquitto on 127.0.0.1:$port"
      return 0
    fi
    kill -0 "$(cat "$MQTT_DIR/pid")" 2>/dev/null || break
    sleep 0.1
  done
  cat "$MQTT_DIR/mosquitto.log" >&2
  log "mosquitto did not start"
  exit 1
}

stop_mosquitto() {
  [ -f "$MQTT_DIR/pid" ] || return 0
  kill "$(cat "$MQTT_DIR/pid")" 2>/dev/null || true
}

start() {
  stop
  mkdir -p "$STATE"
  : >"$STATE/env"
  start_postgres
  start_mosquitto
}

stop() {
  stop_mosquitto
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
      MQTT_DIR=$STATE/mosquitto
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
