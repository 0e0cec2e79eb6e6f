"""The local backend: a thread per worker, each model a predict.py pinned to a CPU of its own."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable

from numerai_predict.round.outcomes import Job, Outcome
from numerai_predict.round.warm import Templates
from numerai_predict.round.worker import run_model

log = logging.getLogger("numerai_predict.round")


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
    """Bounded parallelism: ``workers`` threads, each with a CPU of its own for its predict.py; the
    warm templates (round/warm.py) of this round, ended with it."""
    import shutil
    import tempfile

    warm = [job for job in jobs if job.warm and not job.use_images]
    # A short private folder for the templates' sockets (a socket's path is at most 107 bytes).
    folder = tempfile.mkdtemp(prefix="numerai-predict-warm-") if warm else ""
    templates = Templates(warm[0].features, warm[0].benchmarks, folder) if warm else None
    try:
        return run_pool(jobs, workers, done, templates)
    finally:
        if templates is not None:
            templates.close()
            shutil.rmtree(folder, ignore_errors=True)


def run_pool(jobs: list[Job], workers: int, done: Callable[[Outcome], None],
             templates: Templates | None) -> list[Outcome]:
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
            return run_model(job, cpu, cancelled, templates)
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
