"""The API's answers. The seed's fields keep the seed's names (WorkspaceUsageEntry: busy_cpu_
seconds_total ... total_usage_gco2eq, carbon_intensity_g_per_kwh, carbon_equivalencies,
status); what the warehouse adds (the period and how much of it is stored, the full footprint,
the intensity's provenance) comes as further fields an old client ignores."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, Field, Strict

# A number in a request body is a number: not true, not "12".
Number = Annotated[float, Strict()]

# Bounds on what a request may say: beyond them no answer is finite (a JSON number).
MAX_CPU_SECONDS = 1e12  # 31,700 core-years
MAX_GCO2EQ = 1e15  # a billion tonnes


class Problem(BaseModel):
    """An error: what was wrong, in one line."""

    detail: str


ERRORS = {
    400: {"model": Problem, "description": "The body is not JSON."},
    401: {"model": Problem, "description": "No valid bearer token where one is needed."},
    403: {"model": Problem, "description": "The token does not give this caller that data."},
    404: {"model": Problem, "description": "No such user, group, workspace or stored hour."},
    503: {
        "model": Problem,
        "description": "The warehouse or the token issuer did not answer in time (Retry-After).",
    },
}


class Period(BaseModel):
    start: datetime | None = Field(description="Null for a lifetime: every hour stored.")
    end: datetime | None
    hours_in_period: int | None = Field(description="Hours in [start, end).")
    hours_shown: int = Field(
        description="Hours of the period with numbers for this entity: stored, and for callers "
        "without rights also released (docs/security.md). Fewer than hours_in_period: the "
        "sums cover only these hours."
    )


class Footprint(BaseModel):
    """The full footprint beside the seed's CPU-only numbers (docs/methodology.md); null where
    unknown or, for callers without rights, not shown."""

    memory_kwh: float | None = None
    overhead_kwh: float | None = None
    full_kwh: float | None = None
    embodied_gco2eq: float | None = None
    full_gco2eq: float | None = None
    regional_gco2eq: float | None = None
    footprint_unknown_hours: int | None = Field(
        default=None, description="Hours whose full footprint is unknown or not shown."
    )


class Usage(BaseModel):
    """The seed's usage numbers, over a period."""

    busy_cpu_seconds_total: float | None = None
    idle_cpu_seconds_total: float | None = None
    busy_usage_kwh: float | None = None
    idle_usage_kwh: float | None = None
    total_usage_kwh: float | None = None
    busy_usage_gco2eq: float | None = None
    idle_usage_gco2eq: float | None = None
    total_usage_gco2eq: float | None = None
    carbon_intensity_g_per_kwh: float | None = Field(
        default=None, description="Energy-weighted intensity of the period: gCO2eq / kWh."
    )
    carbon_equivalencies: dict[str, float] = Field(
        default_factory=dict, description="total_usage_gco2eq in everyday terms (per unit)."
    )
    status: str = Field(
        description="complete: every hour of the period is shown; processed: some are; "
        "initialized: none (the seed's statuses, for a stored record)."
    )
    period: Period
    footprint: Footprint = Field(default_factory=Footprint)
    estimated_hours: int | None = Field(
        default=None, description="Hours whose intensity was a forecast or the fallback."
    )


class WorkspaceUsageEntry(Usage):
    workspace_id: str
    hostname: str
    owner: str | None = None
    timestamp: datetime = Field(description="Start of the period (the seed: the hour tracked).")


class GroupUsageEntry(Usage):
    name: str
    cloud_project_name: str | None = None
    machine_name: str | None = None
    timestamp: datetime


class UserUsage(BaseModel):
    username: str
    workspaces: list[WorkspaceUsageEntry]


class Summary(BaseModel):
    name: str
    scope: str
    this_month: Usage = Field(description="The calendar month so far (UTC).")
    lifetime: Usage = Field(description="Every hour shown.")


class Workspace(BaseModel):
    workspace_id: str
    hostname: str
    owner: str | None = None
    owner_name: str | None = None
    cloud_project_name: str | None = None
    machine_name: str | None = None
    group_name: str | None = None
    started_at: datetime
    ended_at: datetime | None = None
    active: bool
    total_usage_kwh: float | None = None
    total_usage_gco2eq: float | None = None
    idle_share_cpu: float | None = None


class WorkspacesSummary(BaseModel):
    active_workspaces: int | None = Field(
        default=None, description="Workspaces holding a host now (analysts only)."
    )
    last_hour: datetime | None = Field(
        default=None, description="The latest hour of the platform shown."
    )
    users: int | None = Field(
        default=None,
        description="People in that hour (never below the disclosure minimum for callers without rights).",
    )
    usage: Usage | None = None


class Group(BaseModel):
    name: str
    cloud_project_name: str | None = None
    machine_name: str | None = None


class Equivalency(BaseModel):
    equivalency: str
    description: str
    unit: str
    amount: float


class Equivalencies(BaseModel):
    gco2eq: float
    equivalencies: list[Equivalency]
    carbon_equivalencies: dict[str, float] = Field(description="The seed's shape: name -> amount.")


class Intensity(BaseModel):
    intensity: float | None = Field(
        description="gCO2eq/kWh of the half-hour now, as last forecast."
    )
    index: str | None = None
    period_from: datetime | None = None
    period_to: datetime | None = None
    issued_at: datetime | None = Field(default=None, description="When that forecast was issued.")
    age_seconds: float | None = Field(default=None, description="How old that forecast is.")
    site: str | None = None
    regional_intensity: float | None = None
    regional_index: str | None = None
    last_actual_hour: datetime | None = Field(
        default=None, description="The latest hour whose actual national intensity is stored."
    )
    last_actual_intensity: float | None = None
    source: str = "stored forecast (intensity_forecast); the API is never called on request"


class ForecastPeriod(BaseModel):
    period_from: datetime
    period_to: datetime
    intensity: float
    index: str | None = None


class Forecast(BaseModel):
    area: str
    site: str | None = None
    issued_at: datetime | None = None
    age_seconds: float | None = None
    forecasts: list[ForecastPeriod]


class CalculateRequest(BaseModel):
    busy_cpu_seconds: Number = Field(ge=0, le=MAX_CPU_SECONDS, allow_inf_nan=False)
    idle_cpu_seconds: Number = Field(default=0.0, ge=0, le=MAX_CPU_SECONDS, allow_inf_nan=False)
    machine_name: str | None = Field(
        default=None, description="Its power model; default: the defaults."
    )
    timestamp: datetime | None = Field(
        default=None,
        description="The hour whose stored intensity to use; default: the latest stored.",
    )


class Calculation(BaseModel):
    busy_cpu_seconds: float
    idle_cpu_seconds: float
    busy_watts_per_core: float
    idle_watts_per_core: float
    busy_usage_kwh: float
    idle_usage_kwh: float
    total_usage_kwh: float
    carbon_intensity_g_per_kwh: float | None
    intensity_hour: datetime | None
    intensity_source: str | None
    busy_usage_gco2eq: float | None
    idle_usage_gco2eq: float | None
    total_usage_gco2eq: float | None
    carbon_equivalencies: dict[str, float] = Field(default_factory=dict)


class EquivalenciesRequest(BaseModel):
    gco2eq: Number = Field(ge=0, le=MAX_GCO2EQ, allow_inf_nan=False)


class Point(BaseModel):
    start: datetime
    end: datetime
    hours_shown: int
    busy_usage_kwh: float | None = None
    idle_usage_kwh: float | None = None
    total_usage_kwh: float | None = None
    busy_usage_gco2eq: float | None = None
    idle_usage_gco2eq: float | None = None
    total_usage_gco2eq: float | None = None
    full_gco2eq: float | None = None


class History(BaseModel):
    view: str
    scope: str
    name: str
    start: datetime
    end: datetime
    points: list[Point] = Field(
        description="Every hour (day view), day (month) or month (year) of the period, in order; one without data has hours_shown 0 and null numbers, never 0."
    )


class HeatmapDay(BaseModel):
    day: date
    hours_shown: int
    total_usage_kwh: float | None = None
    total_usage_gco2eq: float | None = None


class Heatmap(BaseModel):
    year: int
    scope: str
    name: str
    days: list[HeatmapDay]


class Tracked(BaseModel):
    run_id: str
    partition: str = Field(description="The hour asked for: the latest closed one.")
    status: str


class Health(BaseModel):
    status: str
    database: str
