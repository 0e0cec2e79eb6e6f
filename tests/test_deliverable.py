"""The runner's check of the model process's predictions (validate.deliverable): raw float64, one per
live id in their order, checked again against the ids the model's process sent before the pickle
loaded, and written byte for byte as pandas writes the CSV, without pandas or pyarrow."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT
from numerai_data import live_features

from numerai_predict.errors import (
    ModelCrashedError,
    PredictionsConstantError,
    PredictionsInfError,
    PredictionsNaNError,
    PredictionsRangeError,
)
from numerai_predict.validate import deliverable, validate_predictions


def raw_file(tmp_path, values) -> str:
    """What the model's process writes (sandbox.run_and_save): raw float64 in the live ids' order."""
    path = str(tmp_path / "predictions.f64")
    with open(path, "wb") as handle:
        handle.write(np.asarray(values, dtype="=f8").tobytes())
    return path


def ids_of(features: pd.DataFrame) -> list[str]:
    return [str(i) for i in features.index]


def test_the_runner_writes_what_pandas_writes(tmp_path):
    features = live_features(rows=500, seed=3)
    values = np.random.default_rng(0).random(len(features))
    values[:6] = [0.0, 1.0, 1e-5, 0.1 + 0.2, 5e-324, -0.0]
    predictions = validate_predictions(pd.DataFrame({"prediction": values}, index=features.index), features.index)
    raw = raw_file(tmp_path, predictions["prediction"])
    assert deliverable(raw, ids_of(features)) == (predictions.to_csv().encode(), len(features))


def test_the_runner_checks_predictions_without_pandas_or_pyarrow(tmp_path):
    """The runner's check costs neither import (0.5 and 0.1 CPU-seconds, once per model, per round)."""
    features = live_features(rows=50, seed=5)
    raw = raw_file(tmp_path, np.linspace(0, 1, 50))
    probe = ("import sys; from numerai_predict.validate import deliverable; "
             f"payload, count = deliverable({raw!r}, {ids_of(features)!r}); "
             "print(count, sorted(m for m in ('pandas', 'pyarrow', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split(None, 1) == ["50", "[]\n"]


@pytest.mark.parametrize("change, error", [
    ("outside", PredictionsRangeError), ("nan", PredictionsNaNError), ("inf", PredictionsInfError),
    ("constant", PredictionsConstantError), ("short", ModelCrashedError), ("long", ModelCrashedError),
])
def test_what_the_model_process_skipped_is_refused_by_the_runner(tmp_path, change, error):
    """A model that wrote its file around the model process's validation: each wrong value is refused with
    validate_predictions' own error, a file of the wrong length is not read."""
    features = live_features(rows=50, seed=6)
    values = list(np.linspace(0, 1, 50))
    if change == "outside":
        values[0] = 1.5
    elif change == "nan":
        values[3] = float("nan")
    elif change == "inf":
        values[3] = float("inf")
    elif change == "constant":
        values = [0.5] * 50
    elif change == "short":
        values = values[1:]
    else:
        values.append(0.5)
    with pytest.raises(error) as refused:
        deliverable(raw_file(tmp_path, values), ids_of(features))
    if change == "nan":
        assert str(features.index[3]) in str(refused.value)


def test_a_fifo_is_not_read(tmp_path):
    import os

    os.mkfifo(tmp_path / "predictions.f64")
    with pytest.raises(ModelCrashedError, match="something else than a file"):
        deliverable(str(tmp_path / "predictions.f64"), ["a", "b"])


#: sha256 of the CSV below as pandas 2.3 writes it (py311-py313). pandas 3 (py314) changes the
#: default string dtype (Arrow-backed `str`) and copy-on-write; the bytes delivered must not change.
PANDAS_2_CSV_SHA256 = "c33be7b458d40cf094ef068b4b8089613c7dea2aedf53084727c09220efc303d"


def test_the_csv_is_byte_identical_under_pandas_2_and_3(tmp_path):
    """Fixed ids and values (no random generator, whose streams may differ between numpy versions):
    pandas' CSV and the runner's, the same bytes in every environment."""
    import hashlib

    ids = pd.Index([f"n{i * 2654435761 % 16**15:015x}" for i in range(300)], name="id")
    values = np.array([(i * 7919 % 1000) / 999 for i in range(300)])
    values[:6] = [0.0, 1.0, 1e-5, 0.1 + 0.2, 5e-324, 1 / 3]
    predictions = validate_predictions(pd.DataFrame({"prediction": values}, index=ids), ids)
    by_pandas = predictions.to_csv().encode()
    assert deliverable(raw_file(tmp_path, predictions["prediction"]), list(ids)) == (by_pandas, 300)
    assert hashlib.sha256(by_pandas).hexdigest() == PANDAS_2_CSV_SHA256, (pd.__version__, by_pandas[:200])


def test_a_whole_run_leaves_pandas_and_pyarrow_to_the_models_process(lightgbm_pickles, live_files, out_dir):
    """predict.py's own process, model run and CSV written, imported neither: their imports were the
    runner's largest fixed cost beside the model's (issue 20: a light model paid 1.15x the floor)."""
    script = ("import sys; from numerai_predict import runner; code = runner.main(sys.argv[1:]); "
              "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy') if m in sys.modules)); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script, "--model", lightgbm_pickles["two"],
                           "--dataset", live_files["features"], "--benchmarks", live_files["benchmarks"],
                           "--output_dir", str(out_dir)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
