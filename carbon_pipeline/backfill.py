"""Materialise every asset over a range of hours through Dagster, as few runs as sensible."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from carbon_pipeline.partitions import HOURS_PER_RUN, PIPELINE_START, range_tags
from carbon_pipeline.tables import STAGE_TABLES
from carbon_pipeline.terminal import RunReporter, run_warnings
from carbon_pipeline.times import chunks, whole_hours

log = logging.getLogger(__name__)
BACKFILL_TAG = "carbon-pipeline/backfill"
# Where a backfill may start: every stage, or re-deriving from the stored sources.
STAGES = {
    "sources": list(STAGE_TABLES),
    "usage": ["fact_usage_instance", "usage_facts"],
    "facts": ["usage_facts"],
}


class RangeError(ValueError):
    """A requested range does not fit the partitions."""


def check_range(start: datetime, end: datetime, now: datetime | None = None) -> None:
    """Refuse a range that is not whole UTC hours inside the partitions: from
    CARBON_PIPELINE_START to the last hour that has closed."""
    try:
        whole_hours(start, end)
    except ValueError as exc:
        raise RangeError(str(exc)) from None
    last_closed = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    if start < PIPELINE_START:
        raise RangeError(
            f"start {start:%Y-%m-%dT%H:%MZ} is before the first partition "
            f"{PIPELINE_START:%Y-%m-%dT%H:%MZ} (CARBON_PIPELINE_START)"
        )
    if end > last_closed:
        raise RangeError(
            f"end {end:%Y-%m-%dT%H:%MZ} is after the last closed hour {last_closed:%Y-%m-%dT%H:%MZ}"
        )


@dataclass
class ChunkResult:
    start: datetime
    end: datetime
    run_id: str
    success: bool
    seconds: float


def backfill(
    start: datetime,
    end: datetime,
    *,
    instance: dg.DagsterInstance,
    job: dg.JobDefinition | None = None,
    hours_per_run: int = HOURS_PER_RUN,
    from_stage: str = "sources",
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
    reporter: RunReporter | None = None,
) -> list[ChunkResult]:
    """One in-process run per `hours_per_run` hours of [start, end), recorded in `instance`
    (visible in the UI under Runs, tagged with one backfill id). Stops at the first failed
    chunk: chunks before it are committed, the failed one is untouched, and re-running the
    same range (or just the failed chunk) completes it. `from_stage` "usage" or "facts"
    re-derives from the stored sources without asking Prometheus or the API."""
    if from_stage not in STAGES:
        raise RangeError(f"--from must be one of {', '.join(STAGES)}, got {from_stage!r}")
    check_range(start, end)
    if job is None:
        from carbon_pipeline.definitions import defs

        job = defs.resolve_job_def("hourly_carbon_job")
    selection = (
        None
        if from_stage == "sources"
        else [dg.AssetKey(table) for stage in STAGES[from_stage] for table in STAGE_TABLES[stage]]
    )
    backfill_id = uuid.uuid4().hex[:8]
    results = []
    total = (end - start) / timedelta(hours=1)
    run_hours = hours_per_run if hours_per_run > 0 else int((end - start) / timedelta(hours=1))
    for chunk_start, chunk_end in chunks(start, end, run_hours):
        began = time.monotonic()
        if reporter:
            reporter.start(chunk_start, chunk_end)
        result = job.execute_in_process(
            instance=instance,
            run_config=run_config,
            tags={**(tags or {}), **range_tags(chunk_start, chunk_end), BACKFILL_TAG: backfill_id},
            asset_selection=selection,
            raise_on_error=False,
        )
        if reporter:
            reporter.finish(
                chunk_start,
                chunk_end,
                result.run_id,
                result.success,
                run_warnings(instance, result.run_id),
                None if result.success else first_error(result),
            )
        results.append(
            ChunkResult(
                chunk_start, chunk_end, result.run_id, result.success, time.monotonic() - began
            )
        )
        done = (chunk_end - start) / timedelta(hours=1)
        log.info(
            "backfill %s: %s..%s %s in %.1f s (%d/%d hours)",
            backfill_id,
            f"{chunk_start:%Y-%m-%dT%H:%MZ}",
            f"{chunk_end:%Y-%m-%dT%H:%MZ}",
            "succeeded" if result.success else "FAILED",
            results[-1].seconds,
            done,
            total,
        )
        if not result.success:
            break
    return results


def first_error(result: dg.ExecuteInProcessResult) -> str:
    """The first line of the error that failed the run's first failed step."""
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            while error.cause is not None and error.cls_name in (
                "DagsterExecutionStepExecutionError",
            ):
                error = error.cause
            return f"{event.step_key}: {error.message.strip().splitlines()[0]}"
    return "the run failed (see it in the UI)"
