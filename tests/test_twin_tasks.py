"""The PyPI twin's task runner: depends-on across environments, reported environment by environment,
and `run --help` listing the tasks like `pixi task list`. Trivial tasks, no environment built."""

from __future__ import annotations

import re

import pypi_env
import pytest

MANIFEST = {
    "tasks": {
        "ok": {"cmd": "true", "description": "always passes"},
        "bad": {"cmd": "false", "description": "always fails"},
        "all": {"description": "ok and bad everywhere", "depends-on": [
            {"task": "ok", "environment": "a"}, {"task": "bad", "environment": "b"},
            {"task": "ok", "environment": "broken"}, {"task": "ok", "environment": "c"}]},
        "after": {"cmd": "touch ran", "depends-on": [{"task": "bad", "environment": "a"}]},
    },
}


@pytest.fixture
def no_builds(monkeypatch, tmp_path):
    """Every environment is an empty prefix; 'broken' cannot be built."""
    def build(manifest, env):
        if env == "broken":
            raise pypi_env.TwinError("no CPython 3.99 found through pyenv or PATH")
        return str(tmp_path / env)
    monkeypatch.setattr(pypi_env, "build", build)
    monkeypatch.setattr(pypi_env, "workspace_layer", lambda manifest, env, prefix: prefix)
    monkeypatch.setattr(pypi_env, "ROOT", str(tmp_path))
    return tmp_path


def test_a_failing_environment_hides_none_of_the_others(no_builds, capfd):
    code = pypi_env.run_task(MANIFEST, None, "all", [])
    err = capfd.readouterr().err
    assert code == 1
    summary = [re.sub(r" \(\d+ s\)", "", line) for line in err.splitlines()[-3:]]  # each with its time
    assert summary == ["pypi-twin: all: passed: ok [a], ok [c]",
                       "pypi-twin: all: failed: bad [b] (exit 1)",
                       "pypi-twin: all: did not run: ok [broken] (no CPython 3.99 found through pyenv or PATH)"]


def test_a_task_does_not_run_after_a_failed_dependency(no_builds, capfd):
    assert pypi_env.run_task(MANIFEST, "a", "after", []) == 1
    assert not (no_builds / "ran").exists()
    assert "pypi-twin: after: did not run: after [a] (a dependency failed)" in capfd.readouterr().err


def test_all_passing_exits_0(no_builds, capfd):
    manifest = {"tasks": {"ok": "true", "all": {"depends-on": [{"task": "ok", "environment": e} for e in "ab"]}}}
    assert pypi_env.run_task(manifest, None, "all", []) == 0
    assert [re.sub(r" \(\d+ s\)", "", line) for line in capfd.readouterr().err.splitlines()[-3:]] == [
        "pypi-twin: all: passed: ok [a], ok [b]", "pypi-twin: all: failed: none", "pypi-twin: all: did not run: none"]


def test_run_help_lists_the_tasks_with_their_descriptions(capsys):
    with pytest.raises(SystemExit) as exited:
        pypi_env.main(["run", "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "Tasks of pixi.toml:" in out
    assert "  predict " in out and "Run a pickled model" in out and "  test-all " in out
    assert pypi_env.main(["run"]) == 0  # as `pixi run` without a task: the list
    assert "  demo " in capsys.readouterr().out
