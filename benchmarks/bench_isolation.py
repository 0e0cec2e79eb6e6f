#!/usr/bin/env python3
"""The cost of the model's isolation: predict.py end to end on a test pickle,
isolated (the defaults) against --no-isolation --max-memory 0 (no namespaces,
Landlock or memory watchdog), alternating in one run. Prints the median wall
time and the peak resident memory of the whole process tree (predict.py and
every descendant, summed, sampled every 20 ms), and their ratios.

    python benchmarks/bench_isolation.py tests/models/model_3_10.pkl   # in py310
    python benchmarks/bench_isolation.py tests/models/model_3_12_legacy.pkl --runs 5  # in py312
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFF = ["--no-isolation", "--max-memory", "0"]


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and its descendants (including re-parented orphans' parent chain)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    parents[int(name)] = int(handle.read().rsplit(b")", 1)[1].split()[1])
            except OSError:
                pass
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def run(model: str, extra: list[str]) -> tuple[float, int]:
    """Wall seconds and peak tree memory of one predict.py run."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "predict.py", "--model", model, "--dataset", "examples/live.parquet",
                   "--benchmarks", "examples/live_benchmark_models.parquet", "--output_dir", out, *extra]
        start, peak = time.perf_counter(), 0
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        if proc.returncode:
            raise SystemExit(f"{' '.join(command)} failed with exit {proc.returncode}")
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    model = os.path.abspath(args.model)
    on, off = [], []
    for _ in range(args.runs):  # alternating, so both see the same machine state
        off.append(run(model, OFF))
        on.append(run(model, []))
    t_off, t_on = statistics.median(r[0] for r in off), statistics.median(r[0] for r in on)
    m_off, m_on = max(r[1] for r in off), max(r[1] for r in on)
    print(f"{os.path.basename(model)} (Python {sys.version.split()[0]}, {args.runs} runs each, 1 CPU)")
    print(f"  time     isolated {t_on:6.2f} s   not isolated {t_off:6.2f} s   ratio {t_on / t_off:.3f}")
    print(f"  peak RSS isolated {m_on / 2**20:6.0f} MiB not isolated {m_off / 2**20:6.0f} MiB ratio {m_on / m_off:.3f}")


if __name__ == "__main__":
    main()
