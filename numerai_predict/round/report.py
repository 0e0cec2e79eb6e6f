"""The round's report: a CSV row per model and a JSON summary, written atomically."""

from __future__ import annotations

import csv
import json
import logging
import os

from numerai_predict.files import atomic_file, write_atomic
from numerai_predict.round.outcomes import Outcome
from numerai_predict.round.planning import Settings

log = logging.getLogger("numerai_predict.round")


REPORT_COLUMNS = ("id", "status", "exit_code", "environment", "seconds", "peak_mib", "csv", "upload", "error", "start")


def write_report(settings: Settings, outcomes: list[Outcome], seconds: float, workers: str) -> str:
    counts = {status: sum(o.status == status for o in outcomes) for status in ("ok", "failed", "skipped")}
    reused = [o.id for o in outcomes if o.reused]
    retried = [o.id for o in outcomes if o.attempts > 1]
    summary = (f"round: {len(outcomes)} models: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} "
               f"skipped" + (f" ({len(reused)} delivered earlier, not rerun)" if reused else "")
               + (f"; retried after a system failure: {', '.join(retried)}" if retried else "")
               + f"; {seconds:.1f} s on {workers}; report {settings.report}")
    os.makedirs(os.path.dirname(settings.report) or ".", exist_ok=True)
    with atomic_file(settings.report, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS)
        writer.writeheader()
        for outcome in outcomes:
            writer.writerow(outcome.row())
    details = {"summary": summary, "seconds": round(seconds, 3), "workers": workers, "counts": counts,
               "driver": driver_usage(),
               "retried": retried, "reused": reused,
               "models": [{**o.row(), "exit_code": o.exit_code, "seconds": round(o.seconds, 3),
                           "peak_mib": None if o.peak_mib is None else round(o.peak_mib, 1),
                           "cpu_seconds": round(o.cpu_seconds, 3), "attempts": o.attempts, "node": o.node,
                           "reused": o.reused} for o in outcomes]}
    write_atomic(json_path(settings.report), json.dumps(details, indent=1))
    return summary


def driver_usage() -> dict[str, float]:
    """The driver's own cost (planning, doctor, state, report; not its models' processes)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def json_path(report: str) -> str:
    return (report[:-4] if report.endswith(".csv") else report) + ".json"
