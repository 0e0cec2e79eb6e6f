#!/usr/bin/env python3
"""The pickle doctor against the floor, a plain `pickletools.dis` of the same pickle, in one run.

    python benchmarks/bench_doctor.py [--runs N] [PICKLE]      (pixi run bench-doctor)

Both run as processes (start-up included), alternating: the doctor reads the
pickle once, symbolically, so it should cost about what disassembling it does.
Without PICKLE, the largest committed test pickle. Then, in this process, the
scan and the allowlist's verdict on every load-time call (what a run does before
loading) against pickletools.genops over the same bytes, for every committed pickle.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

from timing import alternate, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def largest_test_pickle() -> str:
    return max(glob.glob(os.path.join(ROOT, "tests", "models", "**", "*.pkl"), recursive=True),
               key=os.path.getsize)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("pickle", nargs="?")
    args = parser.parse_args()
    path = os.path.abspath(args.pickle or largest_test_pickle())
    dis = [sys.executable, "-c", "import pickletools, sys, os; "
           "pickletools.dis(open(sys.argv[1], 'rb'), out=open(os.devnull, 'w'))", path]
    check = [sys.executable, "predict.py", "--check", "--json", "--model", path]
    floor, doctor = alternate(lambda: timed(dis, ROOT), lambda: timed(check, ROOT), args.runs)
    print(f"{os.path.relpath(path, ROOT)} ({os.path.getsize(path):,} bytes): pickletools.dis {floor * 1000:.0f} ms; "
          f"predict.py --check --json {doctor * 1000:.0f} ms (medians of {args.runs}); ratio {doctor / floor:.2f}")
    scan_against_genops(args.runs)
    return 0


def scan_against_genops(runs: int) -> None:
    """The verdict a run computes before loading, in process, against reading the opcodes alone."""
    import pickletools
    import statistics
    import time

    from numerai_predict.pickles import scan_bytes

    def verdict(data: bytes) -> object:
        return scan_bytes(data).unsafe

    def genops(data: bytes) -> object:
        return list(pickletools.genops(data))

    pickles = sorted(glob.glob(os.path.join(ROOT, "tests", "models", "**", "*.pkl"), recursive=True))
    totals = {"genops": [], "verdict": []}
    for _ in range(runs):
        for name, work in (("genops", genops), ("verdict", verdict)):
            start = time.perf_counter()
            for path in pickles:
                with open(path, "rb") as handle:
                    work(handle.read())
            totals[name].append(time.perf_counter() - start)
    floor, scan = (statistics.median(totals[name]) * 1000 / len(pickles) for name in ("genops", "verdict"))
    print(f"{len(pickles)} committed pickles, in process: pickletools.genops {floor:.2f} ms a pickle; the doctor's "
          f"scan and allowlist verdict {scan:.2f} ms (medians of {runs}); ratio {scan / floor:.2f}")


if __name__ == "__main__":
    sys.exit(main())
