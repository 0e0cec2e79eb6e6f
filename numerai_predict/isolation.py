"""Confining the model's process, and watching and ending its whole process tree.

Two sides. The child calls ``confine`` first thing, while it is still one
thread (namespaces and Landlock require it), before any model code exists:
one CPU, its own user and network namespace (no network, loopback of its own),
Landlock allowing writes only in a scratch directory, no capabilities. Each
step is tried and what the kernel refused is reported, never fatal: inside
Docker's default seccomp profile namespaces are refused, and the container's
``--network none`` is the isolation there.

The runner calls ``protect_runner`` (non-dumpable, so its /proc/<pid>/environ
is out of the model's reach; the presigned POST scrubbed from its command line)
and watches the model's processes with a ``Watchdog``: the runner is their
child subreaper, so a grandchild that calls setsid() and double-forks still
lands under the runner, is counted against --max-memory and is killed with the
rest. Memory is the tree's resident anonymous and shared memory polled from
/proc: RLIMIT_AS and RLIMIT_DATA count reserved address space (thread stacks,
malloc arenas), 2-5x the resident memory of the TensorFlow and PyTorch test
models on 2 CPUs and growing with the CPU count; cgroup v2 is not writable
here nor inside the image.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterable
from typing import NamedTuple, NoReturn

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWIPC = 0x08000000
# mount(2) and mount_setattr(2) (linux/mount.h); mount_setattr is 442 on x86_64 and arm64.
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 4096, 16384, 1 << 18
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 1
# The device files a model may write (Landlock); every other device stays read-only or out of reach.
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
POLL_SECONDS = 0.1
WAITER_SAMPLES = 10  # a waiting ancestor's own pages are read once a second
KILL_ROUNDS = 500  # SIGKILL rounds, 10 ms apart, before a tree counts as one that will not die

# Landlock (include/uapi/linux/landlock.h); the syscall numbers are shared by x86_64 and arm64.
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}.get(os.uname().machine)
ACCESS_FS_WRITE_FILE = 1 << 1
ACCESS_FS_MAKE_ALL = sum(1 << bit for bit in range(4, 13))  # remove dir/file, make char/dir/reg/sock/fifo/block/sym
ACCESS_FS_REFER = 1 << 13  # ABI 2
ACCESS_FS_TRUNCATE = 1 << 14  # ABI 3
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6
RULE_PATH_BENEATH = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _prctl(option: int, value: int = 0) -> int:
    return _check(_libc.prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
                              ctypes.c_ulong(0)), "prctl")


# ---- the child: confine before loading the model --------------------------


def confine(scratch: str, cpus: int, isolate: bool, shm_bytes: int = 0) -> dict[str, str]:
    """Confine this (still single-threaded) process; returns what is in force, by aspect. With
    namespaces, this process forks: it stays behind as the parent (mirroring the model's exit) and
    the caller goes on as the first process of a PID namespace of its own."""
    facts = {"cpus": limit_cpus(cpus)}
    if not isolate:
        return facts | {"network": "not isolated (--no-isolation)", "writes": "not confined (--no-isolation)"}
    facts["network"] = own_network()
    if facts["network"].startswith("none (own network namespace, loopback only)"):
        facts["filesystem"] = own_filesystem(scratch, shm_bytes)
        facts["processes"] = own_processes()
    else:  # Docker's seccomp profile: the container's read-only root and PID namespace stand in
        facts["filesystem"] = "no mount namespace of its own (namespaces refused)"
        facts["processes"] = "no PID namespace of its own (namespaces refused)"
    facts["writes"] = writes_only_in(scratch)
    drop_capabilities()
    facts["system_calls"] = refuse_system_calls(cpus > 0)
    return facts


def limit_cpus(cpus: int) -> str:
    allowed = sorted(os.sched_getaffinity(0))
    if cpus <= 0 or cpus >= len(allowed):
        return f"{len(allowed)} (all this machine allows)"
    os.sched_setaffinity(0, allowed[:cpus])  # threads started later inherit it
    return f"{cpus} of {len(allowed)} (CPU affinity)"


def own_network() -> str:
    """A new user + network namespace: no interface but a loopback of its own."""
    uid, gid = os.getuid(), os.getgid()
    try:
        _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC), "unshare")
    except OSError as exc:
        return (f"not isolated by numerai-predict (namespaces refused: {exc.strerror}); "
                "the container's --network none is the isolation")
    try:
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", f"{uid} {uid} 1")  # the model keeps its own uid and gid
        write_file("/proc/self/gid_map", f"{gid} {gid} 1")
        loopback_up()  # a model may talk to itself on 127.0.0.1, as in Numerai's container
    except OSError as exc:
        return f"none (own network namespace; its setup failed: {exc})"
    return "none (own network namespace, loopback only)"


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(c_string(source), target.encode(), c_string(fstype), ctypes.c_ulong(flags), c_string(data)),
           f"mount {target}")


def c_string(value: str | None) -> bytes | None:
    return None if value is None else value.encode()


def set_read_only(path: str, read_only: bool) -> None:
    """mount_setattr(2) on ``path`` and every mount under it."""
    attr = struct.pack("QQQQ", MOUNT_ATTR_RDONLY if read_only else 0, 0 if read_only else MOUNT_ATTR_RDONLY, 0, 0)
    _check(_libc.syscall(SYS_MOUNT_SETATTR, ctypes.c_int(AT_FDCWD), path.encode(), ctypes.c_uint(AT_RECURSIVE),
                         attr, ctypes.c_size_t(len(attr))), f"mount_setattr {path}")


def own_filesystem(scratch: str, shm_bytes: int) -> str:
    """In the model's own mount namespace: everything read-only but the scratch directory (so chmod,
    utime and chown fail outside it too, which Landlock does not cover); a private /dev/shm of at most
    ``shm_bytes`` (gone with the model, and counted against --max-memory by the Watchdog); an empty
    /run (the host's sockets and pid files out of sight)."""
    try:
        mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host
        mount(scratch, scratch, None, MS_BIND | MS_REC)
        size = f",size={shm_bytes}" if shm_bytes else ""
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777{size}")
        for run in ("/run", "/var/run"):
            if os.path.isdir(run) and not os.path.islink(run):
                mount("tmpfs", run, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=1m")
        limit_shared_memory(shm_bytes)
        set_read_only("/", True)
        for writable in (scratch, "/dev/shm"):
            set_read_only(writable, False)
    except OSError as exc:
        return f"not confined by a mount namespace ({exc.strerror or exc})"
    return "read-only but the scratch directory; private /dev/shm and /run"


def limit_shared_memory(shm_bytes: int) -> None:
    """System V shared memory of the model's own IPC namespace (gone with it): at most ``shm_bytes``
    in all, as its /dev/shm (a detached segment is in no process's resident memory)."""
    if not shm_bytes:
        return
    pages = max(1, shm_bytes // os.sysconf("SC_PAGE_SIZE"))
    for name, value in (("shmmax", shm_bytes), ("shmall", pages)):
        try:
            write_file(f"/proc/sys/kernel/{name}", str(value))
        except OSError:
            pass  # a non-root runner's user namespace may not own these: the namespace still goes with it


def own_processes() -> str:
    """Fork into the PID namespace made by own_network. Its first process (the namespace's init, which
    ignores signals it sends itself, so never the model) mounts a /proc of its own and forks the
    process that goes on: other processes, their command lines and environments are out of its sight,
    it has no controlling terminal, and all it leaves dies with it. Both processes left behind only
    wait and end as it ended; they never run model code."""
    above, held = os.pipe()  # held open by the process above as long as it lives
    child = os.fork()
    if child:
        os.close(above)
        mirror(child, from_init=True)
    # The namespace's init dies with the process above it (its runner, or a warm template, killed),
    # and the namespace with it; checked after the call, in case that process died before it (its
    # pid is not visible from here: the pipe's end says).
    os.close(held)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if select.select([above], [], [], 0)[0]:
        os._exit(1)
    os.close(above)
    try:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        proc = "own PID namespace and /proc"
    except OSError as exc:
        proc = f"own PID namespace, but the host's /proc ({exc.strerror})"
    child = os.fork()
    if child:
        mirror(child, as_init=True)
    os.setsid()  # no controlling terminal: no TIOCSTI into the caller's shell
    return proc + "; no controlling terminal"


def mirror(child: int, as_init: bool = False, from_init: bool = False) -> NoReturn:
    """Wait for ``child`` (reaping any orphan meanwhile) and end as it ended: its exit status, or its
    signal. A namespace's init cannot kill itself with a signal, so it exits 128 + the signal's number
    (``as_init``) and its parent turns that back into the signal (``from_init``)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the runner ends the tree; this one only reports
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(1)
        if pid == child and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
            break
    code = os.waitstatus_to_exitcode(status)  # -N: killed by signal N
    if as_init and code < 0:
        os._exit(128 - code)
    if from_init and 128 < code < 128 + signal.NSIG:
        code = 128 - code
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code if code >= 0 else 1)


def write_file(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def loopback_up() -> None:
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sh22x", b"lo", flags | iff_up))


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when absent or disabled."""
    version = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(version), 0)


def writes_only_in(scratch: str) -> str:
    """Landlock: writes only under ``scratch`` (and /dev/shm, device files); reads stay allowed."""
    abi = landlock_abi()
    if abi == 0:
        return "not confined (Landlock unavailable in this kernel)"
    handled = ACCESS_FS_WRITE_FILE | ACCESS_FS_MAKE_ALL | (ACCESS_FS_REFER if abi >= 2 else 0) | (
        ACCESS_FS_TRUNCATE if abi >= 3 else 0)
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    # struct landlock_ruleset_attr: handled_access_fs, handled_access_net, scoped (ABI 6)
    attr = struct.pack("QQQ", handled, 0, scoped) if scoped else struct.pack("Q", handled)
    ruleset = _check(_libc.syscall(SYS_LANDLOCK_CREATE_RULESET, attr, ctypes.c_size_t(len(attr)),
                                   ctypes.c_uint32(0)), "landlock_create_ruleset")
    try:
        allow(ruleset, scratch, handled)
        allow(ruleset, "/dev/shm", handled)  # POSIX semaphores and shared memory (multiprocessing)
        for device in DEVICES:  # never a disk, the kernel log or a terminal
            allow(ruleset, device, ACCESS_FS_WRITE_FILE | (ACCESS_FS_TRUNCATE if abi >= 3 else 0))
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        _check(_libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    scope = ", no signals or abstract sockets outside" if scoped else ""
    return f"only in the scratch directory (Landlock ABI {abi}{scope})"


def allow(ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # e.g. no /dev/shm: nothing to allow
    try:
        rule = struct.pack("=Qi", access, fd)  # struct landlock_path_beneath_attr is packed
        _check(_libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, ctypes.c_int(RULE_PATH_BENEATH), rule,
                             ctypes.c_uint32(0)), f"landlock_add_rule {path}")
    finally:
        os.close(fd)


# seccomp (linux/seccomp.h, linux/filter.h): a classic BPF program over struct seccomp_data.
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
BPF_LD_W_ABS, BPF_JEQ_K, BPF_JGE_K, BPF_JSET_K, BPF_RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
AF_UNIX, EPERM, EACCES, ENOSYS = 1, 1, 13, 38
NAMESPACE_FLAGS = 0x7E020000  # CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET


class Syscalls(NamedTuple):
    arch: int  # AUDIT_ARCH_*
    socket: int
    sched_setaffinity: int
    unshare: int
    setns: int
    clone: int
    clone3: int


# x86_64's x32 numbers (bit 30) and every other ABI (i386's int 0x80) are refused whole.
SYSCALLS = {"x86_64": Syscalls(0xC000003E, 41, 203, 272, 308, 56, 435),
            "aarch64": Syscalls(0xC00000B7, 198, 122, 97, 268, 220, 435)}.get(os.uname().machine)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_program(calls: Syscalls, affinity: bool) -> bytes:
    """The filter. socket(AF_UNIX, ...) fails with EACCES: a pathname socket outside scratch (Docker's,
    D-Bus's) is reached through one; socketpair() stays. New namespaces (unshare, setns, clone with
    namespace flags; clone3, whose flags a filter cannot read, says ENOSYS and the C library falls back
    to clone) fail with EPERM: in a user namespace of its own, the model could mount a tmpfs and hold
    memory no limit sees. When ``affinity``, sched_setaffinity fails (the model cannot widen --cpus).
    Every system call of another ABI fails with EPERM."""
    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("=HBBI", code, jt, jf, k)

    def ret(errno: int | None) -> bytes:
        return op(BPF_RET_K, SECCOMP_RET_ALLOW if errno is None else SECCOMP_RET_ERRNO | errno)

    def on_call(nr: int, errno: int) -> bytes:  # the syscall number is in A
        return op(BPF_JEQ_K, nr, 0, 1) + ret(errno)

    def on_first_argument(nr: int, test: int, k: int, errno: int) -> bytes:  # reloads A after itself
        return (op(BPF_JEQ_K, nr, 0, 4) + op(BPF_LD_W_ABS, 16) + op(test, k, 0, 1) + ret(errno)
                + op(BPF_LD_W_ABS, 0))

    return b"".join([
        op(BPF_LD_W_ABS, 4), op(BPF_JEQ_K, calls.arch, 1, 0), ret(EPERM),
        op(BPF_LD_W_ABS, 0), op(BPF_JGE_K, 0x40000000, 0, 1), ret(EPERM),
        on_call(calls.sched_setaffinity, EPERM) if affinity else b"",
        on_call(calls.unshare, EPERM), on_call(calls.setns, EPERM), on_call(calls.clone3, ENOSYS),
        on_first_argument(calls.clone, BPF_JSET_K, NAMESPACE_FLAGS, EPERM),
        on_first_argument(calls.socket, BPF_JEQ_K, AF_UNIX, EACCES),
        ret(None),
    ])


def refuse_system_calls(fixed_cpus: bool) -> str:
    """Install the seccomp filter (after everything that needs those calls); says what applied."""
    if SYSCALLS is None:
        return f"not filtered (no seccomp table for {os.uname().machine})"
    program = seccomp_program(SYSCALLS, affinity=fixed_cpus)
    buffer = ctypes.create_string_buffer(program)
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    try:
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        _check(_libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(fprog),
                           ctypes.c_ulong(0), ctypes.c_ulong(0)), "seccomp")
    except OSError as exc:
        return f"not filtered (seccomp refused: {exc.strerror})"
    return "no Unix sockets (socket(AF_UNIX) refused); no new namespaces" + (
        "; CPU affinity fixed" if fixed_cpus else "")


def drop_capabilities() -> None:
    """No capabilities left (a root model could otherwise read the runner's /proc); best effort."""
    if SYS_CAPSET is None:
        return
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    _libc.syscall(SYS_CAPSET, header, bytes(24))


# ---- the runner: protect itself, watch and end the model's tree ------------


def protect_runner() -> str:
    """Keep the runner's secrets from the model's process; says what applied."""
    _prctl(PR_SET_DUMPABLE, 0)  # /proc/<runner>/environ, mem, fd: no longer readable by its uid
    hidden = scrub_command_line()
    return "runner non-dumpable" + (f", {hidden} secret argument(s) scrubbed from its command line" if hidden else "")


def secret_spans(args: list[bytes]) -> Iterable[tuple[int, int]]:
    """Byte ranges in the NUL-joined ``args`` holding secrets: --post_data values, URL query strings."""
    offset, after_post_data = 0, False
    for arg in args:
        start = None
        if after_post_data:
            start = offset
        elif arg.startswith(b"--post_data="):
            start = offset + len(b"--post_data=")
        elif arg.lower().startswith((b"http://", b"https://", b"--model=http", b"--post_url=http")) and b"?" in arg:
            start = offset + arg.index(b"?") + 1
        if start is not None and start < offset + len(arg):
            yield start, offset + len(arg)
        after_post_data = arg == b"--post_data"
        offset += len(arg) + 1


def scrub_command_line() -> int:
    """Overwrite secrets in this process's original argv (what /proc/<pid>/cmdline shows)."""
    try:
        with open("/proc/self/cmdline", "rb") as handle:
            shown = handle.read()
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        arg_start = int(fields[45])  # field 48 of proc(5), counted after "pid (comm)"
    except (OSError, IndexError, ValueError):
        return 0
    if ctypes.string_at(arg_start, len(shown)) != shown:
        return 0  # not the memory /proc shows: leave it
    spans = list(secret_spans(shown.rstrip(b"\0").split(b"\0")))
    for start, end in spans:
        ctypes.memset(arg_start + start, ord("*"), end - start)
    return len(spans)


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) for every process this one can see."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue  # it ended meanwhile
            table[int(name)] = (int(fields[1]), fields[0].decode())
    return table


def has_children_files() -> bool:
    """Whether /proc/PID/task/TID/children exists (CONFIG_PROC_CHILDREN, in every common kernel)."""
    return os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def children_of(pid: int) -> list[int]:
    """The children of every thread of ``pid`` (an orphan may be re-parented to any of them)."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                found += map(int, handle.read().split())
        except OSError:
            continue  # the thread ended meanwhile
    return found


def stat_of(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of ``pid``, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[0].decode()


def resident_bytes(pid: int) -> int:
    """Anonymous + shared-memory resident bytes: what a memory cgroup cannot reclaim."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(("RssAnon:", "RssShmem:")):
                    total += int(line.split()[1]) * 1024
    except OSError:
        pass
    return total


def private_bytes(pid: int) -> int:
    """Anonymous pages ``pid`` alone maps (written after its fork), or all it maps if unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Private_Dirty:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resident_bytes(pid)


def waiting_ancestors(root: int) -> set[int]:
    """The model's process and its PID namespace's init when the model runs in a namespace of its
    own (isolation.own_processes): both were forked before the model loaded and only wait. Forked
    from a warm template, each maps all its pages; they are counted by what they alone hold, not
    three times over. Empty when ``root`` runs the model itself (no PID namespace)."""
    children = children_of(root)
    if len(children) != 1:
        return set()
    try:
        with open(f"/proc/{children[0]}/status") as handle:
            nspid = next((line.split()[1:] for line in handle if line.startswith("NSpid:")), [])
    except OSError:
        return set()
    return {root, children[0]} if len(nspid) > 1 and nspid[-1] == "1" else set()


def memfd_bytes(pids: Iterable[int]) -> int:
    """What the memory files (memfd_create) the processes hold contain: written but unmapped, their
    pages are in no process's resident memory."""
    sizes: dict[tuple[int, int], int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            path = f"/proc/{pid}/fd/{fd}"
            try:
                if os.readlink(path).startswith("/memfd:"):
                    info = os.stat(path)
                    sizes[(info.st_dev, info.st_ino)] = info.st_blocks * 512
            except OSError:
                continue
    return sum(sizes.values())


def private_shm_bytes(pid: int) -> int:
    """What the files in the model's own /dev/shm hold (a tmpfs: memory, though no process maps it);
    0 when the model shares the runner's mount namespace (the host's /dev/shm is not its alone)."""
    try:
        if os.stat(f"/proc/{pid}/ns/mnt").st_ino == os.stat("/proc/self/ns/mnt").st_ino:
            return 0
        shm = os.statvfs(f"/proc/{pid}/root/dev/shm")
    except OSError:
        return 0
    return (shm.f_blocks - shm.f_bfree) * shm.f_frsize


class Watchdog:
    """The model's process tree: its peak memory, --max-memory, and its end."""

    def __init__(self, root: int, max_memory: int, confined: bool = True):
        self.runner, self.root, self.max_memory = os.getpid(), root, max_memory
        self.peak = 0
        self.exceeded = False
        self.waiters: dict[int, int] = {}  # pid -> its own bytes, last read
        self.samples = 0
        # Confined, the model cannot make namespaces (seccomp): a PID namespace's first process below the
        # root is the confinement's, and the two only wait. Without isolation the model could fake one.
        self.namespaced = confined
        self.was_subreaper = subreaper(True)
        # Walking the tree's children files costs what the tree is; scanning all of /proc, what the
        # machine runs (2.4 ms a poll among 75 processes here, ten times a second).
        self.walk = has_children_files()
        runners_children = children_of(self.runner) if self.walk else [
            pid for pid, (ppid, _) in process_table().items() if ppid == self.runner]
        self.others = set(runners_children) - {root}
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.watch, name="model-watchdog", daemon=True)
        self.thread.start()

    def table(self) -> dict[int, tuple[int, str]]:
        """pid -> (parent pid, state) of the model's processes: its own descendants and the orphans
        re-parented to the runner."""
        if not self.walk:
            return self.tree_of(process_table())
        found: dict[int, tuple[int, str]] = {}
        todo = [self.root] + [p for p in children_of(self.runner) if p not in self.others and p != self.root]
        while todo:
            pid = todo.pop()
            stat = None if pid in found else stat_of(pid)
            if stat is not None:
                found[pid] = stat
                todo.extend(children_of(pid))
        return found

    def tree_of(self, table: dict[int, tuple[int, str]]) -> dict[int, tuple[int, str]]:
        """The model's part of a whole process table (kernels without children files)."""
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        todo = [self.root] + [p for p in children.get(self.runner, []) if p not in self.others and p != self.root]
        found = {}
        while todo:
            pid = todo.pop()
            if pid in table and pid not in found:
                found[pid] = table[pid]
                todo.extend(children.get(pid, []))
        return found

    def watch(self) -> None:
        while not self.stopped.wait(POLL_SECONDS):
            if not self.sample():
                return

    def sample(self) -> bool:
        """Measure the tree once (also when the model speaks: a quick model ends between polls);
        False once it was over --max-memory and killed."""
        pids = list(self.table())
        self.samples += 1
        waiting = waiting_ancestors(self.root) if self.namespaced else set()
        used = sum(self.private(pid) if pid in waiting else resident_bytes(pid) for pid in pids) \
            + private_shm_bytes(self.root) + memfd_bytes(pids)
        self.peak = max(self.peak, used)
        if self.max_memory and used > self.max_memory:
            self.exceeded = True
            self.kill()
            return False
        return True

    def private(self, pid: int) -> int:
        """A waiting ancestor's own pages (what it wrote since it was forked), read every
        WAITER_SAMPLES samples: smaps_rollup walks every page (2 ms for a warm template's fork)."""
        if pid not in self.waiters or self.samples % WAITER_SAMPLES == 0:
            self.waiters[pid] = private_bytes(pid)
        return self.waiters[pid]

    def kill(self) -> bool:
        """SIGKILL every process of the tree until none is left; reap the orphans. False when some
        process was still alive after every attempt (the caller must not trust what it left)."""
        with self.lock:
            empty = 0
            for _ in range(KILL_ROUNDS):
                table = self.table()
                alive = [pid for pid, (_, state) in table.items() if state not in "ZX"]
                for pid in alive:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.reap(table)
                # Twice empty: a process re-parented to the runner while one walk read the runner's
                # children and then its dying parent's is in neither list, but in the next walk.
                empty = 0 if alive else empty + 1
                if empty == 2:
                    return True
                if alive:
                    time.sleep(0.01)
            return False

    def reap(self, table: dict[int, tuple[int, str]]) -> None:
        """Collect the orphans that became the runner's children (never the root: Popen waits for it)."""
        for pid, (ppid, _) in table.items():
            if pid != self.root and ppid == self.runner:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    def close(self) -> None:
        self.stopped.set()
        self.kill()
        if threading.current_thread() is not self.thread:
            self.thread.join()
        if not self.was_subreaper:
            subreaper(False)


def subreaper(on: bool) -> bool:
    """Make the runner the child subreaper of its descendants; returns the previous state."""
    state = ctypes.c_int(0)
    _check(_libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(state), 0, 0, 0), "prctl")
    _prctl(PR_SET_CHILD_SUBREAPER, int(on))
    return bool(state.value)


def human_bytes(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}".replace(".0 ", " ")
        count /= 1024
    raise AssertionError("unreachable")
