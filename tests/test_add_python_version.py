"""The skill "add a Python version", proved on a copy of this repository: adding
one environment to pixi.toml is the only hand edit; everything else follows from
pixi.toml's list, and what is left is generated (its locks, test pickles and the pickle doctor's signs)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

from conftest import ROOT

NEW = "py315"


def tracked_files() -> list[str]:
    """The repository as a clone has it (untracked work is not part of the proof)."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in listed.splitlines() if os.path.exists(os.path.join(ROOT, f))]


def git(copy, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", *args], cwd=copy, env=env, capture_output=True, text=True, check=True).stdout


def add_python(manifest: str, env: str) -> str:
    """What a maintainer writes: a feature pinning the Python, its two environments,
    and its two entries in test-all (installed first, then tested)."""
    minor = f"3.{env[3:]}"
    manifest = manifest.replace("# Test tools stay out of the images", (
        f'[feature.{env}.dependencies]\npython = "{minor}.*"\n\n# Test tools stay out of the images'))
    manifest = re.sub(r"(py314-runtime = .*\n)", (
        rf'\1{env} = {{ features = ["{env}", "test"], solve-group = "{env}" }}\n'
        rf'{env}-runtime = {{ features = ["{env}"], solve-group = "{env}" }}\n'), manifest)
    manifest = re.sub(r'(    \{ task = "env-ready", environment = "py314" \},\n)',
                      rf'\1    {{ task = "env-ready", environment = "{env}" }},\n', manifest)
    return re.sub(r'(    \{ task = "test", environment = "py314" \},\n)',
                  rf'\1    {{ task = "test", environment = "{env}" }},\n', manifest)


def run(copy, *args: str) -> subprocess.CompletedProcess:
    # The proof's own pytest run must not inherit a caller's selection (PYTEST_ADDOPTS).
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    return subprocess.run([sys.executable, *args], cwd=copy, capture_output=True, text=True, env=env)


def test_adding_a_python_needs_only_pixi_toml_then_generated_locks_and_pickles(tmp_path):
    copy = tmp_path / "repo"
    for name in tracked_files():
        os.makedirs(copy / os.path.dirname(name), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), copy / name)
    git(copy, "init", "-q")
    git(copy, "add", "-A")
    git(copy, "commit", "-qm", "copy")

    manifest = (copy / "pixi.toml").read_text()
    (copy / "pixi.toml").write_text(add_python(manifest, NEW))

    # The workflows' matrices, the image names and the test-all task follow.
    listed = json.loads(run(copy, "containers/manifest.py", "pythons").stdout)
    assert listed[-1] == NEW
    image = run(copy / "containers", "-c", "import images, manifest; "
                      f"print(images.image_name(manifest.load(), '{NEW}'))").stdout.strip()
    assert image == "numerai_predict_py_3_15"

    # What is left is generated: the PyPI locks ...
    check = run(copy, "containers/pypi_env.py", "check")
    assert check.returncode == 1 and f"stale PyPI locks: {NEW}, {NEW}-runtime " in check.stderr

    # ... and the test pickles and the doctor's signs: the consistency tests fail on exactly those.
    report = tmp_path / "report.xml"
    run(copy, "-m", "pytest", "-p", "no:cacheprovider", "tests/test_manifest.py", "tests/test_ci_config.py",
        "tests/test_models.py::test_every_python_has_both_pickles",
        "tests/test_doctor.py::test_every_python_environment_has_its_signs", f"--junitxml={report}")
    cases = ET.parse(report).getroot().iter("testcase")
    failed = sorted(c.get("name") for c in cases if c.find("failure") is not None or c.find("error") is not None)
    assert failed == ["test_every_python_environment_has_its_signs", "test_every_python_has_both_pickles",
                      "test_pypi_locks_are_fresh"]

    # Until make-signs runs in py315, the doctor reports a 3.15 pickle "made with an unknown Python" and
    # refuses it (tests/test_doctor.py::test_a_python_missing_from_the_data_is_reported_unknown).

    # And pixi.toml was the only file edited by hand.
    assert git(copy, "status", "--porcelain").split() == ["M", "pixi.toml"]
