"""Which environment runs a model: the manifest's, or the pickle doctor's verdict; where its Python is."""

from __future__ import annotations

import logging
import os

from numerai_predict.errors import PredictError
from numerai_predict.round.outcomes import Job, Outcome
from numerai_predict.values import is_url

log = logging.getLogger("numerai_predict.round")
#: The checkout: predict.py, pixi.toml and the environments beside it.
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def twin_envs_dir() -> str:
    """Where containers/pypi_env.py keeps its environment prefixes."""
    return os.environ.get("PYPI_TWIN_ENVS") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "numerai-predict", "envs")


def allowed_environments() -> set[str] | None:
    """The environments this host may run models in (NUMERAI_PREDICT_ENVIRONMENTS, comma-separated;
    unset: every installed one). A node that serves some Pythons only, and the test suite, which lets
    a test use other environments only when it asked for them to be built."""
    value = os.environ.get("NUMERAI_PREDICT_ENVIRONMENTS")
    return None if value is None else {env.strip() for env in value.split(",") if env.strip()}


def unavailable(env: str) -> str | None:
    """Why this host will not run models in ``env``, or None."""
    allowed = allowed_environments()
    if allowed is not None and env.removesuffix("-runtime") not in allowed:
        return (f"environment {env} is not one this host may use "
                f"(NUMERAI_PREDICT_ENVIRONMENTS={','.join(sorted(allowed)) or 'none'})")
    return None


def environment_python(env: str, root: str = PROJECT_ROOT, twin_dir: str | None = None) -> str | None:
    """The interpreter of pixi environment ``env`` on this machine, or None.

    pixi's ``.pixi/envs/ENV``, then the PyPI twin's workspace layer ``.pixi/twin/ENV`` (a venv
    over the prefix), then the twin's prefix itself; ``ENV-runtime`` (same versions, solve-group)
    when ``ENV`` is not installed. predict.py is run by path, so its package needs no install."""
    twin_dir = twin_dir or twin_envs_dir()
    names = [env] + ([f"{env}-runtime"] if not env.endswith("-runtime") else [])
    for name in names:
        for prefix in (os.path.join(root, ".pixi", "envs", name), os.path.join(root, ".pixi", "twin", name),
                       os.path.join(twin_dir, name)):
            python = os.path.join(prefix, "bin", "python")
            if os.access(python, os.X_OK):
                return python
    return None


def choose_environment(path: str) -> tuple[str | None, int, str]:
    """The doctor's verdict for a local pickle: (environment, predict.py's exit code, reason)."""
    from numerai_predict.doctor import diagnose, exit_code
    from numerai_predict.pickles import inspect_pickle

    try:
        diagnosis = diagnose(path, inspect_pickle(path), os.path.basename(path))
    except PredictError as exc:
        return None, exc.exit_code, exc.one_line()
    verdict = diagnosis["verdict"]
    code = exit_code(diagnosis)
    if code:
        if diagnosis["unsafe"]:
            refs = "; ".join(f"{u['module']}.{u['name']} ({u['reason']})" for u in diagnosis["unsafe"])
            return verdict["environment"], code, f"doctor: unsafe pickle, not run: it would call {refs}"
        return None, code, f"doctor: no environment can run it: {verdict['reason']}"
    return str(verdict["environment"]), 0, str(verdict["reason"])


def local_model(job: Job) -> Outcome | None:
    """A URL's pickle downloaded into the model's folder (read by the doctor, mounted into an image,
    run by predict.py: one download); a skipped Outcome when it cannot be had."""
    if not is_url(job.model):
        return None if os.path.isfile(job.model) else Outcome(
            job.id, "skipped", 10, job.environment, error=f"model {job.model} is not an existing file")
    from numerai_predict.transfer import download_model

    try:
        job.model = download_model(job.model, job.folder)
    except PredictError as exc:
        return Outcome(job.id, "skipped", exc.exit_code, job.environment, error=exc.one_line())
    return None


def pick_environment(job: Job) -> Outcome | None:
    """The job's environment, the doctor's verdict when the manifest gives none; a skipped Outcome
    (with predict.py's exit code) when no environment can run the pickle or it is unsafe."""
    refused = local_model(job) if job.use_images or not job.environment else None
    if refused is not None or job.environment:
        return refused
    verdict, code, reason = choose_environment(job.model)
    if code or not verdict:
        return Outcome(job.id, "skipped", code, verdict or "", error=reason)
    job.environment = verdict
    return None
