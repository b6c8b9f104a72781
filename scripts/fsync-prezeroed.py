#!/usr/bin/env python3
"""What zero-filling a log file ahead of use does to fdatasync (src/raft/wal.rs's spares).

Three processes at once (as three nodes on one machine) each append 24,000-byte records to a
file of their own and fdatasync after each, 400 times, in three ways: growing the file (as a
log without spares), over 8 MiB of zeros written and flushed 4 KiB at a time (as the spares
are), and over zeros written 1 MiB at a time. Prints, per process, the fdatasync median and
90th percentile and the bytes written to storage per append (write_bytes of /proc/self/io).
The files go to $TMPDIR (default /tmp). Usage: scripts/fsync-prezeroed.py [ROUNDS]
"""
import os
import sys
import tempfile
import time
from multiprocessing import Process

APPENDS = 400
RECORD = b"x" * 24000
ZEROS = 8 << 20


def written():
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("write_bytes"):
                return int(line.split()[1])
    return 0


def one(mode, directory):
    path = os.path.join(directory, f"{mode}-{os.getpid()}")
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC)
    if mode != "growing":
        piece = 4096 if mode == "zeros-4k" else 1 << 20
        for at in range(0, ZEROS, piece):
            os.pwrite(fd, b"\0" * piece, at)
        os.fsync(fd)
    before = written()
    syncs = []
    for i in range(APPENDS):
        os.pwrite(fd, RECORD, i * len(RECORD))
        t = time.perf_counter()
        os.fdatasync(fd)
        syncs.append(time.perf_counter() - t)
    per_append = (written() - before) // APPENDS
    os.close(fd)
    os.unlink(path)
    syncs.sort()
    print(f"{mode:9} fdatasync p50 {syncs[APPENDS // 2] * 1e3:.3f} ms, "
          f"p90 {syncs[APPENDS * 9 // 10] * 1e3:.3f} ms, {per_append} bytes written per append",
          flush=True)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(rounds):
            for mode in ("growing", "zeros-4k", "zeros-1m"):
                procs = [Process(target=one, args=(mode, directory)) for _ in range(3)]
                for p in procs:
                    p.start()
                for p in procs:
                    p.join()


if __name__ == "__main__":
    main()
