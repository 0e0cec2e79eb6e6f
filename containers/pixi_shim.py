#!/usr/bin/env python3
"""`pixi`, as far as this project's workflows use it, answered by the PyPI twin.

Put on PATH as `pixi` (the workflow replay does), it takes the commands the
workflows and README run and behaves as pixi does where conda-forge is out of
reach:

    pixi run [-e ENV] TASK [ARGS]       the task, in the twin's environment
    pixi install [--locked] [-e ENV]    build the environment(s); --locked fails without pixi.lock
    pixi lock [--check] | pixi update   fail: resolving needs conda-forge
    pixi --version
"""

from __future__ import annotations

import argparse
import os
import sys

import manifest as pixi_toml
import pypi_env

LOCK = os.path.join(pixi_toml.ROOT, "pixi.lock")


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
    p_run = sub.add_parser("run")
    p_run.add_argument("-e", "--environment")
    p_run.add_argument("--locked", action="store_true")
    p_run.add_argument("task")
    p_run.add_argument("args", nargs=argparse.REMAINDER)
    p_install = sub.add_parser("install")
    p_install.add_argument("-e", "--environment", action="append", default=[])
    p_install.add_argument("--locked", action="store_true")
    p_install.add_argument("-a", "--all", action="store_true")
    p_lock = sub.add_parser("lock")
    p_lock.add_argument("--check", action="store_true")
    sub.add_parser("update")
    args = parser.parse_args(argv)
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
