"""The warehouse tables the pipeline writes, column by column in COPY order."""

from __future__ import annotations

from dataclasses import dataclass

from carbon_pipeline.energy import METRICS, UNKNOWN_COUNTS


@dataclass(frozen=True)
class TableSpec:
    """A table the pipeline writes: its name and (column, kind) pairs in COPY order; kinds
    are float8, int8, int4, timestamptz and text."""

    name: str
    columns: tuple[tuple[str, str], ...]

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]


_METRIC_COLUMNS = tuple((m, "float8") for m in METRICS)
_UNKNOWN_COLUMNS = tuple((c, "int4") for c in UNKNOWN_COUNTS)
_INTENSITY_COLUMNS = (("intensity_gco2eq_per_kwh", "float8"), ("intensity_source", "text"))

CARBON_INTENSITY_HOURLY = TableSpec(
    "carbon_intensity_hourly",
    (
        ("timestamp_utc", "timestamptz"),
        ("intensity_gco2eq_per_kwh", "float8"),
        ("intensity_source", "text"),
        ("forecast_gco2eq_per_kwh", "float8"),
        ("actual_gco2eq_per_kwh", "float8"),
        ("period_count", "int4"),
        ("glitch_periods", "int4"),
    ),
)

CARBON_INTENSITY_REGIONAL_HOURLY = TableSpec(
    "carbon_intensity_regional_hourly",
    (
        ("timestamp_utc", "timestamptz"),
        ("region_id", "int4"),
        ("intensity_gco2eq_per_kwh", "float8"),
        ("intensity_source", "text"),
        ("forecast_gco2eq_per_kwh", "float8"),
        ("period_count", "int4"),
    ),
)

HOST_CPU_HOURLY = TableSpec(
    "host_cpu_hourly",
    (
        ("timestamp_utc", "timestamptz"),
        ("hostname", "text"),
        ("cloud_project_name", "text"),
        ("machine_name", "text"),
        ("cpu_count", "int4"),
        ("busy_cpu_seconds_total", "float8"),
        ("idle_cpu_seconds_total", "float8"),
        ("memory_gib", "float8"),
    ),
)

HOST_CPU_REJECTED = TableSpec(
    "host_cpu_rejected",
    (
        *HOST_CPU_HOURLY.columns,
        ("reason", "text"),
    ),
)

HOST_CPU_GAPS = TableSpec(
    "host_cpu_gaps",
    (
        ("timestamp_utc", "timestamptz"),
        ("hostname", "text"),
        ("cloud_project_name", "text"),
        ("machine_name", "text"),
        ("reason", "text"),
    ),
)

FACT_USAGE_INSTANCE = TableSpec(
    "fact_usage_instance",
    (
        ("instance_id", "int8"),
        ("project_id", "int8"),
        ("machine_id", "int8"),
        ("group_id", "int8"),
        ("timestamp_utc", "timestamptz"),
        ("cpu_count", "int4"),
        *_METRIC_COLUMNS,
        *_INTENSITY_COLUMNS,
        ("busy_watts_per_core", "float8"),
        ("idle_watts_per_core", "float8"),
        ("memory_gib", "float8"),
        ("memory_watts_per_gib", "float8"),
        ("pue", "float8"),
        ("embodied_kgco2e", "float8"),
        ("lifetime_years", "float8"),
        ("server_threads", "float8"),
        ("site", "text"),
        ("region_id", "int4"),
        ("regional_intensity_gco2eq_per_kwh", "float8"),
    ),
)

FACT_USAGE_WORKSPACE = TableSpec(
    "fact_usage_workspace",
    (
        ("workspace_session_id", "int8"),
        ("timestamp_utc", "timestamptz"),
        *_METRIC_COLUMNS,
        *_INTENSITY_COLUMNS,
        *_UNKNOWN_COLUMNS,
    ),
)

# Scope facts: {scope: (table, id column or None for ada)}.
SCOPE_ID_COLUMNS = {
    "ada": None,
    "project": "project_id",
    "machine": "machine_id",
    "group": "group_id",
    "user": "user_id",
}
SCOPE_FACTS = {
    scope: TableSpec(
        f"fact_usage_{scope}",
        (
            *(((id_column, "int8"),) if id_column else ()),
            ("timestamp_utc", "timestamptz"),
            *_METRIC_COLUMNS,
            *_INTENSITY_COLUMNS,
            *((("users", "int4"),) if scope != "user" else ()),
            *_UNKNOWN_COLUMNS,
        ),
    )
    for scope, id_column in SCOPE_ID_COLUMNS.items()
}

# Daily, monthly, yearly and lifetime sums of the scope facts, which the analysts' views read
# (migrations 0013, 0014); what carbon_reporter may see of each hour (0016) and its sums.
USAGE_ROLLUP = "usage_rollup"
REPORTING_RELEASE = "reporting_release"
REPORTING_ROLLUP = "reporting_rollup"

# The tables each stage's computation (a Dagster op, named here) writes, stages in order: one
# asset per table, written in one pass and one transaction by its op.
STAGE_TABLES = {
    "host_cpu_seconds": (HOST_CPU_HOURLY.name, HOST_CPU_REJECTED.name, HOST_CPU_GAPS.name),
    "carbon_intensity": (CARBON_INTENSITY_HOURLY.name, CARBON_INTENSITY_REGIONAL_HOURLY.name),
    "fact_usage_instance": (FACT_USAGE_INSTANCE.name,),
    "usage_facts": (
        *(spec.name for spec in SCOPE_FACTS.values()),
        FACT_USAGE_WORKSPACE.name,
        "workspace_session",  # upserted by workspace, not replaced by window
        USAGE_ROLLUP,  # recomputed from the facts for the periods of the window
        REPORTING_RELEASE,  # decided again for the window's hours, from the facts
        REPORTING_ROLLUP,  # the release's sums, for the periods of the window
    ),
}

# The forecast stage's tables (unpartitioned: fetched every half hour, each fetch kept).
FORECAST_TABLES = ("intensity_forecast", "forecast_fetch", "forecast_site", "forecast_error_daily")
