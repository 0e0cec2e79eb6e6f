#!/usr/bin/env python3
"""`predict.py --help` against the floor, `python -c pass`, in one run.

    python benchmarks/bench_help.py [--runs N]        (pixi run bench-help)

Prints both medians and their ratio: --help must stay near the interpreter's
own start-up, because it imports neither pandas nor numerapi nor requests.
"""

from __future__ import annotations

import argparse
import os
import sys

from timing import alternate, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    floor, help_ = alternate(lambda: timed([sys.executable, "-c", "pass"], ROOT),
                             lambda: timed([sys.executable, "predict.py", "--help"], ROOT), runs)
    print(f"python -c pass {floor * 1000:.1f} ms; predict.py --help {help_ * 1000:.1f} ms "
          f"(medians of {runs}); ratio {help_ / floor:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
