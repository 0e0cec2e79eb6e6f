#!/usr/bin/env python3
"""predict.py end to end against the floor, on live-shaped data, in one run.

    python benchmarks/bench.py [--runs N] [--sizes 1,4,16] [--json PATH]   (pixi run -e py311 bench)

The floor is one bare Python process doing the same work: import pandas, read
the Parquet files, unpickle, call the model, write the CSV. predict.py runs as
shipped (local data, no upload, the model isolated in its own process, the
memory watchdog on). Each figure alternates floor and predict.py runs in this
one process tree, so both see the same machine state.

Data: ``--rows`` ids (6,000, about a live round) times 1x, 4x, 16x, a string
``id`` index, ``era``, ``data_type`` and 2,400 int8 ``feature_*`` columns,
and a benchmark-models file of 20 float columns, generated once into the
cache folder. Models: the committed test pickles take 12 features, so the
bench trains the same recipes (tests/make_models.py: LightGBM, XGBoost,
PyTorch, Keras/TensorFlow as 2-argument models) on 2,400 features with this
environment's Python, once, into the cache; a framework this environment
lacks is skipped and said so (the PyPI twin has torch in py311 only).

Figures: CPU seconds of the whole process tree (a cgroup of its own per run, where
this machine lets the bench make one: the model's PID namespace is reaped by the
kernel, out of wait4's sight; else wait4's rusage), wall seconds, and the peak memory of
the whole process tree (the sum of each process's proportional set size,
sampled every 20 ms, so a library mapped by both the runner and the model's
process counts once), pinned to one CPU (sched_setaffinity before exec: what
Numerai gives a model) and unpinned (all CPUs; predict.py with --cpus 0);
growth from the smallest to the largest size; where Docker and the image are
there: image size against base + environment, its compressed size (`docker
save | gzip`), `docker run` to CSV against the same run outside Docker, and the
whole container's CPU seconds and peak memory (cgroup) against the floor run in
the same image.

It prints a table (figure, value, floor, ratio, target, met?) and writes JSON.
Timing never fails it: the exit code is 0 whatever the ratios. The project's
modules are byte-compiled first, as a user's second run (or the image) finds them.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORKS = ("lightgbm", "lightgbm-participant", "xgboost", "torch", "keras")
MAKERS = {"lightgbm": "lightgbm_model", "lightgbm-participant": "lightgbm_participant_model",
          "xgboost": "xgboost_model", "torch": "torch_model", "keras": "keras_model"}
#: The module a framework needs, where its name is not one.
MODULES = {"lightgbm-participant": "lightgbm"}
N_FEATURES, N_BENCHMARKS, TRAIN_ROWS = 2400, 20, 2000
# The image may grow to carry numerai-predict's libraries (containers/parity.toml), within 4.5 GB.
TARGETS = {"cpu": 1.10, "memory": 1.15, "growth": 1.05, "docker": 1.15, "image_gb": 4.5}
PAGE = os.sysconf("SC_PAGE_SIZE")

FLOOR = r"""
import pickle, sys
import pandas as pd
model_path, features_path, benchmarks_path, out = sys.argv[1:5]
features = pd.read_parquet(features_path)
benchmarks = pd.read_parquet(benchmarks_path)
with open(model_path, "rb") as handle:
    model = pickle.load(handle)
model(features, benchmarks).to_csv(out)
"""

MAKE_MODEL = r"""
import os, sys
import cloudpickle, numpy as np, pandas as pd
import make_models
cloudpickle.register_pickle_by_value(make_models)  # the pickle must not need tests/ to load
kind, n_features, rows, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(2)
x = pd.DataFrame(rng.integers(0, 5, size=(rows, n_features), dtype=np.int8),
                 columns=[f"feature_{i:04d}" for i in range(n_features)])
y = ((x.iloc[:, 0] + x.iloc[:, 1] - x.iloc[:, 2]).astype("float64") + rng.normal(0, 0.5, rows)).rank(pct=True)
model = make_models.with_benchmarks(getattr(make_models, sys.argv[5])(x, y))
with open(out, "wb") as handle:
    cloudpickle.dump(model, handle)
"""


# ---- data and models -------------------------------------------------------


def cache_folder(path: str | None) -> str:
    folder = path or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                  "numerai-predict", "bench")
    os.makedirs(folder, exist_ok=True)
    return folder


def live_data(cache: str, rows: int, n_features: int) -> tuple[str, str]:
    """Live-shaped features and benchmark models (made once): paths of both Parquet files."""
    folder = os.path.join(cache, f"live-{rows}x{n_features}")
    features, benchmarks = os.path.join(folder, "live.parquet"), os.path.join(folder, "live_benchmark_models.parquet")
    if os.path.exists(benchmarks):
        return features, benchmarks
    import numpy as np
    import pandas as pd

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(rows)
    ids = pd.Index(np.char.add("n", np.char.zfill(np.char.mod("%x", rng.integers(16**14, size=rows)), 15)),
                   name="id").astype(str)
    frame = pd.DataFrame(rng.integers(0, 5, size=(rows, n_features), dtype=np.int8), index=ids,
                         columns=[f"feature_{i:04d}" for i in range(n_features)])
    frame.insert(0, "data_type", "live")
    frame.insert(0, "era", "X")
    frame.to_parquet(features + ".tmp")
    bench = pd.DataFrame(rng.random((rows, N_BENCHMARKS)), index=ids,
                         columns=[f"v52_bench_{i:02d}" for i in range(N_BENCHMARKS)])
    bench.to_parquet(benchmarks + ".tmp")
    os.replace(features + ".tmp", features)
    os.replace(benchmarks + ".tmp", benchmarks)
    return features, benchmarks


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def bench_model(cache: str, framework: str, n_features: int) -> str:
    """The framework's 2-argument model trained on ``n_features`` features, pickled by this Python."""
    tag = f"{sys.version_info[0]}_{sys.version_info[1]}"
    path = os.path.join(cache, f"model_{framework}_{n_features}_{tag}.pkl")
    if not os.path.exists(path):
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tests"), TF_CPP_MIN_LOG_LEVEL="2")
        subprocess.run([sys.executable, "-c", MAKE_MODEL, framework, str(n_features),
                        str(min(TRAIN_ROWS, max(200, n_features))), path + ".tmp", MAKERS[framework]],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        os.replace(path + ".tmp", path)
    return path


# ---- one measured run -------------------------------------------------------


def tree_pids(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    ppid = int(handle.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def process_memory(pid: int) -> int:
    """Proportional set size (shared pages split among their users); RSS where smaps is not readable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def measure(command: list[str], pinned: bool, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``command`` to its end: CPU seconds of its whole tree, wall seconds, peak tree memory."""
    cpu = min(os.sched_getaffinity(0))
    group = cpu_group()
    start = time.perf_counter()

    def enter() -> None:
        if group:
            with open(os.path.join(group, "cgroup.procs"), "w") as handle:
                handle.write(str(os.getpid()))
        if pinned:
            os.sched_setaffinity(0, {cpu})

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, preexec_fn=enter)
    peak, done = 0, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, sum(process_memory(p) for p in tree_pids(proc.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stderr is not None
    errors = proc.stderr.read()  # drained while it runs (a full pipe would stall it)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({proc.returncode}): {errors.decode()[-2000:]}")
    seconds = group_cpu(group) if group else usage.ru_utime + usage.ru_stime
    return {"cpu": seconds, "wall": wall, "memory": float(peak)}


def cpu_group() -> str | None:
    """A fresh cgroup counting the CPU of every process of a run. wait4's rusage misses what is not
    reaped by its ancestors: predict.py's model process forks into its own PID namespace, and that
    namespace's processes are reaped by the kernel when it ends (the figures read 0.07x the floor)."""
    import uuid

    for root, name in (("/sys/fs/cgroup/cpuacct", "cpuacct.usage"), ("/sys/fs/cgroup", "cpu.stat")):
        if os.path.exists(os.path.join(root, name)):
            group = os.path.join(root, f"numerai-predict-bench-{uuid.uuid4().hex[:8]}")
            try:
                os.mkdir(group)
            except OSError:
                return None
            return group
    return None


def group_cpu(group: str) -> float:
    """The group's CPU seconds, then the group removed."""
    if os.path.exists(os.path.join(group, "cpuacct.usage")):
        with open(os.path.join(group, "cpuacct.usage")) as handle:
            seconds = int(handle.read()) / 1e9
    else:
        with open(os.path.join(group, "cpu.stat")) as handle:
            seconds = int(dict(line.split() for line in handle)["usage_usec"]) / 1e6
    for _ in range(50):  # its processes are gone once reaped; the kernel may lag an instant
        try:
            os.rmdir(group)
            break
        except OSError:
            time.sleep(0.02)
    return seconds


def predict_command(python: str, model: str, data: tuple[str, str], out: str, pinned: bool) -> list[str]:
    return [python, os.path.join(ROOT, "predict.py"), "--model", model, "--dataset", data[0],
            "--benchmarks", data[1], "--output_dir", out, *([] if pinned else ["--cpus", "0"])]


def compare(model: str, data: tuple[str, str], pinned: bool, runs: int) -> dict[str, dict[str, list[float]]]:
    """Alternating floor and predict.py runs: every sample of every figure."""
    samples: dict[str, dict[str, list[float]]] = {"floor": {}, "predict": {}}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as out:
            floor = measure([sys.executable, "-c", FLOOR, model, *data, os.path.join(out, "floor.csv")], pinned)
            work = measure(predict_command(sys.executable, model, data, out, pinned), pinned, env)
        for side, result in (("floor", floor), ("predict", work)):
            for key, value in result.items():
                samples[side].setdefault(key, []).append(value)
    return samples


# ---- images -----------------------------------------------------------------


def docker_figures(cache: str, model: str, data: tuple[str, str], runs: int, env_name: str) -> list[dict]:
    """Image size and start-to-CSV inside Docker against the same run outside; [] without Docker."""
    try:  # containers/ scripts, on PYTHONPATH from the bench task
        import images
        import manifest as pixi_toml
    except ImportError:
        print("image figures skipped: containers/ is not on PYTHONPATH (run the bench task)", file=sys.stderr)
        return []

    docker = images.docker()
    manifest = pixi_toml.load()
    image = f"{images.image_name(manifest, env_name)}:latest"
    inspect = subprocess.run([docker, "image", "inspect", "-f", "{{.Id}} {{.Size}}", image],
                             capture_output=True, text=True)
    base = subprocess.run([docker, "image", "inspect", "-f", "{{.Size}}", "debian:bookworm-slim"],
                          capture_output=True, text=True)
    if inspect.returncode or base.returncode:
        return []
    image_id, size = inspect.stdout.split()
    runtime = images.local_prefix(manifest, f"{env_name}-runtime")
    environment = int(subprocess.run(["du", "-sb", runtime], capture_output=True, text=True,
                                     check=True).stdout.split()[0])
    rows = [row("image size (GB)", int(size) / 1e9, (int(base.stdout) + environment) / 1e9,
                f"<= {TARGETS['image_gb']} GB", int(size) / 1e9 <= TARGETS["image_gb"],
                note="floor: debian:bookworm-slim + the environment's prefix")]
    compressed = compressed_size(cache, docker, image, image_id)
    rows.append(row("image compressed (GB, docker save | gzip)", compressed / 1e9, int(size) / 1e9, "reported",
                    None, note="floor: uncompressed"))
    return rows + container_runs(docker, image, os.path.join(runtime, "bin", "python"), model, data, runs)


def container_runs(docker: str, image: str, python: str, model: str, data: tuple[str, str], runs: int) -> list[dict]:
    """Alternating, pinned to one CPU: predict.py outside Docker, the image's predict.py, and the floor
    in the same image; the containers' CPU and peak memory read from a parent cgroup of their own."""
    folder, name = os.path.dirname(model), os.path.basename(model)
    cpu = str(min(os.sched_getaffinity(0)))
    inputs = [f"/models/{name}", f"/data/{os.path.basename(data[0])}", f"/data/{os.path.basename(data[1])}"]
    samples: dict[str, list[float]] = {}
    for run in range(runs):
        with tempfile.TemporaryDirectory() as out:
            os.chmod(out, 0o777)
            samples.setdefault("outside", []).append(
                measure(predict_command(python, model, data, out, True), True)["wall"])
            for side, tail in (("image", [image, "--model", inputs[0], "--dataset", inputs[1], "--benchmarks",
                                          inputs[2], "--output_dir", "/out"]),
                               ("floor", ["--entrypoint", "python", image, "-c", FLOOR, *inputs, "/out/floor.csv"])):
                parent = f"/numerai-bench-{os.getpid()}-{run}-{side}"
                command = [docker, "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp",
                           "--cpuset-cpus", cpu, "--cgroup-parent", parent, "--user", f"{os.getuid()}:{os.getgid()}",
                           "-v", f"{folder}:/models:ro", "-v", f"{os.path.dirname(data[0])}:/data:ro",
                           "-v", f"{out}:/out", *tail]
                samples.setdefault(f"{side} wall", []).append(measure(command, False)["wall"])
                usage = container_usage(parent)
                remove_cgroup(parent)
                if usage is not None:
                    samples.setdefault(f"{side} cpu", []).append(usage[0])
                    samples.setdefault(f"{side} memory", []).append(usage[1])
    med = {key: statistics.median(values) for key, values in samples.items()}
    wall = med["image wall"] / med["outside"]
    rows = [row("docker run -> CSV, 1 CPU (wall s)", med["image wall"], med["outside"], f"<= {TARGETS['docker']}",
                wall <= TARGETS["docker"], spread=(min(samples["image wall"]), max(samples["image wall"])),
                note=f"{name}; floor: the same predict.py outside Docker")]
    if "image cpu" in med and "floor cpu" in med:
        cpu_ratio, mem_ratio = med["image cpu"] / med["floor cpu"], med["image memory"] / med["floor memory"]
        rows += [row("container CPU s, whole container", med["image cpu"], med["floor cpu"], f"<= {TARGETS['cpu']}",
                     cpu_ratio <= TARGETS["cpu"], note="floor: the bare floor in the same image"),
                 row("container peak memory MiB, whole container", med["image memory"] / 2**20,
                     med["floor memory"] / 2**20, f"<= {TARGETS['memory']}", mem_ratio <= TARGETS["memory"],
                     note="cgroup peak (page cache of the files read included, on both sides)")]
    return rows


def container_usage(parent: str) -> tuple[float, float] | None:
    """(CPU seconds, peak memory bytes) of what ran under the --cgroup-parent ``parent`` (cgroup v2
    or v1: a parent keeps its children's usage after they are gone); None when unreadable."""
    root = "/sys/fs/cgroup"
    try:
        if os.path.exists(os.path.join(root, "cgroup.controllers")):
            with open(f"{root}{parent}/cpu.stat") as handle:
                usec = int(dict(line.split() for line in handle)["usage_usec"])
            with open(f"{root}{parent}/memory.peak") as handle:
                return usec / 1e6, float(handle.read())
        with open(f"{root}/cpuacct{parent}/cpuacct.usage") as handle:
            nanoseconds = int(handle.read())
        with open(f"{root}/memory{parent}/memory.max_usage_in_bytes") as handle:
            return nanoseconds / 1e9, float(handle.read())
    except (OSError, ValueError, KeyError):
        return None


def remove_cgroup(parent: str) -> None:
    """The parent cgroup Docker made for --cgroup-parent, in every hierarchy (empty once the container is gone)."""
    root = "/sys/fs/cgroup"
    for folder in [f"{root}{parent}"] + [f"{root}/{name}{parent}" for name in os.listdir(root)]:
        if os.path.isdir(folder):
            try:
                os.rmdir(folder)
            except OSError:
                pass


def compressed_size(cache: str, docker: str, image: str, image_id: str) -> int:
    """What a node pulls, about: the image's layers gzipped (docker save | gzip); cached by image id."""
    record = os.path.join(cache, f"compressed-{image_id.replace(':', '-')}.txt")
    if os.path.exists(record):
        with open(record) as handle:
            return int(handle.read())
    save = subprocess.Popen([docker, "save", image], stdout=subprocess.PIPE)
    gzip = subprocess.Popen(["gzip", "-c"], stdin=save.stdout, stdout=subprocess.PIPE)
    assert save.stdout is not None and gzip.stdout is not None
    save.stdout.close()
    size = 0
    while chunk := gzip.stdout.read(1 << 20):
        size += len(chunk)
    gzip.wait()
    save.wait()
    with open(record, "w") as handle:
        handle.write(str(size))
    return size


# ---- the table ----------------------------------------------------------------


def row(figure: str, value: float, floor: float | None, target: str, met: bool | None,
        spread: tuple[float, float] | None = None, note: str = "") -> dict:
    return {"figure": figure, "value": value, "floor": floor,
            "ratio": value / floor if floor else None, "target": target, "met": met,
            "spread": list(spread) if spread else None, "note": note}


def figures(framework: str, size: int, pinned: bool, samples: dict) -> list[dict]:
    where = f"{framework} {size}x {'1 CPU' if pinned else 'all CPUs'}"
    med = {side: {k: statistics.median(v) for k, v in s.items()} for side, s in samples.items()}
    cpu_ratios = [w / f for w, f in zip(samples["predict"]["cpu"], samples["floor"]["cpu"], strict=True)]
    mem_ratio = med["predict"]["memory"] / med["floor"]["memory"]
    cpu_ratio = med["predict"]["cpu"] / med["floor"]["cpu"]
    return [
        row(f"{where}: CPU s", med["predict"]["cpu"], med["floor"]["cpu"],
            f"<= {TARGETS['cpu']}" if pinned else "-", cpu_ratio <= TARGETS["cpu"] if pinned else None,
            spread=(min(cpu_ratios), max(cpu_ratios)), note="spread: min-max of the paired ratios"),
        row(f"{where}: wall s", med["predict"]["wall"], med["floor"]["wall"], "-", None),
        row(f"{where}: peak tree memory MiB", med["predict"]["memory"] / 2**20, med["floor"]["memory"] / 2**20,
            f"<= {TARGETS['memory']}" if pinned else "-", mem_ratio <= TARGETS["memory"] if pinned else None),
    ]


def growth(framework: str, small: int, large: int, results: dict) -> list[dict]:
    rows = []
    for figure, key in (("CPU s", "cpu"), ("peak tree memory", "memory")):
        lo, hi = results[(framework, small, True)], results[(framework, large, True)]
        work = statistics.median(hi["predict"][key]) / statistics.median(lo["predict"][key])
        floor = statistics.median(hi["floor"][key]) / statistics.median(lo["floor"][key])
        rows.append(row(f"{framework} growth {small}x -> {large}x, 1 CPU: {figure}", work, floor,
                        f"<= {TARGETS['growth']}", work / floor <= TARGETS["growth"],
                        note="value and floor: large / small"))
    return rows


def render(rows: list[dict]) -> str:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"

    lines = ["| figure | value | floor | ratio | target | met? |", "|---|---|---|---|---|---|"]
    for r in rows:
        ratio = number(r["ratio"]) + (f" ({r['spread'][0]:.2f}-{r['spread'][1]:.2f})" if r["spread"]
                                      and "CPU s" in r["figure"] else "")
        met = "-" if r["met"] is None else "yes" if r["met"] else "NO"
        lines.append(f"| {r['figure']} | {number(r['value'])} | {number(r['floor'])} | {ratio} | {r['target']} "
                     f"| {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="alternating pairs per figure (default: %(default)s)")
    parser.add_argument("--sizes", default="1,4,16", help="multiples of --rows (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=6000, help="ids at 1x (default: %(default)s)")
    parser.add_argument("--features", type=int, default=N_FEATURES, help="feature columns (default: %(default)s)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="(default: %(default)s)")
    parser.add_argument("--unpinned-sizes", default="1",
                        help="sizes also measured on all CPUs (default: %(default)s; '' for none)")
    parser.add_argument("--docker", choices=["auto", "no", "only"], default="auto",
                        help="image figures when Docker and this Python's image are there; only: nothing else "
                        "(default: auto)")
    parser.add_argument("--cache", help="data and models (default: ~/.cache/numerai-predict/bench)")
    parser.add_argument("--json", default=os.path.join(ROOT, "build", "bench.json"),
                        help="where to write the results (default: build/bench.json)")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s})
    unpinned = {int(s) for s in args.unpinned_sizes.split(",") if s}
    cache = cache_folder(args.cache)
    env_name = f"py3{sys.version_info[1]}"
    frameworks = [f for f in args.frameworks.split(",") if f]
    present = [f for f in frameworks if has_module(MODULES.get(f, f))]
    skipped = [f for f in frameworks if f not in present]
    print(f"Python {sys.version.split()[0]} ({env_name}), {os.cpu_count()} CPUs, {args.runs} runs per figure; "
          f"frameworks: {', '.join(present)}" + (f"; skipped (not in this environment): {', '.join(skipped)}"
                                                 if skipped else ""), flush=True)
    # predict.py as a user's second run finds it: its modules' bytecode written (the image ships it);
    # a machine with PYTHONDONTWRITEBYTECODE=1 (this one) would otherwise compile them in both processes.
    compileall.compile_dir(os.path.join(ROOT, "numerai_predict"), quiet=1)
    data = {size: live_data(cache, args.rows * size, args.features) for size in sizes}
    models = {f: bench_model(cache, f, args.features) for f in present}
    results: dict[tuple[str, int, bool], dict] = {}
    rows: list[dict] = []
    for framework in present if args.docker != "only" else []:
        for size in sizes:
            for pinned in [True] + ([False] if size in unpinned else []):
                samples = compare(models[framework], data[size], pinned, args.runs)
                results[(framework, size, pinned)] = samples
                rows += figures(framework, size, pinned, samples)
                print(render(rows[-3:]).split("\n", 2)[2], flush=True)
        if len(sizes) > 1:
            rows += growth(framework, sizes[0], sizes[-1], results)
    docker_rows: list[dict] = []
    if args.docker != "no" and shutil.which(os.environ.get("DOCKER", "docker")) and present:
        try:
            docker_rows = docker_figures(cache, models[present[0]], data[sizes[0]], args.runs, env_name)
        except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
            print(f"image figures skipped: {exc}", file=sys.stderr)
    rows += docker_rows
    print("\n" + render(rows))
    report = {"python": sys.version.split()[0], "environment": env_name, "cpus": os.cpu_count(), "runs": args.runs,
              "rows_1x": args.rows, "features": args.features, "sizes": sizes, "frameworks": present,
              "skipped": skipped, "docker": bool(docker_rows), "targets": TARGETS, "table": rows,
              "samples": [{"framework": f, "size": s, "pinned": p, **v} for (f, s, p), v in results.items()]}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump(report, handle, indent=1)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
