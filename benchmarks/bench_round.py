#!/usr/bin/env python3
"""A 12-model round against predict.py alone, on 1 and 2 local workers and (--ray) a Ray cluster.

    python benchmarks/bench_round.py [--ray ADDRESS | --ray local]      (pixi run -e py311 bench-round)

The models: the committed pickles of the four Pythons (tests/models/, 8) and four more
copies, each run on the bundled live-shaped data (examples/). First each model by
predict.py alone, one after another, pinned to one CPU as the round pins them (the
floor), then the same 12 as a round. Prints, per
setting, the wall time, wall and CPU-seconds per model, and the ratios against the floor:
CPU-seconds per model (the round's own cost per model) and, for 1 worker, wall time
per model. ``--ray local`` starts a two-node cluster of 1 CPU each on 127.0.0.1 and stops it.
CPU-seconds include every predict.py and its model (wait4's rusage); for the local
rounds also the driver; for Ray only the models (the cluster's own daemons are not counted).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from numerai_predict.round.environments import environment_python

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODELS = os.path.join(ROOT, "tests", "models")
DATA = ["--dataset", os.path.join(ROOT, "examples", "live.parquet"),
        "--benchmarks", os.path.join(ROOT, "examples", "live_benchmark_models.parquet")]


def models() -> list[tuple[str, str, str]]:
    """(id, pickle, environment) x 12."""
    found = []
    for minor in ("10", "11", "12", "13"):
        for kind in ("", "_legacy"):
            found.append((f"m3_{minor}{kind}", os.path.join(MODELS, f"model_3_{minor}{kind}.pkl"), f"py3{minor}"))
    return found + [(f"{ident}_copy", path, env) for ident, path, env in found[1::2]]


def timed(command: list[str], **kwargs: object) -> tuple[float, float, int]:
    """(wall seconds, CPU-seconds of the process tree, exit code)."""
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - start, usage.ru_utime + usage.ru_stime, proc.returncode


def alone(work: str) -> tuple[float, float]:
    """predict.py alone for each model: total wall and CPU-seconds."""
    wall = cpu = 0.0
    for ident, path, env in models():
        out = os.path.join(work, "alone", ident)
        os.makedirs(out)
        python = environment_python(env)
        assert python, f"environment {env} is not installed"
        # pinned to one CPU as the round pins each of its predict.py: the same machine for both
        w, c, code = timed([python, os.path.join(ROOT, "predict.py"), "--model", path, *DATA, "--output_dir", out],
                           preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
        assert code == 0, (ident, code)
        wall, cpu = wall + w, cpu + c
    return wall, cpu


def a_round(work: str, name: str, *flags: str) -> tuple[float, float]:
    manifest = os.path.join(work, f"{name}.csv")
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "model", "environment"])
        writer.writerows([ident, path, env] for ident, path, env in models())
    out = os.path.join(work, name)
    wall, cpu, code = timed([sys.executable, "-m", "numerai_predict.round", "--manifest", manifest, *DATA,
                             "--output_dir", out, "--no-progress", *flags], cwd=ROOT)
    with open(os.path.join(out, "round.json")) as handle:
        report = json.load(handle)
    assert code == 0 and report["counts"]["ok"] == 12, (name, code, report["summary"])
    if "--ray" in flags:  # the models ran in the cluster's workers, not below the driver
        cpu = sum(m["cpu_seconds"] for m in report["models"])
    return wall, cpu


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ray", help="also a round on this Ray cluster; 'local': start a 2-node one here")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-round-")
    cluster: list[subprocess.Popen[bytes]] = []
    try:
        n = len(models())
        base_wall, base_cpu = alone(work)
        rows = [("predict.py alone, one after another", base_wall, base_cpu)]
        for workers in (1, 2):
            rows.append((f"round, {workers} local worker(s)", *a_round(work, f"local{workers}", "--workers",
                                                                       str(workers))))
        if args.ray:
            address = args.ray
            if address == "local":
                address, cluster = start_local_cluster(os.path.join("/tmp", f"rb{os.getpid()}"))
            rows.append(("round, Ray (2 nodes x 1 CPU)" if args.ray == "local" else f"round, Ray {address}",
                         *a_round(work, "ray", "--ray", address)))
        print(f"{n} models; floor: predict.py alone {base_wall / n:.2f} s and {base_cpu / n:.2f} CPU-s per model")
        print("| setting | wall s | wall s/model | CPU-s/model | CPU-s/model vs alone | wall/model vs alone |")
        print("|---|---|---|---|---|---|")
        for name, wall, cpu in rows:
            print(f"| {name} | {wall:.1f} | {wall / n:.2f} | {cpu / n:.2f} | {cpu / base_cpu:.2f} | "
                  f"{wall / base_wall:.2f} |")
    finally:
        if cluster:
            subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True)
            for proc in cluster:
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
