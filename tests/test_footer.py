"""The footer is a command: pasted into a shell from another folder, it reproduces the run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT
from test_predict import lock_directory

from numerai_predict import errors
from numerai_predict.reproduce import reproduce_footer

PYPI_ENV = os.path.join(ROOT, "containers", "pypi_env.py")
HERE = sys.version_info[1]


def commands(stderr: str) -> tuple[str, str]:
    """The footer's local and docker commands, as printed."""
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Reproduce this locally"))
    return lines[start + 1].strip(), lines[start + 3].strip()


def shell_env() -> dict[str, str]:
    """A fresh shell's environment: no INIT_CWD (the twin sets it), the twin's marker kept."""
    return {k: v for k, v in os.environ.items() if k != "INIT_CWD"}


def twin_predict(folder, *args):
    """`python3 containers/pypi_env.py run -e pyXY predict ARGS` from the user's folder."""
    return subprocess.run([sys.executable, PYPI_ENV, "run", "-e", f"py3{HERE}", "predict", *map(str, args)],
                          cwd=folder, env=shell_env(), capture_output=True, text=True)


def paste(command: str, folder):
    return subprocess.run(["bash", "-c", command], cwd=folder, env=shell_env(), capture_output=True, text=True)


@pytest.fixture
def user(tmp_path):
    """A user's folder with a model of this Python, live data and an output folder; and another folder."""
    folder = tmp_path / "user"
    (folder / "data").mkdir(parents=True)
    (folder / "out").mkdir()
    shutil.copy(os.path.join(ROOT, "tests", "models", f"model_3_{HERE}.pkl"), folder / "model.pkl")
    for name in ("live.parquet", "live_benchmark_models.parquet"):
        shutil.copy(os.path.join(ROOT, "examples", name), folder / "data" / name)
    (tmp_path / "elsewhere").mkdir()
    return folder


DATA = ["--dataset", "data/live.parquet", "--benchmarks", "data/live_benchmark_models.parquet"]


def csvs(folder):
    return [p for p in os.listdir(folder) if p.endswith(".csv")]


def test_exit_12_footer_runs_the_pickle_in_its_own_python(user):
    """A pickle of another Python: the footer names that Python's environment, and pasting it succeeds."""
    other = 12 if HERE != 12 else 11
    shutil.copy(os.path.join(ROOT, "tests", "models", f"model_3_{other}.pkl"), user / "model.pkl")
    first = twin_predict(user, "--model", "model.pkl", *DATA, "--output_dir", "out")
    assert first.returncode == errors.PickleVersionError.exit_code, first.stderr
    local, docker = commands(first.stderr)
    assert local.startswith(f"python3 {PYPI_ENV} run -e py3{other} predict --model {user}/model.pkl")
    assert f"numerai_predict_py_3_{other}:latest" in docker
    again = paste(local, user.parent / "elsewhere")
    assert again.returncode == 0, again.stderr
    assert csvs(user / "out")


def test_exit_20_footer_reproduces_the_missing_dataset(user):
    first = twin_predict(user, "--model", "model.pkl", "--dataset", "./missing.parquet", "--output_dir", "out")
    assert first.returncode == errors.DatasetMissingError.exit_code, first.stderr
    local, _ = commands(first.stderr)
    assert f"--dataset {user}/missing.parquet" in local
    again = paste(local, user.parent / "elsewhere")
    assert again.returncode == errors.DatasetMissingError.exit_code, again.stderr


def test_exit_50_footer_reproduces_the_unwritable_output_dir(user):
    undo = lock_directory(user / "out")
    try:
        first = twin_predict(user, "--model", "model.pkl", *DATA, "--output_dir", "out")
        assert first.returncode == errors.WriteError.exit_code, first.stderr
        local, _ = commands(first.stderr)
        assert f"--output_dir {user}/out" in local
        again = paste(local, user.parent / "elsewhere")
    finally:
        undo()
    assert again.returncode == errors.WriteError.exit_code, again.stderr


def test_secrets_and_queries_never_reach_the_footer(monkeypatch):
    monkeypatch.setenv("PYPI_TWIN", "1")
    footer = reproduce_footer(["--model", "https://me:pw@bucket.s3.amazonaws.com/m.pkl?X-Amz-Signature=abc",
                               "--post_url", "https://bucket.s3.amazonaws.com/?token=t",
                               "--post_data", "key=a.csv&policy=p&x-amz-signature=s"])
    for secret in ("X-Amz", "abc", "me:pw", "policy", "token", "x-amz-signature"):
        assert secret not in footer
    local, docker = commands(footer)
    assert "--model https://bucket.s3.amazonaws.com/m.pkl" in local and "--post" not in local + docker
    assert "--network none" not in docker  # the model and the datasets come from the network


def test_the_footer_fits_the_tool_and_the_image(monkeypatch, tmp_path):
    monkeypatch.delenv("PYPI_TWIN", raising=False)
    monkeypatch.delenv("NUMERAI_PREDICT_IMAGE_REPO", raising=False)
    monkeypatch.delenv("GIT_REF", raising=False)
    monkeypatch.setenv("INIT_CWD", str(tmp_path))
    (tmp_path / "live.parquet").write_bytes(b"")
    argv = ["--model", "m.pkl", "--dataset", "live.parquet", "--benchmarks", "/b/bench.parquet", "--out", "o",
            "--cpus", "2"]
    local, docker = commands(reproduce_footer(argv))
    assert local == (f"pixi run --manifest-path {ROOT}/pixi.toml -e py3{HERE} predict --model {tmp_path}/m.pkl "
                     f"--dataset {tmp_path}/live.parquet --benchmarks /b/bench.parquet --output_dir {tmp_path}/o "
                     "--cpus 2 --debug")
    assert docker.startswith('docker run -i --rm --network none --user "$(id -u):$(id -g)" '
                             f"-v {tmp_path}:{tmp_path}:ro -v /b:/b:ro -v {tmp_path}/o:{tmp_path}/o "
                             f"numerai_predict_py_3_{HERE}:latest --model {tmp_path}/m.pkl")
    monkeypatch.setenv("NUMERAI_PREDICT_IMAGE_REPO", "ghcr.io/numerai")
    monkeypatch.setenv("GIT_REF", "0123abcd")
    _, docker = commands(reproduce_footer(argv))
    assert f" ghcr.io/numerai/numerai_predict_py_3_{HERE}:0123abcd --model" in docker
