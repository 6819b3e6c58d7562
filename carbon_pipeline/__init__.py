"""carbon-pipeline: hourly electricity and carbon accounting for a research cloud."""

import os

# Dagster's own bookkeeping dominates a long ranged run unless events are written in batches
# and a run plans its partitions as one subset (one event per asset, not one per partition):
# measured here, a year of 4 assets took ~16 s with both and several minutes without. Any
# process that loads this package (CLI, run workers) gets these defaults; set them in the
# webserver's and daemon's environment too (see README, "Dagster's bookkeeping").
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "10000")
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
