#!/usr/bin/env python3
"""A round against predict.py alone and the bare floor: cold start against warm templates, and a
scale run of up to a thousand models, locally and (--ray local) on a two-node Ray cluster here.

    python benchmarks/bench_round.py [--copies 6] [--scale 10,100,1000] [--ray local|ADDRESS]
                                                                  (pixi run -e py311 bench-round)

Cold against warm: bench.py's live-shaped data at 1x (6,000 ids x 2,400 features) and its models
of four frameworks (LightGBM at a participant's size, XGBoost, PyTorch, Keras; one this
environment lacks is skipped), ``--copies`` distinct files of each. Per framework, one model by
the bare floor (bench.py's FLOOR: one interpreter that imports pandas, reads the Parquet,
unpickles, predicts and writes the CSV) and by predict.py alone, both pinned to one CPU; then
every model as one round with --cold and one round warm, 1 local worker, pinned to one CPU.
CPU-seconds per model are the round's whole cgroup (driver, templates, every runner and model)
divided by the models; per framework, the report's per-model CPU (the runner and model
processes: a template's start is the round's, not a model's).

Scale: copies of this Python's committed test pickles (tests/models/), each a distinct file, on
the bundled small data (examples/), 2 local workers, warm: models per minute, the driver's own
CPU per model (planning, doctor, state files, locks, report: round.json's driver figures) and
its peak memory, at each count of --scale, so the growth shows; then the largest count on Ray.
Timing never fails it: exit 0 whatever the ratios.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import bench  # bench.py's data, models, floor and measure: beside this script, so on its path

ROOT = bench.ROOT
FRAMEWORKS = ("lightgbm-participant", "xgboost", "torch", "keras")
ENVIRONMENT = f"py3{sys.version_info[1]}"
SMALL = [os.path.join(ROOT, "tests", "models", f"model_3_{sys.version_info[1]}{kind}.pkl") for kind in ("", "_legacy")]
SMALL_DATA = (os.path.join(ROOT, "examples", "live.parquet"), os.path.join(ROOT, "examples",
                                                                           "live_benchmark_models.parquet"))
TARGETS = {"warm_vs_alone": 0.5, "warm_vs_floor": 0.6, "driver_cpu_per_model": 0.05}


def copies(sources: dict[str, str], count: int, folder: str) -> list[tuple[str, str, str]]:
    """(id, path, group) x count per source: distinct files, as participants' pickles are."""
    os.makedirs(folder, exist_ok=True)
    made = []
    for group, source in sources.items():
        for index in range(count):
            path = os.path.join(folder, f"{group}-{index}.pkl")
            shutil.copyfile(source, path)
            made.append((f"{group}-{index}", path, group))
    return made


def a_round(work: str, name: str, models: list[tuple[str, str, str]], data: tuple[str, str], *flags: str,
            pinned: bool = True) -> tuple[dict[str, float], dict]:
    """One round as its own process tree (its cgroup): (bench.measure's figures, round.json)."""
    manifest = os.path.join(work, f"{name}.csv")
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "model", "environment"])
        writer.writerows([ident, path, ENVIRONMENT] for ident, path, _ in models)
    out = os.path.join(work, name)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    figures = bench.measure([sys.executable, "-m", "numerai_predict.round", "--manifest", manifest,
                             "--dataset", data[0], "--benchmarks", data[1], "--output_dir", out, "--no-progress",
                             *flags], pinned, env)
    with open(os.path.join(out, "round.json")) as handle:
        report = json.load(handle)
    failed = [m for m in report["models"] if m["status"] != "ok"]
    assert not failed, (name, failed[:3])
    return figures, report


def cold_against_warm(work: str, count: int) -> list[str]:
    cache = bench.cache_folder(None)
    data = bench.live_data(cache, 6000, bench.N_FEATURES)
    present = [f for f in FRAMEWORKS if bench.has_module(bench.MODULES.get(f, f))]
    sources = {f: bench.bench_model(cache, f, bench.N_FEATURES) for f in present}
    floor, alone = {}, {}
    for framework, model in sources.items():
        samples = bench.compare(model, data, pinned=True, runs=1)
        floor[framework] = samples["floor"]["cpu"][0], samples["floor"]["wall"][0]
        alone[framework] = samples["predict"]["cpu"][0], samples["predict"]["wall"][0]
    models = copies(sources, count, os.path.join(work, "bench-models"))
    lines = [f"Cold against warm: bench data 1x (6,000 x {bench.N_FEATURES}), 1 local worker, pinned to one CPU; "
             f"CPU s and wall s per model. Per framework: the floor and predict.py alone (what a cold round runs "
             f"per model) for one model, and a warm round of its {count} copies (its template's start included).",
             "| framework | floor CPU s | alone CPU s | warm CPU s | warm vs alone | warm vs floor | alone wall s "
             "| warm wall s |", "|---|---|---|---|---|---|---|---|"]
    for framework in present:
        own = [m for m in models if m[2] == framework]
        figures, _ = a_round(work, f"warm-{framework}", own, data, "--workers", "1")
        cpu, wall = figures["cpu"] / len(own), figures["wall"] / len(own)
        lines.append(f"| {framework} | {floor[framework][0]:.2f} | {alone[framework][0]:.2f} | {cpu:.2f} | "
                     f"{cpu / alone[framework][0]:.2f} | {cpu / floor[framework][0]:.2f} | {alone[framework][1]:.2f} "
                     f"| {wall:.2f} |")
    rounds = {start: a_round(work, start, models, data, "--workers", "1", *(["--cold"] if start == "cold" else []))
              for start in ("cold", "warm")}
    n = len(models)
    mean_floor = statistics.mean(floor[f][0] for f in present)
    mean_alone = statistics.mean(alone[f][0] for f in present)
    lines += ["", "Whole rounds (one cgroup: driver, templates, runners, models) per model, against the means of "
              f"the floor ({mean_floor:.2f} CPU s) and predict.py alone ({mean_alone:.2f}):",
              f"| all {n} models, one round | CPU s/model | vs alone | vs floor | wall s/model |",
              "|---|---|---|---|---|"]
    for start, (figures, _) in rounds.items():
        lines.append(f"| {start} | {figures['cpu'] / n:.2f} | {figures['cpu'] / n / mean_alone:.2f} | "
                     f"{figures['cpu'] / n / mean_floor:.2f} | {figures['wall'] / n:.2f} |")
    warm = rounds["warm"][0]["cpu"] / n
    lines.append(f"Targets: warm <= {TARGETS['warm_vs_alone']}x alone: {verdict(warm / mean_alone, 'warm_vs_alone')}; "
                 f"<= {TARGETS['warm_vs_floor']}x the floor: {verdict(warm / mean_floor, 'warm_vs_floor')}.")
    cold_rows = [m for m in rounds["warm"][1]["models"] if m.get("start", "warm") != "warm"]
    lines.append(f"Models that started cold in the warm round: {len(cold_rows)}"
                 + "".join(f"\n- {m['id']}: {m['start']}" for m in cold_rows))
    return lines


def verdict(value: float, target: str) -> str:
    return f"{value:.2f}x, {'met' if value <= TARGETS[target] else 'NOT met'}"


def scale(work: str, counts: list[int], ray: str | None) -> list[str]:
    sources = {os.path.basename(p)[:-4]: p for p in SMALL}
    lines = ["", f"Scale: copies of {', '.join(sources)} (each a distinct file), the bundled data, warm.",
             "| models | where | wall s | models/min | driver CPU s/model | driver peak MiB | report KiB |",
             "|---|---|---|---|---|---|---|"]
    runs = [(count, "2 local workers", ["--workers", "2"]) for count in counts]
    cluster: list = []
    if ray:
        address = ray
        if ray == "local":
            address, cluster = start_local_cluster(os.path.join("/tmp", f"rb{os.getpid()}"))
        runs.append((max(counts), "Ray, 2 nodes x 1 CPU" if ray == "local" else f"Ray {address}",
                     ["--ray", address]))
    try:
        for count, where, flags in runs:
            models = copies(sources, max(1, count // len(sources)), os.path.join(work, f"scale-{count}"))
            name = f"scale-{count}-{'ray' if '--ray' in flags else 'local'}"
            figures, report = a_round(work, name, models, SMALL_DATA, *flags, pinned=False)
            n = len(models)
            driver = report["driver"]
            size = os.path.getsize(os.path.join(work, name, "round.csv")) + os.path.getsize(
                os.path.join(work, name, "round.json"))
            lines.append(f"| {n} | {where} | {figures['wall']:.1f} | {n / figures['wall'] * 60:.0f} | "
                         f"{driver['cpu_seconds'] / n:.4f} | {driver['peak_rss_mib']:.0f} | {size / 1024:.0f} |")
    finally:
        if cluster:
            stop_local_cluster(cluster)
    lines.append(f"Target: the driver's own CPU <= {TARGETS['driver_cpu_per_model']} s per model at the largest count.")
    return lines


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_local_cluster(folder: str) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """Two nodes of 1 CPU on 127.0.0.1 (ray start --head, ray start --address)."""
    ray = [sys.executable, "-m", "ray.scripts.scripts", "start", "--num-cpus", "1", "--disable-usage-stats",
           "--node-ip-address", "127.0.0.1", "--block"]

    def ports(offset: int) -> list[str]:
        names = ("--node-manager-port", "--object-manager-port", "--metrics-export-port", "--runtime-env-agent-port",
                 "--dashboard-agent-grpc-port", "--dashboard-agent-listen-port")
        base = 21000 + offset * 100
        return [x for n in names for x in (n, str(free_port()))] + [
            "--min-worker-port", str(base), "--max-worker-port", str(base + 40)]

    port = free_port()
    head = subprocess.Popen([*ray, "--head", "--port", str(port), "--include-dashboard", "false",
                             "--ray-client-server-port", str(free_port()), "--temp-dir", folder, *ports(0)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(8)
    second = subprocess.Popen([*ray, "--address", f"127.0.0.1:{port}", *ports(1)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(8)
    return f"127.0.0.1:{port}", [head, second]


def stop_local_cluster(cluster: list[subprocess.Popen[bytes]]) -> None:
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True)
    for proc in cluster:
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=6, help="models per framework, cold against warm "
                        "(default: %(default)s: 24 models)")
    parser.add_argument("--scale", default="10,100,1000", help="model counts of the scale run (default: %(default)s)")
    parser.add_argument("--ray", help="also the largest scale count on this Ray cluster; 'local': start a 2-node "
                        "one here and stop it after")
    parser.add_argument("--skip-cold-warm", action="store_true", help="the scale run only")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-round-")
    try:
        lines = [] if args.skip_cold_warm else cold_against_warm(work, args.copies)
        lines += scale(work, [int(c) for c in args.scale.split(",") if c], args.ray)
        print("\n".join(lines))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
