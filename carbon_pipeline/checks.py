"""Data quality: the asset checks' names and arithmetic, and the quarantine of host-hours
whose numbers cannot be true."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from carbon_pipeline.energy import FOOTPRINT_METRICS, METRICS, sum_metrics
from carbon_pipeline.resources.prometheus import UNIDENTIFIED
from carbon_pipeline.schemas import within_capacity
from carbon_pipeline.tables import REPORTING_RELEASE, REPORTING_ROLLUP, SCOPE_FACTS, USAGE_ROLLUP

CONSERVATION = "conservation"
DISCLOSURE = "disclosure"
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


# usage_rollup's columns as sums over a day's hourly facts, written independently of the
# migration that maintains them (0013), so that the check compares two computations.
ROLLUP_FROM_FACTS = {
    "hours": "count(*)",
    "estimated_hours": "count(*) FILTER (WHERE intensity_source <> 'actual')",
    "busy_cpu_seconds_total": "sum(busy_cpu_seconds_total)",
    "idle_cpu_seconds_total": "sum(idle_cpu_seconds_total)",
    "busy_kwh": "sum(busy_kwh)",
    "idle_kwh": "sum(idle_kwh)",
    "total_kwh": "sum(busy_kwh) + sum(idle_kwh)",
    "busy_gco2eq": "sum(busy_gco2eq)",
    "idle_gco2eq": "sum(idle_gco2eq)",
    "total_gco2eq": "sum(busy_gco2eq) + sum(idle_gco2eq)",
    "intensity_sum": "sum(intensity_gco2eq_per_kwh)",
    "intensity_hours": "count(intensity_gco2eq_per_kwh)",
    **{m: f"sum({m})" for m in FOOTPRINT_METRICS},
    **{
        f"{m}_hours": f"count({m})"
        for m in ("full_kwh", "embodied_gco2eq", "full_gco2eq", "regional_gco2eq")
    },
    "regional_full_kwh": "sum(CASE WHEN regional_gco2eq IS NOT NULL THEN full_kwh END)",
    "footprint_unknown_hours": "count(*) FILTER (WHERE full_gco2eq IS NULL "
    "OR coalesce(footprint_unknown_hosts, 1) > 0)",
    "footprint_unknown_host_hours": "sum(footprint_unknown_hosts)",
    "regional_unknown_hours": "count(*) FILTER (WHERE regional_gco2eq IS NULL "
    "OR coalesce(regional_unknown_hosts, 1) > 0)",
    "known_hours": "count(*) FILTER (WHERE footprint_unknown_hosts = 0)",
    "known_cpu_gco2eq": "sum(busy_gco2eq) FILTER (WHERE footprint_unknown_hosts = 0) "
    "+ sum(idle_gco2eq) FILTER (WHERE footprint_unknown_hosts = 0)",
    **{
        f"known_{m}": f"sum({m}) FILTER (WHERE footprint_unknown_hosts = 0)"
        for m in ("memory_gco2eq", "overhead_gco2eq", "embodied_gco2eq", "full_gco2eq")
    },
}


def _gap(ours: str, theirs: str) -> str:
    """SQL: the relative difference of two values; infinite when only one is unknown."""
    return (
        f"CASE WHEN (({ours}) IS NULL) <> (({theirs}) IS NULL) THEN 'Infinity'::float8 "
        f"ELSE coalesce(abs(({ours}) - ({theirs})) / greatest(abs({theirs}), 1e-9), 0) END"
    )


# The reporting rollup's columns besides usage_rollup's: over the hours that show numbers.
SHOWN_FROM_HOURS = {
    "all_columns_hours": "count(*) FILTER (WHERE all_columns)",
    "shown_hours": "count(busy_kwh)",
    "shown_footprint_unknown_hours": "count(*) FILTER (WHERE busy_kwh IS NOT NULL AND "
    "(full_gco2eq IS NULL OR coalesce(footprint_unknown_hosts, 1) > 0))",
    "shown_regional_unknown_hours": "count(*) FILTER (WHERE busy_kwh IS NOT NULL AND "
    "(regional_gco2eq IS NULL OR coalesce(regional_unknown_hosts, 1) > 0))",
}


def rollup_gaps(
    conn,
    start: datetime,
    end: datetime,
    tables: tuple[str, ...] = (USAGE_ROLLUP, REPORTING_ROLLUP),
) -> float:
    """Largest relative difference, over the periods touching [start, end), scopes and
    columns, between a rollup and what it sums: usage_rollup's day rows against each scope's
    fact table, reporting_rollup's against reporting_release; in both, each month row
    against its days, each year row against its months, every lifetime row against its
    years."""
    in_days = (
        "WHERE timestamp_utc >= %(first_day)s::timestamp AT TIME ZONE 'UTC' "
        "AND timestamp_utc < %(end_day)s::timestamp AT TIME ZONE 'UTC'"
    )

    def hours_per_day(columns: dict[str, str], source: str, scope: str) -> str:
        return (
            f"SELECT {scope} AS scope, (timestamp_utc AT TIME ZONE 'UTC')::date AS day, "
            + ", ".join(f"{expr} AS {column}" for column, expr in columns.items())
            + f" FROM {source} {in_days} GROUP BY 1, 2"
        )

    facts = " UNION ALL ".join(
        hours_per_day(ROLLUP_FROM_FACTS, f"public.{spec.name}", f"'{scope}'::text")
        for scope, spec in SCOPE_FACTS.items()
    )
    shown = ROLLUP_FROM_FACTS | SHOWN_FROM_HOURS
    reporting = hours_per_day(shown, f"public.{REPORTING_RELEASE}", "scope")
    first_day, end_day = rollup_days_of(start, end)
    end_month = _next_month(end_day - timedelta(days=1))
    params = {
        "first_day": first_day,
        "end_day": end_day,
        "first_month": first_day.replace(day=1),
        "end_month": end_month,
        "first_year": first_day.replace(month=1, day=1),
        "end_year": date(end_month.year + (end_month.month > 1), 1, 1),
    }
    sources = {
        USAGE_ROLLUP: (facts, list(ROLLUP_FROM_FACTS)),
        REPORTING_ROLLUP: (reporting, list(shown)),
    }
    query = " UNION ALL ".join(
        _rollup_gaps_sql(f"public.{table}", *sources[table]) for table in tables
    )
    worst = conn.execute(f"SELECT max(g) FROM ({query}) gaps", params).fetchone()[0]
    return float(worst or 0.0)


def _rollup_gaps_sql(rollup: str, hours_per_day: str, columns: list[str]) -> str:
    """SQL: the gaps of one rollup table (a column g): its days summed per scope against
    `hours_per_day` (scope, day, columns), and each coarser grain against the finer."""
    sums = ", ".join(f"sum({c}) AS {c}" for c in columns)

    def gaps(ours: str, theirs: str) -> str:
        return "greatest(" + ", ".join(_gap(f"{ours}.{c}", f"{theirs}.{c}") for c in columns) + ")"

    def coarser(grain: str, finer: str, first: str, end: str) -> str:
        """The gaps between a grain's rows in [first, end) and their finer rows' sums
        (lifetime: every row, against all its years)."""
        if grain == "lifetime":
            within, period, ours = "", "NULL::date", "NULL::date"
        else:
            within = f" AND period_start >= %({first})s AND period_start < %({end})s"
            period = f"date_trunc('{grain}', period_start)::date"
            ours = f"date_trunc('{grain}', c.period_start)::date"
        return f"""
          SELECT {gaps("c", "s")}
          FROM (SELECT * FROM {rollup} WHERE grain = '{grain}'{within}) c
          FULL JOIN (
            SELECT scope, entity_id, {period} AS period, {sums} FROM {rollup}
            WHERE grain = '{finer}'{within} GROUP BY 1, 2, 3
          ) s ON c.scope = s.scope AND c.entity_id = s.entity_id
             AND {ours} IS NOT DISTINCT FROM s.period
        """

    days = (
        f"SELECT scope, period_start AS day, {sums} FROM {rollup} WHERE grain = 'day' "
        "AND period_start >= %(first_day)s AND period_start < %(end_day)s GROUP BY 1, 2"
    )
    return f"""
        SELECT {gaps("r", "f")} AS g
        FROM ({days}) r FULL JOIN ({hours_per_day}) f ON r.scope = f.scope AND r.day = f.day
        UNION ALL {coarser("month", "day", "first_month", "end_month")}
        UNION ALL {coarser("year", "month", "first_year", "end_year")}
        UNION ALL {coarser("lifetime", "year", "", "")}
    """


def rollup_days_of(start: datetime, end: datetime) -> tuple[date, date]:
    """[first, end) of the UTC days touching [start, end)."""
    first = start.astimezone(UTC).date()
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    return first, last + timedelta(days=1)


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


RELEASE_PROBLEMS = """
WITH released AS (
  SELECT * FROM public.reporting_release
  WHERE timestamp_utc >= %(start)s AND timestamp_utc < %(end)s
),
scopes AS (
  SELECT timestamp_utc, scope, sum(busy_kwh) AS busy_kwh, sum(idle_kwh) AS idle_kwh
  FROM released WHERE scope <> 'ada' GROUP BY 1, 2
)
SELECT
  (SELECT count(*) FROM released, public.reporting_policy p
   WHERE p.min_users > 1 AND coalesce(released.users, 0) < p.min_users),
  (SELECT count(*) FROM released a
   WHERE a.scope = 'ada'
     AND (SELECT count(*) FROM scopes s WHERE s.timestamp_utc = a.timestamp_utc) <> 3),
  (SELECT max(greatest(abs(s.busy_kwh - a.busy_kwh) / greatest(abs(a.busy_kwh), 1e-9),
                       abs(s.idle_kwh - a.idle_kwh) / greatest(abs(a.idle_kwh), 1e-9)))
   FROM scopes s JOIN released a ON a.timestamp_utc = s.timestamp_utc AND a.scope = 'ada')
"""


def release_problems(conn, start: datetime, end: datetime) -> dict[str, float]:
    """What would break carbon_reporter's rule (migration 0016) in the release of [start, end):
    rows of fewer people than the policy's minimum, hours of the platform without rows in
    every scope, and the largest relative gap between a scope's rows of an hour and the
    platform's row (each scope's rows are a partition of it)."""
    below, incomplete, gap = conn.execute(RELEASE_PROBLEMS, {"start": start, "end": end}).fetchone()
    return {
        "rows_below_min_users": int(below),
        "hours_without_every_scope": int(incomplete),
        "largest_relative_gap": float(gap or 0.0),
    }
