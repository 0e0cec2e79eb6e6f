"""Every command in the code blocks of README.md and docs/*.md that runs predict, pasted as written
into `bash -c`
in an ordinary folder of the user's (not the repository), with `pixi` answered by the PyPI twin
(containers/pixi_shim.py on PATH, which finds its manifest as pixi does: --manifest-path, else
pixi.toml upwards from the folder, so a line without it fails here as it would under pixi).
Transcripts (a block whose first line starts with `$ `) count only their `$ ` lines: the rest is
output. The installed package's lines (`pip install ...`, `numerai-predict ...`, a ```python block)
are tests/test_package.py's: not extracted here.

Only what cannot exist here is substituted:

- the published image (`ghcr.io/numerai/numerai_predict_py_3_12:stable`) by the local build
  `numerai_predict_py_3_11:latest` (built first when absent), so the model is the 3.11 pickle;
  a command that fetches live data from inside the container gets a throwaway image of it with
  tests/readme_site/ added: its containers reach nothing but their own 127.0.0.1;
- the files it names (model.pkl: this environment's tests/models pickle; live.parquet,
  live_benchmark_models.parquet, bench.parquet: examples/), copied into the user's folder under
  the names written;
- the presigned URLs (`https://bucket.s3.amazonaws.com/...`, `--post_data "..."`) by real
  presigned GET and POST of moto's S3 server on 127.0.0.1;
- Numerai's API (live data fetched by default) by a GraphQL server on 127.0.0.1, numerapi pointed
  at it by tests/readme_site/sitecustomize.py on PYTHONPATH;
- `~/numerai-predict` (where README's commands say the clone is) by this checkout;
- "in the clone" (a pixi line without --manifest-path, the twin's by a relative path): a fresh
  clone of this work (tests/clones.py), with its own pixi shim, is the folder the line runs in.

README.md leads with the card's commands exactly (CARD). `pixi run test-all` among them is the
command .ci/run runs (through its twin); this test, part of test-all, does not run it again.

Each must exit 0 and leave its CSV in its --output_dir (the user's folder for the demo; every
docker command names one, the folder mounted from the host). A line mentioning predict that no
kind below recognises fails the test: the extractor must learn it.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import urllib.parse
import uuid

import pytest
from clones import fresh_clone
from conftest import DOCKER
from servers import ScriptedServer, presigner, start_moto

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
# README.md and the pages it links to: every one's commands are run.
DOCUMENTS = [README, *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
SITE = os.path.join(ROOT, "tests", "readme_site")

pytestmark = pytest.mark.slow

CLONE = "~/numerai-predict"
TWIN = r"python3 \S*containers/pypi_env\.py"
# pixi's --manifest-path (-m) is an option of `run`, before the task.
OPTIONS = r"(?:(?:--manifest-path|-m)[ =]\S+ |-e (?P<env>py3\d+) )"
KINDS = {
    "predict": re.compile(rf"^(pixi|{TWIN}) run {OPTIONS}*predict\s"),
    "demo": re.compile(rf"^(pixi|{TWIN}) run {OPTIONS}*demo\b"),
    "docker": re.compile(r"^docker run\s.*\sghcr\.io/numerai/numerai_predict_py_\d_\d+:\S+\s"),
}
PUBLISHED_IMAGE = re.compile(r"ghcr\.io/numerai/numerai_predict_py_\d_\d+:\S+")
VALUED = re.compile(r"""(?P<flag>--model|--dataset|--benchmarks|--post_url|--post_data|--output_dir)
                        (?P<sep>\s+|=)(?P<value>"[^"]*"|'[^']*'|\S+)""", re.VERBOSE)
FILES = {"live.parquet": "examples/live.parquet", "bench.parquet": "examples/live_benchmark_models.parquet",
         "live_benchmark_models.parquet": "examples/live_benchmark_models.parquet"}
PRESIGNED = "https://bucket.s3.amazonaws.com/"
# The card's commands, run in the clone: README's first code block, exactly.
CARD = ["pixi run -e py312 predict --model model.pkl", "pixi run test-all", "pixi run demo"]
# The installed package's commands (tests/test_package.py runs them), not the clone's.
PACKAGE = re.compile(r"^(\$ )?(pip install\s|numerai-predict(\s|$))")


def where(path: str, number: int) -> str:
    """`README.md:12`, `docs/running.md:40`: where a command is written."""
    return f"{os.path.relpath(path, ROOT)}:{number}"


def code_commands(path: str = README, package: bool = False) -> list[tuple[int, str]]:
    """(first line number, command) of every line in one document's code blocks, `\\` continuations
    joined; the package's lines (PACKAGE; ```python blocks never) left out, or only those with ``package``."""
    commands: list[tuple[int, str]] = []
    lines = open(path).read().splitlines()
    in_block = fenced = transcript = python = False
    pending: tuple[int, str] | None = None
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            python = fenced and line.strip()[3:].strip().lower() in ("python", "py", "pycon")
            in_block = False
            continue
        if python:
            continue
        previous_blank = number == 1 or not lines[number - 2].strip()
        starts = not in_block
        in_block = fenced or (line.startswith("    ") and (in_block or previous_blank)) or \
            (in_block and not line.strip())
        if not in_block or not line.strip():
            continue
        text = line.strip()
        if starts and not pending:
            transcript = text.startswith("$ ")
        if transcript and not pending:
            if not text.startswith("$ "):
                continue  # a transcript's output
            text = text[2:]
        if pending:
            pending = (pending[0], pending[1] + " " + text)
        else:
            pending = (number, text)
        if pending[1].endswith("\\"):
            pending = (pending[0], pending[1][:-1].rstrip())
        else:
            if bool(PACKAGE.match(pending[1])) == package:
                commands.append(pending)
            pending = None
    return commands


def all_commands() -> list[tuple[str, str]]:
    """(where, command) of every command in README.md and docs/*.md."""
    return [(where(path, number), command) for path in DOCUMENTS for number, command in code_commands(path)]


def kind_of(command: str) -> str | None:
    return next((kind for kind, pattern in KINDS.items() if pattern.search(command + " ")), None)


def mentions_predict(command: str) -> bool:
    """Whether a command (its comment aside) runs predict in some way; the package's never counts."""
    if PACKAGE.match(command):
        return False
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return True
    return ("predict" in words or "demo" in words or words[:2] == ["docker", "run"]
            or any("predict.py" in w or "numerai_predict_py" in w for w in words))


COMMANDS = [(w, c) for w, c in all_commands() if kind_of(c)]


def test_every_predict_command_in_readme_is_one_this_test_runs():
    everything = all_commands()
    unknown = [f"{w}: {c}" for w, c in everything if mentions_predict(c) and not kind_of(c)]
    assert not unknown, "commands running predict that this test cannot run yet:\n" + "\n".join(unknown)
    counts = {kind: sum(1 for _, c in COMMANDS if kind_of(c) == kind) for kind in KINDS}
    assert all(counts.values()), f"README.md and docs/ lost a kind of command this test expects: {counts}"
    assert sum(counts.values()) == len([c for _, c in everything if mentions_predict(c)]) == len(COMMANDS)


def in_clone(command: str) -> bool:
    """A command README runs in the clone: pixi without --manifest-path, the twin by a relative path."""
    words = shlex.split(command, comments=True)
    return (words[0] == "pixi" and "--manifest-path" not in command) or \
        (words[0] == "python3" and words[1] == "containers/pypi_env.py")


def test_local_commands_name_the_clone_as_readme_says():
    """pixi finds no manifest in the user's folder: each pixi line names the clone's, the twin's
    its script there, both under the one path README gives for the clone; or it is the card's,
    in the clone."""
    assert f"where your clone is `{CLONE}`" in " ".join(open(README).read().split())
    for at, command in COMMANDS:
        words = shlex.split(command, comments=True)
        if in_clone(command):
            assert words[0] == "python3" or command in CARD, f"{at}: only the card's run in the clone"
        elif words[0] == "pixi":
            assert f"--manifest-path {CLONE}/pixi.toml" in command, f"{at}: {command}"
        elif words[0] == "python3":
            assert command.startswith(f"python3 {CLONE}/containers/pypi_env.py "), f"{at}: {command}"


# --- the world a pasted command finds ----------------------------------------------------------


@pytest.fixture(scope="module")
def moto():
    server, client, url = start_moto()
    for bucket in ("models", "submissions"):
        client.create_bucket(Bucket=bucket)
    yield client, url
    server.stop()


@pytest.fixture
def api():
    """Numerai's GraphQL endpoint and the live data it hands out, on 127.0.0.1."""
    server = ScriptedServer()
    server.graphql = {"v5.3/live.parquet": "/live.parquet",
                      "v5.3/live_benchmark_models.parquet": "/live_benchmark_models.parquet"}
    for name in ("live.parquet", "live_benchmark_models.parquet"):
        with open(os.path.join(ROOT, "examples", name), "rb") as handle:
            server.route("/" + name, (200, handle.read()))
    yield server
    server.close()


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def image_with_api(py311_image, tmp_path_factory):
    """The image plus a fake Numerai API inside its own process (its containers reach no other)."""
    payload = tmp_path_factory.mktemp("payload")
    shutil.copy(os.path.join(SITE, "sitecustomize.py"), payload)
    for name in ("live.parquet", "live_benchmark_models.parquet"):
        shutil.copy(os.path.join(ROOT, "examples", name), payload)
    for path in [payload, *payload.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    tag = f"numerai_predict_readme_test:{uuid.uuid4().hex[:12]}"
    container = docker("create", py311_image).stdout.strip()
    try:
        docker("cp", str(payload), f"{container}:/opt/readme-test")
        docker("commit", "--change", "ENV PYTHONPATH=/opt/readme-test",
               "--change", "ENV NUMERAI_PREDICT_TEST_API=serve:/opt/readme-test", container, tag)
    finally:
        docker("rm", "-f", container, check=False)
    yield tag
    docker("rmi", "-f", tag, check=False)


def user_folder(tmp_path) -> str:
    """An ordinary folder: readable by others (a container's uid 10001 reads the model in it)."""
    folder = tmp_path / "user"
    folder.mkdir()
    folder.chmod(0o755)
    return str(folder)


def shell_env(tmp_path, api_url: str | None, clone: str = ROOT) -> dict[str, str]:
    """A fresh shell's environment: `pixi` is the clone's shim, `docker` the engine's client, no twin active."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(os.path.join(clone, "containers", "pixi_shim.py"), bin_dir / "pixi")
    if os.path.isabs(DOCKER):
        os.symlink(DOCKER, bin_dir / "docker")
    ours = tuple(p for p in (os.environ.get("CONDA_PREFIX"), os.environ.get("VIRTUAL_ENV"),
                             os.path.join(ROOT, ".pixi")) if p)
    path = [str(bin_dir), *(p for p in os.environ["PATH"].split(os.pathsep) if p and not p.startswith(ours))]
    env = {k: v for k, v in os.environ.items()
           if k not in ("INIT_CWD", "PYPI_TWIN", "CONDA_PREFIX", "PIXI_ENVIRONMENT_NAME", "VIRTUAL_ENV",
                        "PYTHONPATH", "PYTEST_CURRENT_TEST", "PIXI_PROJECT_MANIFEST", "PIXI_PROJECT_ROOT",
                        "PIXI_IN_SHELL")}
    env["PATH"] = os.pathsep.join(path)
    if api_url:
        env.update(PYTHONPATH=SITE, NUMERAI_PREDICT_TEST_API=api_url)
    return env


def substitute(at: str, command: str, folder: str, python: str, world) -> tuple[str, dict]:
    """The command with only the image, the presigned URLs and the clone's path replaced, and the
    files it names put in ``folder``; also what the run should leave (expected output folder...)."""
    expect: dict = {"post": None}

    def value(match: re.Match) -> str:
        flag, written = match["flag"], shlex.split(match["value"])[0]
        name = written.removeprefix("$PWD/")
        if flag == "--model" and written.startswith(PRESIGNED):
            key = f"{uuid.uuid4().hex}/model.pkl"
            world.moto()[0].upload_file(os.path.join(ROOT, "tests", "models", f"model_{python}.pkl"), "models", key)
            new = presigner(world.moto()[1]).generate_presigned_url(
                "get_object", Params={"Bucket": "models", "Key": key}, ExpiresIn=600)
            return f"{flag}{match['sep']}{shlex.quote(new)}"
        if flag == "--post_url" and written.startswith(PRESIGNED):
            expect["post"] = key = f"round/{uuid.uuid4().hex}.csv"
            expect["post_fields"] = presigner(world.moto()[1]).generate_presigned_post(
                "submissions", key, Fields={"Content-Type": "text/csv"},
                Conditions=[{"Content-Type": "text/csv"}], ExpiresIn=600)
            return f"{flag}{match['sep']}{shlex.quote(expect['post_fields']['url'])}"
        if flag == "--post_data" and "x-amz-signature=" in written:
            return f"{flag}{match['sep']}__POST_DATA__"
        if flag == "--output_dir":
            expect["output_dir"] = folder if written == "$PWD" else os.path.join(folder, written)
            return match[0]
        if flag == "--model" and "/" not in name and name.endswith(".pkl"):
            shutil.copy(os.path.join(ROOT, "tests", "models", f"model_{python}.pkl"), os.path.join(folder, name))
            os.chmod(os.path.join(folder, name), 0o644)
            return match[0]
        if flag in ("--dataset", "--benchmarks") and name in FILES:
            shutil.copy(os.path.join(ROOT, FILES[name]), os.path.join(folder, name))
            os.chmod(os.path.join(folder, name), 0o644)
            expect[flag] = True
            return match[0]
        pytest.fail(f"{at}: this test does not know what to put for {flag} {written}")

    result = VALUED.sub(value, command)
    if "__POST_DATA__" in result:
        assert expect["post"], f"{at}: --post_data without a presigned --post_url"
        result = result.replace("__POST_DATA__", shlex.quote(urllib.parse.urlencode(expect["post_fields"]["fields"])))
    result = result.replace(CLONE + "/", ROOT + "/")
    return result, expect


class World:
    """The servers a command needs, started only when it needs them."""

    def __init__(self, request):
        self.request = request

    def moto(self):
        return self.request.getfixturevalue("moto")


@pytest.mark.parametrize("at, command", COMMANDS, ids=[f"{w} {c[:70]}" for w, c in COMMANDS])
def test_readme_command_runs_as_written(at, command, tmp_path, request):
    kind = kind_of(command)
    clone = fresh_clone(str(tmp_path))[0] if in_clone(command) else ROOT
    folder = clone if in_clone(command) else user_folder(tmp_path)
    match = KINDS[kind].search(command + " ")
    python = "3_11" if kind == "docker" else (match["env"] or "py312").replace("py3", "3_")
    fetches = kind != "demo" and not ("--dataset" in command and "--benchmarks" in command)
    api = request.getfixturevalue("api") if fetches and kind != "docker" else None
    pasted, expect = substitute(at, command, folder, python, World(request))
    if kind == "docker":
        image = request.getfixturevalue("image_with_api" if fetches else "py311_image")
        pasted = PUBLISHED_IMAGE.sub(image, pasted)
    before = set(os.listdir("/tmp"))
    result = subprocess.run(["bash", "-c", pasted], cwd=folder,
                            env=shell_env(tmp_path, api and api.url + "/graphql", clone),
                            capture_output=True, text=True, timeout=1200)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"{at}: {command}\nran: {pasted}\n{log[-6000:]}"
    saved = re.findall(r"Saved predictions to (\S+)", log)
    assert len(saved) == 1, log[-4000:]
    (csv,) = saved
    # A container's CSV outlives it only in a folder mounted from the host: the user's.
    assert kind != "docker" or expect.get("output_dir") == folder, \
        f"{at}: the CSV would stay in the container: {command}"
    where = folder if kind == "demo" else expect.get("output_dir", "/tmp")
    assert os.path.dirname(csv) == where and os.path.isfile(csv), log[-4000:]
    assert where != "/tmp" or os.path.basename(csv) not in before
    if kind == "docker":
        assert os.stat(csv).st_uid == os.getuid(), "the CSV is not the user's"
    with open(csv, "rb") as handle:
        written = handle.read()
    assert written.startswith(b"id,prediction\n") and written.count(b"\n") > 1
    if where == "/tmp":
        os.remove(csv)
    if expect["post"]:
        client = request.getfixturevalue("moto")[0]
        assert client.get_object(Bucket="submissions", Key=expect["post"])["Body"].read() == written
    if api is not None:
        assert api.count("POST", "/graphql") >= 1, "numerapi's endpoint was never asked"
