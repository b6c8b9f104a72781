#!/usr/bin/env bash
# Starts a local 3-node aide cluster on 127.0.0.1:7421, 7422 and 7423, each node from its file
# in cluster/, data under .aide/cluster/ (or $AIDE_CLUSTER_DIR). Nodes are started by PID and
# their PIDs kept in the data directory; scripts/cluster-down.sh stops exactly those.
# Running it again on an existing cluster directory restarts the same members with their data.
# --tls: TLS for clients and mutual TLS between the nodes, with development certificates made by
# `aide cert` in <cluster dir>/certs (kept across runs); clients then need --tls-ca.
# AIDE_CLUSTER_PORTS=P1,P2,P3 puts the nodes on other ports than the files in cluster/ say.
set -euo pipefail
tls=0
for arg in "$@"; do
  case "$arg" in
    --tls) tls=1 ;;
    *) echo "unknown argument $arg; usage: $0 [--tls]" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${AIDE_CLUSTER_DIR:-$root/.aide/cluster}
aide=${AIDE_BIN:-$root/target/release/aide}
if [ ! -x "$aide" ]; then
  echo "building aide (release)..." >&2
  (cd "$root" && cargo build --release --quiet)
fi
ports=${AIDE_CLUSTER_PORTS:-7421,7422,7423}
IFS=, read -r port1 port2 port3 extra <<<"$ports"
if ! [[ "$port1" =~ ^[0-9]+$ && "$port2" =~ ^[0-9]+$ && "$port3" =~ ^[0-9]+$ ]] || [ -n "$extra" ]; then
  echo "AIDE_CLUSTER_PORTS must be three ports, like 7421,7422,7423 (it is $ports)" >&2
  exit 2
fi
mkdir -p "$dir"
certs="$dir/certs"
client_tls=()
if [ "$tls" = 1 ]; then
  if [ ! -f "$certs/ca.pem" ]; then
    "$aide" cert ca --dir "$certs" >/dev/null
    for id in 1 2 3; do "$aide" cert issue "node$id" --dir "$certs" >/dev/null; done
  fi
  client_tls=(--tls-ca "$certs/ca.pem")
fi
# The three nodes share this machine's cores: each gets a third of them as async worker threads
# (at least one; AIDE_NODE_THREADS overrides). A build older than `serve --threads` gets its default.
threads=${AIDE_NODE_THREADS:-$((($(nproc) + 2) / 3))}
thread_flag=()
if "$aide" serve --help 2>/dev/null | grep -q -- --threads; then thread_flag=(--threads "$threads"); fi
# Whether PID runs (a zombie left by a parent that does not reap is not running).
alive() { kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" | cut -c1)" != Z ]; }

start_node() {
  local id=$1
  local pidfile="$dir/node$id.pid"
  if [ -f "$pidfile" ] && alive "$(cat "$pidfile")"; then
    echo "node $id already running (pid $(cat "$pidfile"))"
    return
  fi
  : >"$dir/node$id.out"
  local port_var="port$id"
  local where=(--listen "127.0.0.1:${!port_var}")
  if [ "$id" != 1 ]; then where+=(--join "127.0.0.1:$port1"); fi
  local node_tls=()
  if [ "$tls" = 1 ]; then
    node_tls=(--tls-ca "$certs/ca.pem" --tls-cert "$certs/node$id.pem" --tls-key "$certs/node$id.key")
  fi
  "$aide" serve --config "$root/cluster/node$id.yaml" --data-dir "$dir/node$id" "${where[@]}" "${thread_flag[@]}" \
    "${node_tls[@]}" \
    >"$dir/node$id.out" 2>>"$dir/node$id.log" &
  echo $! >"$pidfile"
  # Wait (bounded) for the node to say it serves.
  for _ in $(seq 1 100); do
    if grep -q "serving on" "$dir/node$id.out"; then
      echo "$(cat "$dir/node$id.out") pid $(cat "$pidfile")"
      return
    fi
    if ! alive "$(cat "$pidfile")"; then
      echo "node $id exited; see $dir/node$id.log" >&2
      tail -n 5 "$dir/node$id.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "node $id did not start within 10 s; see $dir/node$id.log" >&2
  exit 1
}

start_node 1
start_node 2
start_node 3

remote=127.0.0.1:$port1,127.0.0.1:$port2,127.0.0.1:$port3
# How many of the three nodes are voters (members added since, such as a fourth node, aside).
voters() {
  local members n=0
  members=$("$aide" --remote "$remote" "${client_tls[@]}" cluster members 2>/dev/null || true)
  for port in "$port1" "$port2" "$port3"; do
    if grep -qE "^[0-9]+ 127\.0\.0\.1:$port voter" <<<"$members"; then n=$((n + 1)); fi
  done
  echo "$n"
}
# Wait (bounded) until all three are voters.
for _ in $(seq 1 100); do
  if [ "$(voters)" = 3 ]; then
    # The last membership changes reach every node's state machine a moment later: wait
    # (bounded) for every node to have applied the leader's log, so the status shows the
    # cluster settled rather than in the middle of forming (it is shown either way).
    for _ in $(seq 1 30); do
      status=$("$aide" --remote "$remote" "${client_tls[@]}" cluster status --format json 2>/dev/null || true)
      if grep -qE '"lag": 0(,|$)' <<<"$status" && ! grep -qE '"lag": ([1-9]|null)' <<<"$status"; then
        break
      fi
      sleep 0.1
    done
    "$aide" --remote "$remote" "${client_tls[@]}" cluster status
    echo
    echo "export AIDE_REMOTE=$remote"
    if [ "$tls" = 1 ]; then echo "export AIDE_TLS_CA=$certs/ca.pem"; fi
    exit 0
  fi
  sleep 0.1
done
echo "the cluster did not form within 10 s" >&2
"$aide" --remote "$remote" "${client_tls[@]}" cluster status >&2 || true
exit 1
