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
from model_zoo import answer  # pickled by value with model_zoo

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def tried(live_features, label, attempt):
    """Predicts 1 if ``attempt()`` succeeded, else 0 (its error printed after ``label``)."""
    try:
        attempt()
        return answer(live_features, 1)
    except OSError as exc:
        print(f"{label} {exc!r}", file=sys.stderr, flush=True)
        return answer(live_features, 0)


def proc_files_holding(marker) -> list[str]:
    """Every /proc/<pid>/environ and cmdline this process can read that holds ``marker``."""
    found = []
    for path in glob.glob("/proc/[0-9]*/environ") + glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as handle:
                if marker.encode() in handle.read():
                    found.append(path)
        except OSError:
            pass
    return found


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

        return tried(live_features, "CONNECT", lambda: socket.create_connection(("127.0.0.1", port), timeout=5).close())
    return predict


def reads_secrets(marker):
    """Predicts 1 if ``marker`` is in any /proc/<pid>/environ or cmdline it can read; prints where."""
    def predict(live_features):
        found = proc_files_holding(marker)
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

        def write():
            with open(outside, "w") as handle:
                handle.write("escaped")
        return tried(live_features, "WRITE", write)
    return predict


def counts_cpus(live_features):
    """Predicts the number of CPUs it may run on, divided by 1000."""
    return answer(live_features, len(os.sched_getaffinity(0)) / 1000)


def exits_quietly(live_features):
    os._exit(0)


def control_pipes() -> list[int]:
    """The write ends of pipes this process holds beyond stdout and stderr: the runner's channel."""
    import fcntl
    import stat

    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and stat.S_ISFIFO(os.fstat(fd).st_mode) and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_WRONLY:
                found.append(fd)
        except OSError:
            pass
    return found


def speaks_on_the_channel(payload: bytes, then: str = "sleep"):
    """Writes ``payload`` on every control pipe it finds, then sleeps a minute, exits 0 or answers 0.5."""
    def predict(live_features):
        for fd in control_pipes():
            os.write(fd, payload)
        print(f"CHANNEL {control_pipes()}", file=sys.stderr, flush=True)
        if then == "sleep":
            time.sleep(60)
        elif then == "exit":
            os._exit(0)
        return answer(live_features, 0.5)
    return predict


def forges_done(value, spread=True):
    """Writes predictions of ``value`` where the runner reads them (without spread: every row the same)
    and says it is done, then exits: the runner's own checks must catch what the model's skipped."""
    def predict(live_features):
        out = os.path.join(os.environ["TMPDIR"], "predictions.f64")
        forged = answer(live_features, value)
        if not spread:
            forged["prediction"] = float(value)
        with open(out, "wb") as handle:  # the runner's format: raw float64 in the live ids' order
            handle.write(forged["prediction"].to_numpy(dtype="=f8").tobytes())
        for fd in control_pipes():
            os.write(fd, b'{"event": "done", "rows": %d}\n' % len(live_features))
        os._exit(0)
    return predict


def reads_environment(names):
    """Predicts 1 if any of ``names`` is in its environment (prints which)."""
    def predict(live_features):
        found = [name for name in names if name in os.environ]
        print(f"ENVIRONMENT {found}", file=sys.stderr, flush=True)
        return answer(live_features, bool(found))
    return predict


def unix_socket(path):
    """Predicts 1 if it reached the Unix socket at ``path`` (Docker's, D-Bus's, Ray's are such), else 0;
    a socketpair, which multiprocessing and asyncio use, must keep working."""
    def predict(live_features):
        import socket

        left, right = socket.socketpair()
        left.close(), right.close()

        def connect():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(path)
        return tried(live_features, "UNIX", connect)
    return predict


def widens_cpus(live_features):
    """Asks for every CPU of the machine, then predicts how many it may run on, divided by 1000."""
    try:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    except OSError as exc:
        print(f"AFFINITY {exc!r}", file=sys.stderr, flush=True)
    return answer(live_features, len(os.sched_getaffinity(0)) / 1000)


def fills_shm(mib):
    """Writes ``mib`` MiB into /dev/shm (memory no process maps), 50 MiB at a time, then holds it."""
    def predict(live_features):
        with open("/dev/shm/numerai-predict-test-fill", "wb") as handle:
            for _ in range(mib // 50):
                handle.write(bytes(50 << 20))
                handle.flush()
                time.sleep(0.3)
        time.sleep(30)
        return answer(live_features, 0.5)
    return predict


def chmods(path):
    """Predicts 1 if it could chmod ``path`` (outside scratch: Landlock does not cover metadata), else 0."""
    def predict(live_features):
        return tried(live_features, "CHMOD", lambda: os.chmod(path, 0o000))
    return predict


def watches_for(marker, seconds):
    """For ``seconds``, looks for ``marker`` in every command line and environment it can read (a
    co-tenant's presigned POST while its predict.py starts); predicts 1 if it ever saw it."""
    def predict(live_features):
        end, found = time.monotonic() + seconds, []
        while time.monotonic() < end and not found:
            found = proc_files_holding(marker)
            time.sleep(0.01)
        print(f"WATCHED {found}", file=sys.stderr, flush=True)
        return answer(live_features, bool(found))
    return predict


def rewrites_predictions(live_features):
    """A grandchild waits for the predictions file the runner reads, then keeps overwriting it with
    out-of-range values: the runner must have killed it before it reads."""
    out = os.path.join(os.environ["TMPDIR"], "predictions.f64")
    bad = answer(live_features, 7.0)["prediction"].to_numpy(dtype="=f8").tobytes()

    def overwrite():
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if os.path.exists(out):
                try:
                    with open(out, "r+b") as handle:
                        handle.write(bad)
                except OSError:
                    pass
            time.sleep(0.001)

    print(f"GRANDCHILD {detached(overwrite)}", file=sys.stderr, flush=True)
    return answer(live_features, 0.5)


def i386_unix_socket(live_features):
    """socket(AF_UNIX) through i386's int 0x80 (numbers of another ABI): predicts 1 if it got one."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    page = libc.mmap(None, 4096, 7, 0x02 | 0x20 | 0x40, -1, 0)  # RWX, private anonymous, MAP_32BIT
    code = bytes.fromhex("5389f889f3cd805bc3")  # push rbx; mov eax,edi; mov ebx,esi; int 0x80; pop rbx; ret
    ctypes.memmove(page, code, len(code))
    raw = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint)(page)
    fd = raw(359, 1, 0, 1)  # i386 socket(AF_UNIX, 0, SOCK_STREAM): arguments in ebx, ecx, edx order
    print(f"I386 socket -> {fd}", file=sys.stderr, flush=True)
    return answer(live_features, fd >= 0)


def holds_unseen_memory(kind, mib):
    """Holds ``mib`` MiB where no process's resident memory shows it: in a memfd written but never
    mapped, or in System V segments attached, touched and detached. Predicts 1 if it holds it all."""
    def predict(live_features):
        import ctypes

        chunk = 50 << 20
        try:
            if kind == "memfd":
                fd = os.memfd_create("hog")
                for _ in range(mib * (1 << 20) // chunk):
                    os.write(fd, bytes(chunk))
                    time.sleep(0.2)
            else:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.shmat.restype = ctypes.c_void_p
                shmid = libc.shmget(0, ctypes.c_size_t(mib << 20), 0o1600)  # IPC_PRIVATE, IPC_CREAT
                if shmid < 0:
                    raise OSError(ctypes.get_errno(), "shmget")
                for offset in range(0, mib << 20, chunk):
                    address = libc.shmat(shmid, None, 0)
                    ctypes.memset(address + offset, 1, chunk)
                    libc.shmdt(ctypes.c_void_p(address))
                    time.sleep(0.2)
        except OSError as exc:
            print(f"UNSEEN {exc!r}", file=sys.stderr, flush=True)
            return answer(live_features, 0)
        time.sleep(3)
        return answer(live_features, 1)
    return predict


def nests_a_user_namespace(live_features):
    """unshare(CLONE_NEWUSER) (then it could mount a tmpfs and hold memory there): predicts 1 if allowed."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.unshare(0x10000000)
    print(f"UNSHARE {result} {ctypes.get_errno()}", file=sys.stderr, flush=True)
    return answer(live_features, result == 0)


def forges_output(kind):
    """Leaves something else than its predictions where the runner reads them, says `done`, exits:
    a FIFO (a read would block), an empty file, or a sparse file of 40 GB that takes no disk."""
    def predict(live_features):
        out = os.path.join(os.environ["TMPDIR"], "predictions.f64")
        if kind == "fifo":
            os.mkfifo(out)
        elif kind == "empty":
            open(out, "wb").close()
        else:
            with open(out, "wb") as handle:
                handle.truncate(40 << 30)
        for fd in control_pipes():
            os.write(fd, b'{"event": "done", "rows": %d}\n' % len(live_features))
        os._exit(0)
    return predict


def closes_the_channel_and_sleeps(live_features):
    for fd in control_pipes():
        os.close(fd)
    time.sleep(60)


def where_am_i(live_features):
    """Prints what the model sees of its processes and namespace."""
    shm = os.statvfs("/dev/shm")
    print(f"WHERE pid={os.getpid()} leader={os.getsid(0) == os.getpid()} run={sorted(os.listdir('/run'))} "
          f"shm={shm.f_blocks * shm.f_frsize}", file=sys.stderr, flush=True)
    return answer(live_features, 0.5)


def scans_memory(markers):
    """Predicts 1 if any of ``markers`` is anywhere in its own memory (what a warm template's fork
    inherited: an earlier model's POST, this model's own), else 0; prints what it found."""
    def predict(live_features):
        import re

        found = set()
        with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
            for line in maps:
                span, perms = line.split()[:2]
                if not perms.startswith("r") or "[vvar" in line or "[vsyscall" in line:
                    continue
                start, end = (int(x, 16) for x in span.split("-"))
                for offset in range(start, end, 8 << 20):  # 8 MiB at a time (and 64 bytes of overlap)
                    try:
                        mem.seek(max(start, offset - 64))
                        data = mem.read(min(end, offset + (8 << 20)) - max(start, offset - 64))
                    except (OSError, OverflowError, ValueError):
                        break
                    found |= {m for m in markers if re.search(m.encode(), data)}
        # the markers themselves are in this function's constants: a hit must be beside a field's name
        print(f"MEMORY FOUND {sorted(found)}", file=sys.stderr, flush=True)
        return answer(live_features, bool(found))
    return predict


def alters_inherited_state(live_features):
    """Alters what a warm template's fork inherits, then answers validly: pandas patched, a module
    replaced in sys.modules, the live data overwritten in place. The next model must see none of it."""
    import numpy as np
    import pandas as pd

    good = answer(live_features, 0.5)
    pd.DataFrame.to_numpy = lambda self, *a, **k: np.zeros(len(self))
    pd.read_parquet = lambda *a, **k: None
    sys.modules["numpy.random"] = None
    sys.modules["json"] = None
    live_features.iloc[:, :] = 0
    return good


def attacks_its_template(pattern):
    """Predicts 1 if any attack on the processes above it succeeded, else 0 (each error printed): a
    connection to the warm templates' sockets (``pattern``), SIGKILL to every process it may signal,
    ptrace of its parent and of its namespace's first process."""
    def predict(live_features):
        import ctypes
        import signal
        import socket

        def connect(path):
            def attempt():
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.connect(path)
                    client.sendall(b'{"run": "x"}\n')
            return attempt

        libc = ctypes.CDLL(None, use_errno=True)

        def ptrace(pid):
            def attempt():
                if libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
                    raise OSError(ctypes.get_errno(), f"ptrace {pid}: {os.strerror(ctypes.get_errno())}")
            return attempt

        results = [tried(live_features, "UNIX", connect(path)).iloc[0, 0] for path in glob.glob(pattern)]
        with open("/proc/1/cmdline", "rb") as handle:  # its namespace's first process: a Python mirror
            own_namespace = os.getppid() == 1 and b"python" in handle.read()
        if own_namespace:  # only there: outside a PID namespace of its own, as root, it kills the machine
            try:
                os.kill(-1, signal.SIGKILL)  # every process it may signal, but itself
            except OSError as exc:
                print(f"KILL {exc!r}", file=sys.stderr, flush=True)
        else:
            results.append(1)  # not in a PID namespace: the confinement failed
        results += [tried(live_features, "PTRACE", ptrace(pid)).iloc[0, 0] for pid in {os.getppid(), 1}]
        print(f"ATTACKS {len(results)} tried, {int(sum(results))} succeeded", file=sys.stderr, flush=True)
        return answer(live_features, bool(sum(results)) or not results)
    return predict


def sleeps_then_answers(seconds):
    """Sleeps ``seconds``, then answers 0.5: a model still running when something happens to its host."""
    def predict(live_features):
        time.sleep(seconds)
        return answer(live_features, 0.5)
    return predict
