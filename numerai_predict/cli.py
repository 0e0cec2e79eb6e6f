"""Command line: numerai-predict's historical flags, checked into plain values."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from numerai_predict import numerai
from numerai_predict.errors import UsageError, WriteError
from numerai_predict.numerai import DEFAULT_BENCHMARKS, DEFAULT_DATASET
from numerai_predict.redact import redact
from numerai_predict.values import Options, Post, dataset_path, is_url, parse_post_data, parse_size, user_path

EPILOG = """\
The model is a pickled callable taking live_features, or (live_features,
live_benchmark_models), and returning a DataFrame indexed by the live ids with
one numeric column in [0, 1]. Exit codes are listed in README.md.
"""


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so main() reports it."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser(prog: str = "predict.py") -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog,
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
    parser.add_argument("--timeout", type=float, default=numerai.TIMEOUT_SECONDS, metavar="SECONDS",
                        help="stop the model if loading and predicting take longer (default: %(default)g, "
                        "Numerai's limit)")
    parser.add_argument("--max-memory", default=numerai.MAX_MEMORY, metavar="SIZE",
                        help="stop the model when its processes together hold more memory: bytes, or with "
                        "k/m/g (binary); 0: no limit (default: %(default)s, Numerai's limit)")
    parser.add_argument("--cpus", type=int, default=numerai.CPUS, metavar="N",
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
    parser.add_argument("--version", action="version", version=version_line(),
                        help="print numerai-predict's version and GIT_REF (the image's commit), then exit")
    return parser


def version_line() -> str:
    from numerai_predict import __version__

    return f"numerai-predict {__version__} (GIT_REF {os.environ.get('GIT_REF') or 'dev'})"


def parse_args(argv: list[str] | None, prog: str = "predict.py") -> Options:
    """Parse and check the command line; bad values raise UsageError or WriteError."""
    args = build_parser(prog).parse_args(argv)
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
