#!/usr/bin/env bash
# An A/B of two aide builds on one node alone: ROUNDS rounds (A then B in odd rounds, B then A
# in even ones), each a fresh node (scripts/bench-one-node.sh) and 64 clients' state sets for
# 5 s after 2 s of warm-up; prints writes/s per round and build.
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
    ops=$("$(dirname "$0")/bench-one-node.sh" "$bin" 5s 2s | awk '{print $4}')
    echo "$round $side $ops"
  done
done
