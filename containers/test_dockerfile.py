"""containers/Dockerfile's pixi path fails loudly: a failed step fails the build.

The real Dockerfile is built with ENV_SOURCE=pixi and PIXI_IMAGE set to a tiny
local image whose `pixi` is a script: what its `pixi install` does (fail, or
make an environment whose python's compileall exits 0, 1 or 2, or whose python
cannot start) is read from the build context's placeholder pixi.lock. The
success cases prove the failure cases fail for the reason they test. Run by
`containers/images.py test` (pixi run test-images); needs a Docker engine with
BuildKit and the debian:bookworm-slim base, nothing from the network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid

import images
import pytest

ROOT = images.ROOT
ENV_NAME = "py311-runtime"
MISSING_LOCK = "pixi.lock is missing: run `pixi lock`"

# `pixi install --locked --environment ENV`, as the Dockerfile runs it; the mode
# is the one word of ./pixi.lock.
FAKE_PIXI = r"""#!/bin/bash
set -eu
[ "${1:-}" = install ] || { echo "fake-pixi: expected install, got: $*" >&2; exit 64; }
locked="" env=""
while [ $# -gt 0 ]; do
  case "$1" in
    --locked) locked=1; shift ;;
    --environment|-e) env=$2; shift 2 ;;
    *) shift ;;
  esac
done
[ -n "$locked" ] || { echo "fake-pixi: install without --locked" >&2; exit 64; }
[ -n "$env" ] || { echo "fake-pixi: install without --environment" >&2; exit 64; }
mode=$(cat pixi.lock)
start=0 compile=0
case "$mode" in
  install-fails) ;;
  ok) ;;
  compile-exit-1) compile=1 ;;
  compile-exit-2) compile=2 ;;
  python-cannot-start) start=1 ;;
  *) echo "fake-pixi: unknown mode '$mode'" >&2; exit 64 ;;
esac
prefix=".pixi/envs/$env"
mkdir -p "$prefix/bin" "$prefix/lib"
# compileall of the environment's lib exits $compile; anything else succeeds.
cat > "$prefix/bin/python" <<EOF
#!/bin/sh
[ $start -eq 0 ] || { echo "fake-python: cannot start" >&2; exit 1; }
if [ "\$1" = -m ] && [ "\$2" = compileall ]; then
  for last; do :; done
  case "\$last" in */lib) echo "fake-python: compileall exits $compile" >&2; exit $compile ;; esac
fi
exit 0
EOF
chmod +x "$prefix/bin/python"
if [ "$mode" = install-fails ]; then
  # As a real failure may: after part of the environment was written.
  echo "fake-pixi: installing $env failed on purpose" >&2
  exit 1
fi
echo "fake-pixi: installed $env ($mode)"
"""


def docker(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([images.docker(), *args], capture_output=True, text=True, check=check,
                          env=dict(os.environ, DOCKER_BUILDKIT="1"))


@pytest.fixture(scope="module")
def engine():
    """A Docker engine that answers; without one: skip, but fail under CI."""
    try:
        answer = docker("info")
        # Debian's 20.10 client prints the reason on stdout ("ERROR: Cannot connect ...").
        lines = [line.strip() for line in (answer.stdout + answer.stderr).splitlines() if line.strip()]
        reason = [line for line in lines if "error:" in line.lower()] or lines[-1:] or ["(no output)"]
        problem = reason[0] if answer.returncode else None
    except OSError as exc:
        problem = str(exc)
    if problem is not None:
        message = f"no Docker engine answers `{images.docker()} info`: {problem}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def tag_prefix():
    return f"numerai-predict-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def fake_pixi(engine, tmp_path_factory, tag_prefix):
    """The local stand-in for ghcr.io/prefix-dev/pixi."""
    folder = tmp_path_factory.mktemp("fake-pixi")
    (folder / "pixi").write_text(FAKE_PIXI)
    (folder / "pixi").chmod(0o755)
    (folder / "Dockerfile").write_text("FROM debian:bookworm-slim\nCOPY pixi /usr/local/bin/pixi\n")
    name = f"{tag_prefix}-pixi-stand-in:latest"
    result = docker("build", "--network", "none", "-t", name, str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    yield name
    docker("rmi", "--force", name)


@pytest.fixture
def build(fake_pixi, tmp_path, tag_prefix):
    """Build containers/Dockerfile in a context like the repository's, with pixi.lock
    holding the fake's mode (or absent); the built image is removed afterwards."""
    built = []

    def run(mode: str | None) -> tuple[subprocess.CompletedProcess, str]:
        context = tmp_path / "context"
        context.mkdir()
        for name in ("pixi.toml", "pyproject.toml", "predict.py"):
            shutil.copy2(os.path.join(ROOT, name), context)
        shutil.copytree(os.path.join(ROOT, "numerai_predict"), context / "numerai_predict",
                        ignore=shutil.ignore_patterns("__pycache__"))
        if mode is not None:
            (context / "pixi.lock").write_text(mode)  # a placeholder, in the temporary context only
        name = f"{tag_prefix}-dockerfile:{mode or 'no-lock'}"
        # --no-cache: every step runs and prints, as on a first build.
        result = docker("build", "--network", "none", "--no-cache", "--progress", "plain", "-f", images.DOCKERFILE,
                        "--build-arg", f"PIXI_IMAGE={fake_pixi}", "--build-arg", "ENV_SOURCE=pixi",
                        "--build-arg", f"ENV_NAME={ENV_NAME}", "--build-arg", "PYTHON_VERSION=3.11",
                        "--build-arg", "GIT_REF=test-dockerfile", "-t", name, str(context))
        if result.returncode == 0:
            built.append(name)
        return result, name

    yield run
    for name in built:
        docker("rmi", "--force", name)


def log(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def failed_step(result: subprocess.CompletedProcess) -> str:
    """The header (`[stage n/m] INSTRUCTION`) of the step BuildKit's plain log marks ERROR:
    a failure must stop the build where it happens, not in some later step."""
    text = log(result)
    errors = re.findall(r"^#(\d+) ERROR", text, re.MULTILINE)
    assert errors, text
    header = re.search(rf"^#{errors[0]} (\[.*)$", text, re.MULTILINE)
    assert header, text
    return header.group(1)


@pytest.mark.parametrize("mode", ["ok", "compile-exit-1"])
def test_build_succeeds_when_every_step_does(build, mode):
    """compileall's exit 1 (files this Python cannot compile) is the one tolerated failure."""
    result, name = build(mode)
    assert result.returncode == 0, log(result)
    assert f"fake-pixi: installed {ENV_NAME} ({mode})" in log(result)
    probe = docker("run", "--rm", "--network", "none", "--entrypoint", "cat", name,
                   f"/opt/numerai-predict/.pixi/envs/{ENV_NAME}/bin/python", check=True)
    assert "fake-python" in probe.stdout  # the environment pixi made is the one the image ships


def test_failed_pixi_install_fails_the_build(build):
    """Even when the failed install left part of an environment behind."""
    result, _ = build("install-fails")
    assert result.returncode != 0
    assert f"fake-pixi: installing {ENV_NAME} failed on purpose" in log(result)
    step = failed_step(result)
    assert step.startswith("[env-pixi") and "pixi install" in step, step
    assert "fake-python" not in log(result)  # nothing ran after the failed install


def test_compileall_failing_otherwise_than_exit_1_fails_the_build(build):
    result, _ = build("compile-exit-2")
    assert result.returncode != 0
    assert f"fake-pixi: installed {ENV_NAME} (compile-exit-2)" in log(result)
    assert "fake-python: compileall exits 2" in log(result)
    step = failed_step(result)
    assert step.startswith("[env-pixi") and "compileall" in step, step


def test_python_that_cannot_start_fails_the_build(build):
    """Its exit 1 is not taken for compileall's tolerated one."""
    result, _ = build("python-cannot-start")
    assert result.returncode != 0
    assert "fake-python: cannot start" in log(result)
    step = failed_step(result)
    assert step.startswith("[env-pixi") and "compileall" in step, step


def test_missing_pixi_lock_fails_with_a_clear_message(build):
    result, _ = build(None)
    assert result.returncode != 0
    assert MISSING_LOCK in log(result), log(result)
    assert "pixi.lock" in failed_step(result)
    assert "fake-pixi" not in log(result)  # stopped before pixi ran
