"""Hostile models against the runner's channel to its model process (issue 22): the model's code
runs in the process that talks to the runner, so everything it can say there is untrusted."""

from __future__ import annotations

import hostile_models
import pytest
from test_predict import csvs, local_data, run

from numerai_predict import errors, isolation


def test_half_a_line_cannot_stall_the_runner_past_its_timeout(capfd, live_files, pickle_of, out_dir):
    """`{` without a newline, then a minute of sleep: --timeout 3 still ends it (exit 32)."""
    model = pickle_of(hostile_models.speaks_on_the_channel(b"{"))
    code, err = run(capfd, "--model", model, *local_data(live_files), "--output_dir", out_dir, "--timeout", "3")
    assert code == errors.ModelTimeoutError.exit_code, err
    assert "CHANNEL [" in err and "CHANNEL []" not in err  # it did find the channel
    assert csvs(out_dir) == []


def test_an_endless_line_is_cut_at_the_cap(capfd, live_files, pickle_of, out_dir):
    model = pickle_of(hostile_models.speaks_on_the_channel(b"x" * (3 << 20)))
    code, err = run(capfd, "--model", model, *local_data(live_files), "--output_dir", out_dir, "--timeout", "60")
    assert code == errors.ModelCrashedError.exit_code, err
    assert "broke numerai-predict's protocol (message over 1 MiB)" in err and csvs(out_dir) == []


@pytest.mark.parametrize("name", ["UploadFailedError", "UploadRejectedError", "WriteError", "DataFetchError",
                                  "PredictError", "NoSuchError"])
def test_a_forged_runner_error_is_not_believed(capfd, live_files, pickle_of, out_dir, name):
    """Only model-level outcomes come from the model's process: a forged upload error is a protocol break
    of the model (31), never exit 61 'the upload kept failing' with no upload at all."""
    forged = b'{"event": "error", "error": "%s", "message": "forged"}\n' % name.encode()
    model = pickle_of(hostile_models.speaks_on_the_channel(forged, then="exit"))
    code, err = run(capfd, "--model", model, *local_data(live_files), "--output_dir", out_dir)
    assert code == errors.ModelCrashedError.exit_code, err
    assert f"the model process reported a failure it cannot have: {name}: forged" in err


def test_a_forged_model_error_keeps_its_model_level_code(capfd, live_files, pickle_of, out_dir):
    forged = b'{"event": "error", "error": "PredictionsRangeError", "message": "forged"}\n'
    model = pickle_of(hostile_models.speaks_on_the_channel(forged, then="exit"))
    code, err = run(capfd, "--model", model, *local_data(live_files), "--output_dir", out_dir)
    assert code == errors.PredictionsRangeError.exit_code and "forged" in err


@pytest.mark.parametrize(("value", "spread", "error"), [(7.0, True, errors.PredictionsRangeError),
                                                      (0.5, False, errors.PredictionsConstantError)],
                         ids=["out-of-range", "constant"])
def test_a_forged_done_is_checked_by_the_runner(capfd, live_files, pickle_of, out_dir, value, spread, error):
    """The model writes invalid predictions where the runner reads them and sends its own `done`: the
    runner's own check of the file refuses them (a constant column too, Numerai's rule), nothing is written."""
    code, err = run(capfd, "--model", pickle_of(hostile_models.forges_done(value, spread)), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == error.exit_code, err
    assert csvs(out_dir) == []


def test_garbage_on_the_channel_stops_the_model(capfd, live_files, pickle_of, out_dir):
    model = pickle_of(hostile_models.speaks_on_the_channel(b'{"event": "ready", "arity": 7}\n'))
    code, err = run(capfd, "--model", model, *local_data(live_files), "--output_dir", out_dir, "--timeout", "60")
    assert code == errors.ModelCrashedError.exit_code, err
    assert "broke numerai-predict's protocol" in err


def test_the_environment_is_an_allowlist(capfd, live_files, pickle_of, out_dir, monkeypatch):
    """Sockets of agents and buses, database URLs and passwords stay with the runner."""
    names = ["SSH_AUTH_SOCK", "DBUS_SESSION_BUS_ADDRESS", "DATABASE_URL", "SMTP_PASS", "AWS_SECRET_ACCESS_KEY"]
    for name in names:
        monkeypatch.setenv(name, "runner-only")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what the frameworks read passes
    code, err = run(capfd, "--model", pickle_of(hostile_models.reads_environment([*names, "OMP_NUM_THREADS"])),
                    *local_data(live_files), "--output_dir", out_dir)
    assert code == 0, err
    assert "ENVIRONMENT ['OMP_NUM_THREADS']" in err


def test_a_tree_that_will_not_die_fails_the_run(capfd, live_files, pickle_of, out_dir, monkeypatch):
    """When the model's processes survive every SIGKILL round, its output is not read: exit 31, no CSV."""
    monkeypatch.setattr(isolation.Watchdog, "kill", lambda self: False)
    code, err = run(capfd, "--model", pickle_of(hostile_models.counts_cpus), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == errors.ModelCrashedError.exit_code, err
    assert "a process of the model could not be ended" in err and csvs(out_dir) == []
