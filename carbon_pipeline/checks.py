"""Data quality: the asset checks' names and arithmetic, and the quarantine of host-hours
whose numbers cannot be true."""

from __future__ import annotations

import numpy as np
import pandas as pd

from carbon_pipeline.energy import METRICS, sum_metrics
from carbon_pipeline.resources.prometheus import UNIDENTIFIED
from carbon_pipeline.schemas import within_capacity

CONSERVATION = "conservation"
COMPLETENESS = "completeness"
COVERAGE = "coverage"
FRESHNESS = "freshness"
INTENSITY_PROVENANCE = "intensity_provenance"


def conservation_gaps(facts: dict[str, pd.DataFrame]) -> float:
    """Largest relative difference, over hours, metrics and scopes, between a scope's sum
    and ada's: 0 when every hour's usage is counted exactly once in every scope. A metric
    unknown (NULL) in ada's hour must be unknown in every scope's sum of that hour too."""
    ada = facts["ada"].set_index("timestamp_utc")[METRICS]
    worst = 0.0
    for scope, frame in facts.items():
        if scope == "ada":
            continue
        if not frame["timestamp_utc"].isin(ada.index).all():
            return float("inf")  # usage in an hour the platform total does not have
        summed = sum_metrics(frame, ["timestamp_utc"]).set_index("timestamp_utc")[METRICS]
        summed = summed.reindex(ada.index, fill_value=0.0)
        unknown_here, unknown_in_ada = summed.isna().to_numpy(), ada.isna().to_numpy()
        if (unknown_here != unknown_in_ada).any():
            return float("inf")
        gap = (summed - ada).abs() / ada.abs().clip(lower=1e-9)
        worst = max(worst, float(np.nan_to_num(gap.to_numpy(), nan=0.0).max(initial=0.0)))
    return worst


def split_implausible(host_cpu: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(plausible rows, rejected rows with a `reason`). A host-hour is rejected when its CPU
    seconds are not finite, negative, or more than its cpus can spend in an hour (with the
    tolerance for Prometheus' extrapolation at the edges of a series)."""
    busy = host_cpu["busy_cpu_seconds_total"].to_numpy(dtype=float)
    idle = host_cpu["idle_cpu_seconds_total"].to_numpy(dtype=float)
    reason = np.full(len(host_cpu), "", dtype=object)
    reason[~within_capacity(host_cpu).to_numpy()] = (
        "busy + idle CPU seconds exceed cpu_count x 3600"
    )
    reason[(busy < 0) | (idle < 0)] = "negative CPU seconds"
    reason[~np.isfinite(busy) | ~np.isfinite(idle)] = "CPU seconds not finite (NaN or Inf)"
    reason[(host_cpu["hostname"] == UNIDENTIFIED).to_numpy()] = (
        "series without a host or instance label: no host to count it for"
    )
    rejected = reason != ""
    return (
        host_cpu[~rejected].reset_index(drop=True),
        host_cpu[rejected].assign(reason=reason[rejected]).reset_index(drop=True),
    )


def describe_rejections(rejected: pd.DataFrame, limit: int = 5) -> str:
    """A short account of rejected host-hours for logs and check metadata."""
    examples = [
        f"{r.hostname} at {r.timestamp_utc:%Y-%m-%dT%H:%MZ}: {r.reason}"
        for r in rejected.head(limit).itertuples()
    ]
    more = f" and {len(rejected) - limit} more" if len(rejected) > limit else ""
    return "; ".join(examples) + more


def describe_gaps(gaps: pd.DataFrame, limit: int = 5) -> str:
    """A short account of gaps for logs and check metadata."""
    hosts = gaps[gaps["hostname"] != "*"]
    hours = gaps[gaps["hostname"] == "*"]
    parts = []
    if len(hosts):
        examples = "; ".join(
            f"{r.hostname} at {r.timestamp_utc:%Y-%m-%dT%H:%MZ}: {r.reason}"
            for r in hosts.head(limit).itertuples()
        )
        parts.append(
            f"{len(hosts)} host-hour(s) with no data although the host was up ({examples})"
        )
    if len(hours):
        examples = "; ".join(
            f"{r.timestamp_utc:%Y-%m-%dT%H:%MZ}: {r.reason}" for r in hours.head(limit).itertuples()
        )
        parts.append(f"{len(hours)} hour(s) with no or partial data ({examples})")
    return "; ".join(parts)
