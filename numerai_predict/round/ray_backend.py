"""The Ray backend: each model a Ray task, the data through the object store once per node."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from numerai_predict.files import write_atomic
from numerai_predict.round.manifest import EXIT_BACKEND, RoundError
from numerai_predict.round.outcomes import STATE, Job, Outcome
from numerai_predict.round.warm import Templates
from numerai_predict.round.worker import locked, run_model
from numerai_predict.values import parse_size

log = logging.getLogger("numerai_predict.round")
NODE_CHECK_SECONDS = 2.0  # how often the driver asks which nodes the GCS declared dead


def ray_task(job: Job, data: list[Any], ledger: Any) -> Outcome:
    """One model on a Ray worker: the data from the object store (written once per node), then
    run_model. Model failures are returned; only a lost worker or node makes Ray retry it."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    attempt = int(ray.get(ledger.start.remote(job.id, node)))
    paths = []
    for path, size, ref in data:
        if not (os.path.isfile(path) and os.path.getsize(path) == size):  # this node does not see the driver's
            path = node_copy(path, size, ref[0])
        paths.append(path)
    job.features, job.benchmarks = paths
    try:
        outcome = run_model(job, None, None, worker_templates(job))
    except Exception as exc:  # a bug of the round, kept to this model
        outcome = Outcome(job.id, "failed", None, job.environment, error=f"round: {type(exc).__name__}: {exc}",
                          round_failure=True)
    outcome.attempts, outcome.node = attempt, node
    if outcome.csv and os.path.isfile(outcome.csv):
        with open(outcome.csv, "rb") as handle:
            outcome.extra["csv_bytes"] = handle.read()  # the driver keeps a copy, wherever this node is
    return outcome


#: This Ray worker process's warm templates, by data files: they live as long as it does (their
#: stdin is its pipe), so the tasks it runs one after another fork from them.
TEMPLATES: dict[tuple[str, str], Templates] = {}


def worker_templates(job: Job) -> Templates | None:
    if not job.warm or job.use_images:
        return None
    key = (job.features, job.benchmarks)
    if key not in TEMPLATES:
        import atexit
        import shutil

        folder = tempfile.mkdtemp(prefix="numerai-predict-warm-")
        TEMPLATES[key] = Templates(job.features, job.benchmarks, folder, end_with_driver=job.die_with_parent)
        atexit.register(shutil.rmtree, folder, True)  # after the templates' own close (registered later)
        atexit.register(TEMPLATES[key].close)
    return TEMPLATES[key]


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
        self.where: dict[str, str] = {}  # model id -> the node of its latest attempt

    def start(self, ident: str, node: str = "") -> int:
        self.attempts[ident] = self.attempts.get(ident, 0) + 1
        self.where[ident] = node
        return self.attempts[ident]

    def nodes(self) -> dict[str, str]:
        return dict(self.where)


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

        def submit(job: Job) -> Any:
            memory = parse_size(job.max_memory, "--max-memory")
            return task.options(num_cpus=1, memory=memory or None, max_retries=retries, retry_exceptions=False,
                                name=f"model {job.id}").remote(
                job, [by_path[job.features], by_path[job.benchmarks]], ledger)

        pending = {submit(job): job for job in jobs}
        moved: dict[str, int] = {}
        outcomes = []
        checked = time.monotonic()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=NODE_CHECK_SECONDS)
            if time.monotonic() - checked >= NODE_CHECK_SECONDS:
                self.move_off_dead_nodes(pending, ledger, submit, moved, retries)
                checked = time.monotonic()
            if not ready or ready[0] not in pending:
                continue
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

    def move_off_dead_nodes(self, pending: dict[Any, Job], ledger: Any, submit: Callable[[Job], Any],
                            moved: dict[str, int], retries: int) -> None:
        """A node cut off (not killed) keeps its tasks' calls open, so Ray waits for them; the GCS has
        declared it dead: its models run again elsewhere, within --retries (the folder's lock and
        state keep a model delivered before from running or uploading twice)."""
        dead = {n["NodeID"] for n in self.ray.nodes() if not n.get("Alive")}
        if not dead:
            return
        where = self.ray.get(ledger.nodes.remote())
        for ref, job in list(pending.items()):
            if where.get(job.id) in dead and moved.get(job.id, 0) < retries:
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref, force=True)  # never retried by Ray as well
                del pending[ref]
                moved[job.id] = moved.get(job.id, 0) + 1
                log.warning("model %s: node %s stopped answering; running it on another", job.id, where[job.id][:8])
                pending[submit(job)] = job

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
