#!/usr/bin/env python3
"""Train the per-Python test pickles: tests/models/model_3_XY.pkl (2 arguments:
live features and benchmark models) and model_3_XY_legacy.pkl (1 argument).

Run it in each environment (`pixi run -e py312 make-models`, or
`containers/pypi_env.py run -e py312 make-models`): cloudpickle stores the
model functions by value, which ties each pickle to the Python that made it.
Across the four versions the set covers LightGBM, scikit-learn, XGBoost,
PyTorch, TensorFlow/Keras and CatBoost. With --data it also (re)writes the
bundled live-shaped example data in examples/.

With --kinds it writes only tests/models/kinds/<kind>_3_XY.pkl instead: one small
1-argument model per kind of pickled object (plain function, lambda, closure,
nested function, callable instance, partial, scikit-learn pipeline, Keras model,
torch module, and `no_code`, a callable with no code objects at all), fixtures
for telling which Python made a pickle from its code objects. Kinds whose
library this environment lacks are skipped; `--kinds closure lambda` picks some.
"""

from __future__ import annotations

import argparse
import functools
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


def lightgbm_participant_model(x, y):
    """A participant's LightGBM as Numerai's example scripts train it (2,000 shallow trees, a tenth of
    the features each): light to predict with, so the runner's fixed costs show (benchmarks/bench.py)."""
    import lightgbm

    model = lightgbm.LGBMRegressor(n_estimators=2000, learning_rate=0.01, max_depth=5, num_leaves=2**5 - 1,
                                   colsample_bytree=0.1, verbose=-1).fit(x, y)
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


# ---- --kinds: one small 1-argument model per kind of pickled object ----------
# Everything here lives in __main__, so cloudpickle stores it by value (code objects
# of this Python), except `no_code`, which holds library objects only.

KINDS_DIR = os.path.join(MODELS, "kinds")


def plain_model(live_features):
    """A module-level function."""
    return live_features.filter(like="feature_").mean(axis=1).rank(pct=True).to_frame("prediction")


def lambda_model(x, y):
    return lambda live_features: live_features.filter(like="feature_").sum(axis=1).rank(pct=True).to_frame("prediction")


def least_squares(x, y) -> np.ndarray:
    return np.linalg.lstsq(x.to_numpy(dtype="float64"), y.to_numpy(dtype="float64") - 0.5, rcond=None)[0]


def closure_model(x, y):
    columns, weights = list(x.columns), least_squares(x, y)

    def predict(live_features):
        values = live_features[columns].to_numpy(dtype="float64") @ weights
        return rank(values, live_features.index).to_frame("prediction")
    return predict


def nested_model(x, y):
    def predict(live_features):
        def score(features):
            return features.iloc[:, 0] + features.iloc[:, 1] - features.iloc[:, 2]
        return score(live_features.filter(like="feature_")).rank(pct=True).to_frame("prediction")
    return predict


class LinearModel:
    """A model object with __call__."""

    def __init__(self, columns, weights):
        self.columns, self.weights = columns, weights

    def __call__(self, live_features):
        values = live_features[self.columns].to_numpy(dtype="float64") @ self.weights
        return rank(values, live_features.index).to_frame("prediction")


def callable_instance_model(x, y):
    return LinearModel(list(x.columns), least_squares(x, y))


def weighted(columns, weights, live_features):
    return rank(live_features[columns].to_numpy(dtype="float64") @ weights, live_features.index).to_frame("prediction")


def partial_model(x, y):
    return functools.partial(weighted, list(x.columns), least_squares(x, y))


def sklearn_pipeline_model(x, y):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return legacy(make_pipeline(StandardScaler(), Ridge()).fit(x, y).predict)


def keras_kind_model(x, y):
    return legacy(keras_model(x, y))


def torch_module_model(x, y):
    import torch

    class TinyNet(torch.nn.Module):
        """A torch module that takes and returns DataFrames."""

        def __init__(self, columns):
            super().__init__()
            self.columns = columns
            self.layers = torch.nn.Sequential(torch.nn.Linear(len(columns), 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))

        def forward(self, live_features):
            with torch.no_grad():
                out = self.layers(torch.tensor(live_features[self.columns].to_numpy(dtype="float32")))
            return rank(out.numpy(), live_features.index).to_frame("prediction")

    torch.manual_seed(0)
    net = TinyNet(list(x.columns))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    inputs = torch.tensor(x.to_numpy(dtype="float32"))
    target = torch.tensor(y.to_numpy(dtype="float32")).unsqueeze(1)
    for _ in range(50):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(net.layers(inputs), target).backward()
        optimizer.step()
    return net.eval()


def no_code_model(x, y):
    """A fitted ColumnTransformer's bound transform: only scikit-learn objects, pickled by
    reference, and it returns a one-column DataFrame named 'prediction', indexed like its input."""
    from sklearn.compose import ColumnTransformer, make_column_selector
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    steps = make_pipeline(PCA(n_components=1, random_state=0), MinMaxScaler(clip=True))
    transformer = ColumnTransformer([("prediction", steps, make_column_selector(pattern="^feature_"))],
                                    verbose_feature_names_out="{transformer_name}")
    return transformer.set_output(transform="pandas").fit(x).transform


KINDS = {
    "plain_function": lambda x, y: plain_model,
    "lambda": lambda_model,
    "closure": closure_model,
    "nested_function": nested_model,
    "callable_instance": callable_instance_model,
    "partial": partial_model,
    "sklearn_pipeline": sklearn_pipeline_model,
    "keras_model": keras_kind_model,
    "torch_module": torch_module_model,
    "no_code": no_code_model,
}


def write_kinds(kinds: list[str]) -> None:
    x, y = training_data()
    tag = f"{sys.version_info[0]}_{sys.version_info[1]}"
    os.makedirs(KINDS_DIR, exist_ok=True)
    for kind in kinds:
        try:
            model = KINDS[kind](x, y)
        except ImportError as exc:  # this environment lacks the library (torch outside py311)
            print(f"skipped {kind}: {exc}")
            continue
        write_pickle(model, os.path.join(KINDS_DIR, f"{kind}_{tag}.pkl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="store_true", help="also rewrite the example data in examples/")
    parser.add_argument("--kinds", nargs="*", metavar="KIND", choices=sorted(KINDS),
                        help="write only tests/models/kinds/ (all kinds, or those named), not model_3_XY*.pkl")
    args = parser.parse_args()
    if args.data:
        write_examples()
    if args.kinds is not None:
        write_kinds(args.kinds or list(KINDS))
        return
    version = sys.version_info[:2]
    two, one = PLAN.get(version, DEFAULT_PLAN)
    x, y = training_data()
    tag = f"{version[0]}_{version[1]}"
    os.makedirs(MODELS, exist_ok=True)
    write_pickle(with_benchmarks(two(x, y)), os.path.join(MODELS, f"model_{tag}.pkl"))
    write_pickle(legacy(one(x, y)), os.path.join(MODELS, f"model_{tag}_legacy.pkl"))


if __name__ == "__main__":
    main()
