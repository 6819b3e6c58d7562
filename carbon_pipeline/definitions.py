"""Everything Dagster loads, and the one place configuration is bound to the environment."""

from __future__ import annotations

import dagster as dg

from carbon_pipeline.assets.facts import usage_facts
from carbon_pipeline.assets.forecast import forecast_job, forecast_schedule, intensity_forecast
from carbon_pipeline.assets.sources import (
    CARBON_INTENSITY_API,
    PROMETHEUS,
    carbon_intensity,
    host_cpu_seconds,
    power_model_source,
    registry_source,
)
from carbon_pipeline.assets.usage import fact_usage_instance
from carbon_pipeline.assets.views import VIEWS
from carbon_pipeline.automation import (
    catch_up_sensor,
    facts_freshness,
    freshness_job,
    freshness_schedule,
)
from carbon_pipeline.config import env, env_choice, env_float, env_int, env_list, env_string_map
from carbon_pipeline.resources import (
    CarbonIntensityResource,
    PipelineSettings,
    PowerModelResource,
    PrometheusResource,
    RegistryResource,
    SitesResource,
    WarehouseResource,
)
from carbon_pipeline.resources.carbon_intensity import DEFAULT_API_URL
from carbon_pipeline.resources.prometheus import BUSY_MODES, IDLE_MODES
from carbon_pipeline.schedules import hourly_job, hourly_schedule
from carbon_pipeline.sensors import intensity_actuals_sensor

# The stages, each writing its tables' assets in one pass: what a run materialises.
ASSETS = [host_cpu_seconds, carbon_intensity, fact_usage_instance, usage_facts]
# Not by hour: the forecast, fetched every half hour, each fetch kept.
FORECAST = [intensity_forecast]
# The sources upstream of them: outside systems, and those observed for changes.
SOURCES = [PROMETHEUS, CARBON_INTENSITY_API, registry_source, power_model_source]
# Checks defined apart from their asset (evaluated by its runs and on their own schedule).
CHECKS = [facts_freshness]


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """Resources configured from the environment (see README, Configuration). Secrets
    (DATABASE_URL, PROMETHEUS_URL, MONGO_URI) stay EnvVars: read at run time, never shown."""
    return {
        "warehouse": WarehouseResource(
            database_url=dg.EnvVar("DATABASE_URL"),
            statement_timeout_seconds=env_float(
                "DATABASE_STATEMENT_TIMEOUT_SECONDS", 1800.0, minimum=0
            ),
            lock_timeout_seconds=env_float("DATABASE_LOCK_TIMEOUT_SECONDS", 600.0, minimum=0),
            idle_in_transaction_timeout_seconds=env_float(
                "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS", 900.0, minimum=0
            ),
            reporter_min_users=env_int("CARBON_REPORTER_MIN_USERS", 0, minimum=0) or None,
        ),
        "prometheus": PrometheusResource(
            prometheus_url=dg.EnvVar("PROMETHEUS_URL"),
            busy_modes=env_list("PROMETHEUS_BUSY_MODES", BUSY_MODES),
            idle_modes=env_list("PROMETHEUS_IDLE_MODES", IDLE_MODES),
            label_matchers=env_string_map("PROMETHEUS_LABEL_MATCHERS"),
            scrape_labels=env_list("PROMETHEUS_SCRAPE_LABELS", ["job"]),
            timeout_seconds=env_float("PROMETHEUS_QUERY_TIMEOUT_SECONDS", 120.0, minimum=1),
            run_timeout_seconds=env_float("PROMETHEUS_RUN_TIMEOUT_SECONDS", 3600.0, minimum=1),
            max_wait_seconds=env_float("HTTP_MAX_RETRY_WAIT_SECONDS", 60.0, minimum=0),
        ),
        "carbon_intensity_api": CarbonIntensityResource(
            api_url=env("CARBON_INTENSITY_API_URL", DEFAULT_API_URL),
            on_missing=env_choice("CARBON_INTENSITY_ON_MISSING", "fallback", ("fallback", "fail")),
            fallback_gco2eq_per_kwh=env_float("CARBON_INTENSITY_FALLBACK", 200.0, minimum=0),
            timeout_seconds=env_float("CARBON_INTENSITY_TIMEOUT_SECONDS", 60.0, minimum=1),
            run_timeout_seconds=env_float(
                "CARBON_INTENSITY_RUN_TIMEOUT_SECONDS", 1800.0, minimum=1
            ),
            max_wait_seconds=env_float("HTTP_MAX_RETRY_WAIT_SECONDS", 60.0, minimum=0),
        ),
        "registry": RegistryResource(
            mongo_uri=dg.EnvVar("MONGO_URI"),
            database=env("MONGO_DATABASE", "ada"),
            seed_dir=env("MONGO_SEED_DIR"),
            timeout_seconds=env_float("MONGO_TIMEOUT_SECONDS", 60.0, minimum=1),
            run_timeout_seconds=env_float("MONGO_RUN_TIMEOUT_SECONDS", 600.0, minimum=1),
        ),
        "power_model": PowerModelResource.from_env(),
        "sites": SitesResource(
            default_site=env("CARBON_SITE", "RAL"),
            default_region_id=env_int("CARBON_SITE_REGION_ID", 12, minimum=1),
            default_pue=env_float("CARBON_SITE_PUE", 1.0, minimum=1.0),
            sites_file=env("CARBON_SITES_FILE"),
        ),
        "settings": PipelineSettings(
            chunk_hours=env_int("CARBON_PIPELINE_CHUNK_HOURS", 744, minimum=1),
            chunk_host_hours=env_int("CARBON_PIPELINE_CHUNK_HOST_HOURS", 75_000, minimum=1),
        ),
    }


defs = dg.Definitions(
    assets=[*SOURCES, *ASSETS, *FORECAST, *VIEWS],
    asset_checks=CHECKS,
    # The stages run one after another and share one process: no per-step process start-up.
    executor=dg.in_process_executor,
    jobs=[hourly_job, freshness_job, forecast_job],
    schedules=[hourly_schedule(), freshness_schedule, forecast_schedule],
    sensors=[intensity_actuals_sensor, catch_up_sensor],
    resources=resources_from_env(),
)
