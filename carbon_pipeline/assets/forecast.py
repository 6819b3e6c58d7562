"""Forecast stage: the API's 48-hour forecasts, national and of each site's region, every
fetch kept as a vintage, for the views that tell users when to run (greenest_window)."""

from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from carbon_pipeline.assets.common import materialized, table_spec
from carbon_pipeline.assets.sources import CARBON_INTENSITY_API
from carbon_pipeline.config import env_choice
from carbon_pipeline.resources import CarbonIntensityResource, SitesResource, WarehouseResource
from carbon_pipeline.resources.carbon_intensity import CarbonIntensityError
from carbon_pipeline.resources.warehouse import ForecastFetch
from carbon_pipeline.retries import asset_retry_policy
from carbon_pipeline.secrets import mask_secrets
from carbon_pipeline.tables import FORECAST_TABLES
from carbon_pipeline.times import parse_utc

INTENSITY_FORECAST, FORECAST_FETCH, FORECAST_SITE, FORECAST_ERROR_DAILY = FORECAST_TABLES
FORECAST_FETCHED = "every_forecast_fetched"
NATIONAL = 0  # intensity_forecast.region_id of the national forecast
HALF_HOUR = timedelta(minutes=30)
FORECAST_CRON = "*/30 * * * *"


def half_hour_of(t: datetime) -> datetime:
    """The half-hour (UTC) that t falls in."""
    t = t.astimezone(UTC)
    return t.replace(minute=t.minute - t.minute % 30, second=0, microsecond=0)


class ForecastConfig(dg.Config):
    issued_at: str | None = Field(
        default=None,
        description=(
            "The half-hour to ask the forecast from (UTC, e.g. 2026-12-03T10:30Z); default: "
            "the half-hour now. Only to replay a fetch against a test server: the API's "
            "answer for a past half-hour is not the forecast it issued then."
        ),
    )


@dg.multi_asset(
    name="intensity_forecast",
    specs=[
        table_spec(
            table,
            group="forecast",
            kinds={"api"},
            deps=[CARBON_INTENSITY_API.key],
            automation_condition=None,
        )
        for table in FORECAST_TABLES
    ],
    check_specs=[
        dg.AssetCheckSpec(
            FORECAST_FETCHED,
            asset=INTENSITY_FORECAST,
            description="The national and every site's regional forecast were fetched.",
        )
    ],
    retry_policy=asset_retry_policy(),
)
def intensity_forecast(
    context: dg.AssetExecutionContext,
    config: ForecastConfig,
    carbon_intensity_api: CarbonIntensityResource,
    sites: SitesResource,
    warehouse: WarehouseResource,
):
    """The Carbon Intensity API's 48-hour forecast from this half-hour (`/fw48h`), national
    and of each configured site's GB region, stored with the half-hour it was issued for
    (`intensity_forecast`): a vintage is never overwritten. Every fetch is logged in
    `forecast_fetch`, with its error if it failed after its retries; the sites' regions go to
    `forecast_site`; the error sums of the days the new vintage covers are refreshed
    (`forecast_error_daily`; the intensity stage refreshes its window's days). A run fails when every fetch failed; a partial one stores what came and
    fails its check."""
    issued_at = half_hour_of(parse_utc(config.issued_at) if config.issued_at else datetime.now(UTC))
    by_project, rest = sites.table()
    site_regions = {site: region for site, region, _ in [*by_project.values(), rest]}
    fetches = []
    for region_id in [NATIONAL, *sorted(set(site_regions.values()))]:
        fetched_at = datetime.now(UTC)
        try:
            periods = carbon_intensity_api.forecast(
                issued_at, region_id=None if region_id == NATIONAL else region_id
            )
            fetches.append(ForecastFetch(region_id, issued_at, fetched_at, periods))
        except CarbonIntensityError as exc:
            context.log.warning(f"forecast of region {region_id} not fetched: {exc}")
            fetches.append(ForecastFetch(region_id, issued_at, fetched_at, None, str(exc)))
    written = warehouse.store_forecast(fetches, site_regions)
    failed = [f for f in fetches if f.error is not None]
    if len(failed) == len(fetches):
        # Each request was retried already; the next half-hour's run asks again.
        raise dg.Failure(
            description=f"no forecast fetched for {issued_at:%Y-%m-%dT%H:%MZ}: "
            + mask_secrets(failed[0].error)[:2000],
            allow_retries=False,
        )
    yield materialized(
        context,
        INTENSITY_FORECAST,
        written[INTENSITY_FORECAST],
        issued_at=issued_at.isoformat(),
        regions=", ".join(str(f.region_id) for f in fetches if f.error is None),
    )
    yield materialized(context, FORECAST_FETCH, written[FORECAST_FETCH], failed=len(failed))
    yield materialized(context, FORECAST_SITE, written[FORECAST_SITE])
    yield materialized(context, FORECAST_ERROR_DAILY, written[FORECAST_ERROR_DAILY])
    yield dg.AssetCheckResult(
        asset_key=INTENSITY_FORECAST,
        check_name=FORECAST_FETCHED,
        passed=not failed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "issued_at": issued_at.isoformat(),
            "failed_regions": ", ".join(str(f.region_id) for f in failed),
            "errors": "; ".join(mask_secrets(f.error)[:300] for f in failed),
        },
    )


forecast_job = dg.define_asset_job(
    "intensity_forecast_job",
    selection=dg.AssetSelection.groups("forecast"),
    description="The API's 48-hour forecasts, from the half-hour now.",
)
forecast_schedule = dg.ScheduleDefinition(
    name="intensity_forecast_schedule",
    job=forecast_job,
    cron_schedule=FORECAST_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus[
        env_choice("CARBON_PIPELINE_SCHEDULE_STATUS", "RUNNING", ("RUNNING", "STOPPED"))
    ],
    description="Every half hour: the forecast from that half-hour (a new vintage).",
)
