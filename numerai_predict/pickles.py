"""Inspecting a pickle before it runs, and asking a loaded model how to call it.

Inspection reads the pickle's opcodes (pickletools) without executing them: it
finds the modules it imports and the Python that compiled its functions, so
a mismatch is explained before it can crash the interpreter.
"""

from __future__ import annotations

import inspect
import logging
import pickletools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from numerai_predict.errors import (
    ArityError,
    MissingModuleError,
    NotCallableError,
    PickleUnreadableError,
    PickleVersionError,
)

log = logging.getLogger("numerai_predict")


class BytecodeSigns(NamedTuple):
    """Opcodes that open every code object, and LOAD_GLOBAL's inline cache size."""

    prefix: tuple[int, ...]
    resume: int
    load_global: int
    caches: int


# Per Python minor: cloudpickle stores bytecode, which only its own minor can run.
BYTECODE_SIGNS = {
    (3, 11): BytecodeSigns(prefix=(135, 149), resume=151, load_global=116, caches=5),
    (3, 12): BytecodeSigns(prefix=(135, 149), resume=151, load_global=116, caches=4),
    (3, 13): BytecodeSigns(prefix=(94, 62), resume=149, load_global=91, caches=4),
}
CODE_FIELDS_UP_TO_310, CODE_FIELDS_FROM_311 = 16, 18


@dataclass
class PickleFacts:
    """What a pickle needs, read without running it."""

    modules: set[str] = field(default_factory=set)
    made_with: set[tuple[int, int]] = field(default_factory=set)  # empty: unknown

    def narrow(self, versions: set[tuple[int, int]]) -> None:
        """Every code object was compiled by the same Python: keep what all allow."""
        if not versions:
            return
        common = self.made_with & versions
        self.made_with = common if common else set(versions)


@dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclass(frozen=True)
class Call:
    func: object
    args: object


MARK = object()


def inspect_pickle(path: str) -> PickleFacts:
    """Read the imports and bytecode versions of a pickle without executing it.

    A symbolic run of the pickle's opcodes (pickletools): strings, globals,
    tuples and calls are tracked, everything else becomes a placeholder.
    """
    facts = PickleFacts()
    stack: list[object] = []
    memo: dict[object, object] = {}
    try:
        with open(path, "rb") as handle:
            for op, arg, _pos in pickletools.genops(handle):
                step(op, arg, stack, memo, facts)
    except Exception as exc:  # damaged data raises assorted errors
        raise PickleUnreadableError(f"{path} is not a readable pickle ({describe(exc)})") from None
    return facts


def step(op: pickletools.OpcodeInfo, arg: object, stack: list[object], memo: dict[object, object],
         facts: PickleFacts) -> None:
    """Apply one opcode to the symbolic stack."""
    name = op.name
    if name == "MARK":
        stack.append(MARK)
    elif name == "GLOBAL":
        module, qualname = str(arg).split(" ", 1)
        stack.append(Global(module, qualname))
        facts.modules.add(module.split(".")[0])
    elif name == "STACK_GLOBAL":
        qualname, module = str(stack.pop()), str(stack.pop())
        stack.append(Global(module, qualname))
        facts.modules.add(module.split(".")[0])
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
        args, func = stack.pop(), stack.pop()
        if is_code_type(func) and isinstance(args, tuple):
            facts.narrow(python_of_code(args))
        stack.append(Call(func, args))
    elif isinstance(arg, (str, bytes)) and not op.stack_before:
        stack.append(arg)
    else:
        generic_step(op, stack)


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
    index = len(stack) - 1 - stack[::-1].index(MARK)
    items = stack[index + 1:]
    del stack[index:]
    return items


def is_code_type(func: object) -> bool:
    """``types.CodeType`` as cloudpickle stores it: ``_builtin_type('CodeType')``."""
    if isinstance(func, Call) and func.args == ("CodeType",):
        return True
    return isinstance(func, Global) and func.name in ("CodeType", "code")


def python_of_code(args: tuple[object, ...]) -> set[tuple[int, int]]:
    """The Python minors whose code objects take these constructor arguments."""
    if len(args) == CODE_FIELDS_UP_TO_310:
        return {(3, 10)}
    if len(args) != CODE_FIELDS_FROM_311 or not isinstance(args[6], bytes):
        return set()
    return {version for version, signs in BYTECODE_SIGNS.items() if bytecode_matches(args[6], signs)}


def bytecode_matches(code: bytes, signs: BytecodeSigns) -> bool:
    """Does the bytecode start as this minor's does (and cache LOAD_GLOBAL like it)?"""
    i = 0
    while i < len(code) and code[i] in signs.prefix:
        i += 2
    if i + 1 >= len(code) or code[i] != signs.resume or code[i + 1] != 0:
        return False  # a function's code starts with RESUME 0
    for pos in range(i, len(code) - 1, 2):
        if code[pos] == signs.load_global:
            cache = code[pos + 2: pos + 2 + 2 * signs.caches]
            after = code[pos + 2 + 2 * signs.caches: pos + 3 + 2 * signs.caches]
            return not any(cache) and after != b"\x00"
    return True


def check_compatible(facts: PickleFacts, path: str) -> None:
    """Refuse, before running anything, a pickle compiled by another Python."""
    here = sys.version_info[:2]
    if facts.made_with and here not in facts.made_with and (here in BYTECODE_SIGNS or here <= (3, 10)):
        made = " or ".join(f"{major}.{minor}" for major, minor in sorted(facts.made_with))
        if made == "3.10":
            made = "3.10 or older"
        error = PickleVersionError(
            f"{path} holds code compiled by Python {made}, but this is Python {here[0]}.{here[1]}",
            advice=f"Run it in the {' or '.join(f'py{a}{b}' for a, b in sorted(facts.made_with))} "
                   f"environment (or its image), or pickle it again with Python {here[0]}.{here[1]}.",
        )
        error.pythons = tuple(sorted(facts.made_with))
        raise error
    # Missing modules are not refused here: extension modules may register
    # under other names once their package is imported (sklearn's '_loss').
    log.debug("the pickle imports %s", ", ".join(sorted(facts.modules)))


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def load_model(path: str) -> object:
    """Unpickle the model: the one place a user's pickle is loaded."""
    import pandas as pd

    try:
        return pd.read_pickle(path)
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
