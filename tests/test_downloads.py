"""Every transfer under every fault: the model GET, numerapi's GraphQL call, the dataset GET
and the upload POST, each against a scripted server on 127.0.0.1 (the upload through a
proxy in front of moto's S3), driven through predict.main with presigned URLs.

Each case asserts the exit code, the attempts the server saw, the time from the
transfer's first request to the end of the run within its deadline (the
configured budget: a correctness bound, not a benchmark), no partial file in
--output_dir, no credential in stdout, stderr or the --report JSON, and for
uploads the bytes that landed in S3.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse

import model_zoo
import pytest
from servers import ScriptedServer, presigner, s3_error_xml, self_signed_certificate, start_moto

import predict
from numerai_predict import errors, pipeline

# Minutes of faults, stalls and deadlines: the slow suite, run in one environment (test-slow).
pytestmark = pytest.mark.slow

BUDGET = 10.0  # NUMERAI_PREDICT_RETRY_SECONDS for the tests
SHORT_BUDGET = 3.0  # for faults that last until the deadline
TIMEOUT = 1.0  # connect and read timeouts
EPSILON = 0.05  # seconds: clock granularity between the client's wait and the server's stamp
SLACK = 1.5  # seconds past the deadline for the run to end after the transfer stopped
USERINFO = "numerai:hunter2"
SECRETS = ("X-Amz-", "Signature", "AKIATESTINGKEY00", "hunter2", "Credential")
DATASET = "v5.3/live.parquet"


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch):
    monkeypatch.setenv("NUMERAI_PREDICT_RETRY_SECONDS", str(BUDGET))
    monkeypatch.setenv("NUMERAI_PREDICT_CONNECT_TIMEOUT", str(TIMEOUT))
    monkeypatch.setenv("NUMERAI_PREDICT_READ_TIMEOUT", str(TIMEOUT))


@pytest.fixture(scope="module")
def moto():
    server, client, url = start_moto()
    client.create_bucket(Bucket="submissions")
    client.create_bucket(Bucket="datasets")
    yield client, url
    server.stop()


@pytest.fixture
def api(server, monkeypatch):
    """numerapi's endpoint on the scripted server."""
    import numerapi.base_api

    monkeypatch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", server.url + "/graphql")
    return server


def presigned_get(endpoint, bucket, key):
    return presigner(endpoint).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                                      ExpiresIn=600)


def with_userinfo(url):
    return url.replace("http://", f"http://{USERINFO}@", 1)


class Run:
    """One predict.main run: its exit code, outputs and report, and what --output_dir holds."""

    def __init__(self, capfd, out_dir, args):
        report = out_dir.parent / "report.json"
        self.code = predict.main([str(a) for a in [*args, "--output_dir", out_dir, "--report", report]])
        self.ended = time.monotonic()
        captured = capfd.readouterr()
        self.out, self.err = captured.out, captured.err
        self.report = report.read_text()
        self.files = sorted(os.path.relpath(os.path.join(root, name), out_dir)
                            for root, _, names in os.walk(out_dir) for name in names)

    def assert_no_secret(self):
        for text in (self.out, self.err, self.report):
            for secret in SECRETS:
                assert secret.lower() not in text.lower(), (secret, text)
            assert "?" not in "".join(line for line in text.splitlines() if "http" in line), text

    def assert_no_partial_file(self):
        hidden = [f for f in self.files if os.path.basename(f).startswith(".") or f.endswith((".part", ".temp"))]
        assert hidden == [], self.files


# ---- the four endpoints: how to serve a good answer, a fault, and run -------


class Endpoint:
    """What a fault table row needs from an endpoint."""

    method = "GET"
    path = ""
    refused = errors.PredictError  # the exit of a 403
    exhausted = errors.PredictError  # the exit of retries used up

    def __init__(self, scripted, live_files, pickle_of, moto):
        self.scripted, self.live_files, self.pickle_of, self.moto = scripted, live_files, pickle_of, moto
        self.model = pickle_of(model_zoo.constant)
        self.data = ["--dataset", live_files["features"], "--benchmarks", live_files["benchmarks"]]

    def body(self) -> bytes:
        raise NotImplementedError

    def ok(self):
        return (200, self.body())

    def fault(self, name):
        body = self.body()
        return {"503": (503, b"Service Unavailable"), "429": (429, b"Slow Down", {"Retry-After": "1"}),
                "reset": ("reset", body), "stall": ("stall", body), "short": ("truncate", body),
                "403": (403, s3_error_xml("AccessDenied", "Request has expired")),
                "trickle": ("trickle", body, 0.25)}[name]

    def args(self):
        return ["--model", self.model, *self.data]

    def check_success(self, run):
        pass

    def check_failure(self, run):
        assert not any(f.endswith(".csv") for f in run.files), run.files


class ModelGet(Endpoint):
    path = "/models/round/model.pkl"
    refused = exhausted = errors.ModelFetchError

    def body(self):
        with open(self.model, "rb") as handle:
            return handle.read()

    def args(self):
        url = with_userinfo(presigned_get(self.scripted.url, "models", "round/model.pkl"))
        return ["--model", url, *self.data]

    def check_success(self, run):
        assert "model.pkl" in run.files

    def check_failure(self, run):
        assert run.files == [], run.files


class GraphQL(Endpoint):
    method, path = "POST", "/graphql"
    refused = exhausted = errors.DataFetchError

    def __init__(self, *args):
        super().__init__(*args)
        with open(self.live_files["features"], "rb") as handle:
            self.scripted.route("/datasets/v5.3/live.parquet", (200, handle.read()))
        self.url = presigned_get(self.scripted.url, "datasets", DATASET)
        self.scripted.graphql = {DATASET: self.url}

    def body(self):
        return json.dumps({"data": {"dataset": self.url}}).encode()

    def ok(self):
        return ("graphql",)

    def args(self):
        return ["--model", self.model, "--benchmarks", self.live_files["benchmarks"]]

    def check_success(self, run):
        assert DATASET in run.files

    def check_failure(self, run):
        assert run.files == [], run.files


class DatasetGet(GraphQL):
    method, path = "GET", "/datasets/v5.3/live.parquet"

    def body(self):
        with open(self.live_files["features"], "rb") as handle:
            return handle.read()

    def ok(self):
        return (200, self.body(), {"ETag": '"round-1"'})


class UploadPost(Endpoint):
    method, path = "POST", "/submissions"
    refused, exhausted = errors.UploadRejectedError, errors.UploadFailedError

    def __init__(self, *args):
        super().__init__(*args)
        client, self.scripted.upstream = self.moto
        self.key = f"round/{os.urandom(6).hex()}.csv"
        post = presigner(self.scripted.upstream).generate_presigned_post(
            "submissions", self.key, Fields={"Content-Type": "text/csv"},
            Conditions=[{"Content-Type": "text/csv"}, ["content-length-range", 1, 10_000_000]], ExpiresIn=600)
        self.fields = urllib.parse.urlencode(post["fields"])
        self.secret_fields = [post["fields"]["policy"], post["fields"]["x-amz-signature"]]

    def body(self):
        return b"<PostResponse/>"

    def ok(self):
        return ("forward", "ok")

    def fault(self, name):
        lost = {"reset": "reset", "stall": "stall", "short": "truncate"}
        return ("forward", lost[name]) if name in lost else super().fault(name)

    def args(self):
        return [*super().args(), "--post_url", self.scripted.url + "/submissions", "--post_data", self.fields]

    def landed(self):
        client, _ = self.moto
        return client.get_object(Bucket="submissions", Key=self.key)["Body"].read()

    def check_success(self, run):
        (csv,) = [f for f in run.files if f.endswith(".csv")]
        with open(os.path.join(self.out_dir, csv), "rb") as handle:
            assert self.landed() == handle.read()

    def check_failure(self, run):
        assert len([f for f in run.files if f.endswith(".csv")]) == 1  # the CSV is kept


def arrivals(endpoint):
    """When the endpoint's server saw each of its requests (time.monotonic())."""
    seen = zip(endpoint.scripted.requests, endpoint.scripted.times, strict=True)
    return [t for (method, path, *_), t in seen if method == endpoint.method and path.split("?")[0] == endpoint.path]


ENDPOINTS = {"model-get": ModelGet, "graphql": GraphQL, "dataset-get": DatasetGet, "upload-post": UploadPost}

# fault -> (responses before the good one, attempts seen); "403" is refused at once.
FAULTS = {"503": (3, 4), "429": (1, 2), "reset": (1, 2), "stall": (1, 2), "short": (1, 2), "403": (1, 1)}


@pytest.fixture
def endpoint(request, server, live_files, pickle_of, moto, api, out_dir):
    made = ENDPOINTS[request.param](server, live_files, pickle_of, moto)
    made.out_dir = out_dir
    return made


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("endpoint", list(ENDPOINTS), indirect=True)
def test_fault(capfd, endpoint, fault, out_dir):
    """Transient faults are retried to success; a 403 is refused at once with S3's code and message."""
    before, attempts = FAULTS[fault]
    endpoint.scripted.route(endpoint.path, *[endpoint.fault(fault)] * before, endpoint.ok())
    run = Run(capfd, out_dir, endpoint.args())
    saw = endpoint.scripted.count(endpoint.method, endpoint.path)
    first = endpoint.scripted.times[[p.split("?")[0] for _, p, *_ in endpoint.scripted.requests].index(endpoint.path)]
    assert saw == attempts, run.err
    assert run.ended - first <= BUDGET + SLACK
    run.assert_no_secret()
    run.assert_no_partial_file()
    for secret in getattr(endpoint, "secret_fields", []):
        assert secret not in run.err + run.out + run.report
    if fault == "403":
        assert run.code == endpoint.refused.exit_code, run.err
        assert "HTTP 403 Forbidden (AccessDenied: Request has expired)" in run.err
        endpoint.check_failure(run)
    else:
        assert run.code == 0, run.err
        endpoint.check_success(run)
    if fault == "429":  # the server's Retry-After: 1 was waited for before the second request
        first_request, second = arrivals(endpoint)
        assert second - first_request >= 1.0 - EPSILON, run.err


LASTING = ["503", "stall", "trickle"]


@pytest.mark.parametrize("fault", LASTING)
@pytest.mark.parametrize("endpoint", list(ENDPOINTS), indirect=True)
def test_fault_until_the_deadline(capfd, endpoint, fault, out_dir, monkeypatch):
    """A fault that lasts ends the transfer at its deadline, the attempt in flight included."""
    monkeypatch.setenv("NUMERAI_PREDICT_RETRY_SECONDS", str(SHORT_BUDGET))
    if isinstance(endpoint, UploadPost) and fault == "trickle":
        fault = "stall"  # S3 stored the object each time, and every answer was lost
    endpoint.scripted.route(endpoint.path, endpoint.fault(fault))
    run = Run(capfd, out_dir, endpoint.args())
    first = endpoint.scripted.times[[p.split("?")[0] for _, p, *_ in endpoint.scripted.requests].index(endpoint.path)]
    assert run.code == endpoint.exhausted.exit_code, run.err
    assert run.ended - first <= SHORT_BUDGET + SLACK
    assert f"retry budget {SHORT_BUDGET:g} s" in run.err
    assert endpoint.scripted.count(endpoint.method, endpoint.path) >= 1
    run.assert_no_secret()
    run.assert_no_partial_file()
    endpoint.check_failure(run)
    if isinstance(endpoint, UploadPost) and fault == "stall":  # every retry re-sent the bytes S3 had stored
        (csv,) = [f for f in run.files if f.endswith(".csv")]
        assert endpoint.landed() == (out_dir / csv).read_bytes()


# ---- dataset copies: fresh, reused only when proven unchanged --------------


@pytest.fixture
def moto_dataset(moto, api, live_files):
    """live.parquet in moto's S3, the API handing out its presigned GET."""
    client, url = moto
    key = f"{os.urandom(4).hex()}/{DATASET}"
    with open(live_files["features"], "rb") as handle:
        client.put_object(Bucket="datasets", Key=key, Body=handle.read())
    api.graphql = {DATASET: presigner(url, "testing", "testing").generate_presigned_url(
        "get_object", Params={"Bucket": "datasets", "Key": key}, ExpiresIn=600)}
    return client, key


def other_round(tmp_path):
    """A whole Parquet file of another round."""
    import numerai_data

    path = tmp_path / "other.parquet"
    numerai_data.live_features(seed=7).to_parquet(path)
    return path.read_bytes()


def test_stale_partial_files_are_never_stitched(capfd, moto_dataset, live_files, pickle_of, out_dir, tmp_path):
    """numerapi's leftover .temp and a truncated copy of another round: downloaded afresh, whole."""
    other = other_round(tmp_path)
    (out_dir / "v5.3").mkdir()
    (out_dir / "v5.3" / "live.parquet.temp").write_bytes(other[: len(other) // 2])
    (out_dir / "v5.3" / "live.parquet").write_bytes(other[: len(other) // 2])
    run = Run(capfd, out_dir, ["--model", pickle_of(model_zoo.constant), "--benchmarks", live_files["benchmarks"]])
    assert run.code == 0, run.err
    assert (out_dir / DATASET).read_bytes() == open(live_files["features"], "rb").read()
    assert "Reusing" not in run.err
    run.assert_no_secret()


def test_default_is_v5_3_and_older_versions_are_still_accepted(capfd, moto, api, live_files, pickle_of, out_dir):
    """Without --dataset, Numerai's API is asked for v5.3 (numerai-predict's default since July 2026);
    --dataset v5.2/live.parquet still asks for and downloads v5.2."""
    client, url = moto
    with open(live_files["features"], "rb") as handle:
        features = handle.read()
    graphql = {}
    for name in ("v5.3/live.parquet", "v5.2/live.parquet"):
        key = f"{os.urandom(4).hex()}/{name}"
        client.put_object(Bucket="datasets", Key=key, Body=features)
        graphql[name] = presigner(url, "testing", "testing").generate_presigned_url(
            "get_object", Params={"Bucket": "datasets", "Key": key}, ExpiresIn=600)
    api.graphql = {"v5.3/live.parquet": graphql["v5.3/live.parquet"]}  # only the default is served
    default = Run(capfd, out_dir, ["--model", pickle_of(model_zoo.constant), "--benchmarks", live_files["benchmarks"]])
    assert default.code == 0, default.err
    assert "v5.3/live.parquet" in default.files and "v5.2/live.parquet" not in default.files
    api.graphql = {"v5.2/live.parquet": graphql["v5.2/live.parquet"]}
    older = Run(capfd, out_dir, ["--model", pickle_of(model_zoo.constant), "--dataset", "v5.2/live.parquet",
                                 "--benchmarks", live_files["benchmarks"]])
    assert older.code == 0, older.err
    assert (out_dir / "v5.2" / "live.parquet").read_bytes() == features


def test_copy_reused_only_while_unchanged(capfd, moto_dataset, live_files, pickle_of, out_dir, tmp_path):
    """A second run reuses the copy on S3's 304; a new round's object is downloaded again."""
    client, key = moto_dataset
    args = ["--model", pickle_of(model_zoo.constant), "--benchmarks", live_files["benchmarks"]]
    first = Run(capfd, out_dir, args)
    assert first.code == 0, first.err
    record = json.loads((out_dir / (DATASET + ".source.json")).read_text())
    assert record["etag"] and record["size"] == len(open(live_files["features"], "rb").read())
    assert "?" not in record["url"] and record["url"].endswith(key)
    second = Run(capfd, out_dir, args)
    assert second.code == 0, second.err
    assert "Reusing" in second.err and "unchanged on the server" in second.err
    other = other_round(tmp_path)
    client.put_object(Bucket="datasets", Key=key, Body=other)
    third = Run(capfd, out_dir, args)
    assert third.code == 0, third.err
    assert "Reusing" not in third.err and (out_dir / DATASET).read_bytes() == other
    assert json.loads((out_dir / (DATASET + ".source.json")).read_text())["etag"] != record["etag"]


def test_the_copy_is_checked_by_its_etag_alone(capfd, api, live_files, pickle_of, out_dir, tmp_path):
    """The conditional GET names the ETag, never a date: a new round's object written within the same
    second as the copy's would look unmodified to a server that judges by If-Modified-Since."""
    with open(live_files["features"], "rb") as handle:
        first = handle.read()
    path = "/datasets/v5.3/live.parquet"
    dated = {"Last-Modified": "Mon, 07 Dec 2026 10:00:00 GMT"}
    url = api.route(path, (200, first, {"ETag": '"one"', **dated}),
                    (200, other_round(tmp_path), {"ETag": '"two"', **dated}))
    api.graphql = {DATASET: url}
    args = ["--model", pickle_of(model_zoo.constant), "--benchmarks", live_files["benchmarks"]]
    assert Run(capfd, out_dir, args).code == 0
    second = Run(capfd, out_dir, args)
    assert second.code == 0, second.err
    fresh, conditional = [h for method, p, h, _ in api.requests if method == "GET" and p.startswith(path)]
    assert "If-None-Match" not in fresh
    assert conditional.get("If-None-Match") == '"one"' and "If-Modified-Since" not in conditional
    assert (out_dir / DATASET).read_bytes() == other_round(tmp_path)


def test_copy_without_matching_record_is_downloaded_again(capfd, moto_dataset, live_files, pickle_of, out_dir,
                                                          tmp_path):
    """A sidecar that does not describe the file beside it (wrong size) proves nothing."""
    args = ["--model", pickle_of(model_zoo.constant), "--benchmarks", live_files["benchmarks"]]
    assert Run(capfd, out_dir, args).code == 0
    other = other_round(tmp_path)
    (out_dir / DATASET).write_bytes(other)  # e.g. copied over by hand
    run = Run(capfd, out_dir, args)
    assert run.code == 0, run.err
    assert "Reusing" not in run.err
    assert (out_dir / DATASET).read_bytes() == open(live_files["features"], "rb").read()


def test_download_that_is_not_parquet_is_refused(capfd, api, live_files, pickle_of, out_dir):
    """A 200 with an HTML page instead of the dataset (a presigned URL): exit 22, nothing left behind,
    no credential in any output."""
    api.graphql = {DATASET: presigned_get(api.url, "datasets", DATASET)}
    api.route("/datasets/v5.3/live.parquet", (200, b"<html>captive portal</html>"))
    run = Run(capfd, out_dir, ["--model", pickle_of(model_zoo.constant), "--benchmarks", live_files["benchmarks"]])
    assert run.code == errors.DataUnreadableError.exit_code, run.err
    assert "is not a Parquet file (no PAR1 magic at both ends)" in run.err
    assert "/datasets/v5.3/live.parquet" in run.err
    assert run.files == []
    run.assert_no_secret()


def test_not_parquet_error_names_the_url_without_its_query(server, out_dir):
    """The exit-22 error itself (before any log filter or report scrub) holds no query string."""
    from numerai_predict.data import download_dataset

    server.route("/datasets/v5.3/live.parquet", (200, b"<html>captive portal</html>"))
    url = presigned_get(server.url, "datasets", DATASET)
    with pytest.raises(errors.DataUnreadableError) as raised:
        download_dataset(url, str(out_dir / "live.parquet"), "--dataset v5.3/live.parquet")
    message = raised.value.one_line()
    assert "/datasets/v5.3/live.parquet" in message
    assert "?" not in message and not any(secret.lower() in message.lower() for secret in SECRETS), message


def test_a_failed_download_leaves_no_empty_folder(capfd, api, live_files, pickle_of, out_dir):
    """The folders made for a dataset (v5.3/) go again when its download fails."""
    api.graphql = {DATASET: "/datasets/v5.3/live.parquet"}
    api.route("/datasets/v5.3/live.parquet", (403, s3_error_xml("AccessDenied", "Request has expired")))
    run = Run(capfd, out_dir, ["--model", pickle_of(model_zoo.constant), "--benchmarks", live_files["benchmarks"]])
    assert run.code == errors.DataFetchError.exit_code, run.err
    assert "numerapi list-datasets" in run.err
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("endpoint", list(ENDPOINTS), indirect=True)
def test_retry_after_beyond_the_deadline_ends_at_once(capfd, endpoint, out_dir, monkeypatch):
    """A Retry-After longer than the time left is not waited for: the transfer ends at once, saying why."""
    monkeypatch.setenv("NUMERAI_PREDICT_RETRY_SECONDS", str(SHORT_BUDGET))
    endpoint.scripted.route(endpoint.path, (429, b"Slow Down", {"Retry-After": "100"}))
    run = Run(capfd, out_dir, endpoint.args())
    (first,) = arrivals(endpoint)
    assert run.code == endpoint.exhausted.exit_code, run.err
    assert run.ended - first < SHORT_BUDGET / 2, run.err  # well before the deadline, let alone 100 s
    assert "Retry-After 100 s" in run.err and "beyond the retry budget" in run.err, run.err
    run.assert_no_secret()
    run.assert_no_partial_file()
    endpoint.check_failure(run)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS), indirect=True)
def test_read_timeout_shrinks_to_the_time_left(capfd, endpoint, out_dir, monkeypatch):
    """A server that never answers (not even headers, so no body watchdog runs): the attempt's read
    timeout is cut to what is left of the budget, not the configured 30 s."""
    monkeypatch.setenv("NUMERAI_PREDICT_RETRY_SECONDS", "2")
    monkeypatch.setenv("NUMERAI_PREDICT_READ_TIMEOUT", "30")
    endpoint.scripted.route(endpoint.path, ("hang",))
    run = Run(capfd, out_dir, endpoint.args())
    (first,) = arrivals(endpoint)
    assert run.code == endpoint.exhausted.exit_code, run.err
    assert run.ended - first <= 2 + SLACK, run.err
    assert "no response within the read timeout" in run.err or "read timeout" in run.err, run.err
    run.assert_no_secret()
    run.assert_no_partial_file()
    endpoint.check_failure(run)


# ---- TLS: always verified ---------------------------------------------------


@pytest.fixture
def tls_server(tmp_path):
    """A file server on https://127.0.0.1 whose certificate no CA vouches for (self-signed)."""
    pytest.importorskip("cryptography")
    httpd = ScriptedServer(tls=self_signed_certificate(str(tmp_path)))
    yield httpd
    httpd.close()


def test_model_download_refuses_an_unverified_certificate(capfd, tls_server, live_files, pickle_of, out_dir):
    """TLS verification is never off: a self-signed server is refused at once, exit 10, naming the certificate."""
    with open(pickle_of(model_zoo.constant), "rb") as handle:
        tls_server.route("/models/model.pkl", (200, handle.read()))
    url = with_userinfo(presigned_get(tls_server.url, "models", "model.pkl"))
    assert url.startswith("https://")
    run = Run(capfd, out_dir, ["--model", url, "--dataset", live_files["features"],
                               "--benchmarks", live_files["benchmarks"]])
    assert run.code == errors.ModelFetchError.exit_code, run.err
    assert "failed: TLS error: certificate verify failed: self-signed certificate" in run.err, run.err
    assert "kept failing" not in run.err  # not retried: a certificate does not change within the budget
    assert tls_server.requests == []  # no request went over the unverified connection
    assert run.files == []
    run.assert_no_secret()


def test_dataset_download_refuses_an_unverified_certificate(capfd, api, tls_server, live_files, pickle_of, out_dir):
    """The dataset GET the same way: exit 21, naming the certificate, nothing kept."""
    with open(live_files["features"], "rb") as handle:
        tls_server.route("/datasets/v5.3/live.parquet", (200, handle.read()))
    api.graphql = {DATASET: presigned_get(tls_server.url, "datasets", DATASET)}
    run = Run(capfd, out_dir, ["--model", pickle_of(model_zoo.constant), "--benchmarks", live_files["benchmarks"]])
    assert run.code == errors.DataFetchError.exit_code, run.err
    assert "certificate verify failed" in run.err, run.err
    assert tls_server.requests == []
    assert run.files == []
    run.assert_no_secret()


# ---- the upload carries the validated bytes, whatever happens to the file ---


def test_upload_sends_the_validated_bytes_not_the_file_on_disk(capfd, moto, live_files, pickle_of, out_dir,
                                                              monkeypatch):
    """The CSV is changed on disk right after it was written: S3 still receives the validated bytes."""
    client, url = moto
    key = f"round/{os.urandom(6).hex()}.csv"
    post = presigner(url).generate_presigned_post("submissions", key, Fields={"Content-Type": "text/csv"},
                                                  Conditions=[{"Content-Type": "text/csv"}], ExpiresIn=600)
    written = []
    original = pipeline.write_csv

    def write_then_tamper(payload, output_dir):
        path = original(payload, output_dir)
        written.append(payload)
        with open(path, "w") as handle:  # what a surviving process of the model could do
            handle.write("id,prediction\nbogus,7\n")
        return path

    monkeypatch.setattr(pipeline, "write_csv", write_then_tamper)
    run = Run(capfd, out_dir, ["--model", pickle_of(model_zoo.constant), "--dataset", live_files["features"],
                               "--benchmarks", live_files["benchmarks"], "--post_url", post["url"],
                               "--post_data", urllib.parse.urlencode(post["fields"])])
    assert run.code == 0, run.err
    (validated,) = written
    landed = client.get_object(Bucket="submissions", Key=key)["Body"].read()
    assert landed == validated and b"bogus" not in landed
    assert landed.count(b"\n") == len(live_files["ids"]) + 1
    for tampered in out_dir.glob("*.csv"):  # this test's own tampering, not the runner's output
        tampered.unlink()
