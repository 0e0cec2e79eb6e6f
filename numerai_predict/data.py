"""Live data: a local Parquet file, or a Numerai dataset fetched with numerapi."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from numerai_predict.errors import DataFetchError, DatasetMissingError, DataUnreadableError

if TYPE_CHECKING:  # annotations only: pandas is imported where it is used
    import pandas as pd

log = logging.getLogger("numerai_predict")


def fetch_dataset(name: str, output_dir: str, flag: str = "--dataset") -> str:
    """Path of a local copy of ``name``; an absolute path must exist, never downloads."""
    if os.path.isfile(name):
        log.info("Using local %s %s", flag, name)
        return name
    if os.path.isabs(name) or os.path.exists(name):
        raise DatasetMissingError(f"{flag} {name} is not an existing file")
    dest = os.path.join(output_dir, name)
    log.info("Downloading %s %s with numerapi", flag, name)
    from numerapi import NumerAPI

    try:
        NumerAPI(verbosity="warning").download_dataset(name, dest)
    except (KeyError, TypeError):  # numerapi answers an unreachable API with an empty result
        raise DataFetchError(f"could not download {flag} {name}: Numerai's API gave no download URL "
                             "(unreachable, or see numerapi's error above)") from None
    except Exception as exc:  # numerapi reports other failures as assorted exceptions
        raise DataFetchError(f"could not download {flag} {name} with numerapi: "
                             f"{type(exc).__name__}: {exc}") from None
    if not os.path.isfile(dest):
        raise DataFetchError(f"numerapi did not produce {dest} for {flag} {name}")
    return dest


def read_parquet(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file, with a clear error for anything that is not one."""
    import pandas as pd

    try:
        return pd.read_parquet(path, columns=columns)
    except Exception as exc:  # pyarrow raises several types for bad files
        raise DataUnreadableError(f"{path} is not a readable Parquet file: {type(exc).__name__}: {exc}") from None
