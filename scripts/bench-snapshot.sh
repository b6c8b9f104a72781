#!/usr/bin/env bash
# Measures a late joiner catching up by snapshot on a large store. Starts a 3-node cluster on
# 127.0.0.1:7431-7433 in a temporary directory (snapshot every 100 entries), writes about
# MB megabytes (default 100) of memories of 60,000 bytes each, then starts a fourth node with
# --join and times how long it takes to become a voter that has applied everything, and checks
# its log for the snapshot it installed. Every node is started by PID and stopped by PID.
# Usage: scripts/bench-snapshot.sh [MB]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
aide=${AIDE_BIN:-$root/target/release/aide}
mb=${1:-100}
[ -x "$aide" ] || (cd "$root" && cargo build --release --quiet)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

start() { # id port [flags...]
  local id=$1 port=$2
  shift 2
  "$aide" serve --data-dir "$work/n$id" --listen "127.0.0.1:$port" --snapshot-every 100 "$@" \
    >"$work/n$id.out" 2>"$work/n$id.log" &
  pids+=($!)
  for _ in $(seq 1 100); do
    grep -q "serving on" "$work/n$id.out" && return
    sleep 0.1
  done
  echo "node $id did not start" >&2
  exit 1
}

voters() {
  "$aide" --remote "$1" cluster members 2>/dev/null | grep -c voter || true
}

start 1 7431
start 2 7432 --join 127.0.0.1:7431
start 3 7433 --join 127.0.0.1:7431
remote=127.0.0.1:7431,127.0.0.1:7432,127.0.0.1:7433
for _ in $(seq 1 200); do [ "$(voters 127.0.0.1:7431)" = 3 ] && break; sleep 0.1; done

count=$((mb * 1000 * 1000 / 60000))
echo "writing $count memories of 60,000 bytes (about $mb MB)..."
t0=$(date +%s.%N)
# The bench client writes them: memory-add from 8 clients until the count is reached (or 10 min).
"$aide" --remote "$remote" --project big bench --ops memory-add --clients 8 --value-size 60000 \
  --max-ops "$count" --duration 600s --warmup 0s
written=$("$aide" --remote 127.0.0.1:7431 --project big --format json memory list --limit 100000 |
  grep -o '"id"' | wc -l)
echo "stored $written memories in $(echo "$(date +%s.%N) - $t0" | bc) s"
# `cluster status` columns: ID ADDRESS ROLE STATE TERM LAST-LOG APPLIED LAG REACHABLE
status() { "$aide" --remote 127.0.0.1:7431 cluster status 2>/dev/null; }
applied=$(status | awk '$1 == 1 { print $7 }')

t1=$(date +%s.%N)
start 4 7434 --join 127.0.0.1:7431
for _ in $(seq 1 3000); do
  read -r role a4 < <(status | awk '$1 == 4 { print $3, $7 }') || true
  if [ "${role:-}" = voter ] && [ "${a4:-0}" -ge "$applied" ]; then
    break
  fi
  sleep 0.1
done
t2=$(date +%s.%N)
grep "installed a snapshot" "$work/n4.log" | tail -1 || { echo "node 4 installed no snapshot" >&2; exit 1; }
found=$("$aide" --remote 127.0.0.1:7434 --consistency stale --project big --format json memory list --limit 100000 |
  grep -o '"id"' | wc -l)
echo "node 4: voter with all $found memories $(echo "$t2 - $t1" | bc) s after it started"
[ "$found" = "$written" ] || { echo "node 4 has $found memories, expected $written" >&2; exit 1; }
