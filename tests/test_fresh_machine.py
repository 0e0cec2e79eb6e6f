"""What keeps test-all honest on a fresh and on a busy machine (issue 17): the fixture that builds
the environments a test asks for, process identity beyond a pid, the busy-machine runner, and the
CI script's and Dockerfile's promises that no test would otherwise notice breaking."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import conftest
import hostile_models
import manifest as pixi_toml
import pytest
from conftest import ROOT
from test_isolation import alive


def fake_tool(tmp_path, code: int) -> list[str]:
    """A stand-in for pixi / the twin that records its arguments and exits ``code``."""
    script = tmp_path / "tool.py"
    script.write_text(f"import sys\nopen({str(tmp_path / 'ran')!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
                      f"print('building...')\nsys.exit({code})\n")
    return [sys.executable, str(script)]


def test_the_environments_fixture_builds_what_it_is_asked_for(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "BUILT", set())
    monkeypatch.setattr(conftest, "project_tool", lambda: fake_tool(tmp_path, 0))
    conftest.build_environment("py399")
    conftest.build_environment("py399")  # once a session
    assert (tmp_path / "ran").read_text() == "build py399\n"


def test_an_environment_that_cannot_be_built_fails_the_test_with_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "BUILT", set())
    monkeypatch.setattr(conftest, "project_tool", lambda: fake_tool(tmp_path, 2))
    with pytest.raises(pytest.fail.Exception, match=r"environment py399 is needed and could not be built; "
                                                    r"run `.*tool.py build py399`"):
        conftest.build_environment("py399")


def test_a_process_is_its_pid_and_its_start_time():
    """A pid reused by another process is not the process the test saw."""
    me = (os.getpid(), hostile_models.start_time(os.getpid()))
    assert alive(me)
    assert not alive((me[0], me[1] + 1))
    assert not alive((4_000_000, me[1]))  # over any pid_max: no such process


def test_busy_runs_one_burner_per_cpu_beside_the_command_and_keeps_its_exit_code():
    probe = ("import os, sys\n"
             "siblings = [p for p in os.listdir('/proc') if p.isdigit() and p != str(os.getpid())]\n"
             "def burner(pid):\n"
             "    try:\n"
             "        stat = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()\n"
             "        return int(stat[1]) == os.getppid() and 'sum(range' in open(f'/proc/{pid}/cmdline').read()\n"
             "    except OSError:\n"
             "        return False\n"
             "print(sum(map(burner, siblings)))\n"
             "sys.exit(3)\n")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "busy.py"), sys.executable, "-c", probe],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert int(result.stdout) == len(os.sched_getaffinity(0))
    assert re.search(r"busy: the load took \d+ CPU-s beside the command \(exit 3\)", result.stderr)


def test_test_busy_is_the_test_task_under_load():
    tasks = pixi_toml.load()["tasks"]
    assert tasks["test-busy"]["cmd"] == "python tests/busy.py " + tasks["test"]["cmd"]


def test_ci_builds_in_a_folder_of_its_own_and_checks_what_the_tests_leave():
    with open(os.path.join(ROOT, ".ci", "run")) as handle:
        script = handle.read()
    first_twin = script.index("\ntwin ")
    exported = re.search(r'export PYPI_TWIN_ENVS="\$ci_envs"', script)
    assert exported and exported.start() < first_twin, "environments must go to CI's own empty folder"
    assert re.search(r"ci_envs=\$\(mktemp -d ", script) and 'rm -rf "$ci_envs"' in script
    assert script.index("before=$(") < script.index("twin run test-all") < script.index("after=$(")
    assert "exit 1" in script[script.index("after=$("):]
    assert "pkill" not in script  # never stops what it did not start


def test_the_commit_is_the_images_last_layer():
    """A build of another commit reuses every layer: GIT_REF is used by nothing before the end."""
    with open(os.path.join(ROOT, "containers", "Dockerfile")) as handle:
        final_stage = handle.read().rsplit("\nFROM ", 1)[1].splitlines()
    first_use = next(i for i, line in enumerate(final_stage) if "GIT_REF" in line)
    later = [line for line in final_stage[first_use:] if re.match(r"(RUN|COPY|ADD|WORKDIR|USER)\b", line)]
    assert later == [], later


def test_images_pass_the_one_pixi_version(monkeypatch):
    import images

    ran = []
    monkeypatch.setattr(images, "build_context", lambda manifest, env: ("/nonexistent-context", "pixi"))
    monkeypatch.setattr(images.subprocess, "run", lambda command, **kw: ran.append(command) or
                        subprocess.CompletedProcess(command, 1))
    with pytest.raises(images.ImageError):
        images.build(pixi_toml.load(), "py312")
    (build,) = [command for command in ran if "build" in command]
    assert f"PIXI_VERSION={pixi_toml.pixi_version(pixi_toml.load())}" in build


def test_the_pixi_version_output_is_what_the_workflows_read(tmp_path, monkeypatch):
    output = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    assert pixi_toml.main(["pixi-version"]) == 0
    assert output.read_text() == f"version={pixi_toml.pixi_version(pixi_toml.load())}\n"


def test_readme_leads_with_the_cards_commands():
    """The first code block is the card's three commands, as written there (README's commands run in
    the slow suite; this check runs everywhere)."""
    from test_readme_commands import CARD, code_commands

    first_block: list[tuple[int, str]] = []
    for number, command in code_commands():
        if first_block and number > first_block[-1][0] + 1:
            break
        first_block.append((number, command))
    assert [command for _, command in first_block] == CARD
    assert "pixi run test-all" in CARD  # .ci/run runs its twin (test_ci_config)
