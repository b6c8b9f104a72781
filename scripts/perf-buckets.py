#!/usr/bin/env python3
"""Where the machine's CPU time goes during a benchmark, by process and by part of aide.

Reads the output of `perf script -F pid,tid,comm,ip,sym` of a system-wide profile with call
graphs, and prints, for each node (given by PID, in order node1 node2 node3), for `aide bench`
and for idle time, its share of all samples and the shares of its parts (each sample counted
once, for the first part below whose frame is on its stack; "other" when none is, including
samples perf could not unwind). The README's "where the time goes now" comes from:

    scripts/cluster-up.sh
    aide --remote 127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423 \
        bench --ops state-set --clients 64 --duration 7s --warmup 1s &
    sleep 2.5; perf record -a --call-graph dwarf,8192 -F 299 -o perf.data -- sleep 3
    perf script -i perf.data -F pid,tid,comm,ip,sym > samples.txt
    scripts/perf-buckets.py samples.txt $(cat .aide/cluster/node*.pid)

Usage: scripts/perf-buckets.py SAMPLES NODE1_PID NODE2_PID NODE3_PID
"""
import collections
import sys

# (part, frames that mark it), tried in this order.
PARTS = [
    ("sled writer threads", ["sled::threadpool::perform_work"]),
    ("apply", ["openraft::core::sm::worker"]),
    ("raft core", ["RaftCore<C,N,LS,SM>::runtime_loop", "RaftCore<C,N,LS,SM>::do_main"]),
    ("replication", ["ReplicationCore"]),
    ("gRPC handlers", ["H2Stream<F,B,Ex>"]),
    ("HTTP/2 server connections", ["hyper::proto::h2::server::Server"]),
    ("HTTP/2 client connections", ["H2ClientFuture", "h2::client::Connection"]),
    ("bench loop", ["aide::bench::"]),
    ("batching and proposing", ["aide::node::batch", "aide::node::propose"]),
    ("tokio parking", ["park_internal", "park_timeout", "Parker"]),
    ("epoll", ["epoll_wait"]),
]


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    nodes = {int(p): f"node{i + 1}" for i, p in enumerate(sys.argv[2:])}
    counts: collections.Counter = collections.Counter()
    totals: collections.Counter = collections.Counter()
    sample = None  # (who, frames)

    def count(s) -> None:
        if s is None:
            return
        who, frames = s
        stack = "\n".join(frames)
        part = "other"
        if who == "idle":
            part = "idle"
        elif any("raft-log-sync" in f for f in frames) or who.endswith(":raft-log-sync"):
            part = "log sync thread"
        else:
            for name, marks in PARTS:
                if any(m in stack for m in marks):
                    part = name
                    break
        who = who.split(":")[0]
        counts[(who, part)] += 1
        totals[who] += 1

    with open(sys.argv[1], errors="replace") as f:
        for line in f:
            if line.strip() == "":
                continue
            if not line[0].isspace():
                count(sample)
                fields = line.split()
                pid = int(fields[-1].split("/")[0]) if "/" in fields[-1] else 0
                comm = " ".join(fields[:-1])
                if comm == "swapper":
                    who = "idle"
                else:
                    who = nodes.get(pid, "bench")
                sample = (f"{who}:{comm}", [])
            elif sample is not None:
                sample[1].append(line.strip())
    count(sample)
    total = sum(totals.values()) or 1
    for who, n in totals.most_common():
        print(f"{who:8s} {100 * n / total:5.1f}%")
        for (w, part), m in counts.most_common():
            if w == who and 100 * m / total >= 0.5:
                print(f"    {part:28s} {100 * m / total:5.1f}%")


if __name__ == "__main__":
    main()
