"""The round from start to end, and the one main: the one place its failures become exit codes."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import time

from numerai_predict.errors import MissingExtraError, PredictError
from numerai_predict.extras import require_extra
from numerai_predict.round.local import local_workers, progress_bar, run_local
from numerai_predict.round.manifest import (
    EXIT_BACKEND,
    EXIT_BUSY,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNRUN,
    RoundError,
    read_manifest,
)
from numerai_predict.round.planning import Settings, fetch_data, parse_args, plan
from numerai_predict.round.ray_backend import RayBackend
from numerai_predict.round.report import write_report
from numerai_predict.values import parse_size

log = logging.getLogger("numerai_predict.round")


def needs_extras(settings: Settings) -> None:
    """A missing pip extra is the backend's absence (exit 4), named with its pip line."""
    try:
        require_extra("run", "a round")
        if settings.ray:
            require_extra("round", "a round on Ray")
    except MissingExtraError as exc:
        raise RoundError(exc.one_line(), EXIT_BACKEND) from None


def round_main(settings: Settings) -> int:
    start = time.monotonic()
    needs_extras(settings)
    entries = read_manifest(settings.manifest)
    try:
        os.makedirs(settings.output_dir, exist_ok=True)
    except OSError as exc:
        raise RoundError(f"--output_dir {settings.output_dir}: {exc.strerror or exc}", 50) from None
    busy = os.open(os.path.join(settings.output_dir, ".round.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(busy, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RoundError(f"another round is running in {settings.output_dir}", EXIT_BUSY) from None
    backend = None
    if settings.ray:
        backend = RayBackend(settings.ray)  # before the data: an unreachable cluster costs no download
    elif settings.use_images and subprocess.run(["docker", "version"], capture_output=True).returncode:
        raise RoundError("--use-images: docker is not available", EXIT_BACKEND)
    features, benchmarks = fetch_data(settings)
    log.info("Data: %s and %s, shared read-only", features, benchmarks)
    jobs, known = plan(settings, entries, features, benchmarks)
    done = progress_bar(len(entries), settings.progress)
    for outcome in known:
        done(outcome)
    if backend is not None:
        ran = backend.run(jobs, settings.retries, done)
        workers = backend.describe()
    else:
        count = local_workers(settings.workers, parse_size(settings.max_memory, "--max-memory"))
        workers = f"{count} local worker(s)"
        ran = run_local(jobs, count, done)
    order = {entry.id: index for index, entry in enumerate(entries)}
    outcomes = sorted(known + ran, key=lambda o: order[o.id])
    seconds = time.monotonic() - start
    summary = write_report(settings, outcomes, seconds, workers)
    print(summary, file=sys.stderr)
    return EXIT_UNRUN if any(o.round_failure for o in outcomes) else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    from numerai_predict.redact import redact_logging

    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr, level=logging.INFO)
    redact_logging()
    try:
        return round_main(parse_args(sys.argv[1:] if argv is None else argv))
    except RoundError as exc:
        log.error("[round exit %d] %s", exc.exit_code, exc)
        return exc.exit_code
    except PredictError as exc:  # the data, or the output folder
        log.error("[round exit %d] %s", exc.exit_code, exc.one_line())
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("[round exit 130] interrupted")
        return EXIT_INTERRUPTED
