"""Optional inputs absent, as real fleets have them: hosts that export no memory size
(node_exporter with its meminfo collector off, or an older exporter), on every host or on some.
Backfilled, re-run over the stored hours from the command line and re-derived from the stored
sources: every run succeeds, no stored number changes, the seed's numbers are exact and the full
footprint is unknown (NULL) exactly where a host's memory is."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from carbon_pipeline.demo.loader import load_history
from carbon_pipeline.demo.prometheus_server import PrometheusServer
from carbon_pipeline.resources import CarbonIntensityResource, PrometheusResource
from carbon_pipeline.tables import STAGE_TABLES
from carbon_pipeline_tests import expected
from carbon_pipeline_tests.conftest import cli, materialize_range, read_table
from carbon_pipeline_tests.fleet_spec import WINDOW_END, WINDOW_START, build_fleet
from carbon_pipeline_tests.test_record import UNREACHABLE, assert_record_same, record
from carbon_pipeline_tests.test_warehouse import as_analyst, documented_queries

# Which hosts keep their memory size (by normalised name) in each fleet.
# With "some hosts", project IDAaaS (.10, .11, .14) is fully known, the others are not.
FLEETS = {"no host": set(), "some hosts": {"172.16.100.10", "172.16.100.11", "172.16.100.14"}}
WINDOW = ("--start", "2025-03-03T00:00Z", "--end", "2025-03-05T00:00Z")
HOST_HOURS = """
SELECT f.timestamp_utc, i.hostname, p.cloud_project_name, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total,
       f.busy_kwh, f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.memory_gib, f.memory_kwh,
       f.full_kwh, f.full_gco2eq, f.regional_gco2eq, f.embodied_gco2eq
FROM fact_usage_instance f JOIN dim_instance i USING (instance_id)
JOIN dim_project p USING (project_id)
ORDER BY 1, 2
"""


@pytest.fixture(scope="module", params=list(FLEETS), ids=lambda name: f"memory on {name}")
def memory_fleet(request, tmp_path_factory):
    """The test fleet with memory sizes exported only by FLEETS[param]'s hosts, in a real
    Prometheus; yields (server, true host-hours, hosts with memory)."""
    with_memory = FLEETS[request.param]
    fleet = build_fleet()
    fleet.hosts = [
        h if h.hostname.split(":")[0] in with_memory else replace(h, memory_gib=None)
        for h in fleet.hosts
    ]
    root = tmp_path_factory.mktemp("memory")
    truth = load_history(fleet, WINDOW_START, WINDOW_END, root / "data", root / "work")
    server = PrometheusServer(root / "data").start()
    yield server, truth, with_memory
    server.stop()


@pytest.mark.slow(seconds=40)
def test_fleets_without_memory_sizes_backfill_rerun_and_rederive(
    memory_fleet, resources, pipeline_env, monkeypatch, intensity_periods
):
    server, truth, with_memory = memory_fleet
    database_url = pipeline_env["DATABASE_URL"]
    monkeypatch.setenv("PROMETHEUS_URL", server.url)
    assert truth["memory_gib"].isna().sum() > 0
    assert set(truth.dropna(subset=["memory_gib"])["hostname"]) == with_memory

    prometheus = PrometheusResource(prometheus_url=server.url, retries=0)
    assert materialize_range(
        {**resources, "prometheus": prometheus}, WINDOW_START, WINDOW_END
    ).success
    first = record(database_url)

    hosts = read_table(database_url, HOST_HOURS)
    usage = expected.instance_usage(truth, expected.hourly_intensity(intensity_periods))
    usage = usage.sort_values(["timestamp_utc", "hostname"], ignore_index=True)
    assert len(hosts) == len(usage) == 5 * 48 - 24
    for column in expected.METRICS:
        assert hosts[column].to_numpy() == pytest.approx(usage[column].to_numpy(), rel=1e-9)
    # Unknown where the host has no memory size, known where it has one: never 0 for unknown.
    unknown = ~hosts["hostname"].isin(with_memory).to_numpy()
    for column in ("memory_gib", "memory_kwh", "full_kwh", "full_gco2eq", "regional_gco2eq"):
        assert np.array_equal(hosts[column].isna().to_numpy(), unknown), column
    assert hosts["embodied_gco2eq"].notna().all()  # needs no memory size
    assert (hosts.loc[~unknown, "full_kwh"] > hosts.loc[~unknown, "busy_kwh"]).all()

    # Run again as an operator would, from the command line: Prometheus answers NaN memory
    # again for every stored host-hour (what failed under pandas 3).
    done = cli("backfill", *WINDOW)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_record_same(first, record(database_url))
    # Re-derived from the stored sources alone (what --from usage and --from facts select),
    # with both sources unreachable.
    unreachable = {
        **resources,
        "prometheus": PrometheusResource(prometheus_url=UNREACHABLE["PROMETHEUS_URL"], retries=0),
        "carbon_intensity_api": CarbonIntensityResource(
            api_url=UNREACHABLE["CARBON_INTENSITY_API_URL"], retries=0
        ),
    }
    for stages in (["fact_usage_instance", "usage_facts"], ["usage_facts"]):
        selection = [table for stage in stages for table in STAGE_TABLES[stage]]
        assert materialize_range(unreachable, WINDOW_START, WINDOW_END, selection=selection).success
        assert_record_same(first, record(database_url))

    # A scope-hour sums the host-hours that know their full footprint and counts the others;
    # unknown everywhere is NULL, never 0.
    hosts["unknown"] = unknown.astype(int)
    want = hosts.groupby("timestamp_utc").agg(
        full_kwh=("full_kwh", lambda v: v.sum(min_count=1)),
        unknown=("unknown", "sum"),
    )
    ada = read_table(
        database_url,
        "SELECT full_kwh, footprint_unknown_hosts, regional_unknown_hosts "
        "FROM fact_usage_ada ORDER BY timestamp_utc",
    )
    assert ada["footprint_unknown_hosts"].tolist() == want["unknown"].tolist()
    assert ada["regional_unknown_hosts"].tolist() == want["unknown"].tolist()
    assert np.allclose(
        ada["full_kwh"].to_numpy(dtype=float),
        want["full_kwh"].to_numpy(),
        rtol=1e-9,
        equal_nan=True,
    )
    assert ada["full_kwh"].isna().all() == (not with_memory)
    total = read_table(
        database_url,
        "SELECT hours, full_kwh, footprint_unknown_hours, footprint_unknown_host_hours, "
        "regional_unknown_hours FROM v_usage_total WHERE scope = 'ada'",
    ).iloc[0]
    assert (
        total["hours"] == total["footprint_unknown_hours"] == total["regional_unknown_hours"] == 48
    )
    assert total["footprint_unknown_host_hours"] == unknown.sum()
    # The guide's like-with-like comparison, from the rollups' known_* sums, is the hours' own.
    from_rollups = read_table(database_url, documented_queries()["what_the_full_footprint_adds"])
    from_hours = read_table(
        database_url,
        "SELECT scope_name AS project, sum(busy_gco2eq + idle_gco2eq) AS cpu_gco2eq, "
        "sum(memory_gco2eq) AS memory_gco2eq, sum(overhead_gco2eq) AS overhead_gco2eq, "
        "sum(embodied_gco2eq) AS embodied_gco2eq, sum(full_gco2eq) AS full_gco2eq, "
        "sum(full_gco2eq) / nullif(sum(busy_gco2eq + idle_gco2eq), 0) AS full_over_cpu, "
        "count(*) AS hours_compared FROM v_usage_hourly "
        "WHERE scope = 'project' AND footprint_unknown_hosts = 0 "
        "GROUP BY scope_name ORDER BY full_gco2eq DESC",
    )
    assert len(from_rollups) == len(from_hours) and (len(from_hours) > 0) == bool(with_memory)
    pd.testing.assert_frame_equal(from_rollups, from_hours, check_exact=False, rtol=1e-12)
    known_kwh = hosts.loc[~unknown, "full_kwh"].sum()
    assert (
        pd.isna(total["full_kwh"])
        if not with_memory
        else total["full_kwh"] == pytest.approx(known_kwh, rel=1e-9)
    )
    # The heatmap and usage_between say so too, as of the window's end.
    heat = as_analyst(
        database_url,
        "SELECT day, full_gco2eq, footprint_unknown_hours FROM v_usage_heatmap "
        "WHERE scope = 'ada' AND hours > 0 ORDER BY day",
        now="2025-03-05T00:00Z",
    )
    assert heat["footprint_unknown_hours"].tolist() == [24, 24]
    known_by_day = hosts[~unknown].groupby(hosts["timestamp_utc"].dt.date)["full_gco2eq"].sum()
    if with_memory:
        assert heat["full_gco2eq"].to_numpy(dtype=float) == pytest.approx(
            known_by_day.to_numpy(), rel=1e-9
        )
    else:
        assert heat["full_gco2eq"].isna().all()  # not 0
    between = as_analyst(
        database_url,
        "SELECT footprint_unknown_hours, footprint_unknown_host_hours FROM "
        "usage_between('ada', '2025-03-03T00:00Z', '2025-03-05T00:00Z')",
    ).iloc[0]
    assert between.tolist() == [48, unknown.sum()]
    # The guide's "what the full footprint adds" compares like with like: only IDAaaS is
    # fully known, and its CPU-only and full footprints cover the same host-hours.
    adds = as_analyst(database_url, documented_queries()["what_the_full_footprint_adds"])
    idaaas = hosts[hosts["cloud_project_name"] == "IDAaaS"]
    if with_memory:
        assert adds["project"].tolist() == ["IDAaaS"] and adds["hours_compared"].tolist() == [48]
        cpu = (idaaas["busy_gco2eq"] + idaaas["idle_gco2eq"]).sum()
        assert adds["cpu_gco2eq"].iloc[0] == pytest.approx(cpu, rel=1e-9)
        assert adds["full_over_cpu"].iloc[0] == pytest.approx(
            idaaas["full_gco2eq"].sum() / cpu, rel=1e-9
        )
    else:
        assert adds.empty
