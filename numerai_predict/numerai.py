"""What Numerai fixes, each in one place: its runtime limits, its live datasets' names, and how a
Python minor is named as an environment, an image and numerapi's ``docker_image``.

Standard library only: the doctor, the runner, the round and the footer all read it.
"""

from __future__ import annotations

import sys

#: Numerai's limits for a model: 10 minutes, 4 GB of memory, 1 CPU (predict.py's defaults).
TIMEOUT_SECONDS = 600.0
MAX_MEMORY_BYTES = 4 << 30
MAX_MEMORY = f"{MAX_MEMORY_BYTES >> 30}g"  # as --max-memory writes it
CPUS = 1

#: The live data numerai-predict reads by default (v5.3 since July 2026).
DEFAULT_DATASET = "v5.3/live.parquet"
DEFAULT_BENCHMARKS = "v5.3/live_benchmark_models.parquet"

#: A Python minor: (3, 12), or as written, "3.12".
PythonVersion = tuple[int, int] | str


def minor_pair(python: PythonVersion | None = None) -> tuple[int, int]:
    """(major, minor) of ``python``; the running Python's when None."""
    if python is None:
        return sys.version_info[0], sys.version_info[1]
    if isinstance(python, str):
        major, minor = python.split(".")[:2]
        return int(major), int(minor)
    return python[0], python[1]


def python_tag(python: PythonVersion | None = None, separator: str = ".") -> str:
    """'3.12' (or '312' with separator '')."""
    major, minor = minor_pair(python)
    return f"{major}{separator}{minor}"


def environment_name(python: PythonVersion | None = None) -> str:
    """pixi.toml's environment for a Python: 'py312'."""
    return "py" + python_tag(python, "")


def image_name(python: PythonVersion | None = None) -> str:
    """The image built from that environment, without its tag: 'numerai_predict_py_3_12'."""
    return "numerai_predict_py_" + python_tag(python, "_")


def docker_image(python: PythonVersion | None = None) -> str:
    """numerapi's upload_model(docker_image=...) for that Python: 'Python 3.12'."""
    return "Python " + python_tag(python)


def python_of_environment(environment: str) -> tuple[int, int]:
    """The Python of an environment's name: 'py312' or 'py312-runtime' -> (3, 12)."""
    digits = environment.removesuffix("-runtime").removeprefix("py")
    return int(digits[0]), int(digits[1:])
