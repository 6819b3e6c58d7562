"""Numbers you can trust: bad input, failing sources and failing writes, against the real
services. After each fault the tables equal those of a clean run, or the failed window is
untouched and a re-run completes it."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import timedelta

import dagster as dg
import pandas as pd
import psycopg
import pytest

from carbon_pipeline.config import ConfigError
from carbon_pipeline.definitions import ASSETS
from carbon_pipeline.demo.fleet import Fleet, FleetHost
from carbon_pipeline.demo.intensity_server import NESO_2023, IntensityServer, neso_periods
from carbon_pipeline.demo.loader import load_history
from carbon_pipeline.demo.prometheus_server import PrometheusServer
from carbon_pipeline.partitions import range_tags
from carbon_pipeline.resources import (
    CarbonIntensityResource,
    PrometheusResource,
    WarehouseResource,
)
from carbon_pipeline.resources.prometheus import PrometheusError
from carbon_pipeline.sensors import improvable_hours, intensity_actuals_sensor
from carbon_pipeline.tables import STAGE_TABLES
from carbon_pipeline_tests.conftest import materialize_range, read_table
from carbon_pipeline_tests.fleet_spec import t

TABLES = {
    "carbon_intensity_hourly": "timestamp_utc",
    "host_cpu_hourly": "timestamp_utc, hostname",
    "host_cpu_rejected": "timestamp_utc, hostname",
    "fact_usage_instance": "timestamp_utc, instance_id",
    "fact_usage_ada": "timestamp_utc",
    "fact_usage_project": "timestamp_utc, project_id",
    "fact_usage_machine": "timestamp_utc, machine_id",
    "fact_usage_group": "timestamp_utc, group_id",
    "fact_usage_user": "timestamp_utc, user_id",
}
START, END = t("2025-03-03T06:00"), t("2025-03-03T18:00")


def snapshot(database_url: str) -> dict[str, pd.DataFrame]:
    return {
        table: read_table(database_url, f"SELECT * FROM {table} ORDER BY {order}")
        for table, order in TABLES.items()
    }


def assert_same(before: dict, after: dict) -> None:
    for table in TABLES:
        pd.testing.assert_frame_equal(before[table], after[table], obj=table)


def failure_message(result, kind: str = "STEP_FAILURE") -> str:
    """The errors, with their causes, of the run's failed steps and of the attempts the
    retry policy retried; asserts there was an event of `kind`."""
    kinds = {"STEP_FAILURE", "STEP_UP_FOR_RETRY"}
    events = [e for e in result.all_events if e.event_type_value in kinds]
    assert any(e.event_type_value == kind for e in events), f"the run has no {kind} event"
    return "\n".join(e.event_specific_data.error.to_string() for e in events)


# ---- Prometheus -----------------------------------------------------------------------


@pytest.fixture
def own_prometheus(prometheus, tmp_path):
    """A second Prometheus on a copy of the test fleet's TSDB, that a test may stop."""
    server, _ = prometheus
    data = tmp_path / "data"
    shutil.copytree(
        server.data_dir, data, ignore=shutil.ignore_patterns("lock", "wal", "chunks_head")
    )
    own = PrometheusServer(data, log_file=tmp_path / "prometheus.log").start()
    yield own
    own.stop()


def test_prometheus_stopping_mid_range_commits_nothing(
    resources, own_prometheus, monkeypatch, database_url
):
    resources["prometheus"] = PrometheusResource(prometheus_url=own_prometheus.url, retries=0)
    resources["settings"] = type(resources["settings"])(chunk_hours=3)
    assert materialize_range(resources, START, END).success
    clean = snapshot(database_url)

    original = PrometheusResource.query_range

    def stop_at_the_third_chunk(self, query, start, end, **options):
        if start == t("2025-03-03T12:00"):  # two chunks answered, then Prometheus is gone
            own_prometheus.stop()
        return original(self, query, start, end, **options)

    monkeypatch.setattr(PrometheusResource, "query_range", stop_at_the_third_chunk)
    result = materialize_range(resources, START, END, raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert "Prometheus at http://127.0.0.1:" in message and "unreachable" in message
    assert "for hours 2025-03-03T12:00:00Z to 2025-03-03T15:00:00Z" in message
    assert "increase(node_cpu_seconds_total" in message
    assert_same(clean, snapshot(database_url))

    monkeypatch.setattr(PrometheusResource, "query_range", original)
    restarted = PrometheusServer(own_prometheus.data_dir, log_file=own_prometheus.log_file).start()
    try:
        resources["prometheus"] = PrometheusResource(prometheus_url=restarted.url, retries=0)
        assert materialize_range(resources, START, END).success
    finally:
        restarted.stop()
    assert_same(clean, snapshot(database_url))


def test_prometheus_errors_name_the_query_and_hours(prometheus):
    server, _ = prometheus
    client = PrometheusResource(prometheus_url=server.url, retries=0)
    # Prometheus itself refuses a malformed query with HTTP 400.
    with pytest.raises(
        PrometheusError,
        match=r"HTTP 400 for hours 2025-03-03T06:00:00Z to 2025-03-03T18:00:00Z \(query: sum by \(\).*parse error",
    ):
        client.query_range("sum by (", START, END)
    # A label name that PromQL cannot hold is refused before any query.
    bad_name = PrometheusResource(
        prometheus_url=server.url, label_matchers={'x"} or vector(1) #': "y"}
    )
    with pytest.raises(ConfigError, match="is not a Prometheus label name"):
        bad_name.host_cpu_seconds(START, END)


def test_prometheus_garbage_and_credentials_in_errors(intensity_server):
    # Anything that is not Prometheus' JSON (here: a server answering HTML) is refused, and a
    # password in the URL never reaches the message.
    url = intensity_server.url.replace("http://", "http://reader:s3cret@")
    intensity_server.fault = "garbage"
    try:
        with pytest.raises(PrometheusError, match="non-JSON") as error:
            PrometheusResource(prometheus_url=url, retries=0).host_cpu_seconds(START, END)
    finally:
        intensity_server.fault = None
    assert "s3cret" not in str(error.value) and "reader:***@" in str(error.value)


@pytest.fixture(scope="module")
def odd_fleet_prometheus(tmp_path_factory):
    """Hosts whose samples are broken: NaN at 10:00, +Inf at 12:00, a counter that runs
    backwards at 13:30; and one whose labels hold a newline."""
    start, end = t("2025-03-10T06:00"), t("2025-03-10T18:00")
    hosts = [
        FleetHost("10.1.0.1:9100", "IDAaaS", "Muon", 2, start, end, "constant:0.5"),
        FleetHost(
            "10.1.0.2:9100",
            "IDAaaS",
            "Muon",
            2,
            start,
            end,
            "constant:0.5",
            corrupt=((t("2025-03-10T10:00"), "nan"),),
        ),
        FleetHost(
            "10.1.0.3:9100",
            "IDAaaS",
            "Muon",
            2,
            start,
            end,
            "constant:0.5",
            corrupt=((t("2025-03-10T12:00"), "inf"),),
        ),
        FleetHost(
            "10.1.0.4:9100",
            "IDAaaS",
            "Muon",
            2,
            start,
            end,
            "constant:0.5",
            corrupt=((t("2025-03-10T13:30"), "backwards"),),
        ),
        FleetHost("10.1.0.5:9100", "DDAaaS", 'line\none "q" \\ ü', 1, start, end, "constant:0.25"),
    ]
    root = tmp_path_factory.mktemp("odd")
    load_history(Fleet(hosts), start, end, root / "data", root / "work")
    server = PrometheusServer(root / "data").start()
    yield server, start, end
    server.stop()


def test_impossible_numbers_are_quarantined_and_flagged(
    resources, odd_fleet_prometheus, database_url
):
    server, start, end = odd_fleet_prometheus
    resources["prometheus"] = PrometheusResource(prometheus_url=server.url, retries=0)
    result = materialize_range(resources, start, end)
    assert result.success
    rejected = read_table(
        database_url, "SELECT timestamp_utc, hostname, reason FROM host_cpu_rejected ORDER BY 1, 2"
    )
    got = {(r.timestamp_utc.hour, r.hostname, r.reason) for r in rejected.itertuples()}
    assert got == {
        (9, "10.1.0.2", "CPU seconds not finite (NaN or Inf)"),
        (10, "10.1.0.2", "CPU seconds not finite (NaN or Inf)"),
        (11, "10.1.0.3", "CPU seconds not finite (NaN or Inf)"),
        (12, "10.1.0.3", "CPU seconds not finite (NaN or Inf)"),
        (13, "10.1.0.4", "busy + idle CPU seconds exceed cpu_count x 3600"),
    }
    # Everything else is exact: 3600 busy seconds per healthy Muon host-hour, 900 for .5.
    hosts = read_table(
        database_url,
        "SELECT i.hostname, f.timestamp_utc, f.busy_cpu_seconds_total, m.machine_name "
        "FROM fact_usage_instance f JOIN dim_instance i USING (instance_id) JOIN dim_machine m USING (machine_id)",
    )
    assert len(hosts) == 5 * 12 - 5
    assert set(hosts.loc[hosts["hostname"] != "10.1.0.5", "busy_cpu_seconds_total"]) == {3600.0}
    assert set(hosts.loc[hosts["hostname"] == "10.1.0.5", "machine_name"]) == {'line\none "q" \\ ü'}
    ada = read_table(
        database_url, "SELECT timestamp_utc, busy_cpu_seconds_total FROM fact_usage_ada ORDER BY 1"
    )
    assert (
        ada.loc[ada["timestamp_utc"].dt.hour == 10, "busy_cpu_seconds_total"].iloc[0]
        == 3 * 3600 + 900
    )
    check = next(
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "completeness"
    )
    assert not check.passed and check.metadata["rejected_host_hours"].value == 5


# ---- the Carbon Intensity API ---------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, message",
    [("500", "HTTP 500"), ("garbage", "non-JSON body"), ("hang", "unreachable")],
)
def test_intensity_api_failures_fail_the_window_or_fall_back(
    resources, intensity_server, database_url, create_database, fault, message, monkeypatch
):
    assert materialize_range(resources, START, END).success
    clean = snapshot(database_url)
    settings = {
        "api_url": intensity_server.url,
        "retries": 1,
        "backoff_seconds": 0.01,
        "timeout_seconds": 1,
    }
    strict = CarbonIntensityResource(**settings, on_missing="fail")
    lenient = CarbonIntensityResource(**settings, on_missing="fallback")
    # A warehouse that holds nothing for the window yet (a stored intensity is never
    # replaced by the fallback: see test_record).
    fresh_url = create_database()
    fresh = {**resources, "warehouse": WarehouseResource(database_url=fresh_url)}
    fresh["warehouse"].migrate()
    intensity_server.fault, intensity_server.hang_seconds = fault, 3
    try:
        result = materialize_range(
            {**resources, "carbon_intensity_api": strict}, START, END, raise_on_error=False
        )
        assert not result.success
        assert message in failure_message(result)
        assert_same(clean, snapshot(database_url))

        result = materialize_range({**fresh, "carbon_intensity_api": lenient}, START, END)
        assert result.success
    finally:
        intensity_server.fault = None
    hours = read_table(
        fresh_url,
        "SELECT intensity_gco2eq_per_kwh, intensity_source FROM carbon_intensity_hourly",
    )
    assert set(hours["intensity_source"]) == {"fallback"} and set(
        hours["intensity_gco2eq_per_kwh"]
    ) == {200.0}
    facts = read_table(
        fresh_url, "SELECT intensity_source, busy_kwh, busy_gco2eq FROM fact_usage_user"
    )
    assert set(facts["intensity_source"]) == {"fallback"}
    assert facts["busy_gco2eq"].to_numpy() == pytest.approx(
        200.0 * facts["busy_kwh"].to_numpy(), rel=1e-12
    )

    # Once the API answers again the sensor finds every estimated hour and asks for exactly
    # their re-materialisation; running what it asks for gives the clean tables.
    api = fresh["carbon_intensity_api"]
    now = END + timedelta(hours=3)
    assert improvable_hours(fresh["warehouse"], api, now, lookback_days=7) == list(
        pd.date_range(START, END, freq="h", inclusive="left")
    )
    monkeypatch.setenv("CARBON_INTENSITY_RECHECK_DAYS", "3650")  # the test's hours are old
    requests = intensity_actuals_sensor(
        dg.build_sensor_context(
            resources={"warehouse": fresh["warehouse"], "carbon_intensity_api": api}
        )
    )
    (request,) = requests
    assert request.tags["dagster/asset_partition_range_start"] == "2025-03-03-06:00"
    assert request.tags["dagster/asset_partition_range_end"] == "2025-03-03-17:00"
    assert sorted(k.to_user_string() for k in request.asset_selection) == sorted(
        [
            *STAGE_TABLES["carbon_intensity"],
            *STAGE_TABLES["fact_usage_instance"],
            *STAGE_TABLES["usage_facts"],
        ]
    )
    assert dg.materialize(
        ASSETS, resources=fresh, tags=request.tags, selection=request.asset_selection
    ).success
    assert_same(clean, snapshot(fresh_url))


def test_a_flaky_api_is_retried_by_the_asset_retry_policy(resources, intensity_server):
    intensity_server.fail_next = 1  # the first request fails, beyond the client's own retries
    strict = CarbonIntensityResource(api_url=intensity_server.url, retries=0, on_missing="fail")
    result = materialize_range({**resources, "carbon_intensity_api": strict}, START, END)
    assert result.success
    assert any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)


def test_the_real_2023_record_has_its_outage_and_glitches_flagged(
    resources, tmp_path, database_url
):
    if not NESO_2023.exists():
        pytest.skip(f"the real 2023 intensity record is not at {NESO_2023}")
    periods = neso_periods()
    windows = [
        (t("2023-01-26T00:00"), t("2023-02-01T06:00")),
        (t("2023-06-06T00:00"), t("2023-06-08T00:00")),
        (t("2023-10-20T00:00"), t("2023-10-23T00:00")),
    ]
    hosts = [
        FleetHost(f"10.2.0.{n}:9100", "IDAaaS", "Muon", 2, a, b, "constant:0.5")
        for n, (a, b) in enumerate(windows)
    ]
    load_history(Fleet(hosts), windows[0][0], windows[-1][1], tmp_path / "data", tmp_path / "work")
    server = PrometheusServer(tmp_path / "data").start()
    api = IntensityServer(periods).start()
    try:
        resources["prometheus"] = PrometheusResource(prometheus_url=server.url, retries=0)
        resources["carbon_intensity_api"] = CarbonIntensityResource(api_url=api.url, retries=0)
        for start, end in windows:
            assert materialize_range(resources, start, end).success
    finally:
        api.stop()
        server.stop()

    stored = read_table(
        database_url, "SELECT * FROM carbon_intensity_hourly ORDER BY timestamp_utc"
    )
    stored["hour"] = pd.to_datetime(stored["timestamp_utc"], utc=True)
    # The record's own account, by the simplest loop: which hours lack periods, which have a
    # null or a zero actual.
    by_hour: dict[pd.Timestamp, list] = {}
    for start, forecast, actual in periods[["period_from", "forecast", "actual"]].itertuples(
        index=False
    ):
        by_hour.setdefault(start.floor("h"), []).append((forecast, actual))
    want_fallback, want_forecast, want_glitches = set(), set(), 0
    for hour in stored["hour"]:
        entries = by_hour.get(hour, [])
        if not entries:
            want_fallback.add(hour)
        elif any(pd.isna(a) or a == 0 for _, a in entries):
            want_forecast.add(hour)
        want_glitches += sum(1 for f, a in entries if a == 0 and f >= 10)
    got = stored.groupby("intensity_source")["hour"].apply(set)
    assert len(want_fallback) == 45 and got["fallback"] == want_fallback
    assert got["forecast"] == want_forecast and len(want_forecast) == 3 + 1 + 3
    assert stored["glitch_periods"].sum() == want_glitches == 5
    assert set(
        stored.loc[stored["intensity_source"] == "fallback", "intensity_gco2eq_per_kwh"]
    ) == {200.0}
    facts = read_table(
        database_url, "SELECT intensity_source, count(*) AS n FROM fact_usage_ada GROUP BY 1"
    )
    assert dict(zip(facts["intensity_source"], facts["n"], strict=True))["fallback"] == 45


# ---- PostgreSQL ----------------------------------------------------------------------------


def test_a_connection_killed_mid_write_leaves_the_window_intact(resources, database_url):
    assert materialize_range(resources, START, END).success
    clean = snapshot(database_url)
    # Hold a scope fact's table so that usage_facts' write waits, inside its transaction, and
    # kill its connection there. While the lock is still held, read what the window holds.
    blocker = psycopg.connect(database_url)
    blocker.execute("LOCK TABLE fact_usage_user IN ACCESS EXCLUSIVE MODE")
    seen: dict = {}

    def kill_the_waiting_writer():
        with psycopg.connect(database_url, autocommit=True) as admin:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "killed" not in seen:
                for (pid,) in admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM fact_usage_user%%'"
                ).fetchall():
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    seen["killed"] = pid
                time.sleep(0.05)
        seen["after_kill"] = read_table(
            database_url, "SELECT * FROM fact_usage_ada ORDER BY timestamp_utc"
        )
        seen["users_after_kill"] = blocker.execute(
            "SELECT count(*), sum(busy_kwh) FROM fact_usage_user"
        ).fetchone()
        blocker.rollback()

    killer = threading.Thread(target=kill_the_waiting_writer)
    killer.start()
    result = dg.materialize(
        ASSETS,
        resources=resources,
        tags=range_tags(START, END),
        selection=list(STAGE_TABLES["usage_facts"]),
        instance=dg.DagsterInstance.ephemeral(),
    )
    killer.join()
    blocker.close()
    assert "killed" in seen
    # The killed attempt failed on the lost connection; the retry policy's attempt succeeded.
    assert "terminating connection due to administrator command" in failure_message(
        result, kind="STEP_UP_FOR_RETRY"
    )
    pd.testing.assert_frame_equal(seen["after_kill"], clean["fact_usage_ada"])
    assert seen["users_after_kill"] == (
        len(clean["fact_usage_user"]),
        pytest.approx(clean["fact_usage_user"]["busy_kwh"].sum()),
    )
    assert_same(clean, snapshot(database_url))


def test_the_same_window_twice_at_once_is_serialised(resources, database_url):
    assert materialize_range(resources, START, END).success
    clean = snapshot(database_url)
    results = []

    def run_in_own_instance():
        # One instance per thread, disposed in that thread (its SQLite handles are thread-bound).
        with dg.DagsterInstance.ephemeral() as instance:
            results.append(materialize_range(resources, START, END, instance=instance))

    runs = [threading.Thread(target=run_in_own_instance) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert [r.success for r in results] == [True, True]
    assert_same(clean, snapshot(database_url))


def test_no_credentials_in_logs_or_metadata(resources, create_database):
    url = resources["warehouse"].database_url.replace("postgres@", "postgres:Sup3rSecret@")
    resources["warehouse"] = type(resources["warehouse"])(database_url=url)
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_range(resources, START, START + timedelta(hours=2), instance=instance)
    assert result.success
    logged = "\n".join(str(record) for record in instance.all_logs(result.run_id))
    assert "Sup3rSecret" not in logged
    assert "usage_facts" in logged  # the log was read


def test_a_failed_request_costs_only_its_own_hours(resources, intensity_server, database_url):
    two_days = (t("2025-03-03T00:00"), t("2025-03-05T00:00"))
    lenient = CarbonIntensityResource(
        api_url=intensity_server.url, retries=0, max_days_per_request=1
    )
    intensity_server.failing_window = (t("2025-03-04T00:00"), t("2025-03-05T00:00"))
    try:
        result = materialize_range({**resources, "carbon_intensity_api": lenient}, *two_days)
    finally:
        intensity_server.failing_window = None
    assert result.success
    hours = read_table(
        database_url, "SELECT timestamp_utc, intensity_source FROM carbon_intensity_hourly"
    )
    day = pd.to_datetime(hours["timestamp_utc"], utc=True).dt.day
    assert set(hours.loc[day == 3, "intensity_source"]) == {"actual"}
    assert set(hours.loc[day == 4, "intensity_source"]) == {"fallback"}


def test_a_workspace_corrected_off_its_host_loses_its_hours(
    resources, registry_seed, fleet, tmp_path, database_url
):
    from carbon_pipeline.demo.loader import write_registry_seed
    from carbon_pipeline.resources import RegistryResource

    assert materialize_range(resources, START, END).success
    bob = "SELECT busy_kwh FROM workspace_session s JOIN dim_user u USING (user_id) WHERE ext_user_id = 'bob'"
    assert read_table(database_url, bob)["busy_kwh"].iloc[0] > 0
    # Bob's workspace document is corrected: it never held a host (the others keep their
    # ids). Re-running the window takes its hours away from his session, and from him. (A
    # workspace purged from the registry keeps its history: see test_record.)
    corrected = Fleet(
        fleet.hosts,
        workspaces=[
            w if w["owner"] != "bob" else {**w, "hostname": None} for w in fleet.workspaces
        ],
        users=fleet.users,
        groups=fleet.groups,
    )
    seed = write_registry_seed(corrected, tmp_path / "corrected")
    registry = RegistryResource(
        mongo_uri="mongomock://localhost", database="ada_corrected", seed_dir=str(seed)
    )
    assert materialize_range({**resources, "registry": registry}, START, END).success
    assert read_table(database_url, bob)["busy_kwh"].iloc[0] == 0
    users = read_table(
        database_url,
        "SELECT DISTINCT u.ext_user_id FROM fact_usage_user JOIN dim_user u USING (user_id)",
    )
    assert "bob" not in set(users["ext_user_id"])
