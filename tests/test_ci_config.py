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
