"""Synthetic data shaped like Numerai's live data, and small real models trained on it.

Used by the tests (at run time) and by tests/make_models.py (the committed
per-Python pickles). Live data has a string ``id`` index, ``era``,
``data_type`` and int8 ``feature_*`` columns valued 0..4; benchmark models are
float columns indexed by the same ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_FEATURES = 12
BENCHMARK_COLUMNS = ["v52_lgbm_ender20", "v52_lgbm_cyrusd20"]


def live_features(rows: int = 200, seed: int = 0, era: str = "X") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"n{rng.integers(16**15):015x}" for _ in range(rows)], name="id")
    features = pd.DataFrame(
        rng.integers(0, 5, size=(rows, N_FEATURES), dtype=np.int8),
        index=ids, columns=[f"feature_{i:03d}" for i in range(N_FEATURES)])
    features.insert(0, "data_type", "live")
    features.insert(0, "era", era)
    return features


def benchmark_models(features: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.random((len(features), len(BENCHMARK_COLUMNS))),
                        index=features.index, columns=BENCHMARK_COLUMNS)


def training_data(rows: int = 600, seed: int = 2) -> tuple[pd.DataFrame, pd.Series]:
    """Features and a target in [0, 1] that depends on a few features."""
    frame = live_features(rows, seed)
    x = frame.filter(like="feature_")
    noise = np.random.default_rng(seed).normal(0, 0.5, rows)
    target = (x.iloc[:, 0] + x.iloc[:, 1] - x.iloc[:, 2] + noise).rank(pct=True)
    return x, target.rename("target")
