"""A round (numerai_predict/round/): many models on one data download, each through predict.py in
its pickle's environment; real servers on 127.0.0.1 (the fake Numerai API and dataset server,
moto's S3 behind a counting proxy) and, in the slow suite, a real two-node Ray cluster."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse

import hostile_models
import malicious_pickles
import model_zoo
import numerai_rules
import pytest
from conftest import DOCKER, HERE, ROOT
from servers import ScriptedServer, free_port, presigner, start_moto

from numerai_predict.round import driver as round_driver
from numerai_predict.round import environments as round_environments
from numerai_predict.round import images as round_images
from numerai_predict.round import local as round_local
from numerai_predict.round import manifest as round_manifest
from numerai_predict.round import outcomes as round_outcomes
from numerai_predict.round import planning as round_planning
from numerai_predict.round import worker as round_worker

MODELS = os.path.join(ROOT, "tests", "models")
PYTHONS = ["3_10", "3_11", "3_12", "3_13"]
ALL_ENVIRONMENTS = ["py" + python.replace("_", "") for python in PYTHONS]
SITE = os.path.join(ROOT, "tests", "readme_site")  # points numerapi at the fake API (NUMERAI_PREDICT_TEST_API)
DATASET, BENCHMARKS = "v5.3/live.parquet", "v5.3/live_benchmark_models.parquet"


# ---- unit: the manifest and the environments ---------------------------------


def write_manifest(path, rows, header=("id", "model", "post_url", "post_data", "environment")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.mark.parametrize("rows, header, message", [
    ([], ("id", "model"), "has no model rows"),
    ([["a", "m.pkl"]], ("id", "pickle"), "unknown column 'pickle'"),
    ([["m.pkl"]], ("model",), "lacks the column 'id'"),
    ([["a", "m.pkl"], ["a", "n.pkl"]], ("id", "model"), "line 3: id 'a' repeats line 2"),
    ([["../x", "m.pkl"]], ("id", "model"), "line 2: id '../x' must be"),
    ([["a", ""]], ("id", "model"), "line 2: model is empty"),
    ([["a", "m.pkl", "http://x/up", ""]], ("id", "model", "post_url", "post_data"), "post_url and post_data go"),
    ([["a", "m.pkl", "ftp://x", "key=k"]], ("id", "model", "post_url", "post_data"), "http(s) URL"),
    ([["a", "m.pkl", "http://x", "nokey=1"]], ("id", "model", "post_url", "post_data"), "lacks the 'key' field"),
    ([["a", "m.pkl", "python3"]], ("id", "model", "environment"), "environment 'python3' is not"),
    ([["a", "m.pkl", "extra"]], ("id", "model"), "line 2: 3 fields, the header has 2"),
])
def test_manifest_errors_are_one_line_with_exit_3(tmp_path, rows, header, message):
    path = write_manifest(tmp_path / "m.csv", rows, header)
    with pytest.raises(round_manifest.RoundError) as caught:
        round_manifest.read_manifest(path)
    assert caught.value.exit_code == round_manifest.EXIT_MANIFEST
    assert message in str(caught.value) and "\n" not in str(caught.value) and path in str(caught.value)


def test_manifest_paths_are_relative_to_the_manifest(tmp_path):
    path = write_manifest(tmp_path / "m.csv", [["a", "models/m.pkl"], ["b", "https://host/m.pkl?sig=1"], []],
                          ("id", "model"))
    a, b = round_manifest.read_manifest(path)
    assert a.model == str(tmp_path / "models" / "m.pkl") and b.model == "https://host/m.pkl?sig=1"
    assert (a.post_url, a.environment) == ("", "")


def test_round_cli_exit_codes(tmp_path):
    """Usage 2, manifest 3, missing data 20: the round's own failures, one line each."""
    assert round_driver.main(["--manifest", str(tmp_path / "none.csv"), "--output_dir", str(tmp_path)]) == 3
    assert round_driver.main(["--manifest", "m.csv", "--workers", "-1"]) == 2
    path = write_manifest(tmp_path / "m.csv", [["a", os.path.join(MODELS, "model_3_11.pkl")]], ("id", "model"))
    assert round_driver.main(["--manifest", path, "--output_dir", str(tmp_path),
                              "--dataset", str(tmp_path / "no.parquet")]) == 20


def test_a_round_on_ray_without_the_round_extra_names_its_pip_line(tmp_path, monkeypatch, caplog):
    """pip's [round] extra absent (ray not importable): the backend is unavailable (4), one line naming
    the pip install, before any download; without [run], a local round says the same of [run]."""
    from numerai_predict import extras

    path = write_manifest(tmp_path / "m.csv", [["a", os.path.join(MODELS, "model_3_11.pkl")]], ("id", "model"))
    hidden = {"ray"}
    monkeypatch.setattr(extras, "find_spec", lambda name: None if name in hidden else object())
    assert round_driver.main(["--manifest", path, "--output_dir", str(tmp_path / "out"), "--ray", "auto"]) == 4
    assert "pip install 'numerai-predict[round]'" in caplog.text
    hidden.add("pandas")
    assert round_driver.main(["--manifest", path, "--output_dir", str(tmp_path / "out")]) == 4
    assert "pip install 'numerai-predict[run]'" in caplog.text
    assert not os.path.exists(tmp_path / "out" / round_planning.DATA_FOLDER)


def test_environment_python_finds_pixi_then_twin_layer_then_prefix(tmp_path):
    """One function for pixi's .pixi/envs/ENV, the twin's layer .pixi/twin/ENV and its prefix."""
    root, twin = tmp_path / "repo", tmp_path / "envs"

    def make(folder):
        (folder / "bin").mkdir(parents=True)
        (folder / "bin" / "python").write_text("#!/bin/sh\n")
        (folder / "bin" / "python").chmod(0o755)
        return str(folder / "bin" / "python")

    assert round_environments.environment_python("py311", str(root), str(twin)) is None
    runtime = make(twin / "py311-runtime")
    assert round_environments.environment_python("py311", str(root), str(twin)) == runtime
    prefix = make(twin / "py311")
    assert round_environments.environment_python("py311", str(root), str(twin)) == prefix
    layer = make(root / ".pixi" / "twin" / "py311")
    assert round_environments.environment_python("py311", str(root), str(twin)) == layer
    pixi = make(root / ".pixi" / "envs" / "py311")
    assert round_environments.environment_python("py311", str(root), str(twin)) == pixi
    assert round_environments.environment_python(HERE)  # the one this test runs in: no other is built for it


def other_python(here=None):
    """A committed pickle of another Python than this test run's, and its environment."""
    env = "py312" if (here or HERE) != "py312" else "py311"
    return os.path.join(MODELS, f"model_3_{env[3:]}.pkl"), env


def test_a_test_cannot_reach_for_an_environment_it_did_not_ask_for(tmp_path, api):
    """On a fresh machine only this test run's environment is sure to exist: a round that needs another
    one without the `environments` fixture (which builds it) fails here too, on a warm machine."""
    model, env = other_python()
    manifest = write_manifest(tmp_path / "m.csv", [["a", model]], ("id", "model"))
    code, err = finish(driver(manifest, tmp_path / "out", api))
    rows, _ = report(tmp_path / "out")
    assert code == round_manifest.EXIT_UNRUN and rows["a"]["status"] == "skipped", err
    assert f"environment {env} is not one this host may use (NUMERAI_PREDICT_ENVIRONMENTS={HERE})" \
        in rows["a"]["error"]


def test_workers_are_bounded_by_memory(monkeypatch):
    monkeypatch.setattr(round_local, "available_memory", lambda: 9 << 30)
    cpus = len(os.sched_getaffinity(0))
    assert round_local.local_workers(0, 4 << 30) == min(cpus, 2)
    assert round_local.local_workers(8, 4 << 30) == 2
    assert round_local.local_workers(8, 0) == 8
    assert round_local.local_workers(1, 64 << 30) == 1


# ---- real rounds -------------------------------------------------------------


@pytest.fixture(scope="module")
def s3():
    """moto's S3, behind a proxy that counts every POST (a duplicated upload would show)."""
    server, client, url = start_moto()
    client.create_bucket(Bucket="submissions")
    proxy = ScriptedServer()
    proxy.upstream = url
    proxy.route("/submissions", ("forward", "ok"))
    yield client, proxy
    proxy.close()
    server.stop()


@pytest.fixture
def api(live_files):
    """Numerai's GraphQL API and dataset server on 127.0.0.1; every request counted."""
    server = ScriptedServer()
    serve_data(server, live_files)
    server.graphql = {DATASET: "/live.parquet", BENCHMARKS: "/bench.parquet"}
    yield server
    server.close()


def serve_data(server, live_files):
    for path, key in (("/live.parquet", "features"), ("/bench.parquet", "benchmarks")):
        with open(live_files[key], "rb") as handle:  # the file, then "unchanged" to a conditional GET
            server.route(path, (200, handle.read(), {"ETag": f'"{key}-1"'}), (304, b"", {"ETag": f'"{key}-1"'}))


def presigned(proxy, key):
    post = presigner(proxy.url).generate_presigned_post(
        "submissions", key, Fields={"Content-Type": "text/csv"},
        Conditions=[{"Content-Type": "text/csv"}, ["content-length-range", 1, 10_000_000]], ExpiresIn=600)
    return post["url"], urllib.parse.urlencode(post["fields"])


def posted_keys(proxy):
    """The S3 key of every POST that reached the proxy."""
    keys = []
    for method, _, _, body in proxy.requests:
        if method == "POST":
            found = re.search(rb'name="key"\r\n\r\n([^\r]+)', body)
            keys.append(found[1].decode() if found else "?")
    return keys


def round_models(tmp_path, s3_proxy=None, failing=True):
    """The committed pickles of the four Pythons (uploaded when ``s3_proxy``), plus failing ones:
    expected (status, exit code, environment) by id."""
    rows, expected = [], {}
    for python in PYTHONS:
        for kind in ("", "_legacy"):
            ident = f"m{python}{kind}"
            post = presigned(s3_proxy, f"round/{ident}.csv") if s3_proxy else ("", "")
            rows.append([ident, os.path.join(MODELS, f"model_{python}{kind}.pkl"), *post, ""])
            expected[ident] = ("ok", 0, "py" + python.replace("_", ""))
    if failing:
        folder = tmp_path / "bad"
        folder.mkdir()
        bad = {"raises": model_zoo.dumps(model_zoo.raises), "sleeps": model_zoo.dumps(model_zoo.sleeps),
               "returns_none": model_zoo.dumps(lambda live_features: None),
               "unsafe": malicious_pickles.corpus(str(tmp_path / "pwned"))[0].data}
        for name, data in bad.items():
            (folder / f"{name}.pkl").write_bytes(data)
        here = f"py3{sys.version_info[1]}"
        rows += [["wrong_python", os.path.join(MODELS, "model_3_13.pkl"), "", "", "py311"],
                 ["raises", "bad/raises.pkl", "", "", ""], ["sleeps", "bad/sleeps.pkl", "", "", ""],
                 ["returns_none", "bad/returns_none.pkl", "", "", ""], ["unsafe", "bad/unsafe.pkl", "", "", ""]]
        expected.update(wrong_python=("failed", 12, "py311"), raises=("failed", 30, here),
                        sleeps=("failed", 32, here), returns_none=("failed", 40, here), unsafe=("skipped", 16, ""))
    return write_manifest(tmp_path / "manifest.csv", rows), expected


def driver(manifest, out, api, *flags, **popen):
    """The round as a process of its own (the test API reached through sitecustomize)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [SITE, os.environ.get("PYTHONPATH")])),
               NUMERAI_PREDICT_TEST_API=api.url + "/graphql")
    command = [sys.executable, "-m", "numerai_predict.round", "--manifest", manifest, "--output_dir", str(out),
               "--timeout", "120", "--max-memory", "2g", *map(str, flags)]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def report(out):
    with open(out / "round.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(out / "round.json") as handle:
        details = json.load(handle)
    return {row["id"]: row for row in rows}, details


def check_outcomes(rows, expected, out, start=None):
    assert sorted(rows) == sorted(expected)
    for ident, (status, code, env) in expected.items():
        row = rows[ident]
        assert (row["status"], row["exit_code"]) == (status, str(code)), (ident, row)
        if env:
            assert row["environment"] == env, (ident, row)
        if status == "ok":
            assert row["csv"].startswith(str(out / ident) + os.sep) and os.path.isfile(row["csv"])
            assert numerai_rules.csv_refusal(row["csv"]) is None, ident  # Numerai's own rules accept it
            assert float(row["peak_mib"]) > 0
            assert start is None or row["start"].startswith(start), (ident, row)  # forked from a warm template
        else:
            assert row["error"], row


def check_uploads(s3, rows, expected_ok):
    client, proxy = s3
    keys = posted_keys(proxy)
    assert sorted(keys) == sorted(f"round/{ident}.csv" for ident in expected_ok), keys  # once each
    for ident in expected_ok:
        assert rows[ident]["upload"] == "uploaded"
        body = client.get_object(Bucket="submissions", Key=f"round/{ident}.csv")["Body"].read()
        with open(rows[ident]["csv"], "rb") as handle:
            assert body == handle.read(), ident


def test_small_round_in_two_environments(tmp_path, api, environments):
    """Two Pythons' pickles, the doctor choosing; the data downloaded once, shared read-only."""
    environments("py311", "py312")
    manifest = write_manifest(tmp_path / "m.csv", [["a", os.path.join(MODELS, "model_3_12.pkl")],
                                                   ["b", os.path.join(MODELS, "model_3_11_legacy.pkl")]],
                              ("id", "model"))
    out = tmp_path / "out"
    code, err = finish(driver(manifest, out, api, "--timeout", "600"))  # room for a loaded CPU
    assert code == 0, err
    rows, details = report(out)
    check_outcomes(rows, {"a": ("ok", 0, "py312"), "b": ("ok", 0, "py311")}, out, start="warm")
    assert api.count("GET", "/live.parquet") == 1 and api.count("GET", "/bench.parquet") == 1
    data = out / round_planning.DATA_FOLDER / DATASET
    assert not os.stat(data).st_mode & 0o222  # read-only for every model
    assert details["summary"].startswith("round: 2 models: 2 ok, 0 failed, 0 skipped") and "round: 2" in err


@pytest.mark.slow
def test_round_of_thirteen_models(tmp_path, api, s3, environments):
    """The four Pythons' pickles uploaded, and failing ones (wrong Python, raising, timing out,
    invalid output, unsafe): each its status and exit code; one download; each upload once, identical."""
    environments(*ALL_ENVIRONMENTS)
    manifest, expected = round_models(tmp_path, s3[1])
    out = tmp_path / "out"
    code, err = finish(driver(manifest, out, api, "--workers", "2", "--timeout", "45"))  # well below sleeps's 60 s
    assert code == 0, err
    rows, details = report(out)
    assert len(rows) >= 12
    check_outcomes(rows, expected, out, start="warm")  # a template per Python, each one thread
    assert api.count("POST", "/graphql") == 2  # the URL of each file asked once
    assert api.count("GET", "/live.parquet") == 1 and api.count("GET", "/bench.parquet") == 1
    check_uploads(s3, rows, [i for i, e in expected.items() if e[0] == "ok"])
    assert "doctor: unsafe pickle" in rows["unsafe"]["error"] and not os.path.exists(tmp_path / "pwned")
    assert re.search(r"round: 13 models: 8 ok, 4 failed, 1 skipped; .* on 2 local worker", err)


@pytest.mark.slow
def test_resume_after_the_driver_is_killed(tmp_path, api, s3, environments):
    """SIGKILL the driver mid-round, run it again: finished models are not rerun, nothing uploaded twice."""
    environments(*ALL_ENVIRONMENTS)
    manifest, expected = round_models(tmp_path, s3[1], failing=False)
    s3[1].requests.clear()
    out = tmp_path / "out"
    first = driver(manifest, out, api, "--workers", "1", start_new_session=False)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None and len(list(out.glob(f"*/{round_outcomes.STATE}"))) < 3:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    finished = sorted(path.parent.name for path in out.glob(f"*/{round_outcomes.STATE}"))
    assert 3 <= len(finished) < len(expected)
    code, err = finish(driver(manifest, out, api, "--workers", "1"))
    assert code == 0, err
    rows, details = report(out)
    check_outcomes(rows, expected, out)
    assert set(finished) <= set(details["reused"])  # delivered before the kill: not run again
    check_uploads(s3, rows, list(expected))  # each once, over both runs
    gets = [headers for method, path, headers, _ in api.requests if method == "GET" and path == "/live.parquet"]
    assert len(gets) == 2 and gets[1].get("If-None-Match") == '"features-1"'  # the second run: 304, copy kept


def test_an_image_job_runs_offline_read_only_and_limited(tmp_path):
    """--use-images: no network, a read-only root, no capabilities, its memory and CPU; the presigned
    POST stays outside; each data file mounted on its own (they may live in different folders)."""
    job = round_outcomes.Job("m", str(tmp_path / "m.pkl"), "py312", str(tmp_path / "m"),
                             str(tmp_path / "d" / "live.parquet"), str(tmp_path / "e" / "bench.parquet"),
                             "https://s3.example/up", "key=k&policy=p", max_memory="2g", use_images=True)
    command = round_worker.predict_command(job, "docker", "unused", cpu=1)
    value = {flag: command[command.index(flag) + 1] for flag in ("--network", "--memory", "--cpuset-cpus",
                                                                 "--cap-drop", "--dataset", "--benchmarks")}
    assert value == {"--network": "none", "--memory": str((2 << 30) + round_images.CONTAINER_ROOM),
                     "--cpuset-cpus": "1",
                     "--cap-drop": "ALL", "--dataset": "/data/features/live.parquet",
                     "--benchmarks": "/data/benchmarks/bench.parquet"}
    assert "--read-only" in command and "numerai_predict_py_3_12:latest" in command
    assert "--post_url" not in command and "key=k" not in str(command)
    for mount in (f"{tmp_path}/m.pkl:/model/m.pkl:ro", f"{tmp_path}/d/live.parquet:/data/features/live.parquet:ro",
                  f"{tmp_path}/e/bench.parquet:/data/benchmarks/bench.parquet:ro", f"{tmp_path}/m:/out"):
        assert mount in command
    other = round_outcomes.Job(**{**job.__dict__, "environment": "py311"})
    assert round_images.container_name(job) == round_images.container_name(other)


def test_a_local_job_never_puts_the_post_on_a_command_line(tmp_path):
    """Every process of the machine reads command lines: predict.py takes the POST on its stdin."""
    job = round_outcomes.Job("m", str(tmp_path / "m.pkl"), "py312", str(tmp_path / "m"), "f", "b", "https://s3.example/up",
                  "key=k&policy=secret-policy")
    command = round_worker.predict_command(job, "python", "report.json")
    assert command[command.index("--post_data") + 1] == "-" and "secret-policy" not in " ".join(command)


@pytest.mark.parametrize("status, expected", [(204, ("ok", 0, "uploaded")), (403, ("failed", 60, "failed"))])
def test_the_worker_uploads_an_images_csv(tmp_path, server, status, expected):
    """--use-images: the worker POSTs the container's CSV; a rejected upload fails the model with 60."""
    csv_path = tmp_path / "live_predictions.csv"
    csv_path.write_bytes(b"id,prediction\na,0.5\n")
    server.route("/up", (status, b"<Error><Code>AccessDenied</Code></Error>" if status == 403 else b""))
    job = round_outcomes.Job("m", "m.pkl", "py311", str(tmp_path), "f", "b", server.url + "/up", "key=k.csv",
                             use_images=True)
    outcome = round_worker.upload_from_worker(job, round_outcomes.Outcome("m", "ok", 0, "py311", csv=str(csv_path)))
    assert (outcome.status, outcome.exit_code, outcome.upload) == expected
    assert server.count("POST", "/up") == 1 and b"id,prediction\na,0.5\n" in server.requests[0][3]


def test_resume_uploads_what_a_lost_image_worker_delivered(tmp_path, server):
    """The container wrote its CSV and report, the worker died before uploading: the next run
    does not rerun the model, and uploads that CSV, once."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "live_predictions-1.csv").write_bytes(b"id,prediction\na,0.5\n")
    (folder / "report.json").write_text(json.dumps({"exit_code": 0, "predictions_csv": "/out/live_predictions-1.csv",
                                                    "seconds": 3.0}))
    server.route("/up", (204, b""))
    job = round_outcomes.Job("m", str(tmp_path / "absent.pkl"), "py311", str(folder), "f", "b", server.url + "/up",
                             "key=k.csv", use_images=True)
    outcome = round_worker.run_model(job)
    assert (outcome.status, outcome.upload, outcome.reused) == ("ok", "uploaded", True)
    assert outcome.csv == str(folder / "live_predictions-1.csv") and server.count("POST", "/up") == 1
    again = round_worker.run_model(job)  # recorded now: neither rerun nor uploaded again
    assert again.reused and server.count("POST", "/up") == 1


def test_resume_names_the_environment_the_doctor_picked(tmp_path):
    """A model delivered before the driver died, with no environment in the manifest: its row keeps
    the environment it ran in (from predict.py's report), not an empty one."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "live_predictions-1.csv").write_bytes(b"id,prediction\na,0.5\n")
    (folder / "report.json").write_text(json.dumps({"exit_code": 0, "python": "3.12", "seconds": 2.0,
                                                    "predictions_csv": str(folder / "live_predictions-1.csv")}))
    outcome = round_worker.run_model(round_outcomes.Job("m", str(tmp_path / "m.pkl"), "", str(folder), "f", "b"))
    assert (outcome.status, outcome.environment, outcome.reused) == ("ok", "py312", True)


def test_an_image_not_built_is_a_round_failure(tmp_path, monkeypatch):
    """No image for the environment (or no docker): skipped, and the round's exit 5, never a pull."""
    monkeypatch.delenv("NUMERAI_PREDICT_ENVIRONMENTS")  # no local environment is used: any name may be asked
    model = tmp_path / "m.pkl"
    model.write_bytes(model_zoo.dumps(model_zoo.raises))
    job = round_outcomes.Job("m", str(model), "py39", str(tmp_path / "m"), "f", "b", use_images=True)
    outcome = round_worker.run_model(job)
    assert (outcome.status, outcome.exit_code, outcome.round_failure) == ("skipped", None, True)
    assert "numerai_predict_py_3_9:latest is not on this machine" in outcome.error or "docker" in outcome.error


@pytest.mark.slow
def test_a_co_tenant_never_sees_another_models_post(tmp_path, api, s3):
    """Two models side by side on two workers: one watches every command line and environment it can read
    while the other's predict.py starts with a presigned POST. The POST goes to predict.py on its standard
    input, and the watcher's /proc shows its own processes only: it sees nothing."""
    spy = tmp_path / "spy.pkl"
    spy_marker = "policy-" + os.urandom(6).hex()
    spy.write_bytes(model_zoo.dumps(hostile_models.watches_for(spy_marker, 15)))
    url, fields = presigned(s3[1], "round/victim.csv")
    rows = [["spy", str(spy), "", "", HERE],
            ["victim", os.path.join(MODELS, f"model_3_{HERE[3:]}.pkl"), url, fields + "&x-spy=" + spy_marker, HERE]]
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    out = tmp_path / "out"
    code, err = finish(driver(manifest, out, api, "--workers", "2"))
    assert code == 0, err
    rows, _ = report(out)
    assert rows["victim"]["upload"] == "uploaded"
    spied = (out / "spy" / "predict.log").read_text()
    assert "WATCHED []" in spied and "Saved predictions" in spied


@pytest.mark.slow
@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the py311 image runs the round's own 3.11 pickles")
def test_round_in_images(tmp_path, api, s3, py311_image):
    """--use-images: each model in its image, offline; a URL's pickle fetched once by the worker; the
    worker uploads each delivered CSV once, byte-identical; failures keep their exit codes."""
    raises = tmp_path / "raises.pkl"
    raises.write_bytes(model_zoo.dumps(model_zoo.raises))
    with open(os.path.join(MODELS, "model_3_11_legacy.pkl"), "rb") as handle:
        api.route("/models/legacy.pkl", (200, handle.read()))
    rows = [["local", os.path.join(MODELS, "model_3_11.pkl"), *presigned(s3[1], "round/local.csv"), ""],
            ["url", api.url + "/models/legacy.pkl?X-Amz-Signature=s", *presigned(s3[1], "round/url.csv"), ""],
            ["raises", str(raises), "", "", ""],
            ["wrong_python", os.path.join(MODELS, "model_3_13.pkl"), "", "", "py311"]]
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    s3[1].requests.clear()
    out = tmp_path / "out"
    code, err = finish(driver(manifest, out, api, "--use-images", "--workers", "2", "--timeout", "60"))
    assert code == 0, err
    rows, details = report(out)
    check_outcomes(rows, {"local": ("ok", 0, "py311"), "url": ("ok", 0, "py311"), "raises": ("failed", 30, "py311"),
                          "wrong_python": ("failed", 12, "py311")}, out)
    check_uploads(s3, rows, ["local", "url"])
    assert api.count("GET", "/models/legacy.pkl") == 1  # read by the doctor and mounted: one download
    for ident in ("local", "url"):
        assert os.stat(rows[ident]["csv"]).st_uid == os.getuid()
        with open(out / ident / "report.json") as handle:
            assert json.load(handle)["python"] == "3.11"  # predict.py in the image wrote it
    leftover = subprocess.run([DOCKER, "ps", "-aq", "--filter", "name=numerai-round-"],
                              capture_output=True, text=True).stdout
    assert leftover == ""


# ---- Ray: a real two-node cluster on 127.0.0.1 -------------------------------


def ray_command(*args):
    return [sys.executable, "-m", "ray.scripts.scripts", *args]


def ray_ports(base_args):
    ports = [free_port() for _ in range(6)]
    worker = 20000 + (os.getpid() % 200) * 100 + len(base_args)
    return ["--node-manager-port", ports[0], "--object-manager-port", ports[1], "--metrics-export-port", ports[2],
            "--runtime-env-agent-port", ports[3], "--dashboard-agent-grpc-port", ports[4],
            "--dashboard-agent-listen-port", ports[5], "--min-worker-port", worker, "--max-worker-port", worker + 40]


def descendants(pid):
    """Every process below ``pid`` (from /proc), children first."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        children = [p for p, parent in parents.items() if parent == current]
        found += children
        todo += children
    return found


class RayCluster:
    """`ray start --head` and a second `ray start --address`, 1 CPU each, on 127.0.0.1, --block'ed."""

    def __init__(self, folder):
        self.folder = folder
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        common = ["--num-cpus", "1", "--memory", str(3 << 30), "--object-store-memory", str(100 << 20),
                  "--disable-usage-stats", "--block"]
        self.head = self.start(["start", "--head", "--node-ip-address", "127.0.0.1", "--port", self.port,
                                "--include-dashboard", "false", "--ray-client-server-port", free_port(),
                                "--temp-dir", str(folder), *common, *ray_ports([1])], "head")
        self.wait_for(1)
        self.second = self.start(["start", "--address", self.address, "--node-ip-address", "127.0.0.1",
                                  *common, *ray_ports([1, 2])], "second")
        self.wait_for(2)

    def start(self, args, name):
        log = open(os.path.join(self.folder, f"{name}.log"), "w")
        return subprocess.Popen(ray_command(*map(str, args)), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=dict(os.environ, RAY_DISABLE_IMPORT_WARNING="1"))

    def where(self, command):
        """``command`` as run where the head is (here: as it is; tests/test_partition.py: in a namespace)."""
        return command

    def alive(self):
        probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
                 "print(sum(1 for n in ray.nodes() if n['Alive']))")
        done = subprocess.run(self.where([sys.executable, "-c", probe, self.address]), capture_output=True,
                              text=True, timeout=60)
        return int(done.stdout.strip() or 0)

    def wait_for(self, nodes):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.alive() >= nodes:
                    return
            except (subprocess.TimeoutExpired, ValueError):
                pass
            time.sleep(1)
        raise AssertionError(f"the Ray cluster did not reach {nodes} node(s); logs in {self.folder}")

    def kill_second(self):
        """The second node lost: its ray start, raylet, workers and their predict.py, SIGKILLed."""
        for pid in [self.second.pid, *descendants(self.second.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.second.wait()

    def stop(self):
        for proc in (self.second, self.head):
            for pid in [proc.pid, *descendants(proc.pid)]:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        subprocess.run(ray_command("stop", "--force"), capture_output=True, timeout=120)
        for proc in (self.second, self.head):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def ray_cluster(tmp_path_factory):
    pytest.importorskip("ray")
    folder = tmp_path_factory.mktemp("ray", numbered=True)
    # Ray's socket paths must stay short (AF_UNIX): a short temp dir of our own.
    short = os.path.join("/tmp", f"rt{os.getpid()}")
    os.makedirs(short, exist_ok=True)
    cluster = None
    try:
        cluster = RayCluster(short)
        yield cluster
    finally:
        if cluster is not None:
            cluster.stop()
        else:
            subprocess.run(ray_command("stop", "--force"), capture_output=True, timeout=120)
        subprocess.run(["rm", "-rf", short], check=False)
        del folder


@pytest.mark.slow
def test_ray_round_and_a_lost_node(tmp_path, api, s3, ray_cluster, live_files, environments):
    """The round through a 2-node Ray cluster; then again with the second node killed mid-round:
    every model ends exactly once, no upload duplicated or lost, the retried models named."""
    environments(*ALL_ENVIRONMENTS)
    manifest, expected = round_models(tmp_path, s3[1], failing=False)
    rows_all = list(csv.reader(open(manifest)))
    raises = tmp_path / "raises.pkl"
    raises.write_bytes(model_zoo.dumps(model_zoo.raises))
    rows_all.append(["raises", str(raises), "", "", ""])
    manifest = write_manifest(tmp_path / "manifest.csv", rows_all[1:])
    expected["raises"] = ("failed", 30, f"py3{sys.version_info[1]}")
    s3[1].requests.clear()
    out = tmp_path / "out"
    code, err = finish(driver(manifest, out, api, "--ray", ray_cluster.address, "--timeout", "60"))
    assert code == 0, err
    rows, details = report(out)
    check_outcomes(rows, expected, out, start="warm")  # each Ray worker's own templates
    check_uploads(s3, rows, [i for i, e in expected.items() if e[0] == "ok"])
    nodes = {m["node"] for m in details["models"]}
    assert len(nodes) == 2, details  # both nodes ran models
    assert details["retried"] == [] and "Ray cluster of 2 node(s), 2 CPU(s)" in details["workers"]
    assert {m["id"]: m["attempts"] for m in details["models"]}["raises"] == 1  # a model failure is not retried

    # again, new keys; the second node is lost while it runs a model
    again = tmp_path / "again"
    again.mkdir()
    manifest2, expected2 = round_models(again, s3[1], failing=False)
    s3[1].requests.clear()
    serve_data(api, live_files)  # a new round folder: downloaded afresh
    out2 = tmp_path / "out2"
    proc = driver(manifest2, out2, api, "--ray", ray_cluster.address, "--timeout", "60")
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline and proc.poll() is None and len(list(out2.glob(f"*/{round_outcomes.STATE}"))) < 2:
        time.sleep(0.2)
    time.sleep(1.0)  # the second node is into its next model
    ray_cluster.kill_second()
    code, err = finish(proc)
    assert code == 0, err
    rows, details = report(out2)
    check_outcomes(rows, expected2, out2)
    check_uploads(s3, rows, list(expected2))
    assert details["retried"], details  # the model the lost node was running, run again elsewhere
    assert "retried after a system failure: " in err
