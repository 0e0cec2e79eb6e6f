"""The package's layering (AGENTS.md): the library never imports its command line, and each fact has
one home. Read from the source (every import, function-level ones included), so a shortcut taken
in a function body counts as much as one at the top."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

PACKAGE = os.path.join(ROOT, "numerai_predict")
MODULES = sorted(name[:-3] for name in os.listdir(PACKAGE) if name.endswith(".py") and name != "__init__.py")
#: Modules every other module may use: facts and values, standard library only.
NEUTRAL = {"numerai", "values", "files", "errors", "redact", "extras"}
#: The command line's modules: only the edges (the runner's main, python -m, the round's own CLI) use them.
CLI = {"cli", "runner", "__main__"}
#: What each module must not import (besides the CLI, which nothing below the edges imports).
FORBIDDEN = {
    "validate": {"data", "transfer"},  # checking files needs no fetching code
    "parquet": {"data", "transfer"},
    "pythons": {"doctor", "pickles"},  # the signs' data; make_signs.py is the tooling
    "doctor": {"make_signs", "data", "transfer", "sandbox"},
    "api": {"round"},
}


def imports_of(module: str) -> set[str]:
    """The numerai_predict modules ``module`` imports anywhere in its source."""
    with open(os.path.join(PACKAGE, module + ".py")) as handle:
        tree = ast.parse(handle.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "numerai_predict":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("numerai_predict."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("numerai_predict.")}
    return found - {module}


def test_the_round_is_a_package_of_short_modules():
    """round.py grew to 941 lines; each of its modules is read in one sitting."""
    folder = os.path.join(PACKAGE, "round")
    assert not os.path.exists(os.path.join(PACKAGE, "round.py"))
    sizes = {name: len(open(os.path.join(folder, name)).read().splitlines())
             for name in os.listdir(folder) if name.endswith(".py")}
    assert len(sizes) >= 8 and max(sizes.values()) <= 250, sizes


def test_the_modules_this_test_knows_exist():
    assert set(NEUTRAL) | {"cli", "runner", "api", "doctor", "validate", "pythons", "make_signs"} <= set(MODULES)


@pytest.mark.parametrize("module", [m for m in MODULES if m not in CLI])
def test_the_library_imports_no_command_line(module):
    assert not imports_of(module) & CLI, f"numerai_predict/{module}.py imports {imports_of(module) & CLI}"


@pytest.mark.parametrize("module", sorted(NEUTRAL))
def test_the_neutral_modules_import_only_each_other(module):
    assert imports_of(module) <= NEUTRAL, f"numerai_predict/{module}.py imports {imports_of(module) - NEUTRAL}"


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_no_module_reaches_a_layer_it_should_not(module):
    assert not imports_of(module) & FORBIDDEN[module], imports_of(module) & FORBIDDEN[module]


def test_the_api_in_use_loads_no_command_line_and_no_pandas():
    """Calling check, as a notebook does, loads neither the CLI nor pandas."""
    model = os.path.join(ROOT, "tests", "models", f"model_3_{sys.version_info[1]}.pkl")
    script = ("import sys, numerai_predict as n; d = n.check(sys.argv[1]); assert d.runnable, d; "
              "print(sorted(m for m in sys.modules if m in ('numerai_predict.cli', 'numerai_predict.runner', "
              "'pandas', 'numpy', 'pyarrow', 'requests')))")
    result = subprocess.run([sys.executable, "-c", script, model], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def package_sources() -> dict[str, str]:
    sources = {}
    for module in MODULES:
        with open(os.path.join(PACKAGE, module + ".py")) as handle:
            sources[module] = handle.read()
    for name in sorted(os.listdir(os.path.join(PACKAGE, "round"))):
        if name.endswith(".py"):
            with open(os.path.join(PACKAGE, "round", name)) as handle:
                sources["round." + name[:-3]] = handle.read()
    with open(os.path.join(ROOT, "predict.py")) as handle:
        sources["predict.py"] = handle.read()
    return sources


@pytest.mark.parametrize("fact, pattern, home", [
    ("an atomic rename", r"\bos\.replace\(|\bos\.rename\(|\bshutil\.move\(", "files"),
    ("an fsync", r"\bos\.fsync\(", "files"),
    ("an image name", r"numerai_predict_py_", "numerai"),
    ("an environment name", r"f\"py\{|\"py\" \+|'py' \+|\"py%|\"py\{\}\"", "numerai"),
    ("numerapi's docker_image", r"\"Python \" \+ python_tag|docker_image\W+f?\"Python|\"Python %d|\"Python \{\}\"",
     "numerai"),
    ("a python tag", r"def python_tag\b", "numerai"),
    ("Numerai's timeout", r"\b600(\.0)?\b|10 \* 60\b", "numerai"),
    ("Numerai's memory", r"\"4g\"|4 << 30|4 \* 1024|2 ?\*\* ?32|1 << 32", "numerai"),
    ("the runner's pipeline", r"^def (fetch_model|write_csv|predict)\(", "pipeline"),
    ("the live data's names", r"v5\.\d/live", "numerai"),
])
def test_each_fact_has_one_home(fact, pattern, home):
    code = {module: "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
            for module, source in package_sources().items()}
    found = sorted(module for module, source in code.items() if re.search(pattern, strip_docstrings(source), re.M))
    assert found == [home], f"{fact} is written in {found}, not only in numerai_predict/{home}.py"


def strip_docstrings(source: str) -> str:
    """The code without its docstrings (where a fact may be explained)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            for number in range(body[0].lineno - 1, body[0].end_lineno or body[0].lineno):
                lines[number] = ""
    return "\n".join(lines)
