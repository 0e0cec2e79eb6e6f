"""The manifest: one row per model, checked; the round's own failures and exit codes."""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass
from typing import NoReturn

from numerai_predict.errors import UsageError
from numerai_predict.values import is_url

log = logging.getLogger("numerai_predict.round")


EXIT_OK, EXIT_USAGE, EXIT_MANIFEST, EXIT_BACKEND, EXIT_UNRUN, EXIT_BUSY, EXIT_INTERRUPTED = 0, 2, 3, 4, 5, 6, 130


class RoundError(Exception):
    """A failure of the round itself: one line, and the round's exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


COLUMNS = ("id", "model", "post_url", "post_data", "environment")


ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


ENV_PATTERN = re.compile(r"py3\d+(-runtime)?")


@dataclass(frozen=True)
class Entry:
    """One manifest row, checked."""

    id: str
    model: str  # an absolute path or an http(s) URL
    post_url: str = ""
    post_data: str = ""
    environment: str = ""  # "" : the doctor's verdict
    line: int = 0


def read_manifest(path: str) -> list[Entry]:
    """The manifest's rows, or a RoundError (exit 3) naming the file, line and problem."""
    from numerai_predict.values import parse_post_data

    def bad(line: int | None, what: str) -> NoReturn:
        raise RoundError(f"manifest {path}{f' line {line}' if line else ''}: {what}", EXIT_MANIFEST)

    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        bad(None, f"cannot be read: {getattr(exc, 'strerror', None) or exc}")
    if not rows:
        bad(None, "is empty (expected a header row: " + ",".join(COLUMNS) + ")")
    header = [name.strip() for name in rows[0]]
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        bad(1, f"unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})")
    if len(set(header)) != len(header):
        bad(1, "a column is named twice")
    for required in ("id", "model"):
        if required not in header:
            bad(1, f"the header lacks the column {required!r}")
    folder = os.path.dirname(os.path.abspath(path))
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines are allowed
        if len(row) != len(header):
            bad(number, f"{len(row)} fields, the header has {len(header)}")
        values = {name: cell.strip() for name, cell in zip(header, row, strict=True)}
        ident, model = values.get("id", ""), values.get("model", "")
        if not ID_PATTERN.fullmatch(ident):
            bad(number, f"id {ident!r} must be 1-128 letters, digits, '_', '.' or '-' (it names a folder)")
        if ident in seen:
            bad(number, f"id {ident!r} repeats line {seen[ident]}")
        seen[ident] = number
        if not model:
            bad(number, "model is empty")
        model = model if is_url(model) else os.path.normpath(os.path.join(folder, model))
        post_url, post_data = values.get("post_url", ""), values.get("post_data", "")
        if bool(post_url) != bool(post_data):
            bad(number, "post_url and post_data go together")
        if post_url:
            if not is_url(post_url):
                bad(number, "post_url must be an http(s) URL")
            try:
                parse_post_data(post_data)
            except UsageError as exc:
                bad(number, exc.message.replace("--post_data", "post_data"))
        environment = values.get("environment", "")
        if environment and not ENV_PATTERN.fullmatch(environment):
            bad(number, f"environment {environment!r} is not a Python environment of pixi.toml (py310, py311, ...)")
        entries.append(Entry(ident, model, post_url, post_data, environment, number))
    if not entries:
        bad(None, "has no model rows")
    return entries
