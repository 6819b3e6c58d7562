"""What runs by itself besides the hourly schedule: the catch-up of hours that were never
materialised or whose runs failed; the re-derivation of the hours a changed source affects;
the observation of those sources; and fact_usage_ada's freshness check, evaluated by every
run and on its own schedule. One sensor, Dagster's automation sensor `catch_up_sensor`,
evaluates every condition below.

Catch-up is Dagster's declarative automation: every asset carries the condition below, and
the `catch_up_sensor` evaluates it. An hour is requested when it is missing (no
materialisation: never run, or its last run failed), not in progress, older than
CATCH_UP_SETTLE_HOURS (the hourly schedule's hours are its own) and within
CARBON_PIPELINE_CATCHUP_DAYS of the latest hour, at most once per hour (each time the cron
tick CATCH_UP_CRON passes): a source that is down is asked again an hour later, not every
sensor tick. Requests for many hours become backfills cut by the assets' backfill policy,
visible in the UI like any other.

Re-derivation: the observable sources `workspace_registry` and `power_model` are observed
every SOURCES_OBSERVE_CRON tick; each reports a new data version for exactly the hours whose
registry holdings or power model differ from what the hour was derived from
(carbon_pipeline/derivation.py). A table whose source changed for an hour it holds, or whose
upstream table is re-materialised without it, is requested for that hour: the facts for a
registry correction, host usage and the facts for a changed power model or sites file. Late
actuals are the `intensity_actuals_sensor`'s (carbon_pipeline/sensors.py): it asks the API
which stored estimates it can now improve, which no observation of ours could say cheaper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from carbon_pipeline.checks import FRESHNESS
from carbon_pipeline.config import env, env_choice, env_float, env_int
from carbon_pipeline.resources.warehouse import WarehouseResource

CATCH_UP_DAYS = env_int("CARBON_PIPELINE_CATCHUP_DAYS", 7, minimum=0)
CATCH_UP_SETTLE_HOURS = 2
CATCH_UP_CRON = "40 * * * *"
SOURCES_OBSERVE_CRON = env("CARBON_SOURCES_OBSERVE_CRON", "*/15 * * * *")
AUTOMATION_SECONDS = env_int("CARBON_PIPELINE_AUTOMATION_SECONDS", 60, minimum=5)
# The sources observed for changes: partitioned by hour, a new data version per changed hour.
OBSERVED_SOURCES = ("workspace_registry", "power_model")
_STATUS = env_choice("CARBON_PIPELINE_SCHEDULE_STATUS", "RUNNING", ("RUNNING", "STOPPED"))
# The sensors' own switch (default: as the schedules).
AUTOMATION_STATUS = dg.DefaultSensorStatus[
    env_choice("CARBON_PIPELINE_AUTOMATION_STATUS", _STATUS, ("RUNNING", "STOPPED"))
]


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


def rederive_condition() -> dg.AutomationCondition:
    """A stored hour (materialised before) whose observed source changed since it was last
    requested or materialised, or whose upstream table was re-materialised by a run that did
    not include it or will be this tick: not while it is in progress."""
    condition = dg.AutomationCondition
    observed = dg.AssetSelection.assets(*OBSERVED_SOURCES)
    source_changed = condition.any_deps_match(condition.newly_updated()).allow(observed)
    upstream_changed = condition.any_deps_match(
        condition.will_be_requested()
        | (condition.newly_updated() & ~condition.executed_with_root_target())
    ).ignore(observed)
    return (
        ~condition.missing()
        & (source_changed | upstream_changed).since_last_handled()
        & ~condition.in_progress()
    ).with_label("a source changed for a stored hour: re-derive")


def derived_condition() -> dg.AutomationCondition:
    """The condition of every table derived from the stored sources (host usage, facts)."""
    catch_up = catch_up_condition()
    return rederive_condition() if catch_up is None else catch_up | rederive_condition()


def observe_condition() -> dg.AutomationCondition:
    """An observable source is observed (once, for its latest hour: the observation reports
    every hour that changed) at every SOURCES_OBSERVE_CRON tick."""
    condition = dg.AutomationCondition
    return (
        condition.in_latest_time_window()
        & condition.cron_tick_passed(SOURCES_OBSERVE_CRON, "UTC").since_last_handled()
        & ~condition.in_progress()
    ).with_label(f"observe at {SOURCES_OBSERVE_CRON}")


@dg.asset_check(
    asset="fact_usage_ada",
    name=FRESHNESS,
    description=(
        "The newest hour in fact_usage_ada is at most CARBON_PIPELINE_FRESHNESS_HOURS "
        "(default 3) hours old. Evaluated by every run and on its own schedule "
        "(freshness_schedule), so that a stopped pipeline is seen."
    ),
)
def facts_freshness(warehouse: WarehouseResource) -> dg.AssetCheckResult:
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
    target=dg.AssetSelection.all(include_sources=True),
    default_status=AUTOMATION_STATUS,
    minimum_interval_seconds=AUTOMATION_SECONDS,
    description=(
        "Dagster's automation: materialises the hours of the last CARBON_PIPELINE_CATCHUP_DAYS "
        "(7) days that were never materialised or whose runs failed, once an hour; observes "
        "the registry and the power model every CARBON_SOURCES_OBSERVE_CRON tick and "
        "re-derives the stored hours they changed (see carbon_pipeline/automation.py)."
    ),
)

freshness_job = dg.define_asset_job(
    "freshness_check_job",
    selection=dg.AssetSelection.checks(facts_freshness),
    description="The freshness check of fact_usage_ada alone.",
)

freshness_schedule = dg.ScheduleDefinition(
    name="freshness_schedule",
    job=freshness_job,
    cron_schedule="25,55 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus[_STATUS],
    description=(
        "Evaluates fact_usage_ada's freshness check twice an hour, whether or not any run "
        "happens: a stopped pipeline fails it."
    ),
)
