"""The warehouse is the record: a re-run never deletes or downgrades a stored number because a
source answered less. Against the real services: an emptied Prometheus, a partial or
corrected one, the API down, a registry purge and a correction, hosts missing for hours."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pandas as pd
import pytest
import requests

from carbon_pipeline.assets.common import REPLACE_SOURCES_TAG
from carbon_pipeline.definitions import ASSETS
from carbon_pipeline.demo.fleet import Fleet, FleetHost
from carbon_pipeline.demo.loader import load_history, write_registry_seed
from carbon_pipeline.demo.prometheus_server import PrometheusServer
from carbon_pipeline.partitions import range_tags
from carbon_pipeline.resources import CarbonIntensityResource, PrometheusResource, RegistryResource
from carbon_pipeline_tests import expected
from carbon_pipeline_tests.conftest import cli, materialize_range, read_table
from carbon_pipeline_tests.fleet_spec import WINDOW_END, WINDOW_START, build_fleet, t
from carbon_pipeline_tests.test_quality import assert_same, snapshot

SESSIONS = """
SELECT s.workspace_ext_id, s.hostname, u.ext_user_id, u.display_name, s.started_at, s.ended_at,
       s.busy_kwh, s.idle_kwh, s.busy_gco2eq, s.idle_gco2eq
FROM workspace_session s LEFT JOIN dim_user u USING (user_id) ORDER BY 1
"""
USERS = "SELECT ext_user_id, display_name FROM dim_user ORDER BY 1"
# Nothing answers there: a stage that asked Prometheus or the API would fail.
UNREACHABLE = {
    "PROMETHEUS_URL": "http://127.0.0.1:9",
    "CARBON_INTENSITY_API_URL": "http://127.0.0.1:9",
}


def record(database_url: str) -> dict[str, pd.DataFrame]:
    """Every table a re-run could lose numbers from, plus sessions and user names."""
    return {
        **snapshot(database_url),
        "sessions": read_table(database_url, SESSIONS),
        "users": read_table(database_url, USERS),
    }


def assert_record_same(before: dict, after: dict) -> None:
    assert_same(before, after)
    for name in ("sessions", "users"):
        pd.testing.assert_frame_equal(before[name], after[name], obj=name)


def check(result: dg.ExecuteInProcessResult, name: str):
    return next(
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == name
    )


def logged(instance: dg.DagsterInstance, result) -> str:
    return "\n".join(r.user_message for r in instance.all_logs(result.run_id))


@pytest.fixture
def loaded(resources, database_url):
    """The test fleet's two days, loaded cleanly."""
    assert materialize_range(resources, WINDOW_START, WINDOW_END).success
    return database_url


@pytest.fixture
def empty_prometheus(tmp_path):
    """A real Prometheus that has forgotten everything (what retention does to old hours)."""
    server = PrometheusServer(tmp_path / "empty", log_file=tmp_path / "empty.log").start()
    yield server
    server.stop()


# ---- Prometheus forgets, answers less, or is corrected -----------------------------------


def test_a_rerun_against_an_emptied_prometheus_keeps_every_number(
    resources, loaded, empty_prometheus
):
    before = record(loaded)
    ada = before["fact_usage_ada"]
    assert len(ada) == 48 and ada["busy_kwh"].sum() > 0
    forgetful = {
        **resources,
        "prometheus": PrometheusResource(prometheus_url=empty_prometheus.url, retries=0),
    }
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_range(forgetful, WINDOW_START, WINDOW_END, instance=instance)
    assert result.success
    assert_record_same(before, record(loaded))
    stored = len(before["host_cpu_hourly"])
    coverage = check(result, "coverage")
    assert coverage.metadata["kept_host_hours"].value == stored == 5 * 48 - 24
    assert coverage.metadata["answered_host_hours"].value == 0
    assert f"{stored} stored host-hour(s) are missing from Prometheus' answer" in logged(
        instance, result
    )

    # Replacing deliberately takes the (empty) answer as it is, and the facts follow it.
    result = dg.materialize(
        ASSETS,
        resources=forgetful,
        tags={**range_tags(WINDOW_START, WINDOW_END), REPLACE_SOURCES_TAG: "true"},
    )
    assert result.success
    assert check(result, "coverage").metadata["deleted_host_hours"].value == stored
    assert read_table(loaded, "SELECT count(*) AS n FROM host_cpu_hourly")["n"].iloc[0] == 0
    assert read_table(loaded, "SELECT count(*) AS n FROM fact_usage_ada")["n"].iloc[0] == 0


def test_a_partial_answer_keeps_the_hosts_it_left_out(resources, loaded, prometheus):
    before = record(loaded)
    server, _ = prometheus
    # Prometheus answers for one project's hosts only (here: a label matcher; in the wild, a
    # scrape job that stopped).
    partial = PrometheusResource(
        prometheus_url=server.url, retries=0, label_matchers={"cloud_project_name": "IDAaaS"}
    )
    result = materialize_range({**resources, "prometheus": partial}, WINDOW_START, WINDOW_END)
    assert result.success
    assert_record_same(before, record(loaded))
    hourly = before["host_cpu_hourly"]
    others = int((hourly["cloud_project_name"] != "IDAaaS").sum())
    coverage = check(result, "coverage").metadata
    assert coverage["kept_host_hours"].value == others == 48 + 24
    assert coverage["answered_host_hours"].value == len(hourly) - others
    assert coverage["changed_host_hours"].value == coverage["added_host_hours"].value == 0


class WarningProxy:
    """A real HTTP proxy in front of Prometheus that adds `warnings` to every answer, as
    Prometheus does when part of its data could not be read."""

    def __init__(self, target: str, warning: str):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = requests.post(
                    target + self.path,
                    data=body,
                    headers={"Content-Type": self.headers["Content-Type"]},
                    timeout=60,
                )
                payload = answer.json()
                payload["warnings"] = [warning]
                data = json.dumps(payload).encode()
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                proxy.requests += 1

        self.requests = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_prometheus_warnings_are_recorded_as_gaps_and_logged(resources, loaded, prometheus):
    before = record(loaded)
    server, _ = prometheus
    start, end = t("2025-03-03T06:00"), t("2025-03-03T10:00")
    proxy = WarningProxy(server.url, "remote storage unavailable: partial data")
    instance = dg.DagsterInstance.ephemeral()
    try:
        result = materialize_range(
            {**resources, "prometheus": PrometheusResource(prometheus_url=proxy.url, retries=0)},
            start,
            end,
            instance=instance,
        )
    finally:
        proxy.stop()
    assert result.success and proxy.requests == 5  # the host count, then the four queries
    after = record(loaded)
    assert_record_same(before, after)
    gaps = read_table(
        loaded,
        "SELECT timestamp_utc, reason FROM host_cpu_gaps WHERE hostname = '*' ORDER BY 1",
    )
    assert pd.to_datetime(gaps["timestamp_utc"]).dt.hour.tolist() == [6, 7, 8, 9]
    assert set(gaps["reason"]) == {"Prometheus warned: remote storage unavailable: partial data"}
    coverage = check(result, "coverage")
    assert not coverage.passed and coverage.metadata["prometheus_warnings"].value == 1
    assert "remote storage unavailable: partial data" in logged(instance, result)
    hours = read_table(
        loaded,
        "SELECT timestamp_utc, coverage FROM v_coverage_hourly "
        "WHERE timestamp_utc >= %s AND timestamp_utc < %s ORDER BY 1",
        (start, end),
    )
    assert set(hours["coverage"]) == {"partial"}


def test_a_corrected_prometheus_replaces_exactly_the_changed_host_hours(
    resources, loaded, tmp_path, intensity_periods
):
    before = record(loaded)
    # Prometheus back-filled with corrected history: host .14 was not idle but at 75%.
    fleet = build_fleet()
    hosts = [
        replace(h, profile="constant:0.75") if h.hostname == "172.16.100.14" else h
        for h in fleet.hosts
    ]
    truth = load_history(
        Fleet(hosts), WINDOW_START, WINDOW_END, tmp_path / "data", tmp_path / "work"
    )
    corrected = PrometheusServer(tmp_path / "data", log_file=tmp_path / "p.log").start()
    instance = dg.DagsterInstance.ephemeral()
    try:
        result = materialize_range(
            {
                **resources,
                "prometheus": PrometheusResource(prometheus_url=corrected.url, retries=0),
            },
            WINDOW_START,
            WINDOW_END,
            instance=instance,
        )
    finally:
        corrected.stop()
    assert result.success
    assert check(result, "coverage").metadata["changed_host_hours"].value == 48
    assert "48 stored host-hour(s) changed value in the answer: replaced" in logged(
        instance, result
    )
    after = record(loaded)
    hourly = after["host_cpu_hourly"]
    fourteen = hourly[hourly["hostname"] == "172.16.100.14"]
    assert set(fourteen["busy_cpu_seconds_total"]) == {0.75 * 2 * 3600}
    unchanged = before["host_cpu_hourly"]["hostname"] != "172.16.100.14"
    pd.testing.assert_frame_equal(
        before["host_cpu_hourly"][unchanged].reset_index(drop=True),
        hourly[hourly["hostname"] != "172.16.100.14"].reset_index(drop=True),
    )
    # The facts follow the corrected record exactly.
    want = expected.instance_usage(truth, expected.hourly_intensity(intensity_periods))
    ada = after["fact_usage_ada"].set_index("timestamp_utc").sort_index()
    by_hour = want.groupby("timestamp_utc")[expected.METRICS].sum()
    assert ada[expected.METRICS].to_numpy(dtype=float) == pytest.approx(
        by_hour.to_numpy(), rel=1e-9
    )


# ---- hosts missing for hours -------------------------------------------------------------


@pytest.fixture(scope="module")
def silent_fleet(tmp_path_factory):
    """Three hosts; .2 and .3 are not scraped from 10:00 to 13:00. A workspace holds .1 and
    .2 the whole window; nobody holds .3."""
    start, end = t("2025-03-12T06:00"), t("2025-03-12T18:00")
    silence = ((t("2025-03-12T10:00"), t("2025-03-12T13:00")),)
    hosts = [
        FleetHost("10.3.0.1:9100", "IDAaaS", "Muon", 2, start, end, "constant:0.5"),
        FleetHost("10.3.0.2:9100", "IDAaaS", "Muon", 2, start, end, "constant:0.5", silent=silence),
        FleetHost(
            "10.3.0.3:9100", "CDAaaS", "EPAC", 1, start, end, "constant:0.25", silent=silence
        ),
    ]
    workspaces = [
        {"hostname": "10.3.0.1", "owner": "alice", "created_time": t("2025-03-12T00:00")},
        {"hostname": "10.3.0.2", "owner": "bob", "created_time": t("2025-03-12T00:00")},
    ]
    fleet = Fleet(hosts, workspaces=workspaces, users=[], groups=[])
    root = tmp_path_factory.mktemp("silent")
    truth = load_history(fleet, start, end, root / "data", root / "work")
    server = PrometheusServer(root / "data").start()
    seed = write_registry_seed(fleet, root / "registry")
    yield server, seed, truth, start, end
    server.stop()


def test_hosts_missing_for_hours_are_gaps_not_zeros(resources, database_url, silent_fleet):
    server, seed, truth, start, end = silent_fleet
    result = materialize_range(
        {
            **resources,
            "prometheus": PrometheusResource(prometheus_url=server.url, retries=0),
            "registry": RegistryResource(
                mongo_uri="mongomock://localhost", database="ada_silent", seed_dir=str(seed)
            ),
        },
        start,
        end,
    )
    assert result.success
    assert len(truth) == 3 * 12 - 2 * 3  # the truth itself has no answer for the silent hours
    gaps = read_table(
        database_url,
        "SELECT timestamp_utc, hostname, cloud_project_name, reason FROM v_host_cpu_gaps",
    )
    got = {
        (r.timestamp_utc.hour, r.hostname, r.cloud_project_name, r.reason)
        for r in gaps.itertuples()
    }
    assert got == {
        *((h, "10.3.0.2", "IDAaaS", "held by a workspace but not reported") for h in (10, 11, 12)),
        *(
            (h, "10.3.0.3", "CDAaaS", "not reported, though it reported before and after")
            for h in (10, 11, 12)
        ),
    }
    coverage = check(result, "coverage")
    assert not coverage.passed and coverage.metadata["gap_host_hours"].value == 6
    # The missing host-hours are absent from the facts, never zeros.
    ada = read_table(
        database_url, "SELECT timestamp_utc, busy_cpu_seconds_total FROM fact_usage_ada ORDER BY 1"
    )
    hour = pd.to_datetime(ada["timestamp_utc"]).dt.hour
    assert ada.loc[hour.isin([10, 11, 12]), "busy_cpu_seconds_total"].tolist() == [3600.0] * 3
    assert (
        ada.loc[~hour.isin([10, 11, 12]), "busy_cpu_seconds_total"].tolist()
        == [3600.0 * 2 + 900.0] * 9
    )
    hosts = read_table(
        database_url,
        "SELECT count(*) AS n, count(*) FILTER (WHERE busy_cpu_seconds_total = 0) AS zeros "
        "FROM fact_usage_instance",
    )
    assert (hosts["n"].iloc[0], hosts["zeros"].iloc[0]) == (len(truth), 0)
    # What an analyst sees: partial hours, and how many host-hours are missing on the day.
    coverage_view = read_table(
        database_url,
        "SELECT timestamp_utc, hosts_reported, hosts_missing, coverage FROM v_coverage_hourly "
        "WHERE timestamp_utc >= %s AND timestamp_utc < %s ORDER BY 1",
        (start, end),
    )
    partial = coverage_view[coverage_view["coverage"] == "partial"]
    assert pd.to_datetime(partial["timestamp_utc"]).dt.hour.tolist() == [10, 11, 12]
    assert partial["hosts_missing"].tolist() == [2, 2, 2]
    assert partial["hosts_reported"].tolist() == [1, 1, 1]
    # The calendar's whole day: the 12 hours outside the range were never run.
    day = read_table(database_url, "SELECT * FROM v_coverage_daily WHERE day = %s", (start.date(),))
    assert day[
        ["hours", "hours_complete", "hours_partial", "host_hours_missing", "hours_not_run"]
    ].values.tolist() == [[24, 9, 3, 6, 12]]


# ---- the Carbon Intensity API down ------------------------------------------------------


def test_a_rerun_with_the_api_down_keeps_the_stored_intensities(
    resources, loaded, intensity_server
):
    before = record(loaded)
    assert set(before["carbon_intensity_hourly"]["intensity_source"]) == {"actual"}
    lenient = CarbonIntensityResource(
        api_url=intensity_server.url, retries=0, on_missing="fallback"
    )
    intensity_server.fault = "500"
    instance = dg.DagsterInstance.ephemeral()
    try:
        result = materialize_range(
            {**resources, "carbon_intensity_api": lenient},
            WINDOW_START,
            WINDOW_END,
            instance=instance,
        )
    finally:
        intensity_server.fault = None
    assert result.success
    assert_record_same(before, record(loaded))
    assert "48 stored hour(s) have a better intensity" in logged(instance, result)


# ---- the registry: purges and corrections ------------------------------------------------


def registry_with(tmp_path, name: str, **changes) -> RegistryResource:
    fleet = build_fleet()
    seed = write_registry_seed(
        Fleet(
            fleet.hosts,
            workspaces=changes.get("workspaces", fleet.workspaces),
            users=changes.get("users", fleet.users),
            groups=fleet.groups,
        ),
        tmp_path / name,
    )
    return RegistryResource(mongo_uri="mongomock://localhost", database=name, seed_dir=str(seed))


def test_a_registry_purge_keeps_the_history(resources, loaded, registry_seed):
    before = record(loaded)
    # The registry purges bob's (deleted) workspace and alice's user document.
    purged = RegistryResource(
        mongo_uri="mongomock://localhost", database="ada_purged", seed_dir=str(registry_seed)
    )
    assert purged.db()["workspaces"].delete_one({"owner": "bob"}).deleted_count == 1
    assert purged.db()["users"].delete_one({"platform_name": "alice"}).deleted_count == 1
    assert materialize_range({**resources, "registry": purged}, WINDOW_START, WINDOW_END).success
    after = record(loaded)
    # Bob's open session ends when the registry last showed it (by the first run, after the
    # window): every number stays as it was.
    last_seen = read_table(
        loaded,
        "SELECT s.last_seen_at FROM workspace_session s JOIN dim_user u USING (user_id) "
        "WHERE u.ext_user_id = 'bob'",
    )["last_seen_at"].iloc[0]
    bob = after["sessions"]["ext_user_id"] == "bob"
    assert after["sessions"].loc[bob, "ended_at"].tolist() == [last_seen]
    assert last_seen > WINDOW_END and before["sessions"].loc[bob, "ended_at"].isna().all()
    after["sessions"].loc[bob, "ended_at"] = None
    assert_record_same(before, after)
    sessions = before["sessions"].set_index("ext_user_id")
    assert sessions.loc["bob", "busy_kwh"] > 0
    assert set(sessions.loc["alice", "display_name"]) == {"Alice Archer"}


def test_a_run_asks_the_registry_once_a_window_and_a_new_run_asks_again(
    resources, database_url, monkeypatch
):
    asked = []
    original = RegistryResource.workspaces_overlapping

    def counting(self, start, end, ids=()):
        asked.append((start, end))
        return original(self, start, end, ids)

    monkeypatch.setattr(RegistryResource, "workspaces_overlapping", counting)
    # host_cpu_seconds (coverage) and usage_facts (attribution) share the run's answer.
    assert materialize_range(resources, WINDOW_START, WINDOW_END).success
    assert asked == [(WINDOW_START, WINDOW_END)]
    # The next run sees the registry as it is then.
    assert materialize_range(resources, WINDOW_START, WINDOW_END).success
    assert asked == [(WINDOW_START, WINDOW_END)] * 2


def test_a_registry_correction_reattributes_from_the_facts_stage_alone(
    loaded, tmp_path, pipeline_env, monkeypatch
):
    before = record(loaded)
    fleet = build_fleet()
    # Bob's workspace really belonged to carol; the registry is corrected.
    corrected = [{**w, "owner": "carol"} if w["owner"] == "bob" else w for w in fleet.workspaces]
    registry = registry_with(tmp_path, "corrected", workspaces=corrected)
    # Re-derive the facts only, from the CLI, with Prometheus and the API unreachable.
    for name, value in {
        **UNREACHABLE,
        "MONGO_DATABASE": registry.database,
        "MONGO_SEED_DIR": registry.seed_dir,
    }.items():
        monkeypatch.setenv(name, value)
    done = cli(
        "backfill", "--start", "2025-03-03T00:00Z", "--end", "2025-03-05T00:00Z", "--from", "facts"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    after = record(loaded)
    for table in (
        "carbon_intensity_hourly",
        "host_cpu_hourly",
        "fact_usage_instance",
        "fact_usage_ada",
    ):
        # Every number but how many people held the hosts: carol also held bob's workspace.
        pd.testing.assert_frame_equal(
            before[table].drop(columns="users", errors="ignore"),
            after[table].drop(columns="users", errors="ignore"),
            obj=table,
        )
    users_at = pd.Series(
        after["fact_usage_ada"]["users"].to_numpy(), index=before["fact_usage_ada"]["users"].index
    )
    assert (users_at <= before["fact_usage_ada"]["users"]).all() and (
        users_at < before["fact_usage_ada"]["users"]
    ).any()
    users_before = _user_totals(loaded, before)
    users_after = _user_totals(loaded, after)
    assert "bob" not in users_after.index
    assert users_after.loc["carol"] == pytest.approx(
        users_before.loc["carol"] + users_before.loc["bob"], rel=1e-9
    )
    sessions = after["sessions"].set_index("workspace_ext_id")
    bob_session = before["sessions"].set_index("ext_user_id").loc["bob", "workspace_ext_id"]
    assert sessions.loc[bob_session, "ext_user_id"] == "carol"


def _user_totals(database_url: str, tables: dict) -> pd.Series:
    names = read_table(database_url, "SELECT user_id, ext_user_id FROM dim_user").set_index(
        "user_id"
    )
    users = tables["fact_usage_user"].join(names, on="user_id")
    return users.groupby("ext_user_id")["busy_kwh"].sum()


def test_a_new_power_model_rederives_usage_without_the_sources(loaded, pipeline_env, monkeypatch):
    before = record(loaded)
    for name, value in {**UNREACHABLE, "CARBON_BUSY_WATTS_PER_CORE": "15"}.items():
        monkeypatch.setenv(name, value)
    done = cli(
        "backfill", "--start", "2025-03-03T00:00Z", "--end", "2025-03-05T00:00Z", "--from", "usage"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    after = record(loaded)
    for table in ("carbon_intensity_hourly", "host_cpu_hourly"):
        pd.testing.assert_frame_equal(before[table], after[table], obj=table)
    for table in ("fact_usage_instance", "fact_usage_ada", "fact_usage_user"):
        assert after[table]["busy_kwh"].to_numpy() == pytest.approx(
            before[table]["busy_kwh"].to_numpy() * 15 / 12, rel=1e-12
        )
        assert after[table]["idle_kwh"].to_numpy() == pytest.approx(
            before[table]["idle_kwh"].to_numpy(), rel=1e-12
        )


def test_a_write_that_fails_midway_leaves_the_stored_window_as_it_was(database_url):
    """The COPYs run behind the caller (WindowWriter): a COPY refused by the warehouse after
    an earlier one of the window succeeded, and the caller failing while a COPY is in
    flight, each roll the whole window back; the error names the table; no writing thread
    is left; the next write of the window works."""
    import psycopg

    from carbon_pipeline.resources.warehouse import WarehouseResource
    from carbon_pipeline.tables import HOST_CPU_HOURLY, HOST_CPU_REJECTED

    start, end = t("2025-03-20T06:00"), t("2025-03-20T08:00")
    warehouse = WarehouseResource(database_url=database_url)

    def host_hours(busy: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "timestamp_utc": pd.to_datetime([start, start + (end - start) / 2], utc=True),
                "hostname": "172.16.100.50",
                "cloud_project_name": "ada",
                "machine_name": "m1",
                "cpu_count": 4,
                "busy_cpu_seconds_total": busy,
                "idle_cpu_seconds_total": 14_400.0 - busy,
                "memory_gib": [8.0, None],
            }
        )

    specs = [HOST_CPU_HOURLY, HOST_CPU_REJECTED]
    with warehouse.replace_window(start, end, specs) as writer:
        writer.copy(HOST_CPU_HOURLY.name, host_hours(100.0))
    stored = read_table(database_url, "SELECT * FROM host_cpu_hourly ORDER BY timestamp_utc")
    assert stored["busy_cpu_seconds_total"].tolist() == [100.0, 100.0]

    twice = pd.concat([host_hours(300.0)] * 2, ignore_index=True)
    with pytest.raises(psycopg.errors.UniqueViolation, match="host_cpu_rejected"):
        with warehouse.replace_window(start, end, specs) as writer:
            writer.copy(HOST_CPU_HOURLY.name, host_hours(200.0))
            writer.copy(HOST_CPU_REJECTED.name, twice.assign(reason="over capacity"))
    with pytest.raises(ValueError, match="the caller's own"):
        with warehouse.replace_window(start, end, specs) as writer:
            writer.copy(HOST_CPU_HOURLY.name, host_hours(200.0))
            raise ValueError("the caller's own error, a COPY in flight")
    pd.testing.assert_frame_equal(
        read_table(database_url, "SELECT * FROM host_cpu_hourly ORDER BY timestamp_utc"), stored
    )
    assert read_table(database_url, "SELECT count(*) AS n FROM host_cpu_rejected")["n"][0] == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("copy-behind")]

    with warehouse.replace_window(start, end, specs) as writer:
        writer.copy(HOST_CPU_HOURLY.name, host_hours(200.0))
    busy = read_table(database_url, "SELECT busy_cpu_seconds_total FROM host_cpu_hourly")
    assert busy["busy_cpu_seconds_total"].tolist() == [200.0, 200.0]
