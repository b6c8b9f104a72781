#!/usr/bin/env bash
# Where a 64-client write run's time goes, on a fresh local 3-node cluster
# (scripts/cluster-up.sh, in a temporary directory under $TMPDIR, stopped by PID at the end):
# after a 2 s warm-up, 64 clients write for 5 s (state set, 256-byte values), and it prints
# writes/s, writes per Raft entry (the leader's last log index before and after), the CPU time
# per write of each node and of `aide bench` (from /proc), and the machine's idle share over
# the run (from /proc/stat). TMPDIR=/dev/shm puts the cluster on tmpfs (no disk waits);
# BENCH_LOG_DIR=/dev/shm only the nodes' Raft logs (no waits for the log's flushes).
# BENCH_FLAGS adds flags to the measured run (such as "--connections 4"); BENCH_OP measures
# another operation (such as health: CPU per call of the call alone), BENCH_REMOTE other
# endpoints (such as 127.0.0.1:7421 alone: every call on the node that leads after start).
# Usage: scripts/bench-rounds.sh [RUNS] (default 1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
aide=${AIDE_BIN:-$root/target/release/aide}
runs=${1:-1}
[ -x "$aide" ] || (cd "$root" && cargo build --release --quiet)
remote=127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423
op=${BENCH_OP:-state-set}
target=${BENCH_REMOTE:-$remote}
ticks=$(getconf CLK_TCK)
work=$(mktemp -d)
logs=""
if [ -n "${BENCH_LOG_DIR:-}" ]; then logs=$(mktemp -d -p "$(cd "$BENCH_LOG_DIR" && pwd)"); fi
export AIDE_BIN=$aide AIDE_CLUSTER_DIR=$work/cluster
cleanup() {
  "$root/scripts/cluster-down.sh" >/dev/null 2>&1 || true
  rm -rf "$work" ${logs:+"$logs"}
}
trap cleanup EXIT
# User + system clock ticks of each node, in node order.
node_ticks() {
  for id in 1 2 3; do
    sed 's/.*) //' "/proc/$(cat "$AIDE_CLUSTER_DIR/node$id.pid")/stat" | awk '{printf "%d ", $12 + $13}'
  done
}
last_index() {
  "$aide" --remote "$remote" cluster status --format=json |
    python3 -c 'import json, sys; print(max(n["last_log_index"] for n in json.load(sys.stdin)["nodes"]))'
}
for run in $(seq 1 "$runs"); do
  rm -rf "$AIDE_CLUSTER_DIR"
  if [ -n "${BENCH_LOG_DIR:-}" ]; then
    # Started once to make the data directories, then each node's Raft log moved to
    # BENCH_LOG_DIR and linked back before the measured start.
    "$root/scripts/cluster-up.sh" >/dev/null
    "$root/scripts/cluster-down.sh" >/dev/null
    for id in 1 2 3; do
      rm -rf "$logs/node$id" && mkdir -p "$logs/node$id"
      mv "$AIDE_CLUSTER_DIR/node$id/raft-log" "$logs/node$id/"
      ln -s "$logs/node$id/raft-log" "$AIDE_CLUSTER_DIR/node$id/raft-log"
    done
  fi
  "$root/scripts/cluster-up.sh" >/dev/null
  "$aide" --remote "$target" --project rounds bench --ops "$op" --clients 64 --duration 2s --warmup 0s >/dev/null
  first=$(last_index)
  read -r -a before <<<"$(node_ticks)"
  cpu_before=$(head -1 /proc/stat)
  TIMEFORMAT='%U %S'
  { time "$aide" --remote "$target" --project rounds bench --ops "$op" --clients 64 --duration 5s --warmup 0s --prepared ${BENCH_FLAGS:-} >"$work/out"; } 2>"$work/time"
  cpu_after=$(head -1 /proc/stat)
  read -r -a after <<<"$(node_ticks)"
  last=$(last_index)
  "$root/scripts/cluster-down.sh" >/dev/null
  # The bench line: "state-set clients 64 N ops/s ... (COUNT ops, E errors)".
  writes=$(sed 's/.*(\([0-9]*\) ops.*/\1/' "$work/out")
  read -r user sys <"$work/time"
  # /proc/stat's cpu line: user nice system idle iowait irq softirq steal ...
  idle=$(printf '%s\n%s\n' "$cpu_before" "$cpu_after" | awk '
    { t = 0; for (i = 2; i <= 9; i++) t += $i; total[NR] = t; idle[NR] = $5 }
    END { printf "%.0f", 100 * (idle[2] - idle[1]) / (total[2] - total[1]) }')
  # Writes for state set and memory add, else calls; per Raft entry only when entries were made.
  case $op in state-set | memory-add) what=write ;; *) what=call ;; esac
  awk -v r="$run" -v o="$(awk '{print $4}' "$work/out")" -v w="$writes" -v e=$((last - first)) \
    -v t="$ticks" -v u="$user" -v s="$sys" -v i="$idle" -v what="$what" \
    -v n1=$((after[0] - before[0])) -v n2=$((after[1] - before[1])) -v n3=$((after[2] - before[2])) 'BEGIN {
      per_entry = e > 0 ? sprintf(", %.1f %ss per entry", w / e, what) : ""
      printf "run %s: %s %ss/s%s, CPU per %s: node1 %.0f us, node2 %.0f us, node3 %.0f us, bench %.0f us; machine idle %s%%\n",
        r, o, what, per_entry, what, n1 / t * 1e6 / w, n2 / t * 1e6 / w, n3 / t * 1e6 / w, (u + s) * 1e6 / w, i }'
done
