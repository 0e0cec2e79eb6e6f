"""Values and paths the command line, the round and the reproduce footer share: where a user's
relative path points, what is a URL or a Numerai dataset name, sizes and presigned-POST fields.

Standard library only."""

from __future__ import annotations

import os
from typing import NamedTuple

from numerai_predict.errors import UsageError


class Post(NamedTuple):
    """Where to upload the predictions: a presigned S3 POST's URL and fields."""

    url: str
    fields: dict[str, str]


class Options(NamedTuple):
    """Validated command-line options."""

    model: str
    dataset: str
    benchmarks: str
    output_dir: str
    post: Post | None  # --post_url and --post_data: both or neither
    report: str | None
    timeout: float | None
    max_memory: int  # bytes; 0: unlimited
    cpus: int  # 0: all
    isolate: bool
    debug: bool
    check: bool  # the pickle doctor: report, never load
    json: bool
    allow_unsafe: bool


def user_folder() -> str:
    """The folder the user ran the command from: pixi (and its PyPI twin) run tasks in the
    workspace root and export the caller's folder as INIT_CWD; otherwise the current folder."""
    return os.environ.get("INIT_CWD") or os.getcwd()


def user_path(path: str) -> str:
    """A path flag's value as an absolute path, relative ones taken from the user's folder."""
    return os.path.normpath(os.path.join(user_folder(), path))


def is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))


def dataset_path(name: str) -> str:
    """--dataset/--benchmarks: a local file as an absolute path, or a Numerai dataset name as given.

    The rule: an absolute path, a relative path that exists in the user's folder, or one
    starting with ./ or ../ is a local file (a missing one is exit 20, never a download);
    any other relative name (v5.3/live.parquet) is a Numerai dataset name."""
    if os.path.isabs(name):
        return name
    local = user_path(name)
    if os.path.exists(local) or name in (".", "..") or name.startswith(("./", "../")):
        return local
    return name


def parse_size(text: str, flag: str) -> int:
    """A size as Docker writes them: bytes, or a number with b/k/m/g (binary units)."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmg]?)(?:i?b)?\s*", text.lower())
    if not match:
        raise UsageError(f"{flag} must be a size such as 4g or 300m, got {text!r}")
    return int(float(match[1]) * 1024 ** "bkmg".index(match[2] or "b"))


def parse_post_data(text: str) -> dict[str, str]:
    """Urlencoded presigned-POST fields as single strings (S3 rejects lists)."""
    import urllib.parse

    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise UsageError("--post_data is not urlencoded (expected key=value&key=value)") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise UsageError(f"--post_data repeats the field {key!r}")
        fields[key] = value
    if "key" not in fields:
        raise UsageError("--post_data lacks the 'key' field every presigned S3 POST has")
    return fields
