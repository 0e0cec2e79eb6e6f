"""The runner's pipeline, top to bottom, without its command line (the runner's and the API's):

fetch model -> inspect pickle (the doctor) -> fetch data -> live ids, then load (isolated)
-> run model (isolated) -> validate -> write CSV -> upload
"""

from __future__ import annotations

import logging
import os

from numerai_predict.errors import PredictError
from numerai_predict.extras import require_extra
from numerai_predict.values import Options, is_url

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

    require_extra("run", "running a model")
    model_path = fetch_model(opts.model, opts.output_dir)
    pickle_facts = inspect_pickle(model_path)
    refuse_if_unfit(pickle_facts, model_path, opts.allow_unsafe)
    features = fetch_dataset(opts.dataset, opts.output_dir, "--dataset")
    try:
        with tempfile.TemporaryDirectory(dir=opts.output_dir, prefix=".numerai-predict-") as work, \
                ModelProcess(model_path, features, work,
                             Limits(opts.timeout, opts.max_memory, opts.cpus, opts.isolate), opts.debug,
                             report=facts) as model:
            arity = model.arity()
            benchmarks = fetch_dataset(opts.benchmarks, opts.output_dir, "--benchmarks") if arity == 2 else None
            raw = os.path.join(work, "predictions.f64")
            model.predict(features, benchmarks, raw)
            # The child is untrusted: check its output again here, against the ids it sent before loading.
            payload, count = deliverable(raw, model.live_ids)
    except (PickleUnreadableError, MissingModuleError, ModelCrashedError) as exc:
        raise with_verdict(exc, pickle_facts, model_path) from None  # loading failures say where the pickle would run
    log.info("Generated %d predictions", count)
    # The validated predictions' bytes, held here: written, then uploaded as they are (never re-read).
    csv_path = write_csv(payload, opts.output_dir)
    if opts.post is not None:
        from numerai_predict.transfer import upload

        try:
            upload(payload, os.path.basename(csv_path), opts.post.url, opts.post.fields)
        except PredictError as exc:  # 60/61: the CSV is kept, and --report says where (to upload by hand)
            exc.kept_csv = csv_path
            raise
    return csv_path


def fetch_model(model: str, output_dir: str) -> str:
    """A local path to the pickle, downloading it if ``model`` is a URL."""
    if is_url(model):
        require_extra("run", "downloading a model")
        from numerai_predict.transfer import download_model

        return download_model(model, output_dir)
    if not os.path.isfile(model):
        from numerai_predict.errors import ModelFetchError

        raise ModelFetchError(f"--model {model} is not an existing file")
    return model


def write_csv(payload: bytes, output_dir: str) -> str:
    """Write the CSV's bytes atomically under a fresh name: a reader sees the whole file or none."""
    import secrets

    from numerai_predict.errors import WriteError
    from numerai_predict.files import write_atomic

    path = os.path.join(output_dir, f"live_predictions-{secrets.token_hex(6)}.csv")
    try:
        write_atomic(path, payload)
    except OSError as exc:
        raise WriteError(f"could not write the predictions CSV in {output_dir}: {exc.strerror or exc}") from None
    log.info("Saved predictions to %s", path)
    return path
