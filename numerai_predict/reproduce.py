"""The footer of a failure: commands that reproduce the run when pasted as printed, from any folder.

- **The tool that runs**: the PyPI twin when ``PYPI_TWIN=1`` is in the environment
  (``python3 /abs/containers/pypi_env.py run -e ENV predict ...``), pixi otherwise
  (``pixi run --manifest-path /abs/pixi.toml -e ENV predict ...``; without a pixi.toml
  beside predict.py, as in an image, plain ``pixi run`` in your checkout).
- **The environment that fits the pickle**: after exit 12 the version check knows which
  Python made it (``PickleVersionError.pythons``) and the footer uses that environment
  and image; otherwise the running Python's.
- **Every flag the user gave**, in their order, with relative paths made absolute against
  the user's folder (as predict.py read them), URLs without query string or userinfo
  (numerai_predict.redact), ``--post_url``/``--post_data`` left out (the presigned POST is a
  secret: the reproduction stops after writing the CSV), and ``--debug`` added.
- **An image that exists**: the local tag ``numerai_predict_py_3_XY`` that
  ``pixi run build-image pyXY`` makes, unless ``NUMERAI_PREDICT_IMAGE_REPO`` names where
  images are published (e.g. ``ghcr.io/numerai``); tagged with ``GIT_REF`` when the footer
  names the image that is running (images set it; both local builds and pushes carry it),
  ``latest`` otherwise. ``docker run`` mounts the folders it needs at the same paths (inputs
  read-only), runs as the calling user (``--user "$(id -u):$(id -g)"``, so the CSV lands in an
  ordinary folder) and offline (``--network none``) when every input is a local file.

Standard library only: it runs in predict.py's error path.
"""

from __future__ import annotations

import os
import shlex

from numerai_predict.numerai import DEFAULT_BENCHMARKS, DEFAULT_DATASET, environment_name, image_name, minor_pair
from numerai_predict.redact import redact, scrub
from numerai_predict.values import dataset_path, is_url, user_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULE = "-" * 78
# predict.py's flags that take a value, and how the footer writes it.
PATHS = {"--output_dir": user_path, "--report": user_path, "--dataset": dataset_path, "--benchmarks": dataset_path}
VALUED = ("--model", "--dataset", "--benchmarks", "--output_dir", "--post_url", "--post_data", "--report",
          "--timeout", "--max-memory", "--cpus")
SWITCHES = ("--no-isolation", "--debug", "--help", "--version")
SECRET = ("--post_url", "--post_data")


def full_flag(token: str) -> str | None:
    """The flag a token names, allowing argparse's unique prefixes (--out for --output_dir)."""
    matches = [flag for flag in VALUED + SWITCHES if flag.startswith(token)] if token.startswith("--") else []
    return token if token in matches else matches[0] if len(matches) == 1 else None


def model_value(value: str) -> str:
    return redact(value) if is_url(value) else user_path(value)


def user_flags(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """The user's flags as the footer writes them, and the values of the flags given (as written)."""
    out: list[str] = []
    values: dict[str, str] = {}
    tokens = iter(argv)
    for token in tokens:
        name, eq, inline = token.partition("=")
        flag = full_flag(name if eq else token)
        if flag in VALUED:
            value = inline if eq else next(tokens, None)
            if value is None:  # a flag without its value: a usage error, kept as it is
                out.append(flag)
                continue
            written = model_value(value) if flag == "--model" else PATHS[flag](value) if flag in PATHS else value
            values[flag] = written
            if flag not in SECRET:
                out += [flag, scrub(written)]
        elif flag == "--debug":
            continue  # added at the end
        else:
            out.append(scrub(flag or token))
    return out + ["--debug"], values


def environment(exc: BaseException | None) -> tuple[int, int]:
    """The Python whose environment fits the pickle: the version check's verdict after exit 12."""
    pythons = sorted(getattr(exc, "pythons", None) or [])
    return pythons[0] if pythons else minor_pair()


def run_prefix() -> tuple[list[str], str]:
    """`pixi run` of the tool that is running, usable from any folder; and a note when it is not."""
    twin = os.path.join(ROOT, "containers", "pypi_env.py")
    manifest = os.path.join(ROOT, "pixi.toml")
    if os.environ.get("PYPI_TWIN") == "1" and os.path.exists(twin):
        return ["python3", twin, "run"], ""
    if os.path.exists(manifest):
        return ["pixi", "run", "--manifest-path", manifest], ""
    return ["pixi", "run"], "   # in your numerai-predict checkout"


def local_command(env: str, args: list[str]) -> str:
    prefix, note = run_prefix()
    return shlex.join([*prefix, "-e", env, "predict", *args]) + note


def image(python: tuple[int, int]) -> tuple[str, bool]:
    """The image reference for ``python``, and whether it is a local build."""
    repo = os.environ.get("NUMERAI_PREDICT_IMAGE_REPO", "").rstrip("/").lower()
    ref = os.environ.get("GIT_REF", "")
    running = python == minor_pair()
    tag = ref if running and ref and ref not in ("unknown", "dev") else "latest"
    name = f"{image_name(python)}:{tag}"
    return (f"{repo}/{name}", False) if repo else (name, True)


def docker_command(reference: str, args: list[str], values: dict[str, str]) -> str:
    """docker run as printed: the folders it needs mounted at their paths, the caller's uid, offline if it can."""
    mounts: dict[str, str] = {}
    for flag in ("--model", "--dataset", "--benchmarks"):
        value = values.get(flag)
        folder = os.path.dirname(value) if value and os.path.isabs(value) else None
        if folder and not any(folder == m or folder.startswith(m.rstrip("/") + "/") for m in mounts):
            mounts[folder] = "ro"  # a folder already mounted read-only brings its subfolders
    for folder in (values.get("--output_dir", "/tmp"), os.path.dirname(values["--report"]) if "--report" in values
                   else None):
        if folder:
            mounts[folder] = "rw"
    inputs = [values.get("--model", ""), values.get("--dataset", DEFAULT_DATASET),
              values.get("--benchmarks", DEFAULT_BENCHMARKS)]
    offline = all(os.path.isabs(value) for value in inputs)
    words = ["docker", "run", "-i", "--rm", *(["--network", "none"] if offline else [])]
    # In the order of the flags, never sorted: a sort would depend on where the clone is (/check vs /tmp)
    volumes = [arg for folder, mode in mounts.items()
               for arg in ("-v", f"{folder}:{folder}" + (":ro" if mode == "ro" else ""))]
    return (f'{shlex.join(words)} --user "$(id -u):$(id -g)" {shlex.join(volumes)} '
            f"{shlex.join([reference, *args])}").replace("  ", " ")


def reproduce_footer(argv: list[str], exc: BaseException | None = None) -> str:
    """The footer: the local command and the docker command that reproduce this run."""
    python = environment(exc)
    env = environment_name(python)
    args, values = user_flags(argv)
    reference, local = image(python)
    notes = []
    if any(flag in values for flag in SECRET):
        notes.append("--post_url/--post_data left out (the presigned POST is a secret): the run stops after "
                     "writing the CSV")
    if is_url(values.get("--model", "")):
        notes.append("the model URL is shown without its query string: pass the downloaded file instead")
    built = f", built by `{shlex.join([*run_prefix()[0], 'build-image', env])}`" if local else ""
    lines = [RULE, f"Reproduce this locally (Python {python[0]}.{python[1]}, environment {env}), from any folder:",
             f"    {local_command(env, args)}",
             f"or in the image ({reference}{built}):",
             f"    {docker_command(reference, args, values)}"]
    lines += [f"  ({note})" for note in notes]
    return "\n".join([*lines, RULE])
