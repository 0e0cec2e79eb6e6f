"""Benign model pickles, made as participants make them, by the Python and libraries of the
environment the tests run in: cloudpickle.dumps of a function or object whose own code
(this module's, as a notebook's would be) is pickled by value, around real models of every
framework pixi.toml installs. The pickle doctor must pass every one with no unknown load-time
call. ``benign_corpus()`` makes them (a few seconds; libraries an environment lacks are
left out and named in ``skipped``).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib.util
import os
import pickle
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

ROWS, COLUMNS = 64, 5


def data() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.random((ROWS, COLUMNS)), columns=[f"feature_{i}" for i in range(COLUMNS)])
    return x, pd.Series(x.to_numpy() @ np.arange(COLUMNS) / COLUMNS, name="target")


# ---- the participant's own code (pickled by value) ----


class Ensemble:
    """A participant's ensemble: averages its members' predictions."""

    def __init__(self, members: list[Any], weights: np.ndarray) -> None:
        self.members, self.weights = members, weights

    def __call__(self, live_features: pd.DataFrame) -> pd.DataFrame:
        stacked = np.column_stack([member.predict(live_features) for member in self.members])
        return pd.DataFrame({"prediction": stacked @ self.weights}, index=live_features.index)


@dataclasses.dataclass(frozen=True)
class Settings:
    """A frozen dataclass (its __eq__, __hash__ and __setattr__ are generated code)."""

    columns: tuple[str, ...]
    scale: float = 1.0


class Mode(enum.Enum):
    RANK = "rank"
    RAW = "raw"


class Scaled:
    """Properties, a classmethod and a staticmethod defined by value."""

    def __init__(self, scale: float) -> None:
        self._scale = scale

    @property
    def scale(self) -> float:
        return self._scale

    @classmethod
    def unit(cls) -> Scaled:
        return cls(1.0)

    @staticmethod
    def clip(values: np.ndarray) -> np.ndarray:
        return np.clip(values, 0, 1)


def clip_rank(values: np.ndarray) -> np.ndarray:
    return pd.Series(values).rank(pct=True).to_numpy()


def wrap_predict(predict: Callable[[Any], Any], settings: Settings | None = None) -> Callable[[pd.DataFrame], Any]:
    """A closure over a model's predict, as notebooks return them."""
    columns = list(settings.columns) if settings else None
    mode = Mode.RANK

    def predict_live(live_features: pd.DataFrame) -> pd.DataFrame:
        features = live_features[columns] if columns else live_features
        values = np.asarray(predict(features), dtype="float64").ravel()
        values = clip_rank(values) if mode is Mode.RANK else values
        return pd.DataFrame({"prediction": values}, index=live_features.index)

    return predict_live


def weighted(weights: np.ndarray, live_features: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"prediction": live_features.to_numpy() @ weights}, index=live_features.index)


# ---- models of each framework ----


def sklearn_models(x: pd.DataFrame, y: pd.Series) -> dict[str, Any]:
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    class Demean(BaseEstimator, TransformerMixin):
        """A participant's transformer, defined in the notebook."""

        def fit(self, x, y=None):
            self.means_ = np.asarray(x).mean(axis=0)
            return self

        def transform(self, x):
            return np.asarray(x) - self.means_

    pipeline = make_pipeline(StandardScaler(), FunctionTransformer(lambda v: v * 2), Demean(), Ridge()).fit(x, y)
    forest = RandomForestRegressor(n_estimators=3, max_depth=3, random_state=0).fit(x, y)
    boosted = HistGradientBoostingRegressor(max_iter=5).fit(x, y)
    return {
        "sklearn_pipeline_function_transformer": wrap_predict(pipeline.predict),
        "sklearn_ensemble_own_class": Ensemble([forest, boosted], np.array([0.5, 0.5])),
        "sklearn_estimator_pickled_plainly": forest,  # pickle.dumps, no code by value
    }


def lightgbm_models(x, y):
    import lightgbm

    model = lightgbm.LGBMRegressor(n_estimators=5, num_leaves=4, verbose=-1).fit(x, y)
    return {"lightgbm_regressor": wrap_predict(model.predict), "lightgbm_booster": wrap_predict(model.booster_.predict)}


def xgboost_models(x, y):
    import xgboost

    model = xgboost.XGBRegressor(n_estimators=5, max_depth=2).fit(x, y)
    return {"xgboost_regressor": wrap_predict(model.predict)}


def catboost_models(x, y):
    import tempfile

    import catboost

    with tempfile.TemporaryDirectory() as scratch:  # catboost writes catboost_info/ where it runs
        model = catboost.CatBoostRegressor(iterations=5, depth=2, verbose=False, train_dir=scratch).fit(x, y)
    return {"catboost_regressor": wrap_predict(model.predict)}


def torch_models(x, y):
    import torch

    class Net(torch.nn.Module):
        """A participant's torch module, defined in the notebook."""

        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.Sequential(torch.nn.Linear(COLUMNS, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))

        def forward(self, inputs):
            return self.layers(inputs)

    torch.manual_seed(0)
    net = Net().eval()

    def predict(features):
        with torch.no_grad():
            return net(torch.tensor(np.asarray(features, dtype="float32"))).numpy()

    return {"torch_module_by_value": wrap_predict(predict)}


def keras_models(x, y):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    net = keras.Sequential([keras.Input((COLUMNS,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    net.compile(optimizer="sgd", loss="mse")

    def predict(features):
        return net.predict(np.asarray(features, dtype="float32"), verbose=0)

    return {"keras_sequential": wrap_predict(predict)}


def scipy_statsmodels_polars(x, y):
    import polars
    import scipy.sparse
    import statsmodels.api as sm

    ols = sm.OLS(y.to_numpy(), sm.add_constant(x.to_numpy())).fit()
    sparse = scipy.sparse.csr_matrix(np.eye(COLUMNS))
    frame = polars.DataFrame({"weight": np.arange(COLUMNS, dtype="float64")})

    def predict(live_features):
        values = live_features.to_numpy() @ sparse @ frame["weight"].to_numpy()
        return pd.DataFrame({"prediction": values + ols.params[0]}, index=live_features.index)

    return {"scipy_statsmodels_polars": predict}


def plain_python(x, y):
    weights = np.linalg.lstsq(x.to_numpy(), y.to_numpy(), rcond=None)[0]
    settings = Settings(tuple(x.columns), 2.0)
    frame = pd.DataFrame({"a": pd.Categorical(["x", "y"]), "t": pd.date_range("2026-01-01", periods=2)})

    def outer(scale):
        def inner(live_features):
            return weighted(weights * scale * Scaled.unit().scale, live_features[list(settings.columns)])
        return inner

    return {
        "partial_of_own_function": functools.partial(weighted, weights),
        "nested_closures_dataclass_enum": wrap_predict(outer(1.0), settings),
        "pandas_objects_inside": functools.partial(weighted, weights + len(frame)),
    }


@dataclasses.dataclass
class Config:
    """A dataclass with a default factory and modern annotations."""

    weights: list[float] = dataclasses.field(default_factory=list)
    scale: float | None = None
    post: Callable[[np.ndarray], np.ndarray] | None = None


class Holder:
    """Objects participants keep on a model: a logger, values of the standard library."""

    def __init__(self) -> None:
        import decimal
        import logging
        import operator
        import string
        import zoneinfo

        self.log = logging.getLogger("model")
        self.pick = operator.itemgetter(0)
        self.context = decimal.Context(prec=6)
        self.template = string.Template("$name")
        self.when = pd.Timestamp("2026-01-01", tz=zoneinfo.ZoneInfo("Europe/Paris"))
        self.offset = pd.DateOffset(months=1)


class Members:
    """An ensemble indexed like a list, with a method named register and a hook for subclasses."""

    def __init__(self, models: list[Any]) -> None:
        self.models = models

    def __getitem__(self, index: int) -> Any:
        return self.models[index]

    def register(self, model: Any) -> None:
        self.models.append(model)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)


def arrow_and_callbacks(x, y):
    """Arrow-typed columns, a kernel density, an XGBoost model trained with a callback, the classes above."""
    import decimal

    import pyarrow as pa
    import scipy.stats
    import xgboost

    frame = pd.DataFrame({
        "tags": pd.Series([["a"], ["b", "c"]], dtype=pd.ArrowDtype(pa.list_(pa.string()))),
        "kind": pd.Series(["u", "v"], dtype=pd.ArrowDtype(pa.dictionary(pa.int8(), pa.string()))),
        "when": pd.Series(pd.to_datetime(["2026-01-01", "2026-01-02"]).tz_localize("UTC"),
                          dtype=pd.ArrowDtype(pa.timestamp("us", tz="UTC"))),
        "amount": pd.Series([decimal.Decimal("1.5"), decimal.Decimal("2")], dtype=pd.ArrowDtype(pa.decimal128(5, 2))),
    })
    density = scipy.stats.gaussian_kde(np.random.default_rng(0).random(20))
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the monitor prints each round
        boosted = xgboost.XGBRegressor(n_estimators=3, max_depth=2, callbacks=[xgboost.callback.EvaluationMonitor()])
        boosted.fit(x, y, eval_set=[(x, y)], verbose=False)
    members = Members([boosted])

    def predict(live_features):
        values = members[0].predict(live_features) + 0 * len(frame) + 0 * float(density(0.5)[0])
        return pd.DataFrame({"prediction": values}, index=live_features.index)

    return {"arrow_columns_callbacks_indexed_ensemble": predict}


def more_values(x, y):
    """Values of the stack kept inside a model (each refused once by the allowlist's first version)."""
    import scipy.interpolate
    import scipy.spatial
    import scipy.stats
    from sklearn.neighbors import KNeighborsRegressor

    config = Config([1.0, 2.0], 0.5)
    holder = Holder()
    arrow = pd.DataFrame({"a": pd.array([1, 2], dtype="int64[pyarrow]"),
                          "s": pd.array(["u", "v"], dtype="string[pyarrow]")})
    numeric = (np.poly1d([1, 2]), np.float32(1), np.datetime64("2026-01-01"))
    distributions = (scipy.stats.norm(0, 1), scipy.interpolate.interp1d([0, 1], [0, 1]),
                     scipy.spatial.cKDTree(np.eye(3)))
    neighbours = KNeighborsRegressor(n_neighbors=2).fit(x, y)

    def predict(live_features):
        values = neighbours.predict(live_features) * (config.scale or 1) + len(arrow) * 0 + 0 * len(numeric)
        return pd.DataFrame({"prediction": values + 0 * len(distributions) + 0 * len(holder.log.name)},
                            index=live_features.index)

    return {"stack_values_inside": predict}


MAKERS = {"sklearn": sklearn_models, "lightgbm": lightgbm_models, "xgboost": xgboost_models,
          "catboost": catboost_models, "torch": torch_models, "keras": keras_models,
          "polars": scipy_statsmodels_polars, "numpy": plain_python, "scipy": more_values,
          "pyarrow": arrow_and_callbacks}


def benign_corpus() -> tuple[dict[str, bytes], list[str]]:
    """{name: pickle bytes} made here, and the libraries this environment lacks."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # as a notebook's code is pickled
    x, y = data()
    made, skipped = {}, []
    try:
        for library, maker in MAKERS.items():
            if importlib.util.find_spec(library) is None:
                skipped.append(library)
                continue
            for name, model in maker(x, y).items():
                dump = pickle.dumps if name.endswith("_pickled_plainly") else cloudpickle.dumps
                made[f"{name}_{sys.version_info[0]}_{sys.version_info[1]}"] = dump(model)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    return made, skipped
