"""carbon-pipeline: hourly electricity and carbon accounting for a research cloud."""

import os

# Dagster's bookkeeping dominates a long ranged run unless events are written in batches
# and a run plans its partitions as one subset (one event per asset, not one per partition):
# measured here, a year of 4 assets took ~16 s with both and several minutes without. Every
# process that writes events needs them: any process that loads this package (CLI, run
# workers) gets these defaults, and `carbon-pipeline ui` passes them to the webserver and the
# daemon (a UI backfill without them took twice as long).
BATCHING = {
    "DAGSTER_EVENT_BATCH_SIZE": "10000",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
}
for _name, _value in BATCHING.items():
    os.environ.setdefault(_name, _value)
