"""The doctor's verdict on each callable a pickle invokes while it loads.

numerai_predict.pickles names the calls (without running any); this module
judges them against numerai_predict.allowlist: allowed (with the list's
reason), unsafe (the denylist's reason, or the pickle's own code), or unknown
(not on the list: refused too, since the list is what may act).
"""

from __future__ import annotations

from collections.abc import Iterator

from numerai_predict.allowlist import LIBRARY_CODE, LOAD_TIME_METHODS, allowed_reason, import_reason, normal
from numerai_predict.pickles import (
    Attribute,
    BuiltinType,
    Call,
    Global,
    Instance,
    LoadCall,
    Module,
    OwnClass,
    OwnFunction,
)
from numerai_predict.unsafe import ESCAPES, unsafe_call_reason, unsafe_reason

OWN_CODE = "runs the pickle's own code while loading"
UNKNOWN = "not on the doctor's allowlist of what may run while a pickle loads"
#: Methods that run while loading on a subclass of a builtin container (APPENDS, SETITEMS, ADDITEMS).
CONTAINER_METHODS = ("extend", "append", "add")
#: Modules whose functions only compute with paths and strings: a reference to them is harmless.
PURE_MODULES = ("os.path", "posixpath", "ntpath", "genericpath")


def judge_calls(calls: list[tuple[object, str]], own_classes: list[OwnClass]) -> list[LoadCall]:
    """Each distinct load-time call with its verdict, in the order the unpickler meets them, then the
    methods of the pickle's own classes that would run while it loads."""
    seen: dict[tuple[str, str, str], LoadCall] = {}
    for callable_, how in calls:
        call = judge(callable_, how)
        seen.setdefault((call.module, call.name, call.how), call)
    for cls in own_classes:
        for method in sorted(own_load_methods(cls)):
            call = LoadCall("<pickle>", f"{cls.name}.{method}", "method", "unsafe",
                            f"{OWN_CODE} (a class pickled by value defines {method})")
            seen.setdefault((call.module, call.name, call.how), call)
    return list(seen.values())


def own_load_methods(cls: OwnClass) -> set[str]:
    """Methods of a class pickled by value that run while loading whether or not an object of it is
    made (a subclass made, an item set, a lookup): ``__setstate__`` and the like are judged per object."""
    methods = cls.methods & set(LOAD_TIME_METHODS)
    bases = cls.bases[0] if isinstance(cls.bases, tuple) and len(cls.bases) == 1 else cls.bases
    if isinstance(bases, tuple) and any(isinstance(base, Global) and base.module == "builtins" for base in bases):
        methods |= cls.methods & set(CONTAINER_METHODS)
    return methods


def judge(callable_: object, how: str) -> LoadCall:
    """The verdict on invoking ``callable_`` (as the scan sees it) ``how``."""
    if how == "import":
        name = callable_.name if isinstance(callable_, Module) else "<computed>"
        ok, reason = import_reason(name) if isinstance(callable_, Module) else (False, "a module named while loading")
        return LoadCall(name, "<module>", how, "allowed" if ok else ("unsafe" if "acts" in reason else "unknown"),
                        f"imports {reason}" if ok else f"imports {reason}, which runs its code")
    if isinstance(callable_, Global):
        return judge_global(callable_.module, callable_.name, how)
    if isinstance(callable_, BuiltinType):
        return judge_global("types", callable_.name, how)
    if isinstance(callable_, OwnFunction):
        return judge_own_function(callable_, how)
    if isinstance(callable_, OwnClass):
        return judge_own_class(callable_, how)
    if isinstance(callable_, Instance):
        return judge_instance(callable_, how)
    if isinstance(callable_, Attribute):
        if callable_.name in ESCAPES:
            return LoadCall("<object>", callable_.name, how, "unsafe",
                            f"reaches {callable_.name}, which leads to any object")
        own = isinstance(callable_.owner, (OwnClass, OwnFunction)) or (
            isinstance(callable_.owner, Instance) and isinstance(callable_.owner.cls, OwnClass))
        return LoadCall("<object>", f"<...>.{callable_.name}", how, "unsafe" if own else "unknown", OWN_CODE if own
                        else f"calls a method looked up by name on an object built while loading; {UNKNOWN}")
    if isinstance(callable_, Call) and callable_.func == BuiltinType("MethodType") and isinstance(
            callable_.args, tuple):
        return judge(callable_.args[0], how)  # a bound method: its function runs
    if isinstance(callable_, Call) and isinstance(callable_.func, Global):
        module, name = callable_.func.module, callable_.func.name
        why = unsafe_call_reason(module, name)
        return LoadCall(module, f"{name}(...)(...)", how, "unsafe" if why else "unknown",
                        why or f"calls what {name}(...) returned; {UNKNOWN}")
    return LoadCall("<object>", "<unnamed>", how, "unknown", f"calls an object the doctor cannot name; {UNKNOWN}")


def judge_own_function(function: OwnFunction, how: str) -> LoadCall:
    """A function pickled by value runs the pickle's own code, unless it is a library's function that
    cloudpickle had to pickle by value (a classmethod), recognised by what its code can reach."""
    reason = library_code_reason(function.code)
    if reason:
        return LoadCall("<pickle>", function.name, how, "allowed", reason)
    return LoadCall("<pickle>", function.name, how, "unsafe", f"{OWN_CODE} (a function pickled by value)")


def library_code_reason(code: tuple[object, ...]) -> str | None:
    """Why a code object is a library's own function: its name is on LIBRARY_CODE, it names (co_names)
    nothing beyond what the entry lists, and it has no closure and no nested code (types.CodeType's
    arguments: 7 consts, 8 names, 11 name; the free variables come after the line table)."""
    if len(code) < 16 or not isinstance(code[11], str) or code[11] not in LIBRARY_CODE:
        return None
    names, reason = LIBRARY_CODE[code[11]]
    consts, co_names, freevars = code[7], code[8], code[-2]
    if not (isinstance(co_names, tuple) and set(co_names) <= names and freevars == ()):
        return None
    if not isinstance(consts, tuple) or any(isinstance(c, Call) for c in flatten(consts)):
        return None
    return reason


def flatten(values: tuple[object, ...]) -> Iterator[object]:
    for value in values:
        if isinstance(value, tuple):
            yield from flatten(value)
        else:
            yield value


def judge_global(module: str, name: str, how: str) -> LoadCall:
    shown = f"{name}.__setstate__" if how == "setstate" else name
    reason = unsafe_reason(module, name)
    if reason:
        return LoadCall(module, shown, how, "unsafe", reason)
    allowed = allowed_reason(module, name)
    if allowed:
        return LoadCall(module, shown, how, "allowed", allowed)
    return LoadCall(module, shown, how, "unknown", UNKNOWN)


#: What runs of a class when it is called (an object made, an enum member looked up), made by NEWOBJ,
#: has its state set, or serves as a metaclass.
RUN_BY = {"call": ("__new__", "__init__", "__post_init__", "_missing_", "__call__"), "new": ("__new__",),
          "setstate": ("__setstate__", "__getattr__", "__getattribute__"),
          "class": ("__new__", "__init__", "__call__", "__prepare__", "__init_subclass__")}


def judge_own_class(cls: OwnClass, how: str) -> LoadCall:
    """A class of the pickle's own: what runs is the library's (type, Enum, a library base class)
    unless the class or one of its own bases defines, by value, a method that runs then."""
    own = sorted(set(RUN_BY.get(how, ())) & class_methods(cls))
    if own:
        return LoadCall("<pickle>", f"{cls.name}.{own[0]}", how, "unsafe", f"{OWN_CODE} (it defines {own[0]})")
    return LoadCall("<pickle>", cls.name, how, "allowed",
                    "the pickle's own class: what runs is library code (none of its methods)")


def class_methods(cls: OwnClass, depth: int = 0) -> set[str]:
    """The own-code methods of a class and of its bases pickled by value."""
    methods = set(cls.methods)
    bases = cls.bases[0] if isinstance(cls.bases, tuple) and len(cls.bases) == 1 else cls.bases
    if isinstance(bases, tuple) and depth < 20:
        for base in bases:
            if isinstance(base, OwnClass):
                methods |= class_methods(base, depth + 1)
    return methods


def judge_instance(instance: Instance, how: str) -> LoadCall:
    cls = instance.cls
    if isinstance(cls, OwnClass):
        return LoadCall("<pickle>", f"{cls.name}()", how, "unsafe", f"{OWN_CODE} (its __call__)")
    name = f"{cls.module}.{cls.name}()" if isinstance(cls, Global) else "<object>()"
    return LoadCall("<object>", name, how, "unknown", f"calls an object made while loading; {UNKNOWN}")


def reference_reason(module: str, name: str) -> str | None:
    """Why a global the pickle only references is refused: the denylist's reason (a model has no use
    for a shell or eval), except for modules of pure path functions (os.path.join is fine)."""
    if normal(module) in PURE_MODULES:
        return None
    return unsafe_reason(module, name)
