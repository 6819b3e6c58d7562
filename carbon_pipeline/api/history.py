"""The seed's history router: the points of a chart (a day's hours, a month's days, a year's
months) and a year's heatmap of daily values, for the platform, a project, machine type, group
or (its own, or an analyst's) a person. A point without data says so (hours_shown 0, null
numbers), never 0."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from carbon_pipeline.api.auth import Caller
from carbon_pipeline.api.carbon import database
from carbon_pipeline.api.db import ANALYST, Database
from carbon_pipeline.api.models import ERRORS, Heatmap, HeatmapDay, History, Point
from carbon_pipeline.api.reads import known, rows
from carbon_pipeline.api.usage import DATE, _invalid, caller, day_of, now

router = APIRouter(prefix="/carbon", tags=["history"], responses=ERRORS)
VIEWS = {  # view: (relation, its period column, the point's length)
    "day": ("v_usage_hourly", "timestamp_utc"),
    "month": ("v_usage_daily", "day"),
    "year": ("v_usage_monthly", "month"),
}


def _role(who: Caller, scope: str, name: str) -> str:
    if scope == "user":
        who.require_person(name)
        return ANALYST
    return who.aggregate_role


def _entity(who: Caller, db: Database, scope: str, name: str | None) -> tuple[str, str]:
    name = "ada" if scope == "ada" else name
    if name is None and scope == "user":
        name = who.username  # one's own
    if name is None:
        raise _invalid("name", f"name is required for scope {scope}")
    role = _role(who, scope, name)
    if scope != "ada" and not known(db, role, scope, name):
        raise HTTPException(404, f"no {scope} {name!r} is shown")
    return role, name


def _steps(view: str, day: date) -> list[tuple[datetime, datetime]]:
    if view == "day":
        first = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return [(first + timedelta(hours=h), first + timedelta(hours=h + 1)) for h in range(24)]
    if view == "month":
        first = date(day.year, day.month, 1)
        following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        days = [first + timedelta(days=d) for d in range((following - first).days)]
        return [(_midnight(d), _midnight(d + timedelta(days=1))) for d in days]
    months = [date(day.year, m, 1) for m in range(1, 13)] + [date(day.year + 1, 1, 1)]
    return [(_midnight(a), _midnight(b)) for a, b in zip(months, months[1:], strict=False)]


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _at(value) -> datetime:
    return value if isinstance(value, datetime) else _midnight(value)


def _point(start: datetime, end: datetime, r: dict | None) -> Point:
    if r is None:
        return Point(start=start, end=end, hours_shown=0)
    return Point(
        start=start,
        end=end,
        hours_shown=int(r.get("hours", 1)),  # a row of the hourly view is one hour
        busy_usage_kwh=r["busy_kwh"],
        idle_usage_kwh=r["idle_kwh"],
        total_usage_kwh=r["busy_kwh"] + r["idle_kwh"],
        busy_usage_gco2eq=r["busy_gco2eq"],
        idle_usage_gco2eq=r["idle_gco2eq"],
        total_usage_gco2eq=r["busy_gco2eq"] + r["idle_gco2eq"],
        full_gco2eq=r["full_gco2eq"],
    )


@router.get(
    "/history",
    response_model=History,
    description="A chart's points: view=day gives the 24 hours of `date`, month the days of its "
    "month, year the months of its year; for scope ada (default), project, machine, group or "
    "user (its own, or an analyst's).",
)
def history(
    request: Request,
    view: str = Query("day", pattern="^(day|month|year)$"),
    date_: str | None = Query(
        None,
        alias="date",
        pattern=DATE,
        description="A day of the period, YYYY-MM-DD (default: today).",
    ),
    scope: str = Query("ada", pattern="^(ada|project|machine|group|user)$"),
    name: str | None = Query(None, description="The entity (not for ada)."),
    who: Caller = Depends(caller),
    db: Database = Depends(database),
) -> History:
    role, name = _entity(who, db, scope, name)
    steps = _steps(view, day_of(date_) if date_ else now(request).date())
    relation, column = VIEWS[view]
    found = rows(
        db,
        role,
        "api_history",
        {"scope": scope, "name": name, "start": steps[0][0], "end": steps[-1][1]},
        points=relation,
        at=column,
    )
    by_start = {_at(r["start"]): r for r in found}
    points = []
    for start, end in steps:
        points.append(_point(start, end, by_start.get(start)))
    return History(
        view=view, scope=scope, name=name, start=steps[0][0], end=steps[-1][1], points=points
    )


@router.get(
    "/heatmap",
    response_model=Heatmap,
    description="A year of daily values (every day of `year`, in order) for the heatmap.",
)
def heatmap(
    request: Request,
    year: int | None = Query(None, ge=2000, le=2100, description="Default: this year."),
    scope: str = Query("ada", pattern="^(ada|project|machine|group|user)$"),
    name: str | None = Query(None),
    who: Caller = Depends(caller),
    db: Database = Depends(database),
) -> Heatmap:
    role, name = _entity(who, db, scope, name)
    year = year or now(request).year
    first, following = date(year, 1, 1), date(year + 1, 1, 1)
    found = rows(
        db,
        role,
        "api_history",
        {"scope": scope, "name": name, "start": first, "end": following},
        points="v_usage_daily",
        at="day",
    )
    by_day = {r["start"]: r for r in found}
    days = []
    for d in (first + timedelta(days=n) for n in range((following - first).days)):
        r = by_day.get(d)
        days.append(
            HeatmapDay(
                day=d,
                hours_shown=int(r["hours"]) if r else 0,
                total_usage_kwh=r and r["busy_kwh"] + r["idle_kwh"],
                total_usage_gco2eq=r and r["busy_gco2eq"] + r["idle_gco2eq"],
            )
        )
    return Heatmap(year=year, scope=scope, name=name, days=days)
