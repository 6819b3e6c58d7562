"""Energy and carbon per host-hour: kWh = W/core x CPU-seconds / 3.6e6; gCO2eq = kWh x intensity."""

from __future__ import annotations

import pandas as pd

JOULES_PER_KWH = 3.6e6
METRICS = [
    "busy_cpu_seconds_total",
    "idle_cpu_seconds_total",
    "busy_kwh",
    "idle_kwh",
    "busy_gco2eq",
    "idle_gco2eq",
]
HOST_USAGE_COLUMNS = [
    "timestamp_utc",
    "hostname",
    "cloud_project_name",
    "machine_name",
    "cpu_count",
    *METRICS,
    "intensity_gco2eq_per_kwh",
    "intensity_source",
    "busy_watts_per_core",
    "idle_watts_per_core",
]


class MissingInputError(RuntimeError):
    """An upstream stage has not produced the rows this stage needs."""


def host_usage(
    host_cpu: pd.DataFrame, intensity: pd.DataFrame, watts: pd.DataFrame
) -> pd.DataFrame:
    """kWh and gCO2eq, busy and idle, for every host-hour of host_cpu.

    `watts` holds busy_watts_per_core and idle_watts_per_core aligned with host_cpu's rows;
    `intensity` one row per hour."""
    usage = host_cpu.join(watts).merge(
        intensity[["timestamp_utc", "intensity_gco2eq_per_kwh", "intensity_source"]],
        on="timestamp_utc",
        how="left",
        validate="many_to_one",
    )
    missing = usage["intensity_gco2eq_per_kwh"].isna()
    if missing.any():
        hours = usage.loc[missing, "timestamp_utc"].drop_duplicates().sort_values()
        raise MissingInputError(
            f"no carbon intensity stored for {len(hours)} hour(s) from "
            f"{hours.iloc[0]:%Y-%m-%dT%H:%MZ} to {hours.iloc[-1]:%Y-%m-%dT%H:%MZ}: "
            "materialise carbon_intensity for them first"
        )
    usage["busy_kwh"] = (
        usage["busy_watts_per_core"] * usage["busy_cpu_seconds_total"] / JOULES_PER_KWH
    )
    usage["idle_kwh"] = (
        usage["idle_watts_per_core"] * usage["idle_cpu_seconds_total"] / JOULES_PER_KWH
    )
    usage["busy_gco2eq"] = usage["busy_kwh"] * usage["intensity_gco2eq_per_kwh"]
    usage["idle_gco2eq"] = usage["idle_kwh"] * usage["intensity_gco2eq_per_kwh"]
    return usage[HOST_USAGE_COLUMNS]
