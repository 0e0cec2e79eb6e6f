"""Running the model in a child process: the one place a user's pickle is loaded.

The parent never unpickles anything. It starts this module as a child, which
loads the pickle, reports the model's arity, reads the live data from Parquet,
calls the model era by era and writes validated predictions to Parquet. Only
JSON lines (on the child's original stdout) and Parquet files cross back, so a
crashing model (a segfault from a pickle of another Python) becomes a clear
error instead of a dead runner, and nothing the model does to its own
interpreter reaches the parent.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from numerai_predict.errors import (
    ModelCrashedError,
    ModelRaisedError,
    ModelTimeoutError,
    PredictError,
    error_from_name,
)

if TYPE_CHECKING:  # annotations only: pandas is imported where it is used
    import pandas as pd

log = logging.getLogger("numerai_predict")
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The model does not need credentials: keep them out of its environment.
SECRET_NAMES = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL|AWS_", re.IGNORECASE)


class ModelProcess:
    """The child process holding the model; use as a context manager."""

    def __init__(self, model_path: str, debug: bool = False, timeout: float | None = None):
        env = {k: v for k, v in os.environ.items() if not SECRET_NAMES.search(k)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [PROJECT_ROOT, env.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "numerai_predict.sandbox", model_path] + (["--debug"] if debug else [])
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both are PIPEs
        self.requests, self.replies = self.proc.stdin, self.proc.stdout
        self.timeout = timeout
        self.started = time.monotonic()
        self.loading = 0.0  # seconds the model took to load, known after arity()
        self.deadline = self.started + timeout if timeout else None

    def __enter__(self) -> ModelProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.requests, self.replies):
            stream.close()

    def arity(self) -> int:
        """Wait for the model to load; returns how many arguments it takes."""
        arity = int(self.receive("ready")["arity"])
        self.loading = time.monotonic() - self.started
        return arity

    def predict(self, features: str, benchmarks: str | None, out: str) -> int:
        """Run the model on the live data files; predictions land in ``out``."""
        if self.timeout:  # downloading the data in between does not count against the model
            self.deadline = time.monotonic() + self.timeout - self.loading
        try:
            self.requests.write(json.dumps({"features": features, "benchmarks": benchmarks, "out": out}) + "\n")
            self.requests.flush()
        except BrokenPipeError:
            pass  # the child died; receive() says how
        return int(self.receive("done")["rows"])

    def receive(self, expected: str) -> dict[str, Any]:
        """The child's next message: a JSON object, its values as JSON decoded them."""
        self.wait_for_output()
        line = self.replies.readline()
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            message = {}
        if not isinstance(message, dict):  # valid JSON, but not a message: e.g. 'null'
            message = {}
        if message.get("event") == expected:
            return message
        if message.get("event") == "error":
            raise error_from_name(message["error"], message["message"], message.get("advice"),
                                  message.get("details", ""))
        raise ModelCrashedError(f"the model process {death(self.proc.wait())} without a result")

    def wait_for_output(self) -> None:
        """Within --timeout (the model's loading and predicting time), or stop the model."""
        if self.deadline is None:
            return
        ready, _, _ = select.select([self.replies], [], [], max(0.0, self.deadline - time.monotonic()))
        if not ready:
            self.proc.kill()
            raise ModelTimeoutError(f"the model did not finish within --timeout {self.timeout:g} s")


def death(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


# ---- the child side -------------------------------------------------------


def child_main(argv: list[str]) -> int:
    """Entry point of the child: load, report arity, predict on request."""
    control = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the model prints goes to stderr, not into the protocol
    logging.basicConfig(level=logging.DEBUG if "--debug" in argv else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        from numerai_predict.pickles import as_callable, model_arity

        model = as_callable(load(argv[0]))
        arity = model_arity(model)
        send(control, event="ready", arity=arity)
        request = json.loads(sys.stdin.readline() or "{}")
        # The parent sends benchmarks exactly when arity is 2.
        rows = run_and_save(model, request["features"], request["benchmarks"], request["out"])
        send(control, event="done", rows=rows)
        return 0
    except PredictError as exc:
        send(control, event="error", error=type(exc).__name__, message=exc.message, advice=exc.advice,
             details=exc.details)
        return exc.exit_code


def send(control: TextIO, **message: object) -> None:
    control.write(json.dumps(message) + "\n")


def load(path: str) -> object:
    from numerai_predict.pickles import load_model

    log.info("Loading model %s", os.path.basename(path))
    return load_model(path)


def run_and_save(model: Callable[..., object], features_path: str, benchmarks_path: str | None, out: str) -> int:
    """Call the model era by era, validate each answer, write all predictions to ``out``."""
    import pandas as pd

    from numerai_predict.data import read_parquet
    from numerai_predict.validate import validate_predictions

    features = read_parquet(features_path)
    benchmarks = read_parquet(benchmarks_path) if benchmarks_path is not None else None
    groups = features.groupby("era", sort=False) if "era" in features.columns else [(None, features)]
    log.info("Predicting on %d rows of live features", len(features))
    results: list[pd.DataFrame] = []
    for era, era_features in groups:
        args = (era_features,) if benchmarks is None else (era_features, benchmarks.reindex(era_features.index))
        if era is not None:
            log.debug("Predicting era %s (%d rows)", era, len(era_features))
        results.append(validate_predictions(call_model(model, args), era_features.index))
    predictions = pd.concat(results)
    predictions.to_parquet(out)
    return len(predictions)


def call_model(model: Callable[..., object], args: tuple[pd.DataFrame, ...]) -> object:
    try:
        return model(*args)
    except Exception as exc:
        raise ModelRaisedError(f"the model raised {type(exc).__name__}: {exc}",
                               details=traceback.format_exc()) from None


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
