"""What every stage shares: its partitions and policies, its tables' asset specs, its window
and progress reporting."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import datetime

import dagster as dg
from pandera.errors import SchemaError, SchemaErrors

from carbon_pipeline import catalog, timing
from carbon_pipeline.attribution import GroupNameError
from carbon_pipeline.config import ConfigError
from carbon_pipeline.energy import MissingInputError
from carbon_pipeline.intensity import MissingIntensityError
from carbon_pipeline.partitions import backfill_policy, hourly_partitions
from carbon_pipeline.resources.power_model import PowerModelError
from carbon_pipeline.resources.registry import RegistryError
from carbon_pipeline.resources.sites import SitesError
from carbon_pipeline.retries import asset_retry_policy
from carbon_pipeline.secrets import mask_secrets
from carbon_pipeline.times import whole_hours

# What every stage shares: one partitioning, one backfill policy, one retry policy.
STAGE_DEFAULTS = {
    "partitions_def": hourly_partitions,
    "backfill_policy": backfill_policy,
    "retry_policy": asset_retry_policy(),
}
OWNERS = ["team:ada-carbon"]


def table_spec(
    table: str,
    *,
    group: str,
    kinds: set[str],
    deps: list[str],
    automation_condition: dg.AutomationCondition | None,
) -> dg.AssetSpec:
    """The asset of one warehouse table: its meaning and columns as the table's COMMENTs
    say (sql/catalog.json), its place in the graph, who owns it."""
    return dg.AssetSpec(
        key=table,
        deps=deps,
        group_name=group,
        kinds={*kinds, "postgres"},
        owners=OWNERS,
        description=catalog.description(table),
        metadata={
            "dagster/column_schema": catalog.column_schema(table),
            "dagster/table_name": f"public.{table}",
        },
        automation_condition=automation_condition,
    )


def materialized(
    context: dg.AssetExecutionContext, table: str, rows: int, **summary
) -> dg.MaterializeResult:
    """A table's materialisation: the rows the run wrote into it (for a range, its window's).
    The stage's summary (totals, seconds) goes on a one-hour run's materialisation, which the
    UI plots across partitions. A ranged run reports its window's summary once, as an
    observation of the window's last hour: Dagster copies a ranged run's materialisation
    metadata onto each of its partitions (1,460 a run, about 0.15 s a year per entry), where a
    window's totals would read as each hour's."""
    if summary and is_ranged(context):
        first, last = context.partition_key_range.start, context.partition_key_range.end
        context.log_event(
            dg.AssetObservation(
                asset_key=table,
                partition=last,
                metadata={"window_first_hour": first, "window_last_hour": last, **summary},
            )
        )
        summary = {}
    return dg.MaterializeResult(
        asset_key=table, metadata={"dagster/row_count": int(rows), **summary}
    )


def is_ranged(context: dg.AssetExecutionContext) -> bool:
    """Whether the run materialises more than one partition."""
    if not context.has_partition_key_range:
        return False
    keys = context.partition_key_range
    return keys.start != keys.end


# A run with this tag set to "true" replaces the stored host-hours of its window with what
# Prometheus answers now, deleting those it no longer has (see carbon_pipeline.captured).
REPLACE_SOURCES_TAG = "carbon-pipeline/replace-sources"


def replace_sources(context: dg.AssetExecutionContext) -> bool:
    return context.run.tags.get(REPLACE_SOURCES_TAG, "").lower() in ("true", "1", "yes")


# Errors in the input, which no retry can mend.
INPUT_ERRORS = (
    GroupNameError,
    SitesError,
    SchemaError,
    SchemaErrors,
    ConfigError,
    MissingInputError,
    MissingIntensityError,
    PowerModelError,
    RegistryError,
)


def bad_input_fails_at_once(body: Callable) -> Callable:
    """An asset body whose input is wrong (configuration, registry documents, a frame that
    fails its schema, an upstream stage not run) fails at once, naming what was wrong: the
    retry policy is for transient faults (a source down, a lost connection), and retrying a
    deterministic error only delays the message. Every failure of the window is recorded in
    the warehouse's window_failures, so that its hours show as failed, not as not run."""

    @functools.wraps(body)
    def guarded(context: dg.AssetExecutionContext, *args, **kwargs):
        try:
            yield from body(context, *args, **kwargs)
        except INPUT_ERRORS as exc:
            _record_failure(context, kwargs.get("warehouse"), exc)
            raise dg.Failure(
                description=f"{type(exc).__name__}: {mask_secrets(str(exc))[:4000]}",
                allow_retries=False,
            ) from exc
        except Exception as exc:
            _record_failure(context, kwargs.get("warehouse"), exc)
            raise

    return guarded


def _record_failure(context: dg.AssetExecutionContext, warehouse, exc: Exception) -> None:
    """The window's failure, for the coverage views (a retry that succeeds leaves data, which
    the views show instead). Recording never hides the run's own error."""
    if warehouse is None:
        return
    try:
        start, end = window(context)
        warehouse.record_failure(
            context.run.run_id,
            context.op_def.name,
            start,
            end,
            f"{type(exc).__name__}: {exc}",
        )
    except Exception as recording:  # noqa: BLE001 - the warehouse may be what failed
        context.log.warning(f"could not record the failure in the warehouse: {recording}")


def window(context: dg.AssetExecutionContext) -> tuple[datetime, datetime]:
    """[start, end) of the partitions this run materialises: one hour or a whole range."""
    time_window = context.partition_time_window
    whole_hours(time_window.start, time_window.end)
    return time_window.start, time_window.end


PROGRESS_SECONDS = 5.0
# Called as listener(asset, hours_done, total_hours, rows) after every chunk, in the process
# that runs the asset: how `carbon-pipeline backfill` draws its progress bars.
PROGRESS_LISTENERS: list[Callable[[str, float, float, int], None]] = []


class Progress:
    """Logs, per chunk, hours done of total, rows written, rate and time left: at most every
    PROGRESS_SECONDS and at the end (each log line is an event Dagster stores)."""

    def __init__(self, context: dg.AssetExecutionContext, start: datetime, end: datetime):
        self._context = context
        self._asset = context.op_def.name
        self._total_hours = (end - start).total_seconds() / 3600
        self._began = time.monotonic()
        self.hours_done = 0.0
        self.rows = 0
        self._phases_at_start = timing.totals()
        self._logged = self._began

    def finish(self) -> dict:
        """Logs the seconds this stage spent per phase; returns the seconds spent as
        materialisation metadata. The breakdown goes to the run's log, not the metadata:
        Dagster stores a ranged run's metadata once per partition, and each entry costs about
        0.15 s a year per asset."""
        now = timing.totals()
        spent = {name: now[name] - self._phases_at_start[name] for name in now}
        seconds = time.monotonic() - self._began
        self._context.log.info(
            f"{seconds:.1f} s in all; by phase: "
            + ", ".join(f"{name} {value:.2f} s" for name, value in spent.items() if value)
        )
        return {"seconds": round(seconds, 3)}

    def chunk_done(self, chunk_start: datetime, chunk_end: datetime, rows: int) -> None:
        self.hours_done += (chunk_end - chunk_start).total_seconds() / 3600
        self.rows += rows
        for listener in PROGRESS_LISTENERS:
            listener(self._asset, self.hours_done, self._total_hours, self.rows)
        now = time.monotonic()
        if self.hours_done < self._total_hours and now - self._logged < PROGRESS_SECONDS:
            return
        self._logged = now
        elapsed = now - self._began
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        left = elapsed / self.hours_done * (self._total_hours - self.hours_done)
        self._context.log.info(
            f"{self.hours_done:.0f}/{self._total_hours:.0f} hours "
            f"({100 * self.hours_done / self._total_hours:.0f}%), {self.rows} rows, "
            f"{rate:,.0f} rows/s, about {left:.0f} s left"
        )
