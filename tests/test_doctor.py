"""The pickle doctor (predict.py --check): which Python made a pickle, what it needs,
where to run it, read without running it."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

import predict
from numerai_predict import make_signs, pythons
from numerai_predict.doctor import made_with
from numerai_predict.errors import PickleVersionError
from numerai_predict.pickles import inspect_pickle

MODELS = os.path.join(ROOT, "tests", "models")
EXAMPLES = os.path.join(ROOT, "examples")
PICKLES = sorted(glob.glob(os.path.join(MODELS, "*.pkl")) + glob.glob(os.path.join(MODELS, "kinds", "*.pkl")))
HERE = f"3.{sys.version_info[1]}"
SCHEMA = os.path.join(ROOT, "numerai_predict", "doctor.schema.json")


def python_of(path: str) -> list[str] | None:
    """The Python a test pickle's name says made it (None: a pickle without code objects)."""
    name = os.path.basename(path)
    return None if name.startswith("no_code") else [re.search(r"_3_(\d+)", name)[0][1:].replace("_", ".")]


def local_data(out) -> list[str]:
    return ["--dataset", os.path.join(EXAMPLES, "live.parquet"),
            "--benchmarks", os.path.join(EXAMPLES, "live_benchmark_models.parquet"), "--output_dir", str(out)]


def check(capsys, *argv: str) -> tuple[int, str]:
    """--check in-process; every --json report, runnable or not, is checked against the schema."""
    code = predict.main(["--check", *argv])
    out = capsys.readouterr().out
    if "--json" in argv and out.strip():
        import jsonschema

        with open(SCHEMA) as handle:
            jsonschema.validate(json.loads(out), json.load(handle))
    return code, out


@pytest.mark.parametrize("path", PICKLES, ids=[os.path.relpath(p, MODELS) for p in PICKLES])
def test_the_doctor_names_the_python_that_made_each_pickle(path):
    """Every committed pickle, of every kind (functions, lambdas, closures, partials, callable
    instances, sklearn pipelines, Keras and PyTorch models) on every Python, read in this one."""
    pythons_made, evidence = made_with(inspect_pickle(path), pythons.known_pythons())
    assert pythons_made == python_of(path), evidence


def test_every_python_environment_has_its_signs():
    """Adding a Python to pixi.toml is followed by its signs file, written by its own environment."""
    import manifest as pixi_toml

    manifest = pixi_toml.load()
    for env in pixi_toml.python_environments(manifest):
        assert os.path.isfile(os.path.join(pythons.HERE, f"{env}.json")), (
            f"numerai_predict/environments/{env}.json is missing: run `pixi run -e {env} make-signs`")


def test_this_environments_signs_are_what_it_generates():
    """The committed file is this Python's real opcode table, and the package minors pixi.toml pins."""
    import manifest as pixi_toml

    env = f"py3{sys.version_info[1]}"
    with open(os.path.join(pythons.HERE, f"{env}.json")) as handle:
        committed = json.load(handle)
    current = make_signs.current_signs_data()
    assert {k: v for k, v in committed.items() if k != "packages"} == {
        k: v for k, v in current.items() if k != "packages"}, f"stale: run `pixi run -e {env} make-signs`"
    pins = pixi_toml.merged(pixi_toml.load(), env, "dependencies", "linux-64")
    for package, minor in committed["packages"].items():
        pin = pins.get("py-xgboost" if package == "xgboost" else package)
        pin = pin if isinstance(pin, str) else pin["version"]
        assert pin == f"{minor}.*", f"{env}: {package} {minor} is not pixi.toml's {pin}"


def test_check_json_follows_its_schema_and_its_commands_run(capsys, tmp_path, monkeypatch):
    """--check --json: the Python, modules, an empty unsafe list and a verdict whose command,
    pasted into a shell, runs the model (exit 0, a CSV)."""
    import jsonschema

    monkeypatch.setenv("PYPI_TWIN", "1")  # the command of the tool running: here the PyPI twin

    model = os.path.join(MODELS, f"model_3_{sys.version_info[1]}.pkl")
    code, out = check(capsys, "--json", "--model", model, *local_data(tmp_path))
    report = json.loads(out)
    with open(SCHEMA) as handle:
        jsonschema.validate(report, json.load(handle))
    assert code == 0 and report["python"]["made_with"] == [HERE] and report["unsafe"] == []
    assert {"cloudpickle"} <= {row["module"] for row in report["modules"] if row["present"]}
    verdict = report["verdict"]
    assert verdict["environment"] == f"py3{sys.version_info[1]}" and verdict["docker_image"] == f"Python {HERE}"
    assert not glob.glob(str(tmp_path / "*.csv"))  # the check itself loads and predicts nothing
    pasted = subprocess.run(["bash", "-c", verdict["commands"]["local"]], cwd=tmp_path, capture_output=True,
                            text=True)
    assert pasted.returncode == 0, pasted.stderr
    assert glob.glob(str(tmp_path / "live_predictions-*.csv"))


def test_check_human_report(capsys):
    path = os.path.join(MODELS, "model_3_10_legacy.pkl")
    code, out = check(capsys, "--model", path)
    assert code == (0 if HERE in pythons.known_pythons() else 12)
    assert "Made with: Python 3.10\n" in out and "Unsafe:    none" in out
    assert "scikit-learn 1.6.1" in out  # the version sklearn records in its pickled state
    assert "run it in py310" in out and "numerapi docker_image='Python 3.10'" in out


def test_a_pickle_without_code_objects_is_unknown_never_passed_silently(capsys):
    (path,) = glob.glob(os.path.join(MODELS, "kinds", "no_code_*.pkl"))[:1]
    code, out = check(capsys, "--json", "--model", path)
    report = json.loads(out)
    assert report["python"]["made_with"] is None and "no code objects" in report["python"]["evidence"][0]
    assert code == 0 and report["verdict"]["runnable"]


@pytest.fixture
def without(monkeypatch, tmp_path):
    """The environments' signs without one Python's: as if that Python were new."""
    def drop(version: str) -> None:
        folder = tmp_path / "environments"
        shutil.copytree(pythons.HERE, folder)
        os.remove(folder / f"py{version.replace('.', '')}.json")
        monkeypatch.setattr(pythons, "HERE", str(folder))
    return drop


def other_python() -> str:
    return next(v for v in ("3.13", "3.12", "3.11", "3.10") if v != HERE)


def test_a_python_missing_from_the_data_is_reported_unknown(capsys, without):
    other = other_python()
    without(other)
    model = os.path.join(MODELS, f"model_{other.replace('.', '_')}.pkl")
    code, out = check(capsys, "--json", "--model", model)
    report = json.loads(out)
    assert report["python"]["made_with"] == [] and other not in report["python"]["known"]
    assert code == PickleVersionError.exit_code and not report["verdict"]["runnable"]
    assert "none of the environments knows" in report["verdict"]["reason"]


def test_a_run_refuses_a_pickle_of_an_unknown_python_before_loading(capfd, without, tmp_path):
    """Never a crash (31) or a silent pass: exit 12, before the model's process starts."""
    other = other_python()
    without(other)
    model = os.path.join(MODELS, f"model_{other.replace('.', '_')}.pkl")
    code = predict.main(["--model", model, *local_data(tmp_path)])
    err = capfd.readouterr().err
    assert code == PickleVersionError.exit_code, err
    assert "compiled by a Python none of the environments knows" in err


def test_loading_failures_carry_the_verdict(capfd, tmp_path):
    """Exit 13 (a module this environment lacks) says which environment the doctor would pick."""
    path = tmp_path / "missing.pkl"
    path.write_bytes(b"cnosuchmodule_x\nthing\n.")  # protocol 0: GLOBAL, STOP
    code = predict.main(["--model", str(path), *local_data(tmp_path)])
    err = capfd.readouterr().err
    assert code == 13, err
    newest = max(int(v[2:]) for v in pythons.known_pythons() if v not in pythons.EXPERIMENTAL)
    assert f"doctor: Python unknown (no code objects); run it in py3{newest}" in err


def os_system_pickle(tmp_path) -> tuple[str, str]:
    """A pickle that would run `touch MARKER` while loading (never loaded here)."""
    from malicious_pickles import corpus

    marker = str(tmp_path / "MARKER")
    (entry,) = [e for e in corpus(marker) if e.expected == ("os", "system") and not e.gap][:1]
    path = tmp_path / "evil.pkl"
    path.write_bytes(entry.data)
    return str(path), marker


def test_check_flags_unsafe_references_and_runs_nothing(capsys, tmp_path):
    path, marker = os_system_pickle(tmp_path)
    code, out = check(capsys, "--json", "--model", path)
    report = json.loads(out)
    assert code == 16 and not report["verdict"]["runnable"]
    assert {"module": "os", "name": "system", "reason": "runs a shell command"} in report["unsafe"]
    assert not os.path.exists(marker)


def test_a_run_refuses_unsafe_pickles_unless_allowed(capfd, tmp_path):
    path, marker = os_system_pickle(tmp_path)
    code = predict.main(["--model", path, *local_data(tmp_path)])
    err = capfd.readouterr().err
    assert code == 16 and "os.system (runs a shell command)" in err and not os.path.exists(marker)
    # --allow-unsafe loads it (what the pickle does then is the user's risk): os.system ran.
    code = predict.main(["--model", path, "--allow-unsafe", "--no-isolation", *local_data(tmp_path)])
    assert os.path.exists(marker) and code == 14, capfd.readouterr().err  # os.system's int is not callable


README_CLONE = "/home/you/numerai-predict"


def readme_blocks() -> dict[str, str]:
    """The doctor's examples in docs/doctor.md: the `$ pixi run ... doctor ...` line -> the output shown under it."""
    with open(os.path.join(ROOT, "docs", "doctor.md")) as handle:
        lines = handle.read().split("\n")
    blocks: dict[str, str] = {}
    for i, line in enumerate(lines):
        if line.startswith("    $ pixi run -e py311 doctor "):
            end = next(j for j in range(i + 1, len(lines)) if not lines[j].startswith("    "))
            blocks[line[6:]] = "\n".join(text[4:] for text in lines[i + 1:end])
    return blocks


def versions_hidden(text: str) -> str:
    """Installed versions differ between pixi's and the twin's builds: compare the rest."""
    return re.sub(r"\b\d+\.\d+\.\d+\b", "X.Y.Z", text)


@pytest.mark.skipif(HERE != "3.11", reason="README shows the doctor's output in py311")
@pytest.mark.parametrize("command", sorted(readme_blocks()))
def test_readme_shows_the_doctors_real_output(command, capsys, monkeypatch):
    monkeypatch.setenv("INIT_CWD", ROOT)  # README runs it in the clone
    monkeypatch.delenv("PYPI_TWIN", raising=False)  # and shows pixi's commands
    code = predict.main(["--check", *command.split()[5:]])  # the doctor task: predict.py --check
    out = capsys.readouterr().out.replace(ROOT, README_CLONE)
    assert code == 0 and versions_hidden(out.rstrip("\n")) == versions_hidden(readme_blocks()[command])


def test_readme_has_both_doctor_examples():
    assert [("--json" in command) for command in sorted(readme_blocks())] == [True, False]


# ---- each sign on its own: the review's "delete one check, all green" gaps ----

def code_args(name: str) -> tuple[object, ...]:
    return inspect_pickle(os.path.join(MODELS, name)).code_objects[0]


def with_field(args: tuple[object, ...], index: int, value: object) -> tuple[object, ...]:
    return (*args[:index], value, *args[index + 1:])


def test_each_sign_alone_rules_a_python_out():
    known = pythons.known_pythons()
    s310, s311 = known["3.10"], known["3.11"]
    a310, a311 = code_args("model_3_10.pkl"), code_args("model_3_11.pkl")
    assert s310.matches(a310) and s311.matches(a311)
    code = a311[s311.code_index]
    assert isinstance(code, bytes)
    # The constructor's field count.
    assert not s311.matches(a311[:-1])
    # RESUME opens every 3.11 function: without its prologue the bytecode is not 3.11's.
    resume = code.index(bytes([s311.resume, 0]))
    assert not s311.matches(with_field(a311, s311.code_index, code[resume + 2:] + code[:resume + 2]))
    # Inline caches are zero in stored bytecode; a CACHE never opens an instruction.
    load_global = next(i for i in range(0, len(code), 2) if s311.caches.get(code[i]))
    dirty = bytearray(code)
    dirty[load_global + 2] = 1
    assert not s311.matches(with_field(a311, s311.code_index, bytes(dirty)))
    assert not s311.matches(with_field(a311, s311.code_index, code + b"\x00\x00"))
    # An opcode this Python does not have.
    unknown = next(op for op in range(256) if op not in s311.opcodes and op not in s311.caches)
    assert not s311.matches(with_field(a311, s311.code_index, code[:-2] + bytes([unknown, 0])))
    # 3.8/3.9 store co_lnotab where 3.10 has co_linetable: its deltas stop short of the end.
    table = a310[s310.linetable_index]
    assert isinstance(table, bytes)
    assert not s310.matches(with_field(a310, s310.linetable_index, table[:-2]))


def test_the_running_pythons_signs_are_computed_when_its_file_is_missing(without):
    without(HERE)
    assert HERE in pythons.known_pythons()
    model = os.path.join(MODELS, f"model_3_{sys.version_info[1]}.pkl")
    assert made_with(inspect_pickle(model), pythons.known_pythons())[0] == [HERE]


# ---- what the pickle records, modules, verdict preferences ----

@pytest.mark.parametrize(("name", "library", "recorded"), [
    ("model_3_10_legacy.pkl", "scikit-learn", "1.6.1"),
    ("model_3_10_legacy.pkl", "numpy", "1 (numpy.core)"),
    ("model_3_13_legacy.pkl", "numpy", "2 (numpy._core)"),
    ("model_3_11_legacy.pkl", "xgboost", "3.0.5"),
    ("model_3_12_legacy.pkl", "keras", "3.15.1"),
    ("model_3_10.pkl", "lightgbm model format", "v4"),
])
def test_versions_the_pickle_records(capsys, name, library, recorded):
    _, out = check(capsys, "--json", "--model", os.path.join(MODELS, name))
    rows = {row["library"]: row for row in json.loads(out)["recorded_versions"]}
    assert rows[library]["recorded"] == recorded


def test_recorded_versions_pick_the_environment_when_no_code_tells(capsys):
    """No code objects: numpy 1's module paths fit py310 alone, numpy 2's the others."""
    _, out = check(capsys, "--json", "--model", os.path.join(MODELS, "kinds", "no_code_3_10.pkl"))
    report = json.loads(out)
    assert report["verdict"]["environment"] == "py310"
    numpy = next(row for row in report["recorded_versions"] if row["library"] == "numpy")
    assert numpy["environments"] == ["py310"] and numpy["matches_here"] == (HERE == "3.10")


def test_the_verdict_prefers_the_running_python(capsys, monkeypatch):
    from numerai_predict import doctor

    args = code_args(f"model_3_{sys.version_info[1]}.pkl")
    monkeypatch.setattr(doctor, "made_with", lambda facts, known: (sorted(known, key=doctor.minor), ["any"]))
    _, out = check(capsys, "--json", "--model", os.path.join(MODELS, f"model_3_{sys.version_info[1]}.pkl"))
    assert args and json.loads(out)["verdict"]["environment"] == f"py3{sys.version_info[1]}"


def test_module_rows_absent_and_stdlib(capsys, tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(b"(cnosuchmodule_x\nthing\nccollections\nOrderedDict\nt.")  # protocol 0: a tuple of 2 globals
    code, out = check(capsys, "--json", "--model", str(path))
    report = json.loads(out)
    rows = {row["module"]: row for row in report["modules"]}
    assert rows["nosuchmodule_x"] == {"module": "nosuchmodule_x", "distribution": "nosuchmodule_x",
                                      "present": False, "version": None, "stdlib": False}
    assert rows["collections"]["stdlib"] and rows["collections"]["present"]
    newest = max((v for v in pythons.known_pythons() if v not in pythons.EXPERIMENTAL), key=lambda v: int(v[2:]))
    if newest == HERE:
        assert "nosuchmodule_x, absent from this environment" in report["verdict"]["reason"]


def test_python_3_14_is_marked_experimental_and_never_a_default(capsys, tmp_path):
    """A 3.14 pickle is sent to py314, marked experimental as numerai-predict marks that image; a pickle
    that tells no Python goes to the newest stable environment, not to 3.14."""
    code, out = check(capsys, "--json", "--model", os.path.join(MODELS, "model_3_14.pkl"))
    verdict = json.loads(out)["verdict"]
    assert (verdict["environment"], verdict["docker_image"], verdict["experimental"]) == ("py314", "Python 3.14", True)
    assert "Python 3.14 is experimental in numerai-predict" in verdict["reason"]
    older = json.loads(check(capsys, "--json", "--model", os.path.join(MODELS, "model_3_13.pkl"))[1])["verdict"]
    assert (older["environment"], older["experimental"]) == ("py313", False)
    path = tmp_path / "no_code.pkl"
    path.write_bytes(b"ccollections\nOrderedDict\n.")  # protocol 0: one global, no code object
    unknown = json.loads(check(capsys, "--json", "--model", str(path))[1])["verdict"]
    assert (unknown["environment"], unknown["experimental"]) == ("py313", False)



@pytest.mark.parametrize("made", [["3.12", "3.13", "3.14"], ["3.11", "3.14"]])
def test_a_pickle_several_pythons_fit_goes_to_a_stable_one_unless_it_runs_here(capsys, monkeypatch, made):
    from numerai_predict import doctor

    monkeypatch.setattr(doctor, "made_with", lambda facts, known: (made, ["any"]))
    _, out = check(capsys, "--json", "--model", os.path.join(MODELS, "model_3_13.pkl"))
    verdict = json.loads(out)["verdict"]
    stable = "py" + made[-2].replace(".", "")
    assert verdict["environment"] == (f"py3{sys.version_info[1]}" if HERE in made else stable), verdict


# ---- failures ----

def test_json_even_when_the_pickle_cannot_be_read(capsys, tmp_path):
    code = predict.main(["--check", "--json", "--model", str(tmp_path / "missing.pkl")])
    assert code == 10 and json.loads(capsys.readouterr().out)["exit_code"] == 10
    (tmp_path / "hello.pkl").write_bytes(b"hello world\n")
    code = predict.main(["--check", "--json", "--model", str(tmp_path / "hello.pkl")])
    error = json.loads(capsys.readouterr().out)["error"]
    assert code == 11 and "not a readable pickle" in error and "object at" not in error


def test_json_needs_check(capsys):
    assert predict.main(["--json", "--model", "m.pkl"]) == 2


def test_check_redacts_a_presigned_url(capsys, server, tmp_path):
    with open(os.path.join(MODELS, f"model_3_{sys.version_info[1]}.pkl"), "rb") as handle:
        url = server.route("/m.pkl", (200, handle.read()))
    code, out = check(capsys, "--json", "--model", url + "?X-Amz-Signature=secret", "--output_dir", str(tmp_path))
    assert code == 0 and "secret" not in out and json.loads(out)["pickle"].endswith("/m.pkl")


def test_a_crafted_stack_of_marks_is_read_in_linear_time(capsys, tmp_path):
    """80,000 MARKs closed one by one: rejected or read, but not in quadratic time (no timing: it finishes)."""
    path = tmp_path / "marks.pkl"
    path.write_bytes(b"(" * 80000 + b"l" * 80000 + b".")
    assert check(capsys, "--model", str(path))[0] in (0, 11)


# ---- unsafe references that hide behind safe names ----

class Reduce:
    """An object pickling as ``func(*args)``: building the pickle never calls func."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # pickle wants a callable where a call's result is called
        raise AssertionError("never called")


def os_system_through_subimport():
    from cloudpickle.cloudpickle import subimport

    return Reduce(getattr, (Reduce(subimport, ("os",)), "system"))


@pytest.mark.parametrize("wrap", ["partial", "map", "plain"])
def test_getattr_of_an_imported_module_is_that_modules_global(tmp_path, wrap):
    import functools
    import pickle

    system = os_system_through_subimport()
    obj = {"partial": Reduce(Reduce(functools.partial, (system, "touch x")), ()),
           "map": Reduce(list, (Reduce(map, (system, ["touch x"])),)),
           "plain": system}[wrap]
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    assert ("os", "system") in {(u.module, u.name) for u in inspect_pickle(str(path)).unsafe}


def test_pickles_nested_in_torch_storages_are_scanned(tmp_path):
    """torch.storage._load_from_bytes unpickles its bytes (weights_only=False): they are scanned too."""
    inner = b"cos\nsystem\n(S'touch x'\ntR."
    path = tmp_path / "t.pkl"
    path.write_bytes(b"\x80\x03ctorch.storage\n_load_from_bytes\nC" + bytes([len(inner)]) + inner + b"\x85R.")
    assert ("os", "system") in {(u.module, u.name) for u in inspect_pickle(str(path)).unsafe}


def torch_storage_of(blob: bytes) -> bytes:
    """A pickle that hands ``blob`` to torch.storage._load_from_bytes (torch.load of it)."""
    return (b"\x80\x04ctorch.storage\n_load_from_bytes\nB" + len(blob).to_bytes(4, "little") + blob
            + b"\x85R.")


def test_a_nested_pickle_cut_short_is_refused_with_what_it_ran(tmp_path):
    """Trailing garbage inside a nested pickle made its scan fail, and the scan's findings were dropped:
    os.system ran on load. What was read before the damage counts, and the damage itself is unsafe."""
    inner = b"cos\nsystem\n(S'touch x'\ntR" + b"\xff\xfe not a pickle"
    path = tmp_path / "t.pkl"
    path.write_bytes(torch_storage_of(inner))
    unsafe = inspect_pickle(str(path)).unsafe
    assert ("os", "system") in {(u.module, u.name) for u in unsafe}
    assert any("a nested pickle that cannot be read whole" in u.reason for u in unsafe)
    assert predict.main(["--model", str(path), "--output_dir", str(tmp_path)]) == 16  # refused, not loaded


def test_a_zip_bomb_in_a_nested_pickle_is_refused_unread(tmp_path):
    """A small pickle whose nested zip inflates far beyond the cap: the doctor (unconfined, in the runner)
    stops at the cap and refuses it, instead of inflating it all."""
    import io
    import zipfile

    from numerai_predict.pickles import MAX_NESTED_BYTES

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bomb, bomb.open("archive/data.pkl", "w") as member:
        chunk = bytes(1 << 20)
        for _ in range((MAX_NESTED_BYTES >> 20) * 4):
            member.write(chunk)
    path = tmp_path / "bomb.pkl"
    path.write_bytes(torch_storage_of(archive.getvalue()))
    assert path.stat().st_size < MAX_NESTED_BYTES // 64
    unsafe = inspect_pickle(str(path)).unsafe
    assert [u.reason for u in unsafe if u.module == "pickle"] == [
        f"a nested archive that cannot be read (ValueError: nested pickles over {MAX_NESTED_BYTES >> 20} MiB)"]


def test_bytes_spelt_by_protocol_2_are_scanned_and_computed_ones_refused(tmp_path):
    """Protocol 2 pickles bytes as _codecs.encode(str, 'latin1'): such a nested pickle is read like literal
    bytes; anything else computed while loading cannot be read here, and is refused."""
    inner = "cos\nsystem\n(S'touch x'\ntR."
    text = b"X" + len(inner).to_bytes(4, "little") + inner.encode()
    spelt = b"\x80\x02ctorch.storage\n_load_from_bytes\nc_codecs\nencode\n" + text + \
        b"X\x06\x00\x00\x00latin1\x86R\x85R."
    computed = b"\x80\x02ctorch.storage\n_load_from_bytes\ncbuiltins\nbytes\n)R\x85R."
    for name, data, expected in (("spelt", spelt, ("os", "system")), ("computed", computed, ("pickle", "loads"))):
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        assert expected in {(u.module, u.name) for u in inspect_pickle(str(path)).unsafe}, name


def test_every_pickle_torch_load_reads_of_a_stream_is_scanned(tmp_path):
    """torch's legacy stream is up to five pickles: a payload in the second is found."""
    stream = b"\x80\x02K\x01." + b"cos\nsystem\n(S'touch x'\ntR." + b"\x10\x00\x00\x00raw tensor bytes"
    path = tmp_path / "t.pkl"
    path.write_bytes(torch_storage_of(stream))
    assert ("os", "system") in {(u.module, u.name) for u in inspect_pickle(str(path)).unsafe}
