"""A round: many models, one data download, each model in the environment its pickle needs.

``python -m numerai_predict.round --manifest MANIFEST.csv`` (pixi task ``round``) reads a
manifest (``id,model,post_url,post_data,environment``; only ``id`` and ``model``
required), downloads the live data and benchmarks once (numerai_predict.data, its
retry policy) into ``<output_dir>/.round-data/`` (read-only), picks each model's
environment (the manifest's, or the pickle doctor's verdict) and runs every model
through predict.py itself, with the environment's interpreter (or its image,
``--use-images``), in a folder of its own, ``<output_dir>/<id>/``. One model's failure,
crash or timeout is that model's row in the report, never another model's problem.

Backends: local (default; a thread per worker, each model a predict.py process pinned
to a CPU of its own; workers = min(--workers or CPUs, available memory / --max-memory)),
or Ray (``--ray ADDRESS``): each model a Ray task of ``num_cpus=1, memory=--max-memory``;
Ray retries system failures (a node lost, ``--retries``), never model failures (a task
returns the model's result, it does not raise it). The data goes to the nodes through
Ray's object store, written once per node.

Resume: every model's outcome is kept in ``<id>/round-state.json`` (atomically) and
predict.py's own ``<id>/report.json``; a re-run of the same round skips models already
delivered (CSV written and, with a post_url, uploaded: predict.py's exit 0). A model's
folder is locked (flock) while its predict.py runs, so a re-run after the driver was
killed waits for the orphaned predict.py instead of running (and uploading) it twice.

The round's own exit codes (a model's outcome never changes them):

    0   every model ran (or was skipped with its reason), whatever their outcomes
    2   usage: a bad flag
    3   the manifest is invalid (one line: file, line, what is wrong)
    4   the backend is unavailable (ray not installed, cluster unreachable, no docker)
    5   some models could not be run by the round itself (environment not installed
        here, a task lost beyond its retries); their rows say why
    6   another round holds this output folder
    20/21/22/50  the data could not be had, or the output folder not written: as predict.py
    130 interrupted
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NoReturn

from numerai_predict import numerai
from numerai_predict.errors import PredictError, UsageError
from numerai_predict.extras import require_extra
from numerai_predict.files import atomic_file, write_atomic
from numerai_predict.numerai import DEFAULT_BENCHMARKS, DEFAULT_DATASET
from numerai_predict.values import dataset_path, is_url, parse_size, user_path

log = logging.getLogger("numerai_predict.round")
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREDICT = os.path.join(PROJECT_ROOT, "predict.py")
#: How a model's Python runs the runner: the checkout's predict.py, or the installed package's.
RUNNER = [PREDICT] if os.path.isfile(PREDICT) else ["-m", "numerai_predict"]
COLUMNS = ("id", "model", "post_url", "post_data", "environment")
REPORT_COLUMNS = ("id", "status", "exit_code", "environment", "seconds", "peak_mib", "csv", "upload", "error")
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ENV_PATTERN = re.compile(r"py3\d+(-runtime)?")
DATA_FOLDER = ".round-data"
STATE = "round-state.json"
#: predict.py's transfers (6 x 40 s at most) and start-up, on top of the model's --timeout.
GRACE_SECONDS = 300.0
CONTAINER_ROOM = 512 << 20  # --use-images: the container's memory beyond --max-memory (the runner's own)
IMAGES_SEEN: set[str] = set()

STOP_GRACE_SECONDS = 5.0  # a stopped predict.py's time to end its model's tree before it is killed
EXIT_OK, EXIT_USAGE, EXIT_MANIFEST, EXIT_BACKEND, EXIT_UNRUN, EXIT_BUSY, EXIT_INTERRUPTED = 0, 2, 3, 4, 5, 6, 130


class RoundError(Exception):
    """A failure of the round itself: one line, and the round's exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


# ---- the manifest ------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One manifest row, checked."""

    id: str
    model: str  # an absolute path or an http(s) URL
    post_url: str = ""
    post_data: str = ""
    environment: str = ""  # "" : the doctor's verdict
    line: int = 0


def read_manifest(path: str) -> list[Entry]:
    """The manifest's rows, or a RoundError (exit 3) naming the file, line and problem."""
    from numerai_predict.values import parse_post_data

    def bad(line: int | None, what: str) -> NoReturn:
        raise RoundError(f"manifest {path}{f' line {line}' if line else ''}: {what}", EXIT_MANIFEST)

    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        bad(None, f"cannot be read: {getattr(exc, 'strerror', None) or exc}")
    if not rows:
        bad(None, "is empty (expected a header row: " + ",".join(COLUMNS) + ")")
    header = [name.strip() for name in rows[0]]
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        bad(1, f"unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})")
    if len(set(header)) != len(header):
        bad(1, "a column is named twice")
    for required in ("id", "model"):
        if required not in header:
            bad(1, f"the header lacks the column {required!r}")
    folder = os.path.dirname(os.path.abspath(path))
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines are allowed
        if len(row) != len(header):
            bad(number, f"{len(row)} fields, the header has {len(header)}")
        values = {name: cell.strip() for name, cell in zip(header, row, strict=True)}
        ident, model = values.get("id", ""), values.get("model", "")
        if not ID_PATTERN.fullmatch(ident):
            bad(number, f"id {ident!r} must be 1-128 letters, digits, '_', '.' or '-' (it names a folder)")
        if ident in seen:
            bad(number, f"id {ident!r} repeats line {seen[ident]}")
        seen[ident] = number
        if not model:
            bad(number, "model is empty")
        model = model if is_url(model) else os.path.normpath(os.path.join(folder, model))
        post_url, post_data = values.get("post_url", ""), values.get("post_data", "")
        if bool(post_url) != bool(post_data):
            bad(number, "post_url and post_data go together")
        if post_url:
            if not is_url(post_url):
                bad(number, "post_url must be an http(s) URL")
            try:
                parse_post_data(post_data)
            except UsageError as exc:
                bad(number, exc.message.replace("--post_data", "post_data"))
        environment = values.get("environment", "")
        if environment and not ENV_PATTERN.fullmatch(environment):
            bad(number, f"environment {environment!r} is not a Python environment of pixi.toml (py310, py311, ...)")
        entries.append(Entry(ident, model, post_url, post_data, environment, number))
    if not entries:
        bad(None, "has no model rows")
    return entries


# ---- environments ------------------------------------------------------------


def twin_envs_dir() -> str:
    """Where containers/pypi_env.py keeps its environment prefixes."""
    return os.environ.get("PYPI_TWIN_ENVS") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "numerai-predict", "envs")


def allowed_environments() -> set[str] | None:
    """The environments this host may run models in (NUMERAI_PREDICT_ENVIRONMENTS, comma-separated;
    unset: every installed one). A node that serves some Pythons only, and the test suite, which lets
    a test use other environments only when it asked for them to be built."""
    value = os.environ.get("NUMERAI_PREDICT_ENVIRONMENTS")
    return None if value is None else {env.strip() for env in value.split(",") if env.strip()}


def unavailable(env: str) -> str | None:
    """Why this host will not run models in ``env``, or None."""
    allowed = allowed_environments()
    if allowed is not None and env.removesuffix("-runtime") not in allowed:
        return (f"environment {env} is not one this host may use "
                f"(NUMERAI_PREDICT_ENVIRONMENTS={','.join(sorted(allowed)) or 'none'})")
    return None


def environment_python(env: str, root: str = PROJECT_ROOT, twin_dir: str | None = None) -> str | None:
    """The interpreter of pixi environment ``env`` on this machine, or None.

    pixi's ``.pixi/envs/ENV``, then the PyPI twin's workspace layer ``.pixi/twin/ENV`` (a venv
    over the prefix), then the twin's prefix itself; ``ENV-runtime`` (same versions, solve-group)
    when ``ENV`` is not installed. predict.py is run by path, so its package needs no install."""
    twin_dir = twin_dir or twin_envs_dir()
    names = [env] + ([f"{env}-runtime"] if not env.endswith("-runtime") else [])
    for name in names:
        for prefix in (os.path.join(root, ".pixi", "envs", name), os.path.join(root, ".pixi", "twin", name),
                       os.path.join(twin_dir, name)):
            python = os.path.join(prefix, "bin", "python")
            if os.access(python, os.X_OK):
                return python
    return None


def choose_environment(path: str) -> tuple[str | None, int, str]:
    """The doctor's verdict for a local pickle: (environment, predict.py's exit code, reason)."""
    from numerai_predict.doctor import diagnose, exit_code
    from numerai_predict.pickles import inspect_pickle

    try:
        diagnosis = diagnose(path, inspect_pickle(path), os.path.basename(path))
    except PredictError as exc:
        return None, exc.exit_code, exc.one_line()
    verdict = diagnosis["verdict"]
    code = exit_code(diagnosis)
    if code:
        if diagnosis["unsafe"]:
            refs = "; ".join(f"{u['module']}.{u['name']} ({u['reason']})" for u in diagnosis["unsafe"])
            return verdict["environment"], code, f"doctor: unsafe pickle, not run: it would call {refs}"
        return None, code, f"doctor: no environment can run it: {verdict['reason']}"
    return str(verdict["environment"]), 0, str(verdict["reason"])


# ---- one model ---------------------------------------------------------------


@dataclass
class Job:
    """What one model's run needs; plain values (it crosses to Ray workers)."""

    id: str
    model: str
    environment: str
    folder: str  # <output_dir>/<id>
    features: str
    benchmarks: str
    post_url: str = ""
    post_data: str = ""
    timeout: float = numerai.TIMEOUT_SECONDS
    max_memory: str = numerai.MAX_MEMORY
    isolate: bool = True
    use_images: bool = False
    die_with_parent: bool = False  # Ray: predict.py dies with its worker (a lost node leaves no orphan)


@dataclass
class Outcome:
    """One report row, plus what the JSON tells beyond it."""

    id: str
    status: str  # ok, failed, skipped
    exit_code: int | None
    environment: str
    seconds: float = 0.0
    peak_mib: float | None = None
    csv: str = ""
    upload: str = ""  # uploaded, failed, "" (no post_url or not reached)
    error: str = ""
    cpu_seconds: float = 0.0
    attempts: int = 1
    node: str = ""
    reused: bool = False  # delivered by an earlier run (resume)
    round_failure: bool = False  # not run because of the round, not the model
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def delivered(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict[str, object]:
        return {"id": self.id, "status": self.status, "exit_code": "" if self.exit_code is None else self.exit_code,
                "environment": self.environment, "seconds": f"{self.seconds:.2f}",
                "peak_mib": "" if self.peak_mib is None else f"{self.peak_mib:.0f}", "csv": self.csv,
                "upload": self.upload, "error": self.error}


def read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def delivered_state(folder: str) -> Outcome | None:
    """The outcome recorded in ``folder`` if the model was delivered, else None."""
    state = read_json(os.path.join(folder, STATE))
    if state and state.get("status") == "ok" and state.get("csv") and os.path.exists(str(state["csv"])):
        known = {k: v for k, v in state.items() if k in Outcome.__dataclass_fields__}
        return Outcome(**known)
    return None


def outcome_from_report(job: Job, report: dict[str, Any] | None, seconds: float, cpu: float,
                        returncode: int, log_path: str) -> Outcome:
    """predict.py's --report (and exit status) as a report row."""
    if report is None:  # predict.py died before writing it (killed, or it never started)
        why = f"killed by signal {-returncode}" if returncode < 0 else f"exited {returncode} without a report"
        return Outcome(job.id, "failed", returncode, job.environment, seconds, error=f"predict.py {why} (see "
                       f"{log_path})", cpu_seconds=cpu)
    code = int(report.get("exit_code", returncode))
    peak = (report.get("isolation") or {}).get("peak_memory_bytes")
    csv_path = str(report.get("predictions_csv") or "")
    if job.use_images and csv_path.startswith("/out/"):
        csv_path = os.path.join(job.folder, csv_path[len("/out/"):])
    upload = ""
    if job.post_url and not job.use_images:  # in an image the worker uploads (upload_from_worker)
        upload = "uploaded" if code == 0 else "failed" if code in (60, 61) else ""
    return Outcome(job.id, "ok" if code == 0 else "failed", code, job.environment, seconds,
                   peak / 2 ** 20 if isinstance(peak, (int, float)) else None, csv_path, upload,
                   str(report.get("error") or ""), cpu)


def predict_command(job: Job, python: str, report: str, cpu: int | None = None) -> list[str]:
    """predict.py's own command line for ``job`` (or the docker run of its image, on ``cpu``)."""
    flags = ["--timeout", f"{job.timeout:g}", "--max-memory", job.max_memory, "--cpus", str(numerai.CPUS)]
    flags += ["--no-isolation"] if not job.isolate else []
    if not job.use_images:
        # The POST on predict.py's standard input: a command line is readable by every process here.
        flags += ["--post_url", job.post_url, "--post_data", "-"] if job.post_url else []
        return [python, *RUNNER, "--model", job.model, "--dataset", job.features, "--benchmarks", job.benchmarks,
                "--output_dir", job.folder, "--report", report, *flags]
    # In its image as Numerai runs it: no network at all (Docker's seccomp refuses predict.py's own
    # namespaces, so the container's --network none is the model's isolation); the worker uploads.
    # The container's own limits back predict.py's up: its memory (files in /tmp included) with room
    # for the runner, so predict.py's watchdog speaks first; its CPU; no capabilities.
    model = f"/model/{os.path.basename(job.model)}"
    features = f"/data/features/{os.path.basename(job.features)}"
    benchmarks = f"/data/benchmarks/{os.path.basename(job.benchmarks)}"
    memory = parse_size(job.max_memory, "--max-memory")
    limits = ["--memory", str(memory + CONTAINER_ROOM)] if memory else []
    limits += ["--cpuset-cpus", str(cpu)] if cpu is not None else []
    return ["docker", "run", "--rm", "--name", container_name(job), "--network", "none", "--read-only",
            "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit", "1024",
            *limits, "--user", f"{os.getuid()}:{os.getgid()}", "-v", f"{job.features}:{features}:ro",
            "-v", f"{job.benchmarks}:{benchmarks}:ro", "-v", f"{job.folder}:/out", "-v", f"{job.model}:{model}:ro",
            image_of(job.environment), "--model", model, "--dataset", features, "--benchmarks", benchmarks,
            "--output_dir", "/out", "--report", "/out/report.json", *flags]


def image_of(environment: str) -> str:
    """The local image of a pixi environment (what `pixi run build-image ENV` tags)."""
    return f"{numerai.image_name(numerai.python_of_environment(environment))}:latest"


def image_problem(environment: str) -> str | None:
    """Why ``environment``'s image cannot run on this machine (or node), or None; a present image is remembered."""
    image = image_of(environment)
    if image in IMAGES_SEEN:
        return None
    try:
        found = subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0
    except OSError as exc:
        return f"docker cannot run here: {exc.strerror or exc}"
    if not found:
        return f"image {image} is not on this machine (pixi run build-image {environment})"
    IMAGES_SEEN.add(image)
    return None


def container_name(job: Job) -> str:
    """The same for every attempt at this model in this round folder, so a retry can remove the
    container an earlier, lost worker left running."""
    return f"numerai-round-{job.id}-{hashlib.sha256(job.folder.encode()).hexdigest()[:10]}"


def remove_container(job: Job) -> None:
    with contextlib.suppress(OSError):
        subprocess.run(["docker", "rm", "-f", container_name(job)], capture_output=True, check=False)


def upload_from_worker(job: Job, outcome: Outcome) -> Outcome:
    """--use-images: the CSV the model's container wrote, POSTed by this worker with predict.py's
    own upload (same retries); a failed upload fails the model with predict.py's exit code."""
    if not (job.post_url and outcome.status == "ok"):
        return outcome
    from numerai_predict.transfer import upload
    from numerai_predict.values import parse_post_data

    try:
        with open(outcome.csv, "rb") as handle:
            upload(handle.read(), os.path.basename(outcome.csv), job.post_url, parse_post_data(job.post_data))
    except PredictError as exc:
        return replace(outcome, status="failed", exit_code=exc.exit_code, upload="failed", error=exc.one_line())
    return replace(outcome, upload="uploaded")


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the parent (a Ray worker) dies."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def locked(folder: str) -> Iterator[int]:
    """The model folder's lock, held until the block ends (and by the predict.py it is passed to)."""
    fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a predict.py of an earlier (killed) round may still hold it
        yield fd
    finally:
        os.close(fd)


def run_model(job: Job, cpu: int | None = None, cancelled: threading.Event | None = None) -> Outcome:
    """Run one model through predict.py; never raises for what the model does."""
    os.makedirs(job.folder, exist_ok=True)
    report_path = os.path.join(job.folder, "report.json")
    log_path = os.path.join(job.folder, "predict.log")
    with locked(job.folder) as lock:
        if job.use_images:
            remove_container(job)  # left running by a worker that died: its lock went with it, not the container
        earlier = delivered_state(job.folder) or finished_before(job, report_path, log_path)
        if earlier is not None:
            earlier.reused = True
            return earlier
        with contextlib.suppress(FileNotFoundError):
            os.remove(report_path)  # never read an earlier attempt's report as this one's
        refused = pick_environment(job)
        if refused is not None:
            write_atomic(os.path.join(job.folder, STATE), json.dumps(asdict(refused), indent=1))
            return refused
        refusal = unavailable(job.environment)
        if refusal:
            return Outcome(job.id, "skipped", None, job.environment, error=refusal, round_failure=True)
        python = "docker" if job.use_images else environment_python(job.environment)
        if python is None:
            return Outcome(job.id, "skipped", None, job.environment, error=f"environment {job.environment} is not "
                           "installed on this machine (pixi install -e ENV, or containers/pypi_env.py build ENV)",
                           round_failure=True)
        problem = image_problem(job.environment) if job.use_images else None
        if problem:
            return Outcome(job.id, "skipped", None, job.environment, error=problem, round_failure=True)
        command = predict_command(job, python, report_path, cpu)
        start = time.monotonic()
        with open(log_path, "wb") as output:
            try:
                post = job.post_url and not job.use_images
                proc = subprocess.Popen(command, stdin=subprocess.PIPE if post else subprocess.DEVNULL,
                                        stdout=output, stderr=output, pass_fds=(lock,), start_new_session=True,
                                        cwd=job.folder, preexec_fn=die_with_parent if job.die_with_parent else None)
            except OSError as exc:
                return Outcome(job.id, "skipped", None, job.environment,
                               error=f"could not start predict.py: {exc.strerror or exc}", round_failure=True)
            if post:
                hand_over(proc, job.post_data)
            if cpu is not None:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(proc.pid, {cpu})  # one CPU per worker; the model's children inherit it
            status, usage = wait(proc, (job.timeout or numerai.TIMEOUT_SECONDS) + GRACE_SECONDS, cancelled)
        if job.use_images and status < 0:  # the docker client was killed: its container is not
            remove_container(job)
        seconds = time.monotonic() - start
        cpu_seconds = usage.ru_utime + usage.ru_stime if usage else 0.0
        outcome = outcome_from_report(job, read_json(report_path), seconds, cpu_seconds, status, log_path)
        if outcome.status == "ok" and outcome.csv and not os.path.exists(outcome.csv):
            outcome = Outcome(job.id, "failed", outcome.exit_code, job.environment, seconds,
                              error=f"predict.py reported {outcome.csv}, which does not exist", cpu_seconds=cpu_seconds)
        if job.use_images:
            outcome = upload_from_worker(job, outcome)
        write_atomic(os.path.join(job.folder, STATE), json.dumps(asdict(outcome), indent=1))
        return outcome


def finished_before(job: Job, report_path: str, log_path: str) -> Outcome | None:
    """A run that delivered its CSV but whose worker died before recording it; in an image, the
    upload (the worker's part) is done now: the same bytes, so a second POST stores the same object."""
    report = read_json(report_path)
    if not (report and report.get("exit_code") == 0 and report.get("predictions_csv")):
        return None
    if not job.environment and isinstance(report.get("python"), str):  # the doctor's pick, as it ran
        job.environment = numerai.environment_name(report["python"])
    outcome = outcome_from_report(job, report, float(report.get("seconds") or 0), 0.0, 0, log_path)
    if job.use_images:
        outcome = upload_from_worker(job, outcome)
        write_atomic(os.path.join(job.folder, STATE), json.dumps(asdict(outcome), indent=1))
    return outcome


def hand_over(proc: subprocess.Popen[bytes], post_data: str) -> None:
    """The presigned POST's fields to predict.py (--post_data -), never on its command line."""
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):  # it died first: its report says why
        proc.stdin.write(post_data.encode() + b"\n")
        proc.stdin.close()


def wait(proc: subprocess.Popen[bytes], limit: float, cancelled: threading.Event | None) -> tuple[int, Any]:
    """Wait for predict.py: past ``limit`` or when cancelled, asked to stop (SIGTERM: it ends the
    model's tree itself), and STOP_GRACE_SECONDS later its whole session killed. (exit code, rusage)"""
    deadline, asked = time.monotonic() + limit, None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        if time.monotonic() > deadline or (cancelled is not None and cancelled.is_set()):
            if asked is None:
                asked = time.monotonic()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
            elif time.monotonic() > asked + STOP_GRACE_SECONDS:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.05)


# ---- Ray ---------------------------------------------------------------------


def ray_task(job: Job, data: list[Any], ledger: Any) -> Outcome:
    """One model on a Ray worker: the data from the object store (written once per node), then
    run_model. Model failures are returned; only a lost worker or node makes Ray retry it."""
    import ray

    attempt = int(ray.get(ledger.start.remote(job.id)))
    node = ray.get_runtime_context().get_node_id()
    paths = []
    for path, size, ref in data:
        if not (os.path.isfile(path) and os.path.getsize(path) == size):  # this node does not see the driver's
            path = node_copy(path, size, ref[0])
        paths.append(path)
    job.features, job.benchmarks = paths
    try:
        outcome = run_model(job, None)
    except Exception as exc:  # a bug of the round, kept to this model
        outcome = Outcome(job.id, "failed", None, job.environment, error=f"round: {type(exc).__name__}: {exc}",
                          round_failure=True)
    outcome.attempts, outcome.node = attempt, node
    if outcome.csv and os.path.isfile(outcome.csv):
        with open(outcome.csv, "rb") as handle:
            outcome.extra["csv_bytes"] = handle.read()  # the driver keeps a copy, wherever this node is
    return outcome


def node_copy(path: str, size: int, ref: Any) -> str:
    """The data file in this node's cache, written from the object store once per node."""
    import ray

    folder = os.path.join(tempfile.gettempdir(), "numerai-round-data", f"{size}")
    os.makedirs(folder, exist_ok=True)
    local = os.path.join(folder, os.path.basename(path))
    with locked(folder):
        if not (os.path.isfile(local) and os.path.getsize(local) == size):
            write_atomic(local, ray.get(ref))
            os.chmod(local, 0o444)
    return local


class Ledger:
    """A Ray actor on the driver's node counting each model's attempts (retries survive a lost node)."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}

    def start(self, ident: str) -> int:
        self.attempts[ident] = self.attempts.get(ident, 0) + 1
        return self.attempts[ident]


class RayBackend:
    """Each model a Ray task: num_cpus=1, memory=--max-memory, max_retries for system failures only."""

    def __init__(self, address: str):
        try:
            import ray
        except ImportError:
            raise RoundError("--ray needs the ray package: run the round in the py311 environment "
                             "(pixi run -e py311 round ...)", EXIT_BACKEND) from None
        self.ray = ray
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                     runtime_env={"env_vars": {k: v for k, v in os.environ.items()
                                               if k.startswith(("NUMERAI_PREDICT_", "PYPI_TWIN_ENVS"))}})
        except Exception as exc:  # ConnectionError, RuntimeError, ...: the cluster is not there
            raise RoundError(f"--ray {address}: cannot connect: {type(exc).__name__}: {exc}", EXIT_BACKEND) from None
        self.nodes = [n for n in ray.nodes() if n.get("Alive")]

    def describe(self) -> str:
        cpus = sum(int(n.get("Resources", {}).get("CPU", 0)) for n in self.nodes)
        return f"Ray cluster of {len(self.nodes)} node(s), {cpus} CPU(s)"

    def run(self, jobs: list[Job], retries: int, done: Callable[[Outcome], None]) -> list[Outcome]:
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        ledger = ray.remote(num_cpus=0)(Ledger).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()
        data = []
        for path in sorted({jobs[0].features, jobs[0].benchmarks}) if jobs else []:
            with open(path, "rb") as handle:
                data.append((path, os.path.getsize(path), [ray.put(handle.read())]))
        by_path = {path: (path, size, ref) for path, size, ref in data}
        task = ray.remote(ray_task)
        pending = {}
        for job in jobs:
            memory = parse_size(job.max_memory, "--max-memory")
            ref = task.options(num_cpus=1, memory=memory or None, max_retries=retries, retry_exceptions=False,
                               name=f"model {job.id}").remote(
                job, [by_path[job.features], by_path[job.benchmarks]], ledger)
            pending[ref] = job
        outcomes = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except Exception as exc:  # retries used up: the round could not run it
                outcome = Outcome(job.id, "failed", None, job.environment, round_failure=True,
                                  error=f"lost after {retries} retries: {type(exc).__name__}: {str(exc)[:300]}")
                with contextlib.suppress(Exception):
                    outcome.attempts = int(ray.get(ledger.start.remote(job.id))) - 1
            self.keep_csv(job, outcome)
            outcomes.append(outcome)
            done(outcome)
        return outcomes

    @staticmethod
    def keep_csv(job: Job, outcome: Outcome) -> None:
        """The node's CSV, also in the driver's model folder (a node on another machine keeps its own)."""
        data = outcome.extra.pop("csv_bytes", None)
        if isinstance(data, bytes) and outcome.csv and not os.path.exists(outcome.csv):
            os.makedirs(job.folder, exist_ok=True)
            local = os.path.join(job.folder, os.path.basename(outcome.csv))
            write_atomic(local, data)
            outcome.csv = local
        if not outcome.reused:
            write_atomic(os.path.join(job.folder, STATE), json.dumps(asdict(outcome), indent=1))


# ---- the round ---------------------------------------------------------------


@dataclass
class Settings:
    manifest: str
    dataset: str
    benchmarks: str
    output_dir: str
    report: str
    workers: int
    timeout: float
    max_memory: str
    isolate: bool
    ray: str | None
    retries: int
    use_images: bool
    progress: bool


def parse_args(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m numerai_predict.round", description=(
        "Run a round: every model of a manifest on one download of the live data, each in the environment its "
        "pickle needs, on this machine or a Ray cluster."), epilog=__doc__.split("The round's own exit codes")[1]
        if __doc__ else None, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, help="CSV: id,model[,post_url,post_data,environment]")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="as predict.py (default: %(default)s)")
    parser.add_argument("--benchmarks", default=DEFAULT_BENCHMARKS, help="as predict.py (default: %(default)s)")
    parser.add_argument("--output_dir", default=".", help="the round's folder: data, one folder per model id")
    parser.add_argument("--report", help="round report CSV, and .json beside it (default: OUTPUT_DIR/round.csv)")
    parser.add_argument("--workers", type=int, default=0, help="local models at once (default: CPUs, bounded by "
                        "available memory / --max-memory)")
    parser.add_argument("--timeout", type=float, default=numerai.TIMEOUT_SECONDS,
                        help="per model, as predict.py (default: %(default)g)")
    parser.add_argument("--max-memory", default=numerai.MAX_MEMORY,
                        help="per model, as predict.py (default: %(default)s)")
    parser.add_argument("--no-isolation", action="store_true", help="as predict.py: for debugging only")
    parser.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster (ray start's address, or 'auto')")
    parser.add_argument("--retries", type=int, default=3, help="Ray: retries of a task lost to a system failure")
    parser.add_argument("--use-images", action="store_true", help="run each model in its environment's image")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")

    def error(message: str) -> NoReturn:
        raise RoundError(f"usage: {message}", EXIT_USAGE)

    parser.error = error  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    try:
        max_memory = parse_size(args.max_memory, "--max-memory")
    except UsageError as exc:
        raise RoundError(exc.message, EXIT_USAGE) from None
    if args.timeout <= 0 or args.workers < 0 or args.retries < 0:
        raise RoundError("--timeout must be positive, --workers and --retries not negative", EXIT_USAGE)
    del max_memory
    output_dir = user_path(args.output_dir)
    return Settings(user_path(args.manifest), dataset_path(args.dataset), dataset_path(args.benchmarks), output_dir,
                    user_path(args.report) if args.report else os.path.join(output_dir, "round.csv"), args.workers,
                    args.timeout, args.max_memory, not args.no_isolation, args.ray, args.retries, args.use_images,
                    not args.no_progress and sys.stderr.isatty())


def available_memory() -> int:
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/meminfo") as handle:
            line = next(line for line in handle if line.startswith("MemAvailable:"))
        return int(line.split()[1]) * 1024
    return 0


def local_workers(requested: int, max_memory: int) -> int:
    """min(--workers or CPUs, available memory / per-model limit), at least 1."""
    cpus = len(os.sched_getaffinity(0))
    workers = requested or cpus
    if max_memory:
        memory = available_memory()
        if memory:
            workers = min(workers, memory // max_memory)
    return max(1, workers)


def fetch_data(settings: Settings) -> tuple[str, str]:
    """The live data and benchmarks, downloaded once into the round's folder, read-only."""
    from numerai_predict.data import fetch_dataset
    from numerai_predict.parquet import check_parquet

    folder = os.path.join(settings.output_dir, DATA_FOLDER)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, flag in ((settings.dataset, "--dataset"), (settings.benchmarks, "--benchmarks")):
        path = fetch_dataset(name, folder, flag)
        check_parquet(path, f"{flag} {path}")
        if path.startswith(folder + os.sep):
            os.chmod(path, 0o444)  # shared by every model: nobody writes it
        paths.append(path)
    return paths[0], paths[1]


def plan(settings: Settings, entries: list[Entry], features: str, benchmarks: str) -> tuple[list[Job], list[Outcome]]:
    """Jobs to run, and the outcomes known without running (delivered before)."""
    max_memory = settings.max_memory
    jobs, known = [], []
    for entry in entries:
        folder = os.path.join(settings.output_dir, entry.id)
        os.makedirs(folder, exist_ok=True)
        earlier = delivered_state(folder)
        if earlier is not None:
            earlier.reused = True
            known.append(earlier)
            continue
        # No environment: the doctor picks it in the worker (on Ray, on the node), never serially here.
        jobs.append(Job(entry.id, entry.model, entry.environment, folder, features, benchmarks, entry.post_url,
                        entry.post_data, settings.timeout, max_memory, settings.isolate, settings.use_images,
                        die_with_parent=bool(settings.ray)))
    return jobs, known


def local_model(job: Job) -> Outcome | None:
    """A URL's pickle downloaded into the model's folder (read by the doctor, mounted into an image,
    run by predict.py: one download); a skipped Outcome when it cannot be had."""
    if not is_url(job.model):
        return None if os.path.isfile(job.model) else Outcome(
            job.id, "skipped", 10, job.environment, error=f"model {job.model} is not an existing file")
    from numerai_predict.transfer import download_model

    try:
        job.model = download_model(job.model, job.folder)
    except PredictError as exc:
        return Outcome(job.id, "skipped", exc.exit_code, job.environment, error=exc.one_line())
    return None


def pick_environment(job: Job) -> Outcome | None:
    """The job's environment, the doctor's verdict when the manifest gives none; a skipped Outcome
    (with predict.py's exit code) when no environment can run the pickle or it is unsafe."""
    refused = local_model(job) if job.use_images or not job.environment else None
    if refused is not None or job.environment:
        return refused
    verdict, code, reason = choose_environment(job.model)
    if code or not verdict:
        return Outcome(job.id, "skipped", code, verdict or "", error=reason)
    job.environment = verdict
    return None


def progress_bar(total: int, enabled: bool) -> Callable[[Outcome], None]:
    if not enabled:
        return lambda outcome: None
    try:
        from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return lambda outcome: None
    bar = tqdm(total=total, unit="model", file=sys.stderr)

    def step(outcome: Outcome) -> None:
        bar.set_postfix_str(f"{outcome.id}: {outcome.status}")
        bar.update(1)
        if bar.n >= total:
            bar.close()
    return step


def run_local(jobs: list[Job], workers: int, done: Callable[[Outcome], None]) -> list[Outcome]:
    """Bounded parallelism: ``workers`` threads, each with a CPU of its own for its predict.py."""
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
    from concurrent.futures import wait as wait_futures

    cpus = sorted(os.sched_getaffinity(0))
    free = list(cpus[:workers]) if workers <= len(cpus) else []
    guard = threading.Lock()
    cancelled = threading.Event()

    def one(job: Job) -> Outcome:
        with guard:
            cpu = free.pop(0) if free else None
        try:
            return run_model(job, cpu, cancelled)
        except Exception as exc:  # a bug of the round, kept to this model
            return Outcome(job.id, "failed", None, job.environment, error=f"round: {type(exc).__name__}: {exc}",
                           round_failure=True)
        finally:
            if cpu is not None:
                with guard:
                    free.append(cpu)

    outcomes = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="model") as pool:
        pending: set[Future[Outcome]] = {pool.submit(one, job) for job in jobs}
        try:
            while pending:
                finished, pending = wait_futures(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    outcomes.append(future.result())
                    done(outcomes[-1])
        except BaseException:
            cancelled.set()  # Ctrl-C: every running predict.py is stopped
            for future in pending:
                future.cancel()
            raise
    return outcomes


def round_main(settings: Settings) -> int:
    start = time.monotonic()
    entries = read_manifest(settings.manifest)
    try:
        os.makedirs(settings.output_dir, exist_ok=True)
    except OSError as exc:
        raise RoundError(f"--output_dir {settings.output_dir}: {exc.strerror or exc}", 50) from None
    busy = os.open(os.path.join(settings.output_dir, ".round.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(busy, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RoundError(f"another round is running in {settings.output_dir}", EXIT_BUSY) from None
    backend = None
    require_extra("run", "a round")
    if settings.ray:
        require_extra("round", "a round on Ray")
        backend = RayBackend(settings.ray)  # before the data: an unreachable cluster costs no download
    elif settings.use_images and subprocess.run(["docker", "version"], capture_output=True).returncode:
        raise RoundError("--use-images: docker is not available", EXIT_BACKEND)
    features, benchmarks = fetch_data(settings)
    log.info("Data: %s and %s, shared read-only", features, benchmarks)
    jobs, known = plan(settings, entries, features, benchmarks)
    done = progress_bar(len(entries), settings.progress)
    for outcome in known:
        done(outcome)
    if backend is not None:
        ran = backend.run(jobs, settings.retries, done)
        workers = backend.describe()
    else:
        count = local_workers(settings.workers, parse_size(settings.max_memory, "--max-memory"))
        workers = f"{count} local worker(s)"
        ran = run_local(jobs, count, done)
    order = {entry.id: index for index, entry in enumerate(entries)}
    outcomes = sorted(known + ran, key=lambda o: order[o.id])
    seconds = time.monotonic() - start
    summary = write_report(settings, outcomes, seconds, workers)
    print(summary, file=sys.stderr)
    return EXIT_UNRUN if any(o.round_failure for o in outcomes) else EXIT_OK


def write_report(settings: Settings, outcomes: list[Outcome], seconds: float, workers: str) -> str:
    counts = {status: sum(o.status == status for o in outcomes) for status in ("ok", "failed", "skipped")}
    reused = [o.id for o in outcomes if o.reused]
    retried = [o.id for o in outcomes if o.attempts > 1]
    summary = (f"round: {len(outcomes)} models: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} "
               f"skipped" + (f" ({len(reused)} delivered earlier, not rerun)" if reused else "")
               + (f"; retried after a system failure: {', '.join(retried)}" if retried else "")
               + f"; {seconds:.1f} s on {workers}; report {settings.report}")
    os.makedirs(os.path.dirname(settings.report) or ".", exist_ok=True)
    with atomic_file(settings.report, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS)
        writer.writeheader()
        for outcome in outcomes:
            writer.writerow(outcome.row())
    details = {"summary": summary, "seconds": round(seconds, 3), "workers": workers, "counts": counts,
               "retried": retried, "reused": reused,
               "models": [{**o.row(), "exit_code": o.exit_code, "seconds": round(o.seconds, 3),
                           "peak_mib": None if o.peak_mib is None else round(o.peak_mib, 1),
                           "cpu_seconds": round(o.cpu_seconds, 3), "attempts": o.attempts, "node": o.node,
                           "reused": o.reused} for o in outcomes]}
    write_atomic(json_path(settings.report), json.dumps(details, indent=1))
    return summary


def json_path(report: str) -> str:
    return (report[:-4] if report.endswith(".csv") else report) + ".json"


def main(argv: list[str] | None = None) -> int:
    from numerai_predict.redact import redact_logging

    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr, level=logging.INFO)
    redact_logging()
    try:
        return round_main(parse_args(sys.argv[1:] if argv is None else argv))
    except RoundError as exc:
        log.error("[round exit %d] %s", exc.exit_code, exc)
        return exc.exit_code
    except PredictError as exc:  # the data, or the output folder
        log.error("[round exit %d] %s", exc.exit_code, exc.one_line())
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("[round exit 130] interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
