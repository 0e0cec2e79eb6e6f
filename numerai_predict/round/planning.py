"""The round's settings and plan: the data fetched once, each model's job or its reason to be skipped."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

from numerai_predict import numerai
from numerai_predict.errors import UsageError
from numerai_predict.numerai import DEFAULT_BENCHMARKS, DEFAULT_DATASET
from numerai_predict.round.manifest import EXIT_USAGE, Entry, RoundError
from numerai_predict.round.outcomes import Job, Outcome, delivered_state
from numerai_predict.values import dataset_path, parse_size, user_path

log = logging.getLogger("numerai_predict.round")


DATA_FOLDER = ".round-data"


@dataclass
class Settings:
    manifest: str
    dataset: str
    benchmarks: str
    output_dir: str
    report: str
    workers: int
    timeout: float
    max_memory: str
    isolate: bool
    ray: str | None
    retries: int
    use_images: bool
    progress: bool
    warm: bool = True


def parse_args(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m numerai_predict.round", description=(
        "Run a round: every model of a manifest on one download of the live data, each in the environment its "
        "pickle needs, on this machine or a Ray cluster."), epilog=exit_codes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, help="CSV: id,model[,post_url,post_data,environment]")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="as predict.py (default: %(default)s)")
    parser.add_argument("--benchmarks", default=DEFAULT_BENCHMARKS, help="as predict.py (default: %(default)s)")
    parser.add_argument("--output_dir", default=".", help="the round's folder: data, one folder per model id")
    parser.add_argument("--report", help="round report CSV, and .json beside it (default: OUTPUT_DIR/round.csv)")
    parser.add_argument("--workers", type=int, default=0, help="local models at once (default: CPUs, bounded by "
                        "available memory / --max-memory)")
    parser.add_argument("--timeout", type=float, default=numerai.TIMEOUT_SECONDS,
                        help="per model, as predict.py (default: %(default)g)")
    parser.add_argument("--max-memory", default=numerai.MAX_MEMORY,
                        help="per model, as predict.py (default: %(default)s)")
    parser.add_argument("--no-isolation", action="store_true", help="as predict.py: for debugging only")
    parser.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster (ray start's address, or 'auto')")
    parser.add_argument("--retries", type=int, default=3, help="Ray: retries of a task lost to a system failure")
    parser.add_argument("--use-images", action="store_true", help="run each model in its environment's image")
    parser.add_argument("--cold", action="store_true", help="start every model as predict.py alone, not forked "
                        "from a warm template (the imports and live data read once per environment)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")

    def error(message: str) -> NoReturn:
        raise RoundError(f"usage: {message}", EXIT_USAGE)

    parser.error = error  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    try:
        max_memory = parse_size(args.max_memory, "--max-memory")
    except UsageError as exc:
        raise RoundError(exc.message, EXIT_USAGE) from None
    if args.timeout <= 0 or args.workers < 0 or args.retries < 0:
        raise RoundError("--timeout must be positive, --workers and --retries not negative", EXIT_USAGE)
    del max_memory
    output_dir = user_path(args.output_dir)
    return Settings(user_path(args.manifest), dataset_path(args.dataset), dataset_path(args.benchmarks), output_dir,
                    user_path(args.report) if args.report else os.path.join(output_dir, "round.csv"), args.workers,
                    args.timeout, args.max_memory, not args.no_isolation, args.ray, args.retries, args.use_images,
                    not args.no_progress and sys.stderr.isatty(), not args.cold)


def fetch_data(settings: Settings) -> tuple[str, str]:
    """The live data and benchmarks, downloaded once into the round's folder, read-only."""
    from numerai_predict.data import fetch_dataset
    from numerai_predict.parquet import check_parquet

    folder = os.path.join(settings.output_dir, DATA_FOLDER)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, flag in ((settings.dataset, "--dataset"), (settings.benchmarks, "--benchmarks")):
        path = fetch_dataset(name, folder, flag)
        check_parquet(path, f"{flag} {path}")
        if path.startswith(folder + os.sep):
            os.chmod(path, 0o444)  # shared by every model: nobody writes it
        paths.append(path)
    return paths[0], paths[1]


def plan(settings: Settings, entries: list[Entry], features: str, benchmarks: str) -> tuple[list[Job], list[Outcome]]:
    """Jobs to run, and the outcomes known without running (delivered before)."""
    max_memory = settings.max_memory
    jobs, known = [], []
    for entry in entries:
        folder = os.path.join(settings.output_dir, entry.id)
        os.makedirs(folder, exist_ok=True)
        earlier = delivered_state(folder)
        if earlier is not None:
            earlier.reused = True
            known.append(earlier)
            continue
        # No environment: the doctor picks it in the worker (on Ray, on the node), never serially here.
        jobs.append(Job(entry.id, entry.model, entry.environment, folder, features, benchmarks, entry.post_url,
                        entry.post_data, settings.timeout, max_memory, settings.isolate, settings.use_images,
                        die_with_parent=bool(settings.ray), warm=settings.warm))
    return jobs, known


def exit_codes_help() -> str | None:
    """--help's epilog: the exit codes as the package's docstring lists them."""
    from numerai_predict import round as package

    return "The round's own exit codes" + package.__doc__.split("The round's own exit codes")[1] \
        if package.__doc__ else None
