"""Unsafe references (numerai_predict/unsafe.py): every crafted malicious pickle in
tests/malicious_pickles.py is flagged for the global it abuses, no committed pickle
is, and reading them runs none of their payloads."""

from __future__ import annotations

import glob
import io
import os
import pickletools
import socket
from pathlib import Path

import pytest
from conftest import ROOT
from malicious_pickles import Malicious, corpus, script

from numerai_predict.pickles import inspect_pickle
from numerai_predict.unsafe import ALIASES, ESCAPES, UNSAFE, UNSAFE_CALL_RESULTS, unsafe_call_reason, unsafe_reason

MODELS = os.path.join(ROOT, "tests", "models")
COMMITTED = sorted(glob.glob(os.path.join(MODELS, "*.pkl")) + glob.glob(os.path.join(MODELS, "kinds", "*.pkl")))
#: Placeholder paths: the entries are only read here, never loaded.
CORPUS = corpus(os.path.join("/nonexistent", "MARKER"))
NAMED = [entry for entry in CORPUS if not entry.gap]
GAPS = [entry for entry in CORPUS if entry.gap]
#: Evasions the doctor misses until pickles.py asks unsafe_call_reason about a REDUCE whose callable is a call.
NEEDS_CALL_CHECK = {entry.name for entry in GAPS if "unsafe_call_reason" in entry.gap}


def ids(entries: list[Malicious]) -> list[str]:
    return [entry.name for entry in entries]


def test_corpus_is_complete() -> None:
    """The kinds of attack the brief of issue 10 lists are all there, each a well-formed pickle."""
    names = set(ids(CORPUS))
    assert len(names) == len(CORPUS)
    for required in ("os_system_proto0_global", "os_system_stack_global_memo", "posix_system_proto2",
                     "subprocess_Popen", "subprocess_check_output", "subprocess_run", "builtins_eval",
                     "builtins_exec", "builtins_compile", "builtins___import__", "python2_builtin_eval",
                     "socket_create_connection", "reduce_chain_import_module", "runpy_run_path",
                     "nested_in_dict_value", "nested_in_list", "nested_in_tuple", "inst_os_system_proto0",
                     "obj_subprocess_check_call_proto1", "proto5_frame_bytearray8", "cloudpickle_function_global"):
        assert required in names
    for entry in CORPUS:
        for _ in pickletools.genops(entry.data):  # parses every opcode; raises on a malformed pickle
            pass
    data = {entry.name: entry.data for entry in CORPUS}
    opcodes = {op.name for op, _, _ in pickletools.genops(data["proto5_frame_bytearray8"])}
    assert {"FRAME", "BYTEARRAY8", "PROTO"} <= opcodes


@pytest.mark.parametrize("entry", NAMED, ids=ids(NAMED))
def test_table_flags_the_abused_global(entry: Malicious) -> None:
    assert unsafe_reason(*entry.expected)


@pytest.mark.parametrize("entry", [e for e in GAPS if e.name in NEEDS_CALL_CHECK],
                         ids=ids([e for e in GAPS if e.name in NEEDS_CALL_CHECK]))
def test_calling_what_these_return_is_unsafe(entry: Malicious) -> None:
    assert unsafe_reason(*entry.expected) is None  # the name alone is legitimate
    assert unsafe_call_reason(*entry.expected)


def test_names_that_are_not_identifiers_are_unsafe() -> None:
    """A STACK_GLOBAL fed by a call's result, as the symbolic scan renders it, or by an unknown (None)."""
    assert unsafe_reason("Call(func=Global(module='codecs', name='decode'), args=('bf', 'rot13'))", "system")
    assert unsafe_reason("None", "system")
    assert unsafe_reason("os", "") and unsafe_reason("", "x")


@pytest.mark.parametrize(("module", "name"), [
    ("posix", "system"), ("nt", "system"), ("__builtin__", "exec"), ("_pickle", "loads"), ("_socket", "socket"),
    ("importlib.util", "spec_from_file_location"), ("shlex", "os.system"), ("tempfile", "_os.system"),
    ("pickle", "sys.modules"), ("shlex", "split.__globals__"), ("builtins", "__loader__"), ("pkg", "builtins.eval"),
    ("os", "execvpe"), ("_posixsubprocess", "fork_exec"), ("io", "open"), ("_io", "FileIO"),
    ("pandas", "read_pickle"),
])
def test_aliases_and_paths(module: str, name: str) -> None:
    assert unsafe_reason(module, name)


@pytest.mark.parametrize(("module", "name"), [
    ("builtins", "getattr"), ("builtins", "type"), ("builtins", "object"), ("copyreg", "_reconstructor"),
    ("cloudpickle.cloudpickle", "subimport"), ("cloudpickle.cloudpickle", "_make_function"),
    ("cloudpickle.cloudpickle", "_builtin_type"), ("types", "CodeType"), ("types", "MethodType"),
    ("functools", "partial"), ("_io", "BytesIO"), ("torch.storage", "_load_from_bytes"),
    ("numpy.random._pickle", "__bit_generator_ctor"), ("torch.nn.modules.module", "Module.eval"),
    ("pathlib", "PosixPath"), ("collections", "OrderedDict"),
])
def test_what_legitimate_pickles_use_is_safe(module: str, name: str) -> None:
    assert unsafe_reason(module, name) is None


def test_table_is_well_formed() -> None:
    """One short sentence per entry, lower case, no final stop; aliases point at modules the table knows."""
    for reason in [*UNSAFE.values(), *UNSAFE_CALL_RESULTS.values()]:
        assert reason and reason[0].islower() and not reason.endswith(".") and len(reason) <= 80
    known = {module.split(".")[0] for module, _ in UNSAFE}
    assert set(ALIASES.values()) <= known
    assert not set(ALIASES) & known
    assert all(name.startswith(("__", "f_", "gi_", "cr_", "tb_")) for name in ESCAPES)


@pytest.mark.parametrize("path", COMMITTED, ids=[os.path.relpath(p, MODELS) for p in COMMITTED])
def test_committed_pickles_are_not_flagged(path: str) -> None:
    facts = inspect_pickle(path)
    assert facts.globals
    assert {(m, n): unsafe_reason(m, n) for m, n in facts.globals if unsafe_reason(m, n)} == {}
    assert facts.unsafe == []


@pytest.mark.parametrize("entry", CORPUS, ids=ids(CORPUS))
def test_doctor_flags_the_pickle(entry: Malicious, tmp_path: Path) -> None:
    """inspect_pickle(path).unsafe, the doctor's view: the abused global itself for named entries,
    something for the evasions."""
    path = os.path.join(tmp_path, entry.name + ".pkl")
    with open(path, "wb") as handle:
        handle.write(entry.data)
    unsafe = inspect_pickle(path).unsafe
    assert all(item.reason for item in unsafe)
    if entry.gap:
        assert unsafe
    else:
        assert entry.expected in {(item.module, item.name) for item in unsafe}


def test_reading_runs_nothing(tmp_path: Path) -> None:
    """The payloads aimed at a real marker, a real script for runpy and a listening port: after the scan
    (and pickletools' own disassembly) no marker exists and nobody connected."""
    marker = os.path.join(tmp_path, "MARKER")
    with open(script(marker), "w") as handle:
        handle.write(f"open({marker!r}, 'w').close()\n")
    with open(marker + ".probe", "w"):  # the place is writable: a payload that ran would leave the marker
        pass
    os.remove(marker + ".probe")
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setblocking(False)
        entries = corpus(marker, server.getsockname()[1])
        for entry in entries:
            path = os.path.join(tmp_path, entry.name + ".pkl")
            with open(path, "wb") as handle:
                handle.write(entry.data)
            assert inspect_pickle(path).unsafe
            pickletools.dis(entry.data, out=io.StringIO())
        with pytest.raises(BlockingIOError):
            server.accept()
    assert not os.path.exists(marker)
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(script(marker))]
                                                  + [entry.name + ".pkl" for entry in entries])
