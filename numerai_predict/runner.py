"""numerai-predict's runner: run a pickled Numerai model on live data and deliver its predictions.

parse args -> the pipeline (numerai_predict/pipeline.py) -> report; with --check, the doctor's
report instead: fetch model -> inspect -> print. ``main`` is the one place failures become
messages and exit codes; predict.py (the repository's and the images' entry point),
``python -m numerai_predict`` and the ``numerai-predict`` console script all call it.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from numerai_predict.cli import parse_args
from numerai_predict.errors import PredictError
from numerai_predict.numerai import python_tag
from numerai_predict.pipeline import fetch_model, predict
from numerai_predict.redact import redact_logging, scrub
from numerai_predict.values import Options

log = logging.getLogger("numerai_predict")


def run_check(opts: Options, argv: list[str]) -> int:
    """The pickle doctor (--check): the diagnosis on stdout, its exit code; nothing is loaded."""
    import json

    from numerai_predict.doctor import diagnose, exit_code, render
    from numerai_predict.pickles import inspect_pickle
    from numerai_predict.redact import redact

    path = fetch_model(opts.model, opts.output_dir)
    diagnosis = diagnose(path, inspect_pickle(path), redact(opts.model), argv)
    print(json.dumps(diagnosis, indent=1) if opts.json else render(diagnosis))
    return exit_code(diagnosis)


# ---- the edge: messages, exit codes, footer --------------------------------


def reproduce_footer(argv: list[str], exc: BaseException | None = None) -> str:
    """Commands that reproduce this run when pasted (numerai_predict/reproduce.py)."""
    from numerai_predict.reproduce import reproduce_footer as footer

    return footer(argv, exc)


def report_failure(exc: PredictError, argv: list[str], debug: bool) -> None:
    if exc.details and (exc.show_traceback or debug):
        sys.stderr.write(exc.details.rstrip() + "\n")
    log.error("[exit %d] %s", exc.exit_code, exc.one_line())
    if exc.reproducible:
        sys.stderr.write(reproduce_footer(argv, exc) + "\n")


def write_report(path: str | None, **fields: object) -> None:
    """The optional JSON report (--report); never fatal."""
    if not path:
        return
    import json

    try:
        with open(path, "w") as handle:
            json.dump(fields, handle, indent=2)
    except OSError as exc:
        log.warning("could not write report %s: %s", path, exc)


def stop_on_sigterm() -> None:
    """SIGTERM (a round's stop, `docker stop`) ends the run as Ctrl-C does: the model's whole process
    tree is killed on the way out, never left running."""
    import signal

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt)


def program_name() -> str:
    """How the user called the runner, for --help: the console script, python -m, or predict.py."""
    called = os.path.basename(sys.argv[0])
    return {"numerai-predict": called, "__main__.py": "python -m numerai_predict"}.get(called, "predict.py")


def main(argv: list[str] | None = None) -> int:
    """Run predict.py; the one place failures become messages and exit codes."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr, force=True)
    redact_logging()  # no credential of a presigned URL in any log line
    start, opts, csv_path = time.monotonic(), None, None
    facts: dict[str, object] = {}  # what --report tells beyond the outcome
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    stop_on_sigterm()
    try:
        opts = parse_args(argv, program_name())
        log.info("Running numerai-predict:%s Python %s", os.environ.get("GIT_REF") or "dev", sys.version.split()[0])
        if opts.check:
            return run_check(opts, argv)
        csv_path = predict(opts, facts)
        code, error = 0, None
    except PredictError as exc:
        report_failure(exc, argv, debug)
        code, error, csv_path = exc.exit_code, exc.one_line(), exc.kept_csv
        if opts is not None and opts.json:  # the doctor's JSON, even when it could not read the pickle
            import json

            print(json.dumps({"error": scrub(error), "exit_code": code}))
    except KeyboardInterrupt:
        code, error = 130, "interrupted"
    except Exception as exc:  # a bug in numerai-predict itself
        log.exception("internal error: %s", exc) if debug else log.error(
            "[exit 1] internal error: %s: %s (rerun with --debug for the traceback)", type(exc).__name__, exc)
        sys.stderr.write(reproduce_footer(argv, exc) + "\n")
        code, error = 1, f"internal error: {type(exc).__name__}: {exc}"
    write_report(opts.report if opts else None, status="ok" if code == 0 else "error", exit_code=code,
                 error=scrub(error) if error else None, predictions_csv=csv_path, python=python_tag(),
                 seconds=round(time.monotonic() - start, 3), **facts)
    return code
