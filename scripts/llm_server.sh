#!/usr/bin/env bash
# A real OpenAI-compatible LLM server on CPU for the tests, with nothing downloaded at run time:
# `transformers serve` on a tiny random-weight model that tests/llm/build_tiny_model.py builds.
#
#   scripts/llm_server.sh setup                  create .venv-llm when missing (idempotent)
#   scripts/llm_server.sh build DIR              build the tiny model into DIR (if missing)
#   scripts/llm_server.sh serve DIR PORT [ARGS]  build if needed, then serve it on 127.0.0.1:PORT
#
# The virtualenv is separate from .venv: torch and transformers are test-only and heavy, and
# the kernel never imports them. torch is the CPU build (on these machines it installs from
# the local wheel folder pip is configured with; an unpinned torch would pull CUDA, FIELD-NOTES).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
LLM_VENV=.venv-llm
REQUIREMENTS=scripts/llm-requirements.txt
STAMP=$LLM_VENV/.kernos-llm-installed

log() { echo "llm_server: $*" >&2; }

setup() {
  # Re-install only when the pinned requirements changed since the last successful install.
  if [ -f "$STAMP" ] && cmp -s "$STAMP" "$REQUIREMENTS"; then
    return 0
  fi
  local started=$SECONDS
  log "creating $LLM_VENV (torch CPU + transformers serve; under a minute the first time here)"
  rm -rf "$LLM_VENV"
  "$PYTHON" -m venv "$LLM_VENV"
  "$LLM_VENV/bin/pip" install -qq --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$STAMP"
  log "$LLM_VENV ready in $((SECONDS - started)) s"
}

build() {
  local dir=${1:?usage: $0 build DIR}
  setup
  HF_HUB_OFFLINE=1 "$LLM_VENV/bin/python" tests/llm/build_tiny_model.py "$dir"
}

serve() {
  local dir=${1:?usage: $0 serve DIR PORT [ARGS]} port=${2:?usage: $0 serve DIR PORT [ARGS]}
  shift 2
  build "$dir"
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 exec "$LLM_VENV/bin/transformers" serve "$dir" \
    --device cpu --host 127.0.0.1 --port "$port" "$@"
}

case "${1:-}" in
  setup) setup ;;
  build) shift; build "$@" ;;
  serve) shift; serve "$@" ;;
  *)
    echo "usage: $0 setup | build DIR | serve DIR PORT [ARGS]" >&2
    exit 2
    ;;
esac
