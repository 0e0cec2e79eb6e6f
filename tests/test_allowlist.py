"""The pickle doctor's allowlist (numerai_predict/allowlist.py, judged in numerai_predict/judge.py):
what a pickle invokes while it loads is named, and only what the list allows passes.

Both ways, in every environment: every pickle of the advisory families (tests/advisory_pickles.py)
and of tests/malicious_pickles.py is refused; every benign pickle made here, as participants
make them, by this Python and its libraries (tests/benign_pickles.py), passes with no unknown call.
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickle
import pickletools
import socket
import sys

import cloudpickle
import jsonschema
import pytest
from advisory_pickles import Advisory, advisory_corpus, evasions, second_evasions
from benign_pickles import benign_corpus
from conftest import ROOT
from malicious_pickles import EMPTY_DICT, MARK, TUPLE, CallsAtLoad, binint, call, sglobal, text, wrap
from test_doctor import SCHEMA, check, local_data

import predict
from numerai_predict.allowlist import CALLABLES, EXCLUDED, LIBRARIES, allowed_reason, import_reason
from numerai_predict.pickles import scan_bytes
from numerai_predict.unsafe import unsafe_reason

ADVISORIES = advisory_corpus(os.path.join("/nonexistent", "MARKER"))


@pytest.fixture(scope="module")
def benign() -> dict[str, bytes]:
    made, skipped = benign_corpus()
    # pixi installs every framework everywhere; the PyPI twin leaves torch out but in py311 (pixi.toml's
    # [tool.pypi-twin.skip]: PyPI's torch wheels are CUDA builds of several GB).
    assert set(skipped) <= {"torch"}, f"this environment lacks {skipped}"
    return made


def refused(data: bytes) -> set[tuple[str, str]]:
    return {(item.module, item.name) for item in scan_bytes(data).unsafe}


@pytest.mark.parametrize("entry", ADVISORIES, ids=[entry.name for entry in ADVISORIES])
def test_each_advisory_family_is_refused_for_the_callable_it_abuses(entry: Advisory):
    assert entry.expected in refused(entry.data)


def test_the_advisory_corpus_covers_every_published_family():
    families = {entry.family for entry in ADVISORIES}
    assert len(families) >= 7 and len(ADVISORIES) >= 30
    named = {entry.expected for entry in ADVISORIES}
    for published in (("uuid", "_get_command_stdout"), ("profile", "Profile"), ("cProfile", "runctx"),
                      ("trace", "Trace"), ("_osx_support", "_read_output"), ("_aix_support", "_read_cmd_output"),
                      ("_pyrepl.pager", "pipe_pager"), ("imaplib", "IMAP4_stream"), ("pip", "main"),
                      ("requests.api", "get"), ("logging", "FileHandler"), ("timeit", "timeit"),
                      ("asyncio.unix_events", "_UnixSubprocessTransport"),
                      ("test.support.script_helper", "assert_python_ok")):
        assert published in named
    # Most of them are what a denylist misses: not one name of the table of numerai_predict/unsafe.py.
    assert sum(unsafe_reason(*entry.expected) is None for entry in ADVISORIES) >= 25


def test_benign_pickles_made_here_pass_with_no_unknown_call(benign):
    """Every framework of pixi.toml, pickled by this Python as a participant would: nothing refused,
    and each still loads (they are ours: loading them is the proof they are real pickles)."""
    assert len(benign) >= 12
    for name, data in benign.items():
        facts = scan_bytes(data)
        assert [c for c in facts.load_calls if c.verdict != "allowed"] == [] and facts.unsafe == [], name
        assert facts.load_calls, name
        pickle.loads(data)


def test_the_scan_reads_the_advisories_without_running_them(tmp_path):
    """Aimed at a real marker and a listening port: after the scan, nothing was created, nobody connected."""
    marker = str(tmp_path / "MARKER")
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        for entry in advisory_corpus(marker, server.getsockname()[1]) + evasions(marker) + second_evasions(marker):
            assert scan_bytes(entry.data).unsafe
            pickletools.dis(entry.data, out=io.StringIO())
        with pytest.raises(BlockingIOError):
            server.accept()
    assert os.listdir(tmp_path) == []


class OwnSetstate:
    """A participant's class whose __setstate__ runs while loading."""

    def __setstate__(self, state):
        self.__dict__.update(state)


class OwnInit:
    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        return OwnInit, (self.value,)  # loading calls the class: its own __init__ runs


class Plain:
    def __init__(self):
        self.weights = [1, 2]

    def __call__(self, live_features):
        return live_features


@pytest.fixture
def by_value():
    """Classes of this module pickled by value, as a notebook's are."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield cloudpickle.dumps
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_the_pickles_own_code_at_load_is_refused_and_named(by_value):
    for obj, method in ((OwnSetstate(), "__setstate__"), (OwnInit(3), "__init__")):
        unsafe = scan_bytes(by_value(obj)).unsafe
        assert any(method in item.name and "runs the pickle's own code while loading" in item.reason
                   for item in unsafe), unsafe
    # The same kind of object without a method that runs while loading passes.
    assert scan_bytes(by_value(Plain())).unsafe == []


KERAS_UNPICKLE = """
def _unpickle_model(cls, bytesio):
    import keras.src.saving.saving_lib as saving_lib
    {extra}
    return saving_lib._load_model_from_fileobj(bytesio, custom_objects=None, compile=True, safe_mode=None)
"""


def called_at_load(source: str) -> bytes:
    """A pickle that calls, while loading, a function pickled by value (as a notebook's)."""
    namespace: dict[str, object] = {"__name__": "notebook"}
    exec(source, namespace)
    return cloudpickle.dumps(CallsAtLoad(namespace["_unpickle_model"]))


def test_library_code_pickled_by_value_is_recognised_only_when_it_reaches_nothing_else():
    """cloudpickle pickles Keras's classmethod _unpickle_model by value (Keras models call it while
    loading): allowed by what its code can reach. The same function reaching one more global is the
    pickle's own code: refused."""
    assert scan_bytes(called_at_load(KERAS_UNPICKLE.format(extra=""))).unsafe == []
    unsafe = scan_bytes(called_at_load(KERAS_UNPICKLE.format(extra="__import__('os').system('true')"))).unsafe
    assert [item.name for item in unsafe] == ["_unpickle_model"]
    assert "runs the pickle's own code while loading" in unsafe[0].reason


def test_referenced_globals_stay_allowed_but_not_a_shell(by_value):
    """A model may call os.path.join when it predicts (isolation contains predict time); a model holding
    os.system or eval is refused all the same."""
    import functools

    assert scan_bytes(cloudpickle.dumps(functools.partial(os.path.join, "a"))).unsafe == []
    facts = scan_bytes(cloudpickle.dumps(functools.partial(os.system, "true")))
    assert [(u.name, u.reason) for u in facts.unsafe] == [("system", "runs a shell command")]
    assert (os.system.__module__, "system") in facts.referenced
    assert all(call.name != "system" for call in facts.load_calls)  # only referenced, never invoked


def test_a_run_refuses_an_unknown_load_time_call_before_loading(capfd, tmp_path):
    """Exit 16, the callable named with the doctor's verdict and how to allow it; the payload never ran."""
    marker = tmp_path / "written"
    entry = next(e for e in advisory_corpus(str(marker)) if e.name == "logging_filehandler")
    path = tmp_path / "model.pkl"
    path.write_bytes(entry.data)
    (tmp_path / "out").mkdir()
    code = predict.main(["--model", str(path), "--no-isolation", *local_data(tmp_path / "out")])
    err = capfd.readouterr().err
    assert code == 16 and not marker.exists()
    assert "logging.FileHandler (not on the doctor's allowlist" in err
    assert "numerai_predict/allowlist.py" in err
    assert os.listdir(tmp_path / "out") == []


def test_check_lists_every_load_time_call_with_its_verdict(capsys, tmp_path):
    entry = next(e for e in ADVISORIES if e.name == "profile_profile_run")
    path = tmp_path / "model.pkl"
    path.write_bytes(entry.data)
    code, out = check(capsys, "--json", "--model", str(path))
    report = json.loads(out)
    with open(SCHEMA) as handle:
        jsonschema.validate(report, json.load(handle))
    assert code == 16
    verdicts = {(c["module"], c["name"], c["how"]): c["verdict"] for c in report["load_time_calls"]}
    assert verdicts[("profile", "Profile", "call")] == "unknown"
    assert verdicts[("builtins", "getattr", "call")] == "allowed"
    code, text = check(capsys, "--model", str(path))
    assert "unknown  profile.Profile [call]" in text and "allowed  builtins.getattr [call]" in text


def test_the_lists_are_well_formed():
    """Every entry has a reason; nothing allowed is on the denylist; exclusions lie inside allowed libraries."""
    for (module, name), reason in CALLABLES.items():
        assert reason and reason[0].islower() and not reason.endswith("."), (module, name)
        assert unsafe_reason(module, name) is None, (module, name)
    assert all(package.split(".")[0] in LIBRARIES for package in EXCLUDED)
    assert allowed_reason("sklearn.linear_model._ridge", "Ridge")
    assert allowed_reason("torch._utils", "_rebuild_tensor_v2")
    assert allowed_reason("sklearn.utils", "check_array") is None  # a function, not a class
    assert allowed_reason("torch.distributed", "TCPStore") is None and allowed_reason("os.path", "join") is None
    assert import_reason("numpy")[0] and import_reason("os")[0]
    assert not import_reason("antigravity")[0] and not import_reason("pip.__main__")[0]
    assert not import_reason("some_unknown_module")[0]


def test_the_allowlist_is_documented_in_readme():
    """docs/doctor.md (README.md links it) says what may run while a pickle loads and where the list is."""
    with open(os.path.join(ROOT, "docs", "doctor.md")) as handle:
        page = handle.read()
    section = page[page.index("## What may run while a pickle loads"):]
    assert "numerai_predict/allowlist.py" in section and "`CALLABLES`" in section and "`LIBRARIES`" in section
    assert "--allow-unsafe" in section


EVASIONS = evasions(os.path.join("/nonexistent", "MARKER")) + second_evasions(os.path.join("/nonexistent", "MARKER"))


@pytest.mark.parametrize("entry", EVASIONS, ids=[entry.name for entry in EVASIONS])
def test_what_a_cold_review_got_past_the_allowlist_is_refused(entry: Advisory):
    assert entry.expected in refused(entry.data)


def test_each_way_of_invoking_is_judged():
    """REDUCE, NEWOBJ, OBJ, INST and BUILD of the same class not on the list: each refused, named by how."""
    from malicious_pickles import OBJ, TUPLE1

    newobj, build = b"\x81", b"b"
    handler = sglobal("logging", "FileHandler")
    cases = {
        "call": wrap(call(handler, text("x"))),
        "new": wrap(handler + text("x") + TUPLE1 + newobj),
        "setstate": wrap(handler + b")" + newobj + EMPTY_DICT + build),
        "obj": wrap(MARK + handler + text("x") + OBJ),
        "inst": b"(S'x'\nilogging\nFileHandler\n.",
    }
    for how, data in cases.items():
        calls = {(c.module, c.name, c.how): c.verdict for c in scan_bytes(data).load_calls}
        name = "FileHandler.__setstate__" if how == "setstate" else "FileHandler"
        expected_how = {"obj": "call", "inst": "call"}.get(how, how)
        assert calls.get(("logging", name, expected_how)) == "unknown", (how, calls)


def test_a_module_named_while_loading_is_refused():
    computed = call(sglobal("cloudpickle.cloudpickle", "subimport"),
                    call(sglobal("operator", "getitem"), MARK + text("antigravity") + TUPLE, binint(0)))
    calls = scan_bytes(wrap(computed)).load_calls
    assert any(c.how == "import" and c.module == "<computed>" and c.verdict != "allowed" for c in calls)


OWN = r'''
import enum, abc
def evil():
    return 1
class HashKey:
    def __hash__(self):
        return evil()
class SlotSet:
    __slots__ = ("a",)
    def __setattr__(self, k, v):
        object.__setattr__(self, k, v)
class Prop:
    @property
    def p(self):
        return evil()
class Mixin:
    def __init__(self, *a):
        evil()
class E(Mixin, enum.Enum):
    A = 1
class Str:
    def __str__(self):
        return "s"
class Del:
    def __del__(self):
        evil()
class Base:
    def __init__(self):
        evil()
class Child(Base):
    pass
class Meta(type):
    def __init__(cls, *args):
        evil()
class WithMeta(metaclass=Meta):
    pass
class CallMe:
    def __call__(self):
        return evil()
class ListLike(list):
    def extend(self, items):
        evil()
class Reg(abc.ABC):
    @classmethod
    def register(cls, sub):
        evil()
Reg.register(int)
class Hooked:
    def __init_subclass__(cls, **kwargs):
        evil()
class Sub(Hooked):
    pass
'''


class Reduce:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.fixture(scope="module")
def own():
    import types

    namespace = {"__name__": "notebook"}
    exec(OWN, namespace)
    return types.SimpleNamespace(**namespace)


def own_cases(own) -> dict[str, bytes]:
    import operator

    slot = object.__new__(own.SlotSet)
    object.__setattr__(slot, "a", 1)
    listlike = own.ListLike()
    list.append(listlike, 1)
    return {
        "a dict key's __hash__": {own.HashKey(): 1},
        "slot state set through __setattr__": slot,
        "a property read by getattr": Reduce(getattr, own.Prop(), "p"),
        "an enum whose mixin's __init__ is by value": own.E,
        "str() of an own object": Reduce(str, own.Str()),
        "an own class with __del__": own.Del(),
        "an own base's __init__ run by a call": Reduce(own.Child),
        "a metaclass by value": own.WithMeta,
        "an own object called": Reduce(own.CallMe()),
        "a list subclass's own extend": listlike,
        "an ABC's own register": own.Reg,
        "a bound method of an own function called": Reduce(own.CallMe().__call__),
        "getitem on an own object": Reduce(operator.getitem, {own.HashKey(): 1}, 0),
        "a subclass of an own class with __init_subclass__": own.Sub,
    }


def test_the_pickles_own_methods_that_run_while_loading_are_refused(own):
    for name, obj in own_cases(own).items():
        data = cloudpickle.dumps(obj)
        assert any(item.reason.startswith(("runs the pickle's own code", "not on the doctor's allowlist"))
                   for item in scan_bytes(data).unsafe), name


def test_one_verdict_does_not_hide_another_of_the_same_name(own):
    """A class named Foo called, then a function named Foo called: both listed, the function refused."""
    namespace = {"__name__": "notebook"}
    exec("class Foo:\n    pass\n", namespace)
    cls = namespace["Foo"]
    exec("def Foo():\n    return 1\n", namespace)
    unsafe = scan_bytes(cloudpickle.dumps([Reduce(cls), Reduce(namespace["Foo"])])).unsafe
    assert [item.name for item in unsafe] == ["Foo"]


def test_what_loads_is_what_the_doctor_read(tmp_path):
    """pandas would unpack a pickle named .gz/.zip first (a benign pickle could front a malicious archive):
    the runner loads the file's own bytes."""
    from numerai_predict.pickles import load_model

    path = tmp_path / "model.pkl.gz"
    path.write_bytes(pickle.dumps({"plain": True}))
    assert load_model(str(path)) == {"plain": True}


def test_json_lists_what_is_only_referenced(capsys, tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(cloudpickle.dumps(functools.partial(os.path.join, "a")))
    code, out = check(capsys, "--json", "--model", str(path))
    assert code == 0 and {"module": os.path.join.__module__, "name": "join"} in json.loads(out)["referenced"]


def test_every_kind_of_load_time_call_follows_the_schema(own, tmp_path):
    from numerai_predict.doctor import diagnose
    from numerai_predict.pickles import inspect_pickle

    with open(SCHEMA) as handle:
        schema = json.load(handle)
    pickles = [cloudpickle.dumps(obj) for obj in own_cases(own).values()] + [e.data for e in EVASIONS + ADVISORIES]
    hows = set()
    for index, data in enumerate(pickles):
        path = tmp_path / f"{index}.pkl"
        path.write_bytes(data)
        report = diagnose(str(path), inspect_pickle(str(path)))
        jsonschema.validate(report, schema)
        hows |= {call["how"] for call in report["load_time_calls"]}
    assert {"call", "new", "setstate_slots", "import", "enum", "method", "getattr", "hash",
            "argument"} <= hows
