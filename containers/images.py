#!/usr/bin/env python3
"""Build and test the numerai_predict_py_3_XY images from pixi.toml's environments.

    containers/images.py build [ENV ...]           build numerai_predict_py_3_XY:{git sha,latest} (default: every env)
    containers/images.py test [ENV ...]            run each env's test pickles in its image (pytest)
    containers/images.py push CHANNEL [ENV ...]    push :{git sha} and :CHANNEL (latest or stable) to IMAGE_REPO
    containers/images.py shell ENV                 an interactive shell in the image

What the images workflow runs, one platform per runner (IMAGE_REPO required):

    containers/images.py publish ENV               push :{git sha}-{arch} of this machine's build
    containers/images.py merge ENV                 :{git sha}, and the channels of GITHUB_REF / STABLE,
                                                   as one multi-arch manifest of the published arches
    containers/images.py pull ENV                  pull :{git sha} and tag it :latest for test-images

ENV is a Python environment of pixi.toml (py310 ... py313); the image ships its
``-runtime`` twin (same solve, no test tools). Under pixi the environment is
installed by pixi inside the build (ENV_SOURCE=pixi); under the PyPI twin
(containers/pypi_env.py run ..., which sets PYPI_TWIN=1) it is built on the
host and copied in (ENV_SOURCE=prebuilt). Set DOCKER to pick the docker CLI
(BuildKit is required) and IMAGE_REPO (e.g. ghcr.io/numerai) to prefix names.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import manifest as pixi_toml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

DOCKERFILE = os.path.join(HERE, "Dockerfile")
CONTEXTS = os.path.join(ROOT, "build", "contexts")


class ImageError(Exception):
    """A failure of this tool, printed as one line."""


def docker() -> str:
    return os.environ.get("DOCKER", "docker")


def python_envs(manifest: dict) -> list[str]:
    """The environments that get an image: one per Python (py310 ...)."""
    return pixi_toml.python_environments(manifest)


def image_repo() -> str:
    """IMAGE_REPO, lower-cased as registries require (GitHub owners may have capitals)."""
    return os.environ.get("IMAGE_REPO", "").rstrip("/").lower()


def image_name(manifest: dict, env: str) -> str:
    repo = image_repo()
    return f"{repo + '/' if repo else ''}{pixi_toml.image_basename(manifest, env)}"


def git_ref() -> str:
    result = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "dev"


def local_prefix(manifest: dict, env: str) -> str:
    """Where the environment lives outside Docker: the PyPI twin's prefix, or pixi's."""
    if os.environ.get("PYPI_TWIN"):
        import pypi_env  # the twin only: the pixi path needs nothing of it

        try:
            return pypi_env.build(manifest, env)
        except pypi_env.TwinError as exc:
            raise ImageError(str(exc)) from exc
    return os.path.join(ROOT, ".pixi", "envs", env)


def build_context(manifest: dict, env: str) -> tuple[str, str]:
    """The build context and ENV_SOURCE for an environment's runtime image."""
    runtime = f"{env}-runtime"
    if not os.environ.get("PYPI_TWIN"):
        if not os.path.exists(os.path.join(ROOT, "pixi.lock")):
            raise ImageError("pixi.lock is missing: run `pixi lock` on a machine that reaches conda-forge")
        return ROOT, "pixi"
    prefix = local_prefix(manifest, runtime)
    context = os.path.join(CONTEXTS, runtime)
    shutil.rmtree(context, ignore_errors=True)
    os.makedirs(context)
    link_tree(prefix, os.path.join(context, "env"))
    shutil.copy2(os.path.join(ROOT, "predict.py"), context)
    shutil.copytree(os.path.join(ROOT, "numerai_predict"), os.path.join(context, "numerai_predict"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    return context, "prebuilt"


#: What an environment holds that a runtime never reads (the Dockerfile's pixi stage deletes the same):
#: static libraries, optimised bytecode (the image runs without -O), and in site-packages the C
#: headers (`include`, 260 MB in py311: TensorFlow's and torch's) and test suites (`tests`, 190 MB).
NEVER_READ_FILES = (".a", ".opt-1.pyc", ".opt-2.pyc")
NEVER_READ_DIRS = ("include", "tests")


def never_read(folder: str, names: list[str]) -> list[str]:
    """copytree's ignore: the files and folders of NEVER_READ_FILES and NEVER_READ_DIRS."""
    in_site_packages = f"{os.sep}site-packages" in folder
    return [n for n in names if n.endswith(NEVER_READ_FILES) or (
        in_site_packages and n in NEVER_READ_DIRS and os.path.isdir(os.path.join(folder, n)))]


def link_tree(source: str, dest: str) -> None:
    """Hard-link a tree (instant, no extra disk), copying where links cannot cross filesystems;
    without what a runtime never reads (never_read)."""
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    shutil.copytree(source, dest, symlinks=True, copy_function=link, ignore=never_read)


def build(manifest: dict, env: str) -> str:
    context, source = build_context(manifest, env)
    name, ref = image_name(manifest, env), git_ref()
    # The prebuilt context needs nothing from outside; `pixi install` inside the build does.
    network = ["--network", "none"] if source == "prebuilt" else []
    command = [docker(), "build", *network, "-f", DOCKERFILE,
               "--build-arg", f"ENV_NAME={env}-runtime", "--build-arg", f"ENV_SOURCE={source}",
               "--build-arg", f"PYTHON_VERSION={pixi_toml.python_minor(manifest, env)}",
               "--build-arg", f"GIT_REF={ref}", "--build-arg", f"PIXI_VERSION={pixi_toml.pixi_version(manifest)}",
               "-t", f"{name}:{ref}", "-t", f"{name}:latest", context]
    print(f"images: building {name}:{ref} from {env}-runtime ({source})", file=sys.stderr)
    result = subprocess.run(command, env=dict(os.environ, DOCKER_BUILDKIT="1"))
    if context.startswith(CONTEXTS):
        shutil.rmtree(context, ignore_errors=True)
    if result.returncode:
        raise ImageError(f"docker build of {name} failed (exit {result.returncode})")
    return f"{name}:{ref}"


def push(manifest: dict, channel: str, envs: list[str]) -> None:
    """Push every image's :sha, then move :CHANNEL: a failure never leaves a channel
    pointing at a mix of old and new images, and nothing starts before all checks pass."""
    if channel not in ("latest", "stable"):
        raise ImageError(f"channel must be latest or stable, not {channel!r}")
    check_credentials(required_repo().split("/")[0])
    ref = git_ref()
    plan = []
    for env in envs:
        target = image_name(manifest, env)
        local = [f"{target}:{ref}", f"{target.rsplit('/', 1)[-1]}:{ref}"]
        found = next((image for image in local if run_docker("image", "inspect", image).returncode == 0), None)
        if found is None:
            raise ImageError(f"{local[-1]} is not built: run `pixi run build-image {env}` first")
        plan.append((found, target))
    for found, target in plan:
        for tag in (ref, channel):
            checked_docker("tag", found, f"{target}:{tag}")
    for _, target in plan:
        checked_docker("push", f"{target}:{ref}")
    for _, target in plan:
        checked_docker("push", f"{target}:{channel}")
        print(f"pushed {target}:{ref} as :{channel}")


def required_repo() -> str:
    repo = image_repo()
    if not repo:
        raise ImageError("set IMAGE_REPO (e.g. ghcr.io/numerai) to say where to push")
    return repo


# Docker's names of the platforms images are built for, by `uname -m`.
ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}


def publish(manifest: dict, env: str) -> str:
    """Push this machine's build of ENV as :{sha}-{arch}, for `merge` to gather."""
    check_credentials(required_repo().split("/")[0])
    target, ref = image_name(manifest, env), git_ref()
    arch_tag = f"{target}:{ref}-{ARCHES.get(os.uname().machine, os.uname().machine)}"
    checked_docker("tag", f"{target}:{ref}", arch_tag)
    checked_docker("push", arch_tag)
    return arch_tag


def channels(ref: str, stable: str) -> list[str]:
    """:latest for main, and :stable for a v* tag or a run asked to mark it stable."""
    chosen = ["latest"] if ref == "refs/heads/main" else []
    if stable == "true" or ref.startswith("refs/tags/v"):
        chosen.append("stable")
    return chosen


def merge(manifest: dict, env: str) -> list[str]:
    """One multi-arch :{sha} (and channel tags) from the arches `publish` pushed."""
    repo = required_repo()
    check_credentials(repo.split("/")[0])
    target, ref = image_name(manifest, env), git_ref()
    insecure = ["--insecure"] if is_loopback(repo) else []  # a registry on this machine speaks plain HTTP
    sources = [f"{target}:{ref}-{arch}" for arch in ARCHES.values()
               if run_docker("manifest", "inspect", *insecure, f"{target}:{ref}-{arch}").returncode == 0]
    if not sources:
        raise ImageError(f"no {target}:{ref}-<arch> was published: run `images.py publish {env}` first")
    tags = [ref, *channels(os.environ.get("GITHUB_REF", ""), os.environ.get("STABLE", ""))]
    for tag in tags:
        checked_docker("manifest", "create", *insecure, "--amend", f"{target}:{tag}", *sources)
        checked_docker("manifest", "push", *insecure, "--purge", f"{target}:{tag}")
    return [f"{target}:{tag}" for tag in tags]


def is_loopback(repo: str) -> bool:
    host = repo.split("/")[0].rsplit(":", 1)[0]
    return host in ("localhost", "[::1]") or host.startswith("127.")


def pull(manifest: dict, env: str) -> str:
    """The published :{sha}, tagged :latest here so `test` checks exactly it."""
    target, ref = image_name(manifest, env), git_ref()
    checked_docker("pull", f"{target}:{ref}")
    checked_docker("tag", f"{target}:{ref}", f"{target}:latest")
    return f"{target}:{ref}"


def check_credentials(registry: str) -> None:
    """Fail before any push when docker has no login for the registry."""
    folder = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    try:
        with open(os.path.join(folder, "config.json")) as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        config = {}
    if registry in config.get("auths", {}) or registry in config.get("credHelpers", {}) or config.get("credsStore"):
        return
    raise ImageError(f"no credentials for {registry}: run `docker login {registry}` first")


def run_docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([docker(), *args], capture_output=True, text=True)


def checked_docker(*args: str) -> None:
    result = subprocess.run([docker(), *args])
    if result.returncode:
        raise ImageError(f"docker {' '.join(args)} failed (exit {result.returncode})")


def shell(manifest: dict, env: str) -> int:
    return subprocess.run([docker(), "run", "-it", "--rm", "--network", "none", "--entrypoint", "/bin/bash",
                           f"{image_name(manifest, env)}:latest"]).returncode


def test(envs: list[str]) -> int:
    import pytest

    os.environ["IMAGE_ENVS"] = ",".join(envs)
    # The images, then the Dockerfile's own failure handling (small local builds, no registry).
    return pytest.main([os.path.join(HERE, "test_images.py"), os.path.join(HERE, "test_dockerfile.py"),
                        "-v", "-p", "no:cacheprovider"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    per_env = {"publish": publish, "merge": merge, "pull": pull}
    if not argv or argv[0] not in ("build", "test", "push", "shell", *per_env) or (
            argv[0] in ("push", "shell", *per_env) and len(argv) < 2):
        print(__doc__, file=sys.stderr)
        return 2
    manifest = pixi_toml.load()
    command, channel = argv[0], argv[1] if argv[0] == "push" else None
    names = argv[2:] if command == "push" else argv[1:]
    envs = [e for e in names if e != "all"] or python_envs(manifest)
    unknown = set(envs) - set(python_envs(manifest))
    if unknown:
        print(f"images: unknown environment(s) {', '.join(sorted(unknown))}; "
              f"pixi.toml has {', '.join(python_envs(manifest))}", file=sys.stderr)
        return 2
    try:
        if command == "build":
            for env in envs:
                print(build(manifest, env))
            return 0
        if command == "push":
            push(manifest, channel, envs)
            return 0
        if command == "shell":
            return shell(manifest, envs[0])
        if command in per_env:
            for env in envs:
                result = per_env[command](manifest, env)
                print("\n".join(result) if isinstance(result, list) else result)
            return 0
        return test(envs)
    except (ImageError, pixi_toml.ManifestError) as exc:
        print(f"images: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
