#!/usr/bin/env bash
# Stops the local cluster scripts/cluster-up.sh started: SIGTERM to each recorded PID, then
# waits (bounded) for each to exit. With --clean it also deletes the cluster's data.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${AIDE_CLUSTER_DIR:-$root/.aide/cluster}
# Whether PID runs (a zombie left by a parent that does not reap is not running).
alive() { kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" | cut -c1)" != Z ]; }
for pidfile in "$dir"/node*.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if alive "$pid"; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
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
