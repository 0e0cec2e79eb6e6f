"""A job (one model of the round) and its outcome: the state kept per model, read back on resume."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from numerai_predict import numerai

log = logging.getLogger("numerai_predict.round")


STATE = "round-state.json"


@dataclass
class Job:
    """What one model's run needs; plain values (it crosses to Ray workers)."""

    id: str
    model: str
    environment: str
    folder: str  # <output_dir>/<id>
    features: str
    benchmarks: str
    post_url: str = ""
    post_data: str = ""
    timeout: float = numerai.TIMEOUT_SECONDS
    max_memory: str = numerai.MAX_MEMORY
    isolate: bool = True
    use_images: bool = False
    warm: bool = True  # forked from a warm template where one can serve it (round/warm.py)
    die_with_parent: bool = False  # Ray: predict.py dies with its worker (a lost node leaves no orphan)


@dataclass
class Outcome:
    """One report row, plus what the JSON tells beyond it."""

    id: str
    status: str  # ok, failed, skipped
    exit_code: int | None
    environment: str
    seconds: float = 0.0
    peak_mib: float | None = None
    csv: str = ""
    upload: str = ""  # uploaded, failed, "" (no post_url or not reached)
    error: str = ""
    cpu_seconds: float = 0.0
    attempts: int = 1
    node: str = ""
    reused: bool = False  # delivered by an earlier run (resume)
    round_failure: bool = False  # not run because of the round, not the model
    start: str = ""  # warm (forked from its template), or cold (and why)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def delivered(self) -> bool:
        return self.status == "ok"

    def row(self) -> dict[str, object]:
        return {"id": self.id, "status": self.status, "exit_code": "" if self.exit_code is None else self.exit_code,
                "environment": self.environment, "seconds": f"{self.seconds:.2f}",
                "peak_mib": "" if self.peak_mib is None else f"{self.peak_mib:.0f}", "csv": self.csv,
                "upload": self.upload, "error": self.error, "start": self.start}


def read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def delivered_state(folder: str) -> Outcome | None:
    """The outcome recorded in ``folder`` if the model was delivered, else None."""
    state = read_json(os.path.join(folder, STATE))
    if state and state.get("status") == "ok" and state.get("csv") and os.path.exists(str(state["csv"])):
        known = {k: v for k, v in state.items() if k in Outcome.__dataclass_fields__}
        return Outcome(**known)
    return None


def outcome_from_report(job: Job, report: dict[str, Any] | None, seconds: float, cpu: float,
                        returncode: int, log_path: str) -> Outcome:
    """predict.py's --report (and exit status) as a report row."""
    if report is None:  # predict.py died before writing it (killed, or it never started)
        why = f"killed by signal {-returncode}" if returncode < 0 else f"exited {returncode} without a report"
        return Outcome(job.id, "failed", returncode, job.environment, seconds, error=f"predict.py {why} (see "
                       f"{log_path})", cpu_seconds=cpu)
    code = int(report.get("exit_code", returncode))
    peak = (report.get("isolation") or {}).get("peak_memory_bytes")
    csv_path = str(report.get("predictions_csv") or "")
    if job.use_images and csv_path.startswith("/out/"):
        csv_path = os.path.join(job.folder, csv_path[len("/out/"):])
    upload = ""
    if job.post_url and not job.use_images:  # in an image the worker uploads (upload_from_worker)
        upload = "uploaded" if code == 0 else "failed" if code in (60, 61) else ""
    return Outcome(job.id, "ok" if code == 0 else "failed", code, job.environment, seconds,
                   peak / 2 ** 20 if isinstance(peak, (int, float)) else None, csv_path, upload,
                   str(report.get("error") or ""), cpu)
