"""Numerai's own submission rules, as numerai-tools states them (installed in every
environment): what the runner refuses must be what Numerai refuses, and every CSV it
writes must pass. numerai-tools' ``validate_submission_numerai`` is the headers, ids
and values checks in that order; py310's numerai-tools 0.3 has the three without it."""

from __future__ import annotations

import pandas as pd
from numerai_tools import submissions


def numerai_refusal(submission: pd.DataFrame, live_ids) -> str | None:
    """Why numerai-tools refuses ``submission`` (columns id and a prediction) for ``live_ids``, or None."""
    try:
        id_col, prediction_col = submissions.validate_headers_numerai(submission)
        filtered, _ = submissions.validate_ids_numerai(pd.Series(live_ids), submission, id_col)
        submissions.validate_values(filtered, prediction_col)
    except Exception as exc:  # its checks are assertions, and a wrong dtype raises TypeError
        return f"{type(exc).__name__}: {exc}"
    return None


def csv_refusal(path, live_ids=None) -> str | None:
    """numerai-tools' verdict on a CSV the runner wrote, read as Numerai reads an upload; without
    ``live_ids``, the CSV's own ids stand in for them (their count and uniqueness still checked)."""
    submission = pd.read_csv(path, dtype={"id": str})
    return numerai_refusal(submission, submission["id"] if live_ids is None else live_ids)
