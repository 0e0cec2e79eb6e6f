#!/usr/bin/env python3
"""`predict.py --help` against the floor, `python -c pass`, in one run.

    python benchmarks/bench_help.py [--runs N]        (pixi run bench-help)

Prints both medians and their ratio: --help must stay near the interpreter's
own start-up, because it imports neither pandas nor numerapi nor requests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    floor, help_ = [], []
    for _ in range(runs):  # alternate, so both see the same machine state
        floor.append(timed([sys.executable, "-c", "pass"]))
        help_.append(timed([sys.executable, "predict.py", "--help"]))
    f, h = statistics.median(floor), statistics.median(help_)
    print(f"python -c pass {f * 1000:.1f} ms; predict.py --help {h * 1000:.1f} ms "
          f"(medians of {runs}); ratio {h / f:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
