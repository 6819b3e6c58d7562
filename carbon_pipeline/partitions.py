"""The one partitioning of every asset: UTC hours from CARBON_PIPELINE_START, and how
ranges of them are cut into runs."""

from __future__ import annotations

import os

import dagster as dg

from carbon_pipeline.times import parse_utc

DEFAULT_START = "2025-03-01T00:00Z"
# A backfill runs as one run per this many hours: few runs (each costs seconds of process
# start-up), but a failure costs one chunk, not the whole range. 0 means one run for any
# range, which `dagster asset materialize --partition-range` requires.
DEFAULT_HOURS_PER_RUN = 24 * 31

PIPELINE_START = parse_utc(os.getenv("CARBON_PIPELINE_START", DEFAULT_START))
HOURS_PER_RUN = int(os.getenv("CARBON_PIPELINE_BACKFILL_HOURS_PER_RUN", DEFAULT_HOURS_PER_RUN))

hourly_partitions = dg.HourlyPartitionsDefinition(
    start_date=PIPELINE_START.strftime("%Y-%m-%d-%H:%M"), timezone="UTC"
)
backfill_policy = (
    dg.BackfillPolicy.multi_run(max_partitions_per_run=HOURS_PER_RUN)
    if HOURS_PER_RUN > 0
    else dg.BackfillPolicy.single_run()
)
