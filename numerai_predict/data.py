"""Live data: a local Parquet file, or a Numerai dataset downloaded under the transfer policy.

numerapi supplies only what names the dataset (its GraphQL endpoint and
tournament); the URL is asked for and the file downloaded by
numerai_predict.transfer, with timeouts, retries and a deadline. numerapi's
own download_dataset is never used: it leaves ``<dest>.temp`` behind and
resumes it later with TLS verification off, stitching two rounds together.

A copy already in --output_dir is reused only when it is provably the file
the API points at now: its sidecar ``<dest>.source.json`` records the URL
(without query), ETag, size and Last-Modified it was downloaded with, and the
download is a GET conditional on that ETag; only a 304 keeps the copy.
Without a sidecar, or with one that does not match the file, it is
downloaded again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict
from typing import TYPE_CHECKING

from numerai_predict.errors import DataFetchError, DatasetMissingError, WriteError
from numerai_predict.parquet import check_parquet, has_parquet_magic

if TYPE_CHECKING:  # annotations only: pandas and requests are imported where they are used
    from numerai_predict.transfer import Source

log = logging.getLogger("numerai_predict")

DATASET_QUERY = """query ($filename: String! $round: Int $tournament: Int) {
    dataset(filename: $filename round: $round tournament: $tournament)
}"""


def fetch_dataset(name: str, output_dir: str, flag: str = "--dataset") -> str:
    """Path of a local copy of ``name``; an absolute path must exist, never downloads."""
    if os.path.isfile(name):
        log.info("Using local %s %s", flag, name)
        return name
    if os.path.isabs(name) or os.path.exists(name):
        raise DatasetMissingError(f"{flag} {name} is not an existing file")
    dest = os.path.join(output_dir, name)
    url = dataset_url(name, flag)
    created = missing_folders(os.path.dirname(dest))
    try:
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
        except OSError as exc:
            raise WriteError(f"could not create the folder of {dest}: {exc.strerror or exc}") from None
        download_dataset(url, dest, f"{flag} {name}")
    except BaseException:
        for folder in created:  # a failed download leaves no empty v5.3/ behind
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise
    return dest


def missing_folders(folder: str) -> list[str]:
    """The folders os.makedirs(folder) would create, deepest first."""
    missing = []
    while folder and not os.path.exists(folder) and os.path.dirname(folder) != folder:
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def dataset_url(name: str, flag: str) -> str:
    """The dataset's download URL, from Numerai's GraphQL API (numerapi's endpoint and query)."""
    import numerapi.base_api
    from numerapi import NumerAPI

    from numerai_predict.transfer import Transfer, post_json

    endpoint = numerapi.base_api.API_TOURNAMENT_URL
    tournament = NumerAPI(verbosity="warning").tournament_id
    transfer = Transfer(f"could not download {flag} {name}: Numerai's API at {endpoint}", DataFetchError)
    log.info("Asking Numerai's API for the URL of %s %s", flag, name)
    answer = post_json(endpoint, {"query": DATASET_QUERY, "variables": {
        "filename": name, "round": None, "tournament": tournament}}, transfer)
    if isinstance(answer, dict) and answer.get("errors"):
        messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in answer["errors"])
        raise transfer.fail(f"it answered: {messages}")
    url = (answer.get("data") or {}).get("dataset") if isinstance(answer, dict) else None
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise transfer.fail("it gave no download URL")
    return url


def download_dataset(url: str, dest: str, what: str) -> None:
    """Download ``url`` to ``dest`` unless the copy there is proven unchanged; check it is Parquet."""
    from numerai_predict.redact import redact
    from numerai_predict.transfer import Transfer, download

    known = known_copy(dest, url)
    with contextlib.suppress(FileNotFoundError):
        os.remove(sidecar(dest))  # until the file is settled: a record never describes another file
    label = f"{what} download from {redact(url)}"
    source = download(url, dest, Transfer(label, DataFetchError), known=known,
                      check=lambda path: check_parquet(path, f"{what} from {redact(url)}"))
    if source is None and known is not None:
        check_parquet(dest, f"the copy of {what} in {dest}")
        log.info("Reusing %s: unchanged on the server (ETag %s)", dest, known.etag)
        source = known
    if source is not None:
        write_sidecar(dest, source)


def sidecar(dest: str) -> str:
    return dest + ".source.json"


def known_copy(dest: str, url: str) -> Source | None:
    """What identifies the copy at ``dest``, if its sidecar matches it and ``url``; else None."""
    from numerai_predict.redact import redact
    from numerai_predict.transfer import Source

    try:
        with open(sidecar(dest)) as handle:
            source = Source(**json.load(handle))
        whole = os.path.getsize(dest) == source.size and has_parquet_magic(dest)
    except (OSError, ValueError, TypeError):
        return None
    return source if whole and source.etag and source.url == redact(url) else None


def write_sidecar(dest: str, source: Source) -> None:
    from numerai_predict.files import write_atomic

    try:
        write_atomic(sidecar(dest), json.dumps(asdict(source), indent=2))
    except OSError as exc:
        log.warning("could not record where %s came from: %s", dest, exc.strerror or exc)
