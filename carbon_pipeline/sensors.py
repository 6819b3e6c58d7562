"""Re-materialise hours whose intensity was a forecast or the fallback once actuals exist."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from carbon_pipeline.automation import AUTOMATION_STATUS
from carbon_pipeline.captured import provenance_rank
from carbon_pipeline.config import env_int
from carbon_pipeline.intensity import hourly_intensity
from carbon_pipeline.partitions import range_tags
from carbon_pipeline.resources import CarbonIntensityResource, WarehouseResource
from carbon_pipeline.resources.carbon_intensity import CarbonIntensityError
from carbon_pipeline.resources.warehouse import load_query
from carbon_pipeline.schedules import hourly_job
from carbon_pipeline.tables import STAGE_TABLES
from carbon_pipeline.times import HOUR


def consecutive_ranges(hours: list[pd.Timestamp]) -> list[tuple[datetime, datetime]]:
    """Sorted hour starts grouped into [start, end) runs of consecutive hours."""
    ranges: list[tuple[datetime, datetime]] = []
    for hour in hours:
        start = hour.to_pydatetime()
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], start + HOUR)
        else:
            ranges.append((start, start + HOUR))
    return ranges


def improvable_hours(
    warehouse: WarehouseResource,
    api: CarbonIntensityResource,
    now: datetime,
    lookback_days: int,
) -> list[pd.Timestamp]:
    """Stored hours marked forecast or fallback for which the API now has something better,
    national or for a region of a site."""
    since = now - timedelta(days=lookback_days)
    until = now.replace(minute=0, second=0, microsecond=0)
    regional = _improvable_regional_hours(warehouse, api, since, until)
    stored = warehouse.read_frame(
        load_query("estimated_intensity_hours"), {"since": since, "until": until}
    )
    if stored.empty:
        return regional
    stored["timestamp_utc"] = pd.to_datetime(stored["timestamp_epoch"], unit="s", utc=True)
    first = stored["timestamp_utc"].min().to_pydatetime()
    last = stored["timestamp_utc"].max().to_pydatetime() + HOUR
    fresh = hourly_intensity(api.periods(first, last), first, last, on_missing="fallback")
    merged = stored.merge(fresh, on="timestamp_utc", suffixes=("_stored", "_now"))
    now_rank = provenance_rank(
        merged.rename(
            columns={"intensity_source_now": "intensity_source", "period_count_now": "period_count"}
        )
    )
    stored_rank = provenance_rank(
        merged.rename(
            columns={
                "intensity_source_stored": "intensity_source",
                "period_count_stored": "period_count",
            }
        )
    )
    return sorted(set(merged.loc[now_rank < stored_rank, "timestamp_utc"]) | set(regional))


def _improvable_regional_hours(
    warehouse: WarehouseResource, api: CarbonIntensityResource, since: datetime, until: datetime
) -> list[pd.Timestamp]:
    """Stored regional fallback hours for which the API now gives the region's intensity."""
    stored = warehouse.read_frame(
        load_query("regional_fallback_hours"), {"since": since, "until": until}
    )
    hours: set[pd.Timestamp] = set()
    for region_id, region in stored.groupby("region_id"):
        times = pd.to_datetime(region["timestamp_epoch"], unit="s", utc=True)
        first, last = times.min().to_pydatetime(), times.max().to_pydatetime() + HOUR
        fresh = hourly_intensity(
            api.periods(first, last, region_id=int(region_id)), first, last, on_missing="fallback"
        )
        given = fresh.loc[fresh["intensity_source"] != "fallback", "timestamp_utc"]
        hours.update(set(times) & set(given))
    return sorted(hours)


@dg.sensor(
    job=hourly_job,
    minimum_interval_seconds=env_int("CARBON_INTENSITY_RECHECK_SECONDS", 3600, minimum=30),
    default_status=AUTOMATION_STATUS,
    description=(
        "Finds hours stored with a forecast or fallback intensity (within "
        "CARBON_INTENSITY_RECHECK_DAYS, default 7) for which the API now has actuals, and "
        "re-materialises their intensity, host usage and facts."
    ),
)
def intensity_actuals_sensor(
    context: dg.SensorEvaluationContext,
    warehouse: WarehouseResource,
    carbon_intensity_api: CarbonIntensityResource,
):
    now = datetime.now(UTC)
    try:
        hours = improvable_hours(
            warehouse,
            carbon_intensity_api,
            now,
            env_int("CARBON_INTENSITY_RECHECK_DAYS", 7, minimum=0),
        )
    except CarbonIntensityError as exc:
        return dg.SkipReason(f"the Carbon Intensity API is not answering: {exc}")
    if not hours:
        return dg.SkipReason("no stored estimate has an actual yet")
    return [
        dg.RunRequest(
            run_key=f"actuals-{start:%Y%m%dT%H}-{end:%Y%m%dT%H}-{now:%Y%m%dT%H}",
            asset_selection=[
                dg.AssetKey(table)
                for stage in ("carbon_intensity", "fact_usage_instance", "usage_facts")
                for table in STAGE_TABLES[stage]
            ],
            tags=range_tags(start, end),
        )
        for start, end in consecutive_ranges(hours)
    ]
