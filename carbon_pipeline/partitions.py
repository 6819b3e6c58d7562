"""The one partitioning of every asset: UTC hours from CARBON_PIPELINE_START, and how
ranges of them are cut into runs."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg

from carbon_pipeline.config import ConfigError, env, env_int
from carbon_pipeline.times import parse_utc

DEFAULT_START = "2025-03-01T00:00Z"
PARTITION_KEY_FORMAT = "%Y-%m-%d-%H:%M"
# A backfill runs as one run per this many hours: few runs (a run launched from the UI costs
# 5-10 s of process start and code loading), but a failure costs one run, not the whole
# range. Two months: a year is 6 runs, which the run queue runs three at once (measured for
# a year of 100 hosts from the UI: 160 s, against 175 s with runs of a month and 189 s with
# two at once). 0 means one run for any range, which `dagster asset materialize
# --partition-range` requires.
DEFAULT_HOURS_PER_RUN = 1460

try:
    PIPELINE_START = parse_utc(env("CARBON_PIPELINE_START", DEFAULT_START))
except ValueError as exc:
    raise ConfigError(f"CARBON_PIPELINE_START: {exc}") from None
HOURS_PER_RUN = env_int("CARBON_PIPELINE_BACKFILL_HOURS_PER_RUN", DEFAULT_HOURS_PER_RUN, minimum=0)

hourly_partitions = dg.HourlyPartitionsDefinition(
    start_date=PIPELINE_START.strftime("%Y-%m-%d-%H:%M"), timezone="UTC"
)
backfill_policy = (
    dg.BackfillPolicy.multi_run(max_partitions_per_run=HOURS_PER_RUN)
    if HOURS_PER_RUN > 0
    else dg.BackfillPolicy.single_run()
)


def range_tags(start: datetime, end: datetime) -> dict[str, str]:
    """Tags that make one run cover the partitions [start, end)."""
    return {
        "dagster/asset_partition_range_start": start.strftime(PARTITION_KEY_FORMAT),
        "dagster/asset_partition_range_end": (end - timedelta(hours=1)).strftime(
            PARTITION_KEY_FORMAT
        ),
    }
