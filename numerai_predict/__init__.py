"""numerai-predict: run a Numerai participant's pickled model on live data.

For notebooks, before a model is uploaded (README's "Install with pip", docs/package.md):

    import numerai_predict
    numerai_predict.check("model.pkl")                # the doctor's diagnosis, nothing loaded
    numerai_predict.dry_run(predict, live_features)   # your function through the runner's checks

Importing the package imports nothing else: the API's modules load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Diagnosis", "DryRun", "PredictError", "__version__", "check", "dry_run"]


def __getattr__(name: str) -> Any:
    if name == "PredictError":
        from numerai_predict.errors import PredictError

        return PredictError
    if name in ("Diagnosis", "DryRun", "check", "dry_run"):
        from numerai_predict import api

        return getattr(api, name)
    raise AttributeError(f"module 'numerai_predict' has no attribute {name!r}")
