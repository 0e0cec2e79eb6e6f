"""Fixtures: live-shaped data, real pickles and real servers on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import model_zoo
import numerai_data
import pytest
from servers import ScriptedServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_ENV, IMAGE = "py311", "numerai_predict_py_3_11:latest"
DOCKER = os.environ.get("DOCKER") or shutil.which("docker") or "docker"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    """Keep retry budgets short so failure tests end quickly."""
    monkeypatch.setenv("NUMERAI_PREDICT_RETRY_SECONDS", "8")


@pytest.fixture(scope="session")
def live_files(tmp_path_factory):
    """A live features file and its benchmark models, as Parquet."""
    folder = tmp_path_factory.mktemp("live")
    features = numerai_data.live_features()
    features.to_parquet(folder / "live.parquet")
    numerai_data.benchmark_models(features).to_parquet(folder / "live_benchmark_models.parquet")
    return {"features": str(folder / "live.parquet"),
            "benchmarks": str(folder / "live_benchmark_models.parquet"),
            "ids": features.index}


@pytest.fixture(scope="session")
def lightgbm_pickles(tmp_path_factory):
    """A 1-argument and a 2-argument LightGBM model, cloudpickled."""
    folder = tmp_path_factory.mktemp("models")
    booster, columns = model_zoo.train_lightgbm()
    paths = {}
    for name, factory in [("legacy", model_zoo.one_argument_model), ("two", model_zoo.two_argument_model)]:
        paths[name] = folder / f"model_{name}.pkl"
        paths[name].write_bytes(model_zoo.dumps(factory(booster, columns)))
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture
def pickle_of(tmp_path):
    """Write ``obj`` (or raw bytes) as a pickle and return its path."""
    def write(obj, name="model.pkl"):
        path = tmp_path / name
        path.write_bytes(obj if isinstance(obj, bytes) else model_zoo.dumps(obj))
        return str(path)
    return write


@pytest.fixture
def server():
    httpd = ScriptedServer()
    yield httpd
    httpd.close()


@pytest.fixture
def out_dir(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture(scope="session")
def py311_image():
    """The py311 image as `build-image` makes it (built now when absent)."""
    if subprocess.run([DOCKER, "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        twin = os.environ.get("PYPI_TWIN") or not shutil.which("pixi")
        build = ([sys.executable if sys.version_info >= (3, 11) else "python3",
                  os.path.join(ROOT, "containers", "pypi_env.py")] if twin else ["pixi"])
        subprocess.run([*build, "run", "build-image", IMAGE_ENV], cwd=ROOT, check=True)
    return IMAGE
