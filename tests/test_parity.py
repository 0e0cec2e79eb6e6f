"""Library parity with numerai-predict (containers/parity.toml): every library its image for a
Python carries that a pickle may reference is in that environment of pixi.toml, or an exception
with its reason; and each environment imports every one it is meant to have."""

from __future__ import annotations

import importlib
import os
import sys

import manifest as pixi_toml
import parity
import pytest

HERE = f"py3{sys.version_info[1]}"
TWIN = os.environ.get("PYPI_TWIN") == "1"  # built by containers/pypi_env.py, not pixi


@pytest.fixture(scope="module")
def data():
    return parity.read()


def test_every_upstream_library_is_declared_or_excepted_with_a_reason(data):
    manifest = pixi_toml.load()
    missing = []
    for env in pixi_toml.python_environments(manifest):
        assert env in data["upstream"], f"{env}: no [upstream.{env}] in containers/parity.toml"
        for distribution in data["upstream"][env]:
            assert distribution in data["modules"], f"{distribution}: no module named in [modules]"
            if parity.answer(data, manifest, env, distribution) == "":
                missing.append(f"{env}: {distribution}")
    assert missing == [], "neither in pixi.toml nor an exception: " + ", ".join(missing)


def test_exceptions_are_not_stale(data):
    """An exception for a library pixi.toml gives the environment is only the PyPI twin's."""
    manifest = pixi_toml.load()
    stale = [f"{env}: {d}" for env, table in data.get("exceptions", {}).items() for d, why in table.items()
             if parity.answer(data, manifest, env, d) is None and not why.startswith(parity.TWIN_PREFIX)]
    assert stale == []


def test_twin_exceptions_are_what_the_twin_skips(data):
    """The PyPI twin's own exceptions are exactly the libraries [tool.pypi-twin.skip] leaves out."""
    import pypi_env

    manifest = pixi_toml.load()
    for env in pixi_toml.python_environments(manifest):
        skipped = {parity.normal(n) for n in pypi_env.excluded(manifest, env)}
        upstream = {parity.normal(d) for d in data["upstream"][env]}
        twin_only = {parity.normal(d) for d in parity.twin_only(data, env)}
        assert twin_only == skipped & upstream, env


def test_this_environment_imports_every_library_it_is_meant_to_have(data):
    if HERE not in data["upstream"]:
        pytest.skip(f"{HERE} is not one of numerai-predict's Pythons")
    expected = parity.expected_modules(data, HERE, twin=TWIN)
    excepted = {d for d, why in data.get("exceptions", {}).get(HERE, {}).items()
                if TWIN or not why.startswith(parity.TWIN_PREFIX)}
    assert set(expected) == set(data["upstream"][HERE]) - excepted and {"numpy", "pandas"} <= set(expected)
    failed = {}
    for distribution, module in expected.items():
        try:
            importlib.import_module(module)
        except Exception as exc:  # a broken import is as bad as a missing one
            failed[distribution] = f"{type(exc).__name__}: {exc}"
    assert failed == {}
