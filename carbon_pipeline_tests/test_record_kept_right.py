"""The record, second pass (issue 19): a partial answer never replaces a complete stored
one, history without regional intensities is re-derived without the sources, regional
fallbacks take the stored national hour, and the registry's past is kept right (purges while
paused, corrections outside the window, session totals under concurrent runs)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta

import dagster as dg
import pandas as pd
import psycopg
import pytest

from carbon_pipeline.assets.facts import recompute_session_totals
from carbon_pipeline.definitions import ASSETS
from carbon_pipeline.demo.fleet import Fleet
from carbon_pipeline.demo.loader import load_history
from carbon_pipeline.demo.prometheus_server import PrometheusServer
from carbon_pipeline.partitions import range_tags
from carbon_pipeline.resources import CarbonIntensityResource, PrometheusResource
from carbon_pipeline.sensors import improvable_hours
from carbon_pipeline.tables import STAGE_TABLES
from carbon_pipeline_tests.conftest import cli, materialize_range, read_table
from carbon_pipeline_tests.fleet_spec import WINDOW_END, WINDOW_START, build_fleet, t
from carbon_pipeline_tests.test_quality import assert_same
from carbon_pipeline_tests.test_record import (
    UNREACHABLE,
    WarningProxy,
    check,
    logged,
    record,
    registry_with,
)

DAY_TWO = WINDOW_START + timedelta(days=1)


@pytest.fixture
def loaded(resources, database_url):
    assert materialize_range(resources, WINDOW_START, WINDOW_END).success
    return database_url


def test_an_answer_prometheus_warned_about_never_replaces_the_record(resources, loaded, tmp_path):
    """A corrected Prometheus (host .14 busy at 75%) behind a proxy that says the answer may
    be partial: nothing stored changes; without the warning the same answer replaces."""
    before = record(loaded)
    hosts = [
        replace(h, profile="constant:0.75") if h.hostname == "172.16.100.14" else h
        for h in build_fleet().hosts
    ]
    load_history(Fleet(hosts), WINDOW_START, WINDOW_END, tmp_path / "data", tmp_path / "work")
    corrected = PrometheusServer(tmp_path / "data", log_file=tmp_path / "p.log").start()
    proxy = WarningProxy(corrected.url, "some series could not be read: partial data")
    instance = dg.DagsterInstance.ephemeral()
    try:
        warned = materialize_range(
            {**resources, "prometheus": PrometheusResource(prometheus_url=proxy.url, retries=0)},
            WINDOW_START,
            WINDOW_END,
            instance=instance,
        )
        assert warned.success
        assert_same(before, record(loaded))
        stored = len(before["host_cpu_hourly"])
        coverage = check(warned, "coverage").metadata
        assert coverage["kept_over_partial"].value == stored
        assert coverage["changed_host_hours"].value == 0
        assert f"{stored} stored host-hour(s) were kept over an answer that may be partial" in (
            logged(instance, warned)
        )
        # The same answer without the warning is a correction: exactly .14's hours change.
        plain = materialize_range(
            {**resources, "prometheus": PrometheusResource(prometheus_url=corrected.url)},
            WINDOW_START,
            WINDOW_END,
        )
    finally:
        proxy.stop()
        corrected.stop()
    assert plain.success and check(plain, "coverage").metadata["changed_host_hours"].value == 48


# ---- history without regional intensities (stored before migration 0008) ----------------


def test_usage_is_rederived_without_regional_rows_and_without_the_sources(
    loaded, pipeline_env, monkeypatch
):
    before = record(loaded)
    with psycopg.connect(loaded) as conn:
        conn.execute("DELETE FROM carbon_intensity_regional_hourly")
    for name, value in UNREACHABLE.items():
        monkeypatch.setenv(name, value)
    done = cli(
        "backfill", "--start", "2025-03-03T00:00Z", "--end", "2025-03-05T00:00Z", "--from", "usage"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    after = record(loaded)
    seed_columns = ["busy_kwh", "idle_kwh", "busy_gco2eq", "idle_gco2eq", "full_gco2eq"]
    for table in ("fact_usage_instance", "fact_usage_ada", "fact_usage_project", "fact_usage_user"):
        pd.testing.assert_frame_equal(
            before[table][seed_columns], after[table][seed_columns], obj=table
        )
        assert after[table]["regional_gco2eq"].isna().all(), table
        assert before[table]["regional_gco2eq"].notna().all(), table
    flagged = read_table(
        loaded,
        "SELECT count(*) AS n FROM fact_usage_instance "
        "WHERE regional_intensity_gco2eq_per_kwh IS NULL",
    )
    assert flagged["n"].iloc[0] == len(after["fact_usage_instance"])


def test_a_regional_hour_the_api_cannot_give_takes_the_stored_national_hour_and_is_rechecked(
    resources, loaded, intensity_server
):
    national = read_table(
        loaded,
        "SELECT timestamp_utc, intensity_gco2eq_per_kwh, intensity_source "
        "FROM carbon_intensity_hourly ORDER BY 1",
    )
    assert set(national["intensity_source"]) == {"actual"}
    with psycopg.connect(loaded) as conn:
        conn.execute("DELETE FROM carbon_intensity_regional_hourly")
    lenient = CarbonIntensityResource(
        api_url=intensity_server.url, retries=0, on_missing="fallback"
    )
    intensity_server.fault = "500"
    try:
        result = dg.materialize(
            ASSETS,
            selection=list(STAGE_TABLES["carbon_intensity"]),
            resources={**resources, "carbon_intensity_api": lenient},
            tags=range_tags(WINDOW_START, WINDOW_END),
        )
    finally:
        intensity_server.fault = None
    assert result.success
    regional = read_table(
        loaded,
        "SELECT timestamp_utc, intensity_gco2eq_per_kwh, intensity_source "
        "FROM carbon_intensity_regional_hourly ORDER BY 1",
    )
    # Today's fallback (200 g) would be wrong: the stored actual is the best there is.
    assert set(regional["intensity_source"]) == {"fallback"}
    assert regional["intensity_gco2eq_per_kwh"].tolist() == (
        national["intensity_gco2eq_per_kwh"].tolist()
    )
    assert lenient.fallback_gco2eq_per_kwh not in set(regional["intensity_gco2eq_per_kwh"])
    # The API answers again: the actuals sensor finds every one of those hours.
    hours = improvable_hours(
        resources["warehouse"], lenient, WINDOW_END + timedelta(hours=1), lookback_days=7
    )
    assert hours == list(pd.date_range(WINDOW_START, WINDOW_END, freq="h", inclusive="left"))


# ---- the registry's past --------------------------------------------------------------------

SESSION = """
SELECT s.workspace_session_id, s.started_at, s.ended_at, s.last_seen_at, s.busy_kwh,
       (SELECT sum(f.busy_kwh) FROM fact_usage_workspace f
        WHERE f.workspace_session_id = s.workspace_session_id) AS facts_busy_kwh
FROM workspace_session s JOIN dim_user u USING (user_id)
WHERE u.ext_user_id = %s AND s.hostname = %s
"""


def session_of(database_url: str, user: str, hostname: str) -> pd.Series:
    rows = read_table(database_url, SESSION, (user, hostname))
    assert len(rows) == 1
    return rows.iloc[0]


def user_hours(database_url: str, user: str) -> list[pd.Timestamp]:
    rows = read_table(
        database_url,
        "SELECT DISTINCT f.timestamp_utc FROM fact_usage_user f JOIN dim_user u USING (user_id) "
        "WHERE u.ext_user_id = %s AND f.busy_cpu_seconds_total > 0 ORDER BY 1",
        (user,),
    )
    return [pd.Timestamp(x) for x in rows["timestamp_utc"]]


def test_a_workspace_purged_while_the_pipeline_was_paused_ends_when_last_seen(
    resources, loaded, tmp_path
):
    bob = session_of(loaded, "bob", "172.16.100.10")
    assert pd.isna(bob["ended_at"]) and bob["last_seen_at"] > WINDOW_END  # seen by this run
    # The last run before a pause asked the registry at 06:00 on day two; while paused, bob's
    # workspace was deleted and purged from the registry.
    paused_at = t("2025-03-04T06:00")
    with psycopg.connect(loaded) as conn:
        conn.execute(
            "UPDATE workspace_session SET last_seen_at = %s WHERE workspace_session_id = %s",
            (paused_at, int(bob["workspace_session_id"])),
        )
    purged = registry_with(tmp_path, "purged_while_paused")
    assert purged.db()["workspaces"].delete_one({"owner": "bob"}).deleted_count == 1
    assert materialize_range({**resources, "registry": purged}, DAY_TWO, WINDOW_END).success
    bob = session_of(loaded, "bob", "172.16.100.10")
    assert bob["ended_at"] == paused_at and bob["last_seen_at"] == paused_at
    # His hours end there; .10's later hours are nobody's, not half his.
    hours = user_hours(loaded, "bob")
    assert hours[0] == t("2025-03-03T10:00") and hours[-1] == t("2025-03-04T05:00")
    assert bob["busy_kwh"] == pytest.approx(bob["facts_busy_kwh"], rel=1e-12)
    unattributed = read_table(
        loaded,
        "SELECT f.busy_cpu_seconds_total FROM fact_usage_user f JOIN dim_user u USING (user_id) "
        "WHERE u.ext_user_id = 'unattributed' AND f.timestamp_utc = %s",
        (t("2025-03-04T07:00"),),
    )
    # .10 (2 cpus at 50%) is unheld from 06:00; .13 (one cpu at 25%) is never held.
    assert unattributed["busy_cpu_seconds_total"].iloc[0] == pytest.approx(3600 + 900, rel=1e-6)
    active = read_table(loaded, "SELECT ext_user_id FROM v_active_workspaces")
    assert "bob" not in set(active["ext_user_id"])


def test_a_correction_to_a_sessions_times_applies_wherever_it_falls(resources, loaded, tmp_path):
    """Bob's running workspace is corrected to have been deleted at 10:30 on day one; only
    day two is run again. His session ends then, leaves the active workspaces, and its totals
    lose day two's hours."""
    fleet = build_fleet()
    deleted_at = t("2025-03-03T10:30")
    corrected = [
        {**w, "state": "deleted", "deleted_time": deleted_at} if w["owner"] == "bob" else w
        for w in fleet.workspaces
    ]
    registry = registry_with(tmp_path, "corrected_times", workspaces=corrected)
    assert "bob" in set(
        read_table(loaded, "SELECT ext_user_id FROM v_active_workspaces")["ext_user_id"]
    )
    assert materialize_range({**resources, "registry": registry}, DAY_TWO, WINDOW_END).success
    bob = session_of(loaded, "bob", "172.16.100.10")
    assert bob["ended_at"] == deleted_at
    assert "bob" not in set(
        read_table(loaded, "SELECT ext_user_id FROM v_active_workspaces")["ext_user_id"]
    )
    # Day one was not run again: its stored hours stay his until it is; day two's are gone.
    assert user_hours(loaded, "bob")[-1] < DAY_TWO
    assert bob["busy_kwh"] == pytest.approx(bob["facts_busy_kwh"], rel=1e-12)


def _waiting_on_a_lock(database_url: str, application_name: str, deadline_seconds=60) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        waiting = read_table(
            database_url,
            "SELECT count(*) AS n FROM pg_stat_activity "
            "WHERE application_name = %s AND wait_event_type = 'Lock'",
            (application_name,),
        )
        if waiting["n"].iloc[0]:
            return
        time.sleep(0.05)
    raise AssertionError(f"{application_name} never waited on the lock")


def test_two_runs_recomputing_one_sessions_totals_leave_it_complete(loaded):
    """Run A holds the session's totals (it is recomputing them); run B, whose own facts are
    committed, starts recomputing and waits; meanwhile run C commits more hours of the session.
    When A is done, B's sums must include C's hours: it sums after it got the lock."""
    alice = session_of(loaded, "alice", "172.16.100.14")
    session_id = int(alice["workspace_session_id"])
    extra_hour = t("2025-03-05T00:00")
    holder = psycopg.connect(loaded)
    holder.execute(
        "SELECT 1 FROM workspace_session WHERE workspace_session_id = %s FOR UPDATE", (session_id,)
    )
    errors = []

    def run_b():
        try:
            with psycopg.connect(loaded, application_name="run-b") as conn:
                recompute_session_totals(conn, {session_id}, WINDOW_START, WINDOW_END)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    b = threading.Thread(target=run_b)
    b.start()
    _waiting_on_a_lock(loaded, "run-b")
    with psycopg.connect(loaded) as c:  # run C commits an hour more of the session
        c.execute(
            "CREATE TEMP TABLE extra AS SELECT * FROM fact_usage_workspace "
            "WHERE workspace_session_id = %s AND timestamp_utc = %s",
            (session_id, t("2025-03-04T23:00")),
        )
        c.execute("UPDATE extra SET timestamp_utc = %s", (extra_hour,))
        c.execute("INSERT INTO fact_usage_workspace SELECT * FROM extra")
    holder.commit()
    holder.close()
    b.join(timeout=120)
    assert not b.is_alive() and not errors
    after = session_of(loaded, "alice", "172.16.100.14")
    assert after["facts_busy_kwh"] > alice["facts_busy_kwh"]
    assert after["busy_kwh"] == pytest.approx(after["facts_busy_kwh"], rel=1e-12)
