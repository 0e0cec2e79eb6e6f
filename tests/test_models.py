"""The committed per-Python pickles (tests/make_models.py), run through the real CLI."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import numerai_rules
import pandas as pd
import pytest
from conftest import ROOT

from numerai_predict.errors import PickleVersionError

MODELS = os.path.join(ROOT, "tests", "models")
EXAMPLES = os.path.join(ROOT, "examples")
HERE = f"{sys.version_info[0]}_{sys.version_info[1]}"
OTHERS = sorted({os.path.basename(p)[6:10] for p in glob.glob(os.path.join(MODELS, "model_3_*.pkl"))} - {HERE})


def predict_cli(model, out_dir):
    return subprocess.run([sys.executable, "predict.py", "--model", model,
                           "--dataset", os.path.join(EXAMPLES, "live.parquet"),
                           "--benchmarks", os.path.join(EXAMPLES, "live_benchmark_models.parquet"),
                           "--output_dir", str(out_dir)], cwd=ROOT, capture_output=True, text=True)


def test_every_python_has_both_pickles():
    """Each environment of pixi.toml has its 2-argument and legacy test pickle."""
    import manifest as pixi_toml

    manifest = pixi_toml.load()
    for env in pixi_toml.python_environments(manifest):
        tag = pixi_toml.python_tag(manifest, env)
        for suffix in ["", "_legacy"]:
            assert os.path.isfile(os.path.join(MODELS, f"model_{tag}{suffix}.pkl")), f"{env}: model_{tag}{suffix}.pkl"


@pytest.mark.parametrize("suffix", ["", "_legacy"], ids=["two-arguments", "legacy"])
def test_this_pythons_pickle_runs_end_to_end(tmp_path, suffix):
    model = os.path.join(MODELS, f"model_{HERE}{suffix}.pkl")
    if not os.path.exists(model):
        pytest.skip(f"no committed pickle for Python {HERE}")
    result = predict_cli(model, tmp_path)
    assert result.returncode == 0, result.stderr
    (csv,) = glob.glob(str(tmp_path / "live_predictions-*.csv"))
    assert numerai_rules.csv_refusal(csv) is None  # Numerai's own rules (numerai-tools) accept it
    predictions = pd.read_csv(csv, index_col="id")
    live = pd.read_parquet(os.path.join(EXAMPLES, "live.parquet"))
    assert list(predictions.index) == list(live.index)
    assert predictions["prediction"].between(0, 1).all() and predictions["prediction"].nunique() > 50


@pytest.mark.parametrize("tag", OTHERS)
def test_pickle_from_another_python_is_explained(tmp_path, tag):
    """A pickle made with another Python is refused before it can crash, naming both versions."""
    result = predict_cli(os.path.join(MODELS, f"model_{tag}.pkl"), tmp_path)
    made = tag.replace("_", ".")
    assert result.returncode == PickleVersionError.exit_code, result.stderr
    assert f"compiled by Python {made}" in result.stderr
    assert f"this is Python {HERE.replace('_', '.')}" in result.stderr
    assert f"py{tag.replace('_', '')} environment" in result.stderr
    assert f" -e py{tag.replace('_', '')} predict " in result.stderr  # the footer's command runs it there
    assert not glob.glob(str(tmp_path / "*.csv"))
