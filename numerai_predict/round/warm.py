"""Warm templates: a model's runner and process forked from an interpreter that imported the
common stack and read the live data once, instead of two fresh interpreters per model.

One template per environment and set of libraries the doctor says a pickle imports. It never
loads a pickle and holds no secret: it starts with the model's scrubbed environment, and reads
nothing of a model's request but a token. Per model, on the driver's connection:

  template --fork--> runner (trusted: predict.py's pipeline, setsid, dies with the template)
  runner   --fork--> model process, *before* the runner reads the request (the POST, the URL),
                     so no byte of it is in the model's memory; then the model process confines
                     itself exactly as predict.py's does (numerai_predict.sandbox.child_main).

The runner then runs predict.py's own ``main`` on the request's flags: the same doctor, limits,
watchdog, validation, CSV and upload as predict.py alone. A template that is not one thread
when it would fork (unshare(CLONE_NEWUSER) and fork need one) answers "cold", and the model runs
as predict.py alone; so does any model whose template could not start.

Memory: a forked model's resident anonymous pages are counted whole, the template's shared
pages included (what the Watchdog reads, RssAnon + RssShmem): a model is charged as if it had
imported and read the data itself, so --max-memory means what it means for predict.py alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import select
import signal
import socket
import subprocess
import threading
import time
from typing import Any

from numerai_predict.round.template import LINE_CAP

log = logging.getLogger("numerai_predict.round")

#: Libraries a template imports when a pickle needs them (the doctor's modules, top level). Only
#: these: importing whatever a pickle names would run installed code chosen by the pickle.
WARM_LIBRARIES = ("sklearn", "lightgbm", "xgboost", "catboost", "scipy", "torch", "tensorflow", "keras",
                  "joblib", "cloudpickle")
#: Thread pools held at one thread so the template stays one thread (its forks keep them: one CPU each).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "JE_ARROW_MALLOC_CONF": "background_thread:false", "NUMEXPR_NUM_THREADS": "1"}
START_SECONDS = 180.0  # a template's imports and data, on a loaded machine


# ---- the driver's side -------------------------------------------------------


def libraries_of(model: str) -> tuple[str, ...]:
    """The warm libraries a pickle imports, as the doctor reads it (no code of it runs)."""
    from numerai_predict.errors import PredictError
    from numerai_predict.pickles import inspect_pickle

    try:
        facts = inspect_pickle(model)
    except PredictError:
        return ()
    return tuple(lib for lib in WARM_LIBRARIES if lib in facts.modules)


class Template:
    """One template process, started by the driver and ended with it (its stdin closes)."""

    def __init__(self, python: str, features: str, benchmarks: str, libraries: tuple[str, ...], folder: str,
                 end_with_driver: bool = False):
        from numerai_predict.sandbox import PROJECT_ROOT, model_environment

        self.path = os.path.join(folder, f"{secrets.token_hex(4)}.sock")
        env = model_environment(os.environ) | ONE_THREAD
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [PROJECT_ROOT, env.get("PYTHONPATH")]))
        self.log_path = self.path[:-5] + ".log"
        with open(self.log_path, "wb") as output:
            command = [python, "-m", "numerai_predict.round.template", self.path, features, benchmarks,
                       *(["--end-with-driver"] if end_with_driver else []), *libraries]
            self.threaded = False  # more than one thread after its imports (it said so)
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=output,
                                         env=env, start_new_session=True)
        self.cold = self.handshake()
        if self.cold:
            log.warning("models of %s start cold: %s", " ".join((os.path.basename(python), *libraries)), self.cold)

    def handshake(self) -> str:
        """'' when ready, else why its models start cold."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START_SECONDS)
        line = self.proc.stdout.readline() if ready else b""
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("ready"):
            return ""
        if isinstance(answer, dict) and answer.get("cold"):
            self.threaded = bool(answer.get("threads"))
            return str(answer["cold"])
        return f"the template did not start (see {self.log_path})"

    def run(self, argv: list[str], post_data: str, cwd: str, fds: list[int], cpu: int | None, limit: float,
            cancelled: threading.Event | None) -> tuple[int, float] | str:
        """predict.py's ``main(argv)`` forked from the template: (exit code, CPU-seconds), or why
        it must start cold (nothing of the model ran). ``fds``: its log and its folder's lock."""
        token = secrets.token_hex(16)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            try:
                conn.connect(self.path)
                conn.sendall(json.dumps({"run": token}).encode() + b"\n")
                answer = read_message(conn, START_SECONDS)
            except OSError as exc:
                return f"the template is gone ({exc.strerror or exc})"
            if "cold" in answer or "started" not in answer:
                return str(answer.get("cold") or "the template did not answer")
            # The runner's environment is predict.py alone's (proxies, retry budgets, credentials): it
            # reaches the runner after the model's process was forked, never the template.
            request = {"argv": argv, "post_data": post_data, "cpu": cpu, "cwd": cwd, "env": dict(os.environ)}
            try:
                socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], fds)
            except OSError as exc:  # the runner died before reading it: nothing of the model ran
                self.signal(token, "KILL")
                return f"the template's runner is gone ({exc.strerror or exc})"
            return self.wait(conn, token, limit, cancelled)

    def wait(self, conn: socket.socket, token: str, limit: float,
             cancelled: threading.Event | None) -> tuple[int, float]:
        """The runner's exit, past ``limit`` or when cancelled asked to stop (SIGTERM: it ends the
        model's tree), a grace later killed with its session; the template signals only its own
        unreaped child, so no other process can be hit."""
        from numerai_predict.round.worker import STOP_GRACE_SECONDS

        deadline, asked, killed = time.monotonic() + limit, None, None
        while True:
            answer = read_message(conn, 0.1)
            if "exit" in answer:
                return int(answer["exit"]), float(answer.get("cpu") or 0.0)
            if answer.get("gone"):
                return -signal.SIGKILL, 0.0
            now = time.monotonic()
            if now > deadline or (cancelled is not None and cancelled.is_set()):
                if asked is None:
                    asked = now
                    self.signal(token, "TERM")
                elif now > asked + STOP_GRACE_SECONDS and (killed is None or now > killed + STOP_GRACE_SECONDS):
                    if killed is not None and now > asked + 60:  # the template does not answer: give up
                        return -signal.SIGKILL, 0.0
                    killed = now
                    self.signal(token, "KILL")  # again until it ends: a stop request may be lost

    def signal(self, token: str, how: str) -> None:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self.path)
            conn.sendall(json.dumps({"stop": token, "signal": how}).encode() + b"\n")

    def close(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # the template lets its runners end (or kills them: end_with_driver)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.remove(self.path)


class Templates:
    """The driver's templates, one per (environment's Python, libraries), started on first use."""

    def __init__(self, features: str, benchmarks: str, folder: str, end_with_driver: bool = False):
        self.features, self.benchmarks, self.folder = features, benchmarks, folder
        self.end_with_driver = end_with_driver
        os.makedirs(folder, mode=0o700, exist_ok=True)
        self.started: dict[tuple[str, tuple[str, ...]], Template] = {}
        self.lock = threading.Lock()  # guards the two dicts; each key's own lock, its start
        self.starting: dict[tuple[str, tuple[str, ...]], threading.Lock] = {}

    def get(self, python: str, model: str) -> tuple[Template, str]:
        """The template for this pickle, and how its models start: "warm", or warm from the stack
        alone when importing its libraries starts threads (polars' pools, under catboost): the
        model's process imports them itself, after its fork and confinement, as predict.py's does."""
        libraries = libraries_of(model)
        template = self.start(python, libraries)
        if template.threaded and libraries:
            stack = self.start(python, ())  # if it too is not one thread, its reason is the one to give
            return stack, f"warm (without {', '.join(libraries)}: {template.cold})"
        return template, "warm"

    def start(self, python: str, libraries: tuple[str, ...]) -> Template:
        """One start per key, even with every worker asking at once; other keys' workers go on."""
        key = (python, libraries)
        with self.lock:
            starting = self.starting.setdefault(key, threading.Lock())
        with starting:
            if key not in self.started:
                template = Template(python, self.features, self.benchmarks, libraries, self.folder,
                                    self.end_with_driver)
                with self.lock:
                    self.started[key] = template
            return self.started[key]

    def close(self) -> None:
        for template in self.started.values():
            template.close()


def read_message(conn: socket.socket, timeout: float) -> dict[str, Any]:
    """One JSON line from ``conn`` within ``timeout`` ({} if none; {"gone": True} on EOF)."""
    data = b""
    end = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([conn], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            return {}  # nothing whole yet: only ever a short JSON line, sent in one write
        chunk = conn.recv(LINE_CAP)
        if not chunk:
            return {"gone": True}
        data += chunk
    answer = json.loads(data)
    return answer if isinstance(answer, dict) else {}
