"""The seed's workspace, user and group routers: usage over a period, summaries and lists.
A person's routes answer only that person (a bearer token) or an analyst; groups and the
platform answer anyone, as carbon_reporter sees them unless the caller is an analyst."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from carbon_pipeline.api.auth import Caller
from carbon_pipeline.api.carbon import database
from carbon_pipeline.api.db import ANALYST, Database
from carbon_pipeline.api.models import (
    ERRORS,
    Group,
    GroupUsageEntry,
    Summary,
    Tracked,
    Usage,
    UserUsage,
    Workspace,
    WorkspacesSummary,
    WorkspaceUsageEntry,
)
from carbon_pipeline.api.reads import known, lifetime_of, rows, usage, usage_of

MAX_PERIOD = timedelta(days=400)


def caller(request: Request) -> Caller:
    return request.state.caller


# ISO 8601, as a query parameter must write a time (not a number of seconds, not "yesterday").
DATE = r"^\d{4}-\d{2}-\d{2}$"
TIME = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?$"


def _time(field: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise _invalid(
            field, f"{text!r} is not a time (ISO 8601, e.g. 2025-03-01T00:00Z)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def day_of(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _invalid("date", f"{text!r} is not a day (YYYY-MM-DD)") from None


def _invalid(field: str, message: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["query", field], "msg": message, "type": "value_error"}])


def now(request: Request) -> datetime:
    """The time relative periods end at: the clock, or API_REPORTING_NOW."""
    return request.app.state.clock()


def period(
    request: Request,
    start: str | None = Query(
        None, pattern=TIME, description="Start, UTC unless it says (default: end - 24 h)."
    ),
    end: str | None = Query(
        None, pattern=TIME, description="End, excluded (default: the current hour's start)."
    ),
) -> tuple[datetime, datetime]:
    """[start, end) of a request, whole hours (rounded down), at most MAX_PERIOD long."""
    until = (_time("end", end) if end else now(request)).replace(minute=0, second=0, microsecond=0)
    since = (_time("start", start) if start else until - timedelta(days=1)).replace(
        minute=0, second=0, microsecond=0
    )
    if until <= since:
        raise _invalid(
            "end", f"end ({until:%Y-%m-%dT%H:%MZ}) must be after start ({since:%Y-%m-%dT%H:%MZ})"
        )
    if until - since > MAX_PERIOD:
        raise _invalid("start", f"a period may span at most {MAX_PERIOD.days} days")
    return since, until


def _month_so_far(at: datetime) -> tuple[datetime, datetime]:
    hour = at.replace(minute=0, second=0, microsecond=0)
    first = hour.replace(day=1, hour=0)
    return first, max(hour, first + timedelta(hours=1))


# ---- workspaces and users -------------------------------------------------------------------

workspaces = APIRouter(prefix="/workspaces", tags=["workspaces"], responses=ERRORS)
users = APIRouter(prefix="/users", tags=["users"], responses=ERRORS)


def _workspace_entries(db: Database, owner: str | None, workspace: str | None, start, end):
    found = rows(
        db,
        ANALYST,
        "api_workspace_usage",
        {"owner": owner, "workspace": workspace, "start": start, "end": end},
    )
    return [
        WorkspaceUsageEntry(
            workspace_id=r["workspace_id"],
            hostname=r["hostname"],
            owner=r["owner"],
            timestamp=start,
            **usage(r, start, end),
        )
        for r in found
    ]


@workspaces.get(
    "/active",
    response_model=list[Workspace],
    description="Workspaces holding a host now (as the registry last showed them), with what "
    "each has accumulated: a signed-in user's own, or every one for an analyst.",
)
def active(who: Caller = Depends(caller), db: Database = Depends(database)) -> list[Workspace]:
    who.require_signed_in("GET /workspaces/active")
    params = {
        "owner": None if who.analyst else who.username,
        "workspace": None,
        "active_only": True,
    }
    return [Workspace(**r) for r in rows(db, ANALYST, "api_workspaces", params)]


@workspaces.post(
    "/track",
    response_model=Tracked,
    status_code=202,
    description="Batch world: the seed computed every active workspace's hour on request; here "
    "it asks Dagster (the webserver's GraphQL API, API_DAGSTER_WEBSERVER_URL) to materialise the "
    "latest closed hour, and answers with the run's id at once (analysts only).",
)
def track(request: Request, who: Caller = Depends(caller)) -> Tracked:
    who.require_analyst("POST /workspaces/track")
    launch = request.app.state.launch_hour
    if launch is None:
        raise HTTPException(503, "POST /workspaces/track needs API_DAGSTER_WEBSERVER_URL")
    # The clock's, not API_REPORTING_NOW's: a run is for an hour that has really closed.
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return launch(hour)


@workspaces.get(
    "/summary",
    response_model=WorkspacesSummary,
    description="The platform's latest hour shown (its energy, carbon and people) and, for "
    "analysts, how many workspaces are active.",
)
def summary(who: Caller = Depends(caller), db: Database = Depends(database)) -> WorkspacesSummary:
    (last,) = rows(db, who.aggregate_role, "api_platform_last_day", {})
    latest = []
    if last["day"] is not None:
        since = datetime(last["day"].year, last["day"].month, last["day"].day, tzinfo=UTC)
        latest = rows(db, who.aggregate_role, "api_platform_latest", {"since": since})
    active_count = None
    if who.analyst:
        active_count = len(
            rows(
                db,
                ANALYST,
                "api_workspaces",
                {"owner": None, "workspace": None, "active_only": True},
            )
        )
    if not latest:
        return WorkspacesSummary(active_workspaces=active_count)
    row = latest[0]
    hour = row["timestamp_utc"]
    row = {
        **row,
        "hours": 1,
        "total_kwh": row["busy_kwh"] + row["idle_kwh"],
        "total_gco2eq": row["busy_gco2eq"] + row["idle_gco2eq"],
    }
    return WorkspacesSummary(
        active_workspaces=active_count,
        last_hour=hour,
        users=row["users"],
        usage=Usage(**usage(row, hour, hour + timedelta(hours=1))),
    )


@workspaces.get(
    "/{workspace_id}",
    response_model=WorkspaceUsageEntry,
    description="A workspace's usage over the period: its owner's, or any for an analyst.",
)
def workspace(
    workspace_id: str,
    span: tuple[datetime, datetime] = Depends(period),
    who: Caller = Depends(caller),
    db: Database = Depends(database),
) -> WorkspaceUsageEntry:
    who.require_signed_in("a workspace's usage")
    found = rows(
        db,
        ANALYST,
        "api_workspaces",
        {"owner": None, "workspace": workspace_id, "active_only": False},
    )
    if not found or not (who.analyst or found[0]["owner"] == who.username):
        raise HTTPException(
            404, f"no workspace {workspace_id!r}" + ("" if who.analyst else " of yours")
        )
    entries = _workspace_entries(db, None, workspace_id, *span)
    if entries:
        return entries[0]
    w = found[0]
    return WorkspaceUsageEntry(
        workspace_id=w["workspace_id"],
        hostname=w["hostname"],
        owner=w["owner"],
        timestamp=span[0],
        **usage(None, *span),
    )


def _require_user(db: Database, username: str) -> None:
    if not known(db, ANALYST, "user", username):
        raise HTTPException(404, f"no user {username!r} has usage stored")


@users.get(
    "/{username}/usage",
    response_model=UserUsage,
    description="A person's workspaces' usage over the period (each workspace held in it): "
    "that person's own (a bearer token naming them) or any for an analyst.",
)
def user_usage(
    username: str,
    span: tuple[datetime, datetime] = Depends(period),
    who: Caller = Depends(caller),
    db: Database = Depends(database),
) -> UserUsage:
    who.require_person(username)
    _require_user(db, username)
    return UserUsage(username=username, workspaces=_workspace_entries(db, username, None, *span))


def _summary(db: Database, role: str, scope: str, name: str, at: datetime) -> Summary:
    month = _month_so_far(at)
    found = usage_of(db, role, scope, name, *month)
    return Summary(
        name=name,
        scope=scope,
        this_month=Usage(**usage(found[0] if found else None, *month)),
        lifetime=lifetime_of(db, role, scope, name),
    )


@users.get(
    "/{username}/summary",
    response_model=Summary,
    description="A person's totals this month and over every stored hour, with equivalencies.",
)
def user_summary(
    request: Request,
    username: str,
    who: Caller = Depends(caller),
    db: Database = Depends(database),
) -> Summary:
    who.require_person(username)
    _require_user(db, username)
    return _summary(db, ANALYST, "user", username, now(request))


# ---- groups -----------------------------------------------------------------------------------

groups = APIRouter(prefix="/groups", tags=["groups"], responses=ERRORS)


@groups.get(
    "",
    response_model=list[Group],
    description="The groups (a project's machine type): every one for analysts; for anyone "
    "else, those carbon_reporter has been shown (docs/security.md).",
)
def list_groups(who: Caller = Depends(caller), db: Database = Depends(database)) -> list[Group]:
    return [Group(**r) for r in rows(db, who.aggregate_role, "api_groups", {})]


def _require_group(db: Database, role: str, name: str) -> None:
    if not known(db, role, "group", name):
        raise HTTPException(404, f"no group {name!r} is shown")


@groups.get(
    "/{name}/usage",
    response_model=GroupUsageEntry,
    description="A group's usage over the period, over the hours shown to the caller: for "
    "anyone but analysts, the hours in which the group had enough people to be shown alone.",
)
def group_usage(
    name: str,
    span: tuple[datetime, datetime] = Depends(period),
    who: Caller = Depends(caller),
    db: Database = Depends(database),
) -> GroupUsageEntry:
    role = who.aggregate_role
    _require_group(db, role, name)
    found = usage_of(db, role, "group", name, *span)
    pair = {g["name"]: g for g in rows(db, role, "api_groups", {})}.get(name, {})
    return GroupUsageEntry(
        name=name,
        cloud_project_name=pair.get("cloud_project_name"),
        machine_name=pair.get("machine_name"),
        timestamp=span[0],
        **usage(found[0] if found else None, *span),
    )


@groups.get(
    "/{name}/summary",
    response_model=Summary,
    description="A group's totals this month and over every hour shown.",
)
def group_summary(
    request: Request, name: str, who: Caller = Depends(caller), db: Database = Depends(database)
) -> Summary:
    role = who.aggregate_role
    _require_group(db, role, name)
    return _summary(db, role, "group", name, now(request))
