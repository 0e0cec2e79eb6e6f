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
import sys
import threading
import time
from typing import IO, Any

log = logging.getLogger("numerai_predict.round")

#: Libraries a template imports when a pickle needs them (the doctor's modules, top level). Only
#: these: importing whatever a pickle names would run installed code chosen by the pickle.
WARM_LIBRARIES = ("sklearn", "lightgbm", "xgboost", "catboost", "scipy", "torch", "tensorflow", "keras",
                  "joblib", "cloudpickle")
#: Thread pools held at one thread so the template stays one thread (and a model's BLAS as cold).
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "JE_ARROW_MALLOC_CONF": "background_thread:false", "NUMEXPR_NUM_THREADS": "1"}
START_SECONDS = 180.0  # a template's imports and data, on a loaded machine
LINE_CAP = 1 << 16


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

    def __init__(self, python: str, features: str, benchmarks: str, libraries: tuple[str, ...], folder: str):
        from numerai_predict.sandbox import PROJECT_ROOT, model_environment

        self.path = os.path.join(folder, f"{secrets.token_hex(4)}.sock")
        env = model_environment(os.environ) | ONE_THREAD
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [PROJECT_ROOT, env.get("PYTHONPATH")]))
        self.log_path = self.path[:-5] + ".log"
        with open(self.log_path, "wb") as output:
            self.proc = subprocess.Popen([python, "-m", "numerai_predict.round.warm", self.path, features, benchmarks,
                                          *libraries], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=output,
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
            request = {"argv": argv, "post_data": post_data, "cpu": cpu, "cwd": cwd}
            socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], fds)
            return self.wait(conn, token, limit, cancelled)

    def wait(self, conn: socket.socket, token: str, limit: float,
             cancelled: threading.Event | None) -> tuple[int, float]:
        """The runner's exit, past ``limit`` or when cancelled asked to stop (SIGTERM: it ends the
        model's tree), a grace later killed with its session; the template signals only its own
        unreaped child, so no other process can be hit."""
        from numerai_predict.round.worker import STOP_GRACE_SECONDS

        deadline, asked = time.monotonic() + limit, None
        while True:
            answer = read_message(conn, 0.1)
            if "exit" in answer:
                return int(answer["exit"]), float(answer.get("cpu") or 0.0)
            if answer.get("gone"):
                return -signal.SIGKILL, 0.0
            if time.monotonic() > deadline or (cancelled is not None and cancelled.is_set()):
                if asked is None:
                    asked = time.monotonic()
                    self.signal(token, "TERM")
                elif time.monotonic() > asked + STOP_GRACE_SECONDS:
                    self.signal(token, "KILL")
                    asked = time.monotonic() + 3600  # once

    def signal(self, token: str, how: str) -> None:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(self.path)
            conn.sendall(json.dumps({"stop": token, "signal": how}).encode() + b"\n")

    def close(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # the template kills its runners and ends
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.remove(self.path)


class Templates:
    """The driver's templates, one per (environment's Python, libraries), started on first use."""

    def __init__(self, features: str, benchmarks: str, folder: str):
        self.features, self.benchmarks, self.folder = features, benchmarks, folder
        os.makedirs(folder, mode=0o700, exist_ok=True)
        self.started: dict[tuple[str, tuple[str, ...]], Template] = {}
        self.lock = threading.Lock()

    def get(self, python: str, model: str) -> Template:
        key = (python, libraries_of(model))
        with self.lock:  # one start per key, even with every worker asking at once
            if key not in self.started:
                self.started[key] = Template(python, self.features, self.benchmarks, key[1], self.folder)
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


# ---- the template ----------------------------------------------------------


def thread_names() -> list[str]:
    names = []
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/comm") as handle:
            names.append(handle.read().strip())
    return names


def preload(features: str, benchmarks: str, libraries: list[str]) -> list[str]:
    """Import the stack and the libraries, read the live data into the sandbox's cache, without
    starting a thread (pyarrow's datasets API starts its pools even with use_threads=False)."""
    import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

    from numerai_predict import cli, doctor, pickles, pipeline, runner, sandbox, transfer, validate  # noqa: F401

    for path in (features, benchmarks):
        table = pq.ParquetFile(path, pre_buffer=False).read(use_threads=False, use_pandas_metadata=True)
        sandbox.PRELOADED[os.path.realpath(path)] = table.to_pandas(use_threads=False)
    imported = []
    for name in libraries:
        try:
            __import__(name)
            imported.append(name)
        except Exception as exc:  # the model's process imports it itself, as cold
            print(f"template: {name} not imported: {type(exc).__name__}: {exc}", file=sys.stderr)
    return imported


def serve(path: str, features: str, benchmarks: str, libraries: list[str]) -> int:
    from numerai_predict.isolation import PR_SET_DUMPABLE, _prctl

    _prctl(PR_SET_DUMPABLE, 0)  # nothing of another uid's tools, or a model, reads this memory
    imported = preload(features, benchmarks, libraries)
    threads = thread_names()
    if len(threads) > 1:
        say(sys.stdout, cold=f"the template runs {len(threads)} threads ({', '.join(threads)}) after importing "
            f"{', '.join(imported) or 'the stack'}")
        return 0
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    say(sys.stdout, ready=True, libraries=imported)
    Server(listener).loop()
    return 0


def say(stream: IO[str], **message: object) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


class Server:
    """The template's loop: one thread, polling the driver's pipe, the listener, and a pipe that
    says a runner ended."""

    def __init__(self, listener: socket.socket):
        self.listener = listener
        self.runners: dict[int, tuple[socket.socket, str]] = {}  # pid -> (its driver connection, token)
        self.tokens: dict[str, int] = {}
        self.wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def loop(self) -> None:
        poller = select.poll()
        for fd in (sys.stdin.fileno(), self.listener.fileno(), self.wakeup_r):
            poller.register(fd, select.POLLIN)
        while True:
            for fd, _ in poller.poll(1000):
                if fd == sys.stdin.fileno():  # the driver ended: its runners finish, as predict.py would
                    self.finish()
                    return
                if fd == self.listener.fileno():
                    self.accept()
                elif fd == self.wakeup_r:
                    os.read(self.wakeup_r, 4096)
            self.reap()

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(5.0)  # the driver's first line is already sent
        try:
            line = conn.recv(LINE_CAP)  # the driver waits for the answer: nothing follows yet
            message = json.loads(line)
        except (OSError, ValueError):
            conn.close()
            return
        if "stop" in message:
            pid = self.tokens.get(str(message["stop"]))
            if pid is not None:  # not yet reaped: the pid is still this runner's
                (self.kill if message.get("signal") == "KILL" else self.terminate)(pid)
            conn.close()
            return
        threads = thread_names()
        if len(threads) > 1:
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps({"cold": f"the template runs {len(threads)} threads"}).encode() + b"\n")
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            conn.settimeout(None)
            os._exit(runner_main(conn))
        token = str(message.get("run"))
        self.runners[pid] = (conn, token)
        self.tokens[token] = pid
        with contextlib.suppress(OSError):
            conn.sendall(b'{"started": true}\n')

    def terminate(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    def kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # its session (setsid): the runner and its model's mirrors

    def reap(self) -> None:
        while self.runners:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            conn, token = self.runners.pop(pid, (None, ""))
            self.tokens.pop(token, None)
            if conn is not None:
                message = {"exit": os.waitstatus_to_exitcode(status), "cpu": usage.ru_utime + usage.ru_stime}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(message).encode() + b"\n")
                conn.close()

    def finish(self) -> None:
        """No new runner; the running ones end by themselves (each bounded by its --timeout), their
        models' folders locked meanwhile, so a resumed round waits for them instead of rerunning."""
        self.listener.close()
        while self.runners:
            self.reap()
            time.sleep(0.05)


# ---- a model's runner and process, forked from the template ---------------------


def runner_main(conn: socket.socket) -> int:
    """The runner of one model: predict.py's main on the request's flags. Returns its exit code."""
    from numerai_predict.isolation import PR_SET_PDEATHSIG, _prctl

    try:
        os.setsid()
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the template gone (the round stopped): so is this
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        close_all_but(conn.fileno(), 1, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # not the driver's pipe to the template
        parent_end, child_end = socket.socketpair()
        model = os.fork()  # before this process reads anything of the request
        if model == 0:
            parent_end.close()
            os._exit(model_main(child_end))
        child_end.close()
        line, fds, _, _ = socket.recv_fds(conn, LINE_CAP, 4)
        request = json.loads(line)
        conn.close()
        return run_request(request, fds, model, parent_end)
    except BaseException as exc:  # never back into the template's loop
        with contextlib.suppress(Exception):
            print(f"numerai-predict: the warm runner failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def run_request(request: dict[str, Any], fds: list[int], model: int, channel: socket.socket) -> int:
    import io

    from numerai_predict import runner, sandbox

    log_fd = fds[0]  # fds[1], the folder's lock, stays open: held until this runner ends
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.chdir(str(request["cwd"]))  # the model's folder, as predict.py's own
    cpu = request.get("cpu")
    if isinstance(cpu, int):
        for pid in (0, model):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, {cpu})
    sandbox.prepared_child = ForkedChild(model, channel)
    sys.stdin = io.StringIO(str(request.get("post_data") or "") + "\n")
    code = runner.main([str(arg) for arg in request["argv"]])
    sys.stdout.flush()
    sys.stderr.flush()
    return code


class ForkedChild:
    """The prepared model process, as subprocess.Popen's surface that sandbox.ModelProcess uses."""

    def __init__(self, pid: int, channel: socket.socket):
        self.pid, self.channel = pid, channel
        self.returncode: int | None = None
        self.stdin: IO[bytes] | None = os.fdopen(os.dup(channel.fileno()), "wb")
        self.stdout: IO[bytes] | None = os.fdopen(os.dup(channel.fileno()), "rb")

    def start(self, argv: list[str], env: dict[str, str]) -> ForkedChild:
        """Its argv and environment (sandbox.child_main's), and this runner's stderr as its own."""
        socket.send_fds(self.channel, [json.dumps({"argv": argv, "env": env}).encode() + b"\n"], [2])
        self.channel.close()
        return self

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(["model"], timeout or 0.0)
            time.sleep(0.005)
        assert self.returncode is not None
        return self.returncode


def model_main(channel: socket.socket) -> int:
    """The model's process: waits for its argv, then is sandbox.child_main, as predict.py's is."""
    import io
    import tempfile

    from numerai_predict import sandbox
    from numerai_predict.isolation import PR_SET_DUMPABLE, PR_SET_PDEATHSIG, _prctl

    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # its runner gone, so is it
        _prctl(PR_SET_DUMPABLE, 1)  # as an exec'd process is: its runner's watchdog reads its /proc
        close_all_but(channel.fileno(), 2)
        line, fds, _, _ = socket.recv_fds(channel, LINE_CAP, 1)
        message = json.loads(line)
        os.dup2(fds[0], 2)
        os.close(fds[0])
        os.dup2(channel.fileno(), 0)
        os.dup2(channel.fileno(), 1)
        channel.close()
        os.environ.clear()
        os.environ.update(message["env"])  # the scrubbed environment ModelProcess computed
        tempfile.tempdir = None  # the scratch directory (TMPDIR), not the template's
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        return sandbox.child_main(message["argv"])
    except BaseException as exc:
        with contextlib.suppress(Exception):
            print(f"numerai-predict: the warm model process failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def close_all_but(*keep: int) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
