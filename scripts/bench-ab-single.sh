#!/usr/bin/env bash
# An A/B of two aide builds on one node alone: ROUNDS rounds (A then B in odd rounds, B then A
# in even ones), each a fresh node on 127.0.0.1:7439 and 64 clients' state sets for 5 s after
# 2 s of warm-up; prints writes/s per round and build.
# Usage: scripts/bench-ab-single.sh A_BINARY B_BINARY [ROUNDS]
set -euo pipefail
a=${1:?usage: $0 A_BINARY B_BINARY [ROUNDS]}
b=${2:?usage: $0 A_BINARY B_BINARY [ROUNDS]}
rounds=${3:-4}
for round in $(seq 1 "$rounds"); do
  order="A B"
  [ $((round % 2)) -eq 0 ] && order="B A"
  for side in $order; do
    bin=$a
    [ "$side" = B ] && bin=$b
    dir=$(mktemp -d)
    "$bin" serve --data-dir "$dir/node" --listen 127.0.0.1:7439 >"$dir/out" 2>"$dir/log" &
    pid=$!
    for _ in $(seq 1 100); do grep -q "serving on" "$dir/out" && break; sleep 0.1; done
    ops=$("$bin" --remote 127.0.0.1:7439 bench --ops state-set --clients 64 --duration 5s --warmup 2s | awk '{print $4}')
    echo "$round $side $ops"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
  done
done
