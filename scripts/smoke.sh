#!/usr/bin/env bash
# Fresh-clone smoke test of the README's run command: clone, `make run` headless for a while,
# expect exit 0 and no denial in the kernel's output or log.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
duration=${SMOKE_DURATION:-60}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

git clone --quiet "$repo" "$work/kernos"
home=$(mktemp -d -p "$work")
echo "smoke: KERNOS_HOME=$home make run ARGS='--headless --duration $duration' (fresh clone)"
status=0
(cd "$work/kernos" && KERNOS_HOME=$home make run ARGS="--headless --duration $duration") \
  >"$work/run.log" 2>&1 || status=$?
tail -n 15 "$work/run.log"
if [ "$status" -ne 0 ]; then
  echo "smoke: FAILED: make run exited $status" >&2
  exit 1
fi
if grep -qi "denied" "$work/run.log" "$home/logs/kernos.log"; then
  echo "smoke: FAILED: something was denied:" >&2
  grep -i "denied" "$work/run.log" "$home/logs/kernos.log" >&2
  exit 1
fi
grep -q "tenants   default" "$work/run.log" || { echo "smoke: FAILED: no summary" >&2; exit 1; }
echo "smoke: ok"
