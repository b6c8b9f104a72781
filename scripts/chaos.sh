#!/usr/bin/env bash
# One reproducible chaos run (tests/chaos.rs): real nodes on 127.0.0.1, six clients writing and
# reading state keys, and process faults from the seed's schedule (SIGKILL of the leader, of a
# follower, of every node; SIGSTOP of the leader or a follower past an election timeout). Prints
# the summary (operations ok / failed / indeterminate, faults, violations); on a violation it
# prints the smallest failing part of the history and exits non-zero.
# AIDE_KEEP_LOGS=DIR: when the run fails (a violation, or a cluster that never settles) the
# nodes' logs are copied into DIR.
# Usage: scripts/chaos.sh [--seed N] [--duration SECONDS] [--nodes 3|5]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seed=1 duration=60 nodes=3
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) seed=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    *) echo "unknown argument $1; usage: $0 [--seed N] [--duration SECONDS] [--nodes N]" >&2; exit 2 ;;
  esac
done
cd "$root"
AIDE_CHAOS_SEED=$seed AIDE_CHAOS_SECS=$duration AIDE_CHAOS_NODES=$nodes \
  cargo test --quiet --test chaos chaos_run -- --ignored --exact --nocapture 2>&1 |
  grep -v -E '^test result|^running|^\.?$|^test chaos_run'
