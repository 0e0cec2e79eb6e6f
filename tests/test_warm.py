"""Warm templates (numerai_predict/round/warm.py): a round's models forked from a template that
imported the stack and read the live data once give predict.py alone's CSVs byte for byte, keep its
limits and isolation, and start cold (saying why) when the template cannot fork safely."""

from __future__ import annotations

import csv
import glob
import os
import re
import secrets
import socket
import subprocess
import sys

import hostile_models
import model_zoo
import pytest
from conftest import HERE, ROOT
from servers import ScriptedServer

from numerai_predict.round import driver as round_driver
from numerai_predict.round import warm as round_warm

MODELS = os.path.join(ROOT, "tests", "models")
MINOR = sys.version_info[1]


def write_manifest(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "model", "post_url", "post_data", "environment"])
        writer.writerows(rows)
    return str(path)


def data_flags(live_files):
    return ["--dataset", live_files["features"], "--benchmarks", live_files["benchmarks"]]


def run_round(manifest, out, live_files, *flags, timeout=900):
    """The round as its own process, on local data; (exit code, stderr, rows by id)."""
    result = subprocess.run([sys.executable, "-m", "numerai_predict.round", "--manifest", manifest,
                             "--output_dir", str(out), *data_flags(live_files), "--no-progress", *map(str, flags)],
                            cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stderr, rows_of(out)


def rows_of(out):
    path = os.path.join(str(out), "round.csv")
    if not os.path.exists(path):
        return {}
    with open(path, newline="") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def alone(model, live_files, out):
    """predict.py alone on ``model``: its CSV's bytes."""
    os.makedirs(out)
    result = subprocess.run([sys.executable, "predict.py", "--model", model, *data_flags(live_files),
                             "--output_dir", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (found,) = glob.glob(os.path.join(str(out), "live_predictions-*.csv"))
    with open(found, "rb") as handle:
        return handle.read()


def csv_bytes(row):
    with open(row["csv"], "rb") as handle:
        return handle.read()


def test_warm_models_give_predict_alone_csvs(tmp_path, live_files, lightgbm_pickles, pickle_of):
    """This Python's committed pickles (its ML libraries), LightGBM of both arities and a constant,
    forked from warm templates: every one warm, every CSV byte for byte predict.py alone's."""
    models = {"committed": os.path.join(MODELS, f"model_3_{MINOR}.pkl"),
              "committed_legacy": os.path.join(MODELS, f"model_3_{MINOR}_legacy.pkl"),
              "lightgbm": lightgbm_pickles["legacy"], "lightgbm_two": lightgbm_pickles["two"],
              "constant": pickle_of(model_zoo.constant, "constant.pkl")}
    manifest = write_manifest(tmp_path / "m.csv", [[k, v, "", "", HERE] for k, v in models.items()])
    code, err, rows = run_round(manifest, tmp_path / "out", live_files, "--workers", "2")
    assert code == 0, err
    for ident, model in models.items():
        row = rows[ident]
        # warm; a library whose import starts threads (catboost's polars, in py313) is left to the model
        assert row["status"] == "ok" and row["start"].startswith("warm"), row
        assert csv_bytes(row) == alone(model, live_files, tmp_path / "alone" / ident), ident
        assert float(row["peak_mib"]) > 0  # measured even when the model answers between two polls
    cold_code, cold_err, cold = run_round(manifest, tmp_path / "cold", live_files, "--cold")
    assert cold_code == 0, cold_err
    assert {row["start"] for row in cold.values()} == {"cold (--cold)"}
    for ident in models:  # charged what it would hold cold: not its two waiting ancestors' pages again
        assert float(rows[ident]["peak_mib"]) <= 1.3 * float(cold[ident]["peak_mib"]) + 40, (rows[ident], cold[ident])


def test_the_template_reads_the_data_as_predict_alone(live_files):
    """The template reads Parquet without pyarrow's thread pools (read_table starts them even with
    use_threads=False); the frames are pandas' own read_parquet's: values, dtypes, index."""
    import pandas as pd

    from numerai_predict import sandbox
    from numerai_predict.round import template

    sandbox.PRELOADED.clear()
    try:
        template.preload(live_files["features"], live_files["benchmarks"], [])
        for path in (live_files["features"], live_files["benchmarks"]):
            warm, cold = sandbox.PRELOADED[os.path.realpath(path)], pd.read_parquet(path)
            pd.testing.assert_frame_equal(warm, cold, check_exact=True)
            assert warm.index.dtype == cold.index.dtype and list(warm.dtypes) == list(cold.dtypes)
    finally:
        sandbox.PRELOADED.clear()


@pytest.mark.parametrize("threads_from", ["library", "stack"])
def test_a_template_that_is_not_one_thread_does_not_fork(tmp_path, live_files, monkeypatch, threads_from):
    """Namespaces and fork need one thread. A library whose import starts a thread (polars' pools,
    under catboost, do): its models fork from the stack's template and import it themselves, and the
    report says so. The stack itself not one thread: the model runs as predict.py alone (cold), and
    the report says why. Either way its CSV is predict.py alone's."""
    (tmp_path / "lib").mkdir()
    spin = "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n"
    (tmp_path / "lib" / "spins.py").write_text(spin)
    if threads_from == "stack":  # every template process starts a thread as it starts
        (tmp_path / "lib" / "sitecustomize.py").write_text(
            "import sys\nif 'numerai_predict.round.template' in sys.orig_argv:\n    import spins\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path / "lib"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setattr(round_warm, "libraries_of", lambda model: ("spins",))
    model = os.path.join(MODELS, f"model_3_{MINOR}.pkl")
    manifest = write_manifest(tmp_path / "m.csv", [["a", model, "", "", HERE]])
    out = tmp_path / "out"
    assert round_driver.main(["--manifest", manifest, "--output_dir", str(out), *data_flags(live_files),
                              "--no-progress"]) == 0
    row = rows_of(out)["a"]
    expected = {"library": r"warm \(without spins: the template runs 2 threads \(python, .+\) after importing spins\)",
                "stack": r"cold \(the template runs 2 threads \(python, .+\) after importing the stack\)"}
    assert row["status"] == "ok" and re.fullmatch(expected[threads_from], row["start"]), row
    assert csv_bytes(row) == alone(model, live_files, tmp_path / "alone")


def test_the_templates_pages_count_against_the_model(tmp_path, live_files, pickle_of):
    """A model that allocates 200 MiB under --max-memory 250m: its own pages alone fit, but with the
    pandas, the data and the imports it did not have to load (the template's) it is over, as it is cold
    (exit 33)."""
    model = pickle_of(hostile_models.allocates(200))
    manifest = write_manifest(tmp_path / "m.csv", [["big", model, "", "", HERE]])
    for start in ("warm", "cold"):
        flags = ["--max-memory", "250m", "--timeout", "120"] + (["--cold"] if start == "cold" else [])
        code, err, rows = run_round(manifest, tmp_path / start, live_files, *flags)
        assert code == 0, err
        assert (rows["big"]["exit_code"], rows["big"]["start"].split()[0]) == ("33", start), rows["big"]
        assert "over --max-memory 250 MiB" in rows["big"]["error"]


def test_the_runner_has_predict_alone_environment(tmp_path, live_files, monkeypatch):
    """The runner forked from a template gets the driver's environment, as predict.py alone does (the
    template holds only the model's scrubbed one): here the test's short retry budget, so an upload that
    keeps failing gives up within seconds (exit 61, the CSV kept), not after Numerai's 6 x 40 s."""
    upload = ScriptedServer()
    upload.route("/upload", *[(503, b"busy")] * 50)
    monkeypatch.setenv("NUMERAI_PREDICT_RETRY_SECONDS", "4")
    model = os.path.join(MODELS, f"model_3_{MINOR}.pkl")
    manifest = write_manifest(tmp_path / "m.csv", [["a", model, upload.url + "/upload", "key=a.csv", HERE]])
    code, err, rows = run_round(manifest, tmp_path / "out", live_files, timeout=120)
    upload.close()
    assert code == 0, err
    assert (rows["a"]["exit_code"], rows["a"]["upload"], rows["a"]["start"]) == ("61", "failed", "warm"), rows["a"]
    assert "retry budget 4 s" in (tmp_path / "out" / "a" / "predict.log").read_text()  # not Numerai's 40 s
    assert os.path.isfile(rows["a"]["csv"])  # kept, to upload by hand


# ---- hostile models through one template -----------------------------------------


@pytest.mark.slow
def test_hostile_models_through_a_warm_template_reach_nothing(tmp_path, live_files, pickle_of, kernel):
    """Issue 8's hostile models and three more, each followed by a benign model, one worker, all
    forked from one template: each is contained with predict.py's exit code or its refused attempt,
    every upload arrives, and every benign model gives predict.py alone's CSV (no state leaked)."""
    if not kernel["landlock"]:
        pytest.skip("Landlock is unavailable in this kernel")
    upload = ScriptedServer()
    upload.route("/upload", *[(204, b"")] * 40)
    markers = [secrets.token_hex(8) for _ in range(2)]
    outside = tmp_path / "outside.txt"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        hostile = {
            "network": (hostile_models.connects(port), "answer 0"),
            "memory_scan": (hostile_models.scans_memory([f"policy=[p]{m}" for m in markers] + [f"[s]{markers[0]}"]),
                            "answer 0"),
            "environment": (hostile_models.reads_environment(["NUMERAI_SECRET_KEY"]), "answer 0"),
            "writes": (hostile_models.writes(str(outside)), "answer 0"),
            "grandchild": (hostile_models.sleeps_with_grandchild, "32"),
            "memory": (hostile_models.allocates(900), "33"),
            "exits": (hostile_models.exits_quietly, "31"),
            "state": (hostile_models.alters_inherited_state, "answer 0.5"),
            "template": (hostile_models.attacks_its_template("/tmp/numerai-predict-warm-*/*.sock"), "answer 0"),
        }
        benign = pickle_of(model_zoo.constant, "benign.pkl")
        rows = []
        for index, (name, (model, _)) in enumerate(hostile.items()):
            post = f"key={name}.csv&policy=p{markers[index % 2]}"
            rows += [[name, pickle_of(model, f"{name}.pkl"), upload.url + "/upload", post, HERE],
                     [f"after_{name}", benign, "", "", HERE]]
        manifest = write_manifest(tmp_path / "m.csv", rows)
        env_secret = {"NUMERAI_SECRET_KEY": "s" + markers[0]}
        os.environ.update(env_secret)
        try:
            code, err, found = run_round(manifest, tmp_path / "out", live_files, "--workers", "1",
                                         "--timeout", "20", "--max-memory", "700m")
        finally:
            os.environ.pop("NUMERAI_SECRET_KEY")
        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody came
    upload.close()
    assert code == 0, err
    reference = alone(benign, live_files, tmp_path / "alone")
    for name, (_, expected) in hostile.items():
        row, after = found[name], found[f"after_{name}"]
        assert row["start"] == "warm" and after["start"] == "warm", (row, after)
        assert after["status"] == "ok" and csv_bytes(after) == reference, (name, after)
        if expected.startswith("answer"):
            assert row["status"] == "ok" and row["upload"] == "uploaded", row
            with open(row["csv"]) as handle:
                values = {float(line.split(",")[1]) for line in handle.read().splitlines()[1:-1]}
            assert values == {float(expected.split()[1])}, (name, values)
        else:
            assert row["exit_code"] == expected, row
    assert not outside.exists()
    logs = {name: (tmp_path / "out" / name / "predict.log").read_text() for name in hostile}
    assert "UNIX PermissionError" in logs["template"] and " 0 succeeded" in logs["template"], logs["template"]
    assert "MEMORY FOUND []" in logs["memory_scan"], logs["memory_scan"]
