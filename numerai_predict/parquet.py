"""Parquet files, checked and read: the live data and the model's predictions.

Separate from data.py (which fetches the live data) so that validation reads files without the
fetching code; pyarrow and pandas are imported where they are used.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from numerai_predict.errors import DataUnreadableError

if TYPE_CHECKING:
    import pandas as pd

PARQUET_MAGIC = b"PAR1"


def has_parquet_magic(path: str) -> bool:
    """Parquet files start and end with PAR1: a cheap proof of a whole file."""
    with open(path, "rb") as handle:
        head = handle.read(4)
        if os.fstat(handle.fileno()).st_size < 12:
            return False
        handle.seek(-4, os.SEEK_END)
        return head == PARQUET_MAGIC and handle.read(4) == PARQUET_MAGIC


def check_parquet(path: str, what: str) -> None:
    """Refuse anything but a whole Parquet file (magic bytes at both ends, readable footer)."""
    if not has_parquet_magic(path):
        raise DataUnreadableError(f"{what} is not a Parquet file (no PAR1 magic at both ends)")
    import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

    try:
        pq.read_metadata(path)
    except Exception as exc:  # pyarrow raises several types for bad footers
        raise DataUnreadableError(f"{what} has an unreadable Parquet footer: {type(exc).__name__}: {exc}") from None


def read_parquet(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file, with a clear error for anything that is not one."""
    import pandas as pd

    try:
        return pd.read_parquet(path, columns=columns)
    except Exception as exc:  # pyarrow raises several types for bad files
        raise DataUnreadableError(f"{path} is not a readable Parquet file: {type(exc).__name__}: {exc}") from None
