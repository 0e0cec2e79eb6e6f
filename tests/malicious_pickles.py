"""Malicious pickles for the pickle doctor's unsafe references, built from raw
opcodes (and one with cloudpickle) and never loaded.

Each entry's payload, if it were ever unpickled, would leave a trace the tests
can look for: it creates the file ``marker`` (``touch`` through a shell or a
child process, ``open(marker, 'w')`` through eval/exec, a Unix socket bound at
``marker``...), or, for ``socket.create_connection``, connects to
``127.0.0.1:port``. ``runpy.run_path`` runs ``script(marker)``, a file the test
writes, which creates the marker. ``corpus(marker, port)`` builds them all;
``expected`` is the (module, name) the doctor must flag.

Entries with ``gap`` set use only names legitimate pickles use too (getattr,
cloudpickle's own functions): a table of names cannot flag them, the scan must
look at what is called. Their ``expected`` is the global whose *result* is
misused: called while loading (``unsafe.unsafe_call_reason``) or taken as a
module name. Nothing here calls pickle.loads.
"""

from __future__ import annotations

import marshal
import os
import shlex
import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class Malicious:
    name: str
    data: bytes
    expected: tuple[str, str]  # the (module, name) it must be flagged for
    effect: str  # what it would do if loaded
    gap: str = ""  # non-empty: what the scan must do beyond looking names up


def script(marker: str) -> str:
    """The Python file ``runpy.run_path`` would run; the test writes it."""
    return marker + ".py"


# ---- opcodes (pickletools' names) ----

STOP, MARK, REDUCE, TUPLE, TUPLE1, TUPLE2 = b".", b"(", b"R", b"t", b"\x85", b"\x86"
EMPTY_TUPLE, EMPTY_DICT, EMPTY_LIST = b")", b"}", b"]"
SETITEMS, APPENDS, APPEND, SETITEM = b"u", b"e", b"a", b"s"
STACK_GLOBAL, MEMOIZE, POP, OBJ = b"\x93", b"\x94", b"0", b"o"
NONE, NEWTRUE = b"N", b"\x88"


def proto(n: int) -> bytes:
    return b"\x80" + bytes([n])


def text(s: str) -> bytes:
    """SHORT_BINUNICODE (protocol 4) or BINUNICODE."""
    raw = s.encode()
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def text0(s: str) -> bytes:
    """UNICODE, protocol 0: one line, raw-unicode-escape."""
    assert "\n" not in s and "\\" not in s
    return b"V" + s.encode("raw-unicode-escape") + b"\n"


def binbytes(b: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(b)) + b


def binint(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def glob0(module: str, name: str) -> bytes:
    """GLOBAL: ``c<module>\\n<name>\\n`` (every protocol)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def sglobal(module: str, name: str) -> bytes:
    """STACK_GLOBAL (protocol 4+)."""
    return text(module) + text(name) + STACK_GLOBAL


def call(func: bytes, *args: bytes) -> bytes:
    """func(*args) through REDUCE."""
    return func + MARK + b"".join(args) + TUPLE + REDUCE


def getattr_(obj: bytes, attr: str, g: bytes = sglobal("builtins", "getattr")) -> bytes:
    return call(g, obj, text(attr))


def frame(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


def wrap(body: bytes, protocol: int = 4) -> bytes:
    return proto(protocol) + body + STOP


def corpus(marker: str, port: int = 9) -> list[Malicious]:
    """Every malicious pickle, its side effect aimed at ``marker`` (and ``port``)."""
    touch = "touch " + shlex.quote(marker)
    create = f"open({marker!r}, 'w').close()"
    os_system = sglobal("os", "system")
    entries: list[Malicious] = []

    def add(name: str, data: bytes, expected: tuple[str, str], effect: str, gap: str = "") -> None:
        entries.append(Malicious(name, data, expected, effect, gap))

    # os.system, every spelling
    add("os_system_proto0_global", glob0("os", "system") + b"(" + text0(touch) + b"tR.",
        ("os", "system"), touch)
    # protocol 4: 'os' and 'system' memoized first, fetched back with BINGET for STACK_GLOBAL
    add("os_system_stack_global_memo",
        wrap(text("os") + MEMOIZE + text("system") + MEMOIZE + POP + POP
             + b"h\x00" + b"h\x01" + STACK_GLOBAL + text(touch) + TUPLE1 + REDUCE),
        ("os", "system"), touch)
    add("posix_system_proto2", wrap(glob0("posix", "system") + text(touch) + TUPLE1 + REDUCE, 2),
        ("posix", "system"), touch)
    add("nt_system_proto2", wrap(glob0("nt", "system") + text(touch) + TUPLE1 + REDUCE, 2),
        ("nt", "system"), touch + " (Windows)")
    add("os_popen", wrap(call(sglobal("os", "popen"), text(touch))), ("os", "popen"), touch)
    add("os_execvp", wrap(call(sglobal("os", "execvp"), text("touch"),
                               MARK + text("touch") + text(marker) + b"l")),
        ("os", "execvp"), "replaces the process with " + touch)

    # subprocess
    argv = EMPTY_LIST + MARK + text("touch") + text(marker) + APPENDS
    for fn in ("Popen", "check_output", "run", "call", "check_call", "getoutput"):
        arg = text(touch) if fn == "getoutput" else argv
        add(f"subprocess_{fn}", wrap(call(sglobal("subprocess", fn), arg)), ("subprocess", fn), touch)

    # builtins: eval / exec / compile / __import__ / open, also as Python 2's __builtin__
    add("builtins_eval", wrap(call(sglobal("builtins", "eval"), text(create))), ("builtins", "eval"), create)
    add("builtins_exec", wrap(call(sglobal("builtins", "exec"), text(create))), ("builtins", "exec"), create)
    compiled = call(sglobal("builtins", "compile"), text(create), text("<pickle>"), text("exec"))
    add("builtins_compile",
        wrap(call(call(sglobal("types", "FunctionType"), compiled, EMPTY_DICT))),
        ("builtins", "compile"), "FunctionType(compile(...), {})() runs " + create)
    add("builtins___import__",
        wrap(call(getattr_(call(sglobal("builtins", "__import__"), text("os")), "system"), text(touch))),
        ("builtins", "__import__"), "getattr(__import__('os'), 'system')(...) runs " + touch)
    add("builtins_open", wrap(call(sglobal("builtins", "open"), text(marker), text("w"))),
        ("builtins", "open"), f"open({marker!r}, 'w')")
    add("python2_builtin_eval", wrap(glob0("__builtin__", "eval") + text(create) + TUPLE1 + REDUCE, 2),
        ("__builtin__", "eval"), create)
    add("python2_builtin_exec_proto0", glob0("__builtin__", "exec") + b"(" + text0(create) + b"tR.",
        ("__builtin__", "exec"), create)

    # sockets
    add("socket_create_connection",
        wrap(call(sglobal("socket", "create_connection"), text("127.0.0.1") + binint(port) + TUPLE2)),
        ("socket", "create_connection"), f"connects to 127.0.0.1:{port}")
    unix_socket = call(sglobal("socket", "socket"), binint(1), binint(1))  # AF_UNIX, SOCK_STREAM
    add("socket_unix_bind", wrap(call(getattr_(unix_socket, "bind"), text(marker))),
        ("socket", "socket"), f"binds a Unix socket at {marker}")

    # imports by name
    chain = call(getattr_(call(sglobal("importlib", "import_module"), text("os")), "system"), text(touch))
    add("reduce_chain_import_module", wrap(chain), ("importlib", "import_module"),
        "getattr(importlib.import_module('os'), 'system')(...) runs " + touch)
    add("runpy_run_path", wrap(call(sglobal("runpy", "run_path"), text(script(marker)))),
        ("runpy", "run_path"), f"runs {script(marker)}, which creates the marker")
    add("pty_spawn", wrap(call(sglobal("pty", "spawn"), argv)), ("pty", "spawn"), touch + " in a pty")
    add("ctypes_libc_system",
        wrap(call(getattr_(call(sglobal("ctypes", "CDLL"), NONE), "system"), binbytes(touch.encode()))),
        ("ctypes", "CDLL"), "libc's system(): " + touch)
    add("shutil_copyfile", wrap(call(sglobal("shutil", "copyfile"), text(os.devnull), text(marker))),
        ("shutil", "copyfile"), f"copies {os.devnull} to {marker}")
    add("code_interact_runsource",
        wrap(call(getattr_(call(sglobal("code", "InteractiveInterpreter")), "runsource"), text(create))),
        ("code", "InteractiveInterpreter"), create)
    code_bytes = marshal.dumps(compile(create, "<pickle>", "exec"))
    add("marshal_loads",
        wrap(call(call(sglobal("types", "FunctionType"),
                       call(sglobal("marshal", "loads"), binbytes(code_bytes)), EMPTY_DICT))),
        ("marshal", "loads"), "FunctionType(marshal.loads(code), {})() runs " + create)
    inner = wrap(call(os_system, text(touch)))
    add("nested_pickle_loads", wrap(call(sglobal("pickle", "loads"), binbytes(inner))),
        ("pickle", "loads"), "pickle.loads of a pickle that runs " + touch)
    add("nested__pickle_loads", wrap(call(sglobal("_pickle", "loads"), binbytes(inner))),
        ("_pickle", "loads"), "_pickle.loads of a pickle that runs " + touch)
    add("operator_attrgetter_chain",
        wrap(call(call(call(sglobal("operator", "attrgetter"), text("system")),
                       call(sglobal("cloudpickle.cloudpickle", "subimport"), text("os"))), text(touch))),
        ("operator", "attrgetter"), "attrgetter('system')(subimport('os'))(...) runs " + touch)

    # the payload inside benign structures
    payload = call(os_system, text(touch))
    benign = text("model") + text("ridge") + text("weights") + EMPTY_LIST + MARK + binint(1) + binint(2) + APPENDS
    add("nested_in_dict_value",
        wrap(EMPTY_DICT + MARK + benign + text("hook") + payload + SETITEMS), ("os", "system"), touch)
    add("nested_in_list",
        wrap(EMPTY_LIST + MARK + binint(1) + text("x") + EMPTY_LIST + payload + APPEND + APPENDS),
        ("os", "system"), touch)
    add("nested_in_tuple", wrap(MARK + binint(1) + EMPTY_DICT + text("k") + payload + SETITEM + NEWTRUE + TUPLE),
        ("os", "system"), touch)

    # protocol 0/1 ways to call: INST (MARK args INST module name) and OBJ (MARK cls args OBJ)
    add("inst_os_system_proto0", b"(" + text0(touch) + b"ios\nsystem\n.", ("os", "system"), touch)
    add("obj_subprocess_check_call_proto1",
        MARK + glob0("subprocess", "check_call") + EMPTY_LIST + MARK + text("touch") + text(marker)
        + APPENDS + OBJ + STOP,
        ("subprocess", "check_call"), touch)

    # protocol 5: FRAME around the payload, next to a BYTEARRAY8
    weights = b"\x96" + struct.pack("<Q", 16) + bytes(range(16))
    add("proto5_frame_bytearray8",
        proto(5) + frame(weights + MEMOIZE + call(os_system, text(touch)) + TUPLE2 + STOP),
        ("os", "system"), touch)

    # names that travel: a dotted protocol-4 name through a module attribute, an escape through __globals__
    add("dotted_name_through_module", wrap(call(sglobal("shlex", "os.system"), text(touch))),
        ("shlex", "os.system"), "shlex's os.system: " + touch)
    add("dotted_name_through_private_alias", wrap(call(sglobal("tempfile", "_os.system"), text(touch))),
        ("tempfile", "_os.system"), "tempfile's _os.system (import os as _os): " + touch)
    escape = call(getattr_(sglobal("shlex", "split.__globals__"), "get"), text("os"))
    add("dunder_globals_escape", wrap(call(getattr_(escape, "system"), text(touch))),
        ("shlex", "split.__globals__"), "shlex.split.__globals__['os'].system(...) runs " + touch)
    add("bootsubprocess_check_output", wrap(call(sglobal("_bootsubprocess", "check_output"), argv)),
        ("_bootsubprocess", "check_output"), touch)

    # evasions that use only names legitimate pickles use: the scan must look at calls and operands
    add("gap_getattr_subimport",
        wrap(call(getattr_(call(sglobal("cloudpickle.cloudpickle", "subimport"), text("os")), "system"),
                  text(touch))),
        ("builtins", "getattr"), "getattr(cloudpickle's subimport('os'), 'system')(...) runs " + touch,
        gap="calls the result of getattr while loading (unsafe_call_reason)")
    path = call(sglobal("pathlib", "PosixPath"), text(marker))
    add("gap_getattr_pathlib_touch", wrap(call(getattr_(path, "touch"))),
        ("builtins", "getattr"), f"getattr(PosixPath({marker!r}), 'touch')()",
        gap="calls the result of getattr while loading (unsafe_call_reason)")
    add("gap_computed_module_name",
        wrap(call(call(sglobal("codecs", "decode"), text("bf"), text("rot13")) + text("system") + STACK_GLOBAL,
                  text(touch))),
        ("codecs", "decode"), "STACK_GLOBAL(codecs.decode('bf', 'rot13'), 'system')(...) runs " + touch,
        gap="a STACK_GLOBAL whose module is not a string but a call's result")

    entries.append(cloudpickled(marker))
    entries.append(cloudpickled_call(marker))
    return entries


class Touch:
    """Pickles as os.system('touch marker'): a __reduce__ that returns a call."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, ("touch " + shlex.quote(self.marker),)


def cloudpickled(marker: str) -> Malicious:
    """cloudpickle.dumps of a function whose global is a Touch: only __reduce__ runs here."""
    import cloudpickle

    namespace: dict[str, object] = {"hook": Touch(marker)}
    exec("def predict(live_features):\n    return hook\n", namespace)  # a function with a global
    data = cloudpickle.dumps(namespace["predict"])
    return Malicious("cloudpickle_function_global", data, (os.system.__module__, "system"),
                     "touch " + shlex.quote(marker) + " while its globals are rebuilt")


class CallsAtLoad:
    """Pickles as a call of a cloudpickled function: its code runs while loading."""

    def __init__(self, run: object) -> None:
        self.run = run

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return self.run, ()


def cloudpickled_call(marker: str) -> Malicious:
    """cloudpickle.dumps of an object whose __reduce__ calls a function pickled by value."""
    import cloudpickle

    namespace: dict[str, object] = {"__name__": "not_importable"}
    exec(f"def run():\n    open({marker!r}, 'w').close()\n", namespace)
    data = cloudpickle.dumps(CallsAtLoad(namespace["run"]))
    return Malicious("gap_cloudpickle_function_called_at_load", data,
                     ("cloudpickle.cloudpickle", "_make_function"), f"runs open({marker!r}, 'w') while loading",
                     gap="calls a function made from pickled code while loading (unsafe_call_reason)")
