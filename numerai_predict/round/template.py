"""A warm template's own process (numerai_predict/round/warm.py says what and why): it imports
the stack and reads the live data once, then forks, per model, a runner (predict.py's main) that
first forks the model's process and only then reads the model's request.

    python -m numerai_predict.round.template SOCKET FEATURES BENCHMARKS [LIBRARY ...]
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import time
from typing import IO

LINE_CAP = 1 << 16


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
    """``--end-with-driver`` first among the libraries: the driver's end kills the runners (a Ray
    worker lost with its node: the task is retried elsewhere, so nothing of it may run on)."""
    end_with_driver = libraries[:1] == ["--end-with-driver"]
    libraries = libraries[1:] if end_with_driver else libraries
    from numerai_predict.isolation import PR_SET_DUMPABLE, _prctl

    _prctl(PR_SET_DUMPABLE, 0)  # nothing of another uid's tools, or a model, reads this memory
    imported = preload(features, benchmarks, libraries)
    threads = thread_names()
    if len(threads) > 1:
        say(sys.stdout, cold=f"the template runs {len(threads)} threads ({', '.join(threads)}) after importing "
            f"{', '.join(imported) or 'the stack'}", threads=len(threads))
        return 0
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    say(sys.stdout, ready=True, libraries=imported)
    try:
        Server(listener, end_with_driver).loop()
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)  # its driver may be gone without a word
    return 0


def say(stream: IO[str], **message: object) -> None:
    stream.write(json.dumps(message) + "\n")
    stream.flush()


class Server:
    """The template's loop: one thread, polling the driver's pipe, the listener, and a pipe that
    says a runner ended."""

    def __init__(self, listener: socket.socket, end_with_driver: bool = False):
        self.listener, self.end_with_driver = listener, end_with_driver
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
        template = os.getpid()
        pid = os.fork()
        if pid == 0:
            conn.settimeout(None)
            from numerai_predict.round.forked import runner_main

            os._exit(runner_main(conn, template))
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
        if self.end_with_driver:
            for pid in self.runners:
                self.kill(pid)
        while self.runners:
            self.reap()
            time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
