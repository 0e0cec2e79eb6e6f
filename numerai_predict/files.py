"""The one atomic file write: a reader sees the whole new file or the old one, never a part."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb", check: Callable[[str], None] | None = None) -> Iterator[IO[Any]]:
    """A temporary file beside ``path`` to write into. When the block ends without an exception it is
    flushed, fsynced, passed to ``check`` (which may raise to refuse it), made readable by others
    (mkstemp's 0600 would hide it) and renamed over ``path``, and the rename made durable. On any
    exception the temporary file is removed and ``path`` is left as it was. OSError propagates."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".part")
    try:
        # newline="": the csv module writes its own line endings (None is binary mode's only value)
        with os.fdopen(fd, mode, newline=None if "b" in mode else "") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if check is not None:
            check(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        sync_folder(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def write_atomic(path: str, data: bytes | str) -> None:
    """``data`` as the whole of ``path``, atomically (atomic_file)."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as handle:
        handle.write(data)


def sync_folder(folder: str) -> None:
    """Make a rename durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
