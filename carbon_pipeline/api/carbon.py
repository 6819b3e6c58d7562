"""The seed's carbon router (`/carbon`): intensity now and ahead, calculations and equivalencies,
each from what the pipeline stored (the intensity and forecast it fetched, the configured power
model), never from an outside service on request."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from carbon_pipeline.api.db import REPORTER, Database
from carbon_pipeline.api.models import (
    ERRORS,
    MAX_CPU_SECONDS,
    MAX_GCO2EQ,
    CalculateRequest,
    Calculation,
    Equivalencies,
    EquivalenciesRequest,
    Equivalency,
    Forecast,
    ForecastPeriod,
    Intensity,
)
from carbon_pipeline.energy import JOULES_PER_KWH
from carbon_pipeline.resources.power_model import PowerModelResource

router = APIRouter(prefix="/carbon", tags=["carbon"], responses=ERRORS)


def database(request: Request) -> Database:
    return request.app.state.database


def power_model(request: Request) -> PowerModelResource:
    return request.app.state.power_model


def _age(issued: datetime | None) -> float | None:
    return (datetime.now(UTC) - issued).total_seconds() if issued else None


@router.get(
    "/intensity/current",
    response_model=Intensity,
    description="The GB grid's carbon intensity now: the current half-hour of the latest "
    "forecast the pipeline stored (national, and a site's region if asked), how old that "
    "forecast is, and the latest hour whose actual intensity is stored. Batch world: the seed "
    "asked the Carbon Intensity API on each request; this reads the pipeline's half-hourly "
    "fetches, so it is as fresh as the last fetch (age_seconds).",
)
def current_intensity(
    site: str | None = Query(None, description="A configured site (regional intensity)."),
    db: Database = Depends(database),
) -> Intensity:
    (row,) = db.rows(REPORTER, "api_intensity_now", {"site": site})
    if site is not None and row["site"] is None:
        raise HTTPException(404, f"no forecast is stored for a site named {site!r}")
    return Intensity(
        intensity=row["national_gco2eq_per_kwh"],
        index=row["national_index"],
        period_from=row["period_from"],
        period_to=row["period_to"],
        issued_at=row["issued_at"],
        age_seconds=_age(row["issued_at"]),
        site=site,
        regional_intensity=row["regional_gco2eq_per_kwh"] if site else None,
        regional_index=row["regional_index"] if site else None,
        last_actual_hour=row["last_actual_hour"],
        last_actual_intensity=row["last_actual_intensity"],
    )


@router.get(
    "/intensity/forecast",
    response_model=Forecast,
    description="The next hours as last forecast (the latest stored vintage), national or a "
    "site's region, half-hour by half-hour, with the vintage's age. An empty list: no forecast "
    "stored for the coming hours (the forecast schedule has not run).",
)
def forecast(
    hours: int = Query(48, ge=1, le=48, description="How far ahead: 24 or 48 hours (up to 48)."),
    site: str | None = Query(None, description="A configured site; default: national."),
    db: Database = Depends(database),
) -> Forecast:
    found = db.rows(REPORTER, "api_forecast", {"site": site, "hours": hours})
    issued = found[0]["issued_at"] if found else None
    return Forecast(
        area="regional" if site else "national",
        site=site,
        issued_at=issued,
        age_seconds=_age(issued),
        forecasts=[
            ForecastPeriod(
                period_from=r["period_from"],
                period_to=r["period_to"],
                intensity=r["forecast_gco2eq_per_kwh"],
                index=r["intensity_index"],
            )
            for r in found
        ],
    )


def _equivalencies(db: Database, gco2eq: float) -> Equivalencies:
    found = [Equivalency(**r) for r in db.rows(REPORTER, "api_equivalencies", {"gco2eq": gco2eq})]
    return Equivalencies(
        gco2eq=gco2eq,
        equivalencies=found,
        carbon_equivalencies={e.equivalency: e.amount for e in found},
    )


@router.post(
    "/equivalencies",
    response_model=Equivalencies,
    description="What an amount of gCO2eq equals in everyday terms (the warehouse's "
    "equivalency table, with its sources).",
)
def equivalencies(body: EquivalenciesRequest, db: Database = Depends(database)) -> Equivalencies:
    return _equivalencies(db, body.gco2eq)


@router.get(
    "/equivalencies/{gco2eq}",
    response_model=Equivalencies,
    description="As POST /carbon/equivalencies.",
)
def equivalencies_of(
    gco2eq: float = Path(
        ge=0, le=MAX_GCO2EQ, allow_inf_nan=False, description="An amount of gCO2eq."
    ),
    db: Database = Depends(database),
) -> Equivalencies:
    return _equivalencies(db, gco2eq)


@functools.lru_cache(maxsize=1024)
def _watts(model: PowerModelResource, machine_name: str | None) -> tuple[float, float]:
    """A machine type's busy and idle watts per core (the model's file read once a type)."""
    import pandas as pd

    factors = model.model_for(pd.Series([machine_name]))
    return float(factors["busy_watts_per_core"].iloc[0]), float(
        factors["idle_watts_per_core"].iloc[0]
    )


@router.post(
    "/calculate",
    response_model=Calculation,
    description="Energy and carbon of CPU-seconds: the configured power model (a machine "
    "type's watts if given), and the stored national intensity of the hour asked (default: the "
    "latest stored hour). Batch world: the seed used the intensity of the moment of the request.",
)
def calculate(
    body: CalculateRequest,
    db: Database = Depends(database),
    model: PowerModelResource = Depends(power_model),
) -> Calculation:
    busy_w, idle_w = _watts(model, body.machine_name)
    busy_kwh = busy_w * body.busy_cpu_seconds / JOULES_PER_KWH
    idle_kwh = idle_w * body.idle_cpu_seconds / JOULES_PER_KWH
    hour = body.timestamp.replace(minute=0, second=0, microsecond=0) if body.timestamp else None
    found = db.rows(REPORTER, "api_intensity_at", {"hour": hour})
    if hour is not None and not found:
        raise HTTPException(404, f"no intensity is stored for the hour {hour:%Y-%m-%dT%H:%MZ}")
    intensity = found[0]["intensity_gco2eq_per_kwh"] if found else None
    total = None if intensity is None else (busy_kwh + idle_kwh) * intensity
    return Calculation(
        busy_cpu_seconds=body.busy_cpu_seconds,
        idle_cpu_seconds=body.idle_cpu_seconds,
        busy_watts_per_core=busy_w,
        idle_watts_per_core=idle_w,
        busy_usage_kwh=busy_kwh,
        idle_usage_kwh=idle_kwh,
        total_usage_kwh=busy_kwh + idle_kwh,
        carbon_intensity_g_per_kwh=intensity,
        intensity_hour=found[0]["timestamp_utc"] if found else None,
        intensity_source=found[0]["intensity_source"] if found else None,
        busy_usage_gco2eq=None if intensity is None else busy_kwh * intensity,
        idle_usage_gco2eq=None if intensity is None else idle_kwh * intensity,
        total_usage_gco2eq=total,
        carbon_equivalencies={}
        if total is None
        else _equivalencies(db, total).carbon_equivalencies,
    )


@router.get(
    "/electricity/estimate",
    response_model=Calculation,
    description="Energy of CPU-seconds by the configured power model, with the carbon at the "
    "latest stored hour's intensity (as POST /carbon/calculate without a timestamp).",
)
def estimate(
    busy_cpu_seconds: float = Query(ge=0, le=MAX_CPU_SECONDS, allow_inf_nan=False),
    idle_cpu_seconds: float = Query(0.0, ge=0, le=MAX_CPU_SECONDS, allow_inf_nan=False),
    machine_name: str | None = Query(None, description="Its power model; default: the defaults."),
    db: Database = Depends(database),
    model: PowerModelResource = Depends(power_model),
) -> Calculation:
    return calculate(
        CalculateRequest(
            busy_cpu_seconds=busy_cpu_seconds,
            idle_cpu_seconds=idle_cpu_seconds,
            machine_name=machine_name,
        ),
        db,
        model,
    )
