"""What a model returned, checked into the one-column DataFrame that gets delivered."""

from __future__ import annotations

import csv
import io
import math
import os
import stat
from array import array
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
        raise spread_error(std, len(numbers), float(numbers.min()), float(numbers.max()))


def spread_error(std: float, count: int, low: float, high: float) -> PredictionsConstantError:
    return PredictionsConstantError(f"the {count} predictions have a standard deviation of {std:.3g} "
                                    f"(from {low:.6g} to {high:.6g}); Numerai refuses one of about 1e-8 or less")


def without_spread(std: float) -> bool:
    """numerai-tools' rule (validate_values): np.isclose(0, std), std with one degree of freedom;
    one row has no standard deviation (NaN) and passes there too."""
    return std <= 1e-8 + 1e-5 * std  # numpy.isclose's atol and rtol; False for NaN


def sample_std(numbers: list[float]) -> float:
    if len(numbers) < 2:
        return math.nan
    mean = math.fsum(numbers) / len(numbers)
    return math.sqrt(math.fsum((x - mean) ** 2 for x in numbers) / (len(numbers) - 1))


def deliverable(predictions_path: str, live_ids: list[str]) -> tuple[bytes, int]:
    """The CSV bytes of the model process's predictions, and their count. That process validated them
    and wrote them as raw float64, one per live id in their order; its code is the model's, so they are
    checked again here against the live ids it sent before the model loaded. Standard library only:
    the runner imports neither pandas nor pyarrow (their imports were its largest fixed cost)."""
    numbers = read_predictions(predictions_path, len(live_ids))
    check_numbers(numbers, live_ids)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")  # pandas' to_csv: minimal quoting, floats as repr
    writer.writerow(["id", "prediction"])
    writer.writerows(zip(live_ids, map(repr, numbers), strict=True))
    return out.getvalue().encode(), len(numbers)


def read_predictions(path: str, rows: int) -> array[float]:
    """The raw float64 file, read only when it is a regular file of exactly ``rows`` values (never a
    FIFO that would block the runner, a link elsewhere, or a file that grew past its promise)."""
    from numerai_predict.errors import ModelCrashedError

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        raise ModelCrashedError("the model process left no predictions file") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ModelCrashedError("the model process left something else than a file as its predictions")
        if info.st_size != 8 * rows:
            raise ModelCrashedError(f"the model process's predictions file holds {info.st_size} bytes for {rows} "
                                    "live rows (8 per prediction); not read")
        data = handle.read(8 * rows)
    if len(data) != 8 * rows:
        raise ModelCrashedError("the model process's predictions file changed while it was read")
    numbers = array("d")
    numbers.frombytes(data)
    return numbers


def check_numbers(numbers: array[float], ids: list[str]) -> None:
    """validate_predictions' checks of the values, on raw float64 (what the model's process sent)."""
    nan = [ids[i] for i, x in enumerate(numbers) if x != x]
    if nan:
        raise PredictionsNaNError(f"{len(nan)} predictions are NaN (ids: {some(nan)})")
    infinite = [ids[i] for i, x in enumerate(numbers) if math.isinf(x)]
    if infinite:
        raise PredictionsInfError(f"{len(infinite)} predictions are infinite (ids: {some(infinite)})")
    outside = [x for x in numbers if not 0.0 <= x <= 1.0]
    if outside:
        raise PredictionsRangeError(f"{len(outside)} predictions are outside [0, 1] "
                                    f"(min {min(numbers):.4g}, max {max(numbers):.4g})")
    values = list(numbers)
    std = sample_std(values)
    if without_spread(std):
        raise spread_error(std, len(values), min(values), max(values))


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
