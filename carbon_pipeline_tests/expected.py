"""Expected numbers computed straight from the test fleet's specification, by the simplest
loops possible and without the pipeline's code: the oracle the tests compare against."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

BUSY_W, IDLE_W = 12.0, 1.0
# The full footprint's defaults (docs/methodology.md).
MEMORY_W_PER_GIB, EMBODIED_KG, LIFETIME_YEARS, SERVER_THREADS = 0.3725, 1000.0, 4.0, 64
FOOTPRINT = [
    "memory_kwh",
    "overhead_kwh",
    "full_kwh",
    "memory_gco2eq",
    "overhead_gco2eq",
    "embodied_gco2eq",
    "full_gco2eq",
    "regional_gco2eq",
]
METRICS = [
    "busy_cpu_seconds_total",
    "idle_cpu_seconds_total",
    "busy_kwh",
    "idle_kwh",
    "busy_gco2eq",
    "idle_gco2eq",
]


def hourly_intensity(periods: pd.DataFrame) -> dict[pd.Timestamp, float]:
    """{hour start: mean of its two periods' actuals (the synthetic record has every actual)}."""
    result: dict[pd.Timestamp, list[float]] = {}
    for start, actual in zip(periods["period_from"], periods["actual"], strict=True):
        hour = pd.Timestamp(start).floor("h")
        result.setdefault(hour, []).append(float(actual))
    return {hour: sum(values) / len(values) for hour, values in result.items()}


def instance_usage(truth: pd.DataFrame, intensity: dict) -> pd.DataFrame:
    rows = []
    for r in truth.itertuples(index=False):
        ci = intensity[pd.Timestamp(r.timestamp_utc)]
        busy_kwh = BUSY_W * r.busy_cpu_seconds_total / 3.6e6
        idle_kwh = IDLE_W * r.idle_cpu_seconds_total / 3.6e6
        rows.append(
            {
                "timestamp_utc": pd.Timestamp(r.timestamp_utc),
                "hostname": r.hostname,
                "cloud_project_name": r.cloud_project_name,
                "machine_name": r.machine_name,
                "busy_cpu_seconds_total": r.busy_cpu_seconds_total,
                "idle_cpu_seconds_total": r.idle_cpu_seconds_total,
                "busy_kwh": busy_kwh,
                "idle_kwh": idle_kwh,
                "busy_gco2eq": busy_kwh * ci,
                "idle_gco2eq": idle_kwh * ci,
                "intensity_gco2eq_per_kwh": ci,
            }
        )
    return pd.DataFrame(rows)


def _normalise(hostname: str) -> str:
    name = hostname.split(":")[0]
    if name.startswith("host-"):
        return ".".join(name.split(".")[0].removeprefix("host-").split("-"))
    return name


def shares(workspaces: list[dict], hostname: str, hour: pd.Timestamp) -> dict[str, float]:
    """{user: fraction of the hour each workspace on hostname held it} (no overlaps in the
    test fleet), plus 'unattributed' for the rest."""
    end = hour + timedelta(hours=1)
    result: dict[str, float] = {}
    for ws in workspaces:
        if _normalise(ws["hostname"]) != hostname:
            continue
        held_from = max(ws["created_time"], ws.get("acquired_time") or ws["created_time"])
        held_until = ws.get("deleted_time") or end
        seconds = (min(held_until, end) - max(held_from, hour)).total_seconds()
        if seconds > 0:
            owner = ws.get("owner") or "unattributed"
            result[owner] = result.get(owner, 0.0) + seconds / 3600
    rest = 1.0 - sum(result.values())
    if rest > 0:
        result["unattributed"] = result.get("unattributed", 0.0) + rest
    return result


def user_usage(host: pd.DataFrame, workspaces: list[dict]) -> pd.DataFrame:
    rows = []
    for r in host.itertuples(index=False):
        for user, share in shares(workspaces, r.hostname, r.timestamp_utc).items():
            rows.append(
                {
                    "timestamp_utc": r.timestamp_utc,
                    "ext_user_id": user,
                    **{m: getattr(r, m) * share for m in METRICS},
                }
            )
    return (
        pd.DataFrame(rows).groupby(["timestamp_utc", "ext_user_id"], as_index=False)[METRICS].sum()
    )


def workspace_usage(host: pd.DataFrame, workspaces: list[dict]) -> dict[int, dict[str, float]]:
    """{index of the workspace in the spec: metric totals over the loaded host-hours}."""
    totals = {n: dict.fromkeys(METRICS, 0.0) for n in range(len(workspaces))}
    for r in host.itertuples(index=False):
        end = r.timestamp_utc + timedelta(hours=1)
        for n, ws in enumerate(workspaces):
            if _normalise(ws["hostname"]) != r.hostname:
                continue
            held_from = max(ws["created_time"], ws.get("acquired_time") or ws["created_time"])
            held_until = ws.get("deleted_time") or end
            seconds = (min(held_until, end) - max(held_from, r.timestamp_utc)).total_seconds()
            if seconds > 0:
                for m in METRICS:
                    totals[n][m] += getattr(r, m) * seconds / 3600
    return totals


def regional_intensity(periods: pd.DataFrame, region_id: int) -> dict[pd.Timestamp, float]:
    """{hour start: mean of its two periods' regional forecasts} as the test server gives them."""
    from carbon_pipeline.demo.intensity_server import regional_forecast

    result: dict[pd.Timestamp, list[float]] = {}
    for start, forecast in zip(periods["period_from"], periods["forecast"], strict=True):
        result.setdefault(pd.Timestamp(start).floor("h"), []).append(
            regional_forecast(forecast, region_id)
        )
    return {hour: sum(values) / len(values) for hour, values in result.items()}


def full_footprint(
    host: pd.DataFrame, truth: pd.DataFrame, sites: dict[str, tuple[int, float]], periods
) -> pd.DataFrame:
    """host (from instance_usage) with the full footprint's columns, by the formulas written out
    one host-hour at a time; `sites`: {cloud_project_name: (region_id, pue)}."""
    memory = {
        (pd.Timestamp(r.timestamp_utc), r.hostname): (r.memory_gib, r.cpu_count)
        for r in truth.itertuples(index=False)
    }
    regional = {region: regional_intensity(periods, region) for region, _ in sites.values()}
    rows = []
    for r in host.itertuples(index=False):
        gib, cpus = memory[(r.timestamp_utc, r.hostname)]
        region, pue = sites[r.cloud_project_name]
        up = min(1.0, (r.busy_cpu_seconds_total + r.idle_cpu_seconds_total) / (cpus * 3600))
        memory_kwh = gib * MEMORY_W_PER_GIB * up / 1000
        it_kwh = r.busy_kwh + r.idle_kwh + memory_kwh
        overhead_kwh = it_kwh * (pue - 1)
        full_kwh = it_kwh + overhead_kwh
        embodied = (
            EMBODIED_KG * 1000 * min(1.0, cpus / SERVER_THREADS) * up / (LIFETIME_YEARS * 8766)
        )
        national = r.intensity_gco2eq_per_kwh
        rows.append(
            {
                "memory_kwh": memory_kwh,
                "overhead_kwh": overhead_kwh,
                "full_kwh": full_kwh,
                "memory_gco2eq": memory_kwh * national,
                "overhead_gco2eq": overhead_kwh * national,
                "embodied_gco2eq": embodied,
                "full_gco2eq": r.busy_gco2eq
                + r.idle_gco2eq
                + (memory_kwh + overhead_kwh) * national
                + embodied,
                "regional_gco2eq": full_kwh * regional[region][r.timestamp_utc],
            }
        )
    return pd.concat([host.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
