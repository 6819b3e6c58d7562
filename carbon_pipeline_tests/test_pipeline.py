"""End to end against real Prometheus, PostgreSQL and HTTP: every number checked."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pandas as pd
import pytest

from carbon_pipeline.tables import FORECAST_TABLES, STAGE_TABLES
from carbon_pipeline_tests import expected
from carbon_pipeline_tests.conftest import materialize_range, read_table
from carbon_pipeline_tests.fleet_spec import ODD_MACHINE, WINDOW_END, WINDOW_START, t

METRICS = expected.METRICS
REL = 1e-9

HOST_FACTS = """
SELECT f.timestamp_utc, i.hostname, p.cloud_project_name, m.machine_name, g.group_name, f.cpu_count,
       f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh, f.idle_kwh,
       f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source
FROM fact_usage_instance f JOIN dim_instance i USING (instance_id) JOIN dim_project p USING (project_id)
JOIN dim_machine m USING (machine_id) JOIN dim_group g USING (group_id)
"""
SCOPE_QUERIES = {
    "ada": "SELECT f.* FROM fact_usage_ada f",
    "project": "SELECT d.cloud_project_name, f.* FROM fact_usage_project f JOIN dim_project d USING (project_id)",
    "machine": "SELECT d.machine_name, f.* FROM fact_usage_machine f JOIN dim_machine d USING (machine_id)",
    "group": "SELECT d.group_name, f.* FROM fact_usage_group f JOIN dim_group d USING (group_id)",
    "user": "SELECT d.ext_user_id, f.* FROM fact_usage_user f JOIN dim_user d USING (user_id)",
}
SCOPE_KEY = {
    "ada": None,
    "project": "cloud_project_name",
    "machine": "machine_name",
    "group": "group_name",
    "user": "ext_user_id",
}


def scope_tables(database_url: str) -> dict[str, pd.DataFrame]:
    tables = {}
    for scope, query in SCOPE_QUERIES.items():
        frame = read_table(database_url, query)
        frame["timestamp_utc"] = pd.to_datetime(frame["timestamp_utc"], utc=True)
        keys = ["timestamp_utc"] + ([SCOPE_KEY[scope]] if SCOPE_KEY[scope] else [])
        id_columns = [c for c in ("project_id", "machine_id", "group_id", "user_id") if c in frame]
        tables[scope] = frame.drop(columns=id_columns).sort_values(keys, ignore_index=True)
    return tables


def assert_frames_close(actual: pd.DataFrame, wanted: pd.DataFrame, keys: list[str]) -> None:
    merged = wanted.merge(actual, on=keys, how="outer", suffixes=("_want", "_got"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][keys]
    for metric in METRICS:
        assert merged[f"{metric}_got"].to_numpy() == pytest.approx(
            merged[f"{metric}_want"].to_numpy(), rel=REL, abs=1e-12
        ), metric


@pytest.fixture
def loaded(resources, database_url):
    result = materialize_range(resources, WINDOW_START, WINDOW_END)
    assert result.success
    return database_url


def test_host_hours_equal_the_fleet_truth(loaded, prometheus, intensity_periods):
    _, truth = prometheus
    want = expected.instance_usage(truth, expected.hourly_intensity(intensity_periods))
    got = read_table(loaded, HOST_FACTS)
    got["timestamp_utc"] = pd.to_datetime(got["timestamp_utc"], utc=True)
    assert len(got) == len(truth) == 5 * 48 - 24
    assert_frames_close(got, want, ["timestamp_utc", "hostname"])
    assert (got["intensity_source"] == "actual").all()
    # Host .10 runs 2 cpus at exactly 50%: 3600 busy and 3600 idle CPU seconds every hour.
    muon = got[got["hostname"] == "172.16.100.10"]
    assert set(muon["busy_cpu_seconds_total"]) == {3600.0}
    assert set(muon["idle_cpu_seconds_total"]) == {3600.0}
    assert set(muon["busy_kwh"]) == {12 * 3600 / 3.6e6}
    # Every raw form of a host name lands on one identity; odd label values survive intact.
    assert set(got["hostname"]) == {f"172.16.100.{n}" for n in range(10, 15)}
    assert ODD_MACHINE in set(got["machine_name"])
    assert set(got.loc[got["machine_name"] == ODD_MACHINE, "group_name"]) == {
        f"DDAaaS_{ODD_MACHINE}"
    }


def test_scope_facts_sum_exactly(loaded, prometheus, intensity_periods, fleet):
    _, truth = prometheus
    intensity = expected.hourly_intensity(intensity_periods)
    host = expected.instance_usage(truth, intensity)
    host["group_name"] = host["cloud_project_name"] + "_" + host["machine_name"]
    tables = scope_tables(loaded)
    for scope, key in SCOPE_KEY.items():
        keys = ["timestamp_utc"] + ([key] if key else [])
        if scope == "user":
            want = expected.user_usage(host, fleet.workspaces)
        else:
            want = host.groupby(keys, as_index=False)[METRICS].sum()
        assert_frames_close(tables[scope], want, keys)
        hours = tables[scope]["timestamp_utc"]
        assert tables[scope]["intensity_gco2eq_per_kwh"].to_numpy() == pytest.approx(
            [intensity[h] for h in hours], rel=REL
        )
    ada = tables["ada"].set_index("timestamp_utc")[METRICS]
    for scope in ("project", "machine", "group", "user"):
        summed = tables[scope].groupby("timestamp_utc")[METRICS].sum()
        assert summed.to_numpy() == pytest.approx(ada.loc[summed.index].to_numpy(), rel=REL)
    assert len(ada) == 48


def test_mid_hour_ownership_change_and_unowned_hosts(loaded):
    users = scope_tables(loaded)["user"].set_index(["timestamp_utc", "ext_user_id"])
    hosts = read_table(loaded, HOST_FACTS)
    hosts["timestamp_utc"] = pd.to_datetime(hosts["timestamp_utc"], utc=True)
    hosts = hosts.set_index(["timestamp_utc", "hostname"])
    ten = pd.Timestamp(t("2025-03-03T10:00"))
    busy = "busy_cpu_seconds_total"
    # Host .10 burns 3600 busy s/h. Alice held it until 10:20, bob from 10:20 (acquired after
    # created): 1/3 and 2/3 of the hour. Alice also holds idle host .14 all along.
    assert users.loc[(ten, "bob"), busy] == pytest.approx(2400.0, rel=REL)
    assert users.loc[(ten, "alice"), busy] == pytest.approx(
        1200.0 + hosts.loc[(ten, "172.16.100.14"), busy], rel=REL
    )
    # Host .13 is never owned and .12 is only owned 06:30-20:45: the rest is unattributed.
    six = pd.Timestamp(t("2025-03-03T06:00"))
    assert users.loc[(six, "unattributed"), busy] == pytest.approx(
        hosts.loc[(six, "172.16.100.13"), busy] + 0.5 * hosts.loc[(six, "172.16.100.12"), busy],
        rel=REL,
    )
    assert users.loc[(six, "dave"), busy] == pytest.approx(
        0.5 * hosts.loc[(six, "172.16.100.12"), busy], rel=REL
    )
    dims = read_table(loaded, "SELECT ext_user_id, display_name FROM dim_user").set_index(
        "ext_user_id"
    )
    assert dims.loc["alice", "display_name"] == "Alice Archer"
    assert pd.isna(dims.loc["dave", "display_name"])  # owner missing from `users`
    assert dims.loc["unattributed", "display_name"].startswith("Unattributed")
    # Erin's workspace is on a host that never reported to Prometheus: she is known (her
    # session is listed) but has no usage.
    assert "erin" in dims.index
    user_facts = read_table(
        loaded, "SELECT DISTINCT d.ext_user_id FROM fact_usage_user JOIN dim_user d USING (user_id)"
    )
    assert "erin" not in set(user_facts["ext_user_id"])
    groups = read_table(loaded, "SELECT group_name, attributes FROM dim_group").set_index(
        "group_name"
    )
    assert groups.loc["IDAaaS_Muon", "attributes"] == {
        "gid": 5001,
        "type": "machine",
        "member_count": 2,
    }


def test_views_match_the_facts(loaded, prometheus, intensity_periods, fleet):
    _, truth = prometheus
    host = expected.instance_usage(truth, expected.hourly_intensity(intensity_periods))
    projects = read_table(loaded, "SELECT * FROM v_project_total").set_index("cloud_project_name")
    want = host.groupby("cloud_project_name")[METRICS].sum()
    assert projects.loc[want.index, METRICS].to_numpy(dtype=float) == pytest.approx(
        want.to_numpy(), rel=REL
    )
    ada = read_table(loaded, "SELECT * FROM v_ada_total")
    assert ada[METRICS].to_numpy(dtype=float)[0] == pytest.approx(
        host[METRICS].sum().to_numpy(), rel=REL
    )
    users = read_table(loaded, "SELECT * FROM v_user_total").set_index("user_name")
    want_users = expected.user_usage(host, fleet.workspaces).groupby("ext_user_id")[METRICS].sum()
    assert users.loc["Bob Baker", "busy_kwh"] == pytest.approx(
        want_users.loc["bob", "busy_kwh"], rel=REL
    )
    assert users.loc["dave", "busy_kwh"] == pytest.approx(
        want_users.loc["dave", "busy_kwh"], rel=REL
    )
    averages = read_table(loaded, "SELECT * FROM v_machine_averages").set_index("machine_name")
    muon = host[host["machine_name"] == "Muon"].groupby("timestamp_utc")["busy_kwh"].sum().mean()
    assert averages.loc["Muon", "energy_kwh_busy_avg"] == pytest.approx(muon, rel=REL)


def test_ranged_run_equals_hour_by_hour(resources, create_database):
    start, end = t("2025-03-03T08:00"), t("2025-03-03T14:00")
    assert materialize_range(resources, start, end).success
    ranged = scope_tables(resources["warehouse"].database_url)

    hourly_resources = dict(resources)
    hourly_url = create_database()
    hourly_resources["warehouse"] = type(resources["warehouse"])(database_url=hourly_url)
    hourly_resources["warehouse"].migrate()
    for hour in pd.date_range(start, end, freq="h", inclusive="left"):
        assert materialize_range(
            hourly_resources, hour.to_pydatetime(), (hour + timedelta(hours=1)).to_pydatetime()
        ).success
    hourly = scope_tables(hourly_url)
    for scope in SCOPE_QUERIES:
        pd.testing.assert_frame_equal(ranged[scope], hourly[scope], check_exact=False, rtol=1e-12)
    assert len(ranged["ada"]) == 6


def test_rerunning_a_range_changes_nothing(loaded, resources):
    before = scope_tables(loaded)
    hosts_before = read_table(loaded, "SELECT count(*) AS n FROM fact_usage_instance")
    assert materialize_range(resources, WINDOW_START, WINDOW_END).success
    after = scope_tables(loaded)
    for scope in SCOPE_QUERIES:
        pd.testing.assert_frame_equal(before[scope], after[scope])
    assert read_table(loaded, "SELECT count(*) AS n FROM fact_usage_instance").equals(hosts_before)


def test_definitions_load():
    from carbon_pipeline.definitions import defs

    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    materialised = {k.to_user_string() for k in graph.materializable_asset_keys}
    hourly = {table for tables in STAGE_TABLES.values() for table in tables}
    assert materialised == hourly | set(FORECAST_TABLES)
    # The hourly job materialises every table by hour, the forecast's by its own schedule.
    job = defs.resolve_job_def("hourly_carbon_job")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == hourly
    forecast = defs.resolve_schedule_def("intensity_forecast_schedule")
    assert forecast.cron_schedule == "*/30 * * * *"
    observed = {k.to_user_string() for k in graph.observable_asset_keys}
    assert observed == {"workspace_registry", "power_model"}
    schedule = defs.resolve_schedule_def("hourly_carbon_schedule")
    assert schedule.cron_schedule == "10 * * * *"


def test_the_full_footprint_per_host_hour_and_scope(
    resources, database_url, prometheus, intensity_periods, fleet, tmp_path
):
    from carbon_pipeline.resources import SitesResource

    sites_file = tmp_path / "sites.csv"
    sites_file.write_text(
        "site,region_id,pue,cloud_project_names\nRAL,12,1.4,IDAaaS\nDaresbury,6,1.2,*\n"
    )
    resources["sites"] = SitesResource(sites_file=str(sites_file))
    result = materialize_range(resources, WINDOW_START, WINDOW_END)
    assert result.success
    _, truth = prometheus
    host = expected.instance_usage(truth, expected.hourly_intensity(intensity_periods))
    sites = {"IDAaaS": (12, 1.4), "CDAaaS": (6, 1.2), "DDAaaS": (6, 1.2)}
    want = expected.full_footprint(host, truth, sites, intensity_periods)
    got = read_table(
        database_url,
        "SELECT timestamp_utc, hostname, site, region_id, pue, memory_gib, "
        + ", ".join(expected.FOOTPRINT)
        + " FROM v_host_hourly",
    )
    got["timestamp_utc"] = pd.to_datetime(got["timestamp_utc"], utc=True)
    merged = want.merge(got, on=["timestamp_utc", "hostname"], suffixes=("_want", "_got"))
    assert len(merged) == len(want) == len(got) == 5 * 48 - 24
    for column in expected.FOOTPRINT:
        assert merged[f"{column}_got"].to_numpy(dtype=float) == pytest.approx(
            merged[f"{column}_want"].to_numpy(), rel=REL
        ), column
    ral = merged["cloud_project_name"] == "IDAaaS"
    assert set(merged.loc[ral, "site"]) == {"RAL"} and set(merged.loc[~ral, "site"]) == {
        "Daresbury"
    }
    assert set(merged.loc[ral, "pue"]) == {1.4} and set(merged.loc[~ral, "region_id"]) == {6}
    assert set(got.loc[got["hostname"] == "172.16.100.14", "memory_gib"]) == {6.5}
    # Host .10: 2 cpus fully up, 8 GiB: 8 x 0.3725 W for an hour; 2/64 of a 1,000 kg server
    # over 4 years (of 8,766 h).
    ten = merged[merged["hostname"] == "172.16.100.10"]
    assert set(ten["memory_kwh_got"].round(15)) == {round(8 * 0.3725 / 1000, 15)}
    assert ten["embodied_gco2eq_got"].to_numpy() == pytest.approx(
        1e6 * 2 / 64 / (4 * 8766), rel=REL
    )
    # Every scope sums to ada, the new columns included, and the seed's columns are untouched.
    tables = {scope: read_table(database_url, query) for scope, query in SCOPE_QUERIES.items()}
    ada = tables["ada"].set_index("timestamp_utc").sort_index()
    by_hour = want.groupby("timestamp_utc")[expected.FOOTPRINT + METRICS].sum()
    for column in expected.FOOTPRINT + METRICS:
        assert ada[column].to_numpy(dtype=float) == pytest.approx(
            by_hour[column].to_numpy(), rel=REL
        ), column
    projects = tables["project"].groupby("cloud_project_name")[expected.FOOTPRINT].sum()
    want_projects = want.groupby("cloud_project_name")[expected.FOOTPRINT].sum()
    assert projects.loc[want_projects.index].to_numpy(dtype=float) == pytest.approx(
        want_projects.to_numpy(), rel=REL
    )
    users = tables["user"].groupby("ext_user_id")["full_gco2eq"].sum().sum()
    assert users == pytest.approx(want["full_gco2eq"].sum(), rel=REL)
    conservation = next(
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "conservation"
    )
    assert conservation.passed
    total = read_table(database_url, "SELECT * FROM v_usage_total WHERE scope = 'ada'").iloc[0]
    assert total["full_gco2eq"] == pytest.approx(want["full_gco2eq"].sum(), rel=REL)
    assert total["regional_intensity_gco2eq_per_kwh"] == pytest.approx(
        want["regional_gco2eq"].sum() / want["full_kwh"].sum(), rel=REL
    )
    assert total["footprint_unknown_hours"] == 0
    assert total["total_gco2eq"] == pytest.approx(
        (host["busy_gco2eq"] + host["idle_gco2eq"]).sum(), rel=REL
    )
