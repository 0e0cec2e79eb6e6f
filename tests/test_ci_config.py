"""Workflows and the Dockerfile, linted offline: actionlint, zizmor and hadolint."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

WORKFLOWS = sorted(glob.glob(os.path.join(ROOT, ".github", "workflows", "*.yml")))
DOCKERFILE = os.path.join(ROOT, "containers", "Dockerfile")


def tool(name: str) -> str:
    """The linter installed beside this Python (the environment's bin), else on PATH."""
    path = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: it comes with the test feature of pixi.toml")
    return path


def test_workflows_exist():
    assert {os.path.basename(w) for w in WORKFLOWS} >= {"tests.yml", "images.yml", "lock.yml"}


def test_actionlint_finds_nothing():
    result = subprocess.run([tool("actionlint"), *WORKFLOWS], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing():
    result = subprocess.run([tool("zizmor"), "--offline", os.path.join(ROOT, ".github", "workflows")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_nothing():
    result = subprocess.run([tool("hadolint"), DOCKERFILE], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=os.path.basename)
def test_actions_are_pinned_by_commit(path):
    with open(path) as handle:
        uses = re.findall(r"uses:\s*(\S+)", handle.read())
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", u) for u in uses), uses


@pytest.mark.parametrize("name", ["tests.yml", "images.yml"])
def test_workflow_matrices_come_from_pixi_toml(name):
    """Every per-Python matrix is pixi.toml's list, read by the `pythons` job: adding
    an environment to pixi.toml adds it to CI and to the published images."""
    with open(os.path.join(ROOT, ".github", "workflows", name)) as handle:
        workflow = yaml.safe_load(handle)
    steps = workflow["jobs"]["pythons"]["steps"]
    assert any("containers/manifest.py pythons" in step.get("run", "") for step in steps)
    matrices = [job["strategy"]["matrix"] for job in workflow["jobs"].values() if "strategy" in job]
    assert matrices
    for matrix in matrices:
        assert matrix["environment"] == "${{ fromJSON(needs.pythons.outputs.list) }}"


def test_pythons_command_lists_pixi_toml_environments():
    import json

    import manifest as pixi_toml

    result = subprocess.run([sys.executable, os.path.join(ROOT, "containers", "manifest.py"), "pythons"],
                            capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == pixi_toml.python_environments(pixi_toml.load())


def repository_text_files() -> dict[str, str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    texts = {}
    for name in listed:
        if name.endswith((".py", ".toml", ".yml", ".cfg")) or name in (".ci/run", "containers/Dockerfile"):
            with open(os.path.join(ROOT, name), errors="replace") as handle:
                texts[name] = handle.read()
    return texts


def test_nothing_in_the_repository_reads_outside_it():
    """A GitHub checkout has nothing beside it: no path climbs out of the repository."""
    # ([/] so that this pattern does not find itself)
    climbing = re.compile(r"""\.\.[/]shared|["']\.\.["']\s*,\s*["']shared|/work[/]shared|\.\.[/]\.\.[/]""")
    offenders = [name for name, text in repository_text_files().items() if climbing.search(text)]
    assert offenders == []


def test_no_sys_path_patching():
    """numerai_predict and predict are installed (pyproject.toml); tests and tools find
    their helpers through pytest's pythonpath or their own folder."""
    offenders = [name for name, text in repository_text_files().items()
                 if re.search(r"sys\.path\.(insert|append)|sys\.path\s*=", text)]
    assert offenders == []


def test_pytest_refuses_unknown_markers(tmp_path):
    """--strict-markers and --strict-config from pyproject.toml are in force."""
    (tmp_path / "test_typo.py").write_text("import pytest\n\n@pytest.mark.slwo\ndef test_x():\n    pass\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-c", os.path.join(ROOT, "pyproject.toml"),
                             "--rootdir", str(tmp_path), str(tmp_path / "test_typo.py")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "'slwo' not found in `markers`" in result.stdout + result.stderr


def test_type_check_is_strict_on_the_runner():
    import manifest as pixi_toml

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        mypy = pixi_toml.tomllib.load(handle)["tool"]["mypy"]
    assert mypy["strict"] is True and set(mypy["files"]) >= {"predict.py", "numerai_predict"}
    assert pixi_toml.load()["tasks"]["typecheck"]["cmd"] == "mypy"


def test_ci_runs_lint_types_and_readmes_test_command():
    """.ci/run and tests.yml run lint and the type check; .ci/run calls README's test command."""
    with open(os.path.join(ROOT, ".ci", "run")) as handle:
        commands = [line.strip() for line in handle if line.strip().startswith("twin ")]
    assert {"twin run lint", "twin run typecheck", "twin run test-all"} <= set(commands)
    with open(os.path.join(ROOT, "README.md")) as handle:
        assert "python3 containers/pypi_env.py run test-all" in handle.read()
    lint = pixi_toml_tasks()["lint"]["cmd"]
    assert all(tool in lint for tool in ("ruff check", "actionlint", "zizmor", "hadolint", "requires-pixi"))


def pixi_toml_tasks() -> dict:
    import manifest as pixi_toml

    return pixi_toml.load()["tasks"]


def test_the_pixi_path_does_not_depend_on_the_twin():
    """images.py and manifest.py import no part of the PyPI twin (it depends on them)."""
    probe = "import sys, images, manifest; print('pypi_env' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=os.path.join(ROOT, "containers"),
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
