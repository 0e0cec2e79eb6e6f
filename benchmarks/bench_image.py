#!/usr/bin/env python3
"""Measure an image against its floor, in one run: size against base + environment,
and `docker run` -> CSV against the same predict.py run outside Docker.

    benchmarks/bench_image.py [ENV] [--runs N]      (pixi run bench-image py311)

Prints ratios (the targets: size <= 1.05, time <= 1.3), never bare times alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import images  # containers/, on PYTHONPATH from the bench-image task
import manifest as pixi_toml
from timing import alternate, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def docker_size(image: str) -> int:
    out = subprocess.run([images.docker(), "image", "inspect", "-f", "{{.Size}}", image],
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


def tree_size(path: str) -> int:
    return int(subprocess.run(["du", "-sb", path], capture_output=True, text=True, check=True).stdout.split()[0])


def predict_args(models: str, data: str, out: str, model: str) -> list[str]:
    return ["--model", f"{models}/{model}", "--dataset", f"{data}/live.parquet",
            "--benchmarks", f"{data}/live_benchmark_models.parquet", "--output_dir", out]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env", nargs="?", default="py311")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    manifest = pixi_toml.load()
    image = f"{images.image_name(manifest, args.env)}:latest"
    runtime = images.local_prefix(manifest, f"{args.env}-runtime")
    model = f"model_{pixi_toml.python_tag(manifest, args.env)}.pkl"

    base, env, size = docker_size("debian:bookworm-slim"), tree_size(runtime), docker_size(image)
    print(f"base {base / 1e6:.0f} MB + environment {env / 1e6:.0f} MB = {(base + env) / 1e6:.0f} MB; "
          f"image {size / 1e6:.0f} MB; image / (base + environment) = {size / (base + env):.3f}")

    models, data = os.path.join(ROOT, "tests", "models"), os.path.join(ROOT, "examples")

    def in_docker() -> float:
        with tempfile.TemporaryDirectory() as out:
            os.chmod(out, 0o777)
            return timed([images.docker(), "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
                          "-v", f"{models}:/models:ro", "-v", f"{data}:/data:ro", "-v", f"{out}:/out", image,
                          *predict_args("/models", "/data", "/out", model)])

    def local() -> float:
        with tempfile.TemporaryDirectory() as out:
            return timed([os.path.join(runtime, "bin", "python"), os.path.join(ROOT, "predict.py"),
                          *predict_args(models, data, out, model)])

    local_s, docker_s = alternate(local, in_docker, args.runs)
    print(f"docker run -> CSV {docker_s:.2f} s; same run outside Docker {local_s:.2f} s "
          f"(medians of {args.runs}); docker / local = {docker_s / local_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
