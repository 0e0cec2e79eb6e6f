#!/usr/bin/env python3
"""A full offline run of predict.py on bundled data, for newcomers.

Uses this Python's test model (tests/models/model_3_XY.pkl, a 2-argument model)
and the small live-shaped data in examples/, writes the predictions CSV to a
temporary folder and shows its first rows. Extra arguments go to predict.py.
"""

from __future__ import annotations

import os
import sys
import tempfile

import predict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(extra: list[str]) -> int:
    tag = f"{sys.version_info[0]}_{sys.version_info[1]}"
    model = os.path.join(ROOT, "tests", "models", f"model_{tag}.pkl")
    if not os.path.exists(model):
        print(f"demo: no example model for Python {tag.replace('_', '.')} ({model})", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="numerai-predict-demo-") as out:
        code = predict.main(["--model", model,
                             "--dataset", os.path.join(ROOT, "examples", "live.parquet"),
                             "--benchmarks", os.path.join(ROOT, "examples", "live_benchmark_models.parquet"),
                             "--output_dir", out, *extra])
        for name in sorted(os.listdir(out)):
            if name.endswith(".csv"):
                with open(os.path.join(out, name)) as handle:
                    lines = handle.readlines()
                print(f"\n{name}: {len(lines) - 1} predictions; first rows:")
                print("".join(lines[:6]), end="")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
