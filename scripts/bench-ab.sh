#!/usr/bin/env bash
# An A/B of two aide builds on the local 3-node cluster of scripts/cluster-up.sh: ROUNDS rounds,
# each starting a fresh cluster of build A, then of build B, and measuring one client's state
# set (p50) and 64 clients' state sets (ops/s), 5 s after 2 s of warm-up; prints every round and
# the median of each. Alternating the builds in one session is what makes small differences on a
# busy 2-core machine visible at all.
# Usage: scripts/bench-ab.sh A_BINARY B_BINARY [ROUNDS]
#   e.g. git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release)
#        scripts/bench-ab.sh /tmp/old/target/release/aide target/release/aide 3
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
a=${1:?usage: $0 A_BINARY B_BINARY [ROUNDS]}
b=${2:?usage: $0 A_BINARY B_BINARY [ROUNDS]}
rounds=${3:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
remote=127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423
for round in $(seq 1 "$rounds"); do
  for side in A B; do
    bin=$a
    [ "$side" = B ] && bin=$b
    dir="$work/cluster-$side-$round"
    AIDE_BIN=$bin AIDE_CLUSTER_DIR=$dir "$root/scripts/cluster-up.sh" >/dev/null
    p50=$("$bin" --remote "$remote" bench --ops state-set --clients 1 --duration 5s --warmup 2s | awk '{print $7}')
    ops=$("$bin" --remote "$remote" bench --ops state-set --clients 64 --duration 5s --warmup 2s | awk '{print $4}')
    AIDE_BIN=$bin AIDE_CLUSTER_DIR=$dir "$root/scripts/cluster-down.sh" >/dev/null
    echo "$round $side $p50 $ops" | tee -a "$work/all"
  done
done
for side in A B; do
  awk -v s="$side" '$2 == s { p[++n] = $3; o[n] = $4 }
    function median(a, n,   i, j, t) {
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return a[int((n + 1) / 2)]
    }
    END { printf "%s median: 1-client state set p50 %.3f ms, 64-client state set %.0f ops/s\n", s, median(p, n), median(o, n) }' "$work/all"
done
