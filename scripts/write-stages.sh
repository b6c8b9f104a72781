#!/usr/bin/env bash
# Where one client's write waits: starts a fresh local 3-node cluster (scripts/cluster-up.sh,
# in a temporary directory, stopped at the end), lets one `aide bench` client write for 5 s,
# records system-call tracepoints of the whole machine for SECONDS (default 1) in the middle of
# that, and prints the median time of each stage of a write (scripts/write-stages.py explains
# them). Needs `perf` and the right to trace system calls (root, or perf_event_paranoid <= -1).
# Usage: scripts/write-stages.sh [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
aide=${AIDE_BIN:-$root/target/release/aide}
seconds=${1:-1}
[ -x "$aide" ] || (cd "$root" && cargo build --release --quiet)
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 2; }
work=$(mktemp -d)
export AIDE_CLUSTER_DIR="$work/cluster" AIDE_BIN="$aide"
bench=""
cleanup() {
  if [ -n "$bench" ]; then kill "$bench" 2>/dev/null || true; wait "$bench" 2>/dev/null || true; fi
  "$root/scripts/cluster-down.sh" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"$root/scripts/cluster-up.sh" >/dev/null
remote=127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423
leader=""
for _ in $(seq 1 100); do
  leader=$("$aide" --remote "$remote" cluster members --format json 2>/dev/null |
    grep -o '"leader_id": *[0-9]*' | grep -o '[0-9]*$' || true)
  [ -n "$leader" ] && [ "$leader" != 0 ] && break
  sleep 0.1
done
[ -n "$leader" ] && [ "$leader" != 0 ] || { echo "the cluster has no leader" >&2; exit 1; }
followers=()
for id in 1 2 3; do
  [ "$id" = "$leader" ] || followers+=("$(cat "$work/cluster/node$id.pid")")
done
"$aide" --remote "$remote" bench --ops state-set --clients 1 --duration 5s --warmup 0s \
  >"$work/bench.out" &
bench=$!
sleep 2
perf record -q -a -o "$work/perf.data" \
  -e syscalls:sys_enter_sendto,syscalls:sys_exit_recvfrom \
  -e syscalls:sys_enter_pwrite64,syscalls:sys_exit_fdatasync -- sleep "$seconds" 2>/dev/null
wait "$bench"
bench_pid=$bench
bench=""
cat "$work/bench.out"
perf script -i "$work/perf.data" -F comm,pid,tid,time,event,trace >"$work/samples.txt" 2>/dev/null
"$root/scripts/write-stages.py" "$work/samples.txt" "$bench_pid" \
  "$(cat "$work/cluster/node$leader.pid")" "${followers[@]}"
