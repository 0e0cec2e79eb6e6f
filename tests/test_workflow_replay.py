"""The GitHub workflows, replayed here on a fresh copy of the repository with
nothing beside it, as a push to main would run them (tests/workflow_replay.py),
with `pixi` answered by the PyPI twin (containers/pixi_shim.py).

The images workflow pushes to a real registry (Debian's docker-registry) on
127.0.0.1, pulls back what it pushed and tests it; it needs a Docker engine and
runs, like the whole module, in one environment only (marker `slow`, task test-slow).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import time

import manifest as pixi_toml
import pytest
import workflow_replay
from clones import fresh_clone

from numerai_predict import __version__

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A minute per environment: the slow suite, run in one environment (test-slow).
pytestmark = pytest.mark.slow


def runner_path(shim_dir: str) -> str:
    """PATH as a runner has it: the pixi shim first, and none of the twin environment this
    test runs in, nor its layer in the checkout (a runner's python3 is the system's)."""
    ours = [p for p in (os.environ.get("CONDA_PREFIX"), os.path.join(ROOT, ".pixi")) if p]
    parts = [p for p in os.environ["PATH"].split(os.pathsep) if not p.startswith(tuple(ours))]
    return os.pathsep.join([shim_dir, *parts])


@pytest.fixture(scope="module")
def push(tmp_path_factory):
    """A fresh clone (nothing beside it) and a replay of a push of it to main."""
    folder = tmp_path_factory.mktemp("replay")
    repo, sha = fresh_clone(str(folder))
    shim_dir = folder / "bin"
    shim_dir.mkdir()
    os.symlink(os.path.join(repo, "containers", "pixi_shim.py"), shim_dir / "pixi")
    temp = folder / "runner-temp"
    temp.mkdir()
    replay = workflow_replay.Replay(workspace=repo, temp=str(temp), path=runner_path(str(shim_dir)), sha=sha)
    return replay


def outcomes(replay, workflow: str) -> dict[tuple[str, str], str]:
    return {(r.job, r.step): r.outcome for r in replay.results if r.workflow == workflow}


def explain(replay) -> str:
    return "\n".join(r.line() for r in replay.results) + "\n\n" + "\n".join(replay.log[-5:])


def test_replayed_push_has_a_40_character_sha_and_nothing_beside_the_clone(push):
    assert re.fullmatch(r"[0-9a-f]{40}", push.sha)
    assert set(os.listdir(os.path.dirname(push.workspace))) == {"numerai-predict", "bin", "runner-temp"}


def test_tests_workflow_replays_on_first_push(push):
    """tests.yml on a push before pixi.lock exists: the Python list from pixi.toml,
    a notice that the lock is missing, lint and types clean, and the test step of
    every environment: the whole suite collected, and the tests of the repository
    itself (manifest, schema, workflows, twin, add-a-Python) run for real in the
    clone, which has nothing beside it (test-all runs the rest in full)."""
    push.extra_env = {"PYTEST_ADDOPTS": "-q -k 'test_manifest or test_ci_config or test_pypi_env or "
                                        "test_add_python_version'"}
    try:
        jobs = push.run_workflow("tests.yml")
    finally:
        push.extra_env = {}
    seen = outcomes(push, "tests.yml")
    pythons = pixi_toml.python_environments(pixi_toml.load())
    assert json.loads(jobs["pythons"]["outputs"]["list"]) == pythons, explain(push)
    assert all(outcome in ("passed", "github-only") for outcome in seen.values()), explain(push)
    for env in pythons:
        assert seen[(f"test ({env})", "Test")] == "passed"
    assert seen[("lint", "Lint (ruff, actionlint, zizmor, hadolint, requires-pixi)")] == "passed"
    assert seen[("lint", "Type check (mypy, strict)")] == "passed"
    ran = [entry for entry in push.log if "pixi run -e" in entry.splitlines()[0]]
    assert len(ran) == len(pythons) and all(re.search(r"\b\d+ passed\b", entry) for entry in ran), ran
    assert any("pixi.lock does not exist yet" in entry for entry in push.log), "no notice about the missing lock"


def test_runner_python_is_the_systems_not_an_environments(push):
    """A workflow step that needs more than a bare runner's python3 would pass here and fail on GitHub."""
    found = subprocess.run(["bash", "-c", "command -v python3"], env=dict(os.environ, PATH=push.path),
                           capture_output=True, text=True).stdout.strip()
    assert found and not found.startswith((os.environ.get("CONDA_PREFIX") or "/nonexistent", ROOT))


@pytest.mark.parametrize("command", [["install", "--locked", "-e", "py311"], ["run", "--locked", "lint"],
                                     ["lock", "--check"]])
def test_pixi_shim_refuses_locked_work_without_a_lock(push, command):
    """As pixi does: --locked (and lock --check) fail when pixi.lock does not exist."""
    done = subprocess.run(["pixi", *command], cwd=push.workspace, env=dict(os.environ, PATH=push.path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "pixi.lock does not exist" in done.stderr, done.stderr


def test_lock_workflow_fails_as_pixi_does_without_conda_forge(push):
    """lock.yml's step runs `pixi lock`; here it must say it cannot reach conda-forge,
    and the pull request step (GitHub-only) is then skipped."""
    jobs = push.run_workflow("lock.yml")
    seen = outcomes(push, "lock.yml")
    assert jobs["lock"]["result"] == "failure"
    assert seen[("lock", "Create or update pixi.lock")] == "failed"
    assert "cannot reach conda-forge" in push.log[-1]
    assert seen[("lock", "peter-evans/create-pull-request@271a8d0340265f705b14b6d32b9829c1cb33d45e")] == "skipped"


@pytest.mark.parametrize("tag, builds", [("v" + __version__, True), ("v0.0.0-not-the-version", False)])
def test_release_workflow_builds_and_checks_what_it_would_publish(push, tag, builds):
    """release.yml on a push of a v* tag: the tag must be the package's version; the sdist and the
    wheel are built and pass `twine check --strict` (replayed); the artifact hand-over and the
    trusted-publishing upload are GitHub-only, and nothing is published for a wrong tag."""
    replay = dataclasses.replace(push, ref=f"refs/tags/{tag}", results=[], log=[])
    jobs = replay.run_workflow("release.yml")
    seen = outcomes(replay, "release.yml")
    if not builds:
        assert seen[("build", "The tag is the package's version")] == "failed", explain(replay)
        assert jobs["publish"]["result"] == "skipped"
        return
    assert jobs["build"]["result"] == "success", explain(replay)
    for step in ("The tag is the package's version", "Build the sdist and the wheel",
                 "Check them (metadata, README rendering)"):
        assert seen[("build", step)] == "passed", explain(replay)
    assert re.search(r"numerai_predict-[\d.]+-py3-none-any\.whl", replay.log[-1]), replay.log[-1]
    assert "twine\" check --strict dist/*" in replay.log[-1], "the check must fail on warnings too"
    github_only = sorted(step for (job, step), outcome in seen.items() if outcome == "github-only")
    assert [step.split("@")[0] for step in github_only] == [
        "actions/checkout", "actions/download-artifact", "actions/upload-artifact", "pypa/gh-action-pypi-publish"]


def test_images_workflow_is_skipped_with_a_notice_before_the_lock_exists(push):
    jobs = push.run_workflow("images.yml")
    assert jobs["pythons"]["result"] == "success"
    assert jobs["pythons"]["outputs"]["locked"] == "false"
    assert all(jobs[j]["result"] == "skipped" for j in ("build", "merge", "test")), explain(push)
    assert any("pixi.lock does not exist yet" in entry for entry in push.log)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def registry(tmp_path):
    """Debian's docker-registry (the reference registry) on 127.0.0.1."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.path.exists(binary):
        pytest.fail("docker-registry is not installed (apt-get install docker-registry; .ci/run does)")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                      f"    rootdirectory: {tmp_path / 'storage'}\n  delete:\n    enabled: true\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("docker-registry did not start")
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=20)


def docker_cli() -> str:
    return os.environ.get("DOCKER", "docker")


def test_images_workflow_builds_pushes_merges_pulls_and_tests(push, registry, tmp_path):
    """images.yml as it runs once the lock pull request is merged (no lock is made
    here: the `pythons` job's `locked` output is set to true, which is all the
    workflow reads of it), for this machine's platform and one environment: build,
    push :sha-arch to the registry on 127.0.0.1, merge into :sha and :latest,
    pull back and run the image tests."""
    if subprocess.run([docker_cli(), "info"], capture_output=True).returncode:
        pytest.fail("no Docker engine answers: .ci/run starts one")
    env = os.environ.get("REPLAY_IMAGE_ENV", "py311")
    machine = {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}.get(os.uname().machine)

    def keep(job: str, combination: dict) -> str:
        if combination.get("environment") not in (None, env):
            return f"one environment ({env}) replayed here to keep CI short"
        if combination.get("platform") not in (None, machine):
            return f"needs a {combination['platform']} runner"
        return ""

    push.keep_matrix = keep
    push.rewrite = {"ghcr.io": registry}
    push.extra_env = {"DOCKER_CONFIG": str(tmp_path / "docker-config"), "DOCKER": docker_cli()}
    try:
        push.override_outputs = {"pythons": {"locked": "true"}}
        jobs = push.run_workflow("images.yml")
    finally:
        push.keep_matrix, push.rewrite, push.extra_env, push.override_outputs = None, {}, {}, {}
    seen = outcomes(push, "images.yml")
    assert all(jobs[j]["result"] == "success" for j in ("pythons", "build", "merge", "test")), explain(push)
    assert seen[(f"build ({env}, {machine}, {runner_of(machine)})", "Push as :<sha>-<arch>")] == "passed"
    # What the registry holds is what was tested: pull it by digest-free tag and run it offline.
    image = f"{registry}/numerai/numerai_predict_py_{pixi_toml.python_tag(pixi_toml.load(), env)}:{push.sha[:12]}"
    ran = subprocess.run([docker_cli(), "run", "--rm", "--network", "none", image, "--help"],
                         capture_output=True, text=True)
    assert ran.returncode == 0 and "--model" in ran.stdout


def runner_of(platform: str | None) -> str:
    return {"linux/amd64": "ubuntu-24.04", "linux/arm64": "ubuntu-24.04-arm"}.get(platform or "", "")


def test_replay_reads_outputs_and_expressions_like_a_runner():
    """The replay itself: outputs, heredoc outputs, comparisons and matrix includes."""
    context = {"needs": {"a": {"outputs": {"list": '["x", "y"]', "locked": "false"}}}, "github": {"sha": "ab"}}
    evaluator = workflow_replay.Evaluator(context, ROOT)
    assert evaluator.evaluate("needs.a.outputs.locked == 'true'") is False
    assert evaluator.evaluate("needs.a.outputs.locked == 'false' && github.sha != ''") is True
    assert evaluator.evaluate("fromJSON(needs.a.outputs.list)") == ["x", "y"]
    assert evaluator.evaluate("hashFiles('pixi.toml') != ''") is True
    assert evaluator.evaluate("hashFiles('no-such-file') != ''") is False
    assert workflow_replay.read_key_values("a=1\nb<<EOF\nx\ny\nEOF\nc=3\n") == {"a": "1", "b": "x\ny", "c": "3"}
    job = {"strategy": {"matrix": {"e": ["p1", "p2"], "platform": ["amd", "arm"],
                                   "include": [{"platform": "amd", "runner": "r1"}]}}}
    combos = workflow_replay.matrix(job, evaluator)
    assert len(combos) == 4 and sum(c.get("runner") == "r1" for c in combos) == 2

