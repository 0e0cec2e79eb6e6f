"""Models that attack the runner, each in one way the isolation must stop.
Pickled by value with cloudpickle (tests/test_isolation.py, and the image
tests with the py311 environment), so they need nothing but the standard
library, pandas and numpy where they run."""

from __future__ import annotations

import glob
import os
import sys
import time

import cloudpickle
import pandas as pd

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def answer(live_features, value):
    return pd.DataFrame({"prediction": float(value)}, index=live_features.index)


def detached(work) -> str:
    """Run ``work`` in a grandchild that left the model's session; returns "PID STARTTIME", which a
    reused pid cannot fake (pid_max may be 32768: a busy machine reuses pids within seconds)."""
    read, write = os.pipe()
    if os.fork() == 0:
        os.setsid()
        pid = os.fork()
        if pid:
            os.write(write, f"{pid} {start_time(pid)}".encode())
            os._exit(0)
        try:
            work()
        finally:
            os._exit(0)
    os.close(write)
    identity = os.read(read, 64).decode()
    os.close(read)
    return identity


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def rewrites_csv(output_dir):
    """A grandchild keeps overwriting every predictions CSV in ``output_dir`` for 30 s."""
    def overwrite():
        end = time.monotonic() + 30
        while time.monotonic() < end:
            for path in glob.glob(os.path.join(output_dir, "live_predictions-*.csv")):
                try:
                    with open(path, "w") as handle:
                        handle.write("id,prediction\nnbogus,7\n")
                except OSError:
                    pass
            time.sleep(0.005)

    def predict(live_features):
        print(f"GRANDCHILD {detached(overwrite)}", file=sys.stderr, flush=True)
        return answer(live_features, 0.5)
    return predict


def sleeps_with_grandchild(live_features):
    print(f"GRANDCHILD {detached(lambda: time.sleep(60))}", file=sys.stderr, flush=True)
    time.sleep(60)


def allocates(mib_here, mib_in_child=0, fork_in_thread=False):
    """Touch ``mib_here`` MiB, and ``mib_in_child`` in a forked child (forked by a second thread that
    stays alive: the child is listed under that thread only), and hold them."""
    def hold(mib):
        blocks = []
        for _ in range(mib // 50):
            blocks.append(bytearray(50 << 20))  # zero-filled: every page touched
        time.sleep(30)
        return blocks

    def fork_child():
        if os.fork() == 0:
            hold(mib_in_child)
            os._exit(0)

    def predict(live_features):
        if mib_in_child and fork_in_thread:
            import threading

            threading.Thread(target=lambda: (fork_child(), time.sleep(60)), daemon=True).start()
        elif mib_in_child:
            fork_child()
        hold(mib_here)
        return answer(live_features, 0.5)
    return predict


def connects(port):
    """Predicts 1 if it reached 127.0.0.1:``port``, else 0; the error goes to stderr."""
    def predict(live_features):
        import socket

        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return answer(live_features, 1)
        except OSError as exc:
            print(f"CONNECT {exc!r}", file=sys.stderr, flush=True)
            return answer(live_features, 0)
    return predict


def reads_secrets(marker):
    """Predicts 1 if ``marker`` is in any /proc/<pid>/environ or cmdline it can read; prints where."""
    def predict(live_features):
        found = []
        for path in glob.glob("/proc/[0-9]*/environ") + glob.glob("/proc/[0-9]*/cmdline"):
            try:
                with open(path, "rb") as handle:
                    if marker.encode() in handle.read():
                        found.append(path)
            except OSError:
                pass
        found += [f"env {k}" for k, v in os.environ.items() if marker in v]
        found += ["argv"] if marker in " ".join(sys.argv) else []
        print(f"SECRETS FOUND {found}", file=sys.stderr, flush=True)
        return answer(live_features, bool(found))
    return predict


def writes(outside):
    """Predicts 1 if it could write ``outside``, 0 if refused; writing under TMPDIR must work."""
    def predict(live_features):
        import tempfile

        with tempfile.NamedTemporaryFile() as handle:  # the scratch directory stays writable
            handle.write(b"ok")
        try:
            with open(outside, "w") as handle:
                handle.write("escaped")
            return answer(live_features, 1)
        except OSError as exc:
            print(f"WRITE {exc!r}", file=sys.stderr, flush=True)
            return answer(live_features, 0)
    return predict


def counts_cpus(live_features):
    """Predicts the number of CPUs it may run on, divided by 1000."""
    return answer(live_features, len(os.sched_getaffinity(0)) / 1000)


def exits_quietly(live_features):
    os._exit(0)
