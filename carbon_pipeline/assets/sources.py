"""Source stage: what Prometheus and the Carbon Intensity API say, per hour, in Postgres."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd

from carbon_pipeline.ahead import asked_ahead
from carbon_pipeline.assets.common import (
    OWNERS,
    STAGE_DEFAULTS,
    Progress,
    bad_input_fails_at_once,
    materialized,
    replace_sources,
    table_spec,
    window,
)
from carbon_pipeline.automation import catch_up_condition, observe_condition
from carbon_pipeline.captured import (
    HostMerge,
    describe_host_merge,
    merge_host_cpu,
    merge_intensity,
)
from carbon_pipeline.checks import (
    COMPLETENESS,
    COVERAGE,
    INTENSITY_PROVENANCE,
    describe_gaps,
    describe_rejections,
    split_implausible,
)
from carbon_pipeline.config import env_int
from carbon_pipeline.coverage import AROUND, BETWEEN, WHOLE_HOUR, Coverage
from carbon_pipeline.derivation import changed, model_version, registry_versions, stored_versions
from carbon_pipeline.holdings import holdings
from carbon_pipeline.intensity import REGIONAL_INTENSITY_COLUMNS, hourly_intensity
from carbon_pipeline.partitions import PARTITION_KEY_FORMAT, PIPELINE_START, hourly_partitions
from carbon_pipeline.resources import (
    CarbonIntensityResource,
    PipelineSettings,
    PowerModelResource,
    PrometheusResource,
    RegistryResource,
    SitesResource,
    WarehouseResource,
)
from carbon_pipeline.schemas import (
    HOST_CPU_SCHEMA,
    INTENSITY_SCHEMA,
    REGIONAL_INTENSITY_SCHEMA,
    validate,
)
from carbon_pipeline.tables import (
    CARBON_INTENSITY_HOURLY,
    CARBON_INTENSITY_REGIONAL_HOURLY,
    HOST_CPU_GAPS,
    HOST_CPU_HOURLY,
    HOST_CPU_REJECTED,
)
from carbon_pipeline.times import HOUR, chunks
from carbon_pipeline.timing import phase

# The outside systems the captured tables are read from: in the graph, never materialised.
PROMETHEUS = dg.AssetSpec(
    "prometheus",
    group_name="sources",
    kinds={"prometheus"},
    owners=OWNERS,
    description=(
        "node_exporter's node_cpu_seconds_total (and node_memory_MemTotal_bytes) of every host, "
        "scraped by the platform's Prometheus (PROMETHEUS_URL). Its retention is finite: "
        "host_cpu_hourly keeps what it said."
    ),
)
CARBON_INTENSITY_API = dg.AssetSpec(
    "carbon_intensity_api",
    group_name="sources",
    kinds={"api"},
    owners=OWNERS,
    description=(
        "The GB Carbon Intensity API (CARBON_INTENSITY_API_URL): national actual and forecast "
        "intensity per half hour, and each site's regional forecast."
    ),
)
# What the captured tables share: their group and their automation (catch-up only: they are
# the record of what a source said, asked again only for hours missing or failed).
_CAPTURED = {"group": "sources", "kinds": set(), "automation_condition": catch_up_condition()}


@dg.multi_asset(
    name="host_cpu_seconds",
    **STAGE_DEFAULTS,
    specs=[
        table_spec(HOST_CPU_HOURLY.name, **_CAPTURED, deps=[PROMETHEUS.key]),
        table_spec(HOST_CPU_REJECTED.name, **_CAPTURED, deps=[PROMETHEUS.key]),
        # Gaps: hosts known to be up (held by a workspace) without data.
        table_spec(HOST_CPU_GAPS.name, **_CAPTURED, deps=[PROMETHEUS.key, "workspace_registry"]),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            COMPLETENESS,
            asset=HOST_CPU_HOURLY.name,
            description=(
                "Every host-hour Prometheus reported is stored: none had impossible numbers "
                "(not finite, negative, over capacity) and had to be quarantined "
                "(host_cpu_rejected)."
            ),
        ),
        dg.AssetCheckSpec(
            COVERAGE,
            asset=HOST_CPU_GAPS.name,
            description=(
                "No gaps: every host known to be up (held by a workspace, or reporting under "
                "the same project and machine within 3 hours before and after) has data for "
                "every hour, every hour has a host, and Prometheus gave no warning of partial "
                "data. Gaps are listed in v_host_cpu_gaps (those of before and after are "
                "computed from the record when read; the check counts those its run can see)."
            ),
        ),
    ],
)
@bad_input_fails_at_once
def host_cpu_seconds(
    context: dg.AssetExecutionContext,
    prometheus: PrometheusResource,
    registry: RegistryResource,
    warehouse: WarehouseResource,
    settings: PipelineSettings,
) -> dg.MaterializeResult:
    """Busy and idle CPU seconds of every host in every hour (table `host_cpu_hourly`):
    `increase(node_cpu_seconds_total[1h])` at the end of the hour, summed per host over its
    cpus and modes, hosts under their normalised identity. This is the record of what
    Prometheus said: a new answer adds and corrects host-hours but never deletes stored ones
    it no longer has (retention). Host-hours with impossible numbers go to
    `host_cpu_rejected`; hosts known to be up without data go to `host_cpu_gaps`."""
    start, end = window(context)
    replace = replace_sources(context)
    progress = Progress(context, start, end)
    coverage = Coverage(start, end)
    coverage.reported(warehouse.read_window("host_cpu_presence", start - AROUND, start))
    coverage.reported(warehouse.read_window("host_cpu_presence", end, end + AROUND))
    merged = HostMerge()
    hosts: set[str] = set()
    busy = idle = 0.0
    rejected_parts, warnings, notes = [], [], []
    specs = [HOST_CPU_HOURLY, HOST_CPU_REJECTED, HOST_CPU_GAPS]
    chunk_hours = settings.chunk_hours_for(prometheus.count_hosts(start, end))
    with (
        warehouse.replace_window(start, end, specs) as writer,
        ThreadPoolExecutor(1, thread_name_prefix="registry") as aside,
    ):
        # The window's holdings (for the gaps) asked while Prometheus answers.
        held_asked = aside.submit(holdings, registry, warehouse, start, end, context.run.run_id)

        def ask(chunk_start: datetime, chunk_end: datetime):
            """Prometheus' answer, and what the record holds now (committed: this
            transaction's delete is not seen)."""
            return (
                prometheus.host_cpu_seconds(chunk_start, chunk_end),
                warehouse.read_window("host_cpu_window", chunk_start, chunk_end),
                warehouse.read_window("host_cpu_rejected_window", chunk_start, chunk_end),
            )

        for chunk_start, chunk_end, (answer, stored, stored_rejected) in asked_ahead(
            ask, chunks(start, end, chunk_hours)
        ):
            coverage.warned(answer.warnings, chunk_start, chunk_end)
            warnings += [w for w in answer.warnings if w not in warnings]
            notes += [n for n in answer.notes if n not in notes]
            with phase("transform"):
                answered, answer_rejected = split_implausible(answer.frame)
                frame, rejected, counts = merge_host_cpu(
                    stored,
                    stored_rejected,
                    answered,
                    answer_rejected,
                    replace=replace,
                    partial=bool(answer.warnings),
                )
                frame = validate(HOST_CPU_SCHEMA, frame)
                coverage.reported(frame)
                coverage.reported(rejected)
            merged.add(counts)
            writer.copy(HOST_CPU_HOURLY.name, frame)
            writer.copy(HOST_CPU_REJECTED.name, rejected)
            rejected_parts.append(rejected)
            hosts.update(frame["hostname"].unique())
            busy += float(frame["busy_cpu_seconds_total"].sum())
            idle += float(frame["idle_cpu_seconds_total"].sum())
            progress.chunk_done(chunk_start, chunk_end, len(frame))
        held, registry_problems = held_asked.result()
        with phase("transform"):
            gaps = coverage.gaps(held)
        # "Before and after" gaps are computed whenever read (v_host_cpu_gaps): stored,
        # they would depend on which neighbouring hours were stored first.
        writer.copy(HOST_CPU_GAPS.name, gaps[gaps["reason"] != BETWEEN])
    for sentence in describe_host_merge(merged) + notes:
        context.log.warning(sentence)
    for warning in warnings:
        context.log.warning(f"Prometheus warned that its answer may be partial: {warning}")
    for problem in registry_problems:
        context.log.warning(f"registry: {problem}")
    rejected = pd.concat(rejected_parts, ignore_index=True)
    if len(rejected):
        context.log.warning(
            f"{len(rejected)} host-hour(s) rejected and left out of every fact (see table "
            f"host_cpu_rejected): {describe_rejections(rejected)}"
        )
    if len(gaps):
        context.log.warning(f"{describe_gaps(gaps)} (see table host_cpu_gaps)")
    yield materialized(
        context,
        HOST_CPU_HOURLY.name,
        writer.rows[HOST_CPU_HOURLY.name],
        **progress.finish(),
        hosts=len(hosts),
        busy_cpu_seconds=busy,
        idle_cpu_seconds=idle,
        kept_host_hours=merged.kept_missing,
        registry_problems=len(registry_problems),
    )
    yield materialized(context, HOST_CPU_REJECTED.name, writer.rows[HOST_CPU_REJECTED.name])
    yield materialized(context, HOST_CPU_GAPS.name, writer.rows[HOST_CPU_GAPS.name])
    yield from [
        dg.AssetCheckResult(
            asset_key=HOST_CPU_HOURLY.name,
            check_name=COMPLETENESS,
            passed=rejected.empty,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "rejected_host_hours": len(rejected),
                "examples": describe_rejections(rejected) if len(rejected) else "",
            },
        ),
        dg.AssetCheckResult(
            asset_key=HOST_CPU_GAPS.name,
            check_name=COVERAGE,
            passed=gaps.empty,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "gap_host_hours": int((gaps["hostname"] != WHOLE_HOUR).sum()),
                "hours_with_whole_hour_gaps": int((gaps["hostname"] == WHOLE_HOUR).sum()),
                "prometheus_warnings": len(warnings),
                "answered_host_hours": merged.answered,
                "added_host_hours": merged.added,
                "changed_host_hours": merged.changed,
                "kept_host_hours": merged.kept_missing,
                "kept_over_implausible": merged.kept_over_implausible,
                "kept_over_partial": merged.kept_over_partial,
                "deleted_host_hours": merged.deleted,
                "examples": describe_gaps(gaps) if len(gaps) else "",
            },
        ),
    ]


@dg.multi_asset(
    name="carbon_intensity",
    **STAGE_DEFAULTS,
    specs=[
        table_spec(CARBON_INTENSITY_HOURLY.name, **_CAPTURED, deps=[CARBON_INTENSITY_API.key]),
        table_spec(
            CARBON_INTENSITY_REGIONAL_HOURLY.name, **_CAPTURED, deps=[CARBON_INTENSITY_API.key]
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            INTENSITY_PROVENANCE,
            asset=CARBON_INTENSITY_HOURLY.name,
            description=(
                "No hour uses the fallback intensity; reports the share of hours whose "
                "intensity is not an actual (forecast or fallback) and rejected glitches."
            ),
        )
    ],
)
@bad_input_fails_at_once
def carbon_intensity(
    context: dg.AssetExecutionContext,
    carbon_intensity_api: CarbonIntensityResource,
    sites: SitesResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """GB national carbon intensity of every hour (table `carbon_intensity_hourly`): the mean
    of the hour's two half-hour periods, each its actual else its forecast, with provenance
    (actual, forecast or fallback). With CARBON_INTENSITY_ON_MISSING=fallback the hours of a
    request that failed get the fallback, flagged; with `fail` the run fails. A stored hour is
    only ever replaced by one of the same or better provenance. Beside it, the intensity of
    the GB region of every site (`carbon_intensity_regional_hourly`; the API publishes
    forecasts only), for the location-based footprint; a regional hour the API cannot give
    takes the stored national hour's intensity, flagged fallback."""
    start, end = window(context)
    api = carbon_intensity_api
    progress = Progress(context, start, end)
    periods, errors = api.fetch_periods(start, end)
    if errors and api.on_missing != "fallback":
        raise errors[0]
    for error in errors:
        context.log.warning(f"{error}; its hours get the fallback intensity")
    with phase("transform"):
        answered = hourly_intensity(
            periods,
            start,
            end,
            on_missing=api.on_missing,
            fallback_gco2eq_per_kwh=api.fallback_gco2eq_per_kwh,
            glitch_min_forecast=api.glitch_min_forecast,
        )
        answered = validate(INTENSITY_SCHEMA, answered)
    regional_answers = _regional_answers(context, api, sites.region_ids(), start, end)
    tables = [CARBON_INTENSITY_HOURLY, CARBON_INTENSITY_REGIONAL_HOURLY]
    with warehouse.replace_window(start, end, tables) as writer:
        # Provenance only improves: a stored actual is never replaced by a forecast or the
        # fallback (the API down, say). Read what is committed: this delete is not seen.
        stored = warehouse.read_window("intensity_window", start, end)
        stored_regional = warehouse.read_window("regional_intensity_window", start, end)
        with phase("transform"):
            hours, merged = merge_intensity(stored, answered)
            regional = [stored_regional[~stored_regional["region_id"].isin(regional_answers)]]
            for region_id, region_hours in regional_answers.items():
                region_hours = _fallback_to_national(region_hours, hours)
                kept, _ = merge_intensity(
                    stored_regional[stored_regional["region_id"] == region_id], region_hours
                )
                regional.append(kept)
            regional = validate(REGIONAL_INTENSITY_SCHEMA, pd.concat(regional, ignore_index=True))
        writer.copy(CARBON_INTENSITY_HOURLY.name, hours)
        writer.copy(CARBON_INTENSITY_REGIONAL_HOURLY.name, regional)
    progress.chunk_done(start, end, len(hours))
    # The forecasts' error against these hours' actuals (nothing to do without forecasts).
    warehouse.refresh_forecast_error(start, end)
    if merged.kept_better:
        context.log.warning(
            f"{merged.kept_better} stored hour(s) have a better intensity (actual or forecast) "
            "than the API gave this time: kept"
        )
    if merged.upgraded or merged.changed:
        context.log.info(
            f"{merged.upgraded} hour(s) improved their provenance, {merged.changed} changed value"
        )
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
            f"{glitches} period(s) reported an actual that cannot be true (0 while the forecast "
            f"was at least {api.glitch_min_forecast}, negative, above 1500 or not finite): "
            "rejected, their forecast used (flagged 'forecast')"
        )
    incomplete = int(
        ((hours["intensity_source"] != "fallback") & (hours["period_count"] < 2)).sum()
    )
    estimated_share = float((hours["intensity_source"] != "actual").mean())
    provenance = {
        "periods": len(periods),
        "hours_actual": int(sources.get("actual", 0)),
        "hours_forecast": int(sources.get("forecast", 0)),
        "hours_fallback": fallback_hours,
        "glitch_periods": glitches,
        "hours_with_one_period": incomplete,
        "estimated_share": estimated_share,
        "regions": ", ".join(str(r) for r in regional_answers),
    }
    # The provenance in full is the check's metadata (stored once a run); what the UI plots
    # across partitions is here.
    yield materialized(
        context,
        CARBON_INTENSITY_HOURLY.name,
        writer.rows[CARBON_INTENSITY_HOURLY.name],
        **progress.finish(),
        mean_intensity_gco2eq_per_kwh=float(hours["intensity_gco2eq_per_kwh"].mean()),
        estimated_share=estimated_share,
        hours_fallback=fallback_hours,
    )
    yield materialized(
        context,
        CARBON_INTENSITY_REGIONAL_HOURLY.name,
        writer.rows[CARBON_INTENSITY_REGIONAL_HOURLY.name],
        regions=", ".join(str(r) for r in regional_answers),
    )
    yield dg.AssetCheckResult(
        asset_key=CARBON_INTENSITY_HOURLY.name,
        check_name=INTENSITY_PROVENANCE,
        passed=fallback_hours == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=provenance,
    )


def _regional_answers(
    context: dg.AssetExecutionContext,
    api: CarbonIntensityResource,
    region_ids: list[int],
    start,
    end,
) -> dict[int, pd.DataFrame]:
    """{region_id: its hours}, as the API gave them (hours it could not give flagged
    fallback, their intensity filled by _fallback_to_national)."""
    answers = {}
    for region_id in region_ids:
        periods, errors = api.fetch_periods(start, end, region_id=region_id)
        if errors and api.on_missing != "fallback":
            raise errors[0]
        for error in errors:
            context.log.warning(f"{error}; its hours take the national intensity (fallback)")
        with phase("transform"):
            hours = hourly_intensity(periods, start, end, on_missing="fallback")
            answers[region_id] = hours.assign(region_id=region_id)[REGIONAL_INTENSITY_COLUMNS]
    return answers


def _fallback_to_national(region_hours: pd.DataFrame, national: pd.DataFrame) -> pd.DataFrame:
    """A regional hour the API could not give takes the national hour as stored (merged: an
    actual kept over today's forecast or fallback), flagged fallback; the actuals sensor
    re-checks such hours."""
    fallback = (region_hours["intensity_source"] == "fallback").to_numpy()
    stored = national.set_index("timestamp_utc")["intensity_gco2eq_per_kwh"]
    filled = region_hours["timestamp_utc"].map(stored).to_numpy()
    return region_hours.assign(
        intensity_gco2eq_per_kwh=np.where(
            fallback, filled, region_hours["intensity_gco2eq_per_kwh"]
        )
    )


@dg.observable_source_asset(
    key="workspace_registry",
    group_name="sources",
    partitions_def=hourly_partitions,
    automation_condition=observe_condition(),
    tags={"dagster/kind/mongodb": ""},
    description=(
        "The workspace registry (MongoDB, MONGO_URI): who held which host when. Observed every "
        "CARBON_SOURCES_OBSERVE_CRON tick: a new data version for each stored hour of the last "
        "CARBON_REGISTRY_RECHECK_DAYS (7) days whose holdings differ from those its facts "
        "were attributed with, which the facts' automation re-derives."
    ),
)
def registry_source(
    context: dg.OpExecutionContext, registry: RegistryResource, warehouse: WarehouseResource
) -> dg.DataVersionsByPartition:
    until = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    days = env_int("CARBON_REGISTRY_RECHECK_DAYS", 7, minimum=0)
    stored = stored_versions(warehouse, "registry_version", until - timedelta(days=days), until)
    if stored.empty:
        return dg.DataVersionsByPartition({})
    first, last = stored.index.min().to_pydatetime(), stored.index.max().to_pydatetime() + HOUR
    intervals, _ = holdings(registry, warehouse, first, last, context.run.run_id)
    versions = changed(stored, registry_versions(intervals, first, last))
    context.log.info(
        f"{len(versions)} of {len(stored)} stored hour(s) have other holdings in the registry now"
    )
    return _by_partition(versions)


@dg.observable_source_asset(
    key="power_model",
    group_name="sources",
    partitions_def=hourly_partitions,
    automation_condition=observe_condition(),
    tags={"dagster/kind/csv": ""},
    description=(
        "The power model (watts per core, memory, embodied carbon: CARBON_*_WATTS_*, "
        "CARBON_POWER_MODEL_FILE) and the sites (CARBON_SITE*, CARBON_SITES_FILE). Observed "
        "every CARBON_SOURCES_OBSERVE_CRON tick: a new data version for every stored hour "
        "whose host usage was computed with another model, which the usage's automation "
        "re-derives."
    ),
)
def power_model_source(
    context: dg.OpExecutionContext,
    power_model: PowerModelResource,
    sites: SitesResource,
    warehouse: WarehouseResource,
) -> dg.DataVersionsByPartition:
    until = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    stored = stored_versions(warehouse, "power_model_version", PIPELINE_START, until)
    versions = changed(stored, model_version(power_model, sites))
    context.log.info(f"{len(versions)} of {len(stored)} stored hour(s) used another power model")
    return _by_partition(versions)


def _by_partition(versions: pd.Series) -> dg.DataVersionsByPartition:
    return dg.DataVersionsByPartition(
        {
            hour.strftime(PARTITION_KEY_FORMAT): dg.DataVersion(version)
            for hour, version in versions.items()
        }
    )
