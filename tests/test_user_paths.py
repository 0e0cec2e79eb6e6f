"""Paths from the user's folder: pixi (and its PyPI twin) run tasks in the workspace
root and export the caller's folder as INIT_CWD; predict.py's path flags follow it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import ROOT

from numerai_predict.cli import parse_args
from numerai_predict.values import dataset_path

PYPI_ENV = os.path.join(ROOT, "containers", "pypi_env.py")


def test_relative_flags_resolve_against_init_cwd(tmp_path, monkeypatch):
    user = tmp_path / "user"
    (user / "out").mkdir(parents=True)
    (user / "data").mkdir()
    (user / "data" / "live.parquet").write_bytes(b"")
    monkeypatch.setenv("INIT_CWD", str(user))
    monkeypatch.chdir(tmp_path)  # the task's folder (the workspace root) is not the user's
    opts = parse_args(["--model", "m.pkl", "--dataset", "data/live.parquet", "--output_dir", "out",
                       "--report", "r.json"])
    assert opts.model == str(user / "m.pkl")
    assert opts.dataset == str(user / "data" / "live.parquet")  # exists there: a local file
    assert opts.benchmarks == "v5.3/live_benchmark_models.parquet"  # the default: a dataset name
    assert opts.output_dir == str(user / "out") and opts.report == str(user / "r.json")
    # URLs and absolute paths are kept as they are.
    assert parse_args(["--model", "https://h/m.pkl?x=1", "--output_dir", str(user)]).model == "https://h/m.pkl?x=1"
    assert dataset_path("/abs/live.parquet") == "/abs/live.parquet"


def test_the_dataset_rule(tmp_path, monkeypatch):
    """A relative name is a local file when it exists in the user's folder or starts with ./ or ../;
    anything else is a Numerai dataset name."""
    monkeypatch.setenv("INIT_CWD", str(tmp_path))
    assert dataset_path("v5.3/live.parquet") == "v5.3/live.parquet"
    assert dataset_path("./live.parquet") == str(tmp_path / "live.parquet")  # missing: exit 20, never fetched
    assert dataset_path("../x.parquet") == str(tmp_path.parent / "x.parquet")
    (tmp_path / "v5.3").mkdir()
    (tmp_path / "v5.3" / "live.parquet").write_bytes(b"")
    assert dataset_path("v5.3/live.parquet") == str(tmp_path / "v5.3" / "live.parquet")


def test_without_init_cwd_the_current_folder_is_the_users(tmp_path, monkeypatch):
    monkeypatch.delenv("INIT_CWD", raising=False)
    monkeypatch.chdir(tmp_path)
    assert parse_args(["--model", "m.pkl", "--output_dir", "."]).output_dir == str(tmp_path)


def test_the_twin_runs_predict_with_paths_from_the_callers_folder(tmp_path):
    """README's command, run from another folder with relative paths: exit 0, the CSV in the user's folder."""
    tag = f"3_{sys.version_info[1]}"
    shutil.copy(os.path.join(ROOT, "tests", "models", f"model_{tag}.pkl"), tmp_path / "model.pkl")
    (tmp_path / "data").mkdir()
    for name in ("live.parquet", "live_benchmark_models.parquet"):
        shutil.copy(os.path.join(ROOT, "examples", name), tmp_path / "data" / name)
    (tmp_path / "out").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "INIT_CWD"}  # a fresh shell: the twin sets it
    result = subprocess.run([sys.executable, PYPI_ENV, "run", "-e", f"py3{sys.version_info[1]}", "predict",
                             "--model", "model.pkl", "--dataset", "data/live.parquet",
                             "--benchmarks", "data/live_benchmark_models.parquet", "--output_dir", "out"],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert [p for p in os.listdir(tmp_path / "out") if p.endswith(".csv")]


def test_the_demo_keeps_its_csv_in_the_users_folder(tmp_path):
    env = dict(os.environ, INIT_CWD=str(tmp_path))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "demo.py")], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (csv,) = [p for p in os.listdir(tmp_path) if p.endswith(".csv")]
    assert f"{tmp_path / csv} (kept in the folder you ran the demo from)" in result.stdout
