"""A model's runner and process, forked from a warm template (numerai_predict/round/warm.py):
the runner forks the model's process before it reads the model's request (so the POST is never in
the model's memory), then runs predict.py's own main on the request's flags; the model's process
waits for its argv and is numerai_predict.sandbox's child, as predict.py's own is."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import IO, Any

from numerai_predict.round.template import LINE_CAP

REQUEST_CAP = 16 << 20  # a request holds the driver's environment: large, never endless


def runner_main(conn: socket.socket, template: int) -> int:
    """The runner of one model: predict.py's main on the request's flags. Returns its exit code."""
    try:
        os.setsid()
        die_with(template)  # the template gone (the round stopped): so is this
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        close_all_but(conn.fileno(), 1, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # not the driver's pipe to the template
        parent_end, child_end = socket.socketpair()
        runner = os.getpid()
        model = os.fork()  # before this process reads anything of the request
        if model == 0:
            parent_end.close()
            os._exit(model_main(child_end, runner))
        child_end.close()
        request, fds = receive(conn)
        conn.close()
        return run_request(request, fds, model, parent_end)
    except BaseException as exc:  # never back into the template's loop
        with contextlib.suppress(Exception):
            print(f"numerai-predict: the warm runner failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def die_with(parent: int) -> None:
    """SIGKILL when ``parent`` ends; at once if it already has (before the call could see it)."""
    from numerai_predict.isolation import PR_SET_PDEATHSIG, _prctl

    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One JSON line and the descriptors sent with its first bytes, read to its newline."""
    data, fds, _, _ = socket.recv_fds(sock, LINE_CAP, 4)
    while data and not data.endswith(b"\n"):
        if len(data) > REQUEST_CAP:
            raise ValueError(f"a message over {REQUEST_CAP >> 20} MiB")
        chunk = sock.recv(LINE_CAP)
        if not chunk:
            break
        data += chunk
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("a message that is not a JSON object")
    return message, fds


def run_request(request: dict[str, Any], fds: list[int], model: int, channel: socket.socket) -> int:
    import io

    from numerai_predict import runner, sandbox

    log_fd = fds[0]  # fds[1], the folder's lock, stays open: held until this runner ends
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.chdir(str(request["cwd"]))  # the model's folder, as predict.py's own
    os.environ.clear()
    os.environ.update(request["env"])  # the driver's, as predict.py alone gets it (the model's is scrubbed)
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
        """Its argv, environment and working directory (the model's folder, as predict.py's child
        has), and this runner's stderr as its own."""
        message = {"argv": argv, "env": env, "cwd": os.getcwd()}
        socket.send_fds(self.channel, [json.dumps(message).encode() + b"\n"], [2])
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


def model_main(channel: socket.socket, runner: int) -> int:
    """The model's process: waits for its argv, then is sandbox.child_main, as predict.py's is."""
    import io
    import tempfile

    from numerai_predict import sandbox
    from numerai_predict.isolation import PR_SET_DUMPABLE, _prctl

    try:
        die_with(runner)  # its runner gone, so is it
        _prctl(PR_SET_DUMPABLE, 1)  # as an exec'd process is: its runner's watchdog reads its /proc
        close_all_but(channel.fileno(), 2)
        message, fds = receive(channel)
        os.chdir(str(message["cwd"]))
        reseed()
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


def reseed() -> None:
    """Fresh random states, as a fresh interpreter has: every fork of a template would otherwise draw
    the same numbers from numpy's and Python's global generators."""
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def close_all_but(*keep: int) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)

