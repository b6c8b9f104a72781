#!/usr/bin/env bash
# Stops the local cluster scripts/cluster-up.sh started: SIGTERM to each recorded PID, then
# waits (bounded) for each to exit. With --clean it also deletes the cluster's data.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${AIDE_CLUSTER_DIR:-$root/.aide/cluster}
for pidfile in "$dir"/node*.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "pid $pid did not stop in 10 s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "stopped $(basename "$pidfile" .pid) (pid $pid)"
  fi
  rm -f "$pidfile"
done
if [ "${1:-}" = "--clean" ]; then
  rm -rf "$dir"
  echo "removed $dir"
fi
