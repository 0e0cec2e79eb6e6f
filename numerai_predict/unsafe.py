"""Globals a pickle can reach that act when it is loaded, and why each is unsafe.

The pickle doctor (numerai_predict.pickles) reads a pickle's globals without
executing it and asks ``unsafe_reason(module, name)`` about each one.

Why a table of our own (measured on tests/malicious_pickles.py's 46 crafted pickles
and the 45 committed test pickles, all benign, most of them cloudpickled):

- picklescan 1.0.5 (MIT; on PyPI, no conda-forge package found) flags 42 of 46,
  missing _bootsubprocess.check_output, the dotted names shlex:os.system and
  tempfile:_os.system, and marshal.loads + types.FunctionType (only "suspicious").
  But it calls 40 of the 45 committed pickles infected: cloudpickle's own
  _make_function, _builtin_type, subimport, _make_cell, _function_setstate and
  functools.partial are "dangerous" to it (and builtins.getattr), so every
  cloudpickled model, which is how Numerai models are made, would be refused.
  --strict flags 46 of 46 by denying everything it does not know, every
  scikit-learn, LightGBM and XGBoost class included.
- fickling 0.1.12 (LGPL-3.0; conda-forge has 0.1.10) flags 46 of 46 and all 45
  committed pickles (cloudpickle "overtly malicious"); it raises
  NotImplementedError on BYTEARRAY8 (any protocol-5 bytearray: 23 of the 45
  committed pickles, and the protocol-5 attack is then flagged without naming
  os.system; its CLI prints a traceback), and its wheel cannot be imported on
  Python < 3.12 unless typing_extensions happens to be installed.

Both take milliseconds (largest committed pickle, 81 kB: picklescan 3.1 ms,
fickling 2.1 ms until it stops at BYTEARRAY8; on a 31 kB one it parses, 0.7 ms
and 7.3 ms; inspect_pickle 3.6 ms), so speed decides nothing. Neither tells
cloudpickle's machinery from an attack, so this module names what acts (a shell,
a process, a socket, an import by name, code from text or bytes, a nested
pickle, a file write) and leaves out what cloudpickle, numpy, scikit-learn,
torch and keras legitimately use (``builtins.getattr``,
``cloudpickle.cloudpickle.subimport``, ``_make_function``, ``types.CodeType``
through ``_builtin_type``, ``torch.storage._load_from_bytes``...).

A name table cannot see arguments: ``getattr(obj, 'touch')()`` or a
cloudpickled function called while loading use only safe names.
``unsafe_call_reason`` names the calls whose *result* must not be called at
load time, for the symbolic scan to apply to a REDUCE whose callable is itself
a call.
"""

from __future__ import annotations

import keyword

#: (module, name) -> reason. ``"*"`` stands for every name in the module and in its submodules.
UNSAFE: dict[tuple[str, str], str] = {
    # processes and the shell
    ("os", "*"): "calls the operating system (processes, files, environment)",
    ("os", "system"): "runs a shell command",
    ("os", "popen"): "runs a shell command",
    ("os", "fork"): "starts a process",
    ("os", "forkpty"): "starts a process",
    **{("os", name): "replaces the process with a command" for name in (
        "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe")},
    **{("os", name): "starts a process" for name in (
        "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "startfile")},
    ("os", "posix_spawn"): "starts a process",
    ("os", "posix_spawnp"): "starts a process",
    ("os", "kill"): "sends a signal to a process",
    ("os", "killpg"): "sends a signal to a process group",
    ("os", "remove"): "deletes a file",
    ("os", "unlink"): "deletes a file",
    ("os", "rmdir"): "deletes a directory",
    ("os", "removedirs"): "deletes directories",
    ("os", "rename"): "moves a file",
    ("os", "replace"): "moves a file",
    ("os", "open"): "opens any file",
    ("os", "putenv"): "changes the environment",
    ("os", "chdir"): "changes the working directory",
    ("subprocess", "*"): "runs a command in a new process",
    ("_posixsubprocess", "*"): "runs a command in a new process",
    ("_bootsubprocess", "*"): "runs a command in a new process",
    ("pty", "*"): "runs a command in a pseudo-terminal",
    ("multiprocessing", "*"): "starts processes",
    ("webbrowser", "*"): "starts a browser process",
    ("pydoc", "*"): "runs a pager command and imports modules by name",
    ("builtins", "help"): "runs a pager command and imports modules by name",
    # code from text or bytes
    ("builtins", "eval"): "evaluates Python code from a string",
    ("builtins", "exec"): "executes Python code from a string",
    ("builtins", "compile"): "compiles Python code from a string",
    ("builtins", "breakpoint"): "starts the debugger, which runs any command",
    ("code", "*"): "runs Python code from a string (interactive interpreter)",
    ("codeop", "*"): "compiles Python code from a string",
    ("marshal", "*"): "rebuilds code objects from bytes",
    ("types", "FunctionType"): "makes a function from a code object",
    ("types", "LambdaType"): "makes a function from a code object",
    ("ctypes", "*"): "calls native code (any C function, e.g. libc's system)",
    ("_ctypes", "*"): "calls native code (any C function, e.g. libc's system)",
    # imports by name
    ("builtins", "__import__"): "imports any module by name",
    ("importlib", "*"): "imports any module by name",
    ("runpy", "*"): "runs a module or script by name",
    ("pkgutil", "*"): "imports any module by name",
    ("zipimport", "*"): "imports modules from any zip file",
    ("sys", "*"): "reaches the interpreter's state (every loaded module, frames, exit)",
    ("builtins", "globals"): "reaches a module's namespace",
    ("builtins", "locals"): "reaches a frame's namespace",
    ("builtins", "vars"): "reaches any object's namespace",
    ("builtins", "setattr"): "changes any attribute (patches library code)",
    ("builtins", "delattr"): "deletes any attribute (patches library code)",
    ("operator", "attrgetter"): "reaches any attribute by a dotted path",
    ("operator", "methodcaller"): "calls any method by name",
    # network
    ("socket", "*"): "opens network connections",
    ("ssl", "*"): "opens network connections",
    ("http", "*"): "opens network connections",
    ("urllib", "*"): "opens network connections or reads any file by URL",
    ("ftplib", "*"): "opens network connections",
    ("smtplib", "*"): "opens network connections",
    ("telnetlib", "*"): "opens network connections",
    ("asyncio", "*"): "opens network connections and starts processes",
    # files
    ("builtins", "open"): "opens any file, for writing too",
    ("io", "open"): "opens any file, for writing too",
    ("io", "open_code"): "opens any file",
    ("io", "FileIO"): "opens any file, for writing too",
    ("shutil", "*"): "copies, moves or deletes files, or runs archive commands",
    ("builtins", "exit"): "stops the interpreter",
    ("builtins", "quit"): "stops the interpreter",
    # nested pickles: their content is not what the doctor read
    ("pickle", "*"): "loads a nested pickle the scan cannot see",
    ("shelve", "*"): "loads pickles from any file",
    ("dill", "*"): "loads a nested pickle the scan cannot see",
    ("cloudpickle", "load"): "loads a nested pickle the scan cannot see",
    ("cloudpickle", "loads"): "loads a nested pickle the scan cannot see",
    ("joblib", "load"): "loads pickles from any file",
    ("pandas", "read_pickle"): "loads pickles from any file or URL",
    ("pandas.io.pickle", "read_pickle"): "loads pickles from any file or URL",
    ("numpy", "load"): "loads pickles from any file",
    ("torch", "load"): "loads pickles from any file",
}

#: Other spellings of the same modules: C implementations, Windows, Python 2 (as protocol 0-2 pickles from
#: Python 2 write them; Python 3 maps them back when loading).
ALIASES: dict[str, str] = {
    "posix": "os",
    "nt": "os",
    "__builtin__": "builtins",
    "exceptions": "builtins",
    "_pickle": "pickle",
    "cPickle": "pickle",
    "_socket": "socket",
    "_ssl": "ssl",
    "_operator": "operator",
    "_io": "io",
    "_multiprocessing": "multiprocessing",
    "commands": "subprocess",
    "popen2": "subprocess",
    "urllib2": "urllib",
    "httplib": "http",
    "_asyncio": "asyncio",
}

#: Attributes that lead from any object to every other (a module's globals, the builtins, classes' subclasses).
ESCAPES = frozenset({
    "__globals__", "__builtins__", "__dict__", "__class__", "__subclasses__", "__base__", "__bases__",
    "__mro__", "__closure__", "__code__", "__self__", "__func__", "__loader__", "__spec__",
    "__getattribute__", "__import__", "__reduce__", "__reduce_ex__", "f_globals", "f_locals", "f_back",
    "gi_frame", "cr_frame", "tb_frame",
})

#: A call whose *result* is called while loading: (module, name) -> why. For the symbolic scan's REDUCE
#: when its callable is itself a call (cloudpickle's ``_builtin_type('CodeType')(...)`` and
#: ``_builtin_type('MethodType')(...)(...)`` are legitimate and not listed).
UNSAFE_CALL_RESULTS: dict[tuple[str, str], str] = {
    ("builtins", "getattr"): "calls a method looked up by name while loading",
    ("cloudpickle.cloudpickle", "_make_function"): "runs pickled code while loading",
    ("cloudpickle.cloudpickle_fast", "_make_function"): "runs pickled code while loading",
    ("types", "FunctionType"): "runs pickled code while loading",
    ("types", "LambdaType"): "runs pickled code while loading",
}


def canonical(module: str) -> str:
    """The module's usual name: ``posix.path`` -> ``os.path``, ``__builtin__`` -> ``builtins``."""
    top, dot, rest = module.partition(".")
    return ALIASES.get(top, top) + dot + rest


def module_reason(module: str, name: str) -> str | None:
    """The reason for ``name`` in ``module``, or for every name in it or in a parent package."""
    module = canonical(module)
    if (module, name) in UNSAFE:
        return UNSAFE[module, name]
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        reason = UNSAFE.get((".".join(parts[:end]), "*"))
        if reason:
            return reason
    return None


def is_name(text: str) -> bool:
    """A dotted Python identifier (what a real module or qualified name is)."""
    return all(part.isidentifier() and not keyword.iskeyword(part) for part in text.split("."))


def unsafe_reason(module: str, name: str) -> str | None:
    """Why the global ``module.name`` is unsafe to load, or None when it is not known to be.

    ``name`` may be dotted (protocol 4 qualified names are looked up attribute by
    attribute), so besides ``(module, first part)`` every step of the path is
    checked: a part naming an unsafe module (``os``, or ``_os`` as modules often
    import it), an unsafe (part, next part) pair, or an attribute that escapes to
    everything (``__globals__``...).
    """
    if not (is_name(module) and is_name(name)):
        return "a global whose name is not an identifier (computed while loading, or forged)"
    parts = name.split(".")
    reason = module_reason(module, parts[0]) or module_reason(module, name)
    if reason:
        return reason
    for index, part in enumerate(parts):
        if part in ESCAPES:
            return f"reaches {part}, which leads to any object"
        path = f"{module}.{'.'.join(parts[:index + 1])}"
        for candidate in (part, part.lstrip("_")):  # modules import each other as _os, _sys...
            after = parts[index + 1] if index + 1 < len(parts) else "*"
            reason = module_reason(candidate, after) or module_reason(candidate, "*")
            if reason and candidate:
                return f"{reason} (through {path})"
    return None


def unsafe_call_reason(module: str, name: str) -> str | None:
    """Why calling what ``module.name(...)`` returned, while loading, is unsafe; None when it is not known to be."""
    return UNSAFE_CALL_RESULTS.get((canonical(module), name))
