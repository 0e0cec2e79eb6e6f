#!/usr/bin/env python3
"""A full offline run of predict.py on bundled data, for newcomers.

Uses this Python's test model (tests/models/model_3_XY.pkl, a 2-argument model)
and the small live-shaped data in examples/, writes the predictions CSV into the
folder you run it from (INIT_CWD, which pixi and its PyPI twin set; else the
current folder), where it stays, and shows its first rows. Extra arguments go to
predict.py (relative paths from your folder too).
"""

from __future__ import annotations

import os
import sys

from numerai_predict import runner
from numerai_predict.values import user_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(extra: list[str]) -> int:
    tag = f"{sys.version_info[0]}_{sys.version_info[1]}"
    model = os.path.join(ROOT, "tests", "models", f"model_{tag}.pkl")
    if not os.path.exists(model):
        print(f"demo: no example model for Python {tag.replace('_', '.')} ({model})", file=sys.stderr)
        return 2
    out = user_folder()
    before = set(os.listdir(out)) if os.path.isdir(out) else set()
    code = runner.main(["--model", model,
                         "--dataset", os.path.join(ROOT, "examples", "live.parquet"),
                         "--benchmarks", os.path.join(ROOT, "examples", "live_benchmark_models.parquet"),
                         "--output_dir", out, *extra])
    made = sorted(name for name in os.listdir(out) if name.endswith(".csv") and name not in before) \
        if os.path.isdir(out) else []
    for name in made:
        with open(os.path.join(out, name)) as handle:
            lines = handle.readlines()
        print(f"\n{os.path.join(out, name)} (kept in the folder you ran the demo from): "
              f"{len(lines) - 1} predictions; first rows:")
        print("".join(lines[:6]), end="")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
