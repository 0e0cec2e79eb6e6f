"""The PyPI twin's own machinery: relocatable prefixes, hashed machine-independent
locks and the workspace package. Small prefixes built with gcc; no network."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pypi_env
import pytest
from conftest import ROOT

# A workspace of one Python: a platform-specific dependency on each linux, a conda
# package the twin skips, a pin that beats pixi's bound, a path dependency in tests.
SMALL = {
    "dependencies": {"numpy": "2.1.*", "pytorch": {"version": "<=2.10", "build": "cpu*"},
                     "libprotobuf": "6.31.*"},
    "target": {"linux-64": {"dependencies": {"x64-only": "*"}},
               "linux-aarch64": {"dependencies": {"arm-only": "*"}}},
    "feature": {"py399": {"dependencies": {"python": "3.99.*"}},
                "test": {"pypi-dependencies": {"zizmor": "*", "local-pkg": {"path": ".", "editable": True}}}},
    "environments": {"py399": ["py399", "test"], "py399-runtime": ["py399"]},
    "tool": {"pypi-twin": {"names": {"pytorch": "torch"}, "skip": {"libprotobuf": ["py399"]},
                           "pins": {"py399": {"torch": "==2.13.0"}}}},
}

# Skipped only outside CI: .ci/run installs patchelf, and gcc comes with every machine here.
needs_toolchain = pytest.mark.skipif(
    not (shutil.which("gcc") and shutil.which("patchelf")) and not os.environ.get("CI"),
    reason="needs gcc and patchelf")


def gcc(*args) -> None:
    subprocess.run(["gcc", "-Wl,--no-as-needed", *map(str, args)], check=True)


def shared_library(folder, name: str, body: str):
    """A one-function shared library lib{name}.so in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{name}.c"
    source.write_text(body)
    gcc("-shared", "-fPIC", "-o", folder / f"lib{name}.so", source)
    return folder / f"lib{name}.so"


def executable(path, library_dir, library: str, *extra) -> None:
    """A program that calls ``library``'s function, linked by absolute RUNPATH."""
    source = path.parent / "main.c"
    source.write_text(f'#include <stdio.h>\nint {library}(void);\nint main(void) {{ printf("%d\\n", {library}()); '
                      "return 0; }\n")
    gcc("-o", path, source, f"-L{library_dir}", f"-l{library}", f"-Wl,-rpath,{library_dir}", *extra)


def ldd(path) -> dict[str, str]:
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=True).stdout
    return {name: os.path.normpath(path) for name, path in re.findall(r"^\s*(\S+) => (\S+)", out, re.MULTILINE)}


def system_library() -> str | None:
    """A system library outside BASE_LIBS that this machine has, by path."""
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    for name in ("libbz2.so.1.0", "liblzma.so.5", "libexpat.so.1", "libffi.so.8"):
        found = re.search(rf"^\s*{re.escape(name)} \(libc6,x86-64\) => (\S+)", cache, re.MULTILINE)
        if found and not pypi_env.BASE_LIBS.fullmatch(name):
            return found.group(1)
    return None


# ---- relocation and bundling -----------------------------------------------------


@needs_toolchain
def test_copy_python_drops_the_base_packages_and_finds_libpython_beside_itself(tmp_path):
    base = tmp_path / "base"
    libpython = shared_library(base / "lib", "fakepython", "int fakepython(void) { return 42; }\n")
    python = base / "bin" / "python3.99"
    python.parent.mkdir()
    executable(python, libpython.parent, "fakepython")
    stdlib = base / "lib" / "python3.99"
    for part in ("os.py", "site-packages/foreign.py", "test/test_os.py", "lib-dynload/x.so"):
        (stdlib / part).parent.mkdir(parents=True, exist_ok=True)
        (stdlib / part).write_text("")
    (base / "include").mkdir()
    (base / "lib" / "libpython3.99.a").write_text("")
    (base / "bin" / "pip3").write_text("#!/bin/sh\n")

    prefix = tmp_path / "env"
    pypi_env.copy_python(str(python), str(prefix))
    shutil.rmtree(base)  # the copy must not need its source

    assert subprocess.run([prefix / "bin" / "python3.99"], capture_output=True, text=True).stdout == "42\n"
    assert os.listdir(prefix / "lib" / "python3.99" / "site-packages") == []
    assert (prefix / "lib" / "python3.99" / "os.py").exists()
    assert not (prefix / "lib" / "python3.99" / "test").exists()
    assert not (prefix / "include").exists()
    assert not (prefix / "lib" / "libpython3.99.a").exists()
    assert os.listdir(prefix / "bin") == ["python3.99"]


@needs_toolchain
def test_bundled_libraries_travel_with_the_prefix(tmp_path):
    outside = tmp_path / "outside"
    dep = shared_library(outside, "dep", "int dep(void) { return 7; }\n")
    prefix = tmp_path / "env"
    (prefix / "bin").mkdir(parents=True)
    system = system_library()
    executable(prefix / "bin" / "python3.99", outside, "dep", *([system] if system else []))
    extension = prefix / "lib" / "python3.99" / "site-packages" / "pkg" / "_ext.so"
    extension.parent.mkdir(parents=True)
    source = tmp_path / "ext.c"
    source.write_text("int dep(void);\nint ext(void) { return dep(); }\n")
    gcc("-shared", "-fPIC", "-o", extension, source, f"-L{outside}", "-ldep", f"-Wl,-rpath,{outside}")
    cached = tmp_path / "uv-cache" / "_ext.so"  # installs are hard links into uv's cache
    cached.parent.mkdir()
    os.link(extension, cached)
    cached_bytes = cached.read_bytes()

    bundled = pypi_env.bundle_system_libs(str(prefix))

    assert cached.read_bytes() == cached_bytes, "patching the prefix's library changed uv's cache"
    assert os.stat(cached).st_nlink == 1 and os.stat(extension).st_nlink == 1

    assert bundled == (2 if system else 1)
    assert not (prefix / "lib" / "libc.so.6").exists(), "base libraries stay with the base image"
    moved = tmp_path / "moved"
    shutil.move(prefix, moved)
    shutil.rmtree(outside)
    run = subprocess.run([moved / "bin" / "python3.99"], capture_output=True, text=True)
    assert run.stdout == "7\n", run.stderr
    extension = moved / "lib" / "python3.99" / "site-packages" / "pkg" / "_ext.so"
    assert ldd(extension)[dep.name] == str(moved / "lib" / dep.name)
    if system:
        name = os.path.basename(system)
        assert ldd(moved / "bin" / "python3.99")[name] == str(moved / "lib" / name)


@needs_toolchain
def test_elf_files_are_shared_objects_and_interpreters_only(tmp_path):
    library = shared_library(tmp_path / "lib", "real", "int real(void) { return 1; }\n")
    (tmp_path / "lib" / "libreal.so.1").symlink_to(library.name)
    (tmp_path / "lib" / "notes.so.txt").write_text("not ELF")
    (tmp_path / "bin").mkdir()
    executable(tmp_path / "bin" / "python3.99", library.parent, "real")
    shutil.copy(tmp_path / "bin" / "python3.99", tmp_path / "bin" / "tool")
    assert sorted(pypi_env.elf_files(str(tmp_path))) == [str(tmp_path / "bin" / "python3.99"), str(library)]


# ---- requirements and locks ------------------------------------------------------


def test_requirements_follow_the_twin_settings():
    assert pypi_env.requirements(SMALL, "py399") == ["numpy==2.1.*", "torch==2.13.0", "x64-only", "zizmor"]
    assert pypi_env.excluded(SMALL, "py399-runtime") == ["libprotobuf"]


def test_path_dependencies_are_installed_not_locked():
    assert "local-pkg" in pypi_env.path_dependencies(SMALL, "py399")
    assert not any(r.startswith("local-pkg") for r in pypi_env.requirements(SMALL, "py399"))
    assert pypi_env.path_dependencies(SMALL, "py399-runtime") == {}


def test_the_workspace_package_never_goes_to_pypi(manifest):
    for env in pypi_env.environments(manifest):
        names = {re.split(r"[=<>!~ ]", r)[0] for r in pypi_env.requirements(manifest, env)}
        assert not names & set(pypi_env.path_dependencies(manifest, env)), env
    assert "numerai-predict" in pypi_env.path_dependencies(manifest, "py311")
    assert pypi_env.path_dependencies(manifest, "py311-runtime") == {}


@pytest.fixture
def manifest():
    return pypi_env.load()


def test_check_is_the_same_on_any_machine(manifest):
    """Specs are linux-64's on every machine: `check` on an aarch64 laptop agrees with CI."""
    here = {env: pypi_env.spec_digest(m, env) for m in (SMALL, manifest) for env in pypi_env.environments(m)}
    stale_here = pypi_env.stale_locks(manifest)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "uname", lambda: os.uname_result(("Linux", "arm-host", "6.1", "#1", "aarch64")))
        import platform
        patch.setattr(platform, "machine", lambda: "aarch64")
        module = importlib.reload(pypi_env)
        try:
            there = {env: module.spec_digest(m, env) for m in (SMALL, manifest) for env in module.environments(m)}
            assert module.stale_locks(manifest) == stale_here
            assert module.requirements(SMALL, "py399") == ["numpy==2.1.*", "torch==2.13.0", "x64-only", "zizmor"]
        finally:
            patch.undo()
            importlib.reload(pypi_env)
    assert there == here


def test_the_lock_header_follows_the_specs(tmp_path, monkeypatch):
    monkeypatch.setattr(pypi_env, "LOCK_DIR", str(tmp_path))
    pypi_env.write_lock(SMALL, "py399", "3.99.1", "zizmor==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    assert pypi_env.lock_header("py399") == {"python": "3.99.1", "platform": pypi_env.UV_PLATFORM,
                                             "spec": pypi_env.spec_digest(SMALL, "py399")}
    assert pypi_env.stale_locks(SMALL) == ["py399-runtime"]
    for changed in (dict(SMALL, dependencies=dict(SMALL["dependencies"], numpy="2.2.*")),
                    dict(SMALL, tool={"pypi-twin": dict(SMALL["tool"]["pypi-twin"], skip={})})):
        assert pypi_env.spec_digest(changed, "py399") != pypi_env.spec_digest(SMALL, "py399")
        assert "py399" in pypi_env.stale_locks(changed)


@pytest.fixture
def fake_uv(monkeypatch, tmp_path):
    """uv and pip's find-links, without looking for either on this machine."""
    monkeypatch.setattr(pypi_env, "uv", lambda: ["uv"])
    monkeypatch.setattr(pypi_env, "find_links", lambda: (str(tmp_path),))
    return tmp_path


def test_locks_are_hashed_for_linux_x86_64_and_runtime_follows_its_twin(fake_uv):
    tested = pypi_env.compile_command(SMALL, "py399", "3.99.1", "in.txt", "ex.txt", "out.txt")
    runtime = pypi_env.compile_command(SMALL, "py399-runtime", "3.99.1", "in.txt", "ex.txt", "out.txt")
    for command in (tested, runtime):
        assert "--generate-hashes" in command
        assert command[command.index("--python-platform") + 1] == "x86_64-manylinux_2_28"
        assert command[command.index("--python-version") + 1] == "3.99.1"
        assert command[command.index("--find-links") + 1] == str(fake_uv)
        assert "--no-config" in command
    constraints = [runtime[i + 1] for i, arg in enumerate(runtime) if arg == "--constraint"]
    assert constraints == ["ex.txt", pypi_env.lock_path("py399")]
    assert pypi_env.lock_path("py399") not in tested


def test_installs_check_every_hash(fake_uv):
    command = pypi_env.install_command("/env/bin/python3.99", "py399")
    assert {"--require-hashes", "--no-deps"} <= set(command)
    # Hard links into uv's cache: six environments would not fit a CI machine's disk as copies.
    assert command[command.index("--link-mode") + 1] == "hardlink"
    assert command[command.index("--python") + 1] == "/env/bin/python3.99"


def test_every_locked_package_carries_its_hashes(manifest):
    for env in pypi_env.environments(manifest):
        if env == "default":
            continue
        with open(pypi_env.lock_path(env)) as handle:
            text = handle.read()
        body = text.split("\n# spec: ", 1)[1].split("\n", 1)[1]
        entries = re.split(r"\n(?=\S)", body) if body.strip() else []
        # tools is Python alone: an empty lock; every other one holds the ML stack.
        assert len(entries) == len(pypi_env.locked_packages(text)), env
        assert len(entries) == 0 if env == "tools" else len(entries) > 50, env
        for entry in entries:
            assert "--hash=sha256:" in entry, (env, entry.split()[0])


def test_find_links_are_pips_existing_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_FIND_LINKS", f"{tmp_path} {tmp_path / 'missing'}")
    assert str(tmp_path) in pypi_env.find_links.__wrapped__()
    assert str(tmp_path / "missing") not in pypi_env.find_links.__wrapped__()


# ---- the workspace package ---------------------------------------------------------


def test_the_editable_install_follows_the_checkout(fake_uv, monkeypatch, tmp_path):
    ran = []
    monkeypatch.setattr(pypi_env, "run_checked", lambda command, what: ran.append(command))
    info = tmp_path / "layer" / "lib" / "python3.99" / "site-packages" / "local_pkg-0.1.dist-info"
    info.mkdir(parents=True)
    layer, prefix = str(tmp_path / "layer"), str(tmp_path / "env")

    pypi_env.install_path_dependencies(SMALL, "py399", layer, prefix)  # never installed
    (info / "direct_url.json").write_text(json.dumps({"url": "file:///another/clone", "dir_info": {"editable": True}}))
    pypi_env.install_path_dependencies(SMALL, "py399", layer, prefix)  # another clone's
    assert len(ran) == 2 and all(c[-2:] == ["--editable", ROOT] for c in ran)
    assert all(c[c.index("--python") + 1] == os.path.join(layer, "bin", "python") for c in ran)

    (info / "direct_url.json").write_text(json.dumps({"url": "file://" + ROOT, "dir_info": {"editable": True}}))
    pypi_env.install_path_dependencies(SMALL, "py399", layer, prefix)
    pypi_env.install_path_dependencies(SMALL, "py399-runtime", layer, prefix)
    assert len(ran) == 2

    # From here but not editable (pixi.toml changed): installed again, editable.
    (info / "direct_url.json").write_text(json.dumps({"url": "file://" + ROOT, "dir_info": {}}))
    pypi_env.install_path_dependencies(SMALL, "py399", layer, prefix)
    assert len(ran) == 3


def test_the_workspace_package_lives_in_a_layer_of_the_checkout_not_in_the_shared_prefix(monkeypatch, tmp_path):
    """Two clones share a prefix; each sees its own workspace package, and the prefix none."""
    prefix = sys.base_prefix  # the shared prefix under this test's own environment
    python = os.path.join(prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    monkeypatch.setattr(pypi_env, "env_python", lambda manifest, env: python)
    probe = "import local_pkg; print(local_pkg.__file__)"
    seen = []
    for clone in ("one", "two"):
        checkout = tmp_path / clone
        (checkout / "local_pkg").mkdir(parents=True)
        (checkout / "local_pkg" / "__init__.py").write_text("")
        (checkout / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
            '[project]\nname = "local-pkg"\nversion = "0.1"\n')
        monkeypatch.setattr(pypi_env, "ROOT", str(checkout))
        layer = pypi_env.workspace_layer(SMALL, "py399", prefix)
        assert layer == str(checkout / ".pixi" / "twin" / "py399")
        seen.append(subprocess.run([os.path.join(layer, "bin", "python"), "-c", probe], cwd="/",
                                   capture_output=True, text=True).stdout.strip())
    assert seen == [str(tmp_path / c / "local_pkg" / "__init__.py") for c in ("one", "two")]
    assert subprocess.run([python, "-c", "import local_pkg"], cwd="/", capture_output=True).returncode == 1
    assert pypi_env.workspace_layer(SMALL, "py399-runtime", prefix) == prefix


def test_this_checkout_is_the_imported_package(tmp_path):
    """numerai_predict imports from this checkout, from any folder, without sys.path patching."""
    probe = "import numerai_predict; print(numerai_predict.__file__)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert found.stdout.strip() == os.path.join(ROOT, "numerai_predict", "__init__.py"), found.stderr


# ---- no-default-feature and a task's default-environment ---------------------------

# SMALL plus a `tools` environment without the default feature, whose feature's tasks
# name it as their default environment, and a task both environments offer.
WITH_TOOLS = dict(
    SMALL,
    tasks={"check": {"cmd": "true"}},
    feature=dict(SMALL["feature"], tools={
        "dependencies": {"python": "3.99.*"},
        "tasks": {"build": {"cmd": "true", "default-environment": "tools"},
                  "shared": {"cmd": "true", "default-environment": "tools"}}},
        extra={"tasks": {"shared": {"cmd": "true"}}}),
    environments=dict(SMALL["environments"], tools={"features": ["tools"], "no-default-feature": True},
                      both={"features": ["py399", "extra", "tools"]}),
)


def test_no_default_feature_takes_only_the_environments_own_features():
    assert pypi_env.merged(WITH_TOOLS, "tools", "dependencies") == {"python": "3.99.*"}
    assert pypi_env.merged(WITH_TOOLS, "tools", "pypi-dependencies") == {}
    assert pypi_env.requirements(WITH_TOOLS, "tools") == []
    assert pypi_env.path_dependencies(WITH_TOOLS, "tools") == {}
    # The same features with the default one: the top level's dependencies come back.
    assert "numpy==2.1.*" in pypi_env.requirements(WITH_TOOLS, "both")


@pytest.fixture
def ran(monkeypatch):
    """The environment each task's own command would run in (nothing is built)."""
    seen: list[tuple[str, str]] = []

    def run_own_command(manifest, env, task, spec, args):
        seen.append((task, env))
        return 0
    monkeypatch.setattr(pypi_env, "run_own_command", run_own_command)
    return seen


def test_a_task_runs_in_its_default_environment_and_e_overrides_it(ran):
    pypi_env.run_task(WITH_TOOLS, None, "build", [])  # only tools has it
    pypi_env.run_task(WITH_TOOLS, None, "shared", [])  # tools and both: its default-environment decides
    pypi_env.run_task(WITH_TOOLS, "both", "shared", [])  # -e wins
    pypi_env.run_task(WITH_TOOLS, None, "check", [])  # [tasks]: pixi's default environment
    assert ran == [("build", "tools"), ("shared", "tools"), ("shared", "both"), ("check", "py312")]
    # [tasks] is the default feature's: not in tools, as pixi says.
    with pytest.raises(pypi_env.TwinError, match="'check' is not in environment tools"):
        pypi_env.run_task(WITH_TOOLS, "tools", "check", [])
    with pytest.raises(pypi_env.TwinError, match="'build' is not in environment py399; run it in tools"):
        pypi_env.run_task(WITH_TOOLS, "py399", "build", [])


def test_image_tasks_run_in_tools_without_e(manifest, ran):
    for task in ("build-image", "build-images", "push-images", "publish-image", "merge-images", "pull-image",
                 "image-shell", "bench-image", "update-pixi-schema"):
        args = ["0.77.0"] if task == "update-pixi-schema" else ["py311"] if task in (
            "publish-image", "merge-images", "pull-image") else []
        assert pypi_env.run_task(manifest, None, task, args) == 0
        assert ran[-1] == (task, "tools")
    pypi_env.run_task(manifest, "tools", "build-image", ["py311"])
    assert ran[-1] == ("build-image", "tools")
    # The ML tasks stay where they were.
    pypi_env.run_task(manifest, None, "test-images", [])
    pypi_env.run_task(manifest, "py311", "test-images", ["py311"])
    pypi_env.run_task(manifest, None, "lint", [])
    assert ran[-3:] == [("test-images", "py312"), ("test-images", "py311"), ("lint", "py312")]


def test_the_pixi_shim_runs_build_image_in_tools(ran):
    import pixi_shim

    assert pixi_shim.main(["run", "build-image", "py311"]) == 0
    assert pixi_shim.main(["run", "-e", "tools", "pull-image", "py311"]) == 0
    assert pixi_shim.main(["run", "-e", "py311", "build-image", "py311"]) == 2  # not in py311, as under pixi
    assert ran == [("build-image", "tools"), ("pull-image", "tools")]


def test_tools_needs_no_workspace_layer(manifest, tmp_path, monkeypatch):
    """tools has no path dependency: its tasks run on the shared prefix, with no venv in the checkout."""
    monkeypatch.setattr(pypi_env, "ROOT", str(tmp_path))
    assert pypi_env.workspace_layer(manifest, "tools", "/envs/tools") == "/envs/tools"
    assert not (tmp_path / ".pixi").exists()


def test_an_empty_lock_builds_python_alone(monkeypatch, tmp_path):
    """tools locks no package: the build copies CPython and installs nothing."""
    monkeypatch.setattr(pypi_env, "LOCK_DIR", str(tmp_path / "locks"))
    pypi_env.write_lock(WITH_TOOLS, "tools", "3.99.1", "")
    monkeypatch.setattr(pypi_env, "find_python", lambda minor: "/base/bin/python3.99")
    monkeypatch.setattr(pypi_env, "python_version", lambda python: "3.99.1")
    monkeypatch.setattr(pypi_env, "copy_python", lambda python, prefix: os.makedirs(prefix))
    monkeypatch.setattr(pypi_env, "bundle_system_libs", lambda prefix: 0)
    commands = []
    monkeypatch.setattr(pypi_env, "run_checked", lambda command, what, **kw: commands.append(command))
    pypi_env.build_prefix(WITH_TOOLS, "tools", str(tmp_path / "env"))
    assert not any("install" in command for command in commands)
    assert [c[c.index("-m") + 1] for c in commands] == ["compileall"]


# ---- builds that never trample each other ------------------------------------------------


@pytest.fixture
def fake_builds(monkeypatch, tmp_path):
    """Builds of `tools` from a lock in tmp_path, into tmp_path/envs; build_prefix only records and
    writes a marker (``fail`` makes the next build die halfway, as a killed one would)."""
    monkeypatch.setattr(pypi_env, "LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setattr(pypi_env, "ENVS_DIR", str(tmp_path / "envs"))
    pypi_env.write_lock(WITH_TOOLS, "tools", "3.99.1", "")
    calls, state = [], {"fail": False}

    def build_prefix(manifest, env, prefix):
        calls.append(prefix)
        shutil.rmtree(prefix, ignore_errors=True)
        os.makedirs(os.path.join(prefix, "bin"))
        time.sleep(0.3)  # long enough for a second builder to arrive meanwhile
        if state["fail"]:
            state["fail"] = False
            raise KeyboardInterrupt  # interrupted halfway: files there, no stamp
        with open(os.path.join(prefix, "bin", "python"), "w") as handle:
            handle.write(pypi_env.lock_header(env)["python"])

    monkeypatch.setattr(pypi_env, "build_prefix", build_prefix)
    return calls, state


def test_two_builders_of_one_lock_build_it_once(fake_builds):
    calls, _ = fake_builds
    results = []
    threads = [threading.Thread(target=lambda: results.append(pypi_env.build(WITH_TOOLS, "tools")))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and results[0] == results[1] == calls[0]
    assert os.path.isfile(os.path.join(results[0], pypi_env.STAMP))


def test_another_lock_builds_beside_not_over_the_first(fake_builds, tmp_path):
    """Two clones with different locks of one environment: two prefixes, each intact; the name
    points at the newest."""
    calls, _ = fake_builds
    first = pypi_env.build(WITH_TOOLS, "tools")
    pypi_env.write_lock(WITH_TOOLS, "tools", "3.99.2", "")
    second = pypi_env.build(WITH_TOOLS, "tools")
    assert first != second and calls == [first, second]
    assert open(os.path.join(first, "bin", "python")).read() == "3.99.1"  # untouched by the second build
    assert open(os.path.join(second, "bin", "python")).read() == "3.99.2"
    assert os.path.realpath(tmp_path / "envs" / "tools") == second


def test_an_interrupted_build_never_looks_complete(fake_builds):
    calls, state = fake_builds
    state["fail"] = True
    with pytest.raises(KeyboardInterrupt):
        pypi_env.build(WITH_TOOLS, "tools")
    assert os.path.isdir(calls[0]) and not os.path.exists(os.path.join(calls[0], pypi_env.STAMP))
    assert pypi_env.build(WITH_TOOLS, "tools") == calls[0] and len(calls) == 2  # built again, whole
    assert pypi_env.build(WITH_TOOLS, "tools") == calls[0] and len(calls) == 2  # then reused


def test_uv_goes_to_the_projects_tools_folder_not_the_users_python(monkeypatch, tmp_path):
    monkeypatch.setattr(pypi_env, "TOOLS_DIR", str(tmp_path / "tools"))
    monkeypatch.setattr(pypi_env.shutil, "which", lambda name: None)
    ran = []
    monkeypatch.setattr(pypi_env, "run_checked", lambda command, what, **kw: ran.append(command))
    pypi_env.uv.cache_clear()
    try:
        command = pypi_env.uv()
    finally:
        pypi_env.uv.cache_clear()
    target = str(tmp_path / "tools" / f"uv-{pypi_env.UV_VERSION}")
    assert command == [os.path.join(target, "bin", "uv")]
    (install,) = ran
    assert install[install.index("--target") + 1] == target and f"uv=={pypi_env.UV_VERSION}" in install
