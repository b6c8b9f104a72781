#!/usr/bin/env python3
"""Where one client's write waits, stage by stage, from system-call tracepoints.

Reads `perf script -F comm,pid,tid,time,event,trace` of a system-wide recording of the events
syscalls:sys_enter_sendto, sys_exit_recvfrom, sys_enter_pwrite64 and sys_exit_fdatasync, taken
while one `aide bench` client wrote to a 3-node cluster (scripts/write-stages.sh does all of
it). For each write (from a sendto of `aide bench` to the next data it receives) it finds, in
order: the leader's append to its log file (a pwrite64 on a Tokio worker), the end of the
leader's fdatasync (the log's sync thread), the AppendEntries arriving at a follower (its
first read of more than 100 bytes), the end of that follower's fdatasync, the leader's next
read (the follower's answer) and the response arriving at `aide bench`; and prints the median
of each stage over every write where all of them were found in that order.

Usage: scripts/write-stages.py SAMPLES BENCH_PID LEADER_PID FOLLOWER_PID...
"""
import re
import statistics
import sys

LINE = re.compile(r"^\s*(\S.*?)\s+(\d+)/(\d+)\s+([\d.]+):\s+syscalls:(\w+):\s*(.*)$")


def events(path):
    """(time, pid, comm, event, return value or byte count)."""
    out = []
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if not m:
                continue
            comm, pid, _tid, t, event, rest = m.groups()
            value = 0
            if event.startswith("sys_exit"):
                value = int(rest.strip(), 16) if rest.strip().startswith("0x") else int(rest)
            out.append((float(t), int(pid), comm, event, value))
    out.sort()
    return out


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    ev = events(sys.argv[1])
    bench, leader = int(sys.argv[2]), int(sys.argv[3])
    followers = {int(p) for p in sys.argv[4:]}

    def first(after, until, pred):
        for e in ev:
            if e[0] <= after:
                continue
            if e[0] > until:
                return None
            if pred(e):
                return e
        return None

    sends = [e[0] for e in ev if e[1] == bench and e[3] == "sys_enter_sendto"]
    names = [
        "request -> leader's log write",
        "-> end of the leader's fdatasync",
        "-> AppendEntries read by a follower",
        "-> end of that follower's fdatasync",
        "-> its answer read by the leader",
        "-> response read by the client",
    ]
    stages = [[] for _ in names]
    totals = []
    for i, t0 in enumerate(sends):
        until = sends[i + 1] if i + 1 < len(sends) else float("inf")
        steps = [
            lambda e: e[1] == leader and e[3] == "sys_enter_pwrite64" and "tokio" in e[2],
            lambda e: e[1] == leader and e[3] == "sys_exit_fdatasync" and "log-sync" in e[2],
            lambda e: e[1] in followers and e[3] == "sys_exit_recvfrom" and e[4] > 100,
            None,  # that follower's fdatasync, filled in below
            lambda e: e[1] == leader and e[3] == "sys_exit_recvfrom" and 0 < e[4] < 1 << 30,
            lambda e: e[1] == bench and e[3] == "sys_exit_recvfrom" and 0 < e[4] < 1 << 30,
        ]
        t, times, follower = t0, [], None
        for k, pred in enumerate(steps):
            if k == 3:
                pred = lambda e, f=follower: e[1] == f and e[3] == "sys_exit_fdatasync"
            e = first(t, until, pred)
            if e is None:
                break
            if k == 2:
                follower = e[1]
            times.append(e[0])
            t = e[0]
        if len(times) != len(steps):
            continue
        prev = t0
        for k, x in enumerate(times):
            stages[k].append((x - prev) * 1000)
            prev = x
        totals.append((times[-1] - t0) * 1000)
    if not totals:
        sys.exit("no write with every stage found; was one client writing during the recording?")
    print(f"medians over {len(totals)} writes (ms)")
    for name, xs in zip(names, stages):
        print(f"  {name:40s} {statistics.median(xs):6.3f}")
    print(f"  {'request to response':40s} {statistics.median(totals):6.3f}")


if __name__ == "__main__":
    main()
