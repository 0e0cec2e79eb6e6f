"""The runner's validation against Numerai's own rules (numerai-tools): every output it
refuses, numerai-tools refuses as a submission too, and every one it accepts (the CSV it
writes) numerai-tools accepts. Both the runner's paths are held to it: pandas'
validate_predictions and the model-file path that reads Arrow without pandas."""

from __future__ import annotations

import contextlib
import io

import model_zoo
import numerai_data
import numpy as np
import pandas as pd
import pytest
from numerai_rules import numerai_refusal

from numerai_predict import errors, validate

MODELS = {**{f"bad:{k}": v for k, v in model_zoo.BAD_OUTPUTS.items()},
          **{f"good:{k}": v for k, v in model_zoo.GOOD_CALLABLES.items()}}
#: Where the runner is stricter than numerai-tools, on purpose: Numerai drops ids that are not
#: live; the runner refuses them, as they mean the model predicted on other data than it was given.
STRICTER = {"bad:extra-ids"}


def as_submitted(output, live_features) -> pd.DataFrame | None:
    """What the model returned, as a participant would upload it (its index as the id column)."""
    if not isinstance(output, pd.DataFrame):
        return None
    return output.rename_axis("id").reset_index() if not output.empty else output


@pytest.fixture(scope="module")
def live():
    features = numerai_data.live_features()
    return features, numerai_data.benchmark_models(features)


def run_model(model, live):
    features, benchmarks = live
    try:
        return model(features, benchmarks)
    except TypeError:
        return model(features)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_runner_refuses_what_numerai_refuses_and_nothing_else(name, live):
    features = live[0]
    output = run_model(MODELS[name], live)
    try:
        accepted = validate.validate_predictions(output, features.index)
    except errors.InvalidPredictionsError as exc:
        ours = exc
    else:
        ours = None
        written = pd.read_csv(io.StringIO(accepted.to_csv()), dtype={"id": str})
        assert numerai_refusal(written, features.index) is None, name
    submitted = as_submitted(output, features)
    theirs = "not a table" if submitted is None else numerai_refusal(submitted, features.index)
    assert name.startswith("good:") == (ours is None), (name, ours)
    if ours is not None:
        assert (theirs is None) == (name in STRICTER), f"{name}: the runner refuses ({ours.message}); " \
            f"numerai-tools says {theirs!r}"


# A linspace of +-spread has a standard deviation of about 0.577 * spread: 1.56e-8 and 1.9e-8 sit
# just under and just over numerai-tools' limit (np.isclose's atol, 1e-8).
@pytest.mark.parametrize("spread", [0.0, 1e-12, 1e-9, 1.56e-8, 1.9e-8, 1e-7, 1e-3])
def test_the_spread_threshold_is_numerai_tools_own(spread, live):
    """Nearly constant predictions: refused exactly where numerai-tools refuses them."""
    features = live[0]
    values = np.full(len(features), 0.5) + np.linspace(-spread, spread, len(features))
    output = pd.DataFrame({"prediction": values}, index=features.index)
    theirs = numerai_refusal(as_submitted(output, features), features.index)
    with (pytest.raises(errors.PredictionsConstantError) if theirs else contextlib.nullcontext()):
        validate.validate_predictions(output, features.index)
    assert validate.without_spread(validate.sample_std(list(values))) == (theirs is not None)
    assert (theirs is not None) == (spread < 1.7e-8)  # the threshold is where this test says it is


def run_on(features, model, capfd, pickle_of, out_dir, tmp_path):
    """predict.py with ``model`` on ``features`` (and benchmarks made for them): (exit code, stderr)."""
    from test_predict import run

    features.to_parquet(tmp_path / "live.parquet")
    numerai_data.benchmark_models(features).to_parquet(tmp_path / "bench.parquet")
    return run(capfd, "--model", pickle_of(model), "--dataset", tmp_path / "live.parquet",
               "--benchmarks", tmp_path / "bench.parquet", "--output_dir", out_dir)


def test_eras_interleaved_come_back_in_the_live_ids_order(capfd, pickle_of, out_dir, tmp_path):
    """Rows of eras A and B alternating: the model is called per era, and the CSV lists the ids in the
    live file's order, each with its era's value (the runner writes the raw values in that order)."""
    from test_predict import csvs

    a = numerai_data.live_features(rows=40, seed=1, era="A")
    b = numerai_data.live_features(rows=40, seed=2, era="B")
    features = pd.concat([a.iloc[i:i + 1] if k == 0 else b.iloc[i:i + 1] for i in range(40) for k in (0, 1)])
    code, err = run_on(features, model_zoo.constant_per_era, capfd, pickle_of, out_dir, tmp_path)
    assert code == 0, err
    (name,) = csvs(out_dir)
    written = pd.read_csv(out_dir / name, dtype={"id": str})
    assert list(written["id"]) == [str(i) for i in features.index]
    assert list(written["prediction"]) == [0.3 if era == "A" else 0.7 for era in features["era"]]


def test_rows_without_an_era_are_predicted_too(capfd, pickle_of, out_dir, tmp_path):
    """Eras A and B and some rows of no era: every row is given to the model (none left as NaN)."""
    from test_predict import csvs

    features = pd.concat([numerai_data.live_features(rows=30, seed=1, era="A"),
                          numerai_data.live_features(rows=30, seed=2, era="B")])
    features.loc[features.index[::7], "era"] = None
    code, err = run_on(features, model_zoo.ramp_model, capfd, pickle_of, out_dir, tmp_path)
    assert code == 0, err
    (name,) = csvs(out_dir)
    assert len(pd.read_csv(out_dir / name)) == len(features)


def test_live_data_without_rows_is_the_datas_failure(capfd, pickle_of, out_dir, tmp_path):
    from test_predict import csvs, run

    numerai_data.live_features(rows=10).iloc[:0].to_parquet(tmp_path / "live.parquet")
    code, err = run(capfd, "--model", pickle_of(model_zoo.constant), "--dataset", tmp_path / "live.parquet",
                    "--output_dir", out_dir)
    assert code == 22 and "holds no live rows" in err, err
    assert csvs(out_dir) == []


def test_the_spread_rule_holds_for_the_whole_submission_not_each_era(capfd, pickle_of, out_dir, tmp_path):
    """Live data of two eras, predictions constant within each: Numerai takes the submission whole."""
    from test_predict import read_predictions

    features = pd.concat([numerai_data.live_features(rows=60, seed=1, era="A"),
                          numerai_data.live_features(rows=60, seed=2, era="B")])
    code, err = run_on(features, model_zoo.constant_per_era, capfd, pickle_of, out_dir, tmp_path)
    assert code == 0, err
    assert sorted(read_predictions(out_dir)["prediction"].unique()) == [0.3, 0.7]

