#!/usr/bin/env bash
# 64 clients' state sets (256-byte values) against one fresh node of BINARY on 127.0.0.1:7439,
# in a temporary directory, stopped by PID at the end; prints `aide bench`'s line (ops/s, p50,
# p99, max). SERVE_FLAGS go to `aide serve` (e.g. --snapshot-every 1000000 for no snapshots).
# Usage: scripts/bench-one-node.sh BINARY DURATION WARMUP [SERVE_FLAGS...]
#   e.g. scripts/bench-one-node.sh target/release/aide 75s 0s   (the README's long runs)
set -euo pipefail
bin=${1:?usage: $0 BINARY DURATION WARMUP [SERVE_FLAGS...]}
duration=${2:?usage: $0 BINARY DURATION WARMUP [SERVE_FLAGS...]}
warmup=${3:?usage: $0 BINARY DURATION WARMUP [SERVE_FLAGS...]}
shift 3
dir=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
"$bin" serve --data-dir "$dir/node" --listen 127.0.0.1:7439 "$@" >"$dir/out" 2>"$dir/log" &
pid=$!
for _ in $(seq 1 100); do grep -q "serving on" "$dir/out" && break; sleep 0.1; done
"$bin" --remote 127.0.0.1:7439 bench --ops state-set --clients 64 --duration "$duration" --warmup "$warmup"
