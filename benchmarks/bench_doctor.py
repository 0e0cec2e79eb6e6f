#!/usr/bin/env python3
"""The pickle doctor against the floor, a plain `pickletools.dis` of the same pickle, in one run.

    python benchmarks/bench_doctor.py [--runs N] [PICKLE]      (pixi run bench-doctor)

Both run as processes (start-up included), alternating: the doctor reads the
pickle once, symbolically, so it should cost about what disassembling it does.
Without PICKLE, the largest committed test pickle.
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
