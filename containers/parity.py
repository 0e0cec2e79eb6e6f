#!/usr/bin/env python3
"""Library parity with numerai-predict: which libraries its image for a Python carries that a
participant's pickle may reference, and how each environment of pixi.toml answers for them.

    containers/parity.py refresh CHECKOUT   rewrite [upstream.py3XY] from a numerai-predict checkout's
                                            py3.X/requirements.txt (Pythons the checkout lacks are kept)
    containers/parity.py report             every environment's answer: here, or the exception and why

containers/parity.toml holds the data: [modules] (distribution -> the module a pickle names: the
libraries a model is made of, not the HTTP, notebook, CUDA and build tooling an image also
carries), [upstream.pyXY] (distribution -> numerai-predict's version for that Python) and
[exceptions.pyXY] (distribution -> why the environment goes without it). Standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

from manifest import load, merged, python_environments

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (the parity test runs in py310 too), as manifest.py does
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "containers", "parity.toml")
# What one distribution of numerai-predict's is called in pixi.toml, where the names differ
# (conda-forge's names, CPU-only builds, TensorFlow's nightly for 3.14).
SAME_AS = {
    "torch": ("pytorch",),
    "xgboost": ("py-xgboost",),
    "tensorflow": ("tensorflow-cpu", "tf-nightly"),
    "huggingface-hub": ("huggingface_hub",),
}
TWIN_PREFIX = "pypi-twin: "  # an exception that holds for the PyPI twin only


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read(path: str = DATA) -> dict:
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def declared(manifest: dict, env: str) -> set[str]:
    """Every distribution pixi.toml gives ``env`` on any platform, normalized."""
    names = set()
    for platform in manifest["workspace"]["platforms"]:
        for table in ("dependencies", "pypi-dependencies"):
            names |= {normal(n) for n in merged(manifest, env, table, platform)}
    return names


def answer(data: dict, manifest: dict, env: str, distribution: str) -> str | None:
    """None when pixi.toml gives ``env`` the distribution; else the exception's reason ('' if none)."""
    names = {normal(distribution), *(normal(n) for n in SAME_AS.get(normal(distribution), ()))}
    if names & declared(manifest, env):
        return None
    return data.get("exceptions", {}).get(env, {}).get(distribution, "")


def twin_only(data: dict, env: str) -> set[str]:
    """The distributions pixi.toml gives ``env`` that its PyPI twin goes without."""
    return {d for d, why in data.get("exceptions", {}).get(env, {}).items() if why.startswith(TWIN_PREFIX)}


def expected_modules(data: dict, env: str, twin: bool) -> dict[str, str]:
    """distribution -> module for what ``env`` must import: upstream's list minus its exceptions
    (and, in the PyPI twin, the twin's own)."""
    excepted = {d for d, why in data.get("exceptions", {}).get(env, {}).items()
                if twin or not why.startswith(TWIN_PREFIX)}
    return {d: data["modules"][d] for d in data["upstream"].get(env, {}) if d not in excepted}


# ---- refresh ------------------------------------------------------------------------


def upstream_requirements(checkout: str) -> tuple[str, dict[str, dict[str, str]]]:
    """(commit, {pyXY: {distribution: version}}) from the requirements files of a numerai-predict
    clone's HEAD (read through git: a bare mirror has no work tree)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", checkout, *args], capture_output=True, text=True, check=True).stdout

    found = {}
    for path in git("ls-tree", "-r", "--name-only", "HEAD").splitlines():
        match = re.fullmatch(r"py(3)\.(\d+)/requirements\.txt", path)
        if match:
            pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", git("show", f"HEAD:{path}"), re.MULTILINE))
            found[f"py{match[1]}{match[2]}"] = {normal(d): v for d, v in pins.items()}
    return git("rev-parse", "HEAD").strip(), found


def refresh(checkout: str) -> str:
    data = read()
    commit, found = upstream_requirements(checkout)
    left_out = set()
    for env, pins in found.items():
        data["upstream"][env] = {d: v for d, v in sorted(pins.items()) if d in data["modules"]}
        left_out |= set(pins) - set(data["modules"])
    data["source"]["commit"] = commit
    write(data)
    return ("not listed in [modules] (add a library a pickle can reference): "
            + ", ".join(sorted(left_out)))


def write(data: dict) -> None:
    """parity.toml: flat tables of strings, in a fixed order."""
    lines = ["# containers/parity.toml: see containers/parity.py (its refresh rewrites this file).", ""]

    def table(name: str, values: dict[str, str]) -> None:
        lines.append(f"[{name}]")
        lines.extend(f'{key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else repr(key)} = {quote(value)}'
                     for key, value in values.items())
        lines.append("")

    table("source", data["source"])
    table("modules", data["modules"])
    for env in sorted(data["upstream"]):
        table(f"upstream.{env}", data["upstream"][env])
    for env in sorted(data.get("exceptions", {})):
        table(f"exceptions.{env}", data["exceptions"][env])
    with open(DATA, "w") as handle:
        handle.write("\n".join(lines))


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def report() -> str:
    data, manifest = read(), load()
    rows = []
    for env in python_environments(manifest):
        for distribution in data["upstream"].get(env, {}):
            why = answer(data, manifest, env, distribution)
            if why is None and distribution in twin_only(data, env):
                why = data["exceptions"][env][distribution]
            rows.append(f"{env:6} {distribution:28} {'here' if why is None else 'EXCEPTION: ' + (why or '?')}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_refresh = sub.add_parser("refresh", help="rewrite [upstream.*] from a numerai-predict checkout")
    p_refresh.add_argument("checkout")
    sub.add_parser("report", help="each environment's answer for each upstream library")
    args = parser.parse_args(argv)
    print(refresh(args.checkout) if args.command == "refresh" else report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
