"""Every hour accounted for (issue 19): the coverage views follow the pipeline's calendar, so
an hour never run or whose run failed shows as such, never as complete; the catch-up asks
for exactly those hours, bounded; the freshness check runs without a pipeline run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import psycopg
import pytest

from carbon_pipeline.definitions import defs
from carbon_pipeline.demo.fleet import Fleet, FleetHost
from carbon_pipeline.demo.loader import load_history, write_registry_seed
from carbon_pipeline.demo.prometheus_server import PrometheusServer
from carbon_pipeline.partitions import PARTITION_KEY_FORMAT, PIPELINE_START
from carbon_pipeline.resources import PrometheusResource, RegistryResource, WarehouseResource
from carbon_pipeline.tables import STAGE_TABLES
from carbon_pipeline_tests.conftest import materialize_range, read_table
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
    keys = [dg.AssetKey(table) for tables in STAGE_TABLES.values() for table in tables]
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


# ---- gaps the same however a range was run ------------------------------------------------

GAPS = (
    "SELECT timestamp_utc, hostname, cloud_project_name, reason FROM v_host_cpu_gaps ORDER BY 1, 2"
)


@pytest.fixture(scope="module")
def gappy_fleet(tmp_path_factory):
    """Four hosts over 06:00-18:00: .1 silent 10:00-13:00 (three hours: up between its
    reports); .2 silent 08:00-14:00 (six hours: a stopped VM, held by nobody); .3 held by a
    workspace, silent 09:00-11:00; .4's address used by CDAaaS until 11:00 and by DDAaaS from
    12:00 (another host, not a silent one)."""
    start, end = t("2025-03-03T06:00"), t("2025-03-03T18:00")
    hosts = [
        FleetHost(
            "10.4.0.1:9100",
            "IDAaaS",
            "Muon",
            2,
            start,
            end,
            "constant:0.5",
            silent=((t("2025-03-03T10:00"), t("2025-03-03T13:00")),),
        ),
        FleetHost(
            "10.4.0.2:9100",
            "IDAaaS",
            "Muon",
            2,
            start,
            end,
            "constant:0.5",
            silent=((t("2025-03-03T08:00"), t("2025-03-03T14:00")),),
        ),
        FleetHost(
            "10.4.0.3:9100",
            "IDAaaS",
            "SANS",
            1,
            start,
            end,
            "constant:0.25",
            silent=((t("2025-03-03T09:00"), t("2025-03-03T11:00")),),
        ),
        FleetHost("10.4.0.4:9100", "CDAaaS", "EPAC", 1, start, t("2025-03-03T11:00"), "busy"),
        FleetHost("10.4.0.4:9100", "DDAaaS", "Dev", 1, t("2025-03-03T12:00"), end, "busy"),
    ]
    workspaces = [{"hostname": "10.4.0.3", "owner": "alice", "created_time": t("2025-03-01T00:00")}]
    fleet = Fleet(hosts, workspaces=workspaces, users=[], groups=[])
    root = tmp_path_factory.mktemp("gappy")
    load_history(fleet, start, end, root / "data", root / "work")
    server = PrometheusServer(root / "data").start()
    seed = write_registry_seed(fleet, root / "registry")
    yield server, seed, start, end
    server.stop()


def test_gaps_are_the_same_hour_by_hour_in_one_range_and_in_chunks_out_of_order(
    resources, create_database, gappy_fleet
):
    server, seed, start, end = gappy_fleet

    def run(ranges) -> pd.DataFrame:
        url = create_database()
        warehouse = WarehouseResource(database_url=url)
        fleet_resources = {
            **resources,
            "warehouse": warehouse,
            "prometheus": PrometheusResource(prometheus_url=server.url, retries=0),
            "registry": RegistryResource(
                mongo_uri="mongomock://localhost", database="ada_gappy", seed_dir=str(seed)
            ),
        }
        for range_start, range_end in ranges:
            assert materialize_range(fleet_resources, range_start, range_end).success
        gaps = read_table(url, GAPS)
        gaps["timestamp_utc"] = pd.to_datetime(gaps["timestamp_utc"], utc=True)
        return gaps

    hours = pd.date_range(start, end, freq="h", inclusive="left").to_pydatetime()
    hour_by_hour = run([(h, h + timedelta(hours=1)) for h in hours])
    one_range = run([(start, end)])
    chunked = run(
        [
            (t("2025-03-03T13:00"), end),
            (start, t("2025-03-03T09:00")),
            (t("2025-03-03T09:00"), t("2025-03-03T13:00")),
        ]
    )
    pd.testing.assert_frame_equal(hour_by_hour, one_range)
    pd.testing.assert_frame_equal(chunked, one_range)
    got = {
        (r.timestamp_utc.hour, r.hostname, r.cloud_project_name, r.reason)
        for r in one_range.itertuples()
    }
    between = "not reported, though it reported before and after"
    assert got == {
        *((h, "10.4.0.1", "IDAaaS", between) for h in (10, 11, 12)),
        *((h, "10.4.0.3", "IDAaaS", "held by a workspace but not reported") for h in (9, 10)),
    }
