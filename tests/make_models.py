#!/usr/bin/env python3
"""Train the per-Python test pickles: tests/models/model_3_XY.pkl (2 arguments:
live features and benchmark models) and model_3_XY_legacy.pkl (1 argument).

Run it in each environment (`pixi run -e py312 make-models`, or
`containers/pypi_env.py run -e py312 make-models`): cloudpickle stores the
model functions by value, which ties each pickle to the Python that made it.
Across the four versions the set covers LightGBM, scikit-learn, XGBoost,
PyTorch, TensorFlow/Keras and CatBoost. With --data it also (re)writes the
bundled live-shaped example data in examples/.
"""

from __future__ import annotations

import argparse
import os
import sys

import cloudpickle
import numpy as np
import pandas as pd

# Run as a script: its own folder (tests/) is first on sys.path.
from numerai_data import benchmark_models, live_features, training_data

HERE = os.path.dirname(os.path.abspath(__file__))

MODELS = os.path.join(HERE, "models")
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")


def rank(values, index) -> pd.Series:
    return pd.Series(np.asarray(values, dtype="float64").ravel(), index=index).rank(pct=True)


def with_benchmarks(fit_predict):
    """A 2-argument model: its own ranks blended with the first benchmark's."""
    def predict(live_features, live_benchmark_models):
        ours = rank(fit_predict(live_features.filter(like="feature_")), live_features.index)
        theirs = live_benchmark_models.iloc[:, 0].rank(pct=True)
        return (0.7 * ours + 0.3 * theirs).to_frame("prediction")
    return predict


def legacy(fit_predict):
    """A 1-argument model, as numerai-predict's legacy pickles are."""
    def predict(live_features):
        return rank(fit_predict(live_features.filter(like="feature_")), live_features.index).to_frame("prediction")
    return predict


def lightgbm_model(x, y):
    import lightgbm

    model = lightgbm.LGBMRegressor(n_estimators=30, num_leaves=8, verbose=-1).fit(x, y)
    return model.predict


def sklearn_model(x, y):
    from sklearn.ensemble import HistGradientBoostingRegressor

    model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(x, y)
    return model.predict


def xgboost_model(x, y):
    import xgboost

    model = xgboost.XGBRegressor(n_estimators=30, max_depth=3).fit(x, y)
    return model.predict


def catboost_model(x, y):
    import catboost

    model = catboost.CatBoostRegressor(iterations=30, depth=3, verbose=False, allow_writing_files=False).fit(x, y)
    return model.predict


def torch_model(x, y):
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    inputs = torch.tensor(x.to_numpy(dtype="float32"))
    target = torch.tensor(y.to_numpy(dtype="float32")).unsqueeze(1)
    for _ in range(100):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(net(inputs), target).backward()
        optimizer.step()
    net.eval()

    def predict(features):
        with torch.no_grad():
            return net(torch.tensor(features.to_numpy(dtype="float32"))).numpy()
    return predict


def keras_model(x, y):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(8, activation="relu"),
                            keras.layers.Dense(1)])
    net.compile(optimizer="adam", loss="mse")
    net.fit(x.to_numpy(dtype="float32"), y.to_numpy(dtype="float32"), epochs=5, verbose=0)

    def predict(features):
        return net.predict(features.to_numpy(dtype="float32"), verbose=0)
    return predict


# Which libraries make each Python's pair: (2-argument model, 1-argument model).
# The 2-argument ones run on every platform (`pixi run demo` uses them); Keras
# needs TensorFlow, which osx-arm64 environments lack, so it makes a legacy one.
PLAN = {
    (3, 10): (lightgbm_model, sklearn_model),
    (3, 11): (torch_model, xgboost_model),
    (3, 12): (lightgbm_model, keras_model),
    (3, 13): (xgboost_model, catboost_model),
}
# A newly added Python needs no entry: these two libraries come first to new Pythons.
DEFAULT_PLAN = (lightgbm_model, sklearn_model)


def write_pickle(obj, path: str) -> None:
    with open(path, "wb") as handle:
        cloudpickle.dump(obj, handle)
    print(f"wrote {os.path.relpath(path)} ({os.path.getsize(path):,} bytes)")


def write_examples() -> None:
    os.makedirs(EXAMPLES, exist_ok=True)
    features = live_features(rows=500, seed=7)
    features.to_parquet(os.path.join(EXAMPLES, "live.parquet"))
    benchmark_models(features).to_parquet(os.path.join(EXAMPLES, "live_benchmark_models.parquet"))
    print("wrote examples/live.parquet and examples/live_benchmark_models.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="store_true", help="also rewrite the example data in examples/")
    args = parser.parse_args()
    if args.data:
        write_examples()
    version = sys.version_info[:2]
    two, one = PLAN.get(version, DEFAULT_PLAN)
    x, y = training_data()
    tag = f"{version[0]}_{version[1]}"
    os.makedirs(MODELS, exist_ok=True)
    write_pickle(with_benchmarks(two(x, y)), os.path.join(MODELS, f"model_{tag}.pkl"))
    write_pickle(legacy(one(x, y)), os.path.join(MODELS, f"model_{tag}_legacy.pkl"))


if __name__ == "__main__":
    main()
