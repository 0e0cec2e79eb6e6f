"""The package's extras: pip's base install is the doctor alone; running a model and a round on Ray
need more. A command that needs a missing extra says which, with the pip line, never a traceback."""

from __future__ import annotations

from importlib.util import find_spec

from numerai_predict.errors import MissingExtraError

#: Each extra's top-level modules (pyproject.toml's [project.optional-dependencies]; a test keeps them equal).
EXTRAS = {
    "run": ("pandas", "numpy", "pyarrow", "requests", "tenacity", "numerapi", "cloudpickle", "tqdm"),
    "round": ("ray",),
}


def missing_modules(extra: str) -> list[str]:
    return [module for module in EXTRAS[extra] if find_spec(module) is None]


def require_extra(extra: str, what: str) -> None:
    """Raise MissingExtraError (exit 3) unless every module of ``extra`` is importable here."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(f"{what} needs numerai-predict's [{extra}] extra ({', '.join(missing)} not "
                                f"installed)", advice=f"Install it with: pip install 'numerai-predict[{extra}]'")
