"""predict.py end to end: real pickles, real files, real servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import model_zoo
import pandas as pd
import pytest
from conftest import ROOT

import predict
from numerai_predict import errors


def run(capfd, *args):
    """Run predict.main in-process; returns (exit code, stderr)."""
    code = predict.main([str(a) for a in args])
    return code, capfd.readouterr().err


def csvs(folder):
    return sorted(p for p in os.listdir(folder) if p.endswith(".csv"))


def local_data(live_files):
    return ["--dataset", live_files["features"], "--benchmarks", live_files["benchmarks"]]


def read_predictions(folder):
    (name,) = csvs(folder)
    return pd.read_csv(os.path.join(folder, name), index_col="id")


def read_answer(folder):
    """What a model that answers one value (model_zoo.answer) answered: every row but the last."""
    return read_predictions(folder)["prediction"].iloc[:-1]


@pytest.mark.parametrize("kind", ["legacy", "two"])
def test_lightgbm_model_writes_one_prediction_per_live_id(capfd, live_files, lightgbm_pickles, out_dir, kind):
    """Both model signatures produce a CSV indexed by the live ids, in [0, 1]."""
    code, err = run(capfd, "--model", lightgbm_pickles[kind], *local_data(live_files), "--output_dir", out_dir)
    assert code == 0, err
    predictions = read_predictions(out_dir)
    assert list(predictions.columns) == ["prediction"]
    assert list(predictions.index) == list(live_files["ids"])
    assert predictions["prediction"].between(0, 1).all()
    assert predictions["prediction"].nunique() > 10  # a real model, not a constant


def test_two_argument_model_receives_the_benchmarks(capfd, live_files, lightgbm_pickles, out_dir):
    """The 2-argument model's output moves with the benchmark column it averages in."""
    run(capfd, "--model", lightgbm_pickles["legacy"], *local_data(live_files), "--output_dir", out_dir)
    legacy = read_predictions(out_dir)
    for name in csvs(out_dir):
        os.remove(out_dir / name)
    run(capfd, "--model", lightgbm_pickles["two"], *local_data(live_files), "--output_dir", out_dir)
    two = read_predictions(out_dir)
    bench = pd.read_parquet(live_files["benchmarks"]).iloc[:, 0].rank(pct=True)
    assert (two["prediction"] - 0.5 * legacy["prediction"] - 0.5 * bench).abs().max() < 1e-9


@pytest.mark.parametrize("name", list(model_zoo.GOOD_CALLABLES))
def test_every_callable_shape_is_called_correctly(capfd, live_files, pickle_of, out_dir, name):
    """Functions, nested functions, objects, partials, defaults and *args all run."""
    code, err = run(capfd, "--model", pickle_of(model_zoo.GOOD_CALLABLES[name]), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == 0, err
    assert len(read_predictions(out_dir)) == len(live_files["ids"])


def test_csv_is_atomic_and_readable(capfd, live_files, pickle_of, out_dir):
    """Only the finished CSV is left behind, with no temporary files."""
    code, _ = run(capfd, "--model", pickle_of(model_zoo.constant), *local_data(live_files), "--output_dir", out_dir)
    assert code == 0
    (name,) = os.listdir(out_dir)
    assert name.startswith("live_predictions-") and name.endswith(".csv")
    assert (out_dir / name).read_text().splitlines()[0] == "id,prediction"


def test_json_report(capfd, live_files, pickle_of, out_dir, tmp_path):
    """--report records the outcome for automation."""
    report = tmp_path / "report.json"
    code, _ = run(capfd, "--model", pickle_of(model_zoo.BAD_OUTPUTS["nan"]), *local_data(live_files),
                  "--output_dir", out_dir, "--report", report)
    data = json.loads(report.read_text())
    assert (code, data["exit_code"], data["status"]) == (44, 44, "error")
    assert "NaN" in data["error"] and data["predictions_csv"] is None


BAD_OUTPUT_CASES = [
    ("none", errors.PredictionsNoneError, "returned None"),
    ("list", errors.PredictionsTypeError, "returned a list, not a pandas DataFrame"),
    ("series", errors.PredictionsTypeError, '.to_frame("prediction")'),
    ("empty", errors.PredictionsEmptyError, "empty DataFrame"),
    ("no-numeric-column", errors.PredictionColumnError, "not a number"),  # dtype object, or str in pandas 3
    ("ambiguous-columns", errors.PredictionColumnError, "ambiguous"),
    ("nan", errors.PredictionsNaNError, "1 predictions are NaN"),
    ("inf", errors.PredictionsInfError, "1 predictions are infinite"),
    ("out-of-range", errors.PredictionsRangeError, "outside [0, 1]"),
    ("reset-index", errors.PredictionsIndexError, "holds none of the live ids"),
    ("missing-ids", errors.PredictionsIndexError, "5 live ids missing"),
    ("extra-ids", errors.PredictionsIndexError, "1 ids not in the live data (e.g. nbogus)"),
    ("duplicate-ids", errors.PredictionsIndexError, "repeats ids"),
    ("constant", errors.PredictionsConstantError, "have a standard deviation of 0 "),
]


@pytest.mark.parametrize(("kind", "error", "text"), BAD_OUTPUT_CASES, ids=[c[0] for c in BAD_OUTPUT_CASES])
def test_invalid_output_is_refused_and_nothing_written(capfd, live_files, pickle_of, out_dir, kind, error, text):
    """Each invalid output gets its own exit code and message; no CSV is written."""
    code, err = run(capfd, "--model", pickle_of(model_zoo.BAD_OUTPUTS[kind]), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == error.exit_code
    assert text in err
    assert error.advice in err or kind == "series"  # a Series gets its own hint
    assert csvs(out_dir) == []


def test_wrong_arity(capfd, live_files, pickle_of, out_dir):
    code, err = run(capfd, "--model", pickle_of(model_zoo.three_arguments), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == errors.ArityError.exit_code
    assert "requires 3 arguments (live_features, live_benchmark_models, extra)" in err
    assert csvs(out_dir) == []


@pytest.mark.parametrize(("content", "text"), [
    (b"this is not a pickle at all", "is not a readable pickle"),
    (b"", "is not a readable pickle"),
], ids=["corrupt", "empty-file"])
def test_corrupt_pickle(capfd, live_files, pickle_of, out_dir, content, text):
    code, err = run(capfd, "--model", pickle_of(content), *local_data(live_files), "--output_dir", out_dir)
    assert code == errors.PickleUnreadableError.exit_code
    assert text in err and csvs(out_dir) == []


def test_truncated_pickle(capfd, live_files, lightgbm_pickles, pickle_of, out_dir):
    with open(lightgbm_pickles["legacy"], "rb") as handle:
        data = handle.read()
    code, err = run(capfd, "--model", pickle_of(data[: len(data) // 2]), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == errors.PickleUnreadableError.exit_code
    assert "not a readable pickle" in err and csvs(out_dir) == []


def test_non_callable_pickle(capfd, live_files, pickle_of, out_dir):
    code, err = run(capfd, "--model", pickle_of({"weights": [1, 2, 3]}), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == errors.NotCallableError.exit_code
    assert "holds a builtins.dict, which is not callable" in err and csvs(out_dir) == []


def test_missing_module(capfd, live_files, pickle_of, out_dir, tmp_path, monkeypatch):
    """A pickle that refers to a package this environment lacks names it."""
    (tmp_path / "participant_helpers.py").write_text(
        "import pandas as pd\ndef predict(lf):\n    return pd.DataFrame({'prediction': 0.5}, index=lf.index)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import participant_helpers  # pickled by reference, like an installed package

    path = pickle_of(participant_helpers.predict)
    monkeypatch.delitem(sys.modules, "participant_helpers")
    sys.path.remove(str(tmp_path))
    code, err = run(capfd, "--model", path, *local_data(live_files), "--output_dir", out_dir)
    assert code == errors.MissingModuleError.exit_code
    assert "needs module 'participant_helpers'" in err and csvs(out_dir) == []


def test_model_that_raises_shows_its_traceback(capfd, live_files, pickle_of, out_dir):
    code, err = run(capfd, "--model", pickle_of(model_zoo.raises), *local_data(live_files), "--output_dir", out_dir)
    assert code == errors.ModelRaisedError.exit_code
    assert "Traceback (most recent call last)" in err
    assert "the model raised KeyError: 'feature_that_does_not_exist'" in err
    assert csvs(out_dir) == []


def test_model_that_crashes_the_interpreter(capfd, live_files, pickle_of, out_dir):
    """A segfault in the model process is reported, not fatal to the runner."""
    code, err = run(capfd, "--model", pickle_of(model_zoo.segfaults), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == errors.ModelCrashedError.exit_code
    assert "killed by SIGSEGV" in err and "another Python" in err
    assert csvs(out_dir) == []


def test_model_slower_than_timeout_is_stopped(capfd, live_files, pickle_of, out_dir):
    code, err = run(capfd, "--model", pickle_of(model_zoo.sleeps), *local_data(live_files), "--output_dir", out_dir,
                    "--timeout", "3")
    assert code == errors.ModelTimeoutError.exit_code
    assert "the model did not finish within --timeout 3 s" in err and csvs(out_dir) == []


def test_model_process_gets_no_credentials(capfd, live_files, pickle_of, out_dir, monkeypatch):
    """Secrets in the runner's environment do not reach the model's process."""
    for name in ("NUMERAI_SECRET_KEY", "AWS_SECRET_ACCESS_KEY", "MY_API_TOKEN"):
        monkeypatch.setenv(name, "s3cr3t")
    code, err = run(capfd, "--model", pickle_of(model_zoo.sees_secrets), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == 0, err
    assert (read_answer(out_dir) == 0.0).all()


def test_missing_local_dataset_is_not_downloaded(capfd, pickle_of, out_dir, server, monkeypatch):
    import numerapi.base_api

    monkeypatch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", server.url + "/graphql")
    code, err = run(capfd, "--model", pickle_of(model_zoo.constant), "--dataset", out_dir / "nope.parquet",
                    "--output_dir", out_dir)
    assert code == errors.DatasetMissingError.exit_code
    assert "nope.parquet is not an existing file" in err
    assert server.requests == [] and csvs(out_dir) == []


def test_unwritable_output_dir(capfd, live_files, pickle_of, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    locked = lock_directory(folder)
    try:
        code, err = run(capfd, "--model", pickle_of(model_zoo.constant), *local_data(live_files),
                        "--output_dir", folder)
    finally:
        locked()
    assert code == errors.WriteError.exit_code
    assert "is not writable" in err and os.listdir(folder) == []


def lock_directory(folder):
    """Make a directory refuse new files, even for root (immutable flag); returns the undo."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o555)
    return lambda: folder.chmod(0o755)


@pytest.mark.parametrize(("args", "text"), [
    (["--post_url", "http://127.0.0.1:9/upload"], "--post_url and --post_data must be given together"),
    (["--post_data", "key=a.csv"], "--post_url and --post_data must be given together"),
    (["--post_url", "http://127.0.0.1:9/u", "--post_data", "key=a&&&=="], "--post_data is not urlencoded"),
    (["--post_url", "http://127.0.0.1:9/u", "--post_data", "policy=abc"], "lacks the 'key' field"),
    (["--post_url", "ftp://example/u", "--post_data", "key=a"], "--post_url must be an http(s) URL"),
    (["--output_dir", "/nonexistent/dir"], "is not an existing directory"),
    (["--timeout", "0"], "--timeout must be a positive number of seconds"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
], ids=["post_url-alone", "post_data-alone", "malformed-post_data", "post_data-without-key", "ftp-post_url",
        "missing-output_dir", "zero-timeout", "unknown-flag"])
def test_bad_arguments(capfd, pickle_of, out_dir, args, text):
    """Bad flags exit 2 with a one-line reason, before anything runs (nothing written where it would be)."""
    code, err = run(capfd, "--model", pickle_of(model_zoo.constant), "--output_dir", out_dir, *args)
    assert code == errors.UsageError.exit_code
    assert text in err and csvs(out_dir) == []


def test_help_imports_nothing_heavy():
    """--help answers without importing pandas, numerapi or requests."""
    probe = ("import runpy, sys\nsys.argv = ['predict.py', '--help']\n"
             "try:\n    runpy.run_path('predict.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "heavy = [m for m in ('pandas', 'numerapi', 'requests', 'numpy') if m in sys.modules]\n"
             "sys.stderr.write(repr(heavy))\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "--post_url" in result.stdout and "--output_dir" in result.stdout
    assert result.stderr == "[]"


def test_cli_footer_names_this_python(live_files, pickle_of, out_dir):
    """The real command line prints how to reproduce with pixi and docker for this Python."""
    result = subprocess.run([sys.executable, "predict.py", "--model", pickle_of(model_zoo.BAD_OUTPUTS["none"]),
                             *local_data(live_files), "--output_dir", str(out_dir)],
                            cwd=ROOT, capture_output=True, text=True)
    model = pickle_of(model_zoo.BAD_OUTPUTS["none"])
    tag = f"3{sys.version_info[1]}"
    assert result.returncode == errors.PredictionsNoneError.exit_code
    assert f"-e py{tag} predict --model {model} --dataset" in result.stderr
    assert f"numerai_predict_py_3_{sys.version_info[1]}:latest --model {model} --dataset" in result.stderr
