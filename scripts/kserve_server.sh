#!/usr/bin/env bash
# A real KServe v2 inference server on CPU for the tests: MLServer 1.7.1 serving ONNX models
# through the small custom runtime in tests/kserve/kernos_mlserver_onnx.py (MLServer has no
# ONNX runtime of its own), from a model repository `kernos models export` wrote.
#
#   scripts/kserve_server.sh setup                          create .venv-kserve when missing
#   scripts/kserve_server.sh serve REPO HTTP_PORT GRPC_PORT  serve REPO on 127.0.0.1
#
# The virtualenv is separate from .venv: MLServer pins its own FastAPI, Starlette and
# OpenTelemetry versions, which must never touch the kernel's.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
KSERVE_VENV=.venv-kserve
REQUIREMENTS=scripts/kserve-requirements.txt
STAMP=$KSERVE_VENV/.kernos-kserve-installed

log() { echo "kserve_server: $*" >&2; }

setup() {
  # Re-install only when the pinned requirements changed since the last successful install.
  if [ -f "$STAMP" ] && cmp -s "$STAMP" "$REQUIREMENTS"; then
    return 0
  fi
  local started=$SECONDS
  log "creating $KSERVE_VENV (mlserver + onnxruntime; about a minute the first time here)"
  rm -rf "$KSERVE_VENV"
  "$PYTHON" -m venv "$KSERVE_VENV"
  "$KSERVE_VENV/bin/pip" install -qq --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$STAMP"
  log "$KSERVE_VENV ready in $((SECONDS - started)) s"
}

serve() {
  local usage="usage: $0 serve REPO HTTP_PORT GRPC_PORT"
  local repo=${1:?$usage} http_port=${2:?$usage} grpc_port=${3:?$usage}
  setup
  # One process (no worker pool: 2 cores), metrics on a port of their own next to gRPC's.
  PYTHONPATH="$PWD/tests/kserve${PYTHONPATH:+:$PYTHONPATH}" \
    MLSERVER_HOST=127.0.0.1 \
    MLSERVER_HTTP_PORT="$http_port" \
    MLSERVER_GRPC_PORT="$grpc_port" \
    MLSERVER_METRICS_PORT="${MLSERVER_METRICS_PORT:-0}" \
    MLSERVER_PARALLEL_WORKERS=0 \
    exec "$KSERVE_VENV/bin/mlserver" start "$repo"
}

case "${1:-}" in
  setup) setup ;;
  serve) shift; serve "$@" ;;
  *)
    echo "usage: $0 setup | serve REPO HTTP_PORT GRPC_PORT" >&2
    exit 2
    ;;
esac
