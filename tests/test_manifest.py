"""pixi.toml checked offline: pixi's own schema, plus the rules the schema cannot say."""

from __future__ import annotations

import glob
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
    # numerai-predict's py3.14 has scikit-learn 1.6, which nothing builds for 3.14 (pixi.toml says why 1.7)
    "py314": {"cloudpickle": "3.1", "numpy": "2.4", "pandas": "3.0", "scikit-learn": "1.7", "lightgbm": "4.5",
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
    # The vendored schema is the pixi version its README names and the one pixi.toml pins for the
    # workflows and the Dockerfile.
    version = re.search(r"/v(\d+\.\d+\.\d+)/", schema["$id"]).group(1)
    with open(os.path.join(ROOT, "containers", "pixi-schema", "README.md")) as handle:
        assert f"pixi **v{version}**" in handle.read()
    assert pixi_toml.pixi_version(manifest) == version


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
    # The tools environment: pixi 0.21 (no-default-feature), 0.63 (a task's default-environment).
    assert used["environments without the default feature"] == (0, 21)
    assert used["task default-environment"] == (0, 63)


@pytest.mark.parametrize(("requires", "edit", "too_new"), [
    (">=0.46", None, ["task default-environment (pixi 0.63)", "task arg choices (pixi 0.65)",
                      "pixi.lock format v7 (pixi 0.68)"]),
    (">=0.63", None, ["task arg choices (pixi 0.65)", "pixi.lock format v7 (pixi 0.68)"]),
    (">=0.65", None, ["pixi.lock format v7 (pixi 0.68)"]),
    (">=0.68", None, []),
    (">=0.68", "inline", ["inline environment dependencies (pixi 0.74)"]),
    (">=0.74", "inline", []),
    (">=0.44", "no-args", ["{{ }} templates in task commands (pixi 0.46)",
                           "depends-on naming an environment (pixi 0.46)", "pixi.lock format v7 (pixi 0.68)"]),
], ids=["default-environment-needs-0.63", "choices-need-0.65", "lock-v7-needs-0.68", "current",
        "inline-env-deps-need-0.74", "inline-ok", "templates-need-0.46"])
def test_a_feature_newer_than_requires_pixi_is_caught(manifest, requires, edit, too_new):
    changed = dict(manifest, workspace=dict(manifest["workspace"], **{"requires-pixi": requires}))
    if edit == "inline":
        envs = dict(changed["environments"], extra={"features": ["py312"], "dependencies": {"rich": "*"}})
        changed["environments"] = envs
    if edit == "no-args":  # every task, [tasks] and the tools feature's, without args nor default-environment
        def plain(tasks):
            return {name: {k: v for k, v in task.items() if k not in ("args", "default-environment")}
                    for name, task in tasks.items()}
        changed["tasks"] = plain(manifest["tasks"])
        tools = dict(manifest["feature"]["tools"], tasks=plain(manifest["feature"]["tools"]["tasks"]))
        changed["feature"] = dict(manifest["feature"], tools=tools)
    assert pixi_toml.too_new_features(changed) == too_new


def test_the_lock_format_of_the_pinned_pixi_counts(manifest):
    """pixi >= 0.68 writes pixi.lock v7, which older pixi cannot read: the pin decides the floor."""
    assert dict(pixi_toml.features_used(manifest))["pixi.lock format v7"] == (0, 68)
    older = dict(manifest, tool=dict(manifest["tool"], **{"numerai-predict": {"pixi-version": "0.67.2"}}))
    assert "pixi.lock format v7" not in dict(pixi_toml.features_used(older))
    broken = dict(manifest, tool=dict(manifest["tool"], **{"numerai-predict": {"pixi-version": "latest"}}))
    with pytest.raises(pixi_toml.ManifestError, match="pixi-version must be 'X.Y.Z'"):
        pixi_toml.features_used(broken)


def test_one_pixi_version_for_the_workflows_and_the_dockerfile(manifest):
    """Every setup-pixi step takes the version from `manifest.py pixi-version`, and the Dockerfile has no
    version of its own: images.py passes pixi.toml's."""
    import yaml

    for name in sorted(os.listdir(os.path.join(ROOT, ".github", "workflows"))):
        with open(os.path.join(ROOT, ".github", "workflows", name)) as handle:
            workflow = yaml.safe_load(handle)
        for job_name, job in workflow["jobs"].items():
            steps = job.get("steps", [])
            for index, step in enumerate(steps):
                if "setup-pixi" not in step.get("uses", ""):
                    continue
                assert step["with"]["pixi-version"] == "v${{ steps.pixi.outputs.version }}", (name, job_name)
                (source,) = [s for s in steps[:index] if s.get("id") == "pixi"]
                assert source["run"] == "python3 containers/manifest.py pixi-version", (name, job_name)
    with open(os.path.join(ROOT, "containers", "Dockerfile")) as handle:
        dockerfile = handle.read()
    assert re.search(r"^ARG PIXI_VERSION$", dockerfile, re.MULTILINE), "the Dockerfile must not pin its own pixi"
    assert re.search(r"\d+\.\d+\.\d+", dockerfile.split("ARG PIXI_IMAGE")[1].splitlines()[0]) is None


def test_no_default_feature_needs_pixi_0_21():
    bare = {"workspace": {"requires-pixi": ">=0.20"}, "environments": {"tools": {"features": []}}}
    assert pixi_toml.too_new_features(bare) == ["requires-pixi (pixi 0.44)"]
    bare["environments"]["tools"]["no-default-feature"] = True
    assert pixi_toml.too_new_features(bare) == ["environments without the default feature (pixi 0.21)",
                                                "requires-pixi (pixi 0.44)"]


def test_every_environment_pins_exactly_one_python(manifest):
    features = manifest["feature"]
    for env, names in pixi_toml.environments(manifest).items():
        pins = [features[n]["dependencies"]["python"] for n in names if "python" in features[n].get("dependencies", {})]
        assert len(pins) == 1, f"{env} pins python {len(pins)} times"
        assert re.fullmatch(r"3\.1\d\.\*", pins[0]), f"{env} pins python as {pins[0]!r}"


def test_python_environments_cover_numerai_and_pin_their_own_python(manifest):
    """py3XY pins Python 3.XY; at least Numerai's 3.10-3.14 are there."""
    envs = python_envs(manifest)
    assert {"py310", "py311", "py312", "py313", "py314"} <= set(envs)
    for env in envs:
        assert pixi_toml.python_minor(manifest, env) == f"3.{env[3:]}"


def test_the_tools_name_environments_and_images_as_the_package_does(manifest):
    """containers/manifest.py (standard library, outside the package) and numerai_predict/numerai.py
    (the package's one naming, used by the doctor, the footer and the round) agree for every Python."""
    from numerai_predict import numerai

    envs = pixi_toml.python_environments(manifest)
    assert envs
    for env in envs:
        minor = pixi_toml.python_minor(manifest, env)
        assert numerai.environment_name(minor) == env
        assert numerai.python_of_environment(env) == numerai.minor_pair(minor)
        assert numerai.image_name(minor) == pixi_toml.image_basename(manifest, env)
        assert numerai.python_tag(minor, "_") == pixi_toml.python_tag(manifest, env)


def test_the_conda_package_is_the_pip_package(manifest):
    """pixi.toml's [package] (pixi-build's conda package) names pyproject.toml's package and version,
    and the base install's run dependencies (none but Python); the extras match what extras.py checks."""
    from numerai_predict import __version__
    from numerai_predict.extras import EXTRAS

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        project = pixi_toml.tomllib.load(handle)["project"]
    package = manifest["package"]
    assert package["build"]["backend"]["name"] == "pixi-build-python"
    assert "pixi-build" in manifest["workspace"]["preview"]
    assert package["name"] == package["version"] == {"workspace": True}
    assert manifest["workspace"]["name"] == project["name"] and manifest["workspace"]["version"] == __version__
    assert project["dependencies"] == [] and set(package["run-dependencies"]) == {"python"}
    assert package["run-dependencies"]["python"] == project["requires-python"]
    names = {extra: {re.split(r"[<>=\[ ]", spec)[0] for spec in specs}
             for extra, specs in project["optional-dependencies"].items()}
    assert names["run"] == set(EXTRAS["run"])
    assert names["round"] == {"numerai-predict", *EXTRAS["round"]}


def test_runtime_environments_share_the_tested_solve(manifest):
    """Images ship exactly the versions the tests ran with."""
    envs = manifest["environments"]
    for env in python_envs(manifest):
        runtime = envs[f"{env}-runtime"]
        assert runtime["solve-group"] == envs[env]["solve-group"]
        assert "test" in envs[env]["features"] and "test" not in runtime["features"]


def test_test_all_covers_every_python_environment(manifest):
    deps = manifest["tasks"]["test-all"]["depends-on"]
    tested = [d["environment"] for d in deps if d["task"] in ("test", "test-busy")]
    assert sorted(tested) == python_envs(manifest)
    assert [d["environment"] for d in deps if d["task"] == "test-busy"], "no busy-machine proof in test-all"


def test_test_all_installs_every_environment_before_the_first_test(manifest):
    """On a fresh machine no test may find an environment missing that a later step of test-all builds:
    every environment a test step runs in, and the slow suite's image and tools, come first."""
    deps = [d["task"] + " " + d["environment"] for d in manifest["tasks"]["test-all"]["depends-on"]]
    first_test = next(i for i, d in enumerate(deps) if not d.startswith("env-ready "))
    ready = {d.split()[1] for d in deps[:first_test]}
    assert all(d.startswith("env-ready ") for d in deps[:first_test])
    assert not any(d.startswith("env-ready ") for d in deps[first_test:])
    slow_env = next(d.split()[1] for d in deps if d.startswith("test-slow "))
    assert ready == {*python_envs(manifest), f"{slow_env}-runtime", "tools"}
    for env in ready:  # the task exists in each (tools has no default feature: its own copy)
        assert "env-ready" in pixi_toml.environment_tasks(manifest, env), env


def test_pickle_sensitive_packages_match_numerai_predict(manifest):
    for env, minors in NUMERAI_PREDICT_MINORS.items():
        deps = pixi_toml.merged(manifest, env, "dependencies", "linux-64")
        for package, minor in minors.items():
            spec = deps[package]["version"] if isinstance(deps[package], dict) else deps[package]
            assert spec == f"{minor}.*", f"{env}: {package} is {spec}, numerai-predict has {minor}"


def test_pypi_locks_hold_the_same_minors(manifest):
    """The PyPI twin resolves to the same pickle-sensitive minors as pixi.toml asks."""
    for env, minors in NUMERAI_PREDICT_MINORS.items():
        with open(pypi_env.lock_path(env)) as handle:
            locked = dict(line.strip().split("==") for line in handle if "==" in line)
        for package, minor in minors.items():
            assert locked[pypi_env.pypi_name(manifest, package, env)].startswith(minor + "."), (env, package)


def test_pypi_locks_are_fresh(manifest):
    """A change to pixi.toml without `containers/pypi_env.py lock` fails here."""
    assert pypi_env.stale_locks(manifest) == []


def test_stale_lock_is_detected(manifest):
    """A change to the shared ML stack makes every lock stale but tools' (no-default-feature);
    a change to tools' own Python makes only its lock stale."""
    already = set(pypi_env.stale_locks(manifest))  # none, unless a lock is still to be made (a new Python)
    changed = dict(manifest, dependencies=dict(manifest["dependencies"], polars="1.0.*"))
    assert set(pypi_env.stale_locks(changed)) == {e for e in pixi_toml.environments(manifest)
                                                  if e not in ("default", "tools")} | already
    tools = dict(manifest["feature"]["tools"], dependencies={"python": "3.13.*"})
    changed = dict(manifest, feature=dict(manifest["feature"], tools=tools))
    assert set(pypi_env.stale_locks(changed)) == {"tools"} | already


def test_tensorflow_gaps_are_per_platform(manifest):
    """conda-forge TensorFlow only on linux for 3.10-3.12; py313 takes PyPI's; macOS goes without."""
    for env in ["py310", "py311", "py312"]:
        assert "tensorflow-cpu" in pixi_toml.merged(manifest, env, "dependencies", "linux-64")
        assert "tensorflow-cpu" not in pixi_toml.merged(manifest, env, "dependencies", "osx-arm64")
    assert "tensorflow-cpu" in pixi_toml.merged(manifest, "py313", "pypi-dependencies", "linux-64")
    assert "tensorflow" in pixi_toml.merged(manifest, "py313", "pypi-dependencies", "linux-aarch64")
    assert not any("tensorflow" in n for n in pixi_toml.merged(manifest, "py313", "pypi-dependencies", "osx-arm64"))
    # 3.14: no stable TensorFlow anywhere; numerai-predict's image takes one tf-nightly wheel, linux-64 only
    assert pixi_toml.merged(manifest, "py314", "pypi-dependencies", "linux-64")["tf-nightly"].startswith("==2.22.0.dev")
    for platform in ("linux-aarch64", "osx-arm64"):
        assert not any("tf-nightly" in n or "tensorflow" in n
                       for n in pixi_toml.merged(manifest, "py314", "pypi-dependencies", platform))


def documents() -> dict[str, str]:
    """README.md and every page of docs/: the user's documentation, path -> text."""
    paths = [os.path.join(ROOT, "README.md"), *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
    texts = {}
    for path in paths:
        with open(path) as handle:
            texts[os.path.relpath(path, ROOT)] = handle.read()
    return texts


def test_every_task_in_readme_exists(manifest):
    """README.md and docs/*.md name only tasks pixi.toml has."""
    tasks = pixi_toml.tasks(manifest)
    everywhere: set[str] = set()
    for path, text in documents().items():
        named = set(re.findall(r"(?:pixi run|pypi_env\.py run)(?: -e [\w-]+)? ([a-z][\w-]*)", text))
        assert named <= set(tasks), f"{path} names unknown tasks: {named - set(tasks)}"
        everywhere |= named
    assert everywhere, "README and docs/ name no task"


def test_readme_names_only_existing_environments_and_images(manifest):
    """README.md and docs/*.md may show examples, but never an environment or image pixi.toml lacks."""
    envs = set(python_envs(manifest))
    all_named: set[str] = set()
    all_images: set[str] = set()
    for path, text in documents().items():
        named = set(re.findall(r"\b(py3\d+)\b", text))
        images = {f"py3{m}" for m in re.findall(r"numerai_predict_py_3_(\d+)", text)}
        assert named <= envs, (path, named - envs)
        assert images <= envs, (path, images - envs)
        all_named |= named
        all_images |= images
    assert all_named and all_images


def test_readme_documents_every_exit_code():
    """docs/running.md holds the full table (code, error class, what to do); README.md a short one
    (code, meaning) with every code."""
    from numerai_predict.errors import all_errors

    with open(os.path.join(ROOT, "docs", "running.md")) as handle:
        page = handle.read()
    with open(os.path.join(ROOT, "README.md")) as handle:
        readme = handle.read()
    short = set(re.findall(r"^\| (\d+) \| ", readme, re.MULTILINE))
    for cls in all_errors():
        assert re.search(rf"^\| {cls.exit_code} \| `{cls.__name__}`", page, re.MULTILINE), cls.__name__
        assert str(cls.exit_code) in short, f"README.md's exit codes lack {cls.exit_code} ({cls.__name__})"
    assert {"0", "130"} <= short


def test_every_task_has_a_description(manifest):
    """`pixi task list` is the help."""
    for name, task in pixi_toml.tasks(manifest).items():
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
            assert task in pixi_toml.tasks(manifest), task


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


# ---- tools: the environment of the tasks that need only Python ---------------------

# The tasks that run in `tools` (containers/images.py and friends, stdlib only), and some
# that must not: test-images cloudpickles models with the image's Python, lint and
# typecheck need the test feature's linters, mypy and the package.
TOOLS_TASKS = {"build-image", "build-images", "push-images", "publish-image", "merge-images", "pull-image",
               "image-shell", "bench-image", "update-pixi-schema"}
ML_TASKS = {"test", "test-all", "test-slow", "test-busy", "pytest", "test-images", "predict", "demo", "lint",
            "typecheck", "make-models",
            "bench-help"}


def test_tools_is_python_alone_without_the_ml_stack(manifest):
    """no-default-feature: tools takes none of [dependencies], [pypi-dependencies] or [target.*]."""
    for platform in manifest["workspace"]["platforms"]:
        deps = pixi_toml.merged(manifest, "tools", "dependencies", platform)
        assert set(deps) == {"python"}, (platform, deps)
        assert pixi_toml.merged(manifest, "tools", "pypi-dependencies", platform) == {}
    assert "pandas" in pixi_toml.merged(manifest, "py312", "dependencies", "linux-64")
    minor = pixi_toml.python_minor(manifest, "tools")
    assert tuple(map(int, minor.split("."))) >= (3, 11), "containers/manifest.py needs tomllib"
    assert pypi_env.requirements(manifest, "tools") == []
    with open(pypi_env.lock_path("tools")) as handle:
        assert pypi_env.locked_packages(handle.read()) == []


def test_tools_is_not_a_python_of_the_product(manifest):
    """Workflow matrices, test-all, image names and pickles follow python_environments: tools is not there."""
    assert "tools" in pixi_toml.environments(manifest)
    assert "tools" not in pixi_toml.python_environments(manifest)
    assert all(re.fullmatch(r"py3\d+", env) for env in pixi_toml.python_environments(manifest))


def test_python_only_tasks_run_in_tools_and_the_others_do_not(manifest):
    in_tools = set(pixi_toml.environment_tasks(manifest, "tools"))
    assert in_tools == TOOLS_TASKS | {"env-ready"}  # env-ready: every environment has one
    for name in TOOLS_TASKS:
        assert pixi_toml.tasks(manifest)[name]["default-environment"] == "tools", name
    for env in ("default", "py312", "py311-runtime"):
        offered = set(pixi_toml.environment_tasks(manifest, env))
        assert not offered & TOOLS_TASKS, env
    assert ML_TASKS <= set(pixi_toml.environment_tasks(manifest, "py311"))


def test_tools_scripts_import_only_the_standard_library(manifest):
    """What the tools tasks run imports nothing tools lacks (it has Python alone)."""
    import ast
    import sys

    local = {"images": "containers", "manifest": "containers", "pypi_env": "containers", "cpython": "containers",
             "timing": "benchmarks"}
    scripts = {re.search(r"python (\S+\.py)", pixi_toml.tasks(manifest)[t]["cmd"]).group(1) for t in TOOLS_TASKS}
    todo, seen, foreign = [os.path.join(ROOT, s) for s in scripts], set(), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        with open(path) as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            # images.test() is test-images' (pytest, in the Python environments)
            if isinstance(node, ast.FunctionDef) and node.name == "test" and path.endswith("images.py"):
                node.body = []
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            for name in (n.split(".")[0] for n in names):
                if name in local:
                    todo.append(os.path.join(ROOT, local[name], f"{name}.py"))
                elif name not in sys.stdlib_module_names and name != "tomllib":  # stdlib from 3.11
                    foreign.add(name)
    # tomli: manifest.py's fallback for Python 3.10 (the tests there), never taken in tools' 3.12.
    assert foreign <= {"tomli"}, foreign
    assert os.path.join(ROOT, "containers", "images.py") in seen
