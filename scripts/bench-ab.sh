#!/usr/bin/env bash
# An A/B of two aide builds on the local 3-node cluster of scripts/cluster-up.sh: ROUNDS rounds,
# each starting a fresh cluster of each build in turn (A then B in odd rounds, B then A in even
# ones: a machine that slows down or speeds up during the run favours neither), and measuring
# one client's state set (p50, 5 s after 2 s of warm-up) and 64 clients' state sets (ops/s, 5 s
# after a 2 s warm-up run). For the 64-client run it also measures the CPU time spent per write
# (user + system time of the three node processes, from /proc, and of `aide bench` itself,
# divided by the writes it made) and the bytes the three nodes wrote to disk per write
# (write_bytes of /proc/PID/io: the log, the database and the audit log, counted in whole pages
# as they are dirtied; 0 if the temporary directory is on tmpfs). Prints every round and the
# median of each column per build. Use an even number of rounds.
# AB_OP=state-get (or state-get-stale, memory-add, ...) measures that operation instead of state
# set; the columns are then per operation. The one-client run writes the keys the reads pick
# from (all runs of a round use one project), and a build with `aide bench --prepared` does not
# write them again inside the measured 64-client run (an older build does: 1000 writes, whose
# CPU then counts towards its reads).
# Alternating the builds in one session is what makes differences on a busy 2-core machine
# visible at all; the CPU time per write moves much less with other load on the machine (the
# host's included) than ops/s does, so it is the figure to trust when the two disagree.
# Usage: scripts/bench-ab.sh A_BINARY B_BINARY [ROUNDS]
#   e.g. git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release)
#        scripts/bench-ab.sh /tmp/old/target/release/aide target/release/aide 4
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
a=${1:?usage: $0 A_BINARY B_BINARY [ROUNDS]}
b=${2:?usage: $0 A_BINARY B_BINARY [ROUNDS]}
rounds=${3:-4}
op=${AB_OP:-state-set}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
remote=127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423
ticks=$(getconf CLK_TCK)
# User + system clock ticks of the processes whose PID files are in $1.
node_ticks() {
  local sum=0 pid
  for f in "$1"/node*.pid; do
    pid=$(cat "$f")
    # Fields 14 and 15 of /proc/PID/stat, counted after the command name in parentheses.
    sum=$((sum + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
  done
  echo "$sum"
}
# Bytes the processes whose PID files are in $1 have written to storage.
node_disk_bytes() {
  local sum=0 pid
  for f in "$1"/node*.pid; do
    pid=$(cat "$f")
    sum=$((sum + $(awk '/^write_bytes/ {print $2}' "/proc/$pid/io")))
  done
  echo "$sum"
}
echo "$op: round build p50_ms ops_per_s cpu_us_per_op(nodes+bench) cpu_us_per_op(nodes) disk_bytes_per_op(nodes)"
for round in $(seq 1 "$rounds"); do
  # A then B in odd rounds, B then A in even ones, so that a machine that slows down or speeds
  # up during the run does not favour either build.
  order="A B"
  [ $((round % 2)) -eq 0 ] && order="B A"
  for side in $order; do
    bin=$a
    [ "$side" = B ] && bin=$b
    dir="$work/cluster-$side-$round"
    AIDE_BIN=$bin AIDE_CLUSTER_DIR=$dir "$root/scripts/cluster-up.sh" >/dev/null
    p50=$("$bin" --remote "$remote" bench --project ab --ops "$op" --clients 1 --duration 5s --warmup 2s | awk '{print $7}')
    "$bin" --remote "$remote" bench --project ab --ops state-set --clients 64 --duration 2s --warmup 0s >/dev/null
    prepared=()
    if [ "$op" != state-set ] && "$bin" bench --help | grep -q -- --prepared; then prepared=(--prepared); fi
    before=$(node_ticks "$dir")
    disk_before=$(node_disk_bytes "$dir")
    TIMEFORMAT='%U %S'
    { time "$bin" --remote "$remote" bench --project ab --ops "$op" --clients 64 --duration 5s --warmup 0s "${prepared[@]}" >"$work/out" 2>/dev/null; } 2>"$work/time"
    after=$(node_ticks "$dir")
    disk_after=$(node_disk_bytes "$dir")
    AIDE_BIN=$bin AIDE_CLUSTER_DIR=$dir "$root/scripts/cluster-down.sh" >/dev/null
    # The bench line: "OP clients 64 N ops/s ... (COUNT ops, E errors)".
    read -r ops writes < <(awk '{w = $0; sub(/.*\(/, "", w); sub(/ ops.*/, "", w); print $4, w}' "$work/out")
    read -r user sys <"$work/time"
    awk -v r="$round" -v s="$side" -v p="$p50" -v o="$ops" -v w="$writes" -v n=$((after - before)) \
      -v t="$ticks" -v u="$user" -v y="$sys" -v d=$((disk_after - disk_before)) 'BEGIN {
        nodes = n / t * 1e6 / w; bench = (u + y) * 1e6 / w
        printf "%s %s %s %s %.0f %.0f %.0f\n", r, s, p, o, nodes + bench, nodes, d / w }' | tee -a "$work/all"
  done
done
for side in A B; do
  awk -v s="$side" -v op="$op" '$2 == s { n++; for (c = 3; c <= 7; c++) v[c, n] = $c }
    function median(c,   i, j, t, a) {
      for (i = 1; i <= n; i++) a[i] = v[c, i]
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return a[int((n + 1) / 2)]
    }
    END { printf "%s median: 1-client %s p50 %.3f ms, 64-client %.0f ops/s, CPU per op %.0f us (nodes %.0f us), disk bytes per op %.0f\n", s, op, median(3), median(4), median(5), median(6), median(7) }' "$work/all"
done
