"""The notebook API (numerai_predict.check, numerai_predict.dry_run) in this environment: what a
participant sees for a good, an unsafe, a broken and a refused model; the project's errors raised
with their exit codes, never an exit. The installed wheel's use of it is tests/test_package.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cloudpickle
import pandas as pd
import pytest
from conftest import ROOT
from malicious_pickles import corpus

import numerai_predict
from numerai_predict import errors

# As in a notebook, where functions live in __main__: pickled by value, not as test_api.<name>.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"
MODEL = os.path.join(ROOT, "tests", "models", f"model_{HERE.replace('.', '_')}.pkl")
LIVE = os.path.join(ROOT, "examples", "live.parquet")
BENCHMARKS = os.path.join(ROOT, "examples", "live_benchmark_models.parquet")


@pytest.fixture(scope="module")
def live():
    return pd.read_parquet(LIVE)


def test_check_of_a_good_pickle_by_path_and_by_bytes(tmp_path):
    diagnosis = numerai_predict.check(MODEL)
    assert (diagnosis.made_with, diagnosis.environment, diagnosis.docker_image) == (
        [HERE], "py" + HERE.replace(".", ""), f"Python {HERE}")
    assert diagnosis.runnable and diagnosis.safe and diagnosis.exit_code == 0
    assert json.loads(diagnosis.to_json()) == diagnosis.data and diagnosis.data["verdict"]["runnable"]
    assert "Verdict:" in str(diagnosis)
    with open(MODEL, "rb") as handle:
        from_bytes = numerai_predict.check(handle.read())
    assert (from_bytes.docker_image, from_bytes.pickle) == (diagnosis.docker_image, "<bytes>")


def test_check_of_an_unsafe_pickle_says_so_and_does_not_exit(tmp_path):
    marker = str(tmp_path / "marker")
    for bad in corpus(marker)[:5]:
        diagnosis = numerai_predict.check(bad.data)
        assert not diagnosis.safe and not diagnosis.runnable, bad.name
        assert diagnosis.exit_code == errors.UnsafePickleError.exit_code
        assert json.loads(diagnosis.to_json())["unsafe"], bad.name
    assert not os.path.exists(marker), "check loaded a pickle"


def test_check_raises_the_projects_errors(tmp_path):
    with pytest.raises(errors.ModelFetchError) as missing:
        numerai_predict.check(str(tmp_path / "absent.pkl"))
    assert missing.value.exit_code == 10
    with pytest.raises(errors.PickleUnreadableError) as broken:
        numerai_predict.check(b"not a pickle at all")
    assert broken.value.exit_code == 11


def ranked(live_features: pd.DataFrame) -> pd.DataFrame:
    return live_features.filter(like="feature").mean(axis=1).rank(pct=True).to_frame("prediction")


def with_benchmarks(live_features: pd.DataFrame, live_benchmark_models: pd.DataFrame) -> pd.DataFrame:
    return live_benchmark_models.mean(axis=1).rank(pct=True).to_frame("prediction")


def constant(live_features: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"prediction": 0.5}, index=live_features.index)


RUN = os.system  # a global the function uses: pickled with it, by reference


def calls_a_shell(live_features: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"prediction": RUN("true")}, index=live_features.index)


def test_dry_run_gives_the_runners_csv_and_the_docker_image(live):
    result = numerai_predict.dry_run(ranked, live)
    assert result.docker_image == f"Python {HERE}" and result.diagnosis.runnable
    assert list(result.predictions.index) == list(live.index) and result.csv.startswith(b"id,prediction\n")
    assert result.isolation, "the model's process reported no limits"
    two = numerai_predict.dry_run(with_benchmarks, live, pd.read_parquet(BENCHMARKS))
    assert len(two.predictions) == len(live)


@pytest.mark.parametrize("function, live_benchmarks, error", [
    (constant, None, errors.PredictionsConstantError),  # Numerai's own rule
    (with_benchmarks, None, errors.UsageError),  # it takes the benchmarks: they must be given
    (calls_a_shell, None, errors.UnsafePickleError),  # os.system pickled by reference
])
def test_dry_run_refuses_what_the_runner_refuses_with_its_error(live, function, live_benchmarks, error):
    with pytest.raises(error) as refused:
        numerai_predict.dry_run(function, live, live_benchmarks)
    assert refused.value.exit_code == error.exit_code


def test_dry_run_never_exits_the_notebook():
    """The API raises; a script that calls it with a bad model still reaches its next line."""
    script = ("import pandas as pd, numerai_predict\n"
              "live = pd.read_parquet(__import__('sys').argv[1])\n"
              "try:\n    numerai_predict.dry_run(lambda f: pd.DataFrame({'prediction': 0.5}, index=f.index), live)\n"
              "except numerai_predict.PredictError as error:\n    print('caught', error.exit_code)\n"
              "print('still running')\n")
    result = subprocess.run([sys.executable, "-c", script, LIVE], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["caught", "48", "still", "running"]
