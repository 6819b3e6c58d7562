"""Greener choices (issue 22): the forecast kept as a record of vintages, the greenest window
to run in, how good the forecast has been, and what shifting would have saved; against the
local server's forecast routes and a real PostgreSQL, with exact expected values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd
import psycopg
import pytest

from carbon_pipeline.assets.forecast import FORECAST_FETCHED, half_hour_of, intensity_forecast
from carbon_pipeline.assets.sources import carbon_intensity
from carbon_pipeline.demo.intensity_server import (
    IntensityServer,
    _index,
    regional_forecast,
    synthetic_periods,
)
from carbon_pipeline.greenest import greenest_windows
from carbon_pipeline.partitions import range_tags
from carbon_pipeline.resources import CarbonIntensityResource, SitesResource, WarehouseResource
from carbon_pipeline_tests import expected
from carbon_pipeline_tests.conftest import cli, materialize_range, read_table
from carbon_pipeline_tests.fleet_spec import t

HALF_HOUR = timedelta(minutes=30)
ISSUED = t("2026-11-30T10:00")
RAL = 12  # the default site's region: the server's regional forecast is 0.8 x national


def dip_forecast(issued: datetime, base: float = 200.0) -> pd.DataFrame:
    """48 h of `base` from the half-hour before `issued`, but for a dip 6 h after it: eight
    half-hours of 120, 100, 60, 40, 40, 60, 100, 120 (the greenest 4 hours: their mean, 80)."""
    starts = pd.date_range(issued - HALF_HOUR, issued + timedelta(hours=48), freq="30min")
    forecast = np.full(len(starts), base)
    dip = int((timedelta(hours=6) + HALF_HOUR) / HALF_HOUR)
    forecast[dip : dip + 8] = [120, 100, 60, 40, 40, 60, 100, 120]
    return pd.DataFrame(
        {
            "period_from": starts,
            "period_to": starts + HALF_HOUR,
            "forecast": forecast,
            "actual": np.nan,
        }
    )


@pytest.fixture
def forecast_server():
    server = IntensityServer(dip_forecast(ISSUED).iloc[:0], forecast=dip_forecast).start()
    yield server
    server.stop()


def fetch(database_url, server, issued: datetime | None, retries: int = 0, **kwargs):
    config = {"issued_at": issued.strftime("%Y-%m-%dT%H:%MZ")} if issued else {}
    return dg.materialize(
        [intensity_forecast],
        resources={
            "warehouse": WarehouseResource(database_url=database_url),
            "carbon_intensity_api": CarbonIntensityResource(
                api_url=server.url, retries=retries, backoff_seconds=0.01
            ),
            "sites": SitesResource(),
        },
        run_config={"ops": {"intensity_forecast": {"config": config}}},
        instance=dg.DagsterInstance.ephemeral(),
        **kwargs,
    )


def as_reporter(database_url: str, query: str) -> pd.DataFrame:
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SET ROLE carbon_reporter")
        cur.execute(query)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def stored(database_url: str) -> pd.DataFrame:
    return read_table(
        database_url,
        "SELECT region_id, issued_at, period_from, forecast_gco2eq_per_kwh AS forecast, "
        "intensity_index FROM intensity_forecast ORDER BY 1, 2, 3",
    )


def test_the_forecast_is_stored_with_its_vintage_and_bands(database_url, forecast_server):
    result = fetch(database_url, forecast_server, ISSUED)
    assert result.success
    rows = stored(database_url)
    expected = dip_forecast(ISSUED).iloc[1:97]  # the 96 half-hours from the issued one
    assert sorted(rows["region_id"].unique()) == [0, RAL]
    national = expected["forecast"].tolist()
    for region_id, want in ((0, national), (RAL, [regional_forecast(v, RAL) for v in national])):
        got = rows[rows["region_id"] == region_id]
        assert list(got["period_from"]) == list(expected["period_from"])
        assert (got["issued_at"] == ISSUED).all()
        assert list(got["forecast"]) == list(want)
        assert list(got["intensity_index"]) == [_index(v) for v in want]
    sites = read_table(database_url, "SELECT site, region_id FROM forecast_site")
    assert sites.values.tolist() == [["RAL", RAL]]
    fetches = read_table(
        database_url,
        "SELECT region_id, issued_at, periods, stored, error FROM forecast_fetch ORDER BY 1",
    )
    assert fetches.values.tolist() == [[0, ISSUED, 96, 96, None], [RAL, ISSUED, 96, 96, None]]
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == FORECAST_FETCHED and check.passed


def test_the_greenest_window_is_the_known_dip(database_url, forecast_server):
    fetch(database_url, forecast_server, ISSUED)
    at = ISSUED + timedelta(minutes=10)
    with psycopg.connect(database_url) as conn:
        national = greenest_windows(conn, 4, at=at, best=3)
        regional = greenest_windows(conn, 4, site="RAL", at=at, best=1)
        short = greenest_windows(conn, 0.75, within_hours=9, at=at, best=1)
    dip = ISSUED + timedelta(hours=6)
    # 4 h = 8 half-hours: the dip exactly (mean 80); the next best start half an hour either
    # side, where 200 replaces 120 (mean 90).
    assert [(w.start, w.end, w.mean_gco2eq_per_kwh) for w in national] == [
        (dip, dip + timedelta(hours=4), 80.0),
        (dip - HALF_HOUR, dip + timedelta(hours=3, minutes=30), 90.0),
        (dip + HALF_HOUR, dip + timedelta(hours=4, minutes=30), 90.0),
    ]
    best = national[0]
    assert best.now_gco2eq_per_kwh == 200.0  # starting in the current half-hour
    assert best.saving_gco2eq_per_kwh == 120.0 and best.saving_share == pytest.approx(0.6)
    assert best.region_id == 0 and best.issued_at == ISSUED
    # The regional forecast is round(0.8 x national): 96, 80, 48, 32, 32, 48, 80, 96.
    assert regional[0].start == dip and regional[0].region_id == RAL
    assert regional[0].mean_gco2eq_per_kwh == pytest.approx(np.mean([96, 80, 48, 32] * 2))
    assert regional[0].now_gco2eq_per_kwh == 160.0
    # 45 minutes is two half-hours: the two of 40, which end within 9 h of now.
    assert short[0].start == dip + timedelta(hours=1, minutes=30)
    assert short[0].mean_gco2eq_per_kwh == 40.0


def test_greenest_window_refuses_what_it_cannot_answer(database_url, forecast_server):
    fetch(database_url, forecast_server, ISSUED)
    at = ISSUED + timedelta(minutes=10)
    cases = {
        ("2 hours", "Nowhere", at): "unknown site Nowhere; the sites are: RAL",
        ("0 hours", None, at): "duration must be positive",
        (
            "2 hours",
            None,
            at + timedelta(days=2),
        ): r"no forecast for GB \(national\) issued in the 24",
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        for (duration, site, when), message in cases.items():
            with pytest.raises(psycopg.errors.RaiseException, match=message):
                conn.execute(
                    "SELECT * FROM greenest_window(%s, %s, at => %s)", (duration, site, when)
                )
        # Within less than the job: nothing fits, said as such.
        with pytest.raises(psycopg.errors.RaiseException, match="must be at least the duration"):
            conn.execute("SELECT * FROM greenest_window('4 hours', within => '3 hours')")


def test_vintages_are_kept_across_fetches_and_never_overwritten(database_url, forecast_server):
    later = ISSUED + HALF_HOUR
    forecast_server.forecast = lambda issued: dip_forecast(issued, base=200.0)
    assert fetch(database_url, forecast_server, ISSUED).success
    forecast_server.forecast = lambda issued: dip_forecast(issued, base=300.0)
    assert fetch(database_url, forecast_server, later).success
    # Asked again for the first half-hour, the API now says otherwise: the vintage stays.
    assert fetch(database_url, forecast_server, ISSUED).success
    rows = stored(database_url)
    national = rows[rows["region_id"] == 0]
    first, second = (
        national[national["issued_at"] == ISSUED],
        national[national["issued_at"] == later],
    )
    assert len(first) == len(second) == 96
    assert first["forecast"].max() == 200.0 and second["forecast"].max() == 300.0
    fetches = read_table(
        database_url,
        "SELECT issued_at, stored FROM forecast_fetch WHERE region_id = 0 ORDER BY fetched_at",
    )
    assert fetches.values.tolist() == [[ISSUED, 96], [later, 96], [ISSUED, 0]]
    # What people deciding now see: the latest vintage, from the current half-hour on.
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "SELECT set_config('carbon.now', %s, false)", (str(later + timedelta(minutes=40)),)
        )
        latest = conn.execute(
            "SELECT area, site, issued_at, min(period_from), count(*) FROM v_forecast_latest "
            "GROUP BY 1, 2, 3 ORDER BY 1"
        ).fetchall()
        now = conn.execute("SELECT * FROM v_intensity_now").fetchall()
    current = later + HALF_HOUR
    assert latest == [
        ("national", None, later, current, 95),
        ("regional", "RAL", later, current, 95),
    ]
    assert now == [
        ("RAL", RAL, current, current + HALF_HOUR, 300.0, _index(300), 240.0, _index(240), later)
    ]


def test_a_failed_fetch_is_retried_then_recorded(database_url, forecast_server):
    forecast_server.fail_next = 1
    assert fetch(database_url, forecast_server, ISSUED, retries=1).success
    assert len(stored(database_url)) == 2 * 96  # the national one, asked twice, came
    paths = [p for p in forecast_server.requests if p.startswith("/intensity/")]
    assert len(paths) == 2
    # Without retries, the national fetch fails: the regional one is stored, the failure
    # recorded and the check fails; the run succeeds.
    later = ISSUED + HALF_HOUR
    forecast_server.fail_next = 1
    result = fetch(database_url, forecast_server, later)
    assert result.success
    assert not result.get_asset_check_evaluations()[0].passed
    fetches = read_table(
        database_url,
        "SELECT region_id, periods, stored, error IS NOT NULL AS failed FROM forecast_fetch "
        "WHERE issued_at = %s ORDER BY 1",
        (later,),
    )
    assert fetches.values.tolist() == [[0, 0, 0, True], [RAL, 96, 96, False]]
    # Every fetch failing fails the run, after recording them.
    forecast_server.fault = "500"
    third = later + HALF_HOUR
    assert not fetch(database_url, forecast_server, third, raise_on_error=False).success
    errors = read_table(
        database_url, "SELECT error FROM forecast_fetch WHERE issued_at = %s", (third,)
    )["error"]
    assert len(errors) == 2 and errors.str.contains("HTTP 500").all()


def test_greenest_prints_the_next_greenest_window(database_url, forecast_server, monkeypatch):
    issued = half_hour_of(datetime.now(UTC))
    assert fetch(database_url, forecast_server, None).success  # the half-hour now
    monkeypatch.setenv("DATABASE_URL", database_url)
    done = cli("greenest", "--hours", "4", "--site", "RAL", "--best", "1")
    assert done.returncode == 0, done.stderr
    dip = issued + timedelta(hours=6)
    assert "Greenest 4-hour windows at RAL (GB region 12)" in done.stdout
    line = f"{dip:%Y-%m-%d %H:%M}  {dip + timedelta(hours=4):%Y-%m-%d %H:%M}"
    assert line in done.stdout and "64" in done.stdout  # mean of 96, 80, 48, 32 (x2)
    refused = cli("greenest", "--hours", "4", "--site", "Nowhere")
    assert refused.returncode == 2
    assert "unknown site Nowhere; the sites are: RAL" in refused.stderr


def test_forecast_error_by_lead_time_on_known_series(database_url):
    h = t("2026-11-30T10:00")
    forecasts = [
        # national (region 0): vintage 09:00
        (0, h - timedelta(hours=1), h, 110),
        (0, h - timedelta(hours=1), h + HALF_HOUR, 130),  # hour 10: mean 120 vs 100, lead 1 h
        (0, h - timedelta(hours=1), h + 2 * HALF_HOUR, 190),
        (0, h - timedelta(hours=1), h + 3 * HALF_HOUR, 190),  # hour 11: 190 vs 200, lead 2 h
        # vintage 10:00
        (0, h, h, 100),
        (0, h, h + HALF_HOUR, 104),  # hour 10: 102 vs 100, lead 0
        (0, h, h + 2 * HALF_HOUR, 210),
        (0, h, h + 3 * HALF_HOUR, 210),  # hour 11: 210 vs 200, lead 1 h
        (0, h, h + 4 * HALF_HOUR, 500),
        (0, h, h + 5 * HALF_HOUR, 500),  # hour 12: its intensity a forecast, no actual: left out
        # vintage 10:30 has only half of hour 10 (left out) and all of hour 11: 250 vs 200
        (0, h + HALF_HOUR, h + HALF_HOUR, 900),
        (0, h + HALF_HOUR, h + 2 * HALF_HOUR, 250),
        (0, h + HALF_HOUR, h + 3 * HALF_HOUR, 250),  # lead 30 min
        # region 12, period 12:00: vintages 10:00 (80), 11:00 (90), 12:00 (100, the final one)
        (RAL, h, h + 4 * HALF_HOUR, 80),
        (RAL, h + timedelta(hours=1), h + 4 * HALF_HOUR, 90),
        (RAL, h + timedelta(hours=2), h + 4 * HALF_HOUR, 100),
    ]
    with psycopg.connect(database_url) as conn:
        conn.cursor().executemany(
            "INSERT INTO intensity_forecast (region_id, issued_at, period_from, "
            "forecast_gco2eq_per_kwh) VALUES (%s, %s, %s, %s)",
            forecasts,
        )
        conn.cursor().executemany(
            "INSERT INTO carbon_intensity_hourly (timestamp_utc, intensity_gco2eq_per_kwh, "
            "intensity_source, period_count) VALUES (%s, %s, %s, 2)",
            [
                (h, 100, "actual"),
                (h + timedelta(hours=1), 200, "actual"),
                (h + timedelta(hours=2), 300, "forecast"),
            ],
        )
        conn.execute("INSERT INTO forecast_site VALUES ('RAL', 12), ('Harwell', 12)")
        (rows,) = conn.execute(
            "SELECT carbon_refresh_forecast_error(%s, %s)", (h, h + timedelta(hours=3))
        ).fetchone()
        assert rows == 6  # one day, six (region, lead bucket) pairs
        conn.commit()
        got = conn.execute(
            "SELECT area, site, truth, lead_from_hours::float8 AS lead, compared, "
            "mean_absolute_error, bias FROM v_forecast_error ORDER BY area, lead"
        ).fetchall()
    assert got == [
        ("national", None, "actual", 0.0, 1, 2.0, 2.0),
        ("national", None, "actual", 0.5, 1, 50.0, 50.0),
        ("national", None, "actual", 1.0, 2, 15.0, 15.0),  # +20 and +10
        ("national", None, "actual", 2.0, 1, 10.0, -10.0),
        ("regional", "Harwell, RAL", "final forecast", 1.0, 1, 10.0, -10.0),
        ("regional", "Harwell, RAL", "final forecast", 2.0, 1, 20.0, -20.0),
    ]


def test_shifting_bound_on_the_test_fleet(resources, database_url):
    start, end = t("2025-03-03T00:00"), t("2025-03-05T00:00")
    assert materialize_range(resources, start, end).success
    intensity = read_table(
        database_url, "SELECT timestamp_utc, intensity_gco2eq_per_kwh FROM carbon_intensity_hourly"
    )
    greenest = intensity.groupby(intensity["timestamp_utc"].dt.date)[
        "intensity_gco2eq_per_kwh"
    ].min()
    for scope, key in (("ada", None), ("user", "user_id"), ("project", "project_id")):
        facts = read_table(
            database_url,
            f"SELECT {key or 'NULL::bigint'} AS scope_id, timestamp_utc, busy_kwh, busy_gco2eq "
            f"FROM fact_usage_{scope}",
        )
        facts["day"] = facts["timestamp_utc"].dt.date
        days = facts.groupby(["scope_id", "day"], dropna=False)[["busy_kwh", "busy_gco2eq"]].sum()
        days["shifted"] = days["busy_kwh"] * days.index.get_level_values("day").map(greenest)
        want = days.groupby(level="scope_id", dropna=False).sum()
        got = read_table(
            database_url,
            "SELECT scope_id, month, days, greenest_days, busy_gco2eq, shifted_busy_gco2eq, "
            "shifting_saving_gco2eq, shifting_saving_share FROM v_shifting_savings "
            "WHERE scope = %s ORDER BY scope_id",
            (scope,),
        )
        assert len(got) == len(want) > 0
        assert (got["month"] == pd.Timestamp("2025-03-01").date()).all()
        assert (got["greenest_days"] == got["days"]).all()
        for row, (scope_id, sums) in zip(got.itertuples(), want.iterrows(), strict=True):
            assert (row.scope_id is None or pd.isna(row.scope_id)) == pd.isna(scope_id)
            assert row.busy_gco2eq == pytest.approx(sums["busy_gco2eq"], rel=1e-12)
            assert row.shifted_busy_gco2eq == pytest.approx(sums["shifted"], rel=1e-12)
            saving = sums["busy_gco2eq"] - sums["shifted"]
            assert row.shifting_saving_gco2eq == pytest.approx(saving, rel=1e-9, abs=1e-9)
            assert 0 <= row.shifting_saving_gco2eq <= row.busy_gco2eq
    # carbon_reporter's: the same rows for the aggregate scopes when no group is small; with
    # a policy of 3 users, the hours of the one-member group (IDAaaS_SANS: carol) are only
    # ever inside the rest of the platform, never under its name.
    columns = "scope, scope_name, month, days, busy_gco2eq, shifted_busy_gco2eq"
    order = "ORDER BY scope, scope_name"
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE reporting_policy SET min_users = 1")
    analyst = read_table(
        database_url, f"SELECT {columns} FROM v_shifting_savings WHERE scope <> 'user' {order}"
    )
    reporter = as_reporter(
        database_url, f"SELECT {columns} FROM reporting.v_shifting_savings {order}"
    )
    pd.testing.assert_frame_equal(reporter, analyst, check_exact=False, rtol=1e-12)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE reporting_policy SET min_users = 3")
    groups = as_reporter(
        database_url,
        "SELECT scope_name, busy_gco2eq FROM reporting.v_shifting_savings WHERE scope = 'group'",
    ).set_index("scope_name")["busy_gco2eq"]
    sans = analyst.set_index("scope_name").loc["IDAaaS_SANS", "busy_gco2eq"]
    assert "IDAaaS_SANS" not in groups.index and sans > 0
    assert list(groups.index) == ["(rest of the platform)"]
    # A day whose intensity is not stored claims no saving for that day.
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "DELETE FROM carbon_intensity_hourly WHERE timestamp_utc >= %s",
            (t("2025-03-04T00:00"),),
        )
    ada = read_table(
        database_url,
        "SELECT days, greenest_days, busy_gco2eq, shifted_busy_gco2eq FROM v_shifting_savings "
        "WHERE scope = 'ada'",
    ).iloc[0]
    assert (ada["days"], ada["greenest_days"]) == (2, 1)


def test_the_intensity_stage_brings_the_actuals_to_the_forecast_error(database_url):
    """The national error appears when the pipeline later stores the hours' actuals."""
    record = synthetic_periods(ISSUED - timedelta(days=1), ISSUED + timedelta(days=2))
    server = IntensityServer(record, forecast=dip_forecast).start()
    try:
        assert fetch(database_url, server, ISSUED).success
        assert read_table(database_url, "SELECT * FROM v_forecast_error").empty
        start, end = ISSUED, ISSUED + timedelta(hours=3)
        resources = {
            "warehouse": WarehouseResource(database_url=database_url),
            "carbon_intensity_api": CarbonIntensityResource(api_url=server.url, retries=0),
            "sites": SitesResource(),
        }
        assert dg.materialize(
            [carbon_intensity], resources=resources, tags=range_tags(start, end)
        ).success
    finally:
        server.stop()
    actual = expected.hourly_intensity(record)
    got = read_table(
        database_url,
        "SELECT lead_from_hours::float8 AS lead, compared, mean_absolute_error, bias "
        "FROM v_forecast_error WHERE area = 'national' ORDER BY lead",
    )
    # The forecast is 200 for these three hours; the truth is each hour's stored actual.
    errors = [200.0 - actual[pd.Timestamp(start) + pd.Timedelta(hours=k)] for k in range(3)]
    assert got["lead"].tolist() == [0.0, 1.0, 2.0]
    assert got["compared"].tolist() == [1, 1, 1]
    assert got["bias"].tolist() == pytest.approx(errors, rel=1e-12)
    assert got["mean_absolute_error"].tolist() == pytest.approx([abs(e) for e in errors], rel=1e-12)
