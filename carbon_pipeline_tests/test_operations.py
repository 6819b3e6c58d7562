"""Migrations, the API client's windows, the schedule and both command lines, for real."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from carbon_pipeline.resources import CarbonIntensityResource, PrometheusResource, WarehouseResource
from carbon_pipeline.resources.warehouse import WarehouseError, migrations
from carbon_pipeline_tests.conftest import cli, read_table
from carbon_pipeline_tests.fleet_spec import WINDOW_START, t

SCHEMA_SNAPSHOT = """
SELECT 'column' AS kind, table_name || '.' || column_name || ':' || data_type AS item
FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL SELECT 'index', indexname FROM pg_indexes WHERE schemaname = 'public'
UNION ALL SELECT 'view', table_name FROM information_schema.views WHERE table_schema = 'public'
ORDER BY 1, 2
"""


def test_migrations_build_the_seed_schema_once(create_database):
    database_url = create_database(empty=True)
    warehouse = WarehouseResource(database_url=database_url)
    versions = [version for version, _ in migrations()]
    assert versions[:2] == ["0001_seed_schema", "0002_pipeline_tables"]
    assert warehouse.migrate() == versions
    first = read_table(database_url, SCHEMA_SNAPSHOT)
    assert warehouse.migrate() == []
    assert read_table(database_url, SCHEMA_SNAPSHOT).equals(first)
    items = set(first["item"])
    for table in (
        "dim_project",
        "dim_group",
        "dim_user",
        "dim_instance",
        "dim_machine",
        "bridge_project_group",
        "bridge_project_user",
        "workspace_session",
    ):
        assert any(i.startswith(f"{table}.") for i in items), table
    for index in (
        "idx_workspace_active",
        "idx_fact_ada_ts",
        "idx_fact_project_ts",
        "idx_fact_machine_ts",
        "idx_fact_user_ts",
        "idx_fact_group_ts",
    ):
        assert index in items
    for scope in ("project", "machine", "group", "user"):
        assert f"v_{scope}_total" in items and f"v_{scope}_averages" in items
    assert "fact_usage_user.busy_cpu_seconds_total:double precision" in items


def test_an_edited_migration_is_refused(database_url, tmp_path, monkeypatch):
    from carbon_pipeline.resources import warehouse as module

    WarehouseResource(database_url=database_url).migrate()
    edited = tmp_path / "migrations"
    edited.mkdir()
    for f in module.MIGRATIONS_DIR.glob("*.sql"):
        (edited / f.name).write_text(
            f.read_text() + ("\n-- edited\n" if f.name.startswith("0001") else "")
        )
    monkeypatch.setattr(module, "MIGRATIONS_DIR", edited)
    with pytest.raises(
        WarehouseError, match="0001_seed_schema was applied with different contents"
    ):
        WarehouseResource(database_url=database_url).migrate()


def test_intensity_requests_stay_within_the_limit_and_are_trimmed(
    intensity_server, intensity_periods
):
    api = CarbonIntensityResource(api_url=intensity_server.url, max_days_per_request=1, retries=0)
    start, end = t("2025-03-03T05:00"), t("2025-03-05T17:00")
    intensity_server.requests.clear()
    got = api.periods(start, end)
    assert intensity_server.requests == [
        "/intensity/2025-03-03T05:00Z/2025-03-04T05:00Z",
        "/intensity/2025-03-04T05:00Z/2025-03-05T05:00Z",
        "/intensity/2025-03-05T05:00Z/2025-03-05T17:00Z",
    ]
    want = intensity_periods[
        (intensity_periods["period_from"] >= start) & (intensity_periods["period_from"] < end)
    ]
    assert len(got) == 2 * 60 == len(want)
    assert got["actual"].tolist() == want["actual"].tolist()
    assert got["period_from"].is_monotonic_increasing and got["period_from"].is_unique


def test_a_label_matcher_with_odd_characters_selects_exactly_that_series(prometheus):
    from carbon_pipeline_tests.fleet_spec import ODD_MACHINE

    server, truth = prometheus
    client = PrometheusResource(
        prometheus_url=server.url, label_matchers={"machine_name": ODD_MACHINE}
    )
    got, warnings, notes = client.host_cpu_seconds(WINDOW_START, WINDOW_START + timedelta(hours=3))
    assert warnings == notes == []
    assert set(got["machine_name"]) == {ODD_MACHINE}
    assert got["busy_cpu_seconds_total"].tolist() == [900.0, 900.0, 900.0]


def test_the_schedule_requests_the_hour_that_just_closed():
    from carbon_pipeline.definitions import defs

    schedule = defs.resolve_schedule_def("hourly_carbon_schedule")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2025, 3, 3, 11, 10, tzinfo=UTC)
    )
    (request,) = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2025-03-03-10:00"
    assert schedule.execution_timezone in (None, "UTC")


def test_cli_backfill_runs_through_dagster_in_chunks(pipeline_env):
    done = cli(
        "backfill",
        "--start",
        "2025-03-03T00:00Z",
        "--end",
        "2025-03-03T10:00Z",
        "--hours-per-run",
        "4",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.rstrip().splitlines()  # rich 13.0 ends a piped output with a blank line
    runs = [line for line in lines if " done " in line]
    assert [line.split()[:3] for line in runs] == [
        ["2025-03-03T00:00Z", "..", "2025-03-03T04:00Z"],
        ["2025-03-03T04:00Z", "..", "2025-03-03T08:00Z"],
        ["2025-03-03T08:00Z", "..", "2025-03-03T10:00Z"],
    ]
    assert lines[-1].startswith("3 run(s), 10 hours, ")
    # A terminal for people: the run lines, their warnings (host .99 is held but never
    # reported) and the summary; Dagster's event log stays in the instance.
    assert all(line in runs or line.startswith("    warning: ") for line in lines[:-1]), lines
    assert "held by a workspace but not reported" in done.stdout
    for noise in ("DEBUG", "BetaWarning", "PreviewWarning", "alembic", "ASSET_MATERIALIZATION"):
        assert noise not in done.stdout + done.stderr
    instance = dg.DagsterInstance.get()
    runs = instance.get_runs()
    assert len(runs) == 3 and all(r.is_success for r in runs)
    assert {r.tags["dagster/asset_partition_range_start"] for r in runs} == {
        "2025-03-03-00:00",
        "2025-03-03-04:00",
        "2025-03-03-08:00",
    }
    ada = read_table(pipeline_env["DATABASE_URL"], "SELECT count(*) AS n FROM fact_usage_ada")
    assert ada["n"].iloc[0] == 10
    key = dg.AssetKey("fact_usage_user")
    assert instance.get_materialized_partitions(key) >= {
        f"2025-03-03-{h:02d}:00" for h in range(10)
    }


@pytest.mark.parametrize(
    "start, end, message",
    [
        ("2022-12-01T00:00Z", "2023-01-02T00:00Z", "before the first partition"),
        ("2025-03-03T00:00Z", "2999-01-01T00:00Z", "after the last closed hour"),
        ("2025-03-03T00:30Z", "2025-03-03T02:00Z", "not a UTC hour boundary"),
        ("2025-03-03T05:00Z", "2025-03-03T02:00Z", "empty window"),
        ("yesterday", "2025-03-03T02:00Z", "not an ISO 8601 time"),
    ],
)
def test_cli_backfill_refuses_ranges_outside_the_partitions(
    pipeline_env, capsys, start, end, message
):
    from carbon_pipeline.cli import main

    assert main(["backfill", "--start", start, "--end", end]) == 2
    assert message in capsys.readouterr().err
    assert dg.DagsterInstance.get().get_runs() == []


def test_dagster_native_partition_range(pipeline_env):
    env = {**os.environ, "CARBON_PIPELINE_BACKFILL_HOURS_PER_RUN": "0"}
    dagster = str(Path(sys.executable).parent / "dagster")
    result = subprocess.run(
        [
            dagster,
            "asset",
            "materialize",
            "-m",
            "carbon_pipeline.definitions",
            "--select",
            "not group:forecast",
            "--partition-range",
            "2025-03-03-06:00...2025-03-03-08:00",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    hours = read_table(
        pipeline_env["DATABASE_URL"], "SELECT timestamp_utc FROM fact_usage_ada ORDER BY 1"
    )
    assert pd.to_datetime(hours["timestamp_utc"], utc=True).dt.hour.tolist() == [6, 7, 8]


def test_binary_copy_round_trips_every_kind_of_value(database_url):
    import psycopg

    from carbon_pipeline.resources import binary_copy

    frame = pd.DataFrame(
        {
            "at": pd.to_datetime(
                ["2025-03-03T10:00:00Z", "1999-12-31T23:59:59.5Z", None], utc=True, format="ISO8601"
            ),
            "x": [1.5, float("nan"), -0.0],
            "n": [1, -2, 2**40],
            "k": [3, 0, -7],
            "s": ['quote " back \\ ünï', "", None],
        }
    )
    columns = [("at", "timestamptz"), ("x", "float8"), ("n", "int8"), ("k", "int4"), ("s", "text")]
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE t (at timestamptz, x float8, n int8, k int4, s text)")
        with conn.cursor() as cur, cur.copy("COPY t FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(binary_copy.encode(frame, columns))
        rows = conn.execute("SELECT at, x, n, k, s FROM t ORDER BY n").fetchall()
    assert rows == [
        (datetime(1999, 12, 31, 23, 59, 59, 500000, tzinfo=UTC), None, -2, 0, ""),
        (datetime(2025, 3, 3, 10, tzinfo=UTC), 1.5, 1, 3, 'quote " back \\ ünï'),
        (None, -0.0, 2**40, -7, None),
    ]


def test_binary_copy_groups_rows_by_text_values_and_nulls(database_url):
    """Rows whose text values and NULLs mix in many combinations all arrive intact."""
    import numpy as np
    import psycopg

    from carbon_pipeline.resources import binary_copy

    rng = np.random.default_rng(7)
    n = 2000
    names = np.array(["a", "bb", "", "ü-ni", None], dtype=object)
    frame = pd.DataFrame(
        {
            "n": np.arange(n),
            "s": names[rng.integers(0, 5, n)],
            "t": names[rng.integers(0, 5, n)],
            "x": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)),
        }
    )
    columns = [("n", "int8"), ("s", "text"), ("t", "text"), ("x", "float8")]
    with psycopg.connect(database_url) as conn:
        conn.execute("CREATE TABLE g (n int8, s text, t text, x float8)")
        with conn.cursor() as cur, cur.copy("COPY g FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(binary_copy.encode(frame, columns))
        rows = conn.execute("SELECT n, s, t, x FROM g ORDER BY n").fetchall()
    assert len(rows) == n
    for (number, s, text, x), want in zip(rows, frame.itertuples(index=False), strict=True):
        assert (number, s, text) == (want.n, *(None if pd.isna(v) else v for v in (want.s, want.t)))
        assert (x is None) if np.isnan(want.x) else x == want.x
    assert binary_copy.encode(frame.iloc[:0], columns) == binary_copy.HEADER + binary_copy.TRAILER
