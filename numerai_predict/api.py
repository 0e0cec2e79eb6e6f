"""The Python API for notebooks: ``check`` a pickle, ``dry_run`` a function before pickling it.

Both raise the project's errors (numerai_predict.errors: each has its ``exit_code``); neither exits.
``check`` needs nothing beyond the standard library; ``dry_run`` needs the [run] extra.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from numerai_predict import numerai

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, eq=False)  # identity, as for any report: its fields hold lists and dicts
class Diagnosis:
    """The doctor's diagnosis of a pickle; ``data`` is its JSON form (doctor.schema.json)."""

    pickle: str
    made_with: list[str] | None  # the Pythons that could have made it; None: nothing tells
    runnable: bool  # some environment loads it, and it is safe
    safe: bool  # no reference that runs commands, opens sockets or evaluates code at load time
    environment: str | None  # e.g. "py312"
    docker_image: str | None  # numerapi's upload_model(docker_image=...), e.g. "Python 3.12"
    experimental: bool
    reason: str
    exit_code: int  # what `numerai-predict --check` exits with: 0, 12 or 16
    data: dict[str, Any] = field(repr=False)

    def to_json(self) -> str:
        return json.dumps(self.data, indent=1)

    def __str__(self) -> str:
        from numerai_predict.doctor import render

        return render(self.data)


@dataclass(frozen=True, eq=False)
class DryRun:
    """What the runner made of a function: its predictions as Numerai receives them."""

    diagnosis: Diagnosis
    predictions: pd.DataFrame  # indexed by id, one "prediction" column, read back from the CSV
    csv: bytes  # the CSV's bytes, as the runner writes and uploads them
    docker_image: str  # the docker_image to upload the pickle with
    isolation: dict[str, object]  # how the model's process was confined


def check(path_or_bytes: str | os.PathLike[str] | bytes) -> Diagnosis:
    """The pickle doctor: which Python made the pickle, what it imports and calls while loading, and
    where to run it. Nothing is loaded. Raises ModelFetchError (no such file) or PickleUnreadableError."""
    from numerai_predict.doctor import diagnose, exit_code
    from numerai_predict.errors import ModelFetchError
    from numerai_predict.pickles import inspect_pickle

    if isinstance(path_or_bytes, (bytes, bytearray)):
        with tempfile.TemporaryDirectory(prefix="numerai-predict-check-") as folder:
            path = os.path.join(folder, "model.pkl")
            with open(path, "wb") as handle:
                handle.write(path_or_bytes)
            return as_diagnosis(diagnose(path, inspect_pickle(path), "<bytes>", ["--model", "model.pkl"]),
                                exit_code)
    path = os.fspath(path_or_bytes)
    if not os.path.isfile(path):
        raise ModelFetchError(f"{path} is not an existing file")
    return as_diagnosis(diagnose(path, inspect_pickle(path), path, ["--model", path]), exit_code)


def as_diagnosis(data: dict[str, Any], exit_code: Callable[[dict[str, Any]], int]) -> Diagnosis:
    verdict = data["verdict"]
    return Diagnosis(pickle=data["pickle"], made_with=data["python"]["made_with"], runnable=verdict["runnable"],
                     safe=not data["unsafe"], environment=verdict["environment"],
                     docker_image=verdict["docker_image"], experimental=verdict["experimental"],
                     reason=verdict["reason"], exit_code=exit_code(data), data=data)


def dry_run(predict_fn: Callable[..., Any], live_features: pd.DataFrame,
            live_benchmark_models: pd.DataFrame | None = None, *, isolate: bool = False,
            timeout: float = numerai.TIMEOUT_SECONDS, max_memory: int = numerai.MAX_MEMORY_BYTES,
            cpus: int = numerai.CPUS) -> DryRun:
    """Run ``predict_fn`` as Numerai will, before you upload it: pickled with cloudpickle as you will
    pickle it, diagnosed by the doctor, loaded in a process of its own within Numerai's limits, called
    on ``live_features`` (and ``live_benchmark_models`` if it takes two arguments), its answer checked
    by the runner's validation and Numerai's rules and written as the CSV. ``isolate=True`` adds the
    runner's isolation (namespaces, Landlock; Linux). Raises the project's errors, e.g.
    InvalidPredictionsError (exit 40-48) for an answer Numerai would refuse."""
    from numerai_predict.extras import require_extra

    require_extra("run", "dry_run")
    import cloudpickle

    from numerai_predict.errors import UsageError
    from numerai_predict.pickles import as_callable, model_arity

    if model_arity(as_callable(predict_fn)) == 2 and live_benchmark_models is None:
        raise UsageError("predict_fn takes (live_features, live_benchmark_models): pass live_benchmark_models",
                         advice="Pass the live benchmark models frame as dry_run's third argument.")
    pickled = cloudpickle.dumps(predict_fn)
    diagnosis = check(pickled)
    facts: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="numerai-predict-dry-run-") as folder:
        payload = run_in(folder, pickled, live_features, live_benchmark_models, facts,
                         limits=(timeout, max_memory, cpus, isolate))
    import io

    import pandas as pd

    predictions = pd.read_csv(io.BytesIO(payload), index_col=0)
    return DryRun(diagnosis=diagnosis, predictions=predictions, csv=payload,
                  docker_image=diagnosis.docker_image or numerai.docker_image(),
                  isolation=dict(facts.get("isolation") or {}))  # type: ignore[call-overload]


def run_in(folder: str, pickled: bytes, features: pd.DataFrame, benchmarks: pd.DataFrame | None,
           facts: dict[str, object], limits: tuple[float, int, int, bool]) -> bytes:
    """The runner's own pipeline on files in ``folder``: the CSV's bytes."""
    from numerai_predict.pipeline import predict
    from numerai_predict.values import Options

    model = os.path.join(folder, "model.pkl")
    with open(model, "wb") as handle:
        handle.write(pickled)
    features_path = os.path.join(folder, "live.parquet")
    features.to_parquet(features_path)
    benchmarks_path = os.path.join(folder, "live_benchmark_models.parquet")
    if benchmarks is not None:
        benchmarks.to_parquet(benchmarks_path)
    timeout, max_memory, cpus, isolate = limits
    options = Options(model=model, dataset=features_path, benchmarks=benchmarks_path, output_dir=folder,
                      post=None, report=None, timeout=timeout, max_memory=max_memory, cpus=cpus, isolate=isolate,
                      debug=False, check=False, json=False, allow_unsafe=False)
    with open(predict(options, facts), "rb") as handle:
        return handle.read()
