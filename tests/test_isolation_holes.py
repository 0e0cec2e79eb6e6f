"""Holes a cold review found in the model's isolation (issue 22), each with the hostile model that
went through it; the --no-isolation run of the same model shows the test looks in the right place."""

from __future__ import annotations

import os
import socket

import hostile_models
import pytest
from test_predict import local_data, read_predictions, run


@pytest.mark.parametrize("isolation, reached", [([], 0), (["--no-isolation"], 1)], ids=["isolated", "no-isolation"])
def test_a_unix_socket_outside_scratch_is_out_of_reach(capfd, live_files, pickle_of, out_dir, tmp_path, isolation,
                                                        reached):
    """Docker's engine answered an isolated model on its socket (a full escape): pathname Unix sockets
    are out of reach (socket(AF_UNIX) refused by seccomp); socketpair() still works."""
    path = str(tmp_path / "engine.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        code, err = run(capfd, "--model", pickle_of(hostile_models.unix_socket(path)), *local_data(live_files),
                        "--output_dir", out_dir, *isolation)
    assert code == 0, err
    assert (read_predictions(out_dir)["prediction"] == reached).all(), err
    if isolation:  # --no-isolation
        assert "no Unix sockets" not in err
    else:
        assert "system_calls: no Unix sockets (socket(AF_UNIX) refused); CPU affinity fixed" in err


def test_the_model_cannot_widen_its_cpus(capfd, live_files, pickle_of, out_dir):
    if len(os.sched_getaffinity(0)) == 1:
        pytest.skip("this machine gives the tests one CPU: nothing to widen")
    code, err = run(capfd, "--model", pickle_of(hostile_models.widens_cpus), *local_data(live_files),
                    "--output_dir", out_dir)
    assert code == 0, err
    assert ((read_predictions(out_dir)["prediction"] * 1000).round() == 1).all(), err
    assert "AFFINITY PermissionError" in err
