"""What a model returned, checked into the one-column DataFrame that gets delivered."""

from __future__ import annotations

import math
import os
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from numerai_predict.errors import (
    PredictionColumnError,
    PredictionsConstantError,
    PredictionsEmptyError,
    PredictionsIndexError,
    PredictionsInfError,
    PredictionsNaNError,
    PredictionsNoneError,
    PredictionsRangeError,
    PredictionsTypeError,
)

if TYPE_CHECKING:  # annotations only: pandas is imported where it is used
    import pandas as pd

SHOWN_IDS = 3


def validate_predictions(predictions: object, live_ids: pd.Index[Any], whole: bool = True) -> pd.DataFrame:
    """Return ``predictions`` as a DataFrame indexed ``id`` with one ``prediction``
    column in the order of ``live_ids``, or raise the error that says what to fix.
    ``whole``: these are the whole submission (not one era of it), so Numerai's spread rule applies."""
    import numpy as np
    import pandas as pd

    if predictions is None:
        raise PredictionsNoneError("the model returned None")
    if not isinstance(predictions, pd.DataFrame):
        raise PredictionsTypeError(f"the model returned a {type_name(predictions)}, not a pandas DataFrame",
                                   advice=type_advice(predictions))
    if predictions.empty:
        raise PredictionsEmptyError(f"the model returned an empty DataFrame "
                                    f"({len(predictions)} rows, {len(predictions.columns)} columns)")
    values = prediction_column(predictions)
    check_index(values.index, live_ids)
    numbers = values.to_numpy(dtype="float64")
    bad = np.isnan(numbers)
    if bad.any():
        raise PredictionsNaNError(f"{int(bad.sum())} predictions are NaN (ids: {some(values.index[bad])})")
    bad = np.isinf(numbers)
    if bad.any():
        raise PredictionsInfError(f"{int(bad.sum())} predictions are infinite (ids: {some(values.index[bad])})")
    bad = (numbers < 0) | (numbers > 1)
    if bad.any():
        raise PredictionsRangeError(f"{int(bad.sum())} predictions are outside [0, 1] "
                                    f"(min {numbers.min():.4g}, max {numbers.max():.4g})")
    if whole:
        check_spread(numbers)
    result = values.reindex(live_ids).astype("float64").to_frame("prediction")
    result.index.name = "id"
    return result


def check_spread(numbers: Any) -> None:
    """Numerai's rule on the whole submission's float64 predictions (a numpy array)."""
    std = float(numbers.std(ddof=1)) if len(numbers) > 1 else math.nan
    if without_spread(std):
        raise PredictionsConstantError(f"the {len(numbers)} predictions have a standard deviation of {std:.3g} "
                                       f"(from {numbers.min():.6g} to {numbers.max():.6g}); Numerai refuses "
                                       "one of about 1e-8 or less")


def without_spread(std: float) -> bool:
    """numerai-tools' rule (validate_values): np.isclose(0, std), std with one degree of freedom;
    one row has no standard deviation (NaN) and passes there too."""
    return std <= 1e-8 + 1e-5 * std  # numpy.isclose's atol and rtol; False for NaN


def sample_std(numbers: list[float]) -> float:
    if len(numbers) < 2:
        return math.nan
    mean = math.fsum(numbers) / len(numbers)
    return math.sqrt(math.fsum((x - mean) ** 2 for x in numbers) / (len(numbers) - 1))


def deliverable(predictions_path: str, features_path: str) -> tuple[bytes, int]:
    """The CSV bytes of the model process's predictions file, checked against the live ids, and
    their count. The runner does not import pandas for what the model process must write (the
    live ids in their order, float64 in [0, 1]): Arrow checks that and the CSV is written from it,
    byte for byte what pandas writes. Anything else goes through pandas and validate_predictions,
    which accepts what it can and names what is wrong."""
    check_output_file(predictions_path, features_path)
    fast = arrow_deliverable(predictions_path, features_path)
    if fast is not None:
        return fast
    from numerai_predict.errors import DataUnreadableError, ModelCrashedError
    from numerai_predict.parquet import read_parquet

    live_ids = read_parquet(features_path, columns=[]).index
    try:
        written = read_parquet(predictions_path)
    except DataUnreadableError as exc:  # the model's process wrote it: the model's failure, not the data's
        raise ModelCrashedError(f"the model process's predictions file cannot be read ({exc.message})") from None
    predictions = validate_predictions(written, live_ids)
    return predictions.to_csv().encode(), len(predictions)


#: What the model process's predictions file may inflate to, per live row (id, value, index overhead):
#: a Parquet file of a few KB can hold gigabytes of zeros, and the runner reads it outside every limit.
BYTES_PER_ROW = 1024


def check_output_file(predictions_path: str, features_path: str) -> None:
    """Before reading the untrusted predictions file: a regular file (not a FIFO that blocks the runner,
    not a link elsewhere), whose Parquet metadata promises no more than the live rows' worth of data."""
    import stat

    import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

    from numerai_predict.errors import ModelCrashedError

    try:
        mode = os.lstat(predictions_path).st_mode
    except OSError:
        raise ModelCrashedError("the model process left no predictions file") from None
    if not stat.S_ISREG(mode):
        raise ModelCrashedError("the model process left something else than a file as its predictions")
    try:
        rows = pq.ParquetFile(features_path).metadata.num_rows
        meta = pq.ParquetFile(predictions_path).metadata
        size = sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
    except Exception:  # unreadable: the checks that read it say what is wrong
        return
    if size > (rows + 1024) * BYTES_PER_ROW or meta.num_rows > rows * 4 + 1024:
        raise ModelCrashedError(f"the model process's predictions file would inflate to {size >> 20} MiB "
                                f"({meta.num_rows} rows) for {rows} live rows; not read")


def pandas_index(schema: Any) -> str | None:
    """The one stored index column pandas recorded in a Parquet file's metadata, if any."""
    import json

    try:
        meta = json.loads((schema.metadata or {}).get(b"pandas", b"{}"))
        (index,) = meta.get("index_columns", [])
    except (ValueError, TypeError):
        return None
    return index if isinstance(index, str) else None


def arrow_deliverable(predictions_path: str, features_path: str) -> tuple[bytes, int] | None:
    """The CSV through Arrow when the predictions are exactly what validate_predictions would
    return unchanged (same ids as the live data in its order, unique, one float64 column
    'prediction' in [0, 1], indexed 'id'); None otherwise, or for any file Arrow cannot read."""
    import csv
    import io

    import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
    import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

    # ParquetFile, not read_table: the dataset API imports pandas (0.5 CPU-seconds); plain Python
    # over the values, not pyarrow.compute (0.2 s to import) nor to_numpy (imports pandas).
    try:
        live_file = pq.ParquetFile(features_path)
        index = pandas_index(live_file.schema_arrow)
        table = pq.ParquetFile(predictions_path).read()
        if index is None or pandas_index(table.schema) != "id" or sorted(table.column_names) != ["id", "prediction"]:
            return None
        live = live_file.read(columns=[index]).column(index).combine_chunks()
        ids, values = table.column("id").combine_chunks(), table.column("prediction").combine_chunks()
        # pandas 3 writes its str index as large_string, Numerai's files hold string: the same ids
        if not all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in (live.type, ids.type)):
            return None
        if values.type != pa.float64() or len(ids) != len(live) or not len(ids) or ids.null_count or values.null_count:
            return None
        id_list, live_list = ids.to_pylist(), live.to_pylist()
        if id_list != live_list or len(set(live_list)) != len(live_list):
            return None
        numbers = values.to_pylist()  # not to_numpy(): pyarrow imports pandas for it (0.5 CPU-seconds)
        if not all(0.0 <= number <= 1.0 for number in numbers):  # NaN compares False
            return None
        if without_spread(sample_std(numbers)):  # refused by validate_predictions, which says why
            return None
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")  # pandas' to_csv: minimal quoting, floats as repr
    writer.writerow(["id", "prediction"])
    writer.writerows(zip(id_list, map(repr, numbers), strict=True))
    return out.getvalue().encode(), len(ids)


def type_name(value: object) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def type_advice(value: object) -> str | None:
    """A Series is the most common near miss: name the fix."""
    import pandas as pd

    if isinstance(value, pd.Series):
        return 'Return a DataFrame: e.g. `return predictions.to_frame("prediction")`.'
    return None


def prediction_column(frame: pd.DataFrame) -> pd.Series[Any]:
    """The one numeric column to deliver: 'prediction' if present, else the only numeric one."""
    import pandas as pd

    if "prediction" in frame.columns and not frame.columns.duplicated().any():
        column = frame["prediction"]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            return column
        raise PredictionColumnError(f"the 'prediction' column has dtype {column.dtype}, not a number")
    numeric = [c for c in frame.columns
               if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    if len(numeric) == 1:
        return frame[numeric[0]]
    if not numeric:
        raise PredictionColumnError(f"no numeric column among {list(map(str, frame.columns))[:5]}")
    raise PredictionColumnError(f"{len(numeric)} numeric columns {list(map(str, numeric))[:5]} "
                                "and none named 'prediction': which one is the prediction is ambiguous")


def check_index(index: pd.Index[Any], live_ids: pd.Index[Any]) -> None:
    """The predictions must cover exactly the live ids, each once."""
    if index.has_duplicates:
        # A Series as the mask: pandas-stubs 2.3 with numpy 1.26 (py310) rejects duplicated()'s 1-d array.
        repeated = index[index.to_series().duplicated()].unique()
        raise PredictionsIndexError(f"the index repeats ids ({some(repeated)})")
    missing = live_ids.difference(index)
    extra = index.difference(live_ids)
    if not len(missing) and not len(extra):
        return
    if len(extra) == len(index) and index.name != "id":
        raise PredictionsIndexError(
            f"the index ({index.name or 'unnamed'}, e.g. {some(index)}) holds none of the live ids "
            f"(e.g. {some(live_ids)}): it was probably reset or rebuilt")
    parts = [f"{len(missing)} live ids missing (e.g. {some(missing)})" if len(missing) else "",
             f"{len(extra)} ids not in the live data (e.g. {some(extra)})" if len(extra) else ""]
    raise PredictionsIndexError("; ".join(p for p in parts if p))


def some(values: Collection[object]) -> str:
    shown = [str(v) for v in list(values)[:SHOWN_IDS]]
    return ", ".join(shown) + (", ..." if len(values) > SHOWN_IDS else "")
