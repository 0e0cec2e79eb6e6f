"""The doctor's verdict on each callable a pickle invokes while it loads.

numerai_predict.pickles names the calls (without running any); this module
judges them against numerai_predict.allowlist: allowed (with the list's
reason), unsafe (the denylist's reason, or the pickle's own code), or unknown
(not on the list: refused too, since the list is what may act). An allowed
callable that is not a mere binder may call what it is given: its arguments
that are callables are judged as calls too, and objects of the pickle's own
classes may not be handed to it.
"""

from __future__ import annotations

from numerai_predict.allowlist import (
    BINDERS,
    LOAD_TIME_METHODS,
    VALUE_TYPES,
    allowed_reason,
    argument_rule,
    import_reason,
    normal,
)
from numerai_predict.pickles import (
    Attribute,
    BuiltinType,
    Call,
    Dict,
    Global,
    Instance,
    List,
    LoadCall,
    Module,
    OwnClass,
    OwnFunction,
    flatten,
    library_code_reason,
)
from numerai_predict.unsafe import ESCAPES, unsafe_call_reason, unsafe_reason

OWN_CODE = "runs the pickle's own code while loading"
UNKNOWN = "not on the doctor's allowlist of what may run while a pickle loads"
#: Methods that run while loading on a subclass of a builtin container (APPENDS, SETITEMS, ADDITEMS).
CONTAINER_METHODS = ("extend", "append", "add")
#: Modules whose functions only compute with paths and strings: a reference to them is harmless.
PURE_MODULES = ("os.path", "posixpath", "ntpath", "genericpath")
#: What runs of a class pickled by value when it is called (an object made, an enum member looked up),
#: made by NEWOBJ, has its state set, serves as a metaclass, makes its enum members, or is hashed.
RUN_BY = {"call": ("__new__", "__init__", "__post_init__", "_missing_", "__call__"), "new": ("__new__",),
          "setstate": ("__setstate__", "__getattr__", "__getattribute__"),
          "setstate_slots": ("__setstate__", "__getattr__", "__getattribute__", "__setattr__"),
          "class": ("__new__", "__init__", "__call__", "__prepare__", "__init_subclass__"),
          "enum": ("__new__", "__init__", "__init_subclass__", "_generate_next_value_", "__set_name__", "_missing_"),
          "subclass": ("__init_subclass__",),
          "hash": ("__hash__", "__eq__")}
#: Methods of the pickle's own classes that never run just because an object is handed over.
INERT_METHODS = frozenset({"__init__", "__call__"})


def judge_calls(calls: list[tuple[object, str, object]], own_classes: list[OwnClass]) -> list[LoadCall]:
    """Each distinct load-time call with its verdict, in the order the unpickler meets them, then the
    methods of the pickle's own classes that would run while it loads."""
    seen: dict[tuple[str, str, str, str], LoadCall] = {}

    def add(call: LoadCall) -> None:
        seen.setdefault((call.module, call.name, call.how, call.verdict), call)

    for callable_, how, args in calls:
        call = judge(callable_, how)
        add(call)
        if call.verdict == "allowed" and how in ("call", "new"):
            for extra in judge_arguments(callable_, args):
                add(extra)
    for cls in own_classes:
        for method in sorted(own_load_methods(cls)):
            add(LoadCall("<pickle>", f"{cls.name}.{method}", "method", "unsafe",
                         f"{OWN_CODE} (a class pickled by value defines {method})"))
    return list(seen.values())


def judge_arguments(callable_: object, args: object) -> list[LoadCall]:
    """What an allowed callable may do with its arguments: a binder only stores them; any other may
    call them (so callables among them are judged as calls) or run methods of the objects it gets."""
    key = binder_key(callable_)
    if (key in BINDERS and key not in VALUE_TYPES) or not isinstance(args, tuple):
        return []
    if isinstance(callable_, Call) and callable_.func == BuiltinType("MethodType") and isinstance(
            callable_.args, tuple):
        args = (*callable_.args[1:], *args)  # a bound method gets its object too
    rule = argument_rule(*key) if key else None
    if key and rule is not None:  # a callable allowed only with arguments of one kind (getitem on a class...)
        return [] if rule(args) else [LoadCall(key[0], key[1], "call", "unknown",
                                               f"called with arguments it is not allowed for; {UNKNOWN}")]
    found = []
    for value in arguments(args):
        if isinstance(value, (Global, OwnFunction, BuiltinType, Attribute)) and key not in VALUE_TYPES:
            found.append(judge(value, "argument"))
        elif isinstance(value, (OwnClass, Instance)) and (methods := handed_over_methods(value)):
            shown = f"{key[0]}.{key[1]}" if key else "a callable"
            found.append(LoadCall("<pickle>", own_name(value), "argument", "unsafe",
                                  f"{OWN_CODE} ({shown} gets an object whose class defines "
                                  f"{', '.join(sorted(methods))})"))
    return found


def arguments(args: tuple[object, ...], depth: int = 0) -> list[object]:
    """The values in a call's arguments, through tuples, tracked lists and dicts, and what binders hold
    (a partial's function, a defaultdict's factory: calling or indexing them calls it)."""
    values: list[object] = []
    for value in flatten(args):
        values.append(value)
        inner: list[object] = []
        if isinstance(value, Dict):
            inner = list(value.items.values())
        elif isinstance(value, List):
            inner = value.items
        elif isinstance(value, Call) and binder_key(value.func) in BINDERS and isinstance(value.args, tuple):
            inner = list(value.args)
        if inner and depth < 20:
            values += arguments(tuple(inner), depth + 1)
    return values


def binder_key(func: object) -> tuple[str, str] | None:
    if isinstance(func, Global):
        return normal(func.module), func.name
    if isinstance(func, BuiltinType):
        return "types", func.name
    return None


def handed_over_methods(value: object) -> set[str]:
    cls = value.cls if isinstance(value, Instance) else value
    if not isinstance(cls, OwnClass):
        return set()
    return {m for m in class_methods(cls) if m.startswith("__") and m not in INERT_METHODS}


def own_name(value: object) -> str:
    cls = value.cls if isinstance(value, Instance) else value
    return getattr(cls, "name", "<object>")


def own_load_methods(cls: OwnClass) -> set[str]:
    """Methods of a class pickled by value that may run while loading whether or not an object of it is
    seen made (a subclass made, an item set, an object freed): refused whenever the pickle defines them."""
    methods = cls.methods & set(LOAD_TIME_METHODS)
    if any(isinstance(base, Global) and base.module == "builtins" for base in bases_of(cls)):
        methods |= cls.methods & set(CONTAINER_METHODS)
    return methods


def judge(callable_: object, how: str) -> LoadCall:
    """The verdict on invoking ``callable_`` (as the scan sees it) ``how``."""
    if how == "import":
        return judge_import(callable_)
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
        return judge_attribute(callable_, how)
    if isinstance(callable_, Call) and callable_.func == BuiltinType("MethodType") and isinstance(
            callable_.args, tuple) and callable_.args:
        return judge(callable_.args[0], how)  # a bound method: its function runs (its object is an argument)
    if isinstance(callable_, Call) and isinstance(callable_.func, Global):
        module, name = callable_.func.module, callable_.func.name
        why = unsafe_call_reason(module, name)
        return LoadCall(module, f"{name}(...)(...)", how, "unsafe" if why else "unknown",
                        why or f"calls what {name}(...) returned; {UNKNOWN}")
    return LoadCall("<object>", "<unnamed>", how, "unknown", f"calls an object the doctor cannot name; {UNKNOWN}")


def judge_import(module: object) -> LoadCall:
    if not isinstance(module, Module):
        return LoadCall("<computed>", "<module>", "import", "unknown", "imports a module named while loading")
    ok, reason = import_reason(module.name)
    if not ok and "acts" not in reason and not installed(module.name):
        ok, reason = True, "a module absent from this environment: loading stops there (exit 13), nothing of it runs"
    verdict = "allowed" if ok else ("unsafe" if "acts" in reason else "unknown")
    return LoadCall(module.name, "<module>", "import", verdict,
                    f"imports {reason}" if ok else f"imports {reason}, which runs its code")


def installed(module: str) -> bool:
    """Is the module's top-level package installed here? (found, not imported: nothing of it runs)"""
    from importlib.util import find_spec

    try:
        return find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def judge_attribute(attribute: Attribute, how: str) -> LoadCall:
    if attribute.name in ESCAPES:
        return LoadCall("<object>", attribute.name, how, "unsafe",
                        f"reaches {attribute.name}, which leads to any object")
    owner = attribute.owner
    cls = owner.cls if isinstance(owner, Instance) else owner
    if how == "getattr":  # looked up, not called: only the pickle's own properties and __getattr__ run
        runs = isinstance(cls, OwnClass) and (
            attribute.name in class_methods(cls) or {"__getattr__", "__getattribute__"} & class_methods(cls))
        return LoadCall("<pickle>", f"{own_name(owner)}.{attribute.name}", how, "unsafe" if runs else "allowed",
                        f"{OWN_CODE} (an attribute of its own class)" if runs
                        else "an attribute of the pickle's own object, not code of its own")
    own = isinstance(cls, (OwnClass, OwnFunction))
    return LoadCall("<object>", f"<...>.{attribute.name}", how, "unsafe" if own else "unknown", OWN_CODE if own
                    else f"calls a method looked up by name on an object built while loading; {UNKNOWN}")


def judge_own_function(function: OwnFunction, how: str) -> LoadCall:
    """A function pickled by value runs the pickle's own code, unless it is a library's function that
    cloudpickle had to pickle by value (a classmethod), recognised by what its code can reach."""
    reason = library_code_reason(function.code)
    if reason:
        return LoadCall("<pickle>", function.name, how, "allowed", reason)
    if how == "argument":
        return LoadCall("<pickle>", function.name, how, "unsafe",
                        f"{OWN_CODE} (a function pickled by value, handed to a callable that may call it)")
    return LoadCall("<pickle>", function.name, how, "unsafe", f"{OWN_CODE} (a function pickled by value)")


def judge_global(module: str, name: str, how: str) -> LoadCall:
    shown = f"{name}.__setstate__" if how.startswith("setstate") else name
    reason = unsafe_reason(module, name)
    if reason:
        return LoadCall(module, shown, how, "unsafe", reason)
    allowed = allowed_reason(module, name)
    if allowed:
        return LoadCall(module, shown, how, "allowed", allowed)
    return LoadCall(module, shown, how, "unknown", UNKNOWN)


def judge_own_class(cls: OwnClass, how: str) -> LoadCall:
    """A class of the pickle's own: what runs is the library's (type, Enum, a library base class)
    unless the class or one of its own bases defines, by value, a method that runs then (for a
    subclass made: its own bases' __init_subclass__)."""
    methods = set().union(*(class_methods(b) for b in bases_of(cls) if isinstance(b, OwnClass))) if (
        how == "subclass") else class_methods(cls)
    own = sorted(set(RUN_BY.get(how, ())) & methods)
    if own:
        return LoadCall("<pickle>", f"{cls.name}.{own[0]}", how, "unsafe", f"{OWN_CODE} (it defines {own[0]})")
    return LoadCall("<pickle>", cls.name, how, "allowed",
                    "the pickle's own class: what runs is library code (none of its methods)")


def class_methods(cls: OwnClass, depth: int = 0) -> set[str]:
    """The own-code methods of a class and of its bases pickled by value."""
    methods = set(cls.methods)
    if depth < 20:
        for base in bases_of(cls):
            if isinstance(base, OwnClass):
                methods |= class_methods(base, depth + 1)
    if isinstance(cls.metaclass, OwnClass) and depth < 20:
        methods |= {m for m in class_methods(cls.metaclass, depth + 1) if m == "__call__"}
    return methods


def bases_of(cls: OwnClass) -> tuple[object, ...]:
    return cls.bases if isinstance(cls.bases, tuple) else ()


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
