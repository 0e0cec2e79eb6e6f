#!/usr/bin/env python3
"""The PyPI twin of pixi.toml's environments, for machines without conda-forge.

    containers/pypi_env.py lock [--upgrade] [ENV ...]  resolve pixi.toml's specs with uv into containers/locks/
    containers/pypi_env.py check                 fail if a lock is stale against pixi.toml
    containers/pypi_env.py build [ENV ...]       build ENV's prefix from its lock (skipped when unchanged)
    containers/pypi_env.py run [-e ENV] TASK ... run a pixi task of pixi.toml in ENV, like `pixi run`
    containers/pypi_env.py path ENV              print the environment's prefix

An environment is a self-contained CPython prefix: a copy of a local CPython of
the right minor (found through pyenv or PATH, else built once from Debian's
source package: containers/cpython.py) with an empty site-packages,
its libpython found relative to itself, exactly the locked packages (hash-checked)
and, in environments whose features ask for it, the workspace's own package
installed editable from the checkout that runs the twin.
Locks are for pixi's linux-64 specs and linux x86_64 wheels whatever machine
makes them (`uv pip compile --python-platform`), so `check` is a pure function of
pixi.toml and the lock files.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from functools import cache

import cpython
from manifest import Manifest, ManifestError, environment_tasks, environments, load, python_minor
from manifest import merged as manifest_merged
from manifest import tasks as manifest_tasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCK_DIR = os.path.join(ROOT, "containers", "locks")
CACHE_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "numerai-predict")
# Outside the checkout, so every clone reuses environments whose lock is unchanged; CI points
# PYPI_TWIN_ENVS at an empty folder of its own to prove the fresh path. Each prefix is named by
# its lock's digest (ENV-<digest>), so clones with different locks never build into one folder;
# ENV itself is a symlink to the newest build, for tools that look environments up by name.
ENVS_DIR = os.environ.get("PYPI_TWIN_ENVS") or os.path.join(CACHE_DIR, "envs")
# The twin's own tools (uv), private to the project: never installed into the user's Python.
TOOLS_DIR = os.path.join(CACHE_DIR, "tools")
# The twin locks pixi's linux-64 specs for x86_64 wheels, on any machine: uv resolves
# for a target instead of for the interpreter running it. manylinux_2_28 reproduces
# what pip chose on debian:bookworm (glibc 2.36), the images' base.
LOCK_PLATFORM = "linux-64"
UV_PLATFORM = "x86_64-manylinux_2_28"
MACHINE = "x86_64"
UV_VERSION = "0.13.9"  # installed into TOOLS_DIR when `uv` is not on PATH
STAMP = ".pypi-twin-stamp"
BUILDER_VERSION = "4"  # bump when the way environments are built changes
# Parts of a CPython install that an environment does not need.
TRIM = ("test", "idlelib", "tkinter", "turtledemo", "lib2to3/tests", "lib-dynload/_tkinter")
# Libraries every Debian base image has (glibc, the C++ runtime, zlib); any other
# system library an environment links is copied into it, as conda environments carry theirs.
BASE_LIBS = re.compile(r"(ld-linux[-\w]*|lib(c|m|dl|rt|pthread|resolv|util|gcc_s|stdc\+\+|z))\.so[.\d]*")


class TwinError(Exception):
    """A failure of this tool, printed as one line."""


# ---- reading pixi.toml (through containers/manifest.py) --------------------------


def merged(manifest: Manifest, env: str, table: str) -> dict:
    """An environment's dependencies on the twin's platform (linux-64, whatever the machine)."""
    return manifest_merged(manifest, env, table, LOCK_PLATFORM)


def conda_to_pip(spec) -> str:
    """A conda version spec as a PEP 440 specifier ('2.2.*' -> '==2.2.*')."""
    version = spec.get("version", "*") if isinstance(spec, dict) else spec
    version = version.strip()
    if version in ("", "*"):
        return ""
    if version[0].isdigit():
        return "==" + version
    return version


def twin_name(env: str) -> str:
    """The environment whose twin settings apply: py311-runtime shares py311's."""
    return env.removesuffix("-runtime")


def pypi_name(manifest: dict, name: str, env: str) -> str:
    """A conda-forge name's PyPI name in an environment ([tool.pypi-twin.names]): a string for
    every environment, or a table by environment with a `default`."""
    mapped = manifest.get("tool", {}).get("pypi-twin", {}).get("names", {}).get(name, name)
    if isinstance(mapped, dict):
        return str(mapped.get(twin_name(env), mapped.get("default", name)))
    return str(mapped)


def requirements(manifest: dict, env: str) -> list[str]:
    """The PyPI requirements of an environment, derived from pixi.toml."""
    twin = manifest.get("tool", {}).get("pypi-twin", {})
    skip = twin.get("skip", {})
    pins = twin.get("pins", {}).get(twin_name(env), {})
    reqs = {}
    for name, spec in merged(manifest, env, "dependencies").items():
        if name == "python" or twin_name(env) in skip.get(name, []):
            continue
        reqs[pypi_name(manifest, name, env)] = conda_to_pip(spec)
    for name, spec in merged(manifest, env, "pypi-dependencies").items():
        if name in path_dependencies(manifest, env):  # installed from the checkout, not locked
            continue
        version = spec.get("version", "*") if isinstance(spec, dict) else spec
        reqs[name] = "" if version.strip() == "*" else version.strip()
    for name, spec in pins.items():
        reqs[name] = spec
    return [f"{name}{spec}" for name, spec in sorted(reqs.items())]


def path_dependencies(manifest: dict, env: str) -> dict[str, dict]:
    """The environment's pypi-dependencies given by path (the workspace's own package)."""
    return {name: spec for name, spec in merged(manifest, env, "pypi-dependencies").items()
            if isinstance(spec, dict) and "path" in spec}


def excluded(manifest: dict, env: str) -> list[str]:
    """PyPI names the environment goes without ([tool.pypi-twin.skip]): no dependency may bring them back
    (PyPI's torch for other Pythons than 3.11 is a multi-GB CUDA build)."""
    twin = manifest.get("tool", {}).get("pypi-twin", {})
    return sorted(pypi_name(manifest, name, env) for name, envs in twin.get("skip", {}).items()
                  if twin_name(env) in envs)


def spec_digest(manifest: dict, env: str) -> str:
    """What a lock was made from: Python minor, target platform, requirements and exclusions."""
    text = (f"python {python_minor(manifest, env)}\nplatform {LOCK_PLATFORM} {UV_PLATFORM}\n"
            + "\n".join(requirements(manifest, env)) + "\nexcluded " + " ".join(excluded(manifest, env)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---- interpreters ------------------------------------------------------------


def find_python(minor: str, build: bool = True) -> str:
    """A local CPython ``minor`` (e.g. '3.11'): pyenv's newest patch, else PATH, else (``build``)
    one built from Debian's source package (containers/cpython.py)."""
    candidates = []
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
        found = glob.glob(os.path.join(root, "versions", f"{minor}.*", "bin", f"python{minor}"))
        candidates += sorted(found, key=lambda p: [int(x) for x in re.findall(r"\d+", p.split("versions")[-1])],
                             reverse=True)
    except (OSError, subprocess.CalledProcessError):
        pass
    on_path = shutil.which(f"python{minor}")
    if on_path:
        candidates.append(on_path)
    for candidate in candidates:
        if runs(candidate, minor):
            return os.path.realpath(candidate)
    if cpython.installed(TOOLS_DIR, minor) or (build and cpython.buildable(minor)):
        return built_python(minor)
    raise TwinError(f"no CPython {minor} found through pyenv or PATH")


def built_python(minor: str) -> str:
    """CPython ``minor`` built from Debian's source package into TOOLS_DIR, once (containers/cpython.py)."""
    python = cpython.installed(TOOLS_DIR, minor)
    if python:
        return python
    with locked(os.path.join(TOOLS_DIR, f"cpython-{minor}")):
        try:
            return cpython.build(TOOLS_DIR, minor)
        except cpython.BuildError as error:
            raise TwinError(str(error)) from error


def runs(python: str, minor: str) -> bool:
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip() == minor


def python_version(python: str) -> str:
    """An interpreter's full version, '3.11.7'."""
    probe = "import sys; print('%d.%d.%d' % sys.version_info[:3])"
    return subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()


def lock_python(manifest: dict, env: str) -> str:
    """The Python to resolve for: the local CPython environments are built from, as
    requires-python may name a patch (soupsieve 4.1 needs 3.11.5); else the minor alone."""
    minor = python_minor(manifest, env)
    try:  # never a three-minute CPython build just to name a patch version
        return python_version(find_python(minor, build=False))
    except TwinError:
        return minor


# ---- uv ------------------------------------------------------------------------


@cache
def uv() -> list[str]:
    """The uv command: on PATH, else the project's private copy, installed by pip into TOOLS_DIR once."""
    on_path = shutil.which("uv")
    if on_path:
        return [on_path]
    target = os.path.join(TOOLS_DIR, f"uv-{UV_VERSION}")
    binary = os.path.join(target, "bin", "uv")
    with locked(target):
        if not os.access(binary, os.X_OK):
            print(f"pypi_env: installing uv {UV_VERSION} into {target}", file=sys.stderr)
            shutil.rmtree(target, ignore_errors=True)
            # -qq: only errors (a site-wide pip configuration may warn once per index and package).
            run_checked([sys.executable, "-m", "pip", "install", "-qq", "--disable-pip-version-check",
                         "--target", target, f"uv=={UV_VERSION}"], "installing uv")
    return [binary]


@contextlib.contextmanager
def locked(path: str):
    """Hold an exclusive lock on ``path``.lock: one builder of a folder at a time, across processes."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"pypi_env: waiting for another build of {os.path.basename(path)} ...", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@cache
def find_links() -> tuple[str, ...]:
    """pip's find-links directories that exist (uv does not read pip's configuration):
    this workplace keeps its CPU torch wheel there."""
    values = os.environ.get("PIP_FIND_LINKS", "").split()
    result = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    for found in re.findall(r"find-links='([^']*)'", result.stdout):
        values += found.split()
    folders = (v.removeprefix("file://") for v in values)
    return tuple(dict.fromkeys(f for f in folders if os.path.isdir(f)))


def uv_pip(*args: str) -> list[str]:
    """A quiet `uv pip` command that ignores uv configuration files and sees pip's find-links."""
    links = [arg for folder in find_links() for arg in ("--find-links", folder)]
    return [*uv(), "pip", *args, "--quiet", "--no-config", *links]


# ---- locks -------------------------------------------------------------------


def lock_path(env: str) -> str:
    return os.path.join(LOCK_DIR, f"{env}.txt")


def compile_command(manifest: dict, env: str, python: str, reqs: str, exclusions: str, out: str) -> list[str]:
    """`uv pip compile` of an environment for linux x86_64, with every distribution's hash."""
    command = uv_pip("compile", "--generate-hashes", "--no-header", "--no-annotate", "--python-version", python,
                     "--python-platform", UV_PLATFORM, "--constraint", exclusions, "--output-file", out, reqs)
    base = twin_name(env)
    if base != env:  # a runtime environment shares its tested twin's versions (solve-group)
        command += ["--constraint", lock_path(base)]
    return command


def lock(manifest: dict, env: str, upgrade: bool = False) -> None:
    """Resolve the environment's requirements with uv into a hashed lock."""
    python = lock_python(manifest, env)
    with tempfile.TemporaryDirectory() as work:
        reqs, exclusions, out = (os.path.join(work, name) for name in ("requirements.in", "excluded.txt", "lock.txt"))
        with open(reqs, "w") as handle:
            handle.write("\n".join(requirements(manifest, env)) + "\n")
        with open(exclusions, "w") as handle:  # '<0' matches no release: resolving fails rather than pull one
            handle.write("".join(f"{name}<0\n" for name in excluded(manifest, env)))
        if os.path.exists(lock_path(env)) and not upgrade:
            # uv prefers the versions of an existing output file: a re-lock moves only what the specs moved.
            shutil.copy(lock_path(env), out)
        run_checked(compile_command(manifest, env, python, reqs, exclusions, out), f"resolving {env}")
        with open(out) as handle:
            body = handle.read()
    count = write_lock(manifest, env, python, body)
    print(f"locked {env}: {count} packages for Python {python} -> {os.path.relpath(lock_path(env), ROOT)}")


def write_lock(manifest: dict, env: str, python: str, body: str) -> int:
    """Write a lock with the header `check` and `build` read; returns its package count."""
    body = "".join(line for line in body.splitlines(keepends=True) if not line.startswith("#"))
    os.makedirs(LOCK_DIR, exist_ok=True)
    with open(lock_path(env), "w") as handle:
        handle.write(f"# PyPI twin of pixi environment {env}: generated by containers/pypi_env.py lock, "
                     "do not edit.\n"
                     f"# python: {python}\n# platform: {UV_PLATFORM}\n# spec: {spec_digest(manifest, env)}\n")
        handle.write(body)
    return len(locked_packages(body))


def locked_packages(text: str) -> list[str]:
    """The `name==version` pins of a lock."""
    return re.findall(r"^([A-Za-z0-9][\w.-]*==[^\s;\\]+)", text, re.MULTILINE)


def lock_header(env: str) -> dict[str, str]:
    try:
        with open(lock_path(env)) as handle:
            return dict(re.findall(r"^# (\w+): (\S+)$", handle.read(), re.MULTILINE))
    except FileNotFoundError:
        return {}


def stale_locks(manifest: dict) -> list[str]:
    """Environments whose lock is missing or was made from other specs."""
    return [env for env in environments(manifest) if env != "default"
            and lock_header(env).get("spec") != spec_digest(manifest, env)]


def lock_order(envs: list[str]) -> list[str]:
    """Tested environments first: runtime locks are constrained by them."""
    return sorted(envs, key=lambda env: env.endswith("-runtime"))


# ---- building ------------------------------------------------------------------


def env_path(env: str) -> str:
    """The prefix built from the environment's current lock: ENVS_DIR/ENV-<digest>."""
    return os.path.join(ENVS_DIR, f"{env}-{build_digest(env)[:16]}")


def env_python(manifest: dict, env: str) -> str:
    return os.path.join(env_path(env), "bin", f"python{python_minor(manifest, env)}")


def build_digest(env: str) -> str:
    try:
        with open(lock_path(env), "rb") as handle:
            return hashlib.sha256(handle.read() + BUILDER_VERSION.encode()).hexdigest()
    except FileNotFoundError:
        raise TwinError(f"containers/locks/{env}.txt is missing: run containers/pypi_env.py lock {env}") from None


def build(manifest: dict, env: str) -> str:
    """Build (or reuse) the environment's prefix; returns its path."""
    if env not in environments(manifest):
        raise TwinError(f"unknown environment {env!r}; pixi.toml has {', '.join(environments(manifest))}")
    env = resolve_default(manifest, env)
    if env in stale_locks(manifest):
        raise TwinError(f"containers/locks/{env}.txt is missing or stale: run containers/pypi_env.py lock {env}")
    prefix, digest = env_path(env), build_digest(env)
    with locked(prefix):  # a second builder of the same lock waits, then finds it built
        if not is_built(prefix, digest):
            build_prefix(manifest, env, prefix)
            # Written last: an interrupted build leaves no stamp, and the next build starts over.
            with open(os.path.join(prefix, STAMP), "w") as handle:
                handle.write(digest)
    link_by_name(env, prefix)
    return prefix


def is_built(prefix: str, digest: str) -> bool:
    try:
        with open(os.path.join(prefix, STAMP)) as handle:
            return handle.read() == digest
    except OSError:
        return False


def link_by_name(env: str, prefix: str) -> None:
    """Point ENVS_DIR/ENV at the newest build (atomically: a reader sees the old or the new one)."""
    link = os.path.join(ENVS_DIR, env)
    if os.path.islink(link) and os.readlink(link) == os.path.basename(prefix):
        return
    if os.path.exists(link) and not os.path.islink(link):  # a prefix of an older twin, named ENV
        shutil.rmtree(link, ignore_errors=True)
    temporary = f"{link}.{os.getpid()}.{threading.get_ident()}.link"
    os.symlink(os.path.basename(prefix), temporary)
    os.replace(temporary, link)


def workspace_layer(manifest: dict, env: str, prefix: str) -> str:
    """The environment as this checkout sees it. Prefixes are shared by every clone (CI runs
    in a fresh one), so the workspace's own packages go into a thin venv over the prefix,
    inside the checkout (.pixi/twin/ENV, as pixi keeps .pixi/envs/ENV), never into the prefix."""
    if not path_dependencies(manifest, env):
        return prefix
    layer = os.path.join(ROOT, ".pixi", "twin", env)
    if layer_base(layer) != os.path.join(prefix, "bin"):
        shutil.rmtree(layer, ignore_errors=True)
        run_checked([env_python(manifest, env), "-m", "venv", "--without-pip", "--system-site-packages", layer],
                    f"making {env}'s layer for this checkout")
    install_path_dependencies(manifest, env, layer, prefix)
    return layer


def layer_base(layer: str) -> str | None:
    """The prefix bin/ a venv layer was made over (pyvenv.cfg's home), if it exists."""
    try:
        with open(os.path.join(layer, "pyvenv.cfg")) as handle:
            return dict(re.findall(r"^(\w+)\s*=\s*(.*)$", handle.read(), re.MULTILINE)).get("home")
    except OSError:
        return None


def build_prefix(manifest: dict, env: str, prefix: str) -> None:
    """A fresh prefix: a CPython copy with an empty site-packages, the lock installed, libraries bundled."""
    if os.uname().machine != MACHINE:
        raise TwinError(f"the PyPI twin's locks are for linux {MACHINE}, this machine is {os.uname().machine}")
    base = find_python(python_minor(manifest, env))
    locked, local = lock_header(env).get("python", ""), python_version(base)
    if version_key(local) < version_key(locked):
        raise TwinError(f"{env} is locked for Python {locked}; the newest local CPython is {local}")
    step = progress(env, 4)
    step(f"copying CPython {local} into {prefix}")
    shutil.rmtree(prefix, ignore_errors=True)
    copy_python(base, prefix)
    python = env_python(manifest, env)
    with open(lock_path(env)) as handle:
        count = len(locked_packages(handle.read()))
    step(f"installing {count} packages")
    if count:  # an environment of Python alone (tools) has nothing to install
        # uv installs into the copy (which itself gets no pip) and checks every hash.
        run_checked(install_command(python, env), f"installing {env}")
    step("bundling system libraries")
    bundled = bundle_system_libs(prefix)
    step(f"compiling bytecode ({bundled} system libraries bundled)")
    # Bytecode for everything, at build time: images are read-only and must start fast.
    # Quiet: vendored old code warns about its escape sequences, one stderr line each.
    run_checked([python, "-W", "ignore::SyntaxWarning", "-m", "compileall", "-q", "-j0", os.path.join(prefix, "lib")],
                f"compiling {env}", allowed=(0, 1), quiet=True)  # 1: some packages ship files for newer Pythons


def install_command(python: str, env: str) -> list[str]:
    """Install exactly the lock into the interpreter's prefix, every file checked against its hash.

    Files are hard links into uv's cache (a copy where the cache is on another filesystem): the
    environments of one Python share their packages' disk with the cache (py311 and py311-runtime
    cost one copy, and a run that builds six environments fits in half the disk). A link outlives
    `uv cache clean`; the one thing the build changes in place, a library's RUNPATH, is patched on a
    copy of its own (own_copy)."""
    return uv_pip("install", "--python", python, "--no-deps", "--require-hashes", "--link-mode", "hardlink",
                  "-r", lock_path(env))


def progress(env: str, steps: int):
    """A printer of one numbered progress line per build step."""
    count = iter(range(1, steps + 1))
    return lambda what: print(f"building {env} ({next(count)}/{steps}): {what} ...", file=sys.stderr)


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def install_path_dependencies(manifest: dict, env: str, layer: str, prefix: str) -> None:
    """Install the environment's path dependencies from this checkout into its ``layer`` over
    ``prefix``, unless they are already installed from here."""
    python = os.path.join(layer, "bin", "python")
    for name, spec in path_dependencies(manifest, env).items():
        source = os.path.normpath(os.path.join(ROOT, spec["path"]))
        editable = bool(spec.get("editable"))
        if installed_from(layer, name) == (source, editable):
            continue
        print(f"{env}: installing {name} from {source}{' (editable)' if editable else ''} ...", file=sys.stderr)
        command = uv_pip("install", "--python", python, "--no-deps", "--link-mode", "copy")
        if site_packages_has(prefix, "setuptools"):  # the build backend is there: no download
            command.append("--no-build-isolation")
        run_checked([*command, *(["--editable", source] if editable else [source])], f"installing {name}")


def site_packages_has(prefix: str, name: str) -> list[str]:
    """The dist-info folders of a distribution installed in the prefix."""
    pattern = re.sub(r"[-_.]+", "_", name).lower() + "-*.dist-info"
    return glob.glob(os.path.join(prefix, "lib", "python3.*", "site-packages", pattern))


def installed_from(prefix: str, name: str) -> tuple[str, bool] | None:
    """The local folder a distribution was installed from and whether editably (its
    direct_url.json), if any."""
    for info in site_packages_has(prefix, name):
        try:
            with open(os.path.join(info, "direct_url.json")) as handle:
                direct = json.load(handle)
            url = urllib.parse.urlparse(direct["url"])
        except (OSError, ValueError, KeyError):
            continue
        if url.scheme == "file":
            editable = bool(direct.get("dir_info", {}).get("editable"))
            return os.path.normpath(urllib.parse.unquote(url.path)), editable
    return None


def copy_python(python: str, prefix: str) -> None:
    """Copy a CPython install without its site-packages, made relocatable."""
    source = os.path.dirname(os.path.dirname(python))
    minor = re.search(r"python(3\.\d+)$", python).group(1)
    stdlib = os.path.join("lib", f"python{minor}")
    trimmed = tuple(os.path.join(source, stdlib, part) for part in TRIM)
    site_packages = os.path.join(source, stdlib, "site-packages")

    def ignore(folder: str, names: list[str]) -> list[str]:
        if folder == site_packages:  # keep the folder, empty: the base's packages are not ours
            return names
        drop = {"include", "share"} if folder == source else set()
        if folder == os.path.join(source, "bin"):  # the base's console scripts belong to its packages
            return [n for n in names if not re.fullmatch(r"python3?(\.\d+)?", n)]
        return [n for n in names if n in drop or n.endswith(".a") or os.path.join(folder, n).startswith(trimmed)]

    shutil.copytree(source, prefix, ignore=ignore, symlinks=True)
    # pyenv links libpython by absolute RUNPATH: point it next to the copy instead.
    binary = os.path.join(prefix, "bin", f"python{minor}")
    run_checked(["patchelf", "--set-rpath", "$ORIGIN/../lib", binary], "patching the interpreter")


def bundle_system_libs(prefix: str) -> int:
    """Copy the non-base system libraries the prefix links into prefix/lib, and point
    the files that need them there, so the prefix runs on a bare base image; returns their count."""
    libdir = os.path.join(prefix, "lib")
    needers: dict[str, set[str]] = {}
    for path in elf_files(prefix):
        result = subprocess.run(["ldd", path], capture_output=True, text=True)
        for name, target in re.findall(r"^\s*(\S+) => (/\S+)", result.stdout, re.MULTILINE):
            if not target.startswith(prefix + os.sep) and not BASE_LIBS.fullmatch(name):
                needers.setdefault(target, set()).add(path)
    for target, paths in sorted(needers.items()):
        shutil.copy2(target, os.path.join(libdir, os.path.basename(target)))
        for path in paths:
            origin = "$ORIGIN/" + os.path.relpath(libdir, os.path.dirname(path))
            own_copy(path)
            run_checked(["patchelf", "--add-rpath", origin, path], "pointing a library at its bundled dependencies")
    return len(needers)


def own_copy(path: str) -> None:
    """Give a hard-linked file an inode of its own, so that patching it in place leaves the
    other links (uv's cache, other environments) as they were."""
    if os.stat(path).st_nlink > 1:
        temporary = f"{path}.{os.getpid()}.copy"
        shutil.copy2(path, temporary)
        os.replace(temporary, path)


def elf_files(prefix: str):
    """Shared objects and the interpreter: everything ldd can resolve."""
    for folder, _dirs, names in os.walk(prefix):
        for name in names:
            path = os.path.join(folder, name)
            if (".so" in name or re.fullmatch(r"python3\.\d+", name)) and not os.path.islink(path):
                with open(path, "rb") as handle:
                    if handle.read(4) == b"\x7fELF":
                        yield path


def resolve_default(manifest: dict, env: str) -> str:
    if env == "default":
        return manifest.get("tool", {}).get("pypi-twin", {}).get("default-environment", "py312")
    return env


# ---- running tasks -------------------------------------------------------------


def task_environment(manifest: dict, env: str | None, task: str) -> tuple[str, dict]:
    """The environment a task runs in and its definition there, as `pixi run` chooses.

    A task exists in the environments whose features define it (``[tasks]`` is the
    default feature's, absent where ``no-default-feature`` is set). ``-e ENV`` must name
    one of them. Without it: the default environment's task, moved to the environment
    its ``default-environment`` names if that one has the task too; else the only
    environment that has it; else the one its ``default-environment`` names."""
    spec = manifest_tasks(manifest).get(task)
    if spec is None:
        raise TwinError(f"unknown task {task!r}; pixi.toml has {', '.join(sorted(manifest_tasks(manifest)))}")
    names = ["default", *(e for e in environments(manifest) if e != "default")]
    having = {e: as_task(environment_tasks(manifest, e)[task]) for e in names if task in environment_tasks(manifest, e)}
    if env is not None:
        if env in having:
            return env, having[env]
        if env not in names:  # an environment pixi.toml lacks: build() says so
            return env, as_task(spec)
        raise TwinError(f"task {task!r} is not in environment {env}; run it in {' or '.join(having) or 'none'} "
                        "(pixi runs a task only where a feature of the environment defines it)")
    if "default" in having:
        preferred = having["default"].get("default-environment")
        if preferred in having and preferred != "default":
            return preferred, having[preferred]
        return "default", having["default"]
    if len(having) == 1:
        return next(iter(having.items()))
    for candidate, definition in having.items():
        if definition.get("default-environment") == candidate:
            return candidate, definition
    raise TwinError(f"task {task!r} is in several environments ({', '.join(having)}): name one with -e")


def as_task(spec) -> dict:
    """A task's table (a bare string is its command)."""
    return spec if isinstance(spec, dict) else {"cmd": spec}


def run_task(manifest: dict, env: str | None, task: str, args: list[str]) -> int:
    """Run a pixi task with its depends-on, each in its environment, like `pixi run`:
    ``env`` is -e's (None: the task's default-environment, as task_environment says).

    Unlike pixi, which stops at the first failing dependency, every dependency runs (a
    failing py310 hides none of py311-py313 in test-all) and the last lines say which
    passed, failed or did not run; the exit is the first failure's. A task's own command
    does not run after a failed dependency."""
    env, spec = task_environment(manifest, env, task)
    env = resolve_default(manifest, env)
    deps = spec.get("depends-on", [])
    deps = [{"task": dep} if isinstance(dep, str) else dep for dep in (deps if isinstance(deps, list) else [deps])]
    outcomes: list[tuple[str, int | None, str]] = []  # (task [env] (seconds), exit code or None: did not run, why)
    for dep in deps:
        dep_env = resolve_default(manifest, dep.get("environment", env))
        started = time.monotonic()
        try:
            code, why = run_task(manifest, dep_env, dep["task"], []), ""
        except TwinError as exc:
            print(f"pypi_env: error: {exc}", file=sys.stderr)
            code, why = None, str(exc)
        outcomes.append((f"{dep['task']} [{dep_env}] ({time.monotonic() - started:.0f} s)", code, why))
    if "cmd" in spec and any(code != 0 for _, code, _ in outcomes):
        outcomes.append((f"{task} [{env}]", None, "a dependency failed"))
    elif "cmd" in spec:
        outcomes.append((f"{task} [{env}]", run_own_command(manifest, env, task, spec, args), ""))
    if not deps:
        return (outcomes[0][1] or 0) if outcomes else 0
    report_outcomes(task, outcomes)
    failures = [code for _, code, _ in outcomes if code]
    return failures[0] if failures else 2 if any(code is None for _, code, _ in outcomes) else 0


def report_outcomes(task: str, outcomes: list[tuple[str, int | None, str]]) -> None:
    """The last lines of a task with dependencies: what passed, failed or did not run."""
    passed = [label for label, code, _ in outcomes if code == 0]
    failed = [f"{label} (exit {code})" for label, code, _ in outcomes if code]
    skipped = [f"{label} ({why})" for label, code, why in outcomes if code is None]
    for what, labels in (("passed", passed), ("failed", failed), ("did not run", skipped)):
        print(f"pypi-twin: {task}: {what}: {', '.join(labels) or 'none'}", file=sys.stderr)


def run_own_command(manifest: dict, env: str, task: str, spec: dict, args: list[str]) -> int:
    """A task's own command, in its environment, from the workspace root."""
    prefix = build(manifest, env)
    layer = workspace_layer(manifest, env, prefix)
    cmd = spec["cmd"] if isinstance(spec["cmd"], str) else shlex.join(spec["cmd"])
    cmd, args = render_args(cmd, spec.get("args", []), args)
    path = os.pathsep.join(dict.fromkeys([os.path.join(layer, "bin"), os.path.join(prefix, "bin")]))
    # Tasks run in the workspace root; the caller's folder is INIT_CWD, as under pixi (kept when set).
    environ = dict(os.environ, PATH=path + os.pathsep + os.environ.get("PATH", ""),
                   CONDA_PREFIX=prefix, PIXI_ENVIRONMENT_NAME=env, PYPI_TWIN="1",
                   INIT_CWD=os.environ.get("INIT_CWD") or os.getcwd(), **spec.get("env", {}))
    print(f"pypi-twin: [{env}] {cmd} {shlex.join(args)}".rstrip(), file=sys.stderr)
    return subprocess.run(["bash", "-c", f'{cmd} "$@"', task, *args], cwd=ROOT, env=environ).returncode


def render_args(cmd: str, declared: list, given: list[str]) -> tuple[str, list[str]]:
    """Fill a task's declared arguments (``{{ name }}``) from the command line, as pixi does;
    a task without declared arguments gets the extra arguments appended."""
    if not declared:
        return cmd, given
    if len(given) > len(declared):
        raise TwinError(f"too many arguments: the task takes {len(declared)}")
    for index, arg in enumerate(declared):
        arg = {"arg": arg} if isinstance(arg, str) else arg
        if index < len(given):
            value = given[index]
        elif "default" in arg:
            value = arg["default"]
        else:
            raise TwinError(f"missing task argument {arg['arg']!r}")
        if "choices" in arg and value not in arg["choices"]:
            raise TwinError(f"{arg['arg']} must be one of {', '.join(arg['choices'])}, not {value!r}")
        cmd = re.sub(r"\{\{\s*" + re.escape(arg["arg"]) + r"\s*\}\}", shlex.quote(value), cmd)
    return cmd, []


def task_list(manifest: dict) -> str:
    """pixi.toml's tasks (every feature's) with their descriptions, as `pixi task list` prints them."""
    tasks = manifest_tasks(manifest)
    width = max((len(name) for name in tasks), default=0)
    lines = [f"  {name.ljust(width)}  {spec.get('description', '') if isinstance(spec, dict) else ''}".rstrip()
             for name, spec in sorted(tasks.items())]
    return "\n".join(["Tasks of pixi.toml:", *lines])


def run_checked(command: list[str], what: str, allowed: tuple[int, ...] = (0,), quiet: bool = False) -> None:
    result = subprocess.run(command, stdout=subprocess.DEVNULL if quiet else None)
    if result.returncode not in allowed:
        raise TwinError(f"{what} failed (exit {result.returncode}): {shlex.join(command)}")


# ---- command line ----------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_lock = sub.add_parser("lock", help="resolve environments from pixi.toml into containers/locks/")
    p_lock.add_argument("--upgrade", action="store_true", help="newest versions, not the current lock's")
    p_lock.add_argument("envs", nargs="*", help="environments (default: every one)")
    sub.add_parser("check", help="exit 1 if any lock is stale against pixi.toml")
    p_build = sub.add_parser("build", help="build environments from their locks")
    p_build.add_argument("envs", nargs="*", help="environments (default: every one)")
    manifest = load()
    p_run = sub.add_parser("run", help="run a pixi task, like `pixi run [-e ENV] TASK ARGS`",
                           epilog=task_list(manifest), formatter_class=argparse.RawDescriptionHelpFormatter)
    p_run.add_argument("-e", "--environment", help="environment (default: the task's or pixi's default)")
    p_run.add_argument("task", nargs="?", help="a task of pixi.toml (without one: the list below)")
    p_run.add_argument("args", nargs=argparse.REMAINDER)
    p_path = sub.add_parser("path", help="print an environment's prefix")
    p_path.add_argument("env")
    args = parser.parse_args(argv)
    named = [e for e in environments(manifest) if e != "default"]
    try:
        if args.command == "lock":
            for env in lock_order(args.envs or named):
                lock(manifest, env, args.upgrade)
        elif args.command == "check":
            stale = stale_locks(manifest)
            if stale:
                print(f"stale PyPI locks: {', '.join(stale)} (run containers/pypi_env.py lock)", file=sys.stderr)
                return 1
            print(f"{len(named)} PyPI locks match pixi.toml")
        elif args.command == "build":
            for env in args.envs or named:
                print(build(manifest, env))
        elif args.command == "run" and not args.task:
            print(task_list(manifest))  # as `pixi run` without a task
        elif args.command == "run":
            return run_task(manifest, args.environment, args.task, args.args)
        elif args.command == "path":
            print(env_path(resolve_default(manifest, args.env)))
    except (TwinError, ManifestError) as exc:
        print(f"pypi_env: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
