"""One model through predict.py: its command, its process (locked, limited, stopped), its outcome."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from typing import Any

from numerai_predict import numerai
from numerai_predict.errors import PredictError
from numerai_predict.files import write_atomic
from numerai_predict.round.environments import PROJECT_ROOT, environment_python, pick_environment, unavailable
from numerai_predict.round.images import CONTAINER_ROOM, container_name, image_of, image_problem, remove_container
from numerai_predict.round.outcomes import STATE, Job, Outcome, delivered_state, outcome_from_report, read_json
from numerai_predict.round.warm import Template, Templates
from numerai_predict.values import parse_size

log = logging.getLogger("numerai_predict.round")




PREDICT = os.path.join(PROJECT_ROOT, "predict.py")


#: How a model's Python runs the runner: the checkout's predict.py, or the installed package's.
RUNNER = [PREDICT] if os.path.isfile(PREDICT) else ["-m", "numerai_predict"]


#: predict.py's transfers (6 x 40 s at most) and start-up, on top of the model's --timeout.
GRACE_SECONDS = 300.0


STOP_GRACE_SECONDS = 5.0  # a stopped predict.py's time to end its model's tree before it is killed


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


def run_model(job: Job, cpu: int | None = None, cancelled: threading.Event | None = None,
              templates: Templates | None = None) -> Outcome:
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
        start = time.monotonic()
        launched = launch(job, python, report_path, log_path, lock, cpu, cancelled, templates)
        if isinstance(launched, Outcome):
            return launched
        status, cpu_seconds, started = launched
        if job.use_images and status < 0:  # the docker client was killed: its container is not
            remove_container(job)
        seconds = time.monotonic() - start
        outcome = outcome_from_report(job, read_json(report_path), seconds, cpu_seconds, status, log_path)
        outcome.start = started
        if outcome.status == "ok" and outcome.csv and not os.path.exists(outcome.csv):
            outcome = Outcome(job.id, "failed", outcome.exit_code, job.environment, seconds,
                              error=f"predict.py reported {outcome.csv}, which does not exist", cpu_seconds=cpu_seconds)
        if job.use_images:
            outcome = upload_from_worker(job, outcome)
        write_atomic(os.path.join(job.folder, STATE), json.dumps(asdict(outcome), indent=1))
        return outcome


def launch(job: Job, python: str, report_path: str, log_path: str, lock: int, cpu: int | None,
           cancelled: threading.Event | None, templates: Templates | None) -> tuple[int, float, str] | Outcome:
    """predict.py's run of ``job``: forked from its warm template, or (no template, or the template
    cannot fork) started cold. (exit status, CPU-seconds, how it started), or a skipped Outcome."""
    limit = (job.timeout or numerai.TIMEOUT_SECONDS) + GRACE_SECONDS
    why = "cold (--cold)" if not job.warm else "cold (in an image)" if job.use_images else ""
    if templates is not None and not why:  # both backends give a template to every warm job
        argv = predict_command(job, python, report_path)[1 + len(RUNNER):]
        template, how = templates.get(python, job.model)
        ran = template.cold or run_in(template, argv, job, log_path, lock, cpu, limit, cancelled)
        if not isinstance(ran, str):
            return (*ran, how)
        why = f"cold ({ran})"
    with open(log_path, "wb") as output:
        try:
            post = job.post_url and not job.use_images
            proc = subprocess.Popen(predict_command(job, python, report_path, cpu),
                                    stdin=subprocess.PIPE if post else subprocess.DEVNULL,
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
        status, usage = wait(proc, limit, cancelled)
    return status, usage.ru_utime + usage.ru_stime if usage else 0.0, why


def run_in(template: Template, argv: list[str], job: Job, log_path: str, lock: int, cpu: int | None,
           limit: float, cancelled: threading.Event | None) -> tuple[int, float] | str:
    """``job`` by its warm template: the runner gets the log and the folder's lock as its own."""
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return template.run(argv, job.post_data, job.folder, [log_fd, lock], cpu, limit, cancelled)
    finally:
        os.close(log_fd)


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
