"""The images, run as Numerai runs them: offline, read-only, as a non-root user.

Run by `pixi run test-images [ENV ...]` (containers/images.py test) after the
images were built; IMAGE_ENVS names the environments to check. containers/ is on
sys.path through pyproject.toml's pytest `pythonpath`.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess

import images
import manifest as pixi_toml
import numerai_rules
import parity
import pytest

ROOT = images.ROOT

MANIFEST = pixi_toml.load()
ENVS = [e for e in os.environ.get("IMAGE_ENVS", "").split(",") if e] or images.python_envs(MANIFEST)
USER = "10001:10001"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([images.docker(), *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module", params=ENVS)
def image(request):
    """The env's image as built by `build-image`; missing is a failure, not a skip."""
    name = f"{images.image_name(MANIFEST, request.param)}:latest"
    if docker("image", "inspect", name, check=False).returncode:
        pytest.fail(f"{name} does not exist: run `pixi run build-image {request.param}` first")
    return request.param, name


def tag(env: str) -> str:
    return pixi_toml.python_tag(MANIFEST, env)


def run_in_image(name: str, model: str, out: str, *extra: str) -> subprocess.CompletedProcess:
    """predict.py in the container: no network, read-only root, tmpfs /tmp, inputs read-only."""
    return docker("run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp", "--user", USER,
                  "-v", f"{os.path.join(ROOT, 'tests', 'models')}:/models:ro",
                  "-v", f"{os.path.join(ROOT, 'examples')}:/data:ro", "-v", f"{out}:/out",
                  name, "--model", f"/models/{model}", "--dataset", "/data/live.parquet",
                  "--benchmarks", "/data/live_benchmark_models.parquet", "--output_dir", "/out", *extra,
                  check=False)


def run_locally(env: str, model: str, out: str) -> subprocess.CompletedProcess:
    """The same run outside Docker, with the same environment."""
    python = os.path.join(images.local_prefix(MANIFEST, env), "bin", "python")
    return subprocess.run([python, "predict.py", "--model", os.path.join(ROOT, "tests", "models", model),
                           "--dataset", os.path.join(ROOT, "examples", "live.parquet"),
                           "--benchmarks", os.path.join(ROOT, "examples", "live_benchmark_models.parquet"),
                           "--output_dir", out], cwd=ROOT, capture_output=True, text=True)


def writable_dir(tmp_path, name: str) -> str:
    folder = tmp_path / name
    folder.mkdir()
    folder.chmod(0o777)  # the container's non-root user writes here
    return str(folder)


def only_csv(folder: str) -> bytes:
    (path,) = glob.glob(os.path.join(folder, "live_predictions-*.csv"))
    assert numerai_rules.csv_refusal(path) is None  # Numerai's own rules (numerai-tools) accept it
    with open(path, "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("suffix", ["", "_legacy"], ids=["two-arguments", "legacy"])
def test_test_pickle_gives_the_same_csv_as_a_local_run(image, tmp_path, suffix):
    env, name = image
    model = f"model_{tag(env)}{suffix}.pkl"
    in_docker, local = writable_dir(tmp_path, "docker"), writable_dir(tmp_path, "local")
    result = run_in_image(name, model, in_docker, "--report", "/out/report.json")
    assert result.returncode == 0, result.stderr
    assert run_locally(env, model, local).returncode == 0
    assert only_csv(in_docker) == only_csv(local)
    with open(os.path.join(in_docker, "report.json")) as handle:
        assert json.load(handle)["python"] == pixi_toml.python_minor(MANIFEST, env)


def test_first_log_line_names_the_git_ref(image, tmp_path):
    env, name = image
    ref = docker("image", "inspect", "-f", "{{ index .Config.Labels \"org.opencontainers.image.revision\" }}",
                 name).stdout.strip()
    result = run_in_image(name, f"model_{tag(env)}.pkl", writable_dir(tmp_path, "out"))
    assert f"Running numerai-predict:{ref} Python {pixi_toml.python_minor(MANIFEST, env)}" in result.stderr


def test_pickle_from_another_python_is_explained_in_the_image(image, tmp_path):
    env, name = image
    other = "3_10" if tag(env) != "3_10" else "3_11"
    result = run_in_image(name, f"model_{other}.pkl", writable_dir(tmp_path, "out"))
    assert result.returncode == 12
    assert f"compiled by Python {other.replace('_', '.')}" in result.stderr
    # The footer reproduces it where it can run: the pickle's own Python, its environment and image.
    assert f"pixi run -e py{other.replace('_', '')} predict" in result.stderr
    assert f"numerai_predict_py_{other}:" in result.stderr


def test_the_pickle_doctor_works_in_the_image(image, tmp_path):
    """--check in the image, offline and read-only: its data (every environment's signs) ships with it."""
    env, name = image
    other = "3_10" if tag(env) != "3_10" else "3_11"
    result = run_in_image(name, f"model_{other}.pkl", writable_dir(tmp_path, "out"), "--check", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["python"]["made_with"] == [other.replace("_", ".")]
    assert report["verdict"]["environment"] == f"py{other.replace('_', '')}"
    assert report["python"]["this"] == pixi_toml.python_minor(MANIFEST, env) and not report["python"]["fits_this"]


def test_oci_labels(image):
    env, name = image
    labels = json.loads(docker("image", "inspect", "-f", "{{ json .Config.Labels }}", name).stdout)
    assert labels["org.numerai.predict.environment"] == f"{env}-runtime"
    assert labels["org.numerai.predict.python-version"] == pixi_toml.python_minor(MANIFEST, env)
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert_revision_is_the_built_ref(env, name, labels["org.opencontainers.image.revision"])


def assert_revision_is_the_built_ref(env: str, name: str, revision: str) -> None:
    """The revision label is the GIT_REF the image was built with: whatever form CI
    gives (a 40- or 12-character sha, a tag-like ref, `dev` without git), the same
    string tags the image, as images.py build tags :{git ref} and pulls :{git sha}."""
    assert revision not in ("", "unknown", "latest", "stable"), f"GIT_REF was not set: {revision!r}"
    tags = json.loads(docker("image", "inspect", "-f", "{{ json .RepoTags }}", name).stdout)
    assert f"{images.image_name(MANIFEST, env)}:{revision}" in tags, (revision, tags)
    # A sha names a commit of this repository (a shallow checkout holds at least its own).
    if re.fullmatch(r"[0-9a-f]{7,40}", revision) and os.path.exists(os.path.join(ROOT, ".git")):
        found = subprocess.run(["git", "cat-file", "-e", f"{revision}^{{commit}}"], cwd=ROOT, capture_output=True)
        assert found.returncode == 0, f"{revision} is no commit of this repository"


def test_runs_as_non_root_by_default(image):
    _, name = image
    assert docker("run", "--rm", "--network", "none", "--entrypoint", "id", name, "-u").stdout.strip() == "10001"


def test_image_holds_no_build_tools_tests_or_caches(image):
    """Base + environment + predict.py: no compilers, package managers, tests or caches."""
    _, name = image
    probe = ("for tool in gcc cc g++ make pip pip3 pixi conda uv; do command -v $tool; done; "
             "ls -A /opt/numerai-predict; ls -d /root/.cache /tmp/.cache /opt/numerai-predict/tests 2>/dev/null")
    result = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", name, "-c", probe, check=False)
    assert sorted(result.stdout.split()) == [".pixi", "numerai_predict", "predict.py"], result.stdout


def test_bytecode_is_precompiled(image):
    """Every module has its bytecode: nothing is compiled at start-up (a read-only
    container could not write it anyway). Only files this Python cannot compile
    (test files written for newer Pythons) may lack it."""
    _, name = image
    probe = ("import importlib.util, pathlib, sys\n"
             "files = list(pathlib.Path(sys.prefix, 'lib').rglob('*.py'))\n"
             "missing = [f for f in files if not pathlib.Path(importlib.util.cache_from_source(f)).exists()]\n"
             "print(len(files), len(missing), *missing[:5])\n")
    result = docker("run", "--rm", "--network", "none", "--read-only", "--entrypoint", "python", name, "-c", probe)
    total, missing, *examples = result.stdout.split()
    assert int(total) > 10_000
    assert int(missing) <= int(total) // 1000, examples


def run_hostile(env: str, name: str, model: object, tmp_path, *extra: str,
                options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """A hostile model (tests/hostile_models.py, cloudpickled by this Python) run as Numerai runs it
    (``options``: docker run's own, before the image)."""
    import sys

    import hostile_models

    if tag(env) != f"3_{sys.version_info[1]}":
        pytest.skip(f"the hostile pickle is made by Python 3.{sys.version_info[1]}, not {env}'s")
    out = writable_dir(tmp_path, "out")
    with open(os.path.join(out, "hostile.pkl"), "wb") as handle:
        handle.write(hostile_models.cloudpickle.dumps(model))
    return docker("run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp", "--user", USER, *options,
                  "-v", f"{os.path.join(ROOT, 'examples')}:/data:ro", "-v", f"{out}:/out", name,
                  "--model", "/out/hostile.pkl", "--dataset", "/data/live.parquet",
                  "--benchmarks", "/data/live_benchmark_models.parquet", "--output_dir", "/out",
                  "--report", "/out/report.json", *extra, check=False)


def test_memory_limit_holds_where_namespaces_are_refused(image, tmp_path):
    """Docker's seccomp refuses namespaces: the log says --network none is the isolation, and
    --max-memory still stops the model's processes (exit 33)."""
    import hostile_models

    env, name = image
    result = run_hostile(env, name, hostile_models.allocates(600), tmp_path, "--max-memory", "300m")
    assert result.returncode == 33, result.stderr
    assert "over --max-memory 300 MiB" in result.stderr
    assert "network: not isolated by numerai-predict (namespaces refused" in result.stderr
    assert "the container's --network none is the isolation" in result.stderr
    with open(os.path.join(tmp_path, "out", "report.json")) as handle:
        isolation = json.load(handle)["isolation"]
    assert isolation["peak_memory_bytes"] > 300 << 20
    assert isolation["secrets"].startswith("runner non-dumpable")


def test_secrets_and_sockets_hold_where_namespaces_are_refused(image, tmp_path):
    """Non-root (uid 10001), no namespaces (Docker's seccomp): what keeps the runner's environment from
    the model is its allowlist and the runner's non-dumpable flag; the seccomp filter still applies."""
    import hostile_models

    env, name = image
    marker = "image-secret-" + os.urandom(4).hex()
    result = run_hostile(env, name, hostile_models.reads_secrets(marker), tmp_path,
                         options=("-e", f"DATABASE_URL={marker}"))
    assert result.returncode == 0, result.stderr
    assert "SECRETS FOUND []" in result.stderr
    assert "filesystem: no mount namespace of its own (namespaces refused)" in result.stderr
    assert ("system_calls: no Unix sockets (socket(AF_UNIX) refused); no new namespaces; CPU affinity fixed"
            in result.stderr)


def test_timeout_holds_in_the_image(image, tmp_path):
    import hostile_models

    env, name = image
    result = run_hostile(env, name, hostile_models.sleeps_with_grandchild, tmp_path, "--timeout", "3")
    assert result.returncode == 32, result.stderr
    assert "the model did not finish within --timeout 3 s" in result.stderr


#: The module each package of pixi.toml's environments provides: a package missing here fails the
#: test below, so a new framework is added to what every image is checked to import.
MODULES = {"pandas": "pandas", "numpy": "numpy", "pyarrow": "pyarrow", "polars": "polars", "scipy": "scipy",
           "scikit-learn": "sklearn", "lightgbm": "lightgbm", "py-xgboost": "xgboost", "catboost": "catboost",
           "pytorch": "torch", "keras": "keras", "onnx": "onnx", "onnxruntime": "onnxruntime",
           "cloudpickle": "cloudpickle", "joblib": "joblib", "statsmodels": "statsmodels", "requests": "requests",
           "tenacity": "tenacity", "tqdm": "tqdm", "tensorflow-cpu": "tensorflow", "tensorflow": "tensorflow",
           "numerapi": "numerapi", "numerai-tools": "numerai_tools", "numerblox": "numerblox",
           # the libraries of numerai-predict's images (containers/parity.toml), by pixi.toml's names
           **parity.read()["modules"], "huggingface_hub": "huggingface_hub", "ml_dtypes": "ml_dtypes",
           "tf-nightly": "tensorflow"}
NO_MODULE = {"python", "libprotobuf"}  # the interpreter, and a C++ library


def image_modules(env: str) -> list[str]:
    """Every package of the env's runtime environment on this platform, as modules (the PyPI
    twin's images go without what [tool.pypi-twin.skip] names for the env)."""
    platform = {"x86_64": "linux-64", "aarch64": "linux-aarch64"}[os.uname().machine]
    runtime = f"{env}-runtime"
    packages = {**pixi_toml.merged(MANIFEST, runtime, "dependencies", platform),
                **pixi_toml.merged(MANIFEST, runtime, "pypi-dependencies", platform)}
    skipped = {name for name, envs in MANIFEST["tool"]["pypi-twin"]["skip"].items() if env in envs} \
        if os.environ.get("PYPI_TWIN") else set()
    unknown = sorted(set(packages) - set(MODULES) - NO_MODULE)
    assert not unknown, f"add the modules of {unknown} to MODULES"
    # ... and everything numerai-predict's image for this Python carries (the parity test's list)
    upstream = parity.expected_modules(parity.read(), env, twin=bool(os.environ.get("PYPI_TWIN")))
    return sorted({MODULES[p] for p in packages if p not in NO_MODULE | skipped} | set(upstream.values()))


def test_image_imports_every_framework(image):
    """Nothing the image leaves out (headers, test suites, static libraries, CUDA) is needed to
    import any package of pixi.toml, read-only, offline, as the non-root user."""
    env, name = image
    modules = image_modules(env)
    assert {"pandas", "lightgbm", "xgboost", "sklearn", "catboost"} <= set(modules)
    check = ("import importlib, sys\nfailed = []\nfor m in sys.argv[1:]:\n    try:\n"
             "        importlib.import_module(m)\n    except Exception as exc:\n"
             "        failed.append(f'{m}: {type(exc).__name__}: {exc}')\nprint('\\n'.join(failed))\n"
             "sys.exit(1 if failed else 0)")
    result = docker("run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp", "--user", USER,
                    "-e", "TF_CPP_MIN_LOG_LEVEL=2", "--entrypoint", "python", name, "-c", check, *modules,
                    check=False)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-2000:]}"
