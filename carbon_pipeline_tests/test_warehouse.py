"""The analysts' warehouse, queried as the read-only analyst role: rollups, windows, heatmap,
equivalencies, workspace sessions, documentation, access and partition pruning."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg
import pytest
from psycopg import sql

from carbon_pipeline.assets.forecast import intensity_forecast
from carbon_pipeline.checks import rollup_gaps
from carbon_pipeline.demo.intensity_server import regional_forecast
from carbon_pipeline.resources.warehouse import migrations
from carbon_pipeline.tables import SCOPE_FACTS
from carbon_pipeline_tests import expected
from carbon_pipeline_tests.conftest import local_resources, materialize_range, test_server_periods
from carbon_pipeline_tests.fleet_spec import WINDOW_END, WINDOW_START, t

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "analyst-guide.md"
REL = 1e-9
SCOPES = list(SCOPE_FACTS)


@pytest.fixture(scope="module")
def warehouse_url(create_database, prometheus, intensity_server, registry_seed) -> str:
    """A warehouse loaded with the test fleet's two days, once for this module."""
    url = create_database()
    resources = local_resources(url, prometheus, intensity_server, registry_seed, chunk_hours=744)
    assert materialize_range(resources, WINDOW_START, WINDOW_END).success
    for issued in FORECASTS_ISSUED:  # two vintages, for the guide's forecast questions
        assert dg.materialize(
            [intensity_forecast],
            resources=resources,
            run_config={"ops": {"intensity_forecast": {"config": {"issued_at": issued}}}},
        ).success
    return url


@pytest.fixture(scope="module")
def host(prometheus, intensity_periods) -> pd.DataFrame:
    """The expected host-hours, from the fleet's truth."""
    _, truth = prometheus
    frame = expected.instance_usage(truth, expected.hourly_intensity(intensity_periods))
    frame["group_name"] = frame["cloud_project_name"] + "_" + frame["machine_name"]
    frame["total_kwh"] = frame["busy_kwh"] + frame["idle_kwh"]
    frame["total_gco2eq"] = frame["busy_gco2eq"] + frame["idle_gco2eq"]
    # Every project at the default site: RAL, region 12, PUE 1.0.
    sites = dict.fromkeys(frame["cloud_project_name"].unique(), (12, 1.0))
    return expected.full_footprint(frame, truth, sites, intensity_periods)


def as_analyst(url: str, query: str, params=None, now: str | None = None) -> pd.DataFrame:
    """Run a query as carbon_analyst (optionally reporting as of `now`)."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET ROLE carbon_analyst")
        cur.execute("SET TIME ZONE 'UTC'")
        if now:
            cur.execute("SELECT set_config('carbon.now', %s, false)", (now,))
        cur.execute(query, params)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def test_rollups_per_day_month_year_and_lifetime(warehouse_url, host):
    daily = as_analyst(
        warehouse_url,
        "SELECT * FROM v_usage_daily WHERE scope = 'project' ORDER BY scope_name, day",
    )
    host["day"] = host["timestamp_utc"].dt.date
    want = (
        host.groupby(["cloud_project_name", "day"])
        .agg(
            total_kwh=("total_kwh", "sum"),
            total_gco2eq=("total_gco2eq", "sum"),
            hours=("timestamp_utc", "nunique"),
            busy_kwh=("busy_kwh", "sum"),
            idle=("idle_cpu_seconds_total", "sum"),
            busy=("busy_cpu_seconds_total", "sum"),
        )
        .reset_index()
    )
    assert daily["scope_name"].tolist() == want["cloud_project_name"].tolist()
    assert daily["day"].tolist() == want["day"].tolist()
    assert daily["hours"].tolist() == want["hours"].tolist()
    for column in ("total_kwh", "total_gco2eq"):
        assert daily[column].to_numpy(dtype=float) == pytest.approx(
            want[column].to_numpy(), rel=REL
        )
    assert daily["intensity_gco2eq_per_kwh"].to_numpy(dtype=float) == pytest.approx(
        (want["total_gco2eq"] / want["total_kwh"]).to_numpy(), rel=REL
    )
    assert daily["busy_share_kwh"].to_numpy(dtype=float) == pytest.approx(
        (want["busy_kwh"] / want["total_kwh"]).to_numpy(), rel=REL
    )
    assert daily["idle_share_cpu"].to_numpy(dtype=float) == pytest.approx(
        (want["idle"] / (want["idle"] + want["busy"])).to_numpy(), rel=REL
    )
    # All the data is in March 2025: month, year and lifetime agree, for every scope.
    for view, period in (("v_usage_monthly", "month"), ("v_usage_yearly", "year")):
        rows = as_analyst(
            warehouse_url, f"SELECT scope, scope_name, {period}, total_kwh FROM {view}"
        )
        assert set(rows[period].astype(str)) == {
            "2025-03-01" if period == "month" else "2025-01-01"
        }
    totals = as_analyst(
        warehouse_url, "SELECT scope, scope_name, total_kwh, hours FROM v_usage_total ORDER BY 1, 2"
    )
    assert totals.loc[totals["scope"] == "ada", "total_kwh"].iloc[0] == pytest.approx(
        host["total_kwh"].sum(), rel=REL
    )
    assert totals.loc[totals["scope"] == "ada", "hours"].iloc[0] == 48
    for scope in ("project", "machine", "group", "user"):
        assert totals.loc[totals["scope"] == scope, "total_kwh"].sum() == pytest.approx(
            host["total_kwh"].sum(), rel=REL
        )


def test_usage_between_any_window(warehouse_url, host, fleet):
    start, end = t("2025-03-03T06:00"), t("2025-03-03T18:00")
    got = as_analyst(
        warehouse_url,
        "SELECT * FROM usage_between('user', %s, %s) ORDER BY scope_name",
        (start, end),
    ).set_index("scope_name")
    window = host[(host["timestamp_utc"] >= start) & (host["timestamp_utc"] < end)]
    want = (
        expected.user_usage(window, fleet.workspaces).groupby("ext_user_id")[expected.METRICS].sum()
    )
    assert list(got.index) == list(want.index)
    for metric in expected.METRICS:
        assert got[metric].to_numpy(dtype=float) == pytest.approx(want[metric].to_numpy(), rel=REL)
    # Hours with a share: bob took .10 over at 10:20 (10:00-17:00 is 8 hours).
    assert (
        got.loc["unattributed", "hours"],
        got.loc["bob", "hours"],
        got.loc["alice", "hours"],
    ) == (12, 8, 12)
    assert got.loc["alice", "display_name"] == "Alice Archer"


def test_workspace_sessions_accumulate_their_share(warehouse_url, host, fleet):
    sessions = as_analyst(
        warehouse_url, "SELECT * FROM v_workspace_sessions ORDER BY workspace_ext_id"
    )
    assert len(sessions) == len(fleet.workspaces)  # one per workspace, erin's included
    want = expected.workspace_usage(host, fleet.workspaces)
    for n, ws in enumerate(fleet.workspaces):
        row = sessions.iloc[n]  # seed ids are the spec's order
        assert row["ext_user_id"] == ws["owner"]
        assert row["started_at"] == max(
            ws["created_time"], ws.get("acquired_time") or ws["created_time"]
        )
        assert (pd.isna(row["ended_at"]) and "deleted_time" not in ws) or row["ended_at"] == ws.get(
            "deleted_time"
        )
        for metric in ("busy_kwh", "idle_kwh", "busy_gco2eq", "idle_gco2eq"):
            assert row[metric] == pytest.approx(want[n][metric], rel=REL, abs=1e-12), (n, metric)
    bob = sessions[sessions["ext_user_id"] == "bob"].iloc[0]
    assert (bob["machine_name"], bob["cloud_project_name"], bob["group_name"]) == (
        "Muon",
        "IDAaaS",
        "IDAaaS_Muon",
    )
    erin = sessions[sessions["ext_user_id"] == "erin"].iloc[0]
    assert (
        pd.isna(erin["machine_name"])
        and erin["total_kwh"] == 0
        and erin["hostname"] == "172.16.100.99"
    )
    active = as_analyst(
        warehouse_url, "SELECT ext_user_id, hostname FROM v_active_workspaces ORDER BY 1, 2"
    )
    assert active.values.tolist() == [
        ["alice", "172.16.100.14"],
        ["bob", "172.16.100.10"],
        ["erin", "172.16.100.99"],
    ]


def documented_queries() -> dict[str, str]:
    text = GUIDE.read_text()
    return dict(re.findall(r"<!-- query: (\w+) -->\s*```sql\n(.*?)```", text, flags=re.S))


def totals_of(frame: pd.DataFrame) -> dict[str, float]:
    return {"total_kwh": frame["total_kwh"].sum(), "total_gco2eq": frame["total_gco2eq"].sum()}


def check_my_footprint_last_month(got, host, fleet):
    users = expected.user_usage(host, fleet.workspaces)
    alice = users[users["ext_user_id"] == "alice"]
    kwh = (alice["busy_kwh"] + alice["idle_kwh"]).sum()
    grams = (alice["busy_gco2eq"] + alice["idle_gco2eq"]).sum()
    (row,) = got.to_dict("records")
    assert row["display_name"] == "Alice Archer" and row["estimated_hours"] == 0
    assert row["total_kwh"] == pytest.approx(kwh, rel=REL)
    assert row["total_kgco2eq"] == pytest.approx(grams / 1000, rel=REL)
    assert row["busy_share_kwh"] == pytest.approx(alice["busy_kwh"].sum() / kwh, rel=REL)


def check_top_groups_this_year(got, host, fleet):
    want = host.groupby("group_name")["total_gco2eq"].sum().sort_values(ascending=False)
    assert got["group_name"].tolist() == want.index.tolist()
    assert got["total_gco2eq"].to_numpy(dtype=float) == pytest.approx(want.to_numpy(), rel=REL)


def check_idle_share_per_machine(got, host, fleet):
    sums = host.groupby("machine_name")[
        ["idle_cpu_seconds_total", "busy_cpu_seconds_total", "idle_kwh", "total_kwh"]
    ].sum()
    share = sums["idle_cpu_seconds_total"] / (
        sums["idle_cpu_seconds_total"] + sums["busy_cpu_seconds_total"]
    )
    got = got.set_index("machine_name")
    assert list(got.index) == list(share.sort_values(ascending=False).index)
    assert got["idle_share_cpu"].to_numpy(dtype=float) == pytest.approx(
        share[got.index].to_numpy(), rel=REL
    )
    assert got["idle_kwh"].to_numpy(dtype=float) == pytest.approx(
        sums.loc[got.index, "idle_kwh"].to_numpy(), rel=REL
    )


def check_project_heatmap(got, host, fleet):
    assert len(got) == 365 and str(got["day"].iloc[-1]) == "2025-04-01"
    idaas = host[host["cloud_project_name"] == "IDAaaS"]
    per_day = idaas.groupby(idaas["timestamp_utc"].dt.date)["total_gco2eq"].sum()
    nonzero = got[got["total_gco2eq"] > 0]
    assert nonzero["day"].tolist() == list(per_day.index)
    assert nonzero["total_gco2eq"].to_numpy(dtype=float) == pytest.approx(
        per_day.to_numpy(), rel=REL
    )


def check_my_carbon_in_miles(got, host, fleet):
    users = expected.user_usage(host, fleet.workspaces)
    grams = (
        users.loc[users["ext_user_id"] == "alice", ["busy_gco2eq", "idle_gco2eq"]].to_numpy().sum()
    )
    (row,) = got.to_dict("records")
    assert row["miles_driven"] == pytest.approx(grams / 400.0, rel=REL)


def check_idle_workspaces(got, host, fleet):
    # At 2025-03-05T00:00 alice's idle host .14 and bob's half-busy .10 are held; only .14
    # is at least 90% idle over the 7 days before.
    idle_host = host[host["hostname"] == "172.16.100.14"]
    (row,) = got.to_dict("records")
    assert (row["user_name"], row["hostname"]) == ("Alice Archer", "172.16.100.14")
    share = idle_host["idle_cpu_seconds_total"].sum() / (
        idle_host["idle_cpu_seconds_total"].sum() + idle_host["busy_cpu_seconds_total"].sum()
    )
    assert row["idle_share_cpu_7d"] == pytest.approx(share, rel=REL)
    assert row["idle_kwh_7d"] == pytest.approx(idle_host["idle_kwh"].sum(), rel=REL)
    assert row["idle_kwh_30d"] == pytest.approx(idle_host["idle_kwh"].sum(), rel=REL)


def check_project_by_month(got, host, fleet):
    idaas = host[host["cloud_project_name"] == "IDAaaS"]
    (row,) = got.to_dict("records")
    assert str(row["month"]) == "2025-03-01"
    assert row["total_kwh"] == pytest.approx(idaas["total_kwh"].sum(), rel=REL)
    assert row["intensity_gco2eq_per_kwh"] == pytest.approx(
        idaas["total_gco2eq"].sum() / idaas["total_kwh"].sum(), rel=REL
    )


def check_full_footprint_this_year(got, host, fleet):
    (row,) = got.to_dict("records")
    assert row["cpu_kwh"] == pytest.approx(host["total_kwh"].sum(), rel=REL)
    assert row["cpu_kgco2eq"] == pytest.approx(host["total_gco2eq"].sum() / 1000, rel=REL)
    assert row["full_kwh"] == pytest.approx(host["full_kwh"].sum(), rel=REL)
    assert row["full_kgco2eq"] == pytest.approx(host["full_gco2eq"].sum() / 1000, rel=REL)
    assert row["footprint_unknown_hours"] == 0 and row["full_kwh"] > row["cpu_kwh"]


def check_what_the_full_footprint_adds(got, host, fleet):
    want = (
        host.groupby("cloud_project_name")[
            ["total_gco2eq", "memory_gco2eq", "overhead_gco2eq", "embodied_gco2eq", "full_gco2eq"]
        ]
        .sum()
        .sort_values("full_gco2eq", ascending=False)
    )
    assert got["project"].tolist() == want.index.tolist()
    for column, wanted in (
        ("cpu_gco2eq", "total_gco2eq"),
        ("memory_gco2eq", "memory_gco2eq"),
        ("overhead_gco2eq", "overhead_gco2eq"),
        ("embodied_gco2eq", "embodied_gco2eq"),
        ("full_gco2eq", "full_gco2eq"),
    ):
        assert got[column].to_numpy(dtype=float) == pytest.approx(
            want[wanted].to_numpy(), rel=REL, abs=1e-12
        )
    assert got["full_over_cpu"].to_numpy(dtype=float) == pytest.approx(
        (want["full_gco2eq"] / want["total_gco2eq"]).to_numpy(), rel=REL
    )
    assert set(got["overhead_gco2eq"]) == {0.0}  # PUE 1.0: overhead not applied


def check_national_vs_regional(got, host, fleet):
    (row,) = got.to_dict("records")
    operational = host["full_gco2eq"].sum() - host["embodied_gco2eq"].sum()
    assert str(row["month"]) == "2025-03-01"
    assert row["national_gco2eq"] == pytest.approx(operational, rel=REL)
    assert row["regional_gco2eq"] == pytest.approx(host["regional_gco2eq"].sum(), rel=REL)
    assert row["regional_intensity"] == pytest.approx(
        host["regional_gco2eq"].sum() / host["full_kwh"].sum(), rel=REL
    )
    # The test server's South England is 0.8 of the national forecast.
    assert row["regional_intensity"] < row["national_intensity"]


FORECASTS_ISSUED = ("2025-03-04T12:00Z", "2025-03-04T18:00Z")
HALF_HOUR = pd.Timedelta(minutes=30)


def _served_forecast(region_id: int | None = None) -> pd.Series:
    """{period_from: forecast} as the test server gives it, national or regional."""
    periods = test_server_periods().set_index("period_from")["forecast"]
    if region_id is None:
        return periods
    return periods.map(lambda value: regional_forecast(value, region_id))


def check_when_to_run(got, host, fleet):
    # At 12:10 the latest vintage is 12:00's: RAL's (region 12) next 24 hours, 4-hour windows.
    issued = pd.Timestamp(FORECASTS_ISSUED[0])
    forecast = _served_forecast(12)
    forecast = forecast[
        (forecast.index >= issued) & (forecast.index < issued + pd.Timedelta(hours=24))
    ]
    means = forecast.rolling(8).mean().shift(-7).dropna()  # the window starting at each period
    want = sorted(means.items(), key=lambda item: (item[1], item[0]))[:5]
    now = means[issued]
    assert got["rank"].tolist() == [1, 2, 3, 4, 5]
    assert [pd.Timestamp(t) for t in got["start_at"]] == [t for t, _ in want]
    assert [
        pd.Timestamp(t) - pd.Timestamp(s)
        for s, t in zip(got["start_at"], got["end_at"], strict=True)
    ] == [pd.Timedelta(hours=4)] * 5
    assert got["mean_gco2eq_per_kwh"].to_numpy(dtype=float) == pytest.approx(
        [m for _, m in want], rel=REL
    )
    assert (got["now_gco2eq_per_kwh"] == now).all()
    assert got["saving_share"].to_numpy(dtype=float) == pytest.approx(
        [(now - m) / now for _, m in want], rel=REL
    )


def check_shifting_by_project(got, host, fleet):
    intensity = pd.Series(expected.hourly_intensity(test_server_periods()))
    intensity = intensity[(intensity.index >= WINDOW_START) & (intensity.index < WINDOW_END)]
    greenest = intensity.groupby(intensity.index.date).min()
    days = host.groupby(["cloud_project_name", host["timestamp_utc"].dt.date])[
        ["busy_kwh", "busy_gco2eq"]
    ].sum()
    days["shifted"] = days["busy_kwh"] * days.index.get_level_values(1).map(greenest)
    want = days.groupby(level=0).sum()
    want["saving"] = want["busy_gco2eq"] - want["shifted"]
    want = want.sort_values("saving", ascending=False)
    assert got["project"].tolist() == want.index.tolist()
    assert {str(m) for m in got["month"]} == {"2025-03-01"}
    assert got["busy_kgco2eq"].to_numpy(dtype=float) == pytest.approx(
        want["busy_gco2eq"].to_numpy() / 1000, rel=REL
    )
    assert got["saving_kgco2eq"].to_numpy(dtype=float) == pytest.approx(
        want["saving"].to_numpy() / 1000, rel=REL
    )
    assert got["shifting_saving_share"].to_numpy(dtype=float) == pytest.approx(
        (want["saving"] / want["busy_gco2eq"]).to_numpy(), rel=REL
    )
    assert (got["saving_kgco2eq"] > 0).all()


def check_forecast_trust(got, host, fleet):
    national, actual = _served_forecast(), expected.hourly_intensity(test_server_periods())
    rows = []
    for issued in map(pd.Timestamp, FORECASTS_ISSUED):
        # Hours stored with both actuals: up to the fleet's window end.
        for hour in pd.date_range(issued, WINDOW_END, freq="h", inclusive="left"):
            error = (national[hour] + national[hour + HALF_HOUR]) / 2 - actual[hour]
            rows.append(("national", None, int((hour - issued) / HALF_HOUR), error))
    # Regional: 12:00's vintage against 18:00's (the final one) for the periods both hold;
    # the test server's forecast of a period does not change, so the drift is 0.
    first, final = map(pd.Timestamp, FORECASTS_ISSUED)
    for period in pd.date_range(
        final, WINDOW_END + pd.Timedelta(days=1), freq="30min", inclusive="left"
    ):
        rows.append(("regional", "RAL", int((period - first) / HALF_HOUR), 0.0))
    pairs = pd.DataFrame(rows, columns=["area", "site", "bucket", "error"])
    want = (
        pairs.groupby(["area", "bucket"])
        .agg(
            compared=("error", "size"),
            mae=("error", lambda e: e.abs().mean()),
            bias=("error", "mean"),
        )
        .reset_index()
    )
    assert got["area"].tolist() == want["area"].tolist()
    assert got["site"].fillna("").tolist() == [
        "" if a == "national" else "RAL" for a in want["area"]
    ]
    assert got["lead_from_hours"].astype(float).tolist() == (want["bucket"] / 2).tolist()
    assert got["lead_to_hours"].astype(float).tolist() == ((want["bucket"] + 1) / 2).tolist()
    assert got["compared"].tolist() == want["compared"].tolist()
    assert got["mean_absolute_error"].to_numpy(dtype=float) == pytest.approx(
        want["mae"].to_numpy(), rel=REL, abs=1e-12
    )
    assert got["bias"].to_numpy(dtype=float) == pytest.approx(
        want["bias"].to_numpy(), rel=REL, abs=1e-12
    )
    assert got["compared"].sum() == len(pairs) and (want["mae"] > 0).any()


def check_no_usage_or_no_data(got, host, fleet):
    # The days of the last week up to 2025-03-05: four never run, then the two it holds.
    # Erin's workspace holds host .99 all along, which never reported: one host missing in
    # every hour; every other host that was up reported.
    per_day = host.groupby(host["timestamp_utc"].dt.date)["total_kwh"].sum()
    assert [str(d) for d in got["day"]] == [f"2025-02-{d}" for d in (27, 28)] + [
        f"2025-03-0{d}" for d in (1, 2, 3, 4)
    ]
    never_run = got.iloc[:4]
    assert (
        never_run[["total_kwh", "hours", "hours_not_run", "hours_complete"]].values.tolist()
        == [[0, 24, 24, 0]] * 4
    )
    got = got.iloc[4:]
    assert got["day"].tolist() == list(per_day.index)
    assert got["total_kwh"].to_numpy(dtype=float) == pytest.approx(per_day.to_numpy(), rel=REL)
    assert got[
        ["hours", "hours_complete", "hours_partial", "hours_without_data", "hours_not_run"]
    ].values.tolist() == [
        [24, 0, 24, 0, 0],
        [24, 0, 24, 0, 0],
    ]
    assert got["host_hours_missing"].tolist() == [24, 24]


CHECKS = {
    "my_footprint_last_month": ("2025-04-01T00:00Z", check_my_footprint_last_month),
    "top_groups_this_year": ("2025-04-01T00:00Z", check_top_groups_this_year),
    "idle_share_per_machine": (None, check_idle_share_per_machine),
    "project_heatmap": ("2025-04-01T00:00Z", check_project_heatmap),
    "my_carbon_in_miles": (None, check_my_carbon_in_miles),
    "idle_workspaces": ("2025-03-05T00:00Z", check_idle_workspaces),
    "project_by_month": (None, check_project_by_month),
    "no_usage_or_no_data": ("2025-03-05T00:00Z", check_no_usage_or_no_data),
    "full_footprint_this_year": ("2025-06-01T00:00Z", check_full_footprint_this_year),
    "what_the_full_footprint_adds": (None, check_what_the_full_footprint_adds),
    "national_vs_regional": (None, check_national_vs_regional),
    "when_to_run": ("2025-03-04T12:10Z", check_when_to_run),
    "shifting_by_project": (None, check_shifting_by_project),
    "forecast_trust": (None, check_forecast_trust),
}


def test_every_documented_query_gives_the_right_numbers(warehouse_url, host, fleet):
    queries = documented_queries()
    assert set(queries) == set(CHECKS), "every query in the guide needs a check here, and back"
    for name, query in queries.items():
        now, check = CHECKS[name]
        check(as_analyst(warehouse_url, query, now=now), host, fleet)


def test_equivalencies_carry_units_and_sources(warehouse_url):
    table = as_analyst(warehouse_url, "SELECT * FROM equivalency ORDER BY equivalency")
    assert dict(zip(table["equivalency"], table["gco2eq_per_unit"], strict=True)) == {
        "car_miles": 400.0,
        "hd_streaming_hours": 55.0,
        "litres_boiled": 70.0,
        "smartphone_charges": 8.22,
        "tree_days": 59.6,
    }
    assert table["unit"].str.len().min() > 0 and table["source"].str.len().min() > 0
    got = as_analyst(warehouse_url, "SELECT equivalency, amount FROM equivalencies(822)").set_index(
        "equivalency"
    )
    assert got.loc["smartphone_charges", "amount"] == pytest.approx(100.0)


def test_the_analyst_role_reads_and_cannot_write_or_see_more(warehouse_url):
    assert len(as_analyst(warehouse_url, "SELECT * FROM v_project_total")) == 3
    refused = [
        "INSERT INTO fact_usage_ada (timestamp_utc, busy_cpu_seconds_total, idle_cpu_seconds_total, busy_kwh, "
        "idle_kwh, busy_gco2eq, idle_gco2eq) VALUES (now(), 0, 0, 0, 0, 0, 0)",
        "UPDATE dim_user SET display_name = 'x'",
        "DELETE FROM fact_usage_user",
        "TRUNCATE equivalency",
        "CREATE TABLE mine (x int)",
        "SELECT * FROM schema_migrations",
        "SELECT * FROM host_cpu_hourly",
        "SELECT * FROM host_cpu_rejected",
        "SELECT carbon_ensure_month_partitions('fact_usage_ada', now(), now() + interval '1 month')",
    ]
    for statement in refused:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_analyst(warehouse_url, statement)


def test_every_view_and_column_is_documented(warehouse_url):
    with psycopg.connect(warehouse_url) as conn:
        missing = conn.execute(
            """
            SELECT c.relname || coalesce('.' || a.attname, '')
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
            LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE c.relkind IN ('v', 'r', 'p') AND NOT c.relispartition
              AND has_table_privilege('carbon_analyst', c.oid, 'SELECT')
              AND (obj_description(c.oid, 'pg_class') IS NULL
                   OR (a.attname IS NOT NULL AND col_description(c.oid, a.attnum) IS NULL))
            """
        ).fetchall()
    assert missing == []


def test_a_month_of_one_project_reads_one_partition(warehouse_url):
    with psycopg.connect(warehouse_url) as conn:
        # A longer history: months before and after the data exist too.
        conn.execute(
            "SELECT carbon_ensure_month_partitions('fact_usage_project', '2025-01-01', '2025-07-01')"
        )
        conn.commit()
    between = "SELECT * FROM usage_between('project', %s, %s) WHERE scope_name = 'IDAaaS'"
    for query, read in (
        # Whole days come from the daily rollup: no hour is read.
        (between % ("'2025-03-01'", "'2025-04-01'"), set()),
        # The hours at either end, from the one partition they are in.
        (between % ("'2025-03-02T06:00Z'", "'2025-03-20T12:00Z'"), {"fact_usage_project_y2025m03"}),
        (
            "SELECT sum(busy_kwh) FROM fact_usage_project WHERE project_id = 1 "
            "AND timestamp_utc >= '2025-03-01' AND timestamp_utc < '2025-04-01'",
            {"fact_usage_project_y2025m03"},
        ),
    ):
        plan = as_analyst(warehouse_url, f"EXPLAIN (FORMAT JSON) {query}").iloc[0, 0]
        relations = set(re.findall(r'"Relation Name": "([^"]+)"', json.dumps(plan)))
        facts = {r for r in relations if r.startswith("fact_")}
        assert facts == read, (query, relations)


def test_lifetime_views_read_one_row_per_entity(warehouse_url):
    """Whatever the history's length: the lifetime views read the lifetime rows alone (an
    index range of usage_rollup), and each entity has one."""
    for view in ("v_usage_total", "v_user_total", "v_project_averages", "v_ada_total"):
        plan = as_analyst(warehouse_url, f"EXPLAIN (FORMAT JSON) SELECT * FROM {view}")
        plan = json.dumps(plan.iloc[0, 0])
        grains = set(re.findall(r"grain = '(\w+)'", plan))
        assert grains == {"lifetime"}, (view, grains)
    rows = as_analyst(
        warehouse_url,
        "SELECT scope, count(*) AS n, count(DISTINCT entity_id) AS entities FROM usage_rollup "
        "WHERE grain = 'lifetime' GROUP BY 1 ORDER BY 1",
    )
    assert rows.values.tolist() == [
        ["ada", 1, 1],
        ["group", 4, 4],
        ["machine", 4, 4],
        ["project", 3, 3],
        ["user", 5, 5],
    ]


def test_heatmap_covers_every_entity_for_a_year(warehouse_url):
    rows = as_analyst(
        warehouse_url,
        "SELECT scope, scope_name, count(*) AS days, sum(total_kwh) AS kwh FROM v_usage_heatmap "
        "GROUP BY 1, 2",
        now="2025-06-30T12:00Z",
    )
    assert set(rows["days"]) == {365}
    ada = rows[rows["scope"] == "ada"].iloc[0]
    assert (
        ada["kwh"] > 0 and len(rows) == 1 + 3 + 4 + 4 + 5
    )  # ada, projects, machines, groups, users
    later = as_analyst(
        warehouse_url, "SELECT count(*) AS n FROM v_usage_heatmap", now="2026-06-30T00:00Z"
    )
    assert later["n"].iloc[0] == 0  # a year later no entity has data in the window: none listed


def test_active_workspaces_are_those_holding_a_host_at_reporting_now(warehouse_url):
    def active(now):
        return as_analyst(
            warehouse_url, "SELECT ext_user_id FROM v_active_workspaces ORDER BY 1", now=now
        )["ext_user_id"].tolist()

    # At 2025-03-03T12:00 alice's .10 has gone to bob (10:20), dave holds .12 (06:30-20:45)
    # and carol .11 (until 03-04 12:00); at 2025-03-02 only carol's, erin's and alice's .14
    # had begun; today the deleted ones are gone.
    assert active("2025-03-03T12:00Z") == ["alice", "bob", "carol", "dave", "erin"]
    assert active("2025-03-02T12:00Z") == ["alice", "carol", "erin"]
    assert active(None) == ["alice", "bob", "erin"]


def test_nobody_but_the_pipeline_can_create_in_public_or_lock_its_writes(warehouse_url, resources):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_analyst(
            warehouse_url,
            "CREATE FUNCTION public.format(text) RETURNS text LANGUAGE sql AS 'SELECT 1::text'",
        )
    for statement in (
        "SELECT * FROM write_lock FOR UPDATE",
        "LOCK TABLE write_lock",
        "LOCK TABLE schema_migrations",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_analyst(warehouse_url, statement)
    # An analyst holding the advisory locks an earlier version used stalls nothing now.
    import hashlib

    keys = [
        int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        for name in (
            "carbon_migrations",
            "write:fact_usage_ada,fact_usage_project,fact_usage_machine,fact_usage_group,fact_usage_user,fact_usage_workspace",
        )
    ]
    with psycopg.connect(warehouse_url, autocommit=True) as analyst:
        analyst.execute("SET ROLE carbon_analyst")
        for key in keys:
            analyst.execute("SELECT pg_advisory_lock(%s)", (key,))
        other = {**resources, "warehouse": type(resources["warehouse"])(database_url=warehouse_url)}
        assert materialize_range(other, t("2025-03-03T10:00"), t("2025-03-03T11:00")).success


def as_reporter(url: str, query: str, params=None) -> pd.DataFrame:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SET ROLE carbon_reporter")
        cur.execute("SET search_path = reporting")
        cur.execute("SET TIME ZONE 'UTC'")
        cur.execute(query, params)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def test_the_reporter_reads_aggregates_and_no_person(warehouse_url, host):
    # Every aggregate on its own (test_security covers the small-group rule).
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("UPDATE reporting_policy SET min_users = 1")
    totals = as_reporter(warehouse_url, "SELECT scope, scope_name, total_kwh FROM v_usage_total")
    assert set(totals["scope"]) == {"ada", "project", "machine", "group"}
    projects = totals[totals["scope"] == "project"].set_index("scope_name")["total_kwh"]
    want = host.groupby("cloud_project_name")["total_kwh"].sum()
    assert projects.sort_index().to_numpy(dtype=float) == pytest.approx(
        want.sort_index().to_numpy(), rel=REL
    )
    window = as_reporter(
        warehouse_url,
        "SELECT scope_name, total_kwh FROM usage_between('machine', '2025-03-03', '2025-03-05')",
    ).set_index("scope_name")["total_kwh"]
    machines = host.groupby("machine_name")["total_kwh"].sum()
    assert window.sort_index().to_numpy(dtype=float) == pytest.approx(
        machines.sort_index().to_numpy(), rel=REL
    )
    for scope in ("v_usage_daily", "v_usage_hourly", "v_usage_heatmap", "v_usage_equivalencies"):
        assert "user" not in set(
            as_reporter(warehouse_url, f"SELECT DISTINCT scope FROM {scope}")["scope"]
        )
    for statement in (
        "SELECT * FROM usage_between('user', '2025-03-03', '2025-03-05')",
        "SELECT * FROM public.fact_usage_user",
        "SELECT * FROM public.dim_user",
        "SELECT * FROM public.workspace_session",
        "SELECT * FROM public.v_usage_total",
        "SELECT * FROM public.v_host_hourly",
        "SELECT * FROM public.host_cpu_gaps",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_reporter(warehouse_url, statement)


def test_the_reporters_views_are_documented(warehouse_url):
    with psycopg.connect(warehouse_url) as conn:
        missing = conn.execute(
            """
            SELECT c.relname || coalesce('.' || a.attname, '')
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'reporting'
            LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE c.relkind = 'v'
              AND (obj_description(c.oid, 'pg_class') IS NULL
                   OR (a.attname IS NOT NULL AND col_description(c.oid, a.attnum) IS NULL))
            """
        ).fetchall()
    assert missing == []


# The views migration 0013 rewrote over usage_rollup, as they were before it (read from a
# database migrated to 0012), run on this warehouse beside the new ones.
REWRITTEN_VIEWS = [
    "v_usage_rollup",
    "v_usage_heatmap",
    *(f"v_{scope}_{kind}" for scope in SCOPES for kind in ("total", "averages")),
]
REPORTING_VIEWS = [
    "v_usage_rollup",
    "v_usage_heatmap",
    *(f"v_{scope}_{kind}" for scope in SCOPES if scope != "user" for kind in ("total", "averages")),
]
BETWEEN_WINDOWS = [
    ("2025-03-03T06:00", "2025-03-03T18:00"),  # inside one day
    ("2025-03-03T05:00", "2025-03-04T07:00"),  # two partial days
    ("2025-03-03T05:00", "2025-03-05T00:00"),  # a partial day and a whole one
    ("2025-03-02T22:00", "2025-03-05T02:00"),  # whole days, and hours without data
    ("2025-03-03T00:00", "2025-03-05T00:00"),  # whole days only
]


@pytest.fixture(scope="module")
def before_rollups(create_database) -> dict[str, str]:
    """{view: its definition before migration 0013, names qualified}, and usage_between's."""
    url = create_database(empty=True)
    with psycopg.connect(url, autocommit=True) as conn:
        for version, sql in migrations():
            if version < "0013":
                conn.execute(sql)
        conn.execute("SET search_path = pg_catalog")
        definitions = {
            view: conn.execute(f"SELECT pg_get_viewdef('public.{view}'::regclass)").fetchone()[0]
            for view in REWRITTEN_VIEWS
        }
        definitions["usage_between"] = conn.execute(
            "SELECT prosrc FROM pg_proc WHERE oid = "
            "'public.usage_between(text, timestamptz, timestamptz)'::regprocedure"
        ).fetchone()[0]
        # carbon_reporter's, which 0013 left reading the hourly view (0014 rewrote them).
        for view in REPORTING_VIEWS:
            definitions[f"reporting.{view}"] = conn.execute(
                f"SELECT pg_get_viewdef('reporting.{view}'::regclass)"
            ).fetchone()[0]
        definitions["reporting.usage_between"] = conn.execute(
            "SELECT pg_get_functiondef('reporting.usage_between(text, timestamptz, timestamptz)'"
            "::regprocedure)"
        ).fetchone()[0]
    return definitions


# Columns migration 0014 appended to v_usage_rollup (the like-with-like sums).
APPENDED = [
    "known_hours",
    *(f"known_{m}_gco2eq" for m in ("cpu", "memory", "overhead", "embodied", "full")),
]


def _same_rows(got: pd.DataFrame, want: pd.DataFrame, where: str) -> None:
    """The rows of `want`, in any order, equal to 1e-9; `got` may have APPENDED after."""
    appended = list(got.columns[len(want.columns) :])
    assert list(got.columns) == list(want.columns) + appended, where
    assert appended in ([], APPENDED), where
    got = got[list(want.columns)]
    assert len(got) == len(want) > 0, where
    keys = [c for c in got.columns if not pd.api.types.is_numeric_dtype(want[c])]
    got, want = (
        frame.sort_values(keys, key=lambda s: s.astype(str)).reset_index(drop=True)
        for frame in (got, want)
    )
    for column in got.columns:
        if column in keys:
            assert got[column].astype(str).tolist() == want[column].astype(str).tolist(), where
        else:
            ours, theirs = (f[column].astype(float).to_numpy() for f in (got, want))
            assert list(pd.isna(ours)) == list(pd.isna(theirs)), f"{where}.{column}"
            assert ours[~pd.isna(ours)] == pytest.approx(theirs[~pd.isna(theirs)], rel=REL), (
                f"{where}.{column}"
            )


def test_the_views_over_rollups_give_the_rows_they_gave_before(warehouse_url, before_rollups):
    now = "2025-04-01T00:00Z"  # the heatmap's year includes the fleet's days
    for view in REWRITTEN_VIEWS:
        _same_rows(
            as_analyst(warehouse_url, f"SELECT * FROM public.{view}", now=now),
            as_analyst(warehouse_url, before_rollups[view], now=now),
            view,
        )
    with psycopg.connect(warehouse_url) as conn:
        conn.execute(
            "PREPARE before_between(text, timestamptz, timestamptz) AS "
            + before_rollups["usage_between"]
        )
        for scope in SCOPES:
            for start, end in BETWEEN_WINDOWS:
                args = (scope, t(start), t(end))
                got = as_analyst(warehouse_url, "SELECT * FROM usage_between(%s, %s, %s)", args)
                cur = conn.execute(
                    sql.SQL("EXECUTE before_between({}, {}, {})").format(*map(sql.Literal, args))
                )
                # The function's body names no columns: its RETURNS TABLE does.
                want = pd.DataFrame(cur.fetchall(), columns=got.columns)
                _same_rows(got, want, f"usage_between{args}")


@pytest.mark.parametrize("min_users", [1, 2, 3])
def test_the_reporting_views_over_rollups_give_the_rows_they_gave_before(
    warehouse_url, before_rollups, min_users
):
    """carbon_reporter's views and usage_between, over reporting_rollup, against their
    definitions before it, under policies that merge some groups and hide some hours (a
    change of policy rebuilds the rollup: its trigger)."""

    def as_reporter_at(query: str, conn: psycopg.Connection, params=None) -> pd.DataFrame:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("UPDATE reporting_policy SET min_users = %s", (min_users,))
        before_between = before_rollups["reporting.usage_between"].replace(
            "reporting.usage_between(", "pg_temp.before_between(", 1
        )
        conn.execute(before_between)
        conn.execute(
            "GRANT EXECUTE ON FUNCTION pg_temp.before_between(text, timestamptz, timestamptz) "
            "TO carbon_reporter"
        )
        conn.execute("SET ROLE carbon_reporter")
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("SELECT set_config('carbon.now', '2025-04-01T00:00Z', false)")
        try:
            for view in REPORTING_VIEWS:
                got = as_reporter_at(f"SELECT * FROM reporting.{view}", conn)
                want = as_reporter_at(before_rollups[f"reporting.{view}"], conn)
                _same_rows(got, want, f"reporting.{view}")
            merged = as_reporter_at(
                "SELECT count(*) AS n FROM reporting.v_usage_rollup WHERE scope_id IS NULL "
                "AND scope <> 'ada'",
                conn,
            )
            assert (merged["n"][0] > 0) == (min_users > 1)
            for scope in ("ada", "project", "machine", "group"):
                for start, end in BETWEEN_WINDOWS:
                    args = (scope, t(start), t(end))
                    _same_rows(
                        as_reporter_at(
                            "SELECT * FROM reporting.usage_between(%s, %s, %s)", conn, args
                        ),
                        as_reporter_at(
                            "SELECT * FROM pg_temp.before_between(%s, %s, %s)", conn, args
                        ),
                        f"reporting.usage_between{args}",
                    )
        finally:
            conn.execute("RESET ROLE")
            conn.execute("UPDATE reporting_policy SET min_users = 5")
    with psycopg.connect(warehouse_url) as conn:
        assert rollup_gaps(conn, WINDOW_START, WINDOW_END) <= 1e-12


def test_the_rollups_are_the_facts_and_the_check_sees_a_difference(warehouse_url):
    with psycopg.connect(warehouse_url) as conn:
        assert rollup_gaps(conn, WINDOW_START, WINDOW_END) <= 1e-12
        days = conn.execute(
            "SELECT count(*), count(DISTINCT period_start) FROM usage_rollup WHERE grain = 'day'"
        ).fetchone()
        assert days[1] == 2
        # A user's day off by a thousandth, a day missing, a count wrong: each is seen.
        for change, gap in (
            (
                "UPDATE usage_rollup SET busy_kwh = busy_kwh * 1.001 WHERE grain = 'day' "
                "AND scope = 'user' AND busy_kwh > 0 AND entity_id = "
                "(SELECT min(entity_id) FROM usage_rollup WHERE scope = 'user' AND busy_kwh > 0)",
                pytest.approx(1e-3, rel=0.5),
            ),
            (
                "DELETE FROM usage_rollup WHERE grain = 'day' AND scope = 'machine' "
                "AND period_start = '2025-03-04'",
                float("inf"),
            ),
            (
                "UPDATE usage_rollup SET estimated_hours = estimated_hours + 1 "
                "WHERE grain = 'month' AND scope = 'ada'",
                None,  # one hour more than the days' (none estimated): relative to nothing
            ),
            (
                "UPDATE usage_rollup SET full_gco2eq = full_gco2eq * 1.01 "
                "WHERE grain = 'year' AND scope = 'project'",
                pytest.approx(1e-2, rel=0.01),
            ),
            (
                "DELETE FROM usage_rollup WHERE grain = 'lifetime' AND scope = 'group' "
                "AND entity_id = (SELECT min(group_id) FROM dim_group)",
                float("inf"),
            ),
        ):
            conn.execute(change)
            seen = rollup_gaps(conn, WINDOW_START, WINDOW_END)
            assert seen > 1e-6 and (gap is None or seen == gap), change
            conn.rollback()
