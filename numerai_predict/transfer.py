"""HTTP transfers: model and dataset downloads, Numerai's GraphQL call and the upload.

One retry policy for all of them: transient failures (connection errors and
resets, timeouts, truncated bodies, 5xx, 429) are retried by tenacity with
exponential backoff and jitter, honouring Retry-After; anything else fails at
once, naming the cause (HTTP status, with S3's Code and Message when the body
has them). Each transfer has a hard deadline, the retry budget: every
attempt's connect and read timeouts shrink to the time left, and a body still
arriving at the deadline is cut (a watchdog shuts the socket down), so a
transfer never outlives its budget. Downloads land atomically: a temporary
file beside the destination, fsynced, checked, then renamed; nothing partial
is ever left behind. Every URL in a message is redacted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import logging
import os
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar

import requests
import tenacity

from numerai_predict.errors import PredictError, UploadFailedError, UploadRejectedError, UsageError, WriteError
from numerai_predict.redact import redact, scrub

log = logging.getLogger("numerai_predict")

CHUNK = 1 << 16
RETRY_BUDGET_ENV = "NUMERAI_PREDICT_RETRY_SECONDS"
CONNECT_TIMEOUT_ENV = "NUMERAI_PREDICT_CONNECT_TIMEOUT"
READ_TIMEOUT_ENV = "NUMERAI_PREDICT_READ_TIMEOUT"
MIN_ATTEMPT = 0.05  # seconds: with less time left no attempt is started
ERROR_BODY_LIMIT = 1 << 16  # bytes of an error response read for its message
T = TypeVar("T")


class TransientError(Exception):
    """A failure worth retrying; ``retry_after`` is the server's wish in seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    """Per transfer: the whole budget (attempts, waits and the attempt in flight) and each attempt's timeouts.

    40 s per transfer keeps the worst case of all six transfers of a run
    (model, 2 x GraphQL, 2 x dataset, upload) at 240 s, leaving 6 of
    Numerai's 10 minutes to load and run the model.
    """

    budget_seconds: float = 40.0
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    max_attempts: int = 8
    first_wait: float = 0.5
    max_wait: float = 10.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """The defaults, or the budget and timeouts set in the environment."""
        policy = cls()
        budget, connect, read = (seconds_from_env(name) for name in (
            RETRY_BUDGET_ENV, CONNECT_TIMEOUT_ENV, READ_TIMEOUT_ENV))
        return dataclasses.replace(policy, budget_seconds=budget or policy.budget_seconds,
                                   connect_timeout=connect or policy.connect_timeout,
                                   read_timeout=read or policy.read_timeout)


def seconds_from_env(name: str) -> float | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise UsageError(f"{name} must be a positive number of seconds, got {text!r}")
    return value


class Deadline:
    """The hard end of one transfer, from which every attempt's timeouts are cut."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy
        self.start = time.monotonic()
        self.end = self.start + policy.budget_seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def timeouts(self) -> tuple[float, float]:
        """(connect, read) timeouts of the next attempt: the policy's, or what is left."""
        left = self.left()
        if left < MIN_ATTEMPT:
            raise TransientError("no time left for another attempt")
        return min(self.policy.connect_timeout, left), min(self.policy.read_timeout, left)


@dataclass
class Transfer:
    """One transfer: its label for messages (URL redacted), its error type and its deadline."""

    label: str
    error: type[PredictError]  # a refusal (4xx other than 429, a check that failed)
    policy: RetryPolicy = field(default_factory=RetryPolicy.from_env)
    exhausted: type[PredictError] | None = None  # retries used up, if not ``error``

    def __post_init__(self) -> None:
        self.label = scrub(self.label)
        self.deadline = Deadline(self.policy)

    def fail(self, cause: str, error: type[PredictError] | None = None, verb: str = "failed") -> PredictError:
        return (error or self.error)(f"{self.label} {verb}: {scrub(cause)}")

    def run(self, attempt: Callable[[], T]) -> T:
        """``attempt`` under the retry policy; exhausted retries become ``self.error``."""
        retryer = retrying(self.deadline, self.label)
        try:
            return retryer(attempt)
        except TransientError as exc:
            attempts = retryer.statistics.get("attempt_number", 1)
            left = self.deadline.left()
            if exc.retry_after is not None and left - exc.retry_after < MIN_ATTEMPT:  # the wait would not fit
                exc = TransientError(f"{exc}, beyond the retry budget ({max(0.0, left):.1f} s left): not waited for")
            raise self.fail(f"{exc} ({attempts} attempt{'s' if attempts > 1 else ''} in "
                            f"{self.deadline.elapsed():.1f} s, retry budget {self.policy.budget_seconds:g} s "
                            f"set by {RETRY_BUDGET_ENV})", self.exhausted, "kept failing") from None


def retrying(deadline: Deadline, what: str) -> tenacity.Retrying:
    """The one retry loop used for every transfer: it stops when the next try would not fit the deadline."""
    policy = deadline.policy
    jitter = tenacity.wait_random_exponential(multiplier=policy.first_wait, max=policy.max_wait)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = failure(state)
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return exc.retry_after  # as the server asked; stop() gives up if it does not fit
        return min(jitter(state), max(0.0, deadline.left() / 2))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        log.warning("%s failed (%s); retry %d in %.1fs", what, failure(state),
                    state.attempt_number, state.upcoming_sleep)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientError),
        wait=wait,
        stop=tenacity.stop_after_attempt(policy.max_attempts) | OutOfTime(deadline),
        before_sleep=before_sleep,
        reraise=True,
    )


class OutOfTime(tenacity.stop.stop_base):
    """Stop when the next attempt, after its wait, would start too close to the deadline."""

    def __init__(self, deadline: Deadline):
        self.deadline = deadline

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        return self.deadline.left() - state.upcoming_sleep < MIN_ATTEMPT


def failure(state: tenacity.RetryCallState) -> BaseException | None:
    """The exception of the attempt that just ended (None before the first one ends)."""
    return state.outcome.exception() if state.outcome else None


# ---- what went wrong, in words ---------------------------------------------


def retry_after_seconds(response: requests.Response) -> float | None:
    """Retry-After as seconds (a number or an HTTP date), or None."""
    value = response.headers.get("Retry-After", "").strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def s3_error(body: bytes) -> str:
    """S3's error code and message from an XML body, or ''."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return ""
    code, message = root.findtext("Code"), root.findtext("Message")
    return f"{code}: {message}" if code or message else ""


def status_cause(response: requests.Response, body: bytes) -> str:
    """``HTTP 403 Forbidden (AccessDenied: Request has expired)``, or the start of a non-XML body."""
    detail = s3_error(body) or body[:200].decode("utf-8", "replace").replace("\n", " ").strip()
    cause = f"HTTP {response.status_code} {response.reason or ''}".rstrip()
    return f"{cause} ({detail})" if detail else cause


def request_cause(exc: requests.RequestException) -> str:
    """A requests failure in a few words: its kind and the operating system's reason."""
    kinds: list[tuple[type[requests.RequestException], str]] = [
        (requests.ConnectTimeout, "no connection within the connect timeout"),
        (requests.ReadTimeout, "no response within the read timeout"),
        (requests.exceptions.ChunkedEncodingError, "connection broken mid-body"),
        (requests.exceptions.SSLError, "TLS error"),
        (requests.ConnectionError, "connection failed"),
    ]
    kind = next((text for cls, text in kinds if isinstance(exc, cls)), type(exc).__name__)
    text = str(exc)
    certificate = re.search(r"certificate verify failed: ([^'\"(]+)", text)
    if certificate:  # the one reason that matters, past the pool's preamble
        return scrub(f"{kind}: certificate verify failed: {certificate.group(1).strip()}")
    if "Read timed out" in text:  # also what a body read past the read timeout raises
        return "no data within the read timeout"
    reason = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)|(Read timed out|Connection reset by peer|"
                        r"Connection aborted|IncompleteRead\(\d+ bytes read, \d+ more expected\)|"
                        r"Response ended prematurely|Remote end closed connection without response)", text)
    words = [a or b.replace("IncompleteRead(", "short body (") for a, b in reason]
    return scrub(f"{kind}: {words[-1]}" if words else f"{kind}: {text[:200]}")


# ---- receiving a body under the deadline -----------------------------------


class Watchdog:
    """Shuts a response's socket down at the deadline: a body trickling in never outlives the budget."""

    def __init__(self, response: requests.Response, deadline: Deadline):
        self.sock = socket_of(response)
        self.fired = False
        self.timer = threading.Timer(max(0.0, deadline.left()), self.cut)
        self.timer.daemon = True

    def __enter__(self) -> Watchdog:
        self.timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.timer.cancel()

    def cut(self) -> None:
        self.fired = True
        if self.sock is not None:  # the plain socket's shutdown: it wakes a blocked read, TLS or not
            with contextlib.suppress(OSError, ValueError):
                socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


def socket_of(response: requests.Response) -> socket.socket | None:
    """The socket a response's body is read from (urllib3's connection, or http.client's file once closed)."""
    connection = getattr(response.raw, "connection", None) or getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None:  # http.client let go of a connection that closes after this response
        reader = getattr(getattr(response.raw, "_fp", None), "fp", None)
        sock = getattr(getattr(reader, "raw", None), "_sock", None)
    if sock is None:
        log.debug("no socket to cut at the deadline; the read timeout bounds each read")
    return sock if isinstance(sock, socket.socket) else None


def receive(response: requests.Response, deadline: Deadline, sink: Callable[[bytes], object],
            limit: int | None = None) -> int:
    """Feed the body to ``sink`` until its end (or ``limit`` bytes); returns the bytes received.

    A body cut short (by the server, a reset, the read timeout or the
    deadline) raises TransientError.
    """
    expected = response.headers.get("Content-Length", "")
    got = 0
    with Watchdog(response, deadline) as watchdog:
        try:
            for chunk in response.iter_content(CHUNK):
                sink(chunk)
                got += len(chunk)
                if limit is not None and got >= limit:
                    return got
        except requests.RequestException as exc:
            if watchdog.fired:
                raise TransientError(f"body still incomplete at the deadline ({got} bytes received)") from None
            raise TransientError(request_cause(exc)) from None
    if watchdog.fired:
        raise TransientError(f"body still incomplete at the deadline ({got} bytes received)")
    on_wire = response.raw.tell() if hasattr(response.raw, "tell") else got
    if expected.isdigit() and on_wire < int(expected):
        raise TransientError(f"short body: {on_wire} of {expected} bytes")
    return got


def check_status(response: requests.Response, transfer: Transfer, ok: tuple[int, ...] = (200,)) -> None:
    """Return for an expected status; raise TransientError (5xx, 429) or the transfer's error (any other)."""
    if response.status_code in ok:
        return
    body = bytearray()
    with contextlib.suppress(TransientError):
        receive(response, transfer.deadline, body.extend, ERROR_BODY_LIMIT)
    cause = status_cause(response, bytes(body))
    if response.status_code == 429 or response.status_code >= 500:
        retry_after = retry_after_seconds(response)
        raise TransientError(cause + (f", Retry-After {retry_after:g} s" if retry_after is not None else ""),
                             retry_after)
    raise transfer.fail(cause)


@contextlib.contextmanager
def attempt_request(method: str, url: str, transfer: Transfer, **kwargs: Any) -> Iterator[requests.Response]:
    """One HTTP request with the deadline's timeouts; its failures as TransientError."""
    try:
        with requests.request(method, url, stream=True, timeout=transfer.deadline.timeouts(), **kwargs) as response:
            yield response
    except requests.exceptions.SSLError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):  # a refusal: the certificate will not change by retrying
            raise transfer.fail(request_cause(exc)) from None
        raise TransientError(request_cause(exc)) from None
    except requests.RequestException as exc:
        raise TransientError(request_cause(exc)) from None


# ---- downloads --------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """What identifies a downloaded file: recorded beside it to prove a later copy unchanged."""

    url: str  # redacted: scheme, host and path, never the query
    etag: str | None
    size: int
    last_modified: str | None


def download(url: str, dest: str, transfer: Transfer, check: Callable[[str], None] | None = None,
             known: Source | None = None) -> Source | None:
    """Download ``url`` to ``dest`` atomically; returns its Source, or None when ``known`` is proven unchanged.

    ``known`` (the Source of the copy already at ``dest``) makes the GET
    conditional on its ETag: only a 304 keeps the copy. ``check`` inspects the
    complete temporary file before it replaces ``dest``.
    """
    known_etag = known.etag if known else None
    # The ETag alone: with If-Modified-Since too, a server that judges by date (moto does; S3
    # documents no precedence for this case) answers 304 to a new object written within the
    # same second as the copy's, and the new round would be refused or, worse, never fetched.
    conditional = {"If-None-Match": known_etag} if known_etag else {}

    def attempt() -> Source | None:
        with attempt_request("GET", url, transfer, headers=conditional) as response:
            if known_etag and response.status_code == 304 and response.headers.get("ETag", known_etag) == known_etag:
                return None
            check_status(response, transfer)
            size = receive_file(response, transfer, dest, check)
            return Source(redact(url), response.headers.get("ETag"), size, response.headers.get("Last-Modified"))

    log.info("Downloading %s to %s", redact(url), dest)
    return transfer.run(attempt)


def receive_file(response: requests.Response, transfer: Transfer, dest: str,
                 check: Callable[[str], None] | None) -> int:
    """The body into a temporary file beside ``dest``, fsynced, checked, then renamed over ``dest``."""
    from tqdm import tqdm  # numerapi's dependency; shows progress on a terminal only

    from numerai_predict.files import atomic_file

    total = int(response.headers.get("Content-Length") or 0) or None
    try:
        with atomic_file(dest, check=check) as out, tqdm(total=total, unit="B", unit_scale=True,
                                                          desc=os.path.basename(dest), disable=None) as bar:
            return receive(response, transfer.deadline, lambda chunk: (out.write(chunk), bar.update(len(chunk))))
    except OSError as exc:
        raise WriteError(f"could not write {dest}: {exc.strerror or exc}") from None


def download_model(url: str, output_dir: str) -> str:
    """The model pickle at ``url``, downloaded into ``output_dir``; returns its path."""
    from numerai_predict.errors import ModelFetchError

    name = os.path.basename(redact(url).rstrip("/"))
    dest = os.path.join(output_dir, name if name not in ("", ".", "..") else "model.pkl")
    download(url, dest, Transfer(f"model download from {redact(url)}", ModelFetchError))
    return dest


# ---- small requests: GraphQL ------------------------------------------------


def post_json(url: str, body: dict[str, Any], transfer: Transfer) -> Any:
    """POST a JSON body and return the JSON answer, under the transfer's policy."""
    def attempt() -> Any:
        with attempt_request("POST", url, transfer, json=body, headers={"Accept": "application/json"}) as response:
            check_status(response, transfer)
            content = bytearray()
            receive(response, transfer.deadline, content.extend)
        try:
            import json

            return json.loads(bytes(content))
        except ValueError:
            raise transfer.fail(f"the answer is not JSON: {bytes(content[:200])!r}") from None

    return transfer.run(attempt)


# ---- the upload -------------------------------------------------------------


def upload(data: bytes, filename: str, post_url: str, fields: dict[str, str],
           policy: RetryPolicy | None = None) -> None:
    """POST ``data`` (the validated CSV's bytes, held in memory) with the presigned fields.

    Every attempt sends these very bytes, so a retry after a lost response
    re-sends exactly what S3 may already have stored.
    """
    transfer = Transfer(f"upload to {redact(post_url)}", UploadRejectedError, policy or RetryPolicy.from_env(),
                        exhausted=UploadFailedError)
    log.info("Uploading predictions to %s", redact(post_url))

    def attempt() -> None:
        files: dict[str, tuple[str, bytes | BinaryIO, str]] = {"file": (filename, data, "text/csv")}
        with attempt_request("POST", post_url, transfer, data=fields, files=files) as response:
            check_status(response, transfer, ok=(200, 201, 204))
            receive(response, transfer.deadline, lambda chunk: None, ERROR_BODY_LIMIT)

    transfer.run(attempt)
    log.info("Upload complete")
