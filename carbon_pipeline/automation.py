"""What runs by itself besides the hourly schedule: the catch-up of hours that were never
materialised or whose runs failed, and usage_facts' freshness check, evaluated by every run
and on its own schedule.

Catch-up is Dagster's declarative automation: every asset carries the condition below, and
the `catch_up_sensor` evaluates it. An hour is requested when it is missing (no
materialisation: never run, or its last run failed), not in progress, older than
CATCH_UP_SETTLE_HOURS (the hourly schedule's hours are its own) and within
CARBON_PIPELINE_CATCHUP_DAYS of the latest hour, at most once per hour (each time the cron
tick CATCH_UP_CRON passes): a source that is down is asked again an hour later, not every
sensor tick. Requests for many hours become backfills cut by the assets' backfill policy,
visible in the UI like any other."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from carbon_pipeline.checks import FRESHNESS
from carbon_pipeline.config import env_choice, env_float, env_int
from carbon_pipeline.resources.warehouse import WarehouseResource

CATCH_UP_DAYS = env_int("CARBON_PIPELINE_CATCHUP_DAYS", 7, minimum=0)
CATCH_UP_SETTLE_HOURS = 2
CATCH_UP_CRON = "40 * * * *"
_STATUS = env_choice("CARBON_PIPELINE_SCHEDULE_STATUS", "RUNNING", ("RUNNING", "STOPPED"))


def catch_up_condition(days: int = CATCH_UP_DAYS) -> dg.AutomationCondition | None:
    """The condition every asset carries (None when CARBON_PIPELINE_CATCHUP_DAYS is 0)."""
    if days <= 0:
        return None
    condition = dg.AutomationCondition
    return (
        condition.in_latest_time_window(timedelta(days=days))
        & ~condition.in_latest_time_window(timedelta(hours=CATCH_UP_SETTLE_HOURS))
        & condition.missing()
        & ~condition.in_progress()
        & condition.cron_tick_passed(CATCH_UP_CRON, "UTC").since_last_handled()
    ).with_label(f"missing or failed in the last {days} days: catch up")


@dg.asset_check(
    asset="usage_facts",
    name=FRESHNESS,
    description=(
        "The newest hour in fact_usage_ada is at most CARBON_PIPELINE_FRESHNESS_HOURS "
        "(default 3) hours old. Evaluated by every run and on its own schedule "
        "(freshness_schedule), so that a stopped pipeline is seen."
    ),
)
def usage_facts_freshness(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    """Whether the newest hour the facts hold is recent (a backfill of history fails it,
    as it should: the warehouse is not up to date)."""
    limit_hours = env_float("CARBON_PIPELINE_FRESHNESS_HOURS", 3.0, minimum=0)
    with warehouse.connect() as conn:
        (newest,) = conn.execute("SELECT max(timestamp_utc) FROM fact_usage_ada").fetchone()
    age = (datetime.now(UTC) - newest).total_seconds() / 3600 if newest else float("inf")
    return dg.AssetCheckResult(
        check_name=FRESHNESS,
        passed=age <= limit_hours,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "newest_hour": newest.isoformat() if newest else "none",
            "age_hours": round(age, 2),
            "limit_hours": limit_hours,
        },
    )


catch_up_sensor = dg.AutomationConditionSensorDefinition(
    "catch_up_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus[_STATUS],
    minimum_interval_seconds=60,
    description=(
        "Materialises the hours of the last CARBON_PIPELINE_CATCHUP_DAYS (7) days that were "
        "never materialised or whose runs failed, once an hour (see carbon_pipeline/automation.py)."
    ),
)

freshness_job = dg.define_asset_job(
    "freshness_check_job",
    selection=dg.AssetSelection.checks(usage_facts_freshness),
    description="The freshness check of usage_facts alone.",
)

freshness_schedule = dg.ScheduleDefinition(
    name="freshness_schedule",
    job=freshness_job,
    cron_schedule="25,55 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus[_STATUS],
    description=(
        "Evaluates usage_facts' freshness check twice an hour, whether or not any run "
        "happens: a stopped pipeline fails it."
    ),
)
