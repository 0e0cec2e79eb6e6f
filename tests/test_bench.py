"""benchmarks/bench.py cannot rot: a smoke run on tiny data prints the table and writes every
figure to JSON. Not a timed test: the ratios are never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_smoke_run_prints_the_table_and_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"), "--rows", "60", "--features", "16",
         "--sizes", "1,2", "--runs", "1", "--frameworks", "lightgbm,lightgbm-participant,no_such_framework",
         "--docker", "no",
         "--cache", str(tmp_path / "cache"), "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| figure | value | floor | ratio | target | met? |" in result.stdout
    assert "skipped (not in this environment): no_such_framework" in result.stdout
    report = json.loads(out.read_text())
    assert report["frameworks"] == ["lightgbm", "lightgbm-participant"] and report["skipped"] == ["no_such_framework"]
    figures = {row["figure"] for row in report["table"]}
    for where in ("lightgbm 1x 1 CPU", "lightgbm 2x 1 CPU", "lightgbm 1x all CPUs", "lightgbm-participant 1x 1 CPU"):
        for figure in ("CPU s", "wall s", "peak tree memory MiB"):
            assert f"{where}: {figure}" in figures
    assert {"lightgbm growth 1x -> 2x, 1 CPU: CPU s", "lightgbm growth 1x -> 2x, 1 CPU: peak tree memory"} <= figures
    for row in report["table"]:
        assert row["value"] > 0 and row["floor"] > 0 and row["ratio"] > 0, row
        assert row["figure"] in result.stdout
    assert {s["size"] for s in report["samples"]} == {1, 2}
