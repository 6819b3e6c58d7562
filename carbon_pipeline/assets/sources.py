"""Source stage: what Prometheus and the Carbon Intensity API say, per hour, in Postgres."""

import dagster as dg
import pandas as pd

from carbon_pipeline.assets.common import STAGE_DEFAULTS, Progress, window
from carbon_pipeline.checks import (
    COMPLETENESS,
    INTENSITY_PROVENANCE,
    describe_rejections,
    split_implausible,
)
from carbon_pipeline.intensity import hourly_intensity
from carbon_pipeline.resources import (
    CarbonIntensityResource,
    PipelineSettings,
    PrometheusResource,
    WarehouseResource,
)
from carbon_pipeline.schemas import HOST_CPU_SCHEMA, INTENSITY_SCHEMA, column_schema, validate
from carbon_pipeline.tables import CARBON_INTENSITY_HOURLY, HOST_CPU_HOURLY, HOST_CPU_REJECTED
from carbon_pipeline.times import chunks
from carbon_pipeline.timing import phase


@dg.asset(
    **STAGE_DEFAULTS,
    group_name="sources",
    kinds={"prometheus", "postgres"},
    metadata={"dagster/column_schema": column_schema(HOST_CPU_SCHEMA), "table": "host_cpu_hourly"},
    check_specs=[
        dg.AssetCheckSpec(
            COMPLETENESS,
            asset="host_cpu_seconds",
            description=(
                "Every host-hour Prometheus reported is stored: none had impossible numbers "
                "(not finite, negative, over capacity) and had to be quarantined."
            ),
        )
    ],
)
def host_cpu_seconds(
    context: dg.AssetExecutionContext,
    prometheus: PrometheusResource,
    warehouse: WarehouseResource,
    settings: PipelineSettings,
) -> dg.MaterializeResult:
    """Busy and idle CPU seconds of every host in every hour (table `host_cpu_hourly`):
    `increase(node_cpu_seconds_total[1h])` at the end of the hour, summed per host over its
    cpus and modes, hosts under their normalised identity. Host-hours with impossible
    numbers go to `host_cpu_rejected` with the reason, and the completeness check fails."""
    start, end = window(context)
    progress = Progress(context, start, end)
    hosts: set[str] = set()
    busy = idle = 0.0
    rejected_parts = []
    with warehouse.replace_window(start, end, [HOST_CPU_HOURLY, HOST_CPU_REJECTED]) as writer:
        for chunk_start, chunk_end in chunks(start, end, settings.chunk_hours):
            frame = prometheus.host_cpu_seconds(chunk_start, chunk_end)
            with phase("transform"):
                frame, rejected = split_implausible(frame)
                frame = validate(HOST_CPU_SCHEMA, frame)
            writer.copy(HOST_CPU_HOURLY.name, frame)
            writer.copy(HOST_CPU_REJECTED.name, rejected)
            rejected_parts.append(rejected)
            hosts.update(frame["hostname"].unique())
            busy += float(frame["busy_cpu_seconds_total"].sum())
            idle += float(frame["idle_cpu_seconds_total"].sum())
            progress.chunk_done(chunk_start, chunk_end, len(frame))
    rejected = pd.concat(rejected_parts, ignore_index=True)
    if len(rejected):
        context.log.warning(
            f"{len(rejected)} host-hour(s) rejected and left out of every fact (see table "
            f"host_cpu_rejected): {describe_rejections(rejected)}"
        )
    return dg.MaterializeResult(
        metadata={
            **progress.finish(),
            "hosts": len(hosts),
            "busy_cpu_seconds": busy,
            "idle_cpu_seconds": idle,
            "rejected_host_hours": len(rejected),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=COMPLETENESS,
                passed=rejected.empty,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "rejected_host_hours": len(rejected),
                    "examples": describe_rejections(rejected) if len(rejected) else "",
                },
            )
        ],
    )


@dg.asset(
    **STAGE_DEFAULTS,
    group_name="sources",
    kinds={"api", "postgres"},
    metadata={
        "dagster/column_schema": column_schema(INTENSITY_SCHEMA),
        "table": "carbon_intensity_hourly",
    },
    check_specs=[
        dg.AssetCheckSpec(
            INTENSITY_PROVENANCE,
            asset="carbon_intensity",
            description=(
                "No hour uses the fallback intensity; reports the share of hours whose "
                "intensity is not an actual (forecast or fallback) and rejected glitches."
            ),
        )
    ],
)
def carbon_intensity(
    context: dg.AssetExecutionContext,
    carbon_intensity_api: CarbonIntensityResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """GB national carbon intensity of every hour (table `carbon_intensity_hourly`): the mean
    of the hour's two half-hour periods, each its actual else its forecast, with provenance
    (actual, forecast or fallback). With CARBON_INTENSITY_ON_MISSING=fallback the hours of a
    request that failed get the fallback, flagged; with `fail` the run fails."""
    start, end = window(context)
    api = carbon_intensity_api
    progress = Progress(context, start, end)
    periods, errors = api.fetch_periods(start, end)
    if errors and api.on_missing != "fallback":
        raise errors[0]
    for error in errors:
        context.log.warning(f"{error}; its hours get the fallback intensity")
    with phase("transform"):
        hours = hourly_intensity(
            periods,
            start,
            end,
            on_missing=api.on_missing,
            fallback_gco2eq_per_kwh=api.fallback_gco2eq_per_kwh,
            glitch_min_forecast=api.glitch_min_forecast,
        )
        hours = validate(INTENSITY_SCHEMA, hours)
    with warehouse.replace_window(start, end, [CARBON_INTENSITY_HOURLY]) as writer:
        writer.copy(CARBON_INTENSITY_HOURLY.name, hours)
    progress.chunk_done(start, end, len(hours))
    sources = hours["intensity_source"].value_counts()
    fallback_hours = int(sources.get("fallback", 0))
    glitches = int(hours["glitch_periods"].sum())
    if fallback_hours:
        context.log.warning(
            f"{fallback_hours} hour(s) have no intensity from the API and use the fallback of "
            f"{api.fallback_gco2eq_per_kwh} gCO2eq/kWh (flagged 'fallback')"
        )
    if glitches:
        context.log.warning(
            f"{glitches} period(s) reported an actual of 0 while the forecast was at least "
            f"{api.glitch_min_forecast}: treated as glitches, their forecast used (flagged 'forecast')"
        )
    estimated_share = float((hours["intensity_source"] != "actual").mean())
    provenance = {
        "periods": len(periods),
        "hours_actual": int(sources.get("actual", 0)),
        "hours_forecast": int(sources.get("forecast", 0)),
        "hours_fallback": fallback_hours,
        "glitch_periods": glitches,
        "estimated_share": estimated_share,
    }
    return dg.MaterializeResult(
        # The provenance in full is the check's metadata (stored once a run); what the UI
        # plots across partitions is here.
        metadata={
            **progress.finish(),
            "mean_intensity_gco2eq_per_kwh": float(hours["intensity_gco2eq_per_kwh"].mean()),
            "estimated_share": estimated_share,
            "hours_fallback": fallback_hours,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=INTENSITY_PROVENANCE,
                passed=fallback_hours == 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata=provenance,
            )
        ],
    )
