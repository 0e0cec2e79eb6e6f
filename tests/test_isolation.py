"""The model's isolation (issue 8): hostile models against the real runner, in
real processes. Where the kernel refuses a mechanism (namespaces inside
Docker's seccomp profile, no Landlock), its test is skipped with the reason."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time

import hostile_models
import model_zoo
import pandas as pd
import pytest
from conftest import ROOT
from test_predict import local_data, read_answer, read_predictions, run

from numerai_predict import errors


@pytest.fixture(params=["children-files", "proc-scan"])
def process_view(request, monkeypatch):
    """The watchdog's two ways to find the model's processes: walking /proc/PID/task/TID/children,
    or scanning all of /proc (kernels without CONFIG_PROC_CHILDREN)."""
    from numerai_predict import isolation

    if request.param == "children-files":
        assert isolation.has_children_files(), "this kernel has no /proc children files"
    else:
        monkeypatch.setattr(isolation, "has_children_files", lambda: False)
    return request.param


def needs_namespaces(kernel):
    if not kernel["network"].startswith("none"):
        pytest.skip(f"network namespaces unavailable here: {kernel['network']}")


def pids_in(err, label):
    """The (pid, start time) of each process a hostile model reported under ``label``."""
    return [tuple(int(x) for x in line.split()[1:3]) for line in err.splitlines() if line.startswith(label)]


def alive(identity):
    """Whether the process (pid, start time) still runs: a pid reused by another process is not it."""
    pid, started = identity
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return int(fields[19]) == started and fields[0] not in "ZX"


@pytest.mark.parametrize("isolation", [[], ["--no-isolation"]], ids=["isolated", "no-isolation"])
def test_detached_grandchild_cannot_touch_the_csv(capfd, live_files, pickle_of, out_dir, isolation, process_view):
    """A setsid()+double-fork grandchild overwriting the CSV is dead before the CSV is written."""
    model = pickle_of(hostile_models.rewrites_csv(str(out_dir)))
    code, err = run(capfd, "--model", model, *local_data(live_files), "--output_dir", out_dir, *isolation)
    assert code == 0, err
    (grandchild,) = pids_in(err, "GRANDCHILD")
    assert not alive(grandchild)
    time.sleep(0.2)  # it wrote every 5 ms while it lived
    assert (read_answer(out_dir) == 0.5).all()
    assert len(read_predictions(out_dir)) == len(live_files["ids"])


def test_timeout_ends_the_whole_tree(capfd, live_files, pickle_of, out_dir, process_view):
    """--timeout counts the model's loading too: on a loaded machine 3 s may end it before it started its
    grandchild, so the run is repeated with a longer timeout until the grandchild existed (once, normally)."""
    model = pickle_of(hostile_models.sleeps_with_grandchild)
    for timeout in (3, 10, 30):
        code, err = run(capfd, "--model", model, *local_data(live_files), "--output_dir", out_dir,
                        "--timeout", timeout)
        assert code == errors.ModelTimeoutError.exit_code, err
        assert f"the model did not finish within --timeout {timeout} s" in err
        assert os.listdir(out_dir) == []
        if pids_in(err, "GRANDCHILD"):
            break
    (grandchild,) = pids_in(err, "GRANDCHILD")
    assert not alive(grandchild)


def test_cpus_limits_what_the_model_runs_on(capfd, live_files, pickle_of, out_dir):
    """--cpus 1 (the default) leaves the model one CPU; --cpus 0 all the runner has."""
    model = pickle_of(hostile_models.counts_cpus)
    code, err = run(capfd, "--model", model, *local_data(live_files), "--output_dir", out_dir)
    assert code == 0, err
    assert ((read_answer(out_dir) * 1000).round() == 1).all()
    here = len(os.sched_getaffinity(0))
    if here == 1:
        pytest.skip("this machine gives the tests one CPU: --cpus 0 cannot show more")
    for name in os.listdir(out_dir):
        os.remove(out_dir / name)
    code, err = run(capfd, "--model", model, *local_data(live_files), "--output_dir", out_dir, "--cpus", "0")
    assert code == 0, err
    assert ((read_answer(out_dir) * 1000).round() == here).all()


@pytest.mark.parametrize(("here", "in_child", "in_thread"), [(600, 0, False), (200, 200, False), (200, 200, True)],
                         ids=["one-process", "two-processes", "forked-by-a-thread"])
def test_memory_over_the_limit_stops_the_model(capfd, live_files, pickle_of, out_dir, tmp_path, here, in_child,
                                               in_thread, process_view):
    """The processes' memory counts together; going over --max-memory is exit 33 with the peak."""
    report = tmp_path / "report.json"
    model = pickle_of(hostile_models.allocates(here, in_child, in_thread))
    code, err = run(capfd, "--model", model, *local_data(live_files),
                    "--output_dir", out_dir, "--max-memory", "300m", "--report", report)
    assert code == errors.ModelMemoryError.exit_code, err
    assert "over --max-memory 300 MiB; they were stopped" in err
    peak = json.loads(report.read_text())["isolation"]["peak_memory_bytes"]
    assert peak > 300 << 20
    assert f"reached {peak / 2**20:.1f} MiB".replace(".0 ", " ") in err
    assert os.listdir(out_dir) == []


def test_limits_are_in_the_log_and_the_report(capfd, live_files, pickle_of, out_dir, tmp_path, kernel):
    report = tmp_path / "report.json"
    code, err = run(capfd, "--model", pickle_of(model_zoo.constant), *local_data(live_files),
                    "--output_dir", out_dir, "--report", report)
    assert code == 0, err
    isolation = json.loads(report.read_text())["isolation"]
    assert isolation["timeout"] == "600 s" and isolation["memory"] == "4 GiB for the whole process tree"
    assert isolation["cpus"].startswith("1 ") or isolation["cpus"] == "1 (all this machine allows)"
    assert isolation["network"] == kernel["network"]
    assert 0 < isolation["peak_memory_bytes"] < 1 << 30
    assert "Model isolation: timeout: 600 s; memory: 4 GiB" in err and f"network: {kernel['network']}" in err


def test_loopback_port_of_the_host_is_unreachable(capfd, live_files, pickle_of, out_dir, kernel):
    needs_namespaces(kernel)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0)
        port = listener.getsockname()[1]
        code, err = run(capfd, "--model", pickle_of(hostile_models.connects(port)), *local_data(live_files),
                        "--output_dir", out_dir)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody came
    assert code == 0, err
    assert "ConnectionRefusedError" in err
    assert (read_answer(out_dir) == 0).all()


@pytest.mark.parametrize("isolation", [[], ["--no-isolation"]], ids=["isolated", "no-isolation"])
def test_runner_secrets_are_out_of_reach(live_files, pickle_of, out_dir, server, isolation):
    """The runner's environment and command line (a presigned POST) cannot be read from the model;
    without isolation the same model finds them, which proves it looks in the right places."""
    marker = secrets.token_hex(12)
    url = server.route("/upload", (204, b"")) + f"?token=u{marker}"
    with open(pickle_of(hostile_models.reads_secrets(marker)), "rb") as handle:  # a presigned GET of the model
        model = server.route("/model.pkl", (200, handle.read())) + f"?X-Amz-Signature=m{marker}&X-Amz-Expires=600"
    env = {**os.environ, "NUMERAI_SECRET_KEY": marker}
    result = subprocess.run([sys.executable, "predict.py", "--model", model, *local_data(live_files),
                             "--output_dir", str(out_dir), f"--post_url={url}",
                             "--post_data", f"key=live.csv&policy=p{marker}&x-amz-signature=s{marker}", *isolation],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    found = read_answer(out_dir)
    if isolation:
        assert (found == 1).all(), result.stderr
    else:
        assert (found == 0).all(), [line for line in result.stderr.splitlines() if "SECRETS FOUND" in line]


def test_writes_outside_the_scratch_directory_are_refused(capfd, live_files, pickle_of, out_dir, tmp_path, kernel):
    if not kernel["landlock"]:
        pytest.skip("Landlock is unavailable in this kernel")
    outside = tmp_path / "outside.txt"
    code, err = run(capfd, "--model", pickle_of(hostile_models.writes(str(outside))), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == 0, err
    # Landlock's EACCES, or EROFS where the model has its read-only mount namespace (checked first)
    assert ("WRITE PermissionError" in err or "Read-only file system" in err) and not outside.exists()
    assert (read_answer(out_dir) == 0).all()


def test_exit_without_answer_is_not_called_a_crash(capfd, live_files, pickle_of, out_dir):
    code, err = run(capfd, "--model", pickle_of(hostile_models.exits_quietly), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == errors.ModelCrashedError.exit_code
    assert "the model process exited with status 0 without returning predictions" in err
    assert "another Python" not in err and "os._exit" in err


def test_tensorflow_and_pytorch_run_under_the_default_limits(live_files, tmp_path):
    """Frameworks reserving large virtual memory run under --max-memory 4g (no RLIMIT_AS misfire)."""
    pickle = {(3, 11): "model_3_11.pkl", (3, 12): "model_3_12_legacy.pkl"}.get(sys.version_info[:2])
    if pickle is None:
        pytest.skip("the PyTorch (3.11) and TensorFlow (3.12) test pickles are for other Pythons")
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "predict.py", "--model", os.path.join(ROOT, "tests", "models", pickle),
                             *local_data(live_files), "--output_dir", str(tmp_path), "--report", str(report)],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text())["isolation"]["peak_memory_bytes"] < 2 << 30
    assert len(pd.read_csv(json.loads(report.read_text())["predictions_csv"])) == len(live_files["ids"])
