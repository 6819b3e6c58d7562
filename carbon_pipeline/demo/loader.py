"""Put a generated fleet where the pipeline reads: history into a Prometheus TSDB, the
registry into mongoexport-style seed files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
from bson import ObjectId, json_util

from carbon_pipeline.demo.fleet import Fleet
from carbon_pipeline.demo.openmetrics import write_eof, write_family
from carbon_pipeline.demo.prometheus_server import BlockConversion


def load_history(
    fleet: Fleet,
    start: datetime,
    end: datetime,
    data_dir: Path,
    work_dir: Path,
    slice_hours: int = 24 * 31,
) -> pd.DataFrame:
    """Write the fleet's node_cpu_seconds_total history for [start, end] into TSDB blocks in
    data_dir, one OpenMetrics file (then block) per slice to bound promtool's memory. Returns
    the true CPU seconds per host-hour."""
    work_dir.mkdir(parents=True, exist_ok=True)
    truths = []
    converting = None  # promtool converts one slice while the next one is generated
    for number, (series, gauges, truth) in enumerate(fleet.slices(start, end, slice_hours)):
        path = work_dir / f"history-{number:03d}.om"
        with path.open("w", encoding="utf-8") as out:
            write_family(out, "node_cpu_seconds_total", series, "counter")
            write_family(out, "node_memory_MemTotal_bytes", gauges, "gauge")
            write_eof(out)
        if converting:
            converting.wait()
        converting = BlockConversion(path, data_dir)
        truths.append(truth)
    if converting:
        converting.wait()
    return pd.concat(truths, ignore_index=True)


def write_registry_seed(fleet: Fleet, folder: Path) -> Path:
    """workspaces.json, users.json and groups.json as mongoexport writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, documents in (
        ("workspaces", fleet.workspaces),
        ("users", fleet.users),
        ("groups", fleet.groups),
    ):
        with (folder / f"{name}.json").open("w", encoding="utf-8") as out:
            for number, document in enumerate(documents):
                doc = {"_id": ObjectId(f"{number + 1:024x}"), **document}
                out.write(json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS) + "\n")
    return folder
