"""Running the model in a child process: the one place a user's pickle is loaded.

The parent never unpickles anything. It starts this module as a child, which
confines itself, sends the live ids while no code of the model has run (the runner's
trusted copy of them: the runner imports neither pandas nor pyarrow), loads the pickle,
reports the model's arity, reads the live data from Parquet, calls the model era by era
and writes its validated predictions as raw float64 in the live ids' order. Only JSON
lines (on the child's original stdout) and that file cross back, so a
crashing model (a segfault from a pickle of another Python) becomes a clear
error instead of a dead runner, and nothing the model does to its own
interpreter reaches the parent. The child confines itself before loading the
model, and the parent watches and ends the model's whole process tree
(numerai_predict.isolation).
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
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol, TextIO

from numerai_predict import numerai
from numerai_predict.errors import (
    DataUnreadableError,
    ModelCrashedError,
    ModelMemoryError,
    ModelRaisedError,
    ModelTimeoutError,
    PredictError,
    error_from_name,
)

if TYPE_CHECKING:  # annotations only: pandas is imported where it is used
    import pandas as pd

log = logging.getLogger("numerai_predict")
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The model's environment is an allowlist: what Python, the locale and the ML libraries' thread
# pools read. Anything else (credentials, agent and bus sockets, database URLs) stays with the runner.
MODEL_ENVIRONMENT = re.compile(
    r"PATH|HOME|USER|LOGNAME|LANG|LANGUAGE|TZ|TERM|LC_\w+|PYTHON\w*|CONDA_PREFIX|LD_LIBRARY_PATH|GIT_REF"
    r"|\w+_NUM_THREADS|OMP_\w+|KMP_\w+|MKL_\w+|OPENBLAS_\w+|NUMEXPR_\w+|NUMBA_\w+|JOBLIB_\w+|LOKY_\w+"
    r"|TF_CPP_MIN_LOG_LEVEL|TF_ENABLE_ONEDNN_OPTS|KERAS_BACKEND|CUDA_VISIBLE_DEVICES|MPLBACKEND")
# One protocol message at most: the model's process shares the channel and could send an endless line.
MESSAGE_CAP = 1 << 20
#: The first message (facts and live ids) comes before the pickle loads: trusted, and as long as the ids.
FIRST_MESSAGE_CAP = 256 << 20
TEXT_CAP = 4000  # characters of a reported message or advice kept (details: 10x)
#: Live data a warm template read before forking (numerai_predict/round/warm.py), by real path.
PRELOADED: dict[str, pd.DataFrame] = {}


class Child(Protocol):
    """What ModelProcess uses of its child: subprocess.Popen's, or a warm template's fork's."""

    pid: int
    stdin: IO[bytes] | None
    stdout: IO[bytes] | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...


class PreparedChild(Protocol):
    def start(self, argv: list[str], env: dict[str, str]) -> Child: ...


#: A warm template's model process, forked before its runner read the request; None: a fresh one.
prepared_child: PreparedChild | None = None


class Limits(NamedTuple):
    """What the model may use: Numerai's limits by default (predict.py's flags)."""

    timeout: float | None = numerai.TIMEOUT_SECONDS  # seconds for loading and predicting
    max_memory: int = numerai.MAX_MEMORY_BYTES  # bytes of the whole process tree; 0: unlimited
    cpus: int = numerai.CPUS  # 0: all
    isolate: bool = True  # namespaces, Landlock, the runner's secrets protected


class ModelProcess:
    """The child process holding the model, and its whole process tree; use as a context manager."""

    def __init__(self, model_path: str, features_path: str, scratch: str, limits: Limits, debug: bool = False,
                 report: dict[str, object] | None = None):
        from numerai_predict.isolation import Watchdog, protect_runner

        self.secrets = protect_runner() if limits.isolate else "not protected (--no-isolation)"
        env = model_environment(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [PROJECT_ROOT, env.get("PYTHONPATH")]))
        env["TMPDIR"] = env["XDG_CACHE_HOME"] = scratch  # the one place the model may write
        command = [sys.executable, "-m", "numerai_predict.sandbox", model_path, scratch, str(limits.cpus),
                   str(limits.max_memory), features_path]
        command += (["--no-isolation"] if not limits.isolate else []) + (["--debug"] if debug else [])
        self.proc = start_child(command, env)
        assert self.proc.stdin is not None and self.proc.stdout is not None  # both are PIPEs
        self.requests, self.replies = self.proc.stdin, self.proc.stdout
        self.pending = bytearray()  # bytes read from the child past its last whole line
        self.watchdog = Watchdog(self.proc.pid, limits.max_memory, confined=limits.isolate)
        self.limits = limits
        self.timeout = limits.timeout
        self.started = time.monotonic()
        self.loading = 0.0  # seconds the model took to load, known after arity()
        self.deadline = self.started + self.timeout if self.timeout else None
        self.report = {} if report is None else report
        self.confinement: dict[str, str] = {}
        self.live_ids: list[str] = []
        self.report["isolation"] = self.isolation()
        try:
            first = self.receive("isolated", trusted=True)
            facts = first.get("facts")
            self.confinement = {str(k)[:100]: str(v)[:TEXT_CAP] for k, v in facts.items()} \
                if isinstance(facts, dict) else {}
            self.live_ids = checked_ids(first.get("ids"))
        except BaseException:
            self.__exit__()
            raise
        self.report["isolation"] = self.isolation()
        if limits.isolate and os.geteuid() == 0 and not in_container():
            log.warning("The model runs as root: it can read every file of this machine that is not hidden "
                        "from it (disks included); run predict.py as an ordinary user")
        log.info("Model isolation: %s", "; ".join(f"{k}: {v}" for k, v in self.isolation().items()
                                                   if k != "peak_memory_bytes"))

    def isolation(self) -> dict[str, object]:
        """The limits and mechanisms in force, for the log and --report."""
        from numerai_predict.isolation import human_bytes

        return {"timeout": f"{self.timeout:g} s" if self.timeout else "none",
                "memory": f"{human_bytes(self.limits.max_memory)} for the whole process tree"
                if self.limits.max_memory else "unlimited",
                **self.confinement, "secrets": self.secrets,
                "process_tree": "ended when the model answers (runner is its child subreaper)",
                "peak_memory_bytes": self.watchdog.peak}

    def __enter__(self) -> ModelProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.watchdog.close()
        self.report["isolation"] = self.isolation()  # with the peak memory
        self.proc.wait()
        for stream in (self.requests, self.replies):
            stream.close()

    def arity(self) -> int:
        """Wait for the model to load; returns how many arguments it takes."""
        arity = self.receive("ready").get("arity")
        if arity not in (1, 2) or isinstance(arity, bool):
            raise self.invalid(f"arity {arity!r}")
        self.loading = time.monotonic() - self.started
        return int(arity)

    def predict(self, features: str, benchmarks: str | None, out: str) -> int:
        """Run the model on the live data files; predictions land in ``out``."""
        if self.timeout:  # downloading the data in between does not count against the model
            self.deadline = time.monotonic() + self.timeout - self.loading
        try:
            request = {"features": features, "benchmarks": benchmarks, "out": out}
            self.requests.write(json.dumps(request).encode() + b"\n")
            self.requests.flush()
        except BrokenPipeError:
            pass  # the child died; receive() says how
        rows = self.receive("done").get("rows")
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            raise self.invalid(f"rows {rows!r}")
        # Nothing of the model may outlive its answer (and touch its output after): a tree that
        # will not die fails the run, its output unread.
        if not self.watchdog.kill():
            raise ModelCrashedError("a process of the model could not be ended; its output is not delivered")
        return rows

    def receive(self, expected: str, trusted: bool = False) -> dict[str, Any]:
        """The child's next message: a JSON object, its values as JSON decoded them. Untrusted once the
        pickle may have loaded (``trusted`` before): the model's code runs in that process, so a message
        may be forged; only model-level errors are taken from it (errors.error_from_name), and the runner
        checks the predictions again."""
        line = self.read_line(FIRST_MESSAGE_CAP if trusted else MESSAGE_CAP)
        if not self.watchdog.sample():  # over --max-memory as it spoke: killed, whatever it said
            raise ModelMemoryError(self.memory_message())
        try:
            message = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            message = {}
        if not isinstance(message, dict):  # valid JSON, but not a message: e.g. 'null'
            message = {}
        if message.get("event") == expected:
            return message
        if message.get("event") == "error":
            self.watchdog.kill()
            raise error_from_name(str(message.get("error")), capped(message.get("message"), TEXT_CAP),
                                  capped(message.get("advice"), TEXT_CAP) or None,
                                  capped(message.get("details"), 10 * TEXT_CAP), data_too=trusted)
        if line and self.proc.poll() is None:  # something else while it still runs
            raise self.invalid(f"message {line[:80]!r}")
        status = self.exit_status()
        if self.watchdog.exceeded:
            raise ModelMemoryError(self.memory_message())
        raise death(status)

    def exit_status(self) -> int:
        """The child's exit status, waited for within the deadline: a model may close the channel and
        run on."""
        remaining = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        try:
            return self.proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            self.watchdog.kill()
            raise self.timed_out() from None

    def timed_out(self) -> ModelTimeoutError:
        return ModelTimeoutError(f"the model did not finish within --timeout {self.timeout:g} s")

    def read_line(self, cap: int = MESSAGE_CAP) -> bytes:
        """The child's next line, read under the deadline and at most ``cap`` bytes long; b""
        when the child closed its end first (a half line is no message)."""
        fd = self.replies.fileno()
        end = self.pending.find(b"\n")
        while end < 0:
            if len(self.pending) > cap:
                raise self.invalid(f"message over {cap >> 20} MiB")
            self.wait_for_output()
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                self.pending = bytearray()
                return b""
            found = chunk.find(b"\n")  # searched in the new chunk only: a long message stays linear
            end = len(self.pending) + found if found >= 0 else -1
            self.pending += chunk
        line = bytes(self.pending[:end])
        del self.pending[:end + 1]
        return line

    def invalid(self, what: str) -> ModelCrashedError:
        """The child broke the protocol (the model's code forged or garbled a message): stop it."""
        self.watchdog.kill()
        return ModelCrashedError(f"the model process broke numerai-predict's protocol ({what}); it was stopped")

    def memory_message(self) -> str:
        from numerai_predict.isolation import human_bytes

        return (f"the model's processes reached {human_bytes(self.watchdog.peak)} together, over --max-memory "
                f"{human_bytes(self.limits.max_memory)}; they were stopped")

    def wait_for_output(self) -> None:
        """Within --timeout (the model's loading and predicting time), or stop the model."""
        if self.deadline is None:
            return
        ready, _, _ = select.select([self.replies], [], [], max(0.0, self.deadline - time.monotonic()))
        if not ready:
            self.watchdog.kill()
            raise self.timed_out()


def start_child(command: list[str], env: dict[str, str]) -> Child:
    """The model's process: a fresh interpreter, or the warm template's prepared one (used once)."""
    global prepared_child
    if prepared_child is not None:
        child, prepared_child = prepared_child, None
        return child.start(command[3:], env)
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)


def in_container() -> bool:
    """Whether this runs in a container (Docker, Podman), where root is the container's."""
    return os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")


def capped(value: object, limit: int) -> str:
    return "" if value is None else str(value)[:limit]


def model_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The runner's environment as the model gets it: the allowed names only."""
    return {k: v for k, v in environ.items() if MODEL_ENVIRONMENT.fullmatch(k)}


def death(returncode: int) -> ModelCrashedError:
    """Why the model's process ended without a result: a signal (a crash) or its own exit."""
    if returncode < 0:
        try:
            name = f"{signal.Signals(-returncode).name} (signal {-returncode})"
        except ValueError:
            name = f"signal {-returncode}"
        return ModelCrashedError(f"the model process was killed by {name} without returning predictions")
    return ModelCrashedError(
        f"the model process exited with status {returncode} without returning predictions",
        advice="Something in the model ended its process (os._exit, sys.exit, a library's abort): "
        "return predictions from the function instead")


# ---- the child side -------------------------------------------------------


def child_main(argv: list[str]) -> int:
    """Entry point of the child: confine itself, load, report arity, predict on request."""
    from numerai_predict.isolation import confine

    model_path, scratch, cpus, max_memory, features = argv[0], argv[1], int(argv[2]), int(argv[3]), argv[4]
    control = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever anything prints goes to stderr, not into the protocol
    # First, while this process is one thread and holds no model code: confined, then the live ids
    # (the runner's own copy; nothing of the model has run yet to alter them).
    facts = confine(scratch, cpus, "--no-isolation" not in argv, max_memory)
    try:
        ids = live_ids(features)
    except PredictError as exc:
        send(control, event="error", error=type(exc).__name__, message=exc.message, advice=exc.advice)
        return exc.exit_code
    send(control, event="isolated", facts=facts, ids=ids)
    del ids  # not the model's memory
    logging.basicConfig(level=logging.DEBUG if "--debug" in argv else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        from numerai_predict.pickles import as_callable, model_arity

        model = as_callable(load(model_path))
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


def live_ids(features_path: str) -> list[str]:
    """The live data's ids as the CSV writes them."""

    ids = [str(value) for value in frame_of(features_path, columns=[]).index]
    if not ids:
        raise DataUnreadableError(f"{features_path} holds no live rows")
    return ids


def frame_of(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    """The live data as read from Parquet, or as a warm template read it before forking."""
    preloaded = PRELOADED.get(os.path.realpath(path))
    if preloaded is not None:
        return preloaded
    from numerai_predict.parquet import read_parquet

    return read_parquet(path, columns=columns)


def checked_ids(ids: object) -> list[str]:
    """The child's live ids (sent before the model loaded): a non-empty list of unique strings."""
    if not (isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids)):
        raise ModelCrashedError("the model process sent no live ids before loading the model")
    if len(set(ids)) != len(ids):
        from numerai_predict.errors import DataUnreadableError

        raise DataUnreadableError("the live data's ids are not unique")
    return ids


def send(control: TextIO, **message: object) -> None:
    control.write(json.dumps(message) + "\n")


def load(path: str) -> object:
    from numerai_predict.pickles import load_model

    log.info("Loading model %s", os.path.basename(path))
    return load_model(path)


def run_and_save(model: Callable[..., object], features_path: str, benchmarks_path: str | None, out: str) -> int:
    """Call the model era by era, validate each answer, write all predictions to ``out``."""
    import pandas as pd

    from numerai_predict.validate import check_spread, validate_predictions

    features = frame_of(features_path)
    benchmarks = frame_of(benchmarks_path) if benchmarks_path is not None else None
    # Live data is one era: the frame as read, not a groupby's copy of it (twice the memory).
    one_era = "era" not in features.columns or features["era"].nunique(dropna=False) <= 1
    groups = [(None, features)] if one_era else features.groupby("era", sort=False, dropna=False)
    log.info("Predicting on %d rows of live features", len(features))
    results: list[pd.DataFrame] = []
    for era, era_features in groups:
        args = (era_features,) if benchmarks is None else (era_features, benchmarks.reindex(era_features.index))
        if era is not None:
            log.debug("Predicting era %s (%d rows)", era, len(era_features))
        # Numerai's spread rule holds for the whole submission, not each era: checked once, below.
        results.append(validate_predictions(call_model(model, args), era_features.index, whole=one_era))
    predictions = results[0] if len(results) == 1 else pd.concat(results)
    if not one_era:
        check_spread(predictions["prediction"].to_numpy())
        predictions = predictions.reindex(features.index)  # the live ids' order, whatever the eras' order
    # Raw float64, one per live id in their order: what the runner reads without pandas or pyarrow.
    with open(out, "wb") as handle:
        handle.write(predictions["prediction"].to_numpy(dtype="=f8").tobytes())
    return len(predictions)


def call_model(model: Callable[..., object], args: tuple[pd.DataFrame, ...]) -> object:
    try:
        return model(*args)
    except Exception as exc:
        raise ModelRaisedError(f"the model raised {type(exc).__name__}: {exc}",
                               details=traceback.format_exc()) from None


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
