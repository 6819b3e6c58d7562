"""The benchmark keeps working: its quick mode runs end to end and reports every figure. Not
part of `make test` (it takes as long as half the suite): `make test-bench` runs it, and CI
runs both. Its measurements are taken in two parts, side by side."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from carbon_pipeline_tests.bench_queries import MEASURED, REPORTER, documented_queries

LINES = {
    "abcd": (
        "(a) backfill through Dagster",
        "(b) I/O floor",
        "(c) one run per partition",
        "(d) Dagster floor",
        "our own work (a - d) / I/O floor (b) =",
        "one run per partition (c) / backfill (a) =",
    ),
    "aef": (
        "(a) backfill through Dagster",
        "(e) the same backfill launched from the UI",
        "daemon picks it up: first run submitted",
        "the UI backfill (e) / the CLI backfill (a) =",
        "(f) two concurrent backfills of the halves:",
        "(f_months) two concurrent backfills whose runs share months:",
        "(f_three) three concurrent backfills of the thirds:",
        "waiting on locks",
        "CPU: one at a time kept",
    ),
}


@pytest.mark.parametrize(
    "only",
    [
        pytest.param("abcd", marks=[pytest.mark.bench, pytest.mark.slow(seconds=70)]),
        pytest.param("aef", marks=[pytest.mark.bench, pytest.mark.slow(seconds=180)]),
    ],
)
def test_quick_benchmark_reports_every_measurement(tmp_path, only):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "carbon_pipeline_tests.bench",
            "--quick",
            "--days",
            "7",
            "--skip-scaling",
            "--only",
            only,
            "--cache",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for line in LINES[only]:
        assert line in done.stdout
    (saved,) = tmp_path.glob("results-*.json")
    report = json.loads(saved.read_text())
    assert report["hosts"] == 25 and report["hours"] == 168
    assert set(only) <= set(report)
    # Every host-hour of the fleet reached the warehouse: 25 hosts, most of them all week.
    rows = report["a"]["rows"]
    assert rows["fact_usage_ada"] == 168 and rows["carbon_intensity_hourly"] == 168
    assert rows["host_cpu_hourly"] == rows["fact_usage_instance"] > 168 * 15
    if only == "aef":
        assert report["e"]["rows"] == rows  # the UI path wrote exactly what the CLI path did
        # and so did the concurrent backfills: halves, runs sharing months, thirds
        assert (
            report["f"]["rows"] == report["f_months"]["rows"] == report["f_three"]["rows"] == rows
        )
        # the month-sharing windows one after another, its speed-up's baseline
        assert report["f_months_serial"]["rows"] == rows
        assert report["f_months_serial"]["runs"] == report["f_months"]["runs"] > report["a"]["runs"]
        assert all(0 <= report[f]["lock_wait_share"] <= 1 for f in ("f", "f_months", "f_three"))
        # the machine's busy CPU-seconds, which bound the speed-up: a run keeps a core busy
        assert all(
            report[f]["machine_cpu_seconds"] > 0.5 * report[f]["wall"]
            for f in ("a", "f", "f_months", "f_months_serial", "f_three")
        )


@pytest.mark.bench
@pytest.mark.slow(seconds=40)
def test_quick_query_benchmark_times_every_documented_query():
    done = subprocess.run(
        [sys.executable, "-m", "carbon_pipeline_tests.bench_queries", "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    timed = {
        line.split()[0]: float(line.split()[1])
        for line in done.stdout.splitlines()
        if line.endswith((" ok", " OVER"))
    }
    assert set(timed) == set(documented_queries()) | set(MEASURED) | set(REPORTER)
    assert all(ms > 0 for ms in timed.values())
    assert "rollup of one month" in done.stdout
