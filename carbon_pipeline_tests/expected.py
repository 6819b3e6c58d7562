"""Expected numbers computed straight from the test fleet's specification, by the simplest
loops possible and without the pipeline's code: the oracle the tests compare against."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

BUSY_W, IDLE_W = 12.0, 1.0
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


def host_usage(truth: pd.DataFrame, intensity: dict) -> pd.DataFrame:
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
