"""pixi.toml checked offline: pixi's own schema, plus the rules the schema cannot say."""

from __future__ import annotations

import os
import re

import manifest as pixi_toml
import pypi_env
import pytest
from conftest import ROOT

# numerai-predict's poetry.lock minors per Python (its py3.X/poetry.lock files): a pickle that
# runs in its image must run in ours.
NUMERAI_PREDICT_MINORS = {
    "py310": {"cloudpickle": "2.2", "numpy": "1.26", "pandas": "2.2", "scikit-learn": "1.6", "lightgbm": "4.0",
              "py-xgboost": "1.7", "catboost": "1.2"},
    "py311": {"cloudpickle": "3.1", "numpy": "2.1", "pandas": "2.3", "scikit-learn": "1.6", "lightgbm": "4.6",
              "py-xgboost": "3.0", "catboost": "1.2"},
    "py312": {"cloudpickle": "3.1", "numpy": "2.1", "pandas": "2.3", "scikit-learn": "1.6", "lightgbm": "4.5",
              "py-xgboost": "3.0", "catboost": "1.2"},
    "py313": {"cloudpickle": "3.1", "numpy": "2.2", "pandas": "2.3", "scikit-learn": "1.6", "lightgbm": "4.5",
              "py-xgboost": "3.0", "catboost": "1.2"},
}


@pytest.fixture(scope="module")
def manifest():
    return pixi_toml.load()


def python_envs(manifest):
    return pixi_toml.python_environments(manifest)


def test_manifest_matches_pixis_schema(manifest):
    """pixi.toml is a manifest pixi accepts (its published JSON schema, vendored)."""
    import json

    import jsonschema

    with open(pixi_toml.SCHEMA) as handle:
        schema = json.load(handle)
    jsonschema.validate(manifest, schema)
    # The vendored schema is the pixi version its README and the Dockerfile name.
    version = re.search(r"/v(\d+\.\d+\.\d+)/", schema["$id"]).group(1)
    with open(os.path.join(ROOT, "containers", "pixi-schema", "README.md")) as handle:
        assert f"pixi **v{version}**" in handle.read()
    with open(os.path.join(ROOT, "containers", "Dockerfile")) as handle:
        assert f"ARG PIXI_VERSION={version}" in handle.read()


def test_schema_rejects_what_pixi_rejects(manifest):
    """The schema check can fail: a misspelt table and a bad task are refused."""
    import json

    import jsonschema

    with open(pixi_toml.SCHEMA) as handle:
        schema = json.load(handle)
    for broken in (dict(manifest, workspaces=manifest["workspace"]),
                   dict(manifest, tasks=dict(manifest["tasks"], bad={"cmd": 1}))):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_requires_pixi_admits_no_pixi_too_old_for_the_features_used(manifest):
    """pixi older than a feature rejects the whole manifest (pixi's changelog)."""
    assert pixi_toml.too_new_features(manifest) == []
    used = dict(pixi_toml.features_used(manifest))
    assert used["task arg choices"] == (0, 65) and used["depends-on naming an environment"] == (0, 46)


@pytest.mark.parametrize(("requires", "edit", "too_new"), [
    (">=0.46", None, ["task arg choices (pixi 0.65)"]),
    (">=0.65", None, []),
    (">=0.65", "inline", ["inline environment dependencies (pixi 0.74)"]),
    (">=0.74", "inline", []),
    (">=0.44", "no-args", ["{{ }} templates in task commands (pixi 0.46)",
                           "depends-on naming an environment (pixi 0.46)"]),
], ids=["choices-need-0.65", "current", "inline-env-deps-need-0.74", "inline-ok", "templates-need-0.46"])
def test_a_feature_newer_than_requires_pixi_is_caught(manifest, requires, edit, too_new):
    changed = dict(manifest, workspace=dict(manifest["workspace"], **{"requires-pixi": requires}))
    if edit == "inline":
        envs = dict(changed["environments"], extra={"features": ["py312"], "dependencies": {"rich": "*"}})
        changed["environments"] = envs
    if edit == "no-args":
        changed["tasks"] = {name: {k: v for k, v in task.items() if k != "args"}
                            for name, task in manifest["tasks"].items()}
    assert pixi_toml.too_new_features(changed) == too_new


def test_every_environment_pins_exactly_one_python(manifest):
    features = manifest["feature"]
    for env, names in pixi_toml.environments(manifest).items():
        pins = [features[n]["dependencies"]["python"] for n in names if "python" in features[n].get("dependencies", {})]
        assert len(pins) == 1, f"{env} pins python {len(pins)} times"
        assert re.fullmatch(r"3\.1\d\.\*", pins[0]), f"{env} pins python as {pins[0]!r}"


def test_python_environments_cover_numerai_and_pin_their_own_python(manifest):
    """py3XY pins Python 3.XY; at least Numerai's 3.10-3.13 are there."""
    envs = python_envs(manifest)
    assert {"py310", "py311", "py312", "py313"} <= set(envs)
    for env in envs:
        assert pixi_toml.python_minor(manifest, env) == f"3.{env[3:]}"


def test_runtime_environments_share_the_tested_solve(manifest):
    """Images ship exactly the versions the tests ran with."""
    envs = manifest["environments"]
    for env in python_envs(manifest):
        runtime = envs[f"{env}-runtime"]
        assert runtime["solve-group"] == envs[env]["solve-group"]
        assert "test" in envs[env]["features"] and "test" not in runtime["features"]


def test_test_all_covers_every_python_environment(manifest):
    deps = manifest["tasks"]["test-all"]["depends-on"]
    assert sorted(d["environment"] for d in deps if d["task"] == "test") == python_envs(manifest)


def test_pickle_sensitive_packages_match_numerai_predict(manifest):
    for env, minors in NUMERAI_PREDICT_MINORS.items():
        deps = pixi_toml.merged(manifest, env, "dependencies", "linux-64")
        for package, minor in minors.items():
            spec = deps[package]["version"] if isinstance(deps[package], dict) else deps[package]
            assert spec == f"{minor}.*", f"{env}: {package} is {spec}, numerai-predict has {minor}"


def test_pypi_locks_hold_the_same_minors(manifest):
    """The PyPI twin resolves to the same pickle-sensitive minors as pixi.toml asks."""
    names = manifest["tool"]["pypi-twin"]["names"]
    for env, minors in NUMERAI_PREDICT_MINORS.items():
        with open(pypi_env.lock_path(env)) as handle:
            locked = dict(line.strip().split("==") for line in handle if "==" in line)
        for package, minor in minors.items():
            assert locked[names.get(package, package)].startswith(minor + "."), (env, package)


def test_pypi_locks_are_fresh(manifest):
    """A change to pixi.toml without `containers/pypi_env.py lock` fails here."""
    assert pypi_env.stale_locks(manifest) == []


def test_stale_lock_is_detected(manifest):
    changed = dict(manifest, dependencies=dict(manifest["dependencies"], polars="1.0.*"))
    assert set(pypi_env.stale_locks(changed)) == {e for e in pixi_toml.environments(manifest) if e != "default"}


def test_tensorflow_gaps_are_per_platform(manifest):
    """conda-forge TensorFlow only on linux for 3.10-3.12; py313 takes PyPI's; macOS goes without."""
    for env in ["py310", "py311", "py312"]:
        assert "tensorflow-cpu" in pixi_toml.merged(manifest, env, "dependencies", "linux-64")
        assert "tensorflow-cpu" not in pixi_toml.merged(manifest, env, "dependencies", "osx-arm64")
    assert "tensorflow-cpu" in pixi_toml.merged(manifest, "py313", "pypi-dependencies", "linux-64")
    assert "tensorflow" in pixi_toml.merged(manifest, "py313", "pypi-dependencies", "linux-aarch64")
    assert not any("tensorflow" in n for n in pixi_toml.merged(manifest, "py313", "pypi-dependencies", "osx-arm64"))


def test_every_task_in_readme_exists(manifest):
    with open(os.path.join(ROOT, "README.md")) as handle:
        readme = handle.read()
    named = set(re.findall(r"(?:pixi run|pypi_env\.py run)(?: -e [\w-]+)? ([a-z][\w-]*)", readme))
    assert named, "README names no task"
    assert named <= set(manifest["tasks"]), f"README names unknown tasks: {named - set(manifest['tasks'])}"


def test_readme_names_only_existing_environments_and_images(manifest):
    """README may show examples, but never an environment or image pixi.toml lacks."""
    with open(os.path.join(ROOT, "README.md")) as handle:
        readme = handle.read()
    envs = set(python_envs(manifest))
    named = set(re.findall(r"\b(py3\d+)\b", readme))
    images = {f"py3{m}" for m in re.findall(r"numerai_predict_py_3_(\d+)", readme)}
    assert named and named <= envs, named - envs
    assert images and images <= envs, images - envs


def test_readme_documents_every_exit_code():
    from numerai_predict.errors import all_errors

    with open(os.path.join(ROOT, "README.md")) as handle:
        readme = handle.read()
    for cls in all_errors():
        assert re.search(rf"^\| {cls.exit_code} \| `{cls.__name__}`", readme, re.MULTILINE), cls.__name__


def test_every_task_has_a_description(manifest):
    """`pixi task list` is the help."""
    for name, task in manifest["tasks"].items():
        assert isinstance(task, dict) and task.get("description"), name


def test_every_makefile_target_of_numerai_predict_has_its_task(manifest):
    """AGENTS.md maps each Makefile target to a task that exists."""
    with open(os.path.join(ROOT, "AGENTS.md")) as handle:
        agents = handle.read()
    table = dict(re.findall(r"^\| `([\w/` ]+?)` \| (.+) \|$", agents, re.MULTILINE))
    targets = {"help", "lint", "build", "build_3_XY", "build_shell", "test", "test_predict", "test_3_XY"}
    assert targets <= set(table), targets - set(table)
    assert any(k.startswith("push_latest") for k in table) and any(k.startswith("push_stable") for k in table)
    for row in table.values():
        for task in re.findall(r"pixi run (?:-e \w+ )?([a-z][\w-]*)", row):
            assert task in manifest["tasks"], task


def test_tensorflow_219_environments_hold_its_protobuf_on_purpose(manifest):
    """Linux py310-py312 (conda-forge TF 2.19) pin libprotobuf 6.31 and pytorch <= 2.10, the
    builds that link it; py313 (TF from PyPI, protobuf bundled) and macOS stay free."""
    for env in pixi_toml.python_environments(manifest):
        for platform in ("linux-64", "linux-aarch64", "osx-arm64"):
            deps = pixi_toml.merged(manifest, env, "dependencies", platform)
            conda_tf = str(deps.get("tensorflow-cpu", "")).startswith("2.19")
            assert (deps.get("libprotobuf") == "6.31.*") == conda_tf, (env, platform)
            torch = deps["pytorch"]["version"]
            assert (torch == "<=2.10") == conda_tf and deps["pytorch"]["build"] == "cpu_generic*", (env, platform)
