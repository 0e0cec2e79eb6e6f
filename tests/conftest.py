"""Fixtures: live-shaped data, real pickles and real servers on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import model_zoo
import numerai_data
import numerai_rules
import pytest
from servers import ScriptedServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_ENV, IMAGE = "py311", "numerai_predict_py_3_11:latest"
DOCKER = os.environ.get("DOCKER") or shutil.which("docker") or "docker"
HERE = f"py3{sys.version_info[1]}"  # the environment this test run is in


def project_tool() -> list[str]:
    """pixi, or its PyPI twin where pixi is absent or the twin runs the tests."""
    if os.environ.get("PYPI_TWIN") or not shutil.which("pixi"):
        return [sys.executable if sys.version_info >= (3, 11) else "python3",
                os.path.join(ROOT, "containers", "pypi_env.py")]
    return ["pixi"]


@pytest.fixture(scope="session")
def kernel():
    """What this kernel allows an unprivileged process, tried in a throwaway one."""
    import json

    probe = ("import json\nfrom numerai_predict import isolation\n"
             "print(json.dumps({'landlock': isolation.landlock_abi(), 'network': isolation.own_network()}))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


@pytest.fixture(autouse=True)
def own_environment_only(monkeypatch):
    """A test runs models in its own environment only, unless it asks for others (`environments`):
    on a fresh machine nothing else may be built yet, so a test that reaches for another
    environment silently would pass on a warm machine and fail on a new one."""
    monkeypatch.setenv("NUMERAI_PREDICT_ENVIRONMENTS", HERE)


BUILT: set[str] = set()


def build_environment(env: str) -> None:
    """Install ``env`` (once a session): `pixi install -e ENV`, or the twin's build."""
    if env in BUILT:
        return
    tool = project_tool()
    command = [*tool, "install", "-e", env] if tool == ["pixi"] else [*tool, "build", env]
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        pytest.fail(f"environment {env} is needed and could not be built; run `{' '.join(command)}`:\n"
                    + result.stdout[-2000:], pytrace=False)
    BUILT.add(env)


@pytest.fixture
def environments(monkeypatch):
    """``environments("py311", "py312")``: build those environments when missing, and let this test's
    rounds use them."""
    def need(*envs: str) -> None:
        for env in envs:
            build_environment(env)
        monkeypatch.setenv("NUMERAI_PREDICT_ENVIRONMENTS", ",".join(sorted({HERE, *envs})))
    return need


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
    """The runner's --output_dir; every CSV left in it must pass Numerai's own rules (numerai-tools)."""
    folder = tmp_path / "out"
    folder.mkdir()
    yield folder
    for csv in sorted(folder.rglob("*.csv")):
        refusal = numerai_rules.csv_refusal(csv)
        assert refusal is None, f"numerai-tools refuses {csv.name}, which the runner wrote: {refusal}"


@pytest.fixture(scope="session")
def py311_image():
    """The py311 image as `build-image` makes it (built now when absent)."""
    if subprocess.run([DOCKER, "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        subprocess.run([*project_tool(), "run", "build-image", IMAGE_ENV], cwd=ROOT, check=True)
    return IMAGE
