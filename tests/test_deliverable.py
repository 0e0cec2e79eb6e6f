"""The runner's check of the model process's predictions file (validate.deliverable): the Arrow
path writes byte for byte what pandas writes, and anything it does not accept goes to pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from numerai_data import live_features

from numerai_predict.errors import (
    PredictionsConstantError,
    PredictionsIndexError,
    PredictionsNaNError,
    PredictionsRangeError,
)
from numerai_predict.validate import arrow_deliverable, deliverable, validate_predictions


def files(tmp_path, predictions: pd.DataFrame, features: pd.DataFrame) -> tuple[str, str]:
    raw, live = str(tmp_path / "p.parquet"), str(tmp_path / "live.parquet")
    predictions.to_parquet(raw)
    features.to_parquet(live)
    return raw, live


def test_arrow_path_writes_what_pandas_writes(tmp_path):
    features = live_features(rows=500, seed=3)
    values = np.random.default_rng(0).random(len(features))
    values[:6] = [0.0, 1.0, 1e-5, 0.1 + 0.2, 5e-324, -0.0]
    predictions = validate_predictions(pd.DataFrame({"prediction": values}, index=features.index), features.index)
    raw, live = files(tmp_path, predictions, features)
    fast = arrow_deliverable(raw, live)
    assert fast is not None and fast == (predictions.to_csv().encode(), len(features))


def test_the_runner_checks_predictions_without_pandas(tmp_path):
    """The runner's path costs pyarrow, never pandas (0.5 CPU-seconds, once per model, per round)."""
    features = live_features(rows=50, seed=5)
    predictions = validate_predictions(pd.DataFrame({"prediction": np.linspace(0, 1, 50)}, index=features.index),
                                       features.index)
    raw, live = files(tmp_path, predictions, features)
    probe = ("import sys; from numerai_predict.validate import deliverable; "
             f"payload, count = deliverable({raw!r}, {live!r}); "
             "print(count, sorted(m for m in ('pandas', 'pyarrow.compute') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split(None, 1) == ["50", "[]\n"]


def test_numerais_own_live_file_takes_the_arrow_path(tmp_path):
    """examples/live.parquet stores its ids as Arrow `string`; pandas 3 writes the model's index as
    `large_string`: still the same ids, so the runner stays off pandas in every environment."""
    import os

    import pyarrow.parquet as pq

    live = os.path.join(ROOT, "examples", "live.parquet")
    ids = pd.read_parquet(live, columns=[]).index
    predictions = validate_predictions(pd.DataFrame({"prediction": np.linspace(0, 1, len(ids))}, index=ids), ids)
    raw = str(tmp_path / "p.parquet")
    predictions.to_parquet(raw)
    assert str(pq.read_schema(live).field(ids.name).type) == "string"
    assert arrow_deliverable(raw, live) == (predictions.to_csv().encode(), len(ids))


def test_a_constant_file_is_refused_by_the_runner_too(tmp_path):
    """The runner's own check (a model that wrote its file around the model process's validation)."""
    features = live_features(rows=50, seed=6)
    constant = pd.DataFrame({"prediction": np.full(50, 0.5)}, index=features.index)
    raw, live = files(tmp_path, constant, features)
    assert arrow_deliverable(raw, live) is None
    with pytest.raises(PredictionsConstantError):
        deliverable(raw, live)


@pytest.mark.parametrize("change", ["order", "float32", "extra column"])
def test_anything_else_goes_through_pandas(tmp_path, change):
    features = live_features(rows=50, seed=4)
    predictions = pd.DataFrame({"prediction": np.linspace(0, 1, 50)}, index=features.index.rename("id"))
    if change == "order":
        predictions = predictions.iloc[::-1]
    elif change == "float32":
        predictions = predictions.astype("float32")
    else:
        predictions["other"] = "x"
    raw, live = files(tmp_path, predictions, features)
    assert arrow_deliverable(raw, live) is None
    payload, count = deliverable(raw, live)
    assert count == 50 and payload == validate_predictions(predictions, features.index).to_csv().encode()


@pytest.mark.parametrize("change, error", [("outside", PredictionsRangeError), ("missing", PredictionsIndexError),
                                           ("nan", PredictionsNaNError)])
def test_wrong_predictions_raise_pandas_errors(tmp_path, change, error):
    features = live_features(rows=50, seed=5)
    predictions = pd.DataFrame({"prediction": np.linspace(0, 1, 50)}, index=features.index.rename("id"))
    if change == "outside":
        predictions.iloc[0, 0] = 1.5
    elif change == "nan":
        predictions.iloc[3, 0] = float("nan")
    else:
        predictions = predictions.iloc[1:]
    raw, live = files(tmp_path, predictions, features)
    assert arrow_deliverable(raw, live) is None
    with pytest.raises(error):
        deliverable(raw, live)


#: sha256 of the CSV below as pandas 2.3 writes it (py311-py313). pandas 3 (py314) changes the
#: default string dtype (Arrow-backed `str`) and copy-on-write; the bytes delivered must not change.
PANDAS_2_CSV_SHA256 = "c33be7b458d40cf094ef068b4b8089613c7dea2aedf53084727c09220efc303d"


def test_the_csv_is_byte_identical_under_pandas_2_and_3(tmp_path):
    """Fixed ids and values (no random generator, whose streams may differ between numpy versions),
    through both of the runner's paths: the same bytes in every environment."""
    import hashlib

    ids = pd.Index([f"n{i * 2654435761 % 16**15:015x}" for i in range(300)], name="id")
    values = np.array([(i * 7919 % 1000) / 999 for i in range(300)])
    values[:6] = [0.0, 1.0, 1e-5, 0.1 + 0.2, 5e-324, 1 / 3]
    features = pd.DataFrame({"feature_a": np.arange(300, dtype="int8")}, index=ids)
    predictions = validate_predictions(pd.DataFrame({"prediction": values}, index=ids), ids)
    by_pandas = predictions.to_csv().encode()
    raw, live = files(tmp_path, predictions, features)
    assert arrow_deliverable(raw, live) == (by_pandas, 300)
    assert hashlib.sha256(by_pandas).hexdigest() == PANDAS_2_CSV_SHA256, (pd.__version__, by_pandas[:200])
