"""Replay a GitHub Actions workflow here: every `run:` step, as a runner would
execute it on a push to main, with `pixi` on PATH answered by the PyPI twin.

What a runner gives is given: a 40-character `github.sha`, `CI=true`, the
`GITHUB_*` and `RUNNER_*` variables, `$GITHUB_OUTPUT`/`$GITHUB_ENV` files read
back into `steps.*.outputs` and `needs.*.outputs`, matrices expanded from the
real outputs of earlier jobs, `if:` conditions and `${{ }}` expressions
evaluated, bash with `-eo pipefail`. Steps of actions (`uses:`) cannot run
here and are reported as GitHub-only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import subprocess
from typing import Any

import yaml

# ---- expressions --------------------------------------------------------------

TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>==|!=|&&|\|\||!|\(|\)|,)"
                   r"|(?P<name>[A-Za-z_][\w.-]*(?:\.\*)?))")


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        match = TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"cannot read expression at {text[pos:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class Evaluator:
    """The part of GitHub's expression language the workflows use."""

    def __init__(self, context: dict[str, Any], workspace: str):
        self.context, self.workspace = context, workspace

    def evaluate(self, text: str) -> Any:
        self.tokens, self.pos = tokenize(text), 0
        value = self.disjunction()
        if self.pos != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.pos][1]!r} in {text!r}")
        return value

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        self.pos += 1
        return self.tokens[self.pos - 1]

    def disjunction(self) -> Any:
        return self.chain("||", self.conjunction)

    def conjunction(self) -> Any:
        return self.chain("&&", self.comparison)

    def chain(self, op: str, operand: Any) -> Any:
        """``a op b op ...``, left to right, with GitHub's value-returning || and &&."""
        value = operand()
        while self.peek() == op:
            self.take()
            right = operand()
            value = (value or right) if op == "||" else (value and right)
        return value

    def comparison(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not truthy(self.comparison())
        value = self.primary()
        if self.peek() in ("==", "!="):
            op = self.take()[1]
            equal = loose(value) == loose(self.primary())
            return equal if op == "==" else not equal
        return value

    def primary(self) -> Any:
        kind, text = self.take()
        if text == "(":
            value = self.disjunction()
            self.take()
            return value
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text)
        if self.peek() == "(":
            self.take()
            args = []
            while self.peek() != ")":
                args.append(self.disjunction())
                if self.peek() == ",":
                    self.take()
            self.take()
            return self.call(text, args)
        return {"true": True, "false": False, "null": None}.get(text, self.lookup(text))

    def call(self, name: str, args: list[Any]) -> Any:
        functions = {
            "fromjson": lambda s: json.loads(s),
            "tojson": lambda v: json.dumps(v),
            "hashfiles": self.hash_files,
            "startswith": lambda s, p: str(s).lower().startswith(str(p).lower()),
            "contains": lambda s, p: str(p).lower() in str(s).lower(),
            "success": lambda: self.context["job_status"] == "success",
            "failure": lambda: self.context["job_status"] == "failure",
            "always": lambda: True,
        }
        return functions[name.lower()](*args)

    def hash_files(self, *patterns: str) -> str:
        digest = hashlib.sha256()
        found = False
        for pattern in patterns:
            path = os.path.join(self.workspace, pattern)
            if os.path.isfile(path):
                found = True
                with open(path, "rb") as handle:
                    digest.update(hashlib.sha256(handle.read()).digest())
        return digest.hexdigest() if found else ""

    def lookup(self, path: str) -> Any:
        value: Any = self.context
        for part in path.split("."):
            if isinstance(value, dict):
                # Context property names are case-insensitive.
                value = next((v for k, v in value.items() if k.lower() == part.lower()), None)
            else:
                return None
        return value


def truthy(value: Any) -> bool:
    return bool(value) and value != "false"


def loose(value: Any) -> Any:
    """GitHub compares loosely: booleans and numbers against their string forms."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value).lower() if isinstance(value, str) else value


def render(value: Any, evaluator: Evaluator) -> Any:
    """Evaluate the ${{ }} of a workflow value (a lone expression keeps its type)."""
    if isinstance(value, dict):
        return {k: render(v, evaluator) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, evaluator) for v in value]
    if not isinstance(value, str) or "${{" not in value:
        return value
    whole = re.fullmatch(r"\s*\$\{\{(.*?)\}\}\s*", value, re.DOTALL)
    if whole:
        return evaluator.evaluate(whole.group(1))
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: as_text(evaluator.evaluate(m.group(1))), value)


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


# ---- jobs and steps -------------------------------------------------------------


@dataclasses.dataclass
class StepResult:
    workflow: str
    job: str
    step: str
    outcome: str  # passed, failed, github-only, skipped, not-replayed
    detail: str = ""

    def line(self) -> str:
        return f"{self.workflow} / {self.job} / {self.step}: {self.outcome}" + (
            f" ({self.detail})" if self.detail else "")


@dataclasses.dataclass
class Replay:
    """One push to main, replayed in ``workspace`` (a fresh clone)."""

    workspace: str
    temp: str
    path: str  # PATH for steps: the pixi shim first
    sha: str
    owner: str = "numerai"
    ref: str = "refs/heads/main"
    rewrite: dict[str, str] = dataclasses.field(default_factory=dict)  # text replaced in env values
    keep_matrix: Any = None  # callable(job, combination) -> reason to skip, or ""
    extra_env: dict[str, str] = dataclasses.field(default_factory=dict)
    # Job outputs to stand in for a state of the repository (e.g. after the lock PR is merged).
    override_outputs: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    timeout: float = 3600
    results: list[StepResult] = dataclasses.field(default_factory=list)
    log: list[str] = dataclasses.field(default_factory=list)  # each step's script and output

    def github(self) -> dict[str, Any]:
        return {"sha": self.sha, "ref": self.ref, "ref_name": self.ref.rsplit("/", 1)[-1],
                "event_name": "push", "repository_owner": self.owner, "actor": "replay",
                "repository": f"{self.owner}/numerai-predict", "workspace": self.workspace}

    def run_workflow(self, name: str) -> dict[str, dict[str, Any]]:
        """Every job of a workflow in dependency order; returns each job's outcome and outputs."""
        with open(os.path.join(self.workspace, ".github", "workflows", name)) as handle:
            workflow = yaml.safe_load(handle)
        jobs: dict[str, dict[str, Any]] = {}
        for job_id in job_order(workflow["jobs"]):
            jobs[job_id] = self.run_job(name, workflow, job_id, jobs)
            jobs[job_id]["outputs"].update(self.override_outputs.get(job_id, {}))
        return jobs

    def run_job(self, name: str, workflow: dict, job_id: str, done: dict) -> dict[str, Any]:
        job = workflow["jobs"][job_id]
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        context = {"github": self.github(), "needs": {n: done[n] for n in needs}, "inputs": {},
                   "secrets": {"GITHUB_TOKEN": "replay-token"}, "vars": {},
                   "runner": {"temp": self.temp, "os": "Linux"}, "job_status": "success"}
        if any(done[n]["result"] != "success" for n in needs):
            self.results.append(StepResult(name, job_id, "(job)", "skipped", "a needed job did not succeed"))
            return {"result": "skipped", "outputs": {}}
        evaluator = Evaluator(context, self.workspace)
        if "if" in job and not truthy(evaluator.evaluate(strip_braces(job["if"]))):
            self.results.append(StepResult(name, job_id, "(job)", "skipped", f"if: {job['if']}"))
            return {"result": "skipped", "outputs": {}}
        outputs: dict[str, Any] = {}
        result = "success"
        for combination in matrix(job, evaluator):
            label = job_id + (f" ({', '.join(str(v) for v in combination.values())})" if combination else "")
            reason = self.keep_matrix(job_id, combination) if self.keep_matrix else ""
            if reason:
                self.results.append(StepResult(name, label, "(job)", "not-replayed", reason))
                continue
            context["matrix"] = combination
            job_outputs, ok = self.run_steps(name, workflow, job, label, dict(context))
            outputs.update(job_outputs)
            result = result if ok else "failure"
        return {"result": result, "outputs": outputs}

    def run_steps(self, name: str, workflow: dict, job: dict, label: str,
                  context: dict) -> tuple[dict[str, Any], bool]:
        context["steps"], context["env"] = {}, {}
        evaluator = Evaluator(context, self.workspace)
        context["env"] = self.rewritten(render(workflow.get("env", {}), evaluator))
        context["env"].update(self.rewritten(render(job.get("env", {}), evaluator)))
        ok = True
        for index, step in enumerate(job["steps"]):
            title = step.get("name") or step.get("id") or step.get("uses") or step["run"].splitlines()[0]
            condition = strip_braces(step.get("if", "success()"))
            context["job_status"] = "success" if ok else "failure"
            if not truthy(evaluator.evaluate(condition)):
                self.results.append(StepResult(name, label, title, "skipped", f"if: {condition}"))
                continue
            if "uses" in step:
                self.results.append(StepResult(name, label, title, "github-only", step["uses"].split("@")[0]))
                continue
            outputs, code, tail = self.run_step(step, context, evaluator, index)
            context["steps"][step.get("id", f"step{index}")] = {"outputs": outputs,
                                                                "outcome": "success" if code == 0 else "failure"}
            self.results.append(StepResult(name, label, title, "passed" if code == 0 else "failed",
                                           "" if code == 0 else f"exit {code}: {tail}"))
            ok = ok and code == 0
        job_outputs = {k: render(v, evaluator) for k, v in job.get("outputs", {}).items()}
        return job_outputs, ok

    def run_step(self, step: dict, context: dict, evaluator: Evaluator, index: int) -> tuple[dict, int, str]:
        env = dict(context["env"])
        env.update(self.rewritten(render(step.get("env", {}), evaluator)))
        script = render(step["run"], evaluator)
        output_file = os.path.join(self.temp, f"output-{index}")
        env_file = os.path.join(self.temp, f"env-{index}")
        for path in (output_file, env_file):
            open(path, "w").close()
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "RUNNER_"))}
        environ.update(self.extra_env)
        environ.update({"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_SHA": self.sha, "GITHUB_REF": self.ref,
                        "GITHUB_REF_NAME": self.ref.rsplit("/", 1)[-1], "GITHUB_EVENT_NAME": "push",
                        "GITHUB_REPOSITORY": f"{self.owner}/numerai-predict",
                        "GITHUB_REPOSITORY_OWNER": self.owner, "GITHUB_WORKSPACE": self.workspace,
                        "GITHUB_OUTPUT": output_file, "GITHUB_ENV": env_file, "RUNNER_TEMP": self.temp,
                        "RUNNER_OS": "Linux", "PATH": self.path})
        environ.update({k: as_text(v) for k, v in env.items()})
        cwd = os.path.join(self.workspace, render(step.get("working-directory", "."), evaluator))
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd,
                                env=environ, capture_output=True, text=True, timeout=self.timeout)
        log = result.stdout + result.stderr
        self.log.append(f"$ {script.strip()}\n{log}")
        with open(env_file) as handle:
            context["env"].update(read_key_values(handle.read()))
        with open(output_file) as handle:
            return read_key_values(handle.read()), result.returncode, " | ".join(log.strip().splitlines()[-3:])

    def rewritten(self, values: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in values.items():
            for old, new in self.rewrite.items():
                value = value.replace(old, new) if isinstance(value, str) else value
            out[key] = value
        return out


def strip_braces(condition: str) -> str:
    match = re.fullmatch(r"\s*\$\{\{(.*)\}\}\s*", str(condition), re.DOTALL)
    return match.group(1) if match else str(condition)


def read_key_values(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT / $GITHUB_ENV: `key=value` lines and `key<<DELIM` blocks."""
    values, lines = {}, iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            values[key] = "\n".join(itertools.takewhile(lambda x, d=delimiter: x != d, lines))
        elif "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


def job_order(jobs: dict[str, dict]) -> list[str]:
    order: list[str] = []
    while len(order) < len(jobs):
        for job_id, job in jobs.items():
            needs = job.get("needs", [])
            needs = [needs] if isinstance(needs, str) else needs
            if job_id not in order and all(n in order for n in needs):
                order.append(job_id)
    return order


def matrix(job: dict, evaluator: Evaluator) -> list[dict[str, Any]]:
    """The job's matrix combinations, GitHub's way (include extends or adds)."""
    spec = render(job.get("strategy", {}).get("matrix"), evaluator)
    if not spec:
        return [{}]
    keys = [k for k in spec if k not in ("include", "exclude")]
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(spec[k] for k in keys))]
    for extra in spec.get("include", []):
        matching = [c for c in combos if all(c.get(k) == v for k, v in extra.items() if k in keys)]
        for combo in matching:
            combo.update(extra)
        if not matching:
            combos.append(dict(extra))
    return combos
