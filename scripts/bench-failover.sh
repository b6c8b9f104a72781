#!/usr/bin/env bash
# Measures how long a local 3-node cluster (scripts/cluster-up.sh, fresh, in a temporary
# directory, stopped at the end) stops taking writes when its leader is killed with SIGKILL.
# Each run: one closed-loop client writes (aide bench, state-set, all three endpoints) for 6 s;
# 2 s in, the leader's PID gets SIGKILL; the write in
# flight then completes only once the survivors have a new leader, so the run's maximum write
# latency bounds the time from the kill to the first write accepted. The killed node is then
# restarted and the cluster waits for three voters before the next run. Prints each run's
# figure and the median. Usage: scripts/bench-failover.sh [RUNS] (default 5).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
aide=${AIDE_BIN:-$root/target/release/aide}
runs=${1:-5}
remote=127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423
# A fresh cluster of its own, in a temporary directory, stopped (by PID) when the script ends.
work=$(mktemp -d)
dir=$work/cluster
export AIDE_BIN=$aide AIDE_CLUSTER_DIR=$dir
cleanup() {
  "$root/scripts/cluster-down.sh" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"$root/scripts/cluster-up.sh" >/dev/null

leader_id() {
  "$aide" --remote "$remote" cluster members --format json 2>/dev/null |
    grep -o '"leader_id": *[0-9]*' | grep -o '[0-9]*$'
}

results=()
for run in $(seq 1 "$runs"); do
  # Bounded wait for a leader every node agrees on.
  id=""
  for _ in $(seq 1 100); do
    id=$(leader_id || true)
    [ -n "$id" ] && [ "$id" != 0 ] && break
    sleep 0.1
  done
  [ -n "$id" ] && [ "$id" != 0 ] || { echo "no leader" >&2; exit 1; }
  out=$(mktemp)
  "$aide" --remote "$remote" --format json bench --ops state-set --clients 1 \
    --duration 6s --warmup 0s >"$out" &
  bench=$!
  sleep 2
  kill -KILL "$(cat "$dir/node$id.pid")"
  wait "$bench"
  max=$(grep -o '"max_ms": *[0-9.]*' "$out" | grep -o '[0-9.]*$')
  errors=$(grep -o '"errors": *[0-9]*' "$out" | grep -o '[0-9]*$')
  rm -f "$out"
  echo "run $run: killed leader node $id; longest write $max ms; failed writes $errors"
  results+=("$max")
  "$root/scripts/cluster-up.sh" >/dev/null
done
median=$(printf '%s\n' "${results[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median over $runs runs of the longest write across a leader kill: $median ms"
