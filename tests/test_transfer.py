"""Model download, dataset download (numerapi) and upload (presigned S3 POST),
through real clients against real servers on 127.0.0.1."""

from __future__ import annotations

import os
import re
import time
import urllib.parse

import model_zoo
import pytest
from conftest import ROOT
from servers import free_port, s3_error_xml, start_moto
from test_predict import csvs, local_data, read_predictions, run

from numerai_predict import errors

SECRET = "X-Amz-Signature=topsecret"


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on 127.0.0.1 and a boto3 client for it."""
    server, client, _ = start_moto()
    client.create_bucket(Bucket="submissions")
    yield client
    server.stop()


def presigned_post(client, key):
    post = client.generate_presigned_post(
        "submissions", key, Fields={"Content-Type": "text/csv"},
        Conditions=[{"Content-Type": "text/csv"}, ["content-length-range", 1, 10_000_000]], ExpiresIn=600)
    return post["url"], urllib.parse.urlencode(post["fields"])


def test_upload_to_s3_is_byte_identical(capfd, s3, live_files, lightgbm_pickles, out_dir):
    """The CSV lands in S3 through boto3's presigned POST exactly as written locally."""
    url, fields = presigned_post(s3, "round-1/model.csv")
    code, err = run(capfd, "--model", lightgbm_pickles["two"], *local_data(live_files), "--output_dir", out_dir,
                    "--post_url", url, "--post_data", fields)
    assert code == 0, err
    (name,) = csvs(out_dir)
    uploaded = s3.get_object(Bucket="submissions", Key="round-1/model.csv")["Body"].read()
    assert uploaded == (out_dir / name).read_bytes()


def test_upload_retries_server_errors_and_resends_the_whole_file(capfd, server, live_files, pickle_of, out_dir):
    """500 then 429 (Retry-After) then 204: three posts, each carrying the full CSV."""
    url = server.route("/upload", (500, b"oops"), (429, b"slow down", {"Retry-After": "1"}), (204, b""))
    code, err = run(capfd, "--model", pickle_of(model_zoo.constant), *local_data(live_files), "--output_dir", out_dir,
                    "--post_url", url, "--post_data", "key=a.csv&policy=p")
    assert code == 0, err
    posts = [body for method, _, _, body in server.requests if method == "POST"]
    csv = (out_dir / csvs(out_dir)[0]).read_bytes()
    assert len(posts) == 3 and all(csv in body and b'name="key"' in body for body in posts)
    assert "retry 2 in 1.0s" in err  # the server's Retry-After was honoured


def kept_csv(report, out_dir) -> str:
    """--report's predictions_csv after a failed upload: the CSV kept in --output_dir."""
    import json

    (name,) = csvs(out_dir)
    reported = json.loads(report.read_text())["predictions_csv"]
    assert reported == str(out_dir / name), "--report does not say where the kept CSV is"
    return reported


def test_upload_403_fails_at_once_and_keeps_the_csv(capfd, server, live_files, pickle_of, out_dir, tmp_path):
    """An expired policy is not retried; S3's code and message are shown; the CSV stays, and
    --report says where (the round's csv column: the file an operator uploads by hand)."""
    url = server.route("/upload", (403, s3_error_xml("AccessDenied", "Invalid according to Policy: Policy expired.")))
    code, err = run(capfd, "--model", pickle_of(model_zoo.constant), *local_data(live_files), "--output_dir", out_dir,
                    "--post_url", url, "--post_data", "key=a.csv", "--report", str(tmp_path / "report.json"))
    assert code == errors.UploadRejectedError.exit_code
    kept_csv(tmp_path / "report.json", out_dir)
    assert "HTTP 403 Forbidden (AccessDenied: Invalid according to Policy: Policy expired.)" in err
    assert server.count("POST", "/upload") == 1
    assert len(read_predictions(out_dir)) == len(live_files["ids"])


def test_upload_gives_up_within_the_budget(capfd, server, live_files, pickle_of, out_dir, monkeypatch, tmp_path):
    """A server that always fails ends in exit 61 after bounded retries; the CSV stays, in --report too."""
    monkeypatch.setenv("NUMERAI_PREDICT_RETRY_SECONDS", "3")
    url = server.route("/upload", (503, b"unavailable"))
    code, err = run(capfd, "--model", pickle_of(model_zoo.constant), *local_data(live_files), "--output_dir", out_dir,
                    "--post_url", url, "--post_data", "key=a.csv", "--report", str(tmp_path / "report.json"))
    assert code == errors.UploadFailedError.exit_code
    kept_csv(tmp_path / "report.json", out_dir)
    assert 2 <= server.count("POST", "/upload") <= 8
    assert len(csvs(out_dir)) == 1


def test_model_download_retries_500_then_succeeds(capfd, server, live_files, lightgbm_pickles, out_dir):
    """A presigned GET that fails once is retried; the query string is never logged."""
    with open(lightgbm_pickles["legacy"], "rb") as handle:
        body = handle.read()
    url = server.route("/models/model.pkl", (500, b"boom"), (200, body)) + "?" + SECRET
    code, err = run(capfd, "--model", url, *local_data(live_files), "--output_dir", out_dir)
    assert code == 0, err
    assert server.count("GET", "/models/model.pkl") == 2
    assert (out_dir / "model.pkl").read_bytes() == body
    assert "topsecret" not in err and "/models/model.pkl" in err


def test_model_download_truncated_body_is_retried(capfd, server, live_files, lightgbm_pickles, out_dir):
    with open(lightgbm_pickles["legacy"], "rb") as handle:
        body = handle.read()
    url = server.route("/m.pkl", ("truncate", body[:1000]), (200, body))
    code, err = run(capfd, "--model", url, *local_data(live_files), "--output_dir", out_dir)
    assert code == 0, err
    assert server.count("GET", "/m.pkl") == 2
    assert (out_dir / "m.pkl").read_bytes() == body


def test_model_download_truncated_every_time_fails(capfd, server, live_files, out_dir, monkeypatch):
    monkeypatch.setenv("NUMERAI_PREDICT_RETRY_SECONDS", "2")
    url = server.route("/m.pkl", ("truncate", b"x" * 1000))
    code, err = run(capfd, "--model", url, *local_data(live_files), "--output_dir", out_dir)
    assert code == errors.ModelFetchError.exit_code
    assert "kept failing" in err and not (out_dir / "m.pkl").exists()


def test_model_download_404_fails_at_once(capfd, server, live_files, out_dir):
    url = server.route("/gone.pkl", (404, b"NoSuchKey")) + "?" + SECRET
    code, err = run(capfd, "--model", url, *local_data(live_files), "--output_dir", out_dir)
    assert code == errors.ModelFetchError.exit_code
    assert "HTTP 404" in err and "topsecret" not in err
    assert server.count("GET", "/gone.pkl") == 1 and csvs(out_dir) == []


@pytest.fixture
def numerai_api(server, monkeypatch, live_files):
    """numerapi pointed at a local GraphQL endpoint that hands out local file URLs."""
    import numerapi.base_api

    monkeypatch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", server.url + "/graphql")
    for name, key in [("v5.3/live.parquet", "features"), ("v5.3/live_benchmark_models.parquet", "benchmarks")]:
        with open(live_files[key], "rb") as handle:
            server.route(f"/files/{name}", (200, handle.read()))
    server.graphql = {name: f"/files/{name}" for name in
                      ["v5.3/live.parquet", "v5.3/live_benchmark_models.parquet"]}
    return server


def test_numerapi_downloads_dataset_and_benchmarks(capfd, numerai_api, lightgbm_pickles, out_dir, live_files):
    """The default dataset names are fetched with the real numerapi client."""
    code, err = run(capfd, "--model", lightgbm_pickles["two"], "--output_dir", out_dir)
    assert code == 0, err
    assert numerai_api.count("GET", "/files/v5.3/live.parquet") == 1
    assert numerai_api.count("GET", "/files/v5.3/live_benchmark_models.parquet") == 1
    assert (out_dir / "v5.3" / "live.parquet").read_bytes() == open(live_files["features"], "rb").read()
    assert list(read_predictions(out_dir).index) == list(live_files["ids"])


def test_numerapi_skips_benchmarks_for_one_argument_models(capfd, numerai_api, lightgbm_pickles, out_dir):
    code, err = run(capfd, "--model", lightgbm_pickles["legacy"], "--output_dir", out_dir)
    assert code == 0, err
    assert numerai_api.count("GET", "/files/v5.3/live_benchmark_models.parquet") == 0


def test_numerapi_unknown_dataset(capfd, numerai_api, pickle_of, out_dir):
    code, err = run(capfd, "--model", pickle_of(model_zoo.constant), "--dataset", "v9/nope.parquet",
                    "--output_dir", out_dir)
    assert code == errors.DataFetchError.exit_code
    assert "could not download --dataset v9/nope.parquet" in err and "not found" in err
    assert csvs(out_dir) == []


def test_numerai_api_unavailable(capfd, server, pickle_of, out_dir, monkeypatch):
    """Numerai's API answering 503 until the budget ends: a data error naming the dataset and the status."""
    import numerapi.base_api

    monkeypatch.setenv("NUMERAI_PREDICT_RETRY_SECONDS", "3")
    monkeypatch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", server.route("/down", (503, b"down")))
    code, err = run(capfd, "--model", pickle_of(model_zoo.constant), "--output_dir", out_dir)
    assert code == errors.DataFetchError.exit_code
    assert "could not download --dataset v5.3/live.parquet: Numerai's API at " in err
    assert "HTTP 503 Service Unavailable (down)" in err and "retry budget 3 s" in err
    assert server.count("POST", "/down") >= 2 and csvs(out_dir) == []


def test_numerai_api_unreachable(capfd, pickle_of, out_dir, monkeypatch):
    """Nothing listening where the API should be: 'connection refused', within the budget."""
    import numerapi.base_api

    monkeypatch.setenv("NUMERAI_PREDICT_RETRY_SECONDS", "2")
    monkeypatch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", f"http://127.0.0.1:{free_port()}/graphql")
    code, err = run(capfd, "--model", pickle_of(model_zoo.constant), "--output_dir", out_dir)
    assert code == errors.DataFetchError.exit_code
    assert "Numerai's API at http://127.0.0.1:" in err and "connection failed: Connection refused" in err


# ---- the deadline's arithmetic and docs/safety.md's numbers -------------------


def test_each_attempt_timeouts_shrink_to_the_time_left():
    """(connect, read) are the policy's while time allows, then what is left; nothing when too little is left."""
    from numerai_predict.transfer import MIN_ATTEMPT, Deadline, RetryPolicy, TransientError

    deadline = Deadline(RetryPolicy(budget_seconds=40, connect_timeout=5, read_timeout=15))
    assert deadline.timeouts() == (5, 15)
    deadline.end = time.monotonic() + 10  # 10 s left: only the read timeout is cut
    connect, read = deadline.timeouts()
    assert connect == 5 and 9.5 < read <= 10
    deadline.end = time.monotonic() + 2  # 2 s left: both
    connect, read = deadline.timeouts()
    assert 1.5 < connect <= 2 and 1.5 < read <= 2
    deadline.end = time.monotonic() + MIN_ATTEMPT / 2
    with pytest.raises(TransientError, match="no time left"):
        deadline.timeouts()


def test_readme_states_the_code_s_budget_and_worst_cases():
    """docs/safety.md's default budget, timeouts and worst-case table are the numbers in transfer.py."""
    from numerai_predict.transfer import CONNECT_TIMEOUT_ENV, READ_TIMEOUT_ENV, RETRY_BUDGET_ENV, RetryPolicy

    with open(os.path.join(ROOT, "docs", "safety.md")) as handle:
        readme = " ".join(handle.read().split())
    policy = RetryPolicy()
    budget = f"{policy.budget_seconds:g}"
    for env, seconds in [(RETRY_BUDGET_ENV, policy.budget_seconds), (CONNECT_TIMEOUT_ENV, policy.connect_timeout),
                         (READ_TIMEOUT_ENV, policy.read_timeout)]:
        assert re.search(rf"`{env}`,? \(?default {seconds:g} s\b", readme), (env, seconds)
    worst = {"model download": f"{budget} s", "one dataset: API call + download": f"{budget} s + {budget} s",
             "features and benchmarks (2-argument models)": f"{4 * policy.budget_seconds:g} s",
             "upload": f"{budget} s", "all transfers of a run": f"{6 * policy.budget_seconds:g} s"}
    for transfer, seconds in worst.items():
        assert f"| {transfer} | {seconds} |" in readme, (transfer, seconds)
    assert f"Why {budget} s:" in readme and f"the transfers take {6 * policy.budget_seconds:g} s" in readme
