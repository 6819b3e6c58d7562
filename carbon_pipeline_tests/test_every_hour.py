"""Every hour accounted for (issue 19): the coverage views follow the pipeline's calendar, so
an hour never run or whose run failed shows as such, never as complete; the catch-up asks
for exactly those hours, bounded; the freshness check runs without a pipeline run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import psycopg

from carbon_pipeline.definitions import defs
from carbon_pipeline.partitions import PARTITION_KEY_FORMAT, PIPELINE_START
from carbon_pipeline.resources import PrometheusResource
from carbon_pipeline_tests.conftest import materialize_range
from carbon_pipeline_tests.fleet_spec import t

DAY = t("2025-03-03T00:00")
HOUR_TEN = t("2025-03-03T10:00")


def as_of(database_url: str, now: str, query: str, params=None) -> pd.DataFrame:
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        cur.execute("SELECT set_config('carbon.now', %s, false)", (now,))
        cur.execute(query, params)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def coverage_of_day(database_url: str) -> tuple[pd.DataFrame, pd.Series]:
    hours = as_of(
        database_url,
        "2025-03-04T00:30Z",
        "SELECT timestamp_utc, hosts_reported, coverage, failed_run_id, gap_reasons "
        "FROM v_coverage_hourly WHERE timestamp_utc >= %s AND timestamp_utc < %s ORDER BY 1",
        (DAY, DAY + timedelta(days=1)),
    )
    day = as_of(
        database_url,
        "2025-03-04T00:30Z",
        "SELECT * FROM v_coverage_daily WHERE day = %s",
        (DAY.date(),),
    ).iloc[0]
    return hours, day


def test_an_hour_never_run_shows_not_run_then_failed_with_its_run_then_its_data(
    resources, database_url
):
    # Hours 0-9 and 11-23 backfilled; hour 10 never run (a failed hourly run, retries spent).
    assert materialize_range(resources, DAY, HOUR_TEN).success
    assert materialize_range(
        resources, HOUR_TEN + timedelta(hours=1), DAY + timedelta(days=1)
    ).success
    hours, day = coverage_of_day(database_url)
    assert len(hours) == 24
    ten = hours.set_index(pd.to_datetime(hours["timestamp_utc"]).dt.hour).loc[10]
    assert (ten["coverage"], ten["hosts_reported"], ten["failed_run_id"]) == ("not run", 0, None)
    assert set(hours["coverage"]) - {"not run"} <= {"complete", "partial"}
    assert (day["hours"], day["hours_not_run"], day["hours_failed"]) == (24, 1, 0)
    assert day["hours_complete"] + day["hours_partial"] == 23

    # Its run fails (Prometheus unreachable): the hour names the run and the error.
    down = {
        **resources,
        "prometheus": PrometheusResource(prometheus_url="http://127.0.0.1:9", retries=0),
    }
    failed = materialize_range(down, HOUR_TEN, HOUR_TEN + timedelta(hours=1), raise_on_error=False)
    assert not failed.success
    hours, day = coverage_of_day(database_url)
    ten = hours.set_index(pd.to_datetime(hours["timestamp_utc"]).dt.hour).loc[10]
    assert (ten["coverage"], ten["failed_run_id"]) == ("failed", failed.run_id)
    assert ten["gap_reasons"].startswith("host_cpu_seconds failed: ")
    assert (day["hours"], day["hours_not_run"], day["hours_failed"]) == (24, 0, 1)

    # Run again with Prometheus back: the hour has its data, the failure is history.
    assert materialize_range(resources, HOUR_TEN, HOUR_TEN + timedelta(hours=1)).success
    hours, day = coverage_of_day(database_url)
    ten = hours.set_index(pd.to_datetime(hours["timestamp_utc"]).dt.hour).loc[10]
    assert ten["coverage"] in ("complete", "partial") and ten["failed_run_id"] is None
    assert (day["hours_not_run"], day["hours_failed"]) == (0, 0)

    # The calendar runs from CARBON_PIPELINE_START to the last closed hour before "now".
    span = as_of(
        database_url,
        "2025-03-04T05:30Z",
        "SELECT min(timestamp_utc) AS first, max(timestamp_utc) AS last, count(*) AS hours, "
        "count(*) FILTER (WHERE coverage = 'not run') AS not_run FROM v_coverage_hourly",
    ).iloc[0]
    assert span["first"] == PIPELINE_START and span["last"] == t("2025-03-04T04:00")
    assert span["hours"] == (t("2025-03-04T05:00") - PIPELINE_START) / timedelta(hours=1)
    assert span["not_run"] == span["hours"] - 24


def test_the_catch_up_asks_for_missing_hours_within_its_bound_once_an_hour():
    """Dagster's own evaluation of the assets' automation condition. Nine days materialised
    but four holes (30 and 31 hours, 6.5 and 7.5 days old) and the two newest hours: an hour
    later it asks for the holes within its seven days and for the hour that is now two hours
    old, not for the hole beyond its bound nor the two newest hours (the schedule's); then
    not again until its cron tick passes."""
    now = datetime(2025, 6, 10, 8, 50, tzinfo=UTC)
    latest = now.replace(minute=0) - timedelta(hours=1)  # the last closed hour, 07:00

    def ago(hours: int) -> datetime:
        return latest - timedelta(hours=hours)

    holes = {ago(30), ago(31), ago(156), ago(180)}
    keys = [
        dg.AssetKey(k)
        for k in ("host_cpu_seconds", "carbon_intensity", "host_usage", "usage_facts")
    ]
    instance = dg.DagsterInstance.ephemeral()
    for n in range(2, 24 * 9):
        if ago(n) not in holes:
            for key in keys:
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(key, partition=ago(n).strftime(PARTITION_KEY_FORMAT))
                )
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now)
    assert first.total_requested == 0  # its cron tick (:40) has not passed since it began
    later = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, evaluation_time=now + timedelta(hours=1), cursor=first.cursor
    )
    for key in keys:
        got = {
            datetime.strptime(p, PARTITION_KEY_FORMAT).replace(tzinfo=UTC)
            for p in later.get_requested_partitions(key)
        }
        # 08:00 and 07:00 are the two newest hours then; 06:00 is two hours old.
        assert got == {ago(30), ago(31), ago(156), ago(1)}, key
    again = dg.evaluate_automation_conditions(
        defs=defs,
        instance=instance,
        evaluation_time=now + timedelta(hours=1, minutes=5),
        cursor=later.cursor,
    )
    assert again.total_requested == 0  # asked once an hour, not every sensor tick


def test_the_freshness_check_runs_on_its_own_schedule_without_a_pipeline_run(
    resources, database_url, pipeline_env
):
    schedule = defs.resolve_schedule_def("freshness_schedule")
    job = defs.resolve_job_def(schedule.job_name)
    # An empty warehouse, then one whose newest hour is from 2025: stale both times.
    for expected_newest in ("none", "2025-03-03T11:00:00+00:00"):
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
        assert result.success
        (evaluation,) = result.get_asset_check_evaluations()
        assert evaluation.check_name == "freshness" and not evaluation.passed
        assert evaluation.metadata["newest_hour"].value == expected_newest
        assert not result.get_asset_materialization_events()
        assert materialize_range(resources, t("2025-03-03T10:00"), t("2025-03-03T12:00")).success
