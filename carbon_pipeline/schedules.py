"""The hourly schedule: each hour is materialised once it has closed and its last scrape landed."""

from __future__ import annotations

import dagster as dg

from carbon_pipeline.config import ConfigError, env_choice, env_int
from carbon_pipeline.partitions import hourly_partitions

hourly_job = dg.define_asset_job(
    "hourly_carbon_job",
    # Every asset partitioned by hour (the forecast is fetched by its own schedule).
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("forecast"),
    partitions_def=hourly_partitions,
    description="Every asset for one or more hours.",
)


def hourly_schedule() -> dg.ScheduleDefinition:
    """Runs at CARBON_PIPELINE_SCHEDULE_MINUTE (default 10) past every hour for the hour that
    just closed; CARBON_PIPELINE_SCHEDULE_STATUS=STOPPED leaves it off until switched on."""
    status = env_choice("CARBON_PIPELINE_SCHEDULE_STATUS", "RUNNING", ("RUNNING", "STOPPED"))
    minute = env_int("CARBON_PIPELINE_SCHEDULE_MINUTE", 10, minimum=0)
    if minute > 59:
        raise ConfigError(f"CARBON_PIPELINE_SCHEDULE_MINUTE={minute}: expected 0 to 59")
    return dg.build_schedule_from_partitioned_job(
        hourly_job,
        name="hourly_carbon_schedule",
        minute_of_hour=minute,
        default_status=dg.DefaultScheduleStatus[status],
        # Ahead of queued backfill chunks in the run queue.
        tags={"dagster/priority": "10"},
    )
