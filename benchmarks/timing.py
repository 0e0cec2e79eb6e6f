"""Timing two commands against each other in one run: the benchmarks' shared floor."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable


def timed(command: list[str], cwd: str | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    return time.perf_counter() - start


def alternate(floor: Callable[[], float], work: Callable[[], float], runs: int) -> tuple[float, float]:
    """Medians of ``runs`` alternating timings, so both see the same machine state."""
    floors, works = [], []
    for _ in range(runs):
        floors.append(floor())
        works.append(work())
    return statistics.median(floors), statistics.median(works)
