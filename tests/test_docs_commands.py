"""Every command in README.md and docs/*.md is run by a test. Three kinds:

- predict, demo and docker commands: tests/test_readme_commands.py runs each as written;
- the package's (`pip install`, `numerai-predict`, ```python blocks): tests/test_package.py;
- the rest: run here as written when they are cheap and read-only (RUN_HERE), or named in
  ELSEWHERE with the test that runs the same command (the whole test suite, an image build, a
  Ray cluster, a benchmark: minutes each, run once by those tests, not again here); NOT_RUN names
  the two image benchmarks no test runs, with the reason.

A command in the docs that none of these names fails, as does a name here no page uses."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest
from conftest import ROOT
from test_readme_commands import DOCUMENTS, code_commands, kind_of, where

#: Run here, in the clone, as written (comment aside): cheap, and they change nothing.
RUN_HERE = {
    "python3 containers/pypi_env.py run --help",
    "python3 containers/parity.py report",
    "python3 containers/pypi_env.py check",
}
IMAGES = "tests/test_workflow_replay.py::test_images_workflow_builds_pushes_merges_pulls_and_tests"
RAY = "tests/test_round.py::test_ray_round_and_a_lost_node"
#: Command as written (comment aside) -> the test that runs it (file::function).
ELSEWHERE = {
    "pixi run test-all": "tests/test_ci_config.py::test_ci_runs_lint_types_and_readmes_test_command (.ci/run)",
    "python3 containers/pypi_env.py run test-all":
        "tests/test_ci_config.py::test_ci_runs_lint_types_and_readmes_test_command (.ci/run)",
    "pixi run -e py311 doctor --model tests/models/model_3_10_legacy.pkl":
        "tests/test_doctor.py::test_readme_shows_the_doctors_real_output",
    "pixi run -e py311 doctor --json --model tests/models/kinds/lambda_3_11.pkl":
        "tests/test_doctor.py::test_readme_shows_the_doctors_real_output",
    "python3 containers/parity.py refresh PATH/TO/numerai-predict":
        "tests/test_parity.py::test_every_upstream_library_is_declared_or_excepted_with_a_reason",
    "python3 containers/pypi_env.py lock [ENV ...]": "tests/test_pypi_env.py::"
        "test_locks_are_hashed_for_linux_x86_64_and_runtime_follows_its_twin (with a scripted uv)",
    "python3 containers/pypi_env.py build [ENV ...]": "tests/test_fresh_machine.py::"
        "test_the_environments_fixture_builds_what_it_is_asked_for",
    "pixi run build-image py312": IMAGES,
    "pixi run build-images": IMAGES,
    "pixi run test-images py312": IMAGES,
    "python3 containers/pypi_env.py run -e py311 test -k upload": "tests/test_pypi_env.py::"
        "test_a_task_runs_in_its_default_environment_and_e_overrides_it",
    "pixi run bench": "tests/test_bench.py::test_bench_smoke_run_prints_the_table_and_writes_every_figure "
        "(the same script on tiny data)",
    "pixi run bench --runs 2 --sizes 1,16": "tests/test_bench.py::"
        "test_bench_smoke_run_prints_the_table_and_writes_every_figure (the same script on tiny data)",
    "pixi run round --manifest round.csv --output_dir round-1220":
        "tests/test_round.py::test_small_round_in_two_environments",
    "python3 ~/numerai-predict/containers/pypi_env.py run round --manifest round.csv --output_dir round-1220":
        "tests/test_round.py::test_small_round_in_two_environments",
    "ray start --head --port 6379 --num-cpus 8": RAY,
    "ray start --address HEAD:6379 --num-cpus 8": RAY,
    "pixi run -e py311 round --manifest round.csv --ray HEAD:6379": RAY,
}
#: Commands no test runs, and why: said here so that a new one cannot slip in unnoticed.
NOT_RUN = {
    "pixi run bench-image py312": "minutes of image measurements; docs/performance.md's figures are its output",
    "pixi run bench --docker only": "the image half of the benchmark: minutes; its figures are in docs/performance.md",
}


def written(command: str) -> str:
    """The command without its trailing comment and padding."""
    return command.split("  #")[0].split(" # ")[0].strip()


def other_commands() -> list[tuple[str, str]]:
    return [(where(path, number), written(command)) for path in DOCUMENTS
            for number, command in code_commands(path) if not kind_of(command)]


def test_every_other_command_is_run_here_or_by_a_named_test():
    found = other_commands()
    assert found, "the docs hold no command beyond predict's: this test reads them wrongly"
    known = RUN_HERE | set(ELSEWHERE) | set(NOT_RUN)
    unknown = [f"{at}: {command}" for at, command in found if command not in known]
    assert not unknown, "commands no test runs (run them here, or name the test):\n" + "\n".join(unknown)
    unused = known - {command for _, command in found}
    assert not unused, f"commands named here that no page holds any more: {sorted(unused)}"


@pytest.mark.parametrize("command", sorted(set(ELSEWHERE.values())))
def test_each_named_test_exists(command):
    test = command.split(" (")[0]
    path, function = test.split("::")
    with open(os.path.join(ROOT, path)) as handle:
        assert f"def {function}(" in handle.read(), f"{test} does not exist"


@pytest.mark.parametrize("command", sorted(RUN_HERE))
def test_cheap_commands_run_as_written_in_the_clone(command):
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "INIT_CWD", "PYPI_TWIN")}
    result = subprocess.run(shlex.split(command), cwd=ROOT, env=environ, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert result.stdout.strip(), f"{command} printed nothing"
