"""Energy and carbon per host-hour.

The seed's footprint, unchanged: CPU only, at the IT level, at the national intensity:
    busy_kwh = busy W/core x busy CPU-seconds / 3.6e6, idle_kwh likewise,
    busy_gco2eq = busy_kwh x national intensity, idle_gco2eq likewise.
The full footprint beside it (docs/methodology.md gives the sources of every factor):
    up            = the share of the hour the host reported: (busy + idle) s / (cpus x 3600)
    memory_kwh    = memory GiB x W/GiB x up / 1000
    overhead_kwh  = (busy + idle + memory kWh) x (PUE - 1)
    full_kwh      = busy + idle + memory + overhead kWh
    memory_gco2eq, overhead_gco2eq = their kWh x national intensity
    embodied_gco2eq = server kgCO2e x 1000 x min(1, cpus / server threads) x up / lifetime h
    full_gco2eq   = busy + idle + memory + overhead + embodied gCO2eq (national grid)
    regional_gco2eq = full_kwh x the site's regional intensity (location-based, operational)
A host-hour whose memory is unknown has an unknown full footprint (NULL, never 0); one without
a stored regional intensity (history from before migration 0008) an unknown regional_gco2eq.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

JOULES_PER_KWH = 3.6e6
HOURS_PER_YEAR = 8766.0  # 365.25 days
SEED_METRICS = [
    "busy_cpu_seconds_total",
    "idle_cpu_seconds_total",
    "busy_kwh",
    "idle_kwh",
    "busy_gco2eq",
    "idle_gco2eq",
]
FOOTPRINT_METRICS = [
    "memory_kwh",
    "overhead_kwh",
    "full_kwh",
    "memory_gco2eq",
    "overhead_gco2eq",
    "embodied_gco2eq",
    "full_gco2eq",
    "regional_gco2eq",
]
# Everything a scope sums: the seed's metrics, then the full footprint's.
METRICS = SEED_METRICS + FOOTPRINT_METRICS
# Beside a scope's sums, how many of its host-hours had each part of the footprint unknown:
# {count column: the metric whose NULL it counts}.
UNKNOWN_COUNTS = {
    "footprint_unknown_hosts": "full_gco2eq",
    "regional_unknown_hosts": "regional_gco2eq",
}
# Summed over the host-hours whose full footprint is known, so that they add up to full_*.
_FULL_FOOTPRINT = [m for m in FOOTPRINT_METRICS if m != "regional_gco2eq"]
FOOTPRINT_FACTORS = [
    "memory_gib",
    "memory_watts_per_gib",
    "pue",
    "embodied_kgco2e",
    "lifetime_years",
    "server_threads",
    "site",
    "region_id",
    "regional_intensity_gco2eq_per_kwh",
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
    *FOOTPRINT_FACTORS,
]


class MissingInputError(RuntimeError):
    """An upstream stage has not produced the rows this stage needs."""


def _require(usage: pd.DataFrame, column: str, what: str) -> None:
    missing = usage[column].isna()
    if missing.any():
        hours = usage.loc[missing, "timestamp_utc"].drop_duplicates().sort_values()
        raise MissingInputError(
            f"no {what} stored for {len(hours)} hour(s) from "
            f"{hours.iloc[0]:%Y-%m-%dT%H:%MZ} to {hours.iloc[-1]:%Y-%m-%dT%H:%MZ}: "
            "materialise carbon_intensity for them first"
        )


def instance_usage(
    host_cpu: pd.DataFrame,
    intensity: pd.DataFrame,
    model: pd.DataFrame,
    regional: pd.DataFrame,
) -> pd.DataFrame:
    """The seed's and the full footprint of every host-hour of host_cpu.

    `model` holds, aligned with host_cpu's rows, the power model (busy_watts_per_core,
    idle_watts_per_core, memory_watts_per_gib, embodied_kgco2e, lifetime_years,
    server_threads) and the host's site (site, region_id, pue); `intensity` the national
    intensity, one row per hour; `regional` (timestamp_utc, region_id,
    regional_intensity_gco2eq_per_kwh), one row per hour and region."""
    usage = host_cpu.join(model).merge(
        intensity[["timestamp_utc", "intensity_gco2eq_per_kwh", "intensity_source"]],
        on="timestamp_utc",
        how="left",
        validate="many_to_one",
    )
    usage = usage.merge(
        regional[["timestamp_utc", "region_id", "regional_intensity_gco2eq_per_kwh"]],
        on=["timestamp_utc", "region_id"],
        how="left",
        validate="many_to_one",
    )
    _require(usage, "intensity_gco2eq_per_kwh", "carbon intensity")
    busy, idle = usage["busy_cpu_seconds_total"], usage["idle_cpu_seconds_total"]
    usage["busy_kwh"] = usage["busy_watts_per_core"] * busy / JOULES_PER_KWH
    usage["idle_kwh"] = usage["idle_watts_per_core"] * idle / JOULES_PER_KWH
    national = usage["intensity_gco2eq_per_kwh"]
    usage["busy_gco2eq"] = usage["busy_kwh"] * national
    usage["idle_gco2eq"] = usage["idle_kwh"] * national
    capacity = usage["cpu_count"].astype(float) * 3600.0
    up = ((busy + idle) / capacity.where(capacity > 0)).clip(upper=1.0).fillna(0.0)
    usage["memory_kwh"] = usage["memory_gib"] * usage["memory_watts_per_gib"] * up / 1000.0
    it_kwh = usage["busy_kwh"] + usage["idle_kwh"] + usage["memory_kwh"]
    usage["overhead_kwh"] = it_kwh * (usage["pue"] - 1.0)
    usage["full_kwh"] = it_kwh + usage["overhead_kwh"]
    usage["memory_gco2eq"] = usage["memory_kwh"] * national
    usage["overhead_gco2eq"] = usage["overhead_kwh"] * national
    share = (usage["cpu_count"] / usage["server_threads"]).clip(upper=1.0)
    usage["embodied_gco2eq"] = (
        usage["embodied_kgco2e"] * 1000.0 * share * up / (usage["lifetime_years"] * HOURS_PER_YEAR)
    )
    usage["full_gco2eq"] = (
        usage["busy_gco2eq"]
        + usage["idle_gco2eq"]
        + usage["memory_gco2eq"]
        + usage["overhead_gco2eq"]
        + usage["embodied_gco2eq"]
    )
    usage["regional_gco2eq"] = usage["full_kwh"] * usage["regional_intensity_gco2eq_per_kwh"]
    return usage[HOST_USAGE_COLUMNS]


def sum_metrics(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Every metric summed per key, with UNKNOWN_COUNTS. A footprint metric sums the
    host-hours that know it (the full footprint's parts over the host-hours whose full
    footprint is known, so that they add up) and is NULL (NaN) only where none does; the
    counts say how many did not: a missing value is never counted as 0. Summing sums (a
    frame that has the count columns already) adds their counts."""
    values = frame[[*keys, *METRICS]].copy()
    values.loc[frame["full_gco2eq"].isna().to_numpy(), _FULL_FOOTPRINT] = np.nan
    for count, metric in UNKNOWN_COUNTS.items():
        values[count] = frame[count] if count in frame else frame[metric].isna().astype("int64")
    grouped = values.groupby(keys, as_index=False, sort=True)
    sums = grouped[[*SEED_METRICS, *UNKNOWN_COUNTS]].sum()
    sums[FOOTPRINT_METRICS] = (
        grouped[FOOTPRINT_METRICS].sum(min_count=1)[FOOTPRINT_METRICS].to_numpy()
    )
    return sums[[*keys, *METRICS, *UNKNOWN_COUNTS]]
