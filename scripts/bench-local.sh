#!/usr/bin/env bash
# Local-first CLI latency: in a fresh git repository with no node and no configuration, runs
# `aide state set` (a write through the command's own in-process node on .aide/data) RUNS times
# one after another (default 50), and `aide version` (process start only) as many times as a
# baseline in the same run; prints the median wall time of each and their ratio.
# Usage: scripts/bench-local.sh [RUNS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
aide=${AIDE_BIN:-$root/target/release/aide}
runs=${1:-50}
[ -x "$aide" ] || (cd "$root" && cargo build --release --quiet)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/repo/.git" "$work/home"
cd "$work/repo"
export HOME=$work/home AIDE_CONFIG=$work/home/.aide/config.yaml
unset AIDE_REMOTE AIDE_PROJECT AIDE_DATA_DIR
if (exec 3<>/dev/tcp/127.0.0.1/7420) 2>/dev/null; then
  echo "a node answers on 127.0.0.1:7420; stop it first (the CLI would use it)" >&2
  exit 1
fi

median_ms() { # command...
  local times=()
  for i in $(seq 1 "$runs"); do
    local t0 t1
    t0=$(date +%s%N)
    "$@" "$i" >/dev/null || { echo "failed: $*" >&2; exit 1; }
    t1=$(date +%s%N)
    times+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}

"$aide" state set warmup 1 >/dev/null # creates the store
write=$(median_ms "$aide" state set key)
version() { "$aide" version --json; } # ignores the run number
base=$(median_ms version)
echo "local-first CLI write (aide state set): median $write ms over $runs runs"
echo "baseline (aide version, process start): median $base ms over $runs runs"
echo "ratio: $(echo "scale=1; $write / $base" | bc)x"
