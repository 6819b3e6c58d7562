"""The reads behind the routes: which relation a caller reads (the reporter's schema for
callers without rights, the analysts' for their own usage and for analysts), and the rows
turned into the API's answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from psycopg import sql

from carbon_pipeline.api.db import ANALYST, Database
from carbon_pipeline.api.models import Footprint, Period, Usage
from carbon_pipeline.resources.warehouse import load_query

SCOPES = ("ada", "project", "machine", "group", "user")


def schema_of(role: str) -> str:
    return "public" if role == ANALYST else "reporting"


def query(name: str, role: str, **identifiers: str) -> sql.Composed:
    """sql/queries/<name>.sql with {schema} (the role's) and any other identifiers filled in."""
    names = {"schema": schema_of(role), **identifiers}
    return sql.SQL(load_query(name)).format(**{k: sql.Identifier(v) for k, v in names.items()})


def rows(db: Database, role: str, name: str, params: dict, **identifiers: str) -> list[dict]:
    with db.read(role) as conn:
        return conn.execute(query(name, role, **identifiers), params).fetchall()


def hours_between(start: datetime, end: datetime) -> int:
    return max(0, int((end - start) / timedelta(hours=1)))


def status(hours_shown: int, hours_in_period: int) -> str:
    if hours_shown <= 0:
        return "initialized"
    return "complete" if hours_shown >= hours_in_period else "processed"


def usage(row: dict | None, start: datetime, end: datetime) -> dict:
    """The fields of Usage from a row of usage_between, v_usage_total or the workspace sums;
    None (nothing shown): every number null, never 0."""
    row = row or {}
    shown = int(row.get("hours") or 0)
    expected = hours_between(start, end)
    return {
        "busy_cpu_seconds_total": row.get("busy_cpu_seconds_total"),
        "idle_cpu_seconds_total": row.get("idle_cpu_seconds_total"),
        "busy_usage_kwh": row.get("busy_kwh"),
        "idle_usage_kwh": row.get("idle_kwh"),
        "total_usage_kwh": row.get("total_kwh"),
        "busy_usage_gco2eq": row.get("busy_gco2eq"),
        "idle_usage_gco2eq": row.get("idle_gco2eq"),
        "total_usage_gco2eq": row.get("total_gco2eq"),
        "carbon_intensity_g_per_kwh": (
            row["total_gco2eq"] / row["total_kwh"] if row.get("total_kwh") else None
        ),
        "carbon_equivalencies": row.get("equivalencies") or {},
        "status": status(shown, expected),
        "period": Period(start=start, end=end, hours_in_period=expected, hours_shown=shown),
        "footprint": Footprint(
            memory_kwh=row.get("memory_kwh"),
            overhead_kwh=row.get("overhead_kwh"),
            full_kwh=row.get("full_kwh"),
            embodied_gco2eq=row.get("embodied_gco2eq"),
            full_gco2eq=row.get("full_gco2eq"),
            regional_gco2eq=row.get("regional_gco2eq"),
            footprint_unknown_hours=row.get("footprint_unknown_hours"),
        ),
        "estimated_hours": row.get("estimated_hours"),
    }


def usage_of(
    db: Database, role: str, scope: str, name: str | None, start: datetime, end: datetime
) -> list[dict]:
    return rows(db, role, "api_usage", {"scope": scope, "name": name, "start": start, "end": end})


def lifetime_of(db: Database, role: str, scope: str, name: str) -> Usage:
    found = rows(db, role, "api_lifetime", {"scope": scope, "name": name})
    row = found[0] if found else {}
    fields = usage(row, datetime.now(UTC), datetime.now(UTC))
    hours = int(row.get("hours") or 0)
    fields["period"] = Period(start=None, end=None, hours_in_period=None, hours_shown=hours)
    fields["status"] = "complete" if hours else "initialized"
    return Usage(**fields)


def known(db: Database, role: str, scope: str, name: str) -> bool:
    return rows(db, role, "api_entity_known", {"scope": scope, "name": name})[0]["known"]
