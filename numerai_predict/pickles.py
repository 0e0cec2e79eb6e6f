"""Inspecting a pickle before it runs, and asking a loaded model how to call it.

Inspection reads the pickle's opcodes (pickletools) without executing them: it
finds the modules it imports and the Python that compiled its functions, so
a mismatch is explained before it can crash the interpreter.
"""

from __future__ import annotations

import functools
import inspect
import logging
import pickletools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from numerai_predict.errors import (
    ArityError,
    MissingModuleError,
    NotCallableError,
    PickleUnreadableError,
)
from numerai_predict.unsafe import ESCAPES

log = logging.getLogger("numerai_predict")


@dataclass(frozen=True)
class Unsafe:
    """A global that acts at load time, and why that is unsafe."""

    module: str
    name: str
    reason: str


@dataclass
class PickleFacts:
    """What a pickle holds, read without running it."""

    protocol: int | None = None
    globals: set[tuple[str, str]] = field(default_factory=set)  # (module, qualified name)
    #: cloudpickle's ``types.CodeType`` constructor arguments, one tuple per code object
    code_objects: list[tuple[object, ...]] = field(default_factory=list)
    #: what the unpickler would invoke, in order: (the callable as the scan sees it, how, its arguments)
    calls: list[tuple[object, str, object]] = field(default_factory=list)
    #: classes the pickle defines by value (cloudpickle), whose own methods may run while loading
    own_classes: list[OwnClass] = field(default_factory=list)
    #: versions libraries record in their pickled state ("scikit-learn" -> "1.6.1")
    recorded: dict[str, str] = field(default_factory=dict)
    last_string: str = ""
    depth: int = 0  # pickles nested in library state (torch storages) are scanned too
    nested_bytes: int = 0  # bytes of nested pickles read so far, against MAX_NESTED_BYTES
    opcodes: int = 0  # opcodes read (a nested scan that fails after the first is a damaged pickle)
    #: what the scan itself refuses: nesting too deep, too large, or a nested pickle not readable whole
    refusals: list[Unsafe] = field(default_factory=list)

    @property
    def modules(self) -> set[str]:
        return {module.split(".")[0] for module, _ in self.globals}

    @functools.cached_property
    def load_calls(self) -> list[LoadCall]:
        """Every callable the unpickler would invoke, once each, with its verdict (numerai_predict.allowlist).
        Read once the scan is over (cached)."""
        from numerai_predict.judge import judge_calls

        return judge_calls(self.calls, self.own_classes)

    @property
    def referenced(self) -> list[tuple[str, str]]:
        """Globals only referenced: stored as values, called (if ever) when the model predicts."""
        invoked = {(call.module, call.name) for call in self.load_calls}
        return sorted(key for key in self.globals if key not in invoked)

    @property
    def unsafe(self) -> list[Unsafe]:
        """What refuses the pickle: load-time calls not allowed, references no model needs, the scan's refusals."""
        from numerai_predict.judge import reference_reason

        found = [Unsafe(call.module, call.name, call.reason) for call in self.load_calls if call.verdict != "allowed"]
        shown = {(item.module, item.name) for item in found}
        for module, name in self.referenced:
            reason = reference_reason(module, name)
            if reason and (module, name) not in shown:
                found.append(Unsafe(module, name, reason))
        return found + self.refusals

    def merge(self, inner: PickleFacts) -> None:
        """Take in what a nested pickle's scan found (also when it stopped halfway)."""
        self.globals |= inner.globals
        self.calls += inner.calls
        self.own_classes += inner.own_classes
        self.refusals += inner.refusals
        self.nested_bytes = inner.nested_bytes


@dataclass(frozen=True)
class LoadCall:
    """One callable the unpickler invokes, and the doctor's verdict on it."""

    module: str
    name: str
    how: str  # call, new (cls.__new__), setstate (BUILD), import, class (a metaclass makes a class)
    verdict: str  # allowed, unknown, unsafe
    reason: str


@dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclass(frozen=True)
class Call:
    func: object
    args: object


@dataclass(frozen=True)
class Instance:
    """An object made while loading (NEWOBJ, copyreg): its class is known."""

    cls: object


@dataclass(frozen=True, eq=False)
class OwnFunction:
    """A function pickled by value (cloudpickle's _make_function): the pickle's own code."""

    name: str
    code: tuple[object, ...] = ()  # types.CodeType's arguments, when the scan saw them


@dataclass(frozen=True)
class BuiltinType:
    """A type cloudpickle names by its name in ``types`` (``_builtin_type('CodeType')``)."""

    name: str


@dataclass(frozen=True)
class Attribute:
    """``getattr(obj, name)`` on an object built while loading (a bound method, say)."""

    owner: object
    name: str


class OwnClass:
    """A class pickled by value (cloudpickle's _make_skeleton_class). ``methods``: the names in its
    namespace whose values are the pickle's own code. Mutable: its namespace (_class_setstate)
    arrives after the class is first referenced."""

    def __init__(self, name: str, metaclass: object, bases: object) -> None:
        self.name, self.metaclass, self.bases = name, metaclass, bases
        self.methods: set[str] = set()


class Dict:
    """A dict whose string keys and values the scan tracks (a by-value class's namespace)."""

    def __init__(self) -> None:
        self.items: dict[str, object] = {}


class List:
    """A list whose items the scan tracks (an argument may hide a callable in one)."""

    def __init__(self) -> None:
        self.items: list[object] = []


def is_own_code(value: object) -> bool:
    """A function pickled by value, or a classmethod/staticmethod/property wrapping one."""
    if isinstance(value, OwnFunction):
        return library_code_reason(value.code) is None
    return isinstance(value, Call) and isinstance(value.args, tuple) and any(
        is_own_code(arg) for arg in value.args if isinstance(arg, OwnFunction))


def library_code_reason(code: tuple[object, ...]) -> str | None:
    """Why a code object pickled by value is a library's own function: its name is on
    allowlist.LIBRARY_CODE, it names (co_names) exactly what the entry lists and no other local
    than the entry's, and it has no closure and no nested code (types.CodeType's arguments:
    7 consts, 8 names, 9 varnames, 11 name; the free variables come after the line table)."""
    from numerai_predict.allowlist import LIBRARY_CODE

    if len(code) < 16 or not isinstance(code[11], str) or code[11] not in LIBRARY_CODE:
        return None
    names, local_names, reason = LIBRARY_CODE[code[11]]
    consts, co_names, varnames, freevars = code[7], code[8], code[9], code[-2]
    if not (isinstance(co_names, tuple) and set(co_names) == names and freevars == ()):
        return None
    if not (isinstance(varnames, tuple) and set(varnames) <= local_names):
        return None
    if not isinstance(consts, tuple) or not all(isinstance(c, (str, type(None))) for c in flatten(consts)):
        return None
    return reason


def flatten(values: tuple[object, ...]) -> Iterator[object]:
    for value in values:
        if isinstance(value, tuple):
            yield from flatten(value)
        else:
            yield value


MARK = object()
#: Versions inside library state: a string key followed by its value, or a pattern in model bytes.
RECORDED_KEYS = {"_sklearn_version": "scikit-learn"}
RECORDED_PATTERNS: list[tuple[str, re.Pattern[bytes], Callable[[re.Match[bytes]], str]]] = [
    # XGBoost's UBJSON model: "version" then an array of 3 int8s
    ("xgboost", re.compile(rb"version\[#[iL]\x00{0,7}\x03i(.)i(.)i(.)", re.S),
     lambda m: ".".join(str(group[0]) for group in m.groups())),
    ("keras", re.compile(rb'"keras_version": "([0-9.]+)"'), lambda m: m[1].decode()),
    ("lightgbm model format", re.compile(rb"^tree\nversion=(v[0-9]+)"), lambda m: m[1].decode()),
]


def inspect_pickle(path: str) -> PickleFacts:
    """Read a pickle's imports, code objects and recorded versions without executing it."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise PickleUnreadableError(f"{path} cannot be read ({exc.strerror})") from None
    try:
        return scan_bytes(data)
    except Exception as exc:  # damaged data raises assorted errors
        raise PickleUnreadableError(f"{path} is not a readable pickle ({describe(exc)})") from None


def scan_bytes(data: bytes) -> PickleFacts:
    """A symbolic run of the pickle's opcodes (pickletools): strings, globals,
    tuples and calls are tracked, everything else becomes a placeholder."""
    import io

    return scan_stream(io.BytesIO(data))


def scan_stream(stream: Any, depth: int = 0, facts: PickleFacts | None = None) -> PickleFacts:
    """scan_bytes of the one pickle at the stream's position (which ends after its STOP); into
    ``facts`` when given, so that what was read before an error is kept."""
    facts = PickleFacts(depth=depth) if facts is None else facts
    stack: list[object] = []
    memo: dict[object, object] = {}
    for op, arg, _pos in pickletools.genops(stream):
        facts.opcodes += 1
        step(op, arg, stack, memo, facts)
    return facts


def step(op: pickletools.OpcodeInfo, arg: object, stack: list[object], memo: dict[object, object],
         facts: PickleFacts) -> None:
    """Apply one opcode to the symbolic stack."""
    name = op.name
    if name == "PROTO":
        facts.protocol = int(arg)  # type: ignore[call-overload]
    elif name == "MARK":
        stack.append(MARK)
    elif name in ("GLOBAL", "INST"):
        module, qualname = str(arg).split(" ", 1)
        facts.globals.add((module, qualname))
        facts.calls.append((Module(module), "import", None))  # finding a global imports its module
        if name == "INST":
            args = tuple(pop_to_mark(stack))
            facts.calls.append((Global(module, qualname), "call", args))
            stack.append(Instance(Global(module, qualname)))
        else:
            stack.append(Global(module, qualname))
    elif name == "STACK_GLOBAL":
        qualname, module = str(stack.pop()), str(stack.pop())
        facts.globals.add((module, qualname))
        facts.calls.append((Module(module), "import", None))
        stack.append(Global(module, qualname))
    elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
        memo[arg] = stack[-1]
    elif name == "MEMOIZE":
        memo[len(memo)] = stack[-1]
    elif name in ("GET", "BINGET", "LONG_BINGET"):
        stack.append(memo.get(arg))
    elif name == "TUPLE":
        stack.append(tuple(pop_to_mark(stack)))
    elif name in ("EMPTY_TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"):
        count = len(op.stack_before)
        items = tuple(stack[len(stack) - count:]) if count else ()
        del stack[len(stack) - count:]
        stack.append(items)
    elif name == "REDUCE":
        arguments, func = stack.pop(), stack.pop()
        if is_code_type(func) and isinstance(arguments, tuple):
            facts.code_objects.append(arguments)
        facts.calls.append((func, "call", arguments))
        stack.append(reduced(func, arguments, facts))
    elif name in ("NEWOBJ", "NEWOBJ_EX"):
        del stack[len(stack) - len(op.stack_before) + 1:]  # the arguments
        cls = stack.pop()
        facts.calls.append((cls, "new", None))
        stack.append(Instance(cls))
    elif name == "OBJ":
        made = pop_to_mark(stack)
        cls = made[0] if made else None
        facts.calls.append((cls, "call", tuple(made[1:])))
        stack.append(Instance(cls))
    elif name == "BUILD":
        state = stack.pop()
        if isinstance(stack[-1], (Global, Module, BuiltinType)):  # a class's or module's attributes replaced
            facts.calls.append((Attribute(stack[-1], "__dict__"), "lookup", None))
        if isinstance(stack[-1], Instance):  # slot state is set with setattr: the class's __setattr__ runs
            slots = isinstance(state, tuple) and len(state) == 2 and state[1] is not None
            facts.calls.append((stack[-1].cls, "setstate_slots" if slots else "setstate", None))
    elif name == "EMPTY_DICT":
        stack.append(Dict())
    elif name == "DUP":
        stack.append(stack[-1])
    elif name == "EMPTY_LIST":
        stack.append(List())
    elif name == "LIST":
        made_list = List()
        made_list.items += pop_to_mark(stack)
        stack.append(made_list)
    elif name in ("SETITEM", "SETITEMS", "DICT"):
        set_items(name, stack, facts)
    elif name in ("APPEND", "APPENDS", "ADDITEMS"):
        added = [stack.pop()] if name == "APPEND" else pop_to_mark(stack)
        if name == "ADDITEMS":  # a set's members are hashed
            note_hashed(added, facts)
        elif isinstance(stack[-1], List):
            stack[-1].items += added
    elif isinstance(arg, (str, bytes, bytearray)) and not op.stack_before:
        note_recorded(arg, facts)
        stack.append(arg)
    else:
        generic_step(op, stack)


#: Calls that import a module by name (cloudpickle refers to modules with subimport).
IMPORTERS = {("cloudpickle", "subimport"), ("cloudpickle.cloudpickle", "subimport"),
             ("cloudpickle.cloudpickle_fast", "subimport"),
             ("builtins", "__import__"), ("importlib", "import_module")}
#: Library loaders that unpickle bytes they are given (torch.load with weights_only=False).
NESTED_PICKLES = {("torch.storage", "_load_from_bytes")}
#: copyreg's object makers: cls.__new__ (and for _reconstructor, base's __new__ and __init__) run.
COPYREG_MAKERS = {("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__"), ("copyreg", "_reconstructor"),
                  ("copy_reg", "_reconstructor")}
CLOUDPICKLE = ("cloudpickle", "cloudpickle.cloudpickle", "cloudpickle.cloudpickle_fast")


def attribute(owner: object, name: str, facts: PickleFacts) -> object:
    """getattr(owner, name): a global when the owner is a module or a global, else an attribute."""
    module = owner.name if isinstance(owner, Module) else (
        f"{owner.module}.{owner.name}" if isinstance(owner, Global) else None)
    if module:
        facts.globals.add((module, name))
        return Global(module, name)
    if name in ESCAPES:  # from any object to every other: refused whatever is done with it
        facts.calls.append((Attribute(owner, name), "lookup", None))
    elif isinstance(owner, (OwnClass, Instance)):  # a property of the pickle's own class runs its getter
        facts.calls.append((Attribute(owner, name), "getattr", None))
    return Attribute(owner, name)


def rebuilt_by_value(module: str, name: str, args: tuple[object, ...], facts: PickleFacts) -> object:
    """What cloudpickle's reconstructors make: the pickle's own functions and classes, and the
    types it names; None for any other call."""
    if module not in CLOUDPICKLE:
        return None
    if name == "_builtin_type" and isinstance(args[0], str):
        return BuiltinType(args[0])
    if name == "_make_function":
        code = args[0].args if isinstance(args[0], Call) and is_code_type(args[0].func) else ()
        return OwnFunction(code_name(code), code if isinstance(code, tuple) else ())
    if name in ("_make_skeleton_class", "_make_skeleton_enum"):
        enum = name == "_make_skeleton_enum"
        bases = args[0] if enum else (args[2] if len(args) > 2 else ())
        skeleton = OwnClass(next((a for a in args[1:3] if isinstance(a, str)), "<class>"), None if enum else args[0],
                            bases if isinstance(bases, tuple) else ())
        # The metaclass makes the class; an enum's members are made then (its and its bases' __new__, __init__).
        facts.calls.append((skeleton, "enum", None) if enum else (args[0], "class", None))
        facts.calls.append((skeleton, "subclass", None))  # its own bases' __init_subclass__ run
        facts.own_classes.append(skeleton)
        return skeleton
    if name in ("_class_setstate", "_function_setstate") and not isinstance(
            args[0], OwnClass if name == "_class_setstate" else OwnFunction):
        facts.calls.append((Attribute(args[0], "__dict__"), "lookup", None))  # rewrites another object's attributes
    if name == "_function_setstate" and len(args) > 1 and any(
            isinstance(part, Dict) and "__code__" in part.items for part in flatten((args[1],))):
        facts.calls.append((Attribute(args[0], "__code__"), "lookup", None))  # swaps the code of a function
    if name == "_class_setstate" and isinstance(args[0], OwnClass) and len(args) > 1:
        state = args[1][0] if isinstance(args[1], tuple) and args[1] else args[1]
        if isinstance(state, Dict):
            args[0].methods |= {key for key, value in state.items.items() if is_own_code(value)}
            if "_abc_impl" in state.items and "register" in args[0].methods:  # cloudpickle calls register then
                args[0].methods.add("<register>")
    return None


def code_name(code: object) -> str:
    """A code object's qualified name (3.11+) or name, from types.CodeType's arguments."""
    if isinstance(code, tuple) and len(code) > 11:
        for index in (12, 11):
            value = code[index] if index < len(code) else None
            if isinstance(value, str) and not value.startswith("<"):
                return value
    return "<function>"


def note_hashed(values: list[object], facts: PickleFacts) -> None:
    """Objects of the pickle's own classes used as dict keys or set members: their __hash__ runs."""
    for value in values:
        if isinstance(value, Instance) and isinstance(value.cls, OwnClass):
            facts.calls.append((value.cls, "hash", None))


def set_items(name: str, stack: list[object], facts: PickleFacts) -> None:
    """SETITEM(S) and DICT: the dict stays on the stack, its string keys noted."""
    if name == "SETITEM":
        items = stack[-2:]
        del stack[-2:]
    else:
        items = pop_to_mark(stack)
    note_hashed(items[::2], facts)
    if name == "DICT":
        stack.append(Dict())
    target = stack[-1]
    if isinstance(target, Dict):
        pairs = zip(items[::2], items[1::2], strict=False)
        target.items.update((key, value) for key, value in pairs if isinstance(key, str))


@dataclass(frozen=True)
class Module:
    """A module imported by name while loading: its attributes are globals too."""

    name: str


def reduced(func: object, args: object, facts: PickleFacts, depth: int = 0) -> object:
    """What a REDUCE leaves on the stack, with what it reveals: getattr on an imported module is
    that module's global (getattr(subimport('os'), 'system') is os.system), what cloudpickle
    rebuilds by value, objects copyreg makes, and bytes a library unpickles (scanned as pickles
    of their own)."""
    if isinstance(func, Global) and isinstance(args, tuple) and args:
        key = (func.module, func.name)
        if key in IMPORTERS and isinstance(args[0], str):
            facts.calls.append((Module(args[0]), "import", None))
            return Module(args[0])
        if key in IMPORTERS:  # the module's name is computed while loading
            facts.calls.append((None, "import", None))
        if key == ("builtins", "getattr") and len(args) >= 2 and isinstance(args[1], str):
            return attribute(args[0], args[1], facts)
        by_value = rebuilt_by_value(func.module, func.name, args, facts)
        if by_value is not None:
            return by_value
        if key in COPYREG_MAKERS:
            for cls in args[:2] if func.name == "_reconstructor" else args[:1]:
                facts.calls.append((cls, "new", None))
            return Instance(args[0])
        if key == ("_codecs", "encode") and isinstance(args[0], str) and args[1:] in (("latin1",), ("latin-1",)):
            return args[0].encode("latin-1")  # how protocols 0-2 spell bytes
        if key in NESTED_PICKLES:
            if isinstance(args[0], (bytes, bytearray)):
                scan_nested(bytes(args[0]), facts)
            else:  # built while loading: what it unpickles cannot be read here
                refuse(facts, "a nested pickle whose bytes are computed while loading")
    return Call(func, args)


#: The doctor runs unconfined in the runner: what it reads of pickles nested in a library's state
#: is capped, so a small pickle cannot make it decompress or scan without bound (a zip bomb).
#: Beyond the caps the pickle is refused (unsafe), as is nesting deeper than MAX_NESTING.
MAX_NESTED_BYTES = 64 << 20  # all nested pickles of one pickle, decompressed (torch's data.pkl: KBs)
MAX_NESTING = 3
LEGACY_PICKLES = 5


def scan_nested(data: bytes, facts: PickleFacts) -> None:
    """The pickles inside bytes a library unpickles: a torch zip's data.pkl, or a stream of pickles."""
    import io

    if facts.depth >= MAX_NESTING:
        refuse(facts, "pickles nested deeper than the doctor reads")
        return
    try:
        blobs = nested_blobs(data, facts)
    except Exception as exc:  # a damaged archive: what the library would make of it is unknown
        refuse(facts, f"a nested archive that cannot be read ({describe(exc)})")
        return
    for blob in blobs:
        stream = io.BytesIO(blob)
        # torch.load reads at most LEGACY_PICKLES pickles of a stream (its legacy format: magic number,
        # protocol, system info, the object, storage keys); raw tensor bytes follow, never unpickled.
        for _ in range(LEGACY_PICKLES):
            if stream.tell() >= len(blob):
                break
            inner = PickleFacts(depth=facts.depth + 1, nested_bytes=facts.nested_bytes)
            try:
                scan_stream(stream, facts=inner)
            except Exception as exc:
                facts.merge(inner)  # what it would run before the damage, it runs
                refuse(facts, f"a nested pickle that cannot be read whole ({describe(exc)})")
                break
            facts.merge(inner)


def nested_blobs(data: bytes, facts: PickleFacts) -> list[bytes]:
    """The pickles of a zip (its .pkl members) or ``data`` itself, within MAX_NESTED_BYTES."""
    import io
    import zipfile

    if not data.startswith(b"PK\x03\x04"):  # what torch.load takes for a zip; anything else is a pickle stream
        return [take(facts, data)]
    blobs = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if info.filename.endswith(".pkl"):
                with archive.open(info) as member:  # read at most the cap: a header may lie
                    blobs.append(take(facts, member.read(MAX_NESTED_BYTES - facts.nested_bytes + 1)))
    return blobs


def take(facts: PickleFacts, blob: bytes) -> bytes:
    """Count ``blob`` against the cap; over it, nothing more is read."""
    facts.nested_bytes += len(blob)
    if facts.nested_bytes > MAX_NESTED_BYTES:
        raise ValueError(f"nested pickles over {MAX_NESTED_BYTES >> 20} MiB")
    return blob


def refuse(facts: PickleFacts, reason: str) -> None:
    facts.refusals.append(Unsafe("pickle", "loads", reason))


def note_recorded(value: str | bytes | bytearray, facts: PickleFacts) -> None:
    """Versions libraries leave in their pickled state."""
    if isinstance(value, str):
        if facts.last_string in RECORDED_KEYS:
            facts.recorded.setdefault(RECORDED_KEYS[facts.last_string], value)
        facts.last_string = value
        value = value[:64].encode("utf-8", "replace")
    for library, pattern, version in RECORDED_PATTERNS:
        if library not in facts.recorded:
            match = pattern.search(value[:1 << 16])
            if match:
                facts.recorded[library] = version(match)


def generic_step(op: pickletools.OpcodeInfo, stack: list[object]) -> None:
    """Pop what the opcode consumes, push placeholders for what it produces."""
    before = [s.name for s in op.stack_before]
    if "mark" in before:
        pop_to_mark(stack)
        count = before.index("mark")
    else:
        count = len(before)
    del stack[len(stack) - count:]
    stack.extend([None] * len(op.stack_after))


def pop_to_mark(stack: list[object]) -> list[object]:
    # Scanned from the top: the nearest MARK is usually there (reversing the stack
    # each time made a crafted pickle of 80,000 MARKs take seconds).
    for index in range(len(stack) - 1, -1, -1):
        if stack[index] is MARK:
            items = stack[index + 1:]
            del stack[index:]
            return items
    raise ValueError("an opcode needs a MARK that is not on the stack")


def is_code_type(func: object) -> bool:
    """``types.CodeType`` as cloudpickle stores it: ``_builtin_type('CodeType')``."""
    if func == BuiltinType("CodeType"):
        return True
    return isinstance(func, Global) and func.name in ("CodeType", "code")


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def load_model(path: str) -> object:
    """Unpickle the model: the one place a user's pickle is loaded."""
    import pandas as pd

    try:
        # compression=None: what loads is the bytes the doctor read (a .zip or .gz name would unpack
        # something else first)
        return pd.read_pickle(path, compression=None)
    except ModuleNotFoundError as exc:
        raise MissingModuleError(f"{path} needs module {exc.name!r}, which this environment does not have") from None
    except (EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError, KeyError) as exc:
        raise PickleUnreadableError(f"{path} cannot be unpickled here ({describe(exc)})",
                                    advice="The pickle is damaged or was made with other library "
                                    "versions: match this environment's cloudpickle/numpy/pandas "
                                    "and pickle it again.") from None
    except Exception as exc:  # pickle.UnpicklingError and anything a __reduce__ raises
        raise PickleUnreadableError(f"{path} cannot be unpickled ({describe(exc)})") from None


def as_callable(model: object) -> Callable[..., object]:
    """The unpickled object, checked to be callable."""
    if not callable(model):
        raise NotCallableError(f"the pickle holds a {type(model).__module__}.{type(model).__qualname__}, "
                               "which is not callable")
    return model


def model_arity(model: Callable[..., object]) -> int:
    """How many arguments to pass: 1 (live_features) or 2 (+ live_benchmark_models)."""
    try:
        params = inspect.signature(model).parameters.values()
    except (TypeError, ValueError):
        return 1  # builtins and some extension callables hide their signature
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    var_args = any(p.kind == p.VAR_POSITIONAL for p in params)
    kw_required = [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    if kw_required:
        raise ArityError(f"the model requires keyword-only argument(s) {', '.join(kw_required)}")
    if len(required) > 2:
        raise ArityError(f"the model requires {len(required)} arguments "
                         f"({', '.join(p.name for p in required)})")
    if len(positional) >= 2:
        return 2
    if positional or var_args:
        return 1
    raise ArityError("the model takes no arguments")
