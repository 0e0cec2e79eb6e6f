"""The pickle doctor: which environment a pickle needs, what it depends on, whether it is safe.

Everything here reads the pickle's opcodes (numerai_predict.pickles) and never
executes them. ``predict.py --check [--json] --model PATH_OR_URL`` prints the
diagnosis; a normal run refuses what the diagnosis rules out (another Python:
exit 12; unsafe references: exit 16) and adds the verdict to loading failures.
The JSON follows numerai_predict/doctor.schema.json.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

from numerai_predict.errors import PickleVersionError, PredictError, UnsafePickleError
from numerai_predict.numerai import docker_image, environment_name, minor_pair
from numerai_predict.pickles import PickleFacts
from numerai_predict.pythons import EXPERIMENTAL, PINNED, Signs, known_pythons

SCHEMA = "https://github.com/numerai/numerai-predict/doctor.schema.json"
#: Distributions of top-level modules that are not installed here (installed ones are looked up).
DISTRIBUTIONS = {"sklearn": "scikit-learn", "cv2": "opencv-python", "yaml": "PyYAML", "PIL": "pillow",
                 "torch": "torch", "tensorflow": "tensorflow", "keras": "keras", "xgboost": "xgboost",
                 "lightgbm": "lightgbm", "catboost": "catboost", "numerblox": "numerblox"}
#: The doctor's own flags, left out of the commands it prints.
DOCTOR_FLAGS = ("--check", "--json", "--allow-unsafe", "--debug")
#: Extension modules that pickle under a name of their own, and the package that provides them.
PROVIDED_BY = {"_loss": "sklearn"}  # sklearn._loss._loss's classes say module "_loss"
#: Modules of the interpreter itself: always present.
STDLIB = set(getattr(sys, "stdlib_module_names", ())) | {"__builtin__", "copy_reg", "__main__"}


def here() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def made_with(facts: PickleFacts, known: dict[str, Signs]) -> tuple[list[str] | None, list[str]]:
    """The Pythons that could have compiled every code object (None: no code object to tell), with evidence."""
    if not facts.code_objects:
        return None, ["no code objects (nothing compiled is stored by value): any Python can unpickle it "
                      "as far as bytecode goes"]
    candidates = set(known)
    fields = sorted({len(args) for args in facts.code_objects})
    evidence = [f"{len(facts.code_objects)} code object(s), constructor with {'/'.join(map(str, fields))} fields: "
                + fits(v for v, s in known.items() if s.code_fields in fields)]
    for args in facts.code_objects:
        candidates &= {version for version, signs in known.items() if signs.matches(args)}
    evidence.append("bytecode of every code object valid for " + fits(candidates))
    return sorted(candidates, key=minor), evidence


def fits(versions: Any) -> str:
    names = sorted(versions, key=minor)
    return ", ".join(f"Python {v}" for v in names) if names else "none of the known Pythons"


def minor(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def modules(facts: PickleFacts) -> list[dict[str, Any]]:
    """Each top-level module the pickle imports: its distribution, and whether it is installed here."""
    from importlib.util import find_spec

    rows = []
    for module in sorted(facts.modules):
        if module in STDLIB or module == "builtins":
            rows.append({"module": module, "distribution": None, "present": True, "version": here(),
                         "stdlib": True})
            continue
        package = PROVIDED_BY.get(module, module)
        try:
            present = find_spec(package) is not None
        except (ImportError, ValueError):
            present = False
        distribution, found = distribution_of(package) if present else (DISTRIBUTIONS.get(package, package), None)
        rows.append({"module": module, "distribution": distribution, "present": present, "version": found,
                     "stdlib": False})
    return rows


def distribution_of(package: str) -> tuple[str, str | None]:
    """The installed distribution of a top-level package, and its version. The name is tried
    first: importlib.metadata.packages_distributions() reads every installed RECORD (0.5 s)."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    from numerai_predict.pythons import installed_version

    name = DISTRIBUTIONS.get(package, package)
    try:
        return name, installed_version(name)
    except PackageNotFoundError:
        pass
    for name in packages_distributions().get(package, []):
        return name, version(name)
    return name, None


def recorded_versions(facts: PickleFacts, known: dict[str, Signs]) -> list[dict[str, Any]]:
    """Versions the pickle records, against this environment and the environments that pin them."""
    from importlib.metadata import PackageNotFoundError

    from numerai_predict.pythons import installed_version

    rows = []
    found = dict(facts.recorded)
    if any(module == "numpy._core" or module.startswith("numpy._core.") for module, _ in facts.globals):
        found.setdefault("numpy", "2 (numpy._core)")
    elif any(module.startswith("numpy.core") for module, _ in facts.globals):
        found.setdefault("numpy", "1 (numpy.core)")
    for library, recorded in sorted(found.items()):
        try:
            installed: str | None = installed_version(library)
        except (PackageNotFoundError, ValueError):
            installed = None
        wanted = recorded.split(" ")[0].split(".")[:2]
        fitting = sorted((s.environment for s in known.values()
                          if same_minor(s.packages.get(library), wanted)), key=env_order)
        comparable = library in ("scikit-learn", "numpy", "xgboost", "keras")
        rows.append({"library": library, "recorded": recorded, "here": installed,
                     "matches_here": same_minor(installed, wanted) if comparable else None,
                     "environments": fitting})
    return rows


def same_minor(version: str | None, wanted: list[str]) -> bool:
    """Does ``version`` start as ``wanted`` ("1.6" or "2") does?"""
    return version is not None and version.split(".")[:len(wanted)] == wanted


def env_order(name: str) -> int:
    return int(name[3:] or 0)


def verdict(pythons: list[str] | None, unsafe: list[dict[str, str]], known: dict[str, Signs],
            recorded: list[dict[str, Any]], absent: list[str], argv: list[str]) -> dict[str, Any]:
    """Where to run the pickle (or why nowhere), with the commands that do it."""
    from numerai_predict.reproduce import docker_command, image, local_command, user_flags

    offered = sorted(known, key=minor)
    choices = offered if pythons is None else [p for p in offered if p in pythons]
    pinned = [set(row["environments"]) for row in recorded if row["environments"]]
    preferred = [p for p in choices if all(environment_name(p) in envs for envs in pinned)] or choices
    # An experimental Python only when nothing else fits, or when it is the one running (a pickle
    # that tells no Python, or that several could have made, goes to a stable one).
    keep = here() if pythons is not None else None
    preferred = [p for p in preferred if p not in EXPERIMENTAL or p == keep] or preferred
    if not choices:
        reason = ("made with " + (fits(pythons) if pythons else "a Python none of the environments knows "
                  "(newer, or not offered)") + f"; the environments offer {fits(offered)}")
        return {"runnable": False, "environment": None, "image": None, "docker_image": None, "commands": None,
                "experimental": False, "reason": reason + ". Pickle the model again with one of those Pythons."}
    best = here() if here() in preferred and pythons is not None else preferred[-1]
    env = environment_name(best)
    args, values = user_flags([arg for arg in argv if arg not in DOCTOR_FLAGS])
    args.remove("--debug")
    reference, _ = image(minor_pair(best))
    if pythons is None:
        reason = "no code objects tell the Python; " + (
            "the recorded library versions fit " + env if pinned
            else f"any environment loads it ({env} is the newest stable one)")
    else:
        reason = f"made with Python {best}"
    if absent and best == here():
        reason += f"; it imports {', '.join(absent)}, absent from this environment"
    if best in EXPERIMENTAL:
        reason += f"; Python {best} is experimental in numerai-predict (its image may still change)"
    if unsafe:
        reason += "; but it holds unsafe references (see above): do not run it unless you trust its author"
    return {"runnable": not unsafe, "environment": env, "image": reference.split(":")[0],
            "docker_image": docker_image(best), "experimental": best in EXPERIMENTAL,
            "commands": {"local": local_command(env, args), "docker": docker_command(reference, args, values)},
            "reason": reason}


def diagnose(path: str, facts: PickleFacts, shown_as: str | None = None,
             argv: list[str] | None = None) -> dict[str, Any]:
    """The whole diagnosis, as the JSON schema describes it; its commands carry ``argv``'s flags."""
    known = known_pythons()
    pythons, evidence = made_with(facts, known)
    unsafe = [{"module": u.module, "name": u.name, "reason": u.reason} for u in facts.unsafe]
    calls = [dataclasses.asdict(call) for call in facts.load_calls]
    recorded = recorded_versions(facts, known)
    imported = modules(facts)
    absent = [row["module"] for row in imported if not row["present"]]
    return {
        "$schema": SCHEMA,
        "pickle": shown_as or path,
        "size_bytes": os.path.getsize(path),
        "protocol": facts.protocol,
        "python": {"made_with": pythons, "evidence": evidence, "known": sorted(known, key=minor),
                   "this": here(), "fits_this": pythons is None or here() in pythons},
        "modules": imported,
        "recorded_versions": recorded,
        "unsafe": unsafe,
        "load_time_calls": calls,
        "referenced": [{"module": module, "name": name} for module, name in facts.referenced],
        "verdict": verdict(pythons, unsafe, known, recorded, absent, argv or ["--model", path]),
    }


def exit_code(diagnosis: dict[str, Any]) -> int:
    """0: some environment can run it and it is safe; 16: unsafe references; 12: no environment fits."""
    if diagnosis["unsafe"]:
        return UnsafePickleError.exit_code
    return 0 if diagnosis["verdict"]["runnable"] else PickleVersionError.exit_code


def render(diagnosis: dict[str, Any]) -> str:
    """The human-readable report."""
    python, v = diagnosis["python"], diagnosis["verdict"]
    made = ", ".join(python["made_with"]) if python["made_with"] else (
        "unknown (no code objects)" if python["made_with"] is None else "unknown: none of " + ", ".join(
            python["known"]) + " (a newer or older Python?)")
    lines = [f"Pickle:    {diagnosis['pickle']} ({diagnosis['size_bytes']:,} bytes, protocol {diagnosis['protocol']})",
             f"Made with: Python {made}" if python["made_with"] else f"Made with: {made}"]
    lines += [f"           - {line}" for line in python["evidence"]]
    lines.append("Modules:")
    for row in diagnosis["modules"]:
        where = "standard library" if row["stdlib"] else (
            f"{row['distribution']} {row['version']}" if row["present"] else f"{row['distribution']}: ABSENT here")
        lines.append(f"           {row['module']:<22} {where}")
    for row in diagnosis["recorded_versions"]:
        if row["library"] in PINNED:
            fit = "; fits " + (", ".join(row["environments"]) or "no environment's pins")
            lines.append(f"Recorded:  {row['library']} {row['recorded']} (here: {row['here'] or 'absent'}{fit})")
        else:  # a file format, or a library pixi.toml leaves unpinned
            here_ = f" (here: {row['here']})" if row["here"] else ""
            lines.append(f"Recorded:  {row['library']} {row['recorded']}{here_}")
    lines += load_time_lines(diagnosis["load_time_calls"])
    lines.append("Unsafe:    " + ("none" if not diagnosis["unsafe"] else ""))
    lines += [f"           {u['module']}.{u['name']}: {u['reason']}" for u in diagnosis["unsafe"]]
    if v["environment"]:
        lines += [f"Verdict:   {'run it in' if v['runnable'] else 'REFUSED; it would need'} {v['environment']} "
                  f"({v['reason']})",
                  f"           image {v['image']}, numerapi docker_image={v['docker_image']!r}",
                  f"    {v['commands']['local']}", f"    {v['commands']['docker']}"]
    else:
        lines.append(f"Verdict:   no environment can run it: {v['reason']}")
    return "\n".join(lines)


def load_time_lines(calls: list[dict[str, str]]) -> list[str]:
    """What the unpickler would invoke, refused calls first, each with its verdict and why."""
    counts = {v: sum(call["verdict"] == v for call in calls) for v in ("allowed", "unknown", "unsafe")}
    lines = ["Loading:   " + (", ".join(f"{n} {v}" for v, n in counts.items() if n) or "calls nothing")
             + (" (calls the unpickler would make; numerai_predict/allowlist.py says what may run)" if calls else "")]
    order = {"unsafe": 0, "unknown": 1, "allowed": 2}
    for call in sorted(calls, key=lambda c: order[c["verdict"]]):
        lines.append(f"           {call['verdict']:<8} {shown(call['module'], call['name'])} [{call['how']}]: "
                     f"{call['reason']}")
    return lines


def summary(diagnosis: dict[str, Any]) -> str:
    """One sentence for a failure's message."""
    v, made = diagnosis["verdict"], diagnosis["python"]["made_with"]
    told = f"made with Python {' or '.join(made)}" if made else (
        "Python unknown (no code objects)" if made is None else "made with an unknown Python")
    where = (f"run it in {v['environment']} (image {v['image']}, numerapi docker_image={v['docker_image']!r})"
             if v["environment"] else "no environment can run it")
    return f"doctor: {told}; {where}"


def refuse_if_unfit(facts: PickleFacts, path: str, allow_unsafe: bool = False) -> None:
    """Before loading: refuse another Python's pickle (12) and unsafe references (16).
    On the run's path, only what decides that is computed; the full diagnosis (module
    and version lookups) only for a message."""
    name = os.path.basename(path)
    unsafe = facts.unsafe
    if unsafe and not allow_unsafe:
        refs = "; ".join(f"{shown(u.module, u.name)} ({u.reason})" for u in unsafe)
        raise UnsafePickleError(f"{name} would call {refs} while loading, so it was not loaded")
    known = known_pythons()
    made, _ = made_with(facts, known)
    if made is not None and here() not in made:
        told = "Python " + " or ".join(made) if made else "a Python none of the environments knows"
        environment = diagnose(path, facts, name)["verdict"]["environment"] if made else None
        error = PickleVersionError(
            f"{name} holds code compiled by {told}, but this is Python {here()}",
            advice=(f"Run it in the {environment} environment (or its image), "
                    f"or pickle it again with Python {here()}." if made else
                    f"Pickle it again with one of {', '.join(sorted(known, key=minor))}."))
        error.pythons = tuple((int(a), int(b)) for a, b in (m.split(".") for m in made))
        raise error


def shown(module: str, name: str) -> str:
    """A callable as a user reads it: module.name, an import, or the pickle's own code by name."""
    if name == "<module>":
        return f"import {module}"
    return name if module in ("<pickle>", "<object>") else f"{module}.{name}"


def with_verdict(error: PredictError, facts: PickleFacts, path: str) -> PredictError:
    """A loading failure's message, with the doctor's verdict added."""
    error.message = f"{error.message} ({summary(diagnose(path, facts, os.path.basename(path)))})"
    return error
