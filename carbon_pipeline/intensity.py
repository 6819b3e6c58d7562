"""Hourly carbon intensity from the API's half-hour periods, with its provenance."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from carbon_pipeline.times import hour_range, utc_ns

# Provenance of an hour's intensity, from best to worst: the hour takes the worst of its periods.
SOURCES = ("actual", "forecast", "fallback")
# Highest hourly GB intensity on record is about 700 gCO2eq/kWh; beyond this is an error.
MAX_PLAUSIBLE_INTENSITY = 1500.0
INTENSITY_COLUMNS = [
    "timestamp_utc",
    "intensity_gco2eq_per_kwh",
    "intensity_source",
    "forecast_gco2eq_per_kwh",
    "actual_gco2eq_per_kwh",
    "period_count",
    "glitch_periods",
]


REGIONAL_INTENSITY_COLUMNS = [
    "timestamp_utc",
    "region_id",
    "intensity_gco2eq_per_kwh",
    "intensity_source",
    "forecast_gco2eq_per_kwh",
    "period_count",
]


class MissingIntensityError(RuntimeError):
    """Hours of a window have no intensity and the policy is to fail."""


def hourly_intensity(
    periods: pd.DataFrame,
    start: datetime,
    end: datetime,
    *,
    on_missing: str = "fallback",
    fallback_gco2eq_per_kwh: float = 200.0,
    glitch_min_forecast: float = 10.0,
) -> pd.DataFrame:
    """One row per hour of [start, end).

    A period's value is its `actual`, else its `forecast`. An actual that cannot be true is
    rejected and the forecast used instead: one of 0 while the forecast is at least
    `glitch_min_forecast` (a known API glitch), a negative one, one above
    MAX_PLAUSIBLE_INTENSITY or one that is not finite; a forecast that cannot be true is not
    used either. An hour is the mean of its usable periods and is marked `actual` only if
    every one was (`period_count` says how many it had: an hour with one of its two is
    re-checked by the sensor). An hour with no usable period gets the fallback (marked
    `fallback`) or, with on_missing="fail", raises MissingIntensityError naming the hours.
    `glitch_periods` counts rejected actuals.
    """
    if on_missing not in ("fallback", "fail"):
        raise ValueError(f"on_missing must be 'fallback' or 'fail', got {on_missing!r}")
    p = periods
    forecast_ok = _plausible(p["forecast"])
    zero_glitch = (p["actual"] == 0) & (p["forecast"] >= glitch_min_forecast)
    glitch = p["actual"].notna() & (~_plausible(p["actual"]) | zero_glitch)
    use_actual = p["actual"].notna() & ~glitch
    value = np.where(use_actual, p["actual"], p["forecast"].where(forecast_ok))
    frame = pd.DataFrame(
        {
            "hour": utc_ns(p["period_from"]).dt.floor("h"),
            "value": value,
            "rank": np.where(use_actual, 0, 1),
            "forecast": p["forecast"].where(forecast_ok),
            "actual": p["actual"].where(use_actual),
            "glitch": glitch.astype("int64"),
        }
    )
    frame = frame[frame["value"].notna()]
    hours = (
        frame.groupby("hour")
        .agg(
            intensity_gco2eq_per_kwh=("value", "mean"),
            rank=("rank", "max"),
            forecast_gco2eq_per_kwh=("forecast", "mean"),
            actual_gco2eq_per_kwh=("actual", "mean"),
            period_count=("value", "size"),
            glitch_periods=("glitch", "sum"),
        )
        .reindex(hour_range(start, end))
    )
    missing = hours["intensity_gco2eq_per_kwh"].isna()
    if missing.any():
        if on_missing == "fail":
            stamps = hours.index[missing]
            raise MissingIntensityError(
                f"no carbon intensity for {missing.sum()} hour(s) between {stamps[0]:%Y-%m-%dT%H:%MZ} "
                f"and {stamps[-1]:%Y-%m-%dT%H:%MZ}; set the missing-intensity policy to "
                "'fallback' to use the documented fallback instead"
            )
        hours.loc[missing, "intensity_gco2eq_per_kwh"] = fallback_gco2eq_per_kwh
        hours.loc[missing, "rank"] = 2
        hours.loc[missing, ["period_count", "glitch_periods"]] = 0
    hours["intensity_source"] = np.asarray(SOURCES, dtype=object)[hours["rank"].astype(int)]
    hours[["period_count", "glitch_periods"]] = hours[["period_count", "glitch_periods"]].astype(
        "int64"
    )
    hours.index.name = "timestamp_utc"
    return hours.reset_index()[INTENSITY_COLUMNS]


def _plausible(values: pd.Series) -> pd.Series:
    """Finite and within [0, MAX_PLAUSIBLE_INTENSITY] (False for missing values)."""
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    return np.isfinite(numbers) & (numbers >= 0) & (numbers <= MAX_PLAUSIBLE_INTENSITY)
