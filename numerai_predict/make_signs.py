"""make-signs (``pixi run -e py3XY make-signs``): the running environment's signs, computed from its own
dis/opcode tables and cloudpickle, written to numerai_predict/environments/py3XY.json.

Tooling, kept out of pythons.py, which the doctor imports: it needs cloudpickle, the doctor does not.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from numerai_predict.numerai import environment_name
from numerai_predict.pythons import HERE, PINNED, PREFIX_NAMES, installed_version


def current_signs_data() -> dict[str, Any]:
    """The running Python's signs, as the environments' JSON files hold them."""
    import dis
    import opcode

    opmap = {name: number for name, number in dis.opmap.items()
             if number < 256 and not name.startswith("INSTRUMENTED_")}
    entries: Any = getattr(opcode, "_inline_cache_entries", None) or {}
    if isinstance(entries, list):  # 3.11 and 3.12: indexed by opcode
        entries = {dis.opname[number]: count for number, count in enumerate(entries)}
    fields, index, linetable = code_layout()
    return {
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "code_fields": fields,
        "code_index": index,
        "linetable_index": linetable,
        "opcodes": dict(sorted(opmap.items())),
        "caches": {name: count for name, count in sorted(entries.items()) if count and name in opmap},
        "resume": "RESUME" if "RESUME" in opmap else None,
        "prefix": [name for name in PREFIX_NAMES if name in opmap],
        "packages": package_minors(),
    }


def code_layout() -> tuple[int, int, int | None]:
    """How cloudpickle stores this Python's code objects: the number of constructor
    arguments, which one is the bytecode, and which one is a line table whose bytecode
    deltas cover the whole bytecode (3.10's; None elsewhere), found by pickling functions."""
    import cloudpickle

    from numerai_predict.pickles import scan_bytes

    def sample(x: int) -> int:
        return x + 1

    def loops(n: int) -> int:
        total = 0
        for i in range(n):
            if i % 3:
                total += i
        return total

    facts = scan_bytes(cloudpickle.dumps(sample))
    (args,) = [a for a in facts.code_objects if sample.__code__.co_code in a]
    codes = [sample.__code__, loops.__code__]
    table = getattr(sample.__code__, "co_linetable", None)
    covers = table in args and all(sum(c.co_linetable[0::2]) == len(c.co_code) for c in codes)
    return len(args), args.index(sample.__code__.co_code), args.index(table) if covers else None


def package_minors() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError

    minors = {}
    for name in PINNED:
        try:
            minors[name] = ".".join(installed_version(name).split(".")[:2])
        except PackageNotFoundError:
            continue
    return minors


def record(folder: str | None = None) -> str:
    """Write the running environment's signs file; returns its path."""
    folder = folder or HERE
    data = current_signs_data()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, environment_name(data["python"]) + ".json")
    with open(path, "w") as handle:
        json.dump(data, handle, indent=1)
        handle.write("\n")
    return path


if __name__ == "__main__":
    print(f"wrote {record()}")
