"""HTTP transfers: the model download and the predictions upload, with one retry policy.

Transient failures (connection errors, timeouts, truncated bodies, 5xx, 429)
are retried by tenacity with exponential backoff and jitter, honouring
Retry-After, within a total time budget; anything else fails at once.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import requests
import tenacity

from numerai_predict.cli import redact
from numerai_predict.errors import ModelFetchError, UploadFailedError, UploadRejectedError

log = logging.getLogger("numerai_predict")

CHUNK = 1 << 20
CONNECT_TIMEOUT, READ_TIMEOUT = 10, 120
RETRY_BUDGET_ENV = "NUMERAI_PREDICT_RETRY_SECONDS"


class TransientError(Exception):
    """A failure worth retrying; ``retry_after`` is the server's wish in seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    budget_seconds: float = 240.0  # well inside Numerai's 10-minute run limit
    max_attempts: int = 8
    first_wait: float = 0.5
    max_wait: float = 30.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        budget = os.environ.get(RETRY_BUDGET_ENV)
        return cls(budget_seconds=float(budget)) if budget else cls()


def retrying(policy: RetryPolicy, what: str) -> tenacity.Retrying:
    """The one retry loop used for every transfer."""
    jitter = tenacity.wait_random_exponential(multiplier=policy.first_wait, max=policy.max_wait)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = failure(state)
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(exc.retry_after, policy.max_wait)
        return jitter(state)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        log.warning("%s failed (%s); retry %d in %.1fs", what, failure(state),
                    state.attempt_number, state.upcoming_sleep)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientError),
        wait=wait,
        stop=tenacity.stop_after_attempt(policy.max_attempts) | tenacity.stop_after_delay(policy.budget_seconds),
        before_sleep=before_sleep,
        reraise=True,
    )


def failure(state: tenacity.RetryCallState) -> BaseException | None:
    """The exception of the attempt that just ended (None before the first one ends)."""
    return state.outcome.exception() if state.outcome else None


def scrub(text: str) -> str:
    """Remove query strings (credentials of presigned URLs) from any message."""
    return re.sub(r"\?[^\s'\")]*", "?<redacted>", text)


def retry_after_seconds(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.strip().isdigit() else None


def raise_if_transient(response: requests.Response) -> None:
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(f"HTTP {response.status_code}", retry_after_seconds(response))


def download(url: str, output_dir: str, policy: RetryPolicy | None = None) -> str:
    """Stream ``url`` into ``output_dir`` (atomically) and return the file's path."""
    name = os.path.basename(redact(url).rstrip("/")) or "model.pkl"
    dest = os.path.join(output_dir, name)
    log.info("Downloading model %s", redact(url))
    try:
        for attempt in retrying(policy or RetryPolicy.from_env(), "model download"):
            with attempt:
                download_once(url, dest)
    except TransientError as exc:
        raise ModelFetchError(f"model download from {redact(url)} kept failing: {exc}") from None
    return dest


def download_once(url: str, dest: str) -> None:
    try:
        with requests.get(url, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)) as response:
            raise_if_transient(response)
            if response.status_code != 200:
                raise ModelFetchError(
                    f"model download from {redact(url)} failed: HTTP {response.status_code} {response.reason}")
            expected = response.headers.get("Content-Length")
            got = stream_to_file(response, dest)
    except requests.RequestException as exc:
        raise TransientError(scrub(f"{type(exc).__name__}: {exc}")) from None
    if expected is not None and got != int(expected):
        os.remove(dest)
        raise TransientError(f"truncated body: got {got} of {expected} bytes")


def stream_to_file(response: requests.Response, dest: str) -> int:
    """Write the body to ``dest`` through a temporary file; returns the byte count."""
    from tqdm import tqdm  # numerapi's dependency; shows progress on a terminal only

    total = int(response.headers.get("Content-Length") or 0) or None
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".download-")
    try:
        with os.fdopen(fd, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                               desc=os.path.basename(dest), disable=None) as bar:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
            size = out.tell()
        os.replace(tmp, dest)
        return size
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def upload(csv_path: str, post_url: str, fields: dict[str, str], policy: RetryPolicy | None = None) -> None:
    """POST the CSV with the presigned fields; the file is re-read on every try."""
    log.info("Uploading predictions to %s", redact(post_url))
    try:
        for attempt in retrying(policy or RetryPolicy.from_env(), "upload"):
            with attempt:
                upload_once(csv_path, post_url, fields)
    except TransientError as exc:
        raise UploadFailedError(f"upload to {redact(post_url)} kept failing: {exc}") from None
    log.info("Upload complete")


def upload_once(csv_path: str, post_url: str, fields: dict[str, str]) -> None:
    try:
        with open(csv_path, "rb") as handle:
            files = {"file": (os.path.basename(csv_path), handle, "text/csv")}
            response = requests.post(post_url, data=fields, files=files,
                                     timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    except requests.RequestException as exc:
        raise TransientError(scrub(f"{type(exc).__name__}: {exc}")) from None
    raise_if_transient(response)
    if response.status_code not in (200, 201, 204):
        raise UploadRejectedError(f"upload refused: HTTP {response.status_code} {s3_error(response)}")


def s3_error(response: requests.Response) -> str:
    """S3's error code and message from its XML body, or the start of the body."""
    try:
        root = ET.fromstring(response.content)
        code, message = root.findtext("Code"), root.findtext("Message")
        if code or message:
            return f"{code}: {message}"
    except ET.ParseError:
        pass
    return scrub(response.text[:200].replace("\n", " "))
