"""Run a command on a busy machine: one CPU-bound process per CPU beside it, for as long as it runs.

    python tests/busy.py COMMAND [ARGS ...]

The busy-machine proof of test-all (task test-busy): a test that passes only on an
idle machine fails here. Exits with the command's code; the last line says how much
CPU the load took, so a run that was not really busy shows.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

# Each burner spins until its parent is gone (never outliving a killed run) or an hour passed.
BURN = ("import os, time\nparent, end = os.getppid(), time.monotonic() + 3600\n"
        "while os.getppid() == parent and time.monotonic() < end:\n    sum(range(100000))\n")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cpus = len(os.sched_getaffinity(0))
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(cpus)]
    print(f"busy: {cpus} CPU-bound processes beside: {' '.join(argv)}", file=sys.stderr, flush=True)
    try:
        code = subprocess.run(argv).returncode
    finally:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for burner in burners:
            burner.kill()
            burner.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    burned = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(f"busy: the load took {burned:.0f} CPU-s beside the command (exit {code})", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
