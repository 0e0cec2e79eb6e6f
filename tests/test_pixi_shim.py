"""The pixi shim finds its manifest as pixi does (issue 12): `--manifest-path`, else pixi.toml from
the current folder upwards, else $PIXI_PROJECT_MANIFEST; nothing found is pixi's error, and a
manifest other than its own checkout's is refused. Tasks run in the workspace root with the
caller's folder as INIT_CWD. Nothing is built: the task's command is caught before it runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pixi_shim
import pypi_env
import pytest
from conftest import ROOT

SHIM = os.path.join(ROOT, "containers", "pixi_shim.py")
MANIFEST = os.path.join(ROOT, "pixi.toml")


@pytest.fixture
def ran(monkeypatch):
    """What each `pixi run` would execute: (cwd, INIT_CWD, environment, argv), nothing built."""
    seen: list[tuple[str, str, str, list[str]]] = []

    def fake_run(argv, cwd=None, env=None, **kwargs):
        seen.append((cwd, env["INIT_CWD"], env["PIXI_ENVIRONMENT_NAME"], argv))
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(pypi_env, "build", lambda manifest, env: f"/envs/{env}")
    monkeypatch.setattr(pypi_env, "workspace_layer", lambda manifest, env, prefix: prefix)
    monkeypatch.setattr(pypi_env.subprocess, "run", fake_run)
    monkeypatch.delenv("INIT_CWD", raising=False)
    monkeypatch.delenv("PIXI_PROJECT_MANIFEST", raising=False)
    return seen


def shim(*args: str, cwd, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("INIT_CWD", "PIXI_PROJECT_MANIFEST")}
    return subprocess.run([sys.executable, SHIM, *args], cwd=cwd, env={**environ, **env},
                          capture_output=True, text=True, timeout=120)


def test_outside_any_workspace_it_fails_as_pixi_does(tmp_path):
    result = shim("run", "-e", "py312", "predict", "--model", "model.pkl", cwd=tmp_path)
    assert result.returncode == 1
    assert f"could not find pixi.toml or pyproject.toml with tool.pixi at directory {tmp_path}" in result.stderr
    assert "pypi-twin:" not in result.stderr  # nothing was run
    # pixi's --manifest-path belongs to the subcommand: before it, pixi rejects it too.
    assert shim("--manifest-path", MANIFEST, "run", "predict", cwd=tmp_path).returncode == 2


def test_a_missing_manifest_path_is_an_error(tmp_path):
    result = shim("run", "--manifest-path", str(tmp_path / "pixi.toml"), "demo", cwd=tmp_path)
    assert result.returncode == 1 and f"could not find '{tmp_path / 'pixi.toml'}'" in result.stderr


def test_another_workspace_is_refused(tmp_path):
    (tmp_path / "pixi.toml").write_text('[workspace]\nname = "other"\n')
    (tmp_path / "sub").mkdir()
    for result in (shim("run", "demo", cwd=tmp_path / "sub"),
                   shim("run", "--manifest-path", str(tmp_path), "demo", cwd=ROOT)):
        assert result.returncode == 1
        assert f"the manifest is {tmp_path / 'pixi.toml'}, but this shim only serves" in result.stderr


@pytest.mark.parametrize("given", [MANIFEST, ROOT, "~"])
def test_manifest_path_runs_the_task_from_any_folder_with_the_callers_folder(given, ran, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if given == "~":  # as README writes it: ~/numerai-predict/pixi.toml, with HOME above the clone
        monkeypatch.setenv("HOME", os.path.dirname(ROOT))
        given = os.path.join("~", os.path.basename(ROOT), "pixi.toml")
    for argv in (["run", "--manifest-path", given, "-e", "py311", "predict", "--model", "model.pkl"],
                 ["run", "-e", "py311", "-m", given, "predict", "--model", "model.pkl"]):
        assert pixi_shim.main(argv) == 0
        cwd, init_cwd, env, command = ran.pop()
        assert (cwd, init_cwd, env) == (ROOT, str(tmp_path), "py311")
        assert command[-2:] == ["--model", "model.pkl"]


def test_after_the_task_manifest_path_is_the_tasks_argument(ran, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert pixi_shim.main(["run", "predict", "--manifest-path", "x"]) == 0
    assert ran[-1][-1][-2:] == ["--manifest-path", "x"]


def test_a_subfolder_of_the_checkout_finds_its_manifest(ran, monkeypatch):
    folder = os.path.join(ROOT, "tests", "models")
    monkeypatch.chdir(folder)
    assert pixi_shim.main(["run", "-e", "py311", "predict", "--model", "model_3_11.pkl"]) == 0
    assert ran[-1][:3] == (ROOT, folder, "py311")
    # INIT_CWD already set (a task calling pixi) is kept, as before.
    monkeypatch.setenv("INIT_CWD", "/somewhere")
    assert pixi_shim.main(["run", "predict"]) == 0
    assert ran[-1][1] == "/somewhere"


def test_pixi_project_manifest_is_the_last_resort(ran, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIXI_PROJECT_MANIFEST", MANIFEST)
    assert pixi_shim.main(["run", "predict"]) == 0
    assert ran[-1][:2] == (ROOT, str(tmp_path))
    assert pixi_shim.find_manifest(None, ROOT) == MANIFEST  # a manifest found by the search wins
