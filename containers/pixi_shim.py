#!/usr/bin/env python3
"""`pixi`, as far as this project's workflows use it, answered by the PyPI twin.

Put on PATH as `pixi` (the workflow replay does), it takes the commands the
workflows and README run and behaves as pixi does where conda-forge is out of
reach:

    pixi run [-e ENV] TASK [ARGS]       the task, in the twin's environment
    pixi install [--locked] [-e ENV]    build the environment(s); --locked fails without pixi.lock
    pixi lock [--check] | pixi update   fail: resolving needs conda-forge
    pixi --version

Each subcommand finds its manifest as pixi does: `--manifest-path PATH` (`-m`; a pixi.toml
or the folder holding it, given after the subcommand, before the task), otherwise pixi.toml
(or a pyproject.toml with [tool.pixi]) searched from the current folder upwards, otherwise
$PIXI_PROJECT_MANIFEST; none is an error, as under pixi. The shim serves only its own
checkout: any other manifest found is refused. Tasks still run in the workspace root with the
caller's folder as INIT_CWD.
"""

from __future__ import annotations

import argparse
import os
import sys

import manifest as pixi_toml
import pypi_env

LOCK = os.path.join(pixi_toml.ROOT, "pixi.lock")
MANIFEST = os.path.join(pixi_toml.ROOT, "pixi.toml")


class NoManifest(Exception):
    """pixi's own words for a manifest it cannot find."""


def is_pixi_pyproject(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            return any(line.strip().startswith("[tool.pixi") for line in handle)
    except OSError:
        return False


def find_manifest(manifest_path: str | None, cwd: str | None = None) -> str:
    """The manifest pixi would use: --manifest-path (a file or its folder), else pixi.toml or a
    pyproject.toml with [tool.pixi] from ``cwd`` upwards, else $PIXI_PROJECT_MANIFEST."""
    cwd = cwd or os.getcwd()
    if manifest_path:
        path = os.path.join(cwd, os.path.expanduser(manifest_path))
        if os.path.isdir(path):
            path = os.path.join(path, "pixi.toml")
        if not os.path.isfile(path):
            raise NoManifest(f"could not find '{path}'")
        return os.path.abspath(path)
    folder = os.path.abspath(cwd)
    while True:
        if os.path.isfile(os.path.join(folder, "pixi.toml")):
            return os.path.join(folder, "pixi.toml")
        if is_pixi_pyproject(os.path.join(folder, "pyproject.toml")):
            return os.path.join(folder, "pyproject.toml")
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    from_env = os.environ.get("PIXI_PROJECT_MANIFEST")
    if from_env:
        if not os.path.isfile(from_env):
            raise NoManifest(f"could not find '{from_env}'")
        return os.path.abspath(from_env)
    raise NoManifest(f"could not find pixi.toml or pyproject.toml with tool.pixi at directory {os.path.abspath(cwd)}")


def own_manifest(manifest_path: str | None) -> int:
    """0 when the manifest pixi would use is this checkout's pixi.toml, else pixi's error (or the
    shim's refusal) printed and 1."""
    try:
        found = find_manifest(manifest_path)
    except NoManifest as error:
        print(f"Error:   × {error}", file=sys.stderr)
        print("  help: run it inside the workspace, or name it: pixi run --manifest-path PATH/TO/pixi.toml ...",
              file=sys.stderr)
        return 1
    if not os.path.exists(found) or not os.path.samefile(found, MANIFEST):
        return fail(f"the manifest is {found}, but this shim only serves its own checkout's {MANIFEST}; "
                    f"run {os.path.join(pixi_toml.ROOT, 'containers', 'pixi_shim.py')} of that checkout, "
                    f"or pass --manifest-path {MANIFEST}")
    return 0


def fail(message: str) -> int:
    print(f"pixi (PyPI twin): error: {message}", file=sys.stderr)
    return 1


def install(environments: list[str], locked: bool) -> int:
    """Build the named environments (pixi's default one when none is named)."""
    if locked and not os.path.exists(LOCK):
        return fail("--locked was given but pixi.lock does not exist; run `pixi lock` where conda-forge "
                    "is reachable (the lock workflow)")
    return pypi_env.main(["build", *environments])


def lock(check: bool) -> int:
    if check and not os.path.exists(LOCK):
        return fail("pixi.lock does not exist, so it is not up to date with pixi.toml")
    return fail("cannot reach conda-forge from this machine: pixi.lock can only be written by pixi "
                "where conda-forge is reachable (the lock workflow); the twin's locks are containers/locks/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pixi", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version="pixi 0.0.0-pypi-twin")
    sub = parser.add_subparsers(dest="command", required=True)
    # pixi's --manifest-path is an option of each subcommand (`pixi --manifest-path X run` is an error).
    workspace = argparse.ArgumentParser(add_help=False)
    workspace.add_argument("-m", "--manifest-path")
    p_run = sub.add_parser("run", parents=[workspace])
    p_run.add_argument("-e", "--environment")
    p_run.add_argument("--locked", action="store_true")
    p_run.add_argument("task")
    p_run.add_argument("args", nargs=argparse.REMAINDER)
    p_install = sub.add_parser("install", parents=[workspace])
    p_install.add_argument("-e", "--environment", action="append", default=[])
    p_install.add_argument("--locked", action="store_true")
    p_install.add_argument("-a", "--all", action="store_true")
    p_lock = sub.add_parser("lock", parents=[workspace])
    p_lock.add_argument("--check", action="store_true")
    sub.add_parser("update", parents=[workspace])
    args = parser.parse_args(argv)
    if own_manifest(args.manifest_path):
        return 1
    if args.command == "run":
        if args.locked and not os.path.exists(LOCK):
            return fail("--locked was given but pixi.lock does not exist")
        return pypi_env.main(["run", *(["-e", args.environment] if args.environment else []),
                              args.task, *args.args])
    if args.command == "install":
        named = [] if args.all else (args.environment or ["default"])
        return install(named, args.locked)
    return lock(getattr(args, "check", False))


if __name__ == "__main__":
    sys.exit(main())
