"""Input that real deployments produce, against the real services: hosts scraped twice, bad
registry documents, hung and half-answering sources, impossible intensities, colliding group
names, malformed configuration. Each is handled as documented, and the numbers stay exact."""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from bson import ObjectId

from carbon_pipeline.demo.fleet import Fleet, FleetHost
from carbon_pipeline.demo.intensity_server import IntensityServer
from carbon_pipeline.demo.loader import load_history, write_registry_seed
from carbon_pipeline.demo.prometheus_server import PrometheusServer
from carbon_pipeline.resources import (
    CarbonIntensityResource,
    PowerModelResource,
    PrometheusResource,
    RegistryResource,
)
from carbon_pipeline.resources.prometheus import PrometheusError
from carbon_pipeline.sensors import improvable_hours
from carbon_pipeline_tests.conftest import cli, materialize_range, read_table
from carbon_pipeline_tests.fleet_spec import t

START, END = t("2025-03-20T06:00"), t("2025-03-20T12:00")
HOST_HOURS = (
    "SELECT i.hostname, f.timestamp_utc, f.cpu_count, f.busy_cpu_seconds_total, "
    "f.idle_cpu_seconds_total FROM fact_usage_instance f JOIN dim_instance i USING (instance_id) "
    "ORDER BY 1, 2"
)


def logged(instance: dg.DagsterInstance, result) -> str:
    return "\n".join(r.user_message for r in instance.all_logs(result.run_id))


def check(result, name: str):
    return next(
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == name
    )


def own_prometheus(tmp_path: Path, hosts: list[FleetHost], start=START, end=END, **fleet):
    load_history(Fleet(hosts, **fleet), start, end, tmp_path / "data", tmp_path / "work")
    return PrometheusServer(tmp_path / "data", log_file=tmp_path / "prometheus.log").start()


# ---- Prometheus ------------------------------------------------------------------------


def test_a_host_scraped_twice_is_counted_once(resources, database_url, tmp_path):
    hosts = [
        FleetHost("10.4.0.1:9100", "IDAaaS", "Muon", 2, START, END, "constant:0.5"),
        # Scraped by a second job with the same counters.
        FleetHost(
            "10.4.0.2:9100",
            "IDAaaS",
            "Muon",
            2,
            START,
            END,
            "constant:0.5",
            also_scraped_by="node-dup",
        ),
        # Scraped a second time under another name of the same VM.
        FleetHost(
            "10.4.0.3:9100",
            "IDAaaS",
            "Muon",
            4,
            START,
            END,
            "constant:0.25",
            also_scraped_as="host-10-4-0-3.nubes.stfc.ac.uk:9100",
        ),
    ]
    server = own_prometheus(tmp_path, hosts)
    instance = dg.DagsterInstance.ephemeral()
    try:
        resources["prometheus"] = PrometheusResource(prometheus_url=server.url, retries=0)
        result = materialize_range(resources, START, END, instance=instance)
    finally:
        server.stop()
    assert result.success
    got = read_table(database_url, HOST_HOURS)
    per_host = got.groupby("hostname")[["cpu_count", "busy_cpu_seconds_total"]].agg(set)
    assert per_host.loc["10.4.0.1"].tolist() == [{2}, {3600.0}]
    assert per_host.loc["10.4.0.2"].tolist() == [{2}, {3600.0}]
    assert per_host.loc["10.4.0.3"].tolist() == [{4}, {3600.0}]
    assert len(got) == 3 * 6
    project = read_table(database_url, "SELECT busy_cpu_seconds_total FROM fact_usage_project")
    assert set(project["busy_cpu_seconds_total"]) == {3 * 3600.0}
    assert "12 host-hour(s) came from more than one series" in logged(instance, result)


def test_a_series_without_a_host_is_quarantined_not_fatal(resources, database_url, tmp_path):
    hosts = [
        FleetHost("10.5.0.1:9100", "IDAaaS", "Muon", 2, START, END, "constant:0.5"),
        FleetHost("", "IDAaaS", "Muon", 1, START, END, "constant:0.5"),  # no host, no instance
    ]
    server = own_prometheus(tmp_path, hosts)
    instance = dg.DagsterInstance.ephemeral()
    try:
        resources["prometheus"] = PrometheusResource(prometheus_url=server.url, retries=0)
        result = materialize_range(resources, START, END, instance=instance)
    finally:
        server.stop()
    assert result.success
    got = read_table(database_url, HOST_HOURS)
    assert set(got["hostname"]) == {"10.5.0.1"} and set(got["busy_cpu_seconds_total"]) == {3600.0}
    rejected = read_table(database_url, "SELECT hostname, reason FROM host_cpu_rejected")
    assert len(rejected) == 6
    assert set(rejected["hostname"]) == {"(no host label)"}
    assert set(rejected["reason"]) == {
        "series without a host or instance label: no host to count it for"
    }
    assert not check(result, "completeness").passed
    assert "machine_name='Muon'" in logged(instance, result)


class HangingServer:
    """Accepts every request and answers none within `hang` seconds."""

    def __init__(self, hang: float):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                time.sleep(hang)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_hung_prometheus_costs_at_most_the_query_budget():
    server = HangingServer(hang=30)
    try:
        client = PrometheusResource(
            prometheus_url=server.url, timeout_seconds=2, retries=1, backoff_seconds=0
        )
        with pytest.raises(PrometheusError) as error:
            client.host_cpu_seconds(START, END)
    finally:
        server.stop()
    message = str(error.value)
    assert "gave no complete answer in 2 s (2 attempt(s) of at most 1 s;" in message
    assert "for hours 2025-03-20T06:00:00Z to 2025-03-20T12:00:00Z" in message
    assert "(query: sum by (host, instance, cloud_project_name, machine_name, job)" in message


# ---- the registry ------------------------------------------------------------------------


def test_bad_registry_documents_are_parsed_or_skipped_and_named(resources, database_url, tmp_path):
    hosts = [
        FleetHost(f"10.6.0.{n}:9100", "IDAaaS", "Muon", 2, START, END, "constant:0.5")
        for n in range(1, 7)
    ]
    epoch_0700 = int(t("2025-03-20T07:00").timestamp())
    workspaces = [
        # An integer epoch in seconds and one in milliseconds: parsed as such.
        {"hostname": "10.6.0.1", "owner": "alice", "created_time": epoch_0700},
        {"hostname": "10.6.0.2", "owner": "bob", "created_time": epoch_0700 * 1000},
        # A created_time stored as text: parsed, and found although MongoDB cannot compare it.
        {"hostname": "10.6.0.3", "owner": "carol", "created_time": "2025-03-20T08:00:00Z"},
        # Unparseable text: skipped, its hours unattributed.
        {"hostname": "10.6.0.4", "owner": "dave", "created_time": "last Tuesday"},
        # A number for a hostname: skipped.
        {"hostname": 17, "owner": "erin", "created_time": t("2025-03-20T00:00")},
        # An object for an owner: the workspace holds its host, for nobody.
        {"hostname": "10.6.0.6", "owner": {"name": "x"}, "created_time": t("2025-03-20T00:00")},
    ]
    server = own_prometheus(tmp_path, hosts)
    seed = write_registry_seed(Fleet(hosts, workspaces=workspaces), tmp_path / "registry")
    instance = dg.DagsterInstance.ephemeral()
    try:
        resources["prometheus"] = PrometheusResource(prometheus_url=server.url, retries=0)
        resources["registry"] = RegistryResource(
            mongo_uri="mongomock://localhost", database="ada_bad", seed_dir=str(seed)
        )
        result = materialize_range(resources, START, END, instance=instance)
    finally:
        server.stop()
    assert result.success
    users = read_table(
        database_url,
        "SELECT u.ext_user_id, sum(f.busy_cpu_seconds_total) AS busy FROM fact_usage_user f "
        "JOIN dim_user u USING (user_id) GROUP BY 1",
    ).set_index("ext_user_id")["busy"]
    # Every host burns 3600 busy s an hour, 6 hours: alice and bob from 07:00 (5 h), carol
    # from 08:00 (4 h); dave's, erin's and the object owner's hours are nobody's.
    assert users.to_dict() == {
        "alice": 5 * 3600.0,
        "bob": 5 * 3600.0,
        "carol": 4 * 3600.0,
        "unattributed": 6 * 6 * 3600.0 - 14 * 3600.0,
    }
    said = logged(instance, result)
    ids = [str(ObjectId(f"{n + 1:024x}")) for n in range(6)]
    assert f"workspace {ids[3]}: created_time: 'last Tuesday' is not an ISO 8601 time" in said
    assert f"workspace {ids[4]}: hostname: a int (17) is not a host name" in said
    assert f"workspace {ids[5]}: owner: a dict is not a platform_name" in said
    # The window's summary: one observation of fact_usage_ada's last hour.
    (summary,) = result.asset_observations_for_node("usage_facts")
    assert summary.metadata["registry_problems"].value == 3


def test_threads_of_one_process_seed_the_offline_registry_once(registry_seed, fleet, monkeypatch):
    """Concurrent runs in one process (threads) share the in-memory registry: the first seeds
    it, the others wait and find it seeded (before, two could both insert the seed). Reading
    the seed is made slow, so that every thread would otherwise find it unseeded."""
    from carbon_pipeline.resources import registry as module

    load = module.load_seed_file

    def slow_load(path):
        time.sleep(0.2)
        return load(path)

    monkeypatch.setattr(module, "load_seed_file", slow_load)
    # The process's in-memory server exists already (an earlier run's database).
    RegistryResource(
        mongo_uri="mongomock://localhost", database="earlier", seed_dir=str(registry_seed)
    ).db()
    registry = RegistryResource(
        mongo_uri="mongomock://localhost", database="seeded_once", seed_dir=str(registry_seed)
    )
    start = threading.Barrier(8)
    counts, errors = [], []

    def read() -> None:
        start.wait()
        try:
            counts.append(registry.db()["workspaces"].count_documents({}))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert counts == [len(fleet.workspaces)] * 8


def test_an_input_error_fails_at_once_without_retries(resources, tmp_path):
    bad = tmp_path / "watts.csv"
    bad.write_text("machine_name,busy_watts_per_core,idle_watts_per_core\nMuon,twelve,1\n")
    resources["power_model"] = PowerModelResource(overrides_file=str(bad))
    result = materialize_range(
        resources, t("2025-03-03T06:00"), t("2025-03-03T08:00"), raise_on_error=False
    )
    assert not result.success
    kinds = [e.event_type_value for e in result.all_events]
    assert "STEP_FAILURE" in kinds and "STEP_UP_FOR_RETRY" not in kinds
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "fact_usage_instance"
    assert f"{bad} line 2 busy_watts_per_core must be a number of watts" in str(
        failure.event_specific_data.error.to_string()
    )


def test_group_names_that_collide_are_refused(resources, tmp_path):
    hosts = [
        FleetHost("10.7.0.1:9100", "A_B", "C", 1, START, END, "constant:0.5"),
        FleetHost("10.7.0.2:9100", "A", "B_C", 1, START, END, "constant:0.5"),
    ]
    server = own_prometheus(tmp_path, hosts)
    try:
        resources["prometheus"] = PrometheusResource(prometheus_url=server.url, retries=0)
        result = materialize_range(resources, START, END, raise_on_error=False)
    finally:
        server.stop()
    assert not result.success
    assert "STEP_UP_FOR_RETRY" not in [e.event_type_value for e in result.all_events]
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert (
        "the group name 'A_B_C' would stand for project 'A' with machine 'B_C' and project 'A_B' "
        "with machine 'C'" in failure.event_specific_data.error.to_string()
    )


# ---- the Carbon Intensity API -----------------------------------------------------------------


def test_impossible_intensities_are_replaced_and_half_hours_rechecked(
    resources, database_url, intensity_periods
):
    start, end = t("2025-03-03T06:00"), t("2025-03-03T12:00")
    periods = intensity_periods.copy()
    at = {pd.Timestamp(t(f"2025-03-03T{h}")): h for h in ("06:00", "07:00", "08:30", "09:00")}
    row = periods["period_from"].isin(list(at))
    periods.loc[row, "actual"] = [-5.0, 2500.0, float("nan"), 180.0]
    periods.loc[periods["period_from"] == pd.Timestamp(t("2025-03-03T09:00")), "forecast"] = -1.0
    # 10:00-11:00 has its first half-hour only; 11:00 has nothing usable.
    gone = periods["period_from"].isin(
        [
            pd.Timestamp(t("2025-03-03T10:30")),
            pd.Timestamp(t("2025-03-03T11:00")),
            pd.Timestamp(t("2025-03-03T11:30")),
        ]
    )
    api = IntensityServer(periods[~gone]).start()
    try:
        resources["carbon_intensity_api"] = CarbonIntensityResource(
            api_url=api.url, retries=0, on_missing="fallback"
        )
        assert materialize_range(resources, start, end).success
        stored = read_table(database_url, "SELECT * FROM carbon_intensity_hourly ORDER BY 1")
        stored.index = pd.to_datetime(stored["timestamp_utc"], utc=True).dt.hour
        by_start = periods.set_index("period_from")

        def value(text, column):
            return by_start.loc[pd.Timestamp(t(f"2025-03-03T{text}")), column]

        # 06:00 and 07:00: the impossible actual's forecast stands in; the hour is a forecast.
        assert (
            stored.loc[6, "intensity_source"] == "forecast" and stored.loc[6, "glitch_periods"] == 1
        )
        assert stored.loc[6, "intensity_gco2eq_per_kwh"] == pytest.approx(
            (value("06:00", "forecast") + value("06:30", "actual")) / 2
        )
        assert stored.loc[7, "glitch_periods"] == 1
        # 08:00: a missing actual is not a glitch, its forecast is used.
        assert (
            stored.loc[8, "intensity_source"] == "forecast" and stored.loc[8, "glitch_periods"] == 0
        )
        # 09:00: the actual is fine although the forecast is not.
        assert stored.loc[9, "intensity_source"] == "actual"
        # 10:00: one half-hour only (an actual): kept, with period_count 1 for the sensor.
        assert (stored.loc[10, "intensity_source"], stored.loc[10, "period_count"]) == ("actual", 1)
        assert stored.loc[10, "intensity_gco2eq_per_kwh"] == value("10:00", "actual")
        # 11:00: nothing: the fallback.
        assert stored.loc[11, "intensity_source"] == "fallback"
        # Once the API has every half-hour, the sensor asks for 06:00-12:00 again, except
        # 09:00 (already a full actual).
        api.periods = intensity_periods.sort_values("period_from", ignore_index=True)
        hours = improvable_hours(
            resources["warehouse"], resources["carbon_intensity_api"], end + timedelta(hours=1), 7
        )
        assert [h.hour for h in hours] == [6, 7, 8, 10, 11]
    finally:
        api.stop()


# ---- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("PROMETHEUS_LABEL_MATCHERS", '{"job": ', "PROMETHEUS_LABEL_MATCHERS: not JSON"),
        ("PROMETHEUS_LABEL_MATCHERS", '["job"]', "expected a JSON object of strings"),
        (
            "CARBON_INTENSITY_FALLBACK",
            "two hundred",
            "CARBON_INTENSITY_FALLBACK='two hundred': expected a number",
        ),
        ("CARBON_PIPELINE_SCHEDULE_STATUS", "ON", "expected one of RUNNING, STOPPED"),
        ("CARBON_PIPELINE_CHUNK_HOURS", "0", "expected a whole number of at least 1"),
    ],
)
def test_a_malformed_setting_is_one_clear_line(pipeline_env, monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    done = cli("backfill", "--start", "2025-03-03T00:00Z", "--end", "2025-03-03T01:00Z")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and expected in line


def test_migrate_with_a_wrong_database_url_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://reader:s3cret/x@127.0.0.1:1/nowhere")
    done = cli("migrate")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: cannot use the database:") and "check DATABASE_URL" in line
    assert "s3cret" not in line
    monkeypatch.setenv("DATABASE_URL", "mysql://x@y/z")
    done = cli("migrate")
    assert done.returncode == 2 and "DATABASE_URL: expected a postgresql:// URL" in done.stderr


def test_the_sensor_module_does_not_import_the_command_line():
    done = subprocess.run(
        [
            str(Path(__import__("sys").executable)),
            "-c",
            "import sys, carbon_pipeline.sensors; "
            "print(sorted(m for m in sys.modules if m in ('carbon_pipeline.backfill', 'carbon_pipeline.cli')))",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
