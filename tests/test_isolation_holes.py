"""Holes a cold review found in the model's isolation (issue 22), each with the hostile model that
went through it; the --no-isolation run of the same model shows the test looks in the right place."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import hostile_models
import pytest
from conftest import ROOT
from test_isolation import alive
from test_predict import csvs, local_data, read_answer, run

from numerai_predict import errors, isolation, sandbox, validate


@pytest.mark.parametrize("isolation, reached", [([], 0), (["--no-isolation"], 1)], ids=["isolated", "no-isolation"])
def test_a_unix_socket_outside_scratch_is_out_of_reach(capfd, live_files, pickle_of, out_dir, tmp_path, isolation,
                                                        reached):
    """Docker's engine answered an isolated model on its socket (a full escape): pathname Unix sockets
    are out of reach (socket(AF_UNIX) refused by seccomp); socketpair() still works."""
    path = str(tmp_path / "engine.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        code, err = run(capfd, "--model", pickle_of(hostile_models.unix_socket(path)), *local_data(live_files),
                        "--output_dir", out_dir, *isolation)
    assert code == 0, err
    assert (read_answer(out_dir) == reached).all(), err
    if isolation:  # --no-isolation
        assert "no Unix sockets" not in err
    else:
        assert "system_calls: no Unix sockets (socket(AF_UNIX) refused); no new namespaces; CPU affinity fixed" in err


def test_the_model_cannot_widen_its_cpus(capfd, live_files, pickle_of, out_dir):
    if len(os.sched_getaffinity(0)) == 1:
        pytest.skip("this machine gives the tests one CPU: nothing to widen")
    code, err = run(capfd, "--model", pickle_of(hostile_models.widens_cpus), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == 0, err
    assert ((read_answer(out_dir) * 1000).round() == 1).all(), err
    assert "AFFINITY PermissionError" in err


def needs_namespaces(kernel):
    if not kernel["network"].startswith("none"):
        pytest.skip(f"namespaces unavailable here: {kernel['network']}")


def test_metadata_outside_scratch_cannot_change(capfd, live_files, pickle_of, out_dir, tmp_path, kernel):
    """chmod is not a write for Landlock: a read-only mount namespace refuses it outside scratch."""
    needs_namespaces(kernel)
    victim = tmp_path / "victim.txt"
    victim.write_text("x")
    victim.chmod(0o644)
    code, err = run(capfd, "--model", pickle_of(hostile_models.chmods(str(victim))), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == 0, err
    assert (read_answer(out_dir) == 0).all() and "Read-only file system" in err
    assert victim.stat().st_mode & 0o777 == 0o644


@pytest.fixture
def host_shm_file():
    """The file the /dev/shm model writes, removed from the host's /dev/shm whatever happens."""
    path = "/dev/shm/numerai-predict-test-fill"
    yield path
    if os.path.exists(path):
        os.remove(path)


def test_dev_shm_counts_against_max_memory_and_goes_with_the_model(capfd, live_files, pickle_of, out_dir, kernel,
                                                                    host_shm_file):
    """1,200 MiB written to /dev/shm under --max-memory 1g exited 0 and stayed on the host: now the model's
    /dev/shm is its own tmpfs, counted with its memory (exit 33), gone with it."""
    needs_namespaces(kernel)
    code, err = run(capfd, "--model", pickle_of(hostile_models.fills_shm(600)), *local_data(live_files),
                    "--output_dir", out_dir, "--max-memory", "400m")
    assert code == errors.ModelMemoryError.exit_code, err
    assert not os.path.exists(host_shm_file)


def test_the_model_sees_no_other_process(live_files, pickle_of, out_dir, kernel, tmp_path):
    """A presigned POST on a wrapper's command line (`pixi run ... predict --post_data ...`): the model's
    own /proc shows its own processes only, so no ancestor's command line or environment."""
    needs_namespaces(kernel)
    marker = "wrapper-secret-" + os.urandom(4).hex()
    model = pickle_of(hostile_models.reads_secrets(marker))
    wrapper = ("import subprocess, sys; sys.exit(subprocess.run([sys.executable, 'predict.py', *sys.argv[2:]])"
               ".returncode)")
    result = subprocess.run([sys.executable, "-c", wrapper, marker, "--model", model, *local_data(live_files),
                             "--output_dir", str(out_dir)], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, WRAPPER_SECRET=marker))
    assert result.returncode == 0, result.stderr
    assert "SECRETS FOUND []" in result.stderr
    assert (read_answer(out_dir) == 0).all()


def test_devices_other_than_the_harmless_ones_are_not_writable(capfd, live_files, pickle_of, out_dir, kernel):
    """As root with capabilities dropped, a disk, the kernel log and a terminal opened for writing."""
    if not kernel["landlock"]:
        pytest.skip("Landlock is unavailable in this kernel")
    code, err = run(capfd, "--model", pickle_of(hostile_models.writes("/dev/kmsg")), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == 0, err
    assert (read_answer(out_dir) == 0).all()


def test_the_post_can_come_on_standard_input(live_files, pickle_of, out_dir, server):
    """--post_data - : the presigned POST never on a command line (the round passes it so)."""
    url = server.route("/upload", (204, b""))
    result = subprocess.run([sys.executable, "predict.py", "--model", pickle_of(hostile_models.counts_cpus),
                             *local_data(live_files), "--output_dir", str(out_dir), "--post_url", url,
                             "--post_data", "-"], cwd=ROOT, input="key=live.csv&policy=p-on-stdin\n",
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (request,) = [r for r in server.requests if r[0] == "POST"]
    assert b"p-on-stdin" in request[3] and b'name="key"\r\n\r\nlive.csv' in request[3]
    empty = subprocess.run([sys.executable, "predict.py", "--model", pickle_of(hostile_models.counts_cpus),
                            "--post_url", url, "--post_data", "-"], cwd=ROOT, input="", capture_output=True,
                           text=True)
    assert empty.returncode == 2 and "--post_data - found no fields on standard input" in empty.stderr


def test_sigterm_ends_the_model_tree_before_predict_py_exits(live_files, pickle_of, out_dir):
    """A round's stop (or `docker stop`) asks predict.py to end: it kills the model's whole tree,
    a detached grandchild included, and exits 130."""
    model = pickle_of(hostile_models.sleeps_with_grandchild)
    proc = subprocess.Popen([sys.executable, "predict.py", "--model", model, *local_data(live_files),
                             "--output_dir", str(out_dir), "--no-isolation"], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("GRANDCHILD"):
            break
    grandchild = tuple(int(x) for x in lines[-1].split()[1:3])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130, "".join(lines) + proc.stderr.read()
    assert not alive(grandchild)


@pytest.mark.parametrize("obeys", [True, False], ids=["obeys", "ignores-sigterm"])
def test_a_round_asks_predict_py_to_stop_then_kills(tmp_path, monkeypatch, obeys):
    from numerai_predict.round import worker

    # Room for a loaded CPU to run the handler and exit when it obeys; short when it never will.
    monkeypatch.setattr(worker, "STOP_GRACE_SECONDS", 10.0 if obeys else 1.0)
    marker = tmp_path / "asked"
    handler = (f"lambda *a: (open({str(marker)!r}, 'w').close(), sys.exit(0))" if obeys
               else "signal.SIG_IGN")
    # Short sleeps: a signal that lands before one long sleep starts waits for its end on Python 3.14
    # (the handler runs at the next bytecode boundary, and a C call is not one).
    script = f"import signal, sys, time\nsignal.signal(signal.SIGTERM, {handler})\nprint('ready', flush=True)\n" \
             "for _ in range(600):\n    time.sleep(0.1)\n"
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"ready\n"
    cancelled = threading.Event()
    cancelled.set()
    code, _ = worker.wait(proc, 60, cancelled)
    assert (code, marker.exists()) == ((0, True) if obeys else (-signal.SIGKILL, False))


def test_root_outside_a_container_is_warned_loudly(capfd, live_files, pickle_of, out_dir):
    code, err = run(capfd, "--model", pickle_of(hostile_models.counts_cpus), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == 0, err
    warned = "WARNING The model runs as root: it can read every file of this machine" in err
    assert warned == (os.geteuid() == 0 and not sandbox.in_container())


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="i386's int 0x80 exists on x86_64 only")
def test_another_abi_cannot_go_around_the_filter(capfd, live_files, pickle_of, out_dir):
    """The same socket(AF_UNIX) through i386's system call numbers: refused with everything of that ABI."""
    code, err = run(capfd, "--model", pickle_of(hostile_models.i386_unix_socket), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == 0, err
    assert (read_answer(out_dir) == 0).all() and "I386 socket -> -1" in err


@pytest.mark.parametrize("kind", ["memfd", "sysv"])
def test_memory_no_process_maps_still_counts(capfd, live_files, pickle_of, out_dir, kernel, kind):
    """600 MiB held where resident memory does not show it, under --max-memory 400m: a memfd is counted
    (exit 33); System V segments live in the model's own IPC namespace, capped at --max-memory."""
    needs_namespaces(kernel)
    before = open("/proc/sysvipc/shm").read()
    code, err = run(capfd, "--model", pickle_of(hostile_models.holds_unseen_memory(kind, 600)),
                    *local_data(live_files), "--output_dir", out_dir, "--max-memory", "400m")
    if kind == "memfd":
        assert code == errors.ModelMemoryError.exit_code, err
    else:
        assert code == 0 and (read_answer(out_dir) == 0).all(), err
        assert open("/proc/sysvipc/shm").read() == before  # nothing left on the host


def test_the_model_cannot_make_namespaces_of_its_own(capfd, live_files, pickle_of, out_dir):
    """In a user namespace of its own the model could mount a tmpfs and hold memory no limit counts."""
    code, err = run(capfd, "--model", pickle_of(hostile_models.nests_a_user_namespace), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == 0, err
    assert (read_answer(out_dir) == 0).all(), err


@pytest.mark.parametrize("kind, message", [
    ("fifo", "left something else than a file as its predictions"),
    ("empty", "predictions file holds 0 bytes for"),
    ("bomb", f"predictions file holds {40 << 30} bytes for"),
])
def test_what_the_runner_reads_of_the_model_is_checked_first(capfd, live_files, pickle_of, out_dir, kind, message):
    """A FIFO blocked the runner past --timeout, a Parquet bomb took it to 19.6 GiB, an empty file gave a
    runner's exit 22: each is the model's failure (31), the file unread, nothing written."""
    code, err = run(capfd, "--model", pickle_of(hostile_models.forges_output(kind)), *local_data(live_files),
                    "--output_dir", out_dir, "--timeout", "30")
    assert code == errors.ModelCrashedError.exit_code, err
    assert message in err and csvs(out_dir) == []


def test_a_closed_channel_is_waited_for_within_the_timeout(capfd, live_files, pickle_of, out_dir):
    code, err = run(capfd, "--model", pickle_of(hostile_models.closes_the_channel_and_sleeps),
                    *local_data(live_files), "--output_dir", out_dir, "--timeout", "3")
    assert code == errors.ModelTimeoutError.exit_code, err


def test_what_the_model_sees_of_its_processes(capfd, live_files, pickle_of, out_dir, kernel):
    """Not the PID namespace's first process (which ignores the signals it sends itself), the leader of
    its own session (no controlling terminal), an empty /run, a /dev/shm of --max-memory."""
    needs_namespaces(kernel)
    code, err = run(capfd, "--model", pickle_of(hostile_models.where_am_i), *local_data(live_files),
                    "--output_dir", out_dir, "--max-memory", "1g")
    assert code == 0, err
    where = next(line for line in err.splitlines() if line.startswith("WHERE "))
    facts = dict(item.split("=", 1) for item in where.split()[1:4]) | {"shm": where.rsplit("shm=", 1)[1]}
    assert facts["pid"] != "1" and facts["leader"] == "True" and "run=[]" in where
    assert int(facts["shm"]) == 1 << 30


def test_the_tree_is_killed_before_its_output_is_read(capfd, live_files, pickle_of, out_dir, monkeypatch):
    """The order, recorded: every process of the model is ended, then the runner reads what it left."""
    events = []
    kill, read = isolation.Watchdog.kill, validate.deliverable
    monkeypatch.setattr(isolation.Watchdog, "kill", lambda self: events.append("kill") or kill(self))
    monkeypatch.setattr(validate, "deliverable", lambda *a: events.append("read") or read(*a))
    code, err = run(capfd, "--model", pickle_of(hostile_models.counts_cpus), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == 0, err
    assert "read" in events and events.index("kill") < events.index("read")
