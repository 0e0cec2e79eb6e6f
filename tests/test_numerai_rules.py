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
    if ours is None:  # what the runner reshapes (a column named otherwise) Numerai would refuse as is: fine
        assert name.startswith("good:"), name
    else:
        assert theirs is not None, f"{name}: the runner refuses ({ours.message}), numerai-tools accepts"
    assert name.startswith("good:") == (ours is None), (name, ours)


@pytest.mark.parametrize("spread", [0.0, 1e-12, 1e-9, 1e-7, 1e-3])
def test_the_spread_threshold_is_numerai_tools_own(spread, live):
    """Nearly constant predictions: refused exactly where numerai-tools refuses them."""
    features = live[0]
    values = np.full(len(features), 0.5) + np.linspace(-spread, spread, len(features))
    output = pd.DataFrame({"prediction": values}, index=features.index)
    theirs = numerai_refusal(as_submitted(output, features), features.index)
    with (pytest.raises(errors.PredictionsConstantError) if theirs else contextlib.nullcontext()):
        validate.validate_predictions(output, features.index)
    assert validate.without_spread(validate.sample_std(list(values))) == (theirs is not None)

