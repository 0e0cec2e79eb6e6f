#!/usr/bin/env python3
"""pixi.toml, read: the one small module that images, workflows, tests and the
PyPI twin share. Standard library only (tomllib, Python >= 3.11), so a bare
GitHub runner can call it before anything is installed.

    containers/manifest.py pythons        the Python environments as JSON (the workflows' matrix)
    containers/manifest.py lock-state     whether pixi.lock exists, as GitHub step outputs
    containers/manifest.py requires-pixi  the newest pixi feature used, against requires-pixi
    containers/manifest.py pixi-version   the pixi the workflows and the Dockerfile use (GitHub step output)
    containers/manifest.py update-schema VERSION   download pixi's manifest schema of VERSION
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (tests in py310); the tools themselves need 3.11
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(ROOT, "pixi.toml")
SCHEMA = os.path.join(ROOT, "containers", "pixi-schema", "schema.json")
SCHEMA_URL = "https://pixi.sh/v{version}/schema/manifest/schema.json"

Manifest = dict[str, Any]


def load(path: str = MANIFEST) -> Manifest:
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def environments(manifest: Manifest) -> dict[str, list[str]]:
    """Environment name -> features, as pixi composes them (default included)."""
    envs = {}
    for name, value in manifest.get("environments", {}).items():
        envs[name] = value if isinstance(value, list) else value.get("features", [])
    return envs


def has_default_feature(manifest: Manifest, env: str) -> bool:
    """Whether the environment takes the default feature: the top-level ``[dependencies]``,
    ``[pypi-dependencies]``, ``[target.*]`` and ``[tasks]`` (pixi's ``no-default-feature``)."""
    value = manifest.get("environments", {}).get(env)
    return not (isinstance(value, dict) and value.get("no-default-feature", False))


def features_of(manifest: Manifest, env: str) -> list[dict[str, Any]]:
    """The feature tables an environment is made of, lowest priority first: the default
    feature (the manifest's top level) unless the environment opts out, then its own."""
    own = [manifest.get("feature", {}).get(name, {}) for name in environments(manifest).get(env, [])]
    return ([manifest] if has_default_feature(manifest, env) else []) + own


def tasks(manifest: Manifest) -> dict[str, Any]:
    """Every task of the manifest: ``[tasks]`` and each feature's ``[feature.X.tasks]``
    (what `pixi task list` shows)."""
    found = dict(manifest.get("tasks", {}))
    for feature in manifest.get("feature", {}).values():
        for name, spec in feature.get("tasks", {}).items():
            found.setdefault(name, spec)
    return found


def environment_tasks(manifest: Manifest, env: str) -> dict[str, Any]:
    """The tasks an environment offers: those of its features (pixi runs a task only in an
    environment whose features define it; without the default feature, ``[tasks]`` is not there)."""
    found: dict[str, Any] = {}
    for feature in features_of(manifest, env):
        found.update(feature.get("tasks", {}))
    return found


def python_environments(manifest: Manifest) -> list[str]:
    """The one list of supported Pythons: pixi.toml's pyXY environments. Tasks,
    workflow matrices, images and tests all derive from it."""
    return [e for e in environments(manifest) if re.fullmatch(r"py3\d+", e)]


def merged(manifest: Manifest, env: str, table: str, platform: str) -> dict[str, Any]:
    """The ``dependencies`` or ``pypi-dependencies`` of an environment on a platform; an
    environment with ``no-default-feature`` gets only its features' ones."""
    if env not in environments(manifest):
        raise KeyError(env)
    layers = []
    for spec in features_of(manifest, env):
        layers += [spec.get(table, {}), spec.get("target", {}).get(platform, {}).get(table, {})]
    result: dict[str, Any] = {}
    for layer in layers:
        result.update(layer)
    return result


class ManifestError(Exception):
    """pixi.toml breaks a rule of this project; printed as one line."""


def python_minor(manifest: Manifest, env: str) -> str:
    """'3.12' for an environment that pins python = "3.12.*"."""
    spec = merged(manifest, env, "dependencies", "linux-64").get("python")
    match = re.fullmatch(r"(3\.\d+)\.\*", spec or "")
    if not match:
        raise ManifestError(f"environment {env} must pin python as '3.X.*', not {spec!r}")
    return match.group(1)


def python_tag(manifest: Manifest, env: str) -> str:
    """The minor as image names and test pickles spell it: '3_12'."""
    return python_minor(manifest, env).replace(".", "_")


def image_basename(manifest: Manifest, env: str) -> str:
    """numerai-predict's image name for an environment's Python."""
    return f"numerai_predict_py_{python_tag(manifest, env)}"


# ---- which pixi reads this manifest -------------------------------------------

# Manifest features and the first pixi release that accepts them, from pixi's
# CHANGELOG.md and manifest parser (prefix-dev/pixi); an older pixi rejects the
# whole manifest, so requires-pixi must be at least the newest one used. The
# third column says where features_used() looks for each (tasks.* meaning
# [tasks] and every [feature.X.tasks]).
PIXI_FEATURES: list[tuple[str, tuple[int, int], str]] = [
    # 0.21.0: "Add `no-default-feature` option to environments" (prefix-dev/pixi#1092).
    ("environments without the default feature", (0, 21), "environments.*.no-default-feature"),
    ("requires-pixi", (0, 44), "workspace.requires-pixi"),
    ("task args with defaults", (0, 45), "tasks.*.args[].default"),
    ("{{ }} templates in task commands", (0, 46), "tasks.*.cmd containing {{ }}"),
    ("depends-on naming an environment", (0, 46), "tasks.*.depends-on[].environment"),
    # 0.63.0: "`default_environment` option for specifying the default environment for a
    # task" (prefix-dev/pixi#5164); the manifest key is `default-environment`.
    ("task default-environment", (0, 63), "tasks.*.default-environment"),
    ("task arg choices", (0, 65), "tasks.*.args[].choices"),
    ("inline environment dependencies", (0, 74), "environments.*.dependencies"),
    # Not a manifest key but the same rule: pixi 0.68.0 (2026-05-07) writes pixi.lock in format v7,
    # which older pixi cannot read, so a lock written by the pinned pixi needs requires-pixi >= 0.68.
    ("pixi.lock format v7", (0, 68), "tool.numerai-predict.pixi-version >= 0.68 (the lock it writes)"),
]


def pixi_version(manifest: Manifest) -> str:
    """The one pixi version the workflows (setup-pixi) and the Dockerfile's build stage use:
    pixi.toml's [tool.numerai-predict] pixi-version."""
    version = manifest.get("tool", {}).get("numerai-predict", {}).get("pixi-version", "")
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise ManifestError(f"[tool.numerai-predict] pixi-version must be 'X.Y.Z', not {version!r}")
    return version


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def features_used(manifest: Manifest) -> list[tuple[str, tuple[int, int]]]:
    """The features of PIXI_FEATURES that this manifest uses, with their first pixi."""
    used = set()
    if "requires-pixi" in manifest.get("workspace", {}):
        used.add("requires-pixi")
    every_task = [*manifest.get("tasks", {}).values(),
                  *(t for f in manifest.get("feature", {}).values() for t in f.get("tasks", {}).values())]
    for task in every_task:
        if not isinstance(task, dict):
            continue
        if "default-environment" in task:
            used.add("task default-environment")
        args = [a for a in task.get("args", []) if isinstance(a, dict)]
        if any("default" in a for a in args):
            used.add("task args with defaults")
        if any("choices" in a for a in args):
            used.add("task arg choices")
        if "{{" in str(task.get("cmd", "")):
            used.add("{{ }} templates in task commands")
        deps = task.get("depends-on", [])
        if any(isinstance(d, dict) and "environment" in d for d in (deps if isinstance(deps, list) else [deps])):
            used.add("depends-on naming an environment")
    if any(isinstance(e, dict) and ("dependencies" in e or "pypi-dependencies" in e)
           for e in manifest.get("environments", {}).values()):
        used.add("inline environment dependencies")
    if any(isinstance(e, dict) and e.get("no-default-feature") for e in manifest.get("environments", {}).values()):
        used.add("environments without the default feature")
    pinned = manifest.get("tool", {}).get("numerai-predict", {}).get("pixi-version")
    if pinned and version_tuple(pixi_version(manifest)) >= (0, 68):
        used.add("pixi.lock format v7")
    return [(name, version) for name, version, _ in PIXI_FEATURES if name in used]


def required_pixi(manifest: Manifest) -> tuple[int, int]:
    """The lower bound of ``requires-pixi`` ('>=0.65' -> (0, 65))."""
    spec = manifest.get("workspace", {}).get("requires-pixi", "")
    match = re.fullmatch(r"\s*>=\s*(\d+)\.(\d+)(?:\.\d+)?\s*", spec)
    if not match:
        raise ManifestError(f"requires-pixi must be '>=X.Y', not {spec!r}")
    return int(match.group(1)), int(match.group(2))


def too_new_features(manifest: Manifest) -> list[str]:
    """Features used that the pixi named by requires-pixi would reject."""
    floor = required_pixi(manifest)
    return [f"{name} (pixi {v[0]}.{v[1]})" for name, v in features_used(manifest) if v > floor]


def update_schema(version: str) -> None:
    """Replace the vendored schema with pixi's own for ``version`` (networked)."""
    import urllib.request

    url = SCHEMA_URL.format(version=version)
    with urllib.request.urlopen(url, timeout=60) as response:
        schema = json.load(response)
    if schema.get("$id") != url:
        raise ManifestError(f"{url} names itself {schema.get('$id')!r}, not that version")
    with open(SCHEMA + ".tmp", "w") as handle:
        json.dump(schema, handle, indent=2)
        handle.write("\n")
    os.replace(SCHEMA + ".tmp", SCHEMA)
    print(f"containers/pixi-schema/schema.json is now pixi {version}'s; update its README and pixi.toml's pixi-version")


# ---- command line ---------------------------------------------------------------


def github_output(values: dict[str, str]) -> None:
    """Write step outputs where GitHub Actions reads them (stdout elsewhere)."""
    lines = "".join(f"{key}={value}\n" for key, value in values.items())
    path = os.environ.get("GITHUB_OUTPUT")
    if path:
        with open(path, "a") as handle:
            handle.write(lines)
    print(lines, end="")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    manifest = load()
    if argv == ["pythons"]:
        print(json.dumps(python_environments(manifest)))
        return 0
    if argv == ["lock-state"]:
        locked = os.path.exists(os.path.join(ROOT, "pixi.lock"))
        if not locked:
            # A workflow notice: jobs that need the lock are skipped, visibly.
            print("::notice title=pixi.lock does not exist yet::Tests solve pixi.toml afresh and images are "
                  "skipped until the lock workflow's pull request (which creates pixi.lock) is merged.")
        github_output({"locked": json.dumps(locked)})
        return 0
    if argv == ["requires-pixi"]:
        too_new = too_new_features(manifest)
        if too_new:
            print(f"manifest: requires-pixi is too low for: {', '.join(too_new)}", file=sys.stderr)
            return 1
        print(f"requires-pixi {manifest['workspace']['requires-pixi']} covers every feature used")
        return 0
    if argv == ["pixi-version"]:
        github_output({"version": pixi_version(manifest)})
        return 0
    if len(argv) == 2 and argv[0] == "update-schema":
        try:
            update_schema(argv[1])
        except (OSError, ValueError, ManifestError) as exc:
            print(f"manifest: error: {exc}", file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
