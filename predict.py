#!/usr/bin/env python3
"""numerai-predict: run a pickled Numerai model on live data and deliver its predictions.

The pipeline, top to bottom:
parse args -> fetch model -> inspect pickle (the doctor) -> load (isolated) -> fetch data
-> run model (isolated) -> validate -> write CSV -> upload -> report

With --check, the doctor's report instead: fetch model -> inspect -> print.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from numerai_predict.cli import Options, parse_args
from numerai_predict.errors import PredictError
from numerai_predict.redact import redact_logging, scrub

log = logging.getLogger("numerai_predict")


def predict(opts: Options, facts: dict[str, object] | None = None) -> str:
    """Run the whole pipeline; returns the CSV's path or raises a PredictError.
    ``facts`` receives what --report tells beyond the outcome (the model's isolation)."""
    import tempfile

    from numerai_predict.data import fetch_dataset
    from numerai_predict.doctor import refuse_if_unfit, with_verdict
    from numerai_predict.errors import MissingModuleError, ModelCrashedError, PickleUnreadableError
    from numerai_predict.pickles import inspect_pickle
    from numerai_predict.sandbox import Limits, ModelProcess
    from numerai_predict.validate import deliverable

    model_path = fetch_model(opts.model, opts.output_dir)
    pickle_facts = inspect_pickle(model_path)
    refuse_if_unfit(pickle_facts, model_path, opts.allow_unsafe)
    try:
        with tempfile.TemporaryDirectory(dir=opts.output_dir, prefix=".numerai-predict-") as work, \
                ModelProcess(model_path, work, Limits(opts.timeout, opts.max_memory, opts.cpus, opts.isolate),
                             opts.debug, report=facts) as model:
            arity = model.arity()
            features = fetch_dataset(opts.dataset, opts.output_dir, "--dataset")
            benchmarks = fetch_dataset(opts.benchmarks, opts.output_dir, "--benchmarks") if arity == 2 else None
            raw = os.path.join(work, "predictions.parquet")
            model.predict(features, benchmarks, raw)
            # The child is untrusted: check its output again here, against the live ids.
            payload, count = deliverable(raw, features)
    except (PickleUnreadableError, MissingModuleError, ModelCrashedError) as exc:
        raise with_verdict(exc, pickle_facts, model_path) from None  # loading failures say where the pickle would run
    log.info("Generated %d predictions", count)
    # The validated predictions' bytes, held here: written, then uploaded as they are (never re-read).
    csv_path = write_csv(payload, opts.output_dir)
    if opts.post is not None:
        from numerai_predict.transfer import upload

        upload(payload, os.path.basename(csv_path), opts.post.url, opts.post.fields)
    return csv_path


def check(opts: Options, argv: list[str]) -> int:
    """The pickle doctor (--check): the diagnosis on stdout, its exit code; nothing is loaded."""
    import json

    from numerai_predict.doctor import diagnose, exit_code, render
    from numerai_predict.pickles import inspect_pickle
    from numerai_predict.redact import redact

    path = fetch_model(opts.model, opts.output_dir)
    diagnosis = diagnose(path, inspect_pickle(path), redact(opts.model), argv)
    print(json.dumps(diagnosis, indent=1) if opts.json else render(diagnosis))
    return exit_code(diagnosis)


def fetch_model(model: str, output_dir: str) -> str:
    """A local path to the pickle, downloading it if ``model`` is a URL."""
    if model.lower().startswith(("http://", "https://")):
        from numerai_predict.transfer import download_model

        return download_model(model, output_dir)
    if not os.path.isfile(model):
        from numerai_predict.errors import ModelFetchError

        raise ModelFetchError(f"--model {model} is not an existing file")
    return model


def write_csv(payload: bytes, output_dir: str) -> str:
    """Write the CSV's bytes atomically: a reader sees the whole file or none."""
    import secrets
    import tempfile

    from numerai_predict.errors import WriteError

    path = os.path.join(output_dir, f"live_predictions-{secrets.token_hex(6)}.csv")
    fd, tmp = tempfile.mkstemp(dir=output_dir, prefix=".live_predictions-", suffix=".csv")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from other readers
        os.replace(tmp, path)
    except OSError as exc:
        raise WriteError(f"could not write the predictions CSV in {output_dir}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    log.info("Saved predictions to %s", path)
    return path


# ---- the edge: messages, exit codes, footer --------------------------------


def python_tag(separator: str = "") -> str:
    return f"3{separator}{sys.version_info[1]}"


def reproduce_footer(argv: list[str], exc: BaseException | None = None) -> str:
    """Commands that reproduce this run when pasted (numerai_predict/reproduce.py)."""
    from numerai_predict.reproduce import reproduce_footer as footer

    return footer(argv, exc)


def report_failure(exc: PredictError, argv: list[str], debug: bool) -> None:
    if exc.details and (exc.show_traceback or debug):
        sys.stderr.write(exc.details.rstrip() + "\n")
    log.error("[exit %d] %s", exc.exit_code, exc.one_line())
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
        opts = parse_args(argv)
        log.info("Running numerai-predict:%s Python %s", os.environ.get("GIT_REF", "dev"), sys.version.split()[0])
        if opts.check:
            return check(opts, argv)
        csv_path = predict(opts, facts)
        code, error = 0, None
    except PredictError as exc:
        report_failure(exc, argv, debug)
        code, error = exc.exit_code, exc.one_line()
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
                 error=scrub(error) if error else None, predictions_csv=csv_path, python=python_tag("."),
                 seconds=round(time.monotonic() - start, 3), **facts)
    return code


if __name__ == "__main__":
    sys.exit(main())
