"""Pandera schemas of every frame the pipeline writes: meaning and unit of each column, and
the checks a row must pass before it may reach the warehouse."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine

from carbon_pipeline.energy import FOOTPRINT_METRICS, METRICS, UNKNOWN_COUNTS
from carbon_pipeline.intensity import MAX_PLAUSIBLE_INTENSITY, SOURCES

UTC_NS = pandas_engine.DateTime(tz="UTC", unit="ns")
# busy + idle CPU seconds of a host-hour may exceed cores x 3600 only by Prometheus'
# extrapolation at the edges of a series: allow this fraction plus one second.
CPU_SECONDS_TOLERANCE = 0.02


# Keys are unique by construction (grouped) and by the tables' primary keys, which refuse a
# duplicate on COPY with the key named; checking them again here costs a hash of every row.


def _timestamp() -> pa.Column:
    return pa.Column(
        UTC_NS,
        pa.Check(lambda s: s.dt.floor("h") == s, error="not the start of a UTC hour"),
        coerce=True,
        description="Start of the UTC hour the row covers.",
    )


def _text(description: str) -> pa.Column:
    return pa.Column(str, pa.Check.str_length(min_value=1), coerce=True, description=description)


def _non_negative(description: str, dtype=float, nullable: bool = False) -> pa.Column:
    return pa.Column(
        dtype,
        # One check, not ge(0) and a finiteness check: pandera's cost is per check and column
        # (every chunk validates each metric column of six frames), not per row.
        pa.Check(lambda s: s.ge(0) & s.lt(float("inf")), error="non-negative and finite"),
        nullable=nullable,
        coerce=True,
        description=description,
    )


def _metric(name: str) -> pa.Column:
    """A metric column: the full footprint's are NULL where a host's memory is unknown."""
    return _non_negative(METRIC_DESCRIPTIONS[name], nullable=name in FOOTPRINT_METRICS)


METRIC_DESCRIPTIONS = {
    "busy_cpu_seconds_total": "CPU-seconds spent busy (user, system, nice, irq, softirq, steal) [s].",
    "idle_cpu_seconds_total": "CPU-seconds spent idle (idle, iowait) [s].",
    "busy_kwh": "Electricity drawn by busy cores [kWh] = busy W/core x busy s / 3.6e6.",
    "idle_kwh": "Electricity drawn by idle cores [kWh] = idle W/core x idle s / 3.6e6.",
    "busy_gco2eq": "Carbon of the busy electricity [gCO2eq] = busy_kwh x intensity.",
    "idle_gco2eq": "Carbon of the idle electricity [gCO2eq] = idle_kwh x intensity.",
    "memory_kwh": "Electricity drawn by memory [kWh] = GiB x W/GiB x share of the hour up / 1000.",
    "overhead_kwh": "Facility overhead [kWh] = (busy + idle + memory kWh) x (PUE - 1).",
    "full_kwh": "Full electricity [kWh] = busy + idle + memory + overhead kWh.",
    "memory_gco2eq": "Carbon of the memory's electricity [gCO2eq] = memory_kwh x national intensity.",
    "overhead_gco2eq": "Carbon of the facility overhead [gCO2eq] = overhead_kwh x national intensity.",
    "embodied_gco2eq": "Manufacturing carbon amortised [gCO2eq] = server kgCO2e x 1000 x cpus/server threads x share up / lifetime h.",
    "full_gco2eq": "Full footprint [gCO2eq] = busy + idle + memory + overhead + embodied gCO2eq (national grid).",
    "regional_gco2eq": "Location-based carbon [gCO2eq] = full_kwh x the site's regional intensity (operational; embodied not included).",
}

_intensity = pa.Column(
    float,
    pa.Check.in_range(0.0, MAX_PLAUSIBLE_INTENSITY),
    coerce=True,
    description="Grid carbon intensity of the hour [gCO2eq/kWh].",
)
_source = pa.Column(
    str,
    pa.Check.isin(SOURCES),
    coerce=True,
    description="Where the intensity came from: actual, forecast or fallback (estimated).",
)


def within_capacity(frame: pd.DataFrame) -> pd.Series:
    """Whether each host-hour's busy + idle CPU seconds fit in cpu_count x 3600 (plus the
    tolerance for Prometheus' extrapolation). False where a value is not finite."""
    capacity = frame["cpu_count"].astype(float) * 3600.0
    used = frame["busy_cpu_seconds_total"].astype(float) + frame["idle_cpu_seconds_total"].astype(
        float
    )
    return used <= capacity * (1 + CPU_SECONDS_TOLERANCE) + 1.0


_capacity_check = pa.Check(
    within_capacity,
    error="busy + idle CPU seconds exceed cpu_count x 3600 (plus tolerance)",
)

HOST_CPU_SCHEMA = pa.DataFrameSchema(
    {
        "timestamp_utc": _timestamp(),
        "hostname": _text("Host identity, normalised (IPv4 address where the name encodes one)."),
        "cloud_project_name": _text("OpenStack project of the host (Prometheus label)."),
        "machine_name": _text("Machine type of the host inside its project (Prometheus label)."),
        "cpu_count": _non_negative("Number of CPUs reporting in the hour.", int),
        "busy_cpu_seconds_total": _non_negative(METRIC_DESCRIPTIONS["busy_cpu_seconds_total"]),
        "idle_cpu_seconds_total": _non_negative(METRIC_DESCRIPTIONS["idle_cpu_seconds_total"]),
        "memory_gib": _non_negative(
            "Memory of the host, mean over the hour [GiB]; NULL if Prometheus had none.",
            nullable=True,
        ),
    },
    checks=[_capacity_check],
    strict="filter",
    ordered=False,
    name="host_cpu_hourly",
    description="CPU seconds per host-hour: increase(node_cpu_seconds_total[1h]) at the hour's end.",
)

INTENSITY_SCHEMA = pa.DataFrameSchema(
    {
        "timestamp_utc": _timestamp(),
        "intensity_gco2eq_per_kwh": _intensity,
        "intensity_source": _source,
        "forecast_gco2eq_per_kwh": pa.Column(
            float,
            nullable=True,
            coerce=True,
            description="Mean forecast of the hour's periods [gCO2eq/kWh].",
        ),
        "actual_gco2eq_per_kwh": pa.Column(
            float,
            nullable=True,
            coerce=True,
            description="Mean accepted actual of the hour's periods [gCO2eq/kWh].",
        ),
        "period_count": pa.Column(
            int,
            pa.Check.in_range(0, 2),
            coerce=True,
            description="Half-hour periods the hour's value is the mean of.",
        ),
        "glitch_periods": pa.Column(
            int,
            pa.Check.in_range(0, 2),
            coerce=True,
            description="Periods whose actual (0 while the forecast was far above) was rejected.",
        ),
    },
    unique=["timestamp_utc"],
    strict="filter",
    name="carbon_intensity_hourly",
    description="GB national carbon intensity per UTC hour, with its provenance.",
)

REGIONAL_INTENSITY_SCHEMA = pa.DataFrameSchema(
    {
        "timestamp_utc": _timestamp(),
        "region_id": pa.Column(
            int,
            pa.Check.in_range(1, 17),
            coerce=True,
            description="GB region (Carbon Intensity API id).",
        ),
        "intensity_gco2eq_per_kwh": _intensity,
        "intensity_source": _source,
        "forecast_gco2eq_per_kwh": pa.Column(
            float,
            nullable=True,
            coerce=True,
            description="Mean forecast of the hour's periods [gCO2eq/kWh].",
        ),
        "period_count": pa.Column(
            int,
            pa.Check.in_range(0, 2),
            coerce=True,
            description="Half-hour periods the hour's value is the mean of.",
        ),
    },
    unique=["timestamp_utc", "region_id"],
    strict="filter",
    name="carbon_intensity_regional_hourly",
    description="The intensity of a GB region per UTC hour (forecasts: the API publishes no regional actuals).",
)

INSTANCE_USAGE_SCHEMA = pa.DataFrameSchema(
    {
        **HOST_CPU_SCHEMA.columns,
        **{m: _metric(m) for m in METRICS},
        "intensity_gco2eq_per_kwh": _intensity,
        "intensity_source": _source,
        "busy_watts_per_core": _non_negative("Power model: watts per busy core [W]."),
        "idle_watts_per_core": _non_negative("Power model: watts per idle core [W]."),
        "memory_watts_per_gib": _non_negative("Power model: watts per GiB of memory [W/GiB]."),
        "pue": pa.Column(float, pa.Check.ge(1.0), coerce=True, description="The site's PUE."),
        "embodied_kgco2e": _non_negative("Manufacturing emissions of one server [kgCO2e]."),
        "lifetime_years": pa.Column(
            float, pa.Check.gt(0), coerce=True, description="Server life [years]."
        ),
        "server_threads": pa.Column(
            float, pa.Check.gt(0), coerce=True, description="Hardware threads of one server."
        ),
        "site": _text("The host's site."),
        "region_id": pa.Column(
            int,
            pa.Check.in_range(1, 17),
            coerce=True,
            description="The site's GB region (Carbon Intensity API id).",
        ),
        "regional_intensity_gco2eq_per_kwh": pa.Column(
            float,
            pa.Check.in_range(0, MAX_PLAUSIBLE_INTENSITY),
            nullable=True,
            coerce=True,
            description=(
                "The site's regional intensity of the hour [gCO2eq/kWh]; NULL where none is "
                "stored (history from before migration 0008)."
            ),
        ),
    },
    checks=[_capacity_check],
    strict="filter",
    name="fact_usage_instance",
    description="Electricity and carbon per host-hour, busy and idle.",
)

SCOPE_KEY_DESCRIPTIONS = {
    "cloud_project_name": "OpenStack project.",
    "machine_name": "Machine type.",
    "group_name": "Machine group: {cloud_project_name}_{machine_name}.",
    "ext_user_id": "User's platform_name; 'unattributed' for hours no workspace held.",
}


_UNKNOWN_COUNT_COLUMNS = {
    "footprint_unknown_hosts": pa.Column(
        "int64",
        pa.Check.ge(0),
        coerce=True,
        description=(
            "Host-hours of the row whose full footprint is unknown (no memory size): the "
            "full_* and memory/overhead/embodied sums leave them out."
        ),
    ),
    "regional_unknown_hosts": pa.Column(
        "int64",
        pa.Check.ge(0),
        coerce=True,
        description=(
            "Host-hours of the row whose regional_gco2eq is unknown (no memory size, or no "
            "regional intensity stored): regional_gco2eq leaves them out."
        ),
    ),
}
assert set(_UNKNOWN_COUNT_COLUMNS) == set(UNKNOWN_COUNTS)


def scope_fact_schema(scope: str, keys: list[str]) -> pa.DataFrameSchema:
    """Schema of one scope's hourly fact: its key columns plus the metrics."""
    return pa.DataFrameSchema(
        {
            "timestamp_utc": _timestamp(),
            **{k: _text(SCOPE_KEY_DESCRIPTIONS[k]) for k in keys},
            **{m: _metric(m) for m in METRICS},
            "intensity_gco2eq_per_kwh": _intensity,
            "intensity_source": _source,
            **(
                {}
                if scope == "user"
                else {
                    "users": pa.Column(
                        "int64",
                        pa.Check.ge(0),
                        description="Distinct users whose workspaces held its hosts in the hour.",
                    )
                }
            ),
            **_UNKNOWN_COUNT_COLUMNS,
        },
        strict="filter",
        name=f"fact_usage_{scope}",
        description=f"Hourly electricity and carbon per {scope}.",
    )


WORKSPACE_FACT_SCHEMA = pa.DataFrameSchema(
    {
        "workspace_id": _text("The workspace's id in the registry."),
        "timestamp_utc": _timestamp(),
        **{m: _metric(m) for m in METRICS},
        "intensity_gco2eq_per_kwh": _intensity,
        "intensity_source": _source,
        **_UNKNOWN_COUNT_COLUMNS,
    },
    strict=False,
    name="fact_usage_workspace",
    description="A workspace's share of its host's hours.",
)


def validate(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame coerced to the schema, or SchemaErrors listing every failing row and check."""
    return schema.validate(frame, lazy=True)


def column_schema(schema: pa.DataFrameSchema) -> dg.TableSchema:
    """The schema's columns as Dagster column metadata, shown on the asset in the UI."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, str(column.dtype), description=column.description)
            for name, column in schema.columns.items()
        ]
    )
