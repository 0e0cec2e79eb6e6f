"""What may run while a pickle loads: the pickle doctor's allowlist.

Unpickling runs code: every REDUCE, NEWOBJ, OBJ and INST calls something, every
BUILD calls a ``__setstate__``, cloudpickle's ``subimport`` imports a module. The
doctor (numerai_predict.pickles) names each of those load-time calls without
running any, and asks ``judge`` about it. What this file allows, with its reason,
may run; anything else invoked while loading is *unknown* and the pickle is
refused (exit 16) unless the user passes ``--allow-unsafe``. A denylist was
tried first (numerai_predict.unsafe, kept for its reasons): held against
published scanner bypasses it passed most of them, since the standard library
and every installed package hold more functions that run a command, execute a
string or write a file than any list can name.

Globals a pickle only *references* (a function stored as a value, called when
the model predicts) are not judged here: predict time is contained by the
isolation, not by the doctor. The denylist still refuses references no model
needs (``os.system``, ``eval``...).

To allow a callable that a legitimate pickle invokes while loading: add it to
CALLABLES with the reason it is harmless to run on attacker-chosen arguments,
and a pickle that uses it to tests/benign_pickles.py. Classes of a model library
go in LIBRARIES (the whole package) unless a part of it acts when an object is
made (EXCLUDED).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable

from numerai_predict.unsafe import canonical

#: Exact callables, (module, qualified name) -> why running it while loading is harmless.
CALLABLES: dict[tuple[str, str], str] = {
    # the unpickler's own protocol
    ("copyreg", "_reconstructor"): "makes an object of a class (judged too) without running its __init__",
    ("copyreg", "__newobj__"): "makes an object of a class (judged too) without running its __init__",
    ("copyreg", "__newobj_ex__"): "makes an object of a class (judged too) without running its __init__",
    ("_codecs", "encode"): "spells bytes in protocols 0-2",
    ("builtins", "getattr"): "looks an attribute up: what it finds is judged when it is called",
    # builtin values and containers
    **{("builtins", name): "a builtin value or container" for name in (
        "object", "list", "dict", "set", "frozenset", "tuple", "bytearray", "bytes", "str", "int", "float",
        "complex", "bool", "slice", "range", "NoneType", "Ellipsis", "NotImplemented")},
    **{("builtins", name): "a descriptor of a class: wraps a function without calling it" for name in (
        "property", "staticmethod", "classmethod")},
    ("builtins", "type"): "makes a class from a name, bases and a namespace (the bases' code is judged)",
    **{("collections", name): "a container of the standard library" for name in (
        "OrderedDict", "defaultdict", "deque", "Counter", "ChainMap")},
    ("functools", "partial"): "binds arguments to a function without calling it",
    ("operator", "getitem"): "indexes a class (how typing's generic aliases pickle); nothing else",
    ("operator", "itemgetter"): "makes an item getter (called, if ever, when the model predicts)",
    ("functools", "reduce"): "joins types with operator.or_ (how int | None pickles); nothing else",
    ("logging", "getLogger"): "looks a logger up by name (no handler is made)",
    ("decimal", "Context"): "a decimal context value", ("string", "Template"): "a string template value",
    ("collections.abc", "_CallableGenericAlias"): "a typing alias (Callable[...])",
    ("collections", "_tuplegetter"): "a namedtuple's field accessor",
    ("numpy.rec", "recarray"): "a numpy record array", ("numpy", "record"): "a numpy record",
    ("dateutil.tz.tz", "_ttinfo"): "a time zone's transition data",
    **{("typing", name): "a typing alias" for name in (
        "_GenericAlias", "_UnionGenericAlias", "_CallableGenericAlias", "_LiteralGenericAlias", "Union",
        "Optional", "TypeVar", "ForwardRef", "_ProtocolMeta", "_TypedDictMeta", "Generic", "Protocol")},
    ("zoneinfo", "ZoneInfo._unpickle"): "looks a time zone up by name",
    ("zoneinfo.ZoneInfo", "_unpickle"): "looks a time zone up by name", ("pytz", "_p"): "looks a time zone up by name",
    **{("dateutil.tz.tz", name): "a time zone value" for name in ("tzfile", "tzutc", "tzlocal", "tzoffset", "tzstr")},
    ("dateutil.relativedelta", "relativedelta"): "a calendar offset value (pandas' DateOffset)",
    **{("datetime", name): "a date or time value" for name in ("date", "time", "datetime", "timedelta", "timezone")},
    ("decimal", "Decimal"): "a number", ("fractions", "Fraction"): "a number",
    ("uuid", "UUID"): "a UUID value", ("re", "_compile"): "compiles a regular expression",
    ("array", "array"): "an array of numbers", ("array", "_array_reconstructor"): "an array of numbers",
    **{("pathlib", name): "a path value: nothing is read or written" for name in (
        "Path", "PosixPath", "PurePath", "PurePosixPath", "WindowsPath", "PureWindowsPath")},
    ("abc", "ABCMeta"): "the metaclass of abstract classes",
    **{("dataclasses", name): "a dataclass's field description (a class pickled by value is a dataclass)"
       for name in ("Field", "_MISSING_TYPE", "_DataclassParams", "_FIELD_BASE", "_KW_ONLY_TYPE", "KW_ONLY",
                    "_HAS_DEFAULT_FACTORY_CLASS")},
    ("io", "BytesIO"): "a buffer in memory: nothing is read or written elsewhere",
    ("io", "StringIO"): "a buffer in memory: nothing is read or written elsewhere",
    ("enum", "EnumMeta"): "the metaclass of enums", ("enum", "EnumType"): "the metaclass of enums",
    ("random", "Random"): "a random generator's state", ("_random", "Random"): "a random generator's state",
    # cloudpickle: functions and classes by value are rebuilt, never called (calling them is judged apart)
    **{("cloudpickle", name): "cloudpickle rebuilds an object by value without running its code" for name in (
        "_make_function", "_make_skeleton_class", "_make_skeleton_enum", "_class_setstate", "_function_setstate",
        "_make_cell", "_make_empty_cell", "_builtin_type", "_make_dict_keys", "_make_dict_values",
        "_make_dict_items", "_create_parametrized_type_hint", "_make_typevar", "_lookup_module_and_qualname",
        "_get_bases", "_enum_getnewargs", "_make__new__factory", "_make_skel_func", "_fill_function",
        "dynamic_subimport", "subimport", "_rehydrate_skeleton_class", "_property_reduce",
        "_make_code", "_file_reconstructor", "_get_dataclass_field_type_sentinel")},
    # types cloudpickle names through _builtin_type
    **{("types", name): "makes a value of a builtin type; nothing runs it" for name in (
        "CodeType", "CellType", "MethodType", "MappingProxyType", "SimpleNamespace", "ModuleType",
        "GenericAlias", "UnionType", "ClassMethodDescriptorType", "WrapperDescriptorType", "MethodWrapperType",
        "MethodDescriptorType", "GetSetDescriptorType", "MemberDescriptorType")},
    ("torch.storage", "_load_from_bytes"): "unpickles tensor storage: the doctor scans those bytes as a pickle",
    # classes of model libraries with lower-case names (the class rule below looks for capitals)
    **{("numpy", name): "a numpy array or dtype" for name in ("dtype", "ndarray", "matrix", "recarray")},
    ("sklearn.compose._column_transformer", "make_column_selector"): "a scikit-learn column selector (a class)",
    **{("numpy", name): "a numpy value class" for name in ("finfo", "iinfo", "poly1d", "vectorize")},
    ("numpy._core._internal", "_convert_to_stringdtype_kwargs"): "numpy's StringDType from its settings",
    **{("pyarrow.lib", name): "an Arrow value from its parts (types, buffers, schemas, arrays)" for name in (
        "type_for_alias", "py_buffer", "schema", "field", "chunked_array", "array", "table", "record_batch",
        "list_", "large_list", "list_view", "dictionary", "struct", "timestamp", "time32", "time64", "date32",
        "date64", "duration", "decimal128", "decimal256", "map_", "fixed_shape_tensor", "uuid", "binary",
        "string", "large_string", "float16", "float32", "float64", "int8", "int16", "int32", "int64",
        "uint8", "uint16", "uint32", "uint64", "bool_", "null", "run_end_encoded", "union", "opaque")},
    ("torch", "device"): "a torch device value", ("torch.serialization", "_get_layout"): "a torch layout by name",
    **{("torch", name): "a torch layout or quantization scheme value" for name in (
        "per_tensor_affine", "per_channel_affine", "per_tensor_symmetric", "per_channel_symmetric",
        "per_channel_affine_float_qparams", "strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr",
        "sparse_bsc", "_mkldnn")},
    **{("scipy.stats." + module, name): "a SciPy distribution or density estimate" for module, name in (
        ("_kde", "gaussian_kde"), ("_continuous_distns", "rv_histogram"))},
    ("scipy.spatial._ckdtree", "cKDTree"): "a SciPy k-d tree",
    ("scipy.interpolate._interpolate", "interp1d"): "a SciPy interpolator",
    **{(f"scipy.sparse._{kind}", f"{kind}_{shape}"): "a SciPy sparse matrix or array"
       for kind in ("csr", "csc", "coo", "lil", "dok", "bsr", "dia") for shape in ("matrix", "array")},
}

#: Library functions cloudpickle pickles by value (a classmethod's function cannot be found by its name),
#: that a pickle calls while loading: name -> (the names its code uses, its locals, why it may run). The
#: code is recognised by using exactly those names and locals, with no closure and no nested code; what it
#: is bound to and called with is judged as an argument (it could call it).
LIBRARY_CODE: dict[str, tuple[frozenset[str], frozenset[str], str]] = {
    "_unpickle_model": (frozenset({"keras.src.saving.saving_lib", "src", "saving", "saving_lib",
                                   "_load_model_from_fileobj"}), frozenset({"cls", "bytesio", "saving_lib"}),
                        "Keras's KerasSaveable._unpickle_model: rebuilds a model from Keras's own format "
                        "(configuration and weights), with safe_mode on"),
}

#: Model libraries of pixi.toml and issue 16: their classes may be made and their state set while loading
#: (a class's __new__ and __setstate__ are the library's code, not the pickle's), and their reconstructors run.
LIBRARIES: dict[str, str] = {name: "a class of a library the environments install" for name in (
    "numpy", "pandas", "pyarrow", "scipy", "sklearn", "lightgbm", "xgboost", "catboost", "torch", "keras",
    "tensorflow", "tf_keras", "statsmodels", "patsy", "polars", "numerai_tools", "numerblox", "jax", "jaxlib",
    "numba", "mlxtend", "skorch", "tabpfn", "pytorch_lightning", "lightning", "lightning_fabric",
    "torchmetrics", "treelite", "einops", "ydf", "tensorflow_decision_forests", "umap", "pynndescent",
    "threadpoolctl", "cloudpickle")}
LIBRARIES["_loss"] = "scikit-learn's loss classes (sklearn._loss._loss pickles them under the name _loss)"

#: Class names that act when an object is made (a file opened or written, a process, a server, a
#: connection): not allowed by the class rule even in an allowed library (statsmodels re-exports
#: multiprocessing's Pool; pyarrow.OSFile, torch's PyTorchFileWriter, Keras' H5IOStore write files).
ACTING_CLASS = re.compile(r"\w*(Writer|Handler|File|Pool|Process|Thread|Server|Store|Memory|Client|Session|"
                          r"Connection|Socket|Tracker|Popen|Executor|Logger|Stream|Loader|Downloader|Listener|"
                          r"Worker|Shell|Queue|Pipe|Archive|Checkpoint|Submitter|Allocator|Delegate|Interpreter)")

#: Values of the standard library: they store or iterate their arguments and call none of them, but may run
#: methods of the objects they get (str() runs __str__): objects of the pickle's own classes are judged.
VALUE_TYPES = frozenset({
    *((module, name) for module, name in CALLABLES if module in (
        "datetime", "decimal", "fractions", "uuid", "pathlib", "array", "dataclasses", "string", "zoneinfo",
        "zoneinfo.ZoneInfo", "pytz", "dateutil.tz.tz", "dateutil.relativedelta")),
    *(("builtins", name) for name in ("object", "list", "set", "frozenset", "tuple", "bytearray", "bytes", "str",
                                       "int", "float", "complex", "bool", "slice", "range")),
    ("re", "_compile"), ("logging", "getLogger")})

#: Allowed callables that only store their arguments, never call them nor run their objects' methods.
#: Every other allowed callable may call what it is given (judge.judge_arguments).
BINDERS = frozenset({
    ("functools", "partial"), ("builtins", "getattr"), ("builtins", "property"), ("builtins", "staticmethod"),
    ("builtins", "classmethod"), ("copyreg", "_reconstructor"), ("copyreg", "__newobj__"),
    ("copyreg", "__newobj_ex__"), ("operator", "itemgetter"), ("collections", "defaultdict"),
    ("collections.abc", "_CallableGenericAlias"), *((module, name) for module, name in CALLABLES if module == "typing"),
    *VALUE_TYPES,
    *((module, name) for module, name in CALLABLES if module in ("cloudpickle", "types"))})


def getitem_on_a_class(args: tuple[object, ...]) -> bool:
    """A class subscripted (a typing alias): its __class_getitem__ runs, the library's (one defined by
    the pickle's own class is refused by LOAD_TIME_METHODS)."""
    from numerai_predict.pickles import BuiltinType, Global, OwnClass

    return bool(args) and isinstance(args[0], (Global, BuiltinType, OwnClass))


def or_of_types(args: tuple[object, ...]) -> bool:
    from numerai_predict.pickles import Global

    return bool(args) and isinstance(args[0], Global) and (normal(args[0].module), args[0].name) == ("operator", "or_")


#: Allowed callables allowed only with arguments of one kind: (module, name) -> test of the arguments.
ARGUMENT_RULES: dict[tuple[str, str], Callable[[tuple[object, ...]], bool]] = {
    ("operator", "getitem"): getitem_on_a_class,  # a dict subclass's __missing__ or a defaultdict would run
    ("functools", "reduce"): or_of_types,  # reduce calls its function
}


def argument_rule(module: str, name: str) -> Callable[[tuple[object, ...]], bool] | None:
    return ARGUMENT_RULES.get((module, name))

#: Parts of those libraries whose objects act when they are made (a server, a process, a file writer,
#: a download, code loaded by path): nothing of them is allowed while loading.
EXCLUDED = (
    "torch.distributed", "torch.multiprocessing", "torch.package", "torch.hub", "torch.utils.cpp_extension",
    "torch.utils.tensorboard", "torch.utils.data", "torch.jit", "torch.testing", "torch.cuda", "torch.backends",
    "torch._dynamo", "torch._inductor", "torch.onnx", "torch.profiler", "torch.autograd.profiler",
    "tensorflow.distribute", "tensorflow.python.distribute", "tensorflow.python.training.server_lib",
    "tensorflow.train", "tensorflow.python.debug", "tensorflow.summary", "tensorflow.io",
    "tensorflow.python.platform", "tensorflow.python.lib.io", "tensorflow.python.ops.script_ops",
    "keras.callbacks", "keras.src.callbacks", "keras.utils", "keras.src.utils", "tf_keras.callbacks",
    "xgboost.tracker", "xgboost.collective", "xgboost.dask", "xgboost.spark", "xgboost.testing",
    "lightgbm.dask", "catboost.widget", "catboost.utils", "numpy.testing", "numpy.distutils", "numpy.f2py",
    "numpy.lib.npyio", "numpy.lib.format", "pandas.io", "pandas.util", "pandas._testing", "scipy.io",
    "scipy._lib._testutils", "sklearn.datasets", "sklearn.utils._testing", "statsmodels.iolib", "polars.io",
    "numba.cuda", "jax.experimental",
    "lightning.pytorch.loggers", "pytorch_lightning.loggers", "lightning.pytorch.callbacks",
    "pytorch_lightning.callbacks", "torch.xpu", "torch.mps", "torch.utils.benchmark", "torch.utils.model_zoo",
    "tensorflow.compat", "tensorflow._api", "tensorflow.lite", "tensorflow.python.lib", "tensorflow.saved_model",
    "keras.applications", "keras.src.applications", "keras.export", "keras.src.export", "tf_keras.applications",
    "keras.datasets", "keras.src.datasets", "scipy._lib", "scipy.datasets", "polars._dependencies",
    "numerblox.submission", "numerblox.download", "numerai_tools.submissions",
)

#: Library functions that rebuild an object from its pickled state, as libraries name them
#: (Cython's ``__pyx_unpickle_X``, numpy's ``_reconstruct``, torch's ``_rebuild_tensor_v2``, pandas'
#: ``_new_Index``, numpy.random's ``__bit_generator_ctor``...).
RECONSTRUCTOR = re.compile(r"__pyx_unpickle_\w+|_(re)?build\w*|_(re)?construct\w*|_restore\w*|_unpickle_\w+"
                           r"|_\w+_unpickle|_new_\w+|__\w+_ctor|_frombuffer|scalar|_mareconstruct|newObj")

#: Modules whose import acts (opens a browser, starts a program, prints): never imported while loading.
IMPORT_ACTS = frozenset({"antigravity", "this", "idlelib", "turtledemo", "__hello__", "__phello__", "__main__",
                         "test", "ensurepip", "venv", "pip", "lib2to3"})
#: Third-party modules a function pickled by value may refer to (importing them runs their own code).
IMPORTABLE = frozenset({*LIBRARIES, "joblib", "numerapi", "tqdm", "typing_extensions", "six", "packaging", "dateutil",
                        "pytz", "tzdata", "requests", "urllib3", "optuna", "shap", "category_encoders", "dill",
                        "sympy", "networkx", "fsspec", "pydantic", "attr", "attrs", "yaml", "h5py", "safetensors",
                        "tensorboard", "absl", "google", "ml_dtypes", "opt_einsum", "tree", "optree", "filelock",
                        "jinja2", "markupsafe", "mpmath", "gast", "flatbuffers", "wrapt", "termcolor", "namex",
                        "rich", "pygments", "tzlocal", "narwhals", "numexpr", "bottleneck"})
STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | {"copy_reg", "__builtin__"}
#: Spellings of modules that the denylist's canonical() does not know.
MORE_ALIASES = {"copy_reg": "copyreg", "_functools": "functools", "_collections_abc": "collections.abc",
                "_collections": "collections", "cloudpickle.cloudpickle": "cloudpickle",
                "cloudpickle.cloudpickle_fast": "cloudpickle", "cloudpickle.compat": "cloudpickle"}

#: Methods of a class pickled by value that may run while a pickle loads even where the scan cannot tie
#: them to an object it saw made (a subclass made, an item set, an index taken, a state set): refused
#: whenever the pickle defines them by value. Methods that run when an object is made are judged per object.
LOAD_TIME_METHODS = ("__setstate__", "__setitem__", "__class_getitem__", "__prepare__", "__del__", "__missing__",
                     "<register>")


def normal(module: str) -> str:
    """A module's usual name: ``posix`` -> ``os``, ``copy_reg`` -> ``copyreg``, cloudpickle's submodules -> itself."""
    module = canonical(module)
    return MORE_ALIASES.get(module, module)


def under(module: str, packages: Iterable[str]) -> bool:
    """Is ``module`` one of ``packages`` or inside one?"""
    return any(module == package or module.startswith(package + ".") for package in packages)


def allowed_reason(module: str, name: str) -> str | None:
    """Why ``module.name`` may run while a pickle loads, or None when it is not on the list."""
    module = normal(module)
    if (module, name) in CALLABLES:
        return CALLABLES[module, name]
    top = module.split(".")[0]
    if top not in LIBRARIES or under(module, EXCLUDED):
        return None
    parts = name.split(".")
    if ACTING_CLASS.fullmatch(parts[-1]):
        return None
    if all(part.lstrip("_")[:1].isupper() for part in parts):  # a class (nested and private ones too)
        return LIBRARIES[top]
    if top == "scipy" and re.fullmatch(r"\w+_gen|\w+_frozen", name):  # scipy.stats' distributions
        return "a SciPy distribution"
    if top == "statsmodels" and re.fullmatch(r"[sdcz][A-Z]\w+", name):  # Cython classes per dtype (dStatespace)
        return "a statsmodels state-space class"
    if len(parts) == 1 and RECONSTRUCTOR.fullmatch(name):
        return "a reconstructor of a library the environments install"
    return None


def import_reason(module: str) -> tuple[bool, str]:
    """May ``module`` be imported while loading (it runs its top-level code), and why."""
    parts = module.split(".")
    top = parts[0]
    if not all(part.isidentifier() for part in parts):
        return False, "a module whose name is not an identifier"
    if top in IMPORT_ACTS or "__main__" in parts:
        return False, "a module that acts when it is imported"
    if top in STDLIB:
        return True, "a module of the standard library"
    if top in IMPORTABLE:
        return True, "a library the environments install"
    return False, "a module the allowlist does not know"
