"""Command line: numerai-predict's historical flags, checked into plain values."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NamedTuple, NoReturn

from numerai_predict.errors import UsageError, WriteError
from numerai_predict.redact import redact

DEFAULT_DATASET = "v5.3/live.parquet"
DEFAULT_BENCHMARKS = "v5.3/live_benchmark_models.parquet"

EPILOG = """\
The model is a pickled callable taking live_features, or (live_features,
live_benchmark_models), and returning a DataFrame indexed by the live ids with
one numeric column in [0, 1]. Exit codes are listed in README.md.
"""


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


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so main() reports it."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="predict.py",
        description="Run a pickled Numerai model on live data, validate and deliver its predictions.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="PATH_OR_URL",
                        help="pickled model: a local file or an http(s) URL (e.g. a presigned S3 GET)")
    parser.add_argument("--dataset", default=DEFAULT_DATASET,
                        help="live features: a Numerai dataset name fetched with numerapi, or a local "
                        "Parquet file (default: %(default)s)")
    parser.add_argument("--benchmarks", default=DEFAULT_BENCHMARKS,
                        help="live benchmark models, read only for 2-argument models: a Numerai "
                        "dataset name or a local Parquet file (default: %(default)s)")
    parser.add_argument("--output_dir", default="/tmp",
                        help="existing writable directory for downloads and the predictions CSV "
                        "(default: %(default)s)")
    parser.add_argument("--post_url", help="URL of a presigned S3 POST to upload the predictions to")
    parser.add_argument("--post_data", metavar="URLENCODED",
                        help="urlencoded fields of the presigned POST (required with --post_url); '-' reads "
                        "them from standard input, off the command line, which every process of the machine "
                        "can read")
    parser.add_argument("--report", metavar="PATH",
                        help="also write a JSON report of the run (status, exit code, error, CSV path)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                        help="stop the model if loading and predicting take longer (default: %(default)g, "
                        "Numerai's limit)")
    parser.add_argument("--max-memory", default="4g", metavar="SIZE",
                        help="stop the model when its processes together hold more memory: bytes, or with "
                        "k/m/g (binary); 0: no limit (default: %(default)s, Numerai's limit)")
    parser.add_argument("--cpus", type=int, default=1, metavar="N",
                        help="CPUs the model may run on; 0: all (default: %(default)s, Numerai's limit)")
    parser.add_argument("--no-isolation", action="store_true",
                        help="run the model without namespaces, Landlock and the runner's protection (limits "
                        "still apply): for debugging only")
    parser.add_argument("--check", action="store_true",
                        help="the pickle doctor: read the pickle without running it and report the Python that "
                        "made it, its modules, unsafe references and the environment to run it in; nothing is "
                        "loaded or predicted (exit 0: runnable and safe, 12: no environment fits, 16: unsafe)")
    parser.add_argument("--json", action="store_true",
                        help="with --check: one JSON object on stdout (numerai_predict/doctor.schema.json)")
    parser.add_argument("--allow-unsafe", action="store_true",
                        help="load a pickle even when it references functions that run commands, open sockets "
                        "or evaluate code at load time (refused with exit 16 otherwise)")
    parser.add_argument("--debug", action="store_true",
                        help="verbose logging, and tracebacks of numerai-predict's own errors")
    return parser


def parse_args(argv: list[str] | None) -> Options:
    """Parse and check the command line; bad values raise UsageError or WriteError."""
    args = build_parser().parse_args(argv)
    if args.post_data == "-":
        args.post_data = sys.stdin.readline().strip()
        if not args.post_data:
            raise UsageError("--post_data - found no fields on standard input")
    if bool(args.post_url) != bool(args.post_data):
        raise UsageError("--post_url and --post_data must be given together")
    if args.post_url and not args.post_url.lower().startswith(("http://", "https://")):
        raise UsageError(f"--post_url must be an http(s) URL, got {redact(args.post_url)!r}")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
    if args.json and not args.check:
        raise UsageError("--json goes with --check (the doctor's report)")
    if args.cpus < 0:
        raise UsageError(f"--cpus must be 0 (all) or a positive number, got {args.cpus}")
    output_dir = user_path(args.output_dir)
    check_output_dir(output_dir)
    return Options(
        model=args.model if is_url(args.model) else user_path(args.model),
        dataset=dataset_path(args.dataset),
        benchmarks=dataset_path(args.benchmarks),
        output_dir=output_dir,
        post=Post(args.post_url, parse_post_data(args.post_data)) if args.post_url else None,
        report=user_path(args.report) if args.report else None,
        timeout=args.timeout,
        max_memory=parse_size(args.max_memory, "--max-memory"),
        cpus=args.cpus,
        isolate=not args.no_isolation,
        debug=args.debug,
        check=args.check,
        json=args.json,
        allow_unsafe=args.allow_unsafe,
    )


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


def check_output_dir(path: str) -> None:
    """The output dir must exist and accept a file: tried for real (root ignores modes)."""
    import tempfile

    if not os.path.isdir(path):
        raise UsageError(f"--output_dir {path} is not an existing directory")
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise WriteError(f"--output_dir {path} is not writable: {exc.strerror}") from None
