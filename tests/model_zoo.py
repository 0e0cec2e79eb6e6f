"""Models the tests pickle: good ones trained with a real library, and bad ones,
each failing in one way a participant's model does. Pickled by value with
cloudpickle, as participants' notebooks do."""

from __future__ import annotations

import functools
import os
import signal
import sys

import cloudpickle
import numpy as np
import pandas as pd

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def train_lightgbm():
    """A small real LightGBM regressor on Numerai-shaped synthetic data."""
    import lightgbm
    from numerai_data import training_data

    x, y = training_data()
    return lightgbm.LGBMRegressor(n_estimators=25, num_leaves=8, verbose=-1).fit(x, y), list(x.columns)


def one_argument_model(booster, columns):
    def predict(live_features):
        raw = booster.predict(live_features[columns])
        return pd.Series(raw, index=live_features.index).rank(pct=True).to_frame("prediction")
    return predict


def two_argument_model(booster, columns):
    def predict(live_features, live_benchmark_models):
        ours = pd.Series(booster.predict(live_features[columns]), index=live_features.index).rank(pct=True)
        theirs = live_benchmark_models.iloc[:, 0].rank(pct=True)
        return (0.5 * ours + 0.5 * theirs).to_frame("prediction")
    return predict


def answer(live_features, value):
    """``value`` in every row but the last, which differs: Numerai refuses a prediction column
    without spread (exit 48), so a model that answers one value keeps one row apart
    (tests read the answer with test_predict.read_answer)."""
    value = float(value)
    values = np.full(len(live_features), value)
    if len(values) > 1:
        values[-1] = 0.25 if value == 0.5 else 0.5
    return pd.DataFrame({"prediction": values}, index=live_features.index)


def constant(live_features):
    """One answer for every live id (but the last): the cheapest valid model."""
    return answer(live_features, 0.5)


def constant_per_era(live_features):
    """One value per era (0.3 in era A, 0.7 in others): the submission as a whole has spread."""
    value = 0.3 if live_features["era"].iloc[0] == "A" else 0.7
    return pd.DataFrame({"prediction": value}, index=live_features.index)


def truly_constant(live_features):
    """The same prediction for every id: refused by Numerai's rules (exit 48)."""
    return pd.DataFrame({"prediction": 0.5}, index=live_features.index)


class CallableModel:
    """A model object with __call__, as some participants pickle."""

    def __init__(self, value):
        self.value = value

    def __call__(self, live_features):
        return answer(live_features, self.value)


def with_defaults(live_features, live_benchmark_models=None, scale=1.0):
    assert live_benchmark_models is not None, "expected benchmarks for a 2-parameter model"
    return answer(live_features, 0.25 * scale)


def star_args(*args):
    return answer(args[0], 0.5)


def partial_model(value, live_features):
    return answer(live_features, value)


def nested():
    def inner(live_features):
        return answer(live_features, 0.75)
    return inner


GOOD_CALLABLES = {
    "plain-function": constant,
    "nested-function": nested(),
    "callable-object": CallableModel(0.5),
    "partial": functools.partial(partial_model, 0.5),
    "defaults-2-params": with_defaults,
    "star-args": star_args,
}


def frame(live_features, values, **kwargs):
    return pd.DataFrame({"prediction": values}, index=live_features.index, **kwargs)


def ramp_model(live_features):
    """A valid model whatever rows it is given: a ramp over them."""
    return pd.DataFrame({"prediction": np.linspace(0.25, 0.75, len(live_features))}, index=live_features.index)


def ramp(live_features):
    """Predictions with spread, so that each bad output below is wrong in its one way only."""
    return np.linspace(0.25, 0.75, len(live_features))


# Each bad model returns (or does) one wrong thing.
BAD_OUTPUTS = {
    "none": lambda lf: None,
    "list": lambda lf: list(ramp(lf)),
    "series": lambda lf: pd.Series(ramp(lf), index=lf.index),
    "empty": lambda lf: pd.DataFrame(),
    "no-numeric-column": lambda lf: pd.DataFrame({"prediction": "high"}, index=lf.index),
    "ambiguous-columns": lambda lf: pd.DataFrame({"a": ramp(lf), "b": ramp(lf)}, index=lf.index),
    "nan": lambda lf: frame(lf, np.where(np.arange(len(lf)) == 3, np.nan, ramp(lf))),
    "inf": lambda lf: frame(lf, np.where(np.arange(len(lf)) == 3, np.inf, ramp(lf))),
    "out-of-range": lambda lf: frame(lf, np.linspace(-1, 2, len(lf))),
    "reset-index": lambda lf: frame(lf, ramp(lf)).reset_index(drop=True),
    "missing-ids": lambda lf: frame(lf, ramp(lf)).iloc[5:],
    "extra-ids": lambda lf: pd.concat([frame(lf, ramp(lf)), pd.DataFrame({"prediction": [0.5]}, index=["nbogus"])]),
    "duplicate-ids": lambda lf: pd.concat([frame(lf, ramp(lf)), frame(lf, ramp(lf)).iloc[:2]]),
    "constant": truly_constant,
}


def three_arguments(live_features, live_benchmark_models, extra):
    return None


def raises(live_features):
    return live_features["feature_that_does_not_exist"]


def segfaults(live_features):
    os.kill(os.getpid(), signal.SIGSEGV)


def sleeps(live_features):
    import time

    time.sleep(60)


def sees_secrets(live_features):
    """Predicts 1 where it can read a credential from its environment, else 0."""
    seen = any(name in os.environ for name in ("NUMERAI_SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "MY_API_TOKEN"))
    return answer(live_features, seen)


def dumps(obj) -> bytes:
    return cloudpickle.dumps(obj)
