"""Which Python compiled a pickled function: signs recorded by each environment itself.

cloudpickle stores a function's code object by value (``types.CodeType``'s
constructor arguments, bytecode included), and bytecode is only valid for the
Python minor that compiled it. Each environment writes its own signs to
``numerai_predict/environments/py3XY.json`` (``pixi run -e py3XY make-signs``: make_signs.py,
checked by a test in that environment): the opcode table, each opcode's inline
cache size, the opcodes that may precede RESUME, and how many constructor
arguments cloudpickle stores. A new Python needs its file, not code. The
running Python's signs are computed on the spot when its file is missing.

xdis (which knows every CPython's opcodes) was considered and left out: it is
one more dependency in every image for what dis/opcode already give each
environment, and it lags new Pythons (its release for a new minor comes after
the minor itself).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any

from numerai_predict.numerai import environment_name

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "environments")
#: Packages whose minor versions pixi.toml pins per Python (what a pickle's state depends on).
PINNED = ("cloudpickle", "numpy", "pandas", "scikit-learn", "lightgbm", "xgboost")
#: Packages also installed under another distribution name: PyPI's CPU-only builds (the PyPI twin
#: installs xgboost-cpu, the same `xgboost` module without CUDA and NCCL).
ALSO_DISTRIBUTED_AS = {"xgboost": ("xgboost-cpu",)}
#: Pythons numerai-predict offers as "experimental" (its py3.14 image, July 2026): a pickle that
#: tells no Python is sent to the newest of the others, and a verdict for one of these says so.
EXPERIMENTAL = frozenset({"3.14"})
#: Opcodes a function's bytecode may start with before RESUME (cells, free variables, generators).
PREFIX_NAMES = ("MAKE_CELL", "COPY_FREE_VARS", "RETURN_GENERATOR", "POP_TOP", "NOP")


@dataclass(frozen=True)
class Signs:
    """What a Python's pickled code objects look like."""

    python: str  # "3.12"
    code_fields: int  # arguments of CodeType's constructor as cloudpickle stores them
    code_index: int  # which of them is the bytecode
    opcodes: frozenset[int]
    caches: dict[int, int]  # opcode -> inline cache entries that follow it (zeroed in co_code)
    resume: int | None  # RESUME (3.11+): every function starts with it
    prefix: frozenset[int]
    packages: dict[str, str]  # pinned package -> "major.minor" in that environment
    #: 3.10's co_linetable: (bytecode delta, line delta) pairs whose deltas add up to the whole
    #: bytecode; 3.8/3.9 store co_lnotab in the same place, whose deltas stop at the last line's start
    linetable_index: int | None = None

    @property
    def environment(self) -> str:
        return environment_name(self.python)

    def matches(self, args: tuple[object, ...]) -> bool:
        """Could this Python have compiled the code object cloudpickle stored as ``args``?"""
        code = args[self.code_index] if len(args) > self.code_index else None
        return (len(args) == self.code_fields and isinstance(code, bytes) and self.valid_bytecode(code)
                and self.valid_linetable(args, len(code)))

    def valid_linetable(self, args: tuple[object, ...], length: int) -> bool:
        if self.linetable_index is None:
            return True
        table = args[self.linetable_index]
        return isinstance(table, bytes) and sum(table[0::2]) == length

    def valid_bytecode(self, code: bytes) -> bool:
        """Every opcode exists here, cache entries are zero, and it starts as this Python's functions do."""
        if not code or len(code) % 2:
            return False
        i = 0
        if self.resume is not None:
            while i < len(code) and code[i] in self.prefix:
                i += 2
            if i + 1 >= len(code) or code[i] != self.resume or code[i + 1] != 0:
                return False
        while i < len(code):
            if code[i] not in self.opcodes:
                return False
            caches = 2 * self.caches.get(code[i], 0)
            if any(code[i + 2:i + 2 + caches]):
                return False
            i += 2 + caches
        return True


def installed_version(name: str) -> str:
    """importlib.metadata.version, also under the names of CPU-only builds (ALSO_DISTRIBUTED_AS);
    raises PackageNotFoundError when none is installed."""
    from importlib.metadata import PackageNotFoundError, version

    for candidate in (name, *ALSO_DISTRIBUTED_AS.get(name, ())):
        try:
            return version(candidate)
        except PackageNotFoundError:
            continue
    raise PackageNotFoundError(name)


def from_data(data: dict[str, Any]) -> Signs:
    opmap: dict[str, int] = data["opcodes"]
    return Signs(
        python=data["python"],
        code_fields=data["code_fields"],
        code_index=data["code_index"],
        # CACHE only ever fills the slots after an instruction, never starts one.
        opcodes=frozenset(number for name, number in opmap.items() if name != "CACHE"),
        caches={opmap[name]: count for name, count in data["caches"].items()},
        resume=opmap[data["resume"]] if data["resume"] else None,
        prefix=frozenset(opmap[name] for name in data["prefix"]),
        packages=data.get("packages", {}),
        linetable_index=data.get("linetable_index"),
    )


def known_pythons(folder: str | None = None) -> dict[str, Signs]:
    """Every environment's signs ("3.12" -> Signs), the running Python's included."""
    folder = folder or HERE
    known = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as handle:
                signs = from_data(json.load(handle))
            known[signs.python] = signs
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if here not in known and find_spec("cloudpickle") is not None:  # a Python without its file yet
        from numerai_predict.make_signs import current_signs_data

        known[here] = from_data(current_signs_data())
    return known
