#!/usr/bin/env bash
# The README's figures: `aide bench` against one node and against the local 3-node cluster
# (scripts/cluster-up.sh, fresh, in a temporary directory, stopped at the end), with 1 and 64
# concurrent clients, 256-byte values, RUNS runs each
# (default 3); prints the median of the runs for each operation: ops/s, p50 and p99 in ms.
# Usage: scripts/bench.sh [RUNS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
aide=${AIDE_BIN:-$root/target/release/aide}
runs=${1:-3}
[ -x "$aide" ] || (cd "$root" && cargo build --release --quiet)
work=$(mktemp -d)
single=""
cleanup() {
  if [ -n "$single" ]; then
    kill -TERM "$single" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$single" 2>/dev/null || break; sleep 0.1; done
  fi
  # The cluster measured is a fresh one of its own, stopped (by PID) when the script ends.
  AIDE_BIN=$aide AIDE_CLUSTER_DIR="$work/cluster" "$root/scripts/cluster-down.sh" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

ops=state-set,state-get,state-get-stale,memory-add,memory-search
# CPU time stolen by the host (the `steal` column of /proc/stat), in ticks, and all ticks:
# the share stolen while a group of runs went on says how much of the machine they had.
cpu_ticks() { awk '/^cpu /{ t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t }' /proc/stat; }
measure() { # label remote [client counts] [extra bench flags...]
  local label=$1 remote=$2 counts=${3:-1 64}
  shift 2; shift || true
  for clients in $counts; do
    : >"$work/out"
    local before after
    before=$(cpu_ticks)
    for _ in $(seq 1 "$runs"); do
      "$aide" --remote "$remote" bench --ops "$ops" --clients "$clients" --duration 5s \
        --warmup 2s "$@" >>"$work/out"
    done
    # Lines: OP clients N OPS ops/s p50 P50 ms p99 P99 ms ...; median per op and column.
    for op in ${ops//,/ }; do
      grep "^$op " "$work/out" | awk -v label="$label" -v op="$op" -v c="$clients" '
        { ops[NR] = $4; p50[NR] = $7; p99[NR] = $10 }
        function median(a, n,   i, j, t) {
          for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
          return a[int((n + 1) / 2)]
        }
        END { printf "%-10s %-16s clients %3d  %8.0f ops/s  p50 %7.3f ms  p99 %7.3f ms\n", label, op, c, median(ops, NR), median(p50, NR), median(p99, NR) }'
    done
    after=$(cpu_ticks)
    echo "$before $after" | awk -v label="$label" -v c="$clients" \
      '{ printf "%-10s (clients %d: %.1f%% of the CPU time stolen by the host)\n", label, c, 100 * ($3 - $1) / ($4 - $2) }'
  done
}

"$aide" serve --data-dir "$work/single" --listen 127.0.0.1:7429 >"$work/single.out" 2>"$work/single.log" &
single=$!
for _ in $(seq 1 100); do grep -q "serving on" "$work/single.out" && break; sleep 0.1; done
measure "1 node" 127.0.0.1:7429

AIDE_BIN=$aide AIDE_CLUSTER_DIR="$work/cluster" "$root/scripts/cluster-up.sh" >/dev/null
measure "3 nodes" 127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423
# The call alone (HealthService.Check: answered by the node, no Raft, no store): the ceiling the
# transport sets on this machine in this run, to read the other figures against.
ops=health measure "3 nodes" 127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423
# 64 clients sharing 4 connections (HTTP/2 multiplexes their calls), as the agents of one
# Claude Code session share its MCP server's connection.
ops=state-set measure "3n 4 conns" 127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423 64 --connections 4
