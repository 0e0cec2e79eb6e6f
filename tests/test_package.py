"""numerai-predict as a participant installs it: the sdist and the wheel built from this checkout
(uv build, setuptools), installed from the file into fresh virtual environments of the lowest and
the newest Python (their dependencies from PyPI), and used from a folder of the user's with no
clone on sys.path: the doctor from the base install (no pandas), the missing extra named, a model
run end to end and the notebook API with [run], and every `pip install` / `numerai-predict` line
and ```python block of README.md and docs/ run as written.

Slow: it builds environments (run in one environment, test-slow)."""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import zipfile
from types import SimpleNamespace

import jsonschema
import manifest as pixi_toml
import pypi_env
import pytest
from clones import repository_files
from conftest import ROOT
from numerai_rules import csv_refusal
from test_readme_commands import code_commands

from numerai_predict import __version__

pytestmark = pytest.mark.slow

MINORS = [pixi_toml.python_minor(pixi_toml.load(), env) for env in pixi_toml.python_environments(pixi_toml.load())]
PYTHONS = [min(MINORS, key=pixi_toml.version_tuple), max(MINORS, key=pixi_toml.version_tuple)]
DOCS = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
LIVE = os.path.join(ROOT, "examples", "live.parquet")
BENCHMARKS = os.path.join(ROOT, "examples", "live_benchmark_models.parquet")
# A model as a participant pickles it in a notebook: a function of __main__, by value.
MAKE_MODEL = """
import sys, cloudpickle, pandas as pd
def predict(live_features):
    return live_features.filter(like="feature").mean(axis=1).rank(pct=True).to_frame("prediction")
with open(sys.argv[1], "wb") as handle:
    cloudpickle.dump(predict, handle)
"""


def user_env(**env: str) -> dict[str, str]:
    """The environment of a user's shell: nothing of this checkout or its environment on the path."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "INIT_CWD", "VIRTUAL_ENV",
                                                                "CONDA_PREFIX", "PYPI_TWIN")}
    return {**environ, **env}


def run(command: list[str], cwd: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A command in the user's folder."""
    return subprocess.run(command, cwd=cwd, env=user_env(**env), capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> SimpleNamespace:
    """The sdist and the wheel, built from a copy of the checkout (nothing written into it)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in repository_files():
        os.makedirs(source / os.path.dirname(name), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), source / name)
    built = run([*pypi_env.uv(), "build", "--quiet", "--out-dir", str(out)], str(source))
    assert built.returncode == 0, built.stderr
    (wheel,), (sdist,) = glob.glob(str(out / "*.whl")), glob.glob(str(out / "*.tar.gz"))
    return SimpleNamespace(wheel=wheel, sdist=sdist)


def new_venv(folder, minor: str, *requirements: str) -> SimpleNamespace:
    """A fresh virtual environment of Python ``minor`` with ``requirements`` installed by uv."""
    made = run([*pypi_env.uv(), "venv", "--quiet", "--python", pypi_env.find_python(minor), str(folder)], ROOT)
    assert made.returncode == 0, made.stderr
    python = str(folder / "bin" / "python")
    if requirements:
        installed = run([*pypi_env.uv(), "pip", "install", "--quiet", "--python", python, *requirements], ROOT,
                        UV_LINK_MODE="copy")
        assert installed.returncode == 0, installed.stderr
    return SimpleNamespace(python=python, bin=str(folder / "bin"), minor=minor, folder=str(folder))


def user_folder(tmp_path) -> str:
    folder = tmp_path / "user"
    folder.mkdir()
    shutil.copy(LIVE, folder / "live.parquet")
    shutil.copy(BENCHMARKS, folder / "live_benchmark_models.parquet")
    return str(folder)


@pytest.fixture(scope="module", params=PYTHONS)
def base(request, dist, tmp_path_factory) -> SimpleNamespace:
    """pip install numerai-predict (the wheel file): the doctor alone."""
    return new_venv(tmp_path_factory.mktemp(f"base-{request.param}"), request.param, dist.wheel)


@pytest.fixture(scope="module", params=PYTHONS)
def full(request, dist, tmp_path_factory) -> SimpleNamespace:
    """pip install 'numerai-predict[run]' (the wheel file)."""
    return new_venv(tmp_path_factory.mktemp(f"run-{request.param}"), request.param,
                    f"numerai-predict[run] @ file://{dist.wheel}")


def test_the_wheel_holds_the_doctors_data_and_nothing_of_the_tests(dist):
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(f"numerai_predict-{__version__}.dist-info/METADATA").decode()
        entry_points = wheel.read(f"numerai_predict-{__version__}.dist-info/entry_points.txt").decode()
    for minor in MINORS:
        assert f"numerai_predict/environments/py{minor.replace('.', '')}.json" in names
    assert {"numerai_predict/doctor.schema.json", "numerai_predict/allowlist.py", "numerai_predict/api.py",
            "numerai_predict/py.typed", "numerai_predict/round/driver.py"} <= set(names)
    assert all(name.startswith(("numerai_predict/", "numerai_predict-")) for name in names), names
    assert not [name for name in names if "test" in name.lower()]
    assert "numerai-predict = numerai_predict.runner:main" in entry_points
    assert f"Version: {__version__}" in metadata and "Requires-Python: >=3.10" in metadata
    assert re.search(r"^Requires-Dist: pandas.*; extra == \"run\"$", metadata, re.M)
    assert re.search(r"^Requires-Dist: ray.*; extra == \"round\"$", metadata, re.M)
    assert not [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    with tarfile.open(dist.sdist) as sdist:
        members = sdist.getnames()
    assert not [m for m in members if "/tests/" in m] and any(m.endswith("/pyproject.toml") for m in members)


def test_the_base_install_checks_every_pickle_without_pandas(base, tmp_path):
    folder = user_folder(tmp_path)
    where = run([base.python, "-c", "import numerai_predict, sys; print(numerai_predict.__file__); "
                 "import numerai_predict.api; print(sorted({'pandas', 'numpy', 'pyarrow'} & set(sys.modules)))"],
                folder)
    assert where.stdout.splitlines() == [where.stdout.split()[0], "[]"], where.stderr
    assert where.stdout.startswith(base.folder), "the package came from elsewhere than the install"
    assert run([base.python, "-c", "import pandas"], folder).returncode != 0
    version = run([os.path.join(base.bin, "numerai-predict"), "--version"], folder, GIT_REF="abc1234")
    assert version.returncode == 0 and version.stdout.strip() == f"numerai-predict {__version__} (GIT_REF abc1234)"
    shown = run([os.path.join(base.bin, "numerai-predict"), "--check", "--model",
                 os.path.join(ROOT, "tests", "models", "model_3_12.pkl")], folder)
    assert shown.returncode == 0, shown.stderr
    assert "docker_image='Python 3.12'" in shown.stdout
    with open(os.path.join(ROOT, "numerai_predict", "doctor.schema.json")) as handle:
        schema = json.load(handle)
    for minor in MINORS:
        model = os.path.join(ROOT, "tests", "models", f"model_{minor.replace('.', '_')}.pkl")
        result = run([os.path.join(base.bin, "numerai-predict"), "--check", "--json", "--model", model], folder)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        jsonschema.validate(report, schema)
        assert report["python"]["made_with"] == [minor]
        assert report["verdict"]["docker_image"] == f"Python {minor}"
        assert report["verdict"]["environment"] == f"py{minor.replace('.', '')}"


def test_the_base_install_names_the_extra_a_run_needs(base, tmp_path):
    folder = user_folder(tmp_path)
    model = os.path.join(ROOT, "tests", "models", f"model_{base.minor.replace('.', '_')}.pkl")
    result = run([os.path.join(base.bin, "numerai-predict"), "--model", model, "--dataset", "live.parquet"],
                 folder)
    assert result.returncode == 3, result.stderr
    assert "pip install 'numerai-predict[run]'" in result.stderr and "Traceback" not in result.stderr
    script = f"""
import numerai_predict
diagnosis = numerai_predict.check({model!r})
assert diagnosis.docker_image == "Python {base.minor}" and diagnosis.exit_code == 0, diagnosis
try:
    numerai_predict.dry_run(print, None)
except numerai_predict.PredictError as error:
    print(error.exit_code, error.one_line())
"""
    api = run([base.python, "-c", script], folder)
    assert api.returncode == 0, api.stderr
    assert api.stdout.startswith("3 dry_run needs numerai-predict's [run] extra"), api.stdout


def test_the_run_extra_runs_a_model_and_the_api_agrees_with_it(full, tmp_path):
    folder = user_folder(tmp_path)
    made = run([full.python, "-c", MAKE_MODEL, "model.pkl"], folder)
    assert made.returncode == 0, made.stderr
    os.mkdir(os.path.join(folder, "out"))
    result = run([os.path.join(full.bin, "numerai-predict"), "--model", "model.pkl", "--dataset", "live.parquet",
                  "--benchmarks", "live_benchmark_models.parquet", "--output_dir", "out"], folder)
    assert result.returncode == 0, result.stderr
    (csv,) = glob.glob(os.path.join(folder, "out", "live_predictions-*.csv"))
    import pandas as pd

    assert csv_refusal(csv, pd.read_parquet(LIVE).index.astype(str)) is None
    script = f"""
import sys, pandas as pd, numerai_predict
{MAKE_MODEL.split("with open")[0]}
result = numerai_predict.dry_run(predict, pd.read_parquet("live.parquet"))
assert result.docker_image == "Python {full.minor}", result.docker_image
assert numerai_predict.__file__.startswith({full.folder!r}), numerai_predict.__file__
assert result.diagnosis.made_with == ["{full.minor}"] and len(result.predictions) == 500
sys.stdout.buffer.write(result.csv)
"""
    api = subprocess.run([full.python, "-c", script], cwd=folder, env=user_env(), capture_output=True, timeout=600)
    assert api.returncode == 0, api.stderr.decode()
    with open(csv, "rb") as handle:
        assert api.stdout == handle.read(), "dry_run's CSV differs from the runner's for the same function"


@pytest.mark.parametrize("minor", PYTHONS)
def test_every_package_command_in_readme_and_docs_runs_as_written(minor, dist, tmp_path):
    """Each page's `pip install` / `numerai-predict` lines in order, then its ```python blocks, in a
    fresh environment and a folder holding model.pkl (a function pickled by that Python),
    live.parquet and live_benchmark_models.parquet."""
    folder = user_folder(tmp_path)
    venv = new_venv(tmp_path / "venv", minor)
    maker = new_venv(tmp_path / "maker", minor, "cloudpickle", "pandas")
    assert run([maker.python, "-c", MAKE_MODEL, "model.pkl"], folder).returncode == 0
    pages = {path: (package_lines(path), python_blocks(path)) for path in DOCS}
    ran = [line for lines, _ in pages.values() for line in lines]
    assert "pip install numerai-predict" in ran and "numerai-predict --check --model model.pkl" in ran, ran
    for path, (lines, blocks) in pages.items():
        for line in lines:
            result = run(["bash", "-c", as_here(line, venv, dist.wheel)], folder,
                         PATH=venv.bin + os.pathsep + os.environ["PATH"])
            assert result.returncode == 0, f"{os.path.relpath(path, ROOT)}: {line}\n{result.stderr}"
        if blocks:
            result = run([venv.python, "-c", "\n\n".join(blocks)], folder)
            assert result.returncode == 0, f"{os.path.relpath(path, ROOT)}'s python blocks:\n{result.stderr}"


def package_lines(path: str) -> list[str]:
    return [command for _, command in code_commands(path, package=True)]


def python_blocks(path: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", open(path).read(), re.M | re.S)


def as_here(line: str, venv: SimpleNamespace, wheel: str) -> str:
    """A pip line installs the wheel file into ``venv`` (its dependencies from PyPI), as pip would."""
    words = shlex.split(line, comments=True)
    if words[:2] != ["pip", "install"]:
        return line
    specs = [f"numerai-predict{word[len('numerai-predict'):]} @ file://{wheel}" for word in words[2:]]
    return shlex.join([*pypi_env.uv(), "pip", "install", "--quiet", "--python", venv.python, *specs])
